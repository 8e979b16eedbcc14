//! Nodes, storage pools, resources (manual and autoplaced) and the resources view.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use std::time::Instant;

use super::LinstorSim;
use super::api::{self, AutoSelectFilter};
use super::defs::{body, put_body, rd_not_found, tri};
use super::placement::{self, Plan, PlanError};
use super::rc::{self, *};
use super::reply::{Rc, now_millis, ok_json};
use super::routes::{P, Query, S, parse_body, respond, too_new_field};
use super::state::{DFLT_DISKLESS_POOL, Resource, World, new_uuid};
use super::validate::apply_props_modify;
use super::validate::{check_props, key, props_match};

fn node_not_found(name: &str, op: u64) -> Rc {
    Rc::new(
        rc::error(op, MASK_NODE, FAIL_NOT_FOUND_NODE),
        format!("Node '{name}' not found."),
    )
    .obj("Node", name)
}

// ---- nodes and pools --------------------------------------------------------------------------

pub async fn list_nodes(S(sim): S<LinstorSim>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let names: Vec<String> = q.all("nodes").iter().map(|n| key(n)).collect();
    let props = q.props();
    let w = sim.read();
    let items: Vec<Value> = w
        .nodes
        .iter()
        .filter(|(k, _)| names.is_empty() || names.contains(k))
        .filter(|(_, n)| props_match(&n.cfg.props, &props))
        .map(|(_, n)| w.node_json(n))
        .collect();
    ok_json(Value::Array(q.page(items)))
}

pub async fn get_node(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let w = sim.read();
    match w.nodes.get(&key(&name)) {
        Some(n) => ok_json(w.node_json(n)),
        None => respond(StatusCode::OK, vec![node_not_found(&name, 0)]),
    }
}

/// `PUT /v1/nodes/{node}/evacuate`: the node is flagged `EVACUATE`, and so is each of its
/// resources; autoplace then neither counts those replicas nor places new ones there (see
/// `placement`). linstor-server `CtrlNodeApiCallHandler` (evacuate) with the flags of
/// `core/objects/Node.java` / `Resource.java`. Not modelled: the server's own follow-up (it
/// re-places per the resource group and later deletes the evacuated replicas); an evacuated
/// replica stays until the node is restored or lost.
pub async fn evacuate_node(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let op = MASK_MOD;
    let mut w = sim.write();
    let nk = key(&name);
    let Some(n) = w.nodes.get_mut(&nk) else {
        return respond(StatusCode::OK, vec![node_not_found(&name, op)]);
    };
    if !n.flags.iter().any(|f| f == "EVACUATE") {
        n.flags.push("EVACUATE".into());
    }
    for rd in w.rds.values_mut() {
        if let Some(r) = rd.resources.get_mut(&nk)
            && !r.flags.iter().any(|f| f == "EVACUATE")
        {
            r.flags.push("EVACUATE".into());
        }
    }
    respond(
        StatusCode::OK,
        vec![
            Rc::new(
                rc::success(op, MASK_NODE, MODIFIED),
                format!("Node '{name}' is being evacuated"),
            )
            .obj("Node", &name),
        ],
    )
}

/// `PUT /v1/nodes/{node}/restore`: clears the node's `EVACUATE`/`EVICTED`, and on its resources
/// `EVICTED` (back to `INACTIVE` when it was `INACTIVE_BEFORE_EVICTION`) and `EVACUATE`; a
/// node that is neither answers a bare error ("is neither evicted nor evacuated").
/// linstor-server `CtrlNodeApiCallHandler.restoreNode` (default: resources kept).
pub async fn restore_node(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let op = MASK_MOD;
    let mut w = sim.write();
    let nk = key(&name);
    let Some(n) = w.nodes.get_mut(&nk) else {
        return respond(StatusCode::OK, vec![node_not_found(&name, op)]);
    };
    if !n.flags.iter().any(|f| f == "EVACUATE" || f == "EVICTED") {
        return respond(
            StatusCode::OK,
            vec![Rc::new(
                rc::MASK_ERROR as i64,
                format!("Node '{name}' is neither evicted nor evacuated."),
            )],
        );
    }
    n.flags.retain(|f| f != "EVACUATE" && f != "EVICTED");
    for rd in w.rds.values_mut() {
        if let Some(r) = rd.resources.get_mut(&nk) {
            if r.flags.iter().any(|f| f == "EVICTED") {
                r.flags.retain(|f| f != "EVICTED");
                if r.flags.iter().any(|f| f == "INACTIVE_BEFORE_EVICTION") {
                    r.flags.retain(|f| f != "INACTIVE_BEFORE_EVICTION");
                    r.flags.push("INACTIVE".into());
                }
            }
            r.flags.retain(|f| f != "EVACUATE");
        }
    }
    respond(
        StatusCode::OK,
        vec![Rc::new(
            rc::success(op, MASK_NODE, 0),
            format!("Successfully restored node {name}"),
        )],
    )
}

