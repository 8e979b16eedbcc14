//! Verification of the `edgebind-v1` request signature (docs/edge-protocol.md §5): RFC 9421 with
//! exactly one Ed25519 signature and an RFC 9530 SHA-256 content digest, checked in the
//! documented order so that every refusal carries the documented reason code.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::Signature;
use http::HeaderMap;
use sfv::{BareItem, Dictionary, ListEntry, Parser, Version};
use sha2::{Digest, Sha256};

use super::keys::{KeySet, valid_key_id};
use super::reason::Reason;

/// The tag that marks our profile.
pub const TAG: &str = "edgebind-v1";
/// The covered components, in the one allowed order.
pub const COMPONENTS: [&str; 8] = [
    "@method",
    "@authority",
    "@path",
    "@query",
    "content-type",
    "content-digest",
    "edge-identity",
    "edge-request-id",
];
/// The parameters, in the one allowed order.
const PARAMS: [&str; 6] = ["created", "expires", "nonce", "alg", "keyid", "tag"];
/// Allowed clock skew between the Worker and the gateway, seconds.
pub const SKEW_SECONDS: i64 = 30;
/// Longest allowed `expires - created`, seconds.
pub const MAX_LIFETIME_SECONDS: i64 = 60;

/// The parts of a received request the signature covers.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// The method as received.
    pub method: &'a str,
    /// The `Host` header or `:authority` received.
    pub authority: Option<&'a str>,
    /// The path as received (percent-encoding unchanged).
    pub path: &'a str,
    /// The query without `?`, as received, if any.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What a successful verification established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    pub nonce: String,
    pub created: i64,
    pub expires: i64,
}

impl Verified {
    /// Until when (Unix seconds) the signature could be presented again: its nonce must be
    /// remembered that long.
    pub fn forget_after(&self) -> i64 {
        self.expires.saturating_add(SKEW_SECONDS)
    }
}

/// The parsed `sig1` member of `Signature-Input`, checked against the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureParams {
    pub created: i64,
    pub expires: i64,
    pub nonce: String,
    pub key_id: String,
    /// The received bytes after `sig1=`: the `@signature-params` value.
    pub raw: String,
}

/// A refusal: the reason code, plus the key id when it was already known (for the audit event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub key_id: Option<String>,
    /// Why, for the audit log only (never sent to the caller, never a secret).
    pub detail: &'static str,
}

fn refuse(reason: Reason, key_id: Option<&str>, detail: &'static str) -> Refusal {
    Refusal {
        reason,
        key_id: key_id.map(str::to_string),
        detail,
    }
}

/// Remembers `(keyid, nonce)` pairs until their signature can no longer be accepted.
///
/// A nonce is recorded only once its request is authenticated, authorised and within its key's
/// rate limit, and each key has its own partition of `per_key` entries. `per_key` is sized
/// from the key's rate limit times the longest time a pair must be kept (`KEEP_SECONDS`), so
/// a key within its limit never fills its partition, and a key that floods fills only its own:
/// other keys keep working (issue 12, nonce flood). A full partition refuses new pairs (fail
/// closed) rather than forgetting one that could then be replayed.
pub struct NonceCache {
    per_key: usize,
    seen: Mutex<HashMap<String, HashMap<String, i64>>>,
}

/// The longest a pair must be remembered: a signature is accepted until `expires + skew`, and
/// `expires` may be up to `skew + lifetime` after the moment it is received.
pub const KEEP_SECONDS: i64 = MAX_LIFETIME_SECONDS + 2 * SKEW_SECONDS;

