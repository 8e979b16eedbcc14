//! The real controller publishing EdgeBindings to the Cloudflare simulator (on the fake
//! Kubernetes API server): first publish, quiet resyncs, secret-only updates, route conflicts,
//! rate limits, propagation delays, 10215, key rotation, deletion and bad tokens. Every
//! exchange is checked against the official Cloudflare OpenAPI document.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use edgebind::controller::ControllerConfig;
use edgebind::crd::{CloudflareAccount, EdgeBinding, IdentityIssuer, VolumeAccessPolicy};
use edgebind_sim::cloudflare::{
    CfSimConfig, CloudflareSim, REALISTIC_ACCOUNT_ID as ACC, REALISTIC_TOKEN as TOKEN,
    REALISTIC_ZONE_ID as ZONE, RunningCfSim,
};
use edgebind_sim::linstor::SimConfig;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::bed::{Bed, NS, fast_config};
use crate::support::cf::{SYS, create, seed_account};
use crate::support::contract::{self, Contract};

const SCRIPT: &str = "edgebind-gw";
/// Actions of the test policy before and after a policy change.
const ACTIONS: &[&str] = &["read"];
const ACTIONS2: &[&str] = &["read", "create"];

struct CfBed {
    bed: Bed,
    cf: RunningCfSim,
}

fn cf_config() -> ControllerConfig {
    let mut c = fast_config();
    c.cloudflare.key_namespace = SYS.into();
    c.cloudflare.key_propagation = Duration::from_millis(300);
    c.cloudflare.key_overlap = Duration::from_secs(2);
    c.cloudflare.max_rate_limit_wait = Duration::from_secs(3);
    c
}

impl CfBed {
    async fn start() -> CfBed {
        Self::start_with(CfSimConfig::realistic(), TOKEN).await
    }

    async fn start_with(sim: CfSimConfig, token: &str) -> CfBed {
        let cf = CloudflareSim::start(sim)
            .await
            .expect("Cloudflare simulator starts");
        cf.sim.record_exchanges(true);
        let bed = Bed::start_with(SimConfig::realistic(), cf_config()).await;
        let c = bed.client.clone();
        seed_account(&c, &cf.url(), token, ACTIONS).await;
        CfBed { bed, cf }
    }

    fn sim(&self) -> &CloudflareSim {
        &self.cf.sim
    }

    fn bindings(&self) -> Api<EdgeBinding> {
        Api::namespaced(self.bed.client.clone(), NS)
    }

    async fn create_binding(&self, name: &str, routes: &[&str], extra: Value) {
        let mut spec = json!({"accountRef": "cf", "zoneId": ZONE, "routes": routes, "scriptName": SCRIPT,
                              "gatewayUrl": "https://gw.example.com"});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        create(
            &self.bindings(),
            json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
                   "metadata": {"name": name, "namespace": NS}, "spec": spec}),
        )
        .await;
    }

    /// Waits until condition `type_` of the binding has `status` and `reason`.
    async fn wait_cond(&self, name: &str, type_: &str, status: &str, reason: &str) -> EdgeBinding {
        let api = self.bindings();
        self.bed
            .eventually(
                30,
                &format!("EdgeBinding {name} {type_}={status} ({reason})"),
                || {
                    let api = api.clone();
                    async move {
                        let b = api.get_opt(name).await.ok().flatten()?;
                        let ok =
                            b.status.as_ref()?.conditions.iter().any(|c| {
                                c.type_ == type_ && c.status == status && c.reason == reason
                            });
                        ok.then_some(b)
                    }
                },
            )
            .await
    }

    /// Published with a current signing key in the Worker.
    async fn wait_published(&self, name: &str) -> EdgeBinding {
        let api = self.bindings();
        self.bed
            .eventually(
                30,
                &format!("EdgeBinding {name} published with a signing key"),
                || {
                    let api = api.clone();
                    async move {
                        let b = api.get_opt(name).await.ok().flatten()?;
                        let st = b.status.as_ref()?;
                        let ready = st
                            .conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True");
                        (ready && st.secret_hashes.contains_key("SIGNING_KEY")).then_some(b)
                    }
                },
            )
            .await
    }

    async fn gateway_keys(&self) -> BTreeMap<String, String> {
        let api = Api::<Secret>::namespaced(self.bed.client.clone(), SYS);
        api.get_opt("edgebind-gateway-keys")
            .await
            .expect("read gateway keys")
            .and_then(|s| s.data)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf-8")))
            .collect()
    }

    /// Changes the policy's actions: the compiled bundle changes, nothing else.
    async fn set_policy_actions(&self, actions: &[&str]) {
        Api::<VolumeAccessPolicy>::namespaced(self.bed.client.clone(), NS)
            .patch(
                "readers",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"actions": actions}})),
            )
            .await
            .expect("patch policy");
    }

    /// What the Worker should hold, compiled (by the gateway's compiler) from the resources as
    /// the API server stores them.
    async fn expected(&self) -> (String, String) {
        let c = self.bed.client.clone();
        let issuers = Api::<IdentityIssuer>::all(c.clone())
            .list(&Default::default())
            .await
            .expect("issuers");
        let policies = Api::<VolumeAccessPolicy>::namespaced(c, NS)
            .list(&Default::default())
            .await
            .expect("policies");
        let compiled = edgebind::gateway::compile::compile_bundle(&issuers.items, &policies.items);
        (compiled.issuers_json(), compiled.bundle_json())
    }

    /// Every recorded exchange, checked against the official Cloudflare document.
    fn assert_contract(&self) {
        let c: &Contract =
            Contract::shared_cloudflare().expect("the Cloudflare OpenAPI document loads");
        let ex: Vec<contract::Exchange> = self
            .sim()
            .exchanges()
            .into_iter()
            // Injected 5xx answers are not in the document (it declares only 200 and 4XX).
            .filter(|e| e.status < 500)
            .map(|e| contract::Exchange {
                method: e.method,
                path: e.path,
                query: e
                    .query
                    .map(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .into_owned()
                            .collect()
                    })
                    .unwrap_or_default(),
                request_content_type: e.request_content_type,
                request_body: (!e.request_body.is_empty()).then_some(e.request_body),
                status: e.status,
                response_content_type: e.response_content_type,
                response_body: e.response_body,
            })
            .collect();
        assert!(!ex.is_empty(), "no Cloudflare exchange was recorded");
        // Two known differences of the simulator's script objects from the 2024 document
        // (`usage_model: "standard"` postdates its enum; `tail_consumers: null`) are the
        // simulator's, not edgebind's: every request and every other answer must conform.
        let violations: Vec<String> = contract::ExchangeLog::new(c)
            .check_all(&ex)
            .into_iter()
            .filter(|v| {
                !(v.contains("workers/scripts")
                    && (v.contains(
                        "/tail_consumers: the value is not of type \"array\" (got null)",
                    ) || v.contains("/usage_model: the value does not match")))
            })
            .collect();
        assert!(
            violations.is_empty(),
            "Cloudflare contract violations:\n{}",
            violations.join("\n")
        );
    }
}

const S_UPLOAD: &str = "/accounts/{account_id}/workers/scripts/{script_name}";
const S_BULK: &str = "/accounts/{account_id}/workers/scripts/{script_name}/secrets-bulk";
const S_ROUTES: &str = "/zones/{zone_id}/workers/routes";
const S_ROUTE: &str = "/zones/{zone_id}/workers/routes/{route_id}";
const S_SECRETS: &str = "/accounts/{account_id}/workers/scripts/{script_name}/secrets";

