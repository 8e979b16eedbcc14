//! Resync rounds: one timer per controller instead of one scheduler entry per object.
//!
//! A converged volume used to requeue itself after the resync period, so kube-runtime's
//! scheduler held an entry for every object at all times (a hash-map slot and a delay-queue slot,
//! each with the object reference's four strings: about 0.5 KB per volume at 10,000 volumes).
//! Instead, converged objects wait for a change, and a round walks the cache once per period and
//! triggers every object, paced over the first half of the period, so the scheduler only ever
//! holds the few objects of the current step. Objects still progressing or failing keep their
//! own (short) requeue and backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use serde::de::DeserializeOwned;

/// How often a round releases its next step of objects.
const STEP: Duration = Duration::from_millis(100);

/// How many objects each step of a round over `n` objects releases: the round ends within half
/// the `period`, so the next one never starts while one is still under way.
fn per_step(n: usize, period: Duration) -> usize {
    let steps = (period.as_secs_f64() / 2.0 / STEP.as_secs_f64())
        .floor()
        .max(1.0);
    ((n as f64 / steps).ceil() as usize).max(1)
}

struct Round<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    period: Duration,
    /// The objects of the round under way, not yet released.
    left: VecDeque<Arc<K>>,
    per_step: usize,
    /// When the next round starts.
    next: tokio::time::Instant,
}

/// `c` with a resync round of `period` (see the module's comment).
pub(crate) fn with_rounds<K>(c: Controller<K>, period: Duration) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let store = c.store();
    c.reconcile_on(rounds(store, period))
}

/// Every object in `store` once per `period`, paced. The first round starts one period after
/// the call (the watch's initial list has just triggered everything).
pub(crate) fn rounds<K>(store: Store<K>, period: Duration) -> impl Stream<Item = ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let period = period.max(STEP);
    let start = Round {
        store,
        period,
        left: VecDeque::new(),
        per_step: 1,
        next: tokio::time::Instant::now() + period,
    };
    futures::stream::unfold(start, |mut r| async move {
        if r.left.is_empty() {
            // Between rounds: wait out the rest of the period (a round takes at most half).
            tokio::time::sleep_until(r.next).await;
            r.next = tokio::time::Instant::now() + r.period;
            r.left = r.store.state().into();
            r.per_step = per_step(r.left.len(), r.period);
        } else {
            tokio::time::sleep(STEP).await;
        }
        let take = r.per_step.min(r.left.len());
        let step: Vec<ObjectRef<K>> = r
            .left
            .drain(..take)
            .map(|o| ObjectRef::from_obj(o.as_ref()))
            .collect();
        if r.left.is_empty() {
            // Release the round's list (its capacity is as large as the cache).
            r.left = VecDeque::new();
        }
        Some((futures::stream::iter(step), r))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    #[test]
    fn a_round_ends_within_half_the_period() {
        let p = Duration::from_secs(60);
        // 300 steps of 100 ms in 30 s.
        assert_eq!(per_step(10_000, p), 34);
        assert_eq!(per_step(300, p), 1);
        assert_eq!(per_step(0, p), 1);
        assert!(per_step(10_000, p) * 300 >= 10_000);
        // A period shorter than two steps still releases everything in one step.
        assert_eq!(per_step(7, Duration::from_millis(50)), 7);
    }

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    // Real time (no paused clock: tokio's test-util feature in the dev-dependencies would make
    // `cargo bench` and the shipped build rebuild each other's dependencies). Only lower bounds
    // are asserted, which a slow machine cannot break: a sleep never ends early.
    #[tokio::test]
    async fn every_cached_object_is_triggered_once_per_round_and_paced() {
        let mut w: Writer<ConfigMap> = Writer::default();
        let store = w.as_reader();
        w.apply_watcher_event(&Event::Init);
        for i in 0..50 {
            w.apply_watcher_event(&Event::InitApply(cm(&format!("c{i}"))));
        }
        w.apply_watcher_event(&Event::InitDone);
        // 10 steps of 5 objects in the first half of each period.
        let period = Duration::from_secs(2);
        let t0 = std::time::Instant::now();
        let mut s = Box::pin(rounds(store, period));
        let mut first = Vec::new();
        for _ in 0..50 {
            let o = s.next().await.expect("a trigger");
            first.push((o.name.clone(), t0.elapsed()));
        }
        assert!(
            first.iter().all(|(_, t)| *t >= period),
            "nothing before one period"
        );
        let mut names: Vec<_> = first.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 50, "each object once");
        assert!(
            first[49].1 - first[0].1 >= STEP * 9,
            "paced over ten steps, not all at once: {:?}",
            first[49].1 - first[0].1
        );
        // The next round: the same objects again, one period after the first began.
        let o = s.next().await.expect("the next round");
        assert!(t0.elapsed() >= period * 2);
        assert!(names.contains(&o.name));
    }
}