/// `DELETE /v1/nodes/{node}/lost`: removes a node that cannot come back, with its resources and
/// snapshots, at once; refused with `FAIL_EXISTS_NODE_CONN` while its satellite is connected,
/// and a warning when the node does not exist. linstor-server
/// `CtrlNodeLostApiCallHandler.lostNodeInTransaction` @01145f51.
pub async fn node_lost(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let op = MASK_DEL;
    let mut w = sim.write();
    let nk = key(&name);
    let Some(n) = w.nodes.get(&nk) else {
        return respond(
            StatusCode::OK,
            vec![Rc::new(
                rc::warn(op, MASK_NODE, WARN_NOT_FOUND),
                format!("Deletion of node '{name}' had no effect."),
            )],
        );
    };
    if n.online {
        return respond(
            StatusCode::OK,
            vec![Rc::new(
                rc::error(op, MASK_NODE, FAIL_EXISTS_NODE_CONN),
                format!("Node '{name}' still connected, please use the 'DelNode' api."),
            )],
        );
    }
    for rd in w.rds.values_mut() {
        rd.resources.remove(&nk);
        for s in rd.snapshots.values_mut() {
            s.nodes.retain(|x| key(x) != nk);
        }
    }
    w.nodes.remove(&nk);
    respond(
        StatusCode::OK,
        vec![Rc::new(
            rc::success(op, MASK_NODE, DELETED),
            format!("Node '{name}' deleted."),
        )],
    )
}

fn pools_json(w: &World, q: &Query, only_node: Option<&str>) -> Vec<Value> {
    let nodes: Vec<String> = q.all("nodes").iter().map(|n| key(n)).collect();
    let pools: Vec<String> = q.all("storage_pools").iter().map(|n| key(n)).collect();
    let props = q.props();
    let mut out = Vec::new();
    for (nk, n) in &w.nodes {
        if only_node.is_some_and(|o| o != nk) || (!nodes.is_empty() && !nodes.contains(nk)) {
            continue;
        }
        for p in &n.cfg.pools {
            if !pools.is_empty() && !pools.contains(&key(&p.name)) {
                continue;
            }
            let v = w.pool_json(nk, n, p);
            let pprops: api::Props = v
                .get("props")
                .and_then(|x| serde_json::from_value(x.clone()).ok())
                .unwrap_or_default();
            if props_match(&pprops, &props) {
                out.push(v);
            }
        }
    }
    out
}

pub async fn node_pools(S(sim): S<LinstorSim>, P(name): P<String>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let w = sim.read();
    if !w.nodes.contains_key(&key(&name)) {
        return respond(StatusCode::OK, vec![node_not_found(&name, 0)]);
    }
    ok_json(Value::Array(q.page(pools_json(&w, &q, Some(&key(&name))))))
}

pub async fn view_pools(S(sim): S<LinstorSim>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let w = sim.read();
    let pools = pools_json(&w, &q, None);
    // Without `cached=true` the controller asks every satellite for free space first.
    let satellites = if q.flag("cached") {
        0
    } else {
        w.nodes.values().filter(|n| n.online).count() as u64
    };
    sim.inner.stats.add_work(pools.len() as u64, satellites);
    ok_json(Value::Array(q.page(pools)))
}

// ---- resources --------------------------------------------------------------------------------

