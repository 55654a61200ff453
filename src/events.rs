//! Listens to each daemon's `/events` stream: counts container and image
//! events by action (from a closed set), container exits by code class, and
//! tells the poller to refresh image counts after an image event. Reconnects
//! with backoff and resumes with `since`, so events the daemon still has are
//! not lost across a reconnect.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use tokio::sync::{Notify, watch};

use crate::config::DaemonConfig;
use crate::docker;
use crate::metrics::{ExitClass, Metrics};

/// Container actions counted by name; the rest count as `other`.
const CONTAINER_ACTIONS: [&str; 8] = [
    "create",
    "start",
    "die",
    "kill",
    "oom",
    "restart",
    "destroy",
    "health_status",
];
/// Image actions counted by name; the rest count as `other`.
const IMAGE_ACTIONS: [&str; 6] = ["pull", "tag", "untag", "delete", "import", "prune"];

/// Every (type, actions) pair; `other` completes each set.
pub const ACTIONS: [(&str, &[&str]); 2] =
    [("container", &CONTAINER_ACTIONS), ("image", &IMAGE_ACTIONS)];

/// Containers whose `oom` came but not yet their `die`; bounded.
const MAX_PENDING_OOM: usize = 10_000;

/// The event's action in the closed set of its type.
pub fn action_label(typ: &str, action: &str) -> &'static str {
    // "health_status: healthy" and the like carry a suffix.
    let base = action.split(':').next().unwrap_or(action).trim();
    // Podman says "remove" where dockerd says "delete".
    let base = if typ == "image" && base == "remove" {
        "delete"
    } else {
        base
    };
    let set: &[&'static str] = match typ {
        "container" => &CONTAINER_ACTIONS,
        "image" => &IMAGE_ACTIONS,
        _ => &[],
    };
    set.iter().copied().find(|a| *a == base).unwrap_or("other")
}

/// How a container ended, from its `die` event's exit code and whether an
/// `oom` came first.
pub fn exit_class(exit_code: Option<&str>, oom: bool) -> ExitClass {
    if oom {
        return ExitClass::Oom;
    }
    match exit_code.and_then(|c| c.trim().parse::<i64>().ok()) {
        Some(0) => ExitClass::Zero,
        // 128 + N: ended by signal N.
        Some(c) if (129..=128 + 64).contains(&c) => ExitClass::Signal,
        _ => ExitClass::Nonzero,
    }
}

/// `since` for a resume: the time of the last event seen, in the
/// `seconds.nanoseconds` form the Engine API takes.
fn since_of(time_nano: i64) -> String {
    format!(
        "{}.{:09}",
        time_nano.div_euclid(1_000_000_000),
        time_nano.rem_euclid(1_000_000_000)
    )
}

fn now_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// One daemon's event listener.
#[derive(Debug, Clone)]
pub struct EventWatcher {
    pub daemon: DaemonConfig,
    pub timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub image_events: Arc<Notify>,
}

/// What the listener remembers across reconnects.
#[derive(Debug, Default)]
struct Seen {
    /// timeNano of the last event counted.
    last: i64,
    oom: HashSet<String>,
}

impl EventWatcher {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        self.metrics.init_exits(&self.daemon.name);
        // The first connect takes events from now on, by the daemon's clock
        // (a remote daemon's clock may differ from ours); resumes go on from
        // the last event's own time.
        let mut seen = Seen::default();
        let mut backoff = Duration::from_secs(1);
        let mut failing = false;
        loop {
            let ended = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                r = self.listen(&mut seen) => r,
            };
            match ended {
                Ok(counted) => {
                    if counted > 0 {
                        backoff = Duration::from_secs(1);
                    }
                    if failing {
                        tracing::info!(daemon = %self.daemon.name, "event stream is back");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(daemon = %self.daemon.name, error = %e, "event stream failed; reconnecting with backoff");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Follows the stream until it ends; returns how many events it counted.
    async fn listen(&self, seen: &mut Seen) -> Result<u64, docker::DockerError> {
        let docker = docker::connect(&self.daemon, self.timeout)?;
        let options = EventsOptions {
            since: (seen.last > 0).then(|| since_of(seen.last)),
            until: None,
            filters: Some(HashMap::from([(
                "type".to_owned(),
                vec!["container".to_owned(), "image".to_owned()],
            )])),
        };
        let mut stream = docker.events(Some(options));
        let mut counted = 0;
        while let Some(item) = stream.next().await {
            let event = item.map_err(|e| docker::classify(&e, self.timeout))?;
            if self.count(&event, seen) {
                counted += 1;
            }
        }
        Ok(counted)
    }

    /// Counts one event unless it was counted before (a resume repeats the
    /// events of the `since` instant).
    fn count(&self, event: &EventMessage, seen: &mut Seen) -> bool {
        let time = event
            .time_nano
            .or_else(|| event.time.map(|t| t.saturating_mul(1_000_000_000)))
            .unwrap_or_else(now_nano);
        if time <= seen.last {
            return false;
        }
        seen.last = time;
        let typ = match event.typ {
            Some(EventMessageTypeEnum::CONTAINER) => "container",
            Some(EventMessageTypeEnum::IMAGE) => "image",
            _ => return false,
        };
        let raw_action = event.action.as_deref().unwrap_or("");
        let action = action_label(typ, raw_action);
        self.metrics.count_event(&self.daemon.name, typ, action);
        if typ == "image" {
            self.image_events.notify_one();
            return true;
        }
        let id = event
            .actor
            .as_ref()
            .and_then(|a| a.id.clone())
            .unwrap_or_default();
        match action {
            "oom" => {
                if seen.oom.len() >= MAX_PENDING_OOM {
                    seen.oom.clear();
                }
                seen.oom.insert(id);
            }
            "die" => {
                let attrs = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
                let code = attrs.and_then(|a| {
                    a.get("exitCode")
                        .or_else(|| a.get("containerExitCode"))
                        .map(String::as_str)
                });
                let class = exit_class(code, seen.oom.remove(&id));
                self.metrics.count_exit(&self.daemon.name, class);
            }
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_map_onto_closed_sets() {
        assert_eq!(action_label("container", "die"), "die");
        assert_eq!(
            action_label("container", "health_status: healthy"),
            "health_status"
        );
        assert_eq!(action_label("container", "exec_create: sh"), "other");
        assert_eq!(action_label("container", "attach"), "other");
        assert_eq!(action_label("image", "untag"), "untag");
        assert_eq!(action_label("image", "remove"), "delete");
        assert_eq!(action_label("image", "load"), "other");
        assert_eq!(action_label("network", "connect"), "other");
    }

    #[test]
    fn exit_classes() {
        assert_eq!(exit_class(Some("0"), false), ExitClass::Zero);
        assert_eq!(exit_class(Some("3"), false), ExitClass::Nonzero);
        assert_eq!(exit_class(Some("137"), false), ExitClass::Signal);
        assert_eq!(exit_class(Some("143"), false), ExitClass::Signal);
        assert_eq!(exit_class(Some("137"), true), ExitClass::Oom);
        assert_eq!(exit_class(Some("255"), false), ExitClass::Nonzero);
        assert_eq!(exit_class(None, false), ExitClass::Nonzero);
        assert_eq!(exit_class(Some("junk"), false), ExitClass::Nonzero);
    }

    #[test]
    fn since_has_nanoseconds() {
        assert_eq!(since_of(1_700_000_000_000_000_123), "1700000000.000000123");
    }
}
