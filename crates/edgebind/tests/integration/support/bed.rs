//! A test bed: the real controller against the fake Kubernetes API server and the LINSTOR
//! simulator, with helpers to wait for outcomes and to check the LINSTOR contract.

use std::time::Duration;

use edgebind::controller::{self, ControllerConfig, Readiness};
use edgebind::crd::{self, EdgeVolume, LinstorBackend};
use edgebind_sim::kube::FakeApiServer;
use edgebind_sim::linstor::{LinstorSim, RunningSim, SimConfig};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio::task::JoinHandle;

use super::contract::{self, Contract};

pub const NS: &str = "team-a";
/// User agent of the controller under test (and prefix of leader-election candidates).
pub const CONTROLLER_UA: &str = "edgebind-controller/test";

pub struct Bed {
    pub kube: FakeApiServer,
    pub client: kube::Client,
    pub linstor: RunningSim,
    pub config: ControllerConfig,
    ctrl: Option<JoinHandle<()>>,
}

/// Controller settings fast enough for tests.
pub fn fast_config() -> ControllerConfig {
    ControllerConfig {
        resync: Duration::from_secs(3),
        concurrency: 8,
        progress_interval: Duration::from_millis(200),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(1),
        ..ControllerConfig::default()
    }
}

impl Bed {
    pub async fn start() -> Bed {
        Self::start_with(SimConfig::realistic(), fast_config()).await
    }

    pub async fn start_with(sim: SimConfig, config: ControllerConfig) -> Bed {
        let mut bed = Self::start_without_controller(sim, config).await;
        bed.start_controller();
        bed
    }

