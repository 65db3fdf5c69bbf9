//! Handshake transcripts: one structured entry per record, built by the engine for its own
//! connection or by [`TranscriptBuilder`] from datagrams seen on the air without keys.
//!
//! Nothing secret or run-specific goes in: no randoms, cookies, session ids, key shares,
//! signatures, addresses or timestamps. Cookies and bodies appear as lengths only, so a
//! snapshot needs no redaction beyond what the caller adds around it.

use std::fmt;

use serde::Serialize;

use crate::cert::ParsedCert;
use crate::codec::Codec;
use crate::enums::*;
use crate::messages::{
    Alert, ClientHello, ClientKeyExchange, HandshakePayload, ServerKeyExchange, find_extension,
    split_handshake, split_records,
};
use crate::reassembly::Reassembler;

/// Who sent a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::ClientToServer => "C->S",
            Direction::ServerToClient => "S->C",
        }
    }
    fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub direction: Direction,
    pub epoch: u16,
    pub sequence: u64,
    pub content_type: ContentType,
    /// Sent under a negotiated cipher (epoch > 0).
    pub encrypted: bool,
    pub body: Body,
}

/// What a record carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind")]
pub enum Body {
    Handshake {
        messages: Vec<HandshakeEntry>,
    },
    ChangeCipherSpec,
    Alert {
        level: AlertLevel,
        description: AlertDescription,
    },
    ApplicationData {
        length: usize,
    },
    /// Ciphertext this observer cannot read.
    Encrypted {
        length: usize,
    },
    Malformed {
        reason: String,
    },
}

/// One handshake fragment of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandshakeEntry {
    pub msg_type: HandshakeType,
    pub message_seq: u16,
    pub length: u32,
    pub fragment_offset: u32,
    pub fragment_length: u32,
    /// Decoded fields once the message is complete (this fragment completed it).
    pub fields: Option<Fields>,
}

/// Decoded, non-secret fields of a handshake message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "message")]
pub enum Fields {
    ClientHello {
        cookie_len: usize,
        offered_suites: Vec<CipherSuite>,
        extensions: Vec<ExtensionType>,
        supported_groups: Vec<NamedGroup>,
        signature_algorithms: Vec<SignatureScheme>,
    },
    HelloVerifyRequest {
        cookie_len: usize,
    },
    ServerHello {
        chosen_suite: CipherSuite,
        extensions: Vec<ExtensionType>,
    },
    Certificate {
        subjects: Vec<String>,
    },
    ServerKeyExchange {
        key_exchange: String,
    },
    CertificateRequest {
        certificate_types: Vec<u8>,
        schemes: Vec<SignatureScheme>,
        /// Distinguished names of the acceptable CAs, RFC 4514 style.
        authorities: Vec<String>,
    },
    ServerHelloDone,
    ClientKeyExchange {
        key_exchange: String,
    },
    CertificateVerify {
        scheme: SignatureScheme,
    },
    Finished,
    HelloRequest,
    Unknown {
        length: usize,
    },
    Malformed {
        reason: String,
    },
}

