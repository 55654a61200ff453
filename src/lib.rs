//! dockwatch: watches Docker Engine daemons and tells Prometheus what it sees.
//!
//! [`run`] wires it together: one connection per daemon, shared by that
//! daemon's tasks (poller, events, disk, puller), which publish into
//! [`state::State`], the pull board and the counters; the HTTP server only
//! reads them. The modules are listed from the bottom up: each uses only
//! modules listed before it.

pub mod checks;
pub mod config;
pub mod credentials;
pub mod df;
pub mod disk;
pub mod docker;
pub mod events;
pub mod files;
pub mod labels;
pub mod metrics;
pub mod poller;
pub mod progress;
pub mod puller;
pub mod reference;
pub mod server;
pub mod state;
pub mod systemd;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, Endpoint, ImageFilterConfig, RegistryConfig};
use crate::docker::Connection;
use crate::metrics::Metrics;
use crate::poller::Poller;
use crate::puller::Puller;
use crate::reference::ImageRef;
use crate::state::{PullBoard, State};

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
}

/// The tasks that watch the configured daemons: one generation per
/// configuration, replaced whole on reload.
#[derive(Debug)]
struct Watchers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Watchers {
    fn start(config: &Config, shared: &Shared) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let filters: Arc<[ImageFilterConfig]> = config.image_filters.clone().into();
        let registries: Arc<[RegistryConfig]> = config.registries.clone().into();
        let prepulls = prepull_lists(config);
        let observer: Arc<dyn docker::Observer> = shared.metrics.clone();
        let count = config.daemons.len();
        let calls = Arc::new(tokio::sync::Semaphore::new(
            config
                .poll
                .max_concurrent_calls
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        for (index, daemon) in config.daemons.iter().enumerate() {
            if matches!(daemon.host.endpoint, Endpoint::Tcp(_)) && daemon.tls.is_none() {
                tracing::warn!(daemon = %daemon.name, host = %daemon.host, "talking to this daemon over plain TCP: anyone who can reach that port is root on its host; add a [daemons.tls] table for mutual TLS");
            }
            // The one connection every task of this daemon goes through.
            let connection = Connection::limited(
                daemon,
                config.poll.timeout,
                Arc::clone(&observer),
                Some(Arc::clone(&calls)),
            );
            let image_events = Arc::new(tokio::sync::Notify::new());
            let events = events::EventWatcher {
                connection: connection.clone(),
                metrics: Arc::clone(&shared.metrics),
                image_events: Arc::clone(&image_events),
            };
            tasks.spawn(events.run(stop_rx.clone()));
            let poller = Poller {
                daemon: daemon.clone(),
                connection: connection.clone(),
                interval: config.poll.interval,
                first_poll: poller::spread(index, count, config.poll.interval),
                images_interval: config.poll.images_interval(),
                image_events,
                filters: Arc::clone(&filters),
                state: Arc::clone(&shared.state),
            };
            tasks.spawn(poller.run(stop_rx.clone()));
            if !config.poll.disk_interval.is_zero() {
                let disk = disk::DiskWatcher {
                    connection: connection.clone(),
                    interval: config.poll.disk_interval,
                    first: poller::spread(index, count, config.poll.disk_interval),
                    state: Arc::clone(&shared.state),
                };
                tasks.spawn(disk.run(stop_rx.clone()));
            }
            if let Some((_, images)) = prepulls.iter().find(|(d, _)| *d == daemon.name) {
                let prepuller = Puller {
                    connection,
                    images: images.clone(),
                    prepull: config.prepull.clone(),
                    registries: Arc::clone(&registries),
                    board: Arc::clone(&shared.board),
                    metrics: Arc::clone(&shared.metrics),
                };
                tasks.spawn(prepuller.run(stop_rx.clone()));
            }
        }
        Self { stop, tasks }
    }

    /// Stops every task, waiting up to [`SHUTDOWN_GRACE`].
    async fn stop(mut self) {
        self.stop.send_replace(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("some tasks did not stop in time; dropping them");
            self.tasks.abort_all();
        }
    }
}

/// Each daemon's configured pre-pull images, as labels.
fn image_labels(config: &Config) -> Vec<(String, Vec<String>)> {
    prepull_lists(config)
        .into_iter()
        .map(|(d, imgs)| (d, imgs.iter().map(ToString::to_string).collect()))
        .collect()
}

/// Brings the shared state from `old` to `new`: what belongs to daemons and
/// images that are gone is dropped, so their series disappear.
fn reconcile(shared: &Shared, old: &Config, new: &Config) {
    let names: Vec<&str> = new.daemons.iter().map(|d| d.name.as_str()).collect();
    shared.state.retain(&names);
    let new_images = image_labels(new);
    for (daemon, images) in image_labels(old) {
        let kept = new_images.iter().find(|(d, _)| *d == daemon);
        for image in images {
            if !kept.is_some_and(|(_, imgs)| imgs.contains(&image)) {
                shared.metrics.forget_image(&daemon, &image);
            }
        }
    }
    for d in &old.daemons {
        if !names.contains(&d.name.as_str()) {
            shared.metrics.forget_daemon(&d.name);
        }
    }
    shared.board.reset(new_images);
}

/// Runs dockwatch until `shutdown` completes, then stops every task. Each
/// message on `reload` re-reads the configuration with `load`: a good one
/// replaces the watchers, a bad one is logged and the old one kept.
pub async fn run(
    config: Config,
    load: impl Fn() -> Result<Config, config::ConfigError> + Send,
    mut reload: tokio::sync::mpsc::Receiver<()>,
    reload_tx: Option<tokio::sync::mpsc::Sender<()>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let state = Arc::new(State::new(config.daemons.iter().map(|d| d.name.as_str())));
    let board = Arc::new(PullBoard::new(image_labels(&config)));
    let metrics = Arc::new(Metrics::new(Arc::clone(&state), Arc::clone(&board), true));
    let shared = Shared {
        state,
        board,
        metrics,
    };
    let addr = config.server.listen;
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(
            tls::server_config(cert, key)
                .map_err(|(field, e)| RunError::Tls(format!("server.{field}: {e}")))?,
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
    shared.metrics.config_loaded(true);

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
    let mut watchers = Watchers::start(&current, &shared);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = reload.recv() => {
                match load() {
                    Ok(new) => {
                        if new.server != current.server {
                            tracing::warn!("[server] changes take effect at the next restart");
                        }
                        systemd::reloading();
                        watchers.stop().await;
                        reconcile(&shared, &current, &new);
                        watchers = Watchers::start(&new, &shared);
                        tracing::info!(daemons = new.daemons.len(), images = new.prepull.images.len(), "configuration reloaded");
                        current = new;
                        shared.metrics.config_loaded(true);
                        systemd::ready();
                    }
                    Err(e) => {
                        tracing::error!("reload rejected, keeping the running configuration: {e}");
                        shared.metrics.config_loaded(false);
                    }
                }
            }
        }
    }
    tracing::info!("shutting down");
    systemd::stopping();
    stop_tx.send_replace(true);
    watchers.stop().await;
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while services.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        services.abort_all();
    }
    Ok(())
}

/// Each daemon's pre-pull images, in config order; daemons with none are
/// left out.
fn prepull_lists(config: &Config) -> Vec<(String, Vec<ImageRef>)> {
    config
        .daemons
        .iter()
        .map(|d| (d.name.clone(), config.images_for(&d.name)))
        .filter(|(_, images)| !images.is_empty())
        .collect()
}