pub async fn list_resources(S(sim): S<LinstorSim>, P(rd): P<String>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let w = sim.read();
    let Some(d) = w.rds.get(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, 0)]);
    };
    let items: Vec<Value> = d
        .resources
        .values()
        .map(|r| w.resource_json(d, r))
        .collect();
    ok_json(Value::Array(q.page(items)))
}

pub async fn get_resource(S(sim): S<LinstorSim>, P((rd, node)): P<(String, String)>) -> Response {
    let w = sim.read();
    let Some(d) = w.rds.get(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, 0)]);
    };
    match d.resources.get(&key(&node)) {
        Some(r) => ok_json(w.resource_json(d, r)),
        None => respond(
            StatusCode::OK,
            vec![Rc::new(
                rc::error(0, MASK_RSC, FAIL_NOT_FOUND_RSC),
                format!("Resource '{}' on node '{node}' not found.", d.name),
            )],
        ),
    }
}

fn is_diskless_flag(f: &str) -> bool {
    matches!(f, "DISKLESS" | "DRBD_DISKLESS" | "NVME_INITIATOR")
}

/// Creates one resource after all checks; returns its success entries.
fn create_one(
    w: &mut World,
    rd_name: &str,
    node: &str,
    req: api::ResourceCreate,
) -> Result<Vec<Rc>, Rc> {
    let rsc = req.resource.unwrap_or(api::Resource {
        name: None,
        node_name: None,
        props: None,
        effective_props: None,
        flags: None,
        layer_object: None,
        state: None,
        uuid: None,
        create_timestamp: None,
    });
    let props = rsc.props.unwrap_or_default();
    check_props(&props, MASK_CRT, MASK_RSC)?;
    let rd_key = key(rd_name);
    let rd = w
        .rds
        .get(&rd_key)
        .ok_or_else(|| rd_not_found(rd_name, MASK_CRT))?;
    let rd_display = rd.name.clone();
    let nk = key(node);
    let n = w
        .nodes
        .get(&nk)
        .ok_or_else(|| node_not_found(node, MASK_CRT))?;
    let node_display = n.cfg.name.clone();
    let online = n.online;
    if rd.resources.contains_key(&nk) {
        return Err(Rc::new(
            rc::error(MASK_CRT, MASK_RSC, FAIL_EXISTS_RSC),
            format!(
                "A resource with the name '{rd_display}' already exists on node '{node_display}'."
            ),
        )
        .obj("RscDfn", &rd_display)
        .obj("Node", &node_display));
    }
    let flags: Vec<String> = rsc.flags.unwrap_or_default();
    let diskless = flags.iter().any(|f| is_diskless_flag(f));
    let pool_name = props.get("StorPoolName").cloned().unwrap_or_else(|| {
        if diskless {
            DFLT_DISKLESS_POOL.to_string()
        } else {
            "DfltStorPool".to_string()
        }
    });
    let pool = n
        .cfg
        .pools
        .iter()
        .find(|p| key(&p.name) == key(&pool_name))
        .cloned();
    let Some(pool) = pool else {
        let code = if pool_name == "DfltStorPool" {
            FAIL_NOT_FOUND_DFLT_STOR_POOL
        } else {
            FAIL_NOT_FOUND_STOR_POOL
        };
        return Err(Rc::new(
            rc::error(MASK_CRT, MASK_RSC, code),
            format!("Storage pool '{pool_name}' not found on node '{node_display}'."),
        )
        .obj("Node", &node_display));
    };
    let diskless = diskless || pool.provider_kind == "DISKLESS";
    let need = rd.total_size_kib();
    if !diskless && w.free_kib(&nk, &pool) < need {
        return Err(Rc::new(
            rc::error(MASK_CRT, MASK_RSC, FAIL_NOT_ENOUGH_FREE_SPACE),
            format!(
                "Not enough free space in storage pool '{}' on node '{node_display}'.",
                pool.name
            ),
        ));
    }
    let layers: Vec<String> = req
        .layer_list
        .map(|l| l.iter().map(|x| x.as_str().to_string()).collect())
        .unwrap_or_else(|| rd.layers.clone());
    let node_id = req.drbd_node_id.unwrap_or_else(|| {
        (0..)
            .find(|id| !rd.resources.values().any(|r| r.node_id == *id))
            .unwrap_or(0)
    });
    let sync_delay = w.sync_delay;
    let has_peers = rd.resources.values().any(|r| r.is_diskful());
    let mut stored_flags: Vec<String> =
        flags.into_iter().filter(|f| !is_diskless_flag(f)).collect();
    if diskless {
        stored_flags.push("DRBD_DISKLESS".to_string());
    }
    let r = Resource {
        node: node_display.clone(),
        props,
        flags: stored_flags,
        uuid: new_uuid(),
        create_timestamp: now_millis(),
        pool: pool.name.clone(),
        diskless,
        in_use: false,
        node_id,
        layers,
        synced_at: if has_peers {
            Instant::now() + sync_delay
        } else {
            Instant::now()
        },
        disk_state_override: None,
    };
    if let Some(rd) = w.rds.get_mut(&rd_key) {
        rd.resources.insert(nk, r);
    }
    let mut out = vec![
        Rc::new(
            rc::success(MASK_CRT, MASK_RSC, CREATED),
            format!("New resource '{rd_display}' on node '{node_display}' registered."),
        )
        .obj("RscDfn", &rd_display)
        .obj("Node", &node_display),
    ];
    if !online {
        out.push(
            Rc::new(
                rc::warn(MASK_CRT, MASK_RSC, WARN_NOT_CONNECTED),
                format!("No active connection to satellite '{node_display}'."),
            )
            .details("The controller will deploy the resource when the satellite connects."),
        );
    }
    Ok(out)
}

