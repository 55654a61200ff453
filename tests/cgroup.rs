//! `dockwatch::cgroup` on the real dockerd A of the test bed (20.10, cgroup
//! v1, cgroupfs driver): containers with known behaviour, each read with the
//! module and, in the same second, with the daemon's own one-shot stats
//! (`GET /containers/{id}/stats?stream=false&one-shot=true`) and with
//! `docker stats --no-stream`. Every container started here is named
//! `dwcg-...` and removed however the test ends. Lines starting `CGROUP:`
//! print the numbers compared.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{DockerCli, Scratch, Testbed, wait_until};
use dockwatch::cgroup::{Location, Reader, Sample};
use serde_json::Value;

/// A container removed when dropped, pass or fail.
struct Container {
    cli: DockerCli,
    id: String,
    pid: u32,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.cli.try_run(&["rm", "-f", &self.id]);
    }
}

fn start(tag: &str, flags: &[&str], script: &str) -> Container {
    let cli = Testbed::get().cli_a();
    let name = format!("dwcg-{tag}-{}", std::process::id());
    let _ = cli.try_run(&["rm", "-f", &name]);
    let mut args = vec!["run", "-d", "--name", &name, "--network", "none"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["dwtest/tool:1", "/bin/busybox", "sh", "-c", script]);
    let id = cli.run(&args).trim().to_owned();
    let mut c = Container { cli, id, pid: 0 };
    c.pid = c
        .cli
        .run(&["inspect", "-f", "{{.State.Pid}}", &c.id])
        .trim()
        .parse()
        .expect("pid");
    c
}

impl Container {
    /// Waits (at most 20 s, polling every `poll`) until `path` exists in
    /// the container: its script's sign that a phase ended; else fails
    /// with `what`.
    fn wait_for_file(&self, path: &str, poll: Duration, what: &str) {
        wait_until(
            Duration::from_secs(20),
            poll,
            || {
                self.cli
                    .try_run(&["exec", &self.id, "/bin/busybox", "test", "-e", path])
                    .status
                    .success()
            },
            || what.to_owned(),
        );
    }

    fn locate(&self, reader: &Reader) -> Location {
        reader
            .locate(self.pid, &self.id)
            .unwrap_or_else(|e| panic!("locate {}: {e}", self.id))
    }

    fn read(&self, reader: &Reader) -> Sample {
        reader
            .read(&self.locate(reader))
            .unwrap_or_else(|e| panic!("read {}: {e}", self.id))
    }

    /// dockerd's own answer (one-shot: no second sample).
    fn daemon_stats(&self) -> Value {
        let bed = Testbed::get();
        let out = Command::new("curl")
            .args([
                "-sf",
                "--unix-socket",
                bed.var("DOCKER_A_SOCKET"),
                &format!(
                    "http://docker/containers/{}/stats?stream=false&one-shot=true",
                    self.id
                ),
            ])
            .output()
            .expect("curl");
        assert!(out.status.success(), "stats call failed: {out:?}");
        serde_json::from_slice(&out.stdout).expect("stats JSON")
    }

    /// `docker stats --no-stream` of this container.
    fn cli_stats(&self) -> Value {
        let text = self
            .cli
            .run(&["stats", "--no-stream", "--format", "{{json .}}", &self.id]);
        serde_json::from_str(text.trim()).expect("docker stats JSON")
    }

    /// Runs `script` in the container and waits for it.
    fn exec(&self, script: &str) -> String {
        self.cli
            .run(&["exec", &self.id, "/bin/busybox", "sh", "-c", script])
    }
}

