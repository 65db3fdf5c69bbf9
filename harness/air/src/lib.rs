//! The virtual 802.15.4 air.
//!
//! Must not depend on: the runner, the lab or the virtual DK (they attach to it); its socket
//! names are `ot-hil-board`'s.
//!
//! Loopback has no multicast and tests must stay off the network, so the air is a hub
//! thread with one Unix datagram socket (`<run dir>/air.sock`); every radio is an [`AirClient`]
//! bound to its own socket in the same directory. The hub delivers each transmitted frame to every
//! other client tuned to the same channel, stamped from one clock (microseconds since the hub
//! started), as a sniffer would see it. Each run owns its directory, so parallel runs (and
//! parallel tests) never hear each other.
//!
//! A receiver that falls behind (Linux queues only `net.unix.max_dgram_qlen` = 10 datagrams per
//! socket) does not lose frames: the hub keeps a per-receiver backlog and retries it, so bursts of
//! 6LoWPAN fragments arrive complete and in order. [`FaultConfig`] lets a run lose, delay,
//! duplicate or corrupt frames, globally or per link, from a seeded RNG.
//!
//! A hub started with a case clock ([`Hub::start_clocked`], [`clock`]) runs its boards in
//! virtual time: it is then the discrete-event scheduler of the case run.

mod client;
pub mod clock;
mod fault;
mod hub;
mod medium;
pub mod proto;
pub mod sim_event;
mod sim_node;
mod sim_nodes;

pub use client::{AirClient, Received};
pub use clock::Wake;
pub use fault::FaultConfig;
pub use hub::{BoardTap, CaseClock, HUB_SOCKET_NAME, Hub};
pub use medium::{DEFAULT_LQI, DEFAULT_RSSI_DBM, HubStats};
pub use proto::{AirFrame, HubMessage, IdleReport, MAX_PSDU_LEN};

/// A datagram on the air protocol that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AirError {
    #[error("datagram is truncated")]
    Truncated,
    #[error("datagram has trailing bytes")]
    TrailingBytes,
    #[error("unknown datagram kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("channel {0} is not valid here")]
    BadChannel(u8),
    #[error("frame has no psdu")]
    EmptyPsdu,
    #[error("psdu of {0} bytes is longer than 125")]
    PsduTooLong(usize),
}
