//! The volume controller's cache entry: an EdgeVolume whose status is kept in compact form.
//!
//! At tens of thousands of volumes the watch cache is the controller's largest part, and most
//! of it is status: three conditions of four strings each and a replica list, nearly all the
//! same few words (`Ready`, `True`, `AsExpected`, "all replicas healthy", node names) in every
//! volume. The cache keeps each such string once, and the spec as its JSON (the typed spec is
//! 296 bytes before its strings, mostly empty options; the JSON of a typical spec is a third of
//! that, and volumes with the same spec share it); a reconcile gets the EdgeVolume rebuilt
//! exactly (a round-trip test), so nothing downstream sees a difference.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use kube::api::ObjectMeta;
use serde::Deserialize;

use crate::crd::phase::Phase;
use crate::crd::volume::{
    EdgeVolume, EdgeVolumeSpec, EdgeVolumeStatus, PersistentVolumeState, Replica, ReplicaRole,
};

type Str = Arc<str>;

/// The strings of every cached volume's status, each once. Strings no volume holds any more
/// are dropped by [`purge`].
fn strings() -> &'static Mutex<HashSet<Str>> {
    static S: OnceLock<Mutex<HashSet<Str>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn intern(set: &mut HashSet<Str>, s: &str) -> Str {
    if let Some(v) = set.get(s) {
        return v.clone();
    }
    let v: Str = Arc::from(s);
    set.insert(v.clone());
    v
}

/// Forgets strings that only the set still holds (their volumes changed or are gone).
pub(crate) fn purge() {
    let mut set = strings().lock().unwrap_or_else(|e| e.into_inner());
    set.retain(|s| Arc::strong_count(s) > 1);
    set.shrink_to_fit();
}

#[derive(Clone, Debug)]
struct Cond {
    type_: Str,
    status: Str,
    reason: Str,
    message: Str,
    last_transition_time: Time,
    observed_generation: Option<i64>,
}

#[derive(Clone, Debug)]
struct Rep {
    node: Str,
    role: ReplicaRole,
    disk_state: Option<Str>,
    in_use: Option<bool>,
}

#[derive(Clone, Debug)]
struct Status {
    observed_generation: Option<i64>,
    conditions: Box<[Cond]>,
    phase: Option<Phase>,
    linstor_name: Option<Box<str>>,
    size: Option<Str>,
    diskful_replicas: Option<u32>,
    replicas: Box<[Rep]>,
    /// Rare (only volumes that ask for a PV): boxed, one pointer for the others.
    persistent_volume: Option<Box<PersistentVolumeState>>,
}

/// An EdgeVolume as the volume controller caches it.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "EdgeVolume")]
pub(crate) struct CachedVolume {
    metadata: ObjectMeta,
    /// `spec.backendRef`, read by the gauges without decoding the spec.
    backend_ref: Str,
    /// The spec's JSON, decoded for each reconcile.
    spec: Str,
    status: Option<Status>,
}

impl From<EdgeVolume> for CachedVolume {
    fn from(ev: EdgeVolume) -> Self {
        let mut set = strings().lock().unwrap_or_else(|e| e.into_inner());
        // Serialising a spec (strings, numbers, maps with string keys) cannot fail; if it ever
        // did, the empty string fails to decode in `expand` and the reconcile reports it.
        let spec = intern(
            &mut set,
            &serde_json::to_string(&ev.spec).unwrap_or_default(),
        );
        let backend_ref = intern(&mut set, &ev.spec.backend_ref);
        let status = ev.status.map(|st| {
            let mut s = |v: &str| intern(&mut set, v);
            Status {
                observed_generation: st.observed_generation,
                conditions: st
                    .conditions
                    .into_iter()
                    .map(|c| Cond {
                        type_: s(&c.type_),
                        status: s(&c.status),
                        reason: s(&c.reason),
                        message: s(&c.message),
                        last_transition_time: c.last_transition_time,
                        observed_generation: c.observed_generation,
                    })
                    .collect(),
                phase: st.phase,
                linstor_name: st.linstor_name.map(String::into_boxed_str),
                size: st.size.as_deref().map(&mut s),
                diskful_replicas: st.diskful_replicas,
                replicas: st
                    .replicas
                    .into_iter()
                    .map(|r| Rep {
                        node: s(&r.node),
                        role: r.role,
                        disk_state: r.disk_state.as_deref().map(&mut s),
                        in_use: r.in_use,
                    })
                    .collect(),
                persistent_volume: st.persistent_volume.map(Box::new),
            }
        });
        CachedVolume {
            metadata: ev.metadata,
            backend_ref,
            spec,
            status,
        }
    }
}

