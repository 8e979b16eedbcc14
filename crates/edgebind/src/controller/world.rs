//! What a volume or snapshot pass needs to know besides LINSTOR: the objects it refers to and
//! the connected backends. The controller answers from the API server and its backend registry
//! ([`Cluster`]); `edgebind plan` answers from the manifests and the embedded simulator. Both run
//! the same pass (`volume::pass`, `snapshot::pass`), so plan cannot drift from the controller.

use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;

use super::backends::BackendHandle;
use super::ownership::Owner;
use super::volume::pv::{PvOp, PvVerb};
use super::{Context, skeleton};
use crate::crd::{EdgeSnapshot, EdgeVolume};
use crate::linstor::LinstorError;
use crate::linstor::types::Props;

pub(crate) trait World {
    /// An EdgeVolume with its current status, if it exists.
    async fn volume(&self, ns: &str, name: &str) -> Result<Option<EdgeVolume>, kube::Error>;
    /// An EdgeSnapshot with its current status, if it exists.
    async fn snapshot(&self, ns: &str, name: &str) -> Result<Option<EdgeSnapshot>, kube::Error>;
    /// The PersistentVolume of that name, if it exists.
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, kube::Error>;
    /// Makes a PersistentVolume write (`plan` only records it).
    async fn write_pv(&self, op: &PvOp) -> Result<(), kube::Error>;
    /// A LinstorBackend as checked by its reconciler, if it has been.
    fn backend(&self, name: &str) -> Option<Arc<BackendHandle>>;
    /// False when writes are only listed, not made (`plan` against a live LINSTOR).
    fn writes(&self) -> bool {
        true
    }
    /// The owner recorded on and compared with LINSTOR objects. Objects in a cluster have a uid;
    /// manifests do not, so `plan` takes the uid of an existing object that names the same
    /// namespace and name.
    fn owner(&self, base: Owner, _existing: Option<&Props>) -> Owner {
        base
    }
}

/// The controller's world: the API server and the backend registry.
pub(crate) struct Cluster<'a>(pub(crate) &'a Context);

impl World for Cluster<'_> {
    async fn volume(&self, ns: &str, name: &str) -> Result<Option<EdgeVolume>, kube::Error> {
        Api::<EdgeVolume>::namespaced(self.0.client.clone(), ns)
            .get_opt(name)
            .await
    }
    async fn snapshot(&self, ns: &str, name: &str) -> Result<Option<EdgeSnapshot>, kube::Error> {
        Api::<EdgeSnapshot>::namespaced(self.0.client.clone(), ns)
            .get_opt(name)
            .await
    }
    async fn persistent_volume(&self, name: &str) -> Result<Option<PersistentVolume>, kube::Error> {
        Api::<PersistentVolume>::all(self.0.client.clone())
            .get_opt(name)
            .await
    }
    async fn write_pv(&self, op: &PvOp) -> Result<(), kube::Error> {
        execute_pv(&self.0.client, op).await
    }
    fn backend(&self, name: &str) -> Option<Arc<BackendHandle>> {
        self.0.backends.get(name)
    }
}

/// Makes one PersistentVolume write. A delete of a PV already gone is done.
pub(crate) async fn execute_pv(client: &kube::Client, op: &PvOp) -> Result<(), kube::Error> {
    let api = Api::<PersistentVolume>::all(client.clone());
    let pp = PostParams {
        field_manager: Some(super::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match op.verb {
        PvVerb::Create => {
            let pv: PersistentVolume =
                serde_json::from_value(op.body.clone()).map_err(kube::Error::SerdeError)?;
            api.create(&pp, &pv).await.map(|_| ())
        }
        PvVerb::Patch => api
            .patch(
                &op.name,
                &PatchParams {
                    field_manager: Some(super::FIELD_MANAGER.into()),
                    ..Default::default()
                },
                &Patch::Merge(&op.body),
            )
            .await
            .map(|_| ()),
        PvVerb::Delete => match api.delete(&op.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        },
    }
}

/// What a pass decided should happen next; the controller turns it into a requeue.
#[derive(Debug)]
pub(crate) enum Next {
    /// Only a spec change can help.
    AwaitChange,
    /// Blocked on another object (backend, volume, snapshot): retry with backoff.
    Retry,
    /// Look again at the next resync (a conflicting object may go away).
    Resync,
    /// Done for now; look again at the next resync.
    Settled,
    /// LINSTOR is applying a change: look again soon.
    Progressing,
    /// Someone created the object meanwhile: re-read soon and report nothing yet.
    Reread,
    /// A LINSTOR call failed (reported on the object); the error policy backs off.
    Failed(LinstorError),
}

impl Next {
    /// Where an edge request behind the object stands after this pass: Ready, failed for good
    /// (only a spec change helps, or nothing is left to do but wait for a resync), or in progress.
    pub(crate) fn request_outcome(&self, ready: bool) -> crate::request_trace::Outcome {
        use crate::request_trace::Outcome;
        if ready {
            Outcome::Ready
        } else if matches!(self, Next::AwaitChange | Next::Resync) {
            Outcome::Failed
        } else {
            Outcome::InProgress
        }
    }

    /// The requeue for a pass over `obj`, or the error for the error policy.
    pub(crate) fn action<K: kube::Resource<DynamicType = ()>>(
        self,
        ctx: &Context,
        obj: &K,
    ) -> Result<Action, LinstorError> {
        Ok(match self {
            Next::AwaitChange => Action::await_change(),
            Next::Retry => skeleton::retry(ctx, obj),
            // The kind's resync round looks again (`controller::resync`).
            Next::Resync => Action::await_change(),
            Next::Settled => skeleton::settled(ctx, obj),
            Next::Progressing => {
                skeleton::settled_until(ctx, obj, Some(ctx.config.progress_interval))
            }
            Next::Reread => Action::requeue(std::time::Duration::from_millis(200)),
            Next::Failed(e) => return Err(e),
        })
    }

    /// Whether the pass's writes all succeeded and its status should be written.
    pub(crate) fn reports(&self) -> bool {
        !matches!(self, Next::Reread)
    }
}
