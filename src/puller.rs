//! Pre-pulls: one task per daemon pulls its configured images at start-up
//! and every `[prepull].interval` (after a random jitter), a few at a time,
//! retrying failures sooner with exponential backoff. One pull is one
//! `POST /images/create` stream folded by [`crate::progress`]; closing the
//! stream (on a stall, the timeout or shutdown) cancels the pull on the daemon.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{PrepullConfig, RegistryConfig};
use crate::credentials::{self, DockerCredentials};
use crate::docker::{Connection, DockerError};
use crate::labels::{FailReason, PullResult};
use crate::metrics::Metrics;
use crate::progress::{Finish, Progress, PullEvent};
use crate::reference::ImageRef;
use crate::state::{FinishedPull, PruneMemory, PullBoard, RunningPull};

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

/// Reads a failure message from a daemon or registry. Order matters:
/// "pull access denied ... does not exist" is a missing image on Docker Hub.
pub fn classify_message(message: &str) -> Option<FailReason> {
    let m = message.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if any(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "incorrect username or password",
    ]) {
        Some(FailReason::Unauthorized)
    } else if any(&[
        "manifest unknown",
        "not found",
        "does not exist",
        "name unknown",
    ]) {
        Some(FailReason::NotFound)
    } else if any(&["denied", "forbidden"]) {
        Some(FailReason::Unauthorized)
    } else if any(&[
        "x509",
        "tls:",
        "certificate",
        "http response to https client",
    ]) {
        Some(FailReason::Tls)
    } else if any(&[
        "connection refused",
        "connection reset",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "no route to host",
        "dial tcp",
        "unexpected eof",
        "broken pipe",
        "client.timeout exceeded",
    ]) {
        Some(FailReason::Network)
    } else if any(&["context canceled"]) {
        Some(FailReason::Canceled)
    } else if any(&[
        "toomanyrequests",
        "too many requests",
        "internal server error",
        "service unavailable",
        "bad gateway",
        "blob unknown",
    ]) {
        Some(FailReason::Registry)
    } else {
        None
    }
}

