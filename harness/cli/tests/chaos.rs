//! Chaos suite: the real binary is stopped mid-run by SIGINT, SIGTERM, SIGHUP and SIGKILL, and
//! whatever happens every planned case is reported exactly once (junit.xml and results.json), the
//! exit code is the documented one, no process the run started is left (each inherits a marker
//! in its environment, looked for in every process on the machine), and the run's temp folders
//! are gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rstest::rstest;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");
/// The environment variable every process of a chaos run carries (inherited from the runner).
const MARKER: &str = "OT_HIL_CHAOS_RUN";

fn variants_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware/variants")
}

fn fake_cli() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/support/fake_cli.py")
}

/// One node that answers, then watches its console for `window`, then answers again.
fn quiet_case(window: &str) -> String {
    format!(
        "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\n\n[[steps]]\nnode = \"dut\"\nabsent = ['ZZZ']\nwindow = \"{window}\"\n\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\n"
    )
}

/// A run under test: its folders, the marker its processes carry, the cases it plans.
struct ChaosRun {
    cases: tempfile::TempDir,
    out: tempfile::TempDir,
    /// The runner's TMPDIR: the run's temp folders (sockets, PTY links) go here.
    tmp: tempfile::TempDir,
    marker: String,
    planned: Vec<&'static str>,
}

impl ChaosRun {
    /// `a-slow` is mid-step for 30 s when the test strikes; the others are still planned.
    fn new(tag: &str) -> ChaosRun {
        let cases = tempfile::tempdir().unwrap();
        let planned = vec!["a-slow", "b-quick", "c-quick"];
        for name in &planned {
            let window = if *name == "a-slow" { "30s" } else { "10ms" };
            std::fs::write(
                cases.path().join(format!("{name}.toml")),
                quiet_case(window),
            )
            .unwrap();
        }
        ChaosRun {
            cases,
            out: tempfile::tempdir().unwrap(),
            tmp: tempfile::tempdir().unwrap(),
            marker: format!("{tag}-{}-{:?}", std::process::id(), Instant::now()),
            planned,
        }
    }

    /// Start the run on the `upstream` variant with `retries` infrastructure retries, and wait
    /// until `case`'s node `watcher` is in its quiet window.
    fn start_upstream_until_window(
        &self,
        retries: u32,
        case: &str,
        watcher: &str,
        within: Duration,
    ) -> Child {
        let child = self.start(&[
            "--variant".into(),
            "upstream".into(),
            "--infra-retries".into(),
            retries.to_string(),
        ]);
        let log = self
            .out
            .path()
            .join(format!("logs/{case}/upstream/{watcher}.log"));
        wait_for_window(&log, within);
        child
    }

    /// SIGKILL the virtual DK of `node`.
    fn kill_board(&self, node: &str) {
        let victim = vdk_of(&self.marker, node).expect("the node's virtual DK");
        kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    }

