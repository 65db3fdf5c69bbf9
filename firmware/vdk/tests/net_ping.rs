//! ICMPv6 echo and UDP between stacks on the virtual air.

mod net_common;

use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use net_common::{Net, ping_summary};
use ot_hil_vdk::net::{AddressKind, NetEvent, PING_TIMEOUT};
use ot_hil_vdk::ot_error::OtError;

const WAIT: Duration = Duration::from_secs(5);

fn address(net: &mut Net, i: usize, kind: AddressKind) -> Ipv6Addr {
    net.stack(i)
        .addresses()
        .into_iter()
        .find(|(_, k)| *k == kind)
        .map(|(a, _)| a)
        .unwrap()
}

/// Ping `dst` from node `from`; returns (replies, sent, received).
fn ping(
    net: &mut Net,
    from: usize,
    dst: Ipv6Addr,
    size: u16,
    count: u16,
) -> (Vec<NetEvent>, u16, u16) {
    net.stack(from)
        .ping(
            Instant::now(),
            dst,
            size,
            count,
            Duration::from_millis(10),
            64,
        )
        .unwrap();
    let events = net.wait_ping_done(from, WAIT);
    let (sent, received) = ping_summary(&events);
    (events, sent, received)
}

fn assert_all_replied(events: &[NetEvent], from: Ipv6Addr, size: u16, count: u16) {
    let replies: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            NetEvent::PingReply {
                from: f,
                size: s,
                seq,
                hop_limit,
                ..
            } => Some((*f, *s, *seq, *hop_limit)),
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), usize::from(count), "{events:?}");
    for (f, s, _, hop_limit) in &replies {
        assert_eq!(*f, from);
        assert_eq!(*s, size);
        assert!(*hop_limit >= 63, "hop limit {hop_limit}");
    }
    let seqs: Vec<u16> = replies.iter().map(|r| r.2).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "distinct sequence numbers");
}

#[test]
fn child_pings_leader_rloc_ml_eid_link_local_and_aloc() {
    let mut net = Net::formed(2);
    for kind in [
        AddressKind::Rloc,
        AddressKind::MeshLocalEid,
        AddressKind::LinkLocal,
        AddressKind::Aloc,
    ] {
        let dst = address(&mut net, 0, kind);
        let (events, sent, received) = ping(&mut net, 1, dst, 16, 2);
        assert_eq!((sent, received), (2, 2), "{kind:?}: {events:?}");
        assert_all_replied(&events, dst, 16, 2);
    }
    // The ML-EID took one address query, answered and cached.
    assert_eq!(net.stack(1).counters().address_queries_sent, 1);
}

#[test]
fn leader_pings_child_and_big_pings_are_fragmented() {
    let mut net = Net::formed(2);
    let before = net.stack(1).reassembly_stats();
    for kind in [
        AddressKind::MeshLocalEid,
        AddressKind::Rloc,
        AddressKind::LinkLocal,
    ] {
        let dst = address(&mut net, 1, kind);
        let (events, sent, received) = ping(&mut net, 0, dst, 500, 3);
        assert_eq!((sent, received), (3, 3), "{kind:?}: {events:?}");
        assert_all_replied(&events, dst, 500, 3);
    }
    let after = net.stack(1).reassembly_stats();
    assert_eq!(
        after.reassembled - before.reassembled,
        9,
        "every 500-byte request came in fragments"
    );
    assert!(
        net.stack(0).reassembly_stats().reassembled >= 9,
        "and every reply too"
    );
}

#[test]
fn children_reach_each_other_through_the_leader() {
    let mut net = Net::formed(3);
    let dst = address(&mut net, 2, AddressKind::MeshLocalEid);
    let (events, sent, received) = ping(&mut net, 1, dst, 100, 2);
    assert_eq!((sent, received), (2, 2), "{events:?}");
    assert_all_replied(&events, dst, 100, 2);
    // Leader answered the query on the child's behalf and forwarded both ways.
    assert!(net.stack(0).counters().ip_forwarded >= 4);
    // Hop limit went down by one at the leader.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NetEvent::PingReply { hop_limit: 63, .. }))
    );
}

#[test]
fn unknown_ml_eid_times_out_and_ping_reports_loss() {
    let mut net = Net::formed(2);
    let nobody: Ipv6Addr = "fdde:ad00:beef:0:1234:5678:9abc:def0".parse().unwrap();
    let t = Instant::now();
    let (events, sent, received) = ping(&mut net, 1, nobody, 8, 1);
    assert_eq!((sent, received), (1, 0), "{events:?}");
    assert!(
        t.elapsed() >= PING_TIMEOUT,
        "summary only after the ping timeout"
    );
    assert_eq!(net.stack(1).counters().address_query_timeouts, 1);
}

#[test]
fn ping_busy_and_bad_arguments() {
    let mut net = Net::formed(2);
    let dst = address(&mut net, 0, AddressKind::Rloc);
    let s = net.stack(1);
    s.ping(Instant::now(), dst, 8, 1, Duration::from_secs(1), 64)
        .unwrap();
    assert_eq!(
        s.ping(Instant::now(), dst, 8, 1, Duration::from_secs(1), 64),
        Err(OtError::Busy)
    );
    net.wait_ping_done(1, WAIT);
    let s = net.stack(1);
    assert_eq!(
        s.ping(Instant::now(), dst, 8, 0, Duration::from_secs(1), 64),
        Err(OtError::InvalidArgs)
    );
}

