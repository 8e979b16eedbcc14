//! The operations of an OpenAPI document, indexed for matching concrete request paths against
//! templated paths such as `/v1/resource-definitions/{resource}/autoplace`.

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value};
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parameter of an operation, `$ref`s resolved, path-level and operation-level merged.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub location: String,
    pub required: bool,
    /// The raw OpenAPI schema (may be a `$ref` into `#/components/schemas`).
    pub schema: Value,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    pub template: String,
    /// `operationId`, or `METHOD template` when the document gives none.
    pub id: String,
    pub description: String,
    pub params: Vec<Param>,
    /// The requestBody object, `$ref` resolved.
    pub request_body: Option<Value>,
    /// Status key (`"200"`, `"4XX"`, `"default"`) to response object, `$ref`s resolved.
    pub responses: Map<String, Value>,
}

impl Operation {
    /// Unique per operation (operationIds are not guaranteed unique); prefixes cache keys.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    pub fn label(&self) -> String {
        format!("{} {} ({})", self.method, self.template, self.id)
    }
}

struct PathEntry {
    template: String,
    segments: Vec<Segment>,
    operations: Vec<Operation>,
}

/// What a concrete path resolved to.
pub struct Matched<'a> {
    pub operation: &'a Operation,
    /// Path parameter values, percent-decoded.
    pub path_params: Vec<(String, String)>,
}

pub struct Routes {
    base_path: String,
    base_path_optional: bool,
    entries: Vec<PathEntry>,
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn resolve_component<'d>(
    doc: &'d Value,
    value: &'d Value,
    kind: &str,
) -> anyhow::Result<&'d Value> {
    let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
        return Ok(value);
    };
    let prefix = format!("#/components/{kind}/");
    let name = reference
        .strip_prefix(&prefix)
        .ok_or_else(|| anyhow!("unsupported {kind} reference {reference}"))?;
    doc.pointer(&format!("/components/{kind}/{name}"))
        .ok_or_else(|| anyhow!("dangling reference {reference}"))
}

fn parse_params(doc: &Value, list: Option<&Value>, into: &mut Vec<Param>) -> anyhow::Result<()> {
    let Some(list) = list else { return Ok(()) };
    let list = list.as_array().context("parameters is not a list")?;
    for item in list {
        let p = resolve_component(doc, item, "parameters")?;
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .context("parameter without name")?;
        let location = p
            .get("in")
            .and_then(Value::as_str)
            .context("parameter without 'in'")?;
        let param = Param {
            name: name.to_string(),
            location: location.to_string(),
            required: p.get("required") == Some(&Value::Bool(true)) || location == "path",
            schema: p
                .get("schema")
                .cloned()
                .unwrap_or(Value::Object(Map::new())),
        };
        // Operation-level parameters override path-level ones with the same name and location.
        into.retain(|q| !(q.name == param.name && q.location == param.location));
        into.push(param);
    }
    Ok(())
}

impl Routes {
    pub fn load(doc: &Value) -> anyhow::Result<Routes> {
        let base_path = doc
            .pointer("/servers/0/url")
            .and_then(Value::as_str)
            .map(server_path)
            .unwrap_or_default();
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .context("document has no paths")?;
        let mut entries = Vec::new();
        for (template, item) in paths {
            let segments =
                template_segments(template).with_context(|| format!("path template {template}"))?;
            let mut path_params = Vec::new();
            parse_params(doc, item.get("parameters"), &mut path_params)?;
            let mut operations = Vec::new();
            for method in METHODS {
                let Some(op) = item.get(*method) else {
                    continue;
                };
                let mut params = path_params.clone();
                parse_params(doc, op.get("parameters"), &mut params)
                    .with_context(|| format!("{method} {template}"))?;
                let request_body = op
                    .get("requestBody")
                    .map(|b| resolve_component(doc, b, "requestBodies").cloned())
                    .transpose()?;
                let mut responses = Map::new();
                if let Some(map) = op.get("responses").and_then(Value::as_object) {
                    for (status, response) in map {
                        responses.insert(
                            status.clone(),
                            resolve_component(doc, response, "responses")?.clone(),
                        );
                    }
                }
                let upper = method.to_ascii_uppercase();
                let id = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{upper} {template}"));
                let description = op
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                operations.push(Operation {
                    method: upper,
                    template: template.clone(),
                    id,
                    description,
                    params,
                    request_body,
                    responses,
                });
            }
            entries.push(PathEntry {
                template: template.clone(),
                segments,
                operations,
            });
        }
        Ok(Routes {
            base_path,
            base_path_optional: false,
            entries,
        })
    }

    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    pub fn set_base_path_optional(&mut self, optional: bool) {
        self.base_path_optional = optional;
    }

