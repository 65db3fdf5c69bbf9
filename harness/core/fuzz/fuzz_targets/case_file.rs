#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One directory for the whole run (with the fragment cases may include), removed at exit.
fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("f.toml"), ot_hil::fuzz_checks::FRAGMENT).expect("fragment");
        d
    })
}

fuzz_target!(|data: &[u8]| ot_hil::fuzz_checks::case_file(dir().path(), data));
