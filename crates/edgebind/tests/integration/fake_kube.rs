//! The fake API server driven only through the real kube client, runtime and controller.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use edgebind_sim::kube::FakeApiServer;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "test.edgebind.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
pub struct WidgetSpec {
    size: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    colour: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct WidgetCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default)]
    conditions: Vec<WidgetCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// The test CRD with one CEL rule added to the spec schema.
fn widget_crd() -> CustomResourceDefinition {
    let mut crd = serde_json::to_value(Widget::crd()).expect("CRD serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] =
        json!([{"rule": "self.size >= 0", "message": "size must not be negative"}]);
    serde_json::from_value(crd).expect("CRD deserializes")
}

async fn server() -> (FakeApiServer, Client) {
    let server = FakeApiServer::start().await.expect("fake server starts");
    server
        .try_install_crd(&widget_crd())
        .expect("test CRD is accepted");
    let client = server.client();
    (server, client)
}

fn widget(name: &str, size: i32) -> Widget {
    Widget::new(name, WidgetSpec { size, colour: None })
}

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let mut c = ConfigMap::default();
    c.metadata.name = Some(name.into());
    c.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    c.data = Some([("k".to_string(), "v".to_string())].into());
    c
}

fn api_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Polls `check` until it returns Some or 10 s pass.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn typed_crud_on_configmaps_and_secrets() {
    let (server, client) = server().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1: u64 = created.resource_version().unwrap().parse().unwrap();

    let err = cms
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 409);

    let mut got = cms.get("a").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "v");
    got.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = cms
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    let rv2: u64 = replaced.resource_version().unwrap().parse().unwrap();
    assert!(rv2 > rv1);
    assert_eq!(replaced.metadata.uid, created.metadata.uid);

    // A write based on the stale object is refused.
    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "x".to_string())].into());
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 409);

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let mut s = Secret::default();
    s.metadata.generate_name = Some("tok-".into());
    s.string_data = None;
    s.data = Some([("t".to_string(), k8s_openapi::ByteString(b"x".to_vec()))].into());
    let s = secrets.create(&PostParams::default(), &s).await.unwrap();
    let sname = s.name_any();
    assert!(sname.starts_with("tok-") && sname.len() == 9, "{sname}");
    assert_eq!(
        secrets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_code(cms.get("a").await.unwrap_err()), 404);
    assert!(
        server
            .get("", "v1", "configmaps", Some("default"), "a")
            .is_none()
    );

    // Namespaces must exist, as on a real cluster.
    let missing: Api<ConfigMap> = Api::namespaced(client, "nowhere");
    let err = missing
        .create(&PostParams::default(), &cm("b", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 404);
}

