//! Image loading, the no-probe preflight against probe-rs' nRF52840 description, the read-back regions,
//! and the flasher's behaviour up to the point where it needs a probe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use object::elf;
use object::write::elf::{FileHeader, ProgramHeader, Writer};
use ot_hil_lab::flash::image::{
    CHECK_CHUNK, ChipMemory, ImageError, ImageFormat, NRF52840, check_regions, load_image,
    preflight, sha256_hex,
};
use ot_hil_lab::flash::state::{BoardState, StateDir};
use ot_hil_lab::flash::{FirmwareImage, FlashError, Flasher, ProbeRsFlasher};
use ot_hil_lab::hwmap::{Board, ProbeSelector};

/// Deterministic filler so every byte position differs.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Intel HEX with 32-byte data records and extended linear address records, via the ihex crate.
fn write_hex(dir: &Path, name: &str, segments: &[(u64, Vec<u8>)]) -> PathBuf {
    let mut records = Vec::new();
    let mut upper = None;
    for (address, data) in segments {
        for (i, chunk) in data.chunks(32).enumerate() {
            let at = address + (i * 32) as u64;
            // A record must not cross a 64 KiB boundary; 32-byte chunks at 32-aligned bases never do.
            let hi = (at >> 16) as u16;
            if upper != Some(hi) {
                records.push(ihex::Record::ExtendedLinearAddress(hi));
                upper = Some(hi);
            }
            records.push(ihex::Record::Data {
                offset: (at & 0xffff) as u16,
                value: chunk.to_vec(),
            });
        }
    }
    records.push(ihex::Record::EndOfFile);
    let text = ihex::create_object_file_representation(&records).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A minimal ARM ELF32 executable: one PT_LOAD per `(paddr, vaddr, data)`, no sections needed.
fn write_elf(dir: &Path, name: &str, segments: &[(u64, u64, Vec<u8>)]) -> PathBuf {
    let mut buf = Vec::new();
    let mut w = Writer::new(object::Endianness::Little, false, &mut buf);
    w.reserve_file_header();
    w.reserve_program_headers(segments.len() as u32);
    let offsets: Vec<usize> = segments
        .iter()
        .map(|(_, _, d)| w.reserve(d.len(), 4))
        .collect();
    w.write_file_header(&FileHeader {
        os_abi: elf::ELFOSABI_NONE,
        abi_version: 0,
        e_type: elf::ET_EXEC,
        e_machine: elf::EM_ARM,
        e_entry: 0x101,
        e_flags: 0x0500_0200,
    })
    .unwrap();
    w.write_align_program_headers();
    for ((paddr, vaddr, data), offset) in segments.iter().zip(&offsets) {
        w.write_program_header(&ProgramHeader {
            p_type: elf::PT_LOAD,
            p_flags: elf::PF_R | elf::PF_X,
            p_offset: *offset as u64,
            p_vaddr: *vaddr,
            p_paddr: *paddr,
            p_filesz: data.len() as u64,
            p_memsz: data.len() as u64,
            p_align: 4,
        });
    }
    for (_, _, data) in segments {
        w.write_align(4);
        w.write(data);
    }
    let path = dir.join(name);
    std::fs::write(&path, buf).unwrap();
    path
}

fn nrf52840() -> ChipMemory {
    ChipMemory::for_chip(NRF52840).unwrap()
}

#[test]
fn builtin_nrf52840_description_has_flash_and_uicr() {
    let memory = nrf52840();
    let (_, flash) = memory.main_flash().unwrap();
    assert_eq!(flash.clone(), 0..0x10_0000);
    assert!(
        memory.region_of(0x1000_1208).is_some(),
        "UICR is NVM: {:?}",
        memory.nvm
    );
    assert!(memory.region_of(0x2000_0000).is_none());
}

#[test]
fn hex_that_fits_passes_preflight() {
    let dir = tempfile::tempdir().unwrap();
    let code = pattern(64 * 1024 + 100, 1);
    let path = write_hex(
        dir.path(),
        "ok.hex",
        &[
            (0, code.clone()),
            (0x1000_1200, vec![0xfe, 0xff, 0xff, 0xff]),
        ],
    );
    let image = load_image(&path).unwrap();
    assert_eq!(image.format, ImageFormat::Hex);
    assert_eq!(image.segments.len(), 2);
    assert_eq!(
        image.segments[0].data, code,
        "records across the 64 KiB boundary are joined"
    );
    let summary = preflight(&image, &nrf52840()).unwrap();
    assert_eq!(summary.flash_end, code.len() as u64);
    assert_eq!(summary.flash_size, 0x10_0000);
    assert_eq!(summary.bytes, code.len() as u64 + 4);
}

#[test]
fn hex_past_the_end_of_flash_is_rejected_with_the_overrun() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_hex(dir.path(), "big.hex", &[(0xF_F000, pattern(0x2000, 2))]);
    let err = preflight(&load_image(&path).unwrap(), &nrf52840()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImageError::DoesNotFit { .. }), "{text}");
    assert!(text.contains("runs 4096 bytes past the end"), "{text}");
}

