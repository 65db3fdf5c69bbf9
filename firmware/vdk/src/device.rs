//! The board: firmware image, "NVM" settings, the running application (shell + OpenThread CLI +
//! Thread stack), and the single-threaded main loop that feeds it.
//!
//! [`Board`] has no I/O of its own: it consumes console bytes, control requests and timer ticks
//! and produces console bytes, so tests drive it directly. [`run_loop`] connects it to the
//! reader threads through one mpsc channel and sleeps until the next input or stack deadline.

use std::net::Ipv6Addr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::cli::{self, Cli, Context, Outcome};
use crate::console::Console;
use crate::control::ControlRequest;
use crate::firmware::{Application, Manifest, Profile};
use crate::net::{ActiveDataset, NetEvent, Role, Stack};
use crate::shell::{self, Shell, ShellConfig};

/// Everything the main loop waits for.
#[derive(Debug)]
pub enum Input {
    /// Bytes typed on the console.
    Console(Vec<u8>),
    /// The console input ended (stdin EOF, or a PTY read error).
    ConsoleClosed,
    /// A request from the control socket.
    Control(ControlRequest),
    /// SIGINT/SIGTERM/SIGHUP: leave the loop so the PTY link and sockets get removed.
    Shutdown,
}

/// What Zephyr's `help` prints (shell.c `cmd_help` with TAB, autocompletion, help and metakeys
/// enabled), followed by the root commands this model has.
const ZEPHYR_HELP: &[&str] = &[
    "Please press the <Tab> button to see all available commands.",
    "You can also use the <Tab> button to prompt or auto-complete all commands or its subcommands.",
    "You can try to call commands with <-h> or <--help> parameter for more information.",
    "",
    "Shell supports following meta-keys:",
    "  Ctrl + (a key from: abcdefklnpuw)",
    "  Alt  + (a key from: bf)",
    "Please refer to shell documentation for more details.",
    "",
    "Available commands:",
    "  clear  :Clear screen.",
    "  help   :Prints the help message.",
    "  ot     :OpenThread subcommands",
    "          Use \"ot help\" to get the list of subcommands",
];

/// Longest idle sleep when the stack has no timer pending.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// The running image's RAM state: lost on every reboot.
struct Running {
    shell: Shell,
    cli: Cli,
    stack: Stack,
    argc_max: usize,
    /// A pending command (ping) is running: the upstream prompt waits for its result.
    pending: bool,
}

/// A virtual nRF52840 DK.
pub struct Board {
    eui64: [u8; 8],
    /// The flashed image (None = blank chip: the console stays silent).
    image: Option<Manifest>,
    /// OpenThread settings in flash: the dataset the node committed or attached with. Survives
    /// `reset`, erased by `factoryreset` and by flashing.
    settings: Option<ActiveDataset>,
    running: Option<Running>,
    out: Vec<u8>,
}

impl Board {
    pub fn new(eui64: [u8; 8]) -> Self {
        Board {
            eui64,
            image: None,
            settings: None,
            running: None,
            out: Vec::new(),
        }
    }

    /// Console bytes produced since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Hash of the flashed image.
    pub fn image_hash(&self) -> Option<String> {
        self.image.as_ref().map(Manifest::image_hash)
    }

    /// Load a variant (erasing settings) and boot it.
    pub fn flash(&mut self, manifest: Manifest, now: Instant) {
        for w in manifest.kconfig.warnings() {
            eprintln!("vdk: warning: {w}");
        }
        self.image = Some(manifest);
        self.settings = None;
        self.boot(now);
    }

    /// Press RESET: reboot the same image, settings kept.
    pub fn reset(&mut self, now: Instant) {
        self.boot(now);
    }

