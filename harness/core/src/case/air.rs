//! `[sniffer]` and `[[snapshot]]` as the case loader checks them: every problem at its
//! `file:line:column`, like the rest of a case. The checked tables become the case's
//! [`AirSpec`]: nothing reads the case file again at run time.

use std::collections::BTreeSet;

use serde::Deserialize;
use toml::Spanned;

use super::air_spec::{self, AirSpec, SnapshotSpec, SnifferTable};
use super::names::is_name;
use super::{Location, Problem, Step};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSniffer {
    channel: Option<Spanned<i64>>,
    network_key: Option<Spanned<String>>,
    mesh_local_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSnapshot {
    name: Spanned<String>,
    client: Spanned<String>,
    server: Spanned<String>,
    connection: Option<Spanned<i64>>,
}

/// Check the two tables against the case's nodes and steps; the case's air spec when they
/// are sound (with problems, a default spec: the case does not load anyway).
pub(super) fn validate(
    sniffer: Option<&Spanned<RawSniffer>>,
    snapshots: &[Spanned<RawSnapshot>],
    location: &dyn Fn(usize) -> Location,
    nodes: &[String],
    steps: &[Step],
    problems: &mut Vec<Problem>,
) -> AirSpec {
    let before = problems.len();
    check(
        sniffer.map(Spanned::get_ref),
        snapshots,
        location,
        nodes,
        problems,
    );
    if problems.len() > before {
        return AirSpec::default();
    }
    let table = sniffer.map(|s| {
        let s = s.get_ref();
        SnifferTable {
            channel: s
                .channel
                .as_ref()
                .and_then(|c| u8::try_from(*c.get_ref()).ok()),
            network_key: s.network_key.as_ref().map(|k| k.get_ref().clone()),
            mesh_local_prefix: s.mesh_local_prefix.as_ref().map(|p| p.get_ref().clone()),
        }
    });
    let specs = snapshots
        .iter()
        .map(|s| {
            let s = s.get_ref();
            SnapshotSpec {
                name: s.name.get_ref().clone(),
                client: s.client.get_ref().clone(),
                server: s.server.get_ref().clone(),
                connection: s
                    .connection
                    .as_ref()
                    .and_then(|c| usize::try_from(*c.get_ref()).ok())
                    .unwrap_or(1),
            }
        })
        .collect();
    match AirSpec::from_tables(table.as_ref(), specs, &air_spec::commands(steps)) {
        Ok(spec) => spec,
        Err(e) => {
            // Only what the sniffer learned from the steps can be wrong here: the tables'
            // own values were checked above.
            let at = sniffer.map_or(0, |s| s.span().start);
            problems.push(Problem {
                location: location(at),
                message: format!("{e} (taken from the case's commands)"),
            });
            AirSpec::default()
        }
    }
}

/// Check the two tables against the case's nodes.
fn check(
    sniffer: Option<&RawSniffer>,
    snapshots: &[Spanned<RawSnapshot>],
    location: &dyn Fn(usize) -> Location,
    nodes: &[String],
    problems: &mut Vec<Problem>,
) {
    let mut problem = |offset: usize, message: String| {
        problems.push(Problem {
            location: location(offset),
            message,
        })
    };
    if let Some(s) = sniffer {
        if let Some(c) = &s.channel
            && !(11..=26).contains(c.get_ref())
        {
            problem(
                c.span().start,
                format!(
                    "sniffer channel {} is not an 802.15.4 channel (11..26)",
                    c.get_ref()
                ),
            );
        }
        if let Some(k) = &s.network_key
            && air_spec::parse_network_key(k.get_ref()).is_err()
        {
            problem(
                k.span().start,
                format!(
                    "network_key {:?} is not 32 hex digits (16 bytes)",
                    k.get_ref()
                ),
            );
        }
        if let Some(p) = &s.mesh_local_prefix
            && air_spec::parse_prefix(p.get_ref()).is_err()
        {
            problem(
                p.span().start,
                format!("mesh_local_prefix {:?} is not an IPv6 prefix", p.get_ref()),
            );
        }
    }
    let mut names = BTreeSet::new();
    for snap in snapshots {
        let s = snap.get_ref();
        let name = s.name.get_ref();
        if !is_name(name) {
            problem(
                s.name.span().start,
                format!("bad snapshot name {name:?} (letters, digits, `-`, `_`)"),
            );
        } else if !names.insert(name.clone()) {
            problem(
                s.name.span().start,
                format!("snapshot name `{name}` used twice"),
            );
        }
        for (role, node) in [("client", &s.client), ("server", &s.server)] {
            if !nodes.contains(node.get_ref()) {
                problem(
                    node.span().start,
                    format!(
                        "snapshot {role}: unknown node `{}` (nodes: {})",
                        node.get_ref(),
                        nodes.join(", ")
                    ),
                );
            }
        }
        if s.client.get_ref() == s.server.get_ref() {
            problem(
                s.server.span().start,
                "snapshot client and server are the same node".into(),
            );
        }
        if let Some(c) = &s.connection
            && *c.get_ref() < 1
        {
            problem(
                c.span().start,
                format!(
                    "snapshot connection {} (connections count from 1)",
                    c.get_ref()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LoadOptions, load_case};

    fn load(text: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        load_case(&path, &LoadOptions::default())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    const HEAD: &str = "nodes = [\"a\", \"b\"]\n[[steps]]\nnode = \"a\"\nsend = \"state\"\n";

    #[test]
    fn good_tables_load() {
        let text = format!(
            "{HEAD}[sniffer]\nchannel = 15\nnetwork_key = \"00112233445566778899aabbccddeeff\"\n\
             [[snapshot]]\nname = \"x509-handshake\"\nclient = \"b\"\nserver = \"a\"\nconnection = 2\n"
        );
        assert_eq!(load(&text), Ok(()));
    }

    #[test]
    fn problems_point_at_the_value() {
        let text = format!(
            "{HEAD}[sniffer]\nchannel = 27\nnetwork_key = \"0011\"\nmesh_local_prefix = \"fdde::zz\"\n\
             [[snapshot]]\nname = \"h\"\nclient = \"c\"\nserver = \"a\"\nconnection = 0\n\
             [[snapshot]]\nname = \"h\"\nclient = \"a\"\nserver = \"a\"\n"
        );
        let err = load(&text).unwrap_err();
        for expected in [
            "c.toml:6:11: sniffer channel 27 is not an 802.15.4 channel (11..26)",
            "c.toml:7:15: network_key \"0011\" is not 32 hex digits",
            "c.toml:8:21: mesh_local_prefix \"fdde::zz\" is not an IPv6 prefix",
            "c.toml:11:10: snapshot client: unknown node `c` (nodes: a, b)",
            "c.toml:13:14: snapshot connection 0 (connections count from 1)",
            "c.toml:15:8: snapshot name `h` used twice",
            "c.toml:17:10: snapshot client and server are the same node",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
        // Unknown keys are refused with their position too.
        let err = load(&format!("{HEAD}[sniffer]\nchanel = 15\n")).unwrap_err();
        assert!(err.contains("c.toml:6:1"), "{err}");
    }
}
