//! One container's resource counters, read where the kernel keeps them:
//! its cgroup's files (v1 or v2) and `/proc/<pid>/net/dev`, with no Docker
//! call.
//!
//! ```no_run
//! # fn main() -> Result<(), dockwatch::cgroup::Error> {
//! use dockwatch::cgroup::Reader;
//! let reader = Reader::new()?; // reads /proc/self/mountinfo once
//! let id = "4f1c..."; // the container's ID, and its init PID from inspect
//! let location = reader.locate(4242, id)?; // keep it while the container runs
//! let sample = reader.read(&location)?;
//! println!("{} s of CPU, {} bytes working set", sample.cpu_seconds, sample.working_set_bytes);
//! # Ok(()) }
//! ```
//!
//! Every formula is dockerd's (moby `daemon/stats_unix.go` over containerd's
//! `cgroups` package) followed by the docker CLI's
//! (`cli/command/container/stats_helpers.go`), so this source and the Engine
//! API's stats agree; where a raw cgroup counter is more useful than
//! dockerd's mapping (an unlimited limit, the OOM kill count) the field says
//! so.

pub mod locate;
pub mod parse;
mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};

pub use locate::{Location, Mounts};
pub use parse::{Network, ParseError};

/// One container's counters at one instant. Counters (`_seconds`,
/// `_periods`, `_events`, network and block I/O) only grow while the
/// container runs; the rest are gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// CPU time, user + system: v1 `cpuacct.usage`, v2 `cpu.stat`
    /// `usage_usec` (dockerd's `cpu_usage.total_usage`).
    pub cpu_seconds: f64,
    /// CFS periods elapsed while a CPU quota is set (`cpu.stat`
    /// `nr_periods`); 0 without a limit.
    pub cpu_periods: u64,
    /// Periods in which the quota ran out (`nr_throttled`).
    pub cpu_throttled_periods: u64,
    /// Time throttled (v1 `throttled_time`, v2 `throttled_usec`).
    pub cpu_throttled_seconds: f64,
    /// Memory charged, cache included: v1 `memory.usage_in_bytes`, v2
    /// `memory.current` (dockerd's `memory_stats.usage`).
    pub usage_bytes: u64,
    /// What `docker stats` prints as MEM USAGE: usage minus inactive file
    /// cache, exactly as the CLI's `calculateMemUsageUnixNoCache`.
    pub working_set_bytes: u64,
    /// Anonymous memory: v1 `total_rss`, v2 `anon`.
    pub rss_bytes: u64,
    /// Page cache: v1 `total_cache`, v2 `file`.
    pub cache_bytes: u64,
    /// The memory limit; `None` when unlimited (dockerd reports the host's
    /// memory instead, and caps any limit above it to it).
    pub limit_bytes: Option<u64>,
    /// OOM kills in the cgroup: v1 `memory.oom_control` `oom_kill`, v2
    /// `memory.events` `oom_kill`; `None` on a v1 kernel older than 4.13,
    /// which does not count them.
    pub oom_events: Option<u64>,
    /// Summed over the container's interfaces but `lo`, as `docker stats`
    /// NET I/O; `None` when the container shares the host's network
    /// namespace (dockerd reports no networks then).
    pub network: Option<Network>,
    /// Bytes read from block devices (`docker stats` BLOCK I/O, first
    /// half).
    pub blkio_read_bytes: u64,
    /// Bytes written to block devices.
    pub blkio_write_bytes: u64,
    /// Tasks in the cgroup (`pids.current`).
    pub pids: u64,
    /// `pids.max`; `None` for `max` (dockerd says 0 on v1 and 2^64-1 on
    /// v2 then).
    pub pids_limit: Option<u64>,
}

/// Why a container could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process or its cgroup went away while it was read (the
    /// container stopped): the caller drops the container quietly.
    #[error("{}: gone (the container stopped)", .path.display())]
    Gone { path: PathBuf },
    /// The PID now belongs to a process outside the container's cgroup
    /// (the container stopped and the PID was reused).
    #[error("{}: {path_in_hierarchy} is not the cgroup of container {id}", .file.display())]
    NotTheContainer {
        file: PathBuf,
        id: String,
        path_in_hierarchy: String,
    },
    #[error("cannot read {}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", .path.display())]
    Parse { path: PathBuf, source: ParseError },
    /// No mounted cgroup hierarchy holds what is needed (e.g. the host's
    /// /sys/fs/cgroup is not mounted in dockwatch's container).
    #[error("{}: {what}", .path.display())]
    Unsupported { path: PathBuf, what: String },
}

impl Error {
    /// A closed reason for an error counter's label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Gone { .. } | Error::NotTheContainer { .. } => "gone",
            Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                "permission"
            }
            Error::Io { .. } => "io",
            Error::Parse { .. } => "parse",
            Error::Unsupported { .. } => "unsupported",
        }
    }

    /// True when the container went away (stopped, removed, PID reused):
    /// not a failure.
    pub fn is_gone(&self) -> bool {
        self.reason() == "gone"
    }
}

