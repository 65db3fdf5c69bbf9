//! Flights (RFC 6347 §4.2.4): our last flight is buffered, fragmented to fit the record and
//! datagram limits on every (re)transmission, and resent on timer expiry with doubling back-off
//! or at once when the peer retransmits its previous flight.

use std::time::Instant;

use crate::codec::Codec;
use crate::context::{Context, FlightMsg, OutOfHeap};
use crate::crypto::RECORD_EXPANSION;
use crate::enums::*;
use crate::messages::*;

impl Context {
    /// Queue a handshake message in the current flight (and the Finished hash log).
    pub(crate) fn queue_handshake(&mut self, payload: &HandshakePayload) {
        let body = payload.encode_body();
        let full = encode_handshake(payload.msg_type(), self.out_msg_seq, &body);
        self.out_msg_seq = self.out_msg_seq.wrapping_add(1);
        self.hs.messages.extend_from_slice(&full);
        self.flight.push(FlightMsg {
            epoch: self.rec.write_epoch,
            content_type: ContentType::HANDSHAKE,
            data: full,
        });
    }

    /// Queue ChangeCipherSpec and switch our write side to epoch 1.
    pub(crate) fn queue_ccs(&mut self) {
        self.flight.push(FlightMsg {
            epoch: self.rec.write_epoch,
            content_type: ContentType::CHANGE_CIPHER_SPEC,
            data: vec![1],
        });
        self.rec.write_epoch = 1;
    }

    pub(crate) fn start_flight(&mut self) {
        self.flight.clear();
        self.retransmit_at = None;
    }

    /// Send the buffered flight now and arm the timer if it expects a reply.
    pub(crate) fn send_flight(
        &mut self,
        now: Instant,
        expects_reply: bool,
    ) -> Result<(), OutOfHeap> {
        self.timeout = self.config.retransmit_min;
        self.transmit_flight();
        self.retransmit_at = expects_reply.then(|| now + self.timeout);
        self.account()
    }

    /// Encode the flight into datagrams: handshake messages fragmented to fit
    /// `max_record_content` and `max_datagram`, records packed into datagrams.
    pub(crate) fn transmit_flight(&mut self) {
        // Taken out while records are encoded (that needs `&mut self`), put back below.
        let flight = std::mem::take(&mut self.flight);
        let max_dgram = self.config.max_datagram.max(64);
        let mut datagram: Vec<u8> = Vec::new();
        for m in &flight {
            let records = if m.content_type == ContentType::HANDSHAKE {
                self.handshake_records(m, max_dgram)
            } else {
                vec![self.encode_record(m.content_type, m.epoch, &m.data)]
            };
            for rec in records {
                if !datagram.is_empty() && datagram.len() + rec.len() > max_dgram {
                    self.out.push_back(std::mem::take(&mut datagram));
                }
                datagram.extend_from_slice(&rec);
            }
        }
        if !datagram.is_empty() {
            self.out.push_back(datagram);
        }
        self.flight = flight;
    }

    /// The records of one handshake message, fragmented (RFC 6347 §4.2.3) so that each fits
    /// `max_record_content` and a datagram of `max_dgram`.
    fn handshake_records(&mut self, m: &FlightMsg, max_dgram: usize) -> Vec<Vec<u8>> {
        let mut records = Vec::new();
        let overhead = RECORD_HEADER_LEN + if m.epoch > 0 { RECORD_EXPANSION } else { 0 };
        let room = self
            .config
            .max_record_content
            .min(max_dgram.saturating_sub(overhead));
        let max_frag = room.saturating_sub(HANDSHAKE_HEADER_LEN).max(1);
        let Ok(h) = HandshakeHeader::read(&mut crate::codec::Reader::new(&m.data)) else {
            return records;
        };
        let body = m.data.get(HANDSHAKE_HEADER_LEN..).unwrap_or(&[]);
        let mut off = 0usize;
        loop {
            let n = (body.len() - off).min(max_frag);
            let mut frag = Vec::with_capacity(HANDSHAKE_HEADER_LEN + n);
            HandshakeHeader {
                fragment_offset: off as u32,
                fragment_length: n as u32,
                ..h
            }
            .encode(&mut frag);
            frag.extend_from_slice(&body[off..off + n]);
            records.push(self.encode_record(m.content_type, m.epoch, &frag));
            off += n;
            if off >= body.len() {
                break;
            }
        }
        records
    }
}
