//! The CLI's CoAP application (`ot coap ...`): one server resource with a text content, and a
//! client for GET/PUT/POST/DELETE requests, on UDP port 5683, as OpenThread's `cli_coap.cpp`
//! behaves on top of its CoAP core.
//!
//! Sans-IO: the app never touches the stack. Every method returns the datagrams to send and the
//! console lines to print, so unit tests can run two apps against each other and the device loop
//! decides how to send (through `Stack::udp_send`) and print (asynchronous lines).
//!
//! Behaviour modelled (OpenThread `src/cli/cli_coap.cpp`, `src/core/coap/coap.cpp`):
//! * request types: `con` = confirmable, anything else = non-confirmable (the default);
//! * a response handler is registered only for CON requests and for GET;
//! * the server answers GET with 2.05 Content + the `coap set` content (default "0"), other
//!   methods with 2.04 Changed and no payload; piggy-backed in an ACK for CON, as NON for NON;
//! * a request for another URI gets 4.04 Not Found without any console line;
//! * a retransmitted CON request is answered from the response cache (the last 10 answers), not
//!   printed again;
//! * CON retransmission: ACK_TIMEOUT 2 s, ACK_RANDOM_FACTOR 1.5, MAX_RETRANSMIT 4; a request
//!   without a response after that prints `coap receive response error 28: ResponseTimeout`.

use std::net::SocketAddrV6;
use std::time::{Duration, Instant};

use ot_hil_wire::coap::{self, MessageClass, MessageType, Packet, RequestType, ResponseType};
use rand::Rng;

use crate::ot_error::OtError;
use crate::ot_text::ot_ip6;

/// OT_DEFAULT_COAP_PORT.
pub const COAP_PORT: u16 = 5683;
/// OT_COAP_DEFAULT_TOKEN_LENGTH.
const TOKEN_LENGTH: usize = 2;
/// Default transmission parameters (OpenThread `kDefaultTxParameters`, RFC 7252 §4.8).
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RETRANSMIT: u8 = 4;
/// MAX_TRANSMIT_WAIT: how long a NON request with a handler waits for its response.
const MAX_TRANSMIT_WAIT: Duration = Duration::from_secs(93);
/// OPENTHREAD_CONFIG_COAP_SERVER_MAX_CACHED_RESPONSES: answered CON requests remembered at
/// once; the oldest is forgotten first (`ResponsesQueue::EnqueueResponse`).
const MAX_CACHED_RESPONSES: usize = 10;
/// EXCHANGE_LIFETIME: how long the server remembers a CON request it answered.
const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// The longest URI path the CLI accepts (kMaxUriLength, including the terminator).
const MAX_URI_LENGTH: usize = 32;
/// The longest `coap set` content (mResourceContent, including the terminator).
const MAX_CONTENT_LENGTH: usize = 16;

/// What the app wants done: datagrams to send from port 5683, lines to print.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CoapActions {
    pub sends: Vec<(SocketAddrV6, Vec<u8>)>,
    pub lines: Vec<String>,
}

/// A request waiting for its response, as OpenThread's CoAP core tracks it (the same for plain
/// CoAP and for CoAP over the DTLS session).
#[derive(Debug)]
pub(crate) struct PendingRequest {
    pub peer: SocketAddrV6,
    pub token: Vec<u8>,
    pub message_id: u16,
    /// Encoded request, for retransmission (CON only).
    bytes: Vec<u8>,
    confirmable: bool,
    /// An empty ACK arrived: stop retransmitting, keep waiting for the separate response.
    acknowledged: bool,
    retransmissions_left: u8,
    timeout: Duration,
    pub deadline: Instant,
}

/// What a pending request needs now (see [`poll_pending`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PendingDue {
    /// Send the request again to `peer`.
    Retransmit { peer: SocketAddrV6, bytes: Vec<u8> },
    /// No response came: the request is gone, print `... receive response error 28`.
    TimedOut,
}

impl PendingRequest {
    /// The request to wait for, or `None` when no response handler is registered (a NON
    /// request other than GET).
    fn track(
        now: Instant,
        peer: SocketAddrV6,
        method: RequestType,
        confirmable: bool,
        token: Vec<u8>,
        message_id: u16,
        bytes: Vec<u8>,
    ) -> Option<PendingRequest> {
        if !(confirmable || method == RequestType::Get) {
            return None;
        }
        let timeout = if confirmable {
            // Initial timeout: ACK_TIMEOUT * random(1, ACK_RANDOM_FACTOR = 1.5).
            ACK_TIMEOUT + ACK_TIMEOUT.mul_f64(crate::entropy::with(|r| r.random_range(0.0..0.5)))
        } else {
            MAX_TRANSMIT_WAIT
        };
        Some(PendingRequest {
            peer,
            token,
            message_id,
            bytes,
            confirmable,
            acknowledged: false,
            retransmissions_left: if confirmable { MAX_RETRANSMIT } else { 0 },
            timeout,
            deadline: now + timeout,
        })
    }

