//! Translation of OpenAPI 3.0 Schema Objects into JSON Schema (draft 4, whose numeric keywords
//! match OpenAPI 3.0) for the `jsonschema` validator:
//! - `$ref: '#/components/schemas/X'` points into one shared document of translated schemas;
//! - `nullable: true` widens an explicit `type` (OAS 3.0.3 reading; no `type`, no effect);
//! - `readOnly` properties are not required in requests, `writeOnly` ones not in responses;
//! - in closed mode every object schema with `properties` and no `additionalProperties` gets
//!   `additionalProperties: false`, after merging `allOf` members into one object, because
//!   closing each member separately would reject the other members' properties.

use serde_json::{Map, Value, json};

/// Base URI of the registry document that holds every translated component schema.
pub const DOC_URI: &str = "urn:edgebind:contract:schemas";

/// Marker set by [`super::deviations::Fix::AcceptNull`] on a raw schema.
pub const ACCEPT_NULL: &str = "x-edgebind-accept-null";

/// Internal key for `allOf` leftovers of a merge; emitted as `allOf` without merging again.
const REST: &str = "x-edgebind-merge-rest";

/// Merges deeper than this are treated as cycles and left unmerged.
const MAX_MERGE_DEPTH: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode {
    pub direction: Direction,
    pub closed: bool,
}

impl Mode {
    pub fn key(self) -> &'static str {
        match (self.direction, self.closed) {
            (Direction::Request, false) => "request-open",
            (Direction::Request, true) => "request-closed",
            (Direction::Response, false) => "response-open",
            (Direction::Response, true) => "response-closed",
        }
    }
}

/// Escape a name for use as one JSON pointer segment (RFC 6901).
pub fn pointer_segment(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The `$ref` (as a JSON Schema value) to the translated component schema `name` in `mode`.
pub fn component_ref(name: &str, mode: Mode) -> Value {
    json!({"$ref": format!("{DOC_URI}#/definitions/{}/{}", mode.key(), pointer_segment(name))})
}

/// The component name a `$ref` names, if it points at `#/components/schemas/`.
pub fn schema_ref_name(reference: &str) -> Option<&str> {
    reference.strip_prefix("#/components/schemas/")
}

pub struct Translator<'a> {
    schemas: &'a Map<String, Value>,
}

impl<'a> Translator<'a> {
    pub fn new(schemas: &'a Map<String, Value>) -> Self {
        Translator { schemas }
    }

