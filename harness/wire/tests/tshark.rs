//! Cross-check of the encoders against Wireshark: frames built with this crate are written to a
//! pcap and dissected by `tshark` with the network key. Needs Debian's `tshark`, so it is ignored by
//! default: `cargo test -p ot-hil-wire --test tshark -- --ignored`.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::process::Command;

use ot_hil_wire::lowpan::{self, Context};
use ot_hil_wire::mac::{Address, ExtAddress, FrameRepr, SecurityHeader};
use ot_hil_wire::pcap::{LinkType, PcapWriter};
use ot_hil_wire::sniffer::SnifferFrame;
use ot_hil_wire::{ip, security};

const NETWORK_KEY: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];
const ML_PREFIX: [u8; 8] = [0xfd, 0x00, 0x0d, 0xb8, 0, 0, 0, 0];
const PAN: u16 = 0xface;

fn contexts() -> [Context; 1] {
    [Context {
        id: 0,
        prefix: ML_PREFIX,
    }]
}

/// MLE Advertisement from rloc16 0x0000 (OpenThread test_crypto.py vector), sent unsecured at the
/// MAC layer from the extended address: it teaches Wireshark the short -> extended mapping.
fn mle_advertisement() -> Vec<u8> {
    let src: Ipv6Addr = "fe80::235:cc94:d77a:07e8".parse().unwrap();
    let dst: Ipv6Addr = "ff02::2".parse().unwrap();
    let mle = hex::decode(
        "00151500040000000000019a5a9a5bba259c5e58a27e7574ef79bc4fa3f9aea834f6f237219360e1b5a253",
    )
    .unwrap();
    let ipv6 = ip::udp_packet(
        SocketAddrV6::new(src, 19788, 0, 0),
        SocketAddrV6::new(dst, 19788, 0, 0),
        255,
        &mle,
    );
    let mac_src = Address::Extended(ip::ext_from_iid(&ip::iid(&src)));
    let mac_dst = Address::Short(0xffff);
    let compressed = lowpan::compress(&ipv6, &mac_src, &mac_dst, &contexts()).unwrap();
    FrameRepr::data(1, PAN, mac_dst, mac_src, None).emit(&compressed)
}

/// Secured frames (one per fragment) carrying a UDP datagram from rloc16 0x0000 to 0x0400.
fn secured_udp(payload_len: usize, seq: u8, frame_counter: u32) -> Vec<Vec<u8>> {
    let ext: ExtAddress = "0035cc94d77a07e8".parse().unwrap();
    let keys = security::derive_keys(&NETWORK_KEY, 0);
    let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
    let ipv6 = ip::udp_packet(
        SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0000), 0xf0bf, 0, 0),
        SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0400), 1234, 0, 0),
        64,
        &payload,
    );
    let (mac_src, mac_dst) = (Address::Short(0x0000), Address::Short(0x0400));
    let compressed = lowpan::compress(&ipv6, &mac_src, &mac_dst, &contexts()).unwrap();
    lowpan::fragment(&compressed, ipv6.len() as u16, 0x4242, 100)
        .iter()
        .enumerate()
        .map(|(i, fragment)| {
            let repr = FrameRepr::data(
                seq.wrapping_add(i as u8),
                PAN,
                mac_dst,
                mac_src,
                Some(SecurityHeader::thread_mac(
                    frame_counter + i as u32,
                    security::key_index(0),
                )),
            );
            security::secure(&repr, fragment, &keys.mac_key, &ext).unwrap()
        })
        .collect()
}

/// A secured frame with a UDP datagram between arbitrary addresses (MAC source extended).
fn secured_extended(src: Ipv6Addr, dst: Ipv6Addr, mac_dst: Address, seq: u8) -> Vec<u8> {
    let ext: ExtAddress = "0035cc94d77a07e8".parse().unwrap();
    let keys = security::derive_keys(&NETWORK_KEY, 0);
    let ipv6 = ip::udp_packet(
        SocketAddrV6::new(src, 49155, 0, 0),
        SocketAddrV6::new(dst, 0xf0b3, 0, 0),
        255,
        b"hello",
    );
    let mac_src = Address::Extended(ext);
    let compressed = lowpan::compress(&ipv6, &mac_src, &mac_dst, &contexts()).unwrap();
    let repr = FrameRepr::data(
        seq,
        PAN,
        mac_dst,
        mac_src,
        Some(SecurityHeader::thread_mac(
            500 + u32::from(seq),
            security::key_index(0),
        )),
    );
    security::secure(&repr, &compressed, &keys.mac_key, &ext).unwrap()
}

