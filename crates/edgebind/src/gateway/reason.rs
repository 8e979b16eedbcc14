//! Reason codes of the edge protocol (docs/edge-protocol.md §6) that the gateway answers with.

use http::StatusCode;

/// Every refusal the gateway can give. `code()` is the wire string; `status()` the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    SigMissing,
    SigMultiple,
    SigTag,
    KeyUnknown,
    SigExpired,
    SigFuture,
    SigWindow,
    SigInvalid,
    DigestMismatch,
    NonceReplayed,
    IdentityInvalid,
    /// The verified key may not sign for the namespace the request names.
    KeyScope,
    /// A caller-chosen label key that policies select on, not required by the allowing policy.
    LabelReserved,
    /// The gateway's own check of the caller's token failed (`gateway::token`).
    TokenInvalid,
    /// The issuer's JWK Set could not be fetched for that check.
    JwksUnavailable,
    RouteUnknown,
    MethodNotAllowed,
    RequestInvalid,
    ContentTypeUnsupported,
    BodyTooLarge,
    PolicyDenied,
    PolicyConditionError,
    PolicyNoMatch,
    RateLimited,
    NotFound,
    AlreadyExists,
    SizeShrink,
    /// The Kubernetes API failed or timed out; not a protocol code, answered as 503.
    BackendUnavailable,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::SigMissing => "sig_missing",
            Reason::SigMultiple => "sig_multiple",
            Reason::SigTag => "sig_tag",
            Reason::KeyUnknown => "key_unknown",
            Reason::SigExpired => "sig_expired",
            Reason::SigFuture => "sig_future",
            Reason::SigWindow => "sig_window",
            Reason::SigInvalid => "sig_invalid",
            Reason::DigestMismatch => "digest_mismatch",
            Reason::NonceReplayed => "nonce_replayed",
            Reason::IdentityInvalid => "identity_invalid",
            Reason::KeyScope => "key_scope",
            Reason::LabelReserved => "label_reserved",
            Reason::TokenInvalid => "token_invalid",
            Reason::JwksUnavailable => "jwks_unavailable",
            Reason::RouteUnknown => "route_unknown",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::RequestInvalid => "request_invalid",
            Reason::ContentTypeUnsupported => "content_type_unsupported",
            Reason::BodyTooLarge => "body_too_large",
            Reason::PolicyDenied => "policy_denied",
            Reason::PolicyConditionError => "policy_condition_error",
            Reason::PolicyNoMatch => "policy_no_match",
            Reason::RateLimited => "rate_limited",
            Reason::NotFound => "not_found",
            Reason::AlreadyExists => "already_exists",
            Reason::SizeShrink => "size_shrink",
            Reason::BackendUnavailable => "backend_unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        use Reason::*;
        match self {
            SigMissing | SigMultiple | SigTag | KeyUnknown | SigExpired | SigFuture | SigWindow
            | SigInvalid | DigestMismatch | NonceReplayed | IdentityInvalid | TokenInvalid => {
                StatusCode::UNAUTHORIZED
            }
            RouteUnknown | NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestInvalid => StatusCode::BAD_REQUEST,
            ContentTypeUnsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            KeyScope | LabelReserved | PolicyDenied | PolicyConditionError | PolicyNoMatch => {
                StatusCode::FORBIDDEN
            }
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            AlreadyExists => StatusCode::CONFLICT,
            SizeShrink => StatusCode::UNPROCESSABLE_ENTITY,
            BackendUnavailable | JwksUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A generic human message. 401s say nothing beyond the code (§6).
    pub fn message(self) -> &'static str {
        use Reason::*;
        match self {
            SigMissing | SigMultiple | SigTag | KeyUnknown | SigExpired | SigFuture | SigWindow
            | SigInvalid | DigestMismatch | NonceReplayed | IdentityInvalid | TokenInvalid => {
                "the request is not authenticated"
            }
            KeyScope => "the edge key may not act on this namespace",
            LabelReserved => {
                "a label that policies select on may be set only where the allowing policy requires it"
            }
            RouteUnknown => "no such route",
            MethodNotAllowed => "method not allowed on this route",
            RequestInvalid => "the request body or parameters are invalid",
            ContentTypeUnsupported => "only application/json bodies are accepted",
            BodyTooLarge => "the body is larger than 65536 bytes",
            PolicyDenied => "a policy denies this action",
            PolicyConditionError => "a policy condition could not be evaluated",
            PolicyNoMatch => "no policy allows this action",
            RateLimited => "rate limit exceeded",
            NotFound => "not found",
            AlreadyExists => "the object already exists",
            SizeShrink => "a volume can only grow",
            BackendUnavailable => "the cluster API is unavailable, retry later",
            JwksUnavailable => "the identity provider's keys are unavailable, retry later",
        }
    }
}
