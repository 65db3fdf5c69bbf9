//! Boards start each case factory-fresh, on the hardware-map path that needs no probe: a mapped
//! board without a probe (here a virtual DK on a PTY standing in for a real DK's serial port)
//! holds a dataset another session left; the run factory-resets it over the console before the
//! case, and `--keep-state` leaves it as it was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod pty;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A virtual DK on a PTY link, killed when dropped.
struct Board {
    child: Child,
    tty: PathBuf,
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Board {
    fn start(dir: &Path) -> Board {
        let tty = dir.join("dk.tty");
        let child = Command::new(EXE)
            .args(["vdk", "--no-air", "--pty-link"])
            .arg(&tty)
            .arg("--firmware")
            .arg(repo().join("firmware/variants/ncs-v2.2.0.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !tty.exists() {
            assert!(Instant::now() < deadline, "no PTY link");
            std::thread::sleep(Duration::from_millis(10));
        }
        Board { child, tty }
    }

    /// Type lines as another session would, each until its `Done`.
    fn type_lines(&self, lines: &[&str]) -> String {
        let mut port = pty::open_raw(&self.tty);
        let mut all = String::new();
        for line in lines {
            port.write_all(format!("{line}\r").as_bytes()).unwrap();
            all.push_str(&pty::read_until(&mut port, "Done", line));
        }
        all
    }

    /// What another session leaves behind: a committed dataset on channel 25.
    fn dirty(&self) {
        self.type_lines(&[
            "ot dataset init new",
            "ot dataset channel 25",
            "ot dataset commit active",
        ]);
        assert!(self.type_lines(&["ot channel"]).contains("\n25\r"));
    }
}

/// The repository's ncs-v2.2.0 variant, with `[build] hex` naming the fixture image (the path a
/// real board's run reads its image from).
fn variants(dir: &Path) -> PathBuf {
    let variants = dir.join("variants");
    std::fs::create_dir_all(&variants).unwrap();
    let src = repo().join("firmware/variants");
    std::fs::copy(
        src.join("ncs-v2.2.0.conf"),
        variants.join("ncs-v2.2.0.conf"),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(src.join("ncs-v2.2.0.toml")).unwrap();
    let hex = repo().join("fixtures/hw/build-ncs/zephyr/zephyr.hex");
    let manifest = manifest
        .lines()
        .map(|l| {
            if l.starts_with("hex = ") {
                format!("hex = \"{}\"", hex.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(variants.join("ncs-v2.2.0.toml"), manifest).unwrap();
    variants
}

fn run(dir: &Path, board: &Board, out: &str, extra: &[&str]) -> Output {
    let map = dir.join("lab.toml");
    std::fs::write(
        &map,
        format!(
            "[[board]]\nid = \"dk-noprobe\"\nplatform = \"nrf52840dk_nrf52840\"\nport = \"{}\"\nprofile = \"ncs\"\ntags = [\"no-probe\"]\n",
            board.tty.display()
        ),
    )
    .unwrap();
    let cases = dir.join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    // Passes only on a factory-fresh board: Kconfig's channel 11, no active dataset.
    std::fs::write(
        cases.join("fresh.toml"),
        "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"channel\"\noutput = ['^11$']\n\n[[steps]]\nnode = \"dut\"\nsend = \"dataset active\"\nresult = \"Error 23: NotFound\"\n",
    )
    .unwrap();
    Command::new(EXE)
        .arg("run")
        .arg(&cases)
        .arg("--variants-dir")
        .arg(variants(dir))
        .args(["--variant", "ncs-v2.2.0", "--hardware-map"])
        .arg(&map)
        .arg("--out")
        .arg(dir.join(out))
        .args(extra)
        .env("OT_HIL_LOCK_DIR", dir.join("locks"))
        .env("OT_HIL_STATE_DIR", dir.join("state"))
        .output()
        .unwrap()
}

#[test]
fn a_board_without_a_probe_is_factory_reset_over_its_console_unless_state_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::start(dir.path());
    board.dirty();
    let r = run(dir.path(), &board, "fresh", &[]);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let log =
        std::fs::read_to_string(dir.path().join("fresh/logs/fresh/ncs-v2.2.0/dut.log")).unwrap();
    assert!(log.contains("no probe: not flashed"), "{log}");
    assert!(log.contains("factory reset over the console"), "{log}");
    assert!(log.contains(">>> ot factoryreset"), "{log}");

    // --keep-state: the dataset another session committed is still there, and the case fails.
    board.dirty();
    let r = run(dir.path(), &board, "kept", &["--keep-state"]);
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let log =
        std::fs::read_to_string(dir.path().join("kept/logs/fresh/ncs-v2.2.0/dut.log")).unwrap();
    assert!(!log.contains("factoryreset"), "{log}");
}

/// `--board-command` programs keep their settings in files of their working directory (the
/// OpenThread simulation: `tmp/*.flash`): each case run starts them in a fresh one, unless
/// `--keep-state`.
#[test]
fn board_commands_run_in_a_fresh_directory_per_case() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases");
    std::fs::create_dir_all(&cases).unwrap();
    for name in ["one", "two"] {
        std::fs::write(
            cases.join(format!("{name}.toml")),
            "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\noutput = ['^leader$']\n",
        )
        .unwrap();
    }
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/support/fake_cli.py");
    // Says on its console whether an earlier case left its "settings" here, then leaves its own.
    let command = format!(
        "sh -c 'if [ -e settings ]; then echo SETTINGS-FROM-AN-EARLIER-CASE; fi; touch settings; exec python3 -u {}'",
        fake.display()
    );
    let cwd = dir.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let run = |out: &str, extra: &[&str]| {
        let r = Command::new(EXE)
            .arg("run")
            .arg(&cases)
            .arg("--variants-dir")
            .arg(repo().join("firmware/variants"))
            .arg("--out")
            .arg(dir.path().join(out))
            .args(["--board-command", &command])
            .args(extra)
            .current_dir(&cwd)
            .output()
            .unwrap();
        assert_eq!(
            r.status.code(),
            Some(0),
            "{}\n{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        ["one", "two"].map(|case| {
            std::fs::read_to_string(dir.path().join(format!("{out}/logs/{case}/host/dut.log")))
                .unwrap()
                .contains("SETTINGS-FROM-AN-EARLIER-CASE")
        })
    };
    assert_eq!(run("fresh", &[]), [false, false]);
    assert!(
        !cwd.join("settings").exists(),
        "ran in the caller's directory"
    );
    // Kept: both run in the caller's directory, so the second case finds the first's file.
    assert_eq!(run("kept", &["--keep-state"]), [false, true]);
}
