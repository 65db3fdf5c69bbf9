//! The hub: one per run, it plays the air between every registered client. [`Hub`] starts and
//! stops it and sets its faults; [`CaseClock`] and [`BoardTap`] are the runner's handles on its
//! case clock. The air itself is [`crate::medium`].

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{ClockState, RunnerWait, Wake};
use crate::fault::FaultConfig;
use crate::medium::{HubStats, Shared, progress, serve};
use crate::sim_nodes;

/// File name of the hub socket inside the run directory.
pub const HUB_SOCKET_NAME: &str = ot_hil_board::air_socket::HUB_SOCKET_NAME;

/// The virtual air of one run. Dropping it stops the thread and removes the socket.
pub struct Hub {
    socket_path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// Bind `dir/air.sock` and serve on a thread. Fault injection starts off, with RNG seed 0.
    pub fn start(dir: &Path) -> io::Result<Hub> {
        Hub::start_seeded(dir, 0)
    }

    /// As [`Hub::start`], with the seed of the fault-injection RNG (same seed and same traffic
    /// order give the same losses).
    pub fn start_seeded(dir: &Path, seed: u64) -> io::Result<Hub> {
        Hub::start_with(dir, seed, None)
    }

    /// As [`Hub::start_seeded`], with a case clock ([`crate::clock`]): the boards that register
    /// on it run in virtual time, driven by [`CaseClock`].
    pub fn start_clocked(dir: &Path, seed: u64) -> io::Result<Hub> {
        Hub::start_with(dir, seed, Some(ClockState::default()))
    }

