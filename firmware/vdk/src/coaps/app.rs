//! The CLI CoAPS example and the CoapSecure session: `coaps` commands run, the DTLS session
//! state machine (`meshcop/dtls.cpp`) and a small CoAP layer for requests and the one resource.

use std::net::SocketAddrV6;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ot_hil_dtls::{Connection, Event, Transcript};
use ot_hil_wire::coap::{self, MessageClass, MessageType, Packet, RequestType, ResponseType};
use rand::Rng;

use super::COAPS_PORT;
use super::command::Command;
use super::config::{CoapsBuild, NoCredentials};
use super::credentials::{Credentials, SetupError, dtls_config};
use crate::coap::{
    PendingDue, PendingRequest, error_text, method_name, new_request, poll_pending,
    take_message_id, with_payload,
};
use crate::ot_error::OtError;
use crate::ot_text::ot_ip6;

/// kGuardTimeNewConnectionMilli: after a disconnect the session waits this long in
/// close-notify before the socket accepts a new peer and the disconnect is reported.
const GUARD_TIME: Duration = Duration::from_millis(2000);
/// Finished sessions' transcripts kept for the control socket. A peer can start a session every
/// guard time for as long as the board runs; older transcripts are dropped first.
pub(super) const MAX_TRANSCRIPTS: usize = 32;
/// Where the assert fires in OpenThread with `SecureTransport` (`Setup()`, first statement,
/// `OT_ASSERT(mCipherSuite != kUnspecifiedCipherSuite)` at openthread 013bb3ee).
const UNSPECIFIED_SUITE_ASSERT: &str = "src/core/meshcop/secure_transport.cpp:270";

/// What the app wants done.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CoapsActions {
    /// UDP datagrams to send from port 5684.
    pub sends: Vec<(SocketAddrV6, Vec<u8>)>,
    /// Console lines.
    pub lines: Vec<String>,
    /// An OpenThread assert fired: print `lines`, then the node resets.
    pub assert_reset: bool,
}

/// `Dtls::mState`, with the session it carries.
pub(super) enum Session {
    Closed,
    Open,
    /// Connecting or connected to `peer`.
    Active {
        peer: SocketAddrV6,
        conn: Box<Connection>,
        connected: bool,
    },
    /// Disconnected; the guard time runs until `until`.
    CloseNotify {
        until: Instant,
    },
}

/// State of the CLI CoAPS example and the CoapSecure instance (RAM: lost on reboot).
pub struct CoapsApp {
    build: CoapsBuild,
    pub(super) session: Session,
    creds: Credentials,
    verify_peer: bool,
    /// CoapSecure::mConnectedCallback: set by `coaps connect`, cleared by `coaps start`
    /// (`CoapSecure::Start` clears it after the CLI set it), so only a client prints
    /// `coaps connected` / `coaps disconnected`.
    connected_callback: bool,
    /// `coaps stop` during a session: stop once the disconnect is reported.
    shutdown: bool,
    resource: Option<String>,
    content: String,
    next_message_id: u16,
    pending: Vec<PendingRequest>,
    /// Transcripts of this boot's last sessions (at most `MAX_TRANSCRIPTS`), oldest first (the
    /// current one is added on export).
    transcripts: Vec<Transcript>,
    /// NSS key-log lines of the finished sessions whose keys were derived (Wireshark decrypts
    /// the capture's CoAPS records with them).
    key_log: Vec<String>,
}

fn v6_bytes(a: &SocketAddrV6) -> Vec<u8> {
    let mut v = a.ip().octets().to_vec();
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

/// The UDP socket the session runs on (the Thread stack in the device, a queue in tests).
pub trait Udp {
    fn open(&mut self, port: u16) -> Result<(), OtError>;
    fn close(&mut self, port: u16);
    fn send(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: SocketAddrV6,
        payload: &[u8],
    ) -> Result<(), OtError>;
}

impl Udp for crate::net::Stack {
    fn open(&mut self, port: u16) -> Result<(), OtError> {
        self.udp_open(port)
    }
    fn close(&mut self, port: u16) {
        self.udp_close(port)
    }
    fn send(
        &mut self,
        now: Instant,
        src_port: u16,
        dst: SocketAddrV6,
        payload: &[u8],
    ) -> Result<(), OtError> {
        self.udp_send(now, src_port, dst, payload)
    }
}

/// How a `coaps` command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoapsResult {
    /// Lines, then `Done`.
    Done(Vec<String>),
    /// Lines, then `Error N: Name`.
    Error(Vec<String>, OtError),
    /// An OpenThread assert fired: the lines are what the platform printed; the node resets.
    AssertReset(Vec<String>),
}

