//! The router: every endpoint of the simulated REST API, plus request helpers shared by the
//! handler modules.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::reply::{Rc, ok_json, parse_error, path_not_found, rc_list};
use super::{LinstorSim, api, defs, faults, rc, resources, snapshots};

pub fn router(sim: LinstorSim) -> Router {
    const RD: &str = "/v1/resource-definitions/{resource}";
    Router::new()
        .route("/health", get(health))
        .route("/v1/controller/version", get(version))
        .route("/v1/nodes", get(resources::list_nodes))
        .route("/v1/nodes/{node}", get(resources::get_node))
        .route("/v1/nodes/{node}/storage-pools", get(resources::node_pools))
        .route("/v1/view/storage-pools", get(resources::view_pools))
        .route(
            "/v1/resource-groups",
            get(defs::list_rgs).post(defs::create_rg),
        )
        .route(
            "/v1/resource-groups/{resource_group}",
            get(defs::get_rg)
                .put(defs::modify_rg)
                .delete(defs::delete_rg),
        )
        .route(
            "/v1/resource-groups/{resource_group}/volume-groups",
            get(defs::list_vgs).post(defs::create_vg),
        )
        .route(
            "/v1/resource-groups/{resource_group}/volume-groups/{volume_number}",
            get(defs::get_vg).delete(defs::delete_vg),
        )
        .route(
            "/v1/resource-groups/{resource_group}/spawn",
            post(defs::spawn),
        )
        .route(
            "/v1/resource-groups/{resource_group}/adjust",
            post(defs::adjust),
        )
        .route(
            "/v1/resource-definitions",
            get(defs::list_rds).post(defs::create_rd),
        )
        .route(
            RD,
            get(defs::get_rd)
                .put(defs::modify_rd)
                .delete(defs::delete_rd),
        )
        .route(
            &format!("{RD}/volume-definitions"),
            get(defs::list_vds).post(defs::create_vd),
        )
        .route(
            &format!("{RD}/volume-definitions/{{volume_number}}"),
            get(defs::get_vd)
                .put(defs::modify_vd)
                .delete(defs::delete_vd),
        )
        .route(
            &format!("{RD}/resources"),
            get(resources::list_resources).post(resources::create_resources),
        )
        .route(
            &format!("{RD}/resources/{{node}}"),
            get(resources::get_resource)
                .post(resources::create_resource_on)
                .put(resources::modify_resource)
                .delete(resources::delete_resource),
        )
        .route(&format!("{RD}/autoplace"), post(resources::autoplace))
        .route(&format!("{RD}/sync-status"), get(resources::sync_status))
        .route("/v1/view/resources", get(resources::view_resources))
        .route(
            &format!("{RD}/snapshots"),
            get(snapshots::list).post(snapshots::create),
        )
        .route(
            &format!("{RD}/snapshots/{{snapshot}}"),
            get(snapshots::get_one)
                .put(snapshots::modify)
                .delete(snapshots::delete),
        )
        .route(
            &format!("{RD}/snapshot-restore-volume-definition/{{snapshot}}"),
            post(snapshots::restore_vd),
        )
        .route(
            &format!("{RD}/snapshot-restore-resource/{{snapshot}}"),
            post(snapshots::restore_resource),
        )
        .route("/v1/view/snapshots", get(snapshots::view))
        .route("/v1/error-reports/{reportid}", get(error_report))
        .route(
            "/v1/controller/properties",
            get(controller_props).post(unsupported),
        )
        .route("/v1/nodes/{node}/reconnect", put(unsupported))
        .route("/v1/nodes/{node}/evacuate", put(resources::evacuate_node))
        .route("/v1/nodes/{node}/restore", put(resources::restore_node))
        .route("/v1/nodes/{node}/lost", delete(resources::node_lost))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            faults::middleware,
        ))
        .with_state(sim)
}

async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    path_not_found(StatusCode::NOT_FOUND, uri.path())
}

async fn method_not_allowed(OriginalUri(uri): OriginalUri) -> Response {
    path_not_found(StatusCode::METHOD_NOT_ALLOWED, uri.path())
}

async fn unsupported(OriginalUri(uri): OriginalUri) -> Response {
    path_not_found(StatusCode::NOT_FOUND, uri.path())
}

async fn health() -> Response {
    axum::response::IntoResponse::into_response(StatusCode::OK)
}

async fn version(axum::extract::State(sim): axum::extract::State<LinstorSim>) -> Response {
    let cfg = &sim.inner.cfg;
    ok_json(json!({
        "version": cfg.controller_version,
        "git_hash": "edgebind-linstor-simulator",
        "build_time": "2026-01-01T00:00:00+00:00",
        "rest_api_version": cfg.rest_api_version,
    }))
}

