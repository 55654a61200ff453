//! The pre-pull families: counters and histograms of finished pulls,
//! updated by the pullers, and the gauges of running pulls and per-image
//! status, read from the pull board at scrape time.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use super::family::{ByValue, Forget, ImageLabels, family_group, gauge_family};
use crate::labels::{FailReason, LayerOutcome, PullResult};
use crate::state::{FinishedPull, PullBoard};

/// Whole-pull durations: a cached layer takes half a second, a cold CI
/// image over a slow link most of an hour.
const PULL_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

fn pull_histogram() -> Histogram {
    Histogram::new(PULL_BUCKETS)
}

family_group! {
    /// The counters and histograms of finished pulls.
    pub struct PullFamilies for ImageLabels {
        results: ByValue<ImageLabels, PullResult> = "image_pulls", ByValue::new("result"), "Pre-pulls that ended, by result (updated, up_to_date, failed)";
        failures: ByValue<ImageLabels, FailReason> = "image_pull_failures", ByValue::new("reason"), "Pre-pulls that failed, by reason";
        duration: Family<ImageLabels, Histogram> = "image_pull_duration_seconds", Family::new_with_constructor(pull_histogram), "Wall time of whole pre-pulls";
        bytes: Family<ImageLabels, Counter> = "image_pull_downloaded_bytes", Family::default(), "Layer bytes pre-pulls actually downloaded";
        layers: ByValue<ImageLabels, LayerOutcome> = "image_pull_layers", ByValue::new("outcome"), "Layers of pre-pulls, downloaded or already on the daemon";
        stalls: Family<ImageLabels, Counter> = "image_pull_stalls", Family::default(), "Pre-pulls canceled because they made no progress for stall_timeout";
    }
}

impl PullFamilies {
    /// Creates a configured image's counters at zero, so `increase()` sees
    /// its first pull.
    pub fn init_image(&self, daemon: &str, image: &str) {
        let l = ImageLabels::new(daemon, image);
        self.results.init(&l, &PullResult::ALL);
        self.layers.init(&l, &LayerOutcome::ALL);
        // The reasons alerts watch one by one, so increase() sees the first
        // one; the others appear with their first failure.
        self.failures
            .init(&l, &[FailReason::RateLimited, FailReason::DiskFull]);
        let _ = self.bytes.get_or_create(&l);
        let _ = self.stalls.get_or_create(&l);
        self.changes.mark();
    }

    /// Counts one finished pre-pull.
    pub fn record(&self, daemon: &str, image: &str, pull: &FinishedPull) {
        let l = ImageLabels::new(daemon, image);
        self.results.get(&l, pull.result).inc();
        if let Some(reason) = pull.reason {
            self.failures.get(&l, reason).inc();
        }
        if pull.stalled {
            self.stalls.get_or_create(&l).inc();
        }
        self.duration
            .get_or_create(&l)
            .observe(pull.duration_seconds);
        self.bytes
            .get_or_create(&l)
            .inc_by(pull.totals.downloaded_bytes);
        self.layers
            .get(&l, LayerOutcome::Downloaded)
            .inc_by(pull.totals.layers_downloaded);
        self.layers
            .get(&l, LayerOutcome::AlreadyExists)
            .inc_by(pull.totals.layers_already_exist);
        self.changes.mark();
    }
}

/// Drops every series of a pre-pull image that is no longer configured.
/// The label sets are closed, so all of them can be named.
impl Forget for PullFamilies {
    fn forget_image(&self, daemon: &str, image: &str) {
        self.forget_series(&ImageLabels::new(daemon, image));
    }
}

/// Running pulls and per-image status, read from the pull board at scrape
/// time: progress series exist exactly while a pull runs.
pub(super) fn board_gauges(board: &Arc<PullBoard>, enc: &mut DescriptorEncoder) -> fmt::Result {
    board.read(|daemons| {
        let images = || {
            daemons
                .iter()
                .flat_map(|(d, imgs)| imgs.iter().map(move |(i, p)| (d.as_str(), i.as_str(), p)))
        };
        let running = || {
            images().filter_map(|(d, i, p)| p.running.as_ref().map(|r| (d, i, r.progress.totals())))
        };
        gauge_family(
            enc,
            "image_pulls_in_progress",
            "Pre-pulls running now.",
            daemons.iter().map(|(d, imgs)| {
                let n = imgs.values().filter(|p| p.running.is_some()).count();
                (
                    [("daemon", d.as_str())],
                    i64::try_from(n).unwrap_or(i64::MAX),
                )
            }),
        )?;
        gauge_family(
            enc,
            "image_pull_progress_bytes",
            "Bytes done so far of a running pre-pull, by phase (download, extract).",
            running().flat_map(|(d, i, t)| {
                [
                    (
                        [("daemon", d), ("image", i), ("phase", "download")],
                        t.downloaded_bytes,
                    ),
                    (
                        [("daemon", d), ("image", i), ("phase", "extract")],
                        t.extracted_bytes,
                    ),
                ]
            }),
        )?;
        gauge_family(
            enc,
            "image_pull_expected_bytes",
            "Bytes a running pre-pull has to fetch, as far as the daemon has said.",
            running().map(|(d, i, t)| ([("daemon", d), ("image", i)], t.expected_bytes)),
        )?;
        gauge_family(
            enc,
            "image_pull_last_success_timestamp_seconds",
            "Unix time the last pre-pull of the image that ended well ended.",
            images()
                .filter_map(|(d, i, p)| p.last_success.map(|t| ([("daemon", d), ("image", i)], t))),
        )?;
        gauge_family(
            enc,
            "image_present",
            "1 if the configured image is on the daemon, as last checked.",
            images().filter_map(|(d, i, p)| {
                p.present
                    .map(|x| ([("daemon", d), ("image", i)], i64::from(x)))
            }),
        )?;
        gauge_family(
            enc,
            "prepull_ready",
            "1 if every configured image is on the daemon and its last pre-pull ended well.",
            daemons.iter().map(|(d, imgs)| {
                let ready = imgs.values().all(|p| {
                    p.present == Some(true)
                        && p.last
                            .as_ref()
                            .is_some_and(|l| l.result != PullResult::Failed)
                });
                ([("daemon", d.as_str())], i64::from(ready))
            }),
        )
    })
}