impl std::fmt::Debug for CoapsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.session {
            Session::Closed => "closed",
            Session::Open => "open",
            Session::Active {
                connected: false, ..
            } => "connecting",
            Session::Active { .. } => "connected",
            Session::CloseNotify { .. } => "close-notify",
        };
        f.debug_struct("CoapsApp")
            .field("state", &state)
            .field("credentials", &self.creds)
            .finish_non_exhaustive()
    }
}

impl CoapsApp {
    pub fn new(build: CoapsBuild) -> Self {
        CoapsApp {
            build,
            session: Session::Closed,
            creds: Credentials::None,
            verify_peer: true,
            connected_callback: false,
            shutdown: false,
            resource: None,
            content: "0".to_string(),
            next_message_id: crate::entropy::with(|r| r.random()),
            pending: Vec::new(),
            transcripts: Vec::new(),
            key_log: Vec::new(),
        }
    }

    pub fn build(&self) -> &CoapsBuild {
        &self.build
    }

    /// The engine transcripts of this boot's sessions, oldest first, the running one last.
    pub fn transcripts(&self) -> Vec<Transcript> {
        let mut all = self.transcripts.clone();
        if let Session::Active { conn, .. } = &self.session {
            all.push(conn.transcript().clone());
        }
        all
    }

    fn is_connection_active(&self) -> bool {
        matches!(
            self.session,
            Session::Active { .. } | Session::CloseNotify { .. }
        )
    }

    fn is_connected(&self) -> bool {
        matches!(
            self.session,
            Session::Active {
                connected: true,
                ..
            }
        )
    }

    /// Run `coaps <args>`.
    pub fn execute(&mut self, args: &[&str], udp: &mut impl Udp, now: Instant) -> CoapsResult {
        let table = || {
            self.build
                .commands()
                .iter()
                .map(|c| c.to_string())
                .collect()
        };
        let cmd = match self.build.parse(args) {
            Ok(c) => c,
            Err(e) => return CoapsResult::Error(Vec::new(), e),
        };
        let done = |lines: Vec<String>| CoapsResult::Done(lines);
        let fail = |e: OtError| CoapsResult::Error(Vec::new(), e);
        let yes_no = |b: bool| done(vec![if b { "yes" } else { "no" }.to_string()]);
        match cmd {
            Command::Table => CoapsResult::Error(table(), OtError::InvalidArgs),
            Command::Help => done(table()),
            Command::Start { verify_peer } => {
                self.verify_peer = verify_peer;
                self.connected_callback = false;
                if !matches!(self.session, Session::Closed) {
                    return fail(OtError::Already);
                }
                match udp.open(COAPS_PORT) {
                    Ok(()) | Err(OtError::Already) => {}
                    Err(e) => return fail(e),
                }
                self.session = Session::Open;
                done(Vec::new())
            }
            Command::Stop => {
                self.resource = None;
                if self.is_connection_active() {
                    let mut out = CoapsActions::default();
                    self.disconnect(now, &mut out);
                    self.flush(udp, now, &mut out);
                    self.shutdown = true;
                } else {
                    self.close(udp);
                }
                done(Vec::new())
            }
            Command::Psk { key, identity } => {
                self.creds = Credentials::Psk { key, identity };
                done(Vec::new())
            }
            Command::X509 => {
                self.creds = Credentials::X509;
                done(Vec::new())
            }
            Command::Connect { peer } => {
                self.connected_callback = true;
                if !matches!(self.session, Session::Open) {
                    return fail(OtError::InvalidState);
                }
                if self.creds == Credentials::None
                    && self.build.no_credentials == NoCredentials::Assert
                {
                    return CoapsResult::AssertReset(vec![format!(
                        "assert failed at {UNSPECIFIED_SUITE_ASSERT}"
                    )]);
                }
                match self.setup(true, peer, now) {
                    Ok(conn) => {
                        self.session = Session::Active {
                            peer,
                            conn: Box::new(conn),
                            connected: false,
                        };
                        let mut out = CoapsActions::default();
                        self.drive(now, &mut out);
                        self.flush(udp, now, &mut out);
                        CoapsResult::Done(out.lines)
                    }
                    Err(e) => fail(e.ot_error()),
                }
            }
            Command::Disconnect => {
                let mut out = CoapsActions::default();
                self.disconnect(now, &mut out);
                self.flush(udp, now, &mut out);
                done(Vec::new())
            }
            Command::Resource(None) => done(vec![self.resource.clone().unwrap_or_default()]),
            Command::Resource(Some(u)) => {
                self.resource = Some(u);
                done(Vec::new())
            }
            Command::Set(None) => done(vec![self.content.clone()]),
            Command::Set(Some(c)) => {
                self.content = c;
                done(Vec::new())
            }
            Command::Request {
                method,
                uri,
                confirmable,
                payload,
            } => match self.request(now, method, &uri, confirmable, &payload) {
                Ok(mut out) => {
                    self.flush(udp, now, &mut out);
                    done(Vec::new())
                }
                Err(e) => fail(e),
            },
            Command::IsClosed => yes_no(matches!(self.session, Session::Closed)),
            Command::IsConnActive => yes_no(self.is_connection_active()),
            Command::IsConnected => yes_no(self.is_connected()),
        }
    }

