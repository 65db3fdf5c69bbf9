//! The sans-IO DTLS 1.2 connection (RFC 6347 over RFC 5246).
//!
//! The caller feeds datagrams and time in, and takes datagrams and events out:
//! [`Connection::handle_datagram`], [`Connection::handle_timeout`], [`Connection::poll_transmit`],
//! [`Connection::poll_event`], [`Connection::next_timeout`]. No sockets, no clock.
//!
//! Layers, bottom up:
//! * records: epochs 0 and 1, CCM_8 protection, 48-bit sequence numbers, replay window;
//! * handshake messages: message_seq ordering, fragmentation on send, reassembly on receive;
//! * flights: the last flight is buffered and retransmitted on timer expiry with doubling
//!   back-off (RFC 6347 §4.2.4), or at once when the peer retransmits its previous flight;
//! * the handshake state machine: one struct per state (`ExpectServerHello`, ...), each naming
//!   the message expected next.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p256::ecdh::EphemeralSecret;
use p256::ecdsa::VerifyingKey;
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;

use crate::cert::{CertifiedKey, ParsedCert, verify_chain, verify_signature};
use crate::codec::Codec;
use crate::config::{ClientOffer, Config, EcjpakeBackend, HelloLayout, select_suite};
use crate::crypto::{
    KeyBlock, RECORD_EXPANSION, RecordCipher, ReplayWindow, extended_master_secret, hmac_sha256,
    master_secret, sha256, verify_data,
};
use crate::ecjpake::{self, EcjpakeContext};
use crate::enums::*;
use crate::error::Error;
use crate::messages::*;
use crate::reassembly::{Complete, Reassembler};
use crate::rng::{BoxedRng, system_rng};
use crate::transcript::{Direction, Transcript, TranscriptBuilder};

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake finished (both Finished messages verified).
    Connected {
        suite: CipherSuite,
    },
    ApplicationData(Vec<u8>),
    /// The peer sent close_notify, or we closed.
    Closed,
    /// The connection failed. `alert` is the alert we sent or received (`None` for a handshake
    /// timeout, which sends nothing); `reason` says what happened.
    Failed {
        alert: Option<AlertDescription>,
        reason: String,
    },
}

/// Which end we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Handshake states, one struct each (rustls style): the name says which message is expected
/// next, the fields hold what only that step needs. Handlers consume a state and install the
/// next one; data for the rest of the handshake lives in [`Handshake`].
#[derive(Debug)]
enum State {
    // -- Client --
    ExpectServerHello(ExpectServerHello),
    ExpectCertificate(ExpectCertificate),
    ExpectServerKeyExchange(ExpectServerKeyExchange),
    ExpectServerHelloDone(ExpectServerHelloDone),
    // -- Server --
    ExpectClientHello(ExpectClientHello),
    ExpectClientCertificate(ExpectClientCertificate),
    ExpectClientKeyExchange(ExpectClientKeyExchange),
    ExpectCertificateVerify(ExpectCertificateVerify),
    // -- Both --
    ExpectCcs(ExpectCcs),
    ExpectFinished(ExpectFinished),
    Connected,
    Closed,
    Failed,
    /// Placeholder while a handler owns the previous state; never observed between calls.
    Busy,
}

// -- Client: waiting for the server's hello --

/// Sent ClientHello; expect HelloVerifyRequest (RFC 6347 §4.2.1) or ServerHello
/// (RFC 5246 §7.4.1.3). The hello is kept to resend it with the cookie.
#[derive(Debug)]
struct ExpectServerHello {
    client_hello: ClientHello,
}

// -- Client: the server's first flight --

/// ECDHE_ECDSA: the server's Certificate (RFC 5246 §7.4.2).
#[derive(Debug)]
struct ExpectCertificate;

/// ServerKeyExchange (RFC 5246 §7.4.3, RFC 8422 §5.4; optional for PSK, RFC 4279 §2).
#[derive(Debug)]
struct ExpectServerKeyExchange {
    /// ECDHE_ECDSA: the key from the server's certificate, which signed the parameters.
    server_key: Option<VerifyingKey>,
}

/// CertificateRequest (optional, RFC 5246 §7.4.4), then ServerHelloDone (§7.4.5).
#[derive(Debug)]
struct ExpectServerHelloDone {
    /// ECDHE: the server's ephemeral public point.
    server_point: Option<Vec<u8>>,
    cert_requested: bool,
}

// -- Server: waiting for the client's hello --

/// Expect ClientHello; without a valid cookie answer with HelloVerifyRequest, statelessly
/// (RFC 6347 §4.2.1).
#[derive(Debug)]
struct ExpectClientHello;

// -- Server: the client's second flight --

/// We sent CertificateRequest: the client's Certificate (RFC 5246 §7.4.6).
#[derive(Debug)]
struct ExpectClientCertificate;

/// ClientKeyExchange (RFC 5246 §7.4.7, RFC 4279 §2, RFC 8422 §5.7).
#[derive(Debug)]
struct ExpectClientKeyExchange {
    /// The key of the client's certificate, if it sent one: a CertificateVerify follows.
    client_key: Option<VerifyingKey>,
}

/// The client sent a certificate: its CertificateVerify (RFC 5246 §7.4.8).
#[derive(Debug)]
struct ExpectCertificateVerify {
    client_key: VerifyingKey,
}

// -- Both: the end of the handshake --

/// Their ChangeCipherSpec (RFC 5246 §7.1); it switches their side to epoch 1.
#[derive(Debug)]
struct ExpectCcs;

/// Their Finished (RFC 5246 §7.4.9), the first record of epoch 1.
#[derive(Debug)]
struct ExpectFinished;

/// One buffered message of our current flight, kept for retransmission.
#[derive(Debug, Clone)]
struct FlightMsg {
    epoch: u16,
    content_type: ContentType,
    /// Handshake: the full unfragmented message (header + body); otherwise the record body.
    data: Vec<u8>,
}

/// Negotiation state shared by the handshake states.
#[derive(Default)]
struct Handshake {
    client_random: [u8; 32],
    server_random: [u8; 32],
    suite: Option<CipherSuite>,
    /// All handshake messages so far in unfragmented form, for Finished and CertificateVerify
    /// (RFC 6347 §4.2.6: ClientHello without cookie and HelloVerifyRequest excluded).
    messages: Vec<u8>,
    ecjpake: Option<EcjpakeContext>,
    ecdh: Option<EphemeralSecret>,
    peer_chain: Vec<ParsedCert>,
    master: Option<[u8; 48]>,
    /// RFC 7627 negotiated: the master secret is bound to the session hash.
    extended_master_secret: bool,
    keys: Option<KeyBlock>,
}

/// Record layer state: epochs 0 (plaintext) and 1 (after ChangeCipherSpec).
#[derive(Default)]
struct RecordLayer {
    write_epoch: u16,
    write_seq: [u64; 2],
    write_cipher: Option<RecordCipher>,
    read_epoch: u16,
    read_cipher: Option<RecordCipher>,
    /// Installed when their ChangeCipherSpec arrives.
    pending_read: Option<RecordCipher>,
    replay: [ReplayWindow; 2],
}

/// Accounted handshake memory (see [`Connection::peak_handshake_bytes`]).
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    current: usize,
    peak: usize,
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

/// A DTLS 1.2 connection, client or server, over one peer.
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    rng: BoxedRng,
    peer_id: Vec<u8>,
    state: State,
    hs: Handshake,
    rec: RecordLayer,
    out_msg_seq: u16,
    in_msg_seq: u16,
    reassembly: Reassembler,
    ready: BTreeMap<u16, Complete>,
    flight: Vec<FlightMsg>,
    retransmit_at: Option<Instant>,
    timeout: Duration,
    retransmitted_this_datagram: bool,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    /// Every record we sent or received, in plaintext.
    transcript: TranscriptBuilder,
    memory: Memory,
    bad_macs: u32,
}

/// Stand-in password for a J-PAKE context that was never given one: round one does not use the
/// password, and an unchecked implementation (see [`EcjpakeBackend::UncheckedAlt`]) writes and
/// reads round one without it.
const UNSET_ECJPAKE_PASSWORD: &[u8] = &[1];

/// Protocol version we speak.
const VERSION: ProtocolVersion = ProtocolVersion::DTLS1_2;

impl Connection {
    /// A client; its ClientHello is ready in [`Connection::poll_transmit`] at once.
    pub fn client(config: Arc<Config>, now: Instant) -> Result<Self, Error> {
        Self::client_with_rng(config, now, system_rng())
    }

