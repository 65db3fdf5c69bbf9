//! The `ot-hil-vdk` binary driven the way the runner drives a real board: over a PTY opened with
//! the `serialport` crate, flashed and reset through the control socket, with the radio on an
//! air hub. Everything runs on Unix sockets and PTYs in a temporary directory.

mod vdk_common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ot_hil_air::Hub;
use vdk_common::{Dk, open_port, short_tempdir, variant};

#[test]
fn console_over_pty_and_virtual_probe() {
    let dir = short_tempdir();
    let mut dk = Dk::spawn(dir.path(), "a", None, None);
    // Blank chip: nothing on the console, no image.
    assert_eq!(dk.control("image-hash"), "ok none");
    let manifest = variant("ncs-v2.2.0.toml");
    let reply = dk.control(&format!("flash {}", manifest.display()));
    let hash = ot_hil_vdk::firmware::Manifest::load(&manifest)
        .unwrap()
        .image_hash();
    assert_eq!(reply, format!("ok {hash}"));
    dk.expect(
        "*** Booting Zephyr OS build v3.2.99-ncs1 ***\n\n\nuart:~$ ",
        Duration::from_secs(5),
    );
    assert_eq!(dk.command("ot state"), vec!["disabled"]);
    assert_eq!(dk.command("ot channel"), vec!["11"]);
    assert_eq!(dk.command("ot panid"), vec!["0xabcd"]);
    assert_eq!(dk.command("ot networkname"), vec!["ot_zephyr"]);
    assert_eq!(dk.command("ot extaddr")[0].len(), 16);
    dk.write(b"ot bogus\r");
    dk.expect(
        "ot bogus\nError 35: InvalidCommand\nuart:~$ ",
        Duration::from_secs(5),
    );
    dk.write(b"frob\r");
    dk.expect("frob: command not found\nuart:~$ ", Duration::from_secs(5));
    // Binary garbage and an overlong line do not kill the board.
    let garbage: Vec<u8> = (0u8..=255)
        .filter(|b| *b != b'\r' && *b != b'\n')
        .cycle()
        .take(3000)
        .collect();
    dk.write(&garbage);
    dk.write(b"\x03");
    dk.write(format!("ot {}\r", "y".repeat(2000)).as_bytes());
    dk.expect("Error 35: InvalidCommand\nuart:~$ ", Duration::from_secs(5));
    assert_eq!(dk.command("ot state"), vec!["disabled"]);
    // Reset through the probe: banner again.
    assert_eq!(dk.control("reset"), "ok");
    dk.expect(
        "*** Booting Zephyr OS build v3.2.99-ncs1 ***",
        Duration::from_secs(5),
    );
    assert_eq!(dk.control("image-hash"), format!("ok {hash}"));
    // Flash the upstream flavour: `> ` prompt and no prefix.
    assert!(
        dk.control(&format!("flash {}", variant("upstream.toml").display()))
            .starts_with("ok ")
    );
    dk.expect("> ", Duration::from_secs(5));
    assert_eq!(dk.command("state"), vec!["disabled"]);
    assert!(
        dk.control("flash /no/such/manifest.toml")
            .starts_with("error ")
    );
}

