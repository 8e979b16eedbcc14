//! Status of the access kinds: `IdentityIssuer` (is its JWK Set reachable, which keys does it
//! hold) and `VolumeAccessPolicy` (do its issuers exist, which bundle revision includes it).
//!
//! Both follow the status pattern of `backends.rs`: compute the status, compare it with the old
//! one, and patch (server-side apply) only when it differs, so a converged resync writes nothing.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::Context;
use super::skeleton;
use crate::crd::conditions::{self, Desired, READY};
use crate::crd::issuer::IdentityIssuerStatus;
use crate::crd::policy::VolumeAccessPolicyStatus;
use crate::crd::reasons::{IssuerReason, PolicyReason};
use crate::crd::{IdentityIssuer, VolumeAccessPolicy};
use crate::gateway::compile::compile_bundle;
use crate::jwks::{FetchFailure, fail, fetch_key_ids, http_client};

#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// The issuer's new status from the fetch outcome. Key ids and the fetch time survive a failure;
/// the fetch time is rewritten only when the key ids change or after a failure, so a converged
/// resync computes the old status again.
pub(crate) fn issuer_status(
    old: &IdentityIssuerStatus,
    outcome: &Result<Vec<String>, FetchFailure>,
    now: Time,
) -> (IdentityIssuerStatus, Desired) {
    let was_ready = conditions::is_true(&old.conditions, READY);
    let (desired, key_ids, last) = match outcome {
        Ok(ids) => {
            let unchanged = was_ready && old.key_ids == *ids && old.last_jwks_fetch.is_some();
            let msg = format!("JWK Set fetched: {} key id(s)", ids.len());
            (
                Desired::new(READY, true, IssuerReason::JwksFetched, msg),
                ids.clone(),
                if unchanged {
                    old.last_jwks_fetch.clone()
                } else {
                    Some(now.clone())
                },
            )
        }
        Err(f) => (
            Desired::new(READY, false, f.reason, f.message.clone()),
            old.key_ids.clone(),
            old.last_jwks_fetch.clone(),
        ),
    };
    let status = IdentityIssuerStatus {
        key_ids,
        last_jwks_fetch: last,
        ..old.clone()
    };
    (status, desired)
}

pub(crate) async fn reconcile_issuer(
    i: Arc<IdentityIssuer>,
    ctx: Arc<Context>,
) -> Result<Action, AccessError> {
    let _guard = crate::metrics::ReconcileGuard::start("IdentityIssuer");
    if i.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let outcome = match http_client() {
        Ok(http) => fetch_key_ids(&http, &i.spec.issuer, i.spec.jwks_uri.as_deref()).await,
        Err(e) => Err(fail(
            IssuerReason::JwksUnreachable,
            format!("no HTTP client: {e}"),
        )),
    };
    let old = i.status.clone().unwrap_or_default();
    let (new, desired) = issuer_status(&old, &outcome, conditions::now());
    skeleton::report(&ctx, i.as_ref(), new, &[desired]).await?;
    Ok(if outcome.is_ok() {
        skeleton::settled(&ctx, i.as_ref())
    } else {
        skeleton::retry(&ctx, i.as_ref())
    })
}

