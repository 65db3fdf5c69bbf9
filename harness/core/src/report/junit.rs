//! JUnit XML, written in one pass from the run's events: one `<testsuite>` per variant, one
//! `<testcase>` per case, with provenance `<properties>` on both and earlier attempts the way
//! Maven Surefire writes re-runs: a test that passed after failing carries `<flakyFailure>` /
//! `<flakyError>`, one that failed on every attempt `<rerunFailure>` / `<rerunError>` next to its
//! `<failure>`. Each has `message`, `type` and a `<stackTrace>` (here: the failure details).
//!
//! XFAIL and XPASS are told apart from PASS and FAIL by an `outcome` property and by their
//! message (`XFAIL: ...` in `<system-out>`, `XPASS: ...` as the failure message).
//!
//! One writer (quick-xml) for the whole document: the junit-report crate can express neither
//! properties, re-run elements nor a host name other than `localhost`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use super::provenance::RunFacts;
use super::{RunRecord, attempt_details, failure_text};
use crate::events::{CaseResult, Outcome, Reporter, RunEvent};

type Xml = Writer<Vec<u8>>;

/// Writes `junit.xml` when the run finishes (also after Ctrl-C, with the cases not run as
/// skipped).
pub struct JunitReporter {
    path: PathBuf,
    record: RunRecord,
}

impl JunitReporter {
    pub fn new(path: PathBuf) -> Self {
        JunitReporter {
            path,
            record: RunRecord::default(),
        }
    }

    fn write(&self) -> std::io::Result<()> {
        let xml = render(&self.record.run_facts(), &self.record.results)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write to a temporary file and rename, so a reader never sees a half-written report.
        let tmp = self.path.with_extension("xml.tmp");
        std::fs::write(&tmp, xml)?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl Reporter for JunitReporter {
    fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        match self.record.observe(event) {
            Some(_) => self.write(),
            None => Ok(()),
        }
    }
}

/// Counts of one suite (or all), as JUnit's attributes want them.
#[derive(Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    seconds: f64,
}

impl Counts {
    fn of<'a>(results: impl IntoIterator<Item = &'a CaseResult>) -> Counts {
        let mut c = Counts::default();
        for r in results {
            c.tests += 1;
            c.seconds += r.duration.as_secs_f64();
            match r.outcome {
                Outcome::Fail | Outcome::Xpass => c.failures += 1,
                Outcome::Error => c.errors += 1,
                Outcome::Skip => c.skipped += 1,
                Outcome::Pass | Outcome::Xfail => {}
            }
        }
        c
    }

    fn attributes(&self) -> [(&'static str, String); 5] {
        [
            ("tests", self.tests.to_string()),
            ("failures", self.failures.to_string()),
            ("errors", self.errors.to_string()),
            ("skipped", self.skipped.to_string()),
            ("time", format!("{:.3}", self.seconds)),
        ]
    }
}

/// The JUnit document for `results`.
pub fn render(run: &RunFacts, results: &[CaseResult]) -> std::io::Result<String> {
    let mut suites: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for r in results {
        suites.entry(r.variant.as_str()).or_default().push(r);
    }
    let mut w = Writer::new(Vec::new());
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))?;
    let mut root = BytesStart::new("testsuites");
    root.push_attribute(("name", "ot-hil"));
    push_attributes(&mut root, Counts::of(results.iter()).attributes());
    w.write_event(Event::Start(root))?;
    for (variant, cases) in &suites {
        let suite_name = format!("ot-hil.{variant}");
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", suite_name.as_str()));
        push_attributes(&mut suite, Counts::of(cases.iter().copied()).attributes());
        suite.push_attribute(("timestamp", run.started.as_str()));
        suite.push_attribute(("hostname", run.host.as_str()));
        w.write_event(Event::Start(suite))?;
        let mut props = vec![
            ("ot-hil.version".to_string(), run.version.to_string()),
            ("variant".to_string(), variant.to_string()),
        ];
        if let Some(c) = run.git_commit {
            props.push(("ot-hil.commit".into(), c.to_string()));
        }
        write_properties(&mut w, &props)?;
        for r in cases {
            write_case(&mut w, &suite_name, r)?;
        }
        w.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuites")))?;
    Ok(String::from_utf8_lossy(&w.into_inner()).into_owned())
}

