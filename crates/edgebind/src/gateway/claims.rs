//! Claim paths and subject patterns (docs/edge-protocol.md §2.3): the one grammar the gateway,
//! the Worker (`worker/src/claims.js`) and admission share. `tests/vectors/claims.json` runs
//! through both implementations, so they cannot drift apart.
//!
//! - A **claim path** is either a top-level claim name (no leading `/`: `sub`, `groups`) or an
//!   RFC 6901 JSON Pointer (leading `/`: `/https:~1~1sts.amazonaws.com~1/principal_tags/team`,
//!   `/kubernetes.io/serviceaccount/name`). In a pointer `~1` is `/` and `~0` is `~`; any other
//!   `~` is invalid. A token reaching an array must be a decimal index without leading zeros.
//! - A **subject pattern** (policy `subjects`, claim matcher `values`) is compared segment by
//!   segment, segments split on `/`: `*` matches any run of characters **within** one segment
//!   (also empty), everything else matches itself. So `role/app-*` never matches
//!   `role/team/app-x`, and `refs/heads/release/*` never matches `refs/heads/release/1/x`.
//!   There is no regex and no other metacharacter; matching is linear in practice.

use serde_json::{Map, Value};

/// Longest claim path accepted (the CRD's bound).
pub const MAX_PATH_LEN: usize = 256;

/// A parsed claim path: the reference tokens from the payload's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath(Vec<String>);

impl ClaimPath {
    /// Parses the documented grammar; `Err` says what is wrong (never echoes the claim value).
    pub fn parse(s: &str) -> Result<ClaimPath, &'static str> {
        if s.is_empty() || s.len() > MAX_PATH_LEN {
            return Err("a claim path is 1 to 256 characters");
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Ok(ClaimPath(vec![s.to_string()]));
        };
        rest.split('/')
            .map(unescape)
            .collect::<Option<_>>()
            .map(ClaimPath)
            .ok_or("in a JSON Pointer every ~ must be followed by 0 or 1 (~0 is ~, ~1 is /)")
    }

    /// The top-level claim name this path starts at.
    pub fn root(&self) -> &str {
        self.0.first().map(String::as_str).unwrap_or_default()
    }

    /// True when the path names a top-level claim (one token).
    pub fn is_top_level(&self) -> bool {
        self.0.len() == 1
    }

    /// The value at this path, `None` when any step is absent.
    pub fn resolve<'v>(&self, payload: &'v Map<String, Value>) -> Option<&'v Value> {
        let (first, rest) = self.0.split_first()?;
        let mut v = payload.get(first)?;
        for t in rest {
            v = match v {
                Value::Object(o) => o.get(t)?,
                Value::Array(a) => a.get(array_index(t)?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

/// RFC 6901 §4: `~1` then `~0`, so `~01` is `~1`. `None` for a `~` not followed by 0 or 1.
fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// RFC 6901 §4 array index: `0` or digits without a leading zero.
fn array_index(t: &str) -> Option<usize> {
    let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits || (t.len() > 1 && t.starts_with('0')) {
        return None;
    }
    t.parse().ok()
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Keys in UTF-16 code-unit order, the order JavaScript's default sort gives.
fn utf16_sorted(o: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = o.iter().collect();
    entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    entries
}

/// A claim value for a policy matcher: absent is empty; a scalar is its text; a list of scalars
/// their texts; a map of scalars (AWS `principal_tags`) its `key=value` entries in key order;
/// anything else unevaluable (`None`).
pub fn normalize(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        None => Some(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(scalar).collect(),
        Some(Value::Object(o)) => utf16_sorted(o)
            .into_iter()
            .map(|(k, v)| scalar(v).map(|v| format!("{k}={v}")))
            .collect(),
        Some(v) => scalar(v).map(|s| vec![s]),
    }
}

/// The groups a claim value names: a string, a list of strings, or a map of strings (its
/// `key=value` entries in key order). `None` for anything else: `claim_invalid`.
pub fn groups_of(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|g| g.as_str().map(str::to_string)).collect(),
        Value::Object(o) => utf16_sorted(o)
            .into_iter()
            .map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
            .collect(),
        _ => None,
    }
}

/// OpenID Connect Core §5.6.2 distributed claims: a top-level groups claim that is absent but
/// named in `_claim_names` is held elsewhere (Entra ID's groups overage), so the caller's groups
/// are unknown, not empty.
pub fn groups_elsewhere(path: &ClaimPath, payload: &Map<String, Value>) -> bool {
    path.is_top_level()
        && path.resolve(payload).is_none()
        && payload
            .get("_claim_names")
            .and_then(Value::as_object)
            .is_some_and(|n| n.contains_key(path.root()))
}

/// A subject pattern against a value (module docs): `/` separates segments, `*` stays inside one.
pub fn pattern_match(pattern: &str, value: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == value;
    }
    let mut p = pattern.split('/');
    let mut v = value.split('/');
    loop {
        match (p.next(), v.next()) {
            (None, None) => return true,
            (Some(ps), Some(vs)) if segment_match(ps, vs) => {}
            _ => return false,
        }
    }
}

/// `*` any run (also empty), everything else itself (`?` too: subjects are ARNs and refs).
fn segment_match(pattern: &str, value: &str) -> bool {
    super::policy::wildcard_match(pattern, value, false)
}

#[cfg(test)]
#[path = "claims_tests.rs"]
mod tests;
