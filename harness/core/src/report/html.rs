//! `report.html`: one self-contained page per run for a person to look at.
//!
//! The page holds the variant matrix (cases × variants coloured by outcome, with totals and the
//! run's provenance), then every case run, failures first: what failed (step, `file:line`,
//! expected vs got), a handshake ladder per DTLS connection ([`ladder`]), stored and observed
//! ladders side by side for a snapshot that changed, and a timeline of every board's console and
//! the air ([`timeline`]). CSS, the small filter script and the SVG are inline; nothing refers
//! to a URL outside the page except the run's own files (board logs, `air.pcap`, `.snap.new`),
//! which are linked, not inlined, so the page stays kilobytes per case. The matrix and the
//! ladders are static HTML and SVG: they read the same with JavaScript off.
//!
//! The renderer has its own input model ([`HtmlRun`]); [`reporter::HtmlReporter`] fills it from
//! the run's events (results, board events, air captures, snapshot comparisons), as the JUnit and
//! JSON reporters are filled, and writes the page when the run finishes.
//!
//! Everything that reaches the page from a board, a case file or the air is escaped (console
//! lines are untrusted text).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use ot_hil_dtls::Transcript;

use crate::events::Outcome;

pub mod ladder;
pub mod markdown;
pub mod reporter;
pub mod timeline;

pub use reporter::HtmlReporter;

const STYLE: &str = include_str!("html/style.css");
const SCRIPT: &str = include_str!("html/script.js");

/// Everything the page shows about one run.
#[derive(Debug, Clone, Default)]
pub struct HtmlRun {
    pub provenance: Provenance,
    pub runs: Vec<CaseRun>,
}

/// Where and how the run happened.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// ot-hil's version.
    pub version: String,
    pub commit: Option<String>,
    pub host: Option<String>,
    /// What the times on the page count from.
    pub clock: String,
    /// Seed of the run's random choices (virtual air), in words: the run's `--air-seed`, the
    /// cases' one seed, or per case.
    pub seed: String,
    /// Boards or board kinds the run used.
    pub boards: Vec<String>,
    pub duration: Option<Duration>,
    pub interrupted: bool,
}

/// One case on one variant.
#[derive(Debug, Clone)]
pub struct CaseRun {
    pub case: String,
    pub variant: String,
    /// The case file.
    pub path: String,
    pub outcome: Outcome,
    /// Failed, then passed on a re-run.
    pub flaky: bool,
    pub duration: Duration,
    /// The xfail/skip reason or the infrastructure problem.
    pub reason: Option<String>,
    pub quarantined: Option<String>,
    /// Earlier attempts, one line each.
    pub attempts: Vec<String>,
    pub failure: Option<StepFailure>,
    pub handshakes: Vec<Handshake>,
    pub snapshot_mismatches: Vec<SnapshotMismatch>,
    pub timeline: Timeline,
    pub links: Vec<Link>,
    /// Seed of the case run's virtual air, where it had one.
    pub seed: Option<u64>,
    /// The clock its steps ran on: `case` (virtual time) or `host`.
    pub clock: Option<&'static str>,
    /// Node and what stood behind it (`virtual`, `host`, `board`).
    pub boards: Vec<(String, String)>,
}

impl CaseRun {
    /// The anchor of the case run's section.
    pub fn anchor(&self) -> String {
        anchor(&self.case, &self.variant)
    }

    /// Did the run go wrong in a way a reader looks at first?
    pub fn is_failure(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Fail | Outcome::Xpass | Outcome::Error
        )
    }
}

/// The anchor of a case run's section: `run-<case>--<variant>`, restricted to characters that
/// need no escaping in an id, a fragment or a CSS selector (`.` would start a class).
pub fn anchor(case: &str, variant: &str) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("run-{}--{}", clean(case), clean(variant))
}

/// What failed, as the step executor saw it.
#[derive(Debug, Clone, Default)]
pub struct StepFailure {
    pub step: String,
    /// `file:line:col` of the step.
    pub location: String,
    pub node: String,
    pub expected: String,
    /// The lines that did arrive.
    pub got: Vec<String>,
    pub crash: Option<String>,
    /// 1-based number of the failing step (`None`: while the board booted, or a snapshot).
    pub step_number: Option<usize>,
}

