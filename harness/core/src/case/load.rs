//! Case and fragment files: raw serde structs mirroring the TOML, then validation into domain types.
//!
//! Every string keeps its span (`toml::Spanned`) so a problem points at `file:line:column`.
//! Validation collects every problem of a file instead of stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::names::is_name;
use super::template::{self, Template, VarRef};
use super::{
    Action, Capture, Case, CaseError, Location, Pattern, Problem, ResultExpectation, Step, Symptom,
    VariantExpectation,
};

/// Built-in defaults, overridable per case in `[defaults]`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
pub const DEFAULT_POLL_DEADLINE: Duration = Duration::from_secs(30);
/// Fragments including fragments deeper than this are taken as an include cycle.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Largest case or fragment file read (1 MiB). The biggest real case is a few kB; a larger file is
/// a mistake (a log, an image, `/dev/zero`) and reading it whole would cost memory for nothing.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// Longest duration a case may give (24 h). Longer ones are mistakes, and the runner adds them to
/// the clock: `u64::MAX` seconds overflows an `Instant`.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// What loading checks against besides the file itself.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Names of the firmware variants that exist (`firmware/variants/*.toml`); `None` skips the check.
    pub known_variants: Option<BTreeSet<String>>,
}

// -- Raw forms: exactly what the files say --

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    #[serde(default)]
    description: String,
    nodes: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    variants: BTreeMap<Spanned<String>, Spanned<RawVariant>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    faults: super::faults::RawFaults,
    /// `[sniffer]` and `[[snapshot]]`: checked here, carried by the case as its `AirSpec`.
    #[serde(default)]
    sniffer: Option<Spanned<super::air::RawSniffer>>,
    #[serde(default)]
    snapshot: Vec<Spanned<super::air::RawSnapshot>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    deadline: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    xfail: Option<String>,
    skip: Option<String>,
    symptom: Option<RawSymptom>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSymptom {
    step: Spanned<String>,
    /// A line the node printed during the step.
    line: Option<Spanned<String>>,
    /// The board's crash as the runner reports it (a reboot, or the board process ending with
    /// its exit status): for firmware whose failure is that it is gone.
    crash: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFragment {
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    params: BTreeMap<String, RawParam>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[allow(dead_code)]
    description: Option<String>,
    default: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    send: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    poll: Option<Spanned<String>>,
    include: Option<Spanned<String>>,
    with: Option<BTreeMap<String, Spanned<String>>>,
    result: Option<Spanned<String>>,
    output: Option<Vec<Spanned<String>>>,
    absent: Option<Vec<Spanned<String>>>,
    capture: Option<BTreeMap<String, Spanned<String>>>,
    until: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    deadline: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
}

impl RawStep {
    /// Every string field, for parameter substitution.
    fn strings_mut(&mut self) -> Vec<&mut Spanned<String>> {
        let mut out: Vec<&mut Spanned<String>> = Vec::new();
        for s in [
            &mut self.id,
            &mut self.node,
            &mut self.send,
            &mut self.expect,
            &mut self.poll,
            &mut self.include,
            &mut self.result,
            &mut self.until,
            &mut self.interval,
            &mut self.deadline,
            &mut self.timeout,
            &mut self.window,
        ]
        .into_iter()
        .flatten()
        {
            out.push(s);
        }
        for list in [&mut self.output, &mut self.absent].into_iter().flatten() {
            out.extend(list.iter_mut());
        }
        for map in [&mut self.with, &mut self.capture].into_iter().flatten() {
            out.extend(map.values_mut());
        }
        out
    }
}

// -- Source positions --

/// A file being loaded: its text (to turn byte spans into line:column) and where it was included from.
struct Source {
    path: PathBuf,
    text: String,
    /// Byte offset of the start of each line, so a position is found by binary search: a case
    /// with thousands of steps asks for thousands of positions.
    line_starts: Vec<usize>,
    included_from: Option<Arc<Location>>,
}

impl Source {
    fn new(path: PathBuf, text: String, included_from: Option<Arc<Location>>) -> Source {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            path,
            text,
            line_starts,
            included_from,
        }
    }

    fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        // The last line starting at or before `offset` (line_starts[0] == 0, so there is one).
        let index = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let line_start = self.line_starts[index];
        // An offset inside a multi-byte character points at that character.
        let column = self
            .text
            .get(line_start..)
            .unwrap_or("")
            .char_indices()
            .take_while(|(i, c)| line_start + i + c.len_utf8() <= offset)
            .count()
            + 1;
        Location {
            file: self.path.clone(),
            line: index + 1,
            column,
            included_from: self.included_from.clone(),
        }
    }

    fn at<T>(&self, s: &Spanned<T>) -> Location {
        self.location(s.span().start)
    }

    fn problem<T>(&self, s: &Spanned<T>, message: impl Into<String>) -> Problem {
        Problem {
            location: self.at(s),
            message: message.into(),
        }
    }
}

