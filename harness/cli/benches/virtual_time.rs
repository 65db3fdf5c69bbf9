//! Virtual-time benchmark (`cargo bench -p ot-hil --bench virtual_time`), through the `ot-hil`
//! binary as a user runs it:
//! 1. the whole suite (`ot-hil run testcases`, default jobs) on the case clock, `OT_HIL_VT_RUNS`
//!    times (default 3, median), and once with `--clock real`: the ratio real / virtual, both
//!    measured in this one run;
//! 2. `faults-dtls-retransmission` with air seeds 1-16: wall time of each run, and the
//!    handshake's duration on the case clock (from the client's log);
//! 3. where `firmware/openthread-sim/build.sh` has built both binaries: a two-node case on real
//!    OpenThread (`coaps-psk`: formation and a CoAPS handshake) `OT_HIL_VT_RUNS` times on the
//!    case clock, and once on the host's clock.
//!
//! Wall times are of the whole command (start-up, every case, reports).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run `ot-hil run <args..>` into a fresh folder: its wall time, the summary line, the folder.
fn timed_run(args: &[&str]) -> (Duration, String, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let output = Command::new(EXE)
        .current_dir(repo())
        .arg("run")
        .args(args)
        .arg("--out")
        .arg(out.path())
        .arg("--color")
        .arg("never")
        .output()
        .expect("run ot-hil");
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .find(|l| {
            l.contains(" in ")
                && ["PASS", "FAIL", "ERROR", "SKIP"]
                    .iter()
                    .any(|o| l.contains(&format!(" {o}")))
        })
        .unwrap_or("(no summary)")
        .to_string();
    (wall, summary, out)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The case-clock instant (s) of the first console line of `log` that `pred` accepts.
fn case_time_of(log: &Path, pred: impl Fn(&str) -> bool) -> Option<f64> {
    std::fs::read_to_string(log).ok()?.lines().find_map(|line| {
        let (_, rest) = line.split_once("] [case ")?;
        let (v, text) = rest.split_once("] ")?;
        pred(text).then(|| v.trim().parse().ok()).flatten()
    })
}

fn main() {
    let runs: usize = std::env::var("OT_HIL_VT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    println!("== the suite: `ot-hil run testcases`, default jobs");
    let mut virtual_walls = Vec::new();
    for i in 1..=runs {
        let (wall, summary, _out) = timed_run(&["testcases"]);
        println!(
            "virtual run {i}: {:.3} s wall  ({summary})",
            wall.as_secs_f64()
        );
        virtual_walls.push(wall);
    }
    let (real_wall, summary, _out) = timed_run(&["testcases", "--clock", "real"]);
    println!(
        "real run: {:.3} s wall  ({summary})",
        real_wall.as_secs_f64()
    );
    let virtual_median = median(virtual_walls.clone());
    println!(
        "suite: virtual median {:.3} s (runs: {}), real {:.3} s, real / virtual = {:.1}x",
        virtual_median.as_secs_f64(),
        virtual_walls
            .iter()
            .map(|w| format!("{:.3}", w.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        real_wall.as_secs_f64(),
        real_wall.as_secs_f64() / virtual_median.as_secs_f64()
    );

    println!("\n== faults-dtls-retransmission, --variant ncs-v2.2.0-psk, air seeds 1-16");
    let mut walls = Vec::new();
    for seed in 1..=16u32 {
        let seed_text = seed.to_string();
        let (wall, summary, out) = timed_run(&[
            "testcases/faults-dtls-retransmission.toml",
            "--variant",
            "ncs-v2.2.0-psk",
            "--air-seed",
            &seed_text,
        ]);
        let log = out
            .path()
            .join("logs/faults-dtls-retransmission/ncs-v2.2.0-psk/client.log");
        let sent = case_time_of(&log, |t| t.starts_with(">>> ot coaps connect"));
        let ended = case_time_of(&log, |t| {
            t == "coaps connected" || t == "coaps disconnected"
        });
        let handshake = match (sent, ended) {
            (Some(a), Some(b)) => format!("{:.2} s of case clock", b - a),
            _ => "no handshake end in the log".into(),
        };
        println!(
            "seed {seed:2}: {:.3} s wall, handshake {handshake}  ({summary})",
            wall.as_secs_f64()
        );
        walls.push(wall);
    }
    let worst = walls.iter().max().copied().unwrap_or_default();
    println!(
        "retransmission runs: median {:.3} s wall, worst {:.3} s",
        median(walls).as_secs_f64(),
        worst.as_secs_f64()
    );

    println!("\n== a two-node case on real OpenThread: coaps-psk --variant openthread-sim");
    let built = ["ot-cli-ftd", "ot-cli-ftd-vt"]
        .iter()
        .all(|b| repo().join("target/openthread-sim").join(b).is_file());
    if !built {
        println!("skipped: run firmware/openthread-sim/build.sh first");
        return;
    }
    let case = ["testcases/coaps-psk.toml", "--variant", "openthread-sim"];
    let mut walls = Vec::new();
    for i in 1..=runs {
        let (wall, summary, _out) = timed_run(&case);
        println!(
            "case clock run {i}: {:.3} s wall  ({summary})",
            wall.as_secs_f64()
        );
        walls.push(wall);
    }
    let mut real = case.to_vec();
    real.extend(["--clock", "real"]);
    let (real_wall, summary, _out) = timed_run(&real);
    println!(
        "host clock run: {:.3} s wall  ({summary})",
        real_wall.as_secs_f64()
    );
    let on_case_clock = median(walls);
    println!(
        "real OpenThread, two nodes: case clock median {:.3} s, host clock {:.3} s, {:.1}x",
        on_case_clock.as_secs_f64(),
        real_wall.as_secs_f64(),
        real_wall.as_secs_f64() / on_case_clock.as_secs_f64()
    );
}
