//! The air witness inside a case run: started after the boards are up and before the first
//! step, finished after the last step and before the boards are stopped.
//!
//! With a `[sniffer]` table a sniffer board reads the case's channel: on virtual boards, a
//! virtual DK booted with the `sniffer-802154` variant on the case's own air, read through its
//! PTY exactly as a real sniffer's serial port is read. Its frames go to `air.pcap` in the
//! case's log directory. Snapshots take their transcript from the air when a sniffer watched,
//! else from the client board's own DTLS engine (control request `transcripts`); with both
//! available the two are compared too, and the result goes into the report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ot_hil_air::Hub;
use ot_hil_board::firmware::{Application, Manifest};
use ot_hil_lab::flash::{FirmwareImage, Flasher};
use ot_hil_wire::pcap::{LinkType, PcapWriter};
use serde_json::Value;

use super::snapshot::{self, SnapshotOutcome, Snapshots};
use super::{AirSpec, Capture, SnapshotSpec, SnifferPort, SnifferSession};
use crate::case::Case;
use crate::events::{
    AirCapture, CaptureCounters, ObservedConnection, SnapshotRecord, SnapshotVerdict,
};
use crate::exec::Failure;
use crate::infra::SnifferProblem;
use crate::virtual_lab::{ControlError, VdkCommand, VirtualDk};

/// Board name of the virtual sniffer (its files sit next to the nodes' in the case directory).
pub const SNIFFER_BOARD: &str = "sniffer";
/// Key of the air's entry in a case result's tails and logs.
pub const AIR: &str = "air";
/// File name of the capture in the case's log directory.
pub const PCAP_FILE: &str = "air.pcap";
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the CoAP log quoted in the report.
const COAP_LOG_LINES: usize = 10;

/// A running witness.
pub struct Witness {
    spec: AirSpec,
    session: Option<SnifferSession>,
    /// The simulated radio of real OpenThread nodes, heard from their multicast group.
    radio: Option<crate::otsim::RadioCapture>,
    sniffer_dk: Option<VirtualDk>,
    pcap: Option<PathBuf>,
    /// The virtual air the sniffer listens on: it counts the frames it hands the sniffer.
    hub: Option<Arc<Hub>>,
}

/// The `sniffer-802154` manifest among the variants in `dir`.
pub fn find_sniffer_variant(dir: &Path) -> Result<Manifest, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| Manifest::load(p).ok())
        .find(|m| m.application == Application::Sniffer802154)
        .ok_or_else(|| {
            format!(
                "no firmware variant with application = \"sniffer-802154\" in {}",
                dir.display()
            )
        })
}

