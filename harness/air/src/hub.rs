//! The hub: one per run, it plays the air between every registered client.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fault::FaultConfig;
use crate::proto::{AirFrame, ClientMessage};

/// File name of the hub socket inside the run directory.
pub const HUB_SOCKET_NAME: &str = ot_hil_board::air_socket::HUB_SOCKET_NAME;

/// Received signal strength every frame is reported with (a bench with boards a few cm apart).
pub const DEFAULT_RSSI_DBM: i8 = -40;
/// Link quality every frame is reported with.
pub const DEFAULT_LQI: u8 = 255;

/// Datagrams held for one receiver whose socket queue is full (Linux queues only
/// `net.unix.max_dgram_qlen`, 10 by default, per socket). Beyond this the receiver overruns.
const BACKLOG_LIMIT: usize = 4096;
/// How soon the hub retries a receiver with a backlog.
const BACKLOG_RETRY: Duration = Duration::from_micros(500);

/// Longest the hub thread blocks before it rechecks its stop flag (a backstop: dropping the hub
/// also wakes it with an empty datagram).
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// Counters since the hub started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Frames clients transmitted.
    pub frames_in: u64,
    /// Frames handed to receivers (one per receiver, duplicates included).
    pub frames_out: u64,
    /// Frames handed to monitors (sniffer radios), counted as they leave the faults behind:
    /// sent, queued behind a backlog or dropped by an overrun. What a perfect sniffer captures.
    pub frames_to_monitors: u64,
    /// Clients registered now.
    pub clients: usize,
    /// Datagrams the hub could not parse.
    pub malformed: u64,
    /// Clients removed because their socket was gone.
    pub dead_clients: u64,
    /// Deliveries dropped because the receiver fell more than 4096 frames behind.
    pub receiver_overruns: u64,
    /// Deliveries dropped by injected loss.
    pub injected_losses: u64,
    /// Extra deliveries made by injected duplication.
    pub injected_duplicates: u64,
    /// Deliveries with an injected bit flip.
    pub injected_corruptions: u64,
}

/// A delivery waiting for its injected delay.
struct Delayed {
    due: Instant,
    order: u64,
    to: PathBuf,
    channel: u8,
    psdu: Vec<u8>,
    fcs: u16,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

struct HubState {
    /// Registered clients by socket path, with their channel (0 = radio off).
    clients: HashMap<PathBuf, u8>,
    /// Clients registered as monitors (sniffer radios): the global faults pass them by.
    monitors: HashSet<PathBuf>,
    stats: HubStats,
    faults: FaultConfig,
    link_faults: HashMap<(PathBuf, PathBuf), FaultConfig>,
    rng: StdRng,
    delayed: BinaryHeap<Reverse<Delayed>>,
    next_order: u64,
    /// Per receiver, datagrams waiting for room in its socket queue, in order.
    backlog: HashMap<PathBuf, VecDeque<Vec<u8>>>,
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<HubState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The virtual air of one run. Dropping it stops the thread and removes the socket.
pub struct Hub {
    socket_path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// Bind `dir/air.sock` and serve on a thread. Fault injection starts off, with RNG seed 0.
    pub fn start(dir: &Path) -> io::Result<Hub> {
        Hub::start_seeded(dir, 0)
    }

    /// As [`Hub::start`], with the seed of the fault-injection RNG (same seed and same traffic
    /// order give the same losses).
    pub fn start_seeded(dir: &Path, seed: u64) -> io::Result<Hub> {
        let socket_path = dir.join(HUB_SOCKET_NAME);
        match std::fs::remove_file(&socket_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let socket = UnixDatagram::bind(&socket_path)?;
        // Deliveries go out of a separate non-blocking socket: one slow receiver must not stall
        // the whole air (a full queue is an overrun, like a radio that missed a frame).
        let out = UnixDatagram::unbound()?;
        out.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(HubState {
                clients: HashMap::new(),
                monitors: HashSet::new(),
                stats: HubStats::default(),
                faults: FaultConfig::default(),
                link_faults: HashMap::new(),
                rng: StdRng::seed_from_u64(seed),
                delayed: BinaryHeap::new(),
                next_order: 0,
                backlog: HashMap::new(),
            }),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("air-hub".into())
            .spawn(move || serve(&socket, &out, &thread_shared))?;
        Ok(Hub {
            socket_path,
            shared,
            thread: Some(thread),
        })
    }

    /// The socket clients connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HubStats {
        let state = self.shared.lock();
        let mut stats = state.stats.clone();
        stats.clients = state.clients.len();
        stats
    }

