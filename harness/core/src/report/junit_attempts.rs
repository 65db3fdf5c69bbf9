//! Earlier attempts, flakiness and quarantine in JUnit XML, the way Maven Surefire writes
//! re-runs: a test that passed after failing carries `<flakyFailure>` / `<flakyError>` elements;
//! one that failed on every attempt carries `<rerunFailure>` / `<rerunError>` for the earlier
//! attempts next to its `<failure>`. Each has `message`, `type`, a `<stackTrace>` (here: the
//! failure details) and `<system-out>`. Flaky and quarantined cases also get `<properties>`.
//!
//! The `junit-report` crate has no such elements, so its output is rewritten: every
//! `<testcase>` is matched by (classname, name) and the extra elements go before its end tag.

use std::collections::BTreeMap;

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

use crate::events::{AttemptRecord, CaseResult, Outcome};

/// What one `<testcase>` gets in addition.
#[derive(Debug, Default)]
struct Extras {
    properties: Vec<(String, String)>,
    attempts: Vec<(&'static str, String, String, String)>, // element, type, message, details
}

fn attempt_details(a: &AttemptRecord) -> String {
    let mut s = String::new();
    if let Some(reason) = &a.reason {
        s.push_str(&format!("reason: {reason}\n"));
    }
    if let Some(f) = &a.failure {
        s.push_str(&format!("step: {} ({})\n", f.step, f.location));
        if let Some(c) = &f.crash {
            s.push_str(&format!("crash: {c}\n"));
        }
        s.push_str(&format!("expected: {}\ngot:\n", f.expected));
        for l in &f.got {
            s.push_str(&format!("  | {l}\n"));
        }
    }
    if let Some(i) = &a.infra {
        s.push_str(&format!("board: {}\nproblem: {}\n", i.board, i.reason));
    }
    for (node, log) in &a.logs {
        s.push_str(&format!("log of {node}: {}\n", log.display()));
    }
    s
}

fn extras_of(r: &CaseResult) -> Option<Extras> {
    let mut x = Extras::default();
    if r.flaky {
        x.properties.push(("flaky".into(), "true".into()));
    }
    if !r.attempts.is_empty() {
        x.properties
            .push(("attempts".into(), (r.attempts.len() + 1).to_string()));
    }
    if let Some(q) = &r.quarantined {
        x.properties.push(("quarantined".into(), q.clone()));
    }
    let passed = matches!(r.outcome, Outcome::Pass | Outcome::Xfail);
    for a in &r.attempts {
        let element = match (passed, a.outcome) {
            (true, Outcome::Error) => "flakyError",
            (true, _) => "flakyFailure",
            (false, Outcome::Error) => "rerunError",
            (false, _) => "rerunFailure",
        };
        let type_ = if a.outcome == Outcome::Error {
            "infrastructure"
        } else {
            a.outcome.label()
        };
        let message = format!(
            "attempt {}: {} {}",
            a.attempt,
            a.outcome.label(),
            a.reason
                .clone()
                .or_else(|| a
                    .failure
                    .as_ref()
                    .map(|f| format!("expected {}", f.expected)))
                .unwrap_or_default()
        );
        x.attempts
            .push((element, type_.to_string(), message, attempt_details(a)));
    }
    if x.properties.is_empty() && x.attempts.is_empty() {
        None
    } else {
        Some(x)
    }
}

/// Rewrite `xml` (junit-report's output for `results`) with the extra elements.
pub fn add_attempts(
    xml: &str,
    results: &[CaseResult],
    classname: impl Fn(&CaseResult) -> String,
) -> Result<String, quick_xml::Error> {
    let mut extras: BTreeMap<(String, String), Extras> = BTreeMap::new();
    for r in results {
        if let Some(x) = extras_of(r) {
            extras.insert((classname(r), r.case.clone()), x);
        }
    }
    if extras.is_empty() {
        return Ok(xml.to_string());
    }
    let mut reader = Reader::from_str(xml);
    let mut writer = Writer::new(Vec::new());
    let mut current: Option<(String, String)> = None;
    loop {
        match reader.read_event()? {
            Event::Eof => break,
            Event::Start(e) if e.name().as_ref() == b"testcase" => {
                current = Some(key_of(&e));
                writer.write_event(Event::Start(e))?;
            }
            Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                let key = key_of(&e);
                match extras.get(&key) {
                    Some(x) => {
                        writer.write_event(Event::Start(e.clone()))?;
                        write_extras(&mut writer, x)?;
                        writer.write_event(Event::End(BytesEnd::new("testcase")))?;
                    }
                    None => writer.write_event(Event::Empty(e))?,
                }
            }
            Event::End(e) if e.name().as_ref() == b"testcase" => {
                if let Some(x) = current.take().and_then(|k| extras.get(&k)) {
                    write_extras(&mut writer, x)?;
                }
                writer.write_event(Event::End(e))?;
            }
            other => writer.write_event(other)?,
        }
    }
    Ok(String::from_utf8_lossy(&writer.into_inner()).into_owned())
}

