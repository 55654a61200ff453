//! The pre-pull families: counters and histograms of finished pulls,
//! updated by the pullers, and the gauges of running pulls and per-image
//! status, read from the pull board at scrape time.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::family::gauge_family;
use crate::labels::{FailReason, LayerOutcome, PullResult};
use crate::state::{FinishedPull, PullBoard};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ImageLabels {
    daemon: String,
    image: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PullResultLabels {
    daemon: String,
    image: String,
    result: PullResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PullFailureLabels {
    daemon: String,
    image: String,
    reason: FailReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LayerLabels {
    daemon: String,
    image: String,
    outcome: LayerOutcome,
}

/// Whole-pull durations: a cached layer takes half a second, a cold CI
/// image over a slow link most of an hour.
const PULL_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

fn pull_histogram() -> Histogram {
    Histogram::new(PULL_BUCKETS)
}

/// The counters and histograms of finished pulls.
#[derive(Debug)]
pub(super) struct PullFamilies {
    results: Family<PullResultLabels, Counter>,
    failures: Family<PullFailureLabels, Counter>,
    duration: Family<ImageLabels, Histogram, fn() -> Histogram>,
    bytes: Family<ImageLabels, Counter>,
    layers: Family<LayerLabels, Counter>,
    stalls: Family<ImageLabels, Counter>,
}

impl PullFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let f = Self {
            results: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(pull_histogram),
            bytes: Family::default(),
            layers: Family::default(),
            stalls: Family::default(),
        };
        registry.register(
            "image_pulls",
            "Pre-pulls that ended, by result (updated, up_to_date, failed)",
            f.results.clone(),
        );
        registry.register(
            "image_pull_failures",
            "Pre-pulls that failed, by reason",
            f.failures.clone(),
        );
        registry.register(
            "image_pull_duration_seconds",
            "Wall time of whole pre-pulls",
            f.duration.clone(),
        );
        registry.register(
            "image_pull_downloaded_bytes",
            "Layer bytes pre-pulls actually downloaded",
            f.bytes.clone(),
        );
        registry.register(
            "image_pull_layers",
            "Layers of pre-pulls, downloaded or already on the daemon",
            f.layers.clone(),
        );
        registry.register(
            "image_pull_stalls",
            "Pre-pulls canceled because they made no progress for stall_timeout",
            f.stalls.clone(),
        );
        f
    }

    fn labels(daemon: &str, image: &str) -> ImageLabels {
        ImageLabels {
            daemon: daemon.to_owned(),
            image: image.to_owned(),
        }
    }

    /// Creates a configured image's counters at zero, so `increase()` sees
    /// its first pull.
    pub(super) fn init_image(&self, daemon: &str, image: &str) {
        let l = Self::labels(daemon, image);
        for result in PullResult::ALL {
            // get_or_create is what creates the series; the guard is not needed.
            let _ = self.results.get_or_create(&PullResultLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                result,
            });
        }
        for outcome in LayerOutcome::ALL {
            let _ = self.layers.get_or_create(&LayerLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                outcome,
            });
        }
        // The reasons alerts watch one by one, so increase() sees the first
        // one; the others appear with their first failure.
        for reason in [FailReason::RateLimited, FailReason::DiskFull] {
            let _ = self.failures.get_or_create(&PullFailureLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                reason,
            });
        }
        let _ = self.bytes.get_or_create(&l);
        let _ = self.stalls.get_or_create(&l);
    }

    /// Counts one finished pre-pull.
    pub(super) fn record(&self, daemon: &str, image: &str, pull: &FinishedPull) {
        let l = Self::labels(daemon, image);
        self.results
            .get_or_create(&PullResultLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                result: pull.result,
            })
            .inc();
        if let Some(reason) = pull.reason {
            self.failures
                .get_or_create(&PullFailureLabels {
                    daemon: l.daemon.clone(),
                    image: l.image.clone(),
                    reason,
                })
                .inc();
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
        for (outcome, n) in [
            (LayerOutcome::Downloaded, pull.totals.layers_downloaded),
            (
                LayerOutcome::AlreadyExists,
                pull.totals.layers_already_exist,
            ),
        ] {
            self.layers
                .get_or_create(&LayerLabels {
                    daemon: l.daemon.clone(),
                    image: l.image.clone(),
                    outcome,
                })
                .inc_by(n);
        }
    }

    /// Drops every series of a pre-pull image that is no longer configured.
    /// The label sets are closed, so all of them can be named.
    pub(super) fn forget(&self, daemon: &str, image: &str) {
        let l = Self::labels(daemon, image);
        for result in PullResult::ALL {
            self.results.remove(&PullResultLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                result,
            });
        }
        for reason in FailReason::ALL {
            self.failures.remove(&PullFailureLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                reason,
            });
        }
        for outcome in LayerOutcome::ALL {
            self.layers.remove(&LayerLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                outcome,
            });
        }
        self.duration.remove(&l);
        self.bytes.remove(&l);
        self.stalls.remove(&l);
    }
}

/// Running pulls and per-image status, read from the pull board at scrape
/// time: progress series exist exactly while a pull runs.
#[derive(Debug)]
pub(super) struct PullCollector {
    pub(super) board: Arc<PullBoard>,
}

impl Collector for PullCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.board.read(|daemons| {
            let images = || {
                daemons.iter().flat_map(|(d, imgs)| {
                    imgs.iter().map(move |(i, p)| (d.as_str(), i.as_str(), p))
                })
            };
            let running = || {
                images()
                    .filter_map(|(d, i, p)| p.running.as_ref().map(|r| (d, i, r.progress.totals())))
            };
            gauge_family(
                &mut enc,
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
                &mut enc,
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
                &mut enc,
                "image_pull_expected_bytes",
                "Bytes a running pre-pull has to fetch, as far as the daemon has said.",
                running().map(|(d, i, t)| ([("daemon", d), ("image", i)], t.expected_bytes)),
            )?;
            gauge_family(
                &mut enc,
                "image_pull_last_success_timestamp_seconds",
                "Unix time the last pre-pull of the image that ended well ended.",
                images().filter_map(|(d, i, p)| {
                    p.last_success.map(|t| ([("daemon", d), ("image", i)], t))
                }),
            )?;
            gauge_family(
                &mut enc,
                "image_present",
                "1 if the configured image is on the daemon, as last checked.",
                images().filter_map(|(d, i, p)| {
                    p.present
                        .map(|x| ([("daemon", d), ("image", i)], i64::from(x)))
                }),
            )?;
            gauge_family(
                &mut enc,
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
}
