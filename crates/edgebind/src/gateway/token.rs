//! The gateway verifies the caller's token itself (issue 12, defence in depth): the Worker
//! forwards the token in `Edge-Token` and binds it to the signed request with `tokenHash` in
//! `Edge-Identity`; the gateway checks it against the same IdentityIssuer as the Worker (JWK Set
//! fetched and cached here, refetched on an unknown key id at most every `REFETCH_COOLDOWN`) and
//! takes the principal from the claims it verified. So a leaked edge signing key alone cannot
//! act as anyone: it also needs a valid token of that identity.
//!
//! The checks mirror the Worker's (`worker/src/token.js`, `principal.js`; docs/edge-protocol.md
//! §2): issuer by exact `iss`, the issuer's algorithms only (never `none`, never HMAC), `exp`
//! required, `nbf` and `iat` not in the future, `maxTokenAgeSeconds`, an audience in `aud`, and
//! the same claim mapping. Failures are typed; none of them carries the token.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature as rs;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::claims::{self, ClaimPath};
use super::compile::{IssuerEntry, compile_bundle};
use super::identity::Principal;
use super::reason::Reason;
use crate::crd::IdentityIssuer;
use crate::crd::issuer::JwsAlgorithm;

/// Largest `Edge-Token` accepted.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// A JWK Set is kept this long before it is fetched again.
const JWKS_MAX_AGE: Duration = Duration::from_secs(600);
/// An unknown key id refetches the JWK Set at most this often per issuer.
const REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// Verified tokens remembered at once (clients reuse a token for its lifetime).
const MAX_REMEMBERED: usize = 10_000;

/// Why a token was refused; `code()` goes to the log, never the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenFailure {
    /// No `Edge-Token`, more than one, or longer than [`MAX_TOKEN_LEN`].
    Missing,
    /// Its SHA-256 is not the `tokenHash` the signed identity carries.
    NotBound,
    Malformed,
    /// `iss` is not the issuer the identity names.
    IssuerMismatch,
    AlgNotAllowed,
    KeyUnknown,
    SignatureInvalid,
    Expired,
    NotYetValid,
    TooOld,
    AudienceMismatch,
    ClaimInvalid,
    /// The JWK Set could not be fetched: not the caller's fault, refused with 503.
    JwksUnavailable,
}

impl TokenFailure {
    pub fn code(self) -> &'static str {
        match self {
            TokenFailure::Missing => "token_missing",
            TokenFailure::NotBound => "token_not_bound",
            TokenFailure::Malformed => "token_malformed",
            TokenFailure::IssuerMismatch => "issuer_unknown",
            TokenFailure::AlgNotAllowed => "alg_not_allowed",
            TokenFailure::KeyUnknown => "key_unknown",
            TokenFailure::SignatureInvalid => "signature_invalid",
            TokenFailure::Expired => "token_expired",
            TokenFailure::NotYetValid => "token_not_yet_valid",
            TokenFailure::TooOld => "token_too_old",
            TokenFailure::AudienceMismatch => "audience_mismatch",
            TokenFailure::ClaimInvalid => "claim_invalid",
            TokenFailure::JwksUnavailable => "jwks_unavailable",
        }
    }

    pub fn reason(self) -> Reason {
        match self {
            TokenFailure::JwksUnavailable => Reason::JwksUnavailable,
            _ => Reason::TokenInvalid,
        }
    }
}

/// base64url (no padding) of SHA-256 over the token: the identity's `tokenHash`.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// An issuer as the gateway trusts it.
#[derive(Clone, Debug)]
pub struct TrustedIssuer {
    pub entry: IssuerEntry,
    /// `spec.gatewayVerification` (default true).
    pub verify: bool,
}

/// The issuers as the gateway trusts them: the entries the Worker gets (`compile_bundle`), each
/// with its `gatewayVerification`.
pub fn trusted_issuers(issuers: &[IdentityIssuer]) -> Vec<TrustedIssuer> {
    compile_bundle(issuers, &[])
        .issuers
        .into_iter()
        .map(|entry| {
            let verify = issuers
                .iter()
                .find(|i| i.metadata.name.as_deref() == Some(entry.name.as_str()))
                .and_then(|i| i.spec.gateway_verification)
                .unwrap_or(true);
            TrustedIssuer { entry, verify }
        })
        .collect()
}

/// The live issuers, replaced whole on each reload.
pub type IssuerStore = super::api::Live<Vec<TrustedIssuer>>;

