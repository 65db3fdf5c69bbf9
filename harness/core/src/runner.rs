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
use crate::console::BoardFault;
use crate::console::{Console, ConsoleConfig};
use crate::events::{
    AirCounters, BoardEvent, BoardRecord, CaseResult, Outcome, Reporter, RunEvent, StepRecord,
    Summary,
};
use crate::exec::{Executor, Failure, StepError};
use crate::infra::{InfraError, InfraFailure, SnifferProblem};
use crate::step_clock::StepClock;
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

/// Every case × variant the selection takes (all without one); with a partition, only the cases
/// of that slice (by case name, so all variants of a case run on the same host).
pub fn plan(
    cases: &[Case],
    variants: &[Variant],
    selection: Option<&crate::select::Selection>,
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
            if selection.is_none_or(|s| s.matches(&c.name, &v.name)) {
                out.push(Planned {
                    case: ci,
                    variant: vi,
                });
            }
        }
    }
    out
}

/// How many case runs at once by default: on virtual boards (`boards: None`) the number of CPUs,
/// as virtual boards mostly wait on each other's radio frames; on a hardware map with `boards`
/// case boards, as many cases of `largest_case` nodes as the map can serve at once (at least 1).
pub fn default_jobs(boards: Option<usize>, largest_case: usize) -> usize {
    match boards {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(boards) => (boards / largest_case.max(1)).max(1),
    }
}

struct RunShared {
    config: RunConfig,
    options: crate::resilience::RunOptions,
    run_dir: tempfile::TempDir,
    /// Boards of failed case runs kept up (`keep_boards_on_failure`) instead of released.
    kept: std::sync::Mutex<Vec<KeptCase>>,
}

/// The boards of one failed case run, kept up for a person to look at.
pub struct KeptCase {
    pub case: String,
    pub variant: String,
    /// What a person opens: each node's console (a PTY) and the air's socket.
    pub reach: Vec<(String, PathBuf)>,
    held: Box<dyn crate::boards::CaseBoards>,
}

/// Boards kept up after a run (`--keep-boards-on-failure`), until [`KeptBoards::release`]. They
/// live in the run's private directory, which stays until then.
#[must_use = "kept boards run until released"]
#[derive(Default)]
pub struct KeptBoards {
    pub cases: Vec<KeptCase>,
    /// Holds the run's directory (sockets, PTY links) while the boards are up.
    _run: Option<Arc<RunShared>>,
}

impl KeptBoards {
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
    }

    /// Stop the kept boards and their air, then remove the run's directory.
    pub async fn release(self) {
        for kept in self.cases {
            kept.held.release().await;
        }
    }
}

enum Msg {
    Event(Box<RunEvent>),
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
    let (summary, kept) = run_keeping(config, options, plan, reporters, interrupt).await?;
    kept.release().await;
    Ok(summary)
}

