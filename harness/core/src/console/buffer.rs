//! The lines a board printed, in order, timestamped, with "claimed" marks.
//!
//! Every line stays in the buffer for the whole case. A step that recognises a line claims it, so
//! the next expectation cannot match the same line again; an expectation searches all unclaimed
//! lines, so a line that arrived while another node was being driven is still found (the property
//! OpenThread's expect tests rely on).

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub text: String,
    /// Cut at the decoder's maximum length.
    pub truncated: bool,
    pub claimed: bool,
}

#[derive(Debug, Default)]
pub struct LineBuffer {
    lines: Vec<Line>,
    /// Every line before this index is claimed (search starts here).
    cursor: usize,
}

impl LineBuffer {
    pub fn push(&mut self, text: String, truncated: bool, at: Instant) -> usize {
        self.lines.push(Line {
            at,
            text,
            truncated,
            claimed: false,
        });
        self.lines.len() - 1
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Line> {
        self.lines.get(index)
    }

    /// Lines from `from` to the end.
    pub fn since(&self, from: usize) -> &[Line] {
        self.lines.get(from..).unwrap_or(&[])
    }

    /// The first unclaimed line at or after `from` for which `pred` holds.
    pub fn find_unclaimed(
        &self,
        from: usize,
        mut pred: impl FnMut(&Line) -> bool,
    ) -> Option<usize> {
        let start = from.max(self.cursor);
        self.lines
            .get(start..)?
            .iter()
            .position(|l| !l.claimed && pred(l))
            .map(|i| i + start)
    }

    /// The first line (claimed or not) at or after `from` for which `pred` holds.
    pub fn find(&self, from: usize, pred: impl FnMut(&Line) -> bool) -> Option<usize> {
        self.lines
            .get(from..)?
            .iter()
            .position(pred)
            .map(|i| i + from)
    }

    /// Index of the first unclaimed line (or `len()`).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn claim(&mut self, index: usize) {
        if let Some(l) = self.lines.get_mut(index) {
            l.claimed = true;
        }
        self.advance();
    }

    pub fn claim_range(&mut self, range: std::ops::RangeInclusive<usize>) {
        for i in range {
            if let Some(l) = self.lines.get_mut(i) {
                l.claimed = true;
            }
        }
        self.advance();
    }

    fn advance(&mut self) {
        while self.lines.get(self.cursor).is_some_and(|l| l.claimed) {
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
        b.claim_range(1..=3);
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
}
