//! Leader election: two controller instances on one Lease; only the leader reconciles, a
//! standby takes over when the lease expires, and a graceful shutdown releases it.

use std::time::Duration;

use edgebind::controller::leader::LeaseConfig;
use edgebind::controller::{Readiness, run_with_leader_election};
use edgebind_sim::linstor::SimConfig;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::sync::oneshot;

use crate::support::bed::{Bed, CONTROLLER_UA, fast_config};

/// The controller's own namespace (the chart's release namespace, where its Role allows Leases).
const LEASE_NS: &str = "edgebind-system";

struct Instance {
    ua: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start(bed: &Bed, id: &str) -> Instance {
    let ua = format!("{CONTROLLER_UA}-{id}");
    let client = bed.client_as(&ua);
    let mut lease = LeaseConfig::new(LEASE_NS, "edgebind-controller", id);
    lease.lease_duration = Duration::from_secs(2);
    lease.renew_deadline = Duration::from_millis(1500);
    lease.retry_period = Duration::from_millis(250);
    let (tx, rx) = oneshot::channel::<()>();
    let config = bed.config.clone();
    let task = tokio::spawn(async move {
        run_with_leader_election(client, config, Readiness::default(), lease, async move {
            let _ = rx.await;
        })
        .await
    });
    Instance {
        ua,
        stop: Some(tx),
        task,
    }
}

async fn holder(bed: &Bed) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(bed.client.clone(), LEASE_NS);
    leases
        .get_opt("edgebind-controller")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

fn writes_by(bed: &Bed, ua: &str) -> Vec<String> {
    bed.kube
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.as_deref() == Some(ua) && r.group == "edgebind.dev")
        .filter(|r| !matches!(r.verb.as_str(), "get" | "list" | "watch"))
        .map(|r| format!("{} {}/{:?}", r.verb, r.resource, r.subresource))
        .collect()
}

#[tokio::test]
async fn one_leader_reconciles_standby_takes_over_and_release_is_graceful() {
    let bed = Bed::start_without_controller(SimConfig::realistic(), fast_config()).await;
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NS}}),
    )
    .unwrap();
    Api::<Namespace>::all(bed.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let a = start(&bed, "a");
    let b = start(&bed, "b");
    let first = bed.eventually(10, "a lease holder", || holder(&bed)).await;
    let second = if first == "a" { "b" } else { "a" };
    let (mut leader, mut standby) = if first == "a" { (a, b) } else { (b, a) };

    bed.create_volume(
        "one",
        json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}}),
    )
    .await;
    bed.wait_volume("one", "True", "Ready").await;
    assert!(
        !writes_by(&bed, &leader.ua).is_empty(),
        "the leader reconciled"
    );
    assert_eq!(
        writes_by(&bed, &standby.ua),
        Vec::<String>::new(),
        "the standby wrote nothing"
    );

    // The leader crashes without releasing: the standby waits for the lease to expire.
    leader.task.abort();
    let _ = (&mut leader.task).await;
    bed.eventually(15, "the standby takes the lease", || async {
        holder(&bed).await.filter(|h| h == second)
    })
    .await;
    bed.create_volume(
        "two",
        json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}}),
    )
    .await;
    bed.wait_volume("two", "True", "Ready").await;

    // Graceful shutdown releases the lease at once.
    let _ = standby.stop.take().unwrap().send(());
    let res = tokio::time::timeout(Duration::from_secs(20), &mut standby.task)
        .await
        .expect("shuts down")
        .expect("joins");
    assert!(res.is_ok(), "{res:?}");
    assert_eq!(holder(&bed).await, None, "released");
    drop(leader.stop.take());
}
