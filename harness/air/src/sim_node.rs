//! One OpenThread node on the case clock, as the hub holds it ([`crate::sim_nodes`] connects
//! and serves it).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use nix::sys::socket::{self, MsgFlags};

use crate::sim_event::SimEvent;

/// One connected node.
pub(crate) struct SimNode {
    conn: Arc<OwnedFd>,
    /// The node's clock as the hub last moved it (µs).
    pub(crate) node_now: u64,
    /// Events sent to it, and sleep requests it sent (the first comes unasked).
    events_sent: u64,
    pub(crate) sleeps: u64,
    /// The runner's side of its console (the PTY slave the node was started on).
    pub(crate) console: Option<Arc<File>>,
    /// Console bytes forwarded to it, and written out for the runner.
    pub(crate) console_in: u64,
    pub(crate) console_out: u64,
}

impl SimNode {
    /// A node that just connected on `conn`, with the runner's side of its console.
    pub(crate) fn new(conn: Arc<OwnedFd>, console: Option<Arc<File>>) -> SimNode {
        SimNode {
            conn,
            node_now: 0,
            events_sent: 0,
            sleeps: 0,
            console,
            console_in: 0,
            console_out: 0,
        }
    }

    /// Send an event, moving the node's clock to `now_us` first; false when its socket is gone.
    pub(crate) fn send(&mut self, now_us: u64, kind: u8, data: Vec<u8>) -> bool {
        let event = SimEvent {
            delay_us: now_us.saturating_sub(self.node_now),
            kind,
            data,
        };
        self.node_now = now_us.max(self.node_now);
        self.events_sent += 1;
        socket::send(self.conn.as_raw_fd(), &event.emit(), MsgFlags::MSG_NOSIGNAL).is_ok()
    }
}
