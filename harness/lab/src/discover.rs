//! Board discovery: pairs each debug probe with the serial port(s) of the same USB device.
//!
//! An nRF52840 DK shows up twice: as a J-Link probe (probe-rs) and as one or two CDC ACM ttys. Both carry
//! the same USB serial number, the J-Link serial zero-padded to 12 digits; that, not the tty number, is what
//! ties them together. With two CDC ports the application UART is interface 00.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::hwmap::{
    Board, HardwareMap, HwMapError, ProbeSelector, Profile, SNIFFER_TAG, same_serial,
};
use crate::probes::ProbeEntry;
use crate::sysfs::{SerialPortEntry, SysRoot, SysfsError, list_serial_ports};

/// SEGGER's USB vendor id (the DK's on-board J-Link OB).
pub const SEGGER_VID: u16 = 0x1366;
/// Product ids of the J-Link OB firmware on Nordic DKs (which one depends on the OB firmware and its
/// CDC/MSD configuration).
pub const JLINK_OB_PIDS: [u16; 3] = [0x1015, 0x1051, 0x1061];
/// Nordic Semiconductor's USB vendor id.
pub const NORDIC_VID: u16 = 0x1915;
/// The nRF 802.15.4 sniffer firmware's product id.
pub const SNIFFER_PID: u16 = 0x154b;
/// The sniffer firmware's USB product string.
pub const SNIFFER_PRODUCT: &str = "nRF 802154 Sniffer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BoardKind {
    /// A Nordic DK: on-board J-Link OB.
    NrfDk,
    /// An nRF 802.15.4 sniffer dongle.
    Sniffer,
    /// A debug probe that is not a DK's J-Link OB (listed, not put into generated maps).
    OtherProbe,
    /// A USB serial port with no probe (listed, not put into generated maps).
    OtherSerial,
}

impl BoardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BoardKind::NrfDk => "dk",
            BoardKind::Sniffer => SNIFFER_TAG,
            BoardKind::OtherProbe => "probe",
            BoardKind::OtherSerial => "serial",
        }
    }
}

/// One thing found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredBoard {
    pub kind: BoardKind,
    /// USB serial number of the device (for a DK: the J-Link serial as USB reports it, 12 digits).
    pub serial: Option<String>,
    pub vendor_id: u16,
    pub product_id: u16,
    pub probe: Option<ProbeEntry>,
    /// The console: for a DK the application UART (interface 00).
    pub port: Option<SerialPortEntry>,
    /// Further ports of the same device (a DK's second CDC port).
    pub other_ports: Vec<SerialPortEntry>,
    /// What looks off, in words (e.g. a J-Link tty whose probe probe-rs did not list).
    pub notes: Vec<String>,
}

impl DiscoveredBoard {
    /// The id `generate_hardware_map` gives it.
    pub fn suggested_id(&self) -> String {
        let serial = self.serial.clone().unwrap_or_else(|| {
            self.port
                .as_ref()
                .map_or_else(|| "unknown".to_string(), |p| p.name.clone())
        });
        format!("{}-{serial}", self.kind.as_str())
    }

    /// The path to open: the stable `/dev/serial/by-id/...` link when udev made one, else `/dev/ttyX`.
    pub fn port_path(&self) -> Option<PathBuf> {
        self.port
            .as_ref()
            .map(|p| p.by_id.clone().unwrap_or_else(|| p.dev_path.clone()))
    }
}

/// Finds the boards attached to this host from its serial ports (read under `root`) and the probe list
/// (live: [`crate::probes::list_probes`]; recorded: [`crate::probes::parse_probe_rs_list`]).
pub fn discover(root: &SysRoot, probes: &[ProbeEntry]) -> Result<Vec<DiscoveredBoard>, SysfsError> {
    Ok(pair(list_serial_ports(root)?, probes))
}

/// [`discover`] on this machine: live `/sys` and `/dev`, probes listed over USB by probe-rs.
pub fn discover_attached() -> Result<Vec<DiscoveredBoard>, SysfsError> {
    discover(&SysRoot::live(), &crate::probes::list_probes())
}

