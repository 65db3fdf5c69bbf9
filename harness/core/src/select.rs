//! Which case runs (`case@variant`) a `run` or `list` does: `--filter` patterns, `--failed`, and
//! what an empty selection means (`--no-tests`).
//!
//! A filter is a glob (`*`, `?`, `[...]`, `{a,b}`) matched against the whole name:
//! - `case:GLOB` selects cases by name, `variant:GLOB` variants by name;
//! - `CASE@VARIANT` (each side a glob) selects both at once;
//! - a bare pattern selects cases by name; without glob characters it matches wherever it occurs
//!   in the name (`psk` selects every case with `psk` in its name, and no longer every case of
//!   the `ncs-v2.2.0-psk` variant).
//!
//! Filters of one kind select the union; case and variant filters are both applied: `--filter
//! 'case:coaps-*' --filter variant:ncs-v2.2.0` is the CoAPS cases on that variant.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};

use crate::events::Outcome;

/// Errors reading the selection options.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("bad --filter {pattern:?}: {source}")]
    Glob {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("bad --filter {pattern:?}: {message}")]
    Filter { pattern: String, message: String },
    #[error("--failed: cannot read {}", path.display())]
    ReadResults {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--failed: {} is not a results file", path.display())]
    ParseResults {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("--failed: {} has no `results` list", path.display())]
    NoResults { path: PathBuf },
    #[error("--no-tests: {0:?} is not one of fail, warn, pass")]
    NoTests(String),
}

/// One name pattern.
#[derive(Debug, Clone)]
struct NamePattern(GlobMatcher);

impl NamePattern {
    /// `substring`: plain text (no glob characters) matches anywhere in the name.
    fn new(whole: &str, pattern: &str, substring: bool) -> Result<NamePattern, SelectError> {
        if pattern.is_empty() {
            return Err(SelectError::Filter {
                pattern: whole.to_string(),
                message: "empty pattern".into(),
            });
        }
        let has_glob = pattern.contains(['*', '?', '[', '{']);
        let glob = if has_glob || !substring {
            pattern.to_string()
        } else {
            // Bare plain text is found anywhere in the name, as the filter always did.
            format!("*{}*", globset::escape(pattern))
        };
        let matcher = Glob::new(&glob)
            .map_err(|source| SelectError::Glob {
                pattern: whole.to_string(),
                source,
            })?
            .compile_matcher();
        Ok(NamePattern(matcher))
    }

    fn matches(&self, name: &str) -> bool {
        self.0.is_match(name)
    }
}

/// One `--filter`.
#[derive(Debug, Clone)]
enum Filter {
    Case(NamePattern),
    Variant(NamePattern),
    Both(NamePattern, NamePattern),
}

impl std::str::FromStr for Filter {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<Filter, SelectError> {
        if let Some(p) = s.strip_prefix("case:") {
            Ok(Filter::Case(NamePattern::new(s, p, false)?))
        } else if let Some(p) = s.strip_prefix("variant:") {
            Ok(Filter::Variant(NamePattern::new(s, p, false)?))
        } else if let Some((case, variant)) = s.split_once('@') {
            Ok(Filter::Both(
                NamePattern::new(s, case, false)?,
                NamePattern::new(s, variant, false)?,
            ))
        } else {
            Ok(Filter::Case(NamePattern::new(s, s, true)?))
        }
    }
}

/// What to do when nothing is selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoTests {
    /// Exit with [`crate::report::exit_code::NO_TESTS`]: a filter that matches nothing is
    /// usually a typo, and a green run of nothing hides it.
    #[default]
    Fail,
    /// Say so and exit 0.
    Warn,
    /// Exit 0 quietly.
    Pass,
}

impl std::str::FromStr for NoTests {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<NoTests, SelectError> {
        match s {
            "fail" => Ok(NoTests::Fail),
            "warn" => Ok(NoTests::Warn),
            "pass" => Ok(NoTests::Pass),
            other => Err(SelectError::NoTests(other.to_string())),
        }
    }
}

/// The case runs selected by `--filter` and `--failed` (all of them when neither is given).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    filters: Vec<Filter>,
    /// `case@variant` runs to repeat (`--failed`); `None` when not asked for.
    only: Option<BTreeSet<(String, String)>>,
}

impl Selection {
    /// Every `--filter` given.
    pub fn new(filters: &[String]) -> Result<Selection, SelectError> {
        Ok(Selection {
            filters: filters
                .iter()
                .map(|f| f.parse())
                .collect::<Result<_, _>>()?,
            only: None,
        })
    }

    /// Only the runs that failed (FAIL, XPASS or ERROR) in `results`, the `results.json` of an
    /// earlier run.
    pub fn only_failed_in(mut self, results: &Path) -> Result<Selection, SelectError> {
        self.only = Some(failed_runs(results)?);
        Ok(self)
    }

