//! The Thread stack model of the virtual DK.
//!
//! Sans-thread and sans-clock: the device's main loop feeds air frames ([`Stack::handle_air_frame`]),
//! runs timers ([`Stack::poll`] at [`Stack::next_deadline`]) and drains [`NetEvent`]s. Everything
//! the stack sends goes out as real IEEE 802.15.4 frames on the virtual air: Thread MAC security
//! (AES-CCM*, MIC-32, key id mode 1, MAC key from the network key; MLE uses MLE-layer security
//! instead), 6LoWPAN IPHC with the mesh-local prefix as context 0, UDP NHC, FRAG1/FRAGN. Nodes with another network key, PAN id
//! or channel never get a frame through, which is how separate networks stay apart.
//!
//! One room per file: the stack's state, its public API and the MAC transmit driver here;
//! `ipv6` (IPv6 in and out: delivery, forwarding, routing, 6LoWPAN compression and
//! fragmentation, MAC security on the way out), `mac_rx` (MAC in: filtering, Imm-Ack, unsecuring,
//! replay check, reassembly), `mac_tx` (the transmit queue and its retries), `attach`, `mle`,
//! `resolve`, `tmf`, `ping`, `dataset`.
//!
//! # What is modelled, and how it differs from Thread
//! - **Attach.** `thread start` sends an MLE Parent Request (to `ff02::2`, routers) at once and,
//!   when no parent answered by [`PARENT_REQUEST_RETRY`], again (routers and REEDs). A leader
//!   answers with a Parent Response; the node keeps the best answer of the request's window (the
//!   better partition) and, when the window ends, sends it a Child ID Request (registering its
//!   ML-EID), as OpenThread's `Mle::HandleAttachTimer` does; the leader assigns `its RLOC16 |
//!   child id` in the Child ID Response: the node is a child a few milliseconds after the first
//!   window ends. With no answer by [`DISCOVERY_WINDOW`] the node becomes leader of its own partition (random router id,
//!   RLOC16 = id << 10, random partition id, leader ALOC `fc00`). MLE messages are secured at the
//!   MLE layer (key id mode 2, MLE key) in MAC frames without MAC security, from extended MAC
//!   addresses, as Thread sends them; their Source Address / Address16 TLVs let receivers (and a
//!   sniffer) map short addresses to extended ones. Leaders send MLE Advertisements (to `ff02::1`,
//!   trickle from [`ADVERTISEMENT_IMIN`] doubling to 32 s); a leader that hears a better partition
//!   (higher partition id at equal weighting) re-attaches to it, so two nodes started at the same
//!   moment end up in one partition. Not modelled: router upgrade (children stay children), Route64
//!   and network data, child timeouts and keep-alives (a child notices a lost parent only when its
//!   frames to it fail, see **MAC**, or the parent advertises another partition), key rotation,
//!   MLE frame-counter checks.
//! - **Routing.** A child sends every unicast to its parent (MAC short address); the leader
//!   delivers to its children and forwards between them (hop limit decremented), and rebroadcasts
//!   realm-local multicast a child sent (one MPL-like repetition). Link-local unicast goes straight
//!   to the extended address derived from the IID. Multicast uses MAC broadcast 0xffff, except
//!   that a child sends non-MLE multicast (an Address Query) as a MAC unicast to its parent, as
//!   OpenThread's `MeshForwarder` does for an end device.
//! - **Address resolution** for ML-EIDs, carried on the air as Thread does: Address Query (TMF
//!   CoAP NON POST `a/aq` to `ff03::2`, Target EID TLV), answered by the owner or, for its
//!   children, by the parent, with Address Notification (CON POST `a/an`: Target EID, RLOC16,
//!   ML-EID IID), then cached. Datagrams wait for the answer up to [`ADDRESS_QUERY_TIMEOUT`] and
//!   are dropped after it.
//! - **MAC.** Frames from short source addresses are decrypted with the extended address learned
//!   during attach (the only neighbours a node has: its parent, or the leader's children); others
//!   are dropped as unknown neighbours. Per-neighbour frame counters reject replays (and
//!   duplicated frames). Transmission goes through one FIFO queue with one frame on the air at a
//!   time (fragments of a datagram stay in order; `mac_tx`). A unicast frame asks for an Imm-Ack
//!   and waits [`ACK_TIMEOUT`] for it; without one it is sent again, the same bytes (same sequence
//!   number, same frame counter), up to [`MAX_FRAME_RETRIES`] times, then dropped and counted
//!   (`tx_retries`, `tx_failures`), as OpenThread's `SubMac` retransmits. Broadcast frames are sent
//!   once. Frames carry their FCS on the virtual air; the receiving radio drops one whose FCS
//!   fails (`rx_fcs_errors`) before anything else, unacknowledged, so a frame corrupted on the
//!   air is retried like a lost one. The receiver acks right after address filtering (PAN id
//!   and destination), before
//!   decryption and the replay check, as the radio acks in hardware: a copy sent again because its
//!   ack was lost is acked again and dropped by the frame counter check. A child counts frames to
//!   its parent that failed after all retries: after [`PARENT_LOST_AFTER_NO_ACKS`] in a row (an
//!   acked frame resets the count, OpenThread's neighbour link-failure count) it looks for a
//!   parent again (and leads its own partition if none answers). No CSMA-CA: the virtual air has
//!   no collisions and no busy channel, so there is nothing for it to avoid; nor OpenThread's
//!   random delay before a retry. The ack wait is far longer than a radio's (about 1 ms): it must
//!   cover process scheduling, see [`ACK_TIMEOUT`].

