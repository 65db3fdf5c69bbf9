//! A radio on the virtual air.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::proto::{
    AirFrame, ClientMessage, HubMessage, IdleReport, MAX_PSDU_LEN, is_valid_channel,
};

/// Distinguishes the sockets of several clients in one process.
static NEXT_CLIENT: AtomicU32 = AtomicU32::new(0);

/// What every clone of one client shares; dropping the last clone says bye and removes the socket.
struct ClientShared {
    path: PathBuf,
    hub: PathBuf,
    channel: AtomicU8,
    malformed: AtomicU64,
    /// A handle kept only to say bye from the registered address.
    bye: UnixDatagram,
}

impl Drop for ClientShared {
    fn drop(&mut self) {
        let _ = self.bye.send_to(&ClientMessage::Bye.emit(), &self.hub);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One datagram from the hub, as a clocked board sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A frame on the radio's channel.
    Frame(AirFrame),
    /// The case clock moved on to this instant (µs).
    Time(u64),
    /// A datagram that was not a frame for this radio (malformed, or from a channel it left):
    /// handled by dropping it, and counted as handled in the board's idle report.
    Discarded,
}

/// One radio. Clone it with [`AirClient::try_clone`] to send from one thread while another
/// receives; only one thread should call `recv_timeout` at a time (the clones share one socket
/// and so one receive timeout).
pub struct AirClient {
    socket: UnixDatagram,
    shared: Arc<ClientShared>,
}

impl AirClient {
    /// Bind `dir/c-<pid>-<n>.sock` next to the hub socket and register with the radio off.
    pub fn connect(hub_socket: &Path) -> io::Result<AirClient> {
        let dir = hub_socket.parent().unwrap_or_else(|| Path::new("."));
        let n = NEXT_CLIENT.fetch_add(1, Ordering::Relaxed);
        let path = ot_hil_board::air_socket::radio_socket(dir, std::process::id(), n);
        // A leftover from a process with the same pid that died without cleaning up.
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        let shared = Arc::new(ClientShared {
            path,
            hub: hub_socket.to_path_buf(),
            channel: AtomicU8::new(0),
            malformed: AtomicU64::new(0),
            bye: socket.try_clone()?,
        });
        let client = AirClient { socket, shared };
        client.send_message(&ClientMessage::SetChannel { channel: 0 })?;
        Ok(client)
    }

