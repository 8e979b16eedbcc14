//! What the fake server serves: the built-in resources and those registered from CRDs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::schema::SchemaInfo;

/// Identifies a resource independent of version: objects are stored once per (group, plural).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ResKey {
    pub group: String,
    pub plural: String,
}

impl ResKey {
    pub fn new(group: &str, plural: &str) -> Self {
        ResKey {
            group: group.to_string(),
            plural: plural.to_string(),
        }
    }

    /// `plural.group` (or `plural` for the core group), as the real server names resources in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// One served version of a resource.
#[derive(Debug)]
pub(crate) struct VersionDef {
    pub name: String,
    pub status_subresource: bool,
    pub schema: Option<Arc<SchemaInfo>>,
}

#[derive(Debug)]
pub(crate) struct ResourceDef {
    pub key: ResKey,
    pub kind: String,
    pub list_kind: String,
    pub singular: String,
    pub namespaced: bool,
    pub versions: Vec<VersionDef>,
    /// Custom resources track `metadata.generation`; the built-ins we serve do not.
    pub tracks_generation: bool,
    pub is_custom: bool,
    /// Field selectors accepted beyond `metadata.name` / `metadata.namespace` (dotted paths).
    pub selectable_fields: Vec<String>,
}

impl ResourceDef {
    /// `Kind.group` (just `Kind` in the core group), as the real server names a kind in
    /// validation and precondition errors.
    pub fn kind_group(&self) -> String {
        if self.key.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.key.group)
        }
    }

    pub fn version(&self, version: &str) -> Option<&VersionDef> {
        self.versions.iter().find(|v| v.name == version)
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.key.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.key.group, version)
        }
    }

    /// Does any served version declare the status subresource? Objects are stored once, so the
    /// storage rules follow the version used by the request; this is the fallback.
    pub fn status_subresource(&self, version: &str) -> bool {
        self.version(version).is_some_and(|v| v.status_subresource)
    }
}

fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    status: bool,
    selectable: &[&str],
) -> ResourceDef {
    ResourceDef {
        key: ResKey::new(group, plural),
        kind: kind.to_string(),
        list_kind: format!("{kind}List"),
        singular: kind.to_lowercase(),
        namespaced,
        versions: vec![VersionDef {
            name: version.to_string(),
            status_subresource: status,
            schema: None,
        }],
        tracks_generation: false,
        is_custom: false,
        selectable_fields: selectable.iter().map(|s| s.to_string()).collect(),
    }
}

pub(crate) const CRD_GROUP: &str = "apiextensions.k8s.io";
pub(crate) const CRD_PLURAL: &str = "customresourcedefinitions";

/// The resources a bare cluster serves without any CRD.
pub(crate) fn builtins() -> Vec<ResourceDef> {
    const EVENT_FIELDS: &[&str] = &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ];
    const EVENTS_V1_FIELDS: &[&str] = &[
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "reason",
        "reportingController",
        "type",
    ];
    let mut crd = builtin(
        CRD_GROUP,
        "v1",
        CRD_PLURAL,
        "CustomResourceDefinition",
        false,
        true,
        &[],
    );
    // CRDs do carry a generation on a real server.
    crd.tracks_generation = true;
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            true,
            &["status.phase"],
        ),
        builtin("", "v1", "secrets", "Secret", true, false, &["type"]),
        builtin("", "v1", "configmaps", "ConfigMap", true, false, &[]),
        // edgebind's static PVs (EdgeVolume.spec.persistentVolume) and the claims binding them.
        builtin(
            "",
            "v1",
            "persistentvolumes",
            "PersistentVolume",
            false,
            true,
            &[],
        ),
        builtin(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
            true,
            &[],
        ),
        builtin("", "v1", "events", "Event", true, false, EVENT_FIELDS),
        builtin("", "v1", "services", "Service", true, true, &[]),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            false,
            &[],
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            false,
            EVENTS_V1_FIELDS,
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            false,
            &[],
        ),
        crd,
    ]
}

pub(crate) fn is_event_resource(key: &ResKey) -> bool {
    key.plural == "events" && (key.group.is_empty() || key.group == "events.k8s.io")
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Builds the served resource from a CRD object (JSON form), checking what the real server checks
/// before it accepts one: names, scope and at least one served version.
pub(crate) fn from_crd(crd: &Value) -> ApiResult<ResourceDef> {
    let group = str_at(crd, &["spec", "group"])
        .ok_or_else(|| ApiError::invalid("spec.group: Required value"))?;
    let plural = str_at(crd, &["spec", "names", "plural"])
        .ok_or_else(|| ApiError::invalid("spec.names.plural: Required value"))?;
    let kind = str_at(crd, &["spec", "names", "kind"])
        .ok_or_else(|| ApiError::invalid("spec.names.kind: Required value"))?;
    let name = str_at(crd, &["metadata", "name"]).unwrap_or_default();
    if name != format!("{plural}.{group}") {
        return Err(ApiError::invalid(format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"{name}\" is invalid: metadata.name: \
             Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        )));
    }
    let namespaced = match str_at(crd, &["spec", "scope"]) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(ApiError::invalid(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            )));
        }
    };
    let mut versions = Vec::new();
    let mut selectable = BTreeMap::new();
    for v in crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !v.get("served").and_then(Value::as_bool).unwrap_or(false) {
            continue;
        }
        let Some(vname) = v.get("name").and_then(Value::as_str) else {
            continue;
        };
        let status_subresource = v.pointer("/subresources/status").is_some();
        let schema = v
            .pointer("/schema/openAPIV3Schema")
            .map(|s| Arc::new(SchemaInfo::new(s.clone())));
        for f in v
            .get("selectableFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(p) = f.get("jsonPath").and_then(Value::as_str) {
                selectable.insert(p.trim_start_matches('.').to_string(), ());
            }
        }
        versions.push(VersionDef {
            name: vname.to_string(),
            status_subresource,
            schema,
        });
    }
    if versions.is_empty() {
        return Err(ApiError::invalid(
            "spec.versions: Invalid value: must have at least one served version",
        ));
    }
    let names = crd.pointer("/spec/names");
    Ok(ResourceDef {
        key: ResKey::new(group, plural),
        kind: kind.to_string(),
        list_kind: names
            .and_then(|n| n.get("listKind"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{kind}List")),
        singular: names
            .and_then(|n| n.get("singular"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        namespaced,
        versions,
        tracks_generation: true,
        is_custom: true,
        selectable_fields: selectable.into_keys().collect(),
    })
}
