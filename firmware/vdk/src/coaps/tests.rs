use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ot_hil_dtls::{
    CipherSuite, Connection, EcjpakeBackend, Event, HelloLayout, SignatureScheme, SuitePreference,
};
use ot_hil_wire::coap::RequestType;

use super::app::{MAX_TRANSCRIPTS, Session};
use super::*;
use crate::firmware::Manifest;
use crate::firmware::{Kconfig, Profile};
use crate::ot_error::OtError;
use std::path::Path;

fn build(variant: &str) -> CoapsBuild {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../variants")
        .join(format!("{variant}.toml"));
    let m = Manifest::load(&path).unwrap();
    assert!(
        m.kconfig.warnings().is_empty(),
        "{:?}",
        m.kconfig.warnings()
    );
    CoapsBuild::from_kconfig(m.profile, &m.kconfig)
}

/// A UDP socket that records what is sent.
#[derive(Default)]
struct Queue {
    open: bool,
    sent: Vec<(SocketAddrV6, Vec<u8>)>,
}

impl Udp for Queue {
    fn open(&mut self, _port: u16) -> Result<(), OtError> {
        self.open = true;
        Ok(())
    }
    fn close(&mut self, _port: u16) {
        self.open = false;
    }
    fn send(
        &mut self,
        _now: Instant,
        _src_port: u16,
        dst: SocketAddrV6,
        payload: &[u8],
    ) -> Result<(), OtError> {
        self.sent.push((dst, payload.to_vec()));
        Ok(())
    }
}

fn addr(last: u16) -> SocketAddrV6 {
    SocketAddrV6::new(
        Ipv6Addr::new(0xfdde, 0xad00, 0xbeef, 0, 1, 2, 3, last),
        COAPS_PORT,
        0,
        0,
    )
}

/// Two boards: index 0 = server (addr 1), 1 = client (addr 2).
struct Pair {
    apps: [CoapsApp; 2],
    udp: [Queue; 2],
    lines: [Vec<String>; 2],
    now: Instant,
}

impl Pair {
    fn new(b: &CoapsBuild) -> Pair {
        Pair {
            apps: [CoapsApp::new(b.clone()), CoapsApp::new(b.clone())],
            udp: [Queue::default(), Queue::default()],
            lines: [Vec::new(), Vec::new()],
            now: Instant::now(),
        }
    }

    fn run(&mut self, node: usize, line: &str) -> CoapsResult {
        let args: Vec<&str> = line.split_whitespace().collect();
        let r = self.apps[node].execute(&args, &mut self.udp[node], self.now);
        self.pump();
        r
    }