    /// `Dtls::Setup`: the engine connection for this session.
    fn setup(
        &self,
        client: bool,
        peer: SocketAddrV6,
        now: Instant,
    ) -> Result<Connection, SetupError> {
        let config = Arc::new(dtls_config(&self.build, &self.creds, self.verify_peer)?);
        let conn = if client {
            Connection::client_with_rng(config, now, crate::entropy::dtls_rng())
        } else {
            Connection::server_with_rng(config, now, &v6_bytes(&peer), crate::entropy::dtls_rng())
        };
        conn.map_err(|e| SetupError::Engine(e.to_string()))
    }

    /// `Dtls::Disconnect`: close_notify when connected, then the guard time.
    fn disconnect(&mut self, now: Instant, out: &mut CoapsActions) {
        if let Session::Active { conn, peer, .. } = &mut self.session {
            if conn.is_connected() {
                conn.close();
            }
            while let Some(d) = conn.poll_transmit() {
                out.sends.push((*peer, d));
            }
            let (transcript, key) = (conn.transcript().clone(), conn.key_log_line());
            self.keep_transcript(transcript, key);
            self.session = Session::CloseNotify {
                until: now + GUARD_TIME,
            };
            self.pending.clear();
        }
    }

    fn keep_transcript(&mut self, transcript: Transcript, key_log_line: Option<String>) {
        if self.transcripts.len() >= MAX_TRANSCRIPTS {
            self.transcripts.remove(0);
        }
        self.transcripts.push(transcript);
        if let Some(line) = key_log_line {
            if self.key_log.len() >= MAX_TRANSCRIPTS {
                self.key_log.remove(0);
            }
            self.key_log.push(line);
        }
    }

    /// NSS key-log lines of this boot's sessions that derived keys, oldest first, the running one
    /// last (at most `MAX_TRANSCRIPTS` kept, as the transcripts).
    pub fn key_log(&self) -> Vec<String> {
        let mut all = self.key_log.clone();
        if let Session::Active { conn, .. } = &self.session
            && let Some(line) = conn.key_log_line()
        {
            all.push(line);
        }
        all
    }

    /// `Dtls::Close` + `CoapSecure::Stop`.
    fn close(&mut self, udp: &mut impl Udp) {
        if let Session::Active { conn, .. } = &self.session {
            let (transcript, key) = (conn.transcript().clone(), conn.key_log_line());
            self.keep_transcript(transcript, key);
        }
        if !matches!(self.session, Session::Closed) {
            udp.close(COAPS_PORT);
        }
        self.session = Session::Closed;
        self.pending.clear();
    }

    /// Send what the session produced; the caller prints `out.lines`.
    fn flush(&mut self, udp: &mut impl Udp, now: Instant, out: &mut CoapsActions) {
        for (to, bytes) in out.sends.drain(..) {
            // A datagram the stack cannot send is lost, as on the air; DTLS retransmits.
            let _ = udp.send(now, COAPS_PORT, to, &bytes);
        }
    }

