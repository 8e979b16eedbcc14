//! The CEL rules in the CRDs, evaluated offline with kube's CEL engine: what the API server
//! would accept or refuse.

use serde_json::json;

use super::{EdgeSnapshot, EdgeVolume, LinstorBackend};

fn volume(spec: serde_json::Value) -> EdgeVolume {
    serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
        "metadata": {"name": "v", "namespace": "ns"},
        "spec": spec,
    }))
    .expect("test fixture is a valid EdgeVolume")
}

fn base() -> serde_json::Value {
    json!({"backendRef": "main", "size": "10Gi", "placement": {"placeCount": 2}})
}

fn with(mut v: serde_json::Value, path: &[&str], val: serde_json::Value) -> serde_json::Value {
    let mut cur = &mut v;
    for p in &path[..path.len() - 1] {
        cur = cur.get_mut(*p).expect("path exists");
    }
    cur[path[path.len() - 1]] = val;
    v
}

#[test]
fn valid_volume_passes() {
    volume(base()).validate_cel().expect("valid volume");
}

#[test]
fn size_must_be_a_positive_quantity() {
    assert!(
        volume(with(base(), &["size"], json!("ten gigs")))
            .validate_cel()
            .is_err()
    );
    assert!(
        volume(with(base(), &["size"], json!("0")))
            .validate_cel()
            .is_err()
    );
}

#[test]
fn size_never_shrinks() {
    let old = volume(base());
    let grown = volume(with(base(), &["size"], json!("20Gi")));
    grown.validate_cel_update(&old).expect("growing is allowed");
    let shrunk = volume(with(base(), &["size"], json!("9Gi")));
    let err = shrunk
        .validate_cel_update(&old)
        .expect_err("shrinking is refused");
    assert!(format!("{err:?}").contains("only grow"), "{err:?}");
}

#[test]
fn backend_is_immutable() {
    let old = volume(base());
    let moved = volume(with(base(), &["backendRef"], json!("other")));
    assert!(moved.validate_cel_update(&old).is_err());
}

#[test]
fn resource_group_excludes_explicit_placement() {
    let both = volume(with(
        base(),
        &["placement"],
        json!({"resourceGroup": "rg1", "placeCount": 3}),
    ));
    let err = both
        .validate_cel()
        .expect_err("resourceGroup with placeCount is refused");
    assert!(
        format!("{err:?}").contains("resourceGroup excludes"),
        "{err:?}"
    );
    volume(with(
        base(),
        &["placement"],
        json!({"resourceGroup": "rg1"}),
    ))
    .validate_cel()
    .expect("rg alone is fine");
}

#[test]
fn placement_rules_on_update() {
    let old = volume(with(
        base(),
        &["placement"],
        json!({"placeCount": 2, "layerList": ["drbd", "storage"]}),
    ));
    let more = volume(with(
        base(),
        &["placement"],
        json!({"placeCount": 3, "layerList": ["drbd", "storage"]}),
    ));
    more.validate_cel_update(&old)
        .expect("more replicas is allowed");
    let fewer = volume(with(
        base(),
        &["placement"],
        json!({"placeCount": 1, "layerList": ["drbd", "storage"]}),
    ));
    assert!(
        fewer.validate_cel_update(&old).is_err(),
        "fewer replicas is refused"
    );
    let relayered = volume(with(
        base(),
        &["placement"],
        json!({"placeCount": 2, "layerList": ["storage"]}),
    ));
    assert!(
        relayered.validate_cel_update(&old).is_err(),
        "layer change is refused"
    );
    let dropped = volume(with(base(), &["placement"], json!({"placeCount": 2})));
    assert!(
        dropped.validate_cel_update(&old).is_err(),
        "removing layerList is refused"
    );
    let rg_old = volume(with(base(), &["placement"], json!({"resourceGroup": "a"})));
    let rg_new = volume(with(base(), &["placement"], json!({"resourceGroup": "b"})));
    assert!(
        rg_new.validate_cel_update(&rg_old).is_err(),
        "resource group change is refused"
    );
}

