//! Gateway metrics: requests and latency by route template, method and reason code. Labels
//! never carry object names (bounded cardinality).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: String,
    pub method: String,
    /// `ok` or the reason code.
    pub code: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LatencyLabels {
    pub route: String,
    pub decision: String,
}

#[derive(Clone)]
pub struct GatewayMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    registry: Arc<Registry>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let mut r = Registry::with_prefix("edgebind_gateway");
        r.register(
            "requests",
            "API requests by route, method, reason code and status",
            requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "API request latency by route and decision",
            latency.clone(),
        );
        GatewayMetrics {
            requests,
            latency,
            registry: Arc::new(r),
        }
    }

    pub fn observe(&self, route: &str, method: &str, code: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.into(),
                method: method.into(),
                code: code.into(),
                status: status.to_string(),
            })
            .inc();
        let decision = if (200..300).contains(&status) {
            "allow"
        } else {
            "deny"
        };
        self.latency
            .get_or_create(&LatencyLabels {
                route: route.into(),
                decision: decision.into(),
            })
            .observe(seconds);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
