//! Records the git commit ot-hil is built from (`OT_HIL_GIT_COMMIT`, empty without git), for the
//! provenance of reports.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    println!("cargo:rustc-env=OT_HIL_GIT_COMMIT={commit}");
    // Rebuilt when HEAD moves; without git only when this script changes.
    if let Some(head) = git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(refs) = git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "refs/heads",
    ]) {
        println!("cargo:rerun-if-changed={refs}");
    }
}
