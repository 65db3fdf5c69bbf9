//! What the runner tells reporters. Reporters match every [`RunEvent`] kind by name (no `_` arm),
//! so adding a kind breaks the build of every reporter that does not handle it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::exec::{Failure, InfraFailure};
use crate::report::provenance::{CaseFacts, RunFacts};

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
    pub steps: Vec<StepRecord>,
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
            steps: vec![],
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
