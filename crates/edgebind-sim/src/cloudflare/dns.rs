//! DNS records of a zone, as far as a tunnel needs them: list (with the exact-match filters),
//! create, delete. Records other than CNAME are stored as given.
//!
//! Sources: `specs/cloudflare-workers.yaml` (dns-records, api-schemas cca3064f: list, create and
//! delete are the operations of the subset; there is no single-record GET in it); reference
//! `docs/reference/cloudflare.md` §11 (a tunnel CNAME `<id>.cfargotunnel.com` must be proxied).
//! Error answers: a CNAME beside an A, AAAA or CNAME of the same name (or one of those beside a
//! CNAME) 400/81053 "An A, AAAA, or CNAME record with that host already exists." and an unknown
//! record 404/81044 (both as commonly reported from the real API, not in the vendored
//! document; the rule itself: https://developers.cloudflare.com/dns/manage-dns-records/troubleshooting/records-with-same-name/);
//! comments longer than 100 characters, the Free plan's limit (the limit that broke
//! comment-based ownership in STRRL/cloudflare-tunnel-ingress-controller#257), and a name
//! outside the zone 400/1004 (code chosen, not confirmed).

use axum::extract::{Path, RawQuery, State};
use bytes::Bytes;
use serde_json::{Value, json};

use super::envelope::{ApiError, ApiResult, ok, paged};
use super::model::now_rfc3339;
use super::{CloudflareSim, lock, query_map};

/// Comment length the Free plan allows (paid plans allow more; the simulator is strict).
pub(crate) const COMMENT_MAX: usize = 100;

#[derive(Debug, Clone)]
pub(crate) struct DnsRecord {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub content: String,
    pub proxied: bool,
    pub ttl: u64,
    pub comment: Option<String>,
    pub created_on: String,
}

impl DnsRecord {
    /// The record as the API shows it; an unset comment is left out (typed string, not
    /// nullable, in the document).
    pub fn json(&self, zone_id: &str, zone_name: &str) -> Value {
        let mut v = json!({
            "id": self.id, "zone_id": zone_id, "zone_name": zone_name,
            "name": self.name, "type": self.kind, "content": self.content,
            "proxiable": true, "proxied": self.proxied, "ttl": self.ttl,
            "comment": self.comment, "tags": [], "settings": {}, "meta": {},
            "created_on": self.created_on, "modified_on": self.created_on,
        });
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
        v
    }
}

fn validation(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(1004, "DNS Validation Error").with_chain(1004, msg)
}

/// The record's full name: `@` is the apex, a name without the zone gets it appended.
fn full_name(name: &str, zone: &str) -> Result<String, ApiError> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.to_ascii_lowercase();
    if name.is_empty() {
        return Err(validation("name is required"));
    }
    if name == "@" {
        return Ok(zone);
    }
    if name == zone || name.ends_with(&format!(".{zone}")) {
        return Ok(name);
    }
    if name.contains('.') && !name.ends_with(&zone) {
        // A dotted name that is not under the zone is taken as relative by the real API; the
        // simulator is stricter so a wrong zone shows up in tests.
        return Err(validation(format!("{name} is not in zone {zone}")));
    }
    Ok(format!("{name}.{zone}"))
}

/// `GET /zones/{z}/dns_records`: filters `type`, `name` (exact, full name), `content`,
/// `comment`; paginated (`per_page` default 100).
pub(crate) async fn list_records(
    State(sim): State<CloudflareSim>,
    Path(zone_id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = query_map(q);
    let mut st = lock(&sim.inner.state);
    let zone = st.zone_mut(&zone_id)?;
    let zname = zone.name.clone();
    let name = q
        .get("name")
        .or_else(|| q.get("name.exact"))
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
    let comment = q.get("comment").or_else(|| q.get("comment.exact"));
    let all: Vec<Value> = zone
        .dns
        .iter()
        .filter(|r| {
            q.get("type")
                .is_none_or(|t| t.eq_ignore_ascii_case(&r.kind))
        })
        .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
        .filter(|r| q.get("content").is_none_or(|c| *c == r.content))
        .filter(|r| {
            comment.is_none_or(|c| {
                r.comment
                    .as_deref()
                    .is_some_and(|rc| rc.eq_ignore_ascii_case(c))
            })
        })
        .map(|r| r.json(&zone_id, &zname))
        .collect();
    Ok(paged(all, &q, 100, 5_000_000))
}

/// `POST /zones/{z}/dns_records`.
pub(crate) async fn create_record(
    State(sim): State<CloudflareSim>,
    Path(zone_id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let req: Value = serde_json::from_slice(&body).map_err(|_| ApiError::malformed_json())?;
    let field = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = field("type").to_ascii_uppercase();
    if kind.is_empty() {
        return Err(validation("type is required"));
    }
    let content = field("content");
    if content.is_empty() {
        return Err(validation("content is required"));
    }
    let comment = req
        .get("comment")
        .and_then(Value::as_str)
        .map(str::to_string);
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > COMMENT_MAX)
    {
        return Err(validation(format!(
            "comment must be at most {COMMENT_MAX} characters"
        )));
    }
    let ttl = req.get("ttl").and_then(Value::as_u64).unwrap_or(1);
    if ttl != 1 && !(60..=86400).contains(&ttl) {
        return Err(validation(
            "ttl must be 1 (automatic) or between 60 and 86400",
        ));
    }
    let mut st = lock(&sim.inner.state);
    let zone = st.zone_mut(&zone_id)?;
    let name = full_name(&field("name"), &zone.name)?;
    if kind == "CNAME" && content.trim_end_matches('.').eq_ignore_ascii_case(&name) {
        return Err(validation("a CNAME must not point at itself"));
    }
    let address = |k: &str| matches!(k, "A" | "AAAA" | "CNAME");
    let clash = zone.dns.iter().any(|r| {
        r.name == name
            && ((kind == "CNAME" && address(&r.kind)) || (r.kind == "CNAME" && address(&kind)))
    });
    if clash {
        return Err(ApiError::bad_request(
            81053,
            "An A, AAAA, or CNAME record with that host already exists.",
        ));
    }
    let rec = DnsRecord {
        id: uuid::Uuid::new_v4().simple().to_string(),
        kind,
        name,
        content,
        proxied: req.get("proxied").and_then(Value::as_bool).unwrap_or(false),
        ttl,
        comment,
        created_on: now_rfc3339(),
    };
    let out = rec.json(&zone_id, &zone.name);
    zone.dns.push(rec);
    Ok(ok(out))
}

/// `DELETE /zones/{z}/dns_records/{id}`: result `{id}`.
pub(crate) async fn delete_record(
    State(sim): State<CloudflareSim>,
    Path((zone_id, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = lock(&sim.inner.state);
    let zone = st.zone_mut(&zone_id)?;
    let before = zone.dns.len();
    zone.dns.retain(|r| r.id != id);
    if zone.dns.len() == before {
        return Err(ApiError::not_found(81044, "Record does not exist."));
    }
    Ok(ok(json!({"id": id})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_full_and_kept_in_the_zone() {
        assert_eq!(full_name("gw", "example.com").unwrap(), "gw.example.com");
        assert_eq!(
            full_name("GW.Example.com.", "example.com").unwrap(),
            "gw.example.com"
        );
        assert_eq!(full_name("@", "example.com").unwrap(), "example.com");
        assert!(full_name("gw.other.org", "example.com").is_err());
        assert!(full_name("", "example.com").is_err());
    }
}
