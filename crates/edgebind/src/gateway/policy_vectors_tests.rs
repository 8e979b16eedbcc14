//! The shared policy decision vectors (`tests/vectors/policy.json` at the repository root, format
//! in `tests/vectors/README.md`) run through the gateway's evaluator. The Worker runs the same file
//! (`worker/test/policy.vectors.test.mjs`), so the two evaluators cannot drift apart.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;

use super::*;

const VECTORS: &str = include_str!("../../../../tests/vectors/policy.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    #[allow(dead_code)]
    about: String,
    format: u32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    name: String,
    note: String,
    /// The compiled bundle exactly as both sides receive it (§3.1).
    bundle: Value,
    principal: VectorPrincipal,
    request: VectorRequest,
    /// The gateway's answer: the request with everything known.
    expect: Expect,
    /// The answer for the Worker's view of the request, when it differs from `expect`.
    #[serde(default)]
    expect_worker: Option<Expect>,
    #[serde(default)]
    known_disagreements: Vec<Disagreement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorPrincipal {
    issuer: String,
    subject: String,
    groups: Vec<String>,
    /// The token said its groups are held elsewhere (§2.3).
    #[serde(default, rename = "groupsUnknown")]
    groups_unknown: bool,
    /// `null` values are unevaluable claims.
    #[serde(default)]
    claims: BTreeMap<String, Option<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VectorRequest {
    action: String,
    namespace: String,
    name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    size_bytes: Option<u64>,
    client_ip: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expect {
    decision: String,
    reason: String,
    policy: Option<String>,
    #[serde(default)]
    rate_limited: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Disagreement {
    #[serde(rename = "impl")]
    implementation: String,
    view: String,
    field: String,
    note: String,
}

/// The evaluator's answer in the vectors' terms. The reason of an allow or undecided outcome is
/// named the way the gateway reports it (`can-i`, audit): `policy_allowed` / `policy_undecided`.
fn outcome(bundle: &Bundle, out: &Outcome) -> BTreeMap<&'static str, Value> {
    let reason = match (out.decision, out.reason) {
        (Decision::Allow, _) => "policy_allowed",
        (_, Some(r)) => r.code(),
        (_, None) => "policy_undecided",
    };
    let limited: Vec<String> = out
        .rate_limited
        .iter()
        .filter_map(|i| policy_id(bundle, *i))
        .collect();
    BTreeMap::from([
        ("decision", Value::from(out.decision.as_str())),
        ("reason", Value::from(reason)),
        (
            "policy",
            Value::from(out.policy.and_then(|i| policy_id(bundle, i))),
        ),
        ("rateLimited", Value::from(limited)),
    ])
}

fn expected(e: &Expect) -> BTreeMap<&'static str, Value> {
    let mut m = BTreeMap::from([
        ("decision", Value::from(e.decision.as_str())),
        ("reason", Value::from(e.reason.as_str())),
        ("policy", Value::from(e.policy.clone())),
    ]);
    if let Some(l) = &e.rate_limited {
        m.insert("rateLimited", Value::from(l.clone()));
    }
    m
}

/// Evaluates one view of a case; returns its mismatches.
fn check(case: &Case, bundle: &Bundle, who: &Principal, worker: bool) -> Vec<String> {
    let view = if worker { "worker" } else { "gateway" };
    let r = &case.request;
    let Some(action) = Action::parse(&r.action) else {
        return vec![format!("{}: unknown action {:?}", case.name, r.action)];
    };
    // The Worker knows a volume's labels only for create, from the body (§3.5).
    let labels = if worker && action != Action::Create {
        None
    } else {
        r.labels.as_ref()
    };
    let req = PolicyRequest {
        action,
        namespace: &r.namespace,
        name: r.name.as_deref(),
        labels,
        size_bytes: r.size_bytes,
        client_ip: r.client_ip.as_deref(),
        principal: who,
    };
    let got = outcome(bundle, &evaluate(bundle, &req));
    let want = expected(if worker {
        case.expect_worker.as_ref().unwrap_or(&case.expect)
    } else {
        &case.expect
    });
    let mut problems = Vec::new();
    for (field, w) in &want {
        let g = &got[field];
        let listed = case.known_disagreements.iter().find(|d| {
            d.implementation == "rust" && (d.view == view || d.view == "both") && d.field == *field
        });
        match listed {
            None if g != w => problems.push(format!(
                "{} ({view} view): {field} is {g}, the vector says {w} ({})",
                case.name, case.note
            )),
            Some(_) if g == w => problems.push(format!(
                "{} ({view} view): the gateway now agrees on {field}; remove the knownDisagreements entry",
                case.name
            )),
            Some(d) => eprintln!(
                "known disagreement, {} ({view} view) {field}: got {g}, vector {w}: {}",
                case.name, d.note
            ),
            None => {}
        }
    }
    problems
}

#[test]
fn every_vector_decides_as_the_file_says() {
    let file: VectorFile = serde_json::from_str(VECTORS).expect("tests/vectors/policy.json parses");
    assert_eq!(file.format, 1);
    assert!(file.cases.len() >= 30, "only {} vectors", file.cases.len());
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for case in &file.cases {
        assert!(
            names.insert(case.name.as_str()),
            "duplicate vector {}",
            case.name
        );
        for d in &case.known_disagreements {
            assert!(
                ["js", "rust"].contains(&d.implementation.as_str())
                    && ["gateway", "worker", "both"].contains(&d.view.as_str())
                    && ["decision", "reason", "policy", "rateLimited"].contains(&d.field.as_str()),
                "{}: malformed knownDisagreements entry",
                case.name
            );
        }
        // Through the gateway's own parser and validator, as the live bundle is.
        let bundle = match Bundle::parse(&case.bundle.to_string()) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!(
                    "{}: the gateway refuses the bundle: {e}",
                    case.name
                ));
                continue;
            }
        };
        let p = &case.principal;
        let who = Principal {
            issuer: p.issuer.clone(),
            subject: p.subject.clone(),
            groups: p.groups.clone(),
            groups_unknown: p.groups_unknown,
            claims: p.claims.clone(),
        };
        problems.extend(check(case, &bundle, &who, false));
        problems.extend(check(case, &bundle, &who, true));
    }
    assert!(
        problems.is_empty(),
        "{} mismatch(es):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
