//! `LinstorBackend` reconciliation and the registry of connected backends.
//!
//! The backend reconciler reads the referenced Secrets, builds one client per backend (rebuilt
//! when the spec or a Secret changes, which is how rotated certificates and tokens are picked
//! up), probes the controller version, and publishes the result for volumes and snapshots.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use url::Url;

use super::Context;
use super::inventory::Inventory;
use super::nodes::NodeView;
use super::skeleton;
use crate::crd::backend::{LinstorBackend, LinstorBackendStatus};
use crate::crd::conditions::{Desired, READY};
use crate::crd::reasons::BackendReason;
use crate::linstor::tls::TlsSource;
use crate::linstor::version::Features;
use crate::linstor::{ClientConfig, LinstorClient, LinstorError};

/// A connected backend as volumes see it.
pub struct BackendHandle {
    pub inventory: Arc<Inventory>,
    pub features: Option<Features>,
    /// Why the backend is not usable, for volume conditions.
    pub problem: Option<String>,
    /// LINSTOR's nodes at the backend's last check (None: not read, e.g. in `plan`).
    pub nodes: Option<Arc<NodeView>>,
    fingerprint: u64,
}

#[derive(Default)]
pub struct Backends {
    map: RwLock<HashMap<String, Arc<BackendHandle>>>,
    /// Degraded EdgeVolumes per backend, recounted from the volume cache.
    degraded: RwLock<HashMap<String, u32>>,
}

impl Backends {
    pub fn get(&self, name: &str) -> Option<Arc<BackendHandle>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
    pub fn insert(&self, name: &str, h: Arc<BackendHandle>) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), h);
    }
    pub fn set_degraded(&self, counts: HashMap<String, u32>) {
        *self.degraded.write().unwrap_or_else(|e| e.into_inner()) = counts;
    }
    /// Degraded EdgeVolumes of a backend (0 when none is).
    pub fn degraded(&self, name: &str) -> u32 {
        self.degraded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0)
    }
    /// Every backend's node view, for the node gauges.
    pub fn node_views(&self) -> Vec<Arc<NodeView>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|h| h.nodes.clone())
            .collect()
    }
    pub fn remove(&self, name: &str) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
    /// A backend built from a ready client (used by `plan` and tests).
    pub fn insert_client(
        &self,
        name: &str,
        client: Arc<LinstorClient>,
        features: Features,
        ttl: Duration,
    ) {
        self.insert(
            name,
            Arc::new(BackendHandle {
                inventory: Arc::new(Inventory::new(client, ttl)),
                features: Some(features),
                problem: None,
                nodes: None,
                fingerprint: 0,
            }),
        );
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<BackendError>>),
    /// A clean-up that must wait (the finalizer stays; the condition says why).
    #[error("{0}")]
    Waiting(String),
}

/// Reads a Secret that a LinstorBackend or CloudflareAccount references. Errors say what to fix.
pub(crate) async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<HashMap<String, Vec<u8>>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(s)) => Ok(s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()),
        Ok(None) => Err(format!("Secret {ns}/{name} does not exist")),
        Err(e) => Err(secret_read_problem(ns, name, &e)),
    }
}

/// Why a referenced Secret could not be read. A refusal names the install setting that grants
/// the read: the chart lets the controller read Secrets only in the namespaces it lists.
fn secret_read_problem(ns: &str, name: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "the controller may not read Secret {ns}/{name}: keep the Secret in the operator's \
             namespace, or add {ns} to the chart value controller.backendSecrets.namespaces \
             (deploy/README.md)"
        ),
        e => format!("cannot read Secret {ns}/{name}: {e}"),
    }
}

/// Builds the client configuration from the spec and its Secrets. Errors say what to fix.
pub(crate) async fn client_config(
    client: &kube::Client,
    b: &LinstorBackend,
) -> Result<(ClientConfig, u64), String> {
    let mut urls = Vec::new();
    for u in &b.spec.urls {
        urls.push(Url::parse(u).map_err(|e| format!("URL {u:?} is not valid: {e}"))?);
    }
    let mut fp = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&b.spec)
        .unwrap_or_default()
        .hash(&mut fp);
    let tls = match &b.spec.tls {
        Some(r) => {
            let data = secret_data(client, &r.namespace, &r.name).await?;
            let cert = data.get("tls.crt").cloned();
            let key = data.get("tls.key").cloned();
            let ca = data.get("ca.crt").cloned();
            if cert.is_some() != key.is_some() {
                return Err(format!(
                    "Secret {}/{} must hold both tls.crt and tls.key (or neither)",
                    r.namespace, r.name
                ));
            }
            for v in [&cert, &key, &ca] {
                v.hash(&mut fp);
            }
            Some(TlsSource::Pem { cert, key, ca })
        }
        None => None,
    };
    let bearer_token = match &b.spec.bearer_token {
        Some(r) => {
            let data = secret_data(client, &r.namespace, &r.name).await?;
            let tok = data.get(&r.key).ok_or_else(|| {
                format!("Secret {}/{} has no key {:?}", r.namespace, r.name, r.key)
            })?;
            tok.hash(&mut fp);
            Some(
                String::from_utf8(tok.clone())
                    .map_err(|_| "the bearer token is not UTF-8".to_string())?,
            )
        }
        None => None,
    };
    Ok((
        ClientConfig {
            urls,
            tls,
            bearer_token,
            budget: b.spec.budget.clone(),
            timeouts: b.spec.timeouts.clone(),
        },
        fp.finish(),
    ))
}

