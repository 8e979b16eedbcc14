//! The controller and the gateway against the real kube-apiserver, each authenticated as its own
//! ServiceAccount under exactly the RBAC objects the Helm chart renders with default values
//! (`deploy/kustomize/base` is that render; tests/python/test_deploy.py keeps it equal to the
//! chart), with the LINSTOR simulator behind the controller.
//!
//! The controller watches every namespace, so two of them on one server would reconcile each
//! other's objects, and the gateway's key Secret is one per release: the tests here take turns.

use std::time::Duration;

use edgebind::controller::{self, Readiness};
use edgebind::crd::{EdgeSnapshot, EdgeVolume, LinstorBackend};
use edgebind_sim::linstor::{LinstorSim, RunningSim, SimConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, ServiceAccount,
};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::apiserver::{self, RealApiServer, Who};
use crate::support::bed::fast_config;
use crate::support::partition::Partition;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const RELEASE_NS: &str = "edgebind-system";
const CONTROLLER_ROLE: &str = "edgebind-controller";

fn base_docs(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../deploy/kustomize/base/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Creates one ServiceAccount or RBAC object as rendered (an existing one is kept).
async fn create_rbac_doc(admin: &kube::Client, doc: Value) {
    let ns = doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or(RELEASE_NS)
        .to_string();
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let pp = PostParams::default();
    let r = match kind.as_str() {
        "ServiceAccount" => Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
            .create(&pp, &serde_json::from_value(doc).expect("ServiceAccount"))
            .await
            .map(|_| ()),
        "ClusterRole" => Api::<ClusterRole>::all(admin.clone())
            .create(&pp, &serde_json::from_value(doc).expect("ClusterRole"))
            .await
            .map(|_| ()),
        "ClusterRoleBinding" => Api::<ClusterRoleBinding>::all(admin.clone())
            .create(
                &pp,
                &serde_json::from_value(doc).expect("ClusterRoleBinding"),
            )
            .await
            .map(|_| ()),
        "Role" => Api::<Role>::namespaced(admin.clone(), &ns)
            .create(&pp, &serde_json::from_value(doc).expect("Role"))
            .await
            .map(|_| ()),
        "RoleBinding" => Api::<RoleBinding>::namespaced(admin.clone(), &ns)
            .create(&pp, &serde_json::from_value(doc).expect("RoleBinding"))
            .await
            .map(|_| ()),
        other => panic!("unexpected kind {other}"),
    };
    match r {
        Ok(()) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("{kind} is accepted: {e}"),
    }
}

/// The chart's ServiceAccounts and RBAC objects (default values), created once on the shared
/// server.
async fn apply_chart_rbac(server: &RealApiServer) {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    DONE.get_or_init(|| create_chart_rbac(server)).await;
}

/// The chart's ServiceAccounts and RBAC objects on `server`.
async fn create_chart_rbac(server: &RealApiServer) {
    let admin = server.client(Who::Admin).await;
    let pp = PostParams::default();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": RELEASE_NS}})).unwrap();
    let _ = Api::<Namespace>::all(admin.clone()).create(&pp, &ns).await;
    for file in [
        "serviceaccounts.yaml",
        "rbac-controller.yaml",
        "rbac-gateway.yaml",
    ] {
        for doc in base_docs(file) {
            create_rbac_doc(&admin, doc).await;
        }
    }
}

/// This test's turn on the shared real API server, with the CRDs and the chart's RBAC in place.
async fn my_turn() -> (tokio::sync::MutexGuard<'static, ()>, &'static RealApiServer) {
    let turn = TURN.lock().await;
    let server = apiserver::shared();
    assert!(apiserver::install_crds(server).await.is_empty());
    apply_chart_rbac(server).await;
    (turn, server)
}

/// One controller, its LINSTOR and its backend, for one turn.
struct Run {
    admin: kube::Client,
    ns: String,
    backend: String,
    linstor: RunningSim,
    ctrl: JoinHandle<()>,
}

/// Controller settings for these tests: fast, with quick signing-key propagation.
fn config() -> edgebind::controller::ControllerConfig {
    let mut c = fast_config();
    c.cloudflare.key_namespace = RELEASE_NS.into();
    c.cloudflare.key_propagation = Duration::from_millis(300);
    c.cloudflare.key_overlap = Duration::from_secs(2);
    c.cloudflare.max_rate_limit_wait = Duration::from_secs(3);
    c
}

impl Run {
    async fn start(server: &RealApiServer, prefix: &str) -> Run {
        let client = server.client(Who::Controller).await;
        Run::start_with(server, prefix, client).await
    }

    /// A run whose controller talks to the server through `client`.
    async fn start_with(server: &RealApiServer, prefix: &str, client: kube::Client) -> Run {
        let admin = server.client(Who::Admin).await;
        let ns = server.namespace(prefix).await;
        let linstor = LinstorSim::start(SimConfig::realistic())
            .await
            .expect("LINSTOR simulator");
        let backend = format!("lb-{ns}");
        let lb: LinstorBackend = serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "LinstorBackend",
            "metadata": {"name": backend},
            "spec": {"urls": [linstor.url()], "budget": {"requestsPerSecond": 1000, "burst": 100, "maxInFlight": 16}}
        }))
        .unwrap();
        Api::<LinstorBackend>::all(admin.clone())
            .create(&PostParams::default(), &lb)
            .await
            .expect("LinstorBackend");
        let ctrl = tokio::spawn(async move {
            if let Err(e) = controller::run(
                client,
                config(),
                Readiness::default(),
                futures::future::pending(),
            )
            .await
            {
                tracing::warn!("controller stopped: {e:#}");
            }
        });
        Run {
            admin,
            ns,
            backend,
            linstor,
            ctrl,
        }
    }

    fn volumes(&self) -> Api<EdgeVolume> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    fn snapshots(&self) -> Api<EdgeSnapshot> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    async fn create_volume(&self, name: &str, extra: Value) {
        let mut spec = json!({"backendRef": self.backend, "size": "1Gi", "deletionPolicy": "Delete",
                              "placement": {"placeCount": 2, "storagePools": ["thin"]}});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        let v: EdgeVolume = serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        self.volumes()
            .create(&PostParams::default(), &v)
            .await
            .expect("EdgeVolume created");
    }

    /// Waits up to `secs` for the volume's Ready condition to be True.
    async fn volume_ready(&self, name: &str, secs: u64) -> Option<EdgeVolume> {
        poll(secs, || async {
            let v = self.volumes().get_opt(name).await.ok().flatten()?;
            ready(v.status.as_ref().map(|s| &s.conditions[..]))?;
            Some(v)
        })
        .await
    }

    async fn gone<K>(&self, api: &Api<K>, name: &str, secs: u64) -> bool
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        poll(secs, || async {
            matches!(api.get_opt(name).await, Ok(None)).then_some(())
        })
        .await
        .is_some()
    }

    async fn applied_event(&self, name: &str) -> bool {
        let events: Api<Event> = Api::namespaced(self.admin.clone(), &self.ns);
        poll(5, || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("Applied")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                })
                .then_some(())
        })
        .await
        .is_some()
    }

    async fn stop(self) {
        self.ctrl.abort();
        let _ = self.ctrl.await;
        let _ = Api::<LinstorBackend>::all(self.admin.clone())
            .delete(&self.backend, &DeleteParams::default())
            .await;
        self.linstor.stop().await;
    }
}

fn ready(
    conds: Option<&[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]>,
) -> Option<()> {
    conds?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
        .then_some(())
}

async fn poll<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Create a volume, see it Ready with its create recorded as an event, delete it and see it
/// gone from Kubernetes and LINSTOR: the part of the lifecycle every RBAC rule below serves.
/// `Err` says which step did not happen.
async fn short_lifecycle(run: &Run, secs: u64) -> Result<(), String> {
    run.create_volume("v", json!({"persistentVolume": {}}))
        .await;
    run.volume_ready("v", secs)
        .await
        .ok_or("the volume never became Ready")?;
    let pv_name = format!("edgebind.{}.v", run.ns);
    let pvs = Api::<PersistentVolume>::all(run.admin.clone());
    if pvs.get_opt(&pv_name).await.ok().flatten().is_none() {
        return Err("no PersistentVolume".into());
    }
    if !run.applied_event("v").await {
        return Err("no Applied event".into());
    }
    run.volumes()
        .delete("v", &DeleteParams::default())
        .await
        .map_err(|e| e.to_string())?;
    if !run.gone(&run.volumes(), "v", secs).await {
        return Err("the volume was never released by the finalizer".into());
    }
    let rd = edgebind::linstor::naming::volume_name(&run.ns, "v");
    if run.linstor.sim.resource_definition(&rd).is_some() {
        return Err("the LINSTOR resource definition was not deleted".into());
    }
    if !pv_deleted(&pvs, &pv_name).await {
        return Err("the PersistentVolume was not deleted".into());
    }
    Ok(())
}

