//! `summary.md`: the run in Markdown for a CI job summary: the outcome matrix, then a Mermaid
//! `sequenceDiagram` of every failing handshake (GitHub draws Mermaid blocks in job summaries).

use std::fmt::Write as _;

use ot_hil_dtls::transcript::Direction;

use super::ladder::{self, Row, RowKind};
use super::{CaseRun, HtmlRun, outcome_label};

/// The Markdown summary of a run.
pub fn render(run: &HtmlRun) -> String {
    let mut md = String::new();
    let mut cases: Vec<&str> = run.runs.iter().map(|r| r.case.as_str()).collect();
    let mut variants: Vec<&str> = run.runs.iter().map(|r| r.variant.as_str()).collect();
    cases.sort_unstable();
    cases.dedup();
    variants.sort_unstable();
    variants.dedup();
    let counts: Vec<String> = super::totals(run.runs.iter())
        .iter()
        .map(|(o, n)| format!("{n} {}", o.label()))
        .collect();
    let _ = writeln!(
        md,
        "## ot-hil: {} in {} case runs\n",
        if counts.is_empty() {
            "nothing run".to_string()
        } else {
            counts.join(", ")
        },
        run.runs.len()
    );
    let _ = writeln!(
        md,
        "| case | {} |\n|---|{}",
        variants
            .iter()
            .map(|v| cell(v))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(variants.len())
    );
    for c in &cases {
        let row: Vec<String> = variants
            .iter()
            .map(
                |v| match run.runs.iter().find(|r| r.case == *c && r.variant == *v) {
                    Some(r) if r.is_failure() => format!("**{}**", outcome_label(r)),
                    Some(r) => outcome_label(r),
                    None => "–".into(),
                },
            )
            .collect();
        let _ = writeln!(md, "| {} | {} |", cell(c), row.join(" | "));
    }
    let failing: Vec<(&CaseRun, &super::Handshake)> = run
        .runs
        .iter()
        .flat_map(|r| r.handshakes.iter().map(move |h| (r, h)))
        .filter(|(_, h)| ladder::failed(&h.transcript))
        .collect();
    if !failing.is_empty() {
        md.push_str("\n### Failing handshakes\n");
    }
    for (r, h) in failing {
        let _ = writeln!(
            md,
            "\n#### {} @ {} ({}): {}\n",
            r.case,
            r.variant,
            outcome_label(r),
            h.title
        );
        md.push_str(&sequence_diagram(
            &ladder::rows_from_transcript(&h.transcript, &h.times),
            &h.client,
            &h.server,
        ));
    }
    md
}

/// A table cell: `|` would end it.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Text in a Mermaid message: `;` ends a statement and `#` starts an entity code.
fn mermaid_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '#' => "#35;".to_string(),
            ';' => "#59;".to_string(),
            '\n' => " ".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// A fenced Mermaid block: one message per ladder row, alerts as crossed arrows.
pub fn sequence_diagram(rows: &[Row], client: &str, server: &str) -> String {
    let mut m = String::from("```mermaid\nsequenceDiagram\n");
    let _ = writeln!(m, "    participant C as client ({})", mermaid_text(client));
    let _ = writeln!(m, "    participant S as server ({})", mermaid_text(server));
    for r in rows {
        let (from, to) = match r.direction {
            Direction::ClientToServer => ("C", "S"),
            Direction::ServerToClient => ("S", "C"),
        };
        let arrow = match r.kind {
            RowKind::Alert => "-x",
            RowKind::Encrypted | RowKind::ChangeCipherSpec => "-->>",
            RowKind::Handshake | RowKind::Malformed => "->>",
        };
        let mut text = r.title.clone();
        if r.retransmission {
            text.push_str(" (retransmission)");
        }
        // What a reader of a failed handshake looks for; the full fields are in report.html.
        for (label, tokens) in &r.details {
            let shown: Vec<&str> = tokens
                .iter()
                .filter(|t| t.hot || matches!(label.as_str(), "chose" | "subjects"))
                .map(|t| t.text.as_str())
                .collect();
            if !shown.is_empty() {
                let _ = write!(text, "<br/>{label}: {}", shown.join(", "));
            }
        }
        let _ = writeln!(m, "    {from}{arrow}{to}: {}", mermaid_text(&text));
    }
    m.push_str("```\n");
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_is_a_crossed_arrow_and_hot_extension_is_named() {
        let rows = ladder::rows_from_snapshot(
            "C->S CLIENT_HELLO cookie=no extensions=[ECJPAKE_KKPP(0x0100),X(0x1)] offered_suites=[A;B]\n\
             S->C Alert FATAL ILLEGAL_PARAMETER\n",
        );
        let m = sequence_diagram(&rows, "client", "server");
        assert!(m.starts_with("```mermaid\nsequenceDiagram\n"), "{m}");
        assert!(
            m.contains("    C->>S: ClientHello<br/>ext: ecjpake_kkpp(0x0100)\n"),
            "{m}"
        );
        assert!(
            m.contains("    S-xC: Alert fatal illegal_parameter\n"),
            "{m}"
        );
        assert_eq!(mermaid_text("a;b#c"), "a#59;b#35;c");
    }
}