#[tokio::test]
async fn first_publish_then_converged_resyncs_make_no_writes() {
    let t = CfBed::start().await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    let b = t.wait_published("edge").await;
    let st = b.status.clone().unwrap();
    let first = t.sim().stats();
    eprintln!(
        "first publish: {} reads, {} writes: {:?}",
        first.reads, first.writes, first.by_endpoint
    );

    // Two writes: the upload carrying the three secrets, and the route (no separate
    // secrets-bulk call).
    assert_eq!(first.count("PUT", S_UPLOAD), 1, "{:?}", first.by_endpoint);
    assert_eq!(first.count("PATCH", S_BULK), 0, "{:?}", first.by_endpoint);
    assert_eq!(first.writes, 2, "{:?}", first.by_endpoint);

    // The Worker: our code, GATEWAY_URL as plain text, the three secrets, our tag, and
    // Workers Logs on for every request (the audit lines go there).
    let script = t.sim().script(ACC, SCRIPT).expect("Worker uploaded");
    assert_eq!(
        script.observability,
        Some(json!({"enabled": true, "head_sampling_rate": 1.0}))
    );
    assert_eq!(script.main_module, "worker.js");
    assert_eq!(script.compatibility_date.as_deref(), Some("2025-09-01"));
    assert!(script.bindings.iter().any(|b| b["type"] == "plain_text"
        && b["name"] == "GATEWAY_URL"
        && b["text"] == "https://gw.example.com"));
    assert_eq!(
        t.sim().secret_names(ACC, SCRIPT),
        vec!["ISSUERS", "POLICY_BUNDLE", "SIGNING_KEY"]
    );
    let (issuers, bundle) = t.expected().await;
    assert_eq!(
        t.sim()
            .secret_value_for_test(ACC, SCRIPT, "ISSUERS")
            .as_deref(),
        Some(issuers.as_str())
    );
    assert_eq!(
        t.sim()
            .secret_value_for_test(ACC, SCRIPT, "POLICY_BUNDLE")
            .as_deref(),
        Some(bundle.as_str()),
        "the Worker gets the bundle the gateway compiles"
    );
    assert_eq!(st.script_etag.as_deref(), Some(script.etag.as_str()));
    assert_eq!(
        st.deployed_version_id.as_deref(),
        Some(script.latest_version_id.as_str())
    );
    // Routes: ours, recorded.
    let routes = t.sim().routes(ZONE);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].script.as_deref(), Some(SCRIPT));
    assert_eq!(st.route_ids.get("api.example.com/*"), Some(&routes[0].id));
    // Status holds hashes, never values.
    let status_text = serde_json::to_string(&st).unwrap();
    assert!(
        !status_text.contains("okta"),
        "a secret value leaked into status"
    );
    assert!(st.secret_hashes.values().all(|h| h.starts_with("sha256:")));
    // The Worker signs with a key the gateways trust (base64url raw 32-byte public key).
    let kid = st.current_key_id.clone().expect("current key id");
    let sk: Value = serde_json::from_str(
        &t.sim()
            .secret_value_for_test(ACC, SCRIPT, "SIGNING_KEY")
            .expect("SIGNING_KEY set"),
    )
    .unwrap();
    assert_eq!(sk["keyId"], kid.as_str());
    let keys = t.gateway_keys().await;
    assert_eq!(
        keys.get(&format!("{kid}.pub")),
        sk["jwk"]["x"].as_str().map(str::to_string).as_ref()
    );
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&keys[&format!("{kid}.pub")])
        .unwrap();
    assert_eq!(raw.len(), 32);
    assert!(
        b.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"edgebind.dev/cleanup".to_string())
    );

    // Converged: resyncs (every 3 s) make no Cloudflare write and few reads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rv = t
        .bindings()
        .get("edge")
        .await
        .unwrap()
        .metadata
        .resource_version;
    t.sim().reset_stats();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stats = t.sim().stats();
    eprintln!(
        "converged, 7 s: {} reads, {} writes: {:?}",
        stats.reads, stats.writes, stats.by_endpoint
    );
    assert_eq!(
        stats.writes, 0,
        "converged resync wrote: {:?}",
        stats.by_endpoint
    );
    // The upload set the secret names and showed the script's new `modified_on`: no listing.
    assert_eq!(
        stats.count("GET", S_SECRETS),
        0,
        "secret names listed again after our own upload: {:?}",
        stats.by_endpoint
    );
    assert!(
        stats.reads >= 3,
        "resync did not look at Cloudflare: {stats:?}"
    );
    // Per resync round (about 3 in 7 s): the account's script list and the zone's route list
    // + 1 token verify; the secret names once, after the publish changed the script.
    assert!(
        stats.reads <= 3 * 3 + 1,
        "too many reads: {:?}",
        stats.by_endpoint
    );
    assert_eq!(
        t.bindings()
            .get("edge")
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv,
        "converged resync rewrote the EdgeBinding"
    );
    t.assert_contract();
}

#[tokio::test]
async fn many_bindings_share_the_account_lists_on_resync() {
    let t = CfBed::start().await;
    let n = 6;
    for i in 0..n {
        t.create_binding(
            &format!("edge-{i}"),
            &[&format!("b{i}.example.com/*")],
            json!({"scriptName": format!("w{i}")}),
        )
        .await;
    }
    for i in 0..n {
        t.wait_published(&format!("edge-{i}")).await;
    }
    // Let the first post-publish resync (secret names listed once per script) pass.
    tokio::time::sleep(Duration::from_secs(4)).await;
    t.sim().reset_stats();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stats = t.sim().stats();
    let calls = |k: &str| stats.by_endpoint.get(k).copied().unwrap_or(0);
    eprintln!(
        "{n} converged bindings, 7 s: {} reads, {} writes: {:?}",
        stats.reads, stats.writes, stats.by_endpoint
    );
    assert_eq!(stats.writes, 0, "{:?}", stats.by_endpoint);
    // Each binding resyncs about twice in 7 s (every 3 s); the lists are read about once per
    // round for all of them, not once per binding (that would be 2 * 6 * 2 = 24).
    let scripts = calls("GET /accounts/{account_id}/workers/scripts");
    let routes = calls("GET /zones/{zone_id}/workers/routes");
    let secrets = calls("GET /accounts/{account_id}/workers/scripts/{script_name}/secrets");
    assert!((1..=4).contains(&scripts), "script lists: {scripts}");
    assert!((1..=4).contains(&routes), "route lists: {routes}");
    assert_eq!(secrets, 0, "secret names re-listed for unchanged scripts");
    // No contract check here: the other scenarios check every exchange, and with six scripts
    // per list the two known simulator differences (see `assert_contract`) get summarised.
}

#[tokio::test]
async fn bundle_change_updates_only_that_secret() {
    let t = CfBed::start().await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    let before = t.wait_published("edge").await.status.unwrap();
    let versions = t.sim().script(ACC, SCRIPT).unwrap().version_count;
    t.sim().reset_stats();
    t.set_policy_actions(ACTIONS2).await;
    let (_, bundle2) = t.expected().await;
    let api = t.bindings();
    let after = t
        .bed
        .eventually(20, "POLICY_BUNDLE hash changes", || {
            let api = api.clone();
            let old = before.secret_hashes["POLICY_BUNDLE"].clone();
            async move {
                let st = api.get("edge").await.ok()?.status?;
                (st.secret_hashes.get("POLICY_BUNDLE") != Some(&old)).then_some(st)
            }
        })
        .await;
    let stats = t.sim().stats();
    assert_eq!(stats.writes, 1, "{:?}", stats.by_endpoint);
    assert_eq!(stats.count("PATCH", S_BULK), 1);
    assert_eq!(stats.count("PUT", S_UPLOAD), 0, "no code re-upload");
    assert_eq!(
        t.sim()
            .secret_value_for_test(ACC, SCRIPT, "POLICY_BUNDLE")
            .as_deref(),
        Some(bundle2.as_str())
    );
    // The other secrets were not rewritten.
    assert_eq!(
        after.secret_hashes["ISSUERS"],
        before.secret_hashes["ISSUERS"]
    );
    assert_eq!(
        after.secret_hashes["SIGNING_KEY"],
        before.secret_hashes["SIGNING_KEY"]
    );
    let script = t.sim().script(ACC, SCRIPT).unwrap();
    assert_eq!(script.version_count, versions + 1, "one new version");
    assert_eq!(
        after.deployed_version_id.as_deref(),
        Some(script.latest_version_id.as_str())
    );
    t.assert_contract();
}

