//! Worker secrets. Values are write-only. Each change creates a new version from the latest
//! one and deploys it at 100 %, and is refused with 10215 while the latest version is not the
//! one fully deployed.

use axum::extract::{Path, State};
use bytes::Bytes;
use serde_json::{Value, json};

use super::envelope::{ApiError, ApiResult, ok};
use super::model::{Deployment, Script, binding_name, is_secret, now_rfc3339, redact_binding};
use super::{CloudflareSim, lock};

/// The refusal when the latest version is not the deployed one (workers-sdk #6763).
fn not_deployed() -> ApiError {
    ApiError::bad_request(
        10215,
        "Secret edit failed. You attempted to modify a secret, but the latest version of your Worker isn't currently deployed. Please ensure that the latest version of your Worker is fully deployed (wrangler versions deploy) before modifying secrets. Alternatively, you can use the Cloudflare dashboard to modify secrets and deploy the version.",
    )
}

fn binding_not_found(name: &str) -> ApiError {
    ApiError::not_found(10056, format!("Binding not found: {name}"))
}

fn summary(b: &Value) -> Value {
    json!({"name": binding_name(b), "type": b.get("type")})
}

/// Checks a secret object from a request body.
fn validate_secret(s: &Value, name_override: Option<&str>) -> Result<Value, ApiError> {
    let invalid = |m: String| ApiError::bad_request(10021, m);
    let obj = s
        .as_object()
        .ok_or_else(|| invalid("A secret must be a JSON object".into()))?;
    let mut secret = obj.clone();
    if let Some(n) = name_override {
        secret.insert("name".into(), Value::String(n.to_string()));
    }
    let name = secret
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(10052, "Binding name required"))?
        .to_string();
    match secret.get("type").and_then(Value::as_str) {
        Some("secret_text") => {
            if !secret.get("text").is_some_and(Value::is_string) {
                return Err(invalid(format!("Secret {name} requires text")));
            }
            if secret
                .get("text")
                .and_then(Value::as_str)
                .map_or(0, str::len)
                > 5 * 1024
            {
                return Err(invalid(format!("Secret {name} is larger than 5 KB")));
            }
        }
        Some("secret_key") => {
            let format = secret.get("format").and_then(Value::as_str).unwrap_or("");
            let key_field = match format {
                "raw" | "pkcs8" | "spki" => "key_base64",
                "jwk" => "key_jwk",
                _ => return Err(invalid(format!("Secret {name} has an unknown key format"))),
            };
            for f in ["algorithm", "usages", key_field] {
                if secret.get(f).is_none() {
                    return Err(invalid(format!("Secret {name} requires {f}")));
                }
            }
        }
        _ => {
            return Err(invalid(format!(
                "Secret {name} must have type secret_text or secret_key"
            )));
        }
    }
    Ok(Value::Object(secret))
}

/// Creates and deploys a new version of `script` with `bindings`.
fn commit_version(
    script: &mut Script,
    bindings: Vec<Value>,
    extra: serde_json::Map<String, Value>,
) {
    let mut v = script.latest().clone();
    v.id = uuid::Uuid::new_v4().to_string();
    v.number = script.next_number();
    v.created_on = now_rfc3339();
    v.bindings = bindings;
    let mut ann = extra;
    ann.insert(
        "workers/triggered_by".into(),
        Value::String("secret".into()),
    );
    v.annotations = Value::Object(ann.clone());
    let d = Deployment::new(vec![(v.id.clone(), 100.0)], Value::Object(ann));
    script.versions.push(v);
    script.deployments.push(d);
    script.modified_on = now_rfc3339();
}

fn editable<'a>(
    st: &'a mut super::model::SimState,
    account: &str,
    name: &str,
) -> Result<&'a mut Script, ApiError> {
    let script = st.visible_script(account, name)?;
    if !script.latest_fully_deployed() {
        return Err(not_deployed());
    }
    Ok(script)
}

