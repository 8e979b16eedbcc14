//! Against a real kube-apiserver (support/apiserver.rs): the CRDs are accepted, and every case of
//! the admission vectors is decided by the real server as by the fake one and the offline CEL
//! engine.

use edgebind::crd;
use edgebind_sim::kube::FakeApiServer;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::discovery::{ApiCapabilities, Scope};
use serde_json::{Value, json};

use crate::support::apiserver::{self, Who};

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/vectors/admission.json"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("admission.json")).unwrap();
    doc["cases"].as_array().expect("cases").clone()
}

fn resource(kind: &str) -> (ApiResource, bool) {
    let plural = match kind {
        "EdgeVolume" => "edgevolumes",
        "EdgeSnapshot" => "edgesnapshots",
        "LinstorBackend" => "linstorbackends",
        "EdgeBinding" => "edgebindings",
        "CloudflareAccount" => "cloudflareaccounts",
        "IdentityIssuer" => "identityissuers",
        "VolumeAccessPolicy" => "volumeaccesspolicies",
        other => panic!("unknown kind {other}"),
    };
    let namespaced = !matches!(
        kind,
        "LinstorBackend" | "CloudflareAccount" | "IdentityIssuer"
    );
    let ar = ApiResource {
        group: "edgebind.dev".into(),
        version: "v1alpha1".into(),
        api_version: "edgebind.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    (ar, namespaced)
}

/// Sends one case: a create, or a create of `old` then an update to `spec`. `Err` carries the
/// server's refusal message.
async fn send(
    client: &kube::Client,
    ns: &str,
    name: &str,
    case: &Value,
) -> Result<(), (u16, String)> {
    let kind = case["kind"].as_str().expect("kind");
    let (ar, namespaced) = resource(kind);
    let api: Api<DynamicObject> = if namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    };
    let obj = |spec: &Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec,
        }))
        .expect("object")
    };
    let refusal = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => (0, other.to_string()),
    };
    let pp = PostParams::default();
    match case.get("old") {
        None => api
            .create(&pp, &obj(&case["spec"]))
            .await
            .map(|_| ())
            .map_err(refusal),
        Some(old) => {
            let created = api
                .create(&pp, &obj(old))
                .await
                .unwrap_or_else(|e| panic!("{name}: the old object is accepted: {e}"));
            let mut new = obj(&case["spec"]);
            new.metadata.resource_version = created.metadata.resource_version;
            api.replace(name, &pp, &new)
                .await
                .map(|_| ())
                .map_err(refusal)
        }
    }
}

/// Every case against one server, in order: `Ok` or the refusal's code and message.
async fn decide_all(client: &kube::Client, ns: &str) -> Vec<Result<(), (u16, String)>> {
    let mut out = Vec::new();
    for (i, case) in vectors().iter().enumerate() {
        out.push(send(client, ns, &format!("adm-{i}"), case).await);
    }
    out
}

/// What a server decided that the vectors did not expect.
fn disagreements(decided: &[Result<(), (u16, String)>]) -> Vec<String> {
    let mut out = Vec::new();
    for (case, got) in vectors().iter().zip(decided) {
        let what = case["name"].as_str().unwrap_or("?");
        let refused = case["refused"].as_bool().expect("refused");
        match (got, refused) {
            (Ok(()), false) => {}
            (Ok(()), true) => out.push(format!("{what}: accepted, should be refused")),
            (Err((code, msg)), true) => {
                if *code != 422 {
                    out.push(format!(
                        "{what}: refused with {code}, not 422 Invalid: {msg}"
                    ));
                }
                if let Some(want) = case["message"].as_str()
                    && !msg.contains(want)
                {
                    out.push(format!("{what}: refused with {msg:?}, not {want:?}"));
                }
            }
            (Err((code, msg)), false) => out.push(format!("{what}: refused ({code} {msg})")),
        }
    }
    out
}

