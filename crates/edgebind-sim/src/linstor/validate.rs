//! Name and property-key checks, following the controller's `Checks.nameCheck` and the
//! property whitelist (`Aux/` keys are free-form).

use super::api::Props;
use super::rc;
use super::reply::Rc;

/// Identity key of a name: LINSTOR names are case-insensitive.
pub fn key(name: &str) -> String {
    name.to_ascii_uppercase()
}

/// Resource names DRBD reserves: `ResourceName` refuses them (case-insensitively) before the
/// character checks (linstor-server `core/identifier/ResourceName.java`, `RESERVED_KEYWORD_ALL`,
/// `RESERVED_KEYWORD_PROXY`, @3e9306a9).
pub const RESERVED_RESOURCE_NAMES: &[&str] = &["all", "proxy"];

/// A resource (definition) name: [`name_ok`] and not reserved. The controller answers
/// `FAIL_INVLD_RSC_NAME` "The specified resource name '<n>' is invalid." (HTTP 500,
/// `LinstorParsingUtils.asRscName`).
pub fn check_rsc_name(name: &str, op: u64, obj: u64) -> Result<(), Rc> {
    if RESERVED_RESOURCE_NAMES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Err(Rc::new(
            rc::error(op, obj, rc::FAIL_INVLD_RSC_NAME),
            format!("The specified resource name '{name}' is invalid."),
        )
        .cause(format!(
            "The specified name '{name}' cannot be used because it matches a keyword reserved for DRBD."
        )));
    }
    check_name(
        name,
        "resource definition",
        op,
        obj,
        rc::FAIL_INVLD_RSC_NAME,
    )
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

/// Checks every entry of a props map: the first key off the whitelist (after normalisation)
/// gives FAIL_INVLD_PROP, a value above [`PROP_VALUE_MAX`] the database's refusal.
pub fn check_props(props: &Props, op: u64, obj: u64) -> Result<(), Rc> {
    for k in props.keys() {
        let k = normalize_key(k);
        if !prop_key_ok(&k) {
            return Err(Rc::new(
                rc::error(op, obj, rc::FAIL_INVLD_PROP),
                format!("The key '{k}' is not whitelisted."),
            ));
        }
    }
    check_prop_values(props, "the object")
}

/// Longest property value the SQL backends store: `PROP_VALUE VARCHAR(4096)` in
/// `PROPS_CONTAINERS` (linstor-server `controller/src/main/resources/com/linbit/linstor/dbcp/
/// migration/2018_03_27_14_01_consolidated-init-db.sql` l.317, @3e9306a9). No Java check comes
/// first: the database refuses the write, the `DatabaseException` reaches
/// `ResponseConverter.reportException` as an unhandled exception, so the client gets HTTP 500
/// `FAIL_UNKNOWN_ERROR` with an error report.
pub const PROP_VALUE_MAX: usize = 4096;

/// Refuses values longer than [`PROP_VALUE_MAX`] characters, as the database does.
pub fn check_prop_values<'a>(
    values: impl IntoIterator<Item = (&'a String, &'a String)>,
    what: &str,
) -> Result<(), Rc> {
    for (k, v) in values {
        if v.chars().count() > PROP_VALUE_MAX {
            return Err(Rc::new(
                (rc::FAIL_UNKNOWN_ERROR | rc::MASK_ERROR) as i64,
                format!(
                    "Modification of {what} failed due to an unhandled exception of type ApiDatabaseException. Value too long for column \"PROP_VALUE CHARACTER VARYING(4096)\" (key '{k}')"
                ),
            ));
        }
    }
    Ok(())
}

/// The key as the controller stores it: `PropsContainer.sanitizePath` drops empty path segments,
/// so `Aux/team//a` and `Aux/team/a/` are both stored as `Aux/team/a` (linstor-server
/// `server/src/main/java/com/linbit/linstor/propscon/PropsContainer.java` l.598–628, @3e9306a9).
pub fn normalize_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    if k.starts_with('/') {
        out.push('/');
    }
    let mut first = true;
    for seg in k.split('/').filter(|s| !s.is_empty()) {
        if !first {
            out.push('/');
        }
        out.push_str(seg);
        first = false;
    }
    out
}

/// Every key of `props` normalised (see [`normalize_key`]).
pub fn normalize_props(props: Props) -> Props {
    props
        .into_iter()
        .map(|(k, v)| (normalize_key(&k), v))
        .collect()
}

/// Applies the generic modify body: overrides, deleted keys and deleted namespaces. Keys are
/// normalised as the controller does before it stores or removes them.
pub fn apply_props_modify(
    props: &mut Props,
    overrides: Option<&Props>,
    delete: Option<&Vec<String>>,
    delete_ns: Option<&Vec<String>>,
) {
    if let Some(ov) = overrides {
        for (k, v) in ov {
            props.insert(normalize_key(k), v.clone());
        }
    }
    if let Some(del) = delete {
        for k in del {
            props.remove(&normalize_key(k));
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

    #[test]
    fn keys_are_normalised_like_sanitize_path() {
        assert_eq!(normalize_key("Aux/team//a"), "Aux/team/a");
        assert_eq!(normalize_key("Aux/team/"), "Aux/team");
        assert_eq!(normalize_key("Aux/x"), "Aux/x");
    }

    #[test]
    fn reserved_resource_names() {
        assert!(check_rsc_name("all", 0, 0).is_err());
        assert!(check_rsc_name("PROXY", 0, 0).is_err());
        assert!(check_rsc_name("allx", 0, 0).is_ok());
    }
}
