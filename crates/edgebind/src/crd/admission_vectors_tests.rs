//! The admission vectors (`tests/vectors/admission.json`), evaluated offline by kube's CEL
//! engine. The integration tests send the same cases to the real kube-apiserver and to the fake
//! one, so the three cannot drift apart.

use serde_json::{Value, json};

use super::{
    CloudflareAccount, EdgeBinding, EdgeSnapshot, EdgeVolume, IdentityIssuer, LinstorBackend,
    VolumeAccessPolicy,
};

const VECTORS: &str = include_str!("../../../../tests/vectors/admission.json");

fn object(kind: &str, spec: &Value) -> Value {
    json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": kind,
           "metadata": {"name": "x", "namespace": "ns"}, "spec": spec})
}

/// `Err(message)` when the CEL rules refuse the case.
fn admit(case: &Value) -> Result<(), String> {
    let kind = case["kind"].as_str().expect("kind");
    macro_rules! run {
        ($t:ty) => {{
            let new: $t = serde_json::from_value(object(kind, &case["spec"])).expect("spec parses");
            match case.get("old") {
                Some(old) => {
                    let old: $t = serde_json::from_value(object(kind, old)).expect("old parses");
                    new.validate_cel_update(&old).map_err(|e| format!("{e:?}"))
                }
                None => new.validate_cel().map_err(|e| format!("{e:?}")),
            }
        }};
    }
    match kind {
        "EdgeVolume" => run!(EdgeVolume),
        "EdgeSnapshot" => run!(EdgeSnapshot),
        "LinstorBackend" => run!(LinstorBackend),
        "EdgeBinding" => run!(EdgeBinding),
        "CloudflareAccount" => run!(CloudflareAccount),
        "IdentityIssuer" => run!(IdentityIssuer),
        "VolumeAccessPolicy" => run!(VolumeAccessPolicy),
        other => panic!("unknown kind {other}"),
    }
}

#[test]
fn every_admission_vector_holds_offline() {
    let doc: Value = serde_json::from_str(VECTORS).expect("admission.json parses");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 40, "the vectors cover every rule");
    let mut wrong = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        if case["schema"].as_bool() == Some(true) {
            continue;
        }
        let refused = case["refused"].as_bool().expect("refused");
        match (admit(case), refused) {
            (Ok(()), false) => {}
            (Err(msg), true) => {
                if let Some(want) = case["message"].as_str()
                    && !msg.contains(want)
                {
                    wrong.push(format!("{name}: refused with {msg}, not {want:?}"));
                }
            }
            (Ok(()), true) => wrong.push(format!("{name}: accepted, should be refused")),
            (Err(msg), false) => wrong.push(format!("{name}: refused ({msg}), should pass")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn account_budget_defaults() {
    let a: CloudflareAccount = serde_json::from_value(object(
        "CloudflareAccount",
        &json!({
            "accountId": "9a7806061c88ada191ed06f989cc3dac",
            "apiToken": {"namespace": "edgebind-system", "name": "cf", "key": "token"}
        }),
    ))
    .expect("account");
    assert_eq!(a.spec.budget.requests_per_second, 2);
    assert_eq!(a.spec.budget.burst, 20);
}
