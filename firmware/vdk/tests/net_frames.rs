//! The bytes on the air: what a sniffer with the network key decodes, using ot-hil-wire.

mod net_common;

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use net_common::{Net, dataset, ping_summary};
use ot_hil_air::AirClient;
use ot_hil_vdk::net::{NetEvent, Role};
use ot_hil_wire::ip::{self, Body};
use ot_hil_wire::lowpan::{Context, Dispatch, Reassembler};
use ot_hil_wire::mac::{self, Address, ExtAddress, FrameType};
use ot_hil_wire::security;

fn drain(sniffer: &AirClient) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    // The hub forwards in microseconds; a quiet 100 ms means the air is empty.
    while let Some(f) = sniffer.recv_timeout(Duration::from_millis(100)).unwrap() {
        frames.push(f.psdu);
    }
    frames
}

struct Decoded {
    repr: mac::FrameRepr,
    plaintext: Vec<u8>,
    mac_secured: bool,
}

/// Decrypt every data frame as a sniffer would: extended sources directly, short sources through
/// the short -> extended map learned from the nodes.
fn decrypt_all(frames: &[Vec<u8>], shorts: &HashMap<u16, ExtAddress>) -> (Vec<Decoded>, usize) {
    let key = security::derive_keys(&dataset().network_key, 0).mac_key;
    let mut out = Vec::new();
    let mut acks = 0;
    for psdu in frames {
        let parsed = mac::parse(psdu).expect("every frame parses");
        if parsed.repr.frame_type == FrameType::Ack {
            assert_eq!(psdu.len(), 3);
            acks += 1;
            continue;
        }
        assert_eq!(parsed.repr.frame_type, FrameType::Data);
        assert_eq!(parsed.repr.dst_pan_id(), Some(dataset().pan_id));
        let Some(sec) = parsed.repr.security else {
            // MLE: secured at the MLE layer instead (checked after decoding).
            out.push(Decoded {
                repr: parsed.repr.clone(),
                plaintext: parsed.payload.to_vec(),
                mac_secured: false,
            });
            continue;
        };
        assert_eq!((sec.level, sec.key_id_mode, sec.key_index), (5, 1, Some(1)));
        assert_eq!(parsed.repr.version, 1, "IEEE 802.15.4-2006 frames");
        assert_eq!(parsed.repr.dst_pan_id(), Some(dataset().pan_id));
        let ext = match parsed.repr.src {
            Address::Extended(e) => e,
            Address::Short(s) => *shorts.get(&s).expect("short source of a known node"),
            Address::Absent => panic!("no source"),
        };
        let (repr, plaintext) = security::unsecure(psdu, &key, &ext).expect("MIC verifies");
        out.push(Decoded {
            repr,
            plaintext,
            mac_secured: true,
        });
    }
    (out, acks)
}

