//! Virtual DKs: a fresh virtual DK process per node per case run, on the run's own air (cases
//! running at once, on the same channel and PAN, must not hear each other any more than two runs
//! may), flashed through its control socket. The only source that injects faults: the air's
//! (`[faults]`, `--air-*`) and the boards' (`[[faults.board]]`, as control requests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ot_hil_air::Hub;
use ot_hil_board::control::ControlRequest;
use ot_hil_lab::flash::Flasher;

use super::{
    Acquired, AcquiredBoard, BoardSource, BoxFuture, CaseBoards, CaseRun, ConsolePort, board_ready,
    fault_failure, infra,
};
use crate::air::witness::Witness;
use crate::case::faults::BoardAction;
use crate::console::Console;
use crate::events::HubCounters;
use crate::infra::{InfraError, InfraFailure};
use crate::report::provenance::NodeFacts;
use crate::resilience::air_seed;
use crate::step_clock::{ClockMode, StepClock};
use crate::virtual_lab::{ControlError, VdkCommand, VirtualDk};

/// How long a fault request to a virtual DK may take.
const FAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Virtual DKs started with `vdk` (`ot-hil vdk`, or a separate `ot-hil-vdk`).
#[derive(Debug, Clone)]
pub struct VirtualBoards {
    pub vdk: VdkCommand,
}

impl BoardSource for VirtualBoards {
    fn acquire<'a>(&'a self, run: CaseRun<'a>) -> BoxFuture<'a, Result<Acquired, InfraFailure>> {
        Box::pin(async move {
            let dir = run.work_dir()?;
            let seed = air_seed(&run.case.faults, run.options, run.attempt);
            let clocked = run.options.clock == ClockMode::Virtual;
            let hub = start_hub(&dir, seed, clocked)?;
            let mut held = OnAir {
                vdk: self.vdk.clone(),
                hub,
                dks: Vec::new(),
            };
            let clock = held.hub.clock();
            // Every board's process first, then each one's wait: they start up side by side.
            for (rank, node) in run.case.nodes.iter().enumerate() {
                let dk = VirtualDk::start(
                    &self.vdk,
                    held.hub.socket_path(),
                    &dir,
                    node,
                    Some(&run.log_dir.join(format!("{node}.vdk.log"))),
                    clocked.then(|| board_seed(seed, rank)),
                )
                .map_err(|e| infra(node, InfraError::acquire(e.to_string())))?;
                held.dks.push(dk);
            }
            for (rank, dk) in held.dks.iter_mut().enumerate() {
                dk.ready()
                    .await
                    .map_err(|e| infra(&dk.board, InfraError::acquire(e.to_string())))?;
                if let (Some(clock), Some(radio)) = (&clock, dk.radio()) {
                    dk.tap = Some(clock.expect_board(&radio, rank as u32));
                }
            }
            held.apply_air_faults(run, None)?;
            let boards = held
                .dks
                .iter()
                .map(|dk| AcquiredBoard {
                    node: dk.board.clone(),
                    port: ConsolePort::Serial {
                        path: dk.tty.clone(),
                        baud: 115_200,
                    },
                    shell: run.variant.shell.clone(),
                    banner: run.variant.manifest.banner.clone(),
                    note: None,
                    flash: Some((
                        Box::new(dk.probe()) as Box<dyn Flasher + Send>,
                        run.variant.image.clone(),
                    )),
                    // A new process per case run: its flash is blank until the runner flashes
                    // it, which erases the settings.
                    factory_reset: false,
                    facts: NodeFacts {
                        source: "virtual",
                        port: Some(dk.tty.display().to_string()),
                        ..NodeFacts::default()
                    },
                    tap: dk.tap.clone(),
                })
                .collect();
            Ok(Acquired {
                clock: clock.map_or(StepClock::Real, StepClock::on),
                boards,
                held: Box::new(held),
                seed: Some(seed),
                sniffer: None,
            })
        })
    }

    fn warm_up(&self) {
        if let Some(server) = &self.vdk.fork_server {
            let _ = server.start_now();
        }
    }
}