    pub fn client_with_rng(
        config: Arc<Config>,
        now: Instant,
        rng: BoxedRng,
    ) -> Result<Self, Error> {
        let mut c = Self::new(Role::Client, config, rng, Vec::new(), State::Busy);
        c.start_client(now)?;
        Ok(c)
    }

    /// A server for the peer `peer_id` (its transport address in some form: it goes into the cookie).
    pub fn server(config: Arc<Config>, now: Instant, peer_id: &[u8]) -> Result<Self, Error> {
        Self::server_with_rng(config, now, peer_id, system_rng())
    }

    pub fn server_with_rng(
        config: Arc<Config>,
        _now: Instant,
        peer_id: &[u8],
        rng: BoxedRng,
    ) -> Result<Self, Error> {
        if config.suites.is_empty() {
            return Err(Error::Config("no cipher suites enabled".into()));
        }
        let mut c = Self::new(
            Role::Server,
            config,
            rng,
            peer_id.to_vec(),
            State::ExpectClientHello(ExpectClientHello),
        );
        c.account();
        Ok(c)
    }

    fn new(role: Role, config: Arc<Config>, rng: BoxedRng, peer_id: Vec<u8>, state: State) -> Self {
        let timeout = config.retransmit_min;
        Connection {
            role,
            config,
            rng,
            peer_id,
            state,
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
            bad_macs: 0,
        }
    }

    // ---------------------------------------------------------------- public surface

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    pub fn is_handshaking(&self) -> bool {
        !matches!(self.state, State::Connected | State::Closed | State::Failed)
    }

    /// Negotiated suite, once the ServerHello was sent or received.
    pub fn suite(&self) -> Option<CipherSuite> {
        self.hs.suite
    }

    /// Whether the hellos negotiated RFC 7627's extended master secret.
    pub fn uses_extended_master_secret(&self) -> bool {
        self.hs.extended_master_secret
    }

    /// The peer's certificate chain (leaf first), if it sent one.
    pub fn peer_certificates(&self) -> &[ParsedCert] {
        &self.hs.peer_chain
    }

    /// The 40-byte key block once keys are derived (Thread derives its KEK as SHA-256 of it).
    pub fn key_block(&self) -> Option<[u8; 40]> {
        self.hs.keys.as_ref().map(|k| k.raw)
    }

    /// Records this connection sent and received.
    pub fn transcript(&self) -> &Transcript {
        self.transcript.transcript()
    }

    /// Highest accounted handshake memory so far, in bytes. Counted: buffered flights
    /// (retransmission copies), reassembly buffers, the handshake message log used for
    /// Finished/CertificateVerify, parsed peer certificates (DER + decoded fields), key
    /// exchange contexts (ECDH, EC J-PAKE), record transforms and secrets, hash state, and two
    /// record I/O buffers of `max_record_content` (mbedtls allocates in/out buffers of
    /// MBEDTLS_SSL_MAX_CONTENT_LEN plus overhead).
    pub fn peak_handshake_bytes(&self) -> usize {
        self.memory.peak
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.retransmit_at
    }

