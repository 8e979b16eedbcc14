//! `VolumeBackend` over the Kubernetes API: `EdgeVolume` and `EdgeSnapshot` custom resources.

use std::future::Future;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};

use super::{
    BackendError, BackendResult, FIELD_MANAGER, KUBE_TIMEOUT, NewVolume, SnapshotView,
    VolumeBackend, VolumeView,
};
use crate::crd::binding::EdgeVolumeDefaults;
use crate::crd::phase::Phase;
use crate::crd::quantity::parse_bytes;
use crate::crd::reasons::{SnapshotReason, VolumeReason};
use crate::crd::volume::VolumeSource;
use crate::crd::{
    DeletionPolicy, EdgeBinding, EdgeSnapshot, EdgeSnapshotSpec, EdgeVolume, EdgeVolumeSpec,
};

/// Writes intent as custom resources; reads them back for answers.
#[derive(Clone)]
pub struct KubeVolumeBackend {
    client: kube::Client,
    /// `spec.backendRef` of volumes created through a binding without volume defaults (or a key
    /// published before keys named their binding): the `--backend-ref` fallback.
    backend_ref: String,
    /// Watch caches serving reads (list and get), so read traffic from the edge does not become
    /// API server traffic. Writes always go to the API server.
    cache: Option<WatchCache>,
}

/// Reflector stores of the objects the gateway answers about.
#[derive(Clone)]
pub struct WatchCache {
    pub volumes: Store<EdgeVolume>,
    pub snapshots: Store<EdgeSnapshot>,
    /// For the volume defaults of the binding a create came through.
    pub bindings: Store<EdgeBinding>,
}

impl WatchCache {
    /// The stores, and the future that keeps them current (spawn it; it runs until dropped).
    pub fn start(client: &kube::Client) -> (WatchCache, impl Future<Output = ()> + Send + 'static) {
        let (volumes, vw) = reflector::store::<EdgeVolume>();
        let (snapshots, sw) = reflector::store::<EdgeSnapshot>();
        let (bindings, bw) = reflector::store::<EdgeBinding>();
        // Watches time out below common load-balancer idle limits; errors back off and relist.
        let wc = || watcher::Config::default().timeout(240);
        let v = reflector(vw, watcher(Api::<EdgeVolume>::all(client.clone()), wc()))
            .default_backoff()
            .for_each(|_| async {});
        let s = reflector(sw, watcher(Api::<EdgeSnapshot>::all(client.clone()), wc()))
            .default_backoff()
            .for_each(|_| async {});
        let b = reflector(bw, watcher(Api::<EdgeBinding>::all(client.clone()), wc()))
            .default_backoff()
            .for_each(|_| async {});
        let driver = async move {
            futures::join!(v, s, b);
        };
        let cache = WatchCache {
            volumes,
            snapshots,
            bindings,
        };
        (cache, driver)
    }

    /// Resolves once every cache holds a complete initial list.
    pub async fn synced(&self) {
        let _ = self.volumes.wait_until_ready().await;
        let _ = self.snapshots.wait_until_ready().await;
        let _ = self.bindings.wait_until_ready().await;
    }
}

impl KubeVolumeBackend {
    pub fn new(client: kube::Client, backend_ref: impl Into<String>) -> Self {
        KubeVolumeBackend {
            client,
            backend_ref: backend_ref.into(),
            cache: None,
        }
    }

    /// Reads from `cache` instead of the API server.
    pub fn with_cache(mut self, cache: WatchCache) -> Self {
        self.cache = Some(cache);
        self
    }

    fn volumes(&self, ns: &str) -> Api<EdgeVolume> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn snapshots(&self, ns: &str) -> Api<EdgeSnapshot> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The volume defaults of binding `ns/name`. A binding the key names but that is gone is
    /// an error, not the fallback: a volume is never put on a backend nobody chose for it.
    async fn defaults_of(&self, ns: &str, name: &str) -> BackendResult<Option<EdgeVolumeDefaults>> {
        let b = match &self.cache {
            Some(c) => c
                .bindings
                .get(&ObjectRef::<EdgeBinding>::new(name).within(ns))
                .map(|b| b.as_ref().clone()),
            None => {
                call(Api::<EdgeBinding>::namespaced(self.client.clone(), ns).get_opt(name)).await?
            }
        };
        match b {
            Some(b) => Ok(b.spec.volume_defaults),
            None => Err(BackendError::Unavailable(format!(
                "EdgeBinding {ns}/{name} of the signing key is not known"
            ))),
        }
    }