/// Issuer names the policy's subjects refer to that are not in `issuers`, sorted.
pub(crate) fn unknown_issuers(p: &VolumeAccessPolicy, issuers: &[IdentityIssuer]) -> Vec<String> {
    let mut out: Vec<String> = p
        .spec
        .subjects
        .iter()
        .map(|s| s.issuer.clone())
        .filter(|n| {
            !issuers
                .iter()
                .any(|i| i.meta().deletion_timestamp.is_none() && i.name_any() == *n)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Subjects and groups that can never match: principals and groups reach policy prefixed with
/// their issuer's prefix (docs/edge-protocol.md §3.2), so an entry without it matches nobody.
/// An Allow written so allows nothing and a Deny never applies: both are refused loudly
/// (issue 12: the README's own example failed open). One message per entry, with the fix.
pub(crate) fn unmatchable_subjects(
    p: &VolumeAccessPolicy,
    issuers: &[IdentityIssuer],
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, s) in p.spec.subjects.iter().enumerate() {
        let Some(issuer) = issuers
            .iter()
            .find(|x| x.meta().deletion_timestamp.is_none() && x.name_any() == s.issuer)
        else {
            continue; // reported as an unknown issuer
        };
        let prefix = crate::gateway::compile::issuer_prefix(issuer);
        for (field, values) in [("subjects", &s.subjects), ("groups", &s.groups)] {
            for (j, v) in values.iter().enumerate() {
                if !v.starts_with(&prefix) {
                    out.push(format!(
                        "spec.subjects[{i}].{field}[{j}] {v:?} can never match: issuer {} prefixes {field} with {prefix:?}; write {:?}",
                        s.issuer,
                        format!("{prefix}{v}")
                    ));
                }
            }
        }
    }
    out
}

/// The policy's new status, given every issuer and every policy of its namespace.
pub(crate) fn policy_status(
    p: &VolumeAccessPolicy,
    issuers: &[IdentityIssuer],
    namespace_policies: &[VolumeAccessPolicy],
) -> (VolumeAccessPolicyStatus, Desired) {
    let old = p.status.clone().unwrap_or_default();
    let revision = compile_bundle(issuers, namespace_policies).bundle.revision;
    let unknown = unknown_issuers(p, issuers);
    let unmatchable = unmatchable_subjects(p, issuers);
    let desired = if !unknown.is_empty() {
        Desired::new(
            READY,
            false,
            PolicyReason::UnknownIssuer,
            format!("no IdentityIssuer named {}", unknown.join(", ")),
        )
    } else if !unmatchable.is_empty() {
        Desired::new(
            READY,
            false,
            PolicyReason::InvalidSpec,
            unmatchable.join("; "),
        )
    } else {
        Desired::new(
            READY,
            true,
            PolicyReason::Compiled,
            format!("part of bundle {revision}"),
        )
    };
    let status = VolumeAccessPolicyStatus {
        bundle_revision: Some(revision),
        ..old
    };
    (status, desired)
}

pub(crate) async fn reconcile_policy(
    p: Arc<VolumeAccessPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, AccessError> {
    let _guard = crate::metrics::ReconcileGuard::start("VolumeAccessPolicy");
    if p.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = p.namespace().unwrap_or_default();
    // Listed rather than read from a cache: an issuer change triggers this reconcile through a
    // watch that can run ahead of any other cache, and the revision must not lag behind.
    let issuers = Api::<IdentityIssuer>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let api = Api::<VolumeAccessPolicy>::namespaced(ctx.client.clone(), &ns);
    let policies = api.list(&ListParams::default()).await?;
    let (new, desired) = policy_status(&p, &issuers.items, &policies.items);
    skeleton::report(&ctx, p.as_ref(), new, &[desired]).await?;
    Ok(skeleton::settled(&ctx, p.as_ref()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::jwks::{allowed_url, key_ids_of};

    use crate::crd::conditions::Reason;

    use super::*;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).expect("valid timestamp"))
    }

    #[test]
    fn jwk_set_checks() {
        let ok = json!({"keys": [{"kty": "RSA", "kid": "b"}, {"kty": "EC", "kid": "a", "use": "sig"},
                                 {"kty": "RSA", "kid": "e", "use": "enc"}]});
        assert_eq!(key_ids_of(&ok).expect("valid set"), ["a", "b", "e"]);
        assert!(key_ids_of(&json!({"issuer": "x"})).is_err());
        assert!(key_ids_of(&json!({"keys": [{"kid": "a"}]})).is_err());
        assert!(key_ids_of(&json!({"keys": []})).is_err());
        assert!(key_ids_of(&json!({"keys": [{"kty": "RSA", "use": "enc"}]})).is_err());
    }

    #[test]
    fn fetch_time_moves_only_on_change_or_recovery() {
        let (first, ok) = issuer_status(&Default::default(), &Ok(vec!["a".into()]), t(10));
        assert!(ok.status);
        assert_eq!(first.last_jwks_fetch, Some(t(10)));
        // The fetch time is kept only while Ready holds; status_of merges the condition in.
        let ready = |s: IdentityIssuerStatus, d: &Desired| IdentityIssuerStatus {
            conditions: conditions::merge(&[], std::slice::from_ref(d), Some(1), t(0)),
            ..s
        };
        let first = ready(first, &ok);
        let (same, _) = issuer_status(&first, &Ok(vec!["a".into()]), t(20));
        assert_eq!(same, first, "a converged resync computes the old status");
        let (rotated, d) = issuer_status(&same, &Ok(vec!["b".into()]), t(30));
        assert_eq!(rotated.last_jwks_fetch, Some(t(30)));
        let rotated = ready(rotated, &d);
        let (down, d) = issuer_status(
            &rotated,
            &Err(fail(IssuerReason::JwksUnreachable, "gone")),
            t(40),
        );
        assert_eq!(down.key_ids, ["b"]);
        assert_eq!(down.last_jwks_fetch, Some(t(30)));
        assert!(!d.status);
        let down = ready(down, &d);
        let (back, _) = issuer_status(&down, &Ok(vec!["b".into()]), t(50));
        assert_eq!(back.last_jwks_fetch, Some(t(50)));
    }

    #[test]
    fn discovery_urls_must_be_https_or_loopback() {
        let ok = |s: &str| allowed_url(&url::Url::parse(s).expect("test URL"));
        assert!(ok("https://idp.example.com/jwks"));
        assert!(ok("http://127.0.0.1:8080/jwks"));
        assert!(ok("http://[::1]/jwks"));
        assert!(!ok("http://idp.example.com/jwks"));
        assert!(!ok("file:///etc/passwd"));
    }

    #[test]
    fn subjects_without_the_issuer_prefix_make_the_policy_invalid() {
        let issuer = |name: &str, prefix: Option<&str>| -> IdentityIssuer {
            let mut spec = json!({"issuer": "https://idp.example", "audiences": ["a"], "algorithms": ["ES256"]});
            if let Some(p) = prefix {
                spec["claimMapping"] = json!({"prefix": p});
            }
            serde_json::from_value(
                json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer",
                                          "metadata": {"name": name}, "spec": spec}),
            )
            .expect("issuer")
        };
        let policy = |effect: &str, subjects: serde_json::Value| -> VolumeAccessPolicy {
            serde_json::from_value(
                json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
                "metadata": {"name": "p", "namespace": "team-a"},
                "spec": {"effect": effect, "subjects": subjects, "actions": ["delete"]}}),
            )
            .expect("policy")
        };
        let issuers = [issuer("okta", Some("okta-prod:")), issuer("ci", None)];
        // The README's old example: an unprefixed group, in a Deny that would then never apply.
        let deny = policy(
            "Deny",
            json!([{"issuer": "okta", "groups": ["storage-automation"]},
                   {"issuer": "ci", "subjects": ["ci:job-1", "job-2"]}]),
        );
        let (_, d) = policy_status(&deny, &issuers, std::slice::from_ref(&deny));
        assert_eq!(
            (d.status, d.reason),
            (false, PolicyReason::InvalidSpec.as_str())
        );
        assert!(
            d.message
                .contains(r#"spec.subjects[0].groups[0] "storage-automation" can never match"#)
                && d.message
                    .contains(r#"write "okta-prod:storage-automation""#)
                && d.message
                    .contains(r#"spec.subjects[1].subjects[1] "job-2""#)
                && !d.message.contains("job-1"),
            "{}",
            d.message
        );
        // Prefixed as the issuers declare (custom and default): compiled, Ready.
        let ok = policy(
            "Allow",
            json!([{"issuer": "okta", "groups": ["okta-prod:storage-automation"]},
                   {"issuer": "ci", "subjects": ["ci:job-1"]}, {"issuer": "ci"}]),
        );
        let (_, d) = policy_status(&ok, &issuers, std::slice::from_ref(&ok));
        assert_eq!(
            (d.status, d.reason),
            (true, PolicyReason::Compiled.as_str())
        );
    }
}
