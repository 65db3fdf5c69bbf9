//! The runner's side of the virtual DK server (`ot-hil vdk-server`): one process, started when a
//! run starts (or on the first board asked for), that forks every virtual DK instead of the runner executing the
//! program once per board (start-up of a forked board costs a fraction of an executed one's; the
//! server's own documentation says where the difference goes).
//!
//! A board started this way is not a child of the runner: the runner knows it by its pid and a
//! pidfd (readable once it has exited) and kills its process group as for an executed board.
//! Where the server cannot be started or is gone (an old kernel without pidfds, a server
//! killed by hand), boards are executed as before: a run does not depend on it.
//!
//! The server lives as long as something holds it (the command that starts boards, and every
//! board it started); when the last holder lets go, its socket closes and it exits, and its
//! boards with it (their parent-death signal).

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use ot_hil_board::launch::{self, LaunchReply, LaunchRequest, TITLE_ROOM};
use tokio::io::unix::AsyncFd;

/// How long the server may take to answer a launch request.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A running `ot-hil vdk-server`.
struct Server {
    /// Requests and replies strictly alternate on it: held for one request and its reply.
    socket: Mutex<OwnedFd>,
    /// A request went unanswered: replies may be out of step, so none is asked for again.
    lost: AtomicBool,
}

impl Server {
    fn start(program: &PathBuf) -> std::io::Result<Server> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let mut command = std::process::Command::new(program);
        command
            .arg("vdk-server")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg("--title-room")
            .arg(" ".repeat(TITLE_ROOM))
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .process_group(0);
        // The parent-death signal follows the thread that started the process. Boards may be
        // started from any thread (a short-lived one too), so the server is started from a thread
        // of its own, which waits for it and so lives exactly as long as it does.
        let (started, spawned) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("vdk-server".into())
            .spawn(move || match command.spawn() {
                Ok(mut child) => {
                    let _ = started.send(Ok(()));
                    let _ = child.wait();
                }
                Err(e) => {
                    let _ = started.send(Err(e));
                }
            })?;
        spawned
            .recv()
            .map_err(|_| std::io::Error::other("the thread starting it ended"))??;
        Ok(Server {
            socket: Mutex::new(ours),
            lost: AtomicBool::new(false),
        })
    }

    fn launch(
        &self,
        args: Vec<OsString>,
        log: Option<&File>,
    ) -> Result<(u32, OwnedFd), LaunchError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(LaunchError::Unavailable(
                "an earlier request got no answer".into(),
            ));
        }
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        let request = LaunchRequest { args }.emit();
        // Until the request is sent, nothing has started: the board may be executed instead.
        launch::send(socket.as_fd(), &request, log.map(|f| f.as_fd()))
            .map_err(|e| LaunchError::Unavailable(e.to_string()))?;
        // From here the server may have started the board whatever goes wrong: executing it
        // too would start it twice, and a reply left unread would answer the next request. So
        // this board fails, and the server takes no more requests (its boards run on).
        let lost = |why: String| {
            self.lost.store(true, Ordering::Relaxed);
            LaunchError::Lost(why)
        };
        // A fork takes well under a millisecond; a server that does not answer (stopped, or
        // stuck) must not hold the run.
        let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let left_ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(left_ms)) {
                Ok(0) => return Err(lost(format!("no reply within {REPLY_TIMEOUT:?}"))),
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(lost(e.to_string())),
            }
        }
        let (reply, pidfd) = match launch::recv(socket.as_fd()) {
            Ok(received) => received,
            // Reset: the server exited with the request unread (see the empty reply below).
            Err(e) if e.raw_os_error() == Some(nix::libc::ECONNRESET) => (Vec::new(), None),
            Err(e) => return Err(lost(e.to_string())),
        };
        drop(socket);
        if reply.is_empty() {
            // The server exited, and its boards with it: nothing of this request runs.
            return Err(LaunchError::Unavailable("it has exited".into()));
        }
        match LaunchReply::parse(&reply).map_err(|e| lost(e.to_string()))? {
            LaunchReply::Started { pid } => match pidfd {
                Some(pidfd) => Ok((pid, pidfd)),
                None => {
                    crate::board_process::kill_group(pid);
                    Err(LaunchError::Refused(format!(
                        "board {pid} came without its pidfd (out of descriptors?)"
                    )))
                }
            },
            LaunchReply::Failed(message) => Err(LaunchError::Refused(message)),
        }
    }
}

