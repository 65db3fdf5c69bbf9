//! Runner benchmark (`cargo bench -p ot-hil --bench runner`), on virtual boards:
//! (a) wall time of the shipped formation + plain CoAP cases;
//! (b) command round trip to `Done` on one board (median, p99) and the harness's own share of it,
//!     next to pexpect driving the same board through the same PTY (with its default
//!     `delaybeforesend` and without);
//! (c) 4 cases on 4 disjoint pairs of boards at once versus one case alone.
//! Figures are printed; nothing is asserted (machines differ). Cases run on the host's clock
//! (`--clock real`): these figures are of the harness driving boards in real time, as on real
//! DKs; `benches/virtual_time.rs` and `benches/scale.rs` measure the case clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ot_hil::boards::VirtualBoards;
use ot_hil::case::{Action, Case, LoadOptions, Location, ResultExpectation, Step, Template};
use ot_hil::console::{Console, ConsoleConfig};
use ot_hil::events::{CaseResult, Outcome};
use ot_hil::exec::Executor;
use ot_hil::runner::{self, RunConfig};
use ot_hil::variants::{Variant, load_variants};
use ot_hil::virtual_lab::VirtualDk;
use ot_hil_lab::flash::Flasher;

mod support;
use ot_hil::resilience::RunOptions;
use ot_hil::step_clock::ClockMode;
use support::{repo, run_collect_with, vdk};

const ROUND_TRIPS: usize = 2000;
const PEXPECT_DELAYED: usize = 40;
const REPEATS: usize = 5;

/// Run `cases` on `variant` with `jobs` at once; returns wall time and results.
fn run_cases(
    rt: &tokio::runtime::Runtime,
    cases: Vec<Case>,
    variant: &Variant,
    jobs: usize,
) -> (Duration, Vec<CaseResult>) {
    let out = tempfile::tempdir().expect("tempdir");
    let variants = vec![variant.clone()];
    let plan = runner::plan(&cases, &variants, None, None);
    let config = RunConfig {
        cases,
        variants,
        boards: std::sync::Arc::new(VirtualBoards { vdk: vdk() }),
        out_dir: out.path().to_path_buf(),
        jobs,
        ready_timeout: Duration::from_secs(10),
    };
    let options = RunOptions {
        clock: ClockMode::Real,
        ..RunOptions::default()
    };
    run_collect_with(rt, config, options, plan)
}

fn all_pass(results: &[CaseResult]) -> String {
    let bad: Vec<String> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .map(|r| format!("{} {}", r.case, r.outcome.label()))
        .collect();
    if bad.is_empty() {
        "all PASS".into()
    } else {
        format!("NOT ALL PASS: {}", bad.join(", "))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let variants = load_variants(&repo().join("firmware/variants")).expect("variants");
    let variant = variants
        .iter()
        .find(|v| v.name == "ncs-v2.2.0")
        .expect("ncs-v2.2.0 variant")
        .clone();
    let options = LoadOptions::default();
    let formation = Case::load(
        &repo().join("testcases/thread-network-formation.toml"),
        &options,
    )
    .expect("formation case");
    let coap = Case::load(
        &repo().join("testcases/coap-plain-get-put-post.toml"),
        &options,
    )
    .expect("coap case");

    println!(
        "ot-hil runner benchmark (virtual boards, variant {})",
        variant.name
    );

    // (a) the shipped cases, one after the other.
    let (wall, results) = run_cases(&rt, vec![formation.clone(), coap.clone()], &variant, 1);
    println!(
        "\n(a) formation + plain CoAP, sequential: {:.3} s wall ({})",
        wall.as_secs_f64(),
        all_pass(&results)
    );
    for r in &results {
        println!("    {:28} {:.3} s", r.case, r.duration.as_secs_f64());
    }

    // (b) round trip of one command on one board.
    let (harness, link, board, air) = rt.block_on(harness_round_trips(&variant));
    let (med, p99) = stats(harness.total.clone());
    let (wmed, wp99) = stats(harness.to_written.clone());
    let (amed, ap99) = stats(harness.after_result.clone());
    println!(
        "\n(b) `ot state` -> Done round trip, {} commands on one virtual DK:",
        harness.total.len()
    );
    println!("    ot-hil step:              median {med:8.1} us   p99 {p99:8.1} us");
    println!(
        "    harness share, start -> command written:   median {wmed:6.1} us   p99 {wp99:6.1} us"
    );
    println!(
        "    harness share, Done arrived -> step result: median {amed:6.1} us   p99 {ap99:6.1} us"
    );
    println!(
        "    harness share, total:                      median {:6.1} us",
        wmed + amed
    );
    // The same board, now through pexpect (the runner's console is closed, so the port is free).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pexpect_rtt.py");
    for (label, count, delay) in [
        ("pexpect, delaybeforesend off", ROUND_TRIPS, "none"),
        ("pexpect, default delaybeforesend", PEXPECT_DELAYED, "0.05"),
    ] {
        let out = Command::new("python3")
            .arg(&script)
            .arg(&link)
            .arg("ot state")
            .arg(count.to_string())
            .arg(delay)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
                println!(
                    "    {label:34} median {:8.1} us   p99 {:8.1} us   ({count} commands)",
                    v["median_us"].as_f64().unwrap_or(f64::NAN),
                    v["p99_us"].as_f64().unwrap_or(f64::NAN)
                );
            }
            Ok(o) => println!(
                "    {label}: failed: {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            Err(e) => println!("    {label}: python3 not available: {e}"),
        }
    }
    rt.block_on(board.stop());
    drop(air);

    // (c) 4 cases on 4 disjoint pairs at once versus one alone. The formation case's time is
    // quantised by its 200 ms `state` polls, so each figure is the median of several runs.
    let four: Vec<Case> = (1..=4)
        .map(|i| {
            let mut c = formation.clone();
            c.name = format!("{}-{i}", c.name);
            c
        })
        .collect();
    let (mut alone, mut together, mut verdicts) = (vec![], vec![], vec![]);
    let (mut case_alone, mut case_together) = (vec![], vec![]);
    for _ in 0..REPEATS {
        let (one, r1) = run_cases(&rt, vec![formation.clone()], &variant, 1);
        let (par, r4) = run_cases(&rt, four.clone(), &variant, 4);
        case_alone.extend(r1.iter().map(|r| r.duration.as_secs_f64()));
        case_together.extend(r4.iter().map(|r| r.duration.as_secs_f64()));
        alone.push(one.as_secs_f64());
        together.push(par.as_secs_f64());
        verdicts.push(all_pass(&r1));
        verdicts.push(all_pass(&r4));
    }
    let (one, _) = stats(alone.clone());
    let (par, _) = stats(together.clone());
    verdicts.sort();
    verdicts.dedup();
    println!(
        "\n(c) formation case alone: median {one:.3} s; 4 at once on 4 disjoint pairs: median {par:.3} s; ratio {:.2}x ({} runs each; {})",
        par / one,
        REPEATS,
        verdicts.join(", ")
    );
    println!("    wall, alone: {alone:.3?}\n    wall, 4 at once: {together:.3?}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "    mean duration of one case: alone {:.3} s, while 3 others run {:.3} s ({:.2}x)",
        mean(&case_alone),
        mean(&case_together),
        mean(&case_together) / mean(&case_alone)
    );
}

