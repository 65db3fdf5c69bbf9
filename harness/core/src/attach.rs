//! A person's terminal on a board's serial port (`ot-hil console BOARD`): what the board prints
//! is shown as it comes and logged line by line with wall-clock time; what the person types goes
//! to the board byte by byte (arrow keys and Ctrl+C included, so the board's own shell edits the
//! line). The escape byte ends the session, as Ctrl+] does in telnet.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// Ctrl+]: ends a console session (never sent to the board).
pub const ESCAPE: u8 = 0x1d;

/// Why a session could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("failed to open {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("failed to write the log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} went away: {source}")]
    Port {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to show the board's output: {0}")]
    Show(#[source] std::io::Error),
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The person typed the escape byte.
    Escape,
    /// The input ended (EOF on a pipe).
    InputClosed,
    /// `stop` was signalled (SIGINT, SIGTERM, SIGHUP).
    Stopped,
}

/// What flows into the session loop.
enum Event {
    Board(Vec<u8>),
    BoardError(std::io::Error),
    Typed(Vec<u8>),
    InputClosed,
    Stop,
}

/// Writes the board's output to the log, one line per line, each stamped with the wall-clock
/// time it was completed (the runner's logs carry the same clock).
struct LineLog {
    file: std::fs::File,
    path: PathBuf,
    pending: Vec<u8>,
}

impl LineLog {
    fn push(&mut self, bytes: &[u8]) -> Result<(), AttachError> {
        for &b in bytes {
            match b {
                b'\n' => self.flush_line()?,
                b'\r' => {}
                _ => self.pending.push(b),
            }
        }
        Ok(())
    }

    fn flush_line(&mut self) -> Result<(), AttachError> {
        let at = humantime::format_rfc3339_millis(SystemTime::now());
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        writeln!(self.file, "{at} {text}").map_err(|source| AttachError::Log {
            path: self.path.clone(),
            source,
        })
    }
}

/// The board's serial port, the log, and where its output is shown.
pub struct Session {
    port: Box<dyn serialport::SerialPort>,
    path: PathBuf,
    log: Option<LineLog>,
}

impl Session {
    /// Open `port` at `baud`; log to `log` (appending) when given.
    pub fn open(port: &Path, baud: u32, log: Option<&Path>) -> Result<Session, AttachError> {
        let opened = serialport::new(port.to_string_lossy(), baud)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(|e| AttachError::Open {
                path: port.to_path_buf(),
                message: e.to_string(),
            })?;
        let log = match log {
            Some(path) => Some(LineLog {
                file: std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AttachError::Log {
                        path: path.to_path_buf(),
                        source,
                    })?,
                path: path.to_path_buf(),
                pending: Vec::new(),
            }),
            None => None,
        };
        Ok(Session {
            port: opened,
            path: port.to_path_buf(),
            log,
        })
    }

    /// Pass bytes both ways until the escape byte, the end of `input`, or `stop`.
    pub fn run(
        mut self,
        input: impl Read + Send + 'static,
        output: &mut dyn Write,
        stop: mpsc::Receiver<()>,
    ) -> Result<Ended, AttachError> {
        let (tx, rx) = mpsc::channel();
        let port_err = |path: &Path, source| AttachError::Port {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = self
            .port
            .try_clone()
            .map_err(|e| port_err(&self.path, std::io::Error::other(e.to_string())))?;
        let board_tx = tx.clone();
        // The reader threads end with the process or when the session's channel is gone; the
        // port's read timeout lets the board reader notice the latter.
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            loop {
                let event = match reader.read(&mut buf) {
                    Ok(0) => continue,
                    Ok(n) => Event::Board(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Event::BoardError(e),
                };
                let last = matches!(event, Event::BoardError(_));
                if board_tx.send(event).is_err() || last {
                    return;
                }
            }
        });
        let typed_tx = tx.clone();
        std::thread::spawn(move || {
            let mut input = input;
            let mut buf = [0u8; 256];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = typed_tx.send(Event::InputClosed);
                        return;
                    }
                    Ok(n) => {
                        if typed_tx.send(Event::Typed(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        std::thread::spawn(move || {
            if stop.recv().is_ok() {
                let _ = tx.send(Event::Stop);
            }
        });
        let ended = loop {
            let Ok(event) = rx.recv() else {
                break Ended::Stopped;
            };
            match event {
                Event::Board(bytes) => {
                    output
                        .write_all(&bytes)
                        .and_then(|_| output.flush())
                        .map_err(AttachError::Show)?;
                    if let Some(log) = self.log.as_mut() {
                        log.push(&bytes)?;
                    }
                }
                Event::BoardError(e) => return Err(port_err(&self.path, e)),
                Event::Typed(bytes) => {
                    let (send, escaped) = match bytes.iter().position(|b| *b == ESCAPE) {
                        Some(at) => (&bytes[..at], true),
                        None => (&bytes[..], false),
                    };
                    self.port
                        .write_all(send)
                        .and_then(|_| self.port.flush())
                        .map_err(|e| port_err(&self.path, e))?;
                    if escaped {
                        break Ended::Escape;
                    }
                }
                Event::InputClosed => break Ended::InputClosed,
                Event::Stop => break Ended::Stopped,
            }
        };
        // A last partial line (the prompt) is logged too.
        if let Some(log) = self.log.as_mut()
            && !log.pending.is_empty()
        {
            log.flush_line()?;
        }
        Ok(ended)
    }
}
