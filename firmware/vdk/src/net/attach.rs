//! Attach: MLE Parent Request / Parent Response / Child ID Request / Child ID Response, leader
//! election after the discovery window, advertisements and partition merge (see the module docs
//! of [`super`] for what is simplified).

use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::Instant;

use ot_hil_wire::ip::{self, AddressClass};
use ot_hil_wire::mac::{Address, ExtAddress, SecurityHeader};
use ot_hil_wire::security;
use rand::Rng;

use super::*;

impl Stack {
    pub(super) fn start_discovery(&mut self, now: Instant) {
        let challenge: [u8; 8] = self.rng.random();
        self.attach = Attach::Discovering {
            challenge,
            retry_at: Some(now + PARENT_REQUEST_RETRY),
            leader_at: now + DISCOVERY_WINDOW,
            candidate: None,
        };
        self.send_parent_request(now, challenge, mle::SCAN_MASK_ROUTERS);
    }

    pub(super) fn send_parent_request(&mut self, now: Instant, challenge: [u8; 8], scan_mask: u8) {
        let msg = mle::Message::new(mle::command::PARENT_REQUEST)
            .with(mle::tlv::MODE, &[mle::MODE_RDN])
            .with(mle::tlv::CHALLENGE, &challenge)
            .with(mle::tlv::SCAN_MASK, &[scan_mask])
            .with(mle::tlv::VERSION, &mle::THREAD_VERSION.to_be_bytes());
        self.send_mle(now, ALL_ROUTERS_LINK_LOCAL, &msg);
    }

    /// The end of a Parent Request's window, as OpenThread's `Mle::HandleAttachTimer`
    /// (`src/core/thread/mle.cpp`): the best parent heard in it is sent a Child ID Request; with
    /// none, the first window is followed by a second request (to routers and REEDs), and the
    /// second by leading a partition of its own.
    pub(super) fn run_attach_timers(&mut self, now: Instant) {
        match self.attach.clone() {
            Attach::Discovering {
                challenge,
                retry_at,
                leader_at,
                candidate,
            } => {
                let window_ended = now >= leader_at || retry_at.is_some_and(|r| now >= r);
                if !window_ended {
                    return;
                }
                if let Some(candidate) = candidate {
                    self.send_child_id_request(now, candidate);
                } else if now >= leader_at {
                    self.become_leader(now);
                } else {
                    self.attach = Attach::Discovering {
                        challenge,
                        retry_at: None,
                        leader_at,
                        candidate: None,
                    };
                    self.send_parent_request(
                        now,
                        challenge,
                        mle::SCAN_MASK_ROUTERS | mle::SCAN_MASK_REEDS,
                    );
                }
            }
            Attach::Requesting { give_up_at, .. } if now >= give_up_at => {
                self.start_discovery(now);
            }
            _ => {}
        }
    }

    pub(super) fn become_leader(&mut self, now: Instant) {
        self.leader_router_id = self.rng.random_range(0..=62);
        self.rloc16 = u16::from(self.leader_router_id) << 10;
        self.partition_id = self.rng.random();
        self.attach = Attach::Attached;
        self.advertise = Some((now + ADVERTISEMENT_IMIN, ADVERTISEMENT_IMIN));
        self.set_role(Role::Leader);
    }

    pub(super) fn run_advertisement(&mut self, now: Instant) {
        let Some((at, interval)) = self.advertise else {
            return;
        };
        if now < at || self.role != Role::Leader {
            return;
        }
        let next = (interval * 2).min(ADVERTISEMENT_IMAX);
        self.advertise = Some((now + next, next));
        let msg = mle::Message::new(mle::command::ADVERTISEMENT)
            .with(mle::tlv::SOURCE_ADDRESS, &self.rloc16.to_be_bytes())
            .with(mle::tlv::LEADER_DATA, &self.leader_data().emit());
        self.send_mle(now, ALL_NODES_LINK_LOCAL, &msg);
    }

    /// Partition merge, simplified: a leader that hears a leader of a better partition (higher
    /// weighting, then higher partition id, as Thread compares them) gives up its partition and
    /// attaches to the other; a child whose parent now leads another partition re-attaches.
    pub(super) fn handle_advertisement(
        &mut self,
        now: Instant,
        ext: ExtAddress,
        msg: &mle::Message,
    ) {
        let Some(Ok(theirs)) = msg.get(mle::tlv::LEADER_DATA).map(mle::LeaderData::parse) else {
            self.counters.rx_malformed += 1;
            return;
        };
        if theirs.partition_id == self.partition_id {
            return;
        }
        let restart = match self.role {
            Role::Leader => {
                (theirs.weighting, theirs.partition_id) > (LEADER_WEIGHTING, self.partition_id)
            }
            Role::Child => self.parent.is_some_and(|p| p.ext == ext),
            _ => false,
        };
        if restart {
            self.detach_state();
            self.set_role(Role::Detached);
            self.start_discovery(now);
        }
    }

