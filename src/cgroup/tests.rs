//! The parsers on text written from the kernel's cgroup-v2.rst and from
//! real v1 files; the readers on the fixture trees under
//! `tests/fixtures/cgroup` (no /sys needed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::locate::{Dirs, V1Dirs};
use super::parse::{self, ReadWrite};
use super::*;

const SYSTEMD_ID: &str = "4f1c0d2a9e8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d";
const CGROUPFS_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup")
}

/// A v1 host's mountinfo (cpu and cpuacct apart, plus an empty v2 tree for
/// systemd: a hybrid host as the test machines), its cgroup mounts under
/// `root`.
fn v1_mountinfo(root: &str) -> String {
    let mut s = format!("31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755\n");
    for (i, c) in ["cpu", "cpuacct", "cpuset", "memory", "blkio", "pids"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            s,
            "{} 31 0:{} / {root}/{c} rw,nosuid,nodev,noexec,relatime shared:{} - cgroup cgroup rw,{c}",
            32 + i,
            29 + i,
            10 + i
        );
    }
    let _ = write!(
        s,
        "40 31 0:37 / {root}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n\
         41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
    );
    s
}

fn v2_mountinfo(root: &str) -> String {
    format!(
        "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n\
         30 22 0:26 / {root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
    )
}

fn mounts(text: &str) -> Mounts {
    Mounts::new(parse::cgroup_mounts(text).expect("mountinfo"))
}

/// What the fixture /proc/4242/net/dev sums to (lo left out).
const FIXTURE_NET: Network = Network {
    rx_bytes: 1_005_000,
    rx_packets: 2010,
    rx_errors: 1,
    rx_dropped: 2,
    tx_bytes: 307_000,
    tx_packets: 920,
    tx_errors: 3,
    tx_dropped: 4,
};

#[test]
fn single_values_and_limits() {
    assert_eq!(parse::single("52428800\n"), Ok(52_428_800));
    assert!(parse::single("").is_err());
    assert!(parse::single("-1").is_err());
    assert_eq!(parse::max_or_number("max\n"), Ok(None));
    assert_eq!(parse::max_or_number("100\n"), Ok(Some(100)));
    assert!(parse::max_or_number("maxi").is_err());
    // v1 without a limit: PAGE_COUNTER_MAX pages of 4 KiB and of 64 KiB.
    assert_eq!(parse::v1_memory_limit("9223372036854771712\n"), Ok(None));
    assert_eq!(parse::v1_memory_limit("9223372036854710272\n"), Ok(None));
    assert_eq!(parse::v1_memory_limit("67108864\n"), Ok(Some(67_108_864)));
}

#[test]
fn flat_keyed_files() {
    // cgroup-v2.rst, cpu.stat.
    let kv = parse::flat_keyed(
        "usage_usec 2000000\nuser_usec 1500000\nsystem_usec 500000\nnr_periods 100\n",
    )
    .expect("cpu.stat");
    assert_eq!(parse::get(&kv, "usage_usec"), Some(2_000_000));
    assert_eq!(parse::get(&kv, "nr_throttled"), None);
    assert!(parse::flat_keyed("usage_usec\n").is_err());
    assert!(parse::flat_keyed("usage_usec 1 2\n").is_err());
    assert!(parse::flat_keyed("usage_usec x\n").is_err());
    assert_eq!(parse::flat_keyed("\n\n"), Ok(Vec::new()));
}

#[test]
fn blkio_sums_read_and_write_over_devices() {
    let text = std::fs::read_to_string(fixtures().join(format!(
        "v1/sys/fs/cgroup/blkio/docker/{CGROUPFS_ID}/blkio.throttle.io_service_bytes"
    )))
    .expect("fixture");
    let (sum, lines) = parse::v1_blkio(&text).expect("parse");
    assert_eq!(
        sum,
        ReadWrite {
            read: 4096 + 8192,
            write: 10_485_760 + 1_048_576
        }
    );
    assert_eq!(lines, 12);
    // An empty cgroup prints only the total.
    assert_eq!(parse::v1_blkio("Total 0\n"), Ok((ReadWrite::default(), 0)));
    assert!(parse::v1_blkio("8:0 Read\n").is_err());
    assert!(parse::v1_blkio("8:0 Read x\n").is_err());
}

#[test]
fn io_stat_of_the_kernel_documentation() {
    let text = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n";
    assert_eq!(
        parse::io_stat(text),
        Ok(ReadWrite {
            read: 1_459_200 + 90_430_464,
            write: 314_773_504 + 299_008_000
        })
    );
    assert_eq!(parse::io_stat(""), Ok(ReadWrite::default()));
    assert!(parse::io_stat("rbytes=1\n").is_err());
    assert!(parse::io_stat("8:0 rbytes=x\n").is_err());
}

#[test]
fn net_dev_sums_all_but_loopback() {
    let text = std::fs::read_to_string(fixtures().join("proc/4242/net/dev")).expect("fixture");
    assert_eq!(parse::net_dev(&text), Ok(FIXTURE_NET));
    assert!(parse::net_dev("a\nb\n eth0: 1 2\n").is_err());
}