    /// An empty ACK for it arrived: the separate response may take up to MAX_TRANSMIT_WAIT.
    pub(crate) fn acknowledge(&mut self, now: Instant) {
        self.acknowledged = true;
        self.deadline = now + MAX_TRANSMIT_WAIT;
    }
}

/// The next CoAP message id of an agent (CoAP or CoAPS), counting on from `next`.
pub(crate) fn take_message_id(next: &mut u16) -> u16 {
    let id = *next;
    *next = next.wrapping_add(1);
    id
}

/// A request with a fresh random token (the same for plain CoAP and for CoAP over the DTLS
/// session): the encoded datagram, and the request to wait for (see [`PendingRequest::track`]).
pub(crate) fn new_request(
    now: Instant,
    peer: SocketAddrV6,
    method: RequestType,
    confirmable: bool,
    message_id: u16,
    uri: &str,
    payload: &[u8],
) -> Result<(Vec<u8>, Option<PendingRequest>), OtError> {
    let token: Vec<u8> = crate::entropy::with(|r| (0..TOKEN_LENGTH).map(|_| r.random()).collect());
    let packet = coap::request(method, confirmable, message_id, &token, uri, payload);
    let bytes = coap::encode(&packet).map_err(|_| OtError::NoBufs)?;
    let pending = PendingRequest::track(
        now,
        peer,
        method,
        confirmable,
        token,
        message_id,
        bytes.clone(),
    );
    Ok((bytes, pending))
}

/// Retransmit the CON requests whose timeout passed (doubling it) and drop the requests that ran
/// out of retransmissions or waiting time.
pub(crate) fn poll_pending(pending: &mut Vec<PendingRequest>, now: Instant) -> Vec<PendingDue> {
    let mut due = Vec::new();
    let mut i = 0;
    while let Some(p) = pending.get_mut(i) {
        if p.deadline > now {
            i += 1;
        } else if p.confirmable && !p.acknowledged && p.retransmissions_left > 0 {
            p.retransmissions_left -= 1;
            p.timeout *= 2;
            p.deadline = now + p.timeout;
            due.push(PendingDue::Retransmit {
                peer: p.peer,
                bytes: p.bytes.clone(),
            });
            i += 1;
        } else {
            pending.swap_remove(i);
            due.push(PendingDue::TimedOut);
        }
    }
    due
}

/// A CON request already answered, kept to answer its retransmissions the same way.
#[derive(Debug)]
struct CachedResponse {
    peer: SocketAddrV6,
    message_id: u16,
    bytes: Vec<u8>,
    expires: Instant,
}

/// State of the CLI CoAP app (RAM: lost on reboot).
#[derive(Debug)]
pub struct CoapApp {
    started: bool,
    resource: Option<String>,
    content: String,
    next_message_id: u16,
    pending: Vec<PendingRequest>,
    cache: Vec<CachedResponse>,
}

impl Default for CoapApp {
    fn default() -> Self {
        CoapApp::new(crate::entropy::with(|r| r.random()))
    }
}

/// The method as the CLI prints a request's; `None` for a code that is no method (printed as
/// `Undefined`).
pub(crate) fn method_name(method: RequestType) -> Option<&'static str> {
    match method {
        RequestType::Get => Some("GET"),
        RequestType::Post => Some("POST"),
        RequestType::Put => Some("PUT"),
        RequestType::Delete => Some("DELETE"),
        _ => None,
    }
}

/// `[ with payload: <hex>]`, as `PrintPayload` appends it.
pub(crate) fn with_payload(payload: &[u8]) -> String {
    if payload.is_empty() {
        String::new()
    } else {
        format!(" with payload: {}", hex::encode(payload))
    }
}

