//! `IdentityIssuer`: an OIDC issuer whose tokens the edge Worker accepts.

// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A trusted OIDC issuer. Cluster-scoped: policies in every namespace refer to it by name. It is
/// compiled into the Worker's `ISSUERS` binding (docs/edge-protocol.md §1.1).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgebind.dev",
    version = "v1alpha1",
    kind = "IdentityIssuer",
    status = "IdentityIssuerStatus",
    shortname = "idi",
    category = "edgebind",
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuer"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "LastFetch",
        type_ = "date",
        json_path = ".status.lastJwksFetch"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct IdentityIssuerSpec {
    /// The issuer URL, compared byte for byte with the token's `iss`. Must be https (http only for
    /// loopback hosts, in tests).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.matches('^http://(127\\\\.0\\\\.0\\\\.1|localhost|\\\\[::1\\\\])([:/].*)?$')").message("issuer must be an https URL (http only for 127.0.0.1, localhost or [::1])"))]
    pub issuer: String,
    /// URL of the issuer's JWK Set. When absent, OIDC discovery on the issuer finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.matches('^http://(127\\\\.0\\\\.0\\\\.1|localhost|\\\\[::1\\\\])([:/].*)?$')").message("jwksUri must be an https URL (http only for 127.0.0.1, localhost or [::1])"))]
    pub jwks_uri: Option<String>,
    /// Accepted audiences; the token's `aud` must contain at least one.
    #[schemars(length(min = 1, max = 16))]
    pub audiences: Vec<String>,
    /// Accepted signature algorithms. `none` and HMAC are not offered: a JWK Set holds public
    /// keys, and HMAC would let anyone sign with one.
    #[schemars(length(min = 1, max = 10))]
    pub algorithms: Vec<JwsAlgorithm>,
    /// Tolerance for `exp`, `nbf` and `iat`, seconds (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 300))]
    pub clock_skew_seconds: Option<u32>,
    /// When set, tokens must carry `iat` and be at most this old, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_token_age_seconds: Option<u32>,
    /// How claims become the principal's subject and groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_mapping: Option<ClaimMapping>,
    /// Whether the gateway verifies the caller's token itself against this issuer's JWK Set
    /// (default true), so that a leaked edge signing key alone cannot act as anyone. Turn it off
    /// only where the gateway cannot reach the issuer's keys (no egress): the gateway then takes
    /// the identity the Worker signed on trust (ES512 tokens also need it off: the gateway does
    /// not verify P-521 signatures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_verification: Option<bool>,
}

/// JWS algorithms a token may be signed with.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwsAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

/// Claim mapping (docs/edge-protocol.md §2.2).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMapping {
    /// Claim path of the subject (default `sub`): a top-level claim name, or a JSON Pointer
    /// (RFC 6901) such as `/kubernetes.io/serviceaccount/uid` (docs/edge-protocol.md §2.3).
    /// Must lead to a non-empty string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') || self.matches('^(/([^~/]|~[01])*)+$')").message("a claim path is a top-level claim name or a JSON Pointer (RFC 6901) in which every ~ is followed by 0 or 1"))]
    pub subject_claim: Option<String>,
    /// Claim path of the groups: a string, a list of strings, or a map of strings whose
    /// `key=value` entries become groups (AWS `/https:~1~1sts.amazonaws.com~1/principal_tags`).
    /// Absent means the principal has no groups. A top-level groups claim that the token names
    /// in `_claim_names` instead (Entra ID's groups overage) makes the groups unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') || self.matches('^(/([^~/]|~[01])*)+$')").message("a claim path is a top-level claim name or a JSON Pointer (RFC 6901) in which every ~ is followed by 0 or 1"))]
    pub groups_claim: Option<String>,
    /// Prefix of the subject and every group (default `<name>:`), so that two issuers' subjects
    /// never collide. Empty only when this is the only issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub prefix: Option<String>,
}

/// Observed state of an issuer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityIssuerStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True once the JWK Set was fetched and holds at least one usable key.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Key ids (`kid`) seen in the last JWK Set fetched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ids: Vec<String>,
    /// When the JWK Set was last fetched successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_jwks_fetch: Option<Time>,
}
