//! `EdgeSnapshot` reconciliation.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

use super::ownership::{self, Owner, Ownership};
use super::skeleton;
use super::volume::Error;
use super::world::{Cluster, Next, World};
use super::{Context, FINALIZER};
use crate::crd::conditions::{self, Desired, READY};
use crate::crd::quantity;
use crate::crd::reasons::SnapshotReason;
use crate::crd::snapshot::{EdgeSnapshot, EdgeSnapshotStatus};
use crate::crd::{DeletionPolicy, EdgeVolume};
use crate::linstor::naming;
use crate::linstor::ops::{Op, OpKind, seg};
use crate::linstor::types::{Props, PropsModify, Snapshot, SnapshotCreate};
use crate::linstor::version::Features;
use crate::request_trace::{Stamp, now_ms};

pub(crate) fn owner(s: &EdgeSnapshot) -> Owner {
    Owner {
        kind: "EdgeSnapshot",
        namespace: s.namespace().unwrap_or_default(),
        name: s.name_any(),
        uid: s.uid().unwrap_or_default(),
    }
}

/// What to do about one snapshot (pure).
#[derive(Debug, PartialEq)]
pub(crate) enum SnapshotPlan {
    Conflict(String),
    /// Writes that create the snapshot, in order.
    Create(Vec<Op>),
    Observe,
}

fn rd_path(rd: &str) -> String {
    format!("/v1/resource-definitions/{}", seg(rd))
}

/// The snapshot's ownership marker (its own properties, or the record on its resource
/// definition on servers before REST API 1.26).
pub(crate) fn marker(
    rd_props: Option<&Props>,
    snap: &str,
    existing: Option<&Snapshot>,
) -> Option<Props> {
    existing.map(|s| ownership::snapshot_marker(&s.snapshot_definition_props, rd_props, snap))
}

pub(crate) fn plan(
    o: &Owner,
    rd: &str,
    snap: &str,
    rd_props: Option<&Props>,
    existing: Option<&Snapshot>,
    features: Features,
) -> SnapshotPlan {
    match ownership::classify(marker(rd_props, snap, existing).as_ref(), o) {
        Ownership::Absent => {
            let mut ops = Vec::new();
            let snapshot_definition_props = if features.snapshot_props {
                o.marker()
            } else {
                // The server would refuse (before 1.24) or drop (1.24, 1.25) the properties:
                // record the owner on the resource definition first, so a crash between the
                // two writes leaves the record, not an unmarked snapshot.
                ops.push(Op::put(
                    rd_path(rd),
                    PropsModify {
                        override_props: ownership::snapshot_record(snap, o),
                        delete_props: vec![],
                    },
                    format!("record the owner of snapshot {snap} on {rd}"),
                ));
                Props::new()
            };
            ops.push(Op::post(
                OpKind::Create,
                format!("{}/snapshots", rd_path(rd)),
                SnapshotCreate {
                    name: snap.into(),
                    snapshot_definition_props,
                },
                format!("snapshot {rd} as {snap}"),
            ));
            SnapshotPlan::Create(ops)
        }
        Ownership::Ours => SnapshotPlan::Observe,
        Ownership::Released { previous } => SnapshotPlan::Conflict(format!(
            "snapshot {snap} of {rd} was released by the deleted EdgeSnapshot {previous}; use another name"
        )),
        Ownership::Foreign { why } => SnapshotPlan::Conflict(format!(
            "snapshot {snap} of {rd} already exists and {why}; edgebind leaves it untouched"
        )),
    }
}

pub(crate) fn cleanup_ops(
    o: &Owner,
    rd: &str,
    snap: &str,
    rd_props: Option<&Props>,
    existing: Option<&Snapshot>,
    delete: bool,
) -> Vec<Op> {
    let Some(s) = existing else { return vec![] };
    if ownership::classify(marker(rd_props, snap, existing).as_ref(), o) != Ownership::Ours {
        return vec![];
    }
    // Where the marker lives decides how it is released or removed (not the server version:
    // a server upgraded past 1.26 still has the records of older snapshots).
    let on_rd = !s
        .snapshot_definition_props
        .contains_key(ownership::MANAGED_BY);
    let path = format!("{}/snapshots/{}", rd_path(rd), seg(snap));
    match (delete, on_rd) {
        (true, false) => vec![Op::delete(path, format!("delete snapshot {snap} of {rd}"))],
        (true, true) => vec![
            Op::delete(path, format!("delete snapshot {snap} of {rd}")),
            Op::put(
                rd_path(rd),
                PropsModify {
                    override_props: Props::new(),
                    delete_props: ownership::snapshot_record_keys(snap),
                },
                format!("remove the owner record of snapshot {snap} from {rd}"),
            ),
        ],
        (false, false) => vec![Op::put(
            path,
            PropsModify {
                override_props: Props::from([(
                    ownership::RELEASED.to_string(),
                    "true".to_string(),
                )]),
                delete_props: vec![],
            },
            format!("mark snapshot {snap} of {rd} as released"),
        )],
        (false, true) => vec![Op::put(
            rd_path(rd),
            PropsModify {
                override_props: Props::from([(
                    ownership::snapshot_record_released(snap),
                    "true".to_string(),
                )]),
                delete_props: vec![],
            },
            format!("mark snapshot {snap} of {rd} as released"),
        )],
    }
}

