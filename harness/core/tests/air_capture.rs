//! The air witness end to end without boards: DTLS handshakes between two engines, carried as
//! MAC-secured 6LoWPAN frames, printed as sniffer lines, read back by a capture; the transcript
//! from the air must render exactly as the engines' own transcripts do. Bad input is counted.

use std::sync::Arc;
use std::time::Instant;

use ot_hil::air::Capture;
use ot_hil::air::capture::COAPS_PORT;
use ot_hil::air::reader::read_lines;
use ot_hil::air::snapshot::{self, SnapshotOutcome, Snapshots};
use ot_hil::air::synth::ThreadLink;
use ot_hil_dtls::cert::load_pem_roots;
use ot_hil_dtls::{CertifiedKey, CipherSuite, Config, Connection, Psk, SeededRng, TimeCheck};
use ot_hil_wire::pcap::{LinkType, PcapWriter};
use ot_hil_wire::sniffer::emit_line;

const KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const ML_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0, 0];
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dtls/tests/data");

fn psk() -> (Config, Config) {
    let c = Config {
        suites: vec![CipherSuite::PSK_WITH_AES_128_CCM_8],
        psk: Some(Psk {
            key: b"secretPSK".to_vec(),
            identity: b"Client_identity".to_vec(),
        }),
        require_cookie: true,
        ..Config::default()
    };
    (c.clone(), c)
}

fn x509() -> (Config, Config) {
    let read = |n: &str| std::fs::read_to_string(format!("{DATA}/{n}")).unwrap();
    let roots = load_pem_roots(&read("ca.pem")).unwrap();
    let key = Arc::new(CertifiedKey::from_pem(&read("v1leaf.pem"), &read("v1leaf.key")).unwrap());
    let server = Config {
        suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
        certificate: Some(key.clone()),
        trusted_roots: roots.clone(),
        verify_peer: true,
        time_check: TimeCheck::Now,
        require_cookie: true,
        ..Config::default()
    };
    let client = Config {
        suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
        certificate: Some(key),
        trusted_roots: roots,
        verify_peer: true,
        server_name: Some("PXC3.E75-100A".into()),
        ..Config::default()
    };
    (client, server)
}

/// A client offering ECJPAKE to a server that only has a certificate: fails with an alert.
fn mismatch() -> (Config, Config) {
    let (_, server) = x509();
    let client = Config {
        suites: vec![CipherSuite::ECJPAKE_WITH_AES_128_CCM_8],
        ecjpake_password: Some(b"pw".to_vec()),
        ..Config::default()
    };
    (client, server)
}

/// Run a handshake (plus one exchange of data) over the synthetic air; returns the engines'
/// transcripts and the sniffer lines of every datagram.
fn handshake(
    (client_cfg, server_cfg): (Config, Config),
    link: &mut ThreadLink,
) -> (serde_json::Value, serde_json::Value, Vec<String>) {
    let now = Instant::now();
    let mut client =
        Connection::client_with_rng(Arc::new(client_cfg), now, SeededRng::boxed(1)).unwrap();
    let mut server =
        Connection::server_with_rng(Arc::new(server_cfg), now, b"peer", SeededRng::boxed(2))
            .unwrap();
    let mut lines = Vec::new();
    let mut sent_data = false;
    for _ in 0..50 {
        let mut any = false;
        while let Some(d) = client.poll_transmit() {
            any = true;
            for f in link.datagram(0, 49152, COAPS_PORT, &d) {
                lines.push(emit_line(&f));
            }
            server.handle_datagram(now, &d);
        }
        while let Some(d) = server.poll_transmit() {
            any = true;
            for f in link.datagram(1, COAPS_PORT, 49152, &d) {
                lines.push(emit_line(&f));
            }
            client.handle_datagram(now, &d);
        }
        if !any {
            if client.is_connected() && !sent_data {
                client.send(b"GET /hello").unwrap();
                sent_data = true;
                continue;
            }
            break;
        }
    }
    (
        serde_json::to_value(client.transcript()).unwrap(),
        serde_json::to_value(server.transcript()).unwrap(),
        lines,
    )
}

