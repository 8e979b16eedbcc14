//! Resource groups, volume groups, spawn, resource definitions and volume definitions.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;
use std::collections::BTreeMap;

use super::api::{self, Props};
use super::rc::{self, *};
use super::reply::{Rc, ok_json};
use super::routes::{P, Query, S, parse_body, respond};
use super::state::{
    self, ResourceDefinition, ResourceGroup, VolumeDefinition, VolumeGroup, World, new_uuid,
};
use super::validate::{
    apply_props_modify, check_name, check_props, check_rsc_name, key, normalize_props, props_match,
};
use super::{LinstorSim, resources};

/// Turns `Result<T, Rc>` into `T` or returns the error as an ApiCallRc list response.
macro_rules! tri {
    ($e:expr, $status:expr) => {
        match $e {
            Ok(v) => v,
            Err(rc) => return respond($status, vec![rc]),
        }
    };
}
pub(crate) use tri;

macro_rules! body {
    ($sim:expr, $body:expr) => {
        match parse_body(&$sim, &$body) {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}
pub(crate) use body;

/// [`body!`] for PUT endpoints (mapping errors are 500 there, see `parse_put_body`).
macro_rules! put_body {
    ($sim:expr, $body:expr) => {
        match $crate::linstor::routes::parse_put_body(&$sim, &$body) {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}
pub(crate) use put_body;

pub fn rg_not_found(name: &str, op: u64) -> Rc {
    Rc::new(
        rc::error(op, MASK_RSC_GRP, FAIL_NOT_FOUND_RSC_GRP),
        format!("Resource group '{name}' not found."),
    )
    .obj("RscGrp", name)
}

pub fn rd_not_found(name: &str, op: u64) -> Rc {
    Rc::new(
        rc::error(op, MASK_RSC_DFN, FAIL_NOT_FOUND_RSC_DFN),
        format!("Resource definition '{name}' not found."),
    )
    .obj("RscDfn", name)
}

fn vd_not_found(rd: &str, nr: &str, op: u64) -> Rc {
    Rc::new(
        rc::error(op, MASK_VLM_DFN, FAIL_NOT_FOUND_VLM_DFN),
        format!("Volume definition with number '{nr}' on resource definition '{rd}' not found."),
    )
    .obj("RscDfn", rd)
    .obj("VlmNr", nr)
}

fn not_found_response(rc: Rc) -> Response {
    respond(StatusCode::OK, vec![rc])
}

// ---- resource groups ------------------------------------------------------------------------

pub async fn list_rgs(S(sim): S<LinstorSim>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let names: Vec<String> = q.all("resource_groups").iter().map(|n| key(n)).collect();
    let props = q.props();
    let w = sim.read();
    let page = q.page(
        w.rgs
            .iter()
            .filter(|(k, _)| names.is_empty() || names.contains(k))
            .filter(|(_, rg)| props_match(&rg.props, &props)),
    );
    let items = page.into_iter().map(|(_, rg)| w.rg_json(rg));
    ok_json(Value::Array(items.collect()))
}

pub async fn get_rg(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let w = sim.read();
    match w.rgs.get(&key(&name)) {
        Some(rg) => ok_json(w.rg_json(rg)),
        None => not_found_response(rg_not_found(&name, 0)),
    }
}

pub async fn create_rg(S(sim): S<LinstorSim>, body: Bytes) -> Response {
    let req: api::ResourceGroupCreate = body!(sim, body);
    let name = req.name.clone().unwrap_or_default();
    tri!(
        check_name(
            &name,
            "resource group",
            MASK_CRT,
            MASK_RSC_GRP,
            FAIL_INVLD_RSC_GRP_NAME
        ),
        StatusCode::CREATED
    );
    let props = req.props.unwrap_or_default();
    tri!(
        check_props(&props, MASK_CRT, MASK_RSC_GRP),
        StatusCode::CREATED
    );
    let mut w = sim.write();
    if w.rgs.contains_key(&key(&name)) {
        return respond(
            StatusCode::CREATED,
            vec![
                Rc::new(
                    rc::error(MASK_CRT, MASK_RSC_GRP, FAIL_EXISTS_RSC_GRP),
                    format!("A resource group with the name '{name}' already exists."),
                )
                .obj("RscGrp", &name),
            ],
        );
    }
    w.rgs.insert(
        key(&name),
        ResourceGroup {
            name: name.clone(),
            description: req.description,
            props,
            select_filter: req.select_filter.unwrap_or_default(),
            peer_slots: req.peer_slots,
            uuid: new_uuid(),
            vgs: BTreeMap::new(),
        },
    );
    respond(
        StatusCode::CREATED,
        vec![
            Rc::new(
                rc::success(MASK_CRT, MASK_RSC_GRP, CREATED),
                format!("New resource group '{name}' created."),
            )
            .obj("RscGrp", &name),
        ],
    )
}

pub async fn modify_rg(S(sim): S<LinstorSim>, P(name): P<String>, body: Bytes) -> Response {
    // PUT: `ResourceGroups.modifyResourceGroup` throws IOException, so 500 (see put_body!).
    let req: api::ResourceGroupModify = put_body!(sim, body);
    if let Some(ov) = &req.override_props {
        tri!(check_props(ov, MASK_MOD, MASK_RSC_GRP), StatusCode::OK);
    }
    let mut w = sim.write();
    let Some(rg) = w.rgs.get_mut(&key(&name)) else {
        return not_found_response(rg_not_found(&name, MASK_MOD));
    };
    apply_props_modify(
        &mut rg.props,
        req.override_props.as_ref(),
        req.delete_props.as_ref(),
        req.delete_namespaces.as_ref(),
    );
    if let Some(d) = req.description {
        rg.description = Some(d);
    }
    if let Some(sf) = req.select_filter {
        rg.select_filter = rg.select_filter.merged_with(&sf);
    }
    if let Some(ps) = req.peer_slots {
        rg.peer_slots = Some(ps);
    }
    let display = rg.name.clone();
    respond(
        StatusCode::OK,
        vec![
            Rc::new(
                rc::success(MASK_MOD, MASK_RSC_GRP, MODIFIED),
                format!("Resource group '{display}' modified."),
            )
            .obj("RscGrp", &display),
        ],
    )
}

pub async fn delete_rg(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let mut w = sim.write();
    let k = key(&name);
    let Some(rg) = w.rgs.get(&k) else {
        return respond(
            StatusCode::OK,
            vec![
                Rc::new(
                    rc::warn(MASK_DEL, MASK_RSC_GRP, WARN_NOT_FOUND),
                    format!("Resource group '{name}' not found."),
                )
                .obj("RscGrp", &name),
            ],
        );
    };
    let display = rg.name.clone();
    let users: Vec<String> = w
        .rds
        .values()
        .filter(|rd| key(&rd.rg) == k)
        .map(|rd| rd.name.clone())
        .collect();
    if !users.is_empty() {
        return respond(StatusCode::OK, vec![Rc::new(
            rc::error(MASK_DEL, MASK_RSC_GRP, FAIL_EXISTS_RSC_DFN),
            format!("Cannot delete resource group '{display}' because it has existing resource definitions."),
        ).details(format!("Resource definitions: {}", users.join(", "))).obj("RscGrp", &display)]);
    }
    w.rgs.remove(&k);
    respond(
        StatusCode::OK,
        vec![
            Rc::new(
                rc::success(MASK_DEL, MASK_RSC_GRP, DELETED),
                format!("Resource group '{display}' deleted."),
            )
            .obj("RscGrp", &display),
        ],
    )
}

pub async fn list_vgs(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let w = sim.read();
    match w.rgs.get(&key(&name)) {
        Some(rg) => ok_json(Value::Array(rg.vgs.values().map(World::vg_json).collect())),
        None => not_found_response(rg_not_found(&name, 0)),
    }
}

pub async fn get_vg(S(sim): S<LinstorSim>, P((name, nr)): P<(String, i32)>) -> Response {
    let w = sim.read();
    match w.rgs.get(&key(&name)) {
        Some(rg) => match rg.vgs.get(&nr) {
            Some(vg) => ok_json(World::vg_json(vg)),
            None => not_found_response(Rc::new(
                rc::error(0, MASK_VLM_GRP, FAIL_NOT_FOUND_VLM_GRP),
                format!("Volume group with number '{nr}' of resource group '{name}' not found."),
            )),
        },
        None => not_found_response(rg_not_found(&name, 0)),
    }
}

pub async fn create_vg(S(sim): S<LinstorSim>, P(name): P<String>, body: Bytes) -> Response {
    let req: api::VolumeGroup = body!(sim, body);
    let props = req.props.unwrap_or_default();
    tri!(
        check_props(&props, MASK_CRT, MASK_VLM_GRP),
        StatusCode::CREATED
    );
    let mut w = sim.write();
    let Some(rg) = w.rgs.get_mut(&key(&name)) else {
        return not_found_response(rg_not_found(&name, MASK_CRT));
    };
    let nr = req
        .volume_number
        .unwrap_or_else(|| (0..).find(|n| !rg.vgs.contains_key(n)).unwrap_or(0));
    if nr < 0 {
        return respond(
            StatusCode::CREATED,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_VLM_GRP, FAIL_INVLD_VLM_NR),
                format!("Invalid volume number {nr}."),
            )],
        );
    }
    if rg.vgs.contains_key(&nr) {
        return respond(
            StatusCode::CREATED,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_VLM_GRP, FAIL_EXISTS_VLM_GRP),
                format!(
                    "A volume group with the number {nr} already exists in resource group '{}'.",
                    rg.name
                ),
            )],
        );
    }
    rg.vgs.insert(
        nr,
        VolumeGroup {
            number: nr,
            props,
            flags: req.flags.unwrap_or_default(),
            uuid: new_uuid(),
        },
    );
    let display = rg.name.clone();
    respond(
        StatusCode::CREATED,
        vec![
            Rc::new(
                rc::success(MASK_CRT, MASK_VLM_GRP, CREATED),
                format!(
                    "New volume group with number '{nr}' of resource group '{display}' created."
                ),
            )
            .obj("RscGrp", &display)
            .obj("VlmNr", nr.to_string()),
        ],
    )
}

