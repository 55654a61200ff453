//! cgroup v1: the files containerd's `cgroup1` package reads for dockerd.

use super::locate::V1Dirs;
use super::parse::{self, get};
use super::{CgroupCounters, Error, read_with, working_set};

#[allow(clippy::cast_precision_loss)] // nanoseconds: exact to 2^53 ns, 104 days of CPU
pub(super) fn read(dirs: &V1Dirs) -> Result<CgroupCounters, Error> {
    let usage_ns = read_with(&dirs.cpuacct.join("cpuacct.usage"), parse::single)?;
    // nr_periods, nr_throttled, throttled_time (ns): dockerd's throttling_data.
    let cpu_stat = read_with(&dirs.cpu.join("cpu.stat"), |t| {
        parse::flat_keyed(t).map(|kv| {
            (
                get(&kv, "nr_periods").unwrap_or(0),
                get(&kv, "nr_throttled").unwrap_or(0),
                get(&kv, "throttled_time").unwrap_or(0),
            )
        })
    })?;
    let usage_bytes = read_with(&dirs.memory.join("memory.usage_in_bytes"), parse::single)?;
    // Hierarchical totals (total_*), as the docker CLI's v1 branch reads
    // total_inactive_file; a container's cgroup rarely has children, but
    // then they count.
    let (total_inactive_file, inactive_file, rss, cache) =
        read_with(&dirs.memory.join("memory.stat"), |t| {
            parse::flat_keyed(t).map(|kv| {
                (
                    get(&kv, "total_inactive_file"),
                    get(&kv, "inactive_file").unwrap_or(0),
                    get(&kv, "total_rss").unwrap_or(0),
                    get(&kv, "total_cache").unwrap_or(0),
                )
            })
        })?;
    let limit_bytes = read_with(
        &dirs.memory.join("memory.limit_in_bytes"),
        parse::v1_memory_limit,
    )?;
    // `oom_kill` appeared in memory.oom_control with Linux 4.13; before it v1
    // counts no OOM kills (memory.failcnt counts hits of the limit, not kills).
    let oom_events = read_with(&dirs.memory.join("memory.oom_control"), |t| {
        parse::flat_keyed(t).map(|kv| get(&kv, "oom_kill"))
    })?;
    let blkio = blkio(dirs)?;
    let pids = read_with(&dirs.pids.join("pids.current"), parse::single)?;
    let pids_limit = read_with(&dirs.pids.join("pids.max"), parse::max_or_number)?;
    Ok(CgroupCounters {
        cpu_seconds: usage_ns as f64 / 1e9,
        cpu_periods: cpu_stat.0,
        cpu_throttled_periods: cpu_stat.1,
        cpu_throttled_seconds: cpu_stat.2 as f64 / 1e9,
        usage_bytes,
        working_set_bytes: working_set(usage_bytes, total_inactive_file, inactive_file),
        rss_bytes: rss,
        cache_bytes: cache,
        limit_bytes,
        oom_events,
        blkio,
        pids,
        pids_limit,
    })
}

/// containerd's `blkioController.Stat`: the CFQ file
/// `blkio.io_service_bytes_recursive` when it exists and has entries, else
/// `blkio.throttle.io_service_bytes` (kernels since 5.0 have no CFQ, so
/// this is the usual one).
fn blkio(dirs: &V1Dirs) -> Result<parse::ReadWrite, Error> {
    let cfq = dirs.blkio.join("blkio.io_service_bytes_recursive");
    match read_with(&cfq, parse::v1_blkio) {
        Ok((sum, lines)) if lines > 0 => return Ok(sum),
        Ok(_) | Err(Error::Gone { .. }) => {}
        Err(e) => return Err(e),
    }
    let throttle = dirs.blkio.join("blkio.throttle.io_service_bytes");
    read_with(&throttle, parse::v1_blkio).map(|(sum, _)| sum)
}
