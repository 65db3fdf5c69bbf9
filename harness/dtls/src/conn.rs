//! The sans-IO DTLS 1.2 connection (RFC 6347 over RFC 5246).
//!
//! The caller feeds datagrams and time in, and takes datagrams and events out:
//! [`Connection::handle_datagram`], [`Connection::handle_timeout`], [`Connection::poll_transmit`],
//! [`Connection::poll_event`], [`Connection::next_timeout`]. No sockets, no clock.
//!
//! Layers, bottom up:
//! * records (`record`): epochs 0 and 1, CCM_8 protection, 48-bit sequence numbers,
//!   replay window;
//! * handshake messages (here): message_seq ordering, reassembly on receive; fragmentation on
//!   send is part of the flights;
//! * flights (`flight`): the last flight is buffered and retransmitted on timer expiry
//!   with doubling back-off (RFC 6347 §4.2.4), or at once when the peer retransmits its
//!   previous flight;
//! * the handshake state machine (`handshake`, `client`, `server`):
//!   one struct per state (`ExpectServerHello`, ...), each naming the message expected next and
//!   owning its handling.

use std::sync::Arc;
use std::time::Instant;

use crate::cert::ParsedCert;
use crate::codec::Codec;
use crate::config::Config;
use crate::context::Context;
use crate::enums::*;
use crate::error::Error;
use crate::handshake::{Message, State};
use crate::messages::*;
use crate::reassembly::Complete;
use crate::record::{VERSION, peer_direction};
use crate::rng::{BoxedRng, system_rng};
use crate::transcript::Transcript;

pub use crate::event::{Event, Role};

