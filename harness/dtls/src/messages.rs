//! DTLS 1.2 record and handshake messages as parse/emit pairs (RFC 5246 §7.4, RFC 6347 §4).
//!
//! Key-exchange bodies depend on the negotiated suite, so [`HandshakePayload::read`] takes it.

use crate::codec::{
    Codec, CodecError, Reader, put_u16, put_u24, put_u48, put_vec_u8, put_vec_u16, put_vec_u24,
};
use crate::enums::*;

/// Length of the DTLS record header (RFC 6347 §4.1).
pub const RECORD_HEADER_LEN: usize = 13;
/// Length of the DTLS handshake header (RFC 6347 §4.2.2).
pub const HANDSHAKE_HEADER_LEN: usize = 12;
/// Largest DTLSPlaintext/DTLSCiphertext fragment we accept (RFC 5246 §6.2.3: 2^14 + 2048).
pub const MAX_CIPHERTEXT_LEN: usize = 16384 + 2048;

/// `DTLSPlaintext` header: type, version, epoch, 48-bit sequence number, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: ContentType,
    pub version: ProtocolVersion,
    pub epoch: u16,
    pub sequence: u64,
    pub length: u16,
}

impl Codec for RecordHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        self.content_type.encode(out);
        self.version.encode(out);
        put_u16(out, self.epoch);
        put_u48(out, self.sequence);
        put_u16(out, self.length);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(RecordHeader {
            content_type: ContentType::read(r)?,
            version: ProtocolVersion::read(r)?,
            epoch: r.u16()?,
            sequence: r.u48()?,
            length: r.u16()?,
        })
    }
}

/// One record of a datagram, borrowing its fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord<'a> {
    pub header: RecordHeader,
    pub fragment: &'a [u8],
}

/// Split a datagram into records (RFC 6347 §4.1.1: several records may share a datagram).
/// Returns the records that parsed and, if the tail was malformed, the error for it; a
/// receiver drops the bad tail silently (§4.1.2.7), a passive observer reports it.
pub fn split_records(datagram: &[u8]) -> (Vec<RawRecord<'_>>, Option<CodecError>) {
    let mut r = Reader::new(datagram);
    let mut out = Vec::new();
    while !r.is_empty() {
        let header = match RecordHeader::read(&mut r) {
            Ok(h) => h,
            Err(e) => return (out, Some(e)),
        };
        let fragment = match r.take(header.length as usize) {
            Ok(f) => f,
            Err(e) => return (out, Some(e)),
        };
        out.push(RawRecord { header, fragment });
    }
    (out, None)
}

/// Handshake header (RFC 6347 §4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeHeader {
    pub msg_type: HandshakeType,
    pub length: u32,
    pub message_seq: u16,
    pub fragment_offset: u32,
    pub fragment_length: u32,
}

impl Codec for HandshakeHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        self.msg_type.encode(out);
        put_u24(out, self.length);
        put_u16(out, self.message_seq);
        put_u24(out, self.fragment_offset);
        put_u24(out, self.fragment_length);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let h = HandshakeHeader {
            msg_type: HandshakeType::read(r)?,
            length: r.u24()?,
            message_seq: r.u16()?,
            fragment_offset: r.u24()?,
            fragment_length: r.u24()?,
        };
        if h.fragment_offset as u64 + h.fragment_length as u64 > h.length as u64 {
            return Err(CodecError::Invalid("fragment beyond message length"));
        }
        Ok(h)
    }
}

/// One handshake fragment from a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFragment<'a> {
    pub header: HandshakeHeader,
    pub body: &'a [u8],
}

/// Split a handshake record's plaintext into fragments (several may share a record).
pub fn split_handshake(fragment: &[u8]) -> Result<Vec<HandshakeFragment<'_>>, CodecError> {
    let mut r = Reader::new(fragment);
    let mut out = Vec::new();
    while !r.is_empty() {
        let header = HandshakeHeader::read(&mut r)?;
        let body = r.take(header.fragment_length as usize)?;
        out.push(HandshakeFragment { header, body });
    }
    Ok(out)
}

