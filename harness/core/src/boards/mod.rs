//! Where a case run's boards come from: one [`BoardSource`] per kind of board, one file each.
//!
//! A source acquires the boards of one case run ([`BoardSource::acquire`]: locks, allocation,
//! processes, the case's own air) and says, per node, how to reach its console and how to flash
//! it ([`AcquiredBoard`]). The runner then does the same for every source: open each console
//! before the reset or flash (so the boot banner lands in the case's log), flash or skip, wait
//! for the prompt. During the run the acquired boards ([`CaseBoards`]) attach the case's air
//! witness where they have an air or a sniffer, inject the faults they support before each
//! step, and are released at the end.
//!
//! Sources: [`virtual_dk`] (virtual DKs on a per-case air), [`processes`] (host processes on
//! PTYs), [`hardware`] (boards of a hardware map), [`otsim`] (real OpenThread simulation nodes);
//! [`by_variant`] picks one per variant. A new kind of board is one new file here.

pub mod by_variant;
pub mod hardware;
pub mod otsim;
pub mod processes;
pub mod virtual_dk;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ot_hil_air::BoardTap;
use ot_hil_lab::flash::{FirmwareImage, Flasher};

use crate::air::witness::Witness;
use crate::case::Case;
use crate::case::faults::BoardFaultPlan;
use crate::console::{BoardFault, Console};
use crate::exec::Failure;
use crate::infra::{InfraError, InfraFailure};
use crate::profile::Shell;
use crate::report::provenance::NodeFacts;
use crate::resilience::RunOptions;
use crate::step_clock::StepClock;
use crate::variants::Variant;

pub use by_variant::ByVariant;
pub use hardware::HardwareBoards;
pub use otsim::SimulatedBoards;
pub use processes::ProcessBoards;
pub use virtual_dk::VirtualBoards;

/// A boxed future, so board sources can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a board may take to show its prompt after flashing/reset or start.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to press Enter while waiting for a prompt.
const PROMPT_POKE_INTERVAL: Duration = Duration::from_millis(500);
/// Console lines quoted per node in reports.
pub const TAIL_LINES: usize = 15;

/// One attempt of one case on one variant, as a board source sees it.
#[derive(Debug, Clone, Copy)]
pub struct CaseRun<'a> {
    pub case: &'a Case,
    pub variant: &'a Variant,
    /// Position of this run in the plan: unique within the run, for names and allocations.
    pub seq: usize,
    /// 1 for the first attempt; retries get fresh boards.
    pub attempt: u32,
    /// Where this attempt's console logs go (`<out>/logs/<case>/<variant>[/attempt-N]`).
    pub log_dir: &'a Path,
    /// The run's private directory (short: socket paths must fit in 108 bytes).
    pub run_dir: &'a Path,
    pub options: &'a RunOptions,
    /// How long a board may take to show its prompt after a reset.
    pub ready_timeout: Duration,
}

impl CaseRun<'_> {
    /// A fresh directory of this attempt inside the run directory (`c<seq>[a<attempt>]`).
    pub fn work_dir(&self) -> Result<PathBuf, InfraFailure> {
        let dir = self.run_dir.join(if self.attempt > 1 {
            format!("c{}a{}", self.seq, self.attempt)
        } else {
            format!("c{}", self.seq)
        });
        std::fs::create_dir_all(&dir).map_err(|e| {
            infra(
                "-",
                InfraError::acquire_from(format!("failed to create {}", dir.display()), e),
            )
        })?;
        Ok(dir)
    }

    /// The board faults the case plans before step `index` in this attempt.
    pub fn board_faults_due(&self, index: usize) -> impl Iterator<Item = &BoardFaultPlan> {
        let attempt = self.attempt;
        self.case
            .faults
            .board
            .iter()
            .filter(move |f| f.before_step == index && (attempt == 1 || f.every_attempt))
    }
}

/// How to reach a board's console.
#[derive(Debug, Clone)]
pub enum ConsolePort {
    /// A serial port (a real board's, or a virtual DK's PTY link).
    Serial { path: PathBuf, baud: u32 },
    /// A process started on a PTY; starting it is the board's reset.
    Process { program: String, args: Vec<String> },
}

