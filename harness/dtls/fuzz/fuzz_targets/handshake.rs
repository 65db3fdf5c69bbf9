//! Handshake bodies: byte 0 is the message type, byte 1 picks the suite, the rest is the body.
//! Also the whole input as a handshake record's plaintext.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ot_hil_dtls::HandshakeType;
use ot_hil_dtls_fuzz::{SUITES, check_handshake_body, check_handshake_record};

fuzz_target!(|data: &[u8]| {
    check_handshake_record(data);
    if let [msg_type, suite, body @ ..] = data {
        let suite = SUITES[usize::from(*suite) % SUITES.len()];
        check_handshake_body(HandshakeType(*msg_type), body, suite);
    }
});
