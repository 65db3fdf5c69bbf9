//! The runner: plans case × variant runs, gives each its boards, drives the steps, classifies the
//! result and emits [`RunEvent`]s to the reporters.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ot_hil_lab::flash::Flasher;
use ot_hil_lab::partition::Partition;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::case::{Case, VariantExpectation};
use crate::console::{BoardFault, Console, ConsoleConfig};
use crate::events::{CaseResult, Outcome, Reporter, RunEvent, StepRecord, Summary};
use crate::exec::{Executor, Failure, InfraFailure, StepError};
use crate::profile::Profile;
use crate::variants::Variant;
use crate::virtual_lab::{VdkCommand, VirtualDk};

/// How long a board may take to show its prompt after flashing/reset or start.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to press Enter while waiting for a prompt.
const PROMPT_POKE_INTERVAL: Duration = Duration::from_millis(500);
/// Console lines quoted per node in reports.
pub const TAIL_LINES: usize = 15;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to create the run directory: {0}")]
    RunDir(#[source] std::io::Error),
}

/// Where boards come from.
#[derive(Debug, Clone)]
pub enum BoardSource {
    /// A fresh virtual DK per node per case, on this run's own air.
    Virtual { vdk: VdkCommand },
    /// Host processes on PTYs (`sh -c COMMAND`), one per board; boards are shared between cases
    /// and handed out as a pool. The process is the firmware: no flashing.
    Processes {
        commands: Vec<String>,
        profile: Profile,
    },
    /// Real DKs of a hardware map: allocated and locked per case, flashed with probe-rs (skipped
    /// when the board already holds the image), console on the map's serial port.
    Hardware(Box<HardwareBoards>),
}

/// What real boards need.
#[derive(Debug, Clone)]
pub struct HardwareBoards {
    pub allocator: ot_hil_lab::lock::Allocator,
    pub states: ot_hil_lab::flash::state::StateDir,
    /// How long a case waits for busy boards.
    pub allocate_timeout: Duration,
}

pub struct RunConfig {
    pub cases: Vec<Case>,
    pub variants: Vec<Variant>,
    pub boards: BoardSource,
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

/// A pool of process boards: a case takes as many as it has nodes, all at once.
struct ProcessPool {
    free: Mutex<Vec<usize>>,
    returned: Notify,
}

impl ProcessPool {
    async fn take(&self, n: usize) -> Option<Vec<usize>> {
        loop {
            let notified = self.returned.notified();
            {
                let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
                if free.len() >= n {
                    let at = free.len() - n;
                    return Some(free.split_off(at));
                }
            }
            notified.await;
        }
    }

    fn give_back(&self, boards: Vec<usize>) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(boards);
        self.returned.notify_waiters();
    }
}

