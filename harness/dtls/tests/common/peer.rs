//! Running a peer process (OpenSSL, mbedtls test programs) and driving a connection over
//! loopback UDP against it.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ot_hil_dtls::{Connection, Event};

pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running OpenSSL process; killed and reaped on drop.
pub struct Child {
    child: std::process::Child,
    output: Arc<Mutex<String>>,
}

impl Child {
    pub fn spawn(program: impl AsRef<OsStr>, args: &[String]) -> Child {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
        ] {
            let out = output.clone();
            // Raw chunks, not lines: prompts such as "Waiting for a remote connection ..."
            // end without a newline.
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    out.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Child { child, output }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Wait until the output contains `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
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

/// Drive `conn` over `sock` until `done` holds for the events so far, or `limit` passes.
pub fn drive(
    conn: &mut Connection,
    sock: &UdpSocket,
    peer: SocketAddr,
    events: &mut Vec<Event>,
    limit: Duration,
    done: impl Fn(&[Event]) -> bool,
) {
    let end = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        while let Some(d) = conn.poll_transmit() {
            sock.send_to(&d, peer).unwrap();
        }
        while let Some(e) = conn.poll_event() {
            events.push(e);
        }
        if done(events) || Instant::now() >= end {
            return;
        }
        let now = Instant::now();
        let wait = conn
            .next_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(50));
        sock.set_read_timeout(Some(
            wait.clamp(Duration::from_millis(1), Duration::from_millis(50)),
        ))
        .unwrap();
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == peer => conn.handle_datagram(Instant::now(), &buf[..n]),
            Ok(_) => {}
            Err(_) => conn.handle_timeout(Instant::now()),
        }
    }
}

pub fn connected(ev: &[Event]) -> bool {
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
