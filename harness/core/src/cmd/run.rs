//! `ot-hil run`: run cases and write reports.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ot_hil::events::Reporter;
use ot_hil::profile::Profile;
use ot_hil::report::{JsonReporter, JunitReporter, ProgressReporter, exit_code};
use ot_hil::runner::{self, BoardSource, RunConfig};
use ot_hil::virtual_lab::VdkCommand;

use super::CaseArgs;

#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    cases: CaseArgs,
    /// Firmware variants to run on (repeatable; default: every Thread CLI variant).
    #[arg(long = "variant", value_name = "V")]
    variants: Vec<String>,
    /// Real boards from this hardware map (default: virtual boards).
    #[arg(long, value_name = "FILE", env = "OT_HIL_HARDWARE_MAP")]
    hardware_map: Option<PathBuf>,
    /// A host program as a board, on a PTY (repeatable: one per board), e.g. `ot-cli-ftd 1`.
    #[arg(
        long = "board-command",
        value_name = "COMMAND",
        conflicts_with = "hardware_map"
    )]
    board_commands: Vec<String>,
    /// Shell profile of --board-command boards: `upstream` (prompt `> `) or `ncs` (`ot ` prefix).
    #[arg(long, value_name = "PROFILE", default_value = "upstream")]
    board_profile: String,
    /// JUnit XML file (default: <out>/junit.xml).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Output directory: results.json, junit.xml, logs/<case>/<variant>/<node>.log.
    #[arg(long, value_name = "DIR", default_value = "ot-hil-out")]
    out: PathBuf,
    /// Only case runs whose `case@variant` contains this text.
    #[arg(long, value_name = "PAT")]
    filter: Option<String>,
    /// Case runs at once.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1)]
    jobs: usize,
    /// Run only the K-th of N slices of the plan (for several hosts).
    #[arg(long, value_name = "K/N")]
    partition: Option<String>,
    /// How long a case waits for busy real boards (locked by other runs).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    board_wait: Duration,
    /// How long a board may take to show its prompt after flashing.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
    #[command(flatten)]
    resilience: super::resilience::ResilienceArgs,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<i32> {
        let loaded = self.cases.load()?;
        if !loaded.errors.is_empty() {
            for e in &loaded.errors {
                eprintln!("{e}");
            }
            eprintln!("{} invalid case files: nothing run", loaded.errors.len());
            return Ok(exit_code::INVALID_CASES);
        }
        let variants = ot_hil::variants::select(&loaded.variants, &self.variants)?;
        let partition = self
            .partition
            .as_deref()
            .map(str::parse::<ot_hil_lab::partition::Partition>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--partition: {e}"))?;
        let boards = if let Some(map) = &self.hardware_map {
            let map = ot_hil_lab::hwmap::HardwareMap::load_checked(map)?;
            BoardSource::Hardware(Box::new(runner::HardwareBoards {
                allocator: ot_hil_lab::lock::Allocator::new(
                    map,
                    ot_hil_lab::lock::LockDir::from_env(),
                ),
                states: ot_hil_lab::flash::state::StateDir::from_env(),
                allocate_timeout: self.board_wait,
            }))
        } else if !self.board_commands.is_empty() {
            let profile = Profile::by_name(&self.board_profile)
                .with_context(|| format!("unknown profile {}", self.board_profile))?;
            BoardSource::Processes {
                commands: self.board_commands.clone(),
                profile,
            }
        } else {
            BoardSource::Virtual {
                vdk: VdkCommand::current_exe().context("cannot find the ot-hil executable")?,
            }
        };
        let plan = runner::plan(&loaded.cases, &variants, self.filter.as_deref(), partition);
        let junit = self
            .junit
            .clone()
            .unwrap_or_else(|| self.out.join("junit.xml"));
        let mut reporters: Vec<Box<dyn Reporter>> = vec![
            Box::new(ProgressReporter::new(std::io::stdout())),
            Box::new(JunitReporter::new(junit)),
            Box::new(JsonReporter::new(self.out.join("results.json"))),
        ];
        let options = self.resilience.options(&self.cases)?;
        let config = RunConfig {
            cases: loaded.cases,
            variants,
            boards,
            out_dir: self.out.clone(),
            jobs: self.jobs,
            ready_timeout: self.ready_timeout,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let summary = rt.block_on(async {
            let interrupt = async {
                if tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            runner::run_with_options(config, options, plan, &mut reporters, interrupt).await
        })?;
        // The page and the CI summary are built from the results the reporters just wrote.
        match ot_hil::report::html::write_for_out_dir(&self.out) {
            Ok(t) => println!(
                "report: {} ({:.0} ms)",
                self.out.join("report.html").display(),
                t.as_secs_f64() * 1e3
            ),
            Err(e) => eprintln!("report.html not written: {e}"),
        }
        Ok(exit_code::for_summary(&summary))
    }
}