#[test]
fn reserved_and_malformed_property_keys() {
    let reserved = volume(with(
        base(),
        &["properties"],
        json!({"edgebind.dev/owner": "x"}),
    ));
    assert!(reserved.validate_cel().is_err());
    let bad = volume(with(base(), &["properties"], json!({"has space": "x"})));
    assert!(bad.validate_cel().is_err());
    volume(with(base(), &["properties"], json!({"team": "storage"})))
        .validate_cel()
        .expect("plain key");
}

#[test]
fn source_cannot_be_added_later() {
    let old = volume(base());
    let restored = volume(with(base(), &["source"], json!({"snapshot": "s1"})));
    assert!(restored.validate_cel_update(&old).is_err());
    restored
        .validate_cel()
        .expect("a new volume may have a source");
}

#[test]
fn snapshot_volume_ref_is_immutable() {
    let mk = |v: &str| -> EdgeSnapshot {
        serde_json::from_value(
            json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeSnapshot",
            "metadata": {"name": "s", "namespace": "ns"}, "spec": {"volumeRef": v}}),
        )
        .expect("valid fixture")
    };
    assert!(mk("b").validate_cel_update(&mk("a")).is_err());
    mk("a").validate_cel_update(&mk("a")).expect("unchanged");
}

#[test]
fn backend_urls_need_a_scheme() {
    let mk = |u: &str| -> LinstorBackend {
        serde_json::from_value(
            json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "LinstorBackend",
            "metadata": {"name": "b"}, "spec": {"urls": [u]}}),
        )
        .expect("valid fixture")
    };
    assert!(mk("linstor-controller:3370").validate_cel().is_err());
    mk("http://linstor-controller:3370")
        .validate_cel()
        .expect("http URL");
}

fn binding(spec: serde_json::Value) -> super::EdgeBinding {
    serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
        "metadata": {"name": "b", "namespace": "ns"},
        "spec": spec,
    }))
    .expect("test fixture is a valid EdgeBinding")
}

fn binding_base() -> serde_json::Value {
    json!({"accountRef": "main", "zoneId": "023e105f4ecef8ad9ca31a8372d0c353",
           "routes": ["api.example.com/*"], "scriptName": "edgebind-gw",
           "gatewayUrl": "https://gw.example.com"})
}

#[test]
fn binding_rules() {
    binding(binding_base())
        .validate_cel()
        .expect("valid binding");
    let dup = binding(with(
        binding_base(),
        &["routes"],
        json!(["a.example.com/*", "a.example.com/*"]),
    ));
    assert!(dup.validate_cel().is_err(), "duplicate patterns refused");
    let query = binding(with(
        binding_base(),
        &["routes"],
        json!(["a.example.com/x?y=1"]),
    ));
    assert!(query.validate_cel().is_err(), "query strings refused");
    let ftp = binding(with(binding_base(), &["gatewayUrl"], json!("ftp://gw")));
    assert!(ftp.validate_cel().is_err());
    let old = binding(binding_base());
    let renamed = binding(with(binding_base(), &["scriptName"], json!("other")));
    let err = renamed.validate_cel_update(&old).expect_err("immutable");
    assert!(
        format!("{err:?}").contains("scriptName is immutable"),
        "{err:?}"
    );
}

#[test]
fn account_rules() {
    let acc = |id: &str| -> super::CloudflareAccount {
        serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "CloudflareAccount",
            "metadata": {"name": "main"},
            "spec": {"accountId": id, "apiToken": {"namespace": "edgebind", "name": "cf", "key": "token"}},
        }))
        .expect("valid CloudflareAccount fixture")
    };
    let a = acc("9a7806061c88ada191ed06f989cc3dac");
    a.validate_cel().expect("valid account");
    assert_eq!(a.spec.budget.requests_per_second, 2);
    assert_eq!(a.spec.budget.burst, 20);
    let b = acc("0a7806061c88ada191ed06f989cc3dac");
    assert!(b.validate_cel_update(&a).is_err(), "accountId immutable");
}