#[tokio::test]
async fn foreign_route_is_left_alone_and_reported() {
    let t = CfBed::start().await;
    let foreign = t
        .sim()
        .add_foreign_route(ZONE, "shop.example.com/*", Some("someone-else"))
        .unwrap();
    t.create_binding(
        "edge",
        &["api.example.com/*", "shop.example.com/*"],
        json!({}),
    )
    .await;
    let b = t
        .wait_cond("edge", "RouteConflict", "True", "RouteOwnedElsewhere")
        .await;
    let c = b
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .clone();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RouteConflict")
    );
    assert!(
        c.message.contains("shop.example.com/*") && c.message.contains("someone-else"),
        "{}",
        c.message
    );
    // Our other route is published; the foreign one is untouched.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let routes = t.sim().routes(ZONE);
    let f = routes
        .iter()
        .find(|r| r.id == foreign)
        .expect("foreign route kept");
    assert_eq!(f.script.as_deref(), Some("someone-else"));
    assert!(
        routes
            .iter()
            .any(|r| r.pattern == "api.example.com/*" && r.script.as_deref() == Some(SCRIPT))
    );
    assert_eq!(t.sim().stats().count("PUT", S_ROUTE), 0);
    assert_eq!(t.sim().stats().count("DELETE", S_ROUTE), 0);
    assert!(
        t.bed
            .events_for("edge")
            .iter()
            .any(|e| e["reason"] == "RouteConflict")
    );
    t.assert_contract();
}

#[tokio::test]
async fn rate_limit_and_server_errors_are_survived_within_budget() {
    // A tight limit: 8 requests per 4 s for the token.
    let sim = CfSimConfig {
        rate_limit: Some((8, Duration::from_secs(4))),
        ..CfSimConfig::realistic()
    };
    let t = CfBed::start_with(sim, TOKEN).await;
    t.sim()
        .faults()
        .fail_next_matching(Some(http::Method::GET), "/workers/routes", 2, 503);
    // And two 429 "script busy" answers (Retry-After: 1) on secret writes.
    t.sim().faults().script_busy_next(2);
    t.create_binding(
        "edge",
        &["api.example.com/*", "www.example.com/*"],
        json!({}),
    )
    .await;
    t.wait_published("edge").await;
    // The first publish sets the secrets within the upload; a policy change writes one
    // through `secrets-bulk`, which meets the two "script busy" answers.
    t.set_policy_actions(ACTIONS2).await;
    let (_, bundle2) = t.expected().await;
    let want = edgebind::cloudflare::worker::sha256_tagged(bundle2.as_bytes());
    let api = t.bindings();
    t.bed
        .eventually(20, "bundle published through the busy script", || {
            let api = api.clone();
            let want = want.clone();
            async move {
                let st = api.get("edge").await.ok()?.status?;
                (st.secret_hashes.get("POLICY_BUNDLE") == Some(&want)).then_some(())
            }
        })
        .await;
    let stats = t.sim().stats();
    // The client pauses when `Ratelimit` says the window is used up (so the token's limit
    // is not hit) and waits out Retry-After on the two injected 429s: no retry storm.
    eprintln!("rate-limited publish: {stats:?}");
    assert!((2..=3).contains(&stats.rate_limited), "{stats:?}");
    assert_eq!(stats.by_status.get(&429).copied(), Some(stats.rate_limited));
    assert_eq!(stats.by_status.get(&503).copied().unwrap_or(0), 2);
    assert_eq!(t.sim().routes(ZONE).len(), 2);
    t.assert_contract();
}

#[tokio::test]
async fn a_429_with_an_http_date_and_a_multi_member_ratelimit_is_waited_out() {
    let t = CfBed::start().await;
    // The first call answers 429 with `Retry-After` as an HTTP-date 2 s ahead and a
    // `Ratelimit` list whose first member is used up (t=2) and whose second is not (t=250).
    // Read per member, the wait is 2 s (within the 3 s the client waits in place); values
    // mixed across members would say 250 s and park the binding for minutes.
    t.sim().faults().rate_limited_next(1, 2);
    let started = std::time::Instant::now();
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    t.wait_published("edge").await;
    let stats = t.sim().stats();
    assert_eq!(stats.rate_limited, 1, "{stats:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the HTTP-date was waited out"
    );
    assert_eq!(t.sim().routes(ZONE).len(), 1);
    t.assert_contract();
}

#[tokio::test]
async fn script_not_visible_right_after_upload_is_retried_without_reupload() {
    let t = CfBed::start().await;
    t.sim().faults().script_missing_after_upload(3);
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    t.wait_cond("edge", "Ready", "True", "Published").await;
    let stats = t.sim().stats();
    assert_eq!(stats.count("PUT", S_UPLOAD), 1, "{:?}", stats.by_endpoint);
    // The route create after the upload meets the hidden script (400 / 10019) three times
    // and is retried; nothing is uploaded again.
    let refused = stats.by_status.get(&400).copied().unwrap_or(0);
    assert!(refused >= 3, "{stats:?}");
    assert_eq!(
        stats.count("POST", S_ROUTES),
        refused + 1,
        "{:?}",
        stats.by_endpoint
    );
    assert_eq!(t.sim().routes(ZONE).len(), 1);
    t.sim().faults().clear();
    t.assert_contract();
}

fn version_form(meta: Value, code: &str) -> (String, Vec<u8>) {
    let b = "testboundary";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"blob\"\r\nContent-Type: application/json\r\n\r\n{meta}\r\n--{b}\r\nContent-Disposition: form-data; name=\"worker.js\"; filename=\"worker.js\"\r\nContent-Type: application/javascript+module\r\n\r\n{code}\r\n--{b}--\r\n"
    );
    (
        format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    )
}

#[tokio::test]
async fn latest_version_not_deployed_is_resolved_by_version_then_deploy() {
    let t = CfBed::start().await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    t.wait_published("edge").await;
    // Someone uploads a version and does not deploy it: secret edits now fail with 10215.
    let pending_id = upload_pending_version(&t).await;
    t.sim().reset_stats();
    t.set_policy_actions(ACTIONS2).await;
    let (_, bundle2) = t.expected().await;
    let want = edgebind::cloudflare::worker::sha256_tagged(bundle2.as_bytes());
    let api = t.bindings();
    t.bed
        .eventually(20, "bundle published through a deployed version", || {
            let api = api.clone();
            let want = want.clone();
            async move {
                let st = api.get("edge").await.ok()?.status?;
                (st.secret_hashes.get("POLICY_BUNDLE") == Some(&want)).then_some(())
            }
        })
        .await;
    let stats = t.sim().stats();
    assert_eq!(
        stats.count("PATCH", S_BULK),
        1,
        "no retry loop on 10215: {:?}",
        stats.by_endpoint
    );
    assert_eq!(
        stats.count(
            "POST",
            "/accounts/{account_id}/workers/scripts/{script_name}/versions"
        ),
        1
    );
    assert_eq!(
        stats.count(
            "POST",
            "/accounts/{account_id}/workers/scripts/{script_name}/deployments"
        ),
        1
    );
    let script = t.sim().script(ACC, SCRIPT).unwrap();
    assert_ne!(script.latest_version_id, pending_id);
    assert_eq!(
        script.deployed,
        vec![(script.latest_version_id.clone(), 100.0)]
    );
    assert_eq!(
        t.sim()
            .secret_value_for_test(ACC, SCRIPT, "POLICY_BUNDLE")
            .as_deref(),
        Some(bundle2.as_str())
    );
    // The other secrets survived the version upload (keep_bindings).
    assert_eq!(
        t.sim().secret_names(ACC, SCRIPT),
        vec!["ISSUERS", "POLICY_BUNDLE", "SIGNING_KEY"]
    );
    assert!(
        t.bed
            .events_for("edge")
            .iter()
            .any(|e| e["reason"] == "VersionDeployed")
    );
    t.assert_contract();
}

