//! Scale benchmark (`cargo bench -p ot-hil --bench scale`): 16 two-board cases at once on 32
//! virtual DKs, against the same case alone, on both clocks:
//! - host clock (`--clock real`): a case mostly waits for the firmware's timers, so 16 at once
//!   should take each case about as long as alone (worst case / solo, limit 1.3);
//! - case clock (the default): a case is pure work (no timer is waited for), so 16 at once share
//!   the CPUs: the figure is the wall of all 16 against 16 solo runs one after another (below 1
//!   means running them at once is faster), with worst case / solo printed too.
//!
//! Each measurement runs in a fresh process (this binary re-run with `OT_HIL_SCALE_RUN=<jobs>`),
//! so the VmHWM it reports is the harness's own peak memory for that run (the virtual DKs are
//! separate processes and are reported apart, as the sum of their VmHWM sampled before they
//! exit). Prints, per round: solo case time (median of the solo runs), every case's time at
//! 16 at once, the worst ratio to solo, whether every expectation was met, the runner's VmHWM.
//! `OT_HIL_SCALE_ROUNDS` (default 3) rounds; the summary is the median over rounds.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ot_hil::boards::VirtualBoards;
use ot_hil::case::{Case, LoadOptions};
use ot_hil::events::Outcome;
use ot_hil::runner::{self, RunConfig};
use ot_hil::variants::load_variants;

mod support;
use ot_hil::resilience::RunOptions;
use ot_hil::step_clock::ClockMode;
use support::{repo, run_collect_with, vdk};

const CASE: &str = "testcases/thread-network-formation.toml";
const VARIANT: &str = "ncs-v2.2.0";
const AT_ONCE: usize = 16;
const SOLO_RUNS: usize = 3;

/// `VmHWM` of a process in kB.
fn vm_hwm_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The parent pid of `pid` (field 4 of its stat, after the parenthesised command).
fn parent_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(") ").map(|(_, rest)| rest)?;
    after.split_whitespace().nth(1).map(str::to_string)
}

/// Pids of this process's virtual DKs: the children of its `vdk-server` (or its own children,
/// for boards executed directly), `vdk` on their command line. One read of each process's
/// stat per call, and of the command line of those below this process only.
fn vdk_children() -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let parents: Vec<(String, String)> = dir
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()))
        .filter_map(|pid| parent_of(&pid).map(|parent| (pid, parent)))
        .collect();
    let children: Vec<&str> = parents
        .iter()
        .filter(|(_, parent)| *parent == me)
        .map(|(pid, _)| pid.as_str())
        .collect();
    parents
        .iter()
        .filter(|(_, parent)| *parent == me || children.contains(&parent.as_str()))
        .filter(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|a| a == b"vdk")
        })
        .map(|(pid, _)| pid.clone())
        .collect()
}

