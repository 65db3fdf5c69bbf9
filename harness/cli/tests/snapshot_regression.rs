//! The handshake snapshots catch a firmware change: with EC J-PAKE enabled again in the
//! workaround overlay, the X.509 case on the workaround variant must go red, and its JUnit
//! failure must carry the transcript diff that says why (the client offers extension 0x0100,
//! the server aborts with illegal_parameter).
//!
//! Runs on a copy of the variants, the case and its stored snapshots in a temporary directory,
//! so the pending `.snap.new` the failing run writes lands there, never in the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");
const CASE: &str = "coaps-report-x509";
const VARIANT: &str = "ncs-v2.2.0-workaround";
const ECJPAKE_OFF: &str = "CONFIG_MBEDTLS_KEY_EXCHANGE_ECJPAKE_ENABLED=n";
const ECJPAKE_ON: &str = "CONFIG_MBEDTLS_KEY_EXCHANGE_ECJPAKE_ENABLED=y";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn copy_dir(from: &Path, to: &Path, keep: impl Fn(&Path) -> bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && keep(&path) {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// firmware/variants, the case with its fragments, and the case's stored snapshots.
fn lab_copy(root: &Path) -> PathBuf {
    let repo = repo();
    copy_dir(
        &repo.join("firmware/variants"),
        &root.join("firmware/variants"),
        |_| true,
    );
    let cases = root.join("testcases");
    copy_dir(
        &repo.join("testcases/fragments"),
        &cases.join("fragments"),
        |_| true,
    );
    std::fs::copy(
        repo.join(format!("testcases/{CASE}.toml")),
        cases.join(format!("{CASE}.toml")),
    )
    .unwrap();
    copy_dir(
        &repo.join("testcases/snapshots"),
        &cases.join("snapshots"),
        |p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("{CASE}__")) && name.ends_with(".snap")
        },
    );
    cases.join(format!("{CASE}.toml"))
}

/// Run the case on the workaround variant; (exit code, junit.xml unescaped, results.json).
fn run(root: &Path, case: &Path, out: &str) -> (Option<i32>, String, serde_json::Value) {
    let (code, junit, results, _) = run_with_output(root, case, out);
    (code, junit, results)
}

/// [`run`], also returning what the run printed (stdout and stderr), with backtraces asked for.
fn run_with_output(
    root: &Path,
    case: &Path,
    out: &str,
) -> (Option<i32>, String, serde_json::Value, String) {
    let out = root.join(out);
    let output = Command::new(EXE)
        .arg("run")
        .arg(case)
        .arg("--variants-dir")
        .arg(root.join("firmware/variants"))
        .arg("--variant")
        .arg(VARIANT)
        .arg("--out")
        .arg(&out)
        // Pending snapshots are written (next to the copied case) even where CI is set, and
        // insta looks for no workspace outside the copy.
        .env("INSTA_UPDATE", "new")
        .env("INSTA_WORKSPACE_ROOT", root)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run ot-hil");
    let junit = std::fs::read_to_string(out.join("junit.xml"))
        .unwrap_or_default()
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    let results = std::fs::read_to_string(out.join("results.json")).unwrap_or_default();
    let results = serde_json::from_str(&results).unwrap_or(serde_json::Value::Null);
    assert!(
        !junit.is_empty(),
        "no junit.xml: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), junit, results, printed)
}

fn outcome(results: &serde_json::Value) -> String {
    let cases = results
        .get("results")
        .or_else(|| results.get("cases"))
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    cases
        .iter()
        .find(|c| c.get("case").and_then(|v| v.as_str()) == Some(CASE))
        .and_then(|c| c.get("outcome"))
        .map(|o| o.to_string().trim_matches('"').to_uppercase())
        .unwrap_or_default()
}

#[test]
fn ecjpake_back_in_the_workaround_turns_the_x509_case_red_with_a_transcript_diff() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let case = lab_copy(root);
    let snaps = root.join("testcases/snapshots");
    assert!(
        snaps
            .join(format!("{CASE}__x509-handshake__{VARIANT}.snap"))
            .is_file(),
        "the workaround's snapshot is not stored in testcases/snapshots"
    );

    // The copy as it is: the workaround's handshake matches its snapshot.
    let (code, junit, results) = run(root, &case, "before");
    assert_eq!(outcome(&results), "PASS", "{junit}");
    assert_eq!(code, Some(0), "{junit}");

    // The overlay enables EC J-PAKE again.
    let conf = root.join(format!("firmware/variants/{VARIANT}.conf"));
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains(ECJPAKE_OFF), "{text}");
    std::fs::write(&conf, text.replace(ECJPAKE_OFF, ECJPAKE_ON)).unwrap();

    let (code, junit, results, printed) = run_with_output(root, &case, "after");
    // A changed handshake is a failed case, not a crash: no panic, no backtrace, no advice
    // meant for Rust tests, and the diff once, headed by the stored snapshot's path.
    for crash in [
        "panicked",
        "stack backtrace",
        "cargo insta test",
        "RUST_BACKTRACE",
    ] {
        assert!(!printed.contains(crash), "{crash:?} in:\n{printed}");
    }
    let stored = snaps.join(format!("{CASE}__x509-handshake__{VARIANT}.snap"));
    assert_eq!(
        printed
            .matches(&format!("--- {}", stored.display()))
            .count(),
        1,
        "{printed}"
    );
    assert_eq!(outcome(&results), "FAIL", "{junit}");
    assert_eq!(code, Some(1), "{junit}");
    let failure = junit
        .split("<failure")
        .nth(1)
        .and_then(|f| f.split("</failure>").next())
        .unwrap_or_else(|| panic!("no <failure> in junit.xml:\n{junit}"));
    assert!(
        failure.contains("snapshot x509-handshake (client -> server)"),
        "{failure}"
    );
    // The diff: the ClientHello gains 0x0100 and the server's fatal alert ends the handshake
    // where the stored one went on to the server's certificate.
    let added: Vec<&str> = failure.lines().filter(|l| l.contains("| +")).collect();
    let removed: Vec<&str> = failure.lines().filter(|l| l.contains("| -")).collect();
    assert!(
        added
            .iter()
            .any(|l| l.contains("CLIENT_HELLO") && l.contains("ECJPAKE_KKPP(0x0100)")),
        "{failure}"
    );
    assert!(
        added
            .iter()
            .any(|l| l.contains("S->C Alert FATAL ILLEGAL_PARAMETER")),
        "{failure}"
    );
    assert!(
        removed
            .iter()
            .any(|l| l.contains("S->C CERTIFICATE subjects=[CN=PXC3.E75-100A]")),
        "{failure}"
    );
    // The pending transcript is next to the copied case, and nowhere else.
    let pending = snaps.join(format!("{CASE}__x509-handshake__{VARIANT}.snap.new"));
    let pending_text = std::fs::read_to_string(&pending).unwrap();
    assert!(pending_text.contains("ILLEGAL_PARAMETER"), "{pending_text}");
    assert!(
        failure.contains(&pending.display().to_string()),
        "{failure}"
    );
}
