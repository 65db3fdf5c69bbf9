//! Reporters: progress lines + final table, JUnit XML, JSON results. Board logs are written by the
//! consoles themselves, as the lines arrive.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::events::{AttemptRecord, CaseResult, Outcome, Reporter, RunEvent, Summary};

mod junit;
pub mod provenance;
pub mod timeline;

pub mod html;
pub use junit::JunitReporter;

/// Human-readable failure details (shared by the progress output and JUnit).
pub fn failure_text(r: &CaseResult) -> String {
    let mut s = String::new();
    if let Some(reason) = &r.reason {
        s.push_str(&format!("reason: {reason}\n"));
    }
    if let Some(f) = &r.failure {
        if !f.location.is_empty() {
            s.push_str(&format!("step: {} ({})\n", f.step, f.location));
        } else {
            s.push_str(&format!("step: {}\n", f.step));
        }
        if let Some(c) = &f.crash {
            s.push_str(&format!("crash: {c}\n"));
        }
        s.push_str(&format!("expected: {}\n", f.expected));
        s.push_str("got:\n");
        for l in &f.got {
            s.push_str(&format!("  | {l}\n"));
        }
    }
    if let Some(i) = &r.infra {
        s.push_str(&format!("board: {}\n", i.board));
        if let Some(step) = &i.step {
            s.push_str(&format!("step: {step}\n"));
        }
        s.push_str(&format!("problem: {}\n", i.reason()));
    }
    for (node, lines) in &r.tails {
        s.push_str(&format!("last lines of {node}:\n"));
        for l in lines {
            s.push_str(&format!("  {node}| {l}\n"));
        }
    }
    for (node, log) in &r.logs {
        s.push_str(&format!("log of {node}: {}\n", log.display()));
    }
    s
}

/// One line per finished case with its `[k/N]` count, a line per started case when several run
/// at once, a SLOW line for a case past the slow timeout, details under failures, and a case ×
/// variant table at the end. Outcome labels are coloured when asked (the caller decides whether
/// its output is a terminal and whether `NO_COLOR` or `--color` forbid colour).
pub struct ProgressReporter<W: Write + Send> {
    out: W,
    color: bool,
    started: Instant,
    planned: usize,
    finished: usize,
    jobs: usize,
    results: Vec<(String, String, Outcome)>,
}

impl<W: Write + Send> ProgressReporter<W> {
    /// A reporter writing plain text.
    pub fn new(out: W) -> Self {
        ProgressReporter {
            out,
            color: false,
            started: Instant::now(),
            planned: 0,
            finished: 0,
            jobs: 1,
            results: vec![],
        }
    }

    /// Colour the outcome labels with ANSI escapes.
    pub fn with_color(mut self, color: bool) -> Self {
        self.color = color;
        self
    }

    /// `text` padded to `width`, in `style` when colour is on (the padding stays outside the
    /// escapes so columns line up either way).
    fn styled(&self, style: anstyle::Style, text: &str, width: usize) -> String {
        let pad = " ".repeat(width.saturating_sub(text.len()));
        if self.color {
            format!("{style}{text}{style:#}{pad}")
        } else {
            format!("{text}{pad}")
        }
    }

    /// A line about a running case (START, SLOW), its label in the column of the outcomes.
    fn notice(
        &mut self,
        color: anstyle::AnsiColor,
        label: &str,
        case: &str,
        variant: &str,
        note: &str,
    ) -> std::io::Result<()> {
        let t = self.started.elapsed().as_secs_f64();
        let label = self.styled(
            anstyle::Style::new().fg_color(Some(color.into())).bold(),
            label,
            5,
        );
        let blank = " ".repeat(self.count(0).len());
        writeln!(
            self.out,
            "[{t:8.3}s] {blank} {label} {case} @ {variant}{note}"
        )
    }

    /// `[ k/N]`, the width of N so the lines stay aligned.
    fn count(&self, k: usize) -> String {
        let w = self.planned.to_string().len();
        format!("[{k:>w$}/{}]", self.planned)
    }
}

/// The colour of an outcome label: green for what passes the run, red for what fails it, yellow
/// for what deserves a look.
fn outcome_style(o: Outcome) -> anstyle::Style {
    use anstyle::AnsiColor;
    let color = match o {
        Outcome::Pass | Outcome::Xfail => AnsiColor::Green,
        Outcome::Fail | Outcome::Xpass | Outcome::Error => AnsiColor::Red,
        Outcome::Skip => AnsiColor::Yellow,
    };
    anstyle::Style::new().fg_color(Some(color.into())).bold()
}