pub async fn delete_vg(S(sim): S<LinstorSim>, P((name, nr)): P<(String, i32)>) -> Response {
    let mut w = sim.write();
    let removed = w.rgs.get_mut(&key(&name)).and_then(|rg| rg.vgs.remove(&nr));
    let rc = match removed {
        Some(_) => Rc::new(
            rc::success(MASK_DEL, MASK_VLM_GRP, DELETED),
            format!("Volume group {nr} of '{name}' deleted."),
        ),
        None => Rc::new(
            rc::warn(MASK_DEL, MASK_VLM_GRP, WARN_NOT_FOUND),
            format!("Volume group {nr} of '{name}' not found."),
        ),
    };
    respond(StatusCode::OK, vec![rc])
}

/// Creates a resource definition in `w` after all checks (shared by create and spawn).
#[allow(clippy::too_many_arguments)]
fn insert_rd(
    w: &mut World,
    name: &str,
    external_name: Option<String>,
    rg_name: &str,
    props: Props,
    layers: Vec<String>,
    port: Option<i32>,
    peer_slots: Option<i32>,
) -> Result<String, Rc> {
    check_props(&props, MASK_CRT, MASK_RSC_DFN)?;
    let props = normalize_props(props);
    let rg = w
        .rgs
        .get(&key(rg_name))
        .ok_or_else(|| rg_not_found(rg_name, MASK_CRT))?;
    let rg_display = rg.name.clone();
    let rg_peer_slots = rg.peer_slots;
    if w.rds.contains_key(&key(name)) {
        return Err(Rc::new(
            rc::error(MASK_CRT, MASK_RSC_DFN, FAIL_EXISTS_RSC_DFN),
            format!("A resource definition with the name '{name}' already exists."),
        )
        .obj("RscDfn", name));
    }
    if let Some(ext) = &external_name
        && w.rds
            .values()
            .any(|rd| rd.external_name.as_deref() == Some(ext))
    {
        return Err(Rc::new(
            rc::error(MASK_CRT, MASK_RSC_DFN, FAIL_EXISTS_EXT_NAME),
            format!("A resource definition with the external name '{ext}' already exists."),
        ));
    }
    let port = port.unwrap_or_else(|| {
        w.next_port += 1;
        w.next_port - 1
    });
    w.rds.insert(
        key(name),
        ResourceDefinition {
            name: name.to_string(),
            external_name,
            props,
            flags: Vec::new(),
            layers,
            rg: rg_display,
            uuid: new_uuid(),
            port,
            peer_slots: peer_slots.or(rg_peer_slots).unwrap_or(7),
            vds: BTreeMap::new(),
            resources: BTreeMap::new(),
            snapshots: BTreeMap::new(),
        },
    );
    Ok(name.to_string())
}

