//! The real controller against the fake Kubernetes API server and the LINSTOR simulator:
//! the scenarios of the operator core, asserted by their outcomes.

use std::sync::Arc;
use std::time::Duration;

use edgebind::controller::inventory::Inventory;
use edgebind::controller::ownership::{self, Owner};
use edgebind::controller::volume::plan::{PlanInput, VolumePlan, plan};
use edgebind::controller::volume::validate::validate;
use edgebind::crd::EdgeVolume;
use edgebind::linstor::{ClientConfig, LinstorClient};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::support::bed::{Bed, NS};
use crate::support::http;

fn spec(size: &str, place: u32) -> serde_json::Value {
    json!({"backendRef": "main", "size": size, "placement": {"placeCount": place, "storagePools": ["thin"]}})
}

fn rd_name(name: &str) -> String {
    edgebind::linstor::naming::volume_name(NS, name)
}

async fn patch_spec(
    bed: &Bed,
    name: &str,
    spec: serde_json::Value,
) -> Result<EdgeVolume, kube::Error> {
    bed.volumes()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
}

#[tokio::test]
async fn create_resize_add_replicas_and_converge_without_writes() {
    let bed = Bed::start().await;
    bed.create_volume("db", spec("1Gi", 2)).await;
    let v = bed.wait_volume("db", "True", "Ready").await;
    let st = v.status.clone().unwrap();
    assert_eq!(st.linstor_name.as_deref(), Some(rd_name("db").as_str()));
    assert_eq!(st.size.as_deref(), Some("1Gi"));
    assert_eq!(st.diskful_replicas, Some(2));
    assert_eq!(st.observed_generation, v.metadata.generation);
    assert!(
        v.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"edgebind.dev/cleanup".to_string())
    );
    let rd = bed
        .linstor
        .sim
        .resource_definition(&rd_name("db"))
        .expect("RD exists in LINSTOR");
    assert_eq!(
        rd["props"][ownership::OWNER_UID],
        v.metadata.uid.clone().unwrap()
    );
    assert_eq!(bed.linstor.sim.resources(&rd_name("db")).len(), 2);
    assert!(
        bed.events_for("db")
            .iter()
            .any(|e| e["reason"] == "Applied"),
        "an event records the create"
    );

    // Resize: LINSTOR grows the volume, status follows.
    patch_spec(&bed, "db", json!({"size": "2Gi"}))
        .await
        .unwrap();
    bed.eventually(20, "status size 2Gi", || async {
        let v = bed.volumes().get("db").await.ok()?;
        (v.status?.size.as_deref() == Some("2Gi")).then_some(())
    })
    .await;
    assert_eq!(
        bed.linstor.sim.volume_definitions(&rd_name("db"))[0]["size_kib"],
        2 << 20
    );

    // More replicas.
    patch_spec(
        &bed,
        "db",
        json!({"placement": {"placeCount": 3, "storagePools": ["thin"]}}),
    )
    .await
    .unwrap();
    bed.eventually(20, "three replicas", || async {
        let v = bed.volumes().get("db").await.ok()?;
        (v.status?.diskful_replicas == Some(3)).then_some(())
    })
    .await;
    assert_eq!(bed.linstor.sim.resources(&rd_name("db")).len(), 3);

    // Shrinking is refused by the API server (CEL), before the controller sees it.
    let err = patch_spec(&bed, "db", json!({"size": "1Gi"}))
        .await
        .expect_err("shrink refused");
    assert!(err.to_string().contains("only grow"), "{err}");

    // Converged: a few resyncs make no LINSTOR write, and reads do not grow with the number of
    // volumes (more volumes, same list calls).
    for i in 0..6 {
        bed.create_volume(&format!("extra-{i}"), spec("64Mi", 2))
            .await;
    }
    for i in 0..6 {
        bed.wait_volume(&format!("extra-{i}"), "True", "Ready")
            .await;
    }
    bed.wait_volume("db", "True", "Ready").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rv_before = bed
        .volumes()
        .get("db")
        .await
        .unwrap()
        .metadata
        .resource_version;
    bed.linstor.sim.stats().reset();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stats = bed.linstor.sim.stats();
    assert_eq!(
        stats.writes(),
        0,
        "a converged resync writes nothing: {:?}",
        stats.by_route()
    );
    // 7 s is two to three resync periods (3 s, inventory TTL 2.4 s): a handful of list calls per
    // route however many volumes there are, where per-volume reads would make dozens.
    let routes = stats.by_route();
    assert!(
        routes.keys().all(|r| !r.contains("{resource}")),
        "no per-volume read: {routes:?}"
    );
    assert!(
        routes.values().all(|n| *n <= 8),
        "list calls per route stay O(1): {routes:?}"
    );
    let rv_after = bed
        .volumes()
        .get("db")
        .await
        .unwrap()
        .metadata
        .resource_version;
    assert_eq!(
        rv_before, rv_after,
        "status is not rewritten on a converged resync"
    );
    bed.assert_contract();
}

