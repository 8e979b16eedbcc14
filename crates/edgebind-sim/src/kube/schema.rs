//! What a CRD's OpenAPI schema makes the server do: defaulting, pruning of unknown fields,
//! list-map keys for server-side apply, and CEL (`x-kubernetes-validations`) rules.

use std::collections::HashMap;

use kube::core::cel::{CompiledSchema, compile_schema};
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::openapi::{self, FieldError};

/// A path into an object as the merge code walks it: property names, `[]` for array items and
/// `*` for map values (`additionalProperties`).
pub(crate) type SchemaPath = Vec<String>;

pub(crate) const ITEMS: &str = "[]";
pub(crate) const MAP_VALUES: &str = "*";

#[derive(Debug)]
pub(crate) struct SchemaInfo {
    raw: Value,
    list_maps: HashMap<SchemaPath, Vec<String>>,
    /// Compiled once at registration; `None` when the schema holds no CEL rules.
    cel: Option<CompiledSchema>,
}

impl SchemaInfo {
    pub fn new(raw: Value) -> Self {
        let mut list_maps = HashMap::new();
        collect_list_maps(&raw, &mut Vec::new(), &mut list_maps, 0);
        let has_rules = raw.to_string().contains("x-kubernetes-validations");
        let cel = has_rules.then(|| compile_schema(&raw));
        SchemaInfo {
            raw,
            list_maps,
            cel,
        }
    }

    /// Keys of an `x-kubernetes-list-type: map` list at `path`, if the schema declares one.
    pub fn list_map_keys(&self, path: &[String]) -> Option<&Vec<String>> {
        self.list_maps.get(path)
    }

    /// Applies schema defaults and drops fields the schema does not know, as the real server
    /// does for structural schemas before storing.
    pub fn default_and_prune(&self, obj: &Value) -> Value {
        let mut out = kube::core::cel::apply_defaults(&self.raw, obj);
        prune(&self.raw, &mut out, true, 0);
        out
    }

    /// Checks the schema's value constraints, then the CEL rules (`old` is given on updates so
    /// transition rules with `oldSelf` apply), as kube-apiserver does (see `openapi`).
    pub fn validate(
        &self,
        kind_group: &str,
        name: &str,
        obj: &Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let mut errors = openapi::validate(&self.raw, obj);
        if errors.iter().any(FieldError::blocks_cel) {
            errors.push(FieldError {
                field: "<nil>".into(),
                reason: "FieldValueInvalid",
                detail: "Invalid value: null: some validation rules were not checked because the \
                         object was invalid; correct the existing errors to complete validation"
                    .into(),
            });
        } else if let Some(compiled) = &self.cel
            && let Err(cel) = kube::core::cel::validate_compiled(compiled, obj, old)
        {
            // kube-apiserver 1.36 shows the value when the rule is on a scalar, nothing for an
            // object or a list.
            errors.extend(cel.iter().map(|e| FieldError {
                field: e.field_path.clone(),
                reason: "FieldValueInvalid",
                detail: match at_path(obj, &e.field_path) {
                    Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                        format!("Invalid value: {}: {}", openapi::shown(v), e.message)
                    }
                    _ => format!("Invalid value: {}", e.message),
                },
            }));
        }
        if errors.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.detail))
            .collect();
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| serde_json::json!({"reason": e.reason, "message": e.detail, "field": e.field}))
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        Err(
            ApiError::invalid(format!("{kind_group} \"{name}\" is invalid: {joined}"))
                .with_details(serde_json::json!({ "name": name, "causes": causes })),
        )
    }
}

/// The value at a field path such as `spec.placement.placeCount` or `spec.routes[0]`.
fn at_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.split('.') {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = cur.get(key)?;
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

const MAX_DEPTH: usize = 64;

fn collect_list_maps(
    schema: &Value,
    path: &mut SchemaPath,
    out: &mut HashMap<SchemaPath, Vec<String>>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys: Vec<String> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        if !keys.is_empty() {
            out.insert(path.clone(), keys);
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            path.push(k.clone());
            collect_list_maps(sub, path, out, depth + 1);
            path.pop();
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
        path.push(ITEMS.to_string());
        collect_list_maps(items, path, out, depth + 1);
        path.pop();
    }
    if let Some(addl) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        path.push(MAP_VALUES.to_string());
        collect_list_maps(addl, path, out, depth + 1);
        path.pop();
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Structural pruning: unknown object fields are dropped unless the schema preserves them.
fn prune(schema: &Value, value: &mut Value, root: bool, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => prune_object(schema, map, root, depth),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|i| i.is_object()) {
                for item in items {
                    prune(item_schema, item, false, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn prune_object(schema: &Value, map: &mut Map<String, Value>, root: bool, depth: usize) {
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
    let props = schema.get("properties").and_then(Value::as_object);
    let addl = schema.get("additionalProperties");
    let is_object_schema = schema.get("type").and_then(Value::as_str) == Some("object");
    let mut drop = Vec::new();
    for (k, v) in map.iter_mut() {
        if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(sub) = props.and_then(|p| p.get(k)) {
            prune(sub, v, false, depth + 1);
        } else if let Some(sub) = addl.filter(|a| a.is_object()) {
            prune(sub, v, false, depth + 1);
        } else if preserve || addl == Some(&Value::Bool(true)) {
            // kept as is
        } else if props.is_some() || is_object_schema {
            drop.push(k.clone());
        }
    }
    for k in drop {
        map.remove(&k);
    }
}
