//! Property tests: no parser panics on arbitrary input, and encoders round-trip through their
//! decoders for arbitrary field values.

use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use ot_hil_wire::lowpan::{self, Context, Reassembler};
use ot_hil_wire::mac::{self, Address, ExtAddress, FrameRepr, SecurityHeader};
use ot_hil_wire::{coap, decode, ip, pcap, security, sniffer};

const ML_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0x00];
const CONTEXTS: [Context; 2] = [
    Context {
        id: 0,
        prefix: ML_PREFIX,
    },
    Context {
        id: 3,
        prefix: [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0],
    },
];

fn mac_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        any::<u16>().prop_map(Address::Short),
        any::<[u8; 8]>().prop_map(|b| Address::Extended(ExtAddress(b))),
    ]
}

/// Addresses that exercise every compression mode: link-local from MAC, 16-bit, 64-bit, context
/// prefixes, multicast of each DAM form, and arbitrary ones.
fn ipv6_address(mac: Address) -> impl Strategy<Value = Ipv6Addr> {
    let from_mac = match mac {
        Address::Short(s) => ip::iid_from_short(s),
        Address::Extended(e) => ip::iid_from_ext(&e),
        Address::Absent => [0; 8],
    };
    prop_oneof![
        Just(ip::from_prefix_iid(
            &[0xfe, 0x80, 0, 0, 0, 0, 0, 0],
            &from_mac
        )),
        Just(ip::from_prefix_iid(&ML_PREFIX, &from_mac)),
        any::<u16>().prop_map(|s| ip::rloc(&ML_PREFIX, s)),
        any::<u16>().prop_map(ip::link_local_from_short),
        any::<[u8; 8]>().prop_map(|iid| ip::from_prefix_iid(&ML_PREFIX, &iid)),
        any::<[u8; 8]>().prop_map(|iid| ip::from_prefix_iid(&CONTEXTS[1].prefix, &iid)),
        any::<[u8; 8]>().prop_map(|iid| ip::from_prefix_iid(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0], &iid)),
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
    ]
}

fn multicast_address() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u8>().prop_map(|g| Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, u16::from(g))),
        (any::<u8>(), any::<u32>()).prop_map(|(s, g)| Ipv6Addr::from([
            0xff,
            s,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            (g >> 16) as u8,
            (g >> 8) as u8,
            g as u8
        ])),
        (any::<u8>(), any::<u64>()).prop_map(|(s, g)| {
            let g = g.to_be_bytes();
            Ipv6Addr::from([
                0xff, s, 0, 0, 0, 0, 0, 0, 0, 0, 0, g[3], g[4], g[5], g[6], g[7],
            ])
        }),
        any::<[u8; 15]>().prop_map(|b| {
            let mut a = [0xffu8; 16];
            a[1..].copy_from_slice(&b);
            Ipv6Addr::from(a)
        }),
    ]
}