/// The pairing itself, on already listed ports and probes.
pub fn pair(ports: Vec<SerialPortEntry>, probes: &[ProbeEntry]) -> Vec<DiscoveredBoard> {
    // Group USB ports by device: (vid, pid, serial). Ports without a serial cannot be paired; each stands alone.
    let mut groups: BTreeMap<(u16, u16, String), Vec<SerialPortEntry>> = BTreeMap::new();
    let mut loners = Vec::new();
    for port in ports {
        // Ports not on USB (on-board UARTs) have nothing to pair with.
        if let Some(usb) = &port.usb {
            match &usb.serial_number {
                Some(serial) => groups
                    .entry((usb.vendor_id, usb.product_id, serial.clone()))
                    .or_default()
                    .push(port),
                None => loners.push(port),
            }
        }
    }
    let mut boards = Vec::new();
    for probe in probes {
        let key = groups
            .keys()
            .find(|(vid, _, serial)| {
                *vid == probe.vendor_id
                    && probe
                        .serial_number
                        .as_deref()
                        .is_some_and(|ps| same_serial(ps, serial))
            })
            .cloned();
        let ports = key.and_then(|k| groups.remove(&k)).unwrap_or_default();
        let is_dk = probe.vendor_id == SEGGER_VID && JLINK_OB_PIDS.contains(&probe.product_id);
        let mut board = board_from_ports(
            if is_dk {
                BoardKind::NrfDk
            } else {
                BoardKind::OtherProbe
            },
            ports,
            probe.vendor_id,
            probe.product_id,
        );
        if board.serial.is_none() {
            board.serial = probe.serial_number.clone();
        }
        if is_dk && board.port.is_none() {
            board.notes.push(
                "no serial port with this J-Link's serial number (is the VCOM disabled?)"
                    .to_string(),
            );
        }
        board.probe = Some(probe.clone());
        boards.push(board);
    }
    for ((vid, pid, _), ports) in groups {
        let is_sniffer = (vid == NORDIC_VID && pid == SNIFFER_PID)
            || ports.iter().any(|p| {
                p.usb.as_ref().and_then(|u| u.product.as_deref()) == Some(SNIFFER_PRODUCT)
            });
        let kind = if is_sniffer {
            BoardKind::Sniffer
        } else if vid == SEGGER_VID && JLINK_OB_PIDS.contains(&pid) {
            BoardKind::NrfDk
        } else {
            BoardKind::OtherSerial
        };
        let mut board = board_from_ports(kind, ports, vid, pid);
        if kind == BoardKind::NrfDk {
            board.notes.push(
                "J-Link tty found but probe-rs did not list the probe (udev rules or permissions?)"
                    .to_string(),
            );
        }
        boards.push(board);
    }
    for port in loners {
        let (vid, pid) = port
            .usb
            .as_ref()
            .map_or((0, 0), |u| (u.vendor_id, u.product_id));
        let mut board = board_from_ports(BoardKind::OtherSerial, vec![port], vid, pid);
        board
            .notes
            .push("USB device without a serial number".to_string());
        boards.push(board);
    }
    boards.sort_by(|a, b| {
        (
            a.kind,
            a.port.as_ref().map(|p| p.name.clone()),
            a.serial.clone(),
        )
            .cmp(&(
                b.kind,
                b.port.as_ref().map(|p| p.name.clone()),
                b.serial.clone(),
            ))
    });
    boards
}

fn board_from_ports(
    kind: BoardKind,
    mut ports: Vec<SerialPortEntry>,
    vid: u16,
    pid: u16,
) -> DiscoveredBoard {
    // The lowest interface number is the application UART (interface 00 on a DK with two CDC ports);
    // tty numbers say nothing, they follow plug order.
    ports.sort_by_key(|p| {
        (
            p.usb.as_ref().and_then(|u| u.interface).unwrap_or(u8::MAX),
            p.name.clone(),
        )
    });
    let serial = ports
        .first()
        .and_then(|p| p.usb.as_ref())
        .and_then(|u| u.serial_number.clone());
    let mut iter = ports.into_iter();
    let port = iter.next();
    DiscoveredBoard {
        kind,
        serial,
        vendor_id: vid,
        product_id: pid,
        probe: None,
        port,
        other_ports: iter.collect(),
        notes: Vec::new(),
    }
}

/// `/dev/ttyACM0 (if00)`: the interface number tells a DK's two CDC ports apart.
fn describe_port(p: &SerialPortEntry) -> String {
    match p.usb.as_ref().and_then(|u| u.interface) {
        Some(i) => format!("{} (if{i:02})", p.dev_path.display()),
        None => p.dev_path.display().to_string(),
    }
}