#[test]
fn data_for_ram_is_rejected_even_though_probe_rs_would_stage_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_hex(dir.path(), "ram.hex", &[(0x2000_0000, pattern(256, 3))]);
    let image = load_image(&path).unwrap();
    let text = preflight(&image, &nrf52840()).unwrap_err().to_string();
    assert!(text.contains("not flash"), "{text}");
    // Why the region check exists: probe-rs' own loader accepts data for RAM.
    let target = probe_rs::config::Registry::from_builtin_families()
        .get_target_by_name(NRF52840)
        .unwrap();
    let mut loader = target.flash_loader();
    assert!(
        loader
            .add_data(0x2000_0000, &image.segments[0].data)
            .is_ok()
    );
}

#[test]
fn elf_segments_load_at_their_physical_address() {
    let dir = tempfile::tempdir().unwrap();
    let text = pattern(0x6000, 4);
    let data = pattern(0x200, 5);
    // .data runs in RAM (vaddr) but its initial copy lives in flash right after .text (paddr).
    let path = write_elf(
        dir.path(),
        "zephyr.elf",
        &[(0, 0, text.clone()), (0x6000, 0x2000_0000, data.clone())],
    );
    let image = load_image(&path).unwrap();
    assert_eq!(image.format, ImageFormat::Elf);
    assert_eq!(image.segments.len(), 1, "adjacent segments merge");
    assert_eq!(image.segments[0].address, 0);
    assert_eq!(image.segments[0].data.len(), text.len() + data.len());
    preflight(&image, &nrf52840()).unwrap();

    // Linked for RAM only (paddr = vaddr): refused before any probe is touched.
    let path = write_elf(dir.path(), "ram.elf", &[(0x2000_0000, 0x2000_0000, data)]);
    assert!(preflight(&load_image(&path).unwrap(), &nrf52840()).is_err());
}

#[test]
fn malformed_images_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 5] = [
        ("empty.hex", b":00000001FF\n"),
        ("badsum.hex", b":0400000001020304F0\n:00000001FF\n"),
        ("text.bin", b"hello"),
        ("trunc.elf", b"\x7fELF\x01\x01\x01"),
        (
            "elf64.elf",
            b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = load_image(&path).unwrap_err();
        match name {
            "empty.hex" => assert!(matches!(err, ImageError::Empty { .. }), "{err}"),
            "badsum.hex" => assert!(matches!(err, ImageError::Hex { .. }), "{err}"),
            "text.bin" => assert!(matches!(err, ImageError::UnknownFormat { .. }), "{err}"),
            "elf64.elf" => assert!(err.to_string().contains("64-bit"), "{err}"),
            _ => assert!(matches!(err, ImageError::Elf { .. }), "{err}"),
        }
    }
}

#[test]
fn overlapping_hex_records_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_hex(
        dir.path(),
        "overlap.hex",
        &[(0x1000, pattern(64, 6)), (0x1020, pattern(64, 7))],
    );
    assert!(matches!(load_image(&path), Err(ImageError::Overlap { .. })));
}

#[test]
fn check_regions_cover_vector_table_and_image_end() {
    let dir = tempfile::tempdir().unwrap();
    let code = pattern(300 * 1024 + 7, 8);
    let path = write_hex(
        dir.path(),
        "a.hex",
        &[(0, code.clone()), (0x1000_1208, vec![0; 4])],
    );
    let regions = check_regions(&load_image(&path).unwrap(), &nrf52840());
    assert_eq!(regions.len(), 2);
    assert_eq!((regions[0].address, regions[0].length), (0, CHECK_CHUNK));
    assert_eq!(regions[0].sha256, sha256_hex(&code[..CHECK_CHUNK as usize]));
    let end = code.len() as u64;
    assert_eq!(
        (regions[1].address, regions[1].length),
        (end - CHECK_CHUNK, CHECK_CHUNK)
    );
    assert_eq!(
        regions[1].sha256,
        sha256_hex(&code[code.len() - CHECK_CHUNK as usize..])
    );

    // A different build of the same length differs in the tail: the check sees it.
    let mut other = code.clone();
    if let Some(b) = other.last_mut() {
        *b ^= 1;
    }
    let path = write_hex(dir.path(), "b.hex", &[(0, other)]);
    let other_regions = check_regions(&load_image(&path).unwrap(), &nrf52840());
    assert_eq!(other_regions[0], regions[0]);
    assert_ne!(other_regions[1], regions[1]);

    // A small image is covered once, without overlap.
    let path = write_hex(dir.path(), "small.hex", &[(0, pattern(6000, 9))]);
    let small = check_regions(&load_image(&path).unwrap(), &nrf52840());
    assert_eq!(small.iter().map(|r| r.length).sum::<u64>(), 6000);
    assert_eq!(small[1].address, CHECK_CHUNK);
}

