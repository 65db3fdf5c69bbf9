//! The server's handshake (RFC 5246 §7.3 over RFC 6347 §4.2): the stateless cookie exchange
//! and the server's first flight in [`ExpectClientHello`], then one struct per state of the
//! client's second flight. The end of the handshake is in [`crate::handshake`].

use std::time::Instant;

use p256::ecdh::EphemeralSecret;
use p256::ecdsa::VerifyingKey;
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;

use crate::cert::{CertifiedKey, ParsedCert, verify_chain, verify_signature};
use crate::codec::Codec;
use crate::config::{ClientOffer, Config, EcjpakeBackend, select_suite};
use crate::context::Context;
use crate::crypto::hmac_sha256;
use crate::ecjpake::{self, EcjpakeContext};
use crate::enums::*;
use crate::error::Error;
use crate::handshake::*;
use crate::messages::*;
use crate::record::VERSION;

// -- Server: waiting for the client's hello --

/// A server's first state: waiting for the client's hello.
pub(crate) fn start() -> State {
    State::expect(ExpectClientHello)
}

/// Expect ClientHello; without a valid cookie answer with HelloVerifyRequest, statelessly
/// (RFC 6347 §4.2.1).
#[derive(Debug)]
pub(crate) struct ExpectClientHello;

/// What the server chose from the ClientHello.
struct Choice {
    suite: CipherSuite,
    kx: KeyExchange,
    /// The pair that signs an ECDHE ServerKeyExchange.
    ecdsa_scheme: Option<SignatureScheme>,
}

impl Expect for ExpectClientHello {
    fn name(&self) -> &'static str {
        "ExpectClientHello"
    }

    fn handle(self: Box<Self>, cx: &mut Context, now: Instant, message: Message) -> Transition {
        let ch = expect_payload!(message, ClientHello, State::Expect(self));
        // DTLS versions count down: 1.2 = 0xfefd is "higher" than 1.0 = 0xfeff.
        if ch.client_version.0 > VERSION.0 {
            return Err(Error::hs(
                AlertDescription::PROTOCOL_VERSION,
                format!("client offers only {}", ch.client_version),
            ));
        }
        check_unset_ecjpake_extension(cx, &ch)?;
        let cookie = cookie_for(cx, &ch);
        if cx.config.require_cookie && ch.cookie != cookie {
            send_hello_verify_request(cx, message.message_seq, cookie);
            return Ok(State::Expect(self));
        }
        // mbedtls: the server's message_seq continues from the client's (ssl_srv.c).
        cx.out_msg_seq = message.message_seq;
        cx.in_msg_seq = message.message_seq.wrapping_add(1);
        cx.reassembly.discard_below(cx.in_msg_seq);
        cx.hs.messages.clear();
        cx.hs.messages.extend_from_slice(&message.full);
        cx.hs.client_random = ch.random;
        let choice = choose(cx, &ch)?;
        send_server_flight(cx, now, &ch, choice)
    }

    fn answers_hello_statelessly(&self) -> bool {
        true
    }
}

/// The cookie: HMAC-SHA256(secret, peer || version || random || session_id || suites || compression).
fn cookie_for(cx: &Context, ch: &ClientHello) -> Vec<u8> {
    let mut suites = Vec::new();
    for s in &ch.cipher_suites {
        s.encode(&mut suites);
    }
    hmac_sha256(
        &cx.config.cookie_secret,
        &[
            &cx.peer_id,
            &ch.client_version.0.to_be_bytes(),
            &ch.random,
            &ch.session_id,
            &suites,
            &ch.compression_methods,
        ],
    )
    .to_vec()
}

/// RFC 6347 §4.2.1: stateless, not part of the Finished hash, not retransmitted. The RFC
/// suggests version 1.0 here; mbedtls writes the version it negotiates (1.2 for OpenThread,
/// `ssl_write_hello_verify_request`: "the most interoperable thing").
fn send_hello_verify_request(cx: &mut Context, message_seq: u16, cookie: Vec<u8>) {
    let hvr = HelloVerifyRequest {
        server_version: VERSION,
        cookie,
    };
    let full = encode_handshake(
        HandshakeType::HELLO_VERIFY_REQUEST,
        message_seq,
        &hvr.get_encoding(),
    );
    let rec = cx.encode_record(ContentType::HANDSHAKE, 0, &full);
    cx.out.push_back(rec);
}

