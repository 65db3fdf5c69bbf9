//! Flashing real DKs through their debug probe with probe-rs, as a library (no `probe-rs` binary).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use probe_rs::architecture::arm::ArmError;
use probe_rs::flashing::DownloadOptions;
use probe_rs::probe::DebugProbeSelector;
use probe_rs::probe::list::Lister;
use probe_rs::{MemoryInterface, Permissions, Session};

use super::image::{self, ChipMemory, LoadedImage, NRF52840};
use super::settings_area::{FlashPlan, SettingsArea};
use super::state::{BoardState, StateDir};
use super::{FirmwareImage, FlashError, FlashOutcome, Flasher};
use crate::hwmap::{Board, ProbeSelector, same_serial};

/// Programs one board through probe-rs: erase, program, verify, reset; skips the programming when the
/// board provably holds the image already.
#[derive(Debug, Clone)]
pub struct ProbeRsFlasher {
    board_id: String,
    probe: ProbeSelector,
    chip: String,
    states: StateDir,
    /// Attempts to open the probe and attach before giving up (a J-Link can be briefly absent while it
    /// re-enumerates, or busy while another tool releases it).
    pub connect_attempts: u32,
    pub retry_pause: Duration,
    /// Erase the whole chip before programming (default), so the settings partition starts empty, as
    /// after a virtual DK's `flash`; `false` erases only the sectors the image covers.
    pub chip_erase: bool,
    /// The settings partition erased whenever the chip is not erased as a whole (the image was
    /// current, or sector-wise programming), so each case starts factory-fresh; `None` keeps
    /// the settings (`--keep-state`).
    pub settings: Option<SettingsArea>,
}

impl ProbeRsFlasher {
    /// A flasher for a board of the hardware map (an nRF52840 unless [`ProbeRsFlasher::with_chip`]).
    pub fn new(board: &Board, states: StateDir) -> Result<Self, FlashError> {
        let probe = board.probe.clone().ok_or_else(|| FlashError::Probe {
            board: board.id.clone(),
            message: "the hardware map gives no probe for this board".into(),
        })?;
        Ok(ProbeRsFlasher {
            board_id: board.id.clone(),
            probe,
            chip: NRF52840.to_string(),
            states,
            connect_attempts: 3,
            retry_pause: Duration::from_millis(500),
            chip_erase: true,
            settings: Some(super::settings_area::NRF52840DK_DEFAULT),
        })
    }

    /// Erase this settings area to give a case a fresh board (`None`: keep the settings).
    pub fn with_settings(mut self, settings: Option<SettingsArea>) -> Self {
        self.settings = settings;
        self
    }

    /// What [`Flasher::flash`] will do with `image`, from the state file alone (the read-back
    /// that confirms a skipped programming needs the probe).
    pub fn plan(&self, image: &FirmwareImage) -> FlashPlan {
        let recorded = self.states.load(&self.board_id).map(|s| s.sha256);
        FlashPlan::new(
            &image.sha256,
            recorded.as_deref(),
            self.chip_erase,
            self.settings.clone(),
        )
    }

    pub fn with_chip(mut self, chip: &str) -> Self {
        self.chip = chip.to_string();
        self
    }

    /// The command that unlocks an APPROTECT-locked chip (erases everything, including UICR).
    pub fn recover_command(&self) -> String {
        recover_command(&self.chip, &self.probe)
    }

    /// Checks an image against the chip without touching the probe.
    pub fn preflight(&self, image: &FirmwareImage) -> Result<LoadedImage, FlashError> {
        let rejected = |message: String| FlashError::ImageRejected {
            board: self.board_id.clone(),
            path: image.path.clone(),
            message,
        };
        let loaded = image::load_image(&image.path).map_err(|e| rejected(e.to_string()))?;
        let memory = ChipMemory::for_chip(&self.chip).map_err(|e| rejected(e.to_string()))?;
        image::preflight(&loaded, &memory).map_err(|e| rejected(e.to_string()))?;
        // Erasing settings the image itself writes would corrupt the image on every case.
        if let Some(area) = &self.settings
            && let Some(seg) = loaded.segments.iter().find(|s| {
                s.range().start < area.address + area.size && area.address < s.range().end
            })
        {
            return Err(rejected(format!(
                "it writes {:#010x}..{:#010x}, inside the settings partition {area} that is erased \
                 before each case (check the build's partition layout, or run with --keep-state)",
                seg.range().start,
                seg.range().end
            )));
        }
        Ok(loaded)
    }

