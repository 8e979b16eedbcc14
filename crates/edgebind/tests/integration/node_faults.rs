//! Issue 16: replica counts kept through LINSTOR node changes, against the simulator. A node
//! goes offline and is declared lost, a node is evacuated, nodes come back, all nodes but one
//! are lost: the volume reports Degraded naming the nodes, edgebind autoplaces back to the
//! declared count as far as nodes allow and never beyond, and makes no call while no node can
//! take a replica. The operator's own LINSTOR calls (evacuate, restore, lost) go to the
//! simulator's REST API as `linstor node …` would send them.

use std::time::Duration;

use edgebind::crd::{EdgeVolume, LinstorBackend};
use edgebind_sim::linstor::{SimConfig, SimNode};
use kube::api::Api;
use serde_json::{Value, json};

use crate::support::bed::{Bed, fast_config};

const AUTOPLACE: &str = "/v1/resource-definitions/{resource}/autoplace";

/// `linstor node <verb>` as the admin would run it.
async fn admin(bed: &Bed, method: reqwest::Method, path: &str) -> Value {
    let url = format!("{}{path}", bed.linstor.url());
    let r = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .expect("LINSTOR answers");
    r.json().await.expect("JSON")
}

/// Five storage nodes: room for a replacement after a loss, and for "all but one".
fn five_nodes() -> SimConfig {
    let mut c = SimConfig::realistic();
    c.nodes = (0..5)
        .map(|i| {
            SimNode::new(
                &format!("node-{i}"),
                Some(&format!("zone-{i}")),
                500,
                &format!("10.0.0.{}", 20 + i),
            )
        })
        .collect();
    c
}