/// A DTLS 1.2 connection, client or server, over one peer.
pub struct Connection {
    state: State,
    cx: Context,
}

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
        let mut cx = Context::new(Role::Client, config, rng, Vec::new());
        let state = crate::client::start(&mut cx, now)?;
        Ok(Connection { state, cx })
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
        let mut c = Connection {
            state: crate::server::start(),
            cx: Context::new(Role::Server, config, rng, peer_id.to_vec()),
        };
        c.account();
        Ok(c)
    }

    // ---------------------------------------------------------------- public surface

    pub fn role(&self) -> Role {
        self.cx.role
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected)
    }

    pub fn is_handshaking(&self) -> bool {
        !matches!(self.state, State::Connected | State::Closed | State::Failed)
    }

    /// Negotiated suite, once the ServerHello was sent or received.
    pub fn suite(&self) -> Option<CipherSuite> {
        self.cx.hs.suite
    }

    /// Whether the hellos negotiated RFC 7627's extended master secret.
    pub fn uses_extended_master_secret(&self) -> bool {
        self.cx.hs.extended_master_secret
    }

    /// The peer's certificate chain (leaf first), if it sent one.
    pub fn peer_certificates(&self) -> &[ParsedCert] {
        &self.cx.hs.peer_chain
    }

    /// The 40-byte key block once keys are derived (Thread derives its KEK as SHA-256 of it).
    pub fn key_block(&self) -> Option<[u8; 40]> {
        self.cx.hs.keys.as_ref().map(|k| k.raw)
    }

    /// This connection's line of an NSS key log (`CLIENT_RANDOM <client random> <master secret>`,
    /// lower-case hex), once its master secret is derived: what Wireshark needs to decrypt the
    /// records of a capture.
    pub fn key_log_line(&self) -> Option<String> {
        let master = self.cx.hs.master.as_ref()?;
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Some(format!(
            "CLIENT_RANDOM {} {}",
            hex(&self.cx.hs.client_random),
            hex(master)
        ))
    }

    /// Records this connection sent and received.
    pub fn transcript(&self) -> &Transcript {
        self.cx.transcript.transcript()
    }

    /// Highest accounted handshake memory so far, in bytes. Counted: buffered flights
    /// (retransmission copies), reassembly buffers, the handshake message log used for
    /// Finished/CertificateVerify, parsed peer certificates (DER + decoded fields), key
    /// exchange contexts (ECDH, EC J-PAKE), record transforms and secrets, hash state, and two
    /// record I/O buffers of `max_record_content` (mbedtls allocates in/out buffers of
    /// MBEDTLS_SSL_MAX_CONTENT_LEN plus overhead).
    pub fn peak_handshake_bytes(&self) -> usize {
        self.cx.memory.peak
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.cx.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.cx.events.pop_front()
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        self.cx.retransmit_at
    }

    /// Send application data (only once connected). Data is split into records of at most
    /// `max_record_content` bytes, one record per datagram.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        match self.state {
            State::Connected => {}
            State::Closed | State::Failed => return Err(Error::Closed),
            _ => return Err(Error::NotConnected),
        }
        let max = self.cx.config.max_record_content.max(1);
        for chunk in data.chunks(max) {
            let rec = self
                .cx
                .encode_record(ContentType::APPLICATION_DATA, 1, chunk);
            self.cx.out.push_back(rec);
        }
        if data.is_empty() {
            let rec = self.cx.encode_record(ContentType::APPLICATION_DATA, 1, &[]);
            self.cx.out.push_back(rec);
        }
        Ok(())
    }

    /// Send close_notify (RFC 5246 §7.2.1) and close.
    pub fn close(&mut self) {
        if self.state.is_terminal() {
            return;
        }
        let alert = Alert {
            level: AlertLevel::WARNING,
            description: AlertDescription::CLOSE_NOTIFY,
        };
        let epoch = self.cx.rec.write_epoch;
        let rec = self
            .cx
            .encode_record(ContentType::ALERT, epoch, &alert.get_encoding());
        self.cx.out.push_back(rec);
        self.state = State::Closed;
        self.cx.stop_flight();
        self.cx.events.push_back(Event::Closed);
    }

    /// Retransmit on timer expiry (RFC 6347 §4.2.4.1), or fail once the back-off passed its maximum.
    pub fn handle_timeout(&mut self, now: Instant) {
        let cx = &mut self.cx;
        let Some(at) = cx.retransmit_at else { return };
        if now < at {
            return;
        }
        if cx.timeout >= cx.config.retransmit_max {
            self.fail(None, "handshake timed out");
            return;
        }
        cx.timeout = cx.timeout.saturating_mul(2).min(cx.config.retransmit_max);
        cx.transmit_flight();
        cx.retransmit_at = Some(now + cx.timeout);
    }

    /// Process one received datagram (one or more records).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if self.state.is_terminal() {
            return;
        }
        self.cx.retransmitted_this_datagram = false;
        // RFC 6347 §4.1.2.7: a malformed tail is dropped, the good records before it still count.
        let (records, _tail_error) = split_records(datagram);
        for r in records {
            if let Err(e) = self.handle_record(now, &r) {
                let reason = e.to_string();
                self.fail(Some(e.alert()), &reason);
            }
            if self.state.is_terminal() {
                break;
            }
        }
        self.account();
    }

    // ---------------------------------------------------------------- records

    fn handle_record(&mut self, now: Instant, r: &RawRecord<'_>) -> Result<(), Error> {
        let h = r.header;
        // DTLS 1.0 version numbers are allowed on the first ClientHello (RFC 6347 §4.1).
        if h.version != VERSION && !(h.version == ProtocolVersion::DTLS1_0 && h.epoch == 0) {
            return Ok(());
        }
        let awaiting_finished = matches!(self.state, State::ExpectFinished(_));
        let Some(plaintext) = self.cx.unprotect(r, awaiting_finished)? else {
            return Ok(());
        };
        self.cx.transcript.record(
            peer_direction(self.cx.role),
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
                    if self.state.is_terminal() {
                        break;
                    }
                }
                Ok(())
            }
            ContentType::CHANGE_CIPHER_SPEC => self.handle_change_cipher_spec(now, &plaintext),
            ContentType::ALERT => self.handle_alert(&plaintext),
            ContentType::APPLICATION_DATA => {
                if matches!(self.state, State::Connected) && h.epoch == 1 {
                    self.cx.events.push_back(Event::ApplicationData(plaintext));
                }
                Ok(())
            }
            _ => Err(Error::hs(
                AlertDescription::UNEXPECTED_MESSAGE,
                format!("unknown content type {}", h.content_type),
            )),
        }
    }

    fn handle_change_cipher_spec(&mut self, now: Instant, plaintext: &[u8]) -> Result<(), Error> {
        if plaintext != [1] {
            return Err(Error::hs(
                AlertDescription::DECODE_ERROR,
                "bad change_cipher_spec",
            ));
        }
        if let State::ExpectCcs(ccs) = self.state {
            self.state = ccs.handle_change_cipher_spec(&mut self.cx);
            self.process_ready(now)?;
        }
        // Otherwise early or duplicated: ignore, a retransmission brings it again.
        Ok(())
    }

    fn handle_alert(&mut self, plaintext: &[u8]) -> Result<(), Error> {
        let a = Alert::read_bytes(plaintext)?;
        if a.description == AlertDescription::CLOSE_NOTIFY {
            if matches!(self.state, State::Connected) {
                self.close();
            } else {
                self.state = State::Closed;
                self.cx.stop_flight();
                self.cx.events.push_back(Event::Closed);
            }
        } else if a.level != AlertLevel::WARNING {
            // Fatal (or an unknown level, which we treat as fatal). Other warnings are
            // ignored, as mbedtls does (ssl_handle_message_type: "silently ignore").
            self.state = State::Failed;
            self.cx.stop_flight();
            self.cx.events.push_back(Event::Failed {
                alert: Some(a.description),
                reason: format!("received {} alert {}", a.level, a.description),
            });
        }
        Ok(())
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
        let stateless_hello = self.state.answers_hello_statelessly()
            && f.header.msg_type == HandshakeType::CLIENT_HELLO;
        let cx = &mut self.cx;
        if seq < cx.in_msg_seq && !stateless_hello {
            // The peer retransmitted a message we processed: it lost our flight (RFC 6347 §4.2.4).
            if !cx.flight.is_empty() && !cx.retransmitted_this_datagram {
                cx.retransmitted_this_datagram = true;
                cx.transmit_flight();
            }
            return Ok(());
        }
        if seq > cx.in_msg_seq.saturating_add(16) && !stateless_hello {
            return Ok(());
        }
        // Finished must come under the new epoch.
        if f.header.msg_type == HandshakeType::FINISHED && epoch == 0 {
            return Err(Error::hs(
                AlertDescription::UNEXPECTED_MESSAGE,
                "finished in epoch 0",
            ));
        }
        let done = cx
            .reassembly
            .push(f)
            .map_err(|e| Error::hs(AlertDescription::DECODE_ERROR, e.to_string()))?;
        if let Some(c) = done {
            if stateless_hello {
                return self.handle_message(now, c);
            }
            cx.ready.insert(c.message_seq, c);
        }
        self.process_ready(now)
    }

    fn process_ready(&mut self, now: Instant) -> Result<(), Error> {
        while let Some(c) = self.cx.ready.remove(&self.cx.in_msg_seq) {
            // Finished waits for their ChangeCipherSpec (it cannot be read before anyway).
            if c.msg_type == HandshakeType::FINISHED
                && !matches!(self.state, State::ExpectFinished(_))
            {
                self.cx.ready.insert(c.message_seq, c);
                break;
            }
            self.cx.in_msg_seq = self.cx.in_msg_seq.wrapping_add(1);
            self.cx.reassembly.discard_below(self.cx.in_msg_seq);
            self.handle_message(now, c)?;
            if self.state.is_terminal() {
                break;
            }
        }
        Ok(())
    }

    /// Hand a complete message to the state it arrived in, which returns the next state.
    fn handle_message(&mut self, now: Instant, m: Complete) -> Result<(), Error> {
        let message = Message::read(m, self.cx.hs.suite)?;
        // The handler owns the state; on error it stays Busy and `fail` ends the connection.
        let state = std::mem::replace(&mut self.state, State::Busy);
        self.state = state.handle(&mut self.cx, now, message)?;
        Ok(())
    }

    // ---------------------------------------------------------------- failure and memory

    fn fail(&mut self, alert: Option<AlertDescription>, reason: &str) {
        if self.state.is_terminal() {
            return;
        }
        self.cx.fail(alert, reason);
        self.state = State::Failed;
    }

    /// Recompute the memory model during a handshake; fail with internal_error when over the
    /// heap limit.
    fn account(&mut self) {
        if self.is_handshaking() && self.cx.account().is_err() {
            self.state = State::Failed;
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
}