/// Reads a case or fragment file: only a regular file of at most [`MAX_FILE_SIZE`] bytes, in
/// UTF-8 (a binary file gets its error at the first byte that is not).
fn read_source(path: &Path, included_from: Option<Arc<Location>>) -> Result<Source, CaseError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    let read_error = |source| CaseError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking, so that opening a FIFO with no writer returns at once instead of waiting for
    // one; it is then rejected as not a regular file. Regular files ignore the flag.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(CaseError::NotAFile {
            path: path.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        });
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(CaseError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit: MAX_FILE_SIZE,
        });
    }
    // The size can change between the check and the read: never read more than the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(CaseError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit: MAX_FILE_SIZE,
        });
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(path.to_path_buf(), text, included_from)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            // Only the valid prefix is kept: enough to count lines and columns up to the bad byte.
            let prefix = String::from_utf8(bytes).unwrap_or_default();
            let src = Source::new(path.to_path_buf(), prefix, included_from);
            Err(CaseError::Syntax {
                location: src.location(valid),
                message: "not a text file: invalid UTF-8 here (case files are UTF-8 TOML)".into(),
            })
        }
    }
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Unknown keys reported per file at most; past this the file is not a case file at all.
const MAX_UNKNOWN_KEYS: usize = 100;

fn toml_problem(src: &Source, e: &toml::de::Error) -> Problem {
    Problem {
        location: src.location(e.span().map_or(0, |s| s.start)),
        message: e.message().trim().to_string(),
    }
}

/// Parses a case or fragment file into its raw form. Every unknown key is reported, not only the
/// first: serde stops at the first, so each is taken out of the parsed document and the
/// document read again (a bounded number of times).
fn parse_toml<T: serde::de::DeserializeOwned>(src: &Source) -> Result<T, Vec<Problem>> {
    let mut root = toml::de::DeTable::parse(&src.text).map_err(|e| vec![toml_problem(src, &e)])?;
    let mut unknown = Vec::new();
    loop {
        match T::deserialize(toml::de::Deserializer::from(root.clone())) {
            Ok(raw) if unknown.is_empty() => return Ok(raw),
            Ok(_) => return Err(unknown),
            Err(e) => {
                let is_unknown = e.message().starts_with("unknown field");
                unknown.push(toml_problem(src, &e));
                let removed = is_unknown
                    && unknown.len() < MAX_UNKNOWN_KEYS
                    && e.span()
                        .is_some_and(|span| remove_key_at(root.get_mut(), span.start));
                if !removed {
                    return Err(unknown);
                }
            }
        }
    }
}

/// Removes the key that starts at byte `offset` from a parsed document; whether there was one.
fn remove_key_at(table: &mut toml::de::DeTable<'_>, offset: usize) -> bool {
    let key = table
        .iter()
        .find(|(k, _)| k.span().start == offset)
        .map(|(k, _)| k.clone());
    if let Some(key) = key {
        return table.remove(&key).is_some();
    }
    table
        .iter_mut()
        .any(|(_, value)| remove_key_in(value.get_mut(), offset))
}

fn remove_key_in(value: &mut toml::de::DeValue<'_>, offset: usize) -> bool {
    match value {
        toml::de::DeValue::Table(t) => remove_key_at(t, offset),
        toml::de::DeValue::Array(items) => items
            .iter_mut()
            .any(|item| remove_key_in(item.get_mut(), offset)),
        _ => false,
    }
}

/// Load and validate one case file.
pub fn load_case(path: &Path, options: &LoadOptions) -> Result<Case, CaseError> {
    let src = Arc::new(read_source(path, None)?);
    let raw: RawCase = parse_toml(&src).map_err(|mut problems| {
        if problems.len() == 1 {
            let p = problems.remove(0);
            CaseError::Syntax {
                location: p.location,
                message: p.message,
            }
        } else {
            CaseError::Invalid { problems }
        }
    })?;
    let mut problems = Vec::new();

    let mut nodes = Vec::new();
    for n in raw.nodes.get_ref() {
        if !is_name(n.get_ref()) {
            problems.push(src.problem(
                n,
                format!(
                    "bad node name {:?} (letters, digits, `-`, `_`)",
                    n.get_ref()
                ),
            ));
        } else if nodes.contains(n.get_ref()) {
            problems.push(src.problem(n, format!("node `{}` declared twice", n.get_ref())));
        } else {
            nodes.push(n.get_ref().clone());
        }
    }
    if raw.nodes.get_ref().is_empty() {
        problems.push(src.problem(&raw.nodes, "a case needs at least one node"));
    }

    let defaults = Defaults {
        timeout: duration_or(
            &src,
            raw.defaults.timeout.as_ref(),
            DEFAULT_TIMEOUT,
            &mut problems,
        ),
        interval: duration_or(
            &src,
            raw.defaults.interval.as_ref(),
            DEFAULT_POLL_INTERVAL,
            &mut problems,
        ),
        deadline: duration_or(
            &src,
            raw.defaults.deadline.as_ref(),
            DEFAULT_POLL_DEADLINE,
            &mut problems,
        ),
    };

    let mut expanded = Vec::new();
    expand(raw.steps, &src, None, 0, &mut expanded, &mut problems);
    if expanded.is_empty() && problems.is_empty() {
        problems.push(Problem {
            location: src.location(0),
            message: "a case needs at least one step".into(),
        });
    }

    let mut steps = Vec::new();
    for (raw_step, span, step_src) in expanded {
        if let Some(step) =
            validate_step(raw_step, span, &step_src, &nodes, &defaults, &mut problems)
        {
            steps.push(step);
        }
    }

    check_ids_and_variables(&steps, &mut problems);
    let faults = super::faults::validate(
        raw.faults,
        &|offset| src.location(offset),
        &nodes,
        &steps,
        &mut problems,
    );

    let air = super::air::validate(
        raw.sniffer.as_ref(),
        &raw.snapshot,
        &|offset| src.location(offset),
        &nodes,
        &steps,
        &mut problems,
    );

    let mut variants = BTreeMap::new();
    for (name, raw_variant) in raw.variants {
        if let Some(known) = &options.known_variants
            && !known.contains(name.get_ref())
        {
            let list = known.iter().cloned().collect::<Vec<_>>().join(", ");
            problems.push(src.problem(
                &name,
                format!(
                    "unknown firmware variant `{}` (known: {list})",
                    name.get_ref()
                ),
            ));
        }
        if let Some(expectation) = validate_variant(&src, &raw_variant, &steps, &mut problems) {
            variants.insert(name.into_inner(), expectation);
        }
    }

    if !problems.is_empty() {
        return Err(CaseError::Invalid { problems });
    }
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Case {
        name,
        path: path.to_path_buf(),
        description: raw.description,
        nodes,
        steps,
        variants,
        faults,
        air,
    })
}