/// `kubectl get <short name>` must keep meaning what it means: no short name, plural or kind of
/// ours may be one that a built-in resource of the real API server already answers to (issue 13:
/// `ev` shadowed core Events, `vap` ValidatingAdmissionPolicies).
#[tokio::test]
async fn our_short_names_collide_with_no_built_in_resource() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList};

    let server = apiserver::shared();
    let client = server.client(Who::Admin).await;
    let get = |path: String| http::Request::get(path).body(Vec::new()).expect("request");
    let mut lists: Vec<APIResourceList> =
        vec![client.request(get("/api/v1".into())).await.expect("core")];
    let groups: APIGroupList = client.request(get("/apis".into())).await.expect("groups");
    for g in groups.groups.iter().filter(|g| g.name != "edgebind.dev") {
        for v in &g.versions {
            lists.push(
                client
                    .request(get(format!("/apis/{}", v.group_version)))
                    .await
                    .expect("group version"),
            );
        }
    }
    let mut taken = std::collections::BTreeSet::<String>::new();
    for r in lists.iter().flat_map(|l| &l.resources) {
        taken.insert(r.name.to_lowercase());
        taken.insert(r.kind.to_lowercase());
        if !r.singular_name.is_empty() {
            taken.insert(r.singular_name.to_lowercase());
        }
        taken.extend(r.short_names.iter().flatten().map(|s| s.to_lowercase()));
    }
    assert!(
        taken.contains("ev") && taken.contains("po"),
        "discovery read: {} names",
        taken.len()
    );
    for c in crd::all() {
        let n = &c.spec.names;
        let ours = n
            .short_names
            .iter()
            .flatten()
            .chain([&n.plural, &n.kind])
            .map(|s| s.to_lowercase());
        for name in ours {
            assert!(
                !taken.contains(&name),
                "{} answers to {name:?}, as a built-in resource does",
                n.kind
            );
        }
    }
}

#[tokio::test]
async fn the_real_api_server_accepts_every_crd() {
    let server = apiserver::shared();
    let refused = apiserver::install_crds(server).await;
    assert!(
        refused.is_empty(),
        "the real API server refused: {refused:#?}"
    );
    // Printer columns and the status subresource are served as declared.
    let client = server.client(Who::Admin).await;
    let discovery = kube::Discovery::new(client)
        .filter(&["edgebind.dev"])
        .run()
        .await
        .expect("discovery");
    let kinds: Vec<(String, ApiCapabilities)> = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .map(|(ar, caps)| (ar.kind, caps))
        .collect();
    assert_eq!(kinds.len(), crd::all().len(), "{kinds:?}");
    for (kind, caps) in &kinds {
        let cluster = matches!(
            kind.as_str(),
            "LinstorBackend" | "CloudflareAccount" | "IdentityIssuer"
        );
        assert_eq!(caps.scope == Scope::Cluster, cluster, "{kind} scope");
        assert!(
            caps.subresources.iter().any(|(s, _)| s.plural == "status"),
            "{kind} has a status subresource"
        );
    }
}

/// The admission vectors against the real server (as documented) and the fake one (exactly as
/// the real one: status code and message).
#[tokio::test]
async fn both_api_servers_decide_every_admission_vector_alike() {
    let server = apiserver::shared();
    assert!(apiserver::install_crds(server).await.is_empty());
    let ns = server.namespace("admission").await;
    let real = decide_all(&server.client(Who::Admin).await, &ns).await;
    let wrong = disagreements(&real);
    assert!(
        wrong.is_empty(),
        "real kube-apiserver:\n{}",
        wrong.join("\n")
    );

    let kube = FakeApiServer::start().await.expect("fake API server");
    for c in crd::all() {
        kube.try_install_crd(&c).expect("CRD installs");
    }
    let client = kube.client();
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let fake = decide_all(&client, &ns).await;
    let differ: Vec<String> = vectors()
        .iter()
        .zip(real.iter().zip(&fake))
        .filter(|(_, (r, f))| r != f)
        .map(|(c, (r, f))| format!("{}:\n  real {r:?}\n  fake {f:?}", c["name"]))
        .collect();
    assert!(differ.is_empty(), "fake vs real:\n{}", differ.join("\n"));
}