    /// The backend of the volume a snapshot was taken of: a restore must stay on it.
    async fn source_backend(&self, ns: &str, snapshot: &str) -> BackendResult<Option<String>> {
        let snap = match &self.cache {
            Some(c) => c
                .snapshots
                .get(&ObjectRef::<EdgeSnapshot>::new(snapshot).within(ns))
                .map(|s| s.spec.volume_ref.clone()),
            None => call(self.snapshots(ns).get_opt(snapshot))
                .await?
                .map(|s| s.spec.volume_ref),
        };
        let Some(volume) = snap else {
            return Ok(None);
        };
        Ok(match &self.cache {
            Some(c) => c
                .volumes
                .get(&ObjectRef::<EdgeVolume>::new(&volume).within(ns))
                .map(|v| v.spec.backend_ref.clone()),
            None => call(self.volumes(ns).get_opt(&volume))
                .await?
                .map(|v| v.spec.backend_ref),
        })
    }
}

/// The spec of a volume created at the edge: size and source from the request; backend,
/// placement and deletion policy from the binding's defaults, else `fallback_backend` and the
/// volume defaults; a restore on its source volume's backend, whatever the defaults say.
pub(crate) fn new_volume_spec(
    v: &NewVolume,
    defaults: Option<&EdgeVolumeDefaults>,
    source_backend: Option<String>,
    fallback_backend: &str,
) -> EdgeVolumeSpec {
    let backend_ref = source_backend
        .or_else(|| defaults.map(|d| d.backend_ref.clone()))
        .unwrap_or_else(|| fallback_backend.to_string());
    EdgeVolumeSpec {
        backend_ref,
        // Plain bytes: an exact quantity, no rounding.
        size: v.size_bytes.to_string(),
        placement: defaults
            .map(EdgeVolumeDefaults::placement)
            .unwrap_or_default(),
        source: v
            .source_snapshot
            .clone()
            .map(|snapshot| VolumeSource { snapshot }),
        deletion_policy: defaults.map_or(DeletionPolicy::Retain, |d| d.deletion_policy),
        properties: Default::default(),
        persistent_volume: defaults.and_then(|d| d.persistent_volume.clone()),
    }
}

/// Runs a Kubernetes call with the gateway's timeout, mapping errors to backend errors.
async fn call<T>(f: impl Future<Output = Result<T, kube::Error>>) -> BackendResult<T> {
    match tokio::time::timeout(KUBE_TIMEOUT, f).await {
        Err(_) => Err(BackendError::Unavailable("timeout".into())),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => Err(BackendError::NotFound),
        Ok(Err(kube::Error::Api(s))) if s.code == 409 => Err(BackendError::AlreadyExists),
        Ok(Err(e)) => Err(BackendError::Unavailable(e.to_string())),
    }
}