    /// Send application data (only once connected). Data is split into records of at most
    /// `max_record_content` bytes, one record per datagram.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        match self.state {
            State::Connected => {}
            State::Closed | State::Failed => return Err(Error::Closed),
            _ => return Err(Error::NotConnected),
        }
        let max = self.config.max_record_content.max(1);
        for chunk in data.chunks(max) {
            let rec = self.encode_record(ContentType::APPLICATION_DATA, 1, chunk);
            self.out.push_back(rec);
        }
        if data.is_empty() {
            let rec = self.encode_record(ContentType::APPLICATION_DATA, 1, &[]);
            self.out.push_back(rec);
        }
        Ok(())
    }

    /// Send close_notify (RFC 5246 §7.2.1) and close.
    pub fn close(&mut self) {
        if matches!(self.state, State::Closed | State::Failed) {
            return;
        }
        let alert = Alert {
            level: AlertLevel::WARNING,
            description: AlertDescription::CLOSE_NOTIFY,
        };
        let epoch = self.rec.write_epoch;
        let rec = self.encode_record(ContentType::ALERT, epoch, &alert.get_encoding());
        self.out.push_back(rec);
        self.state = State::Closed;
        self.stop_flight();
        self.events.push_back(Event::Closed);
    }

    /// Retransmit on timer expiry (RFC 6347 §4.2.4.1), or fail once the back-off passed its maximum.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(at) = self.retransmit_at else { return };
        if now < at {
            return;
        }
        if self.timeout >= self.config.retransmit_max {
            self.fail(None, "handshake timed out");
            return;
        }
        self.timeout = self
            .timeout
            .saturating_mul(2)
            .min(self.config.retransmit_max);
        self.transmit_flight();
        self.retransmit_at = Some(now + self.timeout);
    }

    /// Process one received datagram (one or more records).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if matches!(self.state, State::Closed | State::Failed) {
            return;
        }
        self.retransmitted_this_datagram = false;
        // RFC 6347 §4.1.2.7: a malformed tail is dropped, the good records before it still count.
        let (records, _tail_error) = split_records(datagram);
        for r in records {
            if let Err(e) = self.handle_record(now, &r) {
                let reason = e.to_string();
                self.fail(Some(e.alert()), &reason);
            }
            if matches!(self.state, State::Closed | State::Failed) {
                break;
            }
        }
        self.account();
    }

    // ---------------------------------------------------------------- records

    fn encode_record(
        &mut self,
        content_type: ContentType,
        epoch: u16,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let idx = usize::from(epoch.min(1));
        let seq = self.rec.write_seq[idx];
        self.rec.write_seq[idx] += 1;
        let body = match (&self.rec.write_cipher, epoch) {
            (Some(c), 1) => c.seal(epoch, seq, content_type, VERSION, plaintext),
            _ => plaintext.to_vec(),
        };
        let header = RecordHeader {
            content_type,
            version: VERSION,
            epoch,
            sequence: seq,
            length: body.len() as u16,
        };
        self.transcript
            .record(self.own_direction(), epoch, seq, content_type, plaintext);
        let mut out = header.get_encoding();
        out.extend_from_slice(&body);
        out
    }

    fn own_direction(&self) -> Direction {
        match self.role {
            Role::Client => Direction::ClientToServer,
            Role::Server => Direction::ServerToClient,
        }
    }

    fn handle_record(&mut self, now: Instant, r: &RawRecord<'_>) -> Result<(), Error> {
        let h = r.header;
        // DTLS 1.0 version numbers are allowed on the first ClientHello (RFC 6347 §4.1).
        if h.version != VERSION && !(h.version == ProtocolVersion::DTLS1_0 && h.epoch == 0) {
            return Ok(());
        }
        let plaintext = match h.epoch {
            0 => {
                // After the switch only retransmitted handshake messages are meaningful in epoch 0.
                if self.rec.read_epoch > 0 && h.content_type != ContentType::HANDSHAKE {
                    return Ok(());
                }
                if !self.rec.replay[0].check(h.sequence) {
                    return Ok(());
                }
                self.rec.replay[0].mark(h.sequence);
                r.fragment.to_vec()
            }
            1 if self.rec.read_epoch == 1 => {
                if !self.rec.replay[1].check(h.sequence) {
                    // RFC 6347 §4.1.2.6: duplicates are discarded silently.
                    return Ok(());
                }
                let Some(cipher) = &self.rec.read_cipher else {
                    return Ok(());
                };
                match cipher.open(h.epoch, h.sequence, h.content_type, h.version, r.fragment) {
                    Ok(p) => {
                        self.rec.replay[1].mark(h.sequence);
                        p
                    }
                    Err(_) => {
                        // Waiting for Finished, a bad MAC means the handshake derived different
                        // keys (wrong PSK or password): mbedtls (ssl_msg.c, "Except when waiting
                        // for Finished") fails with a bad_record_mac alert, and so do we.
                        if matches!(self.state, State::ExpectFinished(_)) {
                            return Err(Error::hs(
                                AlertDescription::BAD_RECORD_MAC,
                                "finished failed record authentication (keys differ: wrong psk or password?)",
                            ));
                        }
                        // RFC 6347 §4.1.2.7: otherwise invalid records are silently discarded.
                        self.bad_macs += 1;
                        if self
                            .config
                            .bad_mac_limit
                            .is_some_and(|l| self.bad_macs >= l)
                        {
                            return Err(Error::hs(
                                AlertDescription::BAD_RECORD_MAC,
                                "too many records with bad mac",
                            ));
                        }
                        return Ok(());
                    }
                }
            }
            // A record from an epoch we have no keys for yet (reordered past the CCS): dropped,
            // the peer retransmits.
            _ => return Ok(()),
        };
        self.transcript.record(
            peer_direction(self.role),
            h.epoch,
            h.sequence,
            h.content_type,
            &plaintext,
        );
        match h.content_type {
            ContentType::HANDSHAKE => {
                let frags = split_handshake(&plaintext)?;
                for f in frags {
                    self.handle_fragment(now, h.epoch, &f)?;
                    if matches!(self.state, State::Closed | State::Failed) {
                        break;
                    }
                }
                Ok(())
            }
            ContentType::CHANGE_CIPHER_SPEC => {
                if plaintext != [1] {
                    return Err(Error::hs(
                        AlertDescription::DECODE_ERROR,
                        "bad change_cipher_spec",
                    ));
                }
                if matches!(self.state, State::ExpectCcs(_)) {
                    // RFC 5246 §7.1: switch the read side to the pending keys.
                    self.rec.read_cipher = self.rec.pending_read.take();
                    self.rec.read_epoch = 1;
                    self.state = State::ExpectFinished(ExpectFinished);
                    self.process_ready(now)?;
                }
                // Otherwise early or duplicated: ignore, a retransmission brings it again.
                Ok(())
            }
            ContentType::ALERT => {
                let a = Alert::read_bytes(&plaintext)?;
                if a.description == AlertDescription::CLOSE_NOTIFY {
                    if matches!(self.state, State::Connected) {
                        self.close();
                    } else {
                        self.state = State::Closed;
                        self.stop_flight();
                        self.events.push_back(Event::Closed);
                    }
                } else if a.level != AlertLevel::WARNING {
                    // Fatal (or an unknown level, which we treat as fatal). Other warnings are
                    // ignored, as mbedtls does (ssl_handle_message_type: "silently ignore").
                    self.state = State::Failed;
                    self.stop_flight();
                    self.events.push_back(Event::Failed {
                        alert: Some(a.description),
                        reason: format!("received {} alert {}", a.level, a.description),
                    });
                }
                Ok(())
            }
            ContentType::APPLICATION_DATA => {
                if matches!(self.state, State::Connected) && h.epoch == 1 {
                    self.events.push_back(Event::ApplicationData(plaintext));
                }
                Ok(())
            }
            _ => Err(Error::hs(
                AlertDescription::UNEXPECTED_MESSAGE,
                format!("unknown content type {}", h.content_type),
            )),
        }
    }

    // ---------------------------------------------------------------- handshake messages

    fn handle_fragment(
        &mut self,
        now: Instant,
        epoch: u16,
        f: &HandshakeFragment<'_>,
    ) -> Result<(), Error> {
        let seq = f.header.message_seq;
        // The server answers every ClientHello before the cookie exchange completes statelessly,
        // whatever its message_seq (RFC 6347 §4.2.1).
        let stateless_hello = matches!(self.state, State::ExpectClientHello(_))
            && f.header.msg_type == HandshakeType::CLIENT_HELLO;
        if seq < self.in_msg_seq && !stateless_hello {
            // The peer retransmitted a message we processed: it lost our flight (RFC 6347 §4.2.4).
            if !self.flight.is_empty() && !self.retransmitted_this_datagram {
                self.retransmitted_this_datagram = true;
                self.transmit_flight();
            }
            return Ok(());
        }
        if seq > self.in_msg_seq.saturating_add(16) && !stateless_hello {
            return Ok(());
        }
        // Finished must come under the new epoch.
        if f.header.msg_type == HandshakeType::FINISHED && epoch == 0 {
            return Err(Error::hs(
                AlertDescription::UNEXPECTED_MESSAGE,
                "finished in epoch 0",
            ));
        }
        let done = self
            .reassembly
            .push(f)
            .map_err(|e| Error::hs(AlertDescription::DECODE_ERROR, e.to_string()))?;
        if let Some(c) = done {
            if stateless_hello {
                return self.server_client_hello(now, c);
            }
            self.ready.insert(c.message_seq, c);
        }
        self.process_ready(now)
    }

    fn process_ready(&mut self, now: Instant) -> Result<(), Error> {
        while let Some(c) = self.ready.remove(&self.in_msg_seq) {
            // Finished waits for their ChangeCipherSpec (it cannot be read before anyway).
            if c.msg_type == HandshakeType::FINISHED
                && !matches!(self.state, State::ExpectFinished(_))
            {
                self.ready.insert(c.message_seq, c);
                break;
            }
            self.in_msg_seq = self.in_msg_seq.wrapping_add(1);
            self.reassembly.discard_below(self.in_msg_seq);
            self.handle_message(now, c)?;
            if matches!(self.state, State::Closed | State::Failed) {
                break;
            }
        }
        Ok(())
    }

    fn handle_message(&mut self, now: Instant, m: Complete) -> Result<(), Error> {
        let payload = HandshakePayload::read(m.msg_type, &m.body, self.hs.suite)?;
        let full = encode_handshake(m.msg_type, m.message_seq, &m.body);
        let kx = self.hs.suite.and_then(|s| s.key_exchange());
        // The handler owns the state; on error it stays Busy and `fail` ends the connection.
        match (std::mem::replace(&mut self.state, State::Busy), payload) {
            // -- Waiting for ServerHello (or HelloVerifyRequest) --
            (State::ExpectServerHello(st), HandshakePayload::HelloVerifyRequest(hvr)) => {
                self.client_hello_verify(now, st, hvr)
            }
            (State::ExpectServerHello(st), HandshakePayload::ServerHello(sh)) => {
                self.client_server_hello(st, sh, full)
            }
            // -- Waiting for the server Certificate --
            (State::ExpectCertificate(_), HandshakePayload::Certificate(c)) => {
                let server_key = self.client_certificate(c)?;
                self.hs.messages.extend_from_slice(&full);
                self.state = State::ExpectServerKeyExchange(ExpectServerKeyExchange {
                    server_key: Some(server_key),
                });
                Ok(())
            }
            // -- Waiting for ServerKeyExchange --
            (State::ExpectServerKeyExchange(st), HandshakePayload::ServerKeyExchange(ske)) => {
                let server_point = self.client_server_key_exchange(&st, ske)?;
                self.hs.messages.extend_from_slice(&full);
                self.state = State::ExpectServerHelloDone(ExpectServerHelloDone {
                    server_point,
                    cert_requested: false,
                });
                Ok(())
            }
            (State::ExpectServerKeyExchange(_), HandshakePayload::ServerHelloDone)
                if kx == Some(KeyExchange::Psk) =>
            {
                // RFC 4279 §2: the ServerKeyExchange is omitted when there is no hint.
                self.hs.messages.extend_from_slice(&full);
                let st = ExpectServerHelloDone {
                    server_point: None,
                    cert_requested: false,
                };
                self.client_flight(now, st)
            }
            // -- Waiting for CertificateRequest / ServerHelloDone --
            (State::ExpectServerHelloDone(mut st), HandshakePayload::CertificateRequest(cr))
                if kx == Some(KeyExchange::EcdheEcdsa) && !st.cert_requested =>
            {
                if !cr.certificate_types.contains(&CERT_TYPE_ECDSA_SIGN) {
                    return Err(Error::hs(
                        AlertDescription::HANDSHAKE_FAILURE,
                        "certificate request without ecdsa_sign",
                    ));
                }
                st.cert_requested = true;
                self.hs.messages.extend_from_slice(&full);
                self.state = State::ExpectServerHelloDone(st);
                Ok(())
            }
            (State::ExpectServerHelloDone(st), HandshakePayload::ServerHelloDone) => {
                self.hs.messages.extend_from_slice(&full);
                self.client_flight(now, st)
            }
            // -- Server: client's second flight --
            (State::ExpectClientCertificate(_), HandshakePayload::Certificate(c)) => {
                let client_key = self.server_client_certificate(c)?;
                self.hs.messages.extend_from_slice(&full);
                self.state = State::ExpectClientKeyExchange(ExpectClientKeyExchange {
                    client_key: Some(client_key),
                });
                Ok(())
            }
            (State::ExpectClientKeyExchange(st), HandshakePayload::ClientKeyExchange(cke)) => {
                // The extended master secret's session hash ends with this message.
                self.hs.messages.extend_from_slice(&full);
                self.server_client_key_exchange(cke)?;
                self.state = match st.client_key {
                    Some(client_key) => {
                        State::ExpectCertificateVerify(ExpectCertificateVerify { client_key })
                    }
                    None => State::ExpectCcs(ExpectCcs),
                };
                Ok(())
            }
            (State::ExpectCertificateVerify(st), HandshakePayload::CertificateVerify(cv)) => {
                // RFC 5246 §7.4.8: the signature covers all handshake messages before this one.
                // mbedtls 3.1 takes a hash it keeps a handshake digest of, which is what its
                // CertificateRequest lists.
                if !certificate_verify_schemes(&self.config).contains(&cv.scheme) {
                    return Err(Error::hs(
                        AlertDescription::ILLEGAL_PARAMETER,
                        format!("certificate verify signed with {}", cv.scheme),
                    ));
                }
                if !verify_signature(&st.client_key, cv.scheme, &self.hs.messages, &cv.signature) {
                    return Err(Error::hs(
                        AlertDescription::DECRYPT_ERROR,
                        "certificate verify signature does not verify",
                    ));
                }
                self.hs.messages.extend_from_slice(&full);
                self.state = State::ExpectCcs(ExpectCcs);
                Ok(())
            }
            // -- Both: their Finished --
            (State::ExpectFinished(_), HandshakePayload::Finished(vd)) => {
                self.peer_finished(now, vd, full)
            }
            (state, p) => {
                let reason = format!("unexpected {} in state {state:?}", p.msg_type());
                self.state = state;
                Err(Error::hs(AlertDescription::UNEXPECTED_MESSAGE, reason))
            }
        }
    }

    /// Queue a handshake message in the current flight (and the Finished hash log).
    fn queue_handshake(&mut self, payload: &HandshakePayload) {
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
    fn queue_ccs(&mut self) {
        self.flight.push(FlightMsg {
            epoch: self.rec.write_epoch,
            content_type: ContentType::CHANGE_CIPHER_SPEC,
            data: vec![1],
        });
        self.rec.write_epoch = 1;
    }

    fn start_flight(&mut self) {
        self.flight.clear();
        self.retransmit_at = None;
    }

    /// Send the buffered flight now and arm the timer if it expects a reply.
    fn send_flight(&mut self, now: Instant, expects_reply: bool) {
        self.timeout = self.config.retransmit_min;
        self.transmit_flight();
        self.retransmit_at = expects_reply.then(|| now + self.timeout);
        self.account();
    }

    fn stop_flight(&mut self) {
        self.retransmit_at = None;
        self.flight.clear();
    }

    /// Encode the flight into datagrams: handshake messages fragmented to fit
    /// `max_record_content` and `max_datagram`, records packed into datagrams.
    fn transmit_flight(&mut self) {
        // Taken out while records are encoded (that needs `&mut self`), put back below.
        let flight = std::mem::take(&mut self.flight);
        let max_dgram = self.config.max_datagram.max(64);
        let mut datagram: Vec<u8> = Vec::new();
        for m in &flight {
            let mut records = Vec::new();
            if m.content_type == ContentType::HANDSHAKE {
                let overhead = RECORD_HEADER_LEN + if m.epoch > 0 { RECORD_EXPANSION } else { 0 };
                let room = self
                    .config
                    .max_record_content
                    .min(max_dgram.saturating_sub(overhead));
                let max_frag = room.saturating_sub(HANDSHAKE_HEADER_LEN).max(1);
                let Ok(h) = HandshakeHeader::read(&mut crate::codec::Reader::new(&m.data)) else {
                    continue;
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
            } else {
                records.push(self.encode_record(m.content_type, m.epoch, &m.data));
            }
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

    fn random32(&mut self) -> [u8; 32] {
        let mut r = [0u8; 32];
        self.rng.fill_bytes(&mut r);
        r
    }

    // ---------------------------------------------------------------- client

    fn start_client(&mut self, now: Instant) -> Result<(), Error> {
        let cfg = self.config.clone();
        if cfg.suites.is_empty() {
            return Err(Error::Config("no cipher suites offered".into()));
        }
        self.hs.client_random = self.random32();
        let mut suites = Vec::new();
        let mut ecjpake_kkpp = None;
        let mut ec = false;
        for s in &cfg.suites {
            match s.key_exchange() {
                Some(KeyExchange::Psk) if cfg.psk.is_some() => suites.push(*s),
                Some(KeyExchange::EcdheEcdsa) => {
                    suites.push(*s);
                    ec = true;
                }
                // Like mbedtls, offer ECJPAKE only when the J-PAKE context passes its check
                // (`ssl_validate_ciphersuite` calls `mbedtls_ecjpake_check`): with mbedtls' own
                // implementation that takes a password; an unchecked one passes without.
                Some(KeyExchange::Ecjpake) => {
                    if cfg.ecjpake_password.is_none()
                        && cfg.ecjpake_backend == EcjpakeBackend::UncheckedAlt
                    {
                        suites.push(*s);
                        ec = true;
                    } else if let Some(pw) = &cfg.ecjpake_password {
                        let mut ctx = EcjpakeContext::new(ecjpake::Role::Client, pw)
                            .map_err(|e| Error::Config(format!("ecjpake password: {e}")))?;
                        ecjpake_kkpp = Some(ctx.write_round_one(&mut *self.rng));
                        self.hs.ecjpake = Some(ctx);
                        suites.push(*s);
                        ec = true;
                    }
                }
                _ => {}
            }
        }
        if suites.is_empty() {
            return Err(Error::Config(
                "no offered suite has its credentials configured".into(),
            ));
        }
        if ec && cfg.ecjpake_backend == EcjpakeBackend::UncheckedAlt && ecjpake_kkpp.is_none() {
            // mbedtls writes the extension whenever the J-PAKE context passes its check; an
            // unchecked implementation passes without a password, and the never-set-up context
            // proves round one under its default role, client. The context is kept only when
            // this client offers the J-PAKE suite, for a server that picks it.
            let mut ctx = EcjpakeContext::new(ecjpake::Role::Client, UNSET_ECJPAKE_PASSWORD)
                .map_err(|e| Error::Config(format!("ecjpake: {e}")))?;
            ecjpake_kkpp = Some(ctx.write_round_one(&mut *self.rng));
            if suites
                .iter()
                .any(|s| s.key_exchange() == Some(KeyExchange::Ecjpake))
            {
                self.hs.ecjpake = Some(ctx);
            }
        }
        // mbedtls 3.1 always appends the renegotiation SCSV to an initial ClientHello
        // (RFC 5746 §3.3), even when renegotiation is compiled out.
        suites.push(CipherSuite::EMPTY_RENEGOTIATION_INFO_SCSV);
        // Extensions in the order the configured mbedtls writes them.
        let signature_algorithms = (!cfg.signature_algorithms.is_empty())
            .then(|| Extension::signature_algorithms(&cfg.signature_algorithms));
        let supported_groups = ec.then(|| Extension::supported_groups(&[NamedGroup::SECP256R1]));
        let mut extensions: Vec<Extension> = match cfg.hello_layout {
            HelloLayout::Mbedtls31 => [signature_algorithms, supported_groups],
            HelloLayout::Mbedtls36 => [supported_groups, signature_algorithms],
        }
        .into_iter()
        .flatten()
        .collect();
        if ec {
            extensions.push(Extension::ec_point_formats());
        }
        if let Some(round_one) = ecjpake_kkpp {
            extensions.push(Extension {
                typ: ExtensionType::ECJPAKE_KKPP,
                data: round_one,
            });
        }
        if cfg.encrypt_then_mac {
            extensions.push(Extension::empty(ExtensionType::ENCRYPT_THEN_MAC));
        }
        if cfg.extended_master_secret {
            extensions.push(Extension::empty(ExtensionType::EXTENDED_MASTER_SECRET));
        }
        let ch = ClientHello {
            client_version: VERSION,
            random: self.hs.client_random,
            session_id: Vec::new(),
            cookie: Vec::new(),
            cipher_suites: suites,
            compression_methods: vec![0],
            extensions,
        };
        self.send_client_hello(now, ch);
        Ok(())
    }

    /// Send `ch` as a flight of its own and wait for the ServerHello, keeping `ch` to check the
    /// server's choice against and to resend with a cookie.
    fn send_client_hello(&mut self, now: Instant, ch: ClientHello) {
        self.start_flight();
        self.queue_handshake(&HandshakePayload::ClientHello(ch.clone()));
        self.state = State::ExpectServerHello(ExpectServerHello { client_hello: ch });
        self.send_flight(now, true);
    }

    /// RFC 6347 §4.2.1: resend the ClientHello with the cookie; the first ClientHello and the
    /// HelloVerifyRequest are left out of the Finished hash (§4.2.6).
    fn client_hello_verify(
        &mut self,
        now: Instant,
        st: ExpectServerHello,
        hvr: HelloVerifyRequest,
    ) -> Result<(), Error> {
        let mut ch = st.client_hello;
        ch.cookie = hvr.cookie;
        self.hs.messages.clear();
        self.send_client_hello(now, ch);
        Ok(())
    }

    /// mbedtls `ssl_parse_encrypt_then_mac_ext` / `ssl_parse_extended_ms_ext`: with the feature
    /// compiled in (and so enabled and offered), an answer with a body is fatal
    /// (unsupported_extension); compiled out, the extension is unknown and ignored.
    fn client_hello_extensions_answered(&mut self, extensions: &[Extension]) -> Result<(), Error> {
        if let Some(typ) = flag_extension_with_body(&self.config, extensions) {
            return Err(Error::hs(
                AlertDescription::UNSUPPORTED_EXTENSION,
                format!("non-matching {typ} extension in the server hello"),
            ));
        }
        // encrypt_then_mac changes nothing for the AEAD suites the engine knows.
        self.hs.extended_master_secret = self.config.extended_master_secret
            && find_extension(extensions, ExtensionType::EXTENDED_MASTER_SECRET).is_some();
        Ok(())
    }

    fn client_server_hello(
        &mut self,
        st: ExpectServerHello,
        sh: ServerHello,
        full: Vec<u8>,
    ) -> Result<(), Error> {
        if sh.server_version != VERSION {
            return Err(Error::hs(
                AlertDescription::PROTOCOL_VERSION,
                format!("server chose version {}", sh.server_version),
            ));
        }
        let offered = &st.client_hello.cipher_suites;
        // mbedtls: a suite we did not offer is "bad server hello message" + illegal_parameter.
        if !offered.contains(&sh.cipher_suite) || sh.cipher_suite.key_exchange().is_none() {
            return Err(Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                format!("server chose {} which was not offered", sh.cipher_suite),
            ));
        }
        if sh.compression_method != 0 {
            return Err(Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                "server chose compression",
            ));
        }
        self.client_hello_extensions_answered(&sh.extensions)?;
        self.hs.server_random = sh.random;
        self.hs.suite = Some(sh.cipher_suite);
        // Our ClientHello stays buffered (and its timer running) until the whole server flight
        // arrived: RFC 6347 §4.2.4 retransmits per flight, not per message.
        self.hs.messages.extend_from_slice(&full);
        self.state = match sh.cipher_suite.key_exchange() {
            Some(KeyExchange::Psk) => {
                State::ExpectServerKeyExchange(ExpectServerKeyExchange { server_key: None })
            }
            Some(KeyExchange::EcdheEcdsa) => State::ExpectCertificate(ExpectCertificate),
            Some(KeyExchange::Ecjpake) => {
                let ext = find_extension(&sh.extensions, ExtensionType::ECJPAKE_KKPP).ok_or_else(
                    || {
                        Error::hs(
                            AlertDescription::HANDSHAKE_FAILURE,
                            "server hello without ecjpake round one",
                        )
                    },
                )?;
                let ctx = self.hs.ecjpake.as_mut().ok_or_else(|| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, "no ecjpake context")
                })?;
                ctx.read_round_one(&ext.data).map_err(|e| {
                    Error::hs(
                        AlertDescription::ILLEGAL_PARAMETER,
                        format!("ecjpake round one: {e}"),
                    )
                })?;
                State::ExpectServerKeyExchange(ExpectServerKeyExchange { server_key: None })
            }
            None => {
                return Err(Error::hs(
                    AlertDescription::ILLEGAL_PARAMETER,
                    "unsupported suite",
                ));
            }
        };
        Ok(())
    }

    /// Verify the server's chain (if configured) and return the leaf's key.
    fn client_certificate(&mut self, c: CertificateMsg) -> Result<VerifyingKey, Error> {
        let cfg = self.config.clone();
        let chain = if cfg.verify_peer {
            verify_chain(
                &c.chain,
                &cfg.trusted_roots,
                cfg.time_check,
                cfg.server_name.as_deref(),
            )?
        } else {
            let leaf = c.chain.first().ok_or(crate::error::CertError::Empty)?;
            vec![ParsedCert::parse(leaf)?]
        };
        self.keep_peer_chain(chain)
    }

    /// Keep the peer's chain; returns the key of its leaf, which signs the peer's handshake.
    fn keep_peer_chain(&mut self, chain: Vec<ParsedCert>) -> Result<VerifyingKey, Error> {
        let key = chain
            .first()
            .map(|l| l.public_key)
            .ok_or(crate::error::CertError::Empty)?;
        self.hs.peer_chain = chain;
        Ok(key)
    }

    /// Check the ServerKeyExchange; returns the server's ECDHE point, if any.
    fn client_server_key_exchange(
        &mut self,
        st: &ExpectServerKeyExchange,
        ske: ServerKeyExchange,
    ) -> Result<Option<Vec<u8>>, Error> {
        match ske {
            ServerKeyExchange::Psk { .. } => Ok(None),
            ServerKeyExchange::Ecdhe(e) => {
                if e.group != NamedGroup::SECP256R1 {
                    return Err(Error::hs(
                        AlertDescription::ILLEGAL_PARAMETER,
                        format!("server chose group {}", e.group),
                    ));
                }
                // mbedtls `ssl_parse_signature_algorithm`: only a pair we offered.
                if !e.scheme.is_ecdsa() || !self.config.signature_algorithms.contains(&e.scheme) {
                    return Err(Error::hs(
                        AlertDescription::ILLEGAL_PARAMETER,
                        format!("server signed with {}", e.scheme),
                    ));
                }
                let key = st
                    .server_key
                    .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no server key"))?;
                // RFC 8422 §5.4: signed = client_random || server_random || ServerECDHParams.
                let mut signed = Vec::with_capacity(64 + 70);
                signed.extend_from_slice(&self.hs.client_random);
                signed.extend_from_slice(&self.hs.server_random);
                signed.extend_from_slice(&e.params());
                if !verify_signature(&key, e.scheme, &signed, &e.signature) {
                    return Err(Error::hs(
                        AlertDescription::DECRYPT_ERROR,
                        "server key exchange signature does not verify",
                    ));
                }
                Ok(Some(e.public))
            }
            ServerKeyExchange::Ecjpake(body) => {
                let ctx = self.hs.ecjpake.as_mut().ok_or_else(|| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, "no ecjpake context")
                })?;
                ctx.read_round_two(&body).map_err(|e| {
                    Error::hs(
                        AlertDescription::ILLEGAL_PARAMETER,
                        format!("ecjpake round two: {e}"),
                    )
                })?;
                Ok(None)
            }
        }
    }

    /// Client's second flight: [Certificate] ClientKeyExchange [CertificateVerify] CCS Finished.
    fn client_flight(&mut self, now: Instant, st: ExpectServerHelloDone) -> Result<(), Error> {
        let cfg = self.config.clone();
        let kx = self.hs.suite.and_then(|s| s.key_exchange());
        self.start_flight();
        if st.cert_requested {
            let chain = cfg
                .certificate
                .as_ref()
                .map(|c| c.chain.clone())
                .unwrap_or_default();
            self.queue_handshake(&HandshakePayload::Certificate(CertificateMsg { chain }));
        }
        let (cke, pms) = match kx {
            Some(KeyExchange::Psk) => {
                let psk = cfg
                    .psk
                    .as_ref()
                    .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no psk"))?;
                (
                    ClientKeyExchange::Psk {
                        identity: psk.identity.clone(),
                    },
                    psk_premaster(&psk.key),
                )
            }
            Some(KeyExchange::EcdheEcdsa) => {
                let point = st.server_point.clone().unwrap_or_default();
                let (public, pms) = self.ecdh(&point)?;
                (ClientKeyExchange::Ecdhe { public }, pms)
            }
            Some(KeyExchange::Ecjpake) => {
                let mut ctx = self.hs.ecjpake.take().ok_or_else(|| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, "no ecjpake context")
                })?;
                let body = ctx.write_round_two(&mut *self.rng).map_err(|e| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, format!("ecjpake: {e}"))
                })?;
                let pms = ctx.derive_premaster().map_err(|e| {
                    Error::hs(AlertDescription::ILLEGAL_PARAMETER, format!("ecjpake: {e}"))
                })?;
                self.hs.ecjpake = Some(ctx);
                (ClientKeyExchange::Ecjpake(body), pms.to_vec())
            }
            None => return Err(Error::hs(AlertDescription::INTERNAL_ERROR, "no suite")),
        };
        self.queue_handshake(&HandshakePayload::ClientKeyExchange(cke));
        self.derive_keys(&pms);
        if st.cert_requested
            && let Some(ck) = &cfg.certificate
        {
            // mbedtls 3.1 signs with the suite's PRF hash: SHA-256 for the CCM-8 suites.
            let scheme = SignatureScheme::ECDSA_SHA256;
            let signature = sign(ck, scheme, &self.hs.messages)?;
            self.queue_handshake(&HandshakePayload::CertificateVerify(CertificateVerify {
                scheme,
                signature,
            }));
        }
        self.queue_ccs_and_finished(b"client finished");
        self.state = State::ExpectCcs(ExpectCcs);
        self.send_flight(now, true);
        Ok(())
    }

    /// Ephemeral ECDH on P-256: returns our uncompressed public point and the x-coordinate
    /// premaster (RFC 8422 §5.10).
    fn ecdh(&mut self, peer_point: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
        let peer = p256::PublicKey::from_sec1_bytes(peer_point)
            .map_err(|_| Error::hs(AlertDescription::ILLEGAL_PARAMETER, "invalid ec point"))?;
        let secret = match self.hs.ecdh.take() {
            Some(s) => s,
            None => EphemeralSecret::generate_from_rng(&mut *self.rng),
        };
        let public = p256::PublicKey::from(&secret)
            .to_sec1_point(false)
            .as_bytes()
            .to_vec();
        let shared = secret.diffie_hellman(&peer);
        Ok((public, shared.raw_secret_bytes().to_vec()))
    }

    /// Called once the ClientKeyExchange is in the handshake log: RFC 7627's session hash
    /// covers the messages up to and including it.
    fn derive_keys(&mut self, pms: &[u8]) {
        let master = if self.hs.extended_master_secret {
            extended_master_secret(pms, &sha256(&self.hs.messages))
        } else {
            master_secret(pms, &self.hs.client_random, &self.hs.server_random)
        };
        let kb = KeyBlock::derive(&master, &self.hs.client_random, &self.hs.server_random);
        let client = RecordCipher::new(&kb.client_key, &kb.client_iv);
        let server = RecordCipher::new(&kb.server_key, &kb.server_iv);
        let (w, r) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        self.rec.write_cipher = Some(w);
        self.rec.pending_read = Some(r);
        self.hs.master = Some(master);
        self.hs.keys = Some(kb);
    }

    fn queue_ccs_and_finished(&mut self, label: &[u8]) {
        self.queue_ccs();
        let master = self.hs.master.unwrap_or([0; 48]);
        let vd = verify_data(&master, label, &sha256(&self.hs.messages));
        self.queue_handshake(&HandshakePayload::Finished(vd));
    }

    fn peer_finished(&mut self, now: Instant, vd: [u8; 12], full: Vec<u8>) -> Result<(), Error> {
        let label: &[u8] = match self.role {
            Role::Client => b"server finished",
            Role::Server => b"client finished",
        };
        let master = self
            .hs
            .master
            .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no master secret"))?;
        let expected = verify_data(&master, label, &sha256(&self.hs.messages));
        if expected != vd {
            return Err(Error::hs(
                AlertDescription::DECRYPT_ERROR,
                "finished verify_data mismatch",
            ));
        }
        self.hs.messages.extend_from_slice(&full);
        match self.role {
            Role::Client => {
                // The server's Finished ends the handshake; nothing of ours needs retransmitting.
                self.stop_flight();
            }
            Role::Server => {
                self.start_flight();
                self.queue_ccs_and_finished(b"server finished");
                // The last flight is kept for retransmission if the client repeats its own
                // flight (RFC 6347 §4.2.4), but no timer runs for it.
                self.send_flight(now, false);
                if matches!(self.state, State::Failed) {
                    // The final flight pushed the memory model over the heap limit.
                    return Ok(());
                }
            }
        }
        // Peak accounting ends here: handshake state is released below.
        self.account();
        if matches!(self.state, State::Failed) {
            return Ok(());
        }
        self.state = State::Connected;
        let suite = self.hs.suite.unwrap_or(CipherSuite(0));
        self.events.push_back(Event::Connected { suite });
        // Handshake-only state is released.
        self.hs.ecdh = None;
        self.hs.ecjpake = None;
        self.reassembly.clear();
        Ok(())
    }

    // ---------------------------------------------------------------- server

    /// The cookie: HMAC-SHA256(secret, peer || version || random || session_id || suites || compression).
    fn cookie_for(&self, ch: &ClientHello) -> Vec<u8> {
        let mut suites = Vec::new();
        for s in &ch.cipher_suites {
            s.encode(&mut suites);
        }
        hmac_sha256(
            &self.config.cookie_secret,
            &[
                &self.peer_id,
                &ch.client_version.0.to_be_bytes(),
                &ch.random,
                &ch.session_id,
                &suites,
                &ch.compression_methods,
            ],
        )
        .to_vec()
    }

    fn server_client_hello(&mut self, now: Instant, m: Complete) -> Result<(), Error> {
        let ch = match HandshakePayload::read(m.msg_type, &m.body, None)? {
            HandshakePayload::ClientHello(ch) => ch,
            _ => {
                return Err(Error::hs(
                    AlertDescription::UNEXPECTED_MESSAGE,
                    "expected client hello",
                ));
            }
        };
        // DTLS versions count down: 1.2 = 0xfefd is "higher" than 1.0 = 0xfeff.
        if ch.client_version.0 > VERSION.0 {
            return Err(Error::hs(
                AlertDescription::PROTOCOL_VERSION,
                format!("client offers only {}", ch.client_version),
            ));
        }
        self.check_unset_ecjpake_extension(&ch)?;
        let cookie = self.cookie_for(&ch);
        if self.config.require_cookie && ch.cookie != cookie {
            // RFC 6347 §4.2.1: stateless, not part of the Finished hash, not retransmitted. The
            // RFC suggests version 1.0 here; mbedtls writes the version it negotiates (1.2 for
            // OpenThread, `ssl_write_hello_verify_request`: "the most interoperable thing").
            let hvr = HelloVerifyRequest {
                server_version: VERSION,
                cookie,
            };
            let full = encode_handshake(
                HandshakeType::HELLO_VERIFY_REQUEST,
                m.message_seq,
                &hvr.get_encoding(),
            );
            let rec = self.encode_record(ContentType::HANDSHAKE, 0, &full);
            self.out.push_back(rec);
            return Ok(());
        }
        // mbedtls: the server's message_seq continues from the client's (ssl_srv.c).
        self.out_msg_seq = m.message_seq;
        self.in_msg_seq = m.message_seq.wrapping_add(1);
        self.reassembly.discard_below(self.in_msg_seq);
        self.hs.messages.clear();
        self.hs
            .messages
            .extend_from_slice(&encode_handshake(m.msg_type, m.message_seq, &m.body));
        self.hs.client_random = ch.random;

        let cfg = self.config.clone();
        let groups = find_extension(&ch.extensions, ExtensionType::SUPPORTED_GROUPS)
            .map(|e| Extension::read_supported_groups(&e.data))
            .transpose()?;
        // mbedtls `ssl_parse_encrypt_then_mac_ext` / `ssl_parse_extended_ms_ext`, parsed with the
        // other extensions before a suite is chosen: when compiled in, a body is a decode_error;
        // RFC 7627 (§5.2) is taken when offered. Compiled out, both are unknown and ignored.
        if let Some(typ) = flag_extension_with_body(&cfg, &ch.extensions) {
            return Err(Error::hs(
                AlertDescription::DECODE_ERROR,
                format!("{typ} extension with a body"),
            ));
        }
        self.hs.extended_master_secret = cfg.extended_master_secret
            && find_extension(&ch.extensions, ExtensionType::EXTENDED_MASTER_SECRET).is_some();
        // mbedtls ssl_parse_ecjpake_kkpp: KKPP_OK only with a password and a verified round one.
        let mut kkpp_ok = false;
        if let (Some(ext), Some(pw)) = (
            find_extension(&ch.extensions, ExtensionType::ECJPAKE_KKPP),
            &cfg.ecjpake_password,
        ) {
            let mut ctx = EcjpakeContext::new(ecjpake::Role::Server, pw).map_err(|e| {
                Error::hs(
                    AlertDescription::INTERNAL_ERROR,
                    format!("ecjpake password: {e}"),
                )
            })?;
            if ctx.read_round_one(&ext.data).is_ok() {
                kkpp_ok = true;
                self.hs.ecjpake = Some(ctx);
            }
        }
        // mbedtls `ssl_parse_signature_algorithms_ext` keeps, per signature algorithm, the first
        // of the client's pairs whose hash this server lists: that hash signs the
        // ServerKeyExchange. Without the extension mbedtls falls back to SHA-1, which its
        // default hash list leaves out, so ECDHE_ECDSA cannot be chosen.
        let ecdsa_scheme = find_extension(&ch.extensions, ExtensionType::SIGNATURE_ALGORITHMS)
            .map(|e| Extension::read_signature_algorithms(&e.data))
            .transpose()?
            .and_then(|offered| {
                offered
                    .into_iter()
                    .find(|s| s.is_ecdsa() && cfg.signature_algorithms.contains(s))
            });
        let offer = ClientOffer {
            suites: ch.cipher_suites.clone(),
            groups,
            ecjpake_kkpp_ok: kkpp_ok,
            ecdsa_scheme,
        };
        let suite = select_suite(&cfg, &offer)
            .map_err(|e| Error::hs(AlertDescription::HANDSHAKE_FAILURE, e.to_string()))?;
        let kx = suite
            .key_exchange()
            .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "unsupported suite"))?;
        self.hs.suite = Some(suite);
        self.hs.server_random = self.random32();

        let mut extensions = Vec::new();
        let mut cert_requested = false;
        let mut ecjpake_unusable: Option<String> = None;
        // RFC 5746 §3.6: a client signalling secure renegotiation (SCSV or an empty
        // renegotiation_info) gets an empty renegotiation_info back; OpenSSL aborts without it.
        if ch
            .cipher_suites
            .contains(&CipherSuite::EMPTY_RENEGOTIATION_INFO_SCSV)
            || find_extension(&ch.extensions, ExtensionType::RENEGOTIATION_INFO).is_some()
        {
            extensions.push(Extension {
                typ: ExtensionType::RENEGOTIATION_INFO,
                data: vec![0],
            });
        }
        if self.hs.extended_master_secret {
            extensions.push(Extension::empty(ExtensionType::EXTENDED_MASTER_SECRET));
        }
        if matches!(kx, KeyExchange::EcdheEcdsa | KeyExchange::Ecjpake)
            && find_extension(&ch.extensions, ExtensionType::EC_POINT_FORMATS).is_some()
        {
            extensions.push(Extension::ec_point_formats());
        }
        if kx == KeyExchange::Ecjpake {
            // A relaxed (non-conforming) server may pick ECJPAKE without a verified client
            // round one. Like such an mbedtls build, it still sends its ServerHello (with its own
            // round one), then fails when round two needs the client's keys (internal_error).
            if self.hs.ecjpake.is_none() {
                // Without a configured password there is nothing secret to protect: a fixed
                // placeholder lets the round-one message be formed.
                let pw = cfg.ecjpake_password.clone().unwrap_or_else(|| vec![1]);
                let mut ctx = EcjpakeContext::new(ecjpake::Role::Server, &pw).map_err(|e| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, format!("ecjpake: {e}"))
                })?;
                match find_extension(&ch.extensions, ExtensionType::ECJPAKE_KKPP) {
                    Some(ext) => {
                        if let Err(e) = ctx.read_round_one(&ext.data) {
                            ecjpake_unusable = Some(format!("ecjpake round one: {e}"));
                        }
                    }
                    None => {
                        ecjpake_unusable =
                            Some("ecjpake chosen but client sent no round one".into())
                    }
                }
                self.hs.ecjpake = Some(ctx);
            }
            if let Some(ctx) = self.hs.ecjpake.as_mut() {
                let round_one = ctx.write_round_one(&mut *self.rng);
                extensions.push(Extension {
                    typ: ExtensionType::ECJPAKE_KKPP,
                    data: round_one,
                });
            }
        }
        // mbedtls gives every new session a 32-byte random id (no session tickets configured),
        // though OpenThread never resumes one.
        let session_id = self.random32().to_vec();
        let sh = ServerHello {
            server_version: VERSION,
            random: self.hs.server_random,
            session_id,
            cipher_suite: suite,
            compression_method: 0,
            extensions,
        };
        self.start_flight();
        self.queue_handshake(&HandshakePayload::ServerHello(sh));
        if let Some(reason) = ecjpake_unusable {
            self.transmit_flight();
            return Err(Error::hs(AlertDescription::INTERNAL_ERROR, reason));
        }
        match kx {
            KeyExchange::Psk => {
                if let Some(hint) = &cfg.psk_hint {
                    self.queue_handshake(&HandshakePayload::ServerKeyExchange(
                        ServerKeyExchange::Psk { hint: hint.clone() },
                    ));
                }
            }
            KeyExchange::EcdheEcdsa => {
                let ck = cfg
                    .certificate
                    .clone()
                    .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no certificate"))?;
                self.queue_handshake(&HandshakePayload::Certificate(CertificateMsg {
                    chain: ck.chain.clone(),
                }));
                let secret = EphemeralSecret::generate_from_rng(&mut *self.rng);
                let public = p256::PublicKey::from(&secret)
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec();
                self.hs.ecdh = Some(secret);
                let scheme = ecdsa_scheme.ok_or_else(|| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, "no signature hash")
                })?;
                let mut ske = EcdheServerKeyExchange {
                    group: NamedGroup::SECP256R1,
                    public,
                    scheme,
                    signature: Vec::new(),
                };
                let mut signed = Vec::new();
                signed.extend_from_slice(&self.hs.client_random);
                signed.extend_from_slice(&self.hs.server_random);
                signed.extend_from_slice(&ske.params());
                ske.signature = sign(&ck, scheme, &signed)?;
                self.queue_handshake(&HandshakePayload::ServerKeyExchange(
                    ServerKeyExchange::Ecdhe(ske),
                ));
                if cfg.verify_peer {
                    cert_requested = true;
                    self.queue_handshake(&HandshakePayload::CertificateRequest(
                        CertificateRequest {
                            certificate_types: vec![CERT_TYPE_ECDSA_SIGN],
                            schemes: certificate_verify_schemes(&cfg),
                            // mbedtls' default `cert_req_ca_list`: the subjects of our CAs.
                            authorities: cfg
                                .trusted_roots
                                .iter()
                                .map(|r| r.subject_der().to_vec())
                                .collect(),
                        },
                    ));
                }
            }
            KeyExchange::Ecjpake => {
                let ctx = self.hs.ecjpake.as_mut().ok_or_else(|| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, "no ecjpake context")
                })?;
                let body = ctx.write_round_two(&mut *self.rng).map_err(|e| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, format!("ecjpake: {e}"))
                })?;
                self.queue_handshake(&HandshakePayload::ServerKeyExchange(
                    ServerKeyExchange::Ecjpake(body),
                ));
            }
        }
        self.queue_handshake(&HandshakePayload::ServerHelloDone);
        self.state = if cert_requested {
            State::ExpectClientCertificate(ExpectClientCertificate)
        } else {
            State::ExpectClientKeyExchange(ExpectClientKeyExchange { client_key: None })
        };
        self.send_flight(now, true);
        Ok(())
    }

    /// A server without a J-PAKE password on an unchecked J-PAKE implementation parses the
    /// client's extension 0x0100 anyway (mbedtls `ssl_parse_ecjpake_kkpp` runs when the
    /// context's check passes), with the context's default role, client, so it expects the
    /// peer identity "server". mbedtls 3.1 parses extensions before it acts on a missing cookie,
    /// so this runs for the first, cookie-less ClientHello too; a failed proof is a fatal
    /// illegal_parameter alert.
    fn check_unset_ecjpake_extension(&mut self, ch: &ClientHello) -> Result<(), Error> {
        if self.config.ecjpake_backend != EcjpakeBackend::UncheckedAlt
            || self.config.ecjpake_password.is_some()
        {
            return Ok(());
        }
        let Some(ext) = find_extension(&ch.extensions, ExtensionType::ECJPAKE_KKPP) else {
            return Ok(());
        };
        let mut ctx = EcjpakeContext::new(ecjpake::Role::Client, UNSET_ECJPAKE_PASSWORD)
            .map_err(|e| Error::hs(AlertDescription::INTERNAL_ERROR, format!("ecjpake: {e}")))?;
        ctx.read_round_one(&ext.data).map_err(|e| {
            Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                format!("ecjpake kkpp extension parsed by a context without password: {e}"),
            )
        })
    }

    /// Verify the client's chain; returns the leaf's key for its CertificateVerify.
    fn server_client_certificate(&mut self, c: CertificateMsg) -> Result<VerifyingKey, Error> {
        let cfg = self.config.clone();
        if c.chain.is_empty() {
            // OpenThread verifies the peer only when configured to; then a certificate is required.
            return Err(Error::hs(
                AlertDescription::HANDSHAKE_FAILURE,
                "client sent no certificate",
            ));
        }
        let chain = verify_chain(&c.chain, &cfg.trusted_roots, cfg.time_check, None)?;
        self.keep_peer_chain(chain)
    }

    fn server_client_key_exchange(&mut self, cke: ClientKeyExchange) -> Result<(), Error> {
        let cfg = self.config.clone();
        // Our flight stays buffered until the client's Finished: if the rest of the client's
        // flight is lost, our timer makes the client retransmit it (RFC 6347 §4.2.4).
        let pms = match cke {
            ClientKeyExchange::Psk { identity } => {
                let psk = cfg
                    .psk
                    .as_ref()
                    .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no psk"))?;
                if identity != psk.identity {
                    return Err(Error::hs(
                        AlertDescription::UNKNOWN_PSK_IDENTITY,
                        "unknown psk identity",
                    ));
                }
                psk_premaster(&psk.key)
            }
            ClientKeyExchange::Ecdhe { public } => {
                let secret =
                    self.hs.ecdh.take().ok_or_else(|| {
                        Error::hs(AlertDescription::INTERNAL_ERROR, "no ecdh key")
                    })?;
                let peer = p256::PublicKey::from_sec1_bytes(&public).map_err(|_| {
                    Error::hs(AlertDescription::ILLEGAL_PARAMETER, "invalid ec point")
                })?;
                secret.diffie_hellman(&peer).raw_secret_bytes().to_vec()
            }
            ClientKeyExchange::Ecjpake(body) => {
                let ctx = self.hs.ecjpake.as_mut().ok_or_else(|| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, "no ecjpake context")
                })?;
                ctx.read_round_two(&body).map_err(|e| {
                    Error::hs(
                        AlertDescription::ILLEGAL_PARAMETER,
                        format!("ecjpake round two: {e}"),
                    )
                })?;
                ctx.derive_premaster()
                    .map_err(|e| {
                        Error::hs(AlertDescription::ILLEGAL_PARAMETER, format!("ecjpake: {e}"))
                    })?
                    .to_vec()
            }
        };
        self.derive_keys(&pms);
        Ok(())
    }

    // ---------------------------------------------------------------- failure and memory

    fn fail(&mut self, alert: Option<AlertDescription>, reason: &str) {
        if matches!(self.state, State::Closed | State::Failed) {
            return;
        }
        if let Some(description) = alert {
            let a = Alert {
                level: AlertLevel::FATAL,
                description,
            };
            let epoch = self.rec.write_epoch;
            let rec = self.encode_record(ContentType::ALERT, epoch, &a.get_encoding());
            self.out.push_back(rec);
        }
        self.state = State::Failed;
        self.stop_flight();
        self.events.push_back(Event::Failed {
            alert,
            reason: reason.to_string(),
        });
    }

    /// Recompute the memory model; fail with internal_error when over the heap limit.
    fn account(&mut self) {
        if !self.is_handshaking() {
            return;
        }
        let flight: usize = self.flight.iter().map(|m| m.data.len() + 16).sum();
        let ready: usize = self.ready.values().map(|c| c.body.len() + 16).sum();
        let certs: usize = self.hs.peer_chain.iter().map(ParsedCert::footprint).sum();
        let kx = match self.hs.suite.and_then(|s| s.key_exchange()) {
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
        }
    }
}

