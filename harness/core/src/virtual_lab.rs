//! Virtual boards: a virtual DK process per node, attached to the run's air hub, reached through a
//! PTY link (opened with the same serial code as a real DK) and flashed through its control socket
//! by [`VirtualProbe`].

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ot_hil_air::BoardTap;
use ot_hil_board::control::{ControlParseError, ControlReply, ControlRequest};
use ot_hil_lab::flash::{FirmwareImage, FlashError, FlashOutcome, Flasher};

use crate::vdk_server::{ForkedBoard, LaunchError, Launching, VdkServer};

/// How long a virtual DK may take to create its PTY link and control socket.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one control request may take (a flash reboots the model).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a control request to a virtual DK got no reply, by the stage that failed.
#[derive(Debug)]
pub(crate) enum ControlError {
    Connect(std::io::Error),
    Send(std::io::Error),
    Receive(std::io::Error),
    /// The board answered `error`: its message.
    Refused(String),
    /// The board answered something that is not a reply.
    BadReply(ControlParseError),
}

impl ControlError {
    /// The socket error; a refusal is not one, so callers handle it first.
    pub(crate) fn into_io(self) -> std::io::Error {
        match self {
            ControlError::Connect(e) | ControlError::Send(e) | ControlError::Receive(e) => e,
            ControlError::Refused(reply) => std::io::Error::other(reply),
            ControlError::BadReply(e) => std::io::Error::other(e),
        }
    }
}

