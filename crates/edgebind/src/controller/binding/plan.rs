//! The pure part of `EdgeBinding` reconciliation: from what is wanted, what Cloudflare shows
//! and what status recorded, the writes to make. No I/O here.
//!
//! Ownership: the script is ours when it carries our tag; a route is ours when its id is
//! recorded in status or it already points at our script. A route for the same pattern
//! pointing at another script is never touched (a conflict). Secrets are written only when
//! the hash in status differs or Cloudflare does not list them.

use std::collections::{BTreeMap, BTreeSet};

use crate::cloudflare::ops::{CfOp, SecretValue};
use crate::cloudflare::types::{Deployment, Route, ScriptInfo};
use crate::cloudflare::upload::ScriptUpload;
use crate::crd::binding::EdgeBindingStatus;

/// What the binding wants at the edge.
#[derive(Clone, Debug)]
pub(crate) struct Desired {
    pub upload: ScriptUpload,
    pub zone: String,
    pub routes: Vec<String>,
    pub secrets: BTreeMap<String, SecretValue>,
    /// Tag marking the script as this binding's.
    pub owner_tag: String,
}

/// What Cloudflare shows (one list call each).
#[derive(Clone, Debug, Default)]
pub(crate) struct Observed {
    pub script: Option<ScriptInfo>,
    pub routes: Vec<Route>,
    /// Secret names of the script (empty when the script does not exist).
    pub secret_names: BTreeSet<String>,
}

/// A pattern routed to another Worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteConflict {
    pub pattern: String,
    pub route_id: String,
    /// The other Worker, or `None` for a "no Worker" exclusion route.
    pub script: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct BindingPlan {
    pub ops: Vec<CfOp>,
    /// Desired patterns whose route belongs to someone else (left untouched).
    pub conflicts: Vec<RouteConflict>,
    /// Routes already right: pattern -> id.
    pub kept_routes: BTreeMap<String, String>,
    /// The script name is taken by a Worker edgebind did not create: nothing is written.
    pub script_conflict: Option<String>,
}

/// Hosts compare case-insensitively, paths exactly (as Cloudflare matches routes).
pub(crate) fn normalized_pattern(p: &str) -> String {
    let (scheme, rest) = match p.split_once("://") {
        Some((s, r)) => (format!("{}://", s.to_ascii_lowercase()), r),
        None => (String::new(), p),
    };
    match rest.find('/') {
        Some(i) => format!("{scheme}{}{}", rest[..i].to_ascii_lowercase(), &rest[i..]),
        None => format!("{scheme}{}", rest.to_ascii_lowercase()),
    }
}

fn script_is_ours(script: &ScriptInfo, tag: &str) -> bool {
    script.has_tag(tag)
}

