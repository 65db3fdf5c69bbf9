//! Connection configuration and cipher suite selection.

use std::sync::Arc;

use rand_core::Rng;
use std::time::Duration;

use crate::cert::{CertifiedKey, ParsedCert, TimeCheck};
use crate::enums::{CipherSuite, KeyExchange, NamedGroup, SignatureScheme};

/// Which side's order wins when both offer several usable suites (RFC 5246 §7.4.1.3 leaves it open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SuitePreference {
    /// Walk the server's list, take the first the client offered (mbedtls default).
    #[default]
    Server,
    /// Walk the client's offers (`MBEDTLS_SSL_SRV_RESPECT_CLIENT_PREFERENCE`).
    Client,
}

/// Which EC J-PAKE implementation sits under the engine, as far as the hello extension 0x0100
/// (`ecjpake_kkpp`) is concerned. mbedtls decides whether to write and to parse that extension
/// with `mbedtls_ecjpake_check()` on the handshake's J-PAKE context, not with the suite list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EcjpakeBackend {
    /// mbedtls' own `ecjpake.c`: the check fails until a password was set
    /// (`mbedtls_ecjpake_setup`), so without one the client writes no extension and the server
    /// skips it.
    #[default]
    Mbedtls,
    /// An `MBEDTLS_ECJPAKE_ALT` implementation whose check passes for any context (Nordic's
    /// Oberon library in nRF Connect SDK 2.1/2.2). Without a password the never-set-up context
    /// keeps role 0 (client): a client writes a round one proven as "client" in every ClientHello
    /// that offers an EC suite, and a server parses a client's extension expecting the peer
    /// identity "server", so the proof fails and the server aborts with illegal_parameter.
    UncheckedAlt,
}

/// Which mbedtls' ClientHello writer the engine follows for the order of the extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HelloLayout {
    /// mbedtls 3.1 (`ssl_cli.c`, nRF Connect SDK 2.1/2.2): signature_algorithms, then
    /// supported_groups, ec_point_formats, ecjpake_kkpp, encrypt_then_mac, extended_master_secret.
    #[default]
    Mbedtls31,
    /// mbedtls 3.6 (`ssl_client.c` + `ssl_tls12_client.c`, vendored by OpenThread today):
    /// supported_groups before signature_algorithms, then the TLS 1.2 extensions in 3.1's order.
    Mbedtls36,
}

/// A pre-shared key and the identity that names it (RFC 4279).
#[derive(Clone)]
pub struct Psk {
    pub key: Vec<u8>,
    pub identity: Vec<u8>,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psk")
            .field("identity", &String::from_utf8_lossy(&self.identity))
            .finish_non_exhaustive()
    }
}

