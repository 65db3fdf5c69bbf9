//! Handshake ladder diagrams: client and server as two lifelines, one arrow per record in the
//! order it was sent or seen, drawn as static SVG.
//!
//! Rows come from a transcript ([`rows_from_transcript`]) or from the text of a handshake
//! snapshot ([`rows_from_snapshot`]), so a snapshot mismatch shows the stored and the observed
//! handshake as the same kind of picture, side by side, with the differing rows marked.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use ot_hil_dtls::transcript::{Body, Direction, Fields};
use ot_hil_dtls::{AlertLevel, Transcript};
use regex::Regex;

use super::{Handshake, SnapshotMismatch, esc};

/// A piece of a detail line; `hot` ones are the extensions a reader looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub hot: bool,
}

/// What a row's arrow stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Handshake,
    ChangeCipherSpec,
    Alert,
    /// Ciphertext (or application data) the observer shows by length only.
    Encrypted,
    Malformed,
}

/// One arrow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub at: Option<Duration>,
    pub direction: Direction,
    pub title: String,
    /// `(label, tokens)`, one line each.
    pub details: Vec<(String, Vec<Token>)>,
    pub kind: RowKind,
    /// The same record was sent before (a retransmitted flight).
    pub retransmission: bool,
    /// Differs from the other side of a snapshot comparison.
    pub differs: bool,
}

/// The extensions highlighted wherever they appear: EC J-PAKE in an X.509 handshake is the
/// known failure the report was built to show.
const HOT_EXTENSIONS: &[&str] = &["ecjpake_kkpp"];

fn token(text: String) -> Token {
    let lower = text.to_ascii_lowercase();
    let hot = HOT_EXTENSIONS.iter().any(|h| lower.contains(h));
    Token { text, hot }
}

/// `CLIENT_HELLO` -> `ClientHello` (RFC spelling of handshake types).
fn camel(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

/// `ECJPAKE_KKPP` -> `ecjpake_kkpp` (IANA registry spelling of extensions and alerts); unknown
/// values keep their hex form.
fn lower(name: &str) -> String {
    if name.starts_with("Unknown(") {
        name.to_string()
    } else {
        name.to_ascii_lowercase()
    }
}

fn tokens<T: std::fmt::Display>(items: &[T], f: fn(&str) -> String) -> Vec<Token> {
    items.iter().map(|i| token(f(&i.to_string()))).collect()
}

fn same(s: &str) -> String {
    s.to_string()
}

fn field_details(fields: &Fields) -> Vec<(String, Vec<Token>)> {
    let one = |label: &str, text: String| vec![(label.to_string(), vec![token(text)])];
    match fields {
        Fields::ClientHello {
            cookie_len,
            offered_suites,
            extensions,
            supported_groups,
            signature_algorithms: _,
        } => {
            let mut d = vec![
                ("offers".to_string(), tokens(offered_suites, same)),
                ("ext".to_string(), tokens(extensions, lower)),
            ];
            if !supported_groups.is_empty() {
                d.push(("groups".into(), tokens(supported_groups, lower)));
            }
            if *cookie_len > 0 {
                d.push(("cookie".into(), vec![token(format!("{cookie_len} B"))]));
            }
            d
        }
        Fields::HelloVerifyRequest { cookie_len } => one("cookie", format!("{cookie_len} B")),
        Fields::ServerHello {
            chosen_suite,
            extensions,
        } => vec![
            ("chose".into(), vec![token(chosen_suite.to_string())]),
            ("ext".into(), tokens(extensions, lower)),
        ],
        Fields::Certificate { subjects } => {
            vec![("subjects".into(), tokens(subjects, same))]
        }
        Fields::ServerKeyExchange { key_exchange } | Fields::ClientKeyExchange { key_exchange } => {
            one("key exchange", key_exchange.clone())
        }
        Fields::CertificateRequest { authorities, .. } => {
            vec![("authorities".into(), tokens(authorities, same))]
        }
        Fields::CertificateVerify { scheme } => one("scheme", scheme.to_string()),
        Fields::Unknown { length } => one("body", format!("{length} B")),
        Fields::Malformed { reason } => one("malformed", reason.clone()),
        Fields::ServerHelloDone | Fields::Finished | Fields::HelloRequest => vec![],
    }
}

/// One row per transcript entry; `times[i]` is entry `i`'s time.
pub fn rows_from_transcript(t: &Transcript, times: &[Option<Duration>]) -> Vec<Row> {
    let mut seen: HashSet<String> = HashSet::new();
    t.entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut details = Vec::new();
            let (title, kind, key) = match &e.body {
                Body::Handshake { messages } => {
                    let mut names = Vec::new();
                    let mut key = Vec::new();
                    for m in messages {
                        let mut name = camel(&m.msg_type.to_string());
                        if m.fragment_offset != 0 || m.fragment_length != m.length {
                            name.push_str(&format!(
                                " (fragment {}+{}/{})",
                                m.fragment_offset, m.fragment_length, m.length
                            ));
                        }
                        names.push(name);
                        key.push(format!(
                            "{}/{}/{}",
                            m.msg_type, m.message_seq, m.fragment_offset
                        ));
                        if let Some(f) = &m.fields {
                            details.extend(field_details(f));
                        }
                    }
                    let mut title = names.join(", ");
                    if e.encrypted {
                        title.push_str(" (encrypted)");
                    }
                    (title, RowKind::Handshake, Some(key.join(";")))
                }
                Body::ChangeCipherSpec => (
                    "ChangeCipherSpec".to_string(),
                    RowKind::ChangeCipherSpec,
                    Some("ccs".to_string()),
                ),
                Body::Alert { level, description } => (
                    format!(
                        "Alert {} {}",
                        lower(&level.to_string()),
                        lower(&description.to_string())
                    ),
                    RowKind::Alert,
                    None,
                ),
                Body::ApplicationData { length } => (
                    format!("ApplicationData ({length} B)"),
                    RowKind::Encrypted,
                    None,
                ),
                Body::Encrypted { length } => (
                    format!(
                        "encrypted {} ({length} B)",
                        lower(&e.content_type.to_string())
                    ),
                    RowKind::Encrypted,
                    None,
                ),
                Body::Malformed { reason } => {
                    (format!("malformed: {reason}"), RowKind::Malformed, None)
                }
            };
            // A record carrying the same messages at the same epoch in the same direction as
            // an earlier one is the flight sent again (RFC 6347 §4.2.4).
            let retransmission =
                key.is_some_and(|k| !seen.insert(format!("{:?}/{}/{k}", e.direction, e.epoch)));
            Row {
                at: times.get(i).copied().flatten(),
                direction: e.direction,
                title,
                details,
                kind,
                retransmission,
                differs: false,
            }
        })
        .collect()
}

static FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^| )([a-z_]+)=").unwrap_or_else(|e| unreachable!("{e}")));

/// One row per line of a handshake snapshot (`C->S CLIENT_HELLO cookie=no extensions=[...]`).
pub fn rows_from_snapshot(text: &str) -> Vec<Row> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (direction, rest) = match line.split_once(' ') {
                Some(("S->C", rest)) => (Direction::ServerToClient, rest),
                Some(("C->S", rest)) => (Direction::ClientToServer, rest),
                _ => (Direction::ClientToServer, line),
            };
            let (head, fields) = match FIELD.find(rest) {
                Some(m) => (rest[..m.start()].trim(), &rest[m.start()..]),
                None => (rest.trim(), ""),
            };
            let (title, kind) = if let Some(a) = head.strip_prefix("Alert ") {
                (format!("Alert {}", lower(a)), RowKind::Alert)
            } else if head.starts_with("encrypted ") || head == "ApplicationData" {
                (lower(head), RowKind::Encrypted)
            } else if head == "ChangeCipherSpec" {
                (head.to_string(), RowKind::ChangeCipherSpec)
            } else if head.starts_with("malformed") {
                (head.to_string(), RowKind::Malformed)
            } else {
                (camel(head), RowKind::Handshake)
            };
            Row {
                at: None,
                direction,
                title,
                details: snapshot_fields(fields),
                kind,
                retransmission: false,
                differs: false,
            }
        })
        .collect()
}

fn snapshot_fields(s: &str) -> Vec<(String, Vec<Token>)> {
    let starts: Vec<(usize, usize, &str)> = FIELD
        .captures_iter(s)
        .filter_map(|c| {
            let (all, key) = (c.get(0)?, c.get(1)?);
            Some((all.start(), all.end(), key.as_str()))
        })
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, (_, value_start, key))| {
            let end = starts.get(i + 1).map_or(s.len(), |n| n.0);
            let value = s[*value_start..end].trim();
            let list = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
            let tokens = match list {
                Some(items) => items
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(|x| {
                        // `ECJPAKE_KKPP(0x0100)`: the registry name, lower case, number kept.
                        if x.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                            && key.contains("extensions")
                        {
                            token(lower(x))
                        } else {
                            token(x.to_string())
                        }
                    })
                    .collect(),
                None => vec![token(value.to_string())],
            };
            let label = match *key {
                "offered_suites" => "offers",
                "chosen_suite" => "chose",
                "extensions" => "ext",
                "supported_groups" => "groups",
                "signature_algorithms" => "sigalgs",
                other => other,
            };
            (label.to_string(), tokens)
        })
        .collect()
}

