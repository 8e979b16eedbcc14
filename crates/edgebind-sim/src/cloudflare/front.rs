//! The layer in front of every handler: latency and fault injection, authentication, the
//! per-token rate limit, account/zone scoping, call statistics and exchange recording.

use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::envelope::ApiError;
use super::faults::Injected;
use super::observe::{API_PREFIX, Exchange, template_for};
use super::tokens::{self, Presented, TokenRecord};
use super::{CloudflareSim, lock};

/// Bodies above this are refused (the real API's limit is far above any Worker we upload).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How long a "hanging" request waits if the simulator is never shut down.
const HANG_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// The token that authenticated a request, for handlers that report on it (verify).
#[derive(Clone)]
pub(crate) struct Authed(pub TokenRecord);

pub(crate) async fn front(State(sim): State<CloudflareSim>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let req_ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let template = template_for(&path);
    let recording = sim.recording();
    let (resp, req_body) = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => {
            let req = Request::from_parts(parts, Body::from(bytes.clone()));
            (guarded(&sim, req, next).await, bytes)
        }
        Err(_) => (
            ApiError::bad_request(10027, "Request body was too large").into_response(),
            bytes::Bytes::new(),
        ),
    };
    let status = resp.status().as_u16();
    lock(&sim.inner.stats).record(method.as_str(), template, status);
    if !recording {
        return resp;
    }
    let (rparts, rbody) = resp.into_parts();
    let rbytes = to_bytes(rbody, MAX_BODY).await.unwrap_or_default();
    lock(&sim.inner.exchanges).push(Exchange {
        method: method.to_string(),
        path,
        path_template: template.map(str::to_string),
        query,
        request_content_type: req_ct,
        request_body: req_body.to_vec(),
        status,
        response_content_type: rparts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        response_body: rbytes.to_vec(),
    });
    Response::from_parts(rparts, Body::from(rbytes))
}

/// Path ids (account, zone) must look like Cloudflare identifiers; otherwise the API cannot
/// route the call (400 / 7003).
fn check_identifiers(rest: &str) -> Result<(), ApiError> {
    let segs: Vec<&str> = rest.split('/').collect();
    if let [_, "accounts" | "zones", id, ..] = segs.as_slice()
        && (id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(ApiError::bad_request(
            7003,
            format!("Could not route to {rest}, perhaps your object identifier is invalid?"),
        ));
    }
    Ok(())
}

/// Whether `rec` may act on the account or zone named in the path.
fn in_scope(sim: &CloudflareSim, rec: &TokenRecord, rest: &str) -> bool {
    let segs: Vec<&str> = rest.split('/').collect();
    let allowed_account = |a: &str| match &rec.token.accounts {
        Some(list) => list.iter().any(|x| x == a),
        None => rec.account == a,
    };
    match segs.as_slice() {
        [_, "accounts", account, ..] => allowed_account(account),
        [_, "zones", zone, ..] => {
            let st = lock(&sim.inner.state);
            let Some(z) = st.zones.get(*zone) else {
                // Unknown zone: answer like a zone the token cannot see.
                return false;
            };
            match &rec.token.zones {
                Some(list) => list.iter().any(|x| x == zone),
                None => allowed_account(&z.account),
            }
        }
        _ => true,
    }
}

