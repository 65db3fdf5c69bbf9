//! Temporary stand-in for the Thread stack model (`src/net/`), which is written separately.
//!
//! It keeps only the configuration state the console needs (dataset, interface up/down, role
//! disabled/detached) so the console, control socket and firmware loading can be exercised before
//! the real stack is in. It never attaches to a network: `thread start` leaves it detached.
#![allow(dead_code)]

use std::fmt;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use crate::ot_error::OtError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveDataset {
    pub active_timestamp: u64,
    pub channel: u8,
    pub channel_mask: u32,
    pub pan_id: u16,
    pub ext_pan_id: [u8; 8],
    pub network_name: String,
    pub network_key: [u8; 16],
    pub mesh_local_prefix: [u8; 8],
    pub pskc: [u8; 16],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    LinkLocal,
    MeshLocalEid,
    Rloc,
    Aloc,
}

#[derive(Debug, Clone)]
pub enum NetEvent {
    RoleChanged(Role),
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
    PingDone {
        sent: u16,
        received: u16,
        rtt_min: Duration,
        rtt_avg: Duration,
        rtt_max: Duration,
    },
}

pub struct Stack {
    eui64: [u8; 8],
    defaults: ActiveDataset,
    dataset: ActiveDataset,
    up: bool,
    role: Role,
}

impl Stack {
    pub fn new(eui64: [u8; 8], _air: Option<()>, defaults: ActiveDataset) -> Self {
        Stack {
            eui64,
            dataset: defaults.clone(),
            defaults,
            up: false,
            role: Role::Disabled,
        }
    }
    pub fn factory_reset(&mut self) {
        self.dataset = self.defaults.clone();
        self.up = false;
        self.role = Role::Disabled;
    }
    pub fn dataset(&self) -> &ActiveDataset {
        &self.dataset
    }
    pub fn set_dataset(&mut self, ds: ActiveDataset) -> Result<(), OtError> {
        if self.role != Role::Disabled {
            return Err(OtError::InvalidState);
        }
        self.dataset = ds;
        Ok(())
    }
    pub fn ext_addr(&self) -> [u8; 8] {
        self.eui64
    }
    pub fn ifconfig_up(&mut self) -> Result<(), OtError> {
        self.up = true;
        Ok(())
    }
    pub fn ifconfig_down(&mut self) -> Result<(), OtError> {
        self.up = false;
        self.role = Role::Disabled;
        Ok(())
    }
    pub fn is_up(&self) -> bool {
        self.up
    }
    pub fn thread_start(&mut self, _now: Instant) -> Result<(), OtError> {
        if !self.up {
            return Err(OtError::InvalidState);
        }
        self.role = Role::Detached;
        Ok(())
    }
    pub fn thread_stop(&mut self) {
        self.role = Role::Disabled;
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn rloc16(&self) -> u16 {
        0xfffe
    }
    pub fn addresses(&self) -> Vec<(Ipv6Addr, AddressKind)> {
        Vec::new()
    }
    pub fn poll(&mut self, _now: Instant) {}
    pub fn next_deadline(&self) -> Option<Instant> {
        None
    }
    pub fn take_events(&mut self) -> Vec<NetEvent> {
        Vec::new()
    }
}
