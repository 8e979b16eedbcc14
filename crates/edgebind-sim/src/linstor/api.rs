//! Request bodies, typed after the OpenAPI request schemas. Every struct denies unknown fields,
//! because the real controller's Jackson mapper fails on them (HTTP 400 "Unable to parse input
//! json."). Fields the simulator ignores are still declared so that valid requests parse.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub type Props = BTreeMap<String, String>;

/// `AutoSelectFilter`; also stored on resource groups and echoed back (omitting unset fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoSelectFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place_count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_place_count: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_pool_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_pool_diskless_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_place_with_rsc: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_place_with_rsc_regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_on_same: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_on_different: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x_replicas_on_different_map: Option<BTreeMap<String, i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_stack: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diskless_on_remaining: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diskless_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overprovision: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_count: Option<i32>,
}

impl AutoSelectFilter {
    /// Fields set in `over` replace those in `self` (request filter over resource-group filter).
    pub fn merged_with(&self, over: &AutoSelectFilter) -> AutoSelectFilter {
        macro_rules! pick {
            ($($f:ident),*) => { AutoSelectFilter { $($f: over.$f.clone().or_else(|| self.$f.clone())),* } };
        }
        pick!(
            place_count,
            additional_place_count,
            node_name_list,
            storage_pool,
            storage_pool_list,
            storage_pool_diskless_list,
            not_place_with_rsc,
            not_place_with_rsc_regex,
            replicas_on_same,
            replicas_on_different,
            x_replicas_on_different_map,
            layer_stack,
            provider_list,
            diskless_on_remaining,
            diskless_type,
            overprovision,
            port_count
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceGroupCreate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub props: Option<Props>,
    pub select_filter: Option<AutoSelectFilter>,
    pub uuid: Option<String>,
    pub peer_slots: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceGroupModify {
    pub description: Option<String>,
    pub override_props: Option<Props>,
    pub delete_props: Option<Vec<String>>,
    pub delete_namespaces: Option<Vec<String>>,
    pub select_filter: Option<AutoSelectFilter>,
    pub peer_slots: Option<i32>,
    pub snap_names: Option<Vec<String>>,
    pub copy_all_snaps: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeGroup {
    pub volume_number: Option<i32>,
    pub props: Option<Props>,
    pub uuid: Option<String>,
    pub flags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceGroupSpawn {
    pub resource_definition_name: Option<String>,
    pub resource_definition_external_name: Option<String>,
    pub volume_sizes: Option<Vec<i64>>,
    pub select_filter: Option<AutoSelectFilter>,
    pub partial: Option<bool>,
    pub definitions_only: Option<bool>,
    pub peer_slots: Option<i32>,
    pub volume_passphrases: Option<Vec<String>>,
    pub resource_definition_props: Option<Props>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceGroupAdjust {
    pub select_filter: Option<AutoSelectFilter>,
    pub snap_names: Option<Vec<String>>,
    pub copy_all_snaps: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerData {
    #[serde(rename = "type")]
    pub kind: LayerType,
    pub data: Option<serde_json::Value>,
}

/// `LayerType` enum; an unknown value is a Jackson mapping error too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerType {
    #[serde(rename = "DRBD")]
    Drbd,
    #[serde(rename = "LUKS")]
    Luks,
    #[serde(rename = "STORAGE")]
    Storage,
    #[serde(rename = "NVME")]
    Nvme,
    #[serde(rename = "WRITECACHE")]
    Writecache,
    #[serde(rename = "CACHE")]
    Cache,
    #[serde(rename = "BCACHE")]
    Bcache,
}

impl LayerType {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerType::Drbd => "DRBD",
            LayerType::Luks => "LUKS",
            LayerType::Storage => "STORAGE",
            LayerType::Nvme => "NVME",
            LayerType::Writecache => "WRITECACHE",
            LayerType::Cache => "CACHE",
            LayerType::Bcache => "BCACHE",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDefinition {
    pub name: Option<String>,
    pub external_name: Option<String>,
    pub props: Option<Props>,
    pub flags: Option<Vec<String>>,
    pub layer_data: Option<Vec<LayerData>>,
    pub uuid: Option<String>,
    pub resource_group_name: Option<String>,
    pub volume_definitions: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDefinitionCreate {
    pub drbd_port: Option<i32>,
    pub drbd_secret: Option<String>,
    pub drbd_peer_slots: Option<i32>,
    pub drbd_transport_type: Option<String>,
    pub resource_definition: Option<ResourceDefinition>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDefinitionModify {
    pub override_props: Option<Props>,
    pub delete_props: Option<Vec<String>>,
    pub delete_namespaces: Option<Vec<String>>,
    pub drbd_port: Option<i32>,
    pub drbd_peer_slots: Option<i32>,
    pub layer_stack: Option<Vec<LayerType>>,
    pub resource_group: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDefinition {
    pub volume_number: Option<i32>,
    pub size_kib: Option<i64>,
    pub props: Option<Props>,
    pub flags: Option<Vec<String>>,
    pub layer_data: Option<Vec<serde_json::Value>>,
    pub uuid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDefinitionCreate {
    pub volume_definition: Option<VolumeDefinition>,
    pub drbd_minor_number: Option<i32>,
    pub passphrase: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDefinitionModify {
    pub size_kib: Option<i64>,
    pub override_props: Option<Props>,
    pub delete_props: Option<Vec<String>>,
    pub delete_namespaces: Option<Vec<String>>,
    pub flags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub name: Option<String>,
    pub node_name: Option<String>,
    pub props: Option<Props>,
    pub effective_props: Option<serde_json::Value>,
    pub flags: Option<Vec<String>>,
    pub layer_object: Option<serde_json::Value>,
    pub state: Option<serde_json::Value>,
    pub uuid: Option<String>,
    pub create_timestamp: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceCreate {
    pub resource: Option<Resource>,
    pub layer_list: Option<Vec<LayerType>>,
    pub drbd_node_id: Option<i32>,
    pub drbd_tcp_port_count: Option<i32>,
    pub drbd_tcp_ports: Option<Vec<i32>>,
    pub snap_names: Option<Vec<String>>,
    pub copy_all_snaps: Option<bool>,
    pub drbd_client: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceModify {
    pub override_props: Option<Props>,
    pub delete_props: Option<Vec<String>>,
    pub delete_namespaces: Option<Vec<String>>,
    pub drbd_tiebreaker: Option<bool>,
    /// REST API 1.28+ only.
    pub drbd_client: Option<bool>,
}

/// `SnapshotModify`: the generic props-modify body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropsModify {
    pub override_props: Option<Props>,
    pub delete_props: Option<Vec<String>>,
    pub delete_namespaces: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoPlaceRequest {
    pub diskless_on_remaining: Option<bool>,
    pub select_filter: Option<AutoSelectFilter>,
    pub layer_list: Option<Vec<LayerType>>,
    pub snap_names: Option<Vec<String>>,
    pub copy_all_snaps: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreate {
    pub name: Option<String>,
    pub resource_name: Option<String>,
    pub nodes: Option<Vec<String>>,
    pub props: Option<Props>,
    pub snapshot_definition_props: Option<Props>,
    pub resource_definition_props: Option<Props>,
    pub flags: Option<Vec<String>>,
    pub volume_definitions: Option<Vec<serde_json::Value>>,
    pub uuid: Option<String>,
    pub snapshots: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRestore {
    pub to_resource: Option<String>,
    pub nodes: Option<Vec<String>>,
    pub stor_pool_rename: Option<BTreeMap<String, String>>,
}

/// List-valued request fields the controller dereferences without a null check: an explicit
/// `null` there is a NullPointerException (500 with an error report) on the real server.
pub const NULL_SENSITIVE_LISTS: &[&str] = &[
    "layer_data",
    "layer_list",
    "layer_stack",
    "volume_sizes",
    "delete_props",
    "delete_namespaces",
    "flags",
];

/// Finds the first explicit `null` under a null-sensitive list key, anywhere in the body.
pub fn explicit_null_list(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(map) => map.iter().find_map(|(k, val)| {
            if val.is_null() && NULL_SENSITIVE_LISTS.contains(&k.as_str()) {
                Some(k.clone())
            } else {
                explicit_null_list(val)
            }
        }),
        serde_json::Value::Array(items) => items.iter().find_map(explicit_null_list),
        _ => None,
    }
}
