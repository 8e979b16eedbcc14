//! The pure heart of volume reconciliation: from the checked spec and what LINSTOR holds, the
//! writes that make LINSTOR match. The controller executes them; `edgebind plan` prints them.

use crate::controller::ownership::{self, Owner, Ownership};
use crate::linstor::ops::{Op, OpKind, seg};
use crate::linstor::types::*;
use crate::linstor::version::Features;

use super::validate::{ValidPlacement, ValidSpec};

/// What LINSTOR holds for one resource definition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub rd: Option<ResourceDefinition>,
    pub resources: Vec<ResourceWithVolumes>,
    pub snapshots: Vec<Snapshot>,
}

impl Observed {
    pub fn volume(&self) -> Option<&VolumeDefinition> {
        self.rd
            .as_ref()?
            .volume_definitions
            .iter()
            .find(|v| v.volume_number == 0)
    }
    /// Replicas that are not being deleted.
    pub fn live_resources(&self) -> impl Iterator<Item = &ResourceWithVolumes> {
        self.resources
            .iter()
            .filter(|r| !r.flags.iter().any(|f| f == "DELETE" || f == "DRBD_DELETE"))
    }
    /// Diskful replicas that count as placed, as autoplace counts them: not evicted or
    /// evacuating (`CtrlRscAutoPlaceApiCallHandler` l.185–198 skips DELETE, EVICTED and
    /// EVACUATE and places replacements; a deactivated replica still counts).
    pub fn diskful(&self) -> impl Iterator<Item = &ResourceWithVolumes> {
        self.live_resources()
            .filter(|r| is_diskful(r) && !r.flags.iter().any(|f| f == "EVICTED" || f == "EVACUATE"))
    }
}

/// Why a replica is out of service although it exists: the flag that says so. `EVICTED`
/// (the auto-evict task; it includes `INACTIVE`), `EVACUATE` (`node evacuate`), `INACTIVE`
/// and `INACTIVATING` (`resource deactivate`) — linstor-server `core/objects/Resource.java`
/// `Flags`, @3e9306a9.
pub fn inactive_flag(r: &ResourceWithVolumes) -> Option<&str> {
    ["EVICTED", "EVACUATE", "INACTIVATING", "INACTIVE"]
        .into_iter()
        .find(|f| r.flags.iter().any(|x| x == f))
}

pub fn is_diskful(r: &ResourceWithVolumes) -> bool {
    !r.flags.iter().any(|f| {
        matches!(
            f.as_str(),
            "DISKLESS" | "DRBD_DISKLESS" | "TIE_BREAKER" | "NVME_INITIATOR"
        )
    })
}

/// A snapshot to restore from, resolved from the EdgeSnapshot the spec names.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreSource {
    /// `<namespace>/<name>` of the EdgeSnapshot.
    pub id: String,
    pub resource: String,
    pub snapshot: String,
    pub nodes: Vec<String>,
    /// Size of the snapshot's volume 0: a restore needs a volume definition of exactly this
    /// size (`FAIL_INVLD_VLM_SIZE` otherwise); None when LINSTOR did not show the snapshot.
    pub size_kib: Option<u64>,
    /// The owner uid in the snapshot's copy of the source's properties: the restore writes it
    /// onto the target (see [`ownership::restored_over`]).
    pub copied_owner_uid: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum VolumePlan {
    /// An object with our name that we must not touch.
    Conflict(String),
    /// Writes to make, in order (empty: converged).
    Ops(Vec<Op>),
}

pub struct PlanInput<'a> {
    pub owner: &'a Owner,
    pub name: &'a str,
    pub spec: &'a ValidSpec,
    pub features: Features,
    pub observed: &'a Observed,
    /// The user asked to adopt a released resource (annotation).
    pub adopt_released: bool,
    pub source: Option<&'a RestoreSource>,
    /// How many more LINSTOR nodes could take a replica now (online, not evacuating, not
    /// hosting one); None when node state is not known.
    pub placeable: Option<u32>,
    /// The edge request that created the volume (`request_trace`): named on the resource
    /// definition it creates, so that LINSTOR's side of the trail carries it too.
    pub request_id: Option<&'a str>,
}

fn rd_path(name: &str) -> String {
    format!("/v1/resource-definitions/{}", seg(name))
}

