//! Regenerate `seeds/`: datagrams of complete PSK and EC J-PAKE handshakes between two engine
//! instances (fixed RNG seeds, so the files are stable) and mbedtls's EC J-PAKE reference
//! messages. `cargo run --example make_seeds` from this directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use ot_hil_dtls::ecjpake::test_vectors as tv;
use ot_hil_dtls::{CipherSuite, Config, Connection, Psk, SeededRng};

fn write(path: &Path, bytes: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create seed dir");
    }
    std::fs::write(path, bytes).expect("write seed");
}

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let configs = [
        (
            "psk",
            Config {
                suites: vec![CipherSuite::PSK_WITH_AES_128_CCM_8],
                psk: Some(Psk {
                    key: b"123".to_vec(),
                    identity: b"pskid".to_vec(),
                }),
                psk_hint: Some(b"hint".to_vec()),
                ..Config::default()
            },
        ),
        (
            "ecjpake",
            Config {
                suites: vec![CipherSuite::ECJPAKE_WITH_AES_128_CCM_8],
                ecjpake_password: Some(b"J01NME".to_vec()),
                ..Config::default()
            },
        ),
    ];
    for (name, config) in configs {
        let config = Arc::new(config);
        let now = Instant::now();
        let mut client =
            Connection::client_with_rng(config.clone(), now, SeededRng::boxed(1)).expect("client");
        let mut server =
            Connection::server_with_rng(config, now, b"peer", SeededRng::boxed(2)).expect("server");
        // (server-to-client, datagram)
        let mut capture: Vec<(bool, Vec<u8>)> = Vec::new();
        loop {
            let mut moved = false;
            while let Some(d) = client.poll_transmit() {
                server.handle_datagram(now, &d);
                capture.push((false, d));
                moved = true;
            }
            while let Some(d) = server.poll_transmit() {
                client.handle_datagram(now, &d);
                capture.push((true, d));
                moved = true;
            }
            if !moved {
                break;
            }
        }
        assert!(client.is_connected(), "{name}: handshake did not complete");
        // Transcript framing: flags/len-high, len-low, bytes (see check_transcript).
        let mut framed = Vec::new();
        for (i, (to_client, datagram)) in capture.iter().enumerate() {
            let len = u16::try_from(datagram.len()).expect("datagram fits") & 0x7fff;
            let [high, low] = len.to_be_bytes();
            framed.push(high | if *to_client { 0x80 } else { 0 });
            framed.push(low);
            framed.extend_from_slice(datagram);
            write(&seeds.join("record").join(format!("{name}-{i}")), datagram);
        }
        write(&seeds.join("transcript").join(name), &framed);
    }
    // ecjpake target: mode byte 0 = round one, 1 = round two.
    for (file, mode, hex_msg) in [
        ("cli_one", 0u8, tv::CLI_ONE),
        ("srv_one", 0, tv::SRV_ONE),
        ("srv_two", 1, tv::SRV_TWO),
        ("cli_two", 1, tv::CLI_TWO),
    ] {
        let mut bytes = vec![mode];
        bytes.extend(hex::decode(hex_msg).expect("vector is hex"));
        write(&seeds.join("ecjpake").join(file), &bytes);
    }
}