fn reader() -> Reader {
    Reader::new().expect("mount table")
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The docker CLI's working set from dockerd's answer
/// (`calculateMemUsageUnixNoCache`).
fn cli_working_set(stats: &Value) -> u64 {
    let m = &stats["memory_stats"];
    let usage = u(&m["usage"]);
    match m["stats"]["total_inactive_file"].as_u64() {
        Some(v) if v < usage => usage - v,
        _ => match m["stats"]["inactive_file"].as_u64() {
            Some(v) if v < usage => usage - v,
            _ => usage,
        },
    }
}

/// A size as the docker CLI prints it, in bytes: binary units for memory
/// ("40.61MiB"), decimal ones for I/O ("8.39MB").
fn size(text: &str) -> f64 {
    let (value, scale) = common::split_human_size(text);
    value * scale
}

/// Reads the module and dockerd until both say the same (an idle container
/// settles at once; a page or two of kernel bookkeeping can move between
/// two reads), at most 5 times.
fn settled(
    c: &Container,
    reader: &Reader,
    same: impl Fn(&Sample, &Value) -> bool,
) -> (Sample, Value) {
    let mut last = None;
    for _ in 0..5 {
        let daemon = c.daemon_stats();
        let mine = c.read(reader);
        if same(&mine, &daemon) {
            return (mine, daemon);
        }
        last = Some((mine, daemon));
    }
    let (mine, daemon) = last.expect("one read");
    panic!(
        "never agreed with dockerd: mine {mine:?}\ndockerd {}",
        daemon["memory_stats"]
    );
}

#[test]
fn memory_under_a_limit_equals_dockerd_and_docker_stats() {
    let c = start(
        "mem",
        &["--memory", "64m"],
        // 40 MiB in /dev/shm (shmem: anon-like, in the working set) and 8 MiB
        // of written file (page cache, inactive: out of it).
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40 2>/dev/null; dd if=/dev/zero of=/tmp/cached bs=1M count=8 2>/dev/null; touch /tmp/ready; sleep 120",
    );
    c.wait_for_file(
        "/tmp/ready",
        Duration::from_millis(100),
        "the filler never finished",
    );
    let r = reader();
    let (mine, daemon) = settled(&c, &r, |s, d| {
        s.usage_bytes == u(&d["memory_stats"]["usage"]) && s.working_set_bytes == cli_working_set(d)
    });
    // docker stats takes a second or two: it must match a read of ours
    // made just before or just after it, within its printed rounding.
    let mib = (1u64 << 20) as f64;
    let mut cli = Value::Null;
    for _ in 0..5 {
        let before = c.read(&r).working_set_bytes as f64;
        cli = c.cli_stats();
        let after = c.read(&r).working_set_bytes as f64;
        let used = cli_memory(&cli).0;
        if (used - before).abs() <= 0.01 * mib || (used - after).abs() <= 0.01 * mib {
            break;
        }
        println!("CGROUP: memory moved: {before} .. {after}, docker stats {used}");
        cli = Value::Null;
    }
    assert!(!cli.is_null(), "docker stats never matched a read of ours");
    let m = &daemon["memory_stats"];
    println!(
        "CGROUP: memory: mine usage {} working set {} rss {} cache {} limit {:?}; dockerd usage {} total_inactive_file {} limit {} -> working set {}; docker stats {}",
        mine.usage_bytes,
        mine.working_set_bytes,
        mine.rss_bytes,
        mine.cache_bytes,
        mine.limit_bytes,
        m["usage"],
        m["stats"]["total_inactive_file"],
        m["limit"],
        cli_working_set(&daemon),
        cli["MemUsage"]
    );
    assert_eq!(mine.limit_bytes, Some(64 << 20));
    assert_eq!(mine.limit_bytes, m["limit"].as_u64());
    assert_eq!(mine.rss_bytes, u(&m["stats"]["total_rss"]));
    assert_eq!(mine.cache_bytes, u(&m["stats"]["total_cache"]));
    // 40 MiB of /dev/shm is page cache (shmem), charged to the container.
    assert!(
        (40 << 20..48 << 20).contains(&mine.working_set_bytes),
        "{mine:?}"
    );
    assert!(mine.cache_bytes >= 40 << 20, "{mine:?}");
    // The written file's cache is in usage, not in the working set.
    assert!(
        mine.usage_bytes - mine.working_set_bytes >= 4 << 20,
        "{mine:?}"
    );
    let limit = cli_memory(&cli).1;
    assert!((limit - (64u64 << 20) as f64).abs() < 1.0, "{limit}");
    assert_eq!(mine.oom_events, Some(0));
}

#[test]
fn an_unlimited_container_has_no_limit_and_dockerd_says_the_host_memory() {
    let c = start("nolimit", &[], "sleep 120");
    let r = reader();
    let (mine, daemon) = settled(&c, &r, |s, d| {
        s.usage_bytes == u(&d["memory_stats"]["usage"])
    });
    let host = procfs_mem_total();
    println!(
        "CGROUP: unlimited: mine limit {:?} pids {} limit {:?}; dockerd limit {} (MemTotal {host}) pids {}",
        mine.limit_bytes,
        mine.pids,
        mine.pids_limit,
        daemon["memory_stats"]["limit"],
        daemon["pids_stats"]
    );
    assert_eq!(mine.limit_bytes, None);
    assert_eq!(u(&daemon["memory_stats"]["limit"]), host);
    assert_eq!(mine.pids_limit, None);
    assert_eq!(daemon["pids_stats"]["limit"].as_u64().unwrap_or(0), 0);
    // No CPU quota: no CFS periods.
    assert_eq!((mine.cpu_periods, mine.cpu_throttled_periods), (0, 0));
}

/// `docker stats` MEM USAGE and LIMIT, in bytes (2 decimals of MiB).
fn cli_memory(cli: &Value) -> (f64, f64) {
    cli["MemUsage"]
        .as_str()
        .and_then(|t| t.split_once(" / "))
        .map(|(a, b)| (size(a), size(b)))
        .expect("MemUsage")
}

fn procfs_mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    kib * 1024
}

