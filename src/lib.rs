//! dockwatch: watches Docker Engine daemons and tells Prometheus what it sees.
//!
//! [`run`] wires it together: one connection per daemon, shared by that
//! daemon's tasks (`tasks/`: poller, events, disk, puller, the registry
//! checker, and the pruner when `[prune] enabled`), which publish into
//! [`state::State`], the pull board and the counters; the HTTP server only
//! reads them. No module imports another in a circle: `tests/layers.py`
//! prints them in an order where each uses only the ones after it.

pub mod cgroup;
pub mod clock;
pub mod config;
pub mod descriptors;
pub mod docker;
pub mod folds;
pub mod labels;
pub mod metrics;
pub mod server;
pub mod state;
pub mod systemd;
pub mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::tls;
use crate::config::{Config, ImageFilterConfig, RegistryConfig};
use crate::docker::Connection;
use crate::folds::ratelimit::RegistryGate;
use crate::folds::reference::ImageRef;
use crate::metrics::Metrics;
use crate::state::{PruneMemory, PullBoard, State};
use crate::tasks::image_events::ImageEvents;
use crate::tasks::poller::Poller;
use crate::tasks::pruner::Pruner;
use crate::tasks::puller::Puller;
use crate::tasks::registry_check::Checker;
use crate::tasks::schedule::spread;
use crate::tasks::{PrepullDaemon, discovery, disk, events};

/// How long tasks get to finish after the shutdown signal before they are
/// dropped; the whole exit stays well inside systemd's and Docker's budgets.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot serve HTTPS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What every task shares, and outlives a reload.
#[derive(Debug, Clone)]
struct Shared {
    state: Arc<State>,
    board: Arc<PullBoard>,
    metrics: Arc<Metrics>,
    /// Rate-limited registry hosts, for every daemon's pulls and checks.
    gate: Arc<RegistryGate>,
    /// What pruning remembers across reloads.
    prune_memory: Arc<PruneMemory>,
}

