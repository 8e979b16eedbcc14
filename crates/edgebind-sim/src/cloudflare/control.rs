//! What the standalone simulator (`edgebind simulate cloudflare`) adds for tests that run
//! processes against it: the parts of Cloudflare that are not its API. cloudflared connecting
//! with a tunnel token, the edge resolving a hostname through its CNAME and tunnel, and the
//! Workers runtime loading the deployed version of a script with its secrets. Under `/__sim/`,
//! never under `/client/v4`, so no API client can mistake them for Cloudflare's.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::{CloudflareSim, lock};

/// The control routes, to merge beside [`CloudflareSim::router`].
pub fn router(sim: CloudflareSim) -> Router {
    Router::new()
        .route("/__sim/cloudflared", post(connect))
        .route("/__sim/cloudflared/{connector}", delete(disconnect))
        .route("/__sim/edge/origin", get(origin))
        .route("/__sim/workers/{script}", get(worker))
        .with_state(sim)
}

fn refused(status: StatusCode, error: String) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

#[derive(Deserialize)]
struct Connect {
    token: String,
}

/// cloudflared `tunnel run --token <token>`: a connector on the token's tunnel.
async fn connect(State(sim): State<CloudflareSim>, Json(c): Json<Connect>) -> Response {
    match sim.connect_tunnel(&c.token) {
        Ok(id) => Json(json!({ "connector_id": id })).into_response(),
        Err(e) => refused(StatusCode::BAD_REQUEST, e),
    }
}

/// cloudflared stops: its connector goes away.
async fn disconnect(State(sim): State<CloudflareSim>, Path(connector): Path<String>) -> Response {
    sim.disconnect_tunnel(&connector);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct Resolve {
    host: String,
    #[serde(default)]
    path: String,
}

/// Where the edge sends a request for `https://{host}{path}` through a tunnel.
async fn origin(State(sim): State<CloudflareSim>, Query(q): Query<Resolve>) -> Response {
    match sim.resolve_tunnel_origin(&q.host, &q.path) {
        Ok(origin) => Json(json!({ "origin": origin })).into_response(),
        Err(e) => refused(StatusCode::BAD_GATEWAY, e),
    }
}

/// The version of `script` that serves traffic, as the Workers runtime loads it: modules
/// (base64) and bindings with secret values (the API never returns those).
async fn worker(State(sim): State<CloudflareSim>, Path(script): Path<String>) -> Response {
    let st = lock(&sim.inner.state);
    let Some(s) = st.accounts.values().find_map(|a| a.get(&script)) else {
        return refused(StatusCode::NOT_FOUND, format!("no script {script}"));
    };
    let v = s.active_version();
    let b64 = base64::engine::general_purpose::STANDARD;
    let modules: Vec<_> = v
        .modules
        .iter()
        .map(|m| {
            json!({"name": m.name, "content_type": m.content_type, "content_base64": b64.encode(&m.content)})
        })
        .collect();
    Json(json!({
        "id": v.id,
        "main_module": v.main_module,
        "modules": modules,
        "bindings": v.bindings,
        "compatibility_date": v.compatibility_date,
        "compatibility_flags": v.compatibility_flags,
    }))
    .into_response()
}
