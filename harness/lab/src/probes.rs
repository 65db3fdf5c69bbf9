//! Debug probes: listed live through probe-rs, or parsed from recorded `probe-rs list` output.

/// One debug probe, as probe-rs identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEntry {
    /// probe-rs' name for it, e.g. `J-Link`.
    pub identifier: String,
    pub vendor_id: u16,
    pub product_id: u16,
    /// USB serial number string; for a J-Link OB the 12-digit zero-padded J-Link serial.
    pub serial_number: Option<String>,
}

impl ProbeEntry {
    /// The probe-rs selector string `VID:PID[:SERIAL]` (what `probe-rs --probe` takes).
    pub fn selector(&self) -> String {
        match &self.serial_number {
            Some(serial) => format!("{:04x}:{:04x}:{serial}", self.vendor_id, self.product_id),
            None => format!("{:04x}:{:04x}", self.vendor_id, self.product_id),
        }
    }
}

/// Lists the probes attached to this machine (empty when there are none or USB is not accessible).
pub fn list_probes() -> Vec<ProbeEntry> {
    probe_rs::probe::list::Lister::new()
        .list_all()
        .into_iter()
        .map(|info| ProbeEntry {
            identifier: info.identifier,
            vendor_id: info.vendor_id,
            product_id: info.product_id,
            serial_number: info.serial_number.filter(|s| !s.is_empty()),
        })
        .collect()
}

/// Parses the output of `probe-rs list`, in both shapes probe-rs has printed:
/// `[0]: J-Link -- 1366:1061:001050247387 (J-Link)` (current; an interface shows as `1366:1061-0:...`) and
/// `[0]: J-Link (J-Link) (VID: 1366, PID: 0101, Serial: 000099999999, JLink)` (older releases).
/// Lines that are not probe lines (the header, "No debug probes were found.") are skipped.
pub fn parse_probe_rs_list(text: &str) -> Vec<ProbeEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<ProbeEntry> {
    let line = line.trim();
    let rest = line.strip_prefix('[')?;
    let (index, rest) = rest.split_once("]:")?;
    index.parse::<usize>().ok()?;
    let rest = rest.trim();
    if let Some((identifier, tail)) = rest.split_once(" -- ") {
        // `VID:PID[-IF][:SERIAL] (TYPE)`; a serial may itself hold colons (ESP JTAG), so split only twice.
        let selector = tail.rsplit_once(" (").map_or(tail, |(s, _)| s).trim();
        let mut parts = selector.splitn(3, ':');
        let vid = u16::from_str_radix(parts.next()?, 16).ok()?;
        let pid_field = parts.next()?;
        let pid = u16::from_str_radix(pid_field.split('-').next()?, 16).ok()?;
        let serial = parts.next().map(str::to_string).filter(|s| !s.is_empty());
        return Some(ProbeEntry {
            identifier: identifier.trim().to_string(),
            vendor_id: vid,
            product_id: pid,
            serial_number: serial,
        });
    }
    // Older shape: `NAME (TYPE) (VID: 1366, PID: 0101, Serial: 000099999999, JLink)`.
    let vid_at = rest.find("(VID:")?;
    let identifier = rest.get(..vid_at)?.trim();
    let identifier = identifier
        .rsplit_once(" (")
        .map_or(identifier, |(name, _)| name);
    let fields = rest.get(vid_at + 1..)?.trim_end_matches(')');
    let mut vid = None;
    let mut pid = None;
    let mut serial = None;
    for field in fields.split(", ") {
        if let Some(v) = field.strip_prefix("VID: ") {
            vid = u16::from_str_radix(v.trim(), 16).ok();
        } else if let Some(v) = field.strip_prefix("PID: ") {
            pid = u16::from_str_radix(v.trim(), 16).ok();
        } else if let Some(v) = field.strip_prefix("Serial: ") {
            serial = Some(v.trim().to_string()).filter(|s| !s.is_empty());
        }
    }
    Some(ProbeEntry {
        identifier: identifier.trim().to_string(),
        vendor_id: vid?,
        product_id: pid?,
        serial_number: serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_current_shape() {
        let text = "The following debug probes were found:\n[0]: J-Link -- 1366:1061:001050247387 (J-Link)\n[1]: J-Link -- 1366:1015:000683759358 (J-Link)\n";
        let probes = parse_probe_rs_list(text);
        assert_eq!(probes.len(), 2);
        assert_eq!(probes[0].identifier, "J-Link");
        assert_eq!(probes[0].vendor_id, 0x1366);
        assert_eq!(probes[0].product_id, 0x1061);
        assert_eq!(probes[0].serial_number.as_deref(), Some("001050247387"));
        assert_eq!(probes[1].selector(), "1366:1015:000683759358");
    }

    #[test]
    fn parses_interface_colon_serials_and_missing_serial() {
        let text = "[0]: CMSIS-DAP -- 2e8a:000c-0:E661416677889900 (CMSIS-DAP)\n[1]: ESP JTAG -- 303a:1001:54:32:04:07:15:10 (EspJtag)\n[2]: STLink V2 -- 0483:3748: (ST-LINK)\n";
        let probes = parse_probe_rs_list(text);
        assert_eq!(probes.len(), 3);
        assert_eq!(probes[0].product_id, 0x000c);
        assert_eq!(probes[0].serial_number.as_deref(), Some("E661416677889900"));
        assert_eq!(
            probes[1].serial_number.as_deref(),
            Some("54:32:04:07:15:10")
        );
        assert_eq!(probes[2].serial_number, None);
        assert_eq!(probes[2].selector(), "0483:3748");
    }

    #[test]
    fn parses_older_shape() {
        let text = "The following debug probes were found:\n[0]: J-Link (J-Link) (VID: 1366, PID: 0101, Serial: 000099999999, JLink)\n";
        let probes = parse_probe_rs_list(text);
        assert_eq!(
            probes,
            vec![ProbeEntry {
                identifier: "J-Link".into(),
                vendor_id: 0x1366,
                product_id: 0x0101,
                serial_number: Some("000099999999".into()),
            }]
        );
    }

    #[test]
    fn no_probes_and_garbage_give_nothing() {
        assert!(parse_probe_rs_list("No debug probes were found.\n").is_empty());
        assert!(parse_probe_rs_list("[x]: nonsense\n[0]: J-Link -- zz:yy:1 (J-Link)\n").is_empty());
    }

    #[test]
    fn live_listing_does_not_fail_without_probes() {
        // On a machine without probes (CI) this is empty; with probes it lists them. Either way no panic,
        // and every entry must have a selector that parses back.
        for probe in list_probes() {
            let line = format!("[0]: {} -- {} (x)", probe.identifier, probe.selector());
            assert_eq!(parse_probe_rs_list(&line), vec![probe]);
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a probe-rs version prints, parsing never panics, and every probe found re-parses
        /// from its own selector.
        #[test]
        fn any_text_parses_without_panic(text in "(\\[[0-9]{1,2}\\]: [ -~]{0,40}\n|[ -~]{0,40}\n){0,6}") {
            for probe in parse_probe_rs_list(&text) {
                let line = format!("[0]: {} -- {} (x)", probe.identifier.replace(" -- ", " "), probe.selector());
                let again = parse_probe_rs_list(&line);
                prop_assert_eq!(again.len(), 1);
                prop_assert_eq!(again[0].vendor_id, probe.vendor_id);
                prop_assert_eq!(again[0].product_id, probe.product_id);
            }
        }
    }
}
