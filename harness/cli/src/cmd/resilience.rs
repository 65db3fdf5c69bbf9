//! `ot-hil run` options for retries, re-runs, quarantine and air faults.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ot_hil::resilience::{Quarantine, RunOptions};
use ot_hil_air::FaultConfig;

use super::CaseArgs;

#[derive(Debug, Clone, Args)]
pub struct ResilienceArgs {
    /// Re-run a failed case up to N more times; a case that then passes is reported as flaky.
    #[arg(long, value_name = "N", default_value_t = 0)]
    rerun_failures: u32,
    /// Retry a case that hit an infrastructure error (board gone, port busy, flash failed,
    /// prompt never seen) up to N more times, on fresh boards.
    #[arg(long, value_name = "N", default_value_t = 1)]
    infra_retries: u32,
    /// Quarantine list: failures of the cases it names are reported but do not fail the run
    /// (default: quarantine.toml in the case directory, if there is one).
    #[arg(long, value_name = "FILE")]
    quarantine: Option<PathBuf>,
    /// Virtual air: probability (0..1) that a frame delivery is lost, on every link of every
    /// case (replaces the cases' own all-link faults).
    #[arg(long, value_name = "P", value_parser = probability)]
    air_loss: Option<f64>,
    /// Virtual air: fixed delay of every delivery.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    air_delay: Option<Duration>,
    /// Virtual air: extra random delay up to this (may reorder frames).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    air_jitter: Option<Duration>,
    /// Virtual air: probability that a delivery arrives twice.
    #[arg(long, value_name = "P", value_parser = probability)]
    air_duplicate: Option<f64>,
    /// Virtual air: probability that a delivered frame has one bit flipped.
    #[arg(long, value_name = "P", value_parser = probability)]
    air_corrupt: Option<f64>,
    /// Seed of the virtual air's fault RNG (default: the case's `seed`, else 0).
    #[arg(long, value_name = "N")]
    air_seed: Option<u64>,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability between 0 and 1"))
    }
}

impl ResilienceArgs {
    pub fn options(&self, cases: &CaseArgs) -> anyhow::Result<RunOptions> {
        let quarantine = match &self.quarantine {
            Some(path) => Quarantine::load(path)?,
            None => match default_quarantine(cases) {
                Some(path) => Quarantine::load(&path)?,
                None => Quarantine::default(),
            },
        };
        let any_air = self.air_loss.is_some()
            || self.air_delay.is_some()
            || self.air_jitter.is_some()
            || self.air_duplicate.is_some()
            || self.air_corrupt.is_some();
        let air_faults = any_air.then(|| FaultConfig {
            loss: self.air_loss.unwrap_or(0.0),
            delay: self.air_delay.unwrap_or_default(),
            jitter: self.air_jitter.unwrap_or_default(),
            duplicate: self.air_duplicate.unwrap_or(0.0),
            corrupt: self.air_corrupt.unwrap_or(0.0),
        });
        Ok(RunOptions {
            rerun_failures: self.rerun_failures,
            infra_retries: self.infra_retries,
            quarantine,
            air_faults,
            air_seed: self.air_seed,
            // Set by `run` from its own --slow-timeout.
            slow_timeout: None,
            clock: ot_hil::step_clock::ClockMode::default(),
            // Set by `run` from its own --keep-state.
            keep_state: false,
            keep_boards_on_failure: false,
        })
    }
}

/// `quarantine.toml` in the directory of the cases (the first directory named, the directory of
/// the first case file named, or the default `testcases/`).
fn default_quarantine(cases: &CaseArgs) -> Option<PathBuf> {
    let dir = match cases.paths.first() {
        Some(p) if p.is_dir() => p.clone(),
        Some(p) => p.parent()?.to_path_buf(),
        None => {
            let cwd = std::env::current_dir()
                .context("no current directory")
                .ok()?;
            ot_hil::check::default_case_dir(&cwd)?
        }
    };
    let path = dir.join(ot_hil::check::QUARANTINE_FILE);
    path.is_file().then_some(path)
}
