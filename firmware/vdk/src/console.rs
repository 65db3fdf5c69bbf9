//! The board's UART: a PTY (what the runner and `screen`/`tio` open) or the process's stdio.
//!
//! Owned by the main loop, which waits on its input with the board's other inputs
//! ([`crate::sources::Sources`]) and writes a PTY's output directly: no thread stands between
//! the UART and the firmware. A real UART never blocks the firmware when nobody reads it, and
//! neither may the console (a PTY's kernel buffer fills up when no one has the slave open; a
//! pipe on stdout fills up when no one reads it): the PTY master is non-blocking, output that
//! does not fit waits in a bounded queue, written as the PTY drains, and when the queue is full
//! output is dropped and counted instead of stalling the board. Stdout is shared with whoever
//! started the board, so it is not made non-blocking: a writer thread takes its output from a
//! bounded queue, and may block alone.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, SetArg, Termios};

use crate::input::Input;

/// Chunks the output queue holds before output is dropped (each chunk is one burst of output,
/// typically a command's reply).
const WRITE_QUEUE_CHUNKS: usize = 256;

/// Read size for console input; a UART FIFO delivers far less at a time.
const READ_CHUNK: usize = 512;

/// Where the console's bytes go and come from.
enum Port {
    Pty {
        /// Non-blocking; read and written by the main loop.
        master: File,
        /// Keeps the PTY slave open for the life of the board: without an open slave fd, reads
        /// on the master fail with EIO until the runner opens it, and bytes written before that
        /// would be lost. With it, early output (the boot banner) waits in the slave's buffer.
        _slave: OwnedFd,
        link: PathBuf,
    },
    /// stdin, and stdout through its writer thread.
    Stdio {
        stdin: std::io::Stdin,
        restore_stdin: Option<Termios>,
        /// `None` once closed.
        writer: Option<SyncSender<Vec<u8>>>,
        /// Signalled by the writer thread when it has written everything and stopped.
        writer_done: Receiver<()>,
    },
    /// The port was closed ([`Console::close_port`]): output goes nowhere.
    Closed,
}

/// The board's end of the console.
pub struct Console {
    port: Port,
    /// Output not yet written, oldest first (never more than [`WRITE_QUEUE_CHUNKS`]).
    queued: VecDeque<Vec<u8>>,
    dropped_chunks: u64,
    /// Input ended (EOF or a read error): not waited on any more.
    input_ended: bool,
    /// Output failed (not for want of room): what follows is dropped.
    output_failed: bool,
}

