//! CoAP Secure (`ot coaps ...`): OpenThread's CLI CoAPS example on top of its `CoapSecure` /
//! `Dtls` core, with the DTLS handshake done by the ot-hil-dtls engine over UDP port 5684.
//!
//! Two layers, both sans-IO like the plain CoAP app (the caller sends the datagrams and prints
//! the lines):
//! * [`CoapsBuild`]: what the firmware image compiled in and configured, read from its Kconfig
//!   (which key exchanges mbedtls has, which EC J-PAKE implementation, the mbedtls heap size,
//!   the cipher-suite list and the server's selection rule, the OpenThread revision's
//!   behaviour). Every difference between variants comes from here; firmware/README.md says
//!   which source supports each mechanism.
//! * [`CoapsApp`]: the CLI commands (`cli_coap_secure.cpp`), the DTLS session state machine
//!   (`meshcop/dtls.cpp`: closed, open, connecting, connected, close-notify guard time) and a
//!   small CoAP layer for requests and the one resource.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ot_hil_dtls::cert::load_pem_roots;
use ot_hil_dtls::{
    CertifiedKey, CipherSuite, Config, Connection, EcjpakeBackend, Event, HelloLayout, ParsedCert,
    Psk, SignatureScheme, SuitePreference, TimeCheck, Transcript,
};
use ot_hil_wire::coap::{self, MessageClass, MessageType, Packet, RequestType, ResponseType};
use rand::Rng;

use crate::cli::{ot_ip6, parse_u16};
use crate::coap::{
    PendingDue, PendingRequest, error_text, method_name, new_request, poll_pending,
    take_message_id, with_payload,
};
use crate::firmware::{Kconfig, KconfigValue, Profile};
use crate::ot_error::OtError;

/// OT_DEFAULT_COAP_SECURE_PORT.
pub const COAPS_PORT: u16 = 5684;

/// The CLI's default credentials (`x509_cert_key.hpp` in OpenThread): an X.509 v1 P-256
/// certificate for CN `PXC3.E75-100A` issued by CN `VendorCA`, its key, and the VendorCA root.
/// ot-hil ships its own equivalent (fixtures/certs), generated with openssl.
const DEFAULT_CERT_PEM: &str = include_str!("../../../../fixtures/certs/device.pem");
const DEFAULT_KEY_PEM: &str = include_str!("../../../../fixtures/certs/device.key");
const DEFAULT_CA_PEM: &str = include_str!("../../../../fixtures/certs/vendor-ca.pem");

/// kGuardTimeNewConnectionMilli: after a disconnect the session waits this long in
/// close-notify before the socket accepts a new peer and the disconnect is reported.
const GUARD_TIME: Duration = Duration::from_millis(2000);
/// mbedtls_ssl_conf_handshake_timeout(&mConf, 8000, 60000) in Dtls::Setup.
const HANDSHAKE_TIMEOUT_MIN: Duration = Duration::from_secs(8);
const HANDSHAKE_TIMEOUT_MAX: Duration = Duration::from_secs(60);
/// OPENTHREAD_CONFIG_DTLS_MAX_CONTENT_LEN / MBEDTLS_SSL_{IN,OUT}_CONTENT_LEN in NCS Thread builds.
const MAX_CONTENT_LEN: usize = 900;
/// Sizes in `cli_coap_secure.hpp` (kMaxUriLength, kMaxBufferSize, kPskMaxLength, kPskIdMaxLength).
const MAX_URI_LENGTH: usize = 32;
const MAX_CONTENT_LENGTH: usize = 16;
const MAX_PSK_LENGTH: usize = 32;
const MAX_PSK_ID_LENGTH: usize = 32;
/// Heap an mbedtls private key object takes besides the key bytes (pk context + ecp keypair).
const PARSED_KEY_BYTES: usize = 300;
/// Finished sessions' transcripts kept for the control socket. A peer can start a session every
/// guard time for as long as the board runs; older transcripts are dropped first.
const MAX_TRANSCRIPTS: usize = 32;
/// Where the assert fires in OpenThread with `SecureTransport` (`Setup()`, first statement,
/// `OT_ASSERT(mCipherSuite != kUnspecifiedCipherSuite)` at openthread 013bb3ee).
const UNSPECIFIED_SUITE_ASSERT: &str = "src/core/meshcop/secure_transport.cpp:270";

// -- the build --------------------------------------------------------------------------------

/// Where the session's cipher-suite list comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuiteListSource {
    /// OpenThread's own one-suite list, set by `coaps psk` / `coaps x509`
    /// (`mbedtls_ssl_conf_ciphersuites(&mConf, mCipherSuites)`); what the sources show.
    OpenThread,
    /// mbedtls' default list (`MBEDTLS_SSL_CIPHERSUITES`, else every compiled-in suite in
    /// mbedtls' preference order): a model of the vendor's literal reading of the report, in
    /// which that Kconfig string changes what the server selects.
    Mbedtls,
}

/// What `coaps connect` does when neither `coaps psk` nor `coaps x509` ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCredentials {
    /// OpenThread 2022 (NCS 2.1/2.2): an empty suite list reaches `SetApplicationCoapSecureKeys`,
    /// whose `default:` returns MBEDTLS_ERR_SSL_BAD_INPUT_DATA -> `Error 7: InvalidArgs`.
    InvalidArgs,
    /// OpenThread with `SecureTransport` (late 2024): `OT_ASSERT(mCipherSuite !=
    /// kUnspecifiedCipherSuite)` fires and the node resets.
    Assert,
}

/// What the image compiled in and configured for CoAP Secure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoapsBuild {
    /// `MBEDTLS_KEY_EXCHANGE_PSK_ENABLED`: the `coaps psk` command and the PSK suite exist.
    pub psk: bool,
    /// `MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED`: `coaps x509` and the certificate suite exist.
    pub ecdhe_ecdsa: bool,
    /// `MBEDTLS_KEY_EXCHANGE_ECJPAKE_ENABLED`: the J-PAKE suite and the hello extension code.
    pub ecjpake: bool,
    /// `MBEDTLS_ECJPAKE_ALT`: J-PAKE from Oberon's library, whose check passes without a password.
    pub ecjpake_alt: bool,
    /// `MBEDTLS_HEAP_SIZE` in bytes; `None` = no separate mbedtls heap limit modelled.
    pub heap_size: Option<usize>,
    /// `MBEDTLS_SSL_CIPHERSUITES`, parsed (recognised names only).
    pub ssl_ciphersuites: Vec<CipherSuite>,
    /// Names in `MBEDTLS_SSL_CIPHERSUITES` that are not suites this model knows (on a real
    /// build an unknown identifier does not compile).
    pub unknown_ciphersuites: Vec<String>,
    /// Model symbol `VDK_COAPS_SUITE_LIST` ("openthread" | "mbedtls").
    pub suite_list: SuiteListSource,
    /// Model symbol `VDK_DTLS_SUITE_PREFERENCE` ("server" | "client").
    pub preference: SuitePreference,
    /// Model symbol `VDK_DTLS_ECJPAKE_NEEDS_KKPP`: the server selects J-PAKE only when the
    /// client's extension 0x0100 verified and it has a password (mbedtls' rule).
    pub ecjpake_needs_kkpp: bool,
    /// Model symbol `VDK_OPENTHREAD_SECURE_TRANSPORT` + `ASSERT`.
    pub no_credentials: NoCredentials,
    /// The `isclosed`/`isconnactive`/`isconnected` commands (OpenThread 2024).
    pub state_commands: bool,
    /// `MBEDTLS_SSL_EXTENDED_MASTER_SECRET`: RFC 7627 offered and taken (mbedtls enables it in
    /// every configuration when compiled in).
    pub extended_master_secret: bool,
    /// `MBEDTLS_SSL_ENCRYPT_THEN_MAC`: the client offers RFC 7366 (unused with CCM-8 suites).
    pub encrypt_then_mac: bool,
    /// `MBEDTLS_SHA512_C` as the generated header ends up with it: mbedtls' default hash list
    /// (`ssl_preset_default_hashes`: SHA-512, SHA-384, SHA-256 as compiled) is what
    /// signature_algorithms offers and what the server signs with.
    pub sha512: bool,
    /// `MBEDTLS_SHA384_C`.
    pub sha384: bool,
    /// Whose ClientHello writer: NCS 2.1/2.2 ship mbedtls 3.1 (NCS fork), OpenThread today
    /// vendors mbedtls 3.6.0 (`third_party/mbedtls/repo`).
    pub hello_layout: HelloLayout,
}

