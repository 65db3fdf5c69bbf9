//! The hub and its clients over real Unix datagram sockets in a per-test directory.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use ot_hil_air::{AirClient, FaultConfig, Hub, HubStats};

const WAIT: Duration = Duration::from_secs(2);
/// How long a receiver listens to conclude that a frame is not coming. The hub forwards in
/// microseconds, so this only needs to be far above that.
const QUIET: Duration = Duration::from_millis(50);

fn hub() -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start(dir.path()).unwrap();
    (dir, hub)
}

fn client(hub: &Hub, channel: u8) -> AirClient {
    let c = AirClient::connect(hub.socket_path()).unwrap();
    c.set_channel(channel).unwrap();
    c
}

/// Poll the hub counters until `cond` holds (the hub is asynchronous; this waits on its progress,
/// not a fixed time).
fn wait_stats(hub: &Hub, cond: impl Fn(&HubStats) -> bool) -> HubStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = hub.stats();
        if cond(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "hub never reached the state: {stats:?}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn frames_reach_every_other_client_on_the_channel() {
    let (_dir, hub) = hub();
    let a = client(&hub, 15);
    let b = client(&hub, 15);
    let c = client(&hub, 15);
    a.send(&[1, 2, 3]).unwrap();
    let fb = b.recv_timeout(WAIT).unwrap().expect("b hears a");
    let fc = c.recv_timeout(WAIT).unwrap().expect("c hears a");
    assert_eq!(fb.psdu, [1, 2, 3]);
    assert_eq!(fb.channel, 15);
    assert_eq!(fc.psdu, [1, 2, 3]);
    assert_eq!(
        a.recv_timeout(QUIET).unwrap(),
        None,
        "no echo to the sender"
    );

    b.send(&[4]).unwrap();
    let fa = a.recv_timeout(WAIT).unwrap().unwrap();
    let fc2 = c.recv_timeout(WAIT).unwrap().unwrap();
    assert_eq!(fa.psdu, [4]);
    assert!(fc2.timestamp_us >= fc.timestamp_us, "one hub clock");

    let stats = hub.stats();
    assert_eq!(stats.frames_in, 2);
    assert_eq!(stats.frames_out, 4);
    assert_eq!(stats.clients, 3);
    assert_eq!(stats.malformed, 0);
}

#[test]
fn channels_are_isolated_and_radio_off_hears_nothing() {
    let (_dir, hub) = hub();
    let a = client(&hub, 11);
    let b = client(&hub, 26);
    let off = client(&hub, 0);
    a.send(&[0xaa]).unwrap();
    assert_eq!(b.recv_timeout(QUIET).unwrap(), None);
    assert_eq!(off.recv_timeout(QUIET).unwrap(), None);
    assert!(
        off.send(&[1]).is_err(),
        "a radio that is off cannot transmit"
    );

    b.set_channel(11).unwrap();
    a.send(&[0xbb]).unwrap();
    assert_eq!(b.recv_timeout(WAIT).unwrap().unwrap().psdu, [0xbb]);
    assert!(a.set_channel(27).is_err());
    assert!(
        a.send(&[0u8; 126]).is_err(),
        "longer than a 127-byte PSDU with FCS"
    );
}

#[test]
fn two_hubs_never_hear_each_other() {
    let (_d1, hub1) = hub();
    let (_d2, hub2) = hub();
    let a1 = client(&hub1, 20);
    let b1 = client(&hub1, 20);
    let a2 = client(&hub2, 20);
    let b2 = client(&hub2, 20);
    a1.send(&[1]).unwrap();
    a2.send(&[2]).unwrap();
    assert_eq!(b1.recv_timeout(WAIT).unwrap().unwrap().psdu, [1]);
    assert_eq!(b2.recv_timeout(WAIT).unwrap().unwrap().psdu, [2]);
    assert_eq!(b1.recv_timeout(QUIET).unwrap(), None);
    assert_eq!(b2.recv_timeout(QUIET).unwrap(), None);
}

