#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One directory for the whole run, removed at exit.
fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
}

fuzz_target!(|data: &[u8]| ot_hil::fuzz_checks::duration(dir().path(), data));