/// A server without a J-PAKE password on an unchecked J-PAKE implementation parses the
/// client's extension 0x0100 anyway (mbedtls `ssl_parse_ecjpake_kkpp` runs when the
/// context's check passes), with the context's default role, client, so it expects the
/// peer identity "server". mbedtls 3.1 parses extensions before it acts on a missing cookie,
/// so this runs for the first, cookie-less ClientHello too; a failed proof is a fatal
/// illegal_parameter alert.
fn check_unset_ecjpake_extension(cx: &Context, ch: &ClientHello) -> Result<(), Error> {
    if cx.config.ecjpake_backend != EcjpakeBackend::UncheckedAlt
        || cx.config.ecjpake_password.is_some()
    {
        return Ok(());
    }
    let Some(ext) = find_extension(&ch.extensions, ExtensionType::ECJPAKE_KKPP) else {
        return Ok(());
    };
    let mut ctx = EcjpakeContext::new(ecjpake::Role::Client, UNSET_ECJPAKE_PASSWORD)
        .map_err(|e| Error::hs(AlertDescription::INTERNAL_ERROR, format!("ecjpake: {e}")))?;
    ctx.read_round_one(&ext.data).map_err(|e| {
        Error::hs(
            AlertDescription::ILLEGAL_PARAMETER,
            format!("ecjpake kkpp extension parsed by a context without password: {e}"),
        )
    })
}

/// Read the client's extensions and choose a suite as mbedtls does; draws our random.
fn choose(cx: &mut Context, ch: &ClientHello) -> Result<Choice, Error> {
    let cfg = cx.config.clone();
    let groups = find_extension(&ch.extensions, ExtensionType::SUPPORTED_GROUPS)
        .map(|e| Extension::read_supported_groups(&e.data))
        .transpose()?;
    // mbedtls `ssl_parse_encrypt_then_mac_ext` / `ssl_parse_extended_ms_ext`, parsed with the
    // other extensions before a suite is chosen: when compiled in, a body is a decode_error;
    // RFC 7627 (§5.2) is taken when offered. Compiled out, both are unknown and ignored.
    if let Some(typ) = flag_extension_with_body(&cfg, &ch.extensions) {
        return Err(Error::hs(
            AlertDescription::DECODE_ERROR,
            format!("{typ} extension with a body"),
        ));
    }
    cx.hs.extended_master_secret = cfg.extended_master_secret
        && find_extension(&ch.extensions, ExtensionType::EXTENDED_MASTER_SECRET).is_some();
    let kkpp_ok = read_client_ecjpake_round_one(cx, ch)?;
    // mbedtls `ssl_parse_signature_algorithms_ext` keeps, per signature algorithm, the first
    // of the client's pairs whose hash this server lists: that hash signs the
    // ServerKeyExchange. Without the extension mbedtls falls back to SHA-1, which its
    // default hash list leaves out, so ECDHE_ECDSA cannot be chosen.
    let ecdsa_scheme = find_extension(&ch.extensions, ExtensionType::SIGNATURE_ALGORITHMS)
        .map(|e| Extension::read_signature_algorithms(&e.data))
        .transpose()?
        .and_then(|offered| {
            offered
                .into_iter()
                .find(|s| s.is_ecdsa() && cfg.signature_algorithms.contains(s))
        });
    let offer = ClientOffer {
        suites: ch.cipher_suites.clone(),
        groups,
        ecjpake_kkpp_ok: kkpp_ok,
        ecdsa_scheme,
    };
    let suite = select_suite(&cfg, &offer)
        .map_err(|e| Error::hs(AlertDescription::HANDSHAKE_FAILURE, e.to_string()))?;
    let kx = suite
        .key_exchange()
        .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "unsupported suite"))?;
    cx.hs.suite = Some(suite);
    cx.hs.server_random = cx.random32();
    Ok(Choice {
        suite,
        kx,
        ecdsa_scheme,
    })
}

/// mbedtls ssl_parse_ecjpake_kkpp: KKPP_OK only with a password and a verified round one.
fn read_client_ecjpake_round_one(cx: &mut Context, ch: &ClientHello) -> Result<bool, Error> {
    let (Some(ext), Some(pw)) = (
        find_extension(&ch.extensions, ExtensionType::ECJPAKE_KKPP),
        &cx.config.ecjpake_password,
    ) else {
        return Ok(false);
    };
    let mut ctx = EcjpakeContext::new(ecjpake::Role::Server, pw).map_err(|e| {
        Error::hs(
            AlertDescription::INTERNAL_ERROR,
            format!("ecjpake password: {e}"),
        )
    })?;
    if ctx.read_round_one(&ext.data).is_err() {
        return Ok(false);
    }
    cx.hs.ecjpake = Some(ctx);
    Ok(true)
}

