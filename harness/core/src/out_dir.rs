//! Each run owns its output folder: what the previous run left there moves to `<out>.prev/`
//! (replacing the run before that), so a report never sits next to an older run's case folders
//! and the last run stays at hand for comparison.

use std::path::{Path, PathBuf};

/// A failure to move the previous run's output aside.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("cannot clear {path} for the previous run's output")]
    ClearPrev {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the output folder {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot move {from} to {to}")]
    Move {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Whether `out` can be taken as a run's output folder: missing, empty, or written by an earlier
/// run (it has that run's lock file `lock_name`). Any other folder (`--out .` by mistake) is
/// refused, so that rotating it never moves a person's own files.
pub fn is_ours(out: &Path, lock_name: &str) -> bool {
    match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_none() || out.join(lock_name).is_file(),
        Err(_) => !out.exists(),
    }
}

/// Where the previous run's output of `out` goes: `<out>.prev`, beside it.
pub fn prev_dir(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "ot-hil-out".into());
    name.push(".prev");
    out.with_file_name(name)
}

/// Move everything in `out` except the entries named in `keep` (the run's lock file, held while
/// this runs) into a fresh `<out>.prev/`. Returns that folder when there was something to move.
/// The caller holds the output folder's lock, so no other run writes to `out` meanwhile.
pub fn rotate(out: &Path, keep: &[&str]) -> Result<Option<PathBuf>, RotateError> {
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RotateError::Read {
                path: out.to_path_buf(),
                source,
            });
        }
    };
    let mut moving = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| RotateError::Read {
            path: out.to_path_buf(),
            source,
        })?;
        let name = entry.file_name();
        if !keep.iter().any(|k| name == *k) {
            moving.push(name);
        }
    }
    if moving.is_empty() {
        return Ok(None);
    }
    let prev = prev_dir(out);
    let clear = |source| RotateError::ClearPrev {
        path: prev.clone(),
        source,
    };
    match std::fs::remove_dir_all(&prev) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(clear(e)),
    }
    std::fs::create_dir_all(&prev).map_err(clear)?;
    for name in moving {
        let (from, to) = (out.join(&name), prev.join(&name));
        // A rename: the folders are siblings, so this is one file system and no copy.
        std::fs::rename(&from, &to).map_err(|source| RotateError::Move { from, to, source })?;
    }
    Ok(Some(prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_runs_output_moves_to_prev_and_the_lock_stays() {
        let root = tempfile::tempdir().expect("tempdir");
        let out = root.path().join("out");
        std::fs::create_dir_all(out.join("logs/old-case/v")).expect("dirs");
        std::fs::write(out.join("results.json"), "first").expect("file");
        std::fs::write(out.join("run.lock"), "holder").expect("file");

        let prev = rotate(&out, &["run.lock"]).expect("rotated");
        assert_eq!(
            prev.as_deref(),
            Some(root.path().join("out.prev").as_path())
        );
        let left: Vec<_> = std::fs::read_dir(&out)
            .expect("out")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["run.lock"]);
        assert_eq!(
            std::fs::read_to_string(root.path().join("out.prev/results.json")).expect("moved"),
            "first"
        );
        assert!(root.path().join("out.prev/logs/old-case/v").is_dir());

        // The run after that replaces `.prev` with its own predecessor, not a mix of both.
        std::fs::write(out.join("results.json"), "second").expect("file");
        rotate(&out, &["run.lock"]).expect("rotated again");
        assert_eq!(
            std::fs::read_to_string(root.path().join("out.prev/results.json")).expect("moved"),
            "second"
        );
        assert!(!root.path().join("out.prev/logs").exists());
    }

    #[test]
    fn a_folder_no_run_wrote_is_not_ours() {
        let root = tempfile::tempdir().expect("tempdir");
        assert!(is_ours(&root.path().join("none"), "run.lock"));
        std::fs::write(root.path().join("notes.txt"), "mine").expect("file");
        assert!(!is_ours(root.path(), "run.lock"));
        std::fs::write(root.path().join("run.lock"), "").expect("file");
        assert!(is_ours(root.path(), "run.lock"));
        let file = root.path().join("notes.txt");
        assert!(!is_ours(&file, "run.lock"), "a file is no output folder");
    }

    #[test]
    fn a_missing_or_empty_output_folder_has_nothing_to_rotate() {
        let root = tempfile::tempdir().expect("tempdir");
        assert_eq!(rotate(&root.path().join("none"), &[]).expect("ok"), None);
        std::fs::create_dir(root.path().join("empty")).expect("dir");
        assert_eq!(rotate(&root.path().join("empty"), &[]).expect("ok"), None);
        assert!(!root.path().join("empty.prev").exists());
    }
}
