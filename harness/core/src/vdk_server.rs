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

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, Shutdown, SockFlag, SockType, shutdown, socketpair};
use ot_hil_board::launch::{self, LaunchReply, LaunchRequest, TITLE_ROOM};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

/// How long the server may take to answer a launch request.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What came back for one request: the reply datagram (empty: the server has exited) and the
/// descriptor it carried.
type Answer = std::io::Result<(Vec<u8>, Option<OwnedFd>)>;

/// The requests sent and not answered yet, oldest first. The server answers in the order it
/// was asked, so the next reply is the front one's.
#[derive(Default)]
struct Waiting {
    queue: VecDeque<oneshot::Sender<Answer>>,
    /// The server has exited: nothing more is sent.
    gone: bool,
}

/// A running `ot-hil vdk-server`.
///
/// Requests are pipelined: a case sends one for each of its boards and then waits for the
/// answers, and cases running at once do the same, so the server forks one board after another
/// with no round trip between them. A thread of its own reads the replies and hands each to the
/// request it answers; nothing on the runner's async threads waits for the server.
struct Server {
    socket: OwnedFd,
    /// Locked for each send, so the queue's order is the order of the requests on the socket.
    waiting: Arc<Mutex<Waiting>>,
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
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        let replies = ours.try_clone()?;
        let routed = waiting.clone();
        std::thread::Builder::new()
            .name("vdk-server-replies".into())
            .stack_size(64 * 1024)
            .spawn(move || route_replies(&replies, &routed))?;
        Ok(Server {
            socket: ours,
            waiting,
            lost: AtomicBool::new(false),
        })
    }

    /// Send a launch request; its answer will come to the returned [`Pending`].
    fn request(&self, args: Vec<OsString>, log: Option<&File>) -> Result<Pending, LaunchError> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(LaunchError::Unavailable(
                "an earlier request got no answer".into(),
            ));
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.gone {
            return Err(LaunchError::Unavailable("it has exited".into()));
        }
        let request = LaunchRequest { args }.emit();
        // Until the request is sent, nothing has started: the board may be executed instead.
        // Not waiting for room (an async worker must not block): a full buffer, over a hundred
        // requests waiting, means the server is stopped or far behind, and this board is
        // executed instead.
        launch::try_send(self.socket.as_fd(), &request, log.map(|f| f.as_fd()))
            .map_err(|e| LaunchError::Unavailable(e.to_string()))?;
        let (answer, answered) = oneshot::channel();
        waiting.queue.push_back(answer);
        Ok(Pending {
            answered: Some(answered),
            sent: Instant::now(),
        })
    }

    /// Wait for the answer to a request: the board's pid and pidfd.
    async fn answer(&self, pending: &mut Pending) -> Result<(u32, OwnedFd), LaunchError> {
        // From the send on, the server may have started the board whatever goes wrong:
        // executing it too would start it twice. So this board fails, and the server takes no
        // more requests (its boards run on; the one it may yet start is killed, by `pending`).
        let lost = |why: String| {
            self.lost.store(true, Ordering::Relaxed);
            LaunchError::Lost(why)
        };
        let Some(answered) = pending.answered.as_mut() else {
            return Err(lost("asked for twice".into()));
        };
        // A fork takes well under a millisecond; a server that does not answer (stopped, or
        // stuck) must not hold the run.
        let left = REPLY_TIMEOUT.saturating_sub(pending.sent.elapsed());
        let (reply, pidfd) = match tokio::time::timeout(left, answered).await {
            Err(_) => return Err(lost(format!("no reply within {REPLY_TIMEOUT:?}"))),
            Ok(Err(_)) => return Err(lost("its replies are no longer read".into())),
            Ok(Ok(Err(e))) => return Err(lost(e.to_string())),
            Ok(Ok(Ok(received))) => received,
        };
        // Answered: from here this request's board is the caller's.
        pending.answered = None;
        if reply.is_empty() {
            // The server exited, and its boards with it: nothing of this request runs.
            return Err(LaunchError::Unavailable("it has exited".into()));
        }
        let parsed = LaunchReply::parse(&reply);
        match parsed {
            Ok(LaunchReply::Started { pid }) => match pidfd {
                Some(pidfd) => Ok((pid, pidfd)),
                None => {
                    crate::board_process::kill_group(pid);
                    Err(LaunchError::Refused(format!(
                        "board {pid} came without its pidfd (out of descriptors?)"
                    )))
                }
            },
            Ok(LaunchReply::Failed(message)) => Err(LaunchError::Refused(message)),
            Err(e) => {
                // Not a reply: whatever came with it goes.
                if let Some(pidfd) = &pidfd {
                    kill_by_pidfd(pidfd);
                }
                Err(lost(e.to_string()))
            }
        }
    }
}

