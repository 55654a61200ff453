//! The container signals: health and outdated containers, read from each
//! daemon's last poll at scrape time, and restarts, counted by the events
//! task.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::family::{DaemonLabel, Forget, daemon, family_group, gauge_family, per_value};
use crate::labels::HealthStatus;
use crate::state::{PullBoard, State};

/// Reads the container signals of every daemon's last good poll, and the
/// configured pre-pull images from the board: a reload that drops one drops
/// its series at once, not at the daemon's next poll.
pub(super) fn container_gauges(
    (state, board): &(Arc<State>, Arc<PullBoard>),
    enc: &mut DescriptorEncoder,
) -> fmt::Result {
    let all = state.snapshots();
    // A daemon that is down has no numbers, not stale ones.
    let data: Vec<_> = all
        .iter()
        .filter_map(|(n, s)| {
            s.as_ref()
                .and_then(|s| s.data.as_ref())
                .map(|d| (n.as_str(), &d.signals))
        })
        .collect();
    let configured = |daemon: &str, image: &str| {
        board.read(|d| d.get(daemon).is_some_and(|i| i.contains_key(image)))
    };
    gauge_family(
        enc,
        "containers_health",
        "Running containers by health (healthy, unhealthy, starting; none without a healthcheck).",
        per_value::<HealthStatus, _>("status", data.iter().map(|(n, s)| (*n, &s.health[..]))),
    )?;
    gauge_family(
        enc,
        "containers_outdated",
        "Running containers whose tag now names another image than the one they run.",
        data.iter().map(|(n, s)| (daemon(n), s.outdated)),
    )?;
    gauge_family(
        enc,
        "image_containers_outdated",
        "Running containers created from a configured pre-pull image's tag that now names another image.",
        data.iter().flat_map(|(n, s)| {
            s.outdated_by_image
                .iter()
                .filter(|(i, _)| configured(n, i))
                .map(move |(i, c)| ([("daemon", *n), ("image", i.as_str())], *c))
        }),
    )
}

family_group! {
    /// `dockwatch_container_restarts_total`.
    pub struct RestartFamily for DaemonLabel {
        restarts: Family<DaemonLabel, Counter> = "container_restarts", Family::default(), "Containers started again after they died (a restart policy, docker restart, or a stop and start)";
    }
}

impl RestartFamily {
    /// Counts a container started again after it died.
    pub fn count(&self, daemon: &str) {
        self.restarts.get_or_create(&DaemonLabel::new(daemon)).inc();
        self.changes.mark();
    }

    /// Creates the daemon's counter at zero, so `increase()` sees its first
    /// restart.
    pub fn init(&self, daemon: &str) {
        let _ = self.restarts.get_or_create(&DaemonLabel::new(daemon));
        self.changes.mark();
    }
}

impl Forget for RestartFamily {
    fn forget_daemon(&self, daemon: &str) {
        self.forget_series(&DaemonLabel::new(daemon));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::state::{ContainerSignals, DaemonSnapshot, PollData};

    #[test]
    fn signals_follow_the_poll_and_the_configured_images() {
        let state = Arc::new(State::new(["a"]));
        let board = Arc::new(PullBoard::new([(
            "a".to_owned(),
            vec!["x:1".to_owned(), "y:1".to_owned()],
        )]));
        let m = Metrics::new(Arc::clone(&state), Arc::clone(&board), false);
        let has = |text: &str, line: &str| text.contains(&format!("{line}\n"));
        state.publish(
            "a",
            DaemonSnapshot {
                data: Some(PollData {
                    signals: ContainerSignals {
                        health: [0, 1, 0, 2],
                        outdated: 1,
                        outdated_by_image: vec![("x:1".into(), 1), ("y:1".into(), 0)],
                    },
                    ..PollData::default()
                }),
                ..DaemonSnapshot::default()
            },
        );
        let text = m.encode();
        for line in [
            "dockwatch_containers_health{daemon=\"a\",status=\"unhealthy\"} 1",
            "dockwatch_containers_health{daemon=\"a\",status=\"none\"} 2",
            "dockwatch_containers_health{daemon=\"a\",status=\"healthy\"} 0",
            "dockwatch_containers_outdated{daemon=\"a\"} 1",
            "dockwatch_image_containers_outdated{daemon=\"a\",image=\"x:1\"} 1",
            "dockwatch_image_containers_outdated{daemon=\"a\",image=\"y:1\"} 0",
        ] {
            assert!(has(&text, line), "{line} in:\n{text}");
        }

        // A reload drops x:1: its series goes at once.
        board.reset(vec![("a".to_owned(), vec!["y:1".to_owned()])]);
        let text = m.encode();
        assert!(!text.contains("image=\"x:1\""), "{text}");
        assert!(has(
            &text,
            "dockwatch_image_containers_outdated{daemon=\"a\",image=\"y:1\"} 0"
        ));

        // A daemon that is down has no numbers, not stale ones.
        state.publish("a", DaemonSnapshot::default());
        let text = m.encode();
        for family in [
            "containers_health",
            "containers_outdated",
            "image_containers",
        ] {
            assert!(!text.contains(&format!("dockwatch_{family}")), "{text}");
        }

        // The restart counter starts at zero and is dropped with its daemon.
        m.restarts.init("a");
        assert!(has(
            &m.encode(),
            "dockwatch_container_restarts_total{daemon=\"a\"} 0"
        ));
        m.restarts.count("a");
        assert!(has(
            &m.encode(),
            "dockwatch_container_restarts_total{daemon=\"a\"} 1"
        ));
        m.forget_daemon("a");
        assert!(!m.encode().contains("dockwatch_container_restarts_total{"));
    }
}
