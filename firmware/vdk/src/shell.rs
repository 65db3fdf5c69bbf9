//! Console line discipline: the Zephyr shell (NCS profile) and OpenThread's own CLI UART
//! (upstream profile), as byte-in / byte-out state machines without I/O.
//!
//! Keeping this pure lets unit tests check exact bytes (echo, erase sequences, prompt redraw)
//! and lets the device loop feed whatever chunks the PTY delivers: a command split across reads
//! or several commands in one read behave the same.
//!
//! Zephyr behaviour modelled here (subsys/shell/shell.c, shell_ops.c; see firmware/README.md):
//! * bytes above 0x7f are dropped (`ascii_filter`), other non-printable control bytes are ignored;
//! * `\r` or `\n` ends a command; the second byte of `\r\n` / `\n\r` is swallowed, but `\r\r`
//!   is two (empty) lines (`process_nl`);
//! * printable characters are inserted and echoed; once the buffer holds
//!   `CONFIG_SHELL_CMD_BUFF_SIZE - 1` bytes further characters are dropped without echo, and the
//!   (truncated) line is executed on Enter;
//! * backspace (0x08) and DEL (0x7f) erase the previous character (`\x1b[1D\x1b[J`);
//! * output that is not the reply to a command (from another thread) erases the prompt line
//!   (cursor back to column 1, `\x1b[J`) and reprints prompt and typed text afterwards.

use crate::firmware::Profile;

/// Terminal width Zephyr assumes until it has queried the terminal (CONFIG_SHELL_DEFAULT_TERMINAL_WIDTH).
const TERMINAL_WIDTH: usize = 80;

/// VT100 colour Zephyr uses for the prompt (SHELL_INFO: bright green).
const COLOR_GREEN: &[u8] = b"\x1b[1;32m";
/// VT100 colour for SHELL_ERROR output (bright red).
const COLOR_RED: &[u8] = b"\x1b[1;31m";
/// Attribute reset after a coloured print.
const COLOR_RESET: &[u8] = b"\x1b[m";

/// Settings derived from the firmware's profile and Kconfig.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    pub profile: Profile,
    /// `CONFIG_SHELL_PROMPT_UART` (NCS) or `> ` (upstream).
    pub prompt: String,
    /// `CONFIG_SHELL_VT100_COLORS`.
    pub colors: bool,
    /// `CONFIG_SHELL_VT100_COMMANDS`: erase/redraw around asynchronous output.
    pub vt100: bool,
    /// `CONFIG_SHELL_ECHO_STATUS`.
    pub echo: bool,
    /// `CONFIG_SHELL_CMD_BUFF_SIZE` (the buffer keeps one byte for the terminating NUL).
    pub cmd_buff_size: usize,
    /// `CONFIG_SHELL_HISTORY_BUFFER` when `CONFIG_SHELL_HISTORY` is on (bytes of the history
    /// heap); 0: no history.
    pub history_bytes: usize,
}

impl ShellConfig {
    /// OpenThread CLI on a UART: `> ` prompt, echo, no colours, line buffer of
    /// OPENTHREAD_CONFIG_CLI_MAX_LINE_LENGTH (384).
    pub fn upstream() -> Self {
        ShellConfig {
            profile: Profile::Upstream,
            prompt: "> ".into(),
            colors: false,
            vt100: false,
            echo: true,
            cmd_buff_size: 384,
            // OpenThread's UART CLI has no history.
            history_bytes: 0,
        }
    }
}

/// Line editor state of one console.
#[derive(Debug)]
pub struct Shell {
    cfg: ShellConfig,
    buf: Vec<u8>,
    /// The newline byte that ended the previous line, to swallow the other half of a CRLF pair.
    last_nl: Option<u8>,
    /// Position in a VT100 escape sequence being received (arrow keys etc.).
    escape: Escape,
    /// Command history (up/down arrows, Ctrl+P/Ctrl+N).
    history: History,
}