impl NonceCache {
    pub fn new(per_key: usize) -> Self {
        NonceCache {
            per_key: per_key.max(1),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records the pair, valid until `forget_after` (Unix seconds). False if already seen or if
    /// the key's partition is full of pairs that are still live.
    pub fn check_and_insert(&self, key_id: &str, nonce: &str, forget_after: i64, now: i64) -> bool {
        let mut seen = match self.seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let part = seen.entry(key_id.to_string()).or_default();
        if let Some(until) = part.get(nonce)
            && *until >= now
        {
            return false;
        }
        if part.len() >= self.per_key {
            part.retain(|_, until| *until >= now);
            if part.len() >= self.per_key {
                return false;
            }
            // Partitions of retired keys empty out: drop them when a partition is swept.
            seen.retain(|_, p| {
                p.retain(|_, until| *until >= now);
                !p.is_empty()
            });
        }
        seen.entry(key_id.to_string())
            .or_default()
            .insert(nonce.to_string(), forget_after);
        true
    }

    /// Pairs held, all keys.
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .map(|g| g.values().map(HashMap::len).sum())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The single value of a header, `Ok(None)` when absent, `Err` when it appears more than once.
fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h [u8]>, ()> {
    let mut it = headers.get_all(name).iter();
    let first = it.next();
    if it.next().is_some() {
        return Err(());
    }
    Ok(first.map(|v| v.as_bytes()))
}

fn parse_dict(value: &[u8]) -> Option<Dictionary> {
    Parser::new(value)
        .with_version(Version::Rfc8941)
        .parse::<Dictionary>()
        .ok()
}

/// Checks the `sig1` inner list and parameters against the profile (step 3, `sig_tag`).
pub fn parse_params(entry: &ListEntry, raw: &str) -> Option<SignatureParams> {
    let ListEntry::InnerList(list) = entry else {
        return None;
    };
    if list.items.len() != COMPONENTS.len() {
        return None;
    }
    for (item, want) in list.items.iter().zip(COMPONENTS) {
        if !item.params.is_empty() {
            return None;
        }
        match &item.bare_item {
            BareItem::String(s) if s.as_str() == want => {}
            _ => return None,
        }
    }
    let names: Vec<&str> = list.params.keys().map(|k| k.as_str()).collect();
    if names != PARAMS {
        return None;
    }
    let int = |k: &str| match list.params.get(k) {
        Some(BareItem::Integer(i)) => Some(i64::from(*i)),
        _ => None,
    };
    let string = |k: &str| match list.params.get(k) {
        Some(BareItem::String(s)) => Some(s.as_str().to_string()),
        _ => None,
    };
    let created = int("created")?;
    let expires = int("expires")?;
    let nonce = string("nonce")?;
    let alg = string("alg")?;
    let key_id = string("keyid")?;
    let tag = string("tag")?;
    let nonce_ok = nonce.len() == 22 && URL_SAFE_NO_PAD.decode(&nonce).is_ok_and(|b| b.len() == 16);
    if tag != TAG || alg != "ed25519" || !nonce_ok || !valid_key_id(&key_id) {
        return None;
    }
    Some(SignatureParams {
        created,
        expires,
        nonce,
        key_id,
        raw: raw.to_string(),
    })
}

/// Parses `Signature-Input` and `Signature` (steps 1-3). Exposed for the property test.
pub fn parse_headers(headers: &HeaderMap) -> Result<(SignatureParams, Vec<u8>), Refusal> {
    let (input, sig) = match (
        single_header(headers, "signature-input"),
        single_header(headers, "signature"),
    ) {
        (Ok(Some(i)), Ok(Some(s))) => (i, s),
        (Ok(None), _) | (_, Ok(None)) => {
            return Err(refuse(Reason::SigMissing, None, "signature header absent"));
        }
        _ => {
            return Err(refuse(
                Reason::SigMultiple,
                None,
                "signature header repeated",
            ));
        }
    };
    // Members can only be counted once parsed, so a header that is not RFC 8941 is refused
    // (sig_tag) before the member checks of steps 1-2.
    let (Some(input_dict), Some(sig_dict)) = (parse_dict(input), parse_dict(sig)) else {
        return Err(refuse(Reason::SigTag, None, "header is not RFC 8941"));
    };
    let (Some(entry), Some(sig_entry)) = (input_dict.get("sig1"), sig_dict.get("sig1")) else {
        return Err(refuse(Reason::SigMissing, None, "no sig1 member"));
    };
    // A parsed dictionary keeps the last of duplicated keys while the signed bytes would start
    // at the first, so members are also counted in the received text.
    if input_dict.len() != 1
        || sig_dict.len() != 1
        || top_level_members(input) != 1
        || top_level_members(sig) != 1
    {
        return Err(refuse(Reason::SigMultiple, None, "more than one member"));
    }
    // One member, parsed: the received bytes after `sig1=` are the signature parameters as
    // signed (the header is ASCII, or it would not have parsed).
    let text = std::str::from_utf8(input).map_err(|_| refuse(Reason::SigTag, None, "not ASCII"))?;
    let raw = text
        .trim_matches(' ')
        .strip_prefix("sig1=")
        .ok_or_else(|| refuse(Reason::SigTag, None, "sig1 is not the first bytes"))?;
    let params = parse_params(entry, raw)
        .ok_or_else(|| refuse(Reason::SigTag, None, "not the edgebind-v1 profile"))?;
    let sig_bytes = match sig_entry {
        ListEntry::Item(item) if item.params.is_empty() => match &item.bare_item {
            BareItem::ByteSequence(b) => b.clone(),
            _ => return Err(refuse(Reason::SigTag, None, "signature is not bytes")),
        },
        _ => return Err(refuse(Reason::SigTag, None, "signature is not an item")),
    };
    Ok((params, sig_bytes))
}

/// Members of an RFC 8941 dictionary as received: commas outside inner lists and strings, plus
/// one. (Byte sequences hold no commas.)
fn top_level_members(value: &[u8]) -> usize {
    let (mut depth, mut in_string, mut escaped, mut n) = (0u32, false, false, 1);
    for &b in value {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') => in_string = false,
            (true, _) => {}
            (false, b'"') => in_string = true,
            (false, b'(') => depth += 1,
            (false, b')') => depth = depth.saturating_sub(1),
            (false, b',') if depth == 0 => n += 1,
            _ => {}
        }
    }
    n
}

/// The value of a covered header per RFC 9421 §2.1: values of repeated fields joined with
/// `, `, surrounding whitespace removed. `None` when absent or not visible ASCII.
fn header_component(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for v in headers.get_all(name) {
        parts.push(v.to_str().ok()?.trim().to_string());
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join(", "))
    }
}

/// Rebuilds the signature base from the received request (§5.3). `None` if a covered header is
/// missing.
pub fn signature_base(req: &SignedRequest<'_>, raw_params: &str) -> Option<String> {
    let authority = req.authority?.trim().to_ascii_lowercase();
    let path = if req.path.is_empty() { "/" } else { req.path };
    let query = format!("?{}", req.query.unwrap_or(""));
    let mut lines = vec![
        format!("\"@method\": {}", req.method.to_ascii_uppercase()),
        format!("\"@authority\": {authority}"),
        format!("\"@path\": {path}"),
        format!("\"@query\": {query}"),
    ];
    for name in &COMPONENTS[4..] {
        lines.push(format!(
            "\"{name}\": {}",
            header_component(req.headers, name)?
        ));
    }
    lines.push(format!("\"@signature-params\": {raw_params}"));
    Some(lines.join("\n"))
}

/// Whether `Content-Digest` is exactly `sha-256=:<b64>:` of the body (step 9).
fn digest_matches(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(value) = header_component(headers, "content-digest") else {
        return false;
    };
    let want = format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)));
    value == want
}

