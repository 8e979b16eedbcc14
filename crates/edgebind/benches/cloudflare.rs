//! Cloudflare benchmark: what publishing N EdgeBindings at once costs in Cloudflare API calls
//! and time, against one account's request budget and the token's rate limit.
//!
//! The real controller (in this process, on the fake Kubernetes API server) publishes N
//! EdgeBindings created at once, each its own Worker script `b{i}` and route
//! `b{i}.example.com/*`, through the Cloudflare simulator. By default the budget is the
//! largest the CRD admits against Cloudflare's own limit (3 req/s with a burst of 200: at most
//! 1,100 requests in any 5 minutes, under the simulator's 1,200 per 5 minutes per token); the
//! fake API server refuses a budget above that limit as a real one does. Every request
//! reaching the simulator is time-stamped by a layer in front of it, so the busiest 1 s window
//! can be compared with the budget.
//!
//! Printed for the first publish: time until all Ready (with a signing key), Cloudflare calls
//! (total, per binding, reads / writes, by endpoint), the highest rate in any 1 s window vs
//! the budget, and 429s; then a converged resync window (writes there should be 0). With
//! `--all`, also: a policy change for every binding, and an on-demand key rotation of every
//! binding.
//!
//! Run:
//!
//! ```text
//! cargo bench --bench cloudflare -- [--bindings 500] [--rps 3] [--burst 200]
//!     [--sim-limit 1200] [--sim-window-seconds 300] [--latency-ms 20]
//!     [--resync-seconds 60] [--concurrency 16] [--propagation-ms 2000] [--all]
//! ```
//!
//! The README's figures: `--bindings 500 --rps 3 --burst 200 --sim-limit 1200
//! --sim-window-seconds 300`.
//!
//! A quick debug run: `cargo test --bench cloudflare -- --bindings 50`.
//! It prints figures; it asserts nothing (timing on shared machines is noise, not a verdict).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use edgebind::controller::{self, ControllerConfig, Readiness};
use edgebind::crd::{self, CloudflareAccount, EdgeBinding, IdentityIssuer, VolumeAccessPolicy};
use edgebind_sim::cloudflare::{
    CfSimConfig, CfStats, CloudflareSim, REALISTIC_ACCOUNT_ID, REALISTIC_TOKEN, REALISTIC_ZONE_ID,
    REALISTIC_ZONE_NAME,
};
use edgebind_sim::kube::FakeApiServer;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Namespace of the bindings and their policy.
const NS: &str = "bench";
/// Namespace of the controller (the API token Secret and the gateway key Secret).
const SYS: &str = "edgebind-system";

