//! Fault injection, call statistics and exchange recording: one middleware around every route.

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::LinstorSim;
use super::rc;
use super::reply::{Rc, rc_list};

/// Largest request or response body the simulator buffers.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which calls a hang applies to: an optional method and a substring of the path.
#[derive(Debug, Clone)]
pub struct CallMatcher {
    pub method: Option<String>,
    pub path_contains: String,
}

impl CallMatcher {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&self.path_contains)
    }
}

#[derive(Debug, Default)]
struct FaultState {
    latency: Option<Duration>,
    fail_next: u32,
    fail_next_status: u16,
    fail_ratio: f64,
    fail_ratio_status: u16,
    hangs: Vec<CallMatcher>,
    drop_next: u32,
    unreachable: bool,
}

enum Action {
    Pass,
    Fail(u16),
    Hang,
    Drop,
}

/// Switches for injected faults; cheap to clone, shared with the running simulator.
#[derive(Clone, Default)]
pub struct FaultHandle(Arc<Mutex<FaultState>>);

impl FaultHandle {
    /// Per-call latency, replacing `SimConfig::latency` (None restores it).
    pub fn set_latency(&self, latency: Option<Duration>) {
        lock(&self.0).latency = latency;
    }

    /// The next `n` calls fail with `status` (500: ApiCallRc with an error report; 503: text).
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut s = lock(&self.0);
        s.fail_next = n;
        s.fail_next_status = status;
    }

    /// Each call fails with probability `ratio` (0.0..=1.0) with `status`.
    pub fn fail_ratio(&self, ratio: f64, status: u16) {
        let mut s = lock(&self.0);
        s.fail_ratio = ratio.clamp(0.0, 1.0);
        s.fail_ratio_status = status;
    }

    /// Matching calls are never answered (until the client gives up or the sim stops).
    pub fn hang(&self, method: Option<&str>, path_contains: &str) {
        lock(&self.0).hangs.push(CallMatcher {
            method: method.map(str::to_string),
            path_contains: path_contains.to_string(),
        });
    }

    /// The next `n` calls get their connection closed without a response.
    pub fn drop_next(&self, n: u32) {
        lock(&self.0).drop_next = n;
    }

    /// While on, every new connection is closed at once and every request drops its connection.
    pub fn set_unreachable(&self, on: bool) {
        lock(&self.0).unreachable = on;
    }

    pub fn is_unreachable(&self) -> bool {
        lock(&self.0).unreachable
    }

    /// Removes every injected fault.
    pub fn clear(&self) {
        *lock(&self.0) = FaultState::default();
    }

    fn latency(&self) -> Option<Duration> {
        lock(&self.0).latency
    }

    fn decide(&self, method: &str, path: &str) -> Action {
        let mut s = lock(&self.0);
        if s.unreachable {
            return Action::Drop;
        }
        if s.hangs.iter().any(|h| h.matches(method, path)) {
            return Action::Hang;
        }
        if s.drop_next > 0 {
            s.drop_next -= 1;
            return Action::Drop;
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Action::Fail(s.fail_next_status);
        }
        if s.fail_ratio > 0.0 && rand::random::<f64>() < s.fail_ratio {
            return Action::Fail(s.fail_ratio_status);
        }
        Action::Pass
    }
}

#[derive(Debug, Default, Clone)]
struct StatsInner {
    by_route: BTreeMap<String, u64>,
    reads: u64,
    writes: u64,
    work: ServerWork,
}

/// Server-side work of the list calls that sweep the controller's maps and the satellites
/// (the cost model; see `docs/reference/linstor.md` "Cost of list calls").
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ServerWork {
    /// Objects the controller visits to answer: every resource definition of the map (the
    /// filters are applied while streaming over all of them) plus every object it assembles.
    /// `limit`/`offset` are applied only after the whole filtered list is assembled, so each
    /// page costs the whole list.
    pub objects: u64,
    /// Requests to satellites (`view/resources` asks each node with thin volumes in the
    /// filter for allocated sizes; `view/storage-pools` without `cached=true` asks each node
    /// for free space).
    pub satellite_requests: u64,
}

/// Calls received, by "METHOD /path/{template}" (unmatched paths count as "METHOD <unmatched>").
#[derive(Clone, Default)]
pub struct CallStats(Arc<Mutex<StatsInner>>);