#[test]
fn frames_are_thread_secured_iphc_with_context_0() {
    let mut net = Net::new();
    let sniffer = net.sniffer(dataset().channel);
    net.add(dataset());
    net.add(dataset());
    net.start(0);
    net.wait_role(0, Role::Leader, Duration::from_secs(2))
        .unwrap();
    net.start(1);
    net.wait_role(1, Role::Child, Duration::from_secs(2))
        .unwrap();
    let dst = net.stack(0).addresses()[1].0; // leader RLOC
    net.stack(1)
        .ping(Instant::now(), dst, 500, 1, Duration::from_millis(10), 64)
        .unwrap();
    net.wait_ping_done(1, Duration::from_secs(5));
    net.stack(0).udp_open(1234).unwrap();
    let ml_eid = net.stack(0).ml_eid();
    let leader_rloc16 = net.stack(0).rloc16();
    net.stack(1)
        .udp_send(
            Instant::now(),
            4321,
            std::net::SocketAddrV6::new(ml_eid, 1234, 0, 0),
            b"hi",
        )
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, NetEvent::Udp { .. }))
    }));

    let frames = drain(&sniffer);
    let mut shorts = HashMap::new();
    for i in 0..2 {
        shorts.insert(net.stack(i).rloc16(), ExtAddress(net.stack(i).ext_addr()));
    }
    let (decoded, acks) = decrypt_all(&frames, &shorts);
    assert!(acks > 0, "unicast frames are acknowledged");

    let prefix = dataset().mesh_local_prefix;
    let contexts = [Context { id: 0, prefix }];
    let mut reassembler = Reassembler::new(Duration::from_secs(2));
    let mut packets = Vec::new();
    let (mut frag1, mut fragn, mut stateful_iphc) = (0, 0, 0);
    for d in &decoded {
        let first = d.plaintext[0];
        match Dispatch::of(first) {
            Dispatch::Frag1 => frag1 += 1,
            Dispatch::FragN => fragn += 1,
            Dispatch::Iphc => {
                // SAC and DAC (context-based compression) for mesh-local unicast.
                let iphc = u16::from_be_bytes([d.plaintext[0], d.plaintext[1]]);
                let (sac, m, dac) = (iphc & 0x0040 != 0, iphc & 0x0008 != 0, iphc & 0x0004 != 0);
                if sac && !m && dac {
                    stateful_iphc += 1;
                }
            }
            other => panic!("unexpected dispatch {other:?}"),
        }
        if let Some(datagram) = reassembler
            .push(
                Instant::now(),
                &d.repr.src,
                &d.repr.dst,
                &d.plaintext,
                &contexts,
            )
            .unwrap()
        {
            let packet = ip::parse(&datagram).unwrap();
            let is_mle = matches!(
                packet.body,
                Body::Udp {
                    src_port: 19788,
                    dst_port: 19788,
                    ..
                }
            );
            assert_eq!(
                d.mac_secured, !is_mle,
                "MAC security on all but MLE: {packet:?}"
            );
            packets.push((d.repr.clone(), packet));
        }
    }
    assert!(
        frag1 >= 2 && fragn >= 6,
        "500-byte echo and reply in fragments: {frag1} FRAG1, {fragn} FRAGN"
    );
    assert!(
        stateful_iphc >= 1,
        "mesh-local addresses compressed with context 0"
    );

    // MLE attach: Parent Request to ff02::2 from an extended source, then the rest unicast.
    // Each is secured at the MLE layer: suite 0, key id mode 2, MLE key of key sequence 0.
    let mle_key = security::derive_keys(&dataset().network_key, 0).mle_key;
    let mle: Vec<(u8, &mac::FrameRepr, &ip::Packet)> = packets
        .iter()
        .filter_map(|(repr, p)| match &p.body {
            Body::Udp {
                src_port: 19788,
                dst_port: 19788,
                payload,
            } => {
                let (header, message) =
                    security::mle_unsecure(payload, &p.src, &p.dst, &mle_key).expect("MLE MIC");
                assert_eq!((header.level, header.key_id_mode), (5, 2));
                assert_eq!(security::mle_key_sequence(&header), Some(0));
                Some((message[0], repr, p))
            }
            _ => None,
        })
        .collect();
    // Leaving out the leader's advertisements (command 4), whose timing is the trickle timer's.
    let commands: Vec<u8> = mle.iter().map(|m| m.0).filter(|c| *c != 4).collect();
    // Two Parent Requests from the first node before it leads, then the second node's attach.
    assert_eq!(commands, [9, 9, 9, 10, 11, 12]);
    for (command, repr, p) in &mle {
        assert!(
            matches!(repr.src, Address::Extended(_)),
            "MLE from extended source"
        );
        assert_eq!(p.hop_limit, 255);
        assert!(ip::classify(&p.src, &prefix) == ip::AddressClass::LinkLocal);
        if *command == 9 {
            assert_eq!(p.dst, "ff02::2".parse::<Ipv6Addr>().unwrap());
            assert_eq!(repr.dst, Address::Short(0xffff));
        }
    }

    // The echo request: child RLOC -> leader RLOC, 500 bytes, short MAC addresses.
    let echo = packets
        .iter()
        .find(|(_, p)| matches!(&p.body, Body::EchoRequest { data, .. } if data.len() == 500))
        .expect("the 500-byte echo request reassembles");
    assert_eq!(echo.1.dst, dst);
    assert!(matches!(echo.0.src, Address::Short(_)));
    assert!(matches!(echo.0.dst, Address::Short(_)));

    // The harness's own sniffer decoder follows the whole exchange from the bytes alone: it learns
    // short -> extended addresses from MLE and yields the UDP datagram sent from a short address.
    let mut decoder = ot_hil_wire::decode::Decoder::new(dataset().network_key, 0, prefix);
    let udp: Vec<_> = frames
        .iter()
        .enumerate()
        .filter_map(|(i, f)| decoder.push_psdu(i as u64, f))
        .collect();
    assert!(
        udp.iter().any(|d| d.payload == b"hi"),
        "decoder stats {:?}",
        decoder.stats()
    );

    // Address query for the leader's ML-EID on the air, then the UDP datagram. The child sends
    // the multicast query as a MAC unicast to its parent (acked, retransmitted when lost), and
    // the parent repeats it as a MAC broadcast.
    let query_mac_dsts: Vec<Address> = packets
        .iter()
        .filter(|(_, p)| {
            matches!(&p.body,
            Body::Udp { dst_port: 61631, .. } if p.dst == "ff03::2".parse::<Ipv6Addr>().unwrap())
        })
        .map(|(repr, _)| repr.dst)
        .collect();
    assert_eq!(
        query_mac_dsts,
        [Address::Short(leader_rloc16), Address::Short(0xffff)],
        "child -> parent unicast, then the parent's rebroadcast"
    );
    assert!(packets.iter().any(|(_, p)| matches!(&p.body,
        Body::Udp { dst_port: 1234, payload, .. } if payload == b"hi")
        && p.dst == ml_eid));
}

