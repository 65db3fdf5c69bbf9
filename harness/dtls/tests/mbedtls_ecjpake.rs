//! EC J-PAKE interoperability with mbedtls 2.28's `ssl_server2` / `ssl_client2` over loopback UDP.
//!
//! mbedtls is the implementation OpenThread (and so every Thread commissioner and joiner) uses,
//! which makes it the reference peer for `TLS_ECJPAKE_WITH_AES_128_CCM_8`. No distribution
//! package enables EC J-PAKE, so `ci/mbedtls-peer.sh` builds the two programs; point
//! `OT_HIL_MBEDTLS_PROGRAMS` at the directory it prints. Without that variable every test here
//! prints a skip message and passes; with it set to a directory lacking the programs they fail.
//!
//! mbedtls' own ClientHello is also the oracle for the order of the engine's hello extensions.
//!
//! Each test starts its own mbedtls process on a free port and kills it when done, also on
//! failure (the [`Child`] guard).

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::peer::{Child, accept_first, connect_to, drive, free_port};
use ot_hil_dtls::transcript::{Body, Fields};
use ot_hil_dtls::{
    AlertDescription, CipherSuite, Config, Connection, Direction, Event, ExtensionType,
    TranscriptBuilder,
};

const PASSWORD: &str = "J01NME";
const WRONG_PASSWORD: &str = "J01NMF";
const SUITE_NAME: &str = "TLS-ECJPAKE-WITH-AES-128-CCM-8";
/// Upper bound for one handshake plus one exchange on loopback (normally well under a second).
const LIMIT: Duration = Duration::from_secs(20);

/// The directory with `ssl_server2` and `ssl_client2`, or `None` (with a message) to skip.
fn programs() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("OT_HIL_MBEDTLS_PROGRAMS") else {
        eprintln!(
            "SKIPPED: OT_HIL_MBEDTLS_PROGRAMS is not set; run `export OT_HIL_MBEDTLS_PROGRAMS=\"$(ci/mbedtls-peer.sh)\"` to enable the mbedtls EC J-PAKE interop tests"
        );
        return None;
    };
    let dir = PathBuf::from(dir);
    for program in ["ssl_server2", "ssl_client2"] {
        assert!(
            dir.join(program).is_file(),
            "OT_HIL_MBEDTLS_PROGRAMS={} has no {program}",
            dir.display()
        );
    }
    Some(dir)
}

/// EC J-PAKE with RFC 7627 and the encrypt_then_mac offer on, as in an NCS build; mbedtls'
/// programs take extended_master_secret by default.
fn ecjpake_config(password: &str) -> Arc<Config> {
    Arc::new(Config {
        suites: vec![CipherSuite::ECJPAKE_WITH_AES_128_CCM_8],
        ecjpake_password: Some(password.as_bytes().to_vec()),
        extended_master_secret: true,
        encrypt_then_mac: true,
        ..Config::default()
    })
}

/// Arguments common to both mbedtls programs: DTLS, EC J-PAKE only, no certificates.
fn common_args(port: u16, password: &str) -> Vec<String> {
    [
        "dtls=1".to_string(),
        "server_addr=127.0.0.1".to_string(),
        format!("server_port={port}"),
        format!("ecjpake_pw={password}"),
        format!("force_ciphersuite={SUITE_NAME}"),
        "crt_file=none".to_string(),
        "key_file=none".to_string(),
        "auth_mode=none".to_string(),
        // Short retransmission timers keep a failing case from hanging the suite.
        "hs_timeout=500-4000".to_string(),
    ]
    .into()
}

fn received_text(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ApplicationData(d) => Some(String::from_utf8_lossy(d).into_owned()),
            _ => None,
        })
        .collect()
}

fn connected(events: &[Event]) -> bool {
    events.iter().any(|e| matches!(e, Event::Connected { .. }))
}

fn failed(events: &[Event]) -> Option<&Event> {
    events.iter().find(|e| matches!(e, Event::Failed { .. }))
}

