//! The registry-check families: how checks of each configured image ended
//! (counters the checkers update), and whether the registry has something
//! newer for the tag (a gauge read from the pull board at scrape time,
//! absent while unknown).

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::family::{ByValue, Forget, ImageLabels, family_group, gauge_family};
use crate::labels::{CheckFailure, CheckResult};
use crate::state::PullBoard;

family_group! {
    /// The counters of registry checks.
    pub struct CheckFamilies for ImageLabels {
        checks: ByValue<ImageLabels, CheckResult> = "image_registry_checks", ByValue::new("result"), "Checks of a configured image's tag against the registry, without pulling, by result (same, differs, failed)";
        failures: ByValue<ImageLabels, CheckFailure> = "image_registry_check_failures", ByValue::new("reason"), "Registry checks that failed, by reason (classified as pull failures are, plus unsupported)";
    }
}

impl CheckFamilies {
    /// Creates an image's check counters at zero, so `increase()` sees the
    /// first check.
    pub fn init_image(&self, daemon: &str, image: &str) {
        self.checks
            .init(&ImageLabels::new(daemon, image), &CheckResult::ALL);
        self.changes.mark();
    }

    /// Counts one check.
    pub fn record(
        &self,
        daemon: &str,
        image: &str,
        result: CheckResult,
        reason: Option<CheckFailure>,
    ) {
        let l = ImageLabels::new(daemon, image);
        self.checks.get(&l, result).inc();
        if let Some(reason) = reason {
            self.failures.get(&l, reason).inc();
        }
        self.changes.mark();
    }

    /// Drops every check series of an image (checks were turned off, or the
    /// image is no longer configured).
    pub fn forget(&self, daemon: &str, image: &str) {
        self.forget_series(&ImageLabels::new(daemon, image));
    }
}

impl Forget for CheckFamilies {
    fn forget_image(&self, daemon: &str, image: &str) {
        self.forget(daemon, image);
    }
}

/// `image_update_available` and `prepull_window_open`, read from the pull
/// board at scrape time.
pub(super) fn check_gauges(board: &Arc<PullBoard>, enc: &mut DescriptorEncoder) -> fmt::Result {
    board.read(|daemons| {
            gauge_family(
                enc,
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
    let windows = board.windows();
    gauge_family(
        enc,
        "prepull_window_open",
        "1 while a pre-pull window is open, so scheduled pulls may start (1 when no windows are set).",
        windows
            .iter()
            .map(|(d, open)| ([("daemon", d.as_str())], i64::from(*open))),
    )
}
