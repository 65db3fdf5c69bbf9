//! The lines a board printed, in order, timestamped, with "claimed" marks.
//!
//! Lines stay in the buffer for the whole case, up to [`MAX_LINES`] and [`MAX_BYTES`]. A step that recognises a line
//! claims it, so the next expectation cannot match the same line again; an expectation searches all
//! unclaimed lines, so a line that arrived while another node was being driven is still found (the
//! property OpenThread's expect tests rely on).
//!
//! Indices are absolute (line N of the case stays N) even after the oldest lines are dropped: a
//! board that prints a log line every millisecond for hours must not grow the runner without
//! bound. Dropped lines are still in the board's log file.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub text: String,
    /// Cut at the decoder's maximum length.
    pub truncated: bool,
    pub claimed: bool,
}

/// How many lines of one board the buffer keeps; older ones are dropped in blocks of this size
/// once twice as many have arrived (amortised O(1) per line).
pub const MAX_LINES: usize = 50_000;
/// How many bytes of text of one board the buffer keeps, likewise (lines run up to the
/// decoder's 4 kB: 50,000 of them would be 200 MB).
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct LineBuffer {
    /// Lines `base..base + lines.len()` of the case.
    lines: Vec<Line>,
    /// Absolute index of `lines[0]`: how many lines were dropped.
    base: usize,
    /// Every line before this absolute index is claimed or dropped (search starts here).
    cursor: usize,
    /// Bytes of text in `lines`.
    bytes: usize,
}

impl LineBuffer {
    pub fn push(&mut self, text: String, truncated: bool, at: Instant) -> usize {
        if self.lines.len() >= 2 * MAX_LINES || self.bytes >= 2 * MAX_BYTES {
            // The oldest lines, down to at most half of each bound.
            let mut drop = self.lines.len().saturating_sub(MAX_LINES);
            let mut bytes: usize = self.lines.iter().take(drop).map(|l| l.text.len()).sum();
            while self.bytes - bytes > MAX_BYTES {
                bytes += self.lines.get(drop).map_or(0, |l| l.text.len());
                drop += 1;
            }
            self.lines.drain(..drop);
            self.bytes -= bytes;
            self.base += drop;
            self.cursor = self.cursor.max(self.base);
        }
        self.bytes += text.len();
        self.lines.push(Line {
            at,
            text,
            truncated,
            claimed: false,
        });
        self.len() - 1
    }

    /// Absolute index one past the last line.
    pub fn len(&self) -> usize {
        self.base + self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many of the oldest lines were dropped.
    pub fn dropped(&self) -> usize {
        self.base
    }

    pub fn get(&self, index: usize) -> Option<&Line> {
        self.lines.get(index.checked_sub(self.base)?)
    }

    /// Lines from `from` to the end (those still kept).
    pub fn since(&self, from: usize) -> &[Line] {
        self.lines
            .get(from.saturating_sub(self.base)..)
            .unwrap_or(&[])
    }

    /// The first unclaimed line at or after `from` for which `pred` holds.
    pub fn find_unclaimed(
        &self,
        from: usize,
        mut pred: impl FnMut(&Line) -> bool,
    ) -> Option<usize> {
        let start = from.max(self.cursor);
        self.lines
            .get(start - self.base..)?
            .iter()
            .position(|l| !l.claimed && pred(l))
            .map(|i| i + start)
    }

    /// The first line (claimed or not) at or after `from` for which `pred` holds.
    pub fn find(&self, from: usize, pred: impl FnMut(&Line) -> bool) -> Option<usize> {
        let start = from.max(self.base);
        self.lines
            .get(start - self.base..)?
            .iter()
            .position(pred)
            .map(|i| i + start)
    }

    /// Index of the first unclaimed line (or `len()`).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn claim(&mut self, index: usize) {
        if let Some(l) = index
            .checked_sub(self.base)
            .and_then(|i| self.lines.get_mut(i))
        {
            l.claimed = true;
        }
        self.advance();
    }

    fn advance(&mut self) {
        while self.get(self.cursor).is_some_and(|l| l.claimed) {
            self.cursor += 1;
        }
    }

    /// The last `n` lines' text.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let start = self.lines.len().saturating_sub(n);
        self.lines[start..].iter().map(|l| l.text.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_move_the_cursor_and_hide_lines() {
        let now = Instant::now();
        let mut b = LineBuffer::default();
        for t in ["coaps connected", "ot state", "leader", "Done"] {
            b.push(t.into(), false, now);
        }
        // The command's lines are claimed; the async line before them stays findable.
        for i in 1..=3 {
            b.claim(i);
        }
        assert_eq!(b.cursor(), 0);
        assert_eq!(b.find_unclaimed(0, |l| l.text == "leader"), None);
        assert_eq!(
            b.find_unclaimed(0, |l| l.text.starts_with("coaps")),
            Some(0)
        );
        b.claim(0);
        assert_eq!(b.cursor(), 4);
        assert_eq!(b.find_unclaimed(0, |_| true), None);
        assert_eq!(b.find(0, |l| l.text == "Done"), Some(3));
        assert_eq!(b.tail(2), ["leader", "Done"]);
        assert!(b.since(10).is_empty());
    }

    #[test]
    fn a_chatty_board_is_bounded_and_indices_stay_absolute() {
        let now = Instant::now();
        let mut b = LineBuffer::default();
        let total = 3 * MAX_LINES + 7;
        for i in 0..total {
            assert_eq!(b.push(format!("log {i}"), false, now), i);
        }
        assert_eq!(b.len(), total);
        assert!(b.lines.len() <= 2 * MAX_LINES);
        assert_eq!(b.dropped(), total - b.lines.len());
        // Dropped lines are gone; kept ones are found at their absolute index.
        assert!(b.get(0).is_none());
        let last = format!("log {}", total - 1);
        assert_eq!(b.find_unclaimed(0, |l| l.text == last), Some(total - 1));
        assert_eq!(b.find(0, |l| l.text == last), Some(total - 1));
        // The cursor moved past the dropped lines to the first kept (unclaimed) one.
        assert_eq!(b.cursor(), b.dropped());
        b.claim(total - 1);
        assert_eq!(b.cursor(), b.dropped());
        for i in b.dropped()..=total - 2 {
            b.claim(i);
        }
        assert_eq!(b.cursor(), total);
        assert_eq!(b.since(total - 1).len(), 1);
        assert_eq!(b.since(0).len(), b.lines.len());
    }

    #[test]
    fn long_lines_are_bounded_by_their_bytes_too() {
        let now = Instant::now();
        let mut b = LineBuffer::default();
        let line = "x".repeat(4000);
        let total = 3 * MAX_BYTES / line.len();
        for i in 0..total {
            assert_eq!(b.push(line.clone(), false, now), i);
        }
        let kept: usize = b.lines.iter().map(|l| l.text.len()).sum();
        assert!(kept <= 2 * MAX_BYTES, "{kept}");
        assert_eq!(kept, b.bytes);
        assert_eq!(b.len(), total);
        assert_eq!(b.dropped(), total - b.lines.len());
        assert!(b.get(total - 1).is_some());
    }
}
