//! Compiles `IdentityIssuer` and `VolumeAccessPolicy` resources into the Worker's `ISSUERS` and
//! `POLICY_BUNDLE` documents (docs/edge-protocol.md §1.1, §3.1) and the gateway's live bundle.
//! Pure: the same resources always give the same bytes and revision.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::policy::{
    Action, Bundle, BundlePolicy, ClaimMatcher, Conditions, Effect, LabelExpression, LabelSelector,
    RateLimit, SubjectMatcher, VolumeMatcher,
};
use crate::crd::issuer::JwsAlgorithm;
use crate::crd::policy::{PolicyAction, PolicyEffect};
use crate::crd::{IdentityIssuer, VolumeAccessPolicy};

/// One entry of `ISSUERS`.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerEntry {
    pub name: String,
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<JwsAlgorithm>,
    pub clock_skew_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_token_age_seconds: Option<u32>,
    pub claim_mapping: ClaimMappingEntry,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimMappingEntry {
    pub subject_claim: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
    pub prefix: String,
}

/// Both documents.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    pub issuers: Vec<IssuerEntry>,
    pub bundle: Bundle,
}

impl Compiled {
    pub fn issuers_json(&self) -> String {
        serde_json::to_string(&self.issuers).unwrap_or_else(|_| "[]".into())
    }
    pub fn bundle_json(&self) -> String {
        serde_json::to_string(&self.bundle).unwrap_or_default()
    }
}

fn action(a: PolicyAction) -> Action {
    match a {
        PolicyAction::Read => Action::Read,
        PolicyAction::Create => Action::Create,
        PolicyAction::Resize => Action::Resize,
        PolicyAction::Snapshot => Action::Snapshot,
        PolicyAction::Restore => Action::Restore,
        PolicyAction::Delete => Action::Delete,
    }
}

fn policy(p: &VolumeAccessPolicy) -> BundlePolicy {
    let s = &p.spec;
    BundlePolicy {
        namespace: p.metadata.namespace.clone().unwrap_or_default(),
        name: p.metadata.name.clone().unwrap_or_default(),
        effect: match s.effect {
            PolicyEffect::Allow => Effect::Allow,
            PolicyEffect::Deny => Effect::Deny,
        },
        subjects: s
            .subjects
            .iter()
            .map(|e| SubjectMatcher {
                issuer: e.issuer.clone(),
                subjects: e.subjects.clone(),
                groups: e.groups.clone(),
                claims: e
                    .claims
                    .iter()
                    .map(|c| ClaimMatcher {
                        claim: c.claim.clone(),
                        values: c.values.clone(),
                    })
                    .collect(),
            })
            .collect(),
        actions: s.actions.iter().copied().map(action).collect(),
        volumes: s.volumes.as_ref().map(|v| VolumeMatcher {
            names: v.names.clone(),
            label_selector: v.label_selector.as_ref().map(|l| LabelSelector {
                match_labels: l.match_labels.clone(),
                match_expressions: l
                    .match_expressions
                    .iter()
                    .map(|e| LabelExpression {
                        key: e.key.clone(),
                        operator: e.operator.clone(),
                        values: e.values.clone(),
                    })
                    .collect(),
            }),
        }),
        conditions: s.conditions.as_ref().map(|c| Conditions {
            max_size_bytes: c.max_size_bytes,
            source_ip_cidrs: c.source_ip_cidrs.clone(),
        }),
        rate_limit: s.rate_limit.map(|r| RateLimit {
            requests_per_minute: r.requests_per_minute,
            burst: r.burst,
        }),
    }
}

