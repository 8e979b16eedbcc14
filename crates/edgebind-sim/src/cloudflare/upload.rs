//! Reading and validating a Worker upload (`multipart/form-data` with a `metadata` part and
//! module parts), including the `keep_bindings` and `inherit` rules.

use std::collections::HashSet;

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde_json::Value;

use super::envelope::ApiError;
use super::model::{ModuleInfo, Version, binding_name};
use super::multipart;

/// Largest accepted upload (all modules together).
const MAX_SCRIPT_BYTES: usize = 10 * 1024 * 1024;
const HANDLERS: &[&str] = &["fetch", "scheduled", "queue", "email", "tail", "trace"];
const BINDING_TYPES: &[&str] = &[
    "plain_text",
    "secret_text",
    "secret_key",
    "json",
    "kv_namespace",
    "service",
    "r2_bucket",
    "d1",
    "vpc_service",
    "queue",
    "durable_object_namespace",
    "analytics_engine",
    "hyperdrive",
    "mtls_certificate",
    "version_metadata",
    "ai",
    "browser_rendering",
    "vectorize",
    "inherit",
];

/// A parsed upload, before it is turned into a version.
pub(crate) struct Upload {
    pub main_module: String,
    pub modules: Vec<ModuleInfo>,
    pub bindings: Vec<Value>,
    pub keep_bindings: Vec<String>,
    pub compatibility_date: Option<String>,
    pub compatibility_flags: Vec<String>,
    pub tags: Option<Vec<String>>,
    pub annotations: serde_json::Map<String, Value>,
    pub handlers: Vec<String>,
    /// `observability` of a script upload (a script setting; `None` when not sent).
    pub observability: Option<Value>,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(10021, msg)
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(format!("metadata.{field} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(invalid(format!(
            "metadata.{field} must be a list of strings"
        ))),
    }
}

/// Worker names as the API accepts them.
pub(crate) fn valid_script_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.is_empty()
        && name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Parses the request body. `version_upload` selects the `POST .../versions` rules.
pub(crate) fn parse(
    headers: &HeaderMap,
    body: &Bytes,
    version_upload: bool,
) -> Result<Upload, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multipart::boundary(ct)
        .ok_or_else(|| ApiError::bad_request(10001, "Unsupported or unexpected Content Type"))?;
    if body.len() > MAX_SCRIPT_BYTES {
        return Err(ApiError::bad_request(10027, "Script body was too large"));
    }
    let parts = multipart::parse(body, &boundary)
        .map_err(|e| ApiError::bad_request(10006, format!("Unparseable script body: {e}")))?;
    let meta_part = parts
        .iter()
        .find(|p| p.name == "metadata")
        .ok_or_else(|| invalid("Missing the metadata part of the upload"))?;
    let meta: Value = serde_json::from_slice(&meta_part.data)
        .map_err(|_| ApiError::bad_request(10006, "Unparseable metadata: not JSON"))?;
    let meta = meta
        .as_object()
        .ok_or_else(|| ApiError::bad_request(10006, "Unparseable metadata: not a JSON object"))?;

    // The SDKs send every module as a part named "files" whose filename is the module name;
    // hand-written uploads name the part after the module. Accept both.
    let modules: Vec<ModuleInfo> = parts
        .iter()
        .filter(|p| p.name != "metadata")
        .map(|p| ModuleInfo {
            name: p.filename.clone().unwrap_or_else(|| p.name.clone()),
            content_type: p
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            content: p.data.clone(),
        })
        .collect();
    let main_module = match (
        meta.get("main_module").and_then(Value::as_str),
        meta.get("body_part").and_then(Value::as_str),
    ) {
        (Some(m), _) => m.to_string(),
        (None, Some(b)) if !version_upload => b.to_string(),
        _ => return Err(invalid("Missing main_module in the upload metadata")),
    };
    let main = modules
        .iter()
        .find(|m| m.name == main_module)
        .ok_or_else(|| invalid(format!("No such module \"{main_module}\" in the upload")))?;
    let handlers = detect_handlers(&main.content)?;

    let bindings = match meta.get("bindings") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(b)) => b.clone(),
        Some(_) => return Err(invalid("metadata.bindings must be a list")),
    };
    validate_bindings(&bindings)?;

    let observability = match meta.get("observability") {
        None | Some(Value::Null) => None,
        Some(o) => Some(validate_observability(o)?),
    };

    let mut annotations = serde_json::Map::new();
    if version_upload && let Some(a) = meta.get("annotations") {
        let a = a
            .as_object()
            .ok_or_else(|| invalid("metadata.annotations must be an object"))?;
        if let Some(m) = a.get("workers/message").and_then(Value::as_str)
            && m.chars().count() > 1000
        {
            return Err(invalid("annotations.workers/message is too long"));
        }
        annotations.extend(a.clone());
    }
    Ok(Upload {
        main_module,
        bindings,
        keep_bindings: strings(meta.get("keep_bindings"), "keep_bindings")?,
        compatibility_date: meta
            .get("compatibility_date")
            .and_then(Value::as_str)
            .map(str::to_string),
        compatibility_flags: strings(meta.get("compatibility_flags"), "compatibility_flags")?,
        tags: if version_upload || meta.get("tags").is_none() {
            None
        } else {
            Some(strings(meta.get("tags"), "tags")?)
        },
        annotations,
        handlers,
        modules,
        observability,
    })
}

