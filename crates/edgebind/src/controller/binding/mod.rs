//! `EdgeBinding` reconciliation: the I/O around the pure steps in `plan` and `keys`.
//!
//! One reconcile: check the account, read the Worker configuration, advance the signing key
//! rotation (a new binding waits here until the gateways trust its first key), read Cloudflare
//! (the account's shared script and route lists, the script's secret names only when it changed:
//! `listing`), plan, write the difference in order (script, secrets, routes), and record what was
//! written in status. A converged binding makes no Cloudflare write, no status write, and no
//! Cloudflare read of its own.

pub(crate) mod config;
pub(crate) mod keys;
pub(crate) mod listing;
pub(crate) mod plan;
pub(crate) mod signing;
pub(crate) mod tunnel_dns;

#[cfg(test)]
mod plan_tests;

use crate::crd::reasons::BindingReason;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};

use super::account::AccountHandle;
use super::{Context, FINALIZER};
use crate::cloudflare::ops::{CfOp, SecretValue};
use crate::cloudflare::upload::ScriptUpload;
use crate::cloudflare::worker::WORKER_JS;
use crate::cloudflare::{CfClient, CfError};
use crate::controller::skeleton;
use crate::crd::LinstorBackend;
use crate::crd::binding::{EdgeBinding, EdgeBindingStatus, ROTATE_KEY_ANNOTATION, ROUTE_CONFLICT};
use crate::crd::conditions::{DEGRADED, Desired, READY};
pub(crate) use config::{WorkerConfig, desired_config};
use listing::Listings;
use plan::{BindingPlan, Observed};

