//! `edgebind plan`: what the controller would do, without a cluster.
//!
//! It runs the controller's own pure steps (validate, plan, status) over manifests read from
//! disk. Against the embedded simulator it also applies the writes to that throwaway LINSTOR
//! and reports the status that results; against a real controller it only reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use crate::cli::{PlanArgs, PlanOutput};
use crate::cloudflare::CfOp;
use crate::controller::inventory::Inventory;
use crate::controller::ownership::{self, Owner};
use crate::controller::snapshot::{self, SnapshotPlan};
use crate::controller::volume::plan::{self as vplan, PlanInput, RestoreSource, VolumePlan};
use crate::controller::volume::{status as vstatus, validate};
use crate::crd::{CloudflareAccount, EdgeBinding, EdgeSnapshot, EdgeVolume, LinstorBackend};
use crate::linstor::tls::TlsSource;
use crate::linstor::{ClientConfig, LinstorClient, Op, naming};
use edgebind_sim::linstor::{LinstorSim, RunningSim, SimConfig};

/// The Cloudflare half of the plan (EdgeBinding).
#[path = "plan_cloudflare.rs"]
mod cfplan;

/// Resource group the embedded simulator offers, so examples using `resourceGroup` work.
pub const SIM_RESOURCE_GROUP: &str = "replicated";

#[derive(Default)]
struct Manifests {
    backends: Vec<LinstorBackend>,
    volumes: Vec<EdgeVolume>,
    snapshots: Vec<EdgeSnapshot>,
    accounts: Vec<CloudflareAccount>,
    bindings: Vec<EdgeBinding>,
    issuers: Vec<crate::crd::IdentityIssuer>,
    policies: Vec<crate::crd::VolumeAccessPolicy>,
    skipped: Vec<String>,
}

fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    matches!(
                        f.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml" | "json")
                    )
                })
                .collect();
            entries.sort();
            out.extend(entries);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            anyhow::bail!("{} does not exist", p.display());
        }
    }
    Ok(out)
}

