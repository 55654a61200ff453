//! Writing a gauge family from rows, for the collectors that read state at
//! scrape time.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

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