impl CallStats {
    fn record(&self, method: &str, template: &str) {
        let mut s = lock(&self.0);
        *s.by_route
            .entry(format!("{method} {template}"))
            .or_default() += 1;
        if method == "GET" || method == "HEAD" {
            s.reads += 1;
        } else {
            s.writes += 1;
        }
    }

    /// Calls to one route, e.g. `count("POST", "/v1/resource-definitions/{resource}/autoplace")`.
    pub fn count(&self, method: &str, template: &str) -> u64 {
        lock(&self.0)
            .by_route
            .get(&format!("{method} {template}"))
            .copied()
            .unwrap_or(0)
    }

    pub fn by_route(&self) -> BTreeMap<String, u64> {
        lock(&self.0).by_route.clone()
    }

    pub fn reads(&self) -> u64 {
        lock(&self.0).reads
    }

    pub fn writes(&self) -> u64 {
        lock(&self.0).writes
    }

    pub fn total(&self) -> u64 {
        let s = lock(&self.0);
        s.reads + s.writes
    }

    pub fn reset(&self) {
        *lock(&self.0) = StatsInner::default();
    }

    /// Adds the server-side work of one call.
    pub fn add_work(&self, objects: u64, satellite_requests: u64) {
        let mut s = lock(&self.0);
        s.work.objects += objects;
        s.work.satellite_requests += satellite_requests;
    }

    /// Server-side work since the last reset.
    pub fn work(&self) -> ServerWork {
        lock(&self.0).work
    }
}

/// One request and its answer, as recorded by `LinstorSim::record_exchanges`.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub request_body: Option<Vec<u8>>,
    pub status: u16,
    pub response_body: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct Recorder {
    on: bool,
    items: Vec<Exchange>,
}

#[derive(Clone, Default)]
pub(crate) struct ExchangeLog(Arc<Mutex<Recorder>>);

impl ExchangeLog {
    pub fn set(&self, on: bool) {
        lock(&self.0).on = on;
    }

    pub fn items(&self) -> Vec<Exchange> {
        lock(&self.0).items.clone()
    }

    fn on(&self) -> bool {
        lock(&self.0).on
    }

    fn push(&self, e: Exchange) {
        lock(&self.0).items.push(e);
    }
}

/// Closes the connection a request arrived on (inserted by the simulator's accept loop).
#[derive(Clone)]
pub(crate) struct ConnCtl(pub CancellationToken);

async fn never_answer() -> Response {
    std::future::pending::<()>().await;
    StatusCode::GATEWAY_TIMEOUT.into_response()
}

/// The middleware: stats, faults, latency, then the route; records the exchange when asked.
pub(crate) async fn middleware(
    State(sim): State<LinstorSim>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "<unmatched>".to_string());
    sim.inner.stats.record(&method, &template);

    let faults = &sim.inner.faults;
    match faults.decide(&method, &path) {
        Action::Pass => {}
        Action::Hang => return never_answer().await,
        Action::Drop => {
            if let Some(ctl) = req.extensions().get::<ConnCtl>() {
                ctl.0.cancel();
            }
            return never_answer().await;
        }
        Action::Fail(status) => return injected_failure(&sim, status, &path),
    }
    let latency = faults.latency().unwrap_or(sim.inner.cfg.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    if !sim.inner.exchanges.on() {
        return next.run(req).await;
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let req_bytes = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    let request_body = (!req_bytes.is_empty()).then(|| req_bytes.to_vec());
    let resp = next
        .run(Request::from_parts(parts, Body::from(req_bytes)))
        .await;
    let (parts, body) = resp.into_parts();
    let resp_bytes = to_bytes(body, BODY_LIMIT).await.unwrap_or_default();
    sim.inner.exchanges.push(Exchange {
        method,
        path,
        query,
        request_body,
        status: parts.status.as_u16(),
        response_body: resp_bytes.to_vec(),
    });
    Response::from_parts(parts, Body::from(resp_bytes))
}

fn injected_failure(sim: &LinstorSim, status: u16, path: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::INTERNAL_SERVER_ERROR {
        let id = sim
            .write()
            .error_report(format!("Injected fault while processing {path}"));
        let rc = Rc::new(
            (rc::FAIL_UNKNOWN_ERROR | rc::MASK_ERROR) as i64,
            "An unknown error occurred.",
        )
        .report(id);
        rc_list(StatusCode::OK, &[rc])
    } else {
        (code, "Service Unavailable").into_response()
    }
}
