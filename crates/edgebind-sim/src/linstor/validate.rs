//! Name and property-key checks, following the controller's `Checks.nameCheck` and the
//! property whitelist (`Aux/` keys are free-form).

use super::api::Props;
use super::rc;
use super::reply::Rc;

/// Identity key of a name: LINSTOR names are case-insensitive.
pub fn key(name: &str) -> String {
    name.to_ascii_uppercase()
}

/// 2–48 chars, first `[A-Za-z_]`, rest `[A-Za-z0-9_-]`, at least one letter.
pub fn name_ok(name: &str) -> bool {
    let bytes = name.as_bytes();
    if !(2..=48).contains(&bytes.len()) {
        return false;
    }
    let first = bytes[0];
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return false;
    }
    bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
        && bytes.iter().any(u8::is_ascii_alphabetic)
}

/// Validates a name; `what` is e.g. "resource definition", `code` the FAIL_INVLD_* code.
pub fn check_name(name: &str, what: &str, op: u64, obj: u64, code: u64) -> Result<(), Rc> {
    if name_ok(name) {
        Ok(())
    } else {
        Err(Rc::new(
            rc::error(op, obj, code),
            format!("The specified {what} name '{name}' is not a valid {what} name."),
        )
        .details("Names must be 2-48 characters long, start with a letter or '_', contain only letters, digits, '_' and '-', and at least one letter."))
    }
}

const WHITELIST_PREFIXES: &[&str] = &[
    "DrbdOptions/Resource/",
    "DrbdOptions/Net/",
    "DrbdOptions/Disk/",
    "DrbdOptions/PeerDevice/",
    "DrbdOptions/Handlers/",
];

const WHITELIST_KEYS: &[&str] = &[
    "DrbdOptions/AutoEvictAllowEviction",
    "DrbdOptions/auto-quorum",
    "DrbdOptions/auto-add-quorum-tiebreaker",
    "FileSystem/Type",
    "FileSystem/MkfsParams",
    "BalanceResourcesEnabled",
    "StorPoolName",
    "StorPoolNameDrbdMeta",
    "PeerSlotsNewResource",
];

pub fn prop_key_ok(k: &str) -> bool {
    if k.is_empty() || k.len() > 256 {
        return false;
    }
    if let Some(rest) = k.strip_prefix("Aux/") {
        return !rest.is_empty();
    }
    WHITELIST_KEYS.contains(&k)
        || WHITELIST_PREFIXES
            .iter()
            .any(|p| k.len() > p.len() && k.starts_with(p))
}

/// Checks every key of a props map; the first offender gives FAIL_INVLD_PROP.
pub fn check_props<'a>(
    keys: impl IntoIterator<Item = &'a String>,
    op: u64,
    obj: u64,
) -> Result<(), Rc> {
    for k in keys {
        if !prop_key_ok(k) {
            return Err(Rc::new(
                rc::error(op, obj, rc::FAIL_INVLD_PROP),
                format!("The key '{k}' is not whitelisted."),
            ));
        }
    }
    Ok(())
}

/// Applies the generic modify body: overrides, deleted keys and deleted namespaces.
pub fn apply_props_modify(
    props: &mut Props,
    overrides: Option<&Props>,
    delete: Option<&Vec<String>>,
    delete_ns: Option<&Vec<String>>,
) {
    if let Some(ov) = overrides {
        for (k, v) in ov {
            props.insert(k.clone(), v.clone());
        }
    }
    if let Some(del) = delete {
        for k in del {
            props.remove(k);
        }
    }
    if let Some(nss) = delete_ns {
        for ns in nss {
            let prefix = format!("{}/", ns.trim_end_matches('/'));
            props.retain(|k, _| !k.starts_with(&prefix));
        }
    }
}

/// `props=` query filter: each entry is `key` (must exist) or `key=value`; entries are ANDed.
pub fn props_match(props: &Props, filters: &[String]) -> bool {
    filters.iter().all(|f| match f.split_once('=') {
        Some((k, v)) => props.get(k).is_some_and(|have| have == v),
        None => props.contains_key(f.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name_ok("pvc-1"));
        assert!(name_ok("_a"));
        assert!(!name_ok("a"));
        assert!(!name_ok("1abc"));
        assert!(!name_ok("__"));
        assert!(!name_ok("a.b"));
        assert!(!name_ok(&"a".repeat(49)));
    }

    #[test]
    fn props() {
        assert!(prop_key_ok("Aux/anything/goes"));
        assert!(prop_key_ok("DrbdOptions/Resource/quorum"));
        assert!(!prop_key_ok("Foo/Bar"));
        assert!(!prop_key_ok("Aux/"));
    }
}
