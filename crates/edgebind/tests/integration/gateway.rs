//! The gateway over real HTTP on 127.0.0.1 with the in-memory backend: requests are signed in
//! Rust exactly as the Worker signs them, then altered one way at a time; every refusal must
//! carry its reason code and change nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use edgebind::gateway::api::{BundleStore, EdgeLimits, GatewayState, router};
use edgebind::gateway::audit::{AuditSink, MemoryWriter};
use edgebind::gateway::backend::{MemoryBackend, NewVolume, VolumeBackend};
use edgebind::gateway::identity;
use edgebind::gateway::keys::{KeySet, KeyStore};
use edgebind::gateway::policy::Bundle;
use edgebind::gateway::signature::Signer;
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::support::http::client;

static NONCE: AtomicU64 = AtomicU64::new(1);

fn fresh_nonce() -> String {
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[8..].copy_from_slice(&std::process::id().to_be_bytes().repeat(2));
    URL_SAFE_NO_PAD.encode(b)
}

pub(crate) fn bundle() -> Bundle {
    Bundle::parse(
        &json!({
            "version": 1, "revision": "sha256:test",
            "policies": [
                {"namespace": "team-a", "name": "admins", "effect": "Allow",
                 "subjects": [{"issuer": "okta", "groups": ["okta:admins"]}],
                 "actions": ["read", "create", "resize", "snapshot", "restore"],
                 "conditions": {"maxSizeBytes": 1099511627776u64}},
                {"namespace": "team-a", "name": "no-frozen", "effect": "Deny",
                 "subjects": [{"issuer": "okta"}],
                 "actions": ["resize", "delete"],
                 "volumes": {"labelSelector": {"matchLabels": {"frozen": "true"}}}},
                {"namespace": "team-a", "name": "readers", "effect": "Allow",
                 "subjects": [{"issuer": "okta", "subjects": ["okta:bob"]}],
                 "actions": ["read"],
                 "volumes": {"names": ["pub-*"]},
                 "rateLimit": {"requestsPerMinute": 60, "burst": 2}}
            ]
        })
        .to_string(),
    )
    .expect("test bundle is valid")
}

/// The authority every test gateway answers as (sent as `Host`): replicas behind one Service
/// share it, so a request signed for one is valid at another.
const AUTHORITY: &str = "gw.example.com";

pub(crate) struct Gw {
    base: String,
    authority: String,
    pub(crate) key: SigningKey,
    pub(crate) state: Arc<GatewayState>,
    pub(crate) backend: Arc<MemoryBackend>,
    pub(crate) audit: MemoryWriter,
    server: tokio::task::JoinHandle<()>,
}

