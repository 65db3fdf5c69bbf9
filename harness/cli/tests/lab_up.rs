//! `ot-hil lab up`: a person's virtual bench. The binary is run as a person would: its printed
//! PTY is opened and typed into, then the bench is stopped with a signal and nothing it started
//! may be left running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod pty;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn variants_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware/variants")
}

/// A running `lab up`, killed if the test fails before it stops it.
struct LabUp {
    child: Child,
    /// `<board> <pty>` lines, then `pcap <file>` when sniffing.
    printed: Vec<String>,
}

impl Drop for LabUp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LabUp {
    fn start(args: &[&str]) -> LabUp {
        let mut child = Command::new(EXE)
            .args(["lab", "up", "--variants-dir"])
            .arg(variants_dir())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ot-hil lab up");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Reading blocks; the bench prints its last line once everything is up.
        for line in lines.by_ref() {
            let line = line.expect("read stdout");
            if line.starts_with("Ctrl-C") {
                break;
            }
            printed.push(line);
            assert!(Instant::now() < deadline, "bench not up: {printed:?}");
        }
        LabUp { child, printed }
    }

    /// The path printed after `name` (`dk1 /tmp/.../dk1.tty ...`, `pcap /tmp/.../air.pcap ...`).
    fn path_of(&self, name: &str) -> PathBuf {
        self.printed
            .iter()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(name)).then(|| PathBuf::from(words.next().unwrap()))
            })
            .unwrap_or_else(|| panic!("no {name} line in {:?}", self.printed))
    }

    /// Every process below the bench (its boards, their children).
    fn descendants(&self) -> Vec<u32> {
        let mut found = vec![self.child.id()];
        let mut i = 0;
        while i < found.len() {
            let parent = found[i];
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !found.contains(&pid) {
                    found.push(pid);
                }
            }
            i += 1;
        }
        found.remove(0);
        found
    }

    /// The board processes among [`LabUp::descendants`]: `vdk` on their command line (not the
    /// `vdk-server` that forks them).
    fn boards(&self) -> Vec<u32> {
        self.descendants()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .split(|b| *b == 0)
                    .any(|a| a == b"vdk")
            })
            .collect()
    }

    /// Send `signal`, wait for the exit; the exit code.
    fn stop(&mut self, signal: Signal) -> i32 {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed");
            }
            assert!(Instant::now() < deadline, "lab up did not stop on {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `pid` still runs (a zombie does not count: it only waits for its parent).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Type `line` on a board's PTY and read until `until` appears (or 10 s).
fn type_on(pty: &Path, line: &str, until: &str) -> String {
    use std::io::Write;
    let mut port = pty::open_raw(pty);
    port.write_all(format!("{line}\r").as_bytes()).unwrap();
    pty::read_until(&mut port, until, line)
}

#[test]
fn lab_up_boards_answer_on_their_pty_and_ctrl_c_leaves_nothing_running() {
    let mut lab = LabUp::start(&["-n", "2", "--sniffer"]);
    let dk1 = lab.path_of("dk1");
    let dk2 = lab.path_of("dk2");
    let pcap = lab.path_of("pcap");
    let bench_dir = dk1.parent().unwrap().to_path_buf();
    let answer = type_on(&dk1, "ot state", "Done");
    assert!(answer.contains("ot state\r\ndisabled\r"), "{answer:?}");
    let answer = type_on(&dk2, "ot networkname", "Done");
    assert!(answer.contains("ot_zephyr"), "{answer:?}");
    // The sniffer streams: the pcap header is on disk while the bench runs.
    assert!(std::fs::metadata(&pcap).unwrap().len() >= 24, "{pcap:?}");
    let started = lab.descendants();
    assert!(
        started.len() >= 3,
        "two boards and a sniffer run under the bench: {started:?}"
    );
    // Ctrl-C is how a person stops the bench: exit 0.
    assert_eq!(lab.stop(Signal::SIGINT), 0);
    let left: Vec<u32> = started.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert!(!bench_dir.exists(), "{} not removed", bench_dir.display());
}

#[test]
fn sigterm_takes_the_bench_down_with_its_exit_code() {
    let mut lab = LabUp::start(&["-n", "1"]);
    let dk1 = lab.path_of("dk1");
    assert!(type_on(&dk1, "ot state", "Done").contains("disabled"));
    let started = lab.descendants();
    let boards = lab.boards();
    assert_eq!(boards.len(), 1, "one board: {boards:?}");
    assert_eq!(lab.stop(Signal::SIGTERM), 143);
    let left: Vec<u32> = started.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert!(!dk1.exists());
}

#[test]
fn lab_up_refuses_an_unknown_variant() {
    let out = Command::new(EXE)
        .args([
            "lab",
            "up",
            "--variant",
            "no-such-variant",
            "--variants-dir",
        ])
        .arg(variants_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-variant"), "{err}");
}

#[test]
fn keep_boards_on_failure_leaves_the_failed_case_s_boards_up_until_ctrl_c() {
    let cases = tempfile::tempdir().unwrap();
    // Fails: a fresh board is `disabled`, not `leader`.
    std::fs::write(
        cases.path().join("never-leader.toml"),
        "nodes = [\"a\", \"b\"]\n[[steps]]\nnode = \"a\"\nsend = \"state\"\noutput = ['^leader$']\ntimeout = \"1s\"\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(EXE)
        .arg("run")
        .arg(cases.path())
        .arg("--variants-dir")
        .arg(variants_dir())
        .args(["--variant", "ncs-v2.2.0", "--out"])
        .arg(out.path().join("o"))
        .arg("--keep-boards-on-failure")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    // Up to the line of the air, the last of the kept case.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.trim_start().starts_with("air ");
        printed.push(line);
        if done {
            break;
        }
    }
    let mut lab = LabUp { child, printed };
    assert!(
        lab.printed
            .iter()
            .any(|l| l.starts_with("kept the boards of 1 failed case run")),
        "{:?}",
        lab.printed
    );
    assert!(lab.printed.iter().any(|l| l == "never-leader@ncs-v2.2.0:"));
    let a = lab.path_of("a");
    let b = lab.path_of("b");
    assert!(lab.path_of("air").exists());
    // The failed case's boards are as the case left them, and answer a person.
    assert!(type_on(&a, "ot state", "Done").contains("disabled"));
    assert!(type_on(&b, "ot channel", "Done").contains("11"));
    let kept = lab.descendants();
    let boards = lab.boards();
    assert_eq!(boards.len(), 2, "the case's two boards run: {boards:?}");
    // Ctrl-C stops them; the run's exit code is still the run's: a failure.
    assert_eq!(lab.stop(Signal::SIGINT), 1);
    let left: Vec<u32> = kept.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert!(!a.exists());
}
