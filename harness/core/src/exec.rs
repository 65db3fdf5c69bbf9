//! The step executor: drives the consoles of one case's boards through its steps.
//!
//! A command step: note the buffer length, write `prefix + command`, wait for the echo, then for
//! the first result line (`Done` / `Error N: Name`) after it; the lines in between are the
//! command's output. The echo through the result line are claimed. An expect step searches every
//! unclaimed line of its node, including lines that arrived before the step started.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::case::{Action, Capture, Location, Pattern, ResultExpectation, Step, VarRef};
use crate::console::buffer::Line;
use crate::console::{BoardFault, Console, Shared};
use crate::profile::is_callback_line;
use crate::step_clock::ClockStalled;

/// How many lines a failure quotes.
const QUOTE_LINES: usize = 20;

/// A step did not get what it expected (a test failure, possibly a firmware crash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// Index into the case's steps; `None` for a failure while the board booted.
    pub step_index: Option<usize>,
    /// `file:line:col` of the step (with include chain).
    pub location: String,
    pub node: String,
    /// What the step does (`client: send \`coaps connect ...\``).
    pub step: String,
    /// What was expected, in words.
    pub expected: String,
    /// What arrived instead (the step's lines on its node).
    pub got: Vec<String>,
    /// Set when the board crashed or rebooted.
    pub crash: Option<String>,
    /// Every line the node printed while the step ran (for xfail symptoms).
    #[serde(skip)]
    pub window: Vec<String>,
}

pub use crate::infra::{InfraError, InfraFailure};

#[derive(Debug, Clone)]
pub enum StepError {
    Failed(Box<Failure>),
    Infra(InfraFailure),
}

/// Where the time of one command went (for the benchmark and the JSON results).
#[derive(Debug, Clone, Copy)]
pub struct StepTiming {
    pub started: Instant,
    /// The command was fully written to the port.
    pub written: Option<Instant>,
    /// The result line arrived (read from the port).
    pub result_line: Option<Instant>,
    pub finished: Instant,
    /// How long the step took in wall-clock time (the instants above are on the case's clock).
    pub wall: Duration,
}

/// Runs steps against a set of named consoles.
pub struct Executor {
    consoles: BTreeMap<String, Arc<Console>>,
    vars: BTreeMap<VarRef, String>,
}

struct CommandRun {
    output: Vec<String>,
    window: Vec<String>,
    written: Instant,
    result_line: Option<Instant>,
}

struct StepCtx<'a> {
    index: usize,
    step: &'a Step,
    location: &'a Location,
}

impl Executor {
    pub fn new(consoles: BTreeMap<String, Arc<Console>>) -> Executor {
        Executor {
            consoles,
            vars: BTreeMap::new(),
        }
    }

    pub fn vars(&self) -> &BTreeMap<VarRef, String> {
        &self.vars
    }

    /// The last lines of every node, for failure reports.
    pub fn tails(&self, n: usize) -> BTreeMap<String, Vec<String>> {
        self.consoles
            .iter()
            .map(|(name, c)| (name.clone(), c.shared().lock().lines.tail(n)))
            .collect()
    }

    /// Run one step; it ends early, as an infrastructure error, when any other board of the case
    /// is lost meanwhile (its own board's faults the step sees itself).
    pub async fn run_step(&mut self, index: usize, step: &Step) -> Result<StepTiming, StepError> {
        let others: Vec<Arc<Shared>> = self
            .consoles
            .iter()
            .filter(|(name, _)| **name != step.node)
            .map(|(_, c)| c.shared().clone())
            .collect();
        tokio::select! {
            result = self.run_step_on_its_board(index, step) => result,
            (board, reason) = first_lost_board(others) => Err(StepError::Infra(InfraFailure::new(
                &board,
                InfraError::Lost(format!("board {board} was lost during this step on {}: {reason}", step.node)),
            ).at_step(step.summary()))),
        }
    }

