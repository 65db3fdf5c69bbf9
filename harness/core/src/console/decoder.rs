//! Console framing: bytes in, lines out, independent of any I/O.
//!
//! A board's UART is a terminal stream, not a line protocol: lines end in `\r\n`, `\n` or a lone
//! `\r`; the Zephyr shell colours its prompt with VT100 sequences and erases/redraws the prompt
//! around asynchronous output; a prompt is printed without a newline, so the next asynchronous
//! line arrives glued to it (`uart:~$ coaps connected`). The decoder
//! - strips CSI (`ESC [ ... final`), OSC (`ESC ] ... BEL|ESC \`) and other escape sequences,
//! - ends a line at `\r` or `\n` and drops empty lines (so any CR/LF mix frames the same),
//! - strips leading prompts from each line and reports a bare prompt as [`ConsoleItem::Prompt`],
//! - applies backspace, drops other control bytes, and cuts lines at a maximum length,
//!   reporting the pieces as truncated lines rather than failing (garbage is an item, not an error).
//!
//! State survives between [`LineDecoder::feed`] calls, so input may be split at any byte.

/// What the decoder produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleItem {
    /// A complete line, escape sequences and leading prompts removed, trailing whitespace trimmed.
    Line { text: String, truncated: bool },
    /// A prompt is showing (the pending partial line is exactly one or more prompts).
    Prompt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [`: parameters until a final byte 0x40..=0x7e.
    Csi,
    /// Inside `ESC ]`: until BEL or `ESC \`.
    Osc,
    /// ESC seen inside an OSC.
    OscEsc,
    /// `ESC` + intermediate bytes (0x20..=0x2f), until a final byte (e.g. `ESC ( B`).
    Intermediate,
}

/// Default maximum line length (OpenThread's CLI lines are far shorter; a longer one is noise).
pub const DEFAULT_MAX_LINE: usize = 4096;

/// Line framing for one console.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    prompts: Vec<Vec<u8>>,
    max_line: usize,
    buf: Vec<u8>,
    escape: Escape,
    /// The current line continues one that was cut at `max_line`.
    continued: bool,
}

impl LineDecoder {
    /// `prompts`: every prompt the board may print (e.g. `["uart:~$ "]` or `["> "]`).
    pub fn new(prompts: &[&str], max_line: usize) -> LineDecoder {
        LineDecoder {
            prompts: prompts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            max_line: max_line.max(1),
            buf: Vec::new(),
            escape: Escape::None,
            continued: false,
        }
    }

    /// The partial line received so far (for diagnostics).
    pub fn pending(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Feed bytes; complete items are appended to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<ConsoleItem>) {
        for &b in bytes {
            self.byte(b, out);
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<ConsoleItem>) {
        const ESC: u8 = 0x1b;
        // A line end aborts any escape sequence, so garbage (an unterminated OSC) cannot swallow
        // the rest of the stream.
        if matches!(b, b'\r' | b'\n') {
            self.escape = Escape::None;
        }
        match self.escape {
            Escape::Start => {
                self.escape = match b {
                    b'[' => Escape::Csi,
                    b']' => Escape::Osc,
                    0x20..=0x2f => Escape::Intermediate,
                    _ => Escape::None,
                };
                return;
            }
            Escape::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.escape = Escape::None;
                }
                return;
            }
            Escape::Osc => {
                match b {
                    0x07 => self.escape = Escape::None,
                    ESC => self.escape = Escape::OscEsc,
                    _ => {}
                }
                return;
            }
            Escape::OscEsc => {
                self.escape = if b == b'\\' {
                    Escape::None
                } else {
                    Escape::Osc
                };
                return;
            }
            Escape::Intermediate => {
                if (0x30..=0x7e).contains(&b) {
                    self.escape = Escape::None;
                }
                return;
            }
            Escape::None => {}
        }
        match b {
            ESC => self.escape = Escape::Start,
            b'\r' | b'\n' => self.end_line(out),
            0x08 => {
                // Backspace: pop one whole UTF-8 character.
                while let Some(last) = self.buf.pop() {
                    if last & 0xc0 != 0x80 {
                        break;
                    }
                }
            }
            b'\t' => self.push(b, out),
            0x00..=0x1f | 0x7f => {}
            _ => self.push(b, out),
        }
    }

    fn push(&mut self, b: u8, out: &mut Vec<ConsoleItem>) {
        self.buf.push(b);
        if self.buf.len() >= self.max_line {
            self.emit(true, out);
            self.continued = true;
            return;
        }
        if self.prompts.iter().any(|p| self.buf.ends_with(p))
            && strip_prompts(&self.prompts, &self.buf).is_empty()
        {
            out.push(ConsoleItem::Prompt);
        }
    }

    fn end_line(&mut self, out: &mut Vec<ConsoleItem>) {
        let truncated = self.continued;
        self.emit(truncated, out);
        self.continued = false;
    }

    fn emit(&mut self, truncated: bool, out: &mut Vec<ConsoleItem>) {
        let stripped = strip_prompts(&self.prompts, &self.buf);
        let text = String::from_utf8_lossy(stripped);
        let text = text.trim_end();
        if !text.is_empty() {
            out.push(ConsoleItem::Line {
                text: text.to_string(),
                truncated,
            });
        }
        self.buf.clear();
    }
}

/// Remove any number of leading prompts (a redraw can leave two in a row).
fn strip_prompts<'a>(prompts: &[Vec<u8>], mut line: &'a [u8]) -> &'a [u8] {
    'outer: loop {
        for p in prompts {
            if let Some(rest) = line.strip_prefix(p.as_slice()) {
                line = rest;
                continue 'outer;
            }
        }
        return line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> ConsoleItem {
        ConsoleItem::Line {
            text: s.to_string(),
            truncated: false,
        }
    }

    fn decode_chunks(prompts: &[&str], max: usize, chunks: &[&[u8]]) -> Vec<ConsoleItem> {
        let mut d = LineDecoder::new(prompts, max);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out);
        }
        out
    }

    /// The same items whether the input comes whole, split once at any position, or byte by byte.
    fn check_splits(prompts: &[&str], input: &[u8], expected: &[ConsoleItem]) {
        let whole = decode_chunks(prompts, DEFAULT_MAX_LINE, &[input]);
        assert_eq!(
            whole,
            expected,
            "whole input {:?}",
            String::from_utf8_lossy(input)
        );
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(
                decode_chunks(prompts, DEFAULT_MAX_LINE, &[a, b]),
                expected,
                "split at {i}"
            );
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            decode_chunks(prompts, DEFAULT_MAX_LINE, &bytes),
            expected,
            "byte by byte"
        );
    }

    const NCS: &[&str] = &["uart:~$ "];
    const UPSTREAM: &[&str] = &["> "];

    #[test]
    fn ncs_command_round_trip() {
        check_splits(
            NCS,
            b"uart:~$ ot state\r\nleader\r\nDone\r\nuart:~$ ",
            &[
                ConsoleItem::Prompt,
                line("ot state"),
                line("leader"),
                line("Done"),
                ConsoleItem::Prompt,
            ],
        );
    }

    #[test]
    fn coloured_prompt_glued_to_async_line() {
        check_splits(
            NCS,
            b"\x1b[1;32muart:~$ \x1b[mcoaps connected\r\n",
            &[ConsoleItem::Prompt, line("coaps connected")],
        );
        check_splits(
            NCS,
            b"uart:~$ coaps connected\r\n",
            &[ConsoleItem::Prompt, line("coaps connected")],
        );
        check_splits(
            UPSTREAM,
            b"> coaps connected\n",
            &[ConsoleItem::Prompt, line("coaps connected")],
        );
    }

    #[test]
    fn zephyr_erase_and_redraw_around_async_output() {
        // Prompt shown, shell erases the line, prints the message, redraws the prompt.
        check_splits(
            NCS,
            b"\x1b[1;32muart:~$ \x1b[m\r\x1b[Kcoaps response from fdde:ad00:beef:0:0:ff:fe00:fc00\r\n\x1b[1;32muart:~$ \x1b[m",
            &[
                ConsoleItem::Prompt,
                line("coaps response from fdde:ad00:beef:0:0:ff:fe00:fc00"),
                ConsoleItem::Prompt,
            ],
        );
    }

    #[test]
    fn cr_lf_mixes_frame_the_same() {
        check_splits(
            UPSTREAM,
            b"a\rb\nc\r\n\r\nd\n\re\r\r\n",
            &[line("a"), line("b"), line("c"), line("d"), line("e")],
        );
    }

    #[test]
    fn osc_and_other_escapes_are_removed() {
        check_splits(
            UPSTREAM,
            b"\x1b]0;title\x07he\x1b(Bllo\r\n\x1b]2;t\x1b\\x\x1b7y\r\n",
            &[line("hello"), line("xy")],
        );
    }

    #[test]
    fn control_bytes_and_backspace() {
        check_splits(UPSTREAM, b"ab\x00c\x08d\x07\tz \r\n", &[line("abd\tz")]);
    }

    #[test]
    fn utf8_split_inside_a_character() {
        check_splits(UPSTREAM, "état → ok\r\n".as_bytes(), &[line("état → ok")]);
    }

    #[test]
    fn several_prompts_before_echo() {
        check_splits(
            UPSTREAM,
            b"> > state\r\n",
            &[ConsoleItem::Prompt, ConsoleItem::Prompt, line("state")],
        );
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        let out = decode_chunks(UPSTREAM, 4, &[b"abcdefghij\r\nok\n"]);
        assert_eq!(
            out,
            vec![
                ConsoleItem::Line {
                    text: "abcd".into(),
                    truncated: true
                },
                ConsoleItem::Line {
                    text: "efgh".into(),
                    truncated: true
                },
                ConsoleItem::Line {
                    text: "ij".into(),
                    truncated: true
                },
                line("ok"),
            ]
        );
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut d = LineDecoder::new(NCS, 64);
        let mut out = Vec::new();
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        d.feed(&noise, &mut out);
        d.feed(b"\r\nDone\r\n", &mut out);
        assert_eq!(out.last(), Some(&line("Done")));
    }
}
