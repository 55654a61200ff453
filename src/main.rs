//! The `dockwatch` command line. anyhow lives only here.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use dockwatch::config;

mod cli;

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
    /// Pull one image now, with a progress bar per layer; exit 0 if it ended well.
    Pull {
        /// The image: NAME[:TAG] or NAME@DIGEST (a bare name means :latest).
        image: String,
        /// Which configured daemon to pull on (default: the only one).
        #[arg(long)]
        daemon: Option<String>,
    },
    /// One prune round now: remove old dangling images no container uses and no pre-pull names.
    ///
    /// Uses the [prune] settings, whether enabled or not (but not [prune.when]). Prints each image
    /// removed (or, with --dry-run, that would be) with its size, and the totals. Exit 0, also when
    /// the daemon refused some removals; 1 if a removal or the round failed otherwise.
    Prune {
        /// Prune only this configured daemon (default: every one, in turn).
        #[arg(long)]
        daemon: Option<String>,
        /// Print what would be removed, remove nothing (as when the config says dry run).
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the man page or a shell completion script (used to build the Debian package).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: cli::generate::Artifact,
    },
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
    dockwatch::config::load::load(path).map_err(|e| {
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

fn run(config: config::Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // One pending reload is enough: more requests fold into it.
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        let http_reload = config.server.enable_reload.then(|| reload_tx.clone());
        let sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot watch SIGHUP")?;
        tokio::spawn(forward_sighup(sighup, reload_tx));
        let load = move || dockwatch::config::load::load(path.as_deref()).map(|(c, _)| c);
        dockwatch::run(config, load, reload_rx, http_reload, shutdown_signal()).await?;
        anyhow::Ok(())
    })
}

/// Every SIGHUP asks for a reload.
async fn forward_sighup(
    mut sighup: tokio::signal::unix::Signal,
    reload: tokio::sync::mpsc::Sender<()>,
) {
    while sighup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        let _ = reload.try_send(());
    }
}

/// Exit code for a pull that did not end well.
const EXIT_PULL_FAILED: u8 = 1;