    async fn run_step_on_its_board(
        &mut self,
        index: usize,
        step: &Step,
    ) -> Result<StepTiming, StepError> {
        let ctx = StepCtx {
            index,
            step,
            location: &step.location,
        };
        let console = self.consoles.get(&step.node).cloned().ok_or_else(|| {
            StepError::Infra(
                InfraFailure::new(&step.node, InfraError::acquire("no board for this node"))
                    .at_step(step.summary()),
            )
        })?;
        let clock = console.clock().clone();
        let started = clock.now();
        let wall_started = Instant::now();
        console.note(&format!(
            "step {} ({}): {}",
            index + 1,
            step.location.short(),
            step.summary()
        ));
        let mut timing = StepTiming {
            started,
            written: None,
            result_line: None,
            finished: started,
            wall: Duration::ZERO,
        };
        match &step.action {
            Action::Command {
                command,
                result,
                output,
                timeout,
            } => {
                let text = self.render(&ctx, command)?;
                let run = self
                    .command(&ctx, &console, &text, result, *timeout)
                    .await?;
                timing.written = Some(run.written);
                timing.result_line = run.result_line;
                self.check_output(&ctx, output, &run)?;
                self.check_absent(&ctx, &run.window, &run.window)?;
                self.capture(&ctx, &step.captures, &run.output, &run.window)?;
            }
            Action::Expect { pattern, timeout } => {
                let line = self.expect(&ctx, &console, pattern, *timeout).await?;
                self.capture(
                    &ctx,
                    &step.captures,
                    std::slice::from_ref(&line),
                    std::slice::from_ref(&line),
                )?;
            }
            Action::Poll {
                command,
                until,
                interval,
                deadline,
                attempt_timeout,
            } => {
                let text = self.render(&ctx, command)?;
                let until_re = self.resolve(&ctx, until)?;
                let end = deadline_after(started, *deadline);
                loop {
                    let run = self
                        .command(
                            &ctx,
                            &console,
                            &text,
                            &ResultExpectation::Done,
                            *attempt_timeout,
                        )
                        .await?;
                    self.check_absent(&ctx, &run.window, &run.window)?;
                    if let Some(line) = run.output.iter().find(|l| until_re.is_match(l)) {
                        let line = line.clone();
                        timing.written = Some(run.written);
                        timing.result_line = run.result_line;
                        self.capture(
                            &ctx,
                            &step.captures,
                            std::slice::from_ref(&line),
                            &run.window,
                        )?;
                        break;
                    }
                    let next = deadline_after(clock.now(), *interval);
                    if next > end {
                        return Err(self.fail(
                            &ctx,
                            format!(
                                "an output line of `{text}` matching /{until}/ within {}",
                                humantime::format_duration(*deadline)
                            ),
                            run.output.clone(),
                            run.window,
                        ));
                    }
                    clock
                        .sleep_until(next)
                        .await
                        .map_err(|e| self.stalled(&ctx, &console, e))?;
                }
            }
            Action::Absent { window } => {
                self.absent_window(&ctx, &console, *window).await?;
            }
        }
        timing.finished = clock.now();
        timing.wall = wall_started.elapsed();
        Ok(timing)
    }

    fn render(&self, ctx: &StepCtx<'_>, t: &crate::case::Template) -> Result<String, StepError> {
        t.render(
            |v| self.vars.get(v).cloned(),
            crate::case::template::no_escape,
        )
        .map_err(|v| self.fail(ctx, format!("variable {v} to have a value"), vec![], vec![]))
    }

    fn resolve(&self, ctx: &StepCtx<'_>, p: &Pattern) -> Result<Regex, StepError> {
        p.resolve(|v| self.vars.get(v).cloned())
            .map_err(|e| self.fail(ctx, format!("a usable pattern /{p}/: {e}"), vec![], vec![]))
    }

    /// The step's `absent` patterns, resolved, each with its source text for the failure message.
    fn resolve_absent(&self, ctx: &StepCtx<'_>) -> Result<Vec<(Regex, String)>, StepError> {
        ctx.step
            .absent
            .iter()
            .map(|p| self.resolve(ctx, p).map(|r| (r, p.to_string())))
            .collect()
    }

    fn fail(
        &self,
        ctx: &StepCtx<'_>,
        expected: String,
        got: Vec<String>,
        window: Vec<String>,
    ) -> StepError {
        StepError::Failed(Box::new(Failure {
            step_index: Some(ctx.index),
            location: ctx.location.to_string(),
            node: ctx.step.node.clone(),
            step: ctx.step.summary(),
            expected,
            got: last(got, QUOTE_LINES),
            crash: None,
            window,
        }))
    }

    /// The case clock could not move: the boards stopped answering.
    fn stalled(&self, ctx: &StepCtx<'_>, console: &Console, e: ClockStalled) -> StepError {
        StepError::Infra(InfraFailure::new(console.name(), e).at_step(ctx.step.summary()))
    }

