//! Discovery and hardware maps against the recorded lab trees in fixtures/hw.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use ot_hil_lab::discover::{
    BoardKind, GenerateOptions, discover, generate_hardware_map, render_table,
};
use ot_hil_lab::hwmap::{HardwareMap, HwMapError, Profile, TwisterImport};
use ot_hil_lab::probes::parse_probe_rs_list;
use ot_hil_lab::sysfs::{SysRoot, list_serial_ports};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hw")
}

fn probes(name: &str) -> Vec<ot_hil_lab::probes::ProbeEntry> {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    parse_probe_rs_list(&text)
}

#[test]
fn two_dk_lab_pairs_each_jlink_with_its_own_port() {
    let root = SysRoot::recorded(&fixtures().join("sysfs-two-dk"));
    let ports = list_serial_ports(&root).unwrap();
    let names: Vec<&str> = ports.iter().map(|p| p.name.as_str()).collect();
    // tty0/tty1 have no device, ttyS0 is an 8250 without hardware: left out.
    assert_eq!(names, ["ttyACM0", "ttyACM1", "ttyUSB0"]);
    let ftdi = ports[2].usb.as_ref().unwrap();
    assert_eq!(
        (ftdi.vendor_id, ftdi.product_id, ftdi.interface),
        (0x0403, 0x6001, Some(0))
    );

    let boards = discover(&root, &probes("probe-rs-list-two-dk.txt")).unwrap();
    let dks: Vec<_> = boards
        .iter()
        .filter(|b| b.kind == BoardKind::NrfDk)
        .collect();
    assert_eq!(dks.len(), 2);
    for dk in &dks {
        let probe_serial = dk.probe.as_ref().unwrap().serial_number.clone().unwrap();
        let port = dk.port.as_ref().unwrap();
        assert_eq!(
            port.usb.as_ref().unwrap().serial_number.as_deref(),
            Some(probe_serial.as_str())
        );
        assert!(dk.notes.is_empty(), "{:?}", dk.notes);
    }
    assert_eq!(dks[0].port.as_ref().unwrap().name, "ttyACM0");
    assert_eq!(dks[0].serial.as_deref(), Some("000683759358"));
    assert_eq!(
        dks[0].port_path().unwrap(),
        Path::new("/dev/serial/by-id/usb-SEGGER_J-Link_000683759358-if00")
    );
    assert_eq!(dks[1].probe.as_ref().unwrap().product_id, 0x1061);
    assert!(
        boards
            .iter()
            .any(|b| b.kind == BoardKind::OtherSerial && b.vendor_id == 0x0403)
    );

    let table = render_table(&boards);
    assert!(table.starts_with("KIND"), "{table}");
    assert!(table.contains("dk-000683759358"), "{table}");
    assert!(table.contains("/dev/ttyACM1 (if00)"), "{table}");
}

#[test]
fn two_cdc_ports_application_uart_is_interface_00() {
    let root = SysRoot::recorded(&fixtures().join("sysfs-dk-two-cdc"));
    let boards = discover(&root, &probes("probe-rs-list-dk-two-cdc.txt")).unwrap();
    assert_eq!(boards.len(), 1);
    let dk = &boards[0];
    assert_eq!(dk.kind, BoardKind::NrfDk);
    let port = dk.port.as_ref().unwrap();
    assert_eq!(port.usb.as_ref().unwrap().interface, Some(0));
    assert_eq!(port.name, "ttyACM0");
    assert_eq!(dk.other_ports.len(), 1);
    assert_eq!(dk.other_ports[0].usb.as_ref().unwrap().interface, Some(2));
}