async fn controller_props() -> Response {
    ok_json(json!({}))
}

async fn error_report(
    axum::extract::State(sim): axum::extract::State<LinstorSim>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    let w = sim.read();
    let reports: Vec<Value> = w
        .error_reports
        .iter()
        .filter(|r| r.id.eq_ignore_ascii_case(&id))
        .map(|r| {
            json!({
                "node_name": "Controller",
                "error_time": r.time,
                "filename": format!("ErrorReport-{}.log", r.id),
                "text": r.text,
                "module": "CONTROLLER",
                "version": sim.inner.cfg.controller_version,
            })
        })
        .collect();
    ok_json(Value::Array(reports))
}

/// Query parameters in order, repeated keys kept (`?resources=a&resources=b`).
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn from_raw(raw: RawQuery) -> Self {
        Query(
            raw.0
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// `props=` entries are not split on commas (values may contain them).
    pub fn props(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == "props" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn flag(&self, key: &str) -> bool {
        self.0
            .iter()
            .any(|(k, v)| k == key && (v.is_empty() || v.eq_ignore_ascii_case("true")))
    }

    fn num(&self, key: &str) -> usize {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.parse::<i64>().ok())
            .map(|n| n.max(0) as usize)
            .unwrap_or(0)
    }

    /// Paging applies only when `limit > 0`, as on the real server. Callers page the
    /// filtered objects before rendering JSON, so one page costs a page, not the whole list.
    pub fn page<T>(&self, items: impl IntoIterator<Item = T>) -> Vec<T> {
        let limit = self.num("limit");
        let items = items.into_iter();
        if limit == 0 {
            return items.collect();
        }
        items.skip(self.num("offset")).take(limit).collect()
    }
}

/// Parses a request body like the controller's Jackson mapper: unknown fields and type
/// mismatches are 400 parse errors; an explicit null for a dereferenced list is a 500.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself
pub fn parse_body<T: DeserializeOwned>(sim: &LinstorSim, body: &Bytes) -> Result<T, Response> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| rc_list(StatusCode::OK, &[parse_error(&e.to_string())]))?;
    if let Some(field) = api::explicit_null_list(&value) {
        let text = format!("java.lang.NullPointerException: field '{field}' is null");
        let id = sim.write().error_report(text);
        let rc = Rc::new(
            (rc::FAIL_UNKNOWN_ERROR | rc::MASK_ERROR) as i64,
            format!("An unknown error occurred: '{field}' must not be null."),
        )
        .cause("NullPointerException")
        .report(id);
        return Err(rc_list(StatusCode::OK, &[rc]));
    }
    serde_json::from_value(value)
        .map_err(|e| rc_list(StatusCode::OK, &[parse_error(&e.to_string())]))
}

/// [`parse_body`] for PUT endpoints: their mapping errors are 500 (see
/// [`super::reply::mapper_parse_error`]).
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself
pub fn parse_put_body<T: DeserializeOwned>(sim: &LinstorSim, body: &Bytes) -> Result<T, Response> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Err(put_parse_error(sim, &e.to_string())),
    };
    if api::explicit_null_list(&value).is_some() {
        return parse_body(sim, body);
    }
    serde_json::from_value(value).map_err(|e| put_parse_error(sim, &e.to_string()))
}

/// [`too_new_field`] on a PUT endpoint: 500, as any mapping error there.
pub fn put_too_new_field(sim: &LinstorSim, field: &str) -> Response {
    put_parse_error(
        sim,
        &format!("Unrecognized field \"{field}\" (not known to this REST API version)"),
    )
}

fn put_parse_error(sim: &LinstorSim, detail: &str) -> Response {
    let id = sim.write().error_report(format!(
        "com.fasterxml.jackson.databind.JsonMappingException: {detail}"
    ));
    super::reply::mapper_parse_error(detail, id)
}

/// The 400 a server older than REST API 1.28 gives for the 1.28 field `drbd_client`.
pub fn too_new_field(field: &str) -> Response {
    rc_list(
        StatusCode::OK,
        &[parse_error(&format!(
            "Unrecognized field \"{field}\" (not known to this REST API version)"
        ))],
    )
}

/// Response for a mutation: the first error entry decides the status, else `success`.
pub fn respond(success: StatusCode, rcs: Vec<Rc>) -> Response {
    rc_list(success, &rcs)
}

pub use axum::extract::Path as P;
pub use axum::extract::State as S;
