//! Subcommands.

mod boards;
mod check;
mod console;
mod lab;
mod list;
mod resilience;
mod run;
mod signals;
mod sniff;
mod vdk;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Hardware-in-the-loop tests for Thread devices: OpenThread CLI test cases on real or virtual
/// nRF52840 DKs.
///
/// Exit codes: 0 all passed (or failed as expected, or skipped); 1 a case failed or an expected
/// failure passed (XPASS); 2 infrastructure error (board gone, port busy, prompt never appeared)
/// or bad command line; 3 invalid case files (nothing was run); 4 no case run selected (with
/// `--no-tests=fail`, the default); 130 interrupted by Ctrl-C/SIGINT, 143 by SIGTERM, 129 by
/// SIGHUP (in all three the run stops its boards and writes complete reports).
/// Results of quarantined cases (`--quarantine`) do not count towards 1 and 2.
#[derive(Debug, Parser)]
#[command(name = "ot-hil", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run test cases (on virtual boards unless a hardware map or board commands are given).
    Run(Box<run::Cmd>),
    /// Validate case files without touching any board.
    Check(check::Cmd),
    /// List the case runs (case @ variant) that `run` would do.
    List(list::Cmd),
    /// Run a virtual nRF52840 DK (what `run` spawns for each virtual board).
    Vdk(vdk::Cmd),
    /// Start virtual DKs by fork for a runner (started by `run` itself).
    #[command(hide = true)]
    VdkServer(vdk::ServerCmd),
    /// List the DKs and sniffers attached to this host; write or check a hardware map.
    Boards(boards::Cmd),
    /// Read an nRF 802.15.4 sniffer (serial port or virtual air) and print decoded traffic.
    Sniff(sniff::Cmd),
    /// Boards to use by hand: `lab up` starts a virtual air with virtual DKs on PTYs.
    Lab(lab::Cmd),
    /// A terminal on a board of the hardware map: takes its lock, shows and logs its console.
    Console(console::Cmd),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<i32> {
        match self.command {
            Command::Run(c) => c.run(),
            Command::Check(c) => c.run(),
            Command::List(c) => c.run(),
            Command::Vdk(c) => c.run(),
            Command::VdkServer(c) => c.run(),
            Command::Sniff(c) => c.run(),
            Command::Boards(c) => c.run(),
            Command::Lab(c) => c.run(),
            Command::Console(c) => c.run(),
        }
    }
}

/// Which case files and which firmware variants.
#[derive(Debug, Clone, Args)]
pub struct CaseArgs {
    /// Case files or directories of case files (default: the nearest `testcases/`).
    #[arg(value_name = "PATHS")]
    pub paths: Vec<PathBuf>,
    /// Firmware variants directory (default: the nearest `firmware/variants/`).
    #[arg(long, value_name = "DIR")]
    pub variants_dir: Option<PathBuf>,
}

/// Which case runs of the plan: `run` and `list` take the same.
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    /// Only the case runs matching PAT (repeatable: any case pattern, and any variant pattern).
    /// A glob on the case name (`coaps-*`; plain text matches anywhere in the name),
    /// `case:GLOB`, `variant:GLOB`, or `CASE@VARIANT`.
    #[arg(long = "filter", value_name = "PAT")]
    pub filters: Vec<String>,
    /// When no case run is selected: `fail` (exit code 4), `warn` or `pass` (exit code 0).
    #[arg(long, value_name = "fail|warn|pass", default_value = "fail")]
    pub no_tests: ot_hil::select::NoTests,
}

impl SelectArgs {
    pub fn selection(&self) -> anyhow::Result<ot_hil::select::Selection> {
        Ok(ot_hil::select::Selection::new(&self.filters)?)
    }

    /// Says how many runs are selected; `Some(exit code)` when there is nothing to do.
    pub fn report_count(
        &self,
        selected: usize,
        total: usize,
        out: &mut dyn std::io::Write,
    ) -> Option<i32> {
        use ot_hil::select::NoTests;
        let plural = if total == 1 { "" } else { "s" };
        // Progress output: a closed stdout is no reason to stop the run.
        let _ = writeln!(out, "{selected} of {total} run{plural} selected");
        if selected > 0 {
            return None;
        }
        match self.no_tests {
            NoTests::Fail => {
                eprintln!(
                    "error: no case run selected (--no-tests=warn or pass to accept an empty run)"
                );
                Some(ot_hil::report::exit_code::NO_TESTS)
            }
            NoTests::Warn => {
                eprintln!("warning: no case run selected");
                Some(ot_hil::report::exit_code::SUCCESS)
            }
            NoTests::Pass => Some(ot_hil::report::exit_code::SUCCESS),
        }
    }
}

/// Cases loaded and validated, with the variants known.
pub struct Loaded {
    pub cases: Vec<ot_hil::case::Case>,
    pub variants: Vec<ot_hil::variants::Variant>,
    pub errors: Vec<ot_hil::case::CaseError>,
    pub files: usize,
}

impl CaseArgs {
    pub fn load(&self) -> anyhow::Result<Loaded> {
        use anyhow::Context;
        let cwd = std::env::current_dir().context("no current directory")?;
        let paths = if self.paths.is_empty() {
            vec![
                ot_hil::check::default_case_dir(&cwd)
                    .context("no testcases/ directory here or above; name case files")?,
            ]
        } else {
            self.paths.clone()
        };
        let variants_dir = match &self.variants_dir {
            Some(d) => d.clone(),
            None => {
                let start = paths.first().and_then(|p| {
                    if p.is_dir() {
                        Some(p.clone())
                    } else {
                        p.parent().map(|d| d.to_path_buf())
                    }
                });
                let start = start.filter(|p| !p.as_os_str().is_empty()).unwrap_or(cwd);
                ot_hil::variants::find_variants_dir(&start)?
            }
        };
        let variants = ot_hil::variants::load_variants(&variants_dir)?;
        let files = ot_hil::check::case_files(&paths).context("failed to list case files")?;
        let options = ot_hil::case::LoadOptions {
            known_variants: Some(ot_hil::variants::names(&variants)),
        };
        let (cases, errors) = ot_hil::check::load_all(&files, &options);
        Ok(Loaded {
            cases,
            variants,
            errors,
            files: files.len(),
        })
    }
}
