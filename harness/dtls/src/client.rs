//! The client's handshake (RFC 5246 §7.3 over RFC 6347 §4.2): the ClientHello, then one struct
//! per state of the server's first flight, each naming the message it expects next. The
//! client's second flight is sent by [`ExpectServerHelloDone`]; the end of the handshake is in
//! [`crate::handshake`].

use std::time::Instant;

use p256::ecdh::EphemeralSecret;
use p256::ecdsa::VerifyingKey;
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;

use crate::cert::{ParsedCert, verify_chain, verify_signature};
use crate::config::{Config, EcjpakeBackend, HelloLayout};
use crate::context::Context;
use crate::ecjpake::{self, EcjpakeContext};
use crate::enums::*;
use crate::error::Error;
use crate::handshake::*;
use crate::messages::*;
use crate::record::VERSION;

/// Start a client: send the ClientHello and wait for the server's answer.
pub(crate) fn start(cx: &mut Context, now: Instant) -> Transition {
    let cfg = cx.config.clone();
    if cfg.suites.is_empty() {
        return Err(Error::Config("no cipher suites offered".into()));
    }
    cx.hs.client_random = cx.random32();
    let offer = offer(cx, &cfg)?;
    let extensions = hello_extensions(&cfg, offer.ec, offer.ecjpake_kkpp);
    let ch = ClientHello {
        client_version: VERSION,
        random: cx.hs.client_random,
        session_id: Vec::new(),
        cookie: Vec::new(),
        cipher_suites: offer.suites,
        compression_methods: vec![0],
        extensions,
    };
    Ok(send_client_hello(cx, now, ch))
}

/// What the ClientHello offers.
struct Offer {
    suites: Vec<CipherSuite>,
    /// The EC J-PAKE round one for extension 0x0100, if one is sent.
    ecjpake_kkpp: Option<Vec<u8>>,
    /// An elliptic-curve suite is offered: curves and point formats are listed.
    ec: bool,
}

/// The suites we can offer with the credentials configured, and the J-PAKE round one.
fn offer(cx: &mut Context, cfg: &Config) -> Result<Offer, Error> {
    let mut suites = Vec::new();
    let mut ecjpake_kkpp = None;
    let mut ec = false;
    for s in &cfg.suites {
        match s.key_exchange() {
            Some(KeyExchange::Psk) if cfg.psk.is_some() => suites.push(*s),
            Some(KeyExchange::EcdheEcdsa) => {
                suites.push(*s);
                ec = true;
            }
            // Like mbedtls, offer ECJPAKE only when the J-PAKE context passes its check
            // (`ssl_validate_ciphersuite` calls `mbedtls_ecjpake_check`): with mbedtls' own
            // implementation that takes a password; an unchecked one passes without.
            Some(KeyExchange::Ecjpake) => {
                if cfg.ecjpake_password.is_none()
                    && cfg.ecjpake_backend == EcjpakeBackend::UncheckedAlt
                {
                    suites.push(*s);
                    ec = true;
                } else if let Some(pw) = &cfg.ecjpake_password {
                    let mut ctx = EcjpakeContext::new(ecjpake::Role::Client, pw)
                        .map_err(|e| Error::Config(format!("ecjpake password: {e}")))?;
                    ecjpake_kkpp = Some(ctx.write_round_one(&mut *cx.rng));
                    cx.hs.ecjpake = Some(ctx);
                    suites.push(*s);
                    ec = true;
                }
            }
            _ => {}
        }
    }
    if suites.is_empty() {
        return Err(Error::Config(
            "no offered suite has its credentials configured".into(),
        ));
    }
    if ec && cfg.ecjpake_backend == EcjpakeBackend::UncheckedAlt && ecjpake_kkpp.is_none() {
        ecjpake_kkpp = Some(unset_ecjpake_round_one(cx, &suites)?);
    }
    // mbedtls 3.1 always appends the renegotiation SCSV to an initial ClientHello
    // (RFC 5746 §3.3), even when renegotiation is compiled out.
    suites.push(CipherSuite::EMPTY_RENEGOTIATION_INFO_SCSV);
    Ok(Offer {
        suites,
        ecjpake_kkpp,
        ec,
    })
}