/// Gone, or being deleted (the server's `kubernetes.io/pv-protection` finalizer waits for a
/// controller this test server does not run).
async fn pv_deleted(pvs: &Api<PersistentVolume>, name: &str) -> bool {
    poll(10, || async {
        match pvs.get_opt(name).await {
            Ok(None) => Some(()),
            Ok(Some(pv)) => pv.metadata.deletion_timestamp.map(|_| ()),
            Err(_) => None,
        }
    })
    .await
    .is_some()
}

/// What linstor-csi v1.12.0 needs to mount a PV whose volume it did not create
/// (docs/reference/linstor-csi-static-pv.md §1, checked in its source): the driver and
/// `volumeHandle` naming an existing resource definition with volume 0 (`ParseVolumeId`,
/// `FindByID`), at least one deployed replica (ControllerPublish), a volume context the node
/// plugin parses (`VolumeContextFromMap`: the marker, then `remote-access-policy` as a bool or
/// a YAML list of `fromSame` rules), the filesystem LINSTOR makes (`FileSystem/Type`) equal to
/// the PV's `fsType`, a capacity no larger than the volume, and `Retain` (with `Delete`,
/// csi-provisioner would call DeleteVolume on the resource definition).
fn csi_contract(pv: &PersistentVolume, sim: &LinstorSim) -> Result<(), String> {
    let spec = pv.spec.as_ref().ok_or("no spec")?;
    let csi = spec.csi.as_ref().ok_or("not a CSI volume")?;
    if csi.driver != "linstor.csi.linbit.com" {
        return Err(format!("driver {}", csi.driver));
    }
    let (rd_name, vnr) = match csi.volume_handle.split_once('/') {
        Some((rd, n)) => (rd, n.parse::<i64>().map_err(|e| e.to_string())?),
        None => (csi.volume_handle.as_str(), 0),
    };
    let rd = sim
        .resource_definition(rd_name)
        .ok_or_else(|| format!("no resource definition {rd_name}"))?;
    let vd = sim
        .volume_definitions(rd_name)
        .into_iter()
        .find(|v| v["volume_number"].as_i64() == Some(vnr))
        .ok_or("no volume definition for the handle's volume number")?;
    if rd["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "CLONING"))
    {
        return Err("the resource definition is being cloned".into());
    }
    if sim.resources(rd_name).is_empty() {
        return Err("no deployed replica: ControllerPublish refuses to attach".into());
    }
    let ctx = csi.volume_attributes.clone().unwrap_or_default();
    if ctx.contains_key("linstor.csi.linbit.com/uses-volume-context") {
        let policy = ctx
            .get("linstor.csi.linbit.com/remote-access-policy")
            .map(String::as_str)
            .unwrap_or_default();
        let parses = matches!(
            policy,
            "true" | "false" | "1" | "0" | "t" | "f" | "TRUE" | "FALSE" | "True" | "False"
        ) || serde_yaml::from_str::<
            Vec<std::collections::BTreeMap<String, Vec<String>>>,
        >(policy)
        .is_ok();
        if !parses {
            return Err(format!("remote-access-policy {policy:?} does not parse"));
        }
    }
    let fs_prop = vd["props"]["FileSystem/Type"]
        .as_str()
        .or(rd["props"]["FileSystem/Type"].as_str());
    if spec.volume_mode.as_deref() != Some("Block") && fs_prop != csi.fs_type.as_deref() {
        return Err(format!(
            "LINSTOR makes {fs_prop:?}, the PV mounts {:?}",
            csi.fs_type
        ));
    }
    let cap = spec
        .capacity
        .as_ref()
        .and_then(|c| c.get("storage"))
        .and_then(|q| edgebind::crd::quantity::parse_bytes(&q.0).ok())
        .ok_or("no capacity")?;
    if cap > vd["size_kib"].as_u64().unwrap_or(0) * 1024 {
        return Err(format!("capacity {cap} exceeds the volume"));
    }
    if spec.persistent_volume_reclaim_policy.as_deref() != Some("Retain") {
        return Err("reclaim policy is not Retain".into());
    }
    Ok(())
}

/// Sets the status the PV controller's binder would write (the test server runs no
/// kube-controller-manager): the PV `phase`, and for a bound claim its uid in the PV's claimRef
/// and the claim's own phase.
async fn bind_as_the_binder(
    run: &Run,
    pv_name: &str,
    claim: Option<&PersistentVolumeClaim>,
    phase: &str,
) {
    let pvs = Api::<PersistentVolume>::all(run.admin.clone());
    if let Some(c) = claim {
        pvs.patch(
            pv_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"claimRef": {"uid": c.metadata.uid, "resourceVersion": c.metadata.resource_version}}})),
        )
        .await
        .expect("claimRef uid");
        Api::<PersistentVolumeClaim>::namespaced(run.admin.clone(), &run.ns)
            .patch_status(
                c.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}})),
            )
            .await
            .expect("claim status");
    }
    pvs.patch_status(
        pv_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase}})),
    )
    .await
    .expect("PV status");
}

/// The example's shape (examples/50-persistent-volume.yaml) through the real API server: the PV
/// edgebind creates is accepted by the server and meets the CSI driver's needs, a claim binds
/// it, growing the volume grows the PV, and deleting the volume waits while the claim is bound.
#[tokio::test]
async fn a_volumes_persistent_volume_binds_its_claim_and_holds_deletion_while_bound() {
    let (_turn, server) = my_turn().await;
    let run = Run::start(server, "pv").await;
    run.create_volume(
        "db",
        json!({"persistentVolume": {"claimName": "data", "storageClassName": "linstor-static"}}),
    )
    .await;
    let pv_name = format!("edgebind.{}.db", run.ns);
    let pvs = Api::<PersistentVolume>::all(run.admin.clone());
    let v = poll(30, || async {
        let v = run.volumes().get_opt("db").await.ok().flatten()?;
        ready(v.status.as_ref().map(|s| &s.conditions[..]))?;
        v.status.as_ref()?.persistent_volume.as_ref()?;
        Some(v)
    })
    .await
    .expect("db Ready with its PV");
    let st = v.status.clone().expect("status");
    let pv = pvs
        .get(&pv_name)
        .await
        .expect("the PV was accepted by the API server");
    assert_eq!(
        st.persistent_volume.as_ref().map(|p| p.name.as_str()),
        Some(pv_name.as_str())
    );
    let spec = pv.spec.clone().expect("spec");
    assert_eq!(
        spec.csi.as_ref().map(|c| c.volume_handle.as_str()),
        st.linstor_name.as_deref()
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("linstor-static"));
    let cref = spec.claim_ref.clone().expect("pre-bound");
    assert_eq!(
        (cref.namespace.as_deref(), cref.name.as_deref()),
        (Some(run.ns.as_str()), Some("data"))
    );
    csi_contract(&pv, &run.linstor.sim).expect("the CSI driver can mount it");

    // The claim, as in the example; then bound as the binder would.
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "linstor-static",
                 "volumeName": pv_name, "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    let pvc = Api::<PersistentVolumeClaim>::namespaced(run.admin.clone(), &run.ns)
        .create(&PostParams::default(), &pvc)
        .await
        .expect("claim accepted");
    bind_as_the_binder(&run, &pv_name, Some(&pvc), "Bound").await;
    poll(15, || async {
        let v = run.volumes().get("db").await.ok()?;
        (v.status?.persistent_volume?.phase.as_deref() == Some("Bound")).then_some(())
    })
    .await
    .expect("status shows the PV bound");

    // Growing the volume grows the PV (bound or not).
    run.volumes()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": "2Gi"}})),
        )
        .await
        .expect("grow");
    poll(30, || async {
        let pv = pvs.get(&pv_name).await.ok()?;
        let cap = pv.spec?.capacity?.get("storage")?.0.clone();
        (cap == "2Gi").then_some(())
    })
    .await
    .expect("PV capacity 2Gi");
    let pv = pvs.get(&pv_name).await.expect("PV");
    csi_contract(&pv, &run.linstor.sim).expect("still mountable after the resize");
    assert_eq!(
        pv.spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|c| c.uid.clone()),
        pvc.metadata.uid,
        "the binder's claimRef is kept"
    );

    // Deleting the volume waits while the claim is bound.
    run.volumes()
        .delete("db", &DeleteParams::default())
        .await
        .expect("delete");
    let blocked = poll(15, || async {
        let v = run.volumes().get("db").await.ok()?;
        let c = v
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (c.reason == "PersistentVolumeBound").then_some(c.message)
    })
    .await
    .expect("a condition says the claim holds the deletion");
    assert!(blocked.contains(&format!("{}/data", run.ns)), "{blocked}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rd = edgebind::linstor::naming::volume_name(&run.ns, "db");
    assert!(
        run.linstor.sim.resource_definition(&rd).is_some(),
        "storage kept while bound"
    );
    assert!(
        pvs.get_opt(&pv_name).await.expect("get").is_some(),
        "PV kept while bound"
    );

    // The claim is deleted; the binder marks the PV Released; then everything goes.
    Api::<PersistentVolumeClaim>::namespaced(run.admin.clone(), &run.ns)
        .delete("data", &DeleteParams::default())
        .await
        .expect("delete claim");
    bind_as_the_binder(&run, &pv_name, None, "Released").await;
    assert!(
        run.gone(&run.volumes(), "db", 30).await,
        "db released once the claim is"
    );
    assert!(
        run.linstor.sim.resource_definition(&rd).is_none(),
        "storage deleted (deletionPolicy Delete)"
    );
    assert!(pv_deleted(&pvs, &pv_name).await, "PV deleted");
    run.stop().await;
}