    /// A fault seen on the board: a crash fails the step, a vanished board is an infra error.
    fn fault(
        &self,
        ctx: &StepCtx<'_>,
        console: &Console,
        fault: &BoardFault,
        expected: &str,
        mark: usize,
    ) -> StepError {
        let st = console.shared().lock();
        match fault {
            BoardFault::Gone { reason } => StepError::Infra(
                InfraFailure::new(console.name(), InfraError::Lost(reason.clone()))
                    .at_step(ctx.step.summary()),
            ),
            BoardFault::Crashed { reason, line } => {
                let from = line.unwrap_or(mark).min(mark);
                let lines = texts(st.lines.since(from));
                StepError::Failed(Box::new(Failure {
                    step_index: Some(ctx.index),
                    location: ctx.location.to_string(),
                    node: console.name().to_string(),
                    step: ctx.step.summary(),
                    expected: expected.to_string(),
                    got: last(lines.clone(), QUOTE_LINES),
                    crash: Some(format!("board {} crashed: {reason}", console.name())),
                    window: lines,
                }))
            }
        }
    }

    async fn command(
        &self,
        ctx: &StepCtx<'_>,
        console: &Console,
        command: &str,
        result: &ResultExpectation,
        timeout: Duration,
    ) -> Result<CommandRun, StepError> {
        let line = console.shell().command_line(command);
        let echo = console.shell().echo;
        let mut changed = console.shared().subscribe();
        let mark = console.shared().lock().lines.len();
        console.send_line(&line).await.map_err(|e| {
            StepError::Infra(
                InfraFailure::new(console.name(), InfraError::console(e))
                    .at_step(ctx.step.summary()),
            )
        })?;
        let clock = console.clock();
        let written = clock.now();
        clock
            .settle()
            .await
            .map_err(|e| self.stalled(ctx, console, e))?;
        let deadline = deadline_after(written, timeout);
        loop {
            let seen = clock.observe();
            {
                let mut st = console.shared().lock();
                let expected_desc = || {
                    if *result == ResultExpectation::NoResult {
                        format!("echo of `{line}`")
                    } else {
                        format!("`{line}` to end with {result}")
                    }
                };
                if let Some(fault) = st.fault.clone() {
                    drop(st);
                    return Err(self.fault(ctx, console, &fault, &expected_desc(), mark));
                }
                let echo_at = if echo {
                    st.lines.find_unclaimed(mark, |l| is_echo(&l.text, &line))
                } else {
                    Some(mark.saturating_sub(1))
                };
                if let Some(echo_at) = echo_at {
                    let first_out = if echo { echo_at + 1 } else { mark };
                    let end = if *result == ResultExpectation::NoResult {
                        Some(echo_at)
                    } else {
                        st.lines
                            .find(first_out, |l| ResultExpectation::is_result_line(&l.text))
                    };
                    if let Some(end) = end {
                        let window = texts(
                            st.lines
                                .since(mark)
                                .get(..=end.saturating_sub(mark))
                                .unwrap_or(&[]),
                        );
                        // A callback line that arrived inside the command's window is neither
                        // its output nor claimed by it: an `expect` step may be waiting for it.
                        let mut output = Vec::new();
                        for i in echo_at.max(mark).min(end)..=end {
                            let Some(l) = st.lines.get(i) else {
                                continue;
                            };
                            if i != end && is_callback_line(&l.text) {
                                continue;
                            }
                            if i >= first_out && i < end {
                                output.push(l.text.clone());
                            }
                            st.lines.claim(i);
                        }
                        let result_line = st.lines.get(end).map(|l| (l.text.clone(), l.at));
                        drop(st);
                        if *result != ResultExpectation::NoResult {
                            let (text, at) = result_line.unwrap_or_default_line();
                            if !result.matches(&text) {
                                return Err(self.fail(
                                    ctx,
                                    format!("`{line}` to end with {result}"),
                                    window.clone(),
                                    window,
                                ));
                            }
                            return Ok(CommandRun {
                                output,
                                window,
                                written,
                                result_line: Some(at),
                            });
                        }
                        return Ok(CommandRun {
                            output,
                            window,
                            written,
                            result_line: None,
                        });
                    }
                }
                if clock.now() >= deadline {
                    let window = texts(st.lines.since(mark));
                    let expected = if echo && echo_at.is_none() {
                        format!(
                            "echo of `{line}` within {}",
                            humantime::format_duration(timeout)
                        )
                    } else {
                        format!(
                            "`{line}` to end with {result} within {}",
                            humantime::format_duration(timeout)
                        )
                    };
                    let got = if window.is_empty() {
                        vec!["(nothing)".to_string()]
                    } else {
                        window.clone()
                    };
                    drop(st);
                    return Err(self.fail(ctx, expected, got, window));
                }
            }
            clock
                .wait(seen, &mut changed, deadline)
                .await
                .map_err(|e| self.stalled(ctx, console, e))?;
        }
    }

