//! CoAP Secure between `ot-hil-vdk` processes on one air hub, over their PTY consoles, for the
//! variants of the coaps-cli-report: PSK on a PSK-enabled build, X.509 on stock NCS (fails with
//! the server's illegal_parameter alert) and with the vendor's workaround (connects), and
//! `coaps connect` without credentials.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ot_hil_air::Hub;
use serialport::TTYPort;

fn variant(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../variants")
        .join(format!("{name}.toml"))
        .canonicalize()
        .expect("variant path")
}

/// One board: console text with escape sequences and `\r` removed.
struct Dk {
    child: Child,
    port: TTYPort,
    control: PathBuf,
    escape: u8,
    text: String,
    prefix: &'static str,
}

impl Dk {
    fn spawn(dir: &Path, name: &str, hub: &Path, variant_name: &str) -> Dk {
        let link = dir.join(format!("{name}.pty"));
        let control = dir.join(format!("{name}.ctl"));
        let child = Command::new(env!("CARGO_BIN_EXE_ot-hil-vdk"))
            .arg("--pty-link")
            .arg(&link)
            .arg("--control")
            .arg(&control)
            .arg("--air")
            .arg(hub)
            .arg("--firmware")
            .arg(variant(variant_name))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn vdk");
        // Nothing to subscribe to for the link's creation: poll with a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(link.exists() && control.exists()) {
            assert!(Instant::now() < deadline, "vdk {name} did not start");
            std::thread::sleep(Duration::from_millis(2));
        }
        let port = serialport::new(link.to_string_lossy(), 115_200)
            .timeout(Duration::from_millis(20))
            .open_native()
            .expect("open pty");
        let prefix = if variant_name == "upstream" {
            ""
        } else {
            "ot "
        };
        let mut dk = Dk {
            child,
            port,
            control,
            escape: 0,
            text: String::new(),
            prefix,
        };
        dk.expect(if prefix.is_empty() { "> " } else { "uart:~$ " });
        dk
    }

    fn read_some(&mut self) {
        let mut buf = [0u8; 4096];
        match self.port.read(&mut buf) {
            Ok(n) => {
                for &b in &buf[..n] {
                    match (self.escape, b) {
                        (0, 0x1b) => self.escape = 1,
                        (0, b'\r') => {}
                        (0, b) => self.text.push(char::from(b)),
                        (1, b'[') => self.escape = 2,
                        (1, _) => self.escape = 0,
                        (_, b) if b.is_ascii_alphabetic() => self.escape = 0,
                        _ => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("console read failed: {e}"),
        }
    }

    /// Wait until the console shows `needle`; consume the text up to it.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(pos) = self.text.find(needle) {
                let rest = self.text.split_off(pos + needle.len());
                return std::mem::replace(&mut self.text, rest);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?}; console: {:?}",
                self.text
            );
            self.read_some();
        }
    }

    /// Run an OpenThread command; returns (lines after the echo, result line).
    fn run(&mut self, cmd: &str) -> (Vec<String>, String) {
        let line = format!("{}{cmd}", self.prefix);
        self.port
            .write_all(format!("{line}\r").as_bytes())
            .expect("write");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<&str> = self.text.split('\n').collect();
            if let Some(i) = lines
                .iter()
                .position(|l| *l == "Done" || l.starts_with("Error "))
            {
                let result = lines[i].to_string();
                let echo = lines[..i].iter().rposition(|l| l.ends_with(&line));
                let out = lines[echo.map_or(0, |e| e + 1)..i]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let consumed: usize = lines[..=i].iter().map(|l| l.len() + 1).sum();
                self.text = self.text.get(consumed..).unwrap_or_default().to_string();
                return (out, result);
            }
            assert!(
                Instant::now() < deadline,
                "no result for {line:?}: {:?}",
                self.text
            );
            self.read_some();
        }
    }

    fn ok(&mut self, cmd: &str) -> Vec<String> {
        let (out, result) = self.run(cmd);
        assert_eq!(result, "Done", "{cmd}: {out:?}");
        out
    }

    fn control(&self, request: &str) -> String {
        let mut s = UnixStream::connect(&self.control).expect("control socket");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }
}

impl Drop for Dk {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vdk")
        .tempdir_in("/tmp")
        .unwrap()
}