#[tokio::test]
async fn delete_with_retain_releases_and_is_not_taken_over_silently() {
    let bed = Bed::start().await;
    bed.create_volume("keep", spec("1Gi", 2)).await;
    bed.wait_volume("keep", "True", "Ready").await;
    bed.volumes()
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();
    bed.eventually(20, "EdgeVolume gone", || async {
        bed.volumes()
            .get_opt("keep")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let rd = bed
        .linstor
        .sim
        .resource_definition(&rd_name("keep"))
        .expect("data kept");
    assert_eq!(rd["props"][ownership::RELEASED], "true");
    assert_eq!(
        bed.linstor.sim.resources(&rd_name("keep")).len(),
        2,
        "replicas kept"
    );

    // A new EdgeVolume with the same name does not silently take the released data.
    bed.create_volume("keep", spec("1Gi", 2)).await;
    let v = bed.wait_volume("keep", "False", "Conflict").await;
    let st = v.status.unwrap();
    let msg = &st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(msg.contains("adopt-released"), "{msg}");
    // Asked explicitly, it adopts.
    bed.volumes()
        .patch(
            "keep",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"edgebind.dev/adopt-released": "true"}}}),
            ),
        )
        .await
        .unwrap();
    let v = bed.wait_volume("keep", "True", "Ready").await;
    let rd = bed
        .linstor
        .sim
        .resource_definition(&rd_name("keep"))
        .unwrap();
    assert_eq!(rd["props"][ownership::OWNER_UID], v.metadata.uid.unwrap());
    assert!(rd["props"].get(ownership::RELEASED).is_none());
    bed.assert_contract();
}

#[tokio::test]
async fn snapshot_restore_and_delete_policy_delete() {
    let bed = Bed::start().await;
    bed.create_volume("src", json!({"backendRef": "main", "size": "1Gi", "deletionPolicy": "Delete", "placement": {"placeCount": 2}})).await;
    bed.wait_volume("src", "True", "Ready").await;
    let snap: edgebind::crd::EdgeSnapshot = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeSnapshot",
        "metadata": {"name": "nightly", "namespace": NS}, "spec": {"volumeRef": "src", "deletionPolicy": "Retain"}
    }))
    .unwrap();
    bed.snapshots()
        .create(&Default::default(), &snap)
        .await
        .unwrap();
    let s = bed
        .eventually(20, "snapshot ready", || async {
            let s = bed.snapshots().get("nightly").await.ok()?;
            let ready = s.status.as_ref().is_some_and(|st| st.ready_to_use);
            ready.then_some(s)
        })
        .await;
    let st = s.status.unwrap();
    assert_eq!(st.restore_size.as_deref(), Some("1Gi"));
    assert!(st.creation_time.is_some());
    assert_eq!(bed.linstor.sim.snapshots(&rd_name("src")).len(), 1);

    bed.create_volume("copy", json!({"backendRef": "main", "size": "1Gi", "placement": {"placeCount": 2}, "source": {"snapshot": "nightly"}})).await;
    bed.wait_volume("copy", "True", "Ready").await;
    let rd = bed
        .linstor
        .sim
        .resource_definition(&rd_name("copy"))
        .unwrap();
    assert_eq!(
        rd["props"][ownership::RESTORED_FROM],
        format!("{NS}/nightly")
    );
    assert_eq!(bed.linstor.sim.resources(&rd_name("copy")).len(), 2);

    // Delete policy: the snapshot edgebind made goes first, then the resource definition.
    bed.volumes()
        .delete("src", &DeleteParams::default())
        .await
        .unwrap();
    bed.eventually(20, "source RD deleted", || async {
        bed.linstor
            .sim
            .resource_definition(&rd_name("src"))
            .is_none()
            .then_some(())
    })
    .await;
    // The finalizer goes with the pass that deleted the RD, a moment after it.
    bed.eventually(20, "source volume gone", || async {
        bed.volumes()
            .get_opt("src")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        bed.linstor
            .sim
            .resource_definition(&rd_name("copy"))
            .is_some(),
        "the restored copy is independent"
    );
    bed.assert_contract();
}

