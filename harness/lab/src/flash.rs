//! The flasher interface the runner uses for every board, real (probe-rs) or virtual (control socket).

use std::path::{Path, PathBuf};

pub mod image;
pub mod probe_rs;
pub mod settings_area;
pub mod state;

pub use self::probe_rs::ProbeRsFlasher;

/// A firmware image to put on a board: the file a real probe programs, and the content hash that lets
/// the runner skip reflashing a board that already holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareImage {
    /// Variant name, e.g. `ncs-v2.2.0`.
    pub variant: String,
    /// What gets programmed: a HEX/ELF file for a real DK, the variant manifest for a virtual DK.
    pub path: PathBuf,
    /// SHA-256 of the image content, lowercase hex.
    pub sha256: String,
}

impl FirmwareImage {
    /// An image file with its SHA-256 computed over the file's bytes.
    pub fn from_file(variant: &str, path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        Ok(FirmwareImage {
            variant: variant.to_string(),
            path: path.to_path_buf(),
            sha256: image::sha256_hex(&bytes),
        })
    }
}

/// What a flash operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashOutcome {
    /// The image was written and the board was reset into it.
    Flashed,
    /// The board already held an image with the same hash: not programmed again, only its
    /// settings partition erased (unless kept) and the board reset.
    AlreadyCurrent,
}

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("failed to reach the probe of board {board}: {message}")]
    Probe { board: String, message: String },
    #[error("image {path} does not fit board {board}: {message}")]
    ImageRejected {
        board: String,
        path: PathBuf,
        message: String,
    },
    #[error("the chip of board {board} is locked (APPROTECT); recover it with `{recover_command}`")]
    Locked {
        board: String,
        recover_command: String,
    },
    #[error("failed to flash board {board}: {message}")]
    Failed { board: String, message: String },
}

/// Puts firmware on one board. Implementations: `ProbeRsFlasher` (real DKs) and the virtual probe.
///
/// The runner opens the board's console *before* calling [`Flasher::flash`] or [`Flasher::reset`], so that
/// the boot banner and everything after it land in this case's log.
pub trait Flasher: Send {
    /// The hash of the image the board is known to hold, if any.
    fn current_image(&mut self) -> Result<Option<String>, FlashError>;
    /// Program `image` (erase, program, verify) and reset into it; skips programming when
    /// [`Flasher::current_image`] already matches. Either way the board boots with the
    /// settings its flasher was set up for (`ProbeRsFlasher::settings`: erased by default).
    fn flash(&mut self, image: &FirmwareImage) -> Result<FlashOutcome, FlashError>;
    /// Reset the board without changing its image.
    fn reset(&mut self) -> Result<(), FlashError>;
}
