//! The names a case file gives things (nodes, step ids, variables, snapshots) and the parts of a
//! `${node.var}` reference: letters, digits, `-` and `_`.

/// Whether `s` is a valid name.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