    fn start(&self, board_args: &[String]) -> Child {
        Command::new(EXE)
            .arg("run")
            .arg(self.cases.path())
            .arg("--variants-dir")
            .arg(variants_dir())
            .arg("--out")
            .arg(self.out.path())
            // The struck case sits in its 30 s window in wall-clock time (on the case clock it
            // would be over at once): what is under test is a run stopped mid-step.
            .args(["--clock", "real"])
            .args(board_args)
            .env(MARKER, &self.marker)
            .env("TMPDIR", self.tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Wait until case `a-slow` is in its long step (its board booted and answered).
    fn wait_mid_step(&self, variant: &str) {
        let log = self
            .out
            .path()
            .join(format!("logs/a-slow/{variant}/dut.log"));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("absent for")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{} never reached the long step", log.display());
    }

    /// Processes (other than this test) whose environment carries this run's marker.
    fn survivors(&self) -> Vec<String> {
        let needle = format!("{MARKER}={}", self.marker);
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.parse::<u32>().is_err() {
                continue;
            }
            let Ok(env) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
                let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(format!(
                    "{name}: {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                ));
            }
        }
        found
    }

    /// No process of the run left 2 s after it ended.
    fn assert_no_survivors(&self) {
        std::thread::sleep(Duration::from_secs(2));
        let left = self.survivors();
        assert!(left.is_empty(), "processes of the run left: {left:#?}");
    }

    /// junit.xml and results.json both name every planned case exactly once, and the run is
    /// said to be interrupted.
    fn assert_reports_complete(&self) {
        let json = self.assert_every_case_once();
        assert_eq!(json["summary"]["interrupted"], true);
    }

    /// Put `cases` (name, body) in place of the planned ones.
    fn replace_cases(&mut self, cases: &[(&'static str, String)]) {
        for name in &self.planned {
            std::fs::remove_file(self.cases.path().join(format!("{name}.toml"))).unwrap();
        }
        self.planned = cases.iter().map(|(n, _)| *n).collect();
        for (name, body) in cases {
            std::fs::write(self.cases.path().join(format!("{name}.toml")), body).unwrap();
        }
    }

    /// junit.xml and results.json both name every planned case exactly once; results.json.
    fn assert_every_case_once(&self) -> serde_json::Value {
        let xml = std::fs::read_to_string(self.out.path().join("junit.xml")).unwrap();
        let mut in_junit = BTreeMap::<String, usize>::new();
        let mut reader = quick_xml::Reader::from_str(&xml);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e))
                    if e.name().as_ref() == b"testcase" =>
                {
                    let name = e
                        .try_get_attribute("name")
                        .unwrap()
                        .expect("testcase without a name");
                    *in_junit
                        .entry(String::from_utf8_lossy(&name.value).into_owned())
                        .or_default() += 1;
                }
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("junit.xml is not XML: {e}\n{xml}"),
            }
        }
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(self.out.path().join("results.json")).unwrap(),
        )
        .expect("results.json is JSON");
        let mut in_json = BTreeMap::<String, usize>::new();
        for r in json["results"].as_array().expect("results array") {
            *in_json
                .entry(r["case"].as_str().expect("case name").to_string())
                .or_default() += 1;
        }
        let expected: BTreeMap<String, usize> =
            self.planned.iter().map(|c| (c.to_string(), 1)).collect();
        assert_eq!(in_junit, expected, "junit.xml:\n{xml}");
        assert_eq!(in_json, expected, "results.json:\n{json:#}");
        json
    }

    /// The run's temp folders (air sockets, PTY links, control sockets) are gone.
    fn assert_temp_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(self.tmp.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "temp files left: {left:?}");
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the runner did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the board log `log` shows a quiet window (`absent for`) has begun: the step the
/// test strikes in.
fn wait_for_window(log: &Path, within: Duration) {
    let start = Instant::now();
    while !std::fs::read_to_string(log).is_ok_and(|t| t.contains("absent for")) {
        assert!(
            start.elapsed() < within,
            "never reached the window: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, signal: Signal) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[rstest]
#[case::sigint(Signal::SIGINT, 130)]
#[case::sigterm(Signal::SIGTERM, 143)]
#[case::sighup(Signal::SIGHUP, 129)]
fn a_stop_signal_mid_step_reports_every_case_and_leaves_nothing(
    #[case] sig: Signal,
    #[case] code: i32,
) {
    let run = ChaosRun::new(sig.as_str());
    let mut child = run.start(&["--variant".into(), "upstream".into()]);
    run.wait_mid_step("upstream");
    assert!(
        !run.survivors().is_empty(),
        "the run's processes carry the marker"
    );
    signal(&child, sig);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(code));
    run.assert_reports_complete();
    run.assert_no_survivors();
    run.assert_temp_clean();
}

#[test]
fn a_board_command_s_own_children_are_stopped_with_it() {
    let run = ChaosRun::new("fork");
    // The board command leaves a child of its own behind its `exec`.
    let command = format!(
        "sh -c 'sleep 1000 & exec python3 -u {}'",
        fake_cli().display()
    );
    let mut child = run.start(&["--board-command".into(), command]);
    run.wait_mid_step("host");
    assert!(
        run.survivors().iter().any(|p| p.contains("sleep 1000")),
        "the board command's own child runs: {:?}",
        run.survivors()
    );
    signal(&child, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(143));
    run.assert_reports_complete();
    run.assert_no_survivors();
    run.assert_temp_clean();
}

#[test]
fn board_processes_die_with_a_runner_killed_outright() {
    let run = ChaosRun::new("kill");
    let mut child = run.start(&[
        "--variant".into(),
        "upstream".into(),
        "-j".into(),
        "2".into(),
    ]);
    run.wait_mid_step("upstream");
    assert!(
        run.survivors().len() >= 2,
        "the run's board processes carry the marker: {:?}",
        run.survivors()
    );
    signal(&child, Signal::SIGKILL);
    let _ = child.wait();
    // Nothing can clean up after SIGKILL; the parent-death signal still takes the boards along.
    run.assert_no_survivors();
}

#[test]
fn a_flooding_board_s_log_is_capped_and_the_cut_is_counted() {
    let run = ChaosRun::new("flood");
    std::fs::write(run.cases.path().join("a-slow.toml"), quiet_case("10ms")).unwrap();
    // 4 MB of noise before the CLI starts, against a 200 kB cap.
    let command = format!(
        "sh -c 'head -c 3000000 /dev/urandom | base64; exec python3 -u {}'",
        fake_cli().display()
    );
    let out = Command::new(EXE)
        .arg("run")
        .arg(run.cases.path().join("a-slow.toml"))
        .arg("--variants-dir")
        .arg(variants_dir())
        .arg("--out")
        .arg(run.out.path())
        .args(["--board-command", &command])
        .env(MARKER, &run.marker)
        .env("TMPDIR", run.tmp.path())
        .env("OT_HIL_LOG_CAP", "200000")
        .output()
        .unwrap();
    let log = run.out.path().join("logs/a-slow/host/dut.log");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.len() < 210_000, "{} bytes", text.len());
    let markers: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("--- log cut: "))
        .collect();
    let [marker] = markers[..] else {
        panic!("one cut marker: {markers:?}");
    };
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.out.path().join("results.json")).unwrap(),
    )
    .unwrap();
    let dropped = json["results"][0]["log_bytes_dropped"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        dropped > 3_000_000 && marker.contains(&format!("{dropped} bytes")),
        "{marker} / {dropped}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The end of the case is in the kept tail.
    assert!(text.contains(">>> state"), "{}", &text[text.len() - 500..]);
}

