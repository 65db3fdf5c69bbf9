//! PSK and ECDHE-ECDSA interoperability with mbedtls 2.28's `ssl_server2`/`ssl_client2`, the
//! stack under OpenThread's CoAPS, including OpenThread's CLI setup: a v1 certificate
//! (`CN=PXC3.E75-100A`) issued by `CN=VendorCA` and mutual verification. EC J-PAKE against the
//! same programs is in `mbedtls_ecjpake.rs`. Skipped, with a message, unless
//! `OT_HIL_MBEDTLS_PROGRAMS` names the directory `ci/mbedtls-peer.sh` prints.

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::peer::*;
use common::*;
use ot_hil_dtls::{CipherSuite, Config, Connection, Event};

fn programs() -> Option<PathBuf> {
    match std::env::var_os("OT_HIL_MBEDTLS_PROGRAMS") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("SKIPPED: OT_HIL_MBEDTLS_PROGRAMS is not set (see ci/mbedtls-peer.sh)");
            None
        }
    }
}

fn args(port: u16, extra: &[String]) -> Vec<String> {
    let mut a: Vec<String> = ["dtls=1", "server_addr=127.0.0.1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(format!("server_port={port}"));
    a.extend(extra.iter().cloned());
    a
}

fn psk_args() -> Vec<String> {
    [
        "psk=313233",
        "psk_identity=pskid",
        "force_ciphersuite=TLS-PSK-WITH-AES-128-CCM-8",
    ]
    .iter()
    .chain(&[
        "crt_file=none",
        "key_file=none",
        "ca_file=none",
        "auth_mode=none",
    ])
    .map(|s| s.to_string())
    .collect()
}

/// OpenThread's `coaps x509` with peer verification: v1 leaf, VendorCA, mutual auth.
fn x509_args(client: bool) -> Vec<String> {
    let mut a = vec![
        "force_ciphersuite=TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8".into(),
        format!("crt_file={DATA}/v1leaf.pem"),
        format!("key_file={DATA}/v1leaf.key"),
        format!("ca_file={DATA}/ca.pem"),
        "auth_mode=required".into(),
    ];
    if client {
        // ssl_client2 checks the server's name (default "localhost").
        a.push("server_name=PXC3.E75-100A".into());
    }
    a
}

fn client_vs_ssl_server2(dir: PathBuf, cfg: Config, extra: Vec<String>) -> Vec<Event> {
    let port = free_port();
    let mut a = args(port, &extra);
    a.push("exchanges=1".into());
    let server = Child::spawn(dir.join("ssl_server2"), &a);
    assert!(
        server.wait_for("Waiting for a remote connection", Duration::from_secs(5)),
        "{}",
        server.output()
    );
    let (mut conn, sock, peer) = connect_to(port, Arc::new(cfg));
    let mut events = Vec::new();
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_secs(10),
        handshake_ended,
    );
    assert!(
        conn.is_connected(),
        "{events:?}\nmbedtls: {}",
        server.output()
    );
    conn.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_secs(5),
        |e| got_data(e, b"HTTP/1.0 200 OK"),
    );
    assert!(
        got_data(&events, b"HTTP/1.0 200 OK"),
        "{events:?}\nmbedtls: {}",
        server.output()
    );
    assert!(
        server.wait_for("GET / HTTP/1.0", Duration::from_secs(5)),
        "{}",
        server.output()
    );
    events
}

fn ssl_client2_vs_server(
    dir: PathBuf,
    cfg: Config,
    extra: Vec<String>,
) -> (Vec<Event>, Connection) {
    let port = free_port();
    let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let client = Child::spawn(dir.join("ssl_client2"), &args(port, &extra));
    let (mut conn, peer) = accept_first(&sock, Arc::new(cfg), &client, Duration::from_secs(5));
    let mut events = Vec::new();
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_secs(10),
        |e| got_data(e, b"GET /") || failed(e),
    );
    assert!(
        got_data(&events, b"GET /"),
        "{events:?}\nmbedtls: {}",
        client.output()
    );
    conn.send(b"HTTP/1.0 200 OK\r\n\r\nhello from ot-hil\r\n")
        .unwrap();
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_millis(100),
        |_| false,
    );
    assert!(
        client.wait_for("hello from ot-hil", Duration::from_secs(5)),
        "{}",
        client.output()
    );
    (events, conn)
}

#[test]
fn psk_client_vs_mbedtls_server() {
    let Some(dir) = programs() else { return };
    let events = client_vs_ssl_server2(dir, psk_config(), psk_args());
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::PSK_WITH_AES_128_CCM_8
    }));
}

#[test]
fn mbedtls_client_vs_psk_server() {
    let Some(dir) = programs() else { return };
    let (events, _) = ssl_client2_vs_server(dir, psk_config(), psk_args());
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::PSK_WITH_AES_128_CCM_8
    }));
}

#[test]
fn x509_mutual_client_vs_mbedtls_server() {
    let Some(dir) = programs() else { return };
    let (client, _) = x509_configs(true);
    let events = client_vs_ssl_server2(dir, client, x509_args(false));
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
    }));
}

#[test]
fn mbedtls_client_vs_x509_mutual_server() {
    let Some(dir) = programs() else { return };
    let (_, server) = x509_configs(true);
    let (events, conn) = ssl_client2_vs_server(dir, server, x509_args(true));
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
    }));
    assert_eq!(
        conn.peer_certificates()[0].common_name.as_deref(),
        Some("PXC3.E75-100A")
    );
}