#[test]
fn overlong_control_request_is_refused_and_the_connection_goes_on() {
    let dir = short_tempdir();
    let dk = Dk::spawn(dir.path(), "l", None, None);
    let mut s = UnixStream::connect(&dk.control).expect("connect control socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Far more than one request may be; the board skips it without keeping it.
    let junk = vec![b'x'; 64 << 20];
    s.write_all(&junk).unwrap();
    s.write_all(b"\nimage-hash\n").unwrap();
    let mut replies = BufReader::new(s).lines();
    assert_eq!(replies.next().unwrap().unwrap(), "error request too long");
    assert_eq!(replies.next().unwrap().unwrap(), "ok none");
    let peak = dk.status_kb("VmHWM");
    assert!(peak > 0 && peak < 32 * 1024, "peak VmRSS {peak} kB");
}

#[test]
fn console_can_be_closed_and_reopened() {
    let dir = short_tempdir();
    let mut dk = Dk::spawn(dir.path(), "r", None, Some(&variant("ncs-v2.1.0.toml")));
    dk.expect(
        "*** Booting Zephyr OS build v3.1.99-ncs1 ***",
        Duration::from_secs(5),
    );
    assert_eq!(dk.command("ot state"), vec!["disabled"]);
    // Close the console; what the board prints meanwhile waits in the PTY. Opening again works
    // (exclusive mode is released on close), as between two test cases.
    dk.port = None;
    assert_eq!(dk.control("reset"), "ok");
    dk.port = Some(open_port(&dk.link));
    dk.expect(
        "*** Booting Zephyr OS build v3.1.99-ncs1 ***",
        Duration::from_secs(5),
    );
    assert_eq!(dk.command("ot channel"), vec!["11"]);
}

#[test]
fn console_round_trip_and_idle_rss() {
    let dir = short_tempdir();
    let hub = Hub::start(dir.path()).expect("hub");
    let mut dk = Dk::spawn(
        dir.path(),
        "m",
        Some(hub.socket_path()),
        Some(&variant("ncs-v2.2.0.toml")),
    );
    dk.expect("uart:~$ ", Duration::from_secs(5));
    // Warm up, then time `ot state` -> `Done` + prompt, the loop a test case runs.
    for _ in 0..20 {
        dk.command("ot state");
    }
    let rounds = 200;
    let start = Instant::now();
    for _ in 0..rounds {
        dk.write(b"ot state\r");
        dk.expect("disabled\nDone\nuart:~$ ", Duration::from_secs(5));
    }
    let per = start.elapsed() / rounds;
    let rss = dk.rss_kb();
    eprintln!(
        "vdk: `ot state` round trip over the pty: {:.3} ms; idle VmRSS {} kB",
        per.as_secs_f64() * 1000.0,
        rss
    );
    assert!(per < Duration::from_millis(20), "round trip {per:?}");
    assert!(rss > 0 && rss < 20 * 1024, "VmRSS {rss} kB");
}

#[test]
fn two_boards_form_a_network_ping_and_coap() {
    let dir = short_tempdir();
    let hub = Hub::start(dir.path()).expect("hub");
    let fw = variant("ncs-v2.2.0.toml");
    let mut a = Dk::spawn(dir.path(), "a", Some(hub.socket_path()), Some(&fw));
    let mut b = Dk::spawn(dir.path(), "b", Some(hub.socket_path()), Some(&fw));
    for dk in [&mut a, &mut b] {
        dk.expect("uart:~$ ", Duration::from_secs(5));
        // The report's steps.
        for cmd in [
            "ot channel 15",
            "ot panid 0x1234",
            "ot networkkey 00112233445566778899aabbccddeeff",
            "ot ifconfig up",
        ] {
            assert!(dk.command(cmd).is_empty(), "{cmd}");
        }
    }
    assert!(a.command("ot thread start").is_empty());
    a.wait_role("ot state", &["leader"], Duration::from_secs(20));
    assert!(b.command("ot thread start").is_empty());
    b.wait_role("ot state", &["child", "router"], Duration::from_secs(20));

    let a_ml_eid = a.command("ot ipaddr mleid").join("");
    let b_ml_eid = b.command("ot ipaddr mleid").join("");
    let a_addrs = a.command("ot ipaddr");
    assert!(
        a_addrs.contains(&a_ml_eid) && a_addrs.len() >= 3,
        "{a_addrs:?}"
    );

    // Ping: reply line, statistics, Done (asynchronous lines around a redrawn prompt).
    b.write(format!("ot ping {a_ml_eid}\r").as_bytes());
    b.expect(
        &format!("16 bytes from {a_ml_eid}: icmp_seq="),
        Duration::from_secs(10),
    );
    b.expect(" hlim=64 time=", Duration::from_secs(5));
    b.expect(
        "1 packets transmitted, 1 packets received. Packet loss = 0.0%. Round-trip min/avg/max = ",
        Duration::from_secs(10),
    );
    b.expect("Done\n", Duration::from_secs(5));

    // CoAP GET, confirmable, against a resource with content.
    assert!(a.command("ot coap start").is_empty());
    assert!(a.command("ot coap resource test-resource").is_empty());
    assert!(a.command("ot coap set hello").is_empty());
    assert!(b.command("ot coap start").is_empty());
    assert!(
        b.command(&format!("ot coap get {a_ml_eid} test-resource con"))
            .is_empty()
    );
    a.expect(
        &format!("coap request from {b_ml_eid} GET\n"),
        Duration::from_secs(10),
    );
    a.expect("coap response sent\n", Duration::from_secs(5));
    b.expect(
        &format!("coap response from {a_ml_eid} with payload: 68656c6c6f\n"),
        Duration::from_secs(10),
    );
    // NON PUT with a payload: the server prints it, the client registered no handler.
    assert!(
        b.command(&format!("ot coap put {a_ml_eid} test-resource non abc"))
            .is_empty()
    );
    a.expect(
        &format!("coap request from {b_ml_eid} PUT with payload: 616263\n"),
        Duration::from_secs(10),
    );
}

/// CPU time (user + system) of a process in clock ticks, from /proc/<pid>/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

#[test]
fn thirty_two_boards_on_one_air() {
    let dir = short_tempdir();
    let hub = Hub::start(dir.path()).expect("hub");
    let fw = variant("ncs-v2.2.0.toml");
    let mut boards: Vec<Dk> = (0..32)
        .map(|i| {
            Dk::spawn(
                dir.path(),
                &format!("d{i}"),
                Some(hub.socket_path()),
                Some(&fw),
            )
        })
        .collect();
    for dk in boards.iter_mut() {
        dk.expect("uart:~$ ", Duration::from_secs(10));
        assert_eq!(dk.command("ot state"), vec!["disabled"]);
    }
    // All of them on one network: the first forms it, the others attach.
    for dk in boards.iter_mut() {
        for cmd in [
            "ot channel 20",
            "ot networkkey 00112233445566778899aabbccddeeff",
            "ot ifconfig up",
        ] {
            dk.command(cmd);
        }
    }
    let forming = Instant::now();
    boards[0].command("ot thread start");
    boards[0].wait_role("ot state", &["leader"], Duration::from_secs(20));
    // One at a time: the model's discovery window is 200 ms of the host's clock (OpenThread's is
    // 2 s), which 31 boards starting at once on a loaded 2-core host can miss, and a node that
    // misses it leads its own partition. Attaching is what this test needs, not a race.
    for dk in boards.iter_mut().skip(1) {
        dk.command("ot thread start");
        dk.wait_role("ot state", &["child", "router"], Duration::from_secs(30));
    }
    let attached = forming.elapsed();
    // Idle cost: CPU ticks over a quiet second, and resident memory.
    let before: u64 = boards.iter().map(|d| cpu_ticks(d.child.id())).sum();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let after: u64 = boards.iter().map(|d| cpu_ticks(d.child.id())).sum();
    let rss: u64 = boards.iter().map(|d| d.rss_kb()).sum();
    // USER_HZ: /proc reports CPU time in 1/100 s on Linux.
    let ticks_per_s = 100.0;
    let cpu = (after - before) as f64 / ticks_per_s / start.elapsed().as_secs_f64();
    eprintln!(
        "vdk: 32 boards attached {:.1} s after the first thread start: total VmRSS {} kB ({} kB each), idle CPU {:.1}% of one core",
        attached.as_secs_f64(),
        rss,
        rss / 32,
        cpu * 100.0
    );
    assert!(
        cpu < 0.5,
        "32 idle boards use {:.0}% of a core",
        cpu * 100.0
    );
    // Every board still answers promptly.
    for dk in boards.iter_mut() {
        assert!(!dk.command("ot rloc16").is_empty());
    }
}

/// Non-volatile settings of a virtual DK: the committed dataset survives the probe's reset and
/// `kernel reboot`, and is gone after `ot factoryreset` and after flashing.
#[test]
fn dataset_survives_reset_and_reboot_and_goes_with_factoryreset_and_flash() {
    let dir = short_tempdir();
    let manifest = variant("ncs-v2.2.0.toml");
    let mut dk = Dk::spawn(dir.path(), "s", None, Some(&manifest));
    let banner = "*** Booting Zephyr OS build v3.2.99-ncs1 ***";
    dk.expect("uart:~$ ", Duration::from_secs(5));
    assert_eq!(dk.run("ot dataset active").1, "Error 23: NotFound");
    dk.command("ot dataset init new");
    dk.command("ot dataset channel 19");
    dk.command("ot dataset networkname persisted");
    dk.command("ot dataset commit active");
    let committed = dk.command("ot dataset active -x");
    // The probe's reset (what the runner and a board fault `reset` do).
    assert_eq!(dk.control("reset"), "ok");
    dk.expect(banner, Duration::from_secs(5));
    assert_eq!(dk.command("ot dataset active -x"), committed);
    assert_eq!(dk.command("ot channel"), vec!["19"]);
    // The shell's reboot.
    dk.write(b"kernel reboot cold\r");
    dk.expect(banner, Duration::from_secs(5));
    assert_eq!(dk.command("ot networkname"), vec!["persisted"]);
    // OpenThread's factory reset erases the settings and reboots.
    dk.write(b"ot factoryreset\r");
    dk.expect(banner, Duration::from_secs(5));
    assert_eq!(dk.run("ot dataset active").1, "Error 23: NotFound");
    assert_eq!(dk.command("ot channel"), vec!["11"]);
    assert_eq!(dk.command("ot networkname"), vec!["ot_zephyr"]);
    // Flashing erases them too.
    dk.command("ot dataset init new");
    dk.command("ot dataset commit active");
    assert!(
        dk.control(&format!("flash {}", manifest.display()))
            .starts_with("ok ")
    );
    dk.expect(banner, Duration::from_secs(5));
    assert_eq!(dk.run("ot dataset active").1, "Error 23: NotFound");
}

/// `--parent PID`: the board dies with the process that started it (the runner passes its own
/// pid and spawns boards without a hook between fork and exec), and a board whose `PID` is not
/// its parent, because that one is already gone, exits at once instead of living on.
#[test]
fn a_board_dies_with_the_parent_it_names() {
    let dir = short_tempdir();
    let link = dir.path().join("orphan.pty");
    let mut orphan = std::process::Command::new(vdk_common::exe())
        .args(["--no-air", "--parent", "1", "--pty-link"])
        .arg(&link)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = orphan.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            orphan.kill().unwrap();
            panic!("a board naming a parent it does not have kept running");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(137), "not its parent: exit at once");
    assert!(!link.exists(), "it exits before it makes its console");

    // A shell starts the board naming itself, waits for its console, and exits.
    let link = dir.path().join("child.pty");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            r#""$0" --no-air --pty-link "$1" --parent $$ >/dev/null 2>&1 & echo $!
               while [ ! -e "$1" ]; do sleep 0.01; done"#,
        )
        .arg(vdk_common::exe())
        .arg(&link)
        .output()
        .unwrap();
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("board {pid} outlived the shell that started it");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn one_thread_serves_every_input_and_an_idle_client_blocks_no_one() {
    let dir = short_tempdir();
    let hub = Hub::start(dir.path()).unwrap();
    let mut dk = Dk::spawn(
        dir.path(),
        "s",
        Some(hub.socket_path()),
        Some(&variant("ncs-v2.2.0.toml")),
    );
    // The firmware's single thread: console, radio, control socket and signals are all
    // waited on by the main loop.
    let threads = std::fs::read_dir(format!("/proc/{}/task", dk.child.id()))
        .unwrap()
        .count();
    assert_eq!(threads, 1, "threads of the board");
    // A client that connects and says nothing (or half a line) holds no one up.
    let mut idle = UnixStream::connect(&dk.control).unwrap();
    idle.write_all(b"image-").unwrap();
    let started = Instant::now();
    assert!(dk.control("image-hash").starts_with("ok "));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(dk.command("ot state"), vec!["disabled"]);
    // The idle client's last request, ended by closing its side instead of a newline, is
    // still answered.
    idle.write_all(b"hash").unwrap();
    idle.shutdown(std::net::Shutdown::Write).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    BufReader::new(idle).read_line(&mut reply).unwrap();
    assert!(reply.starts_with("ok "), "{reply:?}");
}

