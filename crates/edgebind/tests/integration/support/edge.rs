//! Requests to the gateway signed as the edge Worker signs them.

use serde_json::{Value, json};

/// A request signed as the Worker signs it, to be delivered once or more (replays).
pub struct SignedEdge {
    authority: String,
    method: String,
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// Signs one request for the gateway at `authority` (host:port, or a Service name that several
/// replicas answer to) with the key `edge-1`.
pub fn sign(
    authority: &str,
    key: &ed25519_dalek::SigningKey,
    issuer: &str,
    method: &str,
    path: &str,
    body: Value,
    request_id: &str,
) -> SignedEdge {
    let key = KeyRef { id: "edge-1", key };
    let caller = Caller {
        issuer,
        groups: &["admins"],
    };
    sign_with(authority, key, caller, method, path, body, request_id)
}

/// Who the request is for: the issuer's name and the caller's groups (without the prefix).
#[derive(Clone, Copy)]
pub struct Caller<'a> {
    pub issuer: &'a str,
    pub groups: &'a [&'a str],
}

/// A signing key and the id the gateway knows it by.
#[derive(Clone, Copy)]
pub struct KeyRef<'a> {
    pub id: &'a str,
    pub key: &'a ed25519_dalek::SigningKey,
}

/// [`sign`] with any key id and caller.
pub fn sign_with(
    authority: &str,
    key: KeyRef<'_>,
    caller: Caller<'_>,
    method: &str,
    path: &str,
    body: Value,
    request_id: &str,
) -> SignedEdge {
    let KeyRef { id: key_id, key } = key;
    let Caller { issuer, groups } = caller;
    use edgebind::gateway::{identity, signature::Signer};
    use http::{HeaderMap, HeaderValue};
    // The caller's token, forwarded as the Worker forwards it (the gateway verifies it).
    let token = crate::support::idp::mint("alice", groups);
    let ident = identity::encode(&json!({
        "v": 1, "issuer": issuer, "issuerUrl": "https://idp.example",
        "subject": format!("{issuer}:alice"),
        "groups": groups.iter().map(|g| format!("{issuer}:{g}")).collect::<Vec<_>>(), "claims": {},
        "tokenJti": null, "tokenExp": 0, "tokenHash": edgebind::gateway::token::token_hash(&token),
        "clientIp": "203.0.113.7",
        "edgeLocation": "FRA", "rayId": null, "policyRevision": "sha256:test",
        "decision": "allow", "policy": null
    }));
    let mut h = HeaderMap::new();
    h.insert("edge-token", HeaderValue::from_str(&token).expect("ascii"));
    h.insert(
        "edge-identity",
        HeaderValue::from_str(&ident).expect("ascii"),
    );
    h.insert(
        "edge-request-id",
        HeaderValue::from_str(request_id).expect("ascii"),
    );
    // GET and DELETE carry no body.
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let created = jiff::Timestamp::now().as_second();
    // 16 random bytes, base64url, as the Worker makes them.
    let nonce = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        uuid::Uuid::new_v4().as_bytes(),
    );
    Signer {
        key,
        key_id,
        created,
        expires: created + 60,
        nonce: &nonce,
    }
    .sign(method, authority, path, None, &mut h, &body);
    SignedEdge {
        authority: authority.to_string(),
        method: method.to_string(),
        path: path.to_string(),
        headers: h,
        body,
    }
}

