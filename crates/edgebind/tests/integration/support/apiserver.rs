//! A real kube-apiserver with etcd (`tests/apiserver`, built from the Kubernetes Go modules),
//! started once per test binary and shared by the tests that need the real thing. Each test
//! works in namespaces of its own: without kube-controller-manager a namespace is never emptied
//! after deletion, so names are not reused.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;
use serde_json::json;

/// What `kube-testenv` prints once ready (tests/apiserver/README.md).
#[derive(Deserialize, Debug, Clone)]
pub struct Info {
    pub server: String,
    pub admin: PathBuf,
    pub controller: PathBuf,
    pub gateway: PathBuf,
    pub dir: PathBuf,
    pub startup_ms: u64,
    pub version: String,
}

pub struct RealApiServer {
    pub info: Info,
    // Holding the child holds its stdin: the server stops when this test binary exits.
    _child: Mutex<Child>,
}

/// Whose credentials a client uses.
#[derive(Clone, Copy, Debug)]
pub enum Who {
    /// `system:masters`: bypasses RBAC; for setting up, never for the code under test.
    Admin,
    /// `system:serviceaccount:edgebind-system:edgebind-controller`.
    Controller,
    /// `system:serviceaccount:edgebind-system:edgebind-gateway`.
    Gateway,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary: `EDGEBIND_KUBE_TESTENV` (scripts/test.sh builds it), else the build script's
/// output, (re)built now so it is never stale (Go's build cache makes that about a second).
fn binary() -> Result<PathBuf, String> {
    go_tool("kube-testenv", "EDGEBIND_KUBE_TESTENV")
}

/// A Go tool of `tests/apiserver/build.sh` (`kube-testenv`, `kstatus`, ...): the path in `env`
/// when scripts/test.sh built it, else built now (a Go build-cache hit after the first time).
pub fn go_tool(name: &str, env: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let root = workspace_root();
    let out = Command::new("bash")
        .arg(root.join("tests/apiserver/build.sh"))
        .arg(name)
        .output()
        .map_err(|e| format!("cannot run tests/apiserver/build.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tests/apiserver/build.sh {name} failed (needs Go and the module proxy):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(root.join("target/kube-testenv").join(name))
}

fn start(apiserver_flags: &[&str]) -> Result<RealApiServer, String> {
    let bin = binary()?;
    let mut cmd = Command::new(&bin);
    if !apiserver_flags.is_empty() {
        cmd.arg("--").args(apiserver_flags);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = tx.send(r);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| "kube-testenv did not become ready within 120 s".to_string())?
        .map_err(|e| format!("reading kube-testenv's output: {e}"))?;
    let info: Info = serde_json::from_str(&line)
        .map_err(|e| format!("kube-testenv printed {line:?}, not its JSON line: {e}"))?;
    Ok(RealApiServer {
        info,
        _child: Mutex::new(child),
    })
}

static SERVER: OnceLock<Result<RealApiServer, String>> = OnceLock::new();

/// The shared server, started on first use. A server that cannot start fails the test: a
/// test skipped for a missing tool would hide exactly what it exists to check.
pub fn shared() -> &'static RealApiServer {
    match SERVER.get_or_init(|| start(&[])) {
        Ok(s) => s,
        Err(e) => panic!("the real API server is not available: {e}"),
    }
}

/// A server of the calling test's own, started with extra kube-apiserver flags (for behaviour
/// that would disturb the shared one); it stops when the value is dropped.
pub fn private(apiserver_flags: &[&str]) -> RealApiServer {
    start(apiserver_flags).unwrap_or_else(|e| panic!("the real API server is not available: {e}"))
}

static NEXT_NS: AtomicU32 = AtomicU32::new(0);

impl RealApiServer {
    /// A client with `who`'s credentials, bound to the calling test's runtime.
    pub async fn client(&self, who: Who) -> kube::Client {
        kube::Client::try_from(self.config(who).await).expect("client")
    }

    /// `who`'s client configuration (server URL, CA, credentials).
    pub async fn config(&self, who: Who) -> kube::Config {
        let path = match who {
            Who::Admin => &self.info.admin,
            Who::Controller => &self.info.controller,
            Who::Gateway => &self.info.gateway,
        };
        let kc = Kubeconfig::read_from(path).expect("kube-testenv wrote a kubeconfig");
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig is usable")
    }

    /// A fresh namespace named after `prefix`, unique in this server's life.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id() % 10_000,
            NEXT_NS.fetch_add(1, Ordering::Relaxed)
        );
        let ns: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        }))
        .expect("namespace");
        Api::<Namespace>::all(self.client(Who::Admin).await)
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace created");
        name
    }
}

/// Creates every CRD of `crds/edgebind.dev.yaml` (once per server) and waits until each is
/// Established; returns what the server refused, by CRD name.
pub async fn install_crds(server: &RealApiServer) -> Vec<(String, String)> {
    static RESULT: tokio::sync::OnceCell<Vec<(String, String)>> =
        tokio::sync::OnceCell::const_new();
    RESULT.get_or_init(|| create_crds(server)).await.clone()
}

/// Creates every CRD on `server` (a private one: the shared server's go through
/// [`install_crds`]) and waits until each is Established; returns what the server refused.
pub async fn create_crds(server: &RealApiServer) -> Vec<(String, String)> {
    let client = server.client(Who::Admin).await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let text = std::fs::read_to_string(workspace_root().join("crds/edgebind.dev.yaml"))
        .expect("crds/edgebind.dev.yaml");
    let mut refused = Vec::new();
    let mut names = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc).expect("a CRD");
        let name = crd.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => names.push(name),
            Err(kube::Error::Api(e)) if e.code == 409 => names.push(name),
            Err(e) => refused.push((name, e.to_string())),
        }
    }
    for name in names {
        wait_established(&api, &name).await;
    }
    refused
}

async fn wait_established(api: &Api<CustomResourceDefinition>, name: &str) {
    for _ in 0..200 {
        if let Ok(c) = api.get(name).await
            && c.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("CRD {name} never became Established");
}
