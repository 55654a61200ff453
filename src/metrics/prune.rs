//! The pruning families: rounds by result, images removed and their bytes,
//! refusals by reason, updated by the pruners as things happen; and what the
//! last round found removable (in a dry run: what would have gone).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::family::{ByValue, Changes, DaemonLabel, Forget, register};
use crate::labels::{PruneRefusal, PruneResult};

/// What one round found removable: every candidate that passed the guards
/// (before `max_per_round`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Eligible {
    pub images: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct PruneFamilies {
    runs: ByValue<DaemonLabel, PruneResult>,
    removed: Family<DaemonLabel, Counter>,
    reclaimed: Family<DaemonLabel, Counter>,
    refused: ByValue<DaemonLabel, PruneRefusal>,
    last_run: Family<DaemonLabel, Gauge<f64, AtomicU64>>,
    eligible: Family<DaemonLabel, Gauge>,
    eligible_bytes: Family<DaemonLabel, Gauge>,
    changes: Changes,
}

/// Bytes and counts as a gauge value; beyond `i64` is beyond any disk.
fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PruneFamilies {
    pub(super) fn register(registry: &mut Registry, changes: &Changes) -> Self {
        Self {
            runs: ByValue::register(
                registry,
                "prune_runs",
                "Prune rounds, by result (ok, skipped: daemon down or [prune.when] not met, failed)",
                "result",
            ),
            removed: register(
                registry,
                "prune_images_removed",
                "Dangling images removed by pruning",
                Family::default(),
            ),
            reclaimed: register(
                registry,
                "prune_reclaimed_bytes",
                "Sizes of the images pruning removed, as the daemon listed them (shared layers count once per image)",
                Family::default(),
            ),
            refused: ByValue::register(
                registry,
                "prune_refused",
                "Removals the daemon refused, by reason (in_use, not_found, conflict, other)",
                "reason",
            ),
            last_run: register(
                registry,
                "prune_last_run_timestamp_seconds",
                "Unix time the last prune round ended, whatever its result",
                Family::default(),
            ),
            eligible: register(
                registry,
                "prune_eligible_images",
                "Dangling images the last prune round found removable (in a dry run, what would have gone)",
                Family::default(),
            ),
            eligible_bytes: register(
                registry,
                "prune_eligible_bytes",
                "Bytes of the dangling images the last prune round found removable, as the daemon listed them",
                Family::default(),
            ),
            changes: changes.clone(),
        }
    }

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
        let l = DaemonLabel::new(daemon);
        self.runs.forget(&l);
        self.refused.forget(&l);
        self.removed.remove(&l);
        self.reclaimed.remove(&l);
        self.last_run.remove(&l);
        self.eligible.remove(&l);
        self.eligible_bytes.remove(&l);
        self.changes.mark();
    }
}

impl Forget for PruneFamilies {
    fn forget_daemon(&self, daemon: &str) {
        self.forget(daemon);
    }
}
