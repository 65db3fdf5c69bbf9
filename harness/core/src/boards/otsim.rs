//! Real OpenThread: each node is a process of upstream OpenThread's simulation CLI (the
//! variant's `[program]`, `ot-cli-ftd`), started per case run. A case run leases one
//! `PORT_OFFSET` (its own radio group and ports, so cases running at once never hear each other),
//! numbers its nodes 1..n in the case's order and starts them in a fresh working directory (the
//! simulation keeps its settings in `tmp/<offset>_<id>.flash` there: a reused directory would
//! boot the next case with the previous case's dataset). Each process runs on a PTY in its own
//! process group and ends with its console at the end of the case. The air is the offset's
//! multicast group: a sniffer joins it for `[sniffer]` and `[[snapshot]]` cases.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::virtual_dk::{apply_air_faults, start_hub, watch_air};
use super::{
    Acquired, AcquiredBoard, BoardSource, BoxFuture, CaseBoards, CaseRun, ConsolePort, infra,
};
use crate::air::witness::Witness;
use crate::error_text::error_chain;
use crate::infra::{InfraError, InfraFailure};
use crate::otsim::{NodeCommand, OffsetLease, PortOffsets, RadioSniffer};
use crate::report::provenance::NodeFacts;
use crate::resilience::air_seed;
use crate::step_clock::{ClockMode, StepClock};
use crate::virtual_lab::VdkCommand;
use ot_hil_air::Hub;

/// Port offsets one run may lease: more than any `-j` a host runs.
const OFFSETS_PER_RUN: u16 = 64;
/// How long a case waits for an offset while all are leased before it checks again.
const LEASE_RETRY: Duration = Duration::from_millis(200);

/// Boards that are processes of the variant's host program.
#[derive(Debug)]
pub struct SimulatedBoards {
    offsets: Arc<PortOffsets>,
    returned: Arc<Notify>,
    /// The virtual DK command, for the sniffer of cases on the case clock.
    vdk: Option<VdkCommand>,
}

impl Default for SimulatedBoards {
    fn default() -> Self {
        SimulatedBoards::new()
    }
}

impl SimulatedBoards {
    /// Takes a window of port offsets of its own: two runs on one host start from different
    /// windows (by process id), so they do not share a radio either. Whether loopback carries
    /// multicast (the real-time simulation radio needs it) is checked when a case needs it.
    pub fn new() -> SimulatedBoards {
        let windows = 20u16;
        let window = u16::try_from(std::process::id() % u32::from(windows)).unwrap_or(0);
        SimulatedBoards::with_offsets(PortOffsets::new(
            ot_hil_wire::otsim::DEFAULT_PORT_BASE,
            1 + window * OFFSETS_PER_RUN,
            OFFSETS_PER_RUN,
        ))
    }

    /// Sniff cases on the case clock with virtual sniffers started by `vdk`.
    pub fn with_sniffer(mut self, vdk: VdkCommand) -> SimulatedBoards {
        self.vdk = Some(vdk);
        self
    }

    /// Boards on the given offsets.
    pub fn with_offsets(offsets: PortOffsets) -> SimulatedBoards {
        SimulatedBoards {
            offsets: Arc::new(offsets),
            returned: Arc::new(Notify::new()),
            vdk: None,
        }
    }

    async fn lease(&self, nodes: usize) -> Result<OffsetLease, InfraFailure> {
        loop {
            let notified = self.returned.notified();
            match self.offsets.lease(nodes) {
                Ok(Some(lease)) => return Ok(lease),
                Ok(None) => {
                    let _ = tokio::time::timeout(LEASE_RETRY, notified).await;
                }
                Err(e) => return Err(infra("-", InfraError::acquire(error_chain(&e)))),
            }
        }
    }
}