#[test]
fn a_console_nobody_reads_never_stalls_the_board() {
    let dir = short_tempdir();
    let mut dk = Dk::spawn(dir.path(), "q", None, Some(&variant("ncs-v2.2.0.toml")));
    dk.expect("uart:~$ ", Duration::from_secs(5));
    // Type commands and read nothing back: their output fills the PTY, then the board's
    // queue, then is dropped; the board keeps answering its control socket all along.
    let line = b"ot ipaddr\r".repeat(400);
    for _ in 0..20 {
        dk.write(&line);
        assert_eq!(dk.control("image-hash").len(), "ok ".len() + 64);
    }
    let peak = dk.status_kb("VmHWM");
    assert!(peak > 0 && peak < 32 * 1024, "peak VmRSS {peak} kB");
}

#[test]
fn a_stdio_board_whose_output_nobody_reads_still_ends_on_sigterm() {
    use std::os::fd::AsFd;
    use std::process::{Command, Stdio};
    let (never_read, stdout) = std::io::pipe().unwrap();
    let mut child = Command::new(vdk_common::exe())
        .args(["--stdio", "--no-air", "--firmware"])
        .arg(variant("ncs-v2.2.0.toml"))
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Far more output than the pipe holds, and typed without waiting: the board must not block
    // on it (nor we on its input).
    let stdin = child.stdin.take().unwrap();
    nix::fcntl::fcntl(
        stdin.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let line = b"ot ipaddr\r".repeat(50);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        let _ = (&stdin).write(&line);
        std::thread::sleep(Duration::from_millis(5));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(never_read);
    assert!(status.is_some(), "SIGTERM ignored while stdout is full");
}

/// Clients of the control socket beyond the board's limit wait in the backlog until one closes,
/// and a board out of descriptors does not spin on its listener: it takes the waiting client
/// once it can (here after the limit is raised and the console gives it an input).
#[test]
fn control_clients_are_bounded_and_a_full_descriptor_table_does_not_spin() {
    let dir = short_tempdir();
    let mut dk = Dk::spawn(dir.path(), "c", None, None);
    let pid = dk.child.id();
    let descriptors = || -> Vec<(u32, String)> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some((
                    e.file_name().to_str()?.parse().ok()?,
                    target.display().to_string(),
                ))
            })
            .collect()
    };
    let sockets = || {
        descriptors()
            .iter()
            .filter(|(_, t)| t.starts_with("socket:"))
            .count()
    };
    let idle_sockets = sockets();
    let ask = |s: &mut UnixStream| s.write_all(b"image-hash\n").unwrap();
    let reply = |s: &UnixStream, wait: Duration| {
        s.set_read_timeout(Some(wait)).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).map(|_| line)
    };
    let mut clients: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&dk.control).expect("connect control socket"))
        .collect();
    for c in &mut clients {
        ask(c);
    }
    for c in &clients[..32] {
        assert_eq!(reply(c, Duration::from_secs(10)).unwrap(), "ok none\n");
    }
    for c in &clients[32..] {
        assert!(
            reply(c, Duration::from_millis(200)).is_err(),
            "more than 32 clients served at once"
        );
    }
    clients.drain(..8);
    for c in &clients[24..] {
        assert_eq!(reply(c, Duration::from_secs(10)).unwrap(), "ok none\n");
    }
    drop(clients);

    // No descriptor left for the board: its lowest free number becomes its limit.
    let prlimit = |limit: &str| {
        let status = std::process::Command::new("prlimit")
            .arg("--pid")
            .arg(pid.to_string())
            .arg(format!("--nofile={limit}"))
            .status()
            .expect("run prlimit");
        assert!(status.success(), "prlimit {limit}");
    };
    let original = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            let v: Vec<&str> = l.split_whitespace().collect();
            format!("{}:{}", v[3], v[4])
        })
        .unwrap();
    // The board has closed the clients above once it holds no more sockets than when idle.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sockets() > idle_sockets {
        assert!(Instant::now() < deadline, "the board kept closed clients");
        std::thread::sleep(Duration::from_millis(5));
    }
    let open: Vec<u32> = descriptors().into_iter().map(|(n, _)| n).collect();
    let lowest_free = (0..).find(|n| !open.contains(n)).unwrap();
    let hard = original.split(':').nth(1).unwrap();
    prlimit(&format!("{lowest_free}:{hard}"));
    let mut starved = UnixStream::connect(&dk.control).expect("connect control socket");
    ask(&mut starved);
    let before = cpu_ticks(pid);
    assert!(reply(&starved, Duration::from_secs(1)).is_err());
    let spent = cpu_ticks(pid) - before;
    assert!(
        spent < 20,
        "the board spun for {spent} ticks on its listener"
    );
    // Descriptors again, and an input: the waiting client is answered.
    prlimit(&original);
    dk.write(b"\r");
    assert_eq!(
        reply(&starved, Duration::from_secs(10)).unwrap(),
        "ok none\n"
    );
}
