//! The air witness: a sniffer board (a real nRF52840 running Nordic's "nRF Sniffer for 802.15.4"
//! firmware, or a virtual one on the run's air) read during a case, its frames written to a pcap
//! file and decoded with the case's network key into per-connection DTLS handshake transcripts,
//! which are compared with stored insta snapshots.
//!
//! A case asks for this with two optional tables (see the top-level README.md, "Handshake snapshots"):
//!
//! ```toml
//! [sniffer]                      # a sniffer watches this case
//! channel = 15                   # default: the channel the case's steps set (`channel N`)
//! network_key = "0011..eeff"     # default: the key the case's steps set (`networkkey K`)
//! mesh_local_prefix = "fdde:ad00:beef:0::/64"   # default: the steps' `meshlocalprefix`, else OT's
//!
//! [[snapshot]]                   # one per handshake to compare
//! name = "x509-handshake"
//! client = "client"              # the node that runs `coaps connect`
//! server = "server"
//! connection = 1                 # which DTLS connection (1 = the first one started), default 1
//! ```

pub mod capture;
pub mod reader;
pub mod snapshot;
pub mod snapshot_file;
pub mod synth;
pub mod witness;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::case::{Action, Case};

pub use capture::{Capture, CaptureStats, Connection};
pub use reader::{SnifferPort, SnifferSession};
pub use snapshot::{SnapshotOutcome, Snapshots};

/// OpenThread's default mesh-local prefix (fdde:ad00:beef:0::/64).
pub const DEFAULT_MESH_LOCAL_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0, 0];
/// Thread's default channel when nothing else says.
pub const DEFAULT_CHANNEL: u8 = 11;

#[derive(Debug, thiserror::Error)]
pub enum AirError {
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("network key must be 32 hex digits, got {0:?}")]
    NetworkKey(String),
    #[error("mesh-local prefix must be an IPv6 /64 prefix, got {0:?}")]
    Prefix(String),
    #[error("sniffer port {path}: {message}")]
    Port { path: String, message: String },
    #[error("pcap {path}: {message}")]
    Pcap { path: PathBuf, message: String },
    #[error("snapshot {name}: {message}")]
    Snapshot { name: String, message: String },
}

/// What a case declares about the air (both tables optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AirSpec {
    /// `[sniffer]` present: watch the case with a sniffer.
    pub sniffer: bool,
    pub channel: u8,
    /// `None`: no key known, frames are captured but not decrypted.
    pub network_key: Option<[u8; 16]>,
    pub mesh_local_prefix: [u8; 8],
    pub snapshots: Vec<SnapshotSpec>,
}

/// One `[[snapshot]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSpec {
    pub name: String,
    pub client: String,
    pub server: String,
    #[serde(default = "one")]
    pub connection: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSniffer {
    channel: Option<u8>,
    network_key: Option<String>,
    mesh_local_prefix: Option<String>,
}

/// The two tables of a case file this module reads; everything else belongs to the case loader.
#[derive(Debug, Default, Deserialize)]
struct RawAirTables {
    sniffer: Option<RawSniffer>,
    #[serde(default)]
    snapshot: Vec<SnapshotSpec>,
}

impl AirSpec {
    /// Read `[sniffer]` and `[[snapshot]]` from the case file and fill what they leave out from
    /// the case's own commands (`channel N`, `networkkey K`, `meshlocalprefix P`, and their
    /// `dataset ...` forms): the sniffer needs the same network parameters the boards are given.
    pub fn for_case(case: &Case) -> Result<AirSpec, AirError> {
        let text = std::fs::read_to_string(&case.path).map_err(|e| AirError::Spec {
            path: case.path.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&case.path, &text, &commands(case))
    }

    /// `text`: the case file; `commands`: the case's commands in order.
    pub fn parse(path: &Path, text: &str, commands: &[String]) -> Result<AirSpec, AirError> {
        let spec_err = |message: String| AirError::Spec {
            path: path.to_path_buf(),
            message,
        };
        let table: toml::Table = toml::from_str(text).map_err(|e| spec_err(e.to_string()))?;
        let mut air = toml::Table::new();
        for key in ["sniffer", "snapshot"] {
            if let Some(v) = table.get(key) {
                air.insert(key.to_string(), v.clone());
            }
        }
        let raw: RawAirTables = air.try_into().map_err(|e: toml::de::Error| {
            spec_err(format!("[sniffer]/[[snapshot]]: {}", e.message()))
        })?;
        let learned = Learned::from_commands(commands);
        let sniffer = raw.sniffer.unwrap_or_default();
        let channel = sniffer
            .channel
            .or(learned.channel)
            .unwrap_or(DEFAULT_CHANNEL);
        if !(11..=26).contains(&channel) {
            return Err(spec_err(format!("sniffer channel {channel} is not 11..26")));
        }
        let network_key = match sniffer
            .network_key
            .as_deref()
            .or(learned.network_key.as_deref())
        {
            Some(k) => Some(parse_network_key(k)?),
            None => None,
        };
        let mesh_local_prefix = match sniffer
            .mesh_local_prefix
            .as_deref()
            .or(learned.mesh_local_prefix.as_deref())
        {
            Some(p) => parse_prefix(p)?,
            None => DEFAULT_MESH_LOCAL_PREFIX,
        };
        let mut names = std::collections::BTreeSet::new();
        for s in &raw.snapshot {
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(spec_err(format!(
                    "snapshot name {:?}: use letters, digits, - and _",
                    s.name
                )));
            }
            if !names.insert(s.name.clone()) {
                return Err(spec_err(format!("snapshot name {:?} used twice", s.name)));
            }
            if s.connection == 0 {
                return Err(spec_err(format!(
                    "snapshot {:?}: connection counts from 1",
                    s.name
                )));
            }
        }
        Ok(AirSpec {
            sniffer: table.contains_key("sniffer"),
            channel,
            network_key,
            mesh_local_prefix,
            snapshots: raw.snapshot,
        })
    }

