//! `edgebind plan` and the controller run the same passes; this shows it by outcome: plan over
//! `examples/`, then the controller over the same objects (fake API server, LINSTOR simulator),
//! and the LINSTOR writes and final conditions must be the same.

use std::path::PathBuf;

use edgebind::cli::{PlanArgs, PlanOutput};
use edgebind::crd::{EdgeSnapshot, EdgeVolume};
use edgebind_sim::linstor::SimConfig;
use kube::api::PostParams;
use serde_json::{Value, json};

use crate::support::bed::{Bed, NS, fast_config};

const OWNER_UID: &str = "Aux/edgebind.dev/owner-uid";

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every EdgeVolume and EdgeSnapshot document in the examples, by (kind, name).
fn example_docs() -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .expect("examples/ is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("example is readable");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("example is YAML");
            if matches!(v["kind"].as_str(), Some("EdgeVolume" | "EdgeSnapshot")) {
                docs.push(v);
            }
        }
    }
    docs
}

/// Uids differ between plan (none, so made up) and the cluster; everything else must not.
fn normalise(mut body: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == OWNER_UID {
                        *x = json!("<uid>");
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut body);
    body
}

/// (kind, name, [(type, status, reason)]) for the LINSTOR-side objects of a plan report.
type Conds = Vec<(String, String, Vec<(String, bool, String)>)>;

fn planned_conditions(report: &Value) -> Conds {
    report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("EdgeVolume" | "EdgeSnapshot")))
        .map(|o| {
            let conds = o["conditions"]
                .as_array()
                .expect("conditions")
                .iter()
                .map(|c| {
                    (
                        c["type"].as_str().unwrap_or_default().to_string(),
                        c["status"].as_bool().unwrap_or_default(),
                        c["reason"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            (
                o["kind"].as_str().unwrap_or_default().to_string(),
                o["name"].as_str().unwrap_or_default().to_string(),
                conds,
            )
        })
        .collect()
}

#[tokio::test]
async fn plan_predicts_the_controllers_linstor_writes_and_conditions_on_every_example() {
    let report = edgebind::plan::plan(&PlanArgs {
        files: vec![examples()],
        linstor_url: None,
        linstor_ca: None,
        linstor_cert: None,
        linstor_key: None,
        linstor_token_file: None,
        output: PlanOutput::Json,
    })
    .await
    .expect("plan runs on the examples");
    let report = serde_json::to_value(&report).expect("report serialises");
    let planned_writes: Vec<(String, String, Value)> = report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .flat_map(|o| o["ops"].as_array().cloned().unwrap_or_default())
        .map(|op| {
            (
                op["method"].as_str().unwrap_or_default().to_string(),
                op["path"].as_str().unwrap_or_default().to_string(),
                normalise(op["body"].clone()),
            )
        })
        .collect();
    let planned = planned_conditions(&report);
    assert!(
        planned_writes.len() >= 8 && planned.len() == 5,
        "the examples plan four volumes and a snapshot: {planned_writes:?} {planned:?}"
    );

    // The controller, on the same objects in plan's order, each once the one before settled.
    let mut bed =
        Bed::start_without_controller(SimConfig::with_example_groups(), fast_config()).await;
    let seeded = bed.linstor.sim.exchanges().len();
    bed.start_controller();
    bed.wait_volume_backend_ready().await;
    let docs = example_docs();
    let mut observed: Conds = Vec::new();
    for (kind, name, want) in &planned {
        let doc = docs
            .iter()
            .find(|d| d["kind"] == kind.as_str() && d["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{kind} {name} is among the examples"));
        assert_eq!(doc["metadata"]["namespace"], NS, "the bed's namespace");
        let ready = want
            .iter()
            .find(|c| c.0 == "Ready")
            .expect("plan reports Ready");
        let status = if ready.1 { "True" } else { "False" };
        let conds = if kind == "EdgeVolume" {
            let v: EdgeVolume = serde_json::from_value(doc.clone()).expect("EdgeVolume");
            bed.volumes()
                .create(&PostParams::default(), &v)
                .await
                .expect("created");
            bed.wait_volume(name, status, &ready.2).await;
            // Ready can come a pass before the volume settles (a restored volume is usable
            // while edgebind rewrites the markers the restore copied): compare settled states.
            let progressing = want.iter().find(|c| c.0 == "Progressing").map(|c| c.1);
            let api = bed.volumes();
            bed.eventually(20, &format!("EdgeVolume {name} settled"), || {
                let api = api.clone();
                async move {
                    let conds = api.get(name).await.ok()?.status?.conditions;
                    let p = conds
                        .iter()
                        .find(|c| c.type_ == "Progressing")
                        .map(|c| c.status == "True");
                    (p == progressing).then_some(conds)
                }
            })
            .await
        } else {
            let s: EdgeSnapshot = serde_json::from_value(doc.clone()).expect("EdgeSnapshot");
            let api = bed.snapshots();
            api.create(&PostParams::default(), &s)
                .await
                .expect("created");
            bed.eventually(20, &format!("EdgeSnapshot {name} {status}"), || {
                let api = api.clone();
                async move {
                    let s = api.get(name).await.ok()?;
                    let conds = s.status?.conditions;
                    conds
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == status && c.reason == ready.2)
                        .then_some(conds)
                }
            })
            .await
        };
        observed.push((
            kind.clone(),
            name.clone(),
            conds
                .into_iter()
                .map(|c| (c.type_, c.status == "True", c.reason))
                .collect(),
        ));
    }
    assert_eq!(observed, planned, "conditions: controller vs plan");

    let made: Vec<(String, String, Value)> = bed
        .linstor
        .sim
        .exchanges()
        .into_iter()
        .skip(seeded)
        .filter(|e| e.method != "GET" && (200..300).contains(&e.status))
        .map(|e| {
            let body = e
                .request_body
                .as_deref()
                .filter(|b| !b.is_empty())
                .map(|b| serde_json::from_slice(b).expect("JSON request body"))
                .unwrap_or(Value::Null);
            (e.method, e.path, normalise(body))
        })
        .collect();
    assert_eq!(made, planned_writes, "LINSTOR writes: controller vs plan");
    bed.assert_contract();
}