/// Builds a DK with two CDC ports whose tty numbers are the other way round from the interfaces (the
/// kernel numbers ttys in probe order, which is not guaranteed to follow interfaces): pairing must go by
/// interface number, not tty name.
#[test]
fn application_uart_is_chosen_by_interface_not_tty_number() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    let dev = sys.join("devices/usb1/1-1");
    std::fs::create_dir_all(&dev).unwrap();
    for (file, value) in [
        ("idVendor", "1366"),
        ("idProduct", "1051"),
        ("serial", "001050012345"),
    ] {
        std::fs::write(dev.join(file), format!("{value}\n")).unwrap();
    }
    std::fs::create_dir_all(sys.join("class/tty")).unwrap();
    for (iface, tty) in [("00", "ttyACM7"), ("02", "ttyACM3")] {
        let ifdir = dev.join(format!(
            "1-1:1.{}",
            iface.trim_start_matches('0').parse::<u8>().unwrap_or(0)
        ));
        std::fs::create_dir_all(ifdir.join("tty").join(tty)).unwrap();
        std::fs::write(ifdir.join("bInterfaceNumber"), format!("{iface}\n")).unwrap();
        symlink(&ifdir, ifdir.join("tty").join(tty).join("device")).unwrap();
        symlink(ifdir.join("tty").join(tty), sys.join("class/tty").join(tty)).unwrap();
    }
    let probes = parse_probe_rs_list("[0]: J-Link -- 1366:1051:001050012345 (J-Link)\n");
    let boards = discover(&SysRoot::recorded(dir.path()), &probes).unwrap();
    assert_eq!(boards.len(), 1);
    assert_eq!(boards[0].port.as_ref().unwrap().name, "ttyACM7");
    assert_eq!(boards[0].other_ports[0].name, "ttyACM3");
}

#[test]
fn sniffer_dongle_is_tagged_and_needs_no_probe() {
    let root = SysRoot::recorded(&fixtures().join("sysfs-sniffer"));
    let boards = discover(&root, &probes("probe-rs-list-sniffer.txt")).unwrap();
    let kinds: Vec<BoardKind> = boards.iter().map(|b| b.kind).collect();
    assert_eq!(kinds, [BoardKind::NrfDk, BoardKind::Sniffer]);
    let sniffer = &boards[1];
    assert_eq!((sniffer.vendor_id, sniffer.product_id), (0x1915, 0x154b));
    assert!(sniffer.probe.is_none());
    assert_eq!(sniffer.suggested_id(), "sniffer-F4CE36D0A1B2");
}

#[test]
fn unmatched_probes_and_ports_are_reported_not_dropped() {
    let root = SysRoot::recorded(&fixtures().join("sysfs-two-dk"));
    // probe-rs saw only one J-Link, and one that has no tty here.
    let probes = parse_probe_rs_list(
        "[0]: J-Link -- 1366:1015:000683759358 (J-Link)\n[1]: J-Link -- 1366:1015:000999999999 (J-Link)\n",
    );
    let boards = discover(&root, &probes).unwrap();
    let notes: Vec<String> = boards.iter().flat_map(|b| b.notes.clone()).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("no serial port with this J-Link")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("probe-rs did not list the probe")),
        "{notes:?}"
    );
}

#[test]
fn generated_map_loads_back_and_skips_unflashable_things() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lab.toml");
    let root = SysRoot::recorded(&fixtures().join("sysfs-sniffer"));
    let map = generate_hardware_map(
        &root,
        &probes("probe-rs-list-sniffer.txt"),
        &GenerateOptions::default(),
        &out,
    )
    .unwrap();
    assert_eq!(map.boards.len(), 2);
    let loaded = HardwareMap::load(&out).unwrap();
    assert_eq!(loaded, map);
    let dk = loaded.board("dk-000683759358").unwrap();
    assert_eq!(dk.profile, Some(Profile::Ncs));
    assert_eq!(
        dk.probe.as_ref().unwrap().to_string(),
        "1366:1015:000683759358"
    );
    assert!(loaded.board("sniffer-F4CE36D0A1B2").unwrap().is_sniffer());
    // The FTDI adapter in the two-DK lab is listed by discovery but not put in a map.
    let map = generate_hardware_map(
        &SysRoot::recorded(&fixtures().join("sysfs-two-dk")),
        &probes("probe-rs-list-two-dk.txt"),
        &GenerateOptions::default(),
        &out,
    )
    .unwrap();
    assert_eq!(map.boards.len(), 2);
    assert!(map.boards.iter().all(|b| b.id.starts_with("dk-")));
}

