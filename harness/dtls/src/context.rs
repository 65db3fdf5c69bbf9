//! Everything a connection keeps besides its handshake state: the [`Context`] every state handler
//! works on, with what it holds (negotiation state, records, the flight, events) and the
//! operations below the handshake: records out, failure and the memory model. Flights are
//! built and sent in [`crate::flight`], the handshake's own steps in [`crate::handshake`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p256::ecdh::EphemeralSecret;

use crate::cert::ParsedCert;
use crate::codec::Codec;
use crate::config::Config;
use crate::crypto::{KeyBlock, RECORD_EXPANSION};
use crate::ecjpake::EcjpakeContext;
use crate::enums::*;
use crate::error::Error;
use crate::event::{Event, Role};
use crate::messages::*;
use crate::reassembly::{Complete, Reassembler};
use crate::record::{RecordLayer, own_direction};
use crate::rng::BoxedRng;
use crate::transcript::TranscriptBuilder;

/// Negotiation state shared by the handshake states.
#[derive(Default)]
pub(crate) struct Handshake {
    pub(crate) client_random: [u8; 32],
    pub(crate) server_random: [u8; 32],
    pub(crate) suite: Option<CipherSuite>,
    /// All handshake messages so far in unfragmented form, for Finished and CertificateVerify
    /// (RFC 6347 §4.2.6: ClientHello without cookie and HelloVerifyRequest excluded).
    pub(crate) messages: Vec<u8>,
    pub(crate) ecjpake: Option<EcjpakeContext>,
    pub(crate) ecdh: Option<EphemeralSecret>,
    pub(crate) peer_chain: Vec<ParsedCert>,
    pub(crate) master: Option<[u8; 48]>,
    /// RFC 7627 negotiated: the master secret is bound to the session hash.
    pub(crate) extended_master_secret: bool,
    pub(crate) keys: Option<KeyBlock>,
}

impl Handshake {
    /// The key exchange of the negotiated suite, once there is one.
    pub(crate) fn key_exchange(&self) -> Option<KeyExchange> {
        self.suite.and_then(|s| s.key_exchange())
    }
}

/// Accounted handshake memory (see [`Connection::peak_handshake_bytes`](crate::Connection::peak_handshake_bytes)).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    pub(crate) current: usize,
    pub(crate) peak: usize,
}

/// Sizes of key material in the memory model, close to mbedtls' structures on a 32-bit MCU.
mod cost {
    /// ECDH context: our key pair and the peer's point (mbedtls_ecdh_context).
    pub const ECDH: usize = 400;
    /// EC J-PAKE context: 4 of our points/scalars, 2 peer points, Xp (mbedtls_ecjpake_context).
    pub const ECJPAKE: usize = 1200;
    /// Two AES-CCM contexts with expanded key schedules, plus IVs (mbedtls_ssl_transform).
    pub const TRANSFORM: usize = 2 * 300;
    /// Randoms, master secret, premaster and key block.
    pub const SECRETS: usize = 32 + 32 + 48 + 48 + 40;
    /// Handshake hash contexts (mbedtls keeps running SHA-256 state).
    pub const HASH: usize = 2 * 112;
}

/// The memory model went over `heap_limit`: the connection already sent its internal_error
/// alert and reported the failure (see [`Context::account`]).
#[derive(Debug)]
pub(crate) struct OutOfHeap;

/// One buffered message of our current flight, kept for retransmission.
#[derive(Debug, Clone)]
pub(crate) struct FlightMsg {
    pub(crate) epoch: u16,
    pub(crate) content_type: ContentType,
    /// Handshake: the full unfragmented message (header + body); otherwise the record body.
    pub(crate) data: Vec<u8>,
}

/// Everything a connection keeps besides its handshake state: what the state handlers work on.
pub(crate) struct Context {
    pub(crate) role: Role,
    pub(crate) config: Arc<Config>,
    pub(crate) rng: BoxedRng,
    /// The peer's transport address in some form: it goes into the server's cookie.
    pub(crate) peer_id: Vec<u8>,
    pub(crate) hs: Handshake,
    pub(crate) rec: RecordLayer,
    pub(crate) out_msg_seq: u16,
    pub(crate) in_msg_seq: u16,
    pub(crate) reassembly: Reassembler,
    pub(crate) ready: BTreeMap<u16, Complete>,
    pub(crate) flight: Vec<FlightMsg>,
    pub(crate) retransmit_at: Option<Instant>,
    pub(crate) timeout: Duration,
    pub(crate) retransmitted_this_datagram: bool,
    pub(crate) out: VecDeque<Vec<u8>>,
    pub(crate) events: VecDeque<Event>,
    /// Every record we sent or received, in plaintext.
    pub(crate) transcript: TranscriptBuilder,
    pub(crate) memory: Memory,
}

