//! A board's log file, bounded: a board printing without end (a crash loop, `/dev/urandom`) must
//! not fill the disk. The first half of the cap is written as it comes; past it, only the most
//! recent half is kept (in memory) and written at close after a marker line saying how many
//! bytes were cut, so the log keeps both the boot and the end of the case.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};

/// Default cap of one board log: 64 MiB.
pub const DEFAULT_LOG_CAP: u64 = 64 * 1024 * 1024;
/// Environment variable that overrides [`DEFAULT_LOG_CAP`] (a number of bytes).
pub const LOG_CAP_ENV: &str = "OT_HIL_LOG_CAP";

/// The cap in force: [`LOG_CAP_ENV`] if it holds a number of bytes, else the default.
pub fn log_cap() -> u64 {
    std::env::var(LOG_CAP_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_LOG_CAP)
}

/// A log file holding at most about `cap` bytes (plus one marker line).
pub struct CappedLog {
    file: BufWriter<File>,
    /// Bytes the head may still take.
    head_left: u64,
    /// The most recent bytes past the head, at most `tail_cap` of them.
    tail: VecDeque<u8>,
    tail_cap: usize,
    /// Bytes pushed out of the tail: cut from the log.
    dropped: u64,
    /// `dropped` when the last marker was written (finishing twice writes one marker).
    marked: u64,
}

impl CappedLog {
    pub fn new(file: File, cap: u64) -> CappedLog {
        let head = cap / 2;
        CappedLog {
            file: BufWriter::new(file),
            head_left: head,
            tail: VecDeque::new(),
            tail_cap: usize::try_from(cap - head).unwrap_or(usize::MAX),
            dropped: 0,
            marked: 0,
        }
    }

    /// Append `bytes` (whole lines, as the console writes them).
    pub fn write(&mut self, bytes: &[u8]) {
        if self.tail.is_empty() && bytes.len() as u64 <= self.head_left {
            self.head_left -= bytes.len() as u64;
            let _ = self.file.write_all(bytes);
            return;
        }
        self.head_left = 0;
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(self.tail_cap);
        if excess > 0 {
            self.tail.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// Flush what is written so far (the head; the tail waits for [`CappedLog::finish`]).
    pub fn flush(&mut self) {
        let _ = self.file.flush();
    }

    /// Write the marker and the kept tail (starting at a line boundary), flush; returns the bytes
    /// cut. Writing more afterwards starts a new tail.
    pub fn finish(&mut self) -> u64 {
        if self.dropped > self.marked {
            // The tail starts mid-line: that partial line is cut too.
            let partial = self
                .tail
                .iter()
                .position(|b| *b == b'\n')
                .map_or(self.tail.len(), |i| i + 1);
            self.tail.drain(..partial);
            self.dropped += partial as u64;
            let _ = writeln!(
                self.file,
                "--- log cut: {} bytes dropped here (board log cap {} bytes, {LOG_CAP_ENV})",
                self.dropped,
                log_cap()
            );
            self.marked = self.dropped;
        }
        let (a, b) = self.tail.as_slices();
        let _ = self.file.write_all(a);
        let _ = self.file.write_all(b);
        self.tail.clear();
        self.flush();
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(cap: u64, lines: &[String]) -> (String, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.log");
        let mut log = CappedLog::new(File::create(&path).unwrap(), cap);
        for l in lines {
            log.write(l.as_bytes());
        }
        let dropped = log.finish();
        // Closing and then dropping a console finishes its log twice.
        assert_eq!(log.finish(), dropped);
        (std::fs::read_to_string(&path).unwrap(), dropped)
    }

    #[test]
    fn a_log_under_the_cap_is_written_whole() {
        let lines: Vec<String> = (0..10).map(|i| format!("line {i}\n")).collect();
        let (text, dropped) = capped(1000, &lines);
        assert_eq!(text, lines.concat());
        assert_eq!(dropped, 0);
    }

    #[test]
    fn a_flood_keeps_head_and_tail_and_counts_what_was_cut() {
        let lines: Vec<String> = (0..100_000).map(|i| format!("line {i:06}\n")).collect();
        let total: usize = lines.iter().map(String::len).sum();
        let (text, dropped) = capped(10_000, &lines);
        assert!(text.starts_with("line 000000\n"), "{}", &text[..40]);
        assert!(text.ends_with("line 099999\n"));
        let markers: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("--- log cut: "))
            .collect();
        let [marker] = markers[..] else {
            panic!("one marker where the log was cut: {markers:?}");
        };
        assert!(
            marker.contains(&format!("{dropped} bytes dropped")),
            "{marker}"
        );
        // Every byte is either in the file (but the marker) or counted as dropped.
        assert_eq!(text.len() - marker.len() - 1 + dropped as usize, total);
        assert!(text.len() < 10_000 + marker.len() + 1);
        // The tail starts at a whole line.
        let after = text.split(marker).nth(1).unwrap();
        assert!(after.starts_with("\nline "), "{}", &after[..20]);
    }
}