fn parse(files: &[PathBuf]) -> anyhow::Result<Manifests> {
    let mut m = Manifests::default();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let v: Value = serde::Deserialize::deserialize(doc)
                .with_context(|| format!("{} (document {}): not valid YAML", f.display(), i + 1))?;
            if v.is_null() {
                continue;
            }
            let kind = v
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let at = || format!("{} (document {}, kind {kind})", f.display(), i + 1);
            if api != "edgebind.dev/v1alpha1" {
                m.skipped
                    .push(format!("{}: not an edgebind object, skipped", at()));
                continue;
            }
            match kind.as_str() {
                "LinstorBackend" => m.backends.push(serde_json::from_value(v).with_context(at)?),
                "EdgeVolume" => m.volumes.push(serde_json::from_value(v).with_context(at)?),
                "EdgeSnapshot" => m
                    .snapshots
                    .push(serde_json::from_value(v).with_context(at)?),
                "CloudflareAccount" => m.accounts.push(serde_json::from_value(v).with_context(at)?),
                "EdgeBinding" => m.bindings.push(serde_json::from_value(v).with_context(at)?),
                "IdentityIssuer" => m.issuers.push(serde_json::from_value(v).with_context(at)?),
                "VolumeAccessPolicy" => {
                    m.policies.push(serde_json::from_value(v).with_context(at)?)
                }
                _ => m
                    .skipped
                    .push(format!("{}: not planned by this version, skipped", at())),
            }
        }
    }
    for v in &mut m.volumes {
        v.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    for s in &mut m.snapshots {
        s.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    for b in &mut m.bindings {
        b.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    for p in &mut m.policies {
        p.metadata.namespace.get_or_insert_with(|| "default".into());
    }
    Ok(m)
}

#[derive(Serialize, Default)]
pub struct ObjectPlan {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub linstor_name: Option<String>,
    pub ops: Vec<Op>,
    /// Cloudflare writes (secret values shown as hashes only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cloudflare_ops: Vec<CfOp>,
    pub conditions: Vec<PlannedCondition>,
    pub details: BTreeMap<String, Value>,
}

#[derive(Serialize)]
pub struct PlannedCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl From<&crate::crd::conditions::Desired> for PlannedCondition {
    fn from(d: &crate::crd::conditions::Desired) -> Self {
        Self {
            type_: d.type_.into(),
            status: d.status,
            reason: d.reason.to_string(),
            message: d.message.clone(),
        }
    }
}

fn cond(type_: &str, status: bool, reason: &str, message: impl Into<String>) -> PlannedCondition {
    PlannedCondition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

#[derive(Serialize)]
pub struct PlanReport {
    pub target: String,
    pub objects: Vec<ObjectPlan>,
    pub skipped: Vec<String>,
}

/// The uid a manifest object is planned with: manifests carry none, so plan matches existing
/// LINSTOR objects by their recorded namespace and name instead.
fn plan_owner(
    kind: &'static str,
    ns: &str,
    name: &str,
    existing: Option<&crate::linstor::types::Props>,
) -> Owner {
    let uid = existing
        .filter(|p| {
            p.get(ownership::OWNER_NAMESPACE).map(String::as_str) == Some(ns)
                && p.get(ownership::OWNER_NAME).map(String::as_str) == Some(name)
                && p.get(ownership::RELEASED).is_none()
        })
        .and_then(|p| p.get(ownership::OWNER_UID).cloned())
        .unwrap_or_else(|| format!("plan-{ns}-{name}"));
    Owner {
        kind,
        namespace: ns.into(),
        name: name.into(),
        uid,
    }
}

async fn seed_simulator(url: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(
            crate::linstor::tls::client_config(None).map_err(anyhow::Error::msg)?,
        )
        .timeout(Duration::from_secs(10))
        .build()?;
    http.post(format!("{url}/v1/resource-groups"))
        .json(&serde_json::json!({"name": SIM_RESOURCE_GROUP, "description": "offered by the embedded simulator",
            "select_filter": {"place_count": 2, "storage_pool_list": ["thin"]}}))
        .send()
        .await?
        .error_for_status()?;
    http.post(format!(
        "{url}/v1/resource-groups/{SIM_RESOURCE_GROUP}/volume-groups"
    ))
    .json(&serde_json::json!({"volume_number": 0}))
    .send()
    .await?
    .error_for_status()?;
    Ok(())
}

fn live_client(
    args: &PlanArgs,
    url: &str,
    b: Option<&LinstorBackend>,
) -> anyhow::Result<LinstorClient> {
    let token = match &args.linstor_token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let tls =
        (args.linstor_ca.is_some() || args.linstor_cert.is_some()).then(|| TlsSource::Files {
            cert: args.linstor_cert.clone(),
            key: args.linstor_key.clone(),
            ca: args.linstor_ca.clone(),
        });
    let spec = b.map(|b| b.spec.clone());
    LinstorClient::new(ClientConfig {
        urls: vec![
            url::Url::parse(url).with_context(|| format!("--linstor-url {url:?} is not a URL"))?,
        ],
        tls,
        bearer_token: token,
        budget: spec.as_ref().map(|s| s.budget.clone()).unwrap_or_default(),
        timeouts: spec.map(|s| s.timeouts).unwrap_or_default(),
    })
    .map_err(anyhow::Error::msg)
}

/// Runs a plan and returns the report.
pub async fn plan(args: &PlanArgs) -> anyhow::Result<PlanReport> {
    let m = parse(&collect_files(&args.files)?)?;
    let live = args.linstor_url.clone();
    let mut sim: Option<RunningSim> = None;
    let target = match &live {
        Some(u) => format!("LINSTOR at {u} (read-only: nothing is changed)"),
        None => "the embedded LINSTOR simulator (3 nodes, pool \"thin\", resource group \"replicated\"); writes are applied to it to show the resulting status".into(),
    };
    let mut objects = Vec::new();
    let mut inventories: BTreeMap<String, (Arc<Inventory>, crate::linstor::version::Features)> =
        BTreeMap::new();

    for b in &m.backends {
        let name = b.metadata.name.clone().unwrap_or_default();
        let mut op = ObjectPlan {
            kind: "LinstorBackend".into(),
            name: name.clone(),
            ..Default::default()
        };
        if let Err(e) = b.validate_cel() {
            op.conditions.push(cond(
                "Ready",
                false,
                "Invalid",
                format!("the API server would refuse this object: {e}"),
            ));
            objects.push(op);
            continue;
        }
        let client = match &live {
            Some(u) => live_client(args, u, Some(b))?,
            None => {
                if sim.is_none() {
                    let s = LinstorSim::start(SimConfig::realistic()).await?;
                    seed_simulator(&s.url()).await?;
                    sim = Some(s);
                }
                let url = sim.as_ref().map(|s| s.url()).unwrap_or_default();
                LinstorClient::new(ClientConfig {
                    urls: vec![url::Url::parse(&url)?],
                    tls: None,
                    bearer_token: None,
                    budget: b.spec.budget.clone(),
                    timeouts: b.spec.timeouts.clone(),
                })
                .map_err(anyhow::Error::msg)?
            }
        };
        if let Some(t) = &b.spec.tls {
            op.details.insert(
                "tls".into(),
                Value::String(format!(
                    "client certificate from Secret {}/{} (not read by plan)",
                    t.namespace, t.name
                )),
            );
        }
        if let Some(t) = &b.spec.bearer_token {
            op.details.insert(
                "bearerToken".into(),
                Value::String(format!(
                    "Secret {}/{} key {} (redacted)",
                    t.namespace, t.name, t.key
                )),
            );
        }
        let client = Arc::new(client);
        match client.probe().await {
            Ok((v, features)) => {
                op.conditions.push(cond(
                    "Ready",
                    true,
                    "Connected",
                    format!("LINSTOR {} (REST API {})", v.version, v.rest_api_version),
                ));
                inventories.insert(
                    name.clone(),
                    (
                        Arc::new(Inventory::new(client, Duration::from_secs(3600))),
                        features,
                    ),
                );
            }
            Err(e) => op
                .conditions
                .push(cond("Ready", false, "Unreachable", e.to_string())),
        }
        objects.push(op);
    }

    let apply = live.is_none();
    // Plain volumes first, then snapshots, then restores (which need the snapshots).
    let (plain, restores): (Vec<&EdgeVolume>, Vec<&EdgeVolume>) =
        m.volumes.iter().partition(|v| v.spec.source.is_none());
    for v in &plain {
        objects.push(plan_volume(v, &inventories, &m.snapshots, &m.volumes, apply).await);
    }
    for s in &m.snapshots {
        objects.push(plan_snapshot(s, &inventories, &m.volumes, apply).await);
    }
    for v in &restores {
        objects.push(plan_volume(v, &inventories, &m.snapshots, &m.volumes, apply).await);
    }
    if let Some(s) = sim {
        s.stop().await;
    }
    objects
        .extend(cfplan::plan_cloudflare(&m.accounts, &m.bindings, &m.issuers, &m.policies).await?);
    Ok(PlanReport {
        target,
        objects,
        skipped: m.skipped,
    })
}

async fn plan_volume(
    v: &EdgeVolume,
    inventories: &BTreeMap<String, (Arc<Inventory>, crate::linstor::version::Features)>,
    snapshots: &[EdgeSnapshot],
    volumes: &[EdgeVolume],
    apply: bool,
) -> ObjectPlan {
    let ns = v.metadata.namespace.clone().unwrap_or_default();
    let name = v.metadata.name.clone().unwrap_or_default();
    let lname = naming::volume_name(&ns, &name);
    let mut out = ObjectPlan {
        kind: "EdgeVolume".into(),
        namespace: Some(ns.clone()),
        name: name.clone(),
        linstor_name: Some(lname.clone()),
        ..Default::default()
    };
    if let Err(e) = v.validate_cel() {
        out.conditions.push(cond(
            "Ready",
            false,
            "Invalid",
            format!("the API server would refuse this object: {e}"),
        ));
        return out;
    }
    let spec = match validate::validate(&v.spec) {
        Ok(s) => s,
        Err(msg) => {
            out.conditions
                .push(cond("Ready", false, "InvalidSpec", msg));
            return out;
        }
    };
    let Some((inv, features)) = inventories.get(&v.spec.backend_ref) else {
        out.conditions.push(cond(
            "Ready",
            false,
            "BackendNotReady",
            format!(
                "LinstorBackend {:?} is not in the manifests or not reachable",
                v.spec.backend_ref
            ),
        ));
        return out;
    };
    let source = match &spec.source_snapshot {
        None => None,
        Some(snap) => match resolve_planned_source(&ns, snap, snapshots, volumes, inv).await {
            Ok(s) => Some(s),
            Err(msg) => {
                out.conditions
                    .push(cond("Ready", false, "WaitingForSnapshot", msg));
                return out;
            }
        },
    };
    let mut observed = match inv.observe(&lname).await {
        Ok(o) => o,
        Err(e) => {
            out.conditions
                .push(cond("Ready", false, "LinstorUnreachable", e.to_string()));
            return out;
        }
    };
    let o = plan_owner(
        "EdgeVolume",
        &ns,
        &name,
        observed.rd.as_ref().map(|r| &r.props),
    );
    let adopt = v
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::crd::volume::ADOPT_RELEASED_ANNOTATION))
        .map(String::as_str)
        == Some("true");
    // Up to three passes, as the controller would make them, so restores and adoptions show
    // their follow-up writes too.
    for _ in 0..3 {
        let input = PlanInput {
            owner: &o,
            name: &lname,
            spec: &spec,
            features: *features,
            observed: &observed,
            adopt_released: adopt,
            source: source.as_ref(),
        };
        match vplan::plan(&input) {
            VolumePlan::Conflict(msg) => {
                out.conditions.push(cond("Ready", false, "Conflict", msg));
                return out;
            }
            VolumePlan::Ops(ops) if ops.is_empty() => break,
            VolumePlan::Ops(ops) => {
                let stop = !apply;
                for op in &ops {
                    if apply && let Err(e) = inv.client().execute(op).await {
                        out.ops.extend(ops.iter().cloned());
                        out.conditions
                            .push(cond("Ready", false, "LinstorError", e.to_string()));
                        return out;
                    }
                }
                out.ops.extend(ops);
                if stop {
                    break;
                }
                inv.mark_dirty(&lname);
                observed = match inv.observe(&lname).await {
                    Ok(o) => o,
                    Err(e) => {
                        out.conditions.push(cond(
                            "Ready",
                            false,
                            "LinstorUnreachable",
                            e.to_string(),
                        ));
                        return out;
                    }
                };
            }
        }
    }
    let c = vstatus::compute(&spec, &observed, !apply && !out.ops.is_empty());
    out.conditions = c.conditions.iter().map(PlannedCondition::from).collect();
    if let Some(size) = c.size {
        out.details.insert("size".into(), Value::String(size));
    }
    if !c.replicas.is_empty() {
        out.details.insert(
            "replicas".into(),
            serde_json::to_value(&c.replicas).unwrap_or(Value::Null),
        );
    }
    out
}

async fn resolve_planned_source(
    ns: &str,
    snap: &str,
    snapshots: &[EdgeSnapshot],
    volumes: &[EdgeVolume],
    inv: &Inventory,
) -> Result<RestoreSource, String> {
    let s = snapshots
        .iter()
        .find(|s| {
            s.metadata.name.as_deref() == Some(snap) && s.metadata.namespace.as_deref() == Some(ns)
        })
        .ok_or_else(|| format!("EdgeSnapshot {ns}/{snap} is not in the manifests"))?;
    if !volumes
        .iter()
        .any(|v| v.metadata.name.as_deref() == Some(s.spec.volume_ref.as_str()))
    {
        return Err(format!(
            "the volume {} of EdgeSnapshot {snap} is not in the manifests",
            s.spec.volume_ref
        ));
    }
    let rd = naming::volume_name(ns, &s.spec.volume_ref);
    let sname = naming::snapshot_name(snap);
    let observed = inv.observe(&rd).await.map_err(|e| e.to_string())?;
    let x = observed
        .snapshots
        .iter()
        .find(|x| x.name.eq_ignore_ascii_case(&sname) && x.successful())
        .ok_or_else(|| format!("EdgeSnapshot {ns}/{snap} is not taken yet; the controller restores once it is ready"))?;
    Ok(RestoreSource {
        id: format!("{ns}/{snap}"),
        resource: rd,
        snapshot: sname,
        nodes: x.nodes.clone(),
    })
}

async fn plan_snapshot(
    s: &EdgeSnapshot,
    inventories: &BTreeMap<String, (Arc<Inventory>, crate::linstor::version::Features)>,
    volumes: &[EdgeVolume],
    apply: bool,
) -> ObjectPlan {
    let ns = s.metadata.namespace.clone().unwrap_or_default();
    let name = s.metadata.name.clone().unwrap_or_default();
    let rd = naming::volume_name(&ns, &s.spec.volume_ref);
    let sname = naming::snapshot_name(&name);
    let mut out = ObjectPlan {
        kind: "EdgeSnapshot".into(),
        namespace: Some(ns.clone()),
        name: name.clone(),
        linstor_name: Some(format!("{rd}/{sname}")),
        ..Default::default()
    };
    let Some(vol) = volumes.iter().find(|v| {
        v.metadata.name.as_deref() == Some(s.spec.volume_ref.as_str())
            && v.metadata.namespace.as_deref() == Some(ns.as_str())
    }) else {
        out.conditions.push(cond(
            "Ready",
            false,
            "WaitingForVolume",
            format!("EdgeVolume {} is not in the manifests", s.spec.volume_ref),
        ));
        return out;
    };
    let Some((inv, _)) = inventories.get(&vol.spec.backend_ref) else {
        out.conditions.push(cond(
            "Ready",
            false,
            "WaitingForVolume",
            format!("LinstorBackend {} is not ready", vol.spec.backend_ref),
        ));
        return out;
    };
    inv.mark_dirty(&rd);
    let observed = match inv.observe(&rd).await {
        Ok(o) => o,
        Err(e) => {
            out.conditions
                .push(cond("Ready", false, "LinstorUnreachable", e.to_string()));
            return out;
        }
    };
    let existing = observed
        .snapshots
        .iter()
        .find(|x| x.name.eq_ignore_ascii_case(&sname));
    let o = plan_owner(
        "EdgeSnapshot",
        &ns,
        &name,
        existing.map(|x| &x.snapshot_definition_props),
    );
    match snapshot::plan(&o, &rd, &sname, existing) {
        SnapshotPlan::Conflict(msg) => out.conditions.push(cond("Ready", false, "Conflict", msg)),
        SnapshotPlan::Observe => {
            let ok = existing.is_some_and(|x| x.successful());
            out.conditions.push(cond(
                "Ready",
                ok,
                if ok { "Ready" } else { "Creating" },
                format!("snapshot {sname} of {rd}"),
            ));
        }
        SnapshotPlan::Create(op) => {
            if apply {
                if observed.rd.is_none() {
                    out.ops.push(op);
                    out.conditions.push(cond(
                        "Ready",
                        false,
                        "WaitingForVolume",
                        format!("EdgeVolume {} is not created", s.spec.volume_ref),
                    ));
                    return out;
                }
                if let Err(e) = inv.client().execute(&op).await {
                    out.ops.push(op);
                    out.conditions
                        .push(cond("Ready", false, "LinstorError", e.to_string()));
                    return out;
                }
                inv.mark_dirty(&rd);
                let ok = inv
                    .observe(&rd)
                    .await
                    .ok()
                    .and_then(|o| {
                        o.snapshots
                            .into_iter()
                            .find(|x| x.name.eq_ignore_ascii_case(&sname))
                    })
                    .is_some_and(|x| x.successful());
                out.conditions.push(cond(
                    "Ready",
                    ok,
                    if ok { "Ready" } else { "Creating" },
                    format!("snapshot {sname} of {rd}"),
                ));
            } else {
                out.conditions.push(cond(
                    "Ready",
                    false,
                    "Creating",
                    format!("the controller would snapshot {rd} as {sname}"),
                ));
            }
            out.ops.push(op);
        }
    }
    out
}

/// Renders a report for a person.
pub fn render_text(r: &PlanReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "edgebind plan against {}\n", r.target);
    let (mut c, mut ch, mut d) = (0, 0, 0);
    for o in &r.objects {
        let id = match &o.namespace {
            Some(ns) => format!("{} {ns}/{}", o.kind, o.name),
            None => format!("{} {}", o.kind, o.name),
        };
        match &o.linstor_name {
            Some(l) => {
                let _ = writeln!(s, "{id}  ->  LINSTOR {l}");
            }
            None => {
                let _ = writeln!(s, "{id}");
            }
        }
        if o.ops.is_empty() && o.cloudflare_ops.is_empty() {
            let _ = writeln!(s, "  (no changes)");
        }
        for op in &o.cloudflare_ops {
            let sign = match op {
                CfOp::UploadScript { .. } | CfOp::CreateRoute { .. } => {
                    c += 1;
                    "+"
                }
                CfOp::PutSecrets { .. } | CfOp::UpdateRoute { .. } => {
                    ch += 1;
                    "~"
                }
                _ => {
                    d += 1;
                    "-"
                }
            };
            let (method, path) = op.endpoint();
            let _ = writeln!(s, "  {sign} {method} {path}    # {}", op.summary());
            if let CfOp::PutSecrets { secrets, .. } = op {
                for (k, v) in secrets {
                    let _ = writeln!(s, "      {k} = <redacted {}>", v.hash());
                }
            }
        }
        for op in &o.ops {
            let sign = match op.kind {
                crate::linstor::OpKind::Create => {
                    c += 1;
                    "+"
                }
                crate::linstor::OpKind::Change => {
                    ch += 1;
                    "~"
                }
                crate::linstor::OpKind::Delete => {
                    d += 1;
                    "-"
                }
            };
            let _ = writeln!(s, "  {sign} {} {}    # {}", op.method, op.path, op.summary);
            if let Some(b) = &op.body {
                let _ = writeln!(s, "      {}", serde_json::to_string(b).unwrap_or_default());
            }
        }
        for (k, v) in &o.details {
            let shown = match v {
                Value::String(x) => x.clone(),
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            let _ = writeln!(s, "  {k}: {shown}");
        }
        for cnd in &o.conditions {
            let _ = writeln!(
                s,
                "  {}={} ({}): {}",
                cnd.type_,
                if cnd.status { "True" } else { "False" },
                cnd.reason,
                cnd.message
            );
        }
        let _ = writeln!(s);
    }
    for k in &r.skipped {
        let _ = writeln!(s, "note: {k}");
    }
    let _ = writeln!(s, "Plan: {c} to create, {ch} to change, {d} to delete.");
    s
}

pub async fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let report = plan(args).await?;
    match args.output {
        PlanOutput::Text => print!("{}", render_text(&report)),
        PlanOutput::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(())
}

pub fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}