/// A TLS extension, body kept raw; typed accessors below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub typ: ExtensionType,
    pub data: Vec<u8>,
}

impl Codec for Extension {
    fn encode(&self, out: &mut Vec<u8>) {
        self.typ.encode(out);
        put_vec_u16(out, &self.data);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Extension {
            typ: ExtensionType::read(r)?,
            data: r.vec_u16()?,
        })
    }
}

impl Extension {
    /// An extension whose presence is the whole message (encrypt_then_mac, extended_master_secret).
    pub fn empty(typ: ExtensionType) -> Self {
        Extension {
            typ,
            data: Vec::new(),
        }
    }

    /// supported_groups (RFC 8422 §5.1.1).
    pub fn supported_groups(groups: &[NamedGroup]) -> Self {
        Extension {
            typ: ExtensionType::SUPPORTED_GROUPS,
            data: encode_u16_list(groups),
        }
    }

    /// ec_point_formats with `uncompressed` only (RFC 8422 §5.1.2).
    pub fn ec_point_formats() -> Self {
        Extension {
            typ: ExtensionType::EC_POINT_FORMATS,
            data: vec![1, 0],
        }
    }

    /// signature_algorithms (RFC 5246 §7.4.1.4.1).
    pub fn signature_algorithms(algs: &[SignatureScheme]) -> Self {
        Extension {
            typ: ExtensionType::SIGNATURE_ALGORITHMS,
            data: encode_u16_list(algs),
        }
    }

    /// The pairs of a signature_algorithms extension, in the sender's order.
    pub fn read_signature_algorithms(data: &[u8]) -> Result<Vec<SignatureScheme>, CodecError> {
        read_u16_list(data)
    }

    pub fn read_supported_groups(data: &[u8]) -> Result<Vec<NamedGroup>, CodecError> {
        read_u16_list(data)
    }
}

/// An extension body that is one list with a 16-bit length (groups, signature schemes).
fn encode_u16_list<T: Codec>(items: &[T]) -> Vec<u8> {
    let mut body = Vec::new();
    for item in items {
        item.encode(&mut body);
    }
    let mut data = Vec::new();
    put_vec_u16(&mut data, &body);
    data
}

fn read_u16_list<T: Codec>(data: &[u8]) -> Result<Vec<T>, CodecError> {
    let mut r = Reader::new(data);
    let mut list = r.sub_u16()?;
    r.finish()?;
    let mut out = Vec::new();
    while !list.is_empty() {
        out.push(T::read(&mut list)?);
    }
    Ok(out)
}

fn read_extensions(r: &mut Reader<'_>) -> Result<Vec<Extension>, CodecError> {
    // The extensions block is optional (RFC 5246 §7.4.1.2: "may be absent").
    if r.is_empty() {
        return Ok(Vec::new());
    }
    let mut list = r.sub_u16()?;
    let mut out = Vec::new();
    while !list.is_empty() {
        out.push(Extension::read(&mut list)?);
    }
    Ok(out)
}

fn encode_extensions(exts: &[Extension], out: &mut Vec<u8>) {
    if exts.is_empty() {
        return;
    }
    let mut body = Vec::new();
    for e in exts {
        e.encode(&mut body);
    }
    put_vec_u16(out, &body);
}

pub fn find_extension(exts: &[Extension], typ: ExtensionType) -> Option<&Extension> {
    exts.iter().find(|e| e.typ == typ)
}

/// ClientHello (RFC 6347 §4.2.1: with a cookie field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub client_version: ProtocolVersion,
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    pub cookie: Vec<u8>,
    pub cipher_suites: Vec<CipherSuite>,
    pub compression_methods: Vec<u8>,
    pub extensions: Vec<Extension>,
}

