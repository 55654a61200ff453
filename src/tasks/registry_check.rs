//! Registry checks: one task per daemon asks, every
//! `[prepull].check_interval`, whether each configured image's tag still
//! points at what the local image was pulled by, without pulling. The daemon
//! is asked twice: `GET /images/{name}/json` for the digests the local image
//! was pulled by (`RepoDigests`), then `GET /distribution/{name}/json` for
//! the registry's descriptor of the tag (with the daemon's own registry
//! access and the credentials pulls send).
//!
//! Like is compared with like: pulling a tag records, on the classic and
//! the containerd image store alike, the digest the tag pointed at, and
//! `/distribution` answers the digest the tag points at now; for a
//! multi-platform image both are the digest of its index, never of one
//! platform's manifest. An index counts as moved when any platform in it
//! changed.
//!
//! Checks run outside pre-pull windows too (they fetch one manifest head),
//! but not while the registry host is rate-limited; a 429 on a check closes
//! the host for pulls as a pull's 429 does.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::unix_now;
use crate::config::credentials::{self, DockerCredentials};
use crate::docker::{DockerError, RegistryDescriptor, endpoint_missing};
use crate::folds::ratelimit::retry_after_hint;
use crate::folds::reference::ImageRef;
use crate::labels::{CheckFailure, CheckResult, FailReason};
use crate::metrics::Metrics;
use crate::state::RegistryCheck;
use crate::tasks::PrepullDaemon;
use crate::tasks::failure::classify_error;
use crate::tasks::schedule::random_below;

/// Classifies a failed check as pull failures are classified, plus an
/// engine without the endpoint.
fn check_failure(e: DockerError) -> (CheckFailure, String) {
    if endpoint_missing(&e) {
        let message = format!(
            "the engine has no /distribution endpoint ({}); Podman and Engines older than API 1.30 cannot ask a registry without pulling",
            e.to_string().trim()
        );
        return (CheckFailure::Unsupported, message);
    }
    let (reason, message) = classify_error(e);
    (CheckFailure::from(reason), message)
}

/// Compares the registry's descriptor of the tag with the digests the local
/// image was pulled by.
pub fn compare(registry: &RegistryDescriptor, local_digests: &[String]) -> CheckResult {
    if local_digests.contains(&registry.digest) {
        CheckResult::Same
    } else {
        CheckResult::Differs
    }
}

/// One daemon's registry checker. The daemon's pre-pull images pinned by
/// digest cannot move and are not checked; the puller's `recheck` tells it
/// when a pull made a check stale.
#[derive(Debug, Clone)]
pub struct Checker {
    pub daemon: PrepullDaemon,
    pub metrics: Arc<Metrics>,
}

/// What one check found, before it is published.
struct Found {
    result: Option<CheckResult>,
    reason: Option<CheckFailure>,
    message: Option<String>,
    registry: Option<RegistryDescriptor>,
    local_digests: Vec<String>,
}

