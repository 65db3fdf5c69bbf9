//! Firmware variants available to a run: `firmware/variants/*.toml`, loaded with the virtual DK's
//! manifest loader (the same file describes the real build and the virtual image).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ot_hil_board::firmware::{Application, FirmwareError, Manifest};
use ot_hil_lab::flash::FirmwareImage;

use crate::profile::Shell;

#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    #[error("no firmware/variants directory above {0} (give --variants-dir)")]
    NoDir(PathBuf),
    #[error("failed to list {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] FirmwareError),
    #[error("unknown variant `{name}` (known: {known})")]
    Unknown { name: String, known: String },
}

/// A firmware variant a case can run on.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub manifest: Manifest,
    pub shell: Shell,
    /// What the virtual probe flashes (the manifest; its hash is the image hash).
    pub image: FirmwareImage,
}

/// Walk up from `start` to the first directory containing `firmware/variants`.
pub fn find_variants_dir(start: &Path) -> Result<PathBuf, VariantError> {
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_path_buf());
    let mut dir: Option<&Path> = Some(&start);
    while let Some(d) = dir {
        let candidate = d.join("firmware").join("variants");
        if candidate.is_dir() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(VariantError::NoDir(start))
}

/// Load every Thread CLI variant in `dir`, sorted by name.
pub fn load_variants(dir: &Path) -> Result<Vec<Variant>, VariantError> {
    let entries = std::fs::read_dir(dir).map_err(|source| VariantError::List {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let manifest = Manifest::load(&path)?;
        if manifest.application != Application::ThreadCli {
            continue;
        }
        let shell = Shell::for_manifest(&manifest);
        let image = FirmwareImage {
            variant: manifest.name.clone(),
            path: path.clone(),
            sha256: manifest.image_hash(),
        };
        out.push(Variant {
            name: manifest.name.clone(),
            manifest,
            shell,
            image,
        });
    }
    Ok(out)
}

pub fn names(variants: &[Variant]) -> BTreeSet<String> {
    variants.iter().map(|v| v.name.clone()).collect()
}

/// Keep the named variants (all when `wanted` is empty), in the order given.
pub fn select(all: &[Variant], wanted: &[String]) -> Result<Vec<Variant>, VariantError> {
    if wanted.is_empty() {
        // Host-program variants (real OpenThread processes) run only when named: their boards
        // come from their own board source, not from the default virtual DKs.
        return Ok(all
            .iter()
            .filter(|v| v.manifest.program.is_none())
            .cloned()
            .collect());
    }
    wanted
        .iter()
        .map(|w| {
            all.iter()
                .find(|v| &v.name == w)
                .cloned()
                .ok_or_else(|| VariantError::Unknown {
                    name: w.clone(),
                    known: all
                        .iter()
                        .map(|v| v.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}
