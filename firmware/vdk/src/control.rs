//! The virtual probe: a Unix stream socket taking one request line and answering one reply line,
//! several per connection. The runner flashes, resets and asks the image hash through it, the
//! way it would use a J-Link for a real DK.
//!
//! The listener and its connections are waited on by the main loop with the board's other
//! inputs ([`crate::sources::Sources`]), and requests are executed there (so a flash never races
//! console input). A connection has one request in hand at a time: the next line is read once
//! the reply is written. At most `MAX_CONNECTIONS` clients are served at once; more wait in
//! the listen backlog, so clients cannot make the board's descriptors or memory grow without
//! bound.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};

use crate::input::{ControlRequest, Input};

/// Longest request line accepted (a manifest path plus the verb).
const MAX_REQUEST: usize = 4096;

/// Read size on a connection.
const READ_CHUNK: usize = 4096;

/// Most bytes read from one connection per wake: a client streaming an endless line does not
/// keep the board from its other inputs.
const READ_PER_WAKE: usize = 64 * 1024;

/// Most clients served at once (the runner uses one or two). Further clients wait in the
/// listen backlog until one closes, instead of each costing the board a descriptor.
const MAX_CONNECTIONS: usize = 32;

/// The listening control socket and its connections; the socket file is removed on drop.
pub struct ControlServer {
    path: PathBuf,
    listener: UnixListener,
    connections: Vec<Connection>,
    /// `accept` ran out of descriptors (or memory): the listener is not waited on until a client
    /// closes or the board has another input, so a full descriptor table does not keep the board
    /// spinning on a listener it cannot accept from.
    accept_paused: bool,
    /// The last `accept` failed (its error is logged once, not at each retry).
    accept_failing: bool,
}

/// One client of the control socket.
struct Connection {
    stream: UnixStream,
    /// Bytes received and not yet taken as a request (never more than a request line).
    pending: Vec<u8>,
    /// Inside a line that was too long: dropped up to its newline.
    skipping: bool,
    /// The request handed to the main loop, waiting for its reply.
    awaiting: Option<Receiver<String>>,
    /// The client has closed its side: answer what is pending, then close.
    eof: bool,
    /// Closed on error: removed at the next sweep.
    dead: bool,
}