#[test]
fn cpu_burnt_under_a_fifth_of_a_cpu_is_counted_and_throttled() {
    // A fifth of a CPU, not half: on the bed's 2 shared cores a busy loop
    // does not always get half a core, but always runs out of 20 ms per
    // 100 ms period, so throttling shows whatever else the machine does.
    let c = start(
        "cpu",
        &["--cpus", "0.2"],
        "timeout 3 sh -c 'while :; do :; done'; touch /tmp/done; sleep 120",
    );
    let started = Instant::now();
    c.wait_for_file(
        "/tmp/done",
        Duration::from_millis(200),
        "the burner never finished",
    );
    let r = reader();
    let loc = c.locate(&r);
    let (mine, daemon) = settled(&c, &r, |s, d| {
        let theirs = u(&d["cpu_stats"]["cpu_usage"]["total_usage"]) as f64 / 1e9;
        (s.cpu_seconds - theirs).abs() < 0.001
    });
    // The counter itself, read by the test.
    let raw: u64 = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/cpuacct/docker/{}/cpuacct.usage",
        c.id
    ))
    .expect("cpuacct.usage")
    .trim()
    .parse()
    .expect("number");
    let again = r.read(&loc).expect("read");
    let t = &daemon["cpu_stats"]["throttling_data"];
    println!(
        "CGROUP: cpu: mine {:.4} s, periods {} throttled {} ({:.3} s); cpuacct.usage {:.4} s; dockerd total_usage {:.4} s, periods {} throttled {} ({:.3} s); burnt over {:.1} s",
        mine.cpu_seconds,
        mine.cpu_periods,
        mine.cpu_throttled_periods,
        mine.cpu_throttled_seconds,
        raw as f64 / 1e9,
        u(&daemon["cpu_stats"]["cpu_usage"]["total_usage"]) as f64 / 1e9,
        t["periods"],
        t["throttled_periods"],
        u(&t["throttled_time"]) as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    assert!(
        mine.cpu_seconds <= raw as f64 / 1e9 && raw as f64 / 1e9 <= again.cpu_seconds,
        "{} <= {raw} <= {}",
        mine.cpu_seconds,
        again.cpu_seconds
    );
    // 3 s at a fifth of a CPU: 0.6 s, give or take a period at each end.
    assert!((0.4..0.8).contains(&mine.cpu_seconds), "{mine:?}");
    assert_eq!(mine.cpu_periods, u(&t["periods"]));
    assert_eq!(mine.cpu_throttled_periods, u(&t["throttled_periods"]));
    assert!((mine.cpu_throttled_seconds - u(&t["throttled_time"]) as f64 / 1e9).abs() < 1e-9);
    // 3 s is 30 periods of 100 ms; the burner ran out of its quota in
    // nearly all of them.
    assert!((30..45).contains(&mine.cpu_periods), "{mine:?}");
    assert!(mine.cpu_throttled_periods >= 20, "{mine:?}");
    assert!(mine.cpu_throttled_seconds > 1.0, "{mine:?}");
}