pub async fn create_resources(S(sim): S<LinstorSim>, P(rd): P<String>, body: Bytes) -> Response {
    let reqs: Vec<api::ResourceCreate> = body!(sim, body);
    if reqs.iter().any(|r| r.drbd_client.is_some()) && !sim.api_at_least(1, 28) {
        return too_new_field("drbd_client");
    }
    let mut w = sim.write();
    if !w.rds.contains_key(&key(&rd)) {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, MASK_CRT)]);
    }
    // One transaction: if any resource fails, none of this request's resources stay.
    let mut rcs = Vec::new();
    let mut created: Vec<String> = Vec::new();
    for req in reqs {
        let node = req
            .resource
            .as_ref()
            .and_then(|r| r.node_name.clone())
            .unwrap_or_default();
        match create_one(&mut w, &rd, &node, req) {
            Ok(ok) => {
                rcs.extend(ok);
                created.push(key(&node));
            }
            Err(e) => {
                if let Some(d) = w.rds.get_mut(&key(&rd)) {
                    for nk in &created {
                        d.resources.remove(nk);
                    }
                }
                return respond(StatusCode::CREATED, vec![e]);
            }
        }
    }
    respond(StatusCode::CREATED, rcs)
}

pub async fn create_resource_on(
    S(sim): S<LinstorSim>,
    P((rd, node)): P<(String, String)>,
    body: Bytes,
) -> Response {
    let req: api::ResourceCreate = if body.is_empty() {
        api::ResourceCreate {
            resource: None,
            layer_list: None,
            drbd_node_id: None,
            drbd_tcp_port_count: None,
            drbd_tcp_ports: None,
            snap_names: None,
            copy_all_snaps: None,
            drbd_client: None,
        }
    } else {
        body!(sim, body)
    };
    if req.drbd_client.is_some() && !sim.api_at_least(1, 28) {
        return too_new_field("drbd_client");
    }
    let mut w = sim.write();
    let rcs = tri!(create_one(&mut w, &rd, &node, req), StatusCode::CREATED);
    respond(StatusCode::CREATED, rcs)
}

