//! MAC in: a received frame filtered by PAN id and destination, acked as the radio does,
//! unsecured, checked against the neighbour's frame counter and handed to 6LoWPAN reassembly.

use std::time::Instant;

use ot_hil_wire::mac::{self, Address, FrameRepr, FrameType};
use ot_hil_wire::security;

use super::ipv6::Link;
use super::*;

impl Stack {
    pub(super) fn receive_frame(&mut self, now: Instant, psdu: &[u8]) {
        let Ok(parsed) = mac::parse(psdu) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let repr = &parsed.repr;
        if repr.frame_type == FrameType::Ack {
            if let Some(done) = repr.sequence.and_then(|seq| self.mac_tx.on_ack(seq)) {
                self.mac_tx_action(now, done);
                self.run_mac_tx(now);
            }
            return;
        }
        if repr.frame_type != FrameType::Data {
            // Beacons and MAC commands play no part in this model.
            return;
        }
        self.counters.rx_frames += 1;
        if repr.dst_pan_id() != Some(self.dataset.pan_id) {
            self.counters.rx_pan_filtered += 1;
            return;
        }
        let for_us = match repr.dst {
            Address::Short(MAC_BROADCAST) => true,
            Address::Short(s) => self.is_attached() && s == self.rloc16,
            Address::Extended(e) => e == self.ext,
            Address::Absent => false,
        };
        if !for_us {
            self.counters.rx_dst_filtered += 1;
            return;
        }
        // The radio acks in hardware once the frame passes address filtering, before any security
        // processing: a retransmitted copy (its first ack was lost) is acked again, then dropped
        // below by the frame counter check.
        if repr.ack_request && !repr.dst.is_broadcast() {
            self.send_ack(repr.sequence.unwrap_or(0));
        }
        let Some(sec) = repr.security else {
            // Only MLE may come without MAC security; handle_ipv6 checks that after decoding.
            let link = Link {
                mac_src: repr.src,
                secured: false,
                from_child: false,
            };
            self.reassemble(now, repr, parsed.payload, link);
            return;
        };
        if sec.key_id_mode != 1 || sec.key_index != Some(self.key_index) {
            self.counters.rx_bad_key_index += 1;
            return;
        }
        let src_ext = match repr.src {
            Address::Extended(e) => e,
            Address::Short(s) => match self.neighbor_by_short(s) {
                Some(n) => n.ext,
                None => {
                    self.counters.rx_unknown_neighbor += 1;
                    return;
                }
            },
            Address::Absent => {
                self.counters.rx_malformed += 1;
                return;
            }
        };
        let plaintext = match security::unsecure_parsed(&parsed, psdu, &self.mac_key, &src_ext) {
            Ok(p) => p,
            Err(e) => {
                self.counters.count_unsecure_error(&e);
                return;
            }
        };
        // Only authenticated frames move the replay window.
        if let Some(last) = self.rx_frame_counters.get(&src_ext)
            && sec.frame_counter <= *last
        {
            self.counters.rx_replayed += 1;
            return;
        }
        self.rx_frame_counters.insert(src_ext, sec.frame_counter);
        let link = Link {
            mac_src: repr.src,
            secured: true,
            from_child: self.children.iter().any(|c| c.ext == src_ext),
        };
        self.reassemble(now, repr, &plaintext, link);
    }

    pub(super) fn reassemble(
        &mut self,
        now: Instant,
        repr: &FrameRepr,
        lowpan_payload: &[u8],
        link: Link,
    ) {
        let contexts = self.contexts();
        match self
            .reassembler
            .push(now, &repr.src, &repr.dst, lowpan_payload, &contexts)
        {
            Ok(Some(datagram)) => self.handle_ipv6(now, datagram, link),
            Ok(None) => {}
            Err(_) => self.counters.rx_malformed += 1,
        }
    }

    pub(super) fn neighbor_by_short(&self, short: u16) -> Option<Neighbor> {
        if let Some(p) = self.parent
            && p.rloc16 == short
        {
            return Some(p);
        }
        self.children
            .iter()
            .find(|c| c.rloc16 == short)
            .map(|c| Neighbor {
                ext: c.ext,
                rloc16: c.rloc16,
            })
    }

    /// An Imm-Ack goes out at once, past the transmit queue (the radio sends it itself).
    pub(super) fn send_ack(&mut self, sequence: u8) {
        let psdu = FrameRepr::ack(sequence, false).emit(&[]);
        self.counters.tx_acks += 1;
        self.send_psdu(&psdu);
    }
}
