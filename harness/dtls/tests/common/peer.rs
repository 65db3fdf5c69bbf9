//! Running a peer process (OpenSSL, mbedtls test programs) and driving a connection over
//! loopback UDP against it.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ot_hil_dtls::{Config, Connection, Event};

/// Whether the `openssl` program is there; says so (and that the caller skips) when it is not.
pub fn openssl_available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: `openssl` is not installed; install it to run the interop tests");
    }
    ok
}

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[derive(Default)]
struct Output {
    text: String,
    /// Number of the child's output streams (stdout, stderr) that reached end of file.
    closed: usize,
}

/// A running peer program; killed and reaped on drop.
pub struct Child {
    child: std::process::Child,
    output: Arc<(Mutex<Output>, Condvar)>,
}

impl Child {
    pub fn spawn(program: impl AsRef<OsStr>, args: &[String]) -> Child {
        let program = program.as_ref();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", program.display()));
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout is piped")),
            Box::new(child.stderr.take().expect("stderr is piped")),
        ];
        for mut stream in streams {
            let output = output.clone();
            // Raw chunks, not lines: prompts such as "Waiting for a remote connection ..."
            // end without a newline.
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let (lock, cvar) = &*output;
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    lock.lock().unwrap().text += &String::from_utf8_lossy(&buf[..n]);
                    cvar.notify_all();
                }
                lock.lock().unwrap().closed += 1;
                cvar.notify_all();
            });
        }
        Child { child, output }
    }

    /// Everything the program printed so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        self.output.0.lock().unwrap().text.clone()
    }

    /// Wait until the output contains `needle` (true), or `timeout` passes or the program
    /// closed its output (false).
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let (lock, cvar) = &*self.output;
        let guard = lock.lock().unwrap();
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |o| !o.text.contains(needle) && o.closed < 2)
            .unwrap();
        guard.text.contains(needle)
    }

    /// Wait for the program to exit by itself: both output streams closed, then reap it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let (lock, cvar) = &*self.output;
        let guard = lock.lock().unwrap();
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |o| o.closed < 2)
            .unwrap();
        let closed = guard.closed >= 2;
        drop(guard);
        if closed { self.child.wait().ok() } else { None }
    }

    pub fn write_stdin(&mut self, s: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(s.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drive `conn` over `sock` with `peer` until `done` holds (true; it gets the events so far) or
/// `limit` passes (false). Timers fire from `next_timeout`, so a lost datagram is retransmitted.
pub fn drive(
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
        // `done` may look at more than the events (the peer's output): check it again at least
        // every 50 ms even when no datagram comes.
        let wait = wake
            .saturating_duration_since(now)
            .clamp(Duration::from_millis(1), Duration::from_millis(50));
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
            // ICMP port unreachable from an earlier send (peer not yet bound), or a signal: retry.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => panic!("recv on loopback: {e}"),
        }
    }
}

/// A client connection from a fresh loopback socket to the peer listening on `port`.
pub fn connect_to(port: u16, config: Arc<Config>) -> (Connection, UdpSocket, SocketAddr) {
    let peer = SocketAddr::from(([127, 0, 0, 1], port));
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let conn = Connection::client(config, Instant::now()).unwrap();
    (conn, sock, peer)
}

/// Wait on `sock` for the peer's first datagram (its ClientHello) and answer it with a server
/// connection; the datagram's source is the peer from then on.
pub fn accept_first(
    sock: &UdpSocket,
    config: Arc<Config>,
    peer_process: &Child,
    timeout: Duration,
) -> (Connection, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(timeout)).unwrap();
    let (n, peer) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no ClientHello ({e}):\n{}", peer_process.output()));
    let now = Instant::now();
    let mut conn = Connection::server(config, now, peer.to_string().as_bytes()).unwrap();
    conn.handle_datagram(now, &buf[..n]);
    (conn, peer)
}

/// The handshake is over, either way: connected, failed or closed.
pub fn handshake_ended(ev: &[Event]) -> bool {
    ev.iter().any(|e| {
        matches!(
            e,
            Event::Connected { .. } | Event::Failed { .. } | Event::Closed
        )
    })
}

pub fn failed(ev: &[Event]) -> bool {
    ev.iter()
        .any(|e| matches!(e, Event::Failed { .. } | Event::Closed))
}

pub fn got_data(ev: &[Event], needle: &[u8]) -> bool {
    ev.iter().any(
        |e| matches!(e, Event::ApplicationData(d) if d.windows(needle.len()).any(|w| w == needle)),
    )
}