fn capture(lines: &[String], key: [u8; 16]) -> Capture {
    let mut cap = Capture::new(15, Some(key), ML_PREFIX, None);
    for l in lines {
        cap.push_line(l);
    }
    cap.finish();
    cap
}

#[test]
fn air_transcript_renders_like_the_engines_own() {
    for (name, cfgs) in [("psk", psk()), ("x509", x509()), ("mismatch", mismatch())] {
        let mut link = ThreadLink::new(&KEY, 0, ML_PREFIX);
        let (client_t, server_t, lines) = handshake(cfgs, &mut link);
        let cap = capture(&lines, KEY);
        let stats = cap.stats();
        assert_eq!(stats.decode.bad_mic, 0, "{name}");
        assert_eq!(stats.bad_lines, 0, "{name}");
        assert_eq!(cap.connections().len(), 1, "{name}: {}", stats.summary());
        let conn = &cap.connections()[0];
        assert_eq!(conn.server.port(), COAPS_PORT);
        assert_eq!(conn.client, link.address(0, 49152));
        let air = snapshot::render(&serde_json::to_value(conn.transcript()).unwrap());
        let engine = snapshot::render(&client_t);
        assert_eq!(air, engine, "{name}: air vs client engine");
        assert_eq!(
            air,
            snapshot::render(&server_t),
            "{name}: air vs server engine"
        );
        match name {
            "psk" => {
                assert!(
                    air.contains(
                        "S->C HELLO_VERIFY_REQUEST cookie=yes\nC->S CLIENT_HELLO cookie=yes"
                    ),
                    "{air}"
                );
                assert!(
                    air.contains("S->C SERVER_HELLO chosen_suite=PSK_WITH_AES_128_CCM_8"),
                    "{air}"
                );
            }
            "x509" => assert!(air.contains("S->C CERTIFICATE subjects=["), "{air}"),
            _ => assert!(air.contains("S->C Alert FATAL HANDSHAKE_FAILURE"), "{air}"),
        }
        // Nothing run-specific: a second run with other randoms renders the same.
        let mut link2 = ThreadLink::new(&KEY, 3, ML_PREFIX);
        let cfgs2 = match name {
            "psk" => psk(),
            "x509" => x509(),
            _ => mismatch(),
        };
        let (_, _, lines2) = handshake(cfgs2, &mut link2);
        let cap2 = capture(&lines2, KEY);
        let air2 =
            snapshot::render(&serde_json::to_value(cap2.connections()[0].transcript()).unwrap());
        assert_eq!(air, air2, "{name}: stable");
    }
}

#[test]
fn pcap_holds_every_frame() {
    let mut link = ThreadLink::new(&KEY, 0, ML_PREFIX);
    let (_, _, lines) = handshake(x509(), &mut link);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("air.pcap");
    let file: Box<dyn std::io::Write + Send> = Box::new(std::io::BufWriter::new(
        std::fs::File::create(&path).unwrap(),
    ));
    let mut cap = Capture::new(
        15,
        Some(KEY),
        ML_PREFIX,
        Some(PcapWriter::new(file, LinkType::Tap).unwrap()),
    );
    for l in &lines {
        cap.push_line(l);
    }
    cap.finish();
    let bytes = std::fs::read(&path).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
    assert_eq!(u32::from(reader.header().datalink), 283);
    let mut n = 0;
    while let Some(p) = reader.next_packet() {
        p.unwrap();
        n += 1;
    }
    assert_eq!(n, lines.len());
    assert_eq!(cap.stats().frames, lines.len() as u64);
    assert!(
        lines.len() > 10,
        "x509 handshake fragments: {}",
        lines.len()
    );
}