impl<W: Write + Send> Reporter for ProgressReporter<W> {
    fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match event {
            RunEvent::RunStarted {
                cases,
                variants,
                planned,
                jobs,
                run: _,
            } => {
                self.started = Instant::now();
                self.planned = *planned;
                self.jobs = *jobs;
                self.finished = 0;
                writeln!(
                    self.out,
                    "running {planned} case runs ({cases} cases x variants {}) with {jobs} jobs",
                    variants.join(", ")
                )?;
            }
            // With one job a start is the previous case's end; with several, which cases are
            // under way is worth a line.
            RunEvent::CaseStarted { case, variant } if self.jobs > 1 => {
                self.notice(anstyle::AnsiColor::Cyan, "START", case, variant, "")?;
            }
            RunEvent::CaseSlow {
                case,
                variant,
                elapsed,
            } => {
                let note = format!(" (running for {:.0}s)", elapsed.as_secs_f64());
                self.notice(anstyle::AnsiColor::Yellow, "SLOW", case, variant, &note)?;
            }
            // Board, air and snapshot events reach the finish line's details through the case's
            // result; progress lines show cases.
            RunEvent::CaseStarted { .. }
            | RunEvent::StepStarted { .. }
            | RunEvent::StepFinished { .. }
            | RunEvent::Board { .. }
            | RunEvent::AirCounters { .. }
            | RunEvent::AirCaptured { .. }
            | RunEvent::SnapshotCompared { .. }
            | RunEvent::AttemptFinished { .. } => {}
            RunEvent::CaseFinished(r) => {
                let t = self.started.elapsed().as_secs_f64();
                self.finished += 1;
                let count = self.count(self.finished);
                let label = self.styled(outcome_style(r.outcome), r.outcome.label(), 5);
                writeln!(
                    self.out,
                    "[{t:8.3}s] {count} {label} {} @ {} ({:.3}s)",
                    r.case,
                    r.variant,
                    r.duration.as_secs_f64()
                )?;
                for line in attempt_notes(r) {
                    writeln!(self.out, "           {line}")?;
                }
                let show = matches!(r.outcome, Outcome::Fail | Outcome::Error | Outcome::Xpass);
                if show {
                    for line in failure_text(r).lines() {
                        writeln!(self.out, "           {line}")?;
                    }
                } else if matches!(r.outcome, Outcome::Xfail | Outcome::Skip)
                    && let Some(reason) = &r.reason
                {
                    writeln!(self.out, "           {reason}")?;
                }
                self.results
                    .push((r.case.clone(), r.variant.clone(), r.outcome));
            }
            RunEvent::Interrupted => writeln!(
                self.out,
                "interrupted: stopping running cases, writing partial reports"
            )?,
            RunEvent::RunFinished(summary) => {
                write_table(&mut self.out, &self.results)?;
                write_summary(&mut self.out, summary)?;
            }
        }
        self.out.flush()
    }
}