/// A request as signed, to be delivered to one gateway or several.
pub(crate) struct Signed {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(crate) async fn start() -> Gw {
    start_with(EdgeLimits::default()).await
}

/// A gateway with these per-key and per-identity limits.
pub(crate) async fn start_with(limits: EdgeLimits) -> Gw {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let keys = KeyStore::new(KeySet::new([(
        "edge-1".to_string(),
        key.verifying_key(),
        "team-a".to_string(),
    )]));
    let backend = Arc::new(MemoryBackend::new());
    for (name, labels) in [
        ("pvc-1", vec![("tier", "gold")]),
        ("frozen-1", vec![("frozen", "true")]),
        ("pub-1", vec![]),
    ] {
        backend
            .create_volume(NewVolume {
                namespace: "team-a".into(),
                name: name.into(),
                size_bytes: 1 << 30,
                labels: labels
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                source_snapshot: None,
                binding: None,
                request: None,
            })
            .await
            .expect("seed volume");
    }
    let audit = MemoryWriter::default();
    let state = GatewayState::new(
        keys,
        BundleStore::new(bundle()),
        backend.clone(),
        AuditSink::new(audit.clone()),
    )
    .with_limits(limits);
    state
        .issuers
        .replace(crate::support::idp::trusted(&["okta"]));
    serve(state, key, backend, audit).await
}

/// Serves `state` (which writes its audit to `audit`) on a loopback port.
pub(crate) async fn serve(
    state: GatewayState,
    key: SigningKey,
    backend: Arc<MemoryBackend>,
    audit: MemoryWriter,
) -> Gw {
    let state = Arc::new(state);
    state.ready.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let app = router(state.clone());
    // The product's own listener, deadlines and all.
    let server = tokio::spawn(async move {
        let _ =
            edgebind::listener::serve(listener, app, Default::default(), std::future::pending())
                .await;
    });
    Gw {
        base: format!("http://{addr}"),
        authority: AUTHORITY.to_string(),
        key,
        state,
        backend,
        audit,
        server,
    }
}

impl Gw {
    /// Another gateway process on the same cluster (the same volumes, keys, policies and replay
    /// ledger) with its own memory: a second replica, or this one after a restart.
    pub(crate) async fn replica(&self) -> Gw {
        let audit = MemoryWriter::default();
        let mut state = GatewayState::new(
            self.state.keys.clone(),
            self.state.bundle.clone(),
            self.backend.clone(),
            AuditSink::new(audit.clone()),
        )
        .with_limits(self.state.limits);
        state.ledger = self.state.ledger.clone();
        state.issuers = self.state.issuers.clone();
        serve(state, self.key.clone(), self.backend.clone(), audit).await
    }
}

/// How to build one request; each field is one way to deviate from what the Worker sends.
pub(crate) struct Req<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) body: Vec<u8>,
    pub(crate) subject: &'a str,
    pub(crate) groups: Vec<&'a str>,
    pub(crate) key_id: &'a str,
    pub(crate) created_offset: i64,
    pub(crate) nonce: Option<String>,
    /// Whose token is forwarded (prefixed subject and groups), when not the identity's own.
    pub(crate) token_as: Option<(&'a str, Vec<&'a str>)>,
    /// No `Edge-Token` at all.
    pub(crate) no_token: bool,
    /// The `tokenHash` the identity carries, when not the forwarded token's.
    pub(crate) token_hash: Option<String>,
    /// Sent instead of the signed path.
    pub(crate) send_path: Option<&'a str>,
    /// Sent instead of the signed body.
    pub(crate) send_body: Option<Vec<u8>>,
    pub(crate) unsigned: bool,
}

pub(crate) fn req<'a>(method: &'a str, path: &'a str, body: Option<Value>) -> Req<'a> {
    Req {
        method,
        path,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        subject: "okta:alice",
        groups: vec!["okta:admins"],
        key_id: "edge-1",
        created_offset: 0,
        nonce: None,
        token_as: None,
        no_token: false,
        token_hash: None,
        send_path: None,
        send_body: None,
        unsigned: false,
    }
}

impl Gw {
    pub(crate) async fn send(&self, r: Req<'_>) -> (u16, Value, reqwest::header::HeaderMap) {
        let send_path = r.send_path.map(str::to_string);
        let send_body = r.send_body.clone();
        let mut signed = self.sign(r);
        if let Some(p) = send_path {
            signed.path = p;
        }
        if let Some(b) = send_body {
            signed.body = b;
        }
        self.deliver(&signed).await
    }

