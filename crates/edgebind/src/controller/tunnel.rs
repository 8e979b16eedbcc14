//! The Cloudflare Tunnel of a CloudflareAccount (`spec.tunnel`): one remotely managed tunnel per
//! account, created and owned by edgebind, whose ingress sends each EdgeBinding's
//! `tunnelHostname` to the gateway Service, whose token is kept for the chart's cloudflared in
//! the Secret `edgebind-tunnel-<account>` (operator namespace), and whose connections are
//! reported in the account's status.
//!
//! One tunnel per account, not per binding: cloudflared runs one tunnel per process, so a tunnel
//! per binding would need a Deployment per binding that the chart cannot know of; and every
//! binding of an account reaches the same gateway. The account owns the ingress (one writer);
//! each binding owns its DNS record (`binding::tunnel_dns`).
//!
//! Ownership: only the tunnel recorded in status, or one named `edgebind-<account uid>` (a name
//! only edgebind makes), is read, changed or deleted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::Context;
use crate::cloudflare::{CfClient, CfError};
use crate::crd::account::{CloudflareAccount, TUNNEL_TOKEN_KEY, TunnelStatus, tunnel_secret_name};
use crate::crd::binding::EdgeBinding;
use crate::crd::conditions::{Desired, TUNNEL_READY, WORKERS_VPC_READY};
use crate::crd::reasons::AccountReason;

/// Annotation on the tunnel Secret: the tunnel id the token belongs to.
const TUNNEL_ID_ANNOTATION: &str = "edgebind.dev/tunnel-id";

/// The name edgebind gives an account's tunnel: unique per account object.
pub(crate) fn tunnel_name(a: &CloudflareAccount) -> String {
    format!("edgebind-{}", a.meta().uid.as_deref().unwrap_or("no-uid"))
}

/// The ingress rules for `hostnames` (sorted, unique), then the catch-all that cloudflared
/// requires last: a request for any other host gets 404 and never reaches the gateway.
pub(crate) fn desired_ingress(hostnames: &[String], service: &str) -> Value {
    let mut rules: Vec<Value> = hostnames
        .iter()
        .map(|h| json!({"hostname": h, "service": service}))
        .collect();
    rules.push(json!({"service": "http_status:404"}));
    json!({ "ingress": rules })
}

/// The public hostnames of the bindings that use account `name`'s tunnel.
pub(crate) fn hostnames_for(name: &str, bindings: &[EdgeBinding]) -> Vec<String> {
    let mut h: Vec<String> = bindings
        .iter()
        .filter(|b| b.spec.account_ref == name && !b.spec.tunnel_hostname.is_empty())
        .filter(|b| b.meta().deletion_timestamp.is_none())
        .map(|b| b.spec.tunnel_hostname.to_ascii_lowercase())
        .collect();
    h.sort();
    h.dedup();
    h
}

/// The outcome for the account: its `TunnelReady` condition (none without a tunnel) and
/// `status.tunnel`.
pub(crate) struct Outcome {
    pub condition: Option<Desired>,
    /// `WorkersVpcReady`, only while `spec.tunnel.workersVpc` is set.
    pub vpc_condition: Option<Desired>,
    pub status: Option<TunnelStatus>,
}

fn cond(ok: bool, reason: AccountReason, msg: impl Into<String>) -> Option<Desired> {
    Some(Desired::new(TUNNEL_READY, ok, reason, msg))
}

fn vpc_cond(ok: bool, reason: AccountReason, msg: impl Into<String>) -> Option<Desired> {
    Some(Desired::new(WORKERS_VPC_READY, ok, reason, msg))
}

fn failed(e: &CfError, status: Option<TunnelStatus>) -> Outcome {
    Outcome {
        vpc_condition: None,
        condition: cond(false, e.reason().into(), format!("tunnel: {e}")),
        status,
    }
}

