//! The shared claim vectors (`tests/vectors/claims.json`, format in `tests/vectors/README.md`)
//! through the gateway's claim paths, subject patterns and claim mapping. The Worker runs the same
//! file (`worker/test/claims.vectors.test.mjs`).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::*;
use crate::gateway::compile::{ClaimMappingEntry, IssuerEntry};
use crate::gateway::token::principal;

const VECTORS: &str = include_str!("../../../../tests/vectors/claims.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    #[allow(dead_code)]
    about: String,
    format: u32,
    paths: Vec<PathCase>,
    patterns: Vec<PatternCase>,
    mappings: Vec<MappingCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathCase {
    path: String,
    tokens: Option<Vec<String>>,
    #[allow(dead_code)]
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternCase {
    pattern: String,
    value: String,
    #[serde(rename = "match")]
    matches: bool,
    #[allow(dead_code)]
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MappingCase {
    name: String,
    note: String,
    claim_mapping: Mapping,
    referenced_claims: Vec<String>,
    payload: Map<String, Value>,
    expect: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Mapping {
    subject_claim: String,
    #[serde(default)]
    groups_claim: Option<String>,
    prefix: String,
}

fn file() -> VectorFile {
    serde_json::from_str(VECTORS).expect("tests/vectors/claims.json")
}

#[test]
fn claim_path_vectors() {
    let f = file();
    assert_eq!(f.format, 1);
    assert!(f.paths.len() >= 10);
    for c in &f.paths {
        let got = ClaimPath::parse(&c.path).ok().map(|p| p.0);
        assert_eq!(got, c.tokens, "path {:?}", c.path);
    }
}

#[test]
fn subject_pattern_vectors() {
    let f = file();
    assert!(f.patterns.len() >= 20);
    for c in &f.patterns {
        assert_eq!(
            pattern_match(&c.pattern, &c.value),
            c.matches,
            "{:?} against {:?}",
            c.pattern,
            c.value
        );
    }
}

#[test]
fn claim_mapping_vectors() {
    let f = file();
    assert!(f.mappings.len() >= 10);
    for c in &f.mappings {
        let issuer = IssuerEntry {
            name: "vec".into(),
            issuer: "https://idp.example".into(),
            jwks_uri: None,
            audiences: vec!["a".into()],
            algorithms: vec![],
            clock_skew_seconds: 60,
            max_token_age_seconds: None,
            claim_mapping: ClaimMappingEntry {
                subject_claim: c.claim_mapping.subject_claim.clone(),
                groups_claim: c.claim_mapping.groups_claim.clone(),
                prefix: c.claim_mapping.prefix.clone(),
            },
        };
        let got = match principal(
            &issuer,
            &c.payload,
            c.referenced_claims.iter().map(String::as_str),
        ) {
            Ok(p) => json!({"subject": p.subject, "groups": p.groups,
                "groupsUnknown": p.groups_unknown, "claims": p.claims}),
            Err(e) => json!({"error": e.code()}),
        };
        assert_eq!(got, c.expect, "{}: {}", c.name, c.note);
    }
}

#[test]
fn a_path_never_panics_on_any_payload_shape() {
    let payload: Map<String, Value> = serde_json::from_value(json!({
        "a": [1, {"b": null}], "s": "x", "n": 1
    }))
    .expect("object");
    for p in [
        "/a/1/b",
        "/a/1/b/c",
        "/s/0",
        "/n/x",
        "/a/18446744073709551616",
        "/a/-1",
    ] {
        let path = ClaimPath::parse(p).expect("valid");
        let _ = path.resolve(&payload);
    }
    assert_eq!(
        ClaimPath::parse("/a/1/b")
            .ok()
            .and_then(|p| p.resolve(&payload).cloned()),
        Some(Value::Null)
    );
    assert!(ClaimPath::parse(&"x".repeat(MAX_PATH_LEN + 1)).is_err());
}