/// Classifies an error of the pull request or its stream.
fn classify_error(e: DockerError) -> (FailReason, String) {
    let reason = match &e {
        DockerError::Http { status: 404, .. } => FailReason::NotFound,
        DockerError::Http {
            status: 401 | 403, ..
        } => FailReason::Unauthorized,
        // dockerd answers registry failures (bad credentials too) with 500.
        DockerError::Http { message, .. } => {
            classify_message(message).unwrap_or(FailReason::Daemon)
        }
        DockerError::Timeout(_) => FailReason::Timeout,
        DockerError::Tls(_) => FailReason::Tls,
        DockerError::Connect(_) | DockerError::Decode(_) => FailReason::Daemon,
    };
    let message = match e {
        DockerError::Http { message, .. } => message,
        other => other.to_string(),
    };
    (reason, message)
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

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A random duration in `[0, max)`, from the std hasher's random keys.
pub fn random_below(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut h = RandomState::new().build_hasher();
    h.write_u64(nanos);
    Duration::from_nanos(h.finish() % nanos)
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The delay before retrying an image that failed `failures` times in a
/// row: doubling from a 32nd of the interval (at least a second), capped at
/// the interval.
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let base = (interval / 32).max(Duration::from_secs(1));
    let factor = 1_u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(interval)
}

/// One daemon's pre-puller.
#[derive(Debug, Clone)]
pub struct Puller {
    pub connection: Connection,
    pub images: Vec<ImageRef>,
    pub prepull: PrepullConfig,
    pub registries: Arc<[RegistryConfig]>,
    pub board: Arc<PullBoard>,
    pub metrics: Arc<Metrics>,
    /// Set while pruning is on: the image each reference names when a pull
    /// begins is noted there, at the start and again at the end of the
    /// pull, so the pruner keeps an image a pull moved the tag off.
    pub prune_memory: Option<Arc<PruneMemory>>,
}

impl Puller {
    /// Pulls each image when it is due, at most `concurrency` at once. Each
    /// image keeps its own schedule: a slow pull of one never holds back the
    /// retries of another. Due images start in config order.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        for image in &self.images {
            self.metrics
                .init_image(self.connection.name(), &image.to_string());
        }
        let n = self.images.len();
        let this = Arc::new(self);
        let start = Instant::now();
        let mut due: Vec<Instant> = (0..n)
            .map(|_| start + random_below(this.prepull.jitter))
            .collect();
        let mut failures = vec![0_u32; n];
        let mut in_flight = vec![false; n];
        let mut running: JoinSet<(usize, bool)> = JoinSet::new();
        let limit = this.prepull.concurrency.max(1);
        loop {
            let now = Instant::now();
            for i in 0..n {
                if running.len() >= limit {
                    break;
                }
                if in_flight[i] || due[i] > now {
                    continue;
                }
                in_flight[i] = true;
                let this = Arc::clone(&this);
                let shutdown = shutdown.clone();
                running.spawn(async move { (i, this.pull_one(&this.images[i], shutdown).await) });
            }
            let next = (0..n).filter(|&i| !in_flight[i]).map(|i| due[i]).min();
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
                        due[i] = now + this.prepull.interval + random_below(this.prepull.jitter);
                    } else {
                        failures[i] += 1;
                        due[i] = now + backoff(this.prepull.interval, failures[i]);
                    }
                }
                () = sleep_until_opt(next), if can_start && next.is_some() => {}
            }
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
        let id = self.connection.image_id(image).await.ok().flatten()?;
        memory.named_by_prepull(self.connection.name(), &id, unix_now());
        Some(id)
    }

    /// Notes `id` again at the end of a pull, so its time in the pruner's
    /// memory starts no earlier than the tag could have moved.
    fn note_named_again(&self, id: Option<String>) {
        if let (Some(memory), Some(id)) = (&self.prune_memory, id) {
            memory.named_by_prepull(self.connection.name(), &id, unix_now());
        }
    }

    /// Pulls one image and records it everywhere; true if it ended well.
    async fn pull_one(&self, image: &ImageRef, mut shutdown: watch::Receiver<bool>) -> bool {
        let daemon = self.connection.name();
        let label = image.to_string();
        let started = unix_now();
        self.board.update(daemon, &label, |p| {
            p.running = Some(RunningPull {
                started,
                progress: Progress::default(),
            });
        });
        let limits = Limits {
            timeout: self.prepull.timeout,
            stall_timeout: self.prepull.stall_timeout,
        };
        let creds = credentials::for_image(
            image,
            &self.registries,
            self.prepull.docker_config.as_deref(),
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
                let c = &self.connection;
                let before = self.note_named(image).await;
                let outcome = pull_image(c, image, creds, limits, &mut shutdown, |p| {
                    self.board.update(daemon, &label, |e| {
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
        self.metrics.record_pull(daemon, &label, &finished);
        self.board.update(daemon, &label, |p| {
            p.running = None;
            if ok {
                p.last_success = Some(finished.finished);
            }
            if present.is_some() {
                p.present = present;
            }
            p.last = Some(finished);
        });
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_from_real_daemons() {
        let cases = [
            (
                "manifest for 127.0.0.1:5000/example/nope:1 not found: manifest unknown: manifest unknown",
                FailReason::NotFound,
            ),
            (
                "Head \"http://127.0.0.1:5001/v2/private/app/manifests/1\": no basic auth credentials",
                FailReason::Unauthorized,
            ),
            (
                "unauthorized: authentication required",
                FailReason::Unauthorized,
            ),
            (
                "pull access denied for nope, repository does not exist or may require 'docker login'",
                FailReason::NotFound,
            ),
            (
                "Get \"https://127.0.0.1:5000/v2/\": http: server gave HTTP response to HTTPS client",
                FailReason::Tls,
            ),
            (
                "Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused",
                FailReason::Network,
            ),
            ("toomanyrequests: slow down", FailReason::Registry),
        ];
        for (msg, want) in cases {
            assert_eq!(classify_message(msg), Some(want), "{msg}");
        }
        assert_eq!(classify_message("something new"), None);
    }

    #[test]
    fn http_errors_before_the_stream() {
        let err = |status, message: &str| DockerError::Http {
            status,
            message: message.into(),
        };
        assert_eq!(classify_error(err(404, "x")).0, FailReason::NotFound);
        assert_eq!(
            classify_error(err(500, "unauthorized: authentication required")).0,
            FailReason::Unauthorized
        );
        assert_eq!(classify_error(err(500, "boom")).0, FailReason::Daemon);
        assert_eq!(
            classify_error(DockerError::Decode("a line longer than 1 bytes".into())).0,
            FailReason::Daemon
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(hour, 1), Duration::from_millis(112_500));
        assert_eq!(backoff(hour, 2), Duration::from_secs(225));
        assert_eq!(backoff(hour, 10), hour);
        assert_eq!(backoff(hour, u32::MAX), hour);
        assert_eq!(backoff(Duration::from_secs(8), 1), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        for _ in 0..100 {
            assert!(random_below(Duration::from_secs(3)) < Duration::from_secs(3));
        }
        assert_eq!(random_below(Duration::ZERO), Duration::ZERO);
    }
}
