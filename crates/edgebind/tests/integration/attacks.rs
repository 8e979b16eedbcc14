//! The hostile tenant (issue 12; docs/security.md names these tests): each attack on the edge
//! path, played against the gateway over HTTP, must be refused and must change nothing.

use ed25519_dalek::SigningKey;
use edgebind::gateway::api::EdgeLimits;
use edgebind::gateway::backend::VolumeBackend;
use edgebind::gateway::keys::KeySet;
use edgebind::gateway::policy::RateLimit;
use serde_json::json;

use crate::gateway::{Gw, Req, code, req, start, start_with};

const VOLUMES: &str = "/api/v1/namespaces/team-a/volumes";

fn create(name: &str) -> Req<'static> {
    req(
        "POST",
        VOLUMES,
        Some(json!({"name": name, "sizeBytes": 1u64 << 30})),
    )
}

/// Replay across replicas and restarts: a captured mutation, sent again to the other replica
/// or to a restarted gateway (both with empty nonce caches), has no second effect, including
/// after the state it changed was changed back (the tenant deleted the volume it created, so a
/// plain "already exists" would not stop it).
#[tokio::test]
async fn a_replayed_mutation_has_no_second_effect_on_another_replica_or_after_a_restart() {
    let first = start().await;
    let second = first.replica().await;
    let captured = first.sign(create("x"));
    let (s, body, _) = first.deliver(&captured).await;
    assert_eq!(s, 201, "{body}");
    let (s, body, _) = second.deliver(&captured).await;
    assert_eq!((s, code(&body)), (401, "nonce_replayed"), "second replica");

    // The tenant deletes the volume (with kubectl); the attacker replays the create to the
    // other replica and to a restarted one.
    first
        .backend
        .delete_volume("team-a", "x")
        .await
        .expect("deleted");
    let before = first.snapshot_state();
    let restarted = first.replica().await;
    for (gw, what) in [(&second, "second replica"), (&restarted, "after a restart")] {
        let (s, body, _) = gw.deliver(&captured).await;
        assert_eq!((s, code(&body)), (401, "nonce_replayed"), "{what}");
        assert_eq!(
            gw.snapshot_state(),
            before,
            "{what}: x was not created again"
        );
    }

    // A captured snapshot request: replayed once the tenant removed the snapshot, it does not
    // take it again.
    let snap = first.sign(req(
        "POST",
        &format!("{VOLUMES}/pvc-1/snapshots"),
        Some(json!({"name": "s1"})),
    ));
    assert_eq!(first.deliver(&snap).await.0, 201);
    first
        .backend
        .delete_snapshot("team-a", "pvc-1", "s1")
        .await
        .expect("deleted");
    let before = first.snapshot_state();
    let (s, body, _) = restarted.deliver(&snap).await;
    assert_eq!((s, code(&body)), (401, "nonce_replayed"));
    assert_eq!(first.snapshot_state(), before, "no snapshot taken again");
}

fn limits(per_key_rpm: u32, key_burst: u32, queries_rpm: u32, query_burst: u32) -> EdgeLimits {
    EdgeLimits {
        per_key: RateLimit {
            requests_per_minute: per_key_rpm,
            burst: Some(key_burst),
        },
        identity_queries: RateLimit {
            requests_per_minute: queries_rpm,
            burst: Some(query_burst),
        },
    }
}

/// A second key of team-a (another binding), for the flood tests.
fn with_flooder(gw: &Gw) -> SigningKey {
    let flooder = SigningKey::from_bytes(&[33u8; 32]);
    gw.state.keys.replace(KeySet::new([
        (
            "edge-1".to_string(),
            gw.key.verifying_key(),
            "team-a".to_string(),
        ),
        (
            "flooder".to_string(),
            flooder.verifying_key(),
            "team-a".to_string(),
        ),
    ]));
    flooder
}

