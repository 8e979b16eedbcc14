//! `EdgeVolume` reconciliation: the I/O around the pure steps in `validate`, `plan`, `status`.

pub(crate) mod cache;
pub(crate) mod pass;
pub mod plan;
pub mod pv;
pub(crate) mod status;
pub mod validate;

#[cfg(test)]
mod plan_tests;

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

use super::ownership::Owner;
use super::world::{Cluster, Next};
use super::{Context, FINALIZER, skeleton};
use crate::crd::DeletionPolicy;
use crate::crd::conditions::{Desired, READY};
use crate::crd::reasons::VolumeReason;
use crate::crd::volume::{EdgeVolume, EdgeVolumeStatus};
use crate::linstor::{LinstorError, naming};
use crate::request_trace::{Stamp, now_ms};

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
    /// The cached spec did not decode (`cache::CachedVolume`); never expected.
    #[error("the cached spec did not decode: {0}")]
    Cache(serde_json::Error),
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
        new.persistent_volume = c.persistent_volume;
    }
    new
}

async fn apply(ev: Arc<EdgeVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = now_ms();
    let p = pass::run(&Cluster(&ctx), &ev).await?;
    let stamp = Stamp::from_annotations(ev.annotations());
    // The edge request behind this volume, in every event of it (`request_trace`).
    let of_request = |note: String| match &stamp {
        Some(s) => format!("{note} (request {})", s.id),
        None => note,
    };
    if !p.next.reports() {
        return Ok(p.next.action(&ctx, ev.as_ref())?);
    }
    if !(p.ops.is_empty() && p.pv_ops.is_empty())
        && matches!(p.next, Next::Settled | Next::Progressing)
    {
        ctx.event(
            &ev.object_ref(&()),
            true,
            VolumeReason::Applied,
            &of_request(
                p.ops
                    .iter()
                    .map(|o| o.summary.as_str())
                    .chain(p.pv_ops.iter().map(|o| o.summary.as_str()))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        )
        .await;
    }
    if let Some(s) = &stamp {
        let ready = p.conditions.iter().any(|c| c.type_ == READY && c.status);
        let outcome = p.next.request_outcome(ready);
        ctx.follow_request(
            &ev.object_ref(&()),
            s,
            (started, now_ms()),
            !p.ops.is_empty(),
            outcome,
            VolumeReason::RequestCompleted,
            VolumeReason::RequestFailed,
        )
        .await;
    }
    report(&ev, &ctx, &p.linstor_name, p.computed, p.conditions).await?;
    Ok(p.next.action(&ctx, ev.as_ref())?)
}

/// The PV delete that follows the storage cleanup (None: no PV of ours), or why the deletion
/// must wait. Volumes that never had a PV cost no call.
async fn cleanup_pv_check(
    ev: &EdgeVolume,
    o: &Owner,
    ctx: &Context,
) -> Result<Result<Option<pv::PvOp>, String>, kube::Error> {
    let recorded = ev
        .status
        .as_ref()
        .and_then(|s| s.persistent_volume.as_ref())
        .map(|p| p.name.clone());
    let name = match (recorded, &ev.spec.persistent_volume) {
        (Some(n), _) => n,
        (None, Some(_)) => pv::pv_name(&o.namespace, &o.name),
        (None, None) => return Ok(Ok(None)),
    };
    let existing = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(ctx.client.clone())
        .get_opt(&name)
        .await?;
    Ok(match pv::plan_delete(existing.as_ref(), &o.uid) {
        pv::PvDeletion::Nothing => Ok(None),
        pv::PvDeletion::Blocked(msg) => Err(msg),
        pv::PvDeletion::Delete(op) => Ok(Some(op)),
    })
}

async fn cleanup(ev: Arc<EdgeVolume>, ctx: Arc<Context>) -> Result<Action, Error> {
    let o = owner(&ev);
    let lname = naming::volume_name(&o.namespace, &o.name);
    let backends: Api<crate::crd::LinstorBackend> = Api::all(ctx.client.clone());
    let backend = match pass::backend_ready(&Cluster(&ctx), &ev.spec.backend_ref) {
        Ok((b, _)) => b,
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
    // A PV a claim is bound to holds the deletion: a workload may be using the volume.
    let pv_delete = match cleanup_pv_check(&ev, &o, &ctx).await? {
        Ok(op) => op,
        Err(msg) => {
            let _ = report(
                &ev,
                &ctx,
                &lname,
                None,
                status::failed(VolumeReason::PersistentVolumeBound, &msg, true),
            )
            .await;
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
    // The storage is released or deleted as the policy says; now the PV that pointed at it.
    if let Some(op) = &pv_delete {
        tracing::info!(volume = %lname, op = %op.summary, "PersistentVolume write");
        crate::controller::world::execute_pv(&ctx.client, op).await?;
    }
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
