//! What the families share: the change marker they bump, the trait by which
//! they forget a daemon or an image, registration, the common label sets,
//! and writing a gauge family from rows (for the collectors that read state
//! at scrape time).

use std::fmt;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Metric, Registry};

use crate::labels::LabelSet;

/// Writes one gauge family; writes nothing when there are no rows, so a
/// family with no series does not appear at all.
pub(super) fn gauge_family<L, V, I>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: I,
) -> fmt::Result
where
    L: EncodeLabelSet,
    V: prometheus_client::encoding::EncodeGaugeValue + fmt::Debug,
    I: IntoIterator<Item = (L, V)>,
{
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The label set of a per-daemon series.
pub(super) fn daemon(name: &str) -> [(&'static str, &str); 1] {
    [("daemon", name)]
}

/// The shared change marker: every family bumps it after each change it
/// makes, so a scrape that sees the new version also sees the change, and a
/// scrape that sees the old one may send the body it made before.
#[derive(Debug, Clone, Default)]
pub(super) struct Changes(Arc<AtomicU64>);

impl Changes {
    /// Marks a change, after it was made.
    pub(super) fn mark(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn version(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// What a family drops when a daemon or a pre-pull image leaves the
/// configuration; a family with neither label keeps the defaults. Every
/// family is registered with [`Metrics`](super::Metrics) as one of these, so
/// forgetting needs no list of families but that one.
pub(super) trait Forget: Send + Sync + fmt::Debug {
    fn forget_daemon(&self, _daemon: &str) {}
    fn forget_image(&self, _daemon: &str, _image: &str) {}
}

/// Registers `metric` under `name` with its help text; returns it, so the
/// family keeps the handle it records through.
pub(super) fn register<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The labels of a per-daemon series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct DaemonLabel {
    daemon: String,
}

impl DaemonLabel {
    pub(super) fn new(daemon: &str) -> Self {
        Self {
            daemon: daemon.to_owned(),
        }
    }
}

/// The labels of a pre-pull image's series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ImageLabels {
    daemon: String,
    image: String,
}

impl ImageLabels {
    pub(super) fn new(daemon: &str, image: &str) -> Self {
        Self {
            daemon: daemon.to_owned(),
            image: image.to_owned(),
        }
    }
}

/// The label set of a [`ByValue`] family's series: `L`, then the closed
/// label.
type WithValue<L, V> = (L, [(&'static str, V); 1]);

/// A family whose series carry the labels `L` and then one closed label
/// named `key`: as every value of it is known, a series per value can be
/// made, or dropped, at once.
#[derive(Debug, Clone)]
pub(super) struct ByValue<L, V: 'static, M = Counter> {
    family: Family<WithValue<L, V>, M>,
    key: &'static str,
}

impl<L, V, M> ByValue<L, V, M>
where
    L: Clone + Hash + Eq,
    V: LabelSet,
    Family<WithValue<L, V>, M>: Metric + Clone,
{
    /// `family`, registered under `name`, its series labelled `L` and `key`.
    pub(super) fn register_family(
        registry: &mut Registry,
        name: &str,
        help: &str,
        key: &'static str,
        family: Family<WithValue<L, V>, M>,
    ) -> Self {
        Self {
            family: register(registry, name, help, family),
            key,
        }
    }

    /// The series of `labels` and `value`, made if it is not there yet.
    pub(super) fn get(&self, labels: &L, value: V) -> impl Deref<Target = M> + '_ {
        self.family
            .get_or_create(&(labels.clone(), [(self.key, value)]))
    }

    /// Makes the series of `labels` and each of `values`, so `increase()`
    /// sees the first change of each.
    pub(super) fn init(&self, labels: &L, values: &[V]) {
        for value in values {
            // get_or_create is what creates the series; the guard is not needed.
            let _ = self.get(labels, *value);
        }
    }

    /// Drops the series of `labels`, whatever their value.
    pub(super) fn forget(&self, labels: &L) {
        for value in V::ALL {
            self.family.remove(&(labels.clone(), [(self.key, *value)]));
        }
    }
}

impl<L, V> ByValue<L, V>
where
    L: Clone + Hash + Eq + EncodeLabelSet + fmt::Debug + Send + Sync + 'static,
    V: LabelSet + Send + Sync,
{
    /// A counter family, registered under `name`.
    pub(super) fn register(
        registry: &mut Registry,
        name: &str,
        help: &str,
        key: &'static str,
    ) -> Self {
        Self::register_family(registry, name, help, key, Family::default())
    }
}

/// Unix time now, in seconds; 0 before 1970.
pub(super) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
