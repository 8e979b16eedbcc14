//! Contract checks of recorded HTTP exchanges against the official OpenAPI documents
//! (`specs/linstor-rest-v1.yaml`, `specs/cloudflare-workers.yaml`, vendored), so the
//! clients and the simulators cannot drift from the real APIs unnoticed.
//!
//! Schemas are translated from OpenAPI 3.0 to JSON Schema (see `translate`) and validated with
//! the `jsonschema` crate; compiled validators are cached per operation, status and media type.
//! The only accepted differences from the documents are listed in `deviations::DEVIATIONS`.

pub mod deviations;
mod multipart;
mod params;
mod routes;
mod translate;

use anyhow::{Context, anyhow, bail};
use deviations::Fix;
use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Registry, Validator};
use routes::{Operation, Routes};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use translate::{Direction, Mode, Translator};

/// How strictly bodies are checked beyond what the document says.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContractOptions {
    /// Treat every object schema in a request as `additionalProperties: false`. LINSTOR needs
    /// this: its Jackson mapper refuses unknown fields with 400 although the document never
    /// closes a schema (linstor.md §1 "Strict request JSON").
    pub closed_requests: bool,
    /// The same for responses. Real servers add fields over time, so usually off.
    pub closed_responses: bool,
}

/// One recorded request and its response, as the simulators record them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    /// The request path; it may carry a `?query`, which is added to `query`.
    pub path: String,
    /// Decoded query pairs, repeated names for arrays.
    pub query: Vec<(String, String)>,
    pub request_content_type: Option<String>,
    pub request_body: Option<Vec<u8>>,
    pub status: u16,
    pub response_content_type: Option<String>,
    pub response_body: Vec<u8>,
}

/// Most schema errors reported for one body; the rest are counted.
const MAX_ERRORS_PER_BODY: usize = 8;

/// A loaded OpenAPI document with its compiled-validator cache.
pub struct Contract {
    title: String,
    routes: Routes,
    fixes: Vec<Fix>,
    /// `components.schemas` with the deviation patches applied.
    schemas: Map<String, Value>,
    registry: Registry<'static>,
    request_mode: Mode,
    response_mode: Mode,
    cache: Mutex<HashMap<String, Arc<Validator>>>,
    load_time: Duration,
}

impl std::fmt::Debug for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contract")
            .field("title", &self.title)
            .field("load_time", &self.load_time)
            .finish_non_exhaustive()
    }
}

/// The repository's vendored API documents (`specs/`, provenance in `specs/README.md`).
pub fn specs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs")
}

static LINSTOR: OnceLock<Result<Contract, String>> = OnceLock::new();
static CLOUDFLARE: OnceLock<Result<Contract, String>> = OnceLock::new();

