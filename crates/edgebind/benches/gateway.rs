//! Gateway benchmark: what one verified request costs.
//!
//! 1. In-process: signature verification (§5.5 steps 1-9), the gateway's own check of the
//!    caller's token, identity decoding, route parsing, policy evaluation and the nonce per request, over requests signed beforehand with the Rust
//!    `Signer` exactly as the Worker signs them. Reported as p50/p99 per stage.
//! 2. Loopback HTTP: the gateway's API router with the in-memory backend on 127.0.0.1, a fixed
//!    number of pre-signed requests sent by a fixed number of concurrent keep-alive clients, for a
//!    read (GET a volume) and a write (resize). Reported as requests/s and p50/p99 latency.
//! 3. Flood, in-process (the router called directly): one key sends `can-i` at `--flood-factor`
//!    times its limit for `--flood-seconds` while four other keys read at a fifth of theirs.
//!    Reported: the flooder's accepted and refused counts, the other keys' success rate and
//!    p50/p99, and the nonces held against the per-key partition size (issue 12's goal: 100 %
//!    success and p99 under 5 ms for the other keys).
//!
//! Run: `cargo bench --bench gateway -- [--requests 20000] [--reads 20000] [--writes 5000]
//! [--concurrency 32] [--policies 40] [--flood-seconds 5] [--flood-factor 20]`.
//!
//! Client and server share this process and the machine's cores, so the HTTP figures are a
//! lower bound of what the gateway alone sustains. It prints figures; it asserts nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use edgebind::crd::IdentityIssuer;
use edgebind::gateway::api::{BundleStore, EdgeLimits, GatewayState, api_router};
use edgebind::gateway::audit::AuditSink;
use edgebind::gateway::backend::{MemoryBackend, NewVolume, VolumeBackend};
use edgebind::gateway::identity;
use edgebind::gateway::keys::{KeySet, KeyStore};
use edgebind::gateway::policy::{self, Action, Bundle, Decision, PolicyRequest, RateLimit};
use edgebind::gateway::routes::Route;
use edgebind::gateway::signature::{self, NonceCache, SignedRequest, Signer};
use edgebind::gateway::token::{self, JwksCache, TrustedIssuer, token_hash, trusted_issuers};
use http::{HeaderMap, HeaderValue};
use serde_json::json;

const NS: &str = "team-a";
const KEY_ID: &str = "edge-bench-1";
const GIB: u64 = 1 << 30;
/// Volumes the in-memory backend holds; requests spread over them.
const VOLUMES: usize = 1000;

struct Opts {
    requests: usize,
    reads: usize,
    writes: usize,
    concurrency: usize,
    policies: usize,
    flood_seconds: usize,
    flood_factor: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        requests: 20_000,
        reads: 20_000,
        writes: 5_000,
        concurrency: 32,
        policies: 40,
        flood_seconds: 5,
        flood_factor: 20,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let val = args.get(i + 1).cloned().unwrap_or_default();
        let slot = match args[i].as_str() {
            "--requests" => &mut o.requests,
            "--reads" => &mut o.reads,
            "--writes" => &mut o.writes,
            "--concurrency" => &mut o.concurrency,
            "--policies" => &mut o.policies,
            "--flood-seconds" => &mut o.flood_seconds,
            "--flood-factor" => &mut o.flood_factor,
            _ => {
                // `cargo bench` passes `--bench`; anything unknown is skipped.
                i += 1;
                continue;
            }
        };
        *slot = val
            .parse()
            .unwrap_or_else(|_| panic!("{} needs a number", args[i]));
        i += 2;
    }
    o.concurrency = o.concurrency.max(1);
    o
}

