//! Snapshots: create, list, view, delete, and restore into another resource definition.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;

use super::LinstorSim;
use super::api;
use super::defs::{body, put_body, rd_not_found};
use super::rc::{self, *};
use super::reply::{Rc, now_millis, ok_json};
use super::routes::{P, Query, S, parse_body, respond};
use super::state::{Resource, Snapshot, VolumeDefinition, new_uuid};
use super::validate::{apply_props_modify, check_name, check_props, key};

fn snap_not_found(rd: &str, snap: &str, op: u64) -> Rc {
    Rc::new(
        rc::error(op, MASK_SNAPSHOT, FAIL_NOT_FOUND_SNAPSHOT_DFN),
        format!("Snapshot definition '{snap}' of resource '{rd}' not found."),
    )
    .obj("RscDfn", rd)
    .obj("SnapshotName", snap)
}

pub async fn list(S(sim): S<LinstorSim>, P(rd): P<String>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let w = sim.read();
    let Some(d) = w.rds.get(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, 0)]);
    };
    let items: Vec<Value> = d
        .snapshots
        .values()
        .map(|s| w.snapshot_json(d, s))
        .collect();
    ok_json(Value::Array(q.page(items)))
}

pub async fn get_one(S(sim): S<LinstorSim>, P((rd, snap)): P<(String, String)>) -> Response {
    let w = sim.read();
    let Some(d) = w.rds.get(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, 0)]);
    };
    match d.snapshots.get(&key(&snap)) {
        Some(s) => ok_json(w.snapshot_json(d, s)),
        None => respond(StatusCode::OK, vec![snap_not_found(&d.name, &snap, 0)]),
    }
}

pub async fn view(S(sim): S<LinstorSim>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let nodes: Vec<String> = q.all("nodes").iter().map(|n| key(n)).collect();
    let rds: std::collections::HashSet<String> =
        q.all("resources").iter().map(|n| key(n)).collect();
    let snaps: Vec<String> = q.all("snapshots").iter().map(|n| key(n)).collect();
    let w = sim.read();
    let mut items = Vec::new();
    for (rk, d) in &w.rds {
        if !rds.is_empty() && !rds.contains(rk) {
            continue;
        }
        for (sk, s) in &d.snapshots {
            if (!snaps.is_empty() && !snaps.contains(sk))
                || (!nodes.is_empty() && !s.nodes.iter().any(|n| nodes.contains(&key(n))))
            {
                continue;
            }
            items.push((d, s));
        }
    }
    // Cost: `View.listSnapshots` builds the whole list, then skips and limits it (@3e9306a9).
    sim.inner
        .stats
        .add_work(w.rds.len() as u64 + items.len() as u64, 0);
    let page = q.page(items).into_iter();
    ok_json(Value::Array(
        page.map(|(d, s)| w.snapshot_json(d, s)).collect(),
    ))
}