#[tokio::test]
async fn generation_moves_only_with_spec_and_status_is_separate() {
    let (_server, client) = server().await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    let mut w = widget("w", 1);
    w.status = Some(WidgetStatus {
        message: Some("set by create".into()),
        ..Default::default()
    });
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    assert!(w.status.is_none(), "create must not set status");

    let pp = PatchParams::default();
    let w = api
        .patch(
            "w",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));

    let w = api
        .patch("w", &pp, &Patch::Merge(json!({"spec": {"size": 2}})))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));

    let w = api
        .patch_status(
            "w",
            &pp,
            &Patch::Merge(json!({"status": {"message": "ok"}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    assert_eq!(w.spec.size, 2, "a status write cannot change spec");
    assert_eq!(w.status.as_ref().unwrap().message.as_deref(), Some("ok"));

    let w = api
        .patch(
            "w",
            &pp,
            &Patch::Merge(json!({"status": {"message": "ignored"}})),
        )
        .await
        .unwrap();
    assert_eq!(w.status.as_ref().unwrap().message.as_deref(), Some("ok"));
}

#[tokio::test]
async fn no_op_patch_keeps_resource_version() {
    let (server, client) = server().await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    let w = api
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    let before = server.resource_version();
    let same = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version(), w.resource_version());
    assert_eq!(server.resource_version(), before);
    let applied = api
        .patch(
            "w",
            &PatchParams::apply("t"),
            &Patch::Apply(
                json!({"apiVersion": "test.edgebind.io/v1", "kind": "Widget", "spec": {"size": 1}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.resource_version(), w.resource_version());
}

#[tokio::test]
async fn server_side_apply_merges_conditions_by_type_and_drops_unapplied_fields() {
    let (_server, client) = server().await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    let apply = |conds: Value, message: Option<&str>| {
        let mut status = json!({"conditions": conds});
        if let Some(m) = message {
            status["message"] = json!(m);
        }
        Patch::Apply(
            json!({"apiVersion": "test.edgebind.io/v1", "kind": "Widget", "status": status}),
        )
    };
    let one = PatchParams::apply("one").force();
    let two = PatchParams::apply("two").force();
    api.patch_status(
        "w",
        &one,
        &apply(json!([{"type": "Ready", "status": "False"}]), Some("boom")),
    )
    .await
    .unwrap();
    api.patch_status(
        "w",
        &two,
        &apply(json!([{"type": "Synced", "status": "True"}]), None),
    )
    .await
    .unwrap();
    let w = api
        .patch_status(
            "w",
            &one,
            &apply(json!([{"type": "Ready", "status": "True"}]), None),
        )
        .await
        .unwrap();
    let st = w.status.unwrap();
    let mut conds: Vec<(String, String)> = st
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    conds.sort();
    assert_eq!(
        conds,
        vec![
            ("Ready".into(), "True".into()),
            ("Synced".into(), "True".into())
        ]
    );
    assert_eq!(
        st.message, None,
        "a field its manager stopped applying is removed"
    );

    // A manager that stops applying a keyed item removes it, leaving others' items.
    let w = api
        .patch_status("w", &two, &apply(json!([]), None))
        .await
        .unwrap();
    let types: Vec<String> = w
        .status
        .unwrap()
        .conditions
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(types, vec!["Ready".to_string()]);

    // fieldManager is required.
    let err = api
        .patch("w", &PatchParams::default(), &apply(json!([]), None))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 400);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let (_server, client) = server().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("p", &[("x", "1")]))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let c = cms
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"data": {"k": null, "n": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(c.data.unwrap(), [("n".to_string(), "1".to_string())].into());

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/n", "value": "1"},
        {"op": "add", "path": "/data/m", "value": "2"}
    ]))
    .unwrap();
    let c = cms.patch("p", &pp, &Patch::Json::<()>(ops)).await.unwrap();
    assert_eq!(c.data.as_ref().unwrap()["m"], "2");

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/n", "value": "nope"}]))
            .unwrap();
    let err = cms
        .patch("p", &pp, &Patch::Json::<()>(failing))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 422);

    // A merge patch carrying a stale resourceVersion is a failed precondition.
    let err = cms
        .patch(
            "p",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"z": "1"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 409);
}

