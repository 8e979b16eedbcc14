//! Signing key rotation under traffic: the real controller publishes an EdgeBinding to the
//! Cloudflare simulator and maintains the gateway key Secret; an in-process gateway reloads
//! its trusted keys from that Secret every 100 ms (as its reload loop does); a traffic loop
//! stands in for the Worker, signing every read with whatever SIGNING_KEY the simulator holds
//! for the script at that moment. An on-demand rotation must not refuse a single request, and
//! the retired key must be refused afterwards.
//!
//! The signer is Rust (`gateway::signature::Signer`, the §5 algorithm), not workerd: the
//! subject here is the order of the controller's steps (publish the public half, wait, switch
//! the Worker, overlap, retire) against the gateway's reload, timed finely (100 ms reloads,
//! the key read from the simulator for every request), which needs the Worker only as "signs
//! with the current secret". The same rotation through the real bundled Worker in workerd,
//! with the `edgebind` binary's controller, gateway and simulators as separate processes, is
//! `worker/test/rotation.test.mjs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use edgebind::crd::EdgeBinding;
use edgebind::gateway::api::{BundleStore, GatewayState, router};
use edgebind::gateway::audit::{AuditSink, MemoryWriter};
use edgebind::gateway::backend::{MemoryBackend, NewVolume, VolumeBackend};
use edgebind::gateway::identity;
use edgebind::gateway::keys::KeyStore;
use edgebind::gateway::server::{load_bundle, load_keys};
use edgebind::gateway::signature::Signer;
use edgebind_sim::cloudflare::{
    CfSimConfig, CloudflareSim, REALISTIC_ACCOUNT_ID as ACC, REALISTIC_TOKEN as TOKEN,
    REALISTIC_ZONE_ID as ZONE,
};
use edgebind_sim::linstor::SimConfig;
use http::{HeaderMap, HeaderValue};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::bed::{Bed, NS, fast_config};
use crate::support::cf::{SYS, create, seed_account};
use crate::support::http::client;

const KEYS_SECRET: &str = "edgebind-gateway-keys";
const SCRIPT: &str = "edgebind-gw";
const VOLUME_PATH: &str = "/api/v1/namespaces/team-a/volumes/pvc-1";
/// Upper bounds of the traffic loop.
const MAX_REQUESTS: u64 = 5_000;
const MAX_TRAFFIC: Duration = Duration::from_secs(40);
/// Pause between requests (about 50 requests per second).
const PACE: Duration = Duration::from_millis(20);

/// The Worker's signing key as the simulator holds it now: key id and private key.
fn worker_key(sim: &CloudflareSim) -> Option<(String, SigningKey)> {
    let text = sim.secret_value_for_test(ACC, SCRIPT, "SIGNING_KEY")?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let kid = v.get("keyId")?.as_str()?.to_string();
    let d = URL_SAFE_NO_PAD
        .decode(v.get("jwk")?.get("d")?.as_str()?)
        .ok()?;
    let seed: [u8; 32] = d.try_into().ok()?;
    Some((kid, SigningKey::from_bytes(&seed)))
}

async fn gateway_key_ids(client: &kube::Client) -> Vec<String> {
    Api::<Secret>::namespaced(client.clone(), SYS)
        .get_opt(KEYS_SECRET)
        .await
        .expect("read gateway keys")
        .and_then(|s| s.data)
        .unwrap_or_default()
        .into_keys()
        .filter_map(|k| k.strip_suffix(".pub").map(str::to_string))
        .collect()
}

static NONCE: AtomicU64 = AtomicU64::new(1);

/// One signed read, as the Worker sends it after its own checks. Returns status and error code.
async fn signed_read(
    http: &reqwest::Client,
    base: &str,
    authority: &str,
    kid: &str,
    key: &SigningKey,
) -> (u16, String) {
    let ident = identity::encode(&json!({
        "v": 1, "issuer": "okta", "issuerUrl": "https://idp.example.com",
        "subject": "okta:alice", "groups": ["storage"], "claims": {},
        "tokenJti": null, "tokenExp": 0, "clientIp": "203.0.113.7",
        "edgeLocation": "FRA", "rayId": null, "policyRevision": null,
        "decision": "allow", "policy": null
    }));
    let mut h = HeaderMap::new();
    h.insert(
        "edge-identity",
        HeaderValue::from_str(&ident).expect("base64url is ASCII"),
    );
    h.insert(
        "edge-request-id",
        HeaderValue::from_static("5c1e2f0a-7d3b-4c6e-8f9a-0b1c2d3e4f50"),
    );
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&n.to_be_bytes());
    raw[8..12].copy_from_slice(&std::process::id().to_be_bytes());
    let nonce = URL_SAFE_NO_PAD.encode(raw);
    let created = jiff::Timestamp::now().as_second();
    Signer {
        key,
        key_id: kid,
        created,
        expires: created + 60,
        nonce: &nonce,
    }
    .sign("GET", authority, VOLUME_PATH, None, &mut h, b"");
    let mut rb = http.get(format!("{base}{VOLUME_PATH}"));
    for (k, v) in &h {
        rb = rb.header(k.as_str(), v.as_bytes());
    }
    match rb.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.json::<Value>().await.unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or("").to_string();
            (status, code)
        }
        Err(e) => (0, format!("transport: {e}")),
    }
}

