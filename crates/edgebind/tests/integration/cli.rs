//! The generated files and the newcomer's first command.

use edgebind::cli::{PlanArgs, PlanOutput};

#[test]
fn crds_folder_matches_generated_output() {
    let want = edgebind::crd::to_yaml(&edgebind::crd::all()).expect("CRDs render");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/edgebind.dev.yaml");
    let have = std::fs::read_to_string(path).expect("crds/edgebind.dev.yaml exists");
    assert!(
        have == want,
        "crds/edgebind.dev.yaml is stale: run `cargo run -q -- crds > crds/edgebind.dev.yaml`"
    );
}

#[test]
fn crds_follow_the_conventions() {
    for crd in edgebind::crd::all() {
        let n = &crd.spec.names;
        assert_eq!(
            n.categories.as_deref(),
            Some(&["edgebind".to_string()][..]),
            "{}",
            n.kind
        );
        assert!(
            n.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{}",
            n.kind
        );
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} has a status subresource",
            n.kind
        );
        let cols = v
            .additional_printer_columns
            .as_ref()
            .expect("printer columns");
        assert!(
            cols.iter().any(|c| c.name == "Ready"),
            "{} shows Ready",
            n.kind
        );
        let schema = serde_json::to_value(v.schema.as_ref().unwrap()).unwrap();
        let conds = &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conds["x-kubernetes-list-type"], "map", "{}", n.kind);
        assert_eq!(
            conds["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        // Every spec field is described, so `kubectl explain` helps.
        fn described(path: &str, s: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = s.get("properties").and_then(|p| p.as_object()) {
                for (k, v) in props {
                    if v.get("description").is_none()
                        && !path.contains("conditions")
                        && !path.contains("metadata")
                    {
                        missing.push(format!("{path}.{k}"));
                    }
                    described(&format!("{path}.{k}"), v, missing);
                }
            }
            if let Some(items) = s.get("items") {
                described(&format!("{path}[]"), items, missing);
            }
        }
        let mut missing = Vec::new();
        described(
            "spec",
            &schema["openAPIV3Schema"]["properties"]["spec"],
            &mut missing,
        );
        assert!(
            missing.is_empty(),
            "{}: fields without description: {missing:?}",
            n.kind
        );
    }
}

#[tokio::test]
async fn plan_over_examples_shows_writes_and_ready_status() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = PlanArgs {
        files: vec![concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples").into()],
        linstor_url: None,
        linstor_ca: None,
        linstor_cert: None,
        linstor_key: None,
        linstor_token_file: None,
        output: PlanOutput::Json,
    };
    let report = edgebind::plan::plan(&args).await.expect("plan runs");
    let volumes: Vec<_> = report
        .objects
        .iter()
        .filter(|o| o.kind == "EdgeVolume")
        .collect();
    assert!(volumes.len() >= 3, "examples hold volumes");
    for v in &volumes {
        assert!(!v.ops.is_empty(), "{} plans writes", v.name);
        let ready = v
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .expect("Ready condition");
        assert!(
            ready.status,
            "{}: {} {}",
            v.name, ready.reason, ready.message
        );
    }
    let text = edgebind::plan::render_text(&report);
    assert!(text.contains("POST /v1/resource-definitions"));
    assert!(text.contains("Plan: "));
}

#[tokio::test]
async fn plan_against_live_linstor_never_writes() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim =
        edgebind_sim::linstor::LinstorSim::start(edgebind_sim::linstor::SimConfig::realistic())
            .await
            .unwrap();
    let args = PlanArgs {
        files: vec![concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples").into()],
        linstor_url: Some(sim.url()),
        linstor_ca: None,
        linstor_cert: None,
        linstor_key: None,
        linstor_token_file: None,
        output: PlanOutput::Text,
    };
    let report = edgebind::plan::plan(&args).await.expect("plan runs");
    assert_eq!(
        sim.sim.stats().writes(),
        0,
        "read-only: {:?}",
        sim.sim.stats().by_route()
    );
    assert!(sim.sim.resource_definitions().is_empty());
    let db = report
        .objects
        .iter()
        .find(|o| o.name == "postgres-data")
        .unwrap();
    assert_eq!(db.ops.len(), 3, "create, volume, autoplace planned");
}
