//! One sniffer capture, sans-IO: sniffer lines in; a pcap file, decoder counters, a CoAP log and
//! one DTLS transcript per connection out. Memory stays bounded whatever the capture's length:
//! frames go straight to the pcap writer, the decoder keeps only reassembly state, and
//! transcripts, connections and log lines are capped (what is cut is counted).

use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddrV6;

use ot_hil_dtls::{Direction, Transcript, TranscriptBuilder};
use ot_hil_wire::decode::{DecodeStats, Decoder, UdpDatagram};
use ot_hil_wire::pcap::PcapWriter;
use ot_hil_wire::sniffer::{self, SnifferFrame};

/// CoAP Secure (RFC 7252 §6.2): the server side of a DTLS connection.
pub const COAPS_PORT: u16 = 5684;
pub const COAP_PORT: u16 = 5683;
/// Records kept per connection (a handshake is about 20).
pub const MAX_RECORDS: usize = 512;
/// Connections tracked per capture (the oldest is forgotten beyond this).
pub const MAX_CONNECTIONS: usize = 64;
/// CoAP log lines kept (the most recent).
pub const MAX_LOG_LINES: usize = 200;

/// Counters for the case report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Lines read from the sniffer.
    pub lines: u64,
    /// Blank lines, echo, prompts, anything that is not a frame line.
    pub ignored_lines: u64,
    /// Frame lines that did not parse (odd hex, out-of-range fields, too short).
    pub bad_lines: u64,
    /// Frames captured.
    pub frames: u64,
    /// UDP datagrams to or from the CoAPS port.
    pub dtls_datagrams: u64,
    /// CoAP datagrams decoded for the log.
    pub coap_messages: u64,
    /// Records beyond the per-connection cap.
    pub dropped_records: u64,
    /// Oldest connections forgotten to stay under the connection cap.
    pub evicted_connections: u64,
    /// Frames the pcap writer refused (e.g. disk full); the first error is kept in `pcap_error`.
    pub pcap_errors: u64,
    /// The decoder's counters (bad MIC, undecodable, unknown source, missing fragments...).
    pub decode: DecodeStats,
}

impl CaptureStats {
    /// `key=value` pairs for reports.
    pub fn summary(&self) -> String {
        let d = &self.decode;
        format!(
            "lines={} ignored_lines={} bad_lines={} frames={} decrypted={} bad_mic={} unknown_source={} undecodable={} duplicates={} datagrams={} missing_fragments={} expired_reassemblies={} dtls_datagrams={} coap_messages={} dropped_records={} evicted_connections={} pcap_errors={}",
            self.lines,
            self.ignored_lines,
            self.bad_lines,
            self.frames,
            d.decrypted,
            d.bad_mic,
            d.unknown_source,
            d.undecodable,
            d.duplicates,
            d.datagrams,
            d.reassembly.missing_fragments,
            d.reassembly.expired,
            self.dtls_datagrams,
            self.coap_messages,
            self.dropped_records,
            self.evicted_connections,
            self.pcap_errors,
        )
    }
}

/// One DTLS connection seen on the air: client address/port <-> server address/5684.
#[derive(Debug)]
pub struct Connection {
    pub client: SocketAddrV6,
    pub server: SocketAddrV6,
    builder: TranscriptBuilder,
    records: usize,
    /// Datagrams held, with their senders, while nothing has told which end is the client
    /// (see [`sender_role`]); empty once the roles are known.
    undecided: Vec<(SocketAddrV6, Vec<u8>)>,
    /// Whether `client` and `server` come from the addresses or a handshake message.
    decided: bool,
}

impl Connection {
    pub fn transcript(&self) -> &Transcript {
        self.builder.transcript()
    }

    fn observe(&mut self, src: SocketAddrV6, payload: &[u8]) {
        let direction = if src == self.client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        self.builder.observe(direction, payload);
        self.records = self.builder.transcript().entries.len();
    }

    /// Add the datagrams held until the roles were known, in the order they were heard.
    fn observe_undecided(&mut self) {
        for (src, payload) in std::mem::take(&mut self.undecided) {
            self.observe(src, &payload);
        }
    }
}

