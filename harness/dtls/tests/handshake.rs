//! In-memory handshakes between two engines: every suite, cookie exchange, fragmentation,
//! loss and retransmission, alerts, memory accounting.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ot_hil_dtls::transcript::{Body, Fields};
use ot_hil_dtls::{
    AlertDescription, CipherSuite, Config, Connection, Event, HelloLayout, SeededRng,
    SignatureScheme, TimeCheck, TranscriptBuilder,
};

fn assert_connected(p: &Pair, suite: CipherSuite) {
    assert!(
        p.client_events.contains(&Event::Connected { suite }),
        "client events {:?}",
        p.client_events
    );
    assert!(
        p.server_events.contains(&Event::Connected { suite }),
        "server events {:?}",
        p.server_events
    );
    assert_eq!(p.client.key_block(), p.server.key_block());
}

fn exchange_data(p: &mut Pair) {
    p.client.send(b"GET /hello").unwrap();
    p.server.send(b"world").unwrap();
    p.pump();
    assert!(
        p.server_events
            .contains(&Event::ApplicationData(b"GET /hello".to_vec()))
    );
    assert!(
        p.client_events
            .contains(&Event::ApplicationData(b"world".to_vec()))
    );
}

#[test]
fn psk_handshake_and_data() {
    let mut p = Pair::new(psk_config(), psk_config());
    p.pump();
    assert_connected(&p, CipherSuite::PSK_WITH_AES_128_CCM_8);
    exchange_data(&mut p);
    assert!(p.client.next_timeout().is_none());
    p.client.close();
    p.pump();
    assert!(p.server_events.contains(&Event::Closed));
}

#[test]
fn psk_with_hint_sends_server_key_exchange() {
    let server = Config {
        psk_hint: Some(b"hint".to_vec()),
        ..psk_config()
    };
    let mut p = Pair::new(psk_config(), server);
    p.pump();
    assert_connected(&p, CipherSuite::PSK_WITH_AES_128_CCM_8);
    let ske = p
        .client
        .transcript()
        .handshake_fields()
        .any(|f| matches!(f, Fields::ServerKeyExchange { .. }));
    assert!(ske);
}

#[test]
fn ecdhe_ecdsa_handshake_v1_certificate() {
    let (c, s) = x509_configs(false);
    let mut p = Pair::new(c, s);
    p.pump();
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
    assert_eq!(
        p.client.peer_certificates()[0].common_name.as_deref(),
        Some("PXC3.E75-100A")
    );
    assert_eq!(p.client.peer_certificates()[0].version, 1);
    exchange_data(&mut p);
}

#[test]
fn ecdhe_ecdsa_mutual_auth() {
    let (c, s) = x509_configs(true);
    let mut p = Pair::new(c, s);
    p.pump();
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
    assert_eq!(p.server.peer_certificates().len(), 1);
    let t = p.server.transcript().to_string();
    assert!(t.contains("CERTIFICATE_VERIFY seq="), "{t}");
}

#[test]
fn mutual_auth_without_client_certificate_fails() {
    let (mut c, s) = x509_configs(true);
    c.certificate = None;
    let mut p = Pair::new(c, s);
    p.pump();
    assert_last_failed_with(&p.server_events, AlertDescription::HANDSHAKE_FAILURE);
    assert_last_failed_with(&p.client_events, AlertDescription::HANDSHAKE_FAILURE);
}

#[test]
fn ecjpake_handshake() {
    let mut p = Pair::new(ecjpake_config(b"J01NME"), ecjpake_config(b"J01NME"));
    p.pump();
    assert_connected(&p, CipherSuite::ECJPAKE_WITH_AES_128_CCM_8);
    exchange_data(&mut p);
}

#[test]
fn ecjpake_wrong_password_fails_at_finished() {
    let mut p = Pair::new(ecjpake_config(b"J01NME"), ecjpake_config(b"WRONG"));
    p.pump();
    // Different keys: the client's Finished fails authentication; like mbedtls, the server
    // answers with a fatal bad_record_mac (in epoch 0, it has not sent its CCS yet).
    assert_last_failed_with(&p.server_events, AlertDescription::BAD_RECORD_MAC);
    assert_last_failed_with(&p.client_events, AlertDescription::BAD_RECORD_MAC);
}

#[test]
fn wrong_psk_is_bad_record_mac() {
    let mut server = psk_config();
    server.psk.as_mut().unwrap().key = b"456".to_vec();
    let mut p = Pair::new(psk_config(), server);
    p.pump();
    assert_last_failed_with(&p.server_events, AlertDescription::BAD_RECORD_MAC);
    assert_last_failed_with(&p.client_events, AlertDescription::BAD_RECORD_MAC);
}

