//! `EdgeBinding`: where a namespace's volumes are exposed at the edge (the gatekeeper Worker,
//! its routes and its secrets).

// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;
use super::volume::Placement;

/// Annotation asking for a signing key rotation now: any new value triggers one rotation.
pub const ROTATE_KEY_ANNOTATION: &str = "edgebind.dev/rotate-key";
/// Condition set when a route pattern belongs to another Worker.
pub const ROUTE_CONFLICT: &str = "RouteConflict";

/// Publishes edgebind's gatekeeper Worker for this namespace: uploads the bundled script,
/// creates its routes and keeps its secrets (signing key, policy bundle, issuers) current.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgebind.dev",
    version = "v1alpha1",
    kind = "EdgeBinding",
    namespaced,
    status = "EdgeBindingStatus",
    shortname = "eb",
    category = "edgebind",
    printcolumn(name = "Script", type_ = "string", json_path = ".spec.scriptName"),
    printcolumn(name = "Route", type_ = "string", json_path = ".spec.routes[0]"),
    printcolumn(name = "Key", type_ = "string", json_path = ".status.currentKeyId"),
    printcolumn(
        name = "Backend",
        type_ = "string",
        priority = 1,
        json_path = ".spec.volumeDefaults.backendRef"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.gatewayUrl) ? 1 : 0) + (has(self.tunnelHostname) ? 1 : 0) + (has(self.workersVpc) && self.workersVpc ? 1 : 0) == 1").message("set exactly one of spec.gatewayUrl, spec.tunnelHostname and spec.workersVpc"))]
pub struct EdgeBindingSpec {
    /// Name of the CloudflareAccount to publish with.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("accountRef is immutable; create a new EdgeBinding to move accounts"))]
    pub account_ref: String,
    /// The Cloudflare zone id (32 hexadecimal characters) the routes belong to.
    #[schemars(regex(pattern = r"^[0-9a-f]{32}$"))]
    pub zone_id: String,
    /// Worker route patterns, e.g. `api.example.com/edgebind/*`. A pattern already routed to
    /// another Worker is never taken over (the `RouteConflict` condition says which).
    // Item bounds keep the CEL rules' estimated cost within the API server's budget.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 512)))]
    #[x_kube(validation = Rule::new("self.all(p, size(p) > 0 && size(p) <= 512 && !p.contains('?'))").message("route patterns must be non-empty, at most 512 characters, without a query string"))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q == p))").message("route patterns must be unique"))]
    pub routes: Vec<String>,
    /// Worker script name. Immutable: renaming would orphan the old Worker.
    #[schemars(regex(pattern = r"^[a-z0-9_][a-z0-9_-]{0,62}$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("scriptName is immutable"))]
    pub script_name: String,
    /// Origin of the gateway the Worker forwards to (`https://host[:port]`, no path), when
    /// the gateway is published some other way. Exactly one of `gatewayUrl` and
    /// `tunnelHostname` is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 8, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("gatewayUrl must be an http(s) URL"))]
    pub gateway_url: String,
    /// A hostname in this binding's zone that reaches the gateway through the account's
    /// Cloudflare Tunnel (`spec.tunnel` on the CloudflareAccount): edgebind creates a proxied
    /// CNAME to the tunnel and an ingress rule, and the Worker forwards to `https://<hostname>`.
    /// The gateway still checks every request's signature.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
    )]
    #[x_kube(validation = Rule::new("self == oldSelf").message("tunnelHostname cannot be changed once set; create a new EdgeBinding"))]
    pub tunnel_hostname: String,
    /// Reach the gateway through the account's Workers VPC service (`spec.tunnel.workersVpc`
    /// on the CloudflareAccount): the Worker gets a `vpc_service` binding `GATEWAY` and fetches
    /// the gateway Service URL through it, with no public hostname. The gateway still checks
    /// every request's signature. The binding waits (`VpcServiceNotReady`) until the account
    /// has the service.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub workers_vpc: bool,
    /// Names of the IdentityIssuers whose tokens the Worker accepts; empty means all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub issuers: Vec<String>,
    /// Selects the VolumeAccessPolicies of this namespace compiled into the Worker's policy
    /// bundle; absent means all of them. (The gateway enforces every policy regardless.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Hours between scheduled signing key rotations. The annotation `edgebind.dev/rotate-key`
    /// rotates on demand.
    #[serde(default = "default_rotation_hours")]
    #[schemars(range(min = 1, max = 8784))]
    pub signing_key_rotation_hours: u32,
    /// Workers compatibility date (`YYYY-MM-DD`) the script runs with.
    #[serde(default = "default_compat_date")]
    #[schemars(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))]
    pub compatibility_date: String,
    /// Keep the Worker script when this object is deleted (routes and secrets are still removed).
    #[serde(default)]
    pub keep_script_on_delete: bool,
    /// What volumes created at the edge through this binding are made of: their LinstorBackend,
    /// placement and deletion policy. Absent: the gateway's `--backend-ref` (a fallback kept for
    /// bindings made before this field existed), default placement, `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_defaults: Option<EdgeVolumeDefaults>,
}

