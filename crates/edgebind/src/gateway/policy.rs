//! The compiled policy bundle (docs/edge-protocol.md §3) and its evaluator. The same JSON the
//! Worker gets; the gateway's evaluation is the authoritative one.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::claims::{ClaimPath, pattern_match};
use super::identity::Principal;
use super::reason::Reason;

/// The six actions. There is no wildcard.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Create,
    Resize,
    Snapshot,
    Restore,
    Delete,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Read,
        Action::Create,
        Action::Resize,
        Action::Snapshot,
        Action::Restore,
        Action::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Resize => "resize",
            Action::Snapshot => "snapshot",
            Action::Restore => "restore",
            Action::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// The whole bundle (`POLICY_BUNDLE`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub version: u32,
    pub revision: String,
    pub policies: Vec<BundlePolicy>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundlePolicy {
    pub namespace: String,
    pub name: String,
    pub effect: Effect,
    pub subjects: Vec<SubjectMatcher>,
    pub actions: Vec<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<VolumeMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Conditions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubjectMatcher {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimMatcher>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ClaimMatcher {
    pub claim: String,
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMatcher {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelExpression>,
}

/// One `matchExpressions` entry. The operator stays a string: an unknown one is a condition
/// error at evaluation (§3.3), not a parse failure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LabelExpression {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conditions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip_cidrs: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_minute: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// Largest integer both JavaScript and Rust read exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

impl Bundle {
    /// Parses and validates a bundle; any broken rule refuses the whole bundle (fail closed).
    pub fn parse(json: &str) -> Result<Bundle, String> {
        let b: Bundle = serde_json::from_str(json).map_err(|e| format!("bundle: {e}"))?;
        b.validate()?;
        Ok(b)
    }

    /// Checks the rules of §3.1 that serde does not.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != 1 {
            return Err(format!("bundle version {} is not 1", self.version));
        }
        let mut prev: Option<(&str, &str)> = None;
        for p in &self.policies {
            let id = format!("{}/{}", p.namespace, p.name);
            let key = (p.namespace.as_str(), p.name.as_str());
            if prev.is_some_and(|pr| pr >= key) {
                return Err(format!(
                    "{id}: policies not sorted by namespace/name or not unique"
                ));
            }
            prev = Some(key);
            if p.subjects.is_empty() || p.actions.is_empty() {
                return Err(format!("{id}: needs at least one subject and one action"));
            }
            for m in p.subjects.iter().flat_map(|s| &s.claims) {
                ClaimPath::parse(&m.claim)
                    .map_err(|e| format!("{id}: claim {:?}: {e}", m.claim))?;
            }
            if let Some(c) = &p.conditions {
                if c.max_size_bytes
                    .is_some_and(|m| !(1..=MAX_SAFE_INTEGER).contains(&m))
                {
                    return Err(format!("{id}: maxSizeBytes out of range"));
                }
                for cidr in c.source_ip_cidrs.iter().flatten() {
                    if parse_cidr(cidr).is_none() {
                        return Err(format!("{id}: {cidr:?} is not a CIDR"));
                    }
                }
            }
            if let Some(r) = p.rate_limit {
                let ok = (1..=100_000).contains(&r.requests_per_minute)
                    && r.burst.is_none_or(|b| (1..=100_000).contains(&b));
                if !ok {
                    return Err(format!("{id}: rateLimit out of range"));
                }
            }
        }
        Ok(())
    }

    /// A bundle with no policies: denies everything.
    pub fn empty() -> Bundle {
        Bundle {
            version: 1,
            revision: "sha256:none".into(),
            policies: Vec::new(),
        }
    }
}

/// The request as the policy sees it (§3.2).
#[derive(Clone, Copy, Debug)]
pub struct PolicyRequest<'a> {
    pub action: Action,
    pub namespace: &'a str,
    /// `None` for the collection route.
    pub name: Option<&'a str>,
    /// `None` when unknown (the collection route).
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub size_bytes: Option<u64>,
    pub client_ip: Option<&'a str>,
    pub principal: &'a Principal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Undecided,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Undecided => "undecided",
        }
    }
}

/// The evaluator's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    /// On deny the refusal; on allow/undecided `None`.
    pub reason: Option<Reason>,
    /// Index in `bundle.policies` of the deciding policy.
    pub policy: Option<usize>,
    /// Indices of every definite Allow that carries a `rateLimit`.
    pub rate_limited: Vec<usize>,
}

/// Three-valued match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    No,
    Possible,
    Yes,
}

/// How one policy evaluates (§3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyResult {
    NotApplicable,
    Matches { deny: bool, definite: bool },
    MatchesError { definite: bool },
}

