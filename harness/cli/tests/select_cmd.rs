//! The binary's selection and lab surface: `--filter` globs and prefixes, an empty selection
//! failing by default (exit 4), `--failed`, board-command runs once per case, the `--out` lock,
//! `boards` with nothing attached, `check` of bad durations and unreadable includes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn variants_dir() -> PathBuf {
    repo().join("firmware/variants")
}

fn fake_cli() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/support/fake_cli.py");
    format!("python3 -u {}", script.display())
}

fn ot_hil(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().unwrap()
}

/// `ot-hil run CASES --variants-dir <repo's> --out OUT ARGS..`.
fn run(cases: &Path, out: &Path, args: &[&str]) -> Output {
    let vd = variants_dir();
    let mut all = vec![
        "run",
        cases.to_str().unwrap(),
        "--variants-dir",
        vd.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    ot_hil(&all)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Two one-node cases the fake CLI passes; `b` is skipped on `ncs-v2.2.0`.
fn cases() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let step =
        "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\noutput = ['^leader$']\n";
    std::fs::write(dir.path().join("alpha-psk.toml"), step).unwrap();
    std::fs::write(
        dir.path().join("beta.toml"),
        format!("{step}[variants.\"ncs-v2.2.0\"]\nskip = \"not on this one\"\n"),
    )
    .unwrap();
    dir
}

fn results(out: &Path) -> Vec<(String, String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let mut r: Vec<_> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["case"].as_str().unwrap().to_string(),
                r["variant"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    r.sort();
    r
}

#[test]
fn an_empty_selection_fails_with_its_own_exit_code() {
    let dir = cases();
    let out = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let vd = variants_dir();
    let vd = vd.to_str().unwrap();
    let r = run(dir.path(), out.path(), &["--filter", "no-such-case"]);
    assert_eq!(r.status.code(), Some(4), "{}", text(&r.stderr));
    assert!(
        text(&r.stdout).contains("0 of 10 runs selected"),
        "{}",
        text(&r.stdout)
    );
    assert!(
        text(&r.stderr).contains("no case run selected"),
        "{}",
        text(&r.stderr)
    );
    assert!(!out.path().join("results.json").exists());

    let r = run(
        dir.path(),
        out.path(),
        &["--filter", "no-such-case", "--no-tests", "warn"],
    );
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(text(&r.stderr).contains("warning: no case run selected"));

    // An empty directory is an empty selection too.
    let empty = tempfile::tempdir().unwrap();
    let r = run(empty.path(), out.path(), &[]);
    assert_eq!(r.status.code(), Some(4), "{}", text(&r.stderr));
    let r = ot_hil(&["list", d, "--variants-dir", vd, "--filter", "case:nope"]);
    assert_eq!(r.status.code(), Some(4), "{}", text(&r.stderr));
}

#[test]
fn list_takes_globs_and_prefixes() {
    let dir = cases();
    let d = dir.path().to_str().unwrap();
    let vd = variants_dir();
    let vd = vd.to_str().unwrap();
    let listed = |filters: &[&str]| {
        let mut args = vec!["list", d, "--variants-dir", vd];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let r = ot_hil(&args);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        let runs: Vec<String> = text(&r.stdout)
            .lines()
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect();
        (runs, text(&r.stderr))
    };
    // `psk` names a case, not the `ncs-v2.2.0-psk` variant.
    let (runs, stderr) = listed(&["psk"]);
    assert_eq!(runs.len(), 5, "{runs:?}");
    assert!(runs.iter().all(|r| r.starts_with("alpha-psk@")), "{runs:?}");
    assert!(stderr.contains("5 of 10 runs selected"), "{stderr}");
    let (runs, _) = listed(&["variant:ncs-v2.2.0-psk"]);
    assert_eq!(runs, ["alpha-psk@ncs-v2.2.0-psk", "beta@ncs-v2.2.0-psk"]);
    let (runs, _) = listed(&["b*@ncs-v2.?.0"]);
    assert_eq!(runs, ["beta@ncs-v2.1.0", "beta@ncs-v2.2.0"]);
    let (runs, _) = listed(&["case:alpha-*", "case:beta", "variant:upstream"]);
    assert_eq!(runs, ["alpha-psk@upstream", "beta@upstream"]);
}

#[test]
fn board_commands_run_each_case_once_and_failed_reruns_failures() {
    let dir = cases();
    let out = tempfile::tempdir().unwrap();
    let cli = fake_cli();
    let r = run(dir.path(), out.path(), &["--board-command", &cli]);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}\n{}",
        text(&r.stdout),
        text(&r.stderr)
    );
    assert!(
        text(&r.stdout).contains("2 of 2 runs selected"),
        "{}",
        text(&r.stdout)
    );
    assert_eq!(
        results(out.path()),
        [
            ("alpha-psk".into(), "host".into(), "PASS".into()),
            ("beta".into(), "host".into(), "PASS".into())
        ]
    );

    // Named as a variant, the program gets that variant's expectations.
    let r = run(
        dir.path(),
        out.path(),
        &["--board-command", &cli, "--board-variant", "ncs-v2.2.0"],
    );
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(
        results(out.path()),
        [
            ("alpha-psk".into(), "ncs-v2.2.0".into(), "PASS".into()),
            ("beta".into(), "ncs-v2.2.0".into(), "SKIP".into())
        ]
    );

    // --failed takes the failures of the last results.json of --out.
    std::fs::write(
        out.path().join("results.json"),
        r#"{"results": [{"case": "beta", "variant": "host", "outcome": "FAIL"},
                        {"case": "alpha-psk", "variant": "host", "outcome": "PASS"}]}"#,
    )
    .unwrap();
    let r = run(
        dir.path(),
        out.path(),
        &["--board-command", &cli, "--failed"],
    );
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(
        text(&r.stdout).contains("1 of 2 runs selected"),
        "{}",
        text(&r.stdout)
    );
    assert_eq!(
        results(out.path()),
        [("beta".into(), "host".into(), "PASS".into())]
    );
}