/// mbedtls writes the J-PAKE extension whenever the J-PAKE context passes its check; an
/// unchecked implementation passes without a password, and the never-set-up context proves
/// round one under its default role, client. The context is kept only when this client offers
/// the J-PAKE suite, for a server that picks it.
fn unset_ecjpake_round_one(cx: &mut Context, suites: &[CipherSuite]) -> Result<Vec<u8>, Error> {
    let mut ctx = EcjpakeContext::new(ecjpake::Role::Client, UNSET_ECJPAKE_PASSWORD)
        .map_err(|e| Error::Config(format!("ecjpake: {e}")))?;
    let round_one = ctx.write_round_one(&mut *cx.rng);
    if suites
        .iter()
        .any(|s| s.key_exchange() == Some(KeyExchange::Ecjpake))
    {
        cx.hs.ecjpake = Some(ctx);
    }
    Ok(round_one)
}

/// Extensions in the order the configured mbedtls writes them.
fn hello_extensions(cfg: &Config, ec: bool, ecjpake_kkpp: Option<Vec<u8>>) -> Vec<Extension> {
    let signature_algorithms = (!cfg.signature_algorithms.is_empty())
        .then(|| Extension::signature_algorithms(&cfg.signature_algorithms));
    let supported_groups = ec.then(|| Extension::supported_groups(&[NamedGroup::SECP256R1]));
    let mut extensions: Vec<Extension> = match cfg.hello_layout {
        HelloLayout::Mbedtls31 => [signature_algorithms, supported_groups],
        HelloLayout::Mbedtls36 => [supported_groups, signature_algorithms],
    }
    .into_iter()
    .flatten()
    .collect();
    if ec {
        extensions.push(Extension::ec_point_formats());
    }
    if let Some(round_one) = ecjpake_kkpp {
        extensions.push(Extension {
            typ: ExtensionType::ECJPAKE_KKPP,
            data: round_one,
        });
    }
    if cfg.encrypt_then_mac {
        extensions.push(Extension::empty(ExtensionType::ENCRYPT_THEN_MAC));
    }
    if cfg.extended_master_secret {
        extensions.push(Extension::empty(ExtensionType::EXTENDED_MASTER_SECRET));
    }
    extensions
}

/// Send `ch` as a flight of its own and wait for the ServerHello, keeping `ch` to check the
/// server's choice against and to resend with a cookie.
fn send_client_hello(cx: &mut Context, now: Instant, ch: ClientHello) -> State {
    cx.start_flight();
    cx.queue_handshake(&HandshakePayload::ClientHello(ch.clone()));
    cx.send_flight_then(now, State::expect(ExpectServerHello { client_hello: ch }))
}

// -- Client: waiting for the server's hello --

/// Sent ClientHello; expect HelloVerifyRequest (RFC 6347 §4.2.1) or ServerHello
/// (RFC 5246 §7.4.1.3). The hello is kept to resend it with the cookie.
#[derive(Debug)]
pub(crate) struct ExpectServerHello {
    client_hello: ClientHello,
}

impl Expect for ExpectServerHello {
    fn name(&self) -> &'static str {
        "ExpectServerHello"
    }

    fn handle(self: Box<Self>, cx: &mut Context, now: Instant, message: Message) -> Transition {
        match message.payload {
            HandshakePayload::HelloVerifyRequest(hvr) => Ok(self.hello_verify(cx, now, hvr)),
            HandshakePayload::ServerHello(sh) => self.server_hello(cx, sh, message.full),
            other => Err(unexpected(&State::Expect(self), &other)),
        }
    }
}

impl ExpectServerHello {
    /// RFC 6347 §4.2.1: resend the ClientHello with the cookie; the first ClientHello and the
    /// HelloVerifyRequest are left out of the Finished hash (§4.2.6).
    fn hello_verify(self, cx: &mut Context, now: Instant, hvr: HelloVerifyRequest) -> State {
        let mut ch = self.client_hello;
        ch.cookie = hvr.cookie;
        cx.hs.messages.clear();
        send_client_hello(cx, now, ch)
    }

