//! What the runner benchmarks share: where the repository is, and a reporter that keeps results.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ot_hil::events::{CaseResult, Reporter, RunEvent};

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