/// Plans the writes for one volume.
pub fn plan(input: &PlanInput<'_>) -> VolumePlan {
    let PlanInput {
        owner,
        name,
        spec,
        features,
        observed,
        adopt_released,
        source,
        placeable,
        request_id,
    } = *input;
    let mut ops = Vec::new();
    let rd = observed.rd.as_ref();
    let restored_over = match (rd, source) {
        (Some(r), Some(src)) => {
            ownership::restored_over(&r.props, owner, src.copied_owner_uid.as_deref())
        }
        _ => false,
    };
    let ownership = if restored_over {
        Ownership::Ours
    } else {
        ownership::classify(rd.map(|r| &r.props), owner)
    };
    match ownership {
        Ownership::Foreign { why } => {
            return VolumePlan::Conflict(format!(
                "LINSTOR resource definition {name} already exists and {why}; edgebind leaves it untouched. Rename this EdgeVolume or remove the other object"
            ));
        }
        Ownership::Released { previous } if !adopt_released => {
            return VolumePlan::Conflict(format!(
                "LINSTOR resource definition {name} was released by the deleted EdgeVolume {previous} (deletionPolicy Retain) and still holds its data. To take it over, set the annotation {}: \"true\"",
                crate::crd::volume::ADOPT_RELEASED_ANNOTATION
            ));
        }
        Ownership::Released { .. } => {
            let mut m = PropsModify {
                override_props: owner.marker(),
                delete_props: vec![ownership::RELEASED.into()],
            };
            m.override_props.extend(spec.props.clone());
            m.override_props
                .insert(ownership::LAST_APPLIED.into(), last_applied(spec));
            ops.push(Op::put(
                rd_path(name),
                m,
                format!("adopt released resource definition {name}"),
            ));
            // Placement and size follow on the next pass, from the adopted object.
            return VolumePlan::Ops(ops);
        }
        Ownership::Absent => {
            plan_create(name, owner, spec, features, source, request_id, &mut ops);
            return VolumePlan::Ops(ops);
        }
        Ownership::Ours => {}
    }
    let Some(rd) = rd else {
        return VolumePlan::Ops(ops);
    };

    // Properties: set what differs, delete what we set before and no longer want.
    let mut m = PropsModify::default();
    if let (true, Some(src)) = (restored_over, source) {
        // The restore copied the source's markers over ours: put ours back, and drop what
        // only described the source (its release, its snapshots' owner records).
        m.override_props = owner.marker();
        m.override_props
            .insert(ownership::RESTORED_FROM.into(), src.id.clone());
        for k in rd.props.keys() {
            if k == ownership::RELEASED || k.starts_with(ownership::SNAPSHOT_OWNERS) {
                m.delete_props.push(k.clone());
            }
        }
    }
    for (k, v) in &spec.props {
        if rd.props.get(k) != Some(v) {
            m.override_props.insert(k.clone(), v.clone());
        }
    }
    if let Some(fs) = &spec.fs_type
        && rd.props.get(super::pv::FS_TYPE_PROP) != Some(fs)
    {
        m.override_props
            .insert(super::pv::FS_TYPE_PROP.into(), fs.clone());
    }
    let previous: Vec<String> = rd
        .props
        .get(ownership::LAST_APPLIED)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    for k in previous {
        if !spec.props.contains_key(&k) && rd.props.contains_key(&k) && k.starts_with("Aux/") {
            m.delete_props.push(k);
        }
    }
    let la = last_applied(spec);
    let track = !spec.props.is_empty() || rd.props.contains_key(ownership::LAST_APPLIED);
    if track && rd.props.get(ownership::LAST_APPLIED) != Some(&la) {
        m.override_props.insert(ownership::LAST_APPLIED.into(), la);
    }
    if !m.override_props.is_empty() || !m.delete_props.is_empty() {
        ops.push(Op::put(
            rd_path(name),
            m,
            format!("update properties of {name}"),
        ));
    }

    let restoring = source.is_some() && rd.props.contains_key(ownership::RESTORED_FROM);
    if let (Some(src), true, None) = (source, restoring, observed.live_resources().next()) {
        // Restore before anything else: the server restores only onto a volume definition of
        // the snapshot's exact size, so growing to the spec's size waits until the data is
        // there. A volume definition of another size (grown by an older edgebind before the
        // restore, or made by hand) can never take the restore: recreate it from the snapshot.
        match observed.volume() {
            None => ops.push(restore_vd(name, src)),
            Some(vd) if src.size_kib.is_some_and(|s| s != vd.size_kib) => {
                ops.push(Op::delete(
                    format!("{}/volume-definitions/0", rd_path(name)),
                    format!(
                        "delete volume 0 of {name} ({} KiB): the restore needs the snapshot's size",
                        vd.size_kib
                    ),
                ));
                ops.push(restore_vd(name, src));
            }
            Some(_) => {}
        }
        ops.push(restore_resources(name, src));
        return VolumePlan::Ops(ops);
    }
    match observed.volume() {
        None => {
            ops.push(create_vd(name, spec.size_kib));
        }
        Some(vd) if vd.size_kib < spec.size_kib => {
            ops.push(Op::put(
                format!("{}/volume-definitions/0", rd_path(name)),
                VolumeDefinitionResize {
                    size_kib: spec.size_kib,
                },
                format!(
                    "grow {name} from {} KiB to {} KiB",
                    vd.size_kib, spec.size_kib
                ),
            ));
        }
        _ => {}
    }
    let diskful = observed.diskful().count() as u32;
    let target = match &spec.placement {
        ValidPlacement::Group(_) => (diskful == 0).then_some(0),
        // Autoplace places all it is asked for or nothing (FAIL_NOT_ENOUGH_NODES), so ask for
        // no more than the nodes that can take a replica now: a lost node's replica comes back
        // as far as nodes allow, and with none left no call is made at all (no retry loop).
        ValidPlacement::Explicit { place_count, .. } => {
            let reachable =
                placeable.map_or(*place_count, |free| (*place_count).min(diskful + free));
            (diskful < reachable).then_some(reachable)
        }
    };
    if let Some(t) = target {
        ops.push(autoplace(name, spec, diskful, t));
    }
    VolumePlan::Ops(ops)
}