#[tokio::test]
async fn the_controller_runs_volumes_snapshots_and_restores_under_the_charts_rbac() {
    let (_turn, server) = my_turn().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    set_rules(
        server,
        "ClusterRole",
        CONTROLLER_ROLE,
        chart_rules("ClusterRole", CONTROLLER_ROLE),
    )
    .await;
    let run = Run::start(server, "lifecycle").await;

    run.create_volume("db", json!({})).await;
    let v = run.volume_ready("db", 30).await.expect("db Ready");
    let st = v.status.clone().expect("status");
    assert_eq!(st.observed_generation, v.metadata.generation);
    assert_eq!(st.size.as_deref(), Some("1Gi"));
    assert!(
        v.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&controller::FINALIZER.to_string()),
        "the controller's finalizer is set through the real server"
    );
    let fields = v.metadata.managed_fields.unwrap_or_default();
    assert!(
        fields
            .iter()
            .any(|f| f.manager.as_deref() == Some(controller::FIELD_MANAGER)
                && f.subresource.as_deref() == Some("status")
                && f.operation.as_deref() == Some("Apply")),
        "status is written by server-side apply on the status subresource: {fields:?}"
    );
    assert!(run.applied_event("db").await, "an Applied event");

    // Resize through the real server; status follows.
    run.volumes()
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": "2Gi"}})),
        )
        .await
        .expect("grow");
    poll(30, || async {
        let v = run.volumes().get("db").await.ok()?;
        (v.status?.size.as_deref() == Some("2Gi")).then_some(())
    })
    .await
    .expect("status size 2Gi");

    // Snapshot, then a new volume restored from it.
    let s: EdgeSnapshot = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeSnapshot",
        "metadata": {"name": "nightly"}, "spec": {"volumeRef": "db", "deletionPolicy": "Delete"}
    }))
    .unwrap();
    run.snapshots()
        .create(&PostParams::default(), &s)
        .await
        .expect("snapshot");
    poll(30, || async {
        let s = run.snapshots().get("nightly").await.ok()?;
        ready(s.status.as_ref().map(|s| &s.conditions[..]))
    })
    .await
    .expect("snapshot Ready");
    run.create_volume(
        "copy",
        json!({"size": "2Gi", "source": {"snapshot": "nightly"}}),
    )
    .await;
    run.volume_ready("copy", 30)
        .await
        .expect("restored volume Ready");

    // Deletion runs behind the finalizers, through the real server.
    for name in ["copy", "db"] {
        run.volumes()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    run.snapshots()
        .delete("nightly", &DeleteParams::default())
        .await
        .expect("delete snapshot");
    assert!(run.gone(&run.volumes(), "copy", 30).await, "copy released");
    assert!(run.gone(&run.volumes(), "db", 30).await, "db released");
    assert!(
        run.gone(&run.snapshots(), "nightly", 30).await,
        "snapshot released"
    );
    for name in ["copy", "db"] {
        let rd = edgebind::linstor::naming::volume_name(&run.ns, name);
        assert!(
            run.linstor.sim.resource_definition(&rd).is_none(),
            "{rd} deleted from LINSTOR"
        );
    }
    run.stop().await;
}

/// An EdgeBinding in a tenant namespace, where the chart grants the controller no Secret access
/// at all, and its CloudflareAccount with the token in a Secret in the release namespace, on a
/// Cloudflare simulator: published with a signing key whose private half is kept in the release
/// namespace only and whose public half reaches the gateway key Secret; rotated on demand; on
/// deletion both halves are gone.
async fn binding_scenario(run: &Run, secs: u64) -> Result<(), String> {
    use edgebind::crd::{CloudflareAccount, EdgeBinding};
    use edgebind_sim::cloudflare::{
        CfSimConfig, CloudflareSim, REALISTIC_ACCOUNT_ID, REALISTIC_TOKEN, REALISTIC_ZONE_ID,
    };
    use k8s_openapi::api::core::v1::Secret;

    let cf = CloudflareSim::start(CfSimConfig::realistic())
        .await
        .map_err(|e| e.to_string())?;
    let id = &run.ns;
    let pp = PostParams::default();
    let token: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("cf-{id}"), "namespace": RELEASE_NS},
        "stringData": {"token": REALISTIC_TOKEN}
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(run.admin.clone(), RELEASE_NS);
    secrets
        .create(&pp, &token)
        .await
        .map_err(|e| e.to_string())?;
    let account: CloudflareAccount = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "CloudflareAccount",
        "metadata": {"name": format!("cf-{id}")},
        "spec": {"accountId": REALISTIC_ACCOUNT_ID, "apiUrl": cf.url(), "timeoutSeconds": 5,
                 "apiToken": {"namespace": RELEASE_NS, "name": format!("cf-{id}"), "key": "token"},
                 "budget": {"requestsPerSecond": 3, "burst": 20}}
    }))
    .unwrap();
    Api::<CloudflareAccount>::all(run.admin.clone())
        .create(&pp, &account)
        .await
        .map_err(|e| e.to_string())?;
    // A binding publishes the issuers the Worker trusts; it needs at least one.
    let issuer: edgebind::crd::IdentityIssuer = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer",
        "metadata": {"name": format!("idp-{id}")},
        "spec": {"issuer": "https://idp.example", "audiences": ["edgebind"], "algorithms": ["ES256"]}
    }))
    .unwrap();
    Api::<edgebind::crd::IdentityIssuer>::all(run.admin.clone())
        .create(&pp, &issuer)
        .await
        .map_err(|e| e.to_string())?;
    let binding: EdgeBinding = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
        "metadata": {"name": format!("b-{id}")},
        "spec": {"accountRef": format!("cf-{id}"), "zoneId": REALISTIC_ZONE_ID,
                 "routes": [format!("{id}.example.com/*")], "scriptName": format!("eb-{id}"),
                 "gatewayUrl": "https://gw.example.com"}
    }))
    .unwrap();
    let bindings: Api<EdgeBinding> = Api::namespaced(run.admin.clone(), &run.ns);
    let uid = bindings
        .create(&pp, &binding)
        .await
        .map_err(|e| e.to_string())?
        .metadata
        .uid
        .unwrap_or_default();
    let private = format!("edgebind-signing-{uid}");
    let name = format!("b-{id}");
    let published = poll(secs, || async {
        let b = bindings.get_opt(&name).await.ok().flatten()?;
        let st = b.status?;
        (ready(Some(&st.conditions[..])).is_some() && st.secret_hashes.contains_key("SIGNING_KEY"))
            .then_some(())
    })
    .await;
    let outcome = match published {
        None => {
            let b = bindings.get_opt(&name).await.ok().flatten();
            let a = Api::<CloudflareAccount>::all(run.admin.clone())
                .get_opt(&format!("cf-{id}"))
                .await
                .ok()
                .flatten();
            let conds =
                |c: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>| {
                    c.unwrap_or_default()
                        .into_iter()
                        .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                        .collect::<Vec<_>>()
                };
            Err(format!(
                "the binding was never published with a signing key (binding {:?}, account {:?})",
                conds(b.and_then(|b| b.status).map(|s| s.conditions)),
                conds(a.and_then(|a| a.status).map(|s| s.conditions)),
            ))
        }
        Some(()) => {
            let keys = secrets
                .get_opt("edgebind-gateway-keys")
                .await
                .ok()
                .flatten()
                .and_then(|s| s.data)
                .unwrap_or_default();
            let tenant_secrets = Api::<Secret>::namespaced(run.admin.clone(), &run.ns)
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            if !keys.keys().any(|k| k.ends_with(".pub")) {
                Err("no public key in the gateway key Secret".to_string())
            } else if !tenant_secrets.items.is_empty() {
                Err("a Secret was written into the binding's (tenant) namespace".to_string())
            } else if secrets.get_opt(&private).await.ok().flatten().is_none() {
                Err(format!("no private key Secret {private} in {RELEASE_NS}"))
            } else {
                rotate(&bindings, &secrets, &name, secs).await
            }
        }
    };
    let _ = bindings.delete(&name, &DeleteParams::default()).await;
    if outcome.is_ok() && !run.gone(&bindings, &name, secs).await {
        return Err("the binding was never released by the finalizer".into());
    }
    if outcome.is_ok() && secrets.get_opt(&private).await.ok().flatten().is_some() {
        return Err(format!(
            "the private key Secret {private} outlived its binding"
        ));
    }
    cf.shutdown().await;
    outcome
}