mod attach;
pub mod dataset;
mod ipv6;
mod mac_rx;
mod mac_tx;
pub mod mle;
mod ping;
mod resolve;
pub mod tmf;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use ot_hil_air::{AirClient, AirFrame};
use ot_hil_wire::ip::{self, AddressClass};
use ot_hil_wire::lowpan::{self, Context, Reassembler};
use ot_hil_wire::mac::{Address, ExtAddress};
use ot_hil_wire::security;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::ot_error::OtError;
use mac_tx::{MacTx, TxAction, TxFrame, TxResult};

pub use dataset::{ActiveDataset, SecurityPolicy};

/// How long a node listens for a parent before it becomes leader of its own partition: the
/// first Parent Request's window ([`PARENT_REQUEST_RETRY`]) and the second's, 75 + 125 ms.
/// OpenThread's are 750 ms (`kParentRequestRouterTimeout`) and 1250 ms
/// (`kParentRequestReedTimeout`, `src/core/thread/mle.hpp` of openthread-sys 0.4.0); the model
/// keeps their proportions at a tenth, so that formation on the host's clock stays quick.
pub const DISCOVERY_WINDOW: Duration = Duration::from_millis(200);
/// End of the first Parent Request's window: a parent heard by then is chosen (Child ID Request),
/// else the request is repeated to routers and REEDs (OpenThread's 750 ms at a tenth).
pub const PARENT_REQUEST_RETRY: Duration = Duration::from_millis(75);
/// First MLE Advertisement interval of a new leader; it doubles up to [`ADVERTISEMENT_IMAX`]
/// (a trickle timer with OpenThread's 32 s maximum, but a shorter start so that two partitions
/// formed at the same moment merge in well under a second).
pub const ADVERTISEMENT_IMIN: Duration = Duration::from_millis(100);
pub const ADVERTISEMENT_IMAX: Duration = Duration::from_secs(32);
/// How long a sender waits for the Imm-Ack of one attempt before it sends the frame again.
///
/// A radio waits about a millisecond (macAckWaitDuration). Here the ack crosses two processes and
/// the hub: well under a millisecond on an idle machine, longer when 32 virtual DKs share two
/// cores and a process waits for its turn. An ack that comes after the retry is not lost: it
/// carries the frame's sequence number and still completes the frame, and the receiver acks and
/// drops the extra copy, so a short wait costs duplicates, not failures. A frame fails only when
/// no ack comes for any of its `1 + MAX_FRAME_RETRIES` attempts, about a second of silence, yet a
/// child still notices a parent that is gone within [`PARENT_LOST_AFTER_NO_ACKS`] such seconds.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(60);
/// Retransmissions of an unacknowledged unicast frame: OpenThread's
/// `OPENTHREAD_CONFIG_MAC_DEFAULT_MAX_FRAME_RETRIES_DIRECT` (src/core/config/mac.h), 15 since
/// openthread PR #6263 (2021, after Thread 1.2.1; it was 3 before), so in the OpenThread of every
/// NCS release the variants model. Up to 16 attempts in all.
pub const MAX_FRAME_RETRIES: u8 = 15;
/// `OPENTHREAD_CONFIG_MAC_DEFAULT_MAX_FRAME_RETRIES_INDIRECT` (src/core/config/mac.h): 0.
pub const MAX_FRAME_RETRIES_INDIRECT: u8 = 0;
/// Frames to the parent in a row that failed after all their retries, after which a child takes
/// its parent for gone: OpenThread's `Mle::kFailedRouterTransmissions` (4), which
/// `MeshForwarder::UpdateNeighborLinkFailures` compares with the neighbour's link failures (one per
/// frame that ended in no-ack, reset by an acked one) before `MleRouter::RemoveRouterLink`, which
/// makes a child whose parent it is detached.
pub const PARENT_LOST_AFTER_NO_ACKS: u32 = 4;
/// How long a node waits for the Child ID Response before it starts over.
pub const CHILD_ID_TIMEOUT: Duration = Duration::from_millis(500);
/// OpenThread's address query timeout (`kAddressQueryTimeout`, 3 s).
pub const ADDRESS_QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// OpenThread's default ping timeout: the summary comes this long after the last request.
pub const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// 6LoWPAN reassembly timeout (OpenThread `kReassemblyTimeout`, 2 s).
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Default IPv6 hop limit.
pub const DEFAULT_HOP_LIMIT: u8 = 64;
/// RLOC16 of a node without one (`ot rloc16` prints `fffe`).
pub const INVALID_RLOC16: u16 = 0xfffe;
/// The leader anycast locator.
pub const LEADER_ALOC16: u16 = 0xfc00;
/// Largest IPv6 packet the stack sends (the IPv6 minimum MTU).
pub const IPV6_MTU: usize = 1280;

const MAC_BROADCAST: u16 = 0xffff;
const MAX_PSDU: usize = 125;
const MIC_LEN: usize = 4;
/// MLE messages use the highest hop limit (they must not leave the link).
const MLE_HOP_LIMIT: u8 = 255;
const LEADER_WEIGHTING: u8 = 64;
/// Key rotation is not modelled: every node stays on key sequence 0.
const KEY_SEQUENCE: u32 = 0;