    /// Whether the case needs anything from this module.
    pub fn is_empty(&self) -> bool {
        !self.sniffer && self.snapshots.is_empty()
    }
}

/// The case's commands (with unresolved `${...}` left empty) in step order.
pub fn commands(case: &Case) -> Vec<String> {
    case.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Command { command, .. } | Action::Poll { command, .. } => {
                Some(command.with_placeholders(""))
            }
            _ => None,
        })
        .collect()
}

#[derive(Debug, Default)]
struct Learned {
    channel: Option<u8>,
    network_key: Option<String>,
    mesh_local_prefix: Option<String>,
}

impl Learned {
    fn from_commands(commands: &[String]) -> Learned {
        let mut l = Learned::default();
        for c in commands {
            let words: Vec<&str> = c.split_whitespace().collect();
            let words = match words.as_slice() {
                ["ot", rest @ ..] => rest,
                all => all,
            };
            let words = match words {
                ["dataset", rest @ ..] => rest,
                all => all,
            };
            match words {
                ["channel", n] if l.channel.is_none() => l.channel = n.parse().ok(),
                ["networkkey", k] if l.network_key.is_none() => {
                    l.network_key = Some((*k).to_string());
                }
                ["meshlocalprefix", p] if l.mesh_local_prefix.is_none() => {
                    l.mesh_local_prefix = Some((*p).to_string());
                }
                _ => {}
            }
        }
        l
    }
}

pub fn parse_network_key(s: &str) -> Result<[u8; 16], AirError> {
    let t = s.trim().trim_start_matches("0x");
    let bytes = (0..t.len())
        .step_by(2)
        .map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>();
    bytes
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| AirError::NetworkKey(s.to_string()))
}

pub fn parse_prefix(s: &str) -> Result<[u8; 8], AirError> {
    let addr = s.split('/').next().unwrap_or("");
    let addr: std::net::Ipv6Addr = addr.parse().map_err(|_| AirError::Prefix(s.to_string()))?;
    let mut out = [0u8; 8];
    out.copy_from_slice(&addr.octets()[..8]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_from_tables_and_commands() {
        let text = r#"
nodes = ["a", "b"]
[sniffer]
[[snapshot]]
name = "x509-handshake"
client = "b"
server = "a"
"#;
        let commands = vec![
            "thread stop".to_string(),
            "channel 15".to_string(),
            "networkkey 00112233445566778899aabbccddeeff".to_string(),
            "dataset meshlocalprefix fd00:db8::".to_string(),
        ];
        let spec = AirSpec::parse(Path::new("c.toml"), text, &commands).unwrap();
        assert!(spec.sniffer);
        assert_eq!(spec.channel, 15);
        assert_eq!(spec.network_key.unwrap()[15], 0xff);
        assert_eq!(spec.mesh_local_prefix, [0xfd, 0, 0x0d, 0xb8, 0, 0, 0, 0]);
        assert_eq!(spec.snapshots[0].connection, 1);

        let explicit =
            "[sniffer]\nchannel = 20\nnetwork_key = \"ffeeddccbbaa99887766554433221100\"\n";
        let spec = AirSpec::parse(Path::new("c.toml"), explicit, &commands).unwrap();
        assert_eq!((spec.channel, spec.network_key.unwrap()[0]), (20, 0xff));
        assert_eq!(spec.mesh_local_prefix, [0xfd, 0, 0x0d, 0xb8, 0, 0, 0, 0]);

        let none = AirSpec::parse(Path::new("c.toml"), "nodes = []", &[]).unwrap();
        assert!(none.is_empty());
        assert_eq!(none.mesh_local_prefix, DEFAULT_MESH_LOCAL_PREFIX);
    }

    #[test]
    fn spec_errors_name_the_problem() {
        for bad in [
            "[sniffer]\nchannel = 5\n",
            "[sniffer]\nnetwork_key = \"0011\"\n",
            "[sniffer]\nbogus = 1\n",
            "[[snapshot]]\nname = \"a b\"\nclient = \"c\"\nserver = \"s\"\n",
            "[[snapshot]]\nname = \"a\"\nclient = \"c\"\n",
            "[[snapshot]]\nname = \"a\"\nclient = \"c\"\nserver = \"s\"\n[[snapshot]]\nname = \"a\"\nclient = \"c\"\nserver = \"s\"\n",
        ] {
            assert!(
                AirSpec::parse(Path::new("c.toml"), bad, &[]).is_err(),
                "{bad}"
            );
        }
    }
}