/// An on-demand rotation: a new current key, whose public half replaces the old one in the
/// gateway key Secret (published first, the old one retired after the overlap).
async fn rotate(
    bindings: &Api<edgebind::crd::EdgeBinding>,
    secrets: &Api<k8s_openapi::api::core::v1::Secret>,
    name: &str,
    secs: u64,
) -> Result<(), String> {
    let current = |b: edgebind::crd::EdgeBinding| b.status.and_then(|s| s.current_key_id);
    let old = bindings
        .get(name)
        .await
        .ok()
        .and_then(current)
        .ok_or("no current key")?;
    bindings
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"edgebind.dev/rotate-key": "r1"}}})),
        )
        .await
        .map_err(|e| e.to_string())?;
    let new = poll(secs, || async {
        bindings
            .get(name)
            .await
            .ok()
            .and_then(current)
            .filter(|k| *k != old)
    })
    .await
    .ok_or("the rotation never made a new key current")?;
    poll(secs, || async {
        let data = secrets
            .get_opt("edgebind-gateway-keys")
            .await
            .ok()
            .flatten()?
            .data?;
        (data.contains_key(&format!("{new}.pub")) && !data.contains_key(&format!("{old}.pub")))
            .then_some(())
    })
    .await
    .ok_or_else(|| "the gateway key Secret did not move to the new key".to_string())
}

/// Whether the server answers a watch of EdgeVolumes from `rv` with `410 Gone` (as an HTTP status
/// or as the stream's first event, the two ways a server may say it).
async fn watch_is_gone(api: &Api<EdgeVolume>, rv: &str) -> bool {
    match api.watch(&WatchParams::default().timeout(5), rv).await {
        Err(kube::Error::Api(e)) => e.code == 410,
        Err(_) => false,
        Ok(stream) => matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.boxed().next()).await,
            Ok(Some(Ok(WatchEvent::Error(e)))) if e.code == 410
        ),
    }
}

/// The controller's watches recover from `410 Gone` on the real server. Its own server runs with
/// the watch cache off (watches read etcd) and etcd compacted every second, so once the
/// controller has been cut off for a few seconds, every resourceVersion it has seen is gone and
/// resuming a watch from one is refused: only a relist can show what changed meanwhile. A volume
/// created and one deleted during the partition are both reconciled after it.
#[tokio::test]
async fn the_controller_relists_after_410_gone_from_the_real_server() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let server = apiserver::private(&["--watch-cache=false", "--etcd-compaction-interval=1s"]);
    assert!(apiserver::create_crds(&server).await.is_empty());
    create_chart_rbac(&server).await;
    let upstream: std::net::SocketAddr = server
        .info
        .server
        .trim_start_matches("https://")
        .parse()
        .expect("kube-testenv serves on an address");
    let partition = Partition::start(upstream).await;
    let mut cfg = server.config(Who::Controller).await;
    cfg.cluster_url = format!("https://{}", partition.addr())
        .parse()
        .expect("URL");
    let client = kube::Client::try_from(cfg).expect("client");
    let run = Run::start_with(&server, "gone", client).await;

    run.create_volume("before", json!({})).await;
    assert!(run.volume_ready("before", 30).await.is_some());

    partition.cut();
    // Every resourceVersion the controller has seen is at most this one.
    let seen = run
        .volumes()
        .list_metadata(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("a list has a resourceVersion");
    run.create_volume("during", json!({})).await;
    run.volumes()
        .delete("before", &DeleteParams::default())
        .await
        .expect("delete");
    let expired = poll(30, || async {
        watch_is_gone(&run.volumes(), &seen).await.then_some(())
    })
    .await;
    assert!(
        expired.is_some(),
        "etcd was never compacted past resourceVersion {seen}"
    );
    partition.heal();

    assert!(
        run.volume_ready("during", 60).await.is_some(),
        "the volume created while the controller was cut off was never reconciled"
    );
    assert!(
        run.gone(&run.volumes(), "before", 60).await,
        "the volume deleted while the controller was cut off was never released"
    );
    let rd = edgebind::linstor::naming::volume_name(&run.ns, "before");
    assert!(run.linstor.sim.resource_definition(&rd).is_none());
    run.stop().await;
}

#[tokio::test]
async fn the_controller_publishes_a_binding_under_the_charts_rbac() {
    let (_turn, server) = my_turn().await;
    let run = Run::start(server, "bind").await;
    let outcome = binding_scenario(&run, 30).await;
    run.stop().await;
    outcome.expect("the binding is published under the chart's RBAC");
}

/// Each rule of the controller's ClusterRole and Roles (default values) is needed: without it
/// the volume lifecycle or the binding stops where the rule is used. Except where two Roles of
/// the default render grant the same: with default values the backend Secrets are read in the
/// release namespace, where the keys Role (get, create, patch, delete of Secrets) already
/// grants `get`. That rule is listed here, so a chart change that alters it shows.
#[tokio::test]
async fn every_rule_of_the_charts_controller_roles_is_needed() {
    const SUBSUMED_BY_KEYS: &[(&str, usize)] = &[("edgebind-controller-backend-secrets", 0)];
    let (_turn, server) = my_turn().await;
    let both = |run: Run, secs: u64| async move {
        let outcome = match short_lifecycle(&run, secs).await {
            Ok(()) => binding_scenario(&run, secs).await,
            Err(e) => Err(e),
        };
        run.stop().await;
        outcome
    };
    both(Run::start(server, "rbac-all").await, 30)
        .await
        .expect("with every rule, volumes and bindings work");

    let mut not_needed = Vec::new();
    let mut checked = 0;
    for (kind, name) in [
        ("ClusterRole", "edgebind-controller"),
        ("Role", "edgebind-controller-backend-secrets"),
        ("Role", "edgebind-controller-keys"),
    ] {
        let rules = chart_rules(kind, name);
        for i in 0..rules.len() {
            let mut without = rules.clone();
            let removed = without.remove(i);
            set_rules(server, kind, name, without).await;
            let outcome = both(Run::start(server, &format!("rbac-{checked}")).await, 8).await;
            eprintln!(
                "without {kind} {name} rule {i} ({:?} {:?}): {outcome:?}",
                removed.resources, removed.verbs
            );
            set_rules(server, kind, name, rules.clone()).await;
            if outcome.is_ok() {
                not_needed.push((name, i));
            }
            checked += 1;
        }
    }
    assert!(checked >= 7, "every controller rule was removed once");
    assert_eq!(
        not_needed, SUBSUMED_BY_KEYS,
        "rules whose removal changed nothing (beyond the known overlap)"
    );
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A namespace with an issuer and an Allow policy, the release's key Secret, and the key.
struct Edge {
    ns: String,
    other_ns: String,
    issuer: String,
    key: ed25519_dalek::SigningKey,
}

async fn edge_setup(server: &RealApiServer, prefix: &str) -> Edge {
    use base64::Engine;
    use k8s_openapi::api::core::v1::Secret;

    let admin = server.client(Who::Admin).await;
    let ns = server.namespace(prefix).await;
    let other_ns = server.namespace(&format!("{prefix}-other")).await;
    // The key Secret the controller would publish, and an issuer and a policy for `ns`.
    let key = ed25519_dalek::SigningKey::from_bytes(&[11u8; 32]);
    let public =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "edgebind-gateway-keys", "namespace": RELEASE_NS},
        "stringData": {"edge-1.pub": public, "edge-1.namespace": ns}
    }))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), RELEASE_NS);
    let _ = secrets
        .delete("edgebind-gateway-keys", &DeleteParams::default())
        .await;
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("key Secret");
    let issuer = format!("idp-{ns}");
    // The test IdP: the gateway fetches its JWK Set and verifies each request's token.
    let is = crate::support::idp::issuer(&issuer);
    Api::<edgebind::crd::IdentityIssuer>::all(admin.clone())
        .create(&PostParams::default(), &is)
        .await
        .expect("issuer");
    let policy: edgebind::crd::VolumeAccessPolicy = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
        "metadata": {"name": "automation"},
        "spec": {"effect": "Allow", "subjects": [{"issuer": issuer}],
                 "actions": ["read", "create", "resize", "snapshot", "delete"]}
    }))
    .unwrap();
    Api::<edgebind::crd::VolumeAccessPolicy>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &policy)
        .await
        .expect("policy");
    Edge {
        ns,
        other_ns,
        issuer,
        key,
    }
}