fn kbool(k: &Kconfig, name: &str, default: bool) -> bool {
    match k.get(name) {
        Some(KconfigValue::Bool(b)) => *b,
        _ => default,
    }
}

fn kstr(k: &Kconfig, name: &str) -> Option<String> {
    match k.get(name) {
        Some(KconfigValue::Str(s)) => Some(s.clone()),
        _ => None,
    }
}

/// The mbedtls macro names of the suites OpenThread's CoAPS uses.
fn suite_by_macro(name: &str) -> Option<CipherSuite> {
    match name {
        "MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8" => {
            Some(CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8)
        }
        "MBEDTLS_TLS_PSK_WITH_AES_128_CCM_8" => Some(CipherSuite::PSK_WITH_AES_128_CCM_8),
        "MBEDTLS_TLS_ECJPAKE_WITH_AES_128_CCM_8" => Some(CipherSuite::ECJPAKE_WITH_AES_128_CCM_8),
        _ => None,
    }
}

impl CoapsBuild {
    /// Read the build from Kconfig. Defaults differ by profile: the NCS defaults are those of
    /// nrf_security/OpenThread in NCS 2.1/2.2; the upstream profile is an OpenThread CLI built
    /// with OpenThread's own mbedtls configuration.
    pub fn from_kconfig(profile: Profile, k: &Kconfig) -> CoapsBuild {
        let ncs = profile == Profile::Ncs;
        let mut ssl_ciphersuites = Vec::new();
        let mut unknown_ciphersuites = Vec::new();
        if let Some(list) = kstr(k, "MBEDTLS_SSL_CIPHERSUITES") {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match suite_by_macro(name) {
                    Some(s) => ssl_ciphersuites.push(s),
                    None => unknown_ciphersuites.push(name.to_string()),
                }
            }
        }
        let heap_size = match k.get("MBEDTLS_HEAP_SIZE") {
            Some(KconfigValue::Int(n)) => usize::try_from(*n).ok(),
            _ if ncs => Some(10240),
            _ => None,
        };
        let secure_transport = kbool(k, "VDK_OPENTHREAD_SECURE_TRANSPORT", !ncs);
        // OPENTHREAD_CONFIG_ASSERT_ENABLE follows CONFIG_ASSERT in Zephyr builds; OpenThread's
        // own CLI builds have it on.
        let asserts = kbool(k, "ASSERT", !ncs);
        CoapsBuild {
            psk: kbool(k, "MBEDTLS_KEY_EXCHANGE_PSK_ENABLED", !ncs),
            ecdhe_ecdsa: kbool(k, "MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED", true),
            ecjpake: kbool(k, "MBEDTLS_KEY_EXCHANGE_ECJPAKE_ENABLED", true),
            ecjpake_alt: kbool(k, "MBEDTLS_ECJPAKE_ALT", ncs),
            heap_size,
            ssl_ciphersuites,
            unknown_ciphersuites,
            suite_list: match kstr(k, "VDK_COAPS_SUITE_LIST").as_deref() {
                Some("mbedtls") => SuiteListSource::Mbedtls,
                _ => SuiteListSource::OpenThread,
            },
            preference: match kstr(k, "VDK_DTLS_SUITE_PREFERENCE").as_deref() {
                Some("client") => SuitePreference::Client,
                _ => SuitePreference::Server,
            },
            ecjpake_needs_kkpp: kbool(k, "VDK_DTLS_ECJPAKE_NEEDS_KKPP", true),
            no_credentials: if secure_transport && asserts {
                NoCredentials::Assert
            } else {
                NoCredentials::InvalidArgs
            },
            state_commands: secure_transport,
            // nrf_security's Kconfig.tls defaults both to y; OpenThread's own mbedtls-config.h
            // defines neither.
            extended_master_secret: kbool(k, "MBEDTLS_SSL_EXTENDED_MASTER_SECRET", ncs),
            encrypt_then_mac: kbool(k, "MBEDTLS_SSL_ENCRYPT_THEN_MAC", ncs),
            // NCS turns CONFIG_MBEDTLS_SHA512_C off for OpenThread, but nrf_security's
            // legacy_crypto_config.cmake defines MBEDTLS_SHA512_C again from
            // PSA_WANT_ALG_SHA_512, which defaults to y. OpenThread's own config has neither.
            sha512: k.bool("MBEDTLS_SHA512_C") || (ncs && k.bool("PSA_WANT_ALG_SHA_512")),
            sha384: k.bool("MBEDTLS_SHA384_C"),
            hello_layout: if ncs {
                HelloLayout::Mbedtls31
            } else {
                HelloLayout::Mbedtls36
            },
        }
    }

    /// The J-PAKE implementation as far as extension 0x0100 is concerned: with the key exchange
    /// compiled out, the extension code is gone too.
    pub fn ecjpake_backend(&self) -> EcjpakeBackend {
        if self.ecjpake && self.ecjpake_alt {
            EcjpakeBackend::UncheckedAlt
        } else {
            EcjpakeBackend::Mbedtls
        }
    }

    /// Whether mbedtls has the key exchange of `suite` compiled in.
    fn has(&self, suite: CipherSuite) -> bool {
        match suite {
            CipherSuite::PSK_WITH_AES_128_CCM_8 => self.psk,
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8 => self.ecdhe_ecdsa,
            CipherSuite::ECJPAKE_WITH_AES_128_CCM_8 => self.ecjpake,
            _ => false,
        }
    }

    /// mbedtls' default suite list: `MBEDTLS_SSL_CIPHERSUITES` if set, else the compiled-in
    /// CCM-8 suites in the order of mbedtls' `ciphersuite_preference` (ECDHE-ECDSA, PSK,
    /// EC J-PAKE last).
    fn mbedtls_default_suites(&self) -> Vec<CipherSuite> {
        let base = if self.ssl_ciphersuites.is_empty() {
            vec![
                CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
                CipherSuite::PSK_WITH_AES_128_CCM_8,
                CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
            ]
        } else {
            self.ssl_ciphersuites.clone()
        };
        base.into_iter().filter(|s| self.has(*s)).collect()
    }

    /// `coaps` subcommands in OpenThread's (sorted) table order.
    pub fn commands(&self) -> Vec<&'static str> {
        let mut c = vec!["connect", "delete", "disconnect", "get"];
        if self.state_commands {
            c.extend(["isclosed", "isconnactive", "isconnected"]);
        }
        c.push("post");
        if self.psk {
            c.push("psk");
        }
        c.extend(["put", "resource", "set", "start", "stop"]);
        if self.ecdhe_ecdsa {
            c.push("x509");
        }
        c
    }
}

// -- credentials and the DTLS configuration -----------------------------------------------------

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

// -- the CLI app --------------------------------------------------------------------------------

/// What the app wants done.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CoapsActions {
    /// UDP datagrams to send from port 5684.
    pub sends: Vec<(SocketAddrV6, Vec<u8>)>,
    /// Console lines.
    pub lines: Vec<String>,
    /// An OpenThread assert fired: print `lines`, then the node resets.
    pub assert_reset: bool,
}

