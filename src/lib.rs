//! dockwatch: watches Docker Engine daemons and tells Prometheus what it sees.
//!
//! [`run`] wires it together: one poller task per daemon publishes snapshots
//! into [`state::State`]; the HTTP server encodes them on each scrape.

pub mod bars;
pub mod config;
pub mod credentials;
pub mod disk;
pub mod docker;
pub mod events;
pub mod metrics;
pub mod poller;
pub mod progress;
pub mod puller;
pub mod reference;
pub mod server;
pub mod state;
pub mod systemd;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, Endpoint, ImageFilterConfig, RegistryConfig, parse_host};
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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Runs dockwatch until `shutdown` completes, then stops every task.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    let state = Arc::new(State::new(config.daemons.iter().map(|d| d.name.as_str())));
    let prepulls = prepull_lists(&config);
    let board = Arc::new(PullBoard::new(prepulls.iter().map(|(d, imgs)| {
        (d.clone(), imgs.iter().map(ToString::to_string).collect())
    })));
    let metrics = Arc::new(Metrics::new(Arc::clone(&state), Arc::clone(&board), true));
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, daemons = config.daemons.len(), "serving /metrics");

    let (stop_tx, stop_rx) = watch::channel(false);
    let filters: Arc<[ImageFilterConfig]> = config.image_filters.clone().into();
    let mut tasks = JoinSet::new();
    for daemon in &config.daemons {
        if matches!(parse_host(&daemon.host), Ok(Endpoint::Tcp(_))) && daemon.tls.is_none() {
            tracing::warn!(daemon = %daemon.name, host = %daemon.host, "talking to this daemon over plain TCP: anyone who can reach that port is root on its host; add a [daemons.tls] table for mutual TLS");
        }
        let image_events = Arc::new(tokio::sync::Notify::new());
        tasks.spawn(
            events::EventWatcher {
                daemon: daemon.clone(),
                timeout: config.poll.timeout,
                metrics: Arc::clone(&metrics),
                image_events: Arc::clone(&image_events),
            }
            .run(stop_rx.clone()),
        );
        let poller = Poller {
            daemon: daemon.clone(),
            interval: config.poll.interval,
            images_interval: config.poll.images_interval(),
            image_events,
            timeout: config.poll.timeout,
            filters: Arc::clone(&filters),
            state: Arc::clone(&state),
            metrics: Arc::clone(&metrics),
        };
        tasks.spawn(poller.run(stop_rx.clone()));
    }
    if !config.poll.disk_interval.is_zero() {
        for daemon in &config.daemons {
            let watcher = disk::DiskWatcher {
                daemon: daemon.clone(),
                interval: config.poll.disk_interval,
                state: Arc::clone(&state),
                metrics: Arc::clone(&metrics),
            };
            tasks.spawn(watcher.run(stop_rx.clone()));
        }
    }
    let registries: Arc<[RegistryConfig]> = config.registries.clone().into();
    for daemon in &config.daemons {
        let Some((_, images)) = prepulls.iter().find(|(d, _)| *d == daemon.name) else {
            continue;
        };
        let puller = Puller {
            daemon: daemon.clone(),
            images: images.clone(),
            prepull: config.prepull.clone(),
            registries: Arc::clone(&registries),
            call_timeout: config.poll.timeout,
            board: Arc::clone(&board),
            metrics: Arc::clone(&metrics),
        };
        tasks.spawn(puller.run(stop_rx.clone()));
    }

    let app = server::router(Arc::clone(&metrics), Arc::clone(&state), Arc::clone(&board));
    let mut server_stop = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        // Err only if the sender is gone, which also means stop.
        let _ = server_stop.changed().await;
    });
    tasks.spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    tasks.spawn(systemd::run(
        Arc::clone(&state),
        config.daemons.len(),
        stop_rx.clone(),
    ));

    shutdown.await;
    tracing::info!("shutting down");
    systemd::stopping();
    stop_tx.send_replace(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some tasks did not stop in time; dropping them");
        tasks.abort_all();
    }
    Ok(())
}

/// Each daemon's pre-pull images, in config order; daemons with none are
/// left out. The config was validated, so every reference parses.
fn prepull_lists(config: &Config) -> Vec<(String, Vec<ImageRef>)> {
    config
        .daemons
        .iter()
        .map(|d| {
            let images = config
                .prepull
                .images
                .iter()
                .filter(|i| i.daemons.as_ref().is_none_or(|ds| ds.contains(&d.name)))
                .filter_map(|i| ImageRef::parse(&i.image).ok())
                .collect::<Vec<_>>();
            (d.name.clone(), images)
        })
        .filter(|(_, images)| !images.is_empty())
        .collect()
}