/// Our first flight: ServerHello \[Certificate\] \[ServerKeyExchange\] \[CertificateRequest\]
/// ServerHelloDone.
fn send_server_flight(
    cx: &mut Context,
    now: Instant,
    ch: &ClientHello,
    choice: Choice,
) -> Transition {
    let (extensions, ecjpake_unusable) = server_hello_extensions(cx, ch, choice.kx)?;
    // mbedtls gives every new session a 32-byte random id (no session tickets configured),
    // though OpenThread never resumes one.
    let session_id = cx.random32().to_vec();
    let sh = ServerHello {
        server_version: VERSION,
        random: cx.hs.server_random,
        session_id,
        cipher_suite: choice.suite,
        compression_method: 0,
        extensions,
    };
    cx.start_flight();
    cx.queue_handshake(&HandshakePayload::ServerHello(sh));
    if let Some(reason) = ecjpake_unusable {
        cx.transmit_flight();
        return Err(Error::hs(AlertDescription::INTERNAL_ERROR, reason));
    }
    let cert_requested = queue_key_exchange(cx, choice.kx, choice.ecdsa_scheme)?;
    cx.queue_handshake(&HandshakePayload::ServerHelloDone);
    let next = if cert_requested {
        State::expect(ExpectClientCertificate)
    } else {
        State::expect(ExpectClientKeyExchange { client_key: None })
    };
    Ok(cx.send_flight_then(now, next))
}

/// The ServerHello's extensions, and why J-PAKE cannot go on if it cannot.
fn server_hello_extensions(
    cx: &mut Context,
    ch: &ClientHello,
    kx: KeyExchange,
) -> Result<(Vec<Extension>, Option<String>), Error> {
    let mut extensions = Vec::new();
    let mut ecjpake_unusable = None;
    // RFC 5746 §3.6: a client signalling secure renegotiation (SCSV or an empty
    // renegotiation_info) gets an empty renegotiation_info back; OpenSSL aborts without it.
    if ch
        .cipher_suites
        .contains(&CipherSuite::EMPTY_RENEGOTIATION_INFO_SCSV)
        || find_extension(&ch.extensions, ExtensionType::RENEGOTIATION_INFO).is_some()
    {
        extensions.push(Extension {
            typ: ExtensionType::RENEGOTIATION_INFO,
            data: vec![0],
        });
    }
    if cx.hs.extended_master_secret {
        extensions.push(Extension::empty(ExtensionType::EXTENDED_MASTER_SECRET));
    }
    if matches!(kx, KeyExchange::EcdheEcdsa | KeyExchange::Ecjpake)
        && find_extension(&ch.extensions, ExtensionType::EC_POINT_FORMATS).is_some()
    {
        extensions.push(Extension::ec_point_formats());
    }
    if kx == KeyExchange::Ecjpake {
        if cx.hs.ecjpake.is_none() {
            ecjpake_unusable = relaxed_ecjpake_context(cx, ch)?;
        }
        if let Some(ctx) = cx.hs.ecjpake.as_mut() {
            let round_one = ctx.write_round_one(&mut *cx.rng);
            extensions.push(Extension {
                typ: ExtensionType::ECJPAKE_KKPP,
                data: round_one,
            });
        }
    }
    Ok((extensions, ecjpake_unusable))
}

/// A relaxed (non-conforming) server may pick ECJPAKE without a verified client round one.
/// Like such an mbedtls build, it still sends its ServerHello (with its own round one), then
/// fails when round two needs the client's keys (internal_error): returns why.
fn relaxed_ecjpake_context(cx: &mut Context, ch: &ClientHello) -> Result<Option<String>, Error> {
    // Without a configured password there is nothing secret to protect: a fixed
    // placeholder lets the round-one message be formed.
    let pw = cx
        .config
        .ecjpake_password
        .clone()
        .unwrap_or_else(|| vec![1]);
    let mut ctx = EcjpakeContext::new(ecjpake::Role::Server, &pw)
        .map_err(|e| Error::hs(AlertDescription::INTERNAL_ERROR, format!("ecjpake: {e}")))?;
    let unusable = match find_extension(&ch.extensions, ExtensionType::ECJPAKE_KKPP) {
        Some(ext) => ctx
            .read_round_one(&ext.data)
            .err()
            .map(|e| format!("ecjpake round one: {e}")),
        None => Some("ecjpake chosen but client sent no round one".into()),
    };
    cx.hs.ecjpake = Some(ctx);
    Ok(unusable)
}

