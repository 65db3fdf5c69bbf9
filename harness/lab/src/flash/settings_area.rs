//! Where a board's non-volatile settings live in flash, and the plan that gives every case a
//! factory-fresh board.
//!
//! OpenThread on Zephyr keeps its settings (active dataset, network info with frame counters,
//! CoAPS credentials) in the settings backend's partition. A board whose image is already
//! current is not programmed again, only reset, so without an erase those settings would carry
//! one case's network into the next. The partition comes from the image's build:
//! - Partition Manager (NCS builds with it): `partitions.yml` in the build folder, partition
//!   `settings_storage` (nrf `subsys/partition_manager/pm.yml.settings`), keys `address`/`size`;
//! - otherwise the devicetree: `zephyr/zephyr.dts` in the build folder, the node labelled
//!   `storage_partition` and its `reg = <address size>`;
//! - without a build folder, the nRF52840 DK's default from Zephyr's board devicetree
//!   (`nrf52840dk_nrf52840.dts`: `storage_partition: partition@f8000`, `reg = <0x000f8000
//!   0x00008000>`), said in the plan so a report shows it was a fallback.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The Partition Manager's name of the settings partition.
pub const PM_SETTINGS_PARTITION: &str = "settings_storage";
/// The devicetree label of the settings partition.
pub const DT_STORAGE_LABEL: &str = "storage_partition";
/// The nRF52840 DK's settings partition when the build says nothing (Zephyr board devicetree).
pub const NRF52840DK_DEFAULT: SettingsArea = SettingsArea {
    address: 0x000f_8000,
    size: 0x8000,
    source: AreaSource::Nrf52840DkDefault,
};

/// Where the layout of a settings area was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AreaSource {
    /// The Partition Manager's `partitions.yml` of the build.
    PartitionManager(PathBuf),
    /// The build's devicetree (`zephyr/zephyr.dts`).
    Devicetree(PathBuf),
    /// Nothing in the build: the nRF52840 DK default.
    Nrf52840DkDefault,
}

/// A settings partition: the flash range erased to bring a board back to its factory state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsArea {
    pub address: u64,
    pub size: u64,
    pub source: AreaSource,
}

impl fmt::Display for SettingsArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:#010x}..{:#010x} ({} KiB, ",
            self.address,
            self.address + self.size,
            self.size / 1024
        )?;
        match &self.source {
            AreaSource::PartitionManager(p) => {
                write!(f, "{PM_SETTINGS_PARTITION} in {})", p.display())
            }
            AreaSource::Devicetree(p) => write!(f, "{DT_STORAGE_LABEL} in {})", p.display()),
            AreaSource::Nrf52840DkDefault => {
                f.write_str("nRF52840 DK default: no build layout found)")
            }
        }
    }
}

/// A partition layout that names a settings partition but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Partition Manager layout: {message}")]
    PartitionManager { path: PathBuf, message: String },
    #[error("{path}: `{DT_STORAGE_LABEL}` has no usable `reg = <address size>`")]
    Devicetree { path: PathBuf },
    #[error("{path}: the settings partition is empty or wraps around ({address:#x} + {size:#x})")]
    BadRange {
        path: PathBuf,
        address: u64,
        size: u64,
    },
}

/// One partition of `partitions.yml` (other keys, such as `span` or `placement`, are ignored).
#[derive(Debug, Deserialize)]
struct PmPartition {
    address: u64,
    size: u64,
    #[serde(default)]
    region: Option<String>,
}

impl SettingsArea {
    /// The settings area of the image built in `build_dir` (Partition Manager first, then the
    /// devicetree); `Ok(None)` when the folder has neither file or neither names the partition.
    pub fn from_build_dir(build_dir: &Path) -> Result<Option<SettingsArea>, LayoutError> {
        let pm = build_dir.join("partitions.yml");
        if pm.is_file() {
            let found = Self::from_partitions_yml(&pm)?;
            if found.is_some() {
                return Ok(found);
            }
        }
        let dts = build_dir.join("zephyr").join("zephyr.dts");
        if dts.is_file() {
            return Self::from_devicetree(&dts);
        }
        Ok(None)
    }

    /// The settings area of a build, or the nRF52840 DK default when there is no build folder
    /// or it has no layout. A layout that exists but is broken is an error, not a fallback.
    pub fn for_build(build_dir: Option<&Path>) -> Result<SettingsArea, LayoutError> {
        Ok(match build_dir {
            Some(dir) => Self::from_build_dir(dir)?.unwrap_or(NRF52840DK_DEFAULT),
            None => NRF52840DK_DEFAULT,
        })
    }

