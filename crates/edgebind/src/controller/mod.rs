//! The operator: one kube-runtime controller per kind, sharing a context.
//!
//! Each reconcile follows the same steps: read what exists (Kubernetes objects and the
//! backend's inventory), validate, compute the writes (pure, in `volume::plan`), apply them,
//! and report status. Most logic is in the pure steps and is unit-tested without I/O.

pub(crate) mod access;
pub(crate) mod account;
pub(crate) mod backends;
pub(crate) mod backoff;
pub(crate) mod binding;
pub mod inventory;
pub mod leader;
pub mod nodes;
pub mod ownership;
pub(crate) mod resync;
pub(crate) mod skeleton;
pub(crate) mod snapshot;
pub(crate) mod tunnel;
pub mod volume;
pub(crate) mod world;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Config as CtrlConfig, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::crd::{
    CloudflareAccount, EdgeBinding, EdgeSnapshot, EdgeVolume, IdentityIssuer, LinstorBackend,
    VolumeAccessPolicy,
};
use account::Accounts;
use backends::Backends;
use backoff::Backoff;
use kube::runtime::reflector::ObjectRef;
use skeleton::error_policy;
use volume::cache::CachedVolume;

/// Field manager of every write edgebind's controller makes.
pub const FIELD_MANAGER: &str = "edgebind-controller";
/// Finalizer guarding LINSTOR cleanup.
pub const FINALIZER: &str = "edgebind.dev/cleanup";

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Periodic re-check of converged objects (detects drift in LINSTOR).
    pub resync: Duration,
    /// Reconciles running at once, per kind.
    pub concurrency: u16,
    /// Requeue while LINSTOR is still applying a change.
    pub progress_interval: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Cloudflare publishing and signing key settings.
    pub cloudflare: CloudflareSettings,
    /// Where closed edge requests go as traces, when OTLP export is configured (`otlp`).
    pub traces: Option<crate::otlp::TraceSink>,
}

/// Settings of the Cloudflare side (EdgeBinding) that are not per object.
#[derive(Clone, Debug)]
pub struct CloudflareSettings {
    /// The operator's namespace: it holds the gateways' key Secret and every binding's private
    /// keys, so no signing key is ever in a tenant namespace.
    pub key_namespace: String,
    /// Name of that Secret; each key `<keyid>.pub` holds a base64url raw Ed25519 public key.
    pub gateway_keys_secret: String,
    /// Origin cloudflared forwards tunnel traffic to (the gateway Service), unless an account's
    /// `spec.tunnel.service` names another.
    pub gateway_service: Option<String>,
    /// Wait between publishing a new public key to the gateways and switching the Worker to
    /// it (until gateways report their key sets, this stands in for "every replica has it").
    pub key_propagation: Duration,
    /// How long a replaced public key stays trusted (docs/edge-protocol.md §8: at least 10 min).
    pub key_overlap: Duration,
    /// Longest a Cloudflare call waits out a rate-limit pause before the reconcile requeues.
    pub max_rate_limit_wait: Duration,
}

impl Default for CloudflareSettings {
    fn default() -> Self {
        Self {
            key_namespace: std::env::var("POD_NAMESPACE")
                .unwrap_or_else(|_| crate::defaults::NAMESPACE.into()),
            gateway_keys_secret: crate::defaults::GATEWAY_KEYS_SECRET.into(),
            gateway_service: None,
            key_propagation: Duration::from_secs(30),
            key_overlap: Duration::from_secs(600),
            max_rate_limit_wait: Duration::from_secs(10),
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(60),
            concurrency: 16,
            progress_interval: Duration::from_secs(2),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            cloudflare: CloudflareSettings::default(),
            traces: None,
        }
    }
}

impl ControllerConfig {
    /// An inventory older than this is refreshed: a bit under the resync period, so each
    /// resync round costs one refresh per backend.
    pub fn inventory_ttl(&self) -> Duration {
        self.resync.mul_f64(0.8)
    }
}

pub struct Context {
    pub client: kube::Client,
    pub config: ControllerConfig,
    pub backends: Backends,
    pub accounts: Accounts,
    pub backoff: Backoff,
    /// Edge requests being followed to their completion event (`request_trace`).
    pub requests: crate::request_trace::Tracker,
    /// `reportingInstance` of events: the pod name.
    instance: String,
}