/// Anchored glob: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    wildcard_match(pattern, name, true)
}

/// The one glob matcher: `*` any run (also empty), `?` one character when `question` (else
/// itself), everything else itself; one backtrack point, no recursion, no regex.
pub(crate) fn wildcard_match(pattern: &str, name: &str, question: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && ((question && p[pi] == '?') || (p[pi] != '*' && p[pi] == n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A parsed CIDR: network address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (canonical(ip), net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// Label selector: `Err(())` when the selector is broken (a condition error).
fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<bool, ()> {
    let mut ok = sel
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    for e in &sel.match_expressions {
        let values = e.values.as_deref().unwrap_or(&[]);
        let present = labels.get(&e.key);
        let m = match e.operator.as_str() {
            "In" if !values.is_empty() => present.is_some_and(|v| values.contains(v)),
            "NotIn" if !values.is_empty() => present.is_none_or(|v| !values.contains(v)),
            "Exists" if values.is_empty() => present.is_some(),
            "DoesNotExist" if values.is_empty() => present.is_none(),
            _ => return Err(()),
        };
        ok &= m;
    }
    Ok(ok)
}

fn selector_is_broken(sel: &LabelSelector) -> bool {
    selector_matches(sel, &BTreeMap::new()).is_err()
}

fn and(a: Tri, b: Tri) -> Tri {
    match (a, b) {
        (Tri::No, _) | (_, Tri::No) => Tri::No,
        (Tri::Possible, _) | (_, Tri::Possible) => Tri::Possible,
        _ => Tri::Yes,
    }
}

/// Subjects: `Yes`, `No`, or `Possible` meaning "an unevaluable claim matcher decides".
fn subjects_match(p: &BundlePolicy, who: &Principal) -> Tri {
    let mut best = Tri::No;
    for e in &p.subjects {
        let named = |pats: &[String], v: &str| pats.iter().any(|p| pattern_match(p, v));
        // Groups held elsewhere (§2.3): an Allow naming groups does not apply (membership
        // unproven); a Deny naming groups cannot be decided, which fails closed.
        let groups_unknown = !e.groups.is_empty() && who.groups_unknown;
        if e.issuer != who.issuer
            || (!e.subjects.is_empty() && !named(&e.subjects, &who.subject))
            || (groups_unknown && p.effect == Effect::Allow)
            || (!e.groups.is_empty()
                && !groups_unknown
                && !who.groups.iter().any(|g| e.groups.contains(g)))
        {
            continue;
        }
        let mut entry = if groups_unknown {
            Tri::Possible
        } else {
            Tri::Yes
        };
        for m in &e.claims {
            let t = match who.claims.get(&m.claim) {
                Some(Some(vals)) => {
                    if vals.iter().any(|v| named(&m.values, v)) {
                        Tri::Yes
                    } else {
                        Tri::No
                    }
                }
                _ => Tri::Possible,
            };
            entry = and(entry, t);
        }
        match entry {
            Tri::Yes => return Tri::Yes,
            Tri::Possible => best = Tri::Possible,
            Tri::No => {}
        }
    }
    best
}

/// Evaluates one policy against a request.
pub fn evaluate_policy(p: &BundlePolicy, req: &PolicyRequest<'_>) -> PolicyResult {
    if p.namespace != req.namespace || !p.actions.contains(&req.action) {
        return PolicyResult::NotApplicable;
    }
    let subjects = subjects_match(p, req.principal);
    if subjects == Tri::No {
        return PolicyResult::NotApplicable;
    }
    // Volumes: names and selector; a broken selector is an error unless the names already
    // definitely exclude the volume.
    let mut certainty = Tri::Yes;
    let mut error = subjects == Tri::Possible;
    if let Some(v) = &p.volumes {
        if !v.names.is_empty() {
            let names = match req.name {
                Some(n) if v.names.iter().any(|pat| glob_match(pat, n)) => Tri::Yes,
                Some(_) => return PolicyResult::NotApplicable,
                None => Tri::Possible,
            };
            certainty = and(certainty, names);
        }
        if let Some(sel) = &v.label_selector {
            if selector_is_broken(sel) {
                error = true;
            } else {
                match req.labels {
                    Some(l) => {
                        if selector_matches(sel, l) != Ok(true) {
                            return PolicyResult::NotApplicable;
                        }
                    }
                    None => certainty = and(certainty, Tri::Possible),
                }
            }
        }
    }
    let definite = certainty == Tri::Yes;
    let mut holds = true;
    if let Some(c) = &p.conditions {
        if let Some(max) = c.max_size_bytes
            && matches!(req.action, Action::Create | Action::Resize)
        {
            match req.size_bytes {
                Some(s) if (1..=MAX_SAFE_INTEGER).contains(&s) => holds &= s <= max,
                _ => error = true,
            }
        }
        if let Some(cidrs) = &c.source_ip_cidrs {
            match req.client_ip.and_then(|ip| ip.parse::<IpAddr>().ok()) {
                None => error = true,
                Some(ip) => {
                    let mut any = false;
                    for c in cidrs {
                        match parse_cidr(c) {
                            Some(net) => any |= in_cidr(ip, net),
                            None => error = true,
                        }
                    }
                    holds &= any;
                }
            }
        }
    }
    if error {
        return PolicyResult::MatchesError { definite };
    }
    if !holds {
        return PolicyResult::NotApplicable;
    }
    PolicyResult::Matches {
        deny: p.effect == Effect::Deny,
        definite,
    }
}

/// Evaluates the bundle (§3.4): any definite Deny wins, then any possible Deny makes the result
/// undecided, then any definite Allow allows; default deny.
pub fn evaluate(bundle: &Bundle, req: &PolicyRequest<'_>) -> Outcome {
    let results: Vec<PolicyResult> = bundle
        .policies
        .iter()
        .map(|p| evaluate_policy(p, req))
        .collect();
    let deny = |reason, i| Outcome {
        decision: Decision::Deny,
        reason: Some(reason),
        policy: i,
        rate_limited: Vec::new(),
    };
    for (i, r) in results.iter().enumerate() {
        match r {
            PolicyResult::Matches {
                deny: true,
                definite: true,
            } => return deny(Reason::PolicyDenied, Some(i)),
            PolicyResult::MatchesError { definite: true } => {
                return deny(Reason::PolicyConditionError, Some(i));
            }
            _ => {}
        }
    }
    let possible_deny = results.iter().any(|r| {
        matches!(
            r,
            PolicyResult::Matches { deny: true, .. } | PolicyResult::MatchesError { .. }
        )
    });
    let definite_allows: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(
                r,
                PolicyResult::Matches {
                    deny: false,
                    definite: true
                }
            )
        })
        .map(|(i, _)| i)
        .collect();
    let rate_limited: Vec<usize> = definite_allows
        .iter()
        .copied()
        .filter(|i| bundle.policies[*i].rate_limit.is_some())
        .collect();
    let possible_allow = results.iter().any(|r| {
        matches!(
            r,
            PolicyResult::Matches {
                deny: false,
                definite: false
            }
        )
    });
    if possible_deny {
        return Outcome {
            decision: Decision::Undecided,
            reason: None,
            policy: None,
            rate_limited,
        };
    }
    if let Some(first) = definite_allows.first() {
        return Outcome {
            decision: Decision::Allow,
            reason: None,
            policy: Some(*first),
            rate_limited,
        };
    }
    if possible_allow {
        return Outcome {
            decision: Decision::Undecided,
            reason: None,
            policy: None,
            rate_limited,
        };
    }
    deny(Reason::PolicyNoMatch, None)
}

/// `namespace/name` of a policy.
/// Label keys a policy's volume selector reads.
fn selector_keys(p: &BundlePolicy) -> impl Iterator<Item = &str> {
    let sel = p.volumes.as_ref().and_then(|v| v.label_selector.as_ref());
    sel.into_iter().flat_map(|s| {
        s.match_labels
            .keys()
            .map(String::as_str)
            .chain(s.match_expressions.iter().map(|e| e.key.as_str()))
    })
}

/// The first label the caller chose that it may not set, if any. Labels are rights: a key that
/// any policy of the namespace selects on can widen an Allow or escape a Deny (`NotIn`,
/// `DoesNotExist`). So the caller may set such a key only when the policy that allowed the
/// creation selects on it itself (it asked for that label); other keys are free (issue 12).
pub fn reserved_label<'l>(
    bundle: &Bundle,
    namespace: &str,
    allowing: Option<usize>,
    labels: &'l BTreeMap<String, String>,
) -> Option<&'l str> {
    let granted: Vec<&str> = allowing
        .and_then(|i| bundle.policies.get(i))
        .map(|p| selector_keys(p).collect())
        .unwrap_or_default();
    labels.keys().map(String::as_str).find(|k| {
        !granted.contains(k)
            && bundle
                .policies
                .iter()
                .filter(|p| p.namespace == namespace)
                .any(|p| selector_keys(p).any(|s| s == *k))
    })
}

pub fn policy_id(bundle: &Bundle, i: usize) -> Option<String> {
    bundle
        .policies
        .get(i)
        .map(|p| format!("{}/{}", p.namespace, p.name))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "policy_vectors_tests.rs"]
mod policy_vectors;