#[test]
fn bad_input_is_counted_never_fatal() {
    let mut link = ThreadLink::new(&KEY, 0, ML_PREFIX);
    let (_, _, lines) = handshake(psk(), &mut link);

    // Wrong network key: every frame fails its MIC, no connection appears.
    let mut wrong = KEY;
    wrong[0] ^= 1;
    let cap = capture(&lines, wrong);
    assert_eq!(cap.stats().decode.bad_mic, lines.len() as u64);
    assert!(cap.connections().is_empty());

    // Garbage and truncated lines, blank lines, foreign output, a corrupted frame.
    let mut noisy = vec![
        String::new(),
        "uart:~$ ".into(),
        "received: 0 power: 1 lqi: 2 time: 3".into(),
        "received: 41d8 power: -999 lqi: 2 time: 3".into(),
        "\u{1b}[1;32mgarbage\u{0}".into(),
    ];
    let first = lines[0].clone();
    noisy.push(first[..first.len() / 2].to_string());
    // Flip a ciphertext byte of the first frame: MIC fails.
    let mut corrupt = first.clone();
    let pos = "received: ".len() + 60;
    let c = if &corrupt[pos..pos + 1] == "0" {
        "1"
    } else {
        "0"
    };
    corrupt.replace_range(pos..pos + 1, c);
    noisy.push(corrupt);
    noisy.extend(lines.iter().cloned());
    let cap = capture(&noisy, KEY);
    let s = cap.stats();
    // The line cut in half has no `power:` field any more: not a frame line at all.
    assert_eq!(s.ignored_lines, 4, "{}", s.summary());
    assert_eq!(s.bad_lines, 2, "{}", s.summary());
    assert_eq!(s.decode.bad_mic, 1, "{}", s.summary());
    assert_eq!(cap.connections().len(), 1);

    // Random bytes as PSDUs never panic.
    let mut cap = Capture::new(15, Some(KEY), ML_PREFIX, None);
    let mut x: u32 = 12345;
    for _ in 0..2000 {
        let len = (x % 130) as usize;
        let psdu: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        cap.push_line(&format!(
            "received: {}0000 power: -1 lqi: 1 time: 1",
            hex(&psdu)
        ));
    }
    cap.finish();
    assert_eq!(cap.stats().frames, 2000);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn missing_fragment_is_counted_at_the_end() {
    let mut link = ThreadLink::new(&KEY, 0, ML_PREFIX);
    let payload = vec![0x16u8; 400];
    let frames = link.datagram(0, 49152, COAPS_PORT, &payload);
    assert!(frames.len() >= 4);
    let mut cap = Capture::new(15, Some(KEY), ML_PREFIX, None);
    for (i, f) in frames.iter().enumerate() {
        if i != 2 {
            cap.push_frame(f);
        }
    }
    cap.finish();
    let s = cap.stats();
    assert_eq!(s.decode.reassembly.missing_fragments, 1, "{}", s.summary());
    assert_eq!(s.dtls_datagrams, 0);
    assert_eq!(
        s.decode.undecodable, 0,
        "the end-of-capture probe is not counted"
    );
}

#[test]
fn line_reader_handles_endings_and_stops() {
    let input = b"sleep\r\nreceived: 41d80000 power: -1 lqi: 2 time: 3\r\n\r\nchannel 15\rpartial";
    let mut lines = Vec::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    read_lines(&mut &input[..], &stop, |l| lines.push(l.to_string()));
    assert_eq!(
        lines,
        vec![
            "sleep",
            "received: 41d80000 power: -1 lqi: 2 time: 3",
            "",
            "channel 15",
            "partial"
        ]
    );
}

#[test]
fn snapshot_comparison_by_insta_rules() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = Snapshots {
        dir: dir.path().to_path_buf(),
    };
    let content = "C->S ClientHello\nS->C ServerHello\n";
    std::fs::write(
        snaps.path("case__hs__v"),
        format!("---\nsource: testcases/case.toml\n---\n{content}"),
    )
    .unwrap();
    assert_eq!(
        snaps
            .compare("case__hs__v", "testcases/case.toml", "d", content)
            .expect("compared"),
        SnapshotOutcome::Matched
    );
    match snaps
        .compare(
            "case__hs__v",
            "testcases/case.toml",
            "d",
            "C->S ClientHello\nS->C Alert fatal handshake_failure\n",
        )
        .expect("compared")
    {
        SnapshotOutcome::Mismatch { diff, .. } => {
            assert!(diff.contains("-S->C ServerHello"), "{diff}");
            assert!(
                diff.contains("+S->C Alert fatal handshake_failure"),
                "{diff}"
            );
        }
        other => panic!("{other:?}"),
    }
    match snaps
        .compare("case__other__v", "testcases/case.toml", "d", content)
        .expect("compared")
    {
        SnapshotOutcome::New { .. } => {}
        other => panic!("{other:?}"),
    }
}