    fn boot(&mut self, now: Instant) {
        self.running = None;
        let Some(manifest) = self.image.clone() else {
            return;
        };
        if manifest.application != Application::ThreadCli {
            eprintln!(
                "vdk: application {:?} is not emulated; the board stays silent",
                manifest.application
            );
            return;
        }
        let k = &manifest.kconfig;
        let shell_cfg = match manifest.profile {
            Profile::Ncs => ShellConfig {
                profile: Profile::Ncs,
                prompt: k
                    .string("SHELL_PROMPT_UART")
                    .unwrap_or_else(|| "uart:~$ ".into()),
                colors: k.bool("SHELL_VT100_COLORS"),
                vt100: k.bool("SHELL_VT100_COMMANDS"),
                echo: k.bool("SHELL_ECHO_STATUS"),
                cmd_buff_size: k
                    .int("SHELL_CMD_BUFF_SIZE")
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(256)
                    .max(2),
            },
            Profile::Upstream => ShellConfig::upstream(),
        };
        let argc_max = match manifest.profile {
            Profile::Ncs => k
                .int("SHELL_ARGC_MAX")
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(20),
            // OPENTHREAD_CONFIG_CLI_MAX_ARGS
            Profile::Upstream => 32,
        };
        let defaults = default_dataset(&manifest);
        let mut stack = Stack::new(self.eui64, None, defaults);
        if let Some(saved) = &self.settings {
            if let Err(e) = stack.set_dataset(saved.clone()) {
                eprintln!("vdk: restoring settings failed: {e}");
            }
        }
        for l in &manifest.banner {
            shell::line(&mut self.out, l);
        }
        let shell = Shell::new(shell_cfg);
        shell.start(&mut self.out);
        let auto_start = manifest.profile == Profile::Ncs && !k.bool("OPENTHREAD_MANUAL_START");
        let mut running = Running {
            shell,
            cli: Cli::new(),
            stack,
            argc_max,
            pending: false,
        };
        if auto_start {
            // Zephyr's openthread.c without OPENTHREAD_MANUAL_START: interface up, Thread on.
            let _ = running.stack.ifconfig_up();
            let _ = running.stack.thread_start(now);
        }
        self.running = Some(running);
    }

    /// Bytes from the console.
    pub fn handle_console(&mut self, bytes: &[u8], now: Instant) {
        for &b in bytes {
            let Some(running) = self.running.as_mut() else {
                return;
            };
            if let Some(line) = running.shell.feed_byte(b, &mut self.out) {
                self.run_line(&line, now);
            }
        }
        self.collect_events();
    }

