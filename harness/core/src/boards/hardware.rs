//! Real DKs of a hardware map: allocated and locked per case run, flashed with probe-rs
//! (skipped when the board already holds the image), console on the map's serial port. A case
//! with `[sniffer]` also gets a board tagged `sniffer`, locked with the others and never
//! flashed (it runs Nordic's sniffer firmware).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ot_hil_board::Profile;
use ot_hil_lab::flash::settings_area::SettingsArea;
use ot_hil_lab::flash::{FirmwareImage, Flasher, ProbeRsFlasher};
use ot_hil_lab::lock::{Allocation, Allocator, NodeRequest};

use super::{
    Acquired, AcquiredBoard, BoardSource, BoxFuture, CaseBoards, CaseRun, ConsolePort, infra,
};
use crate::air::witness::Witness;
use crate::case::Case;
use crate::infra::{InfraError, InfraFailure};
use crate::report::provenance::NodeFacts;
use crate::variants::Variant;

/// Name of the sniffer's request among a case's node requests (not a valid node name, so it
/// cannot collide with one).
pub const SNIFFER_REQUEST: &str = "(sniffer)";

/// The boards of a hardware map.
#[derive(Debug, Clone)]
pub struct HardwareBoards {
    pub allocator: Allocator,
    pub states: ot_hil_lab::flash::state::StateDir,
    /// How long a case waits for busy boards.
    pub allocate_timeout: Duration,
}

/// What a case asks of a hardware map: a board of the variant's console profile per node, and,
/// when the case has `[sniffer]`, a board tagged `sniffer`.
pub fn hardware_requests(case: &Case, profile: Profile, wants_sniffer: bool) -> Vec<NodeRequest> {
    let mut requests: Vec<NodeRequest> = case
        .nodes
        .iter()
        .map(|n| NodeRequest {
            node: n.clone(),
            profile: Some(profile),
            tags: vec![],
            platform: None,
        })
        .collect();
    if wants_sniffer {
        requests.push(NodeRequest {
            node: SNIFFER_REQUEST.into(),
            profile: None,
            tags: vec![ot_hil_lab::hwmap::SNIFFER_TAG.into()],
            platform: None,
        });
    }
    requests
}

impl BoardSource for HardwareBoards {
    fn acquire<'a>(&'a self, run: CaseRun<'a>) -> BoxFuture<'a, Result<Acquired, InfraFailure>> {
        Box::pin(async move {
            let (case, variant) = (run.case, run.variant);
            let image_path = real_image_path(variant).ok_or_else(|| {
                infra(
                    "-",
                    InfraError::acquire(format!(
                        "variant {} names no image (`[build] hex`)",
                        variant.name
                    )),
                )
            })?;
            let image = FirmwareImage::from_file(&variant.name, &image_path).map_err(|e| {
                infra(
                    "-",
                    InfraError::acquire(format!(
                        "image {} of variant {} not available: {e}",
                        image_path.display(),
                        variant.name
                    )),
                )
            })?;
            // Where the image keeps its settings: erased before each case unless kept.
            let settings = if run.options.keep_state {
                None
            } else {
                let build = build_dir(variant, &image_path);
                Some(SettingsArea::for_build(build.as_deref()).map_err(|e| {
                    infra(
                        "-",
                        InfraError::acquire(format!("variant {}: {e}", variant.name)),
                    )
                })?)
            };
            let requests = hardware_requests(case, variant.manifest.profile, case.air.sniffer);
            let allocator = self.allocator.clone();
            let (name, timeout) = (case.name.clone(), self.allocate_timeout);
            // An interrupted run drops this future; the guard then tells the blocking wait to
            // stop, so the run (whose runtime waits for its blocking threads) ends at once.
            let cancel = CancelOnDrop::default();
            let flag = cancel.0.clone();
            let allocation = tokio::task::spawn_blocking(move || {
                allocator.allocate_cancellable(&name, &requests, timeout, &flag)
            })
            .await
            .map_err(|e| {
                infra(
                    "-",
                    InfraError::acquire(format!("allocation task failed: {e}")),
                )
            })?
            .map_err(|e| infra("-", InfraError::acquire(e.to_string())))?;
            let mut boards = Vec::new();
            for (node, board, _) in allocation.nodes.iter() {
                if node == SNIFFER_REQUEST {
                    continue;
                }
                // Without a probe the board cannot be flashed: it runs what it holds, and its
                // settings go by the firmware's own factory reset.
                let flash = match board.probe {
                    Some(_) => Some((
                        Box::new(
                            ProbeRsFlasher::new(board, self.states.clone())
                                .map_err(|e| infra(node, InfraError::acquire(e.to_string())))?
                                .with_settings(settings.clone()),
                        ) as Box<dyn Flasher + Send>,
                        image.clone(),
                    )),
                    None => None,
                };
                let note = match (&flash, &settings) {
                    (Some(_), Some(area)) => format!(
                        "board {} on {}; settings partition {area} erased before the case \
                         (by the chip erase when it is programmed)",
                        board.id,
                        board.port.display()
                    ),
                    (Some(_), None) => format!(
                        "board {} on {}; settings kept (--keep-state)",
                        board.id,
                        board.port.display()
                    ),
                    (None, _) => format!(
                        "board {} on {}; no probe: not flashed, runs the image it holds",
                        board.id,
                        board.port.display()
                    ),
                };
                boards.push(AcquiredBoard {
                    tap: None,
                    node: node.clone(),
                    port: ConsolePort::Serial {
                        path: board.port.clone(),
                        baud: board.baud,
                    },
                    shell: variant.shell.clone(),
                    banner: variant.manifest.banner.clone(),
                    note: Some(note),
                    factory_reset: flash.is_none() && settings.is_some(),
                    flash,
                    facts: NodeFacts {
                        source: "board",
                        board_id: Some(board.id.clone()),
                        probe_serial: board.probe.as_ref().map(|p| p.serial.clone()),
                        port: Some(board.port.display().to_string()),
                    },
                });
            }
            let sniffer_port = allocation
                .board_for(SNIFFER_REQUEST)
                .map(|b| b.port.clone());
            let sniffer = sniffer_port.as_ref().map(|p| p.display().to_string());
            let held = Locked {
                _allocation: allocation,
                sniffer_port,
            };
            Ok(Acquired {
                clock: crate::step_clock::StepClock::Real,
                boards,
                held: Box::new(held),
                seed: None,
                sniffer,
            })
        })
    }
}