fn write_table(out: &mut impl Write, results: &[(String, String, Outcome)]) -> std::io::Result<()> {
    let variants: BTreeSet<&str> = results.iter().map(|(_, v, _)| v.as_str()).collect();
    let mut rows: BTreeMap<&str, BTreeMap<&str, Outcome>> = BTreeMap::new();
    for (c, v, o) in results {
        rows.entry(c.as_str()).or_default().insert(v.as_str(), *o);
    }
    let w0 = rows.keys().map(|k| k.len()).max().unwrap_or(4).max(4);
    let widths: Vec<usize> = variants.iter().map(|v| v.len().max(5)).collect();
    write!(out, "\n{:w0$}", "case")?;
    for (v, w) in variants.iter().zip(&widths) {
        write!(out, "  {v:w$}")?;
    }
    writeln!(out)?;
    for (case, cols) in &rows {
        write!(out, "{case:w0$}")?;
        for (v, w) in variants.iter().zip(&widths) {
            let label = cols.get(v).map_or("-", |o| o.label());
            write!(out, "  {label:w$}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Retries, flakiness and quarantine of one result, in words.
pub fn attempt_notes(r: &CaseResult) -> Vec<String> {
    let mut notes = Vec::new();
    if !r.attempts.is_empty() {
        let earlier: Vec<String> = r.attempts.iter().map(AttemptRecord::one_line).collect();
        notes.push(format!(
            "{}after {}",
            if r.flaky {
                "FLAKY: passed on re-run "
            } else {
                ""
            },
            earlier.join("; ")
        ));
    }
    if let Some(q) = &r.quarantined {
        notes.push(format!("quarantined ({q}): does not fail the run"));
    }
    notes
}

fn write_summary(out: &mut impl Write, s: &Summary) -> std::io::Result<()> {
    let mut parts: Vec<String> = s
        .counts
        .iter()
        .map(|(o, n)| format!("{n} {}", o.label()))
        .collect();
    if s.flaky > 0 {
        parts.push(format!("{} flaky", s.flaky));
    }
    if s.retried > 0 {
        parts.push(format!("{} retried", s.retried));
    }
    if s.quarantined_failures + s.quarantined_errors > 0 {
        parts.push(format!(
            "{} quarantined",
            s.quarantined_failures + s.quarantined_errors
        ));
    }
    writeln!(
        out,
        "\n{}{} in {:.2}s",
        if s.interrupted { "INTERRUPTED: " } else { "" },
        if parts.is_empty() {
            "nothing run".to_string()
        } else {
            parts.join(", ")
        },
        s.duration.as_secs_f64()
    )
}

/// The details of an earlier attempt (JUnit's `<stackTrace>` of a re-run element).
pub(crate) fn attempt_details(a: &AttemptRecord) -> String {
    let mut s = String::new();
    if let Some(reason) = &a.reason {
        s.push_str(&format!("reason: {reason}\n"));
    }
    if let Some(f) = &a.failure {
        s.push_str(&format!("step: {} ({})\n", f.step, f.location));
        if let Some(c) = &f.crash {
            s.push_str(&format!("crash: {c}\n"));
        }
        s.push_str(&format!("expected: {}\ngot:\n", f.expected));
        for l in &f.got {
            s.push_str(&format!("  | {l}\n"));
        }
    }
    if let Some(i) = &a.infra {
        s.push_str(&format!("board: {}\nproblem: {}\n", i.board, i.reason()));
    }
    for (node, log) in &a.logs {
        s.push_str(&format!("log of {node}: {}\n", log.display()));
    }
    s
}

/// `results.json`: provenance, the summary and every case result (with step timings).
pub struct JsonReporter {
    path: PathBuf,
    record: RunRecord,
}

impl JsonReporter {
    pub fn new(path: PathBuf) -> Self {
        JsonReporter {
            path,
            record: RunRecord::default(),
        }
    }

    fn write(&self, summary: &Summary) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let run = self.record.run_facts();
        let doc = serde_json::json!({
            "schema_version": provenance::RESULTS_SCHEMA_VERSION,
            "tool": run.tool,
            "version": run.version,
            "git_commit": run.git_commit,
            "host": run.host,
            "started": run.started,
            "air_seed": run.air_seed,
            "summary": summary,
            "results": self.record.results,
        });
        let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
        std::fs::write(&self.path, text)
    }
}

impl Reporter for JsonReporter {
    fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match self.record.observe(event) {
            Some(summary) => self.write(summary),
            None => Ok(()),
        }
    }
}

/// What the file reporters keep of a run: its facts and every case's result.
#[derive(Debug, Default)]
pub(crate) struct RunRecord {
    pub run: Option<provenance::RunFacts>,
    pub results: Vec<CaseResult>,
}

impl RunRecord {
    /// Keep what `event` adds; the summary once the run has finished.
    pub fn observe<'e>(&mut self, event: &'e RunEvent) -> Option<&'e Summary> {
        match event {
            RunEvent::RunStarted { run, .. } => self.run = Some(run.clone()),
            RunEvent::CaseStarted { .. }
            | RunEvent::CaseSlow { .. }
            | RunEvent::StepStarted { .. }
            | RunEvent::StepFinished { .. }
            | RunEvent::Board { .. }
            | RunEvent::AirCounters { .. }
            | RunEvent::AirCaptured { .. }
            | RunEvent::SnapshotCompared { .. }
            | RunEvent::AttemptFinished { .. }
            | RunEvent::Interrupted => {}
            RunEvent::CaseFinished(r) => self.results.push((**r).clone()),
            RunEvent::RunFinished(summary) => return Some(summary),
        }
        None
    }

    /// The run's facts (those of now for a run whose start was not seen).
    pub fn run_facts(&self) -> provenance::RunFacts {
        self.run.clone().unwrap_or_else(provenance::RunFacts::now)
    }
}