/// Start a virtual sniffer board on the air `hub_socket`, files in `dir`, flashed with `manifest`.
pub async fn spawn_virtual_sniffer(
    vdk: &VdkCommand,
    hub_socket: &Path,
    dir: &Path,
    manifest: &Manifest,
    log: Option<&Path>,
) -> Result<VirtualDk, String> {
    // The sniffer is a perfect observer off the case clock: it never holds time, and it stamps
    // nothing itself (frames carry the hub's time).
    let dk = VirtualDk::spawn(vdk, hub_socket, dir, SNIFFER_BOARD, log, None)
        .await
        .map_err(|e| e.to_string())?;
    let mut probe = dk.probe();
    let image = FirmwareImage {
        variant: manifest.name.clone(),
        path: manifest.path.clone(),
        sha256: manifest.image_hash(),
    };
    tokio::task::spawn_blocking(move || probe.flash(&image))
        .await
        .map_err(|e| format!("flash task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    Ok(dk)
}

/// Open a pcap file for a capture.
pub fn create_pcap(path: &Path) -> Result<PcapWriter<Box<dyn Write + Send>>, super::AirError> {
    let pcap_err = |message: String| super::AirError::Pcap {
        path: path.to_path_buf(),
        message,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| pcap_err(e.to_string()))?;
    }
    let file = std::fs::File::create(path).map_err(|e| pcap_err(e.to_string()))?;
    let w: Box<dyn Write + Send> = Box::new(std::io::BufWriter::new(file));
    PcapWriter::new(w, LinkType::Tap).map_err(|e| pcap_err(e.to_string()))
}

impl Witness {
    /// A witness of the case's air spec with nothing started, `None` when the case declares
    /// neither a sniffer nor snapshots.
    fn idle(case: &Case) -> Option<Witness> {
        let spec = case.air.clone();
        (!spec.is_empty()).then_some(Witness {
            spec,
            session: None,
            radio: None,
            sniffer_dk: None,
            pcap: None,
            hub: None,
        })
    }

    /// For a case on virtual boards: `None` when the case declares neither a sniffer nor
    /// snapshots. `variants_dir`: where the sniffer variant is looked up.
    pub async fn start_virtual(
        case: &Case,
        vdk: &VdkCommand,
        hub: &Arc<Hub>,
        variants_dir: &Path,
        log_dir: &Path,
    ) -> Result<Option<Witness>, String> {
        let Some(mut witness) = Witness::idle(case) else {
            return Ok(None);
        };
        let hub_socket = hub.socket_path();
        if witness.spec.sniffer {
            witness.hub = Some(hub.clone());
            let manifest = find_sniffer_variant(variants_dir)?;
            let dir = hub_socket.parent().unwrap_or(Path::new("."));
            let dk = spawn_virtual_sniffer(
                vdk,
                hub_socket,
                dir,
                &manifest,
                Some(&log_dir.join(format!("{SNIFFER_BOARD}.vdk.log"))),
            )
            .await?;
            let tty = dk.tty.display().to_string();
            witness.sniffer_dk = Some(dk);
            witness.start_capture(&tty, log_dir)?;
        }
        Ok(Some(witness))
    }

    /// For a case on boards that get no virtual sniffer (host processes, real boards without a
    /// sniffer port): snapshots come from the boards' engines where they can; a case that
    /// wants a sniffer is refused rather than run without its witness.
    pub fn start_without_sniffer(case: &Case) -> Result<Option<Witness>, String> {
        let spec = case.air.clone();
        if spec.is_empty() {
            return Ok(None);
        }
        if spec.sniffer {
            return Err(
                "the case wants a sniffer ([sniffer]); only virtual boards get one here".into(),
            );
        }
        Ok(Some(Witness {
            spec,
            session: None,
            radio: None,
            sniffer_dk: None,
            pcap: None,
            hub: None,
        }))
    }

    /// For a case on real boards with a sniffer on `port` (e.g. /dev/ttyACM4).
    pub fn start_on_port(case: &Case, port: &str, log_dir: &Path) -> Result<Witness, String> {
        let mut spec = case.air.clone();
        spec.sniffer = true;
        let mut witness = Witness {
            spec,
            session: None,
            radio: None,
            sniffer_dk: None,
            pcap: None,
            hub: None,
        };
        witness.start_capture(port, log_dir)?;
        Ok(witness)
    }

    /// For a case on simulated OpenThread nodes whose radio frames go to the multicast group on
    /// `group_port`: `None` when the case declares neither a sniffer nor snapshots. The group
    /// is the case's whole air, so every case of these nodes may have a sniffer.
    pub fn start_on_radio(
        case: &Case,
        sniffer: crate::otsim::RadioSniffer,
        log_dir: &Path,
    ) -> Result<Option<Witness>, String> {
        let Some(mut witness) = Witness::idle(case) else {
            return Ok(None);
        };
        let capture = witness.new_capture(log_dir)?;
        witness.radio = Some(
            crate::otsim::RadioCapture::start(sniffer, witness.spec.channel, capture)
                .map_err(|e| crate::error_text::error_chain(&e))?,
        );
        Ok(Some(witness))
    }

    /// A capture of the case's channel and keys, writing `air.pcap` in `log_dir`.
    fn new_capture(&mut self, log_dir: &Path) -> Result<Capture, String> {
        let pcap_path = log_dir.join(PCAP_FILE);
        let pcap = create_pcap(&pcap_path).map_err(|e| e.to_string())?;
        self.pcap = Some(pcap_path);
        let mut capture = Capture::new(
            self.spec.channel,
            self.spec.network_key,
            self.spec.mesh_local_prefix,
            Some(pcap),
        );
        capture.stamp_pcap_with_wall_clock();
        capture.keep_timeline(MAX_AIR_LINES);
        Ok(capture)
    }

    fn start_capture(&mut self, port: &str, log_dir: &Path) -> Result<(), String> {
        let capture = self.new_capture(log_dir)?;
        let port = SnifferPort::open(port).map_err(|e| e.to_string())?;
        self.session = Some(
            SnifferSession::start(port, self.spec.channel, capture).map_err(|e| e.to_string())?,
        );
        Ok(())
    }

    /// Whether a sniffer board's port is being read (its loss ends the case).
    pub fn watches_a_sniffer(&self) -> bool {
        self.session.is_some()
    }

    /// Whether the capture so far holds everything the case is judged on, so that losing the
    /// sniffer now costs nothing: the case declares snapshots, and each one's handshake is on
    /// the air as its client's own DTLS engine has it (`controls`: each node's control socket).
    /// A case without snapshots keeps its capture as its evidence: it is never complete early.
    pub fn transcripts_complete(&self, controls: &[(String, PathBuf)]) -> bool {
        match &self.session {
            Some(session) => session.with_capture(|cap| self.complete_in(cap, controls)),
            None => false,
        }
    }

    fn complete_in(&self, cap: &Capture, controls: &[(String, PathBuf)]) -> bool {
        !self.spec.snapshots.is_empty()
            && self.spec.snapshots.iter().all(|spec| {
                let Some(air) = cap
                    .connections()
                    .get(spec.connection - 1)
                    .and_then(|c| serde_json::to_value(c.transcript()).ok())
                else {
                    return false;
                };
                let Some((_, control)) = controls.iter().find(|(n, _)| n == &spec.client) else {
                    return false;
                };
                engine_transcript(control, spec.connection)
                    .is_ok_and(|engine| snapshot::render(&air) == snapshot::render(&engine))
            })
    }

    /// Resolves when the sniffer's port ends by itself (its board went away), with why; never
    /// when no sniffer port is read. Checked every `LOSS_POLL`.
    pub async fn sniffer_lost(&self) -> String {
        loop {
            if let Some(reason) = self.session.as_ref().and_then(SnifferSession::ended) {
                return reason;
            }
            if self.session.is_none() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(LOSS_POLL).await;
        }
    }

    /// Stop the sniffer and compare the snapshots. `controls`: each node's control socket
    /// (virtual boards). Adds the pcap and the key log to `logs`. `steps_failed`: the case
    /// already failed at a step; a connection that never started is then no snapshot failure
    /// (the case stopped before it), while a handshake that differs from its snapshot still is.
    /// A sniffer that was lost or missed frames makes its capture untrustworthy: the snapshots
    /// are then not compared (no pending `.snap.new` from a partial transcript), and the report
    /// says why in `problem`; unless the sniffer was lost once the capture held every handshake
    /// the case is judged on (`captured_before_loss`: found so when it was lost mid-case, see
    /// [`Witness::transcripts_complete`]), which is only a `warning`.
    pub async fn finish(
        mut self,
        case: &Case,
        variant: &str,
        steps_failed: bool,
        captured_before_loss: bool,
        controls: &[(String, PathBuf)],
        logs: &mut std::collections::BTreeMap<String, PathBuf>,
    ) -> WitnessReport {
        let mut report = WitnessReport::default();
        let capture = self.stop_capture(&mut report).await;
        // Lost after every handshake the case is judged on was captured: a warning, and the
        // snapshots are compared on the capture (it holds them whole).
        if let (Some(SnifferProblem::Lost(_)), Some(cap)) = (&report.problem, &capture)
            && (captured_before_loss || self.complete_in(cap, controls))
            && let Some(problem) = report.problem.take()
        {
            report.warning = Some(problem);
        }
        if let Some(cap) = &capture {
            let lines = self.capture_lines(cap, report.problem.as_ref());
            report.lines.extend(lines);
            if let Some(e) = &cap.pcap_error {
                report.notes.push(format!("pcap write failed: {e}"));
            }
        }
        let mut key_log = None;
        if let Some(p) = &self.pcap {
            report.lines.push(format!("pcap: {}", p.display()));
            logs.insert(PCAP_FILE.to_string(), p.clone());
            match write_key_log(controls, &p.with_file_name(KEY_LOG_FILE)) {
                Ok(Some(keys)) => {
                    report
                        .lines
                        .push(format!("dtls key log: {}", keys.display()));
                    logs.insert(KEY_LOG_FILE.to_string(), keys.clone());
                    key_log = Some(keys);
                }
                Ok(None) => {}
                Err(e) => report.notes.push(format!("dtls key log not written: {e}")),
            }
        }
        let snaps = Snapshots::for_case_file(&case.path);
        let evidence = Evidence {
            capture: capture.as_ref(),
            controls,
            steps_failed,
            problem: report.problem.as_ref(),
        };
        for spec in &self.spec.snapshots {
            let compared = compare_snapshot(case, variant, spec, &snaps, &evidence);
            report.lines.extend(compared.lines);
            if report.failure.is_none() {
                report.failure = compared.failure;
            }
            report.snapshots.push(compared.record);
        }
        if let Some(cap) = &capture {
            report.capture = Some(self.air_capture(cap, self.pcap.clone(), key_log));
        }
        report.counters = capture.as_ref().map(|cap| {
            let stats = cap.stats();
            CaptureCounters {
                frames: stats.frames,
                bad_lines: stats.bad_lines,
                missed: report.missed,
                summary: stats.summary(),
            }
        });
        if let Some(c) = report.capture.as_mut() {
            c.notes.extend(report.notes.iter().cloned());
        }
        report.lines.extend(report.notes.iter().cloned());
        report
    }

    /// What the air's tail in the reports says of a capture: channel and key, counters, the
    /// sniffer's problem, connections, the last CoAP messages.
    fn capture_lines(&self, cap: &Capture, problem: Option<&SnifferProblem>) -> Vec<String> {
        let mut lines = vec![
            format!(
                "sniffer on channel {}, network key {}",
                self.spec.channel,
                if self.spec.network_key.is_some() {
                    "known"
                } else {
                    "unknown (frames captured, not decrypted)"
                }
            ),
            cap.stats().summary(),
        ];
        lines.extend(problem.map(SnifferProblem::to_string));
        for (i, c) in cap.connections().iter().enumerate() {
            lines.push(format!(
                "dtls connection {}: [{}]:{} <-> [{}]:{}, {} records",
                i + 1,
                c.client.ip(),
                c.client.port(),
                c.server.ip(),
                c.server.port(),
                c.transcript().entries.len()
            ));
        }
        let log: Vec<&String> = cap.coap_log().collect();
        for l in log.iter().skip(log.len().saturating_sub(COAP_LOG_LINES)) {
            lines.push(format!("coap {l}"));
        }
        lines
    }

    /// Stop reading the sniffer; note whether it was lost or missed frames.
    async fn stop_capture(&mut self, report: &mut WitnessReport) -> Option<Capture> {
        let capture = match self.radio.take() {
            Some(radio) => {
                // A short grace: the last frames of the case are still on their way.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let (capture, error) = radio.stop();
                if let Some(e) = &error {
                    report.notes.push(format!(
                        "sniffer stopped early: {}",
                        crate::error_text::error_chain(e)
                    ));
                }
                Some(capture)
            }
            None => match self.session.take() {
                Some(session) => Some(self.drain(session, report).await),
                None => None,
            },
        };
        if let Some(dk) = self.sniffer_dk.take() {
            dk.stop().await;
        }
        capture
    }

    /// Let the sniffer's capture catch up with what the air handed its radio, then stop it.
    async fn drain(&self, session: SnifferSession, report: &mut WitnessReport) -> Capture {
        if let Some(reason) = session.ended() {
            report.problem = Some(SnifferProblem::Lost(reason));
            return tokio::task::spawn_blocking(move || session.stop())
                .await
                .unwrap_or_else(|_| Capture::new(11, None, [0; 8], None));
        }
        let delivered = self.hub.as_ref().map(|h| h.stats().frames_to_monitors);
        if let Some(delivered) = delivered {
            let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
            while session.with_capture(|c| c.stats().frames) < delivered
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let capture = tokio::task::spawn_blocking(move || session.stop())
            .await
            .unwrap_or_else(|_| Capture::new(11, None, [0; 8], None));
        if let Some(delivered) = delivered {
            let captured = capture.stats().frames;
            let missed = missed_frames(delivered, captured);
            report.missed = Some(missed);
            if missed > 0 {
                report.problem = Some(SnifferProblem::Missed {
                    missed,
                    delivered,
                    captured,
                });
            }
        }
        capture
    }

    /// What the report shows of the capture: frames, connections, files.
    fn air_capture(
        &self,
        cap: &Capture,
        pcap: Option<PathBuf>,
        key_log: Option<PathBuf>,
    ) -> AirCapture {
        let timeline = cap.timeline();
        AirCapture {
            channel: self.spec.channel,
            network_key_known: self.spec.network_key.is_some(),
            pcap,
            key_log,
            frames: timeline
                .map(|t| t.lines.iter().cloned().collect())
                .unwrap_or_default(),
            frames_omitted: timeline.map_or(0, |t| t.omitted),
            connections: cap
                .connections()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let named = self.spec.snapshots.iter().find(|s| s.connection == i + 1);
                    ObservedConnection {
                        client: named.map_or_else(
                            || format!("[{}]:{}", c.client.ip(), c.client.port()),
                            |s| s.client.clone(),
                        ),
                        server: named.map_or_else(
                            || format!("[{}]:{}", c.server.ip(), c.server.port()),
                            |s| s.server.clone(),
                        ),
                        transcript: c.transcript().clone(),
                        times: (0..c.transcript().entries.len())
                            .map(|k| {
                                timeline
                                    .and_then(|t| t.entry_times.get(i))
                                    .and_then(|t| t.get(k))
                                    .copied()
                            })
                            .collect(),
                    }
                })
                .collect(),
            notes: Vec::new(),
        }
    }
}

