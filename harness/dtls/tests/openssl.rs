//! Interoperability with OpenSSL's `s_server`/`s_client` over loopback UDP.
//!
//! Each test starts its own OpenSSL process on a free port and kills it when done (also on
//! failure, through [`Child`]'s guard). Tests are skipped, with a message, only when no
//! `openssl` binary is installed.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::peer::*;
use common::*;
use ot_hil_dtls::cert::load_pem_roots;
use ot_hil_dtls::{
    AlertDescription, CipherSuite, Config, Connection, Event, SignatureScheme, TimeCheck,
};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn psk_server_args(port: u16, psk_hex: &str) -> Vec<String> {
    let mut a = s(&["s_server", "-dtls1_2", "-accept"]);
    a.push(format!("127.0.0.1:{port}"));
    a.extend(s(&[
        "-nocert",
        "-psk",
        psk_hex,
        "-psk_hint",
        "pskid",
        "-psk_identity",
        "pskid",
        "-cipher",
        "PSK-AES128-CCM8",
        "-naccept",
        "1",
    ]));
    a
}

fn ecdhe_server_args(port: u16) -> Vec<String> {
    let mut a = s(&["s_server", "-dtls1_2", "-accept"]);
    a.push(format!("127.0.0.1:{port}"));
    a.extend(s(&[
        "-cert",
        &format!("{DATA}/localhost.pem"),
        "-key",
        &format!("{DATA}/localhost.key"),
    ]));
    a.extend(s(&[
        "-cipher",
        "ECDHE-ECDSA-AES128-CCM8",
        "-groups",
        "P-256",
        "-naccept",
        "1",
    ]));
    a
}

/// How long a failure path waits for the OpenSSL peer to print its verdict and exit.
const PEER_EXIT: Duration = Duration::from_secs(5);

fn localhost_client() -> Config {
    Config {
        suites: vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8],
        trusted_roots: load_pem_roots(&read("localhost.pem")).unwrap(),
        verify_peer: true,
        server_name: Some("localhost".into()),
        time_check: TimeCheck::Now,
        ..Config::default()
    }
}

/// After the handshake, data both ways: `ours` goes out and must show in OpenSSL's output, then
/// `theirs` is typed into OpenSSL and must arrive.
fn exchange_lines(
    conn: &mut Connection,
    sock: &UdpSocket,
    peer: SocketAddr,
    events: &mut Vec<Event>,
    openssl: &mut Child,
    ours: &str,
    theirs: &str,
) {
    conn.send(format!("{ours}\n").as_bytes()).unwrap();
    // Keep serving the connection (a late retransmitted flight needs an answer) until OpenSSL
    // printed the line.
    let shown = drive(conn, sock, peer, events, Duration::from_secs(5), |_| {
        openssl.output().contains(ours)
    });
    assert!(shown, "openssl: {}", openssl.output());
    openssl.write_stdin(&format!("{theirs}\n"));
    drive(conn, sock, peer, events, Duration::from_secs(5), |e| {
        got_data(e, theirs.as_bytes())
    });
    assert!(
        got_data(events, theirs.as_bytes()),
        "{events:?}\nopenssl: {}",
        openssl.output()
    );
}

/// Our client against `s_server`: handshake, then data both ways. Returns our events.
fn client_vs_s_server(
    cfg: Config,
    server_args: Vec<String>,
    expect_connect: bool,
) -> (Vec<Event>, String) {
    client_vs_s_server_then(cfg, server_args, expect_connect, |_| {})
}

