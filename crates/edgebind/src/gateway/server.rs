//! `edgebind gateway`: CLI arguments, the reloader of keys and policies, and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

use super::api::{BundleStore, EdgeLimits, GatewayState, admin_router, api_router};
use super::audit::AuditSink;
use super::backend::{KUBE_TIMEOUT, KubeVolumeBackend, WatchCache};
use super::compile::compile_bundle;
use super::events::EventSink;
use super::keys::{KeySet, KeyStore};
use super::policy::{Bundle, RateLimit};
use super::replay::LeaseLedger;
use super::token::{TrustedIssuer, trusted_issuers};
use crate::crd::{IdentityIssuer, VolumeAccessPolicy};
use crate::listener::Deadlines;

/// Arguments of `edgebind gateway`.
#[derive(clap::Args, Debug, Clone)]
pub struct GatewayArgs {
    /// Address of the API (`/api/v1/...`), the only door the Worker talks to.
    #[arg(long, env = "EDGEBIND_GATEWAY_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of /livez, /readyz and /metrics (kept off the API listener).
    #[arg(long, env = "EDGEBIND_ADMIN_ADDR", default_value = "0.0.0.0:8081")]
    pub admin_addr: SocketAddr,
    /// Namespace of the Secret holding the trusted edge public keys: the gateway's own.
    #[arg(long, env = "POD_NAMESPACE", default_value = crate::defaults::NAMESPACE)]
    pub keys_namespace: String,
    /// Name of that Secret (entries `<keyid>.pub`); the controller maintains it.
    #[arg(
        long,
        env = "EDGEBIND_GATEWAY_KEYS_SECRET",
        default_value = crate::defaults::GATEWAY_KEYS_SECRET
    )]
    pub keys_secret: String,
    /// LinstorBackend of volumes created at the edge through a binding without
    /// `spec.volumeDefaults`, or with a key published before keys named their binding. Bindings
    /// with volume defaults name their own.
    #[arg(long, env = "EDGEBIND_GATEWAY_BACKEND", default_value = "default")]
    pub backend_ref: String,
    /// How often keys and policies are re-read, seconds.
    #[arg(long, default_value_t = 10)]
    pub reload_seconds: u64,
    /// Requests per minute one edge key may send, whatever they are; above it, 429.
    #[arg(long, env = "EDGEBIND_GATEWAY_KEY_REQUESTS_PER_MINUTE", default_value_t = 12_000, value_parser = clap::value_parser!(u32).range(1..=6_000_000))]
    pub key_requests_per_minute: u32,
    /// Burst of one edge key above its rate.
    #[arg(long, env = "EDGEBIND_GATEWAY_KEY_BURST", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub key_burst: u32,
    /// `can-i` questions and volume listings per minute for one identity.
    #[arg(long, env = "EDGEBIND_GATEWAY_IDENTITY_QUERIES_PER_MINUTE", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=6_000_000))]
    pub identity_queries_per_minute: u32,
    /// Burst of one identity's `can-i` questions and listings.
    #[arg(long, env = "EDGEBIND_GATEWAY_IDENTITY_QUERY_BURST", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub identity_query_burst: u32,
}

impl GatewayArgs {
    /// The limits the flags set.
    pub fn limits(&self) -> EdgeLimits {
        EdgeLimits {
            per_key: RateLimit {
                requests_per_minute: self.key_requests_per_minute,
                burst: Some(self.key_burst),
            },
            identity_queries: RateLimit {
                requests_per_minute: self.identity_queries_per_minute,
                burst: Some(self.identity_query_burst),
            },
        }
    }
}

async fn with_timeout<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(KUBE_TIMEOUT, f).await??)
}

/// Reads the key Secret. A missing Secret is an empty set (nothing is trusted: fail closed).
pub async fn load_keys(client: &kube::Client, ns: &str, name: &str) -> anyhow::Result<KeySet> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = with_timeout(api.get_opt(name)).await?;
    let data = secret.and_then(|s| s.data).unwrap_or_default();
    let (set, problems) =
        KeySet::from_secret_data(data.iter().map(|(k, v)| (k.as_str(), v.0.as_slice())));
    for p in problems {
        tracing::warn!(entry = %p, "edge key entry skipped");
    }
    Ok(set)
}

