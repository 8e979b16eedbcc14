//! Evaluator semantics of docs/edge-protocol.md §3.3-3.5.

use serde_json::json;

use super::*;

fn alice() -> Principal {
    Principal {
        issuer: "okta".into(),
        subject: "okta:alice".into(),
        groups: vec!["okta:admins".into()],
        groups_unknown: false,
        claims: [("tenant".to_string(), Some(vec!["acme".to_string()]))].into(),
    }
}

fn policy(v: serde_json::Value) -> BundlePolicy {
    let mut base = json!({
        "namespace": "team-a", "name": "p", "effect": "Allow",
        "subjects": [{"issuer": "okta"}], "actions": ["read", "create", "resize"],
    });
    if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
        for (k, val) in o {
            b.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(base).expect("test policy is valid")
}

fn bundle(ps: Vec<BundlePolicy>) -> Bundle {
    Bundle {
        version: 1,
        revision: "sha256:t".into(),
        policies: ps,
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn req<'a>(
    who: &'a Principal,
    action: Action,
    name: Option<&'a str>,
    l: Option<&'a BTreeMap<String, String>>,
) -> PolicyRequest<'a> {
    PolicyRequest {
        action,
        namespace: "team-a",
        name,
        labels: l,
        size_bytes: Some(10),
        client_ip: Some("203.0.113.7"),
        principal: who,
    }
}

#[test]
fn globs_are_anchored() {
    assert!(glob_match("pvc-*", "pvc-42"));
    assert!(glob_match("pvc-*", "pvc-"));
    assert!(!glob_match("pvc-*", "xpvc-1"));
    assert!(glob_match("scratch-??", "scratch-01"));
    assert!(!glob_match("scratch-??", "scratch-1"));
    assert!(glob_match("*a*b", "xxaYYb"));
    assert!(!glob_match("a", "ab"));
}

#[test]
fn no_policy_is_default_deny() {
    let who = alice();
    let l = labels(&[]);
    let o = evaluate(
        &bundle(vec![]),
        &req(&who, Action::Read, Some("v"), Some(&l)),
    );
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(o.reason, Some(Reason::PolicyNoMatch));
}

#[test]
fn deny_wins_over_an_earlier_allow() {
    let who = alice();
    let l = labels(&[]);
    let mut deny = policy(json!({"name": "z-deny", "effect": "Deny"}));
    deny.actions = vec![Action::Read];
    let b = bundle(vec![policy(json!({"name": "a-allow"})), deny]);
    let o = evaluate(&b, &req(&who, Action::Read, Some("v"), Some(&l)));
    assert_eq!(o.decision, Decision::Deny);
    assert_eq!(o.reason, Some(Reason::PolicyDenied));
    assert_eq!(
        policy_id(&b, o.policy.expect("deciding policy")).as_deref(),
        Some("team-a/z-deny")
    );
}

#[test]
fn namespace_is_the_tenant_boundary() {
    let who = alice();
    let l = labels(&[]);
    let mut r = req(&who, Action::Read, Some("v"), Some(&l));
    r.namespace = "team-b";
    assert_eq!(
        evaluate(&bundle(vec![policy(json!({}))]), &r).decision,
        Decision::Deny
    );
}

#[test]
fn label_selector_semantics() {
    let who = alice();
    let p = policy(json!({"volumes": {"labelSelector": {
    "matchLabels": {"tier": "gold"},
    "matchExpressions": [
        {"key": "env", "operator": "In", "values": ["dev", "staging"]},
        {"key": "frozen", "operator": "DoesNotExist"},
        {"key": "team", "operator": "NotIn", "values": ["b"]},
        {"key": "tier", "operator": "Exists"}
    ]}}}));
    let b = bundle(vec![p]);
    let cases = [
        (labels(&[("tier", "gold"), ("env", "dev")]), Decision::Allow),
        (labels(&[("tier", "gold"), ("env", "prod")]), Decision::Deny),
        (
            labels(&[("tier", "gold"), ("env", "dev"), ("frozen", "1")]),
            Decision::Deny,
        ),
        (
            labels(&[("tier", "gold"), ("env", "dev"), ("team", "b")]),
            Decision::Deny,
        ),
        (
            labels(&[("tier", "gold"), ("env", "dev"), ("team", "a")]),
            Decision::Allow,
        ),
        (labels(&[("env", "dev")]), Decision::Deny),
    ];
    for (l, want) in cases {
        let o = evaluate(&b, &req(&who, Action::Read, Some("v"), Some(&l)));
        assert_eq!(o.decision, want, "{l:?}");
    }
    // Labels unknown (collection): only possibly matches.
    let o = evaluate(&b, &req(&who, Action::Read, None, None));
    assert_eq!(o.decision, Decision::Undecided);
}

#[test]
fn broken_selector_is_a_condition_error_even_on_an_allow() {
    let who = alice();
    let l = labels(&[("a", "b")]);
    for expr in [
        json!({"key": "a", "operator": "Equals", "values": ["b"]}),
        json!({"key": "a", "operator": "In"}),
        json!({"key": "a", "operator": "Exists", "values": ["b"]}),
    ] {
        let p = policy(json!({"volumes": {"labelSelector": {"matchExpressions": [expr]}}}));
        let o = evaluate(
            &bundle(vec![p]),
            &req(&who, Action::Read, Some("v"), Some(&l)),
        );
        assert_eq!(o.reason, Some(Reason::PolicyConditionError));
    }
}

#[test]
fn conditions_size_and_source_ip() {
    let who = alice();
    let l = labels(&[]);
    let p = policy(
        json!({"conditions": {"maxSizeBytes": 100, "sourceIpCidrs": ["203.0.113.0/24", "2001:db8::/32"]}}),
    );
    let b = bundle(vec![p]);
    let mut r = req(&who, Action::Create, Some("v"), Some(&l));
    assert_eq!(evaluate(&b, &r).decision, Decision::Allow);
    r.size_bytes = Some(101);
    assert_eq!(evaluate(&b, &r).reason, Some(Reason::PolicyNoMatch));
    r.size_bytes = None;
    assert_eq!(evaluate(&b, &r).reason, Some(Reason::PolicyConditionError));
    r.size_bytes = Some(5);
    r.client_ip = Some("::ffff:203.0.113.9");
    assert_eq!(evaluate(&b, &r).decision, Decision::Allow, "mapped IPv4");
    r.client_ip = Some("2001:db8::1");
    assert_eq!(evaluate(&b, &r).decision, Decision::Allow);
    r.client_ip = Some("198.51.100.1");
    assert_eq!(evaluate(&b, &r).reason, Some(Reason::PolicyNoMatch));
    r.client_ip = None;
    assert_eq!(evaluate(&b, &r).reason, Some(Reason::PolicyConditionError));
    // Size condition does not apply to read.
    r.client_ip = Some("203.0.113.1");
    r.action = Action::Read;
    r.size_bytes = None;
    assert_eq!(evaluate(&b, &r).decision, Decision::Allow);
}

#[test]
fn subjects_groups_and_claims() {
    let mut who = alice();
    let l = labels(&[]);
    let p = policy(
        json!({"subjects": [{"issuer": "okta", "groups": ["okta:admins"],
        "claims": [{"claim": "tenant", "values": ["acme"]}]}]}),
    );
    let b = bundle(vec![p]);
    assert_eq!(
        evaluate(&b, &req(&who, Action::Read, Some("v"), Some(&l))).decision,
        Decision::Allow
    );
    who.claims
        .insert("tenant".into(), Some(vec!["other".into()]));
    assert_eq!(
        evaluate(&b, &req(&who, Action::Read, Some("v"), Some(&l))).reason,
        Some(Reason::PolicyNoMatch)
    );
    // Unevaluable claim that decides: fails closed.
    who.claims.remove("tenant");
    assert_eq!(
        evaluate(&b, &req(&who, Action::Read, Some("v"), Some(&l))).reason,
        Some(Reason::PolicyConditionError)
    );
    who.claims
        .insert("tenant".into(), Some(vec!["acme".into()]));
    who.groups.clear();
    assert_eq!(
        evaluate(&b, &req(&who, Action::Read, Some("v"), Some(&l))).reason,
        Some(Reason::PolicyNoMatch)
    );
    who.issuer = "other".into();
    who.groups = vec!["okta:admins".into()];
    assert_eq!(
        evaluate(&b, &req(&who, Action::Read, Some("v"), Some(&l))).reason,
        Some(Reason::PolicyNoMatch)
    );
}

#[test]
fn names_and_rate_limited_allows() {
    let who = alice();
    let l = labels(&[]);
    let b = bundle(vec![
        policy(
            json!({"name": "a", "volumes": {"names": ["pvc-*"]}, "rateLimit": {"requestsPerMinute": 60}}),
        ),
        policy(json!({"name": "b"})),
    ]);
    let o = evaluate(&b, &req(&who, Action::Read, Some("pvc-1"), Some(&l)));
    assert_eq!(
        (o.decision, o.policy, o.rate_limited.clone()),
        (Decision::Allow, Some(0), vec![0])
    );
    let o = evaluate(&b, &req(&who, Action::Read, Some("data"), Some(&l)));
    assert_eq!(
        (o.decision, o.policy, o.rate_limited),
        (Decision::Allow, Some(1), vec![])
    );
}

#[test]
fn bundle_json_round_trips_and_validates() {
    let doc = json!({
    "version": 1, "revision": "sha256:9f",
    "policies": [{
        "namespace": "team-a", "name": "storage-admins", "effect": "Allow",
        "subjects": [
          { "issuer": "okta-prod", "groups": ["okta-prod:storage-admins"] },
          { "issuer": "ci", "subjects": ["ci:snapshotter"], "claims": [{ "claim": "tenant", "values": ["acme"] }] }
        ],
        "actions": ["read", "create", "resize", "snapshot"],
        "volumes": { "names": ["pvc-*", "scratch-??"], "labelSelector": {
            "matchLabels": { "tier": "gold" },
            "matchExpressions": [{ "key": "env", "operator": "In", "values": ["dev", "staging"] }] } },
        "conditions": { "maxSizeBytes": 107374182400u64, "sourceIpCidrs": ["203.0.113.0/24", "2001:db8::/32"] },
        "rateLimit": { "requestsPerMinute": 60, "burst": 20 }
    }]});
    let b = Bundle::parse(&doc.to_string()).expect("doc example is valid");
    assert_eq!(serde_json::to_value(&b).expect("serializes"), doc);
    for bad in [
        json!({"version": 2, "revision": "r", "policies": []}),
        json!({"version": 1, "revision": "r", "policies": [], "extra": 1}),
        json!({"version": 1, "revision": "r", "policies": [{"namespace": "a", "name": "b", "effect": "Allow", "subjects": [], "actions": ["read"]}]}),
        json!({"version": 1, "revision": "r", "policies": [{"namespace": "a", "name": "b", "effect": "Allow", "subjects": [{"issuer": "i"}], "actions": ["*"]}]}),
        json!({"version": 1, "revision": "r", "policies": [{"namespace": "a", "name": "b", "effect": "Allow", "subjects": [{"issuer": "i"}], "actions": ["read"], "conditions": {"sourceIpCidrs": ["10.0.0.0/33"]}}]}),
        // A claim path that is not a valid JSON Pointer (docs/edge-protocol.md §2.3).
        json!({"version": 1, "revision": "r", "policies": [{"namespace": "a", "name": "b", "effect": "Allow", "subjects": [{"issuer": "i", "claims": [{"claim": "/a~2", "values": ["v"]}]}], "actions": ["read"]}]}),
    ] {
        assert!(Bundle::parse(&bad.to_string()).is_err(), "{bad}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_policy() -> impl Strategy<Value = BundlePolicy> {
        (
            any::<bool>(),
            prop::sample::subsequence(Action::ALL.to_vec(), 1..=6),
            prop::option::of(prop::sample::select(vec!["v-*", "w-?", "*"])),
            prop::option::of(prop::sample::select(vec!["gold", "silver"])),
            prop::sample::select(vec!["okta:admins", "okta:ops"]),
            any::<bool>(),
        )
            .prop_map(
                |(deny, actions, name, tier, group, by_group)| BundlePolicy {
                    namespace: "team-a".into(),
                    name: String::new(),
                    effect: if deny { Effect::Deny } else { Effect::Allow },
                    subjects: vec![SubjectMatcher {
                        issuer: "okta".into(),
                        groups: if by_group { vec![group.into()] } else { vec![] },
                        ..Default::default()
                    }],
                    actions,
                    volumes: Some(VolumeMatcher {
                        names: name.map(|n| vec![n.to_string()]).unwrap_or_default(),
                        label_selector: tier.map(|t| LabelSelector {
                            match_labels: [("tier".to_string(), t.to_string())].into(),
                            ..Default::default()
                        }),
                    }),
                    conditions: None,
                    rate_limit: None,
                },
            )
    }

    proptest! {
        /// Whatever the other policies, a bundle with a definitely matching Deny never allows,
        /// and adding a Deny never turns a deny into an allow.
        #[test]
        fn deny_wins(mut ps in prop::collection::vec(arb_policy(), 0..8),
                     action in prop::sample::select(Action::ALL.to_vec()),
                     name in prop::sample::select(vec!["v-1", "w-2", "x"]),
                     tier in prop::sample::select(vec!["gold", "silver", "none"])) {
            for (i, p) in ps.iter_mut().enumerate() { p.name = format!("p{i:02}"); }
            let who = alice();
            let l = if tier == "none" { labels(&[]) } else { labels(&[("tier", tier)]) };
            let r = req(&who, action, Some(name), Some(&l));
            let b = bundle(ps.clone());
            let before = evaluate(&b, &r);
            let any_deny = ps.iter().any(|p| p.effect == Effect::Deny
                && evaluate_policy(p, &r) == PolicyResult::Matches { deny: true, definite: true });
            if any_deny {
                prop_assert_eq!(before.decision, Decision::Deny);
            }
            prop_assert_ne!(before.decision, Decision::Undecided, "labels known: never undecided");
            let mut with_deny = ps.clone();
            with_deny.push(BundlePolicy { actions: vec![action], ..arb_default() });
            let after = evaluate(&bundle(with_deny), &r);
            prop_assert_eq!(after.decision, Decision::Deny);
        }
    }

    fn arb_default() -> BundlePolicy {
        BundlePolicy {
            namespace: "team-a".into(),
            name: "zz".into(),
            effect: Effect::Deny,
            subjects: vec![SubjectMatcher {
                issuer: "okta".into(),
                ..Default::default()
            }],
            actions: vec![Action::Read],
            volumes: None,
            conditions: None,
            rate_limit: None,
        }
    }
}