/// Name generated for an external name (`ExternalNameConverter`: bad chars become '_').
fn name_from_external(ext: &str) -> String {
    let mut s: String = ext
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars()
        .next()
        .is_some_and(|c| !(c.is_ascii_alphabetic() || c == '_'))
    {
        s.insert(0, '_');
    }
    if super::validate::name_ok(&s) {
        s
    } else {
        format!("LS_{}", uuid::Uuid::new_v4().simple())
    }
}

fn check_layers(layers: &[String], op: u64) -> Result<(), Rc> {
    if !layers.is_empty() && layers.last().map(String::as_str) != Some("STORAGE") {
        return Err(Rc::new(
            rc::error(op, MASK_RSC_DFN, FAIL_INVLD_LAYER_STACK),
            format!("The layer stack {layers:?} is invalid: it must end with STORAGE."),
        ));
    }
    Ok(())
}

pub fn default_layers() -> Vec<String> {
    vec!["DRBD".to_string(), "STORAGE".to_string()]
}

fn new_vd(
    w: &mut World,
    number: i32,
    size_kib: u64,
    props: Props,
    flags: Vec<String>,
    minor: Option<i32>,
) -> VolumeDefinition {
    let minor = minor.unwrap_or_else(|| {
        w.next_minor += 1;
        w.next_minor - 1
    });
    VolumeDefinition {
        number,
        size_kib,
        props,
        flags,
        uuid: new_uuid(),
        minor,
    }
}