    /// Resolves the map's probe (serial, possibly unpadded) to the exact probe attached.
    fn selector(&self) -> Result<DebugProbeSelector, FlashError> {
        let probes = crate::probes::list_probes();
        let found = probes.iter().find(|p| {
            p.serial_number
                .as_deref()
                .is_some_and(|s| same_serial(s, &self.probe.serial))
                && self.probe.vendor_id.is_none_or(|v| v == p.vendor_id)
                && self.probe.product_id.is_none_or(|v| v == p.product_id)
        });
        let Some(found) = found else {
            let attached: Vec<String> = probes.iter().map(|p| p.selector()).collect();
            return Err(self.probe_error(format!(
                "probe {} is not attached (attached: {})",
                self.probe,
                if attached.is_empty() {
                    "none".to_string()
                } else {
                    attached.join(", ")
                }
            )));
        };
        found
            .selector()
            .parse::<DebugProbeSelector>()
            .map_err(|e| self.probe_error(format!("bad probe selector {}: {e}", found.selector())))
    }

    fn probe_error(&self, message: String) -> FlashError {
        FlashError::Probe {
            board: self.board_id.clone(),
            message,
        }
    }

    /// Opens the probe and attaches to the chip, retrying transient failures.
    fn session(&self) -> Result<Session, FlashError> {
        let mut last = String::new();
        for attempt in 1..=self.connect_attempts.max(1) {
            if attempt > 1 {
                std::thread::sleep(self.retry_pause);
            }
            let selector = match self.selector() {
                Ok(s) => s,
                Err(FlashError::Probe { message, .. }) => {
                    last = message;
                    continue;
                }
                Err(other) => return Err(other),
            };
            let probe = match Lister::new().open(selector) {
                Ok(p) => p,
                Err(e) => {
                    last = format!("failed to open probe {}: {e}", self.probe);
                    tracing::debug!("board {}: attempt {attempt}: {last}", self.board_id);
                    continue;
                }
            };
            match probe.attach(self.chip.as_str(), Permissions::default()) {
                Ok(session) => return Ok(session),
                Err(e) if is_locked(&e) => {
                    return Err(FlashError::Locked {
                        board: self.board_id.clone(),
                        recover_command: self.recover_command(),
                    });
                }
                Err(e @ probe_rs::Error::ChipNotFound(_)) => {
                    return Err(self.probe_error(e.to_string()));
                }
                Err(e) => {
                    last = format!("failed to attach to {}: {e}", self.chip);
                    tracing::debug!("board {}: attempt {attempt}: {last}", self.board_id);
                }
            }
        }
        Err(self.probe_error(format!(
            "{last} (after {} attempts)",
            self.connect_attempts.max(1)
        )))
    }

