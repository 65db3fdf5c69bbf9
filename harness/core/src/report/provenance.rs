//! What a run ran on: the tool, the host, the start time (run-wide facts), and per case the
//! firmware image, the boards behind each node, the sniffer and the air seed. JUnit carries them
//! as `<properties>`, `results.json` as fields.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

/// Version of the `results.json` layout; raised when a field changes meaning or goes away.
pub const RESULTS_SCHEMA_VERSION: u32 = 2;

/// Facts of the whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunFacts {
    pub tool: &'static str,
    pub version: &'static str,
    /// The commit ot-hil was built from, when the build saw a git checkout.
    pub git_commit: Option<&'static str>,
    /// This machine's host name.
    pub host: String,
    /// When the run started, RFC 3339 (UTC).
    pub started: String,
    #[serde(skip)]
    pub started_at: SystemTime,
    /// `--air-seed`: the seed of every case's virtual air (attempt n: seed + n - 1).
    pub air_seed: Option<u64>,
}

impl RunFacts {
    /// The facts of a run starting now.
    pub fn now() -> RunFacts {
        let started_at = SystemTime::now();
        RunFacts {
            tool: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            git_commit: option_env!("OT_HIL_GIT_COMMIT").filter(|c| !c.is_empty()),
            host: host_name(),
            started: humantime::format_rfc3339_seconds(started_at).to_string(),
            started_at,
            air_seed: None,
        }
    }

    /// `0.1.0` or `0.1.0 (abc1234...)`.
    pub fn version_text(&self) -> String {
        match self.git_commit {
            Some(c) => format!("{} ({c})", self.version),
            None => self.version.to_string(),
        }
    }
}

/// The machine's host name (`localhost` only when the system will not say).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// What stands behind one node of a case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeFacts {
    /// `virtual` (a virtual DK), `host` (a host process) or `board` (a real DK of the map).
    pub source: &'static str,
    pub board_id: Option<String>,
    pub probe_serial: Option<String>,
    /// Serial port or PTY.
    pub port: Option<String>,
}

impl NodeFacts {
    /// `board dk1, probe 683759358, port /dev/ttyACM0` or `virtual, port /dev/pts/3`.
    pub fn text(&self) -> String {
        let mut parts = vec![self.source.to_string()];
        if let Some(id) = &self.board_id {
            parts.push(format!("id {id}"));
        }
        if let Some(s) = &self.probe_serial {
            parts.push(format!("probe {s}"));
        }
        if let Some(p) = &self.port {
            parts.push(format!("port {p}"));
        }
        parts.join(", ")
    }
}

/// Facts of one case run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaseFacts {
    /// SHA-256 of the firmware image flashed (the manifest's hash for virtual DKs).
    pub firmware_sha256: Option<String>,
    pub nodes: BTreeMap<String, NodeFacts>,
    /// The sniffer watching the case's air: `virtual` or its serial port.
    pub sniffer: Option<String>,
    /// Seed of the case's virtual air.
    pub seed: Option<u64>,
    /// The clock the case's steps ran on: `case` (virtual time) or `host`.
    pub clock: Option<&'static str>,
}

impl CaseFacts {
    /// As `(name, value)` pairs for JUnit `<property>` elements.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(sha) = &self.firmware_sha256 {
            out.push(("firmware.sha256".into(), sha.clone()));
        }
        for (node, facts) in &self.nodes {
            out.push((format!("node.{node}"), facts.text()));
        }
        if let Some(s) = &self.sniffer {
            out.push(("sniffer".into(), s.clone()));
        }
        if let Some(seed) = self.seed {
            out.push(("seed".into(), seed.to_string()));
        }
        if let Some(clock) = self.clock {
            out.push(("clock".into(), clock.to_string()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_facts_name_the_host_version_and_start() {
        let f = RunFacts::now();
        assert_eq!(f.version, env!("CARGO_PKG_VERSION"));
        assert!(!f.host.is_empty());
        // RFC 3339, UTC, to the second: 2026-12-02T20:05:00Z.
        assert_eq!(f.started.len(), 20, "{}", f.started);
        assert!(
            humantime::parse_rfc3339(&f.started).is_ok(),
            "{}",
            f.started
        );
        let system = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        if !system.is_empty() {
            assert_eq!(f.host, system);
        }
    }

    #[test]
    fn case_facts_as_properties() {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "dut".to_string(),
            NodeFacts {
                source: "board",
                board_id: Some("dk1".into()),
                probe_serial: Some("683759358".into()),
                port: Some("/dev/ttyACM0".into()),
            },
        );
        let facts = CaseFacts {
            firmware_sha256: Some("ab12".into()),
            nodes,
            sniffer: Some("virtual".into()),
            seed: Some(3),
            clock: Some("case"),
        };
        assert_eq!(
            facts.properties(),
            vec![
                ("firmware.sha256".to_string(), "ab12".to_string()),
                (
                    "node.dut".to_string(),
                    "board, id dk1, probe 683759358, port /dev/ttyACM0".to_string()
                ),
                ("sniffer".to_string(), "virtual".to_string()),
                ("seed".to_string(), "3".to_string()),
                ("clock".to_string(), "case".to_string()),
            ]
        );
    }
}