/// Mark the rows of `stored` and `observed` that the line diff of the two texts does not match.
pub fn mark_differences(stored: &mut [Row], observed: &mut [Row], old: &str, new: &str) {
    let old_lines: Vec<&str> = old.lines().filter(|l| !l.trim().is_empty()).collect();
    let new_lines: Vec<&str> = new.lines().filter(|l| !l.trim().is_empty()).collect();
    let diff = similar::TextDiff::from_slices(&old_lines, &new_lines);
    for op in diff.ops() {
        for change in diff.iter_changes(op) {
            match change.tag() {
                similar::ChangeTag::Equal => {}
                similar::ChangeTag::Delete => {
                    if let Some(r) = change.old_index().and_then(|i| stored.get_mut(i)) {
                        r.differs = true;
                    }
                }
                similar::ChangeTag::Insert => {
                    if let Some(r) = change.new_index().and_then(|i| observed.get_mut(i)) {
                        r.differs = true;
                    }
                }
            }
        }
    }
}

/// Did this handshake fail: a fatal alert, or no ChangeCipherSpec from the server?
pub fn failed(t: &Transcript) -> bool {
    let fatal = t
        .alerts()
        .iter()
        .any(|(_, level, _)| *level == AlertLevel::FATAL);
    let server_ccs = t.entries.iter().any(|e| {
        e.direction == Direction::ServerToClient && matches!(e.body, Body::ChangeCipherSpec)
    });
    fatal || !server_ccs
}

// -- SVG --

const WIDTH: u32 = 820;
const TIME_X: u32 = 62;
const CLIENT_X: u32 = 150;
const SERVER_X: u32 = 790;
const LINE: u32 = 15;
/// Characters per detail line before wrapping (12 px sans text between the lifelines).
const WRAP: usize = 92;

/// One detail line split to fit between the lifelines.
fn wrap(label: &str, tokens: &[Token]) -> Vec<Vec<Token>> {
    let mut lines: Vec<Vec<Token>> = vec![vec![Token {
        text: format!("{label}: "),
        hot: false,
    }]];
    let mut len = label.len() + 2;
    for (i, t) in tokens.iter().enumerate() {
        let sep = if i + 1 < tokens.len() { ", " } else { "" };
        let piece = t.text.len() + sep.len();
        if len + piece > WRAP && len > label.len() + 2 {
            lines.push(vec![Token {
                text: "    ".into(),
                hot: false,
            }]);
            len = 4;
        }
        if let Some(line) = lines.last_mut() {
            line.push(t.clone());
            if !sep.is_empty() {
                line.push(Token {
                    text: sep.into(),
                    hot: false,
                });
            }
        }
        len += piece;
    }
    lines
}

