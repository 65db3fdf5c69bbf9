//! Passive transcript building from a capture of arbitrary datagrams in both directions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ot_hil_dtls_fuzz::check_transcript(data);
});
