//! IPv6 in and out: a reassembled datagram delivered, forwarded or dropped; a packet routed,
//! held for address resolution, compressed, fragmented, secured and queued for the MAC.

use std::net::Ipv6Addr;
use std::time::Instant;

use ot_hil_wire::ip::{self, AddressClass, Body};
use ot_hil_wire::lowpan;
use ot_hil_wire::mac::{Address, FrameRepr, SecurityHeader};
use ot_hil_wire::security;

use super::*;

impl Stack {
    pub(super) fn handle_ipv6(&mut self, now: Instant, datagram: Vec<u8>, link: Link) {
        let Ok(packet) = ip::parse(&datagram) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let is_mle = matches!(
            packet.body,
            Body::Udp {
                src_port: mle::PORT,
                dst_port: mle::PORT,
                ..
            }
        );
        // MAC security is mandatory for everything except MLE (secured at its own layer).
        if !link.secured && !is_mle {
            self.counters.rx_insecure += 1;
            return;
        }
        let (mac_src, from_child) = (link.mac_src, link.from_child);
        let for_us = self.is_own_unicast(&packet.dst) || self.is_subscribed(&packet.dst);
        let multicast = ip::multicast_scope(&packet.dst).is_some();
        if self.role == Role::Leader && packet.hop_limit > 1 {
            if !for_us && !multicast {
                self.forward(now, datagram);
                return;
            }
            // One MPL-like repetition of realm-local multicast from a child, so the other
            // children (which cannot decrypt each other's frames) hear it.
            if from_child && ip::multicast_scope(&packet.dst) == Some(3) {
                let mut copy = datagram.clone();
                if let Some(h) = copy.get_mut(7) {
                    *h = h.saturating_sub(1);
                }
                self.send_ipv6(now, copy);
            }
        }
        if !for_us {
            return;
        }
        match packet.body {
            Body::Udp {
                src_port,
                dst_port,
                payload,
            } => match dst_port {
                mle::PORT if src_port == mle::PORT => {
                    self.handle_mle(now, packet.src, packet.dst, mac_src, &payload)
                }
                tmf::PORT => self.handle_tmf(now, packet.src, &payload),
                port if self.udp_ports.contains(&port) => self.events.push(NetEvent::Udp {
                    src: SocketAddrV6::new(packet.src, src_port, 0, 0),
                    dst: SocketAddrV6::new(packet.dst, dst_port, 0, 0),
                    payload,
                }),
                _ => {}
            },
            Body::EchoRequest {
                identifier,
                sequence,
                data,
            } => {
                let src = if multicast {
                    self.source_for(&packet.src)
                } else {
                    Some(packet.dst)
                };
                if let Some(src) = src {
                    let reply = ip::echo_reply(
                        src,
                        packet.src,
                        DEFAULT_HOP_LIMIT,
                        identifier,
                        sequence,
                        &data,
                    );
                    self.send_ipv6(now, reply);
                }
            }
            Body::EchoReply {
                identifier,
                sequence,
                data,
            } => self.handle_echo_reply(
                now,
                packet.src,
                packet.hop_limit,
                identifier,
                sequence,
                data.len(),
            ),
            Body::Other { .. } => {}
        }
    }

    pub(super) fn forward(&mut self, now: Instant, mut datagram: Vec<u8>) {
        if let Some(h) = datagram.get_mut(7) {
            *h = h.saturating_sub(1);
        }
        self.counters.ip_forwarded += 1;
        self.send_ipv6(now, datagram);
    }

    // -- IPv6 out --