    fn start_with(dir: &Path, seed: u64, clock: Option<ClockState>) -> io::Result<Hub> {
        let socket_path = dir.join(HUB_SOCKET_NAME);
        match std::fs::remove_file(&socket_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let socket = UnixDatagram::bind(&socket_path)?;
        // Deliveries go out of a separate non-blocking socket: one slow receiver must not stall
        // the whole air (a full queue is an overrun, like a radio that missed a frame).
        let out = UnixDatagram::unbound()?;
        out.set_nonblocking(true)?;
        let shared = Arc::new(Shared::new(out, seed, clock));
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("air-hub".into())
            .spawn(move || serve(&socket, &thread_shared))?;
        Ok(Hub {
            socket_path,
            shared,
            thread: Some(thread),
        })
    }

    /// The socket clients connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Accept real OpenThread nodes built for virtual time (started with
    /// `OT_VT_USE_UNIX_SOCKET=1` in this hub's directory, `PORT_OFFSET` 0 and `PORT_BASE`
    /// `port_base`) as boards of this hub's case clock; the socket they connect to.
    pub fn listen_sim_nodes(&self, port_base: u16) -> io::Result<PathBuf> {
        let dir = self.socket_path.parent().unwrap_or(Path::new("."));
        sim_nodes::listen(Arc::clone(&self.shared), dir, port_base)
    }

    /// The case clock, when the hub was started with one ([`Hub::start_clocked`]).
    pub fn clock(&self) -> Option<CaseClock> {
        self.shared.lock().clock.as_ref()?;
        Some(CaseClock {
            shared: Arc::clone(&self.shared),
        })
    }

    /// Wait until a monitor (a sniffer's radio) listens on `channel`, up to `timeout`: a
    /// sniffer must hear a case from its first frame, and on the case clock that frame can come
    /// microseconds after the steps start. False when none came.
    pub async fn monitor_on(&self, channel: u8, timeout: Duration) -> bool {
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            let registered = self.shared.monitor_registered.notified();
            {
                let state = self.shared.lock();
                if state
                    .monitors
                    .iter()
                    .any(|m| state.clients.get(m) == Some(&channel))
                {
                    return true;
                }
            }
            if tokio::time::timeout_at(give_up, registered).await.is_err() {
                return false;
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HubStats {
        let state = self.shared.lock();
        let mut stats = state.stats.clone();
        stats.clients = state.clients.len();
        stats
    }

    /// Faults applied to every link that has no faults of its own, except links to monitors
    /// (sniffer radios, [`crate::AirClient::set_monitor`]): a sniffer on the virtual air is a
    /// perfect observer and hears every frame as it was transmitted, unless faults are set on a
    /// link to it with [`Hub::set_link_faults`].
    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared.lock().faults = faults;
    }

    /// Faults for frames from the client bound at `from` to the one at `to` (see
    /// [`crate::AirClient::local_path`]); `None` returns the link to the global faults.
    pub fn set_link_faults(&self, from: &Path, to: &Path, faults: Option<FaultConfig>) {
        let key = (from.to_path_buf(), to.to_path_buf());
        let mut state = self.shared.lock();
        match faults {
            Some(f) => {
                state.link_faults.insert(key, f);
            }
            None => {
                state.link_faults.remove(&key);
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the thread now rather than at its next idle wake-up.
        if let Ok(waker) = UnixDatagram::unbound() {
            let _ = waker.send_to(&[], &self.socket_path);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// The runner's handle on a case clock ([`Hub::start_clocked`]): it registers the boards it
/// expects, counts what it sends them and reads from them ([`BoardTap`]), and waits on the
/// clock instead of on real time.
#[derive(Clone)]
pub struct CaseClock {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CaseClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseClock")
            .field("now_us", &self.now_us())
            .finish()
    }
}

impl CaseClock {
    /// Expect the clocked board whose radio is bound at `radio`; time holds until it has
    /// registered. `rank` orders its frames among those sent at one instant.
    pub fn expect_board(&self, radio: &Path, rank: u32) -> BoardTap {
        let mut state = self.shared.lock();
        if let Some(clock) = state.clock.as_mut() {
            let board = clock.board(radio);
            board.rank = rank;
            board.expected = true;
        }
        BoardTap {
            shared: Arc::clone(&self.shared),
            radio: radio.to_path_buf(),
        }
    }

    /// The case clock's instant, in µs since the case's air started.
    pub fn now_us(&self) -> u64 {
        self.shared.lock().now_us()
    }

    /// How many times the clock has moved.
    pub fn advances(&self) -> u64 {
        self.shared.lock().clock.as_ref().map_or(0, |c| c.advances)
    }

    /// The console generation: take it before looking at the consoles, pass it to
    /// [`CaseClock::wait`] after.
    pub fn generation(&self) -> u64 {
        self.shared
            .lock()
            .clock
            .as_ref()
            .map_or(0, |c| c.generation)
    }

    /// Wait until a console shows something newer than generation `seen` (once every board is
    /// idle), or the case clock reaches `deadline_us`. Only this wait lets the clock move. If the
    /// boards stop answering for `watchdog` of real time, the wait ends as [`Wake::Stalled`].
    pub async fn wait(&self, deadline_us: u64, seen: u64, watchdog: Duration) -> Wake {
        {
            let mut state = self.shared.lock();
            let Some(clock) = state.clock.as_mut() else {
                return Wake::Stalled;
            };
            clock.wake = None;
            clock.runner = Some(RunnerWait { deadline_us, seen });
            progress(&mut state, &self.shared);
        }
        let give_up = tokio::time::Instant::now() + watchdog;
        loop {
            let notified = self.shared.runner_wake.notified();
            {
                let mut state = self.shared.lock();
                if let Some(clock) = state.clock.as_mut()
                    && let Some(wake) = clock.wake.take()
                {
                    return wake;
                }
            }
            if tokio::time::timeout_at(give_up, notified).await.is_err() {
                let mut state = self.shared.lock();
                if let Some(clock) = state.clock.as_mut() {
                    clock.runner = None;
                    return clock.wake.take().unwrap_or(Wake::Stalled);
                }
                return Wake::Stalled;
            }
        }
    }

    /// Boards that hold the clock now, with why (for a stall's message).
    pub fn holding(&self) -> Vec<String> {
        let state = self.shared.lock();
        let Some(clock) = state.clock.as_ref() else {
            return Vec::new();
        };
        clock
            .boards
            .iter()
            .filter(|(_, b)| !b.gone)
            .filter_map(|(path, b)| {
                let name = path.file_name()?.to_string_lossy().into_owned();
                let why = match b.report {
                    None => "has not registered".to_string(),
                    Some(r) if r.now_us != clock.now_us => {
                        format!("is at {} µs, the clock at {}", r.now_us, clock.now_us)
                    }
                    Some(r) if r.console_in != b.console_written => format!(
                        "has read {} of {} console bytes",
                        r.console_in, b.console_written
                    ),
                    Some(r) if r.console_out != b.console_read => format!(
                        "wrote {} console bytes, {} read",
                        r.console_out, b.console_read
                    ),
                    Some(r) if r.frames_in != b.delivered => {
                        format!("has handled {} of {} frames", r.frames_in, b.delivered)
                    }
                    Some(r) if r.controls != b.controls_sent => format!(
                        "has handled {} of {} control requests",
                        r.controls, b.controls_sent
                    ),
                    Some(_) => return None,
                };
                Some(format!("{name} {why}"))
            })
            .collect()
    }
}

/// The runner's side of one clocked board: what it wrote to and read from its console and the
/// control requests it sent, so the clock knows when nothing is on its way.
#[derive(Clone)]
pub struct BoardTap {
    shared: Arc<Shared>,
    radio: PathBuf,
}

impl std::fmt::Debug for BoardTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardTap")
            .field("radio", &self.radio)
            .finish()
    }
}

impl BoardTap {
    fn update(&self, change: impl FnOnce(&mut crate::clock::ClockedBoard, &mut u64)) {
        let mut state = self.shared.lock();
        let Some(clock) = state.clock.as_mut() else {
            return;
        };
        let mut generation = clock.generation;
        if let Some(board) = clock.boards.get_mut(&self.radio) {
            change(board, &mut generation);
        }
        clock.generation = generation;
        progress(&mut state, &self.shared);
    }

    /// `n` console bytes written to the board.
    pub fn wrote(&self, n: usize) {
        self.update(|b, _| b.console_written += n as u64);
    }

    /// `n` console bytes read from the board (and already shown to the runner's waits).
    pub fn read(&self, n: usize) {
        self.update(|b, generation| {
            b.console_read += n as u64;
            *generation += 1;
        });
    }

    /// A control request is about to be sent to the board.
    pub fn control_sent(&self) {
        self.update(|b, _| b.controls_sent += 1);
    }

    /// The board is gone (its console ended): the clock no longer waits for it.
    pub fn gone(&self) {
        self.update(|b, generation| {
            b.gone = true;
            *generation += 1;
        });
    }
}