/// A bundle shaped like a real one: `n` policies over several namespaces with name globs,
/// label selectors and conditions, of which one Allow decides the benchmark's requests and one
/// Deny is evaluated but does not apply.
fn bundle(n: usize) -> Bundle {
    let mut policies = vec![
        json!({"namespace": NS, "name": "edge-storage", "effect": "Allow",
               "subjects": [{"issuer": "okta", "groups": ["okta:storage"]}],
               "actions": ["read", "create", "resize", "snapshot"],
               "volumes": {"names": ["vol-*"], "labelSelector": {"matchExpressions": [
                   {"key": "tier", "operator": "In", "values": ["gold", "silver"]}]}},
               "conditions": {"maxSizeBytes": 64 * GIB}}),
        json!({"namespace": NS, "name": "no-frozen", "effect": "Deny",
               "subjects": [{"issuer": "okta"}], "actions": ["resize", "delete"],
               "volumes": {"labelSelector": {"matchLabels": {"frozen": "true"}}}}),
    ];
    for i in 0..n.saturating_sub(2) {
        let ns = if i % 3 == 0 {
            NS.to_string()
        } else {
            format!("team-{i}")
        };
        policies.push(
            json!({"namespace": ns, "name": format!("p-{i:03}"), "effect": "Allow",
            "subjects": [{"issuer": "okta", "groups": [format!("okta:group-{i}")]},
                         {"issuer": "ci", "subjects": [format!("ci:job-{i}")]}],
            "actions": ["read", "snapshot"],
            "volumes": {"names": [format!("app-{i}-*"), "scratch-??"]}}),
        );
    }
    policies.sort_by(|a, b| {
        let k = |p: &serde_json::Value| (p["namespace"].to_string(), p["name"].to_string());
        k(a).cmp(&k(b))
    });
    let doc = json!({"version": 1, "revision": "sha256:bench", "policies": policies});
    Bundle::parse(&doc.to_string()).expect("the benchmark bundle is valid")
}

fn identity_header() -> String {
    identity_of("okta:alice")
}

/// The benchmark's identity provider: the issuer `okta` as the gateway trusts it (verification
/// on, as by default) and its JWK Set, preloaded so no request waits for a fetch.
fn idp() -> (TrustedIssuer, JwksCache) {
    let issuer: IdentityIssuer = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer", "metadata": {"name": "okta"},
        "spec": {"issuer": "https://idp.example", "audiences": ["edgebind"], "algorithms": ["EdDSA"],
                 "claimMapping": {"groupsClaim": "groups", "prefix": "okta:"}}
    }))
    .expect("issuer");
    let trusted = trusted_issuers(&[issuer]).remove(0);
    let x = URL_SAFE_NO_PAD.encode(idp_key().verifying_key().as_bytes());
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bench-idp"});
    let cache = JwksCache::preloaded(&trusted.entry, vec![jwk]);
    (trusted, cache)
}

fn idp_key() -> SigningKey {
    SigningKey::from_bytes(&[88u8; 32])
}

/// The caller's token, as the IdP mints it (`sub` without the issuer prefix).
fn token_of(subject: &str) -> String {
    use ed25519_dalek::Signer as _;
    let now = jiff::Timestamp::now().as_second();
    let sub = subject.trim_start_matches("okta:");
    let h = URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "kid": "bench-idp"}).to_string());
    let c = json!({"iss": "https://idp.example", "aud": "edgebind", "sub": sub,
                   "groups": ["storage", "everyone"], "iat": now, "exp": now + 3600});
    let input = format!("{h}.{}", URL_SAFE_NO_PAD.encode(c.to_string()));
    let sig = idp_key().sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// The gateway's state with the benchmark's issuer trusted.
fn with_idp(mut state: GatewayState) -> GatewayState {
    let (trusted, cache) = idp();
    state.issuers.replace(vec![trusted]);
    state.jwks = cache;
    state
}

fn identity_of(subject: &str) -> String {
    identity::encode(&json!({
        "v": 1, "issuer": "okta", "issuerUrl": "https://idp.example",
        "subject": subject, "groups": ["okta:storage", "okta:everyone"], "claims": {},
        "tokenJti": null, "tokenExp": 0, "tokenHash": token_hash(&token_of(subject)),
        "clientIp": "203.0.113.7",
        "edgeLocation": "FRA", "rayId": null, "policyRevision": "sha256:bench",
        "decision": "allow", "policy": "team-a/edge-storage"
    }))
}