/// Lists the policy resources and compiles them: the bundle, and the issuers with whether the
/// gateway verifies their tokens.
pub async fn load_bundle(client: &kube::Client) -> anyhow::Result<(Bundle, Vec<TrustedIssuer>)> {
    let issuers: Api<IdentityIssuer> = Api::all(client.clone());
    let policies: Api<VolumeAccessPolicy> = Api::all(client.clone());
    let is = with_timeout(issuers.list(&ListParams::default())).await?;
    let ps = with_timeout(policies.list(&ListParams::default())).await?;
    let compiled = compile_bundle(&is.items, &ps.items);
    compiled.bundle.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok((compiled.bundle, trusted_issuers(&is.items)))
}

/// Re-reads keys and policies forever. A failed read keeps the previous state (and is logged);
/// readiness waits for the first success of both.
async fn reload_loop(
    client: kube::Client,
    args: GatewayArgs,
    state: Arc<GatewayState>,
    caches_synced: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut keys_ok = false;
    let mut bundle_ok = false;
    let mut tick = tokio::time::interval(Duration::from_secs(args.reload_seconds.max(1)));
    loop {
        tick.tick().await;
        match load_keys(&client, &args.keys_namespace, &args.keys_secret).await {
            Ok(set) => {
                let ids: Vec<String> = set.key_ids().map(str::to_string).collect();
                tracing::debug!(keys = ?ids, "edge keys loaded");
                state.keys.replace(set);
                keys_ok = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading edge keys failed; keeping the previous set")
            }
        }
        match load_bundle(&client).await {
            Ok((b, issuers)) => {
                if state.bundle.current().revision != b.revision {
                    tracing::info!(revision = %b.revision, "policy bundle loaded");
                }
                state.bundle.replace(b);
                state.issuers.replace(issuers);
                bundle_ok = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading policies failed; keeping the previous bundle")
            }
        }
        let synced = caches_synced.load(Ordering::Relaxed);
        state
            .ready
            .store(keys_ok && bundle_ok && synced, Ordering::Relaxed);
    }
}

/// Runs the gateway until SIGTERM.
pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let mut kcfg = kube::Config::infer().await?;
    // Identifies the gateway's calls in the API server's audit log.
    kcfg.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("edgebind-gateway/", env!("CARGO_PKG_VERSION"))),
    ));
    serve(
        kube::Client::try_from(kcfg)?,
        args,
        crate::shutdown_signal(),
    )
    .await
}

/// The gateway with a given client until `shutdown` resolves (tests run it in-process).
pub async fn serve(
    client: kube::Client,
    args: GatewayArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let (cache, driver) = WatchCache::start(&client);
    let cache_task = tokio::spawn(driver);
    let caches_synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let (cache, flag) = (cache.clone(), caches_synced.clone());
        tokio::spawn(async move {
            cache.synced().await;
            flag.store(true, Ordering::Relaxed);
        });
    }
    let backend = Arc::new(
        KubeVolumeBackend::new(client.clone(), args.backend_ref.clone()).with_cache(cache),
    );
    let mut state = GatewayState::new(
        KeyStore::default(),
        BundleStore::new(Bundle::empty()),
        backend,
        AuditSink::stdout(),
    )
    .with_limits(args.limits());
    state.events = Some(EventSink::new(client.clone()));
    let ledger = Arc::new(LeaseLedger::new(client.clone(), &args.keys_namespace));
    state.ledger = ledger.clone();
    let state = Arc::new(state);
    let sweeper = tokio::spawn(sweep_loop(ledger));
    let reloader = tokio::spawn(reload_loop(
        client,
        args.clone(),
        state.clone(),
        caches_synced,
    ));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let admin = tokio::net::TcpListener::bind(args.admin_addr).await?;
    tracing::info!(addr = %args.listen, admin = %args.admin_addr, "edgebind gateway listening");
    let admin_task = tokio::spawn(crate::listener::serve(
        admin,
        admin_router(state.clone()),
        Deadlines::default(),
        shutdown.clone(),
    ));
    crate::listener::serve(listener, api_router(state), Deadlines::default(), shutdown).await?;
    admin_task.abort();
    cache_task.abort();
    reloader.abort();
    sweeper.abort();
    Ok(())
}

/// Deletes expired nonce records once a minute (every replica does; they share the work).
async fn sweep_loop(ledger: Arc<LeaseLedger>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = jiff::Timestamp::now().as_second();
        match tokio::time::timeout(KUBE_TIMEOUT * 4, ledger.sweep(now)).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(deleted = n, "expired nonce records swept"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping nonce records failed"),
            Err(_) => tracing::warn!("sweeping nonce records timed out"),
        }
    }
}
