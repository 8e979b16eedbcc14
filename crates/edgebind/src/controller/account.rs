//! `CloudflareAccount` reconciliation and the registry of verified accounts.
//!
//! The reconciler reads the token Secret, builds one client per account (rebuilt when the spec
//! or the token changes, so a rotated token is picked up), verifies the token (account path
//! first, for account-owned tokens, then the user path) and publishes the client for bindings.
//! A binding never calls Cloudflare through an account that is not verified.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};

use super::backends::BackendError;
use super::binding::listing::Listings;
use super::skeleton;
use super::{Context, FINALIZER};
use crate::cloudflare::client::DEFAULT_API_URL;
use crate::cloudflare::types::TokenKind;
use crate::cloudflare::{CfClient, CfClientConfig, CfError};
use crate::crd::account::{CloudflareAccount, CloudflareAccountStatus};
use crate::crd::binding::EdgeBinding;
use crate::crd::conditions::{Desired, READY};
use crate::crd::reasons::AccountReason;

/// A verified (or failed) account as bindings see it.
pub struct AccountHandle {
    pub client: Arc<CfClient>,
    /// The account's scripts and routes, read once for all its bindings.
    pub listings: Arc<Listings>,
    /// Why the account is not usable, for binding conditions. `None`: verified.
    pub problem: Option<String>,
    fingerprint: u64,
}

#[derive(Default)]
pub struct Accounts {
    map: RwLock<HashMap<String, Arc<AccountHandle>>>,
}

impl Accounts {
    pub fn get(&self, name: &str) -> Option<Arc<AccountHandle>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
    fn insert(&self, name: &str, h: Arc<AccountHandle>) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), h);
    }
    fn remove(&self, name: &str) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
    /// An account with a ready client (used by `plan` and tests).
    pub fn insert_client(&self, name: &str, client: Arc<CfClient>) {
        self.insert(
            name,
            Arc::new(AccountHandle {
                client,
                listings: Arc::new(Listings::new(
                    super::ControllerConfig::default().inventory_ttl(),
                )),
                problem: None,
                fingerprint: 0,
            }),
        );
    }
    /// A binding saw the token refused: stop using the account until it verifies again, so
    /// other bindings do not hammer Cloudflare with a dead token.
    pub fn mark_refused(&self, name: &str, why: &str) {
        let mut m = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = m.get(name).cloned() {
            m.insert(
                name.to_string(),
                Arc::new(AccountHandle {
                    client: h.client.clone(),
                    listings: h.listings.clone(),
                    problem: Some(why.to_string()),
                    fingerprint: h.fingerprint,
                }),
            );
        }
    }
}

async fn token_of(client: &kube::Client, a: &CloudflareAccount) -> Result<String, String> {
    let r = &a.spec.api_token;
    let bytes = super::backends::secret_data(client, &r.namespace, &r.name)
        .await?
        .remove(&r.key)
        .ok_or_else(|| format!("Secret {}/{} has no key {:?}", r.namespace, r.name, r.key))?;
    String::from_utf8(bytes).map_err(|_| "the API token is not UTF-8".to_string())
}

/// Builds the client config from the spec and token. Errors say what to fix.
pub(crate) async fn client_config(
    client: &kube::Client,
    a: &CloudflareAccount,
    max_wait: Duration,
) -> Result<(CfClientConfig, u64), String> {
    let token = token_of(client, a).await?;
    let mut fp = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&a.spec)
        .unwrap_or_default()
        .hash(&mut fp);
    token.hash(&mut fp);
    Ok((
        CfClientConfig {
            api_url: a
                .spec
                .api_url
                .clone()
                .unwrap_or_else(|| DEFAULT_API_URL.to_string()),
            account_id: a.spec.account_id.clone(),
            token,
            budget: a.spec.budget.as_budget(),
            timeout: Duration::from_secs(a.spec.timeout_seconds.into()),
            max_wait,
        },
        fp.finish(),
    ))
}

