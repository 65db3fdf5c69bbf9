//! `ot-hil console BOARD` at the seams that need no hardware: a hardware map whose board's port
//! is a PTY standing in for the DK's serial port, the board's lock in a private lock directory.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ot_hil_lab::lock::LockDir;

mod pty;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

/// A PTY pair: the master is the board's side, the slave's path goes into the map.
struct FakeBoard {
    master: std::fs::File,
    _slave: OwnedFd,
    path: PathBuf,
}

impl FakeBoard {
    fn new() -> FakeBoard {
        let pty = nix::pty::openpty(None, None).unwrap();
        let path = nix::unistd::ttyname(&pty.slave).unwrap();
        let mut t = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        // Non-blocking reads on the board's side, so a test can poll with a deadline.
        let flags = nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        nix::fcntl::fcntl(
            &pty.master,
            nix::fcntl::FcntlArg::F_SETFL(
                nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
            ),
        )
        .unwrap();
        FakeBoard {
            master: std::fs::File::from(pty.master),
            _slave: pty.slave,
            path,
        }
    }

    /// Read what the console sent to the board until it contains `needle`.
    fn expect(&mut self, needle: &str) -> String {
        pty::read_until(&mut self.master, needle, "sent to the board")
    }
}

fn write_map(dir: &Path, port: &Path) -> PathBuf {
    let map = dir.join("lab.toml");
    std::fs::write(
        &map,
        format!(
            "[[board]]\nid = \"dk-pty\"\nplatform = \"nrf52840dk_nrf52840\"\nprobe = \"1366:1015:000683759358\"\nport = \"{}\"\nprofile = \"ncs\"\n",
            port.display()
        ),
    )
    .unwrap();
    map
}

/// A running `ot-hil console`, its stdout collected.
struct Attached {
    child: Child,
    shown: Arc<Mutex<Vec<u8>>>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Attached {
    fn start(map: &Path, locks: &Path, log: &Path) -> Attached {
        let mut child = Command::new(EXE)
            .args(["console", "dk-pty", "--hardware-map"])
            .arg(map)
            .arg("--log")
            .arg(log)
            .env("OT_HIL_LOCK_DIR", locks)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let shown = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Attached { child, shown }
    }

    fn wait_shown(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&self.shown.lock().unwrap()).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "console never showed {needle:?}: {:?}",
                String::from_utf8_lossy(&self.shown.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn exit_code(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s
                    .code()
                    .unwrap_or_else(|| panic!("console ended without an exit code: {s:?}"));
            }
            assert!(Instant::now() < deadline, "console did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Wait until the console holds the board's lock (read from its holder note: trying the lock
/// here would make the console find the board busy).
fn wait_locked(locks: &Path) {
    let dir = LockDir::new(locks.to_path_buf());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir
        .holder("dk-pty")
        .is_some_and(|h| h.contains("ot-hil console"))
    {
        assert!(Instant::now() < deadline, "console never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn console_shows_logs_and_types_with_the_board_locked() {
    let dir = tempfile::tempdir().unwrap();
    let mut board = FakeBoard::new();
    let map = write_map(dir.path(), &board.path);
    let locks = dir.path().join("locks");
    let log = dir.path().join("dk.log");
    let mut console = Attached::start(&map, &locks, &log);
    wait_locked(&locks);
    // The board prints; the person sees it.
    board
        .master
        .write_all(b"*** Booting Zephyr OS build v3.2.99-ncs1 ***\r\nuart:~$ ")
        .unwrap();
    console.wait_shown("uart:~$ ");
    // The person types; the board gets it as typed (Ctrl+C too: the board's shell handles it).
    console.type_bytes(b"ot state\r");
    board.expect("ot state\r");
    console.type_bytes(b"ot sta\x03");
    board.expect("ot sta\x03");
    // A second console (or a run) cannot take the board meanwhile.
    let busy = Command::new(EXE)
        .args(["console", "dk-pty", "--hardware-map"])
        .arg(&map)
        .arg("--log")
        .arg(dir.path().join("second.log"))
        .env("OT_HIL_LOCK_DIR", &locks)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(2));
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(err.contains("board dk-pty is busy"), "{err}");
    assert!(err.contains("ot-hil console"), "the holder is named: {err}");
    // Ctrl+] ends the session; the lock goes with it.
    console.type_bytes(&[0x1d]);
    assert_eq!(console.exit_code(), 0);
    assert!(
        LockDir::new(locks.clone())
            .try_lock("dk-pty", "test")
            .unwrap()
            .is_some()
    );
    // The log has the board's lines, each with its wall-clock time.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert!(
        lines[0].ends_with(" *** Booting Zephyr OS build v3.2.99-ncs1 ***"),
        "{text:?}"
    );
    assert!(lines[1].ends_with(" uart:~$ "), "{text:?}");
    let stamp = lines[0].split(' ').next().unwrap();
    assert!(
        humantime::parse_rfc3339(stamp).is_ok(),
        "RFC 3339 time: {stamp:?}"
    );
}

#[test]
fn console_ends_on_sigterm_and_refuses_unknown_boards() {
    let dir = tempfile::tempdir().unwrap();
    let board = FakeBoard::new();
    let map = write_map(dir.path(), &board.path);
    let locks = dir.path().join("locks");
    let mut console = Attached::start(&map, &locks, &dir.path().join("dk.log"));
    wait_locked(&locks);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(console.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(console.exit_code(), 143);

    let out = Command::new(EXE)
        .args(["console", "dk-nope", "--hardware-map"])
        .arg(&map)
        .env("OT_HIL_LOCK_DIR", &locks)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no board dk-nope") && err.contains("dk-pty"),
        "{err}"
    );
}