fn board(serial: &str) -> Board {
    Board {
        id: "dk-test".into(),
        platforms: vec!["nrf52840dk_nrf52840".into()],
        probe: Some(ProbeSelector::parse(serial).unwrap()),
        port: PathBuf::from("/dev/null"),
        baud: 115_200,
        profile: None,
        tags: Default::default(),
        notes: None,
    }
}

#[test]
fn flasher_rejects_a_bad_image_before_touching_the_probe() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_hex(dir.path(), "big.hex", &[(0xF_F000, pattern(0x2000, 2))]);
    let image = FirmwareImage::from_file("ncs-v2.2.0", &path).unwrap();
    let mut flasher = ProbeRsFlasher::new(
        &board("000000000001"),
        StateDir::new(dir.path().join("state")),
    )
    .unwrap();
    let err = flasher.flash(&image).unwrap_err();
    assert!(matches!(err, FlashError::ImageRejected { .. }), "{err}");
    assert!(err.to_string().contains("dk-test"), "{err}");
}

#[test]
fn flasher_without_its_probe_says_which_probe_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_hex(dir.path(), "ok.hex", &[(0, pattern(4096, 1))]);
    let image = FirmwareImage::from_file("ncs-v2.2.0", &path).unwrap();
    assert_eq!(image.sha256, sha256_hex(&std::fs::read(&path).unwrap()));
    let states = StateDir::new(dir.path().join("state"));
    // A serial no real J-Link has: on a machine with probes this still finds none.
    let mut flasher =
        ProbeRsFlasher::new(&board("1366:1015:000000000001"), states.clone()).unwrap();
    flasher.retry_pause = Duration::from_millis(1);
    let err = flasher.flash(&image).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, FlashError::Probe { .. }), "{text}");
    assert!(
        text.contains("probe 1366:1015:000000000001 is not attached"),
        "{text}"
    );
    assert!(text.contains("after 3 attempts"), "{text}");

    // No recorded image: nothing to confirm, no probe needed.
    assert_eq!(flasher.current_image().unwrap(), None);
    // A recorded image must be confirmed on the device, which needs the probe.
    record_image(&states, &image.sha256, &image.variant);
    assert!(matches!(
        flasher.current_image(),
        Err(FlashError::Probe { .. })
    ));
    assert!(matches!(flasher.reset(), Err(FlashError::Probe { .. })));
}

#[test]
fn flasher_needs_a_probe_in_the_map() {
    let mut b = board("1");
    b.probe = None;
    let err = ProbeRsFlasher::new(&b, StateDir::new(PathBuf::from("/nonexistent"))).unwrap_err();
    assert!(err.to_string().contains("no probe"), "{err}");
}

/// What a run records after flashing board `dk-test` (no read-back regions).
fn record_image(states: &StateDir, sha256: &str, variant: &str) {
    states
        .store(
            "dk-test",
            &BoardState {
                sha256: sha256.to_string(),
                variant: variant.to_string(),
                flashed_at: 0,
                checks: vec![],
            },
        )
        .unwrap();
}

/// The repository's fixtures/hw folder.
fn hw_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hw")
}

