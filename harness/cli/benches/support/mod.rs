//! What the runner benchmarks share: where the repository is, the virtual DK command, and a run
//! that keeps every result.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ot_hil::events::{CaseResult, Reporter, RunEvent};
use ot_hil::resilience::RunOptions;
use ot_hil::runner::{self, Planned, RunConfig};
use ot_hil::virtual_lab::VdkCommand;

/// Virtual DKs are this benchmark's own ot-hil binary's, forked by its `vdk-server` as `ot-hil
/// run` does.
pub fn vdk() -> VdkCommand {
    VdkCommand::ot_hil(env!("CARGO_BIN_EXE_ot-hil").into())
}

/// The repository root (cases and variants are loaded from it).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Keeps every finished case's result.
pub struct Collect(pub Arc<Mutex<Vec<CaseResult>>>);

impl Reporter for Collect {
    fn on_event(&mut self, event: &RunEvent) -> std::io::Result<()> {
        if let RunEvent::CaseFinished(r) = event {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((**r).clone());
        }
        Ok(())
    }
}

/// Run `plan` to the end with `options`; returns the wall time and every case's result.
pub fn run_collect_with(
    rt: &tokio::runtime::Runtime,
    config: RunConfig,
    options: RunOptions,
    plan: Vec<Planned>,
) -> (Duration, Vec<CaseResult>) {
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(Collect(results.clone()))];
    let started = Instant::now();
    rt.block_on(runner::run_with_options(
        config,
        options,
        plan,
        &mut reporters,
        std::future::pending(),
    ))
    .expect("run");
    let wall = started.elapsed();
    let results = results.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (wall, results)
}
