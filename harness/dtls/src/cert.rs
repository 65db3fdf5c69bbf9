//! X.509 certificates with P-256 keys and ecdsa-with-SHA256 signatures (v1 and v3), parsed
//! with `x509-cert`: chain building to configured roots, validity dates, expected host name.

use std::time::{Duration, SystemTime};

use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use x509_cert::Certificate;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::enums::SignatureScheme;
use crate::error::CertError;

/// id-ecPublicKey (RFC 5480 §2.1.1).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1.
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// ecdsa-with-SHA256 (RFC 5758 §3.2).
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// The facts about one certificate the engine uses.
#[derive(Debug, Clone)]
pub struct ParsedCert {
    pub der: Vec<u8>,
    /// RFC 4514 style rendering of the subject, e.g. `CN=PXC3.E75-100A,OU=...`.
    pub subject: String,
    pub issuer: String,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    /// X.509 version as printed by openssl (1 or 3).
    pub version: u8,
    pub public_key: VerifyingKey,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
    tbs_der: Vec<u8>,
    signature_oid: ObjectIdentifier,
    signature: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
}

fn perr(e: impl std::fmt::Display) -> CertError {
    CertError::Parse(e.to_string())
}

impl ParsedCert {
    pub fn parse(der: &[u8]) -> Result<Self, CertError> {
        let cert = Certificate::from_der(der).map_err(perr)?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info();
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY {
            return Err(CertError::UnsupportedAlgorithm);
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or(CertError::UnsupportedAlgorithm)?;
        if curve != OID_P256 {
            return Err(CertError::UnsupportedAlgorithm);
        }
        let public_key = VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
            .map_err(|_| CertError::UnsupportedAlgorithm)?;
        let common_name = tbs
            .subject()
            .common_name()
            .map_err(perr)?
            .map(|d| d.value().into_owned());
        let mut dns_names = Vec::new();
        if let Ok(Some((_, san))) = tbs.get_extension::<SubjectAltName>() {
            for n in san.0 {
                if let GeneralName::DnsName(s) = n {
                    dns_names.push(s.to_string());
                }
            }
        }
        let version = match tbs.version() {
            x509_cert::certificate::Version::V1 => 1,
            x509_cert::certificate::Version::V2 => 2,
            x509_cert::certificate::Version::V3 => 3,
        };
        Ok(ParsedCert {
            der: der.to_vec(),
            subject: tbs.subject().to_string(),
            issuer: tbs.issuer().to_string(),
            common_name,
            dns_names,
            version,
            public_key,
            subject_der: tbs.subject().to_der().map_err(perr)?,
            issuer_der: tbs.issuer().to_der().map_err(perr)?,
            // DER is canonical, so re-encoding the parsed TBS gives the signed bytes.
            tbs_der: tbs.to_der().map_err(perr)?,
            signature_oid: cert.signature_algorithm().oid,
            signature: cert.signature().raw_bytes().to_vec(),
            not_before: tbs.validity().not_before.to_system_time(),
            not_after: tbs.validity().not_after.to_system_time(),
        })
    }

    /// The subject name, DER encoded (as a CertificateRequest lists certificate authorities).
    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    /// Whether `issuer`'s key signed this certificate.
    fn signed_by(&self, issuer: &ParsedCert) -> Result<(), CertError> {
        if self.signature_oid != OID_ECDSA_SHA256 {
            return Err(CertError::UnsupportedAlgorithm);
        }
        if verify_signature(
            &issuer.public_key,
            SignatureScheme::ECDSA_SHA256,
            &self.tbs_der,
            &self.signature,
        ) {
            Ok(())
        } else {
            Err(CertError::BadSignature)
        }
    }

    fn check_time(&self, now: SystemTime) -> Result<(), CertError> {
        if now < self.not_before || now > self.not_after {
            return Err(CertError::Expired);
        }
        Ok(())
    }

    /// RFC 6125-style match: SAN DNS names if any, else the CN; `*.` wildcard in the left label.
    pub fn matches_name(&self, name: &str) -> bool {
        let candidates: Vec<&str> = if self.dns_names.is_empty() {
            self.common_name.as_deref().into_iter().collect()
        } else {
            // mbedtls also checks the CN when SANs exist only if none is a DNS name; we follow RFC 6125.
            self.dns_names.iter().map(String::as_str).collect()
        };
        candidates.iter().any(|c| name_matches(c, name))
    }

    /// Size the engine accounts for a parsed certificate (DER plus decoded fields).
    pub fn footprint(&self) -> usize {
        // The DER copy, the TBS copy used for verification, and fixed decoded structures
        // (mbedtls' mbedtls_x509_crt is about 600 bytes on a 32-bit target).
        self.der.len() + self.tbs_der.len() + 600
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    if pattern.eq_ignore_ascii_case(name) {
        return true;
    }
    if let Some(rest) = pattern.strip_prefix("*.")
        && let Some((_, tail)) = name.split_once('.')
    {
        return tail.eq_ignore_ascii_case(rest);
    }
    false
}

/// How to check validity dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeCheck {
    /// Check against the system clock.
    #[default]
    Now,
    /// Check against this wall time (tests, or a device without a clock source).
    At(SystemTime),
    /// Do not check dates (embedded devices without a real-time clock often do this).
    Skip,
}

impl TimeCheck {
    fn time(self) -> Option<SystemTime> {
        match self {
            TimeCheck::Now => Some(SystemTime::now()),
            TimeCheck::At(t) => Some(t),
            TimeCheck::Skip => None,
        }
    }

