//! Handshake snapshots: a transcript (from the air or from a board's own DTLS engine) reduced to
//! what must not change run to run, compared with a stored insta snapshot.
//!
//! Kept: message order and direction, offered and chosen suites, extensions, groups, alerts,
//! certificate subjects, key-exchange kinds. Dropped or redacted: record sequence numbers and
//! epochs, cookie values and lengths (only whether a cookie was sent), key-exchange sizes (`(N bytes)` -> `(_ bytes)`), application data
//! sizes; the transcripts carry no randoms, keys, cookies, addresses or times to begin with.
//! Retransmitted flights collapse: a line equal to an earlier one is not repeated.
//!
//! The comparison goes through insta's own assertion, so its settings apply (`INSTA_UPDATE`,
//! `INSTA_FORCE_PASS`, CI detection) and a mismatch leaves a `.snap.new` file next to the
//! snapshot. `cargo insta review` accepts or rejects it: cargo-insta looks for pending snapshots
//! inside Cargo packages, and `testcases/` is one (code-free) for that reason.

use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use serde_json::Value;

/// Snapshot files of one run: `<dir>/<case>__<name>__<variant>.snap`.
#[derive(Debug, Clone)]
pub struct Snapshots {
    pub dir: PathBuf,
}

/// What a comparison found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOutcome {
    Matched,
    /// No stored snapshot yet (a `.snap.new` was written unless insta was told otherwise).
    New {
        pending: PathBuf,
        content: String,
    },
    /// Differs; `diff` is a unified diff old -> new.
    Mismatch {
        pending: PathBuf,
        diff: String,
    },
}

/// insta's settings are thread-local but its file writes are not coordinated between
/// concurrently running cases; one comparison at a time.
static INSTA: Mutex<()> = Mutex::new(());

static BYTES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(\d+ bytes\)").unwrap_or_else(|e| unreachable!("{e}")));

impl Snapshots {
    /// The snapshot directory for a case file: `snapshots/` next to it.
    pub fn for_case_file(case_path: &Path) -> Snapshots {
        let dir = case_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .join("snapshots");
        Snapshots {
            dir: std::path::absolute(&dir).unwrap_or(dir),
        }
    }

    pub fn snapshot_name(case: &str, name: &str, variant: &str) -> String {
        format!("{case}__{name}__{variant}")
    }

    pub fn path(&self, snapshot_name: &str) -> PathBuf {
        self.dir.join(format!("{snapshot_name}.snap"))
    }

    /// Compare `content` with the stored snapshot `snapshot_name` through insta.
    pub fn compare(
        &self,
        snapshot_name: &str,
        description: &str,
        content: &str,
    ) -> SnapshotOutcome {
        let stored = std::fs::read_to_string(self.path(snapshot_name))
            .ok()
            .map(|t| snap_body(&t));
        let pending = self.dir.join(format!("{snapshot_name}.snap.new"));
        let _guard = INSTA.lock().unwrap_or_else(|e| e.into_inner());
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&self.dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_description(description);
        let content_owned = content.to_string();
        let name = snapshot_name.to_string();
        let passed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            settings.bind(|| insta::assert_snapshot!(name, content_owned));
        }))
        .is_ok();
        match (passed, stored) {
            (true, _) => SnapshotOutcome::Matched,
            (false, None) => SnapshotOutcome::New {
                pending,
                content: content.to_string(),
            },
            (false, Some(old)) => SnapshotOutcome::Mismatch {
                pending,
                diff: similar::TextDiff::from_lines(old.trim_end(), content.trim_end())
                    .unified_diff()
                    .context_radius(3)
                    .header("stored", "this run")
                    .to_string(),
            },
        }
    }
}

/// The body of a `.snap` file (after the `---` metadata block).
pub(crate) fn snap_body(text: &str) -> String {
    let mut parts = text.splitn(3, "---\n");
    match (parts.next(), parts.next(), parts.next()) {
        (Some(""), Some(_meta), Some(body)) => body.to_string(),
        _ => text.to_string(),
    }
}

