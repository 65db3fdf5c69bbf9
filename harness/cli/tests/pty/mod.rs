//! A test's side of a board's serial port (a PTY): opened raw, read until a text appears.
// Each test file uses what it needs of these helpers.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Open a PTY (the slave's path or a link to it) raw, reads returning within 0.1 s.
pub fn open_raw(path: &Path) -> std::fs::File {
    use nix::sys::termios;
    let port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut t = termios::tcgetattr(port.as_fd()).unwrap();
    termios::cfmakeraw(&mut t);
    t.control_chars[termios::SpecialCharacterIndices::VMIN as usize] = 0;
    t.control_chars[termios::SpecialCharacterIndices::VTIME as usize] = 1;
    termios::tcsetattr(port.as_fd(), termios::SetArg::TCSANOW, &t).unwrap();
    port
}

/// Read from `port` until what arrived contains `needle`; fails the test after 10 s, saying
/// `what` it waited for.
pub fn read_until(port: &mut impl Read, needle: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} ({what}): {:?}",
            String::from_utf8_lossy(&seen)
        );
        match port.read(&mut buf) {
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            // A non-blocking port with nothing to read yet.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}
