//! Board locks across processes. The "other process" is this test binary run again with
//! `OT_HIL_LOCK_HELPER` set: it takes a lock, prints `locked <pid>`, then waits for a line on stdin
//! (release) or is killed (crash).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use ot_hil_lab::hwmap::{HardwareMap, Profile};
use ot_hil_lab::lock::{Allocator, LockDir, LockError, NodeRequest};

const HELPER_ENV: &str = "OT_HIL_LOCK_HELPER";

/// The helper process itself, started by the tests below (with `--ignored`); not a test on its own.
#[test]
#[ignore = "helper process of the cross-process lock tests, started by them"]
fn helper_process() {
    let Ok(spec) = std::env::var(HELPER_ENV) else {
        return;
    };
    let (dir, boards) = spec.split_once('|').unwrap();
    let locks = LockDir::new(dir.into());
    let held: Vec<_> = boards
        .split(',')
        .map(|b| {
            locks
                .try_lock(b, "helper-case")
                .unwrap()
                .expect("board free in helper")
        })
        .collect();
    println!("locked {}", std::process::id());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(held);
    println!("released");
}

struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
}

impl Helper {
    fn start(dir: &Path, boards: &str) -> Helper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, format!("{}|{boards}", dir.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        // Read on a thread so a helper that never locks fails the test after a timeout instead of hanging
        // it; the thread keeps draining stdout so the helper never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                // libtest's `test helper_process ... ` prefix may share the line.
                if let Some((_, pid)) = line.trim().split_once("locked ") {
                    let _ = tx.send(pid.trim().parse::<u32>().ok());
                }
            }
        });
        let pid = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("helper did not report its lock within 20 s")
            .expect("helper printed a bad pid");
        Helper { child, stdin, pid }
    }

    fn release(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"release\n");
        }
    }

    fn crash(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_lock_held_by_another_process_is_busy_and_names_its_holder() {
    let dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(dir.path().to_path_buf());
    let mut helper = Helper::start(dir.path(), "dk-a");
    assert!(locks.try_lock("dk-a", "mine").unwrap().is_none());
    let holder = locks.holder("dk-a").unwrap();
    assert!(
        holder.starts_with(&format!("pid={} case=helper-case", helper.pid)),
        "{holder}"
    );
    let err = locks
        .lock_wait("dk-a", "mine", Duration::from_millis(100))
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("pid={}", helper.pid)),
        "{err}"
    );
    // Another board is unaffected.
    assert!(locks.try_lock("dk-b", "mine").unwrap().is_some());
    helper.release();
    helper.child.wait().unwrap();
    assert!(locks.try_lock("dk-a", "mine").unwrap().is_some());
}

#[test]
fn a_crashed_holder_releases_its_board() {
    let dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(dir.path().to_path_buf());
    let mut helper = Helper::start(dir.path(), "dk-a");
    assert!(locks.try_lock("dk-a", "mine").unwrap().is_none());
    helper.crash(); // SIGKILL: no destructor runs; the kernel drops the flock.
    let lock = locks
        .try_lock("dk-a", "mine")
        .unwrap()
        .expect("free after the holder died");
    assert_eq!(lock.board_id(), "dk-a");
    assert!(locks.holder("dk-a").unwrap().contains("case=mine"));
}

#[test]
fn waiting_gets_the_board_as_soon_as_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(dir.path().to_path_buf());
    let mut helper = Helper::start(dir.path(), "dk-a");
    let start = Instant::now();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        helper.release();
        helper
    });
    let lock = locks
        .lock_wait("dk-a", "mine", Duration::from_secs(10))
        .unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(150), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    drop(lock);
    drop(releaser.join().unwrap());
}

#[test]
fn within_one_process_a_second_lock_on_the_same_board_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let locks = LockDir::new(dir.path().to_path_buf());
    let first = locks.try_lock("dk-a", "one").unwrap().unwrap();
    assert!(locks.try_lock("dk-a", "two").unwrap().is_none());
    drop(first);
    assert!(locks.try_lock("dk-a", "two").unwrap().is_some());
}

#[test]
fn lock_names_cannot_escape_the_lock_dir() {
    let locks = LockDir::new("/tmp/x".into());
    assert_eq!(
        locks.lock_path("../../etc/passwd"),
        Path::new("/tmp/x/_.._.._etc_passwd.lock")
    );
    assert_eq!(
        locks.lock_path(".hidden"),
        Path::new("/tmp/x/_.hidden.lock")
    );
}

const LAB: &str = r#"
[[board]]
id = "dk-a"
platform = "nrf52840dk_nrf52840"
probe = "1"
port = "/dev/ttyACM0"
profile = "ncs"
[[board]]
id = "dk-b"
platform = "nrf52840dk_nrf52840"
probe = "2"
port = "/dev/ttyACM1"
profile = "ncs"
tags = ["coaps-peer"]
[[board]]
id = "dk-c"
platform = "nrf52840dk_nrf52840"
probe = "3"
port = "/dev/ttyACM2"
profile = "ncs"
[[board]]
id = "up-d"
platform = "nrf52840dk_nrf52840"
probe = "4"
port = "/dev/ttyACM3"
profile = "upstream"
[[board]]
id = "sniffer"
platform = "nrf52840dongle_nrf52840"
port = "/dev/ttyACM4"
tags = ["sniffer"]
"#;

