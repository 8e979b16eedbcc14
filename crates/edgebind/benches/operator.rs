//! Operator benchmark: bulk create, budget use, converged resync, and controller memory.
//!
//! Three processes, so the controller's memory is its own: this program (driver + LINSTOR
//! simulator with a per-call latency), `edgebind simulate kubernetes` (the fake API server and
//! its object store), and `edgebind controller`.
//!
//!     cargo bench --bench operator -- [--volumes 1000] [--rss-volumes 10000] [--rps 50]
//!         [--latency-ms 2] [--resync-seconds 20] [--concurrency 16]
//!
//! Set EDGEBIND_BENCH_WRAPPER="heaptrack -o /tmp/ctrl" to profile the controller's heap.
//!
//! The controller and the fake API server run from the binary the container image ships: the
//! benchmark builds it with the Dockerfile's command (`cargo build --release --locked -p
//! edgebind --bin edgebind`), not the copy `cargo bench` builds for it, whose dependencies carry
//! the features the benchmarks' dev-dependencies add (regex's full DFA, among others).
//!
//! It prints figures; it asserts nothing (timing on shared machines is noise, not a verdict).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgebind::crd::{EdgeVolume, LinstorBackend};
use edgebind_sim::linstor::{LinstorSim, SimConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

struct Opts {
    volumes: usize,
    rss_volumes: usize,
    rps: u32,
    latency_ms: u64,
    resync_seconds: u64,
    concurrency: u16,
}

fn opts() -> Opts {
    let mut o = Opts {
        volumes: 1000,
        rss_volumes: 10_000,
        rps: 50,
        latency_ms: 2,
        resync_seconds: 20,
        concurrency: 16,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let val = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--volumes" => o.volumes = val.parse().expect("--volumes N"),
            "--rss-volumes" => o.rss_volumes = val.parse().expect("--rss-volumes N"),
            "--rps" => o.rps = val.parse().expect("--rps N"),
            "--latency-ms" => o.latency_ms = val.parse().expect("--latency-ms N"),
            "--resync-seconds" => o.resync_seconds = val.parse().expect("--resync-seconds N"),
            "--concurrency" => o.concurrency = val.parse().expect("--concurrency N"),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// The Dockerfile's build command, run from the workspace root.
const SHIPPED_BUILD: [&str; 7] = [
    "build",
    "--release",
    "--locked",
    "-p",
    "edgebind",
    "--bin",
    "edgebind",
];

/// Builds the shipped binary (a no-op when it is up to date) and returns its path, as cargo
/// reports it.
fn shipped_binary() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(SHIPPED_BUILD)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "cargo {}", SHIPPED_BUILD.join(" "));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "edgebind")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow::anyhow!("cargo reported no edgebind executable"))
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn create_volumes(api: &Api<EdgeVolume>, from: usize, to: usize) {
    futures::stream::iter(from..to)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                let v: EdgeVolume = serde_json::from_value(json!({
                    "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeVolume",
                    "metadata": {"name": format!("vol-{i:05}"), "namespace": "bench"},
                    "spec": {"backendRef": "bench", "size": "32Mi", "placement": {"placeCount": 2}}
                }))
                .expect("fixture");
                api.create(&PostParams::default(), &v)
                    .await
                    .expect("create EdgeVolume");
            }
        })
        .await;
}

/// Counts Ready volumes from a watch: listing 10,000 objects every poll would load the API
/// server (and this driver) more than the controller under test.
async fn wait_ready(api: &Api<EdgeVolume>, n: usize) -> Duration {
    let t = Instant::now();
    let mut ready = HashSet::new();
    let events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let mut events = std::pin::pin!(events);
    while let Some(ev) = events.next().await {
        let Ok(v) = ev else { continue };
        let is_ready = v.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        let name = v.metadata.name.unwrap_or_default();
        if is_ready {
            ready.insert(name);
        } else {
            ready.remove(&name);
        }
        if ready.len() >= n {
            break;
        }
    }
    t.elapsed()
}

