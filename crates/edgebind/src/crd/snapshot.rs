//! `EdgeSnapshot`: a point-in-time snapshot of an `EdgeVolume`.

// kube's repeated `printcolumn(type_ = ...)` arguments trip this lint; they are distinct columns.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::DeletionPolicy;

/// A snapshot of an EdgeVolume in the same namespace, taken on every node holding a replica.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "edgebind.dev",
    version = "v1alpha1",
    kind = "EdgeSnapshot",
    namespaced,
    status = "EdgeSnapshotStatus",
    shortname = "esnap",
    category = "edgebind",
    printcolumn(name = "Volume", type_ = "string", json_path = ".spec.volumeRef"),
    printcolumn(
        name = "ReadyToUse",
        type_ = "boolean",
        json_path = ".status.readyToUse"
    ),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.restoreSize"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct EdgeSnapshotSpec {
    /// Name of the EdgeVolume (same namespace) to snapshot. Immutable: a snapshot is of one volume.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("volumeRef is immutable; create a new EdgeSnapshot instead"))]
    pub volume_ref: String,
    /// What happens to the LINSTOR snapshot when this object is deleted. `Retain` (default) keeps it,
    /// marked as released; `Delete` removes it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Observed state of a snapshot.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EdgeSnapshotStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` is True once LINSTOR reports the snapshot successful on every node.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// `Pending`, `Ready`, `Failed` (a person must act: the Ready condition says what) or
    /// `Deleting`; the same word the edge gateway answers with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::crd::phase::Phase>,
    /// LINSTOR snapshot name (within the volume's resource definition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linstor_name: Option<String>,
    /// LINSTOR resource definition the snapshot belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
    /// True once the snapshot can be restored.
    #[serde(default)]
    pub ready_to_use: bool,
    /// When LINSTOR took the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    /// Nodes that hold the snapshot (a restore places its first replicas there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Size a restore needs, as a quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<String>,
}