    /// Move the engine's datagrams and events into actions (`Dtls::Process`).
    fn drive(&mut self, now: Instant, out: &mut CoapsActions) {
        let mut app_data = Vec::new();
        let mut ended = false;
        if let Session::Active {
            peer,
            conn,
            connected,
        } = &mut self.session
        {
            while let Some(d) = conn.poll_transmit() {
                out.sends.push((*peer, d));
            }
            while let Some(ev) = conn.poll_event() {
                match ev {
                    Event::Connected { .. } => {
                        *connected = true;
                        if self.connected_callback {
                            out.lines.push("coaps connected".to_string());
                        }
                    }
                    Event::ApplicationData(d) => app_data.push(d),
                    // Peer close_notify, a fatal alert, our own handshake failure or a
                    // handshake timeout: OpenThread disconnects in every case.
                    Event::Closed | Event::Failed { .. } => ended = true,
                }
            }
        }
        for d in app_data {
            self.handle_coap(now, &d, out);
        }
        if ended {
            self.disconnect(now, out);
        }
    }

    /// A UDP datagram for port 5684 (`Dtls::HandleUdpReceive`). Returns lines to print.
    pub fn handle_datagram(
        &mut self,
        src: SocketAddrV6,
        payload: &[u8],
        udp: &mut impl Udp,
        now: Instant,
    ) -> Vec<String> {
        let mut out = CoapsActions::default();
        match &self.session {
            Session::Closed | Session::CloseNotify { .. } => return Vec::new(),
            Session::Open => match self.setup(false, src, now) {
                Ok(conn) => {
                    self.session = Session::Active {
                        peer: src,
                        conn: Box::new(conn),
                        connected: false,
                    };
                }
                // A server without credentials drops the datagram (SuccessOrExit(Setup(false))).
                Err(_) => return Vec::new(),
            },
            // Once a session started, only its peer is heard.
            Session::Active { peer, .. } if *peer != src => return Vec::new(),
            Session::Active { .. } => {}
        }
        if let Session::Active { conn, .. } = &mut self.session {
            conn.handle_datagram(now, payload);
        }
        self.drive(now, &mut out);
        self.flush(udp, now, &mut out);
        out.lines
    }

    /// Timers: DTLS retransmission, the guard time, CoAP retransmission. Returns lines.
    pub fn poll(&mut self, udp: &mut impl Udp, now: Instant) -> Vec<String> {
        let mut out = CoapsActions::default();
        if let Session::Active { conn, .. } = &mut self.session
            && conn.next_timeout().is_some_and(|t| t <= now)
        {
            conn.handle_timeout(now);
        }
        self.drive(now, &mut out);
        if let Session::CloseNotify { until } = self.session
            && until <= now
        {
            self.session = Session::Open;
            if self.connected_callback {
                out.lines.push("coaps disconnected".to_string());
                if self.shutdown {
                    self.shutdown = false;
                    self.close(udp);
                }
            }
        }
        self.poll_requests(now, &mut out);
        self.flush(udp, now, &mut out);
        out.lines
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let session = match &self.session {
            Session::Active { conn, .. } => conn.next_timeout(),
            Session::CloseNotify { until } => Some(*until),
            _ => None,
        };
        let requests = self.pending.iter().map(|p| p.deadline).min();
        [session, requests].into_iter().flatten().min()
    }

    // -- CoAP over the session --

    /// Queue application data on the session.
    fn send_app(&mut self, bytes: &[u8], out: &mut CoapsActions) -> Result<(), OtError> {
        match &mut self.session {
            Session::Active {
                conn,
                peer,
                connected: true,
            } => {
                conn.send(bytes).map_err(|_| OtError::InvalidState)?;
                while let Some(d) = conn.poll_transmit() {
                    out.sends.push((*peer, d));
                }
                Ok(())
            }
            _ => Err(OtError::InvalidState),
        }
    }

    /// `ProcessRequest` + `CoapSecure::SendMessage` (InvalidState unless connected).
    fn request(
        &mut self,
        now: Instant,
        method: RequestType,
        uri: &str,
        confirmable: bool,
        payload: &[u8],
    ) -> Result<CoapsActions, OtError> {
        let peer = match self.peer() {
            Some(peer) if self.is_connected() => peer,
            _ => return Err(OtError::InvalidState),
        };
        let message_id = take_message_id(&mut self.next_message_id);
        let (bytes, pending) =
            new_request(now, peer, method, confirmable, message_id, uri, payload)?;
        let mut out = CoapsActions::default();
        self.send_app(&bytes, &mut out)?;
        self.pending.extend(pending);
        Ok(out)
    }