impl ControlServer {
    pub fn start(path: &Path) -> std::io::Result<ControlServer> {
        // A stale socket file from a killed board would make bind fail with EADDRINUSE.
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        // Bind (and listen) under a temporary name, then rename: whoever sees the socket file can
        // connect at once. A socket file appears at bind() but connections are refused until
        // listen(), and a runner polling for the file would race with that.
        let mut staging = path.as_os_str().to_owned();
        staging.push(format!(".{}.tmp", std::process::id()));
        let staging = PathBuf::from(staging);
        let _ = std::fs::remove_file(&staging);
        let listener = UnixListener::bind(&staging)?;
        listener.set_nonblocking(true)?;
        std::fs::rename(&staging, path)?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            listener,
            connections: Vec::new(),
            accept_paused: false,
            accept_failing: false,
        })
    }

    /// New clients are taken: there is room for one, and `accept` is not paused.
    fn accepting(&self) -> bool {
        self.connections.len() < MAX_CONNECTIONS && !self.accept_paused
    }

    /// The board had another input: try `accept` again if it had failed.
    pub(crate) fn resume_accepting(&mut self) {
        self.accept_paused = false;
    }

    /// What to wait on: the listener while new clients are taken, and each connection with no
    /// request in hand.
    pub(crate) fn wait_on(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        let listener = self.accepting().then(|| self.listener.as_fd());
        listener.into_iter().chain(
            self.connections
                .iter()
                .filter(|c| c.awaiting.is_none() && !c.eof && !c.dead)
                .map(|c| c.stream.as_fd()),
        )
    }

    /// The descriptors of [`ControlServer::wait_on`] at these positions are readable: accept
    /// clients, read requests, and hand each to the main loop (`inputs`).
    pub(crate) fn ready(&mut self, readable: &[bool], inputs: &mut Vec<Input>) {
        // `wait_on` put the listener first exactly when `accepting()`: nothing changes the
        // connections or the pause between the wait and this call.
        let (listener_readable, readable) = if self.accepting() {
            (
                readable.first().copied().unwrap_or(false),
                readable.get(1..).unwrap_or_default(),
            )
        } else {
            (false, readable)
        };
        let waited = self
            .connections
            .iter_mut()
            .filter(|c| c.awaiting.is_none() && !c.eof && !c.dead);
        for (conn, readable) in waited.zip(readable) {
            if *readable {
                conn.receive();
            }
        }
        if listener_readable {
            self.accept();
        }
        self.serve(inputs);
    }

    /// Write the replies the main loop has given, and take the next request of each connection
    /// that has one.
    pub(crate) fn serve(&mut self, inputs: &mut Vec<Input>) {
        for conn in &mut self.connections {
            conn.serve(inputs);
        }
        let open = self.connections.len();
        self.connections.retain(|c| !c.finished());
        if self.connections.len() < open {
            self.accept_paused = false;
        }
    }

    fn accept(&mut self) {
        while self.connections.len() < MAX_CONNECTIONS {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    self.accept_failing = false;
                    if stream.set_nonblocking(true).is_ok() {
                        self.connections.push(Connection {
                            stream,
                            pending: Vec::new(),
                            skipping: false,
                            awaiting: None,
                            eof: false,
                            dead: false,
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE, ENFILE, ENOMEM: the client stays in the backlog until a client
                    // closes or the board has another input.
                    if !self.accept_failing {
                        eprintln!("vdk: control socket: accept failed: {e}; trying again later");
                    }
                    self.accept_failing = true;
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }
}

impl Connection {
    /// Closed on error, or closed by the client with everything answered.
    fn finished(&self) -> bool {
        self.dead || (self.eof && self.awaiting.is_none() && self.pending.is_empty())
    }

    /// Read what the client has sent, up to one request line (a line too long is answered and
    /// dropped as it arrives, never kept).
    fn receive(&mut self) {
        let mut buf = [0u8; READ_CHUNK];
        let mut budget = READ_PER_WAKE;
        while !self.dead && budget > 0 && !self.pending.contains(&b'\n') {
            let room = (MAX_REQUEST + 1 - self.pending.len()).min(READ_CHUNK);
            match self.stream.read(&mut buf[..room]) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let mut got = &buf[..n];
                    if self.skipping {
                        match got.iter().position(|b| *b == b'\n') {
                            Some(end) => {
                                self.skipping = false;
                                got = &got[end + 1..];
                            }
                            None => continue,
                        }
                    }
                    self.pending.extend_from_slice(got);
                    if self.pending.len() > MAX_REQUEST && !self.pending.contains(&b'\n') {
                        self.pending.clear();
                        self.skipping = true;
                        self.reply("error request too long");
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
    }

    fn serve(&mut self, inputs: &mut Vec<Input>) {
        if self.dead {
            return;
        }
        if let Some(reply) = &self.awaiting {
            let text = match reply.try_recv() {
                Ok(text) => text,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => "error board not responding".to_string(),
            };
            self.awaiting = None;
            self.reply(&text);
            if self.dead {
                return;
            }
        }
        // A last request may end with the connection instead of a newline.
        let end = self
            .pending
            .iter()
            .position(|b| *b == b'\n')
            .or_else(|| (self.eof && !self.pending.is_empty()).then(|| self.pending.len() - 1));
        let Some(end) = end else {
            return;
        };
        let line: Vec<u8> = self.pending.drain(..=end).collect();
        let line = String::from_utf8_lossy(&line).trim().to_string();
        let (tx, rx) = mpsc::channel();
        inputs.push(Input::Control(ControlRequest { line, reply: tx }));
        self.awaiting = Some(rx);
    }

    /// Write one reply line, without waiting. Replies are short: a client that lets its socket
    /// buffer fill up (hundreds of replies it has not read) loses its connection rather than
    /// stall the board.
    fn reply(&mut self, text: &str) {
        if self
            .stream
            .write_all(format!("{text}\n").as_bytes())
            .is_err()
        {
            self.dead = true;
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