impl BoardSource for SimulatedBoards {
    fn acquire<'a>(&'a self, run: CaseRun<'a>) -> BoxFuture<'a, Result<Acquired, InfraFailure>> {
        Box::pin(async move {
            let program = run.variant.manifest.program.as_ref().ok_or_else(|| {
                infra(
                    "-",
                    InfraError::acquire(format!(
                        "variant {} has no [program] to run",
                        run.variant.name
                    )),
                )
            })?;
            if !program.path.is_file() {
                return Err(infra(
                    "-",
                    InfraError::acquire(format!(
                        "{} not found: build it with {}",
                        program.path.display(),
                        program.build.display()
                    )),
                ));
            }
            if let Some(vt) = program
                .virtual_time_path
                .as_ref()
                .filter(|_| run.options.clock == ClockMode::Virtual)
            {
                if !vt.is_file() {
                    return Err(infra(
                        "-",
                        InfraError::acquire(format!(
                            "{} not found: build it with {} (or run with --clock real)",
                            vt.display(),
                            program.build.display()
                        )),
                    ));
                }
                return on_case_clock(run, vt, &program.version, self.vdk.clone()).await;
            }
            crate::otsim::loopback_multicast(false)
                .map_err(|e| infra("-", InfraError::acquire(error_chain(&e))))?;
            // The simulation's radio is a multicast group with no place to drop or delay a
            // frame: a case that asks for air faults would run without them and prove nothing.
            if run.case.faults.air.is_some() || run.options.air_faults.is_some() {
                return Err(infra(
                    "-",
                    InfraError::acquire(
                        "air faults need the virtual air; the simulation radio cannot inject them",
                    ),
                ));
            }
            let lease = self.lease(run.case.nodes.len()).await?;
            // A fresh directory per attempt: the simulation keeps its settings in
            // tmp/<offset>_<id>.flash there, so no case inherits another's dataset.
            let dir = run.work_dir()?;
            let commands = NodeCommand::for_case(&program.path, run.case.nodes.len(), &lease, &dir)
                .map_err(|e| infra("-", InfraError::acquire(error_chain(&e))))?;
            std::fs::create_dir_all(run.log_dir).map_err(|e| {
                infra(
                    "-",
                    InfraError::acquire(format!("failed to create {}: {e}", run.log_dir.display())),
                )
            })?;
            let boards = run
                .case
                .nodes
                .iter()
                .zip(commands)
                .map(|(node, mut command)| {
                    // OpenThread's log (assertions included) goes to a file, as the console of a
                    // real board shows only the CLI; the file lands next to the console log.
                    command.log_file = Some(node_log(run.log_dir, node));
                    AcquiredBoard {
                        tap: None,
                        node: node.clone(),
                        port: ConsolePort::Process {
                            program: "/bin/sh".into(),
                            args: vec!["-c".into(), command.shell_line()],
                        },
                        shell: run.variant.shell.clone(),
                        banner: run.variant.manifest.banner.clone(),
                        note: Some(format!(
                            "node id {}, PORT_OFFSET {}",
                            command.node_id, command.port_offset
                        )),
                        flash: None,
                        factory_reset: false,
                        facts: NodeFacts {
                            source: "host",
                            board_id: Some(format!(
                                "{} node {} offset {}",
                                program.version, command.node_id, command.port_offset
                            )),
                            ..NodeFacts::default()
                        },
                    }
                })
                .collect();
            Ok(Acquired {
                clock: crate::step_clock::StepClock::Real,
                boards,
                held: Box::new(Simulated {
                    lease: Some(lease),
                    returned: self.returned.clone(),
                }),
                seed: None,
                sniffer: None,
            })
        })
    }
}

/// The `PORT_BASE` of nodes on the case clock: each case run has its own directory, and so its
/// own `vt.<port>.sock` names (the simulation makes them relative to its working directory).
const CASE_CLOCK_PORT_BASE: u16 = 9000;