#[test]
fn bad_mac_limit_after_handshake() {
    let mut server = psk_config();
    server.bad_mac_limit = Some(2);
    let mut p = Pair::new(psk_config(), server);
    p.pump();
    assert_connected(&p, CipherSuite::PSK_WITH_AES_128_CCM_8);
    for _ in 0..2 {
        p.client.send(b"x").unwrap();
        let mut d = p.client.poll_transmit().unwrap();
        let last = d.len() - 1;
        d[last] ^= 1;
        p.server.handle_datagram(p.now, &d);
    }
    p.pump();
    assert_last_failed_with(&p.server_events, AlertDescription::BAD_RECORD_MAC);
    assert_last_failed_with(&p.client_events, AlertDescription::BAD_RECORD_MAC);
}

#[test]
fn unknown_psk_identity() {
    let mut server = psk_config();
    server.psk.as_mut().unwrap().identity = b"other".to_vec();
    let mut p = Pair::new(psk_config(), server);
    p.pump();
    assert_last_failed_with(&p.client_events, AlertDescription::UNKNOWN_PSK_IDENTITY);
}

#[test]
fn no_common_suite_is_handshake_failure() {
    let mut p = Pair::new(psk_config(), ecjpake_config(b"x"));
    p.pump();
    assert_last_failed_with(&p.client_events, AlertDescription::HANDSHAKE_FAILURE);
    match p.server_events.last() {
        Some(Event::Failed { reason, .. }) => {
            assert!(reason.contains("no cipher suite in common"), "{reason}")
        }
        e => panic!("{e:?}"),
    }
}

/// The coaps-cli-report case: a client offering ECDHE_ECDSA and ECJPAKE without a password
/// sends no ext 0x0100; a conforming server must not choose ECJPAKE.
#[test]
fn server_does_not_pick_ecjpake_without_extension() {
    let (mut c, mut s) = x509_configs(false);
    c.suites = vec![
        CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
        CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
    ];
    s.suites = vec![
        CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
        CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
    ];
    s.ecjpake_password = Some(b"J01NME".to_vec());
    let mut p = Pair::new(c, s);
    p.pump();
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
}

#[test]
fn wrong_server_name_is_bad_certificate() {
    let (mut c, s) = x509_configs(false);
    c.server_name = Some("other.example".into());
    let mut p = Pair::new(c, s);
    p.pump();
    assert_last_failed_with(&p.client_events, AlertDescription::BAD_CERTIFICATE);
    assert_last_failed_with(&p.server_events, AlertDescription::BAD_CERTIFICATE);
}

#[test]
fn untrusted_certificate_is_unknown_ca() {
    let (mut c, s) = x509_configs(false);
    c.trusted_roots = ot_hil_dtls::cert::load_pem_roots(&read("otherca.pem")).unwrap();
    let mut p = Pair::new(c, s);
    p.pump();
    assert_last_failed_with(&p.client_events, AlertDescription::UNKNOWN_CA);
}

#[test]
fn expired_certificate() {
    let (mut c, s) = x509_configs(false);
    c.time_check = TimeCheck::at_unix(4_000_000_000 * 2); // year 2223: after notAfter
    let mut p = Pair::new(c.clone(), s.clone());
    p.pump();
    assert_last_failed_with(&p.client_events, AlertDescription::CERTIFICATE_EXPIRED);
    c.time_check = TimeCheck::Skip;
    let mut p = Pair::new(c, s);
    p.pump();
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
}

#[test]
fn fragmentation_small_records_and_datagrams() {
    let (mut c, mut s) = x509_configs(true);
    for cfg in [&mut c, &mut s] {
        cfg.max_record_content = 100;
        cfg.max_datagram = 150;
    }
    let mut p = Pair::new(c, s);
    p.pump_with(|_, d| {
        assert!(d.len() <= 150, "datagram of {} bytes", d.len());
        Some(d)
    });
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
    let t = p.client.transcript().to_string();
    assert!(t.contains("CERTIFICATE seq=2 frag 0+88/"), "{t}");
}

#[test]
fn reassembly_out_of_order_datagrams() {
    let (mut c, mut s) = x509_configs(false);
    s.max_record_content = 120;
    c.max_record_content = 120;
    let mut p = Pair::new(c, s);
    // Reverse each burst of server datagrams.
    let mut held: Vec<Vec<u8>> = Vec::new();
    for _ in 0..10 {
        while let Some(d) = p.client.poll_transmit() {
            p.server.handle_datagram(p.now, &d);
        }
        while let Some(d) = p.server.poll_transmit() {
            held.push(d);
        }
        for d in held.drain(..).rev() {
            p.client.handle_datagram(p.now, &d);
        }
    }
    while let Some(e) = p.client.poll_event() {
        p.client_events.push(e);
    }
    while let Some(e) = p.server.poll_event() {
        p.server_events.push(e);
    }
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
}