/// The SVG of one ladder.
pub fn svg(rows: &[Row], client: &str, server: &str, caption: &str) -> String {
    let mut body = String::new();
    let mut y = 44;
    for r in rows {
        let lines: Vec<Vec<Token>> = r.details.iter().flat_map(|(l, t)| wrap(l, t)).collect();
        let text_h = LINE * (1 + lines.len() as u32);
        let arrow_y = y + text_h + 4;
        let row_h = text_h + 14;
        let class = match r.kind {
            RowKind::Handshake => "row",
            RowKind::ChangeCipherSpec => "row ccs",
            RowKind::Alert => "row alert",
            RowKind::Encrypted => "row enc",
            RowKind::Malformed => "row bad",
        };
        let _ = write!(
            body,
            "<g class=\"{class}{}{}\">",
            if r.retransmission { " rtx" } else { "" },
            if r.differs { " differs" } else { "" }
        );
        if r.differs {
            let _ = write!(
                body,
                "<rect class=\"diffband\" x=\"0\" y=\"{}\" width=\"{WIDTH}\" height=\"{}\"/>\
                 <text class=\"diffmark\" x=\"4\" y=\"{}\">≠</text>",
                y - 2,
                row_h,
                y + LINE
            );
        }
        if let Some(at) = r.at {
            let _ = write!(
                body,
                "<text class=\"time\" x=\"{TIME_X}\" y=\"{}\">{:.3} s</text>",
                arrow_y + 4,
                at.as_secs_f64()
            );
        }
        let text_x = CLIENT_X + 14;
        let mut title = esc(&r.title).into_owned();
        if r.retransmission {
            title.push_str(" <tspan class=\"rtxmark\">↻ retransmission</tspan>");
        }
        let _ = write!(
            body,
            "<text class=\"title\" x=\"{text_x}\" y=\"{}\">{title}</text>",
            y + LINE - 3
        );
        for (i, line) in lines.iter().enumerate() {
            let _ = write!(
                body,
                "<text class=\"detail\" x=\"{text_x}\" y=\"{}\">",
                y + LINE * (i as u32 + 2) - 3
            );
            for t in line {
                if t.hot {
                    let _ = write!(body, "<tspan class=\"hot\">{}</tspan>", esc(&t.text));
                } else {
                    body.push_str(&esc(&t.text));
                }
            }
            body.push_str("</text>");
        }
        let (from, to) = match r.direction {
            Direction::ClientToServer => (CLIENT_X, SERVER_X),
            Direction::ServerToClient => (SERVER_X, CLIENT_X),
        };
        let tip = if to > from { to - 9 } else { to + 9 };
        let _ = write!(
            body,
            "<line class=\"arrow\" x1=\"{from}\" y1=\"{arrow_y}\" x2=\"{tip}\" y2=\"{arrow_y}\"/>\
             <polygon class=\"head\" points=\"{to},{arrow_y} {tip},{} {tip},{}\"/></g>",
            arrow_y - 4,
            arrow_y + 4
        );
        y += row_h;
    }
    let height = y + 8;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"ladder\" role=\"img\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" \
         height=\"{height}\"><title>{}</title>\
         <line class=\"life\" x1=\"{CLIENT_X}\" y1=\"34\" x2=\"{CLIENT_X}\" y2=\"{height}\"/>\
         <line class=\"life\" x1=\"{SERVER_X}\" y1=\"34\" x2=\"{SERVER_X}\" y2=\"{height}\"/>\
         <text class=\"who\" x=\"{CLIENT_X}\" y=\"24\">{}</text>\
         <text class=\"who end\" x=\"{SERVER_X}\" y=\"24\">{}</text>",
        esc(caption),
        esc(&lifeline_name("client", client)),
        esc(&lifeline_name("server", server))
    );
    s.push_str(&body);
    s.push_str("</svg>");
    s
}

/// `client · node2`, or just `client` when the node is called so.
fn lifeline_name(role: &str, node: &str) -> String {
    if node == role {
        role.to_string()
    } else {
        format!("{role} · {node}")
    }
}

/// One connection's ladder, with its heading.
pub fn handshake(h: &mut String, hs: &Handshake) {
    let rows = rows_from_transcript(&hs.transcript, &hs.times);
    let caption = format!(
        "{} ({} -> {}, from the {})",
        hs.title, hs.client, hs.server, hs.source
    );
    let _ = writeln!(
        h,
        "<figure class=\"handshake{}\"><figcaption>{}</figcaption>{}</figure>",
        if failed(&hs.transcript) {
            " failed"
        } else {
            ""
        },
        esc(&caption),
        svg(&rows, &hs.client, &hs.server, &caption)
    );
}

