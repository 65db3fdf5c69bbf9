//! What client and server handshakes share: the [`State`] enum that names the message expected
//! next, the [`Context`] every state handler works on, the end of the handshake
//! ([`ExpectCcs`], [`ExpectFinished`]), key derivation and the memory model.
//!
//! A state is a struct that owns its handling: `handle(self, cx, now, message)` consumes it and
//! returns the next state, or an [`Error`] that the connection turns into a fatal alert. The
//! client's states are in [`crate::client`], the server's in [`crate::server`]. Records and
//! flights, which the states use through the context, are in [`crate::record`] and
//! [`crate::flight`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use p256::ecdh::EphemeralSecret;
use p256::ecdsa::VerifyingKey;

use crate::cert::{CertifiedKey, ParsedCert};
use crate::client::{
    ExpectCertificate, ExpectServerHello, ExpectServerHelloDone, ExpectServerKeyExchange,
};
use crate::codec::Codec;
use crate::config::Config;
use crate::conn::{Event, Role};
use crate::crypto::{
    KeyBlock, RECORD_EXPANSION, RecordCipher, extended_master_secret, master_secret, sha256,
    verify_data,
};
use crate::ecjpake::EcjpakeContext;
use crate::enums::*;
use crate::error::Error;
use crate::flight::FlightMsg;
use crate::messages::*;
use crate::reassembly::{Complete, Reassembler};
use crate::record::RecordLayer;
use crate::rng::BoxedRng;
use crate::server::{
    ExpectCertificateVerify, ExpectClientCertificate, ExpectClientHello, ExpectClientKeyExchange,
};
use crate::transcript::TranscriptBuilder;

/// Stand-in password for a J-PAKE context that was never given one: round one does not use the
/// password, and an unchecked implementation (see
/// [`EcjpakeBackend::UncheckedAlt`](crate::config::EcjpakeBackend::UncheckedAlt)) writes and
/// reads round one without it.
pub(crate) const UNSET_ECJPAKE_PASSWORD: &[u8] = &[1];

/// Protocol version we speak.
pub(crate) const VERSION: ProtocolVersion = ProtocolVersion::DTLS1_2;

/// Handshake states, one struct each (rustls style): the name says which message is expected
/// next, the fields hold what only that step needs. Handlers consume a state and return the
/// next one; data for the rest of the handshake lives in [`Handshake`].
#[derive(Debug)]
pub(crate) enum State {
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

impl State {
    /// Handle one complete handshake message: the state it arrived in decides.
    pub(crate) fn handle(self, cx: &mut Context, now: Instant, message: Message) -> Transition {
        match self {
            State::ExpectServerHello(st) => st.handle(cx, now, message),
            State::ExpectCertificate(st) => st.handle(cx, message),
            State::ExpectServerKeyExchange(st) => st.handle(cx, now, message),
            State::ExpectServerHelloDone(st) => st.handle(cx, now, message),
            State::ExpectClientHello(st) => st.handle(cx, now, message),
            State::ExpectClientCertificate(st) => st.handle(cx, message),
            State::ExpectClientKeyExchange(st) => st.handle(cx, message),
            State::ExpectCertificateVerify(st) => st.handle(cx, message),
            State::ExpectFinished(st) => st.handle(cx, now, message),
            state => Err(unexpected(&state, &message.payload)),
        }
    }

    /// Closed or failed: nothing more is sent or received.
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, State::Closed | State::Failed)
    }
}

/// What a state's handler returns: the next state, or the error that ends the connection with
/// the error's alert.
pub(crate) type Transition = Result<State, Error>;

/// The body of `$message`'s payload if it is the `HandshakePayload::$variant` that `$state`
/// expects; otherwise the handler returns the unexpected_message error.
macro_rules! expect_payload {
    ($message:expr, $variant:ident, $state:expr) => {
        match $message.payload {
            HandshakePayload::$variant(body) => body,
            other => return Err(unexpected(&$state, &other)),
        }
    };
}
pub(crate) use expect_payload;

/// A handshake message that arrived in `state` but is not one it expects.
pub(crate) fn unexpected(state: &State, payload: &HandshakePayload) -> Error {
    Error::hs(
        AlertDescription::UNEXPECTED_MESSAGE,
        format!("unexpected {} in state {state:?}", payload.msg_type()),
    )
}

/// One complete handshake message from the peer.
pub(crate) struct Message {
    pub(crate) message_seq: u16,
    pub(crate) payload: HandshakePayload,
    /// The unfragmented message (header + body), as it enters the handshake hash.
    pub(crate) full: Vec<u8>,
}

impl Message {
    /// Parse a reassembled message; `suite` decides how key exchange messages read.
    pub(crate) fn read(m: Complete, suite: Option<CipherSuite>) -> Result<Self, Error> {
        let payload = HandshakePayload::read(m.msg_type, &m.body, suite)?;
        let full = encode_handshake(m.msg_type, m.message_seq, &m.body);
        Ok(Message {
            message_seq: m.message_seq,
            payload,
            full,
        })
    }
}

// -- Both: the end of the handshake --

/// Their ChangeCipherSpec (RFC 5246 §7.1); it switches their side to epoch 1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpectCcs;

impl ExpectCcs {
    /// RFC 5246 §7.1: switch the read side to the pending keys.
    pub(crate) fn handle_change_cipher_spec(self, cx: &mut Context) -> State {
        cx.rec.read_cipher = cx.rec.pending_read.take();
        cx.rec.read_epoch = 1;
        State::ExpectFinished(ExpectFinished)
    }
}

/// Their Finished (RFC 5246 §7.4.9), the first record of epoch 1.
#[derive(Debug)]
pub(crate) struct ExpectFinished;