    fn poll_requests(&mut self, now: Instant, out: &mut CoapsActions) {
        for due in poll_pending(&mut self.pending, now) {
            match due {
                // Over the session, to its one peer.
                PendingDue::Retransmit { bytes, .. } => {
                    let _ = self.send_app(&bytes, out);
                }
                PendingDue::TimedOut => out.lines.push(format!(
                    "coaps receive response error {}",
                    error_text(OtError::ResponseTimeout)
                )),
            }
        }
    }

    fn peer(&self) -> Option<SocketAddrV6> {
        match &self.session {
            Session::Active { peer, .. } => Some(*peer),
            _ => None,
        }
    }

    /// A CoAP message that arrived over the session.
    fn handle_coap(&mut self, now: Instant, bytes: &[u8], out: &mut CoapsActions) {
        let (Ok(packet), Some(peer)) = (coap::decode(bytes), self.peer()) else {
            return;
        };
        match packet.header.code {
            MessageClass::Request(method) => self.handle_request(&packet, method, peer, out),
            MessageClass::Response(_) => {
                let token = packet.get_token().to_vec();
                if let Some(i) = self.pending.iter().position(|p| p.token == token) {
                    self.pending.swap_remove(i);
                    if packet.header.get_type() == MessageType::Confirmable
                        && let Ok(b) = coap::encode(&coap::empty_ack(packet.header.message_id))
                    {
                        let _ = self.send_app(&b, out);
                    }
                    out.lines.push(format!(
                        "coaps response from {}{}",
                        ot_ip6(peer.ip()),
                        with_payload(&packet.payload)
                    ));
                }
            }
            MessageClass::Empty => {
                if packet.header.get_type() == MessageType::Acknowledgement {
                    for p in &mut self.pending {
                        if p.message_id == packet.header.message_id {
                            p.acknowledge(now);
                        }
                    }
                }
            }
            MessageClass::Reserved(_) => {}
        }
    }

    /// `CoapSecure::HandleRequest` for the resource; other URIs get 4.04 when confirmable.
    fn handle_request(
        &mut self,
        request: &Packet,
        method: RequestType,
        peer: SocketAddrV6,
        out: &mut CoapsActions,
    ) {
        let confirmable = request.header.get_type() == MessageType::Confirmable;
        let ours = self
            .resource
            .as_deref()
            .is_some_and(|r| r == coap::uri_path(request));
        if !ours {
            if confirmable {
                let mut r = coap::response_to(request, ResponseType::NotFound, 0, &[]);
                r.header.set_type(MessageType::Acknowledgement);
                r.header.message_id = request.header.message_id;
                if let Ok(b) = coap::encode(&r) {
                    let _ = self.send_app(&b, out);
                }
            }
            return;
        }
        let Some(name) = method_name(method) else {
            out.lines.push(format!(
                "coaps request from {} Undefined",
                ot_ip6(peer.ip())
            ));
            return;
        };
        out.lines.push(format!(
            "coaps request from {} {name}{}",
            ot_ip6(peer.ip()),
            with_payload(&request.payload)
        ));
        if !(confirmable || method == RequestType::Get) {
            return;
        }
        // otCoapMessageInitResponse(..., OT_COAP_TYPE_ACKNOWLEDGMENT, CONTENT or VALID).
        let (code, payload) = if method == RequestType::Get {
            (ResponseType::Content, self.content.clone().into_bytes())
        } else {
            (ResponseType::Valid, Vec::new())
        };
        let mut response = coap::response_to(request, code, 0, &payload);
        response.header.set_type(MessageType::Acknowledgement);
        response.header.message_id = request.header.message_id;
        let sent = coap::encode(&response)
            .map_err(|_| OtError::NoBufs)
            .and_then(|b| self.send_app(&b, out));
        match sent {
            Ok(()) => out.lines.push("coaps response sent".to_string()),
            Err(e) => out
                .lines
                .push(format!("coaps send response error {}", error_text(e))),
        }
    }
}
