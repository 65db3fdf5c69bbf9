use thiserror::Error;

/// Errors of every codec in this crate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The buffer ends before the field `what` does.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("malformed {what}: {reason}")]
    Malformed {
        what: &'static str,
        reason: &'static str,
    },
    /// A valid encoding this crate does not handle (e.g. MAC key identifier mode 3).
    #[error("unsupported {what}: {reason}")]
    Unsupported {
        what: &'static str,
        reason: &'static str,
    },
    /// CCM* authentication failed: wrong key, wrong nonce or tampered frame.
    #[error("message integrity check failed")]
    BadMic,
    /// The operation needs a secured frame (or a security header) and there is none.
    #[error("frame is not secured")]
    NotSecured,
    /// A 6LoWPAN header refers to a context the caller did not supply.
    #[error("unknown 6lowpan context {0}")]
    UnknownContext(u8),
    /// A checksum does not match.
    #[error("bad {0} checksum")]
    BadChecksum(&'static str),
    /// The result would not fit its length field or frame.
    #[error("{what} too long: {len} bytes, at most {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    /// Writing a capture file failed.
    #[error("failed to write pcap: {0}")]
    Pcap(String),
    /// A CoAP message could not be encoded or decoded.
    #[error("coap: {0}")]
    Coap(String),
}

impl WireError {
    pub(crate) fn truncated(what: &'static str, need: usize, have: usize) -> Self {
        WireError::Truncated { what, need, have }
    }

    pub(crate) fn malformed(what: &'static str, reason: &'static str) -> Self {
        WireError::Malformed { what, reason }
    }

    pub(crate) fn unsupported(what: &'static str, reason: &'static str) -> Self {
        WireError::Unsupported { what, reason }
    }
}