/// [`run_with_options`], handing back the boards of failed case runs when
/// `options.keep_boards_on_failure` (none after an interrupted run: its boards are stopped).
pub async fn run_keeping(
    config: RunConfig,
    options: crate::resilience::RunOptions,
    plan: Vec<Planned>,
    reporters: &mut [Box<dyn Reporter>],
    interrupt: impl Future<Output = ()>,
) -> Result<(Summary, KeptBoards), RunError> {
    let started = Instant::now();
    // Board logs count from here (the first run of the process).
    crate::run_clock::origin();
    let run_dir = crate::scratch::dir("oth").map_err(RunError::RunDir)?;
    config.boards.warm_up();
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
            run: crate::report::provenance::RunFacts {
                air_seed: options.air_seed,
                ..crate::report::provenance::RunFacts::now()
            },
        },
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let shared = Arc::new(RunShared {
        config,
        options,
        run_dir,
        kept: std::sync::Mutex::new(Vec::new()),
    });
    let semaphore = Arc::new(Semaphore::new(jobs));
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
            let case_run = {
                let (shared, events) = (shared.clone(), CaseEvents { tx: tx.clone() });
                async move {
                    crate::resilience::run_attempts(&shared.options, |attempt| {
                        run_one(&shared, &events, p, seq, attempt)
                    })
                    .await
                }
            };
            // A panic in the case's code ends its task only: the case is reported as ERROR
            // and the other cases run on.
            let result = match crate::panics::contain(case_run).await {
                Ok(result) => result,
                Err(panic) => internal_error(&shared.config, p, &panic),
            };
            let _ = tx.send(Msg::Finished(seq, Box::new(result)));
        });
    }
    drop(tx);

    let mut summary = Summary::default();
    let mut state = vec![CaseState::Planned; plan.len()];
    tokio::pin!(interrupt);
    let mut interrupted = false;
    // A case still running after each multiple of the slow timeout gets a SLOW notice, at the
    // moment it becomes due.
    let slow_timeout = shared.options.slow_timeout.filter(|t| !t.is_zero());
    loop {
        let next_slow = slow_timeout.and_then(|threshold| {
            state
                .iter()
                .filter_map(|s| match s {
                    CaseState::Started(at, notices) => Some(*at + threshold * (*notices + 1)),
                    _ => None,
                })
                .min()
        });
        tokio::select! {
            _ = tokio::time::sleep_until(next_slow.unwrap_or_else(Instant::now).into()), if next_slow.is_some() => {
                let Some(threshold) = slow_timeout else { continue };
                let now = Instant::now();
                for (seq, s) in state.iter_mut().enumerate() {
                    let (CaseState::Started(at, notices), Some(p)) = (s, plan.get(seq)) else { continue };
                    if now >= *at + threshold * (*notices + 1) {
                        *notices += 1;
                        let (case, variant) = names(&shared.config, *p);
                        let elapsed = now - *at;
                        emit(reporters, &RunEvent::CaseSlow { case, variant, elapsed });
                    }
                }
            }
            msg = rx.recv() => match msg {
                Some(Msg::Event(e)) => emit(reporters, &e),
                Some(Msg::Started(seq)) => {
                    if let (Some(s), Some(p)) = (state.get_mut(seq), plan.get(seq)) {
                        *s = CaseState::Started(Instant::now(), 0);
                        let (case, variant) = names(&shared.config, *p);
                        emit(reporters, &RunEvent::CaseStarted { case, variant });
                    }
                }
                Some(Msg::Finished(seq, result)) => {
                    if let Some(s) = state.get_mut(seq) { *s = CaseState::Finished; }
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
                    match msg {
                        Msg::Event(e) => emit(reporters, &e),
                        // Reported below as interrupted, with the time it ran.
                        Msg::Started(_) => {}
                        Msg::Finished(seq, result) => {
                            if let Some(s) = state.get_mut(seq) { *s = CaseState::Finished; }
                            *summary.counts.entry(result.outcome).or_default() += 1;
                            summary.note(&result);
                            emit(reporters, &RunEvent::CaseFinished(result));
                        }
                    }
                }
                for (seq, s) in state.iter().enumerate() {
                    let Some(p) = plan.get(seq) else { continue };
                    let result = match s {
                        CaseState::Planned => not_run(&shared.config, *p, Outcome::Skip, "run interrupted before this case started"),
                        CaseState::Started(at, _) => {
                            // It ran until now, and its boards wrote logs: both are reported.
                            let mut r = not_run(&shared.config, *p, Outcome::Error, "run interrupted while this case was running");
                            r.duration = at.elapsed();
                            r.logs = logs_written(&shared.config, *p);
                            r
                        }
                        CaseState::Finished => continue,
                    };
                    *summary.counts.entry(result.outcome).or_default() += 1;
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
    let cases = std::mem::take(&mut *shared.kept.lock().unwrap_or_else(|e| e.into_inner()));
    let mut kept = KeptBoards {
        cases,
        _run: Some(shared),
    };
    if interrupted {
        // Ctrl-C during the run means stop everything, kept boards included.
        std::mem::take(&mut kept).release().await;
    }
    Ok((summary, kept))
}

/// Where a running case sends its step and attempt events.
struct CaseEvents {
    tx: mpsc::UnboundedSender<Msg>,
}

impl CaseEvents {
    fn send(&self, event: RunEvent) {
        // The receiver goes away only when the run is over.
        let _ = self.tx.send(Msg::Event(Box::new(event)));
    }

    /// Tell what happened to board `node` of `run` now, and keep it in `result`.
    fn board(&self, run: CaseRun<'_>, result: &mut CaseResult, node: &str, event: BoardEvent) {
        let record = BoardRecord {
            node: node.to_string(),
            at: crate::run_clock::elapsed(),
            event,
        };
        result.board_events.push(record.clone());
        self.send(RunEvent::Board {
            case: run.case.name.clone(),
            variant: run.variant.name.clone(),
            attempt: run.attempt,
            record,
        });
    }
}

/// Where a planned run is, for the report of an interrupted run.
#[derive(Debug, Clone, Copy)]
enum CaseState {
    Planned,
    /// Running since, and how many SLOW notices it has had.
    Started(Instant, u32),
    Finished,
}

/// A result for a run that did not reach its own verdict.
fn not_run(config: &RunConfig, p: Planned, outcome: Outcome, reason: &str) -> CaseResult {
    let (case, variant) = names(config, p);
    let path = config
        .cases
        .get(p.case)
        .map(|c| c.path.clone())
        .unwrap_or_default();
    CaseResult {
        reason: Some(reason.into()),
        ..CaseResult::new(case, variant, path, outcome)
    }
}

/// The ERROR result of a case whose task panicked.
fn internal_error(config: &RunConfig, p: Planned, panic: &crate::panics::TaskPanic) -> CaseResult {
    tracing::error!("{panic}");
    let mut r = not_run(config, p, Outcome::Error, &panic.to_string());
    r.infra = Some(InfraFailure::new(
        "-",
        InfraError::Internal(panic.to_string()),
    ));
    r.logs = logs_written(config, p);
    r
}

/// The board logs a case run has written so far (`<node>.log` in its log folder).
fn logs_written(config: &RunConfig, p: Planned) -> BTreeMap<String, PathBuf> {
    let (case, variant) = names(config, p);
    let dir = config.out_dir.join("logs").join(case).join(variant);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|path| {
            let node = path
                .file_name()?
                .to_str()?
                .strip_suffix(".log")?
                .to_string();
            Some((node, path))
        })
        .collect()
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

async fn run_one(
    shared: &RunShared,
    events: &CaseEvents,
    p: Planned,
    seq: usize,
    attempt: u32,
) -> CaseResult {
    let result = run_attempt(shared, events, p, seq, attempt).await;
    events.send(RunEvent::AttemptFinished {
        case: result.case.clone(),
        variant: result.variant.clone(),
        attempt: Box::new(crate::events::AttemptRecord::of(attempt, &result)),
    });
    result
}

/// One attempt of a case run.
async fn run_attempt(
    shared: &RunShared,
    events: &CaseEvents,
    p: Planned,
    seq: usize,
    attempt: u32,
) -> CaseResult {
    let config = &shared.config;
    let (Some(case), Some(variant)) = (config.cases.get(p.case), config.variants.get(p.variant))
    else {
        let (case, variant) = names(config, p);
        return CaseResult {
            reason: Some(format!("planned run {p:?} is outside the configuration")),
            ..CaseResult::new(case, variant, PathBuf::new(), Outcome::Error)
        };
    };
    #[cfg(test)]
    tests::panic_if_asked(&case.name);
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
        seed,
        sniffer,
        clock,
    } = match config.boards.acquire(run).await {
        Ok(a) => a,
        Err(i) => {
            classify(case, variant, RawOutcome::Infra(i), &mut result);
            result.duration = started.elapsed();
            return result;
        }
    };
    result.facts.seed = seed;
    result.facts.clock = Some(if clock.is_virtual() { "case" } else { "host" });
    result.facts.sniffer = sniffer;
    if !acquired.is_empty() && acquired.iter().all(|b| b.flash.is_some()) {
        result.facts.firmware_sha256 = Some(variant.image.sha256.clone());
    }
    let mut consoles = BTreeMap::new();
    let raw = match bring_up(run, events, acquired, &clock, &mut consoles, &mut result).await {
        Err(e) => e,
        Ok(()) => run_steps(run, events, &mut *held, &consoles, &mut result).await,
    };
    // A board that crashed or went away says so once, whatever step noticed it.
    for (node, c) in &consoles {
        let fault = c.shared().lock().fault.clone();
        match fault {
            Some(BoardFault::Crashed { reason, .. }) => {
                events.board(run, &mut result, node, BoardEvent::Crashed { reason });
            }
            Some(BoardFault::Gone { reason }) => {
                events.board(run, &mut result, node, BoardEvent::Lost { reason });
            }
            None => {}
        }
    }
    if let Some(hub) = held.air_counters() {
        result.air.get_or_insert_with(AirCounters::default).hub = Some(hub);
    }
    if let Some(counters) = &result.air {
        events.send(RunEvent::AirCounters {
            case: case.name.clone(),
            variant: variant.name.clone(),
            attempt,
            counters: Box::new(counters.clone()),
        });
    }
    // Extended, not replaced: the air witness put its own lines there.
    result.tails.extend(
        consoles
            .iter()
            .map(|(n, c)| (n.clone(), c.shared().lock().lines.tail(TAIL_LINES))),
    );
    for (_, c) in consoles {
        if let Ok(c) = Arc::try_unwrap(c) {
            result.log_bytes_dropped += c.close().await;
        }
    }
    // A failed run's boards stay up for a person when asked (their consoles are closed above,
    // so a terminal can open them); an expected failure is not kept.
    let failed = matches!(raw, RawOutcome::Failed(_))
        && !matches!(
            case.expectation(&variant.name),
            Some(VariantExpectation::Xfail { .. })
        );
    let reach = held.reachable();
    if shared.options.keep_boards_on_failure && failed && !reach.is_empty() {
        shared
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(KeptCase {
                case: case.name.clone(),
                variant: variant.name.clone(),
                reach,
                held,
            });
    } else {
        held.release().await;
    }
    // The boards' logs are closed: one timeline of the case from all of them.
    let board_logs: BTreeMap<String, PathBuf> = result
        .logs
        .iter()
        .filter(|(_, p)| p.extension().is_some_and(|e| e == "log"))
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    if !board_logs.is_empty() {
        match crate::report::timeline::write(&log_dir, &board_logs, &result.board_events) {
            Ok(path) => {
                result
                    .logs
                    .insert(crate::report::timeline::TIMELINE_FILE.into(), path);
            }
            Err(e) => tracing::warn!("timeline of {}: {e}", log_dir.display()),
        }
    }
    classify(case, variant, raw, &mut result);
    result.duration = started.elapsed();
    result
}

/// The steps of a case on boards that are up, with the air witness around them.
async fn run_steps(
    run: CaseRun<'_>,
    events: &CaseEvents,
    held: &mut dyn CaseBoards,
    consoles: &BTreeMap<String, Arc<Console>>,
    result: &mut CaseResult,
) -> RawOutcome {
    let (case, variant) = (run.case, run.variant);
    let mut exec = Executor::new(consoles.clone());
    let mut raw = RawOutcome::Passed;
    // The air witness (sniffer, handshake snapshots), when the case declares one.
    let witness = match held.attach_air(run).await {
        Ok(w) => {
            if w.is_some() && result.facts.sniffer.is_none() {
                result.facts.sniffer = Some("virtual".into());
            }
            w
        }
        Err(reason) => {
            raw = RawOutcome::Infra(InfraFailure::new(
                crate::air::witness::SNIFFER_BOARD,
                SnifferProblem::Start(reason),
            ));
            None
        }
    };
    let steps = if matches!(raw, RawOutcome::Passed) {
        case.steps.as_slice()
    } else {
        &[]
    };
    let mut sniffer_gone = false;
    for (i, step) in steps.iter().enumerate() {
        if let Err(e) = held.before_step(run, i, consoles).await {
            raw = RawOutcome::Infra(e);
            break;
        }
        events.send(RunEvent::StepStarted {
            case: case.name.clone(),
            variant: variant.name.clone(),
            attempt: run.attempt,
            index: i,
            node: step.node.clone(),
            step: step.summary(),
        });
        // A sniffer lost mid-step ends the step: the capture the case is judged on stops there,
        // unless it already holds every handshake the case is judged on (then the case runs on
        // and the loss is a warning).
        let outcome = match witness
            .as_ref()
            .filter(|w| w.watches_a_sniffer() && !sniffer_gone)
        {
            Some(w) => {
                let running = exec.run_step(i, step);
                tokio::pin!(running);
                tokio::select! {
                    r = &mut running => r,
                    reason = w.sniffer_lost() => {
                        if w.transcripts_complete(&held.transcript_controls()) {
                            sniffer_gone = true;
                            running.await
                        } else {
                            Err(StepError::Infra(
                                InfraFailure::new(
                                    crate::air::witness::SNIFFER_BOARD,
                                    SnifferProblem::Lost(reason),
                                )
                                .at_step(step.summary()),
                            ))
                        }
                    }
                }
            }
            None => exec.run_step(i, step).await,
        };
        match outcome {
            Ok(t) => {
                let record = StepRecord {
                    index: i,
                    node: step.node.clone(),
                    step: step.summary(),
                    duration_us: micros(t.finished.saturating_duration_since(t.started)),
                    wall_us: micros(t.wall),
                    to_written_us: t
                        .written
                        .map(|w| micros(w.saturating_duration_since(t.started))),
                    after_result_us: t
                        .result_line
                        .map(|r| micros(t.finished.saturating_duration_since(r))),
                };
                events.send(RunEvent::StepFinished {
                    case: case.name.clone(),
                    variant: variant.name.clone(),
                    attempt: run.attempt,
                    record: record.clone(),
                });
                result.steps.push(record);
            }
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
        let steps_failed = matches!(raw, RawOutcome::Failed(_));
        let report = w
            .finish(
                case,
                &variant.name,
                steps_failed,
                sniffer_gone,
                &controls,
                &mut result.logs,
            )
            .await;
        raw = judge_witness(run, events, report, raw, result);
    }
    raw
}

/// Fold what the air witness found into the attempt: its records and events, and its verdict.
/// A lost sniffer or one that missed frames is an infrastructure error (the capture cannot be
/// trusted), unless the attempt already has one of its own; a snapshot failure outranks a
/// failed step: an expected failure (xfail) whose handshake changed is not the expected
/// failure any more, and the transcript diff says why a case went red.
fn judge_witness(
    run: CaseRun<'_>,
    events: &CaseEvents,
    report: crate::air::witness::WitnessReport,
    raw: RawOutcome,
    result: &mut CaseResult,
) -> RawOutcome {
    let (case, variant, attempt) = (run.case.name.clone(), run.variant.name.clone(), run.attempt);
    if !report.lines.is_empty() {
        result
            .tails
            .insert(crate::air::witness::AIR.to_string(), report.lines);
    }
    if let Some(counters) = report.counters {
        result.air.get_or_insert_with(AirCounters::default).capture = Some(counters);
    }
    if let Some(capture) = report.capture {
        events.send(RunEvent::AirCaptured {
            case: case.clone(),
            variant: variant.clone(),
            attempt,
            capture: Box::new(capture),
        });
    }
    for snapshot in &report.snapshots {
        events.send(RunEvent::SnapshotCompared {
            case: case.clone(),
            variant: variant.clone(),
            attempt,
            snapshot: Box::new(snapshot.clone()),
        });
    }
    result.snapshots = report.snapshots;
    if let Some(warning) = &report.warning {
        result.warnings.push(format!(
            "{warning}; every handshake the case is judged on was already captured"
        ));
    }
    if let Some(SnifferProblem::Lost(reason)) = report.problem.as_ref().or(report.warning.as_ref())
    {
        let lost = BoardEvent::Lost {
            reason: reason.clone(),
        };
        events.board(run, result, crate::air::witness::SNIFFER_BOARD, lost);
    }
    match (raw, report.problem, report.failure) {
        (RawOutcome::Infra(i), _, _) => RawOutcome::Infra(i),
        (_, Some(problem), _) => RawOutcome::Infra(InfraFailure::new(
            crate::air::witness::SNIFFER_BOARD,
            problem,
        )),
        (RawOutcome::Failed(step), _, Some(mut f)) => {
            f.got.push(format!(
                "the case also failed at {} ({}): expected {}",
                step.step, step.location, step.expected
            ));
            RawOutcome::Failed(Box::new(f))
        }
        (RawOutcome::Passed, _, Some(f)) => RawOutcome::Failed(Box::new(f)),
        (r, _, _) => r,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Open every acquired board's console before its reset (so the boot banner lands in the
/// case's log), flash the boards that need it, and wait for every prompt.
async fn bring_up(
    run: CaseRun<'_>,
    events: &CaseEvents,
    acquired: Vec<AcquiredBoard>,
    clock: &StepClock,
    consoles: &mut BTreeMap<String, Arc<Console>>,
    result: &mut CaseResult,
) -> Result<(), RawOutcome> {
    let mut flashes = Vec::new();
    for board in acquired {
        let log = run.log_dir.join(format!("{}.log", board.node));
        let config_banner = board.banner;
        let config = ConsoleConfig {
            board: board.node.clone(),
            shell: board.shell,
            banner: config_banner.clone(),
            log: Some(log.clone()),
            clock: clock.clone(),
            tap: board.tap.clone(),
        };
        let console = match &board.port {
            ConsolePort::Serial { path, baud } => Console::open_serial(path, *baud, config),
            ConsolePort::Process { program, args } => Console::spawn_process(program, args, config),
        }
        .map_err(|e| RawOutcome::Infra(infra(&board.node, InfraError::console(e))))?;
        result
            .facts
            .nodes
            .insert(board.node.clone(), board.facts.clone());
        events.board(
            run,
            result,
            &board.node,
            BoardEvent::Acquired {
                facts: board.facts.clone(),
            },
        );
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
            let flashed = (image.variant.clone(), image.sha256.clone());
            (
                flashed,
                tokio::task::spawn_blocking(move || flasher.flash(&image)),
            )
        });
        let factory_reset = board.factory_reset.then(|| config_banner.clone());
        flashes.push((board.node, console, before, flash, factory_reset));
    }
    for (node, console, before, flash, factory_reset) in flashes {
        match flash {
            Some(((variant, sha256), handle)) => {
                let outcome = handle
                    .await
                    .map_err(|e| RawOutcome::Infra(infra(&node, InfraError::flash(e))))?
                    .map_err(|e| RawOutcome::Infra(infra(&node, InfraError::flash(e))))?;
                console.note(&format!("{outcome:?}"));
                let written = outcome == ot_hil_lab::flash::FlashOutcome::Flashed;
                let flashed = BoardEvent::Flashed {
                    variant,
                    sha256,
                    written,
                };
                events.board(run, result, &node, flashed);
            }
            None => events.board(run, result, &node, BoardEvent::FlashSkipped),
        }
        let not_ready = |e| match e {
            NotReady::Infra(i) => RawOutcome::Infra(i),
            NotReady::Crashed(f) => RawOutcome::Failed(f),
        };
        crate::boards::wait_ready(&console, before, run.ready_timeout)
            .await
            .map_err(not_ready)?;
        if let Some(banner) = factory_reset {
            crate::boards::factory_reset_over_console(&console, &banner, run.ready_timeout)
                .await
                .map_err(not_ready)?;
        }
        events.board(run, result, &node, BoardEvent::Booted);
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
            result.reason = Some(format!("board {}: {}", i.board, i.reason()));
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
                    let matches = |p: &crate::case::Pattern, text: &[String]| {
                        p.resolve(|_| None)
                            .is_ok_and(|re| text.iter().any(|l| re.is_match(l)))
                    };
                    let line_seen = s.line.as_ref().is_none_or(|p| matches(p, &f.window));
                    let crash_seen = s
                        .crash
                        .as_ref()
                        .is_none_or(|p| matches(p, f.crash.as_slice()));
                    if at_step && line_seen && crash_seen {
                        result.outcome = Outcome::Xfail;
                        result.reason = Some(reason.clone());
                    } else {
                        let wanted = [
                            s.line.as_ref().map(|l| format!("a line matching /{l}/")),
                            s.crash.as_ref().map(|c| format!("a crash matching /{c}/")),
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" and ");
                        result.outcome = Outcome::Fail;
                        result.reason = Some(format!(
                            "expected to fail at step `{}` with {wanted} ({reason}), but it failed {}",
                            s.step_id,
                            if at_step {
                                format!(
                                    "there without it (crash: {})",
                                    f.crash.as_deref().unwrap_or("none")
                                )
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

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::case::LoadOptions;
    use crate::report::exit_code;

    /// The case whose task panics, as a bug in the runner would.
    const PANICKING_CASE: &str = "boom";

    pub(super) fn panic_if_asked(case: &str) {
        if case == PANICKING_CASE {
            panic!("a bug in the runner while running {case}");
        }
    }

    struct Collect(Arc<Mutex<Vec<CaseResult>>>);

    impl Reporter for Collect {
        fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
            if let RunEvent::CaseFinished(r) = event {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((**r).clone());
            }
            Ok(())
        }
    }

    #[test]
    fn default_jobs_is_the_cpus_for_virtual_boards_and_what_the_map_serves_for_real_ones() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(default_jobs(None, 3), cpus);
        assert_eq!(default_jobs(Some(7), 3), 2);
        assert_eq!(
            default_jobs(Some(2), 3),
            1,
            "a case larger than the map still runs"
        );
        assert_eq!(default_jobs(Some(4), 0), 4);
    }

    /// A run of `cases` (name, text) on variant `fake`, on boards running the fake CLI script,
    /// one job; the case directory and the output folder live as long as the returned dirs.
    fn fake_cli_run(
        cases: &[(&str, &str)],
    ) -> (
        RunConfig,
        Vec<Planned>,
        (tempfile::TempDir, tempfile::TempDir),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("fake.toml"),
            "name = \"fake\"\napplication = \"thread-cli\"\nprofile = \"upstream\"\n",
        )
        .expect("variant written");
        let variants = crate::variants::load_variants(dir.path()).expect("variant");
        let options = LoadOptions {
            known_variants: Some(["fake".to_string()].into()),
        };
        let cases: Vec<Case> = cases
            .iter()
            .map(|(name, text)| {
                let p = dir.path().join(format!("{name}.toml"));
                std::fs::write(&p, text).expect("case written");
                Case::load(&p, &options).expect("case loads")
            })
            .collect();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_cli.py");
        let plan = plan(&cases, &variants, None, None);
        let config = RunConfig {
            cases,
            variants,
            boards: Arc::new(crate::boards::processes::ProcessBoards::new(
                vec![format!("python3 -u {}", script.display())],
                crate::profile::Shell::of(ot_hil_board::Profile::Upstream),
            )),
            out_dir: out.path().to_path_buf(),
            jobs: 1,
            ready_timeout: Duration::from_secs(10),
        };
        (config, plan, (dir, out))
    }

    /// Every event's kind and case, in order.
    struct Kinds(Arc<Mutex<Vec<String>>>);

    impl Reporter for Kinds {
        fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
            let kind = match event {
                RunEvent::CaseStarted { case, .. } => format!("start {case}"),
                RunEvent::CaseSlow { case, elapsed, .. } => {
                    format!("slow {case} {}", elapsed.as_secs())
                }
                RunEvent::CaseFinished(r) => format!("finish {}", r.case),
                _ => return Ok(()),
            };
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(kind);
            Ok(())
        }
    }

    #[test]
    fn a_case_running_past_the_slow_timeout_is_reported_slow_once_per_multiple_and_a_quick_one_never()
     {
        // The slow case's board answers its last line 2.6 s after the command: past 1 s and 2 s.
        let (config, plan, _dirs) = fake_cli_run(&[
            (
                "quick",
                "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\noutput = ['^leader$']\n",
            ),
            (
                "slow",
                "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"later 2.6 tick\"\n[[steps]]\nnode = \"dut\"\nexpect = \"tick\"\n",
            ),
        ]);
        let options = crate::resilience::RunOptions {
            slow_timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(Kinds(events.clone()))];
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let summary = rt
            .block_on(run_with_options(
                config,
                options,
                plan,
                &mut reporters,
                std::future::pending(),
            ))
            .expect("run");
        assert_eq!(summary.count(Outcome::Pass), 2, "{summary:?}");
        let events = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // The quick case gets no notice; the slow one a notice per threshold passed, each
        // between its start and its end (a loaded machine may stretch it past a third).
        assert_eq!(
            events[..3],
            ["start quick", "finish quick", "start slow"],
            "{events:?}"
        );
        assert_eq!(
            events.last().map(String::as_str),
            Some("finish slow"),
            "{events:?}"
        );
        let notices = &events[3..events.len() - 1];
        assert!(notices.len() >= 2, "{events:?}");
        for (k, notice) in notices.iter().enumerate() {
            assert_eq!(notice, &format!("slow slow {}", k + 1), "{events:?}");
        }
    }

    #[test]
    fn a_case_whose_task_panics_is_an_error_in_every_reporter_and_the_others_run_on() {
        let case_text = "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\noutput = ['^leader$']\n";
        let (config, plan, (_dir, out)) = fake_cli_run(&[
            ("a-before", case_text),
            (PANICKING_CASE, case_text),
            ("z-after", case_text),
        ]);
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut reporters: Vec<Box<dyn Reporter>> = vec![
            Box::new(Collect(results.clone())),
            Box::new(crate::report::JunitReporter::new(
                out.path().join("junit.xml"),
            )),
            Box::new(crate::report::JsonReporter::new(
                out.path().join("results.json"),
            )),
        ];
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let summary = rt
            .block_on(run(config, plan, &mut reporters, std::future::pending()))
            .expect("run");
        let mut results = results.lock().unwrap_or_else(|e| e.into_inner()).clone();
        results.sort_by(|a, b| a.case.cmp(&b.case));
        let outcomes: Vec<(&str, Outcome)> = results
            .iter()
            .map(|r| (r.case.as_str(), r.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("a-before", Outcome::Pass),
                (PANICKING_CASE, Outcome::Error),
                ("z-after", Outcome::Pass)
            ],
            "{results:#?}"
        );
        let reason = results[1].reason.clone().unwrap_or_default();
        assert!(
            reason.starts_with("internal error: a bug in the runner while running boom at ")
                && reason.contains("runner.rs:"),
            "{reason}"
        );
        assert_eq!(exit_code::for_summary(&summary), exit_code::INFRA_ERROR);
        let junit = std::fs::read_to_string(out.path().join("junit.xml")).expect("junit");
        assert!(
            junit.contains("<error message=\"internal error: a bug in the runner"),
            "{junit}"
        );
        assert_eq!(junit.matches("<testcase ").count(), 3, "{junit}");
        let json = std::fs::read_to_string(out.path().join("results.json")).expect("json");
        assert!(
            json.contains("internal error: a bug in the runner"),
            "{json}"
        );
    }
}