/// `Dtls::mState`, with the session it carries.
enum Session {
    Closed,
    Open,
    /// Connecting or connected to `peer`.
    Active {
        peer: SocketAddrV6,
        conn: Box<Connection>,
        connected: bool,
    },
    /// Disconnected; the guard time runs until `until`.
    CloseNotify {
        until: Instant,
    },
}

/// State of the CLI CoAPS example and the CoapSecure instance (RAM: lost on reboot).
pub struct CoapsApp {
    build: CoapsBuild,
    session: Session,
    creds: Credentials,
    verify_peer: bool,
    /// CoapSecure::mConnectedCallback: set by `coaps connect`, cleared by `coaps start`
    /// (`CoapSecure::Start` clears it after the CLI set it), so only a client prints
    /// `coaps connected` / `coaps disconnected`.
    connected_callback: bool,
    /// `coaps stop` during a session: stop once the disconnect is reported.
    shutdown: bool,
    resource: Option<String>,
    content: String,
    next_message_id: u16,
    pending: Vec<PendingRequest>,
    /// Transcripts of this boot's last sessions (at most [`MAX_TRANSCRIPTS`]), oldest first (the
    /// current one is added on export).
    transcripts: Vec<Transcript>,
}

fn v6_bytes(a: &SocketAddrV6) -> Vec<u8> {
    let mut v = a.ip().octets().to_vec();
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// Parse `coaps` command arguments the way `cli_coap_secure.cpp` does. Pure: no state, so the
/// parser can be tested on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `coaps` (no argument): print the table, InvalidArgs.
    Table,
    Help,
    Start {
        verify_peer: bool,
    },
    Stop,
    Psk {
        key: Vec<u8>,
        identity: Vec<u8>,
    },
    X509,
    Connect {
        peer: SocketAddrV6,
    },
    Disconnect,
    Resource(Option<String>),
    Set(Option<String>),
    Request {
        method: RequestType,
        uri: String,
        confirmable: bool,
        payload: Vec<u8>,
    },
    IsClosed,
    IsConnActive,
    IsConnected,
}

impl CoapsBuild {
    /// signature_algorithms as mbedtls 3.1 writes it: one ECDSA pair per hash of its default
    /// list, none without a certificate-based key exchange (`MBEDTLS_RSA_C` is off in both
    /// configurations, so there are no RSA pairs). OpenThread narrows the list only for EC
    /// J-PAKE sessions, which CoAPS never uses.
    pub fn signature_algorithms(&self) -> Vec<SignatureScheme> {
        if !self.ecdhe_ecdsa {
            return Vec::new();
        }
        [
            (self.sha512, SignatureScheme::ECDSA_SHA512),
            (self.sha384, SignatureScheme::ECDSA_SHA384),
            (true, SignatureScheme::ECDSA_SHA256),
        ]
        .into_iter()
        .filter_map(|(compiled, scheme)| compiled.then_some(scheme))
        .collect()
    }

    /// Parse one `coaps` command line (arguments after `coaps`).
    pub fn parse(&self, args: &[&str]) -> Result<Command, OtError> {
        let Some((&cmd, rest)) = args.split_first() else {
            return Ok(Command::Table);
        };
        if cmd == "help" {
            return Ok(Command::Help);
        }
        if !self.commands().contains(&cmd) {
            return Err(OtError::InvalidCommand);
        }
        let arg = |i: usize| rest.get(i).copied();
        match cmd {
            "start" => match arg(0) {
                None | Some("true") => Ok(Command::Start { verify_peer: true }),
                Some("false") => Ok(Command::Start { verify_peer: false }),
                // OpenThread 2024 also takes a maximum number of connection attempts (not
                // modelled beyond parsing: the session behaves as with no limit).
                Some(n) if self.state_commands => {
                    parse_u16(n)?;
                    Ok(Command::Start { verify_peer: true })
                }
                Some(_) => Err(OtError::InvalidArgs),
            },
            "stop" => Ok(Command::Stop),
            "psk" => {
                let (Some(key), Some(id)) = (arg(0), arg(1)) else {
                    return Err(OtError::InvalidArgs);
                };
                if key.len() > MAX_PSK_LENGTH || id.len() > MAX_PSK_ID_LENGTH {
                    return Err(OtError::InvalidArgs);
                }
                Ok(Command::Psk {
                    key: key.as_bytes().to_vec(),
                    identity: id.as_bytes().to_vec(),
                })
            }
            "x509" => Ok(Command::X509),
            "connect" => {
                let ip: Ipv6Addr = arg(0)
                    .unwrap_or("")
                    .parse()
                    .map_err(|_| OtError::InvalidArgs)?;
                let port = match arg(1) {
                    None => COAPS_PORT,
                    Some(p) => parse_u16(p)?,
                };
                Ok(Command::Connect {
                    peer: SocketAddrV6::new(ip, port, 0, 0),
                })
            }
            "disconnect" => Ok(Command::Disconnect),
            "resource" => match arg(0) {
                None => Ok(Command::Resource(None)),
                Some(u) if u.len() >= MAX_URI_LENGTH => Err(OtError::InvalidArgs),
                Some(u) => Ok(Command::Resource(Some(u.to_string()))),
            },
            // Only the first argument counts: `coaps set psk 123 pskid` sets the content "psk".
            "set" => match arg(0) {
                None => Ok(Command::Set(None)),
                Some(c) if c.len() >= MAX_CONTENT_LENGTH => Err(OtError::InvalidArgs),
                Some(c) => Ok(Command::Set(Some(c.to_string()))),
            },
            "get" | "put" | "post" | "delete" => {
                let method = match cmd {
                    "get" => RequestType::Get,
                    "put" => RequestType::Put,
                    "post" => RequestType::Post,
                    _ => RequestType::Delete,
                };
                let uri = arg(0).ok_or(OtError::InvalidArgs)?;
                if uri.len() >= MAX_URI_LENGTH {
                    return Err(OtError::InvalidArgs);
                }
                Ok(Command::Request {
                    method,
                    uri: uri.to_string(),
                    confirmable: arg(1) == Some("con"),
                    payload: arg(2).map(|p| p.as_bytes().to_vec()).unwrap_or_default(),
                })
            }
            "isclosed" => Ok(Command::IsClosed),
            "isconnactive" => Ok(Command::IsConnActive),
            "isconnected" => Ok(Command::IsConnected),
            _ => Err(OtError::InvalidCommand),
        }
    }
}

/// The UDP socket the session runs on (the Thread stack in the device, a queue in tests).
pub trait Udp {
    fn open(&mut self, port: u16) -> Result<(), OtError>;
    fn close(&mut self, port: u16);
    fn send(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: SocketAddrV6,
        payload: &[u8],
    ) -> Result<(), OtError>;
}

impl Udp for crate::net::Stack {
    fn open(&mut self, port: u16) -> Result<(), OtError> {
        self.udp_open(port)
    }
    fn close(&mut self, port: u16) {
        self.udp_close(port)
    }
    fn send(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: SocketAddrV6,
        payload: &[u8],
    ) -> Result<(), OtError> {
        self.udp_send(now, src_port, dst, payload)
    }
}

/// How a `coaps` command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoapsResult {
    /// Lines, then `Done`.
    Done(Vec<String>),
    /// Lines, then `Error N: Name`.
    Error(Vec<String>, OtError),
    /// An OpenThread assert fired: the lines are what the platform printed; the node resets.
    AssertReset(Vec<String>),
}

impl std::fmt::Debug for CoapsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.session {
            Session::Closed => "closed",
            Session::Open => "open",
            Session::Active {
                connected: false, ..
            } => "connecting",
            Session::Active { .. } => "connected",
            Session::CloseNotify { .. } => "close-notify",
        };
        f.debug_struct("CoapsApp")
            .field("state", &state)
            .field("credentials", &self.creds)
            .finish_non_exhaustive()
    }
}