/// What a snapshot is judged on.
struct Evidence<'a> {
    /// The air's capture, where a sniffer watched.
    capture: Option<&'a Capture>,
    /// Each node's control socket (virtual boards: their engines' transcripts).
    controls: &'a [(String, PathBuf)],
    /// The case already failed at a step.
    steps_failed: bool,
    /// Why the capture cannot be trusted.
    problem: Option<&'a SnifferProblem>,
}

/// Compare one `[[snapshot]]`.
fn compare_snapshot(
    case: &Case,
    variant: &str,
    spec: &SnapshotSpec,
    snaps: &Snapshots,
    evidence: &Evidence<'_>,
) -> Compared {
    let name = Snapshots::snapshot_name(&case.name, &spec.name, variant);
    let stored = snaps.path(&name);
    let stored_body = std::fs::read_to_string(&stored)
        .map(|t| super::snapshot_file::SnapFile::parse_body(&t).to_string())
        .unwrap_or_default();
    let mut compared = Compared {
        record: SnapshotRecord {
            name: spec.name.clone(),
            client: spec.client.clone(),
            server: spec.server.clone(),
            source: if evidence.capture.is_some() {
                "air"
            } else {
                "engine"
            },
            verdict: SnapshotVerdict::NotCompared,
            stored: stored.clone(),
            pending: None,
            diff: None,
            stored_body,
            observed_body: None,
            note: None,
        },
        failure: None,
        lines: Vec::new(),
    };
    if let Some(p) = evidence.problem {
        compared.not_compared(format!("the capture is incomplete ({p})"));
        return compared;
    }
    let source = compared.record.source;
    let transcript = transcript_of(spec, evidence, &mut compared.lines);
    match transcript {
        Err(e) if evidence.steps_failed => {
            compared.not_compared(format!("the case failed before a handshake ({e})"))
        }
        Err(e) => {
            compared.record.verdict = SnapshotVerdict::Error;
            compared.record.note = Some(e.clone());
            compared.failure = Some(snapshot_failure(
                case,
                spec,
                format!("a DTLS handshake transcript from the {source}"),
                vec![e],
            ));
        }
        Ok(t) => {
            let content = snapshot::render(&t);
            compared.record.observed_body = Some(content.clone());
            let description = format!(
                "{} @ {variant}: DTLS handshake {} -> {} (from the {source})",
                case.name, spec.client, spec.server
            );
            let outcome = snaps.compare(
                &name,
                &case.path.display().to_string(),
                &description,
                &content,
            );
            compared.judge(case, spec, outcome);
        }
    }
    compared
}