    async fn expect(
        &self,
        ctx: &StepCtx<'_>,
        console: &Console,
        pattern: &Pattern,
        timeout: Duration,
    ) -> Result<String, StepError> {
        let re = self.resolve(ctx, pattern)?;
        let absent = self.resolve_absent(ctx)?;
        let mut changed = console.shared().subscribe();
        let start_mark = console.shared().lock().lines.len();
        let clock = console.clock();
        clock
            .settle()
            .await
            .map_err(|e| self.stalled(ctx, console, e))?;
        let deadline = deadline_after(clock.now(), timeout);
        loop {
            let seen = clock.observe();
            {
                let mut st = console.shared().lock();
                let cursor = st.lines.cursor();
                let found = st.lines.find_unclaimed(0, |l| re.is_match(&l.text));
                // Lines that must not come before the awaited one (or before the timeout).
                let upto = found.unwrap_or(st.lines.len());
                let scan = st
                    .lines
                    .since(cursor)
                    .get(..upto.saturating_sub(cursor))
                    .unwrap_or(&[]);
                if let Some((bad, src)) = first_absent(&absent, scan) {
                    let window = texts(st.lines.since(start_mark.min(cursor)));
                    drop(st);
                    return Err(self.fail(
                        ctx,
                        format!("no line matching /{src}/ before /{pattern}/"),
                        vec![bad],
                        window,
                    ));
                }
                if let Some(i) = found {
                    let text = st.lines.get(i).map(|l| l.text.clone()).unwrap_or_default();
                    st.lines.claim(i);
                    return Ok(text);
                }
                if let Some(fault) = st.fault.clone() {
                    drop(st);
                    return Err(self.fault(
                        ctx,
                        console,
                        &fault,
                        &format!("a line matching /{pattern}/"),
                        start_mark,
                    ));
                }
                if clock.now() >= deadline {
                    let window = texts(st.lines.since(start_mark.min(cursor)));
                    let unclaimed = unclaimed_texts(st.lines.since(cursor));
                    drop(st);
                    let got = if unclaimed.is_empty() {
                        vec!["(no unclaimed lines)".to_string()]
                    } else {
                        unclaimed
                    };
                    return Err(self.fail(
                        ctx,
                        format!(
                            "a line matching /{pattern}/ within {}",
                            humantime::format_duration(timeout)
                        ),
                        got,
                        window,
                    ));
                }
            }
            clock
                .wait(seen, &mut changed, deadline)
                .await
                .map_err(|e| self.stalled(ctx, console, e))?;
        }
    }

    async fn absent_window(
        &self,
        ctx: &StepCtx<'_>,
        console: &Console,
        window: Duration,
    ) -> Result<(), StepError> {
        let absent = self.resolve_absent(ctx)?;
        let mut changed = console.shared().subscribe();
        let start_mark = console.shared().lock().lines.cursor();
        let clock = console.clock();
        clock
            .settle()
            .await
            .map_err(|e| self.stalled(ctx, console, e))?;
        let deadline = deadline_after(clock.now(), window);
        loop {
            let seen = clock.observe();
            {
                let st = console.shared().lock();
                let lines = st.lines.since(start_mark);
                if let Some((bad, src)) = first_absent(&absent, lines) {
                    let lines = unclaimed_texts(lines);
                    drop(st);
                    return Err(self.fail(
                        ctx,
                        format!(
                            "no line matching /{src}/ for {}",
                            humantime::format_duration(window)
                        ),
                        vec![bad],
                        lines,
                    ));
                }
                if let Some(fault) = st.fault.clone() {
                    drop(st);
                    return Err(self.fault(ctx, console, &fault, "a quiet board", start_mark));
                }
                if clock.now() >= deadline {
                    return Ok(());
                }
            }
            clock
                .wait(seen, &mut changed, deadline)
                .await
                .map_err(|e| self.stalled(ctx, console, e))?;
        }
    }