pub async fn spawn(S(sim): S<LinstorSim>, P(rg_name): P<String>, body: Bytes) -> Response {
    let req: api::ResourceGroupSpawn = body!(sim, body);
    let mut w = sim.write();
    let Some(rg) = w.rgs.get(&key(&rg_name)).cloned() else {
        return not_found_response(rg_not_found(&rg_name, MASK_CRT));
    };
    let (name, ext) = match (
        &req.resource_definition_name,
        &req.resource_definition_external_name,
    ) {
        (Some(n), ext) if !n.is_empty() => (n.clone(), ext.clone()),
        (_, Some(ext)) => (name_from_external(ext), Some(ext.clone())),
        _ => (String::new(), None),
    };
    tri!(
        check_rsc_name(&name, MASK_CRT, MASK_RSC_DFN),
        StatusCode::CREATED
    );
    let sizes = req.volume_sizes.clone().unwrap_or_default();
    if sizes.iter().any(|s| *s <= 0) {
        return respond(
            StatusCode::CREATED,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_VLM_DFN, FAIL_INVLD_VLM_SIZE),
                "Volume sizes must be positive.",
            )],
        );
    }
    let partial = req.partial.unwrap_or(false);
    // Without volume groups the sizes define the volumes; otherwise one size per group
    // (fewer only with `partial`).
    let sizes_ok =
        rg.vgs.is_empty() || sizes.len() == rg.vgs.len() || (partial && sizes.len() < rg.vgs.len());
    if !sizes_ok {
        return respond(
            StatusCode::CREATED,
            vec![
                Rc::new(
                    rc::error(MASK_CRT, MASK_RSC_GRP, FAIL_INVLD_VLM_SIZES),
                    format!(
                        "The resource group has {} volume groups, but {} sizes were provided.",
                        rg.vgs.len(),
                        sizes.len()
                    ),
                )
                .correction("Provide one size per volume group, or set 'partial'."),
            ],
        );
    }
    let layers: Vec<String> = rg
        .select_filter
        .layer_stack
        .clone()
        .unwrap_or_else(default_layers);
    let filter = rg
        .select_filter
        .merged_with(&req.select_filter.clone().unwrap_or_default());
    let will_place = filter.place_count.is_some() && !req.definitions_only.unwrap_or(false);
    if w.rds.contains_key(&key(&name)) {
        return respond(
            StatusCode::CREATED,
            vec![
                Rc::new(
                    rc::error(MASK_CRT, MASK_RSC_DFN, FAIL_EXISTS_RSC_DFN),
                    format!("A resource definition with the name '{name}' already exists."),
                )
                .obj("RscDfn", &name),
            ],
        );
    }
    let total: u64 = sizes
        .iter()
        .fold(0u64, |acc, s| acc.saturating_add(*s as u64));
    if will_place {
        let empty = BTreeMap::new();
        if let Err(e) = super::placement::plan(&w, None, &empty, &filter, total) {
            return respond(
                StatusCode::CREATED,
                vec![resources::plan_error_rc(&name, e)],
            );
        }
    }
    let props = req.resource_definition_props.clone().unwrap_or_default();
    let created = tri!(
        insert_rd(
            &mut w,
            &name,
            ext,
            &rg.name,
            props,
            layers,
            None,
            req.peer_slots
        ),
        StatusCode::CREATED
    );
    let vg_numbers: Vec<i32> = if rg.vgs.is_empty() {
        (0..sizes.len() as i32).collect()
    } else {
        rg.vgs.keys().copied().collect()
    };
    for (nr, size) in vg_numbers.into_iter().zip(sizes.iter()) {
        let vg_props = rg
            .vgs
            .get(&nr)
            .map(|vg| vg.props.clone())
            .unwrap_or_default();
        let vd = new_vd(&mut w, nr, *size as u64, vg_props, Vec::new(), None);
        if let Some(rd) = w.rds.get_mut(&key(&created)) {
            rd.vds.insert(nr, vd);
        }
    }
    let mut rcs = vec![
        Rc::new(
            rc::success(MASK_CRT, MASK_RSC_DFN, CREATED),
            format!(
                "Resource definition '{created}' created from resource group '{}'.",
                rg.name
            ),
        )
        .obj("RscDfn", &created)
        .obj("RscGrp", &rg.name),
    ];
    if will_place {
        rcs.extend(resources::autoplace_in(
            &mut w,
            &created,
            &filter,
            filter.diskless_on_remaining.unwrap_or(false),
            None,
        ));
    }
    respond(StatusCode::CREATED, rcs)
}