fn created_at(meta: &ObjectMeta) -> Option<String> {
    meta.creation_timestamp
        .as_ref()
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

pub(crate) fn volume_view(v: &EdgeVolume) -> VolumeView {
    let conds = v
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    VolumeView {
        namespace: v.metadata.namespace.clone().unwrap_or_default(),
        name: v.metadata.name.clone().unwrap_or_default(),
        labels: v.metadata.labels.clone().unwrap_or_default(),
        // A size the gateway cannot read shows as 0 rather than failing the whole answer.
        size_bytes: parse_bytes(&v.spec.size).unwrap_or(0),
        phase: Phase::of::<VolumeReason>(v.metadata.deletion_timestamp.is_some(), conds),
        created_at: created_at(&v.metadata),
    }
}

fn snapshot_view(s: &EdgeSnapshot) -> SnapshotView {
    let conds = s
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    SnapshotView {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        volume: s.spec.volume_ref.clone(),
        name: s.metadata.name.clone().unwrap_or_default(),
        phase: Phase::of::<SnapshotReason>(s.metadata.deletion_timestamp.is_some(), conds),
        created_at: created_at(&s.metadata),
    }
}

fn post() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

impl VolumeBackend for KubeVolumeBackend {
    fn list_volumes<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, BackendResult<Vec<VolumeView>>> {
        Box::pin(async move {
            if let Some(c) = &self.cache {
                let mut out: Vec<VolumeView> = c
                    .volumes
                    .state()
                    .iter()
                    .filter(|v| v.metadata.namespace.as_deref() == Some(ns))
                    .map(|v| volume_view(v))
                    .collect();
                out.sort_by(|a, b| a.name.cmp(&b.name));
                return Ok(out);
            }
            let list = call(self.volumes(ns).list(&ListParams::default())).await?;
            Ok(list.items.iter().map(volume_view).collect())
        })
    }

    fn get_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<VolumeView>>> {
        Box::pin(async move {
            if let Some(c) = &self.cache {
                let key = ObjectRef::<EdgeVolume>::new(name).within(ns);
                return Ok(c.volumes.get(&key).map(|v| volume_view(&v)));
            }
            let v = call(self.volumes(ns).get_opt(name)).await?;
            Ok(v.as_ref().map(volume_view))
        })
    }

    fn create_volume<'a>(&'a self, v: NewVolume) -> BoxFuture<'a, BackendResult<VolumeView>> {
        Box::pin(async move {
            let defaults = match &v.binding {
                Some(b) => self.defaults_of(&v.namespace, b).await?,
                None => None,
            };
            let source_backend = match &v.source_snapshot {
                Some(s) => self.source_backend(&v.namespace, s).await?,
                None => None,
            };
            let spec = new_volume_spec(&v, defaults.as_ref(), source_backend, &self.backend_ref);
            let obj = EdgeVolume {
                metadata: ObjectMeta {
                    name: Some(v.name.clone()),
                    namespace: Some(v.namespace.clone()),
                    labels: (!v.labels.is_empty()).then(|| v.labels.clone()),
                    annotations: v.request.as_ref().map(|r| r.annotations()),
                    ..Default::default()
                },
                spec,
                status: None,
            };
            let created = call(self.volumes(&v.namespace).create(&post(), &obj)).await?;
            Ok(volume_view(&created))
        })
    }

    fn resize_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        size_bytes: u64,
        request: Option<&'a crate::request_trace::Stamp>,
    ) -> BoxFuture<'a, BackendResult<VolumeView>> {
        Box::pin(async move {
            let api = self.volumes(ns);
            let cur = call(api.get(name)).await?;
            if parse_bytes(&cur.spec.size).is_ok_and(|b| size_bytes < b) {
                return Err(BackendError::SizeShrink);
            }
            let mut patch = serde_json::json!({"spec": {"size": size_bytes.to_string()}});
            if let Some(r) = request {
                // The request that changed it now names the volume (`request_trace`).
                patch["metadata"] = serde_json::json!({"annotations": r.annotations()});
            }
            let pp = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            let v = call(api.patch(name, &pp, &Patch::Merge(&patch))).await?;
            Ok(volume_view(&v))
        })
    }

    fn delete_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<VolumeView>> {
        Box::pin(async move {
            let api = self.volumes(ns);
            let cur = call(api.get(name)).await?;
            call(api.delete(name, &DeleteParams::default())).await?;
            let mut view = volume_view(&cur);
            view.phase = Phase::Deleting;
            Ok(view)
        })
    }

    fn list_snapshots<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
    ) -> BoxFuture<'a, BackendResult<Vec<SnapshotView>>> {
        Box::pin(async move {
            if let Some(c) = &self.cache {
                let mut out: Vec<SnapshotView> = c
                    .snapshots
                    .state()
                    .iter()
                    .filter(|s| {
                        s.metadata.namespace.as_deref() == Some(ns) && s.spec.volume_ref == volume
                    })
                    .map(|s| snapshot_view(s))
                    .collect();
                out.sort_by(|a, b| a.name.cmp(&b.name));
                return Ok(out);
            }
            let list = call(self.snapshots(ns).list(&ListParams::default())).await?;
            Ok(list
                .items
                .iter()
                .filter(|s| s.spec.volume_ref == volume)
                .map(snapshot_view)
                .collect())
        })
    }

    fn get_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<SnapshotView>>> {
        Box::pin(async move {
            if let Some(c) = &self.cache {
                let key = ObjectRef::<EdgeSnapshot>::new(name).within(ns);
                return Ok(c
                    .snapshots
                    .get(&key)
                    .filter(|s| s.spec.volume_ref == volume)
                    .map(|s| snapshot_view(&s)));
            }
            let s = call(self.snapshots(ns).get_opt(name)).await?;
            Ok(s.filter(|s| s.spec.volume_ref == volume)
                .as_ref()
                .map(snapshot_view))
        })
    }

    fn create_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
        request: Option<&'a crate::request_trace::Stamp>,
    ) -> BoxFuture<'a, BackendResult<SnapshotView>> {
        Box::pin(async move {
            if call(self.volumes(ns).get_opt(volume)).await?.is_none() {
                return Err(BackendError::NotFound);
            }
            let obj = EdgeSnapshot {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(ns.into()),
                    annotations: request.map(|r| r.annotations()),
                    ..Default::default()
                },
                spec: EdgeSnapshotSpec {
                    volume_ref: volume.into(),
                    deletion_policy: DeletionPolicy::Retain,
                },
                status: None,
            };
            let s = call(self.snapshots(ns).create(&post(), &obj)).await?;
            Ok(snapshot_view(&s))
        })
    }

    fn delete_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<SnapshotView>> {
        Box::pin(async move {
            let api = self.snapshots(ns);
            let cur = call(api.get(name)).await?;
            if cur.spec.volume_ref != volume {
                return Err(BackendError::NotFound);
            }
            call(api.delete(name, &DeleteParams::default())).await?;
            let mut view = snapshot_view(&cur);
            view.phase = Phase::Deleting;
            Ok(view)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::volume::Placement;

    fn request(source: Option<&str>) -> NewVolume {
        NewVolume {
            namespace: "team-a".into(),
            name: "app-db".into(),
            size_bytes: 1 << 30,
            labels: Default::default(),
            source_snapshot: source.map(str::to_string),
            binding: Some("storage-api".into()),
            request: None,
        }
    }

    fn defaults(v: serde_json::Value) -> EdgeVolumeDefaults {
        serde_json::from_value(v).expect("defaults")
    }

    #[test]
    fn the_bindings_defaults_shape_the_volume() {
        let d = defaults(
            serde_json::json!({"backendRef": "fast", "resourceGroup": "replicated",
                                            "deletionPolicy": "Delete"}),
        );
        let spec = new_volume_spec(&request(None), Some(&d), None, "default");
        assert_eq!(spec.backend_ref, "fast");
        assert_eq!(spec.placement.resource_group.as_deref(), Some("replicated"));
        assert_eq!(spec.deletion_policy, DeletionPolicy::Delete);
        assert_eq!(spec.size, (1u64 << 30).to_string());

        let d = defaults(serde_json::json!({"backendRef": "slow", "placeCount": 3,
                                            "storagePools": ["thin"]}));
        let spec = new_volume_spec(&request(None), Some(&d), None, "default");
        assert_eq!(
            (spec.backend_ref.as_str(), spec.placement.place_count),
            ("slow", Some(3))
        );
        assert_eq!(spec.placement.storage_pools, Some(vec!["thin".to_string()]));
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain, "the default");
        assert_eq!(
            spec.persistent_volume, None,
            "no PV unless the binding asks"
        );

        let d = defaults(serde_json::json!({"backendRef": "fast",
                                            "persistentVolume": {"storageClassName": "linstor-static"}}));
        let spec = new_volume_spec(&request(None), Some(&d), None, "default");
        assert_eq!(
            spec.persistent_volume
                .and_then(|p| p.storage_class_name)
                .as_deref(),
            Some("linstor-static"),
            "volumes created at the edge get the binding's PV default"
        );
    }

    #[test]
    fn without_defaults_the_fallback_and_a_restore_stays_on_its_source_backend() {
        let spec = new_volume_spec(&request(None), None, None, "default");
        assert_eq!(spec.backend_ref, "default");
        assert_eq!(spec.placement, Placement::default());
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);

        let d = defaults(serde_json::json!({"backendRef": "fast"}));
        let spec = new_volume_spec(&request(Some("nightly")), Some(&d), Some("old".into()), "x");
        assert_eq!(
            spec.backend_ref, "old",
            "LINSTOR restores within one cluster"
        );
        assert_eq!(spec.source.map(|s| s.snapshot).as_deref(), Some("nightly"));
    }
}