    /// Tune the radio: 11..=26, or 0 to switch it off.
    pub fn set_channel(&self, channel: u8) -> io::Result<()> {
        if !is_valid_channel(channel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("channel {channel} is not 0 or 11..=26"),
            ));
        }
        self.shared.channel.store(channel, Ordering::SeqCst);
        self.send_message(&ClientMessage::SetChannel { channel })
    }

    /// Tune the radio as a sniffer's (11..=26): it hears every frame as transmitted, past the
    /// air's faults unless they are set on a link to it ([`crate::Hub::set_faults`]).
    /// [`AirClient::set_channel`] with 0 switches it off.
    pub fn set_monitor(&self, channel: u8) -> io::Result<()> {
        if channel == 0 || !is_valid_channel(channel) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("channel {channel} is not 11..=26"),
            ));
        }
        self.shared.channel.store(channel, Ordering::SeqCst);
        self.send_message(&ClientMessage::Monitor { channel })
    }

    /// The channel the radio is on (0 = off).
    pub fn channel(&self) -> u8 {
        self.shared.channel.load(Ordering::SeqCst)
    }

    /// Transmit a PSDU (given without FCS) on the current channel; the FCS is appended as the
    /// radio does.
    pub fn send(&self, psdu: &[u8]) -> io::Result<()> {
        let channel = self.channel();
        if channel == 0 {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "radio is off"));
        }
        if psdu.is_empty() || psdu.len() > MAX_PSDU_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("psdu of {} bytes is not 1..={MAX_PSDU_LEN}", psdu.len()),
            ));
        }
        let fcs = ot_hil_wire::mac::fcs(psdu);
        self.send_message(&ClientMessage::Transmit { channel, psdu, fcs })
    }

    /// Wait up to `timeout` for a frame on the current channel. Malformed datagrams and frames
    /// from a channel the radio has left are skipped (and counted in [`AirClient::malformed`]).
    pub fn recv_timeout(&self, timeout: Duration) -> io::Result<Option<AirFrame>> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.socket.set_nonblocking(true)?;
                let r = self.socket.recv(&mut buf);
                self.socket.set_nonblocking(false)?;
                return match r {
                    Ok(len) => Ok(self.accept(buf.get(..len).unwrap_or_default())),
                    Err(e) if is_timeout(&e) => Ok(None),
                    Err(e) => Err(e),
                };
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.recv(&mut buf) {
                Ok(len) => {
                    if let Some(frame) = self.accept(buf.get(..len).unwrap_or_default()) {
                        return Ok(Some(frame));
                    }
                }
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Wait up to `timeout` for the next datagram from the hub, whatever it is (a clocked
    /// board's receive side: every datagram counts in its [`IdleReport`]).
    pub fn recv_message(&self, timeout: Duration) -> io::Result<Option<Received>> {
        let mut buf = [0u8; 512];
        self.socket
            .set_read_timeout(Some(timeout.max(Duration::from_micros(1))))?;
        match self.socket.recv(&mut buf) {
            Ok(len) => Ok(Some(self.classify(buf.get(..len).unwrap_or_default()))),
            Err(e) if is_timeout(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next datagram from the hub if one is waiting, without waiting (for a caller that
    /// polls the socket, [`AsFd`], with its other inputs). The socket stays blocking for sends.
    pub fn try_recv_message(&self) -> io::Result<Option<Received>> {
        let mut buf = [0u8; 512];
        match nix::sys::socket::recv(
            self.socket.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(len) => Ok(Some(self.classify(buf.get(..len).unwrap_or_default()))),
            Err(nix::errno::Errno::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn classify(&self, datagram: &[u8]) -> Received {
        match HubMessage::parse(datagram) {
            Ok(HubMessage::Time { now_us }) => Received::Time(now_us),
            Ok(HubMessage::Frame(frame)) if frame.channel == self.channel() => {
                Received::Frame(frame)
            }
            Ok(HubMessage::Frame(_)) => Received::Discarded,
            Err(_) => {
                self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                Received::Discarded
            }
        }
    }

    /// Tell the hub's case clock this board has nothing left to do (the first report registers
    /// it as a clocked board).
    pub fn report_idle(&self, report: IdleReport) -> io::Result<()> {
        self.send_message(&ClientMessage::Idle(report))
    }

    /// A second handle on the same radio.
    pub fn try_clone(&self) -> io::Result<AirClient> {
        Ok(AirClient {
            socket: self.socket.try_clone()?,
            shared: Arc::clone(&self.shared),
        })
    }

    /// This client's socket (the hub's name for it, e.g. in per-link fault settings).
    pub fn local_path(&self) -> &Path {
        &self.shared.path
    }

    /// The hub socket this client talks to.
    pub fn hub_path(&self) -> &Path {
        &self.shared.hub
    }

    /// Datagrams received that were not a valid frame for the current channel.
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::Relaxed)
    }

    fn accept(&self, datagram: &[u8]) -> Option<AirFrame> {
        match AirFrame::parse(datagram) {
            Ok(frame) if frame.channel == self.channel() => Some(frame),
            Ok(_) => None,
            Err(_) => {
                self.shared.malformed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn send_message(&self, message: &ClientMessage<'_>) -> io::Result<()> {
        self.socket
            .send_to(&message.emit(), &self.shared.hub)
            .map(|_| ())
    }
}

impl AsFd for AirClient {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl std::fmt::Debug for AirClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AirClient")
            .field("path", &self.shared.path)
            .field("channel", &self.channel())
            .finish()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