    pub async fn start_without_controller(sim: SimConfig, config: ControllerConfig) -> Bed {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kube = FakeApiServer::start()
            .await
            .expect("fake API server starts");
        for c in crd::all() {
            kube.try_install_crd(&c).expect("CRD installs");
        }
        let client = kube.client();
        let linstor = LinstorSim::start(sim)
            .await
            .expect("LINSTOR simulator starts");
        linstor.sim.record_exchanges(true);
        let ns: Namespace = serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        )
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
        let backend: LinstorBackend = serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "LinstorBackend", "metadata": {"name": "main"},
            "spec": {"urls": [linstor.url()], "budget": {"requestsPerSecond": 1000, "burst": 100, "maxInFlight": 16},
                     "timeouts": {"connectSeconds": 2, "readSeconds": 5, "mutationSeconds": 5}}
        }))
        .unwrap();
        Api::<LinstorBackend>::all(client.clone())
            .create(&PostParams::default(), &backend)
            .await
            .expect("backend");
        Bed {
            kube,
            client,
            linstor,
            config,
            ctrl: None,
        }
    }

    /// A client that identifies itself with `user_agent`, so the fake API server's request log
    /// tells the controller's calls from the test's own.
    pub fn client_as(&self, user_agent: &str) -> kube::Client {
        let mut cfg = kube::Config::new(self.kube.url().parse().expect("fake API server URL"));
        cfg.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_str(user_agent).expect("valid user agent"),
        ));
        kube::Client::try_from(cfg).expect("client for the fake API server")
    }

    pub fn start_controller(&mut self) {
        self.start_controller_with(Readiness::default());
    }

    pub fn start_controller_with(&mut self, ready: Readiness) {
        let (client, config) = (self.client_as(CONTROLLER_UA), self.config.clone());
        self.ctrl = Some(tokio::spawn(async move {
            if let Err(e) = controller::run(client, config, ready, futures::future::pending()).await
            {
                panic!("controller failed: {e:#}");
            }
        }));
    }

    /// Kills the controller as a crash would (no graceful shutdown).
    pub async fn crash_controller(&mut self) {
        if let Some(h) = self.ctrl.take() {
            h.abort();
            let _ = h.await;
        }
    }

    pub fn volumes(&self) -> Api<EdgeVolume> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub fn snapshots(&self) -> Api<crd::EdgeSnapshot> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn create_volume(&self, name: &str, spec: serde_json::Value) -> EdgeVolume {
        let v: EdgeVolume = serde_json::from_value(json!({
            "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
            "metadata": {"name": name, "namespace": NS}, "spec": spec
        }))
        .expect("volume fixture");
        self.volumes()
            .create(&PostParams::default(), &v)
            .await
            .expect("create EdgeVolume")
    }

    /// Polls `f` every 50 ms until it returns Some, or fails after `secs` with `what`.
    pub async fn eventually<T, F, Fut>(&self, secs: u64, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the volume's Ready condition has `status` and `reason`.
    pub async fn wait_volume(&self, name: &str, status: &str, reason: &str) -> EdgeVolume {
        let api = self.volumes();
        self.eventually(
            20,
            &format!("EdgeVolume {name} Ready={status} ({reason})"),
            || {
                let api = api.clone();
                async move {
                    let v = api.get_opt(name).await.ok().flatten()?;
                    let c = v
                        .status
                        .as_ref()?
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "Ready")?
                        .clone();
                    (c.status == status && c.reason == reason).then_some(v)
                }
            },
        )
        .await
    }

    /// Every exchange the simulator saw, checked against the official LINSTOR document.
    pub fn assert_contract(&self) {
        let c: &Contract = Contract::shared_linstor().expect("the LINSTOR OpenAPI document loads");
        let ex: Vec<contract::Exchange> = self
            .linstor
            .sim
            .exchanges()
            .into_iter()
            .map(|e| contract::Exchange {
                method: e.method,
                path: e.path,
                query: e.query,
                request_content_type: e
                    .request_body
                    .as_ref()
                    .map(|_| "application/json".to_string()),
                request_body: e.request_body,
                status: e.status,
                response_content_type: Some("application/json".into()),
                response_body: e.response_body,
            })
            .collect();
        assert!(!ex.is_empty(), "no LINSTOR exchange was recorded");
        let violations = contract::ExchangeLog::new(c).check_all(&ex);
        assert!(
            violations.is_empty(),
            "LINSTOR contract violations:\n{}",
            violations.join("\n")
        );
    }

    /// Waits until the backend reports Ready.
    pub async fn wait_volume_backend_ready(&self) {
        let api: Api<LinstorBackend> = Api::all(self.client.clone());
        self.eventually(20, "LinstorBackend main Ready", || {
            let api = api.clone();
            async move {
                let b = api.get("main").await.ok()?;
                b.status?
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
                    .then_some(())
            }
        })
        .await
    }

    pub fn events_for(&self, name: &str) -> Vec<serde_json::Value> {
        self.kube
            .events()
            .into_iter()
            .filter(|e| e["regarding"]["name"] == name || e["involvedObject"]["name"] == name)
            .collect()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        record_controller_calls(&self.kube);
        if let Some(h) = self.ctrl.take() {
            h.abort();
        }
        self.kube.shutdown();
    }
}

fn record_controller_calls(kube: &FakeApiServer) {
    record_calls(kube, CONTROLLER_UA, "controller");
}

/// User agent of the gateway under test.
pub const GATEWAY_UA: &str = "edgebind-gateway/test";

/// Appends every API call a component made (told apart by its user agent) to
/// `target/tmp/rbac-calls/<component>-*.jsonl`, for the RBAC coverage test
/// (tests/python/test_rbac_coverage.py) that checks them against the chart's roles.
pub fn record_calls(kube: &FakeApiServer, user_agent: &str, component: &str) {
    let calls: Vec<serde_json::Value> = kube
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.as_deref().is_some_and(|ua| ua.starts_with(user_agent)))
        .map(|r| {
            json!({"verb": r.verb, "group": r.group, "resource": r.resource, "subresource": r.subresource,
                   "namespace": r.namespace, "name": r.name, "status": r.status})
        })
        .collect();
    if calls.is_empty() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("rbac-calls");
    let _ = std::fs::create_dir_all(&dir);
    let body: String = calls.iter().map(|c| format!("{c}\n")).collect();
    let _ = std::fs::write(
        dir.join(format!("{component}-{}.jsonl", uuid::Uuid::new_v4())),
        body,
    );
}
