//! The parts of the reconcile skeleton every controller shares. Each controller observes
//! (Kubernetes objects, the LINSTOR inventory or Cloudflare lists), decides in a pure function,
//! executes the writes, and reports; this module is the one place that writes status and its
//! conditions (with `observedGeneration`), publishes the Ready-transition events, makes backoff
//! keys, and turns an outcome or an error into the next requeue.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, FIELD_MANAGER};
use crate::crd::conditions::{self, Desired, READY, Reason, ReasonClass, STALLED};
use crate::crd::phase::Phase;
use crate::crd::reasons::{
    AccountReason, BackendReason, BindingReason, IssuerReason, PolicyReason, SnapshotReason,
    VolumeReason,
};
use crate::crd::{
    CloudflareAccount, CloudflareAccountStatus, EdgeBinding, EdgeBindingStatus, EdgeSnapshot,
    EdgeSnapshotStatus, EdgeVolume, EdgeVolumeStatus, IdentityIssuer, IdentityIssuerStatus,
    LinstorBackend, LinstorBackendStatus, VolumeAccessPolicy, VolumeAccessPolicyStatus,
};

/// A kind whose status edgebind writes.
pub(crate) trait Reported:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
    type Status: Serialize + PartialEq + Clone + Default + Send + Sync;
    /// The kind's condition and event reasons.
    type Reason: Reason;
    fn status(&self) -> Option<&Self::Status>;
    fn conditions(s: &Self::Status) -> &[Condition];
    fn set_conditions(s: &mut Self::Status, generation: Option<i64>, conds: Vec<Condition>);
    /// The object's API (namespaced or cluster-wide).
    fn api(&self, client: kube::Client) -> Api<Self>;
    /// Kinds with a phase derive it here from the conditions just set.
    fn set_phase(_s: &mut Self::Status, _phase: Phase) {}
}

macro_rules! reported {
    ($kind:ty, $status:ty, $reason:ty, $scope:ident) => {
        reported!(@impl $kind, $status, $reason, $scope, {});
    };
    (@impl $kind:ty, $status:ty, $reason:ty, $scope:ident, {$($extra:tt)*}) => {
        impl Reported for $kind {
            type Status = $status;
            type Reason = $reason;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn conditions(s: &$status) -> &[Condition] {
                &s.conditions
            }
            fn set_conditions(s: &mut $status, generation: Option<i64>, conds: Vec<Condition>) {
                s.observed_generation = generation;
                s.conditions = conds;
            }
            fn api(&self, client: kube::Client) -> Api<Self> {
                reported!(@api $scope, self, client)
            }
            $($extra)*
        }
    };
    (@api namespaced, $obj:expr, $client:expr) => {
        Api::namespaced($client, &$obj.namespace().unwrap_or_default())
    };
    (@api cluster, $obj:expr, $client:expr) => {
        Api::all($client)
    };
}

reported!(LinstorBackend, LinstorBackendStatus, BackendReason, cluster);
reported!(
    CloudflareAccount,
    CloudflareAccountStatus,
    AccountReason,
    cluster
);
reported!(IdentityIssuer, IdentityIssuerStatus, IssuerReason, cluster);
reported!(EdgeBinding, EdgeBindingStatus, BindingReason, namespaced);
reported!(
    VolumeAccessPolicy,
    VolumeAccessPolicyStatus,
    PolicyReason,
    namespaced
);
reported!(@impl EdgeVolume, EdgeVolumeStatus, VolumeReason, namespaced, {
    fn set_phase(s: &mut EdgeVolumeStatus, phase: Phase) {
        s.phase = Some(phase);
    }
});
reported!(@impl EdgeSnapshot, EdgeSnapshotStatus, SnapshotReason, namespaced, {
    fn set_phase(s: &mut EdgeSnapshotStatus, phase: Phase) {
        s.phase = Some(phase);
    }
});

