//! Injected board faults, requested over the control socket, so the runner's handling of boards
//! that hang, crash or drop off the USB bus can be tested without real hardware:
//!
//! - `hang`: the firmware stops: no console echo or output, no radio, no timers. The process
//!   stays and the control socket still answers, as a J-Link still reaches a hung chip; `reset`
//!   or `flash` bring the board back.
//! - `crash [code]`: a Zephyr fatal error (`k_fatal_error_reason` code, default 0 = CPU
//!   exception). With `CONFIG_LOG` the kernel's lines are printed as Zephyr's log backend
//!   formats them; then, as NCS's `CONFIG_RESET_ON_FATAL_ERROR` (default y) does, the board
//!   reboots (boot banner again); with it set to n the system halts (a hang).
//! - `close-console`: the PTY master is closed and the link removed; the runner's port read
//!   fails as when a DK's USB re-enumerates. The firmware keeps running without a console.

use std::time::{Duration, Instant};

use crate::firmware::{Manifest, Profile};
use crate::shell;

/// Zephyr's `k_fatal_error_reason` codes with the text `reason_to_str()` prints for them.
const FATAL_REASONS: &[&str] = &[
    "CPU exception",
    "Unhandled interrupt",
    "Stack overflow",
    "Kernel oops",
    "Kernel panic",
];

/// What a `crash` request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashRequest {
    /// `k_fatal_error_reason` code.
    pub reason: u32,
}

impl CrashRequest {
    /// The text Zephyr prints for the reason (`Unknown error` beyond the known codes).
    pub fn reason_text(&self) -> &'static str {
        usize::try_from(self.reason)
            .ok()
            .and_then(|i| FATAL_REASONS.get(i).copied())
            .unwrap_or("Unknown error")
    }
}

/// What the board does after a fatal error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFatal {
    Reboot,
    Halt,
}

/// Fault state of one board: survives nothing but itself (a reboot clears a hang).
#[derive(Debug, Default)]
pub struct FaultState {
    hung: bool,
    booted_at: Option<Instant>,
}

impl FaultState {
    /// The firmware (re)started.
    pub fn booted(&mut self, now: Instant) {
        self.hung = false;
        self.booted_at = Some(now);
    }

    /// Stop the firmware until the next boot.
    pub fn hang(&mut self) {
        self.hung = true;
    }

    pub fn is_hung(&self) -> bool {
        self.hung
    }

    /// Time since boot, as Zephyr's log timestamps count it.
    fn uptime(&self, now: Instant) -> Duration {
        self.booted_at
            .map(|b| now.saturating_duration_since(b))
            .unwrap_or_default()
    }

    /// Print what the firmware prints on a fatal error; returns what happens next.
    pub fn fatal_error(
        &self,
        manifest: Option<&Manifest>,
        request: CrashRequest,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> AfterFatal {
        let Some(manifest) = manifest else {
            return AfterFatal::Halt;
        };
        let k = &manifest.kconfig;
        // The three messages are LOG_ERR calls (Zephyr `z_fatal_error`, NCS lib/fatal_error), so
        // they print when logging is on with errors compiled in.
        let errors_logged = k.int("LOG_MAX_LEVEL").is_none_or(|level| level >= 1);
        // NCS's `CONFIG_RESET_ON_FATAL_ERROR` is on unless a fragment turns it off.
        let reset = k.bool("RESET_ON_FATAL_ERROR");
        let minimal = k.bool("LOG_MODE_MINIMAL");
        if manifest.profile == Profile::Ncs && k.bool("LOG") && errors_logged {
            let stamp = log_timestamp(self.uptime(now));
            // Minimal mode prints `E: <message>` with printk; the default (deferred) mode
            // prefixes a timestamp, the level and the module.
            let error = |module: &str, message: &str| {
                if minimal {
                    format!("E: {message}")
                } else {
                    format!("{stamp} <err> {module}: {message}")
                }
            };
            let lines = [
                error(
                    "os",
                    &format!(
                        ">>> ZEPHYR FATAL ERROR {}: {} on CPU 0",
                        request.reason,
                        request.reason_text()
                    ),
                ),
                // The shell thread runs the command that faulted.
                error("os", "Current thread: 0x20003e48 (shell_uart)"),
                error(
                    "fatal_error",
                    if reset {
                        "Resetting system"
                    } else {
                        "Halting system"
                    },
                ),
            ];
            // Both end lines in "\r\n". The shell's log backend starts a fresh line after a
            // prompt; minimal mode's printk goes to the UART behind the shell's back, so its
            // first line follows whatever was printed last (the prompt, typically).
            if !minimal {
                shell::line(out, "");
            }
            for l in &lines {
                shell::line(out, l);
            }
        }
        if reset {
            AfterFatal::Reboot
        } else {
            AfterFatal::Halt
        }
    }
}

/// `[hh:mm:ss.mmm,uuu]` as Zephyr's log output formats an uptime.
fn log_timestamp(uptime: Duration) -> String {
    let total_us = uptime.as_micros();
    let us = total_us % 1000;
    let ms = (total_us / 1000) % 1000;
    let s = (total_us / 1_000_000) % 60;
    let m = (total_us / 60_000_000) % 60;
    let h = total_us / 3_600_000_000;
    format!("[{h:02}:{m:02}:{s:02}.{ms:03},{us:03}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_arguments() {
        // The request line itself is read by ot_hil_board::control (tested there).
        assert_eq!(CrashRequest { reason: 0 }.reason_text(), "CPU exception");
        assert_eq!(CrashRequest { reason: 3 }.reason_text(), "Kernel oops");
        assert_eq!(CrashRequest { reason: 9 }.reason_text(), "Unknown error");
    }

    #[test]
    fn timestamps_as_zephyr_prints_them() {
        assert_eq!(
            log_timestamp(Duration::from_micros(3_723_004_005)),
            "[01:02:03.004,005]"
        );
        assert_eq!(log_timestamp(Duration::ZERO), "[00:00:00.000,000]");
    }

    #[test]
    fn a_hang_lasts_until_the_next_boot() {
        let mut f = FaultState::default();
        f.hang();
        assert!(f.is_hung());
        f.booted(Instant::now());
        assert!(!f.is_hung());
    }
}
