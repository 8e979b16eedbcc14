//! Prometheus metrics. Labels never carry object names (unbounded cardinality).

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
}
