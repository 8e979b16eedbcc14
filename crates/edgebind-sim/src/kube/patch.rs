//! The four PATCH flavours: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge and
//! server-side apply, the last two approximated by a merge that merges `list-type: map` lists by key.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::schema::{ITEMS, SchemaInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got \"{other}\""
                ),
            )),
        }
    }
}

/// Which lists merge by key rather than being replaced.
pub(crate) struct MergeRules<'a> {
    pub schema: Option<&'a SchemaInfo>,
    /// Built-in types carry patch-merge keys in their Go structs; we know the common ones.
    pub builtin: bool,
}

impl MergeRules<'_> {
    fn list_keys(&self, path: &[String]) -> Option<Vec<String>> {
        if let Some(keys) = self.schema.and_then(|s| s.list_map_keys(path)) {
            return Some(keys.clone());
        }
        let last = path.last().map(String::as_str)?;
        match last {
            // Without a schema (or with one that does not say), conditions are keyed by type,
            // which is what every Kubernetes convention and kube's `ListMerge::Map` produce.
            "conditions" => Some(vec!["type".into()]),
            "ownerReferences" if self.builtin => Some(vec!["uid".into()]),
            "containers" | "initContainers" | "env" | "volumes" | "volumeMounts"
                if self.builtin =>
            {
                Some(vec!["name".into()])
            }
            _ => None,
        }
    }
}

pub(crate) fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch body: {e}")))
}

/// Apply bodies may be YAML or JSON (JSON is YAML).
pub(crate) fn parse_apply_body(body: &[u8]) -> ApiResult<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    serde_yaml::from_slice::<Value>(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

pub(crate) fn json_merge(doc: &Value, patch: &Value) -> Value {
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    out
}

pub(crate) fn json_patch(doc: &Value, body: &[u8]) -> ApiResult<Value> {
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding json patch: {e}")))?;
    let mut out = doc.clone();
    for op in patch.0 {
        // As the real server's JSON patch library: testing a missing path for `null` succeeds.
        // kube's `finalizer()` relies on it when it adds the first finalizer.
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && out.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut out, &[op]).map_err(|e| {
            // The real server answers a failed `test` (and other failed ops) with 422 Invalid.
            ApiError::invalid(format!(
                "the server rejected our request due to an error in our request: {e}"
            ))
        })?;
    }
    Ok(out)
}

/// Merge used for strategic merge and server-side apply: `null` removes, maps merge recursively,
/// keyed lists merge item by item, other lists are replaced.
pub(crate) fn keyed_merge(
    doc: &Value,
    patch: &Value,
    rules: &MergeRules,
    strategic: bool,
) -> Value {
    let mut out = doc.clone();
    merge_into(&mut out, patch, rules, &mut Vec::new(), strategic);
    out
}

fn merge_into(
    target: &mut Value,
    patch: &Value,
    rules: &MergeRules,
    path: &mut Vec<String>,
    strategic: bool,
) {
    let Value::Object(pmap) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(tmap) = target else {
        return;
    };
    for (k, pv) in pmap {
        if strategic && k.starts_with('$') {
            continue; // patch directives such as $setElementOrder are ordering hints only
        }
        if pv.is_null() {
            tmap.remove(k);
            continue;
        }
        path.push(k.clone());
        match pv {
            Value::Object(_) => {
                let entry = tmap.entry(k.clone()).or_insert(Value::Null);
                merge_into(entry, pv, rules, path, strategic);
            }
            Value::Array(items) => {
                let keys = rules.list_keys(path);
                let union = strategic
                    && rules.builtin
                    && path.len() == 2
                    && path[0] == "metadata"
                    && path[1] == "finalizers";
                match (keys, tmap.get_mut(k)) {
                    (Some(keys), Some(Value::Array(existing))) => {
                        path.push(ITEMS.to_string());
                        merge_keyed_list(existing, items, &keys, rules, path, strategic);
                        path.pop();
                    }
                    (None, Some(Value::Array(existing))) if union => {
                        for it in items {
                            if !existing.contains(it) {
                                existing.push(it.clone());
                            }
                        }
                    }
                    _ => {
                        let cleaned: Vec<Value> = items
                            .iter()
                            .filter(|i| !(strategic && is_delete_directive(i)))
                            .cloned()
                            .collect();
                        tmap.insert(k.clone(), Value::Array(cleaned));
                    }
                }
            }
            _ => {
                tmap.insert(k.clone(), pv.clone());
            }
        }
        path.pop();
    }
}

fn is_delete_directive(item: &Value) -> bool {
    item.get("$patch").and_then(Value::as_str) == Some("delete")
}

fn key_of(item: &Value, keys: &[String]) -> String {
    let vals: Vec<&Value> = keys
        .iter()
        .map(|k| item.get(k).unwrap_or(&Value::Null))
        .collect();
    serde_json::to_string(&vals).unwrap_or_default()
}

fn merge_keyed_list(
    existing: &mut Vec<Value>,
    items: &[Value],
    keys: &[String],
    rules: &MergeRules,
    path: &mut Vec<String>,
    strategic: bool,
) {
    for item in items {
        let k = key_of(item, keys);
        let pos = existing.iter().position(|e| key_of(e, keys) == k);
        if strategic && is_delete_directive(item) {
            if let Some(i) = pos {
                existing.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => merge_into(&mut existing[i], item, rules, path, strategic),
            None => {
                let mut fresh = Value::Null;
                merge_into(&mut fresh, item, rules, path, strategic);
                existing.push(fresh);
            }
        }
    }
}

/// One step of a path in a field set: a map field or a keyed list item (by its key values).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum FieldElem {
    Field(String),
    Item(String),
}

pub(crate) type FieldPath = Vec<FieldElem>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

