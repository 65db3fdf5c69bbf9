//! The unchecked EC J-PAKE implementation (`EcjpakeBackend::UncheckedAlt`): an X.509 client and
//! server without a J-PAKE password still exchange the hello extension 0x0100, and the server's
//! never-set-up context rejects the client's round one with illegal_parameter, on the very first
//! (cookie-less) ClientHello. With mbedtls' own implementation the same pair connects.

mod common;

use common::*;
use ot_hil_dtls::transcript::{Body, Fields};
use ot_hil_dtls::{AlertDescription, CipherSuite, Direction, EcjpakeBackend, Event, ExtensionType};

/// Offered suites and extension types of each ClientHello the client sent.
fn client_hellos(p: &Pair) -> Vec<(Vec<CipherSuite>, Vec<ExtensionType>)> {
    p.client
        .transcript()
        .entries
        .iter()
        .filter(|e| e.direction == Direction::ClientToServer)
        .filter_map(|e| match &e.body {
            Body::Handshake { messages } => messages.iter().find_map(|m| match &m.fields {
                Some(Fields::ClientHello {
                    offered_suites,
                    extensions,
                    ..
                }) => Some((offered_suites.clone(), extensions.clone())),
                _ => None,
            }),
            _ => None,
        })
        .collect()
}

fn client_hello_extensions(p: &Pair) -> Vec<Vec<ExtensionType>> {
    client_hellos(p).into_iter().map(|(_, e)| e).collect()
}

fn offered_suites(p: &Pair) -> Vec<Vec<CipherSuite>> {
    client_hellos(p).into_iter().map(|(s, _)| s).collect()
}

/// The connection's only event: failed with a fatal illegal_parameter (sent or received).
fn assert_failed_with_illegal_parameter(events: &[Event]) {
    assert!(
        matches!(
            events,
            [Event::Failed {
                alert: Some(AlertDescription::ILLEGAL_PARAMETER),
                ..
            }]
        ),
        "{events:?}"
    );
}

#[test]
fn stock_backend_sends_no_extension_and_connects() {
    let (c, s) = x509_configs(true);
    let mut p = Pair::new(c, s);
    p.pump();
    assert!(p.client.is_connected(), "{:?}", p.client_events);
    for exts in client_hello_extensions(&p) {
        assert!(!exts.contains(&ExtensionType::ECJPAKE_KKPP), "{exts:?}");
    }
}

#[test]
fn unchecked_backend_fails_with_illegal_parameter_on_first_hello() {
    let (mut c, mut s) = x509_configs(true);
    c.ecjpake_backend = EcjpakeBackend::UncheckedAlt;
    s.ecjpake_backend = EcjpakeBackend::UncheckedAlt;
    let mut p = Pair::new(c, s);
    p.pump();
    let hellos = client_hello_extensions(&p);
    assert_eq!(hellos.len(), 1, "no HelloVerifyRequest, no second hello");
    assert!(hellos[0].contains(&ExtensionType::ECJPAKE_KKPP));
    assert_failed_with_illegal_parameter(&p.server_events);
    assert_failed_with_illegal_parameter(&p.client_events);
    assert!(!p.client.is_connected());
}

#[test]
fn unchecked_client_against_stock_server_connects() {
    // A stock server skips the extension (its check fails without a password).
    let (mut c, s) = x509_configs(false);
    c.ecjpake_backend = EcjpakeBackend::UncheckedAlt;
    let mut p = Pair::new(c, s);
    p.pump();
    assert!(p.client.is_connected(), "{:?}", p.client_events);
    assert!(client_hello_extensions(&p)[0].contains(&ExtensionType::ECJPAKE_KKPP));
}

#[test]
fn unchecked_backend_does_not_touch_psk_or_password_configs() {
    // PSK offers no EC suite: no extension; a configured password sets the context up properly.
    let mut c = psk_config();
    let mut s = psk_config();
    c.ecjpake_backend = EcjpakeBackend::UncheckedAlt;
    s.ecjpake_backend = EcjpakeBackend::UncheckedAlt;
    let mut p = Pair::new(c, s);
    p.pump();
    assert!(p.client.is_connected());
    assert!(!client_hello_extensions(&p)[0].contains(&ExtensionType::ECJPAKE_KKPP));

    let mut c = ecjpake_config(b"J01NME");
    let mut s = ecjpake_config(b"J01NME");
    c.ecjpake_backend = EcjpakeBackend::UncheckedAlt;
    s.ecjpake_backend = EcjpakeBackend::UncheckedAlt;
    let mut p = Pair::new(c, s);
    p.pump();
    assert!(
        matches!(p.client_events.first(), Some(Event::Connected { suite }) if *suite == CipherSuite::ECJPAKE_WITH_AES_128_CCM_8),
        "{:?}",
        p.client_events
    );
}

/// Both ends list EC J-PAKE first and have no J-PAKE password, as they would if mbedtls' default
/// suite list reached an X.509 session.
fn x509_with_jpake_listed_first(backend: EcjpakeBackend) -> Pair {
    let (mut c, mut s) = x509_configs(false);
    for cfg in [&mut c, &mut s] {
        cfg.suites = vec![
            CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
        ];
        cfg.ecjpake_backend = backend;
        cfg.ecjpake_requires_extension_and_password = false;
    }
    let mut p = Pair::new(c, s);
    p.pump();
    p
}

#[test]
fn unchecked_client_offers_a_listed_jpake_suite_without_password_and_the_server_rejects_the_hello()
{
    // mbedtls filters offered suites with mbedtls_ecjpake_check(), which the unchecked
    // implementation passes: J-PAKE is offered. The server still never chooses it: the
    // extension's round one fails first, even with the relaxed selection rule.
    let p = x509_with_jpake_listed_first(EcjpakeBackend::UncheckedAlt);
    assert_eq!(
        offered_suites(&p),
        vec![vec![
            CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
            CipherSuite::EMPTY_RENEGOTIATION_INFO_SCSV
        ]]
    );
    assert_failed_with_illegal_parameter(&p.server_events);
    assert_eq!(p.server.suite(), None, "no suite was chosen");
}

#[test]
fn stock_client_does_not_offer_a_listed_jpake_suite_without_password() {
    let p = x509_with_jpake_listed_first(EcjpakeBackend::Mbedtls);
    assert_eq!(
        offered_suites(&p)[0],
        vec![
            CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8,
            CipherSuite::EMPTY_RENEGOTIATION_INFO_SCSV
        ]
    );
    assert!(p.client.is_connected(), "{:?}", p.client_events);
}