/// [`client_vs_s_server`], with `connected` called on our connection right after the handshake.
fn client_vs_s_server_then(
    cfg: Config,
    server_args: Vec<String>,
    expect_connect: bool,
    connected: impl FnOnce(&Connection),
) -> (Vec<Event>, String) {
    let mut server = Child::spawn("openssl", &server_args);
    assert!(
        server.wait_for("ACCEPT", Duration::from_secs(5)),
        "s_server did not start: {}",
        server.output()
    );
    let port: u16 = server_args[3].rsplit(':').next().unwrap().parse().unwrap();
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
    if !expect_connect {
        drive(
            &mut conn,
            &sock,
            peer,
            &mut events,
            Duration::from_secs(10),
            failed,
        );
        // After an alert either way OpenSSL reports it and, with -naccept 1, exits; after a
        // silent timeout it is still waiting for us and has nothing to report.
        if matches!(events.last(), Some(Event::Failed { alert: Some(_), .. })) {
            server.wait_exit(PEER_EXIT);
        }
        return (events, server.output());
    }
    assert!(
        conn.is_connected(),
        "not connected: {events:?}\nopenssl: {}",
        server.output()
    );
    connected(&conn);
    exchange_lines(
        &mut conn,
        &sock,
        peer,
        &mut events,
        &mut server,
        "hello from ot-hil",
        "hello from openssl",
    );
    conn.close();
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_millis(10),
        |_| false,
    );
    (events, server.output())
}

/// `s_client` against our server: handshake, then data both ways.
fn s_client_vs_server(
    cfg: Config,
    client_args: &[&str],
    expect_connect: bool,
) -> (Vec<Event>, String) {
    let port = free_port();
    let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let mut args = s(&["s_client", "-dtls1_2", "-connect"]);
    args.push(format!("127.0.0.1:{port}"));
    args.extend(s(client_args));
    let mut client = Child::spawn("openssl", &args);
    let (mut conn, peer) = accept_first(&sock, Arc::new(cfg), &client, Duration::from_secs(5));
    let mut events = Vec::new();
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_secs(10),
        handshake_ended,
    );
    if !expect_connect {
        // s_client reports the alert and exits after a failed handshake.
        client.wait_exit(PEER_EXIT);
        return (events, client.output());
    }
    assert!(
        conn.is_connected(),
        "not connected: {events:?}\nopenssl: {}",
        client.output()
    );
    exchange_lines(
        &mut conn,
        &sock,
        peer,
        &mut events,
        &mut client,
        "hello from ot-hil server",
        "hello from s_client",
    );
    (events, client.output())
}

/// `s_client` verifying our X.509 server against the vendor CA, with the report's suite and
/// curve plus `extra` options; the handshake must connect. Returns OpenSSL's output.
fn s_client_verifying_our_certificate(server: Config, extra: &[&str]) -> String {
    let ca = format!("{DATA}/ca.pem");
    let mut args = vec![
        "-CAfile",
        &ca,
        "-verify_return_error",
        "-cipher",
        "ECDHE-ECDSA-AES128-CCM8",
        "-groups",
        "P-256",
    ];
    args.extend_from_slice(extra);
    let (events, out) = s_client_vs_server(server, &args, true);
    assert!(
        events.contains(&Event::Connected {
            suite: CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
        }),
        "{events:?}\nopenssl: {out}"
    );
    out
}

#[test]
fn psk_client_vs_openssl_server() {
    if !openssl_available() {
        return;
    }
    let (events, _) =
        client_vs_s_server(psk_config(), psk_server_args(free_port(), "313233"), true);
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::PSK_WITH_AES_128_CCM_8
    }));
}

#[test]
fn psk_openssl_client_vs_server() {
    if !openssl_available() {
        return;
    }
    let (events, _) = s_client_vs_server(
        psk_config(),
        &[
            "-psk",
            "313233",
            "-psk_identity",
            "pskid",
            "-cipher",
            "PSK-AES128-CCM8",
        ],
        true,
    );
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::PSK_WITH_AES_128_CCM_8
    }));
}

#[test]
fn ecdhe_ecdsa_client_vs_openssl_server() {
    if !openssl_available() {
        return;
    }
    let (events, _) = client_vs_s_server(localhost_client(), ecdhe_server_args(free_port()), true);
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
    }));
}