/// Which end of a DTLS connection sent a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// Who sent `d`, as far as its addresses and content tell: the end not on the CoAPS port is
/// the client; with both ends on it, a plaintext handshake message only one side sends (RFC 5246
/// §7.4, RFC 6347 §4.2.1): ClientHello, ClientKeyExchange and CertificateVerify come from the
/// client; HelloVerifyRequest, ServerHello, ServerKeyExchange, CertificateRequest and
/// ServerHelloDone from the server. `None`: encrypted records, alerts, a Certificate (both
/// sides send one).
fn sender_role(d: &UdpDatagram) -> Option<Role> {
    match (d.src.port() == COAPS_PORT, d.dst.port() == COAPS_PORT) {
        (false, true) => return Some(Role::Client),
        (true, false) => return Some(Role::Server),
        _ => {}
    }
    // The first record: content type handshake (22), epoch 0, handshake type after the
    // 13-byte record header.
    match d.payload.as_slice() {
        [22, 0xfe, _, 0, 0, _, _, _, _, _, _, _, _, msg_type, ..] => match msg_type {
            1 | 15 | 16 => Some(Role::Client),
            2 | 3 | 12 | 13 | 14 => Some(Role::Server),
            _ => None,
        },
        _ => None,
    }
}

/// See the module documentation.
pub struct Capture {
    decoder: Option<Decoder>,
    pcap: Option<PcapWriter<Box<dyn Write + Send>>>,
    channel: u8,
    connections: Vec<Connection>,
    log: VecDeque<String>,
    stats: CaptureStats,
    last_timestamp_us: u64,
    /// `finish` pushed its empty frame into the decoder.
    finished: bool,
    /// One line per frame for live output (`ot-hil sniff`).
    live: Option<std::sync::mpsc::Sender<String>>,
    pub pcap_error: Option<String>,
    /// Live capture: the pcap's timestamps are put on the run's wall clock at the first frame.
    pcap_wall_clock: bool,
    /// Frame lines and DTLS record times on the run's clock, when kept (case runs, for the
    /// report's timeline and ladders).
    timeline: Option<FrameTimeline>,
}

/// The UDP-carrying frames of a capture as one-line descriptions, and the time each DTLS
/// transcript entry was seen, on the run's clock ([`crate::run_clock`]).
#[derive(Debug, Default)]
pub struct FrameTimeline {
    /// Lines kept: the most recent ones.
    max: usize,
    /// The run-clock time of the sniffer's time 0 (set at the first frame: the sniffer counts
    /// from its own start, the frame arrives now).
    origin: Option<std::time::Duration>,
    pub lines: VecDeque<(std::time::Duration, String)>,
    /// Lines pushed out to stay under `max`.
    pub omitted: usize,
    /// Per connection, the time of each transcript entry.
    pub entry_times: Vec<Vec<std::time::Duration>>,
}

impl FrameTimeline {
    fn at(&mut self, frame: &SnifferFrame) -> std::time::Duration {
        let sniffer_time = std::time::Duration::from_micros(frame.timestamp_us);
        let origin = *self
            .origin
            .get_or_insert_with(|| crate::run_clock::elapsed().saturating_sub(sniffer_time));
        origin + sniffer_time
    }

    fn push(&mut self, at: std::time::Duration, line: String) {
        if self.lines.len() >= self.max.max(1) {
            self.lines.pop_front();
            self.omitted += 1;
        }
        self.lines.push_back((at, line));
    }
}

impl Capture {
    /// `network_key`: `None` captures without decrypting. `pcap`: where frames are written.
    pub fn new(
        channel: u8,
        network_key: Option<[u8; 16]>,
        mesh_local_prefix: [u8; 8],
        pcap: Option<PcapWriter<Box<dyn Write + Send>>>,
    ) -> Capture {
        Capture {
            decoder: network_key.map(|k| Decoder::new(k, 0, mesh_local_prefix)),
            pcap,
            channel,
            connections: Vec::new(),
            log: VecDeque::new(),
            stats: CaptureStats::default(),
            last_timestamp_us: 0,
            finished: false,
            live: None,
            pcap_error: None,
            pcap_wall_clock: false,
            timeline: None,
        }
    }

    /// Keep the last `max` UDP frame lines and every DTLS entry's time on the run's clock
    /// ([`Capture::timeline`]).
    pub fn keep_timeline(&mut self, max: usize) {
        self.timeline = Some(FrameTimeline {
            max,
            ..FrameTimeline::default()
        });
    }

    /// What [`Capture::keep_timeline`] kept.
    pub fn timeline(&self) -> Option<&FrameTimeline> {
        self.timeline.as_ref()
    }

    /// Send a one-line description of every frame to `sink` as it is decoded.
    pub fn set_live(&mut self, sink: std::sync::mpsc::Sender<String>) {
        self.live = Some(sink);
    }

