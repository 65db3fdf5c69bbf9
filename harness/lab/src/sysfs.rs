//! Serial ports and their USB identity, read from sysfs.
//!
//! The `serialport` crate can enumerate ports without libudev too, but only from the live `/sys`. Reading
//! sysfs here, under a configurable root, lets tests feed a recorded tree (`fixtures/hw/sysfs-*`) and lets
//! discovery also see the USB interface number, which is what tells a DK's two CDC ports apart.
//!
//! Layout relied on (Linux, stable for years):
//! `<sys>/class/tty/<name>/device` links to the device the tty hangs off. For a CDC ACM port that is the USB
//! *interface* directory (`1-2:1.0`, holding `bInterfaceNumber`); for a usb-serial port (`ttyUSB*`) it is one
//! level further down (`1-2:1.0/ttyUSB0`). The USB *device* directory (`1-2`, holding `idVendor`,
//! `idProduct`, `serial`, `manufacturer`, `product`) is an ancestor of the interface directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where to read the system's device description: `/sys` and `/dev`, or a recorded copy of both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot {
    /// The sysfs mount (`/sys` on a live system).
    pub sys: PathBuf,
    /// The device directory (`/dev`); only `serial/by-id` is read from it, to offer stable port names.
    pub dev: PathBuf,
}

impl SysRoot {
    /// The live system.
    pub fn live() -> Self {
        SysRoot {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }

    /// A recorded tree laid out as `<root>/sys/...` and `<root>/dev/...`.
    pub fn recorded(root: &Path) -> Self {
        SysRoot {
            sys: root.join("sys"),
            dev: root.join("dev"),
        }
    }
}

/// USB identity of the device a serial port belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbIdentity {
    pub vendor_id: u16,
    pub product_id: u16,
    /// The USB serial number string (`iSerial`), if the device has one.
    pub serial_number: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    /// `bInterfaceNumber` of the interface the tty belongs to (a DK's application UART is 0).
    pub interface: Option<u8>,
}

/// One serial port found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPortEntry {
    /// Kernel name, e.g. `ttyACM0`.
    pub name: String,
    /// Path to open: `/dev/<name>` (always under the real `/dev`, also for a recorded tree).
    pub dev_path: PathBuf,
    /// A `/dev/serial/by-id/...` link to this port, if udev made one: it survives re-enumeration,
    /// unlike `ttyACM<N>` numbers.
    pub by_id: Option<PathBuf>,
    /// `None` for ports not on USB (on-board UARTs); they are listed but never paired with a probe.
    pub usb: Option<UsbIdentity>,
}

#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Lists the serial ports that have a backing device (like the `serialport` crate, virtual ttys such as
/// `tty0`..`tty63` and unconfigured `ttyS*` without a device are left out), sorted by name.
pub fn list_serial_ports(root: &SysRoot) -> Result<Vec<SerialPortEntry>, SysfsError> {
    let class = root.sys.join("class/tty");
    let entries = match fs::read_dir(&class) {
        Ok(entries) => entries,
        // A system without any tty class (a minimal container) simply has no ports.
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SysfsError::Read {
                path: class,
                source,
            });
        }
    };
    let by_id = by_id_links(&root.dev);
    let mut ports = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| SysfsError::Read {
            path: class.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let device_link = entry.path().join("device");
        // Resolving inside the tree keeps a recorded sysfs (relative links) working wherever it lives.
        let Ok(device) = fs::canonicalize(&device_link) else {
            continue;
        };
        let usb = usb_identity(&device, &root.sys);
        // An 8250 `ttyS*` without hardware still has a device link (the serial8250 platform device);
        // Linux reports those with type 0 (PORT_UNKNOWN). Skip them as the serialport crate does.
        if usb.is_none()
            && name.starts_with("ttyS")
            && read_trimmed(&entry.path().join("type")).as_deref() == Some("0")
        {
            continue;
        }
        let by_id = by_id
            .iter()
            .find(|(_, target)| target == &name)
            .map(|(link, _)| link.clone());
        ports.push(SerialPortEntry {
            dev_path: PathBuf::from("/dev").join(&name),
            by_id,
            name,
            usb,
        });
    }
    ports.sort_by_key(|p| natural_key(&p.name));
    Ok(ports)
}

/// Sort key that puts `ttyACM2` before `ttyACM10`.
fn natural_key(name: &str) -> (String, u64) {
    let digits_at = name
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit())
        .last()
        .map(|(i, _)| i)
        .unwrap_or(name.len());
    let (stem, digits) = name.split_at(digits_at);
    (stem.to_string(), digits.parse().unwrap_or(0))
}

/// Walks up from the tty's device to find the USB interface (`bInterfaceNumber`) and the USB device
/// (`idVendor`/`idProduct`), stopping at the sysfs root.
fn usb_identity(device: &Path, sys: &Path) -> Option<UsbIdentity> {
    let sys = fs::canonicalize(sys).unwrap_or_else(|_| sys.to_path_buf());
    let mut interface = None;
    let mut dir = Some(device);
    while let Some(d) = dir {
        if !d.starts_with(&sys) || d == sys {
            break;
        }
        if interface.is_none() {
            interface = read_trimmed(&d.join("bInterfaceNumber"))
                .and_then(|s| u8::from_str_radix(&s, 16).ok());
        }
        let vid = read_trimmed(&d.join("idVendor")).and_then(|s| u16::from_str_radix(&s, 16).ok());
        let pid = read_trimmed(&d.join("idProduct")).and_then(|s| u16::from_str_radix(&s, 16).ok());
        if let (Some(vendor_id), Some(product_id)) = (vid, pid) {
            return Some(UsbIdentity {
                vendor_id,
                product_id,
                serial_number: read_trimmed(&d.join("serial")).filter(|s| !s.is_empty()),
                manufacturer: read_trimmed(&d.join("manufacturer")),
                product: read_trimmed(&d.join("product")),
                interface,
            });
        }
        dir = d.parent();
    }
    None
}

/// `(link path as udev names it under /dev, tty name it points to)` for every `serial/by-id` entry.
fn by_id_links(dev: &Path) -> Vec<(PathBuf, String)> {
    let dir = dev.join("serial/by-id");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut links = Vec::new();
    for entry in entries.flatten() {
        let Ok(target) = fs::read_link(entry.path()) else {
            continue;
        };
        let Some(tty) = target.file_name() else {
            continue;
        };
        links.push((
            PathBuf::from("/dev/serial/by-id").join(entry.file_name()),
            tty.to_string_lossy().into_owned(),
        ));
    }
    links.sort();
    links
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_of_tty_names() {
        let mut names = vec!["ttyACM10", "ttyACM2", "ttyACM0", "ttyUSB0", "ttyS0"];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(
            names,
            ["ttyACM0", "ttyACM2", "ttyACM10", "ttyS0", "ttyUSB0"]
        );
    }

    #[test]
    fn missing_tty_class_means_no_ports() {
        let dir = tempfile::tempdir().unwrap();
        let ports = list_serial_ports(&SysRoot::recorded(dir.path())).unwrap();
        assert!(ports.is_empty());
    }
}