/// A request signed as the Worker signs it, ready to send or to verify.
struct Signed {
    method: &'static str,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn nonce(i: usize, salt: u8) -> String {
    let mut b = [salt; 16];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

fn sign_all(
    key: &SigningKey,
    authority: &str,
    n: usize,
    salt: u8,
    make: impl Fn(usize) -> (&'static str, String, Vec<u8>),
) -> Vec<Signed> {
    sign_as(key, KEY_ID, &identity_header(), authority, n, salt, make)
}

fn sign_as(
    key: &SigningKey,
    key_id: &str,
    identity: &str,
    authority: &str,
    n: usize,
    salt: u8,
    make: impl Fn(usize) -> (&'static str, String, Vec<u8>),
) -> Vec<Signed> {
    let ident = HeaderValue::from_str(identity).expect("identity is ASCII");
    let subject = identity::parse(identity)
        .map(|i| i.principal.subject)
        .unwrap_or_default();
    let token = HeaderValue::from_str(&token_of(&subject)).expect("token is ASCII");
    let created = jiff::Timestamp::now().as_second();
    (0..n)
        .map(|i| {
            let (method, path, body) = make(i);
            let mut headers = HeaderMap::new();
            headers.insert("edge-identity", ident.clone());
            headers.insert("edge-token", token.clone());
            let rid = uuid::Uuid::new_v4().to_string();
            headers.insert(
                "edge-request-id",
                HeaderValue::from_str(&rid).expect("uuid is ASCII"),
            );
            let nonce = nonce(i, salt);
            Signer {
                key,
                key_id,
                created,
                expires: created + 60,
                nonce: &nonce,
            }
            .sign(method, authority, &path, None, &mut headers, &body);
            Signed {
                method,
                path,
                headers,
                body,
            }
        })
        .collect()
}

fn read_req(i: usize) -> (&'static str, String, Vec<u8>) {
    (
        "GET",
        format!("/api/v1/namespaces/{NS}/volumes/vol-{}", i % VOLUMES),
        Vec::new(),
    )
}

fn resize_req(i: usize) -> (&'static str, String, Vec<u8>) {
    (
        "POST",
        format!("/api/v1/namespaces/{NS}/volumes/vol-{}/resize", i % VOLUMES),
        json!({"sizeBytes": 2 * GIB}).to_string().into_bytes(),
    )
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("tier".to_string(), "gold".to_string())])
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut d: Vec<Duration>) -> Stats {
    d.sort_unstable();
    let at = |q: f64| d[((d.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: d[d.len() - 1],
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Part 1: verification and policy in-process, per request, as `api.rs` does them.
fn in_process(o: &Opts, key: &SigningKey, bundle: &Bundle) {
    let authority = "gw.example.com";
    let reqs = sign_all(key, authority, o.requests, 1, read_req);
    let keys = KeySet::new([(KEY_ID.to_string(), key.verifying_key(), NS.to_string())]);
    let nonces = NonceCache::new(o.requests + 1);
    let labels = labels();
    let now = jiff::Timestamp::now().as_second();
    let (trusted, jwks) = idp();
    let (mut verify_t, mut token_t, mut policy_t, mut total_t) = (
        Vec::with_capacity(reqs.len()),
        Vec::with_capacity(reqs.len()),
        Vec::with_capacity(reqs.len()),
        Vec::with_capacity(reqs.len()),
    );
    let mut allowed = 0usize;
    for r in &reqs {
        let t0 = Instant::now();
        let signed = SignedRequest {
            method: r.method,
            authority: Some(authority),
            path: &r.path,
            query: None,
            headers: &r.headers,
            body: &r.body,
        };
        let verified = signature::verify(&signed, &keys, now);
        let t_sig = Instant::now();
        // The gateway's own check of the caller's token (JWK Set cached, as in steady state).
        let tok = r
            .headers
            .get("edge-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let token_ok = futures::executor::block_on(token::verify(&jwks, &trusted.entry, tok, now))
            .and_then(|c| token::principal(&trusted.entry, &c, []))
            .is_ok();
        let t1 = Instant::now();
        let ident = r
            .headers
            .get("edge-identity")
            .and_then(|v| v.to_str().ok())
            .and_then(identity::parse);
        let decision = match (ident, Route::parse(&r.path)) {
            (Some(id), Some(Route::Volume { ns, name })) => {
                let req = PolicyRequest {
                    action: Action::Read,
                    namespace: &ns,
                    name: Some(&name),
                    labels: Some(&labels),
                    size_bytes: None,
                    client_ip: id.client_ip.as_deref(),
                    principal: &id.principal,
                };
                policy::evaluate(bundle, &req).decision
            }
            _ => Decision::Deny,
        };
        // The nonce is recorded once the request is authorised, as api.rs does.
        let ok = token_ok
            && verified.is_ok_and(|v| {
                decision == Decision::Allow
                    && nonces.check_and_insert(&v.key_id, &v.nonce, v.forget_after(), now)
            });
        let t2 = Instant::now();
        if ok {
            allowed += 1;
        }
        verify_t.push(t_sig - t0);
        token_t.push(t1 - t_sig);
        policy_t.push(t2 - t1);
        total_t.push(t2 - t0);
    }
    println!(
        "in-process, {} signed reads, {} policies in the bundle ({allowed} verified and allowed):",
        reqs.len(),
        bundle.policies.len()
    );
    for (what, d) in [
        ("signature verification", verify_t),
        ("token (gateway's own check)", token_t),
        ("identity+route+policy+nonce", policy_t),
        ("total per request", total_t),
    ] {
        let s = stats(d);
        println!(
            "  {what:<28} p50 {:>10}  p99 {:>10}  max {:>10}",
            us(s.p50),
            us(s.p99),
            us(s.max)
        );
    }
}

/// Sends every request with `concurrency` clients; returns per-request latency, statuses and
/// the wall time.
async fn drive(
    client: &reqwest::Client,
    base: &str,
    reqs: Arc<Vec<Signed>>,
    concurrency: usize,
) -> (Vec<Duration>, BTreeMap<u16, usize>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, base, reqs, next) =
            (client.clone(), base.to_string(), reqs.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = reqs.get(i) else { break };
                let m = reqwest::Method::from_bytes(r.method.as_bytes()).expect("known method");
                let t = Instant::now();
                let res = client
                    .request(m, format!("{base}{}", r.path))
                    .headers(r.headers.clone())
                    .body(r.body.clone())
                    .send()
                    .await;
                let code = match res {
                    Ok(res) => {
                        let code = res.status().as_u16();
                        let _ = res.bytes().await;
                        code
                    }
                    Err(_) => 0,
                };
                lat.push(t.elapsed());
                *codes.entry(code).or_default() += 1;
            }
            (lat, codes)
        }));
    }
    let mut lat = Vec::new();
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    for t in tasks {
        let (l, c) = t.await.expect("client task");
        lat.extend(l);
        for (k, v) in c {
            *codes.entry(k).or_default() += v;
        }
    }
    (lat, codes, start.elapsed())
}

/// The in-memory backend with `VOLUMES` volumes of 1 GiB labelled as `labels()`.
async fn seeded_backend() -> Arc<MemoryBackend> {
    let backend = Arc::new(MemoryBackend::new());
    for i in 0..VOLUMES {
        backend
            .create_volume(NewVolume {
                namespace: NS.into(),
                name: format!("vol-{i}"),
                size_bytes: GIB,
                labels: labels(),
                source_snapshot: None,
                binding: None,
                request: None,
            })
            .await
            .expect("seed volume");
    }
    backend
}

/// Part 2: the router over loopback HTTP with the in-memory backend.
async fn over_http(o: &Opts, key: &SigningKey, bundle: Bundle) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let backend = seeded_backend().await;
    let state = Arc::new(with_idp(
        GatewayState::new(
            KeyStore::new(KeySet::new([(
                KEY_ID.to_string(),
                key.verifying_key(),
                NS.to_string(),
            )])),
            BundleStore::new(bundle),
            backend,
            // Events are serialized as in production and then dropped, so the terminal is not the
            // bottleneck being measured.
            AuditSink::new(std::io::sink()),
        )
        // Throughput, not the per-key limit (part 3 measures that): one key sends everything here.
        .with_limits(EdgeLimits {
            per_key: RateLimit {
                requests_per_minute: 60_000_000,
                burst: Some(1_000_000),
            },
            ..EdgeLimits::default()
        }),
    ));
    state.ready.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let app = api_router(state);
    let server = tokio::spawn(async move {
        let _ =
            edgebind::listener::serve(listener, app, Default::default(), std::future::pending())
                .await;
    });
    let base = format!("http://{addr}");
    let authority = addr.to_string();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(o.concurrency)
        .build()
        .expect("reqwest client");

