//! Virtual time, through the real binary: a case run on the case clock is a function of the
//! case, the variant and the seed (the same outcome, step timings and air twice, and at `-j 1`
//! as at `-j 4`), and the firmware's timers cost case-clock time, not wall time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn testcases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testcases")
}

/// Run `ot-hil run <args..> --out <out>`; the exit code (0 or 1: some cases may fail).
fn run(args: &[&str], out: &Path) -> i32 {
    let status = Command::new(EXE)
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(out)
        .arg("--color")
        .arg("never")
        .output()
        .expect("run ot-hil");
    status.status.code().expect("exit code")
}

/// What must be the same between two runs of one plan, by (case, variant): the outcome and
/// every step's record (case-clock timings included; not the wall time beside them).
fn outcomes_and_steps(out: &Path) -> BTreeMap<(String, String), (String, Value)> {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    let json: Value = serde_json::from_str(&text).expect("json");
    json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                (
                    r["case"].as_str().unwrap().to_string(),
                    r["variant"].as_str().unwrap().to_string(),
                ),
                (
                    r["outcome"].as_str().unwrap().to_string(),
                    without_wall(&r["steps"]),
                ),
            )
        })
        .collect()
}

/// Step records without their wall time (which differs from run to run), which each has.
fn without_wall(steps: &Value) -> Value {
    let mut steps = steps.clone();
    for step in steps.as_array_mut().expect("steps") {
        assert!(step["wall_us"].is_u64(), "{step}");
        step.as_object_mut().expect("a step").remove("wall_us");
    }
    steps
}

/// The packets of a classic (big-endian) pcap, their times made relative to the first packet:
/// two captures of one case run may differ only in when the capture started.
fn packets(pcap: &Path) -> Vec<(u64, Vec<u8>)> {
    let bytes = std::fs::read(pcap).expect("pcap");
    let mut rest = bytes.get(24..).expect("pcap header");
    let mut out = Vec::new();
    let mut first = None;
    while rest.len() >= 16 {
        let word = |i: usize| u32::from_be_bytes(rest[i..i + 4].try_into().unwrap());
        let t = u64::from(word(0)) * 1_000_000 + u64::from(word(4));
        let len = word(8) as usize;
        let t0 = *first.get_or_insert(t);
        out.push((t - t0, rest[16..16 + len].to_vec()));
        rest = &rest[16 + len..];
    }
    assert!(rest.is_empty(), "{}: trailing bytes", pcap.display());
    out
}

/// Every pcap under `out/logs`, by its path below `out`.
fn captures(out: &Path) -> BTreeMap<PathBuf, Vec<(u64, Vec<u8>)>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![out.join("logs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("logs").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "pcap") {
                let key = path.strip_prefix(out).unwrap().to_path_buf();
                found.insert(key, packets(&path));
            }
        }
    }
    found
}

#[test]
fn a_lossy_jittery_case_run_twice_with_one_seed_gives_the_same_results_timings_and_air() {
    let case = testcases().join("coaps-report-x509.toml");
    let args = [
        case.to_str().unwrap(),
        "--variant",
        "ncs-v2.2.0-workaround",
        "--air-loss",
        "0.2",
        "--air-jitter",
        "50ms",
        "--air-seed",
        "3",
    ];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&args, a.path());
    run(&args, b.path());
    let (ra, rb) = (outcomes_and_steps(a.path()), outcomes_and_steps(b.path()));
    assert_eq!(ra.len(), 1);
    assert_eq!(
        ra, rb,
        "results.json differ (outcome or virtual step timings)"
    );
    let (ca, cb) = (captures(a.path()), captures(b.path()));
    assert!(
        ca.values().any(|p| p.len() > 20),
        "the case's sniffer captured its air: {:?}",
        ca.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>()
    );
    assert_eq!(ca, cb, "the captures differ");
    // Another seed loses other frames: the air is not the same (the seed matters).
    let c = tempfile::tempdir().unwrap();
    let mut other = args;
    other[8] = "4";
    run(&other, c.path());
    assert_ne!(captures(c.path()), ca, "seed 4 gave seed 3's air");
}

