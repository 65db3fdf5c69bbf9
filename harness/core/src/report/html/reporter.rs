//! The reporter that writes `<out>/report.html` and `<out>/summary.md` at the end of a run, fed
//! by the run's events like the other reporters, so the page says what JUnit and `results.json`
//! say: each case's result (`CaseFinished`), its boards' events (acquired, flashed, booted,
//! crashed, lost), what the air witness captured (frames, DTLS connections with the time of each
//! record, the pcap and the DTLS key log) and every snapshot compared (stored and observed
//! bodies). Only the board logs a result names are read, for the console lines of the timeline:
//! lines are not events (a board may print megabytes; its log is capped, the page keeps 400 rows).
//!
//! Clock: everything is placed on the run's clock ([`crate::run_clock`]): the board logs'
//! `[seconds]`, the board events' times, and the air frames (the sniffer's own time shifted by its
//! first frame's arrival).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use super::{
    CaseRun, EntryKind, Handshake, HtmlRun, Link, Provenance, SnapshotMismatch, StepFailure,
    Timeline, TimelineEntry,
};
use crate::air::witness::{AIR, KEY_LOG_FILE, PCAP_FILE};
use crate::events::{
    AirCapture, AttemptRecord, BoardEvent, BoardRecord, CaseResult, Reporter, RunEvent,
    SnapshotRecord, SnapshotVerdict, Summary,
};
use crate::report::provenance::RunFacts;

/// Timeline rows kept per case run; the rest are counted and left to the linked logs.
pub const MAX_TIMELINE_ENTRIES: usize = 400;

/// What one attempt of a case run told besides its result.
#[derive(Debug, Default)]
struct AttemptEvents {
    boards: Vec<BoardRecord>,
    capture: Option<AirCapture>,
    snapshots: Vec<SnapshotRecord>,
}

/// How writing the page went: its generation time, or why it was not written.
pub type HtmlOutcome = Arc<Mutex<Option<Result<Duration, String>>>>;

/// Writes `report.html` and `summary.md` into `out` when the run finishes.
pub struct HtmlReporter {
    out: PathBuf,
    run: Option<RunFacts>,
    /// Per case run and attempt, what its events told.
    attempts: HashMap<(String, String, u32), AttemptEvents>,
    runs: Vec<CaseRun>,
    outcome: HtmlOutcome,
}

impl HtmlReporter {
    pub fn new(out: PathBuf) -> HtmlReporter {
        HtmlReporter {
            out,
            run: None,
            attempts: HashMap::new(),
            runs: Vec::new(),
            outcome: HtmlOutcome::default(),
        }
    }

    /// Where the reporter leaves how writing the page went, once the run has finished.
    pub fn outcome(&self) -> HtmlOutcome {
        self.outcome.clone()
    }

    fn attempt(&mut self, case: &str, variant: &str, attempt: u32) -> &mut AttemptEvents {
        self.attempts
            .entry((case.to_string(), variant.to_string(), attempt))
            .or_default()
    }