/// One gateway process (in this test process: `serve`, the binary's own composition) under
/// the gateway's ServiceAccount.
struct GatewayRun {
    base: String,
    admin: std::net::SocketAddr,
    task: JoinHandle<()>,
}

impl GatewayRun {
    async fn start(server: &RealApiServer) -> GatewayRun {
        use edgebind::gateway::server::serve;
        let (listen, admin) = (free_port(), free_port());
        let args = crate::support::edge::gateway_args(listen, admin, RELEASE_NS, "main");
        let client = server.client(Who::Gateway).await;
        let task = tokio::spawn(async move {
            if let Err(e) = serve(client, args, futures::future::pending()).await {
                tracing::warn!("gateway stopped: {e:#}");
            }
        });
        GatewayRun {
            base: format!("http://{listen}"),
            admin,
            task,
        }
    }

    async fn ready(&self, secs: u64) -> bool {
        let http = crate::support::http::client();
        poll(secs, || async {
            let r = http
                .get(format!("http://{}/readyz", self.admin))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await
        .is_some()
    }

    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The gateway as `edgebind-gateway` (the binary's own composition: keys from the release's key
/// Secret, policies compiled from the cluster's issuers and policies, watch caches, events)
/// serving signed requests. `Err` names the first step that did not happen.
async fn edge_scenario(server: &RealApiServer, e: &Edge, secs: u64) -> Result<(), String> {
    use crate::support::edge::send_signed;

    let admin = server.client(Who::Admin).await;
    let gw = GatewayRun::start(server).await;
    let outcome = async {
        if !gw.ready(secs).await {
            return Err("the gateway never became ready (keys, policies or watch caches)".into());
        }
        let (base, key, issuer, ns) = (gw.base.clone(), &e.key, &e.issuer, &e.ns);
        let send = |method: &'static str, path: String, body: Value, id: String| {
            let base = base.clone();
            async move {
                send_signed(&base, key, issuer, method, &path, body, &id)
                    .await
                    .0
            }
        };
        // The bundle is reloaded every second; wait until it holds this test's policy.
        let mut n = 0;
        let status = poll(secs, || {
            n += 1;
            let f = send(
                "POST",
                format!("/api/v1/namespaces/{ns}/volumes"),
                json!({"name": "app-db", "sizeBytes": 1u64 << 30}),
                format!("req-create-{n}"),
            );
            async move { Some(f.await).filter(|s| *s != 403) }
        })
        .await
        .ok_or("the policy never reached the gateway")?;
        if status != 201 {
            return Err(format!("create answered {status}"));
        }
        let vols: Api<EdgeVolume> = Api::namespaced(admin.clone(), ns);
        let size = |v: EdgeVolume| v.spec.size;
        if vols.get("app-db").await.map(size).ok() != Some((1u64 << 30).to_string()) {
            return Err("the EdgeVolume was not created".into());
        }
        let vol = format!("/api/v1/namespaces/{ns}/volumes/app-db");
        let checks = [
            ("GET", vol.clone(), Value::Null, 200),
            (
                "POST",
                format!("{vol}/resize"),
                json!({"sizeBytes": 2u64 << 30}),
                202,
            ),
            (
                "POST",
                format!("{vol}/snapshots"),
                json!({"name": "s1"}),
                201,
            ),
            (
                "POST",
                format!("/api/v1/namespaces/{}/volumes", e.other_ns),
                json!({"name": "intruder", "sizeBytes": 1u64 << 30}),
                403,
            ),
        ];
        for (i, (method, path, body, want)) in checks.into_iter().enumerate() {
            let got = send(method, path.clone(), body, format!("req-{i}")).await;
            if got != want {
                return Err(format!("{method} {path} answered {got}, not {want}"));
            }
        }
        if vols.get("app-db").await.map(size).ok() != Some((2u64 << 30).to_string()) {
            return Err("the resize did not reach the EdgeVolume".into());
        }
        let snaps: Api<EdgeSnapshot> = Api::namespaced(admin.clone(), ns);
        let listed = snaps
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if !listed.items.iter().any(|x| x.spec.volume_ref == "app-db") {
            return Err("no EdgeSnapshot of app-db".into());
        }
        let intruders = Api::<EdgeVolume>::namespaced(admin.clone(), &e.other_ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if !intruders.items.is_empty() {
            return Err("a refused request created a volume".into());
        }
        // The writes are recorded as events, published by the gateway's own account.
        let events: Api<Event> = Api::namespaced(admin.clone(), ns);
        poll(5, || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reporting_controller.as_deref() == Some("edgebind-gateway")
                        && e.reason.as_deref() == Some("EdgeCreate")
                })
                .then_some(())
        })
        .await
        .ok_or("no EdgeCreate event")?;
        let got = send("DELETE", vol, Value::Null, "req-del".into()).await;
        if got != 202 {
            return Err(format!("delete answered {got}"));
        }
        Ok(())
    }
    .await;
    gw.stop().await;
    outcome
}

/// Replay across replicas and a restart, on the real API server under the chart's RBAC: two
/// gateways (the chart's default of 2 replicas) share nothing but the cluster. A captured create
/// is replayed to the other replica once the tenant has deleted the volume, and to a gateway
/// started after the first one stopped: the volume is never created again. The records are
/// Leases in the release namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_has_no_second_effect_across_two_gateways_and_a_restart() {
    use crate::support::edge::sign;

    let (_turn, server) = my_turn().await;
    let e = edge_setup(server, "replay").await;
    let admin = server.client(Who::Admin).await;
    let (one, two) = (
        GatewayRun::start(server).await,
        GatewayRun::start(server).await,
    );
    assert!(
        one.ready(30).await && two.ready(30).await,
        "both replicas ready"
    );
    // The Service name both replicas answer to.
    let authority = "edgebind-gateway.edgebind-system.svc:8443";
    let ns = &e.ns;
    let signed = |method: &str, path: String, body: Value, id: &str| {
        sign(authority, &e.key, &e.issuer, method, &path, body, id)
    };
    let list = format!("/api/v1/namespaces/{ns}/volumes");
    for gw in [&one, &two] {
        let mut n = 0;
        let loaded = poll(30, || {
            n += 1;
            let r = signed("GET", list.clone(), Value::Null, &format!("warm-{n}"));
            async move { (r.deliver(&gw.base).await == 200).then_some(()) }
        })
        .await;
        assert!(loaded.is_some(), "the policy reached {}", gw.base);
    }
    let vols: Api<EdgeVolume> = Api::namespaced(admin.clone(), ns);
    let create = signed(
        "POST",
        list.clone(),
        json!({"name": "replayed", "sizeBytes": 1u64 << 30}),
        "create",
    );
    assert_eq!(create.deliver(&one.base).await, 201);
    assert_eq!(create.deliver(&two.base).await, 401, "the other replica");
    let delete = signed("DELETE", format!("{list}/replayed"), Value::Null, "delete");
    assert_eq!(delete.deliver(&one.base).await, 202);
    assert!(
        poll(10, || async {
            vols.get_opt("replayed")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        })
        .await
        .is_some(),
        "the volume is gone (no controller, so no finalizer holds it)"
    );
    assert_eq!(
        create.deliver(&two.base).await,
        401,
        "replayed after the delete"
    );
    one.stop().await;
    let restarted = GatewayRun::start(server).await;
    assert!(restarted.ready(30).await);
    assert_eq!(
        create.deliver(&restarted.base).await,
        401,
        "after a restart"
    );
    assert_eq!(delete.deliver(&restarted.base).await, 401, "the delete too");
    assert!(
        vols.get_opt("replayed").await.expect("get").is_none(),
        "the replays created nothing"
    );
    let records = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(admin, RELEASE_NS)
        .list(&ListParams::default().labels(edgebind::gateway::replay::RECORD_LABEL))
        .await
        .expect("list records");
    assert!(records.items.len() >= 2, "one record per mutation");
    two.stop().await;
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_edge_requests_under_the_charts_rbac() {
    let (_turn, server) = my_turn().await;
    let e = edge_setup(server, "edge").await;
    edge_scenario(server, &e, 30)
        .await
        .expect("the edge scenario completes under the chart's RBAC");
}

/// Issue 13, on the real API server under the chart's RBAC (the gateway reads EdgeBindings
/// from its watch cache): a create through binding A lands on A's backend, through binding B on
/// B's (`support::edge::volume_defaults_scenario`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_creates_take_the_volume_defaults_of_their_binding_under_the_charts_rbac() {
    let (_turn, server) = my_turn().await;
    let admin = server.client(Who::Admin).await;
    let ns = server.namespace("defaults").await;
    let gateway = server.client(Who::Gateway).await;
    crate::support::edge::volume_defaults_scenario(&admin, gateway, &ns, RELEASE_NS, 30)
        .await
        .expect("each binding's defaults shape the volumes created through it");
}