/// Nonce flood: one key sends far more than its limit. It is cut off at its limit (429), it
/// holds no more nonces than its limit allows, and another key keeps working throughout.
#[tokio::test]
async fn a_flooding_key_is_cut_off_and_other_keys_keep_working() {
    // Every key may send 10 at once, then one per 10 s.
    let gw = start_with(limits(6, 10, 6000, 1000)).await;
    let flooder = gw.with_key(with_flooder(&gw));
    let mut ok = 0;
    for i in 0..100 {
        let (s, body, headers) = flooder
            .send(Req {
                key_id: "flooder",
                ..req("GET", &format!("{VOLUMES}/pvc-1"), None)
            })
            .await;
        match s {
            200 => ok += 1,
            429 => {
                assert_eq!(code(&body), "rate_limited");
                assert!(headers.get("retry-after").is_some());
            }
            other => panic!("request {i}: {other} {body}"),
        }
        // The quiet key, within its limit, is answered every time.
        if i % 10 == 0 {
            let (s, body, _) = gw.send(req("GET", &format!("{VOLUMES}/pvc-1"), None)).await;
            assert_eq!(s, 200, "request {i} of the quiet key: {body}");
        }
    }
    assert!(
        ok <= 11,
        "the flooder got {ok} of 100 through a burst of 10"
    );
    assert!(
        gw.state.nonces.len() <= 11 + 10,
        "the flooder's nonces are bounded by its limit: {}",
        gw.state.nonces.len()
    );
}

/// `can-i` and listing are cheap to send and cost the gateway a policy evaluation each: they
/// are limited per identity, and one identity's flood does not refuse another's.
#[tokio::test]
async fn can_i_and_list_are_rate_limited_per_identity() {
    let gw = start_with(limits(60_000, 1000, 60, 3)).await;
    let can_i = || {
        req(
            "POST",
            "/api/v1/can-i",
            Some(json!({"namespace": "team-a", "action": "read", "name": "pvc-1"})),
        )
    };
    let mut refused = 0;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let (s, body, _) = gw.send(can_i()).await;
        if s == 429 {
            assert_eq!(code(&body), "rate_limited");
            refused += 1;
        }
        let (s, _, _) = gw.send(req("GET", VOLUMES, None)).await;
        if s == 429 {
            refused += 1;
        }
    }
    // The burst, plus one query per second refilled while they were sent (a loaded machine
    // sends slowly): everything beyond that is refused.
    let answered_at_most = 3 + started.elapsed().as_secs_f64().ceil() as usize;
    assert!(
        20 - refused <= answered_at_most,
        "20 queries against a burst of 3 in {:?}: {refused} refused",
        started.elapsed()
    );
    assert!(refused >= 10, "a flood is refused: {refused} of 20 refused");
    // Another identity is still answered.
    let (s, body, _) = gw
        .send(Req {
            subject: "okta:carol",
            ..can_i()
        })
        .await;
    assert_eq!(s, 200, "{body}");
}

/// Only an authorised request's nonce is recorded: refusals (policy, scope, invalid body) fill
/// nothing, so they cannot be used to exhaust the cache.
#[tokio::test]
async fn refused_requests_record_no_nonce() {
    let gw = start().await;
    let before = gw.snapshot_state();
    let pvc = format!("{VOLUMES}/pvc-1");
    let refused = [
        Req {
            groups: vec![],
            ..req("DELETE", &pvc, None)
        },
        req("GET", "/api/v1/namespaces/team-b/volumes", None),
        req(
            "POST",
            VOLUMES,
            Some(json!({"name": "Bad_Name", "sizeBytes": 1})),
        ),
        req("GET", "/api/v1/namespaces/team-a/things", None),
    ];
    for r in refused {
        let what = format!("{} {}", r.method, r.path);
        let (s, body, _) = gw.send(r).await;
        assert!(s >= 400, "{what}: {s} {body}");
    }
    assert_eq!(gw.state.nonces.len(), 0, "no nonce recorded for a refusal");
    assert_eq!(gw.snapshot_state(), before);
    let (s, _, _) = gw.send(req("GET", &format!("{VOLUMES}/pvc-1"), None)).await;
    assert_eq!(s, 200);
    assert_eq!(
        gw.state.nonces.len(),
        1,
        "the allowed read's nonce is recorded"
    );
}

