//! The reporters on a run's events: JUnit with the host name, provenance and expected outcomes
//! that CI's summary tells apart from passes; `results.json` with its schema version and
//! provenance.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ot_hil::events::{CaseResult, Outcome, Reporter, RunEvent, Summary};
use ot_hil::report::provenance::{RESULTS_SCHEMA_VERSION, RunFacts, host_name};
use ot_hil::report::{JsonReporter, JunitReporter};

fn result(case: &str, outcome: Outcome) -> CaseResult {
    let mut r = CaseResult::new(
        case.into(),
        "v1".into(),
        PathBuf::from(format!("{case}.toml")),
        outcome,
    );
    r.duration = Duration::from_millis(250);
    r
}

/// Feed one run's events (two PASS, one XFAIL, one FAIL) to `reporter`.
fn feed(reporter: &mut dyn Reporter) {
    let run = RunFacts::now();
    let mut xfail = result("known-bug", Outcome::Xfail);
    xfail.reason = Some("issue 3".into());
    let results = [
        result("a", Outcome::Pass),
        result("b", Outcome::Pass),
        xfail,
        result("broken", Outcome::Fail),
    ];
    let mut summary = Summary::default();
    let events = std::iter::once(RunEvent::RunStarted {
        cases: 4,
        variants: vec!["v1".into()],
        planned: 4,
        jobs: 1,
        run,
    })
    .chain(results.iter().map(|r| {
        *summary.counts.entry(r.outcome).or_default() += 1;
        RunEvent::CaseFinished(Box::new(r.clone()))
    }))
    .collect::<Vec<_>>();
    for e in &events {
        reporter.on_event(e).expect("reported");
    }
    reporter
        .on_event(&RunEvent::RunFinished(summary))
        .expect("written");
}

#[test]
fn junit_names_the_host_and_version_and_ci_does_not_count_xfail_as_passed() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("junit.xml");
    feed(&mut JunitReporter::new(path.clone()));
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(
        xml.contains(&format!("hostname=\"{}\"", host_name())),
        "{xml}"
    );
    assert!(
        xml.contains(&format!(
            "<property name=\"ot-hil.version\" value=\"{}\"/>",
            env!("CARGO_PKG_VERSION")
        )),
        "{xml}"
    );
    assert!(
        xml.contains("<property name=\"outcome\" value=\"XFAIL\"/>"),
        "{xml}"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ci/junit-summary.py");
    let summary = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .expect("python3 runs the CI summary");
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(
        text.contains("2 passed, 1 failed as expected (XFAIL), 1 failed, 0 errors"),
        "{text}"
    );
}

#[test]
fn results_json_has_its_schema_version_and_provenance() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("results.json");
    feed(&mut JsonReporter::new(path.clone()));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["schema_version"], RESULTS_SCHEMA_VERSION);
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["host"], host_name());
    let started = doc["started"].as_str().unwrap_or_default();
    let started = humantime::parse_rfc3339(started).expect("RFC 3339 start time");
    let age = std::time::SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60), "{age:?}");
    assert_eq!(doc["results"].as_array().map(Vec::len), Some(4));
    assert!(doc["results"][0]["facts"]["nodes"].is_object(), "{doc}");
}