/// Whether `datagram` starts with an epoch-0 record carrying a ClientHello (first fragment).
/// A server application uses it to notice a client that restarted its handshake on an
/// established association (RFC 6347 §4.2.8) and hand it to a fresh server [`Connection`],
/// as mbedtls does with `MBEDTLS_ERR_SSL_CLIENT_RECONNECT`.
pub fn is_initial_client_hello(datagram: &[u8]) -> bool {
    let (records, _) = split_records(datagram);
    records.first().is_some_and(|r| {
        r.header.content_type == ContentType::HANDSHAKE
            && r.header.epoch == 0
            && split_handshake(r.fragment).is_ok_and(|f| {
                f.first().is_some_and(|h| {
                    h.header.msg_type == HandshakeType::CLIENT_HELLO
                        && h.header.fragment_offset == 0
                })
            })
    })
}

/// The pairs a server lists in its CertificateRequest and accepts in a CertificateVerify: those
/// of its list whose hash mbedtls 3.1 keeps a handshake digest of (`mbedtls_ssl_set_calc_verify_md`:
/// SHA-256, and SHA-384 when compiled in, i.e. listed).
fn certificate_verify_schemes(config: &Config) -> Vec<SignatureScheme> {
    config
        .signature_algorithms
        .iter()
        .copied()
        .filter(|s| {
            matches!(
                *s,
                SignatureScheme::ECDSA_SHA256 | SignatureScheme::ECDSA_SHA384
            )
        })
        .collect()
}

