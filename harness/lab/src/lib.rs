//! The lab side of ot-hil: what boards exist, who may use them, and how firmware gets onto them.
//!
//! - [`hwmap`]: hardware maps (ot-hil TOML, Twister YAML import) and their validation.
//! - [`sysfs`], [`probes`], [`discover`](mod@discover): what is attached, and which probe goes
//!   with which console.
//! - [`lock`]: per-board locks across processes and the allocator that gives boards to a case's nodes.
//! - [`partition`](mod@partition): splitting cases over machines (`--partition K/N`).
//! - [`flash`]: the [`flash::Flasher`] interface and the probe-rs flasher for real DKs.
//!
//! Must not depend on: the runner or the virtual DK; a board's [`hwmap::Profile`] is
//! `ot-hil-board`'s.

pub mod discover;
pub mod flash;
pub mod hwmap;
pub mod lock;
pub mod partition;
pub mod probes;
pub mod sysfs;

pub use discover::{
    DiscoveredBoard, GenerateOptions, discover, generate_hardware_map, render_table,
};
pub use flash::{FirmwareImage, FlashError, FlashOutcome, Flasher, ProbeRsFlasher};
pub use hwmap::{Board, HardwareMap, HwMapError, ProbeSelector, Profile};
pub use lock::{Allocation, Allocator, BoardLock, LockDir, LockError, NodeRequest};
pub use partition::{Partition, partition};
pub use sysfs::SysRoot;