/// The pid of the virtual DK of board `node` carrying `marker`.
fn vdk_of(marker: &str, node: &str) -> Option<i32> {
    let needle = format!("{MARKER}={marker}");
    let link = format!("/{node}.tty");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
        let env = std::fs::read(e.path().join("environ")).ok()?;
        let cmd =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).into_owned();
        (env.split(|b| *b == 0).any(|v| v == needle.as_bytes())
            && cmd.split('\0').any(|a| a == "vdk")
            && cmd.split('\0').any(|a| a.ends_with(&link)))
        .then_some(pid)
    })
}

#[test]
fn a_board_lost_while_another_is_driven_ends_the_case_within_a_second() {
    let run = ChaosRun::new("lost");
    for name in ["a-slow", "b-quick", "c-quick"] {
        std::fs::remove_file(run.cases.path().join(format!("{name}.toml"))).unwrap();
    }
    // Node `a` watches its console for 30 s while node `b` only waits for its next step.
    std::fs::write(
        run.cases.path().join("pair.toml"),
        "nodes = [\"a\", \"b\"]\n[[steps]]\nnode = \"b\"\nsend = \"state\"\n\n[[steps]]\nnode = \"a\"\nabsent = ['ZZZ']\nwindow = \"30s\"\n\n[[steps]]\nnode = \"b\"\nsend = \"state\"\n",
    )
    .unwrap();
    // No retry: the retried case would sit in its 30 s window again.
    let mut child = run.start_upstream_until_window(0, "pair", "a", Duration::from_secs(20));
    run.kill_board("b");
    let killed = Instant::now();
    // Ended without waiting for the 30 s window (nor for b's next write); 1 s plus the
    // closing of the other board and the reports.
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(2));
    let took = killed.elapsed();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.out.path().join("results.json")).unwrap(),
    )
    .unwrap();
    let result = &json["results"][0];
    assert_eq!(result["outcome"], "ERROR", "{result:#}");
    assert_eq!(result["infra"]["board"], "b", "{result:#}");
    assert_eq!(
        result["infra"]["step"], "a: absent for 30s",
        "ended in the step driving a: {result:#}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    run.assert_no_survivors();
}