/// The transcript snapshot `spec` is judged on: the air's where a sniffer watched, else the
/// client engine's; with both, `lines` get whether they agree.
fn transcript_of(
    spec: &SnapshotSpec,
    evidence: &Evidence<'_>,
    lines: &mut Vec<String>,
) -> Result<Value, String> {
    let engine = match evidence.controls.iter().find(|(n, _)| n == &spec.client) {
        Some((_, control)) => engine_transcript(control, spec.connection),
        None => Err(format!("no control socket for node {}", spec.client)),
    };
    let air = evidence.capture.map(|cap| {
        cap.connections()
            .get(spec.connection - 1)
            .and_then(|c| serde_json::to_value(c.transcript()).ok())
            .ok_or_else(|| {
                format!(
                    "no DTLS connection #{} on the air ({} seen)",
                    spec.connection,
                    cap.connections().len()
                )
            })
    });
    if let (Some(Ok(a)), Ok(e)) = (&air, &engine) {
        lines.extend(air_versus_engine(spec, a, e));
    }
    match air {
        Some(a) => a,
        None => engine,
    }
}

/// Lines saying whether the air's transcript equals the client engine's own.
fn air_versus_engine(spec: &SnapshotSpec, air: &Value, engine: &Value) -> Vec<String> {
    let (a, e) = (snapshot::render(air), snapshot::render(engine));
    if a == e {
        return vec![format!(
            "snapshot {}: air transcript = {}'s engine transcript",
            spec.name, spec.client
        )];
    }
    let mut lines = vec![format!(
        "snapshot {}: air transcript differs from {}'s engine transcript:",
        spec.name, spec.client
    )];
    lines.extend(
        similar::TextDiff::from_lines(&e, &a)
            .unified_diff()
            .header("engine", "air")
            .to_string()
            .lines()
            .map(str::to_string),
    );
    lines
}

