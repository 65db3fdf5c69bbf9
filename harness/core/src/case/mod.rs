//! Test cases: the validated form of `testcases/*.toml` (see `testcases/README.md` for the format).
//!
//! Loading goes raw serde structs (`load`'s private `Raw*` types, which mirror the file) ->
//! validated domain types here, so every later stage works with nodes that exist, regexes that
//! compile and variables that are captured before they are read.

mod air;
pub mod air_spec;
pub mod faults;
mod load;
mod names;
pub mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;

pub use load::{LoadOptions, MAX_DURATION, MAX_FILE_SIZE, load_case};
pub use template::{Template, VarRef};

/// Errors loading a case file.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Case and fragment files are regular files: a directory, FIFO or device is refused before
    /// anything is read from it.
    #[error("{}: is {kind}, not a case file (case and fragment files are regular files)", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    /// Larger than [`load::MAX_FILE_SIZE`].
    #[error("{}: {size} bytes, larger than the limit of {limit} bytes for a case or fragment file", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    /// The file is not valid TOML or does not have the case's shape.
    #[error("{location}: {message}")]
    Syntax { location: Location, message: String },
    /// The file parses but says something impossible (unknown node, undefined variable, ...).
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

/// One validation problem, at a position in a case or fragment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// A position in a case or fragment file (1-based line and column), with the include chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub included_from: Option<Arc<Location>>,
}

impl Location {
    /// `file:line` (without column or include chain), for compact reports.
    pub fn short(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)?;
        if let Some(parent) = &self.included_from {
            write!(f, " (included from {parent})")?;
        }
        Ok(())
    }
}

/// A validated test case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Name = file stem (cases are named by what they reproduce).
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    /// Node names in declaration order; the run gives each a board.
    pub nodes: Vec<String>,
    /// Steps with fragments expanded.
    pub steps: Vec<Step>,
    /// Per-variant expectations (variants not named here are expected to pass).
    pub variants: BTreeMap<String, VariantExpectation>,
    /// Injected air and board faults (`[faults]`).
    pub faults: faults::CaseFaults,
    /// The sniffer and the handshake snapshots (`[sniffer]`, `[[snapshot]]`).
    pub air: air_spec::AirSpec,
}

impl Case {
    pub fn load(path: &Path, options: &LoadOptions) -> Result<Case, CaseError> {
        load_case(path, options)
    }

    /// What this case expects on `variant`.
    pub fn expectation(&self, variant: &str) -> Option<&VariantExpectation> {
        self.variants.get(variant)
    }
}

/// One step on one node.
#[derive(Debug, Clone)]
pub struct Step {
    /// Optional name, used by `symptom.step` and in reports.
    pub id: Option<String>,
    pub location: Location,
    pub node: String,
    pub action: Action,
    /// Lines that must not appear while the step runs.
    pub absent: Vec<Pattern>,
    /// Values to capture from the step's lines into `${node.name}`.
    pub captures: Vec<Capture>,
}

impl Step {
    /// A one-line summary: `client: send "coaps connect ..."`.
    pub fn summary(&self) -> String {
        match &self.action {
            Action::Command { command, .. } => format!("{}: send `{}`", self.node, command),
            Action::Expect { pattern, .. } => format!("{}: expect /{}/", self.node, pattern),
            Action::Poll { command, until, .. } => {
                format!("{}: poll `{}` until /{}/", self.node, command, until)
            }
            Action::Absent { window } => format!(
                "{}: absent for {}",
                self.node,
                humantime::format_duration(*window)
            ),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a CLI command (without the shell prefix) and check its result and output lines.
    Command {
        command: Template,
        result: ResultExpectation,
        /// Regexes that must match output lines between the echo and the result, in this order.
        output: Vec<Pattern>,
        timeout: Duration,
    },
    /// Wait for a line (asynchronous output, possibly already arrived) matching `pattern`.
    Expect { pattern: Pattern, timeout: Duration },
    /// Repeat `command` every `interval` until one of its output lines matches `until`.
    Poll {
        command: Template,
        until: Pattern,
        interval: Duration,
        deadline: Duration,
        /// Timeout of each attempt's command.
        attempt_timeout: Duration,
    },
    /// Watch the node for `window`: none of the step's `absent` patterns may appear.
    Absent { window: Duration },
}

/// The result line a command must end with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultExpectation {
    /// `Done`.
    Done,
    /// `Error N: Name`, matched on code, name or both.
    Error {
        code: Option<u8>,
        name: Option<String>,
    },
    /// Either `Done` or any `Error ...` line.
    Any,
    /// No result line: the step ends at the echo (commands that print their result later).
    NoResult,
}

impl ResultExpectation {
    /// Whether `line` is a CLI result line at all (`Done` / `Error N: Name`).
    pub fn is_result_line(line: &str) -> bool {
        line == "Done" || parse_error_line(line).is_some()
    }