/// The `observability` object of the upload metadata (Workers Logs), checked against its
/// shape in Cloudflare's SDK (cloudflare-python 5.9.0,
/// `src/cloudflare/types/workers/script_update_params.py`, `MetadataObservability` and
/// `MetadataObservabilityLogs`/`Traces`; generated from the API's OpenAPI document):
/// `enabled` (bool) is required; `head_sampling_rate` is a number from 0 to 1 or null; `logs`
/// needs `enabled` and `invocation_logs` (bools), `traces` has optional ones. Docs:
/// https://developers.cloudflare.com/workers/observability/logs/workers-logs/
fn validate_observability(o: &Value) -> Result<Value, ApiError> {
    let bad = |m: &str| invalid(format!("metadata.observability: {m}"));
    let obj = o.as_object().ok_or_else(|| bad("must be an object"))?;
    let rate = |parent: &serde_json::Map<String, Value>, at: &str| -> Result<(), ApiError> {
        match parent.get("head_sampling_rate") {
            None | Some(Value::Null) => Ok(()),
            Some(v) => match v.as_f64() {
                Some(r) if (0.0..=1.0).contains(&r) => Ok(()),
                _ => Err(bad(&format!(
                    "{at}head_sampling_rate must be a number from 0 to 1"
                ))),
            },
        }
    };
    let boolean = |parent: &serde_json::Map<String, Value>,
                   at: &str,
                   key: &str,
                   required: bool|
     -> Result<(), ApiError> {
        match parent.get(key) {
            Some(Value::Bool(_)) => Ok(()),
            None if !required => Ok(()),
            None => Err(bad(&format!("{at}{key} is required"))),
            Some(_) => Err(bad(&format!("{at}{key} must be a boolean"))),
        }
    };
    boolean(obj, "", "enabled", true)?;
    boolean(obj, "", "redact_query_string", false)?;
    rate(obj, "")?;
    for (key, required) in [("logs", true), ("traces", false)] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(sub)) => {
                let at = format!("{key}.");
                boolean(sub, &at, "enabled", required)?;
                if key == "logs" {
                    boolean(sub, &at, "invocation_logs", true)?;
                }
                boolean(sub, &at, "persist", false)?;
                rate(sub, &at)?;
            }
            Some(_) => return Err(bad(&format!("{key} must be an object"))),
        }
    }
    Ok(o.clone())
}

/// Finds the event handlers a Worker exports. A module that exports nothing useful is
/// refused with 10068, as the real API does.
fn detect_handlers(main: &Bytes) -> Result<Vec<String>, ApiError> {
    let text = std::str::from_utf8(main)
        .map_err(|_| invalid("Uncaught SyntaxError: main module is not valid UTF-8"))?;
    let module = text.contains("export default") || text.contains(" as default");
    let service_worker = text.contains("addEventListener(");
    let found: Vec<String> = HANDLERS
        .iter()
        .filter(|h| {
            text.contains(&format!("{h}("))
                || text.contains(&format!("{h}:"))
                || text.contains(&format!("'{h}'"))
                || text.contains(&format!("\"{h}\""))
        })
        .map(|h| h.to_string())
        .collect();
    if (!module && !service_worker) || found.is_empty() {
        return Err(ApiError::bad_request(
            10068,
            "No event handlers were registered. This script does nothing.",
        ));
    }
    Ok(found)
}