#[tokio::test]
async fn selectors_and_paging() {
    let (_server, client) = server().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        cms.create(
            &PostParams::default(),
            &cm(&format!("c{i:02}"), &[("tier", tier), ("app", "x")]),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.iter().map(|c| c.name_any()).collect()
    };
    let even = cms
        .list(&ListParams::default().labels("tier=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 13);
    let set = cms
        .list(&ListParams::default().labels("tier in (odd),app"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 12);
    let none = cms
        .list(&ListParams::default().labels("!app"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let not = cms
        .list(&ListParams::default().labels("tier!=even,tier notin (odd)"))
        .await
        .unwrap();
    assert!(not.items.is_empty());
    let one = cms
        .list(&ListParams::default().fields("metadata.name=c07"))
        .await
        .unwrap();
    assert_eq!(names(one), vec!["c07".to_string()]);
    let err = cms
        .list(&ListParams::default().fields("data.k=v"))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 400);

    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        let cont = page.metadata.continue_.clone();
        seen.extend(names(page));
        match cont {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    let mut want: Vec<String> = (0..25).map(|i| format!("c{i:02}")).collect();
    want.sort();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn watcher_sees_changes_in_order_and_recovers_after_outage() {
    let (server, client) = server().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    let stream_api = cms.clone();
    let task = tokio::spawn(async move {
        let mut s = watcher(stream_api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(ev) = s.next().await {
            let item = match ev {
                Ok(watcher::Event::Apply(c)) => ("apply", c),
                Ok(watcher::Event::InitApply(c)) => ("init", c),
                Ok(watcher::Event::Delete(c)) => ("delete", c),
                Ok(_) | Err(_) => continue,
            };
            let data = item
                .1
                .data
                .as_ref()
                .and_then(|d| d.get("k").cloned())
                .unwrap_or_default();
            let _ = tx.send((format!("{}:{}", item.0, item.1.name_any()), data));
        }
    });
    // The watcher's first LIST has happened once a watch request is seen.
    eventually("the watch to start", || async {
        server
            .requests()
            .iter()
            .any(|r| r.verb == "watch")
            .then_some(())
    })
    .await;
    cms.create(&PostParams::default(), &cm("w1", &[]))
        .await
        .unwrap();
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("w1", &DeleteParams::default()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("watch event in time")
            .expect("watcher alive");
        got.push(ev);
    }
    assert_eq!(
        got,
        vec![
            ("apply:w1".to_string(), "v".to_string()),
            ("apply:w1".to_string(), "2".to_string()),
            ("delete:w1".to_string(), "2".to_string()),
        ]
    );

    let watches_before = server
        .requests()
        .iter()
        .filter(|r| r.verb == "watch")
        .count();
    server.set_unavailable(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.requests().iter().any(|r| r.status == 503));
    server.set_unavailable(false);
    cms.create(&PostParams::default(), &cm("w2", &[]))
        .await
        .unwrap();
    let ev = eventually("the watcher to see w2 after the outage", || {
        let found = match rx.try_recv() {
            Ok((name, _)) if name.ends_with(":w2") => Some(name),
            _ => None,
        };
        async move { found }
    })
    .await;
    assert!(ev.ends_with("w2"));
    let watches_after = server
        .requests()
        .iter()
        .filter(|r| r.verb == "watch")
        .count();
    assert!(
        watches_after > watches_before,
        "the watch was re-established"
    );
    task.abort();
}

struct Ctx {
    api: Api<Widget>,
    recorder: Recorder,
    cleaned: Mutex<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<kube::Error>>),
}

const FINALIZER: &str = "test.edgebind.io/cleanup";

async fn reconcile(w: Arc<Widget>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let api = Api::<Widget>::namespaced(
        ctx.api.clone().into_client(),
        &w.namespace().unwrap_or_default(),
    );
    finalizer(&api, FINALIZER, w, |ev| async {
        match ev {
            FinalizerEvent::Apply(w) => {
                let status = json!({
                    "apiVersion": "test.edgebind.io/v1", "kind": "Widget",
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}
                });
                api.patch_status(
                    &w.name_any(),
                    &PatchParams::apply("widget-ctl").force(),
                    &Patch::Apply(status),
                )
                .await?;
                ctx.recorder
                    .publish(
                        &RecorderEvent {
                            type_: EventType::Normal,
                            reason: "Reconciled".into(),
                            note: Some("widget is ready".into()),
                            action: "Reconcile".into(),
                            secondary: None,
                        },
                        &w.object_ref(&()),
                    )
                    .await?;
                Ok(Action::await_change())
            }
            FinalizerEvent::Cleanup(w) => {
                ctx.cleaned.lock().unwrap().push(w.name_any());
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
}

fn error_policy(_w: Arc<Widget>, _e: &ReconcileError, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test]
async fn controller_with_finalizer_reconciles_and_cleans_up() {
    let (server, client) = server().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "widget-ctl".into(),
                instance: None,
            },
        ),
        cleaned: Mutex::new(Vec::new()),
    });
    let ctl = tokio::spawn(
        Controller::new(
            Api::<Widget>::all(client.clone()),
            watcher::Config::default(),
        )
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {}),
    );
    api.create(&PostParams::default(), &widget("c1", 3))
        .await
        .unwrap();
    let w = eventually("reconcile to set Ready", || {
        let api = api.clone();
        async move {
            let w = api.get("c1").await.ok()?;
            let ready = w
                .status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(w)
        }
    })
    .await;
    assert_eq!(w.finalizers(), &[FINALIZER.to_string()]);
    let events = server.events();
    assert!(
        events.iter().any(|e| e["reason"] == "Reconciled"
            && e["note"] == "widget is ready"
            && e["regarding"]["name"] == "c1"),
        "{events:?}"
    );

    api.delete("c1", &DeleteParams::default()).await.unwrap();
    eventually("the widget to be gone", || {
        let api = api.clone();
        async move { matches!(api.get_opt("c1").await, Ok(None)).then_some(()) }
    })
    .await;
    assert_eq!(*ctx.cleaned.lock().unwrap(), vec!["c1".to_string()]);
    ctl.abort();
}

#[tokio::test]
async fn finalizers_hold_deletion_and_cannot_be_added_while_deleting() {
    let (server, client) = server().await;
    let api: Api<Widget> = Api::namespaced(client, "default");
    let mut w = widget("f", 1);
    w.metadata.finalizers = Some(vec!["a/b".into()]);
    let w = api.create(&PostParams::default(), &w).await.unwrap();

    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-it".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        api_code(api.delete("f", &wrong_uid).await.unwrap_err()),
        409
    );

    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.uid, w.metadata.uid);

    let add = Patch::Merge(json!({"metadata": {"finalizers": ["a/b", "c/d"]}}));
    let err = api
        .patch("f", &PatchParams::default(), &add)
        .await
        .unwrap_err();
    assert_eq!(api_code(err), 422);

    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
    assert!(
        server
            .get("test.edgebind.io", "v1", "widgets", Some("default"), "f")
            .is_none()
    );
}

#[tokio::test]
async fn cel_rules_and_unknown_fields() {
    let (server, client) = server().await;
    let api: Api<Widget> = Api::namespaced(client.clone(), "default");
    let err = api
        .create(&PostParams::default(), &widget("neg", -1))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(
                s.message.contains("size must not be negative"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    // Unknown fields are pruned by the structural schema.
    let raw: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client,
        "default",
        &kube::core::ApiResource::erase::<Widget>(&()),
    );
    let obj: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "test.edgebind.io/v1", "kind": "Widget",
        "metadata": {"name": "u"}, "spec": {"size": 1, "bogus": true}
    }))
    .unwrap();
    raw.create(&PostParams::default(), &obj).await.unwrap();
    let stored = server
        .get("test.edgebind.io", "v1", "widgets", Some("default"), "u")
        .unwrap();
    assert_eq!(stored["spec"], json!({"size": 1}));
}