#[test]
fn pids_equal_dockerd_and_docker_stats() {
    let c = start(
        "pids",
        &["--pids-limit", "50"],
        "for i in 1 2 3 4 5 6 7; do sleep 120 & done; wait",
    );
    let r = reader();
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || c.read(&r).pids == 8,
        || format!("never 8 pids: {:?}", c.read(&r)),
    );
    let daemon = c.daemon_stats();
    let mine = c.read(&r);
    let cli = c.cli_stats();
    println!(
        "CGROUP: pids: mine {} limit {:?}; dockerd {}; docker stats {}",
        mine.pids, mine.pids_limit, daemon["pids_stats"], cli["PIDs"]
    );
    assert_eq!(mine.pids, u(&daemon["pids_stats"]["current"]));
    assert_eq!(mine.pids_limit, daemon["pids_stats"]["limit"].as_u64());
    assert_eq!(mine.pids_limit, Some(50));
    assert_eq!(cli["PIDs"].as_str(), Some("8"));
}

#[test]
fn direct_io_is_counted_as_written_and_read() {
    let scratch = Scratch::new("cgroup-blkio");
    // v1 counts a cgroup's I/O only on a queue with a throttle rule
    // (blk-throttle does the accounting): a rule far above what dd needs.
    let dev = String::from_utf8(
        Command::new("findmnt")
            .args(["-no", "SOURCE", "-T"])
            .arg(&scratch.0)
            .output()
            .expect("findmnt")
            .stdout,
    )
    .expect("utf-8");
    let dev = dev.trim();
    assert!(dev.starts_with("/dev/"), "the scratch dir is on {dev:?}");
    let bind = format!("{}:/data", scratch.0.display());
    let write_rule = format!("{dev}:10gb");
    let c = start(
        "blkio",
        &[
            "-v",
            &bind,
            "--device-write-bps",
            &write_rule,
            "--device-read-bps",
            &write_rule,
        ],
        "sleep 120",
    );
    let r = reader();
    let before = c.read(&r);
    c.exec("dd if=/dev/zero of=/data/f bs=1M count=8 oflag=direct 2>/dev/null && dd if=/data/f of=/dev/null bs=1M iflag=direct 2>/dev/null");
    let (mine, daemon) = settled(&c, &r, |s, d| {
        let (mut rd, mut wr) = (0, 0);
        for e in d["blkio_stats"]["io_service_bytes_recursive"]
            .as_array()
            .into_iter()
            .flatten()
        {
            match e["op"].as_str() {
                Some("Read") => rd += u(&e["value"]),
                Some("Write") => wr += u(&e["value"]),
                _ => {}
            }
        }
        (s.blkio_read_bytes, s.blkio_write_bytes) == (rd, wr)
    });
    let cli = c.cli_stats();
    println!(
        "CGROUP: blkio: before {} / {}; mine {} / {}; dockerd {}; docker stats {}",
        before.blkio_read_bytes,
        before.blkio_write_bytes,
        mine.blkio_read_bytes,
        mine.blkio_write_bytes,
        daemon["blkio_stats"]["io_service_bytes_recursive"],
        cli["BlockIO"]
    );
    // 8 MiB each way with O_DIRECT (no cache); ext4 may add a block of
    // metadata (an extent, the journal) either way.
    let read = mine.blkio_read_bytes - before.blkio_read_bytes;
    assert!((8 << 20..(8 << 20) + (1 << 20)).contains(&read), "{read}");
    let written = mine.blkio_write_bytes - before.blkio_write_bytes;
    assert!(
        (8 << 20..(8 << 20) + (1 << 20)).contains(&written),
        "{written}"
    );
    let (r_cli, w_cli) = cli["BlockIO"]
        .as_str()
        .and_then(|t| t.split_once(" / "))
        .map(|(a, b)| (size(a), size(b)))
        .expect("BlockIO");
    // "8.39MB": 3 significant digits.
    assert!(
        (r_cli - mine.blkio_read_bytes as f64).abs() <= 0.01e6,
        "{r_cli}"
    );
    assert!(
        (w_cli - mine.blkio_write_bytes as f64).abs() <= 0.01e6,
        "{w_cli}"
    );
}

