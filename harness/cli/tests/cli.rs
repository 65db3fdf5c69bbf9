//! The `ot-hil` binary: `check` on bad input, a virtual board vanishing mid-case (infrastructure
//! error, other cases still run, JUnit complete), Ctrl-C (partial, well-formed reports), a busy port.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn variants_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware/variants")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const QUIET_CASE: &str = "nodes = [\"dut\"]
[[steps]]
node = \"dut\"
send = \"state\"

[[steps]]
node = \"dut\"
absent = ['ZZZ']
window = \"WINDOW\"

[[steps]]
node = \"dut\"
send = \"state\"
";

#[test]
fn check_reports_file_line_column_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "good.toml",
        "nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"state\"\n",
    );
    write(
        dir.path(),
        "bad.toml",
        "nodes = [\"a\"]\n[[steps]]\nnode = \"b\"\nsend = \"x\"\n[[steps]]\nnode = \"a\"\nsend = \"ping ${a.x}\"\n[variants.nope]\nxfail = \"r\"\n",
    );
    write(dir.path(), "broken.toml", "nodes = [\"a\"\n");
    let out = Command::new(EXE)
        .arg("check")
        .arg(dir.path())
        .arg("--variants-dir")
        .arg(variants_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("bad.toml:3:8: unknown node `b` (nodes: a)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:5:1: undefined variable ${a.x}"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:8:11: unknown firmware variant `nope`"),
        "{stderr}"
    );
    assert!(stderr.contains("broken.toml:1:"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 of 3 case files valid"));

    // `run` refuses to start: no board is spawned, no report written.
    let results = tempfile::tempdir().unwrap();
    let out = Command::new(EXE)
        .arg("run")
        .arg(dir.path())
        .arg("--variants-dir")
        .arg(variants_dir())
        .arg("--out")
        .arg(results.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(!results.path().join("junit.xml").exists());
}

#[test]
fn shipped_cases_check_clean() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testcases");
    let out = Command::new(EXE).arg("check").arg(&cases).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(EXE)
        .arg("list")
        .arg(&cases)
        .arg("--variant")
        .arg("upstream")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("thread-network-formation@upstream"),
        "{stdout}"
    );
}

/// Wait until `path` exists and contains `needle` (the runner writes logs as lines arrive).
fn wait_for(path: &Path, needle: &str, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never contained {needle:?}", path.display());
}

#[test]
fn virtual_board_killed_mid_case_is_an_infrastructure_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let case = write(
        dir.path(),
        "a-victim.toml",
        &QUIET_CASE.replace("WINDOW", "20s"),
    );
    let other = write(
        dir.path(),
        "b-survivor.toml",
        &QUIET_CASE.replace("WINDOW", "10ms"),
    );
    let mut child = Command::new(EXE)
        // No retry on a fresh board: this is about the error itself. One job: the victim's
        // virtual DK is then the only one running when it is looked up.
        // Its quiet window lasts in wall-clock time, so the board can be killed in it.
        .args([
            "run",
            "--clock",
            "real",
            "--jobs",
            "1",
            "--infra-retries",
            "0",
            "--variant",
            "upstream",
            "--variants-dir",
        ])
        .arg(variants_dir())
        .arg("--out")
        .arg(out.path())
        .arg(&case)
        .arg(&other)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let log = out.path().join("logs/a-victim/upstream/dut.log");
    wait_for(&log, "absent for", Duration::from_secs(20));
    // The virtual DK is started for the runner, with `vdk` on its command line.
    let pid = find_vdk_pid(child.id()).expect("virtual DK process");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("ERROR a-victim @ upstream"), "{stdout}");
    assert!(
        stdout.contains("board: dut") && stdout.contains("serial port closed"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS  b-survivor @ upstream"), "{stdout}");
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains("tests=\"2\"") && junit.contains("errors=\"1\""),
        "{junit}"
    );
    assert!(junit.ends_with("</testsuites>"), "{junit}");
}

/// The parent pid of `pid`, from field 4 of its stat (after the parenthesised command).
fn parent_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The pid of a `vdk` process started for `runner`: its child, or a child of its `vdk-server`.
fn find_vdk_pid(runner: u32) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Some(ppid) = parent_of(pid) else {
            continue;
        };
        let below_runner =
            ppid == runner || i32::try_from(ppid).ok().and_then(parent_of) == Some(runner);
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if below_runner && cmdline.split('\0').any(|a| a == "vdk") {
            return Some(pid);
        }
    }
    None
}