impl Context {
    pub(crate) fn new(role: Role, config: Arc<Config>, rng: BoxedRng, peer_id: Vec<u8>) -> Self {
        let timeout = config.retransmit_min;
        Context {
            role,
            config,
            rng,
            peer_id,
            hs: Handshake::default(),
            rec: RecordLayer::default(),
            out_msg_seq: 0,
            in_msg_seq: 0,
            reassembly: Reassembler::default(),
            ready: BTreeMap::new(),
            flight: Vec::new(),
            retransmit_at: None,
            timeout,
            retransmitted_this_datagram: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            transcript: TranscriptBuilder::new(),
            memory: Memory::default(),
        }
    }

    pub(crate) fn random32(&mut self) -> [u8; 32] {
        let mut r = [0u8; 32];
        self.rng.fill_bytes(&mut r);
        r
    }

    /// Protect `plaintext` as the next record of `epoch` and log it in the transcript.
    pub(crate) fn encode_record(
        &mut self,
        content_type: ContentType,
        epoch: u16,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let (seq, record) = self.rec.seal(content_type, epoch, plaintext);
        self.transcript.record(
            own_direction(self.role),
            epoch,
            seq,
            content_type,
            plaintext,
        );
        record
    }

    /// The plaintext of a received record, or `None` when it is to be dropped silently
    /// (see [`RecordLayer::open`]).
    pub(crate) fn unprotect(
        &mut self,
        r: &RawRecord<'_>,
        awaiting_finished: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.rec
            .open(r, awaiting_finished, self.config.bad_mac_limit)
    }

    /// Drop the flight: nothing is retransmitted any more.
    pub(crate) fn stop_flight(&mut self) {
        self.retransmit_at = None;
        self.flight.clear();
    }

    /// Send a fatal alert (if any), drop the flight and report the failure. The caller moves
    /// to the failed state.
    pub(crate) fn fail(&mut self, alert: Option<AlertDescription>, reason: &str) {
        if let Some(description) = alert {
            let a = Alert {
                level: AlertLevel::FATAL,
                description,
            };
            let epoch = self.rec.write_epoch;
            let rec = self.encode_record(ContentType::ALERT, epoch, &a.get_encoding());
            self.out.push_back(rec);
        }
        self.stop_flight();
        self.events.push_back(Event::Failed {
            alert,
            reason: reason.to_string(),
        });
    }

    /// Recompute the memory model (during a handshake); over the heap limit, fail with
    /// internal_error.
    pub(crate) fn account(&mut self) -> Result<(), OutOfHeap> {
        let flight: usize = self.flight.iter().map(|m| m.data.len() + 16).sum();
        let ready: usize = self.ready.values().map(|c| c.body.len() + 16).sum();
        let certs: usize = self.hs.peer_chain.iter().map(ParsedCert::footprint).sum();
        let kx = match self.hs.key_exchange() {
            _ if self.hs.ecjpake.is_some() => cost::ECJPAKE,
            Some(KeyExchange::EcdheEcdsa) => cost::ECDH,
            _ => 0,
        };
        let transform = if self.hs.keys.is_some() {
            cost::TRANSFORM
        } else {
            0
        };
        let io = 2 * (self.config.max_record_content + RECORD_HEADER_LEN + RECORD_EXPANSION);
        let current = flight
            + self.reassembly.held_bytes()
            + ready
            + self.hs.messages.len()
            + certs
            + kx
            + transform
            + cost::SECRETS
            + cost::HASH
            + io;
        self.memory.current = current;
        self.memory.peak = self.memory.peak.max(current);
        if self.config.heap_limit.is_some_and(|l| current > l) {
            self.fail(Some(AlertDescription::INTERNAL_ERROR), "out of heap");
            return Err(OutOfHeap);
        }
        Ok(())
    }
}
