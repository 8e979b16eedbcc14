//! What can go wrong talking to LINSTOR, classified so the reconciler can decide what to do.

use super::rc::ApiCallRc;

#[derive(Debug, thiserror::Error)]
pub enum LinstorError {
    /// No controller URL answered (connect refused, TLS failure, timeout). Retry with backoff.
    #[error("LINSTOR controller unreachable ({url}): {reason}")]
    Unreachable { url: String, reason: String },
    /// The controller answered with error entries.
    #[error("LINSTOR refused {method} {path} (HTTP {status}): {}", summary(.rcs))]
    Api {
        method: String,
        path: String,
        status: u16,
        rcs: Vec<ApiCallRc>,
    },
    /// The path does not exist on this server version (not a missing object).
    #[error("LINSTOR does not know {method} {path}; the controller may be too old")]
    UnknownPath { method: String, path: String },
    /// 401/403: credentials missing or refused.
    #[error(
        "LINSTOR refused the credentials (HTTP {status}); check the backend's tls and bearerToken Secrets"
    )]
    Unauthorized { status: u16 },
    /// An answer that is not what the API promises.
    #[error("unexpected answer from LINSTOR to {what}: {reason}")]
    Decode { what: String, reason: String },
    /// The shared request budget was closed (shutdown).
    #[error("request budget closed")]
    BudgetClosed,
}

fn summary(rcs: &[ApiCallRc]) -> String {
    let errs: Vec<String> = rcs
        .iter()
        .filter(|r| r.is_error())
        .map(|r| {
            let mut s = r.message.clone();
            if let Some(c) = &r.cause {
                s.push_str(&format!(" (cause: {c})"));
            }
            if !r.error_report_ids.is_empty() {
                s.push_str(&format!(
                    " [error reports: {}]",
                    r.error_report_ids.join(", ")
                ));
            }
            s
        })
        .collect();
    if errs.is_empty() {
        "no error entry".into()
    } else {
        errs.join("; ")
    }
}

impl LinstorError {
    fn rcs(&self) -> &[ApiCallRc] {
        match self {
            LinstorError::Api { rcs, .. } => rcs,
            _ => &[],
        }
    }
    /// "Already exists" (any `FAIL_EXISTS_*`): a concurrent creator won; re-read.
    pub fn is_exists(&self) -> bool {
        self.rcs().iter().any(|r| r.is_exists())
    }
    pub fn has_code(&self, code: u64) -> bool {
        self.rcs().iter().any(|r| r.is_error_code(code))
    }
    /// A missing object (404 with `FAIL_NOT_FOUND_*`), never an unknown path.
    pub fn is_not_found(&self) -> bool {
        match self {
            LinstorError::Api { status, rcs, .. } => {
                rcs.iter().any(|r| r.is_not_found()) || (*status == 404 && rcs.is_empty())
            }
            _ => false,
        }
    }
    /// Worth retrying later without a spec change.
    pub fn is_transient(&self) -> bool {
        match self {
            LinstorError::Unreachable { .. } | LinstorError::BudgetClosed => true,
            LinstorError::Api { status, rcs, .. } => {
                *status >= 500 && !rcs.iter().any(|r| r.is_parse_error())
            }
            _ => false,
        }
    }
    /// Error report ids the controller wrote, for the condition message.
    pub fn error_report_ids(&self) -> Vec<String> {
        self.rcs()
            .iter()
            .flat_map(|r| r.error_report_ids.clone())
            .collect()
    }
}
