//! Telling board trouble from firmware trouble, and carrying on.
//!
//! - Infrastructure errors (board gone, port busy, flash failed, prompt never seen) are retried
//!   on fresh boards (`--infra-retries`, default 1): on virtual boards every attempt spawns new
//!   virtual DKs on a new air; process and hardware boards are taken from their pools again.
//! - Test failures are re-run only when asked (`--rerun-failures N`); a case that fails and then
//!   passes is *flaky*: reported as passed, with every failed attempt kept in the results, as
//!   `<flakyFailure>` in JUnit (as Maven Surefire writes it) and counted in the summary.
//! - A quarantine list (`--quarantine FILE`, default `<case dir>/quarantine.toml`) names cases
//!   whose failures are reported but do not fail the run.
//! - The air's seed per attempt; the faults themselves are injected by the board sources that
//!   support them (`crate::boards`). This module calls nothing in the runner.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use ot_hil_air::FaultConfig;
use serde::Deserialize;

use crate::case::faults::CaseFaults;
use crate::events::{AttemptRecord, CaseResult, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum ResilienceError {
    #[error("failed to read quarantine list {path}: {source}")]
    ReadQuarantine {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("quarantine list {path}: {message}")]
    BadQuarantine { path: PathBuf, message: String },
}

/// How a run treats trouble (the command line's `--rerun-failures`, `--infra-retries`,
/// `--quarantine`, `--air-*`).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Extra attempts for a case that failed (FAIL); a later pass makes it flaky.
    pub rerun_failures: u32,
    /// Extra attempts, on fresh boards, for a case that hit an infrastructure error.
    pub infra_retries: u32,
    pub quarantine: Quarantine,
    /// Faults for every link of every case's air; replaces the cases' own all-link faults.
    pub air_faults: Option<FaultConfig>,
    /// Seed of every case's air (else the case's `seed`, else 0), plus the attempt number - 1.
    pub air_seed: Option<u64>,
    /// A case still running after this long (and after each further multiple) is reported as
    /// SLOW; `None`: never.
    pub slow_timeout: Option<std::time::Duration>,
    /// The clock simulated boards run on (boards that are not simulated always use the host's).
    pub clock: crate::step_clock::ClockMode,
    /// Keep what the boards stored in earlier cases (`--keep-state`): no settings erase or
    /// factory reset on real boards, and board commands run in the current directory instead
    /// of a fresh one per case. Virtual DKs are new processes per case, fresh either way.
    pub keep_state: bool,
    /// Keep the boards of a failed case run up (virtual DKs and their air) for a person to
    /// look at; the run hands them back with [`crate::runner::run_keeping`].
    pub keep_boards_on_failure: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            rerun_failures: 0,
            infra_retries: 1,
            quarantine: Quarantine::default(),
            air_faults: None,
            air_seed: None,
            slow_timeout: None,
            clock: crate::step_clock::ClockMode::default(),
            keep_state: false,
            keep_boards_on_failure: false,
        }
    }
}