#[test]
fn the_suite_at_one_job_and_at_four_gives_the_same_results_timings_and_air() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let suite = testcases();
    run(&[suite.to_str().unwrap(), "-j", "1"], a.path());
    run(&[suite.to_str().unwrap(), "-j", "4"], b.path());
    let (ra, rb) = (outcomes_and_steps(a.path()), outcomes_and_steps(b.path()));
    assert!(ra.len() >= 40, "{} runs", ra.len());
    for (key, value) in &ra {
        assert_eq!(
            Some(value),
            rb.get(key),
            "{key:?} differs between -j 1 and -j 4"
        );
    }
    assert_eq!(captures(a.path()), captures(b.path()));
}

/// The case clock instant of the first console line matching `pred` in a board log
/// (`[wall] [case v] text`).
fn case_time_of(log: &Path, pred: impl Fn(&str) -> bool) -> Option<f64> {
    std::fs::read_to_string(log).ok()?.lines().find_map(|line| {
        let (_, rest) = line.split_once("] [case ")?;
        let (v, text) = rest.split_once("] ")?;
        pred(text).then(|| v.trim().parse().ok()).flatten()
    })
}

#[test]
fn a_dtls_retransmission_costs_case_clock_time_not_wall_time() {
    // The shipped seed loses the server's first answer: the client's DTLS timer (8 s) brings
    // the handshake through.
    let case = testcases().join("faults-dtls-retransmission.toml");
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let code = run(
        &[case.to_str().unwrap(), "--variant", "ncs-v2.2.0-psk"],
        out.path(),
    );
    let wall = started.elapsed();
    assert_eq!(code, 0);
    let log = out
        .path()
        .join("logs/faults-dtls-retransmission/ncs-v2.2.0-psk/client.log");
    let sent = case_time_of(&log, |t| t.starts_with(">>> ot coaps connect")).expect("connect");
    let connected = case_time_of(&log, |t| t == "coaps connected").expect("connected");
    // In µs: the log prints 6 decimals, and 8.2 - 0.2 is not 8.0 in floating point.
    let handshake = ((connected * 1e6).round() - (sent * 1e6).round()) / 1e6;
    assert!(
        (8.0..9.0).contains(&handshake),
        "one DTLS retransmission: {handshake} s of case clock"
    );
    assert!(
        wall < Duration::from_secs(8),
        "the 8 s timer took {wall:?} of wall time"
    );
}

#[test]
fn the_real_clock_is_still_there() {
    let case = testcases().join("thread-network-formation.toml");
    let out = tempfile::tempdir().unwrap();
    let code = run(
        &[
            case.to_str().unwrap(),
            "--variant",
            "ncs-v2.2.0",
            "--clock",
            "real",
        ],
        out.path(),
    );
    assert_eq!(code, 0);
    let log = out
        .path()
        .join("logs/thread-network-formation/ncs-v2.2.0/client.log");
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("ping"), "{text}");
    assert!(!text.contains("[case "), "no case clock on --clock real");
}

#[test]
fn kept_boards_run_on_the_host_clock() {
    let case = testcases().join("thread-network-formation.toml");
    let out = tempfile::tempdir().unwrap();
    // Asked for both: refused before anything runs.
    let refused = std::process::Command::new(EXE)
        .args(["run", case.to_str().unwrap(), "--variant", "ncs-v2.2.0"])
        .args(["--keep-boards-on-failure", "--clock", "virtual", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("runs on --clock real"), "{err}");
    // Implied: a passing case on the host clock (nothing kept, the run ends).
    let code = run(
        &[
            case.to_str().unwrap(),
            "--variant",
            "ncs-v2.2.0",
            "--keep-boards-on-failure",
        ],
        out.path(),
    );
    assert_eq!(code, 0);
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(
        results["results"][0]["facts"]["clock"], "host",
        "{results:#}"
    );
}