impl ExpectFinished {
    fn handle(self, cx: &mut Context, now: Instant, message: Message) -> Transition {
        let vd = expect_payload!(message, Finished, State::ExpectFinished(self));
        let label: &[u8] = match cx.role {
            Role::Client => b"server finished",
            Role::Server => b"client finished",
        };
        let master = cx
            .hs
            .master
            .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no master secret"))?;
        let expected = verify_data(&master, label, &sha256(&cx.hs.messages));
        if expected != vd {
            return Err(Error::hs(
                AlertDescription::DECRYPT_ERROR,
                "finished verify_data mismatch",
            ));
        }
        cx.hs.messages.extend_from_slice(&message.full);
        match cx.role {
            Role::Client => {
                // The server's Finished ends the handshake; nothing of ours needs retransmitting.
                cx.stop_flight();
            }
            Role::Server => {
                cx.start_flight();
                cx.queue_ccs_and_finished(b"server finished");
                // The last flight is kept for retransmission if the client repeats its own
                // flight (RFC 6347 §4.2.4), but no timer runs for it.
                if cx.send_flight(now, false).is_err() {
                    // The final flight pushed the memory model over the heap limit.
                    return Ok(State::Failed);
                }
            }
        }
        // Peak accounting ends here: handshake state is released below.
        if cx.account().is_err() {
            return Ok(State::Failed);
        }
        let suite = cx.hs.suite.unwrap_or(CipherSuite(0));
        cx.events.push_back(Event::Connected { suite });
        // Handshake-only state is released.
        cx.hs.ecdh = None;
        cx.hs.ecjpake = None;
        cx.reassembly.clear();
        Ok(State::Connected)
    }
}

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
    pub(crate) bad_macs: u32,
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
            bad_macs: 0,
        }
    }

    pub(crate) fn random32(&mut self) -> [u8; 32] {
        let mut r = [0u8; 32];
        self.rng.fill_bytes(&mut r);
        r
    }

    /// Keep the peer's verified chain and log its Certificate message (`full`); returns the key
    /// of the chain's leaf, which signs the peer's handshake.
    pub(crate) fn accept_peer_chain(
        &mut self,
        chain: Vec<ParsedCert>,
        full: &[u8],
    ) -> Result<VerifyingKey, Error> {
        let key = chain
            .first()
            .map(|l| l.public_key)
            .ok_or(crate::error::CertError::Empty)?;
        self.hs.peer_chain = chain;
        self.hs.messages.extend_from_slice(full);
        Ok(key)
    }

    /// Called once the ClientKeyExchange is in the handshake log: RFC 7627's session hash
    /// covers the messages up to and including it.
    pub(crate) fn derive_keys(&mut self, pms: &[u8]) {
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

    pub(crate) fn queue_ccs_and_finished(&mut self, label: &[u8]) {
        self.queue_ccs();
        let master = self.hs.master.unwrap_or([0; 48]);
        let vd = verify_data(&master, label, &sha256(&self.hs.messages));
        self.queue_handshake(&HandshakePayload::Finished(vd));
    }

    /// Send a fatal alert (if any), drop the flight and report the failure. The caller moves
    /// to [`State::Failed`].
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

/// The pairs a server lists in its CertificateRequest and accepts in a CertificateVerify: those
/// of its list whose hash mbedtls 3.1 keeps a handshake digest of (`mbedtls_ssl_set_calc_verify_md`:
/// SHA-256, and SHA-384 when compiled in, i.e. listed).
pub(crate) fn certificate_verify_schemes(config: &Config) -> Vec<SignatureScheme> {
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
pub(crate) fn flag_extension_with_body(
    config: &Config,
    extensions: &[Extension],
) -> Option<ExtensionType> {
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
pub(crate) fn sign(
    key: &CertifiedKey,
    scheme: SignatureScheme,
    data: &[u8],
) -> Result<Vec<u8>, Error> {
    key.sign(scheme, data).ok_or_else(|| {
        Error::hs(
            AlertDescription::INTERNAL_ERROR,
            format!("cannot sign with {scheme}"),
        )
    })
}

/// RFC 4279 §2: `uint16 len || len zero bytes || uint16 len || psk`.
pub(crate) fn psk_premaster(psk: &[u8]) -> Vec<u8> {
    let n = psk.len().min(u16::MAX as usize);
    let mut out = Vec::with_capacity(4 + 2 * n);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend(std::iter::repeat_n(0u8, n));
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&psk[..n]);
    out
}

/// The configured PSK, which a PSK suite cannot do without.
pub(crate) fn configured_psk(config: &Config) -> Result<&crate::config::Psk, Error> {
    config
        .psk
        .as_ref()
        .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no psk"))
}

/// The J-PAKE context of a J-PAKE handshake, which the hellos set up.
pub(crate) fn ecjpake_context(hs: &mut Handshake) -> Result<&mut EcjpakeContext, Error> {
    hs.ecjpake
        .as_mut()
        .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no ecjpake context"))
}

/// Read the peer's J-PAKE round two (ServerKeyExchange or ClientKeyExchange body).
pub(crate) fn read_ecjpake_round_two(hs: &mut Handshake, body: &[u8]) -> Result<(), Error> {
    ecjpake_context(hs)?.read_round_two(body).map_err(|e| {
        Error::hs(
            AlertDescription::ILLEGAL_PARAMETER,
            format!("ecjpake round two: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_premaster_layout() {
        assert_eq!(
            psk_premaster(b"123"),
            [0, 3, 0, 0, 0, 0, 3, b'1', b'2', b'3']
        );
    }
}
