//! `EdgeSnapshot` reconciliation.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};

use super::ownership::{self, Owner, Ownership};
use super::skeleton;
use super::volume::Error;
use super::{Context, FINALIZER};
use crate::crd::conditions::{self, Desired, READY};
use crate::crd::quantity;
use crate::crd::reasons::SnapshotReason;
use crate::crd::snapshot::{EdgeSnapshot, EdgeSnapshotStatus};
use crate::crd::{DeletionPolicy, EdgeVolume};
use crate::linstor::naming;
use crate::linstor::ops::{Op, OpKind, seg};
use crate::linstor::types::{Props, PropsModify, Snapshot, SnapshotCreate};

pub fn owner(s: &EdgeSnapshot) -> Owner {
    Owner {
        kind: "EdgeSnapshot",
        namespace: s.namespace().unwrap_or_default(),
        name: s.name_any(),
        uid: s.uid().unwrap_or_default(),
    }
}

/// What to do about one snapshot (pure).
#[derive(Debug, PartialEq)]
pub enum SnapshotPlan {
    Conflict(String),
    Create(Op),
    Observe,
}

pub fn plan(o: &Owner, rd: &str, snap: &str, existing: Option<&Snapshot>) -> SnapshotPlan {
    match ownership::classify(existing.map(|s| &s.snapshot_definition_props), o) {
        Ownership::Absent => SnapshotPlan::Create(Op::post(
            OpKind::Create,
            format!("/v1/resource-definitions/{}/snapshots", seg(rd)),
            SnapshotCreate {
                name: snap.into(),
                snapshot_definition_props: o.marker(),
            },
            format!("snapshot {rd} as {snap}"),
        )),
        Ownership::Ours => SnapshotPlan::Observe,
        Ownership::Released { previous } => SnapshotPlan::Conflict(format!(
            "snapshot {snap} of {rd} was released by the deleted EdgeSnapshot {previous}; use another name"
        )),
        Ownership::Foreign { why } => SnapshotPlan::Conflict(format!(
            "snapshot {snap} of {rd} already exists and {why}; edgebind leaves it untouched"
        )),
    }
}

pub fn cleanup_ops(
    o: &Owner,
    rd: &str,
    snap: &str,
    existing: Option<&Snapshot>,
    delete: bool,
) -> Vec<Op> {
    let Some(s) = existing else { return vec![] };
    if ownership::classify(Some(&s.snapshot_definition_props), o) != Ownership::Ours {
        return vec![];
    }
    let path = format!(
        "/v1/resource-definitions/{}/snapshots/{}",
        seg(rd),
        seg(snap)
    );
    if delete {
        vec![Op::delete(path, format!("delete snapshot {snap} of {rd}"))]
    } else {
        vec![Op::put(
            path,
            PropsModify {
                override_props: Props::from([(
                    ownership::RELEASED.to_string(),
                    "true".to_string(),
                )]),
                delete_props: vec![],
            },
            format!("mark snapshot {snap} of {rd} as released"),
        )]
    }
}