impl Codec for ClientHello {
    fn encode(&self, out: &mut Vec<u8>) {
        self.client_version.encode(out);
        out.extend_from_slice(&self.random);
        put_vec_u8(out, &self.session_id);
        put_vec_u8(out, &self.cookie);
        let mut suites = Vec::new();
        for s in &self.cipher_suites {
            s.encode(&mut suites);
        }
        put_vec_u16(out, &suites);
        put_vec_u8(out, &self.compression_methods);
        encode_extensions(&self.extensions, out);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let client_version = ProtocolVersion::read(r)?;
        let random = r.array()?;
        let session_id = r.vec_u8()?;
        if session_id.len() > 32 {
            return Err(CodecError::Invalid("session id longer than 32 bytes"));
        }
        let cookie = r.vec_u8()?;
        let mut suites_r = r.sub_u16()?;
        if suites_r.left() % 2 != 0 || suites_r.is_empty() {
            return Err(CodecError::Invalid("cipher suite list length"));
        }
        let mut cipher_suites = Vec::new();
        while !suites_r.is_empty() {
            cipher_suites.push(CipherSuite::read(&mut suites_r)?);
        }
        let compression_methods = r.vec_u8()?;
        if compression_methods.is_empty() {
            return Err(CodecError::Invalid("no compression methods"));
        }
        let extensions = read_extensions(r)?;
        Ok(ClientHello {
            client_version,
            random,
            session_id,
            cookie,
            cipher_suites,
            compression_methods,
            extensions,
        })
    }
}

/// HelloVerifyRequest (RFC 6347 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloVerifyRequest {
    pub server_version: ProtocolVersion,
    pub cookie: Vec<u8>,
}

impl Codec for HelloVerifyRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        self.server_version.encode(out);
        put_vec_u8(out, &self.cookie);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(HelloVerifyRequest {
            server_version: ProtocolVersion::read(r)?,
            cookie: r.vec_u8()?,
        })
    }
}

/// ServerHello (RFC 5246 §7.4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    pub server_version: ProtocolVersion,
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    pub cipher_suite: CipherSuite,
    pub compression_method: u8,
    pub extensions: Vec<Extension>,
}

impl Codec for ServerHello {
    fn encode(&self, out: &mut Vec<u8>) {
        self.server_version.encode(out);
        out.extend_from_slice(&self.random);
        put_vec_u8(out, &self.session_id);
        self.cipher_suite.encode(out);
        out.push(self.compression_method);
        encode_extensions(&self.extensions, out);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let server_version = ProtocolVersion::read(r)?;
        let random = r.array()?;
        let session_id = r.vec_u8()?;
        if session_id.len() > 32 {
            return Err(CodecError::Invalid("session id longer than 32 bytes"));
        }
        Ok(ServerHello {
            server_version,
            random,
            session_id,
            cipher_suite: CipherSuite::read(r)?,
            compression_method: r.u8()?,
            extensions: read_extensions(r)?,
        })
    }
}

/// Certificate: a chain of DER certificates, leaf first (RFC 5246 §7.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateMsg {
    pub chain: Vec<Vec<u8>>,
}

impl Codec for CertificateMsg {
    fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::new();
        for c in &self.chain {
            put_vec_u24(&mut body, c);
        }
        put_vec_u24(out, &body);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let mut list = r.sub_u24()?;
        let mut chain = Vec::new();
        while !list.is_empty() {
            let c = list.sub_u24()?.take_rest();
            if c.is_empty() {
                return Err(CodecError::Invalid("empty certificate"));
            }
            chain.push(c.to_vec());
        }
        Ok(CertificateMsg { chain })
    }
}

/// ECDHE ServerKeyExchange for a named curve (RFC 8422 §5.4):
/// `ECParameters(03 || group) || ECPoint || SignatureAndHash || signature<2>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdheServerKeyExchange {
    pub group: NamedGroup,
    pub public: Vec<u8>,
    pub scheme: SignatureScheme,
    pub signature: Vec<u8>,
}

/// `ECCurveType.named_curve` (RFC 8422 §5.4).
pub const CURVE_TYPE_NAMED: u8 = 3;

impl EcdheServerKeyExchange {
    /// The signed part: `ECParameters || ECPoint`.
    pub fn params(&self) -> Vec<u8> {
        let mut out = vec![CURVE_TYPE_NAMED];
        self.group.encode(&mut out);
        put_vec_u8(&mut out, &self.public);
        out
    }
}

