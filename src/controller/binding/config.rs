//! What the Worker should be configured with, read from Kubernetes. Kept behind one function,
//! [`desired_config`], so the source of issuers and policies can change (today: ConfigMaps
//! named by the binding; next: compiled from IdentityIssuer and VolumeAccessPolicy).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use url::{Host, Url};

use super::super::Context;
use crate::crd::binding::EdgeBinding;

/// A Workers variable holds at most 5 KB; the protocol caps compiled documents at 5,000 bytes
/// (docs/edge-protocol.md §1) rather than upload a truncated one.
pub const MAX_BINDING_BYTES: usize = 5000;
pub const BUNDLE_KEY: &str = "bundle.json";
pub const ISSUERS_KEY: &str = "issuers.json";

/// The Worker's configuration apart from the signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// `GATEWAY_URL` (plain text binding, part of the upload).
    pub gateway_url: String,
    /// `ISSUERS` JSON (secret, so it can change without a code upload).
    pub issuers: String,
    /// `POLICY_BUNDLE` JSON (secret, likewise).
    pub policy_bundle: String,
}

/// Checks `GATEWAY_URL` as the Worker will (docs/edge-protocol.md §1): an origin only, https
/// or http to a loopback host.
pub fn check_gateway_url(s: &str) -> Result<String, String> {
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

async fn config_map_key(
    client: &kube::Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read ConfigMap {ns}/{name}: {e}"))?
        .ok_or_else(|| format!("ConfigMap {ns}/{name} does not exist"))?;
    cm.data
        .and_then(|mut d| d.remove(key))
        .ok_or_else(|| format!("ConfigMap {ns}/{name} has no key {key}"))
}

/// Checks a JSON document destined for a binding and returns it as given (trimmed): the
/// producer's byte form is kept, so its hash only changes when the producer's output does.
pub fn check_document(what: &str, text: &str, array: bool) -> Result<String, String> {
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

/// The ConfigMaps a binding reads: (issuers, policy bundle).
pub fn config_refs(b: &EdgeBinding) -> Result<(&str, &str), String> {
    let issuers = b
        .spec
        .issuers_ref
        .as_deref()
        .ok_or("spec.issuersRef must name a ConfigMap with the key issuers.json")?;
    let bundle = b
        .spec
        .policy_bundle_ref
        .as_deref()
        .ok_or("spec.policyBundleRef must name a ConfigMap with the key bundle.json")?;
    Ok((issuers, bundle))
}

/// Checks and assembles the configuration from the documents read (pure; `plan` uses it too).
pub fn assemble(b: &EdgeBinding, issuers: &str, bundle: &str) -> Result<WorkerConfig, String> {
    Ok(WorkerConfig {
        gateway_url: check_gateway_url(&b.spec.gateway_url)?,
        issuers: check_document("ISSUERS", issuers, true)?,
        policy_bundle: check_document("POLICY_BUNDLE", bundle, false)?,
    })
}

/// The Worker configuration a binding asks for. Errors are messages for a `Ready=False`
/// condition (no Cloudflare call is made).
pub async fn desired_config(b: &EdgeBinding, ctx: &Context) -> Result<WorkerConfig, String> {
    let ns = b.namespace().unwrap_or_default();
    check_gateway_url(&b.spec.gateway_url)?;
    let (issuers_ref, bundle_ref) = config_refs(b)?;
    let issuers = config_map_key(&ctx.client, &ns, issuers_ref, ISSUERS_KEY).await?;
    let bundle = config_map_key(&ctx.client, &ns, bundle_ref, BUNDLE_KEY).await?;
    assemble(b, &issuers, &bundle)
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
