//! Differential conformance: every case runs on the virtual DK's `upstream` variant and on real
//! upstream OpenThread (`openthread-sim`, processes of `ot-cli-ftd`), in one run (`-j 2`, so two
//! real cases share the host on different port offsets), and the two must agree: the same
//! outcome per case (a known failure on both counts as agreeing only when each matched its own
//! symptom), no ERROR, and the same handshake snapshots, except the differences listed (with
//! evidence) in firmware/README.md "Real OpenThread".
//!
//! Run twice: on the case clock (real OpenThread built for virtual time, `ot-cli-ftd-vt`, its
//! events dispatched by the case's air hub) and on the host's clock (`--clock real`, `ot-cli-ftd`
//! on its own multicast radio), so the dispatcher is checked against OpenThread's own radio.
//! Each is skipped, with a note, where its binary is not built (`firmware/openthread-sim/build.sh`;
//! `.ci/run` builds both) or, on the host's clock, where loopback has multicast off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");
const VIRTUAL: &str = "upstream";
const REAL: &str = "openthread-sim";

/// Snapshots whose handshakes differ between the virtual DK and real OpenThread for a reason
/// firmware/README.md documents (virtual, real, why).
const KNOWN_SNAPSHOT_DIFFERENCES: &[(&str, &str)] = &[
    (
        "coaps-cli-expect__x509-handshake",
        "the CLI's built-in certificates carry a full subject on real OpenThread; the first ClientHello is not on the air",
    ),
    (
        "coaps-report-x509__x509-handshake",
        "the CLI's built-in certificates carry a full subject on real OpenThread; the first ClientHello is not on the air",
    ),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The snapshot's transcript without its header (source and description name the variant).
fn snapshot_body(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut parts = text.splitn(3, "---\n");
    parts.next()?;
    parts.next()?;
    parts.next().map(str::to_string)
}

/// Skip a test whose oracle is missing here, with a note; where `OT_HIL_REQUIRE_OPENTHREAD` is
/// set (CI, after building it) a missing oracle fails the test instead.
fn skip(why: &str) {
    assert!(
        std::env::var_os("OT_HIL_REQUIRE_OPENTHREAD").is_none(),
        "OT_HIL_REQUIRE_OPENTHREAD is set but {why}"
    );
    eprintln!("SKIPPED: {why}");
}

#[test]
fn virtual_upstream_agrees_with_real_openthread_on_the_case_clock() {
    if !repo().join("target/openthread-sim/ot-cli-ftd-vt").is_file() {
        return skip(
            "target/openthread-sim/ot-cli-ftd-vt is not built (run firmware/openthread-sim/build.sh)",
        );
    }
    agree_on("virtual");
}

#[test]
fn virtual_upstream_agrees_with_real_openthread_on_the_host_clock() {
    if !repo().join("target/openthread-sim/ot-cli-ftd").is_file() {
        return skip(
            "target/openthread-sim/ot-cli-ftd is not built (run firmware/openthread-sim/build.sh)",
        );
    }
    if ot_hil::otsim::loopback_multicast(false).is_err() {
        return skip("loopback has multicast off (ip link set lo multicast on)");
    }
    agree_on("real");
}

/// Run every case on both variants with `--clock clock` and compare.
fn agree_on(clock: &str) {
    let root = repo();
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(EXE)
        .current_dir(&root)
        .args([
            "run",
            "testcases",
            "--variant",
            VIRTUAL,
            "--variant",
            REAL,
            "-j",
            "2",
            "--clock",
            clock,
        ])
        .arg("--out")
        .arg(out.path())
        .env("INSTA_UPDATE", "no")
        .output()
        .expect("run ot-hil");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("results.json")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("no results.json ({e}):\n{log}"));
    let mut outcomes: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for r in results["results"].as_array().expect("results") {
        outcomes
            .entry(r["case"].as_str().unwrap().to_string())
            .or_default()
            .insert(
                r["variant"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            );
    }
    let mut disagreements = Vec::new();
    for (case, by_variant) in &outcomes {
        let (v, r) = (by_variant.get(VIRTUAL), by_variant.get(REAL));
        if v.is_some_and(|v| v == "SKIP") {
            continue;
        }
        if v != r || v.is_some_and(|v| v == "ERROR" || v == "FAIL" || v == "XPASS") {
            disagreements.push(format!("{case}: {VIRTUAL} {v:?}, {REAL} {r:?}"));
        }
    }
    assert!(!outcomes.is_empty(), "no cases ran:\n{log}");

    let snaps = root.join("testcases/snapshots");
    for entry in std::fs::read_dir(&snaps).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(&format!("__{VIRTUAL}.snap")) else {
            continue;
        };
        let virtual_body = snapshot_body(&snaps.join(&name));
        let real_body = snapshot_body(&snaps.join(format!("{stem}__{REAL}.snap")));
        let known = KNOWN_SNAPSHOT_DIFFERENCES.iter().find(|(s, _)| *s == stem);
        match (real_body.is_some() && virtual_body == real_body, known) {
            (true, None) | (false, Some(_)) => {}
            (false, None) => disagreements.push(format!(
                "snapshot {stem}: the handshake on {VIRTUAL} differs from {REAL} (or {REAL} has none)"
            )),
            (true, Some((_, why))) => disagreements.push(format!(
                "snapshot {stem}: listed as differing ({why}) but now equal: update the list and firmware/README.md"
            )),
        }
    }
    assert!(
        disagreements.is_empty(),
        "virtual {VIRTUAL} and real {REAL} disagree (--clock {clock}):\n{}\n\n{log}",
        disagreements.join("\n")
    );
}