/// The seed of the `rank`-th board of a case run on the case clock, from the air's seed: every
/// board differs, and the same case run gives every board the same seed again.
fn board_seed(air_seed: u64, rank: usize) -> u64 {
    air_seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(rank as u64 + 1)
}

/// Set up the air of a case run (`before_step` = None: at set-up, before flashing): all-link
/// faults from the command line (at set-up), else the case's, and the case's per-link faults
/// between its nodes' radios (`radio_of` a node: its socket on the hub), when the case's
/// `from_step` comes.
pub(super) fn apply_air_faults(
    hub: &Hub,
    run: CaseRun<'_>,
    before_step: Option<usize>,
    radio_of: impl Fn(&str) -> Option<PathBuf>,
) -> Result<(), InfraFailure> {
    let options = run.options;
    if before_step.is_none()
        && let Some(cli) = &options.air_faults
    {
        hub.set_faults(cli.clone());
    }
    let due = run.case.faults.air.as_ref().filter(|a| match before_step {
        None => a.from_step == 0,
        Some(i) => a.from_step == i && i > 0,
    });
    let Some(air) = due else {
        return Ok(());
    };
    if options.air_faults.is_none() && air.links.is_empty() {
        hub.set_faults(air.config.clone());
    }
    let socket_of = |node: &str| -> Result<PathBuf, InfraFailure> {
        radio_of(node).ok_or_else(|| {
            infra(
                node,
                InfraError::Fault("no radio to inject link faults on".into()),
            )
        })
    };
    for (from, to) in &air.links {
        hub.set_link_faults(&socket_of(from)?, &socket_of(to)?, Some(air.config.clone()));
    }
    Ok(())
}

/// Start a case's air hub in `dir`, on the case clock when `clocked`.
pub(super) fn start_hub(dir: &Path, seed: u64, clocked: bool) -> Result<Arc<Hub>, InfraFailure> {
    let hub = if clocked {
        Hub::start_clocked(dir, seed)
    } else {
        Hub::start_seeded(dir, seed)
    };
    hub.map(Arc::new).map_err(|e| {
        infra(
            "-",
            InfraError::acquire(format!(
                "failed to start the air hub in {}: {e}",
                dir.display()
            )),
        )
    })
}

/// The counters of a case's air hub, as the events carry them.
pub(super) fn hub_counters(hub: &Hub) -> HubCounters {
    let s = hub.stats();
    HubCounters {
        frames_in: s.frames_in,
        frames_out: s.frames_out,
        frames_to_sniffer: s.frames_to_monitors,
        injected_losses: s.injected_losses,
        injected_duplicates: s.injected_duplicates,
        injected_corruptions: s.injected_corruptions,
        receiver_overruns: s.receiver_overruns,
        malformed: s.malformed,
    }
}

/// The case's air witness on `hub`: a virtual sniffer (started by `vdk`) when the case has one.
pub(super) async fn watch_air(
    run: CaseRun<'_>,
    vdk: &VdkCommand,
    hub: &Arc<Hub>,
) -> Result<Option<Witness>, String> {
    let variants_dir = run.variant.image.path.parent().unwrap_or(Path::new("."));
    let witness = Witness::start_virtual(run.case, vdk, hub, variants_dir, run.log_dir).await?;
    // The sniffer tunes its radio once its capture starts; the case's first frame must not
    // pass before it does (on the case clock the steps are microseconds away).
    if run.case.air.sniffer
        && !hub
            .monitor_on(run.case.air.channel, SNIFFER_TUNE_TIMEOUT)
            .await
    {
        return Err(format!(
            "the sniffer did not tune to channel {} within {}",
            run.case.air.channel,
            humantime::format_duration(SNIFFER_TUNE_TIMEOUT)
        ));
    }
    Ok(witness)
}

/// How long a virtual sniffer may take to tune its radio after its capture started.
const SNIFFER_TUNE_TIMEOUT: Duration = Duration::from_secs(10);

