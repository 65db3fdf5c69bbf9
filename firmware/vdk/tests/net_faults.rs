//! The stack on an imperfect air (hub fault injection).

mod net_common;

use std::time::{Duration, Instant};

use net_common::{Net, ping_summary};
use ot_hil_air::FaultConfig;
use ot_hil_vdk::net::{ACK_TIMEOUT, MAX_FRAME_RETRIES, NetEvent, PARENT_LOST_AFTER_NO_ACKS};

#[test]
fn duplicated_frames_are_dropped_as_replays() {
    let mut net = Net::formed(2);
    net.hub.set_faults(FaultConfig {
        duplicate: 1.0,
        ..FaultConfig::none()
    });
    let dst = net.stack(0).ml_eid();
    net.stack(1)
        .ping(Instant::now(), dst, 200, 3, Duration::from_millis(20), 64)
        .unwrap();
    let events = net.wait_ping_done(1, Duration::from_secs(5));
    assert_eq!(ping_summary(&events), (3, 3));
    let replies = events
        .iter()
        .filter(|e| matches!(e, NetEvent::PingReply { .. }))
        .count();
    assert_eq!(
        replies, 3,
        "one reply per request despite duplicated frames"
    );
    assert!(net.stack(0).counters().rx_replayed > 0);
    assert!(net.stack(1).counters().rx_replayed > 0);
}

#[test]
fn corrupted_frames_fail_the_fcs_unacknowledged_and_are_retried() {
    let mut net = Net::formed(2);
    let (before_rx, before_tx) = (
        net.stack(0).counters().clone(),
        net.stack(1).counters().clone(),
    );
    net.hub.set_faults(FaultConfig {
        corrupt: 1.0,
        ..FaultConfig::none()
    });
    let dst = net.stack(0).addresses()[1].0;
    net.stack(1)
        .ping(Instant::now(), dst, 16, 1, Duration::from_millis(10), 64)
        .unwrap();
    // The request never gets through; the summary comes at the ping timeout.
    let events = net.wait_ping_done(1, Duration::from_secs(5));
    assert_eq!(ping_summary(&events), (1, 0));
    let (rx, tx) = (
        net.stack(0).counters().clone(),
        net.stack(1).counters().clone(),
    );
    // Wherever the flipped bit lands (MAC header, protected part or the FCS itself), the radio
    // drops the frame on its FCS before filtering, acking or unsecuring it.
    assert!(rx.rx_fcs_errors > before_rx.rx_fcs_errors, "{rx:?}");
    assert_eq!(rx.tx_acks, before_rx.tx_acks, "nothing corrupted is acked");
    assert_eq!(
        (rx.rx_frames, rx.rx_bad_mic, rx.rx_malformed),
        (
            before_rx.rx_frames,
            before_rx.rx_bad_mic,
            before_rx.rx_malformed
        ),
        "{rx:?}"
    );
    assert!(tx.tx_retries > before_tx.tx_retries, "{tx:?}");
}

#[test]
fn pinging_own_address_loops_back() {
    let mut net = Net::formed(1);
    let me = net.stack(0).ml_eid();
    net.stack(0)
        .ping(Instant::now(), me, 32, 2, Duration::from_millis(5), 64)
        .unwrap();
    let events = net.wait_ping_done(0, Duration::from_secs(2));
    assert_eq!(ping_summary(&events), (2, 2));
    assert_eq!(
        net.hub.stats().frames_in,
        2,
        "only the two Parent Requests went on the air"
    );
}

#[test]
fn child_whose_parent_is_gone_reattaches_or_leads() {
    let mut net = Net::formed(2);
    let leader_rloc = net.stack(0).addresses()[1].0;
    // The leader goes silent (its radio is off), as a crashed or reset board would.
    net.stack(0).thread_stop();
    net.stack(1)
        .ping(
            Instant::now(),
            leader_rloc,
            16,
            5,
            Duration::from_millis(20),
            64,
        )
        .unwrap();
    let t = Instant::now();
    // Four frames in a row fail after all their retries, then discovery finds no parent.
    let per_frame = ACK_TIMEOUT * (1 + u32::from(MAX_FRAME_RETRIES));
    let led = net.run_until(
        per_frame * PARENT_LOST_AFTER_NO_ACKS + Duration::from_secs(2),
        |n| n.role(1) == ot_hil_vdk::net::Role::Leader,
    );
    assert!(led, "child still {:?}", net.role(1));
    assert_eq!(
        net.stack(1).counters().tx_failures,
        u64::from(PARENT_LOST_AFTER_NO_ACKS)
    );
    println!(
        "parent loss noticed and own partition led after {:?}",
        t.elapsed()
    );

    // When the old leader comes back it finds the new one and attaches to it.
    net.stack(0).thread_start(Instant::now()).unwrap();
    assert!(
        net.wait_role(0, ot_hil_vdk::net::Role::Child, Duration::from_secs(2))
            .is_some()
    );
}