#[test]
fn an_interrupt_while_waiting_for_a_locked_board_ends_the_run_at_once() {
    // One real board (its console a PTY, never opened here), locked by someone else.
    let (_master, slave) = serialport::TTYPort::pair().unwrap();
    use serialport::SerialPort;
    let port = slave.name().unwrap();
    drop(slave);
    let run = ChaosRun::new("lock");
    let lab = tempfile::tempdir().unwrap();
    // A variant whose image exists, so the case gets as far as allocating its board.
    let variants = lab.path().join("variants");
    std::fs::create_dir_all(variants.join("build/ncs-v2.2.0/zephyr")).unwrap();
    for file in ["ncs-v2.2.0.toml", "ncs-v2.2.0.conf"] {
        std::fs::copy(variants_dir().join(file), variants.join(file)).unwrap();
    }
    std::fs::write(
        variants.join("build/ncs-v2.2.0/zephyr/zephyr.hex"),
        ":00000001FF\n",
    )
    .unwrap();
    let map = lab.path().join("lab.toml");
    std::fs::write(
        &map,
        format!(
            "[[board]]\nid = \"dk-a\"\nplatform = \"nrf52840dk/nrf52840\"\nprobe = \"1366:1015:000683759358\"\nport = \"{port}\"\nprofile = \"ncs\"\n"
        ),
    )
    .unwrap();
    let locks = lab.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let _held = ot_hil_lab::lock::LockDir::new(locks.clone())
        .try_lock("dk-a", "another run")
        .unwrap()
        .expect("the board's lock");
    let mut child = Command::new(EXE)
        .arg("run")
        .arg(run.cases.path().join("a-slow.toml"))
        .args([
            "--variant",
            "ncs-v2.2.0",
            "--board-wait",
            "10m",
            "--variants-dir",
        ])
        .arg(&variants)
        .arg("--hardware-map")
        .arg(&map)
        .arg("--out")
        .arg(run.out.path())
        .env(MARKER, &run.marker)
        .env("TMPDIR", run.tmp.path())
        .env("OT_HIL_LOCK_DIR", &locks)
        .env("OT_HIL_STATE_DIR", lab.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Give it time to load, plan and start waiting for the lock.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run waits for the board"
    );
    let sent = Instant::now();
    signal(&child, Signal::SIGINT);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(130));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "took {:?}",
        sent.elapsed()
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.out.path().join("results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        json["results"].as_array().map(Vec::len),
        Some(1),
        "{json:#}"
    );
    assert_eq!(json["summary"]["interrupted"], true);
}

/// One node on channel 15, watched by a sniffer, with a window the test strikes in: the node
/// forms a network (its radio sends MLE), watches its console for `window`, then pings every
/// node of the link (more frames) and waits a little for them to go out. With `snapshot`, a
/// second node `peer` idles and a handshake snapshot peer -> dut is declared.
fn sniffed_case(window: &str, snapshot: bool) -> String {
    let mut case = if snapshot {
        String::from(
            "nodes = [\"dut\", \"peer\"]\n\n[sniffer]\nchannel = 15\n\n\
             [[snapshot]]\nname = \"handshake\"\nclient = \"peer\"\nserver = \"dut\"\n",
        )
    } else {
        String::from("nodes = [\"dut\"]\n\n[sniffer]\nchannel = 15\n")
    };
    for send in [
        "thread stop",
        "dataset clear",
        "dataset init new",
        "dataset channel 15",
        "dataset networkkey 00112233445566778899aabbccddeeff",
        "dataset commit active",
        "ifconfig up",
        "thread start",
    ] {
        case.push_str(&format!("\n[[steps]]\nnode = \"dut\"\nsend = \"{send}\"\n"));
    }
    case.push_str(&format!(
        "\n[[steps]]\nnode = \"dut\"\npoll = \"state\"\nuntil = '^leader$'\ninterval = \"100ms\"\ndeadline = \"30s\"\n\
         \n[[steps]]\nnode = \"dut\"\nabsent = ['ZZZ']\nwindow = \"{window}\"\n\
         \n[[steps]]\nnode = \"dut\"\nsend = \"ping ff02::1\"\n\
         \n[[steps]]\nnode = \"dut\"\nabsent = ['ZZZ']\nwindow = \"1s\"\n"
    ));
    case
}

