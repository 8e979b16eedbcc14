//! Behaviour of the Cloudflare API simulator: envelope shapes, auth and scoping, keep_bindings,
//! versions/deployments and the 10215 secret refusal, routes, rate limit, faults, statistics.

use base64::Engine;
use std::time::Duration;

use edgebind_sim::cloudflare::{
    CfSimConfig, CloudflareSim, REALISTIC_ACCOUNT_ID as ACC, REALISTIC_TOKEN as TOKEN,
    REALISTIC_ZONE_ID as ZONE, RunningCfSim, SimToken,
};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const WORKER: &str =
    "export default { async fetch(req, env) { return new Response(env.GREETING); } };";

struct Api {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn code(&self) -> i64 {
        self.body["errors"][0]["code"].as_i64().unwrap_or(-1)
    }
    fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, 200, "unexpected answer: {}", self.text);
        assert_eq!(self.body["success"], json!(true));
        assert_eq!(self.body["errors"], json!([]));
        assert_eq!(self.body["messages"], json!([]));
        &self.body["result"]
    }
    fn assert_err(&self, status: u16, code: i64) {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        assert_eq!(self.body["success"], json!(false), "{}", self.text);
        assert_eq!(self.body["result"], Value::Null);
        assert_eq!(self.code(), code, "{}", self.text);
        assert!(self.body["errors"][0]["message"].is_string());
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client builds")
}

impl Api {
    fn new(sim: &RunningCfSim, token: Option<&str>) -> Self {
        Self {
            client: client(),
            base: sim.url(),
            token: token.map(str::to_string),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", ct).body(bytes);
        }
        let resp = req.send().await.expect("simulator answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body reads");
        Answer {
            status,
            headers,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }
    async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, None).await
    }
    async fn json(&self, method: reqwest::Method, path: &str, body: Value) -> Answer {
        self.send(
            method,
            path,
            Some(("application/json".into(), body.to_string().into_bytes())),
        )
        .await
    }
    async fn upload(
        &self,
        method: reqwest::Method,
        path: &str,
        metadata: Value,
        modules: &[(&str, &str)],
    ) -> Answer {
        let (ct, body) = multipart(&metadata, modules);
        self.send(method, path, Some((ct, body))).await
    }
    async fn put_script(&self, name: &str, metadata: Value) -> Answer {
        self.upload(
            reqwest::Method::PUT,
            &format!("/accounts/{ACC}/workers/scripts/{name}"),
            metadata,
            &[("worker.js", WORKER)],
        )
        .await
    }
}

/// Builds a multipart body the way the official SDKs do (modules as "files" parts).
fn multipart(metadata: &Value, modules: &[(&str, &str)]) -> (String, Vec<u8>) {
    let b = "cfsimtestboundary";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{metadata}\r\n"
    );
    for (name, content) in modules {
        body.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/javascript+module\r\n\r\n{content}\r\n"
        ));
    }
    body.push_str(&format!("--{b}--\r\n"));
    (
        format!("multipart/form-data; boundary={b}"),
        body.into_bytes(),
    )
}

fn meta(bindings: Value, keep: &[&str]) -> Value {
    json!({"main_module": "worker.js", "compatibility_date": "2025-01-01",
           "bindings": bindings, "keep_bindings": keep})
}

async fn start() -> (RunningCfSim, Api) {
    let sim = CloudflareSim::start(CfSimConfig::realistic())
        .await
        .expect("simulator starts");
    let api = Api::new(&sim, Some(TOKEN));
    (sim, api)
}

#[tokio::test]
async fn token_verify_and_auth_errors() {
    let (sim, api) = start().await;
    let r = api.get("/user/tokens/verify").await;
    let result = r.assert_ok();
    assert_eq!(result["status"], "active");
    assert_eq!(result["id"].as_str().map(str::len), Some(32));

    Api::new(&sim, None)
        .get("/user/tokens/verify")
        .await
        .assert_err(400, 9106);
    let bad = Api::new(&sim, Some("bad token!"));
    let r = bad.get(&format!("/accounts/{ACC}/workers/scripts")).await;
    r.assert_err(400, 6003);
    assert_eq!(r.body["errors"][0]["error_chain"][0]["code"], 6111);
    let unknown = Api::new(&sim, Some("no-such-token"));
    unknown
        .get("/user/tokens/verify")
        .await
        .assert_err(401, 1000);
    unknown
        .get(&format!("/accounts/{ACC}/workers/scripts"))
        .await
        .assert_err(403, 10000);

    // Account-owned tokens verify only on their account's path.
    let mut owned = SimToken::active("account-owned-token");
    owned.account_owned = true;
    sim.sim.add_token(ACC, owned);
    let owned = Api::new(&sim, Some("account-owned-token"));
    owned
        .get(&format!("/accounts/{ACC}/tokens/verify"))
        .await
        .assert_ok();
    owned.get("/user/tokens/verify").await.assert_err(401, 1000);
    api.get(&format!("/accounts/{ACC}/tokens/verify"))
        .await
        .assert_err(401, 1000);

    // An expired token still verifies (reporting it), but cannot call anything else.
    assert!(sim.sim.expire_token(TOKEN));
    let r = api.get("/user/tokens/verify").await;
    assert_eq!(r.assert_ok()["status"], "expired");
    assert!(r.assert_ok()["expires_on"].is_string());
    api.get(&format!("/accounts/{ACC}/workers/scripts"))
        .await
        .assert_err(401, 9109);
    assert!(sim.sim.disable_token("account-owned-token"));
    let r = owned.get(&format!("/accounts/{ACC}/tokens/verify")).await;
    assert_eq!(r.assert_ok()["status"], "disabled");
}

