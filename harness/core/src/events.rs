//! What the runner tells reporters. Reporters match every [`RunEvent`] kind by name (no `_` arm),
//! so adding a kind breaks the build of every reporter that does not handle it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::exec::Failure;
use crate::infra::InfraFailure;
use crate::report::provenance::{CaseFacts, NodeFacts, RunFacts};

/// The closed set of outcomes of one case on one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// Passed, as expected.
    Pass,
    /// Failed, not expected to (or failed differently from the expected symptom).
    Fail,
    /// Failed as the variant's `xfail` says.
    Xfail,
    /// Passed although the variant's `xfail` says it fails: the expectation is stale.
    Xpass,
    /// Could not be run to a verdict: board gone, port busy, prompt never appeared, interrupted.
    Error,
    /// Not run (variant says `skip`, or the run was interrupted before it started).
    Skip,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Xfail => "XFAIL",
            Outcome::Xpass => "XPASS",
            Outcome::Error => "ERROR",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One step's timing, for the JSON results and the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub index: usize,
    pub node: String,
    pub step: String,
    /// On the case's clock: case-clock time for boards on a case clock, else wall time.
    pub duration_us: u64,
    /// The same step in wall-clock time (equal to `duration_us` on the host's clock).
    pub wall_us: u64,
    /// From the step's start to its command being written (harness share before the board).
    pub to_written_us: Option<u64>,
    /// From the board's result line arriving to the step's verdict (harness share after the board).
    pub after_result_us: Option<u64>,
}

/// The verdict on one case × variant.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub variant: String,
    pub path: PathBuf,
    pub outcome: Outcome,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
    /// Why: the xfail/skip reason, the infrastructure problem, or a note on an unexpected failure.
    pub reason: Option<String>,
    pub failure: Option<Failure>,
    pub infra: Option<InfraFailure>,
    /// Last console lines of every node of the case.
    pub tails: BTreeMap<String, Vec<String>>,
    /// Board logs written for this case.
    pub logs: BTreeMap<String, PathBuf>,
    /// Bytes cut from this case's board logs by their size cap (0: the logs are whole).
    #[serde(default)]
    pub log_bytes_dropped: u64,
    /// What went wrong without costing the case its verdict (the last attempt's): a sniffer lost
    /// once the handshakes the case is judged on were all captured.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub steps: Vec<StepRecord>,
    /// What happened to each board, in order (the last attempt's).
    #[serde(default)]
    pub board_events: Vec<BoardRecord>,
    /// The air's and the sniffer's counters (the last attempt's), where the case had an air.
    pub air: Option<AirCounters>,
    /// Every handshake snapshot compared (the last attempt's).
    #[serde(default)]
    pub snapshots: Vec<SnapshotRecord>,
    /// Earlier attempts of this case run (infrastructure retries, re-runs of failures), oldest
    /// first; the fields above are the last attempt's.
    pub attempts: Vec<AttemptRecord>,
    /// Failed, then passed on a re-run (`--rerun-failures`).
    pub flaky: bool,
    /// Why the case is quarantined: its failure is reported but does not fail the run.
    pub quarantined: Option<String>,
    /// What the case ran on (firmware, boards, sniffer, seed).
    pub facts: CaseFacts,
}

impl CaseResult {
    /// A result with its identity and outcome only: no reason, steps, logs or attempts yet.
    pub fn new(case: String, variant: String, path: PathBuf, outcome: Outcome) -> CaseResult {
        CaseResult {
            case,
            variant,
            path,
            outcome,
            duration: Duration::ZERO,
            reason: None,
            failure: None,
            infra: None,
            tails: BTreeMap::new(),
            logs: BTreeMap::new(),
            log_bytes_dropped: 0,
            warnings: vec![],
            steps: vec![],
            board_events: vec![],
            air: None,
            snapshots: vec![],
            attempts: vec![],
            flaky: false,
            quarantined: None,
            facts: CaseFacts::default(),
        }
    }
}

/// One earlier attempt of a case run.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    /// 1 = the first attempt.
    pub attempt: u32,
    pub outcome: Outcome,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
    pub reason: Option<String>,
    pub failure: Option<Failure>,
    pub infra: Option<InfraFailure>,
    pub tails: BTreeMap<String, Vec<String>>,
    pub logs: BTreeMap<String, PathBuf>,
}

impl AttemptRecord {
    /// `attempt 1 ERROR (board dut: ...)`.
    pub fn one_line(&self) -> String {
        format!(
            "attempt {} {}{}",
            self.attempt,
            self.outcome.label(),
            self.reason
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        )
    }

    pub fn of(attempt: u32, r: &CaseResult) -> AttemptRecord {
        AttemptRecord {
            attempt,
            outcome: r.outcome,
            duration: r.duration,
            reason: r.reason.clone(),
            failure: r.failure.clone(),
            infra: r.infra.clone(),
            tails: r.tails.clone(),
            logs: r.logs.clone(),
        }
    }
}