/// The rules of the role named `name` (a ClusterRole, or a Role in the release namespace), as
/// the chart renders them.
fn chart_rules(kind: &str, name: &str) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
    let file = if name.starts_with("edgebind-gateway") {
        "rbac-gateway.yaml"
    } else {
        "rbac-controller.yaml"
    };
    let doc = base_docs(file)
        .into_iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} in {file}"));
    serde_json::from_value(doc["rules"].clone()).expect("rules")
}

async fn set_rules(
    server: &RealApiServer,
    kind: &str,
    name: &str,
    rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
) {
    let admin = server.client(Who::Admin).await;
    let pp = PostParams::default();
    if kind == "ClusterRole" {
        let api = Api::<ClusterRole>::all(admin);
        let mut r = api.get(name).await.expect("ClusterRole");
        r.rules = Some(rules);
        api.replace(name, &pp, &r).await.expect("replaced");
    } else {
        let api = Api::<Role>::namespaced(admin, RELEASE_NS);
        let mut r = api.get(name).await.expect("Role");
        r.rules = Some(rules);
        api.replace(name, &pp, &r).await.expect("replaced");
    }
}

/// Each rule of the gateway's ClusterRole, key Role and replay Role is needed: without it the
/// edge scenario stops where the rule is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_of_the_charts_gateway_roles_is_needed() {
    let (_turn, server) = my_turn().await;
    let mut checked = 0;
    for (kind, name) in [
        ("ClusterRole", "edgebind-gateway"),
        ("Role", "edgebind-gateway-keys"),
        ("Role", "edgebind-gateway-replay"),
    ] {
        let rules = chart_rules(kind, name);
        for i in 0..rules.len() {
            let mut without = rules.clone();
            let removed = without.remove(i);
            set_rules(server, kind, name, without).await;
            let e = edge_setup(server, &format!("gw-rbac-{checked}")).await;
            let outcome = edge_scenario(server, &e, 6).await;
            eprintln!(
                "without {kind} {name} rule {i} ({:?}): {outcome:?}",
                removed.resources
            );
            set_rules(server, kind, name, rules.clone()).await;
            assert!(
                outcome.is_err(),
                "without {kind} {name} rule {i} ({:?} {:?}) the edge scenario still completed",
                removed.resources,
                removed.verbs
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "every gateway rule was removed once");
}

fn leader_election_docs() -> Vec<Value> {
    let path = format!(
        "{}/../../deploy/kustomize/components/leader-election/rbac-leader-election.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("component");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The Role and RoleBinding the chart adds with leader election on (once per server).
async fn apply_leader_election_role(server: &RealApiServer) {
    let admin = server.client(Who::Admin).await;
    for doc in leader_election_docs() {
        create_rbac_doc(&admin, doc).await;
    }
}

/// Each rule of the leader-election Role is needed: without it no controller takes a fresh Lease.
#[tokio::test]
async fn every_rule_of_the_leader_election_role_is_needed() {
    use edgebind::controller::leader::LeaseConfig;
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::rbac::v1::PolicyRule;

    let (_turn, server) = my_turn().await;
    apply_leader_election_role(server).await;
    let admin = server.client(Who::Admin).await;
    let role = leader_election_docs()
        .into_iter()
        .find(|d| d["kind"] == "Role")
        .expect("Role");
    let name = role["metadata"]["name"].as_str().expect("name").to_string();
    let rules: Vec<PolicyRule> = serde_json::from_value(role["rules"].clone()).expect("rules");
    let leases: Api<Lease> = Api::namespaced(admin.clone(), RELEASE_NS);
    let takes_lease = |secs: u64| {
        let leases = leases.clone();
        async move {
            let _ = leases
                .delete("edgebind-controller", &DeleteParams::default())
                .await;
            let task = tokio::spawn(async move {
                let client = apiserver::shared().client(Who::Controller).await;
                let mut lease = LeaseConfig::new(RELEASE_NS, "edgebind-controller", "solo");
                lease.lease_duration = Duration::from_secs(2);
                lease.renew_deadline = Duration::from_millis(1500);
                lease.retry_period = Duration::from_millis(250);
                controller::run_with_leader_election(
                    client,
                    config(),
                    Readiness::default(),
                    lease,
                    futures::future::pending(),
                )
                .await
            });
            let held = poll(secs, || async {
                let l = leases.get_opt("edgebind-controller").await.ok().flatten()?;
                (l.spec?.holder_identity.as_deref() == Some("solo")).then_some(())
            })
            .await
            .is_some();
            task.abort();
            let _ = task.await;
            held
        }
    };
    assert!(
        takes_lease(15).await,
        "with the chart's Role the Lease is taken"
    );
    for i in 0..rules.len() {
        let mut without = rules.clone();
        let removed = without.remove(i);
        set_rules(server, "Role", &name, without).await;
        let held = takes_lease(6).await;
        set_rules(server, "Role", &name, rules.clone()).await;
        assert!(
            !held,
            "without rule {i} ({:?} {:?}) the Lease was still taken",
            removed.resource_names, removed.verbs
        );
    }
}

/// Leader election on a real Lease, under the Role the chart adds with
/// `controller.leaderElection.enabled` (`deploy/kustomize/components/leader-election`, kept equal
/// to the chart's render by tests/python/test_deploy.py): one leader reconciles, a standby takes
/// over when the leader dies without releasing, and a graceful stop releases the Lease.
#[tokio::test]
async fn leader_election_on_a_real_lease_under_the_charts_role() {
    use edgebind::controller::leader::LeaseConfig;
    use k8s_openapi::api::coordination::v1::Lease;
    use tokio::sync::oneshot;

    let (_turn, server) = my_turn().await;
    apply_leader_election_role(server).await;
    let admin = server.client(Who::Admin).await;
    // The same setup as `Run`, with two controllers on the Lease instead of one.
    let ns = server.namespace("leader").await;
    let linstor = LinstorSim::start(SimConfig::realistic())
        .await
        .expect("LINSTOR simulator");
    let backend = format!("lb-{ns}");
    let lb: LinstorBackend = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "LinstorBackend", "metadata": {"name": backend},
        "spec": {"urls": [linstor.url()], "budget": {"requestsPerSecond": 1000, "burst": 100, "maxInFlight": 16}}
    }))
    .unwrap();
    Api::<LinstorBackend>::all(admin.clone())
        .create(&PostParams::default(), &lb)
        .await
        .expect("backend");
    let start = |id: &'static str| {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let client = apiserver::shared().client(Who::Controller).await;
            let mut lease = LeaseConfig::new(RELEASE_NS, "edgebind-controller", id);
            lease.lease_duration = Duration::from_secs(2);
            lease.renew_deadline = Duration::from_millis(1500);
            lease.retry_period = Duration::from_millis(250);
            controller::run_with_leader_election(
                client,
                config(),
                Readiness::default(),
                lease,
                async move {
                    let _ = rx.await;
                },
            )
            .await
        });
        (tx, task)
    };
    let leases: Api<Lease> = Api::namespaced(admin.clone(), RELEASE_NS);
    let holder = || async {
        leases
            .get_opt("edgebind-controller")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    };
    let (a_stop, a) = start("a");
    let (b_stop, b) = start("b");
    let first = poll(15, &holder).await.expect("a Lease holder");
    let volumes: Api<EdgeVolume> = Api::namespaced(admin.clone(), &ns);
    let create = |name: &str| {
        serde_json::from_value::<EdgeVolume>(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume", "metadata": {"name": name},
            "spec": {"backendRef": backend, "size": "64Mi", "deletionPolicy": "Delete",
                     "placement": {"placeCount": 2}}
        }))
        .unwrap()
    };
    volumes
        .create(&PostParams::default(), &create("one"))
        .await
        .expect("create");
    let ready_named = |name: &'static str| {
        let volumes = volumes.clone();
        async move {
            poll(30, || async {
                let v = volumes.get_opt(name).await.ok().flatten()?;
                ready(v.status.as_ref().map(|s| &s.conditions[..]))
            })
            .await
        }
    };
    ready_named("one").await.expect("the leader reconciles");

    // The leader dies without releasing: the standby takes the Lease once it expires.
    let (mut leader, mut standby, standby_stop, second) = if first == "a" {
        drop(a_stop);
        (a, b, b_stop, "b")
    } else {
        drop(b_stop);
        (b, a, a_stop, "a")
    };
    leader.abort();
    let _ = (&mut leader).await;
    poll(20, || async { holder().await.filter(|h| h == second) })
        .await
        .expect("the standby takes the Lease");
    volumes
        .create(&PostParams::default(), &create("two"))
        .await
        .expect("create");
    ready_named("two").await.expect("the new leader reconciles");

    // A graceful stop releases the Lease at once.
    let _ = standby_stop.send(());
    let res = tokio::time::timeout(Duration::from_secs(20), &mut standby)
        .await
        .expect("stops")
        .expect("joins");
    assert!(res.is_ok(), "{res:?}");
    assert_eq!(holder().await, None, "the Lease is released");
    let _ = Api::<LinstorBackend>::all(admin.clone())
        .delete(&backend, &DeleteParams::default())
        .await;
    linstor.stop().await;
}

