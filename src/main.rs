//! The `dockwatch` command line. anyhow lives only here.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use dockwatch::config;

/// Watches Docker Engine daemons and serves what it sees to Prometheus.
// Doc comments here are the --help text, so no Markdown backticks.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Without it, ./config.toml is read if present.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch the configured daemons and serve /metrics (the default).
    Run,
    /// Validate the configuration: exit 0 if good, or print every problem and exit 2.
    CheckConfig,
}

/// Exit code for a configuration the user has to fix.
const EXIT_BAD_CONFIG: u8 = 2;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn load_config(
    path: Option<&std::path::Path>,
) -> Result<(config::Config, config::Source), ExitCode> {
    config::load(path).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(EXIT_BAD_CONFIG)
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops dockwatch");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn run(config: config::Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(dockwatch::run(config, shutdown_signal()))?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => match load_config(cli.config.as_deref()) {
            Ok((c, source)) => {
                println!(
                    "config OK ({source}): {} daemon(s), {} image filter group(s)",
                    c.daemons.len(),
                    c.image_filters.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run => {
            let (config, source) = match load_config(cli.config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            tracing::info!(config = %source, version = env!("CARGO_PKG_VERSION"), "dockwatch starting");
            match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