/// Queue the key exchange part of our first flight; returns whether it requests the client's
/// certificate.
fn queue_key_exchange(
    cx: &mut Context,
    kx: KeyExchange,
    ecdsa_scheme: Option<SignatureScheme>,
) -> Result<bool, Error> {
    match kx {
        KeyExchange::Psk => {
            if let Some(hint) = &cx.config.psk_hint {
                let hint = hint.clone();
                cx.queue_handshake(&HandshakePayload::ServerKeyExchange(
                    ServerKeyExchange::Psk { hint },
                ));
            }
            Ok(false)
        }
        KeyExchange::EcdheEcdsa => queue_ecdhe_ecdsa(cx, ecdsa_scheme),
        KeyExchange::Ecjpake => {
            let body = ecjpake_context(&mut cx.hs)?
                .write_round_two(&mut *cx.rng)
                .map_err(|e| {
                    Error::hs(AlertDescription::INTERNAL_ERROR, format!("ecjpake: {e}"))
                })?;
            cx.queue_handshake(&HandshakePayload::ServerKeyExchange(
                ServerKeyExchange::Ecjpake(body),
            ));
            Ok(false)
        }
    }
}

/// ECDHE_ECDSA: Certificate, the signed ServerKeyExchange and, when we verify the peer,
/// CertificateRequest. Returns whether the client's certificate was requested.
fn queue_ecdhe_ecdsa(
    cx: &mut Context,
    ecdsa_scheme: Option<SignatureScheme>,
) -> Result<bool, Error> {
    let cfg = cx.config.clone();
    let ck = cfg
        .certificate
        .clone()
        .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no certificate"))?;
    cx.queue_handshake(&HandshakePayload::Certificate(CertificateMsg {
        chain: ck.chain.clone(),
    }));
    let secret = EphemeralSecret::generate_from_rng(&mut *cx.rng);
    let public = p256::PublicKey::from(&secret)
        .to_sec1_point(false)
        .as_bytes()
        .to_vec();
    cx.hs.ecdh = Some(secret);
    let scheme = ecdsa_scheme
        .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no signature hash"))?;
    let ske = signed_key_exchange(cx, &ck, public, scheme)?;
    cx.queue_handshake(&HandshakePayload::ServerKeyExchange(
        ServerKeyExchange::Ecdhe(ske),
    ));
    if !cfg.verify_peer {
        return Ok(false);
    }
    cx.queue_handshake(&HandshakePayload::CertificateRequest(CertificateRequest {
        certificate_types: vec![CERT_TYPE_ECDSA_SIGN],
        schemes: certificate_verify_schemes(&cfg),
        // mbedtls' default `cert_req_ca_list`: the subjects of our CAs.
        authorities: cfg
            .trusted_roots
            .iter()
            .map(|r| r.subject_der().to_vec())
            .collect(),
    }));
    Ok(true)
}

/// RFC 8422 §5.4: our ephemeral point, signed over client_random || server_random || params.
fn signed_key_exchange(
    cx: &Context,
    key: &CertifiedKey,
    public: Vec<u8>,
    scheme: SignatureScheme,
) -> Result<EcdheServerKeyExchange, Error> {
    let mut ske = EcdheServerKeyExchange {
        group: NamedGroup::SECP256R1,
        public,
        scheme,
        signature: Vec::new(),
    };
    let mut signed = Vec::new();
    signed.extend_from_slice(&cx.hs.client_random);
    signed.extend_from_slice(&cx.hs.server_random);
    signed.extend_from_slice(&ske.params());
    ske.signature = sign(key, scheme, &signed)?;
    Ok(ske)
}

// -- Server: the client's second flight --

/// We sent CertificateRequest: the client's Certificate (RFC 5246 §7.4.6).
#[derive(Debug)]
pub(crate) struct ExpectClientCertificate;

impl Expect for ExpectClientCertificate {
    fn name(&self) -> &'static str {
        "ExpectClientCertificate"
    }

    fn handle(self: Box<Self>, cx: &mut Context, _now: Instant, message: Message) -> Transition {
        let c = expect_payload!(message, Certificate, State::Expect(self));
        let chain = verified_client_chain(&cx.config, c)?;
        let client_key = Some(cx.accept_peer_chain(chain, &message.full)?);
        Ok(State::expect(ExpectClientKeyExchange { client_key }))
    }
}