pub async fn adjust(S(sim): S<LinstorSim>, P(rg_name): P<String>, body: Bytes) -> Response {
    let req: api::ResourceGroupAdjust = body!(sim, body);
    let mut w = sim.write();
    let Some(rg) = w.rgs.get(&key(&rg_name)).cloned() else {
        return not_found_response(rg_not_found(&rg_name, MASK_MOD));
    };
    let filter = rg
        .select_filter
        .merged_with(&req.select_filter.unwrap_or_default());
    let names: Vec<String> = w
        .rds
        .values()
        .filter(|rd| key(&rd.rg) == key(&rg.name))
        .map(|rd| rd.name.clone())
        .collect();
    let mut rcs = Vec::new();
    for n in names {
        rcs.extend(resources::autoplace_in(
            &mut w,
            &n,
            &filter,
            filter.diskless_on_remaining.unwrap_or(false),
            None,
        ));
    }
    rcs.push(Rc::new(
        rc::success(MASK_MOD, MASK_RSC_GRP, MODIFIED),
        format!("Resource group '{}' adjusted.", rg.name),
    ));
    respond(StatusCode::OK, rcs)
}

// ---- resource definitions -------------------------------------------------------------------

pub async fn list_rds(S(sim): S<LinstorSim>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let names: std::collections::HashSet<String> = q
        .all("resource_definitions")
        .iter()
        .map(|n| key(n))
        .collect();
    let props = q.props();
    let with_vds = q.flag("with_volume_definitions");
    let w = sim.read();
    let matched: Vec<_> = w
        .rds
        .iter()
        .filter(|(k, _)| names.is_empty() || names.contains(*k))
        .filter(|(_, rd)| props_match(&rd.props, &props))
        .collect();
    // Cost: `ctrlApiCallHandler.listResourceDefinitions` builds the whole filtered list, then
    // `listResourceDefinitionsOneOrMany` skips and limits it (`ResourceDefinitions.java`,
    // @3e9306a9): every page costs the whole list.
    sim.inner
        .stats
        .add_work(w.rds.len() as u64 + matched.len() as u64, 0);
    let page = q.page(matched);
    let items = page.into_iter().map(|(_, rd)| w.rd_json(rd, with_vds));
    ok_json(Value::Array(items.collect()))
}

pub async fn get_rd(S(sim): S<LinstorSim>, P(name): P<String>, raw: RawQuery) -> Response {
    let q = Query::from_raw(raw);
    let w = sim.read();
    match w.rds.get(&key(&name)) {
        Some(rd) => ok_json(w.rd_json(rd, q.flag("with_volume_definitions"))),
        None => not_found_response(rd_not_found(&name, 0)),
    }
}

pub async fn create_rd(S(sim): S<LinstorSim>, body: Bytes) -> Response {
    let req: api::ResourceDefinitionCreate = body!(sim, body);
    let Some(rd) = req.resource_definition else {
        return respond(
            StatusCode::CREATED,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_RSC_DFN, FAIL_INVLD_RSC_NAME),
                "The request does not contain a resource definition.",
            )],
        );
    };
    let (name, ext) = match (&rd.name, &rd.external_name) {
        (Some(n), ext) if !n.is_empty() => (n.clone(), ext.clone()),
        (_, Some(ext)) if !ext.is_empty() => (name_from_external(ext), Some(ext.clone())),
        _ => (String::new(), None),
    };
    tri!(
        check_rsc_name(&name, MASK_CRT, MASK_RSC_DFN),
        StatusCode::CREATED
    );
    let mut w = sim.write();
    let rg_name = rd
        .resource_group_name
        .clone()
        .unwrap_or_else(|| state::DFLT_RSC_GRP.to_string());
    let layers: Vec<String> = match &rd.layer_data {
        Some(ld) if !ld.is_empty() => ld.iter().map(|l| l.kind.as_str().to_string()).collect(),
        _ => w
            .rgs
            .get(&key(&rg_name))
            .and_then(|rg| rg.select_filter.layer_stack.clone())
            .unwrap_or_else(default_layers),
    };
    tri!(check_layers(&layers, MASK_CRT), StatusCode::CREATED);
    let created = tri!(
        insert_rd(
            &mut w,
            &name,
            ext,
            &rg_name,
            rd.props.unwrap_or_default(),
            layers,
            req.drbd_port,
            req.drbd_peer_slots
        ),
        StatusCode::CREATED
    );
    let uuid = w
        .rds
        .get(&key(&created))
        .map(|rd| rd.uuid.clone())
        .unwrap_or_default();
    respond(
        StatusCode::CREATED,
        vec![
            Rc::new(
                rc::success(MASK_CRT, MASK_RSC_DFN, CREATED),
                format!("New resource definition '{created}' created."),
            )
            .details(format!("Resource definition '{created}' UUID is: {uuid}"))
            .obj("RscDfn", &created),
        ],
    )
}