    pub(super) fn leader_data(&self) -> mle::LeaderData {
        mle::LeaderData {
            partition_id: self.partition_id,
            weighting: LEADER_WEIGHTING,
            data_version: 0,
            stable_data_version: 0,
            leader_router_id: self.leader_router_id,
        }
    }

    pub(super) fn handle_mle(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        mac_src: Address,
        payload: &[u8],
    ) {
        // Only secured MLE is accepted (the unsecured suite is for discovery, not modelled).
        let header = match security::mle_security_header(payload) {
            Ok(Some(h)) => h,
            _ => {
                self.counters.rx_malformed += 1;
                return;
            }
        };
        if security::mle_key_sequence(&header) != Some(KEY_SEQUENCE) {
            self.counters.rx_bad_key_index += 1;
            return;
        }
        let message = match security::mle_unsecure(payload, &src, &dst, &self.mle_key) {
            Ok((_, m)) => m,
            Err(e) => {
                self.counters.count_unsecure_error(&e);
                return;
            }
        };
        let Ok(msg) = mle::Message::parse(&message) else {
            self.counters.rx_malformed += 1;
            return;
        };
        // MLE in this model always comes from an extended MAC source (see module docs).
        let Address::Extended(ext) = mac_src else {
            return;
        };
        if ip::classify(&src, &self.dataset.mesh_local_prefix) != AddressClass::LinkLocal {
            return;
        }
        match msg.command {
            mle::command::PARENT_REQUEST if self.role == Role::Leader => {
                self.answer_parent_request(now, ext, src, &msg);
            }
            mle::command::PARENT_RESPONSE => self.handle_parent_response(ext, src, &msg),
            mle::command::CHILD_ID_REQUEST if self.role == Role::Leader => {
                self.handle_child_id_request(now, ext, src, &msg);
            }
            mle::command::CHILD_ID_RESPONSE => self.handle_child_id_response(ext, &msg),
            mle::command::ADVERTISEMENT => self.handle_advertisement(now, ext, &msg),
            _ => {}
        }
    }

    pub(super) fn answer_parent_request(
        &mut self,
        now: Instant,
        ext: ExtAddress,
        src: Ipv6Addr,
        msg: &mle::Message,
    ) {
        let Some(their_challenge) = msg.get(mle::tlv::CHALLENGE) else {
            return;
        };
        let their_challenge = their_challenge.to_vec();
        let ours: [u8; 8] = self.rng.random();
        self.issued_challenges.insert(ext, ours);
        let reply = mle::Message::new(mle::command::PARENT_RESPONSE)
            .with(mle::tlv::SOURCE_ADDRESS, &self.rloc16.to_be_bytes())
            .with(mle::tlv::LEADER_DATA, &self.leader_data().emit())
            .with(mle::tlv::RESPONSE, &their_challenge)
            .with(mle::tlv::CHALLENGE, &ours)
            .with(mle::tlv::VERSION, &mle::THREAD_VERSION.to_be_bytes());
        self.send_mle(now, src, &reply);
    }

    pub(super) fn handle_parent_response(
        &mut self,
        ext: ExtAddress,
        src: Ipv6Addr,
        msg: &mle::Message,
    ) {
        let Attach::Discovering { challenge, .. } = &self.attach else {
            return;
        };
        if msg.get(mle::tlv::RESPONSE) != Some(challenge.as_slice()) {
            return;
        }
        let (Some(source), Some(leader_data), Some(their_challenge)) = (
            msg.get(mle::tlv::SOURCE_ADDRESS),
            msg.get(mle::tlv::LEADER_DATA),
            msg.get(mle::tlv::CHALLENGE),
        ) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let (Ok(source), Ok(leader_data)) = (
            <[u8; 2]>::try_from(source),
            mle::LeaderData::parse(leader_data),
        ) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let heard = ParentCandidate {
            parent: Neighbor {
                ext,
                rloc16: u16::from_be_bytes(source),
            },
            src,
            leader_data,
            their_challenge: their_challenge.to_vec(),
        };
        // A response only makes its sender the candidate, as OpenThread's
        // `Mle::HandleParentResponse`: the choice waits for the end of the window. A better
        // partition (`Mle::ComparePartitions`: weighting, then partition id) replaces the
        // candidate; within one partition the first to answer stays (the model has no link
        // quality to compare).
        let better = |held: &ParentCandidate| {
            let key = |d: &mle::LeaderData| (d.weighting, d.partition_id);
            key(&heard.leader_data) > key(&held.leader_data)
        };
        if let Attach::Discovering { candidate, .. } = &mut self.attach
            && candidate.as_ref().is_none_or(better)
        {
            *candidate = Some(heard);
        }
    }