/// One board of a case run, as acquired: how to open its console and what to flash.
pub struct AcquiredBoard {
    pub node: String,
    pub port: ConsolePort,
    /// How the board's shell wants commands.
    pub shell: Shell,
    /// Lines the firmware prints at boot, before its shell.
    pub banner: Vec<String>,
    /// Written to the console log once it is open (which physical board this is).
    pub note: Option<String>,
    /// The probe and the image for it; `None`: nothing to flash (the board boots by itself).
    pub flash: Option<(Box<dyn Flasher + Send>, FirmwareImage)>,
    /// Once its prompt is up, send the profile's `factoryreset` over the console and wait for
    /// the reboot: how a board whose settings no probe can erase starts the case fresh.
    pub factory_reset: bool,
    /// What the reports say this board is (source, board id, probe serial, port).
    pub facts: NodeFacts,
    /// On a case clock: the clock's count of what is written to and read from this board.
    pub tap: Option<BoardTap>,
}

/// What a source acquired for one case run.
pub struct Acquired {
    /// The boards, in the case's node order, consoles not yet open.
    pub boards: Vec<AcquiredBoard>,
    /// What the source keeps until the case run releases it.
    pub held: Box<dyn CaseBoards>,
    /// The seed of the air's faults, where the source has an air.
    pub seed: Option<u64>,
    /// The sniffer watching the case, where the source allocated one.
    pub sniffer: Option<String>,
    /// The clock the case run's steps are timed on: the case clock of the source's air for
    /// simulated boards, else the host's.
    pub clock: StepClock,
}

/// A source of boards: one implementation per kind of board.
pub trait BoardSource: Send + Sync + fmt::Debug {
    /// Acquire the boards of one case run (`case.nodes`, in that order).
    fn acquire<'a>(&'a self, run: CaseRun<'a>) -> BoxFuture<'a, Result<Acquired, InfraFailure>>;

    /// Start, before the first case run, what every case run of this source needs (the virtual
    /// DK server), so that the first cases do not wait for it. Best effort: what fails here
    /// fails again in [`BoardSource::acquire`], which reports it for each case run.
    fn warm_up(&self) {}
}

/// The boards of one case run, held until released.
pub trait CaseBoards: Send {
    /// Start the case's air witness (sniffer, handshake snapshots) once the boards are up.
    /// Boards without an air of their own can only compare snapshots of the boards' own
    /// transcripts, which they do not have: the default refuses a case that needs more.
    fn attach_air<'a>(
        &'a mut self,
        run: CaseRun<'a>,
    ) -> BoxFuture<'a, Result<Option<Witness>, String>> {
        Box::pin(async move { Witness::start_without_sniffer(run.case) })
    }

    /// Inject the faults planned before step `index` (air faults, board faults). The default
    /// supports none: a case that plans one gets an infrastructure error naming it.
    fn before_step<'a>(
        &'a mut self,
        run: CaseRun<'a>,
        index: usize,
        _consoles: &'a BTreeMap<String, Arc<Console>>,
    ) -> BoxFuture<'a, Result<(), InfraFailure>> {
        let refused = run.board_faults_due(index).next().map(|fault| {
            fault_failure(
                fault,
                index,
                format!(
                    "board fault `{}` needs a virtual board",
                    fault.action.name()
                ),
            )
        });
        Box::pin(async move { refused.map_or(Ok(()), Err) })
    }

    /// The counters of the case's air so far, where the boards are on an air of their own.
    fn air_counters(&self) -> Option<crate::events::HubCounters> {
        None
    }

    /// Control sockets of boards whose DTLS engine keeps handshake transcripts (node, socket).
    fn transcript_controls(&self) -> Vec<(String, PathBuf)> {
        Vec::new()
    }

    /// What a person can open while the boards are kept up after a failure (label, path): each
    /// node's console and the air. Empty: the source cannot keep its boards for a person.
    fn reachable(&self) -> Vec<(String, PathBuf)> {
        Vec::new()
    }

    /// Give the boards back (processes stopped, locks released, pooled boards returned).
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// An infrastructure failure of `board` outside any step.
pub fn infra(board: &str, error: InfraError) -> InfraFailure {
    InfraFailure::new(board, error)
}

/// An infrastructure failure while injecting `fault` before step `index`.
pub fn fault_failure(fault: &BoardFaultPlan, index: usize, reason: String) -> InfraFailure {
    InfraFailure::new(&fault.node, InfraError::Fault(reason))
        .at_step(format!("fault before step {}", index + 1))
}

/// Why a board did not come up.
#[derive(Debug)]
pub enum NotReady {
    /// The board is gone, unreachable or silent: not the firmware's fault.
    Infra(InfraFailure),
    /// The firmware crashed while booting: a test failure.
    Crashed(Box<Failure>),
}