#[test]
fn working_set_is_the_docker_cli_formula() {
    // v1: usage - total_inactive_file.
    assert_eq!(working_set(100, Some(30), 10), 70);
    // v1 with total_inactive_file not below usage: the CLI falls to the
    // v2 branch and subtracts inactive_file.
    assert_eq!(working_set(100, Some(100), 10), 90);
    // v2.
    assert_eq!(working_set(100, None, 40), 60);
    // Never below zero: usage itself.
    assert_eq!(working_set(100, None, 100), 100);
    assert_eq!(working_set(0, Some(5), 5), 0);
}

#[test]
fn parsers_never_panic() {
    let nasty = [
        "",
        "\n",
        " ",
        "max",
        "18446744073709551616",
        "-5",
        "a b c d",
        "8:0",
        "8:0 Read 18446744073709551615\n8:0 Read 18446744073709551615\n",
        "8:0 rbytes=18446744073709551615\n9:0 rbytes=18446744073709551615\n",
        "0::",
        "x:y:z",
        ":::",
        "Inter\nface\n",
        "1 2 3 4 5 6 7 8 9 10 11",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
    ];
    for text in nasty {
        let _ = parse::single(text);
        let _ = parse::max_or_number(text);
        let _ = parse::v1_memory_limit(text);
        let _ = parse::flat_keyed(text);
        let _ = parse::v1_blkio(text);
        let _ = parse::io_stat(text);
        let _ = parse::net_dev(text);
        let _ = parse::proc_cgroup(text);
        let _ = parse::cgroup_mounts(text);
    }
}

#[test]
fn locates_v1_with_cpu_and_cpuacct_apart() {
    let m = mounts(&v1_mountinfo("/sys/fs/cgroup"));
    assert!(m.is_v1() && m.has_v2());
    let text = std::fs::read_to_string(fixtures().join("proc/4343/cgroup")).expect("fixture");
    let groups = parse::proc_cgroup(&text).expect("parse");
    let loc = m
        .locate(&groups, Path::new("/proc/4343/cgroup"), CGROUPFS_ID)
        .expect("locate");
    let dir = |c: &str| PathBuf::from(format!("/sys/fs/cgroup/{c}/docker/{CGROUPFS_ID}"));
    assert_eq!(
        loc.dirs,
        Dirs::V1(V1Dirs {
            cpu: dir("cpu"),
            cpuacct: dir("cpuacct"),
            memory: dir("memory"),
            blkio: dir("blkio"),
            pids: dir("pids"),
        })
    );
}

#[test]
fn locates_v1_with_cpu_cpuacct_together_and_the_systemd_driver() {
    let mountinfo = "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
        26 24 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
        27 24 0:24 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio\n\
        28 24 0:25 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
    let path = format!("/system.slice/docker-{SYSTEMD_ID}.scope");
    let text = format!(
        "5:pids:{path}\n4:blkio:{path}\n3:memory:{path}\n2:cpu,cpuacct:{path}\n1:name=systemd:{path}\n"
    );
    let groups = parse::proc_cgroup(&text).expect("parse");
    let loc = mounts(mountinfo)
        .locate(&groups, Path::new("cgroup"), SYSTEMD_ID)
        .expect("locate");
    let Dirs::V1(d) = loc.dirs else {
        panic!("not v1: {loc:?}")
    };
    let both = PathBuf::from(format!("/sys/fs/cgroup/cpu,cpuacct{path}"));
    assert_eq!(d.cpu, both);
    assert_eq!(d.cpuacct, both);
    assert_eq!(
        d.memory,
        PathBuf::from(format!("/sys/fs/cgroup/memory{path}"))
    );
}

#[test]
fn locates_v2_for_both_drivers() {
    let m = mounts(&v2_mountinfo("/sys/fs/cgroup"));
    assert!(!m.is_v1() && m.has_v2());
    for (path, id) in [
        (
            format!("/system.slice/docker-{SYSTEMD_ID}.scope"),
            SYSTEMD_ID,
        ),
        (format!("/docker/{CGROUPFS_ID}"), CGROUPFS_ID),
    ] {
        let groups = parse::proc_cgroup(&format!("0::{path}\n")).expect("parse");
        let loc = m.locate(&groups, Path::new("cgroup"), id).expect("locate");
        assert_eq!(
            loc.dirs,
            Dirs::V2(PathBuf::from(format!("/sys/fs/cgroup{path}")))
        );
    }
}

#[test]
fn a_mount_of_a_sub_tree_is_joined_below_its_root() {
    // The host's /sys/fs/cgroup/system.slice alone, mounted at /host-cg.
    let m = mounts("30 22 0:26 /system.slice /host-cg ro,relatime - cgroup2 cgroup2 rw\n");
    let path = format!("/system.slice/docker-{SYSTEMD_ID}.scope");
    let groups = parse::proc_cgroup(&format!("0::{path}\n")).expect("parse");
    let loc = m.locate(&groups, Path::new("c"), "").expect("locate");
    assert_eq!(
        loc.dirs,
        Dirs::V2(PathBuf::from(format!("/host-cg/docker-{SYSTEMD_ID}.scope")))
    );
    // A cgroup outside the mounted sub-tree, and one seen from a private
    // cgroup namespace, are not there.
    for outside in ["0::/docker/x\n", "0::/../../docker/x\n"] {
        let groups = parse::proc_cgroup(outside).expect("parse");
        let err = m.locate(&groups, Path::new("c"), "").expect_err(outside);
        assert_eq!(err.reason(), "unsupported", "{err}");
    }
}

