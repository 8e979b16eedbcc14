//! The HTTP surface: `/api/v1/...` (signed, §4-5) plus `/livez`, `/readyz`, `/metrics`.
//!
//! One handler owns every API path because the order of checks is normative: body size, then
//! the signature (§5.5), then the route, then the body, then policy, rate limits and the action.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;

use super::audit::{AuditEvent, AuditObject, AuditSink};
use super::backend::{BackendError, NewVolume, VolumeBackend};
use super::events::EventSink;
use super::identity::{self, EdgeIdentity};
use super::keys::KeyStore;
use super::metrics::GatewayMetrics;
use super::policy::{self, Action, Bundle, Decision, PolicyRequest, RateLimit};
use super::ratelimit::{RateLimiter, Touch};
use super::reason::Reason;
use super::refusals::{self, ReportError};
use super::replay::{MemoryLedger, Recorded, ReplayLedger};
use super::routes::{
    CanIBody, CreateBody, ResizeBody, RestoreBody, Route, SnapshotBody, dns_label, parse_body,
    valid_labels, valid_size,
};
use super::signature::{self, KEEP_SECONDS, NonceCache, SignedRequest};
use super::token::{self, IssuerStore, JwksCache, TokenFailure};

/// Largest accepted body.
pub const MAX_BODY: usize = 65_536;

/// A value the reloader replaces whole; requests keep the one they started with.
pub struct Live<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T: Default> Default for Live<T> {
    fn default() -> Self {
        Live::new(T::default())
    }
}

impl<T> Live<T> {
    pub fn new(v: T) -> Self {
        Live(Arc::new(RwLock::new(Arc::new(v))))
    }
    pub fn current(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
    pub fn replace(&self, v: T) {
        let v = Arc::new(v);
        match self.0.write() {
            Ok(mut g) => *g = v,
            Err(p) => *p.into_inner() = v,
        }
    }
}

/// The live policy bundle, replaced whole when the custom resources change.
pub type BundleStore = Live<Bundle>;

/// Limits that hold before any policy does (issue 12, flood): one key cannot take more than
/// its share, and cheap questions (`can-i`, listing) cost each identity a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Every request signed by one key.
    pub per_key: RateLimit,
    /// `can-i` and collection reads by one identity (issuer and subject).
    pub identity_queries: RateLimit,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            per_key: RateLimit {
                requests_per_minute: 12_000,
                burst: Some(400),
            },
            identity_queries: RateLimit {
                requests_per_minute: 600,
                burst: Some(60),
            },
        }
    }
}

impl EdgeLimits {
    /// The most nonces one key can have live within its limit (its burst plus its rate over
    /// the longest time a nonce is kept): the size of its partition in the nonce cache, so the
    /// cache cannot fill under the limits.
    pub fn nonces_per_key(&self) -> usize {
        let l = self.per_key;
        let burst = u64::from(l.burst.unwrap_or(l.requests_per_minute));
        let over_keep = u64::from(l.requests_per_minute).div_ceil(60) * KEEP_SECONDS as u64;
        usize::try_from(burst + over_keep).unwrap_or(usize::MAX)
    }
}

/// Everything a request needs.
pub struct GatewayState {
    pub keys: KeyStore,
    pub bundle: BundleStore,
    /// The issuers, and whether the gateway verifies their tokens itself (`token`).
    pub issuers: IssuerStore,
    pub jwks: JwksCache,
    pub nonces: NonceCache,
    /// Where mutations' nonces are recorded for every replica (`replay`).
    pub ledger: Arc<dyn ReplayLedger>,
    pub limits: EdgeLimits,
    /// Per-policy limits (§3.6).
    pub limiter: RateLimiter,
    /// `limits.per_key`, one bucket per key id.
    pub key_limiter: RateLimiter,
    /// `limits.identity_queries`, one bucket per identity.
    pub query_limiter: RateLimiter,
    /// `refusals::REPORT_LIMIT`, one bucket per key id.
    pub report_limiter: RateLimiter,
    pub audit: AuditSink,
    /// Kubernetes Events for changes made from the edge (absent in tests without a cluster).
    pub events: Option<EventSink>,
    pub backend: Arc<dyn VolumeBackend>,
    /// Set once keys and policies have been loaded at least once.
    pub ready: Arc<AtomicBool>,
    pub metrics: GatewayMetrics,
}