/// Policies for the restore and label attacks (team-a).
fn restore_bundle() -> edgebind::gateway::policy::Bundle {
    edgebind::gateway::policy::Bundle::parse(
        &json!({
            "version": 1, "revision": "sha256:attacks",
            "policies": [
                {"namespace": "team-a", "name": "creators", "effect": "Allow",
                 "subjects": [{"issuer": "okta", "groups": ["okta:creators"]}],
                 "actions": ["read", "create", "snapshot", "restore"],
                 "volumes": {"names": ["app-*", "pvc-*"]},
                 "conditions": {"maxSizeBytes": 2u64 << 30}},
                {"namespace": "team-a", "name": "gold-creators", "effect": "Allow",
                 "subjects": [{"issuer": "okta", "groups": ["okta:gold"]}],
                 "actions": ["create"],
                 "volumes": {"labelSelector": {"matchExpressions": [
                     {"key": "tier", "operator": "In", "values": ["gold"]}]}}},
                {"namespace": "team-a", "name": "keep", "effect": "Deny",
                 "subjects": [{"issuer": "okta"}],
                 "actions": ["delete"],
                 "volumes": {"labelSelector": {"matchExpressions": [
                     {"key": "deletable", "operator": "NotIn", "values": ["true"]}]}}},
                {"namespace": "team-a", "name": "public-read", "effect": "Allow",
                 "subjects": [{"issuer": "okta"}],
                 "actions": ["read"],
                 "volumes": {"labelSelector": {"matchLabels": {"share": "public"}}}},
                {"namespace": "team-a", "name": "restorers", "effect": "Allow",
                 "subjects": [{"issuer": "okta", "groups": ["okta:restorers"]}],
                 "actions": ["read", "restore"]}
            ]
        })
        .to_string(),
    )
    .expect("attack bundle is valid")
}