/// The failure of snapshot `spec`.
fn snapshot_failure(
    case: &Case,
    spec: &SnapshotSpec,
    expected: String,
    got: Vec<String>,
) -> Failure {
    Failure {
        step_index: None,
        location: case.path.display().to_string(),
        node: spec.client.clone(),
        step: format!(
            "snapshot {} ({} -> {})",
            spec.name, spec.client, spec.server
        ),
        expected,
        got: got.clone(),
        crash: None,
        window: got,
    }
}

/// One snapshot's comparison: its record, its failure, its lines for the air's tail.
struct Compared {
    record: SnapshotRecord,
    failure: Option<Failure>,
    lines: Vec<String>,
}

impl Compared {
    fn not_compared(&mut self, why: String) {
        self.lines.push(format!(
            "snapshot {}: not compared, {why}",
            self.record.name
        ));
        self.record.verdict = SnapshotVerdict::NotCompared;
        self.record.note = Some(why);
    }

    /// Turn the comparison's outcome into the record's verdict and, unless forced to pass, a
    /// failure.
    fn judge(
        &mut self,
        case: &Case,
        spec: &SnapshotSpec,
        outcome: Result<SnapshotOutcome, super::snapshot_file::SnapshotError>,
    ) {
        let stored = self.record.stored.clone();
        let (failure, force_pass) = match outcome {
            Err(e) => {
                let message = crate::error_text::error_chain(&e);
                self.record.verdict = SnapshotVerdict::Error;
                self.record.note = Some(message.clone());
                let expected = format!("a comparison with {}", stored.display());
                (snapshot_failure(case, spec, expected, vec![message]), false)
            }
            Ok(SnapshotOutcome::Matched) => {
                self.record.verdict = SnapshotVerdict::Matched;
                self.lines.push(format!(
                    "snapshot {}: matches {}",
                    spec.name,
                    stored.display()
                ));
                return;
            }
            Ok(SnapshotOutcome::Written { path, diff }) => {
                self.record.verdict = SnapshotVerdict::Written;
                self.lines.push(format!(
                    "snapshot {}: written to {} (INSTA_UPDATE)",
                    spec.name,
                    path.display()
                ));
                self.lines
                    .extend(diff.iter().flat_map(|d| d.lines().map(str::to_string)));
                self.record.diff = diff;
                return;
            }
            Ok(SnapshotOutcome::New {
                pending,
                content,
                force_pass,
            }) => {
                self.record.verdict = SnapshotVerdict::New;
                let mut got: Vec<String> = content.lines().map(str::to_string).collect();
                got.push(pending_note(
                    pending.as_deref(),
                    "new snapshot written to {}: read it, accept it",
                ));
                self.record.pending = pending;
                let expected = format!("a stored snapshot {}", stored.display());
                (snapshot_failure(case, spec, expected, got), force_pass)
            }
            Ok(SnapshotOutcome::Mismatch {
                pending,
                diff,
                force_pass,
            }) => {
                self.record.verdict = SnapshotVerdict::Changed;
                let mut got: Vec<String> = diff.lines().map(str::to_string).collect();
                got.push(pending_note(
                    pending.as_deref(),
                    "this run's transcript is in {}: if it is right, accept it",
                ));
                self.record.pending = pending;
                self.record.diff = Some(diff);
                let expected = format!("the handshake stored in {}", stored.display());
                (snapshot_failure(case, spec, expected, got), force_pass)
            }
        };
        if force_pass {
            self.record.verdict = SnapshotVerdict::ForcedPass;
        }
        self.failure = forced_or_failed(&mut self.lines, &spec.name, force_pass, failure);
    }
}

