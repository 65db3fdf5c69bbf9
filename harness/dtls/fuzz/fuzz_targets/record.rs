//! DTLS datagrams: record splitting, handshake fragments, handshake bodies under every suite.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ot_hil_dtls_fuzz::check_datagram(data);
});
