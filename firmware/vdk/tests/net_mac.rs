//! MAC acknowledgements and retransmissions over a real virtual air (hub link faults).

mod net_common;

use std::net::SocketAddrV6;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use net_common::Net;
use ot_hil_air::FaultConfig;
use ot_hil_vdk::net::{ACK_TIMEOUT, MAX_FRAME_RETRIES, NetEvent, Role};
use ot_hil_wire::mac::{self, Address, FrameType};

const PORT: u16 = 5683;

/// The hub's name for node `i`'s radio (for per-link faults).
fn radio(net: &Net, i: usize) -> PathBuf {
    net.nodes[i]
        .stack
        .air_receiver()
        .expect("radio")
        .local_path()
        .to_path_buf()
}

/// UDP payloads node `i` received, taking them out of its events.
fn take_udp(net: &mut Net, i: usize) -> Vec<Vec<u8>> {
    let events = std::mem::take(&mut net.nodes[i].events);
    events
        .into_iter()
        .filter_map(|e| match e {
            NetEvent::Udp { payload, .. } => Some(payload),
            _ => None,
        })
        .collect()
}

fn udp_count(net: &Net, i: usize) -> usize {
    net.nodes[i]
        .events
        .iter()
        .filter(|e| matches!(e, NetEvent::Udp { .. }))
        .count()
}

/// Send `payload` from `from` to `to`'s RLOC (no address query needed), port [`PORT`].
fn send_to_rloc(net: &mut Net, from: usize, to: usize, payload: &[u8]) {
    let rloc = net
        .stack(to)
        .addresses()
        .into_iter()
        .find(|(_, k)| *k == ot_hil_vdk::net::AddressKind::Rloc)
        .expect("an attached node has an RLOC")
        .0;
    net.stack(from)
        .udp_send(
            Instant::now(),
            PORT,
            SocketAddrV6::new(rloc, PORT, 0, 0),
            payload,
        )
        .unwrap();
}

#[test]
fn lost_acks_bring_retransmissions_that_are_acked_again_and_dropped_as_duplicates() {
    let mut net = Net::formed(2);
    net.stack(0).udp_open(PORT).unwrap();
    let sniffer = net.sniffer(net_common::dataset().channel);
    // Every ack from the leader to the child is lost; the child's frames all get through.
    let (leader, child) = (radio(&net, 0), radio(&net, 1));
    net.hub
        .set_link_faults(&leader, &child, Some(FaultConfig::lossy(1.0)));
    let child_rloc = net.stack(1).rloc16();
    let before = net.stack(0).counters().clone();
    send_to_rloc(&mut net, 1, 0, b"once");
    let attempts = 1 + u64::from(MAX_FRAME_RETRIES);
    let failed = net.run_until(ACK_TIMEOUT * (attempts as u32 + 10), |n| {
        n.nodes[1].stack.counters().tx_failures >= 1
    });
    assert!(failed, "{:?}", net.stack(1).counters());

    assert_eq!(
        take_udp(&mut net, 0),
        vec![b"once".to_vec()],
        "delivered once"
    );
    let (l, c) = (
        net.stack(0).counters().clone(),
        net.stack(1).counters().clone(),
    );
    assert_eq!(l.tx_acks - before.tx_acks, attempts, "every copy acked");
    assert_eq!(
        l.rx_replayed - before.rx_replayed,
        attempts - 1,
        "copies dropped as replays"
    );
    assert_eq!((c.tx_retries, c.tx_failures), (attempts - 1, 1));
    assert_eq!(
        net.role(1),
        Role::Child,
        "one failed frame does not lose the parent"
    );

    // On the air: the same bytes every time (same sequence number, same frame counter).
    let mut copies = Vec::new();
    while let Ok(Some(frame)) = sniffer.recv_timeout(Duration::from_millis(50)) {
        let Ok(parsed) = mac::parse(&frame.psdu) else {
            continue;
        };
        if parsed.repr.frame_type == FrameType::Data
            && parsed.repr.src == Address::Short(child_rloc)
        {
            copies.push(frame.psdu);
        }
    }
    assert_eq!(copies.len() as u64, attempts);
    assert!(
        copies.iter().all(|c| *c == copies[0]),
        "retransmissions differ"
    );
}