/// Verifies a received request, steps 1-9 of §5.5, at time `now` (Unix seconds). Step 10 (the
/// nonce) is left to the caller, who records it only once the request is authorised
/// (`NonceCache`); step 11 (the identity) is `identity::parse`.
pub fn verify(req: &SignedRequest<'_>, keys: &KeySet, now: i64) -> Result<Verified, Refusal> {
    let (p, sig_bytes) = parse_headers(req.headers)?;
    let kid = Some(p.key_id.as_str());
    let Some(key) = keys.get(&p.key_id) else {
        return Err(refuse(Reason::KeyUnknown, kid, "key id not trusted"));
    };
    if now > p.expires.saturating_add(SKEW_SECONDS) {
        return Err(refuse(Reason::SigExpired, kid, "expired"));
    }
    if p.created > now.saturating_add(SKEW_SECONDS) {
        return Err(refuse(Reason::SigFuture, kid, "created in the future"));
    }
    let lifetime = p.expires.saturating_sub(p.created);
    if !(1..=MAX_LIFETIME_SECONDS).contains(&lifetime) {
        return Err(refuse(Reason::SigWindow, kid, "lifetime out of 1..=60"));
    }
    let Some(base) = signature_base(req, &p.raw) else {
        return Err(refuse(Reason::SigInvalid, kid, "covered header missing"));
    };
    let Ok(sig) = Signature::from_slice(&sig_bytes) else {
        return Err(refuse(Reason::SigInvalid, kid, "signature length"));
    };
    if key.verify_strict(base.as_bytes(), &sig).is_err() {
        return Err(refuse(Reason::SigInvalid, kid, "signature does not verify"));
    }
    if !digest_matches(req.headers, req.body) {
        return Err(refuse(Reason::DigestMismatch, kid, "content digest"));
    }
    Ok(Verified {
        key_id: p.key_id,
        nonce: p.nonce,
        created: p.created,
        expires: p.expires,
    })
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;

/// Signs a request the way the Worker does (§5.1-5.3): sets `Content-Type`, `Content-Digest`,
/// `Signature-Input` and `Signature`. `Edge-Identity` and `Edge-Request-Id` must already be in
/// `headers`. Used by tests and tools that call the gateway directly; the gateway never signs.
pub struct Signer<'a> {
    pub key: &'a ed25519_dalek::SigningKey,
    pub key_id: &'a str,
    pub created: i64,
    pub expires: i64,
    pub nonce: &'a str,
}

impl Signer<'_> {
    pub fn sign(
        &self,
        method: &str,
        authority: &str,
        path: &str,
        query: Option<&str>,
        headers: &mut HeaderMap,
        body: &[u8],
    ) {
        use ed25519_dalek::Signer as _;
        use http::HeaderValue;
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let digest = format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)));
        if let Ok(v) = HeaderValue::from_str(&digest) {
            headers.insert("content-digest", v);
        }
        let comps: Vec<String> = COMPONENTS.iter().map(|c| format!("\"{c}\"")).collect();
        let raw = format!(
            "({});created={};expires={};nonce=\"{}\";alg=\"ed25519\";keyid=\"{}\";tag=\"{TAG}\"",
            comps.join(" "),
            self.created,
            self.expires,
            self.nonce,
            self.key_id
        );
        let req = SignedRequest {
            method,
            authority: Some(authority),
            path,
            query,
            headers,
            body,
        };
        let base = signature_base(&req, &raw).unwrap_or_default();
        let sig = self.key.sign(base.as_bytes());
        if let Ok(v) = HeaderValue::from_str(&format!("sig1={raw}")) {
            headers.insert("signature-input", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("sig1=:{}:", STANDARD.encode(sig.to_bytes())))
        {
            headers.insert("signature", v);
        }
    }
}
