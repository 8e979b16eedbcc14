//! What the gateway acts on: volumes and snapshots as custom resources. The router talks to a
//! `VolumeBackend` so it can be tested in memory; `KubeVolumeBackend` writes `EdgeVolume` and
//! `EdgeSnapshot` objects with the field manager `edgebind-gateway`. Nothing here calls LINSTOR.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::crd::phase::Phase;

/// The field manager of every gateway write.
pub const FIELD_MANAGER: &str = "edgebind-gateway";

/// A volume as the REST surface shows it (§4).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeView {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub size_bytes: u64,
    pub phase: Phase,
    pub created_at: Option<String>,
}

/// A snapshot as the REST surface shows it.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotView {
    pub namespace: String,
    pub volume: String,
    pub name: String,
    pub phase: Phase,
    pub created_at: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackendError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("size can only grow")]
    SizeShrink,
    #[error("cluster API unavailable: {0}")]
    Unavailable(String),
}

pub type BackendResult<T> = Result<T, BackendError>;

/// A new volume: empty, or restored from a snapshot of the same namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct NewVolume {
    pub namespace: String,
    pub name: String,
    pub size_bytes: u64,
    pub labels: BTreeMap<String, String>,
    pub source_snapshot: Option<String>,
    /// The EdgeBinding (in `namespace`) the request came through, from the signing key: its
    /// `volumeDefaults` give the backend, placement and deletion policy.
    pub binding: Option<String>,
    /// The signed request id and the stages so far, written on the volume (`request_trace`).
    pub request: Option<crate::request_trace::Stamp>,
}

/// The operations of §4.
pub trait VolumeBackend: Send + Sync + 'static {
    fn list_volumes<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, BackendResult<Vec<VolumeView>>>;
    fn get_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<VolumeView>>>;
    fn create_volume<'a>(&'a self, v: NewVolume) -> BoxFuture<'a, BackendResult<VolumeView>>;
    /// `request`: the signed request id and stages, written on the volume (`request_trace`).
    fn resize_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        size_bytes: u64,
        request: Option<&'a crate::request_trace::Stamp>,
    ) -> BoxFuture<'a, BackendResult<VolumeView>>;
    fn delete_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<VolumeView>>;
    fn list_snapshots<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
    ) -> BoxFuture<'a, BackendResult<Vec<SnapshotView>>>;
    fn get_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<SnapshotView>>>;
    /// `request`: the signed request id and stages, written on the snapshot (`request_trace`).
    fn create_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
        request: Option<&'a crate::request_trace::Stamp>,
    ) -> BoxFuture<'a, BackendResult<SnapshotView>>;
    fn delete_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<SnapshotView>>;
}

/// In-memory backend: the semantics of §4 without a cluster (tests, `plan`-style dry runs).
#[derive(Default)]
pub struct MemoryBackend {
    volumes: Mutex<BTreeMap<(String, String), VolumeView>>,
    snapshots: Mutex<BTreeMap<(String, String), SnapshotView>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every volume, for tests that assert nothing changed.
    pub fn volumes(&self) -> Vec<VolumeView> {
        lock(&self.volumes).values().cloned().collect()
    }

    pub fn snapshots(&self) -> Vec<SnapshotView> {
        lock(&self.snapshots).values().cloned().collect()
    }

    fn now() -> Option<String> {
        Some(
            jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        )
    }
}

impl VolumeBackend for MemoryBackend {
    fn list_volumes<'a>(&'a self, ns: &'a str) -> BoxFuture<'a, BackendResult<Vec<VolumeView>>> {
        let out = lock(&self.volumes)
            .values()
            .filter(|v| v.namespace == ns)
            .cloned()
            .collect();
        Box::pin(async move { Ok(out) })
    }

    fn get_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<VolumeView>>> {
        let out = lock(&self.volumes)
            .get(&(ns.to_string(), name.to_string()))
            .cloned();
        Box::pin(async move { Ok(out) })
    }