    /// Whether the device content matches what the state file says was flashed.
    fn device_matches(
        &self,
        session: &mut Session,
        state: &BoardState,
    ) -> Result<bool, FlashError> {
        if state.checks.is_empty() {
            return Ok(false);
        }
        let mut core = session
            .core(0)
            .map_err(|e| self.probe_error(e.to_string()))?;
        for check in &state.checks {
            let len = usize::try_from(check.length).unwrap_or(0);
            let mut buf = vec![0u8; len];
            core.read(check.address, &mut buf).map_err(|e| {
                self.probe_error(format!("failed to read back {:#010x}: {e}", check.address))
            })?;
            if image::sha256_hex(&buf) != check.sha256 {
                tracing::info!(
                    "board {}: flash at {:#010x} differs from the recorded image; reflashing",
                    self.board_id,
                    check.address
                );
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Erase the settings partition: the board boots with no dataset, as after `factoryreset`.
    fn erase_settings(&self, session: &mut Session, area: &SettingsArea) -> Result<(), FlashError> {
        tracing::info!("board {}: erasing settings {area}", self.board_id);
        probe_rs::flashing::erase(
            session,
            &mut probe_rs::flashing::FlashProgress::empty(),
            area.address,
            area.address + area.size,
            false,
        )
        .map_err(|e| FlashError::Failed {
            board: self.board_id.clone(),
            message: format!("failed to erase the settings {area}: {e}"),
        })
    }

    fn reset_session(&self, session: &mut Session) -> Result<(), FlashError> {
        session
            .core(0)
            .and_then(|mut core| core.reset())
            .map_err(|e| FlashError::Failed {
                board: self.board_id.clone(),
                message: format!("failed to reset: {e}"),
            })
    }
}

impl Flasher for ProbeRsFlasher {
    fn current_image(&mut self) -> Result<Option<String>, FlashError> {
        let Some(state) = self.states.load(&self.board_id) else {
            return Ok(None);
        };
        let mut session = self.session()?;
        Ok(self
            .device_matches(&mut session, &state)?
            .then_some(state.sha256))
    }

    fn flash(&mut self, image: &FirmwareImage) -> Result<FlashOutcome, FlashError> {
        // Everything that can be checked without the probe first: a bad image fails in milliseconds.
        let loaded = self.preflight(image)?;
        let memory = ChipMemory::for_chip(&self.chip).map_err(|e| FlashError::ImageRejected {
            board: self.board_id.clone(),
            path: image.path.clone(),
            message: e.to_string(),
        })?;
        let plan = self.plan(image);
        let mut session = self.session()?;
        let recorded = plan
            .skip_if_current
            .as_ref()
            .and_then(|_| self.states.load(&self.board_id))
            .filter(|s| s.sha256 == image.sha256);
        let current = match &recorded {
            Some(state) => self.device_matches(&mut session, state)?,
            None => false,
        };
        if current {
            if let Some(area) = plan.settings_erase(false) {
                self.erase_settings(&mut session, area)?;
            }
            self.reset_session(&mut session)?;
            return Ok(FlashOutcome::AlreadyCurrent);
        }
        // From here the device content is unknown until the verify passes.
        if let Err(e) = self.states.forget(&self.board_id) {
            tracing::warn!(
                "board {}: failed to clear its state file: {e}",
                self.board_id
            );
        }
        let failed = |message: String| FlashError::Failed {
            board: self.board_id.clone(),
            message,
        };
        let mut loader = session.target().flash_loader();
        for seg in &loaded.segments {
            loader
                .add_data(seg.address, &seg.data)
                .map_err(|e| failed(format!("failed to stage {:#010x}: {e}", seg.address)))?;
        }
        let mut options = DownloadOptions::default();
        options.verify = true;
        options.do_chip_erase = self.chip_erase;
        loader
            .commit(&mut session, options)
            .map_err(|e| failed(format!("failed to program {}: {e}", image.path.display())))?;
        if let Some(area) = plan.settings_erase(true) {
            self.erase_settings(&mut session, area)?;
        }
        self.reset_session(&mut session)?;
        let state = BoardState {
            sha256: image.sha256.clone(),
            variant: image.variant.clone(),
            flashed_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            checks: image::check_regions(&loaded, &memory),
        };
        if let Err(e) = self.states.store(&self.board_id, &state) {
            // Not fatal: the next run flashes again.
            tracing::warn!("board {}: failed to record its image: {e}", self.board_id);
        }
        Ok(FlashOutcome::Flashed)
    }

    fn reset(&mut self) -> Result<(), FlashError> {
        let mut session = self.session()?;
        self.reset_session(&mut session)
    }
}

/// probe-rs refuses to attach to an nRF52 with APPROTECT set unless erase-all is permitted: its nRF52
/// `debug_device_unlock` sequence finds the core locked (CTRL-AP APPROTECTSTATUS) and, without the
/// permission, returns `ArmError::MissingPermissions`, which `Session::new` hands up as `Error::Arm(..)`
/// (probe-rs 0.32). The session-level variant is matched too in case a later release lifts it.
pub fn is_locked(error: &probe_rs::Error) -> bool {
    matches!(
        error,
        probe_rs::Error::MissingPermissions(_)
            | probe_rs::Error::Arm(ArmError::MissingPermissions(_))
    )
}

/// `probe-rs erase --chip <chip> --probe <VID:PID:SERIAL> --allow-erase-all`: `--chip`, `--probe` and
/// `--allow-erase-all` are the probe-rs CLI's common probe options; with the permission its nRF sequence
/// runs CTRL-AP ERASEALL, which clears APPROTECT. (`erase` erases everything by default; newer releases
/// also take `--all`, older ones reject it, so it is left out. Nordic's tools: `nrfjprog --recover`.)
pub fn recover_command(chip: &str, probe: &ProbeSelector) -> String {
    format!("probe-rs erase --chip {chip} --probe {probe} --allow-erase-all")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_chip_errors_are_recognised() {
        assert!(is_locked(&probe_rs::Error::Arm(
            ArmError::MissingPermissions("erase_all".into())
        )));
        assert!(is_locked(&probe_rs::Error::MissingPermissions(
            "erase_all".into()
        )));
        assert!(!is_locked(&probe_rs::Error::Timeout));
    }

    #[test]
    fn recover_command_names_chip_and_probe() {
        let probe = ProbeSelector::parse("1366:1015:000683759358").unwrap();
        assert_eq!(
            recover_command(NRF52840, &probe),
            "probe-rs erase --chip nRF52840_xxAA --probe 1366:1015:000683759358 --allow-erase-all"
        );
        let err = FlashError::Locked {
            board: "dk1".into(),
            recover_command: recover_command(NRF52840, &probe),
        };
        assert!(err.to_string().contains("locked (APPROTECT)"));
        assert!(err.to_string().contains("--allow-erase-all"));
    }
}
