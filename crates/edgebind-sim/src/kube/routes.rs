//! HTTP: parses Kubernetes API paths and query strings, records each request, and dispatches
//! to the store and the watch streams.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::patch::PatchKind;
use super::resources::{ResKey, ResourceDef};
use super::selector::{FieldSelector, LabelSelector};
use super::store::Target;
use super::watch::{self, View, WatchRequest};
use super::{RecordedRequest, Shared};

/// The real server caps request bodies at 3 MiB; allow a little more.
const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// The real server's default watch length when the client gives none (minRequestTimeout).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

pub(crate) fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).expect("a JSON value always serializes");
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| code.into_response())
}

/// A parsed resource path.
#[derive(Debug, Default)]
struct PathInfo {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

enum Parsed {
    Discovery(Value),
    Resource(PathInfo),
    NotFound,
}

fn parse_path(shared: &Shared, path: &str) -> Parsed {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => {
            return Parsed::Discovery(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-edgebind-fake",
                "platform": "linux/amd64"
            }));
        }
        ["api"] => {
            return Parsed::Discovery(json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": []}));
        }
        ["apis"] => return Parsed::Discovery(shared.read().group_list()),
        ["api", "v1"] => return Parsed::Discovery(shared.read().resource_list("", "v1")),
        ["apis", g, v] => return Parsed::Discovery(shared.read().resource_list(g, v)),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Parsed::NotFound,
    };
    let mut info = PathInfo {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    let rest: &[&str] = if rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"))
    {
        info.namespace = Some(rest[1].to_string());
        &rest[2..]
    } else {
        rest
    };
    match rest {
        [plural] => info.plural = plural.to_string(),
        [plural, name] => {
            info.plural = plural.to_string();
            info.name = Some(name.to_string());
        }
        [plural, name, sub] => {
            info.plural = plural.to_string();
            info.name = Some(name.to_string());
            info.subresource = Some(sub.to_string());
        }
        _ => return Parsed::NotFound,
    }
    if info.plural.is_empty() || info.name.as_deref() == Some("") {
        return Parsed::NotFound;
    }
    Parsed::Resource(info)
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    // kube sends `?&watch=true...`; empty keys are skipped.
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn verb_of(method: &Method, info: &PathInfo, q: &HashMap<String, String>) -> &'static str {
    let watching = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    match (method.as_str(), info.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = query_map(&uri);
    let parsed = parse_path(&shared, uri.path());
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut record = RecordedRequest {
        verb: "get".into(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: None,
        namespace: None,
        name: None,
        user_agent: header("user-agent"),
        field_manager: q.get("fieldManager").cloned(),
        status: 0,
    };
    if let Parsed::Resource(info) = &parsed {
        record.verb = verb_of(&method, info, &q).to_string();
        record.group = info.group.clone();
        record.version = info.version.clone();
        record.resource = info.plural.clone();
        record.subresource = info.subresource.clone();
        record.namespace = info.namespace.clone();
        record.name = info.name.clone();
    }
    let response = if *shared.unavailable.borrow() {
        ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        )
        .into_response()
    } else {
        match parsed {
            Parsed::Discovery(v) if method == Method::GET => json_response(StatusCode::OK, &v),
            Parsed::Discovery(_) => method_not_allowed(&method),
            Parsed::NotFound => ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
            .into_response(),
            Parsed::Resource(info) => {
                let accept = header("accept").unwrap_or_default();
                let content_type = header("content-type").unwrap_or_default();
                match dispatch(&shared, &method, info, &q, &accept, &content_type, &body) {
                    Ok(r) => r,
                    Err(e) => e.into_response(),
                }
            }
        }
    };
    record.status = response.status().as_u16();
    shared.record(record);
    response
}

fn method_not_allowed(method: &Method) -> Response {
    ApiError::new(
        405,
        "MethodNotAllowed",
        format!("the server does not allow this method on the requested resource ({method})"),
    )
    .into_response()
}

fn not_found() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

fn parse_body(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

fn view_for(
    def: &ResourceDef,
    info: &PathInfo,
    q: &HashMap<String, String>,
    accept: &str,
) -> ApiResult<View> {
    Ok(View {
        namespace: info.namespace.clone(),
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        fields: FieldSelector::parse(
            q.get("fieldSelector").map(String::as_str).unwrap_or(""),
            &def.selectable_fields,
        )?,
        api_version: def.api_version(&info.version),
        kind: def.kind.clone(),
        metadata_only: accept.contains("as=PartialObjectMetadata"),
    })
}

fn object_response(code: StatusCode, view: &View, obj: &Value) -> Response {
    json_response(code, &view.present(obj))
}

#[allow(clippy::too_many_arguments)]
fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    info: PathInfo,
    q: &HashMap<String, String>,
    accept: &str,
    content_type: &str,
    body: &[u8],
) -> ApiResult<Response> {
    let key = ResKey::new(&info.group, &info.plural);
    let def = shared.read().def(&key).ok_or_else(not_found)?;
    if def.version(&info.version).is_none() {
        return Err(not_found());
    }
    // Scope: namespaced resources may be listed across namespaces, nothing else.
    if !def.namespaced && info.namespace.is_some() {
        return Err(not_found());
    }
    let status = match info.subresource.as_deref() {
        None => false,
        Some("status") if def.status_subresource(&info.version) => true,
        Some(_) => return Err(not_found()),
    };
    if def.namespaced && info.namespace.is_none() && (info.name.is_some() || *method != Method::GET)
    {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "a namespace is required for this request",
        ));
    }
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let view = view_for(&def, &info, q, accept)?;
    let target = Target {
        key: key.clone(),
        version: info.version.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        status,
    };
    match (method.as_str(), info.name.is_some()) {
        ("GET", true) => {
            let obj = shared.read().get(
                &key,
                info.namespace.as_deref(),
                info.name.as_deref().unwrap_or_default(),
            )?;
            Ok(object_response(StatusCode::OK, &view, &obj))
        }
        ("GET", false) => {
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
                let timeout = q
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_WATCH_TIMEOUT);
                let req = WatchRequest {
                    key,
                    view,
                    resource_version: q.get("resourceVersion").cloned(),
                    timeout,
                    bookmarks: q
                        .get("allowWatchBookmarks")
                        .is_some_and(|v| v == "true" || v == "1"),
                    send_initial_events: q.get("sendInitialEvents").is_some_and(|v| v == "true"),
                };
                return watch::start(shared.clone(), req);
            }
            let limit = match q.get("limit") {
                Some(l) => Some(
                    l.parse::<usize>()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
                ),
                None => None,
            };
            let page = shared.read().list(
                &key,
                info.namespace.as_deref(),
                &|o| view.matches(o),
                limit,
                q.get("continue")
                    .map(String::as_str)
                    .filter(|c| !c.is_empty()),
            )?;
            let mut meta = json!({"resourceVersion": page.rv.to_string()});
            if let Some(c) = page.continue_token {
                meta["continue"] = Value::String(c);
            }
            if let Some(r) = page.remaining {
                meta["remainingItemCount"] = json!(r);
            }
            let (api_version, kind) = if view.metadata_only {
                (
                    "meta.k8s.io/v1".to_string(),
                    "PartialObjectMetadataList".to_string(),
                )
            } else {
                (view.api_version.clone(), def.list_kind.clone())
            };
            Ok(list_response(
                &api_version,
                &kind,
                &meta,
                &view,
                &page.items,
            ))
        }
        ("POST", false) if !status => {
            let obj = shared.write().create(&target, parse_body(body)?, dry_run)?;
            Ok(object_response(StatusCode::CREATED, &view, &obj))
        }
        ("PUT", true) => {
            let obj = shared.write().update(&target, parse_body(body)?, dry_run)?;
            Ok(object_response(StatusCode::OK, &view, &obj))
        }
        ("PATCH", true) => {
            let kind = PatchKind::from_content_type(content_type)?;
            let manager = q.get("fieldManager").map(String::as_str);
            let force = q.get("force").map(String::as_str) == Some("true");
            let (obj, created) = shared
                .write()
                .patch(&target, kind, body, manager, force, dry_run)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(object_response(code, &view, &obj))
        }
        ("DELETE", true) => {
            let opts = if body.is_empty() {
                None
            } else {
                Some(parse_body(body)?)
            };
            let obj = shared.write().delete(&target, opts.as_ref(), dry_run)?;
            let pending = obj.pointer("/metadata/deletionTimestamp").is_some();
            let code = if pending {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok(object_response(code, &view, &obj))
        }
        ("DELETE", false) => {
            let opts = if body.is_empty() {
                None
            } else {
                Some(parse_body(body)?)
            };
            let items = shared.write().delete_collection(
                &target,
                &|o| view.matches(o),
                opts.as_ref(),
                dry_run,
            )?;
            let meta = json!({"resourceVersion": shared.read().rv.to_string()});
            Ok(list_response(
                &view.api_version,
                &def.list_kind,
                &meta,
                &view,
                &items,
            ))
        }
        _ => Ok(method_not_allowed(method)),
    }
}

/// Writes the list without first building one big JSON value (lists can hold thousands).
fn list_response(
    api_version: &str,
    kind: &str,
    meta: &Value,
    view: &View,
    items: &[Arc<Value>],
) -> Response {
    let mut buf = Vec::with_capacity(64 + items.len() * 512);
    buf.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut buf, kind).expect("a string serializes");
    buf.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut buf, api_version).expect("a string serializes");
    buf.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut buf, meta).expect("a JSON value serializes");
    buf.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, &*view.present(item)).expect("a JSON value serializes");
    }
    buf.extend_from_slice(b"]}");
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(buf))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