pub async fn delete_resource(
    S(sim): S<LinstorSim>,
    P((rd, node)): P<(String, String)>,
) -> Response {
    let mut w = sim.write();
    let nk = key(&node);
    let Some(d) = w.rds.get_mut(&key(&rd)) else {
        return respond(
            StatusCode::OK,
            vec![Rc::new(
                rc::warn(MASK_DEL, MASK_RSC, WARN_NOT_FOUND),
                format!("Resource definition '{rd}' not found."),
            )],
        );
    };
    let display = d.name.clone();
    let Some(r) = d.resources.get(&nk) else {
        return respond(
            StatusCode::OK,
            vec![
                Rc::new(
                    rc::warn(MASK_DEL, MASK_RSC, WARN_NOT_FOUND),
                    format!("Resource '{display}' on node '{node}' not found."),
                )
                .obj("RscDfn", &display)
                .obj("Node", &node),
            ],
        );
    };
    let node_display = r.node.clone();
    if r.in_use {
        return respond(
            StatusCode::OK,
            vec![
                Rc::new(
                    rc::error(MASK_DEL, MASK_RSC, FAIL_IN_USE),
                    format!("Resource '{display}' on node '{node_display}' is still in use."),
                )
                .obj("RscDfn", &display)
                .obj("Node", &node_display),
            ],
        );
    }
    let last_diskful = r.is_diskful() && d.diskful_count() == 1;
    let has_diskless = d.resources.values().any(|x| x.diskless);
    if last_diskful && has_diskless {
        return respond(StatusCode::OK, vec![Rc::new(
            rc::error(MASK_DEL, MASK_RSC, FAIL_IN_USE),
            format!("Last resource of '{display}' with disk still has diskless resources attached."),
        ).correction("Delete the diskless resources first.")]);
    }
    d.resources.remove(&nk);
    respond(
        StatusCode::OK,
        vec![
            Rc::new(
                rc::success(MASK_DEL, MASK_RSC, DELETED),
                format!("Resource '{display}' on node '{node_display}' deleted."),
            )
            .obj("RscDfn", &display)
            .obj("Node", &node_display),
        ],
    )
}

// ---- autoplace --------------------------------------------------------------------------------

pub fn plan_error_rc(rd: &str, e: PlanError) -> Rc {
    match e {
        PlanError::InvalidPlaceCount(n) => Rc::new(
            rc::error(MASK_CRT, MASK_RSC, FAIL_INVLD_PLACE_COUNT),
            format!("Invalid place count {n}."),
        ),
        PlanError::NotEnoughNodes {
            wanted,
            found,
            details,
        } => Rc::new(
            rc::error(MASK_CRT, MASK_RSC, FAIL_NOT_ENOUGH_NODES),
            "Not enough available nodes",
        )
        .details(format!(
            "Resource '{rd}': wanted {wanted} diskful replicas, only {found} possible. {details}"
        ))
        .obj("RscDfn", rd),
    }
}

/// Runs autoplace for `rd` (which must exist) with an already merged filter.
pub fn autoplace_in(
    w: &mut World,
    rd: &str,
    filter: &AutoSelectFilter,
    diskless_on_remaining: bool,
    layer_list: Option<Vec<String>>,
) -> Vec<Rc> {
    let rd_key = key(rd);
    let Some(d) = w.rds.get(&rd_key) else {
        return vec![rd_not_found(rd, MASK_CRT)];
    };
    let display = d.name.clone();
    let plan = match placement::plan(w, Some(&rd_key), &d.resources, filter, d.total_size_kib()) {
        Ok(p) => p,
        Err(e) => return vec![plan_error_rc(&display, e)],
    };
    let layers = layer_list
        .or_else(|| filter.layer_stack.clone())
        .filter(|l| !l.is_empty());
    let mut rcs = Vec::new();
    match plan {
        Plan::AlreadyDeployed { existing, wanted } => {
            let msg = if existing > wanted {
                format!(
                    "Resource '{display}' is already deployed on {existing} nodes, more than the {wanted} requested. Autoplace never deletes resources; the surplus would have to be deleted manually."
                )
            } else {
                format!("Resource '{display}' was already deployed on {existing} nodes. Skipping.")
            };
            rcs.push(
                Rc::new(rc::warn(MASK_CRT, MASK_RSC, WARN_RSC_ALREADY_DEPLOYED), msg)
                    .obj("RscDfn", &display),
            );
        }
        Plan::Place(picks) => {
            let count = picks.len();
            for (nk, pool) in picks {
                let node = w.node_display(&nk);
                let req = resource_request(pool, Vec::new(), layers.clone());
                match create_one(w, &display, &node, req) {
                    Ok(ok) => rcs.extend(ok),
                    Err(e) => return vec![e],
                }
            }
            rcs.push(
                Rc::new(
                    rc::success(MASK_CRT, MASK_RSC, CREATED),
                    format!("Resource '{display}' successfully autoplaced on {count} nodes"),
                )
                .obj("RscDfn", &display),
            );
        }
    }
    if diskless_on_remaining {
        let remaining: Vec<String> = w
            .nodes
            .iter()
            .filter(|(nk, n)| {
                n.online
                    && n.cfg.pools.iter().any(|p| p.provider_kind == "DISKLESS")
                    && w.rds
                        .get(&rd_key)
                        .is_some_and(|d| !d.resources.contains_key(*nk))
            })
            .map(|(_, n)| n.cfg.name.clone())
            .collect();
        for node in remaining {
            let req = resource_request(
                DFLT_DISKLESS_POOL.to_string(),
                vec!["DRBD_DISKLESS".to_string()],
                layers.clone(),
            );
            if let Ok(ok) = create_one(w, &display, &node, req) {
                rcs.extend(ok);
            }
        }
    }
    rcs
}

