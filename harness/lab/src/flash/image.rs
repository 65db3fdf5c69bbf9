//! Firmware images as address/data segments (Intel HEX and ELF), and the checks that need no probe.
//!
//! The segments read here are exactly what [`super::probe_rs::ProbeRsFlasher`] programs, so the
//! preflight, the flash and the read-back check all see the same bytes.

use std::ops::Range;
use std::path::{Path, PathBuf};

use object::read::elf::{FileHeader, ProgramHeader};
use probe_rs::config::{MemoryRegion, Registry};
use sha2::{Digest, Sha256};

/// The chip of the nRF52840 DK, as probe-rs names it.
pub const NRF52840: &str = "nRF52840_xxAA";
/// How many bytes at each end of the image the cheap on-device check reads back.
pub const CHECK_CHUNK: u64 = 4096;

/// One contiguous run of bytes to program at `address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub address: u64,
    pub data: Vec<u8>,
}

impl Segment {
    pub fn range(&self) -> Range<u64> {
        self.address..self.address + self.data.len() as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Hex,
    Elf,
}

/// An image read into sorted, non-overlapping segments (adjacent runs merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub path: PathBuf,
    pub format: ImageFormat,
    pub segments: Vec<Segment>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to read image {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image {path} is neither Intel HEX nor ELF")]
    UnknownFormat { path: PathBuf },
    #[error("bad Intel HEX in {path}: {message}")]
    Hex { path: PathBuf, message: String },
    #[error("bad ELF in {path}: {message}")]
    Elf { path: PathBuf, message: String },
    #[error("image {path} holds no data to program")]
    Empty { path: PathBuf },
    #[error("image {path} writes {at:#010x}..{end:#010x} twice")]
    Overlap { path: PathBuf, at: u64, end: u64 },
    #[error("unknown chip {chip}: {message}")]
    Chip { chip: String, message: String },
    #[error("image {path} does not fit {chip}: {message}")]
    DoesNotFit {
        path: PathBuf,
        chip: String,
        message: String,
    },
}

/// Reads a HEX or ELF file; the format is recognised by content (ELF magic, or a `:` record start).
pub fn load_image(path: &Path) -> Result<LoadedImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.starts_with(b"\x7fELF") {
        let segments = parse_elf(&bytes).map_err(|message| ImageError::Elf {
            path: path.to_path_buf(),
            message,
        })?;
        return finish(path, ImageFormat::Elf, segments);
    }
    let text = std::str::from_utf8(&bytes)
        .ok()
        .filter(|t| t.trim_start().starts_with(':'));
    let Some(text) = text else {
        return Err(ImageError::UnknownFormat {
            path: path.to_path_buf(),
        });
    };
    let segments = parse_hex(text).map_err(|message| ImageError::Hex {
        path: path.to_path_buf(),
        message,
    })?;
    finish(path, ImageFormat::Hex, segments)
}