mod duration_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub counts: BTreeMap<Outcome, usize>,
    #[serde(with = "duration_secs")]
    pub duration: Duration,
    pub interrupted: bool,
    /// Cases that failed and then passed on a re-run (counted as PASS too).
    pub flaky: usize,
    /// Cases that needed more than one attempt (infrastructure retries or re-runs).
    pub retried: usize,
    /// FAIL or XPASS results of quarantined cases (counted in `counts` too).
    pub quarantined_failures: usize,
    /// ERROR results of quarantined cases (counted in `counts` too).
    pub quarantined_errors: usize,
}

impl Summary {
    pub fn count(&self, o: Outcome) -> usize {
        self.counts.get(&o).copied().unwrap_or(0)
    }

    /// Count what `counts` does not show: flaky, retried and quarantined results.
    pub fn note(&mut self, r: &CaseResult) {
        if r.flaky {
            self.flaky += 1;
        }
        if !r.attempts.is_empty() {
            self.retried += 1;
        }
        if r.quarantined.is_some() {
            match r.outcome {
                Outcome::Fail | Outcome::Xpass => self.quarantined_failures += 1,
                Outcome::Error => self.quarantined_errors += 1,
                Outcome::Pass | Outcome::Xfail | Outcome::Skip => {}
            }
        }
    }
}

/// One thing that happened to one board of a case run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoardRecord {
    pub node: String,
    /// When, on the run's clock (the board logs' `[seconds]`).
    #[serde(with = "duration_secs")]
    pub at: Duration,
    #[serde(flatten)]
    pub event: BoardEvent,
}

/// What happened to a board, from its acquisition to its loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum BoardEvent {
    /// The board source handed the board to the case run.
    Acquired { facts: NodeFacts },
    /// The board was flashed with the variant's image (`written: false`: it already held that
    /// image and was only reset).
    Flashed {
        variant: String,
        sha256: String,
        written: bool,
    },
    /// Nothing to flash: the board boots by itself (a host process: starting it is the reset).
    FlashSkipped,
    /// The board showed its prompt.
    Booted,
    /// The firmware crashed or rebooted unasked (a test failure).
    Crashed { reason: String },
    /// The board went away: its port closed, its process vanished (an infrastructure error).
    Lost { reason: String },
}

impl BoardEvent {
    /// One line for people.
    pub fn text(&self) -> String {
        match self {
            BoardEvent::Acquired { facts } => format!("acquired ({})", facts.text()),
            BoardEvent::Flashed {
                variant,
                sha256,
                written: true,
            } => format!("flashed {variant} ({sha256})"),
            BoardEvent::Flashed {
                variant,
                written: false,
                ..
            } => format!("already held {variant}: reset only"),
            BoardEvent::FlashSkipped => "nothing to flash: boots by itself".into(),
            BoardEvent::Booted => "booted: prompt seen".into(),
            BoardEvent::Crashed { reason } => format!("crashed: {reason}"),
            BoardEvent::Lost { reason } => format!("lost: {reason}"),
        }
    }
}

/// The counters of a case's air at the end of an attempt: the virtual air hub's (where the
/// boards were on one) and the sniffer capture's (where a sniffer watched).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AirCounters {
    pub hub: Option<HubCounters>,
    pub capture: Option<CaptureCounters>,
}

/// The virtual air hub's counters over one attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HubCounters {
    /// Frames the boards transmitted.
    pub frames_in: u64,
    /// Frames handed to receivers (one per receiver, duplicates included).
    pub frames_out: u64,
    /// Of those, frames handed to the sniffer's radio.
    pub frames_to_sniffer: u64,
    pub injected_losses: u64,
    pub injected_duplicates: u64,
    pub injected_corruptions: u64,
    /// Deliveries dropped because a receiver fell too far behind.
    pub receiver_overruns: u64,
    /// Datagrams the hub could not parse.
    pub malformed: u64,
}

impl HubCounters {
    /// `key=value` pairs for people.
    pub fn summary(&self) -> String {
        format!(
            "frames_in={} frames_out={} frames_to_sniffer={} injected_losses={} injected_duplicates={} injected_corruptions={} receiver_overruns={} malformed={}",
            self.frames_in,
            self.frames_out,
            self.frames_to_sniffer,
            self.injected_losses,
            self.injected_duplicates,
            self.injected_corruptions,
            self.receiver_overruns,
            self.malformed
        )
    }
}

/// What the sniffer's capture holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaptureCounters {
    /// Frames captured.
    pub frames: u64,
    /// Frame lines that did not parse.
    pub bad_lines: u64,
    /// Frames the air delivered to the sniffer that its capture lacks (see
    /// [`crate::air::witness::missed_frames`]); `None`: not known (no virtual air).
    pub missed: Option<u64>,
    /// Every counter of the capture and its decoder, `key=value`.
    pub summary: String,
}

