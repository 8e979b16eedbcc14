//! Finding and reading an issuer's JWK Set (OIDC discovery, or `spec.jwksUri`): the controller
//! reports its key ids on the IdentityIssuer, the gateway verifies tokens with its keys. One
//! fetcher for both, with the same URL rules, timeouts and size limit.

use std::time::Duration;

use serde_json::Value;

use crate::crd::reasons::IssuerReason;

/// Timeout of every discovery and JWK Set request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or JWK Set read; real ones are a few KiB.
const MAX_DOCUMENT: usize = 1 << 20;

/// Why a JWK Set could not be used; the reason is the Ready condition's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchFailure {
    pub reason: IssuerReason,
    pub message: String,
}

pub(crate) fn fail(reason: IssuerReason, message: impl Into<String>) -> FetchFailure {
    FetchFailure {
        reason,
        message: message.into(),
    }
}

/// https, or http to a loopback host (the same rule the CRD applies to `spec.jwksUri`), so a
/// discovery document cannot steer the controller to plain http elsewhere.
pub(crate) fn allowed_url(u: &url::Url) -> bool {
    match u.scheme() {
        "https" => true,
        "http" => {
            matches!(u.host(), Some(url::Host::Domain("localhost")))
                || matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        }
        _ => false,
    }
}

/// Scheme, host and path of a URL: what messages show (never userinfo or a query, which could
/// carry credentials).
fn shown(u: &url::Url) -> String {
    format!(
        "{}://{}{}",
        u.scheme(),
        u.host_str().unwrap_or(""),
        u.path()
    )
}

/// Why a document could not be read.
enum GetError {
    /// No answer, an error status, or an oversized body.
    Unreachable(String),
    /// An answer that is not JSON.
    NotJson(String),
}

impl GetError {
    fn message(self) -> String {
        match self {
            GetError::Unreachable(m) | GetError::NotJson(m) => m,
        }
    }
}

/// GETs a JSON document, at most [`MAX_DOCUMENT`] bytes.
async fn get_json(http: &reqwest::Client, u: &url::Url) -> Result<Value, GetError> {
    let unreachable = GetError::Unreachable;
    let mut resp = http
        .get(u.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| unreachable(format!("cannot reach {}: {}", shown(u), e.without_url())))?;
    if !resp.status().is_success() {
        return Err(unreachable(format!(
            "{} answered HTTP {}",
            shown(u),
            resp.status()
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| unreachable(format!("reading {} failed: {}", shown(u), e.without_url())))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(unreachable(format!(
                "{} sent more than {MAX_DOCUMENT} bytes",
                shown(u)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| GetError::NotJson(format!("{} is not JSON: {e}", shown(u))))
}

/// Checks a JWK Set (RFC 7517 §5) and returns its sorted key ids. At least one key must be
/// usable for signatures (`use` absent or `sig`).
pub(crate) fn key_ids_of(jwks: &Value) -> Result<Vec<String>, String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the document has no \"keys\" array")?;
    let mut usable = 0;
    let mut ids = Vec::new();
    for k in keys {
        let Some(obj) = k.as_object() else {
            return Err("an entry of \"keys\" is not an object".into());
        };
        if !obj.get("kty").is_some_and(Value::is_string) {
            return Err("a key has no \"kty\"".into());
        }
        if obj.get("use").is_none_or(|u| u == "sig") {
            usable += 1;
        }
        if let Some(kid) = obj.get("kid").and_then(Value::as_str) {
            ids.push(kid.to_string());
        }
    }
    if usable == 0 {
        return Err("the JWK Set holds no signature key".into());
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Finds the JWK Set (spec.jwksUri, else OIDC discovery) and returns its key ids.
pub(crate) async fn fetch_key_ids(
    http: &reqwest::Client,
    issuer: &str,
    jwks_uri: Option<&str>,
) -> Result<Vec<String>, FetchFailure> {
    let doc = fetch_jwks(http, issuer, jwks_uri).await?;
    key_ids_of(&doc).map_err(|m| fail(IssuerReason::InvalidJwks, m))
}

/// Finds the JWK Set (spec.jwksUri, else OIDC discovery) and returns it, checked as
/// [`key_ids_of`] checks it.
pub(crate) async fn fetch_jwks(
    http: &reqwest::Client,
    issuer: &str,
    jwks_uri: Option<&str>,
) -> Result<Value, FetchFailure> {
    let jwks_url = match jwks_uri {
        Some(u) => url::Url::parse(u).map_err(|e| {
            fail(
                IssuerReason::InvalidJwks,
                format!("spec.jwksUri is not a URL: {e}"),
            )
        })?,
        None => {
            let base = url::Url::parse(issuer.trim_end_matches('/')).map_err(|e| {
                fail(
                    IssuerReason::DiscoveryFailed,
                    format!("the issuer is not a URL: {e}"),
                )
            })?;
            let disc = url::Url::parse(&format!(
                "{}/.well-known/openid-configuration",
                base.as_str().trim_end_matches('/')
            ))
            .map_err(|e| fail(IssuerReason::DiscoveryFailed, e.to_string()))?;
            let doc = get_json(http, &disc)
                .await
                .map_err(|e| fail(IssuerReason::DiscoveryFailed, e.message()))?;
            let found = doc.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| {
                fail(
                    IssuerReason::DiscoveryFailed,
                    format!("{} has no jwks_uri", shown(&disc)),
                )
            })?;
            let u = url::Url::parse(found).map_err(|e| {
                fail(
                    IssuerReason::DiscoveryFailed,
                    format!("jwks_uri from discovery is not a URL: {e}"),
                )
            })?;
            if !allowed_url(&u) {
                return Err(fail(
                    IssuerReason::DiscoveryFailed,
                    format!("jwks_uri {} from discovery is not https", shown(&u)),
                ));
            }
            u
        }
    };
    let doc = get_json(http, &jwks_url).await.map_err(|e| match e {
        GetError::NotJson(m) => fail(IssuerReason::InvalidJwks, m),
        GetError::Unreachable(m) => fail(IssuerReason::JwksUnreachable, m),
    })?;
    match key_ids_of(&doc) {
        Ok(_) => Ok(doc),
        Err(m) => Err(fail(
            IssuerReason::InvalidJwks,
            format!("{}: {m}", shown(&jwks_url)),
        )),
    }
}

pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::linstor::tls::client_config(None)?)
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())
}
