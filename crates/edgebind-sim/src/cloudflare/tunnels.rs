//! Cloudflare Tunnels (remotely managed): the tunnel objects of an account, their ingress
//! configuration, their token, and the connections cloudflared holds open. The simulator also
//! plays the two sides a test cannot reach: a connector (cloudflared) registering with a token,
//! and the edge resolving a public hostname through a proxied CNAME, the tunnel and its ingress
//! rules to an origin service.
//!
//! Sources (reference `docs/reference/cloudflare.md` §11):
//! - operations and shapes: `specs/cloudflare-workers.yaml` (api-schemas cca3064f), tags
//!   "Cloudflare Tunnel" and "Cloudflare Tunnel Configuration";
//! - token = base64 of `{"a": account tag, "t": tunnel id, "s": secret}` and `config_src`:
//!   https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/configure-tunnels/remote-management/
//! - ingress rules: matched top-down, the last one must be a catch-all without hostname or path
//!   (cloudflared `ingress/ingress.go`, "The last ingress rule must match all URLs");
//! - a tunnel with connections cannot be deleted, error 1022 (seen in the real API's answers,
//!   tuanngocptn/nport#16, 2026-02); a second tunnel with the same name is refused ("tunnel with
//!   name already exists", cloudflared's create call, homeassistant-apps/app-cloudflared#890),
//!   envelope code 1013 and HTTP 409 chosen, not confirmed;
//! - deleted tunnels stay listed with `deleted_at` set (the list's `is_deleted` filter).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};

use super::envelope::{ApiError, ApiResult, ok, paged};
use super::model::now_rfc3339;
use super::{CloudflareSim, lock, query_map};

/// One tunnel as the simulator holds it.
#[derive(Debug, Clone)]
pub(crate) struct Tunnel {
    pub id: String,
    pub account: String,
    pub name: String,
    pub created_at: String,
    pub deleted_at: Option<String>,
    pub remote_config: bool,
    /// Base64 of the tunnel secret (the `s` of the token).
    pub secret: String,
    pub config: Value,
    pub config_version: u64,
    /// Connector client id -> the time it connected.
    pub connectors: Vec<(String, String)>,
    pub ever_connected: bool,
}

impl Tunnel {
    /// `tunnel_status`: `inactive` until a connector first connects, `down` once none is.
    fn status(&self) -> &'static str {
        if !self.connectors.is_empty() {
            "healthy"
        } else if self.ever_connected {
            "down"
        } else {
            "inactive"
        }
    }

    fn connections_json(&self) -> Value {
        Value::Array(
            self.connectors
                .iter()
                .map(|(client, at)| {
                    json!({
                        "client_id": client, "client_version": "2025.11.1",
                        "colo_name": "dfw01", "id": client, "is_pending_reconnect": false,
                        "opened_at": at, "origin_ip": "192.0.2.10", "uuid": client,
                    })
                })
                .collect(),
        )
    }

    /// The `cfd_tunnel` object. Times that are not set are left out (the document types them
    /// as strings, not nullable).
    pub fn json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "account_tag": self.account,
            "name": self.name,
            "created_at": self.created_at,
            "deleted_at": self.deleted_at,
            "connections": self.connections_json(),
            "conns_active_at": self.connectors.first().map(|c| c.1.clone()),
            "conns_inactive_at": null,
            "metadata": {},
            "remote_config": self.remote_config,
            "status": self.status(),
            "tun_type": "cfd_tunnel",
        });
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
        v
    }

    pub fn token(&self) -> String {
        STANDARD.encode(json!({"a": self.account, "t": self.id, "s": self.secret}).to_string())
    }
}

fn tunnel_not_found() -> ApiError {
    ApiError::not_found(1003, "Tunnel not found")
}

fn live<'a>(
    sim: &'a mut super::model::SimState,
    account: &str,
    id: &str,
) -> Result<&'a mut Tunnel, ApiError> {
    sim.tunnels
        .get_mut(id)
        .filter(|t| t.account == account && t.deleted_at.is_none())
        .ok_or_else(tunnel_not_found)
}

