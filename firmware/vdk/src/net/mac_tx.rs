//! The MAC transmit queue: one frame on the air at a time, Imm-Ack wait and retransmissions.
//!
//! Sans-IO and sans-clock like the rest of the stack: [`MacTx::poll`] hands out one step at a time
//! (a PSDU to put on the air, or a frame that finished), [`MacTx::on_ack`] takes an Imm-Ack's
//! sequence number, and [`MacTx::next_deadline`] says when the frame in flight times out.
//!
//! What it models of OpenThread's `SubMac` (src/core/mac/sub_mac.cpp, `SubMac::HandleTransmitDone`):
//! a frame that asked for an ack and got none is sent again, as it is (`SetIsARetransmission`: the
//! same sequence number, and the same frame counter, so the same secured bytes), until
//! `GetMaxFrameRetries()` retries are used up; then the frame completes with a no-ack error. The
//! retry budget is `OPENTHREAD_CONFIG_MAC_DEFAULT_MAX_FRAME_RETRIES_DIRECT` (src/core/config/mac.h),
//! see [`super::MAX_FRAME_RETRIES`]. Not modelled: CSMA-CA backoffs and the random delay before a
//! retry on no-ack (`OPENTHREAD_CONFIG_MAC_ADD_DELAY_ON_NO_ACK_ERROR_BEFORE_RETRY`): the virtual air
//! has no collisions, so there is nothing for them to avoid; the ack wait alone spaces retries.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ot_hil_wire::mac::Address;

/// One frame ready for the air: its bytes are final (secured if it is secured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TxFrame {
    pub psdu: Vec<u8>,
    pub sequence: u8,
    /// Unicast frames ask for an Imm-Ack; broadcast frames complete once sent.
    pub ack_request: bool,
    pub dst: Address,
}

/// How a frame that asked for an ack ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxResult {
    Acked,
    /// No ack after the first attempt and every retry.
    NoAck,
}

/// One step of the transmit queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TxAction {
    /// Put these bytes on the air; `retry` for a retransmission of the frame in flight.
    Send { psdu: Vec<u8>, retry: bool },
    /// A frame that asked for an ack finished.
    Done { dst: Address, result: TxResult },
}

#[derive(Debug)]
struct InFlight {
    frame: TxFrame,
    retries: u8,
    ack_due: Instant,
}

/// FIFO of frames waiting for the radio, and the one frame waiting for its ack.
#[derive(Debug)]
pub(super) struct MacTx {
    queue: VecDeque<TxFrame>,
    in_flight: Option<InFlight>,
    ack_timeout: Duration,
    max_retries: u8,
}

impl MacTx {
    pub fn new(ack_timeout: Duration, max_retries: u8) -> Self {
        MacTx {
            queue: VecDeque::new(),
            in_flight: None,
            ack_timeout,
            max_retries,
        }
    }

    pub fn max_retries(&self) -> u8 {
        self.max_retries
    }

    /// A new retry budget; a frame already in flight keeps the retries it has used and stops at
    /// the new budget.
    pub fn set_max_retries(&mut self, max_retries: u8) {
        self.max_retries = max_retries;
    }

    /// Queue a frame behind the others (fragments of one datagram stay in order).
    pub fn push(&mut self, frame: TxFrame) {
        self.queue.push_back(frame);
    }