/// Restore skipping create-side policy, and caller-chosen labels granting rights: a restore
/// makes a volume and is held to the rules of creating it (name, size, the `create` right);
/// a label that policies select on may be set only where the allowing policy asks for it.
/// Each attack was accepted before (restore checked only the source; labels were free).
#[tokio::test]
async fn a_restore_is_held_to_create_rules_and_labels_grant_nothing_the_policy_did_not() {
    let gw = start().await;
    gw.state.bundle.replace(restore_bundle());
    for (name, size) in [("pvc-big", 4u64 << 30), ("pvc-small", 1 << 30)] {
        gw.backend
            .create_volume(edgebind::gateway::backend::NewVolume {
                namespace: "team-a".into(),
                name: name.into(),
                size_bytes: size,
                labels: Default::default(),
                source_snapshot: None,
                binding: None,
                request: None,
            })
            .await
            .expect("seed");
        gw.backend
            .create_snapshot("team-a", name, &format!("{name}-s1"), None)
            .await
            .expect("seed snapshot");
    }
    let restore = |from: &str, body: serde_json::Value, groups: Vec<&'static str>| Req {
        groups,
        ..req(
            "POST",
            Box::leak(format!("{VOLUMES}/{from}/snapshots/{from}-s1/restore").into_boxed_str()),
            Some(body),
        )
    };
    let before = gw.snapshot_state();
    let attacks: Vec<(&str, Req<'_>, &str)> = vec![
        (
            "restore without the right to create",
            restore(
                "pvc-small",
                json!({"name": "app-copy"}),
                vec!["okta:restorers"],
            ),
            "policy_no_match",
        ),
        (
            "restore into a name create does not allow",
            restore("pvc-small", json!({"name": "db"}), vec!["okta:creators"]),
            "policy_no_match",
        ),
        (
            "restore of a source over the size create allows",
            restore("pvc-big", json!({"name": "app-big"}), vec!["okta:creators"]),
            "policy_no_match",
        ),
        (
            "restore with a label that opens reads to everyone",
            restore(
                "pvc-small",
                json!({"name": "app-leak", "labels": {"share": "public"}}),
                vec!["okta:creators"],
            ),
            "label_reserved",
        ),
        (
            "create with a label that escapes the Deny on deletes",
            Req {
                groups: vec!["okta:creators"],
                ..req(
                    "POST",
                    VOLUMES,
                    Some(
                        json!({"name": "app-x", "sizeBytes": 1u64 << 30, "labels": {"deletable": "true"}}),
                    ),
                )
            },
            "label_reserved",
        ),
    ];
    for (what, r, want) in attacks {
        let (s, body, _) = gw.send(r).await;
        assert_eq!((s, code(&body)), (403, want), "{what}");
        assert_eq!(gw.snapshot_state(), before, "{what}: nothing created");
    }
    // What the policies do allow still works: a restore within the create rules with a free
    // label, and a label the allowing policy itself selects on.
    let (s, body, _) = gw
        .send(restore(
            "pvc-small",
            json!({"name": "app-copy", "labels": {"team": "x"}}),
            vec!["okta:creators"],
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    let (s, body, _) = gw
        .send(Req {
            groups: vec!["okta:gold"],
            ..req(
                "POST",
                VOLUMES,
                Some(json!({"name": "vault", "sizeBytes": 1u64 << 30, "labels": {"tier": "gold"}})),
            )
        })
        .await;
    assert_eq!(s, 201, "{body}");
}

/// A leaked edge signing key alone: the attacker signs requests claiming any identity. The
/// gateway verifies the caller's token itself against the issuer's JWK Set, so a request
/// without a token, a forged identity over a real token of someone else, or a real token lifted
/// from another request (not bound by `tokenHash`) changes nothing. With the issuer's
/// `gatewayVerification` off (the documented trade-off), the signed identity is trusted.
#[tokio::test]
async fn a_leaked_signing_key_alone_cannot_act_as_someone_else() {
    let gw = start().await;
    let before = gw.snapshot_state();
    let create = || create("stolen");
    let attacks: Vec<(&str, Req<'_>, u16, &str)> = vec![
        (
            "no token",
            Req {
                no_token: true,
                ..create()
            },
            401,
            "token_invalid",
        ),
        (
            "an admin identity forged over a real token of someone without rights",
            Req {
                token_as: Some(("okta:mallory", vec!["okta:nobody"])),
                ..create()
            },
            403,
            "policy_no_match",
        ),
        (
            "a real admin token lifted from another request",
            Req {
                token_hash: Some(edgebind::gateway::token::token_hash(
                    "another request's token",
                )),
                ..create()
            },
            401,
            "token_invalid",
        ),
    ];
    for (what, r, status, want) in attacks {
        let (s, body, _) = gw.send(r).await;
        assert_eq!((s, code(&body)), (status, want), "{what}");
        assert_eq!(gw.snapshot_state(), before, "{what}: nothing created");
    }
    let (s, body, _) = gw.send(create()).await;
    assert_eq!(s, 201, "the admin's own token: {body}");

    // Verification off for the issuer: the gateway takes the signed identity on trust.
    let off = crate::support::idp::trusted(&["okta"])
        .into_iter()
        .map(|mut i| {
            i.verify = false;
            i
        })
        .collect();
    gw.state.issuers.replace(off);
    let (s, body, _) = gw
        .send(Req {
            no_token: true,
            ..req(
                "POST",
                VOLUMES,
                Some(json!({"name": "trusted", "sizeBytes": 1u64 << 30})),
            )
        })
        .await;
    assert_eq!(s, 201, "{body}");
}

/// A gateway answer as `Gw::send` returns it.
type Answer = (u16, serde_json::Value, reqwest::header::HeaderMap);

/// Writes that reached the cluster or LINSTOR: successful create/update/patch/delete calls the
/// gateway made to the API server, and every LINSTOR request that is not a read.
fn writes(bed: &crate::support::bed::Bed) -> (usize, usize) {
    let kube = bed
        .kube
        .requests()
        .iter()
        .filter(|r| r.user_agent.as_deref() == Some(crate::support::bed::GATEWAY_UA))
        .filter(|r| matches!(r.verb.as_str(), "create" | "update" | "patch" | "delete"))
        .filter(|r| r.status < 300)
        .count();
    let linstor = bed
        .linstor
        .sim
        .exchanges()
        .iter()
        .filter(|e| e.method != "GET")
        .count();
    (kube, linstor)
}

/// The whole hostile-tenant suite against the gateway as it runs in a cluster: watch caches and
/// writes on the fake API server, the controller and the LINSTOR simulator behind it. After a
/// legitimate start (a volume and a snapshot, Ready in LINSTOR), every attack is refused with its
/// code, and neither the API server nor LINSTOR sees a single write from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_and_writes_nothing_to_the_cluster_or_linstor() {
    use std::sync::Arc;

    use edgebind::gateway::api::{BundleStore, GatewayState};
    use edgebind::gateway::audit::{AuditSink, MemoryWriter};
    use edgebind::gateway::backend::{KubeVolumeBackend, MemoryBackend, WatchCache};
    use edgebind::gateway::keys::KeyStore;
    use http::HeaderValue;

    use crate::support::bed::{Bed, GATEWAY_UA};

    let bed = Bed::start().await;
    let client = bed.client_as(GATEWAY_UA);
    let (cache, driver) = WatchCache::start(&client);
    let watch = tokio::spawn(driver);
    tokio::time::timeout(std::time::Duration::from_secs(10), cache.synced())
        .await
        .expect("caches sync");
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let tenant_b = SigningKey::from_bytes(&[21u8; 32]);
    let keys = KeyStore::new(KeySet::new([
        (
            "edge-1".to_string(),
            key.verifying_key(),
            "team-a".to_string(),
        ),
        (
            "team-b.edge.1".to_string(),
            tenant_b.verifying_key(),
            "team-b".to_string(),
        ),
    ]));
    let state = GatewayState::new(
        keys,
        BundleStore::new(crate::gateway::bundle()),
        Arc::new(KubeVolumeBackend::new(client.clone(), "main").with_cache(cache)),
        AuditSink::new(MemoryWriter::default()),
    );
    state
        .issuers
        .replace(crate::support::idp::trusted(&["okta"]));
    // The in-memory backend of the harness is not used: the cluster is the state here.
    let gw = crate::gateway::serve(
        state,
        key,
        Arc::new(MemoryBackend::new()),
        MemoryWriter::default(),
    )
    .await;
    let replica = gw.replica().await;

    // Legitimate start: a volume and its snapshot, through the gateway, Ready in LINSTOR.
    let captured = gw.sign(create("app-db"));
    let (s, body, _) = gw.deliver(&captured).await;
    assert_eq!(s, 201, "{body}");
    bed.wait_volume("app-db", "True", "Ready").await;
    let (s, body, _) = gw
        .send(req(
            "POST",
            &format!("{VOLUMES}/app-db/snapshots"),
            Some(json!({"name": "s1"})),
        ))
        .await;
    assert_eq!(s, 201, "{body}");
    bed.eventually(20, "snapshot s1 Ready", || {
        let api = bed.snapshots();
        async move {
            let s = api.get_opt("s1").await.ok().flatten()?;
            s.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        }
    })
    .await;
    // Let the controller settle, then count.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = writes(&bed);
    // The count sees writes: the legitimate start made some.
    assert!(
        before.0 >= 2 && before.1 >= 2,
        "writes are counted: {before:?}"
    );

    let tenant_b = gw.with_key(SigningKey::from_bytes(&[21u8; 32]));
    let restore = |name: &str, labels: serde_json::Value| {
        req(
            "POST",
            Box::leak(format!("{VOLUMES}/app-db/snapshots/s1/restore").into_boxed_str()),
            Some(json!({"name": name, "labels": labels})),
        )
    };
    let mut duplicated = gw.sign(req("DELETE", &format!("{VOLUMES}/app-db"), None));
    let input = duplicated.headers["signature-input"]
        .to_str()
        .expect("ascii")
        .to_string();
    let second = input.replacen("sig1=", "sig2=", 1);
    duplicated.headers.insert(
        "signature-input",
        HeaderValue::from_str(&format!("{input}, {second}")).expect("ascii"),
    );
    // (what, the gateway's answer, the status and code it must be)
    let attacks: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "another tenant's key deletes team-a's volume",
            tenant_b
                .send(Req {
                    key_id: "team-b.edge.1",
                    ..req("DELETE", &format!("{VOLUMES}/app-db"), None)
                })
                .await,
            403,
            "key_scope",
        ),
        (
            "the captured create replayed to the same gateway",
            gw.deliver(&captured).await,
            401,
            "nonce_replayed",
        ),
        (
            "the captured create replayed to the other replica",
            replica.deliver(&captured).await,
            401,
            "nonce_replayed",
        ),
        (
            "the signing key without a token",
            gw.send(Req {
                no_token: true,
                ..create("stolen")
            })
            .await,
            401,
            "token_invalid",
        ),
        (
            "an admin identity forged over another's token",
            gw.send(Req {
                token_as: Some(("okta:mallory", vec![])),
                ..create("stolen")
            })
            .await,
            403,
            "policy_no_match",
        ),
        (
            "a label that policies select on",
            gw.send(restore("app-copy", json!({"frozen": "false"})))
                .await,
            403,
            "label_reserved",
        ),
        (
            "a duplicated signature label",
            gw.deliver(&duplicated).await,
            401,
            "sig_multiple",
        ),
        (
            "an expired signature",
            gw.send(Req {
                created_offset: -200,
                ..req("DELETE", &format!("{VOLUMES}/app-db"), None)
            })
            .await,
            401,
            "sig_expired",
        ),
    ];
    for (what, (s, body, _), status, want) in attacks {
        assert_eq!((s, code(&body)), (status, want), "{what}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        writes(&bed),
        before,
        "no attack wrote to the API server (gateway) or to LINSTOR"
    );
    assert!(
        bed.volumes()
            .get_opt("app-db")
            .await
            .expect("get")
            .is_some()
    );
    watch.abort();
}
