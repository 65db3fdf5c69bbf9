//! Checks on untrusted input shared by the cargo-fuzz targets (`harness/core/fuzz`) and the
//! bounded random-input tests (`tests/bad_input.rs`): a crash found by one replays in the other.
//! Each function panics only when the code under test breaks a property.

use std::path::Path;

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

/// A case file's bytes, loaded from `dir/case.toml` (the directory may hold fragments), and its
/// air tables parsed. Neither may panic; a loaded case has nodes and steps, and every step's node is one of them.
pub fn case_file(dir: &Path, data: &[u8]) {
    let path = dir.join("case.toml");
    if std::fs::write(&path, data).is_err() {
        return;
    }
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
