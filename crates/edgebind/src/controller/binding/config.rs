//! What the Worker should be configured with: the gateway URL, and the issuers and policy
//! bundle compiled from the IdentityIssuer and VolumeAccessPolicy resources the binding selects
//! (by the same compiler the gateway uses, so both sides enforce one bundle).

use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::core::{Selector, SelectorExt};
use url::{Host, Url};

use super::super::Context;
use crate::crd::CloudflareAccount;
use crate::crd::binding::EdgeBinding;
use crate::crd::{IdentityIssuer, VolumeAccessPolicy};
use crate::gateway::compile::compile_bundle;

/// A Workers variable holds at most 5 KB; the protocol caps compiled documents at 5,000 bytes
/// (docs/edge-protocol.md §1) rather than upload a truncated one.
pub(crate) const MAX_BINDING_BYTES: usize = 5000;

/// The Worker's configuration apart from the signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WorkerConfig {
    /// `GATEWAY_URL` (plain text binding, part of the upload).
    pub gateway_url: String,
    /// `ISSUERS` JSON (secret, so it can change without a code upload).
    pub issuers: String,
    /// `POLICY_BUNDLE` JSON (secret, likewise).
    pub policy_bundle: String,
    /// `spec.workersVpc`: the account's Workers VPC service, bound as `GATEWAY`.
    pub vpc_service_id: Option<String>,
}

/// The origin the Worker forwards to: the tunnel hostname over https, or `gatewayUrl`; for
/// `workersVpc` empty here, filled in from the account by [`with_vpc`].
pub(crate) fn gateway_origin(b: &EdgeBinding) -> Result<String, String> {
    match (
        b.spec.gateway_url.is_empty(),
        b.spec.tunnel_hostname.is_empty(),
        b.spec.workers_vpc,
    ) {
        (true, true, true) => Ok(String::new()),
        (true, false, false) => check_gateway_url(&format!("https://{}", b.spec.tunnel_hostname)),
        (false, true, false) => check_gateway_url(&b.spec.gateway_url),
        _ => Err(ONE_OF.into()),
    }
}

const ONE_OF: &str = "set exactly one of spec.gatewayUrl, spec.tunnelHostname and spec.workersVpc";

/// The binding's account, for `workersVpc`.
pub(crate) async fn account_vpc(
    ctx: &Context,
    b: &EdgeBinding,
) -> Result<CloudflareAccount, String> {
    let name = &b.spec.account_ref;
    Api::<CloudflareAccount>::all(ctx.client.clone())
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read CloudflareAccount {name}: {e}"))?
        .ok_or_else(|| format!("CloudflareAccount {name} does not exist"))
}

/// The configuration for `workersVpc` (pure): the account's Workers VPC service as the
/// `GATEWAY` binding and its gateway URL as `GATEWAY_URL`. http is allowed there (not
/// elsewhere): the VPC service carries the request encrypted up to the tunnel whatever the
/// scheme (reference §11), and the URL's host and port only name the Host header.
pub(crate) fn with_vpc(
    mut cfg: WorkerConfig,
    a: &CloudflareAccount,
) -> Result<WorkerConfig, String> {
    let name = a.name_any();
    if !a.spec.tunnel.as_ref().is_some_and(|t| t.workers_vpc) {
        return Err(format!(
            "workersVpc needs a Workers VPC service: set spec.tunnel.workersVpc on CloudflareAccount {name}"
        ));
    }
    let t = a.status.as_ref().and_then(|s| s.tunnel.as_ref());
    let (Some(id), Some(url)) = (
        t.and_then(|t| t.vpc_service_id.clone())
            .filter(|s| !s.is_empty()),
        t.and_then(|t| t.vpc_service_url.clone()),
    ) else {
        return Err(format!(
            "CloudflareAccount {name} has no Workers VPC service yet (see its WorkersVpcReady condition)"
        ));
    };
    let u =
        Url::parse(&url).map_err(|e| format!("the VPC gateway URL {url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host().is_none() {
        return Err(format!(
            "the VPC gateway URL {url:?} must be an http(s) URL"
        ));
    }
    cfg.gateway_url = u.origin().ascii_serialization();
    cfg.vpc_service_id = Some(id);
    Ok(cfg)
}

/// Checks `GATEWAY_URL` as the Worker will (docs/edge-protocol.md §1): an origin only, https
/// or http to a loopback host.
pub(crate) fn check_gateway_url(s: &str) -> Result<String, String> {
    let u = Url::parse(s).map_err(|e| format!("gatewayUrl {s:?} is not a URL: {e}"))?;
    let loopback = match u.host() {
        Some(Host::Domain(d)) => d == "localhost",
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "gatewayUrl {s:?} must use https (http only for 127.0.0.1, localhost or [::1])"
            ));
        }
    }
    if !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || !(u.path().is_empty() || u.path() == "/")
    {
        return Err(format!(
            "gatewayUrl {s:?} must be an origin (scheme, host, optional port): no path, query, fragment or credentials"
        ));
    }
    Ok(u.origin().ascii_serialization())
}