impl CachedVolume {
    /// The EdgeVolume this entry was made from.
    pub(crate) fn expand(&self) -> Result<EdgeVolume, serde_json::Error> {
        Ok(EdgeVolume {
            metadata: self.metadata.clone(),
            spec: serde_json::from_str::<EdgeVolumeSpec>(&self.spec)?,
            status: self.status.as_ref().map(|st| EdgeVolumeStatus {
                observed_generation: st.observed_generation,
                conditions: self.conditions(),
                phase: st.phase,
                linstor_name: st.linstor_name.as_deref().map(str::to_string),
                size: st.size.as_deref().map(str::to_string),
                diskful_replicas: st.diskful_replicas,
                replicas: st
                    .replicas
                    .iter()
                    .map(|r| Replica {
                        node: r.node.to_string(),
                        role: r.role,
                        disk_state: r.disk_state.as_deref().map(str::to_string),
                        in_use: r.in_use,
                    })
                    .collect(),
                persistent_volume: st.persistent_volume.as_deref().cloned(),
            }),
        })
    }

    /// `spec.backendRef`.
    pub(crate) fn backend_ref(&self) -> &str {
        &self.backend_ref
    }

    /// `status.conditions` (empty without a status).
    pub(crate) fn conditions(&self) -> Vec<Condition> {
        self.status
            .iter()
            .flat_map(|st| st.conditions.iter())
            .map(|c| Condition {
                type_: c.type_.to_string(),
                status: c.status.to_string(),
                reason: c.reason.to_string(),
                message: c.message.to_string(),
                last_transition_time: c.last_transition_time.clone(),
                observed_generation: c.observed_generation,
            })
            .collect()
    }
}

impl Resource for CachedVolume {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        EdgeVolume::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        EdgeVolume::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        EdgeVolume::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        EdgeVolume::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        EdgeVolume::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Deserialisation already left no spare room (the status is rebuilt exactly sized).
impl crate::memory::Compact for CachedVolume {}

#[cfg(test)]
mod tests {
    use super::*;

    /// EdgeVolume has no `PartialEq`; every field is in its JSON.
    fn j(v: &EdgeVolume) -> serde_json::Value {
        serde_json::to_value(v).expect("JSON")
    }

    #[test]
    fn a_cached_volume_gives_back_exactly_the_edgevolume_it_was_made_from() {
        let json = serde_json::json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
            "metadata": {"name": "db", "namespace": "team-a", "uid": "u1", "resourceVersion": "7",
                         "generation": 2, "finalizers": ["edgebind.dev/cleanup"],
                         "annotations": {"edgebind.dev/adopt-released": "true"}},
            "spec": {"backendRef": "main", "size": "1Gi", "placement": {"placeCount": 2},
                     "properties": {"team": "a"}},
            "status": {"observedGeneration": 2, "phase": "Ready", "linstorName": "eb-team-a_db",
                "size": "1Gi", "diskfulReplicas": 2,
                "replicas": [{"node": "n1", "role": "Diskful", "diskState": "UpToDate", "inUse": true},
                             {"node": "n2", "role": "TieBreaker"}],
                "persistentVolume": {"name": "edgebind.team-a.db", "phase": "Bound", "claim": "team-a/data"},
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Ready", "message": "2 of 2 diskful replica(s) UpToDate",
                     "lastTransitionTime": "2026-12-07T19:00:00Z", "observedGeneration": 2},
                    {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "all replicas healthy",
                     "lastTransitionTime": "2026-12-07T19:00:01Z"}]}
        });
        let ev: EdgeVolume = serde_json::from_value(json.clone()).expect("an EdgeVolume");
        let cached: CachedVolume =
            serde_json::from_value(json).expect("read as the cache reads it");
        assert_eq!(j(&cached.expand().expect("expands")), j(&ev));
        assert_eq!(
            cached.conditions(),
            ev.status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default()
        );
        let bare = EdgeVolume {
            status: None,
            ..ev.clone()
        };
        assert_eq!(
            j(&CachedVolume::from(bare.clone()).expand().expect("expands")),
            j(&bare)
        );

        // Two volumes share their status words; purging keeps what a volume still holds.
        let other = CachedVolume::from(ev.clone());
        let (a, b) = (
            &cached.status.as_ref().expect("status").conditions[0],
            &other.status.as_ref().expect("status").conditions[0],
        );
        assert!(Arc::ptr_eq(&a.message, &b.message));
        assert!(
            Arc::ptr_eq(&cached.spec, &other.spec),
            "one spec, stored once"
        );
        drop(other);
        purge();
        assert_eq!(j(&cached.expand().expect("expands")), j(&ev));
    }
}