#[tokio::test]
async fn recorder_events_and_recorded_requests() {
    let (server, client) = server().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let c = cms
        .create(&PostParams::default(), &cm("ev", &[]))
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "t".into(),
            instance: None,
        },
    );
    let ev = RecorderEvent {
        type_: EventType::Warning,
        reason: "Broken".into(),
        note: Some("first".into()),
        action: "Check".into(),
        secondary: None,
    };
    recorder.publish(&ev, &c.object_ref(&())).await.unwrap();
    recorder.publish(&ev, &c.object_ref(&())).await.unwrap();
    let events = server.events();
    assert_eq!(events.len(), 1, "the repeat is a series on the same Event");
    assert_eq!(events[0]["reason"], "Broken");
    assert_eq!(events[0]["series"]["count"], 2);

    let reqs = server.requests();
    let create = reqs
        .iter()
        .find(|r| r.verb == "create" && r.resource == "configmaps")
        .expect("configmap create recorded");
    assert_eq!(create.namespace.as_deref(), Some("default"));
    assert_eq!(create.status, 201);
    assert!(
        reqs.iter()
            .any(|r| r.verb == "create" && r.group == "events.k8s.io" && r.resource == "events")
    );
    assert!(
        reqs.iter()
            .any(|r| r.verb == "patch" && r.group == "events.k8s.io")
    );
}