#[test]
fn shipped_maps_load() {
    let lab = HardwareMap::load(&fixtures().join("lab.toml")).unwrap();
    assert_eq!(lab.boards.len(), 3);
    assert!(lab.board("sniffer").unwrap().is_sniffer());

    let two = HardwareMap::load(&fixtures().join("twister-two-dk.yaml")).unwrap();
    assert_eq!(
        two.boards.len(),
        2,
        "the connected: false entry is left out"
    );
    assert_eq!(two.boards[0].id, "000683759358");
    assert!(two.boards[1].tags.contains("coaps-peer"));

    let text = std::fs::read_to_string(fixtures().join("twister-sniffer.yaml")).unwrap();
    let imported = TwisterImport::default()
        .import(&text, Path::new("twister-sniffer.yaml"))
        .unwrap();
    assert!(imported.map.board("F4CE36D0A1B2").unwrap().is_sniffer());
    assert!(
        imported
            .warnings
            .iter()
            .any(|w| w.contains("runner_params")),
        "{:?}",
        imported.warnings
    );
}

#[test]
fn broken_twister_map_lists_every_problem() {
    let err = HardwareMap::load(&fixtures().join("twister-broken.yaml")).unwrap_err();
    let HwMapError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    // Entry #2 repeats entry #1's id and (so) its probe; entry #3 points probe_id at that J-Link too.
    assert_eq!(problems.len(), 4, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("entry #1 (id `000683759358`): empty serial port"),
        "{text}"
    );
    assert!(
        text.contains("entry #2 (id `000683759358`): duplicate id"),
        "{text}"
    );
    assert!(
        text.contains("entry #3 (id `001050247387`): probe 683759358 is also used by entry #1"),
        "{text}"
    );
}

#[test]
fn load_checked_fails_on_absent_ports() {
    // The shipped lab map points at by-id links that do not exist on a machine without boards.
    let err = HardwareMap::load_checked(&fixtures().join("lab.toml")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("board `dk-a`: port /dev/serial/by-id/usb-SEGGER_J-Link_000683759358-if00 does not exist"), "{text}");
}

#[test]
fn verify_map_catches_swapped_ports_and_absent_boards() {
    let root = SysRoot::recorded(&fixtures().join("sysfs-two-dk"));
    let found = discover(&root, &probes("probe-rs-list-two-dk.txt")).unwrap();
    let good = generate_hardware_map(
        &root,
        &probes("probe-rs-list-two-dk.txt"),
        &GenerateOptions::default(),
        &tempfile::tempdir().unwrap().path().join("m.toml"),
    )
    .unwrap();
    assert_eq!(
        ot_hil_lab::discover::verify_map(&good, &found),
        Vec::<String>::new()
    );

    let swapped = r#"
[[board]]
id = "a"
platform = "nrf52840dk_nrf52840"
probe = "683759358"
port = "/dev/ttyACM1"
profile = "ncs"
[[board]]
id = "gone"
platform = "nrf52840dk_nrf52840"
probe = "000111111111"
port = "/dev/ttyACM9"
profile = "ncs"
"#;
    let map = HardwareMap::from_toml(swapped, Path::new("m.toml")).unwrap();
    let problems = ot_hil_lab::discover::verify_map(&map, &found);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].contains("port /dev/ttyACM1 belongs to the device with serial 001050247387"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("board `gone`: port /dev/ttyACM9 is not attached"),
        "{problems:#?}"
    );
    assert!(
        problems[2].contains("probe 000111111111 is not attached"),
        "{problems:#?}"
    );

    // The second CDC port of a two-port DK is not its console.
    let root = SysRoot::recorded(&fixtures().join("sysfs-dk-two-cdc"));
    let found = discover(&root, &probes("probe-rs-list-dk-two-cdc.txt")).unwrap();
    let text =
        "[[board]]\nid='x'\nplatform='p'\nprobe='1050012345'\nport='/dev/ttyACM1'\nprofile='ncs'\n";
    let map = HardwareMap::from_toml(text, Path::new("m.toml")).unwrap();
    let problems = ot_hil_lab::discover::verify_map(&map, &found);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].contains("not the application UART"),
        "{problems:#?}"
    );
}