/// `sha256:` + hex SHA-256 of the serialized `policies` array.
pub fn revision(policies: &[BundlePolicy]) -> String {
    let bytes = serde_json::to_vec(policies).unwrap_or_default();
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Compiles the resources. Objects being deleted are left out; policies are sorted by
/// (namespace, name) and issuers by name, so the output does not depend on list order.
/// The prefix the Worker and the gateway put on this issuer's subjects and groups (default
/// `<issuer name>:`): a policy's subjects and groups must carry it to match anything.
pub fn issuer_prefix(i: &IdentityIssuer) -> String {
    i.spec
        .claim_mapping
        .as_ref()
        .and_then(|cm| cm.prefix.clone())
        .unwrap_or_else(|| format!("{}:", i.metadata.name.as_deref().unwrap_or_default()))
}

pub fn compile_bundle(issuers: &[IdentityIssuer], policies: &[VolumeAccessPolicy]) -> Compiled {
    let mut ps: Vec<BundlePolicy> = policies
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(policy)
        .collect();
    ps.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    ps.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    let mut is: Vec<IssuerEntry> = issuers
        .iter()
        .filter(|i| i.metadata.deletion_timestamp.is_none())
        .map(|i| {
            let name = i.metadata.name.clone().unwrap_or_default();
            let prefix = issuer_prefix(i);
            let cm = i.spec.claim_mapping.clone().unwrap_or_default();
            IssuerEntry {
                issuer: i.spec.issuer.clone(),
                jwks_uri: i.spec.jwks_uri.clone(),
                audiences: i.spec.audiences.clone(),
                algorithms: i.spec.algorithms.clone(),
                clock_skew_seconds: i.spec.clock_skew_seconds.unwrap_or(60),
                max_token_age_seconds: i.spec.max_token_age_seconds,
                claim_mapping: ClaimMappingEntry {
                    subject_claim: cm.subject_claim.unwrap_or_else(|| "sub".into()),
                    groups_claim: cm.groups_claim,
                    prefix,
                },
                name,
            }
        })
        .collect();
    is.sort_by(|a, b| a.name.cmp(&b.name));
    Compiled {
        issuers: is,
        bundle: Bundle {
            version: 1,
            revision: revision(&ps),
            policies: ps,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vap(ns: &str, name: &str, spec: serde_json::Value) -> VolumeAccessPolicy {
        serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec,
        }))
        .expect("valid policy fixture")
    }

    #[test]
    fn compiles_the_documented_shapes_deterministically() {
        let issuer: IdentityIssuer = serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer",
            "metadata": {"name": "okta-prod"},
            "spec": {"issuer": "https://acme.okta.com/oauth2/default", "audiences": ["api://edgebind"],
                     "algorithms": ["RS256", "ES256"], "claimMapping": {"groupsClaim": "groups"}}
        }))
        .expect("valid issuer fixture");
        let spec = json!({"effect": "Allow", "subjects": [{"issuer": "okta-prod", "groups": ["okta-prod:storage-admins"]}],
            "actions": ["read", "snapshot"], "volumes": {"names": ["pvc-*"]},
            "rateLimit": {"requestsPerMinute": 60, "burst": 20}});
        let a = vap("team-b", "x", spec.clone());
        let b = vap("team-a", "storage-admins", spec);
        let c1 = compile_bundle(std::slice::from_ref(&issuer), &[a.clone(), b.clone()]);
        let c2 = compile_bundle(&[issuer], &[b, a]);
        assert_eq!(c1, c2, "order of the inputs does not matter");
        let bundle: serde_json::Value =
            serde_json::from_str(&c1.bundle_json()).expect("bundle is JSON");
        assert_eq!(bundle["policies"][0]["namespace"], "team-a");
        assert_eq!(
            bundle["policies"][0]["rateLimit"],
            json!({"requestsPerMinute": 60, "burst": 20})
        );
        assert!(
            bundle["revision"]
                .as_str()
                .is_some_and(|r| r.starts_with("sha256:") && r.len() == 71)
        );
        // The gateway and the Worker read the same bytes.
        let parsed = Bundle::parse(&c1.bundle_json()).expect("compiled bundle is valid");
        assert_eq!(parsed, c1.bundle);
        let issuers: serde_json::Value =
            serde_json::from_str(&c1.issuers_json()).expect("issuers are JSON");
        assert_eq!(
            issuers,
            json!([{
                "name": "okta-prod", "issuer": "https://acme.okta.com/oauth2/default",
                "audiences": ["api://edgebind"], "algorithms": ["RS256", "ES256"],
                "clockSkewSeconds": 60,
                "claimMapping": {"subjectClaim": "sub", "groupsClaim": "groups", "prefix": "okta-prod:"}
            }])
        );
    }

    #[test]
    fn revision_changes_with_the_policies() {
        let p = vap(
            "a",
            "p",
            json!({"effect": "Allow", "subjects": [{"issuer": "i"}], "actions": ["read"]}),
        );
        let q = vap(
            "a",
            "p",
            json!({"effect": "Deny", "subjects": [{"issuer": "i"}], "actions": ["read"]}),
        );
        assert_ne!(
            compile_bundle(&[], &[p]).bundle.revision,
            compile_bundle(&[], &[q]).bundle.revision
        );
    }
}
