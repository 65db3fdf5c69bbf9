//! Transcript snapshots: the human-readable rendering is stable across runs (no randoms,
//! cookies, keys or times in it), so it can be reviewed as a snapshot.

mod common;

use common::*;
use ot_hil_dtls::{Direction, TranscriptBuilder};

fn passive(mut p: Pair) -> (String, String) {
    let mut observer = TranscriptBuilder::new();
    let mut observe = |c2s, d: Vec<u8>| {
        observer.observe(
            if c2s {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            },
            &d,
        );
        Some(d)
    };
    p.pump_with(&mut observe);
    p.client.send(b"GET /hello").unwrap();
    p.pump_with(&mut observe);
    (
        observer.finish().to_string(),
        p.client.transcript().to_string(),
    )
}

#[test]
fn psk_transcripts() {
    let (air, engine) = passive(Pair::new(psk_config(), psk_config()));
    insta::assert_snapshot!("psk_passive", air);
    insta::assert_snapshot!("psk_client_engine", engine);
}

#[test]
fn ecdhe_ecdsa_mutual_transcript() {
    let (c, s) = x509_configs(true);
    let (air, _) = passive(Pair::new(c, s));
    insta::assert_snapshot!("ecdhe_ecdsa_mutual_passive", air);
}

#[test]
fn ecjpake_transcript() {
    let (air, _) = passive(Pair::new(
        ecjpake_config(b"J01NME"),
        ecjpake_config(b"J01NME"),
    ));
    insta::assert_snapshot!("ecjpake_passive", air);
}

#[test]
fn transcript_json_has_no_secrets() {
    let mut p = Pair::new(ecjpake_config(b"J01NME"), ecjpake_config(b"J01NME"));
    p.pump();
    let json = serde_json::to_string(p.server.transcript()).unwrap();
    // Entries name sizes and types only: no randoms, cookies, points or keys as byte arrays.
    assert!(!json.contains("random"), "{json}");
    let byte_array = json
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'[' && w[1].is_ascii_digit());
    assert!(!byte_array, "{json}");
    assert!(
        json.contains("\"chosen_suite\":\"ECJPAKE_WITH_AES_128_CCM_8\""),
        "{json}"
    );
}
