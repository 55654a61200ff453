//! `dockwatch_discovery_targets` and `_last_success_timestamp_seconds`: what
//! each `[[discovery]]` source read, set by its task.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Debug)]
pub(super) struct DiscoveryFamilies {
    targets: Family<SourceLabels, Gauge>,
    last_success: Family<SourceLabels, Gauge<f64, AtomicU64>>,
}

impl DiscoveryFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let f = Self {
            targets: Family::default(),
            last_success: Family::default(),
        };
        registry.register(
            "discovery_targets",
            "Daemons read from each discovery source",
            f.targets.clone(),
        );
        registry.register(
            "discovery_last_success_timestamp_seconds",
            "Unix time of the last read of a discovery source in which every file could be read",
            f.last_success.clone(),
        );
        f
    }

    pub(super) fn read(&self, source: &str, targets: usize, all_read: bool, now: f64) {
        let l = SourceLabels {
            source: source.to_owned(),
        };
        self.targets
            .get_or_create(&l)
            .set(i64::try_from(targets).unwrap_or(i64::MAX));
        if all_read {
            self.last_success.get_or_create(&l).set(now);
        }
    }

    pub(super) fn clear(&self) {
        self.targets.clear();
        self.last_success.clear();
    }
}