/// `dockwatch pull`: one pull with the config's daemon, credentials and
/// limits, drawn as bars on a terminal and as lines otherwise.
fn pull(config: &config::Config, image: &str, daemon: Option<&str>) -> anyhow::Result<ExitCode> {
    use dockwatch::folds::reference::ImageRef;
    use dockwatch::labels::PullResult;

    let image = ImageRef::parse(image).map_err(anyhow::Error::msg)?;
    let target = match daemon {
        Some(name) => config
            .daemons
            .iter()
            .find(|d| d.name == name)
            .with_context(|| format!("no daemon named {name:?} in the config"))?,
        None if config.daemons.len() == 1 => &config.daemons[0],
        None => anyhow::bail!(
            "{} daemons are configured; pick one with --daemon NAME",
            config.daemons.len()
        ),
    };
    let credentials = dockwatch::config::credentials::for_image(
        &image,
        &config.registries,
        config.prepull.docker_config.as_deref(),
    )?;
    let limits = dockwatch::tasks::puller::Limits {
        timeout: config.prepull.timeout,
        stall_timeout: config.prepull.stall_timeout,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        // One call, seen by no metrics: the pull's own outcome says it all.
        let observer = std::sync::Arc::new(dockwatch::docker::Unobserved);
        let connection = dockwatch::docker::Connection::new(target, config.poll.timeout, observer);
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        // Ctrl-C cancels the pull on the daemon, as docker pull does.
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop_tx.send_replace(true);
            }
        });
        let mut view = cli::pull_view::PullView::new(std::io::stdout().is_terminal());
        println!("pulling {image} on {} ({})", target.name, target.host);
        let outcome = dockwatch::tasks::puller::pull_image(
            &connection,
            &image,
            credentials,
            limits,
            &mut stop_rx,
            |p| {
                view.update(p);
            },
        )
        .await;
        view.update(&outcome.progress);
        view.finish();
        anyhow::Ok(outcome)
    })?;
    let t = outcome.progress.totals();
    let seconds = outcome.duration.as_secs_f64();
    if outcome.result == PullResult::Failed {
        eprintln!(
            "pull of {image} failed ({}) after {seconds:.2} s: {}",
            outcome.reason.map_or("unknown", |r| r.as_str()),
            outcome.message.as_deref().unwrap_or("no message")
        );
        return Ok(ExitCode::from(EXIT_PULL_FAILED));
    }
    println!(
        "{image}: {} in {seconds:.2} s; {} layers downloaded ({} bytes), {} already present{}",
        outcome.result.as_str(),
        t.layers_downloaded,
        t.downloaded_bytes,
        t.layers_already_exist,
        outcome
            .progress
            .digest
            .as_deref()
            .map(|d| format!("; digest {d}"))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Exit code for a prune round that failed.
const EXIT_PRUNE_FAILED: u8 = 1;

/// `dockwatch prune`: one round on each chosen daemon, one after the other,
/// printing each image removed (or that would be) with its size, and the
/// totals. `[prune.when]` is not checked: the round was asked for now.
fn prune(config: &config::Config, daemon: Option<&str>, dry_run: bool) -> anyhow::Result<ExitCode> {
    let targets: Vec<&config::DaemonConfig> = match daemon {
        Some(name) => vec![
            config
                .daemons
                .iter()
                .find(|d| d.name == name)
                .with_context(|| format!("no daemon named {name:?} in the config"))?,
        ],
        None => config.daemons.iter().collect(),
    };
    let dry_run = dry_run || config.prune.dry_run;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut failed = false;
    let mut totals = [0_u64; 3];
    runtime.block_on(async {
        // Ctrl-C stops after the removal under way.
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop_tx.send_replace(true);
            }
        });
        for target in targets {
            let round = prune_one(config, target, dry_run, &stop_rx).await;
            failed |= round.result() != dockwatch::labels::PruneResult::Ok;
            totals[0] += round.removed;
            totals[1] += round.removed_bytes;
            totals[2] += round.refused;
        }
    });
    println!(
        "total: {} {} image(s), {}; {} refused",
        if dry_run { "would remove" } else { "removed" },
        totals[0],
        size(totals[1]),
        totals[2]
    );
    Ok(if failed {
        ExitCode::from(EXIT_PRUNE_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// One round of `dockwatch prune` on `target`, told as it goes.
async fn prune_one(
    config: &config::Config,
    target: &config::DaemonConfig,
    dry_run: bool,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> dockwatch::tasks::pruner::Round {
    use dockwatch::labels::PruneResult;
    use dockwatch::tasks::pruner::{Plan, Step};

    // Calls seen by no metrics: the printed lines say it all.
    let observer = std::sync::Arc::new(dockwatch::docker::Unobserved);
    let connection = dockwatch::docker::Connection::new(target, config.poll.timeout, observer);
    let plan = Plan {
        dry_run,
        ..Plan::new(&config.prune, config.images_for(&target.name))
    };
    println!(
        "{} dangling images on {} ({}) created over {} ago{}",
        if dry_run {
            "dry run: pruning"
        } else {
            "pruning"
        },
        target.name,
        target.host,
        humantime::format_duration(plan.older_than),
        if plan.filters.len() > 1 {
            format!(
                ", filters {}",
                serde_json::to_string(&plan.filters).unwrap_or_default()
            )
        } else {
            String::new()
        }
    );
    let now = dockwatch::clock::unix_now();
    let round =
        dockwatch::tasks::pruner::prune_round(&connection, &plan, now, stop, |step| match step {
            Step::Removed(i) => println!("removed {} {}", i.id, size(i.bytes())),
            Step::WouldRemove(i) => println!("would remove {} {}", i.id, size(i.bytes())),
            Step::Refused(i, reason, message) => {
                println!("refused {} ({}): {message}", i.id, reason.as_str());
            }
            Step::Failed(i, e) => eprintln!("failed {}: {e}", i.id),
        })
        .await;
    let kept = round.kept_described();
    println!(
        "{}: {} {} image(s), {}; {} refused; kept {}{}",
        target.name,
        if dry_run { "would remove" } else { "removed" },
        round.removed,
        size(round.removed_bytes),
        round.refused,
        if kept.is_empty() {
            "none".to_owned()
        } else {
            kept.join(", ")
        },
        if round.stopped {
            "; stopped early (interrupted)"
        } else {
            ""
        }
    );
    if round.result() != PruneResult::Ok {
        eprintln!(
            "{}: prune round {}: {}",
            target.name,
            round.result().as_str(),
            round.error.as_deref().unwrap_or("")
        );
    }
    round
}

/// Bytes exactly, and as a person reads them.
fn size(bytes: u64) -> String {
    format!("{bytes} bytes ({})", bytesize::ByteSize(bytes))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command.unwrap_or(Command::Run) {
        Command::Generate { what } => {
            cli::generate::print(Cli::command(), what, &mut std::io::stdout().lock())
        }
        Command::CheckConfig => match load_config(cli.config.as_deref()) {
            Ok((c, source)) => {
                println!(
                    "config OK ({source}): {} daemon(s), {} image filter group(s), pruning {}",
                    c.daemons.len(),
                    c.image_filters.len(),
                    match (c.prune.enabled, c.prune.dry_run) {
                        (false, _) => "off",
                        (true, false) => "on",
                        (true, true) => "on (dry run)",
                    }
                );
                for daemon in &c.daemons {
                    if let Some(w) = dockwatch::config::exposure::plain_tcp_warning(daemon) {
                        println!("warning: {w}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Pull { image, daemon } => {
            let (config, _) = match load_config(cli.config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match pull(&config, &image, daemon.as_deref()) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("dockwatch pull: {e:#}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Command::Prune { daemon, dry_run } => {
            let (config, _) = match load_config(cli.config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match prune(&config, daemon.as_deref(), dry_run) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("dockwatch prune: {e:#}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        Command::Run => {
            let (config, source) = match load_config(cli.config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            tracing::info!(config = %source, version = env!("CARGO_PKG_VERSION"), "dockwatch starting");
            dockwatch::descriptors::raise();
            match run(config, cli.config.clone()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
