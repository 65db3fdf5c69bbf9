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

/// The command that starts a virtual DK: `<program> <args..> vdk ...` (normally `<ot-hil exe> vdk`).
#[derive(Debug, Clone)]
pub struct VdkCommand {
    pub program: PathBuf,
    /// Arguments before the vdk options (e.g. `["vdk"]`).
    pub args: Vec<OsString>,
}

impl VdkCommand {
    /// `<this executable> vdk`.
    pub fn current_exe() -> std::io::Result<VdkCommand> {
        Ok(VdkCommand {
            program: std::env::current_exe()?,
            args: vec!["vdk".into()],
        })
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
    child: tokio::process::Child,
}

impl Drop for VirtualDk {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
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
        let mut command = tokio::process::Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .arg("--air")
            .arg(hub_socket)
            .arg("--pty-link")
            .arg(&tty)
            .arg("--control")
            .arg(&control)
            .args(
                clocked_seed
                    .map(|seed| {
                        ["--clock", "virtual", "--seed"]
                            .map(String::from)
                            .into_iter()
                            .chain([seed.to_string()])
                    })
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        crate::board_process::contain_virtual_dk(&mut command);
        let spawn_err = |source: std::io::Error| VirtualBoardError::Spawn {
            board: board.to_string(),
            command: format!("{} {:?}", cmd.program.display(), cmd.args),
            source,
        };
        match log {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(spawn_err)?;
                }
                let f = std::fs::File::create(path).map_err(spawn_err)?;
                let f2 = f.try_clone().map_err(spawn_err)?;
                command.stdout(f).stderr(f2);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = command.spawn().map_err(spawn_err)?;
        // From here on dropping the board (an error, an aborted case) kills its process group.
        Ok(VirtualDk {
            board: board.to_string(),
            group: child.id(),
            tty,
            control,
            tap: None,
            log: log.map(Path::to_path_buf),
            child,
        })
    }

    /// Wait until a [`VirtualDk::start`]ed board has made its console link and control socket.
    pub async fn ready(&mut self) -> Result<(), VirtualBoardError> {
        let log_text = self
            .log
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(no log)".into());
        let board = self.board.as_str();
        let (tty, control, child) = (&self.tty, &self.control, &mut self.child);
        // The process creates both files during start-up; nothing signals it, so look for them.
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(VirtualBoardError::Exited {
                    board: board.to_string(),
                    status: status.to_string(),
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
        self.child.id()
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
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        }
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