pub async fn create(S(sim): S<LinstorSim>, P(rd): P<String>, body: Bytes) -> Response {
    let req: api::SnapshotCreate = body!(sim, body);
    let name = req.name.clone().unwrap_or_default();
    if let Err(e) = check_name(
        &name,
        "snapshot",
        MASK_CRT,
        MASK_SNAPSHOT,
        FAIL_INVLD_SNAPSHOT_NAME,
    ) {
        return respond(StatusCode::CREATED, vec![e]);
    }
    // Snapshot-definition properties on create: the fields exist from REST API 1.24 (before,
    // Jackson refuses them: 400), but `Snapshots.createSnapshot` passes them on only from 1.26
    // (server 1.32.0, linstor-server commit 1dd6b71f0 "SnapshotDfn: allow properties on create
    // and modify"); 1.24 and 1.25 parse and drop them. The deprecated `props` is never used.
    if (req.snapshot_definition_props.is_some() || req.resource_definition_props.is_some())
        && !sim.api_at_least(1, 24)
    {
        return super::routes::too_new_field("snapshot_definition_props");
    }
    let sprops = if sim.api_at_least(1, 26) {
        req.snapshot_definition_props.clone().unwrap_or_default()
    } else {
        Default::default()
    };
    let sprops = super::validate::normalize_props(sprops);
    if let Err(e) = check_props(&sprops, MASK_CRT, MASK_SNAPSHOT) {
        return respond(StatusCode::CREATED, vec![e]);
    }
    let mut w = sim.write();
    let Some(d) = w.rds.get(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, MASK_CRT)]);
    };
    let display = d.name.clone();
    if d.snapshots.contains_key(&key(&name)) {
        return respond(StatusCode::CREATED, vec![Rc::new(
            rc::error(MASK_CRT, MASK_SNAPSHOT, FAIL_EXISTS_SNAPSHOT_DFN),
            format!("A snapshot definition with the name '{name}' already exists in resource definition '{display}'."),
        ).obj("RscDfn", &display).obj("SnapshotName", &name)]);
    }
    let wanted: Vec<String> = match req.nodes.as_ref().filter(|n| !n.is_empty()) {
        Some(list) => list.iter().map(|n| key(n)).collect(),
        None => d
            .resources
            .iter()
            .filter(|(_, r)| r.is_diskful())
            .map(|(k, _)| k.clone())
            .collect(),
    };
    if wanted.is_empty() {
        return respond(
            StatusCode::CREATED,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_SNAPSHOT, FAIL_NOT_FOUND_RSC),
                format!("Resource definition '{display}' has no diskful resources to snapshot."),
            )],
        );
    }
    let mut nodes = Vec::new();
    let mut pools = BTreeMap::new();
    for nk in &wanted {
        let Some(r) = d.resources.get(nk).filter(|r| r.is_diskful()) else {
            return respond(
                StatusCode::CREATED,
                vec![Rc::new(
                    rc::error(MASK_CRT, MASK_SNAPSHOT, FAIL_NOT_FOUND_RSC),
                    format!("Resource '{display}' has no diskful replica on node '{nk}'."),
                )],
            );
        };
        if !w.nodes.get(nk).is_some_and(|n| n.online) {
            return respond(
                StatusCode::CREATED,
                vec![Rc::new(
                    rc::error(MASK_CRT, MASK_SNAPSHOT, FAIL_NOT_CONNECTED),
                    format!("No active connection to satellite '{}'.", r.node),
                )],
            );
        }
        nodes.push(r.node.clone());
        pools.insert(key(&r.node), r.pool.clone());
    }
    let snap = Snapshot {
        name: name.clone(),
        snapshot_props: sprops,
        rd_props: d.props.clone(),
        nodes,
        volumes: d.vds.values().map(|v| (v.number, v.size_kib)).collect(),
        pools,
        flags: vec!["SUCCESSFUL".to_string()],
        uuid: new_uuid(),
        create_timestamp: now_millis(),
    };
    if let Some(d) = w.rds.get_mut(&key(&rd)) {
        d.snapshots.insert(key(&name), snap);
    }
    respond(
        StatusCode::CREATED,
        vec![
            Rc::new(
                rc::success(MASK_CRT, MASK_SNAPSHOT, CREATED),
                format!("New snapshot '{name}' of resource '{display}' registered."),
            )
            .obj("RscDfn", &display)
            .obj("SnapshotName", &name),
        ],
    )
}

pub async fn delete(S(sim): S<LinstorSim>, P((rd, snap)): P<(String, String)>) -> Response {
    let mut w = sim.write();
    let removed = w
        .rds
        .get_mut(&key(&rd))
        .and_then(|d| d.snapshots.remove(&key(&snap)));
    let rc = match removed {
        Some(s) => Rc::new(
            rc::success(MASK_DEL, MASK_SNAPSHOT, DELETED),
            format!("Snapshot '{}' of resource '{rd}' deleted.", s.name),
        ),
        None => Rc::new(
            rc::warn(MASK_DEL, MASK_SNAPSHOT, WARN_NOT_FOUND),
            format!("Snapshot '{snap}' of resource '{rd}' not found."),
        ),
    };
    respond(
        StatusCode::OK,
        vec![rc.obj("RscDfn", &rd).obj("SnapshotName", &snap)],
    )
}

/// Finds the source snapshot; on failure the response to send.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself
fn source(
    w: &super::state::World,
    rd: &str,
    snap: &str,
    op: u64,
) -> Result<(String, Snapshot), Response> {
    let Some(d) = w.rds.get(&key(rd)) else {
        return Err(respond(StatusCode::OK, vec![rd_not_found(rd, op)]));
    };
    match d.snapshots.get(&key(snap)) {
        Some(s) => Ok((d.name.clone(), s.clone())),
        None => Err(respond(
            StatusCode::OK,
            vec![snap_not_found(&d.name, snap, op)],
        )),
    }
}

