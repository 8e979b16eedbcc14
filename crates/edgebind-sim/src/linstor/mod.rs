//! A stateful LINSTOR controller simulator (REST API v1).
//!
//! It keeps resource groups, resource/volume definitions, resources and snapshots in memory and
//! reproduces the real controller's client-visible quirks (HTTP 500 for "already exists",
//! 200 + WARN_NOT_FOUND for deleting a missing object, strict request JSON, case-insensitive
//! names, property whitelist, autoplace that never removes replicas). Faults can be injected.

pub mod api;
mod defs;
pub mod faults;
pub mod placement;
pub mod rc;
pub mod reply;
mod resources;
mod routes;
mod server;
mod snapshots;
pub mod state;
pub mod validate;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub use faults::{CallStats, Exchange, FaultHandle, ServerWork};
pub use server::{RunningSim, SimulateLinstorArgs, run, run_standalone};
pub use state::{SimNode, SimPool, SimResourceGroup};

use faults::ExchangeLog;
use state::World;
use validate::key;

/// What the simulated cluster looks like and how fast it answers.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: Vec<SimNode>,
    /// Reported by `GET /v1/controller/version`, e.g. "1.33.1".
    pub controller_version: String,
    /// e.g. "1.27.0" (server 1.33.x).
    pub rest_api_version: String,
    /// Added to every call.
    pub latency: Duration,
    /// Resource groups that exist from the start, besides LINSTOR's own `DfltRscGrp` (an
    /// operator's install, e.g. Piraeus', defines its own).
    pub resource_groups: Vec<SimResourceGroup>,
    /// New diskful replicas that join existing ones report Inconsistent/SyncTarget until this
    /// has passed; zero means UpToDate at once.
    pub sync_delay: Duration,
}

impl SimConfig {
    /// Three storage nodes `node-a/b/c` in zones `zone-a/b/c`, each with an LVM_THIN pool "thin"
    /// of 500 GiB plus `DfltDisklessStorPool`, and a diskless-only node `node-d` without a zone.
    pub fn realistic() -> Self {
        SimConfig {
            nodes: vec![
                SimNode::new("node-a", Some("zone-a"), 500, "10.0.0.11"),
                SimNode::new("node-b", Some("zone-b"), 500, "10.0.0.12"),
                SimNode::new("node-c", Some("zone-c"), 500, "10.0.0.13"),
                SimNode::new("node-d", None, 0, "10.0.0.14"),
            ],
            controller_version: "1.33.1".to_string(),
            rest_api_version: "1.27.0".to_string(),
            latency: Duration::ZERO,
            sync_delay: Duration::ZERO,
            resource_groups: Vec::new(),
        }
    }

    /// [`SimConfig::realistic`] with the resource group the examples name: `replicated`, two
    /// replicas in pool `thin`, volume group 0. What `plan` and `edgebind simulate linstor` run.
    pub fn with_example_groups() -> Self {
        SimConfig {
            resource_groups: vec![SimResourceGroup {
                name: "replicated".into(),
                place_count: 2,
                storage_pools: vec!["thin".into()],
            }],
            ..SimConfig::realistic()
        }
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: SimConfig,
    world: RwLock<World>,
    pub(crate) faults: FaultHandle,
    pub(crate) stats: CallStats,
    pub(crate) exchanges: ExchangeLog,
}

/// The simulator; clones share state.
#[derive(Clone)]
pub struct LinstorSim {
    pub(crate) inner: Arc<Inner>,
}

impl LinstorSim {
    pub fn new(cfg: SimConfig) -> Self {
        let mut world = World::new(&cfg.nodes, &cfg.resource_groups, cfg.sync_delay);
        world.rest_api = parse_api(&cfg.rest_api_version);
        LinstorSim {
            inner: Arc::new(Inner {
                cfg,
                world: RwLock::new(world),
                faults: FaultHandle::default(),
                stats: CallStats::default(),
                exchanges: ExchangeLog::default(),
            }),
        }
    }

    /// The REST API as an axum router (usable in-process with `tower::ServiceExt::oneshot`).
    pub fn router(&self) -> axum::Router {
        routes::router(self.clone())
    }

    /// Binds 127.0.0.1 on a free port and serves until the returned handle is stopped or dropped.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<RunningSim> {
        server::start(LinstorSim::new(cfg), "127.0.0.1:0".parse()?).await
    }

    /// Serves this simulator (keeping its state) on `listen`.
    pub async fn serve_on(&self, listen: std::net::SocketAddr) -> anyhow::Result<RunningSim> {
        server::start(self.clone(), listen).await
    }

    pub fn faults(&self) -> FaultHandle {
        self.inner.faults.clone()
    }

    pub fn stats(&self) -> CallStats {
        self.inner.stats.clone()
    }

    pub fn record_exchanges(&self, on: bool) {
        self.inner.exchanges.set(on);
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.inner.exchanges.items()
    }

    /// True when the simulated REST API version is at least `major.minor`: newer request fields
    /// are unknown to older servers and must be refused like any unknown field.
    pub fn api_at_least(&self, major: u32, minor: u32) -> bool {
        parse_api(&self.inner.cfg.rest_api_version) >= (major, minor)
    }