fn validate_bindings(bindings: &[Value]) -> Result<(), ApiError> {
    let mut names = HashSet::new();
    for b in bindings {
        let name = binding_name(b)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request(10052, "Binding name required"))?;
        let ty = b.get("type").and_then(Value::as_str).unwrap_or("");
        if !BINDING_TYPES.contains(&ty) {
            return Err(invalid(format!(
                "Unknown binding type \"{ty}\" for binding {name}"
            )));
        }
        let needs = |field: &str| {
            if b.get(field).is_none() {
                Err(invalid(format!(
                    "Binding {name} of type {ty} requires {field}"
                )))
            } else {
                Ok(())
            }
        };
        match ty {
            "plain_text" | "secret_text" => needs("text")?,
            "json" => needs("json")?,
            "kv_namespace" => needs("namespace_id")?,
            // `workers_binding_kind_vpc_service` (specs/cloudflare-workers.yaml); that the
            // service exists is checked against the account (`services::check_bindings`).
            "vpc_service" => needs("service_id")?,
            "secret_key" => {
                needs("format")?;
                needs("algorithm")?;
                needs("usages")?;
            }
            _ => {}
        }
        if !names.insert(name.to_string()) {
            return Err(invalid(format!(
                "Binding name {name} is used more than once"
            )));
        }
    }
    Ok(())
}

/// The binding list of a new version: the uploaded bindings, `inherit` bindings resolved
/// against the previous version, plus previous bindings whose type is in `keep_bindings`
/// (an upload otherwise replaces the whole list, which is how secrets get lost).
pub(crate) fn resolve_bindings(
    upload: &Upload,
    previous: Option<&Version>,
    strict_inherit: bool,
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for b in &upload.bindings {
        if b.get("type").and_then(Value::as_str) == Some("inherit") {
            let name = binding_name(b).unwrap_or_default();
            let old_name = b.get("old_name").and_then(Value::as_str).unwrap_or(name);
            match previous.and_then(|p| {
                p.bindings
                    .iter()
                    .find(|x| binding_name(x) == Some(old_name))
            }) {
                Some(found) => {
                    let mut found = found.clone();
                    found["name"] = Value::String(name.to_string());
                    out.push(found);
                }
                None if strict_inherit => {
                    return Err(ApiError::bad_request(
                        10056,
                        format!("Binding not found: cannot inherit binding {old_name}"),
                    ));
                }
                None => {}
            }
        } else {
            out.push(b.clone());
        }
    }
    if let Some(prev) = previous {
        for b in &prev.bindings {
            let ty = b.get("type").and_then(Value::as_str).unwrap_or("");
            let name = binding_name(b);
            if upload.keep_bindings.iter().any(|k| k == ty)
                && !out.iter().any(|o| binding_name(o) == name)
            {
                out.push(b.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn observability_shape_is_checked() {
        for ok in [
            json!({"enabled": true}),
            json!({"enabled": true, "head_sampling_rate": 1}),
            json!({"enabled": false, "head_sampling_rate": null}),
            json!({"enabled": true, "logs": {"enabled": true, "invocation_logs": false, "head_sampling_rate": 0.1}}),
            json!({"enabled": true, "traces": {"enabled": true}, "redact_query_string": true}),
        ] {
            assert!(validate_observability(&ok).is_ok(), "{ok}");
        }
        for bad in [
            json!(true),
            json!({}),
            json!({"head_sampling_rate": 1}),
            json!({"enabled": "yes"}),
            json!({"enabled": true, "head_sampling_rate": 1.5}),
            json!({"enabled": true, "head_sampling_rate": -0.1}),
            json!({"enabled": true, "head_sampling_rate": "1"}),
            json!({"enabled": true, "logs": {"enabled": true}}),
            json!({"enabled": true, "logs": true}),
            json!({"enabled": true, "traces": {"persist": "no"}}),
        ] {
            let e = validate_observability(&bad).expect_err(&bad.to_string());
            assert_eq!((e.status.as_u16(), e.code), (400, 10021), "{bad}");
        }
    }
}
