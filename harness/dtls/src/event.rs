//! What a connection tells its application: which end it is ([`Role`]) and what happened
//! ([`Event`]).

use crate::enums::{AlertDescription, CipherSuite};

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake finished (both Finished messages verified).
    Connected {
        suite: CipherSuite,
    },
    ApplicationData(Vec<u8>),
    /// The peer sent close_notify, or we closed.
    Closed,
    /// The connection failed. `alert` is the alert we sent or received (`None` for a handshake
    /// timeout, which sends nothing); `reason` says what happened.
    Failed {
        alert: Option<AlertDescription>,
        reason: String,
    },
}

/// Which end we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}
