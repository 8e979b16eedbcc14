//! One pass over an EdgeVolume: validate, check the backend, resolve the restore source,
//! observe LINSTOR, plan, write, compute status. The controller runs it against the cluster and
//! `edgebind plan` against its manifests; what differs is only the [`World`].

use std::sync::Arc;

use kube::ResourceExt;

use super::plan::{self, PlanInput, RestoreSource, VolumePlan};
use super::pv::{self, PvOp, PvPlan};
use super::validate::ValidPlacement;
use super::{owner, status, validate};
use crate::controller::backends::BackendHandle;
use crate::controller::inventory::Inventory;
use crate::controller::ownership::OWNER_UID;
use crate::controller::world::{Next, World};
use crate::crd::EdgeVolume;
use crate::crd::conditions::{Desired, PROGRESSING};
use crate::crd::reasons::VolumeReason;
use crate::crd::volume::ADOPT_RELEASED_ANNOTATION;
use crate::linstor::ops::seg;
use crate::linstor::types::ResourceGroupInfo;
use crate::linstor::version::Features;
use crate::linstor::{LinstorError, Op, naming, rc};

/// The outcome of one pass.
#[derive(Debug)]
pub(crate) struct Pass {
    pub(crate) linstor_name: String,
    /// The LINSTOR writes made (or, where the world does not write, that would be made).
    pub(crate) ops: Vec<Op>,
    /// The PersistentVolume writes made (or that would be made).
    pub(crate) pv_ops: Vec<PvOp>,
    /// LINSTOR's view of the volume, when it was read and the volume is ours.
    pub(crate) computed: Option<status::Computed>,
    pub(crate) conditions: Vec<Desired>,
    pub(crate) next: Next,
}

impl Pass {
    fn stop(linstor_name: &str, reason: VolumeReason, msg: &str, next: Next) -> Self {
        let retrying = !matches!(next, Next::AwaitChange | Next::Resync);
        Pass {
            linstor_name: linstor_name.to_string(),
            ops: vec![],
            pv_ops: vec![],
            computed: None,
            conditions: status::failed(reason, msg, retrying),
            next,
        }
    }
}