fn node(name: &str, profile: Option<Profile>, tags: &[&str]) -> NodeRequest {
    NodeRequest {
        node: name.into(),
        profile,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        platform: None,
    }
}

fn allocator(dir: &Path) -> Allocator {
    let map = HardwareMap::from_toml(LAB, Path::new("lab.toml")).unwrap();
    Allocator::new(map, LockDir::new(dir.to_path_buf()))
}

#[test]
fn allocator_matches_profile_and_tags_and_keeps_sniffers_for_who_asks() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = allocator(dir.path());
    let requests = [
        node("server", Some(Profile::Ncs), &["coaps-peer"]),
        node("client", Some(Profile::Ncs), &[]),
        node("air", None, &["sniffer"]),
    ];
    let a = alloc.allocate("case-1", &requests, Duration::ZERO).unwrap();
    assert_eq!(a.board_for("server").unwrap().id, "dk-b");
    assert_eq!(a.board_for("client").unwrap().id, "dk-a");
    assert_eq!(a.board_for("air").unwrap().id, "sniffer");

    // A second case in parallel gets the disjoint boards that are left.
    let b = alloc
        .allocate(
            "case-2",
            &[node("x", Some(Profile::Ncs), &[]), node("y", None, &[])],
            Duration::ZERO,
        )
        .unwrap();
    assert_eq!(b.board_for("x").unwrap().id, "dk-c");
    assert_eq!(
        b.board_for("y").unwrap().id,
        "up-d",
        "any profile, but never the sniffer"
    );

    // Nothing left: busy, naming the holders.
    let err = alloc
        .allocate(
            "case-3",
            &[node("z", Some(Profile::Ncs), &[])],
            Duration::from_millis(60),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LockError::Busy { .. }), "{text}");
    assert!(
        text.contains("dk-a (pid=") && text.contains("case=case-1"),
        "{text}"
    );
    drop(a);
    let c = alloc
        .allocate(
            "case-3",
            &[node("z", Some(Profile::Ncs), &[])],
            Duration::ZERO,
        )
        .unwrap();
    assert_eq!(c.board_for("z").unwrap().id, "dk-a");
}

#[test]
fn allocator_backtracks_instead_of_taking_the_only_board_a_later_node_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = allocator(dir.path());
    // "any" could take dk-b first; then "peer" would have nothing. The search must avoid that.
    let a = alloc
        .allocate(
            "c",
            &[
                node("any", Some(Profile::Ncs), &[]),
                node("peer", None, &["coaps-peer"]),
            ],
            Duration::ZERO,
        )
        .unwrap();
    assert_eq!(a.board_for("peer").unwrap().id, "dk-b");
    assert_ne!(a.board_for("any").unwrap().id, "dk-b");
    // The locks not chosen during the search were released.
    let locks = LockDir::new(dir.path().to_path_buf());
    let free: Vec<&str> = ["dk-a", "dk-c", "up-d", "sniffer"]
        .into_iter()
        .filter(|b| locks.try_lock(b, "probe").unwrap().is_some())
        .collect();
    assert_eq!(free.len(), 3, "{free:?}");
}

#[test]
fn impossible_requests_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = allocator(dir.path());
    let start = Instant::now();
    let err = alloc
        .allocate(
            "c",
            &[node("n", Some(Profile::Upstream), &["coaps-peer"])],
            Duration::from_secs(30),
        )
        .unwrap_err();
    assert!(matches!(err, LockError::NoMatchingBoard { .. }), "{err}");
    let err = alloc
        .allocate(
            "c",
            &[
                node("a", Some(Profile::Upstream), &[]),
                node("b", Some(Profile::Upstream), &[]),
            ],
            Duration::from_secs(30),
        )
        .unwrap_err();
    assert!(matches!(err, LockError::NotEnoughBoards { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn allocator_waits_for_a_board_held_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = allocator(dir.path());
    let mut helper = Helper::start(dir.path(), "dk-a,dk-b,dk-c");
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        helper.release();
        helper
    });
    let a = alloc
        .allocate(
            "mine",
            &[node("n", Some(Profile::Ncs), &["coaps-peer"])],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(a.board_for("n").unwrap().id, "dk-b");
    drop(releaser.join().unwrap());
}

#[test]
fn a_cancelled_wait_for_a_busy_board_ends_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = allocator(dir.path());
    let want = [node("z", Some(Profile::Ncs), &["coaps-peer"])];
    let _held = alloc.allocate("holder", &want, Duration::ZERO).unwrap();
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let setter = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            Instant::now()
        })
    };
    let started = Instant::now();
    let err = alloc
        .allocate_cancellable("waiter", &want, Duration::from_secs(600), &cancel)
        .unwrap_err();
    let ended = Instant::now();
    let cancelled_at = setter.join().unwrap();
    assert!(matches!(err, LockError::Cancelled), "{err}");
    assert!(
        ended.saturating_duration_since(cancelled_at) < Duration::from_millis(150),
        "the wait went on {:?} after the cancel (started {:?} ago)",
        ended.saturating_duration_since(cancelled_at),
        started.elapsed()
    );
}