struct RunShared {
    config: RunConfig,
    options: crate::resilience::RunOptions,
    run_dir: tempfile::TempDir,
    pool: Option<ProcessPool>,
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
    let pool = match &config.boards {
        BoardSource::Processes { commands, .. } => Some(ProcessPool {
            free: Mutex::new((0..commands.len()).rev().collect()),
            returned: Notify::new(),
        }),
        BoardSource::Virtual { .. } | BoardSource::Hardware(_) => None,
    };
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
        pool,
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

/// The boards of one case run, whatever their kind.
struct CaseBoards {
    consoles: BTreeMap<String, Arc<Console>>,
    vdks: Vec<VirtualDk>,
    pooled: Vec<usize>,
    /// Locks of real boards, released when dropped.
    allocation: Option<ot_hil_lab::lock::Allocation>,
    hub: Option<ot_hil_air::Hub>,
    /// Serial port of the sniffer board allocated with real boards, for a case with `[sniffer]`.
    sniffer_port: Option<PathBuf>,
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
    let mut boards = CaseBoards {
        consoles: BTreeMap::new(),
        vdks: vec![],
        pooled: vec![],
        hub: None,
        allocation: None,
        sniffer_port: None,
    };
    let raw = match setup(
        shared,
        case,
        variant,
        (seq, attempt),
        &log_dir,
        &mut boards,
        &mut result,
    )
    .await
    {
        Err(e) => e,
        Ok(()) => {
            let mut exec = Executor::new(boards.consoles.clone());
            let mut raw = RawOutcome::Passed;
            // The air witness (sniffer, handshake snapshots), when the case declares one.
            let witness = match (&config.boards, &boards.hub) {
                (BoardSource::Virtual { vdk }, Some(hub)) => {
                    let variants_dir = variant.image.path.parent().unwrap_or(Path::new("."));
                    crate::air::witness::Witness::start_virtual(
                        case,
                        vdk,
                        hub.socket_path(),
                        variants_dir,
                        &log_dir,
                    )
                    .await
                }
                (BoardSource::Hardware(_), _) if boards.sniffer_port.is_some() => {
                    let port = boards.sniffer_port.clone().unwrap_or_default();
                    crate::air::witness::Witness::start_on_port(
                        case,
                        &port.display().to_string(),
                        &log_dir,
                    )
                    .map(Some)
                }
                _ => crate::air::witness::Witness::start_without_sniffer(case),
            };
            let witness = match witness {
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
                if let Some(hub) = &boards.hub
                    && let Err(e) = crate::resilience::apply_air_faults(
                        hub,
                        &case.faults,
                        &shared.options,
                        Some(i),
                        &boards.vdks,
                    )
                {
                    raw = RawOutcome::Infra(e);
                    break;
                }
                if let Err(e) = crate::resilience::inject_board_faults(
                    case,
                    i,
                    attempt,
                    &boards.vdks,
                    &boards.consoles,
                    config.ready_timeout,
                )
                .await
                {
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
                let controls: Vec<(String, PathBuf)> = boards
                    .vdks
                    .iter()
                    .map(|d| (d.board.clone(), d.control.clone()))
                    .collect();
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
    };
    // Extended, not replaced: the air witness put its own lines there.
    result.tails.extend(
        boards
            .consoles
            .iter()
            .map(|(n, c)| (n.clone(), c.shared().lock().lines.tail(TAIL_LINES))),
    );
    teardown(shared, boards).await;
    classify(case, variant, raw, &mut result);
    result.duration = started.elapsed();
    result
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn setup(
    shared: &RunShared,
    case: &Case,
    variant: &Variant,
    (seq, attempt): (usize, u32),
    log_dir: &Path,
    boards: &mut CaseBoards,
    result: &mut CaseResult,
) -> Result<(), RawOutcome> {
    let config = &shared.config;
    let infra = |board: &str, reason: String| {
        RawOutcome::Infra(InfraFailure {
            board: board.to_string(),
            step: None,
            reason,
        })
    };
    match &config.boards {
        BoardSource::Virtual { vdk } => {
            let dir = shared.run_dir.path().join(if attempt > 1 {
                format!("c{seq}a{attempt}")
            } else {
                format!("c{seq}")
            });
            std::fs::create_dir_all(&dir)
                .map_err(|e| infra("-", format!("failed to create {}: {e}", dir.display())))?;
            // Each case run has its own air: cases running at once (same channel, same PAN)
            // must not hear each other, any more than two runs may.
            let seed = crate::resilience::air_seed(&case.faults, &shared.options, attempt);
            let hub = ot_hil_air::Hub::start_seeded(&dir, seed).map_err(|e| {
                infra(
                    "-",
                    format!("failed to start the air hub in {}: {e}", dir.display()),
                )
            })?;
            // Console first, then flash: the boot banner lands in this case's log.
            for node in &case.nodes {
                let vdk_log = log_dir.join(format!("{node}.vdk.log"));
                let dk = VirtualDk::spawn(vdk, hub.socket_path(), &dir, node, Some(&vdk_log))
                    .await
                    .map_err(|e| infra(node, e.to_string()))?;
                let log = log_dir.join(format!("{node}.log"));
                let console = Console::open_serial(
                    &dk.tty,
                    115_200,
                    ConsoleConfig {
                        board: node.clone(),
                        profile: variant.profile.clone(),
                        banner: variant.manifest.banner.clone(),
                        log: Some(log.clone()),
                    },
                )
                .map_err(|e| infra(node, e.to_string()))?;
                result.logs.insert(node.clone(), log);
                boards.consoles.insert(node.clone(), Arc::new(console));
                boards.vdks.push(dk);
            }
            crate::resilience::apply_air_faults(
                &hub,
                &case.faults,
                &shared.options,
                None,
                &boards.vdks,
            )
            .map_err(RawOutcome::Infra)?;
            boards.hub = Some(hub);
            let mut flashes = Vec::new();
            for dk in &boards.vdks {
                let mut probe = dk.probe();
                let image = variant.image.clone();
                let node = dk.board.clone();
                let before = boards
                    .consoles
                    .get(&node)
                    .map(|c| c.shared().lock().prompts)
                    .unwrap_or(0);
                if let Some(c) = boards.consoles.get(&node) {
                    c.note(&format!("flash {} ({})", image.variant, image.sha256));
                }
                flashes.push((
                    node,
                    before,
                    tokio::task::spawn_blocking(move || probe.flash(&image)),
                ));
            }
            for (node, before, handle) in flashes {
                match handle.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(infra(&node, e.to_string())),
                    Err(e) => return Err(infra(&node, format!("flash task failed: {e}"))),
                }
                if let Some(c) = boards.consoles.get(&node) {
                    wait_ready(c, before, config.ready_timeout).await?;
                }
            }
        }
        BoardSource::Hardware(hw) => {
            setup_hardware(
                hw,
                case,
                variant,
                log_dir,
                boards,
                result,
                config.ready_timeout,
            )
            .await?
        }
        BoardSource::Processes { commands, profile } => {
            let Some(pool) = &shared.pool else {
                return Err(infra("-", "no board pool".into()));
            };
            if case.nodes.len() > commands.len() {
                return Err(infra(
                    "-",
                    format!(
                        "case needs {} boards, only {} board commands given",
                        case.nodes.len(),
                        commands.len()
                    ),
                ));
            }
            let Some(taken) = pool.take(case.nodes.len()).await else {
                return Err(infra("-", "board pool closed".into()));
            };
            boards.pooled = taken.clone();
            for (node, idx) in case.nodes.iter().zip(taken) {
                let Some(command) = commands.get(idx) else {
                    continue;
                };
                let log = log_dir.join(format!("{node}.log"));
                let console = Console::spawn_process(
                    "/bin/sh",
                    &["-c".to_string(), format!("exec {command}")],
                    ConsoleConfig {
                        board: node.clone(),
                        profile: profile.clone(),
                        banner: vec![],
                        log: Some(log.clone()),
                    },
                )
                .map_err(|e| infra(node, e.to_string()))?;
                result.logs.insert(node.clone(), log);
                let console = Arc::new(console);
                boards.consoles.insert(node.clone(), console.clone());
                wait_ready(&console, 0, config.ready_timeout).await?;
            }
        }
    }
    for c in boards.consoles.values() {
        c.arm_crash_detection(true);
    }
    Ok(())
}

/// Name of the sniffer's request among a case's node requests (not a valid node name, so it
/// cannot collide with one).
pub const SNIFFER_REQUEST: &str = "(sniffer)";

/// What a case asks of a hardware map: a board of the variant's console profile per node, and,
/// when the case has `[sniffer]`, a board tagged `sniffer` (locked with the others, never
/// flashed: it runs Nordic's sniffer firmware).
pub fn hardware_requests(
    case: &Case,
    profile: ot_hil_lab::hwmap::Profile,
    wants_sniffer: bool,
) -> Vec<ot_hil_lab::lock::NodeRequest> {
    use ot_hil_lab::lock::NodeRequest;
    let mut requests: Vec<NodeRequest> = case
        .nodes
        .iter()
        .map(|n| NodeRequest {
            node: n.clone(),
            profile: Some(profile),
            tags: vec![],
            platform: None,
        })
        .collect();
    if wants_sniffer {
        requests.push(NodeRequest {
            node: SNIFFER_REQUEST.into(),
            profile: None,
            tags: vec![ot_hil_lab::hwmap::SNIFFER_TAG.into()],
            platform: None,
        });
    }
    requests
}

/// Allocate, lock, open and flash real boards for `case`.
async fn setup_hardware(
    hw: &HardwareBoards,
    case: &Case,
    variant: &Variant,
    log_dir: &Path,
    boards: &mut CaseBoards,
    result: &mut CaseResult,
    ready_timeout: Duration,
) -> Result<(), RawOutcome> {
    use ot_hil_lab::flash::{FirmwareImage, ProbeRsFlasher};
    let infra = |board: &str, reason: String| {
        RawOutcome::Infra(InfraFailure {
            board: board.to_string(),
            step: None,
            reason,
        })
    };
    let profile = match variant.manifest.profile {
        ot_hil_vdk::firmware::Profile::Ncs => ot_hil_lab::hwmap::Profile::Ncs,
        ot_hil_vdk::firmware::Profile::Upstream => ot_hil_lab::hwmap::Profile::Upstream,
    };
    let image_path = real_image_path(variant).ok_or_else(|| {
        infra(
            "-",
            format!("variant {} names no image (`[build] hex`)", variant.name),
        )
    })?;
    let image = FirmwareImage::from_file(&variant.name, &image_path).map_err(|e| {
        infra(
            "-",
            format!(
                "image {} of variant {} not available: {e}",
                image_path.display(),
                variant.name
            ),
        )
    })?;
    let wants_sniffer = crate::air::AirSpec::for_case(case)
        .map_err(|e| infra("-", e.to_string()))?
        .sniffer;
    let requests = hardware_requests(case, profile, wants_sniffer);
    let allocator = hw.allocator.clone();
    let (name, timeout) = (case.name.clone(), hw.allocate_timeout);
    let allocation =
        tokio::task::spawn_blocking(move || allocator.allocate(&name, &requests, timeout))
            .await
            .map_err(|e| infra("-", format!("allocation task failed: {e}")))?
            .map_err(|e| infra("-", e.to_string()))?;
    let nodes: Vec<(String, ot_hil_lab::hwmap::Board)> = allocation
        .nodes
        .iter()
        .filter(|(n, _, _)| n != SNIFFER_REQUEST)
        .map(|(n, b, _)| (n.clone(), b.clone()))
        .collect();
    boards.sniffer_port = allocation
        .board_for(SNIFFER_REQUEST)
        .map(|b| b.port.clone());
    boards.allocation = Some(allocation);
    // Console first, then flash: the boot banner lands in this case's log.
    for (node, board) in &nodes {
        let log = log_dir.join(format!("{node}.log"));
        let config = ConsoleConfig {
            board: node.clone(),
            profile: variant.profile.clone(),
            banner: variant.manifest.banner.clone(),
            log: Some(log.clone()),
        };
        let console = Console::open_serial(&board.port, board.baud, config)
            .map_err(|e| infra(node, format!("{e} (board {})", board.id)))?;
        console.note(&format!("board {} on {}", board.id, board.port.display()));
        result.logs.insert(node.clone(), log);
        boards.consoles.insert(node.clone(), Arc::new(console));
    }
    for (node, board) in &nodes {
        let Some(console) = boards.consoles.get(node).cloned() else {
            continue;
        };
        let before = console.shared().lock().prompts;
        let mut flasher = ProbeRsFlasher::new(board, hw.states.clone())
            .map_err(|e| infra(node, e.to_string()))?;
        let image = image.clone();
        console.note(&format!("flash {} ({})", image.variant, image.sha256));
        let outcome = tokio::task::spawn_blocking(move || flasher.flash(&image))
            .await
            .map_err(|e| infra(node, format!("flash task failed: {e}")))?
            .map_err(|e| infra(node, e.to_string()))?;
        console.note(&format!("{outcome:?}"));
        wait_ready(&console, before, ready_timeout).await?;
    }
    Ok(())
}

/// The real image of a variant: `[build] hex`, relative to the variants directory or to the
/// repository root above it.
fn real_image_path(variant: &Variant) -> Option<PathBuf> {
    let hex = variant.manifest.build.as_ref()?.hex.clone()?;
    if hex.is_absolute() {
        return Some(hex);
    }
    let dir = variant.manifest.path.parent()?;
    let candidates: Vec<PathBuf> = [
        Some(dir.join(&hex)),
        dir.parent()
            .and_then(Path::parent)
            .map(|root| root.join(&hex)),
    ]
    .into_iter()
    .flatten()
    .collect();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .or_else(|| candidates.last().cloned())
}

/// Wait until the board shows a prompt (counted after `before`: the prompt count before the
/// flash or reset), pressing Enter now and then. The error says why, for people.
pub async fn board_ready(console: &Console, before: u64, timeout: Duration) -> Result<(), String> {
    match wait_ready(console, before, timeout).await {
        Ok(()) => Ok(()),
        Err(RawOutcome::Infra(i)) => Err(i.reason),
        Err(RawOutcome::Failed(f)) => Err(f.crash.unwrap_or(f.expected)),
        Err(RawOutcome::Passed) => Ok(()),
    }
}

/// Wait until the board shows a prompt (counted after `before`), pressing Enter now and then.
async fn wait_ready(console: &Console, before: u64, timeout: Duration) -> Result<(), RawOutcome> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changed = console.shared().subscribe();
    let mut next_poke = tokio::time::Instant::now() + PROMPT_POKE_INTERVAL;
    loop {
        {
            let st = console.shared().lock();
            if st.prompts > before {
                return Ok(());
            }
            if let Some(fault) = st.fault.clone() {
                let tail = st.lines.tail(TAIL_LINES);
                drop(st);
                return Err(match fault {
                    BoardFault::Gone { reason } => RawOutcome::Infra(InfraFailure {
                        board: console.name().into(),
                        step: None,
                        reason,
                    }),
                    BoardFault::Crashed { reason, .. } => RawOutcome::Failed(Box::new(Failure {
                        step_index: None,
                        location: String::new(),
                        node: console.name().into(),
                        step: "boot".into(),
                        expected: "a prompt after boot".into(),
                        got: tail.clone(),
                        crash: Some(format!(
                            "board {} crashed while booting: {reason}",
                            console.name()
                        )),
                        window: tail,
                    })),
                });
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let tail = console.shared().lock().lines.tail(5);
            return Err(RawOutcome::Infra(InfraFailure {
                board: console.name().into(),
                step: None,
                reason: format!(
                    "prompt {:?} never appeared within {} (last lines: {:?})",
                    console.profile().prompts,
                    humantime::format_duration(timeout),
                    tail
                ),
            }));
        }
        if now >= next_poke {
            let ending = console.profile().line_ending.clone();
            if let Err(e) = console.write_all(ending.as_bytes()).await {
                return Err(RawOutcome::Infra(InfraFailure {
                    board: console.name().into(),
                    step: None,
                    reason: e.to_string(),
                }));
            }
            next_poke = now + PROMPT_POKE_INTERVAL;
        }
        let _ = tokio::time::timeout_at(deadline.min(next_poke), changed.changed()).await;
    }
}

async fn teardown(shared: &RunShared, boards: CaseBoards) {
    for (_, c) in boards.consoles {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    for dk in boards.vdks {
        dk.stop().await;
    }
    drop(boards.hub);
    drop(boards.allocation);
    if let Some(pool) = &shared.pool
        && !boards.pooled.is_empty()
    {
        pool.give_back(boards.pooled);
    }
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
