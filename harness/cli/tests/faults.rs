//! Injected faults end to end (`ot-hil run` on virtual boards): how each fault is classified,
//! retries on fresh boards, re-runs that make a case flaky, quarantine, air faults from the
//! command line, and what JUnit and results.json say about it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn variants_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware/variants")
}

/// A one-node case on the NCS variant (its boot banner makes a reboot visible) with `faults`.
fn case(dir: &Path, name: &str, faults: &str) -> PathBuf {
    let text = format!(
        "nodes = [\"dut\"]\n\
         [defaults]\ntimeout = \"2s\"\n\
         [[steps]]\nnode = \"dut\"\nsend = \"state\"\n\
         [[steps]]\nid = \"second\"\nnode = \"dut\"\nsend = \"channel\"\n\
         [[steps]]\nnode = \"dut\"\nsend = \"state\"\n\
         {faults}"
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

fn run(out: &Path, args: &[&str], cases: &[&Path]) -> (Option<i32>, String) {
    let o: Output = Command::new(EXE)
        .args(["run", "--variant", "ncs-v2.2.0", "--variants-dir"])
        .arg(variants_dir())
        .arg("--out")
        .arg(out)
        .args(args)
        .args(cases)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_vanished_console_is_an_infrastructure_error_retried_on_a_fresh_board() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let c = case(
        dir.path(),
        "usb-drop",
        "[[faults.board]]\nnode = \"dut\"\nstep = \"second\"\naction = \"close-console\"\n",
    );
    let (code, stdout) = run(out.path(), &[], &[&c]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("PASS  usb-drop @ ncs-v2.2.0"), "{stdout}");
    assert!(
        stdout.contains("after attempt 1 ERROR (board dut: "),
        "{stdout}"
    );
    assert!(stdout.contains("1 retried"), "{stdout}");
    // Each attempt has its own logs.
    assert!(
        read(out.path().join("logs/usb-drop/ncs-v2.2.0/dut.log"))
            .contains("injected fault: close-console")
    );
    assert!(
        out.path()
            .join("logs/usb-drop/ncs-v2.2.0/attempt-2/dut.log")
            .exists()
    );
    let junit = read(out.path().join("junit.xml"));
    assert!(
        junit.contains("<flakyError message=\"attempt 1: ERROR board dut: "),
        "{junit}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&read(out.path().join("results.json"))).unwrap();
    assert_eq!(json["results"][0]["attempts"][0]["outcome"], "ERROR");
    assert_eq!(json["results"][0]["flaky"], false);

    // Without retries the same case is an infrastructure error (exit 2).
    let out = tempfile::tempdir().unwrap();
    let (code, stdout) = run(out.path(), &["--infra-retries", "0"], &[&c]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.contains("ERROR usb-drop @ ncs-v2.2.0"), "{stdout}");
}

#[test]
fn a_crash_fails_the_case_and_a_pass_on_rerun_is_flaky() {
    let dir = tempfile::tempdir().unwrap();
    let c = case(
        dir.path(),
        "crashes-once",
        "[[faults.board]]\nnode = \"dut\"\nstep = 2\naction = \"crash\"\n",
    );
    let out = tempfile::tempdir().unwrap();
    let (code, stdout) = run(out.path(), &[], &[&c]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  crashes-once"), "{stdout}");
    // The NCS sample logs errors (minimal mode), so the fatal error names the crash.
    assert!(
        stdout.contains(
            "crash: board dut crashed: fatal error on the console (`>>> ZEPHYR FATAL ERROR`)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("E: >>> ZEPHYR FATAL ERROR 0: CPU exception on CPU 0"),
        "{stdout}"
    );

    let out = tempfile::tempdir().unwrap();
    let (code, stdout) = run(out.path(), &["--rerun-failures", "1"], &[&c]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("PASS  crashes-once"), "{stdout}");
    assert!(
        stdout.contains("FLAKY: passed on re-run after attempt 1 FAIL"),
        "{stdout}"
    );
    assert!(stdout.contains("1 flaky"), "{stdout}");
    let junit = read(out.path().join("junit.xml"));
    assert!(
        junit.contains("<property name=\"flaky\" value=\"true\"/>"),
        "{junit}"
    );
    assert!(
        junit.contains("<flakyFailure message=\"attempt 1: FAIL"),
        "{junit}"
    );
    assert!(junit.contains("failures=\"0\""), "{junit}");
}

#[test]
fn a_fault_on_every_attempt_stays_a_failure_and_quarantine_keeps_the_run_green() {
    let dir = tempfile::tempdir().unwrap();
    let c = case(
        dir.path(),
        "always-hangs",
        "[[faults.board]]\nnode = \"dut\"\ncommand = \"channel\"\naction = \"hang\"\nevery_attempt = true\n",
    );
    let out = tempfile::tempdir().unwrap();
    let (code, stdout) = run(out.path(), &["--rerun-failures", "1"], &[&c]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  always-hangs"), "{stdout}");
    assert!(
        stdout.contains("echo of `ot channel` within 2s"),
        "{stdout}"
    );
    let junit = read(out.path().join("junit.xml"));
    assert!(
        junit.contains("<rerunFailure message=\"attempt 1: FAIL"),
        "{junit}"
    );

    let q = dir.path().join("quarantine.toml");
    std::fs::write(
        &q,
        "[[case]]\nname = \"always-hangs\"\nreason = \"tracked in issue 12\"\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    // quarantine.toml next to the case is found without --quarantine, and is not a case.
    let (code, stdout) = run(out.path(), &[], &[dir.path()]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("FAIL  always-hangs"), "{stdout}");
    assert!(
        stdout.contains("quarantined (tracked in issue 12): does not fail the run"),
        "{stdout}"
    );
    assert!(stdout.contains("1 quarantined"), "{stdout}");
}

#[test]
fn a_requested_reset_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let c = case(
        dir.path(),
        "reset-midway",
        "[[faults.board]]\nnode = \"dut\"\nstep = 3\naction = \"reset\"\n",
    );
    let out = tempfile::tempdir().unwrap();
    let (code, stdout) = run(out.path(), &[], &[&c]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(!stdout.contains("retried"), "{stdout}");
}

#[test]
fn bad_fault_tables_are_reported_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = case(
        dir.path(),
        "bad",
        "[faults]\nloss = 1.5\nlinks = [[\"dut\", \"nobody\"]]\n\
         [[faults.board]]\nnode = \"dut\"\nstep = 9\naction = \"explode\"\n",
    );
    let o = Command::new(EXE)
        .args(["check", "--variants-dir"])
        .arg(variants_dir())
        .arg(&c)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("bad.toml:15:8: loss must be a probability"),
        "{err}"
    );
    assert!(err.contains("link names unknown node `nobody`"), "{err}");
    assert!(err.contains("unknown action \"explode\""), "{err}");
}

#[test]
fn total_loss_from_the_command_line_cuts_the_air() {
    // Two boards, the second pings the first's link-local address: with --air-loss 1 nothing
    // arrives, without it the ping is answered.
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("ping.toml");
    std::fs::write(
        &c,
        "nodes = [\"a\", \"b\"]\n[defaults]\ntimeout = \"3s\"\n\
         [[steps]]\nnode = \"a\"\nsend = \"ifconfig up\"\n\
         [[steps]]\nnode = \"b\"\nsend = \"ifconfig up\"\n\
         [[steps]]\nnode = \"a\"\nsend = \"thread start\"\n\
         [[steps]]\nnode = \"b\"\nsend = \"thread start\"\n\
         [[steps]]\nnode = \"a\"\nsend = \"ipaddr linklocal\"\ncapture = { ll = '^(fe80:[0-9a-f:]+)$' }\n\
         [[steps]]\nnode = \"b\"\nsend = \"ping ${a.ll}\"\nresult = \"none\"\n\
         [[steps]]\nnode = \"b\"\nexpect = '16 bytes from ${a.ll}'\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, stdout) = run(out.path(), &[], &[&c]);
    assert_eq!(code, Some(0), "{stdout}");
    let out = tempfile::tempdir().unwrap();
    let (code, stdout) = run(out.path(), &["--air-loss", "1"], &[&c]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  ping"), "{stdout}");
    let (code, _) = run(out.path(), &["--air-loss", "2"], &[&c]);
    assert_eq!(code, Some(2));
}