/// Brings the account's tunnel to what its spec asks: exists (or is deleted), carries the
/// bindings' ingress, its token is in the Secret. Reads per converged pass: the bindings (from
/// the API server), the tunnel's configuration and connections (two Cloudflare GETs).
pub(crate) async fn reconcile(ctx: &Context, a: &CloudflareAccount, cf: &CfClient) -> Outcome {
    let recorded = a
        .status
        .as_ref()
        .and_then(|s| s.tunnel.clone())
        .filter(|t| !t.id.is_empty());
    let Some(spec) = &a.spec.tunnel else {
        return remove(ctx, a, cf, recorded).await;
    };
    let Some(service) = spec
        .service
        .clone()
        .or_else(|| ctx.config.cloudflare.gateway_service.clone())
    else {
        return Outcome {
            vpc_condition: None,
            condition: cond(
                false,
                AccountReason::NoGatewayService,
                "no origin for the tunnel: set spec.tunnel.service, or install the controller with --gateway-service (the chart sets it)",
            ),
            status: recorded,
        };
    };
    let bindings = match Api::<EdgeBinding>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => l.items,
        Err(e) => {
            return Outcome {
                vpc_condition: None,
                condition: cond(
                    false,
                    AccountReason::CloudflareError,
                    format!("cannot list EdgeBindings: {e}"),
                ),
                status: recorded,
            };
        }
    };
    let hostnames = hostnames_for(&a.name_any(), &bindings);
    let name = tunnel_name(a);

    // Observe: the recorded tunnel, else one of ours by name, else create it.
    let mut id = recorded.as_ref().map(|t| t.id.clone());
    let mut config = None;
    if let Some(t) = &id {
        match cf.tunnel_config(t).await {
            Ok(c) => config = Some(c.config.unwrap_or_else(|| json!({}))),
            // Deleted by someone: make a new one (the old token stops working with it).
            Err(e) if e.is_not_found() => id = None,
            Err(e) => return failed(&e, recorded),
        }
    }
    if id.is_none() {
        let found = match cf.find_tunnels(&name).await {
            Ok(f) => f,
            Err(e) => return failed(&e, recorded),
        };
        id = Some(match found.into_iter().next() {
            Some(t) => t.id,
            None => match cf.create_tunnel(&name).await {
                Ok(t) => {
                    tracing::info!(account = %a.name_any(), tunnel = %t.id, "created the account's tunnel");
                    t.id
                }
                Err(e) => return failed(&e, recorded),
            },
        });
    }
    let id = id.unwrap_or_default();
    let recorded_vpc = recorded.as_ref().and_then(|t| t.vpc_service_id.clone());
    let mut status = TunnelStatus {
        id: id.clone(),
        name,
        state: None,
        connectors: 0,
        hostnames: hostnames.clone(),
        vpc_service_id: recorded_vpc.clone(),
        vpc_service_url: recorded.as_ref().and_then(|t| t.vpc_service_url.clone()),
    };
    if let Err(e) = keep_token(ctx, a, cf, &id).await {
        return failed(&e, Some(status));
    }

    // Decide and execute: the ingress, only when it differs.
    let want = desired_ingress(&hostnames, &service);
    let have = match config {
        Some(c) => c,
        None => match cf.tunnel_config(&id).await {
            Ok(c) => c.config.unwrap_or_else(|| json!({})),
            Err(e) => return failed(&e, Some(status)),
        },
    };
    if have.get("ingress") != want.get("ingress") {
        if let Err(e) = cf.put_tunnel_config(&id, &want).await {
            return failed(&e, Some(status));
        }
        tracing::info!(account = %a.name_any(), tunnel = %id, hostnames = hostnames.len(), "tunnel ingress updated");
    }

    // The Workers VPC service: its failure is its own condition, the tunnel still works.
    let vpc_condition = match vpc::reconcile(cf, spec.workers_vpc, &status, &service).await {
        Ok(Some((sid, url))) => {
            status.vpc_service_id = Some(sid.clone());
            status.vpc_service_url = Some(url.clone());
            vpc_cond(
                true,
                AccountReason::VpcServiceRegistered,
                format!("Workers VPC service {sid} reaches {url} through tunnel {id}"),
            )
        }
        Ok(None) => {
            status.vpc_service_id = None;
            status.vpc_service_url = None;
            None
        }
        Err(e) => vpc_cond(
            false,
            e.reason().into(),
            format!(
                "Workers VPC service: {e} (the account needs Workers VPC, the token Connectivity Directory Admin)"
            ),
        ),
    };

    // Report: the connections cloudflared holds.
    let connectors = match cf.tunnel_connectors(&id).await {
        Ok(c) => c,
        Err(e) => return failed(&e, Some(status)),
    };
    status.connectors = u32::try_from(connectors.len()).unwrap_or(u32::MAX);
    status.state = Some(
        if connectors.is_empty() {
            "down"
        } else {
            "healthy"
        }
        .to_string(),
    );
    let condition = if connectors.is_empty() {
        cond(
            false,
            AccountReason::TunnelDisconnected,
            format!(
                "tunnel {id} has no cloudflared connected: run cloudflared with the token in Secret {}/{} (chart value cloudflared.accounts)",
                ctx.config.cloudflare.key_namespace,
                tunnel_secret_name(&a.name_any())
            ),
        )
    } else {
        cond(
            true,
            AccountReason::TunnelConnected,
            format!(
                "tunnel {id}: {} cloudflared connected, {} hostname(s) routed to {service}",
                connectors.len(),
                hostnames.len()
            ),
        )
    };
    Outcome {
        condition,
        vpc_condition,
        status: Some(status),
    }
}