    fn run_line(&mut self, line: &str, now: Instant) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let profile = running.shell.config().profile;
        let reply = match profile {
            Profile::Ncs => match shell::split_args(line, running.argc_max) {
                Err(shell::ArgsError::TooMany) => {
                    // SHELL_MSG_TOO_MANY_ARGS already ends in a newline and is printed with "%s\n".
                    running
                        .shell
                        .error_line(&mut self.out, "Too many arguments in the command.\r\n");
                    None
                }
                Err(shell::ArgsError::Unterminated(q)) => {
                    running
                        .shell
                        .error_line(&mut self.out, &format!("not terminated: {q}"));
                    None
                }
                Ok(args) => match args.first().map(String::as_str) {
                    None => None,
                    Some("ot") if args.len() == 1 => {
                        // Registered with 2 mandatory arguments; help follows the error
                        // (SHELL_HELP_ON_WRONG_ARGUMENT_COUNT).
                        running
                            .shell
                            .error_line(&mut self.out, "ot: wrong parameter count");
                        shell::line(&mut self.out, "ot - OpenThread subcommands");
                        shell::line(
                            &mut self.out,
                            "     Use \"ot help\" to get the list of subcommands",
                        );
                        None
                    }
                    Some("ot") => {
                        // The ot command joins its arguments with single spaces and hands the
                        // line to otCliInputLine, which splits it again its own way.
                        let ot_line = args[1..].join(" ");
                        Some(run_cli(running, &shell::split_ot_args(&ot_line), now))
                    }
                    Some("clear") => {
                        // SHELL_VT100_CURSORHOME + SHELL_VT100_CLEARSCREEN
                        self.out.extend_from_slice(b"\x1b[H\x1b[2J");
                        None
                    }
                    Some("help") => {
                        for l in ZEPHYR_HELP {
                            shell::line(&mut self.out, l);
                        }
                        None
                    }
                    Some(other) => {
                        running
                            .shell
                            .error_line(&mut self.out, &format!("{other}: command not found"));
                        None
                    }
                },
            },
            Profile::Upstream => {
                let args = shell::split_ot_args(line);
                if args.is_empty() {
                    None
                } else {
                    Some(run_cli(running, &args, now))
                }
            }
        };
        if let Some(reply) = reply {
            for l in &reply.lines {
                shell::line(&mut self.out, l);
            }
            if let Some(r) = reply.result_line() {
                shell::line(&mut self.out, &r);
            }
            match reply.outcome {
                Outcome::Reboot { factory } => {
                    if factory {
                        self.settings = None;
                    } else {
                        self.save_settings();
                    }
                    self.boot(now);
                    return;
                }
                Outcome::Pending => {
                    if let Some(r) = self.running.as_mut() {
                        r.pending = true;
                        // OpenThread's own CLI prints the prompt only with the final result.
                        if profile == Profile::Upstream {
                            return;
                        }
                    }
                }
                Outcome::Done => {
                    if reply.touched_dataset {
                        self.save_settings();
                    }
                }
                Outcome::Error(_) => {}
            }
        }
        if let Some(r) = self.running.as_ref() {
            r.shell.prompt(&mut self.out);
        }
    }

    /// OpenThread writes its network info to settings when a dataset is committed or the node
    /// attaches; the model keeps the stack's current dataset at those moments.
    fn save_settings(&mut self) {
        if let Some(r) = &self.running {
            if r.stack.role() != Role::Disabled || Some(r.stack.dataset()) != self.settings.as_ref()
            {
                self.settings = Some(r.stack.dataset().clone());
            }
        }
    }

    /// Run due stack timers and print what they produced.
    pub fn poll(&mut self, now: Instant) {
        if let Some(r) = self.running.as_mut() {
            r.stack.poll(now);
        }
        self.collect_events();
    }

    /// When [`Board::poll`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.as_ref().and_then(|r| r.stack.next_deadline())
    }

    fn collect_events(&mut self) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let events = running.stack.take_events();
        if events.is_empty() {
            return;
        }
        let mut lines = Vec::new();
        let mut attached = false;
        let mut finished = false;
        for ev in events {
            match ev {
                NetEvent::RoleChanged(role) => {
                    attached |= matches!(role, Role::Child | Role::Router | Role::Leader);
                }
                NetEvent::PingReply {
                    from,
                    size,
                    seq,
                    hop_limit,
                    rtt,
                } => {
                    lines.push(format!(
                        "{size} bytes from {}: icmp_seq={seq} hlim={hop_limit} time={}ms",
                        cli::ot_ip6(&from),
                        rtt.as_millis()
                    ));
                }
                NetEvent::PingDone {
                    sent,
                    received,
                    rtt_min,
                    rtt_avg,
                    rtt_max,
                } => {
                    lines.push(ping_statistics(sent, received, rtt_min, rtt_avg, rtt_max));
                    lines.push("Done".to_string());
                    finished = true;
                }
                NetEvent::Udp { .. } => {}
            }
        }
        if finished {
            running.pending = false;
        }
        running.shell.print_async(&lines, &mut self.out);
        if finished && running.shell.config().profile == Profile::Upstream {
            running.shell.prompt(&mut self.out);
        }
        if attached {
            self.save_settings();
        }
    }

    /// One control-socket request -> one reply line.
    pub fn handle_control(&mut self, line: &str, now: Instant) -> String {
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v, a.trim()),
            None => (line, ""),
        };
        match (verb, arg) {
            ("flash", path) if !path.is_empty() => match Manifest::load(std::path::Path::new(path))
            {
                Ok(m) => {
                    let hash = m.image_hash();
                    self.flash(m, now);
                    format!("ok {hash}")
                }
                Err(e) => format!("error {e}"),
            },
            ("image-hash", "") => match self.image_hash() {
                Some(h) => format!("ok {h}"),
                None => "ok none".to_string(),
            },
            ("reset", "") => {
                self.save_settings();
                self.reset(now);
                "ok".to_string()
            }
            ("warnings", "") => match &self.image {
                Some(m) => {
                    let w: Vec<String> = m
                        .kconfig
                        .warnings()
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    format!(
                        "ok {}{}{}",
                        w.len(),
                        if w.is_empty() { "" } else { " " },
                        w.join(" | ")
                    )
                }
                None => "ok 0".to_string(),
            },
            _ => format!("error unknown request {line:?}"),
        }
    }
}

fn run_cli(running: &mut Running, args: &[String], now: Instant) -> cli::Reply {
    let mut ctx = Context {
        stack: &mut running.stack,
        now,
    };
    running.cli.execute(args, &mut ctx)
}