impl CoapApp {
    /// `first_message_id` seeds the message ids (random in OpenThread).
    pub fn new(first_message_id: u16) -> Self {
        CoapApp {
            started: false,
            resource: None,
            content: "0".to_string(),
            next_message_id: first_message_id,
            pending: Vec::new(),
            cache: Vec::new(),
        }
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    /// `coap start` (otCoapStart on port 5683; starting twice is not an error).
    pub fn start(&mut self) {
        self.started = true;
    }

    /// `coap stop`: removes the resource and closes the socket; pending requests are dropped.
    pub fn stop(&mut self) {
        self.started = false;
        self.resource = None;
        self.pending.clear();
        self.cache.clear();
    }

    /// `coap resource [uri]`.
    pub fn resource(&mut self, uri: Option<&str>) -> Result<Vec<String>, OtError> {
        match uri {
            None => Ok(vec![self.resource.clone().unwrap_or_default()]),
            Some(u) if u.len() >= MAX_URI_LENGTH => Err(OtError::InvalidArgs),
            Some(u) => {
                self.resource = Some(u.to_string());
                Ok(Vec::new())
            }
        }
    }

    /// `coap set [content]`.
    pub fn set(&mut self, content: Option<&str>) -> Result<Vec<String>, OtError> {
        match content {
            None => Ok(vec![self.content.clone()]),
            Some(c) if c.len() >= MAX_CONTENT_LENGTH => Err(OtError::InvalidArgs),
            Some(c) => {
                self.content = c.to_string();
                Ok(Vec::new())
            }
        }
    }

    /// `coap get|put|post|delete <addr> <uri> [con] [payload]`: the request datagram.
    pub fn request(
        &mut self,
        now: Instant,
        method: RequestType,
        peer: SocketAddrV6,
        uri: &str,
        confirmable: bool,
        payload: &[u8],
    ) -> Result<CoapActions, OtError> {
        if !self.started {
            return Err(OtError::InvalidState);
        }
        if uri.is_empty() || uri.len() >= MAX_URI_LENGTH {
            return Err(OtError::InvalidArgs);
        }
        let message_id = take_message_id(&mut self.next_message_id);
        let (bytes, pending) =
            new_request(now, peer, method, confirmable, message_id, uri, payload)?;
        self.pending.extend(pending);
        Ok(CoapActions {
            sends: vec![(peer, bytes)],
            lines: Vec::new(),
        })
    }

    /// Forget the request with `message_id` (it could not be sent: no response will come, and
    /// OpenThread reports the send error instead of a later timeout).
    pub fn abandon(&mut self, message_id: u16) {
        self.pending.retain(|p| p.message_id != message_id);
    }

    /// The message id the next request or response will use.
    pub fn next_message_id(&self) -> u16 {
        self.next_message_id
    }

    /// A datagram that arrived on port 5683.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddrV6,
        bytes: &[u8],
    ) -> CoapActions {
        let mut actions = CoapActions::default();
        if !self.started {
            return actions;
        }
        let Ok(packet) = coap::decode(bytes) else {
            // Not CoAP: the core drops it.
            return actions;
        };
        match packet.header.code {
            MessageClass::Request(method) => {
                self.handle_request(now, src, &packet, method, &mut actions)
            }
            MessageClass::Response(_) => self.handle_response(src, &packet, &mut actions),
            MessageClass::Empty => {
                // An empty ACK to one of our CON requests: stop retransmitting it.
                if packet.header.get_type() == MessageType::Acknowledgement {
                    for p in self.pending.iter_mut() {
                        if p.message_id == packet.header.message_id && p.peer == src {
                            p.acknowledge(now);
                        }
                    }
                }
            }
            MessageClass::Reserved(_) => {}
        }
        actions
    }

    fn handle_request(
        &mut self,
        now: Instant,
        src: SocketAddrV6,
        request: &Packet,
        method: RequestType,
        actions: &mut CoapActions,
    ) {
        let confirmable = request.header.get_type() == MessageType::Confirmable;
        if confirmable
            && let Some(cached) = self
                .cache
                .iter()
                .find(|c| c.peer == src && c.message_id == request.header.message_id)
        {
            actions.sends.push((src, cached.bytes.clone()));
            return;
        }
        let matches = self
            .resource
            .as_deref()
            .is_some_and(|r| r == coap::uri_path(request));
        let (code, payload): (ResponseType, Vec<u8>) = if !matches {
            (ResponseType::NotFound, Vec::new())
        } else {
            actions.lines.push(format!(
                "coap request from {} {}{}",
                ot_ip6(src.ip()),
                method_name(method).unwrap_or("Undefined"),
                with_payload(&request.payload)
            ));
            if method == RequestType::Get {
                (ResponseType::Content, self.content.clone().into_bytes())
            } else {
                (ResponseType::Changed, Vec::new())
            }
        };
        let message_id = take_message_id(&mut self.next_message_id);
        let response = coap::response_to(request, code, message_id, &payload);
        let Ok(bytes) = coap::encode(&response) else {
            return;
        };
        if confirmable {
            if self.cache.len() >= MAX_CACHED_RESPONSES {
                // Entries are pushed in time order with the same lifetime: the first is oldest.
                self.cache.remove(0);
            }
            self.cache.push(CachedResponse {
                peer: src,
                message_id: request.header.message_id,
                bytes: bytes.clone(),
                expires: now + EXCHANGE_LIFETIME,
            });
        }
        actions.sends.push((src, bytes));
        if matches {
            actions.lines.push("coap response sent".to_string());
        }
    }