impl GatewayState {
    pub fn new(
        keys: KeyStore,
        bundle: BundleStore,
        backend: Arc<dyn VolumeBackend>,
        audit: AuditSink,
    ) -> Self {
        let limits = EdgeLimits::default();
        GatewayState {
            keys,
            bundle,
            issuers: IssuerStore::default(),
            jwks: JwksCache::default(),
            nonces: NonceCache::new(limits.nonces_per_key()),
            ledger: Arc::new(MemoryLedger::default()),
            limits,
            limiter: RateLimiter::new(50_000),
            key_limiter: RateLimiter::new(10_000),
            query_limiter: RateLimiter::new(50_000),
            report_limiter: RateLimiter::new(10_000),
            audit,
            events: None,
            backend,
            ready: Arc::new(AtomicBool::new(false)),
            metrics: GatewayMetrics::new(),
        }
    }

    /// Other limits; the nonce cache is resized to match.
    pub fn with_limits(mut self, limits: EdgeLimits) -> Self {
        self.limits = limits;
        self.nonces = NonceCache::new(limits.nonces_per_key());
        self
    }
}

/// Health and metrics: served on the admin listener, apart from the API, so exposing the API
/// at the edge never exposes metrics.
pub fn admin_router(state: Arc<GatewayState>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<Arc<GatewayState>>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "keys or policies not loaded",
                    )
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<GatewayState>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    s.metrics.encode(),
                )
            }),
        )
        .with_state(state)
}

/// The API router (`/api/v1/...`).
pub fn api_router(state: Arc<GatewayState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// API and admin endpoints on one listener (tests, and single-port setups).
pub fn router(state: Arc<GatewayState>) -> Router {
    admin_router(state.clone()).merge(api_router(state))
}

/// A finished answer plus what the audit event needs.
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
    reason: Option<Reason>,
    retry_after: Option<u64>,
    allow: Option<&'static [&'static str]>,
}

impl Answer {
    fn ok(status: StatusCode, body: impl Serialize) -> Answer {
        Answer {
            status,
            body: serde_json::to_value(body).unwrap_or(serde_json::Value::Null),
            reason: None,
            retry_after: None,
            allow: None,
        }
    }
    fn refuse(reason: Reason) -> Answer {
        Answer {
            status: reason.status(),
            body: serde_json::Value::Null,
            reason: Some(reason),
            retry_after: None,
            allow: None,
        }
    }
}

