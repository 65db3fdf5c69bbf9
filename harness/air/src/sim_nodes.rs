//! Real OpenThread nodes on the case clock: the hub as the event dispatcher of OpenThread's
//! virtual-time simulation ([`crate::sim_event`]).
//!
//! Each node (`ot-cli-ftd` built with `OT_SIMULATION_VIRTUAL_TIME` and
//! `OT_SIMULATION_VIRTUAL_TIME_UART`, started with `OT_VT_USE_UNIX_SOCKET=1` in the case's
//! directory) connects to `vt.<port base>.sock` there. Its frames become frames of the case's
//! air (sniffer, pcap, faults and snapshots work for them as for virtual DKs); its console, which
//! this build sends through events, is bridged to the PTY the runner started it on, so the
//! runner drives it like any console. Each node is a board of the case clock: it is idle once it
//! has answered every event the hub sent it with a sleep request, and that request's delay is
//! its next timer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::socket::{
    self, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, sockopt,
};

use crate::medium::{HubState, Shared, progress};
use crate::proto::IdleReport;
use crate::sim_event::{ALARM_FIRED, MAX_DATA, NO_ALARM, RADIO_RECEIVED, SimEvent, UART_WRITE};
use crate::sim_node::SimNode;

/// How often the accept and console loops check whether the hub or the node is gone.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// Bind `dir/vt.<port_base>.sock` and accept nodes on a thread until the hub stops.
pub(crate) fn listen(shared: Arc<Shared>, dir: &Path, port_base: u16) -> io::Result<PathBuf> {
    let path = dir.join(format!("vt.{port_base}.sock"));
    let _ = std::fs::remove_file(&path);
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(&path)?)?;
    socket::listen(&fd, Backlog::new(64)?)?;
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("air-sim-accept".into())
        .spawn(move || accept_loop(&shared, &fd, &dir))?;
    Ok(path)
}

fn accept_loop(shared: &Arc<Shared>, listener: &OwnedFd, dir: &Path) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    while !shared.stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(ACCEPT_POLL).unwrap_or(PollTimeout::NONE);
        if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
            continue;
        }
        let Ok(conn) = socket::accept4(listener, SockFlag::SOCK_CLOEXEC) else {
            continue;
        };
        if let Err(e) = attach(shared, conn, dir) {
            eprintln!("air: an OpenThread node could not attach: {e}");
        }
    }
}

/// Register a node that connected and start its threads.
fn attach(shared: &Arc<Shared>, conn: OwnedFd, dir: &Path) -> io::Result<()> {
    let peer: UnixAddr = socket::getpeername(conn.as_raw_fd())?;
    let name = peer
        .path()
        .ok_or_else(|| io::Error::other("a node without a socket name"))?;
    // The node binds `vt.<port>.sock` relative to its directory, the case's.
    let key = dir.join(name.file_name().unwrap_or(name.as_os_str()));
    let cred = socket::getsockopt(&conn, sockopt::PeerCredentials)?;
    // Its stdin is the PTY the runner started it on: the console the runner reads.
    let console = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_noctty())
        .open(format!("/proc/{}/fd/0", cred.pid()))
        .ok()
        .map(Arc::new);
    let conn = Arc::new(conn);
    {
        let mut state = shared.lock();
        state.sim_nodes.insert(
            key.clone(),
            SimNode::new(Arc::clone(&conn), console.clone()),
        );
        if let Some(clock) = state.clock.as_mut() {
            clock.board(&key);
        }
    }
    let (s, k) = (Arc::clone(shared), key.clone());
    std::thread::Builder::new()
        .name("air-sim-node".into())
        .spawn(move || serve_node(&s, &k, &conn))?;
    if let Some(console) = console {
        let s = Arc::clone(shared);
        std::thread::Builder::new()
            .name("air-sim-uart".into())
            .spawn(move || serve_console(&s, &key, &console))?;
    }
    Ok(())
}

fn libc_o_noctty() -> i32 {
    nix::fcntl::OFlag::O_NOCTTY.bits()
}

