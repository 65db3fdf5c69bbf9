//! One test per shipped case file: `ot-hil run <case>` on virtual boards (every Thread CLI
//! variant), or on the real boards of the hardware map named by `OT_HIL_HARDWARE_MAP`.

use std::path::PathBuf;
use std::process::Command;

use rstest::rstest;

#[rstest]
fn case_passes(#[files("../../testcases/*.toml")] case: PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ot-hil"));
    cmd.arg("run")
        .arg(&case)
        .arg("--out")
        .arg(out.path())
        .arg("--jobs")
        .arg("2");
    match std::env::var_os("OT_HIL_HARDWARE_MAP") {
        Some(map) => cmd.arg("--hardware-map").arg(map),
        // The binary reads the variable too; make the virtual default explicit.
        None => cmd.env_remove("OT_HIL_HARDWARE_MAP"),
    };
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        case.display()
    );
    assert!(
        stdout.contains("PASS") && !stdout.contains("FAIL") && !stdout.contains("ERROR"),
        "{stdout}"
    );
    assert!(out.path().join("junit.xml").is_file() && out.path().join("results.json").is_file());
}