/// The line telling where the pending snapshot went: `lead` with `{}` for its path, then how to
/// accept it.
fn pending_note(pending: Option<&Path>, lead: &str) -> String {
    match pending {
        Some(p) => format!(
            "{} by renaming it to .snap (or with `cargo insta review`)",
            lead.replace("{}", &p.display().to_string())
        ),
        None => "no .snap.new written (CI or INSTA_UPDATE=no)".into(),
    }
}

/// What the witness found in one attempt.
#[derive(Debug, Default)]
pub struct WitnessReport {
    /// The first snapshot failure.
    pub failure: Option<Failure>,
    /// The sniffer was lost or missed frames: the attempt cannot be judged on its capture.
    pub problem: Option<SnifferProblem>,
    /// The sniffer was lost after the capture held every handshake the case is judged on.
    pub warning: Option<SnifferProblem>,
    /// Frames the sniffer missed (where the air counts what it handed the sniffer).
    pub missed: Option<u64>,
    pub counters: Option<CaptureCounters>,
    pub capture: Option<AirCapture>,
    pub snapshots: Vec<SnapshotRecord>,
    /// Lines for the air's tail in the reports.
    pub lines: Vec<String>,
    /// Notes of the witness (also in `lines` and in the capture).
    pub notes: Vec<String>,
}