#[test]
fn a_node_with_another_key_cannot_read_the_network() {
    let mut net = Net::formed(2);
    let mut other = dataset();
    other.network_key = [0x55; 16];
    let eve = net.add(other);
    net.start(eve);
    net.wait_role(eve, Role::Leader, Duration::from_secs(2))
        .unwrap();
    // Traffic in the real network: the child's address query, which its parent rebroadcasts
    // (from a short address eve has never heard of), and the leader's link-local multicast ping
    // (extended source: eve tries and fails to decrypt it).
    let target = net.stack(0).ml_eid();
    net.stack(1)
        .ping(Instant::now(), target, 16, 1, Duration::from_millis(10), 64)
        .unwrap();
    assert_eq!(received(net.wait_ping_done(1, Duration::from_secs(5))), 1);
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    net.stack(0)
        .ping(
            Instant::now(),
            all_nodes,
            16,
            1,
            Duration::from_millis(10),
            64,
        )
        .unwrap();
    // Only the child answers: eve cannot read the request.
    assert_eq!(received(net.wait_ping_done(0, Duration::from_secs(5))), 1);
    // The summary can come before eve has processed the multicast frame: wait for her.
    net.run_until(Duration::from_secs(2), |n| {
        n.nodes[eve].stack.counters().rx_bad_mic >= 1
    });
    let c = net.stack(eve).counters().clone();
    assert!(c.rx_bad_mic >= 1, "{c:?}");
    assert!(c.rx_unknown_neighbor >= 1, "{c:?}");
    assert!(net.stack(eve).children().is_empty());
    assert!(
        net.stack(0).counters().rx_bad_mic >= 1,
        "eve's parent requests fail at the leader"
    );
}

fn received(events: Vec<NetEvent>) -> u16 {
    ping_summary(&events).1
}