struct RoundTrips {
    total: Vec<f64>,
    to_written: Vec<f64>,
    after_result: Vec<f64>,
}

/// One virtual DK on its own air; `ot state` as a command step, many times. Returns the figures,
/// the PTY link (for pexpect), the board (still running) and its air (hub + directory).
async fn harness_round_trips(
    variant: &Variant,
) -> (
    RoundTrips,
    PathBuf,
    VirtualDk,
    (ot_hil_air::Hub, tempfile::TempDir),
) {
    let dir = tempfile::Builder::new()
        .prefix("othb")
        .tempdir_in(std::env::temp_dir())
        .expect("tempdir");
    let hub = ot_hil_air::Hub::start(dir.path()).expect("hub");
    let dk = VirtualDk::spawn(&vdk(), hub.socket_path(), dir.path(), "dut", None, None)
        .await
        .expect("vdk");
    let console = Console::open_serial(
        &dk.tty,
        115_200,
        ConsoleConfig {
            board: "dut".into(),
            shell: variant.shell.clone(),
            banner: variant.manifest.banner.clone(),
            log: None,
            clock: ot_hil::step_clock::StepClock::Real,
            tap: None,
        },
    )
    .expect("console");
    let mut probe = dk.probe();
    let image = variant.image.clone();
    tokio::task::spawn_blocking(move || probe.flash(&image))
        .await
        .expect("join")
        .expect("flash");
    runner::board_ready(&console, 0, Duration::from_secs(10))
        .await
        .expect("ready");
    let console = Arc::new(console);
    let mut exec = Executor::new(BTreeMap::from([("dut".to_string(), console.clone())]));
    let step = Step {
        id: None,
        location: Location {
            file: "bench".into(),
            line: 1,
            column: 1,
            included_from: None,
        },
        node: "dut".into(),
        action: Action::Command {
            command: Template::parse("state").expect("template"),
            result: ResultExpectation::Done,
            output: vec![],
            timeout: Duration::from_secs(5),
        },
        absent: vec![],
        captures: vec![],
    };
    let mut rt = RoundTrips {
        total: vec![],
        to_written: vec![],
        after_result: vec![],
    };
    for i in 0..ROUND_TRIPS + 100 {
        let t = exec.run_step(0, &step).await.expect("state step");
        if i < 100 {
            continue; // warm-up
        }
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        rt.total.push(us(t.finished - t.started));
        if let Some(w) = t.written {
            rt.to_written.push(us(w - t.started));
        }
        if let Some(r) = t.result_line {
            rt.after_result.push(us(t.finished - r));
        }
    }
    drop(exec);
    if let Ok(c) = Arc::try_unwrap(console) {
        c.close().await;
    }
    let link = dk.tty.clone();
    (rt, link, dk, (hub, dir))
}
