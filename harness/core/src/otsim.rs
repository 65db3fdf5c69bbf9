//! Boards that are processes of upstream OpenThread's simulation CLI (`ot-cli-ftd`, built by
//! `firmware/openthread-sim/build.sh`): the pieces a board source for them is made of.
//!
//! - [`PortOffsets`]: each case run leases one `PORT_OFFSET`, so parallel cases never hear each
//!   other's radios; node ids 1..=33 inside it ([`ot_hil_wire::otsim::MAX_NODES_PER_OFFSET`]).
//! - [`NodeCommand`]: how one node is started: program, node id, `PORT_OFFSET`, and a working
//!   directory of its case's own (the simulation keeps its settings in `tmp/<offset>_<id>.flash`
//!   under its working directory, so a reused directory would carry one case's dataset into the next).
//! - [`loopback_multicast`]: the simulation radio is UDP multicast on loopback, which Linux leaves
//!   off by default.
//! - [`RadioSniffer`] / [`RadioCapture`]: the case's air on the record, from the group the nodes
//!   send to, fed to the same [`Capture`] as a sniffer board.
//!
//! The processes themselves are spawned by [`crate::console::Console::spawn_process`] (PTY console,
//! own process group, killed with the console).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ot_hil_wire::otsim::{self, RadioMessage};
use ot_hil_wire::sniffer::SnifferFrame;

use crate::air::Capture;

/// Errors of the simulation board pieces.
#[derive(Debug, thiserror::Error)]
pub enum OtSimError {
    #[error(
        "loopback has multicast off; the simulation radio needs it: run `ip link set lo multicast on` as root"
    )]
    NoLoopbackMulticast,
    #[error("`ip link set lo multicast on` failed")]
    EnableMulticast(#[source] std::io::Error),
    #[error("a case needs {needed} nodes; one port offset holds at most {max}")]
    TooManyNodes { needed: usize, max: u16 },
    #[error("port offset {offset} does not fit under port base {base}")]
    PortRange { base: u16, offset: u16 },
    #[error("sniffer socket on 224.0.0.116:{port}")]
    Socket {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

/// `IFF_MULTICAST` of `<linux/if.h>`.
const IFF_MULTICAST: u32 = 0x1000;

/// Whether loopback carries multicast; turns it on when `enable` is set (needs root).
pub fn loopback_multicast(enable: bool) -> Result<(), OtSimError> {
    let flags = std::fs::read_to_string("/sys/class/net/lo/flags").unwrap_or_default();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
    if flags & IFF_MULTICAST != 0 {
        return Ok(());
    }
    if !enable {
        return Err(OtSimError::NoLoopbackMulticast);
    }
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "multicast", "on"])
        .status()
        .map_err(OtSimError::EnableMulticast)?;
    if !status.success() {
        return Err(OtSimError::NoLoopbackMulticast);
    }
    Ok(())
}

/// The port offsets a run may use, leased one per case run.
#[derive(Debug)]
pub struct PortOffsets {
    base: u16,
    free: Mutex<Vec<u16>>,
}

impl PortOffsets {
    /// Offsets `first..first + count` on `base` (`PORT_BASE`, default 9000). Offsets whose ports
    /// would pass 65535 are left out.
    pub fn new(base: u16, first: u16, count: u16) -> PortOffsets {
        let free = (first..first.saturating_add(count))
            .rev()
            .filter(|&o| {
                otsim::group_port(base, o)
                    .is_some_and(|p| p.checked_add(otsim::MAX_NODES_PER_OFFSET).is_some())
            })
            .collect();
        PortOffsets {
            base,
            free: Mutex::new(free),
        }
    }

    /// An offset for a case of `nodes` nodes, `None` while all are leased. The lease gives the
    /// offset back when dropped.
    pub fn lease(self: &Arc<Self>, nodes: usize) -> Result<Option<OffsetLease>, OtSimError> {
        if nodes > usize::from(otsim::MAX_NODES_PER_OFFSET) {
            return Err(OtSimError::TooManyNodes {
                needed: nodes,
                max: otsim::MAX_NODES_PER_OFFSET,
            });
        }
        let offset = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        Ok(offset.map(|offset| OffsetLease {
            pool: self.clone(),
            offset,
        }))
    }
}

/// One leased `PORT_OFFSET`.
#[derive(Debug)]
pub struct OffsetLease {
    pool: Arc<PortOffsets>,
    offset: u16,
}

impl OffsetLease {
    pub fn offset(&self) -> u16 {
        self.offset
    }

    /// The UDP port the offset's nodes send their frames to (and the sniffer listens on).
    pub fn group_port(&self) -> Result<u16, OtSimError> {
        otsim::group_port(self.pool.base, self.offset).ok_or(OtSimError::PortRange {
            base: self.pool.base,
            offset: self.offset,
        })
    }
}

impl Drop for OffsetLease {
    fn drop(&mut self) {
        self.pool
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.offset);
    }
}