/// The kinds the examples use: API resource, and whether it is namespaced.
fn example_kind(kind: &str) -> (kube::discovery::ApiResource, bool) {
    use edgebind::crd::{CloudflareAccount, EdgeBinding, IdentityIssuer, VolumeAccessPolicy};
    use kube::discovery::ApiResource;
    match kind {
        "LinstorBackend" => (ApiResource::erase::<LinstorBackend>(&()), false),
        "CloudflareAccount" => (ApiResource::erase::<CloudflareAccount>(&()), false),
        "IdentityIssuer" => (ApiResource::erase::<IdentityIssuer>(&()), false),
        "EdgeVolume" => (ApiResource::erase::<EdgeVolume>(&()), true),
        "EdgeSnapshot" => (ApiResource::erase::<EdgeSnapshot>(&()), true),
        "VolumeAccessPolicy" => (ApiResource::erase::<VolumeAccessPolicy>(&()), true),
        "EdgeBinding" => (ApiResource::erase::<EdgeBinding>(&()), true),
        "PersistentVolumeClaim" => (ApiResource::erase::<PersistentVolumeClaim>(&()), true),
        "StorageClass" => (
            ApiResource::erase::<k8s_openapi::api::storage::v1::StorageClass>(&()),
            false,
        ),
        other => panic!("examples/ holds a kind this test does not know: {other}"),
    }
}

