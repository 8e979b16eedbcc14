//! `edgebind plan` for EdgeBindings: the Cloudflare writes the controller would make for a
//! first publish, computed by the controller's own pure plan against an embedded, empty
//! Cloudflare simulator. Secret values are shown as hashes only; the signing key is not
//! generated (the controller generates it and publishes it to the gateways first).

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use serde_json::Value;

use super::{ObjectPlan, PlannedCondition, refused};
use crate::cloudflare::{CfClient, CfClientConfig};
use crate::controller::binding::config::{compile_for, with_vpc};
use crate::controller::binding::listing::Listings;
use crate::controller::binding::{
    desired_secrets, observe, owner_tag, plan as bplan, script_upload,
};
use crate::controller::tunnel;
use crate::crd::account::{TUNNEL_TOKEN_KEY, tunnel_secret_name};
use crate::crd::binding::EdgeBindingStatus;
use crate::crd::conditions::{Desired, READY};
use crate::crd::reasons::{AccountReason, BindingReason};
use crate::crd::{CloudflareAccount, EdgeBinding, IdentityIssuer, VolumeAccessPolicy};
use edgebind_sim::cloudflare::{CfSimConfig, CloudflareSim, REALISTIC_TOKEN, SimToken};

pub(super) async fn plan_cloudflare(
    accounts: &[CloudflareAccount],
    bindings: &[EdgeBinding],
    issuers: &[IdentityIssuer],
    policies: &[VolumeAccessPolicy],
) -> anyhow::Result<Vec<ObjectPlan>> {
    let mut out = Vec::new();
    if bindings.is_empty() && accounts.is_empty() {
        return Ok(out);
    }
    // One empty simulated account per CloudflareAccount, with the zones the bindings use.
    let sim_cfg = CfSimConfig {
        accounts: accounts
            .iter()
            .map(|a| {
                (
                    a.spec.account_id.clone(),
                    vec![SimToken::active(REALISTIC_TOKEN)],
                )
            })
            .collect(),
        zones: bindings
            .iter()
            .filter_map(|b| {
                let acc = accounts
                    .iter()
                    .find(|a| a.name_any() == b.spec.account_ref)?;
                Some((
                    b.spec.zone_id.clone(),
                    "plan.invalid".to_string(),
                    acc.spec.account_id.clone(),
                ))
            })
            .collect(),
        rate_limit: None,
        latency: Duration::ZERO,
    };
    let sim = CloudflareSim::start(sim_cfg).await?;
    for a in accounts {
        let mut op = ObjectPlan {
            kind: "CloudflareAccount".into(),
            name: a.name_any(),
            ..Default::default()
        };
        op.details.insert(
            "apiToken".into(),
            Value::String(format!(
                "Secret {}/{} key {} (redacted; verified by the controller, not by plan)",
                a.spec.api_token.namespace, a.spec.api_token.name, a.spec.api_token.key
            )),
        );
        // Valid or not, plan cannot say more: the token is verified when the controller runs.
        if let Err(e) = a.validate_cel() {
            op.conditions.push(refused(AccountReason::InvalidConfig, e));
        }
        if let Some(t) = &a.spec.tunnel {
            // What the tunnel pass writes, from its own rules (name, ingress); the ids exist
            // only once Cloudflare has created the tunnel.
            let service = t
                .service
                .clone()
                .unwrap_or_else(|| "<the gateway Service: --gateway-service>".into());
            let hostnames = tunnel::hostnames_for(&a.name_any(), bindings);
            op.details.insert(
                "tunnel".into(),
                serde_json::json!({
                    "create": format!("POST /accounts/{{account_id}}/cfd_tunnel  # tunnel {} (config_src cloudflare)",
                        if a.uid().is_some() { tunnel::tunnel_name(a) } else { "edgebind-<the account's uid>".into() }),
                    "configure": format!("PUT /accounts/{{account_id}}/cfd_tunnel/{{tunnel_id}}/configurations  # {}", tunnel::desired_ingress(&hostnames, &service)),
                    "token": format!("Secret <operator namespace>/{} key {} (redacted)", tunnel_secret_name(&a.name_any()), TUNNEL_TOKEN_KEY),
                }),
            );
        }
        out.push(op);
    }
    for b in bindings {
        out.push(plan_binding(b, accounts, issuers, policies, &sim.url()).await);
    }
    sim.shutdown().await;
    Ok(out)
}

