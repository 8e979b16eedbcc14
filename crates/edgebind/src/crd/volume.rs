//! `EdgeVolume`: one replicated LINSTOR volume.

// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;

/// Annotation that lets a new EdgeVolume adopt the LINSTOR resource a deleted EdgeVolume left
/// behind with `deletionPolicy: Retain`. Without it, a released resource is never taken over.
pub const ADOPT_RELEASED_ANNOTATION: &str = "edgebind.dev/adopt-released";

/// A replicated block volume in LINSTOR (a resource definition, one volume definition and the
/// resources placed on nodes).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgebind.dev",
    version = "v1alpha1",
    kind = "EdgeVolume",
    namespaced,
    status = "EdgeVolumeStatus",
    shortname = "evol",
    category = "edgebind",
    printcolumn(name = "Backend", type_ = "string", json_path = ".spec.backendRef"),
    printcolumn(name = "Size", type_ = "string", json_path = ".spec.size"),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.diskfulReplicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "LINSTOR",
        type_ = "string",
        priority = 1,
        json_path = ".status.linstorName"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[x_kube(validation = Rule::new("has(self.source) == has(oldSelf.source)").message("source cannot be added or removed after creation; create a new EdgeVolume to restore a snapshot"))]
#[serde(rename_all = "camelCase")]
pub struct EdgeVolumeSpec {
    /// Name of the LinstorBackend that holds this volume. Immutable: a volume cannot move between
    /// LINSTOR clusters.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("backendRef is immutable"))]
    pub backend_ref: String,
    /// Size as a Kubernetes quantity (`10Gi`). It can grow (LINSTOR resizes the volume) but never
    /// shrink: DRBD cannot shrink a volume without losing data.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("size must be a positive quantity such as 10Gi"))]
    #[x_kube(validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("size can only grow; shrinking a replicated volume would lose data"))]
    pub size: String,
    /// Where replicas go: either a LINSTOR resource group, or explicit placement fields.
    #[serde(default)]
    pub placement: Placement,
    /// Create the volume from a snapshot instead of empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("source is immutable"))]
    pub source: Option<VolumeSource>,
    /// What happens to the LINSTOR resource when this object is deleted. `Retain` (default)
    /// keeps the data, marked as released; `Delete` removes the snapshots edgebind made of it,
    /// then the resource definition.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Extra properties stored on the LINSTOR resource definition under `Aux/` (for example
    /// `team: storage` becomes `Aux/team=storage`). Keys under `edgebind.dev/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('edgebind.dev/'))").message("property keys under edgebind.dev/ are reserved for edgebind"))]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$'))").message("property keys must be 1-128 characters of letters, digits, '_', '.', '/' and '-'"))]
    pub properties: BTreeMap<String, String>,
    /// Expose the volume to pods as a statically provisioned PersistentVolume for LINBIT's CSI
    /// driver (`linstor.csi.linbit.com`). edgebind creates and owns the PV; its reclaim policy
    /// is `Retain`, so only this object's `deletionPolicy` ever deletes the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<PersistentVolumeRequest>,
}

/// The PersistentVolume edgebind keeps for a volume (see `docs/reference/linstor-csi-static-pv.md`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.accessMode) || self.accessMode != 'ReadWriteMany' || (has(self.volumeMode) && self.volumeMode == 'Block')").message("accessMode ReadWriteMany needs volumeMode Block: a filesystem cannot be mounted on two nodes at once"))]
#[x_kube(validation = Rule::new("!has(self.fsType) || !has(self.volumeMode) || self.volumeMode != 'Block'").message("fsType applies to volumeMode Filesystem only"))]
#[x_kube(validation = Rule::new("has(self.volumeMode) == has(oldSelf.volumeMode) && has(self.fsType) == has(oldSelf.fsType)").message("volumeMode and fsType cannot be added or removed after creation"))]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeRequest {
    /// Pre-bind the PV to the PersistentVolumeClaim of this name in the volume's namespace
    /// (`claimRef`), so that claim, and no other, binds it. The claim should name the PV in
    /// `volumeName` (shown in `status.persistentVolume.name`) and the same storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: Option<String>,
    /// `storageClassName` of the PV (default empty: no class). A class whose provisioner is
    /// `linstor.csi.linbit.com` with `allowVolumeExpansion: true` lets claims grow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
    /// Access mode (default `ReadWriteOnce`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<PvAccessMode>,
    /// `Filesystem` (default) or `Block`. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("volumeMode is immutable"))]
    pub volume_mode: Option<PvVolumeMode>,
    /// Filesystem LINSTOR makes on the volume (`FileSystem/Type`) and the PV mounts
    /// (default `ext4`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("fsType is immutable"))]
    pub fs_type: Option<FsType>,
}

