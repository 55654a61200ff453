//! `process_*` metrics, in the names every Prometheus client uses, read
//! from /proc by the procfs crate at scrape time.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::family::gauge_family;

#[derive(Debug)]
pub(super) struct ProcessCollector;

#[derive(Debug, Default, PartialEq)]
pub(super) struct ProcessStats {
    pub(super) cpu_seconds: f64,
    pub(super) start_time_seconds: f64,
    pub(super) virtual_memory_bytes: f64,
    pub(super) resident_memory_bytes: f64,
    pub(super) open_fds: f64,
    pub(super) max_fds: f64,
}

#[allow(clippy::cast_precision_loss)]
pub(super) fn read_process_stats() -> Option<ProcessStats> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let boot = procfs::boot_time_secs().ok()? as f64;
    let max_fds = match me.limits().ok()?.max_open_files.soft_limit {
        procfs::process::LimitValue::Value(n) => n as f64,
        procfs::process::LimitValue::Unlimited => f64::INFINITY,
    };
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        start_time_seconds: boot + stat.starttime as f64 / ticks,
        virtual_memory_bytes: stat.vsize as f64,
        resident_memory_bytes: (stat.rss * procfs::page_size()) as f64,
        open_fds: me.fd_count().ok()? as f64,
        max_fds,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let Some(p) = read_process_stats() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(enc.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?)?;
        let none: [(&str, &str); 0] = [];
        for (name, help, value) in [
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                p.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                p.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                p.max_fds,
            ),
        ] {
            gauge_family(&mut enc, name, help, [(none, value)])?;
        }
        Ok(())
    }
}