#[test]
fn an_oom_kill_raises_the_counter_by_one() {
    let c = start(
        "oom",
        &["--memory", "32m", "--memory-swap", "32m"],
        // One hog process (a pipe's two ends could both be killed): a shell
        // doubling a string until the kernel kills it, once.
        "while [ ! -e /tmp/go ]; do sleep 0.1; done; /bin/busybox sh -c 'x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done'; touch /tmp/done; sleep 120",
    );
    let r = reader();
    let before = c.read(&r);
    c.exec("touch /tmp/go");
    c.wait_for_file(
        "/tmp/done",
        Duration::from_millis(100),
        "the hog never ended",
    );
    let after = c.read(&r);
    let daemon = c.daemon_stats();
    println!(
        "CGROUP: oom: mine before {:?} after {:?}; dockerd failcnt {} (limit hits, not kills)",
        before.oom_events, after.oom_events, daemon["memory_stats"]["failcnt"]
    );
    assert_eq!(before.oom_events, Some(0));
    // Ground truth: the kernel logs one `oom-kill:` line per kill, naming
    // the memory cgroup (it may kill twice while the first victim exits).
    let kernel = kernel_oom_kills(&c.id);
    assert!(
        kernel >= 1,
        "the kernel logged no OOM kill in this container"
    );
    assert_eq!(after.oom_events, Some(kernel));
}

/// OOM kills the kernel logged for container `id`'s memory cgroup.
fn kernel_oom_kills(id: &str) -> u64 {
    let out = std::process::Command::new("dmesg")
        .output()
        .expect("dmesg runs (util-linux; the tests run as root)");
    assert!(out.status.success(), "dmesg failed: {out:?}");
    let memcg = format!("oom_memcg=/docker/{id}");
    let kills = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("oom-kill:") && l.contains(&memcg))
        .count();
    u64::try_from(kills).expect("a count")
}