#[test]
fn a_reused_pid_is_not_the_container() {
    let m = mounts(&v2_mountinfo("/sys/fs/cgroup"));
    let groups =
        parse::proc_cgroup("0::/user.slice/user-0.slice/session-1.scope\n").expect("parse");
    let err = m
        .locate(&groups, Path::new("/proc/7/cgroup"), SYSTEMD_ID)
        .expect_err("another process");
    assert!(err.is_gone(), "{err}");
    assert!(err.to_string().contains("/proc/7/cgroup"), "{err}");
}

fn v2_reader() -> Reader {
    let root = fixtures().join("v2/sys/fs/cgroup");
    let m = mounts(&v2_mountinfo(root.to_str().expect("utf-8 path")));
    Reader::with_roots(fixtures().join("proc"), m)
}

#[test]
fn reads_a_v2_systemd_driver_container() {
    let reader = v2_reader();
    let loc = reader.locate(4242, SYSTEMD_ID).expect("locate");
    let s = reader.read(&loc).expect("read");
    assert_eq!(
        s,
        Sample {
            cpu_seconds: 2.0,
            cpu_periods: 100,
            cpu_throttled_periods: 20,
            cpu_throttled_seconds: 0.35,
            usage_bytes: 52_428_800,
            working_set_bytes: 52_428_800 - 10_485_760,
            rss_bytes: 31_457_280,
            cache_bytes: 18_874_368,
            limit_bytes: Some(67_108_864),
            oom_events: Some(1),
            network: Some(FIXTURE_NET),
            blkio_read_bytes: 91_889_664,
            blkio_write_bytes: 613_781_504,
            pids: 5,
            pids_limit: Some(100),
        }
    );
}

#[test]
fn reads_a_v2_cgroupfs_driver_container_without_limits() {
    let reader = v2_reader();
    let dir = fixtures().join(format!("v2/sys/fs/cgroup/docker/{CGROUPFS_ID}"));
    // PID 4343 shares the host's network namespace.
    let s = reader.read(&Location::v2(4343, dir)).expect("read");
    assert!((s.cpu_seconds - 123.456_789).abs() < 1e-9, "{s:?}");
    assert_eq!(
        (
            s.cpu_periods,
            s.cpu_throttled_periods,
            s.cpu_throttled_seconds
        ),
        (0, 0, 0.0)
    );
    // inactive_file above usage: the CLI prints usage itself.
    assert_eq!((s.usage_bytes, s.working_set_bytes), (4_096_000, 4_096_000));
    assert_eq!((s.limit_bytes, s.pids_limit), (None, None));
    assert_eq!(s.oom_events, Some(0));
    assert_eq!(s.network, None);
    assert_eq!((s.blkio_read_bytes, s.blkio_write_bytes), (0, 0));
}

#[test]
fn reads_a_v1_cgroupfs_driver_container() {
    let root = fixtures().join("v1/sys/fs/cgroup");
    let m = mounts(&v1_mountinfo(root.to_str().expect("utf-8 path")));
    let reader = Reader::with_roots(fixtures().join("proc"), m);
    let loc = reader.locate(4343, CGROUPFS_ID).expect("locate");
    assert_eq!(
        loc,
        Location::v1(4343, &root, &format!("/docker/{CGROUPFS_ID}"))
    );
    let s = reader.read(&loc).expect("read");
    assert_eq!(
        s,
        Sample {
            cpu_seconds: 3.172_493_018,
            cpu_periods: 57,
            cpu_throttled_periods: 41,
            cpu_throttled_seconds: 2.049_387_561,
            usage_bytes: 44_650_496,
            working_set_bytes: 44_650_496 - 122_880,
            rss_bytes: 1_048_576,
            cache_bytes: 41_943_040,
            limit_bytes: Some(67_108_864),
            oom_events: Some(3),
            network: None,
            blkio_read_bytes: 12_288,
            blkio_write_bytes: 11_534_336,
            pids: 3,
            pids_limit: None,
        }
    );
}

#[test]
fn a_vanished_container_is_gone() {
    let reader = v2_reader();
    let err = reader.locate(999_999, SYSTEMD_ID).expect_err("no such pid");
    assert!(err.is_gone(), "{err}");
    let err = reader
        .read(&Location::v2(
            4242,
            fixtures().join("v2/sys/fs/cgroup/docker/removed"),
        ))
        .expect_err("no such cgroup");
    assert!(err.is_gone(), "{err}");
    assert!(err.to_string().contains("removed/cpu.stat"), "{err}");
}