pub(crate) const SIGNING_KEY: &str = "SIGNING_KEY";
pub(crate) const ISSUERS: &str = "ISSUERS";
pub(crate) const POLICY_BUNDLE: &str = "POLICY_BUNDLE";
pub(crate) const GATEWAY_URL: &str = "GATEWAY_URL";
/// The `vpc_service` binding the Worker fetches the gateway through (`spec.workersVpc`).
pub(crate) const GATEWAY_BINDING: &str = "GATEWAY";
/// Attempts of a write while a freshly uploaded script is not visible yet.
const FRESH_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Cloudflare(#[from] CfError),
    #[error("{0}")]
    Blocked(String),
    #[error(transparent)]
    Finalizer(#[from] Box<kube::runtime::finalizer::Error<Error>>),
}

/// Tag marking a Worker script as this binding's (scripts carry no other ownership field).
pub(crate) fn owner_tag(b: &EdgeBinding) -> String {
    format!("edgebind-{}", b.uid().unwrap_or_default())
}

fn key_of(b: &EdgeBinding) -> String {
    format!(
        "EdgeBinding/{}/{}",
        b.namespace().unwrap_or_default(),
        b.name_any()
    )
}

/// The upload for a binding: the bundled Worker, its settings and `GATEWAY_URL`.
pub(crate) fn script_upload(b: &EdgeBinding, cfg: &WorkerConfig) -> ScriptUpload {
    ScriptUpload {
        script_name: b.spec.script_name.clone(),
        module: Bytes::from_static(WORKER_JS),
        compatibility_date: b.spec.compatibility_date.clone(),
        plain_bindings: vec![(GATEWAY_URL.to_string(), cfg.gateway_url.clone())],
        tags: vec![owner_tag(b)],
        vpc_services: cfg
            .vpc_service_id
            .iter()
            .map(|id| (GATEWAY_BINDING.to_string(), id.clone()))
            .collect(),
    }
}

/// The secrets a binding wants (SIGNING_KEY only once a key is current).
pub(crate) fn desired_secrets(
    cfg: &WorkerConfig,
    signing_key: Option<&str>,
) -> BTreeMap<String, SecretValue> {
    let mut m = BTreeMap::from([
        (ISSUERS.to_string(), SecretValue::new(cfg.issuers.clone())),
        (
            POLICY_BUNDLE.to_string(),
            SecretValue::new(cfg.policy_bundle.clone()),
        ),
    ]);
    if let Some(k) = signing_key {
        m.insert(SIGNING_KEY.to_string(), SecretValue::new(k));
    }
    m
}

/// Reads what Cloudflare holds for a binding. The script and route lists come from the
/// account's shared listings, read no earlier than `after`; the secret names are listed only
/// when Cloudflare shows the script changed since they last were, else the names recorded in
/// status stand (`listing` explains why).
pub(crate) async fn observe(
    cf: &CfClient,
    listings: &Listings,
    script: &str,
    zone: &str,
    after: Option<Instant>,
    recorded: &EdgeBindingStatus,
) -> Result<Observed, CfError> {
    let scripts = listings.scripts(cf, after).await?;
    let script = scripts.iter().find(|s| s.id == script).cloned();
    let routes = listings.routes(cf, zone, after).await?.as_ref().clone();
    let secret_names: BTreeSet<String> = match &script {
        None => BTreeSet::new(),
        Some(s) if !listings.secrets_stale(&s.id, s.modified_on.as_deref()) => {
            recorded.secret_hashes.keys().cloned().collect()
        }
        Some(s) => match cf.list_secrets(&s.id).await {
            Ok(l) => {
                listings.secrets_listed(&s.id, s.modified_on.as_deref());
                l.into_iter().map(|s| s.name).collect()
            }
            // Listed a moment ago, gone or not visible now: treat as holding no secrets.
            Err(e) if e.is_not_found() => BTreeSet::new(),
            Err(e) => return Err(e),
        },
    };
    Ok(Observed {
        script,
        routes,
        secret_names,
    })
}

pub(crate) async fn reconcile(b: Arc<EdgeBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<EdgeBinding> =
        Api::namespaced(ctx.client.clone(), &b.namespace().unwrap_or_default());
    let res = finalizer(&api, FINALIZER, b, |event| async {
        match event {
            Finalizer::Apply(b) => apply(b, ctx.clone()).await,
            Finalizer::Cleanup(b) => cleanup(b, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    crate::metrics::get()
        .reconcile_duration
        .get_or_create(&crate::metrics::KindLabel {
            kind: "EdgeBinding".into(),
        })
        .observe(started.elapsed().as_secs_f64());
    res
}

/// Writes status when it differs (a converged resync writes nothing) and publishes an event
/// when the Ready condition changes.
async fn report(
    b: &EdgeBinding,
    ctx: &Context,
    new: EdgeBindingStatus,
    conds: Vec<Desired>,
) -> Result<(), kube::Error> {
    skeleton::report(ctx, b, new, &conds).await
}

/// Conditions for a binding that cannot be published right now. `transient`: Degraded is set
/// (something that worked may be failing); otherwise the spec or a reference must change.
fn failed(reason: BindingReason, message: &str, transient: bool) -> Vec<Desired> {
    vec![
        Desired::new(READY, false, reason, message),
        Desired::new(
            ROUTE_CONFLICT,
            false,
            BindingReason::NoConflict,
            "no route conflict known",
        ),
        Desired::new(
            DEGRADED,
            transient,
            if transient {
                reason
            } else {
                BindingReason::AsExpected
            },
            if transient { message } else { "" },
        ),
    ]
}

fn account_ready(ctx: &Context, name: &str) -> Result<Arc<AccountHandle>, String> {
    match ctx.accounts.get(name) {
        None => Err(format!(
            "CloudflareAccount {name:?} does not exist or has not been verified yet"
        )),
        Some(h) => match &h.problem {
            Some(p) => Err(format!("CloudflareAccount {name:?} is not ready: {p}")),
            None => Ok(h),
        },
    }
}

fn schedule(b: &EdgeBinding, ctx: &Context) -> keys::Schedule {
    keys::Schedule {
        period: Duration::from_secs(u64::from(b.spec.signing_key_rotation_hours) * 3600),
        propagation: ctx.config.cloudflare.key_propagation,
        overlap: ctx.config.cloudflare.key_overlap,
    }
}

/// Advances the key rotation (Kubernetes writes only) and returns the `SIGNING_KEY` value the
/// Worker should hold, plus when to look again.
async fn rotate_keys(
    b: &EdgeBinding,
    ctx: &Context,
    st: &mut EdgeBindingStatus,
) -> Result<(Option<String>, Option<Duration>), kube::Error> {
    let now = jiff::Timestamp::now();
    let requested = b.annotations().get(ROTATE_KEY_ANNOTATION).cloned();
    let steps = keys::steps(st, now, schedule(b, ctx), requested.as_deref());
    let (mut current, mut pending) = signing::read_keys(ctx, b).await?;
    // Retire the old key only once the Worker demonstrably holds the current one (its hash is
    // recorded), so a failing secret write never leaves the Worker signing with a dropped key.
    let worker_has_current = current
        .as_deref()
        .is_some_and(|c| st.secret_hashes.get(SIGNING_KEY) == Some(&SecretValue::new(c).hash()));
    if steps.retire && worker_has_current {
        if let Some(old) = st.retiring_key_id.take() {
            signing::publish_public(ctx, &old, None).await?;
            tracing::info!(binding = %key_of(b), key_id = %old, "retired signing key");
        }
        st.retire_after = None;
    }
    if steps.promote {
        match pending
            .as_deref()
            .and_then(keys::KeyPair::from_signing_json)
        {
            Some(p) => {
                signing::write_keys(
                    ctx,
                    b,
                    &[
                        (signing::CURRENT, pending.as_deref()),
                        (signing::PENDING, None),
                    ],
                )
                .await?;
                st.retiring_key_id = st.current_key_id.take();
                st.retire_after = st.retiring_key_id.as_ref().map(|_| {
                    (now + jiff::SignedDuration::try_from(ctx.config.cloudflare.key_overlap)
                        .unwrap_or_default())
                    .to_string()
                });
                st.current_key_id = Some(p.key_id.clone());
                st.last_rotation = Some(now.to_string());
                st.pending_key_id = None;
                st.pending_since = None;
                current = pending.take();
                tracing::info!(binding = %key_of(b), key_id = %p.key_id, "switching the Worker to the new signing key");
            }
            None => {
                // The pending key was lost (Secret edited): start over with a new one.
                st.pending_key_id = None;
                st.pending_since = None;
            }
        }
    }
    if steps.generate || (st.pending_key_id.is_none() && current.is_none() && !steps.promote) {
        let kp = keys::KeyPair::generate(keys::new_key_id(
            &b.namespace().unwrap_or_default(),
            &b.name_any(),
            now,
        ));
        let json = kp.signing_json();
        // Gateways first: the Worker never signs with a key they do not trust.
        let (ns, name) = (b.namespace().unwrap_or_default(), b.name_any());
        let entry = signing::PublicEntry {
            key: &kp.public_b64url(),
            namespace: &ns,
            binding: &name,
        };
        signing::publish_public(ctx, &kp.key_id, Some(entry)).await?;
        signing::write_keys(ctx, b, &[(signing::PENDING, Some(&json))]).await?;
        st.pending_key_id = Some(kp.key_id.clone());
        st.pending_since = Some(now.to_string());
        if requested.is_some() {
            st.rotation_request = requested;
        }
        tracing::info!(binding = %key_of(b), key_id = %kp.key_id, "published a new signing key to the gateways");
    }
    // The current key must match status; a Secret edited by hand is not trusted blindly.
    let current = current
        .filter(|c| keys::KeyPair::from_signing_json(c).map(|k| k.key_id) == st.current_key_id);
    let wake = keys::steps(st, jiff::Timestamp::now(), schedule(b, ctx), None).wake_in;
    Ok((current, wake))
}

/// Why the binding's volume defaults cannot be used, if they cannot: the LinstorBackend they
/// name must exist, or every volume created at the edge through the binding would wait forever.
async fn volume_defaults_problem(b: &EdgeBinding, ctx: &Context) -> Result<Option<String>, Error> {
    let Some(d) = &b.spec.volume_defaults else {
        return Ok(None);
    };
    let api: Api<LinstorBackend> = Api::all(ctx.client.clone());
    Ok(api.get_opt(&d.backend_ref).await?.is_none().then(|| {
        format!(
            "spec.volumeDefaults.backendRef names LinstorBackend {:?}, which does not exist: \
             create it or name another; volumes created at the edge through this binding would \
             never be placed, so the binding is not published until then",
            d.backend_ref
        )
    }))
}

async fn apply(b: Arc<EdgeBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(&b);
    let mut st = b.status.clone().unwrap_or_default();
    if let Some(msg) = volume_defaults_problem(&b, &ctx).await? {
        report(
            &b,
            &ctx,
            st,
            failed(BindingReason::BackendNotFound, &msg, false),
        )
        .await?;
        return Ok(skeleton::retry(&ctx, b.as_ref()));
    }
    let account = match account_ready(&ctx, &b.spec.account_ref) {
        Ok(a) => a,
        Err(msg) => {
            report(
                &b,
                &ctx,
                st,
                failed(BindingReason::AccountNotReady, &msg, false),
            )
            .await?;
            return Ok(skeleton::retry(&ctx, b.as_ref()));
        }
    };
    let cfg = match desired_config(&b, &ctx).await {
        Ok(c) => c,
        Err(msg) => {
            // Only a spec or ConfigMap change fixes this; ConfigMaps are not watched, so look
            // again at the resync.
            report(
                &b,
                &ctx,
                st,
                failed(BindingReason::InvalidConfig, &msg, false),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let cfg = if b.spec.workers_vpc {
        match config::account_vpc(&ctx, &b)
            .await
            .and_then(|a| config::with_vpc(cfg, &a))
        {
            Ok(c) => c,
            Err(msg) => {
                report(
                    &b,
                    &ctx,
                    st,
                    failed(BindingReason::VpcServiceNotReady, &msg, false),
                )
                .await?;
                return Ok(skeleton::retry(&ctx, b.as_ref()));
            }
        }
    } else {
        cfg
    };
    if !b.spec.tunnel_hostname.is_empty()
        && let Err(p) = tunnel_dns::ensure(&ctx, &account.client, &b, &mut st).await
    {
        let transient = matches!(p, tunnel_dns::Problem::Cloudflare(_));
        report(&b, &ctx, st, failed(p.reason(), &p.message(), transient)).await?;
        return Ok(skeleton::retry(&ctx, b.as_ref()));
    }
    let (signing_key, wake) = rotate_keys(&b, &ctx, &mut st).await?;
    let Some(signing_key) = signing_key else {
        // The first key is on its way to the gateways: a Worker published now could not sign
        // anything they accept, so publish once they trust it (one pass, not two).
        let (reason, msg) = match &st.pending_key_id {
            Some(k) => (
                BindingReason::WaitingForSigningKey,
                format!(
                    "waiting {}s for the gateways to load the first signing key {k} before publishing",
                    ctx.config.cloudflare.key_propagation.as_secs()
                ),
            ),
            None => (
                BindingReason::SigningKeyMissing,
                format!(
                    "the signing key Secret does not hold the key recorded in status ({}); annotate the binding with {ROTATE_KEY_ANNOTATION}=<any new value> to start a new key",
                    st.current_key_id.as_deref().unwrap_or("none")
                ),
            ),
        };
        report(&b, &ctx, st, failed(reason, &msg, false)).await?;
        return Ok(skeleton::until(wake, ctx.config.resync));
    };
    let (cf, listings) = (account.client.clone(), account.listings.clone());
    let desired = plan::Desired {
        upload: script_upload(&b, &cfg),
        zone: b.spec.zone_id.clone(),
        routes: b.spec.routes.clone(),
        secrets: desired_secrets(&cfg, Some(&signing_key)),
        owner_tag: owner_tag(&b),
    };
    let script = &b.spec.script_name;
    let mut observed = match observe(
        &cf,
        &listings,
        script,
        &b.spec.zone_id,
        listings.written_at(script),
        &st,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return fail(&b, &ctx, st, e).await,
    };
    let mut p = plan::plan(&desired, &observed, &st);
    if !p.ops.is_empty() {
        // About to write: decide on lists read from now on (shared with the other bindings
        // writing at this moment), not on a cached one that may miss a Worker or route created
        // since by someone else.
        observed = match observe(
            &cf,
            &listings,
            script,
            &b.spec.zone_id,
            Some(Instant::now()),
            &st,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => return fail(&b, &ctx, st, e).await,
        };
        p = plan::plan(&desired, &observed, &st);
    }
    if let Some(msg) = &p.script_conflict {
        report(
            &b,
            &ctx,
            st,
            failed(BindingReason::ScriptConflict, msg, false),
        )
        .await?;
        return Ok(Action::await_change());
    }
    // Routes edgebind still holds: recorded ones that exist, plus the ones already right.
    st.route_ids
        .retain(|_, id| observed.routes.iter().any(|r| &r.id == id));
    for (pat, id) in &p.kept_routes {
        st.route_ids.insert(pat.clone(), id.clone());
    }
    let wrote = !p.ops.is_empty();
    let executed = execute(&b, &ctx, &cf, &listings, &desired, &p, &observed, &mut st).await;
    if wrote {
        // Lists read before this moment do not show these writes.
        listings.mark_written(script);
    }
    let blocked = match executed {
        Ok(blocked) => blocked,
        Err(e) => return fail(&b, &ctx, st, e).await,
    };
    if let Some(msg) = blocked {
        report(
            &b,
            &ctx,
            st,
            failed(BindingReason::GradualDeployment, &msg, false),
        )
        .await?;
        return Ok(Action::await_change());
    }
    if wrote {
        // Record which version serves now (a read only after writes, so a converged pass stays
        // cheap; the etag came with the upload).
        match deployed_version(&cf, script).await {
            Ok(version) => st.deployed_version_id = version.or(st.deployed_version_id.take()),
            Err(e) => {
                tracing::warn!(binding = %key, error = %e, "cannot read the deployment after writing")
            }
        }
        ctx.event(
            &b.object_ref(&()),
            true,
            BindingReason::Published,
            &p.ops
                .iter()
                .map(CfOp::summary)
                .collect::<Vec<_>>()
                .join("; "),
        )
        .await;
    }
    let conds = if p.conflicts.is_empty() {
        vec![
            Desired::new(
                READY,
                true,
                BindingReason::Published,
                format!(
                    "Worker {} serves {} route(s)",
                    b.spec.script_name,
                    st.route_ids.len()
                ),
            ),
            Desired::new(
                ROUTE_CONFLICT,
                false,
                BindingReason::NoConflict,
                "every route pattern is routed to this Worker",
            ),
            Desired::new(DEGRADED, false, BindingReason::AsExpected, ""),
        ]
    } else {
        let msg = p
            .conflicts
            .iter()
            .map(|c| {
                format!(
                    "{} is routed to {} (route {}), not to {}; edgebind leaves it alone: remove that route or choose another pattern",
                    c.pattern,
                    c.script.as_deref().unwrap_or("no Worker"),
                    c.route_id,
                    b.spec.script_name
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        vec![
            Desired::new(READY, false, BindingReason::RouteConflict, msg.clone()),
            Desired::new(
                ROUTE_CONFLICT,
                true,
                BindingReason::RouteOwnedElsewhere,
                msg,
            ),
            Desired::new(DEGRADED, false, BindingReason::AsExpected, ""),
        ]
    };
    report(&b, &ctx, st, conds).await?;
    Ok(skeleton::settled_until(&ctx, b.as_ref(), wake))
}

async fn deployed_version(cf: &CfClient, script: &str) -> Result<Option<String>, CfError> {
    let deployments = cf.list_deployments(script).await?;
    Ok(deployments
        .first()
        .and_then(|d| d.sole_version())
        .map(str::to_string))
}

/// Runs the planned writes in order, recording each success in `st` so a failure halfway
/// keeps what was done. `Some(why)`: stopped before a write that would end a gradual
/// deployment.
#[allow(clippy::too_many_arguments)]
async fn execute(
    b: &EdgeBinding,
    ctx: &Context,
    cf: &CfClient,
    listings: &Listings,
    desired: &plan::Desired,
    p: &BindingPlan,
    observed: &Observed,
    st: &mut EdgeBindingStatus,
) -> Result<Option<String>, CfError> {
    let key = key_of(b);
    let observed_modified_on = observed.script.as_ref().map(|s| s.modified_on.as_deref());
    for op in &p.ops {
        if matches!(op, CfOp::UploadScript { .. })
            && observed.script.is_some()
            && let Some(split) = gradual_deployment(cf, &desired.upload.script_name).await?
        {
            // An upload deploys at 100 %: it would end someone's gradual rollout unasked.
            return Ok(Some(format!(
                "{split}; edgebind does not replace it: the Worker is uploaded once one version serves all traffic (wrangler versions deploy)"
            )));
        }
        tracing::info!(binding = %key, op = %op.summary(), "Cloudflare write");
        match op {
            CfOp::UploadScript {
                upload,
                content_hash,
                secrets,
                ..
            } => {
                let info = cf.upload_script(upload, secrets).await?;
                st.script_hash = Some(content_hash.clone());
                st.script_etag = info.etag;
                for (k, v) in secrets {
                    st.secret_hashes.insert(k.clone(), v.hash());
                }
                // This upload wrote the secret names it moved `modified_on` for: the next
                // pass need not list them again.
                listings.own_upload(
                    &upload.script_name,
                    observed_modified_on,
                    info.modified_on.as_deref(),
                );
            }
            CfOp::PutSecrets { script, secrets } => {
                let put = visible_retry(&op.summary(), || cf.put_secrets(script, secrets)).await;
                match put {
                    Ok(()) => {}
                    Err(e) if e.is_latest_not_deployed() => {
                        // 10215: the latest version is not the one fully deployed. During a
                        // gradual deployment that is someone's rollout: keep the split and
                        // say so (deploying would end it unasked).
                        if let Some(split) = gradual_deployment(cf, script).await? {
                            return Ok(Some(format!(
                                "{split}; Cloudflare refuses secret edits until one version serves all traffic (10215), and edgebind does not end the rollout: secrets {} are written once it is complete (wrangler versions deploy)",
                                secrets.keys().cloned().collect::<Vec<_>>().join(", ")
                            )));
                        }
                        // Else a version was uploaded and not deployed, while one version
                        // serves everything: upload a version with our code and these secrets,
                        // then deploy it (no force, no loop).
                        tracing::info!(binding = %key, "latest Worker version is not deployed; uploading a version with the secrets and deploying it");
                        let v = cf.upload_version(&desired.upload, secrets).await?;
                        cf.deploy_version(script, &v.id).await?;
                        st.script_hash = Some(desired.upload.content_hash());
                        ctx.event(
                            &b.object_ref(&()),
                            true,
                            BindingReason::VersionDeployed,
                            &format!("the latest Worker version was not deployed; deployed version {} with edgebind's code and secrets", v.id),
                        )
                        .await;
                    }
                    Err(e) => return Err(e),
                }
                for (k, v) in secrets {
                    st.secret_hashes.insert(k.clone(), v.hash());
                }
            }
            CfOp::DeleteSecret { name, .. } => {
                match cf.execute(op).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) if e.is_latest_not_deployed() => {
                        // 10215: no secret edit until the latest version is deployed. The
                        // secret stays recorded, so a later pass deletes it; nothing waits.
                        tracing::info!(binding = %key, secret = %name, "secret not deleted yet: the latest Worker version is not deployed (10215)");
                        continue;
                    }
                    Err(e) => return Err(e),
                }
                st.secret_hashes.remove(name);
            }
            CfOp::CreateRoute { pattern, .. } | CfOp::UpdateRoute { pattern, .. } => {
                let id = route_write(cf, op).await?;
                if let Some(id) = id {
                    st.route_ids.insert(pattern.clone(), id);
                }
            }
            CfOp::DeleteRoute { id, .. } => {
                match cf.execute(op).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
                st.route_ids.retain(|_, v| v != id);
            }
            CfOp::DeleteScript { .. } => {
                cf.execute(op).await?;
            }
        }
    }
    Ok(None)
}

/// Reads the current deployment and describes it when it is gradual (`plan::gradual`).
async fn gradual_deployment(cf: &CfClient, script: &str) -> Result<Option<String>, CfError> {
    let deployments = cf.list_deployments(script).await?;
    Ok(deployments.first().and_then(|d| plan::gradual(script, d)))
}

/// Runs a write, retrying while a just-uploaded script is not visible yet (10019 on routes,
/// 10007 on script calls: propagation, reference §3).
async fn visible_retry<T, F, Fut>(what: &str, mut f: F) -> Result<T, CfError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CfError>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if e.is_script_missing() && attempt + 1 < FRESH_ATTEMPTS => {
                attempt += 1;
                tracing::info!(write = %what, attempt, "Worker not visible yet; retrying");
                tokio::time::sleep(Duration::from_millis(300 * 2u64.pow(attempt - 1))).await;
            }
            other => return other,
        }
    }
}

async fn route_write(cf: &CfClient, op: &CfOp) -> Result<Option<String>, CfError> {
    visible_retry(&op.summary(), || cf.execute(op)).await
}

async fn fail(
    b: &EdgeBinding,
    ctx: &Context,
    st: EdgeBindingStatus,
    e: CfError,
) -> Result<Action, Error> {
    if e.is_unauthorized() && !token_refused(ctx, &b.spec.account_ref, &e).await {
        // The token is fine; it may not act on this binding's zone or Worker.
        let msg = format!(
            "the API token verifies but {e}; give it Workers Routes Edit on zone {} and Workers Scripts Edit on the account (other bindings of the account are not affected)",
            b.spec.zone_id
        );
        report(
            b,
            ctx,
            st,
            failed(BindingReason::PermissionDenied, &msg, false),
        )
        .await?;
        return Ok(skeleton::retry(ctx, b));
    }
    let transient = e.is_transient();
    report(
        b,
        ctx,
        st,
        failed(
            e.reason().into(),
            &e.to_string(),
            transient || e.is_unauthorized(),
        ),
    )
    .await?;
    match &e {
        CfError::RateLimited { retry_after, .. } => Ok(Action::requeue(
            (*retry_after).max(ctx.backoff.next(&skeleton::BackoffKey::of(b))),
        )),
        _ => Err(Error::Cloudflare(e)),
    }
}

/// After a 401/403 on one binding's call: whether the token itself is refused. Only the
/// token's verification says so (invalid, expired, disabled); then the account stops for
/// every binding until it verifies again. A token that verifies but lacks one zone's
/// permission gets the same 403 / 10000 (reference §4), which concerns that binding only.
async fn token_refused(ctx: &Context, account: &str, e: &CfError) -> bool {
    let Some(h) = ctx.accounts.get(account) else {
        return false;
    };
    let refused = match h.client.verify_token().await {
        Ok((v, _)) => v.status != "active",
        Err(v) => v.is_unauthorized(),
    };
    if refused {
        ctx.accounts.mark_refused(account, &e.to_string());
    }
    refused
}

async fn cleanup(b: Arc<EdgeBinding>, ctx: Arc<Context>) -> Result<Action, Error> {
    let st = b.status.clone().unwrap_or_default();
    let accounts: Api<crate::crd::CloudflareAccount> = Api::all(ctx.client.clone());
    let account = match account_ready(&ctx, &b.spec.account_ref) {
        Ok(a) => a,
        Err(msg) => {
            if accounts.get_opt(&b.spec.account_ref).await?.is_none() {
                ctx.event(
                    &b.object_ref(&()),
                    false,
                    BindingReason::AccountGone,
                    &format!(
                        "{msg}; the Worker, its routes and secrets (if any) were left as they are"
                    ),
                )
                .await;
                forget_keys(&ctx, &b, &st).await?;
                return Ok(Action::await_change());
            }
            return Err(Error::Blocked(msg));
        }
    };
    let (cf, listings) = (account.client.clone(), account.listings.clone());
    // Deleting: decide on fresh lists, and every secret name as Cloudflare lists it.
    listings.forget(&b.spec.script_name);
    let observed = observe(
        &cf,
        &listings,
        &b.spec.script_name,
        &b.spec.zone_id,
        Some(Instant::now()),
        &st,
    )
    .await?;
    let ops = plan::plan_cleanup(
        &b.spec.script_name,
        &owner_tag(&b),
        &b.spec.zone_id,
        b.spec.keep_script_on_delete,
        &observed,
        &st,
    );
    let mut left = Vec::new();
    for op in &ops {
        tracing::info!(binding = %key_of(&b), op = %op.summary(), "Cloudflare write");
        match cf.execute(op).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            // 10215: Cloudflare refuses secret edits until someone's undeployed or gradual
            // version is deployed, which may be never; the finalizer must not wait for it.
            // The Worker is kept on request, and its SIGNING_KEY signs nothing the gateways
            // still trust once the keys are forgotten below.
            Err(e) if e.is_latest_not_deployed() && matches!(op, CfOp::DeleteSecret { .. }) => {
                if let CfOp::DeleteSecret { name, .. } = op {
                    left.push(name.clone());
                }
            }
            Err(e) => {
                if e.is_unauthorized() {
                    token_refused(&ctx, &b.spec.account_ref, &e).await;
                }
                return Err(e.into());
            }
        }
    }
    if !left.is_empty() {
        ctx.event(
            &b.object_ref(&()),
            false,
            BindingReason::SecretsLeft,
            &format!(
                "secrets {} were left on the kept Worker {}: its latest version is not deployed, so Cloudflare refuses secret edits (10215); delete them once it is (wrangler secret delete)",
                left.join(", "),
                b.spec.script_name
            ),
        )
        .await;
    }
    tunnel_dns::remove(&cf, &b, &st).await?;
    forget_keys(&ctx, &b, &st).await?;
    if !ops.is_empty() {
        ctx.event(
            &b.object_ref(&()),
            true,
            BindingReason::Unpublished,
            &ops.iter().map(CfOp::summary).collect::<Vec<_>>().join("; "),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// The binding is going: its public keys leave the gateways' Secret, then its private keys
/// are deleted (they are in the operator's namespace, which the binding cannot own).
async fn forget_keys(
    ctx: &Context,
    b: &EdgeBinding,
    st: &EdgeBindingStatus,
) -> Result<(), kube::Error> {
    for k in [&st.current_key_id, &st.pending_key_id, &st.retiring_key_id]
        .into_iter()
        .flatten()
    {
        signing::publish_public(ctx, k, None).await?;
    }
    signing::delete_keys(ctx, b).await
}