pub async fn modify_rd(S(sim): S<LinstorSim>, P(name): P<String>, body: Bytes) -> Response {
    // PUT: `ResourceDefinitions.modifyResourceDefinition` throws IOException, so 500.
    let req: api::ResourceDefinitionModify = put_body!(sim, body);
    if let Some(ov) = &req.override_props {
        tri!(check_props(ov, MASK_MOD, MASK_RSC_DFN), StatusCode::OK);
    }
    let mut w = sim.write();
    let new_rg = match &req.resource_group {
        Some(g) => match w.rgs.get(&key(g)) {
            Some(rg) => Some(rg.name.clone()),
            None => return not_found_response(rg_not_found(g, MASK_MOD)),
        },
        None => None,
    };
    let Some(rd) = w.rds.get_mut(&key(&name)) else {
        return not_found_response(rd_not_found(&name, MASK_MOD));
    };
    if let Some(ls) = &req.layer_stack {
        let layers: Vec<String> = ls.iter().map(|l| l.as_str().to_string()).collect();
        tri!(check_layers(&layers, MASK_MOD), StatusCode::OK);
        if !rd.resources.is_empty() && layers != rd.layers {
            return respond(
                StatusCode::OK,
                vec![Rc::new(
                    rc::error(MASK_MOD, MASK_RSC_DFN, FAIL_INVLD_LAYER_STACK),
                    "The layer stack cannot be changed while resources exist.",
                )],
            );
        }
        rd.layers = layers;
    }
    apply_props_modify(
        &mut rd.props,
        req.override_props.as_ref(),
        req.delete_props.as_ref(),
        req.delete_namespaces.as_ref(),
    );
    if let Some(g) = new_rg {
        rd.rg = g;
    }
    if let Some(p) = req.drbd_port {
        rd.port = p;
    }
    if let Some(p) = req.drbd_peer_slots {
        rd.peer_slots = p;
    }
    let display = rd.name.clone();
    respond(
        StatusCode::OK,
        vec![
            Rc::new(
                rc::success(MASK_MOD, MASK_RSC_DFN, MODIFIED),
                format!("Resource definition '{display}' modified."),
            )
            .obj("RscDfn", &display),
        ],
    )
}

pub async fn delete_rd(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let mut w = sim.write();
    let k = key(&name);
    let Some(rd) = w.rds.get(&k) else {
        return respond(
            StatusCode::OK,
            vec![
                Rc::new(
                    rc::warn(MASK_DEL, MASK_RSC_DFN, WARN_NOT_FOUND),
                    format!("Resource definition '{name}' not found."),
                )
                .obj("RscDfn", &name),
            ],
        );
    };
    let display = rd.name.clone();
    if !rd.snapshots.is_empty() {
        return respond(
            StatusCode::OK,
            vec![
                Rc::new(
                    rc::error(MASK_DEL, MASK_RSC_DFN, FAIL_EXISTS_SNAPSHOT_DFN),
                    format!(
                        "Cannot delete resource definition '{display}' because it has snapshots."
                    ),
                )
                .correction("Delete the snapshots first.")
                .obj("RscDfn", &display),
            ],
        );
    }
    if let Some(r) = rd.resources.values().find(|r| r.in_use) {
        return respond(
            StatusCode::OK,
            vec![
                Rc::new(
                    rc::error(MASK_DEL, MASK_RSC_DFN, FAIL_IN_USE),
                    format!("Resource '{display}' is still in use on node '{}'.", r.node),
                )
                .cause("Resource is mounted/in use.")
                .obj("RscDfn", &display),
            ],
        );
    }
    w.rds.remove(&k);
    respond(
        StatusCode::OK,
        vec![
            Rc::new(
                rc::success(MASK_DEL, MASK_RSC_DFN, DELETED),
                format!("Resource definition '{display}' deleted."),
            )
            .obj("RscDfn", &display),
        ],
    )
}

