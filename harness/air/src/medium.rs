//! The air between the clients: the hub's shared state and how a frame travels from its
//! transmitter to every receiver (faults, delays, backlogs), and the case clock's steps.
//! [`crate::hub`] is its public face; [`crate::sim_nodes`] bridges OpenThread nodes into it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::clock::{ClockState, Step};
use crate::fault::FaultConfig;
use crate::proto::{AirFrame, ClientMessage, HubMessage};
use crate::sim_event::{ALARM_FIRED, RADIO_RECEIVED, SimEvent};
use crate::sim_node::SimNode;

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
    /// Hub time (µs) it is due at.
    due: u64,
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

/// Everything the hub knows, behind [`Shared::lock`].
pub(crate) struct HubState {
    /// Registered clients by socket path, with their channel (0 = radio off).
    pub(crate) clients: HashMap<PathBuf, u8>,
    /// Clients registered as monitors (sniffer radios): the global faults pass them by.
    pub(crate) monitors: HashSet<PathBuf>,
    pub(crate) stats: HubStats,
    pub(crate) faults: FaultConfig,
    pub(crate) link_faults: HashMap<(PathBuf, PathBuf), FaultConfig>,
    rng: StdRng,
    delayed: BinaryHeap<Reverse<Delayed>>,
    next_order: u64,
    /// Per receiver, datagrams waiting for room in its socket queue, in order.
    backlog: HashMap<PathBuf, VecDeque<Vec<u8>>>,
    /// Real time of the hub's start: the hub's time on a real clock.
    started: Instant,
    /// The case clock, when the hub runs one (then the hub's time is the case clock's).
    pub(crate) clock: Option<ClockState>,
    /// Real OpenThread nodes on the case clock, by their socket ([`crate::sim_nodes`]).
    pub(crate) sim_nodes: BTreeMap<PathBuf, SimNode>,
}

impl HubState {
    /// The hub's time in µs: since it started, or the case clock's instant.
    pub(crate) fn now_us(&self) -> u64 {
        match &self.clock {
            Some(clock) => clock.now_us,
            None => u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        }
    }

    /// Whether `to` is a connected OpenThread node ([`crate::sim_nodes`]).
    pub(crate) fn is_sim_node(&self, to: &Path) -> bool {
        self.sim_nodes.contains_key(to)
    }

    /// The connected OpenThread nodes.
    pub(crate) fn sim_node_paths(&self) -> Vec<PathBuf> {
        self.sim_nodes.keys().cloned().collect()
    }

    /// Send an event to node `to`, moving its clock to the hub's instant first; false when it
    /// is gone.
    pub(crate) fn send_to_sim_node(&mut self, to: &Path, kind: u8, data: Vec<u8>) -> bool {
        let now_us = self.now_us();
        let Some(node) = self.sim_nodes.get_mut(to) else {
            return false;
        };
        let sent = node.send(now_us, kind, data);
        if let Some(board) = self.clock.as_mut().and_then(|c| c.boards.get_mut(to)) {
            if sent {
                board.delivered += 1;
            } else {
                board.gone = true;
            }
        }
        sent
    }

    /// A frame for node `to`.
    pub(crate) fn send_frame_to_sim_node(
        &mut self,
        to: &Path,
        channel: u8,
        psdu: &[u8],
        fcs: u16,
    ) -> bool {
        let event = SimEvent::radio(0, channel, psdu, fcs);
        self.send_to_sim_node(to, RADIO_RECEIVED, event.data)
    }
}

/// What the hub thread, the node threads and the runner's handles share.
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    state: Mutex<HubState>,
    /// Deliveries go out of this non-blocking socket (from the hub thread and, on a case clock,
    /// from whoever moved the clock).
    pub(crate) out: UnixDatagram,
    /// Wakes the runner's wait on the case clock.
    pub(crate) runner_wake: tokio::sync::Notify,
    /// Wakes whoever waits for a monitor (a sniffer's radio) to register.
    pub(crate) monitor_registered: tokio::sync::Notify,
}

