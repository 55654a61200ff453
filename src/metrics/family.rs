//! What the families share: the change marker they bump, the trait by which
//! they forget a daemon or an image, the declaration of a family group
//! (`family_group!`), the common label sets; and for the collectors that
//! read state at scrape time, writing a gauge family from rows.

use std::fmt;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Metric, Registry};

use crate::labels::LabelSet;

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

/// A group of families, written once, a line each: its field and type, then
/// `= "name", what to make it from, "help text";`. Makes the struct (with
/// the change marker each recording method bumps) and `register`, which
/// registers every family in order. With `for L` (every family labelled
/// `L`, or `L` and one closed label) it also makes `forget_series`, which
/// drops the series of `L` in each. Recording methods go in a normal impl
/// block beside it, and end with `self.changes.mark()`.
///
/// ```ignore
/// family_group! {
///     pub struct CheckFamilies for ImageLabels {
///         checks: ByValue<ImageLabels, CheckResult> = "image_registry_checks", ByValue::new("result"), "Checks of ...";
///         stalls: Family<ImageLabels, Counter> = "image_pull_stalls", Family::default(), "Pre-pulls canceled ...";
///     }
/// }
/// ```
macro_rules! family_group {
    (
        $(#[$attr:meta])*
        pub struct $name:ident for $labels:ty {
            $( $field:ident: $ty:ty = $metric:literal, $make:expr, $help:literal; )+
        }
    ) => {
        family_group! {
            $(#[$attr])*
            pub struct $name {
                $( $field: $ty = $metric, $make, $help; )+
            }
        }

        impl $name {
            /// Drops the series of `labels` in every family of the group.
            fn forget_series(&self, labels: &$labels) {
                $( $crate::metrics::family::Series::forget(&self.$field, labels); )+
                self.changes.mark();
            }
        }
    };
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $field:ident: $ty:ty = $metric:literal, $make:expr, $help:literal; )+
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $( $field: $ty, )+
            changes: $crate::metrics::family::Changes,
        }

        impl $name {
            /// Registers every family of the group, in order.
            pub(super) fn register(
                registry: &mut ::prometheus_client::registry::Registry,
                changes: &$crate::metrics::family::Changes,
            ) -> Self {
                use $crate::metrics::family::Registered as _;
                Self {
                    $( $field: <$ty>::register($make, registry, $metric, $help), )+
                    changes: changes.clone(),
                }
            }
        }
    };
}
pub(super) use family_group;

/// What a group's family is made of: a metric registered under a name with
/// its help text, kept for recording.
pub(super) trait Registered: Sized {
    fn register(self, registry: &mut Registry, name: &str, help: &str) -> Self;
}

impl<S, M, C> Registered for Family<S, M, C>
where
    Self: Metric + Clone,
{
    fn register(self, registry: &mut Registry, name: &str, help: &str) -> Self {
        registry.register(name, help, self.clone());
        self
    }
}

impl<N, A> Registered for Gauge<N, A>
where
    Self: Metric + Clone,
{
    fn register(self, registry: &mut Registry, name: &str, help: &str) -> Self {
        registry.register(name, help, self.clone());
        self
    }
}

impl<L, V, M> Registered for ByValue<L, V, M>
where
    Family<WithValue<L, V>, M>: Metric + Clone,
{
    fn register(self, registry: &mut Registry, name: &str, help: &str) -> Self {
        registry.register(name, help, self.family.clone());
        self
    }
}

/// A family whose series of some labels `L` can be dropped.
pub(super) trait Series<L> {
    /// Drops the series of `labels`, whatever else they carry.
    fn forget(&self, labels: &L);
}

impl<L: Clone + Hash + Eq, M, C: MetricConstructor<M>> Series<L> for Family<L, M, C> {
    fn forget(&self, labels: &L) {
        self.remove(labels);
    }
}

impl<L: Clone + Hash + Eq, V: LabelSet, M> Series<L> for ByValue<L, V, M> {
    fn forget(&self, labels: &L) {
        for value in V::ALL {
            self.family.remove(&(labels.clone(), [(self.key, *value)]));
        }
    }
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

impl<L: Clone + Hash + Eq, V: LabelSet, M> ByValue<L, V, M> {
    /// A family of the default metric, its closed label named `key`.
    pub(super) fn new(key: &'static str) -> Self
    where
        M: Default,
    {
        Self::with_family(key, Family::default())
    }

    /// `family`, its closed label named `key`.
    pub(super) fn with_family(key: &'static str, family: Family<WithValue<L, V>, M>) -> Self {
        Self { family, key }
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
}

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

/// The rows of a gauge family labelled `daemon` and `key`: for each daemon,
/// one per value of `V`, from counts kept per value (indexed as `V::ALL`).
pub(super) fn per_value<'a, V: LabelSet, T: Copy + 'a>(
    key: &'static str,
    daemons: impl Iterator<Item = (&'a str, &'a [T])>,
) -> impl Iterator<Item = ([(&'static str, &'a str); 2], T)> {
    daemons.flat_map(move |(daemon, counts)| {
        V::ALL
            .iter()
            .map(move |v| ([("daemon", daemon), (key, v.label())], counts[v.index()]))
    })
}

/// A collector of gauges read at scrape time: `write` writes them from
/// `source` (the state, the pull board). Each file keeps its `write`.
#[derive(Debug)]
pub(super) struct ReadAtScrape<T> {
    pub(super) source: T,
    pub(super) write: fn(&T, &mut DescriptorEncoder) -> fmt::Result,
}

impl<T: fmt::Debug + Send + Sync + 'static> Collector for ReadAtScrape<T> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        (self.write)(&self.source, &mut encoder)
    }
}

/// The label set of a per-daemon series.
pub(super) fn daemon(name: &str) -> [(&'static str, &str); 1] {
    [("daemon", name)]
}