    /// Whether the result line `line` satisfies this expectation.
    pub fn matches(&self, line: &str) -> bool {
        match self {
            ResultExpectation::Done => line == "Done",
            ResultExpectation::Any => ResultExpectation::is_result_line(line),
            ResultExpectation::NoResult => false,
            ResultExpectation::Error { code, name } => match parse_error_line(line) {
                Some((c, n)) => {
                    code.is_none_or(|want| want == c)
                        && name.as_deref().is_none_or(|want| want == n)
                }
                None => false,
            },
        }
    }
}

impl fmt::Display for ResultExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResultExpectation::Done => f.write_str("Done"),
            ResultExpectation::Any => f.write_str("Done or Error"),
            ResultExpectation::NoResult => f.write_str("no result line"),
            ResultExpectation::Error {
                code: Some(c),
                name: Some(n),
            } => write!(f, "Error {c}: {n}"),
            ResultExpectation::Error {
                code: Some(c),
                name: None,
            } => write!(f, "Error {c}: <any name>"),
            ResultExpectation::Error {
                code: None,
                name: Some(n),
            } => write!(f, "Error <any code>: {n}"),
            ResultExpectation::Error {
                code: None,
                name: None,
            } => f.write_str("Error"),
        }
    }
}

/// `Error 7: InvalidArgs` -> `(7, "InvalidArgs")`.
pub fn parse_error_line(line: &str) -> Option<(u8, &str)> {
    let rest = line.strip_prefix("Error ")?;
    let (code, name) = rest.split_once(": ")?;
    let code = code.parse().ok()?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some((code, name))
}

/// A regular expression that may contain `${node.var}` references (values are regex-escaped).
/// Matching is unanchored (a search), as in pexpect and Twister; write `^...$` for whole lines.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub template: Template,
    /// Compiled once at load time when the pattern has no variables.
    compiled: Option<Regex>,
}

impl Pattern {
    pub(crate) fn new(template: Template) -> Result<Pattern, regex::Error> {
        let probe = Regex::new(&template.with_placeholders("x"))?;
        let compiled = if template.vars().next().is_none() {
            Some(probe)
        } else {
            None
        };
        Ok(Pattern { template, compiled })
    }

    /// The regex with variables filled in.
    pub fn resolve(
        &self,
        lookup: impl Fn(&VarRef) -> Option<String>,
    ) -> Result<Regex, PatternError> {
        if let Some(re) = &self.compiled {
            return Ok(re.clone());
        }
        let text = self
            .template
            .render(lookup, regex::escape)
            .map_err(PatternError::Undefined)?;
        Regex::new(&text).map_err(|e| PatternError::Regex(e.to_string()))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.template.fmt(f)
    }
}

/// A pattern that cannot be used at run time.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PatternError {
    #[error("variable {0} has no value")]
    Undefined(VarRef),
    #[error("regex does not compile after substitution: {0}")]
    Regex(String),
}

/// `capture = { mleid = '^(fd[0-9a-f:]+)$' }`: group 1 (or the whole match) becomes `${node.mleid}`.
#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub pattern: Pattern,
}

/// What a case expects on one firmware variant.
#[derive(Debug, Clone)]
pub enum VariantExpectation {
    /// A known failure. With a symptom, the case must fail at `step` with `line` seen on the step's node.
    Xfail {
        reason: String,
        symptom: Option<Symptom>,
    },
    /// Not run on this variant.
    Skip { reason: String },
}

/// The exact way a known failure must show.
#[derive(Debug, Clone)]
pub struct Symptom {
    /// Index into [`Case::steps`].
    pub step_index: usize,
    pub step_id: String,
    /// A line the node printed while the step ran.
    pub line: Option<Pattern>,
    /// The runner's crash report of the step's board (e.g. `board process exited (exit
    /// status: 1)`): firmware that fails by ending its process prints nothing to match.
    pub crash: Option<Pattern>,
}