#[test]
fn dead_and_departed_clients_are_removed() {
    let (dir, hub) = hub();
    let a = client(&hub, 15);
    // A radio whose process died: registered, then its socket is gone without a bye.
    let ghost_path = dir.path().join("ghost.sock");
    let ghost = UnixDatagram::bind(&ghost_path).unwrap();
    ghost.send_to(&[b'C', 15], hub.socket_path()).unwrap();
    wait_stats(&hub, |s| s.clients == 2);
    drop(ghost);
    std::fs::remove_file(&ghost_path).unwrap();
    a.send(&[7]).unwrap();
    let stats = wait_stats(&hub, |s| s.dead_clients == 1);
    assert_eq!(stats.clients, 1);

    // A socket that still exists but nobody reads (closed fd): connection refused.
    let zombie_path = dir.path().join("zombie.sock");
    let zombie = UnixDatagram::bind(&zombie_path).unwrap();
    zombie.send_to(&[b'C', 15], hub.socket_path()).unwrap();
    wait_stats(&hub, |s| s.clients == 2);
    drop(zombie);
    a.send(&[8]).unwrap();
    wait_stats(&hub, |s| s.dead_clients == 2 && s.clients == 1);

    // A client that leaves politely says bye; its clones keep it alive until the last one drops.
    let b = client(&hub, 15);
    let b2 = b.try_clone().unwrap();
    wait_stats(&hub, |s| s.clients == 2);
    drop(b);
    a.send(&[9]).unwrap();
    assert_eq!(b2.recv_timeout(WAIT).unwrap().unwrap().psdu, [9]);
    let b_path = b2.local_path().to_path_buf();
    drop(b2);
    wait_stats(&hub, |s| s.clients == 1);
    assert!(!b_path.exists(), "socket file removed with the last clone");
}

#[test]
fn malformed_datagrams_are_counted_not_fatal() {
    let (dir, hub) = hub();
    let a = client(&hub, 12);
    let b = client(&hub, 12);
    let raw = UnixDatagram::bind(dir.path().join("raw.sock")).unwrap();
    let garbage: [&[u8]; 7] = [
        b"",
        b"X",
        b"C",
        &[b'C', 99],
        &[b'F', 12],
        &[b'F', 3, 1, 2],
        &[b'F'; 400],
    ];
    for g in garbage {
        raw.send_to(g, hub.socket_path()).unwrap();
    }
    wait_stats(&hub, |s| s.malformed == 7);
    a.send(&[0x55]).unwrap();
    assert_eq!(b.recv_timeout(WAIT).unwrap().unwrap().psdu, [0x55]);

    // Garbage sent to a client is skipped and counted there too.
    raw.send_to(b"nonsense", b.local_path()).unwrap();
    a.send(&[0x56]).unwrap();
    assert_eq!(b.recv_timeout(WAIT).unwrap().unwrap().psdu, [0x56]);
    assert_eq!(b.malformed(), 1);
}

#[test]
fn injected_loss_delay_and_link_faults() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_seeded(dir.path(), 42).unwrap();
    let a = client(&hub, 15);
    let b = client(&hub, 15);
    let c = client(&hub, 15);

    // Only the a -> b link loses everything.
    hub.set_link_faults(
        a.local_path(),
        b.local_path(),
        Some(FaultConfig::lossy(1.0)),
    );
    a.send(&[1]).unwrap();
    assert_eq!(c.recv_timeout(WAIT).unwrap().unwrap().psdu, [1]);
    assert_eq!(b.recv_timeout(QUIET).unwrap(), None);
    assert_eq!(hub.stats().injected_losses, 1);
    hub.set_link_faults(a.local_path(), b.local_path(), None);

    // A global delay holds every delivery back at least that long.
    let delay = Duration::from_millis(30);
    hub.set_faults(FaultConfig {
        delay,
        ..FaultConfig::none()
    });
    let sent = Instant::now();
    a.send(&[2]).unwrap();
    assert_eq!(b.recv_timeout(WAIT).unwrap().unwrap().psdu, [2]);
    assert!(sent.elapsed() >= delay);

    // Half loss with a fixed seed: some frames lost, some delivered, none stuck.
    hub.set_faults(FaultConfig::lossy(0.5));
    for i in 0..40u8 {
        a.send(&[i]).unwrap();
    }
    let mut got = 0;
    while b.recv_timeout(QUIET).unwrap().is_some() {
        got += 1;
    }
    assert!(got > 5 && got < 35, "got {got} of 40 at 50% loss");
}

#[test]
fn duplication_and_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_seeded(dir.path(), 7).unwrap();
    let a = client(&hub, 15);
    let b = client(&hub, 15);
    hub.set_faults(FaultConfig {
        duplicate: 1.0,
        corrupt: 1.0,
        ..FaultConfig::none()
    });
    a.send(&[0u8; 10]).unwrap();
    let sent_fcs = ot_hil_wire::mac::fcs(&[0u8; 10]);
    for _ in 0..2 {
        let f = b.recv_timeout(WAIT).unwrap().unwrap();
        let flipped: u32 =
            f.psdu.iter().map(|x| x.count_ones()).sum::<u32>() + (f.fcs ^ sent_fcs).count_ones();
        assert_eq!(
            flipped, 1,
            "exactly one bit flipped, in the PSDU or its FCS"
        );
        assert!(!f.fcs_ok(), "a receiver sees the corruption in the FCS");
    }
    let s = hub.stats();
    assert_eq!((s.injected_duplicates, s.injected_corruptions), (1, 2));
}