pub(crate) fn plan(
    desired: &Desired,
    observed: &Observed,
    status: &EdgeBindingStatus,
) -> BindingPlan {
    let mut out = BindingPlan::default();
    let name = &desired.upload.script_name;
    if let Some(s) = &observed.script
        && !script_is_ours(s, &desired.owner_tag)
    {
        out.script_conflict = Some(format!(
            "a Worker named {name} already exists and was not created by this EdgeBinding; \
             choose another scriptName or delete that Worker"
        ));
        return out;
    }

    // Script: upload when absent, when what we upload changed, or when someone replaced it.
    let hash = desired.upload.content_hash();
    let script_fresh = observed.script.is_none();
    let etag_drift = match (&observed.script, &status.script_etag) {
        (Some(s), Some(recorded)) => s.etag.as_ref() != Some(recorded),
        _ => false,
    };
    let upload = script_fresh || status.script_hash.as_deref() != Some(hash.as_str()) || etag_drift;

    // Secrets: only those whose recorded hash differs or that Cloudflare does not list. With
    // an upload they ride in it (one version, one call); otherwise one `secrets-bulk`.
    let changed: BTreeMap<String, SecretValue> = desired
        .secrets
        .iter()
        .filter(|(k, v)| {
            script_fresh
                || !observed.secret_names.contains(*k)
                || status.secret_hashes.get(*k) != Some(&v.hash())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if upload {
        out.ops.push(CfOp::UploadScript {
            upload: Box::new(desired.upload.clone()),
            script: name.clone(),
            content_hash: hash,
            secrets: changed,
        });
    } else if !changed.is_empty() {
        out.ops.push(CfOp::PutSecrets {
            script: name.clone(),
            secrets: changed,
        });
    }
    for k in status.secret_hashes.keys() {
        if !desired.secrets.contains_key(k) && observed.secret_names.contains(k) {
            out.ops.push(CfOp::DeleteSecret {
                script: name.clone(),
                name: k.clone(),
            });
        }
    }

    // Routes.
    let recorded_ids: BTreeSet<&String> = status.route_ids.values().collect();
    let wanted: BTreeSet<String> = desired
        .routes
        .iter()
        .map(|p| normalized_pattern(p))
        .collect();
    for pattern in &desired.routes {
        let norm = normalized_pattern(pattern);
        match observed
            .routes
            .iter()
            .find(|r| normalized_pattern(&r.pattern) == norm)
        {
            Some(r) if r.script.as_deref() == Some(name.as_str()) => {
                out.kept_routes.insert(pattern.clone(), r.id.clone());
            }
            Some(r) if recorded_ids.contains(&r.id) => out.ops.push(CfOp::UpdateRoute {
                zone: desired.zone.clone(),
                id: r.id.clone(),
                pattern: pattern.clone(),
                script: name.clone(),
            }),
            Some(r) => out.conflicts.push(RouteConflict {
                pattern: pattern.clone(),
                route_id: r.id.clone(),
                script: r.script.clone(),
            }),
            None => out.ops.push(CfOp::CreateRoute {
                zone: desired.zone.clone(),
                pattern: pattern.clone(),
                script: name.clone(),
            }),
        }
    }
    for (pattern, id) in &status.route_ids {
        if wanted.contains(&normalized_pattern(pattern)) {
            continue;
        }
        // Delete only what is still ours: recorded and still pointing at our script.
        if let Some(r) = observed.routes.iter().find(|r| &r.id == id)
            && r.script.as_deref() == Some(name.as_str())
        {
            out.ops.push(CfOp::DeleteRoute {
                zone: desired.zone.clone(),
                id: id.clone(),
                pattern: r.pattern.clone(),
            });
        }
    }
    out
}

/// A deployment that is gradual (several versions sharing traffic, or one below 100 %),
/// described for a condition; `None` when one version serves all traffic. edgebind never
/// ends such a rollout: an upload or a version deploy would put one version at 100 %.
pub(crate) fn gradual(script: &str, d: &Deployment) -> Option<String> {
    if d.versions.is_empty() || d.sole_version().is_some() {
        return None;
    }
    Some(format!(
        "Worker {script} is in a gradual deployment ({})",
        d.versions
            .iter()
            .map(|v| format!("version {} at {}%", v.version_id, v.percentage))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Writes that undo a binding: our routes, then our secrets (when the script is kept) or the
/// script itself. Nothing without our marker is touched.
pub(crate) fn plan_cleanup(
    script_name: &str,
    owner_tag: &str,
    zone: &str,
    keep_script: bool,
    observed: &Observed,
    status: &EdgeBindingStatus,
) -> Vec<CfOp> {
    let mut ops = Vec::new();
    for id in status.route_ids.values() {
        if let Some(r) = observed.routes.iter().find(|r| &r.id == id)
            && r.script.as_deref() == Some(script_name)
        {
            ops.push(CfOp::DeleteRoute {
                zone: zone.to_string(),
                id: id.clone(),
                pattern: r.pattern.clone(),
            });
        }
    }
    if !observed
        .script
        .as_ref()
        .is_some_and(|s| script_is_ours(s, owner_tag))
    {
        return ops;
    }
    if keep_script {
        for k in status.secret_hashes.keys() {
            if observed.secret_names.contains(k) {
                ops.push(CfOp::DeleteSecret {
                    script: script_name.to_string(),
                    name: k.clone(),
                });
            }
        }
    } else {
        ops.push(CfOp::DeleteScript {
            script: script_name.to_string(),
        });
    }
    ops
}