/// Exit codes of `ot-hil` (documented in the README and `ot-hil --help`).
pub mod exit_code {
    /// Every case passed or failed as expected (XFAIL), or was skipped.
    pub const SUCCESS: i32 = 0;
    /// At least one FAIL or XPASS (an xfail that passes is a stale expectation).
    pub const TEST_FAILED: i32 = 1;
    /// Infrastructure error (board gone, port busy, prompt never appeared) or bad command line.
    pub const INFRA_ERROR: i32 = 2;
    /// A case file is invalid (`check` failed); nothing was run.
    pub const INVALID_CASES: i32 = 3;
    /// No case run selected (an empty directory, a `--filter` that matches nothing), with
    /// `--no-tests=fail`, the default.
    pub const NO_TESTS: i32 = 4;
    /// Interrupted by Ctrl-C / SIGINT (reports are still written): 128 + 2, as a shell reports it.
    pub const INTERRUPTED: i32 = 130;
    /// Ended by SIGTERM (a CI job's cancel, `kill`), reports still written: 128 + 15.
    pub const TERMINATED: i32 = 143;
    /// Ended by SIGHUP (the terminal went away), reports still written: 128 + 1.
    pub const HANGUP: i32 = 129;

    use crate::events::{Outcome, Summary};

    /// The exit code for a finished run: interruption, then test failures (a definite finding),
    /// then infrastructure errors (worth a retry).
    pub fn for_summary(s: &Summary) -> i32 {
        if s.interrupted {
            INTERRUPTED
        } else if s.count(Outcome::Fail) + s.count(Outcome::Xpass) > s.quarantined_failures {
            TEST_FAILED
        } else if s.count(Outcome::Error) > s.quarantined_errors {
            INFRA_ERROR
        } else {
            SUCCESS
        }
    }
}

#[cfg(test)]
mod progress_tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn started(planned: usize, jobs: usize) -> RunEvent {
        RunEvent::RunStarted {
            cases: planned,
            variants: vec!["v".into()],
            planned,
            jobs,
            run: provenance::RunFacts::now(),
        }
    }

    fn finished(case: &str, outcome: Outcome) -> RunEvent {
        RunEvent::CaseFinished(Box::new(CaseResult::new(
            case.into(),
            "v".into(),
            PathBuf::from(format!("{case}.toml")),
            outcome,
        )))
    }

    fn start(case: &str) -> RunEvent {
        RunEvent::CaseStarted {
            case: case.into(),
            variant: "v".into(),
        }
    }

    fn output(color: bool, events: &[RunEvent]) -> String {
        let mut buf = Vec::new();
        {
            let mut r = ProgressReporter::new(&mut buf).with_color(color);
            for e in events {
                r.on_event(e).expect("written");
            }
        }
        String::from_utf8(buf).expect("utf-8")
    }

    #[test]
    fn finish_lines_count_k_of_n_and_start_lines_appear_only_with_several_jobs() {
        let events = [
            started(12, 3),
            start("a"),
            start("b"),
            finished("b", Outcome::Pass),
            finished("a", Outcome::Fail),
        ];
        let text = output(false, &events);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("START a @ v"), "{text}");
        // The labels stand in one column.
        assert_eq!(lines[1].find("START"), lines[3].find("PASS"), "{text}");
        assert!(lines[2].contains("START b @ v"), "{text}");
        assert!(lines[3].contains("[ 1/12] PASS  b @ v"), "{text}");
        assert!(lines[4].contains("[ 2/12] FAIL  a @ v"), "{text}");
        assert!(!text.contains('\x1b'), "no colour asked: {text:?}");

        let one_job = output(
            false,
            &[started(2, 1), start("a"), finished("a", Outcome::Pass)],
        );
        assert!(!one_job.contains("START"), "{one_job}");
        assert!(one_job.contains("[1/2] PASS  a @ v"), "{one_job}");
    }

    #[test]
    fn a_slow_case_gets_a_line_with_how_long_it_has_run() {
        let text = output(
            false,
            &[
                started(1, 1),
                start("a"),
                RunEvent::CaseSlow {
                    case: "a".into(),
                    variant: "v".into(),
                    elapsed: Duration::from_secs(30),
                },
            ],
        );
        assert!(text.contains("SLOW  a @ v (running for 30s)"), "{text}");
    }

    #[test]
    fn colour_wraps_the_outcome_label_only_when_asked() {
        let text = output(true, &[started(1, 1), finished("a", Outcome::Fail)]);
        let red = anstyle::Style::new()
            .fg_color(Some(anstyle::AnsiColor::Red.into()))
            .bold();
        assert!(
            text.contains(&format!("{red}FAIL{red:#}  a @ v")),
            "{text:?}"
        );
        let table_and_summary = text.split_once("a @ v").expect("finish line").1;
        assert!(
            !table_and_summary.contains('\x1b'),
            "only the finish line is coloured: {text:?}"
        );
    }
}