    /// Signs as the Worker would, for this gateway's authority.
    pub(crate) fn sign(&self, r: Req<'_>) -> Signed {
        use crate::support::idp::{mint, unprefixed};
        let token = (!r.no_token).then(|| {
            let (sub, groups) = r.token_as.clone().unwrap_or((r.subject, r.groups.clone()));
            let groups: Vec<&str> = groups.iter().map(|g| unprefixed(g)).collect();
            mint(unprefixed(sub), &groups)
        });
        let hash = r
            .token_hash
            .clone()
            .or_else(|| token.as_deref().map(edgebind::gateway::token::token_hash));
        let ident = identity::encode(&json!({
            "v": 1, "issuer": "okta", "issuerUrl": "https://idp.example",
            "subject": r.subject, "groups": r.groups, "claims": {},
            "tokenJti": null, "tokenExp": 0, "tokenHash": hash, "clientIp": "203.0.113.7",
            "edgeLocation": "FRA", "rayId": null, "policyRevision": "sha256:test",
            "decision": "allow", "policy": null
        }));
        let mut h = HeaderMap::new();
        h.insert(
            "edge-identity",
            HeaderValue::from_str(&ident).expect("ascii"),
        );
        h.insert(
            "edge-request-id",
            HeaderValue::from_static("0b7c6a53-2f4e-4b8e-9a43-6f1d2c3b4a59"),
        );
        if let Some(t) = &token {
            h.insert("edge-token", HeaderValue::from_str(t).expect("ascii"));
        }
        if !r.unsigned {
            let created = jiff::Timestamp::now().as_second() + r.created_offset;
            let nonce = r.nonce.clone().unwrap_or_else(fresh_nonce);
            Signer {
                key: &self.key,
                key_id: r.key_id,
                created,
                expires: created + 60,
                nonce: &nonce,
            }
            .sign(r.method, &self.authority, r.path, None, &mut h, &r.body);
        }
        Signed {
            method: r.method.to_string(),
            path: r.path.to_string(),
            headers: h,
            body: r.body,
        }
    }

