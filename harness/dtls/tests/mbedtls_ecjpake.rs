//! EC J-PAKE interoperability with mbedtls 2.28's `ssl_server2` / `ssl_client2` over loopback UDP.
//!
//! mbedtls is the implementation OpenThread (and so every Thread commissioner and joiner) uses,
//! which makes it the reference peer for `TLS_ECJPAKE_WITH_AES_128_CCM_8`. No distribution
//! package enables EC J-PAKE, so `ci/mbedtls-peer.sh` builds the two programs; point
//! `OT_HIL_MBEDTLS_PROGRAMS` at the directory it prints. Without that variable every test here
//! prints a skip message and passes; with it set to a directory lacking the programs they fail.
//!
//! Each test starts its own mbedtls process on a free port and kills it when done, also on
//! failure (the [`Peer`] guard).

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ot_hil_dtls::{AlertDescription, CipherSuite, Config, Connection, Event};

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

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn ecjpake_config(password: &str) -> Arc<Config> {
    Arc::new(Config {
        suites: vec![CipherSuite::ECJPAKE_WITH_AES_128_CCM_8],
        ecjpake_password: Some(password.as_bytes().to_vec()),
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

#[derive(Default)]
struct Output {
    text: String,
    /// Number of the child's output streams (stdout, stderr) that reached end of file.
    closed: usize,
}

/// A running mbedtls program; killed and reaped on drop.
struct Peer {
    child: std::process::Child,
    output: Arc<(Mutex<Output>, Condvar)>,
}

impl Peer {
    fn spawn(program: PathBuf, args: &[String]) -> Peer {
        let mut child = Command::new(&program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", program.display()));
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout is piped")),
            Box::new(child.stderr.take().expect("stderr is piped")),
        ];
        for stream in streams {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut chunk = Vec::new();
                // Split on '.' as well as newlines: mbedtls prints progress ("Waiting for a
                // remote connection ...") without a line end.
                while reader.read_until(b'.', &mut chunk).unwrap_or(0) > 0 {
                    let (lock, cvar) = &*output;
                    lock.lock().unwrap().text += &String::from_utf8_lossy(&chunk);
                    cvar.notify_all();
                    chunk.clear();
                }
                let (lock, cvar) = &*output;
                lock.lock().unwrap().closed += 1;
                cvar.notify_all();
            });
        }
        Peer { child, output }
    }

    fn text(&self) -> String {
        self.output.0.lock().unwrap().text.clone()
    }

    /// Wait until the output contains `needle` (true) or `timeout` passes (false).
    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let (lock, cvar) = &*self.output;
        let guard = lock.lock().unwrap();
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |o| !o.text.contains(needle) && o.closed < 2)
            .unwrap();
        guard.text.contains(needle)
    }

    /// Wait for the program to exit by itself: both output streams closed, then reap it.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let (lock, cvar) = &*self.output;
        let guard = lock.lock().unwrap();
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |o| o.closed < 2)
            .unwrap();
        let closed = guard.closed >= 2;
        drop(guard);
        if closed { self.child.wait().ok() } else { None }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drive `conn` over `sock` with `peer` until `done` holds for the events so far (true) or
/// `limit` passes (false). Timers fire from `next_timeout`, so a lost datagram is retransmitted.
fn drive(
    conn: &mut Connection,
    sock: &UdpSocket,
    peer: SocketAddr,
    events: &mut Vec<Event>,
    limit: Duration,
    done: impl Fn(&[Event]) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(datagram) = conn.poll_transmit() {
            sock.send_to(&datagram, peer).expect("send on loopback");
        }
        while let Some(event) = conn.poll_event() {
            events.push(event);
        }
        if done(events) {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        let wake = conn.next_timeout().map_or(end, |t| t.min(end));
        let wait = wake
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        sock.set_read_timeout(Some(wait)).expect("set read timeout");
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == peer => conn.handle_datagram(Instant::now(), &buf[..n]),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                conn.handle_timeout(Instant::now())
            }
            // ICMP port unreachable from an earlier send (peer not yet bound): retry.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Err(e) => panic!("recv on loopback: {e}"),
        }
    }
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