/// One DTLS connection, as the air or a board's engine saw it.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub title: String,
    pub client: String,
    pub server: String,
    /// `air` or `engine`.
    pub source: String,
    pub transcript: Transcript,
    /// Time of each transcript entry on the page's clock, where known.
    pub times: Vec<Option<Duration>>,
}

/// A handshake snapshot that differs from the stored one.
#[derive(Debug, Clone)]
pub struct SnapshotMismatch {
    pub name: String,
    /// Body of the stored `.snap` (empty: none stored yet).
    pub stored: String,
    /// The same rendering of this run's transcript.
    pub observed: String,
}

/// Every line and event of a case run on one clock.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Board names, in column order (the air, if any, comes last as its own column).
    pub nodes: Vec<String>,
    pub entries: Vec<TimelineEntry>,
    /// Entries left out to keep the page small (they are in the linked logs).
    pub omitted: usize,
}

/// One line on the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at: Duration,
    pub node: String,
    pub kind: EntryKind,
    pub text: String,
    /// The failing step, a crash or an alert.
    pub highlight: bool,
}

/// What a timeline line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A line the board printed.
    Console,
    /// A command written to the board.
    Sent,
    /// A step starting.
    Step,
    /// A note of the harness (flash, reset, fault).
    Note,
    /// A frame seen on the air, decoded to one line.
    Air,
}

impl EntryKind {
    fn class(self) -> &'static str {
        match self {
            EntryKind::Console => "k-console",
            EntryKind::Sent => "k-sent",
            EntryKind::Step => "k-step",
            EntryKind::Note => "k-note",
            EntryKind::Air => "k-air",
        }
    }
}

/// A file of the run the page links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub label: String,
    /// Relative to the page.
    pub href: PathBuf,
}

/// Escape text for an HTML text node or a quoted attribute value.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_double_quoted_attribute(s)
}

/// The CSS class of an outcome (`o-fail`, ...).
pub fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "o-pass",
        Outcome::Fail => "o-fail",
        Outcome::Xfail => "o-xfail",
        Outcome::Xpass => "o-xpass",
        Outcome::Error => "o-error",
        Outcome::Skip => "o-skip",
    }
}

/// The label shown for a case run's outcome (`PASS (flaky)` for a pass after a failure).
pub fn outcome_label(r: &CaseRun) -> String {
    if r.flaky {
        format!("{} (flaky)", r.outcome.label())
    } else {
        r.outcome.label().to_string()
    }
}

/// Order of the case sections: what a reader must look at first.
fn reading_order(r: &CaseRun) -> u8 {
    match (r.outcome, r.flaky) {
        (Outcome::Fail, _) => 0,
        (Outcome::Xpass, _) => 1,
        (Outcome::Error, _) => 2,
        (_, true) => 3,
        (Outcome::Xfail, _) => 4,
        (Outcome::Pass, _) => 5,
        (Outcome::Skip, _) => 6,
    }
}

/// The whole page.
pub fn render(run: &HtmlRun) -> String {
    let mut h = String::with_capacity(16 * 1024 + run.runs.len() * 8 * 1024);
    let counts = totals(run.runs.iter());
    let title = format!("ot-hil run: {}", counts_text(&counts, run.runs.len()));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    let _ = writeln!(h, "<header><h1>{}</h1>", esc(&title));
    provenance(&mut h, &run.provenance);
    h.push_str("</header>\n<main>\n");
    matrix(&mut h, run);
    let mut order: Vec<&CaseRun> = run.runs.iter().collect();
    order.sort_by_key(|r| reading_order(r));
    h.push_str("<h2>Case runs</h2>\n");
    for r in order {
        case_section(&mut h, r);
    }
    let _ = write!(
        h,
        "</main>\n<script>\n{SCRIPT}</script>\n</body>\n</html>\n"
    );
    h
}

type Counts = Vec<(Outcome, usize)>;

const ALL_OUTCOMES: [Outcome; 6] = [
    Outcome::Fail,
    Outcome::Xpass,
    Outcome::Error,
    Outcome::Xfail,
    Outcome::Pass,
    Outcome::Skip,
];

