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
use crate::crd::phase::Phase;
use crate::crd::quantity::parse_bytes;
use crate::crd::reasons::{SnapshotReason, VolumeReason};
use crate::crd::volume::VolumeSource;
use crate::crd::{DeletionPolicy, EdgeSnapshot, EdgeSnapshotSpec, EdgeVolume, EdgeVolumeSpec};

/// Writes intent as custom resources; reads them back for answers.
#[derive(Clone)]
pub struct KubeVolumeBackend {
    client: kube::Client,
    /// `spec.backendRef` of volumes the gateway creates.
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
}

impl WatchCache {
    /// The stores, and the future that keeps them current (spawn it; it runs until dropped).
    pub fn start(client: &kube::Client) -> (WatchCache, impl Future<Output = ()> + Send + 'static) {
        let (volumes, vw) = reflector::store::<EdgeVolume>();
        let (snapshots, sw) = reflector::store::<EdgeSnapshot>();
        // Watches time out below common load-balancer idle limits; errors back off and relist.
        let wc = || watcher::Config::default().timeout(240);
        let v = reflector(vw, watcher(Api::<EdgeVolume>::all(client.clone()), wc()))
            .default_backoff()
            .for_each(|_| async {});
        let s = reflector(sw, watcher(Api::<EdgeSnapshot>::all(client.clone()), wc()))
            .default_backoff()
            .for_each(|_| async {});
        let driver = async move {
            futures::join!(v, s);
        };
        (WatchCache { volumes, snapshots }, driver)
    }

    /// Resolves once both caches hold a complete initial list.
    pub async fn synced(&self) {
        let _ = self.volumes.wait_until_ready().await;
        let _ = self.snapshots.wait_until_ready().await;
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
            let obj = EdgeVolume {
                metadata: ObjectMeta {
                    name: Some(v.name.clone()),
                    namespace: Some(v.namespace.clone()),
                    labels: (!v.labels.is_empty()).then(|| v.labels.clone()),
                    ..Default::default()
                },
                spec: EdgeVolumeSpec {
                    backend_ref: self.backend_ref.clone(),
                    // Plain bytes: an exact quantity, no rounding.
                    size: v.size_bytes.to_string(),
                    placement: Default::default(),
                    source: v.source_snapshot.map(|snapshot| VolumeSource { snapshot }),
                    deletion_policy: DeletionPolicy::Retain,
                    properties: Default::default(),
                },
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
    ) -> BoxFuture<'a, BackendResult<VolumeView>> {
        Box::pin(async move {
            let api = self.volumes(ns);
            let cur = call(api.get(name)).await?;
            if parse_bytes(&cur.spec.size).is_ok_and(|b| size_bytes < b) {
                return Err(BackendError::SizeShrink);
            }
            let patch = serde_json::json!({"spec": {"size": size_bytes.to_string()}});
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
    ) -> BoxFuture<'a, BackendResult<SnapshotView>> {
        Box::pin(async move {
            if call(self.volumes(ns).get_opt(volume)).await?.is_none() {
                return Err(BackendError::NotFound);
            }
            let obj = EdgeSnapshot {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(ns.into()),
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