#[tokio::test]
async fn token_scope_and_identifiers() {
    let (sim, api) = start().await;
    let mut zone_less = SimToken::active("other-zone-token");
    zone_less.zones = Some(vec!["ffffffffffffffffffffffffffffffff".into()]);
    sim.sim.add_token(ACC, zone_less);
    let mut ro = SimToken::active("read-only-token");
    ro.read_only = true;
    sim.sim.add_token(ACC, ro);

    Api::new(&sim, Some("other-zone-token"))
        .get(&format!("/zones/{ZONE}/workers/routes"))
        .await
        .assert_err(403, 10000);
    let ro = Api::new(&sim, Some("read-only-token"));
    ro.get(&format!("/accounts/{ACC}/workers/scripts"))
        .await
        .assert_ok();
    ro.put_script("gw", meta(json!([]), &[]))
        .await
        .assert_err(403, 10000);
    api.get("/accounts/0123456789abcdef0123456789abcdef/workers/scripts")
        .await
        .assert_err(403, 10000);
    api.get("/accounts/not-an-id!/workers/scripts")
        .await
        .assert_err(400, 7003);
    api.get("/no/such/path").await.assert_err(400, 7003);
}

#[tokio::test]
async fn upload_list_download_delete() {
    let (sim, api) = start().await;
    let r = api
        .put_script(
            "gw",
            meta(
                json!([{"type": "plain_text", "name": "GREETING", "text": "hi"}]),
                &[],
            ),
        )
        .await;
    let res = r.assert_ok().clone();
    assert_eq!(res["id"], "gw");
    assert_eq!(res["handlers"], json!(["fetch"]));
    let etag = res["etag"].as_str().expect("etag").to_string();
    assert_eq!(etag.len(), 64);

    // Same content -> same etag; changed content -> new etag.
    let again = api.put_script("gw", meta(json!([]), &[])).await;
    assert_eq!(again.assert_ok()["etag"], json!(etag));
    let changed = api
        .upload(
            reqwest::Method::PUT,
            &format!("/accounts/{ACC}/workers/scripts/gw"),
            meta(json!([]), &[]),
            &[(
                "worker.js",
                "export default { fetch() { return new Response('2') } }",
            )],
        )
        .await;
    assert_ne!(changed.assert_ok()["etag"], json!(etag));

    let list = api.get(&format!("/accounts/{ACC}/workers/scripts")).await;
    assert_eq!(list.assert_ok().as_array().map(Vec::len), Some(1));
    let raw = api
        .get(&format!("/accounts/{ACC}/workers/scripts/gw"))
        .await;
    assert_eq!(raw.status, 200);
    assert!(raw.text.contains("new Response('2')"));
    let view = sim.sim.script(ACC, "gw").expect("script stored");
    assert_eq!(view.version_count, 3);
    assert_eq!(view.compatibility_date.as_deref(), Some("2025-01-01"));

    api.delete(&format!("/accounts/{ACC}/workers/scripts/gw"))
        .await
        .assert_ok();
    api.get(&format!("/accounts/{ACC}/workers/scripts/gw"))
        .await
        .assert_err(404, 10007);
    api.delete(&format!("/accounts/{ACC}/workers/scripts/gw"))
        .await
        .assert_err(404, 10007);
}

#[tokio::test]
async fn upload_validation_errors() {
    let (_sim, api) = start().await;
    api.put_script("Bad_Name", meta(json!([]), &[]))
        .await
        .assert_err(400, 10016);
    let no_handler = api
        .upload(
            reqwest::Method::PUT,
            &format!("/accounts/{ACC}/workers/scripts/gw"),
            meta(json!([]), &[]),
            &[("worker.js", "const x = 1;")],
        )
        .await;
    no_handler.assert_err(400, 10068);
    let wrong_main = api
        .put_script(
            "gw",
            json!({"main_module": "missing.js", "compatibility_date": "2025-01-01"}),
        )
        .await;
    wrong_main.assert_err(400, 10021);
    api.put_script(
        "gw",
        meta(json!([{"type": "plain_text", "text": "x"}]), &[]),
    )
    .await
    .assert_err(400, 10052);
    api.json(
        reqwest::Method::PUT,
        &format!("/accounts/{ACC}/workers/scripts/gw"),
        json!({}),
    )
    .await
    .assert_err(400, 10001);
}

#[tokio::test]
async fn keep_bindings_decides_whether_secrets_survive_an_upload() {
    let (sim, api) = start().await;
    api.put_script(
        "gw",
        meta(
            json!([{"type": "plain_text", "name": "GREETING", "text": "hi"}]),
            &[],
        ),
    )
    .await
    .assert_ok();
    let secret = json!({"name": "HMAC_KEY", "text": "s3cr3t-value", "type": "secret_text"});
    let r = api
        .json(
            reqwest::Method::PUT,
            &format!("/accounts/{ACC}/workers/scripts/gw/secrets"),
            secret,
        )
        .await;
    assert_eq!(
        r.assert_ok(),
        &json!({"name": "HMAC_KEY", "type": "secret_text"})
    );
    assert_eq!(sim.sim.secret_names(ACC, "gw"), vec!["HMAC_KEY"]);

    // keep_bindings with the secret types: the secret survives, the plain var is replaced.
    api.put_script("gw", meta(json!([]), &["secret_text", "secret_key"]))
        .await
        .assert_ok();
    assert_eq!(sim.sim.secret_names(ACC, "gw"), vec!["HMAC_KEY"]);
    assert_eq!(
        sim.sim
            .secret_value_for_test(ACC, "gw", "HMAC_KEY")
            .as_deref(),
        Some("s3cr3t-value")
    );
    let view = sim.sim.script(ACC, "gw").expect("script");
    assert!(!view.bindings.iter().any(|b| b["name"] == "GREETING"));
    assert!(view.bindings.iter().all(|b| b.get("text").is_none()));

    // Without keep_bindings an upload wipes the secret.
    api.put_script("gw", meta(json!([]), &[])).await.assert_ok();
    assert!(sim.sim.secret_names(ACC, "gw").is_empty());
    assert_eq!(sim.sim.secret_value_for_test(ACC, "gw", "HMAC_KEY"), None);
}