/// OpenSSL offers and takes RFC 7627 by default: a handshake that completes (both Finished
/// messages verified) shows our session-hash master secret matches OpenSSL's. Both sides
/// authenticate, so the session hash covers the client's Certificate and not its
/// CertificateVerify, which follows the ClientKeyExchange.
#[test]
fn extended_master_secret_with_openssl_server() {
    if !openssl_available() {
        return;
    }
    let cfg = Config {
        extended_master_secret: true,
        certificate: Some(certified("v1leaf.pem", "v1leaf.key")),
        ..localhost_client()
    };
    let mut args = ecdhe_server_args(free_port());
    args.extend(s(&["-Verify", "1", "-CAfile", &format!("{DATA}/ca.pem")]));
    let mut used = false;
    let (_, out) =
        client_vs_s_server_then(cfg, args, true, |c| used = c.uses_extended_master_secret());
    assert!(used, "s_server did not take extended_master_secret");
    assert!(
        out.contains("PXC3.E75-100A"),
        "s_server saw no client certificate: {out}"
    );
}

#[test]
fn extended_master_secret_with_openssl_client() {
    if !openssl_available() {
        return;
    }
    let (_, mut server) = x509_configs(true);
    server.extended_master_secret = true;
    let (cert, key) = (format!("{DATA}/v1leaf.pem"), format!("{DATA}/v1leaf.key"));
    let out = s_client_verifying_our_certificate(server, &["-cert", &cert, "-key", &key]);
    assert!(out.contains("Extended master secret: yes"), "{out}");
}

/// ECDSA with SHA-512, as an NCS build with SHA-512 lists it first: OpenSSL verifies our
/// signature and we verify OpenSSL's.
#[test]
fn ecdsa_sha512_server_key_exchange_both_ways_with_openssl() {
    if !openssl_available() {
        return;
    }
    let cfg = Config {
        signature_algorithms: vec![SignatureScheme::ECDSA_SHA512],
        ..localhost_client()
    };
    let (events, _) = client_vs_s_server(cfg, ecdhe_server_args(free_port()), true);
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
    }));

    let (_, mut server) = x509_configs(false);
    server.signature_algorithms =
        vec![SignatureScheme::ECDSA_SHA512, SignatureScheme::ECDSA_SHA256];
    let out = s_client_verifying_our_certificate(server, &["-sigalgs", "ECDSA+SHA512"]);
    assert!(out.contains("Peer signing digest: SHA512"), "{out}");
}

#[test]
fn ecdhe_ecdsa_openssl_client_vs_server_v1_certificate() {
    if !openssl_available() {
        return;
    }
    let (_, server) = x509_configs(false);
    let out = s_client_verifying_our_certificate(server, &[]);
    assert!(out.contains("PXC3.E75-100A"), "{out}");
}

#[test]
fn ecdhe_ecdsa_mutual_auth_with_openssl_client() {
    if !openssl_available() {
        return;
    }
    let (_, server) = x509_configs(true);
    let (ca, cert, key) = (
        format!("{DATA}/ca.pem"),
        format!("{DATA}/v1leaf.pem"),
        format!("{DATA}/v1leaf.key"),
    );
    let (events, _) = s_client_vs_server(
        server,
        &[
            "-CAfile",
            &ca,
            "-cert",
            &cert,
            "-key",
            &key,
            "-cipher",
            "ECDHE-ECDSA-AES128-CCM8",
            "-groups",
            "P-256",
        ],
        true,
    );
    assert!(events.contains(&Event::Connected {
        suite: CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
    }));
}

#[test]
fn untrusted_server_certificate_is_unknown_ca() {
    if !openssl_available() {
        return;
    }
    let cfg = Config {
        trusted_roots: load_pem_roots(&read("otherca.pem")).unwrap(),
        ..localhost_client()
    };
    let (events, out) = client_vs_s_server(cfg, ecdhe_server_args(free_port()), false);
    assert_last_failed_with(&events, AlertDescription::UNKNOWN_CA);
    assert!(out.contains("unknown ca"), "openssl saw: {out}");
}

