//! Hardware maps: which boards a lab host has, how to reach each one, and what it may be used for.
//!
//! Two input formats:
//! - ot-hil's own TOML (`[[board]]` tables, see `fixtures/hw/lab.toml`), and
//! - Zephyr Twister's `hardware_map.yaml`, imported as it is (schema:
//!   zephyr `scripts/schemas/twister/hwmap-schema.yaml`).
//!
//! Both are read into serde structs that mirror the file, then turned into a validated [`HardwareMap`].
//! Validation collects every problem before failing, so one run shows all of them; it rejects what makes
//! Twister hang or flash the wrong board (an empty `serial`, two boards on one probe or one port).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default console speed of the nRF Connect SDK samples.
pub const DEFAULT_BAUD: u32 = 115_200;
/// The tag that marks an 802.15.4 sniffer (no console of its own, no probe needed).
pub const SNIFFER_TAG: &str = "sniffer";
/// Tag of a DK without a debug probe (flashed elsewhere): it may omit `probe`, is never flashed,
/// and starts each case with the profile's `factoryreset` over its console instead of a
/// settings erase.
pub const NO_PROBE_TAG: &str = "no-probe";

/// Console dialect of the firmware a board runs (shared with manifests and the runner).
pub use ot_hil_board::Profile;

/// Which debug probe programs a board: its USB serial number, optionally pinned to a VID:PID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeSelector {
    pub vendor_id: Option<u16>,
    pub product_id: Option<u16>,
    /// Serial as written in the map; compared with [`same_serial`] so `683759358` matches `000683759358`.
    pub serial: String,
}

impl ProbeSelector {
    /// Parses `SERIAL` or `VID:PID:SERIAL` (hex VID/PID, as `probe-rs --probe` takes).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let parts: Vec<&str> = text.splitn(3, ':').collect();
        match parts.as_slice() {
            [serial] if !serial.is_empty() => Ok(ProbeSelector {
                vendor_id: None,
                product_id: None,
                serial: (*serial).to_string(),
            }),
            [vid, pid, serial] if !serial.is_empty() => Ok(ProbeSelector {
                vendor_id: Some(
                    u16::from_str_radix(vid, 16)
                        .map_err(|_| format!("bad vendor id `{vid}` in probe `{text}`"))?,
                ),
                product_id: Some(
                    u16::from_str_radix(pid, 16)
                        .map_err(|_| format!("bad product id `{pid}` in probe `{text}`"))?,
                ),
                serial: (*serial).to_string(),
            }),
            _ => Err(format!(
                "probe `{text}` is neither SERIAL nor VID:PID:SERIAL with a serial"
            )),
        }
    }
}

impl fmt::Display for ProbeSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.vendor_id, self.product_id) {
            (Some(v), Some(p)) => write!(f, "{v:04x}:{p:04x}:{}", self.serial),
            _ => f.write_str(&self.serial),
        }
    }
}

/// J-Link serials appear with and without zero padding (`nrfjprog --ids` prints `683759358`, USB says
/// `000683759358`): digit-only serials compare as numbers, anything else case-insensitively.
pub fn same_serial(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if digits(a) && digits(b) {
        a.trim_start_matches('0') == b.trim_start_matches('0')
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

/// One board of the lab, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Board {
    pub id: String,
    /// Zephyr board names it can run (Twister allows several, e.g. for one SoC's cores).
    pub platforms: Vec<String>,
    /// `None` only for boards that are never flashed (sniffers).
    pub probe: Option<ProbeSelector>,
    /// Console (or sniffer) serial port.
    pub port: PathBuf,
    pub baud: u32,
    /// `None` only for sniffers.
    pub profile: Option<Profile>,
    pub tags: BTreeSet<String>,
    pub notes: Option<String>,
}

impl Board {
    pub fn is_sniffer(&self) -> bool {
        self.tags.contains(SNIFFER_TAG)
    }
}

/// The validated set of boards of one lab host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HardwareMap {
    pub boards: Vec<Board>,
}

