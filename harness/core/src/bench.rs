//! A virtual bench for people (`ot-hil lab up`): one virtual air, N virtual DKs flashed with a
//! variant, and optionally a virtual sniffer streaming the air to a pcap file, kept up until
//! stopped. Each DK's console is a PTY link a person opens with `screen`, `picocom` or
//! `minicom`, as they would a real DK's `/dev/ttyACM0`.

use std::io::Write;
use std::path::{Path, PathBuf};

use ot_hil_air::Hub;
use ot_hil_lab::flash::Flasher;
use ot_hil_wire::pcap::{LinkType, PcapWriter};

use crate::air::witness::{find_sniffer_variant, spawn_virtual_sniffer};
use crate::air::{Capture, SnifferPort, SnifferSession};
use crate::variants::Variant;
use crate::virtual_lab::{VdkCommand, VirtualDk};

/// Why a bench did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("failed to start the air hub in {dir}: {source}")]
    Hub {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("board {board}: {message}")]
    Board { board: String, message: String },
    #[error("sniffer: {0}")]
    Sniffer(String),
    #[error("failed to create the capture {path}: {source}")]
    Pcap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to put on the bench.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub vdk: VdkCommand,
    /// Where the sockets, PTY links and board logs go (short: socket paths are limited to 108
    /// bytes).
    pub dir: PathBuf,
    pub boards: usize,
    pub variant: Variant,
    /// Sniff this channel into `<dir>/air.pcap`, with the sniffer variant from this directory.
    pub sniffer: Option<SnifferConfig>,
}

/// The virtual sniffer of a bench.
#[derive(Debug, Clone)]
pub struct SnifferConfig {
    pub channel: u8,
    pub variants_dir: PathBuf,
}

/// One virtual DK on the bench, as a person reaches it.
#[derive(Debug, Clone)]
pub struct BenchBoard {
    pub name: String,
    /// The PTY link (the board's serial port).
    pub tty: PathBuf,
    pub control: PathBuf,
    pub log: PathBuf,
    pub pid: Option<u32>,
}

/// A running bench; [`Bench::stop`] takes it down (dropping it kills the processes too).
pub struct Bench {
    pub dir: PathBuf,
    pub boards: Vec<BenchBoard>,
    /// The capture file the sniffer streams to, when there is a sniffer.
    pub pcap: Option<PathBuf>,
    dks: Vec<VirtualDk>,
    sniffer: Option<(VirtualDk, SnifferSession)>,
    hub: Hub,
}

/// Name of the `n`-th board (1-based).
pub fn board_name(n: usize) -> String {
    format!("dk{n}")
}

impl Bench {
    /// Start the air, the boards (flashed, so they show their prompt) and the sniffer.
    pub async fn start(config: &BenchConfig) -> Result<Bench, BenchError> {
        let hub = Hub::start(&config.dir).map_err(|source| BenchError::Hub {
            dir: config.dir.clone(),
            source,
        })?;
        let mut bench = Bench {
            dir: config.dir.clone(),
            boards: Vec::new(),
            pcap: None,
            dks: Vec::new(),
            sniffer: None,
            hub,
        };
        for n in 1..=config.boards {
            let name = board_name(n);
            let log = config.dir.join(format!("{name}.log"));
            let board_err = |message: String| BenchError::Board {
                board: name.clone(),
                message,
            };
            let dk = VirtualDk::spawn(
                &config.vdk,
                bench.hub.socket_path(),
                &config.dir,
                &name,
                Some(&log),
                None,
            )
            .await
            .map_err(|e| board_err(e.to_string()))?;
            let mut probe = dk.probe();
            let image = config.variant.image.clone();
            tokio::task::spawn_blocking(move || probe.flash(&image))
                .await
                .map_err(|e| board_err(format!("flash task failed: {e}")))?
                .map_err(|e| board_err(e.to_string()))?;
            bench.boards.push(BenchBoard {
                name: name.clone(),
                tty: dk.tty.clone(),
                control: dk.control.clone(),
                log,
                pid: dk.pid(),
            });
            bench.dks.push(dk);
        }
        if let Some(sniffer) = &config.sniffer {
            let pcap = config.dir.join(crate::air::witness::PCAP_FILE);
            bench.sniffer = Some(bench.start_sniffer(config, sniffer, &pcap).await?);
            bench.pcap = Some(pcap);
        }
        Ok(bench)
    }

    async fn start_sniffer(
        &self,
        config: &BenchConfig,
        sniffer: &SnifferConfig,
        pcap: &Path,
    ) -> Result<(VirtualDk, SnifferSession), BenchError> {
        let manifest = find_sniffer_variant(&sniffer.variants_dir).map_err(BenchError::Sniffer)?;
        let log = config.dir.join("sniffer.log");
        let dk = spawn_virtual_sniffer(
            &config.vdk,
            self.hub.socket_path(),
            &config.dir,
            &manifest,
            Some(&log),
        )
        .await
        .map_err(BenchError::Sniffer)?;
        let pcap_err = |source: std::io::Error| BenchError::Pcap {
            path: pcap.to_path_buf(),
            source,
        };
        // Unbuffered: every packet reaches the file as it is captured, so Wireshark can follow
        // the file (`tail -f -c +0 air.pcap | wireshark -k -i -`) while people type.
        let file: Box<dyn Write + Send> = Box::new(std::fs::File::create(pcap).map_err(pcap_err)?);
        let writer = PcapWriter::new(file, LinkType::Tap)
            .map_err(|e| pcap_err(std::io::Error::other(e.to_string())))?;
        // No key: the bench does not know the network people will form; the pcap keeps the
        // frames as they were on the air.
        let mut capture = Capture::new(sniffer.channel, None, [0; 8], Some(writer));
        capture.stamp_pcap_with_wall_clock();
        let port = SnifferPort::open(&dk.tty.display().to_string())
            .map_err(|e| BenchError::Sniffer(e.to_string()))?;
        let session = SnifferSession::start(port, sniffer.channel, capture)
            .map_err(|e| BenchError::Sniffer(e.to_string()))?;
        if !session.sync(std::time::Duration::from_secs(5)) {
            return Err(BenchError::Sniffer(format!(
                "the virtual sniffer on {} did not answer",
                dk.tty.display()
            )));
        }
        Ok((dk, session))
    }

    /// Stop the sniffer (its capture finished), the boards (SIGTERM, then their process groups
    /// killed) and the air.
    pub async fn stop(self) {
        let Bench {
            dks, sniffer, hub, ..
        } = self;
        if let Some((dk, session)) = sniffer {
            // Stopping reads what the sniffer still holds and flushes the capture.
            let _ = tokio::task::spawn_blocking(move || session.stop()).await;
            dk.stop().await;
        }
        for dk in dks {
            dk.stop().await;
        }
        drop(hub);
    }
}
