//! edgebind: a Kubernetes operator that binds LINSTOR replicated block storage to the
//! Cloudflare edge.

pub mod admin;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod gateway;
pub mod linstor;
pub mod metrics;
pub mod sim;

use std::time::Duration;

use cli::Command;

/// Resolves when SIGTERM or Ctrl-C arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs one subcommand.
pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Crds => {
            print!("{}", crd::to_yaml(&crd::all())?);
            Ok(())
        }
        Command::Controller(args) => {
            let client = kube::Client::try_default().await?;
            let config = controller::ControllerConfig {
                resync: Duration::from_secs(args.resync_seconds),
                concurrency: args.concurrency,
                backoff_cap: Duration::from_secs(args.backoff_cap_seconds),
                ..Default::default()
            };
            let ready = controller::Readiness::default();
            let admin = tokio::spawn(admin::serve(
                args.admin_addr,
                ready.clone(),
                shutdown_signal(),
            ));
            tracing::info!(admin = %args.admin_addr, "edgebind controller starting");
            controller::run(client, config, ready, shutdown_signal()).await?;
            admin.abort();
            Ok(())
        }
        Command::Plan(_args) => anyhow::bail!("plan is not wired yet"),
        Command::Simulate(_) => anyhow::bail!("simulators are not wired yet"),
    }
}