#[test]
fn a_monitor_hears_every_frame_as_transmitted_unless_its_own_link_has_faults() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_seeded(dir.path(), 3).unwrap();
    let a = client(&hub, 15);
    let b = client(&hub, 15);
    let sniffer = AirClient::connect(hub.socket_path()).unwrap();
    sniffer.set_monitor(15).unwrap();
    assert!(sniffer.set_monitor(0).is_err(), "off is set_channel(0)");
    assert_eq!(sniffer.channel(), 15);

    hub.set_faults(FaultConfig {
        loss: 0.5,
        corrupt: 0.5,
        duplicate: 0.5,
        jitter: Duration::from_millis(5),
        ..FaultConfig::none()
    });
    let mut heard_by_b = 0;
    for i in 0..30u8 {
        a.send(&[i, 0x55]).unwrap();
        let f = sniffer
            .recv_timeout(WAIT)
            .unwrap()
            .expect("the sniffer hears every frame");
        assert_eq!(f.psdu, [i, 0x55], "in order, once, unchanged");
        assert!(f.fcs_ok());
        while b.recv_timeout(Duration::from_millis(10)).unwrap().is_some() {
            heard_by_b += 1;
        }
    }
    assert_eq!(sniffer.recv_timeout(QUIET).unwrap(), None, "no duplicates");
    let s = hub.stats();
    assert!(s.injected_losses > 0 && s.injected_corruptions > 0, "{s:?}");
    // Counted apart: what a perfect sniffer's capture must hold.
    assert_eq!(s.frames_to_monitors, 30, "{s:?}");
    assert!(
        heard_by_b < 45,
        "the other radio still gets the faults: {heard_by_b}"
    );

    // Faults set on a link to the sniffer reach it: a case asked for them.
    hub.set_link_faults(
        a.local_path(),
        sniffer.local_path(),
        Some(FaultConfig::lossy(1.0)),
    );
    a.send(&[0xee]).unwrap();
    assert_eq!(sniffer.recv_timeout(QUIET).unwrap(), None);

    // Back to an ordinary radio: the global faults apply again.
    hub.set_link_faults(a.local_path(), sniffer.local_path(), None);
    hub.set_faults(FaultConfig::lossy(1.0));
    sniffer.set_channel(15).unwrap();
    a.send(&[0xef]).unwrap();
    assert_eq!(sniffer.recv_timeout(QUIET).unwrap(), None);
}

/// Forwarding latency through the hub: a ping-pong between two clients (prints the figures).
#[test]
fn forwarding_latency() {
    let (_dir, hub) = hub();
    let a = client(&hub, 15);
    let b = client(&hub, 15);
    let mut rtts = Vec::new();
    let psdu = [0x41u8; 100];
    for _ in 0..500 {
        let t = Instant::now();
        a.send(&psdu).unwrap();
        let f = b.recv_timeout(WAIT).unwrap().unwrap();
        b.send(&f.psdu).unwrap();
        a.recv_timeout(WAIT).unwrap().unwrap();
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let one_way = |d: Duration| d / 2;
    let p50 = one_way(rtts[rtts.len() / 2]);
    let p99 = one_way(rtts[rtts.len() * 99 / 100]);
    println!("hub forwarding, one way (100-byte PSDU): p50 {p50:?}, p99 {p99:?}");
    assert!(p50 < Duration::from_millis(5), "p50 {p50:?}");
}

/// A receiver that does not read for a while (a busy device) still gets every frame, in order:
/// the hub holds what its socket queue cannot take.
#[test]
fn slow_receiver_gets_every_frame_in_order() {
    let (_dir, hub) = hub();
    let a = client(&hub, 15);
    let b = client(&hub, 15);
    for i in 0..200u8 {
        a.send(&[i]).unwrap();
    }
    wait_stats(&hub, |s| s.frames_in == 200);
    for i in 0..200u8 {
        assert_eq!(b.recv_timeout(WAIT).unwrap().unwrap().psdu, [i]);
    }
    assert_eq!(hub.stats().receiver_overruns, 0);
}