/// A case run of real OpenThread nodes on the case clock: the case's air hub is their event
/// dispatcher ([`ot_hil_air::Hub::listen_sim_nodes`]). Their frames are frames of the air, so
/// sniffers, snapshots and air faults work as for virtual DKs.
async fn on_case_clock(
    run: CaseRun<'_>,
    program: &Path,
    version: &str,
    vdk: Option<VdkCommand>,
) -> Result<Acquired, InfraFailure> {
    let dir = run.work_dir()?;
    let seed = air_seed(&run.case.faults, run.options, run.attempt);
    let hub = start_hub(&dir, seed, true)?;
    hub.listen_sim_nodes(CASE_CLOCK_PORT_BASE).map_err(|e| {
        infra(
            "-",
            InfraError::acquire(format!(
                "failed to listen for OpenThread nodes in {}: {e}",
                dir.display()
            )),
        )
    })?;
    let clock = hub
        .clock()
        .ok_or_else(|| infra("-", InfraError::acquire("the air hub has no case clock")))?;
    let radio_of = |id: usize| {
        dir.join(format!(
            "vt.{}.sock",
            usize::from(CASE_CLOCK_PORT_BASE) + id
        ))
    };
    apply_air_faults(&hub, run, None, |node| {
        run.case
            .nodes
            .iter()
            .position(|n| n == node)
            .map(|i| radio_of(i + 1))
    })?;
    let boards = run
        .case
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let id = i + 1;
            AcquiredBoard {
                tap: Some(clock.expect_board(&radio_of(id), i as u32)),
                node: node.clone(),
                port: ConsolePort::Process {
                    program: "/bin/sh".into(),
                    args: vec![
                        "-c".into(),
                        crate::otsim::case_clock_shell_line(program, id, &dir),
                    ],
                },
                shell: run.variant.shell.clone(),
                banner: run.variant.manifest.banner.clone(),
                note: Some(format!("node id {id}, on the case clock")),
                flash: None,
                // A fresh working directory per case run holds its settings.
                factory_reset: false,
                facts: NodeFacts {
                    source: "host",
                    board_id: Some(format!("{version} node {id} (virtual time)")),
                    ..NodeFacts::default()
                },
            }
        })
        .collect();
    let radios = (1..=run.case.nodes.len()).map(radio_of).collect();
    Ok(Acquired {
        clock: StepClock::on(clock),
        boards,
        held: Box::new(OnCaseClock { hub, vdk, radios }),
        seed: Some(seed),
        sniffer: None,
    })
}

/// Real OpenThread nodes on a case's air and clock.
struct OnCaseClock {
    hub: Arc<Hub>,
    vdk: Option<VdkCommand>,
    /// Each node's socket on the hub, in node order.
    radios: Vec<PathBuf>,
}

impl CaseBoards for OnCaseClock {
    fn attach_air<'a>(
        &'a mut self,
        run: CaseRun<'a>,
    ) -> BoxFuture<'a, Result<Option<Witness>, String>> {
        Box::pin(async move {
            if run.case.air.is_empty() {
                return Ok(None);
            }
            let vdk = self
                .vdk
                .as_ref()
                .ok_or_else(|| "no virtual sniffer to watch the air with".to_string())?;
            watch_air(run, vdk, &self.hub).await
        })
    }

    fn air_counters(&self) -> Option<crate::events::HubCounters> {
        Some(super::virtual_dk::hub_counters(&self.hub))
    }

    fn before_step<'a>(
        &'a mut self,
        run: CaseRun<'a>,
        index: usize,
        _consoles: &'a std::collections::BTreeMap<String, Arc<crate::console::Console>>,
    ) -> BoxFuture<'a, Result<(), InfraFailure>> {
        let applied = apply_air_faults(&self.hub, run, Some(index), |node| {
            run.case
                .nodes
                .iter()
                .position(|n| n == node)
                .and_then(|i| self.radios.get(i).cloned())
        });
        let refused = run.board_faults_due(index).next().map(|fault| {
            super::fault_failure(
                fault,
                index,
                format!(
                    "board fault `{}` needs a virtual board",
                    fault.action.name()
                ),
            )
        });
        Box::pin(async move {
            applied?;
            refused.map_or(Ok(()), Err)
        })
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            drop(self);
        })
    }
}

/// One case run's offset. The processes belong to their consoles, which the runner closes
/// (killing each process group) before releasing this; the working directory goes with the run's.
struct Simulated {
    lease: Option<OffsetLease>,
    returned: Arc<Notify>,
}

impl CaseBoards for Simulated {
    fn attach_air<'a>(
        &'a mut self,
        run: CaseRun<'a>,
    ) -> BoxFuture<'a, Result<Option<Witness>, String>> {
        Box::pin(async move {
            if run.case.air.is_empty() {
                return Ok(None);
            }
            let lease = self
                .lease
                .as_ref()
                .ok_or_else(|| "the port offset is already released".to_string())?;
            let port = lease.group_port().map_err(|e| error_chain(&e))?;
            let sniffer = RadioSniffer::bind(port).map_err(|e| error_chain(&e))?;
            Witness::start_on_radio(run.case, sniffer, run.log_dir)
        })
    }

    fn release(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        drop(self.lease.take());
        self.returned.notify_waiters();
        Box::pin(async move {
            drop(self);
        })
    }
}

/// The node's OpenThread log file for `node` in `log_dir`.
pub fn node_log(log_dir: &std::path::Path, node: &str) -> PathBuf {
    log_dir.join(format!("{node}.ot.log"))
}