/// One watched daemon's tasks (events, poller, disk, puller, the registry
/// checker, and the pruner when `[prune] enabled`), all on its one
/// connection.
#[derive(Debug)]
struct DaemonTasks {
    daemon: config::DaemonConfig,
    /// Its pre-pull images, as labels.
    images: Vec<String>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl DaemonTasks {
    /// Starts the daemon that is `index` of `count` watched: its first poll
    /// waits its share of the interval ([`spread`]); its calls take
    /// turns with every other daemon's under `calls`.
    fn start(
        daemon: &config::DaemonConfig,
        (index, count): (usize, usize),
        calls: &Arc<tokio::sync::Semaphore>,
        config: &Config,
        shared: &Shared,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        if let Some(warning) = config::exposure::plain_tcp_warning(daemon) {
            tracing::warn!(daemon = %daemon.name, host = %daemon.host, "{warning}");
        } else if let Some(note) = config::exposure::loopback_plain_tcp_note(daemon) {
            tracing::info!(daemon = %daemon.name, host = %daemon.host, "{note}");
        }
        let observer: Arc<dyn docker::Observer> = Arc::new(shared.metrics.api.clone());
        let connection = Connection::limited(
            daemon,
            config.poll.timeout,
            observer,
            Some(Arc::clone(calls)),
        );
        let image_events = Arc::new(ImageEvents::default());
        let events = events::EventWatcher {
            connection: connection.clone(),
            metrics: Arc::clone(&shared.metrics),
            image_events: Arc::clone(&image_events),
        };
        tasks.spawn(events.run(stop_rx.clone()));
        let filters: Arc<[ImageFilterConfig]> = config.image_filters.clone().into();
        let images = config.images_for(&daemon.name);
        let labels = labels_of(&images);
        let poller = Poller {
            daemon: daemon.clone(),
            connection: connection.clone(),
            first_poll: spread(index, count, config.poll.interval),
            interval: config.poll.interval,
            images_interval: config.poll.images_interval(),
            image_events,
            filters,
            images: images.clone(),
            state: Arc::clone(&shared.state),
        };
        tasks.spawn(poller.run(stop_rx.clone()));
        if !config.poll.disk_interval.is_zero() {
            let disk = disk::DiskWatcher {
                connection: connection.clone(),
                first: spread(index, count, config.poll.disk_interval),
                interval: config.poll.disk_interval,
                state: Arc::clone(&shared.state),
            };
            tasks.spawn(disk.run(stop_rx.clone()));
        }
        // Pruning is opt-in: without `enabled` no task is even started.
        if config.prune.enabled {
            let pruner = Pruner {
                connection: connection.clone(),
                config: config.prune.clone(),
                prepulls: images.clone(),
                state: Arc::clone(&shared.state),
                memory: Arc::clone(&shared.prune_memory),
                metrics: Arc::clone(&shared.metrics),
            };
            tasks.spawn(pruner.run(stop_rx.clone()));
        }
        if !images.is_empty() {
            let registries: Arc<[RegistryConfig]> = config.registries.clone().into();
            let recheck = Arc::new(tokio::sync::Notify::new());
            let daemon = PrepullDaemon {
                connection,
                images,
                prepull: config.prepull.clone(),
                registries,
                board: Arc::clone(&shared.board),
                gate: Arc::clone(&shared.gate),
                recheck,
            };
            if !config.prepull.check_interval.is_zero() {
                let checker = Checker {
                    daemon: daemon.clone(),
                    metrics: Arc::clone(&shared.metrics),
                };
                tasks.spawn(checker.run(stop_rx.clone()));
            }
            let prepuller = Puller {
                daemon,
                metrics: Arc::clone(&shared.metrics),
                prune_memory: config
                    .prune
                    .enabled
                    .then(|| Arc::clone(&shared.prune_memory)),
            };
            tasks.spawn(prepuller.run(stop_rx));
        }
        Self {
            daemon: daemon.clone(),
            images: labels,
            stop,
            tasks,
        }
    }
}

/// Stops every task of `daemons` at once, waiting up to [`SHUTDOWN_GRACE`].
async fn stop_all(daemons: Vec<DaemonTasks>) {
    let mut all = JoinSet::new();
    for mut r in daemons {
        r.stop.send_replace(true);
        all.spawn(async move {
            let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
                while r.tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                tracing::warn!(daemon = %r.daemon.name, "some tasks did not stop in time; dropping them");
                r.tasks.abort_all();
            }
        });
    }
    while all.join_next().await.is_some() {}
}

/// The daemons watched now: the configured ones and the discovered ones,
/// each with its own tasks, so one that comes or goes touches no other.
#[derive(Debug, Default)]
struct Fleet {
    running: std::collections::BTreeMap<String, DaemonTasks>,
    /// Each discovery source's last list.
    discovered: std::collections::BTreeMap<usize, Vec<config::DaemonConfig>>,
    /// The cap on Docker calls in progress at once, over every daemon:
    /// `[poll] max_concurrent_calls` permits.
    calls: Option<(usize, Arc<tokio::sync::Semaphore>)>,
    /// Whether the daemons fit the open-file limit.
    descriptors: descriptors::Budget,
}

impl Fleet {
    /// The daemons to watch: the configured ones, then the discovered ones
    /// whose names are not taken (check-config reports a clash as an error;
    /// at run time the configured daemon wins and the clash is logged).
    fn wanted(&self, config: &Config) -> Vec<config::DaemonConfig> {
        let mut names: std::collections::BTreeSet<String> =
            config.daemons.iter().map(|d| d.name.clone()).collect();
        let mut out = config.daemons.clone();
        for (source, daemons) in &self.discovered {
            for d in daemons {
                if names.insert(d.name.clone()) {
                    out.push(d.clone());
                } else {
                    tracing::warn!(daemon = %d.name, host = %d.host, source = *source, "a discovered daemon has the name of another daemon; left out");
                }
            }
        }
        out
    }

