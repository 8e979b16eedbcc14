//! Workers VPC services: the connectivity directory entries of an account (a host in a private
//! network reached through one of the account's tunnels), and the `vpc_service` Worker binding
//! that names one.
//!
//! Sources (reference `docs/reference/cloudflare.md` §11):
//! - operations, request and result shapes: `specs/cloudflare-workers.yaml`
//!   (cloudflare/api-schemas c92b9b0f, tag "Connectivity Services"): `type`, `name` and `host`
//!   required; `host` is one of `{ipv4, network}`, `{ipv6, network}`, `{ipv4, ipv6, network}`,
//!   `{hostname, resolver_network}`; `network.tunnel_id` / `resolver_network.tunnel_id` required
//!   (uuid), `resolver_ips` optional; `http_port`/`https_port` (http) and `tcp_port`,
//!   `app_protocol` postgresql|mysql (tcp) are integers >= 1 or null; `service_id`,
//!   `created_at`, `updated_at` are read-only; list filter `type`, `per_page` 1..=1000
//!   (default 1000);
//! - `tls_settings.cert_verification_mode` is `verify_full` (default), `verify_ca` or
//!   `disabled`; ports default to 80/443; without `resolver_ips` cloudflared uses the system
//!   resolver: https://developers.cloudflare.com/workers-vpc/configuration/vpc-services/
//! - the upload binding `{"type": "vpc_service", "name", "service_id"}`, all required:
//!   `workers_binding_kind_vpc_service` in the same document.
//!
//! Chosen, not confirmed by a source: error codes (validation 400/1001, unknown service
//! 404/1002, an account without Workers VPC 403/1003, a binding to an unknown service
//! 400/10021 like other upload validation errors); a `tunnel_id` must name a live tunnel of
//! the account; names need not be unique (the API identifies services by `service_id`).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::envelope::{ApiError, ApiResult, ok, paged};
use super::model::{SimState, now_rfc3339};
use super::{CloudflareSim, lock, query_map};

/// One directory service as the simulator holds it: the request body as accepted (without
/// read-only fields) plus the server-made fields.
#[derive(Debug, Clone)]
pub(crate) struct VpcService {
    pub id: String,
    pub account: String,
    pub config: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

impl VpcService {
    pub fn json(&self) -> Value {
        let mut m = self.config.clone();
        m.insert("service_id".into(), json!(self.id));
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("updated_at".into(), json!(self.updated_at));
        Value::Object(m)
    }

    /// The tunnel the service is reached through.
    pub fn tunnel_id(&self) -> Option<&str> {
        let host = self.config.get("host")?;
        host.get("network")
            .or_else(|| host.get("resolver_network"))?
            .get("tunnel_id")?
            .as_str()
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(1001, msg)
}

fn service_not_found() -> ApiError {
    ApiError::not_found(1002, "Service not found")
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

/// An integer >= 1, or null/absent.
fn port(m: &Map<String, Value>, key: &str) -> Result<(), ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(v) if v.as_u64().is_some_and(|p| (1..=65535).contains(&p)) => Ok(()),
        Some(_) => Err(invalid(format!("{key} must be an integer from 1 to 65535"))),
    }
}

fn network(host: &Map<String, Value>, key: &str, resolver: bool) -> Result<String, ApiError> {
    let n = host
        .get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(format!("host.{key} is required")))?;
    let id = n
        .get("tunnel_id")
        .and_then(Value::as_str)
        .filter(|t| is_uuid(t))
        .ok_or_else(|| invalid(format!("host.{key}.tunnel_id must be a tunnel UUID")))?;
    if resolver {
        match n.get("resolver_ips") {
            None | Some(Value::Null) => {}
            Some(Value::Array(ips)) if ips.iter().all(Value::is_string) => {}
            Some(_) => {
                return Err(invalid(
                    "host.resolver_network.resolver_ips must be a list of strings",
                ));
            }
        }
    }
    Ok(id.to_string())
}