impl Context {
    pub fn new(client: kube::Client, config: ControllerConfig) -> Arc<Self> {
        Arc::new(Self {
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| "edgebind-controller".into()),
            backoff: Backoff::new(config.backoff_base, config.backoff_cap),
            backends: Backends::default(),
            accounts: Accounts::default(),
            requests: Default::default(),
            config,
            client,
        })
    }

    /// Publishes an event (events.k8s.io/v1); failures to publish are logged, never fatal.
    ///
    /// Events are created directly rather than through kube's `Recorder`, whose series cache
    /// keeps every event for six minutes: with thousands of volumes changing at once that cache
    /// was a large share of the controller's memory. edgebind publishes on transitions, so
    /// repeated identical events (what series aggregate) are rare.
    pub async fn event(
        &self,
        obj: &ObjectReference,
        normal: bool,
        reason: impl crate::crd::conditions::Reason,
        note: &str,
    ) {
        self.event_raw(obj, normal, reason.as_str(), note).await
    }

    /// Follows the edge request behind an object through one reconcile pass (`request_trace`):
    /// when it closes, one event (`completed` or `failed`) states its stage timings, the
    /// edge-to-done latency is observed, and the trace is queued for export when configured.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn follow_request(
        &self,
        obj: &ObjectReference,
        stamp: &crate::request_trace::Stamp,
        pass: (i64, i64),
        wrote: bool,
        outcome: crate::request_trace::Outcome,
        completed: impl crate::crd::conditions::Reason,
        failed: impl crate::crd::conditions::Reason,
    ) {
        let key = format!(
            "{}/{}/{}",
            obj.kind.as_deref().unwrap_or_default(),
            obj.namespace.as_deref().unwrap_or_default(),
            obj.name.as_deref().unwrap_or_default()
        );
        let Some(c) = self.requests.observe(&key, stamp, pass, wrote, outcome) else {
            return;
        };
        tracing::info!(object = %key, request_id = %stamp.id, note = %c.note, "edge request closed");
        if let Some(ms) = c.total_ms {
            crate::metrics::get()
                .edge_request_duration
                .get_or_create(&crate::metrics::OutcomeLabel {
                    outcome: if c.ready { "ready" } else { "failed" },
                })
                .observe(ms as f64 / 1000.0);
        }
        if let Some(sink) = &self.config.traces {
            let object = crate::otlp::trace::Object {
                kind: obj.kind.as_deref().unwrap_or_default(),
                namespace: obj.namespace.as_deref().unwrap_or_default(),
                name: obj.name.as_deref().unwrap_or_default(),
            };
            sink.submit(crate::otlp::trace::spans(&object, &c));
        }
        if c.ready {
            self.event(obj, true, completed, &c.note).await;
        } else {
            self.event(obj, false, failed, &c.note).await;
        }
    }

    /// [`Self::event`] with a reason read back from a condition written by a typed reason.
    pub(crate) async fn event_raw(
        &self,
        obj: &ObjectReference,
        normal: bool,
        reason: &str,
        note: &str,
    ) {
        use k8s_openapi::api::events::v1::Event;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let ns = obj.namespace.clone().unwrap_or_else(|| "default".into());
        let name = format!(
            "{}.{:016x}",
            obj.name.as_deref().unwrap_or("edgebind"),
            rand::random::<u64>()
        );
        let ev = Event {
            metadata: kube::api::ObjectMeta {
                name: Some(name),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(jiff::Timestamp::now())),
            type_: Some(if normal { "Normal" } else { "Warning" }.into()),
            reason: Some(reason.into()),
            note: Some(note.chars().take(1000).collect()),
            action: Some("Reconcile".into()),
            reporting_controller: Some("edgebind-controller".into()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(obj.clone()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&Default::default(), &ev).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
    }
}

async fn record<T, E: std::fmt::Display>(kind: &'static str, res: Result<T, E>) {
    let result = if res.is_ok() { "ok" } else { "error" };
    crate::metrics::get()
        .reconciles
        .get_or_create(&crate::metrics::ReconcileLabels {
            kind: kind.into(),
            result: result.into(),
        })
        .inc();
    if let Err(e) = res {
        tracing::debug!(kind, error = %e, "reconcile error");
    }
}

async fn check_crds(client: &kube::Client) -> anyhow::Result<()> {
    check_kind::<LinstorBackend>(client).await?;
    check_kind::<EdgeVolume>(client).await?;
    check_kind::<EdgeSnapshot>(client).await?;
    check_kind::<CloudflareAccount>(client).await?;
    check_kind::<EdgeBinding>(client).await?;
    check_kind::<IdentityIssuer>(client).await?;
    check_kind::<VolumeAccessPolicy>(client).await
}

/// Lists one object of `K` cluster-wide: a missing CRD and missing RBAC get different advice.
async fn check_kind<K>(client: &kube::Client) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    match Api::<K>::all(client.clone())
        .list(&ListParams::default().limit(1))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 403 => anyhow::bail!(
            "the controller may not list {kind} ({}); apply the chart's RBAC (or \
             deploy/kustomize) for this service account",
            e.message
        ),
        Err(kube::Error::Api(e)) if e.code == 404 => anyhow::bail!(
            "the {kind} CRD is not installed; install the CRDs first: `edgebind crds | kubectl \
             apply -f -` (or the Helm chart)"
        ),
        Err(e) => anyhow::bail!("cannot list {kind}: {e}"),
    }
}

