//! Address resolution for ML-EIDs over TMF: Address Query and Address Notification.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::Instant;

use ot_hil_wire::coap::{self, MessageClass, MessageType, RequestType, ResponseType};
use ot_hil_wire::ip;
use rand::Rng;

use super::*;

impl Stack {
    pub(super) fn next_message_id(&mut self) -> u16 {
        self.coap_message_id = self.coap_message_id.wrapping_add(1);
        self.coap_message_id
    }

    pub(super) fn send_tmf(&mut self, now: Instant, dst: Ipv6Addr, packet: &coap::Packet) {
        let Ok(bytes) = coap::encode(packet) else {
            return;
        };
        let Some(src) = self.source_for(&dst) else {
            return;
        };
        let packet = ip::udp_packet(
            SocketAddrV6::new(src, tmf::PORT, 0, 0),
            SocketAddrV6::new(dst, tmf::PORT, 0, 0),
            DEFAULT_HOP_LIMIT,
            &bytes,
        );
        self.send_ipv6(now, packet);
    }

    pub(super) fn send_address_query(&mut self, now: Instant, target: Ipv6Addr) {
        self.queries.insert(target, now + ADDRESS_QUERY_TIMEOUT);
        self.counters.address_queries_sent += 1;
        let mid = self.next_message_id();
        let token: [u8; 2] = self.rng.random();
        let query = tmf::address_query(mid, &token, &target);
        self.send_tmf(now, ALL_ROUTERS_REALM_LOCAL, &query);
    }

    pub(super) fn expire_queries(&mut self, now: Instant) {
        let expired: Vec<Ipv6Addr> = self
            .queries
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for target in expired {
            self.queries.remove(&target);
            self.counters.address_query_timeouts += 1;
            let before = self.queued.len();
            self.queued.retain(|q| q.target != target);
            self.counters.ip_no_route += (before - self.queued.len()) as u64;
        }
    }

    /// Who answers a query for `target` here: the owner, or a parent for its child.
    pub(super) fn answer_for(&self, target: &Ipv6Addr) -> Option<tmf::Notification> {
        if *target == self.ml_eid() && self.is_attached() {
            return Some(tmf::Notification {
                target: *target,
                rloc16: self.rloc16,
                ml_eid_iid: self.ml_eid_iid,
            });
        }
        self.children
            .iter()
            .find(|c| c.registered.contains(target))
            .map(|c| tmf::Notification {
                target: *target,
                rloc16: c.rloc16,
                ml_eid_iid: ip::iid(target),
            })
    }

    pub(super) fn handle_tmf(&mut self, now: Instant, src: Ipv6Addr, payload: &[u8]) {
        let Ok(packet) = coap::decode(payload) else {
            self.counters.rx_malformed += 1;
            return;
        };
        if !matches!(packet.header.code, MessageClass::Request(RequestType::Post)) {
            return;
        }
        match coap::uri_path(&packet).as_str() {
            tmf::URI_ADDRESS_QUERY => {
                let Ok(target) = tmf::target_eid(&packet.payload) else {
                    self.counters.rx_malformed += 1;
                    return;
                };
                // A child's own parent answers for it; children stay quiet.
                if self.role != Role::Leader {
                    return;
                }
                if let Some(answer) = self.answer_for(&target) {
                    let mid = self.next_message_id();
                    let token: [u8; 2] = self.rng.random();
                    let notification = tmf::address_notification(mid, &token, &answer);
                    self.send_tmf(now, src, &notification);
                }
            }
            tmf::URI_ADDRESS_NOTIFY => {
                let Ok(n) = tmf::parse_notification(&packet.payload) else {
                    self.counters.rx_malformed += 1;
                    return;
                };
                if packet.header.get_type() == MessageType::Confirmable {
                    let mid = self.next_message_id();
                    let ack = coap::response_to(&packet, ResponseType::Changed, mid, &[]);
                    self.send_tmf(now, src, &ack);
                }
                if self.queries.remove(&n.target).is_some() {
                    self.eid_cache.insert(n.target, n.rloc16);
                    let (ready, waiting): (Vec<Queued>, Vec<Queued>) =
                        std::mem::take(&mut self.queued)
                            .into_iter()
                            .partition(|q| q.target == n.target);
                    self.queued = waiting;
                    for q in ready {
                        self.send_ipv6(now, q.packet);
                    }
                }
            }
            _ => {}
        }
    }
}