pub async fn restore_vd(
    S(sim): S<LinstorSim>,
    P((rd, snap)): P<(String, String)>,
    body: Bytes,
) -> Response {
    let req: api::SnapshotRestore = body!(sim, body);
    let to = req.to_resource.unwrap_or_default();
    let mut w = sim.write();
    let (_, s) = match source(&w, &rd, &snap, MASK_CRT) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let Some(target) = w.rds.get(&key(&to)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&to, MASK_CRT)]);
    };
    let target_name = target.name.clone();
    if !target.vds.is_empty() {
        return respond(
            StatusCode::OK,
            vec![
                Rc::new(
                    rc::error(MASK_CRT, MASK_VLM_DFN, FAIL_EXISTS_VLM_DFN),
                    format!("Resource definition '{target_name}' already has volume definitions."),
                )
                .obj("RscDfn", &target_name),
            ],
        );
    }
    let mut rcs = Vec::new();
    for (nr, size) in &s.volumes {
        let minor = w.next_minor;
        w.next_minor += 1;
        if let Some(t) = w.rds.get_mut(&key(&to)) {
            t.vds.insert(
                *nr,
                VolumeDefinition {
                    number: *nr,
                    size_kib: *size,
                    props: Default::default(),
                    flags: Vec::new(),
                    uuid: new_uuid(),
                    minor,
                },
            );
        }
        rcs.push(Rc::new(
            rc::success(MASK_CRT, MASK_VLM_DFN, CREATED),
            format!("New volume definition with number '{nr}' of resource definition '{target_name}' restored from snapshot '{}'.", s.name),
        ).obj("RscDfn", &target_name).obj("VlmNr", nr.to_string()));
    }
    respond(StatusCode::OK, rcs)
}

/// `POST …/snapshot-restore-resource/{snapshot}` (linstor-server `CtrlSnapshotRestoreApiCallHandler`
/// `restoreResourceInTransaction` and `restoreOnNode`, @3e9306a9; the same in server 1.24.0):
/// - the target must have no resources (`FAIL_EXISTS_RSC`) and the snapshot must be successful;
/// - the snapshot's copy of the source resource definition's properties is copied onto the
///   target resource definition, **overriding** keys it has (`ctrlPropsHelper.copy(
///   getProps(fromSnapshotDfn, true), getProps(toRscDfn))`, l.317; `copy(from, to)` is
///   `copy(from, to, retain=false, override=true)`, `CtrlPropsHelper` l.837) — so the
///   source's `Aux/` markers land on the restored resource definition;
/// - it does not create volume definitions: each existing one must match the snapshot's
///   volume (`FAIL_NOT_FOUND_SNAPSHOT_VLM_DFN`) and its size exactly (`FAIL_INVLD_VLM_SIZE`,
///   "Snapshot size does not match for volume number N; snapshot size: XKiB, required size:
///   YKiB", l.636–645); with none, it warns "No volumes to restore.";
/// - all in one transaction: a refusal changes nothing.
pub async fn restore_resource(
    S(sim): S<LinstorSim>,
    P((rd, snap)): P<(String, String)>,
    body: Bytes,
) -> Response {
    let req: api::SnapshotRestore = body!(sim, body);
    let to = req.to_resource.clone().unwrap_or_default();
    let mut w = sim.write();
    let (_, s) = match source(&w, &rd, &snap, MASK_CRT) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let Some(target) = w.rds.get(&key(&to)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&to, MASK_CRT)]);
    };
    let target_name = target.name.clone();
    if !target.resources.is_empty() {
        return respond(
            StatusCode::OK,
            vec![
                Rc::new(
                    rc::error(MASK_CRT, MASK_RSC, FAIL_EXISTS_RSC),
                    "Cannot restore to resource definition which already has resources",
                )
                .obj("RscDfn", &target_name),
            ],
        );
    }
    if !s.flags.iter().any(|f| f == "SUCCESSFUL") {
        return respond(
            StatusCode::OK,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_SNAPSHOT, FAIL_SNAPSHOT_NOT_UPTODATE),
                format!("Snapshot '{}' is not successful.", s.name),
            )],
        );
    }
    let nodes: Vec<String> = match req.nodes.as_ref().filter(|n| !n.is_empty()) {
        Some(list) => list.clone(),
        None => s.nodes.clone(),
    };
    for n in &nodes {
        if !s.pools.contains_key(&key(n)) {
            return respond(
                StatusCode::OK,
                vec![Rc::new(
                    rc::error(MASK_CRT, MASK_SNAPSHOT, FAIL_NOT_FOUND_SNAPSHOT_DFN),
                    format!("Snapshot '{}' has no data on node '{n}'.", s.name),
                )],
            );
        }
    }
    if !nodes.is_empty() {
        for vd in target.vds.values() {
            let Some((_, snap_size)) = s.volumes.iter().find(|(nr, _)| *nr == vd.number) else {
                return respond(
                    StatusCode::OK,
                    vec![Rc::new(
                        rc::error(MASK_CRT, MASK_RSC, FAIL_NOT_FOUND_SNAPSHOT_VLM_DFN),
                        format!(
                            "Snapshot does not contain required volume number {}",
                            vd.number
                        ),
                    )],
                );
            };
            if *snap_size != vd.size_kib {
                return respond(
                    StatusCode::OK,
                    vec![Rc::new(
                        rc::error(MASK_CRT, MASK_RSC, FAIL_INVLD_VLM_SIZE),
                        format!(
                            "Snapshot size does not match for volume number {}; snapshot size: {}KiB, required size: {}KiB",
                            vd.number, snap_size, vd.size_kib
                        ),
                    )],
                );
            }
        }
    }
    let no_volumes = target.vds.is_empty();
    if let Some(t) = w.rds.get_mut(&key(&to)) {
        for (k, v) in &s.rd_props {
            t.props.insert(k.clone(), v.clone());
        }
    }
    let rename = req.stor_pool_rename.unwrap_or_default();
    let mut rcs = Vec::new();
    if no_volumes {
        rcs.push(
            Rc::new(
                rc::warn(MASK_CRT, MASK_RSC, WARN_NOT_FOUND),
                "No volumes to restore.",
            )
            .details("The target resource definition has no volume definitions. The restored resources will be empty.")
            .correction("Restore the volume definitions to the target resource definition."),
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        let nk = key(n);
        let pool = s.pools.get(&nk).cloned().unwrap_or_default();
        let pool = rename.get(&pool).cloned().unwrap_or(pool);
        let node_display = w.node_display(&nk);
        let layers = w
            .rds
            .get(&key(&to))
            .map(|t| t.layers.clone())
            .unwrap_or_default();
        let r = Resource {
            node: node_display.clone(),
            props: [("StorPoolName".to_string(), pool.clone())]
                .into_iter()
                .collect(),
            flags: Vec::new(),
            uuid: new_uuid(),
            create_timestamp: now_millis(),
            pool,
            diskless: false,
            in_use: false,
            node_id: i as i32,
            layers,
            synced_at: Instant::now(),
            disk_state_override: None,
        };
        if let Some(t) = w.rds.get_mut(&key(&to)) {
            t.resources.insert(nk, r);
        }
        rcs.push(Rc::new(
            rc::success(MASK_CRT, MASK_RSC, CREATED),
            format!("Resource '{target_name}' on node '{node_display}' restored from snapshot '{}'.", s.name),
        ).obj("RscDfn", &target_name).obj("Node", &node_display));
    }
    respond(StatusCode::OK, rcs)
}