/// How many objects of a kind exist now (one cheap paged list call).
async fn initial_count<K>(api: &Api<K>) -> anyhow::Result<usize>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let l = api.list_metadata(&ListParams::default().limit(1)).await?;
    Ok(l.items.len() + l.metadata.remaining_item_count.unwrap_or(0).max(0) as usize)
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the watch caches drop from each object: `managedFields` and kubectl's last-applied
/// copy (never read, never written back: every write is a patch; on a real API server they can
/// be the largest part of an object), and spare list room.
fn trim<K: Resource + crate::memory::Compact>(o: &mut K) {
    // `None`, not an emptied list: that would keep the entries' room allocated.
    o.meta_mut().managed_fields = None;
    if let Some(a) = o.meta_mut().annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    if let Some(f) = o.meta_mut().finalizers.as_mut() {
        f.shrink_to_fit();
    }
    o.compact();
}

/// Watches `api` into a cache of trimmed objects ([`trim`]) and yields changed objects.
fn trimmed_watch<K>(
    api: Api<K>,
    wc: watcher::Config,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    Store<K>,
)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    K: serde::de::DeserializeOwned + crate::memory::Compact,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, wc)
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .applied_objects();
    (events, store)
}

/// How often the volume gauges are recounted.
const VOLUME_COUNT_INTERVAL: Duration = Duration::from_secs(10);

/// Sets `edgebind_volumes` and `edgebind_volumes_degraded` from the cached EdgeVolumes, and
/// lets the cache forget status strings no volume holds any more.
fn count_volumes(store: &Store<CachedVolume>, backends: &Backends) {
    let mut counts = crate::metrics::VolumeCounts::default();
    let mut per_backend: std::collections::HashMap<String, u32> = Default::default();
    for v in store.state() {
        let conds = v.conditions();
        counts.add(v.meta().deletion_timestamp.is_some(), &conds);
        if conds
            .iter()
            .any(|c| c.type_ == crate::crd::conditions::DEGRADED && c.status == "True")
        {
            *per_backend.entry(v.backend_ref().to_string()).or_default() += 1;
        }
    }
    crate::metrics::volumes(&counts);
    backends.set_degraded(per_backend);
    volume::cache::purge();
}

/// What a binding's reconcile depends on in its own object: spec (generation), deletion,
/// finalizers and the rotation request; not its status, which the reconcile itself writes.
fn binding_trigger(b: &EdgeBinding) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.metadata.generation.hash(&mut h);
    b.metadata.deletion_timestamp.is_some().hash(&mut h);
    b.metadata.finalizers.hash(&mut h);
    b.annotations()
        .get(crate::crd::binding::ROTATE_KEY_ANNOTATION)
        .hash(&mut h);
    Some(h.finish())
}

/// Readiness the admin server reports.
#[derive(Clone, Default)]
pub struct Readiness(Arc<std::sync::atomic::AtomicBool>);

