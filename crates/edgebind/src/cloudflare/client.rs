//! The Cloudflare API client: budgeted (one token bucket per account), timed, honouring
//! `Retry-After` and `Ratelimit` on 429, backing off on 5xx, and careful with the token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

use super::error::{self, CfError};
use super::ops::{CfOp, SecretValue};
use super::types::VpcService;
use super::types::{
    Deployment, DeploymentList, DnsRecord, Route, ScriptInfo, SecretInfo, TokenKind, TokenVerify,
    Tunnel, TunnelConfig, TunnelConnector, VersionInfo,
};
use super::upload::ScriptUpload;
use crate::crd::backend::Budget as BudgetSpec;
use crate::linstor::budget::Budget;
use crate::metrics;

/// Cloudflare's API root.
pub(crate) const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// Attempts of one call on 429 (within `max_wait`) and, for idempotent calls, on 5xx.
const ATTEMPTS: u32 = 4;
/// Wait when a 429 carries neither `Retry-After` nor `Ratelimit`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct CfClientConfig {
    pub api_url: String,
    pub account_id: String,
    pub token: String,
    pub budget: BudgetSpec,
    /// Timeout of one HTTP exchange.
    pub timeout: Duration,
    /// Longest a call waits for a rate-limit pause inside the client; a longer pause makes
    /// the call fail with [`CfError::RateLimited`] so the reconciler requeues instead of
    /// holding a worker.
    pub max_wait: Duration,
}

impl std::fmt::Debug for CfClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CfClientConfig")
            .field("api_url", &self.api_url)
            .field("account_id", &self.account_id)
            .field("token", &"<redacted>")
            .field("budget", &self.budget)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A request body.
enum Body {
    None,
    Json(Vec<u8>),
    Raw {
        content_type: String,
        bytes: Vec<u8>,
    },
}

pub struct CfClient {
    http: reqwest::Client,
    base: Url,
    account_id: String,
    auth: HeaderValue,
    budget: Arc<Budget>,
    timeout: Duration,
    max_wait: Duration,
    /// No call before this instant: set from 429 answers and exhausted `Ratelimit` headers,
    /// shared by every caller so one rate-limited token is not hammered by many reconciles.
    paused_until: Mutex<Option<Instant>>,
    /// The verify path that accepted the token last, tried first next time (saves a refused
    /// call per verification for user tokens).
    token_kind: Mutex<Option<TokenKind>>,
    /// The configured budget, compared once with the `Ratelimit-Policy` Cloudflare announces.
    budget_spec: BudgetSpec,
    policy_checked: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for CfClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CfClient")
            .field("base", &self.base.as_str())
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

fn user_agent() -> String {
    format!("edgebind/{}", env!("CARGO_PKG_VERSION"))
}

/// How long `Retry-After` asks to wait: delta-seconds or an HTTP-date (RFC 9110 §10.2.3; a
/// date in the past means now). Cloudflare documents seconds, but an HTTP-date is valid too.
pub(crate) fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// How long to wait after a 429: `Retry-After`, else the longest reset among exhausted
/// `Ratelimit` members, else the longest reset of any member.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(d) = retry_after_header(headers) {
        return Some(d);
    }
    let items = ratelimit_items(headers);
    exhausted_for(&items).or_else(|| items.iter().map(|i| i.reset).max())
}

/// One member of the `Ratelimit` list (IETF draft-ietf-httpapi-ratelimit-headers, as
/// Cloudflare sends it since 2025-09: `"default";r=50;t=30`, reference §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimitItem {
    pub name: String,
    /// `r`: requests left in this limit's window.
    pub remaining: u64,
    /// `t`: seconds until the window resets.
    pub reset: Duration,
}

/// One member of the `Ratelimit-Policy` list: `"burst";q=100;w=60`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimitPolicy {
    pub name: String,
    /// `q`: requests allowed per window.
    pub quota: u64,
    /// `w`: the window.
    pub window: Duration,
}

