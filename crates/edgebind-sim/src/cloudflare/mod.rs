//! A stateful Cloudflare API v4 simulator (the Workers subset edgebind uses): token verify,
//! module Worker upload, versions and deployments, write-only secrets, zone routes, with the
//! real envelope, error codes and quirks, a per-token rate limit, fault injection, call
//! statistics and exchange recording.
//!
//! Error answers (HTTP status / envelope code). From the reference: unknown or insufficient
//! token 403/10000, missing credentials 400/9106, expired or disabled token 401/9109, Worker
//! not found 404/10007, invalid Worker name 400/10016, no handlers 400/10068, upload
//! validation 400/10021, binding name missing 400/10052, binding not found 404/10056, secret
//! edit while the latest version is not deployed 400/10215, route pattern outside the zone
//! 400/10022, route for a missing Worker 400/10019, rate limit 429/10429 with `Retry-After`.
//! Not confirmed by the reference (chosen to match commonly reported answers): verify with an
//! unknown token 401/1000, malformed `Authorization` 400/6003 with 6111 in `error_chain`,
//! malformed path id or unknown path 400/7003, body not JSON 400/6007, duplicate route
//! pattern 409/10020, deployment validation and rollback-past-secret refusal 400/10021, and
//! fault-injected secret write contention 429/10429.

pub mod control;
mod dns;
mod envelope;
mod faults;
mod front;
mod model;
mod multipart;
mod observe;
mod ratelimit;
mod routes;
mod scripts;
mod secrets;
mod services;
mod tokens;
mod tunnels;
mod upload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::routing::get;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use faults::CfFaults;
pub use model::ModuleInfo;
pub use observe::{API_PREFIX, CfStats, Exchange, PATH_TEMPLATES, template_for};
pub use tokens::{SimToken, TokenStatus};

use envelope::{ApiResult, ok};
use model::{Route, SimState, Zone, binding_name, is_secret};
use tokens::TokenRecord;

/// Account id of [`CfSimConfig::realistic`].
pub const REALISTIC_ACCOUNT_ID: &str = "9a7806061c88ada191ed06f989cc3dac";
/// Zone id of [`CfSimConfig::realistic`]; its name is [`REALISTIC_ZONE_NAME`].
pub const REALISTIC_ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
pub const REALISTIC_ZONE_NAME: &str = "example.com";
/// The one valid API token of [`CfSimConfig::realistic`]. For tests only; it grants nothing
/// outside the simulator.
pub const REALISTIC_TOKEN: &str = "test-token-edgebind-sim-0123456789abcdef";

/// Locks a mutex, tolerating poisoning (the state stays usable after a panicking test).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn query_map(q: Option<String>) -> HashMap<String, String> {
    q.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

pub(crate) fn query_flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

/// What the simulator starts with.
#[derive(Debug, Clone)]
pub struct CfSimConfig {
    /// Accounts (id, tokens belonging to it).
    pub accounts: Vec<(String, Vec<SimToken>)>,
    /// Zones (zone id, zone name, owning account id).
    pub zones: Vec<(String, String, String)>,
    /// Requests per window per token; `None` = unlimited.
    pub rate_limit: Option<(u32, Duration)>,
    /// Latency added to every request.
    pub latency: Duration,
}

impl CfSimConfig {
    /// One account ([`REALISTIC_ACCOUNT_ID`]), one zone `example.com` ([`REALISTIC_ZONE_ID`]),
    /// one active user token ([`REALISTIC_TOKEN`]), the real 1,200 requests / 5 minutes limit
    /// and no latency.
    pub fn realistic() -> Self {
        Self {
            accounts: vec![(
                REALISTIC_ACCOUNT_ID.to_string(),
                vec![SimToken::active(REALISTIC_TOKEN)],
            )],
            zones: vec![(
                REALISTIC_ZONE_ID.to_string(),
                REALISTIC_ZONE_NAME.to_string(),
                REALISTIC_ACCOUNT_ID.to_string(),
            )],
            rate_limit: Some((1200, Duration::from_secs(300))),
            latency: Duration::ZERO,
        }
    }
}

