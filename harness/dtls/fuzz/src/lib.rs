//! Checks shared by the fuzz targets. Each takes arbitrary bytes; a panic is a finding.
//!
//! Beyond "no panic", the oracles are:
//! * records and handshake fragments re-encode to exactly the bytes they were split from;
//! * a handshake body that parses re-encodes to a body that parses to the same value;
//! * an EC J-PAKE message accepted after edits to a known-good message carries the same keys
//!   and proofs (only leading zero bytes of `r` may differ: mbedtls reads `r` as an integer).

use std::sync::OnceLock;

use ot_hil_dtls::codec::Codec;
use ot_hil_dtls::ecjpake::{EcjpakeContext, KeyKp, Role, RoundOne, RoundTwo, test_vectors as tv};
use ot_hil_dtls::messages::{HandshakePayload, split_handshake, split_records};
use ot_hil_dtls::{CipherSuite, ContentType, Direction, HandshakeType, TranscriptBuilder};

/// Key exchange contexts the messages are tried against: `None`, then each suite.
pub const SUITES: [Option<CipherSuite>; 4] = [
    None,
    Some(CipherSuite::PSK_WITH_AES_128_CCM_8),
    Some(CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8),
    Some(CipherSuite::ECJPAKE_WITH_AES_128_CCM_8),
];

/// A datagram: split into records, re-encode, and parse every complete handshake message in it.
pub fn check_datagram(datagram: &[u8]) {
    let (records, tail_error) = split_records(datagram);
    let mut again = Vec::with_capacity(datagram.len());
    for record in &records {
        assert_eq!(usize::from(record.header.length), record.fragment.len());
        record.header.encode(&mut again);
        again.extend_from_slice(record.fragment);
    }
    assert_eq!(datagram.get(..again.len()), Some(&again[..]));
    if tail_error.is_none() {
        assert_eq!(again.len(), datagram.len());
    }
    for record in records {
        if record.header.content_type == ContentType::HANDSHAKE {
            check_handshake_record(record.fragment);
        }
    }
}

/// The plaintext of a handshake record: fragments, and each complete message's body.
pub fn check_handshake_record(plaintext: &[u8]) {
    let Ok(fragments) = split_handshake(plaintext) else {
        return;
    };
    let mut again = Vec::with_capacity(plaintext.len());
    for fragment in &fragments {
        assert!(
            u64::from(fragment.header.fragment_offset) + u64::from(fragment.header.fragment_length)
                <= u64::from(fragment.header.length)
        );
        fragment.header.encode(&mut again);
        again.extend_from_slice(fragment.body);
    }
    assert_eq!(again, plaintext);
    for fragment in fragments {
        let h = fragment.header;
        if h.fragment_offset == 0 && h.fragment_length == h.length {
            for suite in SUITES {
                check_handshake_body(h.msg_type, fragment.body, suite);
            }
        }
    }
}

/// One handshake body under one suite: parse, re-encode, re-parse.
pub fn check_handshake_body(msg_type: HandshakeType, body: &[u8], suite: Option<CipherSuite>) {
    let Ok(payload) = HandshakePayload::read(msg_type, body, suite) else {
        return;
    };
    assert_eq!(payload.msg_type(), msg_type);
    let encoded = payload.encode_body();
    let reparsed = HandshakePayload::read(msg_type, &encoded, suite)
        .unwrap_or_else(|e| panic!("own encoding of {msg_type} does not parse: {e}"));
    assert_eq!(reparsed, payload);
}

/// A capture: datagrams framed as `flags/len-high, len-low, bytes` (flag bit 7 = direction
/// server-to-client, 15-bit length, clipped to what is left), fed to a passive observer; the
/// transcript must then render.
pub fn check_transcript(capture: &[u8]) {
    let mut builder = TranscriptBuilder::new();
    let mut rest = capture;
    while let [head, low, tail @ ..] = rest {
        let direction = if head & 0x80 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let len = (usize::from(head & 0x7f) << 8 | usize::from(*low)).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        builder.observe(direction, datagram);
        rest = next;
    }
    let transcript = builder.finish();
    let _ = transcript.to_string();
    let _ = transcript.chosen_suite();
    let _ = transcript.alerts();
}

struct Contexts {
    /// Fixed keys, nothing read yet.
    client: EcjpakeContext,
    server: EcjpakeContext,
    /// Fixed keys, the reference round one of the peer read.
    client_ready: EcjpakeContext,
    server_ready: EcjpakeContext,
}

