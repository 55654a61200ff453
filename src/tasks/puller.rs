//! Pre-pulls: one task per daemon pulls its configured images at start-up
//! and every `[prepull].interval` (after a random jitter), a few at a time,
//! retrying failures sooner with exponential backoff. Scheduled pulls start
//! only inside a pre-pull window (when windows are set) and never while the
//! image's registry host is rate-limited (the agent-wide gate of
//! [`crate::folds::ratelimit`]). One pull is one `POST /images/create` stream
//! folded by [`crate::folds::progress`]; closing the stream (on a stall, the
//! timeout or shutdown) cancels the pull on the daemon. A pull already
//! running is never cut by a window closing.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clock::unix_now;
use crate::config::credentials::{self, DockerCredentials};
use crate::docker::Connection;
use crate::folds::progress::{Finish, Progress, PullEvent};
use crate::folds::ratelimit::{backoff, retry_after_hint};
use crate::folds::reference::ImageRef;
use crate::folds::window::{self, Window};
use crate::labels::{FailReason, PullResult};
use crate::metrics::Metrics;
use crate::state::{FinishedPull, PruneMemory, RunningPull};
use crate::tasks::PrepullDaemon;
use crate::tasks::failure::{classify_error, classify_message};
use crate::tasks::schedule::{random_below, sleep_until_opt};

/// Time limits of one pull.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub stall_timeout: Duration,
}

/// How one pull ended.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    pub result: PullResult,
    pub reason: Option<FailReason>,
    /// Canceled for making no progress for the stall timeout.
    pub stalled: bool,
    pub message: Option<String>,
    pub progress: Progress,
    pub duration: Duration,
}

/// The result, reason and message of a pull from how its stream ended and
/// what it said.
fn outcome_of(
    end: Result<(), (FailReason, String)>,
    progress: &Progress,
) -> (PullResult, Option<FailReason>, Option<String>) {
    match (end, &progress.error, progress.finish) {
        (Err((reason, msg)), _, _) => (PullResult::Failed, Some(reason), Some(msg)),
        (Ok(()), Some(msg), _) => (
            PullResult::Failed,
            Some(classify_message(msg).unwrap_or(FailReason::Registry)),
            Some(msg.clone()),
        ),
        (Ok(()), None, Some(Finish::Updated)) => (PullResult::Updated, None, None),
        (Ok(()), None, Some(Finish::UpToDate)) => (PullResult::UpToDate, None, None),
        (Ok(()), None, None) => match progress.ending_without_status() {
            Some(Finish::Updated) => (PullResult::Updated, None, None),
            Some(Finish::UpToDate) => (PullResult::UpToDate, None, None),
            None => (
                PullResult::Failed,
                Some(FailReason::Daemon),
                Some("the pull stream ended without a final status".into()),
            ),
        },
    }
}