fn resource_request(
    pool: String,
    flags: Vec<String>,
    layers: Option<Vec<String>>,
) -> api::ResourceCreate {
    let mut props = api::Props::new();
    props.insert("StorPoolName".to_string(), pool);
    let layer_list = layers.map(|l| {
        l.iter()
            .filter_map(|x| serde_json::from_value::<api::LayerType>(Value::String(x.clone())).ok())
            .collect()
    });
    api::ResourceCreate {
        resource: Some(api::Resource {
            name: None,
            node_name: None,
            props: Some(props),
            effective_props: None,
            flags: Some(flags),
            layer_object: None,
            state: None,
            uuid: None,
            create_timestamp: None,
        }),
        layer_list,
        drbd_node_id: None,
        drbd_tcp_port_count: None,
        drbd_tcp_ports: None,
        snap_names: None,
        copy_all_snaps: None,
        drbd_client: None,
    }
}

pub async fn autoplace(S(sim): S<LinstorSim>, P(rd): P<String>, body: Bytes) -> Response {
    let req: api::AutoPlaceRequest = body!(sim, body);
    let mut w = sim.write();
    let Some(d) = w.rds.get(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, MASK_CRT)]);
    };
    let Some(sf) = req.select_filter else {
        drop(w);
        let id = sim
            .write()
            .error_report("java.lang.NullPointerException: select_filter is null".to_string());
        let rc = Rc::new(
            (FAIL_UNKNOWN_ERROR | MASK_ERROR) as i64,
            "An unknown error occurred: 'select_filter' is required.",
        )
        .report(id);
        return respond(StatusCode::OK, vec![rc]);
    };
    let rg_filter = w
        .rgs
        .get(&key(&d.rg))
        .map(|rg| rg.select_filter.clone())
        .unwrap_or_default();
    let filter = rg_filter.merged_with(&sf);
    let dor = req
        .diskless_on_remaining
        .or(filter.diskless_on_remaining)
        .unwrap_or(false);
    let layers = req
        .layer_list
        .map(|l| l.iter().map(|x| x.as_str().to_string()).collect());
    let rcs = autoplace_in(&mut w, &rd, &filter, dor, layers);
    respond(StatusCode::CREATED, rcs)
}

// ---- view -------------------------------------------------------------------------------------