#[test]
fn lost_flights_are_retransmitted_with_backoff() {
    let mut p = Pair::new(psk_config(), psk_config());
    let t0 = p.now;
    // Lose the first two datagrams the server sends (HVR, then the ServerHello flight)...
    let mut dropped = 0;
    p.pump_with(|c2s, d| {
        if !c2s && dropped < 2 {
            dropped += 1;
            None
        } else {
            Some(d)
        }
    });
    assert_eq!(dropped, 1, "only the HVR was sent so far");
    assert!(p.client_events.is_empty());
    // 1 s later the client resends its ClientHello.
    assert_eq!(p.client.next_timeout(), Some(t0 + Duration::from_secs(1)));
    p.tick();
    p.pump_with(|c2s, d| {
        if !c2s && dropped < 2 {
            dropped += 1;
            None
        } else {
            Some(d)
        }
    });
    // ServerHello flight lost: both timers run; next client timeout doubled to 2 s.
    let next = p.client.next_timeout().unwrap();
    assert_eq!(
        next - p.now,
        Duration::from_secs(2) - Duration::from_millis(0)
    );
    while p.client_events.is_empty() && p.tick() {
        p.pump();
    }
    assert_connected(&p, CipherSuite::PSK_WITH_AES_128_CCM_8);
}

#[test]
fn lost_final_server_flight_is_resent_when_client_retransmits() {
    let mut p = Pair::new(psk_config(), psk_config());
    let mut server_dgrams = 0;
    // Server datagrams: HVR, ServerHello flight, CCS+Finished (dropped).
    p.pump_with(|c2s, d| {
        if !c2s {
            server_dgrams += 1;
            if server_dgrams == 3 {
                return None;
            }
        }
        Some(d)
    });
    assert!(p.server.is_connected());
    assert!(!p.client.is_connected());
    p.tick();
    p.pump();
    assert_connected(&p, CipherSuite::PSK_WITH_AES_128_CCM_8);
}

#[test]
fn handshake_times_out_after_max() {
    let mut c = psk_config();
    c.retransmit_min = Duration::from_secs(1);
    c.retransmit_max = Duration::from_secs(8);
    let now = std::time::Instant::now();
    let mut conn = Connection::client_with_rng(Arc::new(c), now, SeededRng::boxed(3)).unwrap();
    let mut sent = 0;
    let mut t = now;
    while let Some(next) = conn.next_timeout() {
        while conn.poll_transmit().is_some() {
            sent += 1;
        }
        t = next;
        conn.handle_timeout(t);
    }
    // 1 + retransmissions at 1, 2, 4, 8 s, then failure at the 8 s expiry.
    assert_eq!(sent, 4);
    assert_eq!(t - now, Duration::from_secs(1 + 2 + 4 + 8));
    assert!(matches!(
        conn.poll_event(),
        Some(Event::Failed { alert: None, .. })
    ));
}

#[test]
fn replayed_and_tampered_records_are_dropped() {
    let mut p = Pair::new(psk_config(), psk_config());
    p.pump();
    p.client.send(b"one").unwrap();
    let d = p.client.poll_transmit().unwrap();
    p.server.handle_datagram(p.now, &d);
    p.server.handle_datagram(p.now, &d); // replay
    let mut bad = d.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55; // flip a tag byte
    p.client.send(b"two").unwrap();
    let d2 = p.client.poll_transmit().unwrap();
    let mut bad2 = d2.clone();
    let l2 = bad2.len() - 3;
    bad2[l2] ^= 1;
    p.server.handle_datagram(p.now, &bad2);
    p.server.handle_datagram(p.now, &d2);
    let mut got = Vec::new();
    while let Some(e) = p.server.poll_event() {
        got.push(e);
    }
    assert_eq!(
        got.into_iter()
            .filter(|e| matches!(e, Event::ApplicationData(_)))
            .collect::<Vec<_>>(),
        vec![
            Event::ApplicationData(b"one".to_vec()),
            Event::ApplicationData(b"two".to_vec())
        ]
    );
    assert!(p.server.is_connected());
}

#[test]
fn truncated_and_garbage_input_does_not_panic() {
    let mut p = Pair::new(psk_config(), psk_config());
    let ch = p.client.poll_transmit().unwrap();
    for n in 0..ch.len() {
        p.server.handle_datagram(p.now, &ch[..n]);
    }
    // A ClientHello whose handshake length lies (claims more than the record holds).
    let mut lie = ch.clone();
    lie[13 + 1] = 0xff;
    p.server.handle_datagram(p.now, &lie);
    // A record carrying a handshake header with a body shorter than its fragment_length.
    let mut short = ch.clone();
    short[13 + 11] = short[13 + 11].wrapping_add(5);
    p.server.handle_datagram(p.now, &short);
    let mut events = Vec::new();
    while let Some(e) = p.server.poll_event() {
        events.push(e);
    }
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Failed {
                alert: Some(AlertDescription::DECODE_ERROR),
                ..
            }
        )),
        "{events:?}"
    );
}