    /// `settings_storage` of a Partition Manager layout (`None` when it has none, or keeps it in
    /// external flash, which the probe's flash algorithm does not reach).
    pub fn from_partitions_yml(path: &Path) -> Result<Option<SettingsArea>, LayoutError> {
        let text = read(path)?;
        let layout: std::collections::BTreeMap<String, serde_norway::Value> =
            serde_norway::from_str(&text).map_err(|e| LayoutError::PartitionManager {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let Some(value) = layout.get(PM_SETTINGS_PARTITION) else {
            return Ok(None);
        };
        let part: PmPartition =
            serde_norway::from_value(value.clone()).map_err(|e| LayoutError::PartitionManager {
                path: path.to_path_buf(),
                message: format!("{PM_SETTINGS_PARTITION}: {e}"),
            })?;
        if part.region.as_deref() == Some("external_flash") {
            return Ok(None);
        }
        checked(
            path,
            part.address,
            part.size,
            AreaSource::PartitionManager(path.to_path_buf()),
        )
        .map(Some)
    }

    /// The node labelled `storage_partition` of a devicetree source (the build's `zephyr.dts`).
    pub fn from_devicetree(path: &Path) -> Result<Option<SettingsArea>, LayoutError> {
        let text = read(path)?;
        let Some(at) = find_label(&text, DT_STORAGE_LABEL) else {
            return Ok(None);
        };
        let node = &text[at..];
        let body_end = node.find("};").unwrap_or(node.len());
        let (address, size) =
            parse_reg(&node[..body_end]).ok_or_else(|| LayoutError::Devicetree {
                path: path.to_path_buf(),
            })?;
        checked(
            path,
            address,
            size,
            AreaSource::Devicetree(path.to_path_buf()),
        )
        .map(Some)
    }
}

fn read(path: &Path) -> Result<String, LayoutError> {
    std::fs::read_to_string(path).map_err(|source| LayoutError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn checked(
    path: &Path,
    address: u64,
    size: u64,
    source: AreaSource,
) -> Result<SettingsArea, LayoutError> {
    if size == 0 || address.checked_add(size).is_none() {
        return Err(LayoutError::BadRange {
            path: path.to_path_buf(),
            address,
            size,
        });
    }
    Ok(SettingsArea {
        address,
        size,
        source,
    })
}

/// Where `label:` starts a node (`storage_partition: partition@f8000 {`), not a reference to it
/// (`&storage_partition`) or a longer label.
fn find_label(text: &str, label: &str) -> Option<usize> {
    let pattern = format!("{label}:");
    let mut from = 0;
    while let Some(i) = text[from..].find(&pattern) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        if before.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '&')) {
            return Some(at);
        }
        from = at + pattern.len();
    }
    None
}

/// `reg = < 0xf8000 0x8000 >;` (one address cell, one size cell, as on the nRF52's flash
/// controller) -> (address, size).
fn parse_reg(node: &str) -> Option<(u64, u64)> {
    let at = node.find("reg")?;
    let rest = node[at + 3..].trim_start().strip_prefix('=')?.trim_start();
    let cells = rest.strip_prefix('<')?;
    let cells = &cells[..cells.find('>')?];
    let numbers: Vec<u64> = cells
        .split_whitespace()
        .map(
            |c| match c.strip_prefix("0x").or_else(|| c.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => c.parse().ok(),
            },
        )
        .collect::<Option<_>>()?;
    match numbers.as_slice() {
        [address, size] => Some((*address, *size)),
        _ => None,
    }
}

/// What a flash of one board will do, decided before the probe is touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashPlan {
    /// The image's hash the state file records for this board: programming is skipped when the
    /// board's flash still reads back as that image. `None`: program.
    pub skip_if_current: Option<String>,
    /// Erase the whole chip before programming (which also clears the settings).
    pub chip_erase: bool,
    /// The settings area erased whenever the chip is not erased as a whole (programming skipped,
    /// or sector-wise programming); `None`: the settings are kept (`--keep-state`).
    pub erase_settings: Option<SettingsArea>,
}

impl FlashPlan {
    /// The plan for putting `image_sha256` on a board whose state file records `recorded`.
    pub fn new(
        image_sha256: &str,
        recorded: Option<&str>,
        chip_erase: bool,
        settings: Option<SettingsArea>,
    ) -> FlashPlan {
        FlashPlan {
            skip_if_current: recorded.filter(|r| *r == image_sha256).map(str::to_string),
            chip_erase,
            erase_settings: settings,
        }
    }

    /// The settings erase to do after programming (`programmed`) or instead of it.
    pub fn settings_erase(&self, programmed: bool) -> Option<&SettingsArea> {
        if programmed && self.chip_erase {
            return None;
        }
        self.erase_settings.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devicetree_reg_and_labels() {
        let dts = "flash0 {\n\tpartitions {\n\t\tboot_partition: partition@0 {\n\t\t\tlabel = \"mcuboot\";\n\t\t\treg = < 0x0 0xc000 >;\n\t\t};\n\t\tstorage_partition: partition@f8000 {\n\t\t\tlabel = \"storage\";\n\t\t\treg = < 0xf8000 0x8000 >;\n\t\t};\n\t};\n};\n";
        let at = find_label(dts, DT_STORAGE_LABEL).unwrap();
        assert_eq!(parse_reg(&dts[at..]), Some((0xf8000, 0x8000)));
        assert_eq!(
            find_label("x = &storage_partition;", DT_STORAGE_LABEL),
            None
        );
        assert_eq!(
            find_label("my_storage_partition: p {", DT_STORAGE_LABEL),
            None
        );
        assert_eq!(parse_reg("reg = <0x1000>;"), None);
        assert_eq!(parse_reg("reg = <4096 8192>;"), Some((4096, 8192)));
    }

    #[test]
    fn plan_erases_settings_unless_the_chip_is_erased_or_state_is_kept() {
        let area = NRF52840DK_DEFAULT;
        let current = FlashPlan::new("aa", Some("aa"), true, Some(area.clone()));
        assert_eq!(current.skip_if_current.as_deref(), Some("aa"));
        assert_eq!(current.settings_erase(false), Some(&area));
        assert_eq!(current.settings_erase(true), None);
        let stale = FlashPlan::new("aa", Some("bb"), false, Some(area.clone()));
        assert_eq!(stale.skip_if_current, None);
        assert_eq!(stale.settings_erase(true), Some(&area));
        let kept = FlashPlan::new("aa", Some("aa"), true, None);
        assert_eq!(kept.settings_erase(false), None);
    }
}