pub(crate) async fn reconcile(
    b: Arc<LinstorBackend>,
    ctx: Arc<Context>,
) -> Result<Action, BackendError> {
    let _guard = crate::metrics::ReconcileGuard::start("LinstorBackend");
    let name = b.name_any();
    if b.meta().deletion_timestamp.is_some() {
        ctx.backends.remove(&name);
        return Ok(Action::await_change());
    }
    let existing = ctx.backends.get(&name);
    let (status, handle) = match client_config(&ctx.client, &b).await {
        Err(msg) => (
            (false, BackendReason::InvalidConfig, msg.clone(), None),
            existing.map(|h| {
                Arc::new(BackendHandle {
                    inventory: h.inventory.clone(),
                    features: None,
                    problem: Some(msg),
                    nodes: h.nodes.clone(),
                    fingerprint: h.fingerprint,
                })
            }),
        ),
        Ok((cfg, fp)) => {
            let inventory = match existing.as_ref().filter(|h| h.fingerprint == fp) {
                Some(h) => Ok(h.inventory.clone()),
                None => LinstorClient::new(cfg)
                    .map(|c| Arc::new(Inventory::new(Arc::new(c), ctx.config.inventory_ttl()))),
            };
            match inventory {
                Err(msg) => (
                    (false, BackendReason::InvalidConfig, msg.clone(), None),
                    None,
                ),
                Ok(inv) => {
                    inv.client().reset_probe().await;
                    match inv.client().probe().await {
                        Ok((v, features)) => {
                            // Once per resync: the node states volumes decide placement on.
                            // Unreadable now: the last view stays (a failed read is retried at
                            // the next check, not reported as a node problem).
                            let nodes = match NodeView::read(inv.client()).await {
                                Ok(n) => Some(n),
                                Err(e) => {
                                    tracing::warn!(backend = %name, error = %e, "cannot list LINSTOR nodes");
                                    existing.as_ref().and_then(|h| h.nodes.clone())
                                }
                            };
                            let msg = format!(
                                "LINSTOR {} (REST API {}) reachable at {}",
                                v.version,
                                v.rest_api_version,
                                inv.client().active_url()
                            );
                            (
                                (true, BackendReason::Connected, msg, Some(v)),
                                Some(Arc::new(BackendHandle {
                                    inventory: inv,
                                    features: Some(features),
                                    problem: None,
                                    nodes,
                                    fingerprint: fp,
                                })),
                            )
                        }
                        Err(e) => {
                            inv.invalidate();
                            let reason = match &e {
                                LinstorError::Unauthorized { .. } => BackendReason::Unauthorized,
                                LinstorError::Unreachable { .. } => BackendReason::Unreachable,
                                LinstorError::Decode { .. } => BackendReason::Unsupported,
                                _ => BackendReason::LinstorError,
                            };
                            let msg = e.to_string();
                            (
                                (false, reason, msg.clone(), None),
                                Some(Arc::new(BackendHandle {
                                    inventory: inv,
                                    features: None,
                                    problem: Some(msg),
                                    nodes: existing.as_ref().and_then(|h| h.nodes.clone()),
                                    fingerprint: fp,
                                })),
                            )
                        }
                    }
                }
            }
        }
    };
    if let Some(h) = handle {
        ctx.backends.insert(&name, h);
    }
    let (ready, reason, message, version) = status;
    let old = b.status.clone().unwrap_or_default();
    let new = LinstorBackendStatus {
        controller_version: version
            .as_ref()
            .map(|v| v.version.clone())
            .or(old.controller_version.clone()),
        rest_api_version: version
            .as_ref()
            .map(|v| v.rest_api_version.clone())
            .or(old.rest_api_version.clone()),
        active_url: ctx
            .backends
            .get(&name)
            .map(|h| h.inventory.client().active_url().to_string()),
        nodes: ctx
            .backends
            .get(&name)
            .and_then(|h| h.nodes.as_ref().map(|n| n.status()))
            .unwrap_or_else(|| old.nodes.clone()),
        degraded_volumes: Some(ctx.backends.degraded(&name)),
        ..old
    };
    crate::metrics::linstor_nodes(&ctx.backends.node_views());
    skeleton::report(
        &ctx,
        b.as_ref(),
        new,
        &[Desired::new(READY, ready, reason, message)],
    )
    .await?;
    Ok(if ready {
        skeleton::settled(&ctx, b.as_ref())
    } else {
        skeleton::retry(&ctx, b.as_ref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("secrets \"x\" is forbidden", "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_refused_secret_read_names_the_value_that_grants_it() {
        let msg = secret_read_problem("piraeus-datastore", "linstor-client-tls", &api_error(403));
        assert!(
            msg.contains("piraeus-datastore/linstor-client-tls")
                && msg.contains("controller.backendSecrets.namespaces"),
            "{msg}"
        );
        let other = secret_read_problem("ns", "s", &api_error(500));
        assert!(
            other.starts_with("cannot read Secret ns/s") && !other.contains("backendSecrets"),
            "{other}"
        );
    }
}
