//! Protocol enums as open newtypes: an unknown value read off the air survives, prints in
//! hex and round-trips, while known values have names (rustls `msgs/enums.rs` style).

use crate::codec::{Codec, CodecError, Reader, put_u16};

macro_rules! open_enum {
    ($(#[$m:meta])* $name:ident($t:ty) { $($(#[$cm:meta])* $c:ident = $v:expr,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $t);

        impl $name {
            $($(#[$cm])* pub const $c: $name = $name($v);)*

            /// Constant name, if the value is known.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $($name::$c => Some(stringify!($c)),)*
                    _ => None,
                }
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Display::fmt(self, f)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "Unknown(0x{:0w$x})", self.0, w = 2 * core::mem::size_of::<$t>()),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

open_enum! {
    /// TLS `ContentType` (RFC 5246 §6.2.1).
    ContentType(u8) {
        CHANGE_CIPHER_SPEC = 20,
        ALERT = 21,
        HANDSHAKE = 22,
        APPLICATION_DATA = 23,
    }
}

open_enum! {
    /// `HandshakeType` (RFC 5246 §7.4, RFC 6347 §4.3.2).
    HandshakeType(u8) {
        HELLO_REQUEST = 0,
        CLIENT_HELLO = 1,
        SERVER_HELLO = 2,
        HELLO_VERIFY_REQUEST = 3,
        CERTIFICATE = 11,
        SERVER_KEY_EXCHANGE = 12,
        CERTIFICATE_REQUEST = 13,
        SERVER_HELLO_DONE = 14,
        CERTIFICATE_VERIFY = 15,
        CLIENT_KEY_EXCHANGE = 16,
        FINISHED = 20,
    }
}

open_enum! {
    /// Cipher suites OpenThread's CoAPS uses (mbedtls `ssl_ciphersuites.h`).
    CipherSuite(u16) {
        PSK_WITH_AES_128_CCM_8 = 0xC0A8,
        ECDHE_ECDSA_WITH_AES_128_CCM_8 = 0xC0AE,
        /// Experimental code point used by mbedtls and Thread.
        ECJPAKE_WITH_AES_128_CCM_8 = 0xC0FF,
        EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF,
    }
}

/// How a suite establishes keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyExchange {
    Psk,
    EcdheEcdsa,
    Ecjpake,
}

impl CipherSuite {
    /// Key exchange of a suite this engine implements, `None` for anything else.
    pub fn key_exchange(self) -> Option<KeyExchange> {
        match self {
            CipherSuite::PSK_WITH_AES_128_CCM_8 => Some(KeyExchange::Psk),
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8 => Some(KeyExchange::EcdheEcdsa),
            CipherSuite::ECJPAKE_WITH_AES_128_CCM_8 => Some(KeyExchange::Ecjpake),
            _ => None,
        }
    }
}

open_enum! {
    /// Alert level (RFC 5246 §7.2).
    AlertLevel(u8) {
        WARNING = 1,
        FATAL = 2,
    }
}

open_enum! {
    /// Alert description (RFC 5246 §7.2).
    AlertDescription(u8) {
        CLOSE_NOTIFY = 0,
        UNEXPECTED_MESSAGE = 10,
        BAD_RECORD_MAC = 20,
        RECORD_OVERFLOW = 22,
        HANDSHAKE_FAILURE = 40,
        BAD_CERTIFICATE = 42,
        UNSUPPORTED_CERTIFICATE = 43,
        CERTIFICATE_REVOKED = 44,
        CERTIFICATE_EXPIRED = 45,
        CERTIFICATE_UNKNOWN = 46,
        ILLEGAL_PARAMETER = 47,
        UNKNOWN_CA = 48,
        ACCESS_DENIED = 49,
        DECODE_ERROR = 50,
        DECRYPT_ERROR = 51,
        PROTOCOL_VERSION = 70,
        INSUFFICIENT_SECURITY = 71,
        INTERNAL_ERROR = 80,
        USER_CANCELED = 90,
        NO_RENEGOTIATION = 100,
        UNSUPPORTED_EXTENSION = 110,
        UNKNOWN_PSK_IDENTITY = 115,
    }
}

open_enum! {
    /// Extension type (IANA TLS ExtensionType registry, plus mbedtls' ecjpake_kkpp).
    ExtensionType(u16) {
        SERVER_NAME = 0x0000,
        SUPPORTED_GROUPS = 0x000a,
        EC_POINT_FORMATS = 0x000b,
        SIGNATURE_ALGORITHMS = 0x000d,
        ENCRYPT_THEN_MAC = 0x0016,
        EXTENDED_MASTER_SECRET = 0x0017,
        SESSION_TICKET = 0x0023,
        /// `MBEDTLS_TLS_EXT_ECJPAKE_KKPP`: EC J-PAKE round one.
        ECJPAKE_KKPP = 0x0100,
        RENEGOTIATION_INFO = 0xff01,
    }
}

open_enum! {
    /// Named groups (RFC 8422 §5.1.1).
    NamedGroup(u16) {
        SECP256R1 = 0x0017,
        SECP384R1 = 0x0018,
        X25519 = 0x001d,
    }
}

open_enum! {
    /// `SignatureAndHashAlgorithm` as one u16 (RFC 5246 §7.4.1.4.1): hash byte, signature byte.
    SignatureScheme(u16) {
        ECDSA_SHA256 = 0x0403,
        ECDSA_SHA384 = 0x0503,
        ECDSA_SHA512 = 0x0603,
        RSA_SHA256 = 0x0401,
    }
}

impl SignatureScheme {
    /// The signature byte is ecdsa (3).
    pub fn is_ecdsa(self) -> bool {
        self.0 & 0xff == 3
    }
}

open_enum! {
    /// `ProtocolVersion` on the wire (RFC 6347 §4.1: DTLS 1.2 = {254, 253}).
    ProtocolVersion(u16) {
        DTLS1_0 = 0xfeff,
        DTLS1_2 = 0xfefd,
    }
}

macro_rules! codec_u8 {
    ($($t:ident),*) => {$(
        impl Codec for $t {
            fn encode(&self, out: &mut Vec<u8>) { out.push(self.0) }
            fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> { Ok($t(r.u8()?)) }
        }
    )*};
}
macro_rules! codec_u16 {
    ($($t:ident),*) => {$(
        impl Codec for $t {
            fn encode(&self, out: &mut Vec<u8>) { put_u16(out, self.0) }
            fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> { Ok($t(r.u16()?)) }
        }
    )*};
}
codec_u8!(ContentType, HandshakeType, AlertLevel, AlertDescription);
codec_u16!(
    CipherSuite,
    ExtensionType,
    NamedGroup,
    SignatureScheme,
    ProtocolVersion
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknowns() {
        assert_eq!(CipherSuite(0xC0FF), CipherSuite::ECJPAKE_WITH_AES_128_CCM_8);
        assert_eq!(
            CipherSuite::PSK_WITH_AES_128_CCM_8.to_string(),
            "PSK_WITH_AES_128_CCM_8"
        );
        assert_eq!(CipherSuite(0x1301).to_string(), "Unknown(0x1301)");
        assert_eq!(ContentType(99).to_string(), "Unknown(0x63)");
        assert_eq!(ExtensionType::ECJPAKE_KKPP.0, 0x0100);
        assert_eq!(
            CipherSuite::read_bytes(&[0xc0, 0xae]).unwrap(),
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
        );
        assert!(CipherSuite::read_bytes(&[0xc0]).is_err());
        assert_eq!(AlertDescription::UNKNOWN_CA.get_encoding(), [48]);
    }
}
