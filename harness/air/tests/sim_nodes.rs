//! The hub as the event dispatcher of OpenThread's virtual-time simulation, against fake nodes
//! that speak the protocol as `platform-sim.c` does: connect to `vt.<base>.sock` from
//! `vt.<base + id>.sock`, ask to sleep (`ALARM_FIRED` with the delay to their next timer), send
//! frames as `RADIO_RECEIVED`, and take every event as "advance your clock by `mDelay`".

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use ot_hil_air::sim_event::{ALARM_FIRED, NO_ALARM, RADIO_RECEIVED, SimEvent};
use ot_hil_air::{Hub, Wake};

const BASE: u16 = 9000;

struct FakeNode {
    fd: OwnedFd,
}

impl FakeNode {
    fn connect(dir: &Path, id: u16) -> FakeNode {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        let own = dir.join(format!("vt.{}.sock", BASE + id));
        socket::bind(fd.as_raw_fd(), &UnixAddr::new(&own).unwrap()).unwrap();
        let hub = dir.join(format!("vt.{BASE}.sock"));
        socket::connect(fd.as_raw_fd(), &UnixAddr::new(&hub).unwrap()).unwrap();
        let tv = nix::sys::time::TimeVal::new(5, 0);
        socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &tv).unwrap();
        FakeNode { fd }
    }

    fn send(&self, event: SimEvent) {
        socket::send(self.fd.as_raw_fd(), &event.emit(), MsgFlags::empty()).unwrap();
    }

    fn sleep(&self, delay_us: u64) {
        self.send(SimEvent {
            delay_us,
            kind: ALARM_FIRED,
            data: vec![],
        });
    }

    fn recv(&self) -> SimEvent {
        let mut buf = vec![0u8; 2048];
        let n = socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("an event");
        SimEvent::parse(&buf[..n]).unwrap()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn time_jumps_to_a_node_timer_and_frames_reach_the_others_and_come_back_to_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_clocked(dir.path(), 1).unwrap();
    hub.listen_sim_nodes(BASE).unwrap();
    let clock = hub.clock().unwrap();
    let taps: Vec<_> = (1..=2u16)
        .map(|id| {
            let radio = dir.path().join(format!("vt.{}.sock", BASE + id));
            clock.expect_board(&radio, u32::from(id))
        })
        .collect();
    let a = FakeNode::connect(dir.path(), 1);
    let b = FakeNode::connect(dir.path(), 2);
    a.sleep(8_000_000);
    b.sleep(NO_ALARM);
    let rt = runtime();
    // The runner waits 10 s: the clock jumps to a's timer at 8 s and wakes a with the delay.
    let waited = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            rt.block_on(clock.wait(10_000_000, clock.generation(), Duration::from_secs(5)))
        });
        let woken = a.recv();
        assert_eq!((woken.kind, woken.delay_us), (ALARM_FIRED, 8_000_000));
        // Every node hears the time move.
        let told = b.recv();
        assert_eq!((told.kind, told.delay_us), (ALARM_FIRED, 8_000_000));
        // a transmits at 8 s, then sleeps with no timer; the frame waits until b is idle too.
        a.send(SimEvent::radio(1, 15, &[0x41, 0x88, 0x07], 0x1234));
        a.sleep(NO_ALARM);
        b.sleep(NO_ALARM);
        let heard = b.recv();
        assert_eq!(heard.kind, RADIO_RECEIVED);
        assert_eq!(heard.delay_us, 0, "b is at 8 s already");
        assert_eq!(
            heard.frame().unwrap(),
            (15, &[0x41, 0x88, 0x07][..], 0x1234)
        );
        let echo = a.recv();
        assert_eq!((echo.kind, echo.delay_us), (RADIO_RECEIVED, 0));
        assert_eq!(echo.frame().unwrap().1, &[0x41, 0x88, 0x07][..]);
        a.sleep(NO_ALARM);
        b.sleep(NO_ALARM);
        // Nothing is due before the runner's deadline: both get woken there.
        assert_eq!(a.recv().delay_us, 2_000_000);
        assert_eq!(b.recv().delay_us, 2_000_000);
        a.sleep(NO_ALARM);
        b.sleep(NO_ALARM);
        waiter.join().unwrap()
    });
    assert_eq!(waited, Wake::Deadline);
    assert_eq!(clock.now_us(), 10_000_000);
    assert_eq!(hub.stats().frames_in, 1);
    drop(taps);
}

#[test]
fn a_node_that_does_not_answer_holds_the_clock_and_the_wait_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_clocked(dir.path(), 1).unwrap();
    hub.listen_sim_nodes(BASE).unwrap();
    let clock = hub.clock().unwrap();
    let radio = dir.path().join(format!("vt.{}.sock", BASE + 1));
    let _tap = clock.expect_board(&radio, 0);
    let a = FakeNode::connect(dir.path(), 1);
    a.sleep(1_000);
    let rt = runtime();
    // Woken at 1 ms, the node never asks to sleep again: the clock stays there.
    let wake = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            rt.block_on(clock.wait(5_000_000, clock.generation(), Duration::from_millis(300)))
        });
        assert_eq!(a.recv().delay_us, 1_000);
        waiter.join().unwrap()
    });
    assert_eq!(wake, Wake::Stalled);
    assert_eq!(clock.now_us(), 1_000);
    let holding = clock.holding();
    assert!(
        holding.iter().any(|h| h.contains("vt.9001.sock")),
        "{holding:?}"
    );
}