#[test]
fn a_settings_erase_is_planned_for_a_board_whose_image_is_current() {
    use ot_hil_lab::flash::settings_area::{AreaSource, NRF52840DK_DEFAULT, SettingsArea};
    let build = hw_fixtures().join("build-ncs");
    let image = FirmwareImage::from_file("ncs-v2.2.0", &build.join("zephyr/zephyr.hex")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let states = StateDir::new(dir.path().join("state"));
    // The state file records this very image on the board (a run flashed it before).
    record_image(&states, &image.sha256, &image.variant);
    let area = SettingsArea::for_build(Some(&build)).unwrap();
    assert_eq!(
        (area.address, area.size),
        (0xf8000, 0x8000),
        "settings_storage of partitions.yml"
    );
    assert_eq!(
        area.source,
        AreaSource::PartitionManager(build.join("partitions.yml"))
    );
    let flasher = ProbeRsFlasher::new(&board("000000000001"), states.clone())
        .unwrap()
        .with_settings(Some(area.clone()));
    let plan = flasher.plan(&image);
    assert_eq!(plan.skip_if_current.as_deref(), Some(image.sha256.as_str()));
    // Programming is skipped (after the read-back), so the erase happens on its own ...
    assert_eq!(plan.settings_erase(false), Some(&area));
    // ... and after a full programming the chip erase has already cleared it.
    assert_eq!(plan.settings_erase(true), None);

    // `--keep-state`: nothing erased.
    let keep = flasher.clone().with_settings(None).plan(&image);
    assert_eq!(keep.settings_erase(false), None);

    // Another image recorded: program it (chip erase), no separate settings erase needed.
    record_image(&states, &"00".repeat(32), "other");
    let stale = flasher.plan(&image);
    assert_eq!(stale.skip_if_current, None);
    assert_eq!(stale.settings_erase(true), None);

    // The devicetree of a build without Partition Manager, and the documented fallback.
    let dts_build = hw_fixtures().join("build-dts");
    let dts = SettingsArea::for_build(Some(&dts_build)).unwrap();
    assert_eq!((dts.address, dts.size), (0xfc000, 0x4000));
    assert_eq!(
        dts.source,
        AreaSource::Devicetree(dts_build.join("zephyr/zephyr.dts"))
    );
    assert_eq!(
        SettingsArea::for_build(Some(dir.path())).unwrap(),
        NRF52840DK_DEFAULT
    );
    assert_eq!(SettingsArea::for_build(None).unwrap(), NRF52840DK_DEFAULT);
}

#[test]
fn a_broken_partition_layout_is_an_error_not_a_fallback() {
    use ot_hil_lab::flash::settings_area::SettingsArea;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("partitions.yml"),
        "settings_storage:\n  address: 0xf8000\n",
    )
    .unwrap();
    let err = SettingsArea::for_build(Some(dir.path())).unwrap_err();
    assert!(err.to_string().contains("settings_storage"), "{err}");
    std::fs::write(
        dir.path().join("partitions.yml"),
        "settings_storage:\n  address: 0xf8000\n  size: 0\n",
    )
    .unwrap();
    let err = SettingsArea::for_build(Some(dir.path())).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    std::fs::remove_file(dir.path().join("partitions.yml")).unwrap();
    std::fs::create_dir(dir.path().join("zephyr")).unwrap();
    std::fs::write(
        dir.path().join("zephyr/zephyr.dts"),
        "storage_partition: partition@f8000 { reg = < 0xf8000 >; };",
    )
    .unwrap();
    let err = SettingsArea::for_build(Some(dir.path())).unwrap_err();
    assert!(err.to_string().contains("reg"), "{err}");
}

#[test]
fn an_image_writing_into_the_settings_partition_is_rejected_before_the_probe() {
    use ot_hil_lab::flash::settings_area::NRF52840DK_DEFAULT;
    let dir = tempfile::tempdir().unwrap();
    let path = write_hex(
        dir.path(),
        "settings.hex",
        &[(0, pattern(256, 1)), (0xF_9000, pattern(64, 2))],
    );
    let image = FirmwareImage::from_file("ncs-v2.2.0", &path).unwrap();
    let states = StateDir::new(dir.path().join("state"));
    let mut flasher = ProbeRsFlasher::new(&board("000000000001"), states.clone()).unwrap();
    let err = flasher.flash(&image).unwrap_err();
    assert!(matches!(err, FlashError::ImageRejected { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("inside the settings partition 0x000f8000"),
        "{err}"
    );
    // Kept settings are not erased: the image passes then.
    let keep = ProbeRsFlasher::new(&board("000000000001"), states)
        .unwrap()
        .with_settings(None);
    assert!(keep.preflight(&image).is_ok());
    // Nor does an image that stays below the partition.
    let below = write_hex(dir.path(), "below.hex", &[(0, pattern(256, 1))]);
    let below = FirmwareImage::from_file("ncs-v2.2.0", &below).unwrap();
    let default = ProbeRsFlasher::new(&board("000000000001"), StateDir::new(dir.path().join("s")))
        .unwrap()
        .with_settings(Some(NRF52840DK_DEFAULT));
    assert!(default.preflight(&below).is_ok());
}