pub(crate) async fn reconcile(s: Arc<EdgeSnapshot>, ctx: Arc<Context>) -> Result<Action, Error> {
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

/// The outcome of one pass over a snapshot.
#[derive(Debug)]
pub(crate) struct Pass {
    pub(crate) status: EdgeSnapshotStatus,
    pub(crate) condition: Desired,
    /// The LINSTOR writes made (or, where the world does not write, that would be made).
    pub(crate) ops: Vec<Op>,
    pub(crate) next: Next,
}

/// One pass: find the volume and its backend, observe LINSTOR, plan, write, compute status.
/// The controller runs it against the cluster and `edgebind plan` against its manifests.
pub(crate) async fn pass<W: World>(w: &W, s: &EdgeSnapshot) -> Result<Pass, kube::Error> {
    let base = owner(s);
    let snap = naming::snapshot_name(&base.name);
    let rd = naming::volume_name(&base.namespace, &s.spec.volume_ref);
    let status = EdgeSnapshotStatus {
        linstor_name: Some(snap.clone()),
        resource_name: Some(rd.clone()),
        ..s.status.clone().unwrap_or_default()
    };
    let stop = |reason: SnapshotReason, msg: String, next: Next| Pass {
        status: status.clone(),
        condition: Desired::new(READY, false, reason, msg),
        ops: vec![],
        next,
    };
    let waiting = |msg: String| stop(SnapshotReason::WaitingForVolume, msg, Next::Retry);
    let Some(vol) = w.volume(&base.namespace, &s.spec.volume_ref).await? else {
        return Ok(waiting(format!(
            "EdgeVolume {} does not exist",
            s.spec.volume_ref
        )));
    };
    let vol_ready = vol
        .status
        .as_ref()
        .is_some_and(|st| conditions::is_true(&st.conditions, READY));
    let Some(backend) = w
        .backend(&vol.spec.backend_ref)
        .filter(|b| b.problem.is_none())
    else {
        return Ok(waiting(format!(
            "LinstorBackend {} is not ready",
            vol.spec.backend_ref
        )));
    };
    let inv = &backend.inventory;
    let Some(features) = backend.features else {
        return Ok(waiting(format!(
            "LinstorBackend {} has not been probed yet",
            vol.spec.backend_ref
        )));
    };
    let observed = match inv.observe(&rd).await {
        Ok(o) => o,
        Err(e) => {
            return Ok(stop(
                SnapshotReason::LinstorError,
                e.to_string(),
                Next::Failed(e),
            ));
        }
    };
    let existing = observed
        .snapshots
        .iter()
        .find(|x| x.name.eq_ignore_ascii_case(&snap));
    let rd_props = observed.rd.as_ref().map(|r| &r.props);
    let found = marker(rd_props, &snap, existing);
    let o = w.owner(base, found.as_ref());
    match plan(&o, &rd, &snap, rd_props, existing, features) {
        SnapshotPlan::Conflict(msg) => Ok(stop(SnapshotReason::Conflict, msg, Next::Resync)),
        SnapshotPlan::Create(_) if !vol_ready => Ok(waiting(format!(
            "EdgeVolume {} is not Ready yet",
            s.spec.volume_ref
        ))),
        SnapshotPlan::Create(ops) => {
            if w.writes() {
                for op in &ops {
                    let request_id = Stamp::from_annotations(s.annotations()).map(|r| r.id);
                    tracing::info!(snapshot = %format!("{}/{}", o.namespace, o.name), request_id = request_id.as_deref().unwrap_or_default(), op = %op.summary, "LINSTOR write");
                    let res = inv.client().execute(op).await;
                    inv.mark_dirty(&rd);
                    match res {
                        Ok(_) => {}
                        Err(e) if e.is_exists() => {
                            return Ok(stop(SnapshotReason::Creating, String::new(), Next::Reread));
                        }
                        Err(e) => {
                            return Ok(stop(
                                SnapshotReason::LinstorError,
                                e.to_string(),
                                Next::Failed(e),
                            ));
                        }
                    }
                }
            }
            Ok(Pass {
                ops,
                ..stop(
                    SnapshotReason::Creating,
                    format!("snapshot {snap} of {rd} requested"),
                    Next::Progressing,
                )
            })
        }
        SnapshotPlan::Observe => {
            let Some(x) = existing else {
                return Ok(stop(SnapshotReason::Creating, String::new(), Next::Reread));
            };
            let created = x.snapshots.iter().filter_map(|n| n.create_timestamp).min();
            let status = EdgeSnapshotStatus {
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
                ..status.clone()
            };
            let condition = if x.failed() {
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
            let done = condition.status || x.failed();
            Ok(Pass {
                status,
                condition,
                ops: vec![],
                next: if done {
                    Next::Settled
                } else {
                    Next::Progressing
                },
            })
        }
    }
}

async fn apply(s: Arc<EdgeSnapshot>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = now_ms();
    let p = pass(&Cluster(&ctx), &s).await?;
    if let Some(stamp) = Stamp::from_annotations(s.annotations())
        && p.next.reports()
    {
        let outcome = p
            .next
            .request_outcome(p.condition.type_ == READY && p.condition.status);
        ctx.follow_request(
            &s.object_ref(&()),
            &stamp,
            (started, now_ms()),
            !p.ops.is_empty(),
            outcome,
            SnapshotReason::RequestCompleted,
            SnapshotReason::RequestFailed,
        )
        .await;
    }
    if p.next.reports() {
        skeleton::report(&ctx, s.as_ref(), p.status, &[p.condition]).await?;
    }
    Ok(p.next.action(&ctx, s.as_ref())?)
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
        observed.rd.as_ref().map(|r| &r.props),
        existing,
        s.spec.deletion_policy == DeletionPolicy::Delete,
    ) {
        tracing::info!(snapshot = %snap, op = %op.summary, "LINSTOR write");
        inv.client().execute(&op).await?;
    }
    inv.mark_dirty(&rd);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linstor::version::ApiVersion;

    fn me() -> Owner {
        Owner {
            kind: "EdgeSnapshot",
            namespace: "ns".into(),
            name: "nightly".into(),
            uid: "uid-s".into(),
        }
    }

    fn snap(props: Props) -> Snapshot {
        Snapshot {
            name: "ebs_nightly".into(),
            resource_name: "eb-ns_db".into(),
            snapshot_definition_props: props,
            ..Default::default()
        }
    }

    #[test]
    fn before_1_26_the_owner_is_recorded_on_the_resource_definition_first() {
        let old = Features::for_version(ApiVersion(1, 25, 0));
        let SnapshotPlan::Create(ops) = plan(&me(), "eb-ns_db", "ebs_nightly", None, None, old)
        else {
            panic!("create expected")
        };
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (ops[0].method, ops[0].path.as_str()),
            ("PUT", "/v1/resource-definitions/eb-ns_db")
        );
        assert_eq!(
            ops[0].body.as_ref().unwrap()["override_props"]
                [format!("{}ebs_nightly/uid", ownership::SNAPSHOT_OWNERS)],
            "uid-s"
        );
        assert_eq!(
            ops[1].body.as_ref().unwrap(),
            &serde_json::json!({"name": "ebs_nightly"}),
            "no snapshot_definition_props for a server that refuses or drops them"
        );
        // Created: ours through the record; released and deleted through it too.
        let rd = ownership::snapshot_record("ebs_nightly", &me());
        let s = snap(Props::new());
        assert_eq!(
            plan(&me(), "eb-ns_db", "ebs_nightly", Some(&rd), Some(&s), old),
            SnapshotPlan::Observe
        );
        let retain = cleanup_ops(&me(), "eb-ns_db", "ebs_nightly", Some(&rd), Some(&s), false);
        assert_eq!(retain.len(), 1);
        assert_eq!(retain[0].path, "/v1/resource-definitions/eb-ns_db");
        let delete = cleanup_ops(&me(), "eb-ns_db", "ebs_nightly", Some(&rd), Some(&s), true);
        assert_eq!(delete[0].method, "DELETE");
        assert_eq!(
            delete[1].body.as_ref().unwrap()["delete_props"],
            serde_json::json!(ownership::snapshot_record_keys("ebs_nightly"))
        );
    }

    #[test]
    fn from_1_26_the_snapshot_carries_the_marker() {
        let new = Features::for_version(ApiVersion(1, 26, 0));
        let SnapshotPlan::Create(ops) = plan(&me(), "eb-ns_db", "ebs_nightly", None, None, new)
        else {
            panic!("create expected")
        };
        assert_eq!(ops.len(), 1);
        assert_eq!(
            ops[0].body.as_ref().unwrap()["snapshot_definition_props"][ownership::OWNER_UID],
            "uid-s"
        );
        let s = snap(me().marker());
        let retain = cleanup_ops(&me(), "eb-ns_db", "ebs_nightly", None, Some(&s), false);
        assert_eq!(
            retain[0].path,
            "/v1/resource-definitions/eb-ns_db/snapshots/ebs_nightly"
        );
        // Another EdgeSnapshot's snapshot is never touched.
        let other = snap(
            Owner {
                uid: "uid-x".into(),
                ..me()
            }
            .marker(),
        );
        assert!(cleanup_ops(&me(), "eb-ns_db", "ebs_nightly", None, Some(&other), true).is_empty());
    }
}