    /// Sends a signed request, byte for byte, to this gateway.
    pub(crate) async fn deliver(&self, r: &Signed) -> (u16, Value, reqwest::header::HeaderMap) {
        let url = format!("{}{}", self.base, r.path);
        let m = reqwest::Method::from_bytes(r.method.as_bytes()).expect("method");
        let mut rb = client().request(m, url).header("host", &self.authority);
        for (k, v) in &r.headers {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
        let resp = rb
            .body(r.body.clone())
            .send()
            .await
            .expect("gateway answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    pub(crate) fn snapshot_state(&self) -> (Vec<edgebind::gateway::backend::VolumeView>, usize) {
        (self.backend.volumes(), self.backend.snapshots().len())
    }
}

pub(crate) fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

const RESIZE: &str = "/api/v1/namespaces/team-a/volumes/pvc-1/resize";

/// Every tampering is refused with its code, audited, and changes nothing.
#[tokio::test]
async fn refusals_carry_their_code_and_change_nothing() {
    let gw = start().await;
    let before = gw.snapshot_state();
    let grow = || Some(json!({"sizeBytes": 2u64 << 30}));

    let cases: Vec<(&str, Req<'_>, u16, &str)> = vec![
        (
            "unsigned",
            Req {
                unsigned: true,
                ..req("POST", RESIZE, grow())
            },
            401,
            "sig_missing",
        ),
        (
            "tampered body",
            Req {
                send_body: Some(br#"{"sizeBytes":4294967296}"#.to_vec()),
                ..req("POST", RESIZE, grow())
            },
            401,
            "digest_mismatch",
        ),
        (
            "tampered path",
            Req {
                send_path: Some("/api/v1/namespaces/team-a/volumes/frozen-1/resize"),
                ..req("POST", RESIZE, grow())
            },
            401,
            "sig_invalid",
        ),
        (
            "expired",
            Req {
                created_offset: -200,
                ..req("POST", RESIZE, grow())
            },
            401,
            "sig_expired",
        ),
        (
            "future-dated",
            Req {
                created_offset: 200,
                ..req("POST", RESIZE, grow())
            },
            401,
            "sig_future",
        ),
        (
            "unknown key id",
            Req {
                key_id: "edge-9",
                ..req("POST", RESIZE, grow())
            },
            401,
            "key_unknown",
        ),
        (
            "denied by a Deny on labels",
            req(
                "POST",
                "/api/v1/namespaces/team-a/volumes/frozen-1/resize",
                grow(),
            ),
            403,
            "policy_denied",
        ),
        (
            "no allow",
            Req {
                groups: vec![],
                ..req("POST", RESIZE, grow())
            },
            403,
            "policy_no_match",
        ),
        (
            "shrink",
            req("POST", RESIZE, Some(json!({"sizeBytes": 1}))),
            422,
            "size_shrink",
        ),
        (
            "over the size condition",
            req("POST", RESIZE, Some(json!({"sizeBytes": 1u64 << 41}))),
            403,
            "policy_no_match",
        ),
        (
            "unknown member",
            req("POST", RESIZE, Some(json!({"sizeBytes": 5, "x": 1}))),
            400,
            "request_invalid",
        ),
        (
            "wrong method",
            req("PUT", RESIZE, grow()),
            405,
            "method_not_allowed",
        ),
        (
            "unknown route",
            req("GET", "/api/v1/namespaces/team-a/things", None),
            404,
            "route_unknown",
        ),
    ];
    // Bad signature: a key the gateway does not hold, under the trusted key id.
    let forger = gw.with_key(SigningKey::from_bytes(&[9u8; 32]));
    let (s, body, _) = forger.send(req("POST", RESIZE, grow())).await;
    assert_eq!((s, code(&body)), (401, "sig_invalid"), "forged");
    assert_eq!(gw.snapshot_state(), before, "forged: nothing changed");

    for (what, r, status, want) in cases {
        let (s, body, headers) = gw.send(r).await;
        assert_eq!((s, code(&body)), (status, want), "{what}: {body}");
        assert_eq!(
            headers.get("edge-request-id").map(|v| v.as_bytes()),
            Some(&b"0b7c6a53-2f4e-4b8e-9a43-6f1d2c3b4a59"[..]),
            "{what}"
        );
        if status == 405 {
            assert!(headers.get("allow").is_some(), "{what}: Allow header");
        }
        assert_eq!(gw.snapshot_state(), before, "{what}: nothing changed");
    }
    let events = gw.audit.lines();
    assert!(
        events
            .iter()
            .any(|e| e["reasonCode"] == "sig_expired" && e["keyId"] == "edge-1")
    );
    let text = events.iter().map(|e| e.to_string()).collect::<String>();
    assert!(!text.contains("sig1="), "audit never holds signatures");
}

#[tokio::test]
async fn replayed_nonce_is_refused_and_not_acted_on_twice() {
    let gw = start().await;
    let path = "/api/v1/namespaces/team-a/volumes/pvc-1/snapshots";
    let nonce = fresh_nonce();
    let body = Some(json!({"name": "snap-1"}));
    let (s, b, _) = gw
        .send(Req {
            nonce: Some(nonce.clone()),
            ..req("POST", path, body.clone())
        })
        .await;
    assert_eq!(s, 201, "{b}");
    let after_first = gw.snapshot_state();
    let (s, b, _) = gw
        .send(Req {
            nonce: Some(nonce),
            ..req("POST", path, body)
        })
        .await;
    assert_eq!((s, code(&b)), (401, "nonce_replayed"));
    assert_eq!(gw.snapshot_state(), after_first);
}

#[tokio::test]
async fn retired_key_is_refused_after_a_reload_without_restart() {
    let gw = start().await;
    let vol = "/api/v1/namespaces/team-a/volumes/pvc-1";
    let (s, _, _) = gw.send(req("GET", vol, None)).await;
    assert_eq!(s, 200);
    // Rotation: edge-2 added, edge-1 retired.
    let new_key = SigningKey::from_bytes(&[8u8; 32]);
    gw.state.keys.replace(KeySet::new([(
        "edge-2".to_string(),
        new_key.verifying_key(),
        "team-a".to_string(),
    )]));
    let (s, b, _) = gw.send(req("GET", vol, None)).await;
    assert_eq!((s, code(&b)), (401, "key_unknown"));
    let rotated = gw.with_key(new_key);
    let (s, _, _) = rotated
        .send(Req {
            key_id: "edge-2",
            ..req("GET", vol, None)
        })
        .await;
    assert_eq!(s, 200);
}

impl Gw {
    /// Adds tenant B's edge key (`team-b.edge.1`, scoped to `team-b`) beside `edge-1`
    /// (`team-a`) and returns a handle that signs with it: the hostile tenant of the scope tests.
    pub(crate) fn with_tenant_b(&self) -> Gw {
        let tenant_b = SigningKey::from_bytes(&[21u8; 32]);
        self.state.keys.replace(KeySet::new([
            (
                "edge-1".to_string(),
                self.key.verifying_key(),
                "team-a".to_string(),
            ),
            (
                "team-b.edge.1".to_string(),
                tenant_b.verifying_key(),
                "team-b".to_string(),
            ),
        ]));
        self.with_key(tenant_b)
    }

    /// A second handle on the same server, to sign with another key.
    pub(crate) fn with_key(&self, key: SigningKey) -> Gw {
        Gw {
            base: self.base.clone(),
            authority: self.authority.clone(),
            key,
            state: self.state.clone(),
            backend: self.backend.clone(),
            audit: self.audit.clone(),
            server: tokio::spawn(async {}),
        }
    }
}

#[tokio::test]
async fn allowed_create_resize_snapshot_restore_and_list() {
    let gw = start().await;
    let (s, b, _) = gw
        .send(req(
            "POST",
            "/api/v1/namespaces/team-a/volumes",
            Some(
                json!({"name": "pvc-new", "sizeBytes": 1073741824u64, "labels": {"tier": "gold"}}),
            ),
        ))
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["name"], "pvc-new");
    assert_eq!(b["sizeBytes"], 1073741824u64);
    let (s, b, _) = gw
        .send(req(
            "POST",
            "/api/v1/namespaces/team-a/volumes/pvc-new/resize",
            Some(json!({"sizeBytes": 2147483648u64})),
        ))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["sizeBytes"], 2147483648u64);
    let (s, b, _) = gw
        .send(req(
            "POST",
            "/api/v1/namespaces/team-a/volumes/pvc-new/snapshots",
            Some(json!({"name": "s1"})),
        ))
        .await;
    assert_eq!((s, b["volume"].as_str()), (201, Some("pvc-new")), "{b}");
    let restore = "/api/v1/namespaces/team-a/volumes/pvc-new/snapshots/s1/restore";
    let (s, b, _) = gw
        .send(req("POST", restore, Some(json!({"name": "pvc-copy"}))))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b, _) = gw
        .send(req("POST", restore, Some(json!({"name": "pvc-copy"}))))
        .await;
    assert_eq!((s, code(&b)), (409, "already_exists"));
    let names: Vec<String> = gw.backend.volumes().into_iter().map(|v| v.name).collect();
    assert!(names.contains(&"pvc-new".to_string()) && names.contains(&"pvc-copy".to_string()));

