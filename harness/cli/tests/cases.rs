//! One test per shipped case file: `ot-hil run <case>` on virtual boards (every Thread CLI
//! variant), or on the real boards of the hardware map named by `OT_HIL_HARDWARE_MAP`.

use std::path::PathBuf;
use std::process::Command;

use rstest::rstest;

#[rstest]
fn case_passes(
    #[files("../../testcases/*.toml")]
    #[exclude(r"/(Cargo|quarantine)\.toml$")]
    case: PathBuf,
) {
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
    // Exit 0 already means every run was PASS, XFAIL or SKIP; check the results file says the
    // same run by run, so an empty or truncated report cannot pass.
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    let runs = results["results"].as_array().expect("results array");
    assert!(!runs.is_empty(), "no case ran: {stdout}");
    for run in runs {
        let outcome = run["outcome"].as_str().unwrap_or("?");
        assert!(
            matches!(outcome, "PASS" | "XFAIL" | "SKIP"),
            "{} @ {}: {outcome}\n{stdout}",
            run["case"],
            run["variant"]
        );
    }
    assert!(out.path().join("junit.xml").is_file());
}