/// A chaos run of the one case `sniffed`, waiting for it to enter its window on `upstream`.
fn start_sniffed(tag: &str, window: &str, snapshot: bool, args: &[&str]) -> (ChaosRun, Child) {
    let mut run = ChaosRun::new(tag);
    for name in &run.planned {
        std::fs::remove_file(run.cases.path().join(format!("{name}.toml"))).unwrap();
    }
    run.planned = vec!["sniffed"];
    std::fs::write(
        run.cases.path().join("sniffed.toml"),
        sniffed_case(window, snapshot),
    )
    .unwrap();
    let mut board_args = vec!["--variant".to_string(), "upstream".to_string()];
    board_args.extend(args.iter().map(|a| a.to_string()));
    let child = run.start(&board_args);
    let log = run.out.path().join("logs/sniffed/upstream/dut.log");
    wait_for_window(&log, Duration::from_secs(40));
    (run, child)
}

fn results(run: &ChaosRun) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.out.path().join("results.json")).unwrap())
        .unwrap()
}

#[test]
fn a_sniffer_killed_mid_case_ends_the_attempt_as_an_infrastructure_error_and_is_retried() {
    // The second attempt gets a fresh sniffer and runs through.
    let (run, mut child) = start_sniffed("sniffer-lost", "8s", false, &["--infra-retries", "1"]);
    run.kill_board("sniffer");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(90)), Some(0));
    let json = results(&run);
    let result = &json["results"][0];
    assert_eq!(result["outcome"], "PASS", "{result:#}");
    let first = &result["attempts"][0];
    assert_eq!(first["outcome"], "ERROR", "{result:#}");
    assert_eq!(first["infra"]["board"], "sniffer", "{result:#}");
    assert_eq!(first["infra"]["kind"], "sniffer-lost", "{result:#}");
    assert_eq!(first["infra"]["step"], "dut: absent for 8s", "{result:#}");
    assert!(
        first["infra"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("sniffer lost during the case: ")),
        "{result:#}"
    );
    // Ended within a second of the loss, not after the 8 s window.
    assert!(
        first["duration"].as_f64().is_some_and(|d| d < 8.0),
        "{result:#}"
    );
    // The attempt that passed had a whole capture: the air handed the sniffer N frames and the
    // capture holds them all.
    let capture = &result["air"]["capture"];
    assert_eq!(capture["missed"], 0, "{result:#}");
    assert!(
        capture["frames"].as_u64() > Some(0)
            && result["air"]["hub"]["frames_to_sniffer"] == capture["frames"],
        "{result:#}"
    );
    run.assert_no_survivors();
}

#[test]
fn a_sniffer_that_misses_frames_is_an_infrastructure_error_not_a_changed_handshake() {
    // The sniffer stops reading (SIGSTOP: a hung sniffer, a port that stalls) while the node
    // keeps transmitting: the air hands it frames its capture never gets.
    let (run, mut child) = start_sniffed("sniffer-missed", "2s", true, &["--infra-retries", "0"]);
    let victim = vdk_of(&run.marker, "sniffer").expect("the sniffer's virtual DK");
    kill(Pid::from_raw(victim), Signal::SIGSTOP).unwrap();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(2));
    let json = results(&run);
    let result = &json["results"][0];
    assert_eq!(result["outcome"], "ERROR", "{result:#}");
    assert_eq!(result["infra"]["board"], "sniffer", "{result:#}");
    assert_eq!(
        result["infra"]["kind"], "sniffer-missed-frames",
        "{result:#}"
    );
    // The reason's counts: the frames handed over when the capture was drained, and what it
    // holds; the hub's own counter (read at the attempt's end) may have grown since.
    let reason = result["infra"]["reason"].as_str().unwrap_or_default();
    let counts: Vec<u64> = reason
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [missed, delivered, captured] = counts[..] else {
        panic!("{reason}")
    };
    assert_eq!(
        reason,
        format!(
            "sniffer missed {missed} frames: the air delivered {delivered} to it, its capture has {captured}"
        )
    );
    assert!(missed > 0 && missed == delivered - captured, "{result:#}");
    assert_eq!(result["air"]["capture"]["missed"], missed, "{result:#}");
    assert_eq!(result["air"]["capture"]["frames"], captured, "{result:#}");
    let handed = result["air"]["hub"]["frames_to_sniffer"].as_u64();
    assert!(handed >= Some(delivered), "{result:#}");
    // The handshake is not judged on a partial capture: no verdict, no pending snapshot.
    assert_eq!(
        result["snapshots"][0]["verdict"], "not-compared",
        "{result:#}"
    );
    assert!(
        !run.cases.path().join("snapshots").exists(),
        "no pending snapshot from a partial capture"
    );
    run.assert_no_survivors();
}

