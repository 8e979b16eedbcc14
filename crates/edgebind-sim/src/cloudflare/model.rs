//! The simulator's in-memory state: accounts, Workers with their versions and deployments,
//! zones with their routes, and tokens.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::envelope::ApiError;
use super::tokens::TokenRecord;

/// Only the last this many versions can be deployed (reference §2).
pub(crate) const DEPLOYABLE_VERSIONS: usize = 100;

pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// One module of a Worker.
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    pub name: String,
    pub content_type: String,
    pub content: Bytes,
}

#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub id: String,
    pub number: u64,
    pub created_on: String,
    pub main_module: String,
    pub modules: Vec<ModuleInfo>,
    pub compatibility_date: Option<String>,
    pub compatibility_flags: Vec<String>,
    /// Full bindings, secret values included (never sent back to clients).
    pub bindings: Vec<Value>,
    pub annotations: Value,
    pub etag: String,
    pub handlers: Vec<String>,
}

impl Version {
    /// Bindings as the API shows them: secret material removed.
    pub fn public_bindings(&self) -> Vec<Value> {
        self.bindings.iter().map(redact_binding).collect()
    }

    pub fn secret_bindings(&self) -> impl Iterator<Item = &Value> {
        self.bindings.iter().filter(|b| is_secret(b))
    }

    pub fn short_json(&self) -> Value {
        json!({
            "id": self.id,
            "number": self.number,
            "metadata": {
                "author_email": "edgebind-sim@example.com",
                "author_id": "0000000000000000000000000000beef",
                "created_on": self.created_on,
                "modified_on": self.created_on,
                "source": "api",
            },
            "annotations": self.annotations,
        })
    }

    pub fn full_json(&self) -> Value {
        let mut v = self.short_json();
        v["resources"] = json!({
            "bindings": self.public_bindings(),
            "script": {"etag": self.etag, "handlers": self.handlers, "last_deployed_from": "api"},
            "script_runtime": {
                "compatibility_date": self.compatibility_date,
                "compatibility_flags": self.compatibility_flags,
                "usage_model": "standard",
                "limits": {"cpu_ms": 30000},
            },
        });
        v
    }
}

pub(crate) fn is_secret(b: &Value) -> bool {
    matches!(
        b.get("type").and_then(Value::as_str),
        Some("secret_text" | "secret_key")
    )
}

pub(crate) fn binding_name(b: &Value) -> Option<&str> {
    b.get("name").and_then(Value::as_str)
}

/// Removes write-only fields of secret bindings.
pub(crate) fn redact_binding(b: &Value) -> Value {
    let mut b = b.clone();
    if is_secret(&b)
        && let Some(obj) = b.as_object_mut()
    {
        obj.remove("text");
        obj.remove("key_base64");
        obj.remove("key_jwk");
    }
    b
}