struct CachedSet {
    /// Where it came from: a changed `jwksUri` or issuer URL is a different set.
    source: (String, Option<String>),
    keys: Vec<Value>,
    fetched: Option<Instant>,
    /// The last fetch started; `None` before the first.
    last_attempt: Option<Instant>,
}

/// A token verified before: under which issuer settings, its claims, and until when it holds.
struct Remembered {
    issuer: IssuerEntry,
    claims: Map<String, Value>,
    until: i64,
}

/// JWK Sets by issuer name, and the tokens verified with them.
pub struct JwksCache {
    http: Option<reqwest::Client>,
    sets: Mutex<HashMap<String, CachedSet>>,
    /// By `token_hash`.
    verified: Mutex<HashMap<String, Remembered>>,
}

impl Default for JwksCache {
    fn default() -> Self {
        JwksCache {
            http: crate::jwks::http_client().ok(),
            sets: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        }
    }
}

impl JwksCache {
    /// A cache holding `keys` for `issuer` as if just fetched (tests, benchmarks).
    pub fn preloaded(issuer: &IssuerEntry, keys: Vec<Value>) -> Self {
        let c = JwksCache::default();
        let now = Instant::now();
        if let Ok(mut sets) = c.sets.lock() {
            sets.insert(
                issuer.name.clone(),
                CachedSet {
                    source: (issuer.issuer.clone(), issuer.jwks_uri.clone()),
                    keys,
                    fetched: Some(now),
                    last_attempt: Some(now),
                },
            );
        }
        c
    }

    fn lookup(&self, issuer: &IssuerEntry, kid: Option<&str>) -> (Option<Vec<Value>>, bool) {
        let mut sets = match self.sets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let source = (issuer.issuer.clone(), issuer.jwks_uri.clone());
        let now = Instant::now();
        let entry = sets
            .entry(issuer.name.clone())
            .or_insert_with(|| CachedSet {
                source: source.clone(),
                keys: Vec::new(),
                fetched: None,
                last_attempt: None,
            });
        if entry.source != source {
            *entry = CachedSet {
                source,
                keys: Vec::new(),
                fetched: None,
                last_attempt: None,
            };
        }
        let fresh = entry.fetched.is_some_and(|t| now - t < JWKS_MAX_AGE);
        let has_kid = kid.is_none_or(|k| entry.keys.iter().any(|j| j["kid"] == k));
        let may_fetch = entry
            .last_attempt
            .is_none_or(|t| now - t >= REFETCH_COOLDOWN);
        if (fresh && has_kid) || !may_fetch {
            let keys = entry.fetched.is_some().then(|| entry.keys.clone());
            return (keys, false);
        }
        // Claimed before the fetch, so concurrent requests do not all fetch.
        entry.last_attempt = Some(now);
        (entry.fetched.is_some().then(|| entry.keys.clone()), true)
    }

    /// The issuer's keys, fetched when absent, stale, or lacking `kid` (rate-limited).
    async fn keys(
        &self,
        issuer: &IssuerEntry,
        kid: Option<&str>,
    ) -> Result<Vec<Value>, TokenFailure> {
        let (cached, fetch) = self.lookup(issuer, kid);
        if !fetch {
            return cached.ok_or(TokenFailure::JwksUnavailable);
        }
        let Some(http) = &self.http else {
            return cached.ok_or(TokenFailure::JwksUnavailable);
        };
        match crate::jwks::fetch_jwks(http, &issuer.issuer, issuer.jwks_uri.as_deref()).await {
            Ok(doc) => {
                let keys = doc["keys"].as_array().cloned().unwrap_or_default();
                let mut changed = false;
                if let Ok(mut sets) = self.sets.lock()
                    && let Some(e) = sets.get_mut(&issuer.name)
                {
                    changed = e.keys != keys;
                    e.keys = keys.clone();
                    e.fetched = Some(Instant::now());
                }
                // A key the issuer dropped no longer vouches for the tokens it signed.
                if changed && let Ok(mut v) = self.verified.lock() {
                    v.retain(|_, r| r.issuer.name != issuer.name);
                }
                Ok(keys)
            }
            Err(f) => {
                tracing::warn!(issuer = %issuer.name, error = %f.message, "fetching the JWK Set failed");
                // A set fetched before stays usable until it is replaced.
                cached.ok_or(TokenFailure::JwksUnavailable)
            }
        }
    }
}

fn b64_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn alg_of(name: &str) -> Option<JwsAlgorithm> {
    serde_json::from_value(Value::String(name.to_string())).ok()
}

