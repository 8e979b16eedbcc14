//! Per-token sliding-window rate limit (1,200 requests per 5 minutes on the real API).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    pub limit: Option<(u32, Duration)>,
    seen: HashMap<String, VecDeque<Instant>>,
}

/// Outcome of one check: remaining budget and seconds until the window frees a slot.
pub(crate) struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub window: Duration,
    pub remaining: u32,
    pub reset_secs: u64,
}

impl RateLimiter {
    pub fn new(limit: Option<(u32, Duration)>) -> Self {
        Self {
            limit,
            seen: HashMap::new(),
        }
    }

    /// Counts one request for `key` (a token id) and says whether it may proceed.
    pub fn check(&mut self, key: &str, now: Instant) -> Option<Verdict> {
        let (limit, window) = self.limit?;
        let q = self.seen.entry(key.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        let allowed = (q.len() as u64) < u64::from(limit);
        if allowed {
            q.push_back(now);
        }
        let reset = q
            .front()
            .map(|t| window.saturating_sub(now.duration_since(*t)))
            .unwrap_or(window);
        // Round up so a client that waits `Retry-After` seconds is really past the window.
        let reset_secs = reset.as_millis().div_ceil(1000).max(1) as u64;
        Some(Verdict {
            allowed,
            limit,
            window,
            remaining: limit.saturating_sub(q.len() as u32),
            reset_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_blocks_then_frees() {
        let mut rl = RateLimiter::new(Some((2, Duration::from_secs(10))));
        let t0 = Instant::now();
        assert!(rl.check("a", t0).map(|v| v.allowed).unwrap_or(false));
        let v = rl.check("a", t0).expect("limit set");
        assert!(v.allowed);
        assert_eq!(v.remaining, 0);
        let v = rl
            .check("a", t0 + Duration::from_secs(3))
            .expect("limit set");
        assert!(!v.allowed);
        assert_eq!(v.reset_secs, 7);
        // Another token has its own budget.
        assert!(rl.check("b", t0).map(|v| v.allowed).unwrap_or(false));
        let v = rl
            .check("a", t0 + Duration::from_secs(10))
            .expect("limit set");
        assert!(v.allowed);
    }
}
