//! `EdgeVolume` reconciliation: the I/O around the pure steps in `validate`, `plan`, `status`.

pub mod plan;
pub mod status;
pub mod validate;

#[cfg(test)]
mod plan_tests;

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

use super::backends::BackendHandle;
use super::ownership::Owner;
use super::{Context, FINALIZER, skeleton};
use crate::crd::conditions::{self, Desired};
use crate::crd::reasons::VolumeReason;
use crate::crd::volume::{ADOPT_RELEASED_ANNOTATION, EdgeVolume, EdgeVolumeStatus};
use crate::crd::{DeletionPolicy, EdgeSnapshot};
use crate::linstor::{LinstorError, naming};
use plan::{PlanInput, RestoreSource, VolumePlan};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Linstor(#[from] LinstorError),
    #[error("{0}")]
    Blocked(String),
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<Error>>),
}

pub fn owner(ev: &EdgeVolume) -> Owner {
    Owner {
        kind: "EdgeVolume",
        namespace: ev.namespace().unwrap_or_default(),
        name: ev.name_any(),
        uid: ev.uid().unwrap_or_default(),
    }
}

pub async fn reconcile(ev: Arc<EdgeVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _guard = crate::metrics::ReconcileGuard::start("EdgeVolume");
    let api: Api<EdgeVolume> =
        Api::namespaced(ctx.client.clone(), &ev.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, ev, |event| async {
        match event {
            Finalizer::Apply(ev) => apply(ev, ctx.clone()).await,
            Finalizer::Cleanup(ev) => cleanup(ev, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Reports this pass on the volume: LINSTOR's view (when read) and the conditions.
async fn report(
    ev: &EdgeVolume,
    ctx: &Context,
    linstor_name: &str,
    computed: Option<status::Computed>,
    conds: Vec<Desired>,
) -> Result<(), kube::Error> {
    skeleton::report(ctx, ev, volume_status(ev, linstor_name, computed), &conds).await
}

/// The status fields other than conditions (kept from the old status where not re-read).
pub(crate) fn volume_status(
    ev: &EdgeVolume,
    linstor_name: &str,
    computed: Option<status::Computed>,
) -> EdgeVolumeStatus {
    let mut new = EdgeVolumeStatus {
        linstor_name: Some(linstor_name.to_string()),
        ..ev.status.clone().unwrap_or_default()
    };
    if let Some(c) = computed {
        new.size = c.size;
        new.diskful_replicas = c.diskful_replicas;
        new.replicas = c.replicas;
    }
    new
}

fn backend_ready(ctx: &Context, name: &str) -> Result<Arc<BackendHandle>, String> {
    match ctx.backends.get(name) {
        None => Err(format!(
            "LinstorBackend {name:?} does not exist or has not been checked yet"
        )),
        Some(h) => match (&h.problem, h.features) {
            (Some(p), _) => Err(format!("LinstorBackend {name:?} is not ready: {p}")),
            (None, None) => Err(format!("LinstorBackend {name:?} has not been probed yet")),
            (None, Some(_)) => Ok(h),
        },
    }
}

/// Resolves `source.snapshot` to a ready LINSTOR snapshot on the same backend.
async fn resolve_source(
    ctx: &Context,
    ev: &EdgeVolume,
    snap: &str,
) -> Result<Result<RestoreSource, String>, kube::Error> {
    let ns = ev.namespace().unwrap_or_default();
    let snaps: Api<EdgeSnapshot> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(s) = snaps.get_opt(snap).await? else {
        return Ok(Err(format!("EdgeSnapshot {ns}/{snap} does not exist")));
    };
    let vols: Api<EdgeVolume> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(src_vol) = vols.get_opt(&s.spec.volume_ref).await?
        && src_vol.spec.backend_ref != ev.spec.backend_ref
    {
        return Ok(Err(format!(
            "EdgeSnapshot {snap} is on backend {:?}, this volume on {:?}; restores stay within one LINSTOR cluster",
            src_vol.spec.backend_ref, ev.spec.backend_ref
        )));
    }
    let st = s.status.unwrap_or_default();
    match (st.ready_to_use, st.linstor_name, st.resource_name) {
        (true, Some(snapshot), Some(resource)) => Ok(Ok(RestoreSource {
            id: format!("{ns}/{snap}"),
            resource,
            snapshot,
            nodes: st.nodes,
        })),
        _ => Ok(Err(format!(
            "waiting for EdgeSnapshot {ns}/{snap} to be ready to use"
        ))),
    }
}

async fn apply(ev: Arc<EdgeVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let o = owner(&ev);
    let lname = naming::volume_name(&o.namespace, &o.name);
    let key = format!("{}/{}", o.namespace, o.name);
    let spec = match validate::validate(&ev.spec) {
        Ok(s) => s,
        Err(msg) => {
            // Only a spec change can fix this: no LINSTOR call, no retry.
            report(
                &ev,
                &ctx,
                &lname,
                None,
                status::failed(VolumeReason::InvalidSpec, &msg, false),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let backend = match backend_ready(&ctx, &ev.spec.backend_ref) {
        Ok(b) => b,
        Err(msg) => {
            report(
                &ev,
                &ctx,
                &lname,
                None,
                status::failed(VolumeReason::BackendNotReady, &msg, true),
            )
            .await?;
            return Ok(skeleton::retry(&ctx, ev.as_ref()));
        }
    };
    let source = match &spec.source_snapshot {
        None => None,
        Some(s) => match resolve_source(&ctx, &ev, s).await? {
            Ok(src) => Some(src),
            Err(msg) => {
                report(
                    &ev,
                    &ctx,
                    &lname,
                    None,
                    status::failed(VolumeReason::WaitingForSnapshot, &msg, true),
                )
                .await?;
                return Ok(skeleton::retry(&ctx, ev.as_ref()));
            }
        },
    };
    let inv = &backend.inventory;
    let observed = match inv.observe(&lname).await {
        Ok(o) => o,
        Err(e) => return fail(&ev, &ctx, &lname, e).await,
    };
    let features = backend
        .features
        .unwrap_or(crate::linstor::version::Features::for_version(
            crate::linstor::version::MIN_SUPPORTED,
        ));
    let adopt = ev
        .annotations()
        .get(ADOPT_RELEASED_ANNOTATION)
        .map(String::as_str)
        == Some("true");
    let input = PlanInput {
        owner: &o,
        name: &lname,
        spec: &spec,
        features,
        observed: &observed,
        adopt_released: adopt,
        source: source.as_ref(),
    };
    let ops = match plan::plan(&input) {
        VolumePlan::Conflict(msg) => {
            report(
                &ev,
                &ctx,
                &lname,
                None,
                status::failed(VolumeReason::Conflict, &msg, false),
            )
            .await?;
            // The other object may go away: look again at the next resync.
            return Ok(Action::requeue(ctx.config.resync));
        }
        VolumePlan::Ops(ops) => ops,
    };
    let wrote = !ops.is_empty();
    for op in &ops {
        tracing::info!(volume = %key, op = %op.summary, "LINSTOR write");
        if let Err(e) = inv.client().execute(op).await {
            inv.mark_dirty(&lname);
            if e.is_exists() {
                // Someone (another replica of us, or a person) created it meanwhile: re-read and
                // compare on the next pass rather than assume.
                tracing::info!(volume = %key, "already exists; re-reading");
                return Ok(Action::requeue(std::time::Duration::from_millis(200)));
            }
            return fail(&ev, &ctx, &lname, e).await;
        }
    }
    if wrote {
        inv.mark_dirty(&lname);
        ctx.event(
            &ev.object_ref(&()),
            true,
            VolumeReason::Applied,
            &ops.iter()
                .map(|o| o.summary.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
        .await;
    }
    let computed = status::compute(&spec, &observed, wrote);
    let conds = computed.conditions.clone();
    let settled = !wrote
        && conds
            .iter()
            .all(|c| c.type_ != conditions::PROGRESSING || !c.status);
    report(&ev, &ctx, &lname, Some(computed), conds).await?;
    Ok(skeleton::settled(
        &ctx,
        ev.as_ref(),
        if settled {
            ctx.config.resync
        } else {
            ctx.config.progress_interval
        },
    ))
}

async fn fail(
    ev: &EdgeVolume,
    ctx: &Context,
    lname: &str,
    e: LinstorError,
) -> Result<Action, Error> {
    let reason = match &e {
        LinstorError::Unreachable { .. } => VolumeReason::LinstorUnreachable,
        LinstorError::Unauthorized { .. } => VolumeReason::Unauthorized,
        _ if e.has_code(crate::linstor::rc::FAIL_NOT_ENOUGH_NODES) => VolumeReason::NotEnoughNodes,
        _ if e.has_code(crate::linstor::rc::FAIL_NOT_FOUND_RSC_GRP) => {
            VolumeReason::ResourceGroupNotFound
        }
        _ => VolumeReason::LinstorError,
    };
    report(
        ev,
        ctx,
        lname,
        None,
        status::failed(reason, &e.to_string(), true),
    )
    .await?;
    Err(Error::Linstor(e))
}

async fn cleanup(ev: Arc<EdgeVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let o = owner(&ev);
    let lname = naming::volume_name(&o.namespace, &o.name);
    let backends: Api<crate::crd::LinstorBackend> = Api::all(ctx.client.clone());
    let backend = match backend_ready(&ctx, &ev.spec.backend_ref) {
        Ok(b) => b,
        Err(msg) => {
            if backends.get_opt(&ev.spec.backend_ref).await?.is_none() {
                // The backend is gone for good: nothing edgebind can reach to clean up.
                ctx.event(
                    &ev.object_ref(&()),
                    false,
                    VolumeReason::BackendGone,
                    &format!("{msg}; LINSTOR objects (if any) were left as they are"),
                )
                .await;
                return Ok(Action::await_change());
            }
            return Err(Error::Blocked(msg));
        }
    };
    let inv = &backend.inventory;
    inv.mark_dirty(&lname);
    let observed = inv.observe(&lname).await?;
    let delete = ev.spec.deletion_policy == DeletionPolicy::Delete;
    let ops = match plan::plan_cleanup(&o, &lname, delete, &observed) {
        Ok(ops) => ops,
        Err(msg) => {
            let _ = report(
                &ev,
                &ctx,
                &lname,
                None,
                status::failed(VolumeReason::DeletionBlocked, &msg, true),
            )
            .await;
            return Err(Error::Blocked(msg));
        }
    };
    for op in &ops {
        tracing::info!(volume = %lname, op = %op.summary, "LINSTOR write");
        inv.client().execute(op).await?;
    }
    inv.mark_dirty(&lname);
    if !ops.is_empty() {
        ctx.event(
            &ev.object_ref(&()),
            true,
            if delete {
                VolumeReason::Deleted
            } else {
                VolumeReason::Released
            },
            &ops.iter()
                .map(|o| o.summary.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
        .await;
    }
    Ok(Action::await_change())
}
