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
}

impl Connection {
    pub fn transcript(&self) -> &Transcript {
        self.builder.transcript()
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
        }
    }

    /// Send a one-line description of every frame to `sink` as it is decoded.
    pub fn set_live(&mut self, sink: std::sync::mpsc::Sender<String>) {
        self.live = Some(sink);
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
        if self.live.is_none() {
            // The common case (case runs, benchmarks): no per-frame text.
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
        // A connection is the pair of endpoints, whichever way a datagram goes. OpenThread's
        // CoAPS client binds 5684 too, so ports alone do not tell the client: it is the side
        // that sent the first ClientHello (else the side not on 5684).
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
                let (client, server) = if is_client_hello(&d.payload) || d.dst.port() == COAPS_PORT
                {
                    (d.src, d.dst)
                } else {
                    (d.dst, d.src)
                };
                self.connections.push(Connection {
                    client,
                    server,
                    builder: TranscriptBuilder::new(),
                    records: 0,
                });
                self.connections.len() - 1
            }
        };
        let Some(conn) = self.connections.get_mut(idx) else {
            return;
        };
        if conn.records >= MAX_RECORDS {
            self.stats.dropped_records += 1;
            return;
        }
        let direction = if d.src == conn.client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        conn.builder.observe(direction, &d.payload);
        conn.records = conn.builder.transcript().entries.len();
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
        if let Some(pcap) = self.pcap.take() {
            let mut w = pcap.into_inner();
            if let Err(e) = w.flush() {
                self.stats.pcap_errors += 1;
                self.pcap_error.get_or_insert(e.to_string());
            }
        }
    }
}

/// Whether a datagram starts with a plaintext DTLS handshake record carrying a ClientHello
/// (record type 22, epoch 0, handshake type 1 right after the 13-byte record header).
fn is_client_hello(datagram: &[u8]) -> bool {
    matches!(datagram, [22, 0xfe, _, 0, 0, _, _, _, _, _, _, _, _, 1, ..])
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