/// A request sent and not answered yet. Dropped before its answer is taken (an aborted case,
/// a time limit), the board it asks for is killed: now, if the answer has come, or by the
/// reply thread when it comes.
struct Pending {
    answered: Option<oneshot::Receiver<Answer>>,
    sent: Instant,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(mut answered) = self.answered.take() else {
            return;
        };
        // Closed: an answer still to come cannot be given, and the reply thread kills its board.
        answered.close();
        if let Ok(Ok((reply, pidfd))) = answered.try_recv() {
            abandon(&reply, pidfd.as_ref());
        }
    }
}

/// Kill the board of an answer nobody takes: through its pidfd, or its group when it came
/// without one.
fn abandon(reply: &[u8], pidfd: Option<&OwnedFd>) {
    match (pidfd, LaunchReply::parse(reply)) {
        (Some(pidfd), _) => kill_by_pidfd(pidfd),
        (None, Ok(LaunchReply::Started { pid })) => crate::board_process::kill_group(pid),
        (None, _) => {}
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The reply thread holds the socket too: shut it down, so the server sees its end (and
        // exits, with its boards), and the thread sees the server's.
        let _ = shutdown(self.socket.as_raw_fd(), Shutdown::Both);
    }
}

/// Hand each reply to the oldest request waiting, until the server's end closes; then every
/// request still waiting learns that it has exited (an empty reply).
fn route_replies(socket: &OwnedFd, waiting: &Mutex<Waiting>) {
    loop {
        let received = match launch::recv(socket.as_fd()) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // Reset: the server exited with requests unread.
            Err(e) if e.raw_os_error() == Some(nix::libc::ECONNRESET) => Ok((Vec::new(), None)),
            other => other,
        };
        let mut waiting = waiting.lock().unwrap_or_else(|e| e.into_inner());
        match received {
            // The server's end: every request waiting learns it has exited.
            Ok((reply, _)) if reply.is_empty() => {
                waiting.gone = true;
                for answer in waiting.queue.drain(..) {
                    let _ = answer.send(Ok((Vec::new(), None)));
                }
                return;
            }
            // The socket cannot be read: the server may still be starting these boards, so
            // they fail rather than be executed, and nothing more is asked of it.
            Err(e) if e.raw_os_error().is_some() => {
                tracing::warn!("vdk-server: replies cannot be read: {e}");
                waiting.gone = true;
                for answer in waiting.queue.drain(..) {
                    let _ = answer.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                }
                return;
            }
            // A reply, or a datagram that is not one (too long): the oldest request's.
            received => {
                let Some(answer) = waiting.queue.pop_front() else {
                    // A reply nobody asked for: the server is out of step (or not the server).
                    if let Ok((reply, pidfd)) = &received {
                        abandon(reply, pidfd.as_ref());
                    }
                    continue;
                };
                drop(waiting);
                if let Err(Ok((reply, pidfd))) = answer.send(received) {
                    // Its case gave up waiting (an aborted case, or a reply past the time limit):
                    // the board it would have had goes now.
                    abandon(&reply, pidfd.as_ref());
                }
            }
        }
    }
}

/// SIGKILL to the process of a pidfd: it reaches that process even if its pid has been reused.
fn kill_by_pidfd(pidfd: &OwnedFd) {
    pidfd_send_signal(pidfd, nix::libc::SIGKILL);
}

fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) {
    // SAFETY: pidfd_send_signal takes a pidfd, a signal number, a null siginfo and flags.
    #[allow(unsafe_code)]
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<nix::libc::siginfo_t>(),
            0,
        );
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

    /// Ask for a virtual DK with these options (what follows `vdk`); its stdout and stderr go
    /// to `log`, or nowhere. Returns once the request is sent: [`Launching::started`] waits for
    /// the board, so a case asks for all its boards before it waits for any.
    pub fn launch(
        &self,
        args: Vec<OsString>,
        log: Option<&File>,
    ) -> Result<Launching, LaunchError> {
        let server = self.server()?;
        let pending = server.request(args, log)?;
        Ok(Launching {
            server: server.clone(),
            pending,
        })
    }

    /// Whether a fall-back to executed boards has been logged yet (once per server).
    pub(crate) fn first_fallback(&self) -> bool {
        !self.fallback_noted.swap(true, Ordering::Relaxed)
    }
}

/// A board asked for and not answered yet. Dropped unanswered, the board is killed when the
/// server's answer comes.
pub struct Launching {
    server: Arc<Server>,
    pending: Pending,
}

impl Launching {
    /// Wait for the server's answer: the board, forked. Must be awaited inside a tokio runtime
    /// (the board's exit is watched by it).
    pub async fn started(mut self) -> Result<ForkedBoard, LaunchError> {
        let (pid, pidfd) = self.server.answer(&mut self.pending).await?;
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
            _server: self.server,
        })
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
        pidfd_send_signal(self.exit.get_ref(), nix::libc::SIGTERM);
    }

    /// Wait until the board has exited.
    pub async fn exited(&self) {
        let _ = self.exit.readable().await;
    }
}