fn finish(
    path: &Path,
    format: ImageFormat,
    mut segments: Vec<Segment>,
) -> Result<LoadedImage, ImageError> {
    segments.retain(|s| !s.data.is_empty());
    if segments.is_empty() {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    segments.sort_by_key(|s| s.address);
    let mut merged: Vec<Segment> = Vec::with_capacity(segments.len());
    for seg in segments {
        match merged.last_mut() {
            Some(last) if seg.address < last.range().end => {
                return Err(ImageError::Overlap {
                    path: path.to_path_buf(),
                    at: seg.address,
                    end: seg.range().end.min(last.range().end),
                });
            }
            Some(last) if seg.address == last.range().end => last.data.extend_from_slice(&seg.data),
            _ => merged.push(seg),
        }
    }
    Ok(LoadedImage {
        path: path.to_path_buf(),
        format,
        segments: merged,
    })
}

/// Intel HEX: data records placed by extended linear (type 04) or segment (type 02) addresses.
pub fn parse_hex(text: &str) -> Result<Vec<Segment>, String> {
    let mut base: u64 = 0;
    let mut segments: Vec<Segment> = Vec::new();
    for (line, record) in ihex::Reader::new(text).enumerate() {
        let record = record.map_err(|e| format!("record {}: {e}", line + 1))?;
        match record {
            ihex::Record::Data { offset, value } => {
                let address = base + u64::from(offset);
                match segments.last_mut() {
                    Some(last) if last.range().end == address => {
                        last.data.extend_from_slice(&value)
                    }
                    _ => segments.push(Segment {
                        address,
                        data: value,
                    }),
                }
            }
            ihex::Record::ExtendedLinearAddress(upper) => base = u64::from(upper) << 16,
            ihex::Record::ExtendedSegmentAddress(seg) => base = u64::from(seg) << 4,
            ihex::Record::EndOfFile => break,
            ihex::Record::StartLinearAddress(_) | ihex::Record::StartSegmentAddress { .. } => {}
        }
    }
    Ok(segments)
}

/// ELF32: every `PT_LOAD` program header with file content, at its *physical* address (the load address:
/// for initialised data that is where the copy in flash lives, not the RAM address it runs at). This is
/// what probe-rs and the vendor tools program.
pub fn parse_elf(bytes: &[u8]) -> Result<Vec<Segment>, String> {
    let header = object::elf::FileHeader32::<object::Endianness>::parse(bytes).map_err(|e| {
        if bytes.get(4) == Some(&2) {
            "64-bit ELF; the nRF52840 takes 32-bit images".to_string()
        } else {
            e.to_string()
        }
    })?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let headers = header
        .program_headers(endian, bytes)
        .map_err(|e| e.to_string())?;
    let mut segments = Vec::new();
    for ph in headers {
        if ph.p_type(endian) != object::elf::PT_LOAD || ph.p_filesz(endian) == 0 {
            continue;
        }
        let data = ph.data(endian, bytes).map_err(|()| {
            format!(
                "segment at {:#010x} points outside the file",
                ph.p_paddr(endian)
            )
        })?;
        segments.push(Segment {
            address: u64::from(ph.p_paddr(endian)),
            data: data.to_vec(),
        });
    }
    Ok(segments)
}

/// A chip's non-volatile memory, from probe-rs' built-in target description (no probe needed).
#[derive(Debug, Clone)]
pub struct ChipMemory {
    pub chip: String,
    /// `(name, range)` of every NVM region (for the nRF52840: code flash and UICR).
    pub nvm: Vec<(String, Range<u64>)>,
    target: probe_rs::Target,
}

impl ChipMemory {
    pub fn for_chip(chip: &str) -> Result<Self, ImageError> {
        let target = Registry::from_builtin_families()
            .get_target_by_name(chip)
            .map_err(|e| ImageError::Chip {
                chip: chip.to_string(),
                message: e.to_string(),
            })?;
        let nvm = target
            .memory_map
            .iter()
            .filter_map(|region| match region {
                MemoryRegion::Nvm(nvm) => Some((
                    nvm.name.clone().unwrap_or_else(|| "nvm".into()),
                    nvm.range.clone(),
                )),
                _ => None,
            })
            .collect();
        Ok(ChipMemory {
            chip: chip.to_string(),
            nvm,
            target,
        })
    }

    /// The NVM region holding `address`.
    pub fn region_of(&self, address: u64) -> Option<&(String, Range<u64>)> {
        self.nvm.iter().find(|(_, r)| r.contains(&address))
    }

    /// The main flash: the largest NVM region.
    pub fn main_flash(&self) -> Option<&(String, Range<u64>)> {
        self.nvm.iter().max_by_key(|(_, r)| r.end - r.start)
    }
}

/// What the preflight found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub bytes: u64,
    /// End of the image in the main flash.
    pub flash_end: u64,
    pub flash_size: u64,
}

