//! The board: firmware image, "NVM" settings, the running application (shell + OpenThread CLI +
//! Thread stack), and the single-threaded main loop that feeds it.
//!
//! [`Board`] has no I/O of its own: it consumes console bytes, radio frames, control requests
//! and timer ticks and produces console bytes, so tests drive it directly. [`run_loop`] connects
//! it to its inputs ([`Sources`]: one wait on every source) and sleeps until the next input or
//! deadline.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use ot_hil_air::{AirClient, AirFrame, IdleReport};

use crate::cli::{self, Cli, Context, Outcome};
use crate::console::Console;
use crate::fault::{AfterFatal, CrashRequest, FaultState};
use crate::firmware::{Application, Manifest, Profile};
use crate::input::Input;
use crate::net::dataset::{DEFAULT_CHANNEL_MASK, SecurityPolicy};
use crate::net::{ActiveDataset, Role, Stack};
use crate::shell::{self, Shell, ShellConfig};
use crate::sniffer_app::SnifferApp;
use crate::sources::Sources;
use ot_hil_board::control::{ControlReply as Reply, ControlRequest as Request};

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
];

/// The root commands the model has, as `help` lists them (name, help lines); `kernel` only
/// when the build has it. Zephyr pads the names to the longest one.
fn root_commands(kernel: bool) -> Vec<(&'static str, &'static [&'static str])> {
    let mut commands: Vec<(&'static str, &'static [&'static str])> = vec![
        ("clear", &["Clear screen."]),
        ("help", &["Prints the help message."]),
    ];
    if kernel {
        commands.push(("kernel", &["Kernel commands"]));
    }
    commands.push((
        "ot",
        &[
            "OpenThread subcommands",
            "Use \"ot help\" to get the list of subcommands",
        ],
    ));
    commands
}

/// `help`'s command list: `  <name padded>  :<help>`, continuation lines aligned after the colon.
fn help_lines(kernel: bool) -> Vec<String> {
    let commands = root_commands(kernel);
    let width = commands.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut lines = Vec::new();
    for (name, help) in commands {
        for (i, text) in help.iter().enumerate() {
            if i == 0 {
                lines.push(format!("  {name:<width$}  :{text}"));
            } else {
                lines.push(format!("{:indent$}{text}", "", indent = width + 5));
            }
        }
    }
    lines
}

/// `kernel reboot` without (or with an unknown) subcommand: the command has no handler of its
/// own, so the shell prints its help (`shell.c` `exec_cmd` -> `shell_internal_help_print`;
/// subcommands from `kernel_service.c`'s `sub_kernel_reboot`).
const KERNEL_REBOOT_HELP: &[&str] = &[
    "reboot - Reboot.",
    "Subcommands:",
    "  cold  :Cold reboot.",
    "  warm  :Warm reboot.",
];

/// `kernel` alone: its help, with the one subcommand the model has (a real board lists more:
/// `cycles`, `stacks`, `threads`, `uptime`, `version`, ...).
const KERNEL_HELP: &[&str] = &[
    "kernel - Kernel commands",
    "Subcommands:",
    "  reboot  :Reboot.",
];

/// Longest idle sleep when nothing is scheduled.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// The running image's RAM state: lost on every reboot.
struct Running {
    shell: Shell,
    cli: Cli,
    stack: Stack,
    argc_max: usize,
    /// A pending command (ping) is running: the upstream prompt waits for its result.
    pending: bool,
    /// `CONFIG_SHELL`: without it there is no shell on the UART at all.
    shell_enabled: bool,
    /// `CONFIG_OPENTHREAD_SHELL`: the `ot` command exists.
    ot_command: bool,
    /// `kernel reboot` exists: `CONFIG_KERNEL_SHELL` with `CONFIG_REBOOT` (which
    /// `NET_L2_OPENTHREAD` selects).
    kernel_reboot: bool,
}

/// What OpenThread keeps in flash across a reset (its "network info" and active dataset).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settings {
    dataset: ActiveDataset,
    ext_addr: [u8; 8],
}

/// A virtual nRF52840 DK.
pub struct Board {
    eui64: [u8; 8],
    /// The radio: each boot's stack gets a handle on it.
    air: Option<AirClient>,
    /// The flashed image (None = blank chip: the console stays silent).
    image: Option<Manifest>,
    /// Settings in flash. Survive `reset`, erased by `factoryreset` and by flashing.
    settings: Option<Settings>,
    running: Option<Running>,
    /// Injected faults (a hang, the uptime for fatal error lines).
    fault: FaultState,
    /// The running image when it is the 802.15.4 sniffer firmware.
    sniffer: Option<SnifferApp>,
    out: Vec<u8>,
}

impl Board {
    pub fn new(eui64: [u8; 8], air: Option<AirClient>) -> Self {
        Board {
            eui64,
            air,
            image: None,
            settings: None,
            running: None,
            fault: FaultState::default(),
            sniffer: None,
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

    /// Press RESET: reboot the same image, settings kept (what was not saved is lost).
    pub fn reset(&mut self, now: Instant) {
        self.boot(now);
    }

    fn boot(&mut self, now: Instant) {
        // Dropping the old stack releases its radio handle; the shared radio stays registered.
        self.running = None;
        self.fault.booted(now);
        self.sniffer = None;
        let Some(manifest) = self.image.clone() else {
            return;
        };
        if manifest.application == Application::Sniffer802154 {
            let radio = self.air.as_ref().and_then(|a| a.try_clone().ok());
            self.sniffer = Some(SnifferApp::boot(radio));
            return;
        }
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
                history_bytes: if k.bool("SHELL_HISTORY") {
                    k.int("SHELL_HISTORY_BUFFER")
                        .and_then(|n| usize::try_from(n).ok())
                        .unwrap_or(512)
                } else {
                    0
                },
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
        let air = self.air.as_ref().and_then(|a| match a.try_clone() {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("vdk: radio handle: {e}");
                None
            }
        });
        let mut stack = Stack::new(self.eui64, air, default_dataset(&manifest));
        if let Some(saved) = &self.settings
            && let Err(e) = stack
                .set_dataset(saved.dataset.clone())
                .and_then(|_| stack.set_ext_addr(saved.ext_addr))
        {
            eprintln!("vdk: restoring settings failed: {e}");
        }
        for l in &manifest.banner {
            shell::line(&mut self.out, l);
        }
        let shell = Shell::new(shell_cfg);
        let shell_enabled = manifest.profile == Profile::Upstream || k.bool("SHELL");
        if shell_enabled {
            shell.start(&mut self.out);
        }
        let auto_start = manifest.profile == Profile::Ncs && !k.bool("OPENTHREAD_MANUAL_START");
        let mut running = Running {
            shell,
            cli: {
                let mut cli = Cli::new();
                cli.enable_coaps(crate::coaps::CoapsBuild::from_kconfig(manifest.profile, k));
                cli
            },
            stack,
            argc_max,
            pending: false,
            shell_enabled,
            ot_command: manifest.profile == Profile::Upstream || k.bool("OPENTHREAD_SHELL"),
            kernel_reboot: manifest.profile == Profile::Ncs
                && k.bool("KERNEL_SHELL")
                && (k.bool("REBOOT") || k.bool("NET_L2_OPENTHREAD")),
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
        if self.fault.is_hung() {
            return;
        }
        if let Some(sniffer) = self.sniffer.as_mut() {
            sniffer.handle_console(bytes, &mut self.out);
            return;
        }
        for &b in bytes {
            let Some(running) = self.running.as_mut() else {
                return;
            };
            if !running.shell_enabled {
                return;
            }
            if let Some(line) = running.shell.feed_byte(b, &mut self.out) {
                self.run_line(&line, now);
            }
        }
        self.collect_events(now);
    }

    /// A frame from the radio.
    pub fn handle_air(&mut self, frame: &AirFrame, now: Instant) {
        if self.fault.is_hung() {
            return;
        }
        if let Some(sniffer) = self.sniffer.as_mut() {
            sniffer.handle_air(frame, &mut self.out);
            return;
        }
        if let Some(r) = self.running.as_mut() {
            r.stack.handle_air_frame(now, frame);
        }
        self.collect_events(now);
    }

    fn run_line(&mut self, line: &str, now: Instant) {
        let saved = self.settings.is_some();
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
                    Some("ot") if !running.ot_command => {
                        running
                            .shell
                            .error_line(&mut self.out, "ot: command not found");
                        None
                    }
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
                        Some(run_cli(
                            running,
                            &shell::split_ot_args(&ot_line),
                            now,
                            saved,
                        ))
                    }
                    Some("kernel") if running.kernel_reboot => {
                        match args.get(1..).unwrap_or_default() {
                            // sys_reboot(SYS_REBOOT_COLD / _WARM): on the nRF52840 both end in
                            // NVIC_SystemReset, so RAM is lost and the flash (settings) kept.
                            [sub, ..]
                                if sub == "reboot"
                                    && matches!(
                                        args.get(2).map(String::as_str),
                                        Some("cold" | "warm")
                                    ) =>
                            {
                                self.boot(now);
                                return;
                            }
                            [sub, ..] if sub == "reboot" => {
                                for l in KERNEL_REBOOT_HELP {
                                    shell::line(&mut self.out, l);
                                }
                            }
                            _ => {
                                for l in KERNEL_HELP {
                                    shell::line(&mut self.out, l);
                                }
                            }
                        }
                        None
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
                        for l in help_lines(running.kernel_reboot) {
                            shell::line(&mut self.out, &l);
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
                    Some(run_cli(running, &args, now, saved))
                }
            }
        };
        if let Some(reply) = reply {
            if let Some(r) = self.running.as_ref() {
                for l in &reply.lines {
                    r.shell.ot_line(&mut self.out, l);
                }
                if let Some(result) = reply.result_line() {
                    r.shell.ot_line(&mut self.out, &result);
                }
            }
            match reply.outcome {
                Outcome::Reboot { factory } => {
                    if factory {
                        self.settings = None;
                    }
                    self.boot(now);
                    return;
                }
                Outcome::Pending => {
                    if let Some(r) = self.running.as_mut() {
                        r.pending = true;
                        if profile == Profile::Upstream {
                            // OpenThread's own CLI prints the prompt only with the final result.
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
    /// attaches; the model keeps the stack's current dataset and extended address then.
    fn save_settings(&mut self) {
        if let Some(r) = &self.running {
            self.settings = Some(Settings {
                dataset: r.stack.dataset().clone(),
                ext_addr: r.stack.ext_addr(),
            });
        }
    }

    /// Run due timers and print what they produced.
    pub fn poll(&mut self, now: Instant) {
        if self.fault.is_hung() {
            return;
        }
        if let Some(r) = self.running.as_mut() {
            r.stack.poll(now);
            let lines = r.cli.poll(&mut r.stack, now);
            r.shell.print_async(&lines, &mut self.out);
        }
        self.collect_events(now);
    }

    /// When [`Board::poll`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.fault.is_hung() {
            return None;
        }
        let r = self.running.as_ref()?;
        [r.stack.next_deadline(), r.cli.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    fn collect_events(&mut self, now: Instant) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let events = running.stack.take_events();
        if events.is_empty() {
            return;
        }
        let out = running.cli.handle_events(events, &mut running.stack, now);
        if out.finished_pending {
            running.pending = false;
        }
        running.shell.print_async(&out.lines, &mut self.out);
        if out.finished_pending && running.shell.config().profile == Profile::Upstream {
            running.shell.prompt(&mut self.out);
        }
        if out.attached {
            self.save_settings();
        }
    }

    /// One control-socket request line -> one reply line.
    pub fn handle_control(&mut self, line: &str, now: Instant) -> String {
        match Request::parse(line) {
            Ok(request) => self.handle_request(request, now),
            Err(e) => Reply::Error(e.to_string()),
        }
        .encode()
    }

    /// One control request (all but `close-console`, which the main loop handles: the console
    /// belongs to it, not to the board).
    pub fn handle_request(&mut self, request: Request, now: Instant) -> Reply {
        match request {
            Request::Flash(path) => match Manifest::load(&path) {
                Ok(m) => {
                    let hash = m.image_hash();
                    self.flash(m, now);
                    Reply::Ok(hash)
                }
                Err(e) => Reply::Error(e.to_string()),
            },
            Request::ImageHash => Reply::Ok(self.image_hash().unwrap_or_else(|| "none".into())),
            Request::Transcripts => {
                // The engine's own transcripts of this boot, for comparison with the air's.
                let t = self
                    .running
                    .as_ref()
                    .map(|r| r.cli.coaps_transcripts())
                    .unwrap_or_default();
                serde_json::to_string(&t).map_err(|e| e.to_string()).into()
            }
            Request::KeyLog => {
                // Lets a capture of this boot's CoAPS sessions be decrypted (Wireshark).
                let lines = self
                    .running
                    .as_ref()
                    .map(|r| r.cli.coaps_key_log())
                    .unwrap_or_default();
                serde_json::to_string(&lines)
                    .map_err(|e| e.to_string())
                    .into()
            }
            Request::Hang => {
                self.fault.hang();
                Reply::ok()
            }
            Request::Crash { reason } => {
                let after = self.fault.fatal_error(
                    self.image.as_ref(),
                    CrashRequest { reason },
                    now,
                    &mut self.out,
                );
                match after {
                    AfterFatal::Reboot => self.boot(now),
                    AfterFatal::Halt => self.fault.hang(),
                }
                Reply::ok()
            }
            Request::Reset => {
                self.reset(now);
                Reply::ok()
            }
            Request::Warnings => Reply::Ok(match &self.image {
                Some(m) => {
                    let w: Vec<String> = m
                        .kconfig
                        .warnings()
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    format!(
                        "{}{}{}",
                        w.len(),
                        if w.is_empty() { "" } else { " " },
                        w.join(" | ")
                    )
                }
                None => "0".to_string(),
            }),
            Request::CloseConsole => Reply::Error("the board has no console to close".into()),
        }
    }
}

fn run_cli(running: &mut Running, args: &[String], now: Instant, saved: bool) -> cli::Reply {
    // An active dataset exists once one was committed (or restored from settings) or the node
    // attached: OpenThread's leader creates it when it forms the network.
    let attached = matches!(
        running.stack.role(),
        Role::Child | Role::Router | Role::Leader
    );
    let mut ctx = Context {
        stack: &mut running.stack,
        now,
        active_dataset: saved || attached,
    };
    running.cli.execute(args, &mut ctx)
}

/// The dataset a factory-new board uses: NCS = the Kconfig defaults (Zephyr applies
/// CONFIG_OPENTHREAD_* at init); upstream = OpenThread's compiled-in defaults.
pub fn default_dataset(manifest: &Manifest) -> ActiveDataset {
    let k = &manifest.kconfig;
    let (channel, pan_id, name, xpanid, key, mlp) = match manifest.profile {
        Profile::Ncs => {
            // OPENTHREAD_MASTERKEY is the older name; an explicit NETWORKKEY wins.
            let key = if k.get("OPENTHREAD_NETWORKKEY").is_none()
                && k.get("OPENTHREAD_MASTERKEY").is_some()
            {
                k.string("OPENTHREAD_MASTERKEY")
            } else {
                k.string("OPENTHREAD_NETWORKKEY")
            };
            (
                k.int("OPENTHREAD_CHANNEL")
                    .and_then(|c| u8::try_from(c).ok())
                    .unwrap_or(11),
                k.int("OPENTHREAD_PANID")
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(0xabcd),
                k.string("OPENTHREAD_NETWORK_NAME")
                    .unwrap_or_else(|| "ot_zephyr".into()),
                k.string("OPENTHREAD_XPANID").unwrap_or_default(),
                key.unwrap_or_default(),
                k.string("OPENTHREAD_MESH_LOCAL_PREFIX").unwrap_or_default(),
            )
        }
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
        channel_mask: DEFAULT_CHANNEL_MASK,
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
        security_policy: SecurityPolicy::default(),
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

/// What the main loop does after an input.
enum Flow {
    Continue,
    Stop,
}

/// Hand one input to the board at `now` (the console, which belongs to the loop, handles
/// `close-console` itself).
fn handle_input(
    board: &mut Board,
    console: &mut Console,
    input: Input,
    now: Instant,
    exit_on_console_close: bool,
) -> Flow {
    match input {
        Input::Console(bytes) => board.handle_console(&bytes, now),
        Input::Air(frame) => board.handle_air(&frame, now),
        Input::ConsoleClosed if exit_on_console_close => return Flow::Stop,
        Input::Control(req) => {
            let reply = match Request::parse(&req.line) {
                Ok(Request::CloseConsole) => {
                    console.close_port();
                    Reply::ok()
                }
                Ok(request) => board.handle_request(request, now),
                Err(e) => Reply::Error(e.to_string()),
            }
            .encode();
            let _ = req.reply.send(reply);
        }
        Input::Shutdown => return Flow::Stop,
        Input::ConsoleClosed | Input::Clock(_) | Input::AirDiscarded => {}
    }
    Flow::Continue
}

/// The main loop: the board's one thread, waiting on its inputs until the next timer.
pub fn run_loop(
    board: &mut Board,
    inputs: &mut Sources,
    console: &mut Console,
    exit_on_console_close: bool,
) {
    loop {
        console.write(board.take_output());
        let now = Instant::now();
        let wait = board
            .next_deadline()
            .map_or(IDLE_WAIT, |d| d.saturating_duration_since(now));
        if let Some(input) = inputs.next(console, wait)
            && let Flow::Stop =
                handle_input(board, console, input, Instant::now(), exit_on_console_close)
        {
            break;
        }
        board.poll(Instant::now());
    }
    console.write(board.take_output());
    console.close(Duration::from_secs(1));
}

/// A board's link to the case clock of its air hub: the clock's instant as the board last heard
/// it, and the counts of what the board has consumed, which its idle reports carry.
pub struct CaseClockLink {
    radio: AirClient,
    /// Host instant that stands for instant 0 of the case clock: the board's timers keep using
    /// `Instant`, offset by the case clock.
    origin: Instant,
    report: IdleReport,
}

impl CaseClockLink {
    pub fn new(radio: AirClient) -> Self {
        CaseClockLink {
            radio,
            origin: Instant::now(),
            report: IdleReport::default(),
        }
    }

    /// The case clock's instant as an `Instant` for the board.
    pub fn now(&self) -> Instant {
        self.origin + Duration::from_micros(self.report.now_us)
    }

    /// Tell the hub the board is idle until `deadline` (rounded up to the next µs, and never at
    /// or before now: a timer due now has just run).
    fn report_idle(&mut self, deadline: Option<Instant>) {
        self.report.deadline_us = deadline.map(|d| {
            let after = d.saturating_duration_since(self.origin);
            let us = u64::try_from(after.as_micros()).unwrap_or(u64::MAX);
            let us = if Duration::from_micros(us) < after {
                us + 1
            } else {
                us
            };
            us.max(self.report.now_us + 1)
        });
        if let Err(e) = self.radio.report_idle(self.report) {
            eprintln!("vdk: idle report to the case clock failed: {e}");
        }
    }
}

/// Longest the clocked loop waits for an input in real time before it repeats its idle report
/// (a report the hub missed must not hold the case forever).
const CLOCKED_REPORT_REPEAT: Duration = Duration::from_secs(1);

/// The main loop on a case clock: the board's timers run on the hub's clock, not the host's.
/// Each time no input is waiting, the board reports idle with its next timer; it never sleeps
/// to a deadline itself: the hub moves time on ([`Input::Clock`]) when every board is idle.
pub fn run_clocked_loop(
    board: &mut Board,
    inputs: &mut Sources,
    console: &mut Console,
    clock: &mut CaseClockLink,
) {
    loop {
        clock.report.console_out += console.write(board.take_output()) as u64;
        let input = match inputs.next(console, Duration::ZERO) {
            Some(input) => input,
            None => {
                clock.report_idle(board.next_deadline());
                match inputs.next(console, CLOCKED_REPORT_REPEAT) {
                    Some(input) => input,
                    None => continue,
                }
            }
        };
        match &input {
            Input::Console(bytes) => clock.report.console_in += bytes.len() as u64,
            Input::Air(_) | Input::AirDiscarded => clock.report.frames_in += 1,
            Input::Control(_) => clock.report.controls += 1,
            Input::Clock(now_us) => clock.report.now_us = clock.report.now_us.max(*now_us),
            Input::ConsoleClosed | Input::Shutdown => {}
        }
        if let Flow::Stop = handle_input(board, console, input, clock.now(), false) {
            break;
        }
        board.poll(clock.now());
    }
    console.write(board.take_output());
    console.close(Duration::from_secs(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn variant(name: &str) -> Manifest {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../variants");
        Manifest::load(&dir.join(name)).expect("variant")
    }

    /// Type a line, return what the console printed (ANSI sequences kept).
    fn type_line(board: &mut Board, line: &str) -> String {
        board.handle_console(format!("{line}\r").as_bytes(), Instant::now());
        String::from_utf8_lossy(&board.take_output()).into_owned()
    }

    const PROMPT: &str = "\x1b[1;32muart:~$ \x1b[m";

    #[test]
    fn blank_board_is_silent_until_flashed() {
        let mut board = Board::new([1; 8], None);
        assert_eq!(type_line(&mut board, "ot state"), "");
        assert_eq!(
            board.handle_control("image-hash", Instant::now()),
            "ok none"
        );
    }

    #[test]
    fn ncs_boot_banner_prompt_and_commands() {
        let mut board = Board::new([1; 8], None);
        board.flash(variant("ncs-v2.2.0.toml"), Instant::now());
        let boot = String::from_utf8_lossy(&board.take_output()).into_owned();
        assert_eq!(
            boot,
            format!("*** Booting Zephyr OS build v3.2.99-ncs1 ***\r\n\x1b[m\r\n\r\n{PROMPT}")
        );
        assert_eq!(
            type_line(&mut board, "ot state"),
            format!("ot state\r\ndisabled\r\r\nDone\r\r\n{PROMPT}")
        );
        assert_eq!(
            type_line(&mut board, "ot bogus"),
            format!("ot bogus\r\nError 35: InvalidCommand\r\r\n{PROMPT}")
        );
        assert_eq!(
            type_line(&mut board, "foo"),
            format!("foo\r\n\x1b[1;31mfoo: command not found\r\n\x1b[m{PROMPT}")
        );
        assert_eq!(type_line(&mut board, ""), format!("\r\n{PROMPT}"));
        let ot_alone = type_line(&mut board, "ot");
        assert!(
            ot_alone.starts_with("ot\r\n\x1b[1;31mot: wrong parameter count\r\n\x1b[m"),
            "{ot_alone:?}"
        );
        // Quotes are removed by the shell, then OpenThread splits on spaces again.
        assert_eq!(
            type_line(&mut board, "ot networkname \"a b\""),
            format!("ot networkname \"a b\"\r\nError 7: InvalidArgs\r\r\n{PROMPT}")
        );
        assert_eq!(
            type_line(&mut board, "ot \"state"),
            format!("ot \"state\r\n\x1b[1;31mnot terminated: \"\r\n\x1b[m{PROMPT}")
        );
    }

    #[test]
    fn garbage_and_overlong_input_never_kill_the_board() {
        let mut board = Board::new([1; 8], None);
        board.flash(variant("ncs-v2.2.0.toml"), Instant::now());
        board.take_output();
        let garbage: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        board.handle_console(&garbage, Instant::now());
        // End the garbage's last partial line so the next command starts clean.
        board.handle_console(b"\r", Instant::now());
        board.take_output();
        let long = format!("ot {}", "x".repeat(1000));
        let out = type_line(&mut board, &long);
        assert!(
            out.ends_with(&format!("Error 35: InvalidCommand\r\r\n{PROMPT}")),
            "{out:?}"
        );
        // CONFIG_SHELL_CMD_BUFF_SIZE=416: 415 characters were kept (echoed, wrapping every 80 columns).
        let echoed = out.bytes().filter(|b| *b == b'x').count();
        assert_eq!(echoed, 412);
        assert_eq!(
            type_line(&mut board, "ot state"),
            format!("ot state\r\ndisabled\r\r\nDone\r\r\n{PROMPT}")
        );
    }

    #[test]
    fn factoryreset_and_reset_reboot_with_and_without_settings() {
        let mut board = Board::new([1; 8], None);
        board.flash(variant("ncs-v2.2.0.toml"), Instant::now());
        board.take_output();
        type_line(&mut board, "ot channel 21");
        type_line(&mut board, "ot reset");
        assert!(
            type_line(&mut board, "ot channel").contains("\r\n11\r\r\nDone"),
            "not committed: lost"
        );
        assert!(type_line(&mut board, "ot dataset active").contains("Error 23: NotFound"));
        type_line(&mut board, "ot dataset init new");
        type_line(&mut board, "ot dataset channel 20");
        type_line(&mut board, "ot dataset commit active");
        assert!(type_line(&mut board, "ot dataset active").contains("\r\nChannel: 20\r\r\n"));
        let out = type_line(&mut board, "ot reset");
        assert!(out.contains("*** Booting Zephyr OS build"), "{out:?}");
        assert!(type_line(&mut board, "ot channel").contains("\r\n20\r\r\nDone"));
        let out = type_line(&mut board, "ot factoryreset");
        assert!(out.contains("*** Booting Zephyr OS build"), "{out:?}");
        assert!(type_line(&mut board, "ot channel").contains("\r\n11\r\r\nDone"));
        assert!(type_line(&mut board, "ot dataset active").contains("Error 23: NotFound"));
    }

    #[test]
    fn kernel_reboot_keeps_the_settings_and_prints_help_without_a_subcommand() {
        let mut board = Board::new([1; 8], None);
        board.flash(variant("ncs-v2.2.0.toml"), Instant::now());
        board.take_output();
        type_line(&mut board, "ot dataset init new");
        type_line(&mut board, "ot dataset channel 25");
        type_line(&mut board, "ot dataset commit active");
        for kind in ["cold", "warm"] {
            let out = type_line(&mut board, &format!("kernel reboot {kind}"));
            assert!(
                out.starts_with(&format!(
                    "kernel reboot {kind}\r\n*** Booting Zephyr OS build"
                )),
                "{out:?}"
            );
            assert!(type_line(&mut board, "ot channel").contains("\r\n25\r\r\nDone"));
        }
        assert_eq!(
            type_line(&mut board, "kernel reboot"),
            format!(
                "kernel reboot\r\nreboot - Reboot.\r\nSubcommands:\r\n  cold  :Cold reboot.\r\n  warm  :Warm reboot.\r\n{PROMPT}"
            )
        );
        let help = type_line(&mut board, "help");
        assert!(
            help.contains("\r\n  kernel  :Kernel commands\r\n"),
            "{help:?}"
        );
        assert!(
            help.contains("\r\n  ot      :OpenThread subcommands\r\n"),
            "{help:?}"
        );
        // Without the OpenThread L2 (which selects REBOOT) there is no `kernel reboot`.
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("v.toml");
        std::fs::write(&manifest, "name = \"v\"\napplication = \"thread-cli\"\nprofile = \"ncs\"\nkconfig = [\"v.conf\"]\n").unwrap();
        std::fs::write(
            dir.path().join("v.conf"),
            "CONFIG_SHELL=y\nCONFIG_SHELL_VT100_COLORS=n\n",
        )
        .unwrap();
        board.flash(Manifest::load(&manifest).unwrap(), Instant::now());
        board.take_output();
        assert_eq!(
            type_line(&mut board, "kernel reboot cold"),
            "kernel reboot cold\r\nkernel: command not found\r\nuart:~$ "
        );
    }

    #[test]
    fn control_socket_requests() {
        let mut board = Board::new([1; 8], None);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../variants/upstream.toml");
        let reply = board.handle_control(&format!("flash {}", path.display()), Instant::now());
        let hash = variant("upstream.toml").image_hash();
        assert_eq!(reply, format!("ok {hash}"));
        assert_eq!(String::from_utf8_lossy(&board.take_output()), "> ");
        assert_eq!(
            board.handle_control("image-hash", Instant::now()),
            format!("ok {hash}")
        );
        assert_eq!(board.handle_control("reset", Instant::now()), "ok");
        assert_eq!(String::from_utf8_lossy(&board.take_output()), "> ");
        assert!(
            board
                .handle_control("flash /nonexistent.toml", Instant::now())
                .starts_with("error failed to read")
        );
        assert!(
            board
                .handle_control("frobnicate", Instant::now())
                .starts_with("error unknown request")
        );
        assert_eq!(board.handle_control("warnings", Instant::now()), "ok 0");
        // Upstream flavour: no prefix, `> ` prompt.
        assert_eq!(
            type_line(&mut board, "state"),
            "state\r\ndisabled\r\nDone\r\n> "
        );
        assert_eq!(
            type_line(&mut board, "ot state"),
            "ot state\r\nError 35: InvalidCommand\r\n> "
        );
    }

    #[test]
    fn shell_and_ot_command_follow_kconfig() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("v.toml");
        std::fs::write(&manifest, "name = \"v\"\napplication = \"thread-cli\"\nprofile = \"ncs\"\nbanner = [\"B\"]\nkconfig = [\"v.conf\"]\n").unwrap();
        std::fs::write(
            dir.path().join("v.conf"),
            "CONFIG_SHELL=y\nCONFIG_SHELL_VT100_COLORS=n\n",
        )
        .unwrap();
        let mut board = Board::new([1; 8], None);
        board.flash(Manifest::load(&manifest).unwrap(), Instant::now());
        assert_eq!(
            String::from_utf8_lossy(&board.take_output()),
            "B\r\n\r\n\r\nuart:~$ "
        );
        assert_eq!(
            type_line(&mut board, "ot state"),
            "ot state\r\not: command not found\r\nuart:~$ "
        );
        std::fs::write(dir.path().join("v.conf"), "# CONFIG_SHELL is not set\n").unwrap();
        board.flash(Manifest::load(&manifest).unwrap(), Instant::now());
        assert_eq!(String::from_utf8_lossy(&board.take_output()), "B\r\n");
        assert_eq!(type_line(&mut board, "ot state"), "");
    }

    #[test]
    fn ncs_defaults_come_from_kconfig() {
        let ds = default_dataset(&variant("ncs-v2.1.0.toml"));
        assert_eq!(ds.channel, 11);
        assert_eq!(ds.pan_id, 0xabcd);
        assert_eq!(ds.network_name, "ot_zephyr");
        assert_eq!(
            ds.ext_pan_id,
            [0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0xca, 0xfe]
        );
        assert_eq!(
            ds.mesh_local_prefix,
            [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0, 0]
        );
    }
}

#[cfg(test)]
mod async_tests {
    use super::*;
    use std::path::Path;

    /// Poll the board every 100 ms (for at most 10 s) until what it printed satisfies `done`.
    fn poll_until(board: &mut Board, start: Instant, done: impl Fn(&str) -> bool) -> String {
        let mut later = start;
        let mut out = String::new();
        for _ in 0..100 {
            later += Duration::from_millis(100);
            board.poll(later);
            out.push_str(&String::from_utf8_lossy(&board.take_output()));
            if done(&out) {
                break;
            }
        }
        out
    }

    #[test]
    fn ping_summary_arrives_asynchronously_around_the_prompt() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../variants");
        let start = Instant::now();
        let mut board = Board::new([9; 8], None);
        board.flash(Manifest::load(&dir.join("ncs-v2.2.0.toml")).unwrap(), start);
        board.handle_console(b"ot ifconfig up\rot thread start\r", start);
        board.take_output();
        board.handle_console(b"ot ping fdde:ad00:beef:0:0:ff:fe00:1234\r", start);
        let now = String::from_utf8_lossy(&board.take_output()).into_owned();
        assert_eq!(
            now,
            "ot ping fdde:ad00:beef:0:0:ff:fe00:1234\r\n\x1b[1;32muart:~$ \x1b[m"
        );
        // Type something before the summary arrives: it is redrawn after the async lines.
        board.handle_console(b"ot st", start);
        board.take_output();
        let out = poll_until(&mut board, start, |out| out.contains("Done"));
        assert_eq!(
            out,
            "\x1b[13D\x1b[J1 packets transmitted, 0 packets received. Packet loss = 100.0%.\r\r\nDone\r\r\n\x1b[1;32muart:~$ \x1b[mot st"
        );
    }

    #[test]
    fn upstream_prompt_waits_for_the_ping_result() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../variants");
        let start = Instant::now();
        let mut board = Board::new([8; 8], None);
        board.flash(Manifest::load(&dir.join("upstream.toml")).unwrap(), start);
        board.handle_console(b"ifconfig up\rthread start\r", start);
        board.take_output();
        board.handle_console(b"ping fdde:ad00:beef:0:0:ff:fe00:1234\r", start);
        assert_eq!(
            String::from_utf8_lossy(&board.take_output()),
            "ping fdde:ad00:beef:0:0:ff:fe00:1234\r\n"
        );
        let out = poll_until(&mut board, start, |out| out.ends_with("> "));
        assert_eq!(
            out,
            "1 packets transmitted, 0 packets received. Packet loss = 100.0%.\r\nDone\r\n> "
        );
    }
}