    println!(
        "\nloopback HTTP, {} concurrent keep-alive clients, in-memory backend with {VOLUMES} volumes:",
        o.concurrency
    );
    // Warm the connection pool and the code paths; these requests are not counted.
    let warm = Arc::new(sign_all(key, &authority, o.concurrency * 20, 2, read_req));
    drive(&client, &base, warm, o.concurrency).await;

    for (what, n, salt, make) in [
        (
            "read   (GET volume)",
            o.reads,
            3u8,
            read_req as fn(usize) -> (&'static str, String, Vec<u8>),
        ),
        ("write  (POST resize)", o.writes, 4u8, resize_req),
    ] {
        // Signing is the Worker's work: done before the clock starts.
        let reqs = Arc::new(sign_all(key, &authority, n, salt, make));
        let (lat, codes, wall) = drive(&client, &base, reqs, o.concurrency).await;
        let s = stats(lat);
        println!(
            "  {what:<21} {n:>6} requests in {:>7}: {:>8.0} req/s  p50 {:>9}  p99 {:>9}  max {:>9}  statuses {codes:?}",
            ms(wall),
            n as f64 / wall.as_secs_f64(),
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
    }
    server.abort();
}

fn can_i_req(_: usize) -> (&'static str, String, Vec<u8>) {
    let body = json!({"namespace": NS, "action": "read", "name": "vol-1"});
    (
        "POST",
        "/api/v1/can-i".into(),
        body.to_string().into_bytes(),
    )
}

/// Sends one request to the router in-process; returns its status and latency.
async fn call(app: &axum::Router, authority: &str, r: &Signed) -> (u16, Duration) {
    use tower::ServiceExt;
    let mut b = http::Request::builder()
        .method(r.method)
        .uri(&r.path)
        .header(http::header::HOST, authority);
    for (k, v) in &r.headers {
        b = b.header(k, v);
    }
    let req = b
        .body(axum::body::Body::from(r.body.clone()))
        .expect("request");
    let t = Instant::now();
    let status = match app.clone().oneshot(req).await {
        Ok(resp) => resp.status().as_u16(),
        Err(never) => match never {},
    };
    (status, t.elapsed())
}

/// Part 3: one key floods at `flood_factor` × its limit; the other keys must not notice.
async fn flood(o: &Opts, bundle: Bundle) {
    const QUIET: usize = 4;
    let per_second = 100usize;
    let limits = EdgeLimits {
        per_key: RateLimit {
            requests_per_minute: (per_second * 60) as u32,
            burst: Some(per_second as u32 * 2),
        },
        ..EdgeLimits::default()
    };
    let flooder = SigningKey::from_bytes(&[50u8; 32]);
    let quiet: Vec<SigningKey> = (0..QUIET)
        .map(|i| SigningKey::from_bytes(&[51 + i as u8; 32]))
        .collect();
    let mut trusted = vec![(
        "flooder".to_string(),
        flooder.verifying_key(),
        NS.to_string(),
    )];
    for (i, k) in quiet.iter().enumerate() {
        trusted.push((format!("quiet-{i}"), k.verifying_key(), NS.to_string()));
    }
    let backend = seeded_backend().await;
    let state = Arc::new(with_idp(
        GatewayState::new(
            KeyStore::new(KeySet::new(trusted)),
            BundleStore::new(bundle),
            backend,
            AuditSink::new(std::io::sink()),
        )
        .with_limits(limits),
    ));
    state.ready.store(true, Ordering::Relaxed);
    let app = api_router(state.clone());
    let authority = "gw.example.com";
    let secs = o.flood_seconds.max(1);
    // The flooder sends `factor` × its rate; each quiet key a fifth of its rate, from its own
    // identity. Signing is the Worker's work: done before the clock starts.
    let flood_rate = per_second * o.flood_factor;
    let flood_reqs = Arc::new(sign_as(
        &flooder,
        "flooder",
        &identity_of("okta:mallory"),
        authority,
        flood_rate * secs,
        6,
        can_i_req,
    ));
    let quiet_rate = per_second / 5;
    let quiet_reqs: Vec<Arc<Vec<Signed>>> = quiet
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Arc::new(sign_as(
                k,
                &format!("quiet-{i}"),
                &identity_of(&format!("okta:user-{i}")),
                authority,
                quiet_rate * secs,
                7 + i as u8,
                read_req,
            ))
        })
        .collect();

