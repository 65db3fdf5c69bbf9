//! Sans-IO DTLS 1.2 engine (RFC 6347) for the cipher suites OpenThread's CoAPS uses:
//! `PSK_WITH_AES_128_CCM_8` (0xC0A8), `ECDHE_ECDSA_WITH_AES_128_CCM_8` (0xC0AE) and
//! `ECJPAKE_WITH_AES_128_CCM_8` (0xC0FF), plus handshake transcripts built by the engine or
//! from datagrams observed passively. Must not depend on any other ot-hil crate: the virtual
//! DK runs it and the runner's air witness reads its transcripts.
//!
//! # Layers
//! * [`codec`], [`enums`], [`messages`]: parse/emit pairs for the record header, the
//!   handshake header and every handshake message; a [`codec::Reader`] that never panics and
//!   rejects leftover bytes; protocol enums as open newtypes (unknown values survive).
//! * [`crypto`]: TLS 1.2 PRF (P_SHA256), master secret, 40-byte key block, AES-128-CCM-8
//!   records (12-byte nonce `fixed_iv(4) || epoch(2) || seq(6)`, explicit part sent in front,
//!   13-byte AAD), 64-record replay window.
//! * [`cert`]: X.509 v1/v3 with P-256 keys, chain verification to configured roots, dates,
//!   host name against SAN DNS names or CN.
//! * [`config`]: [`Config`] and [`config::select_suite`], mbedtls' server-side selection.
//! * [`conn`]: the [`Connection`] (client and server): datagrams and time in, datagrams and
//!   events out; message ordering and reassembly, alerts. Inside it, crate-private:
//!   the record layer (`record`: epochs, protection, replay), what a connection keeps
//!   (`context`: negotiation state, failure, the memory model), flights (`flight`:
//!   fragmentation, retransmission with back-off), and the handshake state machine, one struct
//!   per state that owns its handling (`client`, `server`, and `handshake` for what they share:
//!   the state, the end of the handshake, key derivation). [`Event`] and [`Role`] (`event`)
//!   are below them all.
//! * [`transcript`]: [`Transcript`] entries and [`TranscriptBuilder`] for passive capture.
//! * [`ecjpake`]: EC J-PAKE on P-256 as mbedtls 2.28 implements it.
//!
//! # Driving a connection
//! ```no_run
//! use std::{sync::Arc, time::Instant};
//! use ot_hil_dtls::{CipherSuite, Config, Connection, Event, Psk};
//!
//! let config = Arc::new(Config {
//!     suites: vec![CipherSuite::PSK_WITH_AES_128_CCM_8],
//!     psk: Some(Psk { key: b"123".to_vec(), identity: b"pskid".to_vec() }),
//!     ..Config::default()
//! });
//! let mut conn = Connection::client(config, Instant::now()).unwrap();
//! // loop: send every conn.poll_transmit() datagram; feed received datagrams to
//! // conn.handle_datagram(now, ..); call conn.handle_timeout(now) at conn.next_timeout();
//! // react to conn.poll_event(): Connected, ApplicationData, Closed, Failed.
//! while let Some(datagram) = conn.poll_transmit() { let _ = datagram; }
//! while let Some(event) = conn.poll_event() { if let Event::Connected { suite } = event { let _ = suite; } }
//! ```
//!
//! # Alerts we send
//! | condition | alert |
//! |---|---|
//! | malformed message, bad lengths, leftover bytes | decode_error |
//! | no usable suite | handshake_failure |
//! | server chose a suite we did not offer, bad curve or scheme, bad EC J-PAKE proof | illegal_parameter |
//! | chain not issued by a trusted root | unknown_ca |
//! | host name mismatch (as mbedtls' CN mismatch), bad chain signature | bad_certificate |
//! | outside validity dates | certificate_expired |
//! | ServerKeyExchange / CertificateVerify signature or Finished verify_data wrong | decrypt_error |
//! | unknown PSK identity | unknown_psk_identity |
//! | Finished record fails authentication (wrong PSK or password), as mbedtls does | bad_record_mac |
//! | other records failing authentication | none: dropped (RFC 6347 §4.1.2.7), unless `bad_mac_limit` |
//! | memory model above `heap_limit` | internal_error, reason "out of heap" |
//! | retransmission back-off exhausted | none; `Event::Failed { alert: None, .. }` |

pub mod cert;
mod client;
pub mod codec;
pub mod config;
pub mod conn;
mod context;
pub mod crypto;
pub mod ecjpake;
pub mod enums;
pub mod error;
mod event;
mod flight;
mod handshake;
pub mod messages;
pub mod reassembly;
mod record;
pub mod rng;
mod server;
pub mod transcript;

pub use cert::{CertifiedKey, ParsedCert, TimeCheck};
pub use config::{Config, EcjpakeBackend, HelloLayout, Psk, SuitePreference};
pub use conn::{Connection, Event, Role, is_initial_client_hello};
pub use enums::*;
pub use error::{CertError, CodecError, Error};
pub use rng::{BoxedRng, SeededRng};
pub use transcript::{Direction, Transcript, TranscriptBuilder};

/// A hex test vector; white space and `|` separators are allowed for readability.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let digits: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '|')
        .collect();
    hex::decode(digits).expect("test vector is hex")
}
