//! Virtual nRF52840 DK: a process that behaves on its console like a DK running the nRF Connect
//! SDK "Thread: CLI" sample (or an upstream OpenThread CLI build), attached over a PTY so the
//! runner uses the same serial code as for a real board, and talking to other virtual DKs over
//! the virtual 802.15.4 air.
//!
//! Must not depend on: the runner (`ot-hil-runner`) or the lab; what it shares with them
//! (manifests, profiles, the control protocol, the error table) is `ot-hil-board`.
//!
//! Layout: `firmware` (variant manifests + Kconfig, from ot-hil-board), `shell` (Zephyr shell /
//! OT UART line discipline), `cli` (OpenThread CLI commands), `device` (board state + main loop),
//! `input` (what the main loop waits for), `sources` (where it comes from: one wait on every
//! source), `console` (PTY/stdio), `control` (virtual probe socket), `net` (the Thread stack
//! model), `ot_text` (values as the OpenThread CLI prints them), `fork_server` (starts boards by
//! fork for the runner).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

// The manifest loader and the error table are shared with the runner (ot-hil-board); they keep
// their paths here so the model reads `crate::firmware` and `crate::ot_error`.
pub use ot_hil_board::{firmware, ot_error};

pub mod cli;
pub mod coap;
pub mod coaps;
pub mod console;
pub mod control;
pub mod device;
pub mod entropy;
pub mod fault;
pub mod fork_server;
pub mod input;
pub mod net;
pub mod ot_text;
pub mod shell;
pub mod sniffer_app;
pub mod sources;

use console::Console;
use control::ControlServer;
use device::Board;
use firmware::{FirmwareError, Manifest};
use ot_hil_air::AirClient;
use sources::Sources;

/// Command-line arguments of a virtual DK (`ot-hil-vdk ...` and `ot-hil vdk ...`).
#[derive(Debug, Clone, clap::Args)]
pub struct VdkArgs {
    /// Virtual air hub socket to attach the radio to.
    #[arg(long, value_name = "HUB_SOCKET", required_unless_present = "no_air")]
    pub air: Option<PathBuf>,
    /// Run without a radio.
    #[arg(long)]
    pub no_air: bool,
    /// Create a PTY and symlink this path to its slave (the board's "/dev/ttyACM0").
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "stdio",
        required_unless_present = "stdio"
    )]
    pub pty_link: Option<PathBuf>,
    /// Console on stdin/stdout instead of a PTY.
    #[arg(long)]
    pub stdio: bool,
    /// Control socket (the virtual probe): flash / image-hash / reset.
    #[arg(long, value_name = "SOCKET")]
    pub control: Option<PathBuf>,
    /// Boot this firmware variant at start (otherwise the board is blank until flashed).
    #[arg(long, value_name = "MANIFEST")]
    pub firmware: Option<PathBuf>,
    /// Factory EUI-64 as 16 hex digits (default: derived from pid and time).
    #[arg(long, value_name = "HEX", value_parser = parse_eui64)]
    pub eui64: Option<[u8; 8]>,
    /// Which clock the firmware's timers run on: the host's (`real`), or the case clock of the
    /// air hub (`virtual`: the board reports when it is idle and the hub moves time on).
    #[arg(long, value_enum, default_value_t = BoardClock::Real, requires = "air")]
    pub clock: BoardClock,
    /// Seed the board's random number generator (MLE jitter, tokens, DTLS randoms and keys):
    /// the same seed, inputs and clock give the same behaviour. For test boards only.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// The process that started this board: the board exits when it does (Linux parent-death
    /// signal), or at once if it is already gone. Set by the runner.
    #[arg(long, value_name = "PID")]
    pub parent: Option<u32>,
}

/// The clock a virtual DK's timers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BoardClock {
    /// The host's monotonic clock.
    Real,
    /// The case clock of the air hub (a discrete-event scheduler).
    Virtual,
}