pub async fn view_resources(S(sim): S<LinstorSim>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let nodes: Vec<String> = q.all("nodes").iter().map(|n| key(n)).collect();
    let rds: std::collections::HashSet<String> =
        q.all("resources").iter().map(|n| key(n)).collect();
    let pools: Vec<String> = q.all("storage_pools").iter().map(|n| key(n)).collect();
    let props = q.props();
    let w = sim.read();
    let mut items = Vec::new();
    for (rk, d) in &w.rds {
        if !rds.is_empty() && !rds.contains(rk) {
            continue;
        }
        for (nk, r) in &d.resources {
            if (!nodes.is_empty() && !nodes.contains(nk))
                || (!pools.is_empty() && !pools.contains(&key(&r.pool)))
                || !props_match(&r.props, &props)
            {
                continue;
            }
            items.push((d, r));
        }
    }
    // Cost (linstor-server `View.viewResources` → `CtrlVlmListApiCallHandler.listVlms`,
    // @3e9306a9): `VlmAllocatedFetcherProto` first asks every node with thin volumes in the
    // filter for their allocated sizes, then `assembleList` streams over *all* resource
    // definitions, applying the filters, and builds every matching resource; only then does
    // `listVolumesApiCallRcWithToResponse` apply `limit`/`offset` (no cap on `limit`).
    let thin: Vec<&(&super::state::ResourceDefinition, &super::state::Resource)> = items
        .iter()
        .filter(|(_, r)| r.is_diskful() && is_thin(&w, r))
        .collect();
    let satellites: std::collections::BTreeSet<String> =
        thin.iter().map(|(_, r)| key(&r.node)).collect();
    let thin_volumes: u64 = thin.iter().map(|(d, _)| d.vds.len() as u64).sum();
    sim.inner.stats.add_work(
        w.rds.len() as u64 + items.len() as u64 + thin_volumes,
        satellites.len() as u64,
    );
    let page = q.page(items).into_iter();
    ok_json(Value::Array(
        page.map(|(d, r)| w.resource_view_json(d, r)).collect(),
    ))
}

/// Whether a replica's pool is thin-provisioned (only those are asked for allocated sizes).
fn is_thin(w: &super::state::World, r: &super::state::Resource) -> bool {
    w.nodes
        .get(&key(&r.node))
        .and_then(|n| n.cfg.pools.iter().find(|p| p.name == r.pool))
        .is_some_and(|p| p.provider_kind.ends_with("_THIN"))
}

pub async fn modify_resource(
    S(sim): S<LinstorSim>,
    P((rd, node)): P<(String, String)>,
    body: Bytes,
) -> Response {
    let req: api::ResourceModify = put_body!(sim, body);
    if req.drbd_client.is_some() && !sim.api_at_least(1, 28) {
        return super::routes::put_too_new_field(&sim, "drbd_client");
    }
    if let Some(ov) = &req.override_props {
        tri!(check_props(ov, MASK_MOD, MASK_RSC), StatusCode::OK);
    }
    let mut w = sim.write();
    let Some(d) = w.rds.get_mut(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, MASK_MOD)]);
    };
    let display = d.name.clone();
    let Some(r) = d.resources.get_mut(&key(&node)) else {
        return respond(
            StatusCode::OK,
            vec![Rc::new(
                rc::error(MASK_MOD, MASK_RSC, FAIL_NOT_FOUND_RSC),
                format!("Resource '{display}' on node '{node}' not found."),
            )],
        );
    };
    apply_props_modify(
        &mut r.props,
        req.override_props.as_ref(),
        req.delete_props.as_ref(),
        req.delete_namespaces.as_ref(),
    );
    let node_display = r.node.clone();
    respond(
        StatusCode::OK,
        vec![
            Rc::new(
                rc::success(MASK_MOD, MASK_RSC, MODIFIED),
                format!("Resource '{display}' on node '{node_display}' modified."),
            )
            .obj("RscDfn", &display)
            .obj("Node", &node_display),
        ],
    )
}

/// `{"synced_on_all": bool}`: every diskful replica on an online node is UpToDate.
pub async fn sync_status(S(sim): S<LinstorSim>, P(rd): P<String>) -> Response {
    let w = sim.read();
    let Some(d) = w.rds.get(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, 0)]);
    };
    let synced = d.resources.values().filter(|r| r.is_diskful()).all(|r| {
        let v = w.resource_view_json(d, r);
        v["volumes"].as_array().is_some_and(|vols| {
            vols.iter()
                .all(|vol| vol["state"]["disk_state"] == "UpToDate")
        })
    });
    ok_json(serde_json::json!({ "synced_on_all": synced }))
}