fn shared(
    cell: &'static OnceLock<Result<Contract, String>>,
    load: fn() -> anyhow::Result<Contract>,
) -> anyhow::Result<&'static Contract> {
    cell.get_or_init(|| load().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

impl Contract {
    pub fn load(spec_path: &Path, opts: ContractOptions) -> anyhow::Result<Contract> {
        let started = Instant::now();
        let text = std::fs::read_to_string(spec_path)
            .with_context(|| format!("reading {}", spec_path.display()))?;
        let mut doc: Value = serde_yaml::from_str(&text)
            .with_context(|| format!("parsing {}", spec_path.display()))?;
        let title = doc
            .pointer("/info/title")
            .and_then(Value::as_str)
            .context("document has no info.title")?
            .to_string();
        let fixes = deviations::for_title(&title);
        apply_patches(&mut doc, &fixes)?;
        check_refs(&doc)?;
        let mut routes = Routes::load(&doc)?;
        for fix in &fixes {
            if let Fix::LinstorSingleGet { description_marker } = fix {
                routes.add_single_gets(description_marker);
            }
        }
        let schemas = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let request_mode = Mode {
            direction: Direction::Request,
            closed: opts.closed_requests,
        };
        let response_mode = Mode {
            direction: Direction::Response,
            closed: opts.closed_responses,
        };
        let mut document = Translator::new(&schemas).document(&[request_mode, response_mode]);
        if let Value::Object(map) = &mut document {
            map.insert(
                "$schema".into(),
                json!("http://json-schema.org/draft-04/schema#"),
            );
        }
        let registry = Registry::new()
            .draft(Draft::Draft4)
            .add(translate::DOC_URI, document)
            .context("registering translated schemas")?
            .prepare()
            .context("preparing translated schemas")?;
        Ok(Contract {
            title,
            routes,
            fixes,
            schemas,
            registry,
            request_mode,
            response_mode,
            cache: Mutex::new(HashMap::new()),
            load_time: started.elapsed(),
        })
    }

    /// The LINSTOR REST document, requests closed.
    pub fn linstor() -> anyhow::Result<Contract> {
        Contract::load(
            &specs_dir().join("linstor-rest-v1.yaml"),
            ContractOptions {
                closed_requests: true,
                closed_responses: false,
            },
        )
    }

    /// The Cloudflare Workers document.
    pub fn cloudflare() -> anyhow::Result<Contract> {
        Contract::load(
            &specs_dir().join("cloudflare-workers.yaml"),
            ContractOptions::default(),
        )
    }

    /// A process-wide [`Contract::linstor`], loaded once and shared by all tests.
    pub fn shared_linstor() -> anyhow::Result<&'static Contract> {
        shared(&LINSTOR, Contract::linstor)
    }

    /// A process-wide [`Contract::cloudflare`].
    pub fn shared_cloudflare() -> anyhow::Result<&'static Contract> {
        shared(&CLOUDFLARE, Contract::cloudflare)
    }

    /// Accept paths without the server base path too (for a simulator mounted at `/`).
    pub fn with_base_path_optional(mut self) -> Contract {
        self.routes.set_base_path_optional(true);
        self
    }

    /// The operation `method` and `path` resolve to, as `METHOD template (operationId)`.
    pub fn operation_label(&self, method: &str, path: &str) -> Result<String, String> {
        let (path, _) = split_query(path)?;
        self.routes.find(method, path).map(|m| m.operation.label())
    }

    pub fn title(&self) -> &str {
        &self.title
    }

    /// The server base path requests must carry (`/client/v4` for Cloudflare, empty for LINSTOR).
    pub fn base_path(&self) -> &str {
        self.routes.base_path()
    }

    /// Wall time `load` took (read, parse, translate, register; validators compile lazily).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Compile every request, parameter and response schema now; returns what failed to
    /// compile. Slow (every schema), meant for a self-test of the translation.
    pub fn precompile_all(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for op in self.routes.operations() {
            for param in &op.params {
                if let Err(e) =
                    self.param_validator(op, &param.location, &param.name, &param.schema)
                {
                    failures.push(e);
                }
            }
            for (media, schema) in request_media(op) {
                if media == "multipart/form-data" {
                    for (i, candidate) in self.multipart_candidates(schema).iter().enumerate() {
                        for (part, part_schema) in candidate.properties() {
                            if self.is_json_part(part_schema) {
                                let key = format!("{}|multipart|{i}|{part}", op.key());
                                if let Err(e) = self.compiled(key, || {
                                    self.translator().translate(part_schema, self.request_mode)
                                }) {
                                    failures.push(e);
                                }
                            }
                        }
                    }
                } else if let Err(e) = self.request_validator(op, media, schema) {
                    failures.push(e);
                }
            }
            for (status, response) in &op.responses {
                for (media, media_obj) in content_of(response) {
                    if let Some(schema) = media_obj.get("schema")
                        && let Err(e) = self.response_validator(op, status, media, schema)
                    {
                        failures.push(e);
                    }
                }
            }
        }
        failures
    }

    /// Check one request against its operation.
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        content_type: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<(), Vec<String>> {
        let (path, inline_query) = split_query(path).map_err(|e| vec![e])?;
        let matched = self.routes.find(method, path).map_err(|e| vec![e])?;
        let op = matched.operation;
        let label = op.label();
        let mut violations = Vec::new();

        for (name, value) in &matched.path_params {
            if let Some(param) = op
                .params
                .iter()
                .find(|p| p.location == "path" && &p.name == name)
            {
                self.check_param(op, param, &[value.as_str()], &mut violations);
            }
        }

        let mut names: Vec<&str> = Vec::new();
        let mut values: HashMap<&str, Vec<&str>> = HashMap::new();
        for (k, v) in query.iter().chain(inline_query.iter()) {
            if !values.contains_key(k.as_str()) {
                names.push(k);
            }
            values.entry(k).or_default().push(v);
        }
        for name in names {
            match op
                .params
                .iter()
                .find(|p| p.location == "query" && p.name == name)
            {
                Some(param) => self.check_param(op, param, &values[name], &mut violations),
                None => {
                    let declared: Vec<&str> = op
                        .params
                        .iter()
                        .filter(|p| p.location == "query")
                        .map(|p| p.name.as_str())
                        .collect();
                    violations.push(format!(
                        "{label}: unknown query parameter '{name}' (declared: {})",
                        list_or_none(&declared)
                    ));
                }
            }
        }
        for param in op
            .params
            .iter()
            .filter(|p| p.location == "query" && p.required)
        {
            if !values.contains_key(param.name.as_str()) {
                violations.push(format!(
                    "{label}: required query parameter '{}' is missing",
                    param.name
                ));
            }
        }

        self.check_request_body(op, content_type, body, &mut violations);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Check one response against the operation that `method` and `path` name.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), Vec<String>> {
        let (path, _) = split_query(path).map_err(|e| vec![e])?;
        let matched = self.routes.find(method, path).map_err(|e| vec![e])?;
        let op = matched.operation;
        let mut violations = Vec::new();
        match status_key(op, status) {
            Some(key) => {
                if let Some(response) = op.responses.get(key) {
                    self.check_response_body(
                        op,
                        key,
                        response,
                        content_type,
                        body,
                        &mut violations,
                    );
                }
            }
            None => {
                let linstor_list = self.fixes.iter().find_map(|f| match f {
                    Fix::LinstorErrorStatusFromRetCode { list_schema } => Some(*list_schema),
                    _ => None,
                });
                match linstor_list {
                    Some(list_schema) => self.check_linstor_error_status(
                        op,
                        list_schema,
                        status,
                        content_type,
                        body,
                        &mut violations,
                    ),
                    None => violations.push(undeclared_status(op, status)),
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Check both halves of a recorded exchange.
    pub fn check_exchange(&self, exchange: &Exchange) -> Result<(), Vec<String>> {
        let mut violations = Vec::new();
        if let Err(v) = self.check_request(
            &exchange.method,
            &exchange.path,
            &exchange.query,
            exchange.request_content_type.as_deref(),
            exchange.request_body.as_deref(),
        ) {
            violations.extend(v.into_iter().map(|m| format!("request: {m}")));
        }
        if let Err(v) = self.check_response(
            &exchange.method,
            &exchange.path,
            exchange.status,
            exchange.response_content_type.as_deref(),
            &exchange.response_body,
        ) {
            violations.extend(
                v.into_iter()
                    .map(|m| format!("response {}: {m}", exchange.status)),
            );
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// A batch checker over this contract.
    pub fn log(&self) -> ExchangeLog<'_> {
        ExchangeLog { contract: self }
    }

    // ---- parameters ----

    fn check_param(
        &self,
        op: &Operation,
        param: &routes::Param,
        raw: &[&str],
        violations: &mut Vec<String>,
    ) {
        let what = format!(
            "{}: {} parameter '{}'",
            op.label(),
            param.location,
            param.name
        );
        let resolved = self.translator_resolve(&param.schema);
        let ty = resolved.get("type").and_then(Value::as_str);
        let value = if ty == Some("array") {
            let item_ty = resolved
                .get("items")
                .map(|i| self.translator_resolve(i))
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str);
            raw.iter()
                .map(|r| params::coerce_scalar(r, item_ty))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        } else if raw.len() > 1 {
            Err(format!("given {} times but it is not an array", raw.len()))
        } else {
            params::coerce_scalar(raw.first().copied().unwrap_or(""), ty)
        };
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                violations.push(format!("{what}: {e}"));
                return;
            }
        };
        match self.param_validator(op, &param.location, &param.name, &param.schema) {
            Ok(v) => violations.extend(errors_of(&v, &value, &what)),
            Err(e) => violations.push(e),
        }
    }

    fn param_validator(
        &self,
        op: &Operation,
        location: &str,
        name: &str,
        schema: &Value,
    ) -> Result<Arc<Validator>, String> {
        let key = format!("{}|param|{location}|{name}", op.key());
        self.compiled(key, || {
            self.translator().translate(schema, self.request_mode)
        })
    }

    // ---- request bodies ----

    fn check_request_body(
        &self,
        op: &Operation,
        content_type: Option<&str>,
        body: Option<&[u8]>,
        violations: &mut Vec<String>,
    ) {
        let label = op.label();
        let body = body.filter(|b| !b.is_empty());
        let Some(request_body) = &op.request_body else {
            if let Some(body) = body {
                violations.push(format!(
                    "{label}: the operation takes no request body, got {} bytes",
                    body.len()
                ));
            }
            return;
        };
        let Some(body) = body else {
            let required = request_body.get("required") == Some(&Value::Bool(true));
            let excused = op.method == "DELETE"
                && self.fixes.contains(&Fix::SchemalessDeleteBodyOptional)
                && request_media(op).iter().all(|(_, s)| is_empty_schema(s));
            if required && !excused {
                violations.push(format!(
                    "{label}: request body is required but none was sent"
                ));
            }
            return;
        };
        let Some(content_type) = content_type else {
            violations.push(format!("{label}: request body sent without a Content-Type"));
            return;
        };
        let content = request_body.get("content").and_then(Value::as_object);
        let Some((media, media_obj)) = content.and_then(|c| self.find_media(c, content_type))
        else {
            let declared: Vec<&str> = content
                .map(|c| c.keys().map(String::as_str).collect())
                .unwrap_or_default();
            violations.push(format!(
                "{label}: request content type '{content_type}' is not declared (declared: {})",
                list_or_none(&declared)
            ));
            return;
        };
        let schema = media_obj.get("schema");
        if media == "multipart/form-data" {
            self.check_multipart(op, content_type, body, schema, media_obj, violations);
        } else if is_json(media) {
            let instance: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => {
                    violations.push(format!("{label}: request body is not JSON: {e}"));
                    return;
                }
            };
            if let Some(schema) = schema {
                match self.request_validator(op, media, schema) {
                    Ok(v) => violations.extend(errors_of(
                        &v,
                        &instance,
                        &format!("{label}: request body"),
                    )),
                    Err(e) => violations.push(e),
                }
            }
        } else if std::str::from_utf8(body).is_err()
            && schema.is_some_and(|s| {
                s.get("type") == Some(&json!("string")) && s.get("format").is_none()
            })
        {
            violations.push(format!("{label}: {media} request body is not UTF-8 text"));
        }
    }

    fn request_validator(
        &self,
        op: &Operation,
        media: &str,
        schema: &Value,
    ) -> Result<Arc<Validator>, String> {
        let key = format!("{}|request|{media}", op.key());
        self.compiled(key, || {
            self.translator().translate(schema, self.request_mode)
        })
    }

    /// The object schemas a multipart body may follow (the members of a top-level `oneOf`).
    fn multipart_candidates<'v>(&'v self, schema: &'v Value) -> Vec<FormSchema<'v>> {
        let resolved = self.translator_resolve(schema);
        let members: Vec<&Value> = match resolved
            .get("oneOf")
            .or_else(|| resolved.get("anyOf"))
            .and_then(Value::as_array)
        {
            Some(list) => list.iter().map(|m| self.translator_resolve(m)).collect(),
            None => vec![resolved],
        };
        members.into_iter().map(FormSchema).collect()
    }

    fn is_json_part(&self, schema: &Value) -> bool {
        let resolved = self.translator_resolve(schema);
        resolved.get("type") == Some(&json!("object"))
            || resolved.get("properties").is_some()
            || resolved.get("allOf").is_some()
    }

    fn check_multipart(
        &self,
        op: &Operation,
        content_type: &str,
        body: &[u8],
        schema: Option<&Value>,
        media_obj: &Value,
        violations: &mut Vec<String>,
    ) {
        let label = op.label();
        let parts = match multipart::parse(content_type, body) {
            Ok(p) => p,
            Err(e) => {
                violations.push(format!("{label}: {e}"));
                return;
            }
        };
        let Some(schema) = schema else { return };
        let any_part_types: Vec<String> = media_obj
            .pointer(&format!(
                "/encoding/{}/contentType",
                translate::pointer_segment(ANY_PART)
            ))
            .and_then(Value::as_str)
            .map(|s| {
                s.split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        // The body must fit one of the alternatives; report the closest one's problems.
        let mut best: Option<Vec<String>> = None;
        for (i, candidate) in self.multipart_candidates(schema).iter().enumerate() {
            let found = self.check_form(op, i, candidate, &parts, &any_part_types);
            if found.is_empty() {
                return;
            }
            if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                best = Some(found);
            }
        }
        violations.extend(best.unwrap_or_default());
    }

    fn check_form(
        &self,
        op: &Operation,
        index: usize,
        form: &FormSchema<'_>,
        parts: &[multipart::Part],
        any_part_types: &[String],
    ) -> Vec<String> {
        let label = op.label();
        let mut violations = Vec::new();
        let declared = form.properties();
        for required in form.required() {
            if !parts.iter().any(|p| p.name == required) {
                violations.push(format!(
                    "{label}: required multipart part '{required}' is missing"
                ));
            }
        }
        let mut referenced: Vec<String> = Vec::new();
        for (n, part) in parts.iter().enumerate() {
            let own = declared
                .iter()
                .find(|(name, _)| *name == part.name.as_str());
            let Some((_, part_schema)) =
                own.or_else(|| declared.iter().find(|(name, _)| *name == ANY_PART))
            else {
                let names: Vec<&str> = declared.iter().map(|(n, _)| *n).collect();
                violations.push(format!(
                    "{label}: multipart part '{}' is not declared (declared: {})",
                    part.name,
                    list_or_none(&names)
                ));
                continue;
            };
            let what = format!("{label}: multipart part '{}'", part.name);
            if own.is_some() && parts[..n].iter().any(|p| p.name == part.name) {
                violations.push(format!("{what} appears more than once"));
            }
            if own.is_none() && !any_part_types.is_empty() {
                let ct = part.content_type.as_deref().map(essence);
                if !ct.as_ref().is_some_and(|ct| any_part_types.contains(ct)) {
                    violations.push(format!(
                        "{what} has content type {:?}; module parts take one of: {}",
                        part.content_type,
                        any_part_types.join(", ")
                    ));
                }
            }
            if own.is_none() || !self.is_json_part(part_schema) {
                continue;
            }
            if let Some(ct) = &part.content_type
                && !is_json(&essence(ct))
            {
                violations.push(format!("{what} carries JSON but has content type '{ct}'"));
            }
            let instance: Value = match serde_json::from_slice(&part.body) {
                Ok(v) => v,
                Err(e) => {
                    violations.push(format!("{what} is not JSON: {e}"));
                    continue;
                }
            };
            for field in ["main_module", "body_part"] {
                if let Some(name) = instance.get(field).and_then(Value::as_str) {
                    referenced.push(name.to_string());
                    if name == part.name || !parts.iter().any(|p| p.name == name) {
                        violations.push(format!(
                            "{what}: {field} names part '{name}', which the body does not contain"
                        ));
                    }
                }
            }
            let key = format!("{}|multipart|{index}|{}", op.key(), part.name);
            match self.compiled(key, || {
                self.translator().translate(part_schema, self.request_mode)
            }) {
                Ok(v) => violations.extend(errors_of(&v, &instance, &what)),
                Err(e) => violations.push(e),
            }
        }
        let has_modules = declared.iter().any(|(n, _)| *n == ANY_PART);
        if has_modules && referenced.is_empty() && parts.iter().any(|p| p.name == "metadata") {
            violations.push(format!(
                "{label}: metadata names no main_module or body_part, so no part is the script"
            ));
        }
        violations
    }

    // ---- responses ----

    fn check_response_body(
        &self,
        op: &Operation,
        key: &str,
        response: &Value,
        content_type: Option<&str>,
        body: &[u8],
        violations: &mut Vec<String>,
    ) {
        let label = format!("{} -> {key}", op.label());
        let content = response.get("content").and_then(Value::as_object);
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            if !body.is_empty() {
                violations.push(format!(
                    "{label}: the response declares no body, got {} bytes",
                    body.len()
                ));
            }
            return;
        };
        let declared: Vec<&str> = content.keys().map(String::as_str).collect();
        if body.is_empty() {
            if !content
                .values()
                .all(|m| m.get("schema").is_none_or(is_empty_schema))
            {
                violations.push(format!(
                    "{label}: empty response body where {} is declared",
                    declared.join(", ")
                ));
            }
            return;
        }
        let Some(content_type) = content_type else {
            violations.push(format!("{label}: response body without a Content-Type"));
            return;
        };
        let Some((media, media_obj)) = self.find_media(content, content_type) else {
            violations.push(format!(
                "{label}: response content type '{content_type}' is not declared (declared: {})",
                declared.join(", ")
            ));
            return;
        };
        if !is_json(&essence(content_type)) {
            return; // raw content (script download, event stream): not checked further
        }
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                violations.push(format!("{label}: response body is not JSON: {e}"));
                return;
            }
        };
        if let Some(schema) = media_obj.get("schema") {
            match self.response_validator(op, key, media, schema) {
                Ok(v) => {
                    violations.extend(errors_of(&v, &instance, &format!("{label}: response body")))
                }
                Err(e) => violations.push(e),
            }
        }
    }

    fn response_validator(
        &self,
        op: &Operation,
        status: &str,
        media: &str,
        schema: &Value,
    ) -> Result<Arc<Validator>, String> {
        let key = format!("{}|response|{status}|{media}", op.key());
        self.compiled(key, || {
            if let Some(failure) = self.failure_envelope(status, schema) {
                return translate::component_ref(&failure, self.response_mode);
            }
            let translated = self.translator().translate(schema, self.response_mode);
            for fix in &self.fixes {
                if let Fix::ErrorBodyAsList {
                    object_schema,
                    list_schema,
                } = fix
                {
                    let single = format!("#/components/schemas/{object_schema}");
                    if schema.get("$ref").and_then(Value::as_str) == Some(single.as_str()) {
                        return json!({ "anyOf": [
                            translated,
                            translate::component_ref(list_schema, self.response_mode),
                        ]});
                    }
                }
            }
            translated
        })
    }

    /// The failure envelope that replaces `schema` under `status` (see
    /// `Fix::FailureEnvelopeForErrors`), if any.
    fn failure_envelope(&self, status: &str, schema: &Value) -> Option<String> {
        self.fixes.iter().find_map(|fix| {
            let Fix::FailureEnvelopeForErrors {
                status_key,
                failure_suffix,
                default_failure,
            } = fix
            else {
                return None;
            };
            if !status.eq_ignore_ascii_case(status_key) || is_empty_schema(schema) {
                return None;
            }
            let direct = std::iter::once(schema);
            let members = schema
                .get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            let named = direct
                .chain(members)
                .filter_map(|s| s.get("$ref").and_then(Value::as_str))
                .filter_map(translate::schema_ref_name)
                .find(|name| name.ends_with(failure_suffix));
            Some(named.unwrap_or(default_failure).to_string())
        })
    }

    fn check_linstor_error_status(
        &self,
        op: &Operation,
        list_schema: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
        violations: &mut Vec<String>,
    ) {
        if ![401, 403, 404, 500].contains(&status) {
            violations.push(undeclared_status(op, status));
            return;
        }
        let label = format!("{} -> {status} (undeclared, error status)", op.label());
        if !content_type.is_some_and(|ct| is_json(&essence(ct))) {
            violations.push(format!(
                "{label}: needs an ApiCallRcList JSON body, content type is {content_type:?}"
            ));
            return;
        }
        let instance: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                violations.push(format!("{label}: response body is not JSON: {e}"));
                return;
            }
        };
        let key = format!("{list_schema}|response-list");
        match self.compiled(key, || {
            translate::component_ref(list_schema, self.response_mode)
        }) {
            Ok(v) => {
                let errors = errors_of(&v, &instance, &format!("{label}: response body"));
                if !errors.is_empty() {
                    violations.extend(errors);
                    return;
                }
            }
            Err(e) => {
                violations.push(e);
                return;
            }
        }
        let first_error = instance.as_array().into_iter().flatten().find_map(|entry| {
            let rc = entry.get("ret_code")?;
            let rc = rc.as_i64().or_else(|| rc.as_u64().map(|u| u as i64))?;
            ((rc as u64) & LINSTOR_MASK_ERROR == LINSTOR_MASK_ERROR).then_some(rc)
        });
        let Some(rc) = first_error else {
            violations.push(format!(
                "{label}: the body holds no entry with error bits set"
            ));
            return;
        };
        let expected = linstor_status_for(rc);
        if expected != status {
            violations.push(format!(
                "{label}: first error ret_code {rc} (code {}) maps to {expected} on the real \
                 server, not {status}",
                (rc as u64) & LINSTOR_MASK_CODE
            ));
        }
    }

    // ---- shared machinery ----

    fn translator(&self) -> Translator<'_> {
        Translator::new(&self.schemas)
    }

    fn translator_resolve<'v>(&'v self, schema: &'v Value) -> &'v Value {
        Translator::new(&self.schemas).resolve(schema)
    }

    fn find_media<'c>(
        &self,
        content: &'c Map<String, Value>,
        content_type: &str,
    ) -> Option<(&'c str, &'c Value)> {
        let wanted = essence(content_type);
        let main_type = wanted.split('/').next().unwrap_or("");
        let exact = content.iter().find(|(k, _)| essence(k) == wanted);
        let wildcard = || {
            content
                .iter()
                .find(|(k, _)| essence(k) == format!("{main_type}/*"))
                .or_else(|| content.iter().find(|(k, _)| k.as_str() == "*/*"))
        };
        let undefined = || {
            self.fixes
                .contains(&Fix::UndefinedMediaTypeMatchesAny)
                .then(|| content.iter().find(|(k, _)| k.as_str() == "undefined"))
                .flatten()
        };
        exact
            .or_else(wildcard)
            .or_else(undefined)
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The cached validator for `key`, compiling `schema()` on first use.
    fn compiled(
        &self,
        key: String,
        schema: impl FnOnce() -> Value,
    ) -> Result<Arc<Validator>, String> {
        if let Some(v) = self.lock_cache().get(&key) {
            return Ok(v.clone());
        }
        // Compiled outside the lock: another thread may compile the same key; both results are equal.
        let schema = schema();
        let validator = jsonschema::options()
            .with_draft(Draft::Draft4)
            .with_registry(&self.registry)
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .build(&schema)
            .map_err(|e| format!("contract: cannot compile the schema for {key}: {e}"))?;
        let validator = Arc::new(validator);
        self.lock_cache().insert(key, validator.clone());
        Ok(validator)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Validator>>> {
        // A panic elsewhere while holding the lock leaves a usable map; keep going.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Batch checks over recorded exchanges.
pub struct ExchangeLog<'c> {
    contract: &'c Contract,
}

impl<'c> ExchangeLog<'c> {
    pub fn new(contract: &'c Contract) -> Self {
        ExchangeLog { contract }
    }

    /// Every violation in `exchanges`, each prefixed with the exchange's index, method and path.
    pub fn check_all(&self, exchanges: &[Exchange]) -> Vec<String> {
        exchanges
            .iter()
            .enumerate()
            .flat_map(|(i, ex)| match self.contract.check_exchange(ex) {
                Ok(()) => Vec::new(),
                Err(v) => v
                    .into_iter()
                    .map(|m| format!("#{i} {} {}: {m}", ex.method, ex.path))
                    .collect(),
            })
            .collect()
    }

    /// Panic with every violation (test helper).
    #[track_caller]
    pub fn assert_all(&self, exchanges: &[Exchange]) {
        let violations = self.check_all(exchanges);
        assert!(
            violations.is_empty(),
            "{} contract violation(s) against {}:\n{}",
            violations.len(),
            self.contract.title,
            violations.join("\n")
        );
    }
}

/// Name OpenAPI generators use for "any other form part" in the Cloudflare document.
const ANY_PART: &str = "<any part name>";

const LINSTOR_MASK_ERROR: u64 = 0xC000_0000_0000_0000;
const LINSTOR_MASK_CODE: u64 = 0x7FFF;

/// The HTTP status LINSTOR answers for an error ret_code (ApiCallRcRestUtils.toResponse,
/// linstor.md §2).
fn linstor_status_for(ret_code: i64) -> u16 {
    match (ret_code as u64) & LINSTOR_MASK_CODE {
        300..=399 => 404,
        400..=499 | 10000 => 403,
        10001 => 401,
        _ => 500,
    }
}

/// A multipart schema alternative: an object whose properties are the form's parts.
struct FormSchema<'v>(&'v Value);

impl<'v> FormSchema<'v> {
    fn properties(&self) -> Vec<(&'v str, &'v Value)> {
        self.0
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
            .unwrap_or_default()
    }

    fn required(&self) -> Vec<&'v str> {
        self.0
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

fn errors_of(validator: &Validator, instance: &Value, what: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut more = 0;
    for error in validator.iter_errors(instance) {
        if out.len() == MAX_ERRORS_PER_BODY {
            more += 1;
            continue;
        }
        let at = error.instance_path().to_string();
        let at = if at.is_empty() { "/".to_string() } else { at };
        out.push(format!("{what} at {at}: {}", describe(&error, 0)));
    }
    if more > 0 {
        out.push(format!("{what}: {more} more schema error(s)"));
    }
    out
}

/// One error with values masked (a body may hold a secret; the JSON type is enough to
/// diagnose), and for anyOf/oneOf the reasons each alternative failed.
fn describe(error: &jsonschema::ValidationError<'_>, depth: usize) -> String {
    let mut text = format!(
        "{} (got {})",
        error.masked_with("the value"),
        json_type(error.instance())
    );
    let branches = match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            context.as_slice()
        }
        _ => &[],
    };
    if depth < 2 {
        for (i, branch) in branches.iter().enumerate() {
            let reasons: Vec<String> = branch
                .iter()
                .take(3)
                .map(|e| {
                    let at = e.instance_path().to_string();
                    let at = if at.is_empty() { "/".to_string() } else { at };
                    format!("at {at}: {}", describe(e, depth + 1))
                })
                .collect();
            text.push_str(&format!("; alternative {}: {}", i + 1, reasons.join(", ")));
        }
    }
    text
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn undeclared_status(op: &Operation, status: u16) -> String {
    let declared: Vec<&str> = op.responses.keys().map(String::as_str).collect();
    format!(
        "{}: response status {status} is not declared (declared: {})",
        op.label(),
        list_or_none(&declared)
    )
}

/// The response key for `status`: exact, then a range such as `4XX`, then `default`.
fn status_key(op: &Operation, status: u16) -> Option<&str> {
    let exact = status.to_string();
    let range = format!("{}XX", status / 100);
    op.responses
        .keys()
        .find(|k| **k == exact)
        .or_else(|| op.responses.keys().find(|k| k.eq_ignore_ascii_case(&range)))
        .or_else(|| op.responses.keys().find(|k| k.as_str() == "default"))
        .map(String::as_str)
}

/// `(media type, schema)` pairs of an operation's request body; a missing schema is `{}`.
fn request_media(op: &Operation) -> Vec<(&str, &Value)> {
    static EMPTY: OnceLock<Value> = OnceLock::new();
    let empty = EMPTY.get_or_init(|| json!({}));
    op.request_body
        .as_ref()
        .map(|b| {
            content_of(b)
                .into_iter()
                .map(|(k, m)| (k, m.get("schema").unwrap_or(empty)))
                .collect()
        })
        .unwrap_or_default()
}

fn content_of(holder: &Value) -> Vec<(&str, &Value)> {
    holder
        .get("content")
        .and_then(Value::as_object)
        .map(|c| c.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default()
}

fn is_empty_schema(schema: &Value) -> bool {
    schema.as_object().is_some_and(|m| m.is_empty())
}

/// `type/subtype` in lower case, parameters dropped.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_json(media: &str) -> bool {
    let media = essence(media);
    media == "application/json" || media.ends_with("+json")
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// Decoded query pairs in order, repeated names kept.
type QueryPairs = Vec<(String, String)>;

fn split_query(path: &str) -> Result<(&str, QueryPairs), String> {
    match path.split_once('?') {
        Some((p, q)) => Ok((p, params::parse_query(q)?)),
        None => Ok((path, Vec::new())),
    }
}

/// Apply the `DropKeyword` and `AcceptNull` deviations to the raw document.
fn apply_patches(doc: &mut Value, fixes: &[Fix]) -> anyhow::Result<()> {
    for fix in fixes {
        match fix {
            Fix::DropKeyword { pointer, keyword } => {
                let target = doc
                    .pointer_mut(pointer)
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| {
                        anyhow!("deviation {fix:?}: {pointer} is not in the document")
                    })?;
                if target.remove(*keyword).is_none() {
                    bail!("deviation {fix:?}: {pointer} has no '{keyword}' any more");
                }
            }
            Fix::OneOfAsAnyOf { pointer } => {
                let target = doc
                    .pointer_mut(pointer)
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| {
                        anyhow!("deviation {fix:?}: {pointer} is not in the document")
                    })?;
                let one_of = target
                    .remove("oneOf")
                    .ok_or_else(|| anyhow!("deviation {fix:?}: {pointer} has no oneOf any more"))?;
                target.insert("anyOf".into(), one_of);
            }
            Fix::AcceptNull { pointer } => {
                let target = doc
                    .pointer_mut(pointer)
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| {
                        anyhow!("deviation {fix:?}: {pointer} is not in the document")
                    })?;
                target.insert(translate::ACCEPT_NULL.into(), Value::Bool(true));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every `$ref` must name something in the document; a dangling one would silently validate
/// nothing.
fn check_refs(doc: &Value) -> anyhow::Result<()> {
    fn walk<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r);
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(doc, &mut refs);
    let dangling: Vec<&str> = refs
        .into_iter()
        .filter(|r| {
            r.strip_prefix('#')
                .is_none_or(|pointer| doc.pointer(pointer).is_none())
        })
        .collect();
    if !dangling.is_empty() {
        bail!("unresolvable $refs: {}", dangling.join(", "));
    }
    Ok(())
}
