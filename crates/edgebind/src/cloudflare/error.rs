//! What can go wrong talking to Cloudflare, classified so the reconciler can decide what to do.

use crate::crd::reasons::CloudflareReason;
use std::time::Duration;

/// One `errors[]` entry of the envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ApiMessage {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

/// Envelope codes edgebind acts on (reference §2, §3, §5).
pub(crate) mod code {
    /// Authentication error (wrong or insufficient token, or an account/zone it cannot see).
    pub(crate) const AUTHENTICATION: i64 = 10000;
    /// Verify endpoints: token unknown on this path.
    pub(crate) const INVALID_TOKEN: i64 = 1000;
    /// Known token, expired, disabled or not yet valid.
    pub(crate) const TOKEN_UNUSABLE: i64 = 9109;
    pub(crate) const MISSING_AUTH: i64 = 9106;
    pub(crate) const BAD_AUTH_HEADER: i64 = 6003;
    /// Worker (or route, version) not found.
    pub(crate) const NOT_FOUND: i64 = 10007;
    /// Route for a Worker that does not exist (also a propagation race right after upload).
    pub(crate) const ROUTE_SCRIPT_MISSING: i64 = 10019;
    /// Secret edit refused: the latest version is not the deployed one.
    pub(crate) const LATEST_NOT_DEPLOYED: i64 = 10215;
    /// A tunnel cannot be deleted while cloudflared is connected (reference §11).
    pub(crate) const TUNNEL_CONNECTED: i64 = 1022;
    /// An A, AAAA or CNAME record with that name already exists.
    pub(crate) const DNS_NAME_TAKEN: i64 = 81053;
}

#[derive(Debug, thiserror::Error)]
pub enum CfError {
    /// Connect failure, timeout, broken answer. Retry with backoff.
    #[error("Cloudflare API unreachable: {0}")]
    Unreachable(String),
    /// The token was refused (401/403 with an authentication code). Retrying will not help
    /// until the token or its permissions change.
    #[error("Cloudflare refused the API token for {what} (HTTP {status}, code {code}): {message}")]
    Unauthorized {
        what: String,
        status: u16,
        code: i64,
        message: String,
    },
    /// 429 (token rate limit or per-script write contention); `retry_after` from the headers.
    #[error("Cloudflare rate limit reached for {what}; retry in {retry_after:?}")]
    RateLimited { what: String, retry_after: Duration },
    /// Any other error answer.
    #[error("Cloudflare refused {what} (HTTP {status}): {}", summary(.errors))]
    Api {
        what: String,
        status: u16,
        errors: Vec<ApiMessage>,
    },
    /// An answer that is not what the API promises.
    #[error("unexpected answer from Cloudflare to {what}: {reason}")]
    Decode { what: String, reason: String },
    /// The shared request budget was closed (shutdown).
    #[error("request budget closed")]
    BudgetClosed,
}

fn summary(errors: &[ApiMessage]) -> String {
    if errors.is_empty() {
        return "no error entry".into();
    }
    errors
        .iter()
        .map(|e| format!("{} ({})", e.message, e.code))
        .collect::<Vec<_>>()
        .join("; ")
}

