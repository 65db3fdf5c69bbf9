//! The signals that end a command (SIGINT, SIGTERM as a CI job's cancel, SIGHUP), each with its
//! exit code. Handlers, not a blocked mask: a thread created with another mask (a library's, or
//! one made while another thread held all signals blocked) would let a masked signal kill the
//! process.

use std::sync::{Arc, OnceLock, mpsc};

use ot_hil::report::exit_code;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals that stop a run, each with the exit code it ends the run with.
pub struct StopSignals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Install the handlers now (from then on these signals no longer kill the process).
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Wait for the first of them; its exit code.
    pub async fn first(mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => exit_code::INTERRUPTED,
            _ = self.term.recv() => exit_code::TERMINATED,
            _ = self.hup.recv() => exit_code::HANGUP,
        }
    }
}

/// For a command without a runtime: install the handlers now, and on the first signal record its
/// exit code (the returned cell) and send `stop`.
pub fn forward_stop_signals(stop: mpsc::Sender<()>) -> std::io::Result<Arc<OnceLock<i32>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signals = {
        let _in_runtime = rt.enter();
        StopSignals::install()?
    };
    let code = Arc::new(OnceLock::new());
    let seen = code.clone();
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let _ = seen.set(rt.block_on(signals.first()));
            let _ = stop.send(());
        })?;
    Ok(code)
}