    // Bob may read only pub-*: the list is filtered, his bucket holds 2.
    let list = "/api/v1/namespaces/team-a/volumes";
    let bob = |p| Req {
        subject: "okta:bob",
        groups: vec![],
        ..req("GET", p, None)
    };
    let (s, b, _) = gw.send(bob(list)).await;
    assert_eq!(s, 200, "{b}");
    let items: Vec<&str> = b["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(items, vec!["pub-1"]);
    // The list was only a possible Allow at collection level, so it took no token (§3.4).
    for _ in 0..2 {
        let (s, _, _) = gw
            .send(bob("/api/v1/namespaces/team-a/volumes/pub-1"))
            .await;
        assert_eq!(s, 200);
    }
    let (s, b, h) = gw
        .send(bob("/api/v1/namespaces/team-a/volumes/pub-1"))
        .await;
    assert_eq!((s, code(&b)), (429, "rate_limited"));
    assert!(h.get("retry-after").is_some());
    let (s, b, _) = gw
        .send(Req {
            subject: "okta:bob",
            groups: vec![],
            ..req("GET", "/api/v1/namespaces/team-a/volumes/pvc-1", None)
        })
        .await;
    assert_eq!((s, code(&b)), (403, "policy_no_match"));

    // can-i answers for the caller.
    let (s, b, _) = gw
        .send(req(
            "POST",
            "/api/v1/can-i",
            Some(json!({"namespace": "team-a", "action": "resize", "name": "frozen-1", "sizeBytes": 5})),
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["allowed"], false);
    assert_eq!(b["reasonCode"], "policy_denied");
    assert_eq!(b["policy"], "team-a/no-frozen");
    assert_eq!(b["policyRevision"], "sha256:test");
    // Without sizeBytes the size condition of `admins` cannot be evaluated: fails closed.
    let (s, b, _) = gw
        .send(req(
            "POST",
            "/api/v1/can-i",
            Some(json!({"namespace": "team-a", "action": "resize", "name": "pvc-1"})),
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["reasonCode"], "policy_condition_error");
    assert_eq!(b["policy"], "team-a/admins");
    let (_, b, _) = gw
        .send(req(
            "POST",
            "/api/v1/can-i",
            Some(json!({"namespace": "team-a", "action": "read", "name": "pvc-1"})),
        ))
        .await;
    assert_eq!(
        (b["allowed"].as_bool(), b["decision"].as_str()),
        (Some(true), Some("allow"))
    );

    let events = gw.audit.lines();
    let ok = events
        .iter()
        .find(|e| e["action"] == "snapshot")
        .expect("snapshot audited");
    assert_eq!(ok["decision"], "allow");
    assert_eq!(ok["reasonCode"], "policy_allowed");
    assert_eq!(ok["policy"], "team-a/admins");
    assert_eq!(ok["object"]["snapshot"], "s1");

    let metrics = client()
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.unwrap_or_default();
    assert!(text.contains("edgebind_gateway_requests_total{route=\"/api/v1/namespaces/{ns}/volumes/{name}/resize\""), "{text}");
}

/// The gateway's Kubernetes backend answers reads from watch caches: an EdgeVolume written to the
/// API server appears in its list and get without a read per request, and writes go through.
#[tokio::test]
async fn kube_backend_reads_from_watch_caches() {
    use edgebind::gateway::backend::{KubeVolumeBackend, VolumeBackend, WatchCache};
    let kube = edgebind_sim::kube::FakeApiServer::start()
        .await
        .expect("fake API server");
    for c in edgebind::crd::all() {
        kube.try_install_crd(&c).expect("CRD");
    }
    let setup = kube.client();
    for name in ["team-a", "edgebind-system"] {
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .unwrap();
        kube::Api::all(setup.clone())
            .create(&Default::default(), &ns)
            .await
            .unwrap();
    }
    // The gateway's own client, told apart in the request log for the RBAC coverage test.
    let mut cfg = kube::Config::new(kube.url().parse().unwrap());
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(crate::support::bed::GATEWAY_UA),
    ));
    let client = kube::Client::try_from(cfg).unwrap();
    // What the gateway's reload loop reads: its key Secret (absent: an empty set) and the policies.
    let keys =
        edgebind::gateway::server::load_keys(&client, "edgebind-system", "edgebind-gateway-keys")
            .await
            .expect("keys load");
    assert_eq!(keys.key_ids().count(), 0, "no Secret: nothing is trusted");
    edgebind::gateway::server::load_bundle(&client)
        .await
        .expect("policies load");
    let (cache, driver) = WatchCache::start(&client);
    let task = tokio::spawn(driver);
    tokio::time::timeout(std::time::Duration::from_secs(10), cache.synced())
        .await
        .expect("caches sync");
    let backend = KubeVolumeBackend::new(client.clone(), "main").with_cache(cache);
    let before = kube.requests().len();
    let created = backend
        .create_volume(edgebind::gateway::backend::NewVolume {
            namespace: "team-a".into(),
            name: "app-db".into(),
            size_bytes: 1 << 30,
            labels: Default::default(),
            source_snapshot: None,
            binding: None,
            request: None,
        })
        .await
        .expect("create goes to the API server");
    assert_eq!(created.name, "app-db");
    let mut seen = None;
    for _ in 0..100 {
        seen = backend.get_volume("team-a", "app-db").await.unwrap();
        if seen.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen.expect("the watch delivers the new volume").size_bytes,
        1 << 30
    );
    let listed = backend.list_volumes("team-a").await.unwrap();
    assert_eq!(
        listed.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        vec!["app-db"]
    );
    assert!(backend.list_volumes("other").await.unwrap().is_empty());
    // Only the create (and the watch's own traffic) reached the API server: no GET or LIST per read.
    let reads: Vec<_> = kube.requests()[before..]
        .iter()
        .filter(|r| r.resource == "edgevolumes" && matches!(r.verb.as_str(), "get" | "list"))
        .map(|r| r.verb.clone())
        .collect();
    assert!(
        reads.is_empty(),
        "reads were served from the cache: {reads:?}"
    );
    task.abort();
    crate::support::bed::record_calls(&kube, crate::support::bed::GATEWAY_UA, "gateway");
}

/// Hostile tenant: tenant B's edge key (trusted, valid signature, an identity that team-a's
/// policies allow) signs requests for team-a. The key grants exactly its namespace: every one is
/// refused with `key_scope`, including `can-i`, and nothing changes in team-a.
#[tokio::test]
async fn a_key_signs_only_for_its_own_namespace() {
    let gw = start().await;
    let b = gw.with_tenant_b();
    let before = gw.snapshot_state();
    let as_b = |r: Req<'static>| Req {
        key_id: "team-b.edge.1",
        ..r
    };
    let attacks = [
        req("GET", "/api/v1/namespaces/team-a/volumes/pvc-1", None),
        req("GET", "/api/v1/namespaces/team-a/volumes", None),
        req(
            "POST",
            "/api/v1/namespaces/team-a/volumes",
            Some(json!({"name": "stolen", "sizeBytes": 1073741824u64})),
        ),
        req("POST", RESIZE, Some(json!({"sizeBytes": 4294967296u64}))),
        req("DELETE", "/api/v1/namespaces/team-a/volumes/pvc-1", None),
        req(
            "POST",
            "/api/v1/namespaces/team-a/volumes/pvc-1/snapshots",
            Some(json!({"name": "exfil"})),
        ),
        req(
            "POST",
            "/api/v1/can-i",
            Some(json!({"namespace": "team-a", "action": "delete", "name": "pvc-1"})),
        ),
    ];
    for r in attacks {
        let what = format!("{} {}", r.method, r.path);
        let (s, body, _) = b.send(as_b(r)).await;
        assert_eq!((s, code(&body)), (403, "key_scope"), "{what}");
    }
    assert_eq!(gw.snapshot_state(), before, "team-a is unchanged");