/// How to start one simulated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCommand {
    pub program: PathBuf,
    /// 1..=33, unique within the port offset.
    pub node_id: u16,
    pub port_offset: u16,
    /// The case's own directory (settings land in `tmp/` below it).
    pub work_dir: PathBuf,
    /// Where the node writes its log (`-l`): OpenThread's assertions and debug logs go there,
    /// never to the console.
    pub log_file: Option<PathBuf>,
}

impl NodeCommand {
    /// One command per node of a case: ids 1.. in node order, all in `work_dir`.
    pub fn for_case(
        program: &Path,
        nodes: usize,
        lease: &OffsetLease,
        work_dir: &Path,
    ) -> Result<Vec<NodeCommand>, OtSimError> {
        let too_many = || OtSimError::TooManyNodes {
            needed: nodes,
            max: otsim::MAX_NODES_PER_OFFSET,
        };
        let count = u16::try_from(nodes).map_err(|_| too_many())?;
        if count > otsim::MAX_NODES_PER_OFFSET {
            return Err(too_many());
        }
        Ok((1..=count)
            .map(|node_id| NodeCommand {
                program: program.to_path_buf(),
                node_id,
                port_offset: lease.offset(),
                work_dir: work_dir.to_path_buf(),
                log_file: None,
            })
            .collect())
    }

    /// The command line `Console::spawn_process` runs: `/bin/sh -c <this>`, so the node starts in
    /// its directory with its offset whatever the runner's own cwd and environment are.
    pub fn shell_line(&self) -> String {
        let log = self
            .log_file
            .as_ref()
            .map(|f| format!("-l {} ", shell_quote(&f.to_string_lossy())))
            .unwrap_or_default();
        format!(
            "cd {} && PORT_OFFSET={} exec {} {log}{}",
            shell_quote(&self.work_dir.to_string_lossy()),
            self.port_offset,
            shell_quote(&self.program.to_string_lossy()),
            self.node_id
        )
    }
}

/// The command line of node `node_id` of `program` built for virtual time, started in `dir`: it
/// connects to its event dispatcher at `dir/vt.9000.sock` (a Unix socket: nothing on the
/// network) and logs to syslog (this build takes no `-l`).
pub fn case_clock_shell_line(program: &Path, node_id: usize, dir: &Path) -> String {
    format!(
        "cd {} && OT_VT_USE_UNIX_SOCKET=1 PORT_BASE=9000 PORT_OFFSET=0 exec {} {node_id}",
        shell_quote(&dir.to_string_lossy()),
        shell_quote(&program.to_string_lossy()),
    )
}

/// Single quotes for `sh`, closing and reopening them around each `'`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// How long one receive may block: the capture thread checks its stop flag this often.
const RECV_TIMEOUT: Duration = Duration::from_millis(20);

/// One frame heard on the simulated air.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeardFrame {
    /// The node that sent it (from the datagram's source port), when the port says.
    pub node_id: Option<u16>,
    pub channel: u8,
    /// In the form the capture decoder takes (PSDU without FCS, time since the sniffer started).
    pub frame: SnifferFrame,
    pub fcs_ok: bool,
}

/// A socket in the simulation's multicast group of one port offset, on loopback.
pub struct RadioSniffer {
    socket: UdpSocket,
    group_port: u16,
    started: Instant,
}

impl RadioSniffer {
    /// Join 224.0.0.116 on `group_port` (shared with the nodes, as they share it among themselves).
    pub fn bind(group_port: u16) -> Result<RadioSniffer, OtSimError> {
        let err = |source| OtSimError::Socket {
            port: group_port,
            source,
        };
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        socket.set_reuse_address(true).map_err(err)?;
        socket.set_reuse_port(true).map_err(err)?;
        socket
            .join_multicast_v4(&otsim::GROUP, &Ipv4Addr::LOCALHOST)
            .map_err(err)?;
        socket
            .bind(&SockAddr::from(SocketAddrV4::new(otsim::GROUP, group_port)))
            .map_err(err)?;
        socket.set_read_timeout(Some(RECV_TIMEOUT)).map_err(err)?;
        Ok(RadioSniffer {
            socket: socket.into(),
            group_port,
            started: Instant::now(),
        })
    }

    /// The next frame, `Ok(None)` when none came within the receive timeout or the datagram was not
    /// a radio message.
    pub fn recv(&self) -> Result<Option<HeardFrame>, OtSimError> {
        let mut buf = [0u8; 256];
        let (len, from) = match self.socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(source) => {
                return Err(OtSimError::Socket {
                    port: self.group_port,
                    source,
                });
            }
        };
        let Some(datagram) = buf.get(..len) else {
            return Ok(None);
        };
        let Ok(message) = RadioMessage::parse(datagram) else {
            return Ok(None);
        };
        let Ok((psdu, fcs_ok)) = message.split_fcs() else {
            return Ok(None);
        };
        Ok(Some(HeardFrame {
            node_id: otsim::sender_node(self.group_port, from.port()),
            channel: message.channel,
            frame: SnifferFrame {
                psdu: psdu.to_vec(),
                // The simulation carries no signal strength; these are what a sniffer next to the
                // nodes would report.
                rssi_dbm: -20,
                lqi: 255,
                timestamp_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            },
            fcs_ok,
        }))
    }
}