/// The fields an applied configuration sets: the leaves, plus each keyed list item itself, so
/// that an item a manager stops applying can be removed as a whole.
pub(crate) fn field_set(applied: &Value, rules: &MergeRules) -> FieldSet {
    let mut out = FieldSet::new();
    collect_fields(applied, rules, &mut Vec::new(), &mut Vec::new(), &mut out);
    out
}

fn collect_fields(
    v: &Value,
    rules: &MergeRules,
    schema_path: &mut Vec<String>,
    fpath: &mut FieldPath,
    out: &mut FieldSet,
) {
    let Value::Object(map) = v else {
        return;
    };
    for (k, child) in map {
        schema_path.push(k.clone());
        fpath.push(FieldElem::Field(k.clone()));
        match child {
            Value::Object(m) if !m.is_empty() => {
                collect_fields(child, rules, schema_path, fpath, out);
            }
            Value::Array(items) => match rules.list_keys(schema_path) {
                Some(keys) => {
                    schema_path.push(ITEMS.to_string());
                    for item in items {
                        fpath.push(FieldElem::Item(key_of(item, &keys)));
                        out.insert(fpath.clone());
                        collect_fields(item, rules, schema_path, fpath, out);
                        fpath.pop();
                    }
                    schema_path.pop();
                    if items.is_empty() {
                        out.insert(fpath.clone());
                    }
                }
                None => {
                    out.insert(fpath.clone());
                }
            },
            _ => {
                out.insert(fpath.clone());
            }
        }
        fpath.pop();
        schema_path.pop();
    }
}

/// The value at `path` in `doc`, if present. Keyed items are found by key.
pub(crate) fn value_at<'a>(
    doc: &'a Value,
    path: &[FieldElem],
    rules: &MergeRules,
) -> Option<&'a Value> {
    let mut cur = doc;
    let mut spath: Vec<String> = Vec::new();
    for elem in path {
        match elem {
            FieldElem::Field(name) => {
                cur = cur.get(name)?;
                spath.push(name.clone());
            }
            FieldElem::Item(key) => {
                let keys = rules.list_keys(&spath)?;
                cur = cur.as_array()?.iter().find(|i| &key_of(i, &keys) == key)?;
                spath.push(ITEMS.to_string());
            }
        }
    }
    Some(cur)
}

/// A field path as the real server prints it in conflicts: `.spec.size`, `.spec.list[key]`.
pub(crate) fn render_path(path: &[FieldElem]) -> String {
    path.iter()
        .map(|e| match e {
            FieldElem::Field(f) => format!(".{f}"),
            FieldElem::Item(k) => format!("[{k}]"),
        })
        .collect()
}

/// Removes the field at `path` from `doc` (no-op when absent). Keyed items are found by key.
pub(crate) fn remove_field(doc: &mut Value, path: &[FieldElem], rules: &MergeRules) {
    remove_at(doc, path, rules, &mut Vec::new());
}

fn remove_at(doc: &mut Value, path: &[FieldElem], rules: &MergeRules, spath: &mut Vec<String>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match first {
        FieldElem::Field(name) => {
            let Value::Object(map) = doc else { return };
            if rest.is_empty() {
                map.remove(name);
                return;
            }
            spath.push(name.clone());
            if let Some(child) = map.get_mut(name) {
                remove_at(child, rest, rules, spath);
            }
            spath.pop();
        }
        FieldElem::Item(key) => {
            let Value::Array(items) = doc else { return };
            let Some(keys) = rules.list_keys(spath) else {
                return;
            };
            let Some(pos) = items.iter().position(|i| &key_of(i, &keys) == key) else {
                return;
            };
            if rest.is_empty() {
                items.remove(pos);
                return;
            }
            spath.push(ITEMS.to_string());
            remove_at(&mut items[pos], rest, rules, spath);
            spath.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: MergeRules = MergeRules {
        schema: None,
        builtin: false,
    };

    #[test]
    fn conditions_merge_by_type_and_other_lists_replace() {
        let doc = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "Synced", "status": "True"}
        ], "tags": ["a", "b"]}});
        let patch =
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}], "tags": ["c"]}});
        let out = keyed_merge(&doc, &patch, &RULES, false);
        assert_eq!(
            out,
            json!({"status": {"conditions": [
                {"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}
            ], "tags": ["c"]}})
        );
    }

    #[test]
    fn field_set_and_removal_of_keyed_item() {
        let applied =
            json!({"status": {"conditions": [{"type": "A", "status": "True"}], "msg": "x"}});
        let set = field_set(&applied, &RULES);
        assert!(set.contains(&vec![
            FieldElem::Field("status".into()),
            FieldElem::Field("msg".into())
        ]));
        let item = vec![
            FieldElem::Field("status".into()),
            FieldElem::Field("conditions".into()),
            FieldElem::Item(key_of(&json!({"type": "A"}), &["type".into()])),
        ];
        assert!(set.contains(&item));
        let mut doc = json!({"status": {"conditions": [{"type": "A"}, {"type": "B"}]}});
        remove_field(&mut doc, &item, &RULES);
        assert_eq!(doc, json!({"status": {"conditions": [{"type": "B"}]}}));
    }

    #[test]
    fn failed_json_patch_test_is_invalid() {
        let doc = json!({"metadata": {"finalizers": ["a"]}});
        let body = br#"[{"op":"test","path":"/metadata/finalizers","value":["b"]}]"#;
        let err = json_patch(&doc, body).unwrap_err();
        assert_eq!(err.code, 422);
        let first =
            br#"[{"op":"test","path":"/spec","value":null},{"op":"add","path":"/spec","value":1}]"#;
        assert_eq!(json_patch(&doc, first).unwrap()["spec"], 1);
    }
}