/// Checks a JSON document destined for a binding and returns it as given (trimmed): the
/// producer's byte form is kept, so its hash only changes when the producer's output does.
pub(crate) fn check_document(what: &str, text: &str, array: bool) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}"))?;
    if array && !v.is_array() {
        return Err(format!("{what} must be a JSON array"));
    }
    if !array && !v.is_object() {
        return Err(format!("{what} must be a JSON object"));
    }
    let compact = text.trim().to_string();
    if compact.len() > MAX_BINDING_BYTES {
        return Err(format!(
            "{what} is {} bytes; a Worker binding holds at most {MAX_BINDING_BYTES}: split the policies over more EdgeBindings",
            compact.len()
        ));
    }
    Ok(compact)
}

/// Compiles the Worker configuration from the issuers and policies given (pure; `plan` uses it
/// too): the binding's issuers (all when it names none; a named one that does not exist is an
/// error) and the policies of its namespace its selector matches.
pub(crate) fn compile_for(
    b: &EdgeBinding,
    issuers: &[IdentityIssuer],
    policies: &[VolumeAccessPolicy],
) -> Result<WorkerConfig, String> {
    let ns = b.namespace().unwrap_or_default();
    let chosen_issuers: Vec<IdentityIssuer> = if b.spec.issuers.is_empty() {
        issuers.to_vec()
    } else {
        let mut out = Vec::new();
        for name in &b.spec.issuers {
            let i = issuers
                .iter()
                .find(|i| i.name_any() == *name)
                .ok_or_else(|| {
                    format!("IdentityIssuer {name:?} named in spec.issuers does not exist")
                })?;
            out.push(i.clone());
        }
        out
    };
    if chosen_issuers.is_empty() {
        return Err("no IdentityIssuer exists: create one so the Worker can verify tokens".into());
    }
    let selector: Option<Selector> = match &b.spec.policy_selector {
        None => None,
        Some(ls) => Some(
            Selector::try_from(ls.clone())
                .map_err(|e| format!("spec.policySelector is not valid: {e}"))?,
        ),
    };
    let chosen_policies: Vec<VolumeAccessPolicy> = policies
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| selector.as_ref().is_none_or(|s| s.matches(p.labels())))
        .cloned()
        .collect();
    let compiled = compile_bundle(&chosen_issuers, &chosen_policies);
    assemble(b, &compiled.issuers_json(), &compiled.bundle_json())
}

/// Checks and assembles the configuration from the documents read (pure; `plan` uses it too).
pub(crate) fn assemble(
    b: &EdgeBinding,
    issuers: &str,
    bundle: &str,
) -> Result<WorkerConfig, String> {
    Ok(WorkerConfig {
        gateway_url: gateway_origin(b)?,
        issuers: check_document("ISSUERS", issuers, true)?,
        policy_bundle: check_document("POLICY_BUNDLE", bundle, false)?,
        vpc_service_id: None,
    })
}