fn contexts() -> &'static Contexts {
    static CONTEXTS: OnceLock<Contexts> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let unhex = |s: &str| hex::decode(s).expect("vector is hex");
        let mut client = EcjpakeContext::new(Role::Client, tv::PASSWORD).expect("password");
        let mut server = EcjpakeContext::new(Role::Server, tv::PASSWORD).expect("password");
        client
            .set_round_one_private_keys(&unhex(tv::X1), &unhex(tv::X2))
            .expect("x1, x2");
        server
            .set_round_one_private_keys(&unhex(tv::X3), &unhex(tv::X4))
            .expect("x3, x4");
        let mut client_ready = client.clone();
        let mut server_ready = server.clone();
        client_ready
            .read_round_one(&unhex(tv::SRV_ONE))
            .expect("srv_one verifies");
        server_ready
            .read_round_one(&unhex(tv::CLI_ONE))
            .expect("cli_one verifies");
        Contexts {
            client,
            server,
            client_ready,
            server_ready,
        }
    })
}

/// Raw bytes as a round-one message, read by both roles; a structural parse re-emits exactly.
pub fn check_ecjpake_round_one(msg: &[u8]) {
    let c = contexts();
    let _ = c.client.clone().read_round_one(msg);
    let _ = c.server.clone().read_round_one(msg);
    if let Ok(parsed) = RoundOne::parse(msg) {
        let mut out = Vec::new();
        parsed.emit(&mut out);
        assert_eq!(out, msg);
        assert_eq!(parsed.buffer_len(), msg.len());
    }
}

/// Raw bytes as a round-two message, read by both roles; a structural parse re-emits exactly.
pub fn check_ecjpake_round_two(msg: &[u8]) {
    let c = contexts();
    let _ = c.client_ready.clone().read_round_two(msg);
    let _ = c.server_ready.clone().read_round_two(msg);
    for from in [Role::Client, Role::Server] {
        if let Ok(parsed) = RoundTwo::parse(msg, from) {
            let mut out = Vec::new();
            parsed.emit(&mut out);
            assert_eq!(out, msg);
        }
    }
}

/// Which known-good message `edits` are applied to.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    ClientRoundOne,
    ServerRoundOne,
    ServerRoundTwo,
    ClientRoundTwo,
}

/// Apply `edits` (4-byte ops: kind, position high, position low, value) to a reference
/// message and read the result; anything accepted must equal the reference up to `r` padding.
pub fn check_ecjpake_edits(target: Target, edits: &[u8]) {
    let c = contexts();
    let (hex_msg, mut reader) = match target {
        Target::ClientRoundOne => (tv::CLI_ONE, c.server.clone()),
        Target::ServerRoundOne => (tv::SRV_ONE, c.client.clone()),
        Target::ServerRoundTwo => (tv::SRV_TWO, c.client_ready.clone()),
        Target::ClientRoundTwo => (tv::CLI_TWO, c.server_ready.clone()),
    };
    let original = hex::decode(hex_msg).expect("vector is hex");
    let mut msg = original.clone();
    for op in edits.chunks_exact(4) {
        let (kind, pos, value) = (
            op[0],
            usize::from(u16::from_be_bytes([op[1], op[2]])),
            op[3],
        );
        match kind % 3 {
            0 if !msg.is_empty() => {
                let i = pos % msg.len();
                msg[i] ^= value;
            }
            1 => {
                let i = pos % (msg.len() + 1);
                msg.insert(i, value);
            }
            2 if !msg.is_empty() => {
                let i = pos % msg.len();
                msg.remove(i);
            }
            _ => {}
        }
    }
    let accepted = match target {
        Target::ClientRoundOne | Target::ServerRoundOne => reader.read_round_one(&msg),
        Target::ServerRoundTwo | Target::ClientRoundTwo => reader.read_round_two(&msg),
    };
    if msg == original {
        assert_eq!(accepted, Ok(()), "reference message rejected");
    }
    if accepted.is_err() {
        return;
    }
    let keys = |bytes: &[u8]| -> Vec<KeyKp> {
        match target {
            Target::ClientRoundOne | Target::ServerRoundOne => RoundOne::parse(bytes)
                .expect("accepted message parses")
                .keys
                .to_vec(),
            Target::ServerRoundTwo => {
                vec![RoundTwo::parse(bytes, Role::Server).expect("parses").key]
            }
            Target::ClientRoundTwo => {
                vec![RoundTwo::parse(bytes, Role::Client).expect("parses").key]
            }
        }
    };
    let strip = |mut k: KeyKp| {
        let first = k
            .zkp
            .r
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(k.zkp.r.len());
        k.zkp.r.drain(..first);
        k
    };
    let got: Vec<KeyKp> = keys(&msg).into_iter().map(strip).collect();
    let want: Vec<KeyKp> = keys(&original).into_iter().map(strip).collect();
    assert_eq!(got, want, "edited message accepted with different content");
}
