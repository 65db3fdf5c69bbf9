//! Build an [`HtmlRun`] from what a run leaves in its output folder: `results.json`, the board
//! logs (`[  t] text` lines, `>>> ` for a command written, `--- ` for a note of the harness),
//! the air capture `air.pcap` (decoded again with the case's `[sniffer]` parameters) and the
//! case's stored snapshots.
//!
//! Clock: a board log counts from its console's opening, and a case opens its consoles together,
//! so the board columns share the case's clock. The sniffer counts from its own boot, which the
//! witness does right before the first step: the air column is placed from the first step's
//! note on, which is exact to the sniffer's start-up time (milliseconds).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use ot_hil_dtls::Transcript;
use ot_hil_wire::sniffer::SnifferFrame;
use regex::Regex;
use serde::Deserialize;

use super::{
    CaseRun, EntryKind, Handshake, HtmlRun, Link, Provenance, SnapshotMismatch, StepFailure,
    Timeline, TimelineEntry,
};
use crate::air::snapshot::{self, Snapshots};
use crate::air::witness::{AIR, PCAP_FILE};
use crate::air::{AirSpec, Capture};
use crate::case::Case;
use crate::case::LoadOptions;
use crate::events::Outcome;

/// Timeline rows kept per case run; the rest are counted and left to the linked logs.
pub const MAX_TIMELINE_ENTRIES: usize = 400;