/// Every document of `examples/*.yaml`, in file order.
fn example_docs() -> Vec<Value> {
    let dir = format!("{}/../../examples", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("example");
            serde_yaml::Deserializer::from_str(&text)
                .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
                .filter(|v: &Value| !v.is_null())
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// Every Secret the examples reference, as (namespace, name, key or None for a TLS Secret).
fn example_secret_refs(docs: &[Value]) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    for d in docs {
        for field in ["tls", "bearerToken", "apiToken"] {
            let r = &d["spec"][field];
            if let (Some(ns), Some(name)) = (r["namespace"].as_str(), r["name"].as_str()) {
                let key = (field != "tls").then(|| r["key"].as_str().unwrap_or("token").into());
                out.push((ns.to_string(), name.to_string(), key));
            }
        }
    }
    out
}

/// `Ready` of an object of the examples, with the condition's reason and message. A claim is
/// "ready" once the PV it names exists (the binder, which would bind it, does not run here);
/// a StorageClass once it exists.
async fn example_ready(api: &Api<kube::api::DynamicObject>, name: &str) -> Result<(), String> {
    let o = api
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("gone")?;
    match o.types.as_ref().map(|t| t.kind.as_str()) {
        Some("StorageClass") => return Ok(()),
        Some("PersistentVolumeClaim") => {
            let pv = o.data["spec"]["volumeName"].as_str().unwrap_or_default();
            return match Api::<PersistentVolume>::all(api.clone().into_client())
                .get_opt(pv)
                .await
            {
                Ok(Some(_)) => Ok(()),
                _ => Err(format!("no PersistentVolume {pv} for the claim")),
            };
        }
        _ => {}
    }
    let conds = o.data["status"]["conditions"].as_array().cloned();
    let ready = conds
        .unwrap_or_default()
        .into_iter()
        .find(|c| c["type"] == "Ready")
        .ok_or("no Ready condition")?;
    if ready["status"] == "True" {
        Ok(())
    } else {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Err(format!(
            "{}: {}",
            text(&ready["reason"]),
            text(&ready["message"])
        ))
    }
}

/// Issue 13: the examples, applied as a user would after the documented install, reconcile
/// under exactly the RBAC the chart renders with default values. The controller runs as its
/// ServiceAccount; the Secrets the examples name are created where they name them (the
/// LinstorBackend's mTLS Secret is used: the LINSTOR simulator is behind a TLS front that
/// requires that client certificate); only the addresses of the outside world change (LINSTOR,
/// the Cloudflare API and the IdP's JWK Set point at the simulators), and team-a is a fresh
/// namespace. Every object must become Ready. The example account has a tunnel: cloudflared
/// is played with the token the controller stored, and the edge request goes to the binding's
/// tunnel hostname, which the Cloudflare simulator resolves (CNAME, tunnel ingress) to the
/// gateway Service the chart names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_reconcile_under_the_charts_rbac() {
    use edgebind_sim::cloudflare::{CfSimConfig, CloudflareSim, REALISTIC_TOKEN};
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::DynamicObject;

    let (_turn, server) = my_turn().await;
    let admin = server.client(Who::Admin).await;
    let tenant = server.namespace("team-a").await;
    let linstor = LinstorSim::start(SimConfig::with_example_groups())
        .await
        .expect("LINSTOR simulator");
    let pki = crate::support::tls::Pki::new();
    let (linstor_url, front) = crate::support::tls::mtls_front(&pki, linstor.addr).await;
    let cf = CloudflareSim::start(CfSimConfig::realistic())
        .await
        .expect("Cloudflare simulator");

    let mut docs = example_docs();
    // The Secrets, where the examples say they are.
    let pp = PostParams::default();
    let (cert, key, _) = pki.leaf("edgebind", &["edgebind"]);
    for (ns, name, field) in example_secret_refs(&docs) {
        let data = match field {
            None => json!({"tls.crt": cert, "tls.key": key, "ca.crt": pki.ca_pem}),
            Some(k) => json!({ k: REALISTIC_TOKEN }),
        };
        let s: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns}, "stringData": data
        }))
        .unwrap();
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        let _ = Api::<Namespace>::all(admin.clone())
            .create(&pp, &namespace)
            .await;
        let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
        let _ = secrets.delete(&name, &DeleteParams::default()).await;
        secrets.create(&pp, &s).await.expect("Secret");
    }
    // Only the outside world's addresses change.
    for d in &mut docs {
        match d["kind"].as_str() {
            Some("LinstorBackend") => d["spec"]["urls"] = json!([linstor_url]),
            Some("CloudflareAccount") => d["spec"]["apiUrl"] = json!(cf.url()),
            // The test IdP stands in for Okta: its URL, JWK Set, audience and algorithm.
            Some("IdentityIssuer") => {
                d["spec"]["issuer"] = json!(crate::support::idp::ISSUER_URL);
                d["spec"]["jwksUri"] = json!(crate::support::idp::jwks_url());
                d["spec"]["audiences"] = json!([crate::support::idp::AUDIENCE]);
                d["spec"]["algorithms"] = json!(["EdDSA"]);
            }
            _ => {}
        }
        if d["metadata"]["namespace"] == "team-a" {
            d["metadata"]["namespace"] = json!(tenant);
        }
        if let Some(pv) = d["spec"]["volumeName"].as_str() {
            d["spec"]["volumeName"] = json!(pv.replace(".team-a.", &format!(".{tenant}.")));
        }
    }
    let api_of = |d: &Value| {
        let (ar, namespaced) = example_kind(d["kind"].as_str().unwrap_or_default());
        match d["metadata"]["namespace"].as_str().filter(|_| namespaced) {
            Some(ns) => Api::<DynamicObject>::namespaced_with(admin.clone(), ns, &ar),
            None => Api::<DynamicObject>::all_with(admin.clone(), &ar),
        }
    };
    let name_of = |d: &Value| {
        d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for d in &docs {
        let obj: DynamicObject = serde_json::from_value(d.clone()).expect("object");
        api_of(d)
            .create(&pp, &obj)
            .await
            .unwrap_or_else(|e| panic!("{} {} is accepted: {e}", d["kind"], name_of(d)));
    }

    // The controller as the chart configures it: its tunnel ingress points at the chart's
    // gateway Service.
    let service = chart_gateway_service();
    let mut cfg = config();
    cfg.cloudflare.gateway_service = Some(service.clone());
    let client = server.client(Who::Controller).await;
    let ctrl = tokio::spawn(async move {
        if let Err(e) = controller::run(
            client,
            cfg,
            Readiness::default(),
            futures::future::pending(),
        )
        .await
        {
            tracing::warn!("controller stopped: {e:#}");
        }
    });
    // cloudflared, as the chart runs it for the example account: it starts once the tunnel
    // token Secret exists, with that token.
    let connector = std::sync::Mutex::new(None::<String>);
    let all_ready = poll(60, || async {
        if connector.lock().unwrap().is_none()
            && let Some(token) = tunnel_token(&admin, "acme").await
        {
            *connector.lock().unwrap() = Some(cf.sim.connect_tunnel(&token).ok()?);
        }
        for d in &docs {
            example_ready(&api_of(d), &name_of(d)).await.ok()?;
        }
        Some(())
    })
    .await;
    let mut not_ready = Vec::new();
    for d in &docs {
        if let Err(e) = example_ready(&api_of(d), &name_of(d)).await {
            let kind = d["kind"].as_str().unwrap_or_default();
            not_ready.push(format!("{kind} {}: {e}", name_of(d)));
        }
    }
    // Then the edge: a request signed with the example binding's own key, as its Worker signs
    // it, for a member of the group the example policy allows. The volume lands on the binding's
    // volume defaults (not the gateway's fallback) and the controller makes it Ready.
    let edge = if not_ready.is_empty() {
        example_edge_create(server, &admin, &tenant, &cf, &service).await
    } else {
        Err("not tried: the examples are not Ready".into())
    };

    // Clean up with the controller still running (finalizers), tenant objects first; cloudflared
    // stops (as uninstalling it would), so the account's tunnel can be deleted with it.
    if let Some(c) = connector.lock().unwrap().take() {
        cf.sim.disconnect_tunnel(&c);
    }
    let _ = Api::<EdgeVolume>::namespaced(admin.clone(), &tenant)
        .delete("app-db", &DeleteParams::default())
        .await;
    for d in docs.iter().rev() {
        if d["kind"] == "PersistentVolumeClaim" {
            // Its pvc-protection finalizer waits for a controller this server does not run.
            let _ = api_of(d)
                .patch(
                    &name_of(d),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
        let _ = api_of(d)
            .delete(&name_of(d), &DeleteParams::default())
            .await;
    }
    let cleaned = poll(30, || async {
        for d in &docs {
            if api_of(d).get_opt(&name_of(d)).await.ok()?.is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
    ctrl.abort();
    let _ = ctrl.await;
    front.abort();
    linstor.stop().await;
    cf.shutdown().await;
    assert!(
        all_ready.is_some() && not_ready.is_empty(),
        "every example becomes Ready under the chart's RBAC; not Ready:\n{}",
        not_ready.join("\n")
    );
    edge.expect("a request through the example binding creates a Ready volume on its backend");
    assert!(cleaned.is_some(), "every example is deleted again");
}

/// The gateway Service URL the chart (default values) gives the controller for tunnel ingress.
fn chart_gateway_service() -> String {
    base_docs("controller-deployment.yaml")
        .iter()
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
        .find(|e| e["name"] == "EDGEBIND_GATEWAY_SERVICE")
        .and_then(|e| e["value"].as_str().map(str::to_string))
        .expect("the chart sets EDGEBIND_GATEWAY_SERVICE")
}

/// The tunnel token the controller stored for account `account`, as cloudflared reads it.
async fn tunnel_token(admin: &kube::Client, account: &str) -> Option<String> {
    use k8s_openapi::api::core::v1::Secret;
    let name = edgebind::crd::account::tunnel_secret_name(account);
    let s = Api::<Secret>::namespaced(admin.clone(), RELEASE_NS)
        .get_opt(&name)
        .await
        .ok()??;
    let token = s.data?.remove(edgebind::crd::account::TUNNEL_TOKEN_KEY)?;
    String::from_utf8(token.0).ok()
}

/// A create through the example EdgeBinding (`storage-api` in `ns`), signed with its current
/// key read from the controller's private-key Secret, sent to the binding's tunnel hostname:
/// the Cloudflare simulator resolves it (CNAME to the tunnel, the tunnel's ingress) to the
/// chart's gateway Service, which stands here for a gateway running as `edgebind-gateway`
/// with `fallback` as `--backend-ref`.
async fn example_edge_create(
    server: &RealApiServer,
    admin: &kube::Client,
    ns: &str,
    cf: &edgebind_sim::cloudflare::RunningCfSim,
    service: &str,
) -> Result<(), String> {
    use crate::support::edge::{Caller, KeyRef, gateway_args, sign_with};
    use base64::Engine;
    use edgebind::crd::EdgeBinding;
    use k8s_openapi::api::core::v1::Secret;

    let binding = Api::<EdgeBinding>::namespaced(admin.clone(), ns)
        .get("storage-api")
        .await
        .map_err(|e| e.to_string())?;
    let uid = binding.metadata.uid.clone().unwrap_or_default();
    let private = Api::<Secret>::namespaced(admin.clone(), RELEASE_NS)
        .get(&format!("edgebind-signing-{uid}"))
        .await
        .map_err(|e| e.to_string())?;
    let current = private
        .data
        .and_then(|d| d.get("current").map(|v| v.0.clone()))
        .ok_or("no current signing key")?;
    let json: Value = serde_json::from_slice(&current).map_err(|e| e.to_string())?;
    let key_id = json["keyId"].as_str().ok_or("no keyId")?.to_string();
    let seed: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(json["jwk"]["d"].as_str().ok_or("no d")?)
        .ok()
        .and_then(|d| d.try_into().ok())
        .ok_or("not an Ed25519 seed")?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);

    let (listen, admin_addr) = (free_port(), free_port());
    let args = gateway_args(listen, admin_addr, RELEASE_NS, "fallback");
    let client = server.client(Who::Gateway).await;
    let task = tokio::spawn(async move {
        if let Err(e) =
            edgebind::gateway::server::serve(client, args, futures::future::pending()).await
        {
            tracing::warn!("gateway stopped: {e:#}");
        }
    });
    let base = format!("http://{listen}");
    let host = binding.spec.tunnel_hostname.clone();
    if host.is_empty() {
        return Err("the example binding has no tunnelHostname".into());
    }
    let outcome = async {
        let path = format!("/api/v1/namespaces/{ns}/volumes");
        // The edge's view: the hostname reaches the gateway Service through the tunnel.
        let origin = cf.sim.resolve_tunnel_origin(&host, &path)?;
        if origin != service {
            return Err(format!(
                "{host} reaches {origin}, not the gateway Service {service}"
            ));
        }
        let mut n = 0;
        // Until the gateway is ready and its bundle holds the example policies.
        let status = poll(30, || {
            n += 1;
            let caller = Caller {
                issuer: "okta",
                groups: &["storage-automation"],
            };
            let body = json!({"name": "app-db", "sizeBytes": 20u64 << 30});
            let id = format!("req-example-{n}");
            let r = sign_with(
                &host,
                KeyRef {
                    id: &key_id,
                    key: &key,
                },
                caller,
                "POST",
                &path,
                body,
                &id,
            );
            let base = base.clone();
            async move {
                let s = r.deliver(&base).await;
                (s != 403 && s != 503 && s != 401).then_some(s)
            }
        })
        .await
        .ok_or("the gateway never accepted the request")?;
        if status != 201 {
            return Err(format!("the create answered {status}"));
        }
        let vols: Api<EdgeVolume> = Api::namespaced(admin.clone(), ns);
        let v = vols.get("app-db").await.map_err(|e| e.to_string())?;
        let placed = (
            v.spec.backend_ref.as_str(),
            v.spec.placement.resource_group.as_deref(),
        );
        if placed != ("main", Some("replicated")) {
            return Err(format!(
                "the volume is not on the binding's defaults: {:?}",
                v.spec
            ));
        }
        poll(30, || async {
            let v = vols.get_opt("app-db").await.ok().flatten()?;
            ready(v.status.as_ref().map(|s| &s.conditions[..]))
        })
        .await
        .ok_or("the edge-created volume never became Ready")?;
        Ok(())
    }
    .await;
    task.abort();
    let _ = task.await;
    outcome
}
