//! The parts of Cloudflare's answers edgebind reads. Unknown fields are ignored: the API adds
//! fields over time.

use serde::Deserialize;

/// `GET .../tokens/verify` result.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TokenVerify {
    pub id: String,
    /// `active`, `disabled` or `expired`.
    pub status: String,
    #[serde(default)]
    pub expires_on: Option<String>,
    #[serde(default)]
    pub not_before: Option<String>,
}

/// Which verify path accepted a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Account-owned token (`/accounts/{id}/tokens/verify`).
    Account,
    /// User token (`/user/tokens/verify`).
    User,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Account => "account",
            TokenKind::User => "user",
        }
    }
}

/// One Worker in `GET .../workers/scripts` (the upload answer has the same shape).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct ScriptInfo {
    /// The script name.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub modified_on: Option<String>,
}

impl ScriptInfo {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags
            .as_ref()
            .is_some_and(|t| t.iter().any(|x| x == tag))
    }
}

/// A zone's Worker route.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Route {
    pub id: String,
    pub pattern: String,
    /// `None` for a "no Worker" exclusion route.
    #[serde(default)]
    pub script: Option<String>,
}

/// A secret as listed (the value is never returned).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct DeploymentVersion {
    pub version_id: String,
    pub percentage: f64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Deployment {
    pub id: String,
    #[serde(default)]
    pub versions: Vec<DeploymentVersion>,
}

impl Deployment {
    /// The version serving all traffic, if one does.
    pub fn sole_version(&self) -> Option<&str> {
        match self.versions.as_slice() {
            [v] if v.percentage >= 100.0 => Some(&v.version_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(crate) struct DeploymentList {
    #[serde(default)]
    pub deployments: Vec<Deployment>,
}

/// `POST .../versions` result (only the id is used).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VersionInfo {
    pub id: String,
}

/// A Cloudflare Tunnel (`cfd_tunnel`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Tunnel {
    pub id: String,
    pub name: String,
    /// `inactive`, `degraded`, `healthy` or `down`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub deleted_at: Option<String>,
}

/// One connected cloudflared (`GET .../cfd_tunnel/{id}/connections`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TunnelConnector {
    pub id: String,
    #[serde(default)]
    pub conns: Vec<serde_json::Value>,
}

/// A tunnel's remote configuration (`GET .../configurations`).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct TunnelConfig {
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub version: Option<u64>,
}

/// A DNS record of a zone.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DnsRecord {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub content: String,
    #[serde(default)]
    pub proxied: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

/// A Workers VPC service (connectivity directory entry). The entry itself is kept as the API
/// shows it, so drift is judged on exactly the fields edgebind writes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VpcService {
    pub service_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl VpcService {
    /// The entry's fields with its `name` (serde moved it out of `rest`).
    pub fn rest_with_name(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = self.rest.clone();
        m.insert("name".into(), serde_json::Value::String(self.name.clone()));
        m
    }
}