const ALL_NODES_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const ALL_NODES_REALM_LOCAL: Ipv6Addr = Ipv6Addr::new(0xff03, 0, 0, 0, 0, 0, 0, 1);
const ALL_ROUTERS_REALM_LOCAL: Ipv6Addr = Ipv6Addr::new(0xff03, 0, 0, 0, 0, 0, 0, 2);

/// Errors of the stack's own message codecs (MLE, TMF); they are counted, never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("bad mle message: {0}")]
    Mle(&'static str),
    #[error("bad tmf message: {0}")]
    Tmf(&'static str),
}

/// Thread device role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Disabled,
    Detached,
    Child,
    Router,
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Disabled => "disabled",
            Role::Detached => "detached",
            Role::Child => "child",
            Role::Router => "router",
            Role::Leader => "leader",
        })
    }
}

/// What kind of address an entry of [`Stack::addresses`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKind {
    LinkLocal,
    MeshLocalEid,
    Rloc,
    Aloc,
}

/// Something that happened in the stack, for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    RoleChanged(Role),
    /// A datagram for a port opened with [`Stack::udp_open`].
    Udp {
        src: SocketAddrV6,
        dst: SocketAddrV6,
        payload: Vec<u8>,
    },
    PingReply {
        from: Ipv6Addr,
        size: u16,
        seq: u16,
        hop_limit: u8,
        rtt: Duration,
    },
    /// The ping finished: every reply arrived, or [`PING_TIMEOUT`] passed after the last request.
    PingDone {
        sent: u16,
        received: u16,
        rtt_min: Duration,
        rtt_avg: Duration,
        rtt_max: Duration,
    },
}

/// MAC and network counters (what a sniffer-less test can check).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub tx_frames: u64,
    pub tx_errors: u64,
    /// Retransmissions of unicast frames whose ack did not come in [`ACK_TIMEOUT`].
    pub tx_retries: u64,
    /// Unicast frames dropped unacknowledged after [`MAX_FRAME_RETRIES`] retries.
    pub tx_failures: u64,
    /// Imm-Acks sent (one per received unicast frame that asked, duplicates included).
    pub tx_acks: u64,
    pub rx_frames: u64,
    /// Frames dropped by the radio because their FCS failed (corrupted on the air).
    pub rx_fcs_errors: u64,
    /// Frames or MLE messages that failed CCM* authentication (another network key, or corrupted).
    pub rx_bad_mic: u64,
    /// Secured frames with a key index other than ours.
    pub rx_bad_key_index: u64,
    /// Frames from a short address this node has no extended address for.
    pub rx_unknown_neighbor: u64,
    /// Frames for another PAN.
    pub rx_pan_filtered: u64,
    /// Frames for another destination address.
    pub rx_dst_filtered: u64,
    /// Data frames without MAC security that were not MLE.
    pub rx_insecure: u64,
    /// Frames whose frame counter was not above the last one from that neighbour.
    pub rx_replayed: u64,
    /// Frames or datagrams that did not decode.
    pub rx_malformed: u64,
    /// Datagrams dropped for want of a route or an address query answer.
    pub ip_no_route: u64,
    pub ip_forwarded: u64,
    pub address_queries_sent: u64,
    pub address_query_timeouts: u64,
}

impl NetCounters {
    /// A frame or MLE message that CCM* could not unsecure: a wrong MIC, or it did not decode.
    fn count_unsecure_error(&mut self, e: &ot_hil_wire::WireError) {
        if matches!(e, ot_hil_wire::WireError::BadMic) {
            self.rx_bad_mic += 1;
        } else {
            self.rx_malformed += 1;
        }
    }
}

/// A leader that answered a Parent Request: what the Child ID Request to it needs, and its
/// partition to compare with other answers.
#[derive(Debug, Clone)]
struct ParentCandidate {
    parent: Neighbor,
    src: Ipv6Addr,
    leader_data: mle::LeaderData,
    their_challenge: Vec<u8>,
}

/// The other end of a link: parent or child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Neighbor {
    ext: ExtAddress,
    rloc16: u16,
}

#[derive(Debug, Clone)]
struct Child {
    ext: ExtAddress,
    rloc16: u16,
    registered: Vec<Ipv6Addr>,
}

#[derive(Debug, Clone)]
enum Attach {
    Idle,
    /// Parent Requests sent, collecting Parent Responses until the request's window ends.
    Discovering {
        challenge: [u8; 8],
        retry_at: Option<Instant>,
        leader_at: Instant,
        /// The best parent heard so far in this window.
        candidate: Option<ParentCandidate>,
    },
    /// Child ID Request sent to `parent`.
    Requesting {
        parent: Neighbor,
        give_up_at: Instant,
    },
    Attached,
}

#[derive(Debug)]
struct Ping {
    request: PingRequest,
    identifier: u16,
    sent: u16,
    received: u16,
    next_send: Option<Instant>,
    done_at: Option<Instant>,
    outstanding: HashMap<u16, Instant>,
    rtts: Vec<Duration>,
}

/// Everything `ping` can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingRequest {
    pub dst: Ipv6Addr,
    /// Source address; `None` = chosen from the destination.
    pub src: Option<Ipv6Addr>,
    /// Echo data bytes.
    pub size: u16,
    pub count: u16,
    pub interval: Duration,
    pub hop_limit: u8,
    /// How long after the last request the summary waits for replies.
    pub timeout: Duration,
}