impl Codec for EcdheServerKeyExchange {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.params());
        self.scheme.encode(out);
        put_vec_u16(out, &self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        if r.u8()? != CURVE_TYPE_NAMED {
            return Err(CodecError::Invalid("curve type is not named_curve"));
        }
        Ok(EcdheServerKeyExchange {
            group: NamedGroup::read(r)?,
            public: r.vec_u8()?,
            scheme: SignatureScheme::read(r)?,
            signature: r.vec_u16()?,
        })
    }
}

/// ServerKeyExchange, by suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKeyExchange {
    /// RFC 4279 §2: `psk_identity_hint<0..2^16-1>`.
    Psk {
        hint: Vec<u8>,
    },
    Ecdhe(EcdheServerKeyExchange),
    /// `ECParameters(03 00 17) || ECJPAKEKeyKP`, kept whole for the ecjpake module.
    Ecjpake(Vec<u8>),
}

/// ClientKeyExchange, by suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeyExchange {
    /// RFC 4279 §2: `psk_identity<0..2^16-1>`.
    Psk { identity: Vec<u8> },
    /// RFC 8422 §5.7: `ECPoint` with an u8 length.
    Ecdhe { public: Vec<u8> },
    /// `ECJPAKEKeyKP` with no extra length prefix.
    Ecjpake(Vec<u8>),
}

/// CertificateRequest (RFC 5246 §7.4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    pub certificate_types: Vec<u8>,
    pub schemes: Vec<SignatureScheme>,
    pub authorities: Vec<Vec<u8>>,
}

/// `ClientCertificateType.ecdsa_sign` (RFC 8422 §5.5).
pub const CERT_TYPE_ECDSA_SIGN: u8 = 64;

impl Codec for CertificateRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        put_vec_u8(out, &self.certificate_types);
        let mut s = Vec::new();
        for x in &self.schemes {
            x.encode(&mut s);
        }
        put_vec_u16(out, &s);
        let mut a = Vec::new();
        for x in &self.authorities {
            put_vec_u16(&mut a, x);
        }
        put_vec_u16(out, &a);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        let certificate_types = r.vec_u8()?;
        let mut sr = r.sub_u16()?;
        let mut schemes = Vec::new();
        while !sr.is_empty() {
            schemes.push(SignatureScheme::read(&mut sr)?);
        }
        let mut ar = r.sub_u16()?;
        let mut authorities = Vec::new();
        while !ar.is_empty() {
            authorities.push(ar.vec_u16()?);
        }
        Ok(CertificateRequest {
            certificate_types,
            schemes,
            authorities,
        })
    }
}

/// CertificateVerify (RFC 5246 §7.4.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateVerify {
    pub scheme: SignatureScheme,
    pub signature: Vec<u8>,
}

impl Codec for CertificateVerify {
    fn encode(&self, out: &mut Vec<u8>) {
        self.scheme.encode(out);
        put_vec_u16(out, &self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(CertificateVerify {
            scheme: SignatureScheme::read(r)?,
            signature: r.vec_u16()?,
        })
    }
}

/// Alert (RFC 5246 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub level: AlertLevel,
    pub description: AlertDescription,
}

impl Codec for Alert {
    fn encode(&self, out: &mut Vec<u8>) {
        self.level.encode(out);
        self.description.encode(out);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Alert {
            level: AlertLevel::read(r)?,
            description: AlertDescription::read(r)?,
        })
    }
}

/// A complete (reassembled) handshake message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakePayload {
    HelloRequest,
    ClientHello(ClientHello),
    ServerHello(ServerHello),
    HelloVerifyRequest(HelloVerifyRequest),
    Certificate(CertificateMsg),
    ServerKeyExchange(ServerKeyExchange),
    CertificateRequest(CertificateRequest),
    ServerHelloDone,
    CertificateVerify(CertificateVerify),
    ClientKeyExchange(ClientKeyExchange),
    Finished([u8; 12]),
    /// A type we do not know, or a key exchange message whose suite is unknown.
    Unknown(HandshakeType, Vec<u8>),
}