/// The Worker configuration a binding asks for. Errors are messages for a `Ready=False`
/// condition (no Cloudflare call is made).
pub(crate) async fn desired_config(b: &EdgeBinding, ctx: &Context) -> Result<WorkerConfig, String> {
    gateway_origin(b)?;
    let ns = b.namespace().unwrap_or_default();
    let issuers = Api::<IdentityIssuer>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list IdentityIssuers: {e}"))?;
    let policies = Api::<VolumeAccessPolicy>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list VolumeAccessPolicies in {ns}: {e}"))?;
    compile_for(b, &issuers.items, &policies.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_url_rules() {
        assert_eq!(
            check_gateway_url("https://gw.example.com/").unwrap(),
            "https://gw.example.com"
        );
        assert!(check_gateway_url("http://127.0.0.1:8443").is_ok());
        assert!(check_gateway_url("http://gw.example.com").is_err());
        assert!(check_gateway_url("https://gw.example.com/api").is_err());
        assert!(check_gateway_url("https://u:p@gw.example.com").is_err());
        assert!(check_gateway_url("https://gw.example.com?x=1").is_err());
    }

    fn binding(extra: serde_json::Value) -> EdgeBinding {
        let mut spec = serde_json::json!({"accountRef": "cf",
            "zoneId": "023e105f4ecef8ad9ca31a8372d0c353", "routes": ["a.example.com/*"],
            "scriptName": "gw"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        serde_json::from_value(serde_json::json!({"apiVersion": "edgebind.dev/v1alpha1",
            "kind": "EdgeBinding", "metadata": {"name": "b", "namespace": "ns"}, "spec": spec}))
        .unwrap()
    }

    fn account(tunnel: serde_json::Value, status: serde_json::Value) -> CloudflareAccount {
        serde_json::from_value(serde_json::json!({"apiVersion": "edgebind.dev/v1alpha1",
            "kind": "CloudflareAccount", "metadata": {"name": "cf"},
            "spec": {"accountId": "9a7806061c88ada191ed06f989cc3dac",
                     "apiToken": {"name": "t", "namespace": "ns", "key": "token"}, "tunnel": tunnel},
            "status": {"tunnel": status}}))
        .unwrap()
    }

    #[test]
    fn a_workers_vpc_binding_takes_the_accounts_service_and_url() {
        let b = binding(serde_json::json!({"workersVpc": true}));
        assert_eq!(gateway_origin(&b).unwrap(), "");
        let both = binding(
            serde_json::json!({"workersVpc": true, "gatewayUrl": "https://gw.example.com"}),
        );
        assert!(gateway_origin(&both).is_err());
        let cfg = assemble(&b, "[]", "{}").unwrap();
        let url = "http://edgebind-gateway.edgebind-system.svc:8080";
        let ready = account(
            serde_json::json!({"workersVpc": true}),
            serde_json::json!({"id": "t1", "name": "edgebind-u", "vpcServiceId": "s1", "vpcServiceUrl": url}),
        );
        let c = with_vpc(cfg.clone(), &ready).unwrap();
        assert_eq!(c.gateway_url, url);
        assert_eq!(c.vpc_service_id.as_deref(), Some("s1"));
        // Not asked for on the account, or not registered yet: the binding waits.
        let off = account(
            serde_json::json!({}),
            serde_json::json!({"id": "t1", "name": "n"}),
        );
        assert!(
            with_vpc(cfg.clone(), &off)
                .unwrap_err()
                .contains("spec.tunnel.workersVpc")
        );
        let pending = account(
            serde_json::json!({"workersVpc": true}),
            serde_json::json!({"id": "t1", "name": "n"}),
        );
        assert!(
            with_vpc(cfg, &pending)
                .unwrap_err()
                .contains("no Workers VPC service yet")
        );
    }

    #[test]
    fn documents_are_checked_and_capped() {
        assert_eq!(check_document("ISSUERS", " [ ]\n", true).unwrap(), "[ ]");
        assert!(check_document("ISSUERS", "{}", true).is_err());
        assert!(check_document("POLICY_BUNDLE", "nope", false).is_err());
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_BINDING_BYTES));
        let err = check_document("POLICY_BUNDLE", &big, false).unwrap_err();
        assert!(err.contains("at most 5000"), "{err}");
    }
}