/// Settings for one endpoint; the role is chosen by `Connection::client`/`server`.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client: suites offered, in order. Server: suites enabled, in its preference order.
    pub suites: Vec<CipherSuite>,
    /// Server only: whose order wins.
    pub preference: SuitePreference,
    /// Server only: choose ECJPAKE only if the client sent extension 0x0100 and we have a
    /// password (mbedtls' `ssl_ciphersuite_match`). `false` models a non-conforming server.
    pub ecjpake_requires_extension_and_password: bool,
    /// How the EC J-PAKE context behaves when no password is configured.
    pub ecjpake_backend: EcjpakeBackend,
    pub psk: Option<Psk>,
    /// Server only: PSK identity hint sent in a ServerKeyExchange (none = no ServerKeyExchange).
    pub psk_hint: Option<Vec<u8>>,
    pub ecjpake_password: Option<Vec<u8>>,
    /// Our certificate chain and key (server: required for ECDHE_ECDSA; client: used when asked).
    pub certificate: Option<Arc<CertifiedKey>>,
    pub trusted_roots: Vec<ParsedCert>,
    /// Client: verify the server chain. Server: request and verify a client certificate
    /// (ECDHE_ECDSA only, as OpenThread does).
    pub verify_peer: bool,
    /// Client: name the server certificate must carry (SAN DNS names, else CN).
    pub server_name: Option<String>,
    pub time_check: TimeCheck,
    /// Largest handshake record plaintext (`MBEDTLS_SSL_MAX_CONTENT_LEN`; OpenThread CoAPS: 900).
    pub max_record_content: usize,
    /// Largest datagram we send (records are packed up to this size).
    pub max_datagram: usize,
    /// Initial retransmission timeout (RFC 6347 §4.2.4.1: 1 s; OpenThread: 8 s).
    pub retransmit_min: Duration,
    /// Once the doubled timeout would exceed this, the handshake fails (mbedtls: 60 s).
    pub retransmit_max: Duration,
    /// Model of `CONFIG_MBEDTLS_HEAP_SIZE`: fail the handshake when the accounted bytes exceed it.
    pub heap_limit: Option<usize>,
    /// Records failing authentication are dropped silently (RFC 6347 §4.1.2.7); after this many
    /// the connection fails with bad_record_mac (`mbedtls_ssl_conf_dtls_badmac_limit`).
    pub bad_mac_limit: Option<u32>,
    /// Server only: answer a ClientHello without a valid cookie with HelloVerifyRequest.
    pub require_cookie: bool,
    /// Server only: key for cookies (HMAC-SHA256 over the client's hello parameters).
    pub cookie_secret: [u8; 32],
    /// mbedtls' hash list as ECDSA pairs (the engine signs with P-256 only). Client: written as
    /// signature_algorithms in every ClientHello when not empty (mbedtls writes it whenever a
    /// certificate-based key exchange is compiled in, whatever the offered suites). Server: the
    /// hashes it signs its ServerKeyExchange with, and, of those, the SHA-256/384 ones it lists in
    /// a CertificateRequest and accepts in a CertificateVerify.
    pub signature_algorithms: Vec<SignatureScheme>,
    /// RFC 7627 extended master secret compiled in (`MBEDTLS_SSL_EXTENDED_MASTER_SECRET`, then
    /// enabled by mbedtls' defaults): the client offers it, the server takes it when offered;
    /// both then derive the master secret from the session hash. Off, the extension is unknown.
    pub extended_master_secret: bool,
    /// encrypt_then_mac compiled in (RFC 7366, `MBEDTLS_SSL_ENCRYPT_THEN_MAC`): the client
    /// offers it; it applies to CBC suites only, so with the engine's AEAD suites a server never
    /// answers it.
    pub encrypt_then_mac: bool,
    /// Client: the order its ClientHello extensions go out in.
    pub hello_layout: HelloLayout,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            suites: vec![CipherSuite::PSK_WITH_AES_128_CCM_8],
            preference: SuitePreference::Server,
            ecjpake_requires_extension_and_password: true,
            ecjpake_backend: EcjpakeBackend::Mbedtls,
            psk: None,
            psk_hint: None,
            ecjpake_password: None,
            certificate: None,
            trusted_roots: Vec::new(),
            verify_peer: true,
            server_name: None,
            time_check: TimeCheck::Now,
            max_record_content: 900,
            max_datagram: 1280 - 48,
            retransmit_min: Duration::from_secs(1),
            retransmit_max: Duration::from_secs(60),
            heap_limit: None,
            bad_mac_limit: None,
            require_cookie: true,
            cookie_secret: {
                // A fresh secret per configuration: cookies must not be predictable.
                let mut k = [0u8; 32];
                crate::rng::system_rng().fill_bytes(&mut k);
                k
            },
            signature_algorithms: vec![SignatureScheme::ECDSA_SHA256],
            extended_master_secret: false,
            encrypt_then_mac: false,
            hello_layout: HelloLayout::Mbedtls31,
        }
    }
}

/// What the server learned from a ClientHello that bears on suite choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOffer {
    pub suites: Vec<CipherSuite>,
    /// supported_groups; `None` when the extension was absent.
    pub groups: Option<Vec<NamedGroup>>,
    /// Extension 0x0100 was present and its round one verified (mbedtls `KKPP_OK`).
    pub ecjpake_kkpp_ok: bool,
    /// The ECDSA pair the server would sign its ServerKeyExchange with: the client's first
    /// that the server also lists; `None` when there is none.
    pub ecdsa_scheme: Option<SignatureScheme>,
}

/// Why no suite was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("no cipher suite in common")]
    NoneShared,
    #[error("got cipher suites in common, but none of them usable: {0}")]
    NoneUsable(String),
}

/// Why a shared suite cannot be used (mbedtls `ssl_ciphersuite_match`), or Ok.
pub fn suite_usable(
    config: &Config,
    offer: &ClientOffer,
    suite: CipherSuite,
) -> Result<(), &'static str> {
    let Some(kx) = suite.key_exchange() else {
        return Err("suite not implemented");
    };
    let uses_ec = matches!(kx, KeyExchange::EcdheEcdsa | KeyExchange::Ecjpake);
    if uses_ec
        && !offer
            .groups
            .as_ref()
            .is_some_and(|g| g.contains(&NamedGroup::SECP256R1))
    {
        return Err("no common elliptic curve");
    }
    match kx {
        KeyExchange::Psk if config.psk.is_none() => Err("no pre-shared key configured"),
        KeyExchange::EcdheEcdsa if offer.ecdsa_scheme.is_none() => {
            Err("no suitable hash algorithm for ecdsa")
        }
        KeyExchange::EcdheEcdsa if config.certificate.is_none() => Err("no certificate configured"),
        KeyExchange::Ecjpake
            if config.ecjpake_requires_extension_and_password && !offer.ecjpake_kkpp_ok =>
        {
            Err("ecjpake not configured or extension missing")
        }
        KeyExchange::Ecjpake if config.ecjpake_password.is_none() => {
            Err("no ecjpake password configured")
        }
        _ => Ok(()),
    }
}

