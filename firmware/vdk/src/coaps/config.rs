//! What the image compiled in and configured for CoAP Secure, read from its Kconfig.

use ot_hil_dtls::{CipherSuite, EcjpakeBackend, HelloLayout, SignatureScheme, SuitePreference};

use crate::firmware::{Kconfig, KconfigValue, Profile};

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
    pub(super) fn mbedtls_default_suites(&self) -> Vec<CipherSuite> {
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
}