/// Checks, without a probe, that every segment lies inside the chip's NVM (a RAM or out-of-range address
/// fails here rather than half-way through a flash) and that probe-rs' flash loader accepts the data.
pub fn preflight(image: &LoadedImage, memory: &ChipMemory) -> Result<ImageSummary, ImageError> {
    let fail = |message: String| ImageError::DoesNotFit {
        path: image.path.clone(),
        chip: memory.chip.clone(),
        message,
    };
    for seg in &image.segments {
        let range = seg.range();
        let inside = memory
            .nvm
            .iter()
            .any(|(_, r)| r.start <= range.start && range.end <= r.end);
        if !inside {
            let hint = match memory.region_of(range.start) {
                Some((name, r)) => format!(
                    "it runs {} bytes past the end of {name} ({:#010x}..{:#010x})",
                    range.end - r.end,
                    r.start,
                    r.end
                ),
                None => {
                    let regions: Vec<String> = memory
                        .nvm
                        .iter()
                        .map(|(n, r)| format!("{n} {:#010x}..{:#010x}", r.start, r.end))
                        .collect();
                    format!("that is not flash (flash regions: {})", regions.join(", "))
                }
            };
            return Err(fail(format!(
                "{} bytes at {:#010x}..{:#010x}: {hint}",
                seg.data.len(),
                range.start,
                range.end
            )));
        }
    }
    let mut loader = memory.target.flash_loader();
    for seg in &image.segments {
        loader.add_data(seg.address, &seg.data).map_err(|e| {
            fail(format!(
                "probe-rs rejects the data at {:#010x}: {e}",
                seg.address
            ))
        })?;
    }
    let (flash_end, flash_size) = match memory.main_flash() {
        Some((_, r)) => (
            image
                .segments
                .iter()
                .filter(|s| r.contains(&s.address))
                .map(|s| s.range().end)
                .max()
                .unwrap_or(r.start),
            r.end - r.start,
        ),
        None => (0, 0),
    };
    Ok(ImageSummary {
        bytes: image.segments.iter().map(|s| s.data.len() as u64).sum(),
        flash_end,
        flash_size,
    })
}

/// A stretch of flash whose content the cheap on-device check compares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckRegion {
    pub address: u64,
    pub length: u64,
    /// SHA-256 of the bytes the image puts there, lowercase hex.
    pub sha256: String,
}

/// The regions read back to confirm a board still holds an image: the first [`CHECK_CHUNK`] bytes of the
/// image in main flash (vector table: initial stack pointer and reset vector, which move with almost any
/// change of the build) and the last [`CHECK_CHUNK`] bytes before its end in main flash (where the
/// initialised-data copy and the image length show). Reading 8 KiB over SWD takes a fraction of a second,
/// against several seconds for erase+program+verify of a ~400 KiB Thread image.
///
/// What it cannot see: a foreign image of the same length with the same first and last 4 KiB. The state
/// file's hash is only ever written by ot-hil after a verified flash, so that takes someone reflashing
/// the board by hand with such an image.
pub fn check_regions(image: &LoadedImage, memory: &ChipMemory) -> Vec<CheckRegion> {
    let Some((_, flash)) = memory.main_flash() else {
        return Vec::new();
    };
    let in_flash: Vec<&Segment> = image
        .segments
        .iter()
        .filter(|s| flash.contains(&s.address))
        .collect();
    let (Some(first), Some(last)) = (in_flash.first(), in_flash.last()) else {
        return Vec::new();
    };
    let head_len = CHECK_CHUNK.min(first.data.len() as u64);
    let mut regions = vec![region(first, first.address, head_len)];
    let tail_len = CHECK_CHUNK.min(last.data.len() as u64);
    let tail_start = last.range().end - tail_len;
    let head_end = first.address + head_len;
    // A small image: the tail would repeat (part of) the head; keep only what is new.
    let tail_start = if std::ptr::eq(*first, *last) {
        tail_start.max(head_end)
    } else {
        tail_start
    };
    if tail_start < last.range().end {
        regions.push(region(last, tail_start, last.range().end - tail_start));
    }
    regions
}

fn region(seg: &Segment, address: u64, length: u64) -> CheckRegion {
    let from = usize::try_from(address - seg.address).unwrap_or(usize::MAX);
    let to = usize::try_from(address - seg.address + length).unwrap_or(usize::MAX);
    let bytes = seg.data.get(from..to).unwrap_or(&[]);
    CheckRegion {
        address,
        length,
        sha256: sha256_hex(bytes),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Untrusted image files: errors, never panics.
        #[test]
        fn arbitrary_elf_bytes_do_not_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            // Give most inputs a valid ELF32 little-endian start so the parser goes past the magic.
            if bytes.len() >= 7 {
                bytes[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
            }
            let _ = parse_elf(&bytes);
        }

        #[test]
        fn arbitrary_hex_text_does_not_panic(text in "(:[0-9A-F]{0,80}\n){0,8}") {
            let _ = parse_hex(&text);
        }
    }
}
