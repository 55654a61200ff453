//! The registry-check families: how checks of each configured image ended
//! (counters the checkers update), and whether the registry has something
//! newer for the tag (a gauge read from the pull board at scrape time,
//! absent while unknown).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::family::gauge_family;
use crate::labels::{CheckFailure, CheckResult};
use crate::state::PullBoard;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CheckLabels {
    daemon: String,
    image: String,
    result: CheckResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CheckFailureLabels {
    daemon: String,
    image: String,
    reason: CheckFailure,
}

/// The counters of registry checks.
#[derive(Debug)]
pub(super) struct CheckFamilies {
    checks: Family<CheckLabels, Counter>,
    failures: Family<CheckFailureLabels, Counter>,
}

impl CheckFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let f = Self {
            checks: Family::default(),
            failures: Family::default(),
        };
        registry.register(
            "image_registry_checks",
            "Checks of a configured image's tag against the registry, without pulling, by result (same, differs, failed)",
            f.checks.clone(),
        );
        registry.register(
            "image_registry_check_failures",
            "Registry checks that failed, by reason (classified as pull failures are, plus unsupported)",
            f.failures.clone(),
        );
        f
    }

    fn labels(daemon: &str, image: &str, result: CheckResult) -> CheckLabels {
        CheckLabels {
            daemon: daemon.to_owned(),
            image: image.to_owned(),
            result,
        }
    }

    /// Creates an image's check counters at zero, so `increase()` sees the
    /// first check.
    pub(super) fn init_image(&self, daemon: &str, image: &str) {
        for result in CheckResult::ALL {
            // get_or_create is what creates the series; the guard is not needed.
            let _ = self
                .checks
                .get_or_create(&Self::labels(daemon, image, result));
        }
    }

    /// Counts one check.
    pub(super) fn record(
        &self,
        daemon: &str,
        image: &str,
        result: CheckResult,
        reason: Option<CheckFailure>,
    ) {
        self.checks
            .get_or_create(&Self::labels(daemon, image, result))
            .inc();
        if let Some(reason) = reason {
            self.failures
                .get_or_create(&CheckFailureLabels {
                    daemon: daemon.to_owned(),
                    image: image.to_owned(),
                    reason,
                })
                .inc();
        }
    }

    /// Drops every check series of an image that is no longer configured.
    pub(super) fn forget(&self, daemon: &str, image: &str) {
        for result in CheckResult::ALL {
            self.checks.remove(&Self::labels(daemon, image, result));
        }
        for reason in CheckFailure::ALL {
            self.failures.remove(&CheckFailureLabels {
                daemon: daemon.to_owned(),
                image: image.to_owned(),
                reason,
            });
        }
    }
}

/// `image_update_available` and `prepull_window_open`, read from the pull
/// board at scrape time.
#[derive(Debug)]
pub(super) struct CheckCollector {
    pub(super) board: Arc<PullBoard>,
}

impl Collector for CheckCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.board.read(|daemons| {
            gauge_family(
                &mut enc,
                "image_update_available",
                "1 if the registry's digest of the tag differs from the digests the local image was pulled by, 0 if it is one of them; absent until a check could compare them.",
                daemons.iter().flat_map(|(d, imgs)| {
                    imgs.iter().filter_map(move |(i, p)| {
                        let available = p.check.as_ref()?.update_available?;
                        Some(([("daemon", d.as_str()), ("image", i.as_str())], i64::from(available)))
                    })
                }),
            )
        })?;
        let windows = self.board.windows();
        gauge_family(
            &mut enc,
            "prepull_window_open",
            "1 while a pre-pull window is open, so scheduled pulls may start (1 when no windows are set).",
            windows
                .iter()
                .map(|(d, open)| ([("daemon", d.as_str())], i64::from(*open))),
        )
    }
}
