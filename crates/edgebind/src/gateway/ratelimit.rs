//! Per-subject token buckets (docs/edge-protocol.md §3.6), one per (policy namespace, policy
//! name, issuer, subject), in a bounded map.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::policy::RateLimit;

type BucketKey = (String, String, String, String);

struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_second).min(self.capacity);
        self.at = now;
    }
}

/// One bucket a request touches: which policy, and its limit.
pub struct Touch<'a> {
    pub namespace: &'a str,
    pub policy: &'a str,
    pub limit: RateLimit,
}

/// All buckets. When the map is full, buckets that have refilled completely are dropped first
/// (a full bucket is what a new one would be, so nothing is lost); if none has, the least
/// recently used goes.
pub struct RateLimiter {
    cap: usize,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
}

impl RateLimiter {
    pub fn new(cap: usize) -> Self {
        RateLimiter {
            cap: cap.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// One bucket per `who` (a key id, an identity) under one limit.
    pub fn check_one(&self, who: &str, limit: RateLimit, now: Instant) -> Result<(), u64> {
        let t = Touch {
            namespace: "",
            policy: "",
            limit,
        };
        self.check(who, "", &[t], now)
    }

    /// Takes one token from every touched bucket if each holds one; otherwise takes none and
    /// returns `Err(retry_after_seconds)` (whole seconds, at least 1).
    pub fn check(
        &self,
        issuer: &str,
        subject: &str,
        touches: &[Touch<'_>],
        now: Instant,
    ) -> Result<(), u64> {
        if touches.is_empty() {
            return Ok(());
        }
        let mut map = match self.buckets.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let keys: Vec<BucketKey> = touches
            .iter()
            .map(|t| {
                (
                    t.namespace.to_string(),
                    t.policy.to_string(),
                    issuer.to_string(),
                    subject.to_string(),
                )
            })
            .collect();
        for (k, t) in keys.iter().zip(touches) {
            if !map.contains_key(k) && map.len() >= self.cap {
                evict(&mut map, now);
            }
            let capacity = f64::from(t.limit.burst.unwrap_or(t.limit.requests_per_minute));
            let per_second = f64::from(t.limit.requests_per_minute) / 60.0;
            let b = map.entry(k.clone()).or_insert(Bucket {
                tokens: capacity,
                capacity,
                per_second,
                at: now,
            });
            // A changed policy applies its new limit at once.
            b.capacity = capacity;
            b.per_second = per_second;
            b.refill(now);
        }
        let mut wait: f64 = 0.0;
        for k in &keys {
            if let Some(b) = map.get(k)
                && b.tokens < 1.0
            {
                wait = wait.max((1.0 - b.tokens) / b.per_second);
            }
        }
        if wait > 0.0 {
            return Err((wait.ceil() as u64).max(1));
        }
        for k in &keys {
            if let Some(b) = map.get_mut(k) {
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

fn evict(map: &mut HashMap<BucketKey, Bucket>, now: Instant) {
    map.retain(|_, b| {
        b.refill(now);
        b.tokens < b.capacity
    });
    if !map.is_empty()
        && let Some(oldest) = map.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn touch(rpm: u32, burst: Option<u32>) -> Touch<'static> {
        Touch {
            namespace: "ns",
            policy: "p",
            limit: RateLimit {
                requests_per_minute: rpm,
                burst,
            },
        }
    }

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(10);
        let t0 = Instant::now();
        let t = [touch(60, Some(2))];
        assert!(rl.check("i", "s", &t, t0).is_ok());
        assert!(rl.check("i", "s", &t, t0).is_ok());
        assert_eq!(rl.check("i", "s", &t, t0), Err(1));
        // Another subject has its own bucket.
        assert!(rl.check("i", "other", &t, t0).is_ok());
        assert!(rl.check("i", "s", &t, t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_and_no_token_taken_on_refusal() {
        let rl = RateLimiter::new(10);
        let t0 = Instant::now();
        let slow = [touch(6, Some(1))]; // one token per 10 s
        assert!(rl.check("i", "s", &slow, t0).is_ok());
        assert_eq!(
            rl.check("i", "s", &slow, t0 + Duration::from_millis(500)),
            Err(10)
        );
        let both = [
            touch(6000, Some(5)),
            Touch {
                policy: "q",
                ..touch(6, Some(1))
            },
        ];
        assert!(rl.check("j", "s", &both, t0).is_ok());
        assert!(rl.check("j", "s", &both, t0).is_err(), "q is empty");
        // p was not charged by the refusal: 4 tokens left for p alone.
        for _ in 0..4 {
            assert!(rl.check("j", "s", &both[..1], t0).is_ok());
        }
        assert!(rl.check("j", "s", &both[..1], t0).is_err());
    }

    #[test]
    fn map_stays_bounded() {
        let rl = RateLimiter::new(3);
        let t0 = Instant::now();
        for i in 0..20 {
            let _ = rl.check("i", &format!("s{i}"), &[touch(60, Some(5))], t0);
        }
        assert!(rl.buckets.lock().map(|m| m.len()).unwrap_or(99) <= 3);
    }
}