    fn check_output(
        &self,
        ctx: &StepCtx<'_>,
        output: &[Pattern],
        run: &CommandRun,
    ) -> Result<(), StepError> {
        let mut next = 0;
        for p in output {
            let re = self.resolve(ctx, p)?;
            match run.output.iter().skip(next).position(|l| re.is_match(l)) {
                Some(i) => next += i + 1,
                None => {
                    let got = if run.output.is_empty() {
                        vec!["(no output lines)".to_string()]
                    } else {
                        run.output.clone()
                    };
                    return Err(self.fail(
                        ctx,
                        format!("an output line matching /{p}/ (in order)"),
                        got,
                        run.window.clone(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_absent(
        &self,
        ctx: &StepCtx<'_>,
        lines: &[String],
        window: &[String],
    ) -> Result<(), StepError> {
        for p in &ctx.step.absent {
            let re = self.resolve(ctx, p)?;
            if let Some(bad) = lines.iter().find(|l| re.is_match(l)) {
                return Err(self.fail(
                    ctx,
                    format!("no line matching /{p}/"),
                    vec![bad.clone()],
                    window.to_vec(),
                ));
            }
        }
        Ok(())
    }

    fn capture(
        &mut self,
        ctx: &StepCtx<'_>,
        captures: &[Capture],
        lines: &[String],
        window: &[String],
    ) -> Result<(), StepError> {
        for c in captures {
            let re = self.resolve(ctx, &c.pattern)?;
            let value = lines.iter().find_map(|l| {
                re.captures(l).and_then(|caps| {
                    caps.get(1)
                        .or_else(|| caps.get(0))
                        .map(|m| m.as_str().to_string())
                })
            });
            match value {
                Some(v) => {
                    self.vars.insert(
                        VarRef {
                            node: ctx.step.node.clone(),
                            name: c.name.clone(),
                        },
                        v,
                    );
                }
                None => {
                    let got = if lines.is_empty() {
                        vec!["(no lines)".to_string()]
                    } else {
                        lines.to_vec()
                    };
                    return Err(self.fail(
                        ctx,
                        format!(
                            "a line to capture ${{{}.{}}} from /{}/",
                            ctx.step.node, c.name, c.pattern
                        ),
                        got,
                        window.to_vec(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// How often the boards a step does not drive are checked for loss: a lost board ends the case
/// well within a second.
const LOST_BOARD_POLL: Duration = Duration::from_millis(100);

/// The first of `boards` whose port or process went away (its name and why); pending while none
/// is. Polled: the boards' change signals fire on every console line, and a step waits on one
/// board only.
async fn first_lost_board(boards: Vec<Arc<Shared>>) -> (String, String) {
    let mut tick = tokio::time::interval(LOST_BOARD_POLL);
    loop {
        tick.tick().await;
        for board in &boards {
            if let Some(BoardFault::Gone { reason }) = &board.lock().fault {
                return (board.name.clone(), reason.clone());
            }
        }
    }
}

trait DefaultLine {
    fn unwrap_or_default_line(self) -> (String, Instant);
}

impl DefaultLine for Option<(String, Instant)> {
    fn unwrap_or_default_line(self) -> (String, Instant) {
        self.unwrap_or_else(|| (String::new(), Instant::now()))
    }
}

/// The first unclaimed line an `absent` pattern matches, and that pattern's source. Reads the
/// buffer in place: it runs on every console change while a step waits.
fn first_absent(absent: &[(Regex, String)], lines: &[Line]) -> Option<(String, String)> {
    lines.iter().filter(|l| !l.claimed).find_map(|l| {
        absent
            .iter()
            .find(|(re, _)| re.is_match(&l.text))
            .map(|(_, src)| (l.text.clone(), src.clone()))
    })
}

/// The shell echoes the typed line, possibly after a prompt the decoder could not strip (a
/// redraw): accept any line ending with the command.
fn is_echo(text: &str, line: &str) -> bool {
    let line = line.trim_end();
    text == line || text.ends_with(line)
}

fn texts(lines: &[Line]) -> Vec<String> {
    lines.iter().map(|l| l.text.clone()).collect()
}

fn unclaimed_texts(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.claimed)
        .map(|l| l.text.clone())
        .collect()
}

fn last(mut v: Vec<String>, n: usize) -> Vec<String> {
    if v.len() > n {
        v.drain(..v.len() - n);
    }
    v
}
/// Longest wait the executor arms: a case's duration beyond it is as good as "never" and would
/// overflow the clock (`Instant + Duration` panics past what the platform represents).
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `start + wait`, with waits longer than `LONGEST_WAIT` cut to it.
pub fn deadline_after(start: Instant, wait: Duration) -> Instant {
    start.checked_add(wait.min(LONGEST_WAIT)).unwrap_or(start)
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn waits_the_clock_cannot_hold_are_cut_not_a_panic() {
        let now = Instant::now();
        for secs in [u64::MAX, i64::MAX as u64] {
            let d = deadline_after(now, Duration::from_secs(secs));
            assert_eq!(d.duration_since(now), LONGEST_WAIT);
        }
        assert_eq!(
            deadline_after(now, Duration::from_secs(3)).duration_since(now),
            Duration::from_secs(3)
        );
    }
}
