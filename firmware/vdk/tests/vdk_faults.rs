//! Injected faults on a running `ot-hil-vdk` process, seen from the runner's side of the PTY:
//! `hang` silences the console until `reset`, `crash` prints Zephyr's fatal error lines and
//! reboots, `close-console` makes the port fail and its link vanish while the process stays.

mod vdk_common;

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vdk_common::{Dk, short_tempdir, variant};

fn spawn(dir: &Path, firmware: &Path) -> Dk {
    Dk::spawn(dir, "dut", None, Some(firmware))
}

/// The NCS v2.2.0 sample (minimal logging, errors only) with `extra` Kconfig lines after it.
fn logging_variant(dir: &Path, extra: &str) -> PathBuf {
    let base = std::fs::read_to_string(variant("ncs-v2.2.0.conf")).unwrap();
    std::fs::write(dir.join("v.conf"), format!("{base}\n{extra}\n")).unwrap();
    let manifest = dir.join("v.toml");
    std::fs::write(
        &manifest,
        "name = \"v\"\napplication = \"thread-cli\"\nprofile = \"ncs\"\n\
         banner = [\"*** Booting Zephyr OS build v3.2.99-ncs1 ***\"]\nkconfig = [\"v.conf\"]\n",
    )
    .unwrap();
    manifest
}

const BANNER: &str = "*** Booting Zephyr OS build";
const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(10);

#[test]
fn hang_silences_the_board_until_reset() {
    let dir = short_tempdir();
    let mut b = spawn(dir.path(), &variant("ncs-v2.2.0.toml"));
    b.wait_for("uart:~$ ", LONG).unwrap();
    b.write(b"ot state\r");
    b.wait_for("Done", LONG).unwrap();
    assert_eq!(b.control("hang"), "ok");
    b.write(b"ot state\r");
    let quiet = b.wait_for("ot state", SHORT);
    assert!(quiet.is_err(), "a hung board echoed");
    // Only the tail of the prompt printed before the hang may arrive.
    let after = quiet.unwrap_err();
    assert!(!after.contains("Done"), "a hung board answered: {after:?}");
    assert_eq!(b.control("reset"), "ok");
    b.wait_for(BANNER, LONG).unwrap();
    b.wait_for("uart:~$ ", LONG).unwrap();
    b.write(b"ot state\r");
    b.wait_for("Done", LONG).unwrap();
}

/// The sample logs through printk in minimal mode: `E: ` lines, no timestamp or module.
#[test]
fn crash_prints_the_zephyr_fatal_error_and_reboots() {
    let dir = short_tempdir();
    let mut b = spawn(dir.path(), &variant("ncs-v2.2.0.toml"));
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert_eq!(b.control("crash 3"), "ok");
    b.wait_for("E: >>> ZEPHYR FATAL ERROR 3: Kernel oops on CPU 0\n", LONG)
        .unwrap();
    b.wait_for("E: Resetting system\n", LONG).unwrap();
    b.wait_for(BANNER, LONG).unwrap();
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert!(b.control("crash x").starts_with("error "));
}

#[test]
fn crash_in_deferred_log_mode_has_timestamp_level_and_module() {
    let dir = short_tempdir();
    let manifest = logging_variant(dir.path(), "CONFIG_LOG_MODE_MINIMAL=n");
    let mut b = spawn(dir.path(), &manifest);
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert_eq!(b.control("crash 3"), "ok");
    let seen = b
        .wait_for("<err> fatal_error: Resetting system", LONG)
        .unwrap();
    assert!(
        seen.contains("] <err> os: >>> ZEPHYR FATAL ERROR 3: Kernel oops on CPU 0"),
        "{seen:?}"
    );
    b.wait_for(BANNER, LONG).unwrap();
}

#[test]
fn crash_with_errors_compiled_out_prints_nothing_and_reboots() {
    let dir = short_tempdir();
    let manifest = logging_variant(dir.path(), "CONFIG_LOG_MAX_LEVEL=0");
    let mut b = spawn(dir.path(), &manifest);
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert_eq!(b.control("crash 3"), "ok");
    let seen = b.wait_for(BANNER, LONG).unwrap();
    assert!(!seen.contains("FATAL"), "{seen:?}");
}

#[test]
fn crash_without_reset_on_fatal_error_halts() {
    let dir = short_tempdir();
    let manifest = logging_variant(dir.path(), "CONFIG_RESET_ON_FATAL_ERROR=n");
    let mut b = spawn(dir.path(), &manifest);
    b.wait_for("uart:~$ ", LONG).unwrap();
    // Both symbols are modelled, so neither is reported as ignored.
    assert_eq!(b.control("warnings"), "ok 0");
    assert_eq!(b.control("crash"), "ok");
    b.wait_for("ZEPHYR FATAL ERROR 0: CPU exception on CPU 0", LONG)
        .unwrap();
    b.wait_for("Halting system", LONG).unwrap();
    b.write(b"ot state\r");
    assert!(
        b.wait_for("ot state", SHORT).is_err(),
        "a halted board echoed"
    );
}

#[test]
fn close_console_makes_the_port_fail_and_vanish() {
    let dir = short_tempdir();
    let mut b = spawn(dir.path(), &variant("ncs-v2.2.0.toml"));
    b.wait_for("uart:~$ ", LONG).unwrap();
    assert_eq!(b.control("close-console"), "ok");
    // The runner's side: reads end with an error (EIO on a PTY whose master is gone).
    let deadline = Instant::now() + LONG;
    let mut buf = [0u8; 64];
    loop {
        match b.port.as_mut().expect("console open").read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::TimedOut => {}
            Err(_) => break,
        }
        assert!(Instant::now() < deadline, "the port still works");
    }
    assert!(!b.link.exists(), "the link is still there");
    // The process stays, its probe still answers.
    assert!(b.child.try_wait().unwrap().is_none(), "the process exited");
    assert!(b.control("image-hash").starts_with("ok "));
}