    /// Faults applied to every link that has no faults of its own, except links to monitors
    /// (sniffer radios, [`crate::AirClient::set_monitor`]): a sniffer on the virtual air is a
    /// perfect observer and hears every frame as it was transmitted, unless faults are set on a
    /// link to it with [`Hub::set_link_faults`].
    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared.lock().faults = faults;
    }

    /// Faults for frames from the client bound at `from` to the one at `to` (see
    /// [`crate::AirClient::local_path`]); `None` returns the link to the global faults.
    pub fn set_link_faults(&self, from: &Path, to: &Path, faults: Option<FaultConfig>) {
        let key = (from.to_path_buf(), to.to_path_buf());
        let mut state = self.shared.lock();
        match faults {
            Some(f) => {
                state.link_faults.insert(key, f);
            }
            None => {
                state.link_faults.remove(&key);
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the thread now rather than after IDLE_WAKE.
        if let Ok(waker) = UnixDatagram::unbound() {
            let _ = waker.send_to(&[], &self.socket_path);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

fn serve(socket: &UnixDatagram, out: &UnixDatagram, shared: &Shared) {
    let started = Instant::now();
    // Larger than any valid datagram, so an oversized one shows up as too long, not truncated.
    let mut buf = vec![0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        let wait = {
            let state = shared.lock();
            let delayed = state
                .delayed
                .peek()
                .map(|Reverse(d)| d.due.saturating_duration_since(Instant::now()))
                .unwrap_or(IDLE_WAKE);
            let backlog = if state.backlog.is_empty() {
                IDLE_WAKE
            } else {
                BACKLOG_RETRY
            };
            delayed
                .min(backlog)
                .clamp(Duration::from_micros(100), IDLE_WAKE)
        };
        if socket.set_read_timeout(Some(wait)).is_err() {
            // Cannot happen with a non-zero duration; stop rather than spin.
            return;
        }
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let datagram = buf.get(..len).unwrap_or_default();
                let mut state = shared.lock();
                handle_datagram(&mut state, out, started, datagram, from.as_pathname());
            }
            Err(_) => {
                // The wait timed out, or a receive error on a datagram socket that is transient
                // (e.g. ENOBUFS): carry on.
            }
        }
        let mut state = shared.lock();
        deliver_due(&mut state, out, started, Instant::now());
        flush_backlogs(&mut state, out);
    }
}

/// Retry every receiver with a backlog, in order, until its queue is full again.
fn flush_backlogs(state: &mut HubState, out: &UnixDatagram) {
    let mut dead = Vec::new();
    for (to, queue) in state.backlog.iter_mut() {
        while let Some(datagram) = queue.front() {
            match out.send_to(datagram, to) {
                Ok(_) => {
                    queue.pop_front();
                    state.stats.frames_out += 1;
                }
                Err(e) if is_gone(&e) => {
                    dead.push(to.clone());
                    break;
                }
                Err(_) => break,
            }
        }
    }
    for to in dead {
        remove_dead(state, &to);
    }
    state.backlog.retain(|_, q| !q.is_empty());
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
    )
}

fn remove_dead(state: &mut HubState, to: &Path) {
    state.backlog.remove(to);
    state.monitors.remove(to);
    if state.clients.remove(to).is_some() {
        state.stats.dead_clients += 1;
    }
}

fn handle_datagram(
    state: &mut HubState,
    out: &UnixDatagram,
    started: Instant,
    datagram: &[u8],
    from: Option<&Path>,
) {
    let message = match ClientMessage::parse(datagram) {
        Ok(m) => m,
        Err(_) => {
            state.stats.malformed += 1;
            return;
        }
    };
    match message {
        ClientMessage::SetChannel { channel } => {
            // Unnamed sockets cannot be answered, so they cannot register.
            if let Some(path) = from {
                state.clients.insert(path.to_path_buf(), channel);
                state.monitors.remove(path);
            } else {
                state.stats.malformed += 1;
            }
        }
        ClientMessage::Monitor { channel } => {
            if let Some(path) = from {
                state.clients.insert(path.to_path_buf(), channel);
                state.monitors.insert(path.to_path_buf());
            } else {
                state.stats.malformed += 1;
            }
        }
        ClientMessage::Bye => {
            if let Some(path) = from {
                state.clients.remove(path);
                state.monitors.remove(path);
            }
        }
        ClientMessage::Transmit { channel, psdu, fcs } => {
            state.stats.frames_in += 1;
            let receivers: Vec<PathBuf> = state
                .clients
                .iter()
                .filter(|(path, ch)| **ch == channel && Some(path.as_path()) != from)
                .map(|(path, _)| path.clone())
                .collect();
            let now = Instant::now();
            let frame = OnAir { channel, psdu, fcs };
            for to in receivers {
                let link = from.and_then(|f| state.link_faults.get(&(f.to_path_buf(), to.clone())));
                let faults = match link {
                    Some(faults) => faults.clone(),
                    None if state.monitors.contains(&to) => FaultConfig::none(),
                    None => state.faults.clone(),
                };
                transmit_with_faults(state, out, started, now, &faults, to, &frame);
            }
        }
    }
}

/// One transmitted frame: its PSDU and the FCS its sender appended.
struct OnAir<'a> {
    channel: u8,
    psdu: &'a [u8],
    fcs: u16,
}

/// Flip one random bit of the frame as it is on the air: PSDU or FCS.
fn flip_one_bit(rng: &mut StdRng, psdu: &mut [u8], fcs: u16) -> u16 {
    let bit = rng.random_range(0..(psdu.len() + 2) * 8);
    match psdu.get_mut(bit / 8) {
        Some(byte) => {
            *byte ^= 1 << (bit % 8);
            fcs
        }
        None => fcs ^ (1 << (bit - psdu.len() * 8)),
    }
}

fn transmit_with_faults(
    state: &mut HubState,
    out: &UnixDatagram,
    started: Instant,
    now: Instant,
    faults: &FaultConfig,
    to: PathBuf,
    frame: &OnAir<'_>,
) {
    let channel = frame.channel;
    if faults.is_none() {
        send_now(state, out, started, &to, channel, frame.psdu, frame.fcs);
        return;
    }
    if faults.loss > 0.0 && state.rng.random_bool(faults.loss.clamp(0.0, 1.0)) {
        state.stats.injected_losses += 1;
        return;
    }
    let copies =
        if faults.duplicate > 0.0 && state.rng.random_bool(faults.duplicate.clamp(0.0, 1.0)) {
            state.stats.injected_duplicates += 1;
            2
        } else {
            1
        };
    for _ in 0..copies {
        let mut bytes = frame.psdu.to_vec();
        let mut fcs = frame.fcs;
        if faults.corrupt > 0.0 && state.rng.random_bool(faults.corrupt.clamp(0.0, 1.0)) {
            state.stats.injected_corruptions += 1;
            fcs = flip_one_bit(&mut state.rng, &mut bytes, fcs);
        }
        let jitter = if faults.jitter.is_zero() {
            Duration::ZERO
        } else {
            Duration::from_nanos(state.rng.random_range(0..=faults.jitter.as_nanos() as u64))
        };
        let delay = faults.delay + jitter;
        if delay.is_zero() {
            send_now(state, out, started, &to, channel, &bytes, fcs);
        } else {
            let order = state.next_order;
            state.next_order += 1;
            state.delayed.push(Reverse(Delayed {
                due: now + delay,
                order,
                to: to.clone(),
                channel,
                psdu: bytes,
                fcs,
            }));
        }
    }
}

fn deliver_due(state: &mut HubState, out: &UnixDatagram, started: Instant, now: Instant) {
    while state.delayed.peek().is_some_and(|Reverse(d)| d.due <= now) {
        let Some(Reverse(d)) = state.delayed.pop() else {
            break;
        };
        // The receiver may have left or retuned while the frame was in flight.
        if state.clients.get(&d.to) == Some(&d.channel) {
            send_now(state, out, started, &d.to, d.channel, &d.psdu, d.fcs);
        }
    }
}

fn send_now(
    state: &mut HubState,
    out: &UnixDatagram,
    started: Instant,
    to: &Path,
    channel: u8,
    psdu: &[u8],
    fcs: u16,
) {
    if state.monitors.contains(to) {
        state.stats.frames_to_monitors += 1;
    }
    let frame = AirFrame {
        channel,
        rssi_dbm: DEFAULT_RSSI_DBM,
        lqi: DEFAULT_LQI,
        timestamp_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        psdu: psdu.to_vec(),
        fcs,
    };
    let datagram = frame.emit();
    // Keep order: behind an existing backlog, a frame waits its turn.
    if let Some(queue) = state.backlog.get_mut(to) {
        if queue.len() >= BACKLOG_LIMIT {
            state.stats.receiver_overruns += 1;
        } else {
            queue.push_back(datagram);
        }
        return;
    }
    match out.send_to(&datagram, to) {
        Ok(_) => state.stats.frames_out += 1,
        Err(e) if is_gone(&e) => remove_dead(state, to),
        Err(_) => {
            // Queue full (EAGAIN) or a transient error: hold the frame and retry shortly.
            state
                .backlog
                .entry(to.to_path_buf())
                .or_default()
                .push_back(datagram);
        }
    }
}
