//! Board processes (a virtual DK, a `--board-command` CLI) must not outlive the run that started
//! them, whatever ends it: each runs in its own process group, which the runner kills as a whole
//! (the board's own children with it), and gets the Linux parent-death signal, so even a runner
//! killed with SIGKILL takes its boards along.
//!
//! The parent-death signal fires when the *thread* that forked the board exits, not the process.
//! Boards are spawned from the run's tokio worker threads, which live as long as the run; a board
//! started from a short-lived thread would be killed when that thread ends. The signal reaches
//! the board process only: children a board command starts itself are stopped by the group kill
//! at close, but survive a SIGKILL of the runner unless they watch their parent too.
//!
//! A host program gets the signal set between fork and exec ([`contain`]). A virtual DK is
//! normally forked by the `vdk-server` ([`crate::vdk_server`]), which sets both for it; one
//! executed directly sets the signal itself (`ot-hil vdk --parent PID`, [`contain_virtual_dk`]),
//! so that it is started without a hook between fork and exec: the standard library then uses
//! `posix_spawn`, which does not copy the runner's page tables nor leave the runner's memory
//! copy-on-write until the exec.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Make `command` start its process in a new process group, killed with SIGKILL when the thread
/// that spawns it (and so the runner) dies.
pub fn contain(command: &mut tokio::process::Command) {
    let runner = std::process::id();
    command.process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, getppid, _exit); it allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The runner may have died between fork and prctl: then no signal will come.
            if nix::unistd::getppid().as_raw() as u32 != runner {
                nix::libc::_exit(137);
            }
            Ok(())
        });
    }
}

/// Make `command`, a virtual DK's, start its process in a new process group and tell it which
/// process to die with (the board sets the parent-death signal itself).
pub fn contain_virtual_dk(command: &mut tokio::process::Command) {
    command
        .process_group(0)
        .arg("--parent")
        .arg(std::process::id().to_string());
}

/// Kill every process of the group a [`contain`]ed board process leads (the board and anything
/// it started). A group that is already gone is not an error.
pub fn kill_group(leader: u32) {
    if let Ok(pid) = i32::try_from(leader) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}