fn start_server(dir: &Path, port: u16, password: &str) -> Child {
    let mut args = common_args(port, password);
    args.push("exchanges=1".into());
    let server = Child::spawn(dir.join("ssl_server2"), &args);
    assert!(
        server.wait_for("Waiting for a remote connection", LIMIT),
        "ssl_server2 did not start:\n{}",
        server.output()
    );
    server
}

fn start_client(dir: &Path, port: u16, password: &str) -> Child {
    let mut args = common_args(port, password);
    args.push("ca_file=none".into());
    Child::spawn(dir.join("ssl_client2"), &args)
}

#[test]
fn our_client_with_mbedtls_server() {
    let Some(dir) = programs() else { return };
    let port = free_port();
    let server = start_server(&dir, port, PASSWORD);
    let (mut conn, sock, peer) = connect_to(port, ecjpake_config(PASSWORD));
    let mut events = Vec::new();

    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        connected(e) || failed(e).is_some()
    });
    assert!(
        ok && connected(&events),
        "no handshake: {events:?}\nssl_server2:\n{}",
        server.output()
    );
    assert_eq!(conn.suite(), Some(CipherSuite::ECJPAKE_WITH_AES_128_CCM_8));
    assert!(conn.uses_extended_master_secret());

    conn.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let want = format!("Successful connection using: {SUITE_NAME}");
    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        received_text(e).contains(&want)
    });
    assert!(
        ok,
        "no answer: {events:?}\nssl_server2:\n{}",
        server.output()
    );
    // The server printed the suite and our request (it logs what it reads).
    for needle in [
        format!("Ciphersuite is {SUITE_NAME}"),
        "GET / HTTP/1.0".to_string(),
    ] {
        assert!(
            server.wait_for(&needle, LIMIT),
            "ssl_server2 did not print {needle:?}:\n{}",
            server.output()
        );
    }
}

#[test]
fn mbedtls_client_with_our_server() {
    let Some(dir) = programs() else { return };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut client = start_client(&dir, port, PASSWORD);

    // The first ClientHello tells us who the peer is.
    let (mut conn, peer) = accept_first(&sock, ecjpake_config(PASSWORD), &client, LIMIT);
    let mut events = Vec::new();

    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        received_text(e).contains("\r\n\r\n") || failed(e).is_some()
    });
    assert!(
        ok && connected(&events),
        "no request: {events:?}\nssl_client2:\n{}",
        client.output()
    );
    assert!(received_text(&events).starts_with("GET / HTTP/1.0\r\n"));
    assert!(conn.uses_extended_master_secret());

    let reply = "HTTP/1.0 200 OK\r\n\r\not-hil EC J-PAKE server\r\n";
    conn.send(reply.as_bytes()).unwrap();
    // ssl_client2 reads the reply, sends close_notify and exits.
    let closed = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        e.iter().any(|e| matches!(e, Event::Closed))
    });
    let status = client.wait_exit(LIMIT);
    let log = client.output();
    assert!(closed, "no close_notify: {events:?}\nssl_client2:\n{log}");
    assert!(
        status.is_some_and(|s| s.success()),
        "ssl_client2 {status:?}:\n{log}"
    );
    assert!(
        log.contains(&format!("Ciphersuite is {SUITE_NAME}")),
        "{log}"
    );
    assert!(log.contains("ot-hil EC J-PAKE server"), "{log}");
}