impl HandshakePayload {
    pub fn msg_type(&self) -> HandshakeType {
        match self {
            HandshakePayload::HelloRequest => HandshakeType::HELLO_REQUEST,
            HandshakePayload::ClientHello(_) => HandshakeType::CLIENT_HELLO,
            HandshakePayload::ServerHello(_) => HandshakeType::SERVER_HELLO,
            HandshakePayload::HelloVerifyRequest(_) => HandshakeType::HELLO_VERIFY_REQUEST,
            HandshakePayload::Certificate(_) => HandshakeType::CERTIFICATE,
            HandshakePayload::ServerKeyExchange(_) => HandshakeType::SERVER_KEY_EXCHANGE,
            HandshakePayload::CertificateRequest(_) => HandshakeType::CERTIFICATE_REQUEST,
            HandshakePayload::ServerHelloDone => HandshakeType::SERVER_HELLO_DONE,
            HandshakePayload::CertificateVerify(_) => HandshakeType::CERTIFICATE_VERIFY,
            HandshakePayload::ClientKeyExchange(_) => HandshakeType::CLIENT_KEY_EXCHANGE,
            HandshakePayload::Finished(_) => HandshakeType::FINISHED,
            HandshakePayload::Unknown(t, _) => *t,
        }
    }

    /// Encode the body (without handshake header).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            HandshakePayload::HelloRequest | HandshakePayload::ServerHelloDone => {}
            HandshakePayload::ClientHello(m) => m.encode(&mut out),
            HandshakePayload::ServerHello(m) => m.encode(&mut out),
            HandshakePayload::HelloVerifyRequest(m) => m.encode(&mut out),
            HandshakePayload::Certificate(m) => m.encode(&mut out),
            HandshakePayload::ServerKeyExchange(ServerKeyExchange::Psk { hint }) => {
                put_vec_u16(&mut out, hint)
            }
            HandshakePayload::ServerKeyExchange(ServerKeyExchange::Ecdhe(m)) => m.encode(&mut out),
            HandshakePayload::ServerKeyExchange(ServerKeyExchange::Ecjpake(b)) => {
                out.extend_from_slice(b)
            }
            HandshakePayload::CertificateRequest(m) => m.encode(&mut out),
            HandshakePayload::CertificateVerify(m) => m.encode(&mut out),
            HandshakePayload::ClientKeyExchange(ClientKeyExchange::Psk { identity }) => {
                put_vec_u16(&mut out, identity)
            }
            HandshakePayload::ClientKeyExchange(ClientKeyExchange::Ecdhe { public }) => {
                put_vec_u8(&mut out, public)
            }
            HandshakePayload::ClientKeyExchange(ClientKeyExchange::Ecjpake(b)) => {
                out.extend_from_slice(b)
            }
            HandshakePayload::Finished(v) => out.extend_from_slice(v),
            HandshakePayload::Unknown(_, b) => out.extend_from_slice(b),
        }
        out
    }

    /// Parse a complete body. Key exchange messages need the negotiated `suite`;
    /// without it (or for an unknown suite) they come back as [`HandshakePayload::Unknown`].
    pub fn read(
        msg_type: HandshakeType,
        body: &[u8],
        suite: Option<CipherSuite>,
    ) -> Result<Self, CodecError> {
        let mut r = Reader::new(body);
        let kx = suite.and_then(|s| s.key_exchange());
        let p = match msg_type {
            HandshakeType::HELLO_REQUEST => HandshakePayload::HelloRequest,
            HandshakeType::CLIENT_HELLO => {
                HandshakePayload::ClientHello(ClientHello::read(&mut r)?)
            }
            HandshakeType::SERVER_HELLO => {
                HandshakePayload::ServerHello(ServerHello::read(&mut r)?)
            }
            HandshakeType::HELLO_VERIFY_REQUEST => {
                HandshakePayload::HelloVerifyRequest(HelloVerifyRequest::read(&mut r)?)
            }
            HandshakeType::CERTIFICATE => {
                HandshakePayload::Certificate(CertificateMsg::read(&mut r)?)
            }
            HandshakeType::SERVER_KEY_EXCHANGE => match kx {
                Some(KeyExchange::Psk) => {
                    HandshakePayload::ServerKeyExchange(ServerKeyExchange::Psk {
                        hint: r.vec_u16()?,
                    })
                }
                Some(KeyExchange::EcdheEcdsa) => HandshakePayload::ServerKeyExchange(
                    ServerKeyExchange::Ecdhe(EcdheServerKeyExchange::read(&mut r)?),
                ),
                Some(KeyExchange::Ecjpake) => HandshakePayload::ServerKeyExchange(
                    ServerKeyExchange::Ecjpake(r.take_rest().to_vec()),
                ),
                None => HandshakePayload::Unknown(msg_type, r.take_rest().to_vec()),
            },
            HandshakeType::CERTIFICATE_REQUEST => {
                HandshakePayload::CertificateRequest(CertificateRequest::read(&mut r)?)
            }
            HandshakeType::SERVER_HELLO_DONE => HandshakePayload::ServerHelloDone,
            HandshakeType::CERTIFICATE_VERIFY => {
                HandshakePayload::CertificateVerify(CertificateVerify::read(&mut r)?)
            }
            HandshakeType::CLIENT_KEY_EXCHANGE => match kx {
                Some(KeyExchange::Psk) => {
                    HandshakePayload::ClientKeyExchange(ClientKeyExchange::Psk {
                        identity: r.vec_u16()?,
                    })
                }
                Some(KeyExchange::EcdheEcdsa) => {
                    HandshakePayload::ClientKeyExchange(ClientKeyExchange::Ecdhe {
                        public: r.vec_u8()?,
                    })
                }
                Some(KeyExchange::Ecjpake) => HandshakePayload::ClientKeyExchange(
                    ClientKeyExchange::Ecjpake(r.take_rest().to_vec()),
                ),
                None => HandshakePayload::Unknown(msg_type, r.take_rest().to_vec()),
            },
            HandshakeType::FINISHED => HandshakePayload::Finished(r.array()?),
            _ => HandshakePayload::Unknown(msg_type, r.take_rest().to_vec()),
        };
        r.finish()?;
        Ok(p)
    }
}