/// Verifies `sig` over `input` with one JWK. P-521 (ES512) is not available here.
fn verify_with(alg: JwsAlgorithm, jwk: &Value, input: &[u8], sig: &[u8]) -> bool {
    let b64 = |k: &str| jwk[k].as_str().and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
    use JwsAlgorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            let (Some(n), Some(e)) = (b64("n"), b64("e")) else {
                return false;
            };
            if jwk["kty"] != "RSA" {
                return false;
            }
            let params: &rs::RsaParameters = match alg {
                RS256 => &rs::RSA_PKCS1_2048_8192_SHA256,
                RS384 => &rs::RSA_PKCS1_2048_8192_SHA384,
                RS512 => &rs::RSA_PKCS1_2048_8192_SHA512,
                PS256 => &rs::RSA_PSS_2048_8192_SHA256,
                PS384 => &rs::RSA_PSS_2048_8192_SHA384,
                _ => &rs::RSA_PSS_2048_8192_SHA512,
            };
            rs::RsaPublicKeyComponents { n, e }
                .verify(params, input, sig)
                .is_ok()
        }
        ES256 | ES384 => {
            let (crv, params) = match alg {
                ES256 => ("P-256", &rs::ECDSA_P256_SHA256_FIXED),
                _ => ("P-384", &rs::ECDSA_P384_SHA384_FIXED),
            };
            let (Some(x), Some(y)) = (b64("x"), b64("y")) else {
                return false;
            };
            if jwk["kty"] != "EC" || jwk["crv"] != crv {
                return false;
            }
            let point = [&[4u8][..], &x, &y].concat();
            rs::UnparsedPublicKey::new(params, point)
                .verify(input, sig)
                .is_ok()
        }
        EdDSA => {
            if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
                return false;
            }
            let (Some(x), Ok(sig)) = (b64("x"), ed25519_dalek::Signature::from_slice(sig)) else {
                return false;
            };
            let Ok(x) = <[u8; 32]>::try_from(x.as_slice()) else {
                return false;
            };
            ed25519_dalek::VerifyingKey::from_bytes(&x)
                .is_ok_and(|k| k.verify_strict(input, &sig).is_ok())
        }
        ES512 => false,
    }
}

/// Keys that may have signed: matching `kid` when the token names one, usable for signatures,
/// and of the algorithm's family (`alg` on the key, when present, must be the token's).
fn candidates<'k>(keys: &'k [Value], kid: Option<&str>, alg: &str) -> Vec<&'k Value> {
    keys.iter()
        .filter(|k| kid.is_none_or(|id| k["kid"] == id))
        .filter(|k| k.get("use").is_none_or(|u| u == "sig"))
        .filter(|k| k.get("alg").is_none_or(|a| a == alg))
        .collect()
}

fn num(payload: &Map<String, Value>, claim: &str) -> Result<Option<i64>, TokenFailure> {
    match payload.get(claim) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| Some(f.floor() as i64))
            .ok_or(TokenFailure::ClaimInvalid),
    }
}

impl JwksCache {
    fn remembered(&self, issuer: &IssuerEntry, hash: &str, now: i64) -> Option<Map<String, Value>> {
        let v = self.verified.lock().ok()?;
        v.get(hash)
            .filter(|r| r.until >= now && r.issuer == *issuer)
            .map(|r| r.claims.clone())
    }

    fn remember(&self, issuer: &IssuerEntry, hash: String, claims: &Map<String, Value>, now: i64) {
        let skew = i64::from(issuer.clock_skew_seconds);
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map(|f| f.floor() as i64);
        let iat = claims
            .get("iat")
            .and_then(Value::as_f64)
            .map(|f| f.floor() as i64);
        let Some(mut until) = exp.map(|e| e.saturating_add(skew)) else {
            return;
        };
        if let (Some(max), Some(iat)) = (issuer.max_token_age_seconds, iat) {
            until = until.min(iat.saturating_add(i64::from(max)).saturating_add(skew));
        }
        let Ok(mut v) = self.verified.lock() else {
            return;
        };
        if v.len() >= MAX_REMEMBERED {
            v.retain(|_, r| r.until >= now);
            if v.len() >= MAX_REMEMBERED {
                v.clear();
            }
        }
        v.insert(
            hash,
            Remembered {
                issuer: issuer.clone(),
                claims: claims.clone(),
                until,
            },
        );
    }
}