/// Checks a create or update body against the schema; returns it without read-only fields,
/// and the tunnel it names.
fn check_config(body: &[u8]) -> Result<(Map<String, Value>, String), ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| ApiError::malformed_json())?;
    let Value::Object(mut m) = v else {
        return Err(invalid("the body must be a JSON object"));
    };
    for ro in ["service_id", "created_at", "updated_at"] {
        m.remove(ro);
    }
    m.get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("name is required"))?;
    let ty = m
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("type is required"))?
        .to_string();
    match ty.as_str() {
        "http" => {
            port(&m, "http_port")?;
            port(&m, "https_port")?;
        }
        "tcp" => {
            port(&m, "tcp_port")?;
            match m.get("app_protocol") {
                None | Some(Value::Null) => {}
                Some(p) if p == "postgresql" || p == "mysql" => {}
                Some(_) => return Err(invalid("app_protocol must be postgresql or mysql")),
            }
        }
        _ => return Err(invalid("type must be http or tcp")),
    }
    if let Some(t) = m.get("tls_settings").filter(|t| !t.is_null()) {
        let mode = t.get("cert_verification_mode").and_then(Value::as_str);
        if !matches!(mode, Some("verify_full" | "verify_ca" | "disabled")) {
            return Err(invalid(
                "tls_settings.cert_verification_mode must be verify_full, verify_ca or disabled",
            ));
        }
    }
    let host = m
        .get("host")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("host is required"))?;
    let s = |k: &str| {
        host.get(k)
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty())
    };
    let tunnel = match (s("hostname"), s("ipv4"), s("ipv6")) {
        (Some(_), None, None) => network(host, "resolver_network", true)?,
        (None, Some(a), b) => {
            if a.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(invalid("host.ipv4 must be an IPv4 address"));
            }
            if b.is_some_and(|b| b.parse::<std::net::Ipv6Addr>().is_err()) {
                return Err(invalid("host.ipv6 must be an IPv6 address"));
            }
            network(host, "network", false)?
        }
        (None, None, Some(b)) => {
            if b.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid("host.ipv6 must be an IPv6 address"));
            }
            network(host, "network", false)?
        }
        _ => {
            return Err(invalid(
                "host must be one of {hostname, resolver_network}, {ipv4, network}, {ipv6, network}, {ipv4, ipv6, network}",
            ));
        }
    };
    Ok((m, tunnel))
}

/// The account exists and has Workers VPC, and the tunnel is one of its live tunnels.
fn check_account(st: &SimState, account: &str, tunnel: Option<&str>) -> Result<(), ApiError> {
    if !st.accounts.contains_key(account) {
        return Err(ApiError::authentication());
    }
    if st.vpc_denied.contains(account) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            1003,
            "Workers VPC is not enabled for this account",
        ));
    }
    if let Some(t) = tunnel
        && !st
            .tunnels
            .get(t)
            .is_some_and(|x| x.account == account && x.deleted_at.is_none())
    {
        return Err(invalid(format!(
            "tunnel {t} does not exist in this account"
        )));
    }
    Ok(())
}

/// `POST /accounts/{a}/connectivity/directory/services`.
pub(crate) async fn create_service(
    State(sim): State<CloudflareSim>,
    Path(account): Path<String>,
    body: Bytes,
) -> ApiResult {
    let (config, tunnel) = check_config(&body)?;
    let mut st = lock(&sim.inner.state);
    check_account(&st, &account, Some(&tunnel))?;
    let now = now_rfc3339();
    let s = VpcService {
        id: uuid::Uuid::new_v4().to_string(),
        account,
        config,
        created_at: now.clone(),
        updated_at: now,
    };
    let out = s.json();
    st.vpc_services.insert(s.id.clone(), s);
    Ok(ok(out))
}

/// `GET /accounts/{a}/connectivity/directory/services`: filter `type`; paginated.
pub(crate) async fn list_services(
    State(sim): State<CloudflareSim>,
    Path(account): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = query_map(q);
    if let Some(t) = q.get("type")
        && t != "http"
        && t != "tcp"
    {
        return Err(invalid("type must be http or tcp"));
    }
    let st = lock(&sim.inner.state);
    check_account(&st, &account, None)?;
    let all: Vec<Value> = st
        .vpc_services
        .values()
        .filter(|s| s.account == account)
        .filter(|s| {
            q.get("type")
                .is_none_or(|t| s.config.get("type").and_then(Value::as_str) == Some(t))
        })
        .map(VpcService::json)
        .collect();
    Ok(paged(all, &q, 1000, 1000))
}

fn find<'a>(st: &'a mut SimState, account: &str, id: &str) -> Result<&'a mut VpcService, ApiError> {
    if !is_uuid(id) {
        return Err(invalid("service_id must be a UUID"));
    }
    st.vpc_services
        .get_mut(id)
        .filter(|s| s.account == account)
        .ok_or_else(service_not_found)
}

/// `GET /accounts/{a}/connectivity/directory/services/{id}`.
pub(crate) async fn get_service(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    check_account(&st, &account, None)?;
    Ok(ok(find(&mut st, &account, &id)?.json()))
}

