//! Listens to each daemon's `/events` stream: counts container and image
//! events by action (from a closed set), container exits by code class,
//! restarts (a container started again after it died), and tells the poller
//! to refresh image counts after an image event. Reconnects with backoff and
//! resumes with `since`, so events the daemon still has are not lost across
//! a reconnect.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use crate::clock::unix_now_nanos;
use crate::docker::{Connection, DockerError, Event};
use crate::labels::{ExitClass, event_action};
use crate::metrics::Metrics;
use crate::tasks::image_events::ImageEvents;

/// Containers whose `oom` came but not yet their `die`; bounded.
const MAX_PENDING_OOM: usize = 10_000;
/// Containers that died and have not started again (nor were removed),
/// remembered to count a restart when they start; bounded.
const MAX_DIED: usize = 10_000;

/// The containers that died and have not started since, at most
/// [`MAX_DIED`]: past that the longest dead is forgotten first (a restart
/// policy starts a container again within a minute or so; one dead for
/// longer rarely comes back).
#[derive(Debug, Default)]
struct Died {
    /// Each container's latest death, by a sequence number.
    latest: HashMap<String, u64>,
    /// Deaths in order; entries superseded by a later death of the same
    /// container are skipped when they come up.
    order: VecDeque<(u64, String)>,
    next: u64,
}

impl Died {
    fn insert(&mut self, id: &str) {
        self.next += 1;
        self.latest.insert(id.to_owned(), self.next);
        self.order.push_back((self.next, id.to_owned()));
        while self.latest.len() > MAX_DIED || self.order.len() > 2 * MAX_DIED {
            let Some((seq, old)) = self.order.pop_front() else {
                break;
            };
            if self.latest.get(&old) == Some(&seq) {
                self.latest.remove(&old);
            }
        }
    }

