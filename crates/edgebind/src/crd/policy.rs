//! `VolumeAccessPolicy`: who may do what to which EdgeVolumes from the edge.

// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Allows or denies edge callers actions on the EdgeVolumes of this namespace. Any matching Deny
/// wins; without a matching Allow the answer is deny (docs/edge-protocol.md §3).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgebind.dev",
    version = "v1alpha1",
    kind = "VolumeAccessPolicy",
    namespaced,
    status = "VolumeAccessPolicyStatus",
    shortname = "eap",
    category = "edgebind",
    printcolumn(name = "Effect", type_ = "string", json_path = ".spec.effect"),
    printcolumn(name = "Actions", type_ = "string", json_path = ".spec.actions"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        priority = 1,
        json_path = ".status.bundleRevision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[x_kube(validation = Rule::new("self.effect == 'Allow' || !has(self.rateLimit)").message("rateLimit applies to Allow policies only"))]
#[serde(rename_all = "camelCase")]
pub struct VolumeAccessPolicySpec {
    /// `Allow` or `Deny`.
    pub effect: PolicyEffect,
    /// Who the policy is about; it applies when any entry matches the caller.
    #[schemars(length(min = 1, max = 32))]
    pub subjects: Vec<PolicySubject>,
    /// Actions covered. There is no wildcard.
    #[schemars(length(min = 1, max = 6))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b == a))").message("actions must not repeat"))]
    pub actions: Vec<PolicyAction>,
    /// Which volumes of the namespace; absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<PolicyVolumes>,
    /// Extra conditions that must all hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<PolicyConditions>,
    /// Per-caller token bucket (Allow policies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<PolicyRateLimit>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyEffect {
    Allow,
    Deny,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    Read,
    Create,
    Resize,
    Snapshot,
    Restore,
    Delete,
}

/// One way to match the caller. All given lists must match; only `issuer` matches every caller
/// of that issuer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicySubject {
    /// Name of an IdentityIssuer.
    #[schemars(length(min = 1, max = 253))]
    pub issuer: String,
    /// Prefixed subjects (e.g. `okta-prod:alice`), any of which matches. Each is a subject
    /// pattern: `*` matches any run of characters except `/` (`aws:arn:aws:iam::123456789012:role/app-*`),
    /// everything else itself (docs/edge-protocol.md §2.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub subjects: Vec<String>,
    /// Prefixed groups (e.g. `okta-prod:storage-admins`), any of which matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub groups: Vec<String>,
    /// Claim matchers, each of which must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub claims: Vec<PolicyClaim>,
}

/// A token claim that must hold one of `values`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PolicyClaim {
    /// Claim path: a top-level claim name, or a JSON Pointer (RFC 6901) such as
    /// `/https:~1~1sts.amazonaws.com~1/principal_tags/team` (docs/edge-protocol.md §2.3).
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') || self.matches('^(/([^~/]|~[01])*)+$')").message("a claim path is a top-level claim name or a JSON Pointer (RFC 6901) in which every ~ is followed by 0 or 1"))]
    pub claim: String,
    /// Accepted values, each a subject pattern (`refs/heads/release/*`; `*` never matches `/`).
    /// Numbers and booleans compare as their JSON text, a map's entries as `key=value`.
    #[schemars(length(min = 1, max = 64))]
    pub values: Vec<String>,
}

/// Volume selection: both given parts must match.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVolumes {
    /// Anchored glob patterns over the volume name (`*` any run, `?` one character).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub names: Vec<String>,
    /// A Kubernetes label selector over the volume's labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<PolicyLabelSelector>,
}

/// A Kubernetes label selector.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyLabelSelector {
    /// Labels that must be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub match_expressions: Vec<PolicyLabelRequirement>,
}

/// One set-based requirement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("(self.operator in ['In', 'NotIn']) == (has(self.values) && size(self.values) > 0)").message("In and NotIn need values; Exists and DoesNotExist take none"))]
pub struct PolicyLabelRequirement {
    /// Label key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[x_kube(validation = Rule::new("self in ['In', 'NotIn', 'Exists', 'DoesNotExist']").message("operator must be In, NotIn, Exists or DoesNotExist"))]
    pub operator: String,
    /// Values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// Conditions on the request.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConditions {
    /// Largest size `create` and `resize` may ask for, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9007199254740991u64))]
    pub max_size_bytes: Option<u64>,
    /// The caller's IP must be in one of these CIDRs (IPv4 or IPv6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Item bounds keep the CEL rule's estimated cost within the API server's budget; 43 is an
    // IPv6 address with a prefix length.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("every entry must be a CIDR such as 203.0.113.0/24 or 2001:db8::/32"))]
    pub source_ip_cidrs: Option<Vec<String>>,
}

/// A token bucket per caller: `burst` capacity, refilled at `requestsPerMinute`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRateLimit {
    /// Sustained rate.
    #[schemars(range(min = 1, max = 100000))]
    pub requests_per_minute: u32,
    /// Bucket capacity (default `requestsPerMinute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub burst: Option<u32>,
}

/// Observed state of a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAccessPolicyStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True once the policy is part of a compiled bundle.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Revision of the bundle that includes this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_revision: Option<String>,
}