    fn server_hello(self, cx: &mut Context, sh: ServerHello, full: Vec<u8>) -> Transition {
        if sh.server_version != VERSION {
            return Err(Error::hs(
                AlertDescription::PROTOCOL_VERSION,
                format!("server chose version {}", sh.server_version),
            ));
        }
        let offered = &self.client_hello.cipher_suites;
        // mbedtls: a suite we did not offer is "bad server hello message" + illegal_parameter.
        if !offered.contains(&sh.cipher_suite) || sh.cipher_suite.key_exchange().is_none() {
            return Err(Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                format!("server chose {} which was not offered", sh.cipher_suite),
            ));
        }
        if sh.compression_method != 0 {
            return Err(Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                "server chose compression",
            ));
        }
        extensions_answered(cx, &sh.extensions)?;
        cx.hs.server_random = sh.random;
        cx.hs.suite = Some(sh.cipher_suite);
        // Our ClientHello stays buffered (and its timer running) until the whole server flight
        // arrived: RFC 6347 §4.2.4 retransmits per flight, not per message.
        cx.hs.messages.extend_from_slice(&full);
        match sh.cipher_suite.key_exchange() {
            Some(KeyExchange::Psk) => {
                Ok(State::expect(ExpectServerKeyExchange { server_key: None }))
            }
            Some(KeyExchange::EcdheEcdsa) => Ok(State::expect(ExpectCertificate)),
            Some(KeyExchange::Ecjpake) => {
                read_server_ecjpake_round_one(cx, &sh.extensions)?;
                Ok(State::expect(ExpectServerKeyExchange { server_key: None }))
            }
            None => Err(Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                "unsupported suite",
            )),
        }
    }
}

/// mbedtls `ssl_parse_encrypt_then_mac_ext` / `ssl_parse_extended_ms_ext`: with the feature
/// compiled in (and so enabled and offered), an answer with a body is fatal
/// (unsupported_extension); compiled out, the extension is unknown and ignored.
fn extensions_answered(cx: &mut Context, extensions: &[Extension]) -> Result<(), Error> {
    if let Some(typ) = flag_extension_with_body(&cx.config, extensions) {
        return Err(Error::hs(
            AlertDescription::UNSUPPORTED_EXTENSION,
            format!("non-matching {typ} extension in the server hello"),
        ));
    }
    // encrypt_then_mac changes nothing for the AEAD suites the engine knows.
    cx.hs.extended_master_secret = cx.config.extended_master_secret
        && find_extension(extensions, ExtensionType::EXTENDED_MASTER_SECRET).is_some();
    Ok(())
}

/// The server's J-PAKE round one comes in its hello's extension 0x0100.
fn read_server_ecjpake_round_one(cx: &mut Context, extensions: &[Extension]) -> Result<(), Error> {
    let ext = find_extension(extensions, ExtensionType::ECJPAKE_KKPP).ok_or_else(|| {
        Error::hs(
            AlertDescription::HANDSHAKE_FAILURE,
            "server hello without ecjpake round one",
        )
    })?;
    ecjpake_context(&mut cx.hs)?
        .read_round_one(&ext.data)
        .map_err(|e| {
            Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                format!("ecjpake round one: {e}"),
            )
        })
}

// -- Client: the server's first flight --

/// ECDHE_ECDSA: the server's Certificate (RFC 5246 §7.4.2).
#[derive(Debug)]
pub(crate) struct ExpectCertificate;

impl Expect for ExpectCertificate {
    fn name(&self) -> &'static str {
        "ExpectCertificate"
    }

    fn handle(self: Box<Self>, cx: &mut Context, _now: Instant, message: Message) -> Transition {
        let c = expect_payload!(message, Certificate, State::Expect(self));
        let chain = verified_server_chain(&cx.config, c)?;
        let server_key = Some(cx.accept_peer_chain(chain, &message.full)?);
        Ok(State::expect(ExpectServerKeyExchange { server_key }))
    }
}

/// The server's chain, verified if so configured (otherwise only its leaf, parsed).
fn verified_server_chain(cfg: &Config, c: CertificateMsg) -> Result<Vec<ParsedCert>, Error> {
    Ok(if cfg.verify_peer {
        verify_chain(
            &c.chain,
            &cfg.trusted_roots,
            cfg.time_check,
            cfg.server_name.as_deref(),
        )?
    } else {
        let leaf = c.chain.first().ok_or(crate::error::CertError::Empty)?;
        vec![ParsedCert::parse(leaf)?]
    })
}

