//! Where the board's inputs ([`Input`]) come from, and the one wait that covers every source:
//! the console, the radio, the control socket and its clients, and the shutdown signals. A
//! board is one thread, as the firmware is: a command typed on the console, or a frame from the
//! air, reaches the firmware with no hand-off between threads (on a virtual machine, waking
//! another thread costs tens of microseconds, each way), and a board starts without creating
//! any.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use ot_hil_air::{AirClient, Received};

use crate::console::Console;
use crate::control::ControlServer;
use crate::input::Input;

/// The board's input sources, waited on together.
pub struct Sources {
    /// Inputs already read, oldest first.
    ready: VecDeque<Input>,
    radio: Option<AirClient>,
    control: Option<ControlServer>,
    signals: SignalFd,
    /// The radio's socket failed: not waited on any more.
    radio_failed: bool,
}

/// SIGINT, SIGTERM and SIGHUP, blocked from now on and readable from the returned descriptor:
/// [`Sources`] turns them into [`Input::Shutdown`], so the main loop ends normally and the PTY
/// link and control socket are removed. First thing at start, before any of those exists.
pub fn shutdown_signals() -> std::io::Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block().map_err(std::io::Error::from)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(std::io::Error::from)
}

impl Sources {
    pub fn new(
        signals: SignalFd,
        radio: Option<AirClient>,
        control: Option<ControlServer>,
    ) -> Sources {
        Sources {
            ready: VecDeque::new(),
            radio,
            control,
            signals,
            radio_failed: false,
        }
    }

    /// The next input, waiting up to `wait` for one (`None`: none came). Meanwhile the console's
    /// queued output is written as the port takes it, and replies to control requests go out.
    /// Every source is looked at once even when `wait` is zero.
    pub fn next(&mut self, console: &mut Console, wait: Duration) -> Option<Input> {
        let deadline = Instant::now().checked_add(wait);
        let mut looked = false;
        loop {
            if let Some(control) = &mut self.control {
                let mut requests = Vec::new();
                control.serve(&mut requests);
                self.ready.extend(requests);
            }
            if let Some(input) = self.ready.pop_front() {
                if let Some(control) = &mut self.control {
                    control.resume_accepting();
                }
                return Some(input);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if looked && left.is_some_and(|l| l.is_zero()) {
                return None;
            }
            self.wait(console, left.map(TimeSpec::from_duration));
            looked = true;
        }
    }

    /// One wait on every source; reads what is ready into `ready`. Returns how many
    /// descriptors were ready.
    fn wait(&mut self, console: &mut Console, timeout: Option<TimeSpec>) -> usize {
        let radio = self
            .radio
            .as_ref()
            .filter(|_| !self.radio_failed)
            .map(AsFd::as_fd);
        let console_wait = console.wait_on();
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(8);
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        let console_at = console_wait.map(|(fd, flags)| {
            fds.push(PollFd::new(fd, flags));
            fds.len() - 1
        });
        let radio_at = radio.map(|fd: BorrowedFd<'_>| {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
            fds.len() - 1
        });
        let control_at = fds.len();
        if let Some(control) = &self.control {
            fds.extend(
                control
                    .wait_on()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
            );
        }
        // ppoll: its timeout has the precision of the board's timers (poll's is 1 ms).
        let count = match ppoll(&mut fds, timeout, None) {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(nix::errno::Errno::EINTR) => return 0, // the caller waits again
            Err(e) => {
                // Nothing to wait with: the board cannot go on, so it ends cleanly.
                eprintln!("vdk: waiting for input failed: {e}");
                self.ready.push_back(Input::Shutdown);
                return 0;
            }
        };
        if count == 0 {
            return 0;
        }
        // Hang-up, error and a bad descriptor wake a source too: its read or write then says
        // what happened, and the source stops being waited on.
        let trouble = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        let woke = |pfd: &PollFd<'_>| {
            pfd.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | trouble))
        };
        let writable = |pfd: &PollFd<'_>| {
            pfd.revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLOUT | trouble))
        };
        let signalled = woke(&fds[0]);
        let console_readable = console_at.is_some_and(|i| woke(&fds[i]));
        let console_writable = console_at.is_some_and(|i| writable(&fds[i]));
        let radio_readable = radio_at.is_some_and(|i| woke(&fds[i]));
        let control_readable: Vec<bool> = fds[control_at..].iter().map(woke).collect();
        drop(fds);
        if console_writable {
            console.flush();
        }
        if console_readable && let Some(input) = console.read() {
            self.ready.push_back(input);
        }
        if radio_readable {
            self.receive_radio();
        }
        if let Some(control) = &mut self.control
            && control_readable.iter().any(|r| *r)
        {
            let mut requests = Vec::new();
            control.ready(&control_readable, &mut requests);
            self.ready.extend(requests);
        }
        if signalled {
            match self.signals.read_signal() {
                Ok(Some(info)) => {
                    let name = Signal::try_from(info.ssi_signo as i32)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|_| info.ssi_signo.to_string());
                    eprintln!("vdk: {name}: shutting down");
                    self.ready.push_back(Input::Shutdown);
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("vdk: reading signals failed: {e}; shutting down");
                    self.ready.push_back(Input::Shutdown);
                }
            }
        }
        count
    }

    /// Every datagram the radio has waiting, in order.
    fn receive_radio(&mut self) {
        let Some(radio) = &self.radio else { return };
        loop {
            match radio.try_recv_message() {
                Ok(Some(Received::Frame(frame))) => self.ready.push_back(Input::Air(frame)),
                Ok(Some(Received::Time(now_us))) => self.ready.push_back(Input::Clock(now_us)),
                Ok(Some(Received::Discarded)) => self.ready.push_back(Input::AirDiscarded),
                Ok(None) => return,
                Err(e) => {
                    eprintln!("vdk: radio receive failed: {e}");
                    self.radio_failed = true;
                    return;
                }
            }
        }
    }
}
