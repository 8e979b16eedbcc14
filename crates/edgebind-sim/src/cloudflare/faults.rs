//! Fault injection: latency, 5xx answers, hanging requests and the "script not found right
//! after upload" propagation delay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;

use super::lock;

/// A rule that picks which requests a fault applies to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    pub method: Option<Method>,
    pub path_contains: Option<String>,
}

impl Target {
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub latency: Duration,
    fail_next: Vec<(Target, u32, u16)>,
    fail_ratio: Option<(f64, u16)>,
    hang_next: Vec<(Target, u32)>,
    busy_next: u32,
    /// (requests left, seconds) of injected token rate-limit answers.
    limited_next: Option<(u32, u64)>,
    pub hidden_after_upload: u32,
}

/// What the front layer must do with one request.
pub(crate) enum Injected {
    None,
    Fail(u16),
    Hang,
    /// 429 "too many requests are currently modifying the script" (secrets writes).
    Busy,
    /// 429 of the token's rate limit, `Retry-After` given as an HTTP-date this many seconds
    /// ahead and a `Ratelimit` list of two members.
    RateLimited(u64),
}

impl FaultState {
    pub fn decide(&mut self, method: &Method, path: &str) -> Injected {
        if let Some((n, secs)) = self.limited_next.as_mut()
            && *n > 0
        {
            *n -= 1;
            return Injected::RateLimited(*secs);
        }
        if self.busy_next > 0 && *method != Method::GET && path.contains("/secrets") {
            self.busy_next -= 1;
            return Injected::Busy;
        }
        for (target, remaining) in self.hang_next.iter_mut() {
            if *remaining > 0 && target.matches(method, path) {
                *remaining -= 1;
                return Injected::Hang;
            }
        }
        for (target, remaining, status) in self.fail_next.iter_mut() {
            if *remaining > 0 && target.matches(method, path) {
                *remaining -= 1;
                return Injected::Fail(*status);
            }
        }
        self.fail_next.retain(|(_, n, _)| *n > 0);
        self.hang_next.retain(|(_, n)| *n > 0);
        if let Some((ratio, status)) = self.fail_ratio
            && rand::random::<f64>() < ratio
        {
            return Injected::Fail(status);
        }
        Injected::None
    }
}

/// Handle to change the simulator's faults while it runs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CfFaults {
    pub(crate) state: Arc<Mutex<FaultState>>,
}

fn server_error(status: u16) -> u16 {
    if (500..=599).contains(&status) {
        status
    } else {
        500
    }
}

impl CfFaults {
    /// Extra latency added to every request (on top of the configured latency).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state).latency = latency;
    }
    /// The next `n` requests answer `status` (a 5xx; anything else becomes 500).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.fail_next_matching(None, "", n, status);
    }
    /// The next `n` requests with this method (any if `None`) whose path contains
    /// `path_contains` answer `status` (5xx).
    pub fn fail_next_matching(
        &self,
        method: Option<Method>,
        path_contains: &str,
        n: u32,
        status: u16,
    ) {
        let target = Target {
            method,
            path_contains: (!path_contains.is_empty()).then(|| path_contains.to_string()),
        };
        lock(&self.state)
            .fail_next
            .push((target, n, server_error(status)));
    }
    /// Each request fails with `status` (5xx) with probability `ratio` (0.0 turns it off).
    pub fn fail_ratio(&self, ratio: f64, status: u16) {
        lock(&self.state).fail_ratio =
            (ratio > 0.0).then_some((ratio.min(1.0), server_error(status)));
    }
    /// The next `n` requests never get an answer (until the simulator shuts down), so the
    /// client's timeout must fire.
    pub fn hang_next(&self, n: u32) {
        lock(&self.state).hang_next.push((Target::default(), n));
    }
    /// While set, each Worker upload leaves the script invisible for the next `n` calls that
    /// name it (404 / 10007 on script calls, 400 / 10019 on route create/update), like the
    /// propagation delay seen on the real API.
    pub fn script_missing_after_upload(&self, n: u32) {
        lock(&self.state).hidden_after_upload = n;
    }
    /// The next `n` secret writes (PUT/PATCH/DELETE on `.../secrets*`) answer 429 "too many
    /// requests are currently modifying the script" with `Retry-After: 1`, the per-script
    /// write contention the spec documents (not the per-token rate limit).
    pub fn script_busy_next(&self, n: u32) {
        lock(&self.state).busy_next = n;
    }
    /// The next `n` requests answer 429 / 10429 as the token's rate limit does, with
    /// `Retry-After` as an HTTP-date `secs` ahead (RFC 9110 §10.2.3 allows either form;
    /// Cloudflare documents seconds) and `Ratelimit: "burst";r=0;t=<secs>, "default";r=…;t=…`
    /// (a list, as the IETF draft defines it and Cloudflare's docs describe it: "List of
    /// service limit items", https://developers.cloudflare.com/fundamentals/api/reference/limits/).
    pub fn rate_limited_next(&self, n: u32, secs: u64) {
        lock(&self.state).limited_next = Some((n, secs));
    }
    /// Removes every fault.
    pub fn clear(&self) {
        *lock(&self.state) = FaultState::default();
    }
}
