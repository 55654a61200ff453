//! The per-daemon gauges of the last poll: health, what the daemon is,
//! images, dangling images, filter groups and containers, read from the
//! state at scrape time.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::family::{daemon, gauge_family, per_value};
use crate::labels::ContainerState;
use crate::state::State;

/// Reads the latest snapshot of every daemon at scrape time.
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
pub(super) fn snapshot_gauges(state: &Arc<State>, enc: &mut DescriptorEncoder) -> fmt::Result {
    let all = state.snapshots();
    // Daemons that have not finished a first poll have no series yet.
    let polled: Vec<_> = all
        .iter()
        .filter_map(|(name, s)| s.as_ref().map(|s| (name.as_str(), s.as_ref())))
        .collect();

    gauge_family(
        enc,
        "daemon_up",
        "1 if the last poll of the daemon succeeded, 0 if not.",
        polled.iter().map(|(n, s)| (daemon(n), i64::from(s.up()))),
    )?;
    gauge_family(
        enc,
        "daemon_info",
        "What the daemon reports about itself; always 1.",
        polled.iter().filter_map(|(n, s)| {
            s.info.as_ref().map(|i| {
                (
                    [
                        ("daemon", *n),
                        ("engine", i.engine.as_str()),
                        ("version", i.version.as_str()),
                        ("api_version", i.api_version.as_str()),
                        ("min_api_version", i.min_api_version.as_str()),
                        ("negotiated_api_version", i.negotiated_api_version.as_str()),
                        ("os", i.os.as_str()),
                        ("arch", i.arch.as_str()),
                        ("storage_driver", i.storage_driver.as_str()),
                    ],
                    1_i64,
                )
            })
        }),
    )?;
    gauge_family(
        enc,
        "daemon_last_success_timestamp_seconds",
        "Unix time at the end of the last poll that succeeded.",
        polled
            .iter()
            .filter_map(|(n, s)| s.last_success.map(|t| (daemon(n), t))),
    )?;
    gauge_family(
        enc,
        "daemon_poll_duration_seconds",
        "How long the last poll of the daemon took.",
        polled.iter().map(|(n, s)| (daemon(n), s.poll_duration)),
    )?;

    let data: Vec<_> = polled
        .iter()
        .filter_map(|(n, s)| s.data.as_ref().map(|d| (*n, d)))
        .collect();
    gauge_family(
        enc,
        "images",
        "Top-level images on the daemon.",
        data.iter().map(|(n, d)| (daemon(n), d.images.count)),
    )?;
    gauge_family(
        enc,
        "images_size_bytes",
        "Total size of the top-level images, as the daemon reports each.",
        data.iter().map(|(n, d)| (daemon(n), d.images.bytes)),
    )?;
    gauge_family(
        enc,
        "images_dangling",
        "Images matched by filters={\"dangling\":[\"true\"]}.",
        data.iter().map(|(n, d)| (daemon(n), d.dangling.count)),
    )?;
    gauge_family(
        enc,
        "images_dangling_size_bytes",
        "Total size of the dangling images.",
        data.iter().map(|(n, d)| (daemon(n), d.dangling.bytes)),
    )?;
    let filters = || {
        data.iter()
            .flat_map(|(n, d)| d.filters.iter().map(move |(f, c)| (*n, f.as_str(), c)))
    };
    gauge_family(
        enc,
        "image_filter_matches",
        "Images matched by a configured filter group.",
        filters().map(|(n, f, c)| ([("daemon", n), ("filter", f)], c.count)),
    )?;
    gauge_family(
        enc,
        "image_filter_size_bytes",
        "Total size of the images matched by a configured filter group.",
        filters().map(|(n, f, c)| ([("daemon", n), ("filter", f)], c.bytes)),
    )?;
    gauge_family(
        enc,
        "image_filter_success",
        "1 if the filter group's last query worked, 0 if the daemon refused it.",
        polled.iter().filter(|(_, s)| s.up()).flat_map(|(n, s)| {
            let worked = s
                .data
                .iter()
                .flat_map(|d| d.filters.iter().map(|(f, _)| (f, 1)));
            let failed = s.failed_filters.iter().map(|f| (f, 0));
            worked
                .chain(failed)
                .map(move |(f, v)| ([("daemon", *n), ("filter", f.as_str())], v))
        }),
    )?;
    gauge_family(
        enc,
        "containers",
        "Containers on the daemon, by state.",
        per_value::<ContainerState, _>("state", data.iter().map(|(n, d)| (*n, &d.containers[..]))),
    )?;
    Ok(())
}