struct Verdict {
    ready: bool,
    reason: AccountReason,
    message: String,
    token: Option<(crate::cloudflare::types::TokenVerify, TokenKind)>,
}

fn judge(res: Result<(crate::cloudflare::types::TokenVerify, TokenKind), CfError>) -> Verdict {
    match res {
        Ok((v, kind)) => {
            let (ready, reason, message) = match v.status.as_str() {
                "active" => (
                    true,
                    AccountReason::Verified,
                    format!("{} token {} is active", kind.as_str(), v.id),
                ),
                "expired" => (
                    false,
                    AccountReason::TokenExpired,
                    format!(
                        "token {} expired{}; put a new token into the Secret",
                        v.id,
                        v.expires_on
                            .as_deref()
                            .map(|e| format!(" on {e}"))
                            .unwrap_or_default()
                    ),
                ),
                other => (
                    false,
                    AccountReason::TokenDisabled,
                    format!(
                        "token {} is {other}; enable it or put a new token into the Secret",
                        v.id
                    ),
                ),
            };
            Verdict {
                ready,
                reason,
                message,
                token: Some((v, kind)),
            }
        }
        Err(e) if e.is_unauthorized() => Verdict {
            ready: false,
            reason: AccountReason::InvalidToken,
            message: format!(
                "Cloudflare does not accept the API token at the account or user verify path ({e}); check the Secret"
            ),
            token: None,
        },
        Err(e) => Verdict {
            ready: false,
            reason: e.reason().into(),
            message: e.to_string(),
            token: None,
        },
    }
}

/// Builds (or keeps) the account's client and verifies its token; publishes the handle for
/// bindings. A refused spec or token gives a verdict, not an error.
async fn verify(a: &CloudflareAccount, ctx: &Context) -> Verdict {
    let name = a.name_any();
    let existing = ctx.accounts.get(&name);
    match client_config(&ctx.client, a, ctx.config.cloudflare.max_rate_limit_wait).await {
        Err(msg) => {
            if existing.is_some() {
                ctx.accounts.mark_refused(&name, &msg);
            }
            Verdict {
                ready: false,
                reason: AccountReason::InvalidConfig,
                message: msg,
                token: None,
            }
        }
        Ok((cfg, fp)) => {
            let client = match existing.as_ref().filter(|h| h.fingerprint == fp) {
                Some(h) => Ok((h.client.clone(), h.listings.clone())),
                None => CfClient::new(cfg).map(|c| {
                    let ttl = ctx.config.inventory_ttl();
                    (Arc::new(c), Arc::new(Listings::new(ttl)))
                }),
            };
            match client {
                Err(msg) => Verdict {
                    ready: false,
                    reason: AccountReason::InvalidConfig,
                    message: msg,
                    token: None,
                },
                Ok((client, listings)) => {
                    let v = judge(client.verify_token().await);
                    ctx.accounts.insert(
                        &name,
                        Arc::new(AccountHandle {
                            client,
                            listings,
                            problem: (!v.ready).then(|| v.message.clone()),
                            fingerprint: fp,
                        }),
                    );
                    v
                }
            }
        }
    }
}

