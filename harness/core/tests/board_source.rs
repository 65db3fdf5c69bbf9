//! A board source written outside the runner: the trait is all a new kind of board needs.
//!
//! The source here gives every case run fresh boards: a node id per board from its own
//! allocator, a fresh working directory per case run, and the scripted fake OpenThread CLI
//! (tests/support/fake_cli.py) started on a PTY in that directory. The runner's code is not
//! touched; the test checks that cases pass on it, that each run got its own directory and ids,
//! that every acquired run was released, and that a fault the source does not support is
//! refused as an infrastructure error naming it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ot_hil::boards::{
    Acquired, AcquiredBoard, BoardSource, BoxFuture, CaseBoards, CaseRun, ConsolePort,
};
use ot_hil::case::{Case, LoadOptions};
use ot_hil::events::{CaseResult, Outcome, Reporter, RunEvent};
use ot_hil::exec::InfraFailure;
use ot_hil::profile::Shell;
use ot_hil::runner::{self, RunConfig};

/// What the source saw, for the test to check.
#[derive(Debug, Default)]
struct Ledger {
    dirs: Vec<PathBuf>,
    node_ids: Vec<u32>,
    released: usize,
}

#[derive(Debug)]
struct FreshShells {
    script: PathBuf,
    next_id: AtomicU32,
    ledger: Arc<Mutex<Ledger>>,
}

impl BoardSource for FreshShells {
    fn acquire<'a>(&'a self, run: CaseRun<'a>) -> BoxFuture<'a, Result<Acquired, InfraFailure>> {
        Box::pin(async move {
            let dir = run.work_dir()?;
            let mut boards = Vec::new();
            for node in &run.case.nodes {
                let id = self.next_id.fetch_add(1, Ordering::SeqCst);
                self.ledger.lock().unwrap().node_ids.push(id);
                boards.push(AcquiredBoard {
                    tap: None,
                    node: node.clone(),
                    port: ConsolePort::Process {
                        program: "/bin/sh".into(),
                        args: vec![
                            "-c".into(),
                            format!(
                                "cd '{}' && exec python3 -u '{}'",
                                dir.display(),
                                self.script.display()
                            ),
                        ],
                    },
                    shell: Shell::upstream(),
                    banner: vec![],
                    note: Some(format!("node id {id} in {}", dir.display())),
                    flash: None,
                    factory_reset: false,
                    facts: ot_hil::report::provenance::NodeFacts {
                        source: "host",
                        board_id: Some(format!("node {id}")),
                        ..Default::default()
                    },
                });
            }
            self.ledger.lock().unwrap().dirs.push(dir);
            let held = Held {
                ledger: self.ledger.clone(),
            };
            Ok(Acquired {
                clock: ot_hil::step_clock::StepClock::Real,
                boards,
                held: Box::new(held),
                seed: None,
                sniffer: None,
            })
        })
    }
}

struct Held {
    ledger: Arc<Mutex<Ledger>>,
}

impl CaseBoards for Held {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.ledger.lock().unwrap().released += 1;
        Box::pin(async {})
    }
}

struct Collect(Arc<Mutex<Vec<CaseResult>>>);

impl Reporter for Collect {
    fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        if let RunEvent::CaseFinished(r) = event {
            self.0.lock().unwrap().push((**r).clone());
        }
        Ok(())
    }
}

const TWO_NODES: &str = "nodes = [\"a\", \"b\"]\n\
    [[steps]]\nnode = \"a\"\nsend = \"state\"\noutput = ['^leader$']\n\
    [[steps]]\nnode = \"b\"\nsend = \"state\"\noutput = ['^leader$']\n";

const WITH_FAULT: &str = "nodes = [\"a\"]\n\
    [[steps]]\nnode = \"a\"\nsend = \"state\"\n\
    [[steps]]\nnode = \"a\"\nsend = \"state\"\n\
    [[faults.board]]\nnode = \"a\"\naction = \"reset\"\nstep = 2\n";

#[test]
fn a_board_source_from_outside_runs_cases() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fake.toml"),
        "name = \"fake\"\napplication = \"thread-cli\"\nprofile = \"upstream\"\n",
    )
    .unwrap();
    let variants = ot_hil::variants::load_variants(dir.path()).unwrap();
    let options = LoadOptions {
        known_variants: Some(["fake".to_string()].into()),
    };
    let cases: Vec<Case> = [
        ("one", TWO_NODES),
        ("two", TWO_NODES),
        ("fault", WITH_FAULT),
    ]
    .iter()
    .map(|(name, text)| {
        let p = dir.path().join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        ot_hil::case::load_case(&p, &options).unwrap()
    })
    .collect();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let source = FreshShells {
        script: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_cli.py"),
        next_id: AtomicU32::new(1),
        ledger: ledger.clone(),
    };
    let plan = runner::plan(&cases, &variants, None, None);
    let config = RunConfig {
        cases,
        variants,
        boards: Arc::new(source),
        out_dir: out.path().to_path_buf(),
        jobs: 2,
        ready_timeout: Duration::from_secs(5),
    };
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(Collect(results.clone()))];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let options = ot_hil::resilience::RunOptions {
        infra_retries: 0,
        ..Default::default()
    };
    rt.block_on(runner::run_with_options(
        config,
        options,
        plan,
        &mut reporters,
        std::future::pending(),
    ))
    .unwrap();

    let results = results.lock().unwrap().clone();
    let outcome = |case: &str| {
        results
            .iter()
            .find(|r| r.case == case)
            .unwrap_or_else(|| panic!("no result for {case}"))
    };
    for case in ["one", "two"] {
        let r = outcome(case);
        assert_eq!(r.outcome, Outcome::Pass, "{case}: {r:?}");
        assert_eq!(r.steps.len(), 2, "{case}");
        let log = std::fs::read_to_string(&r.logs["a"]).unwrap();
        assert!(
            log.contains("node id "),
            "the source's note is in the log:\n{log}"
        );
    }
    let fault = outcome("fault");
    assert_eq!(fault.outcome, Outcome::Error, "{fault:?}");
    let reason = fault.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("board fault `reset` needs a virtual board"),
        "{reason}"
    );
    assert_eq!(fault.steps.len(), 1, "the fault comes before step 2");

    let ledger = ledger.lock().unwrap();
    assert_eq!(ledger.released, 3, "every case run gave its boards back");
    let dirs: BTreeSet<&PathBuf> = ledger.dirs.iter().collect();
    assert_eq!(
        dirs.len(),
        3,
        "a fresh directory per case run: {:?}",
        ledger.dirs
    );
    let ids: BTreeSet<u32> = ledger.node_ids.iter().copied().collect();
    assert_eq!(ids.len(), 5, "a node id per board: {:?}", ledger.node_ids);
}