proptest! {
    #[test]
    fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        mac::fuzz_parse(&data);
        security::fuzz_unsecure(&data);
        lowpan::fuzz_decode(&data);
        ip::fuzz_parse(&data);
        coap::fuzz_decode(&data);
        decode::fuzz_decoder(&data);
        sniffer::fuzz_parse_line(&data);
        let _ = lowpan::MeshHeader::parse(&data);
        let _ = lowpan::FragHeader::parse(&data);
        let _ = security::mle_security_header(&data);
        // A pcap header followed by arbitrary packet records.
        let mut capture = hex::decode("d4c3b2a1020004000000000000000000ffff00001b010000").unwrap();
        capture.extend_from_slice(&data);
        let _ = pcap::read_frames(&capture[..]);
    }

    #[test]
    fn sniffer_lines_never_panic(line in "(received: [0-9a-f]{0,20} power: -?[0-9]{1,4} lqi: [0-9]{1,4} time: -?[0-9]{1,22})|.{0,40}") {
        let _ = sniffer::parse_line(&line);
    }

    #[test]
    fn iphc_round_trips(
        (mac_src, mac_dst, src, dst) in (mac_address(), mac_address()).prop_flat_map(|(ms, md)| {
            (Just(ms), Just(md), ipv6_address(ms), prop_oneof![ipv6_address(md), multicast_address()])
        }),
        ports in (any::<u16>(), any::<u16>(), 0xf0b0u16..=0xf0bf, 0xf000u16..=0xf0ff, 0usize..4),
        traffic_class in any::<u8>(),
        flow_label in 0u32..(1 << 20),
        hop_limit in any::<u8>(),
        payload in proptest::collection::vec(any::<u8>(), 0..60),
    ) {
        let (a, b, tiny, short, mode) = ports;
        let (sport, dport) = match mode { 0 => (a, b), 1 => (a, short), 2 => (short, b), _ => (tiny, tiny ^ 0x0005) };
        let mut packet = ip::udp_packet(
            SocketAddrV6::new(src, sport, 0, 0),
            SocketAddrV6::new(dst, dport, 0, 0),
            hop_limit,
            &payload,
        );
        let word = (6u32 << 28) | (u32::from(traffic_class) << 20) | flow_label;
        packet[..4].copy_from_slice(&word.to_be_bytes());
        let compressed = lowpan::compress(&packet, &mac_src, &mac_dst, &CONTEXTS).unwrap();
        prop_assert!(compressed.len() <= packet.len() + 4);
        let back = lowpan::decompress(&compressed, &mac_src, &mac_dst, &CONTEXTS).unwrap();
        prop_assert_eq!(back, packet);
    }

    #[test]
    fn any_ipv6_packet_round_trips(
        header in any::<[u8; 40]>(),
        next_header in prop_oneof![Just(0u8), Just(43), Just(60), Just(41), Just(17), Just(58), any::<u8>()],
        payload in proptest::collection::vec(any::<u8>(), 0..120),
        nested in any::<bool>(),
        mac_src in mac_address(),
        mac_dst in mac_address(),
    ) {
        let mut payload = payload;
        // Make chains of extension headers / tunnels likely: a plausible length byte and
        // inner headers whose lengths fit.
        if nested && payload.len() >= 48 {
            payload[1] = (payload.len() / 8 - 1).min(2) as u8;
            payload[40] = 0x60;
            let inner_len = (payload.len() - 40) as u16;
            payload[4..6].copy_from_slice(&inner_len.to_be_bytes());
            payload[0] = 0x60 | (payload[0] & 0x0f);
        }
        let mut packet = header.to_vec();
        packet[0] = 0x60 | (packet[0] & 0x0f);
        packet[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        packet[6] = next_header;
        packet.extend_from_slice(&payload);
        let compressed = lowpan::compress(&packet, &mac_src, &mac_dst, &CONTEXTS).unwrap();
        let back = lowpan::decompress(&compressed, &mac_src, &mac_dst, &CONTEXTS).unwrap();
        prop_assert_eq!(back, packet);
    }

    #[test]
    fn fragmentation_round_trips(
        len in 0usize..1200,
        max_payload in 40usize..120,
        order_seed in any::<u64>(),
        tag in any::<u16>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(13)).collect();
        let packet = ip::udp_packet(
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0400), 5684, 0, 0),
            SocketAddrV6::new(ip::rloc(&ML_PREFIX, 0x0801), 61631, 0, 0),
            64,
            &payload,
        );
        let (src, dst) = (Address::Short(0x0400), Address::Short(0x0801));
        let compressed = lowpan::compress(&packet, &src, &dst, &CONTEXTS).unwrap();
        let mut frags = lowpan::fragment(&compressed, packet.len() as u16, tag, max_payload);
        prop_assert!(!frags.is_empty());
        prop_assert!(frags.iter().all(|f| f.len() <= max_payload));
        // Deterministic shuffle.
        let mut seed = order_seed | 1;
        for i in (1..frags.len()).rev() {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            frags.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let mut reassembler = Reassembler::new(Duration::from_secs(2));
        let now = Instant::now();
        let mut out = Vec::new();
        for frag in &frags {
            if let Some(datagram) = reassembler.push(now, &src, &dst, frag, &CONTEXTS).unwrap() {
                out.push(datagram);
            }
        }
        prop_assert_eq!(out, vec![packet]);
        prop_assert_eq!(reassembler.pending(), 0);
    }

    #[test]
    fn secured_frames_round_trip(
        seq in any::<u8>(),
        pan in any::<u16>(),
        dst in mac_address(),
        src in mac_address(),
        frame_counter in any::<u32>(),
        level in prop_oneof![Just(1u8), Just(2), Just(3), Just(5), Just(6), Just(7)],
        key in any::<[u8; 16]>(),
        nonce_source in any::<[u8; 8]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..60),
    ) {
        let mut security = SecurityHeader::thread_mac(frame_counter, 1);
        security.level = level;
        let repr = FrameRepr::data(seq, pan, dst, src, Some(security));
        let ext = ExtAddress(nonce_source);
        let frame = security::secure(&repr, &payload, &key, &ext).unwrap();
        let parsed = mac::parse(&frame).unwrap();
        prop_assert_eq!(&parsed.repr, &repr);
        let (back, plaintext) = security::unsecure(&frame, &key, &ext).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert_eq!(plaintext, payload);
    }
}
