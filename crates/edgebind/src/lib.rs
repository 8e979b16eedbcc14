//! edgebind: a Kubernetes operator that binds LINSTOR replicated block storage to the
//! Cloudflare edge.

// Items only the crate uses are `pub(crate)`; this keeps it so.
#![warn(unreachable_pub)]

pub(crate) mod admin;
pub mod cli;
pub mod cloudflare;
pub mod controller;
// The CRD types are public API; their derives generate items the lint misreads.
#[allow(unreachable_pub)]
pub mod crd;
pub(crate) mod defaults;
pub mod gateway;
pub(crate) mod jwks;
pub mod linstor;
pub mod listener;
pub mod memory;
pub(crate) mod metrics;
pub mod otlp;
pub mod plan;
pub mod request_trace;

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

/// The controller's settings from its flags.
pub fn controller_config(args: &cli::ControllerArgs) -> controller::ControllerConfig {
    controller::ControllerConfig {
        resync: Duration::from_secs(args.resync_seconds),
        concurrency: args.concurrency,
        backoff_cap: Duration::from_secs(args.backoff_cap_seconds),
        cloudflare: controller::CloudflareSettings {
            key_namespace: args.lease_namespace.clone(),
            gateway_keys_secret: args.gateway_keys_secret.clone(),
            gateway_service: args.gateway_service.clone(),
            key_propagation: Duration::from_secs(args.key_propagation_seconds),
            key_overlap: Duration::from_secs(args.key_overlap_seconds),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Writes a command's output. A reader that stops early (`edgebind crds | head`) is not an
/// error: `print!` would panic on the broken pipe.
pub(crate) fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Runs one subcommand.
pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Crds => print_out(&crd::to_yaml(&crd::all())?),
        Command::Controller(args) => {
            // Off unless the standard OTEL_* variables name an endpoint; a setting edgebind
            // cannot honour (gRPC, say) stops the start rather than losing traces silently.
            let otlp = otlp::OtlpConfig::from_env(&|k| std::env::var(k).ok())
                .map_err(|e| anyhow::anyhow!("OpenTelemetry export: {e}"))?;
            let mut kcfg = kube::Config::infer().await?;
            // Identifies edgebind's calls in the API server's audit log.
            kcfg.headers.push((
                http::header::USER_AGENT,
                http::HeaderValue::from_static(concat!(
                    "edgebind-controller/",
                    env!("CARGO_PKG_VERSION")
                )),
            ));
            let client = kube::Client::try_from(kcfg)?;
            let mut config = controller_config(&args);
            let exporter = match otlp {
                Some(c) => {
                    tracing::info!(endpoint = %otlp::shown(&c.endpoint), headers = c.headers.len(), "OTLP trace export on");
                    let e = otlp::Exporter::start(c)
                        .map_err(|e| anyhow::anyhow!("OpenTelemetry export: {e}"))?;
                    config.traces = Some(e.sink());
                    Some(e)
                }
                None => None,
            };
            if args.key_overlap_seconds < cli::MIN_SAFE_KEY_OVERLAP_SECONDS {
                // Signatures live 60 s plus 30 s skew, and Cloudflare rolls a new version out
                // gradually: a shorter overlap can refuse requests still signed with the old key.
                tracing::warn!(
                    key_overlap_seconds = args.key_overlap_seconds,
                    minimum = cli::MIN_SAFE_KEY_OVERLAP_SECONDS,
                    "signing key overlap is below the protocol's minimum; use this only in tests"
                );
            }
            let ready = controller::Readiness::default();
            let admin = tokio::spawn(admin::serve(
                args.admin_addr,
                ready.clone(),
                shutdown_signal(),
            ));
            tracing::info!(admin = %args.admin_addr, "edgebind controller starting");
            if args.leader_election {
                let identity = args
                    .identity
                    .clone()
                    .unwrap_or_else(|| format!("edgebind-{}", uuid::Uuid::new_v4()));
                let lease = controller::leader::LeaseConfig::new(
                    &args.lease_namespace,
                    &args.lease_name,
                    &identity,
                );
                controller::run_with_leader_election(
                    client,
                    config,
                    ready,
                    lease,
                    shutdown_signal(),
                )
                .await?;
            } else {
                metrics::get().leader.set(1);
                controller::run(client, config, ready, shutdown_signal()).await?;
            }
            admin.abort();
            if let Some(e) = exporter {
                // The traces of requests closed just before the stop.
                e.shutdown(Duration::from_secs(5)).await;
            }
            Ok(())
        }
        Command::Plan(args) => plan::run(&args).await,
        Command::Gateway(args) => gateway::run(args).await,
        Command::Simulate(cli::SimulateCommand::Linstor(a)) => {
            let cfg = edgebind_sim::linstor::SimConfig {
                latency: Duration::from_millis(a.latency_ms),
                ..edgebind_sim::linstor::SimConfig::with_example_groups()
            };
            edgebind_sim::linstor::run_standalone(a.listen, cfg).await
        }
        Command::Simulate(cli::SimulateCommand::Cloudflare(a)) => {
            let cfg = edgebind_sim::cloudflare::CfSimConfig {
                rate_limit: Some((a.rate_limit, Duration::from_secs(300))),
                ..edgebind_sim::cloudflare::CfSimConfig::realistic()
            };
            edgebind_sim::cloudflare::run_standalone(a.listen, cfg).await
        }
        Command::Simulate(cli::SimulateCommand::Kubernetes(a)) => {
            let server = edgebind_sim::kube::FakeApiServer::start_on(a.listen).await?;
            for c in crd::all() {
                server.try_install_crd(&c)?;
            }
            if let Some(path) = &a.kubeconfig {
                std::fs::write(path, server.kubeconfig_yaml())?;
            }
            println!("Kubernetes API simulator listening on {}", server.url());
            shutdown_signal().await;
            server.shutdown();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config_of(args: &[&str]) -> Result<controller::ControllerConfig, clap::Error> {
        let cli = cli::Cli::try_parse_from(["edgebind", "controller"].iter().chain(args))?;
        match cli.command {
            Command::Controller(a) => Ok(controller_config(&a)),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn key_rotation_flags_reach_the_cloudflare_settings() {
        let c = config_of(&[
            "--key-propagation-seconds",
            "2",
            "--key-overlap-seconds",
            "4",
        ])
        .expect("valid flags");
        assert_eq!(c.cloudflare.key_propagation, Duration::from_secs(2));
        assert_eq!(c.cloudflare.key_overlap, Duration::from_secs(4));
        // The defaults are the protocol's (docs/edge-protocol.md §8).
        let d = config_of(&[]).expect("no flags");
        assert_eq!(d.cloudflare.key_propagation, Duration::from_secs(30));
        assert_eq!(d.cloudflare.key_overlap, Duration::from_secs(600));
        // No wait at all would let the Worker sign before any gateway trusts the key.
        assert!(config_of(&["--key-propagation-seconds", "0"]).is_err());
        assert!(config_of(&["--key-overlap-seconds", "0"]).is_err());
    }
}