impl CoapsApp {
    pub fn new(build: CoapsBuild) -> Self {
        CoapsApp {
            build,
            session: Session::Closed,
            creds: Credentials::None,
            verify_peer: true,
            connected_callback: false,
            shutdown: false,
            resource: None,
            content: "0".to_string(),
            next_message_id: rand::rng().random(),
            pending: Vec::new(),
            transcripts: Vec::new(),
        }
    }

    pub fn build(&self) -> &CoapsBuild {
        &self.build
    }

    /// The engine transcripts of this boot's sessions, oldest first, the running one last.
    pub fn transcripts(&self) -> Vec<Transcript> {
        let mut all = self.transcripts.clone();
        if let Session::Active { conn, .. } = &self.session {
            all.push(conn.transcript().clone());
        }
        all
    }

    fn is_connection_active(&self) -> bool {
        matches!(
            self.session,
            Session::Active { .. } | Session::CloseNotify { .. }
        )
    }

    fn is_connected(&self) -> bool {
        matches!(
            self.session,
            Session::Active {
                connected: true,
                ..
            }
        )
    }

    /// Run `coaps <args>`.
    pub fn execute(&mut self, args: &[&str], udp: &mut impl Udp, now: Instant) -> CoapsResult {
        let table = || {
            self.build
                .commands()
                .iter()
                .map(|c| c.to_string())
                .collect()
        };
        let cmd = match self.build.parse(args) {
            Ok(c) => c,
            Err(e) => return CoapsResult::Error(Vec::new(), e),
        };
        let done = |lines: Vec<String>| CoapsResult::Done(lines);
        let fail = |e: OtError| CoapsResult::Error(Vec::new(), e);
        let yes_no = |b: bool| done(vec![if b { "yes" } else { "no" }.to_string()]);
        match cmd {
            Command::Table => CoapsResult::Error(table(), OtError::InvalidArgs),
            Command::Help => done(table()),
            Command::Start { verify_peer } => {
                self.verify_peer = verify_peer;
                self.connected_callback = false;
                if !matches!(self.session, Session::Closed) {
                    return fail(OtError::Already);
                }
                match udp.open(COAPS_PORT) {
                    Ok(()) | Err(OtError::Already) => {}
                    Err(e) => return fail(e),
                }
                self.session = Session::Open;
                done(Vec::new())
            }
            Command::Stop => {
                self.resource = None;
                if self.is_connection_active() {
                    let mut out = CoapsActions::default();
                    self.disconnect(now, &mut out);
                    self.flush(udp, now, &mut out);
                    self.shutdown = true;
                } else {
                    self.close(udp);
                }
                done(Vec::new())
            }
            Command::Psk { key, identity } => {
                self.creds = Credentials::Psk { key, identity };
                done(Vec::new())
            }
            Command::X509 => {
                self.creds = Credentials::X509;
                done(Vec::new())
            }
            Command::Connect { peer } => {
                self.connected_callback = true;
                if !matches!(self.session, Session::Open) {
                    return fail(OtError::InvalidState);
                }
                if self.creds == Credentials::None
                    && self.build.no_credentials == NoCredentials::Assert
                {
                    return CoapsResult::AssertReset(vec![format!(
                        "assert failed at {UNSPECIFIED_SUITE_ASSERT}"
                    )]);
                }
                match self.setup(true, peer, now) {
                    Ok(conn) => {
                        self.session = Session::Active {
                            peer,
                            conn: Box::new(conn),
                            connected: false,
                        };
                        let mut out = CoapsActions::default();
                        self.drive(now, &mut out);
                        self.flush(udp, now, &mut out);
                        CoapsResult::Done(out.lines)
                    }
                    Err(e) => fail(e.ot_error()),
                }
            }
            Command::Disconnect => {
                let mut out = CoapsActions::default();
                self.disconnect(now, &mut out);
                self.flush(udp, now, &mut out);
                done(Vec::new())
            }
            Command::Resource(None) => done(vec![self.resource.clone().unwrap_or_default()]),
            Command::Resource(Some(u)) => {
                self.resource = Some(u);
                done(Vec::new())
            }
            Command::Set(None) => done(vec![self.content.clone()]),
            Command::Set(Some(c)) => {
                self.content = c;
                done(Vec::new())
            }
            Command::Request {
                method,
                uri,
                confirmable,
                payload,
            } => match self.request(now, method, &uri, confirmable, &payload) {
                Ok(mut out) => {
                    self.flush(udp, now, &mut out);
                    done(Vec::new())
                }
                Err(e) => fail(e),
            },
            Command::IsClosed => yes_no(matches!(self.session, Session::Closed)),
            Command::IsConnActive => yes_no(self.is_connection_active()),
            Command::IsConnected => yes_no(self.is_connected()),
        }
    }

    /// `Dtls::Setup`: the engine connection for this session.
    fn setup(
        &self,
        client: bool,
        peer: SocketAddrV6,
        now: Instant,
    ) -> Result<Connection, SetupError> {
        let config = Arc::new(dtls_config(&self.build, &self.creds, self.verify_peer)?);
        let conn = if client {
            Connection::client(config, now)
        } else {
            Connection::server(config, now, &v6_bytes(&peer))
        };
        conn.map_err(|e| SetupError::Engine(e.to_string()))
    }

    /// `Dtls::Disconnect`: close_notify when connected, then the guard time.
    fn disconnect(&mut self, now: Instant, out: &mut CoapsActions) {
        if let Session::Active { conn, peer, .. } = &mut self.session {
            if conn.is_connected() {
                conn.close();
            }
            while let Some(d) = conn.poll_transmit() {
                out.sends.push((*peer, d));
            }
            let transcript = conn.transcript().clone();
            self.keep_transcript(transcript);
            self.session = Session::CloseNotify {
                until: now + GUARD_TIME,
            };
            self.pending.clear();
        }
    }

    fn keep_transcript(&mut self, transcript: Transcript) {
        if self.transcripts.len() >= MAX_TRANSCRIPTS {
            self.transcripts.remove(0);
        }
        self.transcripts.push(transcript);
    }

    /// `Dtls::Close` + `CoapSecure::Stop`.
    fn close(&mut self, udp: &mut impl Udp) {
        if let Session::Active { conn, .. } = &self.session {
            let transcript = conn.transcript().clone();
            self.keep_transcript(transcript);
        }
        if !matches!(self.session, Session::Closed) {
            udp.close(COAPS_PORT);
        }
        self.session = Session::Closed;
        self.pending.clear();
    }

    /// Send what the session produced; the caller prints `out.lines`.
    fn flush(&mut self, udp: &mut impl Udp, now: Instant, out: &mut CoapsActions) {
        for (to, bytes) in out.sends.drain(..) {
            // A datagram the stack cannot send is lost, as on the air; DTLS retransmits.
            let _ = udp.send(now, COAPS_PORT, to, &bytes);
        }
    }

    /// Move the engine's datagrams and events into actions (`Dtls::Process`).
    fn drive(&mut self, now: Instant, out: &mut CoapsActions) {
        let mut app_data = Vec::new();
        let mut ended = false;
        if let Session::Active {
            peer,
            conn,
            connected,
        } = &mut self.session
        {
            while let Some(d) = conn.poll_transmit() {
                out.sends.push((*peer, d));
            }
            while let Some(ev) = conn.poll_event() {
                match ev {
                    Event::Connected { .. } => {
                        *connected = true;
                        if self.connected_callback {
                            out.lines.push("coaps connected".to_string());
                        }
                    }
                    Event::ApplicationData(d) => app_data.push(d),
                    // Peer close_notify, a fatal alert, our own handshake failure or a
                    // handshake timeout: OpenThread disconnects in every case.
                    Event::Closed | Event::Failed { .. } => ended = true,
                }
            }
        }
        for d in app_data {
            self.handle_coap(now, &d, out);
        }
        if ended {
            self.disconnect(now, out);
        }
    }

