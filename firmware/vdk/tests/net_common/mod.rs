//! A few Thread stacks on one real virtual air, driven like the device main loop drives one: a
//! reader thread per radio feeds one channel, the loop waits on it until the next stack deadline.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ot_hil_air::{AirClient, AirFrame, Hub};
use ot_hil_vdk::net::{ActiveDataset, NetEvent, Role, Stack};

/// The usual test network: OpenThread's well-known defaults.
pub fn dataset() -> ActiveDataset {
    ActiveDataset {
        active_timestamp: 1,
        channel: 15,
        channel_mask: 0x07ff_f800,
        pan_id: 0x1234,
        ext_pan_id: [0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0xca, 0xfe],
        network_name: "OpenThread".into(),
        network_key: [
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ],
        mesh_local_prefix: [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0x00],
        pskc: [0; 16],
        security_policy: Default::default(),
    }
}

/// (sent, received) of the ping summary that ends `events`.
pub fn ping_summary(events: &[NetEvent]) -> (u16, u16) {
    match events.last() {
        Some(NetEvent::PingDone { sent, received, .. }) => (*sent, *received),
        other => panic!("no summary: {other:?}"),
    }
}

pub struct Node {
    pub stack: Stack,
    pub events: Vec<NetEvent>,
}

pub struct Net {
    // Field order matters for drop: readers stop before the hub goes.
    pub nodes: Vec<Node>,
    frames: Receiver<(usize, AirFrame)>,
    sender: Sender<(usize, AirFrame)>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
    pub hub: Hub,
    _dir: tempfile::TempDir,
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Net {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::start(dir.path()).unwrap();
        let (sender, frames) = mpsc::channel();
        Net {
            nodes: Vec::new(),
            frames,
            sender,
            stop: Arc::new(AtomicBool::new(false)),
            readers: Vec::new(),
            hub,
            _dir: dir,
        }
    }

    /// Add a node (interface down, Thread disabled); returns its index.
    pub fn add(&mut self, ds: ActiveDataset) -> usize {
        let index = self.nodes.len();
        let air = AirClient::connect(self.hub.socket_path()).unwrap();
        let eui64 = [0x18, 0xb4, 0x30, 0, 0, 0, 0, index as u8 + 1];
        let stack = Stack::new(eui64, Some(air), ds);
        let receiver = stack.air_receiver().unwrap();
        let sender = self.sender.clone();
        let stop = Arc::clone(&self.stop);
        self.readers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match receiver.recv_timeout(Duration::from_millis(20)) {
                    Ok(Some(frame)) => {
                        if sender.send((index, frame)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(_) => return,
                }
            }
        }));
        self.nodes.push(Node {
            stack,
            events: Vec::new(),
        });
        index
    }

    /// A radio that only listens, to check the bytes on the air.
    pub fn sniffer(&self, channel: u8) -> AirClient {
        let s = AirClient::connect(self.hub.socket_path()).unwrap();
        s.set_channel(channel).unwrap();
        s
    }

    pub fn start(&mut self, i: usize) {
        let s = &mut self.nodes[i].stack;
        s.ifconfig_up().unwrap();
        s.thread_start(Instant::now()).unwrap();
    }

    pub fn stack(&mut self, i: usize) -> &mut Stack {
        &mut self.nodes[i].stack
    }

    /// Run the stacks until `done` holds or `timeout` passes; returns whether `done` held.
    pub fn run_until(&mut self, timeout: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            for node in &mut self.nodes {
                if node.stack.next_deadline().is_some_and(|d| d <= now) {
                    node.stack.poll(now);
                }
                node.events.extend(node.stack.take_events());
            }
            if done(self) {
                return true;
            }
            if now >= end {
                return false;
            }
            let wake = self
                .nodes
                .iter()
                .filter_map(|n| n.stack.next_deadline())
                .min()
                .map_or(end, |d| d.min(end));
            match self
                .frames
                .recv_timeout(wake.saturating_duration_since(now))
            {
                Ok((i, frame)) => {
                    let node = &mut self.nodes[i];
                    node.stack.handle_air_frame(Instant::now(), &frame);
                    node.events.extend(node.stack.take_events());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return done(self),
            }
        }
    }

    pub fn role(&self, i: usize) -> Role {
        self.nodes[i].stack.role()
    }

    /// Run until node `i` has the role; returns how long it took.
    pub fn wait_role(&mut self, i: usize, role: Role, timeout: Duration) -> Option<Duration> {
        let t = Instant::now();
        self.run_until(timeout, |n| n.role(i) == role)
            .then(|| t.elapsed())
    }

    /// Run until node `i` reports a ping summary; returns all of its ping events.
    pub fn wait_ping_done(&mut self, i: usize, timeout: Duration) -> Vec<NetEvent> {
        let ok = self.run_until(timeout, |n| {
            n.nodes[i]
                .events
                .iter()
                .any(|e| matches!(e, NetEvent::PingDone { .. }))
        });
        assert!(ok, "no ping summary from node {i}");
        let events = std::mem::take(&mut self.nodes[i].events);
        events
            .into_iter()
            .filter(|e| matches!(e, NetEvent::PingReply { .. } | NetEvent::PingDone { .. }))
            .collect()
    }

    /// Form a leader (node 0 of `count`) and `count - 1` children, all on `dataset()`.
    pub fn formed(count: usize) -> Net {
        let mut net = Net::new();
        for _ in 0..count {
            net.add(dataset());
        }
        net.start(0);
        net.wait_role(0, Role::Leader, Duration::from_secs(2))
            .expect("first node becomes leader");
        for i in 1..count {
            net.start(i);
            net.wait_role(i, Role::Child, Duration::from_secs(2))
                .expect("node attaches as child");
        }
        net
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}
