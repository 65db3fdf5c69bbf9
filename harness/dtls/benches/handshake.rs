//! Handshake cost per suite: two engines in memory, and our client against `openssl s_server`
//! on loopback (skipped when openssl is not installed).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::peer::{Child, free_port, openssl_available};
use common::{DATA, ecjpake_config, psk_config, read, x509_configs};
use criterion::{Criterion, criterion_group, criterion_main};
use ot_hil_dtls::cert::load_pem_roots;
use ot_hil_dtls::{CipherSuite, Config, Connection, Event, SeededRng};

/// One complete in-memory handshake (cookie exchange included).
fn handshake(client: &Arc<Config>, server: &Arc<Config>, seed: u64) {
    let now = Instant::now();
    let mut c = Connection::client_with_rng(client.clone(), now, SeededRng::boxed(seed)).unwrap();
    let mut s =
        Connection::server_with_rng(server.clone(), now, b"peer", SeededRng::boxed(seed + 1))
            .unwrap();
    for _ in 0..20 {
        let mut moved = false;
        while let Some(d) = c.poll_transmit() {
            s.handle_datagram(now, &d);
            moved = true;
        }
        while let Some(d) = s.poll_transmit() {
            c.handle_datagram(now, &d);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(c.is_connected() && s.is_connected());
    black_box(c.key_block());
}

fn in_memory(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("in_memory_handshake");
    g.sample_size(20);
    let p = Arc::new(psk_config());
    g.bench_function("psk", |b| b.iter(|| handshake(&p, &p, 1)));
    let (c, s) = x509_configs(false);
    let (c, s) = (Arc::new(c), Arc::new(s));
    g.bench_function("ecdhe_ecdsa", |b| b.iter(|| handshake(&c, &s, 1)));
    let j = Arc::new(ecjpake_config(b"J01NME"));
    g.bench_function("ecjpake", |b| b.iter(|| handshake(&j, &j, 1)));
    g.finish();
}

fn openssl_loopback(cr: &mut Criterion) {
    if !openssl_available() {
        return;
    }
    let addr = format!("127.0.0.1:{}", free_port());
    let server = Child::spawn(
        "openssl",
        &[
            "s_server",
            "-dtls1_2",
            "-accept",
            &addr,
            "-quiet",
            "-cert",
            &format!("{DATA}/localhost.pem"),
            "-key",
            &format!("{DATA}/localhost.key"),
            "-cipher",
            "ECDHE-ECDSA-AES128-CCM8:PSK-AES128-CCM8",
            "-groups",
            "P-256",
            "-psk",
            "313233",
            "-psk_identity",
            "pskid",
        ]
        .map(String::from),
    );
    // s_server binds before it reads stdin; give it a moment by probing with a real handshake.
    let roots = load_pem_roots(&read("localhost.pem")).unwrap();
    let ecdhe = Arc::new(Config {
        suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
        trusted_roots: roots,
        server_name: Some("localhost".into()),
        ..Config::default()
    });
    let psk_cfg = Arc::new(psk_config());
    let connect = |cfg: &Arc<Config>| -> bool {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(&addr).unwrap();
        let mut conn = Connection::client(cfg.clone(), Instant::now()).unwrap();
        let mut buf = [0u8; 4096];
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            while let Some(d) = conn.poll_transmit() {
                let _ = sock.send(&d);
            }
            match conn.poll_event() {
                Some(Event::Connected { .. }) => {
                    conn.close();
                    while let Some(d) = conn.poll_transmit() {
                        let _ = sock.send(&d);
                    }
                    return true;
                }
                Some(Event::Failed { .. }) => return false,
                _ => {}
            }
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            match sock.recv(&mut buf) {
                Ok(n) => conn.handle_datagram(Instant::now(), &buf[..n]),
                Err(_) => conn.handle_timeout(Instant::now()),
            }
        }
        false
    };
    let ready = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        connect(&psk_cfg)
    });
    if !ready {
        eprintln!("SKIPPED: s_server did not answer");
        return;
    }
    let mut g = cr.benchmark_group("openssl_loopback_handshake");
    g.sample_size(10);
    g.bench_function("psk", |b| b.iter(|| assert!(connect(&psk_cfg))));
    g.bench_function("ecdhe_ecdsa", |b| b.iter(|| assert!(connect(&ecdhe))));
    g.finish();
    drop(server);
}

criterion_group!(benches, in_memory, openssl_loopback);
criterion_main!(benches);
