//! Subcommands.

mod check;
mod list;
mod resilience;
mod run;
mod sniff;
mod vdk;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Hardware-in-the-loop tests for Thread devices: OpenThread CLI test cases on real or virtual
/// nRF52840 DKs.
///
/// Exit codes: 0 all passed (or failed as expected, or skipped); 1 a case failed or an expected
/// failure passed (XPASS); 2 infrastructure error (board gone, port busy, prompt never appeared)
/// or bad command line; 3 invalid case files (nothing was run); 130 interrupted (reports written).
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
    /// Read an nRF 802.15.4 sniffer (serial port or virtual air) and print decoded traffic.
    Sniff(sniff::Cmd),
}

impl Cli {
    pub fn run(self) -> anyhow::Result<i32> {
        match self.command {
            Command::Run(c) => c.run(),
            Command::Check(c) => c.run(),
            Command::List(c) => c.run(),
            Command::Vdk(c) => c.run(),
            Command::Sniff(c) => c.run(),
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