impl Checker {
    /// Checks each image every `check_interval`, one at a time, the first
    /// time after a random delay of up to `jitter` (as the first pulls).
    /// An engine without `/distribution` is told so once and not asked
    /// again (until a reload or restart), so it costs no failing calls.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let daemon = self.daemon.connection.name().to_owned();
        let images: Vec<ImageRef> = self
            .daemon
            .images
            .iter()
            .filter(|i| i.digest.is_none())
            .cloned()
            .collect();
        for image in &images {
            self.metrics.checks.init_image(&daemon, &image.to_string());
        }
        let interval = self.daemon.prepull.check_interval;
        let start = Instant::now();
        let mut due: Vec<Instant> = images
            .iter()
            .map(|_| start + random_below(self.daemon.prepull.jitter.min(interval)))
            .collect();
        let mut unsupported = false;
        loop {
            let now = Instant::now();
            for (i, image) in images.iter().enumerate() {
                if due[i] > now || *shutdown.borrow() || unsupported {
                    continue;
                }
                if let Some(until) = self.daemon.gate.closed_until(&image.registry, now) {
                    due[i] = until;
                    continue;
                }
                if self.check_one(image).await == Some(CheckFailure::Unsupported) {
                    unsupported = true;
                    tracing::warn!(daemon = %daemon, "this engine cannot ask a registry for a tag's digest (no /distribution endpoint): registry checks of this daemon stop; its images get no dockwatch_image_update_available");
                }
                due[i] = Instant::now() + interval;
            }
            let next = due.iter().min().copied().filter(|_| !unsupported);
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = self.daemon.recheck.notified() => {
                    // Images a pull changed since their check: now.
                    let stale: Vec<String> = self.daemon.board.read(|d| {
                        d.get(&daemon)
                            .map(|imgs| {
                                imgs.iter()
                                    .filter(|(_, p)| p.recheck)
                                    .map(|(k, _)| k.clone())
                                    .collect()
                            })
                            .unwrap_or_default()
                    });
                    let now = Instant::now();
                    for (i, image) in images.iter().enumerate() {
                        if stale.contains(&image.to_string()) {
                            due[i] = now;
                        }
                    }
                }
                () = async {
                    match next {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Checks one image and publishes what it found; the failure reason,
    /// if it failed.
    async fn check_one(&self, image: &ImageRef) -> Option<CheckFailure> {
        let daemon = self.daemon.connection.name();
        let label = image.to_string();
        // Cleared first: a pull that ends during the check marks it again.
        self.daemon
            .board
            .update(daemon, &label, |p| p.recheck = false);
        let found = self.find(image).await;
        let checked = unix_now();
        if let Some(result) = found.result {
            self.metrics
                .checks
                .record(daemon, &label, result, found.reason);
        }
        match (found.result, found.reason) {
            // Said once by `run`.
            (Some(CheckResult::Failed), Some(CheckFailure::Unsupported)) => {}
            (Some(CheckResult::Failed), Some(reason)) => {
                tracing::warn!(daemon = %daemon, image = %label, reason = reason.as_str(), error = found.message.as_deref().unwrap_or(""), "registry check failed");
            }
            (Some(result), _) => {
                tracing::debug!(daemon = %daemon, image = %label, result = result.as_str(), registry_digest = found.registry.as_ref().map_or("", |r| r.digest.as_str()), local_digests = ?found.local_digests, "registry check");
            }
            (None, _) => {
                tracing::debug!(daemon = %daemon, image = %label, why = found.message.as_deref().unwrap_or(""), "registry check: nothing to compare");
            }
        }
        self.daemon.board.update(daemon, &label, |p| {
            let last = p.check.take().unwrap_or_default();
            let update_available = match found.result {
                Some(CheckResult::Same) => Some(false),
                Some(CheckResult::Differs) => Some(true),
                // A failed check keeps what the last one that compared said
                // (unless a pull made it stale meanwhile, see the puller).
                Some(CheckResult::Failed) => last.update_available,
                None => None,
            };
            let (registry_digest, media_type) = match &found.registry {
                Some(r) => (Some(r.digest.clone()), r.media_type.clone()),
                None => (last.registry_digest, last.media_type),
            };
            p.check = Some(RegistryCheck {
                checked,
                result: found.result,
                reason: found.reason,
                message: found.message,
                registry_digest,
                media_type,
                local_digests: found.local_digests,
                update_available,
            });
        });
        found.reason
    }

    /// Asks the daemon for the local image, then (if there is anything to
    /// compare) the registry.
    async fn find(&self, image: &ImageRef) -> Found {
        let failed = |reason: CheckFailure, message: String, local_digests: Vec<String>| Found {
            result: Some(CheckResult::Failed),
            reason: Some(reason),
            message: Some(message),
            registry: None,
            local_digests,
        };
        let nothing = |why: &str| Found {
            result: None,
            reason: None,
            message: Some(why.to_owned()),
            registry: None,
            local_digests: Vec::new(),
        };
        let local = match self.daemon.connection.local_image(image).await {
            Ok(Some(local)) => local.digests_of(image),
            Ok(None) => return nothing("the image is not on the daemon"),
            Err(e) => {
                let (reason, message) = classify_error(e);
                // The daemon failed us, not the registry.
                let reason = match reason {
                    FailReason::Timeout => CheckFailure::Timeout,
                    _ => CheckFailure::Daemon,
                };
                return failed(reason, message, Vec::new());
            }
        };
        if local.is_empty() {
            return nothing(
                "the local image was not pulled from this repository (built or loaded on the daemon): it has no digest to compare",
            );
        }
        let creds = match credentials::for_image(
            image,
            &self.daemon.registries,
            self.daemon.prepull.docker_config.as_deref(),
        ) {
            Ok(c) => c,
            Err(e) => return failed(CheckFailure::Unauthorized, e.to_string(), local),
        };
        let secrets = creds
            .as_ref()
            .map(DockerCredentials::secrets)
            .unwrap_or_default();
        let header = creds.as_ref().map(DockerCredentials::header);
        match self
            .daemon
            .connection
            .distribution(image, header.as_deref())
            .await
        {
            Ok(registry) => {
                self.daemon.gate.succeeded(&image.registry, Instant::now());
                Found {
                    result: Some(compare(&registry, &local)),
                    reason: None,
                    message: None,
                    registry: Some(registry),
                    local_digests: local,
                }
            }
            Err(e) => {
                let (reason, mut message) = check_failure(e);
                // A registry could echo what it was sent; never pass a
                // secret on.
                for s in &secrets {
                    message = message.replace(s.as_str(), "***");
                }
                if reason == CheckFailure::RateLimited {
                    let now = Instant::now();
                    let hint = retry_after_hint(&message);
                    let until = self.daemon.gate.rate_limited(
                        &image.registry,
                        now,
                        hint,
                        self.daemon.prepull.interval,
                    );
                    tracing::warn!(daemon = %self.daemon.connection.name(), registry = %image.registry, image = %image, wait_seconds = until.saturating_duration_since(now).as_secs_f64(), registry_hint = hint.is_some(), "registry answered 429 (too many requests) to a check: every pull and check of this agent to it waits");
                }
                failed(reason, message, local)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn descriptor(digest: &str) -> RegistryDescriptor {
        RegistryDescriptor {
            digest: digest.to_owned(),
            media_type: Some("application/vnd.oci.image.index.v1+json".to_owned()),
            platforms: 2,
        }
    }

    #[test]
    fn the_registry_digest_among_the_local_ones_is_the_same() {
        let index = "sha256:23449a53dd03e2e55bc9d570fa14d6fc4958be564d8171836937070d51ba9102";
        let moved = "sha256:002e11319dd20d7f83d87624685b5a80c5d01666f2e2d798aa068a96274fcb3c";
        assert_eq!(
            compare(&descriptor(index), &[index.to_owned()]),
            CheckResult::Same
        );
        // The classic store keeps every digest an image was pulled by.
        assert_eq!(
            compare(&descriptor(index), &[moved.to_owned(), index.to_owned()]),
            CheckResult::Same
        );
        assert_eq!(
            compare(&descriptor(moved), &[index.to_owned()]),
            CheckResult::Differs
        );
    }

    #[test]
    fn failures_are_classified_like_pulls() {
        let http = DockerError::http;
        let cases = [
            (
                http(404, "manifest unknown: manifest unknown"),
                CheckFailure::NotFound,
            ),
            (http(404, "Not Found"), CheckFailure::Unsupported),
            (
                http(
                    500,
                    "Head \"http://127.0.0.1:44529/v2/private/app/manifests/1\": no basic auth credentials",
                ),
                CheckFailure::Unauthorized,
            ),
            (
                http(
                    429,
                    "toomanyrequests: You have reached your pull rate limit.",
                ),
                CheckFailure::RateLimited,
            ),
            (
                http(
                    500,
                    "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                ),
                CheckFailure::Network,
            ),
            (
                DockerError::Timeout(Duration::from_secs(5)),
                CheckFailure::Timeout,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            assert_eq!(check_failure(e).0, want, "{text}");
        }
    }
}
