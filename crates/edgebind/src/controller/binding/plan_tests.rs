//! Unit tests of the pure binding plan.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::plan::*;
use crate::cloudflare::ops::{CfOp, SecretValue};
use crate::cloudflare::types::{Route, ScriptInfo};
use crate::cloudflare::upload::ScriptUpload;
use crate::crd::binding::EdgeBindingStatus;

const TAG: &str = "edgebind-uid-1";

fn desired() -> Desired {
    Desired {
        upload: ScriptUpload {
            script_name: "gw".into(),
            module: Bytes::from_static(b"export default { fetch() {} }"),
            compatibility_date: "2025-09-01".into(),
            plain_bindings: vec![("GATEWAY_URL".into(), "https://gw.example.com".into())],
            tags: vec![TAG.into()],
            vpc_services: Vec::new(),
        },
        zone: "z".into(),
        routes: vec!["api.example.com/*".into()],
        secrets: BTreeMap::from([
            ("ISSUERS".to_string(), SecretValue::new("[]")),
            ("POLICY_BUNDLE".to_string(), SecretValue::new("{}")),
        ]),
        owner_tag: TAG.into(),
    }
}

fn route(id: &str, pattern: &str, script: Option<&str>) -> Route {
    Route {
        id: id.into(),
        pattern: pattern.into(),
        script: script.map(str::to_string),
    }
}

/// The state after a successful first publish.
fn converged() -> (Observed, EdgeBindingStatus) {
    let d = desired();
    let observed = Observed {
        script: Some(ScriptInfo {
            id: "gw".into(),
            etag: Some("e1".into()),
            tags: Some(vec![TAG.into()]),
            modified_on: None,
        }),
        routes: vec![route("r1", "api.example.com/*", Some("gw"))],
        secret_names: BTreeSet::from(["ISSUERS".to_string(), "POLICY_BUNDLE".to_string()]),
    };
    let status = EdgeBindingStatus {
        script_etag: Some("e1".into()),
        script_hash: Some(d.upload.content_hash()),
        route_ids: BTreeMap::from([("api.example.com/*".to_string(), "r1".to_string())]),
        secret_hashes: d
            .secrets
            .iter()
            .map(|(k, v)| (k.clone(), v.hash()))
            .collect(),
        ..Default::default()
    };
    (observed, status)
}

fn kinds(ops: &[CfOp]) -> Vec<&'static str> {
    ops.iter().map(|o| o.endpoint().0).collect()
}

#[test]
fn first_publish_uploads_sets_secrets_and_creates_routes() {
    let p = plan(
        &desired(),
        &Observed::default(),
        &EdgeBindingStatus::default(),
    );
    // The secrets ride in the upload: two writes, not three.
    assert_eq!(kinds(&p.ops), vec!["PUT", "POST"]);
    match &p.ops[0] {
        CfOp::UploadScript { secrets, .. } => assert_eq!(secrets.len(), 2),
        o => panic!("unexpected {o:?}"),
    }
    assert!(p.conflicts.is_empty() && p.script_conflict.is_none());
}

#[test]
fn converged_binding_plans_nothing() {
    let (o, s) = converged();
    let p = plan(&desired(), &o, &s);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(
        p.kept_routes.get("api.example.com/*").map(String::as_str),
        Some("r1")
    );
}

#[test]
fn changed_bundle_updates_only_that_secret() {
    let (o, s) = converged();
    let mut d = desired();
    d.secrets
        .insert("POLICY_BUNDLE".into(), SecretValue::new("{\"version\":1}"));
    let p = plan(&d, &o, &s);
    assert_eq!(p.ops.len(), 1, "{:?}", p.ops);
    match &p.ops[0] {
        CfOp::PutSecrets { secrets, .. } => {
            assert_eq!(secrets.keys().collect::<Vec<_>>(), vec!["POLICY_BUNDLE"])
        }
        o => panic!("unexpected {o:?}"),
    }
}

#[test]
fn missing_secret_is_rewritten_even_with_matching_hash() {
    let (mut o, s) = converged();
    o.secret_names.remove("ISSUERS");
    let p = plan(&desired(), &o, &s);
    assert_eq!(kinds(&p.ops), vec!["PATCH"]);
}

