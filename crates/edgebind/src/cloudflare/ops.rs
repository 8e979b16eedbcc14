//! One Cloudflare write, as a value: the binding reconciler computes a list of them (pure),
//! `plan` prints them (secret values redacted), and the client executes them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::upload::ScriptUpload;
use super::worker::sha256_tagged;

/// A secret value. Debug, Display and Serialize show only its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// The value, for the request body only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `sha256:<hex>` of the value, as kept in status.
    pub fn hash(&self) -> String {
        sha256_tagged(self.0.as_bytes())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {}>", self.hash())
    }
}

impl Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("<redacted {}>", self.hash()))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum CfOp {
    /// Upload the module Worker and deploy it, setting `secrets` in the same version (other
    /// secrets are kept via `keep_bindings`): one call where upload plus `secrets-bulk` were
    /// two.
    #[serde(rename_all = "camelCase")]
    UploadScript {
        #[serde(skip)]
        upload: Box<ScriptUpload>,
        script: String,
        content_hash: String,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        secrets: BTreeMap<String, SecretValue>,
    },
    /// Set secrets in one call (`secrets-bulk`, one new version).
    #[serde(rename_all = "camelCase")]
    PutSecrets {
        script: String,
        secrets: BTreeMap<String, SecretValue>,
    },
    /// Remove one secret we set earlier.
    #[serde(rename_all = "camelCase")]
    DeleteSecret { script: String, name: String },
    #[serde(rename_all = "camelCase")]
    CreateRoute {
        zone: String,
        pattern: String,
        script: String,
    },
    /// Point a route we created back at our script (someone changed it).
    #[serde(rename_all = "camelCase")]
    UpdateRoute {
        zone: String,
        id: String,
        pattern: String,
        script: String,
    },
    #[serde(rename_all = "camelCase")]
    DeleteRoute {
        zone: String,
        id: String,
        pattern: String,
    },
    #[serde(rename_all = "camelCase")]
    DeleteScript { script: String },
}

impl CfOp {
    /// What the write does, for a person (never a secret value).
    pub fn summary(&self) -> String {
        match self {
            CfOp::UploadScript {
                script,
                content_hash,
                secrets,
                ..
            } if secrets.is_empty() => format!("upload Worker {script} ({content_hash})"),
            CfOp::UploadScript {
                script,
                content_hash,
                secrets,
                ..
            } => format!(
                "upload Worker {script} ({content_hash}) with secrets {}",
                secrets.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            CfOp::PutSecrets { script, secrets } => format!(
                "set secrets {} of Worker {script}",
                secrets.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
            CfOp::DeleteSecret { script, name } => {
                format!("delete secret {name} of Worker {script}")
            }
            CfOp::CreateRoute {
                pattern, script, ..
            } => format!("create route {pattern} -> {script}"),
            CfOp::UpdateRoute {
                pattern,
                script,
                id,
                ..
            } => format!("update route {id} {pattern} -> {script}"),
            CfOp::DeleteRoute { pattern, id, .. } => format!("delete route {id} {pattern}"),
            CfOp::DeleteScript { script } => format!("delete Worker {script}"),
        }
    }

    /// HTTP method and path template, for plan output.
    pub fn endpoint(&self) -> (&'static str, &'static str) {
        const S: &str = "/accounts/{account_id}/workers/scripts/{script_name}";
        match self {
            CfOp::UploadScript { .. } => ("PUT", S),
            CfOp::PutSecrets { .. } => (
                "PATCH",
                "/accounts/{account_id}/workers/scripts/{script_name}/secrets-bulk",
            ),
            CfOp::DeleteSecret { .. } => (
                "DELETE",
                "/accounts/{account_id}/workers/scripts/{script_name}/secrets/{secret_name}",
            ),
            CfOp::CreateRoute { .. } => ("POST", "/zones/{zone_id}/workers/routes"),
            CfOp::UpdateRoute { .. } => ("PUT", "/zones/{zone_id}/workers/routes/{route_id}"),
            CfOp::DeleteRoute { .. } => ("DELETE", "/zones/{zone_id}/workers/routes/{route_id}"),
            CfOp::DeleteScript { .. } => ("DELETE", S),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_print() {
        let op = CfOp::PutSecrets {
            script: "gw".into(),
            secrets: BTreeMap::from([("SIGNING_KEY".into(), SecretValue::new("hunter2-private"))]),
        };
        let dbg = format!("{op:?}");
        let json = serde_json::to_string(&op).unwrap();
        let sum = op.summary();
        for s in [&dbg, &json, &sum] {
            assert!(!s.contains("hunter2"), "{s}");
        }
        assert!(json.contains("<redacted sha256:"), "{json}");
    }
}