/// The members of a Structured Field List header (RFC 9651 §3.1): several field lines are one
/// list joined by commas. Members that are not items with a string or token name are skipped;
/// an unparsable header yields nothing (never an error: it only tunes pacing).
fn sf_list_items(headers: &HeaderMap, name: &str) -> Vec<(String, sfv::Parameters)> {
    let joined = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    if joined.trim().is_empty() {
        return Vec::new();
    }
    let Ok(list) = sfv::Parser::new(joined.as_str()).parse::<sfv::List>() else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|e| match e {
            sfv::ListEntry::Item(i) => {
                let name = match &i.bare_item {
                    sfv::BareItem::String(s) => s.as_str().to_string(),
                    sfv::BareItem::Token(t) => t.as_str().to_string(),
                    _ => return None,
                };
                Some((name, i.params))
            }
            sfv::ListEntry::InnerList(_) => None,
        })
        .collect()
}

fn non_negative(p: &sfv::Parameters, key: &str) -> Option<u64> {
    match p.get(key)? {
        sfv::BareItem::Integer(i) => u64::try_from(i64::from(*i)).ok(),
        _ => None,
    }
}

/// Every member of `Ratelimit`, each read on its own (a member missing `r` or `t` is skipped).
pub(crate) fn ratelimit_items(headers: &HeaderMap) -> Vec<RateLimitItem> {
    sf_list_items(headers, "ratelimit")
        .into_iter()
        .filter_map(|(name, p)| {
            Some(RateLimitItem {
                remaining: non_negative(&p, "r")?,
                reset: Duration::from_secs(non_negative(&p, "t")?),
                name,
            })
        })
        .collect()
}

/// Every member of `Ratelimit-Policy` (a member missing `q` or `w` is skipped).
pub(crate) fn ratelimit_policies(headers: &HeaderMap) -> Vec<RateLimitPolicy> {
    sf_list_items(headers, "ratelimit-policy")
        .into_iter()
        .filter_map(|(name, p)| {
            Some(RateLimitPolicy {
                quota: non_negative(&p, "q")?,
                window: Duration::from_secs(non_negative(&p, "w")?),
                name,
            })
        })
        .collect()
}

/// The pause owed when some limit is used up: the longest reset among members with `r=0`.
pub(crate) fn exhausted_for(items: &[RateLimitItem]) -> Option<Duration> {
    items
        .iter()
        .filter(|i| i.remaining == 0)
        .map(|i| i.reset)
        .max()
}

/// What the budget allows in the policy's window when that is above the policy's quota.
pub(crate) fn budget_exceeds(b: &BudgetSpec, p: &RateLimitPolicy) -> Option<u64> {
    let allows = u64::from(b.burst) + u64::from(b.requests_per_second) * p.window.as_secs();
    (allows > p.quota).then_some(allows)
}

fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl CfClient {
    pub fn new(cfg: CfClientConfig) -> Result<Self, String> {
        let base = Url::parse(cfg.api_url.trim_end_matches('/'))
            .map_err(|e| format!("API URL {:?} is not valid: {e}", cfg.api_url))?;
        if base.scheme() != "https" && base.scheme() != "http" {
            return Err(format!("API URL {base} must use http or https"));
        }
        let token = cfg.token.trim();
        if token.is_empty() {
            return Err("the API token is empty".into());
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the API token contains characters not allowed in a header".to_string())?;
        auth.set_sensitive(true);
        // Public CAs (webpki roots) with the ring provider, as for LINSTOR without a custom CA.
        let tls = crate::linstor::tls::client_config(None)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(user_agent())
            .connect_timeout(Duration::from_secs(10).min(cfg.timeout))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        Ok(Self {
            http,
            base,
            account_id: cfg.account_id,
            auth,
            budget: Arc::new(Budget::new("cloudflare", &cfg.budget)),
            budget_spec: cfg.budget.clone(),
            policy_checked: std::sync::atomic::AtomicBool::new(false),
            timeout: cfg.timeout,
            max_wait: cfg.max_wait,
            paused_until: Mutex::new(None),
            token_kind: Mutex::new(None),
        })
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    fn scripts_path(&self) -> String {
        format!("/accounts/{}/workers/scripts", seg(&self.account_id))
    }

    fn script_path(&self, script: &str) -> String {
        format!("{}/{}", self.scripts_path(), seg(script))
    }

    fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|old| old < until) {
            *p = Some(until);
        }
    }

    /// Warns once when the budget allows more than a policy Cloudflare announces (each
    /// `Ratelimit-Policy` member on its own: the budget can send `burst + rate × w` in `w`).
    fn check_policy(&self, headers: &HeaderMap) {
        let policies = ratelimit_policies(headers);
        if policies.is_empty()
            || self
                .policy_checked
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        for p in policies {
            if let Some(over) = budget_exceeds(&self.budget_spec, &p) {
                tracing::warn!(policy = %p.name, quota = p.quota, window_s = p.window.as_secs(), budget_allows = over,
                    "the account's request budget allows more than Cloudflare's rate-limit policy; expect 429 answers");
            }
        }
    }

    /// Time left in a rate-limit pause, if any.
    pub fn paused_for(&self) -> Option<Duration> {
        let p = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        p.and_then(|u| u.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Sends one call and returns the envelope's `result` (or the raw body for non-JSON
    /// answers, as `Value::Null`).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
    ) -> Result<Value, CfError> {
        let what = format!("{method} {path}");
        let idempotent = method != reqwest::Method::POST;
        let template = metrics::path_template(path);
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if let Some(wait) = self.paused_for() {
                if wait > self.max_wait {
                    return Err(CfError::RateLimited {
                        what,
                        retry_after: wait,
                    });
                }
                tokio::time::sleep(wait).await;
            }
            let _permit = self.budget.acquire().await.ok_or(CfError::BudgetClosed)?;
            let mut url = self.base.clone();
            url.set_path(&format!(
                "{}{}",
                self.base.path().trim_end_matches('/'),
                path
            ));
            if !query.is_empty() {
                url.query_pairs_mut().extend_pairs(query);
            }
            let mut req = self
                .http
                .request(method.clone(), url)
                .timeout(self.timeout)
                .header(AUTHORIZATION, self.auth.clone());
            match &body {
                Body::None => {}
                Body::Json(b) => req = req.header(CONTENT_TYPE, "application/json").body(b.clone()),
                Body::Raw {
                    content_type,
                    bytes,
                } => {
                    req = req
                        .header(CONTENT_TYPE, content_type.as_str())
                        .body(bytes.clone())
                }
            }
            let started = Instant::now();
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    metrics::external_request(
                        "cloudflare",
                        method.as_str(),
                        &template,
                        "error",
                        started.elapsed(),
                    );
                    let err = CfError::Unreachable(plain(&e));
                    // A write that timed out may have been applied: never resend it; the
                    // reconciler re-reads.
                    if method != reqwest::Method::GET {
                        return Err(err);
                    }
                    last = Some(err);
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| CfError::Unreachable(format!("reading the answer: {}", plain(&e))))?;
            metrics::external_request(
                "cloudflare",
                method.as_str(),
                &template,
                &status.to_string(),
                started.elapsed(),
            );
            if let Some(reset) = exhausted_for(&ratelimit_items(&headers)) {
                // A window is used up: stop before Cloudflare has to say 429.
                self.pause_for(reset);
            }
            self.check_policy(&headers);
            if (200..300).contains(&status) {
                return decode(&what, &bytes);
            }
            let wait = retry_after(&headers).unwrap_or(DEFAULT_RETRY_AFTER);
            let err = error::classify(&what, status, &bytes, wait);
            match &err {
                CfError::RateLimited { .. } => {
                    tracing::info!(call = %what, retry_after = ?wait, "Cloudflare rate limit; pausing");
                    self.pause_for(wait);
                    if wait > self.max_wait {
                        return Err(err);
                    }
                }
                CfError::Api { status, .. } if *status >= 500 && idempotent => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                _ => return Err(err),
            }
            last = Some(err);
        }
        Err(last.unwrap_or(CfError::BudgetClosed))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, CfError> {
        let v = self
            .call(reqwest::Method::GET, path, query, Body::None)
            .await?;
        serde_json::from_value(v).map_err(|e| CfError::Decode {
            what: format!("GET {path}"),
            reason: e.to_string(),
        })
    }

    /// Verifies the token: the account path first (account-owned tokens), then the user path;
    /// once a path accepted the token, that one is tried first.
    pub async fn verify_token(&self) -> Result<(TokenVerify, TokenKind), CfError> {
        let account_path = format!("/accounts/{}/tokens/verify", seg(&self.account_id));
        let known = *self.token_kind.lock().unwrap_or_else(|e| e.into_inner());
        let order = match known {
            Some(TokenKind::User) => [TokenKind::User, TokenKind::Account],
            _ => [TokenKind::Account, TokenKind::User],
        };
        let mut last = None;
        for kind in order {
            let path = match kind {
                TokenKind::Account => account_path.as_str(),
                TokenKind::User => "/user/tokens/verify",
            };
            match self.get::<TokenVerify>(path, &[]).await {
                Ok(v) => {
                    *self.token_kind.lock().unwrap_or_else(|e| e.into_inner()) = Some(kind);
                    return Ok((v, kind));
                }
                Err(e) if e.is_unauthorized() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(CfError::BudgetClosed))
    }

    pub async fn list_scripts(&self) -> Result<Vec<ScriptInfo>, CfError> {
        self.get(&self.scripts_path(), &[]).await
    }

    pub async fn list_routes(&self, zone: &str) -> Result<Vec<Route>, CfError> {
        self.get(&format!("/zones/{}/workers/routes", seg(zone)), &[])
            .await
    }

    pub async fn list_secrets(&self, script: &str) -> Result<Vec<SecretInfo>, CfError> {
        self.get(&format!("{}/secrets", self.script_path(script)), &[])
            .await
    }

    /// Deployments, newest first.
    pub async fn list_deployments(&self, script: &str) -> Result<Vec<Deployment>, CfError> {
        let l: DeploymentList = self
            .get(&format!("{}/deployments", self.script_path(script)), &[])
            .await?;
        Ok(l.deployments)
    }

    /// Uploads the script with `secrets` and deploys it at 100 %.
    pub async fn upload_script(
        &self,
        up: &ScriptUpload,
        secrets: &BTreeMap<String, SecretValue>,
    ) -> Result<ScriptInfo, CfError> {
        let pairs: Vec<(String, String)> = secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        let (content_type, bytes) = up.form(&up.script_metadata(&pairs));
        let v = self
            .call(
                reqwest::Method::PUT,
                &self.script_path(&up.script_name),
                &[],
                Body::Raw {
                    content_type,
                    bytes,
                },
            )
            .await?;
        decode_value("upload", v)
    }

    /// Uploads a version (code plus `secrets` as bindings) without deploying it.
    pub async fn upload_version(
        &self,
        up: &ScriptUpload,
        secrets: &BTreeMap<String, SecretValue>,
    ) -> Result<VersionInfo, CfError> {
        let pairs: Vec<(String, String)> = secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        let (content_type, bytes) =
            up.form(&up.version_metadata(&pairs, "edgebind: secrets update"));
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("{}/versions", self.script_path(&up.script_name)),
                &[],
                Body::Raw {
                    content_type,
                    bytes,
                },
            )
            .await?;
        decode_value("version upload", v)
    }

    /// Deploys one version at 100 %.
    pub async fn deploy_version(&self, script: &str, version_id: &str) -> Result<(), CfError> {
        let body = json!({
            "strategy": "percentage",
            "versions": [{"version_id": version_id, "percentage": 100.0}],
            "annotations": {"workers/message": "edgebind: deploy secrets update"},
        });
        self.call(
            reqwest::Method::POST,
            &format!("{}/deployments", self.script_path(script)),
            &[],
            Body::Json(body.to_string().into_bytes()),
        )
        .await?;
        Ok(())
    }

    /// Sets several secrets with one `secrets-bulk` merge patch (one new version).
    pub async fn put_secrets(
        &self,
        script: &str,
        secrets: &BTreeMap<String, SecretValue>,
    ) -> Result<(), CfError> {
        let map: serde_json::Map<String, Value> = secrets
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({"name": k, "type": "secret_text", "text": v.expose()}),
                )
            })
            .collect();
        let body = json!({ "secrets": map });
        self.call(
            reqwest::Method::PATCH,
            &format!("{}/secrets-bulk", self.script_path(script)),
            &[],
            Body::Json(body.to_string().into_bytes()),
        )
        .await?;
        Ok(())
    }

    pub async fn delete_secret(&self, script: &str, name: &str) -> Result<(), CfError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("{}/secrets/{}", self.script_path(script), seg(name)),
            &[],
            Body::None,
        )
        .await?;
        Ok(())
    }

    pub async fn create_route(
        &self,
        zone: &str,
        pattern: &str,
        script: &str,
    ) -> Result<Route, CfError> {
        let body = json!({"pattern": pattern, "script": script});
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/zones/{}/workers/routes", seg(zone)),
                &[],
                Body::Json(body.to_string().into_bytes()),
            )
            .await?;
        decode_value("route create", v)
    }

    pub async fn update_route(
        &self,
        zone: &str,
        id: &str,
        pattern: &str,
        script: &str,
    ) -> Result<Route, CfError> {
        let body = json!({"pattern": pattern, "script": script});
        let v = self
            .call(
                reqwest::Method::PUT,
                &format!("/zones/{}/workers/routes/{}", seg(zone), seg(id)),
                &[],
                Body::Json(body.to_string().into_bytes()),
            )
            .await?;
        decode_value("route update", v)
    }

    pub async fn delete_route(&self, zone: &str, id: &str) -> Result<(), CfError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/zones/{}/workers/routes/{}", seg(zone), seg(id)),
            &[],
            Body::None,
        )
        .await?;
        Ok(())
    }

    pub async fn delete_script(&self, script: &str) -> Result<(), CfError> {
        self.call(
            reqwest::Method::DELETE,
            &self.script_path(script),
            &[],
            Body::None,
        )
        .await?;
        Ok(())
    }

    fn tunnels_path(&self) -> String {
        format!("/accounts/{}/cfd_tunnel", seg(&self.account_id))
    }

    /// Live tunnels named exactly `name` (deleted ones are excluded).
    pub async fn find_tunnels(&self, name: &str) -> Result<Vec<Tunnel>, CfError> {
        self.get(
            &self.tunnels_path(),
            &[("name", name), ("is_deleted", "false")],
        )
        .await
    }

    pub async fn get_tunnel(&self, id: &str) -> Result<Tunnel, CfError> {
        self.get(&format!("{}/{}", self.tunnels_path(), seg(id)), &[])
            .await
    }

    /// Creates a remotely managed tunnel (`config_src: cloudflare`); Cloudflare makes the secret.
    pub async fn create_tunnel(&self, name: &str) -> Result<Tunnel, CfError> {
        let body = json!({"name": name, "config_src": "cloudflare"});
        let v = self
            .call(
                reqwest::Method::POST,
                &self.tunnels_path(),
                &[],
                Body::Json(body.to_string().into_bytes()),
            )
            .await?;
        decode_value("tunnel create", v)
    }

    /// Deletes a tunnel (refused while cloudflared is connected). The operation declares a
    /// required JSON body, so `{}` is sent.
    pub async fn delete_tunnel(&self, id: &str) -> Result<(), CfError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("{}/{}", self.tunnels_path(), seg(id)),
            &[],
            Body::Json(b"{}".to_vec()),
        )
        .await?;
        Ok(())
    }

    /// The token cloudflared runs with (a secret: never logged).
    pub async fn tunnel_token(&self, id: &str) -> Result<SecretValue, CfError> {
        let v: String = self
            .get(&format!("{}/{}/token", self.tunnels_path(), seg(id)), &[])
            .await?;
        Ok(SecretValue::new(v))
    }

    pub async fn tunnel_config(&self, id: &str) -> Result<TunnelConfig, CfError> {
        self.get(
            &format!("{}/{}/configurations", self.tunnels_path(), seg(id)),
            &[],
        )
        .await
    }

    pub async fn put_tunnel_config(&self, id: &str, config: &Value) -> Result<(), CfError> {
        let body = json!({ "config": config });
        self.call(
            reqwest::Method::PUT,
            &format!("{}/{}/configurations", self.tunnels_path(), seg(id)),
            &[],
            Body::Json(body.to_string().into_bytes()),
        )
        .await?;
        Ok(())
    }

    pub async fn tunnel_connectors(&self, id: &str) -> Result<Vec<TunnelConnector>, CfError> {
        self.get(
            &format!("{}/{}/connections", self.tunnels_path(), seg(id)),
            &[],
        )
        .await
    }

    /// Records of `zone` with this full name, of any type.
    pub async fn find_dns_records(
        &self,
        zone: &str,
        name: &str,
    ) -> Result<Vec<DnsRecord>, CfError> {
        self.get(
            &format!("/zones/{}/dns_records", seg(zone)),
            &[("name", name)],
        )
        .await
    }

    /// Creates a proxied CNAME (the only kind edgebind writes).
    pub async fn create_cname(
        &self,
        zone: &str,
        name: &str,
        target: &str,
        comment: &str,
    ) -> Result<DnsRecord, CfError> {
        let body = json!({"type": "CNAME", "name": name, "content": target, "proxied": true,
                          "ttl": 1, "comment": comment});
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/zones/{}/dns_records", seg(zone)),
                &[],
                Body::Json(body.to_string().into_bytes()),
            )
            .await?;
        decode_value("DNS record create", v)
    }

    pub async fn delete_dns_record(&self, zone: &str, id: &str) -> Result<(), CfError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/zones/{}/dns_records/{}", seg(zone), seg(id)),
            &[],
            Body::None,
        )
        .await?;
        Ok(())
    }

    fn vpc_services_path(&self) -> String {
        format!(
            "/accounts/{}/connectivity/directory/services",
            seg(&self.account_id)
        )
    }

    /// Workers VPC services of the account (one page of up to 1,000, the API's maximum).
    pub async fn list_vpc_services(&self) -> Result<Vec<VpcService>, CfError> {
        self.get(&self.vpc_services_path(), &[("per_page", "1000")])
            .await
    }

    pub async fn get_vpc_service(&self, id: &str) -> Result<VpcService, CfError> {
        self.get(&format!("{}/{}", self.vpc_services_path(), seg(id)), &[])
            .await
    }

    /// Creates a connectivity directory service from `body` (the whole entry).
    pub async fn create_vpc_service(&self, body: &Value) -> Result<VpcService, CfError> {
        let v = self
            .call(
                reqwest::Method::POST,
                &self.vpc_services_path(),
                &[],
                Body::Json(body.to_string().into_bytes()),
            )
            .await?;
        decode_value("VPC service create", v)
    }

    /// Replaces a connectivity directory service with `body`.
    pub async fn update_vpc_service(&self, id: &str, body: &Value) -> Result<(), CfError> {
        self.call(
            reqwest::Method::PUT,
            &format!("{}/{}", self.vpc_services_path(), seg(id)),
            &[],
            Body::Json(body.to_string().into_bytes()),
        )
        .await?;
        Ok(())
    }

    /// The operation declares a 200 without a body: a 2xx that is not an envelope is success.
    pub async fn delete_vpc_service(&self, id: &str) -> Result<(), CfError> {
        match self
            .call(
                reqwest::Method::DELETE,
                &format!("{}/{}", self.vpc_services_path(), seg(id)),
                &[],
                Body::None,
            )
            .await
        {
            Ok(_) | Err(CfError::Decode { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Executes one planned write. A created route's id (or an uploaded script's etag) is
    /// returned.
    pub async fn execute(&self, op: &CfOp) -> Result<Option<String>, CfError> {
        match op {
            CfOp::UploadScript {
                upload, secrets, ..
            } => {
                let info = self.upload_script(upload, secrets).await?;
                Ok(info.etag)
            }
            CfOp::PutSecrets { script, secrets } => {
                self.put_secrets(script, secrets).await?;
                Ok(None)
            }
            CfOp::DeleteSecret { script, name } => {
                self.delete_secret(script, name).await?;
                Ok(None)
            }
            CfOp::CreateRoute {
                zone,
                pattern,
                script,
            } => Ok(Some(self.create_route(zone, pattern, script).await?.id)),
            CfOp::UpdateRoute {
                zone,
                id,
                pattern,
                script,
            } => Ok(Some(self.update_route(zone, id, pattern, script).await?.id)),
            CfOp::DeleteRoute { zone, id, .. } => {
                self.delete_route(zone, id).await?;
                Ok(None)
            }
            CfOp::DeleteScript { script } => {
                self.delete_script(script).await?;
                Ok(None)
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 * 2u64.pow(attempt.min(5)))
}

fn decode(what: &str, bytes: &[u8]) -> Result<Value, CfError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| CfError::Decode {
        what: what.into(),
        reason: format!("not a JSON envelope: {e}"),
    })?;
    if v.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(CfError::Decode {
            what: what.into(),
            reason: "2xx answer without success:true".into(),
        });
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}

fn decode_value<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, CfError> {
    serde_json::from_value(v).map_err(|e| CfError::Decode {
        what: what.into(),
        reason: e.to_string(),
    })
}

/// A transport error, terse (the URL holds no secret, but keep messages short).
fn plain(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn rate_limit_headers() {
        let h = headers(&[("ratelimit", "\"default\";r=0;t=30")]);
        assert_eq!(
            exhausted_for(&ratelimit_items(&h)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(30)));
        let h = headers(&[("ratelimit", "\"default\";r=0;t=30"), ("retry-after", "7")]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn every_ratelimit_member_is_read_on_its_own() {
        // Two limits, the second used up: its reset counts, its values never mix with the
        // first's (splitting on `;` alone read r=50 from one member and t=5 from another).
        let h = headers(&[("ratelimit", "\"default\";r=50;t=30, \"burst\";r=0;t=5")]);
        let items = ratelimit_items(&h);
        assert_eq!(
            items,
            vec![
                RateLimitItem {
                    name: "default".into(),
                    remaining: 50,
                    reset: Duration::from_secs(30)
                },
                RateLimitItem {
                    name: "burst".into(),
                    remaining: 0,
                    reset: Duration::from_secs(5)
                },
            ]
        );
        assert_eq!(exhausted_for(&items), Some(Duration::from_secs(5)));
        // The same list over two field lines.
        let h2 = headers(&[
            ("ratelimit", "\"default\";r=50;t=30"),
            ("ratelimit", "\"burst\";r=0;t=5"),
        ]);
        assert_eq!(ratelimit_items(&h2), items);
        // Nothing used up: no pause.
        let h3 = headers(&[("ratelimit", "\"default\";r=3;t=30, \"burst\";r=1;t=5")]);
        assert_eq!(exhausted_for(&ratelimit_items(&h3)), None);
        // Garbage is ignored, never a panic.
        for bad in ["r=0;t=", "\"x\";r=-1;t=5", "(a b);r=0;t=1", ";;;", "\"u"] {
            let h = headers(&[("ratelimit", bad)]);
            assert!(exhausted_for(&ratelimit_items(&h)).is_none(), "{bad}");
        }
    }

    #[test]
    fn ratelimit_policy_members_and_the_budget() {
        let h = headers(&[(
            "ratelimit-policy",
            "\"default\";q=1200;w=300, \"burst\";q=100;w=60",
        )]);
        let p = ratelimit_policies(&h);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].quota, p[0].window), (1200, Duration::from_secs(300)));
        assert_eq!((p[1].quota, p[1].window), (100, Duration::from_secs(60)));
        let fits = BudgetSpec {
            requests_per_second: 1,
            burst: 20,
            max_in_flight: 4,
        };
        assert_eq!(budget_exceeds(&fits, &p[0]), None);
        assert_eq!(budget_exceeds(&fits, &p[1]), None);
        let over = BudgetSpec {
            requests_per_second: 4,
            burst: 200,
            max_in_flight: 4,
        };
        assert_eq!(budget_exceeds(&over, &p[0]), Some(1400));
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let later = std::time::SystemTime::now() + Duration::from_secs(90);
        let date = httpdate::fmt_http_date(later);
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        let d = retry_after(&h).expect("an HTTP-date is understood");
        assert!(
            d > Duration::from_secs(85) && d <= Duration::from_secs(90),
            "{d:?}"
        );
        // A date in the past: no wait. The obsolete formats RFC 9110 requires accepting.
        for past in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            let h = headers(&[("retry-after", past)]);
            assert_eq!(retry_after(&h), Some(Duration::ZERO), "{past}");
        }
        // Neither seconds nor a date: fall back to the Ratelimit header.
        let h = headers(&[
            ("retry-after", "soon"),
            ("ratelimit", "\"default\";r=0;t=12"),
        ]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let cfg = CfClientConfig {
            api_url: DEFAULT_API_URL.into(),
            account_id: "a".repeat(32),
            token: "super-secret-token".into(),
            budget: BudgetSpec::default(),
            timeout: Duration::from_secs(5),
            max_wait: Duration::from_secs(5),
        };
        assert!(!format!("{cfg:?}").contains("super-secret"));
        let c = CfClient::new(cfg).unwrap();
        assert!(!format!("{c:?}").contains("super-secret"));
    }
}