    /// Wall time from Unix seconds.
    pub fn at_unix(secs: u64) -> Self {
        TimeCheck::At(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }
}

/// Longest chain we follow; deeper chains fail as unknown issuer.
const MAX_CHAIN_DEPTH: usize = 8;

/// Verify `chain` (leaf first, DER) to one of `roots` (DER), and the leaf against
/// `expected_name`. Returns the parsed chain (leaf first).
pub fn verify_chain(
    chain: &[Vec<u8>],
    roots: &[ParsedCert],
    time: TimeCheck,
    expected_name: Option<&str>,
) -> Result<Vec<ParsedCert>, CertError> {
    let parsed: Vec<ParsedCert> = chain
        .iter()
        .map(|d| ParsedCert::parse(d))
        .collect::<Result<_, _>>()?;
    let leaf = parsed.first().ok_or(CertError::Empty)?;
    let now = time.time();
    let mut current = leaf;
    for _ in 0..MAX_CHAIN_DEPTH {
        if let Some(t) = now {
            current.check_time(t)?;
        }
        // A configured root that is this very certificate: trusted as is.
        if roots.iter().any(|r| r.der == current.der) {
            return finish(parsed, expected_name);
        }
        if let Some(root) = roots
            .iter()
            .find(|r| r.subject_der == current.issuer_der && current.signed_by(r).is_ok())
        {
            if let Some(t) = now {
                root.check_time(t)?;
            }
            return finish(parsed, expected_name);
        }
        let next = parsed
            .iter()
            .find(|c| c.der != current.der && c.subject_der == current.issuer_der);
        match next {
            Some(n) => {
                current.signed_by(n)?;
                current = n;
            }
            None => return Err(CertError::UnknownIssuer),
        }
    }
    Err(CertError::UnknownIssuer)
}

fn finish(
    parsed: Vec<ParsedCert>,
    expected_name: Option<&str>,
) -> Result<Vec<ParsedCert>, CertError> {
    if let (Some(name), Some(leaf)) = (expected_name, parsed.first())
        && !leaf.matches_name(name)
    {
        return Err(CertError::NameMismatch(name.to_string()));
    }
    Ok(parsed)
}

/// Our own certificate chain and its private key.
#[derive(Clone)]
pub struct CertifiedKey {
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    pub key: SigningKey,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedKey")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl CertifiedKey {
    /// Load from PEM: one or more certificates (leaf first) and a SEC1 or PKCS#8 P-256 key.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let chain = load_pem_certs(chain_pem)?;
        if chain.is_empty() {
            return Err(CertError::Empty);
        }
        let secret = p256::SecretKey::from_pem(key_pem).map_err(perr)?;
        let key = SigningKey::from(&secret);
        let leaf = ParsedCert::parse(&chain[0])?;
        if &leaf.public_key != key.verifying_key() {
            return Err(CertError::Parse(
                "private key does not match the certificate".into(),
            ));
        }
        Ok(CertifiedKey { chain, key })
    }

    /// ECDSA signature over `msg` hashed as `scheme` says, DER encoded (RFC 8422 §5.4),
    /// deterministic per RFC 6979; `None` for a scheme that is not ECDSA with SHA-2.
    pub fn sign(&self, scheme: SignatureScheme, msg: &[u8]) -> Option<Vec<u8>> {
        let digest = ecdsa_digest(scheme, msg)?;
        let sig: Signature = self.key.sign_prehash(&digest).ok()?;
        let der: DerSignature = sig.to_der();
        Some(der.as_bytes().to_vec())
    }
}

/// The message digest an ECDSA scheme signs (RFC 5246 §7.4.1.4.1 names the hash).
fn ecdsa_digest(scheme: SignatureScheme, msg: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    Some(match scheme {
        SignatureScheme::ECDSA_SHA256 => sha2::Sha256::digest(msg).to_vec(),
        SignatureScheme::ECDSA_SHA384 => sha2::Sha384::digest(msg).to_vec(),
        SignatureScheme::ECDSA_SHA512 => sha2::Sha512::digest(msg).to_vec(),
        _ => return None,
    })
}

/// Verify a DER ECDSA signature made as `scheme` says with a certificate's key.
pub fn verify_signature(
    key: &VerifyingKey,
    scheme: SignatureScheme,
    msg: &[u8],
    der_sig: &[u8],
) -> bool {
    let (Some(digest), Ok(sig)) = (ecdsa_digest(scheme, msg), Signature::from_der(der_sig)) else {
        return false;
    };
    // OpenSSL may produce high-S signatures; normalize so the verifier accepts them.
    key.verify_prehash(&digest, &sig.normalize_s()).is_ok()
}

/// DER certificates from a PEM bundle.
pub fn load_pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let certs = Certificate::load_pem_chain(pem.as_bytes()).map_err(perr)?;
    certs.iter().map(|c| c.to_der().map_err(perr)).collect()
}

/// Parse trusted roots from a PEM bundle.
pub fn load_pem_roots(pem: &str) -> Result<Vec<ParsedCert>, CertError> {
    load_pem_certs(pem)?
        .iter()
        .map(|d| ParsedCert::parse(d))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_and_case() {
        assert!(name_matches("*.example.org", "a.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(name_matches("PXC3.E75-100A", "pxc3.e75-100a"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(ParsedCert::parse(&[0x30, 0x03, 0x02, 0x01]).is_err());
        assert!(ParsedCert::parse(&[]).is_err());
        assert_eq!(
            verify_chain(&[], &[], TimeCheck::Skip, None).unwrap_err(),
            CertError::Empty
        );
    }
}