#[tokio::test]
async fn secrets_are_write_only_and_each_change_deploys_a_version() {
    let (sim, api) = start().await;
    sim.sim.record_exchanges(true);
    api.put_script("gw", meta(json!([]), &[])).await.assert_ok();
    let base = format!("/accounts/{ACC}/workers/scripts/gw");
    for (n, v) in [("A", "value-a-123"), ("B", "value-b-456")] {
        api.json(
            reqwest::Method::PUT,
            &format!("{base}/secrets"),
            json!({"name": n, "text": v, "type": "secret_text"}),
        )
        .await
        .assert_ok();
    }
    let list = api.get(&format!("{base}/secrets")).await;
    assert_eq!(
        list.assert_ok(),
        &json!([{"name": "A", "type": "secret_text"}, {"name": "B", "type": "secret_text"}])
    );
    let one = api.get(&format!("{base}/secrets/A")).await;
    assert_eq!(
        one.assert_ok(),
        &json!({"name": "A", "type": "secret_text"})
    );
    api.get(&format!("{base}/secrets/NOPE"))
        .await
        .assert_err(404, 10056);

    // Bulk: set C, delete A, leave B.
    let bulk = api
        .json(
            reqwest::Method::PATCH,
            &format!("{base}/secrets-bulk"),
            json!({"secrets": {"C": {"type": "secret_text", "text": "value-c-789"}, "A": null}}),
        )
        .await;
    let res = bulk.assert_ok();
    assert_eq!(res["C"], json!({"name": "C", "type": "secret_text"}));
    assert!(res.get("A").is_none());
    assert_eq!(sim.sim.secret_names(ACC, "gw"), vec!["B", "C"]);
    api.delete(&format!("{base}/secrets/B")).await.assert_ok();
    assert_eq!(sim.sim.secret_names(ACC, "gw"), vec!["C"]);

    // 1 upload + 2 puts + 1 bulk + 1 delete = 5 versions, each deployed at 100 %.
    let view = sim.sim.script(ACC, "gw").expect("script");
    assert_eq!(view.version_count, 5);
    assert_eq!(view.deployment_count, 5);
    assert_eq!(view.deployed, vec![(view.latest_version_id.clone(), 100.0)]);
    let version = api
        .get(&format!("{base}/versions/{}", view.latest_version_id))
        .await;
    let bindings = &version.assert_ok()["resources"]["bindings"];
    assert_eq!(bindings, &json!([{"name": "C", "type": "secret_text"}]));

    // No response ever carried a secret value.
    for ex in sim.sim.exchanges() {
        let body = String::from_utf8_lossy(&ex.response_body);
        for v in ["value-a-123", "value-b-456", "value-c-789"] {
            assert!(
                !body.contains(v),
                "{} {} leaked a secret",
                ex.method,
                ex.path
            );
        }
    }
}