pub(crate) async fn reconcile(
    a: Arc<CloudflareAccount>,
    ctx: Arc<Context>,
) -> Result<Action, BackendError> {
    let api: Api<CloudflareAccount> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, a, |event| async {
        match event {
            Finalizer::Apply(a) => apply(a, ctx.clone()).await,
            Finalizer::Cleanup(a) => cleanup(a, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| BackendError::Finalizer(Box::new(e)))
}

/// Deletion: the account goes after the bindings that use it (they remove their Workers,
/// routes and DNS records through it) and after the tunnel edgebind created for it.
async fn cleanup(a: Arc<CloudflareAccount>, ctx: Arc<Context>) -> Result<Action, BackendError> {
    let name = a.name_any();
    let old = a.status.clone().unwrap_or_default();
    let users: Vec<String> = Api::<EdgeBinding>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|b| b.spec.account_ref == name)
        .map(|b| format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any()))
        .collect();
    if !users.is_empty() {
        let msg = format!(
            "deletion waits for the EdgeBinding(s) that publish through this account, which clean up through it: {}; delete them (or point them at another account)",
            users.join(", ")
        );
        let conds = [Desired::new(
            READY,
            false,
            AccountReason::InUse,
            msg.clone(),
        )];
        skeleton::report(&ctx, a.as_ref(), old, &conds).await?;
        // An error keeps the finalizer; a binding's deletion wakes the account (binding watch).
        return Err(BackendError::Waiting(msg));
    }
    if old.tunnel.as_ref().is_some_and(|t| !t.id.is_empty()) {
        let verdict = verify(&a, &ctx).await;
        let handle = ctx.accounts.get(&name).filter(|_| verdict.ready);
        let Some(h) = handle else {
            let msg = format!(
                "cannot delete the account's tunnel without a verified token: {} (fix the token, or remove the finalizer {FINALIZER} to leave the tunnel behind)",
                verdict.message
            );
            let conds = [Desired::new(READY, false, verdict.reason, msg.clone())];
            skeleton::report(&ctx, a.as_ref(), old, &conds).await?;
            return Err(BackendError::Waiting(msg));
        };
        let out = super::tunnel::remove(&ctx, &a, &h.client, old.tunnel.clone()).await;
        if out.status.is_some() {
            // Still there: cloudflared connected, or a failed call (the condition says which).
            let new = CloudflareAccountStatus {
                tunnel: out.status,
                ..old
            };
            let why = out.condition.as_ref().map_or_else(
                || "the tunnel is not deleted yet".to_string(),
                |c| c.message.clone(),
            );
            let conds: Vec<Desired> = out.condition.into_iter().collect();
            skeleton::report(&ctx, a.as_ref(), new, &conds).await?;
            return Err(BackendError::Waiting(why));
        }
    }
    ctx.accounts.remove(&name);
    crate::metrics::token_expiry(&name, None);
    Ok(Action::await_change())
}

async fn apply(a: Arc<CloudflareAccount>, ctx: Arc<Context>) -> Result<Action, BackendError> {
    let name = a.name_any();
    let verdict = verify(&a, &ctx).await;
    let old = a.status.clone().unwrap_or_default();
    // The tunnel, once the token is verified (no call through a refused token).
    let tunnel = match ctx.accounts.get(&name).filter(|_| verdict.ready) {
        Some(h) => Some(super::tunnel::reconcile(&ctx, &a, &h.client).await),
        None => None,
    };
    let new = CloudflareAccountStatus {
        tunnel: match &tunnel {
            Some(t) => t.status.clone(),
            None => old.tunnel.clone(),
        },
        token_id: verdict
            .token
            .as_ref()
            .map(|(t, _)| t.id.clone())
            .or(old.token_id.clone()),
        token_status: verdict.token.as_ref().map(|(t, _)| t.status.clone()).or(
            if verdict.reason == AccountReason::InvalidToken {
                Some("invalid".into())
            } else {
                old.token_status.clone()
            },
        ),
        token_expires_on: match &verdict.token {
            Some((t, _)) => t.expires_on.clone(),
            None => old.token_expires_on.clone(),
        },
        token_kind: verdict
            .token
            .as_ref()
            .map(|(_, k)| k.as_str().to_string())
            .or(old.token_kind.clone()),
        ..old.clone()
    };
    crate::metrics::token_expiry(
        &a.name_any(),
        new.token_expires_on
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second()),
    );
    let mut conds = vec![Desired::new(
        READY,
        verdict.ready,
        verdict.reason,
        verdict.message,
    )];
    if let Some(t) = tunnel {
        conds.extend(t.condition);
        conds.extend(t.vpc_condition);
    }
    skeleton::report(&ctx, a.as_ref(), new, &conds).await?;
    Ok(if verdict.ready {
        skeleton::settled(&ctx, a.as_ref())
    } else {
        // A refused token will not heal by itself: back off (up to the cap) instead of
        // verifying again and again.
        skeleton::retry(&ctx, a.as_ref())
    })
}
