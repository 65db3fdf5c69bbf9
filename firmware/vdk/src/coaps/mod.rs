//! CoAP Secure (`ot coaps ...`): OpenThread's CLI CoAPS example on top of its `CoapSecure` /
//! `Dtls` core, with the DTLS handshake done by the ot-hil-dtls engine over UDP port 5684.
//!
//! Sans-IO like the plain CoAP app (the caller sends the datagrams and prints the lines), in
//! one room per file:
//! * [`config`]: [`CoapsBuild`], what the firmware image compiled in and configured, read from
//!   its Kconfig (which key exchanges mbedtls has, which EC J-PAKE implementation, the mbedtls
//!   heap size, the cipher-suite list and the server's selection rule, the OpenThread
//!   revision's behaviour). Every difference between variants comes from here;
//!   firmware/README.md says which source supports each mechanism.
//! * [`credentials`]: what `coaps psk` / `coaps x509` configured and the DTLS engine
//!   configuration `Dtls::Setup` builds from it.
//! * [`command`]: the `coaps` command line parsed as `cli_coap_secure.cpp` does.
//! * [`app`]: [`CoapsApp`], the CLI commands run, the DTLS session state machine
//!   (`meshcop/dtls.cpp`: closed, open, connecting, connected, close-notify guard time) and a
//!   small CoAP layer for requests and the one resource.

pub mod app;
pub mod command;
pub mod config;
pub mod credentials;

pub use app::{CoapsActions, CoapsApp, CoapsResult, Udp};
pub use command::Command;
pub use config::{CoapsBuild, NoCredentials, SuiteListSource};
pub use credentials::{Credentials, SetupError, dtls_config};

/// OT_DEFAULT_COAP_SECURE_PORT.
pub const COAPS_PORT: u16 = 5684;

#[cfg(test)]
mod tests;