pub async fn modify(
    S(sim): S<LinstorSim>,
    P((rd, snap)): P<(String, String)>,
    body: Bytes,
) -> Response {
    // `PUT …/snapshots/{snapshot}` exists from REST API 1.26 (CHANGELOG-OPENAPI 1.26.0, server
    // 1.32.0); before, the path has GET and DELETE only: 405 from `LinstorMapper`.
    if !sim.api_at_least(1, 26) {
        return super::reply::method_not_allowed(
            "PUT",
            &format!("v1/resource-definitions/{rd}/snapshots/{snap}"),
        );
    }
    let req: api::PropsModify = put_body!(sim, body);
    if let Some(ov) = &req.override_props
        && let Err(e) = check_props(ov, MASK_MOD, MASK_SNAPSHOT)
    {
        return respond(StatusCode::OK, vec![e]);
    }
    let mut w = sim.write();
    let Some(d) = w.rds.get_mut(&key(&rd)) else {
        return respond(StatusCode::OK, vec![rd_not_found(&rd, MASK_MOD)]);
    };
    let display = d.name.clone();
    let Some(s) = d.snapshots.get_mut(&key(&snap)) else {
        return respond(
            StatusCode::OK,
            vec![snap_not_found(&display, &snap, MASK_MOD)],
        );
    };
    apply_props_modify(
        &mut s.snapshot_props,
        req.override_props.as_ref(),
        req.delete_props.as_ref(),
        req.delete_namespaces.as_ref(),
    );
    let name = s.name.clone();
    respond(
        StatusCode::OK,
        vec![
            Rc::new(
                rc::success(MASK_MOD, MASK_SNAPSHOT, MODIFIED),
                format!("Snapshot '{name}' of resource '{display}' modified."),
            )
            .obj("RscDfn", &display)
            .obj("SnapshotName", &name),
        ],
    )
}
