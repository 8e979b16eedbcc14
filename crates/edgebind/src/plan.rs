//! `edgebind plan`: what the controller would do, without a cluster.
//!
//! It runs the controller's own pure steps (validate, plan, status) over manifests read from
//! disk. Against the embedded simulator it also applies the writes to that throwaway LINSTOR
//! and reports the status that results; against a real controller it only reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use crate::cli::{PlanArgs, PlanOutput};
use crate::cloudflare::CfOp;
use crate::controller::backends::{BackendHandle, Backends};
use crate::controller::ownership::{self, Owner};
use crate::controller::world::{Next, World};
use crate::controller::{skeleton, snapshot, volume};
use crate::crd::conditions::{Desired, READY, Reason};
use crate::crd::reasons::{BackendReason, VolumeReason};
use crate::crd::{CloudflareAccount, EdgeBinding, EdgeSnapshot, EdgeVolume, LinstorBackend};
use crate::linstor::tls::TlsSource;
use crate::linstor::types::Props;
use crate::linstor::{ClientConfig, LinstorClient, Op, naming};
use edgebind_sim::linstor::{LinstorSim, RunningSim, SimConfig};

/// The Cloudflare half of the plan (EdgeBinding).
#[path = "plan_cloudflare.rs"]
mod cfplan;

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
    /// Kubernetes writes other than status (the volume's PersistentVolume).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kube_ops: Vec<crate::controller::volume::pv::PvOp>,
    /// Cloudflare writes (secret values shown as hashes only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cloudflare_ops: Vec<CfOp>,
    pub conditions: Vec<PlannedCondition>,
    pub details: BTreeMap<String, Value>,
}

#[derive(Serialize, Clone)]
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

/// The condition of an object the API server would refuse (its CEL rules run here too).
fn refused(reason: impl Reason, e: impl std::fmt::Display) -> PlannedCondition {
    PlannedCondition::from(&Desired::new(
        READY,
        false,
        reason,
        format!("the API server would refuse this object: {e}"),
    ))
}

#[derive(Serialize)]
pub struct PlanReport {
    pub target: String,
    pub objects: Vec<ObjectPlan>,
    pub skipped: Vec<String>,
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
    let backends = Backends::default();