/// The node's events, until it goes away.
fn serve_node(shared: &Arc<Shared>, key: &Path, conn: &OwnedFd) {
    let mut buf = vec![0u8; crate::sim_event::HEADER_LEN + MAX_DATA];
    loop {
        let n = match socket::recv(conn.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Ok(event) = SimEvent::parse(buf.get(..n).unwrap_or_default()) else {
            shared.lock().stats.malformed += 1;
            continue;
        };
        if event.kind == UART_WRITE {
            // Written before it is counted: the runner may only be told of bytes it can read.
            let console = shared
                .lock()
                .sim_nodes
                .get(key)
                .and_then(|n| n.console.clone());
            if let Some(mut c) = console.as_deref() {
                let _ = c.write_all(&event.data);
            }
        }
        let mut state = shared.lock();
        handle_event(&mut state, key, event);
        progress(&mut state, shared);
    }
    // The node is gone (it exited, or crashed). Its console closes with it (the console thread
    // lets go of the PTY), so the runner sees the process end; until the runner has seen that
    // (its tap marks the board gone), the clock waits: a crash must not turn into a timeout.
    let mut state = shared.lock();
    let had_console = state
        .sim_nodes
        .remove(key)
        .is_some_and(|node| node.console.is_some());
    if !had_console && let Some(board) = state.clock.as_mut().and_then(|c| c.boards.get_mut(key)) {
        board.gone = true;
    }
    progress(&mut state, shared);
}

fn handle_event(state: &mut HubState, key: &Path, event: SimEvent) {
    match event.kind {
        ALARM_FIRED => {
            let now_us = state.clock.as_ref().map_or(0, |c| c.now_us);
            let Some(node) = state.sim_nodes.get_mut(key) else {
                return;
            };
            node.sleeps += 1;
            let deadline_us =
                (event.delay_us != NO_ALARM).then(|| node.node_now.saturating_add(event.delay_us));
            let report = IdleReport {
                now_us: node.node_now,
                deadline_us,
                console_in: node.console_in,
                console_out: node.console_out,
                frames_in: node.sleeps - 1,
                controls: 0,
            };
            let behind = node.node_now != now_us;
            if let Some(board) = state.clock.as_mut().map(|c| c.board(key)) {
                board.report = Some(report);
            }
            // A node that joined after the clock moved on catches up first.
            if behind {
                state.send_to_sim_node(key, ALARM_FIRED, Vec::new());
            }
        }
        RADIO_RECEIVED => {
            let Ok((channel, psdu, fcs)) = event.frame() else {
                state.stats.malformed += 1;
                return;
            };
            state.stats.frames_in += 1;
            match state.clock.as_mut() {
                Some(clock) => clock.hold(key, channel, psdu, fcs),
                None => state.stats.malformed += 1,
            }
        }
        UART_WRITE => {
            if let Some(node) = state.sim_nodes.get_mut(key) {
                node.console_out += event.data.len() as u64;
                let out = node.console_out;
                if let Some(r) = state
                    .clock
                    .as_mut()
                    .and_then(|c| c.boards.get_mut(key))
                    .and_then(|b| b.report.as_mut())
                {
                    r.console_out = out;
                }
            }
        }
        _ => {}
    }
}

/// Console input typed by the runner, forwarded to the node as UART events, until the node is
/// gone (then this thread's handle on the PTY is the last besides the runner's, and goes).
fn serve_console(shared: &Arc<Shared>, key: &Path, console: &File) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut buf = [0u8; MAX_DATA];
    let mut reader = console;
    loop {
        let mut fds = [PollFd::new(console.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(ACCEPT_POLL).unwrap_or(PollTimeout::NONE);
        let ready = matches!(poll(&mut fds, timeout), Ok(n) if n > 0);
        if !shared.lock().sim_nodes.contains_key(key) {
            return;
        }
        if !ready {
            continue;
        }
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut state = shared.lock();
        if !state.sim_nodes.contains_key(key) {
            return;
        }
        let data = buf.get(..n).unwrap_or_default().to_vec();
        state.send_to_sim_node(key, UART_WRITE, data);
        if let Some(node) = state.sim_nodes.get_mut(key) {
            node.console_in += n as u64;
            let forwarded = node.console_in;
            if let Some(r) = state
                .clock
                .as_mut()
                .and_then(|c| c.boards.get_mut(key))
                .and_then(|b| b.report.as_mut())
            {
                r.console_in = forwarded;
            }
        }
        progress(&mut state, shared);
    }
}