    /// Follow `$ref`s to the raw schema object they name.
    pub fn resolve<'v>(&self, schema: &'v Value) -> &'v Value
    where
        'a: 'v,
    {
        let mut current = schema;
        for _ in 0..MAX_MERGE_DEPTH {
            match current
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(schema_ref_name)
                .and_then(|n| self.schemas.get(n))
            {
                Some(next) => current = next,
                None => break,
            }
        }
        current
    }

    /// The registry document: every component schema translated in each of `modes`.
    pub fn document(&self, modes: &[Mode]) -> Value {
        let mut definitions = Map::new();
        for mode in modes {
            let translated: Map<String, Value> = self
                .schemas
                .iter()
                .map(|(name, schema)| (name.clone(), self.translate(schema, *mode)))
                .collect();
            definitions.insert(mode.key().to_string(), Value::Object(translated));
        }
        json!({ "definitions": definitions })
    }

    /// Translate one raw OpenAPI schema.
    pub fn translate(&self, schema: &Value, mode: Mode) -> Value {
        let Value::Object(raw) = schema else {
            return schema.clone();
        };
        let accept_null = raw.get(ACCEPT_NULL) == Some(&Value::Bool(true));
        let out = if let Some(reference) = raw.get("$ref").and_then(Value::as_str) {
            // OAS 3.0: siblings of $ref are ignored.
            match schema_ref_name(reference) {
                Some(name) => component_ref(name, mode),
                // Left as is: compiling it fails loudly rather than validating nothing.
                None => json!({ "$ref": reference }),
            }
        } else {
            let merged;
            let source = if mode.closed && raw.contains_key("allOf") {
                merged = self.merge_all_of(raw, 0);
                merged.as_ref().unwrap_or(raw)
            } else {
                raw
            };
            Value::Object(self.translate_object(source, mode))
        };
        if accept_null {
            json!({ "anyOf": [{ "type": "null" }, out] })
        } else {
            out
        }
    }

    fn translate_object(&self, raw: &Map<String, Value>, mode: Mode) -> Map<String, Value> {
        let mut out = Map::new();
        let mut all_of: Vec<Value> = Vec::new();
        for (key, value) in raw {
            match key.as_str() {
                "properties" => {
                    let props = value
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), self.translate(v, mode)))
                                .collect::<Map<_, _>>()
                        })
                        .unwrap_or_default();
                    out.insert(key.clone(), Value::Object(props));
                }
                "additionalProperties" | "items" | "not" => {
                    out.insert(key.clone(), self.translate(value, mode));
                }
                "anyOf" | "oneOf" => {
                    out.insert(key.clone(), self.translate_list(value, mode));
                }
                "allOf" => {
                    if let Value::Array(items) = self.translate_list(value, mode) {
                        all_of.extend(items);
                    }
                }
                REST => {
                    if let Value::Array(items) = value {
                        // Leftovers hold keywords only, so closing them is not wanted.
                        let open = Mode {
                            closed: false,
                            ..mode
                        };
                        all_of.extend(items.iter().map(|v| self.translate(v, open)));
                    }
                }
                "required" => {
                    out.insert(key.clone(), self.required(raw, value, mode));
                }
                // OpenAPI-only keywords and annotations the validator must not see.
                "nullable" | "discriminator" | "readOnly" | "writeOnly" | "xml"
                | "externalDocs" | "example" | "deprecated" => {}
                k if k.starts_with("x-") => {}
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
        }
        if !all_of.is_empty() {
            out.insert("allOf".into(), Value::Array(all_of));
        }
        if raw.get("nullable") == Some(&Value::Bool(true))
            && let Some(Value::String(t)) = out.get("type")
        {
            let widened = json!([t, "null"]);
            out.insert("type".into(), widened);
        }
        if mode.closed
            && out.contains_key("properties")
            && !out.contains_key("additionalProperties")
        {
            out.insert("additionalProperties".into(), Value::Bool(false));
        }
        out
    }

    fn translate_list(&self, value: &Value, mode: Mode) -> Value {
        match value {
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.translate(v, mode)).collect())
            }
            other => other.clone(),
        }
    }

    /// `required`, minus properties that the other direction owns.
    fn required(&self, raw: &Map<String, Value>, required: &Value, mode: Mode) -> Value {
        let skip_flag = match mode.direction {
            Direction::Request => "readOnly",
            Direction::Response => "writeOnly",
        };
        let props = raw.get("properties").and_then(Value::as_object);
        let Value::Array(names) = required else {
            return required.clone();
        };
        let kept = names
            .iter()
            .filter(|name| {
                let prop = name.as_str().and_then(|n| props.and_then(|p| p.get(n)));
                let flagged = prop.is_some_and(|p| {
                    p.get(skip_flag) == Some(&Value::Bool(true))
                        || self.resolve(p).get(skip_flag) == Some(&Value::Bool(true))
                });
                !flagged
            })
            .cloned()
            .collect();
        Value::Array(kept)
    }

    /// Merge an `allOf` schema into one raw object schema, or `None` when the members cannot be
    /// merged safely (a member with its own `additionalProperties`, a cycle, a non-object).
    fn merge_all_of(&self, raw: &Map<String, Value>, depth: usize) -> Option<Map<String, Value>> {
        if depth > MAX_MERGE_DEPTH {
            return None;
        }
        let mut merged: Map<String, Value> = raw
            .iter()
            .filter(|(k, _)| k.as_str() != "allOf")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if merged.contains_key("additionalProperties") {
            return None;
        }
        for member in raw.get("allOf")?.as_array()? {
            let member = self.resolve(member).as_object()?;
            if member.contains_key("$ref") {
                return None; // unresolvable reference
            }
            let flat = if member.contains_key("allOf") {
                self.merge_all_of(member, depth + 1)?
            } else {
                member.clone()
            };
            if flat.contains_key("additionalProperties") {
                return None;
            }
            merge_into(&mut merged, flat);
        }
        Some(merged)
    }
}

fn merge_into(merged: &mut Map<String, Value>, member: Map<String, Value>) {
    for (key, value) in member {
        match key.as_str() {
            "properties" => {
                let target = merged
                    .entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let (Value::Object(target), Value::Object(props)) = (target, value) {
                    for (name, schema) in props {
                        match target.remove(&name) {
                            // Both members constrain it: both must hold.
                            Some(existing) => {
                                target.insert(name, json!({ "allOf": [existing, schema] }));
                            }
                            None => {
                                target.insert(name, schema);
                            }
                        }
                    }
                }
            }
            "required" => {
                let target = merged
                    .entry("required")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let (Value::Array(target), Value::Array(names)) = (target, value) {
                    for name in names {
                        if !target.contains(&name) {
                            target.push(name);
                        }
                    }
                }
            }
            "description" | "title" | "example" => {}
            k if k.starts_with("x-") => {}
            _ => match merged.get(&key) {
                None => {
                    merged.insert(key, value);
                }
                Some(existing) if *existing == value => {}
                Some(_) => {
                    let rest = merged
                        .entry(REST)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(rest) = rest {
                        let mut piece = Map::new();
                        piece.insert(key, value);
                        rest.push(Value::Object(piece));
                    }
                }
            },
        }
    }
}