fn tshark(pcap: &std::path::Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "uat:ieee802154_keys:\"00112233445566778899aabbccddeeff\",\"0\",\"Thread hash\"",
        ])
        .args(["-o", "6lowpan.context0:fd00:db8::/64"])
        .args(["-o", "udp.check_checksum:TRUE"])
        .args(["-T", "fields", "-E", "separator=|"]);
    for field in fields {
        cmd.args(["-e", field]);
    }
    let out = cmd.output().expect("tshark runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_capture(link: LinkType, name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("ot-hil-wire-{}-{name}.pcap", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = PcapWriter::new(file, link).unwrap();
    let mut frames = vec![mle_advertisement()];
    frames.extend(secured_udp(20, 10, 1));
    frames.extend(secured_udp(300, 20, 100));
    let ll_src: Ipv6Addr = "fe80::235:cc94:d77a:07e8".parse().unwrap();
    let ll_dst: Ipv6Addr = "fe80::1122:3344:5566:7788".parse().unwrap();
    let ext_dst = Address::Extended("1322334455667788".parse().unwrap());
    frames.push(secured_extended(ll_src, ll_dst, ext_dst, 40));
    for (i, group) in ["ff03::1", "ff03::fc", "ff02::2", "ff05::1:3"]
        .iter()
        .enumerate()
    {
        let rloc = ip::rloc(&ML_PREFIX, 0x0000);
        let group: Ipv6Addr = group.parse().unwrap();
        frames.push(secured_extended(
            rloc,
            group,
            Address::Short(0xffff),
            41 + i as u8,
        ));
    }
    for (i, psdu) in frames.into_iter().enumerate() {
        let frame = SnifferFrame {
            psdu,
            rssi_dbm: -40,
            lqi: 200,
            timestamp_us: 1_000 * i as u64,
        };
        writer.write_frame(&frame, 15).unwrap();
    }
    drop(writer);
    path
}

#[test]
#[ignore = "needs tshark"]
fn wireshark_decodes_our_frames() {
    for (link, name) in [(LinkType::NoFcs, "nofcs"), (LinkType::Tap, "tap")] {
        let pcap = write_capture(link, name);
        let lines = tshark(
            &pcap,
            &[
                "wpan.src16",
                "ipv6.src",
                "ipv6.dst",
                "udp.srcport",
                "udp.dstport",
                "udp.length",
                "udp.checksum.status",
                "_ws.expert.message",
            ],
        );
        std::fs::remove_file(&pcap).ok();
        for line in &lines {
            println!("{name}: {line}");
        }
        // MLE advertisement.
        assert!(
            lines[0].contains("fe80::235:cc94:d77a:7e8|ff02::2|19788|19788"),
            "{}",
            lines[0]
        );
        // The single-frame datagram: decrypted with the learned extended address.
        assert_eq!(
            lines[1].split('|').take(7).collect::<Vec<_>>(),
            [
                "0x0000",
                "fd00:db8::ff:fe00:0",
                "fd00:db8::ff:fe00:400",
                "61631",
                "1234",
                "28",
                "1"
            ]
        );
        // The fragmented datagram: the last fragment completes it (checksum status 1 = good).
        assert!(lines[5].contains("|61631|1234|308|1|"), "{}", lines[5]);
        assert!(
            lines[6]
                .contains("|fe80::235:cc94:d77a:7e8|fe80::1122:3344:5566:7788|49155|61619|13|1|"),
            "{}",
            lines[6]
        );
        for (line, group) in lines[7..]
            .iter()
            .zip(["ff03::1", "ff03::fc", "ff02::2", "ff05::1:3"])
        {
            assert!(
                line.contains(&format!("|fd00:db8::ff:fe00:0|{group}|49155|61619|13|1|")),
                "{line}"
            );
        }
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("Malformed") || l.contains("can't decrypt"))
        );
    }
}

/// IPv6-in-IPv6 with an MPL hop-by-hop option (how OpenThread sends realm-local multicast from an
/// ML-EID), decoded by Wireshark and by `lowpan::decompress`.
#[test]
#[ignore = "needs tshark"]
fn wireshark_agrees_on_tunnelled_multicast() {
    let inner_src = ip::from_prefix_iid(
        &ML_PREFIX,
        &[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0],
    );
    let inner_dst: Ipv6Addr = "ff03::1".parse().unwrap();
    let inner = ip::echo_request(inner_src, inner_dst, 64, 0x1111, 2, b"hello");
    let mut compressed =
        hex::decode("7f7a030000fce1066d0440000400ee7a5a3a123456789abcdef003000001").unwrap();
    compressed.extend_from_slice(&inner[40..]);
    let (mac_src, mac_dst) = (Address::Short(0x0400), Address::Short(0xffff));
    let ours = lowpan::decompress(&compressed, &mac_src, &mac_dst, &contexts()).unwrap();
    assert_eq!(&ours[48..], &inner[..]);

    let psdu = FrameRepr::data(5, PAN, mac_dst, mac_src, None).emit(&compressed);
    let path = std::env::temp_dir().join(format!("ot-hil-wire-{}-tunnel.pcap", std::process::id()));
    let mut writer =
        PcapWriter::new(std::fs::File::create(&path).unwrap(), LinkType::NoFcs).unwrap();
    writer
        .write_frame(
            &SnifferFrame {
                psdu,
                rssi_dbm: -50,
                lqi: 255,
                timestamp_us: 0,
            },
            11,
        )
        .unwrap();
    drop(writer);
    let lines = tshark(
        &path,
        &[
            "ipv6.src",
            "ipv6.dst",
            "ipv6.plen",
            "ipv6.hopopts.len_oct",
            "icmpv6.checksum.status",
            "icmpv6.echo.sequence_number",
            "_ws.expert.message",
        ],
    );
    std::fs::remove_file(&path).ok();
    println!("{lines:?}");
    assert_eq!(
        lines,
        [format!(
            "fd00:db8::ff:fe00:400,fd00:db8::1234:5678:9abc:def0|ff03::fc,ff03::1|{},{}|8|1|2|",
            ours.len() - 40,
            inner.len() - 40
        )]
    );
}