    /// The page's model, as the events so far describe the run.
    fn model(&self, summary: &Summary) -> HtmlRun {
        let run = self.run.clone().unwrap_or_else(RunFacts::now);
        let mut boards: Vec<String> = Vec::new();
        for r in &self.runs {
            for (node, source) in &r.boards {
                let b = format!("{node} ({source})");
                if !boards.contains(&b) {
                    boards.push(b);
                }
            }
        }
        let seeds: Vec<u64> = {
            let mut s: Vec<u64> = self.runs.iter().filter_map(|r| r.seed).collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let seed = match (run.air_seed, seeds.as_slice()) {
            (Some(seed), _) => format!("{seed} (--air-seed; attempt n uses seed + n - 1)"),
            (None, []) => "none (no virtual air)".to_string(),
            (None, [one]) => format!("{one} (each case's air)"),
            (None, many) => format!(
                "per case ({}; shown with each case run)",
                many.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let on_case_clock = self.runs.iter().filter(|r| r.clock == Some("case")).count();
        let on_host_clock = self.runs.iter().filter(|r| r.clock == Some("host")).count();
        HtmlRun {
            provenance: Provenance {
                version: run.version.to_string(),
                commit: run.git_commit.map(str::to_string),
                host: Some(run.host.clone()),
                clock: format!(
                    "steps timed on the case clock (virtual time) in {on_case_clock} case runs, \
                     on the host clock in {on_host_clock}; the timelines are on the run clock: \
                     seconds since the run started at {} (board logs, board events, steps; air \
                     frames from the sniffer's clock, aligned at its first frame)",
                    run.started
                ),
                seed,
                boards,
                duration: Some(summary.duration),
                interrupted: summary.interrupted,
            },
            runs: self.runs.clone(),
        }
    }

    fn write(&self, summary: &Summary) -> Result<Duration, String> {
        let started = Instant::now();
        let run = self.model(summary);
        let page = super::render(&run);
        let md = super::markdown::render(&run);
        let elapsed = started.elapsed();
        std::fs::create_dir_all(&self.out)
            .map_err(|e| format!("cannot create {}: {e}", self.out.display()))?;
        for (name, text) in [("report.html", page), ("summary.md", md)] {
            let path = self.out.join(name);
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(elapsed)
    }
}

impl Reporter for HtmlReporter {
    fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match event {
            RunEvent::RunStarted { run, .. } => self.run = Some(run.clone()),
            RunEvent::Board {
                case,
                variant,
                attempt,
                record,
            } => self
                .attempt(case, variant, *attempt)
                .boards
                .push(record.clone()),
            RunEvent::AirCaptured {
                case,
                variant,
                attempt,
                capture,
            } => self.attempt(case, variant, *attempt).capture = Some((**capture).clone()),
            RunEvent::SnapshotCompared {
                case,
                variant,
                attempt,
                snapshot,
            } => self
                .attempt(case, variant, *attempt)
                .snapshots
                .push((**snapshot).clone()),
            // The air's counters are in the case's result; steps are in the board logs (the
            // executor notes each one there, on the same clock).
            RunEvent::CaseStarted { .. }
            | RunEvent::CaseSlow { .. }
            | RunEvent::StepStarted { .. }
            | RunEvent::StepFinished { .. }
            | RunEvent::AirCounters { .. }
            | RunEvent::AttemptFinished { .. }
            | RunEvent::Interrupted => {}
            RunEvent::CaseFinished(r) => {
                // The result is the last attempt's; earlier attempts' events are dropped.
                let last = u32::try_from(r.attempts.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(1);
                let events = self
                    .attempts
                    .remove(&(r.case.clone(), r.variant.clone(), last))
                    .unwrap_or_default();
                self.attempts
                    .retain(|(c, v, _), _| !(c == &r.case && v == &r.variant));
                self.runs.push(case_run(&self.out, r, events));
            }
            RunEvent::RunFinished(summary) => {
                let written = self.write(summary);
                if let Err(e) = &written {
                    tracing::warn!("report.html not written: {e}");
                }
                *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(written);
            }
        }
        Ok(())
    }
}

fn case_run(out: &Path, r: &CaseResult, events: AttemptEvents) -> CaseRun {
    let attempts = r.attempts.iter().map(AttemptRecord::one_line).collect();
    let failure = r.failure.as_ref().map(|f| StepFailure {
        step_number: f.step_index.map(|i| i + 1),
        step: f.step.clone(),
        location: f.location.clone(),
        node: f.node.clone(),
        expected: f.expected.clone(),
        got: f.got.clone(),
        crash: f.crash.clone(),
    });
    let reason = match (&r.reason, &r.infra) {
        (Some(reason), Some(i)) => Some(format!(
            "{reason}{} [{}]",
            i.step
                .as_deref()
                .map(|s| format!(" (at {s})"))
                .unwrap_or_default(),
            i.error.kind()
        )),
        (reason, _) => reason.clone(),
    };
    let mut links = failure_links(out, &events);
    let (mut timeline, mut nodes) = (Vec::new(), Vec::new());
    for (key, path) in &r.logs {
        if key == PCAP_FILE || key == KEY_LOG_FILE {
            continue;
        }
        links.push(Link {
            label: path
                .file_name()
                .map_or_else(|| key.clone(), |n| n.to_string_lossy().into_owned()),
            href: relative(out, path),
        });
        // Board logs are keyed by node; the others (the case's merged timeline) are only linked.
        if !r.facts.nodes.contains_key(key) || path.extension().is_none_or(|x| x != "log") {
            continue;
        }
        if let Ok(file) = std::fs::File::open(path) {
            nodes.push(key.clone());
            timeline.extend(read_log(
                key,
                std::io::BufReader::new(file),
                failure.as_ref(),
                MAX_TIMELINE_ENTRIES,
            ));
        }
    }
    // The case's directory holds more than the results list: the virtual boards' own logs.
    if let Some(dir) = r.logs.values().next().and_then(|p| p.parent()) {
        links.extend(other_files(out, dir, &r.logs));
    }
    timeline.extend(events.boards.iter().map(|b| TimelineEntry {
        at: b.at,
        node: b.node.clone(),
        kind: EntryKind::Note,
        text: format!("board {}", b.event.text()),
        highlight: matches!(
            b.event,
            BoardEvent::Crashed { .. } | BoardEvent::Lost { .. }
        ),
    }));
    if let Some(capture) = &events.capture
        && !capture.frames.is_empty()
    {
        nodes.push(AIR.to_string());
    }
    timeline.extend(events.capture.iter().flat_map(air_entries));
    highlight(&mut timeline, failure.as_ref());
    timeline.sort_by_key(|e| e.at);
    let omitted = trim(&mut timeline, MAX_TIMELINE_ENTRIES)
        + events.capture.as_ref().map_or(0, |c| c.frames_omitted);
    CaseRun {
        case: r.case.clone(),
        variant: r.variant.clone(),
        path: r.path.display().to_string(),
        outcome: r.outcome,
        flaky: r.flaky,
        duration: r.duration,
        reason,
        quarantined: r.quarantined.clone(),
        attempts,
        failure,
        handshakes: events.capture.iter().flat_map(handshakes).collect(),
        snapshot_mismatches: mismatches(&events.snapshots),
        timeline: Timeline {
            nodes,
            entries: timeline,
            omitted,
        },
        links,
        seed: r.facts.seed,
        clock: r.facts.clock,
        boards: r
            .facts
            .nodes
            .iter()
            .map(|(n, f)| (n.clone(), f.source.to_string()))
            .collect(),
    }
}

/// The air's column of the timeline: its frames and the witness's notes.
fn air_entries(capture: &AirCapture) -> impl Iterator<Item = TimelineEntry> + '_ {
    let frames = capture.frames.iter().map(|(at, text)| TimelineEntry {
        at: *at,
        node: AIR.into(),
        kind: EntryKind::Air,
        text: text.clone(),
        highlight: false,
    });
    let last = capture.frames.last().map(|(at, _)| *at).unwrap_or_default();
    let notes = capture.notes.iter().map(move |n| TimelineEntry {
        at: last,
        node: AIR.into(),
        kind: EntryKind::Note,
        text: n.clone(),
        highlight: true,
    });
    frames.chain(notes)
}

/// One ladder per DTLS connection the air witness saw.
fn handshakes(capture: &AirCapture) -> impl Iterator<Item = Handshake> + '_ {
    capture
        .connections
        .iter()
        .enumerate()
        .map(|(i, c)| Handshake {
            title: format!("DTLS connection {}", i + 1),
            client: c.client.clone(),
            server: c.server.clone(),
            source: "air".into(),
            transcript: c.transcript.clone(),
            times: c.times.clone(),
        })
}

/// The snapshots that differ from (or have no) stored one, with both bodies.
fn mismatches(snapshots: &[SnapshotRecord]) -> Vec<SnapshotMismatch> {
    snapshots
        .iter()
        .filter(|s| {
            matches!(
                s.verdict,
                SnapshotVerdict::New | SnapshotVerdict::Changed | SnapshotVerdict::ForcedPass
            )
        })
        .filter_map(|s| {
            Some(SnapshotMismatch {
                name: s.name.clone(),
                stored: s.stored_body.clone(),
                observed: s.observed_body.clone()?,
            })
        })
        .collect()
}

/// The files a reader of a failure opens first: pending `.snap.new` files, the air capture and
/// the DTLS key log that decrypts its CoAPS in Wireshark.
fn failure_links(out: &Path, events: &AttemptEvents) -> Vec<Link> {
    let mut links = Vec::new();
    for s in &events.snapshots {
        if let Some(pending) = &s.pending {
            links.push(Link {
                label: format!(
                    "{} (pending snapshot {})",
                    pending
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    s.name
                ),
                href: relative(out, pending),
            });
        }
    }
    if let Some(c) = &events.capture {
        if let Some(p) = &c.pcap {
            links.push(Link {
                label: PCAP_FILE.into(),
                href: relative(out, p),
            });
        }
        if let Some(k) = &c.key_log {
            links.push(Link {
                label: format!("DTLS key log ({KEY_LOG_FILE})"),
                href: relative(out, k),
            });
        }
    }
    links
}

/// Files of a case's log directory that `logs` does not list, sorted by name.
fn other_files(out: &Path, dir: &Path, logs: &BTreeMap<String, PathBuf>) -> Vec<Link> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut paths: Vec<PathBuf> = read
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file() && !logs.values().any(|l| l == p))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| Link {
            label: p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            href: relative(out, p),
        })
        .collect()
}