/// Per-request facts collected for the audit event.
#[derive(Default)]
struct Ctx {
    request_id: Option<String>,
    identity: Option<EdgeIdentity>,
    key_id: Option<String>,
    /// The namespace the verified key may sign for.
    key_namespace: Option<String>,
    /// The EdgeBinding the verified key was made for: its volume defaults shape new volumes.
    key_binding: Option<String>,
    /// The verified signature's nonce and until when it must be remembered; recorded only once
    /// the request is authorised (`admit`).
    nonce: Option<(String, i64)>,
    action: Option<String>,
    object: Option<AuditObject>,
    policy: Option<String>,
    revision: Option<String>,
    route: &'static str,
    verify_ms: f64,
    policy_ms: f64,
    upstream_ms: f64,
    /// The valid W3C `traceparent` the Worker forwarded, for the stamp.
    traceparent: Option<String>,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// The `Edge-Request-Id` to echo: only a short, plain value (it is unverified on early errors).
fn request_id(req: &Request) -> Option<String> {
    let v = req.headers().get("edge-request-id")?.to_str().ok()?.trim();
    (v.len() <= 64 && !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| v.to_string())
}

/// The signed request id with the stages so far, for the object this request creates
/// (`request_trace`). By the time an action runs, `Edge-Request-Id` has been verified as a
/// covered component of the signature.
fn stamp(ctx: &Ctx) -> Option<crate::request_trace::Stamp> {
    let id = ctx.request_id.clone()?;
    let edge = ctx.identity.as_ref();
    Some(crate::request_trace::Stamp {
        id,
        stages: crate::request_trace::Stages {
            edge_received_at: edge.and_then(|i| i.received_at),
            edge_verify_ms: edge.and_then(|i| i.verify_ms),
            gateway_decision_ms: Some(ctx.verify_ms + ctx.policy_ms),
            accepted_at: Some(crate::request_trace::now_ms()),
            traceparent: ctx.traceparent.clone(),
        },
    })
}

fn trace_id(req: &Request) -> Option<String> {
    let v = req.headers().get("traceparent")?.to_str().ok()?;
    let parts: Vec<&str> = v.split('-').collect();
    (parts.len() == 4 && parts[1].len() == 32 && parts[1].bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| parts[1].to_string())
}

/// The `traceparent` header when it is a valid W3C trace context (`otlp::trace::parse_traceparent`).
fn traceparent(req: &Request) -> Option<String> {
    let v = req.headers().get("traceparent")?.to_str().ok()?.trim();
    crate::otlp::trace::parse_traceparent(v).map(|_| v.to_string())
}

async fn handle(State(s): State<Arc<GatewayState>>, req: Request) -> Response {
    let start = Instant::now();
    let mut ctx = Ctx {
        request_id: request_id(&req),
        route: "unknown",
        traceparent: traceparent(&req),
        ..Default::default()
    };
    let method = req.method().as_str().to_string();
    let trace = trace_id(&req);
    let answer = process(&s, req, &mut ctx).await;
    let total = ms(start);

    let mut ev = AuditEvent::new();
    ev.request_id = ctx.request_id.clone();
    ev.trace_id = trace;
    ev.issuer = ctx.identity.as_ref().map(|i| i.principal.issuer.clone());
    ev.subject = ctx.identity.as_ref().map(|i| i.principal.subject.clone());
    ev.edge_location = ctx.identity.as_ref().and_then(|i| i.edge_location.clone());
    ev.ray_id = ctx.identity.as_ref().and_then(|i| i.ray_id.clone());
    ev.action = ctx.action.clone();
    ev.object = ctx.object.clone();
    ev.decision = if answer.status.is_success() {
        "allow"
    } else {
        "deny"
    };
    ev.reason_code = match answer.reason {
        Some(r) => r.code().to_string(),
        None if ctx.action.as_deref() == Some("can-i") => "can_i".into(),
        None if ctx.action.as_deref() == Some(REPORT_ACTION) => "report_accepted".into(),
        None => "policy_allowed".into(),
    };
    ev.policy = ctx.policy.clone();
    ev.policy_revision = ctx.revision.clone();
    ev.key_id = ctx.key_id.clone();
    ev.result = answer.status.as_u16();
    ev.latency_ms.verify = ctx.verify_ms;
    ev.latency_ms.policy = ctx.policy_ms;
    ev.latency_ms.upstream = ctx.upstream_ms;
    ev.latency_ms.total = total;
    s.audit.emit(&ev);
    if let Some(sink) = &s.events {
        sink.publish(&ev, &answer.body);
    }
    if let Some(id) = &ctx.identity
        && let (Some(wd), Some(rev)) = (&id.worker_decision, &ctx.revision)
        && wd == "allow"
        && answer
            .reason
            .is_some_and(|r| r.status() == StatusCode::FORBIDDEN)
    {
        tracing::info!(
            worker_revision = id.policy_revision.as_deref().unwrap_or(""),
            gateway_revision = rev.as_str(),
            "worker allowed what the gateway denies"
        );
    }
    s.metrics.observe(
        ctx.route,
        &method,
        answer.reason.map(Reason::code).unwrap_or("ok"),
        answer.status.as_u16(),
        total / 1000.0,
    );
    respond(answer, ctx.request_id.as_deref())
}

fn respond(a: Answer, request_id: Option<&str>) -> Response {
    let body = match a.reason {
        Some(r) => {
            json!({"error": {"code": r.code(), "message": r.message(), "requestId": request_id}})
        }
        None => a.body,
    };
    let mut resp = (a.status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    if let Some(id) = request_id.and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert("edge-request-id", id);
    }
    if let Some(secs) = a.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(methods) = a.allow
        && let Ok(v) = HeaderValue::from_str(&methods.join(", "))
    {
        h.insert(header::ALLOW, v);
    }
    resp
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

async fn process(s: &GatewayState, req: Request, ctx: &mut Ctx) -> Answer {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return Answer::refuse(Reason::BodyTooLarge);
    };

    // §5.5 steps 1-11.
    let t = Instant::now();
    let authority = parts.uri.authority().map(|a| a.as_str()).or_else(|| {
        parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let signed = SignedRequest {
        method: parts.method.as_str(),
        authority,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        body: &body,
    };
    let keys = s.keys.current();
    let verified = signature::verify(&signed, &keys, now_unix());
    ctx.verify_ms = ms(t);
    let verified = match verified {
        Ok(v) => v,
        Err(r) => {
            ctx.key_id = r.key_id;
            tracing::debug!(
                code = r.reason.code(),
                detail = r.detail,
                "signature refused"
            );
            return Answer::refuse(r.reason);
        }
    };
    // The key grants exactly its namespace (docs/security.md, cross-tenant forgery): checked
    // against the namespace of the key that verified, whatever the request claims.
    ctx.key_namespace = keys.namespace_of(&verified.key_id).map(str::to_string);
    ctx.key_binding = keys.binding_of(&verified.key_id).map(str::to_string);
    ctx.nonce = Some((verified.nonce.clone(), verified.forget_after()));
    // A key that floods is stopped here, before it costs anyone else anything.
    if let Err(secs) = s
        .key_limiter
        .check_one(&verified.key_id, s.limits.per_key, Instant::now())
    {
        ctx.key_id = Some(verified.key_id);
        return rate_limited(secs);
    }
    ctx.key_id = Some(verified.key_id);
    if parts.uri.path() == refusals::REPORT_PATH {
        return report(s, &parts, &body, ctx).await;
    }
    let identity = parts
        .headers
        .get("edge-identity")
        .and_then(|v| v.to_str().ok())
        .and_then(identity::parse);
    let Some(mut identity) = identity else {
        return Answer::refuse(Reason::IdentityInvalid);
    };
    let bundle = s.bundle.current();
    let t = Instant::now();
    let authenticated = authenticate(s, &parts.headers, &bundle, &mut identity).await;
    ctx.verify_ms += ms(t);
    ctx.identity = Some(identity);
    if let Err(a) = authenticated {
        return a;
    }

    // Route.
    let Some(route) = Route::parse(parts.uri.path()) else {
        return Answer::refuse(Reason::RouteUnknown);
    };
    ctx.route = route.template();
    if let Some(ns) = route.namespace()
        && ctx.key_namespace.as_deref() != Some(ns)
    {
        return Answer::refuse(Reason::KeyScope);
    }
    let method = parts.method.as_str();
    if !route.methods().contains(&method) {
        let mut a = Answer::refuse(Reason::MethodNotAllowed);
        a.allow = Some(route.methods());
        return a;
    }
    ctx.action = Some(
        route
            .action(method)
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| "can-i".into()),
    );
    ctx.object = audit_object(&route);
    if method == "GET" || method == "DELETE" {
        if !body.is_empty() {
            return Answer::refuse(Reason::RequestInvalid);
        }
    } else {
        if !is_json(&parts.headers) {
            return Answer::refuse(Reason::ContentTypeUnsupported);
        }
    }
    ctx.revision = Some(bundle.revision.clone());
    act(s, &bundle, route, &body, ctx).await
}

/// Defence in depth (docs/security.md): where the identity's issuer asks for it (the default),
/// the principal is the one the gateway verifies from the caller's own token, bound to this
/// signed request by `tokenHash`, not the one the Worker asserted. An issuer the cluster does
/// not define is refused.
async fn authenticate(
    s: &GatewayState,
    headers: &axum::http::HeaderMap,
    bundle: &Bundle,
    identity: &mut EdgeIdentity,
) -> Result<(), Answer> {
    // The live list, borrowed: no issuer is copied per request.
    let issuers = s.issuers.current();
    let Some(trusted) = issuers
        .iter()
        .find(|i| i.entry.name == identity.principal.issuer)
    else {
        return Err(Answer::refuse(Reason::IdentityInvalid));
    };
    if !trusted.verify {
        return Ok(());
    }
    let refuse = |f: TokenFailure| {
        tracing::info!(issuer = %trusted.entry.name, code = f.code(), "token refused at the gateway");
        Answer::refuse(f.reason())
    };
    let mut values = headers.get_all("edge-token").iter();
    let token = match (values.next().map(|v| v.to_str()), values.next()) {
        (Some(Ok(t)), None) if t.len() <= token::MAX_TOKEN_LEN => t,
        _ => return Err(refuse(TokenFailure::Missing)),
    };
    if identity.token_hash.as_deref() != Some(token::token_hash(token).as_str()) {
        return Err(refuse(TokenFailure::NotBound));
    }
    let claims = token::verify(&s.jwks, &trusted.entry, token, now_unix())
        .await
        .map_err(refuse)?;
    let referenced = bundle
        .policies
        .iter()
        .flat_map(|p| &p.subjects)
        .filter(|m| m.issuer == trusted.entry.name)
        .flat_map(|m| m.claims.iter().map(|c| c.claim.as_str()));
    let verified = token::principal(&trusted.entry, &claims, referenced).map_err(refuse)?;
    if verified.subject != identity.principal.subject
        || verified.groups != identity.principal.groups
    {
        tracing::info!(issuer = %trusted.entry.name, "the identity the Worker signed differs from the token's; the token's is used");
    }
    identity.principal = verified;
    Ok(())
}

fn audit_object(route: &Route) -> Option<AuditObject> {
    let obj = |ns: &str, name: Option<&str>, snap: Option<&str>| AuditObject {
        namespace: ns.to_string(),
        name: name.map(str::to_string),
        kind: "EdgeVolume",
        snapshot: snap.map(str::to_string),
    };
    Some(match route {
        Route::Volumes { ns } => obj(ns, None, None),
        Route::Volume { ns, name } | Route::Resize { ns, name } | Route::Snapshots { ns, name } => {
            obj(ns, Some(name), None)
        }
        Route::Snapshot { ns, name, snap } | Route::Restore { ns, name, snap } => {
            obj(ns, Some(name), Some(snap))
        }
        Route::CanI => return None,
    })
}

fn backend_refusal(e: BackendError) -> Answer {
    Answer::refuse(match e {
        BackendError::NotFound => Reason::NotFound,
        BackendError::AlreadyExists => Reason::AlreadyExists,
        BackendError::SizeShrink => Reason::SizeShrink,
        BackendError::Unavailable(why) => {
            tracing::warn!(error = %why, "kubernetes API call failed");
            Reason::BackendUnavailable
        }
    })
}

/// Labels of an existing volume, or the empty set when it does not exist (§3.5).
async fn labels_of(
    s: &GatewayState,
    ns: &str,
    name: &str,
    ctx: &mut Ctx,
) -> Result<BTreeMap<String, String>, Answer> {
    let t = Instant::now();
    let v = s.backend.get_volume(ns, name).await;
    ctx.upstream_ms += ms(t);
    match v {
        Ok(v) => Ok(v.map(|v| v.labels).unwrap_or_default()),
        Err(e) => Err(backend_refusal(e)),
    }
}

/// Decides policy and rate limits; `Ok` lets the action run and names the allowing policy.
fn authorize(
    s: &GatewayState,
    bundle: &Bundle,
    req: &PolicyRequest<'_>,
    ctx: &mut Ctx,
) -> Result<Option<usize>, Answer> {
    let t = Instant::now();
    let out = policy::evaluate(bundle, req);
    ctx.policy_ms += ms(t);
    ctx.policy = out.policy.and_then(|i| policy::policy_id(bundle, i));
    match out.decision {
        Decision::Deny => {
            return Err(Answer::refuse(out.reason.unwrap_or(Reason::PolicyNoMatch)));
        }
        // With labels known only the collection route can be undecided; it is handled there.
        Decision::Undecided if req.name.is_some() => {
            return Err(Answer::refuse(Reason::PolicyConditionError));
        }
        _ => {}
    }
    rate_limit(s, bundle, &out.rate_limited, req.principal)?;
    Ok(out.policy)
}

/// Labels the caller chose for a new volume: refused when they could grant rights the
/// allowing policy did not ask for (`policy::reserved_label`).
fn caller_labels(
    bundle: &Bundle,
    ns: &str,
    allowing: Option<usize>,
    labels: &BTreeMap<String, String>,
) -> Result<(), Answer> {
    match policy::reserved_label(bundle, ns, allowing, labels) {
        None => Ok(()),
        Some(key) => {
            tracing::info!(label = %key, "caller set a label that policies select on");
            Err(Answer::refuse(Reason::LabelReserved))
        }
    }
}

/// The action name of a refusal report in the gateway's own audit line.
const REPORT_ACTION: &str = "report-refusals";

/// `POST /api/v1/edge-refusals` (§7.2): the Worker's refusals, written to the
/// audit trail as `source: "worker"` lines. Signature already verified; writes nothing else.
async fn report(
    s: &GatewayState,
    parts: &axum::http::request::Parts,
    body: &[u8],
    ctx: &mut Ctx,
) -> Answer {
    ctx.route = refusals::REPORT_PATH;
    ctx.action = Some(REPORT_ACTION.into());
    if parts.method.as_str() != "POST" {
        let mut a = Answer::refuse(Reason::MethodNotAllowed);
        a.allow = Some(&["POST"]);
        return a;
    }
    // Every record is attributed to the namespace of the key that verified (`parse_report`).
    let (Some(key), Some(key_ns)) = (ctx.key_id.clone(), ctx.key_namespace.clone()) else {
        return Answer::refuse(Reason::KeyScope);
    };
    if !is_json(&parts.headers) {
        return Answer::refuse(Reason::ContentTypeUnsupported);
    }
    if let Err(secs) = s
        .report_limiter
        .check_one(&key, refusals::REPORT_LIMIT, Instant::now())
    {
        return rate_limited(secs);
    }
    let accepted = match refusals::parse_report(body, &key_ns, &key) {
        Ok(a) => a,
        Err(e) => {
            // The field name only: a value could be anything the sender chose.
            tracing::info!(key_id = key.as_str(), problem = ?e, "refusal report refused");
            return Answer::refuse(match e {
                ReportError::TooLarge => Reason::BodyTooLarge,
                ReportError::TooManyRecords | ReportError::Invalid(_) => Reason::RequestInvalid,
            });
        }
    };
    if let Err(a) = admit(s, ctx, false).await {
        return a;
    }
    for ev in &accepted.events {
        s.audit.emit(ev);
    }
    if accepted.dropped > 0 {
        tracing::warn!(
            key_id = key.as_str(),
            dropped = accepted.dropped,
            "the Worker dropped refusal records (its queue was full)"
        );
    }
    Answer::ok(
        StatusCode::ACCEPTED,
        json!({"accepted": accepted.events.len(), "dropped": accepted.dropped}),
    )
}

fn rate_limited(retry_after: u64) -> Answer {
    let mut a = Answer::refuse(Reason::RateLimited);
    a.retry_after = Some(retry_after);
    a
}

/// `can-i` and listing cost the identity a token of `limits.identity_queries`.
fn query_limit(s: &GatewayState, who: &identity::Principal) -> Result<(), Answer> {
    s.query_limiter
        .check_one(
            &format!("{}\n{}", who.issuer, who.subject),
            s.limits.identity_queries,
            Instant::now(),
        )
        .map_err(rate_limited)
}

/// The last step before an authorised request acts: its nonce is recorded, in this process
/// and, when it changes anything, in the ledger every replica shares. A nonce seen before is a
/// replay; nothing has happened yet.
async fn admit(s: &GatewayState, ctx: &Ctx, changes_something: bool) -> Result<(), Answer> {
    let (Some(key), Some((nonce, until))) = (ctx.key_id.as_deref(), ctx.nonce.as_ref()) else {
        return Err(Answer::refuse(Reason::SigMissing));
    };
    if !s.nonces.check_and_insert(key, nonce, *until, now_unix()) {
        return Err(Answer::refuse(Reason::NonceReplayed));
    }
    if !changes_something {
        return Ok(());
    }
    match s.ledger.record(key, nonce, *until).await {
        Ok(Recorded::First) => Ok(()),
        Ok(Recorded::Replay) => Err(Answer::refuse(Reason::NonceReplayed)),
        Err(why) => {
            tracing::warn!(error = %why, "could not record the request's nonce; refusing it");
            Err(Answer::refuse(Reason::BackendUnavailable))
        }
    }
}

fn rate_limit(
    s: &GatewayState,
    bundle: &Bundle,
    which: &[usize],
    who: &identity::Principal,
) -> Result<(), Answer> {
    let touches: Vec<Touch<'_>> = which
        .iter()
        .filter_map(|i| bundle.policies.get(*i))
        .filter_map(|p| {
            p.rate_limit.map(|limit| Touch {
                namespace: &p.namespace,
                policy: &p.name,
                limit,
            })
        })
        .collect();
    s.limiter
        .check(&who.issuer, &who.subject, &touches, Instant::now())
        .map_err(rate_limited)
}

async fn act(
    s: &GatewayState,
    bundle: &Bundle,
    route: Route,
    body: &Bytes,
    ctx: &mut Ctx,
) -> Answer {
    let Some(identity) = ctx.identity.clone() else {
        return Answer::refuse(Reason::IdentityInvalid);
    };
    let who = &identity.principal;
    let client_ip = identity.client_ip.as_deref();
    let action = ctx.action.as_deref().and_then(Action::parse);
    let base = |action, ns| PolicyRequest {
        action,
        namespace: ns,
        name: None,
        labels: None,
        size_bytes: None,
        client_ip,
        principal: who,
    };
    let timed = Instant::now();
    let result = match (&route, action) {
        (Route::CanI, _) => return can_i(s, bundle, body, who, client_ip, ctx).await,
        (Route::Volumes { ns }, Some(Action::Read)) => {
            if let Err(a) = query_limit(s, who) {
                return a;
            }
            let out = policy::evaluate(bundle, &base(Action::Read, ns));
            if out.decision == Decision::Deny {
                ctx.policy = out.policy.and_then(|i| policy::policy_id(bundle, i));
                return Answer::refuse(out.reason.unwrap_or(Reason::PolicyNoMatch));
            }
            if let Err(a) = rate_limit(s, bundle, &out.rate_limited, who) {
                return a;
            }
            if let Err(a) = admit(s, ctx, false).await {
                return a;
            }
            match s.backend.list_volumes(ns).await {
                Ok(vols) => {
                    let items: Vec<_> = vols
                        .into_iter()
                        .filter(|v| {
                            let r = PolicyRequest {
                                name: Some(&v.name),
                                labels: Some(&v.labels),
                                ..base(Action::Read, ns)
                            };
                            policy::evaluate(bundle, &r).decision == Decision::Allow
                        })
                        .collect();
                    Ok(Answer::ok(StatusCode::OK, json!({ "items": items })))
                }
                Err(e) => Err(e),
            }
        }
        (Route::Volumes { ns }, Some(Action::Create)) => {
            let Some(b) = parse_body::<CreateBody>(body).filter(|b| {
                dns_label(&b.name) && valid_size(b.size_bytes) && valid_labels(&b.labels)
            }) else {
                return Answer::refuse(Reason::RequestInvalid);
            };
            if let Some(o) = ctx.object.as_mut() {
                o.name = Some(b.name.clone());
            }
            let r = PolicyRequest {
                name: Some(&b.name),
                labels: Some(&b.labels),
                size_bytes: Some(b.size_bytes),
                ..base(Action::Create, ns)
            };
            let allowing = match authorize(s, bundle, &r, ctx) {
                Ok(p) => p,
                Err(a) => return a,
            };
            if let Err(a) = caller_labels(bundle, ns, allowing, &b.labels) {
                return a;
            }
            if let Err(a) = admit(s, ctx, true).await {
                return a;
            }
            let nv = NewVolume {
                namespace: ns.clone(),
                name: b.name.clone(),
                size_bytes: b.size_bytes,
                labels: b.labels.clone(),
                source_snapshot: None,
                binding: ctx.key_binding.clone(),
                request: stamp(ctx),
            };
            s.backend
                .create_volume(nv)
                .await
                .map(|v| Answer::ok(StatusCode::CREATED, v))
        }
        (route, Some(action)) => {
            let (ns, name) = match route {
                Route::Volume { ns, name }
                | Route::Resize { ns, name }
                | Route::Snapshots { ns, name }
                | Route::Snapshot { ns, name, .. }
                | Route::Restore { ns, name, .. } => (ns.as_str(), name.as_str()),
                _ => return Answer::refuse(Reason::RouteUnknown),
            };
            // Bodies are checked before policy so that policy sees the requested size.
            let resize = match route {
                Route::Resize { .. } => match parse_body::<ResizeBody>(body) {
                    Some(b) if valid_size(b.size_bytes) => Some(b.size_bytes),
                    _ => return Answer::refuse(Reason::RequestInvalid),
                },
                _ => None,
            };
            let snap_body = match (route, action) {
                (Route::Snapshots { .. }, Action::Snapshot) => {
                    match parse_body::<SnapshotBody>(body).filter(|b| dns_label(&b.name)) {
                        Some(b) => Some(b),
                        None => return Answer::refuse(Reason::RequestInvalid),
                    }
                }
                _ => None,
            };
            let restore_body = match route {
                Route::Restore { .. } => match parse_body::<RestoreBody>(body)
                    .filter(|b| dns_label(&b.name) && valid_labels(&b.labels))
                {
                    Some(b) => Some(b),
                    None => return Answer::refuse(Reason::RequestInvalid),
                },
                _ => None,
            };
            let labels = match labels_of(s, ns, name, ctx).await {
                Ok(l) => l,
                Err(a) => return a,
            };
            let r = PolicyRequest {
                name: Some(name),
                labels: Some(&labels),
                size_bytes: resize,
                ..base(action, ns)
            };
            if let Err(a) = authorize(s, bundle, &r, ctx) {
                return a;
            }
            // One policy path for every way a volume comes to exist: a restore makes a new
            // volume, which must be one the caller may create (name, labels, size), besides the
            // `restore` right on the source checked above.
            let mut restore_size = None;
            if let Some(b) = &restore_body {
                let t = Instant::now();
                let source = s.backend.get_volume(ns, name).await;
                ctx.upstream_ms += ms(t);
                let size = match source {
                    Ok(Some(v)) => v.size_bytes,
                    Ok(None) => return Answer::refuse(Reason::NotFound),
                    Err(e) => return backend_refusal(e),
                };
                let create = PolicyRequest {
                    name: Some(&b.name),
                    labels: Some(&b.labels),
                    size_bytes: Some(size),
                    ..base(Action::Create, ns)
                };
                let allowing = match authorize(s, bundle, &create, ctx) {
                    Ok(p) => p,
                    Err(a) => return a,
                };
                if let Err(a) = caller_labels(bundle, ns, allowing, &b.labels) {
                    return a;
                }
                restore_size = Some(size);
            }
            if let Err(a) = admit(s, ctx, action != Action::Read).await {
                return a;
            }
            let be = &s.backend;
            match (route, action) {
                (Route::Volume { .. }, Action::Read) => match be.get_volume(ns, name).await {
                    Ok(Some(v)) => Ok(Answer::ok(StatusCode::OK, v)),
                    Ok(None) => Err(BackendError::NotFound),
                    Err(e) => Err(e),
                },
                (Route::Volume { .. }, _) => be
                    .delete_volume(ns, name)
                    .await
                    .map(|v| Answer::ok(StatusCode::ACCEPTED, v)),
                (Route::Resize { .. }, _) => {
                    let request = stamp(ctx);
                    be.resize_volume(ns, name, resize.unwrap_or(0), request.as_ref())
                        .await
                        .map(|v| Answer::ok(StatusCode::ACCEPTED, v))
                }
                (Route::Snapshots { .. }, Action::Read) => match be.get_volume(ns, name).await {
                    Ok(Some(_)) => be
                        .list_snapshots(ns, name)
                        .await
                        .map(|items| Answer::ok(StatusCode::OK, json!({ "items": items }))),
                    Ok(None) => Err(BackendError::NotFound),
                    Err(e) => Err(e),
                },
                (Route::Snapshots { .. }, _) => {
                    let snap = snap_body.map(|b| b.name).unwrap_or_default();
                    if let Some(o) = ctx.object.as_mut() {
                        o.snapshot = Some(snap.clone());
                    }
                    let request = stamp(ctx);
                    be.create_snapshot(ns, name, &snap, request.as_ref())
                        .await
                        .map(|v| Answer::ok(StatusCode::CREATED, v))
                }
                (Route::Snapshot { snap, .. }, Action::Read) => {
                    match be.get_snapshot(ns, name, snap).await {
                        Ok(Some(v)) => Ok(Answer::ok(StatusCode::OK, v)),
                        Ok(None) => Err(BackendError::NotFound),
                        Err(e) => Err(e),
                    }
                }
                (Route::Snapshot { snap, .. }, _) => be
                    .delete_snapshot(ns, name, snap)
                    .await
                    .map(|v| Answer::ok(StatusCode::ACCEPTED, v)),
                (Route::Restore { snap, .. }, _) => {
                    let (Some(b), Some(size)) = (restore_body, restore_size) else {
                        return Answer::refuse(Reason::RequestInvalid);
                    };
                    match be.get_snapshot(ns, name, snap).await {
                        Ok(Some(_)) => be
                            .create_volume(NewVolume {
                                namespace: ns.to_string(),
                                name: b.name,
                                size_bytes: size,
                                labels: b.labels,
                                source_snapshot: Some(snap.clone()),
                                binding: ctx.key_binding.clone(),
                                request: stamp(ctx),
                            })
                            .await
                            .map(|v| Answer::ok(StatusCode::CREATED, v)),
                        Ok(None) => Err(BackendError::NotFound),
                        Err(e) => Err(e),
                    }
                }
                _ => return Answer::refuse(Reason::RouteUnknown),
            }
        }
        _ => return Answer::refuse(Reason::RouteUnknown),
    };
    ctx.upstream_ms += ms(timed);
    result.unwrap_or_else(backend_refusal)
}

async fn can_i(
    s: &GatewayState,
    bundle: &Bundle,
    body: &Bytes,
    who: &identity::Principal,
    client_ip: Option<&str>,
    ctx: &mut Ctx,
) -> Answer {
    if let Err(a) = query_limit(s, who) {
        return a;
    }
    let Some(b) = parse_body::<CanIBody>(body) else {
        return Answer::refuse(Reason::RequestInvalid);
    };
    let Some(action) = Action::parse(&b.action) else {
        return Answer::refuse(Reason::RequestInvalid);
    };
    let names_ok = dns_label(&b.namespace) && b.name.as_deref().is_none_or(dns_label);
    if !names_ok
        || b.size_bytes.is_some_and(|sz| !valid_size(sz))
        || b.labels.as_ref().is_some_and(|l| !valid_labels(l))
    {
        return Answer::refuse(Reason::RequestInvalid);
    }
    ctx.object = Some(AuditObject {
        namespace: b.namespace.clone(),
        name: b.name.clone(),
        kind: "EdgeVolume",
        snapshot: None,
    });
    // A key answers only for its own namespace: never for, or about, another tenant's.
    if ctx.key_namespace.as_deref() != Some(b.namespace.as_str()) {
        return Answer::refuse(Reason::KeyScope);
    }
    let labels = match (&b.labels, &b.name) {
        (Some(l), _) => Some(l.clone()),
        (None, Some(n)) => match labels_of(s, &b.namespace, n, ctx).await {
            Ok(l) => Some(l),
            Err(a) => return a,
        },
        (None, None) => None,
    };
    let r = PolicyRequest {
        action,
        namespace: &b.namespace,
        name: b.name.as_deref(),
        labels: labels.as_ref(),
        size_bytes: b.size_bytes,
        client_ip,
        principal: who,
    };
    let t = Instant::now();
    let out = policy::evaluate(bundle, &r);
    ctx.policy_ms += ms(t);
    let policy = out.policy.and_then(|i| policy::policy_id(bundle, i));
    ctx.policy = policy.clone();
    if let Err(a) = admit(s, ctx, false).await {
        return a;
    }
    let allowed = out.decision == Decision::Allow;
    let reason = match (out.decision, out.reason) {
        (Decision::Allow, _) => "policy_allowed",
        (_, Some(r)) => r.code(),
        // Collection question with only label-dependent policies: no single answer.
        (_, None) => "policy_undecided",
    };
    Answer::ok(
        StatusCode::OK,
        json!({
            "allowed": allowed,
            "decision": if allowed { "allow" } else { "deny" },
            "reasonCode": reason,
            "policy": policy,
            "policyRevision": bundle.revision,
        }),
    )
}

/// Whether the body is declared `application/json` (parameters such as `charset` ignored).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}