    /// A UDP datagram for port 5684 (`Dtls::HandleUdpReceive`). Returns lines to print.
    pub fn handle_datagram(
        &mut self,
        src: SocketAddrV6,
        payload: &[u8],
        udp: &mut impl Udp,
        now: Instant,
    ) -> Vec<String> {
        let mut out = CoapsActions::default();
        match &self.session {
            Session::Closed | Session::CloseNotify { .. } => return Vec::new(),
            Session::Open => match self.setup(false, src, now) {
                Ok(conn) => {
                    self.session = Session::Active {
                        peer: src,
                        conn: Box::new(conn),
                        connected: false,
                    };
                }
                // A server without credentials drops the datagram (SuccessOrExit(Setup(false))).
                Err(_) => return Vec::new(),
            },
            // Once a session started, only its peer is heard.
            Session::Active { peer, .. } if *peer != src => return Vec::new(),
            Session::Active { .. } => {}
        }
        if let Session::Active { conn, .. } = &mut self.session {
            conn.handle_datagram(now, payload);
        }
        self.drive(now, &mut out);
        self.flush(udp, now, &mut out);
        out.lines
    }

    /// Timers: DTLS retransmission, the guard time, CoAP retransmission. Returns lines.
    pub fn poll(&mut self, udp: &mut impl Udp, now: Instant) -> Vec<String> {
        let mut out = CoapsActions::default();
        if let Session::Active { conn, .. } = &mut self.session
            && conn.next_timeout().is_some_and(|t| t <= now)
        {
            conn.handle_timeout(now);
        }
        self.drive(now, &mut out);
        if let Session::CloseNotify { until } = self.session
            && until <= now
        {
            self.session = Session::Open;
            if self.connected_callback {
                out.lines.push("coaps disconnected".to_string());
                if self.shutdown {
                    self.shutdown = false;
                    self.close(udp);
                }
            }
        }
        self.poll_requests(now, &mut out);
        self.flush(udp, now, &mut out);
        out.lines
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let session = match &self.session {
            Session::Active { conn, .. } => conn.next_timeout(),
            Session::CloseNotify { until } => Some(*until),
            _ => None,
        };
        let requests = self.pending.iter().map(|p| p.deadline).min();
        [session, requests].into_iter().flatten().min()
    }

    // -- CoAP over the session --

    /// Queue application data on the session.
    fn send_app(&mut self, bytes: &[u8], out: &mut CoapsActions) -> Result<(), OtError> {
        match &mut self.session {
            Session::Active {
                conn,
                peer,
                connected: true,
            } => {
                conn.send(bytes).map_err(|_| OtError::InvalidState)?;
                while let Some(d) = conn.poll_transmit() {
                    out.sends.push((*peer, d));
                }
                Ok(())
            }
            _ => Err(OtError::InvalidState),
        }
    }

    /// `ProcessRequest` + `CoapSecure::SendMessage` (InvalidState unless connected).
    fn request(
        &mut self,
        now: Instant,
        method: RequestType,
        uri: &str,
        confirmable: bool,
        payload: &[u8],
    ) -> Result<CoapsActions, OtError> {
        let peer = match self.peer() {
            Some(peer) if self.is_connected() => peer,
            _ => return Err(OtError::InvalidState),
        };
        let message_id = take_message_id(&mut self.next_message_id);
        let (bytes, pending) =
            new_request(now, peer, method, confirmable, message_id, uri, payload)?;
        let mut out = CoapsActions::default();
        self.send_app(&bytes, &mut out)?;
        self.pending.extend(pending);
        Ok(out)
    }

    fn poll_requests(&mut self, now: Instant, out: &mut CoapsActions) {
        for due in poll_pending(&mut self.pending, now) {
            match due {
                // Over the session, to its one peer.
                PendingDue::Retransmit { bytes, .. } => {
                    let _ = self.send_app(&bytes, out);
                }
                PendingDue::TimedOut => out.lines.push(format!(
                    "coaps receive response error {}",
                    error_text(OtError::ResponseTimeout)
                )),
            }
        }
    }

    fn peer(&self) -> Option<SocketAddrV6> {
        match &self.session {
            Session::Active { peer, .. } => Some(*peer),
            _ => None,
        }
    }

    /// A CoAP message that arrived over the session.
    fn handle_coap(&mut self, now: Instant, bytes: &[u8], out: &mut CoapsActions) {
        let (Ok(packet), Some(peer)) = (coap::decode(bytes), self.peer()) else {
            return;
        };
        match packet.header.code {
            MessageClass::Request(method) => self.handle_request(&packet, method, peer, out),
            MessageClass::Response(_) => {
                let token = packet.get_token().to_vec();
                if let Some(i) = self.pending.iter().position(|p| p.token == token) {
                    self.pending.swap_remove(i);
                    if packet.header.get_type() == MessageType::Confirmable
                        && let Ok(b) = coap::encode(&coap::empty_ack(packet.header.message_id))
                    {
                        let _ = self.send_app(&b, out);
                    }
                    out.lines.push(format!(
                        "coaps response from {}{}",
                        ot_ip6(peer.ip()),
                        with_payload(&packet.payload)
                    ));
                }
            }
            MessageClass::Empty => {
                if packet.header.get_type() == MessageType::Acknowledgement {
                    for p in &mut self.pending {
                        if p.message_id == packet.header.message_id {
                            p.acknowledge(now);
                        }
                    }
                }
            }
            MessageClass::Reserved(_) => {}
        }
    }

