//! Loading a set of case files for `check`, `list` and `run`: every file validated, every problem
//! reported, before any board is touched.

use std::path::{Path, PathBuf};

use crate::case::{Case, CaseError, LoadOptions};

/// The quarantine list that may sit next to the cases (it is not a case).
pub const QUARANTINE_FILE: &str = "quarantine.toml";

/// The manifest that makes `testcases/` a (code-free) Cargo package, so that `cargo insta review`
/// finds its snapshots. Not a case either.
pub const PACKAGE_MANIFEST: &str = "Cargo.toml";

/// Case files named by `paths`: files as given, directories expanded to their `*.toml` (not
/// recursive: `fragments/` holds included pieces, not cases). Sorted, without duplicates.
pub fn case_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            for entry in std::fs::read_dir(p)? {
                let path = entry?.path();
                if path.is_file()
                    && path.extension().is_some_and(|x| x == "toml")
                    && path
                        .file_name()
                        .is_none_or(|n| n != QUARANTINE_FILE && n != PACKAGE_MANIFEST)
                {
                    out.push(path);
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The default case directory: `testcases/` found walking up from `start`.
pub fn default_case_dir(start: &Path) -> Option<PathBuf> {
    let start = std::path::absolute(start).ok()?;
    start
        .ancestors()
        .map(|d| d.join("testcases"))
        .find(|d| d.is_dir())
}

/// Load every file; returns the valid cases and the errors of the others.
pub fn load_all(files: &[PathBuf], options: &LoadOptions) -> (Vec<Case>, Vec<CaseError>) {
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match Case::load(f, options) {
            Ok(c) => cases.push(c),
            Err(e) => errors.push(e),
        }
    }
    (cases, errors)
}
