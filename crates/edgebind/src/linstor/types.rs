//! Response and request bodies. Responses: every field defaulted, unknown fields ignored (the
//! server omits empty values). Requests: absent values are omitted, never sent as `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub(crate) type Props = BTreeMap<String, String>;

/// Keeps only the properties edgebind decides on: `Aux/` (its markers and the user's) and
/// `FileSystem/` (the filesystem it asks LINSTOR to make for a PersistentVolume). LINSTOR's own
/// properties (DRBD options, pool names, ...) would otherwise fill the inventory, one map per
/// object, at tens of thousands of objects.
fn aux_only<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Props, D::Error> {
    struct Aux;
    impl<'de> serde::de::Visitor<'de> for Aux {
        type Value = Props;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of properties")
        }
        fn visit_unit<E>(self) -> Result<Props, E> {
            Ok(Props::new())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Props, A::Error> {
            let mut out = Props::new();
            while let Some(k) = m.next_key::<String>()? {
                if k.starts_with("Aux/") || k.starts_with("FileSystem/") {
                    out.insert(k, m.next_value()?);
                } else {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(out)
        }
    }
    d.deserialize_any(Aux)
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct ControllerVersion {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub git_hash: String,
    #[serde(default)]
    pub rest_api_version: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct ResourceDefinition {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "aux_only",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub props: Props,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_definitions: Vec<VolumeDefinition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct VolumeDefinition {
    #[serde(default)]
    pub volume_number: i32,
    #[serde(default)]
    pub size_kib: u64,
    #[serde(
        default,
        deserialize_with = "aux_only",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub props: Props,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// An entry of `GET /v1/view/resources`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct ResourceWithVolumes {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default, deserialize_with = "aux_only")]
    pub props: Props,
    /// Absent when the node's satellite is offline.
    #[serde(default)]
    pub state: Option<ResourceState>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct ResourceState {
    #[serde(default)]
    pub in_use: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct Volume {
    #[serde(default)]
    pub volume_number: i32,
    #[serde(default)]
    pub storage_pool_name: Option<String>,
    #[serde(default)]
    pub allocated_size_kib: Option<u64>,
    #[serde(default)]
    pub usable_size_kib: Option<u64>,
    #[serde(default)]
    pub state: Option<VolumeState>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct VolumeState {
    #[serde(default)]
    pub disk_state: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub resource_name: String,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default, deserialize_with = "aux_only")]
    pub snapshot_definition_props: Props,
    /// The copy of the resource definition's properties taken with the snapshot (REST API
    /// 1.24+); a restore copies it onto the target resource definition.
    #[serde(default, deserialize_with = "aux_only")]
    pub resource_definition_props: Props,
    /// Before 1.24 the only container: that same copy (since 1.24 both, squashed).
    #[serde(default, deserialize_with = "aux_only")]
    pub props: Props,
    #[serde(default)]
    pub volume_definitions: Vec<SnapshotVolumeDefinition>,
    #[serde(default)]
    pub snapshots: Vec<SnapshotNode>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct SnapshotVolumeDefinition {
    #[serde(default)]
    pub volume_number: i32,
    #[serde(default)]
    pub size_kib: u64,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct SnapshotNode {
    #[serde(default)]
    pub node_name: String,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub create_timestamp: Option<i64>,
}

impl Snapshot {
    /// The resource-definition properties a restore of this snapshot copies onto its target
    /// (`resource_definition_props` from REST API 1.24, `props` before).
    pub fn copied_rd_props(&self) -> &Props {
        if self.resource_definition_props.is_empty() {
            &self.props
        } else {
            &self.resource_definition_props
        }
    }
    pub fn successful(&self) -> bool {
        self.flags.iter().any(|f| f == "SUCCESSFUL")
    }
    pub fn failed(&self) -> bool {
        self.flags
            .iter()
            .any(|f| f == "FAILED_DEPLOYMENT" || f == "FAILED_DISCONNECT")
    }
}

/// A resource group as `GET /v1/resource-groups/{rg}` returns it (only what edgebind reads).
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub(crate) struct ResourceGroupInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub select_filter: SelectFilterInfo,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub(crate) struct SelectFilterInfo {
    #[serde(default)]
    pub place_count: Option<i64>,
    #[serde(default)]
    pub additional_place_count: Option<i64>,
}

// ---- request bodies (closed: only fields the spec has, none null) ----

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct ResourceDefinitionCreate {
    pub resource_definition: NewResourceDefinition,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct NewResourceDefinition {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_group_name: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub props: Props,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct VolumeDefinitionCreate {
    pub volume_definition: NewVolumeDefinition,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct NewVolumeDefinition {
    pub volume_number: i32,
    pub size_kib: u64,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub(crate) struct AutoSelectFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub place_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_pool_list: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_on_same: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas_on_different: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_stack: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diskless_on_remaining: Option<bool>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct AutoPlaceRequest {
    /// Required by the API even when empty (`{}` merges the resource group's filter).
    pub select_filter: AutoSelectFilter,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diskless_on_remaining: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_list: Option<Vec<String>>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct ResourceGroupSpawn {
    pub resource_definition_name: String,
    pub volume_sizes: Vec<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_definition_props: Props,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub(crate) struct PropsModify {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub override_props: Props,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delete_props: Vec<String>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct VolumeDefinitionResize {
    pub size_kib: u64,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct SnapshotCreate {
    pub name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshot_definition_props: Props,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub(crate) struct SnapshotRestore {
    pub to_resource: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_keep_only_aux_properties() {
        let rd: ResourceDefinition = serde_json::from_value(serde_json::json!({
            "name": "pvc-1",
            "props": {"Aux/edgebind.dev/owner-uid": "u1", "DrbdOptions/Net/protocol": "C", "Aux/team": "a",
                      "FileSystem/Type": "ext4"},
            "volume_definitions": [{"volume_number": 0, "size_kib": 1024, "props": {"DrbdCurrentGi": "X"}}]
        }))
        .expect("a resource definition");
        // FileSystem/Type is kept: the PV pass compares it (without it, it is re-sent each pass).
        assert_eq!(
            rd.props.keys().collect::<Vec<_>>(),
            ["Aux/edgebind.dev/owner-uid", "Aux/team", "FileSystem/Type"]
        );
        assert!(rd.volume_definitions[0].props.is_empty());
        let r: ResourceWithVolumes =
            serde_json::from_value(serde_json::json!({"name": "pvc-1", "props": null}))
                .expect("null props read as none");
        assert!(r.props.is_empty());
        assert!(
            serde_json::from_value::<Snapshot>(
                serde_json::json!({"snapshot_definition_props": {"Aux/x": 1}})
            )
            .is_err(),
            "a property value that is not a string is an error, as before"
        );
    }
}