/// Cases whose failures do not fail the run.
#[derive(Debug, Clone, Default)]
pub struct Quarantine {
    /// `case` or `case@variant` -> reason.
    entries: BTreeMap<String, String>,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuarantine {
    #[serde(default)]
    case: Vec<RawQuarantined>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuarantined {
    name: String,
    reason: String,
}

impl Quarantine {
    /// `[[case]] name = "..." reason = "..."`, name = a case name or `case@variant`.
    pub fn parse(path: &Path, text: &str) -> Result<Quarantine, ResilienceError> {
        let bad = |message: String| ResilienceError::BadQuarantine {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawQuarantine = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
        let mut entries = BTreeMap::new();
        for c in raw.case {
            if c.name.trim().is_empty() {
                return Err(bad("a quarantined case needs a name".into()));
            }
            if c.reason.trim().is_empty() {
                return Err(bad(format!("quarantined case `{}` needs a reason", c.name)));
            }
            entries.insert(c.name, c.reason);
        }
        Ok(Quarantine {
            entries,
            path: Some(path.to_path_buf()),
        })
    }

    pub fn load(path: &Path) -> Result<Quarantine, ResilienceError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ResilienceError::ReadQuarantine {
                path: path.to_path_buf(),
                source,
            })?;
        Quarantine::parse(path, &text)
    }

    /// Why `case` on `variant` is quarantined (`case@variant` first, then `case`).
    pub fn reason(&self, case: &str, variant: &str) -> Option<&str> {
        self.entries
            .get(&format!("{case}@{variant}"))
            .or_else(|| self.entries.get(case))
            .map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What to do after an attempt ended with `outcome`.
fn retry_reason(outcome: Outcome, infra_left: &mut u32, reruns_left: &mut u32) -> Option<String> {
    match outcome {
        Outcome::Error if *infra_left > 0 => {
            *infra_left -= 1;
            Some("infrastructure error: retrying on fresh boards".into())
        }
        Outcome::Fail if *reruns_left > 0 => {
            *reruns_left -= 1;
            Some("failed: re-running (--rerun-failures)".into())
        }
        _ => None,
    }
}

/// Run a case until it needs no retry; `run(attempt)` does attempt 1, 2, ... The result is the
/// last attempt's, with the earlier ones in `attempts`, `flaky` and `quarantined` filled in.
pub async fn run_attempts<F, Fut>(options: &RunOptions, mut run: F) -> CaseResult
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = CaseResult>,
{
    let mut infra_left = options.infra_retries;
    let mut reruns_left = options.rerun_failures;
    let mut earlier: Vec<AttemptRecord> = Vec::new();
    let mut attempt = 1u32;
    loop {
        let mut result = run(attempt).await;
        if let Some(why) = retry_reason(result.outcome, &mut infra_left, &mut reruns_left) {
            tracing::info!(
                case = %result.case,
                variant = %result.variant,
                attempt,
                "{why}"
            );
            earlier.push(AttemptRecord::of(attempt, &result));
            attempt += 1;
            continue;
        }
        result.flaky =
            result.outcome == Outcome::Pass && earlier.iter().any(|a| a.outcome == Outcome::Fail);
        result.attempts = earlier;
        result.quarantined = options
            .quarantine
            .reason(&result.case, &result.variant)
            .map(str::to_string);
        return result;
    }
}

/// The air seed of one attempt of a case.
pub fn air_seed(faults: &CaseFaults, options: &RunOptions, attempt: u32) -> u64 {
    let base = options
        .air_seed
        .or_else(|| faults.air.as_ref().and_then(|a| a.seed))
        .unwrap_or(0);
    base.wrapping_add(u64::from(attempt.saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcome: Outcome) -> CaseResult {
        CaseResult::new("c".into(), "v".into(), PathBuf::new(), outcome)
    }

    /// Drive `run_attempts` with a scripted sequence of outcomes.
    fn drive(options: &RunOptions, script: &[Outcome]) -> (CaseResult, usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let calls = std::cell::Cell::new(0usize);
        let r = rt.block_on(run_attempts(options, |attempt| {
            calls.set(calls.get() + 1);
            let o = script
                .get(usize::try_from(attempt).unwrap_or(usize::MAX) - 1)
                .copied()
                .unwrap_or(Outcome::Pass);
            async move { result(o) }
        }));
        (r, calls.get())
    }

    #[test]
    fn failures_are_not_rerun_unless_asked() {
        let (r, calls) = drive(&RunOptions::default(), &[Outcome::Fail, Outcome::Pass]);
        assert_eq!((r.outcome, calls, r.flaky), (Outcome::Fail, 1, false));
    }

    #[test]
    fn a_pass_on_rerun_is_flaky() {
        let options = RunOptions {
            rerun_failures: 2,
            ..RunOptions::default()
        };
        let (r, calls) = drive(&options, &[Outcome::Fail, Outcome::Pass]);
        assert_eq!((r.outcome, calls, r.flaky), (Outcome::Pass, 2, true));
        assert_eq!(r.attempts.len(), 1);
        assert_eq!(r.attempts[0].outcome, Outcome::Fail);
        let (r, calls) = drive(&options, &[Outcome::Fail, Outcome::Fail, Outcome::Fail]);
        assert_eq!((r.outcome, calls, r.flaky), (Outcome::Fail, 3, false));
    }

    #[test]
    fn infra_errors_retry_once_by_default_and_are_not_flaky() {
        let (r, calls) = drive(&RunOptions::default(), &[Outcome::Error, Outcome::Pass]);
        assert_eq!((r.outcome, calls, r.flaky), (Outcome::Pass, 2, false));
        let (r, calls) = drive(&RunOptions::default(), &[Outcome::Error, Outcome::Error]);
        assert_eq!((r.outcome, calls), (Outcome::Error, 2));
        let none = RunOptions {
            infra_retries: 0,
            ..RunOptions::default()
        };
        assert_eq!(drive(&none, &[Outcome::Error]).1, 1);
    }

    #[test]
    fn expected_failures_and_skips_are_final() {
        let options = RunOptions {
            rerun_failures: 3,
            ..RunOptions::default()
        };
        for o in [Outcome::Xfail, Outcome::Xpass, Outcome::Skip, Outcome::Pass] {
            assert_eq!(drive(&options, &[o]).1, 1, "{o:?}");
        }
    }

    #[test]
    fn quarantine_list() {
        let q = Quarantine::parse(
            Path::new("q.toml"),
            "[[case]]\nname = \"a\"\nreason = \"issue 1\"\n[[case]]\nname = \"b@v2\"\nreason = \"issue 2\"\n",
        )
        .expect("parses");
        assert_eq!(q.reason("a", "anything"), Some("issue 1"));
        assert_eq!(q.reason("b", "v2"), Some("issue 2"));
        assert_eq!(q.reason("b", "v1"), None);
        assert!(
            Quarantine::parse(Path::new("q"), "[[case]]\nname = \"a\"\nreason = \"\"\n").is_err()
        );
        assert!(Quarantine::parse(Path::new("q"), "[[case]]\nname = \"a\"\n").is_err());
        assert!(Quarantine::parse(Path::new("q"), "bogus = 1\n").is_err());

        let options = RunOptions {
            quarantine: Quarantine::parse(
                Path::new("q.toml"),
                "[[case]]\nname = \"c@v\"\nreason = \"issue 3\"\n",
            )
            .expect("parses"),
            ..RunOptions::default()
        };
        let (r, _) = drive(&options, &[Outcome::Fail]);
        assert_eq!(r.quarantined.as_deref(), Some("issue 3"));
        let mut summary = crate::events::Summary::default();
        *summary.counts.entry(r.outcome).or_default() += 1;
        summary.note(&r);
        assert_eq!(crate::report::exit_code::for_summary(&summary), 0);
        let (r, _) = drive(&RunOptions::default(), &[Outcome::Fail]);
        let mut summary = crate::events::Summary::default();
        *summary.counts.entry(r.outcome).or_default() += 1;
        summary.note(&r);
        assert_eq!(crate::report::exit_code::for_summary(&summary), 1);
    }

    #[test]
    fn seeds_differ_per_attempt() {
        let f = CaseFaults::default();
        let o = RunOptions::default();
        assert_eq!(air_seed(&f, &o, 1), 0);
        assert_eq!(air_seed(&f, &o, 2), 1);
        let o = RunOptions {
            air_seed: Some(40),
            ..RunOptions::default()
        };
        assert_eq!(air_seed(&f, &o, 3), 42);
    }
}