/// The spec of the EdgeVolumes the gateway creates for requests through a binding (the size,
/// name and labels come from the request; a size cap belongs in the policies'
/// `conditions.maxSizeBytes`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.resourceGroup) || !(has(self.placeCount) || has(self.storagePools))").message("resourceGroup excludes placeCount and storagePools: the resource group decides placement"))]
#[serde(rename_all = "camelCase")]
pub struct EdgeVolumeDefaults {
    /// LinstorBackend of the volumes (their `spec.backendRef`). A volume restored from a
    /// snapshot stays on its source volume's backend. The binding is not Ready while no
    /// LinstorBackend of this name exists.
    #[schemars(length(min = 1, max = 253))]
    pub backend_ref: String,
    /// A LINSTOR resource group whose select filter places the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 48))]
    pub resource_group: Option<String>,
    /// Number of diskful replicas (the volume default, 2, when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub place_count: Option<u32>,
    /// Storage pools diskful replicas may use (any of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub storage_pools: Option<Vec<String>>,
    /// What happens to the LINSTOR data when such a volume is deleted (default `Retain`).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// A PersistentVolume for each such volume (as `EdgeVolume.spec.persistentVolume`; no
    /// `claimName`: one claim cannot bind every volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!has(self.claimName)").message("claimName names one claim; it cannot be a default for every volume"))]
    pub persistent_volume: Option<crate::crd::volume::PersistentVolumeRequest>,
}

impl EdgeVolumeDefaults {
    /// The placement these defaults give a new volume.
    pub fn placement(&self) -> Placement {
        Placement {
            resource_group: self.resource_group.clone(),
            place_count: self.place_count,
            storage_pools: self.storage_pools.clone(),
            ..Placement::default()
        }
    }
}

fn default_rotation_hours() -> u32 {
    720
}

/// The compatibility date the bundled Worker is tested with.
pub fn default_compat_date() -> String {
    "2025-09-01".into()
}

/// Observed state of a binding. Secret values never appear here, only their SHA-256.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeBindingStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `RouteConflict`, `Degraded`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Etag Cloudflare reported for the uploaded script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_etag: Option<String>,
    /// SHA-256 of what edgebind uploaded (script and upload settings); a re-upload happens
    /// only when this differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_hash: Option<String>,
    /// The Worker version serving all traffic after edgebind's last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_version_id: Option<String>,
    /// Route pattern -> route id, for the routes edgebind created (only these are ever
    /// changed or deleted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub route_ids: BTreeMap<String, String>,
    /// Secret name -> `sha256:<hex>` of the value last written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_hashes: BTreeMap<String, String>,
    /// Key id of the signing key the Worker uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_key_id: Option<String>,
    /// When the current key became the Worker's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<String>,
    /// A new key published to the gateways, not yet used by the Worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_key_id: Option<String>,
    /// When the pending key was published to the gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<String>,
    /// The previous key, still trusted by the gateways until `retireAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_key_id: Option<String>,
    /// When the previous key's public half is removed from the gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_after: Option<String>,
    /// Id of the DNS record edgebind created for `tunnelHostname` (only this one is ever
    /// deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_record_id: Option<String>,
    /// Last value of the `edgebind.dev/rotate-key` annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_request: Option<String>,
}

impl crate::memory::Compact for EdgeBinding {}
