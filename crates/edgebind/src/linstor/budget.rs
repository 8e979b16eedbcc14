//! A request budget shared by every call to one backend: a token bucket (rate) and a semaphore
//! (requests in flight). All reconciles of a backend draw from the same budget, so a bulk create
//! saturates the budget rather than the LINSTOR controller.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::crd::backend::Budget as BudgetSpec;

pub struct Budget {
    /// The metrics label of the system the calls go to (`linstor`, `cloudflare`).
    system: &'static str,
    limiter: DefaultDirectRateLimiter,
    in_flight: Arc<Semaphore>,
    spec: BudgetSpec,
    granted: AtomicU64,
}

impl Budget {
    pub fn new(system: &'static str, spec: &BudgetSpec) -> Self {
        let rps = NonZeroU32::new(spec.requests_per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(spec.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            system,
            limiter: RateLimiter::direct(Quota::per_second(rps).allow_burst(burst)),
            in_flight: Arc::new(Semaphore::new(spec.max_in_flight.max(1) as usize)),
            spec: spec.clone(),
            granted: AtomicU64::new(0),
        }
    }

    /// Waits for a token and an in-flight slot; the permit frees the slot when dropped. A call
    /// that finds either exhausted is counted as a wait (metrics: `edgebind_budget_waits_total`).
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let started = Instant::now();
        let mut waited = false;
        let permit = match self.in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return None,
            Err(TryAcquireError::NoPermits) => {
                waited = true;
                self.in_flight.clone().acquire_owned().await.ok()?
            }
        };
        // `check` takes a token when there is one, as `until_ready` would.
        if self.limiter.check().is_err() {
            waited = true;
            self.limiter.until_ready().await;
        }
        self.granted.fetch_add(1, Ordering::Relaxed);
        crate::metrics::budget_grant(self.system, waited.then(|| started.elapsed()));
        Some(permit)
    }

    pub fn spec(&self) -> &BudgetSpec {
        &self.spec
    }

    /// Requests granted so far (for the budget-use figure of the benchmark and for metrics).
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn rate_is_enforced() {
        let b = Budget::new(
            "unit-rate",
            &BudgetSpec {
                requests_per_second: 20,
                burst: 1,
                max_in_flight: 4,
            },
        );
        let start = Instant::now();
        for _ in 0..6 {
            drop(b.acquire().await);
        }
        // 1 immediate + 5 at 50 ms intervals: at least 200 ms must pass (an upper bound is not
        // checked: shared machines are noisy).
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(b.granted(), 6);
    }

    /// The budget's promise: over any T seconds at most burst + rate x T requests. Both
    /// parts count: the bucket starts full, so a burst after idle comes on top of the rate.
    #[tokio::test]
    async fn grants_never_exceed_burst_plus_rate_times_time() {
        let b = Budget::new(
            "unit-promise",
            &BudgetSpec {
                requests_per_second: 50,
                burst: 10,
                max_in_flight: 8,
            },
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(600) {
            drop(b.acquire().await);
            let allowance = 10.0 + 50.0 * start.elapsed().as_secs_f64();
            assert!(
                b.granted() as f64 <= allowance + 1e-9,
                "{} granted after {:?}",
                b.granted(),
                start.elapsed()
            );
        }
        // Saturated: it used the burst and the rate, nothing more and not much less.
        assert!(b.granted() >= 10 + 20, "{}", b.granted());
    }

    #[tokio::test]
    async fn in_flight_is_capped() {
        let b = Budget::new(
            "unit-in-flight",
            &BudgetSpec {
                requests_per_second: 1000,
                burst: 100,
                max_in_flight: 2,
            },
        );
        let p1 = b.acquire().await;
        let p2 = b.acquire().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), b.acquire())
                .await
                .is_err()
        );
        drop(p1);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), b.acquire())
                .await
                .is_ok()
        );
        drop(p2);
    }

    fn counts(system: &str) -> (u64, u64, f64) {
        let m = crate::metrics::get();
        let l = crate::metrics::SystemLabel {
            system: system.into(),
        };
        (
            m.budget_requests.get_or_create(&l).get(),
            m.budget_waits.get_or_create(&l).get(),
            m.budget_wait_seconds.get_or_create(&l).get(),
        )
    }

    #[tokio::test]
    async fn a_call_that_finds_no_token_is_counted_as_a_wait() {
        let b = Budget::new(
            "unit-no-token",
            &BudgetSpec {
                requests_per_second: 1,
                burst: 1,
                max_in_flight: 4,
            },
        );
        drop(b.acquire().await);
        assert_eq!(
            counts("unit-no-token"),
            (1, 0, 0.0),
            "the burst token: no wait"
        );
        drop(b.acquire().await);
        let (requests, waits, seconds) = counts("unit-no-token");
        assert_eq!((requests, waits), (2, 1), "the bucket was empty");
        // The next token comes 1 s after the first (less the time between the two calls).
        assert!((0.5..30.0).contains(&seconds), "{seconds}");
    }

    #[tokio::test]
    async fn a_call_that_finds_every_slot_taken_is_counted_as_a_wait() {
        let b = Arc::new(Budget::new(
            "unit-no-slot",
            &BudgetSpec {
                requests_per_second: 1000,
                burst: 100,
                max_in_flight: 1,
            },
        ));
        let held = b.acquire().await;
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { drop(b.acquire().await) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(held);
        waiter.await.expect("the waiting call");
        let (requests, waits, seconds) = counts("unit-no-slot");
        assert_eq!((requests, waits), (2, 1));
        assert!(seconds >= 0.04, "{seconds}");
    }
}