#[tokio::test]
async fn secret_edit_is_refused_until_the_latest_version_is_deployed() {
    let (sim, api) = start().await;
    let base = format!("/accounts/{ACC}/workers/scripts/gw");
    // A version upload on a Worker that does not exist yet fails.
    api.upload(
        reqwest::Method::POST,
        &format!("{base}/versions"),
        meta(json!([]), &[]),
        &[("worker.js", WORKER)],
    )
    .await
    .assert_err(404, 10007);
    let first = api.put_script("gw", meta(json!([]), &[])).await;
    first.assert_ok();
    let first_version = sim.sim.script(ACC, "gw").expect("script").latest_version_id;
    let up = api
        .upload(
            reqwest::Method::POST,
            &format!("{base}/versions"),
            json!({"main_module": "worker.js", "compatibility_date": "2025-01-01",
                   "annotations": {"workers/message": "pending"}}),
            &[("worker.js", WORKER)],
        )
        .await;
    let new_id = up.assert_ok()["id"]
        .as_str()
        .expect("version id")
        .to_string();
    assert_eq!(up.assert_ok()["number"], 2);
    let secret = json!({"name": "K", "text": "v", "type": "secret_text"});
    let refused = api
        .json(
            reqwest::Method::PUT,
            &format!("{base}/secrets"),
            secret.clone(),
        )
        .await;
    refused.assert_err(400, 10215);
    assert!(
        refused.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("latest version of your Worker isn't currently deployed"))
    );
    api.json(
        reqwest::Method::PATCH,
        &format!("{base}/secrets-bulk"),
        json!({"secrets": {"K": secret}}),
    )
    .await
    .assert_err(400, 10215);

    // A gradual deployment still leaves the latest version not fully deployed.
    let split = json!({"strategy": "percentage", "versions": [
        {"version_id": new_id, "percentage": 10}, {"version_id": first_version, "percentage": 90}]});
    api.json(reqwest::Method::POST, &format!("{base}/deployments"), split)
        .await
        .assert_ok();
    api.json(
        reqwest::Method::PUT,
        &format!("{base}/secrets"),
        secret.clone(),
    )
    .await
    .assert_err(400, 10215);

    // Percentages must add up to 100.
    let bad =
        json!({"strategy": "percentage", "versions": [{"version_id": new_id, "percentage": 50}]});
    api.json(reqwest::Method::POST, &format!("{base}/deployments"), bad)
        .await
        .assert_err(400, 10021);

    let full =
        json!({"strategy": "percentage", "versions": [{"version_id": new_id, "percentage": 100}]});
    api.json(reqwest::Method::POST, &format!("{base}/deployments"), full)
        .await
        .assert_ok();
    api.json(reqwest::Method::PUT, &format!("{base}/secrets"), secret)
        .await
        .assert_ok();
    let deployments = api.get(&format!("{base}/deployments")).await;
    let list = deployments.assert_ok()["deployments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["annotations"]["workers/triggered_by"], "secret");
    let versions = api.get(&format!("{base}/versions")).await;
    assert_eq!(versions.assert_ok()["items"][0]["number"], 3);

    // Rolling back to the first version (no secret K) needs force.
    let back = json!({"strategy": "percentage", "versions": [{"version_id": first_version, "percentage": 100}]});
    api.json(
        reqwest::Method::POST,
        &format!("{base}/deployments"),
        back.clone(),
    )
    .await
    .assert_err(400, 10021);
    api.json(
        reqwest::Method::POST,
        &format!("{base}/deployments?force=true"),
        back,
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn routes_crud_and_conflicts() {
    let (sim, api) = start().await;
    let base = format!("/zones/{ZONE}/workers/routes");
    api.json(
        reqwest::Method::POST,
        &base,
        json!({"pattern": "api.example.com/*", "script": "gw"}),
    )
    .await
    .assert_err(400, 10019);
    api.put_script("gw", meta(json!([]), &[])).await.assert_ok();
    let created = api
        .json(
            reqwest::Method::POST,
            &base,
            json!({"pattern": "api.example.com/*", "script": "gw"}),
        )
        .await;
    let id = created.assert_ok()["id"]
        .as_str()
        .expect("route id")
        .to_string();
    api.json(
        reqwest::Method::POST,
        &base,
        json!({"pattern": "API.example.com/*", "script": "gw"}),
    )
    .await
    .assert_err(409, 10020);
    api.json(
        reqwest::Method::POST,
        &base,
        json!({"pattern": "api.other.com/*", "script": "gw"}),
    )
    .await
    .assert_err(400, 10022);
    api.json(
        reqwest::Method::POST,
        &base,
        json!({"pattern": "example.com/*.jpg"}),
    )
    .await
    .assert_err(400, 10022);
    let foreign = sim
        .sim
        .add_foreign_route(ZONE, "www.example.com/*", Some("someone-else"))
        .expect("zone exists");
    api.json(
        reqwest::Method::POST,
        &base,
        json!({"pattern": "www.example.com/*", "script": "gw"}),
    )
    .await
    .assert_err(409, 10020);
    let bypass = api
        .json(
            reqwest::Method::POST,
            &base,
            json!({"pattern": "api.example.com/health"}),
        )
        .await;
    assert_eq!(bypass.assert_ok()["script"], Value::Null);

    let list = api.get(&base).await;
    assert_eq!(list.assert_ok().as_array().map(Vec::len), Some(3));
    let one = api.get(&format!("{base}/{foreign}")).await;
    assert_eq!(one.assert_ok()["script"], "someone-else");

    let upd = api
        .json(
            reqwest::Method::PUT,
            &format!("{base}/{id}"),
            json!({"pattern": "api.example.com/v1/*", "script": "gw"}),
        )
        .await;
    assert_eq!(upd.assert_ok()["pattern"], "api.example.com/v1/*");
    api.json(
        reqwest::Method::PUT,
        &format!("{base}/{id}"),
        json!({"pattern": "www.example.com/*", "script": "gw"}),
    )
    .await
    .assert_err(409, 10020);
    let del = api.delete(&format!("{base}/{id}")).await;
    assert_eq!(del.assert_ok(), &json!({"id": id}));
    api.get(&format!("{base}/{id}"))
        .await
        .assert_err(404, 10007);
    assert_eq!(sim.sim.routes(ZONE).len(), 2);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let mut cfg = CfSimConfig::realistic();
    cfg.rate_limit = Some((3, Duration::from_secs(60)));
    let sim = CloudflareSim::start(cfg).await.expect("simulator starts");
    let api = Api::new(&sim, Some(TOKEN));
    for i in 0..3 {
        let r = api.get("/user/tokens/verify").await;
        r.assert_ok();
        let rl = r
            .headers
            .get("ratelimit")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            rl.starts_with(&format!("\"default\";r={};t=", 2 - i)),
            "{rl}"
        );
        assert_eq!(
            r.headers
                .get("ratelimit-policy")
                .and_then(|v| v.to_str().ok()),
            Some("\"default\";q=3;w=60")
        );
    }
    let r = api.get("/user/tokens/verify").await;
    r.assert_err(429, 10429);
    let retry: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header");
    assert!((1..=60).contains(&retry), "{retry}");
    // Another token has its own budget.
    sim.sim.add_token(ACC, SimToken::active("second-token"));
    Api::new(&sim, Some("second-token"))
        .get("/user/tokens/verify")
        .await
        .assert_ok();
    assert_eq!(sim.sim.stats().rate_limited, 1);
    // Raising the limit lets the first token through again.
    sim.sim.set_rate_limit(None);
    api.get("/user/tokens/verify").await.assert_ok();
}

#[tokio::test]
async fn injected_faults() {
    let (sim, api) = start().await;
    let faults = sim.sim.faults();
    faults.fail_next(2, 503);
    api.get("/user/tokens/verify").await.assert_err(503, 10002);
    api.get("/user/tokens/verify").await.assert_err(503, 10002);
    api.get("/user/tokens/verify").await.assert_ok();

    faults.fail_next_matching(Some(http::Method::PUT), "/secrets", 1, 500);
    api.get("/user/tokens/verify").await.assert_ok();

    faults.fail_ratio(1.0, 502);
    api.get("/user/tokens/verify").await.assert_err(502, 10002);
    faults.fail_ratio(0.0, 502);
    api.get("/user/tokens/verify").await.assert_ok();

    faults.set_latency(Duration::from_millis(150));
    let t = std::time::Instant::now();
    api.get("/user/tokens/verify").await.assert_ok();
    assert!(t.elapsed() >= Duration::from_millis(150));
    faults.set_latency(Duration::ZERO);

    faults.hang_next(1);
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = short
        .get(format!("{}/user/tokens/verify", sim.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect_err("a hanging request times out");
    assert!(err.is_timeout());

    // Per-script write contention on secrets.
    faults.clear();
    api.put_script("busy", meta(json!([]), &[]))
        .await
        .assert_ok();
    faults.script_busy_next(1);
    let secret = json!({"name": "K", "text": "v", "type": "secret_text"});
    let path = format!("/accounts/{ACC}/workers/scripts/busy/secrets");
    api.get(&path).await.assert_ok();
    let busy = api.json(reqwest::Method::PUT, &path, secret.clone()).await;
    busy.assert_err(429, 10429);
    assert_eq!(
        busy.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    api.json(reqwest::Method::PUT, &path, secret)
        .await
        .assert_ok();

    // Propagation: the script is invisible for 2 calls right after the upload.
    faults.clear();
    faults.script_missing_after_upload(2);
    api.put_script("gw", meta(json!([]), &[])).await.assert_ok();
    api.get(&format!("/accounts/{ACC}/workers/scripts/gw"))
        .await
        .assert_err(404, 10007);
    api.json(
        reqwest::Method::POST,
        &format!("/zones/{ZONE}/workers/routes"),
        json!({"pattern": "example.com/*", "script": "gw"}),
    )
    .await
    .assert_err(400, 10019);
    api.json(
        reqwest::Method::POST,
        &format!("/zones/{ZONE}/workers/routes"),
        json!({"pattern": "example.com/*", "script": "gw"}),
    )
    .await
    .assert_ok();
}

#[tokio::test]
async fn stats_and_exchange_recording() {
    let (sim, api) = start().await;
    sim.sim.record_exchanges(true);
    api.put_script("gw", meta(json!([]), &[])).await.assert_ok();
    api.get(&format!("/accounts/{ACC}/workers/scripts"))
        .await
        .assert_ok();
    api.get(&format!("/accounts/{ACC}/workers/scripts"))
        .await
        .assert_ok();
    api.get(&format!("/zones/{ZONE}/workers/routes"))
        .await
        .assert_ok();
    let stats = sim.sim.stats();
    assert_eq!(
        stats.count("GET", "/accounts/{account_id}/workers/scripts"),
        2
    );
    assert_eq!(
        stats.count(
            "PUT",
            "/accounts/{account_id}/workers/scripts/{script_name}"
        ),
        1
    );
    assert_eq!((stats.reads, stats.writes), (3, 1));
    assert_eq!(stats.by_status.get(&200), Some(&4));

    let ex = sim.sim.exchanges();
    assert_eq!(ex.len(), 4);
    assert_eq!(ex[0].method, "PUT");
    assert_eq!(
        ex[0].path,
        format!("/client/v4/accounts/{ACC}/workers/scripts/gw")
    );
    assert_eq!(
        ex[0].path_template.as_deref(),
        Some("/accounts/{account_id}/workers/scripts/{script_name}")
    );
    assert!(
        ex[0]
            .request_content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("multipart/form-data"))
    );
    assert!(String::from_utf8_lossy(&ex[0].request_body).contains("export default"));
    assert_eq!(ex[0].status, 200);
    assert_eq!(
        ex[0].response_content_type.as_deref(),
        Some("application/json")
    );
    let body: Value = serde_json::from_slice(&ex[0].response_body).expect("json");
    assert_eq!(body["result"]["id"], "gw");
    // Debug output never prints bodies.
    assert!(!format!("{:?}", ex[0]).contains("export default"));
    sim.sim.reset_stats();
    assert_eq!(sim.sim.stats().total(), 0);
}

/// Serves the simulator for the Python SDK tests on `CF_SIM_PORT` until killed:
/// `CF_SIM_PORT=8788 cargo test --test integration serve_cf_for_python -- --ignored`.
#[tokio::test]
#[ignore]
async fn serve_cf_for_python() {
    let port: u16 = std::env::var("CF_SIM_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8788);
    let mut cfg = CfSimConfig::realistic();
    if let Some(limit) = std::env::var("CF_SIM_RATE_LIMIT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.rate_limit = Some((limit, Duration::from_secs(300)));
    }
    let running = CloudflareSim::start_on(([127, 0, 0, 1], port).into(), cfg)
        .await
        .expect("simulator binds");
    println!("cloudflare simulator listening on {}", running.url());
    std::future::pending::<()>().await;
}

/// Every (method, path) the simulator serves is an operation of the official document, so the
/// simulator cannot grow endpoints the real API does not have.
#[tokio::test]
async fn served_operations_exist_in_the_official_spec() {
    let spec_path = crate::support::contract::specs_dir().join("cloudflare-workers.yaml");
    let text = std::fs::read_to_string(&spec_path).expect("the vendored spec is in specs/");
    let spec: Value = serde_yaml::from_str(&text).expect("spec parses");
    let (sim, api) = start().await;
    sim.sim.record_exchanges(true);
    let base = format!("/accounts/{ACC}/workers/scripts/gw");
    api.get("/user/tokens/verify").await;
    api.get(&format!("/accounts/{ACC}/tokens/verify")).await;
    api.put_script("gw", meta(json!([]), &[])).await.assert_ok();
    api.get(&format!("/accounts/{ACC}/workers/scripts")).await;
    api.get(&base).await;
    api.upload(
        reqwest::Method::POST,
        &format!("{base}/versions"),
        meta(json!([]), &[]),
        &[("worker.js", WORKER)],
    )
    .await;
    api.get(&format!("{base}/versions")).await;
    let latest = sim.sim.script(ACC, "gw").expect("script").latest_version_id;
    api.get(&format!("{base}/versions/{latest}")).await;
    api.json(
        reqwest::Method::POST,
        &format!("{base}/deployments"),
        json!({"strategy": "percentage", "versions": [{"version_id": latest, "percentage": 100}]}),
    )
    .await;
    api.get(&format!("{base}/deployments")).await;
    api.json(
        reqwest::Method::PUT,
        &format!("{base}/secrets"),
        json!({"name": "K", "text": "v", "type": "secret_text"}),
    )
    .await;
    api.get(&format!("{base}/secrets")).await;
    api.get(&format!("{base}/secrets/K")).await;
    api.json(
        reqwest::Method::PATCH,
        &format!("{base}/secrets-bulk"),
        json!({"secrets": {"K": null}}),
    )
    .await;
    api.put_script("gw", meta(json!([]), &[])).await;
    api.json(
        reqwest::Method::PUT,
        &format!("{base}/secrets"),
        json!({"name": "K", "text": "v", "type": "secret_text"}),
    )
    .await;
    api.delete(&format!("{base}/secrets/K")).await;
    let routes = format!("/zones/{ZONE}/workers/routes");
    let r = api
        .json(
            reqwest::Method::POST,
            &routes,
            json!({"pattern": "example.com/*", "script": "gw"}),
        )
        .await;
    let id = r.assert_ok()["id"].as_str().unwrap_or_default().to_string();
    api.get(&routes).await;
    api.get(&format!("{routes}/{id}")).await;
    api.json(
        reqwest::Method::PUT,
        &format!("{routes}/{id}"),
        json!({"pattern": "example.com/a*", "script": "gw"}),
    )
    .await;
    api.delete(&format!("{routes}/{id}")).await;
    api.delete(&base).await;
    let tunnels = format!("/accounts/{ACC}/cfd_tunnel");
    let t = api
        .json(
            reqwest::Method::POST,
            &tunnels,
            json!({"name": "t1", "config_src": "cloudflare"}),
        )
        .await;
    let tid = t.assert_ok()["id"].as_str().unwrap_or_default().to_string();
    api.get(&format!("{tunnels}?name=t1&is_deleted=false"))
        .await;
    api.get(&format!("{tunnels}/{tid}")).await;
    api.json(
        reqwest::Method::PUT,
        &format!("{tunnels}/{tid}/configurations"),
        json!({"config": {"ingress": [{"hostname": "gw.example.com", "service": "http://gw:8080"},
                                      {"service": "http_status:404"}]}}),
    )
    .await
    .assert_ok();
    api.get(&format!("{tunnels}/{tid}/configurations")).await;
    api.get(&format!("{tunnels}/{tid}/connections")).await;
    api.get(&format!("{tunnels}/{tid}/token")).await;
    let dns = format!("/zones/{ZONE}/dns_records");
    let r = api
        .json(
            reqwest::Method::POST,
            &dns,
            json!({"type": "CNAME", "name": "gw", "content": format!("{tid}.cfargotunnel.com"), "proxied": true}),
        )
        .await;
    let rid = r.assert_ok()["id"].as_str().unwrap_or_default().to_string();
    api.get(&format!("{dns}?name=gw.example.com")).await;
    api.delete(&format!("{dns}/{rid}")).await;
    let services = format!("/accounts/{ACC}/connectivity/directory/services");
    let svc = json!({"type": "http", "name": "gw", "http_port": 8080,
        "host": {"hostname": "gw.ns.svc", "resolver_network": {"tunnel_id": tid}}});
    let s = api
        .json(reqwest::Method::POST, &services, svc.clone())
        .await;
    let sid = s.assert_ok()["service_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    api.get(&format!("{services}?type=http")).await.assert_ok();
    api.get(&format!("{services}/{sid}")).await.assert_ok();
    api.json(reqwest::Method::PUT, &format!("{services}/{sid}"), svc)
        .await
        .assert_ok();
    api.delete(&format!("{services}/{sid}")).await;
    api.json(
        reqwest::Method::DELETE,
        &format!("{tunnels}/{tid}"),
        json!({}),
    )
    .await
    .assert_ok();

    let mut seen = std::collections::BTreeSet::new();
    for ex in sim.sim.exchanges() {
        assert!(
            ex.status < 500,
            "{} {} answered {}",
            ex.method,
            ex.path,
            ex.status
        );
        let template = ex
            .path_template
            .clone()
            .expect("served path has a template");
        let op = &spec["paths"][&template][ex.method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{} {template} is not in the official spec",
            ex.method
        );
        seen.insert(format!("{} {template}", ex.method));
    }
    // The scenario above reaches every operation the simulator serves.
    assert_eq!(seen.len(), 37, "{seen:?}");
}

/// Tunnels and their DNS records as the real API treats them: one live tunnel per name, the
/// catch-all ingress rule last, no deletion under a connected cloudflared, a token that names
/// the tunnel, and no CNAME beside another address record of the same name.
#[tokio::test]
async fn tunnels_and_dns_records_follow_the_real_rules() {
    let (sim, api) = start().await;
    let tunnels = format!("/accounts/{ACC}/cfd_tunnel");
    let t = api
        .json(
            reqwest::Method::POST,
            &tunnels,
            json!({"name": "t", "config_src": "cloudflare"}),
        )
        .await;
    let tid = t.assert_ok()["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(t.assert_ok()["status"], "inactive");
    api.json(reqwest::Method::POST, &tunnels, json!({"name": "t"}))
        .await
        .assert_err(409, 1013);
    api.json(
        reqwest::Method::POST,
        &tunnels,
        json!({"config_src": "cloudflare"}),
    )
    .await
    .assert_err(400, 1001);
    let cfg = format!("{tunnels}/{tid}/configurations");
    api.json(
        reqwest::Method::PUT,
        &cfg,
        json!({"config": {"ingress": [{"hostname": "gw.example.com", "service": "http://gw"}]}}),
    )
    .await
    .assert_err(400, 1055);
    api.json(
        reqwest::Method::PUT,
        &cfg,
        json!({"config": {"ingress": [{"hostname": "gw.example.com", "service": "http://gw"},
                                      {"service": "http_status:404"}]}}),
    )
    .await
    .assert_ok();
    assert_eq!(api.get(&cfg).await.assert_ok()["version"], 1);

    // The token carries the account, the tunnel and its secret; cloudflared connects with it.
    let token = api.get(&format!("{tunnels}/{tid}/token")).await;
    let token = token.assert_ok().as_str().unwrap_or_default().to_string();
    let decoded: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(&token)
            .expect("base64"),
    )
    .expect("JSON");
    assert_eq!(decoded["a"], ACC);
    assert_eq!(decoded["t"], tid.as_str());
    assert!(sim.sim.connect_tunnel("bm90IGEgdG9rZW4=").is_err());
    let conn = sim.sim.connect_tunnel(&token).expect("the token connects");
    let conns = api.get(&format!("{tunnels}/{tid}/connections")).await;
    assert_eq!(conns.assert_ok().as_array().map(Vec::len), Some(1));
    assert_eq!(
        api.get(&format!("{tunnels}/{tid}")).await.assert_ok()["status"],
        "healthy"
    );
    api.json(
        reqwest::Method::DELETE,
        &format!("{tunnels}/{tid}"),
        json!({}),
    )
    .await
    .assert_err(400, 1022);
    sim.sim.disconnect_tunnel(&conn);
    assert_eq!(
        api.get(&format!("{tunnels}/{tid}")).await.assert_ok()["status"],
        "down"
    );

    // DNS: a CNAME to the tunnel, then no second address record of that name.
    let dns = format!("/zones/{ZONE}/dns_records");
    let target = format!("{tid}.cfargotunnel.com");
    let r = api
        .json(
            reqwest::Method::POST,
            &dns,
            json!({"type": "CNAME", "name": "gw", "content": target, "proxied": true}),
        )
        .await;
    assert_eq!(r.assert_ok()["name"], "gw.example.com");
    api.json(
        reqwest::Method::POST,
        &dns,
        json!({"type": "A", "name": "gw.example.com", "content": "192.0.2.1"}),
    )
    .await
    .assert_err(400, 81053);
    api.json(
        reqwest::Method::POST,
        &dns,
        json!({"type": "CNAME", "name": "gw.other.org", "content": target}),
    )
    .await
    .assert_err(400, 1004);
    let long = "x".repeat(101);
    api.json(
        reqwest::Method::POST,
        &dns,
        json!({"type": "TXT", "name": "t", "content": "v", "comment": long}),
    )
    .await
    .assert_err(400, 1004);
    let listed = api.get(&format!("{dns}?name=gw.example.com")).await;
    assert_eq!(listed.assert_ok().as_array().map(Vec::len), Some(1));
    api.delete(&format!("{dns}/{}", uuid::Uuid::new_v4().simple()))
        .await
        .assert_err(404, 81044);

    // Deleted: gone from the live list, still found with is_deleted=true; its token is refused.
    api.json(
        reqwest::Method::DELETE,
        &format!("{tunnels}/{tid}"),
        json!({}),
    )
    .await
    .assert_ok();
    let live = api.get(&format!("{tunnels}?is_deleted=false")).await;
    assert_eq!(live.assert_ok().as_array().map(Vec::len), Some(0));
    let gone = api.get(&format!("{tunnels}?is_deleted=true")).await;
    assert_eq!(gone.assert_ok().as_array().map(Vec::len), Some(1));
    assert!(sim.sim.connect_tunnel(&token).is_err());
}

/// Workers VPC services as the real API treats them: the four host shapes with a tunnel UUID,
/// typed ports, server-made `service_id` and times, a full replacement on PUT, the `type`
/// filter; an upload's `vpc_service` binding must name a service of the account; an account
/// without Workers VPC is refused.
#[tokio::test]
async fn vpc_services_follow_the_real_rules() {
    let (sim, api) = start().await;
    let t = api
        .json(
            reqwest::Method::POST,
            &format!("/accounts/{ACC}/cfd_tunnel"),
            json!({"name": "t", "config_src": "cloudflare"}),
        )
        .await;
    let tid = t.assert_ok()["id"].as_str().unwrap_or_default().to_string();
    let services = format!("/accounts/{ACC}/connectivity/directory/services");
    let host = json!({"hostname": "gw.ns.svc", "resolver_network": {"tunnel_id": tid}});
    let post = |body: Value| api.json(reqwest::Method::POST, &services, body);
    post(json!({"type": "http", "host": host}))
        .await
        .assert_err(400, 1001);
    post(json!({"type": "udp", "name": "gw", "host": host}))
        .await
        .assert_err(400, 1001);
    post(json!({"type": "http", "name": "gw", "http_port": "80", "host": host}))
        .await
        .assert_err(400, 1001);
    post(json!({"type": "http", "name": "gw", "host": {"hostname": "gw.ns.svc"}}))
        .await
        .assert_err(400, 1001);
    post(json!({"type": "http", "name": "gw",
        "host": {"ipv4": "10.0.0.1", "network": {"tunnel_id": uuid::Uuid::new_v4().to_string()}}}))
    .await
    .assert_err(400, 1001);
    post(json!({"type": "http", "name": "gw", "host": host,
        "tls_settings": {"cert_verification_mode": "sometimes"}}))
    .await
    .assert_err(400, 1001);

    let created = post(
        json!({"type": "http", "name": "gw", "http_port": 8080, "host": host,
        "service_id": "ignored"}),
    )
    .await;
    let c = created.assert_ok().clone();
    let sid = c["service_id"].as_str().unwrap_or_default().to_string();
    assert!(uuid::Uuid::parse_str(&sid).is_ok(), "{c}");
    assert_eq!(c["host"], host);
    assert_eq!(c["http_port"], 8080);
    assert!(c["created_at"].is_string() && c["updated_at"].is_string());
    post(
        json!({"type": "tcp", "name": "db", "tcp_port": 5432, "app_protocol": "postgresql",
        "host": {"ipv4": "10.0.0.5", "network": {"tunnel_id": tid}}}),
    )
    .await
    .assert_ok();
    let http = api.get(&format!("{services}?type=http")).await;
    assert_eq!(http.assert_ok().as_array().map(Vec::len), Some(1));
    let all = api.get(&services).await;
    assert_eq!(all.assert_ok().as_array().map(Vec::len), Some(2));

    // PUT replaces the entry: a port left out is gone; the id and creation time stay.
    let put = api
        .json(
            reqwest::Method::PUT,
            &format!("{services}/{sid}"),
            json!({"type": "http", "name": "gw2", "https_port": 8443, "host": host}),
        )
        .await;
    let u = put.assert_ok().clone();
    assert_eq!(u["service_id"], sid.as_str());
    assert_eq!(u["name"], "gw2");
    assert!(u.get("http_port").is_none(), "{u}");
    assert_eq!(u["created_at"], c["created_at"]);
    api.get(&format!("{services}/{}", uuid::Uuid::new_v4()))
        .await
        .assert_err(404, 1002);

    // A Worker binds to an existing service of the account only.
    let binding = |id: &str| json!([{"type": "vpc_service", "name": "GATEWAY", "service_id": id}]);
    api.put_script("gw", meta(binding(&uuid::Uuid::new_v4().to_string()), &[]))
        .await
        .assert_err(400, 10021);
    api.put_script(
        "gw",
        meta(json!([{"type": "vpc_service", "name": "GATEWAY"}]), &[]),
    )
    .await
    .assert_err(400, 10021);
    api.put_script("gw", meta(binding(&sid), &[]))
        .await
        .assert_ok();
    let token = api
        .get(&format!("/accounts/{ACC}/cfd_tunnel/{tid}/token"))
        .await;
    let conn = sim
        .sim
        .connect_tunnel(token.assert_ok().as_str().unwrap_or_default())
        .expect("connects");
    assert_eq!(
        sim.sim.resolve_vpc_origin(ACC, "gw", "GATEWAY", "https"),
        Ok("https://gw.ns.svc:8443".to_string())
    );
    sim.sim.disconnect_tunnel(&conn);
    assert!(
        sim.sim
            .resolve_vpc_origin(ACC, "gw", "GATEWAY", "https")
            .is_err()
    );

    let deleted = api.delete(&format!("{services}/{sid}")).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert!(deleted.text.is_empty(), "the document declares no body");
    api.get(&format!("{services}/{sid}"))
        .await
        .assert_err(404, 1002);

    // An account whose plan lacks Workers VPC.
    sim.sim.set_workers_vpc(ACC, false);
    post(json!({"type": "http", "name": "gw", "host": host}))
        .await
        .assert_err(403, 1003);
}