#[derive(Debug, thiserror::Error)]
pub enum HwMapError {
    #[error("failed to read hardware map {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write hardware map {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse hardware map {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("hardware map {path} is invalid:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("failed to discover boards: {0}")]
    Discovery(#[from] crate::sysfs::SysfsError),
    #[error("hardware map {path} has a name that is neither .toml nor .yaml/.yml")]
    UnknownFormat { path: PathBuf },
    /// No board to run on: every case would end as an infrastructure error, each retried.
    #[error("hardware map {path} has no usable board{}", if *skipped > 0 { format!(" (all {skipped} entries are skipped: connected: false or available: false)") } else { String::new() })]
    NoBoards { path: PathBuf, skipped: usize },
}

// -- ot-hil TOML --------------------------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default, rename = "board")]
    boards: Vec<TomlBoard>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlBoard {
    id: String,
    platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probe: Option<String>,
    port: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    baud: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    notes: Option<String>,
}

/// A board before validation: what both formats are mapped to.
#[derive(Debug)]
struct RawBoard {
    /// Where it came from, for messages (`board #2` or `entry #2`).
    origin: String,
    id: String,
    platforms: Vec<String>,
    probe: Option<String>,
    port: Option<String>,
    baud: Option<u32>,
    profile: Option<Profile>,
    tags: Vec<String>,
    notes: Option<String>,
}

impl HardwareMap {
    /// Loads a map by file name: `.toml` is ot-hil's format, `.yaml`/`.yml` is a Twister hardware map
    /// (imported with [`TwisterImport::default`]; its warnings go to the log).
    pub fn load(path: &Path) -> Result<HardwareMap, HwMapError> {
        let imported = HardwareMap::load_with_warnings(path)?;
        for warning in &imported.warnings {
            tracing::warn!("{}: {warning}", path.display());
        }
        Ok(imported.map)
    }

