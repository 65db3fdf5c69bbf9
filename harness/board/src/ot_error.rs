//! OpenThread error codes as the CLI prints them.
//!
//! The numbers and names follow OpenThread's `otError` enum and the string table in
//! `src/core/common/error.cpp` (index = code). The CLI prints a failed command as
//! `Error {code}: {name}` (`Interpreter::OutputResult` in `src/cli/cli.cpp`), so these strings are
//! part of the console contract: a test case matching `Error 7: InvalidArgs` must see exactly that.

use std::fmt;

/// An OpenThread error (`otError` without `OT_ERROR_NONE`: success is `Ok(())`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OtError {
    Failed = 1,
    Drop = 2,
    NoBufs = 3,
    NoRoute = 4,
    Busy = 5,
    Parse = 6,
    InvalidArgs = 7,
    Security = 8,
    AddressQuery = 9,
    NoAddress = 10,
    Abort = 11,
    NotImplemented = 12,
    InvalidState = 13,
    NoAck = 14,
    ChannelAccessFailure = 15,
    Detached = 16,
    FcsErr = 17,
    NoFrameReceived = 18,
    UnknownNeighbor = 19,
    InvalidSourceAddress = 20,
    AddressFiltered = 21,
    DestinationAddressFiltered = 22,
    NotFound = 23,
    Already = 24,
    // 25 is reserved ("ReservedError25").
    Ipv6AddressCreationFailure = 26,
    NotCapable = 27,
    ResponseTimeout = 28,
    Duplicated = 29,
    ReassemblyTimeout = 30,
    NotTmf = 31,
    NonLowpanDataFrame = 32,
    // 33 is reserved ("ReservedError33").
    LinkMarginLow = 34,
    InvalidCommand = 35,
    /// The CLI prints nothing for a pending command: its result line comes later.
    Pending = 36,
    Rejected = 37,
}

impl OtError {
    /// Every variant, in code order (for tables and tests).
    pub const ALL: [OtError; 35] = [
        OtError::Failed,
        OtError::Drop,
        OtError::NoBufs,
        OtError::NoRoute,
        OtError::Busy,
        OtError::Parse,
        OtError::InvalidArgs,
        OtError::Security,
        OtError::AddressQuery,
        OtError::NoAddress,
        OtError::Abort,
        OtError::NotImplemented,
        OtError::InvalidState,
        OtError::NoAck,
        OtError::ChannelAccessFailure,
        OtError::Detached,
        OtError::FcsErr,
        OtError::NoFrameReceived,
        OtError::UnknownNeighbor,
        OtError::InvalidSourceAddress,
        OtError::AddressFiltered,
        OtError::DestinationAddressFiltered,
        OtError::NotFound,
        OtError::Already,
        OtError::Ipv6AddressCreationFailure,
        OtError::NotCapable,
        OtError::ResponseTimeout,
        OtError::Duplicated,
        OtError::ReassemblyTimeout,
        OtError::NotTmf,
        OtError::NonLowpanDataFrame,
        OtError::LinkMarginLow,
        OtError::InvalidCommand,
        OtError::Pending,
        OtError::Rejected,
    ];

    /// The numeric `otError` value.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The name `otThreadErrorToString` returns for this code.
    pub fn name(self) -> &'static str {
        match self {
            OtError::Failed => "Failed",
            OtError::Drop => "Drop",
            OtError::NoBufs => "NoBufs",
            OtError::NoRoute => "NoRoute",
            OtError::Busy => "Busy",
            OtError::Parse => "Parse",
            OtError::InvalidArgs => "InvalidArgs",
            OtError::Security => "Security",
            OtError::AddressQuery => "AddressQuery",
            OtError::NoAddress => "NoAddress",
            OtError::Abort => "Abort",
            OtError::NotImplemented => "NotImplemented",
            OtError::InvalidState => "InvalidState",
            OtError::NoAck => "NoAck",
            OtError::ChannelAccessFailure => "ChannelAccessFailure",
            OtError::Detached => "Detached",
            OtError::FcsErr => "FcsErr",
            OtError::NoFrameReceived => "NoFrameReceived",
            OtError::UnknownNeighbor => "UnknownNeighbor",
            OtError::InvalidSourceAddress => "InvalidSourceAddress",
            OtError::AddressFiltered => "AddressFiltered",
            OtError::DestinationAddressFiltered => "DestinationAddressFiltered",
            OtError::NotFound => "NotFound",
            OtError::Already => "Already",
            OtError::Ipv6AddressCreationFailure => "Ipv6AddressCreationFailure",
            OtError::NotCapable => "NotCapable",
            OtError::ResponseTimeout => "ResponseTimeout",
            OtError::Duplicated => "Duplicated",
            OtError::ReassemblyTimeout => "ReassemblyTimeout",
            OtError::NotTmf => "NotTmf",
            OtError::NonLowpanDataFrame => "NonLowpanDataFrame",
            OtError::LinkMarginLow => "LinkMarginLow",
            OtError::InvalidCommand => "InvalidCommand",
            OtError::Pending => "Pending",
            OtError::Rejected => "Rejected",
        }
    }

    /// The error for a numeric code; `None` for 0 (none), the reserved codes and out-of-range values.
    pub fn from_code(code: u8) -> Option<OtError> {
        OtError::ALL.iter().copied().find(|e| e.code() == code)
    }
}

impl fmt::Display for OtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error {}: {}", self.code(), self.name())
    }
}

impl std::error::Error for OtError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_openthread_result_line() {
        assert_eq!(OtError::InvalidArgs.to_string(), "Error 7: InvalidArgs");
        assert_eq!(
            OtError::InvalidCommand.to_string(),
            "Error 35: InvalidCommand"
        );
        assert_eq!(
            OtError::ResponseTimeout.to_string(),
            "Error 28: ResponseTimeout"
        );
        assert_eq!(OtError::InvalidState.to_string(), "Error 13: InvalidState");
    }

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for e in OtError::ALL {
            assert_eq!(OtError::from_code(e.code()), Some(e));
        }
        assert_eq!(OtError::from_code(0), None);
        assert_eq!(OtError::from_code(25), None);
        assert_eq!(OtError::from_code(33), None);
        assert_eq!(OtError::from_code(38), None);
        assert_eq!(OtError::Rejected.code(), 37);
        assert_eq!(OtError::Ipv6AddressCreationFailure.code(), 26);
        assert_eq!(OtError::LinkMarginLow.code(), 34);
    }
}