impl Fields {
    /// Decode a complete message body; `suite` is the one the ServerHello chose, if seen.
    pub fn decode(msg_type: HandshakeType, body: &[u8], suite: Option<CipherSuite>) -> Fields {
        let p = match HandshakePayload::read(msg_type, body, suite) {
            Ok(p) => p,
            Err(e) => {
                return Fields::Malformed {
                    reason: e.to_string(),
                };
            }
        };
        match p {
            HandshakePayload::HelloRequest => Fields::HelloRequest,
            HandshakePayload::ClientHello(ch) => client_hello_fields(&ch),
            HandshakePayload::HelloVerifyRequest(h) => Fields::HelloVerifyRequest {
                cookie_len: h.cookie.len(),
            },
            HandshakePayload::ServerHello(sh) => Fields::ServerHello {
                chosen_suite: sh.cipher_suite,
                extensions: sh.extensions.iter().map(|e| e.typ).collect(),
            },
            HandshakePayload::Certificate(c) => Fields::Certificate {
                subjects: c
                    .chain
                    .iter()
                    .map(|d| match ParsedCert::parse(d) {
                        Ok(p) => p.subject,
                        Err(e) => format!("<{e}>"),
                    })
                    .collect(),
            },
            HandshakePayload::ServerKeyExchange(s) => Fields::ServerKeyExchange {
                key_exchange: server_key_exchange_summary(&s),
            },
            HandshakePayload::CertificateRequest(c) => Fields::CertificateRequest {
                certificate_types: c.certificate_types,
                schemes: c.schemes,
                authorities: c
                    .authorities
                    .iter()
                    .map(|dn| {
                        match <x509_cert::name::Name as x509_cert::der::Decode>::from_der(dn) {
                            Ok(name) => name.to_string(),
                            Err(e) => format!("<{e}>"),
                        }
                    })
                    .collect(),
            },
            HandshakePayload::ServerHelloDone => Fields::ServerHelloDone,
            HandshakePayload::ClientKeyExchange(c) => Fields::ClientKeyExchange {
                key_exchange: client_key_exchange_summary(&c),
            },
            HandshakePayload::CertificateVerify(c) => {
                Fields::CertificateVerify { scheme: c.scheme }
            }
            HandshakePayload::Finished(_) => Fields::Finished,
            HandshakePayload::Unknown(_, b) => Fields::Unknown { length: b.len() },
        }
    }
}

/// The parts of a ClientHello a transcript shows: what is offered, not the random or cookie.
fn client_hello_fields(ch: &ClientHello) -> Fields {
    Fields::ClientHello {
        cookie_len: ch.cookie.len(),
        offered_suites: ch.cipher_suites.clone(),
        extensions: ch.extensions.iter().map(|e| e.typ).collect(),
        supported_groups: find_extension(&ch.extensions, ExtensionType::SUPPORTED_GROUPS)
            .and_then(|e| crate::messages::Extension::read_supported_groups(&e.data).ok())
            .unwrap_or_default(),
        signature_algorithms: find_extension(&ch.extensions, ExtensionType::SIGNATURE_ALGORITHMS)
            .and_then(|e| crate::messages::Extension::read_signature_algorithms(&e.data).ok())
            .unwrap_or_default(),
    }
}

/// A ServerKeyExchange's kind and sizes, without key material.
fn server_key_exchange_summary(s: &ServerKeyExchange) -> String {
    match s {
        ServerKeyExchange::Psk { hint } => format!("psk hint ({} bytes)", hint.len()),
        ServerKeyExchange::Ecdhe(e) => format!("ecdhe {} signed {}", e.group, e.scheme),
        ServerKeyExchange::Ecjpake(b) => {
            format!("ecjpake round two ({} bytes)", b.len())
        }
    }
}

/// A ClientKeyExchange's kind and sizes, without key material.
fn client_key_exchange_summary(c: &ClientKeyExchange) -> String {
    match c {
        ClientKeyExchange::Psk { identity } => {
            format!("psk identity ({} bytes)", identity.len())
        }
        ClientKeyExchange::Ecdhe { public } => {
            format!("ecdhe public ({} bytes)", public.len())
        }
        ClientKeyExchange::Ecjpake(b) => {
            format!("ecjpake round two ({} bytes)", b.len())
        }
    }
}

/// The records of one connection, in the order they were sent or seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Transcript {
    pub entries: Vec<Entry>,
}

impl Transcript {
    /// The suite chosen by the first ServerHello, if any.
    pub fn chosen_suite(&self) -> Option<CipherSuite> {
        self.handshake_fields().find_map(|f| match f {
            Fields::ServerHello { chosen_suite, .. } => Some(*chosen_suite),
            _ => None,
        })
    }