/// Keeps the tunnel token in the Secret cloudflared reads. The token is fetched only when the
/// Secret is missing or belongs to another tunnel, so a converged pass reads no token.
async fn keep_token(
    ctx: &Context,
    a: &CloudflareAccount,
    cf: &CfClient,
    id: &str,
) -> Result<(), CfError> {
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &ctx.config.cloudflare.key_namespace);
    let name = tunnel_secret_name(&a.name_any());
    let current = api.get_opt(&name).await.map_err(kube_err)?;
    let holds = current.as_ref().is_some_and(|s| {
        s.annotations()
            .get(TUNNEL_ID_ANNOTATION)
            .map(String::as_str)
            == Some(id)
            && s.data
                .as_ref()
                .is_some_and(|d| d.contains_key(TUNNEL_TOKEN_KEY))
    });
    if holds {
        return Ok(());
    }
    let token = cf.tunnel_token(id).await?;
    let body = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ctx.config.cloudflare.key_namespace,
                     "labels": {"app.kubernetes.io/managed-by": "edgebind"},
                     "annotations": {TUNNEL_ID_ANNOTATION: id,
                                     "edgebind.dev/account": a.name_any()}},
        "type": "Opaque",
        "data": {TUNNEL_TOKEN_KEY: STANDARD.encode(token.expose())},
    });
    let r = if current.is_none() {
        let s: Secret =
            serde_json::from_value(body).map_err(|e| kube_err(kube::Error::SerdeError(e)))?;
        api.create(&PostParams::default(), &s).await.map(|_| ())
    } else {
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map(|_| ())
    };
    r.map_err(kube_err)?;
    tracing::info!(account = %a.name_any(), tunnel = %id, secret = %name, "tunnel token stored");
    Ok(())
}