/// The status `obj` should have: `new` with the desired conditions merged into the old ones
/// (transition times kept where the status did not change), the generation and the phase.
/// Pure, so `plan` and tests compute exactly what the controller writes.
/// The conditions a reconciler decided plus those derived from them, which status and `plan`
/// both show. `Stalled` follows Ready: True while Ready is False for a terminal reason (kstatus
/// then reads the object as Failed, so Flux shows it Stalled instead of waiting forever), else
/// False.
pub(crate) fn with_derived(desired: &[Desired]) -> Vec<Desired> {
    let mut all = desired.to_vec();
    if let Some(ready) = desired.iter().find(|d| d.type_ == READY).cloned() {
        let stalled = !ready.status && ready.class == ReasonClass::Terminal;
        all.push(Desired {
            type_: STALLED,
            status: stalled,
            // Ready's message says what is wrong; repeating it on every healthy object is noise.
            message: if stalled {
                ready.message.clone()
            } else {
                String::new()
            },
            ..ready
        });
    }
    all
}

pub(crate) fn status_of<K: Reported>(
    obj: &K,
    mut new: K::Status,
    desired: &[Desired],
) -> K::Status {
    let old = obj.status().cloned().unwrap_or_default();
    let conds = conditions::merge(
        K::conditions(&old),
        &with_derived(desired),
        obj.meta().generation,
        conditions::now(),
    );
    K::set_conditions(&mut new, obj.meta().generation, conds);
    let phase =
        Phase::of::<K::Reason>(obj.meta().deletion_timestamp.is_some(), K::conditions(&new));
    K::set_phase(&mut new, phase);
    new
}

/// Writes `status_of(obj, new, desired)` when it differs from what is there (a converged
/// resync writes nothing), and publishes an event when Ready changes status or reason, except
/// on entering a progress step (those are visible in status; events mark what a person acts on).
pub(crate) async fn report<K: Reported>(
    ctx: &Context,
    obj: &K,
    new: K::Status,
    desired: &[Desired],
) -> Result<(), kube::Error> {
    let new = status_of(obj, new, desired);
    let old = obj.status();
    if old == Some(&new) {
        return Ok(());
    }
    let was = old.and_then(|s| conditions::find(K::conditions(s), READY));
    let now = conditions::find(K::conditions(&new), READY);
    if was.map(|c| (&c.status, &c.reason)) != now.map(|c| (&c.status, &c.reason))
        && let Some(c) = now
    {
        let class = K::Reason::parse(&c.reason).map(Reason::class);
        let ready = c.status == "True";
        if ready || class != Some(ReasonClass::Progress) {
            ctx.event_raw(&obj.object_ref(&()), ready, &c.reason, &c.message)
                .await;
        }
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": new,
    });
    obj.api(ctx.client.clone())
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// The key an object's failures are counted under. The one way to make it, so the failure
/// side (`error_policy`, `retry`) and the success side (`settled`) always agree.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackoffKey(String);