// ---- volume definitions ---------------------------------------------------------------------

pub async fn list_vds(S(sim): S<LinstorSim>, P(name): P<String>) -> Response {
    let w = sim.read();
    match w.rds.get(&key(&name)) {
        Some(rd) => ok_json(Value::Array(rd.vds.values().map(World::vd_json).collect())),
        None => not_found_response(rd_not_found(&name, 0)),
    }
}

pub async fn get_vd(S(sim): S<LinstorSim>, P((name, nr)): P<(String, String)>) -> Response {
    let w = sim.read();
    let Some(rd) = w.rds.get(&key(&name)) else {
        return not_found_response(rd_not_found(&name, 0));
    };
    match nr.parse::<i32>().ok().and_then(|n| rd.vds.get(&n)) {
        Some(vd) => ok_json(World::vd_json(vd)),
        None => not_found_response(vd_not_found(&rd.name, &nr, 0)),
    }
}

pub async fn create_vd(S(sim): S<LinstorSim>, P(name): P<String>, body: Bytes) -> Response {
    let req: api::VolumeDefinitionCreate = body!(sim, body);
    let vd = req.volume_definition.unwrap_or(api::VolumeDefinition {
        volume_number: None,
        size_kib: None,
        props: None,
        flags: None,
        layer_data: None,
        uuid: None,
    });
    let props = vd.props.unwrap_or_default();
    tri!(
        check_props(&props, MASK_CRT, MASK_VLM_DFN),
        StatusCode::CREATED
    );
    let size = vd.size_kib.unwrap_or(0);
    if size <= 0 {
        return respond(
            StatusCode::CREATED,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_VLM_DFN, FAIL_INVLD_VLM_SIZE),
                format!("The volume size {size} KiB is invalid."),
            )],
        );
    }
    let size = size as u64;
    let mut w = sim.write();
    let k = key(&name);
    let Some(rd) = w.rds.get(&k) else {
        return not_found_response(rd_not_found(&name, MASK_CRT));
    };
    let display = rd.name.clone();
    let nr = vd
        .volume_number
        .unwrap_or_else(|| (0..).find(|n| !rd.vds.contains_key(n)).unwrap_or(0));
    if nr < 0 {
        return respond(
            StatusCode::CREATED,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_VLM_DFN, FAIL_INVLD_VLM_NR),
                format!("Invalid volume number {nr}."),
            )],
        );
    }
    if rd.vds.contains_key(&nr) {
        return respond(StatusCode::CREATED, vec![Rc::new(
            rc::error(MASK_CRT, MASK_VLM_DFN, FAIL_EXISTS_VLM_DFN),
            format!("A volume definition with the number {nr} already exists in resource definition '{display}'."),
        ).obj("RscDfn", &display).obj("VlmNr", nr.to_string())]);
    }
    // Existing diskful replicas get the new volume too: every one needs the space.
    let short: Vec<String> = rd
        .resources
        .iter()
        .filter(|(_, r)| r.is_diskful())
        .filter_map(|(nk, r)| {
            let pool = w
                .nodes
                .get(nk)?
                .cfg
                .pools
                .iter()
                .find(|p| p.name == r.pool)?;
            (w.free_kib(nk, pool) < size).then(|| r.node.clone())
        })
        .collect();
    if !short.is_empty() {
        return respond(
            StatusCode::CREATED,
            vec![Rc::new(
                rc::error(MASK_CRT, MASK_VLM_DFN, FAIL_NOT_ENOUGH_FREE_SPACE),
                format!("Not enough free space on node(s) {}.", short.join(", ")),
            )],
        );
    }
    let new = new_vd(
        &mut w,
        nr,
        size,
        props,
        vd.flags.unwrap_or_default(),
        req.drbd_minor_number,
    );
    if let Some(rd) = w.rds.get_mut(&k) {
        rd.vds.insert(nr, new);
    }
    respond(StatusCode::CREATED, vec![Rc::new(
        rc::success(MASK_CRT, MASK_VLM_DFN, CREATED),
        format!("New volume definition with number '{nr}' of resource definition '{display}' created."),
    ).obj("RscDfn", &display).obj("VlmNr", nr.to_string())])
}