/// `POST /accounts/{a}/cfd_tunnel`.
pub(crate) async fn create_tunnel(
    State(sim): State<CloudflareSim>,
    Path(account): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: Value = serde_json::from_slice(&body).map_err(|_| ApiError::malformed_json())?;
    let name = req
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(1001, "name is required"))?
        .to_string();
    let remote_config = match req.get("config_src").and_then(Value::as_str) {
        None | Some("local") => false,
        Some("cloudflare") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                1001,
                "config_src must be local or cloudflare",
            ));
        }
    };
    let secret = match req.get("tunnel_secret").and_then(Value::as_str) {
        Some(s) => {
            let raw = STANDARD
                .decode(s)
                .map_err(|_| ApiError::bad_request(1001, "tunnel_secret must be base64"))?;
            if raw.len() < 32 {
                return Err(ApiError::bad_request(
                    1001,
                    "tunnel_secret must be at least 32 bytes",
                ));
            }
            s.to_string()
        }
        None => STANDARD.encode(uuid::Uuid::new_v4().as_bytes().repeat(2)),
    };
    let mut st = lock(&sim.inner.state);
    if !st.accounts.contains_key(&account) {
        return Err(ApiError::authentication());
    }
    if st
        .tunnels
        .values()
        .any(|t| t.account == account && t.deleted_at.is_none() && t.name == name)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            1013,
            "You already have a tunnel with this name",
        ));
    }
    let t = Tunnel {
        id: uuid::Uuid::new_v4().to_string(),
        account,
        name,
        created_at: now_rfc3339(),
        deleted_at: None,
        remote_config,
        secret,
        config: json!({}),
        config_version: 0,
        connectors: Vec::new(),
        ever_connected: false,
    };
    let out = t.json();
    st.tunnels.insert(t.id.clone(), t);
    Ok(ok(out))
}

/// `GET /accounts/{a}/cfd_tunnel`: filters `name`, `is_deleted`, `uuid`; paginated.
pub(crate) async fn list_tunnels(
    State(sim): State<CloudflareSim>,
    Path(account): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = query_map(q);
    let st = lock(&sim.inner.state);
    let all: Vec<Value> = st
        .tunnels
        .values()
        .filter(|t| t.account == account)
        .filter(|t| q.get("name").is_none_or(|n| &t.name == n))
        .filter(|t| q.get("uuid").is_none_or(|u| &t.id == u))
        .filter(|t| match q.get("is_deleted").map(String::as_str) {
            Some("true") => t.deleted_at.is_some(),
            Some("false") => t.deleted_at.is_none(),
            _ => true,
        })
        .map(Tunnel::json)
        .collect();
    Ok(paged(all, &q, 20, 1000))
}

/// `GET /accounts/{a}/cfd_tunnel/{id}` (a deleted tunnel is still shown, with `deleted_at`).
pub(crate) async fn get_tunnel(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let st = lock(&sim.inner.state);
    st.tunnels
        .get(&id)
        .filter(|t| t.account == account)
        .map(|t| ok(t.json()))
        .ok_or_else(tunnel_not_found)
}

/// `DELETE /accounts/{a}/cfd_tunnel/{id}`: refused while connectors are connected.
pub(crate) async fn delete_tunnel(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let t = live(&mut st, &account, &id)?;
    if !t.connectors.is_empty() {
        return Err(ApiError::bad_request(
            1022,
            "Cannot delete tunnel because it has active connections",
        ));
    }
    t.deleted_at = Some(now_rfc3339());
    Ok(ok(t.json()))
}

fn config_result(t: &Tunnel) -> Value {
    json!({
        "tunnel_id": t.id,
        "version": t.config_version,
        "config": t.config,
        "source": "cloudflare",
        "created_at": t.created_at,
    })
}

/// Checks an ingress list the way cloudflared parses one: each rule has a `service`, and the
/// last one (only the last one) matches everything.
fn check_ingress(config: &Value) -> Result<(), ApiError> {
    let bad = |m: &str| ApiError::bad_request(1055, format!("Invalid tunnel configuration: {m}"));
    let Some(rules) = config.get("ingress") else {
        return Ok(());
    };
    let rules = rules
        .as_array()
        .ok_or_else(|| bad("ingress must be a list"))?;
    let catch_all = |r: &Value| {
        r.get("hostname")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && r.get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
    };
    for (i, r) in rules.iter().enumerate() {
        let service = r.get("service").and_then(Value::as_str).unwrap_or("");
        let known = [
            "http://", "https://", "tcp://", "unix:", "ssh://", "rdp://", "smb://",
        ]
        .iter()
        .any(|p| service.starts_with(p))
            || service.starts_with("http_status:");
        if !known {
            return Err(bad(&format!("rule {i} has no supported service")));
        }
        if i + 1 < rules.len() && catch_all(r) {
            return Err(bad(&format!(
                "rule {i} matches all URLs but is not the last"
            )));
        }
    }
    if rules.last().is_some_and(|r| !catch_all(r)) {
        return Err(bad("the last ingress rule must match all URLs"));
    }
    Ok(())
}

/// `GET /accounts/{a}/cfd_tunnel/{id}/configurations`.
pub(crate) async fn get_config(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    Ok(ok(config_result(live(&mut st, &account, &id)?)))
}