/// `GET .../secrets`: names and types only.
pub(crate) async fn list_secrets(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let script = st.visible_script(&account, &name)?;
    let list: Vec<Value> = script.latest().secret_bindings().map(summary).collect();
    Ok(ok(Value::Array(list)))
}

/// `PUT .../secrets`: add or replace one secret.
pub(crate) async fn put_secret(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let req: Value = serde_json::from_slice(&body).map_err(|_| ApiError::malformed_json())?;
    let secret = validate_secret(&req, None)?;
    let mut st = lock(&sim.inner.state);
    let script = editable(&mut st, &account, &name)?;
    let sname = binding_name(&secret).unwrap_or_default().to_string();
    let mut bindings: Vec<Value> = script
        .latest()
        .bindings
        .iter()
        .filter(|b| binding_name(b) != Some(sname.as_str()))
        .cloned()
        .collect();
    let out = summary(&secret);
    bindings.push(secret);
    commit_version(script, bindings, serde_json::Map::new());
    Ok(ok(out))
}

/// `GET .../secrets/{secret_name}`. The path segment arrives percent-decoded, so names that
/// need `url_encoded=true` on the real API work either way.
pub(crate) async fn get_secret(
    State(sim): State<CloudflareSim>,
    Path((account, name, secret)): Path<(String, String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let script = st.visible_script(&account, &name)?;
    script
        .latest()
        .secret_bindings()
        .find(|b| binding_name(b) == Some(secret.as_str()))
        .map(|b| ok(redact_binding(b)))
        .ok_or_else(|| binding_not_found(&secret))
}

/// `DELETE .../secrets/{secret_name}`. A delete is an edit like a put: it makes a new version
/// from the latest one, so it meets the same 10215 while the latest version is not fully
/// deployed ("You attempted to modify a secret", workers-sdk #6763; reference §12).
pub(crate) async fn delete_secret(
    State(sim): State<CloudflareSim>,
    Path((account, name, secret)): Path<(String, String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let script = st.visible_script(&account, &name)?;
    if !script
        .latest()
        .secret_bindings()
        .any(|b| binding_name(b) == Some(secret.as_str()))
    {
        return Err(binding_not_found(&secret));
    }
    if !script.latest_fully_deployed() {
        return Err(not_deployed());
    }
    let bindings = script
        .latest()
        .bindings
        .iter()
        .filter(|b| !(is_secret(b) && binding_name(b) == Some(secret.as_str())))
        .cloned()
        .collect();
    commit_version(script, bindings, serde_json::Map::new());
    Ok(ok(Value::Null))
}

/// `PATCH .../secrets-bulk`: JSON Merge Patch over the secrets; `null` deletes, omitted names
/// stay. One new version for the whole patch.
pub(crate) async fn patch_secrets(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let req: Value = serde_json::from_slice(&body).map_err(|_| ApiError::malformed_json())?;
    let patch = req
        .get("secrets")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request(10021, "secrets must be an object"))?;
    let mut sets = Vec::new();
    let mut deletes = Vec::new();
    for (k, v) in patch {
        if v.is_null() {
            deletes.push(k.clone());
        } else {
            sets.push(validate_secret(v, Some(k))?);
        }
    }
    let tags = req
        .get("version_tags")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut st = lock(&sim.inner.state);
    let script = editable(&mut st, &account, &name)?;
    let touched = |b: &Value| {
        let n = binding_name(b).unwrap_or_default();
        deletes.iter().any(|d| d == n) || sets.iter().any(|s| binding_name(s) == Some(n))
    };
    let mut bindings: Vec<Value> = script
        .latest()
        .bindings
        .iter()
        .filter(|b| !touched(b))
        .cloned()
        .collect();
    bindings.extend(sets);
    commit_version(script, bindings, tags);
    let result: serde_json::Map<String, Value> = script
        .latest()
        .secret_bindings()
        .filter_map(|b| Some((binding_name(b)?.to_string(), redact_binding(b))))
        .collect();
    Ok(ok(Value::Object(result)))
}