/// The client's chain, verified: its leaf's key signs the client's CertificateVerify.
fn verified_client_chain(cfg: &Config, c: CertificateMsg) -> Result<Vec<ParsedCert>, Error> {
    if c.chain.is_empty() {
        // OpenThread verifies the peer only when configured to; then a certificate is required.
        return Err(Error::hs(
            AlertDescription::HANDSHAKE_FAILURE,
            "client sent no certificate",
        ));
    }
    Ok(verify_chain(
        &c.chain,
        &cfg.trusted_roots,
        cfg.time_check,
        None,
    )?)
}

/// ClientKeyExchange (RFC 5246 §7.4.7, RFC 4279 §2, RFC 8422 §5.7).
#[derive(Debug)]
pub(crate) struct ExpectClientKeyExchange {
    /// The key of the client's certificate, if it sent one: a CertificateVerify follows.
    client_key: Option<VerifyingKey>,
}

impl Expect for ExpectClientKeyExchange {
    fn name(&self) -> &'static str {
        "ExpectClientKeyExchange"
    }

    fn handle(self: Box<Self>, cx: &mut Context, _now: Instant, message: Message) -> Transition {
        let cke = expect_payload!(message, ClientKeyExchange, State::Expect(self));
        // The extended master secret's session hash ends with this message.
        cx.hs.messages.extend_from_slice(&message.full);
        // Our flight stays buffered until the client's Finished: if the rest of the client's
        // flight is lost, our timer makes the client retransmit it (RFC 6347 §4.2.4).
        let pms = premaster(cx, cke)?;
        cx.derive_keys(&pms);
        Ok(match self.client_key {
            Some(client_key) => State::expect(ExpectCertificateVerify { client_key }),
            None => State::ExpectCcs(ExpectCcs),
        })
    }
}

/// The premaster secret the client's key exchange agrees on.
fn premaster(cx: &mut Context, cke: ClientKeyExchange) -> Result<Vec<u8>, Error> {
    match cke {
        ClientKeyExchange::Psk { identity } => {
            let psk = configured_psk(&cx.config)?;
            if identity != psk.identity {
                return Err(Error::hs(
                    AlertDescription::UNKNOWN_PSK_IDENTITY,
                    "unknown psk identity",
                ));
            }
            Ok(psk_premaster(&psk.key))
        }
        ClientKeyExchange::Ecdhe { public } => {
            let secret = cx
                .hs
                .ecdh
                .take()
                .ok_or_else(|| Error::hs(AlertDescription::INTERNAL_ERROR, "no ecdh key"))?;
            let peer = p256::PublicKey::from_sec1_bytes(&public)
                .map_err(|_| Error::hs(AlertDescription::ILLEGAL_PARAMETER, "invalid ec point"))?;
            Ok(secret.diffie_hellman(&peer).raw_secret_bytes().to_vec())
        }
        ClientKeyExchange::Ecjpake(body) => {
            read_ecjpake_round_two(&mut cx.hs, &body)?;
            let pms = ecjpake_context(&mut cx.hs)?
                .derive_premaster()
                .map_err(|e| {
                    Error::hs(AlertDescription::ILLEGAL_PARAMETER, format!("ecjpake: {e}"))
                })?;
            Ok(pms.to_vec())
        }
    }
}

/// The client sent a certificate: its CertificateVerify (RFC 5246 §7.4.8).
#[derive(Debug)]
pub(crate) struct ExpectCertificateVerify {
    client_key: VerifyingKey,
}

impl Expect for ExpectCertificateVerify {
    fn name(&self) -> &'static str {
        "ExpectCertificateVerify"
    }

    fn handle(self: Box<Self>, cx: &mut Context, _now: Instant, message: Message) -> Transition {
        let cv = expect_payload!(message, CertificateVerify, State::Expect(self));
        // RFC 5246 §7.4.8: the signature covers all handshake messages before this one.
        // mbedtls 3.1 takes a hash it keeps a handshake digest of, which is what its
        // CertificateRequest lists.
        if !certificate_verify_schemes(&cx.config).contains(&cv.scheme) {
            return Err(Error::hs(
                AlertDescription::ILLEGAL_PARAMETER,
                format!("certificate verify signed with {}", cv.scheme),
            ));
        }
        if !verify_signature(&self.client_key, cv.scheme, &cx.hs.messages, &cv.signature) {
            return Err(Error::hs(
                AlertDescription::DECRYPT_ERROR,
                "certificate verify signature does not verify",
            ));
        }
        cx.hs.messages.extend_from_slice(&message.full);
        Ok(State::ExpectCcs(ExpectCcs))
    }
}