/// Verifies `token` as one of `issuer`'s at `now` (Unix seconds); returns the claims. A token
/// verified before, under the same issuer settings and while the issuer's keys are unchanged,
/// is answered from memory until it expires: a client reuses its token for its lifetime, and a
/// second signature check on every request would halve the gateway's throughput.
pub async fn verify(
    cache: &JwksCache,
    issuer: &IssuerEntry,
    token: &str,
    now: i64,
) -> Result<Map<String, Value>, TokenFailure> {
    let hash = token_hash(token);
    if let Some(claims) = cache.remembered(issuer, &hash, now) {
        return Ok(claims);
    }
    let claims = verify_once(cache, issuer, token, now).await?;
    cache.remember(issuer, hash, &claims, now);
    Ok(claims)
}

async fn verify_once(
    cache: &JwksCache,
    issuer: &IssuerEntry,
    token: &str,
    now: i64,
) -> Result<Map<String, Value>, TokenFailure> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err(TokenFailure::Malformed);
    };
    let (Some(header), Some(payload), Ok(sig)) =
        (b64_json(h), b64_json(p), URL_SAFE_NO_PAD.decode(s))
    else {
        return Err(TokenFailure::Malformed);
    };
    if payload.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(TokenFailure::IssuerMismatch);
    }
    // The issuer's own list first, so `none` and HS* never reach key selection.
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(alg) = alg_of(alg_name).filter(|a| issuer.algorithms.contains(a)) else {
        return Err(TokenFailure::AlgNotAllowed);
    };
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = cache.keys(issuer, kid).await?;
    let found = candidates(&keys, kid, alg_name);
    if found.is_empty() {
        return Err(TokenFailure::KeyUnknown);
    }
    let input = format!("{h}.{p}");
    if !found
        .iter()
        .any(|k| verify_with(alg, k, input.as_bytes(), &sig))
    {
        return Err(TokenFailure::SignatureInvalid);
    }
    let skew = i64::from(issuer.clock_skew_seconds);
    let exp = num(&payload, "exp")?.ok_or(TokenFailure::ClaimInvalid)?;
    if now > exp.saturating_add(skew) {
        return Err(TokenFailure::Expired);
    }
    if num(&payload, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(TokenFailure::NotYetValid);
    }
    let iat = num(&payload, "iat")?;
    if iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
        return Err(TokenFailure::NotYetValid);
    }
    if let Some(max) = issuer.max_token_age_seconds {
        let iat = iat.ok_or(TokenFailure::ClaimInvalid)?;
        if now.saturating_sub(iat) > i64::from(max).saturating_add(skew) {
            return Err(TokenFailure::TooOld);
        }
    }
    let auds: Vec<&str> = match payload.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !auds.iter().any(|a| issuer.audiences.iter().any(|x| x == a)) {
        return Err(TokenFailure::AudienceMismatch);
    }
    Ok(payload)
}

/// The principal from verified claims, mapped as the Worker maps it (`mapPrincipal`), with the
/// claim paths of docs/edge-protocol.md §2.3 (`super::claims`).
pub fn principal<'c>(
    issuer: &IssuerEntry,
    payload: &Map<String, Value>,
    referenced_claims: impl IntoIterator<Item = &'c str>,
) -> Result<Principal, TokenFailure> {
    let m = &issuer.claim_mapping;
    let path = |p: &str| ClaimPath::parse(p).map_err(|_| TokenFailure::ClaimInvalid);
    let sub = path(&m.subject_claim)?
        .resolve(payload)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(TokenFailure::ClaimInvalid)?;
    let (groups, groups_unknown) = match &m.groups_claim {
        None => (Vec::new(), false),
        Some(g) => {
            let g = path(g)?;
            match g.resolve(payload) {
                None => (Vec::new(), claims::groups_elsewhere(&g, payload)),
                Some(v) => (
                    claims::groups_of(v).ok_or(TokenFailure::ClaimInvalid)?,
                    false,
                ),
            }
        }
    };
    let mut seen = std::collections::HashSet::new();
    let groups = groups
        .into_iter()
        .map(|g| format!("{}{g}", m.prefix))
        .filter(|g| seen.insert(g.clone()))
        .collect();
    // A referenced path that does not parse is unevaluable (the bundle validator refuses it).
    let claims: BTreeMap<String, Option<Vec<String>>> = referenced_claims
        .into_iter()
        .map(|c| {
            let v = ClaimPath::parse(c)
                .ok()
                .and_then(|p| claims::normalize(p.resolve(payload)));
            (c.to_string(), v)
        })
        .collect();
    Ok(Principal {
        issuer: issuer.name.clone(),
        subject: format!("{}{sub}", m.prefix),
        groups,
        groups_unknown,
        claims,
    })
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
