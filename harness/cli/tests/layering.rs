//! The crate layering, as `cargo metadata` reports it: only the `ot-hil` command links the
//! virtual DK; no library does (the runner library must not carry the simulator).

use std::process::Command;

use serde_json::Value;

const VDK: &str = "ot-hil-vdk";

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

fn has_lib(package: &Value) -> bool {
    package["targets"].as_array().is_some_and(|targets| {
        targets.iter().any(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "lib" || k == "rlib"))
        })
    })
}

/// Names of the packages that depend on `dep` as a normal (not dev, not build) dependency.
fn normal_dependents<'a>(packages: &'a [Value], dep: &str) -> Vec<&'a Value> {
    packages
        .iter()
        .filter(|p| {
            p["dependencies"]
                .as_array()
                .is_some_and(|deps| deps.iter().any(|d| d["name"] == dep && d["kind"].is_null()))
        })
        .collect()
}

#[test]
fn no_library_links_the_virtual_dk() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(
        names.contains(&VDK),
        "the virtual DK is a workspace member: {names:?}"
    );
    let dependents = normal_dependents(packages, VDK);
    let libraries: Vec<&str> = dependents
        .iter()
        .filter(|p| has_lib(p) && p["name"] != VDK)
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(
        libraries.is_empty(),
        "libraries that depend on {VDK}: {libraries:?}"
    );
    // The check would see a dependent: the command line is one (for `ot-hil vdk`).
    let binaries: Vec<&str> = dependents
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(binaries, ["ot-hil"]);
}

#[test]
fn the_shared_vocabulary_depends_on_no_other_ot_hil_crate() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let board = packages
        .iter()
        .find(|p| p["name"] == "ot-hil-board")
        .expect("ot-hil-board is a workspace member");
    let own: Vec<&str> = board["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .filter(|n| n.starts_with("ot-hil"))
        .collect();
    assert!(own.is_empty(), "ot-hil-board depends on {own:?}");
}