    /// Read access to the model; the controller-wide lock (never held across an await).
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, World> {
        self.inner.world.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Write access: mutations serialise on it like the controller's map locks.
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, World> {
        self.inner.world.write().unwrap_or_else(|e| e.into_inner())
    }

    // ---- inspection (JSON as the corresponding GET returns it) -------------------------------

    pub fn resource_definition(&self, name: &str) -> Option<serde_json::Value> {
        let w = self.read();
        w.rds.get(&key(name)).map(|rd| pruned(w.rd_json(rd, true)))
    }

    pub fn resource_definitions(&self) -> Vec<serde_json::Value> {
        let w = self.read();
        w.rds
            .values()
            .map(|rd| pruned(w.rd_json(rd, true)))
            .collect()
    }

    /// Resources of `rd` as `GET /v1/view/resources` shows them (with volumes and state).
    pub fn resources(&self, rd: &str) -> Vec<serde_json::Value> {
        let w = self.read();
        w.rds
            .get(&key(rd))
            .map(|d| {
                d.resources
                    .values()
                    .map(|r| pruned(w.resource_view_json(d, r)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn snapshots(&self, rd: &str) -> Vec<serde_json::Value> {
        let w = self.read();
        w.rds
            .get(&key(rd))
            .map(|d| {
                d.snapshots
                    .values()
                    .map(|s| pruned(w.snapshot_json(d, s)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn volume_definitions(&self, rd: &str) -> Vec<serde_json::Value> {
        let w = self.read();
        w.rds
            .get(&key(rd))
            .map(|d| d.vds.values().map(|v| pruned(World::vd_json(v))).collect())
            .unwrap_or_default()
    }

    pub fn resource_groups(&self) -> Vec<serde_json::Value> {
        let w = self.read();
        w.rgs.values().map(|rg| pruned(w.rg_json(rg))).collect()
    }

    /// Free KiB in `pool` on `node` (None if either is unknown).
    pub fn free_kib(&self, node: &str, pool: &str) -> Option<u64> {
        let w = self.read();
        let nk = key(node);
        let n = w.nodes.get(&nk)?;
        let p = n.cfg.pools.iter().find(|p| p.name == pool)?;
        Some(w.free_kib(&nk, p))
    }

    // ---- scenario helpers --------------------------------------------------------------------

    /// Takes a node offline (its resources lose `state`, autoplace skips it) or back online.
    pub fn set_node_online(&self, node: &str, online: bool) -> bool {
        match self.write().nodes.get_mut(&key(node)) {
            Some(n) => {
                n.online = online;
                true
            }
            None => false,
        }
    }

    /// Registers a satellite (again), as `linstor node create` does once it connects: online,
    /// no flags, no resources. False when a node of that name exists.
    pub fn add_node(&self, node: state::SimNode) -> bool {
        let mut w = self.write();
        let nk = key(&node.name);
        if w.nodes.contains_key(&nk) {
            return false;
        }
        w.nodes.insert(
            nk,
            state::Node {
                cfg: node,
                uuid: state::new_uuid(),
                online: true,
                flags: Vec::new(),
            },
        );
        true
    }

    /// The flags of a node (`EVACUATE`, `EVICTED`), None for an unknown node.
    pub fn node_flags(&self, node: &str) -> Option<Vec<String>> {
        self.read().nodes.get(&key(node)).map(|n| n.flags.clone())
    }

    /// Forces the disk state of every volume of `rd` on `node` (e.g. "Outdated", "Failed");
    /// None restores the computed state.
    pub fn set_disk_state(&self, rd: &str, node: &str, state: Option<&str>) -> bool {
        self.with_resource(rd, node, |r| {
            r.disk_state_override = state.map(str::to_string)
        })
    }

    /// Marks a replica as in use (promoted/mounted): deletes then fail with FAIL_IN_USE.
    pub fn set_in_use(&self, rd: &str, node: &str, in_use: bool) -> bool {
        self.with_resource(rd, node, |r| r.in_use = in_use)
    }

    /// Sets the flags of a replica, e.g. `["EVICTED"]` (the auto-evict task), `["EVACUATE"]`
    /// (`node evacuate`) or `["INACTIVE"]` (`resource deactivate`); the flag names are
    /// `Resource.Flags` of linstor-server (`core/objects/Resource.java`).
    pub fn set_resource_flags(&self, rd: &str, node: &str, flags: &[&str]) -> bool {
        self.with_resource(rd, node, |r| {
            r.flags = flags.iter().map(|f| f.to_string()).collect()
        })
    }

    /// Makes a replica report Inconsistent/SyncTarget for `for_how_long` from now.
    pub fn start_resync(&self, rd: &str, node: &str, for_how_long: Duration) -> bool {
        self.with_resource(rd, node, |r| r.synced_at = Instant::now() + for_how_long)
    }

    fn with_resource(&self, rd: &str, node: &str, f: impl FnOnce(&mut state::Resource)) -> bool {
        let mut w = self.write();
        match w
            .rds
            .get_mut(&key(rd))
            .and_then(|d| d.resources.get_mut(&key(node)))
        {
            Some(r) => {
                f(r);
                true
            }
            None => false,
        }
    }
}

/// "1.27.0" -> (1, 27).
fn parse_api(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn pruned(mut v: serde_json::Value) -> serde_json::Value {
    reply::prune(&mut v);
    v
}