/// Reads a whole small file; a missing file or process is [`Error::Gone`].
fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: io::Error) -> Error {
    // ENOENT: the cgroup directory or /proc/<pid> was removed; ESRCH: the
    // process exited between open and read; ENODEV: the cgroup was
    // removed while its file was open.
    const ESRCH: i32 = 3;
    const ENODEV: i32 = 19;
    let gone = source.kind() == io::ErrorKind::NotFound
        || matches!(source.raw_os_error(), Some(ESRCH | ENODEV));
    if gone {
        Error::Gone { path: path.into() }
    } else {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Reads `path` and parses it with `parse`, naming the file on failure.
fn read_with<T>(
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, Error> {
    let text = read_text(path)?;
    parse(&text).map_err(|source| Error::Parse {
        path: path.into(),
        source,
    })
}

/// The counters of the cgroup alone (all but the network), as both
/// readers give them.
#[derive(Debug, Clone, PartialEq)]
struct CgroupCounters {
    cpu_seconds: f64,
    cpu_periods: u64,
    cpu_throttled_periods: u64,
    cpu_throttled_seconds: f64,
    usage_bytes: u64,
    working_set_bytes: u64,
    rss_bytes: u64,
    cache_bytes: u64,
    limit_bytes: Option<u64>,
    oom_events: Option<u64>,
    blkio: parse::ReadWrite,
    pids: u64,
    pids_limit: Option<u64>,
}

/// Finds containers' cgroups and reads them. Made once (it reads the mount
/// table), used for every container.
#[derive(Debug, Clone)]
pub struct Reader {
    mounts: Mounts,
    /// Where procfs is mounted: `/proc`, or a fixture in tests.
    proc: PathBuf,
}

impl Reader {
    /// Reads the cgroup mounts from `/proc/self/mountinfo`.
    pub fn new() -> Result<Self, Error> {
        let path = Path::new("/proc/self/mountinfo");
        let mounts = read_with(path, parse::cgroup_mounts)?;
        Ok(Self::with_roots("/proc", Mounts::new(mounts)))
    }

    /// A reader over another procfs root and mount table (tests, fixtures).
    pub fn with_roots(proc: impl Into<PathBuf>, mounts: Mounts) -> Self {
        Self {
            mounts,
            proc: proc.into(),
        }
    }

    /// The mounts it resolves cgroup paths against.
    pub fn mounts(&self) -> &Mounts {
        &self.mounts
    }

    /// Finds the cgroup of container `id` from its init process `pid`
    /// (`/proc/<pid>/cgroup`). Checks the path names `id` (both drivers'
    /// paths do), so a reused PID is never read as the container; an empty
    /// `id` skips that check.
    pub fn locate(&self, pid: u32, id: &str) -> Result<Location, Error> {
        let file = self.proc.join(pid.to_string()).join("cgroup");
        let groups = read_with(&file, parse::proc_cgroup)?;
        let mut location = self.mounts.locate(&groups, &file, id)?;
        location.pid = pid;
        Ok(location)
    }

    /// Reads every counter of a located container.
    pub fn read(&self, location: &Location) -> Result<Sample, Error> {
        let c = match &location.dirs {
            locate::Dirs::V1(dirs) => v1::read(dirs)?,
            locate::Dirs::V2(dir) => v2::read(dir)?,
        };
        let network = self.network(location.pid)?;
        Ok(Sample {
            cpu_seconds: c.cpu_seconds,
            cpu_periods: c.cpu_periods,
            cpu_throttled_periods: c.cpu_throttled_periods,
            cpu_throttled_seconds: c.cpu_throttled_seconds,
            usage_bytes: c.usage_bytes,
            working_set_bytes: c.working_set_bytes,
            rss_bytes: c.rss_bytes,
            cache_bytes: c.cache_bytes,
            limit_bytes: c.limit_bytes,
            oom_events: c.oom_events,
            network,
            blkio_read_bytes: c.blkio.read,
            blkio_write_bytes: c.blkio.write,
            pids: c.pids,
            pids_limit: c.pids_limit,
        })
    }

    /// The network counters of `pid`'s namespace, or `None` when it is the
    /// host's (that of PID 1).
    fn network(&self, pid: u32) -> Result<Option<Network>, Error> {
        let dir = self.proc.join(pid.to_string());
        let ns = dir.join("ns/net");
        let theirs = std::fs::read_link(&ns).map_err(|e| io_error(&ns, e))?;
        let host = self.proc.join("1/ns/net");
        // Without PID 1's namespace (no --pid host), count every
        // namespace as the container's own.
        if std::fs::read_link(&host).is_ok_and(|h| h == theirs) {
            return Ok(None);
        }
        read_with(&dir.join("net/dev"), parse::net_dev).map(Some)
    }
}

/// The docker CLI's `calculateMemUsageUnixNoCache`: usage minus v1
/// `total_inactive_file` when that is present and smaller, else minus
/// `inactive_file` when smaller, else usage itself (never below zero).
fn working_set(usage: u64, total_inactive_file: Option<u64>, inactive_file: u64) -> u64 {
    match total_inactive_file {
        Some(v) if v < usage => usage - v,
        _ if inactive_file < usage => usage - inactive_file,
        _ => usage,
    }
}

#[cfg(test)]
mod tests;
