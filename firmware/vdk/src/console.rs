//! The board's UART: a PTY (what the runner and `screen`/`tio` open) or the process's stdio.
//!
//! Bytes typed by the user arrive on a reader thread and go to the main loop as
//! [`Input::Console`](crate::input::Input). Output goes through a writer thread with a bounded
//! queue: a real UART never blocks the firmware when nobody reads it, and neither may the PTY
//! (its kernel buffer fills up when no one has the slave open), so when the queue is full output
//! is dropped and counted instead of stalling the board.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::thread;
use std::time::Duration;

use nix::sys::termios::{self, SetArg, Termios};

use crate::input::Input;

/// Chunks the writer queue holds before output is dropped (each chunk is one burst of output,
/// typically a command's reply).
const WRITE_QUEUE_CHUNKS: usize = 256;

/// Read size for console input; a UART FIFO delivers far less at a time.
const READ_CHUNK: usize = 512;

/// The board's end of the console.
pub struct Console {
    /// `None` once closed.
    writer: Option<SyncSender<Vec<u8>>>,
    /// Signalled by the writer thread when it has written everything and stopped.
    writer_done: Receiver<()>,
    dropped_chunks: u64,
    /// Keeps the PTY slave open for the life of the board: without an open slave fd, reads on
    /// the master fail with EIO until the runner opens it, and bytes written before that would
    /// be lost. With it, early output (the boot banner) waits in the slave's buffer.
    _pty_slave: Option<OwnedFd>,
    link: Option<PathBuf>,
    restore_stdin: Option<Termios>,
    /// Tells the PTY reader thread to let go of the master (see [`Console::close_port`]).
    reader_stop: Option<Arc<AtomicBool>>,
}

impl Console {
    /// Create a PTY in raw mode, link `link` -> slave path, and start its reader/writer threads.
    pub fn open_pty(link: &Path, inputs: Sender<Input>) -> std::io::Result<Console> {
        let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
        // Raw mode on the slave: the runner's serialport open sets raw mode too, but only when it
        // opens; anything written before that would otherwise be line-processed (ONLCR doubling
        // `\r`) and echoed back into our input.
        let mut attrs = termios::tcgetattr(pty.slave.as_fd()).map_err(std::io::Error::from)?;
        termios::cfmakeraw(&mut attrs);
        termios::tcsetattr(pty.slave.as_fd(), SetArg::TCSANOW, &attrs)
            .map_err(std::io::Error::from)?;
        let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).map_err(std::io::Error::from)?;
        // Replace a stale link left by a killed board, but never a regular file or directory.
        if let Ok(meta) = std::fs::symlink_metadata(link)
            && meta.file_type().is_symlink()
        {
            std::fs::remove_file(link)?;
        }
        std::os::unix::fs::symlink(&slave_path, link)?;
        let master = File::from(pty.master);
        let reader = master.try_clone()?;
        let reader_stop = Arc::new(AtomicBool::new(false));
        spawn_reader("vdk-pty-reader", reader, inputs, Some(reader_stop.clone()))?;
        let (writer, writer_done) = spawn_writer("vdk-pty-writer", master)?;
        Ok(Console {
            writer: Some(writer),
            writer_done,
            dropped_chunks: 0,
            _pty_slave: Some(pty.slave),
            link: Some(link.to_path_buf()),
            restore_stdin: None,
            reader_stop: Some(reader_stop),
        })
    }

    /// Use stdin/stdout. When stdin is a terminal it is put in raw mode (keeping Ctrl-C as a
    /// signal) because the shell does its own echo and line editing, like the real board.
    pub fn open_stdio(inputs: Sender<Input>) -> std::io::Result<Console> {
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
        spawn_reader("vdk-stdin-reader", std::io::stdin(), inputs, None)?;
        let (writer, writer_done) = spawn_writer("vdk-stdout-writer", std::io::stdout())?;
        Ok(Console {
            writer: Some(writer),
            writer_done,
            dropped_chunks: 0,
            _pty_slave: None,
            link: None,
            restore_stdin,
            reader_stop: None,
        })
    }

    /// Queue bytes for the UART; never blocks. Returns how many were queued (0 when the output
    /// was dropped or the console is closed): what the runner will be able to read.
    pub fn write(&mut self, bytes: Vec<u8>) -> usize {
        if bytes.is_empty() {
            return 0;
        }
        let Some(writer) = &self.writer else { return 0 };
        let len = bytes.len();
        match writer.try_send(bytes) {
            Ok(()) => len,
            Err(TrySendError::Full(_)) => {
                self.dropped_chunks += 1;
                if self.dropped_chunks.is_power_of_two() {
                    eprintln!(
                        "vdk: console output dropped ({} chunks so far): nobody is reading the console",
                        self.dropped_chunks
                    );
                }
                0
            }
            Err(TrySendError::Disconnected(_)) => 0,
        }
    }
}

impl Console {
    /// Stop accepting output and give the writer thread up to `timeout` to write what is queued
    /// (a PTY nobody reads may never drain; then the rest is lost, as on a real UART).
    pub fn close(&mut self, timeout: Duration) {
        if self.writer.take().is_some() {
            let _ = self.writer_done.recv_timeout(timeout);
        }
    }
}

impl Console {
    /// Make the port vanish, as a DK's USB serial does when it re-enumerates: close every
    /// descriptor of the PTY master (the runner's reads of the slave then fail) and remove the
    /// link. The board keeps running; its output goes nowhere.
    pub fn close_port(&mut self) {
        // The writer thread drops its master descriptor when its queue closes.
        self.close(Duration::from_millis(200));
        if let Some(stop) = self.reader_stop.take() {
            stop.store(true, Ordering::SeqCst);
            // The reader is blocked in read() on the master; a byte written into the slave
            // wakes it, it sees the flag and drops its descriptor.
            if let Some(slave) = &self._pty_slave {
                let _ = nix::unistd::write(slave, b"\0");
            }
        }
        self._pty_slave = None;
        if let Some(link) = self.link.take() {
            let _ = std::fs::remove_file(link);
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.close(Duration::from_millis(500));
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
        if let Some(orig) = &self.restore_stdin {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, orig);
        }
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    name: &str,
    mut source: R,
    inputs: Sender<Input>,
    stop: Option<Arc<AtomicBool>>,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = [0u8; READ_CHUNK];
            loop {
                let read = source.read(&mut buf);
                if stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                    // The port was closed on purpose: no ConsoleClosed (that ends a stdio board).
                    return;
                }
                match read {
                    Ok(0) => {
                        let _ = inputs.send(Input::ConsoleClosed);
                        return;
                    }
                    Ok(n) => {
                        if inputs.send(Input::Console(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // EIO on a PTY master means no slave is open; we keep one open, so this is
                        // a real failure. Report it and stop reading rather than spin.
                        eprintln!("vdk: console read failed: {e}");
                        let _ = inputs.send(Input::ConsoleClosed);
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

fn spawn_writer<W: Write + Send + 'static>(
    name: &str,
    mut sink: W,
) -> std::io::Result<(SyncSender<Vec<u8>>, Receiver<()>)> {
    let (tx, rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = mpsc::sync_channel(WRITE_QUEUE_CHUNKS);
    let (done_tx, done_rx) = mpsc::channel();
    thread::Builder::new()
        .name(name.into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while let Ok(chunk) = rx.recv() {
                if let Err(e) = sink.write_all(&chunk).and_then(|_| sink.flush()) {
                    eprintln!("vdk: console write failed: {e}");
                    break;
                }
            }
            let _ = done_tx.send(());
        })?;
    Ok((tx, done_rx))
}