fn key_of(e: &BytesStart<'_>) -> (String, String) {
    let attr = |name: &str| {
        e.try_get_attribute(name)
            .ok()
            .flatten()
            .and_then(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
            .unwrap_or_default()
    };
    (attr("classname"), attr("name"))
}

fn write_extras(w: &mut Writer<Vec<u8>>, x: &Extras) -> Result<(), quick_xml::Error> {
    if !x.properties.is_empty() {
        w.write_event(Event::Start(BytesStart::new("properties")))?;
        for (name, value) in &x.properties {
            w.write_event(Event::Empty(BytesStart::new("property").with_attributes([
                ("name", name.as_str()),
                ("value", value.as_str()),
            ])))?;
        }
        w.write_event(Event::End(BytesEnd::new("properties")))?;
    }
    for (element, type_, message, details) in &x.attempts {
        w.write_event(Event::Start(BytesStart::new(*element).with_attributes([
            ("message", message.as_str()),
            ("type", type_.as_str()),
        ])))?;
        w.write_event(Event::Start(BytesStart::new("stackTrace")))?;
        w.write_event(Event::Text(BytesText::new(details)))?;
        w.write_event(Event::End(BytesEnd::new("stackTrace")))?;
        w.write_event(Event::End(BytesEnd::new(*element)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn result(case: &str, outcome: Outcome, attempts: Vec<AttemptRecord>) -> CaseResult {
        CaseResult {
            flaky: outcome == Outcome::Pass && !attempts.is_empty(),
            attempts,
            ..CaseResult::new(case.into(), "v".into(), PathBuf::new(), outcome)
        }
    }

    fn attempt(outcome: Outcome, reason: &str) -> AttemptRecord {
        AttemptRecord {
            attempt: 1,
            outcome,
            duration: Duration::ZERO,
            reason: Some(reason.into()),
            failure: None,
            infra: None,
            tails: BTreeMap::new(),
            logs: BTreeMap::new(),
        }
    }

    #[test]
    fn flaky_and_rerun_elements_go_into_their_testcase() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="s"><testcase name="a" classname="ot-hil.v" time="1"/><testcase name="b" classname="ot-hil.v" time="1"><failure type="FAIL" message="m"/></testcase><testcase name="c" classname="ot-hil.v" time="1"/></testsuite></testsuites>"#;
        let mut b = result(
            "b",
            Outcome::Fail,
            vec![attempt(Outcome::Error, "board gone <&>")],
        );
        b.quarantined = Some("issue 7".into());
        let results = vec![
            result("a", Outcome::Pass, vec![attempt(Outcome::Fail, "timeout")]),
            b,
            result("c", Outcome::Pass, vec![]),
        ];
        let out = add_attempts(xml, &results, |r| format!("ot-hil.{}", r.variant)).unwrap();
        assert!(out.contains(r#"<testcase name="a" classname="ot-hil.v" time="1"><properties><property name="flaky" value="true"/><property name="attempts" value="2"/></properties><flakyFailure message="attempt 1: FAIL timeout" type="FAIL"><stackTrace>reason: timeout
</stackTrace></flakyFailure></testcase>"#), "{out}");
        assert!(out.contains(r#"<failure type="FAIL" message="m"/><properties><property name="attempts" value="2"/><property name="quarantined" value="issue 7"/></properties><rerunError message="attempt 1: ERROR board gone &lt;&amp;&gt;" type="infrastructure">"#), "{out}");
        assert!(
            out.contains(r#"<testcase name="c" classname="ot-hil.v" time="1"/>"#),
            "{out}"
        );
    }

    #[test]
    fn nothing_to_add_leaves_the_text_alone() {
        let xml = "<testsuites><testsuite><testcase name=\"a\"/></testsuite></testsuites>";
        assert_eq!(
            add_attempts(xml, &[result("a", Outcome::Pass, vec![])], |_| String::new(
            ))
            .unwrap(),
            xml
        );
    }
}
