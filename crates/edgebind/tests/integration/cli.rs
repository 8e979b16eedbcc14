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
    // The volume that asks for a PV shows its creation, for the CSI driver, pointing at the
    // resource definition; the others show none.
    let with_pv = volumes
        .iter()
        .find(|v| v.name == "app-data")
        .expect("the PV example");
    assert_eq!(with_pv.kube_ops.len(), 1, "{:?}", with_pv.kube_ops);
    let pv = &with_pv.kube_ops[0].body;
    assert_eq!(pv["metadata"]["name"], "edgebind.team-a.app-data");
    assert_eq!(pv["spec"]["csi"]["driver"], "linstor.csi.linbit.com");
    assert_eq!(
        pv["spec"]["csi"]["volumeHandle"].as_str(),
        with_pv.linstor_name.as_deref()
    );
    assert_eq!(pv["spec"]["capacity"]["storage"], "10Gi");
    assert_eq!(pv["spec"]["claimRef"]["name"], "app-data");
    assert!(
        volumes
            .iter()
            .filter(|v| v.name != "app-data")
            .all(|v| v.kube_ops.is_empty())
    );
    let text = edgebind::plan::render_text(&report);
    assert!(text.contains("POST /v1/resource-definitions"));
    assert!(text.contains(
        "+ POST /api/v1/persistentvolumes    # create PersistentVolume edgebind.team-a.app-data"
    ));
    assert!(text.contains("Plan: "));
    // The example account's tunnel and the binding's CNAME are shown with the ingress the
    // controller would write (the example binding's hostname, then the catch-all).
    let account = text
        .split("\n\n")
        .find(|s| s.starts_with("CloudflareAccount acme"))
        .expect("the account's plan");
    assert!(!account.contains("(no changes)"), "{account}");
    assert!(
        account.contains("POST /accounts/{account_id}/cfd_tunnel")
            && account.contains(r#"{\"hostname\":\"edgebind-gateway.example.com\""#)
            && account.contains(r#"{\"service\":\"http_status:404\"}"#)
            && account.contains("edgebind-tunnel-acme key token (redacted)"),
        "{account}"
    );
    assert!(
        text.contains("proxied CNAME edgebind-gateway.example.com -> <tunnel id>.cfargotunnel.com"),
        "{text}"
    );
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

/// `edgebind simulate linstor`, run as a newcomer runs it, serves every resource group the
/// examples name (issue 13), so the examples work against it as they do in `plan`.
#[tokio::test]
async fn the_standalone_linstor_simulator_serves_the_examples_resource_groups() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut named = std::collections::BTreeSet::new();
    // examples/ and its folders (examples/identity/).
    let mut files = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("examples") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                files.push(p);
            }
        }
    }
    for f in files {
        let text = std::fs::read_to_string(f).expect("read");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc).expect("YAML");
            if let Some(rg) = v["spec"]["placement"]["resourceGroup"].as_str() {
                named.insert(rg.to_string());
            }
        }
    }
    assert!(!named.is_empty(), "the examples name a resource group");
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_edgebind"))
        .args(["simulate", "linstor", "--listen", &addr.to_string()])
        .kill_on_drop(true)
        .spawn()
        .expect("edgebind simulate linstor");
    let url = format!("http://{addr}/v1/resource-groups");
    let mut served = Vec::new();
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(&url).await
            && let Ok(groups) = r.json::<Vec<serde_json::Value>>().await
        {
            served = groups
                .iter()
                .filter_map(|g| g["name"].as_str().map(str::to_string))
                .collect();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill().await;
    for rg in &named {
        assert!(served.contains(rg), "{rg} is not served: {served:?}");
    }
}

/// `edgebind crds | head -1`: the reader goes away early; the command ends quietly and
/// successfully instead of panicking on the broken pipe.
#[test]
fn crds_to_a_reader_that_stops_early_is_not_a_panic() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgebind"))
        .arg("crds")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgebind runs");
    let mut first = [0u8; 16];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("some output");
    // The pipe is closed here: the rest of the ~100 KB cannot be written.
    let out = child.wait_with_output().expect("edgebind ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