#[test]
fn ctrl_c_writes_partial_well_formed_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let slow = write(
        dir.path(),
        "a-slow.toml",
        &QUIET_CASE.replace("WINDOW", "30s"),
    );
    let never = write(
        dir.path(),
        "b-never.toml",
        &QUIET_CASE.replace("WINDOW", "10ms"),
    );
    let mut child = Command::new(EXE)
        // One case at a time: the second has not started when Ctrl-C comes.
        // The slow case's window lasts in wall-clock time, so Ctrl-C comes in it.
        .args([
            "run",
            "--clock",
            "real",
            "-j",
            "1",
            "--variant",
            "ncs-v2.2.0",
            "--variants-dir",
        ])
        .arg(variants_dir())
        .arg("--out")
        .arg(out.path())
        .arg(&slow)
        .arg(&never)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        &out.path().join("logs/a-slow/ncs-v2.2.0/dut.log"),
        "absent for",
        Duration::from_secs(20),
    );
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    let junit = std::fs::read_to_string(out.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains("tests=\"2\"") && junit.contains("errors=\"1\""),
        "{junit}"
    );
    assert!(
        junit.contains("interrupted before this case started"),
        "{junit}"
    );
    assert!(junit.ends_with("</testsuites>"), "{junit}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(json["summary"]["interrupted"], true);
    // The interrupted case ran until the interrupt (the log appeared, then "absent for" ran)
    // and its board log is reported.
    let slow_result = json["results"]
        .as_array()
        .and_then(|r| r.iter().find(|c| c["case"] == "a-slow"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(slow_result["outcome"], "ERROR", "{slow_result}");
    assert!(
        slow_result["duration"].as_f64().unwrap_or(0.0) > 0.0,
        "{slow_result}"
    );
    assert!(
        slow_result["logs"]["dut"]
            .as_str()
            .is_some_and(|p| p.ends_with("logs/a-slow/ncs-v2.2.0/dut.log")),
        "{slow_result}"
    );
    // No virtual DK survives the runner.
    assert!(find_vdk_pid(child.id()).is_none());
}

#[test]
fn busy_port_is_refused() {
    let (_master, slave) = serialport::TTYPort::pair().unwrap();
    use serialport::SerialPort;
    let path = slave.name().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = ot_hil::console::ConsoleConfig {
            board: "dut".into(),
            shell: ot_hil::profile::Shell::upstream(),
            banner: vec![],
            log: None,
            clock: ot_hil::step_clock::StepClock::Real,
            tap: None,
        };
        let first =
            ot_hil::console::Console::open_serial(Path::new(&path), 115_200, config.clone())
                .expect("first open");
        let err = ot_hil::console::Console::open_serial(Path::new(&path), 115_200, config)
            .err()
            .expect("second open must fail");
        drop(first);
        let text = err.to_string();
        assert!(
            text.contains("failed to open serial port") && text.contains("dut"),
            "{text}"
        );
    });
}

#[test]
fn hardware_map_boards_without_an_image_are_an_infrastructure_error() {
    // A "real" board whose console is a PTY: allocation, locking and the console path run; the
    // variant's image has not been built here, which must be an ERROR naming it, not a FAIL.
    let (_master, slave) = serialport::TTYPort::pair().unwrap();
    use serialport::SerialPort;
    let port = slave.name().unwrap();
    drop(slave);
    let dir = tempfile::tempdir().unwrap();
    let locks = tempfile::tempdir().unwrap();
    let map = write(
        dir.path(),
        "lab.toml",
        &format!(
            "[[board]]\nid = \"dk-a\"\nplatform = \"nrf52840dk/nrf52840\"\nprobe = \"1366:1015:000683759358\"\nport = \"{port}\"\nprofile = \"ncs\"\n"
        ),
    );
    let case = write(
        dir.path(),
        "one.toml",
        "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\n",
    );
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(EXE)
        .args(["run", "--variant", "ncs-v2.2.0", "--variants-dir"])
        .arg(variants_dir())
        .arg("--hardware-map")
        .arg(&map)
        .arg("--out")
        .arg(out.path())
        .arg(&case)
        .env("OT_HIL_LOCK_DIR", locks.path())
        .env("OT_HIL_STATE_DIR", locks.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ERROR one @ ncs-v2.2.0") && stdout.contains("not available"),
        "{stdout}"
    );
}