#[tokio::test]
async fn key_rotation_on_demand_switches_the_secret_and_retires_the_old_key() {
    let t = CfBed::start().await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    let st = t.wait_published("edge").await.status.unwrap();
    let old = st.current_key_id.clone().unwrap();
    t.sim().reset_stats();
    t.bindings()
        .patch(
            "edge",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"edgebind.dev/rotate-key": "r1"}}})),
        )
        .await
        .unwrap();
    let api = t.bindings();
    let new = t
        .bed
        .eventually(20, "a new current key", || {
            let api = api.clone();
            let old = old.clone();
            async move {
                let st = api.get("edge").await.ok()?.status?;
                let cur = st.current_key_id.clone()?;
                (cur != old && st.secret_hashes.contains_key("SIGNING_KEY")).then_some(st)
            }
        })
        .await;
    let kid = new.current_key_id.clone().unwrap();
    assert_eq!(new.retiring_key_id.as_deref(), Some(old.as_str()));
    assert_eq!(new.rotation_request.as_deref(), Some("r1"));
    let sk: Value = serde_json::from_str(
        &t.sim()
            .secret_value_for_test(ACC, SCRIPT, "SIGNING_KEY")
            .unwrap(),
    )
    .unwrap();
    // Eventually the Worker holds the new key (status records the write after it happened).
    assert_eq!(sk["keyId"], kid.as_str());
    // During the overlap both public keys are trusted.
    let keys = t.gateway_keys().await;
    assert!(keys.contains_key(&format!("{kid}.pub")));
    assert!(
        keys.contains_key(&format!("{old}.pub")),
        "old key retired too early"
    );
    // After the overlap (2 s) the old key is gone.
    t.bed
        .eventually(20, "old public key retired", || async {
            (!t.gateway_keys().await.contains_key(&format!("{old}.pub"))).then_some(())
        })
        .await;
    assert!(t.gateway_keys().await.contains_key(&format!("{kid}.pub")));
    let stats = t.sim().stats();
    assert_eq!(
        stats.count("PUT", S_UPLOAD),
        0,
        "rotation must not re-upload code"
    );
    assert_eq!(stats.count("PATCH", S_BULK), 1, "{:?}", stats.by_endpoint);
    t.assert_contract();
}

#[tokio::test]
async fn deletion_removes_what_we_created_and_nothing_else() {
    let t = CfBed::start().await;
    let foreign = t
        .sim()
        .add_foreign_route(ZONE, "other.example.com/*", Some("someone-else"))
        .unwrap();
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    let st = t.wait_published("edge").await.status.unwrap();
    let kid = st.current_key_id.unwrap();
    t.bindings()
        .delete("edge", &DeleteParams::default())
        .await
        .unwrap();
    t.bed
        .eventually(20, "EdgeBinding gone", || async {
            t.bindings()
                .get_opt("edge")
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    assert!(t.sim().script(ACC, SCRIPT).is_none(), "script deleted");
    let routes = t.sim().routes(ZONE);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].id, foreign);
    assert!(!t.gateway_keys().await.contains_key(&format!("{kid}.pub")));
    t.assert_contract();
}

