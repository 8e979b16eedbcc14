//! Worker routes of a zone: pattern rules, one route per pattern, script existence.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};

use super::envelope::{ApiError, ApiResult, ok};
use super::model::Route;
use super::{CloudflareSim, lock};

fn pattern_error(msg: &str) -> ApiError {
    ApiError::bad_request(10022, msg.to_string())
}

/// Checks a route pattern (`[scheme://]host[/path]`): `*` only at the start of the host and
/// the end of the path, no query string, and the host inside the zone (10022 otherwise).
pub(crate) fn validate_pattern(pattern: &str, zone_name: &str) -> Result<(), ApiError> {
    let rest = if let Some((scheme, rest)) = pattern.split_once("://") {
        if scheme != "http" && scheme != "https" {
            return Err(pattern_error("Route pattern has an unsupported scheme"));
        }
        rest
    } else {
        pattern
    };
    if rest.is_empty() || rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err(pattern_error(
            "Route pattern must not be empty or contain a query string",
        ));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let starred = host.starts_with('*');
    let bare = host.trim_start_matches('*');
    if bare.contains('*') || host.matches('*').count() > 1 {
        return Err(pattern_error(
            "Route pattern wildcard is only allowed at the start of the host",
        ));
    }
    if path.trim_end_matches('*').contains('*') || path.matches('*').count() > 1 {
        return Err(pattern_error(
            "Route pattern wildcard is only allowed at the end of the path",
        ));
    }
    let bare = bare.to_ascii_lowercase();
    let zone = zone_name.to_ascii_lowercase();
    let in_zone =
        bare == zone || bare.ends_with(&format!(".{zone}")) || (starred && bare.ends_with(&zone));
    if !in_zone {
        return Err(pattern_error("Route pattern must include zone name"));
    }
    Ok(())
}

/// The form of a pattern used to detect duplicates: hosts compare case-insensitively.
fn normalized(pattern: &str) -> String {
    let (scheme, rest) = match pattern.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), pattern),
    };
    match rest.find('/') {
        Some(i) => format!("{scheme}{}{}", rest[..i].to_ascii_lowercase(), &rest[i..]),
        None => format!("{scheme}{}", rest.to_ascii_lowercase()),
    }
}

struct RouteBody {
    pattern: String,
    script: Option<String>,
}

fn parse_body(body: &Bytes) -> Result<RouteBody, ApiError> {
    let req: Value = serde_json::from_slice(body).map_err(|_| ApiError::malformed_json())?;
    let pattern = req
        .get("pattern")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(10021, "pattern is required"))?
        .to_string();
    let script = match req.get("script") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request(10021, "script must be a string")),
    };
    Ok(RouteBody { pattern, script })
}

/// Validates a create/update against the zone: pattern, uniqueness (409 / 10020; the code is
/// the one commonly cited, not confirmed by Cloudflare docs), and that the Worker exists
/// (400 / 10019, also during the propagation fault right after an upload).
fn check(
    sim: &CloudflareSim,
    zone_id: &str,
    body: &RouteBody,
    except: Option<&str>,
) -> Result<(), ApiError> {
    let mut st = lock(&sim.inner.state);
    let zone = st.zone_mut(zone_id)?;
    validate_pattern(&body.pattern, &zone.name)?;
    let norm = normalized(&body.pattern);
    if zone
        .routes
        .iter()
        .any(|r| Some(r.id.as_str()) != except && normalized(&r.pattern) == norm)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            10020,
            "A route with the same pattern already exists in this zone",
        ));
    }
    let account = zone.account.clone();
    if let Some(script) = &body.script
        && st.visible_script(&account, script).is_err()
    {
        return Err(ApiError::bad_request(
            10019,
            "Cannot configure a route for a Worker which does not exist",
        ));
    }
    Ok(())
}

/// `GET /zones/{z}/workers/routes` (not paginated).
pub(crate) async fn list_routes(
    State(sim): State<CloudflareSim>,
    Path(zone): Path<String>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let zone = st.zone_mut(&zone)?;
    Ok(ok(Value::Array(
        zone.routes.iter().map(Route::json).collect(),
    )))
}

/// `POST /zones/{z}/workers/routes`.
pub(crate) async fn create_route(
    State(sim): State<CloudflareSim>,
    Path(zone): Path<String>,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    check(&sim, &zone, &body, None)?;
    let route = Route {
        id: uuid::Uuid::new_v4().simple().to_string(),
        pattern: body.pattern,
        script: body.script,
    };
    let out = route.json();
    lock(&sim.inner.state).zone_mut(&zone)?.routes.push(route);
    Ok(ok(out))
}

fn route_not_found() -> ApiError {
    ApiError::not_found(10007, "Route not found")
}

/// `GET /zones/{z}/workers/routes/{id}`.
pub(crate) async fn get_route(
    State(sim): State<CloudflareSim>,
    Path((zone, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let zone = st.zone_mut(&zone)?;
    zone.routes
        .iter()
        .find(|r| r.id == id)
        .map(|r| ok(r.json()))
        .ok_or_else(route_not_found)
}

/// `PUT /zones/{z}/workers/routes/{id}`: full replace of pattern and script.
pub(crate) async fn update_route(
    State(sim): State<CloudflareSim>,
    Path((zone, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let body = parse_body(&body)?;
    if !lock(&sim.inner.state)
        .zone_mut(&zone)?
        .routes
        .iter()
        .any(|r| r.id == id)
    {
        return Err(route_not_found());
    }
    check(&sim, &zone, &body, Some(&id))?;
    let mut st = lock(&sim.inner.state);
    let route = st
        .zone_mut(&zone)?
        .routes
        .iter_mut()
        .find(|r| r.id == id)
        .ok_or_else(route_not_found)?;
    route.pattern = body.pattern;
    route.script = body.script;
    Ok(ok(route.json()))
}

/// `DELETE /zones/{z}/workers/routes/{id}`: result `{id}`.
pub(crate) async fn delete_route(
    State(sim): State<CloudflareSim>,
    Path((zone, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let zone = st.zone_mut(&zone)?;
    let before = zone.routes.len();
    zone.routes.retain(|r| r.id != id);
    if zone.routes.len() == before {
        return Err(route_not_found());
    }
    Ok(ok(json!({"id": id})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_rules() {
        for ok in [
            "example.com/*",
            "api.example.com/*",
            "*.example.com/*",
            "*example.com/*",
            "https://example.com/api/*",
            "EXAMPLE.com/a",
        ] {
            assert!(validate_pattern(ok, "example.com").is_ok(), "{ok}");
        }
        for bad in [
            "other.com/*",
            "example.com/*.jpg",
            "example.com/a?x=1",
            "ex*ample.com/*",
            "ftp://example.com/*",
            "",
            "*ample.com/*",
        ] {
            let err = validate_pattern(bad, "example.com").expect_err(bad);
            assert_eq!(err.code, 10022, "{bad}");
        }
    }

    #[test]
    fn duplicates_ignore_host_case_only() {
        assert_eq!(
            normalized("API.example.com/X"),
            normalized("api.example.com/X")
        );
        assert_ne!(
            normalized("api.example.com/X"),
            normalized("api.example.com/x")
        );
    }
}