/// Pulls one image, calling `on_progress` whenever the fold moves forward.
/// Ends on the final status, an error, `limits`, or `shutdown`; in every
/// case but the first the stream is dropped, which cancels the pull on the
/// daemon.
pub async fn pull_image(
    connection: &Connection,
    image: &ImageRef,
    credentials: Option<DockerCredentials>,
    limits: Limits,
    shutdown: &mut watch::Receiver<bool>,
    mut on_progress: impl FnMut(&Progress),
) -> PullOutcome {
    let started = Instant::now();
    let secrets = credentials
        .as_ref()
        .map(DockerCredentials::secrets)
        .unwrap_or_default();
    let mut stream = connection.pull(image, credentials.as_ref().map(DockerCredentials::header));
    let deadline = started + limits.timeout;
    let mut progress = Progress::default();
    let mut last_advance = Instant::now();
    // dockerd answers a registry that went away with "Retrying in N seconds"
    // countdowns for minutes; they are not progress, but they say why.
    let mut retrying = false;
    let mut stalled = false;
    let end: Result<(), (FailReason, String)> = loop {
        if *shutdown.borrow() {
            break Err((FailReason::Canceled, "dockwatch is shutting down".into()));
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                break Err((FailReason::Canceled, "dockwatch is shutting down".into()));
            }
            () = tokio::time::sleep_until(deadline) => {
                break Err((
                    FailReason::Timeout,
                    format!("the pull took longer than prepull.timeout ({:?})", limits.timeout),
                ));
            }
            () = tokio::time::sleep_until(last_advance + limits.stall_timeout) => {
                stalled = true;
                break Err(if retrying {
                    (
                        FailReason::Network,
                        format!("the registry stopped answering: the daemon kept retrying layer downloads with no progress for prepull.stall_timeout ({:?}); canceled", limits.stall_timeout),
                    )
                } else {
                    (
                        FailReason::Stalled,
                        format!("no progress for prepull.stall_timeout ({:?}); canceled", limits.stall_timeout),
                    )
                });
            }
            item = stream.next() => match item {
                None => break Ok(()),
                Some(Ok(line)) if line.iter().all(u8::is_ascii_whitespace) => {}
                Some(Ok(line)) => {
                    let event = match PullEvent::parse(&line) {
                        Ok(e) => e,
                        Err(e) => break Err((
                            FailReason::Daemon,
                            format!("the daemon sent a line that is not a pull event ({e})"),
                        )),
                    };
                    if progress.apply(&event) {
                        last_advance = Instant::now();
                        retrying = false;
                        on_progress(&progress);
                    } else if event.status.as_deref().is_some_and(|s| s.starts_with("Retrying in")) {
                        retrying = true;
                    }
                }
                Some(Err(e)) => break Err(classify_error(e)),
            },
        }
    };
    // Closing the connection is what cancels an unfinished pull on the daemon.
    drop(stream);
    let (result, reason, message) = outcome_of(end, &progress);
    // A registry could echo what it was sent; never pass a secret on.
    let message = message.map(|mut m| {
        for s in &secrets {
            m = m.replace(s.as_str(), "***");
        }
        m
    });
    PullOutcome {
        result,
        reason,
        stalled,
        message,
        progress,
        duration: started.elapsed(),
    }
}

/// The longest the puller sleeps without looking at the wall clock again,
/// so a window opens on time even if the clock was set meanwhile.
const WINDOW_RECHECK: Duration = Duration::from_secs(60);

/// Whether scheduled pulls may start at the wall-clock time `wall`, and
/// how long until that may change (at most [`WINDOW_RECHECK`]; `None` when
/// it never does). The clock is the caller's, so this is pure.
pub fn window_state(windows: &[Window], wall: jiff::Timestamp) -> (bool, Option<Duration>) {
    let open = window::is_open(windows, wall);
    let next = window::next_change(windows, wall).map(|t| {
        Duration::try_from(wall.duration_until(t))
            .unwrap_or(Duration::ZERO)
            .min(WINDOW_RECHECK)
    });
    (open, next)
}

/// One daemon's pre-puller.
#[derive(Debug, Clone)]
pub struct Puller {
    pub daemon: PrepullDaemon,
    pub metrics: Arc<Metrics>,
    /// Set while pruning is on: the image each reference names when a pull
    /// begins is noted there, at the start and again at the end of the
    /// pull, so the pruner keeps an image a pull moved the tag off.
    pub prune_memory: Option<Arc<PruneMemory>>,
}