#[tokio::test]
async fn deletion_can_keep_the_script_but_removes_routes_and_secrets() {
    let t = CfBed::start().await;
    t.create_binding(
        "edge",
        &["api.example.com/*"],
        json!({"keepScriptOnDelete": true}),
    )
    .await;
    t.wait_published("edge").await;
    t.bindings()
        .delete("edge", &DeleteParams::default())
        .await
        .unwrap();
    t.bed
        .eventually(20, "EdgeBinding gone", || async {
            t.bindings()
                .get_opt("edge")
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    assert!(t.sim().script(ACC, SCRIPT).is_some(), "script kept");
    assert!(t.sim().secret_names(ACC, SCRIPT).is_empty());
    assert!(t.sim().routes(ZONE).is_empty());
    t.assert_contract();
}

async fn wait_account(t: &CfBed, status: &str, reason: &str) -> CloudflareAccount {
    let api = Api::<CloudflareAccount>::all(t.bed.client.clone());
    t.bed
        .eventually(
            20,
            &format!("CloudflareAccount Ready={status} ({reason})"),
            || {
                let api = api.clone();
                async move {
                    let a = api.get("cf").await.ok()?;
                    let ok =
                        a.status.as_ref()?.conditions.iter().any(|c| {
                            c.type_ == "Ready" && c.status == status && c.reason == reason
                        });
                    ok.then_some(a)
                }
            },
        )
        .await
}

#[tokio::test]
async fn invalid_token_is_reported_without_hammering() {
    let t = CfBed::start_with(CfSimConfig::realistic(), "not-a-known-token").await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    let a = wait_account(&t, "False", "InvalidToken").await;
    assert_eq!(a.status.unwrap().token_status.as_deref(), Some("invalid"));
    t.wait_cond("edge", "Ready", "False", "AccountNotReady")
        .await;
    t.sim().reset_stats();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = t.sim().stats();
    // Only the account's verify calls, backing off (cap 1 s in tests: at most ~2 per second).
    let verify = stats.count("GET", "/accounts/{account_id}/tokens/verify")
        + stats.count("GET", "/user/tokens/verify");
    assert_eq!(
        stats.total(),
        verify,
        "binding called Cloudflare with a bad token: {:?}",
        stats.by_endpoint
    );
    eprintln!("bad token, 5 s: {verify} verify calls");
    assert!(verify <= 14, "{verify} verify calls in 5 s");
    t.assert_contract();
}

#[tokio::test]
async fn expired_token_stops_publishing_and_is_reported() {
    let t = CfBed::start().await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    t.wait_published("edge").await;
    let a = wait_account(&t, "True", "Verified").await;
    assert_eq!(a.status.unwrap().token_kind.as_deref(), Some("user"));
    assert!(t.sim().expire_token(TOKEN));
    wait_account(&t, "False", "TokenExpired").await;
    t.wait_cond("edge", "Ready", "False", "AccountNotReady")
        .await;
    t.sim().reset_stats();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stats = t.sim().stats();
    assert_eq!(stats.writes, 0);
    let verify = stats.count("GET", "/accounts/{account_id}/tokens/verify")
        + stats.count("GET", "/user/tokens/verify");
    assert_eq!(stats.total(), verify, "{:?}", stats.by_endpoint);
    t.assert_contract();
}

#[tokio::test]
async fn plan_shows_cloudflare_writes_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"apiVersion: edgebind.dev/v1alpha1
kind: CloudflareAccount
metadata: {{name: cf}}
spec:
  accountId: {ACC}
  apiToken: {{namespace: {SYS}, name: cf-token, key: token}}
---
apiVersion: edgebind.dev/v1alpha1
kind: IdentityIssuer
metadata: {{name: okta}}
spec:
  issuer: https://idp.example.com
  audiences: [api://edgebind]
  algorithms: [RS256]
---
apiVersion: edgebind.dev/v1alpha1
kind: EdgeBinding
metadata: {{name: edge, namespace: {NS}}}
spec:
  accountRef: cf
  zoneId: {ZONE}
  routes: ["api.example.com/*"]
  scriptName: {SCRIPT}
  gatewayUrl: https://gw.example.com
"#
    );
    std::fs::write(dir.path().join("edge.yaml"), manifest).unwrap();
    let args = edgebind::cli::PlanArgs {
        files: vec![dir.path().to_path_buf()],
        linstor_url: None,
        linstor_ca: None,
        linstor_cert: None,
        linstor_key: None,
        linstor_token_file: None,
        output: edgebind::cli::PlanOutput::Text,
    };
    let report = edgebind::plan::plan(&args).await.expect("plan runs");
    let text = edgebind::plan::render_text(&report);
    let json = serde_json::to_string(&report).unwrap();
    for out in [&text, &json] {
        assert!(
            !out.contains("idp.example.com"),
            "a secret value leaked: {out}"
        );
        assert!(out.contains("<redacted sha256:"), "{out}");
    }
    assert!(
        text.contains("+ PUT /accounts/{account_id}/workers/scripts/{script_name}"),
        "{text}"
    );
    // The secrets ride in the upload (listed under it, redacted), not in a secrets-bulk call.
    assert!(!text.contains("secrets-bulk"), "{text}");
    assert!(text.contains("ISSUERS = <redacted sha256:"), "{text}");
    assert!(
        text.contains("create route api.example.com/* -> edgebind-gw"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 2 to create, 0 to change, 0 to delete."),
        "{text}"
    );
}

#[tokio::test]
async fn account_owned_token_verifies_at_the_account_path() {
    let owned = "account-owned-token-0123456789";
    let sim = CfSimConfig {
        accounts: vec![(
            ACC.to_string(),
            vec![edgebind_sim::cloudflare::SimToken {
                account_owned: true,
                ..edgebind_sim::cloudflare::SimToken::active(owned)
            }],
        )],
        ..CfSimConfig::realistic()
    };
    let t = CfBed::start_with(sim, owned).await;
    let a = wait_account(&t, "True", "Verified").await;
    let st = a.status.unwrap();
    assert_eq!(st.token_kind.as_deref(), Some("account"));
    assert_eq!(st.token_status.as_deref(), Some("active"));
    assert_eq!(t.sim().stats().count("GET", "/user/tokens/verify"), 0);
    t.assert_contract();
}

const GATEWAY_SERVICE: &str = "http://edgebind-gateway.edgebind-system.svc:8080";

impl CfBed {
    fn accounts(&self) -> Api<CloudflareAccount> {
        Api::all(self.bed.client.clone())
    }

    async fn account_cond(&self, type_: &str, status: &str, reason: &str) -> CloudflareAccount {
        let api = self.accounts();
        self.bed
            .eventually(
                30,
                &format!("CloudflareAccount cf {type_}={status} ({reason})"),
                || {
                    let api = api.clone();
                    async move {
                        let a = api.get_opt("cf").await.ok().flatten()?;
                        let ok =
                            a.status.as_ref()?.conditions.iter().any(|c| {
                                c.type_ == type_ && c.status == status && c.reason == reason
                            });
                        ok.then_some(a)
                    }
                },
            )
            .await
    }

    async fn tunnel_token(&self) -> Option<String> {
        let s = Api::<Secret>::namespaced(self.bed.client.clone(), SYS)
            .get_opt("edgebind-tunnel-cf")
            .await
            .expect("read the tunnel Secret")?;
        let v = s.data?.remove("token")?;
        Some(String::from_utf8(v.0).expect("utf-8"))
    }

    async fn create_tunnel_binding(&self, name: &str, host: &str, route: &str) {
        create(
            &self.bindings(),
            json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
                   "metadata": {"name": name, "namespace": NS},
                   "spec": {"accountRef": "cf", "zoneId": ZONE, "routes": [route],
                            "scriptName": format!("{SCRIPT}-{name}"), "tunnelHostname": host}}),
        )
        .await;
    }
}

/// A bed for the tunnel tests: the realistic Cloudflare simulator without its rate limit,
/// recording exchanges for the contract check, a controller that knows the gateway Service,
/// and the account `cf` verified.
async fn tunnel_bed() -> CfBed {
    let mut cfg = CfSimConfig::realistic();
    cfg.rate_limit = None;
    let cf = CloudflareSim::start(cfg).await.expect("simulator");
    cf.sim.record_exchanges(true);
    let mut ccfg = cf_config();
    ccfg.cloudflare.gateway_service = Some(GATEWAY_SERVICE.into());
    let bed = Bed::start_with(SimConfig::realistic(), ccfg).await;
    seed_account(&bed.client, &cf.url(), TOKEN, ACTIONS).await;
    CfBed { bed, cf }
}