#[test]
fn a_second_run_into_the_same_out_is_refused() {
    let dir = cases();
    let out = tempfile::tempdir().unwrap();
    let held = ot_hil_lab::lock::LockDir::new(out.path().to_path_buf())
        .try_lock("ot-hil-run", "ot-hil run")
        .unwrap()
        .unwrap();
    let r = run(dir.path(), out.path(), &["--board-command", &fake_cli()]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    let stderr = text(&r.stderr);
    assert!(
        stderr.contains("another ot-hil run is writing to")
            && stderr.contains(&format!("pid={}", std::process::id()))
            && stderr.contains("give this one its own --out"),
        "{stderr}"
    );
    assert!(!out.path().join("results.json").exists());
    drop(held);
}

#[test]
fn boards_with_nothing_attached_says_so() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("sys/bus/usb/devices")).unwrap();
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    let probes = root.path().join("probes.txt");
    std::fs::write(&probes, "No debug probes were found.\n").unwrap();
    let r = ot_hil(&[
        "boards",
        "--sysfs-root",
        root.path().to_str().unwrap(),
        "--probe-list",
        probes.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(
        text(&r.stdout).contains("no boards attached"),
        "{}",
        text(&r.stdout)
    );
}

#[test]
fn check_rejects_unrepresentable_durations_and_unreadable_includes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("forever.toml"),
        "nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"state\"\ntimeout = \"18446744073709551615s\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("zero.toml"),
        "nodes = [\"a\"]\n[[steps]]\ninclude = \"/dev/zero\"\n",
    )
    .unwrap();
    let vd = variants_dir();
    let started = Instant::now();
    let r = ot_hil(&[
        "check",
        dir.path().to_str().unwrap(),
        "--variants-dir",
        vd.to_str().unwrap(),
    ]);
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = text(&r.stderr);
    assert_eq!(r.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("forever.toml:5:11: duration \"18446744073709551615s\" is longer than the maximum of 1day"),
        "{stderr}"
    );
    assert!(
        stderr.contains("zero.toml:3:11: cannot include: /dev/zero: is a character device"),
        "{stderr}"
    );
}

#[test]
fn a_run_moves_the_previous_runs_output_to_prev_and_refuses_a_folder_it_did_not_write() {
    let dir = cases();
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("out");
    let cli = fake_cli();
    let r = run(dir.path(), &out, &["--board-command", &cli]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(out.join("logs/beta").is_dir());

    // The second run selects only alpha-psk: beta's folder from the first run must not stay.
    let r = run(
        dir.path(),
        &out,
        &["--board-command", &cli, "--filter", "alpha-*"],
    );
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(
        text(&r.stdout).contains("previous output moved to"),
        "{}",
        text(&r.stdout)
    );
    assert!(!out.join("logs/beta").exists(), "the old case folder left");
    assert_eq!(results(&out).len(), 1);
    let prev = root.path().join("out.prev");
    assert_eq!(results(&prev).len(), 2, "the first run's results");
    assert!(prev.join("logs/beta").is_dir());

    // A folder of someone's own files is not an output folder to empty.
    let own = root.path().join("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::write(own.join("notes.txt"), "mine").unwrap();
    let r = run(dir.path(), &own, &["--board-command", &cli]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    assert!(
        text(&r.stderr).contains("has files no ot-hil run wrote"),
        "{}",
        text(&r.stderr)
    );
    assert!(own.join("notes.txt").is_file());
    assert!(!root.path().join("own.prev").exists());
}
