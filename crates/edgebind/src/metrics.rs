//! Prometheus metrics. Labels never carry object names (unbounded cardinality).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::crd::conditions::{DEGRADED, Reason, find};
use crate::crd::phase::Phase;
use crate::crd::reasons::VolumeReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ExternalLabels {
    pub system: String,
    pub method: String,
    pub operation: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ExternalLatencyLabels {
    pub system: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReconcileLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: String,
}

/// A LINSTOR node state: the flag that takes the node out of service, else its connection status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct NodeStateLabel {
    pub state: String,
}

/// `ready` or `failed`: how an edge request ended (`request_trace`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: &'static str,
}

/// What became of spans handed to the OTLP exporter: `exported`, `dropped` (queue full),
/// `failed` (the receiver refused them or retries ran out).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    pub result: &'static str,
}

/// `linstor` (the LinstorBackends' budgets) or `cloudflare` (the CloudflareAccounts').
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SystemLabel {
    pub system: String,
}

pub(crate) struct Metrics {
    pub external_requests: Family<ExternalLabels, Counter>,
    pub external_latency: Family<ExternalLatencyLabels, Histogram>,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<KindLabel, Histogram>,
    pub reconciles_in_progress: Family<KindLabel, Gauge>,
    pub linstor_writes: Counter,
    /// 1 while this replica reconciles: it holds the Lease, or runs without leader election.
    pub leader: Gauge,
    /// The earliest expiry among the accounts' Cloudflare API tokens (Unix seconds), 0 when none
    /// expires; per account in `token_expiries`, so no object name becomes a label.
    pub token_expiry: Gauge,
    token_expiries: Mutex<BTreeMap<String, i64>>,
    /// EdgeVolumes by phase, counted from the controller's cache (see [`volumes`]).
    pub volumes: Family<PhaseLabel, Gauge>,
    /// EdgeVolumes whose `Degraded` condition is True, by its reason.
    pub volumes_degraded: Family<ReasonLabel, Gauge>,
    /// LINSTOR nodes of all backends by state (see [`linstor_nodes`]).
    pub linstor_nodes: Family<NodeStateLabel, Gauge>,
    /// Calls the request budgets let through, summed over the backends or accounts of a system.
    pub budget_requests: Family<SystemLabel, Counter>,
    /// Of those, the calls that found the budget exhausted (no token, or every in-flight slot
    /// taken) and had to wait.
    pub budget_waits: Family<SystemLabel, Counter>,
    /// Time those calls waited.
    pub budget_wait_seconds: Family<SystemLabel, Counter<f64, AtomicU64>>,
    /// From the edge receiving a request to its volume being Ready (or failed), by outcome.
    pub edge_request_duration: Family<OutcomeLabel, Histogram>,
    /// Spans of the optional trace export (`otlp`), by result.
    pub otlp_spans: Family<ResultLabel, Counter>,
}

fn latency_hist() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

static METRICS: OnceLock<(Metrics, Registry)> = OnceLock::new();