    /// Brings the running daemons to what `config` and the discovered lists
    /// want: new ones start, gone ones stop and their series go, changed
    /// ones restart; `restart_all` restarts every daemon (a reload that
    /// changed more than the daemon list).
    async fn apply(&mut self, config: &Config, shared: &Shared, restart_all: bool) {
        let mut wanted = self.wanted(config);
        // Past what the open-file limit holds, the first daemons are watched
        // and the others shown down, instead of every connection failing.
        let left_out = wanted.split_off(self.descriptors.admit(wanted.len()));
        let mut stopping = Vec::new();
        let names: Vec<&str> = wanted
            .iter()
            .chain(&left_out)
            .map(|d| d.name.as_str())
            .collect();
        let old_images: Vec<(String, Vec<String>)> = self
            .running
            .iter()
            .map(|(n, r)| (n.clone(), r.images.clone()))
            .collect();
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(name, r)| {
                restart_all || !wanted.iter().any(|w| w.name == **name && w == &r.daemon)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            if let Some(r) = self.running.remove(name) {
                stopping.push(r);
            }
        }
        stop_all(stopping).await;
        shared.state.retain(&names);
        shared.prune_memory.retain(&names);
        for name in &gone {
            if !names.contains(&name.as_str()) {
                shared.metrics.forget_daemon(name);
            }
        }
        let new_images: Vec<(String, Vec<String>)> = wanted
            .iter()
            .map(|d| (d.name.clone(), labels_of(&config.images_for(&d.name))))
            .filter(|(_, imgs)| !imgs.is_empty())
            .collect();
        for (daemon, images) in old_images {
            let kept = new_images.iter().find(|(d, _)| *d == daemon);
            for image in images {
                if !kept.is_some_and(|(_, imgs)| imgs.contains(&image)) {
                    shared.metrics.forget_image(&daemon, &image);
                }
            }
        }
        // With checks turned off, what the last ones said would go stale.
        if config.prepull.check_interval.is_zero() {
            for (daemon, images) in &new_images {
                for image in images {
                    shared.metrics.checks.forget(daemon, image);
                    shared.board.update(daemon, image, |p| {
                        p.check = None;
                        p.recheck = false;
                    });
                }
            }
        }
        shared.board.reset(new_images);
        let cap = config
            .poll
            .max_concurrent_calls
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let calls = match &self.calls {
            Some((n, calls)) if *n == cap => Arc::clone(calls),
            _ => {
                let calls = Arc::new(tokio::sync::Semaphore::new(cap));
                self.calls = Some((cap, Arc::clone(&calls)));
                calls
            }
        };
        for (index, d) in wanted.iter().enumerate() {
            if !self.running.contains_key(&d.name) {
                let started = DaemonTasks::start(d, (index, wanted.len()), &calls, config, shared);
                self.running.insert(d.name.clone(), started);
            }
        }
        for d in &left_out {
            let down = state::DaemonSnapshot {
                down_reason: Some(labels::ErrorReason::Connect),
                ..state::DaemonSnapshot::default()
            };
            shared.state.publish(&d.name, down);
        }
    }

    /// Tells every task to stop, without waiting.
    fn tell_stop(&self) {
        for r in self.running.values() {
            r.stop.send_replace(true);
        }
    }

    async fn stop(&mut self) {
        stop_all(std::mem::take(&mut self.running).into_values().collect()).await;
    }
}

fn labels_of(images: &[ImageRef]) -> Vec<String> {
    images.iter().map(ToString::to_string).collect()
}

/// The discovery tasks of a configuration.
#[derive(Debug)]
struct Sources {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Sources {
    fn start(
        config: &Config,
        shared: &Shared,
        updates: &tokio::sync::mpsc::UnboundedSender<discovery::Update>,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (index, source) in config.discovery.iter().enumerate() {
            let task = discovery::Discovery {
                index,
                config: source.clone(),
                metrics: Arc::clone(&shared.metrics),
                updates: updates.clone(),
            };
            tasks.spawn(task.run(stop_rx.clone()));
        }
        Self { stop, tasks }
    }