pub async fn reconcile(s: Arc<EdgeSnapshot>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _guard = crate::metrics::ReconcileGuard::start("EdgeSnapshot");
    let api: Api<EdgeSnapshot> =
        Api::namespaced(ctx.client.clone(), &s.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, s, |event| async {
        match event {
            Finalizer::Apply(s) => apply(s, ctx.clone()).await,
            Finalizer::Cleanup(s) => cleanup(s, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn report(
    s: &EdgeSnapshot,
    ctx: &Context,
    new: EdgeSnapshotStatus,
    cond: Desired,
) -> Result<(), kube::Error> {
    skeleton::report(ctx, s, new, &[cond]).await
}

async fn apply(s: Arc<EdgeSnapshot>, ctx: Arc<Context>) -> Result<Action, Error> {
    let o = owner(&s);
    let key = format!("{}/{}", o.namespace, o.name);
    let snap = naming::snapshot_name(&o.name);
    let rd = naming::volume_name(&o.namespace, &s.spec.volume_ref);
    let base = EdgeSnapshotStatus {
        linstor_name: Some(snap.clone()),
        resource_name: Some(rd.clone()),
        ..s.status.clone().unwrap_or_default()
    };
    let vols: Api<EdgeVolume> = Api::namespaced(ctx.client.clone(), &o.namespace);
    let vol = vols.get_opt(&s.spec.volume_ref).await?;
    let waiting = |msg: String| Desired::new(READY, false, SnapshotReason::WaitingForVolume, msg);
    let Some(vol) = vol else {
        report(
            &s,
            &ctx,
            base,
            waiting(format!("EdgeVolume {} does not exist", s.spec.volume_ref)),
        )
        .await?;
        return Ok(skeleton::retry(&ctx, s.as_ref()));
    };
    let vol_ready = vol
        .status
        .as_ref()
        .is_some_and(|st| conditions::is_true(&st.conditions, READY));
    let Some(backend) = ctx
        .backends
        .get(&vol.spec.backend_ref)
        .filter(|b| b.problem.is_none())
    else {
        report(
            &s,
            &ctx,
            base,
            waiting(format!(
                "LinstorBackend {} is not ready",
                vol.spec.backend_ref
            )),
        )
        .await?;
        return Ok(skeleton::retry(&ctx, s.as_ref()));
    };
    let inv = &backend.inventory;
    let observed = inv.observe(&rd).await?;
    let existing = observed
        .snapshots
        .iter()
        .find(|x| x.name.eq_ignore_ascii_case(&snap));
    match plan(&o, &rd, &snap, existing) {
        SnapshotPlan::Conflict(msg) => {
            report(
                &s,
                &ctx,
                base,
                Desired::new(READY, false, SnapshotReason::Conflict, msg),
            )
            .await?;
            Ok(Action::requeue(ctx.config.resync))
        }
        SnapshotPlan::Create(op) => {
            if !vol_ready {
                report(
                    &s,
                    &ctx,
                    base,
                    waiting(format!("EdgeVolume {} is not Ready yet", s.spec.volume_ref)),
                )
                .await?;
                return Ok(skeleton::retry(&ctx, s.as_ref()));
            }
            tracing::info!(snapshot = %key, op = %op.summary, "LINSTOR write");
            let res = inv.client().execute(&op).await;
            inv.mark_dirty(&rd);
            match res {
                Ok(_) => {}
                Err(e) if e.is_exists() => {
                    return Ok(Action::requeue(std::time::Duration::from_millis(200)));
                }
                Err(e) => {
                    report(
                        &s,
                        &ctx,
                        base,
                        Desired::new(READY, false, SnapshotReason::LinstorError, e.to_string()),
                    )
                    .await?;
                    return Err(e.into());
                }
            }
            report(
                &s,
                &ctx,
                base,
                Desired::new(
                    READY,
                    false,
                    SnapshotReason::Creating,
                    format!("snapshot {snap} requested"),
                ),
            )
            .await?;
            Ok(Action::requeue(ctx.config.progress_interval))
        }
        SnapshotPlan::Observe => {
            let Some(x) = existing else {
                return Ok(Action::requeue(ctx.config.progress_interval));
            };
            let created = x.snapshots.iter().filter_map(|n| n.create_timestamp).min();
            let st = EdgeSnapshotStatus {
                ready_to_use: x.successful(),
                creation_time: created
                    .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
                    .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
                restore_size: x
                    .volume_definitions
                    .iter()
                    .find(|v| v.volume_number == 0)
                    .map(|v| quantity::format_kib(v.size_kib)),
                nodes: x.nodes.clone(),
                ..base
            };
            let cond = if x.failed() {
                Desired::new(
                    READY,
                    false,
                    SnapshotReason::Failed,
                    format!(
                        "LINSTOR reports snapshot {snap} failed ({})",
                        x.flags.join(", ")
                    ),
                )
            } else if x.successful() {
                Desired::new(
                    READY,
                    true,
                    SnapshotReason::Ready,
                    format!("snapshot {snap} of {rd} is ready to use"),
                )
            } else {
                Desired::new(
                    READY,
                    false,
                    SnapshotReason::Creating,
                    format!("LINSTOR is taking snapshot {snap}"),
                )
            };
            let done = cond.status || x.failed();
            report(&s, &ctx, st, cond).await?;
            Ok(skeleton::settled(
                &ctx,
                s.as_ref(),
                if done {
                    ctx.config.resync
                } else {
                    ctx.config.progress_interval
                },
            ))
        }
    }
}

async fn cleanup(s: Arc<EdgeSnapshot>, ctx: Arc<Context>) -> Result<Action, Error> {
    let o = owner(&s);
    let snap = naming::snapshot_name(&o.name);
    let rd = naming::volume_name(&o.namespace, &s.spec.volume_ref);
    let vols: Api<EdgeVolume> = Api::namespaced(ctx.client.clone(), &o.namespace);
    let backend_name = match vols.get_opt(&s.spec.volume_ref).await? {
        Some(v) => v.spec.backend_ref,
        // The volume is gone; with Delete it took its snapshots, with Retain they stay.
        None => return Ok(Action::await_change()),
    };
    let Some(backend) = ctx
        .backends
        .get(&backend_name)
        .filter(|b| b.problem.is_none())
    else {
        return Err(Error::Blocked(format!(
            "LinstorBackend {backend_name} is not ready"
        )));
    };
    let inv = &backend.inventory;
    inv.mark_dirty(&rd);
    let observed = inv.observe(&rd).await?;
    let existing = observed
        .snapshots
        .iter()
        .find(|x| x.name.eq_ignore_ascii_case(&snap));
    for op in cleanup_ops(
        &o,
        &rd,
        &snap,
        existing,
        s.spec.deletion_policy == DeletionPolicy::Delete,
    ) {
        tracing::info!(snapshot = %snap, op = %op.summary, "LINSTOR write");
        inv.client().execute(&op).await?;
    }
    inv.mark_dirty(&rd);
    Ok(Action::await_change())
}
