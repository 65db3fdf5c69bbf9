//! What a case declares about its air, as the loader validated it: whether a sniffer watches,
//! on which channel, with which network key and mesh-local prefix (from the `[sniffer]` table or
//! learned from the case's own commands), and which handshakes are compared with snapshots. The
//! air witness ([`crate::air`]) runs on this; this module knows nothing of it.

use serde::Deserialize;

use super::{Action, Step};

/// OpenThread's default mesh-local prefix (fdde:ad00:beef:0::/64).
pub const DEFAULT_MESH_LOCAL_PREFIX: [u8; 8] = [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0, 0];
/// Thread's default channel when nothing else says.
pub const DEFAULT_CHANNEL: u8 = 11;

/// A `[sniffer]` value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AirSpecError {
    #[error("sniffer channel {0} is not 11..26")]
    Channel(u8),
    #[error("network key must be 32 hex digits, got {0:?}")]
    NetworkKey(String),
    #[error("mesh-local prefix must be an IPv6 /64 prefix, got {0:?}")]
    Prefix(String),
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

/// The `[sniffer]` table's values, as the case loader checked them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnifferTable {
    pub channel: Option<u8>,
    pub network_key: Option<String>,
    pub mesh_local_prefix: Option<String>,
}

impl AirSpec {
    /// The spec of a case from its `[sniffer]` table (`None`: no sniffer) and `[[snapshot]]`s,
    /// filling what the sniffer table leaves out from the case's own commands (`channel N`,
    /// `networkkey K`, `meshlocalprefix P`, and their `dataset ...` forms): the sniffer needs the
    /// same network parameters the boards are given. Called once, by the case loader.
    pub fn from_tables(
        sniffer: Option<&SnifferTable>,
        snapshots: Vec<SnapshotSpec>,
        commands: &[String],
    ) -> Result<AirSpec, AirSpecError> {
        if sniffer.is_none() && snapshots.is_empty() {
            return Ok(AirSpec {
                channel: DEFAULT_CHANNEL,
                mesh_local_prefix: DEFAULT_MESH_LOCAL_PREFIX,
                ..AirSpec::default()
            });
        }
        let learned = Learned::from_commands(commands);
        let table = sniffer.cloned().unwrap_or_default();
        let channel = table.channel.or(learned.channel).unwrap_or(DEFAULT_CHANNEL);
        if !(11..=26).contains(&channel) {
            return Err(AirSpecError::Channel(channel));
        }
        let network_key = match table
            .network_key
            .as_deref()
            .or(learned.network_key.as_deref())
        {
            Some(k) => Some(parse_network_key(k)?),
            None => None,
        };
        let mesh_local_prefix = match table
            .mesh_local_prefix
            .as_deref()
            .or(learned.mesh_local_prefix.as_deref())
        {
            Some(p) => parse_prefix(p)?,
            None => DEFAULT_MESH_LOCAL_PREFIX,
        };
        Ok(AirSpec {
            sniffer: sniffer.is_some(),
            channel,
            network_key,
            mesh_local_prefix,
            snapshots,
        })
    }

    /// Whether the case needs anything from this module.
    pub fn is_empty(&self) -> bool {
        !self.sniffer && self.snapshots.is_empty()
    }
}

/// The commands of a case's steps (with unresolved `${...}` left empty) in step order.
pub fn commands(steps: &[Step]) -> Vec<String> {
    steps
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

pub fn parse_network_key(s: &str) -> Result<[u8; 16], AirSpecError> {
    let t = s.trim().trim_start_matches("0x");
    let bytes = (0..t.len())
        .step_by(2)
        .map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>();
    bytes
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| AirSpecError::NetworkKey(s.to_string()))
}

pub fn parse_prefix(s: &str) -> Result<[u8; 8], AirSpecError> {
    let addr = s.split('/').next().unwrap_or("");
    let addr: std::net::Ipv6Addr = addr
        .parse()
        .map_err(|_| AirSpecError::Prefix(s.to_string()))?;
    let mut out = [0u8; 8];
    out.copy_from_slice(&addr.octets()[..8]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<AirSpec, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        super::super::load_case(&path, &super::super::LoadOptions::default())
            .map(|c| c.air)
            .map_err(|e| e.to_string())
    }

    const STEPS: &str = "[[steps]]\nnode = \"a\"\nsend = \"thread stop\"\n\
        [[steps]]\nnode = \"a\"\nsend = \"channel 15\"\n\
        [[steps]]\nnode = \"a\"\nsend = \"networkkey 00112233445566778899aabbccddeeff\"\n\
        [[steps]]\nnode = \"a\"\nsend = \"dataset meshlocalprefix fd00:db8::\"\n";

    #[test]
    fn spec_from_tables_and_commands() {
        let text = format!(
            "nodes = [\"a\", \"b\"]\n{STEPS}[sniffer]\n[[snapshot]]\nname = \"x509-handshake\"\nclient = \"b\"\nserver = \"a\"\n"
        );
        let spec = load(&text).unwrap();
        assert!(spec.sniffer);
        assert_eq!(spec.channel, 15);
        assert_eq!(spec.network_key.unwrap()[15], 0xff);
        assert_eq!(spec.mesh_local_prefix, [0xfd, 0, 0x0d, 0xb8, 0, 0, 0, 0]);
        assert_eq!(spec.snapshots[0].connection, 1);

        let explicit = format!(
            "nodes = [\"a\"]\n{STEPS}[sniffer]\nchannel = 20\nnetwork_key = \"ffeeddccbbaa99887766554433221100\"\n"
        );
        let spec = load(&explicit).unwrap();
        assert_eq!((spec.channel, spec.network_key.unwrap()[0]), (20, 0xff));
        assert_eq!(spec.mesh_local_prefix, [0xfd, 0, 0x0d, 0xb8, 0, 0, 0, 0]);

        let none = load(&format!("nodes = [\"a\"]\n{STEPS}")).unwrap();
        assert!(none.is_empty());
        assert_eq!(none.mesh_local_prefix, DEFAULT_MESH_LOCAL_PREFIX);
    }

    #[test]
    fn spec_errors_name_the_problem() {
        let head = "nodes = [\"a\", \"c\"]\n[[steps]]\nnode = \"a\"\nsend = \"state\"\n";
        for bad in [
            "[sniffer]\nchannel = 5\n",
            "[sniffer]\nnetwork_key = \"0011\"\n",
            "[sniffer]\nbogus = 1\n",
            "[[snapshot]]\nname = \"a b\"\nclient = \"c\"\nserver = \"a\"\n",
            "[[snapshot]]\nname = \"a\"\nclient = \"c\"\n",
            "[[snapshot]]\nname = \"a\"\nclient = \"c\"\nserver = \"a\"\n[[snapshot]]\nname = \"a\"\nclient = \"c\"\nserver = \"a\"\n",
        ] {
            assert!(load(&format!("{head}{bad}")).is_err(), "{bad}");
        }
        // What the sniffer learns from the commands is checked too.
        let learned = "nodes = [\"a\"]\n[[steps]]\nnode = \"a\"\nsend = \"channel 5\"\n[sniffer]\n";
        let err = load(learned).unwrap_err();
        assert!(err.contains("sniffer channel 5 is not 11..26"), "{err}");
    }
}
