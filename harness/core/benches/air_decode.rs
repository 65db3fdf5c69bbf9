//! Air decoding throughput and memory, side by side with Wireshark's tshark on the same capture.
//!
//! A capture of at least 100,000 MAC-secured Thread frames carrying CoAPS (DTLS 1.2 handshakes
//! recorded from the DTLS engine: PSK and ECDHE-ECDSA with a certificate chain, fragmented by
//! 6LoWPAN, each replayed from a new client port) is written as a pcap (linktype 283). Then the
//! same file is decoded by ot-hil (this executable in a child process: read pcap, decrypt,
//! reassemble, decompress, one DTLS transcript per connection) and by
//! `tshark -r FILE -o <Thread key> -o <6LoWPAN context 0> -d udp.port==5684,dtls -T fields -e dtls.record.content_type`,
//! each under `/usr/bin/time` for wall time and peak RSS. ot-hil also decodes a capture a
//! quarter as long, to show that its memory does not grow with the capture.
//!
//! `cargo bench -p ot-hil-runner --bench air_decode` (OT_HIL_BENCH_FRAMES sets the frame count).

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use ot_hil::air::Capture;
use ot_hil::air::capture::COAPS_PORT;
use ot_hil::air::synth::ThreadLink;
use ot_hil_dtls::cert::load_pem_roots;
use ot_hil_dtls::{CertifiedKey, CipherSuite, Config, Connection, Psk, SeededRng, TimeCheck};
use ot_hil_wire::pcap::{LinkType, PcapWriter};
use ot_hil_wire::sniffer::SnifferFrame;

const KEY_HEX: &str = "00112233445566778899aabbccddeeff";
const KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const ML_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0, 0];
const CHANNEL: u8 = 15;
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dtls/tests/data");

/// One recorded handshake: (client sent it, datagram).
type Flight = Vec<(bool, Vec<u8>)>;

fn record((client_cfg, server_cfg): (Config, Config)) -> Flight {
    let now = Instant::now();
    let mut client = Connection::client_with_rng(Arc::new(client_cfg), now, SeededRng::boxed(1))
        .expect("client");
    let mut server =
        Connection::server_with_rng(Arc::new(server_cfg), now, b"peer", SeededRng::boxed(2))
            .expect("server");
    let mut out = Vec::new();
    let mut sent = false;
    for _ in 0..50 {
        let mut any = false;
        while let Some(d) = client.poll_transmit() {
            any = true;
            server.handle_datagram(now, &d);
            out.push((true, d));
        }
        while let Some(d) = server.poll_transmit() {
            any = true;
            client.handle_datagram(now, &d);
            out.push((false, d));
        }
        if !any {
            if client.is_connected() && !sent {
                let _ = client.send(b"\x42\x01\x12\x34\xb4test");
                sent = true;
                continue;
            }
            break;
        }
    }
    out
}

fn configs() -> Vec<(Config, Config)> {
    let psk = Config {
        suites: vec![CipherSuite::PSK_WITH_AES_128_CCM_8],
        psk: Some(Psk {
            key: b"123".to_vec(),
            identity: b"pskid".to_vec(),
        }),
        require_cookie: true,
        ..Config::default()
    };
    let read = |n: &str| std::fs::read_to_string(format!("{DATA}/{n}")).expect("test data");
    let roots = load_pem_roots(&read("ca.pem")).expect("roots");
    let key =
        Arc::new(CertifiedKey::from_pem(&read("v1leaf.pem"), &read("v1leaf.key")).expect("key"));
    let server = Config {
        suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
        certificate: Some(key.clone()),
        trusted_roots: roots.clone(),
        verify_peer: false,
        time_check: TimeCheck::Now,
        require_cookie: true,
        ..Config::default()
    };
    let client = Config {
        suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
        trusted_roots: roots,
        verify_peer: true,
        server_name: Some("PXC3.E75-100A".into()),
        ..Config::default()
    };
    vec![(psk.clone(), psk), (client, server)]
}

/// Write a capture of at least `frames` frames; returns the exact count.
fn generate(path: &Path, frames: usize) -> usize {
    let flights: Vec<Flight> = configs().into_iter().map(record).collect();
    let file = std::fs::File::create(path).expect("create pcap");
    let mut pcap = PcapWriter::new(BufWriter::new(file), LinkType::Tap).expect("pcap");
    let mut link = ThreadLink::new(&KEY, 0, ML_PREFIX);
    let mut written = 0;
    let mut round = 0usize;
    while written < frames {
        let flight = &flights[round % flights.len()];
        let port = 49152 + (round % 16000) as u16;
        for (from_client, d) in flight {
            let out: Vec<SnifferFrame> = if *from_client {
                link.datagram(0, port, COAPS_PORT, d)
            } else {
                link.datagram(1, COAPS_PORT, port, d)
            };
            for f in &out {
                pcap.write_frame(f, CHANNEL).expect("write");
                written += 1;
            }
        }
        round += 1;
    }
    pcap.into_inner().flush().expect("flush");
    written
}