    /// All decoded handshake fields, in order.
    pub fn handshake_fields(&self) -> impl Iterator<Item = &Fields> {
        self.entries.iter().flat_map(|e| match &e.body {
            Body::Handshake { messages: h } => h
                .iter()
                .filter_map(|x| x.fields.as_ref())
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        })
    }

    /// Alerts seen, with their direction.
    pub fn alerts(&self) -> Vec<(Direction, AlertLevel, AlertDescription)> {
        self.entries
            .iter()
            .filter_map(|e| match e.body {
                Body::Alert { level, description } => Some((e.direction, level, description)),
                _ => None,
            })
            .collect()
    }
}

fn list<T: fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fields::ClientHello {
                cookie_len,
                offered_suites,
                extensions,
                supported_groups,
                signature_algorithms,
            } => write!(
                f,
                "cookie={cookie_len}B suites=[{}] ext=[{}] groups=[{}] sigalgs=[{}]",
                list(offered_suites),
                list(extensions),
                list(supported_groups),
                list(signature_algorithms)
            ),
            Fields::HelloVerifyRequest { cookie_len } => write!(f, "cookie={cookie_len}B"),
            Fields::ServerHello {
                chosen_suite,
                extensions,
            } => write!(f, "suite={chosen_suite} ext=[{}]", list(extensions)),
            Fields::Certificate { subjects } => write!(f, "subjects=[{}]", subjects.join(" | ")),
            Fields::ServerKeyExchange { key_exchange }
            | Fields::ClientKeyExchange { key_exchange } => f.write_str(key_exchange),
            Fields::CertificateRequest {
                certificate_types,
                schemes,
                authorities,
            } => {
                write!(
                    f,
                    "types={certificate_types:?} schemes=[{}] authorities=[{}]",
                    list(schemes),
                    authorities.join(" | ")
                )
            }
            Fields::CertificateVerify { scheme } => write!(f, "scheme={scheme}"),
            Fields::Unknown { length } => write!(f, "{length}B"),
            Fields::Malformed { reason } => write!(f, "malformed: {reason}"),
            Fields::ServerHelloDone | Fields::Finished | Fields::HelloRequest => Ok(()),
        }
    }
}

/// Stable, line-per-record rendering for people and snapshots.
impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            let enc = if e.encrypted { " [encrypted]" } else { "" };
            write!(
                f,
                "{} e{} #{}{} ",
                e.direction.arrow(),
                e.epoch,
                e.sequence,
                enc
            )?;
            match &e.body {
                Body::Handshake { messages: hs } => {
                    let parts: Vec<String> = hs
                        .iter()
                        .map(|h| {
                            let frag = if h.fragment_offset == 0 && h.fragment_length == h.length {
                                String::new()
                            } else {
                                format!(
                                    " frag {}+{}/{}",
                                    h.fragment_offset, h.fragment_length, h.length
                                )
                            };
                            let fields = match &h.fields {
                                Some(x) => {
                                    let s = x.to_string();
                                    if s.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" {s}")
                                    }
                                }
                                None => String::new(),
                            };
                            format!("{} seq={}{frag}{fields}", h.msg_type, h.message_seq)
                        })
                        .collect();
                    writeln!(f, "Handshake {}", parts.join("; "))?;
                }
                Body::ChangeCipherSpec => writeln!(f, "ChangeCipherSpec")?,
                Body::Alert { level, description } => writeln!(f, "Alert {level} {description}")?,
                Body::ApplicationData { length } => writeln!(f, "ApplicationData {length}B")?,
                Body::Encrypted { length } => writeln!(f, "{} {length}B", e.content_type)?,
                Body::Malformed { reason } => writeln!(f, "Malformed: {reason}")?,
            }
        }
        Ok(())
    }
}

