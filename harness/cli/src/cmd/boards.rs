//! `ot-hil boards`: what is attached to this host, as a table; optionally written as a hardware map, or
//! compared with one.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use ot_hil::report::exit_code;
use ot_hil_lab::discover::{self, GenerateOptions};
use ot_hil_lab::hwmap::{HardwareMap, Profile};
use ot_hil_lab::probes;
use ot_hil_lab::sysfs::SysRoot;

#[derive(Debug, Args)]
pub struct Cmd {
    /// Write a hardware map (ot-hil TOML) of the DKs and sniffers found to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "check")]
    generate: Option<PathBuf>,
    /// Compare a hardware map with what is attached: every board present, each probe with its own
    /// console (exit code 2 on any difference).
    #[arg(long, value_name = "MAP")]
    check: Option<PathBuf>,
    /// Console profile given to the DKs of a generated map: `ncs` or `upstream`.
    #[arg(long, value_name = "PROFILE", default_value = "ncs")]
    profile: String,
    /// Zephyr board name given to the DKs of a generated map.
    #[arg(long, value_name = "BOARD", default_value = "nrf52840dk_nrf52840")]
    platform: String,
    /// Read a recorded tree (DIR/sys, DIR/dev) instead of the live /sys and /dev.
    #[arg(long, value_name = "DIR")]
    sysfs_root: Option<PathBuf>,
    /// Use recorded `probe-rs list` output instead of listing probes over USB.
    #[arg(long, value_name = "FILE")]
    probe_list: Option<PathBuf>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<i32> {
        let root = self
            .sysfs_root
            .as_deref()
            .map_or_else(SysRoot::live, SysRoot::recorded);
        let probes = match &self.probe_list {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("failed to read {}", file.display()))?;
                probes::parse_probe_rs_list(&text)
            }
            None => probes::list_probes(),
        };
        let found = discover::discover(&root, &probes)?;
        if found.is_empty() {
            println!("no boards attached: no DK, probe or sniffer found on USB");
        } else {
            print!("{}", discover::render_table(&found));
        }

        if let Some(path) = &self.generate {
            let options = GenerateOptions {
                dk_platform: self.platform.clone(),
                dk_profile: self
                    .profile
                    .parse::<Profile>()
                    .map_err(anyhow::Error::msg)?,
                ..GenerateOptions::default()
            };
            let map = discover::hardware_map_from(&found, &options);
            std::fs::write(path, map.to_toml())
                .with_context(|| format!("failed to write {}", path.display()))?;
            println!("wrote {} boards to {}", map.boards.len(), path.display());
        }
        if let Some(path) = &self.check {
            let imported = HardwareMap::load_with_warnings(path)?;
            for warning in &imported.warnings {
                eprintln!("warning: {}: {warning}", path.display());
            }
            let map = imported.map;
            let problems = discover::verify_map(&map, &found);
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{}: {} problems", path.display(), problems.len());
                return Ok(exit_code::INFRA_ERROR);
            }
            println!(
                "{}: all {} boards attached and paired",
                path.display(),
                map.boards.len()
            );
        }
        Ok(exit_code::SUCCESS)
    }
}