pub(crate) async fn run<W: World>(w: &W, ev: &EdgeVolume) -> Result<Pass, kube::Error> {
    let base = owner(ev);
    let lname = naming::volume_name(&base.namespace, &base.name);
    let spec = match validate::validate(&ev.spec) {
        Ok(s) => s,
        // Only a spec change can fix this: no LINSTOR call, no retry.
        Err(msg) => {
            return Ok(Pass::stop(
                &lname,
                VolumeReason::InvalidSpec,
                &msg,
                Next::AwaitChange,
            ));
        }
    };
    let (backend, features) = match backend_ready(w, &ev.spec.backend_ref) {
        Ok(ready) => ready,
        Err(msg) => {
            return Ok(Pass::stop(
                &lname,
                VolumeReason::BackendNotReady,
                &msg,
                Next::Retry,
            ));
        }
    };
    let inv = &backend.inventory;
    let source = match &spec.source_snapshot {
        None => None,
        Some(s) => match resolve_source(w, ev, s, inv).await? {
            Ok(src) => Some(src),
            Err(msg) => {
                return Ok(Pass::stop(
                    &lname,
                    VolumeReason::WaitingForSnapshot,
                    &msg,
                    Next::Retry,
                ));
            }
        },
    };
    let observed = match inv.observe(&lname).await {
        Ok(o) => o,
        Err(e) => return Ok(failed(&lname, e)),
    };
    let o = w.owner(base, observed.rd.as_ref().map(|r| &r.props));
    let stamp = crate::request_trace::Stamp::from_annotations(ev.annotations());
    let request_id = stamp.as_ref().map_or("", |s| s.id.as_str());
    let adopt = ev
        .annotations()
        .get(ADOPT_RELEASED_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    // How many more nodes could take a replica (from the backend's last node read).
    let placeable = backend.nodes.as_ref().map(|v| {
        let hosting: Vec<&str> = observed
            .live_resources()
            .map(|r| r.node_name.as_str())
            .collect();
        v.placeable_besides(&hosting)
    });
    let input = PlanInput {
        placeable,
        owner: &o,
        name: &lname,
        spec: &spec,
        features,
        observed: &observed,
        adopt_released: adopt,
        source: source.as_ref(),
        request_id: stamp.as_ref().map(|s| s.id.as_str()),
    };
    let ops = match plan::plan(&input) {
        // The other object may go away: look again at the next resync.
        VolumePlan::Conflict(msg) => {
            return Ok(Pass::stop(
                &lname,
                VolumeReason::Conflict,
                &msg,
                Next::Resync,
            ));
        }
        VolumePlan::Ops(ops) => ops,
    };
    if let ValidPlacement::Group(g) = &spec.placement
        && ops
            .iter()
            .any(|op| op.path.ends_with("/autoplace") || op.path.ends_with("/spawn"))
    {
        // Spawn and `autoplace {}` take the count from the group; without one the server
        // places nothing and answers only a warning, so say so instead of sending them.
        match group_places_nothing(inv, g).await {
            Ok(false) => {}
            Ok(true) => {
                return Ok(Pass::stop(
                    &lname,
                    VolumeReason::ResourceGroupPlacesNothing,
                    &format!(
                        "LINSTOR resource group {g} sets no select_filter.place_count, so LINSTOR places no replica for it; set one on the resource group (linstor resource-group modify {g} --place-count N) or use placement.placeCount instead of placement.resourceGroup"
                    ),
                    Next::Resync,
                ));
            }
            Err(e) => return Ok(failed(&lname, e)),
        }
    }
    let wrote = !ops.is_empty();
    if w.writes() {
        let key = format!("{}/{}", o.namespace, o.name);
        for (i, op) in ops.iter().enumerate() {
            tracing::info!(volume = %key, request_id, op = %op.summary, "LINSTOR write");
            if let Err(e) = inv.client().execute(op).await {
                inv.mark_dirty(&lname);
                if e.is_exists() {
                    // Someone (another replica of us, or a person) created it meanwhile:
                    // re-read and compare on the next pass rather than assume.
                    tracing::info!(volume = %key, "already exists; re-reading");
                    return Ok(Pass {
                        ops: ops[..i].to_vec(),
                        ..Pass::stop(&lname, VolumeReason::Applying, "", Next::Reread)
                    });
                }
                return Ok(Pass {
                    ops: ops[..i].to_vec(),
                    ..failed(&lname, e)
                });
            }
        }
        if wrote {
            inv.mark_dirty(&lname);
        }
    }
    let mut computed = status::compute(&spec, &observed, wrote);
    if let Some(view) = backend.nodes.as_deref() {
        status::with_nodes(&mut computed, &spec, &observed, view, wrote);
    }
    let pv_ops = match persistent_volume(w, ev, &o, &lname, &spec, &observed, &mut computed).await {
        Ok(ops) => ops,
        Err(e) => {
            // The LINSTOR writes are made; the PV follows on the retry.
            return Ok(Pass {
                ops,
                ..Pass::stop(
                    &lname,
                    VolumeReason::Applying,
                    &format!("cannot write the PersistentVolume: {e}"),
                    Next::Retry,
                )
            });
        }
    };
    let wrote = wrote || !pv_ops.is_empty();
    let progressing = wrote
        || computed
            .conditions
            .iter()
            .any(|c| c.type_ == PROGRESSING && c.status);
    Ok(Pass {
        linstor_name: lname,
        ops,
        pv_ops,
        conditions: computed.conditions.clone(),
        computed: Some(computed),
        next: if progressing {
            Next::Progressing
        } else {
            Next::Settled
        },
    })
}

/// Makes the volume's PersistentVolume match the spec, once LINSTOR holds the volume, and
/// records it in `computed`; returns the writes. A PV no longer asked for is deleted unless a
/// claim is bound to it. Volumes that never asked for one cost no call.
async fn persistent_volume<W: World>(
    w: &W,
    ev: &EdgeVolume,
    o: &crate::controller::ownership::Owner,
    lname: &str,
    spec: &validate::ValidSpec,
    observed: &plan::Observed,
    computed: &mut status::Computed,
) -> Result<Vec<PvOp>, kube::Error> {
    let had = ev.status.as_ref().and_then(|s| s.persistent_volume.clone());
    let Some(req) = &spec.persistent_volume else {
        let Some(had) = had else {
            return Ok(vec![]);
        };
        let existing = w.persistent_volume(&had.name).await?;
        return Ok(match pv::plan_delete(existing.as_ref(), &o.uid) {
            pv::PvDeletion::Nothing => vec![],
            pv::PvDeletion::Blocked(_) => {
                // Still bound: keep reporting it until the claim is released.
                computed.persistent_volume = Some(pv_state(&had.name, existing.as_ref()));
                vec![]
            }
            pv::PvDeletion::Delete(op) => {
                if w.writes() {
                    w.write_pv(&op).await?;
                }
                vec![op]
            }
        });
    };
    let name = pv::pv_name(&o.namespace, &o.name);
    let Some(vd) = observed.volume() else {
        // Not in LINSTOR yet: the PV follows once the volume definition exists.
        computed.persistent_volume = had;
        return Ok(vec![]);
    };
    let want = pv::desired(o, req, lname, vd.size_kib);
    let existing = w.persistent_volume(&name).await?;
    match pv::plan(existing.as_ref(), &want, &o.uid) {
        PvPlan::Conflict(msg) => {
            for c in computed.conditions.iter_mut() {
                if c.type_ == crate::crd::conditions::READY {
                    *c = Desired::new(
                        c.type_,
                        false,
                        VolumeReason::PersistentVolumeConflict,
                        msg.clone(),
                    );
                }
            }
            computed.persistent_volume = None;
            Ok(vec![])
        }
        PvPlan::Write(op) => {
            let after = match &op {
                Some(op) if op.verb == pv::PvVerb::Create => Some(want.clone()),
                _ => existing,
            };
            computed.persistent_volume = Some(pv_state(&name, after.as_ref()));
            if let Some(op) = &op
                && w.writes()
            {
                tracing::info!(volume = %format!("{}/{}", o.namespace, o.name), op = %op.summary, "PersistentVolume write");
                w.write_pv(op).await?;
            }
            Ok(op.into_iter().collect())
        }
    }
}

fn pv_state(
    name: &str,
    pv: Option<&k8s_openapi::api::core::v1::PersistentVolume>,
) -> crate::crd::volume::PersistentVolumeState {
    crate::crd::volume::PersistentVolumeState {
        name: name.to_string(),
        phase: pv
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone()),
        claim: pv
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.claim_ref.as_ref())
            .map(|c| {
                format!(
                    "{}/{}",
                    c.namespace.as_deref().unwrap_or_default(),
                    c.name.as_deref().unwrap_or_default()
                )
            }),
    }
}