/// The whole tunnel path on the simulators: the account's tunnel is created with its token
/// stored for cloudflared, the binding's hostname gets a proxied CNAME and an ingress rule, the
/// Worker forwards to `https://<hostname>`, and a request for that hostname reaches the gateway
/// Service once cloudflared (played by the simulator, with the stored token) connects. A name
/// held by someone else's record is a conflict left alone; deletion removes only what edgebind
/// made, and a tunnel is not deleted under a connected cloudflared.
#[tokio::test]
async fn a_binding_reaches_the_gateway_through_the_accounts_tunnel() {
    let t = tunnel_bed().await;
    t.accounts()
        .patch(
            "cf",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tunnel": {}}})),
        )
        .await
        .expect("ask for a tunnel");
    t.create_tunnel_binding("edge", "gw.example.com", "api.example.com/*")
        .await;

    // The tunnel: edgebind's name, remotely configured, no connector yet.
    let a = t
        .account_cond("TunnelReady", "False", "TunnelDisconnected")
        .await;
    let ts = a.status.unwrap().tunnel.expect("status.tunnel");
    let tunnels = t.sim().tunnels(ACC);
    assert_eq!(tunnels.len(), 1, "{tunnels:?}");
    assert_eq!(tunnels[0].id, ts.id);
    assert!(ts.name.starts_with("edgebind-"), "{}", ts.name);

    // The binding: published, its Worker forwarding to the tunnel hostname.
    t.wait_published("edge").await;
    let script = t
        .sim()
        .script(ACC, &format!("{SCRIPT}-edge"))
        .expect("Worker");
    assert!(
        script
            .bindings
            .iter()
            .any(|b| b["name"] == "GATEWAY_URL" && b["text"] == "https://gw.example.com"),
        "{:?}",
        script.bindings
    );
    let dns = t.sim().dns_records(ZONE);
    assert_eq!(dns.len(), 1, "{dns:?}");
    assert_eq!(dns[0].kind, "CNAME");
    assert_eq!(dns[0].name, "gw.example.com");
    assert_eq!(dns[0].content, format!("{}.cfargotunnel.com", ts.id));
    assert!(dns[0].proxied);

    // The ingress (the account reconciles again when the binding appears).
    let want = json!({"ingress": [{"hostname": "gw.example.com", "service": GATEWAY_SERVICE},
                                   {"service": "http_status:404"}]});
    t.bed
        .eventually(30, "the tunnel's ingress routes gw.example.com", || {
            let sim = t.sim().clone();
            let want = want.clone();
            async move { (sim.tunnels(ACC)[0].config == want).then_some(()) }
        })
        .await;
    // No connector: the edge cannot reach the gateway yet.
    assert!(
        t.sim()
            .resolve_tunnel_origin("gw.example.com", "/v1/volumes")
            .is_err()
    );

    // cloudflared starts with the token edgebind stored: the hostname reaches the gateway.
    let token = t.tunnel_token().await.expect("tunnel token Secret");
    let connector = t
        .sim()
        .connect_tunnel(&token)
        .expect("the stored token is accepted");
    assert_eq!(
        t.sim()
            .resolve_tunnel_origin("GW.example.com", "/v1/volumes")
            .as_deref(),
        Ok(GATEWAY_SERVICE)
    );
    assert_eq!(
        t.sim().resolve_tunnel_origin("other.example.com", "/"),
        Err("no CNAME for other.example.com (error 1016: origin DNS error)".to_string())
    );
    let a = t
        .account_cond("TunnelReady", "True", "TunnelConnected")
        .await;
    assert_eq!(a.status.unwrap().tunnel.unwrap().connectors, 1);

    // Status that lost the record id (a stale read, a restore from backup): the record is still
    // recognised as the binding's own by the uid in its comment, not reported as a conflict.
    let dns_before = t.sim().dns_records(ZONE);
    t.bindings()
        .patch_status(
            "edge",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"dnsRecordId": null}})),
        )
        .await
        .expect("status without the record id");
    t.bed
        .eventually(30, "the CNAME is adopted again by its mark", || {
            let api = t.bindings();
            async move {
                let b = api.get("edge").await.ok()?;
                b.status?.dns_record_id.is_some().then_some(())
            }
        })
        .await;
    assert_eq!(t.sim().dns_records(ZONE), dns_before, "the same one record");
    t.wait_cond("edge", "Ready", "True", "Published").await;

    // A hostname already held by someone else's record: a conflict, their record untouched.
    t.sim()
        .add_foreign_dns_record(ZONE, "A", "taken.example.com", "192.0.2.1");
    t.create_tunnel_binding("other", "taken.example.com", "other.example.com/*")
        .await;
    t.wait_cond("other", "Ready", "False", "DnsConflict").await;
    let taken: Vec<_> = t
        .sim()
        .dns_records(ZONE)
        .into_iter()
        .filter(|r| r.name == "taken.example.com")
        .collect();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].content, "192.0.2.1");

    // Deleting the binding removes its CNAME (only that one).
    t.bindings()
        .delete("edge", &DeleteParams::default())
        .await
        .expect("delete");
    t.bed
        .eventually(30, "the CNAME of the deleted binding is gone", || {
            let sim = t.sim().clone();
            async move {
                (!sim
                    .dns_records(ZONE)
                    .iter()
                    .any(|r| r.name == "gw.example.com"))
                .then_some(())
            }
        })
        .await;
    assert!(
        t.sim()
            .dns_records(ZONE)
            .iter()
            .any(|r| r.name == "taken.example.com")
    );

    // Removing spec.tunnel: refused by Cloudflare while cloudflared is connected, then done.
    t.bindings()
        .delete("other", &DeleteParams::default())
        .await
        .expect("delete");
    t.accounts()
        .patch(
            "cf",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tunnel": null}})),
        )
        .await
        .expect("drop the tunnel");
    t.account_cond("TunnelReady", "False", "TunnelDeleting")
        .await;
    assert!(!t.sim().tunnels(ACC)[0].deleted);
    t.sim().disconnect_tunnel(&connector);
    let api = t.accounts();
    t.bed
        .eventually(30, "the tunnel is deleted and no longer reported", || {
            let api = api.clone();
            async move {
                let st = api.get_opt("cf").await.ok().flatten()?.status?;
                (st.tunnel.is_none_or(|t| t.id.is_empty())
                    && !st.conditions.iter().any(|c| c.type_ == "TunnelReady"))
                .then_some(())
            }
        })
        .await;
    assert!(t.sim().tunnels(ACC)[0].deleted);
    assert_eq!(
        t.tunnel_token().await,
        None,
        "the token Secret is deleted with the tunnel"
    );
    t.assert_contract();
}

/// The Workers VPC path on the simulators: an account with `tunnel.workersVpc` registers the
/// gateway Service as a VPC service through its tunnel (a refusal, here an account without
/// Workers VPC, is the `WorkersVpcReady` condition, not a crash); a `workersVpc` binding waits
/// for it, then its Worker gets the `vpc_service` binding `GATEWAY` and fetches the gateway
/// Service URL through it, which reaches the gateway once cloudflared connects. Drift is put
/// back, someone else's service is never touched, and removing the tunnel deletes the service.
#[tokio::test]
async fn a_binding_reaches_the_gateway_through_a_workers_vpc_service() {
    let t = tunnel_bed().await;
    let foreign = t.sim().add_foreign_vpc_service(
        ACC,
        json!({"type": "http", "name": "theirs",
               "host": {"ipv4": "10.0.0.9", "network": {"tunnel_id": uuid::Uuid::new_v4().to_string()}}}),
    );
    t.sim().set_workers_vpc(ACC, false);
    t.accounts()
        .patch(
            "cf",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tunnel": {"workersVpc": true}}})),
        )
        .await
        .expect("ask for a tunnel with Workers VPC");
    create(
        &t.bindings(),
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
               "metadata": {"name": "edge", "namespace": NS},
               "spec": {"accountRef": "cf", "zoneId": ZONE, "routes": ["api.example.com/*"],
                        "scriptName": format!("{SCRIPT}-vpc"), "workersVpc": true}}),
    )
    .await;

    // Not entitled: a condition on the account; the tunnel itself is fine; the binding waits.
    let a = t
        .account_cond("WorkersVpcReady", "False", "Unauthorized")
        .await;
    let msg = a
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "WorkersVpcReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(msg.contains("Workers VPC"), "{msg}");
    t.account_cond("TunnelReady", "False", "TunnelDisconnected")
        .await;
    t.wait_cond("edge", "Ready", "False", "VpcServiceNotReady")
        .await;
    assert!(t.sim().script(ACC, &format!("{SCRIPT}-vpc")).is_none());

    // Entitled: the gateway Service is registered through the tunnel; the binding publishes.
    t.sim().set_workers_vpc(ACC, true);
    let a = t
        .account_cond("WorkersVpcReady", "True", "VpcServiceRegistered")
        .await;
    let ts = a.status.unwrap().tunnel.expect("status.tunnel");
    let sid = ts
        .vpc_service_id
        .clone()
        .expect("status.tunnel.vpcServiceId");
    assert_eq!(ts.vpc_service_url.as_deref(), Some(GATEWAY_SERVICE));
    let services = t.sim().vpc_services(ACC);
    assert_eq!(services.len(), 2, "{services:?}");
    let ours = services.iter().find(|s| s.id == sid).expect("ours");
    assert_eq!(ours.tunnel_id.as_deref(), Some(ts.id.as_str()));
    assert_eq!(ours.json["name"], ts.name.as_str());
    assert_eq!(ours.json["type"], "http");
    assert_eq!(ours.json["http_port"], 8080);
    assert_eq!(
        ours.json["host"],
        json!({"hostname": "edgebind-gateway.edgebind-system.svc",
               "resolver_network": {"tunnel_id": ts.id}})
    );

    t.wait_published("edge").await;
    let script = t
        .sim()
        .script(ACC, &format!("{SCRIPT}-vpc"))
        .expect("Worker");
    assert!(
        script
            .bindings
            .iter()
            .any(|b| b == &json!({"type": "vpc_service", "name": "GATEWAY", "service_id": sid})),
        "{:?}",
        script.bindings
    );
    assert!(
        script
            .bindings
            .iter()
            .any(|b| b["name"] == "GATEWAY_URL" && b["text"] == GATEWAY_SERVICE),
        "{:?}",
        script.bindings
    );
    assert!(t.sim().dns_records(ZONE).is_empty(), "no public hostname");

    // No connector yet: the binding leads nowhere; cloudflared connects: the gateway.
    let via = |sim: &CloudflareSim| {
        sim.resolve_vpc_origin(ACC, &format!("{SCRIPT}-vpc"), "GATEWAY", "http")
    };
    assert!(via(t.sim()).is_err());
    let token = t.tunnel_token().await.expect("tunnel token Secret");
    let connector = t.sim().connect_tunnel(&token).expect("token accepted");
    assert_eq!(via(t.sim()).as_deref(), Ok(GATEWAY_SERVICE));

    // Drift: someone moves our service to another port; edgebind puts it back (same id).
    let url = format!(
        "{}/accounts/{ACC}/connectivity/directory/services/{sid}",
        t.cf.url()
    );
    let mut edited = ours.json.clone();
    edited["http_port"] = json!(9999);
    let r = reqwest::Client::new()
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&edited)
        .send()
        .await
        .expect("edit");
    assert_eq!(r.status(), 200);
    t.bed
        .eventually(30, "the VPC service is put back", || {
            let sim = t.sim().clone();
            let sid = sid.clone();
            async move {
                sim.vpc_services(ACC)
                    .iter()
                    .any(|s| s.id == sid && s.json["http_port"] == 8080)
                    .then_some(())
            }
        })
        .await;

    // Deleted by someone: registered again (a new id), and the Worker is re-bound to it.
    let r = reqwest::Client::new()
        .delete(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    let script_name = format!("{SCRIPT}-vpc");
    let new_sid = t
        .bed
        .eventually(30, "a new VPC service is bound to the Worker", || {
            let sim = t.sim().clone();
            let (sid, script_name, foreign) = (sid.clone(), script_name.clone(), foreign.clone());
            async move {
                let ours: Vec<_> = sim
                    .vpc_services(ACC)
                    .into_iter()
                    .filter(|s| s.id != foreign)
                    .collect();
                let [svc] = ours.as_slice() else { return None };
                let bound = sim
                    .script(ACC, &script_name)?
                    .bindings
                    .iter()
                    .any(|b| b["type"] == "vpc_service" && b["service_id"] == svc.id.as_str());
                (svc.id != sid && bound).then(|| svc.id.clone())
            }
        })
        .await;
    let st = t.accounts().get("cf").await.expect("account").status;
    assert_eq!(
        st.and_then(|s| s.tunnel).and_then(|t| t.vpc_service_id),
        Some(new_sid)
    );
    assert_eq!(via(t.sim()).as_deref(), Ok(GATEWAY_SERVICE));

    // Removing the tunnel: the binding first, then cloudflared stops; our service goes with
    // the tunnel, theirs stays.
    t.bindings()
        .delete("edge", &DeleteParams::default())
        .await
        .expect("delete");
    t.sim().disconnect_tunnel(&connector);
    t.accounts()
        .patch(
            "cf",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tunnel": null}})),
        )
        .await
        .expect("drop the tunnel");
    let api = t.accounts();
    t.bed
        .eventually(30, "the tunnel and its VPC service are deleted", || {
            let api = api.clone();
            async move {
                let st = api.get_opt("cf").await.ok().flatten()?.status?;
                st.tunnel.is_none_or(|t| t.id.is_empty()).then_some(())
            }
        })
        .await;
    let left = t.sim().vpc_services(ACC);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].id, foreign);
    assert!(t.sim().tunnels(ACC)[0].deleted);
    t.assert_contract();
}

