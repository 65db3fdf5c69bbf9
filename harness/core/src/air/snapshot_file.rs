//! insta's snapshot files and update rules, without insta's assertion.
//!
//! insta's `assert_snapshot!` reports a mismatch by panicking (with its own diff, advice for Rust
//! tests and, under `RUST_BACKTRACE`, a backtrace), and it offers no public way to build and save
//! a snapshot otherwise. A case file is not a Rust test, so the runner compares here and reports
//! through its own failure: the file format, the `.snap.new` pending files and the environment
//! (`INSTA_UPDATE`, `INSTA_FORCE_PASS`, `CI`) follow insta 1.x, so `cargo insta review` still
//! accepts or rejects what a run leaves behind. The comparison itself uses insta's own text
//! normalisation ([`TextSnapshotContents`]).
//!
//! A `.snap` file is a YAML metadata block between `---` lines, then the body:
//!
//! ```text
//! ---
//! source: testcases/coaps.toml
//! description: "coaps @ v1: DTLS handshake node2 -> node1 (from the air)"
//! ---
//! C->S CLIENT_HELLO ...
//! ```

use std::path::{Path, PathBuf};

use insta::TextSnapshotKind;
use insta::internals::TextSnapshotContents;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{var}={value:?} is not one insta knows ({allowed})")]
    Env {
        var: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("failed to read snapshot {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write snapshot {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `INSTA_UPDATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// `.snap.new` for new and changed snapshots, nothing written on CI (the default).
    Auto,
    /// Write every new or changed snapshot in place (`always` or `1`).
    Always,
    /// Always `.snap.new`, also on CI.
    New,
    /// New snapshots in place, changed ones as `.snap.new`.
    Unseen,
    /// Write nothing.
    No,
    /// Write in place, also snapshots that match (refreshing their metadata).
    Force,
}

/// What happens to a snapshot that is new or differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    InPlace,
    Pending,
    Nothing,
}

/// insta's settings as its environment gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstaEnv {
    pub update: Update,
    /// `INSTA_FORCE_PASS=1`: a difference is reported but does not fail.
    pub force_pass: bool,
    /// On CI (`CI` set to anything but `false`/`0`/empty, or `TF_BUILD` set).
    pub ci: bool,
}

impl InstaEnv {
    pub fn from_env() -> Result<InstaEnv, SnapshotError> {
        let var = |name: &str| std::env::var(name).ok();
        InstaEnv::from_vars(
            var("INSTA_UPDATE").as_deref(),
            var("INSTA_FORCE_PASS").as_deref(),
            var("CI").as_deref(),
            var("TF_BUILD").is_some(),
        )
    }

    /// The settings from the variables' values (None = unset), as insta reads them.
    pub fn from_vars(
        update: Option<&str>,
        force_pass: Option<&str>,
        ci: Option<&str>,
        tf_build: bool,
    ) -> Result<InstaEnv, SnapshotError> {
        let update = match update.unwrap_or("") {
            "" | "auto" => Update::Auto,
            "always" | "1" => Update::Always,
            "new" => Update::New,
            "unseen" => Update::Unseen,
            "no" => Update::No,
            "force" => Update::Force,
            other => {
                return Err(SnapshotError::Env {
                    var: "INSTA_UPDATE",
                    value: other.into(),
                    allowed: "auto, always, 1, new, unseen, no, force",
                });
            }
        };
        let force_pass = match force_pass.unwrap_or("") {
            "" | "0" => false,
            "1" => true,
            other => {
                return Err(SnapshotError::Env {
                    var: "INSTA_FORCE_PASS",
                    value: other.into(),
                    allowed: "0, 1",
                });
            }
        };
        let ci = match ci {
            Some("false" | "0" | "") => false,
            None => tf_build,
            Some(_) => true,
        };
        Ok(InstaEnv {
            update,
            force_pass,
            ci,
        })
    }

    /// Where a new (`stored_exists` = false) or changed snapshot goes.
    pub fn write_for(&self, stored_exists: bool) -> Write {
        match self.update {
            Update::Always | Update::Force => Write::InPlace,
            Update::Auto if self.ci => Write::Nothing,
            Update::Auto | Update::New => Write::Pending,
            Update::Unseen if stored_exists => Write::Pending,
            Update::Unseen => Write::InPlace,
            Update::No => Write::Nothing,
        }
    }
}

/// One snapshot file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapFile {
    /// Where the snapshot comes from (here: the case file).
    pub source: String,
    pub description: String,
    pub body: String,
}

impl SnapFile {
    /// The text of a `.snap` file. Strings are written as YAML double-quoted scalars, whose
    /// escapes are JSON's.
    pub fn emit(&self) -> String {
        let quote = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        format!(
            "---\nsource: {}\ndescription: {}\n---\n{}\n",
            quote(&self.source),
            quote(&self.description),
            normalized(&self.body)
        )
    }

