#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ot_hil_wire::ip::fuzz_parse(data));