/// Burst of the benchmark's budget.
const BURST: u32 = 10;

/// The simulator's cost model: objects the controller visits for list calls and requests it
/// sends to satellites (`edgebind_sim::linstor::ServerWork`).
fn print_work(stats: &edgebind_sim::linstor::CallStats, volumes: usize) {
    let w = stats.work();
    println!(
        "  LINSTOR server work: {} objects visited ({:.1} per volume), {} satellite requests",
        w.objects,
        w.objects as f64 / volumes.max(1) as f64,
        w.satellite_requests
    );
}

fn print_routes(title: &str, routes: &BTreeMap<String, u64>) {
    println!("  {title}:");
    for (k, v) in routes {
        println!("    {v:>7}  {k}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = opts();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin = shipped_binary()?;
    let bin = bin.to_str().ok_or_else(|| anyhow::anyhow!("binary path"))?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");

    let sim = LinstorSim::start(SimConfig {
        latency: Duration::from_millis(o.latency_ms),
        ..SimConfig::realistic()
    })
    .await?;
    let kport = free_port();
    let _kube = Kill(
        Command::new(bin)
            .args([
                "simulate",
                "kubernetes",
                "--listen",
                &format!("127.0.0.1:{kport}"),
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .env("EDGEBIND_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let t = Instant::now();
    while !kubeconfig.exists() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "fake API server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?,
    )?;
    let ns: Namespace = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
    )?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    let backends: Api<LinstorBackend> = Api::all(client.clone());
    let backend: LinstorBackend = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "LinstorBackend", "metadata": {"name": "bench"},
        "spec": {"urls": [sim.url()], "budget": {"requestsPerSecond": o.rps, "burst": BURST, "maxInFlight": 8}}
    }))?;
    backends.create(&PostParams::default(), &backend).await?;

    let admin = free_port();
    // EDGEBIND_BENCH_WRAPPER (e.g. "heaptrack -o /tmp/ctrl") runs the controller under a
    // profiler; the RSS figures then describe the wrapper, not the controller.
    let wrapper = std::env::var("EDGEBIND_BENCH_WRAPPER").unwrap_or_default();
    let mut argv: Vec<String> = wrapper.split_whitespace().map(str::to_string).collect();
    argv.push(bin.to_string());
    let ctrl = Kill(
        Command::new(&argv[0])
            .args(&argv[1..])
            .args(["controller", "--admin-addr", &format!("127.0.0.1:{admin}")])
            .args([
                "--resync-seconds",
                &o.resync_seconds.to_string(),
                "--concurrency",
                &o.concurrency.to_string(),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("EDGEBIND_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = ctrl.0.id();
    let t = Instant::now();
    loop {
        let b = backends.get("bench").await?;
        if b.status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        }) {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "backend never became Ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("edgebind operator benchmark");
    println!(
        "  controller: {bin} (cargo {}, the Dockerfile's build)",
        SHIPPED_BUILD.join(" ")
    );
    println!(
        "  volumes {}, budget {} req/s, LINSTOR latency {} ms/call, resync {} s, concurrency {}",
        o.volumes, o.rps, o.latency_ms, o.resync_seconds, o.concurrency
    );
    let vols: Api<EdgeVolume> = Api::namespaced(client.clone(), "bench");
    sim.sim.stats().reset();
    let t0 = Instant::now();
    // Watch the write phase: the budget share is measured while creates are being sent, the
    // time to Ready over the whole run.
    let watcher = {
        let stats_sim = sim.sim.clone();
        let want = 3 * o.volumes as u64;
        tokio::spawn(async move {
            loop {
                let s = stats_sim.stats();
                if s.writes() >= want {
                    return (t0.elapsed(), s.total());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    create_volumes(&vols, 0, o.volumes).await;
    let created = t0.elapsed();
    wait_ready(&vols, o.volumes).await;
    let took = t0.elapsed();
    // The last write lands just before the last Ready; give the 100 ms poll time to see it.
    let write_phase = tokio::time::timeout(Duration::from_secs(2), watcher)
        .await
        .ok()
        .and_then(Result::ok);
    let stats = sim.sim.stats();
    let calls = stats.total();
    println!("\nbulk create of {} volumes", o.volumes);
    println!(
        "  objects created in the API server in {:.1} s",
        created.as_secs_f64()
    );
    println!("  all Ready after {:.1} s", took.as_secs_f64());
    println!(
        "  LINSTOR calls: {calls} ({} reads, {} writes)",
        stats.reads(),
        stats.writes()
    );
    println!(
        "  writes per volume: {:.2}",
        stats.writes() as f64 / o.volumes as f64
    );
    // The budget is a token bucket: over any T seconds it grants at most burst + rate x T
    // requests (the bucket starts full). That allowance is the budget the figures compare with.
    let allowance = |t: Duration| BURST as f64 + t.as_secs_f64() * o.rps as f64;
    if let Some((t, c)) = write_phase {
        println!(
            "  budget used while creating: {:.1}% ({c} calls in the {:.1} s until the last create write, against the allowance of {:.0} = burst {BURST} + {} req/s x {:.1} s)",
            100.0 * c as f64 / allowance(t),
            t.as_secs_f64(),
            allowance(t),
            o.rps,
            t.as_secs_f64(),
        );
    }
    println!(
        "  budget used until all Ready: {:.1}% ({calls} calls in {:.1} s, allowance {:.0})",
        100.0 * calls as f64 / allowance(took),
        took.as_secs_f64(),
        allowance(took)
    );
    print_work(&stats, o.volumes);
    print_routes("calls by route", &stats.by_route());

    // Let progress requeues settle, then watch one full resync period.
    tokio::time::sleep(Duration::from_secs(5)).await;
    sim.sim.stats().reset();
    let window = Duration::from_secs(o.resync_seconds + o.resync_seconds / 2);
    tokio::time::sleep(window).await;
    let stats = sim.sim.stats();
    println!(
        "\nconverged resync ({:.0} s window, one resync period is {} s)",
        window.as_secs_f64(),
        o.resync_seconds
    );
    println!(
        "  LINSTOR calls: {} ({} reads, {} writes)",
        stats.total(),
        stats.reads(),
        stats.writes()
    );
    print_work(&stats, o.volumes);
    print_routes("calls by route", &stats.by_route());
    let (rss, hwm) = rss_kib(pid);
    println!(
        "  controller RSS with {} volumes: {:.1} MiB (peak {:.1} MiB)",
        o.volumes,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );

    if o.rss_volumes > o.volumes {
        // Memory at scale: lift the budget so the rest arrive quickly, then measure once converged.
        backends
            .patch("bench", &PatchParams::default(), &Patch::Merge(json!({"spec": {"budget": {"requestsPerSecond": 2000, "burst": 100, "maxInFlight": 32}}})))
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t = Instant::now();
        create_volumes(&vols, o.volumes, o.rss_volumes).await;
        wait_ready(&vols, o.rss_volumes).await;
        tokio::time::sleep(Duration::from_secs(o.resync_seconds)).await;
        sim.sim.stats().reset();
        let window = Duration::from_secs(o.resync_seconds + o.resync_seconds / 2);
        tokio::time::sleep(window).await;
        let stats = sim.sim.stats();
        println!(
            "\nconverged resync at {} volumes ({:.0} s window)",
            o.rss_volumes,
            window.as_secs_f64()
        );
        println!(
            "  LINSTOR calls: {} ({} reads, {} writes)",
            stats.total(),
            stats.reads(),
            stats.writes()
        );
        print_work(&stats, o.rss_volumes);
        print_routes("calls by route", &stats.by_route());
        let (rss, hwm) = rss_kib(pid);
        println!(
            "\nmemory at {} volumes (reached in {:.0} s)",
            o.rss_volumes,
            t.elapsed().as_secs_f64()
        );
        println!(
            "  controller RSS: {:.1} MiB, peak {:.1} MiB",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    }
    Ok(())
}
