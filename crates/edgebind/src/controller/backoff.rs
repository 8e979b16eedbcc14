//! Per-object exponential backoff (kube-runtime's `error_policy` is stateless).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::skeleton::BackoffKey;

pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<BackoffKey, u32>>,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait: base * 2^n, capped, with up to
    /// 10% jitter so that many objects failing together do not retry together.
    pub fn next(&self, key: &BackoffKey) -> Duration {
        let n = {
            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = f.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1).min(20)));
        let d = exp.min(self.cap);
        let jitter = d.mul_f64(rand::random::<f64>() * 0.1);
        d + jitter
    }

    /// Forgets the failures of `key` after a success.
    pub fn reset(&self, key: &BackoffKey) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    pub fn failures(&self, key: &BackoffKey) -> u32 {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> BackoffKey {
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .expect("a namespace");
        BackoffKey::of(&ns)
    }

    #[test]
    fn grows_caps_and_resets() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let (a, other) = (key("a"), key("other"));
        let d: Vec<_> = (0..6).map(|_| b.next(&a)).collect();
        assert!(d[0] >= Duration::from_secs(1) && d[0] < Duration::from_millis(1101));
        assert!(d[1] >= Duration::from_secs(2));
        assert!(d[2] >= Duration::from_secs(4));
        assert!(d[5] >= Duration::from_secs(8) && d[5] <= Duration::from_millis(8800));
        // Keys are independent.
        assert!(b.next(&other) < Duration::from_millis(1101));
        b.reset(&a);
        assert_eq!(b.failures(&a), 0);
        assert!(b.next(&a) < Duration::from_millis(1101));
    }
}