#[tokio::test]
async fn unowned_linstor_object_is_a_conflict_and_untouched() {
    let bed = Bed::start().await;
    let c = http::client();
    let body = json!({"resource_definition": {"name": rd_name("taken"), "props": {"Aux/owner": "someone-else"}}});
    let (status, _) = http::call_raw(
        &c,
        "POST",
        &format!("{}/v1/resource-definitions", bed.linstor.url()),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 201);
    let before = bed
        .linstor
        .sim
        .resource_definition(&rd_name("taken"))
        .unwrap();
    bed.create_volume("taken", spec("1Gi", 2)).await;
    let v = bed.wait_volume("taken", "False", "Conflict").await;
    assert!(
        v.status.unwrap().conditions[0]
            .message
            .contains("not created by edgebind")
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bed.linstor
            .sim
            .resource_definition(&rd_name("taken"))
            .unwrap(),
        before,
        "untouched"
    );
    assert!(
        bed.linstor
            .sim
            .volume_definitions(&rd_name("taken"))
            .is_empty()
    );
    // Deleting the EdgeVolume leaves the foreign object alone too.
    bed.volumes()
        .delete("taken", &DeleteParams::default())
        .await
        .unwrap();
    bed.eventually(20, "EdgeVolume gone", || async {
        bed.volumes()
            .get_opt("taken")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        bed.linstor
            .sim
            .resource_definition(&rd_name("taken"))
            .unwrap(),
        before
    );
}

#[tokio::test]
async fn invalid_spec_gets_a_condition_and_no_linstor_call() {
    let bed = Bed::start().await;
    bed.wait_volume_backend_ready().await;
    bed.linstor.sim.stats().reset();
    // Passes CEL (a positive quantity) but is below what DRBD can hold.
    bed.create_volume("tiny", spec("1Ki", 2)).await;
    let v = bed.wait_volume("tiny", "False", "InvalidSpec").await;
    assert!(v.status.unwrap().conditions[0].message.contains("4Mi"));
    assert_eq!(bed.linstor.sim.stats().writes(), 0);
    assert!(
        bed.linstor
            .sim
            .resource_definition(&rd_name("tiny"))
            .is_none()
    );
    // CEL refuses at the API server: resourceGroup with explicit placement.
    let v: EdgeVolume = serde_json::from_value(json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
        "metadata": {"name": "both", "namespace": NS},
        "spec": {"backendRef": "main", "size": "1Gi", "placement": {"resourceGroup": "rg", "placeCount": 2}}})).unwrap();
    let err = bed
        .volumes()
        .create(&Default::default(), &v)
        .await
        .expect_err("CEL refuses");
    assert!(err.to_string().contains("resourceGroup excludes"), "{err}");
}

#[tokio::test]
async fn linstor_unreachable_then_back_recovers_without_duplicates() {
    let bed = Bed::start().await;
    bed.wait_volume_backend_ready().await;
    bed.linstor.sim.faults().set_unreachable(true);
    bed.create_volume("flaky", spec("1Gi", 2)).await;
    let v = bed
        .eventually(20, "an unreachable condition", || async {
            let v = bed.volumes().get("flaky").await.ok()?;
            let c = v
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")?
                .clone();
            matches!(c.reason.as_str(), "LinstorUnreachable" | "BackendNotReady").then_some(c)
        })
        .await;
    assert_eq!(v.status, "False");
    bed.linstor.sim.faults().set_unreachable(false);
    bed.wait_volume("flaky", "True", "Ready").await;
    assert_eq!(bed.linstor.sim.resource_definitions().len(), 1);
    assert_eq!(
        bed.linstor.sim.resources(&rd_name("flaky")).len(),
        2,
        "no duplicate placement"
    );
    assert_eq!(
        bed.linstor.sim.volume_definitions(&rd_name("flaky")).len(),
        1
    );
}