/// Issue 13: a binding whose volume defaults name a LinstorBackend that does not exist is not
/// published (Ready=False, `BackendNotFound`, naming it); creating that backend publishes it at
/// once (bindings watch backends), and its key tells the gateways which binding it signs for.
#[tokio::test]
async fn a_binding_naming_a_missing_backend_is_published_once_it_exists() {
    use edgebind::crd::LinstorBackend;
    let t = CfBed::start().await;
    t.create_binding(
        "edge",
        &["api.example.com/*"],
        json!({"volumeDefaults": {"backendRef": "later", "placeCount": 3}}),
    )
    .await;
    let b = t
        .wait_cond("edge", "Ready", "False", "BackendNotFound")
        .await;
    let ready = b.status.expect("status").conditions;
    let msg = &ready
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready")
        .message;
    assert!(msg.contains("\"later\""), "{msg}");
    assert!(
        t.sim().script(ACC, SCRIPT).is_none(),
        "nothing was published"
    );

    create(
        &Api::<LinstorBackend>::all(t.bed.client.clone()),
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "LinstorBackend",
               "metadata": {"name": "later"}, "spec": {"urls": [t.bed.linstor.url()]}}),
    )
    .await;
    let b = t.wait_published("edge").await;
    let key = b.status.and_then(|s| s.current_key_id).expect("a key");
    let keys = t.gateway_keys().await;
    assert_eq!(
        keys.get(&format!("{key}.binding")).map(String::as_str),
        Some("edge")
    );
    assert_eq!(
        keys.get(&format!("{key}.namespace")).map(String::as_str),
        Some(NS)
    );
}

/// Upgrade: a key published before keys named their binding (no `<keyid>.binding`) gets the
/// entry when the controller starts, without a rotation, so the gateways apply the binding's
/// volume defaults at once rather than the `--backend-ref` fallback.
#[tokio::test]
async fn a_restarted_controller_records_the_binding_of_older_keys() {
    let mut t = CfBed::start().await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    let b = t.wait_published("edge").await;
    let key = b.status.and_then(|s| s.current_key_id).expect("a key");
    let entry = format!("{key}.binding");
    assert_eq!(
        t.gateway_keys().await.get(&entry).map(String::as_str),
        Some("edge")
    );

    // What an older controller left behind: the key without its binding entry.
    t.bed.crash_controller().await;
    Api::<Secret>::namespaced(t.bed.client.clone(), SYS)
        .patch(
            "edgebind-gateway-keys",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {entry.clone(): null}})),
        )
        .await
        .expect("entry removed");
    assert!(!t.gateway_keys().await.contains_key(&entry));

    t.bed.start_controller();
    let keys = t
        .bed
        .eventually(10, "the binding entry is recorded again", || async {
            let keys = t.gateway_keys().await;
            keys.contains_key(&entry).then_some(keys)
        })
        .await;
    assert_eq!(keys.get(&entry).map(String::as_str), Some("edge"));
    assert!(
        keys.contains_key(&format!("{key}.pub")),
        "the same key, not a rotation"
    );
}

/// A version uploaded through the API and not deployed (someone's pending change). Returns
/// its id.
async fn upload_pending_version(t: &CfBed) -> String {
    let (ct, body) = version_form(
        json!({"main_module": "worker.js", "compatibility_date": "2025-09-01", "keep_bindings": ["secret_text", "plain_text"]}),
        "export default { fetch() { return new Response('pending'); } };",
    );
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/accounts/{ACC}/workers/scripts/{SCRIPT}/versions",
            t.cf.url()
        ))
        .bearer_auth(TOKEN)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["result"]["id"].as_str().unwrap().to_string()
}

/// Deploys `versions` (id, percentage) as someone would with `wrangler versions deploy`.
async fn deploy_split(t: &CfBed, versions: &[(&str, f64)]) {
    let body = json!({"strategy": "percentage",
        "versions": versions.iter().map(|(id, p)| json!({"version_id": id, "percentage": p})).collect::<Vec<_>>()});
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/accounts/{ACC}/workers/scripts/{SCRIPT}/deployments",
            t.cf.url()
        ))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// A second zone of the account, which the scoped token of the next test may not touch.
const ZONE_B: &str = "b1e105f4ecef8ad9ca31a8372d0c3530";