/// `path` as the page (in `out`) reaches it.
fn relative(out: &Path, path: &Path) -> PathBuf {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs(path)
        .strip_prefix(abs(out))
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| abs(path))
}

static STEP_NOTE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^step ([0-9]+) \(").unwrap_or_else(|e| unreachable!("{e}")));

/// The lines of one board log.
pub fn parse_log(node: &str, text: &str) -> Vec<TimelineEntry> {
    text.lines()
        .filter_map(|l| {
            let (stamp, body) = l.strip_prefix('[')?.split_once("] ")?;
            let stamp = stamp.trim_start();
            let (whole, fraction) = stamp.split_once('.')?;
            let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
            if !digits(whole) || !digits(fraction) {
                return None;
            }
            let at = Duration::from_secs_f64(stamp.parse().ok()?);
            let (kind, text) = if let Some(t) = body.strip_prefix(">>> ") {
                (EntryKind::Sent, t)
            } else if let Some(t) = body.strip_prefix("--- ") {
                if STEP_NOTE.is_match(t) {
                    (EntryKind::Step, t)
                } else {
                    (EntryKind::Note, t)
                }
            } else {
                (EntryKind::Console, body)
            };
            Some(TimelineEntry {
                at,
                node: node.to_string(),
                kind,
                text: text.to_string(),
                highlight: false,
            })
        })
        .collect()
}

/// The entries of a board log that [`trim`] could keep, in the log's order: every step,
/// command, note and highlighted line, and the last `max` console lines. Read line by line: a
/// flooded board's log is up to its cap (64 MiB by default), and a cut may split a character.
fn read_log(
    node: &str,
    reader: impl std::io::BufRead,
    failure: Option<&StepFailure>,
    max: usize,
) -> Vec<TimelineEntry> {
    let mut kept = Vec::new();
    let mut recent = std::collections::VecDeque::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let Ok(bytes) = line else { break };
        for mut e in parse_log(node, &String::from_utf8_lossy(&bytes)) {
            highlight(std::slice::from_mut(&mut e), failure);
            if e.highlight || !matches!(e.kind, EntryKind::Console | EntryKind::Air) {
                kept.push((i, e));
            } else {
                if recent.len() >= max {
                    recent.pop_front();
                }
                recent.push_back((i, e));
            }
        }
    }
    kept.extend(recent);
    kept.sort_by_key(|(i, _)| *i);
    kept.into_iter().map(|(_, e)| e).collect()
}