fn push_attributes<const N: usize>(e: &mut BytesStart<'_>, attributes: [(&str, String); N]) {
    for (k, v) in &attributes {
        e.push_attribute((*k, v.as_str()));
    }
}

fn write_properties(w: &mut Xml, props: &[(String, String)]) -> std::io::Result<()> {
    if props.is_empty() {
        return Ok(());
    }
    w.write_event(Event::Start(BytesStart::new("properties")))?;
    for (name, value) in props {
        w.write_event(Event::Empty(BytesStart::new("property").with_attributes([
            ("name", name.as_str()),
            ("value", value.as_str()),
        ])))?;
    }
    w.write_event(Event::End(BytesEnd::new("properties")))
}

/// An element with attributes and, when `text` is given, a text body.
fn element(
    w: &mut Xml,
    name: &str,
    attributes: &[(&str, &str)],
    text: Option<&str>,
) -> std::io::Result<()> {
    let start = BytesStart::new(name).with_attributes(attributes.iter().copied());
    match text {
        None => w.write_event(Event::Empty(start)),
        Some(t) => {
            w.write_event(Event::Start(start))?;
            w.write_event(Event::Text(BytesText::new(t)))?;
            w.write_event(Event::End(BytesEnd::new(name)))
        }
    }
}

fn case_properties(r: &CaseResult) -> Vec<(String, String)> {
    let mut props = vec![("outcome".to_string(), r.outcome.label().to_string())];
    if r.flaky {
        props.push(("flaky".into(), "true".into()));
    }
    if !r.attempts.is_empty() {
        props.push(("attempts".into(), (r.attempts.len() + 1).to_string()));
    }
    if let Some(q) = &r.quarantined {
        props.push(("quarantined".into(), q.clone()));
    }
    props.extend(r.facts.properties());
    props
}

fn write_case(w: &mut Xml, classname: &str, r: &CaseResult) -> std::io::Result<()> {
    let time = format!("{:.3}", r.duration.as_secs_f64());
    let file = r.path.display().to_string();
    let start = BytesStart::new("testcase").with_attributes([
        ("name", r.case.as_str()),
        ("classname", classname),
        ("file", file.as_str()),
        ("time", time.as_str()),
    ]);
    w.write_event(Event::Start(start))?;
    write_properties(w, &case_properties(r))?;
    let details = failure_text(r);
    let reason = r.reason.clone().unwrap_or_default();
    let mut system_out = String::new();
    match r.outcome {
        Outcome::Pass => {
            if r.flaky {
                system_out.push_str("FLAKY: passed on a re-run\n");
            }
        }
        Outcome::Xfail => system_out.push_str(&format!("XFAIL: {reason}\n{details}")),
        Outcome::Skip => element(w, "skipped", &[("message", reason.as_str())], None)?,
        Outcome::Fail | Outcome::Xpass => {
            let message = match (&r.failure, r.outcome) {
                (_, Outcome::Xpass) => format!("XPASS: {reason}"),
                (Some(f), _) => format!("{} ({}): expected {}", f.step, f.location, f.expected),
                (None, _) => reason.clone(),
            };
            element(
                w,
                "failure",
                &[("message", message.as_str()), ("type", r.outcome.label())],
                Some(&details),
            )?;
        }
        Outcome::Error => element(
            w,
            "error",
            &[("message", reason.as_str()), ("type", "infrastructure")],
            Some(&details),
        )?,
    }
    write_attempts(w, r)?;
    // A passing case still points at its air capture (Wireshark opens it).
    if let Some(pcap) = r.logs.get(crate::air::witness::PCAP_FILE) {
        system_out.push_str(&format!("air capture: {}\n", pcap.display()));
    }
    if !system_out.is_empty() {
        element(w, "system-out", &[], Some(&system_out))?;
    }
    w.write_event(Event::End(BytesEnd::new("testcase")))
}

