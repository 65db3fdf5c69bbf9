//! A board's console: one tokio task per board reads the transport, frames lines
//! ([`decoder`]), appends them to the board's [`buffer`], writes the board log, and watches for
//! crashes. Steps write commands directly on the same file descriptor.
//!
//! Transports: a serial port (real DK, or a virtual DK's PTY link, opened with the same code), or
//! a process spawned on a PTY the runner creates (any host CLI becomes a board).

pub mod buffer;
pub mod decoder;
pub mod log;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

use buffer::LineBuffer;
use decoder::{ConsoleItem, DEFAULT_MAX_LINE, LineDecoder};

use crate::profile::Shell;
use crate::step_clock::StepClock;
use ot_hil_air::BoardTap;

/// Console errors: all of them are infrastructure problems (the board could not be talked to).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("failed to open serial port {path} of board {board}: {message}")]
    OpenSerial {
        board: String,
        path: PathBuf,
        message: String,
    },
    #[error("failed to create a pty for board {board}: {source}")]
    Pty {
        board: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start `{command}` for board {board}: {source}")]
    Spawn {
        board: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write to board {board}: {source}")]
    Write {
        board: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a board stopped being usable during a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardFault {
    /// The firmware crashed or rebooted (fatal error line, unexpected boot banner, the board's own
    /// process exited): a test failure. `line` is the index of the first telling line.
    Crashed { reason: String, line: Option<usize> },
    /// The port or the process behind it went away: an infrastructure error.
    Gone { reason: String },
}

/// What the reader task and the steps share.
#[derive(Debug, Default)]
pub struct BoardState {
    pub lines: LineBuffer,
    /// Prompts seen so far (a bare prompt on the pending line).
    pub prompts: u64,
    pub fault: Option<BoardFault>,
}

/// Shared state of one board plus a change signal.
#[derive(Debug)]
pub struct Shared {
    pub name: String,
    state: Mutex<BoardState>,
    changed: watch::Sender<()>,
    crash_armed: AtomicBool,
}

impl Shared {
    fn new(name: &str) -> Shared {
        Shared {
            name: name.to_string(),
            state: Mutex::new(BoardState::default()),
            changed: watch::channel(()).0,
            crash_armed: AtomicBool::new(false),
        }
    }

    /// Lock the state. A poisoned lock only means a panic elsewhere; the data is still usable.
    pub fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that wakes on every change after this call.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    fn set_fault(&self, fault: BoardFault) {
        let mut st = self.lock();
        if st.fault.is_none() {
            st.fault = Some(fault);
        }
        drop(st);
        self.notify();
    }
}

/// Lines that mean the firmware died, whatever the case is doing.
pub const FATAL_MARKERS: &[&str] = &[
    ">>> ZEPHYR FATAL ERROR",
    "otPlatAssertFail",
    "ASSERTION FAIL",
];
/// Start of Zephyr's boot banner (any version).
pub const ZEPHYR_BANNER_PREFIX: &str = "*** Booting ";

/// How one console behaves.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Board name (node name in a case) for messages and logs.
    pub board: String,
    pub shell: Shell,
    /// Boot banner lines; seeing one after [`Console::arm_crash_detection`] means a reboot.
    pub banner: Vec<String>,
    /// Where to write the board log (`None`: no log).
    pub log: Option<PathBuf>,
    /// The clock the case's waits on this console run on.
    pub clock: StepClock,
    /// On a case clock: the clock's count of the bytes written to and read from this board.
    pub tap: Option<BoardTap>,
}

enum PortIo {
    Serial(serialport::TTYPort),
    Pty(OwnedFd),
}

impl AsRawFd for PortIo {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            PortIo::Serial(p) => p.as_raw_fd(),
            PortIo::Pty(fd) => fd.as_raw_fd(),
        }
    }
}

type Log = Arc<Mutex<Option<log::CappedLog>>>;