/// `PUT /accounts/{a}/cfd_tunnel/{id}/configurations`: replaces the whole configuration and
/// bumps its version (cloudflared picks it up without a restart).
pub(crate) async fn put_config(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let req: Value = serde_json::from_slice(&body).map_err(|_| ApiError::malformed_json())?;
    let config = req.get("config").cloned().unwrap_or_else(|| json!({}));
    check_ingress(&config)?;
    let mut st = lock(&sim.inner.state);
    let t = live(&mut st, &account, &id)?;
    if !t.remote_config {
        return Err(ApiError::bad_request(
            1055,
            "Invalid tunnel configuration: the tunnel is locally configured (config_src local)",
        ));
    }
    t.config = config;
    t.config_version += 1;
    Ok(ok(config_result(t)))
}

/// `GET /accounts/{a}/cfd_tunnel/{id}/connections`: one entry per connected cloudflared.
pub(crate) async fn list_connections(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let t = live(&mut st, &account, &id)?;
    let clients: Vec<Value> = t
        .connectors
        .iter()
        .map(|(client, at)| {
            json!({
                "id": client, "arch": "linux_amd64", "version": "2025.11.1", "run_at": at,
                "config_version": t.config_version,
                "conns": [{"colo_name": "dfw01", "id": client, "is_pending_reconnect": false,
                           "opened_at": at, "origin_ip": "192.0.2.10", "uuid": client}],
                "features": ["serialized_headers"],
            })
        })
        .collect();
    Ok(ok(Value::Array(clients)))
}

/// `GET /accounts/{a}/cfd_tunnel/{id}/token`.
pub(crate) async fn get_token(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    Ok(ok(Value::String(live(&mut st, &account, &id)?.token())))
}

/// What a connector presents: the decoded token.
pub(crate) fn decode_token(token: &str) -> Option<(String, String, String)> {
    let raw = STANDARD.decode(token.trim()).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    Some((
        v.get("a")?.as_str()?.to_string(),
        v.get("t")?.as_str()?.to_string(),
        v.get("s")?.as_str()?.to_string(),
    ))
}

/// The service of the first ingress rule matching `host` and `path` (cloudflared's top-down
/// match; `*.` wildcards match one or more labels; `path` is a regular expression, of which
/// only a literal prefix is supported here).
pub(crate) fn match_ingress(config: &Value, host: &str, path: &str) -> Option<String> {
    let rules = config.get("ingress")?.as_array()?;
    rules.iter().find_map(|r| {
        let h = r.get("hostname").and_then(Value::as_str).unwrap_or("");
        let p = r.get("path").and_then(Value::as_str).unwrap_or("");
        let host_ok = h.is_empty()
            || h.eq_ignore_ascii_case(host)
            || h.strip_prefix("*.").is_some_and(|suffix| {
                host.to_ascii_lowercase()
                    .ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
            });
        let path_ok = p.is_empty() || path.starts_with(p.trim_start_matches('^'));
        (host_ok && path_ok)
            .then(|| r.get("service").and_then(Value::as_str).map(str::to_string))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_rule_must_match_everything() {
        let ok_cfg = json!({"ingress": [
            {"hostname": "gw.example.com", "service": "http://gw.ns.svc:8080"},
            {"service": "http_status:404"}]});
        assert!(check_ingress(&ok_cfg).is_ok());
        let no_catch_all =
            json!({"ingress": [{"hostname": "gw.example.com", "service": "http://x"}]});
        assert_eq!(check_ingress(&no_catch_all).unwrap_err().code, 1055);
        let catch_all_first = json!({"ingress": [{"service": "http_status:404"},
            {"hostname": "a.example.com", "service": "http://x"}, {"service": "http_status:404"}]});
        assert!(check_ingress(&catch_all_first).is_err());
        let bad_service = json!({"ingress": [{"service": "gopher://x"}]});
        assert!(check_ingress(&bad_service).is_err());
    }

    #[test]
    fn ingress_matches_top_down_with_wildcards() {
        let cfg = json!({"ingress": [
            {"hostname": "gw.example.com", "service": "http://one"},
            {"hostname": "*.example.com", "service": "http://two"},
            {"service": "http_status:404"}]});
        assert_eq!(
            match_ingress(&cfg, "GW.example.com", "/").as_deref(),
            Some("http://one")
        );
        assert_eq!(
            match_ingress(&cfg, "a.b.example.com", "/").as_deref(),
            Some("http://two")
        );
        assert_eq!(
            match_ingress(&cfg, "other.org", "/").as_deref(),
            Some("http_status:404")
        );
    }
}
