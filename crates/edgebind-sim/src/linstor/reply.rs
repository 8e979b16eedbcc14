//! ApiCallRc entries and the HTTP responses built from them, plus Jackson-like `NON_EMPTY`
//! output (empty strings, lists, maps and nulls are omitted).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use super::rc;

/// One ApiCallRc entry.
#[derive(Debug, Clone)]
pub struct Rc {
    pub ret_code: i64,
    pub message: String,
    /// Optional parts, boxed to keep `Result<_, Rc>` small.
    pub more: Box<RcMore>,
}

#[derive(Debug, Clone, Default)]
pub struct RcMore {
    pub cause: Option<String>,
    pub details: Option<String>,
    pub correction: Option<String>,
    pub obj_refs: BTreeMap<String, String>,
    pub error_report_ids: Vec<String>,
}

impl Rc {
    pub fn new(ret_code: i64, message: impl Into<String>) -> Self {
        Rc {
            ret_code,
            message: message.into(),
            more: Box::default(),
        }
    }

    pub fn obj(mut self, key: &str, value: impl Into<String>) -> Self {
        self.more.obj_refs.insert(key.to_string(), value.into());
        self
    }

    pub fn cause(mut self, s: impl Into<String>) -> Self {
        self.more.cause = Some(s.into());
        self
    }

    pub fn details(mut self, s: impl Into<String>) -> Self {
        self.more.details = Some(s.into());
        self
    }

    pub fn correction(mut self, s: impl Into<String>) -> Self {
        self.more.correction = Some(s.into());
        self
    }

    /// Attaches an error report id (internal errors only).
    pub fn report(mut self, id: String) -> Self {
        self.more.error_report_ids.push(id);
        self
    }

    pub fn is_error(&self) -> bool {
        rc::is_error(self.ret_code)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "ret_code": self.ret_code,
            "message": self.message,
            "cause": self.more.cause,
            "details": self.more.details,
            "correction": self.more.correction,
            "obj_refs": self.more.obj_refs,
            "error_report_ids": self.more.error_report_ids,
            "created_at": now_iso(),
        });
        prune(&mut v);
        v
    }
}

/// Outcome of a handler: either a body to send or an ApiCallRc list that decides the status.
pub type Outcome = Result<Response, Vec<Rc>>;

pub fn now_iso() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3f+00:00")
        .to_string()
}

pub fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Removes nulls, empty strings, empty arrays and empty objects, recursively (Jackson NON_EMPTY).
pub fn prune(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for val in map.values_mut() {
                prune(val);
            }
            map.retain(|_, val| !is_empty(val));
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"[]".to_vec());
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A GET body (object or list), pruned like the controller's serializer.
pub fn ok_json(mut body: Value) -> Response {
    prune(&mut body);
    json_response(StatusCode::OK, &body)
}

/// An ApiCallRc list; the first error entry decides the status, else `success`.
pub fn rc_list(success: StatusCode, rcs: &[Rc]) -> Response {
    let status = rcs
        .iter()
        .find(|r| r.is_error())
        .and_then(|r| StatusCode::from_u16(rc::http_status(r.ret_code)).ok())
        .unwrap_or(success);
    let body = Value::Array(rcs.iter().map(Rc::to_json).collect());
    json_response(status, &body)
}

/// Body for unknown paths and wrong methods: FAIL_UNKNOWN_ERROR, not a FAIL_NOT_FOUND_* code.
pub fn path_not_found(status: StatusCode, path: &str) -> Response {
    let rc = Rc::new(
        (rc::FAIL_UNKNOWN_ERROR | rc::MASK_ERROR) as i64,
        format!("Path '{path}' not found on server."),
    );
    json_response(status, &Value::Array(vec![rc.to_json()]))
}

/// A Jackson mapping error that escapes the endpoint: PUT endpoints declare `throws IOException`
/// instead of catching it (e.g. `ResourceDefinitions.modifyResourceDefinition`), so
/// `LinstorMapper` answers HTTP **500** with `API_CALL_PARSE_ERROR` and an error report
/// (linstor-server `controller/src/main/java/com/linbit/linstor/api/rest/v1/config/
/// GrizzlyHttpService.java` l.618–700, @3e9306a9). POST endpoints catch it: 400.
pub fn mapper_parse_error(detail: &str, report_id: String) -> Response {
    let rc = parse_error(detail).report(report_id);
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &Value::Array(vec![rc.to_json()]),
    )
}

/// An existing path without that method (e.g. PUT on a snapshot before REST API 1.26):
/// `LinstorMapper`'s `NotAllowedException` branch, HTTP 405.
pub fn method_not_allowed(method: &str, path: &str) -> Response {
    let rc = Rc::new(
        (rc::FAIL_UNKNOWN_ERROR | rc::MASK_ERROR) as i64,
        format!("Method '{method}' not allowed on path '{}'.", path),
    );
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &Value::Array(vec![rc.to_json()]),
    )
}

/// Parse error body, as the REST layer answers when Jackson cannot map the request.
pub fn parse_error(detail: &str) -> Rc {
    Rc::new(
        rc::API_CALL_PARSE_ERROR as i64,
        "Unable to parse input json.",
    )
    .details(detail)
}

pub fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}