/// Content hash of a Worker's modules (hex SHA-256), used as its etag.
pub(crate) fn etag_of(main_module: &str, modules: &[ModuleInfo]) -> String {
    let mut h = Sha256::new();
    h.update(main_module.as_bytes());
    for m in modules {
        h.update([0]);
        h.update(m.name.as_bytes());
        h.update([0]);
        h.update(m.content_type.as_bytes());
        h.update([0]);
        h.update(&m.content);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub id: String,
    pub created_on: String,
    pub versions: Vec<(String, f64)>,
    pub annotations: Value,
}

impl Deployment {
    pub fn new(versions: Vec<(String, f64)>, annotations: Value) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            created_on: now_rfc3339(),
            versions,
            annotations,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "source": "api",
            "strategy": "percentage",
            "author_email": "edgebind-sim@example.com",
            "created_on": self.created_on,
            "annotations": self.annotations,
            "versions": self.versions.iter()
                .map(|(id, p)| json!({"version_id": id, "percentage": p}))
                .collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub name: String,
    pub created_on: String,
    pub modified_on: String,
    pub tags: Vec<String>,
    /// Oldest first; never empty once created.
    pub versions: Vec<Version>,
    /// Oldest first; the last one serves traffic.
    pub deployments: Vec<Deployment>,
    /// Calls left during which the script looks absent (propagation fault).
    pub hidden_calls: u32,
    /// The script's observability setting (Workers Logs), as last uploaded.
    pub observability: Option<Value>,
}

impl Script {
    pub fn latest(&self) -> &Version {
        self.versions
            .last()
            .expect("a script always has at least one version")
    }

    /// The version serving all traffic, or the one with the largest share.
    pub fn active_version(&self) -> &Version {
        let id = self.deployments.last().and_then(|d| {
            d.versions
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(id, _)| id.clone())
        });
        id.and_then(|id| self.versions.iter().find(|v| v.id == id))
            .unwrap_or_else(|| self.latest())
    }

    /// True when the latest uploaded version serves 100 % of traffic; secret and settings
    /// edits are refused otherwise (10215 / 10214).
    pub fn latest_fully_deployed(&self) -> bool {
        let latest = &self.latest().id;
        self.deployments.last().is_some_and(|d| {
            d.versions.len() == 1 && &d.versions[0].0 == latest && d.versions[0].1 >= 100.0
        })
    }

    pub fn next_number(&self) -> u64 {
        self.versions.last().map(|v| v.number + 1).unwrap_or(1)
    }

    pub fn deployable(&self, version_id: &str) -> bool {
        let start = self.versions.len().saturating_sub(DEPLOYABLE_VERSIONS);
        self.versions[start..].iter().any(|v| v.id == version_id)
    }

    pub fn response_json(&self) -> Value {
        let v = self.active_version();
        json!({
            "id": self.name,
            "tag": self.name,
            "etag": v.etag,
            "handlers": v.handlers,
            "created_on": self.created_on,
            "modified_on": self.modified_on,
            "usage_model": "standard",
            "compatibility_date": v.compatibility_date,
            "compatibility_flags": v.compatibility_flags,
            "tags": self.tags,
            "logpush": false,
            "observability": self.observability,
            "tail_consumers": null,
            "has_modules": true,
            "has_assets": false,
            "startup_time_ms": 10,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub id: String,
    pub pattern: String,
    pub script: Option<String>,
}

impl Route {
    pub fn json(&self) -> Value {
        json!({"id": self.id, "pattern": self.pattern, "script": self.script})
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Zone {
    pub name: String,
    pub account: String,
    pub routes: Vec<Route>,
    pub dns: Vec<super::dns::DnsRecord>,
}

#[derive(Debug, Default)]
pub(crate) struct SimState {
    /// account id -> scripts by name
    pub accounts: BTreeMap<String, BTreeMap<String, Script>>,
    pub zones: BTreeMap<String, Zone>,
    pub tokens: Vec<TokenRecord>,
    /// tunnel id -> tunnel (deleted ones stay, with `deleted_at`)
    pub tunnels: BTreeMap<String, super::tunnels::Tunnel>,
    /// service id -> Workers VPC connectivity directory service
    pub vpc_services: BTreeMap<String, super::services::VpcService>,
    /// Accounts whose plan lacks Workers VPC (their directory calls are refused).
    pub vpc_denied: std::collections::BTreeSet<String>,
}

impl SimState {
    pub fn scripts_mut(
        &mut self,
        account: &str,
    ) -> Result<&mut BTreeMap<String, Script>, ApiError> {
        self.accounts
            .get_mut(account)
            .ok_or_else(ApiError::authentication)
    }

    /// A script as API calls see it: absent while a propagation fault hides it.
    pub fn visible_script(&mut self, account: &str, name: &str) -> Result<&mut Script, ApiError> {
        let script = self
            .scripts_mut(account)?
            .get_mut(name)
            .ok_or_else(ApiError::script_not_found)?;
        if script.hidden_calls > 0 {
            script.hidden_calls -= 1;
            return Err(ApiError::script_not_found());
        }
        Ok(script)
    }

    pub fn zone_mut(&mut self, zone: &str) -> Result<&mut Zone, ApiError> {
        self.zones
            .get_mut(zone)
            .ok_or_else(ApiError::authentication)
    }

    pub fn token(&self, value: &str) -> Option<&TokenRecord> {
        self.tokens.iter().find(|t| t.token.value == value)
    }
}