/// Emit one unfragmented handshake message (header + body).
pub fn encode_handshake(msg_type: HandshakeType, message_seq: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HANDSHAKE_HEADER_LEN + body.len());
    HandshakeHeader {
        msg_type,
        length: body.len() as u32,
        message_seq,
        fragment_offset: 0,
        fragment_length: body.len() as u32,
    }
    .encode(&mut out);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::unhex as hex;

    #[test]
    fn record_header_fixture() {
        let b = hex("16 fefd 0001 000000000007 0010");
        let h = RecordHeader::read_bytes(&b).unwrap();
        assert_eq!(h.content_type, ContentType::HANDSHAKE);
        assert_eq!(h.version, ProtocolVersion::DTLS1_2);
        assert_eq!((h.epoch, h.sequence, h.length), (1, 7, 16));
        assert_eq!(h.get_encoding(), b);
        assert!(RecordHeader::read_bytes(&b[..12]).is_err());
    }

    #[test]
    fn split_records_reports_bad_tail() {
        let mut d = hex("15 fefd 0000 000000000000 0002 0100");
        d.extend(hex("17 fefd 0001 000000000001 0009 aa"));
        let (recs, err) = split_records(&d);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].fragment, [1, 0]);
        assert_eq!(err, Some(CodecError::Truncated));
    }

    #[test]
    fn handshake_header_fixture_and_bounds() {
        let b = hex("01 000100 0002 000010 000020");
        let h = HandshakeHeader::read_bytes(&b).unwrap();
        assert_eq!(
            (
                h.msg_type,
                h.length,
                h.message_seq,
                h.fragment_offset,
                h.fragment_length
            ),
            (HandshakeType::CLIENT_HELLO, 256, 2, 16, 32)
        );
        assert_eq!(h.get_encoding(), b);
        let bad = hex("01 000010 0000 000008 000009");
        assert!(HandshakeHeader::read_bytes(&bad).is_err());
    }

    /// ClientHello as sent by an mbedtls DTLS client offering ECJPAKE with a (short, fake) kkpp body.
    #[test]
    fn client_hello_fixture() {
        let b = hex(
            "fefd 0000000000000000000000000000000000000000000000000000000000000000
             00 04 a1a2a3a4 0004 c0ff c0a8 01 00
             0014 000a 0004 0002 0017 000b 0002 0100 0100 0002 abcd",
        );
        let ch = ClientHello::read_bytes(&b).unwrap();
        assert_eq!(ch.cookie, [0xa1, 0xa2, 0xa3, 0xa4]);
        assert_eq!(
            ch.cipher_suites,
            [
                CipherSuite::ECJPAKE_WITH_AES_128_CCM_8,
                CipherSuite::PSK_WITH_AES_128_CCM_8
            ]
        );
        assert_eq!(ch.extensions.len(), 3);
        assert_eq!(
            Extension::read_supported_groups(&ch.extensions[0].data).unwrap(),
            [NamedGroup::SECP256R1]
        );
        assert_eq!(
            find_extension(&ch.extensions, ExtensionType::ECJPAKE_KKPP)
                .unwrap()
                .data,
            [0xab, 0xcd]
        );
        assert_eq!(ch.get_encoding(), b);
        // One byte more or less must be rejected.
        let mut longer = b.clone();
        longer.push(0);
        assert!(ClientHello::read_bytes(&longer).is_err());
        assert!(ClientHello::read_bytes(&b[..b.len() - 1]).is_err());
        // Odd suite list length.
        let odd = hex(
            "fefd 0000000000000000000000000000000000000000000000000000000000000000 00 00 0003 c0ffc0 01 00",
        );
        assert!(ClientHello::read_bytes(&odd).is_err());
    }

    /// The hello extensions an NCS build's mbedtls 3.1 writes for ECDHE-ECDSA, byte for byte:
    /// signature_algorithms `06 03 04 03`, supported_groups `00 17`, ec_point_formats, and the
    /// empty encrypt_then_mac and extended_master_secret.
    #[test]
    fn list_extensions_and_empty_extensions_fixture() {
        let exts = [
            Extension::signature_algorithms(&[
                SignatureScheme::ECDSA_SHA512,
                SignatureScheme::ECDSA_SHA256,
            ]),
            Extension::supported_groups(&[NamedGroup::SECP256R1]),
            Extension::ec_point_formats(),
            Extension::empty(ExtensionType::ENCRYPT_THEN_MAC),
            Extension::empty(ExtensionType::EXTENDED_MASTER_SECRET),
        ];
        let mut wire = Vec::new();
        for e in &exts {
            e.encode(&mut wire);
        }
        assert_eq!(
            wire,
            hex(
                "000d 0006 0004 0603 0403  000a 0004 0002 0017  000b 0002 0100  0016 0000  0017 0000"
            )
        );
        assert_eq!(
            Extension::read_signature_algorithms(&exts[0].data).unwrap(),
            [SignatureScheme::ECDSA_SHA512, SignatureScheme::ECDSA_SHA256]
        );
        // A list length that disagrees with the body, or an odd one, is an error.
        assert!(Extension::read_signature_algorithms(&hex("0004 0603")).is_err());
        assert!(Extension::read_signature_algorithms(&hex("0003 060304")).is_err());
        assert!(Extension::read_supported_groups(&hex("0002 0017 00")).is_err());
    }

    #[test]
    fn server_hello_and_hvr_fixtures() {
        let b =
            hex("fefd 1111111111111111111111111111111111111111111111111111111111111111 00 c0a8 00");
        let sh = ServerHello::read_bytes(&b).unwrap();
        assert_eq!(sh.cipher_suite, CipherSuite::PSK_WITH_AES_128_CCM_8);
        assert!(sh.extensions.is_empty());
        assert_eq!(sh.get_encoding(), b);
        let hvr = hex("fefd 03 010203");
        let m = HelloVerifyRequest::read_bytes(&hvr).unwrap();
        assert_eq!(m.cookie, [1, 2, 3]);
        assert_eq!(m.get_encoding(), hvr);
    }

    #[test]
    fn key_exchange_by_suite() {
        let psk_cke = hex("0005 7073 6b69 64");
        let p = HandshakePayload::read(
            HandshakeType::CLIENT_KEY_EXCHANGE,
            &psk_cke,
            Some(CipherSuite::PSK_WITH_AES_128_CCM_8),
        )
        .unwrap();
        assert_eq!(
            p,
            HandshakePayload::ClientKeyExchange(ClientKeyExchange::Psk {
                identity: b"pskid".to_vec()
            })
        );
        assert_eq!(p.encode_body(), psk_cke);
        let unknown =
            HandshakePayload::read(HandshakeType::CLIENT_KEY_EXCHANGE, &psk_cke, None).unwrap();
        assert!(matches!(unknown, HandshakePayload::Unknown(..)));

        let mut ske = hex("03 0017 03 040102 0403 0002 3000");
        let p = HandshakePayload::read(
            HandshakeType::SERVER_KEY_EXCHANGE,
            &ske,
            Some(CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8),
        )
        .unwrap();
        let HandshakePayload::ServerKeyExchange(ServerKeyExchange::Ecdhe(e)) = &p else {
            panic!("wrong kind")
        };
        assert_eq!(e.group, NamedGroup::SECP256R1);
        assert_eq!(e.public, [4, 1, 2]);
        assert_eq!(e.scheme, SignatureScheme::ECDSA_SHA256);
        assert_eq!(e.params(), hex("03 0017 03 040102"));
        assert_eq!(p.encode_body(), ske);
        ske[0] = 1;
        assert!(
            HandshakePayload::read(
                HandshakeType::SERVER_KEY_EXCHANGE,
                &ske,
                Some(CipherSuite::ECDHE_ECDSA_WITH_AES_128_CCM_8)
            )
            .is_err()
        );
    }

    #[test]
    fn certificate_and_request_fixtures() {
        let b = hex("000008 000002 3000 000000");
        assert!(
            CertificateMsg::read_bytes(&b).is_err(),
            "empty certificate entry"
        );
        let b = hex("000009 000002 3000 000001 aa");
        let c = CertificateMsg::read_bytes(&b).unwrap();
        assert_eq!(c.chain, vec![vec![0x30, 0], vec![0xaa]]);
        assert_eq!(c.get_encoding(), b);
        let cr = hex("01 40 0002 0403 0000");
        let m = CertificateRequest::read_bytes(&cr).unwrap();
        assert_eq!(m.certificate_types, [CERT_TYPE_ECDSA_SIGN]);
        assert_eq!(m.schemes, [SignatureScheme::ECDSA_SHA256]);
        assert_eq!(m.get_encoding(), cr);
    }

    #[test]
    fn finished_and_alert() {
        let p = HandshakePayload::read(HandshakeType::FINISHED, &[7; 12], None).unwrap();
        assert_eq!(p, HandshakePayload::Finished([7; 12]));
        assert!(HandshakePayload::read(HandshakeType::FINISHED, &[7; 13], None).is_err());
        assert!(HandshakePayload::read(HandshakeType::SERVER_HELLO_DONE, &[0], None).is_err());
        let a = Alert::read_bytes(&[2, 40]).unwrap();
        assert_eq!(a.description, AlertDescription::HANDSHAKE_FAILURE);
        let hs = encode_handshake(HandshakeType::SERVER_HELLO_DONE, 3, &[]);
        let frags = split_handshake(&hs).unwrap();
        assert_eq!(frags[0].header.message_seq, 3);
        assert_eq!(frags[0].body, &[] as &[u8]);
    }
}