async fn plan_binding(
    b: &EdgeBinding,
    accounts: &[CloudflareAccount],
    issuers: &[IdentityIssuer],
    policies: &[VolumeAccessPolicy],
    url: &str,
) -> ObjectPlan {
    let ns = b.namespace().unwrap_or_else(|| "default".into());
    let mut op = ObjectPlan {
        kind: "EdgeBinding".into(),
        namespace: Some(ns.clone()),
        name: b.name_any(),
        ..Default::default()
    };
    let fail = |mut op: ObjectPlan, reason: BindingReason, msg: String| {
        op.conditions.push(PlannedCondition::from(&Desired::new(
            READY, false, reason, msg,
        )));
        op
    };
    if let Err(e) = b.validate_cel() {
        op.conditions.push(refused(BindingReason::InvalidConfig, e));
        return op;
    }
    let Some(acc) = accounts.iter().find(|a| a.name_any() == b.spec.account_ref) else {
        return fail(
            op,
            BindingReason::AccountNotReady,
            format!(
                "CloudflareAccount {:?} is not among the manifests",
                b.spec.account_ref
            ),
        );
    };
    let cfg = compile_for(b, issuers, policies);
    let cfg = match cfg {
        Ok(c) => c,
        Err(msg) => return fail(op, BindingReason::InvalidConfig, msg),
    };
    // A `workersVpc` binding needs the service the account's status records.
    let cfg = match cfg {
        c if b.spec.workers_vpc => match with_vpc(c, acc) {
            Ok(c) => c,
            Err(msg) => return fail(op, BindingReason::VpcServiceNotReady, msg),
        },
        c => c,
    };
    let client = CfClient::new(CfClientConfig {
        api_url: url.to_string(),
        account_id: acc.spec.account_id.clone(),
        token: REALISTIC_TOKEN.to_string(),
        budget: acc.spec.budget.as_budget(),
        timeout: Duration::from_secs(10),
        max_wait: Duration::from_secs(1),
    });
    let client = match client {
        Ok(c) => Arc::new(c),
        Err(msg) => return fail(op, BindingReason::InvalidConfig, msg),
    };
    let desired = bplan::Desired {
        upload: script_upload(b, &cfg),
        zone: b.spec.zone_id.clone(),
        routes: b.spec.routes.clone(),
        secrets: desired_secrets(&cfg, None),
        owner_tag: owner_tag(b),
    };
    let listings = Listings::new(Duration::ZERO);
    let status = EdgeBindingStatus::default();
    let observed = match observe(
        &client,
        &listings,
        &b.spec.script_name,
        &b.spec.zone_id,
        None,
        &status,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => return fail(op, e.reason().into(), e.to_string()),
    };
    let p = bplan::plan(&desired, &observed, &status);
    op.cloudflare_ops = p.ops;
    if !b.spec.tunnel_hostname.is_empty() {
        op.details.insert(
            "dnsRecord".into(),
            Value::String(format!(
                "POST /zones/{{zone_id}}/dns_records  # proxied CNAME {} -> <tunnel id>.cfargotunnel.com, once CloudflareAccount {} has its tunnel",
                b.spec.tunnel_hostname.to_ascii_lowercase(),
                b.spec.account_ref
            )),
        );
    }
    op.details.insert(
        "signingKey".into(),
        Value::String(
            "a new Ed25519 key is generated, published to the gateways, then set as SIGNING_KEY"
                .into(),
        ),
    );
    op.conditions.push(PlannedCondition::from(&Desired::new(
        READY,
        true,
        BindingReason::Published,
        format!(
            "Worker {} would serve {} route(s)",
            b.spec.script_name,
            b.spec.routes.len()
        ),
    )));
    op
}