/// Why the output folder could not be read or the report not written.
#[derive(Debug, thiserror::Error)]
pub enum FromOutError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an ot-hil results file: {source}")]
    Results {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: unknown outcome {outcome:?}")]
    Outcome { path: PathBuf, outcome: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
struct ResultsFile {
    #[serde(default)]
    summary: RawSummary,
    results: Vec<RawResult>,
}

#[derive(Debug, Default, Deserialize)]
struct RawSummary {
    #[serde(default)]
    duration: f64,
    #[serde(default)]
    interrupted: bool,
}

#[derive(Debug, Deserialize)]
struct RawResult {
    case: String,
    variant: String,
    path: PathBuf,
    outcome: String,
    #[serde(default)]
    duration: f64,
    reason: Option<String>,
    failure: Option<RawFailure>,
    infra: Option<RawInfra>,
    #[serde(default)]
    logs: BTreeMap<String, PathBuf>,
    #[serde(default)]
    attempts: Vec<RawAttempt>,
    #[serde(default)]
    flaky: bool,
    quarantined: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawFailure {
    step_index: Option<usize>,
    location: String,
    node: String,
    step: String,
    expected: String,
    #[serde(default)]
    got: Vec<String>,
    crash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawInfra {
    board: String,
    step: Option<String>,
    reason: String,
}

#[derive(Debug, Deserialize)]
struct RawAttempt {
    attempt: u32,
    outcome: String,
    reason: Option<String>,
}

fn parse_outcome(label: &str, path: &Path) -> Result<Outcome, FromOutError> {
    super::ALL_OUTCOMES
        .into_iter()
        .find(|o| o.label() == label)
        .ok_or_else(|| FromOutError::Outcome {
            path: path.to_path_buf(),
            outcome: label.to_string(),
        })
}

/// Read `<out>/results.json` and everything it points at.
pub fn from_out_dir(out: &Path) -> Result<HtmlRun, FromOutError> {
    let path = out.join("results.json");
    let text = std::fs::read_to_string(&path).map_err(|source| FromOutError::Read {
        path: path.clone(),
        source,
    })?;
    let file: ResultsFile =
        serde_json::from_str(&text).map_err(|source| FromOutError::Results {
            path: path.clone(),
            source,
        })?;
    let mut runs = Vec::with_capacity(file.results.len());
    let mut boards: Vec<String> = Vec::new();
    // Loading a case compiles its patterns: once per case file, not once per variant.
    let mut specs: HashMap<PathBuf, Option<AirSpec>> = HashMap::new();
    for r in file.results {
        let spec = specs
            .entry(r.path.clone())
            .or_insert_with(|| {
                let case = Case::load(&r.path, &LoadOptions::default()).ok()?;
                Some(case.air)
            })
            .clone();
        let run = case_run(out, r, spec, &path)?;
        for n in &run.timeline.nodes {
            // The air is a column of the timeline, not a board.
            if n != AIR && !boards.contains(n) {
                boards.push(n.clone());
            }
        }
        runs.push(run);
    }
    Ok(HtmlRun {
        provenance: Provenance {
            version: env!("CARGO_PKG_VERSION").to_string(),
            commit: commit(),
            host: host(),
            clock: "seconds since the case run's consoles opened; air frames from the sniffer's \
                    boot, placed at the first step"
                .into(),
            seed: None,
            boards,
            duration: Some(Duration::from_secs_f64(file.summary.duration.max(0.0))),
            interrupted: file.summary.interrupted,
        },
        runs,
    })
}

/// Write `<out>/report.html` and `<out>/summary.md`; returns the generation time.
pub fn write_for_out_dir(out: &Path) -> Result<Duration, FromOutError> {
    let started = Instant::now();
    let run = from_out_dir(out)?;
    let page = super::render(&run);
    let md = super::markdown::render(&run);
    let elapsed = started.elapsed();
    for (name, text) in [("report.html", page), ("summary.md", md)] {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| FromOutError::Write { path, source })?;
    }
    Ok(elapsed)
}

/// The commit being tested: CI's variable, else `git` in the current directory.
fn commit() -> Option<String> {
    for var in ["GITHUB_SHA", "CI_COMMIT_SHA"] {
        if let Ok(v) = std::env::var(var)
            && !v.is_empty()
        {
            return Some(v);
        }
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !sha.is_empty()).then_some(sha)
}

fn host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn case_run(
    out: &Path,
    r: RawResult,
    spec: Option<AirSpec>,
    results: &Path,
) -> Result<CaseRun, FromOutError> {
    let outcome = parse_outcome(&r.outcome, results)?;
    let mut attempts = Vec::new();
    for a in &r.attempts {
        attempts.push(format!(
            "attempt {}: {}{}",
            a.attempt,
            parse_outcome(&a.outcome, results)?.label(),
            a.reason
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        ));
    }
    let failure = r.failure.map(|f| StepFailure {
        step_number: f.step_index.map(|i| i + 1),
        step: f.step,
        location: f.location,
        node: f.node,
        expected: f.expected,
        got: f.got,
        crash: f.crash,
    });
    let reason = match (&r.reason, &r.infra) {
        (reason, Some(i)) => Some(format!(
            "{}board {}{}: {}",
            reason
                .as_deref()
                .map(|x| format!("{x}; "))
                .unwrap_or_default(),
            i.board,
            i.step
                .as_deref()
                .map(|s| format!(" at {s}"))
                .unwrap_or_default(),
            i.reason
        )),
        (reason, None) => reason.clone(),
    };
    let mut links = Vec::new();
    let mut timeline = Vec::new();
    let mut nodes = Vec::new();
    for (key, path) in &r.logs {
        links.push(Link {
            label: path
                .file_name()
                .map_or_else(|| key.clone(), |n| n.to_string_lossy().into_owned()),
            href: relative(out, path),
        });
        // Board logs are keyed by node; the air's capture is parsed below.
        if key == PCAP_FILE || key == AIR || path.extension().is_none_or(|x| x != "log") {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            nodes.push(key.clone());
            timeline.extend(parse_log(key, &text));
        }
    }
    // The case's directory holds more than the results list: the virtual boards' own logs.
    if let Some(dir) = r.logs.values().next().and_then(|p| p.parent()) {
        links.extend(other_files(out, dir, &r.logs));
    }
    let mut handshakes = Vec::new();
    let mut mismatches = Vec::new();
    let first_step = timeline
        .iter()
        .filter(|e: &&TimelineEntry| e.kind == EntryKind::Step)
        .map(|e| e.at)
        .min()
        .unwrap_or_default();
    if let (Some(spec), Some(pcap)) = (&spec, r.logs.get(PCAP_FILE)) {
        let air = decode_air(spec, pcap, first_step);
        if !air.lines.is_empty() {
            nodes.push(AIR.to_string());
        }
        timeline.extend(air.lines);
        for (i, (t, times)) in air.connections.into_iter().enumerate() {
            handshakes.push(Handshake {
                title: format!("DTLS connection {}", i + 1),
                client: spec
                    .snapshots
                    .iter()
                    .find(|s| s.connection == i + 1)
                    .map_or_else(|| "client".into(), |s| s.client.clone()),
                server: spec
                    .snapshots
                    .iter()
                    .find(|s| s.connection == i + 1)
                    .map_or_else(|| "server".into(), |s| s.server.clone()),
                source: "air".into(),
                transcript: t,
                times,
            });
        }
    }
    if let Some(spec) = &spec {
        let snaps = Snapshots::for_case_file(&r.path);
        for s in &spec.snapshots {
            let name = Snapshots::snapshot_name(&r.case, &s.name, &r.variant);
            let stored_path = snaps.path(&name);
            let pending = stored_path.with_extension("snap.new");
            let stored = std::fs::read_to_string(&stored_path)
                .map(|t| crate::air::snapshot_file::SnapFile::parse_body(&t).to_string())
                .unwrap_or_default();
            let observed = match handshakes.get(s.connection - 1) {
                Some(h) => serde_json::to_value(&h.transcript)
                    .map(|v| snapshot::render(&v))
                    .ok(),
                None => std::fs::read_to_string(&pending)
                    .ok()
                    .map(|t| crate::air::snapshot_file::SnapFile::parse_body(&t).to_string()),
            };
            if pending.is_file() {
                links.push(Link {
                    label: format!("{name}.snap.new"),
                    href: pending.clone(),
                });
            }
            if let Some(observed) = observed
                && observed.trim() != stored.trim()
            {
                mismatches.push(SnapshotMismatch {
                    name: s.name.clone(),
                    stored,
                    observed,
                });
            }
        }
    }
    highlight(&mut timeline, failure.as_ref());
    timeline.sort_by_key(|e| e.at);
    let omitted = trim(&mut timeline, MAX_TIMELINE_ENTRIES);
    Ok(CaseRun {
        case: r.case,
        variant: r.variant,
        path: r.path.display().to_string(),
        outcome,
        flaky: r.flaky,
        duration: Duration::from_secs_f64(r.duration.max(0.0)),
        reason,
        quarantined: r.quarantined,
        attempts,
        failure,
        handshakes,
        snapshot_mismatches: mismatches,
        timeline: Timeline {
            nodes,
            entries: timeline,
            omitted,
        },
        links,
    })
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

static LOG_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[\s*([0-9]+\.[0-9]+)\] (.*)$").unwrap_or_else(|e| unreachable!("{e}"))
});
static STEP_NOTE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^step ([0-9]+) \(").unwrap_or_else(|e| unreachable!("{e}")));

/// The lines of one board log.
pub fn parse_log(node: &str, text: &str) -> Vec<TimelineEntry> {
    text.lines()
        .filter_map(|l| {
            let c = LOG_LINE.captures(l)?;
            let at = Duration::from_secs_f64(c.get(1)?.as_str().parse().ok()?);
            let body = c.get(2)?.as_str();
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

/// What the air capture of a case run shows.
struct Air {
    lines: Vec<TimelineEntry>,
    /// Each connection's transcript, with the time of each entry.
    connections: Vec<(Transcript, Vec<Option<Duration>>)>,
}

/// Decode `air.pcap` again as the witness did, one frame at a time, so that each frame's
/// one-line description and each new DTLS record get the frame's time.
fn decode_air(spec: &AirSpec, pcap: &Path, offset: Duration) -> Air {
    let mut air = Air {
        lines: vec![],
        connections: vec![],
    };
    let frames = match std::fs::File::open(pcap)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            ot_hil_wire::pcap::read_frames(std::io::BufReader::new(f)).map_err(|e| e.to_string())
        }) {
        Ok(f) => f,
        Err(e) => {
            air.lines.push(TimelineEntry {
                at: offset,
                node: AIR.into(),
                kind: EntryKind::Note,
                text: format!("{}: {e}", pcap.display()),
                highlight: true,
            });
            return air;
        }
    };
    let mut capture = Capture::new(spec.channel, spec.network_key, spec.mesh_local_prefix, None);
    let (tx, rx) = std::sync::mpsc::channel();
    capture.set_live(tx);
    let mut times: Vec<Vec<Option<Duration>>> = Vec::new();
    for f in frames {
        let at = offset + f.timestamp;
        capture.push_frame(&SnifferFrame {
            psdu: f.psdu,
            // The TAP header rounds RSSI to whole dBm as the sniffer printed it.
            rssi_dbm: f
                .rssi_dbm
                .map_or(0, |r| r.round().clamp(-128.0, 127.0) as i8),
            lqi: f.lqi.unwrap_or(0),
            timestamp_us: u64::try_from(f.timestamp.as_micros()).unwrap_or(u64::MAX),
        });
        for line in rx.try_iter() {
            // Only frames that carry UDP: acks, beacons and fragments are in the capture.
            if let Some((_, rest)) = line.split_once(" B [") {
                air.lines.push(TimelineEntry {
                    at,
                    node: AIR.into(),
                    kind: EntryKind::Air,
                    text: format!("[{rest}"),
                    highlight: false,
                });
            }
        }
        for (i, c) in capture.connections().iter().enumerate() {
            if times.len() <= i {
                times.push(Vec::new());
            }
            let n = c.transcript().entries.len();
            if let Some(t) = times.get_mut(i) {
                t.resize(n, Some(at));
            }
        }
    }
    capture.finish();
    air.connections = capture
        .connections()
        .iter()
        .zip(times)
        .map(|(c, t)| (c.transcript().clone(), t))
        .collect();
    air
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_missing_results_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = from_out_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("results.json"), "{e}");
        std::fs::write(dir.path().join("results.json"), "{\"results\": 3}").unwrap();
        let e = from_out_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not an ot-hil results file"), "{e}");
    }
}