struct Defaults {
    timeout: Duration,
    interval: Duration,
    deadline: Duration,
}

fn parse_duration(
    src: &Source,
    s: &Spanned<String>,
    problems: &mut Vec<Problem>,
) -> Option<Duration> {
    match humantime::parse_duration(s.get_ref()) {
        Ok(d) if d.is_zero() => {
            problems.push(src.problem(s, "duration must be greater than zero"));
            None
        }
        Ok(d) if d > MAX_DURATION => {
            problems.push(src.problem(
                s,
                format!(
                    "duration {:?} is longer than the maximum of {}",
                    s.get_ref(),
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            problems.push(src.problem(
                s,
                format!(
                    "bad duration {:?}: {e} (write e.g. \"500ms\", \"10s\")",
                    s.get_ref()
                ),
            ));
            None
        }
    }
}

fn duration_or(
    src: &Source,
    s: Option<&Spanned<String>>,
    default: Duration,
    problems: &mut Vec<Problem>,
) -> Duration {
    s.and_then(|s| parse_duration(src, s, problems))
        .unwrap_or(default)
}

/// Expand includes depth-first, in file order. Each step keeps the source it was written in.
fn expand(
    steps: Vec<Spanned<RawStep>>,
    src: &Arc<Source>,
    params: Option<&BTreeMap<String, String>>,
    depth: usize,
    out: &mut Vec<(RawStep, std::ops::Range<usize>, Arc<Source>)>,
    problems: &mut Vec<Problem>,
) {
    for spanned in steps {
        let span = spanned.span();
        let mut step = spanned.into_inner();
        let mut ok = true;
        // Fragments see their parameters; a case has none, so `${x}` there is an error (reported
        // when the string is parsed as a template).
        if let Some(params) = params {
            for s in step.strings_mut() {
                match template::substitute_params(s.get_ref(), params) {
                    Ok(v) => *s.get_mut() = v,
                    Err(e) => {
                        problems.push(Problem {
                            location: src.location(s.span().start + 1 + e.offset),
                            message: e.message,
                        });
                        ok = false;
                    }
                }
            }
        }
        if !ok {
            continue;
        }
        let Some(include) = step.include.clone() else {
            out.push((step, span, src.clone()));
            continue;
        };
        let here = src.location(span.start);
        let other_keys = step.id.is_some()
            || step.node.is_some()
            || step.send.is_some()
            || step.expect.is_some()
            || step.poll.is_some()
            || step.result.is_some()
            || step.output.is_some()
            || step.absent.is_some()
            || step.capture.is_some()
            || step.until.is_some()
            || step.interval.is_some()
            || step.deadline.is_some()
            || step.timeout.is_some()
            || step.window.is_some();
        if other_keys {
            problems.push(Problem {
                location: here,
                message: "an `include` step takes only `with`".into(),
            });
            continue;
        }
        if depth >= MAX_INCLUDE_DEPTH {
            problems.push(src.problem(&include, "includes nested too deep (include cycle?)"));
            continue;
        }
        let dir = src.path.parent().unwrap_or(Path::new("."));
        let frag_path = dir.join(include.get_ref());
        let frag_src = match read_source(&frag_path, Some(Arc::new(here))) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                problems.push(src.problem(&include, format!("cannot include: {e}")));
                continue;
            }
        };
        let fragment: RawFragment = match parse_toml(&frag_src) {
            Ok(f) => f,
            Err(p) => {
                problems.extend(p);
                continue;
            }
        };
        let with = step.with.unwrap_or_default();
        let mut values = BTreeMap::new();
        for (key, value) in &with {
            if !fragment.params.contains_key(key) {
                let list = fragment
                    .params
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                problems.push(src.problem(
                    value,
                    format!(
                        "`{key}` is not a parameter of {} (parameters: {list})",
                        include.get_ref()
                    ),
                ));
                ok = false;
            } else {
                values.insert(key.clone(), value.get_ref().clone());
            }
        }
        for (key, param) in &fragment.params {
            if values.contains_key(key) {
                continue;
            }
            match &param.default {
                Some(d) => {
                    values.insert(key.clone(), d.clone());
                }
                None => {
                    problems.push(src.problem(
                        &include,
                        format!("missing parameter `{key}` of {}", include.get_ref()),
                    ));
                    ok = false;
                }
            }
        }
        if ok {
            expand(
                fragment.steps,
                &frag_src,
                Some(&values),
                depth + 1,
                out,
                problems,
            );
        }
    }
}

fn template(src: &Source, s: &Spanned<String>, problems: &mut Vec<Problem>) -> Option<Template> {
    match Template::parse(s.get_ref()) {
        Ok(t) => Some(t),
        Err(e) => {
            // +1: the span starts at the opening quote.
            problems.push(Problem {
                location: src.location(s.span().start + 1 + e.offset),
                message: e.message,
            });
            None
        }
    }
}

fn pattern(src: &Source, s: &Spanned<String>, problems: &mut Vec<Problem>) -> Option<Pattern> {
    let t = template(src, s, problems)?;
    match Pattern::new(t) {
        Ok(p) => Some(p),
        Err(e) => {
            let detail = e
                .to_string()
                .lines()
                .map(str::trim_end)
                .collect::<Vec<_>>()
                .join(" | ");
            problems.push(src.problem(s, format!("bad regex: {detail}")));
            None
        }
    }
}

fn parse_result(
    src: &Source,
    s: &Spanned<String>,
    problems: &mut Vec<Problem>,
) -> Option<ResultExpectation> {
    use ot_hil_board::ot_error::OtError;
    let text = s.get_ref().trim();
    match text {
        "Done" => return Some(ResultExpectation::Done),
        "any" => return Some(ResultExpectation::Any),
        "none" => return Some(ResultExpectation::NoResult),
        _ => {}
    }
    let bad = |problems: &mut Vec<Problem>, why: String| {
        problems.push(src.problem(
            s,
            format!("bad result {text:?}: {why} (write \"Done\", \"Error 7: InvalidArgs\", \"Error 7\", \"Error InvalidArgs\", \"any\" or \"none\")"),
        ));
        None
    };
    let Some(rest) = text.strip_prefix("Error") else {
        return bad(problems, "not a result".into());
    };
    let rest = rest.trim();
    let (code_text, name_text) = match rest.split_once(':') {
        Some((c, n)) => (Some(c.trim()), Some(n.trim())),
        None if rest.chars().all(|c| c.is_ascii_digit()) && !rest.is_empty() => (Some(rest), None),
        None if !rest.is_empty() => (None, Some(rest)),
        None => (None, None),
    };
    let code = match code_text {
        Some(c) => match c.parse::<u8>().ok().and_then(OtError::from_code) {
            Some(e) => Some(e),
            None => return bad(problems, format!("{c} is not an OpenThread error code")),
        },
        None => None,
    };
    let by_name = match name_text {
        Some(n) => match OtError::ALL.iter().copied().find(|e| e.name() == n) {
            Some(e) => Some(e),
            None => return bad(problems, format!("{n} is not an OpenThread error name")),
        },
        None => None,
    };
    if let (Some(c), Some(n)) = (code, by_name)
        && c != n
    {
        return bad(
            problems,
            format!("code {} is {}, not {}", c.code(), c.name(), n.name()),
        );
    }
    Some(ResultExpectation::Error {
        code: code.map(|e| e.code()),
        name: by_name.map(|e| e.name().to_string()),
    })
}

/// Keys that only some step kinds take, with the kinds that take them.
fn reject(
    src: &Source,
    kind: &str,
    present: &[(&str, Option<std::ops::Range<usize>>)],
    problems: &mut Vec<Problem>,
) -> bool {
    let mut ok = true;
    for (key, span) in present {
        if let Some(span) = span {
            problems.push(Problem {
                location: src.location(span.start),
                message: format!("`{key}` does not apply to a {kind} step"),
            });
            ok = false;
        }
    }
    ok
}

fn span_of<T>(s: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
    s.as_ref().map(|s| s.span())
}

fn validate_step(
    raw: RawStep,
    span: std::ops::Range<usize>,
    src: &Source,
    nodes: &[String],
    defaults: &Defaults,
    problems: &mut Vec<Problem>,
) -> Option<Step> {
    let location = src.location(span.start);
    let before = problems.len();

    let kinds: Vec<&str> = [
        ("send", raw.send.is_some()),
        ("expect", raw.expect.is_some()),
        ("poll", raw.poll.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, present)| present.then_some(k))
    .collect();
    if kinds.len() > 1 {
        problems.push(Problem {
            location,
            message: format!(
                "a step does one thing, this one has {} (split it into several steps)",
                kinds.join(" and ")
            ),
        });
        return None;
    }

    let node = match &raw.node {
        None => {
            problems.push(Problem {
                location: location.clone(),
                message: "step has no `node`".into(),
            });
            None
        }
        Some(n) if !nodes.contains(n.get_ref()) => {
            problems.push(src.problem(
                n,
                format!(
                    "unknown node `{}` (nodes: {})",
                    n.get_ref(),
                    nodes.join(", ")
                ),
            ));
            None
        }
        Some(n) => Some(n.get_ref().clone()),
    };

    let id = raw.id.as_ref().map(|s| s.get_ref().clone());
    if let Some(s) = &raw.id
        && !is_name(s.get_ref())
    {
        problems.push(src.problem(s, "bad step id (letters, digits, `-`, `_`)"));
    }
    let absent: Vec<Pattern> = raw
        .absent
        .iter()
        .flatten()
        .filter_map(|s| pattern(src, s, problems))
        .collect();
    let mut captures = Vec::new();
    for (name, s) in raw.capture.iter().flatten() {
        if !is_name(name) {
            problems.push(src.problem(s, format!("bad variable name `{name}`")));
        }
        if let Some(p) = pattern(src, s, problems) {
            captures.push(Capture {
                name: name.clone(),
                pattern: p,
            });
        }
    }

    let action = if let Some(send) = &raw.send {
        reject(
            src,
            "send",
            &[
                ("until", span_of(&raw.until)),
                ("interval", span_of(&raw.interval)),
                ("deadline", span_of(&raw.deadline)),
                ("window", span_of(&raw.window)),
                ("with", None),
            ],
            problems,
        );
        let command = template(src, send, problems);
        let result = match &raw.result {
            Some(r) => parse_result(src, r, problems),
            None => Some(ResultExpectation::Done),
        };
        let output: Vec<Pattern> = raw
            .output
            .iter()
            .flatten()
            .filter_map(|s| pattern(src, s, problems))
            .collect();
        let timeout = duration_or(src, raw.timeout.as_ref(), defaults.timeout, problems);
        match (command, result) {
            (Some(command), Some(result)) => Some(Action::Command {
                command,
                result,
                output,
                timeout,
            }),
            _ => None,
        }
    } else if let Some(expect) = &raw.expect {
        reject(
            src,
            "expect",
            &[
                ("result", span_of(&raw.result)),
                ("until", span_of(&raw.until)),
                ("interval", span_of(&raw.interval)),
                ("deadline", span_of(&raw.deadline)),
                ("window", span_of(&raw.window)),
            ],
            problems,
        );
        if let Some(o) = raw.output.as_ref().and_then(|o| o.first()) {
            problems.push(src.problem(o, "`output` does not apply to an expect step"));
        }
        let timeout = duration_or(src, raw.timeout.as_ref(), defaults.timeout, problems);
        pattern(src, expect, problems).map(|pattern| Action::Expect { pattern, timeout })
    } else if let Some(poll) = &raw.poll {
        reject(
            src,
            "poll",
            &[
                ("result", span_of(&raw.result)),
                ("window", span_of(&raw.window)),
            ],
            problems,
        );
        if let Some(o) = raw.output.as_ref().and_then(|o| o.first()) {
            problems.push(src.problem(o, "`output` does not apply to a poll step (use `until`)"));
        }
        let command = template(src, poll, problems);
        let until = match &raw.until {
            Some(u) => pattern(src, u, problems),
            None => {
                problems.push(src.problem(poll, "a poll step needs `until`"));
                None
            }
        };
        let interval = duration_or(src, raw.interval.as_ref(), defaults.interval, problems);
        let deadline = duration_or(src, raw.deadline.as_ref(), defaults.deadline, problems);
        let attempt_timeout = duration_or(src, raw.timeout.as_ref(), defaults.timeout, problems);
        match (command, until) {
            (Some(command), Some(until)) => Some(Action::Poll {
                command,
                until,
                interval,
                deadline,
                attempt_timeout,
            }),
            _ => None,
        }
    } else if raw.absent.is_some() {
        reject(
            src,
            "absent",
            &[
                ("result", span_of(&raw.result)),
                ("until", span_of(&raw.until)),
                ("interval", span_of(&raw.interval)),
                ("deadline", span_of(&raw.deadline)),
                ("timeout", span_of(&raw.timeout)),
            ],
            problems,
        );
        if let Some((_, s)) = raw.capture.as_ref().and_then(|c| c.iter().next()) {
            problems.push(src.problem(s, "`capture` does not apply to an absent step"));
        }
        match &raw.window {
            Some(w) => parse_duration(src, w, problems).map(|window| Action::Absent { window }),
            None => {
                problems.push(Problem {
                    location: location.clone(),
                    message: "an absent step needs `window` (how long to watch)".into(),
                });
                None
            }
        }
    } else {
        problems.push(Problem {
            location: location.clone(),
            message: "step does nothing: give it `send`, `expect`, `poll`, `absent` + `window`, or `include`".into(),
        });
        None
    };

    if problems.len() > before {
        return None;
    }
    Some(Step {
        id,
        location,
        node: node?,
        action: action?,
        absent,
        captures,
    })
}

/// Step ids unique; every `${node.var}` captured by an earlier step (or the same step's captures
/// for nothing: a step reads variables before it captures).
fn check_ids_and_variables(steps: &[Step], problems: &mut Vec<Problem>) {
    let mut ids = BTreeSet::new();
    let mut defined: BTreeSet<VarRef> = BTreeSet::new();
    for step in steps {
        if let Some(id) = &step.id
            && !ids.insert(id.clone())
        {
            problems.push(Problem {
                location: step.location.clone(),
                message: format!("step id `{id}` used twice"),
            });
        }
        let mut used: Vec<&VarRef> = Vec::new();
        match &step.action {
            Action::Command {
                command, output, ..
            } => {
                used.extend(command.vars());
                for p in output {
                    used.extend(p.template.vars());
                }
            }
            Action::Expect { pattern, .. } => used.extend(pattern.template.vars()),
            Action::Poll { command, until, .. } => {
                used.extend(command.vars());
                used.extend(until.template.vars());
            }
            Action::Absent { .. } => {}
        }
        for p in step
            .absent
            .iter()
            .chain(step.captures.iter().map(|c| &c.pattern))
        {
            used.extend(p.template.vars());
        }
        for v in used {
            if !defined.contains(v) {
                let hint = if defined.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (defined so far: {})",
                        defined
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                problems.push(Problem {
                    location: step.location.clone(),
                    message: format!("undefined variable {v}: no earlier step captures it{hint}"),
                });
            }
        }
        for c in &step.captures {
            defined.insert(VarRef {
                node: step.node.clone(),
                name: c.name.clone(),
            });
        }
    }
}

fn validate_variant(
    src: &Source,
    raw: &Spanned<RawVariant>,
    steps: &[Step],
    problems: &mut Vec<Problem>,
) -> Option<VariantExpectation> {
    let v = raw.get_ref();
    match (&v.xfail, &v.skip) {
        (Some(_), Some(_)) | (None, None) => {
            problems.push(src.problem(
                raw,
                "a variant entry needs exactly one of `xfail = \"reason\"` or `skip = \"reason\"`",
            ));
            None
        }
        (None, Some(reason)) => {
            if v.symptom.is_some() {
                problems.push(src.problem(raw, "`symptom` only applies with `xfail`"));
            }
            Some(VariantExpectation::Skip {
                reason: reason.clone(),
            })
        }
        (Some(reason), None) => {
            let symptom = match &v.symptom {
                None => None,
                Some(s) => {
                    let index = steps
                        .iter()
                        .position(|st| st.id.as_deref() == Some(s.step.get_ref().as_str()));
                    if index.is_none() {
                        problems.push(src.problem(
                            &s.step,
                            format!(
                                "symptom names step `{}`, but no step has that id",
                                s.step.get_ref()
                            ),
                        ));
                    }
                    if s.line.is_none() && s.crash.is_none() {
                        problems.push(src.problem(
                            &s.step,
                            "a symptom needs `line` (a line the node printed) or `crash` (how the board crashed)".to_string(),
                        ));
                        return None;
                    }
                    let line = s.line.as_ref().map(|l| pattern(src, l, problems));
                    let crash = s.crash.as_ref().map(|c| pattern(src, c, problems));
                    if line.as_ref().is_some_and(Option::is_none)
                        || crash.as_ref().is_some_and(Option::is_none)
                    {
                        return None;
                    }
                    match index {
                        Some(step_index) => Some(Symptom {
                            step_index,
                            step_id: s.step.get_ref().clone(),
                            line: line.flatten(),
                            crash: crash.flatten(),
                        }),
                        None => return None,
                    }
                }
            };
            Some(VariantExpectation::Xfail {
                reason: reason.clone(),
                symptom,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    fn options() -> LoadOptions {
        LoadOptions {
            known_variants: Some(["ncs-v2.2.0".to_string(), "upstream".to_string()].into()),
        }
    }

    fn errors(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "c.toml", text);
        let e = load_case(&p, &options()).unwrap_err().to_string();
        e.replace(&dir.path().display().to_string(), "D")
    }

    const GOOD: &str = r#"
description = "two nodes"
nodes = ["server", "client"]

[[steps]]
node = "server"
send = "ipaddr mleid"
capture = { mleid = '^([0-9a-f:]+)$' }

[[steps]]
id = "connect"
node = "client"
send = "coaps connect ${server.mleid}"
result = "Error 7: InvalidArgs"

[[steps]]
node = "client"
expect = "coaps connected"
absent = ["coaps disconnected"]
timeout = "5s"

[[steps]]
node = "server"
poll = "state"
until = "^(leader|router)$"
interval = "100ms"
deadline = "20s"

[variants."ncs-v2.2.0"]
xfail = "PSK rejected"
symptom = { step = "connect", line = "^Error 7: InvalidArgs$" }
"#;

    #[test]
    fn loads_a_good_case() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "psk-connect.toml", GOOD);
        let case = load_case(&p, &options()).unwrap();
        assert_eq!(case.name, "psk-connect");
        assert_eq!(case.nodes, ["server", "client"]);
        assert_eq!(case.steps.len(), 4);
        assert_eq!(case.steps[0].location.line, 5);
        assert_eq!(case.steps[1].id.as_deref(), Some("connect"));
        match &case.steps[1].action {
            Action::Command { result, .. } => {
                assert_eq!(
                    result,
                    &ResultExpectation::Error {
                        code: Some(7),
                        name: Some("InvalidArgs".into())
                    }
                )
            }
            other => panic!("{other:?}"),
        }
        match &case.steps[3].action {
            Action::Poll {
                interval, deadline, ..
            } => {
                assert_eq!(*interval, Duration::from_millis(100));
                assert_eq!(*deadline, Duration::from_secs(20));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            case.expectation("ncs-v2.2.0"),
            Some(VariantExpectation::Xfail {
                symptom: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn toml_errors_have_line_and_column() {
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"x\n");
        assert!(e.starts_with("D/c.toml:4:"), "{e}");
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsned = \"x\"\n");
        assert!(e.starts_with("D/c.toml:4:1:") && e.contains("sned"), "{e}");
    }

    #[test]
    fn unknown_node_and_undefined_variable() {
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"b\"\nsend = \"ping ${a.addr}\"\n");
        assert!(
            e.contains("D/c.toml:3:8: unknown node `b` (nodes: a)"),
            "{e}"
        );
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"ping ${a.addr}\"\n");
        assert!(
            e.contains("D/c.toml:2:1: undefined variable ${a.addr}"),
            "{e}"
        );
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"ping ${addr}\"\n");
        assert!(
            e.contains("D/c.toml:4:14: undefined parameter `${addr}`"),
            "{e}"
        );
    }

    #[test]
    fn bad_regex_and_result_and_variant() {
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nexpect = \"(unclosed\"\n");
        assert!(e.contains("D/c.toml:4:10: bad regex"), "{e}");
        let e = errors(
            "nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"x\"\nresult = \"Error 7: Already\"\n",
        );
        assert!(
            e.contains("D/c.toml:5:10: bad result") && e.contains("code 7 is InvalidArgs"),
            "{e}"
        );
        let e = errors(
            "nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"x\"\n[variants.nrf-nope]\nxfail = \"r\"\n",
        );
        assert!(
            e.contains("D/c.toml:5:11: unknown firmware variant `nrf-nope`"),
            "{e}"
        );
    }

    #[test]
    fn step_kinds_do_not_mix() {
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"x\"\nexpect = \"y\"\n");
        assert!(e.contains("has send and expect"), "{e}");
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"x\"\nuntil = \"y\"\n");
        assert!(
            e.contains("D/c.toml:5:9: `until` does not apply to a send step"),
            "{e}"
        );
        let e = errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nabsent = [\"x\"]\n");
        assert!(e.contains("needs `window`"), "{e}");
        let e =
            errors("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\ntimeout = \"soon\"\nsend = \"x\"\n");
        assert!(e.contains("D/c.toml:4:11: bad duration"), "{e}");
    }

    #[test]
    fn fragments_expand_with_parameters() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "fragments/form.toml",
            "[params]\nleader = { description = \"forms\" }\nchannel = { default = \"15\" }\n\n[[steps]]\nnode = \"${leader}\"\nsend = \"channel ${channel}\"\ncapture = { ch = '(\\d+)' }\n",
        );
        let case = write(
            dir.path(),
            "c.toml",
            "nodes = [\"s\"]\n[[steps]]\ninclude = \"fragments/form.toml\"\nwith = { leader = \"s\" }\n[[steps]]\nnode = \"s\"\nsend = \"x ${s.ch}\"\n",
        );
        let c = load_case(&case, &options()).unwrap();
        assert_eq!(c.steps.len(), 2);
        assert_eq!(c.steps[0].node, "s");
        match &c.steps[0].action {
            Action::Command { command, .. } => assert_eq!(command.to_string(), "channel 15"),
            other => panic!("{other:?}"),
        }
        let loc = c.steps[0].location.to_string();
        assert!(
            loc.contains("fragments/form.toml:5:1 (included from") && loc.ends_with("c.toml:2:1)"),
            "{loc}"
        );

        // Missing and unknown parameters, unknown node after substitution.
        let bad = write(
            dir.path(),
            "b.toml",
            "nodes = [\"s\"]\n[[steps]]\ninclude = \"fragments/form.toml\"\nwith = { leeder = \"s\" }\n",
        );
        let e = load_case(&bad, &options()).unwrap_err().to_string();
        assert!(
            e.contains("`leeder` is not a parameter") && e.contains("missing parameter `leader`"),
            "{e}"
        );
        let bad = write(
            dir.path(),
            "b2.toml",
            "nodes = [\"s\"]\n[[steps]]\ninclude = \"fragments/form.toml\"\nwith = { leader = \"x\" }\n",
        );
        let e = load_case(&bad, &options()).unwrap_err().to_string();
        assert!(
            e.contains("form.toml:6:8 (included from")
                && e.contains("b2.toml:2:1): unknown node `x`"),
            "{e}"
        );
    }

    #[test]
    fn symptom_must_name_a_step() {
        let e = errors(
            "nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"x\"\n[variants.upstream]\nxfail = \"r\"\nsymptom = { step = \"nope\", line = \"x\" }\n",
        );
        assert!(
            e.contains("D/c.toml:7:20: symptom names step `nope`"),
            "{e}"
        );
    }

    #[test]
    fn symptom_needs_a_line_or_a_crash() {
        let e = errors(
            "nodes = [\"a\"]\n[[steps]]\nid = \"s\"\nnode = \"a\"\nsend = \"x\"\n[variants.upstream]\nxfail = \"r\"\nsymptom = { step = \"s\" }\n",
        );
        assert!(e.contains("a symptom needs `line`"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "gone.toml",
            "nodes = [\"a\"]\n[[steps]]\nid = \"s\"\nnode = \"a\"\nsend = \"x\"\n[variants.upstream]\nxfail = \"r\"\nsymptom = { step = \"s\", crash = 'exited \\(exit status: 1\\)' }\n",
        );
        let case = load_case(&p, &options()).unwrap();
        match case.expectation("upstream") {
            Some(VariantExpectation::Xfail {
                symptom: Some(s), ..
            }) => {
                assert!(s.line.is_none());
                assert!(s.crash.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn durations_the_runner_cannot_hold_are_rejected_with_a_position() {
        for huge in ["18446744073709551615s", "9223372036854775807s", "25h"] {
            let e = errors(&format!(
                "nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\ntimeout = \"{huge}\"\nexpect = \"x\"\n"
            ));
            assert!(
                e.contains("D/c.toml:4:11: duration")
                    && e.contains("longer than the maximum of 1day"),
                "{e}"
            );
        }
        let e = errors(
            "nodes = [\"a\"]\n[defaults]\ndeadline = \"18446744073709551615s\"\n[[steps]]\nnode = \"a\"\nsend = \"x\"\n",
        );
        assert!(e.contains("D/c.toml:3:12: duration"), "{e}");
        // The maximum itself is fine.
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.toml",
            "nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\ntimeout = \"24h\"\nexpect = \"x\"\n",
        );
        load_case(&p, &options()).unwrap();
    }

    #[test]
    fn positions_from_the_line_index_match_counting_from_the_start() {
        let text = "a = 1\n\nbé = \"ü\"\r\nlast";
        let src = Source::new(PathBuf::from("f"), text.to_string(), None);
        for offset in 0..=text.len() + 3 {
            let mut end = offset.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let before = &text[..end];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap().chars().count() + 1;
            let at = src.location(offset);
            assert_eq!((at.line, at.column), (line, column), "offset {offset}");
        }
    }

    /// Loading is linear in the file: positions come from a line index, not from scanning the
    /// text for each span (which made 16,000 steps take 7.6 s). The bound is generous; the
    /// timing itself is in `benches/scale.rs`.
    #[test]
    fn a_case_with_thirty_thousand_steps_loads_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("nodes = [\"a\"]\n");
        for _ in 0..30_000 {
            text.push_str("[[steps]]\nnode=\"a\"\nsend=\"x\"\n");
        }
        let p = write(dir.path(), "big.toml", &text);
        let started = std::time::Instant::now();
        let case = load_case(&p, &options()).unwrap();
        assert_eq!(case.steps.len(), 30_000);
        assert_eq!(case.steps[29_999].location.line, 2 + 29_999 * 3);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    }

    fn include_error(target: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.toml",
            &format!("nodes = [\"a\"]\n[[steps]]\ninclude = \"{target}\"\n"),
        );
        let started = std::time::Instant::now();
        let e = load_case(&p, &options()).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        e.replace(&dir.path().display().to_string(), "D")
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_at_once() {
        let e = include_error("/dev/zero");
        assert!(
            e.contains("D/c.toml:3:11: cannot include: /dev/zero: is a character device"),
            "{e}"
        );
        let e = include_error("/");
        assert!(e.contains("cannot include: /: is a directory"), "{e}");

        // A FIFO nobody writes to: opening it must not wait for a writer.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = include_error(&fifo.display().to_string());
        assert!(e.contains("pipe.toml: is a FIFO"), "{e}");
        // Named directly as a case, too.
        let e = load_case(&fifo, &options()).unwrap_err().to_string();
        assert!(e.contains("is a FIFO"), "{e}");
        let e = load_case(Path::new("/dev/zero"), &options())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is a character device"), "{e}");
    }

    #[test]
    fn files_above_the_size_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"x\"\n");
        text.push_str(&"#".repeat(MAX_FILE_SIZE as usize));
        let p = write(dir.path(), "big.toml", &text);
        let e = load_case(&p, &options()).unwrap_err().to_string();
        assert!(
            e.contains("big.toml: 1048622 bytes, larger than the limit of 1048576 bytes"),
            "{e}"
        );
        let frag = write(dir.path(), "frag.toml", &text);
        let e = include_error(&frag.display().to_string());
        assert!(
            e.contains("cannot include:") && e.contains("larger than the limit"),
            "{e}"
        );
    }

    #[test]
    fn a_binary_file_gets_its_error_with_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin.toml");
        std::fs::write(&p, b"nodes = [\"a\"]\nsen\xff\xfe\x00\x01").unwrap();
        let e = load_case(&p, &options()).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "bin.toml:2:4: not a text file: invalid UTF-8 here (case files are UTF-8 TOML)"
            ),
            "{e}"
        );
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let e = errors(
            "nodes = [\"a\"]\ndescripton = \"x\"\n[[steps]]\nnode = \"a\"\nsned = \"x\"\nsend = \"y\"\n[[steps]]\nnode = \"a\"\nexpect = \"z\"\ntimout = \"1s\"\n[variants.upstream]\nxfail = \"r\"\nsymtom = { step = \"s\" }\n",
        );
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 4, "{e}");
        assert!(
            lines[0].starts_with("D/c.toml:2:1: unknown field `descripton`"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("D/c.toml:5:1: unknown field `sned`"),
            "{e}"
        );
        assert!(
            lines[2].starts_with("D/c.toml:10:1: unknown field `timout`"),
            "{e}"
        );
        assert!(
            lines[3].starts_with("D/c.toml:13:1: unknown field `symtom`"),
            "{e}"
        );

        // In a fragment too, each with its include chain.
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "frag.toml",
            "[[steps]]\nnode = \"a\"\nsend = \"x\"\nwhen = 1\n[[steps]]\nnode = \"a\"\nsend = \"x\"\nafter = 2\n",
        );
        let p = write(
            dir.path(),
            "c.toml",
            "nodes = [\"a\"]\n[[steps]]\ninclude = \"frag.toml\"\n",
        );
        let e = load_case(&p, &options()).unwrap_err().to_string();
        assert!(
            e.contains("frag.toml:4:1 (included from") && e.contains("unknown field `when`"),
            "{e}"
        );
        assert!(
            e.contains("frag.toml:8:1 (included from") && e.contains("unknown field `after`"),
            "{e}"
        );
    }
}