/// Build a transcript from datagrams observed in both directions, without keys.
/// Records after a ChangeCipherSpec in the same direction are shown as [`Body::Encrypted`].
#[derive(Debug, Default)]
pub struct TranscriptBuilder {
    transcript: Transcript,
    reassembly: [Reassembler; 2],
    suite: Option<CipherSuite>,
}

impl TranscriptBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one UDP payload.
    pub fn observe(&mut self, direction: Direction, datagram: &[u8]) {
        let (records, err) = split_records(datagram);
        for r in records {
            let h = r.header;
            if h.epoch > 0 {
                self.transcript.entries.push(Entry {
                    direction,
                    epoch: h.epoch,
                    sequence: h.sequence,
                    content_type: h.content_type,
                    encrypted: true,
                    body: Body::Encrypted {
                        length: r.fragment.len(),
                    },
                });
            } else {
                self.record(direction, h.epoch, h.sequence, h.content_type, r.fragment);
            }
        }
        if let Some(e) = err {
            self.transcript.entries.push(Entry {
                direction,
                epoch: 0,
                sequence: 0,
                content_type: ContentType(0),
                encrypted: false,
                body: Body::Malformed {
                    reason: format!("datagram tail: {e}"),
                },
            });
        }
    }

    /// Add one record whose plaintext is known: any epoch-0 record, and the engine's own and
    /// decrypted records (marked encrypted when their epoch is protected).
    pub(crate) fn record(
        &mut self,
        direction: Direction,
        epoch: u16,
        sequence: u64,
        content_type: ContentType,
        plaintext: &[u8],
    ) {
        let body = plaintext_body(
            content_type,
            plaintext,
            &mut self.reassembly[direction.index()],
            &mut self.suite,
        );
        self.transcript.entries.push(Entry {
            direction,
            epoch,
            sequence,
            content_type,
            encrypted: epoch > 0,
            body,
        });
    }

    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    pub fn finish(self) -> Transcript {
        self.transcript
    }
}

/// Decode a plaintext record body.
fn plaintext_body(
    content_type: ContentType,
    fragment: &[u8],
    reassembly: &mut Reassembler,
    suite: &mut Option<CipherSuite>,
) -> Body {
    match content_type {
        ContentType::HANDSHAKE => match split_handshake(fragment) {
            Ok(frags) => Body::Handshake {
                messages: frags
                    .iter()
                    .map(|fr| {
                        let fields = match reassembly.push(fr) {
                            Ok(Some(c)) => {
                                let f = Fields::decode(c.msg_type, &c.body, *suite);
                                if let Fields::ServerHello { chosen_suite, .. } = &f {
                                    *suite = Some(*chosen_suite);
                                }
                                Some(f)
                            }
                            Ok(None) => None,
                            Err(e) => Some(Fields::Malformed {
                                reason: e.to_string(),
                            }),
                        };
                        HandshakeEntry {
                            msg_type: fr.header.msg_type,
                            message_seq: fr.header.message_seq,
                            length: fr.header.length,
                            fragment_offset: fr.header.fragment_offset,
                            fragment_length: fr.header.fragment_length,
                            fields,
                        }
                    })
                    .collect(),
            },
            Err(e) => Body::Malformed {
                reason: e.to_string(),
            },
        },
        ContentType::CHANGE_CIPHER_SPEC => {
            if fragment == [1] {
                Body::ChangeCipherSpec
            } else {
                Body::Malformed {
                    reason: "change_cipher_spec body is not 01".into(),
                }
            }
        }
        ContentType::ALERT => match Alert::read_bytes(fragment) {
            Ok(a) => Body::Alert {
                level: a.level,
                description: a.description,
            },
            Err(e) => Body::Malformed {
                reason: e.to_string(),
            },
        },
        ContentType::APPLICATION_DATA => Body::ApplicationData {
            length: fragment.len(),
        },
        _ => Body::Malformed {
            reason: format!("unknown content type {content_type}"),
        },
    }
}
