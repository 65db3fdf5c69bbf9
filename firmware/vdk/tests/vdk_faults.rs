//! Injected faults on a running `ot-hil-vdk` process, seen from the runner's side of the PTY:
//! `hang` silences the console until `reset`, `crash` prints Zephyr's fatal error lines and
//! reboots, `close-console` makes the port fail and its link vanish while the process stays.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serialport::TTYPort;

struct Board {
    child: Child,
    link: PathBuf,
    control: PathBuf,
    port: TTYPort,
    seen: String,
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Board {
    fn spawn(dir: &Path, firmware: &Path) -> Board {
        let link = dir.join("dut.pty");
        let control = dir.join("dut.ctl");
        let child = Command::new(env!("CARGO_BIN_EXE_ot-hil-vdk"))
            .arg("--no-air")
            .arg("--pty-link")
            .arg(&link)
            .arg("--control")
            .arg(&control)
            .arg("--firmware")
            .arg(firmware)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vdk");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Nothing to subscribe to for the files' creation: poll with a deadline.
        while !(link.exists() && control.exists()) {
            assert!(Instant::now() < deadline, "vdk did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        let port = serialport::new(link.to_string_lossy(), 115_200)
            .timeout(Duration::from_millis(20))
            .open_native()
            .expect("open pty");
        Board {
            child,
            link,
            control,
            port,
            seen: String::new(),
        }
    }

    fn control(&self, line: &str) -> String {
        let mut s = UnixStream::connect(&self.control).expect("connect control");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }

    /// Read until `needle` appears (consuming through it) or `within` passes.
    fn wait_for(&mut self, needle: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(at) = self.seen.find(needle) {
                self.seen.drain(..at + needle.len());
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::mem::take(&mut self.seen));
            }
            let mut buf = [0u8; 512];
            match self.port.read(&mut buf) {
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == ErrorKind::TimedOut => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    fn send(&mut self, line: &str) {
        self.port.write_all(format!("{line}\r").as_bytes()).unwrap();
    }
}

fn variant(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../variants")
        .join(name)
        .canonicalize()
        .expect("variant")
}

/// A variant with Zephyr logging on (so the fatal error is printed) plus extra Kconfig lines.
fn logging_variant(dir: &Path, extra: &str) -> PathBuf {
    let base = std::fs::read_to_string(variant("ncs-v2.2.0.conf")).unwrap();
    std::fs::write(
        dir.join("v.conf"),
        format!("{base}\nCONFIG_LOG=y\n{extra}\n"),
    )
    .unwrap();
    let manifest = dir.join("v.toml");
    std::fs::write(
        &manifest,
        "name = \"v\"\napplication = \"thread-cli\"\nprofile = \"ncs\"\n\
         banner = [\"*** Booting Zephyr OS build v3.2.99-ncs1 ***\"]\nkconfig = [\"v.conf\"]\n",
    )
    .unwrap();
    manifest
}

const BANNER: &str = "*** Booting Zephyr OS build";
const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(10);

#[test]
fn hang_silences_the_board_until_reset() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Board::spawn(dir.path(), &variant("ncs-v2.2.0.toml"));
    b.wait_for("uart:~$ ", LONG).unwrap();
    b.send("ot state");
    b.wait_for("Done", LONG).unwrap();
    assert_eq!(b.control("hang"), "ok");
    b.send("ot state");
    let quiet = b.wait_for("ot state", SHORT);
    assert!(quiet.is_err(), "a hung board echoed");
    // Only the tail of the prompt printed before the hang may arrive.
    let after = quiet.unwrap_err();
    assert!(!after.contains("Done"), "a hung board answered: {after:?}");
    assert_eq!(b.control("reset"), "ok");
    b.wait_for(BANNER, LONG).unwrap();
    b.wait_for("uart:~$ ", LONG).unwrap();
    b.send("ot state");
    b.wait_for("Done", LONG).unwrap();
}

#[test]
fn crash_prints_the_zephyr_fatal_error_and_reboots() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = logging_variant(dir.path(), "");
    let mut b = Board::spawn(dir.path(), &manifest);
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert_eq!(b.control("crash 3"), "ok");
    b.wait_for(
        "<err> os: >>> ZEPHYR FATAL ERROR 3: Kernel oops on CPU 0",
        LONG,
    )
    .unwrap();
    b.wait_for("<err> fatal_error: Resetting system", LONG)
        .unwrap();
    b.wait_for(BANNER, LONG).unwrap();
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert!(b.control("crash x").starts_with("error "));
}

#[test]
fn crash_without_reset_on_fatal_error_halts() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = logging_variant(dir.path(), "CONFIG_RESET_ON_FATAL_ERROR=n");
    let mut b = Board::spawn(dir.path(), &manifest);
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert_eq!(b.control("crash"), "ok");
    b.wait_for("ZEPHYR FATAL ERROR 0: CPU exception on CPU 0", LONG)
        .unwrap();
    b.wait_for("Halting system", LONG).unwrap();
    b.send("ot state");
    assert!(
        b.wait_for("ot state", SHORT).is_err(),
        "a halted board echoed"
    );
}

#[test]
fn close_console_makes_the_port_fail_and_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Board::spawn(dir.path(), &variant("ncs-v2.2.0.toml"));
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert_eq!(b.control("close-console"), "ok");
    // The runner's side: reads end with an error (EIO on a PTY whose master is gone).
    let deadline = Instant::now() + LONG;
    let mut buf = [0u8; 64];
    loop {
        match b.port.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        assert!(Instant::now() < deadline, "the port still works");
    }
    assert!(!b.link.exists(), "the link is still there");
    // The process stays, its probe still answers.
    assert!(b.child.try_wait().unwrap().is_none(), "the process exited");
    assert!(b.control("image-hash").starts_with("ok "));
}