/// How long the capture may take to catch up with what the air handed the sniffer at the end of
/// a case (the virtual sniffer prints a frame within milliseconds).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a running case checks its sniffer's port.
const LOSS_POLL: Duration = Duration::from_millis(100);
/// Air frame lines kept for the report's timeline.
pub const MAX_AIR_LINES: usize = 400;

/// Frames the sniffer missed: the frames the virtual air handed the sniffer's radio
/// (`delivered`, read before the capture was drained) that its capture does not hold
/// (`captured`, read once the capture had `DRAIN_TIMEOUT` to catch up). On the virtual air the
/// sniffer is a perfect observer (no injected faults reach it unless a case sets them on its
/// link, and then the hub drops those frames before counting them as handed over), so every
/// frame handed over belongs in the capture. Frames handed over after `delivered` was read may
/// be captured too: more captured than delivered is no miss.
pub fn missed_frames(delivered: u64, captured: u64) -> u64 {
    delivered.saturating_sub(captured)
}

/// A snapshot difference under `INSTA_FORCE_PASS` is a note in the air's lines, else a failure.
fn forced_or_failed(
    lines: &mut Vec<String>,
    snapshot: &str,
    force_pass: bool,
    failure: Failure,
) -> Option<Failure> {
    if !force_pass {
        return Some(failure);
    }
    lines.push(format!(
        "snapshot {snapshot}: differs, passed because INSTA_FORCE_PASS=1: expected {}",
        failure.expected
    ));
    lines.extend(failure.got.iter().map(|l| format!("  {l}")));
    None
}

