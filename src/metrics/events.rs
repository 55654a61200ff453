//! `dockwatch_events_total` and `dockwatch_container_exits_total`, counted
//! by the events task.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::family::{ByValue, DaemonLabel, Forget, Series, family_group};
use crate::labels::{EVENT_ACTIONS, ExitClass};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    daemon: String,
    // Both values come from closed sets (labels::EVENT_ACTIONS).
    r#type: &'static str,
    action: &'static str,
}

family_group! {
    pub struct EventFamilies {
        events: Family<EventLabels, Counter> = "events", Family::default(), "Docker events seen, by type (container, image) and action";
        exits: ByValue<DaemonLabel, ExitClass> = "container_exits", ByValue::new("code_class"), "Containers that ended, by exit code class (zero, nonzero, oom, signal)";
    }
}

impl EventFamilies {
    /// Counts one event; `type` and `action` from [`EVENT_ACTIONS`].
    pub fn count_event(&self, daemon: &str, r#type: &'static str, action: &'static str) {
        self.events
            .get_or_create(&EventLabels {
                daemon: daemon.to_owned(),
                r#type,
                action,
            })
            .inc();
        self.changes.mark();
    }

    /// Counts one container that ended.
    pub fn count_exit(&self, daemon: &str, code_class: ExitClass) {
        self.exits.get(&DaemonLabel::new(daemon), code_class).inc();
        self.changes.mark();
    }

    /// Creates a daemon's exit counters at zero.
    pub fn init_exits(&self, daemon: &str) {
        self.exits.init(&DaemonLabel::new(daemon), &ExitClass::ALL);
        self.changes.mark();
    }
}

impl Forget for EventFamilies {
    fn forget_daemon(&self, daemon: &str) {
        for (r#type, actions) in EVENT_ACTIONS {
            for action in actions.iter().copied().chain(["other"]) {
                self.events.remove(&EventLabels {
                    daemon: daemon.to_owned(),
                    r#type,
                    action,
                });
            }
        }
        self.exits.forget(&DaemonLabel::new(daemon));
        self.changes.mark();
    }
}