/// What the air witness captured in one attempt: files, decoded frames, DTLS connections.
#[derive(Debug, Clone, Default)]
pub struct AirCapture {
    /// Channel the sniffer listened on.
    pub channel: u8,
    pub network_key_known: bool,
    pub pcap: Option<PathBuf>,
    /// The NSS key log of the boards' DTLS sessions, next to the pcap.
    pub key_log: Option<PathBuf>,
    /// One line per frame that carried UDP, at its time on the run's clock (the most recent
    /// [`crate::air::witness::MAX_AIR_LINES`]; the pcap has them all).
    pub frames: Vec<(Duration, String)>,
    /// Frame lines left out of `frames`.
    pub frames_omitted: usize,
    pub connections: Vec<ObservedConnection>,
    /// Notes of the witness (sniffer stopped early, pcap write failed, key log not written,
    /// air and engine transcripts that differ).
    pub notes: Vec<String>,
}

/// One DTLS connection seen on the air.
#[derive(Debug, Clone)]
pub struct ObservedConnection {
    pub client: String,
    pub server: String,
    pub transcript: ot_hil_dtls::Transcript,
    /// The run-clock time of each transcript entry.
    pub times: Vec<Option<Duration>>,
}

/// One handshake snapshot compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotRecord {
    /// The `[[snapshot]]`'s name.
    pub name: String,
    pub client: String,
    pub server: String,
    /// Where the transcript came from: `air` or `engine`.
    pub source: &'static str,
    pub verdict: SnapshotVerdict,
    /// The stored `.snap` file.
    pub stored: PathBuf,
    /// The pending `.snap.new` written by this run, if any.
    pub pending: Option<PathBuf>,
    /// Unified diff stored -> observed, where both exist and differ.
    pub diff: Option<String>,
    /// The stored snapshot's body (empty: none stored).
    #[serde(skip)]
    pub stored_body: String,
    /// This run's rendering of the transcript, where there was one.
    #[serde(skip)]
    pub observed_body: Option<String>,
    /// Why it was not compared, or what failed.
    pub note: Option<String>,
}

/// How a snapshot comparison ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotVerdict {
    Matched,
    /// Written (`INSTA_UPDATE=always`, or a new snapshot under `INSTA_UPDATE=new` rules).
    Written,
    /// No stored snapshot: a `.snap.new` was left for review.
    New,
    /// Differs from the stored one.
    Changed,
    /// Differs (or is new) but `INSTA_FORCE_PASS` let it pass.
    ForcedPass,
    /// Not compared: the case failed before its handshake.
    NotCompared,
    /// No transcript, or the comparison itself failed.
    Error,
}

impl SnapshotVerdict {
    pub fn label(self) -> &'static str {
        match self {
            SnapshotVerdict::Matched => "matched",
            SnapshotVerdict::Written => "written",
            SnapshotVerdict::New => "new",
            SnapshotVerdict::Changed => "changed",
            SnapshotVerdict::ForcedPass => "differs, forced pass",
            SnapshotVerdict::NotCompared => "not compared",
            SnapshotVerdict::Error => "error",
        }
    }
}

/// Events in the order they happen.
#[derive(Debug, Clone)]
pub enum RunEvent {
    RunStarted {
        cases: usize,
        variants: Vec<String>,
        planned: usize,
        jobs: usize,
        /// Tool, host and start time.
        run: RunFacts,
    },
    CaseStarted {
        case: String,
        variant: String,
    },
    /// A case is still running after the slow timeout (again after each further multiple).
    CaseSlow {
        case: String,
        variant: String,
        elapsed: std::time::Duration,
    },
    /// A step of a running case is about to run.
    StepStarted {
        case: String,
        variant: String,
        attempt: u32,
        index: usize,
        node: String,
        step: String,
    },
    /// A step passed, with its timings (a failing step ends its attempt: see `AttemptFinished`).
    StepFinished {
        case: String,
        variant: String,
        attempt: u32,
        record: StepRecord,
    },
    /// Something happened to a board of a running case (acquired, flashed, booted, crashed,
    /// lost).
    Board {
        case: String,
        variant: String,
        attempt: u32,
        record: BoardRecord,
    },
    /// The air's counters at the end of an attempt.
    AirCounters {
        case: String,
        variant: String,
        attempt: u32,
        counters: Box<AirCounters>,
    },
    /// What the air witness captured in an attempt.
    AirCaptured {
        case: String,
        variant: String,
        attempt: u32,
        capture: Box<AirCapture>,
    },
    /// A handshake snapshot was compared.
    SnapshotCompared {
        case: String,
        variant: String,
        attempt: u32,
        snapshot: Box<SnapshotRecord>,
    },
    /// One attempt of a case ended; a retry follows when its outcome asks for one.
    AttemptFinished {
        case: String,
        variant: String,
        attempt: Box<AttemptRecord>,
    },
    CaseFinished(Box<CaseResult>),
    /// Ctrl-C: running cases are being stopped; the rest will be reported as skipped.
    Interrupted,
    RunFinished(Summary),
}

/// A consumer of run events.
pub trait Reporter: Send {
    fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()>;
}