/// Lines a reader of a failure looks for: crashes, resets, DTLS alerts, lost sessions.
static ALARM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(alert|fatal|crash\w*|assert\w*|hard ?fault|panic\w*|reboot\w*|reset reason|disconnected)\b")
        .unwrap_or_else(|e| unreachable!("{e}"))
});

fn highlight(entries: &mut [TimelineEntry], failure: Option<&StepFailure>) {
    let failing_step = failure.and_then(|f| Some((f.node.as_str(), f.step_number?)));
    for e in entries {
        e.highlight = match e.kind {
            EntryKind::Step => failing_step.is_some_and(|(node, n)| {
                e.node == node
                    && STEP_NOTE
                        .captures(&e.text)
                        .and_then(|c| c.get(1)?.as_str().parse::<usize>().ok())
                        == Some(n)
            }),
            EntryKind::Console | EntryKind::Air | EntryKind::Note => {
                ALARM.is_match(&e.text)
                    || failure
                        .and_then(|f| f.crash.as_deref())
                        .is_some_and(|c| e.text.contains(c))
            }
            EntryKind::Sent => false,
        };
    }
}

/// Keep at most `max` entries: steps, commands, notes and highlighted lines first, then the
/// console and air lines nearest the end (where a failure is). Returns how many were dropped.
fn trim(entries: &mut Vec<TimelineEntry>, max: usize) -> usize {
    if entries.len() <= max {
        return 0;
    }
    let important =
        |e: &TimelineEntry| e.highlight || !matches!(e.kind, EntryKind::Console | EntryKind::Air);
    let n_important = entries.iter().filter(|e| important(e)).count();
    let mut room = max.saturating_sub(n_important);
    let mut keep = vec![false; entries.len()];
    for (i, e) in entries.iter().enumerate().rev() {
        if important(e) {
            keep[i] = true;
        } else if room > 0 {
            keep[i] = true;
            room -= 1;
        }
    }
    let before = entries.len();
    let mut k = keep.into_iter();
    entries.retain(|_| k.next().unwrap_or(false));
    before - entries.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ObservedConnection, Outcome};

    /// The events of one failed case run whose snapshot changed and whose server crashed.
    fn failed_run_events(out: &Path) -> Vec<RunEvent> {
        let dir = out.join("logs/c/v");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("server.log");
        std::fs::write(
            &log,
            "[    1.000000] --- step 1 (c.toml:3:1): server: send `x`\n",
        )
        .unwrap();
        let (case, variant) = ("c".to_string(), "v".to_string());
        let mut result = CaseResult::new(
            case.clone(),
            variant.clone(),
            "c.toml".into(),
            Outcome::Fail,
        );
        result.logs.insert("server".into(), log);
        result
            .facts
            .nodes
            .insert("server".into(), Default::default());
        result.facts.seed = Some(7);
        result.facts.clock = Some("case");
        let pending = out.join("snapshots/c__h__v.snap.new");
        vec![
            RunEvent::RunStarted {
                cases: 1,
                variants: vec![variant.clone()],
                planned: 1,
                jobs: 1,
                run: RunFacts::now(),
            },
            RunEvent::Board {
                case: case.clone(),
                variant: variant.clone(),
                attempt: 1,
                record: BoardRecord {
                    node: "server".into(),
                    at: Duration::from_secs(2),
                    event: BoardEvent::Crashed {
                        reason: "fatal error".into(),
                    },
                },
            },
            RunEvent::AirCaptured {
                case: case.clone(),
                variant: variant.clone(),
                attempt: 1,
                capture: Box::new(AirCapture {
                    pcap: Some(dir.join(PCAP_FILE)),
                    key_log: Some(dir.join(KEY_LOG_FILE)),
                    frames: vec![(
                        Duration::from_millis(1500),
                        "[fd00::1]:5684 -> [fd00::2]:5684 UDP 90 B".into(),
                    )],
                    connections: vec![ObservedConnection {
                        client: "client".into(),
                        server: "server".into(),
                        transcript: Default::default(),
                        times: vec![],
                    }],
                    ..AirCapture::default()
                }),
            },
            RunEvent::SnapshotCompared {
                case: case.clone(),
                variant: variant.clone(),
                attempt: 1,
                snapshot: Box::new(SnapshotRecord {
                    name: "h".into(),
                    client: "client".into(),
                    server: "server".into(),
                    source: "air",
                    verdict: SnapshotVerdict::Changed,
                    stored: out.join("snapshots/c__h__v.snap"),
                    pending: Some(pending),
                    diff: Some("-a\n+b\n".into()),
                    stored_body: "a\n".into(),
                    observed_body: Some("b\n".into()),
                    note: None,
                }),
            },
            RunEvent::CaseFinished(Box::new(result)),
            RunEvent::RunFinished(Summary::default()),
        ]
    }

    #[test]
    fn the_page_is_built_from_the_events_alone() {
        let out = tempfile::tempdir().unwrap();
        let mut reporter = HtmlReporter::new(out.path().to_path_buf());
        let written = reporter.outcome();
        for e in failed_run_events(out.path()) {
            reporter.on_event(&e).unwrap();
        }
        assert!(matches!(*written.lock().unwrap(), Some(Ok(_))));
        let page = std::fs::read_to_string(out.path().join("report.html")).unwrap();
        // Failure-first links: the pending snapshot, the capture, the key log.
        for href in [
            "snapshots/c__h__v.snap.new",
            "logs/c/v/air.pcap",
            "logs/c/v/dtls-keys.log",
        ] {
            assert!(page.contains(&format!("href=\"{href}\"")), "{href}: {page}");
        }
        assert!(page.contains("DTLS key log (dtls-keys.log)"), "{page}");
        // The board's crash and the air's frame are on the timeline, in time order; the crash is
        // highlighted.
        let crash = page
            .find("<tr class=\"k-note hl\" data-node=\"server\"><td class=\"t\">2.000</td>")
            .expect("the crash on the timeline");
        let frame = page
            .find("[fd00::1]:5684 -&gt; [fd00::2]:5684 UDP 90 B")
            .expect("the frame on the timeline");
        assert!(frame < crash, "{page}");
        // The changed snapshot shows both ladders; the case's seed is in its summary line and
        // the run's provenance.
        assert!(page.contains("Snapshot h differs"), "{page}");
        assert!(page.contains("seed 7 · case clock"), "{page}");
        assert!(
            page.contains("steps timed on the case clock (virtual time) in 1 case runs"),
            "{page}"
        );
        assert!(page.contains("7 (each case"), "{page}");
        assert!(std::fs::read_to_string(out.path().join("summary.md")).is_ok());
    }

    #[test]
    fn log_lines_become_timeline_entries_by_kind() {
        let log = "[    0.000100] --- flash ncs-v2.2.0 (abc)\n\
                   [    1.500000] --- step 3 (x.toml:4:1): client: send `coaps start`\n\
                   [    1.500200] >>> coaps start\n\
                   [    1.600000] coaps disconnected\n\
                   not a log line\n";
        let mut e = parse_log("client", log);
        assert_eq!(
            e.iter().map(|x| x.kind).collect::<Vec<_>>(),
            [
                EntryKind::Note,
                EntryKind::Step,
                EntryKind::Sent,
                EntryKind::Console
            ]
        );
        assert_eq!(e[3].at, Duration::from_millis(1600));
        let f = StepFailure {
            node: "client".into(),
            step_number: Some(3),
            ..StepFailure::default()
        };
        highlight(&mut e, Some(&f));
        assert_eq!(
            e.iter().map(|x| x.highlight).collect::<Vec<_>>(),
            [false, true, false, true]
        );
    }

    #[test]
    fn trimming_keeps_steps_and_the_latest_lines() {
        let mut e: Vec<TimelineEntry> = (0..10)
            .map(|i| TimelineEntry {
                at: Duration::from_secs(i),
                node: "n".into(),
                kind: if i == 0 {
                    EntryKind::Step
                } else {
                    EntryKind::Console
                },
                text: i.to_string(),
                highlight: false,
            })
            .collect();
        assert_eq!(trim(&mut e, 4), 6);
        assert_eq!(
            e.iter().map(|x| x.text.as_str()).collect::<Vec<_>>(),
            ["0", "7", "8", "9"]
        );
    }
}
