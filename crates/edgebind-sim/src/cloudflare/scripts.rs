//! Worker scripts, versions and deployments.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::{Value, json};

use super::envelope::{ApiError, ApiResult, ok, ok_with_info};
use super::model::{Deployment, Script, Version, etag_of, now_rfc3339};
use super::{CloudflareSim, lock, query_flag, query_map, upload};

fn triggered_by(what: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("workers/triggered_by".into(), Value::String(what.into()));
    m
}

fn new_version(
    up: &upload::Upload,
    number: u64,
    bindings: Vec<Value>,
    annotations: serde_json::Map<String, Value>,
) -> Version {
    Version {
        id: uuid::Uuid::new_v4().to_string(),
        number,
        created_on: now_rfc3339(),
        etag: etag_of(&up.main_module, &up.modules),
        main_module: up.main_module.clone(),
        modules: up.modules.clone(),
        compatibility_date: up.compatibility_date.clone(),
        compatibility_flags: up.compatibility_flags.clone(),
        bindings,
        annotations: Value::Object(annotations),
        handlers: up.handlers.clone(),
    }
}

/// `PUT /accounts/{a}/workers/scripts/{name}`: upload a module Worker and deploy it at 100 %.
pub(crate) async fn upload_script(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    if !upload::valid_script_name(&name) {
        return Err(ApiError::bad_request(10016, "Invalid Worker name"));
    }
    let q = query_map(q);
    if q.contains_key("rollback_to") {
        return Err(ApiError::bad_request(
            10021,
            "rollback_to is not supported by the simulator; use POST .../deployments",
        ));
    }
    let strict = q.get("bindings_inherit").is_some_and(|v| v == "strict");
    let up = upload::parse(&headers, &body, false)?;
    let hidden = lock(&sim.inner.faults).hidden_after_upload;
    let mut st = lock(&sim.inner.state);
    super::services::check_bindings(&st, &account, &up.bindings)?;
    let scripts = st.scripts_mut(&account)?;
    let previous = scripts.get(&name).map(|s| s.latest().clone());
    let bindings = upload::resolve_bindings(&up, previous.as_ref(), strict)?;
    let now = now_rfc3339();
    let script = scripts.entry(name.clone()).or_insert_with(|| Script {
        name: name.clone(),
        created_on: now.clone(),
        modified_on: now.clone(),
        tags: Vec::new(),
        versions: Vec::new(),
        deployments: Vec::new(),
        hidden_calls: 0,
        observability: None,
    });
    let version = new_version(&up, script.next_number(), bindings, triggered_by("upload"));
    let deployment = Deployment::new(
        vec![(version.id.clone(), 100.0)],
        Value::Object(triggered_by("upload")),
    );
    script.versions.push(version);
    script.deployments.push(deployment);
    script.modified_on = now;
    if let Some(tags) = up.tags {
        script.tags = tags;
    }
    // A script setting: an upload without it leaves it as it was.
    if let Some(o) = up.observability {
        script.observability = Some(o);
    }
    script.hidden_calls = hidden;
    Ok(ok(script.response_json()))
}

/// `GET /accounts/{a}/workers/scripts`.
pub(crate) async fn list_scripts(
    State(sim): State<CloudflareSim>,
    Path(account): Path<String>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let scripts = st.scripts_mut(&account)?;
    let list: Vec<Value> = scripts
        .values()
        .filter(|s| s.hidden_calls == 0)
        .map(Script::response_json)
        .collect();
    Ok(ok(Value::Array(list)))
}

/// `GET /accounts/{a}/workers/scripts/{name}`: the raw script content, not JSON. A Worker with
/// several modules comes back as `multipart/form-data`, one part per module.
pub(crate) async fn download_script(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let script = st.visible_script(&account, &name)?;
    let v = script.active_version();
    let (ct, body) = if v.modules.len() == 1 {
        (
            v.modules[0].content_type.clone(),
            v.modules[0].content.to_vec(),
        )
    } else {
        let boundary = format!("cfsim{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::new();
        for m in &v.modules {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{0}\"; filename=\"{0}\"\r\nContent-Type: {1}\r\n\r\n",
                    m.name, m.content_type
                )
                .as_bytes(),
            );
            body.extend_from_slice(&m.content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    };
    let mut resp = (StatusCode::OK, Body::from(body)).into_response();
    let ct = HeaderValue::from_str(&ct)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    Ok(resp)
}

/// `DELETE /accounts/{a}/workers/scripts/{name}[?force=true]`. Routes that point at the
/// Worker are left in place, as on the real API. Not a secret edit: allowed in any deployment
/// state, gradual or with an undeployed version (reference §12).
pub(crate) async fn delete_script(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    st.visible_script(&account, &name)?;
    st.scripts_mut(&account)?.remove(&name);
    Ok(ok(Value::Null))
}

/// `GET .../versions?deployable&page&per_page`: newest first.
pub(crate) async fn list_versions(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = query_map(q);
    let mut st = lock(&sim.inner.state);
    let script = st.visible_script(&account, &name)?;
    let newest_first: Vec<&Version> = script.versions.iter().rev().collect();
    if query_flag(&q, "deployable") {
        let items: Vec<Value> = newest_first
            .iter()
            .filter(|v| script.deployable(&v.id))
            .map(|v| v.short_json())
            .collect();
        return Ok(ok(json!({"items": items})));
    }
    let per_page = q
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(10);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let items: Vec<Value> = newest_first
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|v| v.short_json())
        .collect();
    let total = newest_first.len();
    Ok(ok_with_info(
        json!({"items": items}),
        json!({"page": page, "per_page": per_page, "count": items.len(),
               "total_count": total, "total_pages": total.div_ceil(per_page)}),
    ))
}