    fn handle_response(&mut self, src: SocketAddrV6, response: &Packet, actions: &mut CoapActions) {
        let token = response.get_token();
        let Some(index) = self
            .pending
            .iter()
            .position(|p| p.token == token && p.peer.ip() == src.ip())
        else {
            // Not ours (or already answered): a CON one gets a reset in the real core; ignored here.
            return;
        };
        self.pending.swap_remove(index);
        // A separate CON response must be acknowledged.
        if response.header.get_type() == MessageType::Confirmable
            && let Ok(bytes) = coap::encode(&coap::empty_ack(response.header.message_id))
        {
            actions.sends.push((src, bytes));
        }
        actions.lines.push(format!(
            "coap response from {}{}",
            ot_ip6(src.ip()),
            with_payload(&response.payload)
        ));
    }

    /// Retransmit CON requests and time out unanswered ones.
    pub fn poll(&mut self, now: Instant) -> CoapActions {
        let mut actions = CoapActions::default();
        self.cache.retain(|c| c.expires > now);
        for due in poll_pending(&mut self.pending, now) {
            match due {
                PendingDue::Retransmit { peer, bytes } => actions.sends.push((peer, bytes)),
                PendingDue::TimedOut => actions.lines.push(format!(
                    "coap receive response error {}",
                    error_text(OtError::ResponseTimeout)
                )),
            }
        }
        actions
    }

    /// When [`CoapApp::poll`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let pending = self.pending.iter().map(|p| p.deadline);
        let cache = self.cache.iter().map(|c| c.expires);
        pending.chain(cache).min()
    }
}

