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
use std::time::Duration;

use ot_hil_board::firmware::{Application, Manifest};
use ot_hil_lab::flash::{FirmwareImage, Flasher};
use ot_hil_wire::pcap::{LinkType, PcapWriter};
use serde_json::Value;

use super::snapshot::{self, SnapshotOutcome, Snapshots};
use super::{AirSpec, Capture, SnifferPort, SnifferSession};
use crate::case::Case;
use crate::exec::Failure;
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
        })
    }

    /// For a case on virtual boards: `None` when the case declares neither a sniffer nor
    /// snapshots. `variants_dir`: where the sniffer variant is looked up.
    pub async fn start_virtual(
        case: &Case,
        vdk: &VdkCommand,
        hub_socket: &Path,
        variants_dir: &Path,
        log_dir: &Path,
    ) -> Result<Option<Witness>, String> {
        let Some(mut witness) = Witness::idle(case) else {
            return Ok(None);
        };
        if witness.spec.sniffer {
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
                .map_err(|e| crate::report::error_chain(&e))?,
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

    /// Stop the sniffer, compare the snapshots. `controls`: each node's control socket (virtual
    /// boards). Adds the air's counters, connections and CoAP log to `tails`, the pcap to `logs`.
    /// Returns the first snapshot failure. `steps_failed`: the case already failed at a step; a
    /// connection that never started is then no snapshot failure (the case stopped before it),
    /// while a handshake that differs from its snapshot still is.
    pub async fn finish(
        mut self,
        case: &Case,
        variant: &str,
        steps_failed: bool,
        controls: &[(String, PathBuf)],
        tails: &mut std::collections::BTreeMap<String, Vec<String>>,
        logs: &mut std::collections::BTreeMap<String, PathBuf>,
    ) -> Option<Failure> {
        let mut lines = Vec::new();
        // Blocking for up to the sync timeout: the sniffer answers within milliseconds.
        let mut radio_error = None;
        let capture = match self.radio.take() {
            Some(radio) => {
                // A short grace: the last frames of the case are still on their way.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let (capture, error) = radio.stop();
                radio_error = error;
                Some(capture)
            }
            None => self.session.take().map(SnifferSession::stop),
        };
        if let Some(dk) = self.sniffer_dk.take() {
            dk.stop().await;
        }
        if let Some(cap) = &capture {
            lines.push(format!(
                "sniffer on channel {}, network key {}",
                self.spec.channel,
                if self.spec.network_key.is_some() {
                    "known"
                } else {
                    "unknown (frames captured, not decrypted)"
                }
            ));
            lines.push(cap.stats().summary());
            if let Some(e) = &radio_error {
                lines.push(format!(
                    "sniffer stopped early: {}",
                    crate::report::error_chain(e)
                ));
            }
            if let Some(e) = &cap.pcap_error {
                lines.push(format!("pcap write failed: {e}"));
            }
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
        }
        if let Some(p) = &self.pcap {
            lines.push(format!("pcap: {}", p.display()));
            logs.insert(PCAP_FILE.to_string(), p.clone());
            match write_key_log(controls, &p.with_file_name(KEY_LOG_FILE)) {
                Ok(Some(keys)) => {
                    lines.push(format!("dtls key log: {}", keys.display()));
                    logs.insert(KEY_LOG_FILE.to_string(), keys);
                }
                Ok(None) => {}
                Err(e) => lines.push(format!("dtls key log not written: {e}")),
            }
        }
        let snaps = Snapshots::for_case_file(&case.path);
        let mut failure = None;
        for spec in &self.spec.snapshots {
            let engine = match controls.iter().find(|(n, _)| n == &spec.client) {
                Some((_, control)) => engine_transcript(control, spec.connection),
                None => Err(format!("no control socket for node {}", spec.client)),
            };
            let air = capture.as_ref().map(|cap| {
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
            let (source, transcript) = match (&air, &engine) {
                (Some(a), _) => ("air", a.clone()),
                (None, e) => ("engine", e.clone()),
            };
            if let (Some(Ok(a)), Ok(e)) = (&air, &engine) {
                let (a, e) = (snapshot::render(a), snapshot::render(e));
                if a == e {
                    lines.push(format!(
                        "snapshot {}: air transcript = {}'s engine transcript",
                        spec.name, spec.client
                    ));
                } else {
                    lines.push(format!(
                        "snapshot {}: air transcript differs from {}'s engine transcript:",
                        spec.name, spec.client
                    ));
                    lines.extend(
                        similar::TextDiff::from_lines(&e, &a)
                            .unified_diff()
                            .header("engine", "air")
                            .to_string()
                            .lines()
                            .map(str::to_string),
                    );
                }
            }
            let name = Snapshots::snapshot_name(&case.name, &spec.name, variant);
            let fail = |expected: String, got: Vec<String>| Failure {
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
            };
            let outcome = match transcript {
                Err(e) if steps_failed => {
                    lines.push(format!(
                        "snapshot {}: not compared, the case failed before a handshake ({e})",
                        spec.name
                    ));
                    None
                }
                Err(e) => Some(fail(
                    format!("a DTLS handshake transcript from the {source}"),
                    vec![e],
                )),
                Ok(t) => {
                    let content = snapshot::render(&t);
                    let description = format!(
                        "{} @ {variant}: DTLS handshake {} -> {} (from the {source})",
                        case.name, spec.client, spec.server
                    );
                    let source = case.path.display().to_string();
                    let stored = snaps.path(&name);
                    match snaps.compare(&name, &source, &description, &content) {
                        Err(e) => Some(fail(
                            format!("a comparison with {}", stored.display()),
                            vec![crate::report::error_chain(&e)],
                        )),
                        Ok(SnapshotOutcome::Matched) => {
                            lines.push(format!(
                                "snapshot {}: matches {}",
                                spec.name,
                                stored.display()
                            ));
                            None
                        }
                        Ok(SnapshotOutcome::Written { path, diff }) => {
                            lines.push(format!(
                                "snapshot {}: written to {} (INSTA_UPDATE)",
                                spec.name,
                                path.display()
                            ));
                            lines.extend(diff.iter().flat_map(|d| d.lines().map(str::to_string)));
                            None
                        }
                        Ok(SnapshotOutcome::New {
                            pending,
                            content,
                            force_pass,
                        }) => {
                            let mut got: Vec<String> =
                                content.lines().map(str::to_string).collect();
                            got.push(match &pending {
                                Some(p) => format!(
                                    "new snapshot written to {}: read it, accept it by renaming it to .snap (or with `cargo insta review`)",
                                    p.display()
                                ),
                                None => "no .snap.new written (CI or INSTA_UPDATE=no)".into(),
                            });
                            let expected = format!("a stored snapshot {}", stored.display());
                            forced_or_failed(
                                &mut lines,
                                &spec.name,
                                force_pass,
                                fail(expected, got),
                            )
                        }
                        Ok(SnapshotOutcome::Mismatch {
                            pending,
                            diff,
                            force_pass,
                        }) => {
                            let mut got: Vec<String> = diff.lines().map(str::to_string).collect();
                            got.push(match &pending {
                                Some(p) => format!(
                                    "this run's transcript is in {}: if it is right, accept it by renaming it to .snap (or with `cargo insta review`)",
                                    p.display()
                                ),
                                None => "no .snap.new written (CI or INSTA_UPDATE=no)".into(),
                            });
                            let expected = format!("the handshake stored in {}", stored.display());
                            forced_or_failed(
                                &mut lines,
                                &spec.name,
                                force_pass,
                                fail(expected, got),
                            )
                        }
                    }
                }
            };
            if failure.is_none() {
                failure = outcome;
            }
        }
        if !lines.is_empty() {
            tails.insert(AIR.to_string(), lines);
        }
        failure
    }
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
