//! A case's `timeline.log`: every board's log lines (console output, commands sent, step notes)
//! and the runner's board events (acquired, flashed, booted, crashed, lost) in one file, in the
//! order the run's clock stamped them, each prefixed with its node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::events::BoardRecord;

/// File name of the merged log, next to the boards' logs.
pub const TIMELINE_FILE: &str = "timeline.log";

/// `[   12.345678] text` -> (12.345678, the line); None for a header or unstamped line.
fn stamp(line: &str) -> Option<f64> {
    let inner = line.strip_prefix('[')?;
    let (t, _) = inner.split_once(']')?;
    t.trim().parse().ok()
}

/// Merge the logs of `logs` (node -> board log) and the board events `events` into
/// `dir/timeline.log`. Lines of one board keep their order; lines of different boards go by their
/// stamps (same stamp: by node name); an event comes after the log lines of its stamp.
pub fn write(
    dir: &Path,
    logs: &BTreeMap<String, PathBuf>,
    events: &[BoardRecord],
) -> std::io::Result<PathBuf> {
    let mut lines: Vec<(f64, &str, String)> = Vec::new();
    let mut header = None;
    for (node, path) in logs {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let mut last = 0.0;
        for line in text.lines() {
            match stamp(line) {
                Some(t) => {
                    last = t;
                    lines.push((t, node, line.to_string()));
                }
                // A header names its board; the timeline's own says what it merges.
                None if line.starts_with('#') => {
                    header.get_or_insert_with(|| line.to_string());
                }
                // A continuation (a line without a stamp) stays after its predecessor.
                None => lines.push((last, node, line.to_string())),
            }
        }
    }
    for e in events {
        let t = e.at.as_secs_f64();
        lines.push((
            t,
            &e.node,
            format!("[{t:12.6}] === board {}", e.event.text()),
        ));
    }
    // Stable: equal stamps keep their order (a board's own lines, then the events).
    lines.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mut out = String::new();
    if let Some(h) = header {
        let run = h.split_once("; ").map_or("", |(_, r)| r);
        out.push_str(&format!(
            "# timeline of {}; {run}\n",
            logs.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let width = logs
        .keys()
        .chain(events.iter().map(|e| &e.node))
        .map(String::len)
        .max()
        .unwrap_or(0);
    for (_, node, line) in &lines {
        match line.split_once("] ") {
            Some((stamp, text)) if line.starts_with('[') => {
                out.push_str(&format!("{stamp}] {node:width$} | {text}\n"));
            }
            _ => out.push_str(&format!("{:15}{node:width$} | {line}\n", "")),
        }
    }
    let path = dir.join(TIMELINE_FILE);
    std::fs::write(&path, out)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_all_boards_in_clock_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("leader.log");
        let b = dir.path().join("child.log");
        std::fs::write(
            &a,
            "# board log of leader; [seconds] since the run started at 2026-12-02T20:05:00.000Z\n\
             [    1.000000] --- step 1 (c.toml:3): leader: state\n\
             [    3.000000] leader\n",
        )
        .expect("written");
        std::fs::write(
            &b,
            "# board log of child; [seconds] since the run started at 2026-12-02T20:05:00.000Z\n\
             [    2.000000] >>> state\n\
             [    2.500000] child\n",
        )
        .expect("written");
        let logs: BTreeMap<String, PathBuf> =
            [("leader".to_string(), a), ("child".to_string(), b)].into();
        let events = [crate::events::BoardRecord {
            node: "child".into(),
            at: std::time::Duration::from_millis(2750),
            event: crate::events::BoardEvent::Lost {
                reason: "serial port closed".into(),
            },
        }];
        let path = write(dir.path(), &logs, &events).expect("merged");
        assert_eq!(
            std::fs::read_to_string(path).expect("read"),
            "# timeline of child, leader; [seconds] since the run started at 2026-12-02T20:05:00.000Z\n\
             [    1.000000] leader | --- step 1 (c.toml:3): leader: state\n\
             [    2.000000] child  | >>> state\n\
             [    2.500000] child  | child\n\
             [    2.750000] child  | === board lost: serial port closed\n\
             [    3.000000] leader | leader\n"
        );
    }
}