    /// True if the container died and had not started since (and forgets it).
    fn remove(&mut self, id: &str) -> bool {
        self.latest.remove(id).is_some()
    }
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

/// The daemon's clock (`/info`'s `SystemTime`, RFC 3339 in the daemon's
/// zone), in unix nanoseconds.
fn daemon_time(system_time: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(system_time, &time::format_description::well_known::Rfc3339)
            .ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
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

/// A resume asks for events from this long before the last one seen, since
/// Podman's timestamps can step back a little; the replayed ones are
/// recognised and skipped.
const RESUME_OVERLAP_NANOS: i64 = 1_000_000_000;
/// How many recent events are remembered to skip replays.
const RECENT: usize = 4096;

/// One daemon's event listener.
#[derive(Debug, Clone)]
pub struct EventWatcher {
    pub connection: Connection,
    pub metrics: Arc<Metrics>,
    pub image_events: Arc<ImageEvents>,
}

/// What the listener remembers across reconnects.
#[derive(Debug, Default)]
struct Seen {
    /// The latest timeNano seen.
    last: i64,
    /// Recent events, to skip the ones a resume replays.
    recent: HashSet<(i64, String, String)>,
    order: VecDeque<(i64, String, String)>,
    oom: HashSet<String>,
    died: Died,
}

impl Seen {
    /// True if this event was not seen before (and remembers it).
    fn first_time(&mut self, key: (i64, String, String)) -> bool {
        if !self.recent.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT
            && let Some(old) = self.order.pop_front()
        {
            self.recent.remove(&old);
        }
        true
    }
}

impl EventWatcher {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        self.metrics.events.init_exits(self.connection.name());
        self.metrics.restarts.init(self.connection.name());
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
            self.image_events.set_following(false);
            match ended {
                Ok(counted) => {
                    if counted > 0 {
                        backoff = Duration::from_secs(1);
                    }
                    if failing {
                        tracing::info!(daemon = %self.connection.name(), "event stream is back");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(daemon = %self.connection.name(), error = %e, "event stream failed; reconnecting with backoff");
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
    async fn listen(&self, seen: &mut Seen) -> Result<u64, DockerError> {
        if seen.last == 0 {
            // Start from the daemon's own "now", so a reconnect before the
            // first event still resumes from here, whatever our clock says.
            let info = self.connection.info().await?;
            if let Some(t) = info.system_time.as_deref().and_then(daemon_time) {
                seen.last = t + RESUME_OVERLAP_NANOS;
            }
        }
        let mut query = vec![("filters", r#"{"type":["container","image"]}"#.to_owned())];
        if seen.last > 0 {
            query.push(("since", since_of(seen.last - RESUME_OVERLAP_NANOS)));
        }
        let mut stream = self.connection.events(&query).await?;
        // From here on every image change comes as an event (a resume
        // replays what happened while the stream was down).
        self.image_events.set_following(true);
        self.image_events.notify_changed();
        let mut counted = 0;
        while let Some(event) = stream.next().await {
            if self.count(&event?, seen) {
                counted += 1;
            }
        }
        Ok(counted)
    }

    /// Counts one event unless it was counted before (a resume replays).
    fn count(&self, event: &Event, seen: &mut Seen) -> bool {
        let Some(tally) = seen.tally(event) else {
            return false;
        };
        let daemon = self.connection.name();
        self.metrics
            .events
            .count_event(daemon, tally.typ, tally.action);
        if tally.typ == "image" {
            self.image_events.notify_changed();
        }
        if let Some(class) = tally.exit {
            self.metrics.events.count_exit(daemon, class);
        }
        if tally.restart {
            self.metrics.restarts.count(daemon);
        }
        true
    }
}

/// What one event counts as: its type and action (closed sets), for a
/// container's `die` how it exited, and whether a `start` is a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    typ: &'static str,
    action: &'static str,
    exit: Option<ExitClass>,
    restart: bool,
}

impl Seen {
    /// Folds one event in. None for a replay (seen before) and for types
    /// other than container and image. Pure: the caller counts the tally.
    fn tally(&mut self, event: &Event) -> Option<Tally> {
        let time = event
            .time_nano
            .or_else(|| event.time.map(|t| t.saturating_mul(1_000_000_000)))
            .unwrap_or_else(unix_now_nanos);
        let id = event
            .actor
            .as_ref()
            .and_then(|a| a.id.clone())
            .unwrap_or_default();
        let raw_action = event.action.clone().unwrap_or_default();
        if !self.first_time((time, id.clone(), raw_action.clone())) {
            return None;
        }
        self.last = self.last.max(time);
        let typ = match event.typ.as_deref() {
            Some("container") => "container",
            Some("image") => "image",
            _ => return None,
        };
        let action = event_action(typ, &raw_action);
        let mut exit = None;
        let mut restart = false;
        if typ == "container" {
            match action {
                "oom" => {
                    if self.oom.len() >= MAX_PENDING_OOM {
                        self.oom.clear();
                    }
                    self.oom.insert(id);
                }
                "die" => {
                    let attrs = event.actor.as_ref().and_then(|a| a.attributes.as_ref());
                    let code = attrs.and_then(|a| {
                        a.get("exitCode")
                            .or_else(|| a.get("containerExitCode"))
                            .map(String::as_str)
                    });
                    exit = Some(exit_class(code, self.oom.remove(&id)));
                    self.died.insert(&id);
                }
                // A restart policy, `docker restart` and a stop then start
                // all come as `die` ... `start`; a first start has no `die`
                // before.
                "start" => restart = self.died.remove(&id),
                "destroy" => {
                    self.died.remove(&id);
                }
                _ => {}
            }
        }
        Some(Tally {
            typ,
            action,
            exit,
            restart,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::event_action as action_label;

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
        assert_eq!(action_label("container", "remove"), "destroy");
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
    fn reads_the_daemon_clock() {
        let z = "2021-01-01T00:00:00.123456789Z";
        assert_eq!(daemon_time(z), Some(1_609_459_200_123_456_789));
        let off = "2021-01-01T02:00:00+02:00";
        assert_eq!(daemon_time(off), Some(1_609_459_200_000_000_000));
        assert_eq!(daemon_time(""), None);
        assert_eq!(daemon_time("junk"), None);
    }

    /// Every event of a capture that counts, in order.
    fn fold(capture: &str) -> Vec<Tally> {
        let mut seen = Seen::default();
        capture
            .lines()
            .filter_map(|l| seen.tally(&serde_json::from_str(l).expect("a captured event")))
            .collect()
    }

    fn actions(tallies: &[Tally], typ: &str) -> Vec<&'static str> {
        tallies
            .iter()
            .filter(|t| t.typ == typ)
            .map(|t| t.action)
            .collect()
    }

    /// The same actions on dockerd 20.10 and on Docker 26 with the
    /// containerd image store (stop of a sleeping container, exit 3, kill,
    /// an OOM kill under -m 8m, tag + rmi, import + rmi, a pull): the same
    /// exits, in a different order of events.
    #[test]
    fn captured_events_of_both_image_stores() {
        use ExitClass::{Nonzero, Oom, Signal};
        let classic = fold(include_str!("../../tests/streams/events-dockerd.jsonl"));
        let containerd = fold(include_str!(
            "../../tests/streams/docker-26-containerd-events.jsonl"
        ));
        for (store, tallies) in [("classic", &classic), ("containerd", &containerd)] {
            let exits: Vec<_> = tallies.iter().filter_map(|t| t.exit).collect();
            assert_eq!(exits, [Signal, Nonzero, Signal, Oom], "{store}");
            let container_actions = actions(tallies, "container");
            for (action, n) in [
                ("create", 4),
                ("start", 4),
                ("die", 4),
                ("oom", 1),
                ("kill", 3),
            ] {
                let got = container_actions.iter().filter(|a| **a == action).count();
                assert_eq!(got, n, "{store}: container {action}");
            }
            // Network events are not counted.
            assert!(tallies.iter().all(|t| t.typ != "network"), "{store}");
            // Each container started once: no restart.
            assert!(tallies.iter().all(|t| !t.restart), "{store}");
        }
        // dockerd 20.10 tags an import before it says `import`; the
        // containerd store only says `import`.
        assert_eq!(
            actions(&classic, "image"),
            ["tag", "untag", "tag", "import", "untag", "delete", "pull"]
        );
        assert_eq!(
            actions(&containerd, "image"),
            ["tag", "untag", "import", "untag", "delete", "pull"]
        );
        // 20.10 sends `die` before `stop`, the containerd store after it:
        // the exit is the same.
        let stop_then_die: Vec<_> = actions(&containerd, "container")
            .into_iter()
            .filter(|a| ["other", "die"].contains(a))
            .take(2)
            .collect();
        assert_eq!(stop_then_die, ["other", "die"]);
    }

    #[test]
    fn replayed_events_are_not_counted_again() {
        let capture = include_str!("../../tests/streams/docker-26-containerd-events.jsonl");
        let mut seen = Seen::default();
        let first = capture
            .lines()
            .filter_map(|l| seen.tally(&serde_json::from_str(l).expect("event")))
            .count();
        // 33 events, 8 of them network ones.
        assert_eq!(first, 25);
        for l in capture.lines() {
            assert_eq!(seen.tally(&serde_json::from_str(l).expect("event")), None);
        }
    }

    /// Counts every line of a recorded stream; returns the exposition.
    fn count_stream(name: &str) -> String {
        count_lines(&String::from_utf8_lossy(&crate::config::files::fixture(
            name,
        )))
    }

    /// Counts every line of `text` (one event each); returns the exposition.
    fn count_lines(text: &str) -> String {
        let state = Arc::new(crate::state::State::default());
        let board = Arc::new(crate::state::PullBoard::default());
        let metrics = Arc::new(Metrics::new(state, board, false));
        let daemon = crate::config::DaemonConfig {
            name: "d".into(),
            host: crate::config::Host::parse("unix:///nonexistent.sock").expect("a host"),
            tls: None,
        };
        let watcher = EventWatcher {
            connection: Connection::new(
                &daemon,
                Duration::from_secs(1),
                Arc::new(crate::docker::Unobserved),
            ),
            metrics: Arc::clone(&metrics),
            image_events: Arc::new(ImageEvents::default()),
        };
        let mut seen = Seen::default();
        for line in text.lines() {
            let event: Event = serde_json::from_str(line).expect("an event");
            watcher.count(&event, &mut seen);
        }
        metrics.encode()
    }

    /// Docker 29 (API 1.52) events have no legacy `status`, `id` or `from`:
    /// type, action and actor are all that is read.
    #[test]
    fn api_1_52_events_count() {
        let text = count_stream("api-1.52-events.jsonl");
        for line in [
            "dockwatch_events_total{daemon=\"d\",type=\"container\",action=\"start\"} 1",
            "dockwatch_events_total{daemon=\"d\",type=\"container\",action=\"health_status\"} 1",
            "dockwatch_events_total{daemon=\"d\",type=\"container\",action=\"die\"} 2",
            "dockwatch_events_total{daemon=\"d\",type=\"image\",action=\"pull\"} 1",
            "dockwatch_events_total{daemon=\"d\",type=\"image\",action=\"untag\"} 1",
            "dockwatch_container_exits_total{daemon=\"d\",code_class=\"oom\"} 1",
            "dockwatch_container_exits_total{daemon=\"d\",code_class=\"zero\"} 1",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in:\n{text}");
        }
        assert!(!text.contains("network"), "{text}");
    }

    #[test]
    fn since_has_nanoseconds() {
        assert_eq!(since_of(1_700_000_000_000_000_123), "1700000000.000000123");
    }

    #[test]
    fn died_is_bounded_and_forgets_the_longest_dead() {
        let mut d = Died::default();
        // A container in a restart loop dies again and again.
        for _ in 0..3 * MAX_DIED {
            d.insert("loop");
            assert!(d.remove("loop"));
        }
        assert!(!d.remove("loop"), "started since its last death");
        for i in 0..=MAX_DIED {
            d.insert(&i.to_string());
        }
        assert_eq!(d.latest.len(), MAX_DIED);
        assert!(!d.remove("0"), "the longest dead is forgotten");
        assert!(d.remove(&MAX_DIED.to_string()));
        // Dying again moves a container to the back.
        d.insert("1");
        d.insert("x");
        d.insert("y");
        assert!(d.remove("1"));
        assert!(d.order.len() <= 2 * MAX_DIED);
    }

    /// Restarts from the sequences dockerd sent on the test bed: create,
    /// start, then a restart policy's die/start pairs; a `docker restart`
    /// (kill, die, stop, start, restart); and a removed container, whose
    /// death is forgotten (no id starts again after `destroy`).
    #[test]
    fn restarts_are_starts_after_a_death() {
        use std::fmt::Write as _;
        let mut text = String::new();
        let mut t = 0;
        let mut feed = |id: &str, action: &str| {
            t += 1;
            // Writing to a String cannot fail.
            let _ = writeln!(
                text,
                r#"{{"Type":"container","Action":"{action}","Actor":{{"ID":"{id}","Attributes":{{"exitCode":"1"}}}},"timeNano":{t}}}"#
            );
        };
        for a in ["create", "start", "die", "start", "die", "start", "die"] {
            feed("loop", a);
        }
        for a in ["create", "start", "kill", "die", "stop", "start", "restart"] {
            feed("manual", a);
        }
        for a in ["create", "start", "die", "destroy", "start"] {
            feed("gone", a);
        }
        let text = count_lines(&text);
        assert!(
            text.contains("dockwatch_container_restarts_total{daemon=\"d\"} 3\n"),
            "{text}"
        );
    }
}