impl SignedEdge {
    /// The values of the credential headers (which must never reach an Event).
    pub fn credentials(&self) -> Vec<String> {
        [
            "edge-identity",
            "edge-token",
            "signature",
            "signature-input",
        ]
        .iter()
        .filter_map(|n| {
            self.headers
                .get(*n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .collect()
    }

    /// Sends it, byte for byte, to the gateway listening at `base` (`Host` is the signed
    /// authority); returns the status.
    pub async fn deliver(&self, base: &str) -> u16 {
        let m = reqwest::Method::from_bytes(self.method.as_bytes()).expect("method");
        let mut rb = crate::support::http::client()
            .request(m, format!("{base}{}", self.path))
            .header("host", &self.authority);
        for (k, v) in &self.headers {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
        let resp = rb
            .body(self.body.clone())
            .send()
            .await
            .expect("gateway answers");
        resp.status().as_u16()
    }
}

/// Sends one request to the gateway signed as the Worker signs it; returns the status and the
/// values of the credential headers (which must never reach an Event).
pub async fn send_signed(
    base: &str,
    key: &ed25519_dalek::SigningKey,
    issuer: &str,
    method: &str,
    path: &str,
    body: Value,
    request_id: &str,
) -> (u16, Vec<String>) {
    let authority = base.trim_start_matches("http://");
    let r = sign(authority, key, issuer, method, path, body, request_id);
    (r.deliver(base).await, r.credentials())
}

/// Issue 13: a volume created at the edge takes the volume defaults of the EdgeBinding whose key
/// signed the request. In namespace `ns`: binding A (backend `lb-a`, a resource group) and
/// binding B (backend `lb-b`, three replicas in `thin`, `Delete`), each with its own key in the
/// gateway key Secret (`<id>.binding`), a key published before keys named their binding (the
/// gateway's `--backend-ref` fallback) and a key naming a binding that does not exist (refused,
/// nothing created). The gateway runs as `gateway::server::serve` with `gateway` as its client;
/// `admin` sets up. `Err` names the first thing that did not happen.
pub async fn volume_defaults_scenario(
    admin: &kube::Client,
    gateway: kube::Client,
    ns: &str,
    keys_ns: &str,
    secs: u64,
) -> Result<(), String> {
    use edgebind::crd::{EdgeBinding, EdgeVolume, IdentityIssuer, VolumeAccessPolicy};
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, DeleteParams, PostParams};

    let pp = PostParams::default();
    let err = |what: &str| {
        let what = what.to_string();
        move |e: kube::Error| format!("{what}: {e}")
    };
    let issuer = format!("idp-{ns}");
    match Api::<IdentityIssuer>::all(admin.clone())
        .create(&pp, &crate::support::idp::issuer(&issuer))
        .await
    {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => return Err(format!("issuer: {e}")),
    }
    let policy: VolumeAccessPolicy = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
        "metadata": {"name": "defaults", "namespace": ns},
        "spec": {"effect": "Allow", "subjects": [{"issuer": issuer}],
                 "actions": ["read", "create", "snapshot", "restore"]}
    }))
    .expect("policy");
    Api::<VolumeAccessPolicy>::namespaced(admin.clone(), ns)
        .create(&pp, &policy)
        .await
        .map_err(err("policy"))?;
    let bindings: Api<EdgeBinding> = Api::namespaced(admin.clone(), ns);
    for (name, defaults) in [
        (
            "binding-a",
            json!({"backendRef": "lb-a", "resourceGroup": "replicated"}),
        ),
        (
            "binding-b",
            json!({"backendRef": "lb-b", "placeCount": 3, "storagePools": ["thin"],
                             "deletionPolicy": "Delete"}),
        ),
    ] {
        let b: EdgeBinding = serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"accountRef": "acme", "zoneId": "023e105f4ecef8ad9ca31a8372d0c353",
                     "routes": [format!("{name}.example.com/*")], "scriptName": format!("eb-{name}"),
                     "gatewayUrl": "https://gw.example.com", "volumeDefaults": defaults}
        }))
        .expect("binding");
        bindings.create(&pp, &b).await.map_err(err(name))?;
    }
    let signing = |seed: u8| ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let (key_a, key_b, key_old, key_gone) = (signing(41), signing(42), signing(43), signing(44));
    let public = |k: &ed25519_dalek::SigningKey| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            k.verifying_key().as_bytes(),
        )
    };
    let entries = [
        ("edge-a.pub", public(&key_a)),
        ("edge-a.namespace", ns.to_string()),
        ("edge-a.binding", "binding-a".into()),
        ("edge-b.pub", public(&key_b)),
        ("edge-b.namespace", ns.to_string()),
        ("edge-b.binding", "binding-b".into()),
        ("edge-old.pub", public(&key_old)),
        ("edge-old.namespace", ns.to_string()),
        ("edge-gone.pub", public(&key_gone)),
        ("edge-gone.namespace", ns.to_string()),
        ("edge-gone.binding", "deleted-binding".into()),
    ];
    // `data`, as the controller writes it (the fake API server keeps `stringData` as sent).
    let data: serde_json::Map<String, Value> = entries
        .into_iter()
        .map(|(k, v)| {
            let v = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, v);
            (k.to_string(), Value::String(v))
        })
        .collect();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "edgebind-gateway-keys", "namespace": keys_ns}, "data": data
    }))
    .expect("Secret");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), keys_ns);
    let _ = secrets
        .delete("edgebind-gateway-keys", &DeleteParams::default())
        .await;
    secrets
        .create(&pp, &secret)
        .await
        .map_err(err("key Secret"))?;

    let port = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let (listen, admin_addr) = (port(), port());
    let args = gateway_args(listen, admin_addr, keys_ns, "fallback");
    let task = tokio::spawn(async move {
        if let Err(e) =
            edgebind::gateway::server::serve(gateway, args, futures::future::pending()).await
        {
            tracing::warn!("gateway stopped: {e:#}");
        }
    });
    let base = format!("http://{listen}");
    let outcome = async {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        let http = crate::support::http::client();
        while !http
            .get(format!("http://{admin_addr}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if tokio::time::Instant::now() > deadline {
                return Err("the gateway never became ready".to_string());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let path = format!("/api/v1/namespaces/{ns}/volumes");
        let create = |id: &'static str, key: &ed25519_dalek::SigningKey, name: &str, n: u32| {
            sign_with(
                listen.to_string().as_str(),
                KeyRef { id, key },
                Caller {
                    issuer: &issuer,
                    groups: &["admins"],
                },
                "POST",
                &path,
                json!({"name": name, "sizeBytes": 1u64 << 30}),
                &format!("req-{name}-{n}"),
            )
        };
        // The policy reaches the gateway's bundle with its next reload.
        let mut n = 0;
        let first = loop {
            n += 1;
            let s = create("edge-a", &key_a, "app-a", n).deliver(&base).await;
            if s != 403 || tokio::time::Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let got = [
            ("edge-a", first),
            (
                "edge-b",
                create("edge-b", &key_b, "app-b", 0).deliver(&base).await,
            ),
            (
                "edge-old",
                create("edge-old", &key_old, "app-old", 0)
                    .deliver(&base)
                    .await,
            ),
            (
                "edge-gone",
                create("edge-gone", &key_gone, "app-gone", 0)
                    .deliver(&base)
                    .await,
            ),
        ];
        let want = [
            ("edge-a", 201),
            ("edge-b", 201),
            ("edge-old", 201),
            ("edge-gone", 503),
        ];
        if got != want {
            return Err(format!("creates answered {got:?}, not {want:?}"));
        }
        let vols: Api<EdgeVolume> = Api::namespaced(admin.clone(), ns);
        let spec = |name: &'static str| {
            let vols = vols.clone();
            async move {
                vols.get_opt(name)
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|v| v.spec)
                    .ok_or(format!("no EdgeVolume {name}"))
            }
        };
        let a = spec("app-a").await?;
        if (
            a.backend_ref.as_str(),
            a.placement.resource_group.as_deref(),
        ) != ("lb-a", Some("replicated"))
            || a.deletion_policy != edgebind::crd::DeletionPolicy::Retain
        {
            return Err(format!("through binding A: {a:?}"));
        }
        let b = spec("app-b").await?;
        if (b.backend_ref.as_str(), b.placement.place_count) != ("lb-b", Some(3))
            || b.placement.storage_pools != Some(vec!["thin".to_string()])
            || b.deletion_policy != edgebind::crd::DeletionPolicy::Delete
        {
            return Err(format!("through binding B: {b:?}"));
        }
        let old = spec("app-old").await?;
        if old.backend_ref != "fallback" {
            return Err(format!("a key without a binding: {old:?}"));
        }
        if spec("app-gone").await.is_ok() {
            return Err("a key naming a missing binding created a volume".into());
        }
        // A restore through binding A of a snapshot of app-old stays on app-old's backend (LINSTOR
        // restores within its own cluster) and takes A's placement.
        let signed = |method: &str, path: String, body: Value, id: &str| {
            let key = KeyRef {
                id: "edge-a",
                key: &key_a,
            };
            let authority = listen.to_string();
            let caller = Caller {
                issuer: &issuer,
                groups: &["admins"],
            };
            sign_with(&authority, key, caller, method, &path, body, id)
        };
        let snap = signed(
            "POST",
            format!("{path}/app-old/snapshots"),
            json!({"name": "s1"}),
            "req-snap",
        );
        if snap.deliver(&base).await != 201 {
            return Err("the snapshot of app-old was not created".into());
        }
        let restore = format!("{path}/app-old/snapshots/s1/restore");
        let mut n = 0;
        let restored = loop {
            // The gateway finds the snapshot in its watch cache.
            n += 1;
            let body = json!({"name": "app-restored"});
            let s = signed("POST", restore.clone(), body, &format!("req-restore-{n}"));
            let s = s.deliver(&base).await;
            if s != 404 || tokio::time::Instant::now() > deadline {
                break s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        if restored != 201 {
            return Err(format!("the restore answered {restored}"));
        }
        let r = spec("app-restored").await?;
        if (
            r.backend_ref.as_str(),
            r.placement.resource_group.as_deref(),
        ) != ("fallback", Some("replicated"))
        {
            return Err(format!("a restore through binding A: {r:?}"));
        }
        Ok(())
    }
    .await;
    task.abort();
    let _ = task.await;
    for name in ["binding-a", "binding-b"] {
        let _ = bindings.delete(name, &DeleteParams::default()).await;
    }
    outcome
}

/// The gateway's arguments in tests: the chart's limits, keys re-read every second, and
/// `fallback` as `--backend-ref`.
pub fn gateway_args(
    listen: std::net::SocketAddr,
    admin_addr: std::net::SocketAddr,
    keys_ns: &str,
    fallback: &str,
) -> edgebind::gateway::server::GatewayArgs {
    edgebind::gateway::server::GatewayArgs {
        listen,
        admin_addr,
        keys_namespace: keys_ns.into(),
        keys_secret: "edgebind-gateway-keys".into(),
        backend_ref: fallback.into(),
        reload_seconds: 1,
        key_requests_per_minute: 12_000,
        key_burst: 400,
        identity_queries_per_minute: 600,
        identity_query_burst: 60,
    }
}
