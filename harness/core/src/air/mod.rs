//! The air witness: a sniffer board (a real nRF52840 running Nordic's "nRF Sniffer for 802.15.4"
//! firmware, or a virtual one on the run's air) read during a case, its frames written to a pcap
//! file and decoded with the case's network key into per-connection DTLS handshake transcripts,
//! which are compared with stored insta snapshots.
//!
//! A case asks for this with two optional tables (see the top-level README.md, "Handshake snapshots"):
//!
//! ```toml
//! [sniffer]                      # a sniffer watches this case
//! channel = 15                   # default: the channel the case's steps set (`channel N`)
//! network_key = "0011..eeff"     # default: the key the case's steps set (`networkkey K`)
//! mesh_local_prefix = "fdde:ad00:beef:0::/64"   # default: the steps' `meshlocalprefix`, else OT's
//!
//! [[snapshot]]                   # one per handshake to compare
//! name = "x509-handshake"
//! client = "client"              # the node that runs `coaps connect`
//! server = "server"
//! connection = 1                 # which DTLS connection (1 = the first one started), default 1
//! ```
//!
//! The case loader validates the tables into an [`AirSpec`] ([`crate::case::air_spec`]); this
//! module runs on it and the case module does not depend on this one.

pub mod capture;
pub mod reader;
pub mod snapshot;
pub mod snapshot_file;
pub mod synth;
pub mod witness;

use std::path::PathBuf;

pub use crate::case::air_spec::{
    AirSpec, AirSpecError, DEFAULT_CHANNEL, DEFAULT_MESH_LOCAL_PREFIX, SnapshotSpec, SnifferTable,
    parse_network_key, parse_prefix,
};
pub use capture::{Capture, CaptureStats, Connection};
pub use reader::{SnifferPort, SnifferSession};
pub use snapshot::{SnapshotOutcome, Snapshots};

/// What can go wrong reading a sniffer, writing a capture or comparing a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum AirError {
    #[error("sniffer port {path}: {message}")]
    Port { path: String, message: String },
    #[error("pcap {path}: {message}")]
    Pcap { path: PathBuf, message: String },
    #[error("snapshot {name}: {message}")]
    Snapshot { name: String, message: String },
}
