//! Wire codecs shared by the harness (to decode captures) and the virtual DK (to speak on the virtual air).
//! Must not depend on any other ot-hil crate: both sides depend on it.
//!
//! Every parser in this crate takes untrusted bytes and returns [`WireError`] on anything it cannot
//! decode; none of them panics on any input.

pub mod coap;
pub mod decode;
pub mod ip;
pub mod lowpan;
pub mod mac;
pub mod otsim;
pub mod pcap;
pub mod security;
pub mod sniffer;

mod error;
mod reader;

pub use error::WireError;

/// A hex test vector; white space and `|` separators are allowed for readability.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let digits: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '|')
        .collect();
    hex::decode(digits).expect("test vector is hex")
}
