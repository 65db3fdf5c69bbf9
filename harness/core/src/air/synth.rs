//! Synthetic air traffic: UDP datagrams between two Thread nodes turned into the MAC-secured,
//! 6LoWPAN-compressed (and fragmented) frames a sniffer would capture. Used by the tests and the
//! decoding benchmark; built from the same wire codecs the virtual boards transmit with.

use std::net::{Ipv6Addr, SocketAddrV6};

use ot_hil_wire::lowpan::{self, Context};
use ot_hil_wire::mac::{Address, ExtAddress, FrameRepr, SecurityHeader};
use ot_hil_wire::sniffer::SnifferFrame;
use ot_hil_wire::{ip, security};

/// OpenThread's MAC frame payload budget for 6LoWPAN (127 - header - MIC - FCS, rounded down).
const MAX_LOWPAN_PAYLOAD: usize = 90;

/// Two nodes on one Thread network, sending to each other.
pub struct ThreadLink {
    pub pan_id: u16,
    pub mesh_local_prefix: [u8; 8],
    mac_key: [u8; 16],
    key_index: u8,
    nodes: [ExtAddress; 2],
    frame_counters: [u32; 2],
    sequence: u8,
    tag: u16,
    timestamp_us: u64,
}

impl ThreadLink {
    pub fn new(network_key: &[u8; 16], key_sequence: u32, mesh_local_prefix: [u8; 8]) -> Self {
        ThreadLink {
            pan_id: 0x1234,
            mesh_local_prefix,
            mac_key: security::derive_keys(network_key, key_sequence).mac_key,
            key_index: security::key_index(key_sequence),
            nodes: [
                ExtAddress([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]),
                ExtAddress([0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21]),
            ],
            frame_counters: [0, 0],
            sequence: 0,
            tag: 0,
            timestamp_us: 1_000_000,
        }
    }

    /// Node `i`'s mesh-local address (IID from its extended address, as a link-local would be).
    pub fn address(&self, node: usize, port: u16) -> SocketAddrV6 {
        let ext = self.nodes.get(node).copied().unwrap_or(ExtAddress([0; 8]));
        let ll = ip::link_local_from_ext(&ext).octets();
        let mut octets = [0u8; 16];
        octets[..8].copy_from_slice(&self.mesh_local_prefix);
        octets[8..].copy_from_slice(&ll[8..]);
        SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0)
    }

    /// The frames carrying one UDP datagram from node `from` (0 or 1) to the other node.
    pub fn datagram(
        &mut self,
        from: usize,
        src_port: u16,
        dst_port: u16,
        payload: &[u8],
    ) -> Vec<SnifferFrame> {
        let from = from.min(1);
        let to = 1 - from;
        let src = self.address(from, src_port);
        let dst = self.address(to, dst_port);
        let ipv6 = ip::udp_packet(src, dst, 64, payload);
        let mac_src = Address::Extended(self.nodes[from]);
        let mac_dst = Address::Extended(self.nodes[to]);
        let contexts = [Context {
            id: 0,
            prefix: self.mesh_local_prefix,
        }];
        let Ok(compressed) = lowpan::compress(&ipv6, &mac_src, &mac_dst, &contexts) else {
            return Vec::new();
        };
        let pieces = if compressed.len() <= MAX_LOWPAN_PAYLOAD {
            vec![compressed]
        } else {
            self.tag = self.tag.wrapping_add(1);
            lowpan::fragment(
                &compressed,
                u16::try_from(ipv6.len()).unwrap_or(u16::MAX),
                self.tag,
                MAX_LOWPAN_PAYLOAD,
            )
        };
        let mut out = Vec::with_capacity(pieces.len());
        for piece in pieces {
            self.sequence = self.sequence.wrapping_add(1);
            self.frame_counters[from] = self.frame_counters[from].wrapping_add(1);
            let repr = FrameRepr::data(
                self.sequence,
                self.pan_id,
                mac_dst,
                mac_src,
                Some(SecurityHeader::thread_mac(
                    self.frame_counters[from],
                    self.key_index,
                )),
            );
            let Ok(psdu) = security::secure(&repr, &piece, &self.mac_key, &self.nodes[from]) else {
                continue;
            };
            self.timestamp_us += 1_000;
            out.push(SnifferFrame {
                psdu,
                rssi_dbm: -50,
                lqi: 220,
                timestamp_us: self.timestamp_us,
            });
        }
        out
    }
}