impl Readiness {
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed)
    }
    pub fn get(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Every controller alike: settled objects wait for a change and one resync round looks at
/// each once per period (`resync`: no scheduler entry per converged object), the concurrency,
/// and the graceful shutdown.
fn configured<K, S>(c: Controller<K>, config: &ControllerConfig, shutdown: &S) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
    S: std::future::Future<Output = ()> + Clone + Send + Sync + 'static,
{
    resync::with_rounds(c, config.resync)
        .with_config(CtrlConfig::default().concurrency(config.concurrency))
        .graceful_shutdown_on(shutdown.clone())
}

/// Runs the seven controllers until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    client: kube::Client,
    config: ControllerConfig,
    ready: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    check_crds(&client).await?;
    binding::signing::backfill_binding_entries(
        &client,
        &config.cloudflare.key_namespace,
        &config.cloudflare.gateway_keys_secret,
    )
    .await;
    let ctx = Context::new(client.clone(), config.clone());
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    // Watches time out below common load-balancer idle limits, so a silently dropped
    // connection is noticed within minutes.
    let wc = || watcher::Config::default().timeout(240);

    let backends = configured(
        Controller::new(Api::<LinstorBackend>::all(client.clone()), wc()),
        &config,
        &shutdown,
    );
    let (volume_events, volume_store) =
        trimmed_watch(Api::<CachedVolume>::all(client.clone()), wc());
    let volumes = configured(
        Controller::for_stream(volume_events, volume_store),
        &config,
        &shutdown,
    );
    let snapshots = configured(
        Controller::new(Api::<EdgeSnapshot>::all(client.clone()), wc()),
        &config,
        &shutdown,
    );
    let accounts = configured(
        Controller::new(Api::<CloudflareAccount>::all(client.clone()), wc()),
        &config,
        &shutdown,
    );
    // A binding's status writes do not trigger it again: each would cost Cloudflare reads.
    let (binding_events, binding_store) =
        trimmed_watch(Api::<EdgeBinding>::all(client.clone()), wc());
    let binding_events = binding_events.predicate_filter(binding_trigger, Default::default());
    let bindings = configured(
        Controller::for_stream(binding_events, binding_store),
        &config,
        &shutdown,
    );
    let issuers = configured(
        Controller::new(Api::<IdentityIssuer>::all(client.clone()), wc()),
        &config,
        &shutdown,
    );
    let policies = configured(
        Controller::new(Api::<VolumeAccessPolicy>::all(client.clone()), wc()),
        &config,
        &shutdown,
    );
    // A policy's bundle revision covers its whole namespace, and its Ready depends on the
    // issuers: any policy change there, or any issuer change, re-reconciles those policies.
    let (same_ns, all_policies) = (policies.store(), policies.store());
    let policies = policies
        .watches(
            Api::<VolumeAccessPolicy>::all(client.clone()),
            wc(),
            move |p| {
                let ns = p.namespace();
                same_ns
                    .state()
                    .into_iter()
                    .filter(|q| q.namespace() == ns && q.name_any() != p.name_any())
                    .map(|q| ObjectRef::from_obj(q.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<IdentityIssuer>::all(client.clone()),
            wc(),
            move |_| {
                all_policies
                    .state()
                    .into_iter()
                    .map(|q| ObjectRef::from_obj(q.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    // A policy or issuer change recompiles the bundle of the bindings it feeds, at once rather
    // than at the next resync.
    let (for_policies, for_issuers) = (bindings.store(), bindings.store());
    // A LinstorBackend created or deleted changes whether the bindings naming it in their
    // volume defaults can be published.
    let for_backends = bindings.store();
    let bindings = bindings
        .watches(
            Api::<LinstorBackend>::all(client.clone()),
            wc(),
            move |lb| {
                let name = lb.name_any();
                for_backends
                    .state()
                    .into_iter()
                    .filter(|b| {
                        b.spec
                            .volume_defaults
                            .as_ref()
                            .is_some_and(|d| d.backend_ref == name)
                    })
                    .map(|b| ObjectRef::from_obj(b.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<VolumeAccessPolicy>::all(client.clone()),
            wc(),
            move |p| {
                let ns = p.namespace();
                for_policies
                    .state()
                    .into_iter()
                    .filter(|b| b.namespace() == ns)
                    .map(|b| ObjectRef::from_obj(b.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            Api::<IdentityIssuer>::all(client.clone()),
            wc(),
            move |_| {
                for_issuers
                    .state()
                    .into_iter()
                    .map(|b| ObjectRef::from_obj(b.as_ref()))
                    .collect::<Vec<_>>()
            },
        );
    // A tunnel's ingress lists its bindings' hostnames, and a binding's DNS record needs its
    // account's tunnel: each side looks again when the other changes (tunnel users only).
    let accounts = accounts.watches(Api::<EdgeBinding>::all(client.clone()), wc(), |b| {
        (!b.spec.tunnel_hostname.is_empty())
            .then(|| ObjectRef::<CloudflareAccount>::new(&b.spec.account_ref))
    });
    let for_accounts = bindings.store();
    let bindings = bindings.watches(
        Api::<CloudflareAccount>::all(client.clone()),
        wc(),
        move |a| {
            let name = a.name_any();
            for_accounts
                .state()
                .into_iter()
                // `workersVpc` bindings wait for the account's VPC service id in its status.
                .filter(|b| {
                    b.spec.account_ref == name
                        && (!b.spec.tunnel_hostname.is_empty() || b.spec.workers_vpc)
                })
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    // Ready once every cache holds at least the objects that existed at start. (Awaiting
    // `Store::wait_until_ready` here would race the controller's own wait on the same one-shot
    // signal, which wakes only one waiter.)
    let (bs, vs, ss) = (backends.store(), volumes.store(), snapshots.store());
    let (acs, ebs) = (accounts.store(), bindings.store());
    let (iis, vaps) = (issuers.store(), policies.store());
    let want = (
        initial_count(&Api::<LinstorBackend>::all(client.clone())).await?,
        initial_count(&Api::<EdgeVolume>::all(client.clone())).await?,
        initial_count(&Api::<EdgeSnapshot>::all(client.clone())).await?,
        initial_count(&Api::<CloudflareAccount>::all(client.clone())).await?,
        initial_count(&Api::<EdgeBinding>::all(client.clone())).await?,
        initial_count(&Api::<IdentityIssuer>::all(client.clone())).await?,
        initial_count(&Api::<VolumeAccessPolicy>::all(client.clone())).await?,
    );
    tokio::spawn(async move {
        loop {
            if bs.state().len() >= want.0
                && vs.state().len() >= want.1
                && ss.state().len() >= want.2
                && acs.state().len() >= want.3
                && ebs.state().len() >= want.4
                && iis.state().len() >= want.5
                && vaps.state().len() >= want.6
            {
                ready.set();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // The volume gauges, recounted from the cache: counts by phase and Degraded reason, never
    // a series per volume. Stops with the controllers.
    let counted = volumes.store();
    let counting_ctx = ctx.clone();
    let counting = {
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(VOLUME_COUNT_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => count_volumes(&counted, &counting_ctx.backends),
                    _ = shutdown.clone() => return,
                }
            }
        }
    };
    let b = backends
        .run(backends::reconcile, error_policy, ctx.clone())
        .for_each(|r| record("LinstorBackend", r));
    let v = volumes
        .run(
            |cached, ctx| async move {
                match cached.expand() {
                    Ok(ev) => volume::reconcile(Arc::new(ev), ctx).await,
                    Err(e) => Err(volume::Error::Cache(e)),
                }
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|r| record("EdgeVolume", r));
    let s = snapshots
        .run(snapshot::reconcile, error_policy, ctx.clone())
        .for_each(|r| record("EdgeSnapshot", r));
    let a = accounts
        .run(account::reconcile, error_policy, ctx.clone())
        .for_each(|r| record("CloudflareAccount", r));
    let e = bindings
        .run(binding::reconcile, error_policy, ctx.clone())
        .for_each(|r| record("EdgeBinding", r));
    let i = issuers
        .run(access::reconcile_issuer, error_policy, ctx.clone())
        .for_each(|r| record("IdentityIssuer", r));
    let p = policies
        .run(access::reconcile_policy, error_policy, ctx.clone())
        .for_each(|r| record("VolumeAccessPolicy", r));
    tokio::join!(b, v, s, a, e, i, p, counting);
    Ok(())
}

/// Runs the controllers only while this replica holds the Lease. Returns when `shutdown`
/// resolves (after releasing the Lease) or with an error when leadership is lost, so the process
/// restarts with clean caches rather than racing the new leader.
pub async fn run_with_leader_election(
    client: kube::Client,
    config: ControllerConfig,
    ready: Readiness,
    lease: leader::LeaseConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> anyhow::Result<()> {
    use leader::Leadership;
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let (elector, rx) = leader::Elector::new(client.clone(), lease);
    // The campaign runs in this future (not a detached task), so it ends with it.
    let campaign = elector.run(shutdown.clone());
    let work = async {
        let mut rx = rx.clone();
        // Leadership known (either way) counts as ready: a standby is healthy and waiting.
        loop {
            match *rx.borrow() {
                Leadership::Leader => break,
                Leadership::Standby => ready.set(),
                Leadership::Unknown => {}
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return Ok(()) },
                _ = shutdown.clone() => return Ok(()),
            }
        }
        tracing::info!("leading: starting controllers");
        let mut lost_rx = rx.clone();
        let lost = async move {
            while lost_rx.changed().await.is_ok() {
                if *lost_rx.borrow() != Leadership::Leader {
                    return;
                }
            }
        };
        let stop = futures::future::select(Box::pin(shutdown.clone()), Box::pin(lost));
        run(client, config, ready.clone(), async move {
            stop.await;
        })
        .await?;
        let shutting_down = futures::FutureExt::now_or_never(shutdown.clone()).is_some();
        if !shutting_down {
            anyhow::bail!("lost leadership of the lease; exiting so a restart starts clean");
        }
        Ok(())
    };
    tokio::pin!(campaign);
    tokio::pin!(work);
    tokio::select! {
        res = &mut work => {
            // On shutdown, let the campaign release the lease before returning.
            if res.is_ok() {
                campaign.await;
            }
            res
        }
        _ = &mut campaign => work.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_caches_drop_managed_fields_and_the_last_applied_copy_only() {
        let mut b: EdgeBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
            "metadata": {"name": "edge", "namespace": "a",
                "annotations": {LAST_APPLIED: "{\"kind\":\"EdgeBinding\"}", "team": "a"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"accountRef": "cf", "zoneId": "z", "routes": ["a.example.com/*"],
                     "scriptName": "w", "gatewayUrl": "https://gw.example.com"}
        }))
        .expect("a binding");
        trim(&mut b);
        assert_eq!(b.metadata.managed_fields, None);
        assert_eq!(
            b.annotations().keys().collect::<Vec<_>>(),
            vec!["team"],
            "other annotations stay"
        );
    }

    #[test]
    fn a_binding_is_triggered_by_its_spec_deletion_finalizers_and_rotation_request_not_its_status()
    {
        let mut b: EdgeBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
            "metadata": {"name": "edge", "namespace": "a", "generation": 1},
            "spec": {"accountRef": "cf", "zoneId": "z", "routes": ["a.example.com/*"],
                     "scriptName": "w", "gatewayUrl": "https://gw.example.com"}
        }))
        .expect("a binding");
        let base = binding_trigger(&b);
        b.status = Some(Default::default());
        assert_eq!(binding_trigger(&b), base, "a status write");
        b.metadata.resource_version = Some("9".into());
        assert_eq!(binding_trigger(&b), base, "a new resource version alone");
        for change in [
            |b: &mut EdgeBinding| b.metadata.generation = Some(2),
            |b: &mut EdgeBinding| b.metadata.finalizers = Some(vec![FINALIZER.into()]),
            |b: &mut EdgeBinding| {
                b.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::UNIX_EPOCH,
                    ))
            },
            |b: &mut EdgeBinding| {
                b.annotations_mut().insert(
                    crate::crd::binding::ROTATE_KEY_ANNOTATION.into(),
                    "r1".into(),
                );
            },
        ] {
            let mut c = b.clone();
            change(&mut c);
            assert_ne!(binding_trigger(&c), base);
        }
    }
}