#[tokio::test]
async fn a_zone_the_token_may_not_touch_fails_that_binding_only() {
    // The token is valid (verify: active) but scoped to example.com: calls on example.org's
    // zone answer 403 / 10000, as Cloudflare does for a token without that zone.
    let scoped = "scoped-token-0123456789abcdef";
    let mut token = edgebind_sim::cloudflare::SimToken::active(scoped);
    token.zones = Some(vec![ZONE.to_string()]);
    let mut sim = CfSimConfig::realistic();
    sim.accounts = vec![(ACC.to_string(), vec![token])];
    sim.zones
        .push((ZONE_B.into(), "example.org".into(), ACC.into()));
    let t = CfBed::start_with(sim, scoped).await;
    t.create_binding(
        "other-zone",
        &["api.example.org/*"],
        json!({"zoneId": ZONE_B, "scriptName": "edgebind-gw-b"}),
    )
    .await;
    let b = t
        .wait_cond("other-zone", "Ready", "False", "PermissionDenied")
        .await;
    let msg = &b
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(msg.contains(ZONE_B) && msg.contains("10000"), "{msg}");
    // The account stays verified and its other bindings publish.
    wait_account(&t, "True", "Verified").await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    t.wait_published("edge").await;
    assert_eq!(t.sim().routes(ZONE).len(), 1);
    assert!(t.sim().routes(ZONE_B).is_empty());
    wait_account(&t, "True", "Verified").await;
    t.wait_cond("other-zone", "Ready", "False", "PermissionDenied")
        .await;
    t.assert_contract();
}

#[tokio::test]
async fn deletion_keeping_the_script_is_not_blocked_by_an_undeployed_version() {
    let t = CfBed::start().await;
    t.create_binding(
        "edge",
        &["api.example.com/*"],
        json!({"keepScriptOnDelete": true}),
    )
    .await;
    t.wait_published("edge").await;
    // Someone uploads a version and does not deploy it: secret deletes now answer 10215.
    upload_pending_version(&t).await;
    t.bindings()
        .delete("edge", &DeleteParams::default())
        .await
        .unwrap();
    t.bed
        .eventually(20, "EdgeBinding gone despite 10215", || async {
            t.bindings()
                .get_opt("edge")
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
    assert!(t.sim().script(ACC, SCRIPT).is_some(), "script kept");
    assert!(t.sim().routes(ZONE).is_empty(), "routes removed");
    // The secrets could not be removed, and the event says so.
    assert_eq!(
        t.sim().secret_names(ACC, SCRIPT),
        vec!["ISSUERS", "POLICY_BUNDLE", "SIGNING_KEY"]
    );
    assert!(
        t.bed
            .events_for("edge")
            .iter()
            .any(|e| e["reason"] == "SecretsLeft"),
        "{:?}",
        t.bed.events_for("edge")
    );
    // The gateways no longer trust its key.
    let keys = t.gateway_keys().await;
    assert!(!keys.keys().any(|k| k.ends_with(".pub")), "{keys:?}");
    t.assert_contract();
}

#[tokio::test]
async fn a_gradual_deployment_is_kept_when_a_secret_edit_meets_10215() {
    let t = CfBed::start().await;
    t.create_binding("edge", &["api.example.com/*"], json!({}))
        .await;
    t.wait_published("edge").await;
    let ours = t.sim().script(ACC, SCRIPT).unwrap().latest_version_id;
    // Someone rolls out a version gradually: 90 % ours, 10 % theirs.
    let theirs = upload_pending_version(&t).await;
    deploy_split(&t, &[(&ours, 90.0), (&theirs, 10.0)]).await;
    let split = t.sim().script(ACC, SCRIPT).unwrap().deployed;
    t.sim().reset_stats();
    // A policy change wants POLICY_BUNDLE rewritten: 10215, and edgebind waits.
    t.set_policy_actions(ACTIONS2).await;
    let b = t
        .wait_cond("edge", "Ready", "False", "GradualDeployment")
        .await;
    let msg = b
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(
        msg.contains(&theirs) && msg.contains("POLICY_BUNDLE"),
        "{msg}"
    );
    let stats = t.sim().stats();
    let script = t.sim().script(ACC, SCRIPT).unwrap();
    assert_eq!(script.deployed, split, "the split is kept");
    for (method, path) in [
        (
            "POST",
            "/accounts/{account_id}/workers/scripts/{script_name}/versions",
        ),
        (
            "POST",
            "/accounts/{account_id}/workers/scripts/{script_name}/deployments",
        ),
        ("PUT", S_UPLOAD),
    ] {
        assert_eq!(stats.count(method, path), 0, "{:?}", stats.by_endpoint);
    }
    // The rollout completes (theirs at 100 %): edgebind writes the bundle then.
    deploy_split(&t, &[(&theirs, 100.0)]).await;
    let (_, bundle2) = t.expected().await;
    let want = edgebind::cloudflare::worker::sha256_tagged(bundle2.as_bytes());
    let api = t.bindings();
    t.bed
        .eventually(20, "bundle published after the rollout", || {
            let api = api.clone();
            let want = want.clone();
            async move {
                let st = api.get("edge").await.ok()?.status?;
                (st.secret_hashes.get("POLICY_BUNDLE") == Some(&want)).then_some(())
            }
        })
        .await;
    assert_eq!(
        t.sim()
            .secret_value_for_test(ACC, SCRIPT, "POLICY_BUNDLE")
            .as_deref(),
        Some(bundle2.as_str())
    );
    t.wait_cond("edge", "Ready", "True", "Published").await;
    t.assert_contract();
}

/// Deleting a CloudflareAccount: it waits for the bindings that publish through it (they clean
/// up through its client), then deletes the tunnel it created (once cloudflared has stopped)
/// and its token Secret, and only then goes.
#[tokio::test]
async fn deleting_an_account_waits_for_its_bindings_then_deletes_its_tunnel() {
    let t = tunnel_bed().await;
    t.accounts()
        .patch(
            "cf",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tunnel": {}}})),
        )
        .await
        .expect("ask for a tunnel");
    t.create_tunnel_binding("edge", "gw.example.com", "api.example.com/*")
        .await;
    t.wait_published("edge").await;
    let token = t.tunnel_token().await.expect("tunnel token Secret");
    let connector = t
        .sim()
        .connect_tunnel(&token)
        .expect("cloudflared connects");

    // Deleting the account while a binding uses it: nothing is removed yet, the reason is said.
    t.accounts()
        .delete("cf", &DeleteParams::default())
        .await
        .expect("delete the account");
    let a = t.account_cond("Ready", "False", "InUse").await;
    let msg = a
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(msg.contains(&format!("{NS}/edge")), "{msg}");
    assert!(!t.sim().tunnels(ACC)[0].deleted);
    assert!(t.sim().script(ACC, &format!("{SCRIPT}-edge")).is_some());

    // The binding goes first, cleaning up through the account's client.
    t.bindings()
        .delete("edge", &DeleteParams::default())
        .await
        .expect("delete the binding");
    t.bed
        .eventually(30, "the binding is gone with its Worker and CNAME", || {
            let (api, sim) = (t.bindings(), t.sim().clone());
            async move {
                (api.get_opt("edge").await.ok()?.is_none()
                    && sim.script(ACC, &format!("{SCRIPT}-edge")).is_none()
                    && sim.dns_records(ZONE).is_empty())
                .then_some(())
            }
        })
        .await;
    // Then the tunnel: refused while cloudflared is connected, deleted once it stopped.
    t.account_cond("TunnelReady", "False", "TunnelDeleting")
        .await;
    assert!(!t.sim().tunnels(ACC)[0].deleted);
    t.sim().disconnect_tunnel(&connector);
    t.bed
        .eventually(30, "the account is gone", || {
            let api = t.accounts();
            async move { api.get_opt("cf").await.ok()?.is_none().then_some(()) }
        })
        .await;
    assert!(t.sim().tunnels(ACC)[0].deleted, "the tunnel is deleted");
    assert_eq!(t.tunnel_token().await, None, "and its token Secret");
    t.assert_contract();
}
