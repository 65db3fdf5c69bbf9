//! A run of several variants whose boards come from different sources: host-program variants
//! (real OpenThread processes, `[program]` in the manifest) from [`SimulatedBoards`], the others
//! from the run's default source (virtual DKs, a hardware map).
//!
//! [`SimulatedBoards`]: super::SimulatedBoards

use std::sync::Arc;

use super::{Acquired, BoardSource, BoxFuture, CaseRun};
use crate::infra::InfraFailure;

/// Where a variant's boards come from in a run of several variants: host-program variants
/// from [`SimulatedBoards`](super::SimulatedBoards), the others from the run's default source.
#[derive(Debug)]
pub struct ByVariant {
    pub default: Arc<dyn BoardSource>,
    pub programs: Arc<dyn BoardSource>,
}

impl BoardSource for ByVariant {
    fn acquire<'a>(&'a self, run: CaseRun<'a>) -> BoxFuture<'a, Result<Acquired, InfraFailure>> {
        if run.variant.manifest.program.is_some() {
            self.programs.acquire(run)
        } else {
            self.default.acquire(run)
        }
    }

    fn warm_up(&self) {
        self.default.warm_up();
        self.programs.warm_up();
    }
}