/// `PUT /accounts/{a}/connectivity/directory/services/{id}`: replaces the whole entry (the
/// id and creation time stay).
pub(crate) async fn update_service(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let (config, tunnel) = check_config(&body)?;
    let mut st = lock(&sim.inner.state);
    check_account(&st, &account, Some(&tunnel))?;
    let s = find(&mut st, &account, &id)?;
    s.config = config;
    s.updated_at = now_rfc3339();
    Ok(ok(s.json()))
}

/// `DELETE /accounts/{a}/connectivity/directory/services/{id}`.
pub(crate) async fn delete_service(
    State(sim): State<CloudflareSim>,
    Path((account, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    check_account(&st, &account, None)?;
    find(&mut st, &account, &id)?;
    st.vpc_services.remove(&id);
    // The document declares the 200 without a body.
    Ok(StatusCode::OK.into_response())
}

/// Upload validation: every `vpc_service` binding names a service of the account.
pub(crate) fn check_bindings(
    st: &SimState,
    account: &str,
    bindings: &[Value],
) -> Result<(), ApiError> {
    for b in bindings
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("vpc_service"))
    {
        let name = b.get("name").and_then(Value::as_str).unwrap_or("");
        let id = b.get("service_id").and_then(Value::as_str).unwrap_or("");
        if st.vpc_services.get(id).is_none_or(|s| s.account != account) {
            return Err(ApiError::bad_request(
                10021,
                format!("Binding {name}: VPC service {id} does not exist in this account"),
            ));
        }
    }
    Ok(())
}

/// The origin cloudflared connects to for a request through service `s` with URL scheme
/// `scheme`: the service's host and its port for that scheme (80/443 by default); the port
/// in the Worker's URL is ignored.
pub(crate) fn origin(s: &VpcService, scheme: &str) -> Option<String> {
    let host = s.config.get("host")?;
    let name = host
        .get("hostname")
        .or_else(|| host.get("ipv4"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            host.get("ipv6")
                .and_then(Value::as_str)
                .map(|a| format!("[{a}]"))
        })?;
    let (key, default) = if scheme == "https" {
        ("https_port", 443)
    } else {
        ("http_port", 80)
    };
    let port = s.config.get(key).and_then(Value::as_u64).unwrap_or(default);
    Some(format!("{scheme}://{name}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0191dce4-9ab4-7fce-b660-8e5dec5172da";

    fn body(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn the_host_is_one_of_four_shapes() {
        let ok_hostname = json!({"type": "http", "name": "gw", "http_port": 8080,
            "host": {"hostname": "gw.ns.svc", "resolver_network": {"tunnel_id": T}}});
        let (m, t) = check_config(&body(ok_hostname)).unwrap();
        assert_eq!(t, T);
        assert_eq!(m["http_port"], 8080);
        let dual = json!({"type": "http", "name": "gw",
            "host": {"ipv4": "10.0.0.1", "ipv6": "fe80::1", "network": {"tunnel_id": T}}});
        assert!(check_config(&body(dual)).is_ok());
        let both = json!({"type": "http", "name": "gw", "host": {"hostname": "a",
            "ipv4": "10.0.0.1", "network": {"tunnel_id": T}}});
        assert_eq!(check_config(&body(both)).unwrap_err().code, 1001);
        let no_network = json!({"type": "http", "name": "gw", "host": {"hostname": "a"}});
        assert!(check_config(&body(no_network)).is_err());
        let bad_tunnel = json!({"type": "http", "name": "gw",
            "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": "nope"}}});
        assert!(check_config(&body(bad_tunnel)).is_err());
        let bad_port = json!({"type": "http", "name": "gw", "http_port": 0,
            "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": T}}});
        assert!(check_config(&body(bad_port)).is_err());
        let no_type =
            json!({"name": "gw", "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": T}}});
        assert!(check_config(&body(no_type)).is_err());
    }

    #[test]
    fn the_origin_takes_the_services_port_for_the_scheme() {
        let (config, _) = check_config(&body(json!({"type": "http", "name": "gw",
            "http_port": 8080, "host": {"hostname": "gw.ns.svc",
            "resolver_network": {"tunnel_id": T}}})))
        .unwrap();
        let s = VpcService {
            id: "x".into(),
            account: "a".into(),
            config,
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert_eq!(origin(&s, "http").as_deref(), Some("http://gw.ns.svc:8080"));
        assert_eq!(
            origin(&s, "https").as_deref(),
            Some("https://gw.ns.svc:443")
        );
        assert_eq!(s.tunnel_id(), Some(T));
    }
}
