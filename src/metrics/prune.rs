//! The pruning families: rounds by result, images removed and their bytes,
//! refusals by reason, updated by the pruners as things happen; and what the
//! last round found removable (in a dry run: what would have gone).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::family::{ByValue, DaemonLabel, Forget, family_group};
use crate::labels::{PruneRefusal, PruneResult};

/// What one round found removable: every candidate that passed the guards
/// (before `max_per_round`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Eligible {
    pub images: u64,
    pub bytes: u64,
}

family_group! {
    pub struct PruneFamilies for DaemonLabel {
        runs: ByValue<DaemonLabel, PruneResult> = "prune_runs", ByValue::new("result"), "Prune rounds, by result (ok, skipped: daemon down or [prune.when] not met, failed)";
        removed: Family<DaemonLabel, Counter> = "prune_images_removed", Family::default(), "Dangling images removed by pruning";
        reclaimed: Family<DaemonLabel, Counter> = "prune_reclaimed_bytes", Family::default(), "Sizes of the images pruning removed, as the daemon listed them (shared layers count once per image)";
        refused: ByValue<DaemonLabel, PruneRefusal> = "prune_refused", ByValue::new("reason"), "Removals the daemon refused, by reason (in_use, not_found, conflict, other)";
        last_run: Family<DaemonLabel, Gauge<f64, AtomicU64>> = "prune_last_run_timestamp_seconds", Family::default(), "Unix time the last prune round ended, whatever its result";
        eligible: Family<DaemonLabel, Gauge> = "prune_eligible_images", Family::default(), "Dangling images the last prune round found removable (in a dry run, what would have gone)";
        eligible_bytes: Family<DaemonLabel, Gauge> = "prune_eligible_bytes", Family::default(), "Bytes of the dangling images the last prune round found removable, as the daemon listed them";
    }
}

/// Bytes and counts as a gauge value; beyond `i64` is beyond any disk.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PruneFamilies {
    /// Creates a daemon's counters at zero, so `increase()` sees its first
    /// round.
    pub fn init(&self, daemon: &str) {
        let l = DaemonLabel::new(daemon);
        self.runs.init(&l, &PruneResult::ALL);
        self.refused.init(&l, &PruneRefusal::ALL);
        let _ = self.removed.get_or_create(&l);
        let _ = self.reclaimed.get_or_create(&l);
        self.changes.mark();
    }

    /// Counts one image pruning removed, and its size.
    pub fn removed(&self, daemon: &str, bytes: u64) {
        let l = DaemonLabel::new(daemon);
        self.removed.get_or_create(&l).inc();
        self.reclaimed.get_or_create(&l).inc_by(bytes);
        self.changes.mark();
    }

    /// Counts one removal the daemon refused.
    pub fn refused(&self, daemon: &str, reason: PruneRefusal) {
        self.refused.get(&DaemonLabel::new(daemon), reason).inc();
        self.changes.mark();
    }

    /// One round ended at Unix time `at`; `eligible` is what it found
    /// removable, `None` when it did not get as far as knowing (skipped, or
    /// failed early): the gauges then keep the last known.
    pub fn round(&self, daemon: &str, result: PruneResult, eligible: Option<Eligible>, at: f64) {
        let l = DaemonLabel::new(daemon);
        self.runs.get(&l, result).inc();
        self.last_run.get_or_create(&l).set(at);
        if let Some(e) = eligible {
            self.eligible.get_or_create(&l).set(gauge_value(e.images));
            self.eligible_bytes
                .get_or_create(&l)
                .set(gauge_value(e.bytes));
        }
        self.changes.mark();
    }

    /// Drops every series of a daemon that is no longer pruned.
    pub fn forget(&self, daemon: &str) {
        self.forget_series(&DaemonLabel::new(daemon));
    }
}

impl Forget for PruneFamilies {
    fn forget_daemon(&self, daemon: &str) {
        self.forget(daemon);
    }
}
