//! One LINSTOR write, as a value: the reconciler computes a list of them (pure), `plan` prints
//! them, and the client executes them. One way to describe a change.

use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Create,
    Change,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Op {
    pub kind: OpKind,
    pub method: &'static str,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// What the write does, for a person.
    pub summary: String,
}

impl Op {
    pub fn post(
        kind: OpKind,
        path: String,
        body: impl Serialize,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            method: "POST",
            path,
            body: Some(to_value(body)),
            summary: summary.into(),
        }
    }
    pub fn put(path: String, body: impl Serialize, summary: impl Into<String>) -> Self {
        Self {
            kind: OpKind::Change,
            method: "PUT",
            path,
            body: Some(to_value(body)),
            summary: summary.into(),
        }
    }
    pub fn delete(path: String, summary: impl Into<String>) -> Self {
        Self {
            kind: OpKind::Delete,
            method: "DELETE",
            path,
            body: None,
            summary: summary.into(),
        }
    }
}

fn to_value(body: impl Serialize) -> Value {
    // Request types are plain structs of strings, numbers and maps: serialisation cannot fail.
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// Percent-encodes one path segment (LINSTOR names are safe, but user-given resource group and
/// node names pass through here too).
pub(crate) fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