/// Send one request to a virtual DK's control socket and read its one-line reply: the text
/// after `ok`, or [`ControlError::Refused`] with the board's error message.
pub(crate) fn control_request(
    control: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<String, ControlError> {
    let stream = UnixStream::connect(control).map_err(ControlError::Connect)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(ControlError::Send)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(ControlError::Send)?;
    (&stream)
        .write_all(format!("{}\n", request.encode()).as_bytes())
        .map_err(ControlError::Send)?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(ControlError::Receive)?;
    match ControlReply::parse(&reply) {
        Ok(ControlReply::Ok(text)) => Ok(text),
        Ok(ControlReply::Error(message)) => Err(ControlError::Refused(message)),
        Err(e) => Err(ControlError::BadReply(e)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VirtualBoardError {
    #[error("failed to start virtual DK for board {board} (`{command}`): {source}")]
    Spawn {
        board: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("virtual DK of board {board} exited before it was ready ({status}); see {log}")]
    Exited {
        board: String,
        status: String,
        log: String,
    },
    #[error("virtual DK of board {board} did not create {path} within {timeout:?}")]
    NotReady {
        board: String,
        path: PathBuf,
        timeout: Duration,
    },
}

/// The command that starts a virtual DK: `<program> <args..> ...` (normally `<ot-hil exe> vdk`),
/// or, with a [`VdkServer`], a fork of `<program> vdk-server`.
#[derive(Debug, Clone)]
pub struct VdkCommand {
    pub program: PathBuf,
    /// Arguments before the vdk options (e.g. `["vdk"]`).
    pub args: Vec<OsString>,
    /// Boards are forked by this server instead of executed (`program` must be ot-hil).
    pub fork_server: Option<VdkServer>,
}

impl VdkCommand {
    /// Boards of the ot-hil executable at `program`, forked by its `vdk-server`.
    pub fn ot_hil(program: PathBuf) -> VdkCommand {
        VdkCommand {
            fork_server: Some(VdkServer::new(program.clone())),
            program,
            args: vec!["vdk".into()],
        }
    }

    /// Boards of this executable (see [`VdkCommand::ot_hil`]).
    pub fn current_exe() -> std::io::Result<VdkCommand> {
        Ok(Self::ot_hil(std::env::current_exe()?))
    }
}

/// Execute `cmd` with a board's `options` (the way without a virtual DK server).
fn execute(
    cmd: &VdkCommand,
    options: &[OsString],
    log: Option<std::fs::File>,
) -> std::io::Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .args(options)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    crate::board_process::contain_virtual_dk(&mut command);
    match log {
        Some(f) => {
            let f2 = f.try_clone()?;
            command.stdout(f).stderr(f2);
        }
        None => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    command.spawn()
}

/// The process of a virtual DK: executed by the runner, or forked by the virtual DK server
/// (asked for, then answered).
enum BoardProcess {
    Executed(tokio::process::Child),
    Launching(Box<Fallback>, Launching),
    Forked(ForkedBoard),
    /// Neither: the server refused it or never answered.
    NotStarted,
}

/// How to execute a board instead, should its server turn out to be gone.
struct Fallback {
    cmd: VdkCommand,
    options: Vec<OsString>,
    log: Option<std::fs::File>,
}

impl Fallback {
    /// Execute the board, the server being unavailable for `why` (logged once per server).
    fn execute(self, why: &LaunchError) -> std::io::Result<BoardProcess> {
        if self
            .cmd
            .fork_server
            .as_ref()
            .is_some_and(VdkServer::first_fallback)
        {
            tracing::warn!("{why}: virtual DKs are executed one by one instead");
        }
        self.execute_now()
    }

    fn execute_now(self) -> std::io::Result<BoardProcess> {
        execute(&self.cmd, &self.options, self.log).map(BoardProcess::Executed)
    }

    fn describe(&self) -> String {
        format!("{} {:?}", self.cmd.program.display(), self.cmd.args)
    }
}

impl BoardProcess {
    fn id(&self) -> Option<u32> {
        match self {
            BoardProcess::Executed(child) => child.id(),
            BoardProcess::Forked(board) => Some(board.pid),
            BoardProcess::Launching(..) | BoardProcess::NotStarted => None,
        }
    }

    /// How it ended, if it has.
    fn exit_status(&mut self) -> Option<String> {
        match self {
            BoardProcess::Executed(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                _ => None,
            },
            // Only its parent, the server, can read the status: its log says why.
            BoardProcess::Forked(board) => board
                .has_exited()
                .then(|| "its exit status stays with vdk-server".to_string()),
            BoardProcess::Launching(..) | BoardProcess::NotStarted => None,
        }
    }

    /// SIGTERM, so the board removes its link and socket before it exits.
    fn terminate(&self) {
        match self {
            BoardProcess::Executed(child) => {
                if let Some(pid) = child.id() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            BoardProcess::Forked(board) => board.terminate(),
            BoardProcess::Launching(..) | BoardProcess::NotStarted => {}
        }
    }

    async fn exited(&mut self) {
        match self {
            BoardProcess::Executed(child) => {
                let _ = child.wait().await;
            }
            BoardProcess::Forked(board) => board.exited().await,
            BoardProcess::Launching(..) | BoardProcess::NotStarted => {}
        }
    }
}

/// A running virtual DK process. Killed on drop.
pub struct VirtualDk {
    pub board: String,
    pub tty: PathBuf,
    pub control: PathBuf,
    /// On a case clock: the clock's count of the requests sent to its control socket.
    pub tap: Option<BoardTap>,
    /// Its process group (led by the process), killed as a whole when the board is dropped.
    group: Option<u32>,
    /// Where its output goes, named when it exits before it is ready.
    log: Option<PathBuf>,
    process: BoardProcess,
}

impl Drop for VirtualDk {
    fn drop(&mut self) {
        // A forked board known to have exited leaves an empty group (a board starts no process
        // of its own), whose number may already be another's.
        let gone = matches!(&self.process, BoardProcess::Forked(board) if board.has_exited());
        if let Some(group) = self.group.take().filter(|_| !gone) {
            crate::board_process::kill_group(group);
        }
    }
}

impl VirtualDk {
    /// Start a virtual DK named `board` with files in `dir`; its stderr goes to `log`. With
    /// `clocked_seed` its timers run on the hub's case clock and its randomness comes from that
    /// seed.
    pub async fn spawn(
        cmd: &VdkCommand,
        hub_socket: &Path,
        dir: &Path,
        board: &str,
        log: Option<&Path>,
        clocked_seed: Option<u64>,
    ) -> Result<VirtualDk, VirtualBoardError> {
        let mut dk = Self::start(cmd, hub_socket, dir, board, log, clocked_seed)?;
        dk.ready().await?;
        Ok(dk)
    }

    /// Start the process of [`VirtualDk::spawn`] without waiting for it to be ready: boards
    /// started one after another this way come up at the same time, then [`VirtualDk::ready`]
    /// waits for each.
    pub fn start(
        cmd: &VdkCommand,
        hub_socket: &Path,
        dir: &Path,
        board: &str,
        log: Option<&Path>,
        clocked_seed: Option<u64>,
    ) -> Result<VirtualDk, VirtualBoardError> {
        let tty = dir.join(format!("{board}.tty"));
        let control = dir.join(format!("{board}.ctl"));
        let mut options: Vec<OsString> = vec![
            "--air".into(),
            hub_socket.into(),
            "--pty-link".into(),
            tty.clone().into(),
            "--control".into(),
            control.clone().into(),
        ];
        if let Some(seed) = clocked_seed {
            options.extend(["--clock", "virtual", "--seed"].map(OsString::from));
            options.push(seed.to_string().into());
        }
        let spawn_err = |source: std::io::Error| VirtualBoardError::Spawn {
            board: board.to_string(),
            command: format!("{} {:?}", cmd.program.display(), cmd.args),
            source,
        };
        let log_file = match log {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(spawn_err)?;
                }
                Some(std::fs::File::create(path).map_err(spawn_err)?)
            }
            None => None,
        };
        let fallback = Fallback {
            cmd: cmd.clone(),
            options,
            log: log_file,
        };
        let launch = cmd
            .fork_server
            .as_ref()
            .map(|server| server.launch(fallback.options.clone(), fallback.log.as_ref()));
        let process = match launch {
            Some(Ok(launching)) => BoardProcess::Launching(Box::new(fallback), launching),
            Some(Err(e @ (LaunchError::Refused(_) | LaunchError::Lost(_)))) => {
                return Err(spawn_err(std::io::Error::other(e.to_string())));
            }
            Some(Err(e @ LaunchError::Unavailable(_))) => {
                fallback.execute(&e).map_err(spawn_err)?
            }
            None => fallback.execute_now().map_err(spawn_err)?,
        };
        // From here on dropping the board (an error, an aborted case) kills its process group.
        Ok(VirtualDk {
            board: board.to_string(),
            group: process.id(),
            tty,
            control,
            tap: None,
            log: log.map(Path::to_path_buf),
            process,
        })
    }

    /// The server's answer for a board asked of it (or its execution instead, should the
    /// server be gone).
    async fn launched(&mut self) -> Result<(), VirtualBoardError> {
        let process = std::mem::replace(&mut self.process, BoardProcess::NotStarted);
        let (fallback, launching) = match process {
            BoardProcess::Launching(fallback, launching) => (fallback, launching),
            other => {
                self.process = other;
                return Ok(());
            }
        };
        let command = fallback.describe();
        let spawn_err = |source: std::io::Error| VirtualBoardError::Spawn {
            board: self.board.clone(),
            command,
            source,
        };
        let process = match launching.started().await {
            Ok(board) => BoardProcess::Forked(board),
            Err(e @ (LaunchError::Refused(_) | LaunchError::Lost(_))) => {
                return Err(spawn_err(std::io::Error::other(e.to_string())));
            }
            Err(e @ LaunchError::Unavailable(_)) => fallback.execute(&e).map_err(spawn_err)?,
        };
        self.group = process.id();
        self.process = process;
        Ok(())
    }

    /// Wait until a [`VirtualDk::start`]ed board has made its console link and control socket.
    pub async fn ready(&mut self) -> Result<(), VirtualBoardError> {
        self.launched().await?;
        let log_text = self
            .log
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no log)".into());
        let board = self.board.as_str();
        let (tty, control, process) = (&self.tty, &self.control, &mut self.process);
        // The process creates both files during start-up; nothing signals it, so look for them.
        let started = Instant::now();
        loop {
            if let Some(status) = process.exit_status() {
                return Err(VirtualBoardError::Exited {
                    board: board.to_string(),
                    status,
                    log: log_text,
                });
            }
            if tty.exists() && control.exists() {
                break;
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                let missing = if tty.exists() { control } else { tty };
                return Err(VirtualBoardError::NotReady {
                    board: board.to_string(),
                    path: missing.clone(),
                    timeout: STARTUP_TIMEOUT,
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    /// The socket its radio is bound to on the air (the hub's name for it).
    pub fn radio(&self) -> Option<PathBuf> {
        let dir = self.control.parent()?;
        Some(ot_hil_board::air_socket::virtual_dk_radio(dir, self.pid()?))
    }

    /// A flasher for this board.
    pub fn probe(&self) -> VirtualProbe {
        VirtualProbe {
            board: self.board.clone(),
            control: self.control.clone(),
            tap: self.tap.clone(),
        }
    }

    /// Stop the process (SIGTERM so it removes its link and socket, then SIGKILL to its whole
    /// group, when it is dropped here).
    pub async fn stop(mut self) {
        self.process.terminate();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.process.exited()).await;
    }
}

/// The virtual probe: flashes a virtual DK through its control socket (`flash`, `image-hash`, `reset`).
#[derive(Debug, Clone)]
pub struct VirtualProbe {
    pub board: String,
    pub control: PathBuf,
    pub tap: Option<BoardTap>,
}

impl VirtualProbe {
    fn request(&self, request: ControlRequest) -> Result<String, FlashError> {
        let probe_err = |message: String| FlashError::Probe {
            board: self.board.clone(),
            message,
        };
        if let Some(tap) = &self.tap {
            tap.control_sent();
        }
        control_request(&self.control, &request, CONTROL_TIMEOUT).map_err(|e| match e {
            ControlError::Connect(e) => probe_err(format!("{}: {e}", self.control.display())),
            ControlError::Send(e) => probe_err(e.to_string()),
            ControlError::Receive(e) => probe_err(format!("no reply to `{request}`: {e}")),
            ControlError::BadReply(e) => probe_err(format!("`{request}`: {e}")),
            ControlError::Refused(message) => FlashError::Failed {
                board: self.board.clone(),
                message: if message.is_empty() {
                    format!("`{request}` refused without a reason")
                } else {
                    message
                },
            },
        })
    }
}

impl Flasher for VirtualProbe {
    fn current_image(&mut self) -> Result<Option<String>, FlashError> {
        let hash = self.request(ControlRequest::ImageHash)?;
        Ok(if hash == "none" || hash.is_empty() {
            None
        } else {
            Some(hash)
        })
    }

    fn flash(&mut self, image: &FirmwareImage) -> Result<FlashOutcome, FlashError> {
        if self.current_image()?.as_deref() == Some(image.sha256.as_str()) {
            self.reset()?;
            return Ok(FlashOutcome::AlreadyCurrent);
        }
        let path = std::path::absolute(&image.path).unwrap_or_else(|_| image.path.clone());
        let hash = self.request(ControlRequest::Flash(path))?;
        if hash != image.sha256 {
            return Err(FlashError::Failed {
                board: self.board.clone(),
                message: format!(
                    "board reports image {hash} after flashing, expected {}",
                    image.sha256
                ),
            });
        }
        Ok(FlashOutcome::Flashed)
    }

    fn reset(&mut self) -> Result<(), FlashError> {
        self.request(ControlRequest::Reset).map(|_| ())
    }
}
