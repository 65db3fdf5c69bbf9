//! Names of the virtual air's sockets inside a run directory.
//!
//! The hub binds [`HUB_SOCKET_NAME`]; every radio binds its own socket next to it, named after
//! its process and its index among that process's radios. The runner names a virtual DK's radio
//! from the DK's process id (a virtual DK opens exactly one radio, index 0) to inject per-link
//! faults, so both sides build the name here.

use std::path::{Path, PathBuf};

/// File name of the hub socket inside the run directory.
pub const HUB_SOCKET_NAME: &str = "air.sock";

/// The socket of radio `index` of process `pid`, in `dir` (the hub socket's directory).
pub fn radio_socket(dir: &Path, pid: u32, index: u32) -> PathBuf {
    dir.join(format!("c-{pid}-{index}.sock"))
}

/// The socket of a virtual DK's radio: a virtual DK process opens one radio.
pub fn virtual_dk_radio(dir: &Path, pid: u32) -> PathBuf {
    radio_socket(dir, pid, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radio_names() {
        assert_eq!(
            radio_socket(Path::new("/r"), 42, 3),
            PathBuf::from("/r/c-42-3.sock")
        );
        assert_eq!(
            virtual_dk_radio(Path::new("d"), 7),
            Path::new("d/c-7-0.sock")
        );
    }
}
