//! `CloudflareAccount`: a Cloudflare account and the API token edgebind uses for it.

// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::backend::SecretKeyRef;

/// A Cloudflare account edgebind publishes Workers to. Cluster-scoped: EdgeBindings in any
/// namespace refer to it by name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgebind.dev",
    version = "v1alpha1",
    kind = "CloudflareAccount",
    status = "CloudflareAccountStatus",
    shortname = "cfa",
    category = "edgebind",
    // The name is part of the tunnel Secret's and the chart's cloudflared Deployment's names
    // and labels (label values: at most 63 characters).
    validation = Rule::new("self.metadata.name.size() <= 63").message("a CloudflareAccount name has at most 63 characters (it names the tunnel Secret and the cloudflared Deployment)"),
    printcolumn(name = "Account", type_ = "string", json_path = ".spec.accountId"),
    printcolumn(name = "Token", type_ = "string", json_path = ".status.tokenStatus"),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.tokenExpiresOn"
    ),
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
pub struct CloudflareAccountSpec {
    /// The Cloudflare account id (32 hexadecimal characters, shown on the dashboard's overview).
    /// Immutable: Workers published under one account cannot move to another.
    #[schemars(regex(pattern = r"^[0-9a-f]{32}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("accountId is immutable"))]
    pub account_id: String,
    /// The Secret key holding the API token (sent as `Authorization: Bearer`). It needs Workers
    /// Scripts Edit on the account and Workers Routes Edit on the zones used. The token never
    /// appears in logs, events or status.
    pub api_token: SecretKeyRef,
    /// Request budget shared by every EdgeBinding using this account. Cloudflare allows 1,200
    /// requests per 5 minutes per token; the budget may send `burst + requestsPerSecond × 300`
    /// in 5 minutes, which must stay within that (the default, 620, leaves room for others
    /// using the token).
    #[serde(default)]
    pub budget: CloudflareBudget,
    /// Timeout of one API call, in seconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout_seconds: u32,
    /// API base URL. Leave unset for Cloudflare; set it only to use a compatible simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("apiUrl must be an http(s) URL"))]
    pub api_url: Option<String>,
    /// A Cloudflare Tunnel from this account's edge to the in-cluster gateway, created and
    /// owned by edgebind (one per account: cloudflared runs one tunnel per Deployment). Its
    /// token goes to the Secret `edgebind-tunnel-<account>` in the operator namespace, where
    /// the chart's cloudflared reads it; EdgeBindings with `tunnelHostname` are routed
    /// through it. The token then needs Cloudflare Tunnel Edit on the account and DNS Edit on
    /// the bindings' zones. Removing this field deletes the tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<AccountTunnel>,
}

/// Settings of an account's tunnel.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountTunnel {
    /// Where cloudflared sends the bindings' traffic. Default: the gateway Service the
    /// controller was installed with (`--gateway-service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("tunnel.service must be an http(s) URL"))]
    pub service: Option<String>,
    /// Also register the gateway Service as a Workers VPC service (connectivity directory
    /// entry named like the tunnel, reached through it), so EdgeBindings with `workersVpc`
    /// reach the gateway through a `vpc_service` binding instead of a public hostname. The
    /// account needs Workers VPC and the token Connectivity Directory Admin; a refusal shows
    /// in the `WorkersVpcReady` condition. Setting it back to false deletes the service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workers_vpc: bool,
}

fn default_timeout() -> u32 {
    30
}

/// Token bucket plus in-flight cap for calls with one token.
// A token bucket lets `burst + rate × T` through in any T seconds; Cloudflare counts 1,200 per
// token in 5 minutes (https://developers.cloudflare.com/fundamentals/api/reference/limits/).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.burst + self.requestsPerSecond * 300 <= 1200").message("budget: burst + requestsPerSecond × 300 must be at most 1200, Cloudflare's limit of 1,200 requests per 5 minutes per token (for example requestsPerSecond 3 with burst up to 200)"))]
#[serde(rename_all = "camelCase")]
pub struct CloudflareBudget {
    /// Sustained requests per second. Cloudflare's limit is 1,200 per 5 minutes (4/s) per
    /// token, shared with everything else using the token; with the burst it must fit (see
    /// `budget`), so at most 3.
    #[serde(default = "default_rps")]
    #[schemars(range(min = 1, max = 4))]
    pub requests_per_second: u32,
    /// Burst size of the token bucket.
    #[serde(default = "default_burst")]
    #[schemars(range(min = 1, max = 200))]
    pub burst: u32,
    /// Maximum requests in flight at once.
    #[serde(default = "default_in_flight")]
    #[schemars(range(min = 1, max = 32))]
    pub max_in_flight: u32,
}

fn default_rps() -> u32 {
    2
}
fn default_burst() -> u32 {
    20
}
fn default_in_flight() -> u32 {
    4
}

impl Default for CloudflareBudget {
    fn default() -> Self {
        Self {
            requests_per_second: default_rps(),
            burst: default_burst(),
            max_in_flight: default_in_flight(),
        }
    }
}

impl CloudflareBudget {
    /// The generic budget shape the shared token bucket takes.
    pub fn as_budget(&self) -> super::backend::Budget {
        super::backend::Budget {
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            max_in_flight: self.max_in_flight,
        }
    }
}

/// Observed state of an account.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CloudflareAccountStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True when Cloudflare verified the token as active.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Token id as Cloudflare reports it (not the secret value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// `active`, `disabled` or `expired`, as the verify call reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_status: Option<String>,
    /// When the token expires, if it has an expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_on: Option<String>,
    /// `account` (an account-owned token) or `user`: the verify path that accepted the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_kind: Option<String>,
    /// The tunnel edgebind created for this account (only this one is ever changed or deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelStatus>,
}

/// What edgebind knows of the account's tunnel.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TunnelStatus {
    // Optional in the schema: a server-side apply that stops writing `tunnel` may leave an
    // empty object behind, which must still be accepted (and is read as "no tunnel").
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Cloudflare's view: `inactive` (cloudflared never connected), `healthy`, `degraded` or
    /// `down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Connected cloudflared replicas.
    #[serde(default)]
    pub connectors: u32,
    /// Public hostnames routed to the gateway (from the EdgeBindings using the tunnel).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// The Workers VPC service edgebind registered for the gateway (`spec.tunnel.workersVpc`;
    /// only this one is ever changed or deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_service_id: Option<String>,
    /// The gateway URL Workers fetch through the VPC service binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_service_url: Option<String>,
}

/// Key of the token in the tunnel Secret (the chart passes it to cloudflared as `TUNNEL_TOKEN`).
pub const TUNNEL_TOKEN_KEY: &str = "token";

/// The Secret (in the operator namespace) holding the tunnel token of account `name`.
pub fn tunnel_secret_name(name: &str) -> String {
    format!("edgebind-tunnel-{name}")
}
