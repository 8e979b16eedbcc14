//! Serving the simulator over TCP with its own accept loop, so faults can refuse connections
//! ("unreachable") or drop one mid-request, and so stopping it ends every open connection.

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::faults::ConnCtl;
use super::{LinstorSim, SimConfig, SimNode};

/// A simulator listening on a local port. Dropping it stops the server.
pub struct RunningSim {
    pub sim: LinstorSim,
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes every open connection and waits for the accept loop to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Resolves when the server stops (for standalone use).
    pub async fn wait(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub(crate) async fn start(sim: LinstorSim, listen: SocketAddr) -> anyhow::Result<RunningSim> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept_loop(sim.clone(), listener, stop.clone()));
    Ok(RunningSim {
        sim,
        addr,
        stop,
        task: Some(task),
    })
}

async fn accept_loop(sim: LinstorSim, listener: TcpListener, stop: CancellationToken) {
    let router = sim.router();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors or similar: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if sim.faults().is_unreachable() {
            drop(stream);
            continue;
        }
        let conn_stop = stop.child_token();
        let router = router.clone();
        tokio::spawn(async move {
            let ctl = ConnCtl(conn_stop.clone());
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ctl.clone());
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = conn_stop.cancelled() => {}
            }
        });
    }
}

/// Runs the simulator on `listen` until Ctrl-C (used by `edgebind simulate linstor`).
pub async fn run_standalone(listen: SocketAddr, cfg: SimConfig) -> anyhow::Result<()> {
    let running = super::server::start(LinstorSim::new(cfg), listen).await?;
    tracing::info!(addr = %running.addr, "LINSTOR simulator listening");
    println!("LINSTOR simulator listening on {}", running.url());
    tokio::signal::ctrl_c().await?;
    running.stop().await;
    Ok(())
}

/// `edgebind simulate linstor` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateLinstorArgs {
    /// Address to listen on (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:3370")]
    pub listen: SocketAddr,
    /// Latency added to every call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// How long new replicas report Inconsistent before UpToDate, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub sync_delay_ms: u64,
    /// Storage nodes (each with a 500 GiB LVM_THIN pool "thin", zones zone-1, zone-2, ...);
    /// 0 keeps the realistic default (node-a/b/c plus diskless node-d).
    #[arg(long, default_value_t = 0)]
    pub nodes: usize,
}

impl SimulateLinstorArgs {
    pub fn config(&self) -> SimConfig {
        let mut cfg = SimConfig::with_example_groups();
        if self.nodes > 0 {
            cfg.nodes = (1..=self.nodes)
                .map(|i| {
                    SimNode::new(
                        &format!("node-{i}"),
                        Some(&format!("zone-{i}")),
                        500,
                        &format!("10.0.0.{}", 10 + i % 240),
                    )
                })
                .collect();
        }
        cfg.latency = Duration::from_millis(self.latency_ms);
        cfg.sync_delay = Duration::from_millis(self.sync_delay_ms);
        cfg
    }
}

/// Entry point for the CLI subcommand.
pub async fn run(args: SimulateLinstorArgs) -> anyhow::Result<()> {
    run_standalone(args.listen, args.config()).await
}
