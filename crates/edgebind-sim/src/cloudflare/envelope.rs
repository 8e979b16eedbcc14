//! The Cloudflare API v4 response envelope and error responses.
//!
//! Every JSON answer is `{success, errors, messages, result[, result_info]}`; `success:false`
//! always comes with a non-2xx status (reference §1).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A successful envelope around `result`.
pub(crate) fn ok(result: Value) -> Response {
    json_response(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

/// A successful envelope with pagination info.
pub(crate) fn ok_with_info(result: Value, info: Value) -> Response {
    json_response(
        StatusCode::OK,
        json!({"success": true, "errors": [], "messages": [], "result": result, "result_info": info}),
    )
}

/// One page of `all` as `?page=&per_page=` ask (`per_page` defaults to `default` and is kept
/// within 1..=`max`), in the paginated envelope with its `result_info`.
pub(crate) fn paged(
    all: Vec<Value>,
    q: &std::collections::HashMap<String, String>,
    default: usize,
    max: usize,
) -> Response {
    let num = |k: &str| q.get(k).and_then(|p| p.parse::<usize>().ok());
    let per_page = num("per_page").unwrap_or(default).clamp(1, max);
    let page = num("page").unwrap_or(1).max(1);
    let total = all.len();
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let info = json!({"page": page, "per_page": per_page, "count": items.len(),
                      "total_count": total, "total_pages": total.div_ceil(per_page)});
    ok_with_info(Value::Array(items), info)
}

pub(crate) fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An API failure: HTTP status plus the `errors[]` entries of the envelope.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    /// Optional nested causes, as the real API sends for header errors (`error_chain`).
    pub chain: Vec<(u32, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            chain: Vec::new(),
        }
    }
    pub fn bad_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn with_chain(mut self, code: u32, message: impl Into<String>) -> Self {
        self.chain.push((code, message.into()));
        self
    }

    /// 403 / 10000: what Cloudflare answers for a wrong or insufficient token, and for an
    /// account or zone the token cannot see (the API does not reveal whether it exists).
    pub fn authentication() -> Self {
        Self::new(StatusCode::FORBIDDEN, 10000, "Authentication error")
    }
    /// 404 / 10007 for a Worker that does not exist (or is not visible yet).
    pub fn script_not_found() -> Self {
        Self::not_found(10007, "This Worker does not exist on your account.")
    }
    /// 400 / 6007 for a body that is not JSON.
    pub fn malformed_json() -> Self {
        Self::bad_request(6007, "Malformed JSON in request body")
    }
    pub fn internal(status: StatusCode) -> Self {
        Self::new(status, 10002, "Unexpected internal server error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({"code": self.code, "message": self.message});
        if !self.chain.is_empty() {
            err["error_chain"] = Value::Array(
                self.chain
                    .iter()
                    .map(|(c, m)| json!({"code": c, "message": m}))
                    .collect(),
            );
        }
        json_response(
            self.status,
            json!({"success": false, "errors": [err], "messages": [], "result": null}),
        )
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;
