//! Fixtures shared by the Cloudflare scenarios: an account on the simulator, an issuer and a
//! read policy, as a cluster admin would create them.

use base64::Engine;
use edgebind::crd::{CloudflareAccount, IdentityIssuer, VolumeAccessPolicy};
use edgebind_sim::cloudflare::REALISTIC_ACCOUNT_ID as ACC;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::bed::NS;

/// The controller's namespace (API token Secret, gateway key Secret).
pub const SYS: &str = "edgebind-system";

pub async fn create<K>(api: &Api<K>, v: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).expect("fixture deserializes");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create fixture");
}

/// Namespace `SYS`, the API token Secret, CloudflareAccount `cf` on the simulator at `api_url`,
/// IdentityIssuer `okta`, and VolumeAccessPolicy `readers` in `NS` allowing group `storage`
/// the given actions.
pub async fn seed_account(c: &kube::Client, api_url: &str, token: &str, actions: &[&str]) {
    create(
        &Api::<Namespace>::all(c.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYS}}),
    )
    .await;
    let tok = base64::engine::general_purpose::STANDARD.encode(token);
    create(
        &Api::<Secret>::namespaced(c.clone(), SYS),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cf-token", "namespace": SYS},
               "data": {"token": tok}}),
    )
    .await;
    create(
        &Api::<CloudflareAccount>::all(c.clone()),
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "CloudflareAccount", "metadata": {"name": "cf"},
               "spec": {"accountId": ACC, "apiUrl": api_url, "timeoutSeconds": 5,
                        "apiToken": {"namespace": SYS, "name": "cf-token", "key": "token"},
                        "budget": {"requestsPerSecond": 3, "burst": 20}}}),
    )
    .await;
    create(
        &Api::<IdentityIssuer>::all(c.clone()),
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer", "metadata": {"name": "okta"},
               "spec": {"issuer": "https://idp.example.com", "audiences": ["api://edgebind"], "algorithms": ["RS256"]}}),
    )
    .await;
    create(
        &Api::<VolumeAccessPolicy>::namespaced(c.clone(), NS),
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
               "metadata": {"name": "readers", "namespace": NS},
               "spec": {"effect": "Allow", "subjects": [{"issuer": "okta", "groups": ["storage"]}], "actions": actions}}),
    )
    .await;
}
