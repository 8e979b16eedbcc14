//! CEL rules of IdentityIssuer and VolumeAccessPolicy, evaluated offline.

use serde_json::{Value, json};

use super::{IdentityIssuer, VolumeAccessPolicy};

fn issuer(spec: Value) -> IdentityIssuer {
    serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer",
        "metadata": {"name": "okta"}, "spec": spec,
    }))
    .expect("test fixture is a valid IdentityIssuer")
}

fn policy(spec: Value) -> VolumeAccessPolicy {
    serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
        "metadata": {"name": "p", "namespace": "team-a"}, "spec": spec,
    }))
    .expect("test fixture is a valid VolumeAccessPolicy")
}

fn base_policy() -> Value {
    json!({"effect": "Allow", "subjects": [{"issuer": "okta"}], "actions": ["read"]})
}

#[test]
fn issuer_url_must_be_https_or_loopback() {
    let ok = |u: &str| {
        issuer(json!({"issuer": u, "audiences": ["a"], "algorithms": ["RS256"]}))
            .validate_cel()
            .is_ok()
    };
    assert!(ok("https://acme.okta.com/oauth2/default"));
    assert!(ok("http://127.0.0.1:8080"));
    assert!(ok("http://localhost/x"));
    assert!(!ok("http://acme.example"));
    assert!(!ok("http://localhost.evil.example"));
}

#[test]
fn rate_limit_only_on_allow() {
    let mut spec = base_policy();
    spec["rateLimit"] = json!({"requestsPerMinute": 60});
    policy(spec.clone())
        .validate_cel()
        .expect("allow with rate limit");
    spec["effect"] = json!("Deny");
    let err = policy(spec)
        .validate_cel()
        .expect_err("deny with rate limit");
    assert!(
        format!("{err:?}").contains("Allow policies only"),
        "{err:?}"
    );
}

#[test]
fn actions_do_not_repeat() {
    let mut spec = base_policy();
    spec["actions"] = json!(["read", "read"]);
    assert!(policy(spec).validate_cel().is_err());
}

#[test]
fn label_requirements_are_well_formed() {
    let with_expr = |e: Value| {
        let mut spec = base_policy();
        spec["volumes"] = json!({"labelSelector": {"matchExpressions": [e]}});
        policy(spec).validate_cel()
    };
    assert!(with_expr(json!({"key": "env", "operator": "In", "values": ["dev"]})).is_ok());
    assert!(with_expr(json!({"key": "env", "operator": "Exists"})).is_ok());
    assert!(with_expr(json!({"key": "env", "operator": "In"})).is_err());
    assert!(with_expr(json!({"key": "env", "operator": "Exists", "values": ["x"]})).is_err());
    assert!(with_expr(json!({"key": "env", "operator": "Equals", "values": ["x"]})).is_err());
}

#[test]
fn source_ips_must_be_cidrs() {
    let mut spec = base_policy();
    spec["conditions"] = json!({"sourceIpCidrs": ["203.0.113.0/24", "2001:db8::/32"]});
    policy(spec.clone()).validate_cel().expect("valid CIDRs");
    spec["conditions"] = json!({"sourceIpCidrs": ["203.0.113.0/33"]});
    assert!(policy(spec).validate_cel().is_err());
}