fn condition(v: &EdgeVolume, t: &str) -> Option<(String, String, String)> {
    v.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Diskful replicas of `rd` not flagged out of service, by node.
fn healthy_nodes(bed: &Bed, rd: &str) -> Vec<String> {
    let mut n: Vec<String> = bed
        .linstor
        .sim
        .resources(rd)
        .into_iter()
        .filter(|r| {
            let flags = r["flags"].as_array().cloned().unwrap_or_default();
            !flags.iter().any(|f| {
                [
                    "DISKLESS",
                    "DRBD_DISKLESS",
                    "TIE_BREAKER",
                    "EVICTED",
                    "EVACUATE",
                    "DELETE",
                ]
                .contains(&f.as_str().unwrap_or_default())
            })
        })
        .map(|r| r["node_name"].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
}

fn replica_nodes(bed: &Bed, rd: &str) -> Vec<String> {
    let mut n: Vec<String> = bed
        .linstor
        .sim
        .resources(rd)
        .into_iter()
        .map(|r| r["node_name"].as_str().unwrap_or_default().to_string())
        .collect();
    n.sort();
    n
}

async fn ready_volume(bed: &Bed, name: &str, place_count: u32) -> String {
    bed.wait_volume_backend_ready().await;
    bed.create_volume(
        name,
        json!({"backendRef": "main", "size": "64Mi", "deletionPolicy": "Delete",
               "placement": {"placeCount": place_count, "storagePools": ["thin"]}}),
    )
    .await;
    bed.wait_volume(name, "True", "Ready").await;
    edgebind::linstor::naming::volume_name(crate::support::bed::NS, name)
}

/// Waits until `f` accepts the volume `db`.
async fn wait_for<T, F>(bed: &Bed, secs: u64, what: &str, f: F) -> T
where
    F: Fn(EdgeVolume) -> Option<T>,
{
    let api = bed.volumes();
    bed.eventually(secs, what, || {
        let api = api.clone();
        let f = &f;
        async move { f(api.get("db").await.ok()?) }
    })
    .await
}

async fn backend_status(bed: &Bed) -> edgebind::crd::backend::LinstorBackendStatus {
    Api::<LinstorBackend>::all(bed.client.clone())
        .get("main")
        .await
        .expect("backend")
        .status
        .expect("status")
}

#[tokio::test]
async fn a_lost_node_is_reported_then_its_replica_is_placed_again_and_no_further() {
    let bed = Bed::start_with(five_nodes(), fast_config()).await;
    let rd = ready_volume(&bed, "db", 3).await;
    let before = replica_nodes(&bed, &rd);
    assert_eq!(before.len(), 3);
    let lost = before[2].clone();

    // The satellite goes away: Degraded NodeOffline names it; the replica still counts as
    // placed (LINSTOR's autoplace counts it too), so nothing is placed yet.
    assert!(bed.linstor.sim.set_node_online(&lost, false));
    let msg = wait_for(&bed, 20, "db: Degraded NodeOffline", |v| {
        let (s, r, m) = condition(&v, "Degraded")?;
        (s == "True" && r == "NodeOffline").then_some(m)
    })
    .await;
    assert!(msg.contains(&lost), "{msg}");
    let autoplaces = bed.linstor.sim.stats().count("POST", AUTOPLACE);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        bed.linstor.sim.stats().count("POST", AUTOPLACE),
        autoplaces,
        "no placement while the replica may come back"
    );
    let st = backend_status(&bed).await;
    assert!(
        st.nodes
            .iter()
            .any(|n| n.name == lost && n.state == "OFFLINE"),
        "{:?}",
        st.nodes
    );

    // The admin declares it lost: 2 of 3 replicas are left; edgebind places one more on a
    // node that can take it, once.
    let r = admin(
        &bed,
        reqwest::Method::DELETE,
        &format!("/v1/nodes/{lost}/lost"),
    )
    .await;
    assert!(r.to_string().contains("deleted"), "{r}");
    wait_for(&bed, 30, "db: three replicas again", |v| {
        let (s, _, _) = condition(&v, "Degraded")?;
        (s == "False" && v.status?.diskful_replicas == Some(3)).then_some(())
    })
    .await;
    let now = healthy_nodes(&bed, &rd);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(!now.contains(&lost));
    assert_eq!(
        bed.linstor.sim.stats().count("POST", AUTOPLACE),
        autoplaces + 1,
        "one autoplace restores the count"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        bed.linstor.sim.stats().count("POST", AUTOPLACE),
        autoplaces + 1,
        "and nothing more once restored"
    );
    assert_eq!(
        replica_nodes(&bed, &rd).len(),
        3,
        "never above the declared count"
    );
    bed.assert_contract();
}

#[tokio::test]
async fn an_evacuated_node_gets_no_replica_and_its_replica_is_replaced() {
    let bed = Bed::start_with(five_nodes(), fast_config()).await;
    let rd = ready_volume(&bed, "db", 2).await;
    let before = replica_nodes(&bed, &rd);
    let evacuated = before[0].clone();
    let r = admin(
        &bed,
        reqwest::Method::PUT,
        &format!("/v1/nodes/{evacuated}/evacuate"),
    )
    .await;
    assert!(r.to_string().contains("evacuated"), "{r}");
    // edgebind places a replacement elsewhere (not on the evacuating node) and reports the
    // evacuating replica meanwhile.
    let rd2 = rd.clone();
    let bed_ref = &bed;
    bed.eventually(30, "a replacement replica", || {
        let rd = rd2.clone();
        async move { (healthy_nodes(bed_ref, &rd).len() == 2).then_some(()) }
    })
    .await;
    wait_for(&bed, 30, "db: reports the evacuating replica", |v| {
        let (s, r, _) = condition(&v, "Degraded")?;
        (s == "True" && r == "ReplicaInactive" && v.status?.diskful_replicas == Some(2))
            .then_some(())
    })
    .await;
    let healthy = healthy_nodes(&bed, &rd);
    assert_eq!(healthy.len(), 2, "{healthy:?}");
    assert!(!healthy.contains(&evacuated));
    let v = bed.volumes().get("db").await.expect("db");
    let (s, reason, msg) = condition(&v, "Degraded").expect("Degraded");
    assert_eq!((s.as_str(), reason.as_str()), ("True", "ReplicaInactive"));
    assert!(msg.contains(&evacuated), "{msg}");
    // The backend shows the node's state and (recounted every 10 s) the degraded volume.
    wait_for_backend(&bed, |st| {
        (st.nodes
            .iter()
            .any(|n| n.name == evacuated && n.state == "EVACUATE")
            && st.degraded_volumes == Some(1))
        .then_some(())
    })
    .await;
    assert_eq!(
        bed.linstor.sim.node_flags(&evacuated),
        Some(vec!["EVACUATE".to_string()])
    );
    // Restored: the node is back in service; the count stays at the declared 2 healthy (the
    // evacuated replica is LINSTOR's to remove, not edgebind's).
    let r = admin(
        &bed,
        reqwest::Method::PUT,
        &format!("/v1/nodes/{evacuated}/restore"),
    )
    .await;
    assert!(r.to_string().contains("restored"), "{r}");
    let autoplaces = bed.linstor.sim.stats().count("POST", AUTOPLACE);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        bed.linstor.sim.stats().count("POST", AUTOPLACE),
        autoplaces,
        "nothing placed: three replicas, more than declared, none removed"
    );
    assert!(
        replica_nodes(&bed, &rd).contains(&evacuated),
        "edgebind removes no replica"
    );
    bed.assert_contract();
}