    /// Deliver datagrams until quiet; then let timers run up to `secs` seconds.
    fn pump(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            for from in 0..2 {
                let to = 1 - from;
                let src = addr(from as u16 + 1);
                for (dst, d) in std::mem::take(&mut self.udp[from].sent) {
                    moved = true;
                    if dst.ip() == addr(to as u16 + 1).ip() && self.udp[to].open {
                        let l = self.apps[to].handle_datagram(src, &d, &mut self.udp[to], self.now);
                        self.lines[to].extend(l);
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        loop {
            let next = self.apps.iter().filter_map(CoapsApp::next_deadline).min();
            match next {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    for i in 0..2 {
                        let l = self.apps[i].poll(&mut self.udp[i], self.now);
                        self.lines[i].extend(l);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }
}

fn done() -> CoapsResult {
    CoapsResult::Done(Vec::new())
}

#[test]
fn kconfig_feeds_the_build() {
    let stock = build("ncs-v2.2.0");
    assert!(!stock.psk && stock.ecdhe_ecdsa && stock.ecjpake && stock.ecjpake_alt);
    assert_eq!(stock.heap_size, Some(10240));
    assert_eq!(stock.ecjpake_backend(), EcjpakeBackend::UncheckedAlt);
    assert_eq!(stock.no_credentials, NoCredentials::InvalidArgs);
    assert_eq!(build("ncs-v2.1.0"), stock);
    let wa = build("ncs-v2.2.0-workaround");
    assert!(!wa.ecjpake);
    assert_eq!(wa.heap_size, Some(15200));
    assert_eq!(
        wa.ssl_ciphersuites,
        vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8]
    );
    assert!(wa.unknown_ciphersuites.is_empty());
    assert_eq!(wa.ecjpake_backend(), EcjpakeBackend::Mbedtls);
    assert!(build("ncs-v2.2.0-psk").psk);
    let up = build("upstream");
    assert!(up.psk && !up.ecjpake_alt && up.heap_size.is_none() && up.state_commands);
    assert_eq!(up.no_credentials, NoCredentials::Assert);
}

#[test]
fn cli_parsing_follows_cli_coap_secure() {
    let stock = build("ncs-v2.2.0");
    let psk = build("ncs-v2.2.0-psk");
    assert_eq!(
        stock.parse(&["psk", "123", "pskid"]),
        Err(OtError::InvalidCommand)
    );
    assert_eq!(
        psk.parse(&["psk", "123", "pskid"]),
        Ok(Command::Psk {
            key: b"123".to_vec(),
            identity: b"pskid".to_vec()
        })
    );
    assert_eq!(psk.parse(&["psk", "123"]), Err(OtError::InvalidArgs));
    assert_eq!(
        psk.parse(&["psk", &"k".repeat(33), "id"]),
        Err(OtError::InvalidArgs)
    );
    // The report's `coaps set psk 123 pskid` only sets the resource content.
    assert_eq!(
        stock.parse(&["set", "psk", "123", "pskid"]),
        Ok(Command::Set(Some("psk".into())))
    );
    assert_eq!(
        stock.parse(&["set", &"c".repeat(16)]),
        Err(OtError::InvalidArgs)
    );
    assert_eq!(stock.parse(&[]), Ok(Command::Table));
    assert_eq!(stock.parse(&["help"]), Ok(Command::Help));
    assert_eq!(
        stock.parse(&["start"]),
        Ok(Command::Start { verify_peer: true })
    );
    assert_eq!(
        stock.parse(&["start", "false"]),
        Ok(Command::Start { verify_peer: false })
    );
    assert_eq!(
        stock.parse(&["start", "something_invalid"]),
        Err(OtError::InvalidArgs)
    );
    assert_eq!(
        stock.parse(&["connect", "nonsense"]),
        Err(OtError::InvalidArgs)
    );
    assert_eq!(
        stock.parse(&["connect", "fdde:ad00:beef::1", "5685"]),
        Ok(Command::Connect {
            peer: SocketAddrV6::new("fdde:ad00:beef::1".parse().unwrap(), 5685, 0, 0)
        })
    );
    assert_eq!(stock.parse(&["get"]), Err(OtError::InvalidArgs));
    assert_eq!(
        stock.parse(&["post", "test/resource", "con", "Testing123"]),
        Ok(Command::Request {
            method: RequestType::Post,
            uri: "test/resource".into(),
            confirmable: true,
            payload: b"Testing123".to_vec()
        })
    );
    assert_eq!(stock.parse(&["isconnected"]), Err(OtError::InvalidCommand));
    assert_eq!(stock.parse(&["start", "3"]), Err(OtError::InvalidArgs));
    let up = build("upstream");
    assert_eq!(
        up.parse(&["start", "3"]),
        Ok(Command::Start { verify_peer: true })
    );
    assert_eq!(
        up.parse(&["start", "something_invalid"]),
        Err(OtError::InvalidArgs)
    );
    assert_eq!(up.parse(&["isconnected"]), Ok(Command::IsConnected));
    assert_eq!(stock.parse(&["frob"]), Err(OtError::InvalidCommand));
    assert_eq!(
        stock.commands(),
        vec![
            "connect",
            "delete",
            "disconnect",
            "get",
            "post",
            "put",
            "resource",
            "set",
            "start",
            "stop",
            "x509"
        ]
    );
    assert!(psk.commands().contains(&"psk"));
    assert!(!build("ncs-v2.2.0-workaround").commands().contains(&"psk"));
}

#[test]
fn dtls_config_from_build() {
    let stock = build("ncs-v2.2.0");
    assert_eq!(
        dtls_config(&stock, &Credentials::None, true).unwrap_err(),
        SetupError::NoSuite
    );
    let c = dtls_config(&stock, &Credentials::X509, true).unwrap();
    assert_eq!(c.suites, vec![CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8]);
    assert_eq!(c.ecjpake_backend, EcjpakeBackend::UncheckedAlt);
    assert!(c.verify_peer && c.certificate.is_some() && c.trusted_roots.len() == 1);
    // Parsed credentials take their share of the mbedtls heap.
    let limit = c.heap_limit.unwrap();
    assert!(limit < 10240 && limit > 5000, "{limit}");
    let wa = dtls_config(&build("ncs-v2.2.0-workaround"), &Credentials::X509, false).unwrap();
    assert_eq!(wa.ecjpake_backend, EcjpakeBackend::Mbedtls);
    assert!(!wa.verify_peer);
    assert_eq!(wa.heap_limit.unwrap(), limit + 15200 - 10240);
    let p = dtls_config(
        &build("ncs-v2.2.0-psk"),
        &Credentials::Psk {
            key: b"123".to_vec(),
            identity: b"pskid".to_vec(),
        },
        true,
    )
    .unwrap();
    assert_eq!(p.suites, vec![CipherSuite::PSK_WITH_AES_128_CCM_8]);
    assert!(!p.verify_peer);
    // The vendor's literal reading: mbedtls' list reaches the session.
    let mut literal = stock.clone();
    literal.suite_list = SuiteListSource::Mbedtls;
    literal.ssl_ciphersuites = vec![
        CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
        CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
    ];
    assert_eq!(
        dtls_config(&literal, &Credentials::X509, true)
            .unwrap()
            .suites,
        literal.ssl_ciphersuites
    );
}

/// The vendor wrote that the server picks the EC J-PAKE suite. Across every combination of
/// the symbols this model reads for suite selection (whose list reaches the session, the
/// order of `MBEDTLS_SSL_CIPHERSUITES`, whose preference wins, mbedtls' extension rule for
/// J-PAKE or a relaxed one, Oberon's J-PAKE or mbedtls'), an X.509 server never chooses it:
/// either J-PAKE is not offered (mbedtls' J-PAKE without a password), or the offered
/// extension's round one fails before any suite is chosen (Oberon's).
#[test]
fn no_modelled_build_lets_an_x509_server_choose_ecjpake() {
    const JPAKE: CipherSuite = CipherSuite::ECJPAKE_WITH_AES_128_CCM_8;
    const ECDHE: CipherSuite = CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8;
    let stock = build("ncs-v2.2.0");
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for suite_list in [SuiteListSource::OpenThread, SuiteListSource::Mbedtls] {
        for order in [vec![], vec![JPAKE, ECDHE], vec![ECDHE, JPAKE]] {
            for preference in [SuitePreference::Server, SuitePreference::Client] {
                for ecjpake_needs_kkpp in [true, false] {
                    for ecjpake_alt in [true, false] {
                        let b = CoapsBuild {
                            suite_list,
                            ssl_ciphersuites: order.clone(),
                            preference,
                            ecjpake_needs_kkpp,
                            ecjpake_alt,
                            ..stock.clone()
                        };
                        let outcome = x509_server_decision(&b);
                        assert_ne!(outcome, format!("chose {JPAKE:?}"), "{b:?}");
                        *outcomes.entry(outcome).or_default() += 1;
                    }
                }
            }
        }
    }
    // Both ways a server can answer occur, so the loop really ran the handshakes.
    assert_eq!(
        outcomes.keys().cloned().collect::<Vec<_>>(),
        vec![
            format!("chose {ECDHE:?}"),
            format!(
                "failed: {:?}",
                Some(ot_hil_dtls::AlertDescription::ILLEGAL_PARAMETER)
            ),
        ],
        "{outcomes:?}"
    );
}

/// Run an X.509 hello exchange between two boards of build `b` until the server chose a
/// suite or failed.
fn x509_server_decision(b: &CoapsBuild) -> String {
    let now = Instant::now();
    let config = |verify| Arc::new(dtls_config(b, &Credentials::X509, verify).unwrap());
    let mut client = Connection::client(config(true), now).unwrap();
    let mut server = Connection::server(config(true), now, b"client").unwrap();
    for _ in 0..10 {
        let mut moved = false;
        while let Some(d) = client.poll_transmit() {
            server.handle_datagram(now, &d);
            moved = true;
        }
        if let Some(suite) = server.suite() {
            return format!("chose {suite:?}");
        }
        while let Some(e) = server.poll_event() {
            if let Event::Failed { alert, .. } = e {
                return format!("failed: {alert:?}");
            }
        }
        while let Some(d) = server.poll_transmit() {
            client.handle_datagram(now, &d);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    "no decision".into()
}

/// What the hellos carry follows the build: nrf_security's defaults on NCS, OpenThread's own
/// mbedtls config upstream, and a Kconfig line changes it.
#[test]
fn hello_settings_follow_the_build() {
    use SignatureScheme as S;
    let ncs = dtls_config(&build("ncs-v2.2.0"), &Credentials::X509, true).unwrap();
    assert!(ncs.extended_master_secret && ncs.encrypt_then_mac);
    assert_eq!(
        ncs.signature_algorithms,
        vec![S::ECDSA_SHA512, S::ECDSA_SHA256]
    );
    assert_eq!(ncs.hello_layout, HelloLayout::Mbedtls31);
    let up = dtls_config(&build("upstream"), &Credentials::X509, true).unwrap();
    assert!(!up.extended_master_secret && !up.encrypt_then_mac);
    assert_eq!(up.signature_algorithms, vec![S::ECDSA_SHA256]);
    assert_eq!(up.hello_layout, HelloLayout::Mbedtls36);
    let k = Kconfig::parse(
        Path::new("overlay.conf"),
        "CONFIG_PSA_WANT_ALG_SHA_512=n\n\
         CONFIG_MBEDTLS_SHA384_C=y\n\
         CONFIG_MBEDTLS_SSL_EXTENDED_MASTER_SECRET=n\n",
    )
    .unwrap();
    assert!(k.warnings().is_empty(), "{:?}", k.warnings());
    let b = CoapsBuild::from_kconfig(Profile::Ncs, &k);
    let c = dtls_config(&b, &Credentials::X509, true).unwrap();
    assert!(!c.extended_master_secret && c.encrypt_then_mac);
    assert_eq!(
        c.signature_algorithms,
        vec![S::ECDSA_SHA384, S::ECDSA_SHA256]
    );
    // Without a certificate-based key exchange there is no signature_algorithms at all.
    let no_cert = CoapsBuild {
        ecdhe_ecdsa: false,
        psk: true,
        ..build("ncs-v2.2.0")
    };
    let psk = Credentials::Psk {
        key: b"secret".to_vec(),
        identity: b"id".to_vec(),
    };
    assert!(
        dtls_config(&no_cert, &psk, true)
            .unwrap()
            .signature_algorithms
            .is_empty()
    );
}

#[test]
fn model_symbols_feed_the_selection_rule() {
    let k = Kconfig::parse(
        Path::new("literal.conf"),
        "CONFIG_VDK_COAPS_SUITE_LIST=\"mbedtls\"\n\
         CONFIG_VDK_DTLS_SUITE_PREFERENCE=\"client\"\n\
         CONFIG_VDK_DTLS_ECJPAKE_NEEDS_KKPP=n\n\
         CONFIG_MBEDTLS_ECJPAKE_ALT=n\n\
         CONFIG_MBEDTLS_SSL_CIPHERSUITES=\"MBEDTLS_TLS_ECJPAKE_WITH_AES_128_CCM_8, MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,TLS-PSK-WITH-AES-128-CCM-8\"\n",
    )
    .unwrap();
    assert!(k.warnings().is_empty(), "{:?}", k.warnings());
    let b = CoapsBuild::from_kconfig(Profile::Ncs, &k);
    assert_eq!(b.unknown_ciphersuites, vec!["TLS-PSK-WITH-AES-128-CCM-8"]);
    let c = dtls_config(&b, &Credentials::X509, true).unwrap();
    assert_eq!(
        c.suites,
        vec![
            CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8
        ]
    );
    assert_eq!(c.preference, SuitePreference::Client);
    assert!(!c.ecjpake_requires_extension_and_password);
    assert_eq!(c.ecjpake_backend, EcjpakeBackend::Mbedtls);
    // The defaults are the evidence model.
    let d = dtls_config(&build("ncs-v2.2.0"), &Credentials::X509, true).unwrap();
    assert_eq!(d.preference, SuitePreference::Server);
    assert!(d.ecjpake_requires_extension_and_password);
    let psk = Credentials::Psk {
        key: b"secret".to_vec(),
        identity: b"id".to_vec(),
    };
    assert!(!format!("{psk:?}").contains("secret"));
}

fn serve_and_connect(p: &mut Pair, creds: &str) {
    for n in 0..2 {
        assert_eq!(p.run(n, creds), done());
        assert_eq!(p.run(n, "start"), done());
    }
    assert_eq!(p.run(0, "resource test-resource"), done());
    assert_eq!(p.run(0, "set hello"), done());
    let target = format!("connect {}", addr(1).ip());
    assert_eq!(p.run(1, &target), done());
}

#[test]
fn psk_connect_and_get() {
    let mut p = Pair::new(&build("ncs-v2.2.0-psk"));
    serve_and_connect(&mut p, "psk 123 pskid");
    assert_eq!(p.lines[1], vec!["coaps connected"]);
    assert!(
        p.lines[0].is_empty(),
        "the server prints no connect line: {:?}",
        p.lines[0]
    );
    assert_eq!(p.run(1, "get test-resource"), done());
    assert_eq!(
        p.lines[0],
        vec![
            "coaps request from fdde:ad00:beef:0:1:2:3:2 GET",
            "coaps response sent"
        ]
    );
    assert_eq!(
        p.lines[1][1],
        "coaps response from fdde:ad00:beef:0:1:2:3:1 with payload: 68656c6c6f"
    );
    assert_eq!(p.run(1, "disconnect"), done());
    p.advance(Duration::from_secs(3));
    assert_eq!(p.lines[1].last().unwrap(), "coaps disconnected");
    assert!(p.apps[1].transcripts().len() == 1);
}

#[test]
fn con_request_without_answer_times_out() {
    let mut p = Pair::new(&build("ncs-v2.2.0-psk"));
    serve_and_connect(&mut p, "psk 123 pskid");
    // The server hears nothing more: the request and its 4 retransmissions go unanswered.
    p.udp[0].open = false;
    let start = p.now;
    assert_eq!(p.run(1, "post test-resource con x"), done());
    let timeout = "coaps receive response error 28: ResponseTimeout";
    p.advance(Duration::from_secs(61));
    assert!(!p.lines[1].iter().any(|l| l == timeout), "{:?}", p.lines[1]);
    // 2..3 s initial, doubled 4 times: 62..93 s in total.
    p.advance(Duration::from_secs(93 - 61));
    assert_eq!(p.lines[1].last().map(String::as_str), Some(timeout));
    assert!(p.now - start >= Duration::from_secs(62));
}

#[test]
fn transcripts_keep_the_last_sessions() {
    let mut p = Pair::new(&build("ncs-v2.2.0-psk"));
    serve_and_connect(&mut p, "psk 123 pskid");
    let target = format!("connect {}", addr(1).ip());
    for _ in 0..MAX_TRANSCRIPTS + 3 {
        assert_eq!(p.run(1, "disconnect"), done());
        p.advance(Duration::from_secs(3));
        assert_eq!(p.run(1, &target), done());
    }
    let t = p.apps[1].transcripts();
    // The kept sessions plus the running one.
    assert_eq!(t.len(), MAX_TRANSCRIPTS + 1);
    assert_eq!(p.apps[0].transcripts().len(), MAX_TRANSCRIPTS + 1);
}

#[test]
fn x509_on_stock_ncs_disconnects_with_illegal_parameter() {
    let mut p = Pair::new(&build("ncs-v2.2.0"));
    serve_and_connect(&mut p, "x509");
    assert!(p.lines[1].is_empty());
    p.advance(Duration::from_secs(3));
    assert_eq!(p.lines[1], vec!["coaps disconnected"]);
    let t = &p.apps[1].transcripts()[0];
    let json = serde_json::to_string(t).unwrap();
    assert!(
        json.contains("ILLEGAL_PARAMETER") || json.contains("illegal_parameter"),
        "{json}"
    );
}

/// CONFIG_MBEDTLS_HEAP_SIZE against the engine's accounted handshake peak plus the parsed
/// credentials: without EC J-PAKE the default 10240 bytes are enough for X.509 in this
/// model; a heap that cannot hold the handshake ends it (internal_error -> disconnect).
#[test]
fn heap_size_limits_the_handshake() {
    let mut b = build("ncs-v2.2.0-workaround");
    b.heap_size = Some(10240);
    let mut p = Pair::new(&b);
    serve_and_connect(&mut p, "x509");
    assert_eq!(p.lines[1], vec!["coaps connected"]);
    let limit = dtls_config(&b, &Credentials::X509, true)
        .unwrap()
        .heap_limit
        .unwrap();
    let peaks: Vec<usize> = p
        .apps
        .iter()
        .filter_map(|a| match &a.session {
            Session::Active { conn, .. } => Some(conn.peak_handshake_bytes()),
            _ => None,
        })
        .collect();
    assert_eq!(peaks.len(), 2, "both sides hold a session");
    for &peak in &peaks {
        assert!(peak > 4000 && peak < limit, "peak {peak} limit {limit}");
    }
    // The figures firmware/README.md quotes (`--nocapture` shows them).
    println!(
        "x509 handshake peak per side (server, client): {peaks:?} bytes; parsed credentials {} bytes",
        10240 - limit
    );
    b.heap_size = Some(6144);
    let mut p = Pair::new(&b);
    serve_and_connect(&mut p, "x509");
    p.advance(Duration::from_secs(3));
    assert_eq!(p.lines[1], vec!["coaps disconnected"]);
}

#[test]
fn x509_with_workaround_connects_and_gets() {
    let mut p = Pair::new(&build("ncs-v2.2.0-workaround"));
    serve_and_connect(&mut p, "x509");
    assert_eq!(p.lines[1], vec!["coaps connected"]);
    assert_eq!(p.run(1, "get test-resource"), done());
    assert!(
        p.lines[1][1].starts_with("coaps response from"),
        "{:?}",
        p.lines[1]
    );
}

#[test]
fn connect_without_credentials() {
    let mut p = Pair::new(&build("ncs-v2.2.0"));
    assert_eq!(
        p.run(1, &format!("connect {}", addr(1).ip())),
        CoapsResult::Error(vec![], OtError::InvalidState)
    );
    assert_eq!(p.run(1, "start"), done());
    assert_eq!(
        p.run(1, "start false"),
        CoapsResult::Error(vec![], OtError::Already)
    );
    assert_eq!(
        p.run(1, &format!("connect {}", addr(1).ip())),
        CoapsResult::Error(vec![], OtError::InvalidArgs)
    );
    assert!(p.udp[1].sent.is_empty());
    let mut up = Pair::new(&build("upstream"));
    assert_eq!(up.run(1, "start"), done());
    assert!(matches!(
        up.run(1, &format!("connect {}", addr(1).ip())),
        CoapsResult::AssertReset(l) if l[0].starts_with("assert failed at ")
    ));
}