impl CfError {
    pub fn status(&self) -> Option<u16> {
        match self {
            CfError::Unauthorized { status, .. } | CfError::Api { status, .. } => Some(*status),
            CfError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }
    pub fn has_code(&self, c: i64) -> bool {
        match self {
            CfError::Api { errors, .. } => errors.iter().any(|e| e.code == c),
            CfError::Unauthorized { code, .. } => *code == c,
            _ => false,
        }
    }
    /// A missing Worker, route or version.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) || self.has_code(code::NOT_FOUND)
    }
    /// 10215: secrets cannot be edited while the latest version is not fully deployed.
    pub fn is_latest_not_deployed(&self) -> bool {
        self.has_code(code::LATEST_NOT_DEPLOYED)
    }
    /// 10019 (or 10007 on a script call) right after an upload: propagation, retry shortly.
    pub fn is_script_missing(&self) -> bool {
        self.has_code(code::ROUTE_SCRIPT_MISSING) || self.has_code(code::NOT_FOUND)
    }
    /// 1022: the tunnel still has cloudflared connected.
    pub fn is_tunnel_connected(&self) -> bool {
        self.has_code(code::TUNNEL_CONNECTED)
    }
    /// 81053: a DNS record of that name exists (someone else's, or ours not yet recorded).
    pub fn is_dns_name_taken(&self) -> bool {
        self.has_code(code::DNS_NAME_TAKEN)
    }
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, CfError::Unauthorized { .. })
    }
    /// Worth retrying later without a spec change.
    pub fn is_transient(&self) -> bool {
        match self {
            CfError::Unreachable(_) | CfError::RateLimited { .. } | CfError::BudgetClosed => true,
            CfError::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }
    /// Short reason for a condition.
    pub fn reason(&self) -> CloudflareReason {
        match self {
            CfError::Unreachable(_) => CloudflareReason::CloudflareUnreachable,
            CfError::Unauthorized { .. } => CloudflareReason::Unauthorized,
            CfError::RateLimited { .. } => CloudflareReason::RateLimited,
            CfError::Api { status, .. } if *status >= 500 => {
                CloudflareReason::CloudflareUnavailable
            }
            CfError::Api { .. } => CloudflareReason::CloudflareError,
            CfError::Decode { .. } => CloudflareReason::CloudflareError,
            CfError::BudgetClosed => CloudflareReason::ShuttingDown,
        }
    }
}

/// Classifies a non-2xx answer. `body` is the (possibly non-JSON) envelope.
pub(crate) fn classify(what: &str, status: u16, body: &[u8], retry_after: Duration) -> CfError {
    let errors: Vec<ApiMessage> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errors").cloned())
        .and_then(|e| serde_json::from_value(e).ok())
        .unwrap_or_default();
    let auth_code = errors.iter().map(|e| e.code).find(|c| {
        matches!(
            *c,
            code::AUTHENTICATION
                | code::INVALID_TOKEN
                | code::TOKEN_UNUSABLE
                | code::MISSING_AUTH
                | code::BAD_AUTH_HEADER
        )
    });
    if status == 429 {
        return CfError::RateLimited {
            what: what.into(),
            retry_after,
        };
    }
    if matches!(status, 400 | 401 | 403)
        && let Some(c) = auth_code
    {
        let message = errors
            .iter()
            .find(|e| e.code == c)
            .map(|e| e.message.clone())
            .unwrap_or_default();
        return CfError::Unauthorized {
            what: what.into(),
            status,
            code: c,
            message,
        };
    }
    if matches!(status, 401 | 403) {
        return CfError::Unauthorized {
            what: what.into(),
            status,
            code: 0,
            message: summary(&errors),
        };
    }
    CfError::Api {
        what: what.into(),
        status,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"success": false, "errors": [{"code": code, "message": "m"}], "messages": [], "result": null})).unwrap()
    }

    #[test]
    fn classification() {
        let z = Duration::ZERO;
        assert!(classify("x", 403, &body(10000), z).is_unauthorized());
        assert!(classify("x", 401, &body(9109), z).is_unauthorized());
        assert!(classify("x", 400, &body(9106), z).is_unauthorized());
        let nf = classify("x", 404, &body(10007), z);
        assert!(nf.is_not_found() && !nf.is_transient() && nf.is_script_missing());
        assert!(classify("x", 400, &body(10215), z).is_latest_not_deployed());
        assert!(classify("x", 400, &body(10019), z).is_script_missing());
        let rl = classify("x", 429, &body(10429), Duration::from_secs(7));
        assert!(
            matches!(rl, CfError::RateLimited { retry_after, .. } if retry_after == Duration::from_secs(7))
        );
        assert!(classify("x", 503, b"<html>bad gateway</html>", z).is_transient());
        let bad = classify("x", 400, &body(10021), z);
        assert!(!bad.is_transient() && !bad.is_unauthorized());
        assert!(bad.to_string().contains("10021"), "{bad}");
    }
}