    async fn stop(mut self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
    }
}

/// Runs dockwatch until `shutdown` completes, then stops every task. Each
/// message on `reload` re-reads the configuration with `load`: a good one
/// replaces the watchers, a bad one is logged and the old one kept.
// One loop over shutdown, discovery updates and reloads; splitting it
// would only scatter the state they share.
#[allow(clippy::too_many_lines)]
pub async fn run(
    config: Config,
    load: impl Fn() -> Result<Config, config::ConfigError> + Send,
    mut reload: tokio::sync::mpsc::Receiver<()>,
    reload_tx: Option<tokio::sync::mpsc::Sender<()>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let state = Arc::new(State::new(config.daemons.iter().map(|d| d.name.as_str())));
    let board = Arc::new(PullBoard::default());
    let metrics = Arc::new(Metrics::new(Arc::clone(&state), Arc::clone(&board), true));
    let shared = Shared {
        state,
        board,
        metrics,
        gate: Arc::new(RegistryGate::default()),
        prune_memory: Arc::new(PruneMemory::default()),
    };
    let addr = config.server.listen;
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(
            tls::server_config(cert, key)
                .map_err(|e| RunError::Tls(format!("server.{}: {e}", e.field())))?,
        ),
        _ => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        addr = %local,
        https = tls.is_some(),
        basic_auth = !config.server.basic_auth_users.is_empty(),
        daemons = config.daemons.len(),
        "serving /metrics"
    );
    shared.metrics.reload.loaded(true);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut services = JoinSet::new();
    let app = server::router(
        Arc::clone(&shared.metrics),
        Arc::clone(&shared.state),
        Arc::clone(&shared.board),
        config.server.basic_auth_users.clone(),
        reload_tx,
    );
    services.spawn(server::serve(
        listener,
        app,
        tls,
        stop_rx.clone(),
        SHUTDOWN_GRACE,
    ));
    services.spawn(systemd::run(
        Arc::clone(&shared.state),
        config.daemons.len(),
        stop_rx.clone(),
    ));

    let mut current = config;
    let mut fleet = Fleet::default();
    fleet.apply(&current, &shared, false).await;
    let (updates_tx, mut updates) = tokio::sync::mpsc::unbounded_channel();
    let mut sources = Sources::start(&current, &shared, &updates_tx);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(update) = updates.recv() => {
                fleet.discovered.insert(update.source, update.daemons);
                fleet.apply(&current, &shared, false).await;
            }
            Some(()) = reload.recv() => {
                match load() {
                    Ok(new) => {
                        if new.server != current.server {
                            tracing::warn!("[server] changes take effect at the next restart");
                        }
                        systemd::reloading();
                        // Everything but the daemon list: every daemon restarts.
                        let strip = |c: &Config| Config { daemons: Vec::new(), discovery: Vec::new(), ..c.clone() };
                        let restart_all = strip(&new) != strip(&current);
                        if new.discovery != current.discovery {
                            sources.stop().await;
                            fleet.discovered.clear();
                            shared.metrics.discovery.clear();
                            sources = Sources::start(&new, &shared, &updates_tx);
                        }
                        // Pruning turned off: its series go (the pruners
                        // create theirs afresh when it is turned on).
                        if current.prune.enabled && !new.prune.enabled {
                            for name in fleet.running.keys() {
                                shared.metrics.prune.forget(name);
                            }
                        }
                        fleet.apply(&new, &shared, restart_all).await;
                        tracing::info!(daemons = fleet.running.len(), images = new.prepull.images.len(), prune = new.prune.enabled, "configuration reloaded");
                        current = new;
                        shared.metrics.reload.loaded(true);
                        systemd::ready();
                    }
                    Err(e) => {
                        tracing::error!("reload rejected, keeping the running configuration: {e}");
                        shared.metrics.reload.loaded(false);
                    }
                }
            }
        }
    }
    // The tasks are told before the log says so: once "shutting down" is
    // logged, no prune round starts another removal.
    fleet.tell_stop();
    tracing::info!("shutting down");
    systemd::stopping();
    stop_tx.send_replace(true);
    sources.stop().await;
    fleet.stop().await;
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while services.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        services.abort_all();
    }
    Ok(())
}