/// One request of the traffic loop.
struct Sent {
    at: Instant,
    kid: String,
    status: u16,
    code: String,
}

#[tokio::test]
async fn rotation_under_traffic_refuses_nothing_and_retires_the_old_key() {
    // Propagation (500 ms) well above the gateway's reload period (100 ms), as in production
    // (30 s vs 10 s); a 2 s overlap so the test is short.
    let mut config = fast_config();
    config.cloudflare.key_namespace = SYS.into();
    config.cloudflare.key_propagation = Duration::from_millis(500);
    config.cloudflare.key_overlap = Duration::from_secs(2);
    config.cloudflare.max_rate_limit_wait = Duration::from_secs(3);
    let cf = CloudflareSim::start(CfSimConfig::realistic())
        .await
        .expect("Cloudflare simulator starts");
    let bed = Bed::start_with(SimConfig::realistic(), config).await;
    let c = bed.client.clone();

    seed_account(&c, &cf.url(), TOKEN, &["read"]).await;
    let bindings: Api<EdgeBinding> = Api::namespaced(c.clone(), NS);
    create(
        &bindings,
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
               "metadata": {"name": "edge", "namespace": NS},
               "spec": {"accountRef": "cf", "zoneId": ZONE, "routes": ["api.example.com/*"],
                        "scriptName": SCRIPT, "gatewayUrl": "https://gw.example.com"}}),
    )
    .await;
    let old_kid = bed
        .eventually(30, "EdgeBinding published with a signing key", || {
            let api = bindings.clone();
            async move {
                let st = api.get_opt("edge").await.ok().flatten()?.status?;
                let ready = st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                (ready && st.secret_hashes.contains_key("SIGNING_KEY"))
                    .then_some(st.current_key_id)
                    .flatten()
            }
        })
        .await;
    let (worker_kid, old_key) = worker_key(&cf.sim).expect("the Worker holds a SIGNING_KEY");
    assert_eq!(worker_kid, old_kid);

    // The gateway: policies compiled from the resources, one volume in memory, keys reloaded
    // from the controller's Secret every 100 ms.
    let backend = Arc::new(MemoryBackend::new());
    backend
        .create_volume(NewVolume {
            namespace: NS.into(),
            name: "pvc-1".into(),
            size_bytes: 1 << 30,
            labels: Default::default(),
            source_snapshot: None,
            binding: None,
            request: None,
        })
        .await
        .expect("seed volume");
    let (bundle, issuers) = load_bundle(&c).await.expect("policies compile");
    let state = GatewayState::new(
        KeyStore::default(),
        BundleStore::new(bundle),
        backend,
        AuditSink::new(MemoryWriter::default()),
    );
    // This test is about signing keys; the stand-in Worker has no identity provider's tokens
    // (the gateway's token check is tested in attacks.rs and by the Worker's e2e suite).
    state.issuers.replace(
        issuers
            .into_iter()
            .map(|mut i| {
                i.verify = false;
                i
            })
            .collect(),
    );
    let state = Arc::new(state);
    state.ready.store(true, Ordering::Relaxed);
    let reloads = Arc::new(AtomicU64::new(0));
    // When the gateway first trusted each key id.
    let trusted_since: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let reloader = {
        let (c, state) = (c.clone(), state.clone());
        let (reloads, trusted_since) = (reloads.clone(), trusted_since.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                // A failed read keeps the previous set, as in the gateway.
                if let Ok(set) = load_keys(&c, SYS, KEYS_SECRET).await {
                    let now = Instant::now();
                    let mut seen = trusted_since.lock().expect("trusted_since lock");
                    for id in set.key_ids() {
                        seen.entry(id.to_string()).or_insert(now);
                    }
                    drop(seen);
                    state.keys.replace(set);
                    reloads.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server = {
        let app = router(state.clone());
        tokio::spawn(async move {
            let _ = edgebind::listener::serve(
                listener,
                app,
                Default::default(),
                std::future::pending(),
            )
            .await;
        })
    };
    let (base, authority) = (format!("http://{addr}"), addr.to_string());
    bed.eventually(10, "gateway trusts the Worker's key", || {
        let (state, kid) = (state.clone(), old_kid.clone());
        async move { state.keys.current().get(&kid).is_some().then_some(()) }
    })
    .await;

    // The traffic loop: the key is read from the simulator for every request, as each Worker
    // request reads its SIGNING_KEY binding.
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let traffic = {
        let (sim, stop, log) = (cf.sim.clone(), stop.clone(), log.clone());
        let (base, authority) = (base.clone(), authority.clone());
        tokio::spawn(async move {
            let http = client();
            let t0 = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < MAX_REQUESTS && t0.elapsed() < MAX_TRAFFIC {
                let Some((kid, key)) = worker_key(&sim) else {
                    // No key would be a failure of its own: record it as such.
                    log.lock().expect("log lock").push(Sent {
                        at: Instant::now(),
                        kid: String::new(),
                        status: 0,
                        code: "no SIGNING_KEY in the Worker".into(),
                    });
                    break;
                };
                let at = Instant::now();
                let (status, code) = signed_read(&http, &base, &authority, &kid, &key).await;
                log.lock().expect("log lock").push(Sent {
                    at,
                    kid,
                    status,
                    code,
                });
                n += 1;
                tokio::time::sleep(PACE).await;
            }
        })
    };

    // Some traffic on the old key, then rotate on demand.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rotate_at = Instant::now();
    bindings
        .patch(
            "edge",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"edgebind.dev/rotate-key": "r1"}}})),
        )
        .await
        .expect("request a rotation");
    let new_kid = bed
        .eventually(20, "a new current key", || {
            let (api, old) = (bindings.clone(), old_kid.clone());
            async move {
                let st = api.get("edge").await.ok()?.status?;
                st.current_key_id.filter(|k| *k != old)
            }
        })
        .await;
    bed.eventually(20, "old public key retired from the Secret", || {
        let (c, old, new) = (c.clone(), old_kid.clone(), new_kid.clone());
        async move {
            let ids = gateway_key_ids(&c).await;
            (!ids.contains(&old) && ids.contains(&new)).then_some(())
        }
    })
    .await;
    let retired_at = Instant::now();
    // The gateway's next reload drops the old key.
    bed.eventually(5, "gateway stops trusting the old key", || {
        let (state, old) = (state.clone(), old_kid.clone());
        async move { state.keys.current().get(&old).is_none().then_some(()) }
    })
    .await;
    // Traffic continues a little on the new key alone, then stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic loop ends");

    // A request still signed with the old key (a Worker isolate that never reloaded) is refused.
    let (status, code) = signed_read(&client(), &base, &authority, &old_kid, &old_key).await;
    assert_eq!((status, code.as_str()), (401, "key_unknown"));

    let log = std::mem::take(&mut *log.lock().expect("log lock"));
    let failures: Vec<String> = log
        .iter()
        .filter(|s| s.status != 200)
        .map(|s| {
            format!(
                "+{} ms key {}: {} {}",
                s.at.duration_since(rotate_at).as_millis(),
                s.kid,
                s.status,
                s.code
            )
        })
        .collect();
    let during = log
        .iter()
        .filter(|s| s.at >= rotate_at && s.at <= retired_at)
        .count();
    let on_old = log.iter().filter(|s| s.kid == old_kid).count();
    let on_new = log.iter().filter(|s| s.kid == new_kid).count();
    let on_old_after_request = log
        .iter()
        .filter(|s| s.kid == old_kid && s.at >= rotate_at)
        .count();
    eprintln!(
        "rotation under traffic: {} requests, {during} between the rotation request and retirement \
         ({:.1} s), {on_old} on the old key ({on_old_after_request} after the request), {on_new} on \
         the new key, {} gateway key reloads",
        log.len(),
        retired_at.duration_since(rotate_at).as_secs_f64(),
        reloads.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed:\n{}",
        failures.len(),
        log.len(),
        failures.join("\n")
    );
    // Both keys carried traffic, and the rotation happened while requests were flowing.
    assert!(on_old > 0 && on_new > 0, "old {on_old}, new {on_new}");
    assert_eq!(on_old + on_new, log.len(), "a third key signed requests");
    assert!(
        on_old_after_request > 0,
        "no request during the propagation wait"
    );
    assert!(during >= 20, "only {during} requests during the rotation");
    // The controller published the new public key and waited out the propagation (500 ms)
    // before switching the Worker: the gateway trusted it well before its first use. (The
    // traffic loop samples the Worker's key about every 20-60 ms, the gateway reloads every
    // 100 ms: 250 ms leaves room for both.)
    let first_use = log
        .iter()
        .find(|s| s.kid == new_kid)
        .map(|s| s.at)
        .expect("the new key signed requests");
    let trusted = trusted_since
        .lock()
        .expect("trusted_since lock")
        .get(&new_kid)
        .copied()
        .expect("the gateway loaded the new key");
    assert!(first_use >= rotate_at);
    let lead = first_use.saturating_duration_since(trusted);
    eprintln!(
        "new key trusted by the gateway {} ms before the Worker first signed with it",
        lead.as_millis()
    );
    assert!(
        lead >= Duration::from_millis(250),
        "the Worker switched {} ms after the gateway learnt the key",
        lead.as_millis()
    );

    server.abort();
    reloader.abort();
    cf.shutdown().await;
}