    /// [`HardwareMap::load`] with the import's warnings (skipped Twister entries, fields ot-hil does
    /// not use) returned, for a command to show them. A map without a usable board is an error.
    pub fn load_with_warnings(path: &Path) -> Result<ImportedMap, HwMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| HwMapError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let (imported, entries) = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => {
                let map = HardwareMap::from_toml(&text, path)?;
                let entries = map.boards.len();
                (
                    ImportedMap {
                        map,
                        warnings: Vec::new(),
                        entries,
                    },
                    entries,
                )
            }
            Some("yaml" | "yml") => {
                let imported = TwisterImport::default().import(&text, path)?;
                let entries = imported.entries;
                (imported, entries)
            }
            _ => {
                return Err(HwMapError::UnknownFormat {
                    path: path.to_path_buf(),
                });
            }
        };
        if imported.map.boards.is_empty() {
            return Err(HwMapError::NoBoards {
                path: path.to_path_buf(),
                skipped: entries,
            });
        }
        Ok(imported)
    }

    /// [`HardwareMap::load_with_warnings`], then [`HardwareMap::check_ports_exist`]: what a run on
    /// real boards calls first.
    pub fn load_checked(path: &Path) -> Result<ImportedMap, HwMapError> {
        let imported = HardwareMap::load_with_warnings(path)?;
        imported.map.check_ports_exist(path)?;
        Ok(imported)
    }

    /// Parses ot-hil's TOML format; `path` only names the source in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<HardwareMap, HwMapError> {
        let file: TomlFile = toml::from_str(text).map_err(|e| HwMapError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let raw = file
            .boards
            .into_iter()
            .enumerate()
            .map(|(i, b)| RawBoard {
                origin: format!("board #{} (`{}`)", i + 1, b.id),
                id: b.id,
                platforms: vec![b.platform],
                probe: b.probe,
                port: Some(b.port),
                baud: b.baud,
                profile: b.profile,
                tags: b.tags,
                notes: b.notes,
            })
            .collect();
        validate(raw, path)
    }

    /// Writes ot-hil's TOML format (what `ot-hil boards --generate` produces).
    pub fn to_toml(&self) -> String {
        let file = TomlFile {
            boards: self
                .boards
                .iter()
                .map(|b| TomlBoard {
                    id: b.id.clone(),
                    platform: b.platforms.first().cloned().unwrap_or_default(),
                    probe: b.probe.as_ref().map(ToString::to_string),
                    port: b.port.display().to_string(),
                    baud: Some(b.baud),
                    profile: b.profile,
                    tags: b.tags.iter().cloned().collect(),
                    notes: b.notes.clone(),
                })
                .collect(),
        };
        let body = toml::to_string_pretty(&file).unwrap_or_default();
        format!(
            "# ot-hil hardware map: one [[board]] per board of this lab host.\n\
             # probe = J-Link serial (or VID:PID:SERIAL); port = console; profile = ncs | upstream;\n\
             # tags are matched against what a case's nodes ask for (e.g. \"sniffer\").\n\n{body}"
        )
    }

    /// Fails, naming every board, when a board's port is not there: better at start than a timeout later.
    pub fn check_ports_exist(&self, path: &Path) -> Result<(), HwMapError> {
        let problems: Vec<String> = self
            .boards
            .iter()
            .filter(|b| !b.port.exists())
            .map(|b| {
                format!(
                    "board `{}`: port {} does not exist (unplugged, or renamed after re-enumeration? `ot-hil boards` lists what is attached)",
                    b.id,
                    b.port.display()
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(HwMapError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    pub fn board(&self, id: &str) -> Option<&Board> {
        self.boards.iter().find(|b| b.id == id)
    }
}

fn validate(raw: Vec<RawBoard>, path: &Path) -> Result<HardwareMap, HwMapError> {
    let mut problems = Vec::new();
    let mut seen_ids: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_ports: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_probes: Vec<(ProbeSelector, String)> = Vec::new();
    let mut boards = Vec::new();
    for b in raw {
        let before = problems.len();
        let origin = &b.origin;
        let id = b.id.trim().to_string();
        if id.is_empty() {
            problems.push(format!("{origin}: empty id"));
        } else if let Some(first) = seen_ids.get(&id) {
            problems.push(format!("{origin}: duplicate id `{id}` (also {first})"));
        } else {
            seen_ids.insert(id.clone(), origin.clone());
        }
        let tags: BTreeSet<String> = b.tags.iter().map(|t| t.trim().to_string()).collect();
        if tags.iter().any(String::is_empty) {
            problems.push(format!("{origin}: empty tag"));
        }
        let sniffer = tags.contains(SNIFFER_TAG);
        let platforms: Vec<String> = b
            .platforms
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if platforms.is_empty() {
            problems.push(format!("{origin}: empty platform"));
        }
        let port = match b.port.as_deref().map(str::trim) {
            None | Some("") => {
                problems.push(format!(
                    "{origin}: empty serial port (a board without a console cannot be tested)"
                ));
                PathBuf::new()
            }
            Some(port) => {
                if let Some(first) = seen_ports.get(port) {
                    problems.push(format!("{origin}: port {port} is also used by {first}"));
                } else {
                    seen_ports.insert(port.to_string(), origin.clone());
                }
                PathBuf::from(port)
            }
        };
        let probe = match b.probe.as_deref().map(str::trim) {
            None | Some("") if sniffer || tags.contains(NO_PROBE_TAG) => None,
            None | Some("") => {
                problems.push(format!(
                    "{origin}: empty probe serial (needed to flash it; only boards tagged `{SNIFFER_TAG}` or `{NO_PROBE_TAG}` may omit it)"
                ));
                None
            }
            Some(text) => match ProbeSelector::parse(text) {
                Ok(selector) => {
                    if let Some((_, first)) = seen_probes
                        .iter()
                        .find(|(p, _)| same_serial(&p.serial, &selector.serial))
                    {
                        problems.push(format!(
                            "{origin}: probe {} is also used by {first} (one of them would flash the other board)",
                            selector.serial
                        ));
                    } else {
                        seen_probes.push((selector.clone(), origin.clone()));
                    }
                    Some(selector)
                }
                Err(message) => {
                    problems.push(format!("{origin}: {message}"));
                    None
                }
            },
        };
        if b.profile.is_none() && !sniffer {
            problems.push(format!("{origin}: no profile (ncs or upstream)"));
        }
        let baud = b.baud.unwrap_or(DEFAULT_BAUD);
        if baud == 0 {
            problems.push(format!("{origin}: baud 0"));
        }
        if problems.len() == before {
            boards.push(Board {
                id,
                platforms,
                probe,
                port,
                baud,
                profile: b.profile,
                tags,
                notes: b.notes,
            });
        }
    }
    if problems.is_empty() {
        Ok(HardwareMap { boards })
    } else {
        Err(HwMapError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

// -- Twister YAML ---------------------------------------------------------------------------------

/// One entry of a Twister hardware map, every field of the schema; unknown keys are rejected (a typo such
/// as `probe-id` would otherwise be dropped without a word).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TwisterEntry {
    id: String,
    platform: serde_norway::Value,
    product: String,
    runner: String,
    connected: bool,
    #[serde(default)]
    serial: Option<String>,
    #[serde(default)]
    baud: Option<u32>,
    #[serde(default)]
    probe_id: Option<String>,
    #[serde(default)]
    fixtures: Option<Vec<String>>,
    #[serde(default)]
    serial_pty: Option<String>,
    #[serde(default)]
    runner_params: Option<Vec<String>>,
    #[serde(default)]
    pre_script: Option<String>,
    #[serde(default)]
    post_flash_script: Option<String>,
    #[serde(default)]
    post_script: Option<String>,
    #[serde(default)]
    flash_timeout: Option<u64>,
    #[serde(default)]
    flash_with_test: Option<bool>,
    #[serde(default)]
    flash_before: Option<bool>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    available: Option<bool>,
    #[serde(default)]
    script_param: Option<serde_norway::Value>,
}

/// The parser's message, with a duplicate field pointed at where it is repeated: the YAML parser
/// gives the start of the entry, which leaves the reader to hunt for the second key.
fn twister_parse_message(e: &serde_norway::Error, text: &str) -> String {
    let message = e.to_string();
    let duplicate = message
        .split_once("duplicate field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(key, _)| key);
    let (Some(key), Some(at)) = (duplicate, e.location()) else {
        return message;
    };
    let Some((first, second)) = repeated_key_lines(text, at.line(), at.column(), key) else {
        return message;
    };
    message.replace(
        &format!("at line {} column {}", at.line(), at.column()),
        &format!(
            "at line {second} column {} (first at line {first})",
            at.column()
        ),
    )
}

/// Lines (1-based) of the first two occurrences of `key` among the keys of the block mapping that
/// starts at `line`:`column` (its keys are indented to that column).
fn repeated_key_lines(text: &str, line: usize, column: usize, key: &str) -> Option<(usize, usize)> {
    let indent = column.checked_sub(1)?;
    let mut found = Vec::new();
    for (i, l) in text.lines().enumerate().skip(line.checked_sub(1)?) {
        let lead = l.len() - l.trim_start().len();
        let content = l.trim();
        if i + 1 > line && !content.is_empty() && !content.starts_with('#') && lead < indent {
            break; // The mapping ended (next entry or outer level).
        }
        // On the first line the key follows `- `; on the others it is indented to the column.
        if i + 1 > line && lead != indent {
            continue;
        }
        let Some(rest) = l.get(indent..) else {
            continue;
        };
        let rest = rest.trim_start_matches(['\'', '"']);
        if rest.strip_prefix(key).is_some_and(|r| {
            r.trim_start_matches(['\'', '"'])
                .trim_start()
                .starts_with(':')
        }) {
            found.push(i + 1);
            if found.len() == 2 {
                return Some((found[0], found[1]));
            }
        }
    }
    None
}

/// How to read a Twister map: Twister has no notion of a console profile, so it is given here.
#[derive(Debug, Clone)]
pub struct TwisterImport {
    /// Profile for every imported board (Twister runs Zephyr images: the NCS shell is the usual case).
    pub profile: Profile,
}

impl Default for TwisterImport {
    fn default() -> Self {
        TwisterImport {
            profile: Profile::Ncs,
        }
    }
}

/// A Twister map read into ot-hil terms, with what ot-hil does differently spelled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedMap {
    pub map: HardwareMap,
    /// Fields ot-hil does not act on (scripts, runner, flash options), per board, and the entries
    /// left out; not errors.
    pub warnings: Vec<String>,
    /// Entries in the file, skipped ones included.
    pub entries: usize,
}

impl TwisterImport {
    /// Imports a Twister `hardware_map.yaml` as it is.
    ///
    /// - `id` becomes the board id; the probe is `probe_id` when given (Twister's id of the flashing probe
    ///   when it differs from the board), else `id`.
    /// - `serial` becomes the port; empty or missing `serial` is an error (Twister hangs on it), and
    ///   `serial_pty` is refused (ot-hil opens serial ports only).
    /// - `fixtures` become tags; a product naming the nRF 802.15.4 sniffer adds the `sniffer` tag.
    /// - entries with `connected: false` or `available: false` are left out (with a warning).
    pub fn import(&self, text: &str, path: &Path) -> Result<ImportedMap, HwMapError> {
        let entries: Vec<TwisterEntry> =
            serde_norway::from_str(text).map_err(|e| HwMapError::Parse {
                path: path.to_path_buf(),
                message: twister_parse_message(&e, text),
            })?;
        let total = entries.len();
        let mut warnings = Vec::new();
        let mut raw = Vec::new();
        let mut problems = Vec::new();
        for (i, e) in entries.into_iter().enumerate() {
            let origin = format!("entry #{} (id `{}`)", i + 1, e.id);
            if !e.connected || e.available == Some(false) {
                warnings.push(format!(
                    "{origin}: skipped ({})",
                    if e.connected {
                        "available: false"
                    } else {
                        "connected: false"
                    }
                ));
                continue;
            }
            let platforms = match platform_list(&e.platform) {
                Ok(p) => p,
                Err(message) => {
                    problems.push(format!("{origin}: {message}"));
                    continue;
                }
            };
            if e.serial_pty.is_some() {
                problems.push(format!(
                    "{origin}: serial_pty is not supported (ot-hil opens a serial port; give `serial`)"
                ));
                continue;
            }
            let mut tags = e.fixtures.clone().unwrap_or_default();
            let sniffer = e.product.to_ascii_lowercase().contains("sniffer");
            if sniffer && !tags.iter().any(|t| t == SNIFFER_TAG) {
                tags.push(SNIFFER_TAG.to_string());
            }
            let ignored: Vec<&str> = [
                ("runner_params", e.runner_params.is_some()),
                ("pre_script", e.pre_script.is_some()),
                ("post_flash_script", e.post_flash_script.is_some()),
                ("post_script", e.post_script.is_some()),
                ("script_param", e.script_param.is_some()),
                ("flash_timeout", e.flash_timeout.is_some()),
                ("flash_with_test", e.flash_with_test.is_some()),
                ("flash_before", e.flash_before.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            if !ignored.is_empty() {
                warnings.push(format!(
                    "{origin}: ot-hil does not use {}",
                    ignored.join(", ")
                ));
            }
            if !sniffer
                && !matches!(
                    e.runner.as_str(),
                    "nrfjprog" | "nrfutil" | "jlink" | "probe-rs" | "pyocd"
                )
            {
                warnings.push(format!(
                    "{origin}: runner `{}` is replaced by probe-rs (ot-hil flashes through the probe itself)",
                    e.runner
                ));
            }
            let probe = if sniffer {
                // A sniffer dongle has no debug probe; its id is its USB serial.
                e.probe_id.clone()
            } else {
                Some(e.probe_id.clone().unwrap_or_else(|| e.id.clone()))
            };
            let notes = match (&e.notes, e.product.as_str()) {
                (Some(n), product) => Some(format!("{product}: {n}")),
                (None, product) => Some(product.to_string()),
            };
            raw.push(RawBoard {
                origin,
                id: e.id,
                platforms,
                probe,
                port: e.serial,
                baud: e.baud,
                profile: (!sniffer).then_some(self.profile),
                tags,
                notes,
            });
        }
        let map = match validate(raw, path) {
            Ok(map) if problems.is_empty() => map,
            Ok(_) => {
                return Err(HwMapError::Invalid {
                    path: path.to_path_buf(),
                    problems,
                });
            }
            Err(HwMapError::Invalid { problems: more, .. }) => {
                problems.extend(more);
                return Err(HwMapError::Invalid {
                    path: path.to_path_buf(),
                    problems,
                });
            }
            Err(other) => return Err(other),
        };
        Ok(ImportedMap {
            map,
            warnings,
            entries: total,
        })
    }
}

fn platform_list(value: &serde_norway::Value) -> Result<Vec<String>, String> {
    match value {
        serde_norway::Value::String(s) => Ok(vec![s.clone()]),
        serde_norway::Value::Sequence(items) => items
            .iter()
            .map(|v| match v {
                serde_norway::Value::String(s) => Ok(s.clone()),
                other => Err(format!("platform list holds a non-string: {other:?}")),
            })
            .collect(),
        other => Err(format!(
            "platform must be a string or a list of strings, not {other:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.toml")
    }

    const TWO: &str = r#"
[[board]]
id = "dk1"
platform = "nrf52840dk_nrf52840"
probe = "000683759358"
port = "/dev/ttyACM0"
profile = "ncs"

[[board]]
id = "dk2"
platform = "nrf52840dk_nrf52840"
probe = "1366:1061:001050247387"
port = "/dev/ttyACM1"
baud = 1000000
profile = "upstream"
tags = ["coaps", "router"]
"#;

    fn problems_of(err: HwMapError) -> Vec<String> {
        match err {
            HwMapError::Invalid { problems, .. } => problems,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn toml_round_trip() {
        let map = HardwareMap::from_toml(TWO, p()).unwrap();
        assert_eq!(map.boards.len(), 2);
        assert_eq!(map.boards[0].baud, DEFAULT_BAUD);
        assert_eq!(
            map.boards[1].probe.as_ref().unwrap().vendor_id,
            Some(0x1366)
        );
        assert_eq!(map.boards[1].profile, Some(Profile::Upstream));
        let again = HardwareMap::from_toml(&map.to_toml(), p()).unwrap();
        assert_eq!(again, map);
    }

    #[test]
    fn a_dk_tagged_no_probe_may_omit_its_probe() {
        let text = r#"
[[board]]
id = "dk1"
platform = "nrf52840dk_nrf52840"
port = "/dev/ttyACM0"
profile = "ncs"
tags = ["no-probe"]
"#;
        let map = HardwareMap::from_toml(text, p()).unwrap();
        assert_eq!(map.boards[0].probe, None);
        assert!(!map.boards[0].is_sniffer());
        let untagged = text.replace("tags = [\"no-probe\"]\n", "");
        let problems = problems_of(HardwareMap::from_toml(&untagged, p()).unwrap_err());
        assert!(
            problems.join("\n").contains("`no-probe` may omit it"),
            "{problems:?}"
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = r#"
[[board]]
id = "dk1"
platform = "nrf52840dk_nrf52840"
probe = ""
port = "/dev/ttyACM0"
profile = "ncs"

[[board]]
id = "dk1"
platform = "nrf52840dk_nrf52840"
probe = "683759358"
port = "/dev/ttyACM0"

[[board]]
id = "dk3"
platform = "nrf52840dk_nrf52840"
probe = "000683759358"
port = ""
profile = "ncs"
"#;
        let problems = problems_of(HardwareMap::from_toml(text, p()).unwrap_err());
        let joined = problems.join("\n");
        assert!(
            joined.contains("board #1 (`dk1`): empty probe serial"),
            "{joined}"
        );
        assert!(joined.contains("duplicate id `dk1`"), "{joined}");
        assert!(
            joined.contains("port /dev/ttyACM0 is also used by board #1"),
            "{joined}"
        );
        assert!(joined.contains("board #2 (`dk1`): no profile"), "{joined}");
        assert!(
            joined.contains("board #3 (`dk3`): empty serial port"),
            "{joined}"
        );
        // 683759358 and 000683759358 are the same J-Link.
        assert!(
            joined.contains("probe 000683759358 is also used by board #2"),
            "{joined}"
        );
        assert_eq!(problems.len(), 6, "{joined}");
    }

    #[test]
    fn unknown_keys_and_profiles_are_parse_errors() {
        let text =
            "[[board]]\nid='a'\nplatform='x'\nport='/dev/x'\nprobe_serial='1'\nprofile='ncs'\n";
        assert!(matches!(
            HardwareMap::from_toml(text, p()),
            Err(HwMapError::Parse { .. })
        ));
        let text = "[[board]]\nid='a'\nplatform='x'\nport='/dev/x'\nprobe='1'\nprofile='zephyr'\n";
        assert!(matches!(
            HardwareMap::from_toml(text, p()),
            Err(HwMapError::Parse { .. })
        ));
    }

    #[test]
    fn sniffer_needs_no_probe_or_profile() {
        let text = "[[board]]\nid='sn'\nplatform='nrf52840dongle_nrf52840'\nport='/dev/ttyACM3'\ntags=['sniffer']\n";
        let map = HardwareMap::from_toml(text, p()).unwrap();
        assert!(map.boards[0].is_sniffer());
        assert_eq!(map.boards[0].probe, None);
    }

    #[test]
    fn missing_ports_fail_fast_with_each_board_named() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("ttyACM0");
        std::fs::write(&present, "").unwrap();
        let text = format!(
            "[[board]]\nid='a'\nplatform='x'\nprobe='1'\nport='{}'\nprofile='ncs'\n[[board]]\nid='b'\nplatform='x'\nprobe='2'\nport='{}'\nprofile='ncs'\n",
            present.display(),
            dir.path().join("ttyACM9").display()
        );
        let map = HardwareMap::from_toml(&text, p()).unwrap();
        let problems = problems_of(map.check_ports_exist(p()).unwrap_err());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("board `b`: port"), "{problems:?}");
    }

    #[test]
    fn serial_comparison_ignores_zero_padding_only_for_digits() {
        assert!(same_serial("683759358", "000683759358"));
        assert!(!same_serial("683759358", "000683759359"));
        assert!(same_serial("f4ce36d0a1b2", "F4CE36D0A1B2"));
        assert!(!same_serial("0A1", "A1"));
        assert!(!same_serial("", "000"));
    }

    #[test]
    fn probe_selector_forms() {
        let s = ProbeSelector::parse("1366:1015:000683759358").unwrap();
        assert_eq!(s.to_string(), "1366:1015:000683759358");
        assert_eq!(ProbeSelector::parse("683759358").unwrap().vendor_id, None);
        assert!(ProbeSelector::parse("1366:1015").is_err());
        assert!(ProbeSelector::parse("zz:1015:1").is_err());
        assert!(ProbeSelector::parse("1366:1015:").is_err());
    }

    const TWISTER: &str = r#"
- connected: true
  id: 000683759358
  platform: nrf52840dk/nrf52840
  product: J-Link
  runner: nrfjprog
  serial: /dev/ttyACM0
- connected: true
  id: 001050247387
  probe_id: 001050999999
  platform: [nrf52840dk/nrf52840, nrf52840dk_nrf52840]
  product: J-Link
  runner: jlink
  serial: /dev/ttyACM1
  baud: 1000000
  fixtures: [coaps]
  pre_script: /opt/lab/power-cycle.sh
- connected: false
  id: 000683000000
  platform: nrf52840dk/nrf52840
  product: J-Link
  runner: nrfjprog
  serial: /dev/ttyACM7
"#;

    #[test]
    fn twister_import_keeps_ids_as_written_and_honours_probe_id() {
        let imported = TwisterImport::default()
            .import(TWISTER, Path::new("map.yaml"))
            .unwrap();
        let b = &imported.map.boards;
        assert_eq!(b.len(), 2);
        // Leading zeros survive: Twister (PyYAML) reads this as a string too.
        assert_eq!(b[0].id, "000683759358");
        assert_eq!(b[0].probe.as_ref().unwrap().serial, "000683759358");
        assert_eq!(b[1].probe.as_ref().unwrap().serial, "001050999999");
        assert_eq!(
            b[1].platforms,
            ["nrf52840dk/nrf52840", "nrf52840dk_nrf52840"]
        );
        assert_eq!(b[1].baud, 1_000_000);
        assert!(b[1].tags.contains("coaps"));
        assert_eq!(b[0].profile, Some(Profile::Ncs));
        let w = imported.warnings.join("\n");
        assert!(w.contains("does not use pre_script"), "{w}");
        assert!(
            w.contains("000683000000") && w.contains("connected: false"),
            "{w}"
        );
    }

    #[test]
    fn twister_empty_serial_and_pty_and_typos_fail_fast() {
        let empty = "- connected: true\n  id: '1'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: ''\n";
        let problems = problems_of(
            TwisterImport::default()
                .import(empty, Path::new("m.yaml"))
                .unwrap_err(),
        );
        assert!(problems[0].contains("empty serial port"), "{problems:?}");
        let missing =
            "- connected: true\n  id: '1'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n";
        assert!(
            TwisterImport::default()
                .import(missing, Path::new("m.yaml"))
                .is_err()
        );
        let pty = "- connected: true\n  id: '1'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial_pty: 'socat ...'\n";
        let problems = problems_of(
            TwisterImport::default()
                .import(pty, Path::new("m.yaml"))
                .unwrap_err(),
        );
        assert!(
            problems[0].contains("serial_pty is not supported"),
            "{problems:?}"
        );
        let typo = "- connected: true\n  id: '1'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/x\n  probe-id: '2'\n";
        let err = TwisterImport::default()
            .import(typo, Path::new("m.yaml"))
            .unwrap_err();
        assert!(err.to_string().contains("probe-id"), "{err}");
    }

    #[test]
    fn twister_sniffer_product_is_tagged() {
        let text = "- connected: true\n  id: F4CE36D0A1B2\n  platform: nrf52840dongle/nrf52840\n  product: nRF 802154 Sniffer\n  runner: nrfutil\n  serial: /dev/ttyACM2\n";
        let imported = TwisterImport::default()
            .import(text, Path::new("m.yaml"))
            .unwrap();
        let b = &imported.map.boards[0];
        assert!(b.is_sniffer());
        assert_eq!(b.probe, None);
        assert_eq!(b.profile, None);
    }
}

#[cfg(test)]
mod yaml_scalars {
    use super::*;

    /// PyYAML (Twister) reads `683759358` as an int and `0x12` as an int too; hand-written maps carry
    /// such ids unquoted. They must arrive as the text written.
    #[test]
    fn numeric_looking_ids_stay_text() {
        let text = "- connected: true\n  id: 683759358\n  probe_id: 000683759358\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/ttyACM0\n";
        let imported = TwisterImport::default()
            .import(text, Path::new("m.yaml"))
            .unwrap();
        assert_eq!(imported.map.boards[0].id, "683759358");
        assert_eq!(
            imported.map.boards[0].probe.as_ref().unwrap().serial,
            "000683759358"
        );
    }

    #[test]
    fn twister_duplicate_field_points_at_the_duplicate() {
        let text = "- connected: true\n  id: '1'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/x\n  baud: 1\n  serial: /dev/y\n- connected: true\n  id: '2'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/z\n";
        let err = TwisterImport::default()
            .import(text, Path::new("m.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("duplicate field `serial` at line 8 column 3 (first at line 6)"),
            "{err}"
        );
        // In a later entry too.
        let text = "- connected: true\n  id: '1'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/x\n- connected: true\n  id: '2'\n  platform: p\n  product: J-Link\n  # a comment\n  runner: nrfjprog\n  id: '3'\n  serial: /dev/z\n";
        let err = TwisterImport::default()
            .import(text, Path::new("m.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("duplicate field `id` at line 13 column 3 (first at line 8)"),
            "{err}"
        );
    }

    #[test]
    fn a_map_without_a_usable_board_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let off = dir.path().join("off.yaml");
        std::fs::write(
            &off,
            "- connected: false\n  id: '1'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/x\n- connected: true\n  available: false\n  id: '2'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/y\n",
        )
        .unwrap();
        let err = HardwareMap::load(&off).unwrap_err().to_string();
        assert!(
            err.ends_with("has no usable board (all 2 entries are skipped: connected: false or available: false)"),
            "{err}"
        );
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "[]\n").unwrap();
        let err = HardwareMap::load(&empty).unwrap_err().to_string();
        assert!(err.ends_with("has no usable board"), "{err}");
        let empty = dir.path().join("empty.toml");
        std::fs::write(&empty, "# nothing here\n").unwrap();
        let err = HardwareMap::load_checked(&empty).unwrap_err().to_string();
        assert!(err.ends_with("empty.toml has no usable board"), "{err}");
    }

    #[test]
    fn skipped_entries_are_returned_as_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let map = dir.path().join("m.yaml");
        std::fs::write(
            &map,
            "- connected: false\n  id: '1'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/x\n- connected: true\n  id: '2'\n  platform: p\n  product: J-Link\n  runner: nrfjprog\n  serial: /dev/y\n",
        )
        .unwrap();
        let imported = HardwareMap::load_with_warnings(&map).unwrap();
        assert_eq!(imported.map.boards.len(), 1);
        assert_eq!(imported.entries, 2);
        assert!(
            imported
                .warnings
                .iter()
                .any(|w| w.contains("entry #1 (id `1`): skipped (connected: false)")),
            "{:?}",
            imported.warnings
        );
    }
}