/// Why the server started no board.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The server cannot be started, or is gone: boards can be executed instead.
    #[error("vdk-server unavailable: {0}")]
    Unavailable(String),
    /// The server is up and refused this board (its reason).
    #[error("vdk-server: {0}")]
    Refused(String),
    /// The request was sent and no answer came: the board may have started, so it is not
    /// executed instead; the server takes no more requests (later boards are executed).
    #[error("vdk-server did not answer: {0}")]
    Lost(String),
}

/// The server of one program, started when the first board is asked for. Clones share it.
#[derive(Clone)]
pub struct VdkServer {
    program: PathBuf,
    started: Arc<OnceLock<Result<Arc<Server>, String>>>,
    fallback_noted: Arc<AtomicBool>,
}

impl std::fmt::Debug for VdkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VdkServer")
            .field("program", &self.program)
            .field("started", &self.started.get().map(|s| s.is_ok()))
            .finish()
    }
}

impl VdkServer {
    /// `<program> vdk-server`, not started yet.
    pub fn new(program: PathBuf) -> VdkServer {
        VdkServer {
            program,
            started: Arc::new(OnceLock::new()),
            fallback_noted: Arc::default(),
        }
    }

    /// Start the server now rather than on the first board, so that the first cases of a run do
    /// not wait for it.
    pub fn start_now(&self) -> Result<(), LaunchError> {
        self.server().map(|_| ())
    }

    fn server(&self) -> Result<&Arc<Server>, LaunchError> {
        self.started
            .get_or_init(|| {
                Server::start(&self.program)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| LaunchError::Unavailable(format!("cannot start it: {e}")))
    }

    /// Fork a virtual DK with these options (what follows `vdk`); its stdout and stderr go to
    /// `log`, or nowhere. Must be called inside a tokio runtime (the board's exit is watched by
    /// it).
    pub fn launch(
        &self,
        args: Vec<OsString>,
        log: Option<&File>,
    ) -> Result<ForkedBoard, LaunchError> {
        let server = self.server()?;
        let (pid, pidfd) = server.launch(args, log)?;
        // SAFETY: the pidfd is owned by the AsyncFd and closed only when it is dropped.
        #[allow(unsafe_code)]
        let exit = unsafe { AsyncFd::register(pidfd) }.map_err(|e| {
            // Not watched, so not kept: the board goes now, with its group.
            crate::board_process::kill_group(pid);
            LaunchError::Refused(format!("cannot watch board {pid}: {}", e.into_parts().1))
        })?;
        Ok(ForkedBoard {
            pid,
            exit,
            _server: server.clone(),
        })
    }

    /// Whether a fall-back to executed boards has been logged yet (once per server).
    pub(crate) fn first_fallback(&self) -> bool {
        !self.fallback_noted.swap(true, Ordering::Relaxed)
    }
}

/// A virtual DK forked by the server.
pub struct ForkedBoard {
    pub pid: u32,
    /// Its pidfd: readable once the board has exited.
    exit: AsyncFd<OwnedFd>,
    /// The server must outlive its boards (they die with it).
    _server: Arc<Server>,
}

impl ForkedBoard {
    pub fn has_exited(&self) -> bool {
        let mut fds = [PollFd::new(self.exit.get_ref().as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    /// Send SIGTERM through the pidfd: it reaches this board, even if its pid has been reused
    /// since it exited.
    pub fn terminate(&self) {
        // SAFETY: pidfd_send_signal takes a pidfd, a signal number, a null siginfo and flags.
        #[allow(unsafe_code)]
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_pidfd_send_signal,
                self.exit.get_ref().as_raw_fd(),
                nix::libc::SIGTERM,
                std::ptr::null::<nix::libc::siginfo_t>(),
                0,
            );
        }
    }

    /// Wait until the board has exited.
    pub async fn exited(&self) {
        let _ = self.exit.readable().await;
    }
}
