//! `ot-hil lab up`: a virtual bench to drive by hand (an air, N virtual DKs, optionally a
//! sniffer), up until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use ot_hil::bench::{Bench, BenchConfig, SnifferConfig};
use ot_hil::report::exit_code;
use ot_hil::virtual_lab::VdkCommand;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Args)]
pub struct Cmd {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Start a virtual air and N virtual DKs, print each board's console (a PTY for screen,
    /// picocom or minicom) and, with --sniffer, the pcap the air is streamed to; Ctrl-C (or
    /// SIGTERM, SIGHUP) takes everything down.
    Up(UpArgs),
}

#[derive(Debug, Args)]
struct UpArgs {
    /// How many virtual DKs.
    #[arg(short = 'n', long = "boards", value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    boards: u16,
    /// Firmware variant the boards are flashed with.
    #[arg(long, value_name = "V", default_value = "ncs-v2.2.0")]
    variant: String,
    /// Also start a virtual sniffer and stream the air to <dir>/air.pcap.
    #[arg(long)]
    sniffer: bool,
    /// The sniffer's 802.15.4 channel.
    #[arg(long, value_name = "CH", default_value_t = 11,
          value_parser = clap::value_parser!(u8).range(11..=26))]
    channel: u8,
    /// Firmware variants directory (default: the nearest `firmware/variants/`).
    #[arg(long, value_name = "DIR")]
    variants_dir: Option<PathBuf>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<i32> {
        match self.command {
            LabCommand::Up(up) => up.run(),
        }
    }
}

impl UpArgs {
    fn run(self) -> anyhow::Result<i32> {
        let variants_dir = match &self.variants_dir {
            Some(d) => d.clone(),
            None => ot_hil::variants::find_variants_dir(
                &std::env::current_dir().context("no current directory")?,
            )?,
        };
        let variants = ot_hil::variants::load_variants(&variants_dir)?;
        let variant =
            ot_hil::variants::select(&variants, std::slice::from_ref(&self.variant))?.remove(0);
        if variant.manifest.program.is_some() {
            anyhow::bail!(
                "variant {} runs as a host program, not on a virtual DK",
                variant.name
            );
        }
        // Removed when the bench goes down.
        let dir = ot_hil::scratch::dir("othl").context("failed to create the bench directory")?;
        let config = BenchConfig {
            vdk: VdkCommand::current_exe().context("cannot find the ot-hil executable")?,
            dir: dir.path().to_path_buf(),
            boards: usize::from(self.boards),
            variant,
            sniffer: self.sniffer.then(|| SnifferConfig {
                channel: self.channel,
                variants_dir: variants_dir.clone(),
            }),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the runtime")?;
        rt.block_on(async {
            // Installed first: a signal during start-up still takes down what was started.
            let mut int = signal(SignalKind::interrupt()).context("installing signal handlers")?;
            let mut term = signal(SignalKind::terminate()).context("installing signal handlers")?;
            let mut hup = signal(SignalKind::hangup()).context("installing signal handlers")?;
            let bench = tokio::select! {
                b = Bench::start(&config) => b?,
                _ = int.recv() => return Ok(exit_code::INTERRUPTED),
                _ = term.recv() => return Ok(exit_code::TERMINATED),
                _ = hup.recv() => return Ok(exit_code::HANGUP),
            };
            print_bench(&bench, &config);
            let code = tokio::select! {
                _ = int.recv() => exit_code::INTERRUPTED,
                _ = term.recv() => exit_code::TERMINATED,
                _ = hup.recv() => exit_code::HANGUP,
            };
            eprintln!("stopping the bench");
            bench.stop().await;
            // A person stopping the bench is its normal end.
            Ok(if code == exit_code::INTERRUPTED {
                exit_code::SUCCESS
            } else {
                code
            })
        })
    }
}

/// What a person needs to use the bench, one board per line (the lines a script may read:
/// `<board> <pty>` and `pcap <file>`).
fn print_bench(bench: &Bench, config: &BenchConfig) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "virtual bench in {}: {} board(s) running {}",
        bench.dir.display(),
        bench.boards.len(),
        config.variant.name
    );
    for b in &bench.boards {
        let _ = writeln!(
            out,
            "{} {}    (screen {} 115200 | picocom -b 115200 {}; log {})",
            b.name,
            b.tty.display(),
            b.tty.display(),
            b.tty.display(),
            b.log.display()
        );
    }
    if let (Some(pcap), Some(s)) = (&bench.pcap, &config.sniffer) {
        let _ = writeln!(
            out,
            "pcap {}    (channel {}; live: tail -f -c +0 {} | wireshark -k -i -)",
            pcap.display(),
            s.channel,
            pcap.display()
        );
    }
    let _ = writeln!(out, "Ctrl-C stops everything");
    let _ = out.flush();
}