/// Zephyr's `shell_history.c`: executed lines, newest first, in a heap of
/// `CONFIG_SHELL_HISTORY_BUFFER` bytes (oldest lines dropped until a new one fits; a line equal
/// to the newest is not stored again), and the browsing state of `shell.c` `history_handle`.
#[derive(Debug, Default)]
struct History {
    /// Newest first.
    lines: std::collections::VecDeque<Vec<u8>>,
    budget: usize,
    /// Browsing: index into `lines` of the line shown (`history->current`).
    current: Option<usize>,
    /// The line being typed when browsing started (`temp_buff`), restored past either end.
    backup: Vec<u8>,
    /// `z_flag_history_exit`: the next arrow key starts browsing from the newest line again
    /// (set by Enter, Ctrl+C, typing and erasing).
    exit: bool,
}

/// What one history entry costs in the history heap besides its text: the list node, the length
/// and the padding of `struct shell_history_item`, plus the heap's chunk header. An estimate of
/// k_heap's accounting (8-byte chunks), so how many lines fit is close to, not exactly, Zephyr's.
const HISTORY_ITEM_OVERHEAD: usize = 16;

impl History {
    fn new(budget: usize) -> History {
        History {
            budget,
            ..History::default()
        }
    }

    fn cost(line: &[u8]) -> usize {
        (line.len() + HISTORY_ITEM_OVERHEAD).next_multiple_of(8)
    }

    /// `z_shell_history_put` (after `z_shell_cmd_trim`): leaves browsing mode; empty lines,
    /// repeats of the newest line and lines larger than the whole heap are not stored.
    fn put(&mut self, line: &[u8]) {
        self.current = None;
        if line.is_empty() || self.lines.front().is_some_and(|l| l == line) {
            return;
        }
        let cost = Self::cost(line);
        if cost > self.budget {
            return;
        }
        while self.lines.iter().map(|l| Self::cost(l)).sum::<usize>() + cost > self.budget {
            self.lines.pop_back();
        }
        self.lines.push_front(line.to_vec());
    }

    /// `z_shell_history_get`: the next line in direction `up`, `None` when browsing ends
    /// (past the oldest line going up, past the newest going down).
    fn get(&mut self, up: bool) -> Option<&[u8]> {
        let next = match (self.current, up) {
            (None, true) => Some(0),
            (None, false) => None,
            (Some(i), true) => Some(i + 1),
            (Some(i), false) => i.checked_sub(1),
        }
        .filter(|&i| i < self.lines.len());
        self.current = next;
        next.and_then(|i| self.lines.get(i)).map(Vec::as_slice)
    }
}

/// `shell_receive_state`: escape sequences are consumed, never inserted as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Esc,
    /// After `ESC [`.
    Sequence,
    /// After `ESC [ 1..4`: one more byte (`~`) to swallow.
    Tilde,
}