#[test]
fn network_counts_what_one_container_sent_another_over_a_veth() {
    // dockerd A has no bridge (--bridge=none): a veth pair made straight
    // into the two containers' namespaces, nothing in the host's.
    let rx = start("netrx", &[], "sleep 120");
    let tx = start("nettx", &[], "sleep 120");
    let tag = std::process::id() % 100_000;
    let (a, b) = (format!("dwcga{tag}"), format!("dwcgb{tag}"));
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().expect("ip");
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    };
    let (rx_pid, tx_pid) = (rx.pid.to_string(), tx.pid.to_string());
    ip(&[
        "link", "add", &a, "netns", &tx_pid, "type", "veth", "peer", "name", &b, "netns", &rx_pid,
    ]);
    let ns = |pid: &str, args: &[&str]| {
        let out = Command::new("nsenter")
            .args(["-t", pid, "-n"])
            .args(args)
            .output()
            .expect("nsenter");
        assert!(out.status.success(), "nsenter {args:?}: {out:?}");
    };
    for (pid, dev, addr) in [
        (&tx_pid, &a, "10.213.7.1/30"),
        (&rx_pid, &b, "10.213.7.2/30"),
    ] {
        // No IPv6 on it: no router solicitations or MLD reports to count.
        ns(
            pid,
            &[
                "sysctl",
                "-q",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ],
        );
        ns(pid, &["ip", "addr", "add", addr, "dev", dev]);
        ns(pid, &["ip", "link", "set", dev, "up"]);
    }
    let r = reader();
    let before = (
        tx.read(&r).network.expect("own netns"),
        rx.read(&r).network.expect("own netns"),
    );
    // 20 echo requests of 1000 bytes: 1042 bytes on the wire each
    // (Ethernet 14 + IP 20 + ICMP 8 + 1000), and as many replies.
    tx.exec("ping -q -c 20 -i 0.05 -s 1000 10.213.7.2 >/dev/null");
    let (t, rcv) = (
        tx.read(&r).network.expect("own netns"),
        rx.read(&r).network.expect("own netns"),
    );
    let daemon = tx.daemon_stats();
    let cli = tx.cli_stats();
    println!(
        "CGROUP: network: sender tx {} B / {} pkts rx {} B; receiver rx {} B / {} pkts tx {} B; dockerd networks {}; docker stats {}",
        t.tx_bytes - before.0.tx_bytes,
        t.tx_packets - before.0.tx_packets,
        t.rx_bytes - before.0.rx_bytes,
        rcv.rx_bytes - before.1.rx_bytes,
        rcv.rx_packets - before.1.rx_packets,
        rcv.tx_bytes - before.1.tx_bytes,
        daemon["networks"],
        cli["NetIO"]
    );
    // A veth delivers every frame one end sends to the other.
    assert_eq!(
        t.tx_bytes - before.0.tx_bytes,
        rcv.rx_bytes - before.1.rx_bytes
    );
    assert_eq!(
        t.rx_bytes - before.0.rx_bytes,
        rcv.tx_bytes - before.1.tx_bytes
    );
    // 20 echoes, plus at most an ARP exchange each way (42 bytes a frame).
    let sent = t.tx_bytes - before.0.tx_bytes;
    assert!((20 * 1042..=20 * 1042 + 2 * 42).contains(&sent), "{sent}");
    let pkts = t.tx_packets - before.0.tx_packets;
    assert!((20..=22).contains(&pkts), "{pkts}");
    assert_eq!(
        (t.tx_errors, t.tx_dropped, rcv.rx_errors, rcv.rx_dropped),
        (0, 0, 0, 0)
    );
    // dockerd counts only interfaces libnetwork made: none for a
    // --network none container, so it says nothing of this veth.
    assert!(daemon["networks"].is_null(), "{}", daemon["networks"]);
    assert_eq!(cli["NetIO"].as_str(), Some("0B / 0B"));
}

#[test]
fn a_removed_container_is_gone_and_its_pid_is_not_it() {
    let c = start("gone", &[], "sleep 120");
    let r = reader();
    let loc = c.locate(&r);
    r.read(&loc).expect("read while running");
    c.cli.run(&["rm", "-f", &c.id]);
    let err = r.read(&loc).expect_err("removed");
    println!("CGROUP: gone: {err}");
    assert!(err.is_gone(), "{err}");
    // Our own PID is a process, but not the container.
    let err = r
        .locate(std::process::id(), &c.id)
        .expect_err("not the container");
    assert!(err.is_gone(), "{err}");
}
