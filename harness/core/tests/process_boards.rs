//! The runner end to end on process boards: a scripted fake OpenThread CLI (tests/support/fake_cli.py)
//! on a PTY, so console framing, the executor and the failure classification are exercised
//! without a virtual DK.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ot_hil::boards::ProcessBoards;
use ot_hil::case::{Case, LoadOptions};
use ot_hil::events::{CaseResult, Outcome, Reporter, RunEvent};
use ot_hil::profile::Shell;
use ot_hil::report::{JsonReporter, JunitReporter};
use ot_hil::runner::{self, RunConfig};

struct Collect(Arc<Mutex<Vec<CaseResult>>>);

impl Reporter for Collect {
    fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        if let RunEvent::CaseFinished(r) = event {
            self.0.lock().unwrap().push((**r).clone());
        }
        Ok(())
    }
}

fn fake_cli() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_cli.py");
    format!("python3 -u {}", script.display())
}

fn variant(dir: &Path) -> ot_hil::variants::Variant {
    std::fs::write(
        dir.join("fake.toml"),
        "name = \"fake\"\napplication = \"thread-cli\"\nprofile = \"upstream\"\n",
    )
    .unwrap();
    ot_hil::variants::load_variants(dir).unwrap().remove(0)
}

struct Ran {
    results: Vec<CaseResult>,
    out: tempfile::TempDir,
    elapsed: Duration,
}

/// Run each `(name, toml)` case on `boards` fake CLI processes.
fn run(cases: &[(&str, &str)], boards: usize, jobs: usize) -> Ran {
    run_on(cases, &fake_cli(), boards, jobs, Duration::from_secs(5))
}