impl Console {
    /// Create a PTY in raw mode and link `link` -> slave path.
    pub fn open_pty(link: &Path) -> std::io::Result<Console> {
        let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        // Raw mode on the slave: the runner's serialport open sets raw mode too, but only when it
        // opens; anything written before that would otherwise be line-processed (ONLCR doubling
        // `\r`) and echoed back into our input.
        let mut attrs = termios::tcgetattr(pty.slave.as_fd()).map_err(std::io::Error::from)?;
        termios::cfmakeraw(&mut attrs);
        termios::tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &attrs)
            .map_err(std::io::Error::from)?;
        let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).map_err(std::io::Error::from)?;
        fcntl(&pty.master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
        // Replace a stale link left by a killed board, but never a regular file or directory.
        if let Ok(meta) = std::fs::symlink_metadata(link)
            && meta.file_type().is_symlink()
        {
            std::fs::remove_file(link)?;
        }
        std::os::unix::fs::symlink(&slave_path, link)?;
        Ok(Console::on(Port::Pty {
            master: File::from(pty.master),
            _slave: pty.slave,
            link: link.to_path_buf(),
        }))
    }

    /// Use stdin/stdout. When stdin is a terminal it is put in raw mode (keeping Ctrl-C as a
    /// signal) because the shell does its own echo and line editing, like the real board.
    pub fn open_stdio() -> std::io::Result<Console> {
        let stdin = std::io::stdin();
        let restore_stdin = match termios::tcgetattr(stdin.as_fd()) {
            Ok(orig) => {
                let mut raw = orig.clone();
                termios::cfmakeraw(&mut raw);
                raw.local_flags.insert(termios::LocalFlags::ISIG);
                raw.output_flags.insert(termios::OutputFlags::OPOST);
                termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                    .map_err(std::io::Error::from)?;
                Some(orig)
            }
            Err(_) => None, // a pipe or file: nothing to configure
        };
        let (writer, writer_done) = spawn_stdout_writer()?;
        Ok(Console::on(Port::Stdio {
            stdin,
            restore_stdin,
            writer: Some(writer),
            writer_done,
        }))
    }

    fn on(port: Port) -> Console {
        Console {
            port,
            queued: VecDeque::new(),
            dropped_chunks: 0,
            input_ended: false,
            output_failed: false,
        }
    }

    /// Write bytes to the UART, or queue what does not fit now; never blocks on a PTY. Returns
    /// how many were written or queued (0 when the output was dropped or the port is closed):
    /// what the runner will be able to read.
    pub fn write(&mut self, bytes: Vec<u8>) -> usize {
        if bytes.is_empty() || self.output_failed || matches!(self.port, Port::Closed) {
            return 0;
        }
        let len = bytes.len();
        let queued = match &self.port {
            Port::Stdio { writer, .. } => match writer.as_ref().map(|w| w.try_send(bytes)) {
                Some(Ok(())) => true,
                Some(Err(TrySendError::Full(_))) => false,
                Some(Err(TrySendError::Disconnected(_))) | None => return 0,
            },
            _ if self.queued.len() >= WRITE_QUEUE_CHUNKS => false,
            _ => {
                self.queued.push_back(bytes);
                self.flush();
                true
            }
        };
        if !queued {
            self.dropped_chunks += 1;
            if self.dropped_chunks.is_power_of_two() {
                eprintln!(
                    "vdk: console output dropped ({} chunks so far): nobody is reading the console",
                    self.dropped_chunks
                );
            }
            return 0;
        }
        len
    }

    /// Write as much queued output as the port takes now.
    pub fn flush(&mut self) {
        while let Some(chunk) = self.queued.front_mut() {
            let written = match &mut self.port {
                Port::Pty { master, .. } => master.write(chunk),
                Port::Stdio { .. } => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(chunk)
                        .and_then(|()| out.flush())
                        .map(|()| chunk.len())
                }
                Port::Closed => Ok(chunk.len()),
            };
            match written {
                Ok(n) if n == chunk.len() => {
                    self.queued.pop_front();
                }
                Ok(n) => {
                    chunk.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("vdk: console write failed: {e}");
                    self.queued.clear();
                    self.output_failed = true;
                    return;
                }
            }
        }
    }

    /// The descriptor to wait on, and for what: input (unless it has ended), and room for
    /// output while some is queued.
    pub(crate) fn wait_on(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        let (fd, output_waits) = match &self.port {
            Port::Pty { master, .. } => (master.as_fd(), !self.queued.is_empty()),
            // Stdio output waits in its writer thread, not here.
            Port::Stdio { stdin, .. } => (stdin.as_fd(), false),
            Port::Closed => return None,
        };
        let mut flags = PollFlags::empty();
        if !self.input_ended {
            flags |= PollFlags::POLLIN;
        }
        if output_waits {
            flags |= PollFlags::POLLOUT;
        }
        (!flags.is_empty()).then_some((fd, flags))
    }

    /// Read what the port has for the board (after [`Console::wait_on`]'s descriptor became
    /// readable): typed bytes, the end of input, or nothing yet.
    pub(crate) fn read(&mut self) -> Option<Input> {
        if self.input_ended {
            return None;
        }
        let mut buf = [0u8; READ_CHUNK];
        let read = match &mut self.port {
            Port::Pty { master, .. } => master.read(&mut buf),
            // Straight from the descriptor: a buffered reader could keep bytes the next wait
            // would not see.
            Port::Stdio { stdin, .. } => {
                nix::unistd::read(stdin.as_fd(), &mut buf).map_err(std::io::Error::from)
            }
            Port::Closed => return None,
        };
        match read {
            Ok(0) => {
                self.input_ended = true;
                Some(Input::ConsoleClosed)
            }
            Ok(n) => Some(Input::Console(buf[..n].to_vec())),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => None,
            Err(e) => {
                // EIO on a PTY master means no slave is open; we keep one open, so this is a
                // real failure. Report it and stop reading rather than spin.
                eprintln!("vdk: console read failed: {e}");
                self.input_ended = true;
                Some(Input::ConsoleClosed)
            }
        }
    }

    /// Give queued output up to `timeout` to be written (a PTY nobody reads may never drain;
    /// then the rest is lost, as on a real UART).
    pub fn close(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        if let Port::Stdio {
            writer,
            writer_done,
            ..
        } = &mut self.port
            && writer.take().is_some()
        {
            let _ = writer_done.recv_timeout(timeout);
        }
        self.flush();
        while !self.queued.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Port::Pty { master, .. } = &self.port else {
                break;
            };
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLOUT)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => break,
                Ok(_) | Err(nix::errno::Errno::EINTR) => self.flush(),
                Err(_) => break,
            }
        }
        self.queued.clear();
    }

    /// Make the port vanish, as a DK's USB serial does when it re-enumerates: close every
    /// descriptor of the PTY (the runner's reads of the slave then fail) and remove the link.
    /// The board keeps running; its output goes nowhere.
    pub fn close_port(&mut self) {
        self.close(Duration::from_millis(200));
        self.port_gone();
    }

    fn port_gone(&mut self) {
        if let Port::Pty { link, .. } = &self.port {
            let _ = std::fs::remove_file(link);
        }
        if let Port::Stdio {
            stdin,
            restore_stdin: Some(orig),
            ..
        } = &self.port
        {
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, orig);
        }
        self.port = Port::Closed;
        self.input_ended = true;
    }
}

/// The thread that writes stdout: it alone blocks when nobody reads it.
fn spawn_stdout_writer() -> std::io::Result<(SyncSender<Vec<u8>>, Receiver<()>)> {
    let (tx, rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = mpsc::sync_channel(WRITE_QUEUE_CHUNKS);
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("vdk-stdout-writer".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut out = std::io::stdout().lock();
            while let Ok(chunk) = rx.recv() {
                if let Err(e) = out.write_all(&chunk).and_then(|()| out.flush()) {
                    eprintln!("vdk: console write failed: {e}");
                    break;
                }
            }
            let _ = done_tx.send(());
        })?;
    Ok((tx, done_rx))
}

impl Drop for Console {
    fn drop(&mut self) {
        self.close(Duration::from_millis(500));
        self.port_gone();
    }
}