async fn wait_for_backend<T>(
    bed: &Bed,
    f: impl Fn(edgebind::crd::backend::LinstorBackendStatus) -> Option<T>,
) -> T {
    let api: Api<LinstorBackend> = Api::all(bed.client.clone());
    bed.eventually(30, "backend status", || {
        let api = api.clone();
        let f = &f;
        async move { f(api.get("main").await.ok()?.status?) }
    })
    .await
}

#[tokio::test]
async fn with_all_nodes_but_one_lost_edgebind_waits_without_calls_then_restores_when_nodes_return()
{
    let bed = Bed::start_with(five_nodes(), fast_config()).await;
    let rd = ready_volume(&bed, "db", 3).await;
    let replicas = replica_nodes(&bed, &rd);
    let keep = replicas[0].clone();
    // Every node but one fails and is declared lost.
    let all: Vec<String> = (0..5).map(|i| format!("node-{i}")).collect();
    for n in all.iter().filter(|n| **n != keep) {
        assert!(bed.linstor.sim.set_node_online(n, false));
        admin(
            &bed,
            reqwest::Method::DELETE,
            &format!("/v1/nodes/{n}/lost"),
        )
        .await;
    }
    let msg = wait_for(&bed, 30, "db: TooFewReplicas", |v| {
        let (s, r, m) = condition(&v, "Degraded")?;
        let (_, p, _) = condition(&v, "Progressing")?;
        (s == "True" && r == "TooFewReplicas" && p == "WaitingForNodes").then_some(m)
    })
    .await;
    assert!(msg.contains("1 of 3") && msg.contains(&keep), "{msg}");
    // No thrash: over several resyncs, no write at all and only the periodic list reads.
    let stats = bed.linstor.sim.stats();
    let (writes, reads) = (stats.writes(), stats.reads());
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(stats.writes(), writes, "{:?}", stats.by_route());
    let resyncs = 7 / 3 + 1;
    let per_resync = 5; // version probe, nodes, resource definitions, resources, snapshots
    assert!(
        stats.reads() - reads <= (resyncs + 1) * per_resync,
        "reads stay at the periodic lists: {:?}",
        stats.by_route()
    );

    // One node comes back: one replica more (2 of 3), in one call.
    let before = stats.count("POST", AUTOPLACE);
    assert!(
        bed.linstor
            .sim
            .add_node(SimNode::new("node-9", Some("zone-9"), 500, "10.0.0.99"))
    );
    wait_for(&bed, 30, "db: two replicas", |v| {
        (v.status?.diskful_replicas == Some(2)).then_some(())
    })
    .await;
    assert_eq!(stats.count("POST", AUTOPLACE), before + 1);
    // Another: the declared three, and no more.
    assert!(
        bed.linstor
            .sim
            .add_node(SimNode::new("node-8", Some("zone-8"), 500, "10.0.0.98"))
    );
    wait_for(&bed, 30, "db: three replicas, healthy", |v| {
        let (s, _, _) = condition(&v, "Degraded")?;
        (s == "False" && v.status?.diskful_replicas == Some(3)).then_some(())
    })
    .await;
    assert_eq!(stats.count("POST", AUTOPLACE), before + 2);
    assert!(
        bed.linstor
            .sim
            .add_node(SimNode::new("node-7", Some("zone-7"), 500, "10.0.0.97"))
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        stats.count("POST", AUTOPLACE),
        before + 2,
        "never above three"
    );
    assert_eq!(replica_nodes(&bed, &rd).len(), 3);
    bed.assert_contract();
}