/// Build the bytes of one output line (text + `\r\n`).
pub fn line(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl Shell {
    /// One line of OpenThread CLI output. OpenThread ends its lines with `\r\n`
    /// (`OutputNewLine`); in the NCS sample they pass through Zephyr's UART shell backend, whose
    /// `SHELL_FLAG_OLF_CRLF` turns every `\n` into `\r\n`, so they reach the wire as `\r\r\n`.
    /// The shell's own lines (echo, errors) have a bare `\n` and end in `\r\n`.
    pub fn ot_line(&self, out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(text.as_bytes());
        match self.cfg.profile {
            Profile::Ncs => out.extend_from_slice(b"\r\r\n"),
            Profile::Upstream => out.extend_from_slice(b"\r\n"),
        }
    }
}

impl Shell {
    pub fn new(cfg: ShellConfig) -> Self {
        let cfg_history_bytes = cfg.history_bytes;
        Shell {
            cfg,
            buf: Vec::new(),
            last_nl: None,
            escape: Escape::None,
            history: History::new(cfg_history_bytes),
        }
    }

    pub fn config(&self) -> &ShellConfig {
        &self.cfg
    }

    /// The text typed so far on the current line.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// What the shell prints when it starts after boot (`shell_start`): colours reset, two empty
    /// lines when there is a prompt, then the prompt. OpenThread's CLI prints only its prompt.
    pub fn start(&self, out: &mut Vec<u8>) {
        if self.cfg.profile == Profile::Ncs {
            if self.cfg.colors {
                out.extend_from_slice(COLOR_RESET);
            }
            if !self.cfg.prompt.is_empty() {
                out.extend_from_slice(b"\r\n\r\n");
            }
        }
        self.prompt(out);
    }

    /// Print the prompt (after boot and after each command).
    pub fn prompt(&self, out: &mut Vec<u8>) {
        if self.cfg.colors {
            out.extend_from_slice(COLOR_GREEN);
            out.extend_from_slice(self.cfg.prompt.as_bytes());
            out.extend_from_slice(COLOR_RESET);
        } else {
            out.extend_from_slice(self.cfg.prompt.as_bytes());
        }
    }

    /// Print an error line as the shell does (red when colours are on).
    pub fn error_line(&self, out: &mut Vec<u8>, text: &str) {
        if self.cfg.colors {
            out.extend_from_slice(COLOR_RED);
            line(out, text);
            out.extend_from_slice(COLOR_RESET);
        } else {
            line(out, text);
        }
    }

    /// Feed one received byte. Echo goes to `out`; returns the command line when one ends.
    pub fn feed_byte(&mut self, byte: u8, out: &mut Vec<u8>) -> Option<String> {
        match self.cfg.profile {
            Profile::Ncs => self.feed_zephyr(byte, out),
            Profile::Upstream => self.feed_ot_uart(byte, out),
        }
    }

    fn feed_zephyr(&mut self, byte: u8, out: &mut Vec<u8>) -> Option<String> {
        if byte > 0x7f {
            // ascii_filter(): not even the newline tracking sees it.
            return None;
        }
        match self.escape {
            Escape::None => {}
            Escape::Esc => {
                self.escape = if byte == b'[' {
                    Escape::Sequence
                } else {
                    Escape::None
                };
                return None;
            }
            Escape::Sequence => {
                // Up/down browse the history; left/right, Home/End, Insert/Delete: cursor
                // movement is not modelled (the cursor always stays at the end of the line),
                // the keys are consumed.
                self.escape = if (b'1'..=b'4').contains(&byte) {
                    Escape::Tilde
                } else {
                    Escape::None
                };
                match byte {
                    b'A' => self.history_key(true, out),
                    b'B' => self.history_key(false, out),
                    _ => {}
                }
                return None;
            }
            Escape::Tilde => {
                self.escape = Escape::None;
                return None;
            }
        }
        if byte == b'\r' || byte == b'\n' {
            match self.last_nl {
                Some(prev) if prev != byte => {
                    // Second half of CRLF/LFCR: swallowed, and the next newline counts again.
                    self.last_nl = None;
                    return None;
                }
                _ => self.last_nl = Some(byte),
            }
            // execute() moves to a new line unless the echo already wrapped onto one;
            // an empty line always gets one.
            if self.buf.is_empty() || !self.cursor_in_empty_line() {
                out.extend_from_slice(b"\r\n");
            }
            self.history.exit = true;
            let line = self.take_line();
            // execute(): z_shell_cmd_trim, then history_put.
            if self.cfg.history_bytes > 0 {
                self.history.put(line.trim_matches(' ').as_bytes());
            }
            return Some(line);
        }
        self.last_nl = None;
        match byte {
            0x1b => self.escape = Escape::Esc,
            0x08 | 0x7f => {
                self.history.exit = true;
                self.zephyr_backspace(out);
            }
            0x20..=0x7e => {
                self.history.exit = true;
                self.insert(byte, out);
            }
            // Ctrl+C (ctrl_metakeys_handle): cursor to the end of the line, a new line unless
            // already on an empty one, leave history browsing, then the ACTIVE state's fresh
            // prompt with an empty buffer. Nothing is executed.
            0x03 if self.cfg.echo => {
                if !self.cursor_in_empty_line() {
                    out.extend_from_slice(b"\r\n");
                }
                self.history.exit = true;
                self.buf.clear();
                self.prompt(out);
            }
            // Ctrl+P / Ctrl+N: the metakeys for history up / down.
            0x10 if self.cfg.echo => self.history_key(true, out),
            0x0e if self.cfg.echo => self.history_key(false, out),
            // Ctrl+U: erase the whole line.
            0x15 if self.cfg.echo => {
                if !self.buf.is_empty() && self.cfg.vt100 {
                    out.extend_from_slice(format!("\x1b[{}D\x1b[J", self.buf.len()).as_bytes());
                }
                self.buf.clear();
            }
            // TAB completion and the other meta keys are not modelled, ignored.
            _ => {}
        }
        None
    }

    /// `shell.c` `history_handle`: on the first up, keep the typed line; show the next line in
    /// that direction, or the kept line when browsing ends; redraw the command in place (cursor
    /// to the start of the command, clear to the end of the screen, print it).
    fn history_key(&mut self, up: bool, out: &mut Vec<u8>) {
        if self.cfg.history_bytes == 0 {
            return;
        }
        if self.history.exit {
            self.history.exit = false;
            self.history.current = None;
        }
        if self.history.current.is_none() {
            if !up {
                // Down outside browsing has no effect.
                return;
            }
            self.history.backup = self.buf.clone();
        }
        let shown = match self.history.get(up) {
            Some(line) => line.to_vec(),
            None => self.history.backup.clone(),
        };
        if self.cfg.echo && self.cfg.vt100 {
            self.cursor_home(out);
            out.extend_from_slice(b"\x1b[J");
            out.extend_from_slice(&shown);
        }
        self.buf = shown;
        // z_shell_op_cond_next_line: prompt + text exactly fill the row.
        if self.cfg.echo && !self.buf.is_empty() && self.cursor_in_empty_line() {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// `z_shell_op_cursor_home_move` from the end of the line: up the rows the text wrapped
    /// onto, then back to the column after the prompt.
    fn cursor_home(&self, out: &mut Vec<u8>) {
        let prompt = self.cfg.prompt.len();
        let end = prompt + self.buf.len();
        let rows = end / TERMINAL_WIDTH - prompt / TERMINAL_WIDTH;
        if rows > 0 {
            out.extend_from_slice(format!("\x1b[{rows}A").as_bytes());
        }
        let (from, to) = (end % TERMINAL_WIDTH, prompt % TERMINAL_WIDTH);
        if from > to {
            out.extend_from_slice(format!("\x1b[{}D", from - to).as_bytes());
        } else if to > from {
            out.extend_from_slice(format!("\x1b[{}C", to - from).as_bytes());
        }
    }

    /// `z_shell_cursor_in_empty_line`: the cursor sits in column 0 (prompt + text fill whole rows).
    fn cursor_in_empty_line(&self) -> bool {
        let typed = if self.cfg.echo { self.buf.len() } else { 0 };
        (typed + self.cfg.prompt.len()).is_multiple_of(TERMINAL_WIDTH)
    }

    fn zephyr_backspace(&mut self, out: &mut Vec<u8>) {
        if self.buf.pop().is_none() || !self.cfg.echo {
            return;
        }
        // Cursor left, clear to end of screen; both are VT100 commands, so without them the
        // terminal shows nothing.
        if self.cfg.vt100 {
            out.extend_from_slice(b"\x1b[1D\x1b[J");
        }
    }

    /// `data_insert()`: the buffer keeps room for the terminating NUL; characters that do not
    /// fit are dropped without echo.
    fn insert(&mut self, byte: u8, out: &mut Vec<u8>) {
        if self.buf.len() + 1 >= self.cfg.cmd_buff_size {
            return;
        }
        self.buf.push(byte);
        if self.cfg.echo {
            out.push(byte);
            // reprint_from_cursor(): when prompt + text exactly fill the row, move to the next.
            if (self.buf.len() + self.cfg.prompt.len()).is_multiple_of(TERMINAL_WIDTH) {
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// OpenThread `cli_uart.cpp` receive path: echo, `\r`/`\n` end a line (an empty line gives
    /// only a new prompt), backspace/DEL erase with `\b \b`, overlong input is dropped.
    fn feed_ot_uart(&mut self, byte: u8, out: &mut Vec<u8>) -> Option<String> {
        match byte {
            b'\r' | b'\n' => {
                if byte == b'\n' && self.last_nl == Some(b'\r') {
                    self.last_nl = None;
                    return None;
                }
                self.last_nl = Some(byte);
                out.extend_from_slice(b"\r\n");
                Some(self.take_line())
            }
            0x08 | 0x7f => {
                self.last_nl = None;
                if self.buf.pop().is_some() {
                    out.extend_from_slice(b"\x08 \x08");
                }
                None
            }
            0x20..=0x7e => {
                self.last_nl = None;
                if self.buf.len() + 1 < self.cfg.cmd_buff_size {
                    self.buf.push(byte);
                    out.push(byte);
                }
                None
            }
            _ => {
                self.last_nl = None;
                None
            }
        }
    }

    fn take_line(&mut self) -> String {
        let bytes = std::mem::take(&mut self.buf);
        // Only 0x20..=0x7e are ever stored, so this is plain ASCII.
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Print lines that do not belong to a running command (ping replies, coap notifications),
    /// as Zephyr's `shell_fprintf` does from another thread: erase the prompt and typed text,
    /// print, then draw prompt and typed text again. Upstream OpenThread just prints.
    pub fn print_async(&self, lines: &[String], out: &mut Vec<u8>) {
        if lines.is_empty() {
            return;
        }
        let redraw = self.cfg.profile == Profile::Ncs && self.cfg.vt100;
        if redraw {
            self.erase_line(out);
        }
        for l in lines {
            self.ot_line(out, l);
        }
        if redraw {
            self.prompt(out);
            out.extend_from_slice(&self.buf);
        }
    }

    /// `z_shell_cmd_line_erase`: cursor to column 1 of the prompt's first row, clear to end of screen.
    fn erase_line(&self, out: &mut Vec<u8>) {
        let pos = self.cfg.prompt.len() + self.buf.len();
        let col = pos % TERMINAL_WIDTH;
        let row = pos / TERMINAL_WIDTH;
        if col > 0 {
            out.extend_from_slice(format!("\x1b[{col}D").as_bytes());
        }
        if row > 0 {
            out.extend_from_slice(format!("\x1b[{row}A").as_bytes());
        }
        out.extend_from_slice(b"\x1b[J");
    }
}

/// Why a command line could not be split into arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// More than `CONFIG_SHELL_ARGC_MAX` arguments.
    TooMany,
    /// A quote was opened and not closed.
    Unterminated(char),
}

/// Split a command line into arguments as the Zephyr shell does (`z_shell_make_argv`): spaces
/// separate, double or single quotes group, backslash escapes the next character.
pub fn split_args(line: &str, argc_max: usize) -> Result<Vec<String>, ArgsError> {
    let (args, open_quote) = split_words(line, true);
    if let Some(q) = open_quote {
        return Err(ArgsError::Unterminated(q));
    }
    if args.len() > argc_max {
        return Err(ArgsError::TooMany);
    }
    Ok(args)
}

/// Split a line as OpenThread's CLI does (`Utils::CmdLineParser`): spaces and tabs separate,
/// a backslash makes the next character literal; quotes have no meaning.
pub fn split_ot_args(line: &str) -> Vec<String> {
    split_words(line, false).0
}

/// Spaces and tabs separate words, a backslash makes the next character literal and, with
/// `quotes`, double or single quotes group. Returns the words and the quote left open, if any.
fn split_words(line: &str, quotes: bool) -> (Vec<String>, Option<char>) {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', _) => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_arg = true;
            }
            ('"' | '\'', None) if quotes => {
                quote = Some(c);
                in_arg = true;
            }
            (q, Some(open)) if q == open => quote = None,
            (' ' | '\t', None) => {
                if in_arg {
                    args.push(std::mem::take(&mut cur));
                    in_arg = false;
                }
            }
            (c, _) => {
                cur.push(c);
                in_arg = true;
            }
        }
    }
    if in_arg {
        args.push(cur);
    }
    (args, quote)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ncs() -> Shell {
        Shell::new(ShellConfig {
            profile: Profile::Ncs,
            prompt: "uart:~$ ".into(),
            colors: true,
            vt100: true,
            echo: true,
            cmd_buff_size: 16,
            history_bytes: 512,
        })
    }

    fn feed(sh: &mut Shell, bytes: &[u8]) -> (Vec<u8>, Vec<String>) {
        let mut out = Vec::new();
        let mut cmds = Vec::new();
        for &b in bytes {
            if let Some(c) = sh.feed_byte(b, &mut out) {
                cmds.push(c);
            }
        }
        (out, cmds)
    }

    #[test]
    fn echo_and_line_endings() {
        let mut sh = ncs();
        let (out, cmds) = feed(&mut sh, b"ot state\r");
        assert_eq!(out, b"ot state\r\n");
        assert_eq!(cmds, vec!["ot state"]);
        // CRLF is one line; LF alone and CR alone each end one.
        let (_, cmds) = feed(&mut sh, b"a\r\nb\nc\r");
        assert_eq!(cmds, vec!["a", "b", "c"]);
        // CR CR is two lines, the second empty.
        let (_, cmds) = feed(&mut sh, b"x\r\r");
        assert_eq!(cmds, vec!["x", ""]);
        // LF CR is one.
        let (_, cmds) = feed(&mut sh, b"y\n\rz\n");
        assert_eq!(cmds, vec!["y", "z"]);
    }

    #[test]
    fn split_across_reads() {
        let mut sh = ncs();
        let (_, c1) = feed(&mut sh, b"ot st");
        assert!(c1.is_empty());
        assert_eq!(sh.pending(), b"ot st");
        let (_, c2) = feed(&mut sh, b"ate\r");
        let (_, c3) = feed(&mut sh, b"\n");
        assert_eq!(c2, vec!["ot state"]);
        assert!(
            c3.is_empty(),
            "LF after CR in the next read is still swallowed"
        );
    }

    #[test]
    fn backspace_and_delete() {
        let mut sh = ncs();
        let (out, cmds) = feed(&mut sh, b"otx\x08 s\x7fstate\r");
        assert_eq!(cmds, vec!["ot state"]);
        assert_eq!(out, b"otx\x1b[1D\x1b[J s\x1b[1D\x1b[Jstate\r\n");
        // Without VT100 commands the terminal gets nothing for a backspace.
        let mut plain = Shell::new(ShellConfig {
            vt100: false,
            colors: false,
            ..sh.config().clone()
        });
        let (out, _) = feed(&mut plain, b"ab\x7f");
        assert_eq!(out, b"ab");
        // Backspace on an empty line prints nothing.
        let (out, _) = feed(&mut sh, b"\x08");
        assert!(out.is_empty());
    }

    #[test]
    fn binary_garbage_is_dropped() {
        let mut sh = ncs();
        let (out, cmds) = feed(
            &mut sh,
            &[0xff, 0x00, 0x80, b'o', 0xc3, 0xa9, b't', 0x1b, 0x07, b'\r'],
        );
        assert_eq!(cmds, vec!["ot"]);
        assert_eq!(out, b"ot\r\n");
    }

    #[test]
    fn overlong_line_is_truncated_like_zephyr() {
        let mut sh = ncs(); // 16-byte buffer: 15 characters fit
        let (out, cmds) = feed(&mut sh, b"0123456789abcdefghij\r");
        assert_eq!(cmds, vec!["0123456789abcde"]);
        assert_eq!(out, b"0123456789abcde\r\n");
    }

    #[test]
    fn prompt_coloured_or_plain() {
        let sh = ncs();
        let mut out = Vec::new();
        sh.prompt(&mut out);
        assert_eq!(out, b"\x1b[1;32muart:~$ \x1b[m");
        let plain = Shell::new(ShellConfig {
            colors: false,
            ..sh.config().clone()
        });
        let mut out = Vec::new();
        plain.prompt(&mut out);
        assert_eq!(out, b"uart:~$ ");
    }

    #[test]
    fn async_output_erases_and_redraws_prompt() {
        let mut sh = ncs();
        let _ = feed(&mut sh, b"ot");
        let mut out = Vec::new();
        sh.print_async(&["coap response sent".to_string()], &mut out);
        // prompt (8) + "ot" (2) = 10 columns to go back.
        assert_eq!(
            out,
            b"\x1b[10D\x1b[Jcoap response sent\r\r\n\x1b[1;32muart:~$ \x1b[mot".to_vec()
        );
    }

    #[test]
    fn escape_sequences_are_consumed() {
        let mut sh = ncs();
        // Up arrow, left arrow, Delete key (ESC [ 3 ~), Alt+b. With an empty history the up
        // arrow ends browsing at once and redraws the typed line in place (history_handle).
        let (out, cmds) = feed(&mut sh, b"ot\x1b[A\x1b[D\x1b[3~\x1bb state\r");
        assert_eq!(cmds, vec!["ot state"]);
        assert_eq!(out, b"ot\x1b[2D\x1b[Jot state\r\n");
    }

    #[test]
    fn ctrl_c_and_ctrl_u() {
        let mut sh = ncs();
        let (out, cmds) = feed(&mut sh, b"ot st\x03");
        assert!(cmds.is_empty());
        assert_eq!(out, b"ot st\r\n\x1b[1;32muart:~$ \x1b[m");
        let (out, cmds) = feed(&mut sh, b"abc\x15ot\r");
        assert_eq!(cmds, vec!["ot"]);
        assert_eq!(out, b"abc\x1b[3D\x1b[Jot\r\n");
    }

    #[test]
    fn history_browses_with_arrows_and_restores_the_typed_line() {
        let mut sh = Shell::new(ShellConfig {
            cmd_buff_size: 64,
            ..ncs().config().clone()
        });
        let (_, cmds) = feed(&mut sh, b"ot state\r ot channel \rot channel\r\r");
        assert_eq!(cmds, vec!["ot state", " ot channel ", "ot channel", ""]);
        // Trimmed, repeats and empty lines not stored: newest first "ot channel", "ot state".
        // Up: the newest line replaces the (empty) typed line in place.
        let (out, _) = feed(&mut sh, b"\x1b[A");
        assert_eq!(out, b"\x1b[Jot channel");
        assert_eq!(sh.pending(), b"ot channel");
        // Up again: the older one; the cursor goes back over the 10 characters first.
        let (out, _) = feed(&mut sh, b"\x1b[A");
        assert_eq!(out, b"\x1b[10D\x1b[Jot state");
        // Past the oldest line: the line typed before browsing (empty) comes back.
        let (out, _) = feed(&mut sh, b"\x1b[A");
        assert_eq!(out, b"\x1b[8D\x1b[J");
        assert_eq!(sh.pending(), b"");
        // Down outside browsing does nothing.
        let (out, _) = feed(&mut sh, b"\x1b[B");
        assert!(out.is_empty());
        // Typed text is kept while browsing and restored past the newest line (Ctrl+P/N too).
        feed(&mut sh, b"ot pa");
        let (out, _) = feed(&mut sh, b"\x10");
        assert_eq!(out, b"\x1b[5D\x1b[Jot channel");
        let (out, _) = feed(&mut sh, b"\x0e");
        assert_eq!(out, b"\x1b[10D\x1b[Jot pa");
        // A recalled line runs like a typed one.
        let (_, cmds) = feed(&mut sh, b"\x1b[A\x1b[A\r");
        assert_eq!(cmds, vec!["ot state"]);
        // Without CONFIG_SHELL_HISTORY the arrows do nothing.
        let mut off = Shell::new(ShellConfig {
            history_bytes: 0,
            ..ncs().config().clone()
        });
        feed(&mut off, b"ot state\r");
        let (out, _) = feed(&mut off, b"\x1b[A");
        assert!(out.is_empty());
        assert_eq!(off.pending(), b"");
    }

    #[test]
    fn ctrl_c_clears_the_line_without_running_it_and_ends_browsing() {
        let mut sh = ncs();
        let (_, cmds) = feed(&mut sh, b"ot state\r");
        assert_eq!(cmds, vec!["ot state"]);
        let (out, cmds) = feed(&mut sh, b"ot rese\x03");
        assert!(cmds.is_empty());
        assert_eq!(out, b"ot rese\r\n\x1b[1;32muart:~$ \x1b[m");
        assert_eq!(sh.pending(), b"");
        // Browsing, then Ctrl+C: the next up starts again at the newest line.
        feed(&mut sh, b"\x1b[A\x03");
        let (out, _) = feed(&mut sh, b"\x1b[A");
        assert_eq!(out, b"\x1b[Jot state");
    }

    #[test]
    fn history_drops_the_oldest_lines_when_its_heap_is_full() {
        let mut sh = Shell::new(ShellConfig {
            cmd_buff_size: 256,
            // Room for two 40-character lines (56 bytes each with the item overhead).
            history_bytes: 120,
            ..ncs().config().clone()
        });
        for c in [b'a', b'b', b'c'] {
            let mut line = vec![c; 40];
            line.push(b'\r');
            feed(&mut sh, &line);
        }
        let (out, _) = feed(&mut sh, b"\x1b[A\x1b[A\x1b[A");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(&"c".repeat(40)), "{text:?}");
        assert!(text.contains(&"b".repeat(40)), "{text:?}");
        assert!(!text.contains('a'), "oldest dropped: {text:?}");
        // A line larger than the whole heap is not stored.
        let mut tiny = Shell::new(ShellConfig {
            history_bytes: 16,
            ..ncs().config().clone()
        });
        feed(&mut tiny, b"ot state\r");
        let (out, _) = feed(&mut tiny, b"\x1b[A");
        // Nothing stored: up only redraws the (empty) typed line.
        assert_eq!(out, b"\x1b[J");
        assert_eq!(tiny.pending(), b"");
    }

    #[test]
    fn echo_wraps_at_terminal_width() {
        let mut sh = Shell::new(ShellConfig {
            cmd_buff_size: 416,
            ..ncs().config().clone()
        });
        // 8 prompt columns + 72 characters fill the 80-column row: Zephyr moves to the next row,
        // and Enter then adds no second newline.
        let line = vec![b'a'; 72];
        let (out, _) = feed(&mut sh, &line);
        assert!(out.ends_with(b"a\r\n"), "{out:?}");
        let (out, cmds) = feed(&mut sh, b"\r");
        assert_eq!(cmds.len(), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn start_prints_reset_blank_lines_and_prompt() {
        let mut out = Vec::new();
        ncs().start(&mut out);
        assert_eq!(out, b"\x1b[m\r\n\r\n\x1b[1;32muart:~$ \x1b[m");
    }

    #[test]
    fn upstream_profile() {
        let mut sh = Shell::new(ShellConfig::upstream());
        let (out, cmds) = feed(&mut sh, b"state\r\nab\x7fc\n");
        assert_eq!(cmds, vec!["state", "ac"]);
        assert_eq!(out, b"state\r\nab\x08 \x08c\r\n");
        let mut out = Vec::new();
        sh.print_async(&["x".to_string()], &mut out);
        assert_eq!(out, b"x\r\n");
    }

    #[test]
    fn argument_splitting() {
        assert_eq!(
            split_args("ot  coap put  a \"b c\" d\\ e", 20).unwrap(),
            vec!["ot", "coap", "put", "a", "b c", "d e"]
        );
        assert_eq!(split_args("", 20).unwrap(), Vec::<String>::new());
        assert_eq!(split_args("\"\"", 20).unwrap(), vec![""]);
        assert_eq!(split_args("a b c", 2), Err(ArgsError::TooMany));
        assert_eq!(split_args("a \"b", 20), Err(ArgsError::Unterminated('"')));
        assert_eq!(
            split_ot_args(" networkname  my\\ net \"x\" "),
            vec!["networkname", "my net", "\"x\""]
        );
    }
}
