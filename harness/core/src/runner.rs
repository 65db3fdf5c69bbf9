//! The runner: plans case × variant runs, gives each its boards, drives the steps, classifies the
//! result and emits [`RunEvent`]s to the reporters.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ot_hil_lab::partition::Partition;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::boards::{Acquired, AcquiredBoard, CaseBoards, CaseRun, ConsolePort, NotReady, infra};
pub use crate::boards::{BoardSource, DEFAULT_READY_TIMEOUT, TAIL_LINES, board_ready};
use crate::case::{Case, VariantExpectation};
use crate::console::{Console, ConsoleConfig};
use crate::events::{CaseResult, Outcome, Reporter, RunEvent, StepRecord, Summary};
use crate::exec::{Executor, Failure, InfraFailure, StepError};
use crate::variants::Variant;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to create the run directory: {0}")]
    RunDir(#[source] std::io::Error),
}

pub struct RunConfig {
    pub cases: Vec<Case>,
    pub variants: Vec<Variant>,
    /// Where the boards come from.
    pub boards: Arc<dyn BoardSource>,
    /// Reports and logs go here (`logs/<case>/<variant>/<node>.log`).
    pub out_dir: PathBuf,
    pub jobs: usize,
    pub ready_timeout: Duration,
}

/// One planned run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub case: usize,
    pub variant: usize,
}

/// Every case × variant whose `case@variant` contains `filter`; with a partition, only the cases
/// of that slice (by case name, so all variants of a case run on the same host).
pub fn plan(
    cases: &[Case],
    variants: &[Variant],
    filter: Option<&str>,
    partition: Option<Partition>,
) -> Vec<Planned> {
    let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    let selected: Option<Vec<&str>> =
        partition.map(|part| ot_hil_lab::partition::select(&names, part));
    let mut out = Vec::new();
    for (ci, c) in cases.iter().enumerate() {
        if selected
            .as_ref()
            .is_some_and(|s| !s.contains(&c.name.as_str()))
        {
            continue;
        }
        for (vi, v) in variants.iter().enumerate() {
            let id = format!("{}@{}", c.name, v.name);
            if filter.is_none_or(|f| id.contains(f)) {
                out.push(Planned {
                    case: ci,
                    variant: vi,
                });
            }
        }
    }
    out
}

struct RunShared {
    config: RunConfig,
    options: crate::resilience::RunOptions,
    run_dir: tempfile::TempDir,
}

enum Msg {
    Started(usize),
    Finished(usize, Box<CaseResult>),
}

/// Run `plan`; `interrupt` resolves on Ctrl-C. Reporters always see `RunFinished`.
pub async fn run(
    config: RunConfig,
    plan: Vec<Planned>,
    reporters: &mut [Box<dyn Reporter>],
    interrupt: impl Future<Output = ()>,
) -> Result<Summary, RunError> {
    let options = crate::resilience::RunOptions::default();
    run_with_options(config, options, plan, reporters, interrupt).await
}

