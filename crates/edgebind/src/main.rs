use clap::Parser;

use edgebind::cli::{Cli, LogFormat};

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The controller holds a large, long-lived cache and is not allocation-bound: one arena
    // keeps its resident size near its heap. The gateway keeps glibc's default (throughput).
    if matches!(cli.command, edgebind::cli::Command::Controller(_)) {
        edgebind::memory::limit_arenas();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgebind: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> std::process::ExitCode {
    let quiet = matches!(cli.command, edgebind::cli::Command::Plan(_));
    let filter = cli
        .log
        .clone()
        .unwrap_or_else(|| if quiet { "warn" } else { "info" }.to_string());
    init_logging(cli.log_format, &filter);
    match edgebind::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgebind: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