/// Whether `pid` has a SIGTERM waiting (a stopped process cannot take it yet).
fn sigterm_pending(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .filter_map(|m| u64::from_str_radix(m.trim(), 16).ok())
        .any(|mask| mask & (1 << (Signal::SIGTERM as u64 - 1)) != 0)
}

#[rstest]
#[case::sigint(Signal::SIGINT, 130)]
#[case::sigterm(Signal::SIGTERM, 143)]
#[case::sighup(Signal::SIGHUP, 129)]
fn a_stop_signal_while_a_board_boots_reports_every_case_and_leaves_nothing(
    #[case] sig: Signal,
    #[case] code: i32,
) {
    let run = ChaosRun::new(&format!("boot-{}", sig.as_str()));
    // The board takes 30 s to show its first prompt; the run waits for it (up to a minute).
    let command = format!("sh -c 'sleep 30; exec python3 -u {}'", fake_cli().display());
    let mut child = run.start(&[
        "--board-command".into(),
        command,
        "--ready-timeout".into(),
        "60s".into(),
    ]);
    let log = run.out.path().join("logs/a-slow/host/dut.log");
    let start = Instant::now();
    while !(log.exists() && run.survivors().iter().any(|p| p.contains("sleep 30"))) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the board never started booting"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still booting: no prompt yet, so no step.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(">>> "),
        "a step ran before the prompt"
    );
    let sent = Instant::now();
    signal(&child, sig);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(code));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );
    run.assert_reports_complete();
    let json = results(&run);
    let a = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["case"] == "a-slow")
        .unwrap();
    assert_eq!(a["outcome"], "ERROR", "{a:#}");
    run.assert_no_survivors();
    run.assert_temp_clean();
}

#[rstest]
#[case::sigint(Signal::SIGINT, 130)]
#[case::sigterm(Signal::SIGTERM, 143)]
#[case::sighup(Signal::SIGHUP, 129)]
fn a_stop_signal_while_boards_are_being_stopped_reports_every_case_and_leaves_nothing(
    #[case] sig: Signal,
    #[case] code: i32,
) {
    let mut run = ChaosRun::new(&format!("teardown-{}", sig.as_str()));
    // `a-slow` ends on its window: after it the case only stops its board.
    let last_window = "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\n\n[[steps]]\nnode = \"dut\"\nabsent = ['ZZZ']\nwindow = \"1500ms\"\n";
    run.replace_cases(&[
        ("a-slow", last_window.to_string()),
        ("b-quick", quiet_case("10ms")),
        ("c-quick", quiet_case("10ms")),
    ]);
    // One case at a time: the only `dut` board up is a-slow's.
    let mut child = run.start(&[
        "--variant".into(),
        "upstream".into(),
        "-j".into(),
        "1".into(),
    ]);
    run.wait_mid_step("upstream");
    // A board that does not stop when asked: the runner's SIGTERM stays pending while it waits
    // for the board to exit, and the stop signal comes in that wait.
    let vdk = vdk_of(&run.marker, "dut").expect("the virtual DK of dut");
    kill(Pid::from_raw(vdk), Signal::SIGSTOP).unwrap();
    let start = Instant::now();
    while !sigterm_pending(vdk) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the runner never asked the board to stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run is still on");
    let sent = Instant::now();
    signal(&child, sig);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)), Some(code));
    let took = sent.elapsed();
    run.assert_reports_complete();
    // Cut short while its boards were being stopped: reported as such, the others not run.
    for r in results(&run)["results"].as_array().unwrap() {
        let expected = if r["case"] == "a-slow" {
            "ERROR"
        } else {
            "SKIP"
        };
        assert_eq!(r["outcome"], expected, "{r:#}");
    }
    // Without waiting out the board's stop (2 s).
    assert!(took < Duration::from_millis(1500), "{took:?}");
    run.assert_no_survivors();
    run.assert_temp_clean();
}

/// A misbehaving `--board-command`: what it is and how its case must be reported.
struct Misbehaving {
    command: &'static str,
    outcome: &'static str,
    /// The infrastructure error's kind (ERROR), or the start of the failure's crash (FAIL).
    why: &'static str,
}

