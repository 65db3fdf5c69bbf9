//! Credentials (`coaps psk` / `coaps x509`) and the DTLS configuration `Dtls::Setup` builds
//! from them.

use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

use ot_hil_dtls::cert::load_pem_roots;
use ot_hil_dtls::{CertifiedKey, CipherSuite, Config, ParsedCert, Psk, TimeCheck};

use super::config::{CoapsBuild, SuiteListSource};
use crate::ot_error::OtError;

/// The CLI's default credentials (`x509_cert_key.hpp` in OpenThread): an X.509 v1 P-256
/// certificate for CN `PXC3.E75-100A` issued by CN `VendorCA`, its key, and the VendorCA root.
/// ot-hil ships its own equivalent (fixtures/certs), generated with openssl.
const DEFAULT_CERT_PEM: &str = include_str!("../../../../fixtures/certs/device.pem");
const DEFAULT_KEY_PEM: &str = include_str!("../../../../fixtures/certs/device.key");
const DEFAULT_CA_PEM: &str = include_str!("../../../../fixtures/certs/vendor-ca.pem");
/// mbedtls_ssl_conf_handshake_timeout(&mConf, 8000, 60000) in Dtls::Setup.
const HANDSHAKE_TIMEOUT_MIN: Duration = Duration::from_secs(8);
const HANDSHAKE_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// OPENTHREAD_CONFIG_DTLS_MAX_CONTENT_LEN / MBEDTLS_SSL_{IN,OUT}_CONTENT_LEN in NCS Thread builds.
const MAX_CONTENT_LEN: usize = 900;
/// Heap an mbedtls private key object takes besides the key bytes (pk context + ecp keypair).
const PARSED_KEY_BYTES: usize = 300;

/// What `coaps psk` / `coaps x509` configured (`Dtls::mCipherSuites[0]` and its inputs).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Psk { key: Vec<u8>, identity: Vec<u8> },
    X509,
}

impl std::fmt::Debug for Credentials {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Psk { identity, .. } => write!(
                f,
                "Psk {{ identity: {:?}, .. }}",
                String::from_utf8_lossy(identity)
            ),
            Credentials::X509 => f.write_str("X509"),
        }
    }
}

/// Why the session could not be set up (`Dtls::Setup` returning an mbedtls error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// `SetApplicationCoapSecureKeys` default branch: MBEDTLS_ERR_SSL_BAD_INPUT_DATA.
    NoSuite,
    /// The default certificate or key did not parse.
    Credentials(String),
    /// The engine refused the configuration.
    Engine(String),
}

impl SetupError {
    /// `Crypto::MbedTls::MapError`: BAD_INPUT_DATA -> InvalidArgs; anything else -> Failed.
    pub fn ot_error(&self) -> OtError {
        match self {
            SetupError::NoSuite => OtError::InvalidArgs,
            SetupError::Credentials(_) | SetupError::Engine(_) => OtError::Failed,
        }
    }
}

/// Build the engine configuration `Dtls::Setup` would give mbedtls for these credentials.
/// `verify_peer` is `coaps start [true|false]` (VERIFY_REQUIRED only for the certificate suite).
pub fn dtls_config(
    build: &CoapsBuild,
    creds: &Credentials,
    verify_peer: bool,
) -> Result<Config, SetupError> {
    let own_suite = match creds {
        Credentials::None => None,
        Credentials::Psk { .. } => Some(CipherSuite::PSK_WITH_AES_128_CCM_8),
        Credentials::X509 => Some(CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8),
    };
    let suites = match build.suite_list {
        SuiteListSource::OpenThread => own_suite.into_iter().collect::<Vec<_>>(),
        SuiteListSource::Mbedtls if own_suite.is_some() => build.mbedtls_default_suites(),
        SuiteListSource::Mbedtls => Vec::new(),
    };
    // mCipherSuites[0] == 0: nothing for SetApplicationCoapSecureKeys to configure.
    if own_suite.is_none() || suites.is_empty() {
        return Err(SetupError::NoSuite);
    }
    let mut config = Config {
        suites,
        preference: build.preference,
        ecjpake_requires_extension_and_password: build.ecjpake_needs_kkpp,
        ecjpake_backend: build.ecjpake_backend(),
        verify_peer: false,
        // No hostname is set (mbedtls 3.1 then checks no CN), and the board has no clock.
        server_name: None,
        time_check: TimeCheck::Skip,
        max_record_content: MAX_CONTENT_LEN,
        retransmit_min: HANDSHAKE_TIMEOUT_MIN,
        retransmit_max: HANDSHAKE_TIMEOUT_MAX,
        extended_master_secret: build.extended_master_secret,
        encrypt_then_mac: build.encrypt_then_mac,
        signature_algorithms: build.signature_algorithms(),
        hello_layout: build.hello_layout,
        // From the board's generator: a seeded board sends the same cookies in every run.
        cookie_secret: crate::entropy::with(|r| r.random()),
        ..Config::default()
    };
    let mut static_heap = 0usize;
    match creds {
        Credentials::None => {}
        Credentials::Psk { key, identity } => {
            config.psk = Some(Psk {
                key: key.clone(),
                identity: identity.clone(),
            });
            static_heap += key.len() + identity.len();
        }
        Credentials::X509 => {
            let ck = CertifiedKey::from_pem(DEFAULT_CERT_PEM, DEFAULT_KEY_PEM)
                .map_err(|e| SetupError::Credentials(e.to_string()))?;
            let roots = load_pem_roots(DEFAULT_CA_PEM)
                .map_err(|e| SetupError::Credentials(e.to_string()))?;
            // SetApplicationCoapSecureKeys parses the CA chain, the own certificate and the key
            // into mbedtls heap objects that live for the whole session.
            for der in &ck.chain {
                if let Ok(p) = ParsedCert::parse(der) {
                    static_heap += p.footprint();
                }
            }
            static_heap += roots.iter().map(ParsedCert::footprint).sum::<usize>();
            static_heap += PARSED_KEY_BYTES;
            config.certificate = Some(Arc::new(ck));
            config.trusted_roots = roots;
            config.verify_peer = verify_peer;
        }
    }
    config.heap_limit = build
        .heap_size
        .map(|h| h.saturating_sub(static_heap.min(h)));
    Ok(config)
}