    /// Stamp the pcap's packets with wall-clock time (for a live capture): a sniffer counts from
    /// its own start, so the first frame's arrival on the run's clock, less its sniffer time,
    /// gives the sniffer's start in epoch time (off by the frame's delivery delay, microseconds
    /// on the virtual air, a serial line's worth on a real sniffer).
    pub fn stamp_pcap_with_wall_clock(&mut self) {
        self.pcap_wall_clock = true;
    }

    /// One line from the sniffer (without its line ending).
    pub fn push_line(&mut self, line: &str) {
        self.stats.lines += 1;
        match sniffer::parse_line(line) {
            Ok(Some(frame)) => self.push_frame(&frame),
            Ok(None) => self.stats.ignored_lines += 1,
            Err(_) => self.stats.bad_lines += 1,
        }
    }

    /// One captured frame.
    pub fn push_frame(&mut self, frame: &SnifferFrame) {
        self.stats.frames += 1;
        self.last_timestamp_us = self.last_timestamp_us.max(frame.timestamp_us);
        if let Some(pcap) = self.pcap.as_mut()
            && self.pcap_wall_clock
        {
            self.pcap_wall_clock = false;
            let now = crate::run_clock::wall_now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            pcap.set_time_base(
                now.saturating_sub(std::time::Duration::from_micros(frame.timestamp_us)),
            );
        }
        if let Some(pcap) = self.pcap.as_mut()
            && let Err(e) = pcap.write_frame(frame, self.channel)
        {
            self.stats.pcap_errors += 1;
            self.pcap_error.get_or_insert(e.to_string());
        }
        let Some(decoder) = self.decoder.as_mut() else {
            if self.live.is_some() {
                let head = live_head(frame);
                self.live_line(format!("{head} (no network key)"));
            }
            return;
        };
        if self.live.is_none() && self.timeline.is_none() {
            // The common case (benchmarks, `check`): no per-frame text.
            if let Some(datagram) = decoder.push(frame) {
                self.on_udp(&datagram);
            }
            return;
        }
        let head = live_head(frame);
        let before = decoder.stats();
        let datagram = decoder.push(frame);
        let after = decoder.stats();
        let Some(datagram) = datagram else {
            let what = if after.bad_mic > before.bad_mic {
                "bad MIC"
            } else if after.unknown_source > before.unknown_source {
                "secured, sender's extended address not known yet"
            } else if after.non_data > before.non_data {
                "ack/beacon/command"
            } else if after.undecodable > before.undecodable {
                "undecodable"
            } else if after.duplicates > before.duplicates {
                "retransmission"
            } else if after.datagrams > before.datagrams {
                "IPv6 (not UDP)"
            } else {
                "fragment"
            };
            self.live_line(format!("{head} {what}"));
            return;
        };
        let entries_before: usize = self.connections.iter().map(|c| c.records).sum();
        let log_before = self.stats.coap_messages;
        self.on_udp(&datagram);
        {
            let mut line = format!(
                "{head} [{}]:{} -> [{}]:{} UDP {} B",
                datagram.src.ip(),
                datagram.src.port(),
                datagram.dst.ip(),
                datagram.dst.port(),
                datagram.payload.len()
            );
            if self.stats.coap_messages > log_before
                && let Some(l) = self.log.back()
            {
                line.push_str(&format!(
                    " | CoAP {}",
                    l.rsplit(" -> ").next().unwrap_or("")
                ));
            }
            let entries_after: usize = self.connections.iter().map(|c| c.records).sum();
            if entries_after > entries_before
                && let Some(conn) = self
                    .connections
                    .iter()
                    .find(|c| c.client == datagram.src || c.client == datagram.dst)
            {
                let t = conn.transcript();
                let new = t
                    .entries
                    .len()
                    .saturating_sub(entries_after - entries_before);
                let shown = ot_hil_dtls::Transcript {
                    entries: t.entries.get(new..).unwrap_or(&[]).to_vec(),
                };
                for l in shown.to_string().lines() {
                    line.push_str(&format!(" | DTLS {l}"));
                }
            }
            if let Some(timeline) = self.timeline.as_mut() {
                let at = timeline.at(frame);
                if let Some((_, udp)) = line.split_once(" B [") {
                    timeline.push(at, format!("[{udp}"));
                }
                for (i, c) in self.connections.iter().enumerate() {
                    if timeline.entry_times.len() <= i {
                        timeline.entry_times.push(Vec::new());
                    }
                    if let Some(times) = timeline.entry_times.get_mut(i) {
                        times.resize(c.transcript().entries.len(), at);
                    }
                }
            }
            self.live_line(line);
        }
    }