pub async fn modify_vd(
    S(sim): S<LinstorSim>,
    P((name, nr)): P<(String, String)>,
    body: Bytes,
) -> Response {
    let req: api::VolumeDefinitionModify = body!(sim, body);
    if let Some(ov) = &req.override_props {
        tri!(check_props(ov, MASK_MOD, MASK_VLM_DFN), StatusCode::OK);
    }
    let mut w = sim.write();
    let k = key(&name);
    let Some(rd) = w.rds.get(&k) else {
        return not_found_response(rd_not_found(&name, MASK_MOD));
    };
    let display = rd.name.clone();
    let Some(vd) = nr.parse::<i32>().ok().and_then(|n| rd.vds.get(&n)) else {
        return not_found_response(vd_not_found(&display, &nr, MASK_MOD));
    };
    let number = vd.number;
    let current = vd.size_kib;
    let mut rcs = Vec::new();
    let mut new_size = None;
    if let Some(size) = req.size_kib {
        if size < 0 || (size as u64) < current {
            return respond(StatusCode::OK, vec![Rc::new(
                rc::error(MASK_MOD, MASK_VLM_DFN, FAIL_INVLD_VLM_SIZE),
                format!("Shrinking volumes is not supported by layer 'DRBD' (volume {number} of '{display}': {current} KiB -> {size} KiB)."),
            ).obj("RscDfn", &display).obj("VlmNr", number.to_string())]);
        }
        let size = size as u64;
        if size == current {
            rcs.push(Rc::new(
                rc::warn(MASK_MOD, MASK_VLM_DFN, WARN_VLMDFN_RESIZE_SAME_SIZE),
                format!(
                    "Volume definition {number} of '{display}' already has the size {size} KiB."
                ),
            ));
        } else {
            let grow = size - current;
            let short: Vec<String> = rd
                .resources
                .iter()
                .filter(|(_, r)| r.is_diskful())
                .filter_map(|(nk, r)| {
                    let pool = w
                        .nodes
                        .get(nk)?
                        .cfg
                        .pools
                        .iter()
                        .find(|p| p.name == r.pool)?;
                    (w.free_kib(nk, pool) < grow).then(|| r.node.clone())
                })
                .collect();
            if !short.is_empty() {
                return respond(
                    StatusCode::OK,
                    vec![Rc::new(
                        rc::error(MASK_MOD, MASK_VLM_DFN, FAIL_NOT_ENOUGH_FREE_SPACE),
                        format!(
                            "Not enough free space to grow volume {number} of '{display}' on node(s) {}.",
                            short.join(", ")
                        ),
                    )],
                );
            }
            new_size = Some(size);
        }
    }
    let Some(vd) = w.rds.get_mut(&k).and_then(|rd| rd.vds.get_mut(&number)) else {
        return not_found_response(vd_not_found(&display, &nr, MASK_MOD));
    };
    if let Some(s) = new_size {
        vd.size_kib = s;
    }
    apply_props_modify(
        &mut vd.props,
        req.override_props.as_ref(),
        req.delete_props.as_ref(),
        req.delete_namespaces.as_ref(),
    );
    for f in req.flags.iter().flatten() {
        if let Some(rm) = f.strip_prefix('-') {
            vd.flags.retain(|x| x != rm);
        } else if !vd.flags.contains(f) {
            vd.flags.push(f.clone());
        }
    }
    rcs.push(Rc::new(
        rc::success(MASK_MOD, MASK_VLM_DFN, MODIFIED),
        format!("Volume definition with number '{number}' on resource definition '{display}' modified."),
    ).obj("RscDfn", &display).obj("VlmNr", number.to_string()));
    respond(StatusCode::OK, rcs)
}

pub async fn delete_vd(S(sim): S<LinstorSim>, P((name, nr)): P<(String, String)>) -> Response {
    let mut w = sim.write();
    let removed = w
        .rds
        .get_mut(&key(&name))
        .and_then(|rd| nr.parse::<i32>().ok().and_then(|n| rd.vds.remove(&n)));
    let rc = match removed {
        Some(_) => Rc::new(
            rc::success(MASK_DEL, MASK_VLM_DFN, DELETED),
            format!(
                "Volume definition with number '{nr}' of resource definition '{name}' deleted."
            ),
        ),
        None => Rc::new(
            rc::warn(MASK_DEL, MASK_VLM_DFN, WARN_NOT_FOUND),
            format!(
                "Volume definition with number '{nr}' of resource definition '{name}' not found."
            ),
        ),
    };
    respond(
        StatusCode::OK,
        vec![rc.obj("RscDfn", &name).obj("VlmNr", &nr)],
    )
}
