//! The virtual DK server (`ot-hil vdk-server`): one process per run that starts virtual DKs by
//! forking itself, so that a board costs a `fork` instead of an `exec`.
//!
//! Why: every virtual DK is the `ot-hil` executable run again, and most of what a board process
//! spends before its console is up is the start of any process: the exec, the dynamic loader,
//! page faults on the executable, the C library and the Rust runtime probing the CPU (each CPUID
//! is a trap to the hypervisor on a virtual machine). With 32 boards starting at once those keep
//! both cores of a CI runner busy before the first step. A forked board inherits all of that
//! from the server, already done.
//!
//! The runner starts the server with a `SOCK_SEQPACKET` socket as its stdin and asks it for
//! boards in the [`ot_hil_board::launch`] protocol. The server stays single-threaded (a fork
//! copies only the calling thread, so nothing else may hold a lock at that moment) and does
//! nothing but fork, reply and reap.
//!
//! Containment as for an executed board: a board leads its own process group (set by both
//! parent and child, so it exists before the runner learns the pid), and gets the parent-death
//! signal from the server, which gets it from the runner: a runner killed with SIGKILL takes
//! the server, and the server its boards.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use clap::Parser;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, setpgid};
use ot_hil_board::launch::{self, LaunchReply, LaunchRequest};

use crate::VdkArgs;

/// How long the server waits for a request before it reaps exited boards anyway.
const REAP_EVERY_MS: u16 = 1000;

/// A board's options parsed as `ot-hil vdk` parses them.
#[derive(Parser)]
#[command(name = "vdk")]
struct ForkedBoard {
    #[command(flatten)]
    vdk: VdkArgs,
}

/// Serve launch requests on stdin until the runner closes it. `parent` is the runner: the server
/// dies with it (or exits now if it is already gone).
pub fn serve(parent: u32) -> std::io::Result<()> {
    crate::die_with_parent(parent);
    let title = CommandLine::of_this_process();
    title.show(&[
        "vdk-server".into(),
        "--parent".into(),
        parent.to_string().into(),
    ]);
    // SAFETY: fd 0 is the socket the runner gave this process as stdin; only this owner closes it.
    #[allow(unsafe_code)]
    let socket = unsafe { OwnedFd::from_raw_fd(0) };
    let server = getpid();
    // The runner watches forked boards through pidfds (Linux 5.3): without them, exit now, and
    // the runner executes its boards instead.
    pidfd_open(server).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("pidfd_open: {e} (needs Linux 5.3; the runner executes its boards instead)"),
        )
    })?;
    warm_up();
    loop {
        reap_exited_boards();
        let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(REAP_EVERY_MS)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let (bytes, log) = match launch::recv(socket.as_fd()) {
            Ok(received) => received,
            // A datagram too long, or whose descriptors did not fit: refused, not fatal.
            Err(e) if is_bad_request(&e) => {
                launch::send(
                    socket.as_fd(),
                    &LaunchReply::Failed(e.to_string()).emit(),
                    None,
                )?;
                continue;
            }
            Err(e) => return Err(e),
        };
        if bytes.is_empty() {
            return Ok(());
        }
        let (reply, pidfd) = match LaunchRequest::parse(&bytes) {
            Ok(request) => match start_board(&title, request, log, &socket, server) {
                Ok((pid, pidfd)) => (LaunchReply::Started { pid }, Some(pidfd)),
                Err(e) => (LaunchReply::Failed(e), None),
            },
            Err(e) => (LaunchReply::Failed(e.to_string()), None),
        };
        launch::send(
            socket.as_fd(),
            &reply.emit(),
            pidfd.as_ref().map(|fd| fd.as_fd()),
        )?;
    }
}

/// A receive error that concerns one request (the server answers it and goes on), not the
/// socket.
fn is_bad_request(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other || e.raw_os_error() == Some(nix::libc::ENOBUFS)
}

/// Work every board would otherwise repeat at its start, done once here and inherited: the
/// CPU feature caches of the standard library and of the AES and SHA-256 implementations
/// (each filled on first use, with a CPUID instruction per leaf, which traps to the hypervisor
/// in a virtual machine).
fn warm_up() {
    #[cfg(target_arch = "x86_64")]
    let _ = std::arch::is_x86_feature_detected!("avx2");
    #[cfg(target_arch = "aarch64")]
    let _ = std::arch::is_aarch64_feature_detected!("aes");
    // MLE and MAC security: HMAC-SHA-256 key derivation, then AES-CCM*.
    let keys = ot_hil_wire::security::derive_keys(&[0; 16], 0);
    let _ = ot_hil_wire::security::ccm_star_encrypt(&keys.mac_key, &[0; 13], 5, &[], &[0]);
}

