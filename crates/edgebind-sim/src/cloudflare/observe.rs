//! Call statistics and exchange recording, so tests can count API calls (e.g. "a converged
//! resync makes zero writes") and check every request against the official contract.

use std::collections::BTreeMap;
use std::fmt;

/// The path templates the simulator serves, spelled as in the official OpenAPI document
/// (without the `/client/v4` prefix).
pub const PATH_TEMPLATES: &[&str] = &[
    "/user/tokens/verify",
    "/accounts/{account_id}/tokens/verify",
    "/accounts/{account_id}/workers/scripts",
    "/accounts/{account_id}/workers/scripts/{script_name}",
    "/accounts/{account_id}/workers/scripts/{script_name}/versions",
    "/accounts/{account_id}/workers/scripts/{script_name}/versions/{version_id}",
    "/accounts/{account_id}/workers/scripts/{script_name}/deployments",
    "/accounts/{account_id}/workers/scripts/{script_name}/secrets",
    "/accounts/{account_id}/workers/scripts/{script_name}/secrets/{secret_name}",
    "/accounts/{account_id}/workers/scripts/{script_name}/secrets-bulk",
    "/zones/{zone_id}/workers/routes",
    "/zones/{zone_id}/workers/routes/{route_id}",
    "/accounts/{account_id}/cfd_tunnel",
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}",
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations",
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections",
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token",
    "/zones/{zone_id}/dns_records",
    "/zones/{zone_id}/dns_records/{dns_record_id}",
    "/accounts/{account_id}/connectivity/directory/services",
    "/accounts/{account_id}/connectivity/directory/services/{service_id}",
];

/// API prefix of every served path.
pub const API_PREFIX: &str = "/client/v4";

/// The template a request path (with or without `/client/v4`) falls under, if any.
pub fn template_for(path: &str) -> Option<&'static str> {
    let path = path.strip_prefix(API_PREFIX).unwrap_or(path);
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    PATH_TEMPLATES.iter().copied().find(|t| {
        let tsegs: Vec<&str> = t.split('/').collect();
        tsegs.len() == segs.len()
            && tsegs
                .iter()
                .zip(&segs)
                .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
    })
}

/// Counts of calls since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CfStats {
    /// Keyed by `"METHOD /template"`, e.g. `"PUT /accounts/{account_id}/workers/scripts/{script_name}"`;
    /// paths the simulator does not serve count under `"METHOD <unmatched>"`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// GET and HEAD calls.
    pub reads: u64,
    /// Every other method.
    pub writes: u64,
    /// Calls answered 429 by the rate limiter.
    pub rate_limited: u64,
    /// Answers by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
}

impl CfStats {
    /// Calls of `method` (e.g. "GET") on `template` (spec spelling, no `/client/v4`).
    pub fn count(&self, method: &str, template: &str) -> u64 {
        self.by_endpoint
            .get(&format!("{method} {template}"))
            .copied()
            .unwrap_or(0)
    }
    /// Every call counted.
    pub fn total(&self) -> u64 {
        self.reads + self.writes
    }

    pub(crate) fn record(&mut self, method: &str, template: Option<&str>, status: u16) {
        let key = format!("{method} {}", template.unwrap_or("<unmatched>"));
        *self.by_endpoint.entry(key).or_default() += 1;
        if method == "GET" || method == "HEAD" {
            self.reads += 1;
        } else {
            self.writes += 1;
        }
        if status == 429 {
            self.rate_limited += 1;
        }
        *self.by_status.entry(status).or_default() += 1;
    }
}

/// One recorded request and its answer.
#[derive(Clone, Default)]
pub struct Exchange {
    pub method: String,
    /// Full request path, including `/client/v4`.
    pub path: String,
    /// Matching template in spec spelling (no `/client/v4`), if the path is served.
    pub path_template: Option<String>,
    pub query: Option<String>,
    pub request_content_type: Option<String>,
    pub request_body: Vec<u8>,
    pub status: u16,
    pub response_content_type: Option<String>,
    pub response_body: Vec<u8>,
}

// Bodies can hold secret values and tokens: Debug shows sizes only.
impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exchange")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("request_content_type", &self.request_content_type)
            .field("request_body_len", &self.request_body.len())
            .field("status", &self.status)
            .field("response_content_type", &self.response_content_type)
            .field("response_body_len", &self.response_body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_concrete_paths() {
        assert_eq!(
            template_for("/client/v4/accounts/abc/workers/scripts/gw/secrets/K"),
            Some("/accounts/{account_id}/workers/scripts/{script_name}/secrets/{secret_name}")
        );
        assert_eq!(
            template_for("/zones/z/workers/routes"),
            Some("/zones/{zone_id}/workers/routes")
        );
        assert_eq!(
            template_for("/client/v4/accounts/a/workers/scripts/gw/secrets-bulk"),
            Some("/accounts/{account_id}/workers/scripts/{script_name}/secrets-bulk")
        );
        assert_eq!(template_for("/client/v4/nope"), None);
    }
}
