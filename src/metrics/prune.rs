//! The pruning families: rounds by result, images removed and their bytes,
//! refusals by reason, updated by the pruners as things happen; and what the
//! last round found removable (in a dry run: what would have gone).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::labels::{PruneRefusal, PruneResult};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DaemonLabels {
    daemon: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RunLabels {
    daemon: String,
    result: PruneResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabels {
    daemon: String,
    reason: PruneRefusal,
}

/// What one round found removable: every candidate that passed the guards
/// (before `max_per_round`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Eligible {
    pub images: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub(super) struct PruneFamilies {
    runs: Family<RunLabels, Counter>,
    removed: Family<DaemonLabels, Counter>,
    reclaimed: Family<DaemonLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    last_run: Family<DaemonLabels, Gauge<f64, AtomicU64>>,
    eligible: Family<DaemonLabels, Gauge>,
    eligible_bytes: Family<DaemonLabels, Gauge>,
}

fn labels(daemon: &str) -> DaemonLabels {
    DaemonLabels {
        daemon: daemon.to_owned(),
    }
}

/// Bytes and counts as a gauge value; beyond `i64` is beyond any disk.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PruneFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let f = Self {
            runs: Family::default(),
            removed: Family::default(),
            reclaimed: Family::default(),
            refused: Family::default(),
            last_run: Family::default(),
            eligible: Family::default(),
            eligible_bytes: Family::default(),
        };
        registry.register(
            "prune_runs",
            "Prune rounds, by result (ok, skipped: daemon down or [prune.when] not met, failed)",
            f.runs.clone(),
        );
        registry.register(
            "prune_images_removed",
            "Dangling images removed by pruning",
            f.removed.clone(),
        );
        registry.register(
            "prune_reclaimed_bytes",
            "Sizes of the images pruning removed, as the daemon listed them (shared layers count once per image)",
            f.reclaimed.clone(),
        );
        registry.register(
            "prune_refused",
            "Removals the daemon refused, by reason (in_use, not_found, conflict, other)",
            f.refused.clone(),
        );
        registry.register(
            "prune_last_run_timestamp_seconds",
            "Unix time the last prune round ended, whatever its result",
            f.last_run.clone(),
        );
        registry.register(
            "prune_eligible_images",
            "Dangling images the last prune round found removable (in a dry run, what would have gone)",
            f.eligible.clone(),
        );
        registry.register(
            "prune_eligible_bytes",
            "Bytes of the dangling images the last prune round found removable, as the daemon listed them",
            f.eligible_bytes.clone(),
        );
        f
    }

    /// Creates a daemon's counters at zero, so `increase()` sees its first
    /// round.
    pub(super) fn init(&self, daemon: &str) {
        for result in PruneResult::ALL {
            // get_or_create is what creates the series; the guard is not needed.
            let _ = self.runs.get_or_create(&RunLabels {
                daemon: daemon.to_owned(),
                result,
            });
        }
        for reason in PruneRefusal::ALL {
            let _ = self.refused.get_or_create(&RefusedLabels {
                daemon: daemon.to_owned(),
                reason,
            });
        }
        let _ = self.removed.get_or_create(&labels(daemon));
        let _ = self.reclaimed.get_or_create(&labels(daemon));
    }

    pub(super) fn removed(&self, daemon: &str, bytes: u64) {
        self.removed.get_or_create(&labels(daemon)).inc();
        self.reclaimed.get_or_create(&labels(daemon)).inc_by(bytes);
    }

    pub(super) fn refused(&self, daemon: &str, reason: PruneRefusal) {
        self.refused
            .get_or_create(&RefusedLabels {
                daemon: daemon.to_owned(),
                reason,
            })
            .inc();
    }

    /// One round ended at Unix time `at`; `eligible` is `None` when it did
    /// not get as far as knowing (skipped, or failed early): the gauges then
    /// keep the last known.
    pub(super) fn round(
        &self,
        daemon: &str,
        result: PruneResult,
        eligible: Option<Eligible>,
        at: f64,
    ) {
        self.runs
            .get_or_create(&RunLabels {
                daemon: daemon.to_owned(),
                result,
            })
            .inc();
        self.last_run.get_or_create(&labels(daemon)).set(at);
        if let Some(e) = eligible {
            self.eligible
                .get_or_create(&labels(daemon))
                .set(gauge_value(e.images));
            self.eligible_bytes
                .get_or_create(&labels(daemon))
                .set(gauge_value(e.bytes));
        }
    }

    /// Drops every series of a daemon that is no longer pruned.
    pub(super) fn forget(&self, daemon: &str) {
        for result in PruneResult::ALL {
            self.runs.remove(&RunLabels {
                daemon: daemon.to_owned(),
                result,
            });
        }
        for reason in PruneRefusal::ALL {
            self.refused.remove(&RefusedLabels {
                daemon: daemon.to_owned(),
                reason,
            });
        }
        let l = labels(daemon);
        self.removed.remove(&l);
        self.reclaimed.remove(&l);
        self.last_run.remove(&l);
        self.eligible.remove(&l);
        self.eligible_bytes.remove(&l);
    }
}