fn totals<'a>(runs: impl Iterator<Item = &'a CaseRun>) -> Counts {
    let runs: Vec<&CaseRun> = runs.collect();
    ALL_OUTCOMES
        .iter()
        .map(|o| (*o, runs.iter().filter(|r| r.outcome == *o).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn counts_text(c: &Counts, runs: usize) -> String {
    if runs == 0 {
        return "nothing run".into();
    }
    c.iter()
        .map(|(o, n)| format!("{n} {}", o.label()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn provenance(h: &mut String, p: &Provenance) {
    h.push_str("<ul class=\"prov\">");
    let mut item = |k: &str, v: &str| {
        let _ = write!(h, "<li><span>{}</span> {}</li>", esc(k), esc(v));
    };
    item("ot-hil", &p.version);
    item("commit", p.commit.as_deref().unwrap_or("unknown"));
    item("host", p.host.as_deref().unwrap_or("unknown"));
    item("boards", &p.boards.join(", "));
    item("seed", &p.seed);
    item("clock", &p.clock);
    if let Some(d) = p.duration {
        item("duration", &format!("{:.2} s", d.as_secs_f64()));
    }
    if p.interrupted {
        item("interrupted", "yes: cases not run are shown as SKIP");
    }
    h.push_str("</ul>\n");
}

fn matrix(h: &mut String, run: &HtmlRun) {
    let mut cases: Vec<&str> = Vec::new();
    let mut variants: Vec<&str> = Vec::new();
    for r in &run.runs {
        if !cases.contains(&r.case.as_str()) {
            cases.push(&r.case);
        }
        if !variants.contains(&r.variant.as_str()) {
            variants.push(&r.variant);
        }
    }
    cases.sort_unstable();
    variants.sort_unstable();
    h.push_str("<h2>Variant matrix</h2>\n<table class=\"matrix\">\n<thead><tr><th>case</th>");
    for v in &variants {
        let _ = write!(h, "<th>{}</th>", esc(v));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for c in &cases {
        let _ = write!(h, "<tr><th>{}</th>", esc(c));
        for v in &variants {
            match run.runs.iter().find(|r| r.case == *c && r.variant == *v) {
                Some(r) => {
                    let _ = write!(
                        h,
                        "<td class=\"cell {}{}\"><a href=\"#{}\">{}</a></td>",
                        outcome_class(r.outcome),
                        if r.flaky { " flaky" } else { "" },
                        r.anchor(),
                        esc(&outcome_label(r))
                    );
                }
                None => h.push_str("<td class=\"none\">–</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n<tfoot><tr><th>totals</th>");
    for v in &variants {
        let c = totals(run.runs.iter().filter(|r| r.variant == *v));
        let _ = write!(h, "<td>{}</td>", esc(&counts_text(&c, 1)));
    }
    h.push_str("</tr></tfoot>\n</table>\n<p class=\"totals\">");
    for (o, n) in totals(run.runs.iter()) {
        let _ = write!(
            h,
            "<span class=\"badge {}\">{n} {}</span> ",
            outcome_class(o),
            o.label()
        );
    }
    let flaky = run.runs.iter().filter(|r| r.flaky).count();
    if flaky > 0 {
        let _ = write!(h, "<span class=\"badge flaky\">{flaky} flaky</span> ");
    }
    let _ = writeln!(h, "in {} case runs</p>", run.runs.len());
}

fn case_section(h: &mut String, r: &CaseRun) {
    let _ = write!(
        h,
        "<section class=\"run {}\" id=\"{}\">\n<details{}>\n<summary><span class=\"badge {}\">{}</span> \
         <b>{}</b> @ {} <span class=\"dim\">{:.3} s · {}{}{}{}</span></summary>\n",
        outcome_class(r.outcome),
        r.anchor(),
        if r.is_failure() || r.flaky {
            " open"
        } else {
            ""
        },
        outcome_class(r.outcome),
        esc(&outcome_label(r)),
        esc(&r.case),
        esc(&r.variant),
        r.duration.as_secs_f64(),
        esc(&r.path),
        r.seed.map(|s| format!(" · seed {s}")).unwrap_or_default(),
        match r.clock {
            Some("case") => " · case clock",
            Some("host") => " · host clock",
            _ => "",
        },
        // A folded expected failure or skip still says why in its one line.
        match (&r.reason, r.outcome) {
            (Some(reason), Outcome::Xfail | Outcome::Skip) => format!(" · {}", esc(reason)),
            _ => String::new(),
        }
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(h, "<p class=\"reason\">{}</p>", esc(reason));
    }
    if let Some(q) = &r.quarantined {
        let _ = writeln!(
            h,
            "<p class=\"reason\">quarantined ({}): does not fail the run</p>",
            esc(q)
        );
    }
    for a in &r.attempts {
        let _ = writeln!(h, "<p class=\"dim\">{}</p>", esc(a));
    }
    if let Some(f) = &r.failure {
        failure_box(h, f);
    }
    if !r.links.is_empty() {
        h.push_str("<p class=\"links\">");
        for l in &r.links {
            let href = l.href.to_string_lossy().replace('\\', "/");
            let _ = write!(h, "<a href=\"{}\">{}</a> ", esc(&href), esc(&l.label));
        }
        h.push_str("</p>\n");
    }
    for m in &r.snapshot_mismatches {
        ladder::mismatch(h, m);
    }
    for hs in &r.handshakes {
        ladder::handshake(h, hs);
    }
    timeline::render(h, &r.timeline, &r.anchor());
    h.push_str("</details>\n</section>\n");
}

fn failure_box(h: &mut String, f: &StepFailure) {
    let _ = write!(
        h,
        "<div class=\"failure\"><h3>Failed at {}</h3>\n<dl>\
         <dt>where</dt><dd><code>{}</code> on <b>{}</b></dd>\
         <dt>expected</dt><dd><code>{}</code></dd>",
        esc(&f.step),
        esc(&f.location),
        esc(&f.node),
        esc(&f.expected)
    );
    if let Some(c) = &f.crash {
        let _ = write!(h, "<dt>crash</dt><dd class=\"hot\">{}</dd>", esc(c));
    }
    h.push_str("<dt>got</dt><dd>");
    if f.got.is_empty() {
        h.push_str("<i>no line</i>");
    } else {
        h.push_str("<pre class=\"got\">");
        for l in &f.got {
            let _ = writeln!(h, "{}", esc(l));
        }
        h.push_str("</pre>");
    }
    h.push_str("</dd></dl></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn run_with(outcome: Outcome, console: &str) -> CaseRun {
        CaseRun {
            case: "c<1>".into(),
            variant: "v&2".into(),
            path: "testcases/c.toml".into(),
            outcome,
            flaky: false,
            duration: Duration::from_millis(1500),
            reason: None,
            quarantined: None,
            attempts: vec![],
            failure: Some(StepFailure {
                step: "client: expect `^ok$`".into(),
                location: "c.toml:3:1".into(),
                node: "client".into(),
                expected: "^ok$".into(),
                got: vec![console.into()],
                crash: None,
                step_number: Some(1),
            }),
            handshakes: vec![],
            snapshot_mismatches: vec![],
            timeline: Timeline {
                nodes: vec!["client".into()],
                entries: vec![TimelineEntry {
                    at: Duration::from_millis(5),
                    node: "client".into(),
                    kind: EntryKind::Console,
                    text: console.into(),
                    highlight: false,
                }],
                omitted: 0,
            },
            links: vec![],
            seed: None,
            clock: None,
            boards: vec![],
        }
    }

    #[test]
    fn console_text_is_escaped_everywhere() {
        let evil = "<script>alert(1)</script>\"'&";
        let page = render(&HtmlRun {
            provenance: Provenance::default(),
            runs: vec![run_with(Outcome::Fail, evil)],
        });
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The only script element is the page's own.
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains("c&lt;1&gt;"));
        assert!(page.contains("id=\"run-c_1_--v_2\""));
    }

    #[test]
    fn matrix_has_one_cell_per_case_run_and_failures_come_first() {
        let mut pass = run_with(Outcome::Pass, "ok");
        pass.case = "a-pass".into();
        let fail = run_with(Outcome::Fail, "nope");
        let page = render(&HtmlRun {
            provenance: Provenance::default(),
            runs: vec![pass, fail],
        });
        assert_eq!(page.matches("<td class=\"cell ").count(), 2);
        assert!(page.contains("<td class=\"cell o-pass\">"));
        assert!(page.contains("<td class=\"cell o-fail\">"));
        let fail_at = page.find("<section class=\"run o-fail\"").unwrap();
        let pass_at = page.find("<section class=\"run o-pass\"").unwrap();
        assert!(fail_at < pass_at);
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
