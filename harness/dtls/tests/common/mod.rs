//! Shared helpers: credentials from tests/data and an in-memory link between two connections.
#![allow(dead_code)]

pub mod peer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ot_hil_dtls::cert::load_pem_roots;
use ot_hil_dtls::{
    AlertDescription, CertifiedKey, CipherSuite, Config, Connection, Event, Psk, SeededRng,
    TimeCheck,
};

pub const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

pub fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DATA}/{name}")).unwrap()
}

pub fn certified(cert: &str, key: &str) -> Arc<CertifiedKey> {
    Arc::new(CertifiedKey::from_pem(&read(cert), &read(key)).unwrap())
}

pub fn psk_config() -> Config {
    Config {
        suites: vec![CipherSuite::PSK_WITH_AES_128_CCM_8],
        psk: Some(Psk {
            key: b"123".to_vec(),
            identity: b"pskid".to_vec(),
        }),
        ..Config::default()
    }
}

pub fn ecjpake_config(pw: &[u8]) -> Config {
    Config {
        suites: vec![CipherSuite::ECJPAKE_WITH_AES_128_CCM_8],
        ecjpake_password: Some(pw.to_vec()),
        ..Config::default()
    }
}

/// Server with the v1 `PXC3.E75-100A` certificate issued by VendorCA; client trusting VendorCA.
pub fn x509_configs(mutual: bool) -> (Config, Config) {
    let roots = load_pem_roots(&read("ca.pem")).unwrap();
    let server = Config {
        suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
        certificate: Some(certified("v1leaf.pem", "v1leaf.key")),
        trusted_roots: roots.clone(),
        verify_peer: mutual,
        time_check: TimeCheck::Now,
        ..Config::default()
    };
    let client = Config {
        suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
        certificate: Some(certified("v1leaf.pem", "v1leaf.key")),
        trusted_roots: roots,
        verify_peer: true,
        server_name: Some("PXC3.E75-100A".into()),
        ..Config::default()
    };
    (client, server)
}

/// The last event is a failure with a fatal `alert` (sent or received).
pub fn assert_last_failed_with(events: &[Event], alert: AlertDescription) {
    assert!(
        matches!(events.last(), Some(Event::Failed { alert: Some(a), .. }) if *a == alert),
        "expected a failure with {alert}: {events:?}"
    );
}

pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
}

impl Pair {
    pub fn new(client: Config, server: Config) -> Pair {
        let now = Instant::now();
        Pair {
            client: Connection::client_with_rng(Arc::new(client), now, SeededRng::boxed(1))
                .unwrap(),
            server: Connection::server_with_rng(
                Arc::new(server),
                now,
                b"127.0.0.1:5684",
                SeededRng::boxed(2),
            )
            .unwrap(),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Move datagrams both ways until nothing is left, applying `filter` to each
    /// (client-to-server = true); returns the number of datagrams moved.
    pub fn pump_with(&mut self, mut filter: impl FnMut(bool, Vec<u8>) -> Option<Vec<u8>>) -> usize {
        let mut moved = 0;
        for _ in 0..100 {
            let mut any = false;
            while let Some(d) = self.client.poll_transmit() {
                any = true;
                moved += 1;
                if let Some(d) = filter(true, d) {
                    self.server.handle_datagram(self.now, &d);
                }
            }
            while let Some(d) = self.server.poll_transmit() {
                any = true;
                moved += 1;
                if let Some(d) = filter(false, d) {
                    self.client.handle_datagram(self.now, &d);
                }
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !any {
                break;
            }
        }
        moved
    }

    pub fn pump(&mut self) -> usize {
        self.pump_with(|_, d| Some(d))
    }

    /// Advance time to the earliest timer and fire it on both sides.
    pub fn tick(&mut self) -> bool {
        let next = [self.client.next_timeout(), self.server.next_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) => {
                self.now = t.max(self.now) + Duration::from_millis(1);
                self.client.handle_timeout(self.now);
                self.server.handle_timeout(self.now);
                true
            }
            None => false,
        }
    }
}
