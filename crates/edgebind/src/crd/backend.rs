//! `LinstorBackend`: how edgebind reaches one LINSTOR controller.

// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// How to reach a LINSTOR controller. Cluster-scoped: volumes in any namespace refer to it by name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgebind.dev",
    version = "v1alpha1",
    kind = "LinstorBackend",
    status = "LinstorBackendStatus",
    shortname = "lb",
    category = "edgebind",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.urls[0]"),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.controllerVersion"
    ),
    printcolumn(name = "API", type_ = "string", json_path = ".status.restApiVersion"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct LinstorBackendSpec {
    /// Controller URLs, tried in order (e.g. `https://linstor-controller.piraeus.svc:3371`). The
    /// scheme must be http or https; with https and `tls`, edgebind presents a client certificate.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(validation = Rule::new("self.all(u, u.startsWith('http://') || u.startsWith('https://'))").message("every URL must start with http:// or https://"))]
    pub urls: Vec<String>,
    /// Client TLS: a Secret holding `tls.crt`, `tls.key` and optionally `ca.crt` (the
    /// `kubernetes.io/tls` layout cert-manager writes). Rotated certificates are picked up without
    /// a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SecretRef>,
    /// A Secret holding a LINSTOR bearer token (LINSTOR 1.34+ with token authentication), sent as
    /// `Authorization: Bearer`. The token never appears in logs, events or status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<SecretKeyRef>,
    /// Request budget shared by every volume on this backend, so edgebind never overloads the
    /// controller.
    #[serde(default)]
    pub budget: Budget,
    /// Per-call timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
}

/// A reference to a Secret by namespace and name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
}

/// A reference to one key of a Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret's data.
    #[serde(default = "default_token_key")]
    pub key: String,
}

fn default_token_key() -> String {
    "token".into()
}

/// Token bucket plus in-flight cap for calls to one backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Sustained requests per second (token bucket refill rate). With `burst`, the budget
    /// allows at most `burst + requestsPerSecond × T` requests in any T seconds.
    #[serde(default = "default_rps")]
    #[schemars(range(min = 1, max = 10000))]
    pub requests_per_second: u32,
    /// Burst size of the token bucket: requests that may go at once after an idle period, on
    /// top of the rate.
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1, max = 10000))]
    pub burst: u32,
    /// Maximum requests in flight at once.
    #[serde(default = "default_in_flight")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_in_flight: u32,
}

fn default_rps() -> u32 {
    50
}
fn default_burst() -> u32 {
    10
}
fn default_in_flight() -> u32 {
    8
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            requests_per_second: default_rps(),
            burst: default_burst(),
            max_in_flight: default_in_flight(),
        }
    }
}

/// Per-call timeouts. Mutations get a long timeout: LINSTOR answers only once satellites have.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// TCP and TLS connect timeout, in seconds.
    #[serde(default = "default_connect")]
    #[schemars(range(min = 1, max = 600))]
    pub connect_seconds: u32,
    /// Timeout of reads (GET), in seconds.
    #[serde(default = "default_read")]
    #[schemars(range(min = 1, max = 3600))]
    pub read_seconds: u32,
    /// Timeout of mutations (POST, PUT, DELETE), in seconds.
    #[serde(default = "default_mutation")]
    #[schemars(range(min = 1, max = 3600))]
    pub mutation_seconds: u32,
}

fn default_connect() -> u32 {
    10
}
fn default_read() -> u32 {
    30
}
fn default_mutation() -> u32 {
    300
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_seconds: default_connect(),
            read_seconds: default_read(),
            mutation_seconds: default_mutation(),
        }
    }
}

/// Observed state of a backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LinstorBackendStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when the controller answered `GET /v1/controller/version`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// LINSTOR controller version, e.g. `1.33.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_version: Option<String>,
    /// LINSTOR REST API version, e.g. `1.27.0`; edgebind sends only fields this version knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_api_version: Option<String>,
    /// The URL that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_url: Option<String>,
    /// LINSTOR's nodes at the last check and their state: the flag that takes a node out of
    /// service (`EVACUATE`, `EVICTED`, `DELETE`), else its connection status (`ONLINE`,
    /// `OFFLINE`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<BackendNode>,
    /// How many EdgeVolumes of this backend are `Degraded` (counted from the controller's cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded_volumes: Option<u32>,
}

/// A LINSTOR node as the backend's status shows it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BackendNode {
    /// LINSTOR node name.
    pub name: String,
    /// `ONLINE`, `OFFLINE`, `EVACUATE`, `EVICTED`, ...
    pub state: String,
}