/// Access modes linstor-csi supports.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvAccessMode {
    ReadWriteOnce,
    ReadWriteOncePod,
    ReadOnlyMany,
    ReadWriteMany,
}

/// `volumeMode` of a PersistentVolume.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvVolumeMode {
    Filesystem,
    Block,
}

/// Filesystems LINSTOR's satellite can make (`MkfsUtils.makeFileSystemOnMarked`: ext4, xfs).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
        }
    }
}

/// What became of the PersistentVolume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeState {
    /// Name of the PV (`edgebind.<namespace>.<name>`; a hash when that is too long).
    pub name: String,
    /// The PV's `status.phase` (`Available`, `Bound`, `Released`, ...), when it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `<namespace>/<name>` of the claim the PV is bound or pre-bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
}

/// Placement of replicas. `resourceGroup` excludes every other field.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.resourceGroup) || !(has(self.placeCount) || has(self.storagePools) || has(self.replicasOnSame) || has(self.replicasOnDifferent) || has(self.layerList) || has(self.disklessOnRemaining))").message("resourceGroup excludes placeCount, storagePools, replicasOnSame, replicasOnDifferent, layerList and disklessOnRemaining: the resource group decides placement"))]
#[x_kube(validation = Rule::new("has(self.resourceGroup) == has(oldSelf.resourceGroup) && has(self.layerList) == has(oldSelf.layerList)").message("resourceGroup and layerList cannot be added or removed after creation"))]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// A LINSTOR resource group whose select filter places the replicas (the volume is spawned
    /// from it). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 48))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("resourceGroup is immutable"))]
    pub resource_group: Option<String>,
    /// Number of diskful replicas (default 2). It can be raised, never lowered: edgebind never
    /// removes a replica that holds data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("placeCount can only grow; edgebind never removes replicas"))]
    pub place_count: Option<u32>,
    /// Storage pools diskful replicas may use (any of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub storage_pools: Option<Vec<String>>,
    /// Node properties that must be equal on all replicas (e.g. `Aux/topology/topology.kubernetes.io/region`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub replicas_on_same: Option<Vec<String>>,
    /// Node properties that must differ between replicas (e.g. `Aux/topology/topology.kubernetes.io/zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    pub replicas_on_different: Option<Vec<String>>,
    /// Layer stack, top first (default `[drbd, storage]`). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 6))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("layerList is immutable"))]
    pub layer_list: Option<Vec<Layer>>,
    /// Also place diskless replicas on every remaining node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diskless_on_remaining: Option<bool>,
}

/// A LINSTOR layer.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Drbd,
    Luks,
    Storage,
    Nvme,
    Writecache,
    Cache,
    Bcache,
}

impl Layer {
    /// The name LINSTOR uses.
    pub fn linstor_name(self) -> &'static str {
        match self {
            Layer::Drbd => "DRBD",
            Layer::Luks => "LUKS",
            Layer::Storage => "STORAGE",
            Layer::Nvme => "NVME",
            Layer::Writecache => "WRITECACHE",
            Layer::Cache => "CACHE",
            Layer::Bcache => "BCACHE",
        }
    }
}

/// The content a new volume starts from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    /// Name of an EdgeSnapshot in the same namespace. The volume is restored from it; a restore
    /// never overwrites a volume that already has data.
    #[schemars(length(min = 1, max = 253))]
    pub snapshot: String,
}

/// Observed state of a volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeVolumeStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Degraded` and `Progressing`, with reasons that say what to do.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// `Pending`, `Ready`, `Failed` (a person must act: the Ready condition says what) or
    /// `Deleting`; the same word the edge gateway answers with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::crd::phase::Phase>,
    /// Name of the LINSTOR resource definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linstor_name: Option<String>,
    /// Usable size LINSTOR reports, as a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Number of diskful replicas LINSTOR reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diskful_replicas: Option<u32>,
    /// One entry per node the volume is placed on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Replica>,
    /// The PersistentVolume edgebind keeps for this volume, when `spec.persistentVolume` asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume: Option<PersistentVolumeState>,
}

/// One placed replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    /// LINSTOR node name.
    pub node: String,
    /// Whether this replica stores data.
    pub role: ReplicaRole,
    /// DRBD disk state (`UpToDate`, `Inconsistent`, `Outdated`, `Diskless`, ...); absent when the
    /// node's satellite is offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_state: Option<String>,
    /// Whether the volume is open (in use) on this node; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use: Option<bool>,
}

/// Role of a replica.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaRole {
    Diskful,
    Diskless,
    TieBreaker,
}

impl crate::memory::Compact for EdgeVolume {
    fn compact(&mut self) {
        if let Some(st) = self.status.as_mut() {
            st.conditions.shrink_to_fit();
            st.replicas.shrink_to_fit();
        }
    }
}