/// `POST .../versions`: upload a version without deploying it. The Worker must exist (the
/// first upload has to be a plain script upload).
pub(crate) async fn upload_version(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let strict = query_map(q)
        .get("bindings_inherit")
        .is_some_and(|v| v == "strict");
    let up = upload::parse(&headers, &body, true)?;
    let mut st = lock(&sim.inner.state);
    super::services::check_bindings(&st, &account, &up.bindings)?;
    let script = st.visible_script(&account, &name)?;
    let bindings = upload::resolve_bindings(&up, Some(script.latest()), strict)?;
    let mut annotations = up.annotations.clone();
    annotations.extend(triggered_by("version_upload"));
    let version = new_version(&up, script.next_number(), bindings, annotations);
    let mut out = version.full_json();
    out["startup_time_ms"] = json!(10);
    script.versions.push(version);
    script.modified_on = now_rfc3339();
    Ok(ok(out))
}

/// `GET .../versions/{version_id}`.
pub(crate) async fn get_version(
    State(sim): State<CloudflareSim>,
    Path((account, name, version_id)): Path<(String, String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let script = st.visible_script(&account, &name)?;
    script
        .versions
        .iter()
        .find(|v| v.id == version_id)
        .map(|v| ok(v.full_json()))
        .ok_or_else(|| ApiError::not_found(10007, "Version not found"))
}

/// `GET .../deployments`: newest first.
pub(crate) async fn list_deployments(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let script = st.visible_script(&account, &name)?;
    let list: Vec<Value> = script
        .deployments
        .iter()
        .rev()
        .map(Deployment::json)
        .collect();
    Ok(ok(json!({"deployments": list})))
}

fn secrets_of(v: &Version) -> Vec<Value> {
    let mut s: Vec<Value> = v.secret_bindings().cloned().collect();
    s.sort_by_key(|b| b.to_string());
    s
}

/// `POST .../deployments[?force=true]`: 1 or 2 versions with percentages summing to 100.
/// Rolling back to a version whose secrets differ from the latest needs `force`.
pub(crate) async fn create_deployment(
    State(sim): State<CloudflareSim>,
    Path((account, name)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult {
    let force = query_flag(&query_map(q), "force");
    let req: Value = serde_json::from_slice(&body).map_err(|_| ApiError::malformed_json())?;
    let invalid = |m: &str| ApiError::bad_request(10021, m.to_string());
    if req.get("strategy").and_then(Value::as_str) != Some("percentage") {
        return Err(invalid("strategy must be \"percentage\""));
    }
    let wanted = req
        .get("versions")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("versions is required"))?;
    if wanted.is_empty() || wanted.len() > 2 {
        return Err(invalid("A deployment must have one or two versions"));
    }
    let mut versions = Vec::new();
    for w in wanted {
        let id = w
            .get("version_id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("version_id is required"))?;
        let pct = w
            .get("percentage")
            .and_then(Value::as_f64)
            .ok_or_else(|| invalid("percentage is required"))?;
        if !(0.01..=100.0).contains(&pct) {
            return Err(invalid("percentage must be between 0.01 and 100"));
        }
        if versions.iter().any(|(v, _)| v == id) {
            return Err(invalid("A version can appear only once in a deployment"));
        }
        versions.push((id.to_string(), pct));
    }
    let sum: f64 = versions.iter().map(|(_, p)| p).sum();
    if (sum - 100.0).abs() > 1e-6 {
        return Err(invalid("Version percentages must add up to 100"));
    }
    let mut st = lock(&sim.inner.state);
    let script = st.visible_script(&account, &name)?;
    let current: Vec<String> = script
        .deployments
        .last()
        .map(|d| d.versions.iter().map(|(id, _)| id.clone()).collect())
        .unwrap_or_default();
    let latest_secrets = secrets_of(script.latest());
    for (id, _) in &versions {
        let v = script
            .versions
            .iter()
            .find(|v| &v.id == id)
            .ok_or_else(|| ApiError::not_found(10007, format!("Version {id} not found")))?;
        if !script.deployable(id) {
            return Err(invalid("Only the latest 100 versions can be deployed"));
        }
        let rollback = v.number < script.latest().number && !current.contains(id);
        if rollback && !force && secrets_of(v) != latest_secrets {
            return Err(invalid(
                "A secret has changed since this version was active. If you are sure this is ok, add a ?force=true query parameter to allow the rollback.",
            ));
        }
    }
    let mut annotations = req
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.extend(triggered_by("deployment"));
    let d = Deployment::new(versions, Value::Object(annotations));
    let out = d.json();
    script.deployments.push(d);
    script.modified_on = now_rfc3339();
    Ok(ok(out))
}