    /// The body of a `.snap` file (after its metadata block); a file without one is all body.
    pub fn parse_body(text: &str) -> &str {
        let Some(rest) = text.strip_prefix("---\n").or(text.strip_prefix("---\r\n")) else {
            return text;
        };
        let mut offset = 0;
        for line in rest.split_inclusive('\n') {
            offset += line.len();
            if line.trim_end() == "---" {
                return rest.get(offset..).unwrap_or("");
            }
        }
        text
    }
}

/// insta's normalised form of a file snapshot's text (line endings, trailing newlines).
fn normalized(body: &str) -> String {
    TextSnapshotContents::new(body.to_string(), TextSnapshotKind::File).to_string()
}

/// Whether a stored body and a new one are the same snapshot to insta.
pub fn same(stored: &str, new: &str) -> bool {
    let (a, b) = (
        TextSnapshotContents::new(stored.to_string(), TextSnapshotKind::File),
        TextSnapshotContents::new(new.to_string(), TextSnapshotKind::File),
    );
    a.matches_latest(&b) || a.matches_legacy(&b)
}

/// The stored body at `path`, None when there is no file.
pub fn read_body(path: &Path) -> Result<Option<String>, SnapshotError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(SnapFile::parse_body(&text).to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SnapshotError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The pending file insta's review looks for next to `snap`.
pub fn pending_path(snap: &Path) -> PathBuf {
    snap.with_extension("snap.new")
}

pub fn write(path: &Path, file: &SnapFile) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, file.emit()).map_err(io)
}

/// Remove a pending file left by an earlier run (insta does the same when a snapshot matches).
pub fn remove_stale_pending(snap: &Path) {
    let pending = pending_path(snap);
    if pending.exists()
        && let Err(e) = std::fs::remove_file(&pending)
    {
        tracing::warn!("failed to remove stale {}: {e}", pending.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_and_parse_are_a_pair_and_insta_reads_what_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapFile {
            source: "testcases/a \"b\".toml".into(),
            description: "a @ v: DTLS handshake n2 -> n1: \\ # [x]".into(),
            body: "C->S CLIENT_HELLO\nS->C Alert FATAL X\n".into(),
        };
        let path = dir.path().join("a__h__v.snap");
        write(&path, &file).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            SnapFile::parse_body(&text),
            "C->S CLIENT_HELLO\nS->C Alert FATAL X\n"
        );
        // insta itself (what `cargo insta review` uses) reads the metadata and body back.
        let snap = insta::Snapshot::from_file(&path).expect("insta parses it");
        assert_eq!(
            snap.metadata().description(),
            Some(file.description.as_str())
        );
        assert_eq!(
            snap.as_text().map(ToString::to_string).as_deref(),
            Some("C->S CLIENT_HELLO\nS->C Alert FATAL X")
        );
        assert!(same(SnapFile::parse_body(&text), &file.body));
        assert!(!same(SnapFile::parse_body(&text), "C->S CLIENT_HELLO\n"));
    }

    #[test]
    fn bodies_of_files_insta_wrote_are_found() {
        let text = "---\nsource: harness/core/src/air/snapshot.rs\nassertion_line: 91\ndescription: \"x\"\n---\nC->S A\nS->C B\n";
        assert_eq!(SnapFile::parse_body(text), "C->S A\nS->C B\n");
        assert_eq!(SnapFile::parse_body("no metadata\n"), "no metadata\n");
        assert_eq!(read_body(Path::new("/nonexistent/x.snap")).ok(), Some(None));
    }

    #[test]
    fn environment_follows_insta() {
        let env = |u, f, ci, tf| InstaEnv::from_vars(u, f, ci, tf).expect("valid");
        let local = env(None, None, None, false);
        assert_eq!(local.write_for(true), Write::Pending);
        assert!(!local.force_pass);
        let ci = env(None, None, Some("true"), false);
        assert!(ci.ci);
        assert_eq!(ci.write_for(true), Write::Nothing);
        assert!(env(None, None, None, true).ci);
        assert!(!env(None, None, Some("false"), true).ci);
        assert_eq!(
            env(Some("always"), None, Some("1"), false).write_for(true),
            Write::InPlace
        );
        assert_eq!(
            env(Some("1"), None, None, false).write_for(false),
            Write::InPlace
        );
        assert_eq!(
            env(Some("new"), None, Some("1"), false).write_for(true),
            Write::Pending
        );
        assert_eq!(
            env(Some("unseen"), None, None, false).write_for(false),
            Write::InPlace
        );
        assert_eq!(
            env(Some("unseen"), None, None, false).write_for(true),
            Write::Pending
        );
        assert_eq!(
            env(Some("no"), None, None, false).write_for(false),
            Write::Nothing
        );
        assert!(env(None, Some("1"), None, false).force_pass);
        assert!(matches!(
            InstaEnv::from_vars(Some("sometimes"), None, None, false),
            Err(SnapshotError::Env {
                var: "INSTA_UPDATE",
                ..
            })
        ));
        assert!(InstaEnv::from_vars(None, Some("yes"), None, false).is_err());
    }
}