/// `spec.tunnel` is gone: delete the tunnel edgebind recorded (Cloudflare refuses while
/// cloudflared is connected; the condition says so) and its token Secret.
pub(crate) async fn remove(
    ctx: &Context,
    a: &CloudflareAccount,
    cf: &CfClient,
    recorded: Option<TunnelStatus>,
) -> Outcome {
    let Some(t) = recorded else {
        return Outcome {
            vpc_condition: None,
            condition: None,
            status: None,
        };
    };
    // The VPC service names the tunnel: it goes first.
    if let Err(e) = vpc::reconcile(cf, false, &t, "").await {
        return failed(&e, Some(t));
    }
    match cf.delete_tunnel(&t.id).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) if e.is_tunnel_connected() => {
            return Outcome {
                vpc_condition: None,
                condition: cond(
                    false,
                    AccountReason::TunnelDeleting,
                    format!(
                        "tunnel {} still has cloudflared connected; stop it (remove the account from the chart's cloudflared.accounts) and edgebind deletes the tunnel",
                        t.id
                    ),
                ),
                status: Some(t),
            };
        }
        Err(e) => return failed(&e, Some(t)),
    }
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &ctx.config.cloudflare.key_namespace);
    match api
        .delete(&tunnel_secret_name(&a.name_any()), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return failed(&kube_err(e), Some(t)),
    }
    tracing::info!(account = %a.name_any(), tunnel = %t.id, "deleted the account's tunnel");
    Outcome {
        vpc_condition: None,
        condition: None,
        status: None,
    }
}

/// The Workers VPC service of the account's tunnel (reference §11, "Workers VPC"): a
/// connectivity directory entry of type `http` whose host is the gateway Service, resolved by
/// cloudflared through the tunnel. No `resolver_ips`: without them cloudflared uses its
/// system resolver (https://developers.cloudflare.com/workers-vpc/configuration/vpc-services/),
/// which in the cloudflared pod is the cluster DNS that resolves Service names.
///
/// Ownership: only the service recorded in status, or one named like the tunnel
/// (`edgebind-<account uid>`), is read, changed or deleted.
pub(crate) mod vpc {
    use serde_json::{Value, json};
    use url::{Host, Url};

    use crate::cloudflare::{CfClient, CfError};
    use crate::crd::account::TunnelStatus;

    /// The directory entry for `service` (the gateway URL) through tunnel `tunnel_id`, and the
    /// URL the Worker fetches. `None` when `service` is not an http(s) URL with a host.
    pub(crate) fn desired(name: &str, tunnel_id: &str, service: &str) -> Option<(Value, String)> {
        let u = Url::parse(service).ok()?;
        let port = u.port_or_known_default()?;
        let port_key = match u.scheme() {
            "http" => "http_port",
            "https" => "https_port",
            _ => return None,
        };
        let host = match u.host()? {
            Host::Domain(d) => {
                json!({"hostname": d, "resolver_network": {"tunnel_id": tunnel_id}})
            }
            Host::Ipv4(a) => json!({"ipv4": a.to_string(), "network": {"tunnel_id": tunnel_id}}),
            Host::Ipv6(a) => json!({"ipv6": a.to_string(), "network": {"tunnel_id": tunnel_id}}),
        };
        let mut body = json!({"type": "http", "name": name, "host": host});
        body[port_key] = json!(port);
        Some((body, u.origin().ascii_serialization()))
    }

    /// Whether the entry Cloudflare shows is the one edgebind wants: the fields edgebind
    /// writes are equal (an absent port and null are the same; `resolver_ips` null or empty).
    pub(crate) fn matches(have: &serde_json::Map<String, Value>, want: &Value) -> bool {
        let norm = |v: Option<&Value>| v.filter(|x| !x.is_null()).cloned();
        let host = |h: Option<&Value>| {
            let mut h = h.cloned().unwrap_or(Value::Null);
            if let Some(r) = h.get_mut("resolver_network").and_then(Value::as_object_mut)
                && r.get("resolver_ips")
                    .is_none_or(|ips| ips.is_null() || ips.as_array().is_some_and(Vec::is_empty))
            {
                r.remove("resolver_ips");
            }
            h
        };
        ["type", "name", "http_port", "https_port"]
            .iter()
            .all(|k| norm(have.get(*k)) == norm(want.get(*k)))
            && host(have.get("host")) == host(want.get("host"))
    }