fn run_on(
    cases: &[(&str, &str)],
    command: &str,
    boards: usize,
    jobs: usize,
    ready_timeout: Duration,
) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let v = variant(dir.path());
    let options = LoadOptions {
        known_variants: Some(["fake".to_string()].into()),
    };
    let cases: Vec<Case> = cases
        .iter()
        .map(|(name, text)| {
            let p = dir.path().join(format!("{name}.toml"));
            std::fs::write(&p, text).unwrap();
            Case::load(&p, &options).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    let variants = vec![v];
    let plan = runner::plan(&cases, &variants, None, None);
    let config = RunConfig {
        cases,
        variants,
        boards: Arc::new(ProcessBoards::new(
            vec![command.to_string(); boards],
            Shell::upstream(),
        )),
        out_dir: out.path().to_path_buf(),
        jobs,
        ready_timeout,
    };
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut reporters: Vec<Box<dyn Reporter>> = vec![
        Box::new(Collect(results.clone())),
        Box::new(JunitReporter::new(out.path().join("junit.xml"))),
        Box::new(JsonReporter::new(out.path().join("results.json"))),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    rt.block_on(runner::run(
        config,
        plan,
        &mut reporters,
        std::future::pending(),
    ))
    .unwrap();
    let elapsed = started.elapsed();
    let mut results = results.lock().unwrap().clone();
    results.sort_by(|a, b| a.case.cmp(&b.case));
    Ran {
        results,
        out,
        elapsed,
    }
}

const ONE_NODE: &str = "nodes = [\"dut\"]\n";

#[test]
fn commands_results_captures_and_async_lines() {
    let case = format!(
        "{ONE_NODE}
[[steps]]
node = \"dut\"
send = \"state\"
output = ['^leader$']

[[steps]]
node = \"dut\"
send = \"ipaddr\"
capture = {{ rloc = '^(fdde:[0-9a-f:]+:ff:fe00:[0-9a-f]+)$' }}

[[steps]]
node = \"dut\"
send = \"bad ${{dut.rloc}}\"
result = \"Error InvalidArgs\"

[[steps]]
node = \"dut\"
send = \"later 0.05 coaps connected\"

[[steps]]
node = \"dut\"
expect = '^coaps connected$'
absent = ['disconnected']
timeout = \"2s\"

[[steps]]
node = \"dut\"
poll = \"state\"
until = '^(leader|router)$'
interval = \"10ms\"
deadline = \"2s\"

[[steps]]
node = \"dut\"
send = \"garbage\"
"
    );
    let ran = run(&[("good", &case)], 1, 1);
    let r = &ran.results[0];
    assert_eq!(r.outcome, Outcome::Pass, "{r:#?}");
    assert_eq!(r.steps.len(), 7);
    // The board log holds the echo and the async line.
    let log = std::fs::read_to_string(&r.logs["dut"]).unwrap();
    assert!(
        log.contains(">>> bad fdde:ad00:beef:0:0:ff:fe00:fc00"),
        "{log}"
    );
    assert!(log.contains("coaps connected"), "{log}");
}

#[test]
fn async_line_that_arrived_during_another_nodes_step_is_found() {
    let case = "nodes = [\"a\", \"b\"]
[[steps]]
node = \"a\"
send = \"later 0.01 coaps request from fd00::1 GET\"

[[steps]]
node = \"b\"
send = \"later 0.3 x\"

[[steps]]
node = \"b\"
expect = '^x$'

[[steps]]
node = \"a\"
expect = '^coaps request from .* GET$'
timeout = \"1ms\"
";
    let ran = run(&[("cross", case)], 2, 1);
    assert_eq!(
        ran.results[0].outcome,
        Outcome::Pass,
        "{:#?}",
        ran.results[0]
    );
}

/// OpenThread prints callback lines whenever the event happens, so one can land between another
/// command's echo and its `Done`; it is still there for the `expect` that waits for it, and the
/// command's output (here its capture) is only its own.
#[test]
fn callback_line_inside_another_commands_output_is_left_for_expect() {
    let case = format!(
        "{ONE_NODE}[[steps]]
node = \"dut\"
send = \"interleave coaps response from fd00::1 with payload: 30\"
capture = {{ role = '^(.*)$' }}

[[steps]]
node = \"dut\"
send = \"state\"
output = ['^${{dut.role}}$']

[[steps]]
node = \"dut\"
expect = '^coaps response from fd00::1 with payload: 30$'
timeout = \"1ms\"
"
    );
    let ran = run(&[("interleaved", &case)], 1, 1);
    assert_eq!(
        ran.results[0].outcome,
        Outcome::Pass,
        "{:#?}",
        ran.results[0]
    );
}

#[test]
fn board_that_never_answers_fails_naming_board_step_and_expectation() {
    let case = format!(
        "{ONE_NODE}[[steps]]\nnode = \"dut\"\nsend = \"state\"\n\n[[steps]]\nnode = \"dut\"\nsend = \"hang\"\ntimeout = \"300ms\"\n"
    );
    let started = Instant::now();
    let ran = run(&[("hang", &case)], 1, 1);
    let r = &ran.results[0];
    assert_eq!(r.outcome, Outcome::Fail, "{r:#?}");
    let f = r.failure.as_ref().unwrap();
    assert_eq!(f.node, "dut");
    assert_eq!(f.step_index, Some(1));
    assert!(f.location.ends_with("hang.toml:6:1"), "{}", f.location);
    assert!(
        f.expected.contains("`hang` to end with Done within 300ms"),
        "{}",
        f.expected
    );
    assert_eq!(f.got, ["hang"]);
    assert!(started.elapsed() < Duration::from_secs(5));
    // JUnit names the step, the expectation and the node's last lines.
    let junit = std::fs::read_to_string(ran.out.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains("hang.toml:6:1") && junit.contains("last lines of dut"),
        "{junit}"
    );
}

#[test]
fn wrong_result_shows_what_came_instead() {
    let case = format!("{ONE_NODE}[[steps]]\nnode = \"dut\"\nsend = \"bad\"\n");
    let ran = run(&[("wrong", &case)], 1, 1);
    let f = ran.results[0].failure.clone().unwrap();
    assert!(f.expected.contains("to end with Done"), "{f:?}");
    assert_eq!(f.got, ["bad", "Error 7: InvalidArgs"]);
}

#[test]
fn process_exit_assert_and_reboot_are_firmware_failures() {
    let exit = format!("{ONE_NODE}[[steps]]\nnode = \"dut\"\nsend = \"exit\"\n");
    let assert_line = format!(
        "{ONE_NODE}[[steps]]\nnode = \"dut\"\nsend = \"assert\"\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\n"
    );
    let reboot = format!(
        "{ONE_NODE}[[steps]]\nnode = \"dut\"\nsend = \"reboot\"\n[[steps]]\nnode = \"dut\"\nexpect = \"never\"\ntimeout = \"5s\"\n"
    );
    let ran = run(
        &[
            ("a-exit", &exit),
            ("b-assert", &assert_line),
            ("c-reboot", &reboot),
        ],
        1,
        1,
    );
    let [exit, assert_r, reboot] = [&ran.results[0], &ran.results[1], &ran.results[2]];
    assert_eq!(exit.outcome, Outcome::Fail, "{exit:#?}");
    assert!(
        exit.failure
            .as_ref()
            .unwrap()
            .crash
            .as_ref()
            .unwrap()
            .contains("board process exited"),
        "{exit:#?}"
    );
    assert_eq!(assert_r.outcome, Outcome::Fail, "{assert_r:#?}");
    let f = assert_r.failure.as_ref().unwrap();
    assert!(
        f.crash.as_ref().unwrap().contains("otPlatAssertFail"),
        "{f:?}"
    );
    assert!(
        f.got
            .iter()
            .any(|l| l.contains("otPlatAssertFail at mac.cpp:123")),
        "{f:?}"
    );
    assert_eq!(reboot.outcome, Outcome::Fail, "{reboot:#?}");
    let f = reboot.failure.as_ref().unwrap();
    assert!(
        f.crash.as_ref().unwrap().contains("unexpected reboot"),
        "{f:?}"
    );
    assert!(
        reboot.duration < Duration::from_secs(4),
        "crash must end the wait early"
    );
}

#[test]
fn xfail_symptom_and_xpass() {
    let base = "nodes = [\"dut\"]\n[[steps]]\nid = \"connect\"\nnode = \"dut\"\nsend = \"bad\"\n";
    let xfail = format!(
        "{base}[variants.fake]\nxfail = \"known\"\nsymptom = {{ step = \"connect\", line = '^Error 7: InvalidArgs$' }}\n"
    );
    let wrong_symptom = format!(
        "{base}[variants.fake]\nxfail = \"known\"\nsymptom = {{ step = \"connect\", line = '^Error 13' }}\n"
    );
    let xpass = "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\n[variants.fake]\nxfail = \"fixed?\"\n";
    let skip = "nodes = [\"dut\"]\n[[steps]]\nnode = \"dut\"\nsend = \"state\"\n[variants.fake]\nskip = \"not on this one\"\n";
    let ran = run(
        &[
            ("a", &xfail),
            ("b", &wrong_symptom),
            ("c", xpass),
            ("d", skip),
        ],
        1,
        1,
    );
    let o: Vec<Outcome> = ran.results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        o,
        [Outcome::Xfail, Outcome::Fail, Outcome::Xpass, Outcome::Skip],
        "{:#?}",
        ran.results
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ran.out.path().join("results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 4);
    assert_eq!(json["summary"]["counts"]["XFAIL"], 1);
}

#[test]
fn parallel_cases_share_the_board_pool() {
    let case = format!(
        "{ONE_NODE}[[steps]]\nnode = \"dut\"\nsend = \"later 0.3 tick\"\n[[steps]]\nnode = \"dut\"\nexpect = \"tick\"\n"
    );
    let four: Vec<(String, String)> = (0..4).map(|i| (format!("p{i}"), case.clone())).collect();
    let refs: Vec<(&str, &str)> = four.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let ran = run(&refs, 2, 4);
    assert!(
        ran.results.iter().all(|r| r.outcome == Outcome::Pass),
        "{:#?}",
        ran.results
    );
    // Two boards, four cases of >= 0.3 s: two rounds, not four.
    assert!(
        ran.elapsed < Duration::from_millis(1200) + Duration::from_secs(1),
        "{:?}",
        ran.elapsed
    );
    let _: &PathBuf = &ran.results[0].path;
}

#[test]
fn prompt_that_never_appears_is_an_infrastructure_error() {
    // `cat` answers every Enter with an empty line but never prints a prompt.
    let case = format!("{ONE_NODE}[[steps]]\nnode = \"dut\"\nsend = \"state\"\n");
    let ran = run_on(&[("mute", &case)], "cat", 1, 1, Duration::from_millis(1200));
    let r = &ran.results[0];
    assert_eq!(r.outcome, Outcome::Error, "{r:#?}");
    let infra = r.infra.as_ref().unwrap();
    assert_eq!(infra.board, "dut");
    assert!(
        infra
            .reason()
            .contains("prompt [\"> \"] never appeared within 1s 200ms"),
        "{}",
        infra.reason()
    );
    assert_eq!(infra.error.kind(), "not-ready");
    assert!(r.duration < Duration::from_secs(3));
}