impl PingRequest {
    /// OpenThread's defaults: 8 bytes, 1 request, 1 s interval, hop limit 64, 3 s timeout.
    pub fn new(dst: Ipv6Addr) -> Self {
        PingRequest {
            dst,
            src: None,
            size: 8,
            count: 1,
            interval: Duration::from_secs(1),
            hop_limit: DEFAULT_HOP_LIMIT,
            timeout: PING_TIMEOUT,
        }
    }
}

/// A datagram waiting for its destination's RLOC16.
#[derive(Debug)]
struct Queued {
    target: Ipv6Addr,
    packet: Vec<u8>,
}

/// The Thread stack of one virtual DK.
pub struct Stack {
    ext: ExtAddress,
    air: Option<AirClient>,
    defaults: ActiveDataset,
    dataset: ActiveDataset,
    ml_eid_iid: [u8; 8],
    up: bool,
    role: Role,
    rloc16: u16,
    mac_key: [u8; 16],
    mle_key: [u8; 16],
    key_index: u8,
    frame_counter: u32,
    mle_frame_counter: u32,
    mac_sequence: u8,
    frag_tag: u16,
    attach: Attach,
    parent: Option<Neighbor>,
    children: Vec<Child>,
    partition_id: u32,
    leader_router_id: u8,
    /// Next MLE Advertisement of a leader and the current interval.
    advertise: Option<(Instant, Duration)>,
    /// Frames waiting for the radio and the one waiting for its Imm-Ack.
    mac_tx: MacTx,
    /// Whether [`Stack::run_mac_tx`] is on the call stack (frames queued meanwhile wait for it).
    mac_tx_running: bool,
    /// Frames to the parent in a row that failed after all retries.
    parent_tx_failures: u32,
    /// `mac retries indirect`: kept for the CLI only, as there are no sleepy children to send
    /// indirect frames to.
    max_frame_retries_indirect: u8,
    /// Challenges this leader put in Parent Responses, by requester.
    issued_challenges: HashMap<ExtAddress, [u8; 8]>,
    rx_frame_counters: HashMap<ExtAddress, u32>,
    eid_cache: HashMap<Ipv6Addr, u16>,
    queries: HashMap<Ipv6Addr, Instant>,
    queued: Vec<Queued>,
    reassembler: Reassembler,
    udp_ports: BTreeSet<u16>,
    ping: Option<Ping>,
    echo_sequence: u16,
    ping_identifier: u16,
    coap_message_id: u16,
    events: Vec<NetEvent>,
    counters: NetCounters,
    rng: StdRng,
    /// Origin of the millisecond timestamps in echo data.
    epoch: Instant,
}

impl Stack {
    /// A stack with the interface down and Thread disabled. `eui64` is the factory EUI-64; the
    /// extended address is random, as OpenThread makes it.
    pub fn new(eui64: [u8; 8], air: Option<AirClient>, defaults: ActiveDataset) -> Self {
        let mut seed: [u8; 32] = crate::entropy::with(|r| r.random());
        // Mix in the EUI-64 so two boards started in the same instant still differ.
        for (s, e) in seed.iter_mut().zip(eui64.iter()) {
            *s ^= *e;
        }
        let mut rng = StdRng::from_seed(seed);
        let ext = random_ext_addr(&mut rng);
        let ml_eid_iid = random_iid(&mut rng);
        if let Some(air) = &air {
            // The radio stays off until Thread starts.
            let _ = air.set_channel(0);
        }
        let mut stack = Stack {
            ext,
            air,
            dataset: defaults.clone(),
            defaults,
            ml_eid_iid,
            up: false,
            role: Role::Disabled,
            rloc16: INVALID_RLOC16,
            mac_key: [0; 16],
            mle_key: [0; 16],
            key_index: security::key_index(0),
            frame_counter: 0,
            mle_frame_counter: 0,
            mac_sequence: rng.random(),
            frag_tag: rng.random(),
            attach: Attach::Idle,
            parent: None,
            children: Vec::new(),
            partition_id: 0,
            leader_router_id: 0,
            advertise: None,
            mac_tx: MacTx::new(ACK_TIMEOUT, MAX_FRAME_RETRIES),
            mac_tx_running: false,
            parent_tx_failures: 0,
            max_frame_retries_indirect: MAX_FRAME_RETRIES_INDIRECT,
            issued_challenges: HashMap::new(),
            rx_frame_counters: HashMap::new(),
            eid_cache: HashMap::new(),
            queries: HashMap::new(),
            queued: Vec::new(),
            reassembler: Reassembler::new(REASSEMBLY_TIMEOUT),
            udp_ports: BTreeSet::new(),
            ping: None,
            echo_sequence: 1,
            ping_identifier: rng.random(),
            coap_message_id: rng.random(),
            events: Vec::new(),
            counters: NetCounters::default(),
            rng,
            epoch: Instant::now(),
        };
        stack.derive_keys();
        stack
    }

    /// Back to factory state: dataset = defaults, new extended address and ML-EID, Thread stopped,
    /// interface down.
    pub fn factory_reset(&mut self) {
        self.thread_stop();
        self.up = false;
        self.dataset = self.defaults.clone();
        self.ext = random_ext_addr(&mut self.rng);
        self.ml_eid_iid = random_iid(&mut self.rng);
        self.frame_counter = 0;
        self.mle_frame_counter = 0;
        self.udp_ports.clear();
        self.ping = None;
        self.events.clear();
        self.counters = NetCounters::default();
        self.derive_keys();
    }

    pub fn dataset(&self) -> &ActiveDataset {
        &self.dataset
    }