/// The NSS key log next to a case's pcap: Wireshark's `tls.keylog_file` decrypts its CoAPS.
pub const KEY_LOG_FILE: &str = "dtls-keys.log";

/// Ask every virtual board (`controls`) for its DTLS engine's key-log lines and write them all
/// to `path`; `None` when no board derived DTLS keys (no file then). Real boards have no
/// control socket and are not asked: their keys never leave the chip.
pub fn write_key_log(
    controls: &[(String, PathBuf)],
    path: &Path,
) -> Result<Option<PathBuf>, String> {
    let mut lines = Vec::new();
    for (node, control) in controls {
        let json = crate::virtual_lab::control_request(
            control,
            &ot_hil_board::control::ControlRequest::KeyLog,
            CONTROL_TIMEOUT,
        )
        .map_err(|e| match e {
            ControlError::Refused(reply) => format!("{node}: `key-log` refused: {reply}"),
            e => format!("{node}: {}: {}", control.display(), e.into_io()),
        })?;
        let node_lines: Vec<String> =
            serde_json::from_str(&json).map_err(|e| format!("{node}: `key-log`: {e}"))?;
        lines.extend(node_lines);
    }
    // Both ends of a session log the same line.
    lines.sort();
    lines.dedup();
    if lines.is_empty() {
        return Ok(None);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path.to_path_buf()))
}

/// The `connection`-th (from 1) transcript a virtual board's DTLS engine kept.
pub fn engine_transcript(control: &Path, connection: usize) -> Result<Value, String> {
    let json = crate::virtual_lab::control_request(
        control,
        &ot_hil_board::control::ControlRequest::Transcripts,
        CONTROL_TIMEOUT,
    )
    .map_err(|e| match e {
        ControlError::Refused(reply) => format!("`transcripts` refused: {reply}"),
        e => format!("{}: {}", control.display(), e.into_io()),
    })?;
    let list: Value = serde_json::from_str(&json).map_err(|e| format!("`transcripts`: {e}"))?;
    let all = list.as_array().cloned().unwrap_or_default();
    all.get(connection.saturating_sub(1))
        .cloned()
        .ok_or_else(|| {
            format!(
                "the board kept no DTLS connection #{connection} ({} kept)",
                all.len()
            )
        })
}
