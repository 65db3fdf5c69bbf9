//! Errors, one enum per layer: [`CodecError`] for parsing bytes (the codec's own, from
//! [`crate::codec`]), [`CertError`] for certificate checks, [`Error`] for the engine (each maps
//! to the alert we send).

use crate::enums::AlertDescription;

pub use crate::codec::CodecError;

/// Certificate verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("failed to parse certificate: {0}")]
    Parse(String),
    #[error("certificate chain is empty")]
    Empty,
    #[error("unsupported public key or signature algorithm")]
    UnsupportedAlgorithm,
    #[error("certificate signature does not verify")]
    BadSignature,
    #[error("no trusted root issued the chain")]
    UnknownIssuer,
    #[error("certificate is not valid at the configured time")]
    Expired,
    #[error("certificate does not match the expected name {0:?}")]
    NameMismatch(String),
}

impl CertError {
    /// Alert sent for this failure (RFC 5246 §7.2.2).
    pub fn alert(&self) -> AlertDescription {
        match self {
            CertError::UnknownIssuer => AlertDescription::UNKNOWN_CA,
            CertError::Expired => AlertDescription::CERTIFICATE_EXPIRED,
            CertError::UnsupportedAlgorithm => AlertDescription::UNSUPPORTED_CERTIFICATE,
            // A wrong host name is reported as bad_certificate, as mbedtls does
            // (MBEDTLS_X509_BADCERT_CN_MISMATCH -> bad_certificate).
            _ => AlertDescription::BAD_CERTIFICATE,
        }
    }
}

/// Configuration or engine failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("failed to decode message: {0}")]
    Decode(#[from] CodecError),
    #[error("certificate rejected: {0}")]
    Cert(#[from] CertError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("handshake failed: {reason}")]
    Handshake {
        alert: AlertDescription,
        reason: String,
    },
    #[error("connection is not established")]
    NotConnected,
    #[error("connection is closed")]
    Closed,
}

impl Error {
    pub(crate) fn hs(alert: AlertDescription, reason: impl Into<String>) -> Self {
        Error::Handshake {
            alert,
            reason: reason.into(),
        }
    }

    /// The alert that reports this error to the peer.
    pub fn alert(&self) -> AlertDescription {
        match self {
            Error::Decode(_) => AlertDescription::DECODE_ERROR,
            Error::Cert(e) => e.alert(),
            Error::Handshake { alert, .. } => *alert,
            _ => AlertDescription::INTERNAL_ERROR,
        }
    }
}
