//! Cloudflare benchmark: what publishing EdgeBindings costs in Cloudflare API calls and time,
//! against one account's request budget.
//!
//! The real controller (in this process, so propagation waits can be shortened) publishes N
//! EdgeBindings, each its own Worker script and route, through the Cloudflare simulator (the
//! real 1,200 requests / 5 minutes per-token limit, a per-call latency) with the fake
//! Kubernetes API server. Phases:
//!
//! 1. first publish of every binding (upload, secrets, route, signing key): time to Ready,
//!    calls per binding, share of the account budget and of Cloudflare's per-token limit;
//! 2. converged resync over 1.5 resync periods: calls per binding per resync (writes should
//!    be 0), and the number of bindings one token can keep converged at that cost;
//! 3. a policy change (recompiled bundle for every binding): calls, and which writes;
//! 4. an on-demand signing key rotation of every binding: calls, and which writes.
//!
//! Run:
//!
//! ```text
//! cargo bench --bench cloudflare -- [--bindings 20] [--rps 2] [--burst 20]
//!     [--latency-ms 20] [--resync-seconds 60] [--concurrency 8] [--propagation-ms 2000]
//! ```
//!
//! A quick debug run: `cargo test --bench cloudflare -- --bindings 3 --resync-seconds 5`.
//! It prints figures; it asserts nothing (timing on shared machines is noise, not a verdict).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use edgebind::controller::{self, ControllerConfig, Readiness};
use edgebind::crd::{self, CloudflareAccount, EdgeBinding, IdentityIssuer, VolumeAccessPolicy};
use edgebind::sim::cloudflare::{
    CfSimConfig, CfStats, CloudflareSim, REALISTIC_ACCOUNT_ID, REALISTIC_TOKEN, REALISTIC_ZONE_ID,
    REALISTIC_ZONE_NAME,
};
use edgebind::sim::kube::FakeApiServer;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// Namespace of the bindings and their policy.
const NS: &str = "bench";
/// Namespace of the controller (the API token Secret and the gateway key Secret).
const SYS: &str = "edgebind-system";
/// Cloudflare's documented limit: requests per token per window.
const CF_LIMIT: (u32, u64) = (1200, 300);

struct Opts {
    bindings: usize,
    rps: u32,
    burst: u32,
    latency_ms: u64,
    resync_seconds: u64,
    concurrency: u16,
    propagation_ms: u64,
}