    // One sender per stream, each pacing itself by its schedule; a request is sent as its own
    // task so that a slow answer does not slow the stream down.
    let spawn_stream = |reqs: Arc<Vec<Signed>>, rate: usize| {
        let app = app.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut tasks = Vec::with_capacity(reqs.len());
            for i in 0..reqs.len() {
                let at = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(at).await;
                let (app, reqs) = (app.clone(), reqs.clone());
                tasks.push(tokio::spawn(async move {
                    call(&app, authority, &reqs[i]).await
                }));
            }
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(t.await.expect("request task"));
            }
            out
        })
    };
    let flood_task = spawn_stream(flood_reqs, flood_rate);
    let quiet_tasks: Vec<_> = quiet_reqs
        .into_iter()
        .map(|r| spawn_stream(r, quiet_rate))
        .collect();
    let flooded = flood_task.await.expect("flood stream");
    let mut quiet_out = Vec::new();
    for t in quiet_tasks {
        quiet_out.extend(t.await.expect("quiet stream"));
    }
    let accepted = flooded.iter().filter(|(s, _)| *s == 200).count();
    let limited = flooded.iter().filter(|(s, _)| *s == 429).count();
    let ok = quiet_out.iter().filter(|(s, _)| *s == 200).count();
    let s = stats(quiet_out.iter().map(|(_, d)| *d).collect());
    println!(
        "
flood, in-process: one key at {}x its limit ({} req/s against {} req/s, burst {}) for {secs} s, {QUIET} other keys at {} req/s each:",
        o.flood_factor,
        flood_rate,
        per_second,
        per_second * 2,
        quiet_rate
    );
    println!(
        "  flooder     {} sent, {accepted} answered, {limited} refused 429, {} other",
        flooded.len(),
        flooded.len() - accepted - limited
    );
    println!(
        "  other keys  {ok}/{} succeeded ({:.1} %)  p50 {:>9}  p99 {:>9}  max {:>9}",
        quiet_out.len(),
        100.0 * ok as f64 / quiet_out.len().max(1) as f64,
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
    println!(
        "  nonces held {} (partition per key: {})",
        state.nonces.len(),
        limits.nonces_per_key()
    );
}

fn main() {
    let o = opts();
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let b = bundle(o.policies);
    if cfg!(debug_assertions) {
        println!("gateway benchmark, debug build: figures are not representative\n");
    } else {
        println!("gateway benchmark, release build\n");
    }
    in_process(&o, &key, &b);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(over_http(&o, &key, b.clone()));
    rt.block_on(flood(&o, b));
}
