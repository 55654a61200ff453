//! `dockwatch_discovery_targets` and `_last_success_timestamp_seconds`: what
//! each `[[discovery]]` source read, set by its task.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::family::{Forget, family_group};
use crate::clock::unix_now;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

family_group! {
    pub struct DiscoveryFamilies {
        targets: Family<SourceLabels, Gauge> = "discovery_targets", Family::default(), "Daemons read from each discovery source";
        last_success: Family<SourceLabels, Gauge<f64, AtomicU64>> = "discovery_last_success_timestamp_seconds", Family::default(), "Unix time of the last read of a discovery source in which every file could be read";
    }
}

impl DiscoveryFamilies {
    /// What a discovery source read: how many daemons, and whether every
    /// file could be read.
    pub fn read(&self, source: &str, targets: usize, all_read: bool) {
        self.read_at(source, targets, all_read, unix_now());
    }

    /// [`Self::read`] at the Unix time `now`.
    pub fn read_at(&self, source: &str, targets: usize, all_read: bool, now: f64) {
        let l = SourceLabels {
            source: source.to_owned(),
        };
        self.targets
            .get_or_create(&l)
            .set(i64::try_from(targets).unwrap_or(i64::MAX));
        if all_read {
            self.last_success.get_or_create(&l).set(now);
        }
        self.changes.mark();
    }

    /// Drops the discovery series (before a reload starts the sources anew).
    pub fn clear(&self) {
        self.targets.clear();
        self.last_success.clear();
        self.changes.mark();
    }
}

/// The sources are not per daemon: a reload clears them all.
impl Forget for DiscoveryFamilies {}
