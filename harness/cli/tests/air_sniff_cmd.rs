//! `ot-hil sniff --air`: a virtual sniffer on a virtual air prints decoded traffic live, writes a
//! pcap and stops after --count frames.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use ot_hil::air::capture::{COAP_PORT, COAPS_PORT};
use ot_hil::air::synth::ThreadLink;
use ot_hil_air::{AirClient, Hub};
use ot_hil_dtls::{CipherSuite, Config, Connection, Psk};

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");
const KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const ML_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0, 0];

#[test]
fn sniff_on_virtual_air_prints_decoded_traffic() {
    let dir = tempfile::Builder::new()
        .prefix("oht")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    let pcap = dir.path().join("live.pcap");

    // What will be sent: a CoAP GET, a ClientHello, and one frame of garbage.
    let mut link = ThreadLink::new(&KEY, 0, ML_PREFIX);
    let mut frames = link.datagram(0, 49153, COAP_PORT, b"\x40\x01\x12\x34\xb4test");
    let client = Config {
        suites: vec![CipherSuite::PSK_WITH_AES_128_CCM_8],
        psk: Some(Psk {
            key: b"123".to_vec(),
            identity: b"pskid".to_vec(),
        }),
        ..Config::default()
    };
    let mut conn = Connection::client(Arc::new(client), Instant::now()).unwrap();
    let hello = conn.poll_transmit().unwrap();
    frames.extend(link.datagram(0, COAPS_PORT, COAPS_PORT, &hello));
    let count = frames.len() + 1;

    let mut child = Command::new(EXE)
        .args(["sniff", "--channel", "15", "--network-key"])
        .arg("00112233445566778899aabbccddeeff")
        .arg("--air")
        .arg(hub.socket_path())
        .arg("--variants-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware/variants"))
        .arg("--pcap")
        .arg(&pcap)
        .arg("--count")
        .arg(count.to_string())
        .arg("--duration")
        .arg("20s")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "sniff exited early"
        );
        if line.starts_with("sniffing on channel 15") {
            break;
        }
    }
    let radio = AirClient::connect(hub.socket_path()).unwrap();
    radio.set_channel(15).unwrap();
    for f in &frames {
        radio.send(&f.psdu).unwrap();
    }
    radio.send(&[0x41, 0xd8, 0xff]).unwrap();

    let output = child.wait_with_output().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{rest}");
    assert_eq!(stdout.lines().count(), count, "{stdout}");
    assert!(stdout.contains("| CoAP"), "{stdout}");
    assert!(stdout.contains("| DTLS C->S"), "{stdout}");
    assert!(stdout.contains("CLIENT_HELLO"), "{stdout}");
    assert!(stdout.contains("undecodable"), "{stdout}");
    assert!(rest.contains("dtls connection 1:"), "{rest}");
    let bytes = std::fs::read(&pcap).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
    let mut n = 0;
    while let Some(p) = reader.next_packet() {
        p.unwrap();
        n += 1;
    }
    assert_eq!(n, count);
}