pub(crate) struct Inner {
    pub state: Mutex<SimState>,
    pub faults: Arc<Mutex<faults::FaultState>>,
    pub stats: Mutex<CfStats>,
    pub recording: AtomicBool,
    pub exchanges: Mutex<Vec<Exchange>>,
    pub limiter: Mutex<ratelimit::RateLimiter>,
    pub latency: Duration,
    /// Cancelled on shutdown, to release hanging requests.
    pub shutdown: CancellationToken,
}

/// A Worker as the simulator holds it (the version serving traffic). Secret values are not
/// included; see [`CloudflareSim::secret_value_for_test`].
#[derive(Debug, Clone)]
pub struct ScriptView {
    pub name: String,
    pub etag: String,
    pub main_module: String,
    pub modules: Vec<ModuleInfo>,
    /// Bindings with secret values removed.
    pub bindings: Vec<Value>,
    pub compatibility_date: Option<String>,
    pub compatibility_flags: Vec<String>,
    pub tags: Vec<String>,
    pub handlers: Vec<String>,
    /// Id of the latest uploaded version.
    pub latest_version_id: String,
    /// Versions of the current deployment with their percentages.
    pub deployed: Vec<(String, f64)>,
    pub version_count: usize,
    pub deployment_count: usize,
    /// The script's `observability` setting (Workers Logs), if one was uploaded.
    pub observability: Option<Value>,
}

/// A route as the simulator holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteView {
    pub id: String,
    pub pattern: String,
    pub script: Option<String>,
}

/// A tunnel as the simulator holds it.
#[derive(Debug, Clone)]
pub struct TunnelView {
    pub id: String,
    pub name: String,
    pub deleted: bool,
    pub config: Value,
    pub connectors: usize,
}

/// A Workers VPC service as the simulator holds it.
#[derive(Debug, Clone)]
pub struct VpcServiceView {
    pub id: String,
    /// The entry as the API shows it (`service_id`, `type`, `name`, `host`, ports, ...).
    pub json: Value,
    pub tunnel_id: Option<String>,
}

/// A DNS record as the simulator holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsView {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub content: String,
    pub proxied: bool,
    pub comment: Option<String>,
}

/// The simulator. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct CloudflareSim {
    pub(crate) inner: Arc<Inner>,
}

/// A simulator serving on a local port. Dropping it stops the server.
pub struct RunningCfSim {
    pub addr: SocketAddr,
    pub sim: CloudflareSim,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningCfSim {
    /// Base URL of the API, `http://127.0.0.1:PORT/client/v4`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, API_PREFIX)
    }
    /// Stops the server and waits for it (hanging requests are released first).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        self.sim.inner.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for RunningCfSim {
    fn drop(&mut self) {
        self.stop.cancel();
        self.sim.inner.shutdown.cancel();
    }
}

