//! ot-hil-board: the words the runner, the lab and the virtual DK share about a board.
//!
//! Owns: firmware variant manifests and their Kconfig fragments ([`firmware`]), the console
//! dialect of a firmware ([`Profile`]), OpenThread's error table ([`ot_error`]), the control
//! protocol of a virtual board ([`control`]: typed requests and replies, one encoder and one
//! parser each), the launch protocol of the virtual DK server ([`launch`]) and the names of the
//! virtual air's sockets ([`air_socket`]).
//!
//! Must not depend on: the runner, the lab, the air or the virtual DK (they all depend on this
//! crate), nor on anything that simulates a board. It holds vocabulary, not behaviour.

pub mod air_socket;
pub mod control;
pub mod firmware;
pub mod launch;
pub mod ot_error;
mod profile;

pub use profile::Profile;