#[tokio::test]
async fn controller_crash_in_the_middle_of_a_create_completes_after_restart() {
    let mut bed = Bed::start().await;
    bed.wait_volume_backend_ready().await;
    // Autoplace hangs: the RD and volume definition exist, placement never answers.
    bed.linstor.sim.faults().hang(Some("POST"), "/autoplace");
    bed.create_volume("half", spec("1Gi", 2)).await;
    bed.eventually(20, "RD and VD created", || async {
        (!bed
            .linstor
            .sim
            .volume_definitions(&rd_name("half"))
            .is_empty())
        .then_some(())
    })
    .await;
    bed.crash_controller().await;
    bed.linstor.sim.faults().clear();
    bed.start_controller();
    bed.wait_volume("half", "True", "Ready").await;
    assert_eq!(bed.linstor.sim.resource_definitions().len(), 1);
    assert_eq!(
        bed.linstor.sim.volume_definitions(&rd_name("half")).len(),
        1
    );
    assert_eq!(bed.linstor.sim.resources(&rd_name("half")).len(), 2);
}

#[tokio::test]
async fn already_exists_race_rereads_and_continues() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim =
        edgebind_sim::linstor::LinstorSim::start(edgebind_sim::linstor::SimConfig::realistic())
            .await
            .unwrap();
    let client = Arc::new(
        LinstorClient::new(ClientConfig {
            urls: vec![url::Url::parse(&sim.url()).unwrap()],
            tls: None,
            bearer_token: None,
            budget: Default::default(),
            timeouts: Default::default(),
        })
        .unwrap(),
    );
    let (_, features) = client.probe().await.unwrap();
    let inv = Inventory::new(client.clone(), Duration::from_secs(60));
    let owner = Owner {
        kind: "EdgeVolume",
        namespace: NS.into(),
        name: "race".into(),
        uid: "u-race".into(),
    };
    let spec = validate(&serde_json::from_value(spec("1Gi", 2)).unwrap()).unwrap();
    let name = rd_name("race");
    let observed = inv.observe(&name).await.unwrap();
    assert!(observed.rd.is_none());
    let VolumePlan::Ops(ops) = plan(&PlanInput {
        owner: &owner,
        name: &name,
        spec: &spec,
        features,
        observed: &observed,
        adopt_released: false,
        source: None,
        placeable: None,
        request_id: None,
    }) else {
        panic!("expected ops")
    };
    // Another writer (a second controller replica after a timeout) creates it first.
    client.execute(&ops[0]).await.unwrap();
    let err = client
        .execute(&ops[0])
        .await
        .expect_err("second create fails");
    assert!(err.is_exists(), "{err}");
    inv.mark_dirty(&name);
    let observed = inv.observe(&name).await.unwrap();
    assert!(observed.rd.is_some(), "re-read sees it");
    let VolumePlan::Ops(rest) = plan(&PlanInput {
        owner: &owner,
        name: &name,
        spec: &spec,
        features,
        observed: &observed,
        adopt_released: false,
        source: None,
        placeable: None,
        request_id: None,
    }) else {
        panic!("ours, so no conflict")
    };
    assert_eq!(
        rest.len(),
        2,
        "continues with the volume definition and placement: {rest:?}"
    );
    for op in &rest {
        client.execute(op).await.unwrap();
    }
    assert_eq!(sim.sim.resources(&name).len(), 2);
}

#[tokio::test]
async fn readiness_is_reported_once_caches_are_synced() {
    let mut bed = Bed::start_without_controller(
        edgebind_sim::linstor::SimConfig::realistic(),
        crate::support::bed::fast_config(),
    )
    .await;
    let ready = edgebind::controller::Readiness::default();
    assert!(!ready.get());
    bed.start_controller_with(ready.clone());
    bed.eventually(10, "readiness", || async { ready.get().then_some(()) })
        .await;
}
