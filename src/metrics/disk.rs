//! The `/system/df` gauges, read from the state at scrape time: whether the
//! last df worked, and what it said when it did.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;

use super::family::{daemon, gauge_family};
use crate::docker::df::Usage;
use crate::state::State;

pub(super) fn disk_gauges(state: &Arc<State>, enc: &mut DescriptorEncoder) -> fmt::Result {
    let all = state.disks();
    gauge_family(
        enc,
        "disk_usage_success",
        "1 if the last /system/df of the daemon worked, 0 if not.",
        all.iter().map(|(n, d)| (daemon(n), i64::from(d.is_some()))),
    )?;
    let disks: Vec<_> = all
        .iter()
        .filter_map(|(n, d)| d.as_ref().map(|d| (n.as_str(), d)))
        .collect();
    let disk_rows = |f: fn(&Usage) -> u64| {
        disks.iter().flat_map(move |(n, d)| {
            d.by_type()
                .into_iter()
                .map(move |(t, u)| ([("daemon", *n), ("type", t)], f(&u)))
        })
    };
    gauge_family(
        enc,
        "disk_usage_bytes",
        "Disk used, by type (images, containers, volumes, build_cache), from /system/df.",
        disk_rows(|u| u.size),
    )?;
    gauge_family(
        enc,
        "disk_reclaimable_bytes",
        "Disk a prune could free, by type, from /system/df.",
        disk_rows(|u| u.reclaimable),
    )?;
    gauge_family(
        enc,
        "images_unused",
        "Images no container uses (not the same as dangling), from /system/df.",
        disks.iter().map(|(n, d)| (daemon(n), d.images_unused)),
    )
}
