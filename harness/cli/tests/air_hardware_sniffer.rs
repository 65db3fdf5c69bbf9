//! A case with `[sniffer]` on a hardware map: the allocation asks for a board tagged `sniffer`
//! next to the case's DKs, and the witness reads that board's serial port. Here the sniffer
//! "board" of the map is a virtual sniffer DK on a virtual air, reached through its PTY, so the
//! seam between the lab's allocator and `Witness::start_on_port` runs without hardware.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ot_hil::air::witness::{PCAP_FILE, Witness, find_sniffer_variant, spawn_virtual_sniffer};
use ot_hil::boards::hardware::{SNIFFER_REQUEST, hardware_requests};
use ot_hil::case::{LoadOptions, load_case};
use ot_hil::virtual_lab::VdkCommand;
use ot_hil_lab::hwmap::{HardwareMap, Profile};
use ot_hil_lab::lock::{Allocator, LockDir};

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sniffer_board_of_the_map_is_allocated_and_read() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = ot_hil_air::Hub::start(tmp.path()).unwrap();
    let manifest = find_sniffer_variant(&repo().join("firmware/variants")).unwrap();
    let vdk = VdkCommand::ot_hil(EXE.into());
    let dk = spawn_virtual_sniffer(&vdk, hub.socket_path(), tmp.path(), &manifest, None)
        .await
        .unwrap();

    let map_path = tmp.path().join("lab.toml");
    let map_text = format!(
        "[[board]]\nid = \"dk-a\"\nplatform = \"nrf52840dk_nrf52840\"\nprobe = \"000683759358\"\n\
         port = \"/dev/ttyACM0\"\nprofile = \"ncs\"\n\n\
         [[board]]\nid = \"dk-b\"\nplatform = \"nrf52840dk_nrf52840\"\nprobe = \"001050247387\"\n\
         port = \"/dev/ttyACM2\"\nprofile = \"ncs\"\n\n\
         [[board]]\nid = \"sniffer\"\nplatform = \"nrf52840dongle_nrf52840\"\nport = \"{}\"\n\
         tags = [\"sniffer\"]\n",
        dk.tty.display()
    );
    let map = HardwareMap::from_toml(&map_text, &map_path).unwrap();
    let allocator = Allocator::new(map, LockDir::new(tmp.path().join("locks")));

    let case = load_case(
        &repo().join("testcases/coaps-report-x509.toml"),
        &LoadOptions::default(),
    )
    .unwrap();
    let spec = case.air.clone();
    assert!(spec.sniffer);
    let requests = hardware_requests(&case, Profile::Ncs, spec.sniffer);
    assert_eq!(requests.len(), case.nodes.len() + 1);
    let allocation = allocator
        .allocate(&case.name, &requests, std::time::Duration::from_secs(1))
        .unwrap();
    let sniffer = allocation.board_for(SNIFFER_REQUEST).unwrap();
    assert_eq!(sniffer.id, "sniffer");
    for node in &case.nodes {
        assert!(allocation.board_for(node).unwrap().id.starts_with("dk-"));
    }
    // Without `[sniffer]` the sniffer stays free and no DK is taken for it.
    let without = hardware_requests(&case, Profile::Ncs, false);
    assert!(without.iter().all(|r| r.tags.is_empty()));

    let log_dir = tmp.path().join("logs");
    let port = sniffer.port.display().to_string();
    let witness = tokio::task::spawn_blocking({
        let case = case.clone();
        let log_dir = log_dir.clone();
        move || Witness::start_on_port(&case, &port, &log_dir)
    })
    .await
    .unwrap()
    .unwrap();
    let mut logs = BTreeMap::new();
    let report = witness
        .finish(&case, "ncs-v2.2.0", false, false, &[], &mut logs)
        .await;
    drop(allocation);
    dk.stop().await;
    drop(hub);

    // The sniffer was read on the case's channel; nothing was sent, so the snapshot has no
    // handshake to compare and says so (no pending snapshot is written for that).
    let air = report.lines.join("\n");
    assert!(
        air.contains(&format!("sniffer on channel {}", spec.channel)),
        "{air}"
    );
    assert!(air.contains("bad_lines=0"), "{air}");
    // A real sniffer's air does not count what it hands the sniffer: no missed-frame verdict.
    assert_eq!(report.problem, None, "{report:?}");
    let failure = report
        .failure
        .expect("a snapshot without a handshake fails");
    assert!(
        failure
            .got
            .iter()
            .any(|l| l.contains("no DTLS connection #1 on the air (0 seen)")),
        "{failure:?}"
    );
    let pcap = logs.get(PCAP_FILE).unwrap();
    assert_eq!(pcap, &log_dir.join(PCAP_FILE));
    let bytes = std::fs::read(pcap).unwrap();
    let reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
    assert_eq!(u32::from(reader.header().datalink), 283);
}