#[test]
fn our_client_with_wrong_password_gets_bad_record_mac() {
    // mbedtls, waiting for Finished, answers a record that fails authentication with a fatal
    // bad_record_mac alert (ssl_msg.c, "wrong psk used") and gives up with INVALID_MAC.
    let Some(dir) = programs() else { return };
    let port = free_port();
    let server = start_server(&dir, port, PASSWORD);
    let (mut conn, sock, peer) = connect_to(port, ecjpake_config(WRONG_PASSWORD));
    let mut events = Vec::new();

    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        connected(e) || failed(e).is_some()
    });
    assert!(
        ok,
        "no outcome: {events:?}\nssl_server2:\n{}",
        server.output()
    );
    assert!(!connected(&events), "connected with a wrong password");
    match failed(&events) {
        Some(Event::Failed { alert, .. }) => {
            assert_eq!(*alert, Some(AlertDescription::BAD_RECORD_MAC), "{events:?}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(
        server.wait_for("-0x7180", LIMIT),
        "ssl_server2 did not report a MAC failure:\n{}",
        server.output()
    );
}

#[test]
fn mbedtls_client_with_wrong_password_gets_fatal_alert() {
    // What an mbedtls peer expects from a server whose premaster differs: a fatal alert in
    // answer to its Finished, reported as -0x7780 (fatal alert received), not a silent timeout.
    let Some(dir) = programs() else { return };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut client = start_client(&dir, port, WRONG_PASSWORD);

    let (mut conn, peer) = accept_first(&sock, ecjpake_config(PASSWORD), &client, LIMIT);
    let mut events = Vec::new();

    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        connected(e) || failed(e).is_some()
    });
    let status = client.wait_exit(LIMIT);
    let log = client.output();
    assert!(!connected(&events), "connected with a wrong password");
    assert!(
        ok,
        "our server reported no failure: {events:?}\nssl_client2:\n{log}"
    );
    assert!(
        matches!(
            failed(&events),
            Some(Event::Failed {
                alert: Some(AlertDescription::BAD_RECORD_MAC),
                ..
            })
        ),
        "{events:?}"
    );
    assert!(
        status.is_some_and(|s| !s.success()),
        "ssl_client2 {status:?}:\n{log}"
    );
    assert!(log.contains("-0x7780"), "ssl_client2:\n{log}");
}

/// Offered suites and extension types of the ClientHello in `datagram`, as an observer reads them.
fn client_hello_shape(datagram: &[u8]) -> (Vec<CipherSuite>, Vec<ExtensionType>) {
    let mut observer = TranscriptBuilder::new();
    observer.observe(Direction::ClientToServer, datagram);
    let t = observer.finish();
    for e in &t.entries {
        if let Body::Handshake { messages } = &e.body {
            for m in messages {
                if let Some(Fields::ClientHello {
                    offered_suites,
                    extensions,
                    ..
                }) = &m.fields
                {
                    return (offered_suites.clone(), extensions.clone());
                }
            }
        }
    }
    panic!("no ClientHello in {datagram:02x?}");
}

/// mbedtls' own client is the oracle for how the engine lays out its ClientHello: the
/// renegotiation SCSV last among the suites, and the extensions both send in the same order.
/// (mbedtls 2.28's `ssl_client2` also sends session_ticket and, from its defaults, more
/// signature pairs and curves; the order of the shared extensions is what mbedtls 3.1 keeps.)
#[test]
fn our_client_hello_is_laid_out_as_mbedtls_lays_out_its_own() {
    let Some(dir) = programs() else { return };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let port = sock.local_addr().unwrap().port();
    let client = start_client(&dir, port, PASSWORD);
    let mut buf = vec![0u8; 65536];
    let (n, _) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no ClientHello ({e}):\n{}", client.output()));
    let (theirs_suites, theirs_exts) = client_hello_shape(&buf[..n]);

    let mut ours = Connection::client(ecjpake_config(PASSWORD), std::time::Instant::now()).unwrap();
    let (ours_suites, ours_exts) = client_hello_shape(&ours.poll_transmit().unwrap());

    assert_eq!(
        theirs_suites.last(),
        Some(&CipherSuite::EMPTY_RENEGOTIATION_INFO_SCSV)
    );
    assert_eq!(
        ours_suites, theirs_suites,
        "both offer the one suite, then the SCSV"
    );
    let shared: Vec<ExtensionType> = theirs_exts
        .iter()
        .copied()
        .filter(|e| ours_exts.contains(e))
        .collect();
    assert_eq!(
        ours_exts, shared,
        "ours {ours_exts:?}, mbedtls {theirs_exts:?}"
    );
    for needed in [
        ExtensionType::SIGNATURE_ALGORITHMS,
        ExtensionType::SUPPORTED_GROUPS,
        ExtensionType::ECJPAKE_KKPP,
        ExtensionType::ENCRYPT_THEN_MAC,
        ExtensionType::EXTENDED_MASTER_SECRET,
    ] {
        assert!(
            shared.contains(&needed),
            "{needed} missing: {theirs_exts:?}"
        );
    }
}