/// ServerKeyExchange (RFC 5246 §7.4.3, RFC 8422 §5.4; optional for PSK, RFC 4279 §2).
#[derive(Debug)]
pub(crate) struct ExpectServerKeyExchange {
    /// ECDHE_ECDSA: the key from the server's certificate, which signed the parameters.
    server_key: Option<VerifyingKey>,
}

impl Expect for ExpectServerKeyExchange {
    fn name(&self) -> &'static str {
        "ExpectServerKeyExchange"
    }

    fn handle(self: Box<Self>, cx: &mut Context, now: Instant, message: Message) -> Transition {
        match message.payload {
            HandshakePayload::ServerKeyExchange(ske) => {
                let server_point = self.check(cx, ske)?;
                cx.hs.messages.extend_from_slice(&message.full);
                Ok(State::expect(ExpectServerHelloDone {
                    server_point,
                    cert_requested: false,
                }))
            }
            HandshakePayload::ServerHelloDone if cx.hs.key_exchange() == Some(KeyExchange::Psk) => {
                // RFC 4279 §2: the ServerKeyExchange is omitted when there is no hint.
                cx.hs.messages.extend_from_slice(&message.full);
                let st = ExpectServerHelloDone {
                    server_point: None,
                    cert_requested: false,
                };
                st.send_client_flight(cx, now)
            }
            other => Err(unexpected(&State::Expect(self), &other)),
        }
    }
}

impl ExpectServerKeyExchange {
    /// Check the ServerKeyExchange; returns the server's ECDHE point, if any.
    fn check(&self, cx: &mut Context, ske: ServerKeyExchange) -> Result<Option<Vec<u8>>, Error> {
        match ske {
            ServerKeyExchange::Psk { .. } => Ok(None),
            ServerKeyExchange::Ecdhe(e) => {
                self.check_ecdhe(cx, &e)?;
                Ok(Some(e.public))
            }
            ServerKeyExchange::Ecjpake(body) => {
                read_ecjpake_round_two(&mut cx.hs, &body)?;
                Ok(None)
            }
        }
    }

    /// The server's ECDHE parameters: our curve, a pair we offered, signed by its certificate.
    fn check_ecdhe(&self, cx: &Context, e: &EcdheServerKeyExchange) -> Result<(), Error> {
        if e.group != NamedGroup::SECP256R1 {
            return Err(Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                format!("server chose group {}", e.group),
            ));
        }
        // mbedtls `ssl_parse_signature_algorithm`: only a pair we offered.
        if !e.scheme.is_ecdsa() || !cx.config.signature_algorithms.contains(&e.scheme) {
            return Err(Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                format!("server signed with {}", e.scheme),
            ));
        }
        let key = self
            .server_key
            .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no server key"))?;
        // RFC 8422 §5.4: signed = client_random || server_random || ServerECDHParams.
        let mut signed = Vec::with_capacity(64 + 70);
        signed.extend_from_slice(&cx.hs.client_random);
        signed.extend_from_slice(&cx.hs.server_random);
        signed.extend_from_slice(&e.params());
        if !verify_signature(&key, e.scheme, &signed, &e.signature) {
            return Err(Error::hs(
                AlertDescription::DECRYPT_ERROR,
                "server key exchange signature does not verify",
            ));
        }
        Ok(())
    }
}

/// CertificateRequest (optional, RFC 5246 §7.4.4), then ServerHelloDone (§7.4.5).
#[derive(Debug)]
pub(crate) struct ExpectServerHelloDone {
    /// ECDHE: the server's ephemeral public point.
    server_point: Option<Vec<u8>>,
    cert_requested: bool,
}

