//! One behaviour for both API servers: the same API interactions against the real kube-apiserver
//! and the fake one, compared answer by answer (status code, reason, message, the fields that
//! matter). Each difference found is fixed in the fake or listed in `docs/testing.md`.

use std::collections::BTreeMap;

use edgebind::crd::{self, EdgeVolume};
use edgebind_sim::kube::FakeApiServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
    WatchParams,
};
use serde_json::{Value, json};

use crate::support::apiserver::{self, Who};

fn volume(name: &str, size: &str, finalizers: &[&str]) -> EdgeVolume {
    serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
        "metadata": {"name": name, "labels": {"tier": if name.ends_with('1') { "gold" } else { "bronze" }},
                     "finalizers": finalizers},
        "spec": {"backendRef": "main", "size": size, "placement": {"placeCount": 2}}
    }))
    .expect("volume")
}

/// A uid differs between servers by nature.
fn without_uids(msg: &str) -> String {
    let re = regex::Regex::new("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
        .expect("regex");
    re.replace_all(msg, "<uid>").into_owned()
}

/// An error as the comparison sees it.
fn err(e: kube::Error) -> Value {
    match e {
        kube::Error::Api(s) => {
            json!({"code": s.code, "reason": s.reason, "message": without_uids(&s.message)})
        }
        other => json!({"client error": other.to_string()}),
    }
}

fn outcome<T>(r: Result<T, kube::Error>, ok: impl FnOnce(T) -> Value) -> Value {
    match r {
        Ok(v) => json!({"ok": ok(v)}),
        Err(e) => err(e),
    }
}

/// Runs every interaction in namespace `ns` and returns the answers by name. Values that differ
/// by nature between servers (uids, resource versions, timestamps) are left out or replaced.
async fn interactions(client: &kube::Client, ns: &str) -> BTreeMap<&'static str, Value> {
    let api: Api<EdgeVolume> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    let mut out = BTreeMap::new();

    out.insert(
        "get a missing object",
        outcome(api.get("nope").await, |_| json!("found")),
    );
    let v1 = api
        .create(&pp, &volume("vol-1", "1Gi", &[]))
        .await
        .expect("create vol-1");
    out.insert("generation starts at 1", json!(v1.metadata.generation));
    out.insert(
        "create a duplicate",
        outcome(api.create(&pp, &volume("vol-1", "1Gi", &[])).await, |_| {
            json!("created")
        }),
    );

    // Optimistic concurrency: an update with a stale resourceVersion.
    let mut stale = v1.clone();
    let mut fresh = v1.clone();
    fresh.spec.size = "2Gi".into();
    let v1b = api.replace("vol-1", &pp, &fresh).await.expect("update");
    out.insert(
        "a spec change bumps the generation",
        json!(v1b.metadata.generation),
    );
    stale.spec.size = "3Gi".into();
    out.insert(
        "update with a stale resourceVersion",
        outcome(api.replace("vol-1", &pp, &stale).await, |_| {
            json!("updated")
        }),
    );

    // Status is its own subresource: the main resource ignores status, /status ignores spec.
    let with_status = api
        .patch(
            "vol-1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"phase": "Ready"}, "metadata": {"labels": {"x": "y"}}}),
            ),
        )
        .await
        .expect("merge patch");
    out.insert(
        "status sent to the main resource is ignored",
        json!({"status": with_status.status.as_ref().and_then(|s| s.phase.map(|p| format!("{p:?}"))),
               "label": with_status.metadata.labels.as_ref().and_then(|l| l.get("x")).cloned()}),
    );
    let st = api
        .patch_status(
            "vol-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": "9Gi"}, "status": {"size": "2Gi"}})),
        )
        .await
        .expect("status patch");
    out.insert(
        "spec sent to /status is ignored; generation unchanged",
        json!({"spec.size": st.spec.size, "status.size": st.status.and_then(|s| s.size),
               "generation": st.metadata.generation}),
    );

    // Server-side apply: two managers, a conflict, force, then the first manager has lost it.
    let ssa = |mgr: &str, force: bool| {
        let mut p = PatchParams::apply(mgr);
        p.force = force;
        p
    };
    let config = |owner: &str| {
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
               "metadata": {"name": "vol-2"},
               "spec": {"backendRef": "main", "size": "1Gi", "placement": {"placeCount": 2},
                        "properties": {"owner": owner}}})
    };
    let owner = |v: EdgeVolume| json!(v.spec.properties.get("owner"));
    out.insert(
        "apply creates",
        outcome(
            api.patch(
                "vol-2",
                &ssa("alice", false),
                &Patch::Apply(&config("alice")),
            )
            .await,
            |v| json!({"generation": v.metadata.generation, "owner": owner(v)}),
        ),
    );
    out.insert(
        "a second manager applies the same values: no conflict",
        outcome(
            api.patch(
                "vol-2",
                &ssa("carol", false),
                &Patch::Apply(&config("alice")),
            )
            .await,
            owner,
        ),
    );
    out.insert(
        "a second manager changes a field another owns",
        outcome(
            api.patch("vol-2", &ssa("bob", false), &Patch::Apply(&config("bob")))
                .await,
            owner,
        ),
    );
    out.insert(
        "forced, it takes the field over",
        outcome(
            api.patch("vol-2", &ssa("bob", true), &Patch::Apply(&config("bob")))
                .await,
            owner,
        ),
    );
    out.insert(
        "the first manager now conflicts with the new owner",
        outcome(
            api.patch(
                "vol-2",
                &ssa("alice", false),
                &Patch::Apply(&config("alice")),
            )
            .await,
            owner,
        ),
    );
    let mut unknown = config("bob");
    unknown["spec"]["bogus"] = json!(1);
    out.insert(
        "apply with an undeclared field",
        outcome(
            api.patch("vol-2", &ssa("bob", false), &Patch::Apply(&unknown))
                .await,
            owner,
        ),
    );

    // Preconditions on delete.
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("00000000-0000-0000-0000-000000000000".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    out.insert(
        "delete with the wrong uid",
        outcome(api.delete("vol-1", &dp).await, |_| json!("deleted")),
    );

    // Finalizers: deletion waits for them; the object then goes.
    api.create(&pp, &volume("vol-3", "1Gi", &["example.com/hold"]))
        .await
        .expect("create vol-3");
    let _ = api.delete("vol-3", &DeleteParams::default()).await;
    let held = api.get("vol-3").await;
    out.insert(
        "delete with a finalizer keeps the object",
        outcome(held, |v| {
            json!({"deleting": v.metadata.deletion_timestamp.is_some(),
                   "finalizers": v.metadata.finalizers})
        }),
    );
    out.insert(
        "a deleting object takes no new finalizer",
        outcome(
            api.patch(
                "vol-3",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"finalizers": ["example.com/hold", "example.com/other"]}}),
                ),
            )
            .await,
            |v| json!(v.metadata.finalizers),
        ),
    );
    let released = api
        .patch(
            "vol-3",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    out.insert(
        "removing the last finalizer",
        outcome(released, |_| json!("still there")),
    );
    out.insert(
        "then it is gone",
        outcome(api.get("vol-3").await, |_| json!("found")),
    );

    // Lists: label selectors and paging.
    let gold = api
        .list(&ListParams::default().labels("tier=gold"))
        .await
        .expect("list");
    out.insert(
        "list by label",
        json!(
            gold.items
                .iter()
                .map(|v| v.metadata.name.clone())
                .collect::<Vec<_>>()
        ),
    );
    let page = api
        .list(&ListParams::default().limit(1))
        .await
        .expect("page");
    out.insert(
        "a page of one",
        json!({"items": page.items.len(), "continue": page.metadata.continue_.is_some(),
               "remaining": page.metadata.remaining_item_count}),
    );

    // A watch from a resourceVersion the server no longer holds.
    let stream = api.watch(&WatchParams::default(), "1").await;
    let first = match stream {
        Err(e) => err(e),
        Ok(s) => {
            let mut s = s.boxed();
            match tokio::time::timeout(std::time::Duration::from_secs(5), s.next()).await {
                Ok(Some(Ok(WatchEvent::Error(e)))) => {
                    json!({"event": "ERROR", "code": e.code, "reason": e.reason})
                }
                Ok(Some(Ok(other))) => json!({"event": format!("{other:?}").split('(').next()}),
                Ok(Some(Err(e))) => err(e),
                Ok(None) => json!("stream ended"),
                Err(_) => json!("no event within 5 s"),
            }
        }
    };
    out.insert("watch from resourceVersion 1", first);
    out
}

#[tokio::test]
async fn the_fake_api_server_answers_like_the_real_one() {
    let server = apiserver::shared();
    assert!(apiserver::install_crds(server).await.is_empty());
    let ns = server.namespace("conformance").await;
    let real = interactions(&server.client(Who::Admin).await, &ns).await;

    let kube = FakeApiServer::start().await.expect("fake API server");
    for c in crd::all() {
        kube.try_install_crd(&c).expect("CRD installs");
    }
    let client = kube.client();
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("namespace");
    let fake = interactions(&client, &ns).await;

    let differ: Vec<String> = real
        .iter()
        .filter(|(k, v)| fake.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k}:\n  real {v}\n  fake {}",
                fake.get(k).cloned().unwrap_or_default()
            )
        })
        .collect();
    assert!(differ.is_empty(), "fake vs real:\n{}", differ.join("\n"));
}