fn opts() -> Opts {
    let mut o = Opts {
        bindings: 20,
        rps: 2,
        burst: 20,
        latency_ms: 20,
        // The controller's default; 20 bindings then need about 1 req/s of the budget.
        resync_seconds: 60,
        concurrency: 8,
        propagation_ms: 2000,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let val = args.get(i + 1).cloned().unwrap_or_default();
        let num = |name: &str| -> u64 {
            val.parse()
                .unwrap_or_else(|_| panic!("{name} needs a number"))
        };
        match args[i].as_str() {
            "--bindings" => o.bindings = num("--bindings") as usize,
            "--rps" => o.rps = num("--rps") as u32,
            "--burst" => o.burst = num("--burst") as u32,
            "--latency-ms" => o.latency_ms = num("--latency-ms"),
            "--resync-seconds" => o.resync_seconds = num("--resync-seconds"),
            "--concurrency" => o.concurrency = num("--concurrency") as u16,
            "--propagation-ms" => o.propagation_ms = num("--propagation-ms"),
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
    o.resync_seconds = o.resync_seconds.max(1);
    o.concurrency = o.concurrency.max(1);
    o
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
    format!("edge-{i:04}")
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

fn print_calls(o: &Opts, s: &CfStats, took: Duration) {
    let secs = took.as_secs_f64().max(0.001);
    let n = o.bindings as f64;
    println!(
        "  Cloudflare calls: {} ({} reads, {} writes, {} answered 429) in {:.1} s",
        s.total(),
        s.reads,
        s.writes,
        s.rate_limited,
        secs
    );
    println!(
        "  per binding: {:.2} calls ({:.2} writes)",
        s.total() as f64 / n,
        s.writes as f64 / n
    );
    // The account's token bucket allows its burst plus `rps` per second; a short phase can run
    // above `rps` on the burst alone.
    let allowed = o.burst as f64 + o.rps as f64 * secs;
    println!(
        "  rate: {:.2} req/s ({:.0}% of the budget's {} req/s; {:.0}% of the {:.0} calls its bucket allowed, burst included), {:.0}% of Cloudflare's {} per {} s",
        s.total() as f64 / secs,
        100.0 * s.total() as f64 / (secs * o.rps as f64),
        o.rps,
        100.0 * s.total() as f64 / allowed,
        allowed,
        100.0 * s.total() as f64 / (secs * CF_LIMIT.0 as f64 / CF_LIMIT.1 as f64),
        CF_LIMIT.0,
        CF_LIMIT.1
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

/// Stats since the last reset, then reset.
fn take(sim: &CloudflareSim) -> CfStats {
    let s = sim.stats();
    sim.reset_stats();
    s
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = opts();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let kube = FakeApiServer::start().await?;
    for c in crd::all() {
        kube.try_install_crd(&c)?;
    }
    let client = kube.client();
    let cf = CloudflareSim::start(CfSimConfig {
        rate_limit: Some((CF_LIMIT.0, Duration::from_secs(CF_LIMIT.1))),
        latency: Duration::from_millis(o.latency_ms),
        ..CfSimConfig::realistic()
    })
    .await?;
    let sim = cf.sim.clone();

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
               "spec": {"accountId": REALISTIC_ACCOUNT_ID, "apiUrl": cf.url(), "timeoutSeconds": 10,
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
    config.cloudflare.gateway_keys_namespace = SYS.into();
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
        "  bindings {}, account budget {} req/s (burst {}), Cloudflare latency {} ms/call, limit {} per {} s",
        o.bindings, o.rps, o.burst, o.latency_ms, CF_LIMIT.0, CF_LIMIT.1
    );
    println!(
        "  resync {} s, concurrency {}, key propagation wait {} ms",
        o.resync_seconds, o.concurrency, o.propagation_ms
    );
    // Generous: every binding's first publish at the budget rate, plus the propagation wait.
    let limit = Duration::from_secs(120 + 30 * o.bindings as u64 / o.rps as u64)
        + Duration::from_millis(2 * o.propagation_ms);

    // 1. First publish.
    let bindings: Api<EdgeBinding> = Api::namespaced(client.clone(), NS);
    sim.reset_stats();
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
    print_calls(&o, &take(&sim), took);
    res?;

    // 2. Converged resync: let requeues settle, then watch one and a half resync periods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.reset_stats();
    let window = Duration::from_secs(o.resync_seconds) + Duration::from_secs(o.resync_seconds) / 2;
    tokio::time::sleep(window).await;
    let s = take(&sim);
    println!(
        "\nconverged resync ({:.0} s window, one resync period is {} s)",
        window.as_secs_f64(),
        o.resync_seconds
    );
    print_calls(&o, &s, window);
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
        let cf_max = CF_LIMIT.0 as f64 / CF_LIMIT.1 as f64 * o.resync_seconds as f64 / per_binding;
        println!(
            "  bindings one account keeps converged at this resync, with nothing else to do: {budget_max:.0} (budget), {cf_max:.0} (Cloudflare's limit)"
        );
    }

    // 3. Policy change: every binding's POLICY_BUNDLE changes, nothing else should.
    let bundle = |b: &EdgeBinding| {
        b.status
            .as_ref()
            .and_then(|s| s.secret_hashes.get("POLICY_BUNDLE").cloned())
    };
    let before = snapshot(&bindings, bundle).await?;
    sim.reset_stats();
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
    print_calls(&o, &take(&sim), took);
    res?;

    // 4. On-demand key rotation of every binding.
    let key = |b: &EdgeBinding| b.status.as_ref().and_then(|s| s.current_key_id.clone());
    let before = snapshot(&bindings, key).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.reset_stats();
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
    print_calls(&o, &take(&sim), took);
    res?;

    ctrl.abort();
    cf.shutdown().await;
    kube.shutdown();
    Ok(())
}
