#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ot_hil::fuzz_checks::console_lines(data));
