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
use ot_hil::report::html::HtmlReporter;
use ot_hil::report::{JsonReporter, JunitReporter, ProgressReporter, exit_code};
use ot_hil::runner::{self, RunConfig};
use ot_hil::virtual_lab::VdkCommand;

use super::signals::StopSignals;
use super::{CaseArgs, SelectArgs};

/// `--clock`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ClockArg {
    Virtual,
    Real,
}

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
    /// Output directory: results.json, junit.xml, logs/<case>/<variant>/<node>.log. The run
    /// owns it: what an earlier run left there is moved to `<DIR>.prev/` (replacing the one
    /// before), once this run holds the folder's lock.
    #[arg(long, value_name = "DIR", default_value = "ot-hil-out")]
    out: PathBuf,
    #[command(flatten)]
    select: SelectArgs,
    /// Only the case runs that failed (FAIL, XPASS, ERROR) in the last run into --out (its
    /// results.json).
    #[arg(long)]
    failed: bool,
    /// Case runs at once (default: on virtual boards, the number of CPUs; on a hardware map, as
    /// many as its boards can serve for the largest selected case; with --board-command, 1).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Report a case still running after this long as SLOW (again after each multiple); `0s`:
    /// never.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    slow_timeout: Duration,
    /// Colour in the progress output: `auto` (on a terminal, unless `NO_COLOR` is set),
    /// `always` or `never`.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    color: ColorWhen,
    /// Run only the K-th of N slices of the plan (for several hosts).
    #[arg(long, value_name = "K/N")]
    partition: Option<String>,
    /// How long a case waits for busy real boards (locked by other runs).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    board_wait: Duration,
    /// The clock virtual DKs run on: `virtual` (the case clock of each case's air: timers cost
    /// no wall time and a run depends only on the case and its seed) or `real` (the host's, as
    /// real boards). Real boards and host programs always run in real time. Default: virtual,
    /// or real with --keep-boards-on-failure.
    #[arg(long, value_name = "CLOCK")]
    clock: Option<ClockArg>,
    /// How long a board may take to show its prompt after flashing.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
    /// Keep what boards stored in earlier cases: real boards are not erased or factory-reset
    /// before a case, board commands run in the current directory instead of a fresh one per
    /// case (by default every case starts from its variant's factory state).
    #[arg(long)]
    keep_state: bool,
    /// Keep the virtual boards and the air of each failed case run up after the run, printing
    /// their consoles (PTYs) to open, until Ctrl-C. The run is on the host's clock: a person
    /// typing into a kept board drives it in real time, which a case clock cannot follow.
    #[arg(long)]
    keep_boards_on_failure: bool,
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
        // Boards a hardware map offers to cases (sniffers are not case boards).
        let mut map_boards = None;
        let boards: Arc<dyn BoardSource> = if let Some(map) = &self.hardware_map {
            let imported = ot_hil_lab::hwmap::HardwareMap::load_checked(map)?;
            // Shown whatever the log level: a skipped board is a board the run will not use.
            for warning in &imported.warnings {
                eprintln!("warning: {}: {warning}", map.display());
            }
            let map = imported.map;
            map_boards = Some(map.boards.iter().filter(|b| !b.is_sniffer()).count());
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
                programs: Arc::new(SimulatedBoards::new().with_sniffer(
                    VdkCommand::current_exe().context("cannot find the ot-hil executable")?,
                )),
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
        let lock_name = format!("{OUT_LOCK}.lock");
        if !ot_hil::out_dir::is_ours(&self.out, &lock_name) {
            anyhow::bail!(
                "--out {} has files no ot-hil run wrote; name a new or empty folder (a run moves \
                 the previous run's output to <out>.prev/)",
                self.out.display()
            );
        }
        let _out_lock = lock_out_dir(&self.out)?;
        // This run owns the folder: the previous run's output moves to `<out>.prev/`.
        if let Some(prev) = ot_hil::out_dir::rotate(&self.out, &[&lock_name])? {
            println!("previous output moved to {}", prev.display());
        }
        let junit = self
            .junit
            .clone()
            .unwrap_or_else(|| self.out.join("junit.xml"));
        let html = HtmlReporter::new(self.out.clone());
        let page = html.outcome();
        let mut reporters: Vec<Box<dyn Reporter>> = vec![
            Box::new(ProgressReporter::new(std::io::stdout()).with_color(self.color.enabled())),
            Box::new(JunitReporter::new(junit)),
            Box::new(JsonReporter::new(self.out.join("results.json"))),
            Box::new(html),
        ];
        let mut options = self.resilience.options(&self.cases)?;
        options.slow_timeout = Some(self.slow_timeout);
        options.clock = match (self.clock, self.keep_boards_on_failure) {
            (Some(ClockArg::Virtual), true) => anyhow::bail!(
                "--keep-boards-on-failure runs on --clock real: kept boards are driven by hand, \
                 in real time"
            ),
            (Some(ClockArg::Virtual), false) | (None, false) => {
                ot_hil::step_clock::ClockMode::Virtual
            }
            (Some(ClockArg::Real), _) | (None, true) => ot_hil::step_clock::ClockMode::Real,
        };
        options.keep_state = self.keep_state;
        options.keep_boards_on_failure = self.keep_boards_on_failure;
        let jobs = self.jobs.unwrap_or_else(|| {
            if !self.board_commands.is_empty() {
                // The same host programs serve every case: one case at a time.
                1
            } else {
                let largest = plan
                    .iter()
                    .filter_map(|p| loaded.cases.get(p.case))
                    .map(|c| c.nodes.len())
                    .max()
                    .unwrap_or(1);
                runner::default_jobs(map_boards, largest)
            }
        });
        let config = RunConfig {
            cases: loaded.cases,
            variants,
            boards,
            out_dir: self.out.clone(),
            jobs,
            ready_timeout: self.ready_timeout,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        // SIGINT, SIGTERM (a CI job's cancel) and SIGHUP all end the run the same way: cases
        // stop, boards are stopped, reports are completed; only the exit code tells them apart.
        let signal_code = std::cell::Cell::new(None);
        let (summary, kept) = rt.block_on(async {
            let signals = StopSignals::install().context("installing signal handlers")?;
            let interrupt = async { signal_code.set(Some(signals.first().await)) };
            anyhow::Ok(runner::run_keeping(config, options, plan, &mut reporters, interrupt).await?)
        })?;
        match page.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(Ok(t)) => println!(
                "report: {} ({:.0} ms)",
                self.out.join("report.html").display(),
                t.as_secs_f64() * 1e3
            ),
            Some(Err(e)) => eprintln!("report.html not written: {e}"),
            None => eprintln!("report.html not written: the run did not finish"),
        }
        if !kept.is_empty() {
            rt.block_on(async {
                print_kept(&kept);
                match StopSignals::install() {
                    Ok(signals) => {
                        signals.first().await;
                    }
                    Err(e) => eprintln!("cannot wait for Ctrl-C ({e}); stopping the boards"),
                }
                eprintln!("stopping the kept boards");
                kept.release().await;
            });
        }
        Ok(match signal_code.get() {
            Some(code) if summary.interrupted => code,
            _ => exit_code::for_summary(&summary),
        })
    }
}

/// How to reach the boards kept after failures: each node's console and the air. The
/// `<node> <path>` lines are what scripts read.
fn print_kept(kept: &runner::KeptBoards) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let n = kept.cases.len();
    let _ = writeln!(
        out,
        "kept the boards of {n} failed case run{} (Ctrl-C stops them):",
        if n == 1 { "" } else { "s" }
    );
    for case in &kept.cases {
        let _ = writeln!(out, "{}@{}:", case.case, case.variant);
        for (name, path) in &case.reach {
            let how = if name == "air" {
                format!("ot-hil sniff --air {} --channel <CH>", path.display())
            } else {
                format!("screen {} 115200", path.display())
            };
            let _ = writeln!(out, "  {name} {}    ({how})", path.display());
        }
    }
    let _ = out.flush();
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

/// `--color`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Whether the progress output on stdout gets colour: `auto` asks anstream, which looks at
    /// `NO_COLOR`, `CLICOLOR_FORCE` and whether stdout is a terminal.
    fn enabled(self) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => !matches!(
                anstream::AutoStream::choice(&std::io::stdout()),
                anstream::ColorChoice::Never
            ),
        }
    }
}