/// `%u packets transmitted, %u packets received.` and, when something came back, loss and
/// round-trip figures (OpenThread `Interpreter::HandlePingStatistics`).
fn ping_statistics(
    sent: u16,
    received: u16,
    min: Duration,
    avg: Duration,
    max: Duration,
) -> String {
    let mut s = format!("{sent} packets transmitted, {received} packets received.");
    if sent > 0 {
        // Loss in thousandths, printed as percent with one decimal.
        let lost_per_mille = (u32::from(sent.saturating_sub(received)) * 1000) / u32::from(sent);
        s.push_str(&format!(
            " Packet loss = {}.{}%.",
            lost_per_mille / 10,
            lost_per_mille % 10
        ));
    }
    if received > 0 {
        let avg_us = avg.as_micros();
        s.push_str(&format!(
            " Round-trip min/avg/max = {}/{}.{}/{} ms.",
            min.as_millis(),
            avg_us / 1000,
            (avg_us % 1000) / 100,
            max.as_millis()
        ));
    }
    s
}

/// The dataset a factory-new board uses: NCS = the Kconfig defaults (Zephyr applies
/// CONFIG_OPENTHREAD_* at init); upstream = OpenThread's compiled-in defaults.
pub fn default_dataset(manifest: &Manifest) -> ActiveDataset {
    let k = &manifest.kconfig;
    let (channel, pan_id, name, xpanid, key, mlp) = match manifest.profile {
        Profile::Ncs => (
            k.int("OPENTHREAD_CHANNEL")
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(11),
            k.int("OPENTHREAD_PANID")
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(0xabcd),
            k.string("OPENTHREAD_NETWORK_NAME")
                .unwrap_or_else(|| "ot_zephyr".into()),
            k.string("OPENTHREAD_XPANID").unwrap_or_default(),
            k.get("OPENTHREAD_NETWORKKEY")
                .and(k.string("OPENTHREAD_NETWORKKEY"))
                .or_else(|| {
                    k.get("OPENTHREAD_MASTERKEY")
                        .and(k.string("OPENTHREAD_MASTERKEY"))
                })
                .or_else(|| k.string("OPENTHREAD_NETWORKKEY"))
                .unwrap_or_default(),
            k.string("OPENTHREAD_MESH_LOCAL_PREFIX").unwrap_or_default(),
        ),
        Profile::Upstream => (
            11,
            0xffff,
            "OpenThread".to_string(),
            "dead00beef00cafe".to_string(),
            "00112233445566778899aabbccddeeff".to_string(),
            "fdde:ad00:beef:0::".to_string(),
        ),
    };
    ActiveDataset {
        active_timestamp: 0,
        channel,
        channel_mask: 0x07ff_f800,
        pan_id,
        ext_pan_id: parse_colon_hex::<8>(&xpanid)
            .unwrap_or([0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0xca, 0xfe]),
        network_name: name,
        network_key: parse_colon_hex::<16>(&key).unwrap_or([
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]),
        mesh_local_prefix: parse_prefix(&mlp)
            .unwrap_or([0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0x00]),
        pskc: [0; 16],
    }
}

/// `de:ad:00:be:ef:00:ca:fe` or `dead00beef00cafe` -> bytes.
fn parse_colon_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let compact: String = s.chars().filter(|c| *c != ':').collect();
    cli::parse_hex(&compact).ok()?.try_into().ok()
}

/// `fdde:ad00:beef:0::` (optionally with `/64`) -> the first 8 bytes.
fn parse_prefix(s: &str) -> Option<[u8; 8]> {
    let addr: Ipv6Addr = s.split('/').next()?.parse().ok()?;
    addr.octets()[..8].try_into().ok()
}

/// The main loop: one thread owns the board; reader threads feed `inputs`.
pub fn run_loop(
    board: &mut Board,
    inputs: &Receiver<Input>,
    console: &mut Console,
    exit_on_console_close: bool,
) {
    loop {
        console.write(board.take_output());
        let now = Instant::now();
        let wait = board
            .next_deadline()
            .map_or(IDLE_WAIT, |d| d.saturating_duration_since(now));
        match inputs.recv_timeout(wait) {
            Ok(Input::Console(bytes)) => board.handle_console(&bytes, Instant::now()),
            Ok(Input::ConsoleClosed) => {
                if exit_on_console_close {
                    break;
                }
            }
            Ok(Input::Control(req)) => {
                let reply = board.handle_control(&req.line, Instant::now());
                let _ = req.reply.send(reply);
            }
            Ok(Input::Shutdown) => break,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        board.poll(Instant::now());
    }
    console.write(board.take_output());
}