#[test]
fn a_frame_lost_once_arrives_with_its_retransmission() {
    let mut net = Net::formed(2);
    net.stack(0).udp_open(PORT).unwrap();
    let (leader, child) = (radio(&net, 0), radio(&net, 1));
    net.hub
        .set_link_faults(&child, &leader, Some(FaultConfig::lossy(1.0)));
    send_to_rloc(&mut net, 1, 0, b"again");
    // The first attempt is lost; the link heals before the retry.
    let mut healed = false;
    let arrived = net.run_until(Duration::from_secs(2), |n| {
        if !healed && n.hub.stats().injected_losses >= 1 {
            n.hub.set_link_faults(&child, &leader, None);
            healed = true;
        }
        udp_count(n, 0) >= 1
    });
    assert!(arrived, "{:?}", net.stack(1).counters());
    // Let any late copy arrive before counting.
    net.run_until(ACK_TIMEOUT * 3, |_| false);
    assert_eq!(take_udp(&mut net, 0), vec![b"again".to_vec()]);
    let c = net.stack(1).counters().clone();
    assert!(c.tx_retries >= 1, "{c:?}");
    assert_eq!(c.tx_failures, 0);
}

#[test]
fn a_frame_corrupted_on_the_air_is_not_acked_and_arrives_with_its_retransmission() {
    let mut net = Net::formed(2);
    net.stack(0).udp_open(PORT).unwrap();
    let (leader, child) = (radio(&net, 0), radio(&net, 1));
    let corrupt_all = FaultConfig {
        corrupt: 1.0,
        ..FaultConfig::none()
    };
    net.hub.set_link_faults(&child, &leader, Some(corrupt_all));
    let before = net.stack(0).counters().clone();
    send_to_rloc(&mut net, 1, 0, b"intact");
    // The first attempt arrives with one bit flipped; the link heals before the retry.
    let mut healed = false;
    let arrived = net.run_until(Duration::from_secs(2), |n| {
        if !healed && n.hub.stats().injected_corruptions >= 1 {
            n.hub.set_link_faults(&child, &leader, None);
            healed = true;
        }
        udp_count(n, 0) >= 1
    });
    assert!(arrived, "{:?}", net.stack(1).counters());
    net.run_until(ACK_TIMEOUT * 3, |_| false);
    assert_eq!(take_udp(&mut net, 0), vec![b"intact".to_vec()]);
    let (l, c) = (
        net.stack(0).counters().clone(),
        net.stack(1).counters().clone(),
    );
    assert!(l.rx_fcs_errors > before.rx_fcs_errors, "{l:?}");
    assert_eq!(l.rx_bad_mic, before.rx_bad_mic, "dropped before unsecuring");
    assert!(
        c.tx_retries >= 1,
        "the corrupted attempt was not acked: {c:?}"
    );
    assert_eq!(c.tx_failures, 0);
}

#[test]
fn fragmented_datagrams_cross_thirty_percent_loss_both_ways_whole_and_in_order() {
    let mut net = Net::formed(2);
    net.stack(0).udp_open(PORT).unwrap();
    net.stack(1).udp_open(PORT).unwrap();
    net.hub.set_faults(FaultConfig::lossy(0.3));
    // 400 bytes: four fragments each; without retransmissions most would be lost.
    let payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 400]).collect();
    for p in &payloads {
        send_to_rloc(&mut net, 1, 0, p);
        send_to_rloc(&mut net, 0, 1, p);
    }
    let all = net.run_until(Duration::from_secs(10), |n| {
        udp_count(n, 0) >= payloads.len() && udp_count(n, 1) >= payloads.len()
    });
    let (l, c) = (
        net.stack(0).counters().clone(),
        net.stack(1).counters().clone(),
    );
    assert!(all, "leader {l:?}\nchild {c:?}");
    assert_eq!(take_udp(&mut net, 0), payloads, "child to leader");
    assert_eq!(take_udp(&mut net, 1), payloads, "leader to child");
    assert!(l.tx_retries > 0 && c.tx_retries > 0, "the loss was real");
    assert_eq!((l.tx_failures, c.tx_failures), (0, 0));
    assert_eq!(net.role(1), Role::Child);
}