/// The virtual DKs of one case run and their air.
struct OnAir {
    vdk: VdkCommand,
    /// Shared with the case's air witness, which reads its counters.
    hub: Arc<Hub>,
    dks: Vec<VirtualDk>,
}

impl OnAir {
    fn apply_air_faults(
        &self,
        run: CaseRun<'_>,
        before_step: Option<usize>,
    ) -> Result<(), InfraFailure> {
        apply_air_faults(&self.hub, run, before_step, |node| {
            self.dks
                .iter()
                .find(|d| d.board == node)
                .and_then(VirtualDk::radio)
        })
    }

    /// Inject the board faults planned before step `index` of this attempt.
    async fn inject_board_faults(
        &self,
        run: CaseRun<'_>,
        index: usize,
        consoles: &BTreeMap<String, Arc<Console>>,
    ) -> Result<(), InfraFailure> {
        for fault in run.board_faults_due(index) {
            let failed = |reason: String| fault_failure(fault, index, reason);
            let Some(dk) = self.dks.iter().find(|d| d.board == fault.node) else {
                return Err(failed(format!(
                    "board fault `{}` needs a virtual board",
                    fault.action.name()
                )));
            };
            let console = consoles.get(&fault.node);
            let prompts_before = console.map(|c| c.shared().lock().prompts).unwrap_or(0);
            if let Some(c) = console {
                c.note(&format!("injected fault: {}", fault.action.name()));
                if fault.action == BoardAction::Reset {
                    // The case asked for this reboot: its banner is not a crash.
                    c.arm_crash_detection(false);
                }
            }
            let control = dk.control.clone();
            let request = fault.action.control_request();
            if let Some(tap) = &dk.tap {
                tap.control_sent();
            }
            let sent = tokio::task::spawn_blocking(move || fault_request(&control, &request)).await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(failed(format!("fault request failed: {e}"))),
                Err(e) => return Err(failed(format!("fault request task failed: {e}"))),
            }
            if fault.action == BoardAction::Reset
                && let Some(c) = console
            {
                board_ready(c, prompts_before, run.ready_timeout)
                    .await
                    .map_err(|e| failed(format!("after the requested reset: {e}")))?;
                c.arm_crash_detection(true);
            }
        }
        Ok(())
    }
}

/// Send one fault request to a virtual DK.
fn fault_request(control: &Path, request: &ControlRequest) -> std::io::Result<()> {
    crate::virtual_lab::control_request(control, request, FAULT_REQUEST_TIMEOUT)
        .map(|_| ())
        .map_err(|e| match e {
            ControlError::Refused(message) => {
                std::io::Error::other(format!("`{request}` refused: {message}"))
            }
            e => e.into_io(),
        })
}

impl CaseBoards for OnAir {
    fn attach_air<'a>(
        &'a mut self,
        run: CaseRun<'a>,
    ) -> BoxFuture<'a, Result<Option<Witness>, String>> {
        Box::pin(watch_air(run, &self.vdk, &self.hub))
    }

    fn before_step<'a>(
        &'a mut self,
        run: CaseRun<'a>,
        index: usize,
        consoles: &'a BTreeMap<String, Arc<Console>>,
    ) -> BoxFuture<'a, Result<(), InfraFailure>> {
        Box::pin(async move {
            self.apply_air_faults(run, Some(index))?;
            self.inject_board_faults(run, index, consoles).await
        })
    }

    fn air_counters(&self) -> Option<HubCounters> {
        Some(hub_counters(&self.hub))
    }

    fn transcript_controls(&self) -> Vec<(String, PathBuf)> {
        self.dks
            .iter()
            .map(|d| (d.board.clone(), d.control.clone()))
            .collect()
    }

    fn reachable(&self) -> Vec<(String, PathBuf)> {
        self.dks
            .iter()
            .map(|d| (d.board.clone(), d.tty.clone()))
            .chain(std::iter::once((
                "air".to_string(),
                self.hub.socket_path().to_path_buf(),
            )))
            .collect()
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let OnAir { hub, dks, .. } = *self;
            for dk in dks {
                dk.stop().await;
            }
            drop(hub);
        })
    }
}