impl BackoffKey {
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Self {
        BackoffKey(format!(
            "{}/{}/{}",
            K::kind(&()),
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BackoffKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// After a pass that reached what it wanted: forget the object's failures and wait for a
/// change or the kind's resync round (`controller::resync`).
pub(crate) fn settled<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K) -> Action {
    settled_until(ctx, obj, None)
}

/// [`settled`], but look again after `wake` if that comes before the next round (a change
/// still under way, a key to rotate).
pub(crate) fn settled_until<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    wake: Option<std::time::Duration>,
) -> Action {
    ctx.backoff.reset(&BackoffKey::of(obj));
    until(wake, ctx.config.resync)
}

/// Look again after `wake` if that comes before the next resync round, else at that round.
/// Every controller has a round (`controller::resync`), so no converged object holds a
/// scheduler entry of its own.
pub(crate) fn until(wake: Option<std::time::Duration>, resync: std::time::Duration) -> Action {
    match wake {
        Some(w) if w < resync => Action::requeue(w.max(std::time::Duration::from_millis(100))),
        _ => Action::await_change(),
    }
}

/// After a pass that could not make progress (reported on the object): try again with the
/// object's growing backoff.
pub(crate) fn retry<K: Resource<DynamicType = ()>>(ctx: &Context, obj: &K) -> Action {
    Action::requeue(ctx.backoff.next(&BackoffKey::of(obj)))
}

/// The one error policy: a reconcile that returned an error retries with the object's backoff.
pub(crate) fn error_policy<K, E>(obj: Arc<K>, err: &E, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
    E: std::fmt::Display,
{
    let key = BackoffKey::of(obj.as_ref());
    let delay = ctx.backoff.next(&key);
    tracing::warn!(object = %key, error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::controller::ControllerConfig;

    fn ctx() -> Arc<Context> {
        // A client that is never called: these tests exercise the backoff bookkeeping only.
        let cfg = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
        let client = kube::Client::try_from(cfg).expect("a client");
        Context::new(client, ControllerConfig::default())
    }

    fn backend() -> Arc<LinstorBackend> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "edgebind.dev/v1alpha1", "kind": "LinstorBackend",
                "metadata": {"name": "main"},
                "spec": {"urls": ["http://127.0.0.1:3370"]}
            }))
            .expect("a backend"),
        )
    }

    #[tokio::test]
    async fn a_success_after_failures_resets_the_backoff_the_failures_grew() {
        let (ctx, b) = (ctx(), backend());
        let err = "LINSTOR unreachable";
        let mut last = Duration::ZERO;
        for _ in 0..6 {
            last = action_delay(error_policy(b.clone(), &err, ctx.clone()));
        }
        assert!(last >= Duration::from_secs(32), "grew to {last:?}");
        settled(&ctx, b.as_ref());
        assert_eq!(ctx.backoff.failures(&BackoffKey::of(b.as_ref())), 0);
        let next = action_delay(error_policy(b.clone(), &err, ctx.clone()));
        assert!(
            next < Duration::from_millis(1101),
            "after a success: {next:?}"
        );
        // The same through `retry`, the path of a failure reported on the object.
        for _ in 0..4 {
            retry(&ctx, b.as_ref());
        }
        settled(&ctx, b.as_ref());
        assert_eq!(ctx.backoff.failures(&BackoffKey::of(b.as_ref())), 0);
    }

    #[test]
    fn a_deadline_before_the_next_round_requeues_and_any_other_waits_for_the_round() {
        let resync = Duration::from_secs(60);
        assert_eq!(
            action_delay(until(Some(Duration::from_secs(2)), resync)),
            Duration::from_secs(2)
        );
        // A deadline already due still leaves the API a moment.
        assert_eq!(
            action_delay(until(Some(Duration::ZERO), resync)),
            Duration::from_millis(100)
        );
        for later in [None, Some(resync), Some(Duration::from_secs(3600))] {
            assert_eq!(until(later, resync), Action::await_change(), "{later:?}");
        }
    }

    fn action_delay(a: Action) -> Duration {
        // `Action` keeps its delay private; its Debug form is stable enough for a test.
        let s = format!("{a:?}");
        let secs: f64 = s
            .split("requeue_after: Some(")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .and_then(humantime_secs)
            .unwrap_or_else(|| panic!("no delay in {s}"));
        Duration::from_secs_f64(secs)
    }

    fn humantime_secs(d: &str) -> Option<f64> {
        if let Some(ms) = d.strip_suffix("ms") {
            ms.parse::<f64>().ok().map(|v| v / 1000.0)
        } else if let Some(s) = d.strip_suffix('s') {
            s.parse().ok()
        } else {
            None
        }
    }

    #[test]
    fn status_of_sets_generation_and_the_failed_phase() {
        let mut v: EdgeVolume = serde_json::from_value(serde_json::json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
            "metadata": {"name": "v", "namespace": "a", "generation": 3},
            "spec": {"backendRef": "main", "size": "1Gi"}
        }))
        .expect("a volume");
        let failed = status_of(
            &v,
            Default::default(),
            &crate::controller::volume::status::failed(VolumeReason::Conflict, "taken", false),
        );
        assert_eq!(failed.observed_generation, Some(3));
        assert_eq!(failed.phase, Some(Phase::Failed));
        let stalled = |s: &crate::crd::volume::EdgeVolumeStatus| {
            conditions::find(&s.conditions, STALLED).map(|c| (c.status.clone(), c.reason.clone()))
        };
        // A terminal reason is also Stalled (kstatus: Failed), with the same reason.
        assert_eq!(stalled(&failed), Some(("True".into(), "Conflict".into())));
        v.status = Some(failed);
        let ready = status_of(
            &v,
            Default::default(),
            &[Desired::new(READY, true, VolumeReason::Ready, "ok")],
        );
        assert_eq!(ready.phase, Some(Phase::Ready));
        assert_eq!(stalled(&ready).map(|s| s.0), Some("False".into()));
    }
}