    /// Brings the service to what the spec asks (`enabled`) for the tunnel in `status`.
    /// Returns the service id and the URL to fetch while enabled, `None` once there is none.
    pub(crate) async fn reconcile(
        cf: &CfClient,
        enabled: bool,
        status: &TunnelStatus,
        service: &str,
    ) -> Result<Option<(String, String)>, CfError> {
        let recorded = status.vpc_service_id.clone().filter(|s| !s.is_empty());
        if !enabled {
            if let Some(id) = recorded {
                match cf.delete_vpc_service(&id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(tunnel = %status.id, service = %id, "deleted the Workers VPC service");
            }
            return Ok(None);
        }
        let Some((want, url)) = desired(&status.name, &status.id, service) else {
            return Err(CfError::Unreachable(format!(
                "the gateway URL {service:?} has no host and port a VPC service can name"
            )));
        };
        // Observe: the recorded entry, else one of ours by name.
        let mut have = None;
        if let Some(id) = &recorded {
            match cf.get_vpc_service(id).await {
                Ok(s) => have = Some(s),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        if have.is_none() {
            have = cf
                .list_vpc_services()
                .await?
                .into_iter()
                .find(|s| s.name == status.name);
        }
        // Decide and execute.
        let id = match have {
            Some(s) if matches(&s.rest_with_name(), &want) => s.service_id,
            Some(s) => {
                cf.update_vpc_service(&s.service_id, &want).await?;
                tracing::info!(tunnel = %status.id, service = %s.service_id, "Workers VPC service brought back to the spec");
                s.service_id
            }
            None => {
                let s = cf.create_vpc_service(&want).await?;
                tracing::info!(tunnel = %status.id, service = %s.service_id, "registered the gateway as a Workers VPC service");
                s.service_id
            }
        };
        Ok(Some((id, url)))
    }
}

fn kube_err(e: kube::Error) -> CfError {
    CfError::Unreachable(format!("Kubernetes: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vpc_service_names_the_gateway_host_and_port_through_the_tunnel() {
        let (body, url) = vpc::desired(
            "edgebind-u1",
            "t-1",
            "http://edgebind-gateway.edgebind-system.svc:8080",
        )
        .unwrap();
        assert_eq!(url, "http://edgebind-gateway.edgebind-system.svc:8080");
        assert_eq!(
            body,
            json!({"type": "http", "name": "edgebind-u1", "http_port": 8080,
                   "host": {"hostname": "edgebind-gateway.edgebind-system.svc",
                            "resolver_network": {"tunnel_id": "t-1"}}})
        );
        let (body, _) = vpc::desired("n", "t", "https://10.0.0.5").unwrap();
        assert_eq!(body["https_port"], 443);
        assert_eq!(body["host"]["ipv4"], "10.0.0.5");
        assert!(vpc::desired("n", "t", "unix:/x").is_none());

        // What Cloudflare echoes (nulls, empty resolver list) is not drift; a port change is.
        let have = json!({"type": "http", "name": "edgebind-u1", "http_port": 8080,
            "https_port": null, "tls_settings": null,
            "host": {"hostname": "edgebind-gateway.edgebind-system.svc",
                     "resolver_network": {"tunnel_id": "t-1", "resolver_ips": []}}});
        let (want, _) = vpc::desired(
            "edgebind-u1",
            "t-1",
            "http://edgebind-gateway.edgebind-system.svc:8080",
        )
        .unwrap();
        assert!(vpc::matches(have.as_object().unwrap(), &want));
        let mut moved = have.clone();
        moved["http_port"] = json!(9090);
        assert!(!vpc::matches(moved.as_object().unwrap(), &want));
    }

    #[test]
    fn ingress_lists_each_hostname_once_then_the_catch_all() {
        let v = desired_ingress(
            &["a.example.com".into(), "b.example.com".into()],
            "http://gw:8080",
        );
        let rules = v["ingress"].as_array().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0]["hostname"], "a.example.com");
        assert_eq!(rules[2], json!({"service": "http_status:404"}));
        assert!(rules[2].get("hostname").is_none());
        // No binding: only the catch-all, so the tunnel serves nothing.
        assert_eq!(
            desired_ingress(&[], "http://gw")["ingress"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