/// One run of `jobs` copies of the case at once on `clock`, in this process. Prints one JSON
/// line.
fn child_run(jobs: usize, clock: ClockMode) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let variants = load_variants(&repo().join("firmware/variants")).expect("variants");
    let variant = variants
        .iter()
        .find(|v| v.name == VARIANT)
        .expect("variant")
        .clone();
    let case = Case::load(&repo().join(CASE), &LoadOptions::default()).expect("case");
    let cases: Vec<Case> = (1..=jobs)
        .map(|i| {
            let mut c = case.clone();
            c.name = format!("{}-{i}", c.name);
            c
        })
        .collect();
    let out = tempfile::tempdir().expect("tempdir");
    let variants = vec![variant];
    let plan = runner::plan(&cases, &variants, None, None);
    let config = RunConfig {
        cases,
        variants,
        boards: std::sync::Arc::new(VirtualBoards { vdk: vdk() }),
        out_dir: out.path().to_path_buf(),
        jobs,
        ready_timeout: Duration::from_secs(30),
    };
    // Sample the boards' peak memory while they run (they exit with their case, after about
    // 0.1 s on the case clock: sample often enough to see every one).
    let vdk_peak = Arc::new(Mutex::new(std::collections::BTreeMap::<String, u64>::new()));
    let sampler = {
        let vdk_peak = vdk_peak.clone();
        rt.spawn(async move {
            loop {
                for pid in vdk_children() {
                    if let Some(kb) = vm_hwm_kb(&pid) {
                        let mut m = vdk_peak.lock().unwrap_or_else(|e| e.into_inner());
                        let e = m.entry(pid).or_default();
                        *e = (*e).max(kb);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let options = RunOptions {
        clock,
        ..RunOptions::default()
    };
    let (wall, results) = run_collect_with(&rt, config, options, plan);
    sampler.abort();
    let durations: Vec<f64> = results.iter().map(|r| r.duration.as_secs_f64()).collect();
    let not_met: Vec<String> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .map(|r| format!("{} {}", r.case, r.outcome.label()))
        .collect();
    let boards = vdk_peak.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let line = serde_json::json!({
        "jobs": jobs,
        "wall_s": wall.as_secs_f64(),
        "durations_s": durations,
        "not_met": not_met,
        "runner_vm_hwm_kb": vm_hwm_kb("self"),
        "boards_seen": boards.len(),
        "boards_vm_hwm_kb_sum": boards.values().sum::<u64>(),
        "boards_vm_hwm_kb_max": boards.values().max().copied().unwrap_or(0),
    });
    println!("{line}");
}

fn measure(jobs: usize, clock: &str) -> serde_json::Value {
    let me = std::env::current_exe().expect("own path");
    let out = Command::new(me)
        .env("OT_HIL_SCALE_RUN", jobs.to_string())
        .env("OT_HIL_SCALE_CLOCK", clock)
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    if !out.status.success() || v.get("jobs").is_none() {
        eprintln!(
            "measurement with {jobs} jobs failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn floats(v: &serde_json::Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default()
}

fn main() {
    if let Ok(jobs) = std::env::var("OT_HIL_SCALE_RUN") {
        let clock = match std::env::var("OT_HIL_SCALE_CLOCK").as_deref() {
            Ok("real") => ClockMode::Real,
            _ => ClockMode::Virtual,
        };
        child_run(jobs.parse().unwrap_or(1), clock);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing: run either way.
    let rounds: usize = std::env::var("OT_HIL_SCALE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for clock in ["real", "virtual"] {
        scale_on(clock, rounds);
    }
}

/// The rounds on one clock, and their medians.
fn scale_on(clock: &str, rounds: usize) {
    println!(
        "scale on the {} clock: {AT_ONCE} x {CASE} ({} boards) at once vs alone, variant {VARIANT}, {rounds} rounds",
        if clock == "real" { "host" } else { "case" },
        AT_ONCE * 2
    );
    let mut worst_ratios = Vec::new();
    let mut batch_ratios = Vec::new();
    let mut walls = Vec::new();
    let mut solos = Vec::new();
    let mut runner_kb = Vec::new();
    let mut boards_kb = Vec::new();
    let mut all_met = true;
    for round in 1..=rounds {
        let solo_runs: Vec<serde_json::Value> = (0..SOLO_RUNS).map(|_| measure(1, clock)).collect();
        let solo = median(
            solo_runs
                .iter()
                .flat_map(|m| floats(m, "durations_s"))
                .collect(),
        );
        let solo_wall = median(
            solo_runs
                .iter()
                .filter_map(|m| m["wall_s"].as_f64())
                .collect(),
        );
        let many = measure(AT_ONCE, clock);
        let durations = floats(&many, "durations_s");
        let worst = durations.iter().copied().fold(0.0, f64::max);
        let ratio = worst / solo;
        let wall = many["wall_s"].as_f64().unwrap_or(f64::NAN);
        let batch = wall / (solo_wall * AT_ONCE as f64);
        let met =
            many["not_met"].as_array().is_some_and(|a| a.is_empty()) && durations.len() == AT_ONCE;
        all_met &= met;
        println!(
            "round {round}: solo {solo:.3} s (median of {SOLO_RUNS}, wall {solo_wall:.3} s); {AT_ONCE} at once: wall {wall:.3} s, case times {:.3}..{:.3} s, worst/solo {ratio:.2}, wall / {AT_ONCE} solo walls {batch:.2}; {}; runner VmHWM {} kB; boards seen {} (VmHWM sum {} kB, max {} kB)",
            durations.iter().copied().fold(f64::INFINITY, f64::min),
            worst,
            if met {
                "every expectation met".to_string()
            } else {
                format!("NOT MET: {}", many["not_met"])
            },
            many["runner_vm_hwm_kb"],
            many["boards_seen"],
            many["boards_vm_hwm_kb_sum"],
            many["boards_vm_hwm_kb_max"],
        );
        worst_ratios.push(ratio);
        batch_ratios.push(batch);
        walls.push(wall);
        solos.push(solo);
        runner_kb.push(many["runner_vm_hwm_kb"].as_f64().unwrap_or(f64::NAN));
        boards_kb.push(many["boards_vm_hwm_kb_sum"].as_f64().unwrap_or(f64::NAN));
    }
    let verdict = if clock == "real" {
        let worst = median(worst_ratios.clone());
        format!(
            "worst case / solo {worst:.2} (limit 1.3: {})",
            if worst <= 1.3 { "within" } else { "EXCEEDED" }
        )
    } else {
        format!(
            "wall of all {AT_ONCE} / {AT_ONCE} solo walls {:.2}, worst case / solo {:.2}",
            median(batch_ratios),
            median(worst_ratios)
        )
    };
    println!(
        "median over {rounds} rounds: solo {:.3} s, {AT_ONCE} at once wall {:.3} s, {verdict}, runner VmHWM {:.0} kB, boards' VmHWM sum {:.0} kB; every expectation met in every round: {all_met}",
        median(solos),
        median(walls),
        median(runner_kb),
        median(boards_kb),
    );
}