    /// Replace the active dataset; `InvalidState` while Thread runs. A dataset for another network
    /// (other mesh-local prefix, extended PAN id or key) gets a new random ML-EID.
    pub fn set_dataset(&mut self, ds: ActiveDataset) -> Result<(), OtError> {
        if self.role != Role::Disabled {
            return Err(OtError::InvalidState);
        }
        if ds.mesh_local_prefix != self.dataset.mesh_local_prefix
            || ds.ext_pan_id != self.dataset.ext_pan_id
            || ds.network_key != self.dataset.network_key
        {
            self.ml_eid_iid = random_iid(&mut self.rng);
        }
        self.dataset = ds;
        self.derive_keys();
        Ok(())
    }

    /// The extended address in canonical order (as `extaddr` prints it).
    pub fn ext_addr(&self) -> [u8; 8] {
        self.ext.0
    }

    /// `InvalidState` while Thread runs.
    pub fn set_ext_addr(&mut self, ext: [u8; 8]) -> Result<(), OtError> {
        if self.role != Role::Disabled {
            return Err(OtError::InvalidState);
        }
        self.ext = ExtAddress(ext);
        Ok(())
    }

    pub fn ifconfig_up(&mut self) -> Result<(), OtError> {
        self.up = true;
        Ok(())
    }