/// Stored and observed handshakes side by side.
pub fn mismatch(h: &mut String, m: &SnapshotMismatch) {
    let mut stored = rows_from_snapshot(&m.stored);
    let mut observed = rows_from_snapshot(&m.observed);
    mark_differences(&mut stored, &mut observed, &m.stored, &m.observed);
    let _ = writeln!(
        h,
        "<div class=\"mismatch\"><h3>Snapshot {} differs</h3><div class=\"side\">\
         <figure><figcaption>stored</figcaption>{}</figure>\
         <figure><figcaption>this run</figcaption>{}</figure></div></div>",
        esc(&m.name),
        if stored.is_empty() {
            "<p><i>no stored snapshot</i></p>".to_string()
        } else {
            svg(&stored, "client", "server", &format!("{}: stored", m.name))
        },
        svg(
            &observed,
            "client",
            "server",
            &format!("{}: this run", m.name)
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORED: &str = "C->S CLIENT_HELLO cookie=no extensions=[SIGNATURE_ALGORITHMS(0x000d),ECJPAKE_KKPP(0x0100)] offered_suites=[ECDHE_ECDSA_WITH_AES_128_CCM_8]\n\
                          S->C Alert FATAL ILLEGAL_PARAMETER\n";
    const OBSERVED: &str = "C->S CLIENT_HELLO cookie=no extensions=[SIGNATURE_ALGORITHMS(0x000d)] offered_suites=[ECDHE_ECDSA_WITH_AES_128_CCM_8]\n\
                            S->C HELLO_VERIFY_REQUEST cookie=yes\n\
                            S->C SERVER_KEY_EXCHANGE key_exchange=ecdhe SECP256R1 signed ECDSA_SHA512\n";

    #[test]
    fn snapshot_lines_become_rows_with_hot_extensions_and_alerts() {
        let rows = rows_from_snapshot(STORED);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].title, "ClientHello");
        assert_eq!(rows[0].direction, Direction::ClientToServer);
        let ext = &rows[0].details.iter().find(|(l, _)| l == "ext").unwrap().1;
        assert!(
            ext.iter()
                .any(|t| t.hot && t.text == "ecjpake_kkpp(0x0100)")
        );
        assert!(ext.iter().filter(|t| t.hot).count() == 1);
        assert_eq!(rows[1].kind, RowKind::Alert);
        assert_eq!(rows[1].title, "Alert fatal illegal_parameter");
        let obs = rows_from_snapshot(OBSERVED);
        assert_eq!(
            obs[2].details,
            vec![(
                "key_exchange".to_string(),
                vec![token("ecdhe SECP256R1 signed ECDSA_SHA512".into())]
            )]
        );
    }

    #[test]
    fn differing_rows_are_marked_on_both_sides() {
        let mut s = rows_from_snapshot(STORED);
        let mut o = rows_from_snapshot(OBSERVED);
        mark_differences(&mut s, &mut o, STORED, OBSERVED);
        assert_eq!(
            s.iter().map(|r| r.differs).collect::<Vec<_>>(),
            [true, true]
        );
        assert_eq!(
            o.iter().map(|r| r.differs).collect::<Vec<_>>(),
            [true, true, true]
        );
        let same = rows_from_snapshot(STORED);
        let mut a = same.clone();
        let mut b = same;
        mark_differences(&mut a, &mut b, STORED, STORED);
        assert!(a.iter().chain(&b).all(|r| !r.differs));
    }

    fn record(direction: Direction, sequence: u64, body: Body) -> ot_hil_dtls::transcript::Entry {
        ot_hil_dtls::transcript::Entry {
            direction,
            epoch: 0,
            sequence,
            content_type: ot_hil_dtls::ContentType::HANDSHAKE,
            encrypted: false,
            body,
        }
    }

    #[test]
    fn a_flight_sent_again_is_marked_as_a_retransmission() {
        let hello = || Body::Handshake {
            messages: vec![ot_hil_dtls::transcript::HandshakeEntry {
                msg_type: ot_hil_dtls::HandshakeType::CLIENT_HELLO,
                message_seq: 0,
                length: 10,
                fragment_offset: 0,
                fragment_length: 10,
                fields: None,
            }],
        };
        let t = Transcript {
            entries: vec![
                record(Direction::ClientToServer, 0, hello()),
                record(Direction::ClientToServer, 1, hello()),
                record(
                    Direction::ServerToClient,
                    0,
                    Body::Alert {
                        level: AlertLevel::FATAL,
                        description: ot_hil_dtls::AlertDescription::ILLEGAL_PARAMETER,
                    },
                ),
            ],
        };
        let at = Some(Duration::from_millis(5));
        let rows = rows_from_transcript(&t, &[at, None]);
        assert_eq!(
            rows.iter().map(|r| r.retransmission).collect::<Vec<_>>(),
            [false, true, false]
        );
        assert_eq!(rows[0].title, "ClientHello");
        assert_eq!(rows[0].at, at);
        assert_eq!(rows[1].at, None);
        assert_eq!(rows[2].title, "Alert fatal illegal_parameter");
        assert!(failed(&t));
        let s = svg(&rows, "client", "server", "cap");
        assert_eq!(s.matches("<g class=\"row rtx\">").count(), 1);
        assert!(s.contains("0.005 s"));
    }

    #[test]
    fn svg_escapes_and_draws_one_arrow_per_row() {
        let mut rows = rows_from_snapshot(STORED);
        rows[0].title = "<b>x</b>".into();
        let s = svg(&rows, "c<", "s", "cap");
        assert_eq!(s.matches("<line class=\"arrow\"").count(), 2);
        assert!(s.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(s.contains("<g class=\"row alert\">"));
        assert!(s.contains("<tspan class=\"hot\">ecjpake_kkpp(0x0100)</tspan>"));
    }
}