/// An open console with its reader task.
pub struct Console {
    shared: Arc<Shared>,
    io: Arc<AsyncFd<PortIo>>,
    shell: Shell,
    log: Log,
    opened: Instant,
    reader: tokio::task::JoinHandle<()>,
    child: Option<tokio::task::JoinHandle<()>>,
    child_pid: Option<u32>,
    clock: StepClock,
    tap: Option<BoardTap>,
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    // SAFETY-free: fcntl on a borrowed fd we own for the duration of the call.
    let fd = unsafe_borrow(fd);
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

fn unsafe_borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: callers pass the fd of a port/pty they hold open for longer than the borrow is used.
    #[allow(unsafe_code)]
    unsafe {
        std::os::fd::BorrowedFd::borrow_raw(fd)
    }
}

fn register(io: PortIo) -> std::io::Result<AsyncFd<PortIo>> {
    // SAFETY: PortIo owns its descriptor (the serial port or the pty master) and always returns
    // the same one; it is closed only when the AsyncFd (and so the PortIo) is dropped.
    #[allow(unsafe_code)]
    let registered = unsafe { AsyncFd::register(io) };
    registered.map_err(|e| e.into_parts().1)
}

fn open_log(path: Option<&Path>, board: &str) -> Result<Log, ConsoleError> {
    let Some(path) = path else {
        return Ok(Arc::new(Mutex::new(None)));
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ConsoleError::Log {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let f = File::create(path).map_err(|source| ConsoleError::Log {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = log::CappedLog::new(f, log::log_cap());
    w.write(format!("{}\n", crate::run_clock::log_header(board)).as_bytes());
    Ok(Arc::new(Mutex::new(Some(w))))
}

/// One log line, stamped from the run's clock (`opened` is the run's origin, the same for every
/// board) and, for boards on a case clock, with the case clock's instant beside it.
fn log_write(log: &Log, opened: Instant, clock: &StepClock, tag: &str, text: &str) {
    let mut guard = log.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = guard.as_mut() {
        let t = Instant::now()
            .saturating_duration_since(opened)
            .as_secs_f64();
        match clock.case_us() {
            Some(us) => {
                let v = us as f64 / 1e6;
                w.write(format!("[{t:12.6}] [case {v:11.6}] {tag}{text}\n").as_bytes());
            }
            None => w.write(format!("[{t:12.6}] {tag}{text}\n").as_bytes()),
        }
    }
}

fn log_flush(log: &Log) {
    let mut guard = log.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(w) = guard.as_mut() {
        w.flush();
    }
}

/// Write the log's kept tail; the bytes its cap cut.
fn log_finish(log: &Log) -> u64 {
    let mut guard = log.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_mut().map_or(0, log::CappedLog::finish)
}

impl Console {
    /// Open a serial port (exclusive) at `baud`; assert DTR where the port has modem lines.
    pub fn open_serial(
        path: &Path,
        baud: u32,
        config: ConsoleConfig,
    ) -> Result<Console, ConsoleError> {
        let open_err = |message: String| ConsoleError::OpenSerial {
            board: config.board.clone(),
            path: path.to_path_buf(),
            message,
        };
        let mut port = serialport::new(path.to_string_lossy(), baud)
            .timeout(Duration::from_millis(100))
            .open_native()
            .map_err(|e| open_err(e.to_string()))?;
        // PTYs have no modem lines (ENOTTY); a real DK's J-Link UART ignores DTR, the sniffer needs it.
        use serialport::SerialPort;
        if let Err(e) = port.write_data_terminal_ready(true) {
            tracing::debug!(board = %config.board, "DTR not set: {e}");
        }
        set_nonblocking(port.as_raw_fd()).map_err(|e| open_err(e.to_string()))?;
        let io = register(PortIo::Serial(port)).map_err(|e| open_err(e.to_string()))?;
        Console::start(io, config, None, None)
    }

    /// Spawn `program args..` with a fresh PTY as its stdin/stdout/stderr.
    pub fn spawn_process(
        program: &str,
        args: &[String],
        config: ConsoleConfig,
    ) -> Result<Console, ConsoleError> {
        use nix::sys::termios;
        let pty_err = |e: std::io::Error| ConsoleError::Pty {
            board: config.board.clone(),
            source: e,
        };
        let pty = nix::pty::openpty(None, None).map_err(|e| pty_err(e.into()))?;
        // Raw mode on the child's side: no echo by the tty itself, no NL->CRNL mapping; the CLI
        // decides what it echoes, as a UART would.
        let mut t = termios::tcgetattr(&pty.slave).map_err(|e| pty_err(e.into()))?;
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &t)
            .map_err(|e| pty_err(e.into()))?;
        let spawn_err = |source: std::io::Error| ConsoleError::Spawn {
            board: config.board.clone(),
            command: std::iter::once(program.to_string())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" "),
            source,
        };
        let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(stdio(&pty.slave).map_err(spawn_err)?)
            .stdout(stdio(&pty.slave).map_err(spawn_err)?)
            .stderr(stdio(&pty.slave).map_err(spawn_err)?)
            .kill_on_drop(true);
        crate::board_process::contain(&mut cmd);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        // Our copy of the slave must go, or reading the master never sees the child's end.
        drop(pty.slave);
        let child_pid = child.id();
        set_nonblocking(pty.master.as_raw_fd()).map_err(pty_err)?;
        let io = register(PortIo::Pty(pty.master)).map_err(pty_err)?;
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
        let watcher = tokio::spawn(async move {
            let status = child.wait().await;
            let _ = exit_tx.send(
                status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| format!("unknown status ({e})")),
            );
        });
        Console::start(io, config, Some(exit_rx), Some((watcher, child_pid)))
    }

    fn start(
        io: AsyncFd<PortIo>,
        config: ConsoleConfig,
        exit_rx: Option<tokio::sync::oneshot::Receiver<String>>,
        child: Option<(tokio::task::JoinHandle<()>, Option<u32>)>,
    ) -> Result<Console, ConsoleError> {
        let log = open_log(config.log.as_deref(), &config.board)?;
        let shared = Arc::new(Shared::new(&config.board));
        let io = Arc::new(io);
        let opened = crate::run_clock::origin().0;
        let reader = tokio::spawn(read_loop(
            io.clone(),
            shared.clone(),
            config.clone(),
            log.clone(),
            opened,
            exit_rx,
        ));
        let (child, child_pid) = match child {
            Some((h, pid)) => (Some(h), pid),
            None => (None, None),
        };
        Ok(Console {
            clock: config.clock,
            tap: config.tap,
            shared,
            io,
            shell: config.shell,
            log,
            opened,
            reader,
            child,
            child_pid,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn shell(&self) -> &Shell {
        &self.shell
    }

    /// The clock this console's waits run on.
    pub fn clock(&self) -> &StepClock {
        &self.clock
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Pid of the board's process (process transport only).
    pub fn child_pid(&self) -> Option<u32> {
        self.child_pid
    }

    /// From now on a boot banner means an unexpected reboot.
    pub fn arm_crash_detection(&self, armed: bool) {
        self.shared.crash_armed.store(armed, Ordering::SeqCst);
    }

    /// Write raw bytes; returns when all are written.
    pub async fn write_all(&self, mut data: &[u8]) -> Result<(), ConsoleError> {
        while !data.is_empty() {
            let n = self
                .io
                .async_io(Interest::WRITABLE, |p| {
                    nix::unistd::write(unsafe_borrow(p.as_raw_fd()), data)
                        .map_err(std::io::Error::from)
                })
                .await
                .map_err(|source| ConsoleError::Write {
                    board: self.shared.name.clone(),
                    source,
                })?;
            if let Some(tap) = &self.tap {
                tap.wrote(n);
            }
            data = data.get(n..).unwrap_or(&[]);
        }
        Ok(())
    }

    /// Send one command line (the profile's prefix is added by the caller) with the profile's line ending.
    pub async fn send_line(&self, line: &str) -> Result<(), ConsoleError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(self.shell.line_ending.as_bytes());
        self.write_all(&bytes).await?;
        log_write(&self.log, self.opened, &self.clock, ">>> ", line);
        log_flush(&self.log);
        Ok(())
    }

    /// Write a note into the board log (flash, reset, step boundaries).
    pub fn note(&self, text: &str) {
        log_write(&self.log, self.opened, &self.clock, "--- ", text);
        log_flush(&self.log);
    }

    /// Stop the reader and (for a process board) the process; complete the log. Returns the
    /// bytes the log's cap cut from it.
    pub async fn close(mut self) -> u64 {
        self.reader.abort();
        if let Some(pid) = self.child_pid.take() {
            crate::board_process::kill_group(pid);
        }
        if let Some(h) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
        }
        log_finish(&self.log)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(pid) = self.child_pid.take() {
            crate::board_process::kill_group(pid);
        }
        if let Some(h) = self.child.take() {
            // Dropping the watcher drops the child handle, which kills the process.
            h.abort();
        }
        log_finish(&self.log);
    }
}

async fn read_loop(
    io: Arc<AsyncFd<PortIo>>,
    shared: Arc<Shared>,
    config: ConsoleConfig,
    log: Log,
    opened: Instant,
    exit_rx: Option<tokio::sync::oneshot::Receiver<String>>,
) {
    let prompts: Vec<&str> = config.shell.prompts.iter().map(String::as_str).collect();
    let mut decoder = LineDecoder::new(&prompts, DEFAULT_MAX_LINE);
    let mut buf = vec![0u8; 4096];
    let mut items = Vec::new();
    let end_reason = loop {
        let read = io
            .async_io(Interest::READABLE, |p| {
                nix::unistd::read(unsafe_borrow(p.as_raw_fd()), &mut buf)
                    .map_err(std::io::Error::from)
            })
            .await;
        // Lines are stamped on the case's clock (what step timings use).
        let at = config.clock.now();
        let n = match read {
            Ok(0) => break "end of file".to_string(),
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(Errno::EINTR as i32) => continue,
            Err(e) => break e.to_string(),
        };
        items.clear();
        decoder.feed(buf.get(..n).unwrap_or(&[]), &mut items);
        if items.is_empty() {
            // A part of a line: nothing to look at yet, but read all the same.
            if let Some(tap) = &config.tap {
                tap.read(n);
            }
            continue;
        }
        let mut fault = None;
        {
            let mut st = shared.lock();
            for item in items.drain(..) {
                match item {
                    ConsoleItem::Prompt => st.prompts += 1,
                    ConsoleItem::Line { text, truncated } => {
                        log_write(&log, opened, &config.clock, "", &text);
                        let crash = crash_reason(
                            &text,
                            &config.banner,
                            shared.crash_armed.load(Ordering::SeqCst),
                        );
                        let index = st.lines.push(text, truncated, at);
                        if fault.is_none()
                            && let Some(reason) = crash
                        {
                            fault = Some(BoardFault::Crashed {
                                reason,
                                line: Some(index),
                            });
                        }
                    }
                }
            }
            if let Some(f) = fault
                && st.fault.is_none()
            {
                st.fault = Some(f);
            }
        }
        shared.notify();
        // Counted once the lines are there to see: the case clock wakes a waiting step on it.
        if let Some(tap) = &config.tap {
            tap.read(n);
        }
        log_flush(&log);
    };
    // The port or pty ended. For a process board, the process exiting is the firmware dying.
    let pending = decoder.pending();
    if !pending.trim().is_empty() {
        log_write(&log, opened, &config.clock, "", &pending);
    }
    let fault = match exit_rx {
        Some(rx) => match tokio::time::timeout(Duration::from_secs(2), rx).await {
            Ok(Ok(status)) => BoardFault::Crashed {
                reason: format!("board process exited ({status})"),
                line: None,
            },
            _ => BoardFault::Gone {
                reason: format!(
                    "console closed ({end_reason}) but the board process is still running"
                ),
            },
        },
        None => BoardFault::Gone {
            reason: format!("serial port closed ({end_reason})"),
        },
    };
    log_write(&log, opened, &config.clock, "--- ", &format!("{fault:?}"));
    log_flush(&log);
    shared.set_fault(fault);
    if let Some(tap) = &config.tap {
        tap.gone();
    }
}

fn crash_reason(line: &str, banner: &[String], armed: bool) -> Option<String> {
    if let Some(m) = FATAL_MARKERS.iter().find(|m| line.contains(*m)) {
        return Some(format!("fatal error on the console (`{m}`)"));
    }
    if armed
        && (line.starts_with(ZEPHYR_BANNER_PREFIX)
            || banner.iter().any(|b| !b.is_empty() && line == b))
    {
        return Some("unexpected reboot (boot banner)".to_string());
    }
    None
}