/// The backend a volume names, once its reconciler has connected and probed it.
pub(crate) fn backend_ready<W: World>(
    w: &W,
    name: &str,
) -> Result<(Arc<BackendHandle>, Features), String> {
    match w.backend(name) {
        None => Err(format!(
            "LinstorBackend {name:?} does not exist or has not been checked yet"
        )),
        Some(h) => match (&h.problem, h.features) {
            (Some(p), _) => Err(format!("LinstorBackend {name:?} is not ready: {p}")),
            (None, None) => Err(format!("LinstorBackend {name:?} has not been probed yet")),
            (None, Some(f)) => Ok((h, f)),
        },
    }
}

fn failed(lname: &str, e: LinstorError) -> Pass {
    let reason = match &e {
        LinstorError::Unreachable { .. } => VolumeReason::LinstorUnreachable,
        LinstorError::Unauthorized { .. } => VolumeReason::Unauthorized,
        _ if e.has_code(rc::FAIL_NOT_ENOUGH_NODES) => VolumeReason::NotEnoughNodes,
        _ if e.has_code(rc::FAIL_NOT_FOUND_RSC_GRP) => VolumeReason::ResourceGroupNotFound,
        _ => VolumeReason::LinstorError,
    };
    let msg = e.to_string();
    Pass::stop(lname, reason, &msg, Next::Failed(e))
}

/// True when the resource group exists and sets no replica count (a missing group is left to
/// the write, which reports it).
async fn group_places_nothing(inv: &Inventory, group: &str) -> Result<bool, LinstorError> {
    match inv
        .client()
        .get::<ResourceGroupInfo>(&format!("/v1/resource-groups/{}", seg(group)), &[])
        .await
    {
        Ok(rg) => Ok(rg.select_filter.place_count.is_none()
            && rg.select_filter.additional_place_count.is_none()),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Resolves `source.snapshot` to a ready LINSTOR snapshot on the same backend.
async fn resolve_source<W: World>(
    w: &W,
    ev: &EdgeVolume,
    snap: &str,
    inv: &Inventory,
) -> Result<Result<RestoreSource, String>, kube::Error> {
    let ns = ev.namespace().unwrap_or_default();
    let Some(s) = w.snapshot(&ns, snap).await? else {
        return Ok(Err(format!("EdgeSnapshot {ns}/{snap} does not exist")));
    };
    if let Some(src_vol) = w.volume(&ns, &s.spec.volume_ref).await?
        && src_vol.spec.backend_ref != ev.spec.backend_ref
    {
        return Ok(Err(format!(
            "EdgeSnapshot {snap} is on backend {:?}, this volume on {:?}; restores stay within one LINSTOR cluster",
            src_vol.spec.backend_ref, ev.spec.backend_ref
        )));
    }
    let st = s.status.unwrap_or_default();
    match (st.ready_to_use, st.linstor_name, st.resource_name) {
        (true, Some(snapshot), Some(resource)) => {
            // What LINSTOR holds of the snapshot: its size and the properties a restore copies.
            // Unreadable now: the restore goes ahead without them and the next pass has them.
            let found = inv.observe(&resource).await.ok().and_then(|o| {
                o.snapshots
                    .into_iter()
                    .find(|x| x.name.eq_ignore_ascii_case(&snapshot))
            });
            Ok(Ok(RestoreSource {
                id: format!("{ns}/{snap}"),
                size_kib: found.as_ref().and_then(|x| {
                    x.volume_definitions
                        .iter()
                        .find(|v| v.volume_number == 0)
                        .map(|v| v.size_kib)
                }),
                copied_owner_uid: found
                    .as_ref()
                    .and_then(|x| x.copied_rd_props().get(OWNER_UID).cloned()),
                resource,
                snapshot,
                nodes: st.nodes,
            }))
        }
        _ => Ok(Err(format!(
            "waiting for EdgeSnapshot {ns}/{snap} to be ready to use"
        ))),
    }
}