    /// Route one IPv6 packet: local delivery, MAC next hop, or wait for address resolution.
    pub(super) fn send_ipv6(&mut self, now: Instant, packet: Vec<u8>) {
        let Some(dst) = packet
            .get(24..40)
            .and_then(|d| <[u8; 16]>::try_from(d).ok())
            .map(Ipv6Addr::from)
        else {
            return;
        };
        if self.is_own_unicast(&dst) {
            let link = Link {
                mac_src: Address::Extended(self.ext),
                secured: true,
                from_child: false,
            };
            self.handle_ipv6(now, packet, link);
            return;
        }
        let prefix = self.dataset.mesh_local_prefix;
        let next_hop = match ip::classify(&dst, &prefix) {
            // "With the exception of MLE multicasts and any other message with link security
            // disabled, an End Device transmits multicasts, as IEEE 802.15.4 unicasts to its
            // parent" (OpenThread `mesh_forwarder.cpp` in NCS v2.2.0's revision), so they get
            // the parent's acks and the MAC's retransmissions.
            AddressClass::Multicast { .. } => match self.parent {
                Some(parent) if self.role == Role::Child && !is_mle_packet(&packet) => {
                    Some(Address::Short(parent.rloc16))
                }
                _ => Some(Address::Short(MAC_BROADCAST)),
            },
            AddressClass::LinkLocal => Some(match ip::short_from_iid(&ip::iid(&dst)) {
                Some(short) => Address::Short(short),
                None => Address::Extended(ip::ext_from_iid(&ip::iid(&dst))),
            }),
            AddressClass::MeshLocalRloc(rloc16) => self.next_hop_for(rloc16),
            AddressClass::MeshLocalAloc(LEADER_ALOC16) => {
                self.next_hop_for(u16::from(self.leader_router_id) << 10)
            }
            AddressClass::MeshLocalEid => {
                let known = self
                    .children
                    .iter()
                    .find(|c| c.registered.contains(&dst))
                    .map(|c| c.rloc16)
                    .or_else(|| self.eid_cache.get(&dst).copied());
                match known {
                    Some(rloc16) => self.next_hop_for(rloc16),
                    None if self.is_attached() => {
                        let asked = self.queries.contains_key(&dst);
                        self.queued.push(Queued {
                            target: dst,
                            packet,
                        });
                        if !asked {
                            self.send_address_query(now, dst);
                        }
                        return;
                    }
                    None => None,
                }
            }
            _ => None,
        };
        let Some(mac_dst) = next_hop else {
            self.counters.ip_no_route += 1;
            return;
        };
        self.transmit(now, &packet, mac_dst);
    }

    pub(super) fn next_hop_for(&self, rloc16: u16) -> Option<Address> {
        if !self.is_attached() {
            return None;
        }
        match self.role {
            Role::Child => self.parent.map(|p| Address::Short(p.rloc16)),
            _ if self.children.iter().any(|c| c.rloc16 == rloc16) => Some(Address::Short(rloc16)),
            _ => None,
        }
    }

    /// Compress, fragment, secure and send one IPv6 packet to `mac_dst`.
    pub(super) fn transmit(&mut self, now: Instant, packet: &[u8], mac_dst: Address) {
        // Extended source for link-local traffic (receivers learn the extended address from it,
        // and need it for the CCM* nonce); short source for mesh-local traffic once attached.
        let src_link_local = packet.get(8..10) == Some(&[0xfe, 0x80][..]);
        let mac_src = match mac_dst {
            Address::Short(_) if self.is_attached() && !src_link_local => {
                Address::Short(self.rloc16)
            }
            _ => Address::Extended(self.ext),
        };
        // MLE goes without MAC security (it is secured at the MLE layer), everything else with.
        let link_security = !is_mle_packet(packet);
        let contexts = self.contexts();
        let compressed = match lowpan::compress(packet, &mac_src, &mac_dst, &contexts) {
            Ok(c) => c,
            Err(_) => {
                self.counters.tx_errors += 1;
                return;
            }
        };
        let key_index = self.key_index;
        let security_for =
            move |fc| link_security.then(|| SecurityHeader::thread_mac(fc, key_index));
        let header_len =
            FrameRepr::data(0, self.dataset.pan_id, mac_dst, mac_src, security_for(0)).header_len();
        let mic_len = if link_security { MIC_LEN } else { 0 };
        let max_payload = MAX_PSDU - header_len - mic_len;
        let Ok(size) = u16::try_from(packet.len()) else {
            self.counters.tx_errors += 1;
            return;
        };
        self.frag_tag = self.frag_tag.wrapping_add(1);
        let payloads = lowpan::fragment(&compressed, size, self.frag_tag, max_payload);
        if payloads.is_empty() {
            self.counters.tx_errors += 1;
            return;
        }
        for payload in payloads {
            let repr = FrameRepr::data(
                self.mac_sequence,
                self.dataset.pan_id,
                mac_dst,
                mac_src,
                security_for(self.frame_counter),
            );
            let sequence = self.mac_sequence;
            self.mac_sequence = self.mac_sequence.wrapping_add(1);
            let psdu = if link_security {
                // The frame counter is spent once per frame: retransmissions reuse these bytes.
                self.frame_counter = self.frame_counter.wrapping_add(1);
                match security::secure(&repr, &payload, &self.mac_key, &self.ext) {
                    Ok(psdu) => psdu,
                    Err(_) => {
                        self.counters.tx_errors += 1;
                        continue;
                    }
                }
            } else {
                repr.emit(&payload)
            };
            self.mac_tx.push(TxFrame {
                psdu,
                sequence,
                ack_request: repr.ack_request,
                dst: mac_dst,
            });
        }
        self.run_mac_tx(now);
    }
}

/// How a datagram arrived.
#[derive(Debug, Clone, Copy)]
pub(super) struct Link {
    pub(super) mac_src: Address,
    /// Whether MAC security protected it (a fragmented datagram: its last fragment).
    pub(super) secured: bool,
    /// Whether the MAC source is one of this leader's children.
    pub(super) from_child: bool,
}
