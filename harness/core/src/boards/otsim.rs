//! Real OpenThread: each node is a process of upstream OpenThread's simulation CLI (the
//! variant's `[program]`, `ot-cli-ftd`), started per case run. A case run leases one
//! `PORT_OFFSET` (its own radio group and ports, so cases running at once never hear each other),
//! numbers its nodes 1..n in the case's order and starts them in a fresh working directory (the
//! simulation keeps its settings in `tmp/<offset>_<id>.flash` there: a reused directory would
//! boot the next case with the previous case's dataset). Each process runs on a PTY in its own
//! process group and ends with its console at the end of the case. The air is the offset's
//! multicast group: a sniffer joins it for `[sniffer]` and `[[snapshot]]` cases.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{
    Acquired, AcquiredBoard, BoardSource, BoxFuture, CaseBoards, CaseRun, ConsolePort, infra,
};
use crate::air::witness::Witness;
use crate::exec::InfraFailure;
use crate::otsim::{NodeCommand, OffsetLease, PortOffsets, RadioSniffer};
use crate::report::error_chain;
use crate::report::provenance::NodeFacts;

/// Port offsets one run may lease: more than any `-j` a host runs.
const OFFSETS_PER_RUN: u16 = 64;
/// How long a case waits for an offset while all are leased before it checks again.
const LEASE_RETRY: Duration = Duration::from_millis(200);

/// Boards that are processes of the variant's host program.
#[derive(Debug)]
pub struct SimulatedBoards {
    offsets: Arc<PortOffsets>,
    returned: Arc<Notify>,
}

impl SimulatedBoards {
    /// Checks that loopback carries multicast (the simulation radio needs it), and takes a
    /// window of port offsets of its own: two runs on one host start from different windows
    /// (by process id), so they do not share a radio either.
    pub fn new() -> Result<SimulatedBoards, crate::otsim::OtSimError> {
        crate::otsim::loopback_multicast(false)?;
        let windows = 20u16;
        let window = u16::try_from(std::process::id() % u32::from(windows)).unwrap_or(0);
        Ok(SimulatedBoards::with_offsets(PortOffsets::new(
            ot_hil_wire::otsim::DEFAULT_PORT_BASE,
            1 + window * OFFSETS_PER_RUN,
            OFFSETS_PER_RUN,
        )))
    }

    /// Boards on the given offsets.
    pub fn with_offsets(offsets: PortOffsets) -> SimulatedBoards {
        SimulatedBoards {
            offsets: Arc::new(offsets),
            returned: Arc::new(Notify::new()),
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
                Err(e) => return Err(infra("-", error_chain(&e))),
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
                    format!("variant {} has no [program] to run", run.variant.name),
                )
            })?;
            if !program.path.is_file() {
                return Err(infra(
                    "-",
                    format!(
                        "{} not found: build it with {}",
                        program.path.display(),
                        program.build.display()
                    ),
                ));
            }
            // The simulation's radio is a multicast group with no place to drop or delay a
            // frame: a case that asks for air faults would run without them and prove nothing.
            if run.case.faults.air.is_some() || run.options.air_faults.is_some() {
                return Err(infra(
                    "-",
                    "air faults need the virtual air; the simulation radio cannot inject them"
                        .into(),
                ));
            }
            let lease = self.lease(run.case.nodes.len()).await?;
            // A fresh directory per attempt: the simulation keeps its settings in
            // tmp/<offset>_<id>.flash there, so no case inherits another's dataset.
            let dir = run.work_dir()?;
            let commands = NodeCommand::for_case(&program.path, run.case.nodes.len(), &lease, &dir)
                .map_err(|e| infra("-", error_chain(&e)))?;
            std::fs::create_dir_all(run.log_dir).map_err(|e| {
                infra(
                    "-",
                    format!("failed to create {}: {e}", run.log_dir.display()),
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