impl Puller {
    /// Pulls each image when it is due, at most `concurrency` at once, and
    /// only while a pre-pull window is open and the image's registry is not
    /// rate-limited. Each image keeps its own schedule: a slow pull of one
    /// never holds back the retries of another. Due images start in config
    /// order.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let daemon = self.daemon.connection.name().to_owned();
        for image in &self.daemon.images {
            self.metrics.pulls.init_image(&daemon, &image.to_string());
        }
        let n = self.daemon.images.len();
        let this = Arc::new(self);
        let start = Instant::now();
        let mut due: Vec<Instant> = (0..n)
            .map(|_| start + random_below(this.daemon.prepull.jitter))
            .collect();
        let mut failures = vec![0_u32; n];
        let mut in_flight = vec![false; n];
        let mut running: JoinSet<(usize, bool)> = JoinSet::new();
        let limit = this.daemon.prepull.concurrency.max(1);
        let mut was_open: Option<bool> = None;
        loop {
            let now = Instant::now();
            let (open, window_change) =
                window_state(&this.daemon.prepull.windows, jiff::Timestamp::now());
            if was_open != Some(open) {
                this.daemon.board.set_window_open(&daemon, open);
                if !this.daemon.prepull.windows.is_empty() {
                    tracing::info!(daemon = %daemon, open, "pre-pull window {}", if open { "open: scheduled pulls may start" } else { "closed: scheduled pulls wait for the next one" });
                }
                // What fell due while the window was closed starts now,
                // spread by the jitter as a round is.
                if open && was_open.is_some() {
                    for d in &mut due {
                        if *d <= now {
                            *d = now + random_below(this.daemon.prepull.jitter);
                        }
                    }
                }
                was_open = Some(open);
            }
            if open {
                for i in 0..n {
                    if running.len() >= limit {
                        break;
                    }
                    if in_flight[i] || due[i] > now {
                        continue;
                    }
                    let host = &this.daemon.images[i].registry;
                    if let Some(until) = this.daemon.gate.closed_until(host, now) {
                        tracing::debug!(daemon = %daemon, image = %this.daemon.images[i], registry = %host, wait_seconds = (until - now).as_secs_f64(), "registry is rate-limited; the pull waits");
                        due[i] = until;
                        continue;
                    }
                    in_flight[i] = true;
                    let this = Arc::clone(&this);
                    let shutdown = shutdown.clone();
                    running.spawn(async move {
                        (i, this.pull_one(&this.daemon.images[i], shutdown).await)
                    });
                }
            }
            let next = (0..n)
                .filter(|&i| !in_flight[i])
                .map(|i| due[i])
                .min()
                .filter(|_| open);
            let can_start = running.len() < limit;
            tokio::select! {
                biased;
                _ = shutdown.changed() => {
                    // The pulls see the same signal and cancel themselves.
                    while running.join_next().await.is_some() {}
                    return;
                }
                Some(done) = running.join_next(), if !running.is_empty() => {
                    let Ok((i, ok)) = done else { continue };
                    in_flight[i] = false;
                    let now = Instant::now();
                    if ok {
                        failures[i] = 0;
                        due[i] = now + this.daemon.prepull.interval + random_below(this.daemon.prepull.jitter);
                    } else {
                        failures[i] += 1;
                        due[i] = now + backoff(this.daemon.prepull.interval, failures[i]);
                    }
                }
                () = sleep_until_opt(next), if can_start && next.is_some() => {}
                () = sleep_until_opt(window_change.map(|d| now + d)), if window_change.is_some() => {}
            }
        }
    }

    /// After a pull: a 429 closes the registry host to every puller and
    /// checker of the agent for a while; a pull that worked resets its
    /// backoff. A pull that changed the local image makes its registry
    /// check stale.
    fn after_pull(&self, image: &ImageRef, finished: &FinishedPull) {
        let daemon = self.daemon.connection.name();
        let host = &image.registry;
        let now = Instant::now();
        match finished.reason {
            Some(FailReason::RateLimited) => {
                let hint = finished.message.as_deref().and_then(retry_after_hint);
                let until =
                    self.daemon
                        .gate
                        .rate_limited(host, now, hint, self.daemon.prepull.interval);
                tracing::warn!(daemon = %daemon, registry = %host, image = %image, wait_seconds = until.saturating_duration_since(now).as_secs_f64(), registry_hint = hint.is_some(), "registry answered 429 (too many requests): every pull and check of this agent to it waits");
            }
            Some(FailReason::DiskFull) => {
                tracing::error!(daemon = %daemon, image = %image, error = finished.message.as_deref().unwrap_or(""), "the daemon's disk is full: pulls cannot succeed until space is freed (docker system prune, or a bigger disk)");
            }
            _ => {}
        }
        if finished.result != PullResult::Failed {
            self.daemon.gate.succeeded(host, now);
        }
    }

    /// While pruning is on, asks which image `image` names before its pull
    /// and notes it: the pull may move the tag off it, leaving it dangling,
    /// and the pruner keeps it for `older_than` from the last note. Returns
    /// its id, to be noted again when the pull ends. No answer means no
    /// image to keep (absent), or a daemon that cannot pull either (the
    /// pull then says why).
    async fn note_named(&self, image: &ImageRef) -> Option<String> {
        let memory = self.prune_memory.as_ref()?;
        let id = self
            .daemon
            .connection
            .image_id(image)
            .await
            .ok()
            .flatten()?;
        memory.named_by_prepull(self.daemon.connection.name(), &id, unix_now());
        Some(id)
    }

    /// Notes `id` again at the end of a pull, so its time in the pruner's
    /// memory starts no earlier than the tag could have moved.
    fn note_named_again(&self, id: Option<String>) {
        if let (Some(memory), Some(id)) = (&self.prune_memory, id) {
            memory.named_by_prepull(self.daemon.connection.name(), &id, unix_now());
        }
    }

    /// Pulls one image and records it everywhere; true if it ended well.
    async fn pull_one(&self, image: &ImageRef, mut shutdown: watch::Receiver<bool>) -> bool {
        let daemon = self.daemon.connection.name();
        let label = image.to_string();
        let started = unix_now();
        self.daemon.board.update(daemon, &label, |p| {
            p.running = Some(RunningPull {
                started,
                progress: Progress::default(),
            });
        });
        let limits = Limits {
            timeout: self.daemon.prepull.timeout,
            stall_timeout: self.daemon.prepull.stall_timeout,
        };
        let creds = credentials::for_image(
            image,
            &self.daemon.registries,
            self.daemon.prepull.docker_config.as_deref(),
        );
        let failed = |reason, message: String| PullOutcome {
            result: PullResult::Failed,
            reason: Some(reason),
            stalled: false,
            message: Some(message),
            progress: Progress::default(),
            duration: Duration::ZERO,
        };
        let (outcome, present) = match creds {
            Err(e) => (failed(FailReason::Unauthorized, e.to_string()), None),
            Ok(creds) => {
                let c = &self.daemon.connection;
                let before = self.note_named(image).await;
                let outcome = pull_image(c, image, creds, limits, &mut shutdown, |p| {
                    self.daemon.board.update(daemon, &label, |e| {
                        if let Some(r) = &mut e.running {
                            r.progress.clone_from(p);
                        }
                    });
                })
                .await;
                self.note_named_again(before);
                let present = c.image_present(image).await.ok();
                (outcome, present)
            }
        };
        let finished = FinishedPull {
            started,
            finished: unix_now(),
            duration_seconds: outcome.duration.as_secs_f64(),
            result: outcome.result,
            reason: outcome.reason,
            stalled: outcome.stalled,
            message: outcome.message,
            digest: outcome.progress.digest.clone(),
            totals: outcome.progress.totals(),
            layers: outcome.progress.layers,
        };
        let ok = finished.result != PullResult::Failed;
        if ok {
            tracing::info!(daemon = %daemon, image = %label, result = finished.result.as_str(), seconds = finished.duration_seconds, bytes = finished.totals.downloaded_bytes, layers_downloaded = finished.totals.layers_downloaded, layers_cached = finished.totals.layers_already_exist, "pull finished");
        } else {
            tracing::warn!(daemon = %daemon, image = %label, reason = finished.reason.map_or("", FailReason::as_str), error = finished.message.as_deref().unwrap_or(""), "pull failed");
        }
        self.metrics.pulls.record(daemon, &label, &finished);
        self.after_pull(image, &finished);
        let updated = finished.result == PullResult::Updated;
        let recheck = self.daemon.board.update(daemon, &label, |p| {
            p.running = None;
            if ok {
                p.last_success = Some(finished.finished);
            }
            if present.is_some() {
                p.present = present;
            }
            p.last = Some(finished);
            // The local image is new: what the last check compared is gone.
            // A check that had nothing to compare (the image was not there
            // yet) has something now. Either way, check again at once.
            let never_compared = p
                .check
                .as_ref()
                .is_none_or(|c| c.update_available.is_none());
            let stale = ok && (updated || never_compared);
            if stale {
                if let Some(c) = &mut p.check {
                    c.update_available = None;
                }
                p.recheck = true;
            }
            stale
        });
        if recheck {
            self.daemon.recheck.notify_one();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_gate_the_schedule_at_any_clock() {
        let ts = |t: &str| t.parse::<jiff::Timestamp>().expect("a time");
        // No windows: always open, nothing to wait for.
        assert_eq!(window_state(&[], ts("2026-03-01T12:00:00Z")), (true, None));
        let windows = [Window::parse("02:00-05:00").expect("valid")];
        // Closed, opening in 14 h: look again within a minute.
        assert_eq!(
            window_state(&windows, ts("2026-03-01T12:00:00Z")),
            (false, Some(WINDOW_RECHECK))
        );
        // Closed, opening in 10 s.
        assert_eq!(
            window_state(&windows, ts("2026-03-01T01:59:50Z")),
            (false, Some(Duration::from_secs(10)))
        );
        // Open, closing in 30 s.
        assert_eq!(
            window_state(&windows, ts("2026-03-01T04:59:30Z")),
            (true, Some(Duration::from_secs(30)))
        );
    }
}
