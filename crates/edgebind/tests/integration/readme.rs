//! The README's policy decision table is executed: every row is evaluated against the policies
//! of `examples/40-edge.yaml`, so the documentation and the code cannot disagree again (issue
//! 12: the table's first row used to be refused).

use std::collections::BTreeMap;

use edgebind::crd::{IdentityIssuer, VolumeAccessPolicy};
use edgebind::gateway::compile::compile_bundle;
use edgebind::gateway::identity::Principal;
use edgebind::gateway::policy::{self, Action, Decision, PolicyRequest};

const GIB: u64 = 1 << 30;

fn repo_file(path: &str) -> String {
    let p = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The rows of the table whose header starts with `| caller's groups |`.
fn table_rows(readme: &str) -> Vec<Vec<String>> {
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| caller's groups |"))
        .skip(2);
    let mut rows = Vec::new();
    for l in lines.by_ref() {
        if !l.starts_with('|') {
            break;
        }
        let cells: Vec<String> = l
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        rows.push(cells);
    }
    rows
}

fn size(cell: &str) -> Option<u64> {
    let n = cell.strip_suffix(" GiB")?.trim().parse::<u64>().ok()?;
    Some(n * GIB)
}

#[test]
fn every_row_of_the_readme_decision_table_is_what_the_gateway_decides() {
    let docs: Vec<serde_json::Value> =
        serde_yaml::Deserializer::from_str(&repo_file("examples/40-edge.yaml"))
            .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
            .collect();
    let of_kind = |k: &'static str| docs.iter().filter(move |d| d["kind"] == k).cloned();
    let issuers: Vec<IdentityIssuer> = of_kind("IdentityIssuer")
        .map(|d| serde_json::from_value(d).expect("IdentityIssuer"))
        .collect();
    let policies: Vec<VolumeAccessPolicy> = of_kind("VolumeAccessPolicy")
        .map(|d| serde_json::from_value(d).expect("VolumeAccessPolicy"))
        .collect();
    assert!(!issuers.is_empty() && policies.len() >= 2);
    let bundle = compile_bundle(&issuers, &policies).bundle;

    let rows = table_rows(&repo_file("README.md"));
    assert!(rows.len() >= 5, "the table was found: {rows:?}");
    let labels = BTreeMap::new();
    for row in &rows {
        let [groups, action, volume, sz, decision, reason, deciding] = &row[..] else {
            panic!("a row has seven cells: {row:?}");
        };
        // "storage-automation (no prefix: never sent)": the first word is the group.
        let group = groups.split_whitespace().next().unwrap_or_default();
        let principal = Principal {
            issuer: "okta".into(),
            subject: "okta:caller".into(),
            groups: vec![group.to_string()],
            groups_unknown: false,
            claims: BTreeMap::new(),
        };
        let req = PolicyRequest {
            action: Action::parse(action).unwrap_or_else(|| panic!("action {action}")),
            namespace: "team-a",
            name: Some(volume),
            labels: Some(&labels),
            size_bytes: size(sz),
            client_ip: Some("203.0.113.7"),
            principal: &principal,
        };
        let out = policy::evaluate(&bundle, &req);
        let got_reason = match out.decision {
            Decision::Allow => "policy_allowed",
            _ => out.reason.map(|r| r.code()).unwrap_or("undecided"),
        };
        let got_policy = out
            .policy
            .and_then(|i| policy::policy_id(&bundle, i))
            .unwrap_or_else(|| "—".into());
        let want_policy = match deciding.split_whitespace().next() {
            Some("—") | None => "—".to_string(),
            Some(name) => format!("team-a/{name}"),
        };
        assert_eq!(
            (out.decision.as_str(), got_reason, got_policy.as_str()),
            (decision.as_str(), reason.as_str(), want_policy.as_str()),
            "README row {row:?}"
        );
    }
}
