//! Discovery documents (`/apis`, `/api/v1`, `/apis/{group}/{version}`) built from what is served,
//! so that `kube::Discovery` and `kubectl` can find the resources.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::store::State;

impl State {
    pub(crate) fn group_list(&self) -> Value {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in self.resources.values() {
            if r.def.key.group.is_empty() {
                continue;
            }
            let versions = groups.entry(r.def.key.group.as_str()).or_default();
            for v in &r.def.versions {
                if !versions.contains(&v.name.as_str()) {
                    versions.push(v.name.as_str());
                }
            }
        }
        let groups: Vec<Value> = groups
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    pub(crate) fn resource_list(&self, group: &str, version: &str) -> Value {
        let mut out = Vec::new();
        for r in self.resources.values() {
            let def = &r.def;
            if def.key.group != group {
                continue;
            }
            let Some(v) = def.version(version) else {
                continue;
            };
            let verbs = [
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ];
            out.push(json!({
                "name": def.key.plural, "singularName": def.singular, "namespaced": def.namespaced,
                "kind": def.kind, "verbs": verbs,
            }));
            if v.status_subresource {
                out.push(json!({
                    "name": format!("{}/status", def.key.plural), "singularName": "",
                    "namespaced": def.namespaced, "kind": def.kind, "verbs": ["get", "patch", "update"],
                }));
            }
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})
    }
}