fn init() -> (Metrics, Registry) {
    let m = Metrics {
        external_requests: Family::default(),
        external_latency: Family::new_with_constructor(latency_hist),
        reconciles: Family::default(),
        reconcile_duration: Family::new_with_constructor(latency_hist),
        reconciles_in_progress: Family::default(),
        linstor_writes: Counter::default(),
        leader: Gauge::default(),
        token_expiry: Gauge::default(),
        token_expiries: Mutex::new(BTreeMap::new()),
        volumes: Family::default(),
        volumes_degraded: Family::default(),
        linstor_nodes: Family::default(),
        budget_requests: Family::default(),
        budget_waits: Family::default(),
        budget_wait_seconds: Family::default(),
        // 10 ms to about 5.5 minutes.
        edge_request_duration: Family::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 16))
        }),
        otlp_spans: Family::default(),
    };
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION").into(),
        })
        .set(1);
    let mut r = Registry::with_prefix("edgebind");
    r.register(
        "external_requests",
        "Requests to external APIs by system, method, operation and status",
        m.external_requests.clone(),
    );
    r.register(
        "external_request_duration_seconds",
        "Latency of external API requests",
        m.external_latency.clone(),
    );
    r.register(
        "reconciles",
        "Reconciles by kind and result",
        m.reconciles.clone(),
    );
    r.register(
        "reconcile_duration_seconds",
        "Duration of reconciles by kind",
        m.reconcile_duration.clone(),
    );
    r.register(
        "reconciles_in_progress",
        "Reconciles running now, by kind (kube-runtime does not expose its queue of waiting objects)",
        m.reconciles_in_progress.clone(),
    );
    r.register(
        "linstor_writes",
        "Write requests sent to LINSTOR",
        m.linstor_writes.clone(),
    );
    r.register(
        "leader",
        "1 while this controller replica reconciles (holds the Lease, or runs without leader election), else 0",
        m.leader.clone(),
    );
    r.register(
        "build_info",
        "The running edgebind's version, always 1",
        build,
    );
    r.register(
        "cloudflare_token_expiry_timestamp_seconds",
        "Earliest expiry among the CloudflareAccounts' API tokens, Unix seconds; 0 when none expires",
        m.token_expiry.clone(),
    );
    r.register(
        "volumes",
        "EdgeVolumes by phase (Pending, Ready, Failed, Deleting)",
        m.volumes.clone(),
    );
    r.register(
        "volumes_degraded",
        "EdgeVolumes whose Degraded condition is True, by reason",
        m.volumes_degraded.clone(),
    );
    r.register(
        "linstor_nodes",
        "LINSTOR nodes of all LinstorBackends by state (ONLINE, OFFLINE, EVACUATE, EVICTED, ...), read at each backend check",
        m.linstor_nodes.clone(),
    );
    r.register(
        "budget_requests",
        "Calls let through by the request budgets, by system (linstor: LinstorBackends, cloudflare: CloudflareAccounts)",
        m.budget_requests.clone(),
    );
    r.register(
        "budget_waits",
        "Calls that found their request budget exhausted (no token or no free in-flight slot) and waited, by system",
        m.budget_waits.clone(),
    );
    r.register(
        "budget_wait_seconds",
        "Time calls waited for an exhausted request budget, by system",
        m.budget_wait_seconds.clone(),
    );
    r.register(
        "edge_request_duration_seconds",
        "From the edge Worker receiving a request to the volume it created or changed being Ready (or failed), by outcome",
        m.edge_request_duration.clone(),
    );
    r.register(
        "otlp_spans",
        "Spans of the optional OTLP trace export by result: exported, dropped (queue full), failed (refused or retries ran out)",
        m.otlp_spans.clone(),
    );
    (m, r)
}

pub(crate) fn get() -> &'static Metrics {
    &METRICS.get_or_init(init).0
}

/// Prometheus text exposition of every metric.
pub(crate) fn encode() -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.get_or_init(init).1);
    out
}

pub(crate) fn external_request(
    system: &str,
    method: &str,
    operation: &str,
    status: &str,
    took: Duration,
) {
    let m = get();
    m.external_requests
        .get_or_create(&ExternalLabels {
            system: system.into(),
            method: method.into(),
            operation: operation.into(),
            status: status.into(),
        })
        .inc();
    m.external_latency
        .get_or_create(&ExternalLatencyLabels {
            system: system.into(),
            operation: operation.into(),
        })
        .observe(took.as_secs_f64());
    if system == "linstor" && method != "GET" {
        m.linstor_writes.inc();
    }
}

/// Replaces object names in a LINSTOR or Cloudflare path with placeholders, so the path is a
/// label of bounded cardinality (`/v1/resource-definitions/{name}/autoplace`).
pub(crate) fn path_template(path: &str) -> String {
    const COLLECTIONS: &[&str] = &[
        "resource-definitions",
        "resource-groups",
        "volume-definitions",
        "resources",
        "snapshots",
        "nodes",
        "storage-pools",
        "snapshot-restore-resource",
        "snapshot-restore-volume-definition",
        "error-reports",
        "accounts",
        "scripts",
        "zones",
        "routes",
        "secrets",
        "volume-groups",
    ];
    let mut out = Vec::new();
    let mut prev_collection = false;
    for s in path.split('/') {
        if prev_collection && !s.is_empty() {
            out.push("{name}");
            prev_collection = false;
        } else {
            out.push(s);
            prev_collection = COLLECTIONS.contains(&s);
        }
    }
    out.join("/")
}