fn last_applied(spec: &ValidSpec) -> String {
    serde_json::to_string(&spec.props.keys().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

fn plan_create(
    name: &str,
    owner: &Owner,
    spec: &ValidSpec,
    features: Features,
    source: Option<&RestoreSource>,
    request_id: Option<&str>,
    ops: &mut Vec<Op>,
) {
    let mut props = owner.marker();
    props.extend(spec.props.clone());
    if let Some(fs) = &spec.fs_type {
        // Set before the first replica exists: the satellite makes the filesystem when it
        // creates a resource (linstor-server `MkfsUtils.makeFileSystemOnMarked`).
        props.insert(super::pv::FS_TYPE_PROP.into(), fs.clone());
    }
    if let Some(id) = request_id {
        props.insert(crate::request_trace::REQUEST_ID_PROP.into(), id.to_string());
    }
    if !spec.props.is_empty() {
        props.insert(ownership::LAST_APPLIED.into(), last_applied(spec));
    }
    let group = match &spec.placement {
        ValidPlacement::Group(g) => Some(g.clone()),
        ValidPlacement::Explicit { .. } => None,
    };
    if let Some(src) = source {
        props.insert(ownership::RESTORED_FROM.into(), src.id.clone());
        ops.push(Op::post(
            OpKind::Create,
            "/v1/resource-definitions".into(),
            ResourceDefinitionCreate {
                resource_definition: NewResourceDefinition {
                    name: name.into(),
                    resource_group_name: group,
                    props,
                },
            },
            format!("create resource definition {name} to restore {}", src.id),
        ));
        ops.push(restore_vd(name, src));
        ops.push(restore_resources(name, src));
        return;
    }
    if let (Some(g), true) = (&group, features.spawn_with_props) {
        // One write: spawn creates the definition, the volume and places it, with our marker.
        ops.push(Op::post(
            OpKind::Create,
            format!("/v1/resource-groups/{}/spawn", seg(g)),
            ResourceGroupSpawn {
                resource_definition_name: name.into(),
                volume_sizes: vec![spec.size_kib],
                resource_definition_props: props,
            },
            format!(
                "spawn {name} ({} KiB) from resource group {g}",
                spec.size_kib
            ),
        ));
        return;
    }
    ops.push(Op::post(
        OpKind::Create,
        "/v1/resource-definitions".into(),
        ResourceDefinitionCreate {
            resource_definition: NewResourceDefinition {
                name: name.into(),
                resource_group_name: group,
                props,
            },
        },
        format!("create resource definition {name}"),
    ));
    ops.push(create_vd(name, spec.size_kib));
    let all = spec.place_count().unwrap_or(0);
    ops.push(autoplace(name, spec, 0, all));
}

fn create_vd(name: &str, size_kib: u64) -> Op {
    Op::post(
        OpKind::Create,
        format!("{}/volume-definitions", rd_path(name)),
        VolumeDefinitionCreate {
            volume_definition: NewVolumeDefinition {
                volume_number: 0,
                size_kib,
            },
        },
        format!("create volume 0 of {name} ({size_kib} KiB)"),
    )
}

/// Autoplace to `target` diskful replicas (explicit placement; at most the spec's count).
fn autoplace(name: &str, spec: &ValidSpec, have: u32, target: u32) -> Op {
    let (req, what) = match &spec.placement {
        ValidPlacement::Group(g) => (
            AutoPlaceRequest {
                select_filter: AutoSelectFilter::default(),
                diskless_on_remaining: None,
                layer_list: None,
            },
            format!("place {name} as resource group {g} says"),
        ),
        ValidPlacement::Explicit {
            place_count,
            storage_pools,
            replicas_on_same,
            replicas_on_different,
            layers,
            diskless_on_remaining,
        } => (
            AutoPlaceRequest {
                select_filter: AutoSelectFilter {
                    place_count: Some(target.min(*place_count)),
                    storage_pool_list: non_empty(storage_pools),
                    replicas_on_same: non_empty(replicas_on_same),
                    replicas_on_different: non_empty(replicas_on_different),
                    layer_stack: None,
                    diskless_on_remaining: None,
                },
                diskless_on_remaining: *diskless_on_remaining,
                layer_list: non_empty(layers),
            },
            if have == 0 {
                format!("place {target} replicas of {name}")
            } else if target < *place_count {
                format!(
                    "add replicas to {name}: {have} -> {target} (of {place_count}: no more nodes can take one now)"
                )
            } else {
                format!("add replicas to {name}: {have} -> {target}")
            },
        ),
    };
    Op::post(
        OpKind::Create,
        format!("{}/autoplace", rd_path(name)),
        req,
        what,
    )
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    if v.is_empty() { None } else { Some(v.to_vec()) }
}

fn restore_vd(name: &str, src: &RestoreSource) -> Op {
    Op::post(
        OpKind::Create,
        format!(
            "{}/snapshot-restore-volume-definition/{}",
            rd_path(&src.resource),
            seg(&src.snapshot)
        ),
        SnapshotRestore {
            to_resource: name.into(),
            nodes: vec![],
        },
        format!(
            "restore the volume definition of {name} from snapshot {}",
            src.id
        ),
    )
}

fn restore_resources(name: &str, src: &RestoreSource) -> Op {
    Op::post(
        OpKind::Create,
        format!(
            "{}/snapshot-restore-resource/{}",
            rd_path(&src.resource),
            seg(&src.snapshot)
        ),
        SnapshotRestore {
            to_resource: name.into(),
            nodes: src.nodes.clone(),
        },
        format!(
            "restore the data of {name} from snapshot {} on {}",
            src.id,
            src.nodes.join(", ")
        ),
    )
}

/// Writes that release (Retain) or delete (Delete) a volume's LINSTOR objects on deletion.
pub fn plan_cleanup(
    owner: &Owner,
    name: &str,
    delete: bool,
    observed: &Observed,
) -> Result<Vec<Op>, String> {
    let Some(rd) = observed.rd.as_ref() else {
        return Ok(vec![]);
    };
    match ownership::classify(Some(&rd.props), owner) {
        Ownership::Ours => {}
        // Not ours (any more): nothing to do, never touch it.
        _ => return Ok(vec![]),
    }
    if !delete {
        return Ok(vec![Op::put(
            rd_path(name),
            PropsModify {
                override_props: Props::from([(
                    ownership::RELEASED.to_string(),
                    "true".to_string(),
                )]),
                delete_props: vec![],
            },
            format!("mark {name} as released (deletionPolicy Retain keeps the data)"),
        )]);
    }
    let mut ops = Vec::new();
    for s in &observed.snapshots {
        let marker =
            ownership::snapshot_marker(&s.snapshot_definition_props, Some(&rd.props), &s.name);
        if marker.get(ownership::MANAGED_BY).map(String::as_str) == Some(ownership::MANAGER) {
            ops.push(Op::delete(
                format!("{}/snapshots/{}", rd_path(name), seg(&s.name)),
                format!("delete snapshot {} of {name}", s.name),
            ));
        } else {
            return Err(format!(
                "snapshot {} of {name} was not made by edgebind, so edgebind will not delete it, and LINSTOR cannot delete the volume while it exists; delete the snapshot or set deletionPolicy: Retain",
                s.name
            ));
        }
    }
    if let Some(r) = observed
        .live_resources()
        .find(|r| r.state.as_ref().and_then(|s| s.in_use) == Some(true))
    {
        return Err(format!(
            "{name} is in use on node {}; detach it before deleting",
            r.node_name
        ));
    }
    ops.push(Op::delete(
        rd_path(name),
        format!("delete resource definition {name} and its data"),
    ));
    Ok(ops)
}
