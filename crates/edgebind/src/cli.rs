//! Command-line interface. Every flag can also be set through the environment variable named in
//! `--help`, which is how the Helm chart configures the binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "edgebind",
    version,
    about = "Binds LINSTOR replicated block storage to the Cloudflare edge, as a Kubernetes operator",
    long_about = "edgebind reconciles custom resources (LinstorBackend, EdgeVolume, EdgeSnapshot, ...) \
                  into LINSTOR and Cloudflare. Start with `edgebind plan -f examples/`, which needs no cluster."
)]
pub struct Cli {
    /// Log format: `json` (one object per line, for log pipelines) or `text`.
    #[arg(long, global = true, env = "EDGEBIND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax, e.g. `info,edgebind=debug` (default `info`;
    /// `warn` for `plan`, whose output is the report).
    #[arg(long, global = true, env = "EDGEBIND_LOG")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator: watch edgebind's custom resources and reconcile them into LINSTOR,
    /// writing status, events and metrics. Uses the in-cluster service account, or KUBECONFIG.
    /// Exports edge requests as OpenTelemetry traces when the standard OTEL_EXPORTER_OTLP_*
    /// variables name an endpoint (OTLP/HTTP protobuf; README "Traces").
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions (the files in `crds/` are this output).
    Crds,
    /// Read manifests from disk and print what the controller would do in LINSTOR (requests
    /// with bodies) and the status it would report. Runs against an embedded LINSTOR simulator,
    /// or read-only against a real controller with --linstor-url. Changes nothing real.
    Plan(PlanArgs),
    /// Run the in-cluster edge gateway: verifies the Worker's signed requests, re-evaluates
    /// policy, and acts by writing EdgeVolumes and EdgeSnapshots. It never calls LINSTOR.
    Gateway(crate::gateway::GatewayArgs),
    /// Run a built-in simulator as a local server, to try edgebind or your own tools without
    /// the real system.
    #[command(subcommand)]
    Simulate(SimulateCommand),
}

#[derive(Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Seconds between re-checks of converged objects (detects drift made outside edgebind).
    #[arg(long, env = "EDGEBIND_RESYNC_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(5..=86400))]
    pub resync_seconds: u64,
    /// Reconciles running at once, per kind.
    #[arg(long, env = "EDGEBIND_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Address of the admin server (/livez, /readyz, /metrics).
    #[arg(long, env = "EDGEBIND_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Run several replicas with one active: only the holder of a Lease reconciles.
    #[arg(long, env = "EDGEBIND_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Name of the Lease (in --lease-namespace) used for leader election.
    #[arg(
        long,
        env = "EDGEBIND_LEASE_NAME",
        default_value = "edgebind-controller"
    )]
    pub lease_name: String,
    /// The controller's own namespace: its Lease, the gateways' key Secret and every
    /// EdgeBinding's private signing keys are kept here.
    #[arg(long, env = "POD_NAMESPACE", default_value = crate::defaults::NAMESPACE)]
    pub lease_namespace: String,
    /// Secret (in the controller's namespace) the gateways read trusted public keys from; the
    /// gateways take the same name from the same variable.
    #[arg(
        long,
        env = "EDGEBIND_GATEWAY_KEYS_SECRET",
        default_value = crate::defaults::GATEWAY_KEYS_SECRET
    )]
    pub gateway_keys_secret: String,
    /// The gateway Service as cloudflared reaches it (`http://<service>.<namespace>.svc:<port>`):
    /// the origin of every CloudflareAccount tunnel that does not name its own. The chart sets it.
    #[arg(long, env = "EDGEBIND_GATEWAY_SERVICE")]
    pub gateway_service: Option<String>,
    /// Identity in the Lease; the pod name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Cap of the per-object retry backoff, in seconds.
    #[arg(long, env = "EDGEBIND_BACKOFF_CAP_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub backoff_cap_seconds: u64,
    /// Seconds between publishing a new signing key's public half to the gateways and
    /// switching the Worker to it (docs/edge-protocol.md §8, step 2: it stands in for "every
    /// gateway replica reports the keyId"). Keep it above the gateways' key reload period.
    #[arg(long, env = "EDGEBIND_KEY_PROPAGATION_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub key_propagation_seconds: u64,
    /// Seconds the replaced public key stays trusted after the Worker switched keys
    /// (docs/edge-protocol.md §8, step 4: at least 600; lower values are for tests).
    #[arg(long, env = "EDGEBIND_KEY_OVERLAP_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub key_overlap_seconds: u64,
}

/// docs/edge-protocol.md §8: the old key must stay trusted for at least this long.
pub const MIN_SAFE_KEY_OVERLAP_SECONDS: u64 = 600;

#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// A manifest file or a directory of them (*.yaml, *.yml, *.json; multi-document YAML).
    #[arg(
        short = 'f',
        long = "filename",
        env = "EDGEBIND_PLAN_FILES",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Read a real LINSTOR controller instead of the embedded simulator (read-only: plan never
    /// writes to it). Applies to every LinstorBackend in the manifests.
    #[arg(long, env = "EDGEBIND_LINSTOR_URL")]
    pub linstor_url: Option<String>,
    /// CA certificate (PEM) of the LINSTOR controller.
    #[arg(long, env = "EDGEBIND_LINSTOR_CA")]
    pub linstor_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, env = "EDGEBIND_LINSTOR_CERT", requires = "linstor_key")]
    pub linstor_cert: Option<PathBuf>,
    /// Client key (PEM) for mTLS.
    #[arg(long, env = "EDGEBIND_LINSTOR_KEY", requires = "linstor_cert")]
    pub linstor_key: Option<PathBuf>,
    /// File holding a LINSTOR bearer token.
    #[arg(long, env = "EDGEBIND_LINSTOR_TOKEN_FILE")]
    pub linstor_token_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, env = "EDGEBIND_PLAN_OUTPUT", value_enum, default_value_t = PlanOutput::Text)]
    pub output: PlanOutput,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum PlanOutput {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum SimulateCommand {
    /// A LINSTOR controller (REST API v1) with three nodes and a thin pool each.
    Linstor(SimulateLinstorArgs),
    /// A Kubernetes API server in memory, with edgebind's CRDs installed.
    Kubernetes(SimulateKubernetesArgs),
    /// The Cloudflare API v4 subset edgebind uses (Workers scripts, versions, deployments,
    /// secrets, routes, token verify), with one account, zone `example.com` and a test token.
    Cloudflare(SimulateCloudflareArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SimulateCloudflareArgs {
    /// Address to listen on.
    #[arg(long, env = "EDGEBIND_SIM_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Requests allowed per token per 5 minutes (Cloudflare's default is 1200).
    #[arg(long, env = "CF_SIM_RATE_LIMIT", default_value_t = 1200)]
    pub rate_limit: u32,
}

#[derive(Args, Debug, Clone)]
pub struct SimulateLinstorArgs {
    /// Address to listen on.
    #[arg(long, env = "EDGEBIND_SIM_LISTEN", default_value = "127.0.0.1:3370")]
    pub listen: SocketAddr,
    /// Added latency of every call, in milliseconds.
    #[arg(long, env = "EDGEBIND_SIM_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
}

#[derive(Args, Debug, Clone)]
pub struct SimulateKubernetesArgs {
    /// Address to listen on.
    #[arg(long, env = "EDGEBIND_SIM_LISTEN", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Write a kubeconfig pointing at the server to this file.
    #[arg(long, env = "EDGEBIND_SIM_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}