    /// `CoapSecure::HandleRequest` for the resource; other URIs get 4.04 when confirmable.
    fn handle_request(
        &mut self,
        request: &Packet,
        method: RequestType,
        peer: SocketAddrV6,
        out: &mut CoapsActions,
    ) {
        let confirmable = request.header.get_type() == MessageType::Confirmable;
        let ours = self
            .resource
            .as_deref()
            .is_some_and(|r| r == coap::uri_path(request));
        if !ours {
            if confirmable {
                let mut r = coap::response_to(request, ResponseType::NotFound, 0, &[]);
                r.header.set_type(MessageType::Acknowledgement);
                r.header.message_id = request.header.message_id;
                if let Ok(b) = coap::encode(&r) {
                    let _ = self.send_app(&b, out);
                }
            }
            return;
        }
        let Some(name) = method_name(method) else {
            out.lines.push(format!(
                "coaps request from {} Undefined",
                ot_ip6(peer.ip())
            ));
            return;
        };
        out.lines.push(format!(
            "coaps request from {} {name}{}",
            ot_ip6(peer.ip()),
            with_payload(&request.payload)
        ));
        if !(confirmable || method == RequestType::Get) {
            return;
        }
        // otCoapMessageInitResponse(..., OT_COAP_TYPE_ACKNOWLEDGMENT, CONTENT or VALID).
        let (code, payload) = if method == RequestType::Get {
            (ResponseType::Content, self.content.clone().into_bytes())
        } else {
            (ResponseType::Valid, Vec::new())
        };
        let mut response = coap::response_to(request, code, 0, &payload);
        response.header.set_type(MessageType::Acknowledgement);
        response.header.message_id = request.header.message_id;
        let sent = coap::encode(&response)
            .map_err(|_| OtError::NoBufs)
            .and_then(|b| self.send_app(&b, out));
        match sent {
            Ok(()) => out.lines.push("coaps response sent".to_string()),
            Err(e) => out
                .lines
                .push(format!("coaps send response error {}", error_text(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::Manifest;
    use std::path::Path;

    fn build(variant: &str) -> CoapsBuild {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../variants")
            .join(format!("{variant}.toml"));
        let m = Manifest::load(&path).unwrap();
        assert!(
            m.kconfig.warnings().is_empty(),
            "{:?}",
            m.kconfig.warnings()
        );
        CoapsBuild::from_kconfig(m.profile, &m.kconfig)
    }

    /// A UDP socket that records what is sent.
    #[derive(Default)]
    struct Queue {
        open: bool,
        sent: Vec<(SocketAddrV6, Vec<u8>)>,
    }

    impl Udp for Queue {
        fn open(&mut self, _port: u16) -> Result<(), OtError> {
            self.open = true;
            Ok(())
        }
        fn close(&mut self, _port: u16) {
            self.open = false;
        }
        fn send(
            &mut self,
            _now: Instant,
            _src_port: u16,
            dst: SocketAddrV6,
            payload: &[u8],
        ) -> Result<(), OtError> {
            self.sent.push((dst, payload.to_vec()));
            Ok(())
        }
    }

    fn addr(last: u16) -> SocketAddrV6 {
        SocketAddrV6::new(
            Ipv6Addr::new(0xfdde, 0xad00, 0xbeef, 0, 1, 2, 3, last),
            COAPS_PORT,
            0,
            0,
        )
    }

    /// Two boards: index 0 = server (addr 1), 1 = client (addr 2).
    struct Pair {
        apps: [CoapsApp; 2],
        udp: [Queue; 2],
        lines: [Vec<String>; 2],
        now: Instant,
    }

    impl Pair {
        fn new(b: &CoapsBuild) -> Pair {
            Pair {
                apps: [CoapsApp::new(b.clone()), CoapsApp::new(b.clone())],
                udp: [Queue::default(), Queue::default()],
                lines: [Vec::new(), Vec::new()],
                now: Instant::now(),
            }
        }

        fn run(&mut self, node: usize, line: &str) -> CoapsResult {
            let args: Vec<&str> = line.split_whitespace().collect();
            let r = self.apps[node].execute(&args, &mut self.udp[node], self.now);
            self.pump();
            r
        }

        /// Deliver datagrams until quiet; then let timers run up to `secs` seconds.
        fn pump(&mut self) {
            for _ in 0..200 {
                let mut moved = false;
                for from in 0..2 {
                    let to = 1 - from;
                    let src = addr(from as u16 + 1);
                    for (dst, d) in std::mem::take(&mut self.udp[from].sent) {
                        moved = true;
                        if dst.ip() == addr(to as u16 + 1).ip() && self.udp[to].open {
                            let l =
                                self.apps[to].handle_datagram(src, &d, &mut self.udp[to], self.now);
                            self.lines[to].extend(l);
                        }
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        fn advance(&mut self, by: Duration) {
            let end = self.now + by;
            loop {
                let next = self.apps.iter().filter_map(CoapsApp::next_deadline).min();
                match next {
                    Some(t) if t <= end => {
                        self.now = t.max(self.now);
                        for i in 0..2 {
                            let l = self.apps[i].poll(&mut self.udp[i], self.now);
                            self.lines[i].extend(l);
                        }
                        self.pump();
                    }
                    _ => break,
                }
            }
            self.now = end;
        }
    }

    fn done() -> CoapsResult {
        CoapsResult::Done(Vec::new())
    }

    #[test]
    fn kconfig_feeds_the_build() {
        let stock = build("ncs-v2.2.0");
        assert!(!stock.psk && stock.ecdhe_ecdsa && stock.ecjpake && stock.ecjpake_alt);
        assert_eq!(stock.heap_size, Some(10240));
        assert_eq!(stock.ecjpake_backend(), EcjpakeBackend::UncheckedAlt);
        assert_eq!(stock.no_credentials, NoCredentials::InvalidArgs);
        assert_eq!(build("ncs-v2.1.0"), stock);
        let wa = build("ncs-v2.2.0-workaround");
        assert!(!wa.ecjpake);
        assert_eq!(wa.heap_size, Some(15200));
        assert_eq!(
            wa.ssl_ciphersuites,
            vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8]
        );
        assert!(wa.unknown_ciphersuites.is_empty());
        assert_eq!(wa.ecjpake_backend(), EcjpakeBackend::Mbedtls);
        assert!(build("ncs-v2.2.0-psk").psk);
        let up = build("upstream");
        assert!(up.psk && !up.ecjpake_alt && up.heap_size.is_none() && up.state_commands);
        assert_eq!(up.no_credentials, NoCredentials::Assert);
    }

    #[test]
    fn cli_parsing_follows_cli_coap_secure() {
        let stock = build("ncs-v2.2.0");
        let psk = build("ncs-v2.2.0-psk");
        assert_eq!(
            stock.parse(&["psk", "123", "pskid"]),
            Err(OtError::InvalidCommand)
        );
        assert_eq!(
            psk.parse(&["psk", "123", "pskid"]),
            Ok(Command::Psk {
                key: b"123".to_vec(),
                identity: b"pskid".to_vec()
            })
        );
        assert_eq!(psk.parse(&["psk", "123"]), Err(OtError::InvalidArgs));
        assert_eq!(
            psk.parse(&["psk", &"k".repeat(33), "id"]),
            Err(OtError::InvalidArgs)
        );
        // The report's `coaps set psk 123 pskid` only sets the resource content.
        assert_eq!(
            stock.parse(&["set", "psk", "123", "pskid"]),
            Ok(Command::Set(Some("psk".into())))
        );
        assert_eq!(
            stock.parse(&["set", &"c".repeat(16)]),
            Err(OtError::InvalidArgs)
        );
        assert_eq!(stock.parse(&[]), Ok(Command::Table));
        assert_eq!(stock.parse(&["help"]), Ok(Command::Help));
        assert_eq!(
            stock.parse(&["start"]),
            Ok(Command::Start { verify_peer: true })
        );
        assert_eq!(
            stock.parse(&["start", "false"]),
            Ok(Command::Start { verify_peer: false })
        );
        assert_eq!(
            stock.parse(&["start", "something_invalid"]),
            Err(OtError::InvalidArgs)
        );
        assert_eq!(
            stock.parse(&["connect", "nonsense"]),
            Err(OtError::InvalidArgs)
        );
        assert_eq!(
            stock.parse(&["connect", "fdde:ad00:beef::1", "5685"]),
            Ok(Command::Connect {
                peer: SocketAddrV6::new("fdde:ad00:beef::1".parse().unwrap(), 5685, 0, 0)
            })
        );
        assert_eq!(stock.parse(&["get"]), Err(OtError::InvalidArgs));
        assert_eq!(
            stock.parse(&["post", "test/resource", "con", "Testing123"]),
            Ok(Command::Request {
                method: RequestType::Post,
                uri: "test/resource".into(),
                confirmable: true,
                payload: b"Testing123".to_vec()
            })
        );
        assert_eq!(stock.parse(&["isconnected"]), Err(OtError::InvalidCommand));
        assert_eq!(stock.parse(&["start", "3"]), Err(OtError::InvalidArgs));
        let up = build("upstream");
        assert_eq!(
            up.parse(&["start", "3"]),
            Ok(Command::Start { verify_peer: true })
        );
        assert_eq!(
            up.parse(&["start", "something_invalid"]),
            Err(OtError::InvalidArgs)
        );
        assert_eq!(up.parse(&["isconnected"]), Ok(Command::IsConnected));
        assert_eq!(stock.parse(&["frob"]), Err(OtError::InvalidCommand));
        assert_eq!(
            stock.commands(),
            vec![
                "connect",
                "delete",
                "disconnect",
                "get",
                "post",
                "put",
                "resource",
                "set",
                "start",
                "stop",
                "x509"
            ]
        );
        assert!(psk.commands().contains(&"psk"));
        assert!(!build("ncs-v2.2.0-workaround").commands().contains(&"psk"));
    }

    #[test]
    fn dtls_config_from_build() {
        let stock = build("ncs-v2.2.0");
        assert_eq!(
            dtls_config(&stock, &Credentials::None, true).unwrap_err(),
            SetupError::NoSuite
        );
        let c = dtls_config(&stock, &Credentials::X509, true).unwrap();
        assert_eq!(c.suites, vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8]);
        assert_eq!(c.ecjpake_backend, EcjpakeBackend::UncheckedAlt);
        assert!(c.verify_peer && c.certificate.is_some() && c.trusted_roots.len() == 1);
        // Parsed credentials take their share of the mbedtls heap.
        let limit = c.heap_limit.unwrap();
        assert!(limit < 10240 && limit > 5000, "{limit}");
        let wa = dtls_config(&build("ncs-v2.2.0-workaround"), &Credentials::X509, false).unwrap();
        assert_eq!(wa.ecjpake_backend, EcjpakeBackend::Mbedtls);
        assert!(!wa.verify_peer);
        assert_eq!(wa.heap_limit.unwrap(), limit + 15200 - 10240);
        let p = dtls_config(
            &build("ncs-v2.2.0-psk"),
            &Credentials::Psk {
                key: b"123".to_vec(),
                identity: b"pskid".to_vec(),
            },
            true,
        )
        .unwrap();
        assert_eq!(p.suites, vec![CipherSuite::PSK_WITH_AES_128_CCM_8]);
        assert!(!p.verify_peer);
        // The vendor's literal reading: mbedtls' list reaches the session.
        let mut literal = stock.clone();
        literal.suite_list = SuiteListSource::Mbedtls;
        literal.ssl_ciphersuites = vec![
            CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
        ];
        assert_eq!(
            dtls_config(&literal, &Credentials::X509, true)
                .unwrap()
                .suites,
            literal.ssl_ciphersuites
        );
    }

    /// The vendor wrote that the server picks the EC J-PAKE suite. Across every combination of
    /// the symbols this model reads for suite selection (whose list reaches the session, the
    /// order of `MBEDTLS_SSL_CIPHERSUITES`, whose preference wins, mbedtls' extension rule for
    /// J-PAKE or a relaxed one, Oberon's J-PAKE or mbedtls'), an X.509 server never chooses it:
    /// either J-PAKE is not offered (mbedtls' J-PAKE without a password), or the offered
    /// extension's round one fails before any suite is chosen (Oberon's).
    #[test]
    fn no_modelled_build_lets_an_x509_server_choose_ecjpake() {
        const JPAKE: CipherSuite = CipherSuite::ECJPAKE_WITH_AES_128_CCM_8;
        const ECDHE: CipherSuite = CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8;
        let stock = build("ncs-v2.2.0");
        let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
        for suite_list in [SuiteListSource::OpenThread, SuiteListSource::Mbedtls] {
            for order in [vec![], vec![JPAKE, ECDHE], vec![ECDHE, JPAKE]] {
                for preference in [SuitePreference::Server, SuitePreference::Client] {
                    for ecjpake_needs_kkpp in [true, false] {
                        for ecjpake_alt in [true, false] {
                            let b = CoapsBuild {
                                suite_list,
                                ssl_ciphersuites: order.clone(),
                                preference,
                                ecjpake_needs_kkpp,
                                ecjpake_alt,
                                ..stock.clone()
                            };
                            let outcome = x509_server_decision(&b);
                            assert_ne!(outcome, format!("chose {JPAKE:?}"), "{b:?}");
                            *outcomes.entry(outcome).or_default() += 1;
                        }
                    }
                }
            }
        }
        // Both ways a server can answer occur, so the loop really ran the handshakes.
        assert_eq!(
            outcomes.keys().cloned().collect::<Vec<_>>(),
            vec![
                format!("chose {ECDHE:?}"),
                format!(
                    "failed: {:?}",
                    Some(ot_hil_dtls::AlertDescription::ILLEGAL_PARAMETER)
                ),
            ],
            "{outcomes:?}"
        );
    }

    /// Run an X.509 hello exchange between two boards of build `b` until the server chose a
    /// suite or failed.
    fn x509_server_decision(b: &CoapsBuild) -> String {
        let now = Instant::now();
        let config = |verify| Arc::new(dtls_config(b, &Credentials::X509, verify).unwrap());
        let mut client = Connection::client(config(true), now).unwrap();
        let mut server = Connection::server(config(true), now, b"client").unwrap();
        for _ in 0..10 {
            let mut moved = false;
            while let Some(d) = client.poll_transmit() {
                server.handle_datagram(now, &d);
                moved = true;
            }
            if let Some(suite) = server.suite() {
                return format!("chose {suite:?}");
            }
            while let Some(e) = server.poll_event() {
                if let Event::Failed { alert, .. } = e {
                    return format!("failed: {alert:?}");
                }
            }
            while let Some(d) = server.poll_transmit() {
                client.handle_datagram(now, &d);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        "no decision".into()
    }

    /// What the hellos carry follows the build: nrf_security's defaults on NCS, OpenThread's own
    /// mbedtls config upstream, and a Kconfig line changes it.
    #[test]
    fn hello_settings_follow_the_build() {
        use SignatureScheme as S;
        let ncs = dtls_config(&build("ncs-v2.2.0"), &Credentials::X509, true).unwrap();
        assert!(ncs.extended_master_secret && ncs.encrypt_then_mac);
        assert_eq!(
            ncs.signature_algorithms,
            vec![S::ECDSA_SHA512, S::ECDSA_SHA256]
        );
        assert_eq!(ncs.hello_layout, HelloLayout::Mbedtls31);
        let up = dtls_config(&build("upstream"), &Credentials::X509, true).unwrap();
        assert!(!up.extended_master_secret && !up.encrypt_then_mac);
        assert_eq!(up.signature_algorithms, vec![S::ECDSA_SHA256]);
        assert_eq!(up.hello_layout, HelloLayout::Mbedtls36);
        let k = Kconfig::parse(
            Path::new("overlay.conf"),
            "CONFIG_PSA_WANT_ALG_SHA_512=n\n\
             CONFIG_MBEDTLS_SHA384_C=y\n\
             CONFIG_MBEDTLS_SSL_EXTENDED_MASTER_SECRET=n\n",
        )
        .unwrap();
        assert!(k.warnings().is_empty(), "{:?}", k.warnings());
        let b = CoapsBuild::from_kconfig(Profile::Ncs, &k);
        let c = dtls_config(&b, &Credentials::X509, true).unwrap();
        assert!(!c.extended_master_secret && c.encrypt_then_mac);
        assert_eq!(
            c.signature_algorithms,
            vec![S::ECDSA_SHA384, S::ECDSA_SHA256]
        );
        // Without a certificate-based key exchange there is no signature_algorithms at all.
        let no_cert = CoapsBuild {
            ecdhe_ecdsa: false,
            psk: true,
            ..build("ncs-v2.2.0")
        };
        let psk = Credentials::Psk {
            key: b"secret".to_vec(),
            identity: b"id".to_vec(),
        };
        assert!(
            dtls_config(&no_cert, &psk, true)
                .unwrap()
                .signature_algorithms
                .is_empty()
        );
    }

    #[test]
    fn model_symbols_feed_the_selection_rule() {
        let k = Kconfig::parse(
            Path::new("literal.conf"),
            "CONFIG_VDK_COAPS_SUITE_LIST=\"mbedtls\"\n\
             CONFIG_VDK_DTLS_SUITE_PREFERENCE=\"client\"\n\
             CONFIG_VDK_DTLS_ECJPAKE_NEEDS_KKPP=n\n\
             CONFIG_MBEDTLS_ECJPAKE_ALT=n\n\
             CONFIG_MBEDTLS_SSL_CIPHERSUITES=\"MBEDTLS_TLS_ECJPAKE_WITH_AES_128_CCM_8, MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,TLS-PSK-WITH-AES-128-CCM-8\"\n",
        )
        .unwrap();
        assert!(k.warnings().is_empty(), "{:?}", k.warnings());
        let b = CoapsBuild::from_kconfig(Profile::Ncs, &k);
        assert_eq!(b.unknown_ciphersuites, vec!["TLS-PSK-WITH-AES-128-CCM-8"]);
        let c = dtls_config(&b, &Credentials::X509, true).unwrap();
        assert_eq!(
            c.suites,
            vec![
                CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
                CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
            ]
        );
        assert_eq!(c.preference, SuitePreference::Client);
        assert!(!c.ecjpake_requires_extension_and_password);
        assert_eq!(c.ecjpake_backend, EcjpakeBackend::Mbedtls);
        // The defaults are the evidence model.
        let d = dtls_config(&build("ncs-v2.2.0"), &Credentials::X509, true).unwrap();
        assert_eq!(d.preference, SuitePreference::Server);
        assert!(d.ecjpake_requires_extension_and_password);
        let psk = Credentials::Psk {
            key: b"secret".to_vec(),
            identity: b"id".to_vec(),
        };
        assert!(!format!("{psk:?}").contains("secret"));
    }

    fn serve_and_connect(p: &mut Pair, creds: &str) {
        for n in 0..2 {
            assert_eq!(p.run(n, creds), done());
            assert_eq!(p.run(n, "start"), done());
        }
        assert_eq!(p.run(0, "resource test-resource"), done());
        assert_eq!(p.run(0, "set hello"), done());
        let target = format!("connect {}", addr(1).ip());
        assert_eq!(p.run(1, &target), done());
    }

    #[test]
    fn psk_connect_and_get() {
        let mut p = Pair::new(&build("ncs-v2.2.0-psk"));
        serve_and_connect(&mut p, "psk 123 pskid");
        assert_eq!(p.lines[1], vec!["coaps connected"]);
        assert!(
            p.lines[0].is_empty(),
            "the server prints no connect line: {:?}",
            p.lines[0]
        );
        assert_eq!(p.run(1, "get test-resource"), done());
        assert_eq!(
            p.lines[0],
            vec![
                "coaps request from fdde:ad00:beef:0:1:2:3:2 GET",
                "coaps response sent"
            ]
        );
        assert_eq!(
            p.lines[1][1],
            "coaps response from fdde:ad00:beef:0:1:2:3:1 with payload: 68656c6c6f"
        );
        assert_eq!(p.run(1, "disconnect"), done());
        p.advance(Duration::from_secs(3));
        assert_eq!(p.lines[1].last().unwrap(), "coaps disconnected");
        assert!(p.apps[1].transcripts().len() == 1);
    }

    #[test]
    fn con_request_without_answer_times_out() {
        let mut p = Pair::new(&build("ncs-v2.2.0-psk"));
        serve_and_connect(&mut p, "psk 123 pskid");
        // The server hears nothing more: the request and its 4 retransmissions go unanswered.
        p.udp[0].open = false;
        let start = p.now;
        assert_eq!(p.run(1, "post test-resource con x"), done());
        let timeout = "coaps receive response error 28: ResponseTimeout";
        p.advance(Duration::from_secs(61));
        assert!(!p.lines[1].iter().any(|l| l == timeout), "{:?}", p.lines[1]);
        // 2..3 s initial, doubled 4 times: 62..93 s in total.
        p.advance(Duration::from_secs(93 - 61));
        assert_eq!(p.lines[1].last().map(String::as_str), Some(timeout));
        assert!(p.now - start >= Duration::from_secs(62));
    }

    #[test]
    fn transcripts_keep_the_last_sessions() {
        let mut p = Pair::new(&build("ncs-v2.2.0-psk"));
        serve_and_connect(&mut p, "psk 123 pskid");
        let target = format!("connect {}", addr(1).ip());
        for _ in 0..MAX_TRANSCRIPTS + 3 {
            assert_eq!(p.run(1, "disconnect"), done());
            p.advance(Duration::from_secs(3));
            assert_eq!(p.run(1, &target), done());
        }
        let t = p.apps[1].transcripts();
        // The kept sessions plus the running one.
        assert_eq!(t.len(), MAX_TRANSCRIPTS + 1);
        assert_eq!(p.apps[0].transcripts().len(), MAX_TRANSCRIPTS + 1);
    }

    #[test]
    fn x509_on_stock_ncs_disconnects_with_illegal_parameter() {
        let mut p = Pair::new(&build("ncs-v2.2.0"));
        serve_and_connect(&mut p, "x509");
        assert!(p.lines[1].is_empty());
        p.advance(Duration::from_secs(3));
        assert_eq!(p.lines[1], vec!["coaps disconnected"]);
        let t = &p.apps[1].transcripts()[0];
        let json = serde_json::to_string(t).unwrap();
        assert!(
            json.contains("ILLEGAL_PARAMETER") || json.contains("illegal_parameter"),
            "{json}"
        );
    }

    /// CONFIG_MBEDTLS_HEAP_SIZE against the engine's accounted handshake peak plus the parsed
    /// credentials: without EC J-PAKE the default 10240 bytes are enough for X.509 in this
    /// model; a heap that cannot hold the handshake ends it (internal_error -> disconnect).
    #[test]
    fn heap_size_limits_the_handshake() {
        let mut b = build("ncs-v2.2.0-workaround");
        b.heap_size = Some(10240);
        let mut p = Pair::new(&b);
        serve_and_connect(&mut p, "x509");
        assert_eq!(p.lines[1], vec!["coaps connected"]);
        let limit = dtls_config(&b, &Credentials::X509, true)
            .unwrap()
            .heap_limit
            .unwrap();
        let peaks: Vec<usize> = p
            .apps
            .iter()
            .filter_map(|a| match &a.session {
                Session::Active { conn, .. } => Some(conn.peak_handshake_bytes()),
                _ => None,
            })
            .collect();
        assert_eq!(peaks.len(), 2, "both sides hold a session");
        for &peak in &peaks {
            assert!(peak > 4000 && peak < limit, "peak {peak} limit {limit}");
        }
        // The figures firmware/README.md quotes (`--nocapture` shows them).
        println!(
            "x509 handshake peak per side (server, client): {peaks:?} bytes; parsed credentials {} bytes",
            10240 - limit
        );
        b.heap_size = Some(6144);
        let mut p = Pair::new(&b);
        serve_and_connect(&mut p, "x509");
        p.advance(Duration::from_secs(3));
        assert_eq!(p.lines[1], vec!["coaps disconnected"]);
    }

    #[test]
    fn x509_with_workaround_connects_and_gets() {
        let mut p = Pair::new(&build("ncs-v2.2.0-workaround"));
        serve_and_connect(&mut p, "x509");
        assert_eq!(p.lines[1], vec!["coaps connected"]);
        assert_eq!(p.run(1, "get test-resource"), done());
        assert!(
            p.lines[1][1].starts_with("coaps response from"),
            "{:?}",
            p.lines[1]
        );
    }

    #[test]
    fn connect_without_credentials() {
        let mut p = Pair::new(&build("ncs-v2.2.0"));
        assert_eq!(
            p.run(1, &format!("connect {}", addr(1).ip())),
            CoapsResult::Error(vec![], OtError::InvalidState)
        );
        assert_eq!(p.run(1, "start"), done());
        assert_eq!(
            p.run(1, "start false"),
            CoapsResult::Error(vec![], OtError::Already)
        );
        assert_eq!(
            p.run(1, &format!("connect {}", addr(1).ip())),
            CoapsResult::Error(vec![], OtError::InvalidArgs)
        );
        assert!(p.udp[1].sent.is_empty());
        let mut up = Pair::new(&build("upstream"));
        assert_eq!(up.run(1, "start"), done());
        assert!(matches!(
            up.run(1, &format!("connect {}", addr(1).ip())),
            CoapsResult::AssertReset(l) if l[0].starts_with("assert failed at ")
        ));
    }
}
