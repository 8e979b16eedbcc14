//! Deterministic, valid, collision-free LINSTOR names for Kubernetes objects.
//!
//! LINSTOR names are 2-48 characters of `[A-Za-z0-9_-]`, start with a letter or `_`, and are
//! case-insensitive. Kubernetes names are lower case, so case never collides. The readable form
//! `eb-<namespace>_<name>` is injective: a namespace holds no `_` or `.`, so the first `_`
//! separates the two, and `.` in a name becomes `_`. When it is too long, the hashed form
//! `eb-<prefix>-<16 hex of sha256>` is used; it contains no `_`, so it can never equal a
//! readable name. An object whose name is taken by another owner is still caught by the
//! ownership marker (a `Conflict`), never shared.

use sha2::{Digest, Sha256};

pub const MAX_LEN: usize = 48;

fn hashed(prefix: &str, key: &str, readable: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let room = MAX_LEN - prefix.len() - 1 - hex.len();
    let mut head: String = readable
        .chars()
        .map(|c| if c == '_' || c == '.' { '-' } else { c })
        .take(room)
        .collect();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{prefix}{head}-{hex}")
}

/// Resource definition name of the EdgeVolume `namespace/name`.
pub fn volume_name(namespace: &str, name: &str) -> String {
    let readable = format!("eb-{namespace}_{}", name.replace('.', "_"));
    if readable.len() <= MAX_LEN {
        readable
    } else {
        hashed(
            "eb-",
            &format!("{namespace}/{name}"),
            &format!("{namespace}-{name}"),
        )
    }
}

/// Snapshot name (unique within its resource definition) of the EdgeSnapshot `name`.
pub fn snapshot_name(name: &str) -> String {
    let readable = format!("ebs_{}", name.replace('.', "_"));
    if readable.len() <= MAX_LEN {
        readable
    } else {
        hashed("ebs-", name, name)
    }
}

/// Whether LINSTOR accepts `name` (for names users give, such as resource groups).
pub fn is_valid(name: &str) -> bool {
    let len_ok = (2..=MAX_LEN).contains(&name.len());
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    len_ok
        && first_ok
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.chars().any(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn readable_when_short() {
        assert_eq!(volume_name("team-a", "db.data"), "eb-team-a_db_data");
        assert!(is_valid(&volume_name("team-a", "db.data")));
    }

    #[test]
    fn separator_is_unambiguous() {
        // The classic ambiguity of a `-` separator.
        assert_ne!(volume_name("a-b", "c"), volume_name("a", "b-c"));
    }

    #[test]
    fn long_names_are_hashed_valid_and_distinct() {
        let ns = "n".repeat(63);
        let a = volume_name(&ns, &"x".repeat(200));
        let b = volume_name(&ns, &format!("{}y", "x".repeat(199)));
        assert!(a.len() <= MAX_LEN && is_valid(&a), "{a}");
        assert_ne!(a, b);
        assert!(!a.contains('_'));
    }

    #[test]
    fn no_collisions_over_many_names() {
        let mut seen = HashSet::new();
        for ns in ["a", "a-b", "ab", "team-1", &"n".repeat(40)] {
            for i in 0..300 {
                let n = format!("vol-{i}.{}", "z".repeat(i % 50));
                let name = volume_name(ns, &n).to_ascii_uppercase();
                assert!(seen.insert(name.clone()), "collision on {name}");
                assert!(is_valid(&name));
            }
        }
    }

    #[test]
    fn snapshot_names() {
        assert_eq!(snapshot_name("nightly.1"), "ebs_nightly_1");
        let long = snapshot_name(&"s".repeat(100));
        assert!(long.len() <= MAX_LEN && is_valid(&long));
    }
}
