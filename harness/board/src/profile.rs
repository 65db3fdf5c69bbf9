//! The console dialect of a firmware: one type for manifests, hardware maps and the runner.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Console dialect of the firmware a board runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// nRF Connect SDK Thread CLI sample: Zephyr shell, OpenThread's CLI under the `ot` command.
    Ncs,
    /// Upstream OpenThread CLI: prompt `> `, commands without prefix.
    Upstream,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Ncs, Profile::Upstream];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Ncs => "ncs",
            Profile::Upstream => "upstream",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown profile `{s}` (expected ncs or upstream)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        assert!("zephyr".parse::<Profile>().is_err());
        let parsed: Profile = toml::from_str::<toml::Value>("p = \"upstream\"")
            .expect("toml")
            .get("p")
            .cloned()
            .expect("p")
            .try_into()
            .expect("profile");
        assert_eq!(parsed, Profile::Upstream);
    }
}