    // The same key in its own namespace passes the scope check (team-b has no policy, so the
    // policy decides: no match), and team-a's own key still works.
    let (s, body, _) = b
        .send(as_b(req("GET", "/api/v1/namespaces/team-b/volumes", None)))
        .await;
    assert_eq!((s, code(&body)), (403, "policy_no_match"));
    let (s, _, _) = gw
        .send(req("GET", "/api/v1/namespaces/team-a/volumes/pvc-1", None))
        .await;
    assert_eq!(s, 200);
}

/// Issue 13: on the fake API server, a create through binding A lands on A's backend with A's
/// placement, through binding B on B's; a key without a binding takes the `--backend-ref`
/// fallback, and a key naming a missing binding creates nothing
/// (`support::edge::volume_defaults_scenario`; the same runs on the real API server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_creates_take_the_volume_defaults_of_their_binding() {
    let kube = edgebind_sim::kube::FakeApiServer::start()
        .await
        .expect("fake API server");
    for c in edgebind::crd::all() {
        kube.try_install_crd(&c).expect("CRD");
    }
    let admin = kube.client();
    for name in ["team-a", "edgebind-system"] {
        let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .unwrap();
        kube::Api::all(admin.clone())
            .create(&Default::default(), &ns)
            .await
            .unwrap();
    }
    let mut cfg = kube::Config::new(kube.url().parse().unwrap());
    cfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(crate::support::bed::GATEWAY_UA),
    ));
    let gateway = kube::Client::try_from(cfg).unwrap();
    crate::support::edge::volume_defaults_scenario(
        &admin,
        gateway,
        "team-a",
        "edgebind-system",
        30,
    )
    .await
    .expect("each binding's defaults shape the volumes created through it");
    crate::support::bed::record_calls(&kube, crate::support::bed::GATEWAY_UA, "gateway");
}
