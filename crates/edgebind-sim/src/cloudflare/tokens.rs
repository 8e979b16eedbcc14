//! API tokens known to the simulator and how a request's `Authorization` header is judged.

use std::fmt;

use axum::http::{HeaderMap, StatusCode, header};
use jiff::Timestamp;

use super::envelope::ApiError;

/// Status of a token as `GET .../tokens/verify` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Disabled,
    Expired,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Disabled => "disabled",
            TokenStatus::Expired => "expired",
        }
    }
}

/// An API token the simulator accepts. It belongs to the account it is configured under.
#[derive(Clone)]
pub struct SimToken {
    /// Token identifier (32 hex), as `verify` returns it.
    pub id: String,
    /// The secret bearer value. Never printed (see the `Debug` impl).
    pub value: String,
    pub status: TokenStatus,
    pub expires_on: Option<Timestamp>,
    pub not_before: Option<Timestamp>,
    /// Account-owned tokens verify at `/accounts/{id}/tokens/verify`, user tokens at
    /// `/user/tokens/verify`; each path answers "Invalid API Token" for the other kind.
    pub account_owned: bool,
    /// Accounts the token may act on; `None` = the account it belongs to.
    pub accounts: Option<Vec<String>>,
    /// Zones the token may act on; `None` = every zone of its accounts.
    pub zones: Option<Vec<String>>,
    /// A token with read permissions only: writes get 403 / 10000.
    pub read_only: bool,
}

impl fmt::Debug for SimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimToken")
            .field("id", &self.id)
            .field("value", &"<redacted>")
            .field("status", &self.status)
            .field("expires_on", &self.expires_on)
            .field("account_owned", &self.account_owned)
            .field("accounts", &self.accounts)
            .field("zones", &self.zones)
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl SimToken {
    /// An active, unscoped, read-write user token with the given bearer value.
    pub fn active(value: impl Into<String>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().simple().to_string(),
            value: value.into(),
            status: TokenStatus::Active,
            expires_on: None,
            not_before: None,
            account_owned: false,
            accounts: None,
            zones: None,
            read_only: false,
        }
    }

    /// The status right now: a token past `expires_on` reads as expired.
    pub fn effective_status(&self, now: Timestamp) -> TokenStatus {
        match (self.status, self.expires_on) {
            (TokenStatus::Active, Some(exp)) if exp <= now => TokenStatus::Expired,
            (s, _) => s,
        }
    }

    /// Whether the token can be used for API calls now (active and inside its validity window).
    pub fn usable(&self, now: Timestamp) -> bool {
        self.effective_status(now) == TokenStatus::Active
            && self.not_before.is_none_or(|nb| nb <= now)
    }
}

/// A token together with the account it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub account: String,
    pub token: SimToken,
}

/// What the `Authorization` header holds.
pub(crate) enum Presented {
    Bearer(String),
}

/// Reads the credentials of a request, with the real API's answers for missing or malformed
/// headers (400 / 9106 and 400 / 6003 + 6111). The legacy global key is not simulated.
pub(crate) fn presented(headers: &HeaderMap) -> Result<Presented, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        if headers.contains_key("x-auth-key") || headers.contains_key("x-auth-email") {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                9103,
                "Unknown X-Auth-Key or X-Auth-Email",
            ));
        }
        return Err(ApiError::bad_request(
            9106,
            "Missing X-Auth-Key, X-Auth-Email or Authorization headers",
        ));
    };
    let malformed = || {
        ApiError::bad_request(6003, "Invalid request headers")
            .with_chain(6111, "Invalid format for Authorization header")
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    let well_formed = !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !scheme.eq_ignore_ascii_case("bearer") || !well_formed {
        return Err(malformed());
    }
    Ok(Presented::Bearer(token.to_string()))
}

/// 401 / 1000, the verify endpoints' answer for a token they do not know.
pub(crate) fn invalid_api_token() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, 1000, "Invalid API Token")
}

/// 401 / 9109 for a known token that is expired, disabled or not yet valid.
pub(crate) fn unusable_token() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, 9109, "Invalid access token")
}