impl NotReady {
    /// For people: why the board did not come up.
    pub fn reason(self) -> String {
        match self {
            NotReady::Infra(i) => i.reason(),
            NotReady::Crashed(f) => f.crash.unwrap_or(f.expected),
        }
    }
}

/// Wait until the board shows a prompt (counted after `before`: the prompt count before the
/// flash or reset), pressing Enter now and then.
pub async fn wait_ready(console: &Console, before: u64, timeout: Duration) -> Result<(), NotReady> {
    let clock = console.clock();
    let deadline = crate::exec::deadline_after(clock.now(), timeout);
    let mut changed = console.shared().subscribe();
    let mut next_poke = clock.now() + PROMPT_POKE_INTERVAL;
    loop {
        let seen = clock.observe();
        {
            let st = console.shared().lock();
            if st.prompts > before {
                return Ok(());
            }
            if let Some(fault) = st.fault.clone() {
                let tail = st.lines.tail(TAIL_LINES);
                drop(st);
                return Err(match fault {
                    BoardFault::Gone { reason } => {
                        NotReady::Infra(infra(console.name(), InfraError::Lost(reason)))
                    }
                    BoardFault::Crashed { reason, .. } => NotReady::Crashed(Box::new(Failure {
                        step_index: None,
                        location: String::new(),
                        node: console.name().into(),
                        step: "boot".into(),
                        expected: "a prompt after boot".into(),
                        got: tail.clone(),
                        crash: Some(format!(
                            "board {} crashed while booting: {reason}",
                            console.name()
                        )),
                        window: tail,
                    })),
                });
            }
        }
        let now = clock.now();
        if now >= deadline {
            let tail = console.shared().lock().lines.tail(5);
            return Err(NotReady::Infra(infra(
                console.name(),
                InfraError::NotReady(format!(
                    "prompt {:?} never appeared within {} (last lines: {:?})",
                    console.shell().prompts,
                    humantime::format_duration(timeout),
                    tail
                )),
            )));
        }
        if now >= next_poke {
            let ending = console.shell().line_ending.clone();
            if let Err(e) = console.write_all(ending.as_bytes()).await {
                return Err(NotReady::Infra(infra(
                    console.name(),
                    InfraError::console(e),
                )));
            }
            next_poke = now + PROMPT_POKE_INTERVAL;
        }
        clock
            .wait(seen, &mut changed, deadline.min(next_poke))
            .await
            .map_err(|e| NotReady::Infra(infra(console.name(), e.into())))?;
    }
}

/// The OpenThread command that erases a board's settings and reboots it (`otInstanceFactoryReset`).
pub const FACTORY_RESET_COMMAND: &str = "factoryreset";

/// Send the profile's factory-reset command and wait until the board rebooted: its boot banner
/// (when the variant has one), then a prompt (asked for with Enter, as after a flash). A board
/// without a banner can only show the prompt, which is then taken as the end of the reboot.
pub async fn factory_reset_over_console(
    console: &Console,
    banner: &[String],
    timeout: Duration,
) -> Result<(), NotReady> {
    let deadline = tokio::time::Instant::now() + timeout;
    let (lines_before, prompts_before) = {
        let st = console.shared().lock();
        (st.lines.len(), st.prompts)
    };
    let command = format!("{}{FACTORY_RESET_COMMAND}", console.shell().prefix);
    console.note("factory reset over the console (no probe to erase the settings)");
    console
        .send_line(&command)
        .await
        .map_err(|e| NotReady::Infra(infra(console.name(), InfraError::console(e))))?;
    let mut prompts_at_boot = prompts_before;
    if banner.iter().any(|b| !b.is_empty()) {
        let mut changed = console.shared().subscribe();
        loop {
            {
                let st = console.shared().lock();
                let booted = st
                    .lines
                    .find(lines_before, |l| {
                        banner.iter().any(|b| !b.is_empty() && l.text == *b)
                    })
                    .is_some();
                if booted {
                    prompts_at_boot = st.prompts;
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NotReady::Infra(infra(
                    console.name(),
                    InfraError::NotReady(format!(
                        "`{command}` did not reboot the board within {} (no boot banner)",
                        humantime::format_duration(timeout)
                    )),
                )));
            }
            let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
        }
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    wait_ready(console, prompts_at_boot, left).await
}

/// Wait until the board shows a prompt; the error says why, for people.
pub async fn board_ready(console: &Console, before: u64, timeout: Duration) -> Result<(), String> {
    wait_ready(console, before, timeout)
        .await
        .map_err(NotReady::reason)
}
