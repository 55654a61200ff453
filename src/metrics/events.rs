//! `dockwatch_events_total` and `dockwatch_container_exits_total`, counted
//! by the events task.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::labels::{EVENT_ACTIONS, ExitClass};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    daemon: String,
    // Both values come from closed sets (labels::EVENT_ACTIONS).
    r#type: &'static str,
    action: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExitLabels {
    daemon: String,
    code_class: ExitClass,
}

#[derive(Debug)]
pub(super) struct EventFamilies {
    events: Family<EventLabels, Counter>,
    exits: Family<ExitLabels, Counter>,
}

impl EventFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Docker events seen, by type (container, image) and action",
            events.clone(),
        );
        let exits = Family::<ExitLabels, Counter>::default();
        registry.register(
            "container_exits",
            "Containers that ended, by exit code class (zero, nonzero, oom, signal)",
            exits.clone(),
        );
        Self { events, exits }
    }

    pub(super) fn count_event(&self, daemon: &str, r#type: &'static str, action: &'static str) {
        self.events
            .get_or_create(&EventLabels {
                daemon: daemon.to_owned(),
                r#type,
                action,
            })
            .inc();
    }

    pub(super) fn count_exit(&self, daemon: &str, code_class: ExitClass) {
        self.exits
            .get_or_create(&ExitLabels {
                daemon: daemon.to_owned(),
                code_class,
            })
            .inc();
    }

    /// Creates a daemon's exit counters at zero.
    pub(super) fn init_exits(&self, daemon: &str) {
        for code_class in ExitClass::ALL {
            let _ = self.exits.get_or_create(&ExitLabels {
                daemon: daemon.to_owned(),
                code_class,
            });
        }
    }

    pub(super) fn forget(&self, daemon: &str) {
        for (r#type, actions) in EVENT_ACTIONS {
            for action in actions.iter().copied().chain(["other"]) {
                self.events.remove(&EventLabels {
                    daemon: daemon.to_owned(),
                    r#type,
                    action,
                });
            }
        }
        for code_class in ExitClass::ALL {
            self.exits.remove(&ExitLabels {
                daemon: daemon.to_owned(),
                code_class,
            });
        }
    }
}