/// Counts a reconcile as in progress until dropped, and records its duration.
pub(crate) struct ReconcileGuard {
    kind: &'static str,
    started: std::time::Instant,
}

impl ReconcileGuard {
    pub(crate) fn start(kind: &'static str) -> Self {
        get()
            .reconciles_in_progress
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
        Self {
            kind,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        let m = get();
        let label = KindLabel {
            kind: self.kind.into(),
        };
        m.reconciles_in_progress.get_or_create(&label).dec();
        m.reconcile_duration
            .get_or_create(&label)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Records when one account's API token expires (`None`: it does not, or the account is gone)
/// and sets the gauge to the earliest expiry.
pub(crate) fn token_expiry(account: &str, expires_at: Option<i64>) {
    let m = get();
    let Ok(mut all) = m.token_expiries.lock() else {
        return;
    };
    match expires_at {
        Some(t) => all.insert(account.to_string(), t),
        None => all.remove(account),
    };
    m.token_expiry.set(all.values().copied().min().unwrap_or(0));
}

/// One call let through by a request budget of `system`; `waited` when it found the budget
/// exhausted, with how long it waited.
pub(crate) fn budget_grant(system: &str, waited: Option<Duration>) {
    let m = get();
    let label = SystemLabel {
        system: system.into(),
    };
    m.budget_requests.get_or_create(&label).inc();
    // The wait series exist (at 0) from the first call, so a ratio of waits to calls is 0
    // rather than absent while no call waits.
    let waits = m.budget_waits.get_or_create(&label);
    let seconds = m.budget_wait_seconds.get_or_create(&label);
    if let Some(d) = waited {
        waits.inc();
        seconds.inc_by(d.as_secs_f64());
    }
}

/// How many volumes are in each phase, and degraded for each reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct VolumeCounts {
    pub phases: HashMap<Phase, i64>,
    pub degraded: HashMap<VolumeReason, i64>,
}

impl VolumeCounts {
    /// Counts one volume from its deletion mark and conditions (the phase is derived as the
    /// status's is, so a volume not reconciled yet counts as Pending).
    pub(crate) fn add(&mut self, deleting: bool, conditions: &[Condition]) {
        *self
            .phases
            .entry(Phase::of::<VolumeReason>(deleting, conditions))
            .or_default() += 1;
        if let Some(c) = find(conditions, DEGRADED).filter(|c| c.status == "True") {
            // Reasons are edgebind's own typed ones; anything else is not counted under an
            // arbitrary label (cardinality).
            if let Some(r) = VolumeReason::parse(&c.reason) {
                *self.degraded.entry(r).or_default() += 1;
            }
        }
    }
}

/// The reasons a volume's Degraded condition is True with (status.rs writes these).
pub(crate) const DEGRADED_REASONS: [VolumeReason; 4] = [
    VolumeReason::NodeOffline,
    VolumeReason::ReplicaNotUpToDate,
    VolumeReason::ReplicaInactive,
    VolumeReason::TooFewReplicas,
];

/// The states every node gauge series exists for (0 included), so an alert sees a count fall
/// back to zero rather than a series vanish; other states get a series once seen.
const NODE_STATES: [&str; 4] = ["ONLINE", "OFFLINE", "EVACUATE", "EVICTED"];

/// Sets `edgebind_linstor_nodes` from every backend's last node view.
pub(crate) fn linstor_nodes(views: &[std::sync::Arc<crate::controller::nodes::NodeView>]) {
    let m = get();
    let mut counts: BTreeMap<String, i64> =
        NODE_STATES.iter().map(|s| (s.to_string(), 0)).collect();
    for v in views {
        for n in &v.nodes {
            *counts.entry(n.state()).or_default() += 1;
        }
    }
    // A state no node is in any more (other than the four above) loses its series.
    m.linstor_nodes.clear();
    for (state, n) in counts {
        m.linstor_nodes
            .get_or_create(&NodeStateLabel { state })
            .set(n);
    }
}

/// Sets the volume gauges; every phase and degraded reason gets a series, 0 included, so an
/// alert sees a count fall back to zero rather than a series vanish.
pub(crate) fn volumes(counts: &VolumeCounts) {
    let m = get();
    for p in [Phase::Pending, Phase::Ready, Phase::Failed, Phase::Deleting] {
        m.volumes
            .get_or_create(&PhaseLabel {
                phase: p.as_str().into(),
            })
            .set(counts.phases.get(&p).copied().unwrap_or(0));
    }
    for r in DEGRADED_REASONS
        .into_iter()
        .chain(counts.degraded.keys().copied())
    {
        m.volumes_degraded
            .get_or_create(&ReasonLabel {
                reason: r.as_str().into(),
            })
            .set(counts.degraded.get(&r).copied().unwrap_or(0));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates() {
        assert_eq!(
            super::path_template("/v1/resource-definitions/eb-a_b/volume-definitions/0"),
            "/v1/resource-definitions/{name}/volume-definitions/{name}"
        );
        assert_eq!(
            super::path_template("/v1/view/resources"),
            "/v1/view/resources"
        );
    }

    #[test]
    fn the_token_expiry_gauge_is_the_earliest_of_the_accounts() {
        let g = || super::get().token_expiry.get();
        super::token_expiry("unit-a", Some(2_000_000_000));
        super::token_expiry("unit-b", Some(1_900_000_000));
        assert_eq!(g(), 1_900_000_000);
        super::token_expiry("unit-b", None);
        assert_eq!(g(), 2_000_000_000, "a deleted account no longer counts");
        super::token_expiry("unit-a", None);
        assert_eq!(g(), 0, "no token expires");
    }

    #[test]
    fn the_volume_gauges_count_phases_and_degraded_reasons() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
        let cond = |type_: &str, status: bool, reason: &str| Condition {
            type_: type_.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        };
        let ready = || cond("Ready", true, "Ready");
        let mut c = super::VolumeCounts::default();
        c.add(false, &[]);
        c.add(false, &[ready(), cond("Degraded", false, "AsExpected")]);
        c.add(false, &[ready(), cond("Degraded", true, "NodeOffline")]);
        c.add(false, &[ready(), cond("Degraded", true, "NodeOffline")]);
        c.add(false, &[cond("Ready", false, "Conflict")]);
        c.add(false, &[cond("Ready", false, "Syncing")]);
        c.add(true, &[ready(), cond("Degraded", true, "TooFewReplicas")]);
        c.add(false, &[ready(), cond("Degraded", true, "not-a-reason")]);
        super::volumes(&c);
        let text = super::encode();
        for line in [
            "edgebind_volumes{phase=\"Pending\"} 2",
            "edgebind_volumes{phase=\"Ready\"} 4",
            "edgebind_volumes{phase=\"Failed\"} 1",
            "edgebind_volumes{phase=\"Deleting\"} 1",
            "edgebind_volumes_degraded{reason=\"NodeOffline\"} 2",
            "edgebind_volumes_degraded{reason=\"TooFewReplicas\"} 1",
            "edgebind_volumes_degraded{reason=\"ReplicaNotUpToDate\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            !text.contains("not-a-reason"),
            "no label from an unknown reason"
        );

        // Recounted: a reason that no longer occurs falls to 0 rather than keeping its count.
        super::volumes(&super::VolumeCounts::default());
        let text = super::encode();
        assert!(
            text.lines()
                .any(|l| l == "edgebind_volumes_degraded{reason=\"NodeOffline\"} 0")
        );
        assert!(
            text.lines()
                .any(|l| l == "edgebind_volumes{phase=\"Ready\"} 0")
        );
    }
}