#[test]
fn udp_round_trip() {
    let mut net = Net::formed(2);
    net.stack(0).udp_open(1234).unwrap();
    net.stack(1).udp_open(5678).unwrap();
    assert_eq!(net.stack(0).udp_open(1234), Err(OtError::Already));
    let leader = address(&mut net, 0, AddressKind::MeshLocalEid);
    let child = address(&mut net, 1, AddressKind::MeshLocalEid);

    // 300 bytes: fragmented on the way.
    let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    net.stack(1)
        .udp_send(
            Instant::now(),
            5678,
            SocketAddrV6::new(leader, 1234, 0, 0),
            &payload,
        )
        .unwrap();
    let got = net.run_until(WAIT, |n| {
        n.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, NetEvent::Udp { .. }))
    });
    assert!(got);
    let Some(NetEvent::Udp {
        src,
        dst,
        payload: p,
    }) = net.nodes[0]
        .events
        .iter()
        .find(|e| matches!(e, NetEvent::Udp { .. }))
        .cloned()
    else {
        unreachable!()
    };
    assert_eq!(p, payload);
    assert_eq!(*src.ip(), child);
    assert_eq!(src.port(), 5678);
    assert_eq!(dst, SocketAddrV6::new(leader, 1234, 0, 0));

    // And back.
    net.stack(0)
        .udp_send(Instant::now(), 1234, src, b"pong")
        .unwrap();
    assert!(net.run_until(WAIT, |n| {
        n.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, NetEvent::Udp { payload, .. } if payload == b"pong"))
    }));

    // A DTLS-flight-sized datagram (a certificate flight): 1200 bytes, 13+ fragments.
    let big: Vec<u8> = (0..1200u16).map(|i| (i * 7) as u8).collect();
    net.stack(0)
        .udp_send(Instant::now(), 1234, src, &big)
        .unwrap();
    assert!(net.run_until(WAIT, |n| {
        n.nodes[1]
            .events
            .iter()
            .any(|e| matches!(e, NetEvent::Udp { payload, .. } if *payload == big))
    }));
    assert_eq!(
        net.stack(0)
            .udp_send(Instant::now(), 1234, src, &[0u8; 1240]),
        Err(OtError::NoBufs),
        "larger than the IPv6 minimum MTU"
    );

    // A closed port hears nothing.
    net.stack(0).udp_close(1234);
    net.stack(1)
        .udp_send(
            Instant::now(),
            5678,
            SocketAddrV6::new(leader, 1234, 0, 0),
            b"x",
        )
        .unwrap();
    net.nodes[0].events.clear();
    // Wait until the datagram surely arrived: the child pings the leader after it.
    let rloc = address(&mut net, 0, AddressKind::Rloc);
    let (_, _, received) = ping(&mut net, 1, rloc, 8, 1);
    assert_eq!(received, 1);
    assert!(
        !net.nodes[0]
            .events
            .iter()
            .any(|e| matches!(e, NetEvent::Udp { .. }))
    );
}

#[test]
fn ping_request_with_source_timeout_and_stop() {
    use ot_hil_vdk::net::PingRequest;
    let mut net = Net::formed(2);
    let leader = address(&mut net, 0, AddressKind::MeshLocalEid);
    let child_rloc = address(&mut net, 1, AddressKind::Rloc);
    // Reply goes back to the chosen source (the child's RLOC), not the default ML-EID.
    let request = PingRequest {
        src: Some(child_rloc),
        count: 1,
        ..PingRequest::new(leader)
    };
    net.stack(1).ping_request(Instant::now(), &request).unwrap();
    let events = net.wait_ping_done(1, WAIT);
    assert!(matches!(
        events.last(),
        Some(NetEvent::PingDone { received: 1, .. })
    ));

    let not_mine: Ipv6Addr = "fdde:ad00:beef:0:1:1:1:1".parse().unwrap();
    let bad = PingRequest {
        src: Some(not_mine),
        ..PingRequest::new(leader)
    };
    assert_eq!(
        net.stack(1).ping_request(Instant::now(), &bad),
        Err(OtError::InvalidArgs)
    );

    // A short timeout ends an unanswered ping early.
    let nobody: Ipv6Addr = "fdde:ad00:beef:0:1234:5678:9abc:def0".parse().unwrap();
    let quick = PingRequest {
        timeout: Duration::from_millis(100),
        ..PingRequest::new(nobody)
    };
    let t = Instant::now();
    net.stack(1).ping_request(Instant::now(), &quick).unwrap();
    let events = net.wait_ping_done(1, WAIT);
    assert!(matches!(
        events.last(),
        Some(NetEvent::PingDone {
            sent: 1,
            received: 0,
            ..
        })
    ));
    assert!(t.elapsed() < Duration::from_secs(1));

    // Stopped: no summary, and a new ping may start at once.
    net.stack(1)
        .ping(
            Instant::now(),
            leader,
            8,
            100,
            Duration::from_millis(50),
            64,
        )
        .unwrap();
    net.stack(1).ping_stop();
    net.stack(1)
        .ping(Instant::now(), leader, 8, 1, Duration::from_millis(50), 64)
        .unwrap();
    let events = net.wait_ping_done(1, WAIT);
    let summaries = events
        .iter()
        .filter(|e| matches!(e, NetEvent::PingDone { .. }))
        .count();
    assert_eq!(summaries, 1);
}