    fn live_line(&mut self, line: String) {
        if let Some(tx) = &self.live
            && tx.send(line).is_err()
        {
            self.live = None;
        }
    }

    fn on_udp(&mut self, d: &UdpDatagram) {
        if d.src.port() != COAPS_PORT && d.dst.port() != COAPS_PORT {
            if d.src.port() == COAP_PORT || d.dst.port() == COAP_PORT {
                self.log_coap(d);
            }
            return;
        }
        self.stats.dtls_datagrams += 1;
        // A connection is the pair of endpoints, whichever way a datagram goes. Its roles come
        // from the addresses (the side not on 5684 is the client) or, as OpenThread's CoAPS
        // client binds 5684 too, from a handshake message only one side sends; never from which
        // datagram the sniffer happened to hear first.
        let role = sender_role(d);
        let idx = match self.connections.iter().position(|c| {
            (c.client == d.src && c.server == d.dst) || (c.client == d.dst && c.server == d.src)
        }) {
            Some(i) => i,
            None => {
                if self.connections.len() >= MAX_CONNECTIONS {
                    // Memory stays bounded on long captures: the oldest connection goes.
                    self.connections.remove(0);
                    self.stats.evicted_connections += 1;
                }
                let (client, server) = match role {
                    Some(Role::Server) => (d.dst, d.src),
                    Some(Role::Client) | None => (d.src, d.dst),
                };
                self.connections.push(Connection {
                    client,
                    server,
                    builder: TranscriptBuilder::new(),
                    records: 0,
                    undecided: Vec::new(),
                    decided: role.is_some(),
                });
                self.connections.len() - 1
            }
        };
        let Some(conn) = self.connections.get_mut(idx) else {
            return;
        };
        if conn.records + conn.undecided.len() >= MAX_RECORDS {
            self.stats.dropped_records += 1;
            return;
        }
        if !conn.decided {
            let Some(role) = role else {
                conn.undecided.push((d.src, d.payload.clone()));
                return;
            };
            let (client, server) = match role {
                Role::Client => (d.src, d.dst),
                Role::Server => (d.dst, d.src),
            };
            conn.client = client;
            conn.server = server;
            conn.decided = true;
            conn.observe_undecided();
        }
        conn.observe(d.src, &d.payload);
    }

    fn log_coap(&mut self, d: &UdpDatagram) {
        let text = match ot_hil_wire::coap::decode(&d.payload) {
            Ok(p) => format!(
                "{:?} {:?} mid={} /{} ({} B payload)",
                p.header.get_type(),
                p.header.code,
                p.header.message_id,
                ot_hil_wire::coap::uri_path(&p),
                p.payload.len()
            ),
            Err(e) => format!("undecodable CoAP: {e}"),
        };
        self.stats.coap_messages += 1;
        if self.log.len() >= MAX_LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(format!(
            "{} [{}]:{} -> [{}]:{} {text}",
            d.timestamp_us,
            d.src.ip(),
            d.src.port(),
            d.dst.ip(),
            d.dst.port()
        ));
    }

    /// Connections in the order their first datagram was seen (the most recent
    /// [`MAX_CONNECTIONS`] of them).
    pub fn connections(&self) -> &[Connection] {
        &self.connections
    }

    /// The most recent CoAP messages, one line each.
    pub fn coap_log(&self) -> impl Iterator<Item = &String> {
        self.log.iter()
    }

    pub fn stats(&self) -> CaptureStats {
        let mut decode = self
            .decoder
            .as_ref()
            .map(Decoder::stats)
            .unwrap_or_default();
        if self.finished {
            decode.frames = decode.frames.saturating_sub(1);
            decode.undecodable = decode.undecodable.saturating_sub(1);
        }
        CaptureStats {
            decode,
            ..self.stats
        }
    }