    /// Whether `case@variant` is selected.
    pub fn matches(&self, case: &str, variant: &str) -> bool {
        if let Some(only) = &self.only
            && !only.contains(&(case.to_string(), variant.to_string()))
        {
            return false;
        }
        let mut cases = self.filters.iter().filter_map(|f| match f {
            Filter::Case(p) => Some(p.matches(case)),
            _ => None,
        });
        let mut variants = self.filters.iter().filter_map(|f| match f {
            Filter::Variant(p) => Some(p.matches(variant)),
            _ => None,
        });
        let mut both = self.filters.iter().filter_map(|f| match f {
            Filter::Both(c, v) => Some(c.matches(case) && v.matches(variant)),
            _ => None,
        });
        // A kind nobody asked for selects everything; `case@variant` filters are alternatives to
        // case filters (both name cases).
        let any_case = self
            .filters
            .iter()
            .any(|f| matches!(f, Filter::Case(_) | Filter::Both(..)));
        let case_ok = !any_case || cases.any(|m| m) || both.any(|m| m);
        let variant_ok =
            !self.filters.iter().any(|f| matches!(f, Filter::Variant(_))) || variants.any(|m| m);
        case_ok && variant_ok
    }
}

/// The `(case, variant)` runs whose outcome in a `results.json` is FAIL, XPASS or ERROR.
fn failed_runs(path: &Path) -> Result<BTreeSet<(String, String)>, SelectError> {
    let text = std::fs::read_to_string(path).map_err(|source| SelectError::ReadResults {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| SelectError::ParseResults {
            path: path.to_path_buf(),
            source,
        })?;
    let results = doc
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or_else(|| SelectError::NoResults {
            path: path.to_path_buf(),
        })?;
    let failed = [Outcome::Fail, Outcome::Xpass, Outcome::Error].map(Outcome::label);
    Ok(results
        .iter()
        .filter(|r| {
            r.get("outcome")
                .and_then(|o| o.as_str())
                .is_some_and(|o| failed.contains(&o))
        })
        .filter_map(|r| {
            Some((
                r.get("case")?.as_str()?.to_string(),
                r.get("variant")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(filters: &[&str]) -> Selection {
        Selection::new(&filters.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn plain_text_selects_cases_not_variants() {
        let s = sel(&["psk"]);
        assert!(s.matches("coaps-psk-connect", "ncs-v2.2.0"));
        // Today's substring-of-`case@variant` filter selected this through the variant name.
        assert!(!s.matches("thread-network-formation", "ncs-v2.2.0-psk"));
    }

    #[test]
    fn globs_and_prefixes() {
        let s = sel(&["coaps-*"]);
        assert!(s.matches("coaps-report-x509", "upstream"));
        assert!(!s.matches("thread-coaps", "upstream"));
        let s = sel(&["variant:ncs-v2.2.0"]);
        assert!(s.matches("a", "ncs-v2.2.0"));
        assert!(
            !s.matches("a", "ncs-v2.2.0-psk"),
            "a prefixed name is whole"
        );
        let s = sel(&["variant:ncs-v2.?.0"]);
        assert!(s.matches("a", "ncs-v2.1.0") && !s.matches("a", "ncs-v2.2.0-psk"));
        let s = sel(&["case:coaps-*", "variant:upstream"]);
        assert!(s.matches("coaps-x", "upstream"));
        assert!(!s.matches("coaps-x", "ncs-v2.2.0") && !s.matches("form", "upstream"));
        assert!(!sel(&["case:psk"]).matches("coaps-psk", "v"));
        let s = sel(&["case:form*", "case:coaps-*"]);
        assert!(
            s.matches("formation", "v") && s.matches("coaps-x", "v") && !s.matches("ping", "v")
        );
        let s = sel(&["coaps-*@ncs-*", "ping"]);
        assert!(s.matches("coaps-x", "ncs-v2.2.0") && !s.matches("coaps-x", "upstream"));
        assert!(s.matches("ping", "upstream"));
        assert!(sel(&[]).matches("anything", "at-all"));
    }

    #[test]
    fn bad_filters_are_errors() {
        let e = Selection::new(&["case:[oops".to_string()]).unwrap_err();
        assert!(
            e.to_string().starts_with("bad --filter \"case:[oops\""),
            "{e}"
        );
        let e = Selection::new(&["variant:".to_string()]).unwrap_err();
        assert!(e.to_string().contains("empty pattern"), "{e}");
        assert!("maybe".parse::<NoTests>().is_err());
        assert_eq!("warn".parse::<NoTests>().unwrap(), NoTests::Warn);
    }

    #[test]
    fn failed_reads_the_failures_of_a_results_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        std::fs::write(
            &path,
            r#"{"summary": {}, "results": [
                {"case": "a", "variant": "v1", "outcome": "PASS"},
                {"case": "a", "variant": "v2", "outcome": "FAIL"},
                {"case": "b", "variant": "v1", "outcome": "ERROR"},
                {"case": "c", "variant": "v1", "outcome": "XFAIL"},
                {"case": "d", "variant": "v1", "outcome": "XPASS"}
            ]}"#,
        )
        .unwrap();
        let s = sel(&[]).only_failed_in(&path).unwrap();
        assert!(s.matches("a", "v2") && s.matches("b", "v1") && s.matches("d", "v1"));
        assert!(!s.matches("a", "v1") && !s.matches("c", "v1") && !s.matches("e", "v1"));
        // Filters still apply on top.
        let s = sel(&["b"]).only_failed_in(&path).unwrap();
        assert!(s.matches("b", "v1") && !s.matches("a", "v2"));

        let e = sel(&[])
            .only_failed_in(&dir.path().join("none.json"))
            .unwrap_err();
        assert!(e.to_string().starts_with("--failed: cannot read"), "{e}");
        std::fs::write(&path, "{}").unwrap();
        let e = sel(&[]).only_failed_in(&path).unwrap_err();
        assert!(e.to_string().contains("has no `results` list"), "{e}");
    }
}
