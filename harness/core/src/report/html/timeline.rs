//! The timeline of a case run: one row per line or event, one column per node (the air last),
//! on one time axis. Rows carry their node in `data-node`, which the page's script filters on;
//! without JavaScript the table is shown whole and the filter buttons stay hidden.

use std::fmt::Write as _;

use super::{Timeline, esc};

pub fn render(h: &mut String, t: &Timeline, anchor: &str) {
    if t.entries.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<div class=\"timeline\" id=\"{anchor}-timeline\"><h3>Timeline</h3>\n\
         <div class=\"filters\" hidden>show: <button type=\"button\" class=\"on\" data-node=\"\">all</button>"
    );
    for n in &t.nodes {
        let _ = write!(
            h,
            "<button type=\"button\" data-node=\"{0}\">{0}</button>",
            esc(n)
        );
    }
    h.push_str("</div>\n<table class=\"tl\"><thead><tr><th class=\"t\">t (s)</th>");
    for n in &t.nodes {
        let _ = write!(h, "<th>{}</th>", esc(n));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for e in &t.entries {
        let col = t.nodes.iter().position(|n| *n == e.node).unwrap_or(0);
        let _ = write!(
            h,
            "<tr class=\"{}{}\" data-node=\"{}\"><td class=\"t\">{:.3}</td>",
            e.kind.class(),
            if e.highlight { " hl" } else { "" },
            esc(&e.node),
            e.at.as_secs_f64()
        );
        for _ in 0..col {
            h.push_str("<td></td>");
        }
        let _ = write!(h, "<td>{}</td>", esc(&e.text));
        for _ in col + 1..t.nodes.len() {
            h.push_str("<td></td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    if t.omitted > 0 {
        let _ = writeln!(
            h,
            "<p class=\"dim\">{} more lines are in the board logs linked above.</p>",
            t.omitted
        );
    }
    h.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{EntryKind, TimelineEntry};
    use super::*;

    #[test]
    fn one_column_per_node_and_lines_in_their_node_column() {
        let entry = |node: &str, text: &str| TimelineEntry {
            at: Duration::from_millis(1234),
            node: node.into(),
            kind: EntryKind::Console,
            text: text.into(),
            highlight: node == "air",
        };
        let t = Timeline {
            nodes: vec!["server".into(), "client".into(), "air".into()],
            entries: vec![entry("client", "<i>"), entry("air", "frame")],
            omitted: 3,
        };
        let mut h = String::new();
        render(&mut h, &t, "run-x--y");
        assert!(h.contains(
            "<tr class=\"k-console\" data-node=\"client\"><td class=\"t\">1.234</td><td></td><td>&lt;i&gt;</td><td></td></tr>"
        ));
        assert!(h.contains("<tr class=\"k-console hl\" data-node=\"air\"><td class=\"t\">1.234</td><td></td><td></td><td>frame</td></tr>"));
        assert!(h.contains("3 more lines"));
    }
}