fn write_attempts(w: &mut Xml, r: &CaseResult) -> std::io::Result<()> {
    let passed = matches!(r.outcome, Outcome::Pass | Outcome::Xfail);
    for a in &r.attempts {
        let name = match (passed, a.outcome) {
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
        w.write_event(Event::Start(
            BytesStart::new(name).with_attributes([("message", message.as_str()), ("type", type_)]),
        ))?;
        element(w, "stackTrace", &[], Some(&attempt_details(a)))?;
        w.write_event(Event::End(BytesEnd::new(name)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::AttemptRecord;
    use crate::report::provenance::{CaseFacts, NodeFacts};
    use std::time::Duration;

    fn result(case: &str, outcome: Outcome, attempts: Vec<AttemptRecord>) -> CaseResult {
        CaseResult {
            flaky: outcome == Outcome::Pass && !attempts.is_empty(),
            attempts,
            ..CaseResult::new(case.into(), "v".into(), PathBuf::from("c.toml"), outcome)
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

    fn run() -> RunFacts {
        RunFacts {
            host: "lab-host-7".into(),
            started: "2026-12-02T20:05:00Z".into(),
            git_commit: Some("0123abc"),
            ..RunFacts::now()
        }
    }

    #[test]
    fn re_runs_provenance_and_expected_outcomes_in_one_document() {
        let mut b = result(
            "b",
            Outcome::Fail,
            vec![attempt(Outcome::Error, "board gone <&>")],
        );
        b.quarantined = Some("issue 7".into());
        let mut c = result("c", Outcome::Xfail, vec![]);
        c.reason = Some("known bug".into());
        c.facts = CaseFacts {
            firmware_sha256: Some("ab12".into()),
            nodes: [(
                "dut".to_string(),
                NodeFacts {
                    source: "virtual",
                    port: Some("/dev/pts/3".into()),
                    ..NodeFacts::default()
                },
            )]
            .into(),
            sniffer: None,
            seed: Some(4),
            clock: None,
        };
        let results = vec![
            result("a", Outcome::Pass, vec![attempt(Outcome::Fail, "timeout")]),
            b,
            c,
        ];
        let xml = render(&run(), &results).expect("rendered");
        assert!(
            xml.contains(r#"<testsuite name="ot-hil.v" tests="3" failures="1" errors="0" skipped="0" time="0.000" timestamp="2026-12-02T20:05:00Z" hostname="lab-host-7"><properties><property name="ot-hil.version" value=""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="ot-hil.commit" value="0123abc"/>"#),
            "{xml}"
        );
        assert!(xml.contains(r#"<testcase name="a" classname="ot-hil.v" file="c.toml" time="0.000"><properties><property name="outcome" value="PASS"/><property name="flaky" value="true"/><property name="attempts" value="2"/></properties><flakyFailure message="attempt 1: FAIL timeout" type="FAIL"><stackTrace>reason: timeout
</stackTrace></flakyFailure><system-out>FLAKY: passed on a re-run
</system-out></testcase>"#), "{xml}");
        assert!(xml.contains(r#"<property name="quarantined" value="issue 7"/></properties><failure message="" type="FAIL">"#), "{xml}");
        assert!(xml.contains(r#"<rerunError message="attempt 1: ERROR board gone &lt;&amp;&gt;" type="infrastructure">"#), "{xml}");
        assert!(xml.contains(r#"<property name="outcome" value="XFAIL"/><property name="firmware.sha256" value="ab12"/><property name="node.dut" value="virtual, port /dev/pts/3"/><property name="seed" value="4"/></properties><system-out>XFAIL: known bug"#), "{xml}");
        assert!(xml.ends_with("</testsuites>"), "{xml}");
    }

    #[test]
    fn the_document_parses_and_every_case_is_in_it_once() {
        let results = vec![
            result("a", Outcome::Pass, vec![]),
            result("b", Outcome::Skip, vec![]),
            result("c", Outcome::Error, vec![]),
        ];
        let xml = render(&run(), &results).expect("rendered");
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut cases = Vec::new();
        loop {
            match reader.read_event().expect("well-formed") {
                Event::Eof => break,
                Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                    let name = e
                        .try_get_attribute("name")
                        .ok()
                        .flatten()
                        .map(|a| String::from_utf8_lossy(a.value.as_ref()).into_owned());
                    cases.push(name.unwrap_or_default());
                }
                _ => {}
            }
        }
        assert_eq!(cases, ["a", "b", "c"]);
        assert!(
            xml.contains(
                r#"<testsuites name="ot-hil" tests="3" failures="0" errors="1" skipped="1""#
            ),
            "{xml}"
        );
    }
}
