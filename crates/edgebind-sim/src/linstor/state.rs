//! The simulated controller's objects and their JSON views (shapes from the OpenAPI schemas).

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::api::{AutoSelectFilter, Props};
use super::reply::now_millis;
use super::validate::key;

pub const DFLT_RSC_GRP: &str = "DfltRscGrp";
pub const DFLT_DISKLESS_POOL: &str = "DfltDisklessStorPool";
pub const ZONE_KEY: &str = "Aux/topology/topology.kubernetes.io/zone";

/// A storage pool on a simulated node.
#[derive(Debug, Clone)]
pub struct SimPool {
    pub name: String,
    /// `ProviderKind`, e.g. "LVM_THIN" or "DISKLESS".
    pub provider_kind: String,
    pub total_kib: u64,
}

/// A simulated satellite.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub name: String,
    pub props: Props,
    pub pools: Vec<SimPool>,
    pub address: String,
}

impl SimNode {
    /// A node with one LVM_THIN pool "thin" of `thin_gib` GiB (0 = diskless only) plus the
    /// diskless pool, in `zone` (set as the piraeus topology property).
    pub fn new(name: &str, zone: Option<&str>, thin_gib: u64, address: &str) -> Self {
        let mut props = Props::new();
        props.insert(
            "Aux/topology/kubernetes.io/hostname".to_string(),
            name.to_string(),
        );
        if let Some(z) = zone {
            props.insert(ZONE_KEY.to_string(), z.to_string());
        }
        let mut pools = vec![SimPool {
            name: DFLT_DISKLESS_POOL.to_string(),
            provider_kind: "DISKLESS".to_string(),
            total_kib: 0,
        }];
        if thin_gib > 0 {
            pools.push(SimPool {
                name: "thin".to_string(),
                provider_kind: "LVM_THIN".to_string(),
                total_kib: thin_gib * 1024 * 1024,
            });
        }
        SimNode {
            name: name.to_string(),
            props,
            pools,
            address: address.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    pub cfg: SimNode,
    pub uuid: String,
    pub online: bool,
    /// `Node.Flags` of linstor-server: `EVACUATE` (`node evacuate`), `EVICTED` (auto-evict).
    pub flags: Vec<String>,
}

impl Node {
    /// Whether autoplace may put a new replica here: the autoplacer's filter disqualifies nodes
    /// being deleted or evacuated ("Autoplacer.Filter: Disqualifying node '%s' as it is
    /// currently being evacuated", linstor-server `…/controller/autoplacer/StorPoolFilter.java`).
    pub fn placeable(&self) -> bool {
        !self
            .flags
            .iter()
            .any(|f| matches!(f.as_str(), "DELETE" | "EVACUATE" | "EVICTED"))
    }
}

#[derive(Debug, Clone)]
pub struct VolumeGroup {
    pub number: i32,
    pub props: Props,
    pub flags: Vec<String>,
    pub uuid: String,
}

/// A resource group the simulator starts with (`SimConfig::resource_groups`), with volume
/// group 0 as `linstor resource-group create` plus `volume-group create` leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimResourceGroup {
    pub name: String,
    pub place_count: i32,
    pub storage_pools: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ResourceGroup {
    pub name: String,
    pub description: Option<String>,
    pub props: Props,
    pub select_filter: AutoSelectFilter,
    pub peer_slots: Option<i32>,
    pub uuid: String,
    pub vgs: BTreeMap<i32, VolumeGroup>,
}

#[derive(Debug, Clone)]
pub struct VolumeDefinition {
    pub number: i32,
    pub size_kib: u64,
    pub props: Props,
    pub flags: Vec<String>,
    pub uuid: String,
    pub minor: i32,
}

#[derive(Debug, Clone)]
pub struct Resource {
    /// Node name as configured.
    pub node: String,
    pub props: Props,
    pub flags: Vec<String>,
    pub uuid: String,
    pub create_timestamp: i64,
    /// Storage pool of every volume; the diskless pool for clients.
    pub pool: String,
    pub diskless: bool,
    pub in_use: bool,
    pub node_id: i32,
    pub layers: Vec<String>,
    /// Diskful replicas report Inconsistent/SyncTarget until this instant.
    pub synced_at: Instant,
    /// Scenario override of every volume's disk state (e.g. "Outdated", "Failed").
    pub disk_state_override: Option<String>,
}

impl Resource {
    pub fn is_diskful(&self) -> bool {
        !self.diskless
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: String,
    pub snapshot_props: Props,
    pub rd_props: Props,
    pub nodes: Vec<String>,
    /// (volume number, size in KiB) at the time of the snapshot.
    pub volumes: Vec<(i32, u64)>,
    /// Storage pool per node at the time of the snapshot.
    pub pools: BTreeMap<String, String>,
    pub flags: Vec<String>,
    pub uuid: String,
    pub create_timestamp: i64,
}

#[derive(Debug, Clone)]
pub struct ResourceDefinition {
    pub name: String,
    pub external_name: Option<String>,
    pub props: Props,
    pub flags: Vec<String>,
    pub layers: Vec<String>,
    pub rg: String,
    pub uuid: String,
    pub port: i32,
    pub peer_slots: i32,
    pub vds: BTreeMap<i32, VolumeDefinition>,
    /// Keyed by upper-cased node name.
    pub resources: BTreeMap<String, Resource>,
    /// Keyed by upper-cased snapshot name.
    pub snapshots: BTreeMap<String, Snapshot>,
}

impl ResourceDefinition {
    pub fn total_size_kib(&self) -> u64 {
        self.vds
            .values()
            .fold(0u64, |acc, v| acc.saturating_add(v.size_kib))
    }

    pub fn diskful_count(&self) -> usize {
        self.resources.values().filter(|r| r.is_diskful()).count()
    }
}

#[derive(Debug, Clone)]
pub struct ErrorReport {
    pub id: String,
    pub time: i64,
    pub text: String,
}

/// Everything the controller knows. Keys of all maps are upper-cased names.
#[derive(Debug)]
pub struct World {
    pub nodes: BTreeMap<String, Node>,
    pub rgs: BTreeMap<String, ResourceGroup>,
    pub rds: BTreeMap<String, ResourceDefinition>,
    pub error_reports: Vec<ErrorReport>,
    pub next_port: i32,
    pub next_minor: i32,
    pub sync_delay: Duration,
    pub instance_id: String,
    /// REST API version the simulated controller speaks (major, minor): JSON shapes differ.
    pub rest_api: (u32, u32),
}

pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl World {
    pub fn new(nodes: &[SimNode], groups: &[SimResourceGroup], sync_delay: Duration) -> Self {
        let nodes = nodes
            .iter()
            .map(|n| {
                (
                    key(&n.name),
                    Node {
                        cfg: n.clone(),
                        uuid: new_uuid(),
                        online: true,
                        flags: Vec::new(),
                    },
                )
            })
            .collect();
        let mut rgs = BTreeMap::new();
        rgs.insert(
            key(DFLT_RSC_GRP),
            ResourceGroup {
                name: DFLT_RSC_GRP.to_string(),
                description: None,
                props: Props::new(),
                select_filter: AutoSelectFilter {
                    place_count: Some(2),
                    ..Default::default()
                },
                peer_slots: None,
                uuid: new_uuid(),
                vgs: BTreeMap::new(),
            },
        );
        for g in groups {
            let vg = VolumeGroup {
                number: 0,
                props: Props::new(),
                flags: Vec::new(),
                uuid: new_uuid(),
            };
            rgs.insert(
                key(&g.name),
                ResourceGroup {
                    name: g.name.clone(),
                    description: None,
                    props: Props::new(),
                    select_filter: AutoSelectFilter {
                        place_count: Some(g.place_count),
                        storage_pool_list: Some(g.storage_pools.clone()),
                        ..Default::default()
                    },
                    peer_slots: None,
                    uuid: new_uuid(),
                    vgs: BTreeMap::from([(0, vg)]),
                },
            );
        }
        let instance = uuid::Uuid::new_v4().simple().to_string();
        World {
            nodes,
            rgs,
            rds: BTreeMap::new(),
            error_reports: Vec::new(),
            next_port: 7000,
            next_minor: 1000,
            sync_delay,
            instance_id: instance[..8].to_ascii_uppercase(),
            rest_api: (1, 27),
        }
    }

    /// Records an internal error and returns its report id (the real controller writes a file).
    pub fn error_report(&mut self, text: String) -> String {
        let id = format!("{}-00000-{:06}", self.instance_id, self.error_reports.len());
        self.error_reports.push(ErrorReport {
            id: id.clone(),
            time: now_millis(),
            text,
        });
        id
    }

    /// KiB used on (node key, pool name) by diskful volumes of every resource definition.
    pub fn used_kib(&self, node_key: &str, pool: &str) -> u64 {
        self.rds
            .values()
            .map(|rd| match rd.resources.get(node_key) {
                Some(r) if r.is_diskful() && r.pool == pool => rd.total_size_kib(),
                _ => 0,
            })
            .fold(0u64, u64::saturating_add)
    }

    /// KiB used per (node key, pool name), in one pass over every resource definition (the
    /// placer needs every pool's figure; asking per pool would scan the world per pool).
    pub fn usage_kib(&self) -> HashMap<(String, String), u64> {
        let mut m: HashMap<(String, String), u64> = HashMap::new();
        for rd in self.rds.values() {
            let size = rd.total_size_kib();
            for (nk, r) in &rd.resources {
                if r.is_diskful() {
                    let e = m.entry((nk.clone(), r.pool.clone())).or_default();
                    *e = e.saturating_add(size);
                }
            }
        }
        m
    }

    pub fn free_kib(&self, node_key: &str, pool: &SimPool) -> u64 {
        pool.total_kib
            .saturating_sub(self.used_kib(node_key, &pool.name))
    }

    pub fn node_display(&self, node_key: &str) -> String {
        self.nodes
            .get(node_key)
            .map(|n| n.cfg.name.clone())
            .unwrap_or_else(|| node_key.to_string())
    }

    // ---- JSON views -------------------------------------------------------------------

    pub fn node_json(&self, n: &Node) -> Value {
        let mut providers: Vec<&str> = n
            .cfg
            .pools
            .iter()
            .map(|p| p.provider_kind.as_str())
            .collect();
        providers.sort_unstable();
        providers.dedup();
        json!({
            "name": n.cfg.name,
            // The OpenAPI document's enum (Controller, Satellite, Combined, Auxiliary).
            "type": "Satellite",
            "props": n.cfg.props,
            "net_interfaces": [{
                "name": "default", "address": n.cfg.address, "satellite_port": 3366,
                "satellite_encryption_type": "PLAIN", "is_active": true,
                "uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, n.uuid.as_bytes()).to_string(),
            }],
            "connection_status": if n.online { "ONLINE" } else { "OFFLINE" },
            "flags": n.flags,
            "uuid": n.uuid,
            "storage_providers": providers,
            "resource_layers": ["DRBD", "STORAGE"],
        })
    }

    pub fn pool_json(&self, node_key: &str, n: &Node, p: &SimPool) -> Value {
        let diskless = p.provider_kind == "DISKLESS";
        let mut v = json!({
            "storage_pool_name": p.name,
            "node_name": n.cfg.name,
            "provider_kind": p.provider_kind,
            "free_space_mgr_name": format!("{};{}", n.cfg.name, p.name),
            "uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{}/{}", n.uuid, p.name).as_bytes()).to_string(),
            "supports_snapshots": p.provider_kind.ends_with("_THIN"),
            "static_traits": {"Provisioning": if p.provider_kind.ends_with("_THIN") { "Thin" } else { "Fat" }},
            "external_locking": false,
        });
        if !diskless {
            v["free_capacity"] = json!(self.free_kib(node_key, p));
            v["total_capacity"] = json!(p.total_kib);
            v["props"] = json!({"StorDriver/StorPoolName": format!("linstor_vg/{}", p.name)});
        }
        v
    }

    pub fn rg_json(&self, rg: &ResourceGroup) -> Value {
        json!({
            "name": rg.name,
            "description": rg.description,
            "props": rg.props,
            "select_filter": rg.select_filter,
            "uuid": rg.uuid,
            "peer_slots": rg.peer_slots,
        })
    }

    pub fn vg_json(vg: &VolumeGroup) -> Value {
        json!({"volume_number": vg.number, "props": vg.props, "flags": vg.flags, "uuid": vg.uuid})
    }

    pub fn rd_json(&self, rd: &ResourceDefinition, with_vds: bool) -> Value {
        let layer_data: Vec<Value> = rd
            .layers
            .iter()
            .map(|l| {
                if l == "DRBD" {
                    json!({"type": "DRBD", "data": {
                        "resource_name_suffix": "", "peer_slots": rd.peer_slots, "al_stripes": 1,
                        "al_stripe_size_kib": 32, "port": rd.port, "transport_type": "IP", "down": false}})
                } else {
                    json!({"type": l})
                }
            })
            .collect();
        let mut v = json!({
            "name": rd.name,
            "external_name": rd.external_name,
            "props": rd.props,
            "flags": rd.flags,
            "layer_data": layer_data,
            "uuid": rd.uuid,
            "resource_group_name": rd.rg,
        });
        if with_vds {
            v["volume_definitions"] = Value::Array(rd.vds.values().map(Self::vd_json).collect());
        }
        v
    }

    pub fn vd_json(vd: &VolumeDefinition) -> Value {
        json!({
            "volume_number": vd.number,
            "size_kib": vd.size_kib,
            "props": vd.props,
            "flags": vd.flags,
            "uuid": vd.uuid,
            "layer_data": [
                {"type": "DRBD", "data": {"volume_number": vd.number, "minor_number": vd.minor}},
                {"type": "STORAGE"}
            ],
        })
    }

    fn disk_state(&self, r: &Resource) -> Option<String> {
        let online = self.nodes.get(&key(&r.node)).is_some_and(|n| n.online);
        if !online {
            return None;
        }
        if let Some(s) = &r.disk_state_override {
            return Some(s.clone());
        }
        Some(if r.diskless {
            "Diskless".to_string()
        } else if Instant::now() < r.synced_at {
            "Inconsistent".to_string()
        } else {
            "UpToDate".to_string()
        })
    }

    fn node_online(&self, r: &Resource) -> bool {
        self.nodes.get(&key(&r.node)).is_some_and(|n| n.online)
    }

    fn flags_of(r: &Resource) -> Vec<String> {
        let mut f = r.flags.clone();
        if r.diskless && !f.iter().any(|x| x == "DRBD_DISKLESS") {
            f.push("DRBD_DISKLESS".to_string());
        }
        f
    }

    /// `Resource` as `GET …/resources` returns it.
    pub fn resource_json(&self, rd: &ResourceDefinition, r: &Resource) -> Value {
        let online = self.node_online(r);
        let disk_state = self.disk_state(r);
        let mut conns = serde_json::Map::new();
        for other in rd.resources.values() {
            if other.node != r.node {
                let up = online && self.node_online(other);
                conns.insert(
                    other.node.clone(),
                    json!({"connected": up, "message": if up { "Connected" } else { "Connecting" }}),
                );
            }
        }
        let drbd_volumes: Vec<Value> = rd
            .vds
            .values()
            .map(|vd| {
                json!({
                    "device_path": format!("/dev/drbd{}", vd.minor),
                    "disk_state": disk_state,
                    "usable_size_kib": vd.size_kib,
                    "allocated_size_kib": if r.diskless { None } else { Some(vd.size_kib.saturating_add(4)) },
                    "drbd_volume_definition": {"volume_number": vd.number, "minor_number": vd.minor},
                })
            })
            .collect();
        let up_to_date = disk_state.as_deref() == Some("UpToDate");
        let mut v = json!({
            "name": rd.name,
            "node_name": r.node,
            "props": r.props,
            "flags": Self::flags_of(r),
            "uuid": r.uuid,
            "create_timestamp": r.create_timestamp,
            "layer_object": {
                "type": "DRBD",
                "drbd": {
                    "node_id": r.node_id,
                    "peer_slots": rd.peer_slots,
                    "al_stripes": 1,
                    "al_size": 32,
                    "drbd_volumes": drbd_volumes,
                    "connections": conns,
                    "promotion_score": if online && (up_to_date || r.diskless) { 10102 } else { 0 },
                    "may_promote": online && up_to_date && !r.in_use,
                    "flags": Self::flags_of(r),
                },
                "children": if r.diskless { json!([]) } else { json!([{"type": "STORAGE", "storage": {}}]) },
            },
        });
        if online {
            v["state"] = json!({"in_use": r.in_use});
        }
        v
    }

    /// `ResourceWithVolumes` as `GET /v1/view/resources` returns it.
    pub fn resource_view_json(&self, rd: &ResourceDefinition, r: &Resource) -> Value {
        let mut v = self.resource_json(rd, r);
        let disk_state = self.disk_state(r);
        let syncing = disk_state.as_deref() == Some("Inconsistent");
        let provider = self
            .nodes
            .get(&key(&r.node))
            .and_then(|n| n.cfg.pools.iter().find(|p| p.name == r.pool))
            .map(|p| p.provider_kind.clone())
            .unwrap_or_else(|| "DISKLESS".to_string());
        let vols: Vec<Value> = rd
            .vds
            .values()
            .map(|vd| {
                let mut repl = serde_json::Map::new();
                if syncing {
                    for other in rd.resources.values() {
                        if other.node != r.node && other.is_diskful() {
                            repl.insert(
                                other.node.clone(),
                                json!({"replication_state": "SyncTarget", "done_percentage": 50.0}),
                            );
                        }
                    }
                }
                let state = disk_state
                    .as_ref()
                    .map(|d| json!({"disk_state": d, "replication_states": repl}));
                json!({
                    "volume_number": vd.number,
                    "storage_pool_name": r.pool,
                    "provider_kind": provider,
                    "device_path": format!("/dev/drbd{}", vd.minor),
                    "allocated_size_kib": if r.diskless { None } else { Some(vd.size_kib.saturating_add(4)) },
                    "usable_size_kib": vd.size_kib,
                    "flags": [],
                    "state": state,
                    "uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{}/{}", r.uuid, vd.number).as_bytes()).to_string(),
                    "layer_data_list": [
                        {"type": "DRBD", "data": {"device_path": format!("/dev/drbd{}", vd.minor), "disk_state": disk_state, "usable_size_kib": vd.size_kib}},
                        {"type": "STORAGE", "data": {"usable_size_kib": vd.size_kib, "disk_state": if r.diskless { None } else { Some("[]") } }}
                    ],
                })
            })
            .collect();
        v["volumes"] = Value::Array(vols);
        v
    }

    /// `Snapshot` as the server renders it. Before REST API 1.24 a snapshot had one property
    /// container, a copy of the resource definition's properties, shown as `props`; 1.24
    /// (server 1.30.0, linstor-server commit 7cddef55f "Props: Split Snap- from
    /// Resource-properties") split it into `snapshot_definition_props` and
    /// `resource_definition_props` and kept `props` as both squashed (resource first).
    pub fn snapshot_json(&self, rd: &ResourceDefinition, s: &Snapshot) -> Value {
        let mut squashed = s.rd_props.clone();
        squashed.extend(s.snapshot_props.clone());
        let split = self.rest_api >= (1, 24);
        json!({
            "name": s.name,
            "resource_name": rd.name,
            "nodes": s.nodes,
            "props": squashed,
            "snapshot_definition_props": if split { Some(&s.snapshot_props) } else { None },
            "resource_definition_props": if split { Some(&s.rd_props) } else { None },
            "flags": s.flags,
            "uuid": s.uuid,
            "volume_definitions": s.volumes.iter().map(|(nr, size)| json!({"volume_number": nr, "size_kib": size})).collect::<Vec<_>>(),
            "snapshots": s.nodes.iter().map(|n| json!({
                "snapshot_name": s.name,
                "node_name": n,
                "create_timestamp": s.create_timestamp,
                "flags": [],
                "uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{}/{}", s.uuid, n).as_bytes()).to_string(),
                "snapshot_volumes": s.volumes.iter().map(|(nr, _)| json!({"vlm_nr": nr, "state": "Complete"})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}