/// [`run`] with retries, re-runs, quarantine and air faults as `options` say.
pub async fn run_with_options(
    config: RunConfig,
    options: crate::resilience::RunOptions,
    plan: Vec<Planned>,
    reporters: &mut [Box<dyn Reporter>],
    interrupt: impl Future<Output = ()>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    // Short path: socket paths must fit in 108 bytes.
    let run_dir = tempfile::Builder::new()
        .prefix("oth")
        .tempdir_in(std::env::temp_dir())
        .map_err(RunError::RunDir)?;
    let jobs = config.jobs.max(1);
    let emit = |reporters: &mut [Box<dyn Reporter>], e: &RunEvent| {
        for r in reporters.iter_mut() {
            if let Err(err) = r.on_event(e) {
                tracing::warn!("reporter failed: {err}");
            }
        }
    };
    emit(
        reporters,
        &RunEvent::RunStarted {
            cases: config.cases.len(),
            variants: config.variants.iter().map(|v| v.name.clone()).collect(),
            planned: plan.len(),
            jobs,
        },
    );
    let shared = Arc::new(RunShared {
        config,
        options,
        run_dir,
    });
    let semaphore = Arc::new(Semaphore::new(jobs));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    // Runs take their job slots in plan order: each waits until the run before it holds a slot
    // (the tasks themselves may be polled in any order). A predecessor that went away (aborted)
    // drops its sender, which also lets the next one go.
    let mut turn: Option<oneshot::Receiver<()>> = None;
    for (seq, p) in plan.iter().copied().enumerate() {
        let shared = shared.clone();
        let semaphore = semaphore.clone();
        let tx = tx.clone();
        let my_turn = turn.take();
        let (next_turn, next_turn_rx) = oneshot::channel();
        turn = Some(next_turn_rx);
        tasks.spawn(async move {
            if let Some(my_turn) = my_turn {
                let _ = my_turn.await;
            }
            let Ok(_permit) = semaphore.acquire_owned().await else {
                return;
            };
            let _ = next_turn.send(());
            let _ = tx.send(Msg::Started(seq));
            let result = crate::resilience::run_attempts(&shared.options, |attempt| {
                run_one(&shared, p, seq, attempt)
            })
            .await;
            let _ = tx.send(Msg::Finished(seq, Box::new(result)));
        });
    }
    drop(tx);

    let mut summary = Summary::default();
    let mut state = vec![0u8; plan.len()]; // 0 planned, 1 started, 2 finished
    tokio::pin!(interrupt);
    let mut interrupted = false;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Started(seq)) => {
                    if let (Some(s), Some(p)) = (state.get_mut(seq), plan.get(seq)) {
                        *s = 1;
                        let (case, variant) = names(&shared.config, *p);
                        emit(reporters, &RunEvent::CaseStarted { case, variant });
                    }
                }
                Some(Msg::Finished(seq, result)) => {
                    if let Some(s) = state.get_mut(seq) { *s = 2; }
                    *summary.counts.entry(result.outcome).or_default() += 1;
                    summary.note(&result);
                    emit(reporters, &RunEvent::CaseFinished(result));
                }
                None => break,
            },
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                emit(reporters, &RunEvent::Interrupted);
                tasks.abort_all();
                // Aborted tasks drop their boards (virtual DKs and processes are killed on drop).
                while tasks.join_next().await.is_some() {}
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Finished(seq, result) = msg {
                        if let Some(s) = state.get_mut(seq) { *s = 2; }
                        *summary.counts.entry(result.outcome).or_default() += 1;
                        summary.note(&result);
                        emit(reporters, &RunEvent::CaseFinished(result));
                    }
                }
                for (seq, s) in state.iter().enumerate() {
                    let Some(p) = plan.get(seq) else { continue };
                    let (outcome, reason) = match s {
                        0 => (Outcome::Skip, "run interrupted before this case started"),
                        1 => (Outcome::Error, "run interrupted while this case was running"),
                        _ => continue,
                    };
                    let (case, variant) = names(&shared.config, *p);
                    let path = shared.config.cases.get(p.case).map(|c| c.path.clone()).unwrap_or_default();
                    let result = CaseResult {
                        reason: Some(reason.into()),
                        ..CaseResult::new(case, variant, path, outcome)
                    };
                    *summary.counts.entry(outcome).or_default() += 1;
                    emit(reporters, &RunEvent::CaseFinished(Box::new(result)));
                }
                break;
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    summary.duration = started.elapsed();
    summary.interrupted = interrupted;
    emit(reporters, &RunEvent::RunFinished(summary.clone()));
    Ok(summary)
}

fn names(config: &RunConfig, p: Planned) -> (String, String) {
    (
        config
            .cases
            .get(p.case)
            .map(|c| c.name.clone())
            .unwrap_or_default(),
        config
            .variants
            .get(p.variant)
            .map(|v| v.name.clone())
            .unwrap_or_default(),
    )
}

/// How a case run ended before expectations are applied.
enum RawOutcome {
    Passed,
    Failed(Box<Failure>),
    Infra(InfraFailure),
}