#[test]
fn script_change_or_drift_reuploads_without_touching_secrets() {
    let (o, s) = converged();
    let mut d = desired();
    d.upload.module = Bytes::from_static(b"export default { fetch() { return 2 } }");
    assert_eq!(kinds(&plan(&d, &o, &s).ops), vec!["PUT"]);
    let mut drifted = o.clone();
    drifted.script.as_mut().unwrap().etag = Some("someone-else".into());
    assert_eq!(kinds(&plan(&desired(), &drifted, &s).ops), vec!["PUT"]);
}

#[test]
fn foreign_route_is_a_conflict_and_untouched() {
    let (mut o, s) = converged();
    o.routes
        .push(route("f1", "API.example.com/other/*", Some("someone")));
    let mut d = desired();
    d.routes.push("api.example.com/other/*".into());
    let p = plan(&d, &o, &s);
    assert!(p.ops.is_empty(), "{:?}", p.ops);
    assert_eq!(
        p.conflicts,
        vec![RouteConflict {
            pattern: "api.example.com/other/*".into(),
            route_id: "f1".into(),
            script: Some("someone".into())
        }]
    );
}

#[test]
fn our_repointed_route_is_put_back_and_unwanted_ours_deleted() {
    let (mut o, mut s) = converged();
    o.routes[0].script = Some("intruder".into());
    let p = plan(&desired(), &o, &s);
    assert!(matches!(&p.ops[..], [CfOp::UpdateRoute { id, .. }] if id == "r1"));

    let (mut o, _) = converged();
    o.routes.push(route("r2", "old.example.com/*", Some("gw")));
    o.routes
        .push(route("f2", "foreign.example.com/*", Some("other")));
    s.route_ids.insert("old.example.com/*".into(), "r2".into());
    s.route_ids
        .insert("foreign.example.com/*".into(), "f2".into());
    let p = plan(&desired(), &o, &s);
    assert!(
        matches!(&p.ops[..], [CfOp::DeleteRoute { id, .. }] if id == "r2"),
        "only our route that still points at our script is deleted: {:?}",
        p.ops
    );
}

#[test]
fn foreign_script_with_our_name_is_never_written() {
    let (mut o, s) = converged();
    o.script.as_mut().unwrap().tags = Some(vec!["someone-else".into()]);
    let p = plan(&desired(), &o, &s);
    assert!(p.ops.is_empty());
    assert!(p.script_conflict.is_some());
    let c = plan_cleanup("gw", TAG, "z", false, &o, &s);
    assert!(
        c.iter().all(|op| !matches!(op, CfOp::DeleteScript { .. })),
        "{c:?}"
    );
}

#[test]
fn cleanup_removes_ours_only() {
    let (mut o, s) = converged();
    o.routes.push(route("f1", "x.example.com/*", Some("other")));
    let c = plan_cleanup("gw", TAG, "z", false, &o, &s);
    assert_eq!(kinds(&c), vec!["DELETE", "DELETE"]);
    assert!(matches!(&c[0], CfOp::DeleteRoute { id, .. } if id == "r1"));
    assert!(matches!(&c[1], CfOp::DeleteScript { .. }));
    let keep = plan_cleanup("gw", TAG, "z", true, &o, &s);
    assert!(matches!(&keep[0], CfOp::DeleteRoute { id, .. } if id == "r1"));
    let secrets: Vec<_> = keep
        .iter()
        .filter_map(|op| match op {
            CfOp::DeleteSecret { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(secrets, vec!["ISSUERS", "POLICY_BUNDLE"]);
    assert_eq!(keep.len(), 3);
}

#[test]
fn only_a_split_or_partial_deployment_is_gradual() {
    use crate::cloudflare::types::{Deployment, DeploymentVersion};
    let d = |vs: &[(&str, f64)]| Deployment {
        id: "d".into(),
        versions: vs
            .iter()
            .map(|(id, p)| DeploymentVersion {
                version_id: id.to_string(),
                percentage: *p,
            })
            .collect(),
    };
    assert_eq!(gradual("w", &d(&[("a", 100.0)])), None);
    assert_eq!(gradual("w", &d(&[])), None);
    let split = gradual("w", &d(&[("a", 90.0), ("b", 10.0)])).expect("a split is gradual");
    assert!(
        split.contains("version a at 90%") && split.contains("version b at 10%"),
        "{split}"
    );
    assert!(gradual("w", &d(&[("a", 50.0)])).is_some());
}