/// The child: decode `path` as `ot-hil` does, print the counters.
fn decode_child(path: &str) {
    let file = std::fs::File::open(path).expect("open");
    let mut reader = pcap_file::pcap::PcapReader::new(BufReader::new(file)).expect("pcap");
    let mut capture = Capture::new(CHANNEL, Some(KEY), ML_PREFIX, None);
    let started = Instant::now();
    while let Some(packet) = reader.next_packet() {
        let Ok(packet) = packet else { break };
        let data = packet.data.as_ref();
        // TAP header length: bytes 2..4, little-endian.
        let hl = data
            .get(2..4)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .unwrap_or(0);
        let psdu = data.get(hl..).unwrap_or(&[]).to_vec();
        capture.push_frame(&SnifferFrame {
            psdu,
            rssi_dbm: 0,
            lqi: 0,
            timestamp_us: u64::try_from(packet.timestamp.as_micros()).unwrap_or(0),
        });
    }
    capture.finish();
    let secs = started.elapsed().as_secs_f64();
    let s = capture.stats();
    let handshakes = s.evicted_connections + capture.connections().len() as u64;
    println!(
        "decoded {} frames in {secs:.3}s: decrypted {} bad_mic {} dtls_datagrams {} connections {handshakes}",
        s.frames, s.decode.decrypted, s.decode.bad_mic, s.dtls_datagrams
    );
}

struct Measured {
    wall_s: f64,
    max_rss_kb: u64,
    stdout: String,
}

/// Run under /usr/bin/time -f "%e %M": wall seconds and peak RSS in KB.
fn timed(cmd: &mut Command) -> Measured {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("@@time %e %M")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run /usr/bin/time");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("@@time "))
        .unwrap_or_else(|| panic!("no timing from {:?}: {stderr}", cmd.get_program()));
    let mut parts = line.split_whitespace().skip(1);
    let wall_s: f64 = parts
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(f64::NAN);
    let max_rss_kb: u64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    Measured {
        wall_s,
        max_rss_kb,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--decode-child") {
        decode_child(args.get(i + 1).map(String::as_str).unwrap_or(""));
        return;
    }
    let frames: usize = std::env::var("OT_HIL_BENCH_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("air-big.pcap");
    let small = dir.path().join("air-small.pcap");
    let n_big = generate(&big, frames);
    let n_small = generate(&small, frames / 4);
    let exe = std::env::current_exe().expect("exe");

    let ours_small = timed(Command::new(&exe).arg("--decode-child").arg(&small));
    let ours = timed(Command::new(&exe).arg("--decode-child").arg(&big));
    println!("ot-hil (small): {}", ours_small.stdout.trim());
    println!("ot-hil:         {}", ours.stdout.trim());

    let tshark = Command::new("tshark").arg("--version").output();
    let tshark_available = tshark.is_ok_and(|o| o.status.success());
    let ours_rate = n_big as f64 / ours.wall_s.max(1e-3);
    println!(
        "\n{:<28} {:>9} {:>9} {:>12} {:>12}",
        "decoder", "frames", "wall s", "frames/s", "peak RSS MB"
    );
    let row = |name: &str, n: usize, m: &Measured| {
        println!(
            "{name:<28} {n:>9} {:>9.2} {:>12.0} {:>12.1}",
            m.wall_s,
            n as f64 / m.wall_s.max(1e-3),
            m.max_rss_kb as f64 / 1024.0
        );
    };
    row("ot-hil (1/4 capture)", n_small, &ours_small);
    row("ot-hil", n_big, &ours);
    if !tshark_available {
        println!("tshark not installed: no comparison (apt-get install tshark)");
        return;
    }
    let key_pref = format!("uat:ieee802154_keys:\"{KEY_HEX}\",\"0\",\"Thread hash\"");
    let t = timed(
        Command::new("tshark")
            .arg("-n")
            .arg("-r")
            .arg(&big)
            .arg("-o")
            .arg(&key_pref)
            .arg("-o")
            .arg("6lowpan.context0:fdde:ad00:beef::/64")
            .arg("-d")
            .arg("udp.port==5684,dtls")
            .arg("-T")
            .arg("fields")
            .arg("-e")
            .arg("dtls.record.content_type"),
    );
    let dtls_lines = t.stdout.lines().filter(|l| !l.trim().is_empty()).count();
    row("tshark", n_big, &t);
    println!(
        "\ntshark decoded DTLS records in {dtls_lines} of {n_big} frames' packets (a fragmented datagram counts once)"
    );
    let tshark_rate = n_big as f64 / t.wall_s.max(1e-3);
    println!(
        "throughput ratio ot-hil / tshark: {:.1}x; peak memory ot-hil {:.1} MB (1/4 capture: {:.1} MB) vs tshark {:.1} MB",
        ours_rate / tshark_rate,
        ours.max_rss_kb as f64 / 1024.0,
        ours_small.max_rss_kb as f64 / 1024.0,
        t.max_rss_kb as f64 / 1024.0
    );
}