/// The first of encrypt_then_mac / extended_master_secret that is compiled in and came with a
/// body: both are flags, empty in both directions (RFC 7366 §2, RFC 7627 §5.1).
fn flag_extension_with_body(config: &Config, extensions: &[Extension]) -> Option<ExtensionType> {
    [
        (ExtensionType::ENCRYPT_THEN_MAC, config.encrypt_then_mac),
        (
            ExtensionType::EXTENDED_MASTER_SECRET,
            config.extended_master_secret,
        ),
    ]
    .into_iter()
    .find(|&(typ, compiled_in)| {
        compiled_in && find_extension(extensions, typ).is_some_and(|e| !e.data.is_empty())
    })
    .map(|(typ, _)| typ)
}

/// Sign handshake data with our certificate's key as `scheme` says.
fn sign(key: &CertifiedKey, scheme: SignatureScheme, data: &[u8]) -> Result<Vec<u8>, Error> {
    key.sign(scheme, data).ok_or_else(|| {
        Error::hs(
            AlertDescription::INTERNAL_ERROR,
            format!("cannot sign with {scheme}"),
        )
    })
}

/// RFC 4279 §2: `uint16 len || len zero bytes || uint16 len || psk`.
fn psk_premaster(psk: &[u8]) -> Vec<u8> {
    let n = psk.len().min(u16::MAX as usize);
    let mut out = Vec::with_capacity(4 + 2 * n);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend(std::iter::repeat_n(0u8, n));
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&psk[..n]);
    out
}

fn peer_direction(role: Role) -> Direction {
    match role {
        Role::Client => Direction::ServerToClient,
        Role::Server => Direction::ClientToServer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_client_hello_detection() {
        let now = Instant::now();
        let cfg = Arc::new(Config {
            psk: Some(crate::config::Psk {
                key: b"k".to_vec(),
                identity: b"i".to_vec(),
            }),
            ..Config::default()
        });
        let mut c = Connection::client(cfg, now).unwrap();
        let ch = c.poll_transmit().unwrap();
        assert!(is_initial_client_hello(&ch));
        assert!(!is_initial_client_hello(&ch[..10]));
        let mut other = ch.clone();
        other[13] = 2;
        assert!(!is_initial_client_hello(&other));
    }

    #[test]
    fn psk_premaster_layout() {
        assert_eq!(
            psk_premaster(b"123"),
            [0, 3, 0, 0, 0, 0, 3, b'1', b'2', b'3']
        );
    }
}
