//! What each board was last flashed with, kept on the lab host between runs.
//!
//! One small TOML file per board, written only after a verified flash. It lets a run skip reflashing a
//! board that already holds the image, once a cheap read-back ([`super::image::check_regions`]) confirms
//! the device still matches.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::image::CheckRegion;

/// Environment variable that overrides the state directory.
pub const STATE_DIR_ENV: &str = "OT_HIL_STATE_DIR";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardState {
    /// `FirmwareImage::sha256` of the image last flashed.
    pub sha256: String,
    pub variant: String,
    /// Seconds since the Unix epoch.
    pub flashed_at: u64,
    #[serde(default, rename = "check")]
    pub checks: Vec<CheckRegion>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// `$OT_HIL_STATE_DIR`, else `$XDG_STATE_HOME/ot-hil/boards`, else `~/.local/state/ot-hil/boards`,
    /// else `/tmp/ot-hil-state`.
    pub fn from_env() -> StateDir {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let path = var(STATE_DIR_ENV)
            .or_else(|| var("XDG_STATE_HOME").map(|p| p.join("ot-hil/boards")))
            .or_else(|| var("HOME").map(|p| p.join(".local/state/ot-hil/boards")))
            .unwrap_or_else(|| PathBuf::from("/tmp/ot-hil-state"));
        StateDir { path }
    }

    pub fn new(path: PathBuf) -> StateDir {
        StateDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self, board_id: &str) -> PathBuf {
        let safe: String = board_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.path.join(format!("{safe}.toml"))
    }

    /// The recorded state; `None` when there is none or it cannot be read (then the board is flashed,
    /// which is always safe).
    pub fn load(&self, board_id: &str) -> Option<BoardState> {
        let text = std::fs::read_to_string(self.file(board_id)).ok()?;
        match toml::from_str(&text) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!("ignoring unreadable state of board {board_id}: {e}");
                None
            }
        }
    }

    /// Writes atomically (temp file + rename) so a crash never leaves a half-written state.
    pub fn store(&self, board_id: &str, state: &BoardState) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.path)?;
        let text = toml::to_string(state).map_err(std::io::Error::other)?;
        let file = self.file(board_id);
        let tmp = file.with_extension(format!("toml.{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &file)
    }

    /// Forgets a board's image (after a failed flash the device content is unknown).
    pub fn forget(&self, board_id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.file(board_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_forget() {
        let dir = tempfile::tempdir().unwrap();
        let states = StateDir::new(dir.path().join("state"));
        assert_eq!(states.load("dk-1"), None);
        let state = BoardState {
            sha256: "ab".repeat(32),
            variant: "ncs-v2.2.0".into(),
            flashed_at: 1,
            checks: vec![CheckRegion {
                address: 0,
                length: 4096,
                sha256: "cd".repeat(32),
            }],
        };
        states.store("dk-1", &state).unwrap();
        assert_eq!(states.load("dk-1"), Some(state));
        states.forget("dk-1").unwrap();
        states.forget("dk-1").unwrap();
        assert_eq!(states.load("dk-1"), None);
    }

    #[test]
    fn garbage_state_is_ignored_and_ids_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let states = StateDir::new(dir.path().to_path_buf());
        std::fs::write(dir.path().join("dk.toml"), "not = [valid").unwrap();
        assert_eq!(states.load("dk"), None);
        assert!(states.file("../etc/x").starts_with(dir.path()));
        assert_eq!(states.file("../x").file_name().unwrap(), "___x.toml");
    }
}
