//! `ot-hil console BOARD`: a person's terminal on a board of the hardware map, with the board's
//! lock held (no run can take the board meanwhile) and its output logged.

use std::path::PathBuf;
use std::sync::mpsc;

use anyhow::Context;
use clap::Args;
use ot_hil::attach::{Ended, Session};
use ot_hil::report::exit_code;
use ot_hil_lab::hwmap::HardwareMap;
use ot_hil_lab::lock::LockDir;

use super::signals::forward_stop_signals;

#[derive(Debug, Args)]
pub struct Cmd {
    /// The board's id in the hardware map.
    #[arg(value_name = "BOARD")]
    board: String,
    /// The hardware map naming the board.
    #[arg(long, value_name = "FILE", env = "OT_HIL_HARDWARE_MAP")]
    hardware_map: PathBuf,
    /// Where the board's output is logged, one line per line with its time (appended; default:
    /// `ot-hil-console-<BOARD>.log` in the current directory).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<i32> {
        let imported = HardwareMap::load_with_warnings(&self.hardware_map)?;
        for warning in &imported.warnings {
            eprintln!("warning: {}: {warning}", self.hardware_map.display());
        }
        let map = imported.map;
        let Some(board) = map.boards.iter().find(|b| b.id == self.board) else {
            let ids: Vec<&str> = map.boards.iter().map(|b| b.id.as_str()).collect();
            anyhow::bail!(
                "no board {} in {} (boards: {})",
                self.board,
                self.hardware_map.display(),
                ids.join(", ")
            );
        };
        // Signals become a stop request before the board is locked, so the session ends
        // normally (terminal restored, log completed, lock freed).
        let (stop_tx, stop_rx) = mpsc::channel();
        let signal_code = forward_stop_signals(stop_tx).context("installing signal handlers")?;
        let locks = LockDir::from_env();
        let Some(_lock) = locks.try_lock(&board.id, "ot-hil console")? else {
            eprintln!(
                "error: board {} is busy ({})",
                board.id,
                locks
                    .holder(&board.id)
                    .unwrap_or_else(|| "holder unknown".into())
            );
            return Ok(exit_code::INFRA_ERROR);
        };
        let log = self
            .log
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("ot-hil-console-{}.log", board.id)));
        let session = Session::open(&board.port, board.baud, Some(&log))?;
        eprintln!(
            "console of {} on {} at {} baud; logging to {}; Ctrl+] quits",
            board.id,
            board.port.display(),
            board.baud,
            log.display()
        );
        let raw = RawTerminal::enter();
        let ended = session.run(std::io::stdin(), &mut std::io::stdout(), stop_rx);
        drop(raw);
        eprintln!();
        match ended? {
            Ended::Escape | Ended::InputClosed => Ok(exit_code::SUCCESS),
            Ended::Stopped => Ok(signal_code.get().copied().unwrap_or(exit_code::SUCCESS)),
        }
    }
}

/// The person's terminal in raw mode while attached (every key goes to the board as typed),
/// restored when dropped; nothing when stdin is not a terminal.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        // Output keeps its newline handling, so log lines and messages stay readable.
        raw.output_flags = saved.output_flags;
        if termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw).is_err() {
            return RawTerminal(None);
        }
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}