#[rstest]
// Binary noise (no `>`, so never a prompt by chance), then silence: no prompt, an infrastructure
// error, retried.
#[case::garbage(Misbehaving {
    command: "sh -c \"head -c 1000000 /dev/urandom | tr -d '>'; exec sleep 1000\"",
    outcome: "ERROR",
    why: "not-ready",
})]
// Prints boot lines forever, never a prompt.
#[case::no_prompt(Misbehaving {
    command: "sh -c 'while :; do echo booting; sleep 0.05; done'",
    outcome: "ERROR",
    why: "not-ready",
})]
// The firmware dies at once: a crash while booting, the firmware's failure.
#[case::exits_at_once(Misbehaving {
    command: "sh -c 'exit 3'",
    outcome: "FAIL",
    why: "board dut crashed while booting: board process exited",
})]
fn a_misbehaving_board_command_ends_its_cases_within_the_timeouts(#[case] m: Misbehaving) {
    let run = ChaosRun::new("misbehaving");
    let started = Instant::now();
    // Three cases, one attempt each plus one infrastructure retry, 1 s to show a prompt.
    let mut child = Command::new(EXE)
        .arg("run")
        .arg(run.cases.path())
        .arg("--variants-dir")
        .arg(variants_dir())
        .arg("--out")
        .arg(run.out.path())
        .args(["--board-command", m.command])
        .args(["--ready-timeout", "1s", "--infra-retries", "1"])
        .env(MARKER, &run.marker)
        .env("TMPDIR", run.tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(40));
    // 6 attempts of 1 s at most, plus starting and stopping the boards.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let json = run.assert_every_case_once();
    assert_eq!(json["summary"]["interrupted"], false);
    for r in json["results"].as_array().unwrap() {
        assert_eq!(r["outcome"], m.outcome, "{r:#}");
        let attempts = r["attempts"].as_array().unwrap();
        if m.outcome == "ERROR" {
            assert_eq!(r["infra"]["kind"], m.why, "{r:#}");
            assert_eq!(r["infra"]["board"], "dut", "{r:#}");
            // Retried once, on a fresh board, with the same result.
            assert_eq!(attempts.len(), 1, "{r:#}");
            assert_eq!(attempts[0]["outcome"], "ERROR", "{r:#}");
        } else {
            let crash = r["failure"]["crash"].as_str().unwrap_or_default();
            assert!(crash.starts_with(m.why), "{r:#}");
            assert_eq!(r["failure"]["step"], "boot", "{r:#}");
            assert!(attempts.is_empty(), "a failure is not retried: {r:#}");
        }
    }
    let expected = if m.outcome == "ERROR" { 2 } else { 1 };
    assert_eq!(code, Some(expected));
    run.assert_no_survivors();
    run.assert_temp_clean();
}

#[test]
fn a_random_virtual_dk_killed_mid_case_is_an_error_within_a_second_and_the_retry_passes() {
    let mut run = ChaosRun::new("vdk-lost");
    // Three nodes; `a` watches its console for 3 s, then each answers once more.
    let mut case = String::from("nodes = [\"a\", \"b\", \"c\"]\n");
    for node in ["a", "b", "c"] {
        case.push_str(&format!(
            "\n[[steps]]\nnode = \"{node}\"\nsend = \"state\"\n"
        ));
    }
    case.push_str("\n[[steps]]\nnode = \"a\"\nabsent = ['ZZZ']\nwindow = \"3s\"\n");
    for node in ["a", "b", "c"] {
        case.push_str(&format!(
            "\n[[steps]]\nnode = \"{node}\"\nsend = \"state\"\n"
        ));
    }
    run.replace_cases(&[("trio", case)]);
    let mut child = run.start_upstream_until_window(1, "trio", "a", Duration::from_secs(20));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let node = ["a", "b", "c"][nanos as usize % 3];
    eprintln!("killing the virtual DK of {node}");
    run.kill_board(node);
    let killed = Instant::now();
    // The first attempt ends (and the retry starts its boards) without waiting out the window.
    let retry = run.out.path().join("logs/trio/upstream/attempt-2");
    while !retry.exists() {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no second attempt"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = killed.elapsed();
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), Some(0));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let json = run.assert_every_case_once();
    let result = &json["results"][0];
    assert_eq!(result["outcome"], "PASS", "{result:#}");
    let first = &result["attempts"][0];
    assert_eq!(first["outcome"], "ERROR", "{result:#}");
    assert_eq!(first["infra"]["board"], node, "{result:#}");
    assert_eq!(first["infra"]["kind"], "board-lost", "{result:#}");
    assert!(
        first["duration"].as_f64().is_some_and(|d| d < 3.0),
        "{result:#}"
    );
    run.assert_no_survivors();
    run.assert_temp_clean();
}