    /// Bringing the interface down stops Thread too (as OpenThread's `ThreadNetif::Down`).
    pub fn ifconfig_down(&mut self) -> Result<(), OtError> {
        self.thread_stop();
        self.up = false;
        Ok(())
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Start Thread: tune the radio and look for a parent. `InvalidState` if the interface is down.
    pub fn thread_start(&mut self, now: Instant) -> Result<(), OtError> {
        if !self.up {
            return Err(OtError::InvalidState);
        }
        if self.role != Role::Disabled {
            return Ok(());
        }
        self.derive_keys();
        if let Some(air) = &self.air {
            air.set_channel(self.dataset.channel)
                .map_err(|_| OtError::Failed)?;
        }
        self.set_role(Role::Detached);
        self.start_discovery(now);
        Ok(())
    }

    /// Stop Thread: role disabled, radio off, neighbours and caches forgotten.
    pub fn thread_stop(&mut self) {
        if self.role == Role::Disabled {
            return;
        }
        if let Some(air) = &self.air {
            let _ = air.set_channel(0);
        }
        self.detach_state();
        self.set_role(Role::Disabled);
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// `mac retries direct`: retransmissions of an unacknowledged unicast frame (RAM: a reboot
    /// restores [`MAX_FRAME_RETRIES`]).
    pub fn max_frame_retries_direct(&self) -> u8 {
        self.mac_tx.max_retries()
    }

    pub fn set_max_frame_retries_direct(&mut self, retries: u8) {
        self.mac_tx.set_max_retries(retries);
    }

    /// `mac retries indirect`: stored and shown, without effect in this model (no sleepy
    /// children, so no indirect transmissions).
    pub fn max_frame_retries_indirect(&self) -> u8 {
        self.max_frame_retries_indirect
    }

    pub fn set_max_frame_retries_indirect(&mut self, retries: u8) {
        self.max_frame_retries_indirect = retries;
    }

    pub fn rloc16(&self) -> u16 {
        self.rloc16
    }

    /// Unicast addresses in the order OpenThread's `ipaddr` prints them (newest first: leader
    /// ALOC, RLOC, ML-EID, link-local).
    pub fn addresses(&self) -> Vec<(Ipv6Addr, AddressKind)> {
        let mut out = Vec::new();
        if !self.up {
            return out;
        }
        let prefix = &self.dataset.mesh_local_prefix;
        if self.role == Role::Leader {
            out.push((ip::aloc(prefix, LEADER_ALOC16), AddressKind::Aloc));
        }
        if matches!(self.role, Role::Child | Role::Router | Role::Leader) {
            out.push((ip::rloc(prefix, self.rloc16), AddressKind::Rloc));
        }
        out.push((self.ml_eid(), AddressKind::MeshLocalEid));
        out.push((self.link_local(), AddressKind::LinkLocal));
        out
    }

    /// Start pinging `dst`: `count` echo requests of `size` data bytes, `interval` apart, with
    /// OpenThread's default timeout. Replies and the summary arrive as events. `Busy` while a ping
    /// runs.
    pub fn ping(
        &mut self,
        now: Instant,
        dst: Ipv6Addr,
        size: u16,
        count: u16,
        interval: Duration,
        hop_limit: u8,
    ) -> Result<(), OtError> {
        let request = PingRequest {
            size,
            count,
            interval,
            hop_limit,
            ..PingRequest::new(dst)
        };
        self.ping_request(now, &request)
    }

    /// [`Stack::ping`] with every option of the CLI's `ping` (source address, timeout).
    /// `InvalidArgs` for a source that is not one of this node's addresses.
    pub fn ping_request(&mut self, now: Instant, request: &PingRequest) -> Result<(), OtError> {
        if self.ping.is_some() {
            return Err(OtError::Busy);
        }
        // No IPv6 fragmentation in this model: one echo must fit the IPv6 minimum MTU.
        if request.count == 0 || usize::from(request.size) + 48 > IPV6_MTU || request.hop_limit == 0
        {
            return Err(OtError::InvalidArgs);
        }
        if let Some(src) = request.src
            && !self.is_own_unicast(&src)
        {
            return Err(OtError::InvalidArgs);
        }
        self.ping_identifier = self.ping_identifier.wrapping_add(1);
        self.ping = Some(Ping {
            request: *request,
            identifier: self.ping_identifier,
            sent: 0,
            received: 0,
            next_send: Some(now),
            done_at: None,
            outstanding: HashMap::new(),
            rtts: Vec::new(),
        });
        self.run_ping(now);
        Ok(())
    }

    /// Stop the running ping without a summary (`ping stop`).
    pub fn ping_stop(&mut self) {
        self.ping = None;
    }

    /// Open a UDP port: datagrams to it become [`NetEvent::Udp`]. `Already` if open.
    pub fn udp_open(&mut self, port: u16) -> Result<(), OtError> {
        if port == 0 || port == mle::PORT || port == tmf::PORT {
            return Err(OtError::InvalidArgs);
        }
        if !self.udp_ports.insert(port) {
            return Err(OtError::Already);
        }
        Ok(())
    }

    pub fn udp_close(&mut self, port: u16) {
        self.udp_ports.remove(&port);
    }

    /// Send a UDP datagram from `src_port` (the source address is chosen from `dst`).
    pub fn udp_send(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: SocketAddrV6,
        payload: &[u8],
    ) -> Result<(), OtError> {
        if !self.up || self.role == Role::Disabled {
            return Err(OtError::InvalidState);
        }
        if payload.len() + 48 > IPV6_MTU {
            return Err(OtError::NoBufs);
        }
        let src = self.source_for(dst.ip()).ok_or(OtError::NoRoute)?;
        let packet = ip::udp_packet(
            SocketAddrV6::new(src, src_port, 0, 0),
            dst,
            DEFAULT_HOP_LIMIT,
            payload,
        );
        self.send_ipv6(now, packet);
        Ok(())
    }

    /// Take one frame the radio received.
    pub fn handle_air_frame(&mut self, now: Instant, frame: &AirFrame) {
        if self.role == Role::Disabled || frame.channel != self.dataset.channel {
            return;
        }
        // The radio checks the FCS first and drops a frame that fails it without a word: no
        // ack, so the sender retries as it would a lost frame.
        if !frame.fcs_ok() {
            self.counters.rx_fcs_errors += 1;
            return;
        }
        self.receive_frame(now, &frame.psdu);
    }

    /// Run what is due at `now`.
    pub fn poll(&mut self, now: Instant) {
        self.run_attach_timers(now);
        self.run_advertisement(now);
        self.run_mac_tx(now);
        self.run_ping(now);
        self.expire_queries(now);
        self.reassembler.expire(now);
    }

    /// When [`Stack::poll`] next has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        let attach = match &self.attach {
            Attach::Discovering {
                retry_at,
                leader_at,
                ..
            } => Some(retry_at.map_or(*leader_at, |r| r.min(*leader_at))),
            Attach::Requesting { give_up_at, .. } => Some(*give_up_at),
            Attach::Idle | Attach::Attached => None,
        };
        let advertise = self.advertise.map(|(at, _)| at);
        let ack = self.mac_tx.next_deadline();
        let ping = self
            .ping
            .as_ref()
            .and_then(|p| [p.next_send, p.done_at].into_iter().flatten().min());
        let queries = self.queries.values().min().copied();
        [
            attach,
            advertise,
            ack,
            ping,
            queries,
            self.reassembler.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn take_events(&mut self) -> Vec<NetEvent> {
        std::mem::take(&mut self.events)
    }

    /// A second handle on the radio, to receive on while this one sends.
    pub fn air_receiver(&self) -> Option<AirClient> {
        self.air.as_ref().and_then(|a| a.try_clone().ok())
    }

    pub fn counters(&self) -> &NetCounters {
        &self.counters
    }

    /// The leader's partition id (0 before attach).
    pub fn partition_id(&self) -> u32 {
        self.partition_id
    }

    /// The parent's RLOC16 and extended address, for a child.
    pub fn parent(&self) -> Option<(u16, [u8; 8])> {
        self.parent.map(|p| (p.rloc16, p.ext.0))
    }

    /// Attached children: RLOC16 and extended address.
    pub fn children(&self) -> Vec<(u16, [u8; 8])> {
        self.children.iter().map(|c| (c.rloc16, c.ext.0)).collect()
    }

    /// Reassembly counters of the 6LoWPAN layer.
    pub fn reassembly_stats(&self) -> lowpan::ReassemblyStats {
        self.reassembler.stats()
    }

    // -- Addresses --

    pub fn link_local(&self) -> Ipv6Addr {
        ip::link_local_from_ext(&self.ext)
    }

    pub fn ml_eid(&self) -> Ipv6Addr {
        ip::from_prefix_iid(&self.dataset.mesh_local_prefix, &self.ml_eid_iid)
    }

    fn is_attached(&self) -> bool {
        matches!(self.role, Role::Child | Role::Router | Role::Leader)
    }

    fn is_own_unicast(&self, addr: &Ipv6Addr) -> bool {
        self.addresses().iter().any(|(a, _)| a == addr)
    }

    fn is_subscribed(&self, addr: &Ipv6Addr) -> bool {
        *addr == ALL_NODES_LINK_LOCAL
            || *addr == ALL_NODES_REALM_LOCAL
            || *addr == ALL_ROUTERS_LINK_LOCAL
            || *addr == ALL_ROUTERS_REALM_LOCAL
    }

    /// Source address for `dst` (OpenThread's rule in this model: link-local for link-local and
    /// link-local multicast, RLOC for locators and realm-local multicast, ML-EID otherwise).
    fn source_for(&self, dst: &Ipv6Addr) -> Option<Ipv6Addr> {
        let prefix = &self.dataset.mesh_local_prefix;
        match ip::classify(dst, prefix) {
            AddressClass::LinkLocal | AddressClass::Multicast { scope: 2 } => {
                Some(self.link_local())
            }
            AddressClass::MeshLocalRloc(_)
            | AddressClass::MeshLocalAloc(_)
            | AddressClass::Multicast { .. } => {
                if self.is_attached() {
                    Some(ip::rloc(prefix, self.rloc16))
                } else {
                    Some(self.ml_eid())
                }
            }
            AddressClass::MeshLocalEid | AddressClass::Loopback => Some(self.ml_eid()),
            AddressClass::Unspecified | AddressClass::Other => None,
        }
    }

    fn contexts(&self) -> [Context; 1] {
        [Context {
            id: 0,
            prefix: self.dataset.mesh_local_prefix,
        }]
    }

    fn derive_keys(&mut self) {
        let keys = security::derive_keys(&self.dataset.network_key, KEY_SEQUENCE);
        self.mac_key = keys.mac_key;
        self.mle_key = keys.mle_key;
        self.key_index = security::key_index(KEY_SEQUENCE);
    }

    fn set_role(&mut self, role: Role) {
        if self.role != role {
            self.role = role;
            self.events.push(NetEvent::RoleChanged(role));
        }
    }

    fn detach_state(&mut self) {
        self.attach = Attach::Idle;
        self.rloc16 = INVALID_RLOC16;
        self.parent = None;
        self.children.clear();
        self.partition_id = 0;
        self.advertise = None;
        self.mac_tx.clear();
        self.parent_tx_failures = 0;
        self.issued_challenges.clear();
        self.rx_frame_counters.clear();
        self.eid_cache.clear();
        self.queries.clear();
        self.queued.clear();
    }

    fn run_mac_tx(&mut self, now: Instant) {
        // Completing a frame can queue frames (a detached child's Parent Request); this loop
        // sends them, in order, after the step that caused them.
        if self.mac_tx_running {
            return;
        }
        self.mac_tx_running = true;
        while let Some(action) = self.mac_tx.poll(now) {
            self.mac_tx_action(now, action);
        }
        self.mac_tx_running = false;
    }

    fn mac_tx_action(&mut self, now: Instant, action: TxAction) {
        match action {
            TxAction::Send { psdu, retry } => {
                if retry {
                    self.counters.tx_retries += 1;
                }
                self.send_psdu(&psdu);
            }
            TxAction::Done { dst, result } => self.frame_done(now, dst, result),
        }
    }

    /// A unicast frame was acknowledged or failed. A child whose parent stopped acknowledging
    /// (reset, crashed, switched off) looks for a new parent, and leads its own partition if
    /// there is none.
    fn frame_done(&mut self, now: Instant, dst: Address, result: TxResult) {
        if result == TxResult::NoAck {
            self.counters.tx_failures += 1;
        }
        let to_parent = self.role == Role::Child
            && self.parent.is_some_and(|p| {
                dst == Address::Short(p.rloc16) || dst == Address::Extended(p.ext)
            });
        if !to_parent {
            return;
        }
        match result {
            TxResult::Acked => self.parent_tx_failures = 0,
            TxResult::NoAck => self.parent_tx_failures += 1,
        }
        if self.parent_tx_failures >= PARENT_LOST_AFTER_NO_ACKS {
            self.detach_state();
            self.set_role(Role::Detached);
            self.start_discovery(now);
        }
    }

    fn send_psdu(&mut self, psdu: &[u8]) {
        let Some(air) = &self.air else {
            return;
        };
        match air.send(psdu) {
            Ok(()) => self.counters.tx_frames += 1,
            Err(_) => self.counters.tx_errors += 1,
        }
    }
}

/// The TLVs of an MLE, TMF or MeshCoP payload (one-byte type and length), in order. Where one
/// is cut short the last item is an error naming what is missing.
fn tlvs(bytes: &[u8]) -> impl Iterator<Item = Result<(u8, &[u8]), &'static str>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let [t, len, tail @ ..] = rest else {
            rest = &[];
            return Some(Err("truncated tlv"));
        };
        let len = usize::from(*len);
        let Some(value) = tail.get(..len) else {
            rest = &[];
            return Some(Err("truncated tlv value"));
        };
        rest = tail.get(len..).unwrap_or_default();
        Some(Ok((*t, value)))
    })
}

