//! The container signals: health and outdated containers, read from each
//! daemon's last poll at scrape time, and restarts, counted by the events
//! task.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::family::{daemon, gauge_family};
use crate::labels::HealthStatus;
use crate::state::State;

/// Reads the container signals of every daemon's last good poll.
#[derive(Debug)]
pub(super) struct ContainerCollector {
    pub(super) state: Arc<State>,
}

impl Collector for ContainerCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let all = self.state.snapshots();
        // A daemon that is down has no numbers, not stale ones.
        let data: Vec<_> = all
            .iter()
            .filter_map(|(n, s)| {
                s.as_ref()
                    .and_then(|s| s.data.as_ref())
                    .map(|d| (n.as_str(), &d.signals))
            })
            .collect();
        gauge_family(
            &mut enc,
            "containers_health",
            "Running containers by health (healthy, unhealthy, starting; none without a healthcheck).",
            data.iter().flat_map(|(n, s)| {
                HealthStatus::ALL.iter().map(move |h| {
                    (
                        [("daemon", *n), ("status", h.as_str())],
                        s.health[*h as usize],
                    )
                })
            }),
        )?;
        gauge_family(
            &mut enc,
            "containers_outdated",
            "Running containers whose tag now names another image than the one they run.",
            data.iter().map(|(n, s)| (daemon(n), s.outdated)),
        )?;
        gauge_family(
            &mut enc,
            "image_containers_outdated",
            "Running containers created from a configured pre-pull image's tag that now names another image.",
            data.iter().flat_map(|(n, s)| {
                s.outdated_by_image
                    .iter()
                    .map(move |(i, c)| ([("daemon", *n), ("image", i.as_str())], *c))
            }),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DaemonLabel {
    daemon: String,
}

/// `dockwatch_container_restarts_total`.
#[derive(Debug)]
pub(super) struct RestartFamily {
    restarts: Family<DaemonLabel, Counter>,
}

impl RestartFamily {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let restarts = Family::<DaemonLabel, Counter>::default();
        registry.register(
            "container_restarts",
            "Containers started again after they died (a restart policy, docker restart, or a stop and start)",
            restarts.clone(),
        );
        Self { restarts }
    }

    fn label(daemon: &str) -> DaemonLabel {
        DaemonLabel {
            daemon: daemon.to_owned(),
        }
    }

    pub(super) fn count(&self, daemon: &str) {
        self.restarts.get_or_create(&Self::label(daemon)).inc();
    }

    /// Creates the daemon's counter at zero, so `increase()` sees its first
    /// restart.
    pub(super) fn init(&self, daemon: &str) {
        let _ = self.restarts.get_or_create(&Self::label(daemon));
    }

    pub(super) fn forget(&self, daemon: &str) {
        self.restarts.remove(&Self::label(daemon));
    }
}