    for b in &m.backends {
        let name = b.metadata.name.clone().unwrap_or_default();
        let mut op = ObjectPlan {
            kind: "LinstorBackend".into(),
            name: name.clone(),
            ..Default::default()
        };
        if let Err(e) = b.validate_cel() {
            op.conditions.push(refused(BackendReason::InvalidConfig, e));
            objects.push(op);
            continue;
        }
        let client = match &live {
            Some(u) => live_client(args, u, Some(b))?,
            None => {
                if sim.is_none() {
                    // With the resource group the examples name (`replicated`).
                    sim = Some(LinstorSim::start(SimConfig::with_example_groups()).await?);
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
        let ready = match client.probe().await {
            Ok((v, features)) => {
                backends.insert_client(&name, client, features, Duration::from_secs(3600));
                Desired::new(
                    READY,
                    true,
                    BackendReason::Connected,
                    format!("LINSTOR {} (REST API {})", v.version, v.rest_api_version),
                )
            }
            Err(e) => Desired::new(READY, false, BackendReason::Unreachable, e.to_string()),
        };
        op.conditions.push(PlannedCondition::from(&ready));
        objects.push(op);
    }

    // What the API server would refuse never reaches the controller.
    let mut refusals = BTreeMap::new();
    let volumes: Vec<EdgeVolume> = m
        .volumes
        .iter()
        .filter(|v| match v.validate_cel() {
            Ok(()) => true,
            Err(e) => {
                refusals.insert(
                    (v.namespace(), v.name_any()),
                    refused(VolumeReason::InvalidSpec, e),
                );
                false
            }
        })
        .cloned()
        .collect();
    let world = Manifested {
        volumes: Mutex::new(volumes),
        snapshots: Mutex::new(m.snapshots.clone()),
        pvs: Mutex::new(Vec::new()),
        backends,
        writes: live.is_none(),
    };
    // Plain volumes first, then snapshots, then restores (which need the snapshots).
    let (plain, restores): (Vec<&EdgeVolume>, Vec<&EdgeVolume>) =
        m.volumes.iter().partition(|v| v.spec.source.is_none());
    for v in plain {
        objects.push(plan_volume(v, &world, refusals.get(&(v.namespace(), v.name_any()))).await?);
    }
    for s in &m.snapshots {
        objects.push(plan_snapshot(s, &world).await?);
    }
    for v in restores {
        objects.push(plan_volume(v, &world, refusals.get(&(v.namespace(), v.name_any()))).await?);
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

/// `plan`'s world: the manifests, with the status plan has computed for them so far, and the
/// backends it connected to. The controller's passes run against it unchanged.
struct Manifested {
    volumes: Mutex<Vec<EdgeVolume>>,
    snapshots: Mutex<Vec<EdgeSnapshot>>,
    /// The PersistentVolumes plan has created so far (a cluster has none of edgebind's yet).
    pvs: Mutex<Vec<k8s_openapi::api::core::v1::PersistentVolume>>,
    backends: Backends,
    writes: bool,
}

fn same(meta: &ObjectMeta, ns: &str, name: &str) -> bool {
    meta.namespace.as_deref() == Some(ns) && meta.name.as_deref() == Some(name)
}

impl World for Manifested {
    async fn volume(&self, ns: &str, name: &str) -> Result<Option<EdgeVolume>, kube::Error> {
        let all = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all.iter().find(|v| same(&v.metadata, ns, name)).cloned())
    }
    async fn snapshot(&self, ns: &str, name: &str) -> Result<Option<EdgeSnapshot>, kube::Error> {
        let all = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all.iter().find(|s| same(&s.metadata, ns, name)).cloned())
    }
    async fn persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::core::v1::PersistentVolume>, kube::Error> {
        let all = self.pvs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .cloned())
    }
    async fn write_pv(&self, op: &crate::controller::volume::pv::PvOp) -> Result<(), kube::Error> {
        use crate::controller::volume::pv::PvVerb;
        let mut all = self.pvs.lock().unwrap_or_else(|e| e.into_inner());
        match op.verb {
            PvVerb::Create => {
                all.push(serde_json::from_value(op.body.clone()).map_err(kube::Error::SerdeError)?)
            }
            PvVerb::Delete => all.retain(|p| p.metadata.name.as_deref() != Some(op.name.as_str())),
            // plan creates each PV once and does not grow volumes between passes.
            PvVerb::Patch => {}
        }
        Ok(())
    }
    fn backend(&self, name: &str) -> Option<Arc<BackendHandle>> {
        self.backends.get(name)
    }
    fn writes(&self) -> bool {
        self.writes
    }
    fn owner(&self, base: Owner, existing: Option<&Props>) -> Owner {
        let uid = existing
            .filter(|p| {
                p.get(ownership::OWNER_NAMESPACE) == Some(&base.namespace)
                    && p.get(ownership::OWNER_NAME) == Some(&base.name)
                    && p.get(ownership::RELEASED).is_none()
            })
            .and_then(|p| p.get(ownership::OWNER_UID).cloned())
            .unwrap_or_else(|| format!("plan-{}-{}", base.namespace, base.name));
        Owner { uid, ..base }
    }
}

impl Manifested {
    fn set_volume_status(&self, v: &EdgeVolume, p: &volume::pass::Pass) {
        let new = skeleton::status_of(
            v,
            volume::volume_status(v, &p.linstor_name, p.computed.clone()),
            &p.conditions,
        );
        let mut all = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = all.iter_mut().find(|x| x.metadata == v.metadata) {
            x.status = Some(new);
        }
    }
    fn set_snapshot_status(&self, s: &EdgeSnapshot, p: &snapshot::Pass) {
        let new = skeleton::status_of(s, p.status.clone(), std::slice::from_ref(&p.condition));
        let mut all = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = all.iter_mut().find(|x| x.metadata == s.metadata) {
            x.status = Some(new);
        }
    }
}

/// Passes per object: as many as the controller needs to settle the examples (create, then
/// observe; restore, then the follow-up writes).
const PASSES: usize = 3;

/// Whether the controller would come back for another pass that changes something.
fn again(writes: bool, ops: &[Op], next: &Next) -> bool {
    writes && !ops.is_empty() && matches!(next, Next::Progressing | Next::Settled)
}

async fn plan_volume(
    v: &EdgeVolume,
    world: &Manifested,
    refusal: Option<&PlannedCondition>,
) -> anyhow::Result<ObjectPlan> {
    let ns = v.metadata.namespace.clone().unwrap_or_default();
    let name = v.metadata.name.clone().unwrap_or_default();
    let mut out = ObjectPlan {
        kind: "EdgeVolume".into(),
        namespace: Some(ns.clone()),
        name: name.clone(),
        linstor_name: Some(naming::volume_name(&ns, &name)),
        ..Default::default()
    };
    if let Some(c) = refusal {
        out.conditions.push(c.clone());
        return Ok(out);
    }
    for _ in 0..PASSES {
        let Some(current) = world.volume(&ns, &name).await? else {
            break;
        };
        let p = volume::pass::run(world, &current).await?;
        world.set_volume_status(&current, &p);
        out.ops.extend(p.ops.iter().cloned());
        out.kube_ops.extend(p.pv_ops.iter().cloned());
        out.conditions = skeleton::with_derived(&p.conditions)
            .iter()
            .map(PlannedCondition::from)
            .collect();
        if let Some(c) = &p.computed {
            out.details.remove("size");
            if let Some(size) = &c.size {
                out.details
                    .insert("size".into(), Value::String(size.clone()));
            }
            if let Some(pv) = &c.persistent_volume {
                out.details.insert(
                    "persistentVolume".into(),
                    serde_json::to_value(pv).unwrap_or(Value::Null),
                );
            }
            if !c.replicas.is_empty() {
                out.details.insert(
                    "replicas".into(),
                    serde_json::to_value(&c.replicas).unwrap_or(Value::Null),
                );
            }
        }
        if !again(world.writes, &p.ops, &p.next) {
            break;
        }
    }
    Ok(out)
}

async fn plan_snapshot(s: &EdgeSnapshot, world: &Manifested) -> anyhow::Result<ObjectPlan> {
    let ns = s.metadata.namespace.clone().unwrap_or_default();
    let name = s.metadata.name.clone().unwrap_or_default();
    let rd = naming::volume_name(&ns, &s.spec.volume_ref);
    let mut out = ObjectPlan {
        kind: "EdgeSnapshot".into(),
        namespace: Some(ns.clone()),
        name: name.clone(),
        linstor_name: Some(format!("{rd}/{}", naming::snapshot_name(&name))),
        ..Default::default()
    };
    for _ in 0..PASSES {
        let Some(current) = world.snapshot(&ns, &name).await? else {
            break;
        };
        let p = snapshot::pass(world, &current).await?;
        world.set_snapshot_status(&current, &p);
        out.ops.extend(p.ops.iter().cloned());
        out.conditions = skeleton::with_derived(std::slice::from_ref(&p.condition))
            .iter()
            .map(PlannedCondition::from)
            .collect();
        if !again(world.writes, &p.ops, &p.next) {
            break;
        }
    }
    Ok(out)
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
        // A tunnel to create is a write too, shown in the details (its ids do not exist yet).
        if o.ops.is_empty() && o.cloudflare_ops.is_empty() && !o.details.contains_key("tunnel") {
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
            if let CfOp::PutSecrets { secrets, .. } | CfOp::UploadScript { secrets, .. } = op {
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
        for op in &o.kube_ops {
            use crate::controller::volume::pv::PvVerb;
            let (sign, method) = match op.verb {
                PvVerb::Create => {
                    c += 1;
                    ("+", "POST")
                }
                PvVerb::Patch => {
                    ch += 1;
                    ("~", "PATCH")
                }
                PvVerb::Delete => {
                    d += 1;
                    ("-", "DELETE")
                }
            };
            let _ = writeln!(
                s,
                "  {sign} {method} /api/v1/persistentvolumes{}    # {}",
                if op.verb == PvVerb::Create {
                    String::new()
                } else {
                    format!("/{}", op.name)
                },
                op.summary
            );
            if !op.body.is_null() {
                let _ = writeln!(
                    s,
                    "      {}",
                    serde_json::to_string(&op.body).unwrap_or_default()
                );
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
            let message = if cnd.message.is_empty() {
                String::new()
            } else {
                format!(": {}", cnd.message)
            };
            let _ = writeln!(
                s,
                "  {}={} ({}){message}",
                cnd.type_,
                if cnd.status { "True" } else { "False" },
                cnd.reason,
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
        PlanOutput::Text => crate::print_out(&render_text(&report)),
        PlanOutput::Json => {
            crate::print_out(&format!("{}\n", serde_json::to_string_pretty(&report)?))
        }
    }
}

pub fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}
