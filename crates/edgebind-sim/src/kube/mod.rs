//! An in-process fake Kubernetes API server.
//!
//! It speaks enough of the real HTTP API (CRUD, list paging, selectors, watch with bookmarks and
//! 410 expiry, merge/JSON/strategic patches, an approximation of server-side apply, the status
//! subresource, finalizers, owner-reference garbage collection, CRD schema defaulting, pruning
//! and CEL rules) that `kube::Client`, `Api<K>`, `watcher`, `Controller`, `finalizer()` and
//! `events::Recorder` run against it unchanged. No cluster can be had in CI; see the design notes.

mod discovery;
mod error;
mod openapi;
mod patch;
mod resources;
mod routes;
mod schema;
mod selector;
mod store;
mod watch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use resources::{CRD_GROUP, CRD_PLURAL, ResKey};
use store::{State, Target};

/// Requests kept for `requests()`; older ones are dropped so a long benchmark stays bounded.
const REQUEST_LOG_LIMIT: usize = 200_000;

/// Tunables; the defaults suit tests and the benchmark.
#[derive(Debug, Clone)]
pub struct FakeApiOptions {
    /// Watch events kept per resource; a watch from an older resourceVersion gets 410 Expired.
    pub history_limit: usize,
    /// How often an open watch gets a BOOKMARK (the real server sends about one a minute).
    pub bookmark_interval: Duration,
}

impl Default for FakeApiOptions {
    fn default() -> Self {
        FakeApiOptions {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

/// One API request as the server saw it, for assertions and the RBAC coverage test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// get, list, watch, create, update, patch, delete or deletecollection.
    pub verb: String,
    /// API group, empty for the core group.
    pub group: String,
    pub version: String,
    /// Resource plural; empty for discovery requests.
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub user_agent: Option<String>,
    pub field_manager: Option<String>,
    /// HTTP status code of the response.
    pub status: u16,
}

pub(crate) struct Shared {
    state: RwLock<State>,
    requests: Mutex<Vec<RecordedRequest>>,
    unavailable: tokio::sync::watch::Sender<bool>,
    cancel: CancellationToken,
    bookmark_interval: Duration,
}

impl Shared {
    // A panic while holding the lock must not turn every later request into a panic.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, r: RecordedRequest) {
        let mut log = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= REQUEST_LOG_LIMIT {
            log.drain(..REQUEST_LOG_LIMIT / 10);
        }
        log.push(r);
    }
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// A running fake API server on 127.0.0.1. Clones share the server; it stops on `shutdown()`
/// or when the last clone is dropped.
#[derive(Clone)]
pub struct FakeApiServer {
    inner: Arc<Inner>,
}

impl FakeApiServer {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<FakeApiServer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(listen: SocketAddr) -> anyhow::Result<FakeApiServer> {
        Self::start_with(listen, FakeApiOptions::default()).await
    }

    pub async fn start_with(
        listen: SocketAddr,
        options: FakeApiOptions,
    ) -> anyhow::Result<FakeApiServer> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the fake API server to {listen}"))?;
        let addr = listener.local_addr()?;
        let (unavailable, _) = tokio::sync::watch::channel(false);
        let shared = Arc::new(Shared {
            state: RwLock::new(State::new(options.history_limit)),
            requests: Mutex::new(Vec::new()),
            unavailable,
            cancel: CancellationToken::new(),
            bookmark_interval: options.bookmark_interval,
        });
        let app = routes::router(shared.clone());
        let cancel = shared.cancel.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake API server stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake API server listening");
        Ok(FakeApiServer {
            inner: Arc::new(Inner { shared, addr }),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// A client for this server (plain HTTP, no credentials).
    pub fn client(&self) -> kube::Client {
        let uri = self
            .url()
            .parse::<http::Uri>()
            .expect("http://127.0.0.1:port is a valid URI");
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).expect("a plain-HTTP kube client always builds")
    }

    /// A kubeconfig that points a separate process (`KUBECONFIG=...`) at this server.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\npreferences: {{}}\n",
            url = self.url()
        )
    }

    /// Registers a CRD (as `kubectl apply` of it would): its resource is served at once.
    /// Logs and ignores an invalid CRD; use `try_install_crd` to see the error.
    pub fn install_crd(&self, crd: &CustomResourceDefinition) {
        if let Err(e) = self.try_install_crd(crd) {
            tracing::warn!(error = %e, "fake API server refused a CRD");
        }
    }

    pub fn try_install_crd(&self, crd: &CustomResourceDefinition) -> anyhow::Result<()> {
        let body = serde_json::to_value(crd)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut t = Target {
            key: ResKey::new(CRD_GROUP, CRD_PLURAL),
            version: "v1".into(),
            namespace: None,
            name: None,
            status: false,
        };
        let mut st = self.inner.shared.write();
        let result = if st.get(&t.key, None, &name).is_ok() {
            t.name = Some(name);
            let mut body = body;
            if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            st.update(&t, body, false)
        } else {
            st.create(&t, body, false)
        };
        result.map(|_| ()).map_err(|e| {
            anyhow::anyhow!(
                "CRD {}: {}",
                crd.metadata.name.as_deref().unwrap_or(""),
                e.message
            )
        })
    }

    /// The stored object, as served in `version`.
    pub fn get(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let st = self.inner.shared.read();
        let key = ResKey::new(group, plural);
        let def = st.def(&key)?;
        let obj = st.get(&key, namespace, name).ok()?;
        let mut obj = (*obj).clone();
        obj["apiVersion"] = Value::String(def.api_version(version));
        Some(obj)
    }

    /// All objects of a resource (in one namespace, or all when `None`).
    pub fn list(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
    ) -> Vec<Value> {
        let st = self.inner.shared.read();
        let key = ResKey::new(group, plural);
        let Some(def) = st.def(&key) else {
            return Vec::new();
        };
        let Ok(page) = st.list(&key, namespace, &|_| true, None, None) else {
            return Vec::new();
        };
        page.items
            .iter()
            .map(|o| {
                let mut o = (**o).clone();
                o["apiVersion"] = Value::String(def.api_version(version));
                o
            })
            .collect()
    }

    /// Every Event created through either events API, in creation order, each in its latest state.
    pub fn events(&self) -> Vec<Value> {
        self.inner.shared.read().events()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner
            .shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.shared.read().rv
    }

    /// While on, every request gets 503 and open watches are closed (clients must relist).
    pub fn set_unavailable(&self, on: bool) {
        self.inner.shared.unavailable.send_replace(on);
    }

    /// Stops accepting connections and ends all watches.
    pub fn shutdown(&self) {
        self.inner.shared.cancel.cancel();
    }
}

/// Runs a fake API server until Ctrl-C, with the given CRDs installed; prints the kubeconfig
/// to stdout so a benchmark can hand it to `edgebind controller`.
pub async fn run_standalone(
    listen: SocketAddr,
    crds: Vec<CustomResourceDefinition>,
) -> anyhow::Result<()> {
    let server = FakeApiServer::start_on(listen).await?;
    for crd in &crds {
        server.try_install_crd(crd)?;
    }
    println!("{}", server.kubeconfig_yaml());
    tracing::info!(url = %server.url(), crds = crds.len(), "fake API server ready");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    server.shutdown();
    Ok(())
}