    /// Choose `chosen` as parent: ask it for a child id.
    fn send_child_id_request(&mut self, now: Instant, chosen: ParentCandidate) {
        self.partition_id = chosen.leader_data.partition_id;
        self.leader_router_id = chosen.leader_data.leader_router_id;
        self.attach = Attach::Requesting {
            parent: chosen.parent,
            give_up_at: now + CHILD_ID_TIMEOUT,
        };
        let registration =
            mle::emit_address_registration(&[self.ml_eid()], &self.dataset.mesh_local_prefix);
        let request = mle::Message::new(mle::command::CHILD_ID_REQUEST)
            .with(mle::tlv::RESPONSE, &chosen.their_challenge)
            .with(mle::tlv::MODE, &[mle::MODE_RDN])
            .with(mle::tlv::TIMEOUT, &240u32.to_be_bytes())
            .with(mle::tlv::VERSION, &mle::THREAD_VERSION.to_be_bytes())
            .with(mle::tlv::ADDRESS_REGISTRATION, &registration);
        self.send_mle(now, chosen.src, &request);
    }

    pub(super) fn handle_child_id_request(
        &mut self,
        now: Instant,
        ext: ExtAddress,
        src: Ipv6Addr,
        msg: &mle::Message,
    ) {
        let Some(issued) = self.issued_challenges.get(&ext) else {
            return;
        };
        if msg.get(mle::tlv::RESPONSE) != Some(issued.as_slice()) {
            return;
        }
        self.issued_challenges.remove(&ext);
        let registered = msg
            .get(mle::tlv::ADDRESS_REGISTRATION)
            .and_then(|v| mle::parse_address_registration(v, &self.dataset.mesh_local_prefix).ok())
            .unwrap_or_default();
        let rloc16 = match self.children.iter_mut().find(|c| c.ext == ext) {
            Some(child) => {
                child.registered = registered;
                child.rloc16
            }
            None => {
                let Some(id) = (1..=0x1ffu16)
                    .find(|id| !self.children.iter().any(|c| c.rloc16 & 0x1ff == *id))
                else {
                    return;
                };
                let rloc16 = self.rloc16 | id;
                self.children.push(Child {
                    ext,
                    rloc16,
                    registered,
                });
                rloc16
            }
        };
        // A re-attaching child starts its frame counter from where it is; forget the old one.
        self.rx_frame_counters.remove(&ext);
        let response = mle::Message::new(mle::command::CHILD_ID_RESPONSE)
            .with(mle::tlv::SOURCE_ADDRESS, &self.rloc16.to_be_bytes())
            .with(mle::tlv::LEADER_DATA, &self.leader_data().emit())
            .with(mle::tlv::ADDRESS16, &rloc16.to_be_bytes())
            .with(mle::tlv::VERSION, &mle::THREAD_VERSION.to_be_bytes());
        self.send_mle(now, src, &response);
    }

    pub(super) fn handle_child_id_response(&mut self, ext: ExtAddress, msg: &mle::Message) {
        let Attach::Requesting { parent, .. } = self.attach.clone() else {
            return;
        };
        if parent.ext != ext {
            return;
        }
        let Some(address16) = msg
            .get(mle::tlv::ADDRESS16)
            .and_then(|v| <[u8; 2]>::try_from(v).ok())
        else {
            self.counters.rx_malformed += 1;
            return;
        };
        self.rloc16 = u16::from_be_bytes(address16);
        self.parent = Some(parent);
        self.attach = Attach::Attached;
        self.set_role(Role::Child);
    }

    pub(super) fn send_mle(&mut self, now: Instant, dst: Ipv6Addr, msg: &mle::Message) {
        let src = self.link_local();
        let header = SecurityHeader {
            level: 5,
            key_id_mode: 2,
            frame_counter: self.mle_frame_counter,
            key_index: Some(self.key_index),
            key_source: Some(KEY_SEQUENCE.to_be_bytes()),
        };
        self.mle_frame_counter = self.mle_frame_counter.wrapping_add(1);
        let Ok(payload) = security::mle_secure(&header, &msg.emit(), &src, &dst, &self.mle_key)
        else {
            self.counters.tx_errors += 1;
            return;
        };
        let packet = ip::udp_packet(
            SocketAddrV6::new(src, mle::PORT, 0, 0),
            SocketAddrV6::new(dst, mle::PORT, 0, 0),
            MLE_HOP_LIMIT,
            &payload,
        );
        self.send_ipv6(now, packet);
    }
}
