//! Sans-IO DTLS 1.2 engine (RFC 6347) for the cipher suites OpenThread's CoAPS uses:
//! PSK, ECDHE-ECDSA and EC J-PAKE, all with AES-128-CCM-8; plus handshake transcripts
//! built from the engine or from datagrams observed passively.

pub mod cert;
pub mod codec;
pub mod config;
pub mod conn;
pub mod crypto;
pub mod ecjpake;
pub mod enums;
pub mod error;
pub mod messages;
pub mod reassembly;
pub mod rng;
pub mod transcript;

pub use cert::{CertifiedKey, ParsedCert, TimeCheck};
pub use config::{Config, EcjpakeBackend, Psk, SuitePreference};
pub use conn::{Connection, Event, Role};
pub use enums::*;
pub use error::{CertError, CodecError, Error};
pub use rng::{BoxedRng, SeededRng};
pub use transcript::{Direction, Transcript, TranscriptBuilder};
