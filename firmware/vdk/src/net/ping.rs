//! The ping sender (OpenThread's `PingSender`): echo requests on a schedule, replies matched by
//! identifier and sequence, a summary when all replies are in or the timeout passed.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use ot_hil_wire::ip;

use super::*;

impl Stack {
    pub(super) fn run_ping(&mut self, now: Instant) {
        let Some(ping) = self.ping.as_mut() else {
            return;
        };
        let mut to_send = None;
        if let Some(at) = ping.next_send
            && now >= at
        {
            let seq = self.echo_sequence;
            self.echo_sequence = self.echo_sequence.wrapping_add(1);
            ping.sent += 1;
            ping.outstanding.insert(seq, now);
            let r = ping.request;
            if ping.sent < r.count {
                // Keep the schedule: late polls do not stretch the interval.
                ping.next_send = Some((at + r.interval).max(now));
            } else {
                ping.next_send = None;
                ping.done_at = Some(now + r.timeout);
            }
            to_send = Some((r, ping.identifier, seq));
        }
        if let Some((r, identifier, seq)) = to_send {
            let (dst, size, hop_limit) = (r.dst, r.size, r.hop_limit);
            // OpenThread puts the send time (ms, big-endian) first in the echo data.
            let stamp =
                (now.saturating_duration_since(self.epoch).as_millis() as u32).to_be_bytes();
            let mut data = vec![0u8; usize::from(size)];
            for (d, s) in data.iter_mut().zip(stamp.iter()) {
                *d = *s;
            }
            if let Some(src) = r.src.or_else(|| self.source_for(&dst)) {
                let packet = ip::echo_request(src, dst, hop_limit, identifier, seq, &data);
                self.send_ipv6(now, packet);
            }
        }
        self.finish_ping_if_done(now);
    }

    pub(super) fn finish_ping_if_done(&mut self, now: Instant) {
        let Some(ping) = &self.ping else {
            return;
        };
        let all_answered = ping.next_send.is_none() && ping.received >= ping.sent;
        let timed_out = ping.done_at.is_some_and(|d| now >= d);
        if !(all_answered || timed_out) {
            return;
        }
        let rtt_min = ping.rtts.iter().min().copied().unwrap_or_default();
        let rtt_max = ping.rtts.iter().max().copied().unwrap_or_default();
        let rtt_avg = if ping.rtts.is_empty() {
            Duration::ZERO
        } else {
            ping.rtts.iter().sum::<Duration>() / ping.rtts.len() as u32
        };
        self.events.push(NetEvent::PingDone {
            sent: ping.sent,
            received: ping.received,
            rtt_min,
            rtt_avg,
            rtt_max,
        });
        self.ping = None;
    }

    pub(super) fn handle_echo_reply(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        hop_limit: u8,
        identifier: u16,
        sequence: u16,
        data_len: usize,
    ) {
        let Some(ping) = self.ping.as_mut() else {
            return;
        };
        if identifier != ping.identifier {
            return;
        }
        let Some(sent_at) = ping.outstanding.remove(&sequence) else {
            return;
        };
        let rtt = now.saturating_duration_since(sent_at);
        ping.received += 1;
        ping.rtts.push(rtt);
        self.events.push(NetEvent::PingReply {
            from: src,
            size: u16::try_from(data_len).unwrap_or(u16::MAX),
            seq: sequence,
            hop_limit,
            rtt,
        });
        self.finish_ping_if_done(now);
    }
}