/// Whether an IPv6 packet is UDP from and to the MLE port (no extension headers).
fn is_mle_packet(packet: &[u8]) -> bool {
    let port = mle::PORT.to_be_bytes();
    packet.get(6) == Some(&17)
        && packet.get(40..42) == Some(&port[..])
        && packet.get(42..44) == Some(&port[..])
}

fn random_ext_addr(rng: &mut StdRng) -> ExtAddress {
    let mut ext: [u8; 8] = rng.random();
    // A locally administered unicast address, as OpenThread generates (`GenerateExtAddress`).
    ext[0] = (ext[0] & !0x01) | 0x02;
    ExtAddress(ext)
}

fn random_iid(rng: &mut StdRng) -> [u8; 8] {
    loop {
        let iid: [u8; 8] = rng.random();
        // Never collide with the locator form 0000:00ff:fe00:xxxx.
        if ip::short_from_iid(&iid).is_none() {
            return iid;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> ActiveDataset {
        ActiveDataset::random(&mut StdRng::seed_from_u64(3))
    }

    #[test]
    fn ml_eid_is_stable_per_network_and_new_for_another() {
        let mut s = Stack::new([1; 8], None, dataset());
        let first = s.ml_eid();
        let mut same = dataset();
        same.network_name = "renamed".into();
        s.set_dataset(same).unwrap();
        assert_eq!(s.ml_eid(), first, "same network, same ML-EID");
        let mut other = dataset();
        other.network_key[0] ^= 1;
        s.set_dataset(other).unwrap();
        assert_ne!(s.ml_eid(), first);
        assert!(ip::short_from_iid(&ip::iid(&s.ml_eid())).is_none());
    }

    #[test]
    fn without_radio_a_node_still_leads_alone() {
        let mut s = Stack::new([2; 8], None, dataset());
        let t0 = Instant::now();
        s.ifconfig_up().unwrap();
        s.thread_start(t0).unwrap();
        assert_eq!(s.role(), Role::Detached);
        assert_eq!(s.rloc16(), INVALID_RLOC16);
        let mut now = t0;
        while s.role() != Role::Leader {
            now = s.next_deadline().expect("a timer runs while detached");
            s.poll(now);
        }
        assert_eq!(now - t0, DISCOVERY_WINDOW);
        assert_eq!(
            s.take_events(),
            vec![
                NetEvent::RoleChanged(Role::Detached),
                NetEvent::RoleChanged(Role::Leader)
            ]
        );
        s.factory_reset();
        assert_eq!((s.role(), s.is_up()), (Role::Disabled, false));
        assert!(s.addresses().is_empty());
    }

    /// Parent Responses only make candidates; the choice comes at the end of the request's
    /// window and takes the better partition, not the first to answer (OpenThread's
    /// `Mle::HandleParentResponse` and `Mle::HandleAttachTimer`).
    #[test]
    fn parent_is_chosen_at_the_end_of_the_window_from_the_better_partition() {
        let mut s = Stack::new([4; 8], None, dataset());
        let t0 = Instant::now();
        s.ifconfig_up().unwrap();
        s.thread_start(t0).unwrap();
        let Attach::Discovering { challenge, .. } = s.attach.clone() else {
            panic!("discovering after thread start");
        };
        let response = |partition_id: u32, rloc16: u16| {
            let leader = mle::LeaderData {
                partition_id,
                weighting: LEADER_WEIGHTING,
                data_version: 0,
                stable_data_version: 0,
                leader_router_id: (rloc16 >> 10) as u8,
            };
            mle::Message::new(mle::command::PARENT_RESPONSE)
                .with(mle::tlv::SOURCE_ADDRESS, &rloc16.to_be_bytes())
                .with(mle::tlv::LEADER_DATA, &leader.emit())
                .with(mle::tlv::RESPONSE, &challenge)
                .with(mle::tlv::CHALLENGE, &[7; 8])
        };
        let (worse, better) = (ExtAddress([0xa1; 8]), ExtAddress([0xb2; 8]));
        s.handle_parent_response(worse, "fe80::a1".parse().unwrap(), &response(5, 0x0400));
        s.handle_parent_response(better, "fe80::b2".parse().unwrap(), &response(9, 0x0800));
        s.handle_parent_response(worse, "fe80::a1".parse().unwrap(), &response(5, 0x0400));
        assert!(
            matches!(s.attach, Attach::Discovering { .. }),
            "no Child ID Request before the window ends"
        );
        let end = s.next_deadline().expect("the window's timer");
        assert_eq!(end - t0, PARENT_REQUEST_RETRY);
        s.poll(end);
        let Attach::Requesting { parent, .. } = s.attach.clone() else {
            panic!(
                "Child ID Request at the end of the window, got {:?}",
                s.attach
            );
        };
        assert_eq!((parent.ext, parent.rloc16), (better, 0x0800));
        assert_eq!(s.partition_id(), 9);
    }

    #[test]
    fn extended_address_is_locally_administered_and_settable_only_when_stopped() {
        let mut s = Stack::new([3; 8], None, dataset());
        assert_eq!(s.ext_addr()[0] & 0x03, 0x02);
        s.set_ext_addr([0x12; 8]).unwrap();
        assert_eq!(s.ext_addr(), [0x12; 8]);
        s.ifconfig_up().unwrap();
        s.thread_start(Instant::now()).unwrap();
        assert_eq!(s.set_ext_addr([0x34; 8]), Err(OtError::InvalidState));
    }

    #[test]
    fn mle_packets_are_recognised_by_their_ports() {
        let a: Ipv6Addr = "fe80::1".parse().unwrap();
        let b: Ipv6Addr = "ff02::2".parse().unwrap();
        let mle = ip::udp_packet(
            SocketAddrV6::new(a, mle::PORT, 0, 0),
            SocketAddrV6::new(b, mle::PORT, 0, 0),
            255,
            &[0],
        );
        assert!(is_mle_packet(&mle));
        let other = ip::udp_packet(
            SocketAddrV6::new(a, mle::PORT, 0, 0),
            SocketAddrV6::new(b, 1234, 0, 0),
            255,
            &[0],
        );
        assert!(!is_mle_packet(&other));
        assert!(!is_mle_packet(&mle[..30]));
    }
}
