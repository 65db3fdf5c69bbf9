//! CoAP Secure between `ot-hil-vdk` processes on one air hub, over their PTY consoles, for the
//! variants of the coaps-cli-report: PSK on a PSK-enabled build, X.509 on stock NCS (fails with
//! the server's illegal_parameter alert) and with the vendor's workaround (connects), and
//! `coaps connect` without credentials.

mod vdk_common;

use std::path::Path;
use std::time::Duration;

use ot_hil_air::Hub;
use vdk_common::{Dk, short_tempdir, variant};

/// Console expectations here span a handshake on a loaded machine.
const WAIT: Duration = Duration::from_secs(15);

/// One board and how its OpenThread commands are typed (`ot ` on NCS, nothing upstream).
struct Node {
    dk: Dk,
    prefix: &'static str,
}

impl Node {
    fn spawn(dir: &Path, name: &str, hub: &Path, variant_name: &str) -> Node {
        let firmware = variant(&format!("{variant_name}.toml"));
        let mut dk = Dk::spawn(dir, name, Some(hub), Some(&firmware));
        let (prefix, prompt) = if variant_name == "upstream" {
            ("", "> ")
        } else {
            ("ot ", "uart:~$ ")
        };
        dk.expect(prompt, WAIT);
        Node { dk, prefix }
    }

    fn expect(&mut self, needle: &str) -> String {
        self.dk.expect(needle, WAIT)
    }

    /// Run an OpenThread command; returns (lines after the echo, result line).
    fn run(&mut self, cmd: &str) -> (Vec<String>, String) {
        self.dk.run(&format!("{}{cmd}", self.prefix))
    }

    fn ok(&mut self, cmd: &str) -> Vec<String> {
        self.dk.command(&format!("{}{cmd}", self.prefix))
    }
}

/// Server and client on one Thread network (the report's set-up steps); returns their ML-EIDs.
fn network(server: &mut Node, client: &mut Node) -> (String, String) {
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
        let state = format!("{}state", dk.prefix);
        dk.dk.wait_role(&state, roles, Duration::from_secs(20));
    }
    (
        server.ok("ipaddr mleid").join(""),
        client.ok("ipaddr mleid").join(""),
    )
}

/// Both boards configure `creds`, the server serves `test-resource` with "hello", the client
/// connects.
fn serve_and_connect(server: &mut Node, client: &mut Node, creds: &str, server_addr: &str) {
    for dk in [&mut *server, &mut *client] {
        dk.ok(creds);
        dk.ok("coaps start");
    }
    server.ok("coaps resource test-resource");
    server.ok("coaps set hello");
    client.ok(&format!("coaps connect {server_addr}"));
}

fn pair(variant_name: &str) -> (tempfile::TempDir, Hub, Node, Node) {
    let dir = short_tempdir();
    let hub = Hub::start(dir.path()).expect("hub");
    let s = Node::spawn(dir.path(), "s", hub.socket_path(), variant_name);
    let c = Node::spawn(dir.path(), "c", hub.socket_path(), variant_name);
    (dir, hub, s, c)
}

fn get_round_trip(server: &mut Node, client: &mut Node, server_addr: &str, client_addr: &str) {
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
    let t = c.dk.control("transcripts");
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
    let t = c.dk.control("transcripts");
    assert!(t.starts_with("ok ["), "{t}");
    let json: serde_json::Value = serde_json::from_str(&t[3..]).expect("json");
    let text = json.to_string();
    assert!(text.contains("ECJPAKE_KKPP"), "{text}");
    assert!(text.contains("ILLEGAL_PARAMETER"), "{text}");
}

#[test]
fn connect_without_credentials() {
    let dir = short_tempdir();
    let hub = Hub::start(dir.path()).expect("hub");
    for (i, v) in ["ncs-v2.1.0", "ncs-v2.2.0"].into_iter().enumerate() {
        let mut dk = Node::spawn(dir.path(), &format!("n{i}"), hub.socket_path(), v);
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
    let mut up = Node::spawn(dir.path(), "up", hub.socket_path(), "upstream");
    up.ok("coaps start");
    up.dk
        .write(b"coaps connect fdde:ad00:beef:0:0:ff:fe00:fc00\r");
    up.expect("assert failed at src/core/meshcop/secure_transport.cpp:270\n");
    up.expect("> ");
    // Rebooted: CoAPS is closed again.
    assert_eq!(up.ok("coaps isclosed"), vec!["yes"]);
}