struct Opts {
    bindings: usize,
    rps: u32,
    burst: u32,
    sim_limit: u32,
    sim_window_seconds: u64,
    latency_ms: u64,
    resync_seconds: u64,
    concurrency: u16,
    propagation_ms: u64,
    all: bool,
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        bindings: 500,
        rps: 3,
        burst: 200,
        sim_limit: 1200,
        sim_window_seconds: 300,
        latency_ms: 20,
        resync_seconds: ControllerConfig::default().resync.as_secs(),
        concurrency: ControllerConfig::default().concurrency,
        propagation_ms: 2000,
        all: false,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--all" {
            o.all = true;
            i += 1;
            continue;
        }
        let val = args.get(i + 1).cloned().unwrap_or_default();
        let num = || -> anyhow::Result<u64> {
            val.parse()
                .map_err(|_| anyhow::anyhow!("{flag} needs a number, got {val:?}"))
        };
        match flag {
            "--bindings" => o.bindings = usize::try_from(num()?)?,
            "--rps" => o.rps = u32::try_from(num()?)?,
            "--burst" => o.burst = u32::try_from(num()?)?,
            "--sim-limit" => o.sim_limit = u32::try_from(num()?)?,
            "--sim-window-seconds" => o.sim_window_seconds = num()?,
            "--latency-ms" => o.latency_ms = num()?,
            "--resync-seconds" => o.resync_seconds = num()?,
            "--concurrency" => o.concurrency = u16::try_from(num()?)?,
            "--propagation-ms" => o.propagation_ms = num()?,
            _ => {
                // `cargo bench` passes `--bench`; anything unknown is skipped.
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o.bindings = o.bindings.max(1);
    o.rps = o.rps.max(1);
    o.burst = o.burst.max(1);
    o.sim_limit = o.sim_limit.max(1);
    o.sim_window_seconds = o.sim_window_seconds.max(1);
    o.resync_seconds = o.resync_seconds.max(1);
    o.concurrency = o.concurrency.max(1);
    Ok(o)
}

/// Arrival time and answer status of every request that reached the simulator.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<Vec<(Instant, u16)>>>);

impl Arrivals {
    fn push(&self, at: Instant, status: u16) {
        match self.0.lock() {
            Ok(mut g) => g.push((at, status)),
            Err(p) => p.into_inner().push((at, status)),
        }
    }
    fn take(&self) -> Vec<(Instant, u16)> {
        match self.0.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

/// The simulator on 127.0.0.1 behind a layer that time-stamps every request on arrival (so
/// before the simulator's own latency and rate limiter). Returns the API base URL.
async fn serve_sim(
    sim: &CloudflareSim,
    arrivals: Arrivals,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let app = sim.router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let arrivals = arrivals.clone();
            async move {
                let at = Instant::now();
                let resp = next.run(req).await;
                arrivals.push(at, resp.status().as_u16());
                resp
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/client/v4"), task))
}

/// The most requests that arrived within any 1 s window (sliding, not aligned to seconds).
fn busiest_second(arrivals: &[(Instant, u16)]) -> usize {
    let mut t: Vec<Instant> = arrivals.iter().map(|(at, _)| *at).collect();
    t.sort();
    let (mut lo, mut best) = (0, 0);
    for hi in 0..t.len() {
        while t[hi].duration_since(t[lo]) >= Duration::from_secs(1) {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

async fn create<K>(api: &Api<K>, v: Value) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v)?;
    api.create(&PostParams::default(), &obj).await?;
    Ok(())
}

fn binding_name(i: usize) -> String {
    format!("b{i}")
}

fn ready(b: &EdgeBinding) -> bool {
    b.status.as_ref().is_some_and(|s| {
        s.secret_hashes.contains_key("SIGNING_KEY")
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Polls the bindings until `done` holds for `n` of them; the time it took, or an error after
/// `limit` (the figures so far are still worth printing, so the caller decides).
async fn wait_all(
    api: &Api<EdgeBinding>,
    n: usize,
    limit: Duration,
    done: impl Fn(&EdgeBinding) -> bool,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await?;
        let k = list.items.iter().filter(|b| done(b)).count();
        if k >= n {
            return Ok(t.elapsed());
        }
        anyhow::ensure!(
            t.elapsed() < limit,
            "only {k} of {n} bindings got there in {:.0} s",
            limit.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Each binding's status field picked by `f`, by name.
async fn snapshot(
    api: &Api<EdgeBinding>,
    f: impl Fn(&EdgeBinding) -> Option<String>,
) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let list = api.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .map(|b| (b.metadata.name.clone().unwrap_or_default(), f(b)))
        .collect())
}

fn print_calls(o: &Opts, s: &CfStats, arrivals: &[(Instant, u16)], took: Duration) {
    let secs = took.as_secs_f64().max(0.001);
    let n = o.bindings as f64;
    let limit_rps = o.sim_limit as f64 / o.sim_window_seconds as f64;
    println!(
        "  Cloudflare calls: {} ({} reads, {} writes) in {:.1} s",
        s.total(),
        s.reads,
        s.writes,
        secs
    );
    println!(
        "  per binding: {:.2} calls ({:.2} reads, {:.2} writes)",
        s.total() as f64 / n,
        s.reads as f64 / n,
        s.writes as f64 / n
    );
    // The account's token bucket allows its burst plus `rps` per second; a short phase can run
    // above `rps` on the burst alone.
    let allowed = o.burst as f64 + o.rps as f64 * secs;
    println!(
        "  mean rate: {:.2} req/s ({:.0}% of the budget's {} req/s; {:.0}% of the {:.0} calls its bucket allowed, burst included), {:.0}% of the simulator's limit ({} per {} s)",
        s.total() as f64 / secs,
        100.0 * s.total() as f64 / (secs * o.rps as f64),
        o.rps,
        100.0 * s.total() as f64 / allowed,
        allowed,
        100.0 * s.total() as f64 / (secs * limit_rps),
        o.sim_limit,
        o.sim_window_seconds
    );
    println!(
        "  busiest 1 s window: {} requests (budget {} req/s with burst {}: at most {} in a second)",
        busiest_second(arrivals),
        o.rps,
        o.burst,
        o.rps + o.burst
    );
    let answered_429 = arrivals.iter().filter(|(_, st)| *st == 429).count();
    println!(
        "  answered 429: {answered_429} ({} by the simulator's rate limiter)",
        s.rate_limited
    );
    println!("  calls by endpoint:");
    for (k, v) in &s.by_endpoint {
        println!("    {v:>6}  {k}");
    }
    let errors: Vec<String> = s
        .by_status
        .iter()
        .filter(|(st, _)| **st >= 400)
        .map(|(st, c)| format!("{st}: {c}"))
        .collect();
    if !errors.is_empty() {
        println!("  error answers: {}", errors.join(", "));
    }
}

/// Stats and arrivals since the last reset, then reset both.
fn take(sim: &CloudflareSim, arrivals: &Arrivals) -> (CfStats, Vec<(Instant, u16)>) {
    let s = sim.stats();
    sim.reset_stats();
    (s, arrivals.take())
}

fn reset(sim: &CloudflareSim, arrivals: &Arrivals) {
    sim.reset_stats();
    arrivals.take();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = opts()?;
    let _ = rustls::crypto::ring::default_provider().install_default();

    let kube = FakeApiServer::start().await?;
    for c in crd::all() {
        kube.try_install_crd(&c)?;
    }
    let client = kube.client();
    let sim = CloudflareSim::new(CfSimConfig {
        rate_limit: Some((o.sim_limit, Duration::from_secs(o.sim_window_seconds))),
        latency: Duration::from_millis(o.latency_ms),
        ..CfSimConfig::realistic()
    });
    let arrivals = Arrivals::default();
    let (cf_url, cf_task) = serve_sim(&sim, arrivals.clone()).await?;

    for ns in [NS, SYS] {
        create(
            &Api::<Namespace>::all(client.clone()),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let token = base64::engine::general_purpose::STANDARD.encode(REALISTIC_TOKEN);
    create(
        &Api::<Secret>::namespaced(client.clone(), SYS),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cf-token", "namespace": SYS},
               "data": {"token": token}}),
    )
    .await?;
    create(
        &Api::<CloudflareAccount>::all(client.clone()),
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "CloudflareAccount", "metadata": {"name": "cf"},
               "spec": {"accountId": REALISTIC_ACCOUNT_ID, "apiUrl": cf_url, "timeoutSeconds": 10,
                        "apiToken": {"namespace": SYS, "name": "cf-token", "key": "token"},
                        "budget": {"requestsPerSecond": o.rps, "burst": o.burst}}}),
    )
    .await?;
    create(
        &Api::<IdentityIssuer>::all(client.clone()),
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer", "metadata": {"name": "idp"},
               "spec": {"issuer": "https://idp.example.com", "audiences": ["api://edgebind"], "algorithms": ["RS256"]}}),
    )
    .await?;
    let policies: Api<VolumeAccessPolicy> = Api::namespaced(client.clone(), NS);
    create(
        &policies,
        json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "VolumeAccessPolicy",
               "metadata": {"name": "readers", "namespace": NS},
               "spec": {"effect": "Allow", "subjects": [{"issuer": "idp", "groups": ["storage"]}], "actions": ["read"]}}),
    )
    .await?;

    let mut config = ControllerConfig {
        resync: Duration::from_secs(o.resync_seconds),
        concurrency: o.concurrency,
        ..ControllerConfig::default()
    };
    config.cloudflare.key_namespace = SYS.into();
    config.cloudflare.key_propagation = Duration::from_millis(o.propagation_ms);
    // Long enough that no retirement lands inside a measured window.
    config.cloudflare.key_overlap = Duration::from_secs(3600);
    let ctrl = {
        let client = client.clone();
        tokio::spawn(async move {
            controller::run(
                client,
                config,
                Readiness::default(),
                futures::future::pending(),
            )
            .await
        })
    };

    let accounts: Api<CloudflareAccount> = Api::all(client.clone());
    let t = Instant::now();
    loop {
        let a = accounts.get("cf").await?;
        if a.status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        }) {
            break;
        }
        anyhow::ensure!(!ctrl.is_finished(), "controller stopped");
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "CloudflareAccount never became Ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("edgebind Cloudflare benchmark");
    println!(
        "  bindings {}, account budget {} req/s (burst {}), simulator latency {} ms/call, simulator limit {} per {} s",
        o.bindings, o.rps, o.burst, o.latency_ms, o.sim_limit, o.sim_window_seconds
    );
    println!(
        "  resync {} s, concurrency {}, key propagation wait {} ms",
        o.resync_seconds, o.concurrency, o.propagation_ms
    );
    // Generous: every binding's first publish at the budget rate, plus the propagation wait.
    let limit = Duration::from_secs(120 + 30 * o.bindings as u64 / u64::from(o.rps))
        + Duration::from_millis(2 * o.propagation_ms);

    // 1. First publish.
    let bindings: Api<EdgeBinding> = Api::namespaced(client.clone(), NS);
    reset(&sim, &arrivals);
    let t0 = Instant::now();
    for i in 0..o.bindings {
        let name = binding_name(i);
        create(
            &bindings,
            json!({"apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeBinding",
                   "metadata": {"name": name, "namespace": NS},
                   "spec": {"accountRef": "cf", "zoneId": REALISTIC_ZONE_ID,
                            "routes": [format!("{name}.{REALISTIC_ZONE_NAME}/*")],
                            "scriptName": name, "gatewayUrl": "https://gw.example.com"}}),
        )
        .await?;
    }
    let res = wait_all(&bindings, o.bindings, limit, ready).await;
    let took = t0.elapsed();
    println!("\nfirst publish of {} bindings", o.bindings);
    match &res {
        Ok(_) => println!(
            "  all Ready with a signing key after {:.1} s",
            took.as_secs_f64()
        ),
        Err(e) => println!("  NOT converged: {e}"),
    }
    let (s, a) = take(&sim, &arrivals);
    print_calls(&o, &s, &a, took);
    println!(
        "  calls per binding on first publish: {:.2} (goal: at most 4)",
        s.total() as f64 / o.bindings as f64
    );
    res?;

    // 2. Converged resync: let requeues settle, then watch one and a half resync periods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    reset(&sim, &arrivals);
    let window = Duration::from_secs(o.resync_seconds) + Duration::from_secs(o.resync_seconds) / 2;
    tokio::time::sleep(window).await;
    let (s, a) = take(&sim, &arrivals);
    println!(
        "\nconverged resync ({:.0} s window, one resync period is {} s)",
        window.as_secs_f64(),
        o.resync_seconds
    );
    print_calls(&o, &s, &a, window);
    println!("  writes on a converged resync: {} (goal: 0)", s.writes);
    let periods = window.as_secs_f64() / o.resync_seconds as f64;
    let per_binding = s.total() as f64 / o.bindings as f64 / periods;
    println!("  calls per binding per resync: {per_binding:.2}");
    if s.total() as f64 >= 0.95 * o.rps as f64 * window.as_secs_f64() {
        // Resync reads were queued behind the budget, so fewer were made than wanted.
        println!(
            "  (the budget was saturated: this is a lower bound; use fewer bindings or a longer --resync-seconds)"
        );
    }
    if per_binding > 0.0 {
        let budget_max = o.rps as f64 * o.resync_seconds as f64 / per_binding;
        let cf_max = o.sim_limit as f64 / o.sim_window_seconds as f64 * o.resync_seconds as f64
            / per_binding;
        println!(
            "  bindings one account keeps converged at this resync, with nothing else to do: {budget_max:.0} (budget), {cf_max:.0} (the simulator's limit)"
        );
    }
    if !o.all {
        ctrl.abort();
        shutdown(cf_task, kube);
        return Ok(());
    }

    // 3. Policy change: every binding's POLICY_BUNDLE changes, nothing else should.
    let bundle = |b: &EdgeBinding| {
        b.status
            .as_ref()
            .and_then(|s| s.secret_hashes.get("POLICY_BUNDLE").cloned())
    };
    let before = snapshot(&bindings, bundle).await?;
    reset(&sim, &arrivals);
    let t0 = Instant::now();
    policies
        .patch(
            "readers",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"actions": ["read", "create"]}})),
        )
        .await?;
    let res = wait_all(&bindings, o.bindings, limit, |b| {
        let name = b.metadata.name.clone().unwrap_or_default();
        bundle(b).is_some() && before.get(&name).cloned().flatten() != bundle(b)
    })
    .await;
    let took = t0.elapsed();
    println!(
        "\npolicy change (recompiled bundle for {} bindings)",
        o.bindings
    );
    match &res {
        Ok(_) => println!(
            "  every binding's bundle updated after {:.1} s",
            took.as_secs_f64()
        ),
        Err(e) => println!("  NOT converged: {e}"),
    }
    let (s, a) = take(&sim, &arrivals);
    print_calls(&o, &s, &a, took);
    res?;

    // 4. On-demand key rotation of every binding.
    let key = |b: &EdgeBinding| b.status.as_ref().and_then(|s| s.current_key_id.clone());
    let before = snapshot(&bindings, key).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    reset(&sim, &arrivals);
    let t0 = Instant::now();
    for i in 0..o.bindings {
        bindings
            .patch(
                &binding_name(i),
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"edgebind.dev/rotate-key": "bench-1"}}}),
                ),
            )
            .await?;
    }
    let res = wait_all(&bindings, o.bindings, limit, |b| {
        let name = b.metadata.name.clone().unwrap_or_default();
        key(b).is_some() && before.get(&name).cloned().flatten() != key(b) && ready(b)
    })
    .await;
    let took = t0.elapsed();
    println!(
        "\nkey rotation on demand ({} bindings, includes the {} ms propagation wait)",
        o.bindings, o.propagation_ms
    );
    match &res {
        Ok(_) => println!(
            "  every Worker switched to its new key after {:.1} s",
            took.as_secs_f64()
        ),
        Err(e) => println!("  NOT converged: {e}"),
    }
    let (s, a) = take(&sim, &arrivals);
    print_calls(&o, &s, &a, took);
    res?;

    ctrl.abort();
    shutdown(cf_task, kube);
    Ok(())
}

fn shutdown(cf_task: tokio::task::JoinHandle<()>, kube: FakeApiServer) {
    cf_task.abort();
    kube.shutdown();
}