/// A plain-text table for `ot-hil boards`.
pub fn render_table(boards: &[DiscoveredBoard]) -> String {
    let header = ["KIND", "ID", "USB", "PROBE", "PORT", "NOTES"];
    let rows: Vec<[String; 6]> = boards
        .iter()
        .map(|b| {
            let ports: Vec<String> = b
                .port
                .iter()
                .chain(b.other_ports.iter())
                .map(describe_port)
                .collect();
            let port = if ports.is_empty() {
                "-".to_string()
            } else {
                ports.join(", ")
            };
            [
                b.kind.as_str().to_string(),
                b.suggested_id(),
                format!("{:04x}:{:04x}", b.vendor_id, b.product_id),
                b.probe
                    .as_ref()
                    .map_or("-".to_string(), ProbeEntry::selector),
                port,
                b.notes.join("; "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    if boards.is_empty() {
        out.push_str("(no boards found)\n");
    }
    out
}

/// What a generated map assumes about the boards (discovery cannot see the firmware).
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub dk_platform: String,
    pub dk_profile: Profile,
    pub sniffer_platform: String,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            dk_platform: "nrf52840dk_nrf52840".to_string(),
            dk_profile: Profile::Ncs,
            sniffer_platform: "nrf52840dongle_nrf52840".to_string(),
        }
    }
}

/// A hardware map of the DKs (with a console and a probe) and sniffers found.
pub fn hardware_map_from(boards: &[DiscoveredBoard], options: &GenerateOptions) -> HardwareMap {
    let mut out = Vec::new();
    for b in boards {
        let Some(port) = b.port_path() else { continue };
        match b.kind {
            BoardKind::NrfDk => {
                let Some(probe) = &b.probe else { continue };
                let Some(serial) = probe.serial_number.clone() else {
                    continue;
                };
                out.push(Board {
                    id: b.suggested_id(),
                    platforms: vec![options.dk_platform.clone()],
                    probe: Some(ProbeSelector {
                        vendor_id: Some(probe.vendor_id),
                        product_id: Some(probe.product_id),
                        serial,
                    }),
                    port,
                    baud: crate::hwmap::DEFAULT_BAUD,
                    profile: Some(options.dk_profile),
                    tags: Default::default(),
                    notes: None,
                });
            }
            BoardKind::Sniffer => out.push(Board {
                id: b.suggested_id(),
                platforms: vec![options.sniffer_platform.clone()],
                probe: None,
                port,
                baud: crate::hwmap::DEFAULT_BAUD,
                profile: None,
                tags: [SNIFFER_TAG.to_string()].into_iter().collect(),
                notes: None,
            }),
            BoardKind::OtherProbe | BoardKind::OtherSerial => {}
        }
    }
    HardwareMap { boards: out }
}

/// Discovers, builds the map and writes it as ot-hil TOML to `path`; returns the map written.
pub fn generate_hardware_map(
    root: &SysRoot,
    probes: &[ProbeEntry],
    options: &GenerateOptions,
    path: &Path,
) -> Result<HardwareMap, HwMapError> {
    let boards = discover(root, probes)?;
    let map = hardware_map_from(&boards, options);
    std::fs::write(path, map.to_toml()).map_err(|source| HwMapError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(map)
}

/// Compares a hardware map with what is attached; one line per problem (empty = all present and paired).
///
/// Beyond "is it there", this catches the map pairing one DK's probe with another DK's port, which would
/// flash one board while reading the console of the other.
pub fn verify_map(map: &HardwareMap, found: &[DiscoveredBoard]) -> Vec<String> {
    let owner_of_port = |port: &Path| {
        found.iter().find(|d| {
            d.port
                .iter()
                .chain(d.other_ports.iter())
                .any(|p| p.dev_path == port || p.by_id.as_deref() == Some(port))
        })
    };
    let mut problems = Vec::new();
    for board in &map.boards {
        let by_port = owner_of_port(&board.port);
        if by_port.is_none() {
            problems.push(format!(
                "board `{}`: port {} is not attached",
                board.id,
                board.port.display()
            ));
        }
        let Some(probe) = &board.probe else { continue };
        let by_probe = found.iter().find(|d| {
            d.probe.as_ref().is_some_and(|p| {
                p.serial_number
                    .as_deref()
                    .is_some_and(|s| same_serial(s, &probe.serial))
                    && probe.vendor_id.is_none_or(|v| v == p.vendor_id)
                    && probe.product_id.is_none_or(|v| v == p.product_id)
            })
        });
        match (by_probe, by_port) {
            (None, _) => problems.push(format!(
                "board `{}`: probe {probe} is not attached",
                board.id
            )),
            (Some(a), Some(b)) if a != b => problems.push(format!(
                "board `{}`: port {} belongs to the device with serial {}, not to probe {probe}",
                board.id,
                board.port.display(),
                b.serial.as_deref().unwrap_or("?")
            )),
            _ => {}
        }
        let console = by_probe
            .filter(|d| by_port == Some(*d))
            .and_then(|d| d.port.as_ref());
        if let Some(p) = console.filter(|p| {
            p.dev_path != board.port && p.by_id.as_deref() != Some(board.port.as_path())
        }) {
            problems.push(format!(
                "board `{}`: port {} is not the application UART of its DK (that is {}, interface 00)",
                board.id,
                board.port.display(),
                p.dev_path.display()
            ));
        }
    }
    problems
}
