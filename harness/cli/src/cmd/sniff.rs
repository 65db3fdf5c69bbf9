//! `ot-hil sniff`: read an nRF 802.15.4 sniffer (a board on a serial port, or a virtual one on a
//! virtual air) and print the traffic as it is decoded.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use ot_hil::air::witness::{create_pcap, find_sniffer_variant, spawn_virtual_sniffer};
use ot_hil::air::{Capture, SnifferPort, SnifferSession, parse_network_key, parse_prefix};
use ot_hil::virtual_lab::VdkCommand;

#[derive(Debug, Args)]
pub struct Cmd {
    /// 802.15.4 channel (11..26).
    #[arg(long, value_parser = clap::value_parser!(u8).range(11..=26))]
    channel: u8,
    /// Thread network key (32 hex digits): decrypt MAC frames and decode UDP, DTLS and CoAP.
    #[arg(long, value_name = "KEY")]
    network_key: Option<String>,
    /// Mesh-local prefix (6LoWPAN context 0).
    #[arg(long, value_name = "PREFIX", default_value = "fdde:ad00:beef:0::/64")]
    mesh_local_prefix: String,
    /// Also write the frames to this pcap file (linktype 283, 802.15.4 TAP: RSSI, LQI, channel).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Serial port of a sniffer board (e.g. /dev/ttyACM0).
    #[arg(
        long,
        value_name = "PORT",
        conflicts_with = "air",
        required_unless_present = "air"
    )]
    port: Option<String>,
    /// Socket of a virtual air hub: a virtual sniffer board is started on it.
    #[arg(long, value_name = "SOCKET")]
    air: Option<PathBuf>,
    /// Firmware variants directory holding the sniffer variant (default: the nearest
    /// `firmware/variants/`).
    #[arg(long, value_name = "DIR")]
    variants_dir: Option<PathBuf>,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this long (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<i32> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the runtime")?;
        rt.block_on(self.run_async())
    }

    async fn run_async(self) -> anyhow::Result<i32> {
        let key = self
            .network_key
            .as_deref()
            .map(parse_network_key)
            .transpose()?;
        let prefix = parse_prefix(&self.mesh_local_prefix)?;
        let pcap = match &self.pcap {
            Some(p) => Some(create_pcap(p)?),
            None => None,
        };
        let mut capture = Capture::new(self.channel, key, prefix, pcap);
        capture.stamp_pcap_with_wall_clock();
        let (tx, rx) = mpsc::channel();
        capture.set_live(tx);

        // A virtual sniffer lives in its own short directory (socket paths are limited to 108
        // bytes); it is stopped when this command ends.
        let mut virtual_dir = None;
        let mut virtual_dk = None;
        let port_path = match (&self.port, &self.air) {
            (Some(p), _) => p.clone(),
            (None, Some(hub)) => {
                let variants_dir = match &self.variants_dir {
                    Some(d) => d.clone(),
                    None => ot_hil::variants::find_variants_dir(
                        &std::env::current_dir().context("no current directory")?,
                    )?,
                };
                let manifest = find_sniffer_variant(&variants_dir).map_err(anyhow::Error::msg)?;
                let dir = ot_hil::scratch::dir("oths")
                    .context("failed to create a directory for the virtual sniffer")?;
                let vdk = VdkCommand::current_exe().context("cannot find this executable")?;
                let dk = spawn_virtual_sniffer(&vdk, hub, dir.path(), &manifest, None)
                    .await
                    .map_err(anyhow::Error::msg)?;
                let tty = dk.tty.display().to_string();
                virtual_dk = Some(dk);
                virtual_dir = Some(dir);
                tty
            }
            (None, None) => bail!("give --port or --air"),
        };
        let port = SnifferPort::open(&port_path)?;
        let session = SnifferSession::start(port, self.channel, capture)?;
        // Once the sniffer answers a query sent after `receive`, it is receiving.
        let ready = session.sync(Duration::from_secs(5));
        if !ready {
            eprintln!("warning: the sniffer on {port_path} did not answer; still reading");
        }
        eprintln!(
            "sniffing on channel {} from {port_path}{} (Ctrl-C to stop)",
            self.channel,
            if key.is_some() { ", decrypting" } else { "" }
        );

        let started = Instant::now();
        let mut frames = 0u64;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        'outer: loop {
            while let Ok(line) = rx.try_recv() {
                println!("{line}");
                frames += 1;
                if self.count.is_some_and(|n| frames >= n) {
                    break 'outer;
                }
            }
            if self.duration.is_some_and(|d| started.elapsed() >= d) {
                break;
            }
            tokio::select! {
                _ = &mut ctrl_c => break,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        let capture = session.stop();
        while let Ok(line) = rx.try_recv() {
            if self.count.is_some_and(|n| frames >= n) {
                break;
            }
            println!("{line}");
            frames += 1;
        }
        let stats = capture.stats();
        eprintln!("{}", stats.summary());
        for (i, c) in capture.connections().iter().enumerate() {
            eprintln!(
                "dtls connection {}: [{}]:{} <-> [{}]:{}\n{}",
                i + 1,
                c.client.ip(),
                c.client.port(),
                c.server.ip(),
                c.server.port(),
                c.transcript()
            );
        }
        if let Some(e) = &capture.pcap_error {
            eprintln!("pcap write failed: {e}");
        }
        if let Some(dk) = virtual_dk {
            dk.stop().await;
        }
        drop(virtual_dir);
        Ok(0)
    }
}