/// Server suite selection, as mbedtls 3.1 `ssl_parse_client_hello` does it.
pub fn select_suite(config: &Config, offer: &ClientOffer) -> Result<CipherSuite, SelectError> {
    let pairs: Vec<CipherSuite> = match config.preference {
        SuitePreference::Server => config
            .suites
            .iter()
            .copied()
            .filter(|s| offer.suites.contains(s))
            .collect(),
        SuitePreference::Client => offer
            .suites
            .iter()
            .copied()
            .filter(|s| config.suites.contains(s))
            .collect(),
    };
    if pairs.is_empty() {
        return Err(SelectError::NoneShared);
    }
    let mut reasons = Vec::new();
    for s in pairs {
        match suite_usable(config, offer, s) {
            Ok(()) => return Ok(s),
            Err(r) => reasons.push(format!("{s}: {r}")),
        }
    }
    Err(SelectError::NoneUsable(reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PSK: CipherSuite = CipherSuite::PSK_WITH_AES_128_CCM_8;
    const ECDHE: CipherSuite = CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8;
    const JPAKE: CipherSuite = CipherSuite::ECJPAKE_WITH_AES_128_CCM_8;

    fn offer(suites: &[CipherSuite], groups: bool, kkpp: bool) -> ClientOffer {
        ClientOffer {
            suites: suites.to_vec(),
            groups: groups.then(|| vec![NamedGroup::SECP256R1]),
            ecjpake_kkpp_ok: kkpp,
            ecdsa_scheme: Some(SignatureScheme::ECDSA_SHA256),
        }
    }

    fn full_server(suites: &[CipherSuite]) -> Config {
        let cert = crate::cert::CertifiedKey::from_pem(
            include_str!("../tests/data/localhost.pem"),
            include_str!("../tests/data/localhost.key"),
        )
        .unwrap();
        Config {
            suites: suites.to_vec(),
            psk: Some(Psk {
                key: b"123".to_vec(),
                identity: b"id".to_vec(),
            }),
            ecjpake_password: Some(b"J01NME".to_vec()),
            certificate: Some(Arc::new(cert)),
            ..Config::default()
        }
    }

    #[test]
    fn server_preference_walks_server_list() {
        let c = full_server(&[JPAKE, ECDHE, PSK]);
        assert_eq!(
            select_suite(&c, &offer(&[PSK, ECDHE, JPAKE], true, true)),
            Ok(JPAKE)
        );
        assert_eq!(
            select_suite(&c, &offer(&[PSK, ECDHE], true, false)),
            Ok(ECDHE)
        );
    }

    #[test]
    fn client_preference_walks_client_list() {
        let c = Config {
            preference: SuitePreference::Client,
            ..full_server(&[JPAKE, ECDHE, PSK])
        };
        assert_eq!(
            select_suite(&c, &offer(&[PSK, ECDHE, JPAKE], true, true)),
            Ok(PSK)
        );
        assert_eq!(
            select_suite(&c, &offer(&[ECDHE, JPAKE], true, true)),
            Ok(ECDHE)
        );
    }

    #[test]
    fn ecjpake_needs_extension_and_password_unless_relaxed() {
        let c = full_server(&[JPAKE, ECDHE]);
        // The client offered ECJPAKE but sent no extension: mbedtls skips it.
        assert_eq!(
            select_suite(&c, &offer(&[JPAKE, ECDHE], true, false)),
            Ok(ECDHE)
        );
        let no_pw = Config {
            ecjpake_password: None,
            ..full_server(&[JPAKE])
        };
        assert!(matches!(
            select_suite(&no_pw, &offer(&[JPAKE], true, true)),
            Err(SelectError::NoneUsable(_))
        ));
        // A non-conforming server picks ECJPAKE without the extension, given a password.
        let relaxed = Config {
            ecjpake_requires_extension_and_password: false,
            ..full_server(&[JPAKE, ECDHE])
        };
        assert_eq!(
            select_suite(&relaxed, &offer(&[ECDHE, JPAKE], true, false)),
            Ok(JPAKE)
        );
        let relaxed_no_pw = Config {
            ecjpake_password: None,
            ..relaxed
        };
        assert_eq!(
            select_suite(&relaxed_no_pw, &offer(&[ECDHE, JPAKE], true, false)),
            Ok(ECDHE)
        );
    }

    #[test]
    fn skips_psk_without_key_and_ec_without_curve_or_cert() {
        let no_psk = Config {
            psk: None,
            ..full_server(&[PSK, ECDHE])
        };
        assert_eq!(
            select_suite(&no_psk, &offer(&[PSK, ECDHE], true, false)),
            Ok(ECDHE)
        );
        let c = full_server(&[ECDHE, PSK]);
        assert_eq!(
            select_suite(&c, &offer(&[ECDHE, PSK], false, false)),
            Ok(PSK),
            "no supported_groups"
        );
        let no_cert = Config {
            certificate: None,
            ..full_server(&[ECDHE])
        };
        let e = select_suite(&no_cert, &offer(&[ECDHE], true, false)).unwrap_err();
        assert_eq!(
            e,
            SelectError::NoneUsable(
                "ECDHE_ECDSA_WITH_AES_128_CCM_8: no certificate configured".into()
            )
        );
        assert_eq!(
            select_suite(&c, &offer(&[CipherSuite(0x1301)], true, false)),
            Err(SelectError::NoneShared)
        );
    }
}
