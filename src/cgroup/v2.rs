//! cgroup v2: the files containerd's `cgroup2` package reads for dockerd,
//! all in the container's one directory.

use std::path::Path;

use super::parse::{self, get};
use super::{CgroupCounters, Error, read_with, working_set};

#[allow(clippy::cast_precision_loss)] // microseconds: exact to 2^53 µs
pub(super) fn read(dir: &Path) -> Result<CgroupCounters, Error> {
    // usage_usec always; nr_periods, nr_throttled, throttled_usec only with
    // the cpu controller enabled for the cgroup (0 without, as containerd).
    let cpu = read_with(&dir.join("cpu.stat"), |t| {
        parse::flat_keyed(t).map(|kv| {
            ["usage_usec", "nr_periods", "nr_throttled", "throttled_usec"]
                .map(|k| get(&kv, k).unwrap_or(0))
        })
    })?;
    let usage_bytes = read_with(&dir.join("memory.current"), parse::single)?;
    let (inactive_file, anon, file) = read_with(&dir.join("memory.stat"), |t| {
        parse::flat_keyed(t).map(|kv| {
            (
                get(&kv, "inactive_file").unwrap_or(0),
                get(&kv, "anon").unwrap_or(0),
                get(&kv, "file").unwrap_or(0),
            )
        })
    })?;
    let limit_bytes = read_with(&dir.join("memory.max"), parse::max_or_number)?;
    // dockerd puts memory.events `oom` (the limit was hit) in `failcnt`;
    // `oom_kill` counts the processes killed, the OOM events an operator
    // means.
    let oom_events = read_with(&dir.join("memory.events"), |t| {
        parse::flat_keyed(t).map(|kv| get(&kv, "oom_kill"))
    })?;
    // No io.stat without the io controller enabled: nothing read, as
    // containerd says then.
    let blkio = match read_with(&dir.join("io.stat"), parse::io_stat) {
        Err(Error::Gone { .. }) => parse::ReadWrite::default(),
        other => other?,
    };
    let pids = read_with(&dir.join("pids.current"), parse::single)?;
    let pids_limit = read_with(&dir.join("pids.max"), parse::max_or_number)?;
    Ok(CgroupCounters {
        cpu_seconds: cpu[0] as f64 / 1e6,
        cpu_periods: cpu[1],
        cpu_throttled_periods: cpu[2],
        cpu_throttled_seconds: cpu[3] as f64 / 1e6,
        usage_bytes,
        // The CLI's v2 branch: no total_inactive_file in v2's memory.stat.
        working_set_bytes: working_set(usage_bytes, None, inactive_file),
        rss_bytes: anon,
        cache_bytes: file,
        limit_bytes,
        oom_events,
        blkio,
        pids,
        pids_limit,
    })
}