async fn run_one(shared: &RunShared, p: Planned, seq: usize, attempt: u32) -> CaseResult {
    let config = &shared.config;
    let (Some(case), Some(variant)) = (config.cases.get(p.case), config.variants.get(p.variant))
    else {
        let (case, variant) = names(config, p);
        return CaseResult {
            reason: Some(format!("planned run {p:?} is outside the configuration")),
            ..CaseResult::new(case, variant, PathBuf::new(), Outcome::Error)
        };
    };
    let started = Instant::now();
    let mut result = CaseResult::new(
        case.name.clone(),
        variant.name.clone(),
        case.path.clone(),
        Outcome::Pass,
    );
    if let Some(VariantExpectation::Skip { reason }) = case.expectation(&variant.name) {
        result.outcome = Outcome::Skip;
        result.reason = Some(reason.clone());
        return result;
    }
    let mut log_dir = config
        .out_dir
        .join("logs")
        .join(&case.name)
        .join(&variant.name);
    if attempt > 1 {
        log_dir = log_dir.join(format!("attempt-{attempt}"));
    }
    let run = CaseRun {
        case,
        variant,
        seq,
        attempt,
        log_dir: &log_dir,
        run_dir: shared.run_dir.path(),
        options: &shared.options,
        ready_timeout: config.ready_timeout,
    };
    let Acquired {
        boards: acquired,
        mut held,
    } = match config.boards.acquire(run).await {
        Ok(a) => a,
        Err(i) => {
            classify(case, variant, RawOutcome::Infra(i), &mut result);
            result.duration = started.elapsed();
            return result;
        }
    };
    let mut consoles = BTreeMap::new();
    let raw = match bring_up(run, acquired, &mut consoles, &mut result).await {
        Err(e) => e,
        Ok(()) => run_steps(run, &mut *held, &consoles, &mut result).await,
    };
    // Extended, not replaced: the air witness put its own lines there.
    result.tails.extend(
        consoles
            .iter()
            .map(|(n, c)| (n.clone(), c.shared().lock().lines.tail(TAIL_LINES))),
    );
    for (_, c) in consoles {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    held.release().await;
    classify(case, variant, raw, &mut result);
    result.duration = started.elapsed();
    result
}

/// The steps of a case on boards that are up, with the air witness around them.
async fn run_steps(
    run: CaseRun<'_>,
    held: &mut dyn CaseBoards,
    consoles: &BTreeMap<String, Arc<Console>>,
    result: &mut CaseResult,
) -> RawOutcome {
    let (case, variant) = (run.case, run.variant);
    let mut exec = Executor::new(consoles.clone());
    let mut raw = RawOutcome::Passed;
    // The air witness (sniffer, handshake snapshots), when the case declares one.
    let witness = match held.attach_air(run).await {
        Ok(w) => w,
        Err(reason) => {
            raw = RawOutcome::Infra(InfraFailure {
                board: crate::air::witness::SNIFFER_BOARD.into(),
                step: None,
                reason,
            });
            None
        }
    };
    let steps = if matches!(raw, RawOutcome::Passed) {
        case.steps.as_slice()
    } else {
        &[]
    };
    for (i, step) in steps.iter().enumerate() {
        if let Err(e) = held.before_step(run, i, consoles).await {
            raw = RawOutcome::Infra(e);
            break;
        }
        match exec.run_step(i, step).await {
            Ok(t) => result.steps.push(StepRecord {
                index: i,
                node: step.node.clone(),
                step: step.summary(),
                duration_us: micros(t.finished.saturating_duration_since(t.started)),
                to_written_us: t
                    .written
                    .map(|w| micros(w.saturating_duration_since(t.started))),
                after_result_us: t
                    .result_line
                    .map(|r| micros(t.finished.saturating_duration_since(r))),
            }),
            Err(StepError::Failed(f)) => {
                raw = RawOutcome::Failed(f);
                break;
            }
            Err(StepError::Infra(i)) => {
                raw = RawOutcome::Infra(i);
                break;
            }
        }
    }
    if let Some(w) = witness {
        let controls = held.transcript_controls();
        let failed = w
            .finish(
                case,
                &variant.name,
                matches!(raw, RawOutcome::Failed(_)),
                &controls,
                &mut result.tails,
                &mut result.logs,
            )
            .await;
        // A snapshot failure outranks a failed step: an expected failure (xfail) whose
        // handshake changed is not the expected failure any more, and the transcript
        // diff says why a case went red.
        match (raw, failed) {
            (RawOutcome::Failed(step), Some(mut f)) => {
                f.got.push(format!(
                    "the case also failed at {} ({}): expected {}",
                    step.step, step.location, step.expected
                ));
                raw = RawOutcome::Failed(Box::new(f));
            }
            (RawOutcome::Passed, Some(f)) => raw = RawOutcome::Failed(Box::new(f)),
            (r, _) => raw = r,
        }
    }
    raw
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Open every acquired board's console before its reset (so the boot banner lands in the
/// case's log), flash the boards that need it, and wait for every prompt.
async fn bring_up(
    run: CaseRun<'_>,
    acquired: Vec<AcquiredBoard>,
    consoles: &mut BTreeMap<String, Arc<Console>>,
    result: &mut CaseResult,
) -> Result<(), RawOutcome> {
    let mut flashes = Vec::new();
    for board in acquired {
        let log = run.log_dir.join(format!("{}.log", board.node));
        let config = ConsoleConfig {
            board: board.node.clone(),
            shell: board.shell,
            banner: board.banner,
            log: Some(log.clone()),
        };
        let console = match &board.port {
            ConsolePort::Serial { path, baud } => Console::open_serial(path, *baud, config),
            ConsolePort::Process { program, args } => Console::spawn_process(program, args, config),
        }
        .map_err(|e| RawOutcome::Infra(infra(&board.node, e.to_string())))?;
        if let Some(note) = &board.note {
            console.note(note);
        }
        result.logs.insert(board.node.clone(), log);
        let console = Arc::new(console);
        consoles.insert(board.node.clone(), console.clone());
        // A flashed board's prompt counts after the flash; a board that boots by itself (a
        // process: starting it was the reset) may have shown its prompt already.
        let before = match board.flash {
            Some(_) => console.shared().lock().prompts,
            None => 0,
        };
        let flash = board.flash.map(|(mut flasher, image)| {
            console.note(&format!("flash {} ({})", image.variant, image.sha256));
            tokio::task::spawn_blocking(move || flasher.flash(&image))
        });
        flashes.push((board.node, console, before, flash));
    }
    for (node, console, before, flash) in flashes {
        if let Some(handle) = flash {
            let outcome = handle
                .await
                .map_err(|e| RawOutcome::Infra(infra(&node, format!("flash task failed: {e}"))))?
                .map_err(|e| RawOutcome::Infra(infra(&node, e.to_string())))?;
            console.note(&format!("{outcome:?}"));
        }
        crate::boards::wait_ready(&console, before, run.ready_timeout)
            .await
            .map_err(|e| match e {
                NotReady::Infra(i) => RawOutcome::Infra(i),
                NotReady::Crashed(f) => RawOutcome::Failed(f),
            })?;
    }
    for c in consoles.values() {
        c.arm_crash_detection(true);
    }
    Ok(())
}

/// Apply the variant's expectation to what happened.
fn classify(case: &Case, variant: &Variant, raw: RawOutcome, result: &mut CaseResult) {
    let expectation = case.expectation(&variant.name);
    match (raw, expectation) {
        (RawOutcome::Infra(i), _) => {
            result.outcome = Outcome::Error;
            result.reason = Some(format!("board {}: {}", i.board, i.reason));
            result.infra = Some(i);
        }
        (RawOutcome::Passed, Some(VariantExpectation::Xfail { reason, .. })) => {
            result.outcome = Outcome::Xpass;
            result.reason = Some(format!("expected to fail on {}: {reason}", variant.name));
        }
        (RawOutcome::Passed, _) => result.outcome = Outcome::Pass,
        (RawOutcome::Failed(f), Some(VariantExpectation::Xfail { reason, symptom })) => {
            match symptom {
                None => {
                    result.outcome = Outcome::Xfail;
                    result.reason = Some(reason.clone());
                }
                Some(s) => {
                    let at_step = f.step_index == Some(s.step_index);
                    let seen = s
                        .line
                        .resolve(|_| None)
                        .is_ok_and(|re| f.window.iter().any(|l| re.is_match(l)));
                    if at_step && seen {
                        result.outcome = Outcome::Xfail;
                        result.reason = Some(reason.clone());
                    } else {
                        result.outcome = Outcome::Fail;
                        result.reason = Some(format!(
                            "expected to fail at step `{}` with a line matching /{}/ ({reason}), but it failed {}",
                            s.step_id,
                            s.line,
                            if at_step {
                                "there without that line".to_string()
                            } else {
                                format!("elsewhere: {}", f.location)
                            }
                        ));
                    }
                }
            }
            result.failure = Some(*f);
        }
        (RawOutcome::Failed(f), _) => {
            result.outcome = Outcome::Fail;
            result.failure = Some(*f);
        }
    }
}