/// A [`RadioSniffer`] feeding a [`Capture`] on a thread, as `SnifferSession` does for a sniffer
/// board: frames on the capture's channel with a good FCS (what a radio would pass on).
pub struct RadioCapture {
    capture: Arc<Mutex<Capture>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<OtSimError>>>,
}

impl RadioCapture {
    pub fn start(
        sniffer: RadioSniffer,
        channel: u8,
        capture: Capture,
    ) -> Result<RadioCapture, OtSimError> {
        let capture = Arc::new(Mutex::new(capture));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let capture = capture.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("otsim-sniffer".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match sniffer.recv() {
                            Ok(Some(heard)) if heard.channel == channel && heard.fcs_ok => capture
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push_frame(&heard.frame),
                            Ok(_) => {}
                            Err(e) => return Some(e),
                        }
                    }
                    None
                })
                .map_err(|source| OtSimError::Socket { port: 0, source })?
        };
        Ok(RadioCapture {
            capture,
            stop,
            thread: Some(thread),
        })
    }

    /// Look at the capture while it runs.
    pub fn with_capture<R>(&self, f: impl FnOnce(&mut Capture) -> R) -> R {
        f(&mut self.capture.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stop the thread and hand back the capture (finished), with the socket error that ended
    /// the thread early, if one did.
    pub fn stop(mut self) -> (Capture, Option<OtSimError>) {
        let error = self.join();
        let mut capture = std::mem::replace(
            &mut *self.capture.lock().unwrap_or_else(|e| e.into_inner()),
            Capture::new(0, None, [0; 8], None),
        );
        capture.finish();
        (capture, error)
    }

    fn join(&mut self) -> Option<OtSimError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

impl Drop for RadioCapture {
    fn drop(&mut self) {
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_leased_once_and_come_back() {
        let pool = Arc::new(PortOffsets::new(9000, 1, 2));
        let a = pool.lease(2).unwrap().unwrap();
        let b = pool.lease(33).unwrap().unwrap();
        assert_ne!(a.offset(), b.offset());
        assert!(pool.lease(1).unwrap().is_none());
        let freed = a.offset();
        drop(a);
        assert_eq!(pool.lease(1).unwrap().unwrap().offset(), freed);
        assert!(matches!(
            pool.lease(34),
            Err(OtSimError::TooManyNodes { needed: 34, .. })
        ));
    }

    #[test]
    fn offsets_past_the_port_range_are_not_offered() {
        let pool = Arc::new(PortOffsets::new(65000, 0, 100));
        // Hold every lease (a dropped one goes back to the pool).
        let mut leases = Vec::new();
        while let Some(l) = pool.lease(1).unwrap() {
            leases.push(l);
        }
        assert_eq!(leases.len(), 15);
        assert!(
            leases
                .iter()
                .all(|l| l.group_port().is_ok_and(|p| p <= 65535 - 33))
        );
    }

    #[test]
    fn node_commands_number_nodes_and_quote_paths() {
        let pool = Arc::new(PortOffsets::new(9000, 3, 1));
        let lease = pool.lease(2).unwrap().unwrap();
        let cmds = NodeCommand::for_case(
            Path::new("/opt/o t/ot-cli-ftd"),
            2,
            &lease,
            Path::new("/w'd"),
        )
        .unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(
            cmds[1].shell_line(),
            r"cd '/w'\''d' && PORT_OFFSET=3 exec '/opt/o t/ot-cli-ftd' 2"
        );
        let logged = NodeCommand {
            log_file: Some("/l/n 2.log".into()),
            ..cmds[1].clone()
        };
        assert_eq!(
            logged.shell_line(),
            r"cd '/w'\''d' && PORT_OFFSET=3 exec '/opt/o t/ot-cli-ftd' -l '/l/n 2.log' 2"
        );
    }

    /// A datagram sent to the group as a node would send it reaches the sniffer as a frame.
    /// Needs multicast on loopback; skipped (with a note) where it is off.
    #[test]
    fn sniffer_hears_a_node_datagram() {
        if loopback_multicast(false).is_err() {
            eprintln!("loopback multicast off: skipped");
            return;
        }
        // An offset no other test or run uses.
        let group = otsim::group_port(otsim::DEFAULT_PORT_BASE, 1500).unwrap();
        let sniffer = RadioSniffer::bind(group).unwrap();
        let tx = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        tx.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
        tx.bind(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, group + 7).into())
            .unwrap();
        let tx = UdpSocket::from(tx);
        let sent = RadioMessage::with_fcs(15, &[0x02, 0x00, 0x2a]);
        let deadline = Instant::now() + Duration::from_secs(2);
        let heard = loop {
            tx.send_to(&sent.emit(), (otsim::GROUP, group)).unwrap();
            if let Some(h) = sniffer.recv().unwrap() {
                break h;
            }
            assert!(Instant::now() < deadline, "no frame heard");
        };
        assert_eq!(heard.node_id, Some(7));
        assert_eq!(heard.channel, 15);
        assert!(heard.fcs_ok);
        assert_eq!(heard.frame.psdu, vec![0x02, 0x00, 0x2a]);
    }
}