#[test]
fn oversized_handshake_message_is_rejected() {
    let mut p = Pair::new(psk_config(), psk_config());
    let _ = p.client.poll_transmit();
    // Handshake header announcing a 1 MiB ClientHello, first fragment only.
    let mut rec = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 16];
    rec.extend([1, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4]);
    p.server.handle_datagram(p.now, &rec);
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::Failed {
            alert: Some(AlertDescription::DECODE_ERROR),
            ..
        })
    ));
}

#[test]
fn memory_model_grows_with_certificates_and_enforces_limit() {
    let mut p = Pair::new(psk_config(), psk_config());
    p.pump();
    let psk_peak = p.client.peak_handshake_bytes();
    let (c, s) = x509_configs(true);
    let mut p = Pair::new(c.clone(), s.clone());
    p.pump();
    let x509_peak = p.client.peak_handshake_bytes();
    assert!(
        x509_peak > psk_peak + 1000,
        "psk {psk_peak} x509 {x509_peak}"
    );
    let mut limited = c;
    limited.heap_limit = Some((psk_peak + x509_peak) / 2);
    let mut p = Pair::new(limited, s);
    p.pump();
    match p.client_events.last() {
        Some(Event::Failed {
            alert: Some(AlertDescription::INTERNAL_ERROR),
            reason,
        }) => assert_eq!(reason, "out of heap"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn engine_and_passive_transcripts_agree_on_plaintext() {
    let (c, s) = x509_configs(false);
    let mut p = Pair::new(c, s);
    let mut observer = TranscriptBuilder::new();
    p.pump_with(|c2s, d| {
        observer.observe(
            if c2s {
                ot_hil_dtls::Direction::ClientToServer
            } else {
                ot_hil_dtls::Direction::ServerToClient
            },
            &d,
        );
        Some(d)
    });
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
    let passive = observer.finish();
    assert_eq!(
        passive.chosen_suite(),
        Some(CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8)
    );
    // The client saw everything the observer saw (same records, same order).
    assert_eq!(passive.entries.len(), p.client.transcript().entries.len());
    for (a, b) in passive.entries.iter().zip(&p.client.transcript().entries) {
        assert_eq!(
            (a.direction, a.epoch, a.sequence, a.content_type),
            (b.direction, b.epoch, b.sequence, b.content_type)
        );
        if !a.encrypted {
            assert_eq!(a.body, b.body);
        } else {
            assert!(matches!(a.body, Body::Encrypted { .. }));
        }
    }
    let text = passive.to_string();
    assert!(text.contains("CN=PXC3.E75-100A"), "{text}");
    assert!(text.contains("[encrypted]"));
    let json = serde_json::to_string(&passive).unwrap();
    assert!(
        json.contains("\"chosen_suite\":\"ECDHE_ECDSA_WITH_AES_128_CCM_8\""),
        "{json}"
    );
}

/// The coaps-cli-report failure: a non-conforming server picks ECJPAKE for a client that
/// offered it next to ECDHE_ECDSA but sent no round one. The server's ServerHello names
/// ECJPAKE, then it fails with internal_error; the client sees the alert.
#[test]
fn relaxed_server_picks_ecjpake_without_extension() {
    let (mut c, mut s) = x509_configs(false);
    c.suites = vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8];
    s.suites = vec![
        CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
        CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
    ];
    s.ecjpake_requires_extension_and_password = false;
    s.ecjpake_password = Some(b"J01NME".to_vec());
    // A client offering only ECDHE_ECDSA cannot be given ECJPAKE (not in the intersection).
    let mut p = Pair::new(c.clone(), s.clone());
    p.pump();
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);

    // A raw ClientHello offering both suites without extension 0x0100.
    let mut observer = TranscriptBuilder::new();
    let now = std::time::Instant::now();
    let mut server =
        Connection::server_with_rng(Arc::new(s), now, b"peer", SeededRng::boxed(9)).unwrap();
    let ch = ot_hil_dtls::messages::ClientHello {
        client_version: ot_hil_dtls::ProtocolVersion::DTLS1_2,
        random: [7; 32],
        session_id: Vec::new(),
        cookie: Vec::new(),
        cipher_suites: vec![
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
            CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
        ],
        compression_methods: vec![0],
        extensions: vec![ot_hil_dtls::messages::Extension::supported_groups(&[
            ot_hil_dtls::NamedGroup::SECP256R1,
        ])],
    };
    let record = |cookie: Vec<u8>, seq: u16| {
        use ot_hil_dtls::codec::Codec;
        let body = ot_hil_dtls::messages::ClientHello {
            cookie,
            ..ch.clone()
        }
        .get_encoding();
        handshake_record(ot_hil_dtls::HandshakeType::CLIENT_HELLO, seq, &body)
    };
    let first = record(Vec::new(), 0);
    observer.observe(ot_hil_dtls::Direction::ClientToServer, &first);
    server.handle_datagram(now, &first);
    let hvr = server.poll_transmit().unwrap();
    observer.observe(ot_hil_dtls::Direction::ServerToClient, &hvr);
    let cookie = hvr[13 + 12 + 3..].to_vec();
    let second = record(cookie, 1);
    observer.observe(ot_hil_dtls::Direction::ClientToServer, &second);
    server.handle_datagram(now, &second);
    while let Some(d) = server.poll_transmit() {
        observer.observe(ot_hil_dtls::Direction::ServerToClient, &d);
    }
    let t = observer.finish();
    assert_eq!(
        t.chosen_suite(),
        Some(CipherSuite::ECJPAKE_WITH_AES_128_CCM_8),
        "{t}"
    );
    assert_eq!(
        t.alerts(),
        vec![(
            ot_hil_dtls::Direction::ServerToClient,
            ot_hil_dtls::AlertLevel::FATAL,
            AlertDescription::INTERNAL_ERROR
        )]
    );
}

/// An X.509 handshake with RFC 7627 switched on or off on each side; it must connect.
fn x509_pair_with_ems(client_ems: bool, server_ems: bool) -> Pair {
    let (mut c, mut s) = x509_configs(false);
    c.extended_master_secret = client_ems;
    s.extended_master_secret = server_ems;
    let mut p = Pair::new(c, s);
    p.pump();
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
    p
}

#[test]
fn extended_master_secret_only_when_both_sides_enable_it() {
    for (client_ems, server_ems) in [(true, true), (true, false), (false, true), (false, false)] {
        let mut p = x509_pair_with_ems(client_ems, server_ems);
        let both = client_ems && server_ems;
        assert_eq!(p.client.uses_extended_master_secret(), both);
        assert_eq!(p.server.uses_extended_master_secret(), both);
        let hellos = p.client.transcript().to_string();
        let answered = hellos
            .lines()
            .find(|l| l.contains("SERVER_HELLO "))
            .unwrap()
            .contains("EXTENDED_MASTER_SECRET");
        assert_eq!(answered, both, "{hellos}");
        exchange_data(&mut p);
    }
}

#[test]
fn extended_master_secret_changes_the_keys() {
    // Same randoms and ephemeral keys (seeded), so only the master secret derivation differs.
    let key_block = |ems: bool| x509_pair_with_ems(ems, ems).client.key_block().unwrap();
    assert_ne!(key_block(true), key_block(false));
}

/// mbedtls signs the ServerKeyExchange with the first of the client's ECDSA pairs whose hash
/// it lists, so a client listing SHA-512 first gets an ECDSA-SHA512 signature.
#[test]
fn server_signs_with_the_clients_first_shared_ecdsa_hash() {
    const ECDSA_SHA256: SignatureScheme = SignatureScheme::ECDSA_SHA256;
    const ECDSA_SHA384: SignatureScheme = SignatureScheme::ECDSA_SHA384;
    const ECDSA_SHA512: SignatureScheme = SignatureScheme::ECDSA_SHA512;
    for (client, server, signed) in [
        (
            vec![ECDSA_SHA512, ECDSA_SHA256],
            vec![ECDSA_SHA512, ECDSA_SHA256],
            ECDSA_SHA512,
        ),
        (
            vec![ECDSA_SHA256, ECDSA_SHA512],
            vec![ECDSA_SHA512, ECDSA_SHA256],
            ECDSA_SHA256,
        ),
        (
            vec![ECDSA_SHA512, ECDSA_SHA384],
            vec![ECDSA_SHA384],
            ECDSA_SHA384,
        ),
    ] {
        let (mut c, mut s) = x509_configs(false);
        c.signature_algorithms = client.clone();
        s.signature_algorithms = server.clone();
        let mut p = Pair::new(c, s);
        p.pump();
        assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
        let t = p.client.transcript().to_string();
        assert!(
            t.contains(&format!("signed {signed}")),
            "{client:?} {server:?}\n{t}"
        );
    }
}

#[test]
fn no_shared_ecdsa_hash_leaves_ecdhe_ecdsa_unusable() {
    let (mut c, mut s) = x509_configs(false);
    c.signature_algorithms = vec![SignatureScheme::ECDSA_SHA512];
    s.signature_algorithms = vec![SignatureScheme::ECDSA_SHA256];
    let mut p = Pair::new(c, s);
    p.pump();
    assert_last_failed_with(&p.server_events, AlertDescription::HANDSHAKE_FAILURE);
    assert!(
        format!("{:?}", p.server_events).contains("no suitable hash algorithm for ecdsa"),
        "{:?}",
        p.server_events
    );
}

#[test]
fn certificate_request_names_the_servers_cas_and_verify_hashes() {
    let (c, mut s) = x509_configs(true);
    // SHA-512 is left out of a CertificateRequest (mbedtls computes no SHA-512 handshake digest).
    s.signature_algorithms = vec![SignatureScheme::ECDSA_SHA512, SignatureScheme::ECDSA_SHA256];
    let mut p = Pair::new(c, s);
    p.pump();
    assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
    let t = p.client.transcript().to_string();
    assert!(
        t.contains("schemes=[ECDSA_SHA256] authorities=[CN=VendorCA,OU=YourOrgUnit,O=YourOrg,ST=YourState,C=ZY]"),
        "{t}"
    );
}

/// mbedtls 3.6 moved supported_groups ahead of signature_algorithms; the rest keeps 3.1's order.
#[test]
fn client_hello_extension_order_follows_the_mbedtls_layout() {
    for (layout, order) in [
        (
            HelloLayout::Mbedtls31,
            "ext=[SIGNATURE_ALGORITHMS,SUPPORTED_GROUPS,EC_POINT_FORMATS,EXTENDED_MASTER_SECRET]",
        ),
        (
            HelloLayout::Mbedtls36,
            "ext=[SUPPORTED_GROUPS,SIGNATURE_ALGORITHMS,EC_POINT_FORMATS,EXTENDED_MASTER_SECRET]",
        ),
    ] {
        let (mut c, s) = x509_configs(false);
        c.hello_layout = layout;
        c.extended_master_secret = true;
        let mut p = Pair::new(c, s);
        p.pump();
        assert_connected(&p, CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8);
        let t = p.client.transcript().to_string();
        assert!(t.lines().next().unwrap().contains(order), "{layout:?}\n{t}");
    }
}

/// One plaintext handshake record (epoch 0) carrying `body` as a `msg_type` message.
fn handshake_record(msg_type: ot_hil_dtls::HandshakeType, seq: u16, body: &[u8]) -> Vec<u8> {
    use ot_hil_dtls::codec::Codec;
    let hs = ot_hil_dtls::messages::encode_handshake(msg_type, seq, body);
    let mut rec = ot_hil_dtls::messages::RecordHeader {
        content_type: ot_hil_dtls::ContentType::HANDSHAKE,
        version: ot_hil_dtls::ProtocolVersion::DTLS1_2,
        epoch: 0,
        sequence: u64::from(seq),
        length: hs.len() as u16,
    }
    .get_encoding();
    rec.extend(hs);
    rec
}

fn events_of(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// mbedtls `ssl_parse_extended_ms_ext` on the client: compiled out, a ServerHello's
/// extended_master_secret is an unknown extension and ignored; compiled in, one with a body is
/// unsupported_extension.
#[test]
fn client_checks_an_extended_master_secret_answer_only_when_compiled_in() {
    use ot_hil_dtls::codec::Codec;
    use ot_hil_dtls::messages::{Extension, ServerHello};
    for (ems, body, failure) in [
        (false, vec![], None),
        (false, vec![0], None),
        (true, vec![0], Some(AlertDescription::UNSUPPORTED_EXTENSION)),
    ] {
        let (mut c, _) = x509_configs(false);
        c.extended_master_secret = ems;
        let now = std::time::Instant::now();
        let mut client =
            Connection::client_with_rng(Arc::new(c), now, SeededRng::boxed(3)).unwrap();
        assert!(client.poll_transmit().is_some(), "ClientHello");
        let sh = ServerHello {
            server_version: ot_hil_dtls::ProtocolVersion::DTLS1_2,
            random: [5; 32],
            session_id: Vec::new(),
            cipher_suite: CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
            compression_method: 0,
            extensions: vec![Extension {
                typ: ot_hil_dtls::ExtensionType::EXTENDED_MASTER_SECRET,
                data: body,
            }],
        };
        client.handle_datagram(
            now,
            &handshake_record(
                ot_hil_dtls::HandshakeType::SERVER_HELLO,
                0,
                &sh.get_encoding(),
            ),
        );
        let events = events_of(&mut client);
        match failure {
            Some(alert) => assert_last_failed_with(&events, alert),
            None => {
                assert!(events.is_empty(), "{events:?}");
                assert!(client.is_handshaking() && !client.uses_extended_master_secret());
            }
        }
    }
}

/// The same on the server, before any suite is chosen: a body is a decode_error when the
/// feature is compiled in, nothing when it is not.
#[test]
fn server_checks_extended_master_secret_and_encrypt_then_mac_only_when_compiled_in() {
    use ot_hil_dtls::codec::Codec;
    use ot_hil_dtls::messages::{ClientHello, Extension};
    for typ in [
        ot_hil_dtls::ExtensionType::EXTENDED_MASTER_SECRET,
        ot_hil_dtls::ExtensionType::ENCRYPT_THEN_MAC,
    ] {
        for compiled_in in [false, true] {
            let (_, mut s) = x509_configs(false);
            s.require_cookie = false;
            s.extended_master_secret = compiled_in;
            s.encrypt_then_mac = compiled_in;
            let now = std::time::Instant::now();
            let mut server =
                Connection::server_with_rng(Arc::new(s), now, b"peer", SeededRng::boxed(4))
                    .unwrap();
            let ch = ClientHello {
                client_version: ot_hil_dtls::ProtocolVersion::DTLS1_2,
                random: [7; 32],
                session_id: Vec::new(),
                cookie: Vec::new(),
                cipher_suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
                compression_methods: vec![0],
                extensions: vec![
                    Extension::signature_algorithms(&[SignatureScheme::ECDSA_SHA256]),
                    Extension::supported_groups(&[ot_hil_dtls::NamedGroup::SECP256R1]),
                    Extension { typ, data: vec![0] },
                ],
            };
            server.handle_datagram(
                now,
                &handshake_record(
                    ot_hil_dtls::HandshakeType::CLIENT_HELLO,
                    0,
                    &ch.get_encoding(),
                ),
            );
            let events = events_of(&mut server);
            if compiled_in {
                assert_last_failed_with(&events, AlertDescription::DECODE_ERROR);
            } else {
                assert!(events.is_empty(), "{typ}: {events:?}");
                assert_eq!(
                    server.suite(),
                    Some(CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8)
                );
            }
        }
    }
}

/// The first handshake message of `msg_type` in `datagram`s from one side: its body.
fn first_message(datagrams: &[Vec<u8>], msg_type: ot_hil_dtls::HandshakeType) -> Vec<u8> {
    use ot_hil_dtls::codec::{Codec, Reader};
    use ot_hil_dtls::messages::{HandshakeHeader, split_records};
    for d in datagrams {
        for rec in split_records(d).0 {
            let mut r = Reader::new(rec.fragment);
            if let Ok(h) = HandshakeHeader::read(&mut r)
                && h.msg_type == msg_type
            {
                return r.rest().to_vec();
            }
        }
    }
    panic!("no {msg_type} in {datagrams:02x?}");
}

/// As mbedtls 3.1's server: the HelloVerifyRequest carries the negotiated version (DTLS 1.2,
/// not the 1.0 RFC 6347 suggests) and the ServerHello a 32-byte random session id.
#[test]
fn hello_verify_request_version_and_server_hello_session_id_as_mbedtls() {
    use ot_hil_dtls::codec::Codec;
    use ot_hil_dtls::messages::{HelloVerifyRequest, ServerHello};
    let mut from_server = Vec::new();
    let mut p = Pair::new(psk_config(), psk_config());
    p.pump_with(|c2s, d| {
        if !c2s {
            from_server.push(d.clone());
        }
        Some(d)
    });
    assert_connected(&p, CipherSuite::PSK_WITH_AES_128_CCM_8);
    let hvr = HelloVerifyRequest::read_bytes(&first_message(
        &from_server,
        ot_hil_dtls::HandshakeType::HELLO_VERIFY_REQUEST,
    ))
    .unwrap();
    assert_eq!(hvr.server_version, ot_hil_dtls::ProtocolVersion::DTLS1_2);
    let sh = ServerHello::read_bytes(&first_message(
        &from_server,
        ot_hil_dtls::HandshakeType::SERVER_HELLO,
    ))
    .unwrap();
    assert_eq!(sh.session_id.len(), 32);
    assert_ne!(sh.session_id, [0; 32]);
}

/// mbedtls 3.1 signs a CertificateVerify with the suite's hash (SHA-256 here); a server that
/// keeps no SHA-256 handshake digest (its list has SHA-384 only) rejects it.
#[test]
fn certificate_verify_with_a_hash_the_server_does_not_list_is_illegal_parameter() {
    let (mut c, mut s) = x509_configs(true);
    c.signature_algorithms = vec![SignatureScheme::ECDSA_SHA256, SignatureScheme::ECDSA_SHA384];
    s.signature_algorithms = vec![SignatureScheme::ECDSA_SHA384];
    let mut p = Pair::new(c, s);
    p.pump();
    assert_last_failed_with(&p.server_events, AlertDescription::ILLEGAL_PARAMETER);
    let t = p.client.transcript().to_string();
    assert!(t.contains("signed ECDSA_SHA384"), "{t}");
    assert!(
        t.contains("CERTIFICATE_VERIFY seq=") && t.contains("scheme=ECDSA_SHA256"),
        "{t}"
    );
}

#[test]
fn warning_alerts_are_ignored_fatal_alerts_end_the_handshake() {
    let mut p = Pair::new(psk_config(), psk_config());
    let warning = [21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 1, 100];
    p.client.handle_datagram(p.now, &warning);
    assert!(p.client.is_handshaking());
    p.pump();
    assert_connected(&p, CipherSuite::PSK_WITH_AES_128_CCM_8);
    let mut q = Pair::new(psk_config(), psk_config());
    let fatal = [21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 40];
    q.client.handle_datagram(q.now, &fatal);
    assert!(q.client.poll_event().is_some_and(|e| e
        == Event::Failed {
            alert: Some(AlertDescription::HANDSHAKE_FAILURE),
            reason: "received FATAL alert HANDSHAKE_FAILURE".into()
        }));
    assert!(q.client.next_timeout().is_none());
}

#[test]
fn send_before_connected_and_after_close() {
    let mut p = Pair::new(psk_config(), psk_config());
    assert_eq!(p.client.send(b"x"), Err(ot_hil_dtls::Error::NotConnected));
    p.pump();
    p.client.close();
    assert_eq!(p.client.send(b"x"), Err(ot_hil_dtls::Error::Closed));
}

/// Figures for the memory model, printed for the record (`--nocapture`).
#[test]
fn memory_peaks_per_suite() {
    let mut rows = Vec::new();
    let mut run = |name: &str, c: Config, s: Config| {
        let mut p = Pair::new(c, s);
        p.pump();
        assert!(p.client.is_connected(), "{name}");
        rows.push((
            name.to_string(),
            p.client.peak_handshake_bytes(),
            p.server.peak_handshake_bytes(),
        ));
    };
    run("psk", psk_config(), psk_config());
    run(
        "ecjpake",
        ecjpake_config(b"J01NME"),
        ecjpake_config(b"J01NME"),
    );
    let (c, s) = x509_configs(false);
    run("ecdhe_ecdsa", c, s);
    let (c, s) = x509_configs(true);
    run("ecdhe_ecdsa_mutual", c, s);
    for (n, c, s) in &rows {
        eprintln!("peak handshake bytes {n}: client {c}, server {s}");
    }
    assert!(
        rows[0].1 < rows[1].1 && rows[1].1 < rows[2].1 && rows[2].2 < rows[3].2,
        "{rows:?}"
    );
}

/// Robustness: replay every recorded handshake datagram with random corruptions (bit flips,
/// truncation, byte insertion) into fresh connections at the matching point. Nothing may
/// panic, and every connection must end connected, failed, or still waiting with a timer.
#[test]
fn corrupted_datagrams_never_panic() {
    use ot_hil_dtls::rng::SeededRng;
    use rand_core::Rng;

    // (client, server, rounds): the EC suites cost much more per round in debug builds.
    let suites: Vec<(Config, Config, usize)> = vec![
        (psk_config(), psk_config(), 300),
        (ecjpake_config(b"J01NME"), ecjpake_config(b"J01NME"), 12),
        {
            let (c, s) = x509_configs(true);
            (c, s, 24)
        },
    ];
    let mut rng = SeededRng::new(42);
    for (c, s, rounds) in suites {
        // Record the clean exchange: (client_to_server, datagram) in order.
        let mut log = Vec::new();
        let mut p = Pair::new(c.clone(), s.clone());
        p.pump_with(|c2s, d| {
            log.push((c2s, d.clone()));
            Some(d)
        });
        for round in 0..rounds {
            let target = (rng.next_u32() as usize) % log.len();
            let mut p = Pair::new(c.clone(), s.clone());
            // Discard what the fresh client sent on its own; the log drives both sides.
            while p.client.poll_transmit().is_some() {}
            for (i, (c2s, d)) in log.iter().enumerate() {
                let mut d = d.clone();
                if i == target {
                    match round % 3 {
                        0 => {
                            let at = (rng.next_u32() as usize) % d.len();
                            d[at] ^= 1 << (rng.next_u32() % 8);
                        }
                        1 => d.truncate((rng.next_u32() as usize) % d.len()),
                        _ => {
                            let at = (rng.next_u32() as usize) % d.len();
                            d.insert(at, rng.next_u32() as u8);
                        }
                    }
                }
                if *c2s {
                    p.server.handle_datagram(p.now, &d);
                } else {
                    p.client.handle_datagram(p.now, &d);
                }
            }
            for conn in [&p.client, &p.server] {
                // A server that has not chosen a suite is waiting for a (valid) ClientHello:
                // the client's timer drives that phase, so it needs none.
                let waiting_for_hello =
                    conn.role() == ot_hil_dtls::Role::Server && conn.suite().is_none();
                assert!(
                    !conn.is_handshaking() || conn.next_timeout().is_some() || waiting_for_hello,
                    "{:?} handshaking without a timer would hang (round {round}, datagram {target})",
                    conn.role()
                );
            }
        }
    }
}