impl Expect for ExpectServerHelloDone {
    fn name(&self) -> &'static str {
        "ExpectServerHelloDone"
    }

    fn handle(mut self: Box<Self>, cx: &mut Context, now: Instant, message: Message) -> Transition {
        match message.payload {
            HandshakePayload::CertificateRequest(cr)
                if cx.hs.key_exchange() == Some(KeyExchange::EcdheEcdsa)
                    && !self.cert_requested =>
            {
                if !cr.certificate_types.contains(&CERT_TYPE_ECDSA_SIGN) {
                    return Err(Error::hs(
                        AlertDescription::HANDSHAKE_FAILURE,
                        "certificate request without ecdsa_sign",
                    ));
                }
                self.cert_requested = true;
                cx.hs.messages.extend_from_slice(&message.full);
                Ok(State::Expect(self))
            }
            HandshakePayload::ServerHelloDone => {
                cx.hs.messages.extend_from_slice(&message.full);
                self.send_client_flight(cx, now)
            }
            other => Err(unexpected(&State::Expect(self), &other)),
        }
    }
}

impl ExpectServerHelloDone {
    /// Client's second flight: \[Certificate\] ClientKeyExchange \[CertificateVerify\] CCS Finished.
    fn send_client_flight(self, cx: &mut Context, now: Instant) -> Transition {
        let cfg = cx.config.clone();
        cx.start_flight();
        if self.cert_requested {
            let chain = cfg
                .certificate
                .as_ref()
                .map(|c| c.chain.clone())
                .unwrap_or_default();
            cx.queue_handshake(&HandshakePayload::Certificate(CertificateMsg { chain }));
        }
        let (cke, pms) = self.key_exchange(cx)?;
        cx.queue_handshake(&HandshakePayload::ClientKeyExchange(cke));
        cx.derive_keys(&pms);
        if self.cert_requested
            && let Some(ck) = &cfg.certificate
        {
            // mbedtls 3.1 signs with the suite's PRF hash: SHA-256 for the CCM-8 suites.
            let scheme = SignatureScheme::ECDSA_SHA256;
            let signature = sign(ck, scheme, &cx.hs.messages)?;
            cx.queue_handshake(&HandshakePayload::CertificateVerify(CertificateVerify {
                scheme,
                signature,
            }));
        }
        cx.queue_ccs_and_finished(b"client finished");
        Ok(cx.send_flight_then(now, State::ExpectCcs(ExpectCcs)))
    }

    /// Our ClientKeyExchange and the premaster secret it agrees on.
    fn key_exchange(&self, cx: &mut Context) -> Result<(ClientKeyExchange, Vec<u8>), Error> {
        match cx.hs.key_exchange() {
            Some(KeyExchange::Psk) => {
                let psk = configured_psk(&cx.config)?;
                Ok((
                    ClientKeyExchange::Psk {
                        identity: psk.identity.clone(),
                    },
                    psk_premaster(&psk.key),
                ))
            }
            Some(KeyExchange::EcdheEcdsa) => {
                let point = self.server_point.clone().unwrap_or_default();
                let (public, pms) = ecdh(cx, &point)?;
                Ok((ClientKeyExchange::Ecdhe { public }, pms))
            }
            Some(KeyExchange::Ecjpake) => {
                let ctx = ecjpake_context(&mut cx.hs)?;
                let body = ctx.write_round_two(&mut *cx.rng).map_err(|e| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, format!("ecjpake: {e}"))
                })?;
                let pms = ctx.derive_premaster().map_err(|e| {
                    Error::hs(AlertDescription::ILLEGAL_PARAMETER, format!("ecjpake: {e}"))
                })?;
                Ok((ClientKeyExchange::Ecjpake(body), pms.to_vec()))
            }
            None => Err(Error::hs(AlertDescription::INTERNAL_ERROR, "no suite")),
        }
    }
}

/// Ephemeral ECDH on P-256: returns our uncompressed public point and the x-coordinate
/// premaster (RFC 8422 §5.10).
fn ecdh(cx: &mut Context, peer_point: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let peer = p256::PublicKey::from_sec1_bytes(peer_point)
        .map_err(|_| Error::hs(AlertDescription::ILLEGAL_PARAMETER, "invalid ec point"))?;
    let secret = match cx.hs.ecdh.take() {
        Some(s) => s,
        None => EphemeralSecret::generate_from_rng(&mut *cx.rng),
    };
    let public = p256::PublicKey::from(&secret)
        .to_sec1_point(false)
        .as_bytes()
        .to_vec();
    let shared = secret.diffie_hellman(&peer);
    Ok((public, shared.raw_secret_bytes().to_vec()))
}