    fn create_volume<'a>(&'a self, v: NewVolume) -> BoxFuture<'a, BackendResult<VolumeView>> {
        let mut vols = lock(&self.volumes);
        let key = (v.namespace.clone(), v.name.clone());
        let out = match vols.entry(key) {
            std::collections::btree_map::Entry::Occupied(_) => Err(BackendError::AlreadyExists),
            std::collections::btree_map::Entry::Vacant(e) => {
                let view = VolumeView {
                    namespace: v.namespace,
                    name: v.name,
                    labels: v.labels,
                    size_bytes: v.size_bytes,
                    phase: Phase::Pending,
                    created_at: Self::now(),
                };
                e.insert(view.clone());
                Ok(view)
            }
        };
        Box::pin(async move { out })
    }

    fn resize_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
        size_bytes: u64,
        _request: Option<&'a crate::request_trace::Stamp>,
    ) -> BoxFuture<'a, BackendResult<VolumeView>> {
        let mut vols = lock(&self.volumes);
        let out = match vols.get_mut(&(ns.to_string(), name.to_string())) {
            None => Err(BackendError::NotFound),
            Some(v) if size_bytes < v.size_bytes => Err(BackendError::SizeShrink),
            Some(v) => {
                v.size_bytes = size_bytes;
                Ok(v.clone())
            }
        };
        Box::pin(async move { out })
    }

    fn delete_volume<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<VolumeView>> {
        let out = lock(&self.volumes)
            .remove(&(ns.to_string(), name.to_string()))
            .map(|mut v| {
                v.phase = Phase::Deleting;
                v
            })
            .ok_or(BackendError::NotFound);
        Box::pin(async move { out })
    }

    fn list_snapshots<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
    ) -> BoxFuture<'a, BackendResult<Vec<SnapshotView>>> {
        let out = lock(&self.snapshots)
            .values()
            .filter(|s| s.namespace == ns && s.volume == volume)
            .cloned()
            .collect();
        Box::pin(async move { Ok(out) })
    }

    fn get_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<Option<SnapshotView>>> {
        let out = lock(&self.snapshots)
            .get(&(ns.to_string(), name.to_string()))
            .filter(|s| s.volume == volume)
            .cloned();
        Box::pin(async move { Ok(out) })
    }

    fn create_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
        _request: Option<&'a crate::request_trace::Stamp>,
    ) -> BoxFuture<'a, BackendResult<SnapshotView>> {
        let exists = lock(&self.volumes).contains_key(&(ns.to_string(), volume.to_string()));
        let mut snaps = lock(&self.snapshots);
        let key = (ns.to_string(), name.to_string());
        let out = match snaps.entry(key) {
            _ if !exists => Err(BackendError::NotFound),
            std::collections::btree_map::Entry::Occupied(_) => Err(BackendError::AlreadyExists),
            std::collections::btree_map::Entry::Vacant(e) => {
                let s = SnapshotView {
                    namespace: ns.into(),
                    volume: volume.into(),
                    name: name.into(),
                    phase: Phase::Pending,
                    created_at: Self::now(),
                };
                e.insert(s.clone());
                Ok(s)
            }
        };
        Box::pin(async move { out })
    }

    fn delete_snapshot<'a>(
        &'a self,
        ns: &'a str,
        volume: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, BackendResult<SnapshotView>> {
        let mut snaps = lock(&self.snapshots);
        let key = (ns.to_string(), name.to_string());
        let out = match snaps.get(&key) {
            Some(s) if s.volume == volume => {
                let mut s = s.clone();
                snaps.remove(&key);
                s.phase = Phase::Deleting;
                Ok(s)
            }
            _ => Err(BackendError::NotFound),
        };
        Box::pin(async move { out })
    }
}

/// Timeout of every Kubernetes API call the gateway makes.
pub const KUBE_TIMEOUT: Duration = Duration::from_secs(10);

#[path = "kube_backend.rs"]
mod kube_backend;
pub use kube_backend::{KubeVolumeBackend, WatchCache};