    /// End of capture: partial datagrams still held count as missing fragments, and the pcap
    /// is flushed.
    pub fn finish(&mut self) {
        if let Some(decoder) = self.decoder.as_mut() {
            // The decoder expires reassembly on sniffer time; an empty frame past the timeout
            // moves that time on (and counts as one undecodable frame, taken back below).
            let later = self
                .last_timestamp_us
                .saturating_add(ot_hil_wire::decode::REASSEMBLY_TIMEOUT.as_micros() as u64 + 1);
            if !self.finished {
                let _ = decoder.push_psdu(later, &[]);
                self.finished = true;
            }
        }
        // A connection of which no datagram told the roles (the capture holds none of its
        // plaintext handshake): its first sender stands as the client.
        for conn in self.connections.iter_mut().filter(|c| !c.decided) {
            conn.decided = true;
            conn.observe_undecided();
        }
        if let Some(pcap) = self.pcap.take() {
            let mut w = pcap.into_inner();
            if let Err(e) = w.flush() {
                self.stats.pcap_errors += 1;
                self.pcap_error.get_or_insert(e.to_string());
            }
        }
    }
}

fn live_head(frame: &SnifferFrame) -> String {
    format!(
        "{:>12} {:>4} dBm lqi {:>3} {:>3} B",
        frame.timestamp_us,
        frame.rssi_dbm,
        frame.lqi,
        frame.psdu.len()
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn addr(last: u16, port: u16) -> SocketAddrV6 {
        SocketAddrV6::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last), port, 0, 0)
    }

    /// One DTLS 1.2 record: plaintext handshake `msg_type` (epoch 0) or, for `None`, an
    /// encrypted record of epoch 1.
    fn record(msg_type: Option<u8>) -> Vec<u8> {
        let (epoch, body) = match msg_type {
            Some(t) => (0u8, vec![t, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            None => (1, vec![0xaa; 24]),
        };
        let mut r = vec![22, 0xfe, 0xfd, 0, epoch, 0, 0, 0, 0, 0, 1];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend(body);
        r
    }

    fn udp(src: SocketAddrV6, dst: SocketAddrV6, payload: Vec<u8>) -> UdpDatagram {
        UdpDatagram {
            timestamp_us: 0,
            src,
            dst,
            hop_limit: 64,
            payload,
        }
    }

    fn directions(conn: &Connection) -> Vec<Direction> {
        conn.transcript()
            .entries
            .iter()
            .map(|e| e.direction)
            .collect()
    }

    const SERVER_HELLO: u8 = 2;
    const CLIENT_KEY_EXCHANGE: u8 = 16;

    #[test]
    fn a_missed_client_hello_does_not_turn_the_roles_round() {
        // Both ends on 5684, as OpenThread's CoAPS client binds it: the sniffer first hears an
        // encrypted record, then the server's hello.
        let (client, server) = (addr(1, COAPS_PORT), addr(2, COAPS_PORT));
        let mut cap = Capture::new(15, None, [0; 8], None);
        cap.on_udp(&udp(client, server, record(None)));
        cap.on_udp(&udp(server, client, record(Some(SERVER_HELLO))));
        cap.on_udp(&udp(client, server, record(Some(CLIENT_KEY_EXCHANGE))));
        let conn = &cap.connections()[0];
        assert_eq!((conn.client, conn.server), (client, server));
        assert_eq!(
            directions(conn),
            [
                Direction::ClientToServer,
                Direction::ServerToClient,
                Direction::ClientToServer
            ]
        );

        let mut cap = Capture::new(15, None, [0; 8], None);
        cap.on_udp(&udp(server, client, record(Some(SERVER_HELLO))));
        let conn = &cap.connections()[0];
        assert_eq!((conn.client, conn.server), (client, server));
        assert_eq!(directions(conn), [Direction::ServerToClient]);
    }

    #[test]
    fn the_end_not_on_the_coaps_port_is_the_client() {
        let (client, server) = (addr(1, 49152), addr(2, COAPS_PORT));
        let mut cap = Capture::new(15, None, [0; 8], None);
        cap.on_udp(&udp(server, client, record(None)));
        let conn = &cap.connections()[0];
        assert_eq!((conn.client, conn.server), (client, server));
        assert_eq!(directions(conn), [Direction::ServerToClient]);
    }

    #[test]
    fn records_that_never_tell_the_roles_are_kept_at_the_end() {
        let (a, b) = (addr(1, COAPS_PORT), addr(2, COAPS_PORT));
        let mut cap = Capture::new(15, None, [0; 8], None);
        cap.on_udp(&udp(a, b, record(None)));
        cap.on_udp(&udp(b, a, record(None)));
        assert!(cap.connections()[0].transcript().entries.is_empty());
        cap.finish();
        assert_eq!(
            directions(&cap.connections()[0]),
            [Direction::ClientToServer, Direction::ServerToClient]
        );
    }
}