async fn guarded(sim: &CloudflareSim, mut req: Request, next: Next) -> Response {
    let latency = sim.inner.latency + lock(&sim.inner.faults).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = req.uri().path().to_string();
    let injected = lock(&sim.inner.faults).decide(req.method(), &path);
    match injected {
        Injected::Hang => {
            tokio::select! {
                _ = tokio::time::sleep(HANG_FOR) => {}
                _ = sim.inner.shutdown.cancelled() => {}
            }
            return ApiError::internal(StatusCode::SERVICE_UNAVAILABLE).into_response();
        }
        Injected::Fail(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return ApiError::internal(status).into_response();
        }
        Injected::Busy => {
            // The envelope code for this answer is not documented; 10429 is the rate-limit code.
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                10429,
                "Too many requests are currently modifying the script. Please try again.",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        Injected::RateLimited(secs) => {
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                10429,
                "Rate limited. Please wait and consider throttling your request speed",
            )
            .into_response();
            let at = std::time::SystemTime::now() + std::time::Duration::from_secs(secs);
            // The exhausted member comes first and the healthy one with a long reset second,
            // so a parser that mixes members' values gets the wait wrong.
            let pairs = [
                (header::RETRY_AFTER.as_str(), httpdate::fmt_http_date(at)),
                (
                    "ratelimit",
                    format!("\"burst\";r=0;t={secs}, \"default\";r=900;t=250"),
                ),
                (
                    "ratelimit-policy",
                    "\"burst\";q=100;w=60, \"default\";q=1200;w=300".to_string(),
                ),
            ];
            for (k, v) in pairs {
                if let Ok(h) = HeaderValue::from_str(&v) {
                    resp.headers_mut().insert(k, h);
                }
            }
            return resp;
        }
        Injected::None => {}
    }
    let Some(rest) = path.strip_prefix(API_PREFIX).map(str::to_string) else {
        return next.run(req).await;
    };
    let is_verify = rest.ends_with("/tokens/verify");
    let value = match tokens::presented(req.headers()) {
        Ok(Presented::Bearer(v)) => v,
        Err(e) => return e.into_response(),
    };
    let Some(rec) = lock(&sim.inner.state).token(&value).cloned() else {
        return if is_verify {
            tokens::invalid_api_token()
        } else {
            ApiError::authentication()
        }
        .into_response();
    };
    let verdict = lock(&sim.inner.limiter).check(&rec.token.id, Instant::now());
    if let Some(v) = &verdict
        && !v.allowed
    {
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            10429,
            "Rate limited. Please wait and consider throttling your request speed",
        )
        .into_response();
        add_rate_headers(&mut resp, v);
        if let Ok(h) = HeaderValue::from_str(&v.reset_secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, h);
        }
        return resp;
    }
    let now = jiff::Timestamp::now();
    let result = if is_verify {
        Ok(())
    } else if !rec.token.usable(now) {
        Err(tokens::unusable_token())
    } else if let Err(e) = check_identifiers(&rest) {
        Err(e)
    } else if !in_scope(sim, &rec, &rest)
        || (rec.token.read_only && !matches!(*req.method(), Method::GET | Method::HEAD))
    {
        Err(ApiError::authentication())
    } else {
        Ok(())
    };
    let mut resp = match result {
        Ok(()) => {
            req.extensions_mut().insert(Authed(rec));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    };
    if let Some(v) = &verdict {
        add_rate_headers(&mut resp, v);
    }
    resp
}

fn add_rate_headers(resp: &mut Response, v: &super::ratelimit::Verdict) {
    let pairs = [
        (
            "ratelimit",
            format!("\"default\";r={};t={}", v.remaining, v.reset_secs),
        ),
        (
            "ratelimit-policy",
            format!("\"default\";q={};w={}", v.limit, v.window.as_secs()),
        ),
    ];
    for (k, val) in pairs {
        if let Ok(h) = HeaderValue::from_str(&val) {
            resp.headers_mut().insert(k, h);
        }
    }
}

/// Unknown paths: 400 / 7003 like the real API.
pub(crate) async fn no_route(req: Request) -> Response {
    ApiError::bad_request(
        7003,
        format!(
            "Could not route to {}, perhaps your object identifier is invalid?",
            req.uri()
                .path()
                .strip_prefix(API_PREFIX)
                .unwrap_or(req.uri().path())
        ),
    )
    .into_response()
}

/// Known path, unsupported method.
pub(crate) async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        10405,
        "Method not allowed for this endpoint",
    )
    .into_response()
}