/// The bound README's reliability section gives for the runner's resident memory.
const RUNNER_RSS_BOUND: u64 = 100 * 1000 * 1000;

/// The peak resident memory (VmHWM) of `pid`, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[test]
fn the_runner_s_memory_stays_bounded_under_a_flooding_board() {
    let mut run = ChaosRun::new("memory");
    // Commands only: random base64 can hold any pattern an `absent` step would look for.
    run.replace_cases(&[(
        "flood",
        "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\n\n[[steps]]\nnode = \"dut\"\nsend = \"ipaddr\"\n".to_string(),
    )]);
    // 27 MB of 4 kB lines (the longest a line gets) before the CLI starts.
    let command = format!(
        "sh -c 'head -c 20000000 /dev/urandom | base64 -w 4000; exec python3 -u {}'",
        fake_cli().display()
    );
    let mut child = run.start(&[
        "--board-command".into(),
        command,
        "--ready-timeout".into(),
        "120s".into(),
    ]);
    let pid = child.id();
    let mut peak = 0;
    let start = Instant::now();
    let code = loop {
        // Sampled before the runner is reaped: VmHWM only grows, the last sample is the peak.
        if let Some(rss) = peak_rss(pid) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "the runner did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("runner peak RSS: {:.1} MB", peak as f64 / 1e6);
    assert_eq!(code, Some(0));
    let json = run.assert_every_case_once();
    assert_eq!(json["results"][0]["outcome"], "PASS");
    assert!(peak > 0, "no sample of the runner");
    assert!(
        peak < RUNNER_RSS_BOUND,
        "runner peak RSS {} MB",
        peak / 1_000_000
    );
    run.assert_no_survivors();
}

fn testcases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testcases")
}

#[test]
fn a_sniffer_lost_after_the_handshake_it_is_judged_on_is_a_warning_not_an_error() {
    let mut run = ChaosRun::new("sniffer-after");
    // The PSK handshake case with its stored snapshot, and a window after the handshake (the
    // sniffer dies in it), then one more command.
    let case = std::fs::read_to_string(testcases_dir().join("coaps-psk.toml")).unwrap();
    let (steps, variants) = case.split_once("\n[variants.").unwrap();
    let case = format!(
        "{steps}\n[[steps]]\nnode = \"client\"\nabsent = ['ZZZ']\nwindow = \"3s\"\n\n[[steps]]\nnode = \"server\"\nsend = \"state\"\n\n[variants.{variants}"
    );
    run.replace_cases(&[("coaps-psk", case)]);
    let cases = run.cases.path();
    std::fs::create_dir_all(cases.join("fragments")).unwrap();
    std::fs::copy(
        testcases_dir().join("fragments/form-network.toml"),
        cases.join("fragments/form-network.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(cases.join("snapshots")).unwrap();
    let snap = "coaps-psk__psk-handshake__upstream.snap";
    std::fs::copy(
        testcases_dir().join("snapshots").join(snap),
        cases.join("snapshots").join(snap),
    )
    .unwrap();
    let mut child =
        run.start_upstream_until_window(0, "coaps-psk", "client", Duration::from_secs(40));
    run.kill_board("sniffer");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0));
    let json = run.assert_every_case_once();
    let result = &json["results"][0];
    assert_eq!(result["outcome"], "PASS", "{result:#}");
    assert!(result["infra"].is_null(), "{result:#}");
    // The case ran to its end after the loss.
    assert!(
        result["steps"]
            .as_array()
            .and_then(|s| s.last())
            .is_some_and(|s| s["step"] == "server: send `state`"),
        "{result:#}"
    );
    let warnings = result["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{result:#}");
    assert!(
        warnings[0]
            .as_str()
            .is_some_and(|w| w.starts_with("sniffer lost during the case: ")),
        "{result:#}"
    );
    // Judged on the capture taken before the loss.
    assert_eq!(result["snapshots"][0]["verdict"], "matched", "{result:#}");
    assert!(
        result["board_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["node"] == "sniffer" && e["event"] == "lost"),
        "{result:#}"
    );
    run.assert_no_survivors();
}
