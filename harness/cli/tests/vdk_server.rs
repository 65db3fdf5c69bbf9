//! Virtual DKs forked by `ot-hil vdk-server` (what `ot-hil run` does): they show their own
//! command line, are killed with their group, report an early exit through their pidfd, and
//! leave with the server; without a server, boards are executed.

use std::path::Path;
use std::time::{Duration, Instant};

use ot_hil::virtual_lab::{VdkCommand, VirtualBoardError, VirtualDk};

const EXE: &str = env!("CARGO_BIN_EXE_ot-hil");

fn alive(pid: u32) -> bool {
    // A zombie has exited; only the server can reap it.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn command_line(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn gone_within(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The server that forked `dk`.
fn server_of(dk: &VirtualDk) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(parent_of(dk.pid().unwrap()).unwrap() as i32)
}

async fn board(vdk: &VdkCommand, dir: &Path, hub: &Path, name: &str) -> VirtualDk {
    VirtualDk::spawn(
        vdk,
        hub,
        dir,
        name,
        Some(&dir.join(format!("{name}.log"))),
        None,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_board_shows_its_command_line_and_leaves_with_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = ot_hil_air::Hub::start(tmp.path()).unwrap();
    let vdk = VdkCommand::ot_hil(EXE.into());
    let a = board(&vdk, tmp.path(), hub.socket_path(), "a").await;
    let b = board(&vdk, tmp.path(), hub.socket_path(), "b").await;
    let (pa, pb) = (a.pid().unwrap(), b.pid().unwrap());
    let server = parent_of(pa).unwrap();
    assert_eq!(parent_of(pb), Some(server), "one server forks both");
    assert_ne!(server, std::process::id());
    assert_eq!(parent_of(server), Some(std::process::id()));
    // `ps` shows what each process is.
    let server_line = command_line(server);
    assert_eq!(
        server_line[1..3],
        ["vdk-server", "--parent"],
        "{server_line:?}"
    );
    let line = command_line(pa);
    assert_eq!(line[1], "vdk", "{line:?}");
    let link = tmp.path().join("a.tty").display().to_string();
    assert!(line.contains(&link), "{line:?}");
    // Each leads its own process group, as an executed board does.
    let group = |pid: u32| nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)));
    assert_eq!(group(pa).unwrap().as_raw() as u32, pa);
    // A board dropped is killed; the other runs on.
    drop(a);
    assert!(gone_within(pa, Duration::from_secs(5)), "board a survived");
    assert!(alive(pb));
    // The server outlives the command while a board still needs it, and leaves after the last.
    drop(vdk);
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(server) && alive(pb));
    b.stop().await;
    assert!(gone_within(pb, Duration::from_secs(5)), "board b survived");
    assert!(
        gone_within(server, Duration::from_secs(5)),
        "the server survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_that_cannot_start_is_reported_with_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let vdk = VdkCommand::ot_hil(EXE.into());
    // No hub at this path: the board cannot attach its radio and exits.
    let missing = tmp.path().join("no-hub.sock");
    let log = tmp.path().join("dut.log");
    let err = VirtualDk::spawn(&vdk, &missing, tmp.path(), "dut", Some(&log), None)
        .await
        .err()
        .expect("a board without an air");
    // Seen through the pidfd of a forked board (an executed one names its exit status).
    assert!(
        matches!(&err, VirtualBoardError::Exited { status, .. } if status.contains("vdk-server")),
        "{err}: {err:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("failed to attach to the air hub") && text.contains("no-hub.sock"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boards_die_with_the_server_and_the_next_ones_are_executed() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = ot_hil_air::Hub::start(tmp.path()).unwrap();
    let vdk = VdkCommand::ot_hil(EXE.into());
    let a = board(&vdk, tmp.path(), hub.socket_path(), "a").await;
    let pa = a.pid().unwrap();
    nix::sys::signal::kill(server_of(&a), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(
        gone_within(pa, Duration::from_secs(5)),
        "the board outlived its server"
    );
    // The run goes on without its server: the next board is executed, a child of this process.
    let b = board(&vdk, tmp.path(), hub.socket_path(), "b").await;
    let pb = b.pid().unwrap();
    assert_eq!(parent_of(pb), Some(std::process::id()));
    assert!(alive(pb));
    drop(b);
    assert!(gone_within(pb, Duration::from_secs(5)), "board b survived");
}

#[test]
fn the_server_answers_requests_that_are_not_boards_and_leaves_when_its_socket_closes() {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use ot_hil_board::launch::{self, LaunchReply, LaunchRequest};
    use std::os::fd::AsFd;
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    let mut server = std::process::Command::new(EXE)
        .args(["vdk-server", "--parent", &std::process::id().to_string()])
        .stdin(std::process::Stdio::from(theirs))
        .spawn()
        .unwrap();
    let ask = |bytes: &[u8], log: Option<&std::fs::File>| {
        launch::send(ours.as_fd(), bytes, log.map(|f| f.as_fd())).unwrap();
        let (reply, pidfd) = launch::recv(ours.as_fd()).unwrap();
        (LaunchReply::parse(&reply).unwrap(), pidfd)
    };
    // Not a request: refused, and the server goes on.
    let (reply, pidfd) = ask(b"--air\0/tmp/x", None);
    assert!(
        matches!(&reply, LaunchReply::Failed(m) if m.contains("NUL")),
        "{reply:?}"
    );
    assert!(pidfd.is_none());
    // Options a board does not take: the board starts, says why in its log and exits.
    let log_path = tmp.path().join("dut.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let request = LaunchRequest {
        args: vec!["--no-such-option".into()],
    };
    let (reply, pidfd) = ask(&request.emit(), Some(&log));
    let LaunchReply::Started { pid } = reply else {
        panic!("{reply:?}")
    };
    assert!(pidfd.is_some(), "a pidfd comes with the pid");
    assert!(gone_within(pid, Duration::from_secs(5)));
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("--no-such-option"), "{text}");
    // The runner closes its end: the server exits.
    drop(ours);
    let start = Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "server still runs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_working_server_boards_are_executed() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = ot_hil_air::Hub::start(tmp.path()).unwrap();
    // A "server" that exits at once, as one on a kernel without pidfds does.
    let vdk = VdkCommand {
        fork_server: Some(ot_hil::vdk_server::VdkServer::new("/bin/false".into())),
        ..VdkCommand::ot_hil(EXE.into())
    };
    let a = board(&vdk, tmp.path(), hub.socket_path(), "a").await;
    let b = board(&vdk, tmp.path(), hub.socket_path(), "b").await;
    for dk in [&a, &b] {
        let pid = dk.pid().unwrap();
        assert_eq!(parent_of(pid), Some(std::process::id()), "executed by us");
        assert!(alive(pid));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_server_never_answers_fails_that_board_only() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = ot_hil_air::Hub::start(tmp.path()).unwrap();
    let vdk = VdkCommand::ot_hil(EXE.into());
    let a = board(&vdk, tmp.path(), hub.socket_path(), "a").await;
    let pa = a.pid().unwrap();
    let server = server_of(&a);
    nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGSTOP).unwrap();
    // The request is sent and never answered (10 s): that board fails, and is not executed
    // instead (the server may yet start it).
    let err = VirtualDk::spawn(&vdk, hub.socket_path(), tmp.path(), "b", None, None)
        .await
        .err()
        .expect("no answer, no board");
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(!tmp.path().join("b.tty").exists());
    // The server is not asked again: the next board is executed. The first board runs on.
    let c = board(&vdk, tmp.path(), hub.socket_path(), "c").await;
    assert_eq!(parent_of(c.pid().unwrap()), Some(std::process::id()));
    assert!(alive(pa));
    nix::sys::signal::kill(server, nix::sys::signal::Signal::SIGCONT).unwrap();
}

/// The live children of `server` other than `wanted`, once there are none or after 5 s.
fn strays(server: u32, wanted: &[u32]) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let others: Vec<u32> = children_of(server)
            .into_iter()
            .filter(|pid| !wanted.contains(pid) && alive(*pid))
            .collect();
        if others.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return others;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids of the processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(parent))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boards_asked_for_together_each_get_their_own_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = ot_hil_air::Hub::start(tmp.path()).unwrap();
    let vdk = VdkCommand::ot_hil(EXE.into());
    // Every request is sent before any answer is read: the answers come back in order and
    // each goes to the board that asked.
    let names = ["p0", "p1", "p2", "p3", "p4", "p5"];
    let mut dks: Vec<VirtualDk> = names
        .iter()
        .map(|name| VirtualDk::start(&vdk, hub.socket_path(), tmp.path(), name, None, None))
        .collect::<Result<_, _>>()
        .unwrap();
    for dk in dks.iter_mut().rev() {
        dk.ready().await.unwrap();
    }
    for (dk, name) in dks.iter().zip(names) {
        let pid = dk.pid().unwrap();
        let link = tmp.path().join(format!("{name}.tty"));
        assert!(
            command_line(pid).contains(&link.display().to_string()),
            "{name}: {:?}",
            command_line(pid)
        );
        assert!(alive(pid));
    }
    let server = server_of(&dks[0]);
    assert!(dks.iter().all(|dk| server_of(dk) == server), "one server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_asked_for_and_given_up_on_is_killed_when_it_comes() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = ot_hil_air::Hub::start(tmp.path()).unwrap();
    let vdk = VdkCommand::ot_hil(EXE.into());
    let kept = board(&vdk, tmp.path(), hub.socket_path(), "kept").await;
    let server = server_of(&kept).as_raw() as u32;
    // Asked for, then dropped before the answer is read (an aborted case).
    let abandoned =
        VirtualDk::start(&vdk, hub.socket_path(), tmp.path(), "abandoned", None, None).unwrap();
    drop(abandoned);
    // Answers come in order: once the next board is up, the abandoned one has been answered.
    let after = board(&vdk, tmp.path(), hub.socket_path(), "after").await;
    let others = strays(server, &[kept.pid().unwrap(), after.pid().unwrap()]);
    assert!(
        others.is_empty(),
        "a board nobody waits for runs on: {others:?}"
    );
    assert!(alive(kept.pid().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_answered_and_then_given_up_on_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = ot_hil_air::Hub::start(tmp.path()).unwrap();
    let vdk = VdkCommand::ot_hil(EXE.into());
    let kept = board(&vdk, tmp.path(), hub.socket_path(), "kept").await;
    let server = server_of(&kept).as_raw() as u32;
    // Asked for, answered (the answer waits for whoever asked), then dropped unread.
    let answered =
        VirtualDk::start(&vdk, hub.socket_path(), tmp.path(), "answered", None, None).unwrap();
    let link = tmp.path().join("answered.tty");
    let start = Instant::now();
    while !link.exists() && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(link.exists(), "the board came up");
    drop(answered);
    let others = strays(server, &[kept.pid().unwrap()]);
    assert!(
        others.is_empty(),
        "a board nobody waits for runs on: {others:?}"
    );
}
