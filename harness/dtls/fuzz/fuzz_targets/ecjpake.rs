//! EC J-PAKE messages: byte 0 picks raw round one, raw round two, or edits to one of the four
//! mbedtls reference messages; the rest is the message or the edit list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ot_hil_dtls_fuzz::{
    Target, check_ecjpake_edits, check_ecjpake_round_one, check_ecjpake_round_two,
};

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 6 {
        0 => check_ecjpake_round_one(rest),
        1 => check_ecjpake_round_two(rest),
        2 => check_ecjpake_edits(Target::ClientRoundOne, rest),
        3 => check_ecjpake_edits(Target::ServerRoundOne, rest),
        4 => check_ecjpake_edits(Target::ServerRoundTwo, rest),
        _ => check_ecjpake_edits(Target::ClientRoundTwo, rest),
    }
});
