//! The value checks of a CRD's structural schema (type, required, enum, lengths, item and
//! property counts, bounds, pattern), with the real server's field errors.
//!
//! Source: kube-apiserver v1.36 as observed by `tests/integration/real_apiserver.rs` and
//! apiextensions-apiserver's `customResourceStrategy.Validate`: schema errors come first; CEL
//! rules are skipped when one of them is of a type CEL's cost estimate relies on (Required,
//! NotSupported, TooLong, TooMany, TypeInvalid), and a note says so. Null values are not
//! checked: the server prunes them from non-nullable fields before validating.

use regex::Regex;
use serde_json::Value;

/// One field error, as `field.Error` renders it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    pub field: String,
    /// `field.ErrorType`'s reason string, e.g. `FieldValueTooLong`.
    pub reason: &'static str,
    /// The error without the field: `Too long: may not be more than 253 bytes`.
    pub detail: String,
}

impl FieldError {
    /// Whether CEL rules are skipped after this error (their cost bounds may not hold).
    pub fn blocks_cel(&self) -> bool {
        matches!(
            self.reason,
            "FieldValueRequired"
                | "FieldValueNotSupported"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
                | "FieldValueTypeInvalid"
        )
    }
}

const MAX_DEPTH: usize = 64;

/// Checks `obj` (a whole object) against `schema` (its `openAPIV3Schema`); metadata, apiVersion
/// and kind are the server's own business and are not checked here.
pub(crate) fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    if let (Some(props), Some(map)) = (
        schema.get("properties").and_then(Value::as_object),
        obj.as_object(),
    ) {
        for (k, sub) in props {
            if matches!(k.as_str(), "metadata" | "apiVersion" | "kind") {
                continue;
            }
            match map.get(k) {
                Some(v) => check(sub, v, k, &mut out, 0),
                None if required(schema, k) => {
                    out.push(err(k, "FieldValueRequired", "Required value".into()))
                }
                None => {}
            }
        }
    }
    out
}

fn required(schema: &Value, key: &str) -> bool {
    schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(key)))
}

fn err(field: &str, reason: &'static str, detail: String) -> FieldError {
    FieldError {
        field: field.to_string(),
        reason,
        detail,
    }
}

/// Go's `%v` of a JSON value in "Invalid value: X" (strings quoted).
pub(crate) fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn num(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn check(schema: &Value, v: &Value, path: &str, out: &mut Vec<FieldError>, depth: usize) {
    if depth > MAX_DEPTH || v.is_null() {
        return;
    }
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let have = type_name(v);
        let ok = have == want || (want == "number" && have == "integer");
        if !ok {
            out.push(err(
                path,
                "FieldValueTypeInvalid",
                format!(
                    "Invalid value: \"{have}\": {path} in body must be of type {want}: \"{have}\""
                ),
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(shown).collect();
        out.push(err(
            path,
            "FieldValueNotSupported",
            format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                list.join(", ")
            ),
        ));
    }
    match v {
        Value::String(s) => {
            // Lengths count characters (Unicode code points), as kube-openapi's validators do.
            let n = s.chars().count() as f64;
            if let Some(max) = num(schema, "maxLength")
                && n > max
            {
                out.push(err(
                    path,
                    "FieldValueTooLong",
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some(min) = num(schema, "minLength")
                && n < min
            {
                out.push(err(
                    path,
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: {path} in body should be at least {min} chars long",
                        shown(v)
                    ),
                ));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str)
                && Regex::new(p).is_ok_and(|re| !re.is_match(s))
            {
                out.push(err(
                    path,
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: {path} in body should match '{p}'",
                        shown(v)
                    ),
                ));
            }
        }
        Value::Number(x) => {
            let f = x.as_f64().unwrap_or_default();
            if let Some(max) = num(schema, "maximum")
                && f > max
            {
                out.push(err(
                    path,
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {x}: {path} in body should be less than or equal to {max}"
                    ),
                ));
            }
            if let Some(min) = num(schema, "minimum")
                && f < min
            {
                out.push(err(
                    path,
                    "FieldValueInvalid",
                    format!("Invalid value: {x}: {path} in body should be greater than or equal to {min}"),
                ));
            }
        }
        Value::Array(items) => {
            let n = items.len();
            if let Some(max) = num(schema, "maxItems")
                && n as f64 > max
            {
                out.push(err(
                    path,
                    "FieldValueTooMany",
                    format!("Too many: {n}: must have at most {max} items"),
                ));
                // Too many items: the items themselves are not looked at.
                return;
            }
            if let Some(min) = num(schema, "minItems")
                && (n as f64) < min
            {
                out.push(err(
                    path,
                    "FieldValueInvalid",
                    format!("Invalid value: {n}: {path} in body should have at least {min} items"),
                ));
            }
            if let Some(sub) = schema.get("items").filter(|i| i.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    check(sub, item, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        Value::Object(map) => {
            let n = map.len();
            if let Some(max) = num(schema, "maxProperties")
                && n as f64 > max
            {
                out.push(err(
                    path,
                    "FieldValueTooMany",
                    format!("Too many: {n}: must have at most {max} items"),
                ));
                return;
            }
            let props = schema.get("properties").and_then(Value::as_object);
            if let Some(props) = props {
                for (k, sub) in props {
                    match map.get(k) {
                        Some(child) => check(sub, child, &format!("{path}.{k}"), out, depth + 1),
                        None if required(schema, k) => out.push(err(
                            &format!("{path}.{k}"),
                            "FieldValueRequired",
                            "Required value".into(),
                        )),
                        None => {}
                    }
                }
            }
            if let Some(sub) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in map {
                    check(sub, child, &format!("{path}[{k}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounds_and_types_give_the_real_servers_errors() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["size"],
        "properties": {
            "size": {"type": "string"},
            "name": {"type": "string", "minLength": 2, "maxLength": 4},
            "n": {"type": "integer", "minimum": 1, "maximum": 16},
            "list": {"type": "array", "maxItems": 1, "minItems": 1, "items": {"type": "string"}},
            "mode": {"type": "string", "enum": ["Retain", "Delete"]}
        }}}});
        let e = validate(&schema, &json!({"spec": {"size": 5}}));
        assert_eq!(
            e[0].detail,
            "Invalid value: \"integer\": spec.size in body must be of type string: \"integer\""
        );
        let e = validate(&schema, &json!({"spec": {}}));
        assert_eq!(
            (e[0].field.as_str(), e[0].reason),
            ("spec.size", "FieldValueRequired")
        );
        let e = validate(
            &schema,
            &json!({"spec": {"size": "1", "name": "a", "n": 99, "list": [], "mode": "Nope"}}),
        );
        let details: Vec<&str> = e.iter().map(|e| e.detail.as_str()).collect();
        assert!(
            details.contains(
                &"Invalid value: \"a\": spec.name in body should be at least 2 chars long"
            )
        );
        assert!(
            details
                .contains(&"Invalid value: 99: spec.n in body should be less than or equal to 16")
        );
        assert!(
            details.contains(&"Invalid value: 0: spec.list in body should have at least 1 items")
        );
        assert!(
            details
                .contains(&"Unsupported value: \"Nope\": supported values: \"Retain\", \"Delete\"")
        );
        let e = validate(
            &schema,
            &json!({"spec": {"size": "1", "name": "abcde", "list": ["a", "b"]}}),
        );
        assert!(e.iter().all(FieldError::blocks_cel));
        assert_eq!(e.len(), 2);
    }
}