impl Shared {
    /// The state of a hub that has not heard from anyone yet; deliveries go out of `out`.
    pub(crate) fn new(out: UnixDatagram, seed: u64, clock: Option<ClockState>) -> Shared {
        Shared {
            stop: AtomicBool::new(false),
            out,
            runner_wake: tokio::sync::Notify::new(),
            monitor_registered: tokio::sync::Notify::new(),
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
                started: Instant::now(),
                clock,
                sim_nodes: BTreeMap::new(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HubState> {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hub thread: receive datagrams from the clients until the hub stops.
pub(crate) fn serve(socket: &UnixDatagram, shared: &Shared) {
    let out = &shared.out;
    // Larger than any valid datagram, so an oversized one shows up as too long, not truncated.
    let mut buf = vec![0u8; 4096];
    while !shared.stop.load(Ordering::SeqCst) {
        let wait = {
            let state = shared.lock();
            // On a case clock delayed frames fall due when the clock moves, not in real time.
            let delayed = match (&state.clock, state.delayed.peek()) {
                (None, Some(Reverse(d))) => {
                    Duration::from_micros(d.due.saturating_sub(state.now_us()))
                }
                _ => IDLE_WAKE,
            };
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
                let monitors = state.monitors.len();
                handle_datagram(&mut state, out, datagram, from.as_pathname());
                if state.monitors.len() != monitors {
                    shared.monitor_registered.notify_waiters();
                }
            }
            Err(_) => {
                // The wait timed out, or a receive error on a datagram socket that is transient
                // (e.g. ENOBUFS): carry on.
            }
        }
        let mut state = shared.lock();
        if state.clock.is_none() {
            let now = state.now_us();
            deliver_due(&mut state, out, now);
        }
        flush_backlogs(&mut state, out);
        progress(&mut state, shared);
    }
}

/// Carry out the case clock's steps until it has to wait for a board or the runner.
pub(crate) fn progress(state: &mut HubState, shared: &Shared) {
    loop {
        let next_delayed = state.delayed.peek().map(|Reverse(d)| d.due);
        let Some(clock) = state.clock.as_mut() else {
            return;
        };
        match clock.next_step(next_delayed) {
            Step::Hold => return,
            Step::Deliver(round) => {
                for tx in round {
                    let frame = OnAir {
                        channel: tx.channel,
                        psdu: &tx.psdu,
                        fcs: tx.fcs,
                    };
                    transmit(state, &shared.out, Some(&tx.from), &frame);
                }
            }
            Step::Advance(now_us) => {
                clock.now_us = now_us;
                clock.advances += 1;
                let boards: Vec<PathBuf> = clock
                    .boards
                    .iter()
                    .filter(|(_, b)| !b.gone)
                    .map(|(p, _)| p.clone())
                    .collect();
                deliver_due(state, &shared.out, now_us);
                let time = HubMessage::Time { now_us }.emit();
                for to in boards {
                    if state.is_sim_node(&to) {
                        state.send_to_sim_node(&to, ALARM_FIRED, Vec::new());
                    } else {
                        send_datagram(state, &shared.out, &to, time.clone());
                    }
                }
            }
            Step::Wake(wake) => {
                clock.runner = None;
                clock.wake = Some(wake);
                shared.runner_wake.notify_one();
                return;
            }
        }
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
    if let Some(board) = state.clock.as_mut().and_then(|c| c.boards.get_mut(to)) {
        board.gone = true;
    }
    state.backlog.remove(to);
    state.monitors.remove(to);
    if state.clients.remove(to).is_some() {
        state.stats.dead_clients += 1;
    }
}

fn handle_datagram(state: &mut HubState, out: &UnixDatagram, datagram: &[u8], from: Option<&Path>) {
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
            match (state.clock.as_mut(), from) {
                // On a case clock the frame waits for the instant's delivery round.
                (Some(clock), Some(from)) => clock.hold(from, channel, psdu, fcs),
                _ => transmit(state, out, from, &OnAir { channel, psdu, fcs }),
            }
        }
        ClientMessage::Idle(report) => match (state.clock.as_mut(), from) {
            (Some(clock), Some(from)) => {
                let now_us = clock.now_us;
                let board = clock.board(from);
                let first = board.report.is_none();
                board.report = Some(report);
                // A board that registers after the clock moved on learns the time.
                if first && report.now_us != now_us {
                    let time = HubMessage::Time { now_us }.emit();
                    send_datagram(state, out, from, time);
                }
            }
            _ => state.stats.malformed += 1,
        },
    }
}

/// Hand a transmitted frame to every other radio on its channel, through the faults of its link.
fn transmit(state: &mut HubState, out: &UnixDatagram, from: Option<&Path>, frame: &OnAir<'_>) {
    // Real OpenThread nodes tune their radios themselves: they get every frame and drop the
    // ones on other channels, as the simulation's own radio does.
    let mut receivers: Vec<PathBuf> = state
        .clients
        .iter()
        .filter(|(path, ch)| **ch == frame.channel && Some(path.as_path()) != from)
        .map(|(path, _)| path.clone())
        .chain(
            state
                .sim_node_paths()
                .into_iter()
                .filter(|p| Some(p.as_path()) != from),
        )
        .collect();
    // A simulated node's transmission ends when it hears its own frame back (`radioReceive`).
    if let Some(sender) = from.filter(|f| state.is_sim_node(f)) {
        state.send_frame_to_sim_node(sender, frame.channel, frame.psdu, frame.fcs);
    }
    // A fixed order, so the fault draws do not depend on the map's.
    let rank = |p: &PathBuf| {
        state
            .clock
            .as_ref()
            .and_then(|c| c.boards.get(p))
            .map_or(u32::MAX, |b| b.rank)
    };
    receivers.sort_by(|a, b| (rank(a), a).cmp(&(rank(b), b)));
    let now = state.now_us();
    for to in receivers {
        let link = from.and_then(|f| state.link_faults.get(&(f.to_path_buf(), to.clone())));
        let faults = match link {
            Some(faults) => faults.clone(),
            None if state.monitors.contains(&to) => FaultConfig::none(),
            None => state.faults.clone(),
        };
        transmit_with_faults(state, out, now, &faults, to, frame);
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
    now: u64,
    faults: &FaultConfig,
    to: PathBuf,
    frame: &OnAir<'_>,
) {
    let channel = frame.channel;
    if faults.is_none() {
        send_now(state, out, &to, channel, frame.psdu, frame.fcs);
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
        let delay = u64::try_from((faults.delay + jitter).as_micros()).unwrap_or(u64::MAX);
        if delay == 0 {
            send_now(state, out, &to, channel, &bytes, fcs);
        } else {
            let order = state.next_order;
            state.next_order += 1;
            state.delayed.push(Reverse(Delayed {
                due: now.saturating_add(delay),
                order,
                to: to.clone(),
                channel,
                psdu: bytes,
                fcs,
            }));
        }
    }
}

fn deliver_due(state: &mut HubState, out: &UnixDatagram, now: u64) {
    while state.delayed.peek().is_some_and(|Reverse(d)| d.due <= now) {
        let Some(Reverse(d)) = state.delayed.pop() else {
            break;
        };
        // The receiver may have left or retuned while the frame was in flight.
        if state.clients.get(&d.to) == Some(&d.channel) || state.is_sim_node(&d.to) {
            send_now(state, out, &d.to, d.channel, &d.psdu, d.fcs);
        }
    }
}

fn send_now(
    state: &mut HubState,
    out: &UnixDatagram,
    to: &Path,
    channel: u8,
    psdu: &[u8],
    fcs: u16,
) {
    if state.is_sim_node(to) {
        if state.send_frame_to_sim_node(to, channel, psdu, fcs) {
            state.stats.frames_out += 1;
        }
        return;
    }
    if state.monitors.contains(to) {
        state.stats.frames_to_monitors += 1;
    }
    let frame = AirFrame {
        channel,
        rssi_dbm: DEFAULT_RSSI_DBM,
        lqi: DEFAULT_LQI,
        timestamp_us: state.now_us(),
        psdu: psdu.to_vec(),
        fcs,
    };
    if send_datagram(state, out, to, frame.emit()) {
        state.stats.frames_out += 1;
        if let Some(board) = state.clock.as_mut().and_then(|c| c.boards.get_mut(to)) {
            board.delivered += 1;
        }
    }
}

/// Send one datagram to a client, behind its backlog if it has one; false when it was dropped
/// (the receiver overran its backlog, or is gone).
fn send_datagram(state: &mut HubState, out: &UnixDatagram, to: &Path, datagram: Vec<u8>) -> bool {
    // Keep order: behind an existing backlog, a datagram waits its turn.
    if let Some(queue) = state.backlog.get_mut(to) {
        if queue.len() >= BACKLOG_LIMIT {
            state.stats.receiver_overruns += 1;
            return false;
        }
        queue.push_back(datagram);
        return true;
    }
    match out.send_to(&datagram, to) {
        Ok(_) => true,
        Err(e) if is_gone(&e) => {
            remove_dead(state, to);
            false
        }
        Err(_) => {
            // Queue full (EAGAIN) or a transient error: hold the datagram and retry shortly.
            state
                .backlog
                .entry(to.to_path_buf())
                .or_default()
                .push_back(datagram);
            true
        }
    }
}