/// Server and client on one Thread network (the report's set-up steps); returns their ML-EIDs.
fn network(server: &mut Dk, client: &mut Dk) -> (String, String) {
    for dk in [&mut *server, &mut *client] {
        for cmd in [
            "channel 15",
            "panid 0x1234",
            "networkkey 00112233445566778899aabbccddeeff",
            "ifconfig up",
        ] {
            dk.ok(cmd);
        }
    }
    for (dk, roles) in [
        (&mut *server, &["leader"][..]),
        (&mut *client, &["child", "router"][..]),
    ] {
        dk.ok("thread start");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = dk.ok("state").join("");
            if roles.contains(&state.as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "state {state}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    (
        server.ok("ipaddr mleid").join(""),
        client.ok("ipaddr mleid").join(""),
    )
}

/// Both boards configure `creds`, the server serves `test-resource` with "hello", the client
/// connects.
fn serve_and_connect(server: &mut Dk, client: &mut Dk, creds: &str, server_addr: &str) {
    for dk in [&mut *server, &mut *client] {
        dk.ok(creds);
        dk.ok("coaps start");
    }
    server.ok("coaps resource test-resource");
    server.ok("coaps set hello");
    client.ok(&format!("coaps connect {server_addr}"));
}

fn pair(variant_name: &str) -> (tempfile::TempDir, Hub, Dk, Dk) {
    let dir = tempdir();
    let hub = Hub::start(dir.path()).expect("hub");
    let s = Dk::spawn(dir.path(), "s", hub.socket_path(), variant_name);
    let c = Dk::spawn(dir.path(), "c", hub.socket_path(), variant_name);
    (dir, hub, s, c)
}

fn get_round_trip(server: &mut Dk, client: &mut Dk, server_addr: &str, client_addr: &str) {
    client.expect("coaps connected\n");
    client.ok("coaps get test-resource");
    server.expect(&format!("coaps request from {client_addr} GET\n"));
    server.expect("coaps response sent\n");
    client.expect(&format!(
        "coaps response from {server_addr} with payload: 68656c6c6f\n"
    ));
}

#[test]
fn psk_connect_and_get_on_the_psk_variant() {
    let (_dir, _hub, mut s, mut c) = pair("ncs-v2.2.0-psk");
    let (sa, ca) = network(&mut s, &mut c);
    serve_and_connect(&mut s, &mut c, "coaps psk 123 pskid", &sa);
    get_round_trip(&mut s, &mut c, &sa, &ca);
}

#[test]
fn x509_connect_and_get_with_the_workaround() {
    let (_dir, _hub, mut s, mut c) = pair("ncs-v2.2.0-workaround");
    let (sa, ca) = network(&mut s, &mut c);
    serve_and_connect(&mut s, &mut c, "coaps x509", &sa);
    get_round_trip(&mut s, &mut c, &sa, &ca);
    let t = c.control("transcripts");
    assert!(t.starts_with("ok [") && !t.contains('\n'), "{t}");
    assert!(t.contains("ECDHE_ECDSA_WITH_AES_128_CCM_8"), "{t}");
}

#[test]
fn x509_on_stock_ncs_disconnects_with_illegal_parameter() {
    let (_dir, _hub, mut s, mut c) = pair("ncs-v2.2.0");
    let (sa, _) = network(&mut s, &mut c);
    serve_and_connect(&mut s, &mut c, "coaps x509", &sa);
    let before = c.expect("coaps disconnected\n");
    assert!(!before.contains("coaps connected"), "{before:?}");
    // The board's own transcript: its ClientHello carried extension 0x0100 and the server's
    // fatal illegal_parameter alert came back.
    let t = c.control("transcripts");
    assert!(t.starts_with("ok ["), "{t}");
    let json: serde_json::Value = serde_json::from_str(&t[3..]).expect("json");
    let text = json.to_string();
    assert!(text.contains("ECJPAKE_KKPP"), "{text}");
    assert!(text.contains("ILLEGAL_PARAMETER"), "{text}");
}

#[test]
fn connect_without_credentials() {
    let dir = tempdir();
    let hub = Hub::start(dir.path()).expect("hub");
    for (i, v) in ["ncs-v2.1.0", "ncs-v2.2.0"].into_iter().enumerate() {
        let mut dk = Dk::spawn(dir.path(), &format!("n{i}"), hub.socket_path(), v);
        dk.ok("coaps start");
        let (out, result) = dk.run("coaps connect fdde:ad00:beef:0:0:ff:fe00:fc00");
        assert_eq!(
            (out, result.as_str()),
            (vec![], "Error 7: InvalidArgs"),
            "{v}"
        );
        // Stock NCS has no `coaps psk`.
        assert_eq!(dk.run("coaps psk 123 pskid").1, "Error 35: InvalidCommand");
    }
    // OpenThread with SecureTransport asserts and the node resets.
    let mut up = Dk::spawn(dir.path(), "up", hub.socket_path(), "upstream");
    up.ok("coaps start");
    up.port
        .write_all(b"coaps connect fdde:ad00:beef:0:0:ff:fe00:fc00\r")
        .unwrap();
    up.expect("assert failed at src/core/meshcop/secure_transport.cpp:270\n");
    up.expect("> ");
    // Rebooted: CoAPS is closed again.
    assert_eq!(up.ok("coaps isclosed"), vec!["yes"]);
}