/// `%d: %s` as the CoAP and CoAPS handlers print an error.
pub(crate) fn error_text(e: OtError) -> String {
    format!("{}: {}", e.code(), e.name())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    fn addr(last: u16) -> SocketAddrV6 {
        SocketAddrV6::new(
            Ipv6Addr::new(0xfdde, 0xad00, 0xbeef, 0, 0, 0xff, 0xfe00, last),
            COAP_PORT,
            0,
            0,
        )
    }

    /// A request from `client` for the server's `test-resource`.
    fn request(
        client: &mut CoapApp,
        now: Instant,
        method: RequestType,
        confirmable: bool,
        payload: &[u8],
    ) -> CoapActions {
        client
            .request(
                now,
                method,
                addr(0x800),
                "test-resource",
                confirmable,
                payload,
            )
            .unwrap()
    }

    fn pair() -> (CoapApp, CoapApp) {
        let mut client = CoapApp::new(100);
        let mut server = CoapApp::new(900);
        client.start();
        server.start();
        server.resource(Some("test-resource")).unwrap();
        (client, server)
    }

    #[test]
    fn con_get_round_trip() {
        let (mut client, mut server) = pair();
        let now = Instant::now();
        server.set(Some("hello")).unwrap();
        let req = request(&mut client, now, RequestType::Get, true, b"");
        assert_eq!(req.sends.len(), 1);
        let resp = server.handle_datagram(now, addr(0xc00), &req.sends[0].1);
        assert_eq!(
            resp.lines,
            vec![
                "coap request from fdde:ad00:beef:0:0:ff:fe00:c00 GET",
                "coap response sent"
            ]
        );
        let reply = coap::decode(&resp.sends[0].1).unwrap();
        assert_eq!(reply.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(
            reply.header.code,
            MessageClass::Response(ResponseType::Content)
        );
        let done = client.handle_datagram(now, addr(0x800), &resp.sends[0].1);
        assert_eq!(
            done.lines,
            vec!["coap response from fdde:ad00:beef:0:0:ff:fe00:800 with payload: 68656c6c6f"]
        );
        assert!(
            client.next_deadline().is_none(),
            "nothing left to retransmit"
        );
    }

    #[test]
    fn non_put_with_payload_has_no_response_handler() {
        let (mut client, mut server) = pair();
        let now = Instant::now();
        let req = request(&mut client, now, RequestType::Put, false, b"abc");
        assert!(client.next_deadline().is_none());
        let resp = server.handle_datagram(now, addr(0xc00), &req.sends[0].1);
        assert_eq!(
            resp.lines[0],
            "coap request from fdde:ad00:beef:0:0:ff:fe00:c00 PUT with payload: 616263"
        );
        let reply = coap::decode(&resp.sends[0].1).unwrap();
        assert_eq!(reply.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(
            reply.header.code,
            MessageClass::Response(ResponseType::Changed)
        );
        // The client did not register a handler: the response prints nothing.
        assert!(
            client
                .handle_datagram(now, addr(0x800), &resp.sends[0].1)
                .lines
                .is_empty()
        );
    }

    #[test]
    fn unknown_uri_gets_not_found_silently() {
        let (mut client, mut server) = pair();
        let now = Instant::now();
        let req = client
            .request(now, RequestType::Get, addr(0x800), "other", false, b"")
            .unwrap();
        let resp = server.handle_datagram(now, addr(0xc00), &req.sends[0].1);
        assert!(resp.lines.is_empty());
        let reply = coap::decode(&resp.sends[0].1).unwrap();
        assert_eq!(
            reply.header.code,
            MessageClass::Response(ResponseType::NotFound)
        );
        assert_eq!(
            client
                .handle_datagram(now, addr(0x800), &resp.sends[0].1)
                .lines,
            vec!["coap response from fdde:ad00:beef:0:0:ff:fe00:800"]
        );
    }

    #[test]
    fn duplicate_con_answered_from_cache() {
        let (mut client, mut server) = pair();
        let now = Instant::now();
        let req = request(&mut client, now, RequestType::Post, true, b"x");
        let first = server.handle_datagram(now, addr(0xc00), &req.sends[0].1);
        let again = server.handle_datagram(now, addr(0xc00), &req.sends[0].1);
        assert_eq!(first.lines.len(), 2);
        assert!(again.lines.is_empty());
        assert_eq!(again.sends, first.sends);
    }

    #[test]
    fn response_cache_keeps_the_last_ten() {
        let (mut client, mut server) = pair();
        let now = Instant::now();
        let requests: Vec<Vec<u8>> = (0..=MAX_CACHED_RESPONSES)
            .map(|_| {
                let req = request(&mut client, now, RequestType::Post, true, b"x");
                let bytes = req.sends[0].1.clone();
                assert_eq!(
                    server.handle_datagram(now, addr(0xc00), &bytes).lines.len(),
                    2
                );
                bytes
            })
            .collect();
        // The newest is answered from the cache; the first was forgotten and is handled anew.
        let newest = requests.last().unwrap();
        assert!(
            server
                .handle_datagram(now, addr(0xc00), newest)
                .lines
                .is_empty()
        );
        assert_eq!(
            server
                .handle_datagram(now, addr(0xc00), &requests[0])
                .lines
                .len(),
            2
        );
    }

    #[test]
    fn con_retransmits_then_times_out() {
        let (mut client, _) = pair();
        let start = Instant::now();
        let req = request(&mut client, start, RequestType::Get, true, b"");
        let mut now = start;
        let mut retransmissions = 0;
        let mut lines = Vec::new();
        while let Some(d) = client.next_deadline() {
            now = d;
            let a = client.poll(now);
            for (_, bytes) in &a.sends {
                assert_eq!(bytes, &req.sends[0].1);
                retransmissions += 1;
            }
            lines.extend(a.lines);
        }
        assert_eq!(retransmissions, 4);
        assert_eq!(
            lines,
            vec!["coap receive response error 28: ResponseTimeout"]
        );
        let waited = now - start;
        // 2..3 s initial, doubled 4 times: 62..93 s in total.
        assert!(
            waited >= Duration::from_secs(62) && waited <= Duration::from_secs(93),
            "{waited:?}"
        );
    }

    #[test]
    fn not_started_and_bad_arguments() {
        let mut app = CoapApp::new(1);
        let now = Instant::now();
        assert_eq!(
            app.request(now, RequestType::Get, addr(1), "x", false, b"")
                .unwrap_err(),
            OtError::InvalidState
        );
        app.start();
        assert_eq!(
            app.request(now, RequestType::Get, addr(1), "", false, b"")
                .unwrap_err(),
            OtError::InvalidArgs
        );
        assert_eq!(
            app.resource(Some(&"u".repeat(32))).unwrap_err(),
            OtError::InvalidArgs
        );
        assert_eq!(
            app.set(Some(&"c".repeat(16))).unwrap_err(),
            OtError::InvalidArgs
        );
        assert_eq!(app.set(None).unwrap(), vec!["0"]);
        assert_eq!(app.resource(None).unwrap(), vec![""]);
        // Garbage on the port is dropped.
        assert_eq!(
            app.handle_datagram(now, addr(1), &[0xff, 0x00]),
            CoapActions::default()
        );
    }
}