/// Locked boards of one case run; the locks go with it.
struct Locked {
    _allocation: Allocation,
    /// Serial port of the sniffer board, for a case with `[sniffer]`.
    sniffer_port: Option<PathBuf>,
}

impl CaseBoards for Locked {
    fn attach_air<'a>(
        &'a mut self,
        run: CaseRun<'a>,
    ) -> BoxFuture<'a, Result<Option<Witness>, String>> {
        Box::pin(async move {
            match &self.sniffer_port {
                Some(port) => {
                    Witness::start_on_port(run.case, &port.display().to_string(), run.log_dir)
                        .map(Some)
                }
                None => Witness::start_without_sniffer(run.case),
            }
        })
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        drop(self);
        Box::pin(async {})
    }
}

/// The real image of a variant: `[build] hex`, relative to the variants directory or to the
/// repository root above it.
fn real_image_path(variant: &Variant) -> Option<PathBuf> {
    let hex = variant.manifest.build.as_ref()?.hex.clone()?;
    resolve_build_path(variant, &hex)
}

/// A path of `[build]`: absolute, or relative to the variants directory or to the repository
/// root above it (the first that exists, else the latter).
fn resolve_build_path(variant: &Variant, path: &Path) -> Option<PathBuf> {
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    let dir = variant.manifest.path.parent()?;
    let candidates: Vec<PathBuf> = [
        Some(dir.join(path)),
        dir.parent()
            .and_then(Path::parent)
            .map(|root| root.join(path)),
    ]
    .into_iter()
    .flatten()
    .collect();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .or_else(|| candidates.last().cloned())
}

/// The build folder of a variant's image: `[build] dir` (relative like `hex`), else the folder
/// above `zephyr/` when the image is `<build>/zephyr/zephyr.hex` as `west build` leaves it.
fn build_dir(variant: &Variant, image: &Path) -> Option<PathBuf> {
    if let Some(dir) = variant.manifest.build.as_ref().and_then(|b| b.dir.as_ref()) {
        return Some(resolve_build_path(variant, dir).unwrap_or_else(|| dir.clone()));
    }
    let parent = image.parent()?;
    (parent.file_name()? == "zephyr").then(|| parent.parent().map(Path::to_path_buf))?
}

/// Sets its flag when dropped: the owner (a case run's future) went away.
#[derive(Default)]
struct CancelOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