/// Top-level errors of a virtual DK process.
#[derive(Debug, thiserror::Error)]
pub enum VdkError {
    #[error("failed to create the console pty at {path}: {source}")]
    Pty {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the stdio console: {0}")]
    Stdio(#[source] std::io::Error),
    #[error("failed to bind the control socket {path}: {source}")]
    Control {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to load firmware: {0}")]
    Firmware(#[from] FirmwareError),
    #[error("failed to attach to the air hub {path}: {source}")]
    Air {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to set up signal handling: {0}")]
    Signals(#[source] std::io::Error),
    #[error("neither --pty-link nor --stdio given")]
    NoConsole,
}

fn parse_eui64(s: &str) -> Result<[u8; 8], String> {
    let bytes = cli::parse_hex(s).map_err(|_| "expected 16 hex digits".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "expected 16 hex digits".to_string())
}

/// A factory EUI-64 unique enough for one machine: pid and start time, with the Nordic-style
/// locally administered bit pattern left to the stack.
fn default_eui64() -> [u8; 8] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let pid = std::process::id();
    let mut x = (nanos as u64) ^ (u64::from(pid) << 32) ^ u64::from(pid);
    // splitmix64 finaliser: spread pid/time bits over all 8 bytes.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x.to_be_bytes()
}

/// Be killed when the thread that started this process ends (the parent-death signal), and
/// exit now if `parent` already has: then the signal will never come.
pub(crate) fn die_with_parent(parent: u32) {
    #[cfg(target_os = "linux")]
    {
        let set = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        if set.is_err() || nix::unistd::getppid().as_raw() as u32 != parent {
            std::process::exit(137);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = parent;
}

/// Run a virtual DK until a signal, or EOF on stdin in `--stdio` mode.
pub fn run(args: VdkArgs) -> Result<(), VdkError> {
    if let Some(parent) = args.parent {
        die_with_parent(parent);
    }
    if let Some(seed) = args.seed {
        entropy::seed(seed);
    }
    let signals = sources::shutdown_signals().map_err(VdkError::Signals)?;
    let firmware = args.firmware.as_deref().map(Manifest::load).transpose()?;
    let control = match &args.control {
        Some(path) => Some(
            ControlServer::start(path).map_err(|source| VdkError::Control {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let mut clock_radio = None;
    let mut receiver = None;
    let air = match &args.air {
        Some(hub) if !args.no_air => {
            let air_err = |source| VdkError::Air {
                path: hub.clone(),
                source,
            };
            let client = AirClient::connect(hub).map_err(air_err)?;
            receiver = Some(client.try_clone().map_err(air_err)?);
            if args.clock == BoardClock::Virtual {
                clock_radio = Some(client.try_clone().map_err(air_err)?);
            }
            Some(client)
        }
        _ => None,
    };
    let mut inputs = Sources::new(signals, receiver, control);
    // The PTY link last: once it exists, the control socket and the radio are ready too, so a
    // runner that waits for the link can use everything at once.
    let mut console = if args.stdio {
        Console::open_stdio().map_err(VdkError::Stdio)?
    } else if let Some(link) = &args.pty_link {
        Console::open_pty(link).map_err(|source| VdkError::Pty {
            path: link.clone(),
            source,
        })?
    } else {
        return Err(VdkError::NoConsole);
    };
    // A seeded board draws its factory EUI-64 from its seed too: the same case run, the same
    // addresses on the air.
    let eui64 = args.eui64.unwrap_or_else(|| match args.seed {
        Some(_) => entropy::with(rand::Rng::random),
        None => default_eui64(),
    });
    let mut board = Board::new(eui64, air);
    match clock_radio {
        Some(radio) => {
            let mut clock = device::CaseClockLink::new(radio);
            if let Some(m) = firmware {
                board.flash(m, clock.now());
            }
            device::run_clocked_loop(&mut board, &mut inputs, &mut console, &mut clock);
        }
        None => {
            if let Some(m) = firmware {
                board.flash(m, std::time::Instant::now());
            }
            device::run_loop(&mut board, &mut inputs, &mut console, args.stdio);
        }
    }
    Ok(())
}
