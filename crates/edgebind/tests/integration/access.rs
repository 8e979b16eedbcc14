//! Status of IdentityIssuer and VolumeAccessPolicy, written by the real controller against the
//! fake Kubernetes API server, with a JWK Set served on 127.0.0.1 by the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use edgebind::crd::{IdentityIssuer, VolumeAccessPolicy};
use edgebind::gateway::compile::compile_bundle;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::bed::{Bed, NS};
use crate::support::edge::send_signed;

/// A tiny OIDC provider: discovery and a JWK Set whose keys the test can rotate.
struct Idp {
    base: String,
    keys: Arc<Mutex<Vec<&'static str>>>,
    hits: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

#[derive(Clone)]
struct IdpState {
    base: String,
    keys: Arc<Mutex<Vec<&'static str>>>,
    hits: Arc<AtomicUsize>,
}

impl Idp {
    async fn start(keys: &[&'static str]) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let st = IdpState {
            base: base.clone(),
            keys: Arc::new(Mutex::new(keys.to_vec())),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let app = axum::Router::new()
            .route(
                "/jwks",
                get(|State(s): State<IdpState>| async move {
                    s.hits.fetch_add(1, Ordering::Relaxed);
                    let kids = s.keys.lock().expect("keys lock").clone();
                    let keys: Vec<Value> = kids
                        .iter()
                        .map(|k| json!({"kty": "OKP", "crv": "Ed25519", "kid": k, "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))
                        .collect();
                    axum::Json(json!({ "keys": keys }))
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(|State(s): State<IdpState>| async move {
                    axum::Json(json!({"issuer": s.base, "jwks_uri": format!("{}/jwks", s.base)}))
                }),
            )
            .with_state(st.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp {
            base,
            keys: st.keys,
            hits: st.hits,
            server,
        }
    }

    fn rotate(&self, keys: &[&'static str]) {
        *self.keys.lock().expect("keys lock") = keys.to_vec();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn issuers(bed: &Bed) -> Api<IdentityIssuer> {
    Api::all(bed.client.clone())
}

fn policies(bed: &Bed) -> Api<VolumeAccessPolicy> {
    Api::namespaced(bed.client.clone(), NS)
}

async fn create_issuer(bed: &Bed, name: &str, issuer: &str, jwks_uri: Option<&str>) {
    let mut spec =
        json!({"issuer": issuer, "audiences": ["api://edgebind"], "algorithms": ["EdDSA"]});
    if let Some(u) = jwks_uri {
        spec["jwksUri"] = json!(u);
    }
    let i: IdentityIssuer = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer",
        "metadata": {"name": name}, "spec": spec
    }))
    .expect("issuer fixture");
    issuers(bed)
        .create(&PostParams::default(), &i)
        .await
        .expect("create IdentityIssuer");
}

async fn create_policy(bed: &Bed, name: &str, issuer: &str, actions: Value) {
    let p: VolumeAccessPolicy = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"effect": "Allow", "subjects": [{"issuer": issuer}], "actions": actions}
    }))
    .expect("policy fixture");
    policies(bed)
        .create(&PostParams::default(), &p)
        .await
        .expect("create VolumeAccessPolicy");
}

/// Waits until the issuer's Ready condition has `status` and `reason` and `check` holds.
async fn wait_issuer(
    bed: &Bed,
    name: &str,
    status: &str,
    reason: &str,
    check: impl Fn(&IdentityIssuer) -> bool,
) -> IdentityIssuer {
    let api = issuers(bed);
    let check = &check;
    bed.eventually(
        20,
        &format!("IdentityIssuer {name} Ready={status} ({reason})"),
        || {
            let api = api.clone();
            async move {
                let i = api.get_opt(name).await.ok().flatten()?;
                let c = i
                    .status
                    .as_ref()?
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")?
                    .clone();
                (c.status == status && c.reason == reason && check(&i)).then_some(i)
            }
        },
    )
    .await
}

fn key_ids(i: &IdentityIssuer) -> Vec<String> {
    i.status
        .as_ref()
        .map(|s| s.key_ids.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_status_follows_its_jwk_set() {
    let bed = Bed::start().await;
    let idp = Idp::start(&["k2", "k1"]).await;
    create_issuer(&bed, "idp", &idp.base, Some(&format!("{}/jwks", idp.base))).await;
    let i = wait_issuer(&bed, "idp", "True", "JwksFetched", |i| {
        key_ids(i) == ["k1", "k2"]
    })
    .await;
    let st = i.status.as_ref().expect("status");
    assert!(st.last_jwks_fetch.is_some());
    assert_eq!(st.observed_generation, i.metadata.generation);
    assert!(
        bed.events_for("idp")
            .iter()
            .any(|e| e["reason"] == "JwksFetched"),
        "a Ready event is published"
    );

    // A converged resync fetches again but writes nothing.
    let rv = i.resource_version();
    let hits = idp.hits.load(Ordering::Relaxed);
    tokio::time::sleep(bed.config.resync + Duration::from_secs(1)).await;
    assert!(
        idp.hits.load(Ordering::Relaxed) > hits,
        "a resync fetched the JWK Set"
    );
    let again = issuers(&bed).get("idp").await.expect("issuer");
    assert_eq!(
        again.resource_version(),
        rv,
        "a converged resync writes no status"
    );

    // Rotated keys show up at the next resync, with a new fetch time.
    idp.rotate(&["k3"]);
    let rotated = wait_issuer(&bed, "idp", "True", "JwksFetched", |i| key_ids(i) == ["k3"]).await;
    let fetched = |i: &IdentityIssuer| i.status.as_ref().and_then(|s| s.last_jwks_fetch.clone());
    assert_ne!(fetched(&rotated), fetched(&i));

    // The provider goes away: Ready False, the last key ids and fetch time kept.
    idp.server.abort();
    let down = wait_issuer(&bed, "idp", "False", "JwksUnreachable", |_| true).await;
    assert_eq!(key_ids(&down), ["k3"]);
    assert_eq!(fetched(&down), fetched(&rotated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_discovery_and_its_failures() {
    let bed = Bed::start().await;
    let idp = Idp::start(&["d1"]).await;
    create_issuer(&bed, "discovered", &idp.base, None).await;
    // No discovery document under this issuer path: 404.
    create_issuer(&bed, "no-discovery", &format!("{}/tenant", idp.base), None).await;
    // The discovery document is JSON but not a JWK Set.
    let not_jwks = format!("{}/.well-known/openid-configuration", idp.base);
    create_issuer(&bed, "not-jwks", &idp.base, Some(&not_jwks)).await;
    wait_issuer(&bed, "discovered", "True", "JwksFetched", |i| {
        key_ids(i) == ["d1"]
    })
    .await;
    let nd = wait_issuer(&bed, "no-discovery", "False", "DiscoveryFailed", |_| true).await;
    assert!(key_ids(&nd).is_empty());
    wait_issuer(&bed, "not-jwks", "False", "InvalidJwks", |_| true).await;
}

/// The revision the gateway would compile from the namespace's policies now.
async fn expected_revision(bed: &Bed) -> String {
    let is = issuers(bed)
        .list(&ListParams::default())
        .await
        .expect("list issuers");
    let ps = policies(bed)
        .list(&ListParams::default())
        .await
        .expect("list policies");
    compile_bundle(&is.items, &ps.items).bundle.revision
}

async fn wait_policy(
    bed: &Bed,
    name: &str,
    status: &str,
    reason: &str,
    revision: &str,
) -> VolumeAccessPolicy {
    let api = policies(bed);
    bed.eventually(
        20,
        &format!("VolumeAccessPolicy {name} Ready={status} ({reason}) at {revision}"),
        || {
            let api = api.clone();
            async move {
                let p = api.get_opt(name).await.ok().flatten()?;
                let st = p.status.as_ref()?;
                let c = st.conditions.iter().find(|c| c.type_ == "Ready")?;
                (c.status == status
                    && c.reason == reason
                    && st.bundle_revision.as_deref() == Some(revision))
                .then_some(p)
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_status_and_bundle_revision() {
    let bed = Bed::start().await;
    // The issuer's JWK Set is unreachable; policies only need it to exist.
    create_issuer(
        &bed,
        "okta",
        "https://okta.example.com",
        Some("http://127.0.0.1:9/jwks"),
    )
    .await;
    create_policy(&bed, "readers", "okta", json!(["read"])).await;
    create_policy(&bed, "ghosts", "ghost", json!(["read"])).await;
    let rev1 = expected_revision(&bed).await;
    let readers = wait_policy(&bed, "readers", "True", "Compiled", &rev1).await;
    let ghosts = wait_policy(&bed, "ghosts", "False", "UnknownIssuer", &rev1).await;
    assert_eq!(
        ghosts.status.as_ref().and_then(|s| s.observed_generation),
        ghosts.metadata.generation
    );
    assert!(
        bed.events_for("ghosts")
            .iter()
            .any(|e| e["reason"] == "UnknownIssuer"),
        "the refusal is published as an event"
    );

    // Changing one policy changes the revision every policy of the namespace reports.
    policies(&bed)
        .patch(
            "ghosts",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"actions": ["read", "create"]}})),
        )
        .await
        .expect("patch policy");
    let rev2 = expected_revision(&bed).await;
    assert_ne!(rev1, rev2);
    wait_policy(&bed, "readers", "True", "Compiled", &rev2).await;
    wait_policy(&bed, "ghosts", "False", "UnknownIssuer", &rev2).await;

    // The missing issuer appears: the policy that names it becomes Ready.
    create_issuer(
        &bed,
        "ghost",
        "https://ghost.example.com",
        Some("http://127.0.0.1:9/jwks"),
    )
    .await;
    wait_policy(&bed, "ghosts", "True", "Compiled", &rev2).await;

    // Converged: a resync writes nothing.
    let rv = policies(&bed)
        .get("readers")
        .await
        .expect("policy")
        .resource_version();
    assert!(
        readers.resource_version() != rv,
        "the revision change was written"
    );
    tokio::time::sleep(bed.config.resync + Duration::from_secs(1)).await;
    let again = policies(&bed).get("readers").await.expect("policy");
    assert_eq!(
        again.resource_version(),
        rv,
        "a converged resync writes no status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_publishes_events_for_changes() {
    use edgebind::gateway::api::{BundleStore, GatewayState, router};
    use edgebind::gateway::audit::{AuditSink, MemoryWriter};
    use edgebind::gateway::backend::KubeVolumeBackend;
    use edgebind::gateway::events::EventSink;
    use edgebind::gateway::keys::{KeySet, KeyStore};
    use edgebind::gateway::policy::Bundle;

    let bed = Bed::start_without_controller(
        edgebind_sim::linstor::SimConfig::realistic(),
        crate::support::bed::fast_config(),
    )
    .await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let bundle = Bundle::parse(
        &json!({"version": 1, "revision": "sha256:test", "policies": [
            {"namespace": NS, "name": "admins", "effect": "Allow",
             "subjects": [{"issuer": "okta", "groups": ["okta:admins"]}],
             "actions": ["read", "create", "resize"]}]})
        .to_string(),
    )
    .expect("test bundle");
    let mut state = GatewayState::new(
        KeyStore::new(KeySet::new([(
            "edge-1".to_string(),
            key.verifying_key(),
            NS.to_string(),
        )])),
        BundleStore::new(bundle),
        Arc::new(KubeVolumeBackend::new(bed.client.clone(), "main")),
        AuditSink::new(MemoryWriter::default()),
    );
    state.events = Some(EventSink::new(bed.client.clone()));
    state
        .issuers
        .replace(crate::support::idp::trusted(&["okta"]));
    state.ready.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let app = router(Arc::new(state));
    let server = tokio::spawn(async move {
        let _ =
            edgebind::listener::serve(listener, app, Default::default(), std::future::pending())
                .await;
    });

    let create_path = format!("/api/v1/namespaces/{NS}/volumes");
    let (status, secrets) = send_signed(
        &base,
        &key,
        "okta",
        "POST",
        &create_path,
        json!({"name": "app-db", "sizeBytes": 1u64 << 30}),
        "req-create-1",
    )
    .await;
    assert_eq!(status, 201);
    let ev = bed
        .eventually(10, "an EdgeCreate event on app-db", || async {
            bed.events_for("app-db")
                .into_iter()
                .find(|e| e["reason"] == "EdgeCreate")
        })
        .await;
    assert_eq!(ev["regarding"]["kind"], "EdgeVolume");
    assert_eq!(ev["reportingController"], "edgebind-gateway");
    let note = ev["note"].as_str().unwrap_or_default();
    for part in [
        "requestId=req-create-1",
        "subject=okta:alice",
        "issuer=okta",
        "keyId=edge-1",
    ] {
        assert!(note.contains(part), "{note} lacks {part}");
    }
    let text = ev.to_string();
    assert!(!secrets.is_empty());
    for s in &secrets {
        assert!(
            !text.contains(s.as_str()),
            "a credential header reached the Event"
        );
    }

    // A refused change (delete is not allowed) and a read publish nothing.
    let vol_path = format!("/api/v1/namespaces/{NS}/volumes/app-db");
    let (status, _) = send_signed(
        &base,
        &key,
        "okta",
        "DELETE",
        &vol_path,
        json!(null),
        "req-del-1",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send_signed(
        &base,
        &key,
        "okta",
        "GET",
        &vol_path,
        json!(null),
        "req-get-1",
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = bed.events_for("app-db");
    assert_eq!(all.len(), 1, "only the create is an event: {all:?}");
    server.abort();
}

/// What GitOps tools see (issue 13): each object's status as kstatus computes it (sigs.k8s.io/
/// cli-utils, the library Flux's health checks use; `tests/apiserver/kstatus`). A Ready object is
/// Current; a terminal failure (InvalidSpec, UnknownIssuer) is Failed, which Flux reports as
/// Stalled, rather than InProgress forever (what Ready=False alone gives).
#[tokio::test]
async fn gitops_tools_read_ready_as_current_and_terminal_failures_as_failed() {
    use std::io::Write;

    let bed = Bed::start().await;
    create_issuer(
        &bed,
        "okta",
        "https://okta.example.com",
        Some("http://127.0.0.1:9/jwks"),
    )
    .await;
    create_policy(&bed, "readers", "okta", json!(["read"])).await;
    create_policy(&bed, "ghosts", "ghost", json!(["read"])).await;
    let unprefixed: VolumeAccessPolicy = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
        "metadata": {"name": "unprefixed", "namespace": NS},
        "spec": {"effect": "Deny", "subjects": [{"issuer": "okta", "groups": ["admins"]}], "actions": ["delete"]}
    }))
    .expect("policy");
    policies(&bed)
        .create(&PostParams::default(), &unprefixed)
        .await
        .expect("create");
    let rev = expected_revision(&bed).await;
    let cases = [
        (
            wait_policy(&bed, "readers", "True", "Compiled", &rev).await,
            "Current",
        ),
        (
            wait_policy(&bed, "ghosts", "False", "UnknownIssuer", &rev).await,
            "Failed",
        ),
        (
            wait_policy(&bed, "unprefixed", "False", "InvalidSpec", &rev).await,
            "Failed",
        ),
    ];
    let kstatus = crate::support::apiserver::go_tool("kstatus", "EDGEBIND_KSTATUS")
        .expect("kstatus is built from tests/apiserver");
    let mut child = std::process::Command::new(&kstatus)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kstatus runs");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for (obj, _) in &cases {
            let mut v = serde_json::to_value(obj).expect("json");
            v["apiVersion"] = json!("edgebind.dev/v1alpha1");
            v["kind"] = json!("VolumeAccessPolicy");
            writeln!(stdin, "{v}").expect("write");
        }
    }
    let out = child.wait_with_output().expect("kstatus output");
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    let want: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
    assert_eq!(
        got,
        want,
        "kstatus: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}