fn start_server(dir: &Path, port: u16, password: &str) -> Peer {
    let mut args = common_args(port, password);
    args.push("exchanges=1".into());
    let server = Peer::spawn(dir.join("ssl_server2"), &args);
    assert!(
        server.wait_for("Waiting for a remote connection", LIMIT),
        "ssl_server2 did not start:\n{}",
        server.text()
    );
    server
}

fn start_client(dir: &Path, port: u16, password: &str) -> Peer {
    let mut args = common_args(port, password);
    args.push("ca_file=none".into());
    Peer::spawn(dir.join("ssl_client2"), &args)
}

#[test]
fn our_client_with_mbedtls_server() {
    let Some(dir) = programs() else { return };
    let port = free_port();
    let server = start_server(&dir, port, PASSWORD);
    let peer: SocketAddr = ([127, 0, 0, 1], port).into();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut conn = Connection::client(ecjpake_config(PASSWORD), Instant::now()).unwrap();
    let mut events = Vec::new();

    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        connected(e) || failed(e).is_some()
    });
    assert!(
        ok && connected(&events),
        "no handshake: {events:?}\nssl_server2:\n{}",
        server.text()
    );
    assert_eq!(conn.suite(), Some(CipherSuite::ECJPAKE_WITH_AES_128_CCM_8));

    conn.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let want = format!("Successful connection using: {SUITE_NAME}");
    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        received_text(e).contains(&want)
    });
    assert!(ok, "no answer: {events:?}\nssl_server2:\n{}", server.text());
    // The server printed the suite and our request (it logs what it reads).
    for needle in [
        format!("Ciphersuite is {SUITE_NAME}"),
        "GET / HTTP/1.0".to_string(),
    ] {
        assert!(
            server.wait_for(&needle, LIMIT),
            "ssl_server2 did not print {needle:?}:\n{}",
            server.text()
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
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let (n, peer) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no ClientHello ({e}):\n{}", client.text()));
    let now = Instant::now();
    let mut conn =
        Connection::server(ecjpake_config(PASSWORD), now, peer.to_string().as_bytes()).unwrap();
    conn.handle_datagram(now, &buf[..n]);
    let mut events = Vec::new();

    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        received_text(e).contains("\r\n\r\n") || failed(e).is_some()
    });
    assert!(
        ok && connected(&events),
        "no request: {events:?}\nssl_client2:\n{}",
        client.text()
    );
    assert!(received_text(&events).starts_with("GET / HTTP/1.0\r\n"));

    let reply = "HTTP/1.0 200 OK\r\n\r\not-hil EC J-PAKE server\r\n";
    conn.send(reply.as_bytes()).unwrap();
    // ssl_client2 reads the reply, sends close_notify and exits.
    let closed = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        e.iter().any(|e| matches!(e, Event::Closed))
    });
    let status = client.wait_exit(LIMIT);
    let log = client.text();
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
    let peer: SocketAddr = ([127, 0, 0, 1], port).into();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut conn = Connection::client(ecjpake_config(WRONG_PASSWORD), Instant::now()).unwrap();
    let mut events = Vec::new();

    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        connected(e) || failed(e).is_some()
    });
    assert!(
        ok,
        "no outcome: {events:?}\nssl_server2:\n{}",
        server.text()
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
        server.text()
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

    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let (n, peer) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no ClientHello ({e}):\n{}", client.text()));
    let now = Instant::now();
    let mut conn =
        Connection::server(ecjpake_config(PASSWORD), now, peer.to_string().as_bytes()).unwrap();
    conn.handle_datagram(now, &buf[..n]);
    let mut events = Vec::new();

    let ok = drive(&mut conn, &sock, peer, &mut events, LIMIT, |e| {
        connected(e) || failed(e).is_some()
    });
    let status = client.wait_exit(LIMIT);
    let log = client.text();
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
