//! The object store: every resource's objects, the global resourceVersion counter, the bounded
//! watch history, and the write rules the real API server applies (status subresource,
//! generation, finalizers, no-op writes, optimistic concurrency, garbage collection by owner).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::error::{ApiError, ApiResult};
use super::patch::{self, FieldElem, FieldPath, FieldSet, MergeRules, PatchKind};
use super::resources::{self, CRD_GROUP, CRD_PLURAL, ResKey, ResourceDef};

/// Per-resource broadcast buffer; a watcher that falls this far behind is closed (it re-watches).
const BROADCAST_CAPACITY: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub(crate) struct WatchEvent {
    pub rv: u64,
    pub etype: EventType,
    pub object: Arc<Value>,
    /// The object before this change, so selector-filtered watches can turn a change that
    /// leaves the selection into DELETED, as the real server does.
    pub prev: Option<Arc<Value>>,
    /// The event line serialized once and shared by all watchers of the stored version.
    line: OnceLock<Bytes>,
}

impl WatchEvent {
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| event_line(self.etype.as_str(), &self.object))
            .clone()
    }
}

pub(crate) fn event_line(etype: &str, object: &Value) -> Bytes {
    let mut buf = serde_json::to_vec(&json!({ "type": etype, "object": object }))
        .expect("a JSON value always serializes");
    buf.push(b'\n');
    Bytes::from(buf)
}

type ObjKey = (String, String);
type Appliers = BTreeMap<(String, bool), FieldSet>;

pub(crate) struct ResourceState {
    pub def: Arc<ResourceDef>,
    pub objects: BTreeMap<ObjKey, Arc<Value>>,
    pub history: VecDeque<Arc<WatchEvent>>,
    /// Every event with rv > floor is still in `history`.
    pub floor: u64,
    pub tx: broadcast::Sender<Arc<WatchEvent>>,
    /// Server-side apply ownership: (manager, via /status) -> fields last applied.
    appliers: HashMap<ObjKey, Appliers>,
}

impl ResourceState {
    /// `since`: the store's resourceVersion when the resource is registered. As the real
    /// server's watch cache starts there, a watch from an older version is too old (410).
    fn new(def: ResourceDef, since: u64) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        ResourceState {
            def: Arc::new(def),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            floor: since,
            tx,
            appliers: HashMap::new(),
        }
    }
}

/// Where a request points.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub key: ResKey,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: bool,
}

pub(crate) struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub rv: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

pub(crate) struct State {
    pub rv: u64,
    /// Watch events kept per resource; older resourceVersions get 410 Expired.
    history_limit: usize,
    pub resources: HashMap<ResKey, ResourceState>,
    event_log: Vec<Arc<Value>>,
    event_index: HashMap<(ResKey, String, String), usize>,
    /// uid -> where the object lives, for owner-reference garbage collection.
    uids: HashMap<String, (ResKey, String, String)>,
    /// owner uid -> dependents.
    dependents: HashMap<String, HashSet<(ResKey, String, String)>>,
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("just made an object");
    let m = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut().expect("just made an object")
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Equal apart from `metadata` and `status`: what decides a generation bump.
fn same_spec(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let skip = |k: &String| k == "metadata" || k == "status";
    a.iter().filter(|(k, _)| !skip(k)).count() == b.iter().filter(|(k, _)| !skip(k)).count()
        && a.iter()
            .filter(|(k, _)| !skip(k))
            .all(|(k, v)| b.get(k) == Some(v))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn random_suffix() -> String {
    // The alphabet the real server uses for generateName (no vowels, no ambiguous characters).
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    use rand::Rng;
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl State {
    pub fn new(history_limit: usize) -> Self {
        let mut st = State {
            rv: 0,
            history_limit: history_limit.max(1),
            resources: HashMap::new(),
            event_log: Vec::new(),
            event_index: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
        };
        for def in resources::builtins() {
            st.resources
                .insert(def.key.clone(), ResourceState::new(def, 0));
        }
        // A fresh cluster already has these namespaces.
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let t = Target {
                key: ResKey::new("", "namespaces"),
                version: "v1".into(),
                namespace: None,
                name: None,
                status: false,
            };
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            st.create(&t, body, false)
                .expect("creating a built-in namespace in an empty store succeeds");
        }
        st
    }

    pub fn def(&self, key: &ResKey) -> Option<Arc<ResourceDef>> {
        self.resources.get(key).map(|r| r.def.clone())
    }

    fn res(&self, key: &ResKey) -> ApiResult<&ResourceState> {
        self.resources.get(key).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
    }

    fn res_mut(&mut self, key: &ResKey) -> ApiResult<&mut ResourceState> {
        self.resources.get_mut(key).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
    }

    pub fn events(&self) -> Vec<Value> {
        self.event_log.iter().map(|e| (**e).clone()).collect()
    }

    fn ns_key(def: &ResourceDef, ns: Option<&str>) -> String {
        if def.namespaced {
            ns.unwrap_or_default().to_string()
        } else {
            String::new()
        }
    }

    pub fn get(&self, key: &ResKey, ns: Option<&str>, name: &str) -> ApiResult<Arc<Value>> {
        let res = self.res(key)?;
        let k = (Self::ns_key(&res.def, ns), name.to_string());
        res.objects
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&key.qualified(), name))
    }