#[test]
fn wrong_server_name_is_bad_certificate() {
    if !openssl_available() {
        return;
    }
    let cfg = Config {
        server_name: Some("wrong.example".into()),
        ..localhost_client()
    };
    let (events, out) = client_vs_s_server(cfg, ecdhe_server_args(free_port()), false);
    assert_last_failed_with(&events, AlertDescription::BAD_CERTIFICATE);
    assert!(out.contains("bad certificate"), "openssl saw: {out}");
}

#[test]
fn openssl_client_rejecting_our_certificate_sends_unknown_ca() {
    if !openssl_available() {
        return;
    }
    let (_, server) = x509_configs(false);
    let other = format!("{DATA}/otherca.pem");
    let (events, _) = s_client_vs_server(
        server,
        &[
            "-CAfile",
            &other,
            "-verify_return_error",
            "-cipher",
            "ECDHE-ECDSA-AES128-CCM8",
            "-groups",
            "P-256",
        ],
        false,
    );
    assert_last_failed_with(&events, AlertDescription::UNKNOWN_CA);
}

/// With a wrong PSK our Finished fails OpenSSL's record authentication. OpenSSL silently drops
/// such records in DTLS (RFC 6347 §4.1.2.7), so our client's handshake ends by retransmission
/// timeout, with no alert.
#[test]
fn wrong_psk_client_times_out_without_alert() {
    if !openssl_available() {
        return;
    }
    let cfg = Config {
        retransmit_min: Duration::from_millis(100),
        retransmit_max: Duration::from_millis(400),
        ..psk_config()
    };
    let (events, _) = client_vs_s_server(cfg, psk_server_args(free_port(), "343536"), false);
    assert!(
        matches!(events.last(), Some(Event::Failed { alert: None, .. })),
        "{events:?}"
    );
}

/// `s_client` with a wrong PSK: its Finished fails our record authentication and we answer
/// bad_record_mac, as mbedtls does; OpenSSL reports the alert.
#[test]
fn wrong_psk_openssl_client_gets_bad_record_mac() {
    if !openssl_available() {
        return;
    }
    let (events, out) = s_client_vs_server(
        psk_config(),
        &[
            "-psk",
            "343536",
            "-psk_identity",
            "pskid",
            "-cipher",
            "PSK-AES128-CCM8",
        ],
        false,
    );
    assert_last_failed_with(&events, AlertDescription::BAD_RECORD_MAC);
    assert!(out.contains("bad record mac"), "openssl saw: {out}");
}

/// Tampered and replayed records sent to OpenSSL are dropped; the connection carries on.
#[test]
fn bad_mac_and_replay_towards_openssl() {
    if !openssl_available() {
        return;
    }
    let port = free_port();
    let mut server = Child::spawn("openssl", &psk_server_args(port, "313233"));
    assert!(server.wait_for("ACCEPT", Duration::from_secs(5)));
    let (mut conn, sock, peer) = connect_to(port, Arc::new(psk_config()));
    let mut events = Vec::new();
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_secs(10),
        handshake_ended,
    );
    assert!(conn.is_connected());
    conn.send(b"tampered-1\n").unwrap();
    let mut bad = conn.poll_transmit().unwrap();
    let i = bad.len() - 2;
    bad[i] ^= 0x40;
    sock.send_to(&bad, peer).unwrap();
    conn.send(b"replayed-2\n").unwrap();
    let good = conn.poll_transmit().unwrap();
    sock.send_to(&good, peer).unwrap();
    sock.send_to(&good, peer).unwrap();
    conn.send(b"final-3\n").unwrap();
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_millis(50),
        |_| false,
    );
    assert!(
        server.wait_for("final-3", Duration::from_secs(5)),
        "{}",
        server.output()
    );
    let out = server.output();
    assert!(!out.contains("tampered-1"), "{out}");
    assert_eq!(out.matches("replayed-2").count(), 1, "{out}");
    // And OpenSSL's own tampered record towards us is dropped too.
    server.write_stdin("ok\n");
    drive(
        &mut conn,
        &sock,
        peer,
        &mut events,
        Duration::from_secs(5),
        |e| got_data(e, b"ok"),
    );
    assert!(conn.is_connected());
}