#[tokio::test]
async fn kubeconfig_connects_a_separate_client() {
    let (server, _client) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, server.kubeconfig_yaml()).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.contains(&"default".to_string()));
    // The CRD is served through the apiextensions API too.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.test.edgebind.io").await.unwrap();
    let established = crd
        .status
        .unwrap()
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established);
    let widgets: Vec<_> = Api::<Widget>::default_namespaced(client)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(widgets.is_empty());
}

async fn small_history_server() -> (FakeApiServer, Client) {
    let options = edgebind_sim::kube::FakeApiOptions {
        history_limit: 5,
        bookmark_interval: Duration::from_millis(100),
    };
    let server = FakeApiServer::start_with(([127, 0, 0, 1], 0).into(), options)
        .await
        .expect("fake server starts");
    let client = server.client();
    (server, client)
}

#[tokio::test]
async fn watch_from_expired_version_gets_410_and_bookmarks_flow() {
    use kube::api::{WatchEvent, WatchParams};
    let (_server, client) = small_history_server().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let start = cms
        .create(&PostParams::default(), &cm("h0", &[]))
        .await
        .unwrap();
    for i in 1..10 {
        cms.create(&PostParams::default(), &cm(&format!("h{i}"), &[]))
            .await
            .unwrap();
    }
    let old_rv = start.resource_version().unwrap();
    let mut s = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match s.next().await {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!(status.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(s.next().await.is_none(), "the stream ends after the ERROR");

    // From the current version: nothing to replay, then periodic bookmarks at the latest version.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut s = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), s.next()).await {
        Ok(Some(Ok(WatchEvent::Bookmark(b)))) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn selector_watch_turns_relabel_into_delete_and_streaming_list_ends_with_marker() {
    use kube::api::{WatchEvent, WatchParams};
    let (_server, client) = small_history_server().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &cm("s1", &[("team", "a")]))
        .await
        .unwrap();

    let wp = WatchParams::default()
        .labels("team=a")
        .timeout(5)
        .initial_events();
    let mut s = cms.watch(&wp, "0").await.unwrap().boxed();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("event decodes")
    };
    match next().await {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "s1"),
        other => panic!("{other:?}"),
    }
    match next().await {
        WatchEvent::Bookmark(b) => {
            assert_eq!(
                b.metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .map(String::as_str),
                Some("true")
            );
        }
        other => panic!("{other:?}"),
    }
    cms.patch(
        "s1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "b"}}})),
    )
    .await
    .unwrap();
    loop {
        match next().await {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Deleted(c) => {
                assert_eq!(c.name_any(), "s1");
                break;
            }
            other => panic!("expected DELETED on leaving the selection, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents() {
    let (_server, client) = server().await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner = widgets
        .create(&PostParams::default(), &widget("o", 1))
        .await
        .unwrap();
    let mut child = cm("child", &[]);
    child.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &child).await.unwrap();
    cms.create(&PostParams::default(), &cm("orphan", &[]))
        .await
        .unwrap();
    widgets.delete("o", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("child").await.unwrap().is_none());
    assert!(cms.get_opt("orphan").await.unwrap().is_some());
}
