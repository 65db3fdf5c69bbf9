//! Checks on untrusted input shared by the cargo-fuzz targets (`harness/core/fuzz`) and the
//! bounded random-input tests (`tests/bad_input.rs`): a crash found by one replays in the other.
//! Each function panics only when the code under test breaks a property.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::case::{LoadOptions, load_case};
use crate::console::decoder::{ConsoleItem, LineDecoder};

/// Prompts of the two console profiles.
const PROMPTS: [&[&str]; 2] = [&["uart:~$ "], &["> "]];

/// Console bytes: `profile selector, max line (1..=256), split point, bytes..`. The decoder must
/// not panic; lines are at most `max_line` bytes of text without CR/LF; feeding the bytes in two
/// pieces gives the same items as feeding them at once; the pending line stays bounded.
pub fn console_lines(data: &[u8]) {
    let [sel, max, split, bytes @ ..] = data else {
        return;
    };
    let prompts = PROMPTS[usize::from(*sel) % PROMPTS.len()];
    let max_line = usize::from(*max) + 1;
    let mut whole = LineDecoder::new(prompts, max_line);
    let mut all = Vec::new();
    whole.feed(bytes, &mut all);
    let at = usize::from(*split).min(bytes.len());
    let (a, b) = bytes.split_at(at);
    let mut pieces = LineDecoder::new(prompts, max_line);
    let mut split_items = Vec::new();
    pieces.feed(a, &mut split_items);
    pieces.feed(b, &mut split_items);
    assert_eq!(
        all, split_items,
        "framing depends on where the input was split"
    );
    assert_eq!(whole.pending(), pieces.pending());
    for item in &all {
        if let ConsoleItem::Line { text, .. } = item {
            assert!(
                text.len() <= max_line * 4,
                "line of {} bytes over max {max_line}",
                text.len()
            );
            assert!(!text.contains(['\r', '\n']), "line contains a line end");
        }
    }
    assert!(
        whole.pending().len() <= max_line * 4,
        "pending line unbounded"
    );
}

/// Longest `check` of one fuzz input. Case files are at most 1 MiB and loading is linear, so even
/// a slow sanitizer build stays far below this; a quadratic or unbounded path does not.
pub const CHECK_TIME_BOUND: Duration = Duration::from_secs(5);

/// A case file's bytes, loaded from `dir/case.toml` (the directory may hold fragments) the way
/// `ot-hil check` loads it, and its air tables parsed. Neither may panic nor take longer than
/// [`CHECK_TIME_BOUND`]; a loaded case has nodes and steps, and every step's node is one of them.
pub fn case_file(dir: &Path, data: &[u8]) {
    let path = dir.join("case.toml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let started = Instant::now();
    let (_, errors) = crate::check::load_all(std::slice::from_ref(&path), &LoadOptions::default());
    for e in &errors {
        // Every message is rendered, as `check` prints it.
        let _ = e.to_string();
    }
    assert!(
        started.elapsed() < CHECK_TIME_BOUND,
        "check took {:?} for {} bytes",
        started.elapsed(),
        data.len()
    );
    if let Ok(case) = load_case(&path, &LoadOptions::default()) {
        if case.air.sniffer {
            assert!(
                (11..=26).contains(&case.air.channel),
                "sniffer off the band"
            );
        }
        assert!(!case.nodes.is_empty(), "case without nodes loaded");
        assert!(!case.steps.is_empty(), "case without steps loaded");
        for s in &case.steps {
            assert!(case.nodes.contains(&s.node), "step on unknown node loaded");
        }
        for f in &case.faults.board {
            assert!(f.before_step < case.steps.len(), "board fault past the end");
        }
    }
}

/// A fragment for [`case_file`] inputs to include (`include = "f.toml"`).
pub const FRAGMENT: &str = "[params]\nnode = {}\n[[steps]]\nnode = \"${node}\"\nsend = \"state\"\n";

/// A duration as a case writes it (`data` as the text of `timeout`, `interval`, `deadline` and
/// `window`). Loading must not panic; a duration it accepts is positive, at most
/// [`crate::case::MAX_DURATION`], and can be added to the clock (the runner's deadlines are
/// `Instant::now() + timeout`).
pub fn duration(dir: &Path, data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The text as a TOML string literal, escapes and all.
    let literal = toml::Value::String(text.to_string()).to_string();
    let case = format!(
        "nodes = [\"a\"]\n[defaults]\ninterval = {literal}\n\
         [[steps]]\nnode = \"a\"\nsend = \"x\"\ntimeout = {literal}\n\
         [[steps]]\nnode = \"a\"\npoll = \"x\"\nuntil = \"y\"\ndeadline = {literal}\n\
         [[steps]]\nnode = \"a\"\nabsent = [\"z\"]\nwindow = {literal}\n"
    );
    let path = dir.join("duration.toml");
    if std::fs::write(&path, case).is_err() {
        return;
    }
    let Ok(case) = load_case(&path, &LoadOptions::default()) else {
        return;
    };
    let now = Instant::now();
    for step in &case.steps {
        let durations = match &step.action {
            crate::case::Action::Command { timeout, .. } => vec![*timeout],
            crate::case::Action::Expect { timeout, .. } => vec![*timeout],
            crate::case::Action::Poll {
                interval,
                deadline,
                attempt_timeout,
                ..
            } => vec![*interval, *deadline, *attempt_timeout],
            crate::case::Action::Absent { window } => vec![*window],
        };
        for d in durations {
            assert!(!d.is_zero(), "zero duration {text:?} accepted");
            assert!(
                d <= crate::case::MAX_DURATION,
                "duration {text:?} = {d:?} over the maximum accepted"
            );
            assert!(now.checked_add(d).is_some(), "{d:?} overflows the clock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_seen_in_the_wild_and_at_the_edges() {
        let dir = tempfile::tempdir().unwrap();
        for d in [
            "10s",
            "24h",
            "86400s",
            "86401s",
            "18446744073709551615s",
            "9223372036854775807s",
            "18446744073709551615ns",
            "584942417355y",
            "1y 1ns",
            "0s",
            "",
            "\u{0}",
            "-1s",
            "1e308s",
        ] {
            duration(dir.path(), d.as_bytes());
        }
    }

    #[test]
    fn case_files_through_check() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.toml"), FRAGMENT).unwrap();
        for input in [
            &b"nodes = [\"a\"]\n[[steps]]\ninclude = \"/dev/zero\"\n"[..],
            b"nodes = [\"a\"]\n[[steps]]\ninclude = \".\"\n",
            b"nodes = [\"a\"]\n[[steps]]\ninclude = \"f.toml\"\nwith = { node = \"a\" }\n",
            b"\xff\xfe",
        ] {
            case_file(dir.path(), input);
        }
    }
}