impl CloudflareSim {
    pub fn new(cfg: CfSimConfig) -> Self {
        let mut state = SimState::default();
        for (account, toks) in &cfg.accounts {
            state.accounts.entry(account.clone()).or_default();
            for t in toks {
                state.tokens.push(TokenRecord {
                    account: account.clone(),
                    token: t.clone(),
                });
            }
        }
        for (id, name, account) in &cfg.zones {
            state.accounts.entry(account.clone()).or_default();
            state.zones.insert(
                id.clone(),
                Zone {
                    name: name.clone(),
                    account: account.clone(),
                    routes: Vec::new(),
                    dns: Vec::new(),
                },
            );
        }
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                faults: Arc::new(Mutex::new(faults::FaultState::default())),
                stats: Mutex::new(CfStats::default()),
                recording: AtomicBool::new(false),
                exchanges: Mutex::new(Vec::new()),
                limiter: Mutex::new(ratelimit::RateLimiter::new(cfg.rate_limit)),
                latency: cfg.latency,
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The HTTP API, rooted at `/client/v4`.
    pub fn router(&self) -> Router {
        const A: &str = "/client/v4/accounts/{account_id}/workers/scripts";
        Router::new()
            .route("/client/v4/user/tokens/verify", get(verify_user_token))
            .route(
                "/client/v4/accounts/{account_id}/tokens/verify",
                get(verify_account_token),
            )
            .route(A, get(scripts::list_scripts))
            .route(
                &format!("{A}/{{script_name}}"),
                get(scripts::download_script)
                    .put(scripts::upload_script)
                    .delete(scripts::delete_script),
            )
            .route(
                &format!("{A}/{{script_name}}/versions"),
                get(scripts::list_versions).post(scripts::upload_version),
            )
            .route(
                &format!("{A}/{{script_name}}/versions/{{version_id}}"),
                get(scripts::get_version),
            )
            .route(
                &format!("{A}/{{script_name}}/deployments"),
                get(scripts::list_deployments).post(scripts::create_deployment),
            )
            .route(
                &format!("{A}/{{script_name}}/secrets"),
                get(secrets::list_secrets).put(secrets::put_secret),
            )
            .route(
                &format!("{A}/{{script_name}}/secrets/{{secret_name}}"),
                get(secrets::get_secret).delete(secrets::delete_secret),
            )
            .route(
                &format!("{A}/{{script_name}}/secrets-bulk"),
                axum::routing::patch(secrets::patch_secrets),
            )
            .route(
                "/client/v4/zones/{zone_id}/workers/routes",
                get(routes::list_routes).post(routes::create_route),
            )
            .route(
                "/client/v4/zones/{zone_id}/workers/routes/{route_id}",
                get(routes::get_route)
                    .put(routes::update_route)
                    .delete(routes::delete_route),
            )
            .route(
                "/client/v4/accounts/{account_id}/cfd_tunnel",
                get(tunnels::list_tunnels).post(tunnels::create_tunnel),
            )
            .route(
                "/client/v4/accounts/{account_id}/cfd_tunnel/{tunnel_id}",
                get(tunnels::get_tunnel).delete(tunnels::delete_tunnel),
            )
            .route(
                "/client/v4/accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations",
                get(tunnels::get_config).put(tunnels::put_config),
            )
            .route(
                "/client/v4/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections",
                get(tunnels::list_connections),
            )
            .route(
                "/client/v4/accounts/{account_id}/cfd_tunnel/{tunnel_id}/token",
                get(tunnels::get_token),
            )
            .route(
                "/client/v4/zones/{zone_id}/dns_records",
                get(dns::list_records).post(dns::create_record),
            )
            .route(
                "/client/v4/zones/{zone_id}/dns_records/{dns_record_id}",
                axum::routing::delete(dns::delete_record),
            )
            .route(
                "/client/v4/accounts/{account_id}/connectivity/directory/services",
                get(services::list_services).post(services::create_service),
            )
            .route(
                "/client/v4/accounts/{account_id}/connectivity/directory/services/{service_id}",
                get(services::get_service)
                    .put(services::update_service)
                    .delete(services::delete_service),
            )
            .method_not_allowed_fallback(front::method_not_allowed)
            .fallback(front::no_route)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                front::front,
            ))
            .with_state(self.clone())
    }

    /// Serves on `127.0.0.1` on a free port.
    pub async fn start(cfg: CfSimConfig) -> anyhow::Result<RunningCfSim> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), cfg).await
    }

    /// Serves on `listen`.
    pub async fn start_on(listen: SocketAddr, cfg: CfSimConfig) -> anyhow::Result<RunningCfSim> {
        let sim = Self::new(cfg);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding the Cloudflare simulator to {listen}"))?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let router = sim.router();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "cloudflare simulator server ended with an error");
            }
        });
        Ok(RunningCfSim {
            addr,
            sim,
            stop,
            task: Some(task),
        })
    }

    /// Fault injection handle.
    pub fn faults(&self) -> CfFaults {
        CfFaults {
            state: self.inner.faults.clone(),
        }
    }

    /// Snapshot of the call statistics.
    pub fn stats(&self) -> CfStats {
        lock(&self.inner.stats).clone()
    }

    pub fn reset_stats(&self) {
        *lock(&self.inner.stats) = CfStats::default();
    }

    /// Turns exchange recording on or off (off by default).
    pub fn record_exchanges(&self, on: bool) {
        self.inner.recording.store(on, Ordering::SeqCst);
    }

    pub(crate) fn recording(&self) -> bool {
        self.inner.recording.load(Ordering::SeqCst)
    }

    /// Exchanges recorded so far, oldest first.
    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.inner.exchanges).clone()
    }

    pub fn clear_exchanges(&self) {
        lock(&self.inner.exchanges).clear();
    }

    /// Changes the per-token rate limit (`None` = unlimited); counting restarts.
    pub fn set_rate_limit(&self, limit: Option<(u32, Duration)>) {
        *lock(&self.inner.limiter) = ratelimit::RateLimiter::new(limit);
    }

    /// The Worker `name` of `account`, as it serves traffic now.
    pub fn script(&self, account: &str, name: &str) -> Option<ScriptView> {
        let st = lock(&self.inner.state);
        let s = st.accounts.get(account)?.get(name)?;
        let v = s.active_version();
        Some(ScriptView {
            name: s.name.clone(),
            etag: v.etag.clone(),
            main_module: v.main_module.clone(),
            modules: v.modules.clone(),
            bindings: v.public_bindings(),
            compatibility_date: v.compatibility_date.clone(),
            compatibility_flags: v.compatibility_flags.clone(),
            tags: s.tags.clone(),
            handlers: v.handlers.clone(),
            latest_version_id: s.latest().id.clone(),
            deployed: s
                .deployments
                .last()
                .map(|d| d.versions.clone())
                .unwrap_or_default(),
            version_count: s.versions.len(),
            deployment_count: s.deployments.len(),
            observability: s.observability.clone(),
        })
    }

    /// Routes of `zone`, in creation order.
    pub fn routes(&self, zone: &str) -> Vec<RouteView> {
        lock(&self.inner.state)
            .zones
            .get(zone)
            .map(|z| {
                z.routes
                    .iter()
                    .map(|r| RouteView {
                        id: r.id.clone(),
                        pattern: r.pattern.clone(),
                        script: r.script.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Names of the secret bindings of the latest version of a Worker, sorted.
    pub fn secret_names(&self, account: &str, script: &str) -> Vec<String> {
        let st = lock(&self.inner.state);
        let mut names: Vec<String> = st
            .accounts
            .get(account)
            .and_then(|a| a.get(script))
            .map(|s| {
                s.latest()
                    .secret_bindings()
                    .filter_map(|b| binding_name(b).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Tests only: the value of a `secret_text` binding of the serving version, so an
    /// end-to-end test can hand the Worker runtime its secrets. Never expose this over HTTP.
    pub fn secret_value_for_test(&self, account: &str, script: &str, name: &str) -> Option<String> {
        let st = lock(&self.inner.state);
        let s = st.accounts.get(account)?.get(script)?;
        s.active_version()
            .bindings
            .iter()
            .find(|b| is_secret(b) && binding_name(b) == Some(name))
            .and_then(|b| b.get("text"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Adds a route someone else created (no validation), to test ownership conflicts.
    /// Returns its id, or `None` if the zone is unknown.
    pub fn add_foreign_route(
        &self,
        zone: &str,
        pattern: &str,
        script: Option<&str>,
    ) -> Option<String> {
        let mut st = lock(&self.inner.state);
        let z = st.zones.get_mut(zone)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        z.routes.push(Route {
            id: id.clone(),
            pattern: pattern.to_string(),
            script: script.map(str::to_string),
        });
        Some(id)
    }

    /// Tunnels of `account`, deleted ones included.
    pub fn tunnels(&self, account: &str) -> Vec<TunnelView> {
        lock(&self.inner.state)
            .tunnels
            .values()
            .filter(|t| t.account == account)
            .map(|t| TunnelView {
                id: t.id.clone(),
                name: t.name.clone(),
                deleted: t.deleted_at.is_some(),
                config: t.config.clone(),
                connectors: t.connectors.len(),
            })
            .collect()
    }

    /// DNS records of `zone` as (id, type, full name, content, proxied, comment).
    pub fn dns_records(&self, zone: &str) -> Vec<DnsView> {
        lock(&self.inner.state)
            .zones
            .get(zone)
            .map(|z| {
                z.dns
                    .iter()
                    .map(|r| DnsView {
                        id: r.id.clone(),
                        kind: r.kind.clone(),
                        name: r.name.clone(),
                        content: r.content.clone(),
                        proxied: r.proxied,
                        comment: r.comment.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds a DNS record someone else created (no validation), to test ownership.
    pub fn add_foreign_dns_record(&self, zone: &str, kind: &str, name: &str, content: &str) {
        let mut st = lock(&self.inner.state);
        if let Some(z) = st.zones.get_mut(zone) {
            z.dns.push(dns::DnsRecord {
                id: uuid::Uuid::new_v4().simple().to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
                content: content.to_string(),
                proxied: false,
                ttl: 1,
                comment: None,
                created_on: model::now_rfc3339(),
            });
        }
    }

    /// Plays cloudflared starting with `token` (what `tunnel run --token` presents): the token
    /// must name a live tunnel of its account with the right secret. Returns the connector id.
    pub fn connect_tunnel(&self, token: &str) -> Result<String, String> {
        let (account, id, secret) =
            tunnels::decode_token(token).ok_or("the tunnel token is not a token")?;
        let mut st = lock(&self.inner.state);
        let t = st
            .tunnels
            .get_mut(&id)
            .filter(|t| t.deleted_at.is_none() && t.account == account)
            .ok_or("no such tunnel")?;
        if t.secret != secret {
            return Err("the tunnel secret does not match".into());
        }
        let client = uuid::Uuid::new_v4().to_string();
        t.connectors.push((client.clone(), model::now_rfc3339()));
        t.ever_connected = true;
        Ok(client)
    }

    /// A connector goes away (cloudflared stopped).
    pub fn disconnect_tunnel(&self, connector: &str) {
        for t in lock(&self.inner.state).tunnels.values_mut() {
            t.connectors.retain(|(c, _)| c != connector);
        }
    }

    /// What the edge does with a request for `https://{host}{path}`: the zone's proxied CNAME
    /// for `host` to `<tunnel id>.cfargotunnel.com`, a tunnel with a connector, the first
    /// ingress rule that matches. `Err` says where the path breaks (as Cloudflare's 1016/1033
    /// error pages would).
    pub fn resolve_tunnel_origin(&self, host: &str, path: &str) -> Result<String, String> {
        let host = host.to_ascii_lowercase();
        let st = lock(&self.inner.state);
        let rec = st
            .zones
            .values()
            .flat_map(|z| z.dns.iter())
            .find(|r| r.name == host && r.kind == "CNAME")
            .ok_or_else(|| format!("no CNAME for {host} (error 1016: origin DNS error)"))?;
        if !rec.proxied {
            return Err(format!(
                "the CNAME for {host} is not proxied: {} does not resolve publicly",
                rec.content
            ));
        }
        let id = rec
            .content
            .strip_suffix(".cfargotunnel.com")
            .ok_or_else(|| format!("{host} does not point at a tunnel"))?;
        let t = st
            .tunnels
            .get(id)
            .filter(|t| t.deleted_at.is_none())
            .ok_or_else(|| format!("tunnel {id} does not exist (error 1033)"))?;
        if t.connectors.is_empty() {
            return Err(format!("tunnel {id} has no connector (error 1033)"));
        }
        tunnels::match_ingress(&t.config, &host, path)
            .ok_or_else(|| format!("tunnel {id} has no ingress rule for {host}"))
    }

    /// Workers VPC services of `account`.
    pub fn vpc_services(&self, account: &str) -> Vec<VpcServiceView> {
        lock(&self.inner.state)
            .vpc_services
            .values()
            .filter(|s| s.account == account)
            .map(|s| VpcServiceView {
                id: s.id.clone(),
                json: s.json(),
                tunnel_id: s.tunnel_id().map(str::to_string),
            })
            .collect()
    }

    /// Adds a VPC service someone else created (no validation), to test ownership. Returns
    /// its id.
    pub fn add_foreign_vpc_service(&self, account: &str, config: Value) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let now = model::now_rfc3339();
        let config = match config {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        lock(&self.inner.state).vpc_services.insert(
            id.clone(),
            services::VpcService {
                id: id.clone(),
                account: account.to_string(),
                config,
                created_at: now.clone(),
                updated_at: now,
            },
        );
        id
    }

    /// Plays an account whose plan has (or lacks) Workers VPC: without it every directory
    /// call is refused with 403.
    pub fn set_workers_vpc(&self, account: &str, enabled: bool) {
        let mut st = lock(&self.inner.state);
        if enabled {
            st.vpc_denied.remove(account);
        } else {
            st.vpc_denied.insert(account.to_string());
        }
    }

    /// What a Worker's `env.<binding>.fetch(url)` reaches: the `vpc_service` binding `binding`
    /// of the serving version of `script`, its service, a live tunnel with a connector, and
    /// the service's host and port for the URL's scheme (the URL's own host and port only
    /// set the Host header: requests always go to the configured service). `Err` says where
    /// the path breaks.
    pub fn resolve_vpc_origin(
        &self,
        account: &str,
        script: &str,
        binding: &str,
        scheme: &str,
    ) -> Result<String, String> {
        let st = lock(&self.inner.state);
        let s = st
            .accounts
            .get(account)
            .and_then(|a| a.get(script))
            .ok_or_else(|| format!("no Worker {script}"))?;
        let b = s
            .active_version()
            .bindings
            .iter()
            .find(|b| {
                binding_name(b) == Some(binding)
                    && b.get("type").and_then(Value::as_str) == Some("vpc_service")
            })
            .ok_or_else(|| format!("Worker {script} has no vpc_service binding {binding}"))?;
        let id = b.get("service_id").and_then(Value::as_str).unwrap_or("");
        let svc = st
            .vpc_services
            .get(id)
            .filter(|v| v.account == account)
            .ok_or_else(|| format!("VPC service {id} does not exist"))?;
        let tunnel = svc.tunnel_id().unwrap_or("");
        let t = st
            .tunnels
            .get(tunnel)
            .filter(|t| t.deleted_at.is_none())
            .ok_or_else(|| format!("tunnel {tunnel} of VPC service {id} does not exist"))?;
        if t.connectors.is_empty() {
            return Err(format!("tunnel {tunnel} has no connector"));
        }
        services::origin(svc, scheme).ok_or_else(|| format!("VPC service {id} has no host"))
    }

    /// Adds a token to `account` (the account is created if new).
    pub fn add_token(&self, account: &str, token: SimToken) {
        let mut st = lock(&self.inner.state);
        st.accounts.entry(account.to_string()).or_default();
        st.tokens.push(TokenRecord {
            account: account.to_string(),
            token,
        });
    }

    /// Marks the token with this bearer value expired now. Returns whether it was known.
    pub fn expire_token(&self, value: &str) -> bool {
        self.edit_token(value, |t| {
            t.status = TokenStatus::Expired;
            t.expires_on = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1));
        })
    }

    /// Marks the token with this bearer value disabled. Returns whether it was known.
    pub fn disable_token(&self, value: &str) -> bool {
        self.edit_token(value, |t| t.status = TokenStatus::Disabled)
    }

    fn edit_token(&self, value: &str, f: impl FnOnce(&mut SimToken)) -> bool {
        let mut st = lock(&self.inner.state);
        match st.tokens.iter_mut().find(|t| t.token.value == value) {
            Some(rec) => {
                f(&mut rec.token);
                true
            }
            None => false,
        }
    }
}

fn verify_result(rec: &TokenRecord) -> Value {
    let t = &rec.token;
    let mut r = json!({
        "id": t.id,
        "status": t.effective_status(jiff::Timestamp::now()).as_str(),
    });
    if let Some(e) = t.expires_on {
        r["expires_on"] = json!(e.to_string());
    }
    if let Some(nb) = t.not_before {
        r["not_before"] = json!(nb.to_string());
    }
    r
}

/// `GET /user/tokens/verify`: user tokens only.
async fn verify_user_token(Extension(front::Authed(rec)): Extension<front::Authed>) -> ApiResult {
    if rec.token.account_owned {
        return Err(tokens::invalid_api_token());
    }
    Ok(ok(verify_result(&rec)))
}

/// `GET /accounts/{a}/tokens/verify`: tokens owned by that account only.
async fn verify_account_token(
    State(_sim): State<CloudflareSim>,
    Path(account): Path<String>,
    Extension(front::Authed(rec)): Extension<front::Authed>,
) -> ApiResult {
    if !rec.token.account_owned || rec.account != account {
        return Err(tokens::invalid_api_token());
    }
    Ok(ok(verify_result(&rec)))
}

/// Runs the simulator on `listen` until Ctrl-C (for `edgebind simulate cloudflare`).
pub async fn run_standalone(listen: SocketAddr, cfg: CfSimConfig) -> anyhow::Result<()> {
    let sim = CloudflareSim::new(cfg);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the Cloudflare simulator to {listen}"))?;
    let addr = listener.local_addr()?;
    // The API plus what tests need of the rest of Cloudflare (cloudflared, the edge, the runtime).
    let router = sim.router().merge(control::router(sim.clone()));
    tracing::info!(url = %format!("http://{addr}/client/v4"), "Cloudflare API simulator listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving the Cloudflare simulator")
}
