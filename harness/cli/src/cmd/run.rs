//! `ot-hil run`: run cases and write reports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ot_hil::boards::{
    BoardSource, ByVariant, HardwareBoards, ProcessBoards, SimulatedBoards, VirtualBoards,
};
use ot_hil::events::Reporter;
use ot_hil::profile::{Profile, Shell};
use ot_hil::report::{JsonReporter, JunitReporter, ProgressReporter, exit_code};
use ot_hil::runner::{self, RunConfig};
use ot_hil::virtual_lab::VdkCommand;

use super::{CaseArgs, SelectArgs};

#[derive(Debug, Args)]
pub struct Cmd {
    #[command(flatten)]
    cases: CaseArgs,
    /// Firmware variants to run on (repeatable; default: every Thread CLI variant).
    #[arg(long = "variant", value_name = "V", conflicts_with = "board_commands")]
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
    /// What the --board-command boards run, for the report and the cases' `xfail`/`skip`: a
    /// firmware variant's name (default: `host`, a host program with no variant). A
    /// board-command run is one run per case.
    #[arg(long, value_name = "NAME", requires = "board_commands")]
    board_variant: Option<String>,
    /// Shell profile of --board-command boards: `upstream` (prompt `> `) or `ncs` (`ot ` prefix).
    #[arg(long, value_name = "PROFILE", default_value = "upstream")]
    board_profile: String,
    /// JUnit XML file (default: <out>/junit.xml).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Output directory: results.json, junit.xml, logs/<case>/<variant>/<node>.log.
    #[arg(long, value_name = "DIR", default_value = "ot-hil-out")]
    out: PathBuf,
    #[command(flatten)]
    select: SelectArgs,
    /// Only the case runs that failed (FAIL, XPASS, ERROR) in the last run into --out (its
    /// results.json).
    #[arg(long)]
    failed: bool,
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
        let variants = if self.board_commands.is_empty() {
            ot_hil::variants::select(&loaded.variants, &self.variants)?
        } else {
            vec![board_command_variant(
                &loaded.variants,
                self.board_variant.as_deref(),
            )?]
        };
        let partition = self
            .partition
            .as_deref()
            .map(str::parse::<ot_hil_lab::partition::Partition>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--partition: {e}"))?;
        let boards: Arc<dyn BoardSource> = if let Some(map) = &self.hardware_map {
            let imported = ot_hil_lab::hwmap::HardwareMap::load_checked(map)?;
            // Shown whatever the log level: a skipped board is a board the run will not use.
            for warning in &imported.warnings {
                eprintln!("warning: {}: {warning}", map.display());
            }
            let map = imported.map;
            Arc::new(HardwareBoards {
                allocator: ot_hil_lab::lock::Allocator::new(
                    map,
                    ot_hil_lab::lock::LockDir::from_env(),
                ),
                states: ot_hil_lab::flash::state::StateDir::from_env(),
                allocate_timeout: self.board_wait,
            })
        } else if !self.board_commands.is_empty() {
            let profile: Profile = self.board_profile.parse().map_err(anyhow::Error::msg)?;
            Arc::new(ProcessBoards::new(
                self.board_commands.clone(),
                Shell::of(profile),
            ))
        } else {
            Arc::new(VirtualBoards {
                vdk: VdkCommand::current_exe().context("cannot find the ot-hil executable")?,
            })
        };
        // Variants whose boards are host programs (real OpenThread) get theirs from the
        // simulation source, whatever the others use.
        let boards: Arc<dyn BoardSource> = if self.board_commands.is_empty()
            && variants.iter().any(|v| v.manifest.program.is_some())
        {
            Arc::new(ByVariant {
                default: boards,
                programs: Arc::new(
                    SimulatedBoards::new().context("cannot run real OpenThread nodes")?,
                ),
            })
        } else {
            boards
        };
        let mut selection = self.select.selection()?;
        if self.failed {
            selection = selection.only_failed_in(&self.out.join("results.json"))?;
        }
        let plan = runner::plan(&loaded.cases, &variants, Some(&selection), partition);
        let total = loaded.cases.len() * variants.len();
        if let Some(code) = self
            .select
            .report_count(plan.len(), total, &mut std::io::stdout())
        {
            return Ok(code);
        }
        // Two runs writing one output folder would mix their logs and reports: the second is
        // refused. The lock is held until this run ends (the kernel drops it if the run dies).
        let _out_lock = lock_out_dir(&self.out)?;
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

/// Name of the lock file a run holds in its output folder.
pub const OUT_LOCK: &str = "ot-hil-run";

fn lock_out_dir(out: &std::path::Path) -> anyhow::Result<ot_hil_lab::lock::BoardLock> {
    let locks = ot_hil_lab::lock::LockDir::new(out.to_path_buf());
    match locks
        .try_lock(OUT_LOCK, "ot-hil run")
        .with_context(|| format!("cannot lock the output folder {}", out.display()))?
    {
        Some(lock) => Ok(lock),
        None => anyhow::bail!(
            "another ot-hil run is writing to {} ({}); give this one its own --out",
            out.display(),
            locks
                .holder(OUT_LOCK)
                .unwrap_or_else(|| "holder unknown".into())
                .trim()
        ),
    }
}

/// The one "variant" of a board-command run: a host program was not flashed with any firmware
/// variant, so it runs each case once, labelled `host`, or with the variant the user says the
/// program is (`--board-variant`), whose `xfail`/`skip` expectations then apply.
fn board_command_variant(
    known: &[ot_hil::variants::Variant],
    name: Option<&str>,
) -> anyhow::Result<ot_hil::variants::Variant> {
    match name {
        Some(name) => Ok(ot_hil::variants::select(known, &[name.to_string()])?.remove(0)),
        None => {
            // Board-command runs read only the label of the variant: the boards and their
            // profile come from the command line.
            let base = known
                .first()
                .context("no firmware variants found (a board-command run still needs the variants directory)")?;
            let mut host = base.clone();
            host.name = HOST_VARIANT.to_string();
            host.image.variant = HOST_VARIANT.to_string();
            host.image.sha256 = String::new();
            Ok(host)
        }
    }
}

/// Label of a board-command run without `--board-variant`.
pub const HOST_VARIANT: &str = "host";