/// Fork a board; in the parent, its pid and a pidfd (taken before any reaping, so it is this
/// board's even if it has already exited).
fn start_board(
    title: &CommandLine,
    request: LaunchRequest,
    log: Option<OwnedFd>,
    socket: &OwnedFd,
    server: Pid,
) -> Result<(u32, OwnedFd), String> {
    // SAFETY: this process has a single thread (see the module documentation), so the child
    // starts with no lock held by a thread that does not exist in it.
    #[allow(unsafe_code)]
    match unsafe { fork() } {
        Ok(ForkResult::Child) => become_board(title, request, log, socket.as_fd(), server),
        Ok(ForkResult::Parent { child }) => {
            // Also here, so the group exists before the runner can signal it.
            let _ = setpgid(child, child);
            match pidfd_open(child) {
                Ok(pidfd) => Ok((child.as_raw() as u32, pidfd)),
                Err(e) => {
                    // A board the runner cannot watch is not started.
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    Err(format!("pidfd of {child}: {e}"))
                }
            }
        }
        Err(e) => Err(format!("fork: {e}")),
    }
}

fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    #[allow(unsafe_code)]
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just created for this process.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The forked child: set up as the runner would set up an executed board, then run the board.
fn become_board(
    title: &CommandLine,
    request: LaunchRequest,
    log: Option<OwnedFd>,
    socket: BorrowedFd<'_>,
    server: Pid,
) -> ! {
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    crate::die_with_parent(server.as_raw() as u32);
    // The runner's socket is fd 0, the server's stdin: replacing stdin closes it, so the board
    // holds nothing of the server's.
    debug_assert_eq!(socket.as_raw_fd(), 0);
    if redirect_stdio(log).is_err() {
        std::process::exit(137);
    }
    let mut args = vec![OsString::from("vdk")];
    args.extend(request.args);
    title.show(&args);
    let code = match ForkedBoard::try_parse_from(&args) {
        Ok(board) => match crate::run(board.vdk) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Err(e) => {
            let _ = e.print();
            2
        }
    };
    std::process::exit(code)
}

/// stdin from /dev/null; stdout and stderr to the board's log, or /dev/null.
fn redirect_stdio(log: Option<OwnedFd>) -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    let out: OwnedFd = match log {
        Some(fd) => fd,
        None => null.into(),
    };
    nix::unistd::dup2_stdout(&out)?;
    nix::unistd::dup2_stderr(&out)?;
    Ok(())
}

/// Reap every board that has exited (the runner watches them through their pidfds).
fn reap_exited_boards() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
}

/// Where this process's command line lives, found once in the server: a forked board has the
/// same layout, so it rewrites its copy without reading `/proc` again.
struct CommandLine {
    /// `argv[0]`, kept in front of every title.
    program: OsString,
    /// `[arg_start, arg_end)`, when the kernel tells it.
    area: Option<(usize, usize)>,
}

impl CommandLine {
    fn of_this_process() -> CommandLine {
        CommandLine {
            program: std::env::args_os()
                .next()
                .unwrap_or_else(|| "ot-hil".into()),
            area: argument_area(),
        }
    }

    /// Make `/proc/self/cmdline` (what `ps` shows and what a user greps for to find a board)
    /// read the program followed by `args`, within the room of the original arguments: cut if
    /// longer, padded with NULs if shorter. The arguments live in this process's own memory; a
    /// forked board rewrites its copy, so `ps` shows `ot-hil vdk --air ... --pty-link
    /// .../dut.tty` as for an executed board.
    fn show(&self, args: &[OsString]) {
        use std::os::unix::ffi::OsStrExt;
        let Some((start, end)) = self.area else {
            return;
        };
        let Some(len) = end.checked_sub(start).filter(|l| *l > 0) else {
            return;
        };
        let mut title = Vec::with_capacity(len);
        for arg in std::iter::once(&self.program).chain(args) {
            title.extend_from_slice(arg.as_bytes());
            title.push(0);
        }
        title.resize(len, 0);
        title[len - 1] = 0;
        // SAFETY: [arg_start, arg_end) is this process's argument area, mapped writable at the
        // top of its initial stack; Rust holds no reference into it (the standard library keeps
        // raw argv pointers only, read by `std::env::args`, which is not called after this).
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(title.as_ptr(), start as *mut u8, len);
        }
    }
}

/// `arg_start` and `arg_end` of `/proc/self/stat` (fields 48 and 49).
fn argument_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name start at field 3.
    let rest = stat.rsplit_once(") ")?.1;
    let mut fields = rest.split_whitespace().skip(48 - 3);
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    Some((start, end))
}