    /// For every list GET whose description contains `marker` ("A single resource definition can
    /// be queried by adding its name"), add the single-object GET one segment deeper: same path
    /// parameters, no query parameters, and the array's item schema as the 200 body.
    pub fn add_single_gets(&mut self, marker: &str) {
        let lists: Vec<(Vec<Segment>, Operation)> = self
            .entries
            .iter()
            .flat_map(|e| e.operations.iter().map(move |o| (e, o)))
            .filter(|(_, o)| o.method == "GET" && o.description.contains(marker))
            .map(|(e, o)| (e.segments.clone(), o.clone()))
            .collect();
        for (list_segments, list_op) in lists {
            let child = self.entries.iter_mut().find(|e| {
                e.segments.len() == list_segments.len() + 1
                    && e.segments.starts_with(&list_segments)
                    && matches!(e.segments.last(), Some(Segment::Param(_)))
            });
            let Some(child) = child else { continue };
            if child.operations.iter().any(|o| o.method == "GET") {
                continue;
            }
            let mut responses = list_op.responses.clone();
            if let Some(schema) = responses
                .get_mut("200")
                .and_then(|r| r.pointer_mut("/content/application~1json/schema"))
                && let Some(items) = schema.get("items").cloned()
            {
                *schema = items;
            }
            let mut params: Vec<Param> = list_op
                .params
                .iter()
                .filter(|p| p.location == "path")
                .cloned()
                .collect();
            if let Some(Segment::Param(name)) = child.segments.last() {
                params.push(Param {
                    name: name.clone(),
                    location: "path".into(),
                    required: true,
                    schema: serde_json::json!({ "type": "string" }),
                });
            }
            // Reuse the child path's own declaration of its parameters where it has one.
            if let Some(declared) = child.operations.first() {
                for p in params.iter_mut() {
                    if let Some(d) = declared
                        .params
                        .iter()
                        .find(|d| d.location == "path" && d.name == p.name)
                    {
                        p.schema = d.schema.clone();
                    }
                }
            }
            child.operations.push(Operation {
                method: "GET".into(),
                template: child.template.clone(),
                id: format!("{} (single object)", list_op.id),
                description: String::new(),
                params,
                request_body: None,
                responses,
            });
        }
    }

    /// Every operation, for tooling and tests.
    pub fn operations(&self) -> impl Iterator<Item = &Operation> {
        self.entries.iter().flat_map(|e| e.operations.iter())
    }

    /// Find the operation for `method` on the concrete `path` (no query string).
    pub fn find(&self, method: &str, path: &str) -> Result<Matched<'_>, String> {
        let relative = match path.strip_prefix(self.base_path.as_str()) {
            Some(rest) if !self.base_path.is_empty() && rest.starts_with('/') => rest,
            _ if self.base_path.is_empty() || self.base_path_optional => path,
            _ => {
                return Err(format!(
                    "path {path} is outside the server base path {}",
                    self.base_path
                ));
            }
        };
        let concrete: Vec<&str> = match relative.strip_prefix('/') {
            Some(rest) => rest.split('/').collect(),
            None => return Err(format!("path {path} does not start with '/'")),
        };
        let best = self
            .entries
            .iter()
            .filter(|e| segments_match(&e.segments, &concrete))
            // Literal segments win over templates at the first place they differ.
            .max_by(|a, b| specificity(&a.segments, &b.segments))
            .ok_or_else(|| {
                format!("unknown path {path}: no path template in the document matches")
            })?;
        let method = method.to_ascii_uppercase();
        let operation = best
            .operations
            .iter()
            .find(|o| o.method == method)
            .ok_or_else(|| {
                let allowed: Vec<&str> =
                    best.operations.iter().map(|o| o.method.as_str()).collect();
                format!(
                    "unknown method {method} on {path} (template {}; declared: {})",
                    best.template,
                    allowed.join(", ")
                )
            })?;
        let mut path_params = Vec::new();
        for (segment, value) in best.segments.iter().zip(&concrete) {
            if let Segment::Param(name) = segment {
                let decoded = percent_decode(value).ok_or_else(|| {
                    format!("path segment '{value}' is not valid percent-encoded UTF-8")
                })?;
                path_params.push((name.clone(), decoded));
            }
        }
        Ok(Matched {
            operation,
            path_params,
        })
    }
}

/// The path part of a server URL (`https://api.cloudflare.com/client/v4` -> `/client/v4`).
fn server_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    path.trim_end_matches('/').to_string()
}

fn template_segments(template: &str) -> anyhow::Result<Vec<Segment>> {
    let Some(rest) = template.strip_prefix('/') else {
        bail!("does not start with '/'");
    };
    rest.split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if !name.contains(['{', '}']) => Ok(Segment::Param(name.to_string())),
                _ if s.contains(['{', '}']) => {
                    bail!("segment '{s}' mixes literal text and a template")
                }
                _ => Ok(Segment::Literal(s.to_string())),
            },
        )
        .collect()
}

fn segments_match(template: &[Segment], concrete: &[&str]) -> bool {
    template.len() == concrete.len()
        && template.iter().zip(concrete).all(|(t, c)| match t {
            Segment::Literal(l) => l == c,
            Segment::Param(_) => !c.is_empty(),
        })
}

fn specificity(a: &[Segment], b: &[Segment]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match (x, y) {
            (Segment::Literal(_), Segment::Param(_)) => return Ordering::Greater,
            (Segment::Param(_), Segment::Literal(_)) => return Ordering::Less,
            _ => {}
        }
    }
    Ordering::Equal
}

/// Decode `%XX` escapes; `None` for a bad escape or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