/// Render a transcript (serialized as `ot_hil_dtls::Transcript` is) for a snapshot.
pub fn render(transcript: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    let entries = transcript
        .get("entries")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for e in &entries {
        let dir = match e.get("direction").and_then(Value::as_str) {
            Some("ClientToServer") => "C->S",
            Some("ServerToClient") => "S->C",
            _ => "?->?",
        };
        let content_type = text(e.get("content_type"));
        if e.get("encrypted").and_then(Value::as_bool) == Some(true) {
            push_unique(&mut out, format!("{dir} encrypted {content_type}"));
            continue;
        }
        let body = e.get("body").cloned().unwrap_or(Value::Null);
        match body.get("kind").and_then(Value::as_str).unwrap_or("") {
            "Handshake" => {
                for m in body
                    .get("messages")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                {
                    // Fragments that did not complete a message add nothing.
                    let Some(fields) = m.get("fields").filter(|f| !f.is_null()) else {
                        continue;
                    };
                    let mut line = format!("{dir} {}", text(m.get("msg_type")));
                    if let Some(obj) = fields.as_object() {
                        let mut keys: Vec<&String> = obj.keys().collect();
                        keys.sort();
                        for k in keys {
                            match k.as_str() {
                                "message" => {}
                                // Whether a cookie was sent matters (the exchange shows in the
                                // order), its length does not.
                                "cookie_len" => {
                                    let some = obj.get(k).and_then(Value::as_u64).unwrap_or(0) > 0;
                                    line.push_str(if some { " cookie=yes" } else { " cookie=no" });
                                }
                                // The names alone hide the number a capture or an mbedtls
                                // source shows (ECJPAKE_KKPP is 0x0100).
                                "extensions" => line.push_str(&format!(
                                    " extensions={}",
                                    extension_list(obj.get(k))
                                )),
                                _ => line.push_str(&format!(" {k}={}", text(obj.get(k)))),
                            }
                        }
                    }
                    push_unique(&mut out, line);
                }
            }
            "ChangeCipherSpec" => push_unique(&mut out, format!("{dir} ChangeCipherSpec")),
            "Alert" => push_unique(
                &mut out,
                format!(
                    "{dir} Alert {} {}",
                    text(body.get("level")),
                    text(body.get("description"))
                ),
            ),
            "ApplicationData" => push_unique(&mut out, format!("{dir} ApplicationData")),
            "Encrypted" => push_unique(&mut out, format!("{dir} encrypted {content_type}")),
            "Malformed" => push_unique(
                &mut out,
                format!("{dir} malformed: {}", text(body.get("reason"))),
            ),
            other => push_unique(&mut out, format!("{dir} {other}")),
        }
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

fn push_unique(out: &mut Vec<String>, line: String) {
    let line = BYTES.replace_all(&line, "(_ bytes)").into_owned();
    if !out.contains(&line) {
        out.push(line);
    }
}

/// Extension names with their numbers: `[SUPPORTED_GROUPS(0x000a),ECJPAKE_KKPP(0x0100)]`.
fn extension_list(v: Option<&Value>) -> String {
    let Some(Value::Array(list)) = v else {
        return text(v);
    };
    let items: Vec<String> = list
        .iter()
        .map(|x| {
            let name = text(Some(x));
            match EXTENSION_NUMBERS.get(name.as_str()) {
                Some(n) => format!("{name}({n:#06x})"),
                None => name,
            }
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Extension name -> number, from the DTLS crate's table (names are serialized, not numbers).
static EXTENSION_NUMBERS: LazyLock<std::collections::HashMap<&'static str, u16>> =
    LazyLock::new(|| {
        (0..=u16::MAX)
            .filter_map(|n| ot_hil_dtls::ExtensionType(n).name().map(|s| (s, n)))
            .collect()
    });

/// A JSON value as snapshot text: strings bare, lists as `[a,b]`.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => format!(
            "[{}]",
            a.iter()
                .map(|x| text(Some(x)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_keeps_the_handshake_and_drops_what_changes_run_to_run() {
        let hello = |cookie_len: u64| {
            serde_json::json!({
                "direction": "ClientToServer", "content_type": "HANDSHAKE", "encrypted": false,
                "body": {"kind": "Handshake", "messages": [{"msg_type": "CLIENT_HELLO", "fields": {
                    "cookie_len": cookie_len,
                    "extensions": ["SUPPORTED_GROUPS", "ECJPAKE_KKPP", "Unknown(0x1234)"],
                    "offered_suites": ["ECDHE_ECDSA_WITH_AES_128_CCM_8"],
                }}]}
            })
        };
        let transcript = serde_json::json!({"entries": [
            hello(0),
            // A retransmission of the same flight appears once.
            hello(0),
            {"direction": "ServerToClient", "content_type": "ALERT", "encrypted": false,
             "body": {"kind": "Alert", "level": "FATAL", "description": "ILLEGAL_PARAMETER"}},
            {"direction": "ClientToServer", "content_type": "HANDSHAKE", "encrypted": false,
             "body": {"kind": "Handshake", "messages": [{"msg_type": "CLIENT_KEY_EXCHANGE",
              "fields": {"key_exchange": "ecdhe public (65 bytes)"}}]}},
        ]});
        assert_eq!(
            render(&transcript),
            "C->S CLIENT_HELLO cookie=no extensions=[SUPPORTED_GROUPS(0x000a),ECJPAKE_KKPP(0x0100),Unknown(0x1234)] offered_suites=[ECDHE_ECDSA_WITH_AES_128_CCM_8]\n\
             S->C Alert FATAL ILLEGAL_PARAMETER\n\
             C->S CLIENT_KEY_EXCHANGE key_exchange=ecdhe public (_ bytes)\n"
        );
    }
}
