//! An `ot-hil-vdk` process driven the way the runner drives a real board: console over a PTY
//! opened with the `serialport` crate, control socket as the probe, stopped when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serialport::TTYPort;

/// The binary under test; `OT_HIL_VDK_EXE` points the tests at another build (e.g. a release
/// build, to measure its round trip and memory).
pub fn exe() -> PathBuf {
    std::env::var_os("OT_HIL_VDK_EXE").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ot-hil-vdk")),
        PathBuf::from,
    )
}

/// A file in firmware/variants, e.g. `variant("ncs-v2.2.0.toml")`.
pub fn variant(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../variants")
        .join(file)
        .canonicalize()
        .expect("variant path")
}

pub fn short_tempdir() -> tempfile::TempDir {
    // sun_path is 108 bytes: keep socket paths short.
    tempfile::Builder::new()
        .prefix("vdk")
        .tempdir_in("/tmp")
        .expect("tempdir")
}

/// Turns console bytes into matchable text: VT100 escape sequences (`ESC [ ... letter`) and
/// carriage returns removed. Keeps its state across reads, since a sequence may be split.
#[derive(Default)]
pub struct PlainText {
    escape: u8,
}

impl PlainText {
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        for &b in bytes {
            match (self.escape, b) {
                (0, 0x1b) => self.escape = 1,
                (0, b'\r') => {}
                (0, b) => out.push(char::from(b)),
                (1, b'[') => self.escape = 2,
                (1, _) => self.escape = 0,
                (_, b) if b.is_ascii_alphabetic() => self.escape = 0,
                _ => {}
            }
        }
    }
}

/// Open a board's console the way the runner opens a real one.
pub fn open_port(link: &Path) -> TTYPort {
    serialport::new(link.to_string_lossy(), 115_200)
        .timeout(Duration::from_millis(20))
        .open_native()
        .expect("open pty like a serial port")
}

/// One virtual DK process with its console open.
pub struct Dk {
    pub child: Child,
    pub link: PathBuf,
    /// `None` while the test has the console closed.
    pub port: Option<TTYPort>,
    pub control: PathBuf,
    filter: PlainText,
    /// Console text read so far that no expectation consumed.
    pub text: String,
}

impl Dk {
    /// Start a board named `name` in `dir` (its PTY link `<name>.pty`, control socket
    /// `<name>.ctl`), on the air hub `hub` (none: `--no-air`), with `firmware` flashed (none:
    /// blank chip), and open its console.
    pub fn spawn(dir: &Path, name: &str, hub: Option<&Path>, firmware: Option<&Path>) -> Dk {
        let link = dir.join(format!("{name}.pty"));
        let control = dir.join(format!("{name}.ctl"));
        let mut cmd = Command::new(exe());
        cmd.arg("--pty-link")
            .arg(&link)
            .arg("--control")
            .arg(&control);
        match hub {
            Some(h) => cmd.arg("--air").arg(h),
            None => cmd.arg("--no-air"),
        };
        if let Some(f) = firmware {
            cmd.arg("--firmware").arg(f);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vdk");
        // The process creates the link and the socket right after start; there is nothing to
        // subscribe to, so poll with a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(link.exists() && control.exists()) {
            assert!(
                Instant::now() < deadline,
                "vdk {name} did not create its pty link and control socket"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let port = Some(open_port(&link));
        Dk {
            child,
            link,
            port,
            control,
            filter: PlainText::default(),
            text: String::new(),
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.port
            .as_mut()
            .expect("console open")
            .write_all(bytes)
            .expect("write console");
    }

    /// Read whatever arrives within the port timeout.
    fn read_some(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        match self.port.as_mut().expect("console open").read(&mut buf) {
            Ok(n) => self.filter.push(&buf[..n], &mut self.text),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Read until the text contains `needle`; consume and return the text up to its end. On
    /// timeout or a read error: the text seen so far (consumed), or the error.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(pos) = self.text.find(needle) {
                let rest = self.text.split_off(pos + needle.len());
                return Ok(std::mem::replace(&mut self.text, rest));
            }
            if Instant::now() >= deadline {
                return Err(std::mem::take(&mut self.text));
            }
            self.read_some()
                .map_err(|e| format!("console read failed: {e}"))?;
        }
    }

    /// As [`Dk::wait_for`], failing the test on timeout.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for(needle, timeout)
            .unwrap_or_else(|seen| panic!("timed out waiting for {needle:?}; console: {seen:?}"))
    }

    /// Read until a complete `Done` / `Error ...` line is in the text; consume the text through
    /// it and return its lines (the result line last). Fails the test after `timeout`.
    pub fn until_result(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.text.match_indices('\n').map(|(i, _)| i).find(|&end| {
                let start = self.text[..end].rfind('\n').map_or(0, |s| s + 1);
                let l = &self.text[start..end];
                l == "Done" || l.starts_with("Error ")
            });
            if let Some(end) = found {
                let rest = self.text.split_off(end + 1);
                let taken = std::mem::replace(&mut self.text, rest);
                return taken.lines().map(str::to_string).collect();
            }
            assert!(
                Instant::now() < deadline,
                "no result line; console: {:?}",
                self.text
            );
            self.read_some().expect("console read");
        }
    }

    /// Type `line` and wait for its result; returns the lines printed between the echo and the
    /// result line, and the result line.
    pub fn run(&mut self, line: &str) -> (Vec<String>, String) {
        self.write(format!("{line}\r").as_bytes());
        let mut lines = self.until_result(Duration::from_secs(10));
        let result = lines.pop().unwrap_or_default();
        // Drop everything up to and including the echo.
        let echo = lines
            .iter()
            .rposition(|l| l.ends_with(line))
            .map_or(0, |i| i + 1);
        (lines.split_off(echo), result)
    }

    /// As [`Dk::run`], failing the test unless the result is `Done`; returns the lines.
    pub fn command(&mut self, line: &str) -> Vec<String> {
        let (out, result) = self.run(line);
        assert_eq!(result, "Done", "{line}: {out:?}");
        out
    }

    /// Poll `state_command` (`ot state` / `state`) until it prints one of `roles`.
    pub fn wait_role(&mut self, state_command: &str, roles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.command(state_command).join("");
            if roles.contains(&state.as_str()) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "role stayed {state:?}, wanted one of {roles:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One request on the control socket; its reply line.
    pub fn control(&self, request: &str) -> String {
        // Under heavy load a connect has been seen to fail once; retry briefly and report why.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut s = loop {
            match UnixStream::connect(&self.control) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    eprintln!(
                        "control connect to {}: {e}; retrying",
                        self.control.display()
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("connect control socket {}: {e}", self.control.display()),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Resident set size in kB.
    pub fn rss_kb(&self) -> u64 {
        self.status_kb("VmRSS")
    }

    /// A kB field of /proc/<pid>/status (0 if absent).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Dk {
    fn drop(&mut self) {
        // SIGTERM lets the process remove its link and socket; fall back to SIGKILL.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
