//! A case's `timeline.log`: every board's log lines (console output, commands sent, step notes)
//! and the runner's board events (acquired, flashed, booted, crashed, lost) in one file, in the
//! order the run's clock stamped them, each prefixed with its node.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
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

/// One board log read line by line: its next stamped line, and the stamp of the last one (a line
/// without a stamp stays after its predecessor).
struct LogStream<'a> {
    node: &'a str,
    reader: BufReader<File>,
    last: f64,
    next: Option<(f64, String)>,
}

impl LogStream<'_> {
    /// Read the next line to merge; header lines (`#`) go to `header` (the first one wins).
    fn advance(&mut self, header: &mut Option<String>) {
        let mut buf = Vec::new();
        self.next = loop {
            buf.clear();
            match self.reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break None,
                Ok(_) => {}
            }
            // A log cut by its cap may split a character: the rest of the line still counts.
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            match stamp(line) {
                Some(t) => {
                    self.last = t;
                    break Some((t, line.to_string()));
                }
                // A header names its board; the timeline's own says what it merges.
                None if line.starts_with('#') => {
                    header.get_or_insert_with(|| line.to_string());
                }
                None => break Some((self.last, line.to_string())),
            }
        };
    }
}

/// Merge the logs of `logs` (node -> board log) and the board events `events` into
/// `dir/timeline.log`. Lines of one board keep their order; lines of different boards go by their
/// stamps (same stamp: by node name); an event comes after the log lines of its stamp. The logs
/// are streamed, not loaded: a flooded board's log is up to its cap (64 MiB by default).
pub fn write(
    dir: &Path,
    logs: &BTreeMap<String, PathBuf>,
    events: &[BoardRecord],
) -> std::io::Result<PathBuf> {
    let mut header = None;
    let mut streams = Vec::new();
    for (node, path) in logs {
        let Ok(file) = File::open(path) else {
            continue;
        };
        let mut stream = LogStream {
            node,
            reader: BufReader::new(file),
            last: 0.0,
            next: None,
        };
        stream.advance(&mut header);
        streams.push(stream);
    }
    let mut events: Vec<(f64, &str, String)> = events
        .iter()
        .map(|e| {
            let t = e.at.as_secs_f64();
            (
                t,
                e.node.as_str(),
                format!("[{t:12.6}] === board {}", e.event.text()),
            )
        })
        .collect();
    // Stable: equal stamps keep their order.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mut events = events.into_iter().peekable();
    let path = dir.join(TIMELINE_FILE);
    let mut out = BufWriter::new(File::create(&path)?);
    if let Some(h) = header {
        let run = h.split_once("; ").map_or("", |(_, r)| r);
        writeln!(
            out,
            "# timeline of {}; {run}",
            logs.keys().cloned().collect::<Vec<_>>().join(", ")
        )?;
    }
    let width = logs
        .keys()
        .map(String::len)
        .chain(events.clone().map(|e| e.1.len()))
        .max()
        .unwrap_or(0);
    let mut ignored = None;
    loop {
        // The earliest head: by stamp, then node; a board's lines before an event of its stamp.
        let board = streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.next.as_ref().map(|(t, _)| (i, *t, s.node)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.2.cmp(b.2)));
        let event_first = match (&board, events.peek()) {
            (None, None) => break,
            (None, Some(_)) => true,
            (Some(_), None) => false,
            (Some((_, t, node)), Some((te, ne, _))) => {
                te.total_cmp(t).then_with(|| ne.cmp(node)).is_lt()
            }
        };
        let (node, line) = if event_first {
            let Some((_, node, line)) = events.next() else {
                break;
            };
            (node, line)
        } else {
            let Some(stream) = board.and_then(|(i, _, _)| streams.get_mut(i)) else {
                break;
            };
            let Some((_, line)) = stream.next.take() else {
                break;
            };
            let node = stream.node;
            stream.advance(&mut ignored);
            (node, line)
        };
        match line.split_once("] ") {
            Some((stamp, text)) if line.starts_with('[') => {
                writeln!(out, "{stamp}] {node:width$} | {text}")?;
            }
            _ => writeln!(out, "{:15}{node:width$} | {line}", "")?,
        }
    }
    out.flush()?;
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
