//! What client and server handshakes share: the [`State`] that names the message expected
//! next, the end of the handshake ([`ExpectCcs`], [`ExpectFinished`]) and key derivation.
//!
//! A state is a struct that owns its handling: `handle(self, cx, now, message)` consumes it and
//! returns the next state, or an [`Error`] that the connection turns into a fatal alert. The
//! client's states are in [`crate::client`], the server's in [`crate::server`], each an
//! [`Expect`]; this module names none of them. The [`Context`] they work on is in
//! [`crate::context`]; records and flights, which the states use through it, are in
//! [`crate::record`] and [`crate::flight`].

use std::fmt;
use std::time::Instant;

use p256::ecdsa::VerifyingKey;

use crate::cert::{CertifiedKey, ParsedCert};
use crate::config::Config;
use crate::context::{Context, Handshake, OutOfHeap};
use crate::crypto::{
    KeyBlock, RecordCipher, extended_master_secret, master_secret, sha256, verify_data,
};
use crate::ecjpake::EcjpakeContext;
use crate::enums::*;
use crate::error::Error;
use crate::event::{Event, Role};
use crate::messages::*;
use crate::reassembly::Complete;

/// Stand-in password for a J-PAKE context that was never given one: round one does not use the
/// password, and an unchecked implementation (see
/// [`EcjpakeBackend::UncheckedAlt`](crate::config::EcjpakeBackend::UncheckedAlt)) writes and
/// reads round one without it.
pub(crate) const UNSET_ECJPAKE_PASSWORD: &[u8] = &[1];

/// A state of the client's or the server's own part of the handshake ([`crate::client`],
/// [`crate::server`]): a struct whose name says which message is expected next and whose fields
/// hold what only that step needs.
pub(crate) trait Expect: fmt::Debug {
    /// The struct's name, as the connection's state prints.
    fn name(&self) -> &'static str;

    /// Handle one complete handshake message that arrived in this state.
    fn handle(self: Box<Self>, cx: &mut Context, now: Instant, message: Message) -> Transition;

    /// Whether a ClientHello is answered here before the cookie exchange completes,
    /// statelessly and whatever its message_seq (RFC 6347 §4.2.1).
    fn answers_hello_statelessly(&self) -> bool {
        false
    }
}

/// Handshake states (rustls style): the name says which message is expected next. Handlers
/// consume a state and return the next one; data for the rest of the handshake lives in
/// [`Handshake`].
pub(crate) enum State {
    /// A state of the client's or the server's own part ([`Expect`]).
    Expect(Box<dyn Expect>),
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
    /// The state `st` of the client's or the server's own part of the handshake.
    pub(crate) fn expect(st: impl Expect + 'static) -> State {
        State::Expect(Box::new(st))
    }

    /// Handle one complete handshake message: the state it arrived in decides.
    pub(crate) fn handle(self, cx: &mut Context, now: Instant, message: Message) -> Transition {
        match self {
            State::Expect(st) => st.handle(cx, now, message),
            State::ExpectFinished(st) => st.handle(cx, now, message),
            state => Err(unexpected(&state, &message.payload)),
        }
    }

    /// Closed or failed: nothing more is sent or received.
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, State::Closed | State::Failed)
    }

    /// See [`Expect::answers_hello_statelessly`].
    pub(crate) fn answers_hello_statelessly(&self) -> bool {
        matches!(self, State::Expect(st) if st.answers_hello_statelessly())
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Expect(st) => f.debug_tuple(st.name()).field(st).finish(),
            State::ExpectCcs(st) => f.debug_tuple("ExpectCcs").field(st).finish(),
            State::ExpectFinished(st) => f.debug_tuple("ExpectFinished").field(st).finish(),
            State::Connected => f.write_str("Connected"),
            State::Closed => f.write_str("Closed"),
            State::Failed => f.write_str("Failed"),
            State::Busy => f.write_str("Busy"),
        }
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

impl Context {
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

    /// Send the buffered flight, which expects a reply, and wait in `next` for it; in
    /// [`State::Failed`] if the flight pushed the memory model over the heap limit.
    pub(crate) fn send_flight_then(&mut self, now: Instant, next: State) -> State {
        match self.send_flight(now, true) {
            Ok(()) => next,
            Err(OutOfHeap) => State::Failed,
        }
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