    /// The next step due at `now`, if any: call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<TxAction> {
        if let Some(f) = &mut self.in_flight {
            if now < f.ack_due {
                return None;
            }
            if f.retries < self.max_retries {
                f.retries += 1;
                f.ack_due = now + self.ack_timeout;
                return Some(TxAction::Send {
                    psdu: f.frame.psdu.clone(),
                    retry: true,
                });
            }
            let f = self.in_flight.take()?;
            return Some(TxAction::Done {
                dst: f.frame.dst,
                result: TxResult::NoAck,
            });
        }
        let frame = self.queue.pop_front()?;
        // Only a frame that waits for its ack is kept (and so copied); a broadcast goes as is.
        let psdu = if frame.ack_request {
            let psdu = frame.psdu.clone();
            self.in_flight = Some(InFlight {
                frame,
                retries: 0,
                ack_due: now + self.ack_timeout,
            });
            psdu
        } else {
            frame.psdu
        };
        Some(TxAction::Send { psdu, retry: false })
    }

    /// An Imm-Ack came with `sequence`: the frame in flight is done if it is the one acked (a
    /// late ack of an earlier attempt of the same frame counts too, as it carries the same
    /// sequence number). Acks for anything else are ignored.
    pub fn on_ack(&mut self, sequence: u8) -> Option<TxAction> {
        if self
            .in_flight
            .as_ref()
            .is_none_or(|f| f.frame.sequence != sequence)
        {
            return None;
        }
        let f = self.in_flight.take()?;
        Some(TxAction::Done {
            dst: f.frame.dst,
            result: TxResult::Acked,
        })
    }

    /// When the frame in flight runs out of ack wait. (Queued frames never wait for a timer:
    /// they go as soon as the radio is free.)
    pub fn next_deadline(&self) -> Option<Instant> {
        self.in_flight.as_ref().map(|f| f.ack_due)
    }

    /// Forget everything queued and in flight (radio off, or the node left its partition).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.in_flight = None;
    }

    /// Frames queued or in flight.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len() + usize::from(self.in_flight.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(50);

    fn unicast(sequence: u8) -> TxFrame {
        TxFrame {
            psdu: vec![0x61, 0xdc, sequence, 1, 2, 3],
            sequence,
            ack_request: true,
            dst: Address::Short(0x0400),
        }
    }

    fn broadcast(sequence: u8) -> TxFrame {
        TxFrame {
            psdu: vec![0x41, 0xd8, sequence, 0xff, 0xff],
            sequence,
            ack_request: false,
            dst: Address::Short(0xffff),
        }
    }

    fn send(psdu: &[u8], retry: bool) -> Option<TxAction> {
        Some(TxAction::Send {
            psdu: psdu.to_vec(),
            retry,
        })
    }

    #[test]
    fn unacked_frame_is_sent_again_unchanged_then_fails_after_all_retries() {
        let mut tx = MacTx::new(TIMEOUT, 3);
        let t0 = Instant::now();
        let frame = unicast(7);
        tx.push(frame.clone());
        assert_eq!(tx.poll(t0), send(&frame.psdu, false));
        assert_eq!(tx.poll(t0), None, "waits for the ack");
        let mut now = t0;
        for _ in 0..3 {
            assert_eq!(tx.next_deadline(), Some(now + TIMEOUT));
            now += TIMEOUT;
            assert_eq!(tx.poll(now - Duration::from_millis(1)), None);
            assert_eq!(tx.poll(now), send(&frame.psdu, true), "same bytes");
        }
        now += TIMEOUT;
        assert_eq!(
            tx.poll(now),
            Some(TxAction::Done {
                dst: frame.dst,
                result: TxResult::NoAck
            }),
            "four attempts, then the frame fails"
        );
        assert_eq!(
            (tx.poll(now), tx.next_deadline(), tx.len()),
            (None, None, 0)
        );
    }

    #[test]
    fn ack_completes_the_frame_in_flight_and_frees_the_radio() {
        let mut tx = MacTx::new(TIMEOUT, 3);
        let t0 = Instant::now();
        tx.push(unicast(1));
        tx.push(unicast(2));
        assert_eq!(tx.poll(t0), send(&unicast(1).psdu, false));
        assert_eq!(tx.poll(t0), None, "one frame in flight at a time");
        assert_eq!(tx.on_ack(2), None, "an ack for another frame");
        // A retry, then the (late) ack of the first attempt: same sequence number.
        assert_eq!(tx.poll(t0 + TIMEOUT), send(&unicast(1).psdu, true));
        assert_eq!(
            tx.on_ack(1),
            Some(TxAction::Done {
                dst: Address::Short(0x0400),
                result: TxResult::Acked
            })
        );
        assert_eq!(tx.on_ack(1), None, "a second ack finds nothing in flight");
        assert_eq!(tx.poll(t0 + TIMEOUT), send(&unicast(2).psdu, false));
        assert_eq!(tx.len(), 1);
    }

    #[test]
    fn frames_leave_in_queue_order_and_broadcasts_need_no_ack() {
        let mut tx = MacTx::new(TIMEOUT, 3);
        let t0 = Instant::now();
        for f in [broadcast(1), broadcast(2), unicast(3), broadcast(4)] {
            tx.push(f);
        }
        assert_eq!(tx.poll(t0), send(&broadcast(1).psdu, false));
        assert_eq!(tx.poll(t0), send(&broadcast(2).psdu, false));
        assert_eq!(tx.poll(t0), send(&unicast(3).psdu, false));
        assert_eq!(tx.poll(t0), None, "the broadcast waits behind the unicast");
        assert!(tx.on_ack(3).is_some());
        assert_eq!(tx.poll(t0), send(&broadcast(4).psdu, false));
        assert_eq!((tx.poll(t0), tx.len()), (None, 0));
    }

    #[test]
    fn with_no_retries_an_unacked_frame_fails_after_one_attempt() {
        let mut tx = MacTx::new(TIMEOUT, 15);
        tx.set_max_retries(0);
        assert_eq!(tx.max_retries(), 0);
        let t0 = Instant::now();
        tx.push(unicast(1));
        assert_eq!(tx.poll(t0), send(&unicast(1).psdu, false));
        assert_eq!(
            tx.poll(t0 + TIMEOUT),
            Some(TxAction::Done {
                dst: Address::Short(0x0400),
                result: TxResult::NoAck
            })
        );
    }

    #[test]
    fn clear_forgets_queue_and_frame_in_flight() {
        let mut tx = MacTx::new(TIMEOUT, 3);
        let t0 = Instant::now();
        tx.push(unicast(1));
        tx.push(unicast(2));
        assert!(tx.poll(t0).is_some());
        tx.clear();
        assert_eq!((tx.len(), tx.next_deadline()), (0, None));
        assert_eq!(tx.poll(t0 + TIMEOUT), None);
        assert_eq!(tx.on_ack(1), None);
    }
}