    /// One page of a list. `filter` applies label and field selectors.
    pub fn list(
        &self,
        key: &ResKey,
        ns: Option<&str>,
        filter: &dyn Fn(&Value) -> bool,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> ApiResult<ListPage> {
        let res = self.res(key)?;
        let (mut list_rv, start) = match continue_token {
            Some(tok) => decode_continue(tok)?,
            None => (self.rv, None),
        };
        if continue_token.is_some() && list_rv < res.floor {
            return Err(ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ));
        }
        let ns = ns.filter(|_| res.def.namespaced);
        let lower = match (&start, ns) {
            (Some(k), _) => Bound::Excluded(k.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let iter = res
            .objects
            .range((lower, Bound::Unbounded))
            .take_while(|((ons, _), _)| ns.is_none_or(|n| n == ons))
            .filter(|(_, o)| filter(o));
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = None;
        match limit.filter(|l| *l > 0) {
            None => items.extend(iter.map(|(_, o)| o.clone())),
            Some(limit) => {
                let mut iter = iter.peekable();
                let mut last = None;
                while items.len() < limit {
                    match iter.next() {
                        Some((k, o)) => {
                            items.push(o.clone());
                            last = Some(k.clone());
                        }
                        None => break,
                    }
                }
                if iter.peek().is_some() {
                    remaining = Some(iter.count());
                    next = last.map(|k| encode_continue(list_rv, &k));
                }
            }
        }
        if continue_token.is_none() {
            list_rv = self.rv;
        }
        Ok(ListPage {
            items,
            rv: list_rv,
            continue_token: next,
            remaining,
        })
    }

    /// Records a change: bumps the global resourceVersion, updates the store and indexes,
    /// appends to the history and wakes watchers.
    fn commit(
        &mut self,
        key: &ResKey,
        etype: EventType,
        mut obj: Value,
        prev: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let ns = meta_str(&obj, "namespace").unwrap_or_default().to_string();
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        let obj = Arc::new(obj);
        let loc = (key.clone(), ns.clone(), name.clone());

        // Keep the owner index in step with ownerReferences.
        if let Some(p) = &prev {
            for o in owner_uids(p) {
                if let Some(set) = self.dependents.get_mut(&o) {
                    set.remove(&loc);
                }
            }
        }
        if etype == EventType::Deleted {
            self.uids.remove(&uid);
        } else {
            self.uids.insert(uid, loc.clone());
            for o in owner_uids(&obj) {
                self.dependents.entry(o).or_default().insert(loc.clone());
            }
        }

        if resources::is_event_resource(key) {
            match self.event_index.get(&loc) {
                Some(&i) if etype != EventType::Added => self.event_log[i] = obj.clone(),
                _ => {
                    self.event_index.insert(loc.clone(), self.event_log.len());
                    self.event_log.push(obj.clone());
                }
            }
        }

        let Some(res) = self.resources.get_mut(key) else {
            return obj;
        };
        let okey = (ns, name);
        if etype == EventType::Deleted {
            res.objects.remove(&okey);
            res.appliers.remove(&okey);
        } else {
            res.objects.insert(okey, obj.clone());
        }
        let ev = Arc::new(WatchEvent {
            rv,
            etype,
            object: obj.clone(),
            prev,
            line: OnceLock::new(),
        });
        res.history.push_back(ev.clone());
        while res.history.len() > self.history_limit {
            if let Some(old) = res.history.pop_front() {
                res.floor = old.rv;
            }
        }
        // No receivers is fine; a lagging receiver is closed by its own stream.
        let _ = res.tx.send(ev);
        obj
    }

    pub fn create(&mut self, t: &Target, body: Value, dry_run: bool) -> ApiResult<Arc<Value>> {
        let def = self.res(&t.key)?.def.clone();
        let mut obj = body;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_type_meta(&def, &t.version, &mut obj)?;
        let m = meta_mut(&mut obj);
        let name = match m.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match m.get("generateName").and_then(Value::as_str) {
                Some(g) if !g.is_empty() => format!("{g}{}", random_suffix()),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        def.kind
                    )));
                }
            },
        };
        if !valid_name(&name) {
            return Err(ApiError::invalid(format!(
                "{} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": a lowercase \
                 RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                def.kind
            )));
        }
        m.insert("name".into(), Value::String(name.clone()));
        if def.namespaced {
            let Some(ns) = t.namespace.as_deref() else {
                return Err(ApiError::bad_request(
                    "a namespace is required for this resource",
                ));
            };
            if let Some(body_ns) = m.get("namespace").and_then(Value::as_str)
                && !body_ns.is_empty()
                && body_ns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            m.insert("namespace".into(), Value::String(ns.to_string()));
        } else {
            m.remove("namespace");
        }
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            m.remove(f);
        }
        m.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        m.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
        if def.tracks_generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        if def.namespaced {
            let ns = t.namespace.clone().unwrap_or_default();
            let nskey = ResKey::new("", "namespaces");
            if self.get(&nskey, None, &ns).is_err() {
                return Err(ApiError::not_found("namespaces", &ns));
            }
        }
        let okey = (Self::ns_key(&def, t.namespace.as_deref()), name.clone());
        if self.res(&t.key)?.objects.contains_key(&okey) {
            return Err(ApiError::already_exists(&t.key.qualified(), &name));
        }
        if def.status_subresource(&t.version) && def.is_custom {
            // Status is the controller's: a create cannot set it.
            obj.as_object_mut().map(|o| o.remove("status"));
        }
        if t.key == ResKey::new("", "namespaces") {
            obj["status"] = json!({"phase": "Active"});
        }
        let obj = self.admit(&def, &t.version, &name, obj, None)?;
        let obj = if t.key == ResKey::new(CRD_GROUP, CRD_PLURAL) {
            self.register_crd(obj, dry_run)?
        } else {
            obj
        };
        if dry_run {
            return Ok(Arc::new(obj));
        }
        Ok(self.commit(&t.key, EventType::Added, obj, None))
    }

    /// Schema defaulting, pruning and CEL rules for custom resources.
    fn admit(
        &self,
        def: &ResourceDef,
        version: &str,
        name: &str,
        obj: Value,
        old: Option<&Value>,
    ) -> ApiResult<Value> {
        let Some(schema) = def.version(version).and_then(|v| v.schema.clone()) else {
            return Ok(obj);
        };
        let obj = schema.default_and_prune(&obj);
        schema.validate(&def.kind_group(), name, &obj, old)?;
        Ok(obj)
    }

    /// Validates a CRD object, registers (or re-registers) its resource and marks it Established.
    fn register_crd(&mut self, mut crd: Value, dry_run: bool) -> ApiResult<Value> {
        let def = resources::from_crd(&crd)?;
        let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let storage: Vec<Value> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .filter_map(|v| v.get("name").cloned())
            .collect();
        let now = now_rfc3339();
        let cond = |t: &str, reason: &str, msg: &str| json!({"type": t, "status": "True", "lastTransitionTime": now, "reason": reason, "message": msg});
        crd["status"] = json!({
            "acceptedNames": names,
            "conditions": [
                cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            ],
            "storedVersions": storage,
        });
        if dry_run {
            return Ok(crd);
        }
        match self.resources.get_mut(&def.key) {
            Some(existing) => existing.def = Arc::new(def),
            None => {
                let since = self.rv;
                self.resources
                    .insert(def.key.clone(), ResourceState::new(def, since));
            }
        }
        Ok(crd)
    }

    pub fn update(&mut self, t: &Target, body: Value, dry_run: bool) -> ApiResult<Arc<Value>> {
        let name = t.name.clone().unwrap_or_default();
        let def = self.res(&t.key)?.def.clone();
        let old = self.get(&t.key, t.namespace.as_deref(), &name)?;
        let mut body = body;
        if !body.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_type_meta(&def, &t.version, &mut body)?;
        if let Some(n) = meta_str(&body, "name")
            && n != name
        {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if let Some(rv) = meta_str(&body, "resourceVersion")
            && !rv.is_empty()
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&t.key.qualified(), &name));
        }
        self.write_existing(t, &def, &old, body, dry_run)
    }

    /// Status/main separation and immutable metadata, then `finish_write`.
    fn write_existing(
        &mut self,
        t: &Target,
        def: &Arc<ResourceDef>,
        old: &Arc<Value>,
        body: Value,
        dry_run: bool,
    ) -> ApiResult<Arc<Value>> {
        let status_sub = def.status_subresource(&t.version);
        let mut new = if t.status {
            let mut n = (**old).clone();
            match body.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    n.as_object_mut().map(|o| o.remove("status"));
                }
            }
            n
        } else {
            let mut n = body;
            if status_sub {
                match old.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        n.as_object_mut().map(|o| o.remove("status"));
                    }
                }
            }
            n
        };
        {
            let om = meta(old).cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            for f in [
                "uid",
                "name",
                "namespace",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match om.get(f) {
                    Some(v) => m.insert(f.to_string(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.remove("managedFields");
            m.remove("selfLink");
        }
        new["apiVersion"] = Value::String(def.api_version(&t.version));
        new["kind"] = Value::String(def.kind.clone());
        self.finish_write(t, def, old, new, dry_run)
    }

    fn finish_write(
        &mut self,
        t: &Target,
        def: &Arc<ResourceDef>,
        old: &Arc<Value>,
        new: Value,
        dry_run: bool,
    ) -> ApiResult<Arc<Value>> {
        let name = meta_str(old, "name").unwrap_or_default().to_string();
        let deleting = meta(old).is_some_and(|m| m.contains_key("deletionTimestamp"));
        let new_finalizers = finalizers(&new);
        if deleting {
            let old_f = finalizers(old);
            let added: Vec<&String> = new_finalizers
                .iter()
                .filter(|f| !old_f.contains(f))
                .collect();
            if !added.is_empty() {
                // Go's %#v of a []string, as the real server prints it.
                let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
                return Err(ApiError::invalid(format!(
                    "{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can \
                     be added if the object is being deleted, found new finalizers []string{{{}}}",
                    def.kind_group(),
                    list.join(", ")
                )));
            }
        }
        let mut new = self.admit(def, &t.version, &name, new, Some(old))?;
        if def.tracks_generation && !same_spec(old, &new) {
            let g = meta(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        let mut new = if t.key == ResKey::new(CRD_GROUP, CRD_PLURAL) {
            self.register_crd(new, dry_run)?
        } else {
            new
        };
        // Compare with the stored apiVersion so that reading through another version is no change.
        if let (Some(a), Some(b)) = (old.get("apiVersion"), new.get("apiVersion"))
            && a != b
        {
            new["apiVersion"] = a.clone();
        }
        if new == **old {
            // A write that changes nothing keeps the resourceVersion and emits no event.
            return Ok(old.clone());
        }
        if dry_run {
            return Ok(Arc::new(new));
        }
        if deleting && new_finalizers.is_empty() {
            let obj = self.commit(&t.key, EventType::Deleted, new, Some(old.clone()));
            self.after_removal(&t.key, &obj);
            return Ok(obj);
        }
        Ok(self.commit(&t.key, EventType::Modified, new, Some(old.clone())))
    }

    /// Returns (object, created).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        t: &Target,
        kind: PatchKind,
        body: &[u8],
        manager: Option<&str>,
        force: bool,
        dry_run: bool,
    ) -> ApiResult<(Arc<Value>, bool)> {
        let def = self.res(&t.key)?.def.clone();
        let name = t.name.clone().unwrap_or_default();
        if kind == PatchKind::Strategic && def.is_custom {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let schema = def.version(&t.version).and_then(|v| v.schema.clone());
        let rules = MergeRules {
            schema: schema.as_deref(),
            builtin: !def.is_custom,
        };
        let existing = self.get(&t.key, t.namespace.as_deref(), &name).ok();
        if kind == PatchKind::Apply {
            let Some(manager) = manager.filter(|m| !m.is_empty()) else {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            };
            let mut applied = patch::parse_apply_body(body)?;
            if !applied.is_object() {
                return Err(ApiError::bad_request("apply body must be an object"));
            }
            check_apply_type_meta(&def, &t.version, &applied)?;
            // Apply builds a typed object from the schema: an undeclared field fails it (a 500,
            // not the pruning other writes get).
            if let Some(schema) = &schema
                && let Some(path) = first_pruned(&applied, &schema.default_and_prune(&applied), "")
            {
                return Err(ApiError::new(
                    500,
                    "",
                    format!(
                        "failed to create typed patch object ({}/{name}; {}/{}, Kind={}): {path}: field not declared in schema",
                        meta_str(&applied, "namespace").unwrap_or_default(),
                        def.key.group,
                        t.version,
                        def.kind
                    ),
                ));
            }
            if let Some(n) = meta_str(&applied, "name")
                && n != name
            {
                return Err(ApiError::bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
            meta_mut(&mut applied).insert("name".into(), Value::String(name.clone()));
            let fs = owned_fields(
                &applied,
                &rules,
                t.status,
                def.status_subresource(&t.version),
            );
            let result = match existing {
                None if t.status => return Err(ApiError::not_found(&t.key.qualified(), &name)),
                None => (self.create(t, applied, dry_run)?, true),
                Some(old) => {
                    let mut base = (*old).clone();
                    let okey = (
                        meta_str(&old, "namespace").unwrap_or_default().to_string(),
                        name.clone(),
                    );
                    apply_conflicts(
                        self.res_mut(&t.key)?,
                        t.status,
                        &okey,
                        manager,
                        &fs,
                        &applied,
                        &old,
                        &rules,
                        force,
                    )?;
                    let res = self.res(&t.key)?;
                    if let Some(appliers) = res.appliers.get(&okey)
                        && let Some(prev) = appliers.get(&(manager.to_string(), t.status))
                    {
                        let others: Vec<&FieldSet> = appliers
                            .iter()
                            .filter(|(k, _)| k.0 != manager || k.1 != t.status)
                            .map(|(_, v)| v)
                            .collect();
                        let mut stale: Vec<_> = prev
                            .difference(&fs)
                            .filter(|p| !others.iter().any(|o| o.contains(*p)))
                            .collect();
                        // Shallowest first: an item goes as a whole before its own fields
                        // would be stripped (which would also change its key).
                        stale.sort_by_key(|p| p.len());
                        for p in stale {
                            patch::remove_field(&mut base, p, &rules);
                        }
                    }
                    let patched = patch::keyed_merge(&base, &applied, &rules, false);
                    (self.write_existing(t, &def, &old, patched, dry_run)?, false)
                }
            };
            if !dry_run {
                let okey = (
                    meta_str(&result.0, "namespace")
                        .unwrap_or_default()
                        .to_string(),
                    name,
                );
                if let Ok(res) = self.res_mut(&t.key)
                    && res.objects.contains_key(&okey)
                {
                    res.appliers
                        .entry(okey)
                        .or_default()
                        .insert((manager.to_string(), t.status), fs);
                }
            }
            return Ok(result);
        }
        let Some(old) = existing else {
            return Err(ApiError::not_found(&t.key.qualified(), &name));
        };
        let patched = match kind {
            PatchKind::Merge => patch::json_merge(&old, &patch::parse_json(body)?),
            PatchKind::Json => patch::json_patch(&old, body)?,
            PatchKind::Strategic => {
                patch::keyed_merge(&old, &patch::parse_json(body)?, &rules, true)
            }
            PatchKind::Apply => unreachable!("handled above"),
        };
        if !patched.is_object() {
            return Err(ApiError::bad_request("the patch must leave an object"));
        }
        // A patch that carries a resourceVersion is a precondition, as on the real server.
        if let Some(rv) = meta_str(&patched, "resourceVersion")
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&t.key.qualified(), &name));
        }
        Ok((self.write_existing(t, &def, &old, patched, dry_run)?, false))
    }

    pub fn delete(
        &mut self,
        t: &Target,
        opts: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<Arc<Value>> {
        let def = self.res(&t.key)?.def.clone();
        let name = t.name.clone().unwrap_or_default();
        let old = self.get(&t.key, t.namespace.as_deref(), &name)?;
        if let Some(pre) = opts.and_then(|o| o.get("preconditions")) {
            // kube-apiserver 1.36's wording (checked by tests/integration/conformance.rs).
            for (field, label, hint) in [
                ("uid", "UID", "deleted and then recreated"),
                ("resourceVersion", "ResourceVersion", "modified"),
            ] {
                if let Some(want) = pre.get(field).and_then(Value::as_str) {
                    let have = meta_str(&old, field).unwrap_or_default();
                    if want != have {
                        return Err(ApiError::new(
                            409,
                            "Conflict",
                            format!(
                                "Operation cannot be fulfilled on {} \"{name}\": the {label} in the \
                                 precondition ({want}) does not match the {label} in record ({have}). \
                                 The object might have been {hint}",
                                def.kind_group()
                            ),
                        ));
                    }
                }
            }
        }
        if dry_run {
            return Ok(old);
        }
        if !finalizers(&old).is_empty() {
            if meta(&old).is_some_and(|m| m.contains_key("deletionTimestamp")) {
                return Ok(old);
            }
            let mut new = (*old).clone();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            if def.tracks_generation {
                let g = m.get("generation").and_then(Value::as_i64).unwrap_or(0);
                m.insert("generation".into(), json!(g + 1));
            }
            return Ok(self.commit(&t.key, EventType::Modified, new, Some(old)));
        }
        let obj = self.commit(&t.key, EventType::Deleted, (*old).clone(), Some(old));
        self.after_removal(&t.key, &obj);
        Ok(obj)
    }

    /// What removal of an object sets off: owner-reference garbage collection, the objects of a
    /// deleted namespace, and the resource of a deleted CRD.
    fn after_removal(&mut self, key: &ResKey, removed: &Value) {
        let mut work: Vec<(ResKey, Option<String>, String)> = Vec::new();
        if let Some(uid) = meta_str(removed, "uid")
            && let Some(deps) = self.dependents.remove(uid)
        {
            for (k, ns, name) in deps {
                let Ok(dep) = self.get(&k, Some(&ns), &name) else {
                    continue;
                };
                // Dependents with another live owner stay, as with the real garbage collector.
                if owner_uids(&dep).iter().any(|o| self.uids.contains_key(o)) {
                    continue;
                }
                work.push((k, Some(ns), name));
            }
        }
        if *key == ResKey::new("", "namespaces") {
            let ns = meta_str(removed, "name").unwrap_or_default().to_string();
            for (k, r) in &self.resources {
                if !r.def.namespaced {
                    continue;
                }
                for (ons, name) in r.objects.keys() {
                    if *ons == ns {
                        work.push((k.clone(), Some(ns.clone()), name.clone()));
                    }
                }
            }
        }
        if *key == ResKey::new(CRD_GROUP, CRD_PLURAL)
            && let Ok(def) = resources::from_crd(removed)
        {
            // Dropping the resource closes its watches (the broadcast sender goes away).
            self.resources.remove(&def.key);
        }
        for (k, ns, name) in work {
            let Some(def) = self.def(&k) else { continue };
            let t = Target {
                version: def.versions[0].name.clone(),
                key: k,
                namespace: ns,
                name: Some(name),
                status: false,
            };
            let _ = self.delete(&t, None, false);
        }
    }

    pub fn delete_collection(
        &mut self,
        t: &Target,
        filter: &dyn Fn(&Value) -> bool,
        opts: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult<Vec<Arc<Value>>> {
        let page = self.list(&t.key, t.namespace.as_deref(), filter, None, None)?;
        let mut out = Vec::new();
        for obj in page.items {
            let mut one = t.clone();
            one.namespace = meta_str(&obj, "namespace").map(str::to_string);
            one.name = meta_str(&obj, "name").map(str::to_string);
            out.push(self.delete(&one, opts, dry_run)?);
        }
        Ok(out)
    }
}

/// The first field of `sent` that pruning removed, as `.spec.field`.
fn first_pruned(sent: &Value, kept: &Value, at: &str) -> Option<String> {
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => s.iter().find_map(|(key, v)| match k.get(key) {
            None => Some(format!("{at}.{key}")),
            Some(kv) => first_pruned(v, kv, &format!("{at}.{key}")),
        }),
        (Value::Array(s), Value::Array(k)) => s
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (a, b))| first_pruned(a, b, &format!("{at}[{i}]"))),
        _ => None,
    }
}

/// Server-side apply's conflicts: a field this apply sets to a value other than the current one
/// while another applier owns it. Without `force` that is a 409 naming each; with `force` the
/// others give the field up. (The fake tracks appliers only, not `Update` managers.)
#[allow(clippy::too_many_arguments)]
fn apply_conflicts(
    res: &mut ResourceState,
    via_status: bool,
    okey: &ObjKey,
    manager: &str,
    fs: &FieldSet,
    applied: &Value,
    current: &Value,
    rules: &MergeRules,
    force: bool,
) -> ApiResult<()> {
    let Some(appliers) = res.appliers.get_mut(okey) else {
        return Ok(());
    };
    let mut conflicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((other, status), owned) in appliers.iter_mut() {
        if other == manager || *status != via_status {
            continue;
        }
        let lost: Vec<FieldPath> = fs
            .iter()
            .filter(|p| owned.contains(*p))
            .filter(|p| {
                let (a, c) = (
                    patch::value_at(applied, p, rules),
                    patch::value_at(current, p, rules),
                );
                // Objects and keyed items are containers: their leaves decide.
                !matches!(a, Some(Value::Object(_))) && a != c
            })
            .cloned()
            .collect();
        if lost.is_empty() {
            continue;
        }
        if force {
            for p in &lost {
                owned.remove(p);
            }
        } else {
            conflicts
                .entry(other.clone())
                .or_default()
                .extend(lost.iter().map(|p| patch::render_path(p)));
        }
    }
    let n: usize = conflicts.values().map(Vec::len).sum();
    if n == 0 {
        return Ok(());
    }
    // structured-merge-diff's wording, as kube-apiserver returns it.
    let detail = if n == 1 {
        let (m, paths) = conflicts.iter().next().expect("one conflict");
        format!("conflict with \"{m}\": {}", paths[0])
    } else {
        conflicts
            .iter()
            .map(|(m, paths)| {
                let list: String = paths.iter().map(|p| format!("\n- {p}")).collect();
                format!("conflicts with \"{m}\":{list}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Err(ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {n} conflict{}: {detail}",
            if n == 1 { "" } else { "s" }
        ),
    ))
}

/// The fields an apply owns, limited to what the endpoint may write.
fn owned_fields(
    applied: &Value,
    rules: &MergeRules,
    via_status: bool,
    status_sub: bool,
) -> FieldSet {
    let field = |s: &str| FieldElem::Field(s.to_string());
    patch::field_set(applied, rules)
        .into_iter()
        .filter(|p| {
            let first = p.first();
            if first == Some(&field("apiVersion")) || first == Some(&field("kind")) {
                return false;
            }
            if first == Some(&field("metadata")) {
                let second = p.get(1);
                let identity = [
                    "name",
                    "namespace",
                    "uid",
                    "resourceVersion",
                    "generation",
                    "creationTimestamp",
                ];
                if identity.iter().any(|f| second == Some(&field(f))) {
                    return false;
                }
            }
            let is_status = first == Some(&field("status"));
            if via_status {
                is_status
            } else {
                !(status_sub && is_status)
            }
        })
        .collect()
}

fn check_type_meta(def: &ResourceDef, version: &str, obj: &mut Value) -> ApiResult<()> {
    let want_av = def.api_version(version);
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(av) if av != want_av => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({want_av})"
            )));
        }
        _ => obj["apiVersion"] = Value::String(want_av),
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != def.kind => Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            def.kind
        ))),
        _ => {
            obj["kind"] = Value::String(def.kind.clone());
            Ok(())
        }
    }
}

/// Apply bodies must name their type, like `kubectl apply --server-side` input does.
fn check_apply_type_meta(def: &ResourceDef, version: &str, obj: &Value) -> ApiResult<()> {
    let av = obj.get("apiVersion").and_then(Value::as_str);
    let kind = obj.get("kind").and_then(Value::as_str);
    match (av, kind) {
        (Some(av), Some(kind)) if av == def.api_version(version) && kind == def.kind => Ok(()),
        (None, _) | (_, None) => Err(ApiError::bad_request(
            "error decoding YAML: Object 'Kind' or 'apiVersion' is missing",
        )),
        _ => Err(ApiError::bad_request(format!(
            "the apiVersion/kind in the body does not match {}/{}",
            def.api_version(version),
            def.kind
        ))),
    }
}

fn encode_continue(rv: u64, key: &ObjKey) -> String {
    use base64::Engine;
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": [key.0, key.1]});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode_continue(tok: &str) -> ApiResult<(u64, Option<ObjKey>)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion")
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tok)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_array).ok_or_else(bad)?;
    let ns = start.first().and_then(Value::as_str).ok_or_else(bad)?;
    let name = start.get(1).and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, Some((ns.to_string(), name.to_string()))))
}
