//! The cgroup and /proc file formats, parsed from their text: pure
//! functions, no I/O, no panic on any input. The readers attach the file's
//! path to a [`ParseError`].

use procfs::FromBufRead;

/// What was wrong with a file's text (the reader names the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn bad(what: impl Into<String>) -> ParseError {
    ParseError(what.into())
}

/// A file holding one unsigned number (`cpuacct.usage`, `memory.current`,
/// `pids.current`, ...).
pub fn single(text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    t.parse()
        .map_err(|_| bad(format!("expected one number, found {:?}", clip(t))))
}

/// A limit file that says `max` when unlimited (v2 `memory.max`,
/// `pids.max` in both versions): `None` for `max`.
pub fn max_or_number(text: &str) -> Result<Option<u64>, ParseError> {
    if text.trim() == "max" {
        Ok(None)
    } else {
        single(text).map(Some)
    }
}

/// The largest value cgroup v1 `memory.limit_in_bytes` reads when no limit
/// is set is `PAGE_COUNTER_MAX` pages, `LONG_MAX` rounded down to the page size
/// (9223372036854771712 with 4 KiB pages). Anything within 2 MiB of `LONG_MAX`
/// is that, whatever the page size.
const V1_UNLIMITED_FROM: u64 = i64::MAX as u64 - (2 << 20);

/// cgroup v1 `memory.limit_in_bytes`: `None` when unlimited.
pub fn v1_memory_limit(text: &str) -> Result<Option<u64>, ParseError> {
    let v = single(text)?;
    Ok((v < V1_UNLIMITED_FROM).then_some(v))
}

/// A flat keyed file, `key value` per line (`cpu.stat`, `memory.stat`,
/// `memory.events`, `memory.oom_control`, `cpuacct.stat`): every pair in
/// order. A line that is not a key and one number is an error, as in
/// containerd's parser that dockerd uses.
pub fn flat_keyed(text: &str) -> Result<Vec<(&str, u64)>, ParseError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(key), Some(value), None) = (words.next(), words.next(), words.next()) else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(bad(format!(
                "expected \"key value\", found {:?}",
                clip(line)
            )));
        };
        let value = value
            .parse()
            .map_err(|_| bad(format!("{key}: expected a number, found {:?}", clip(value))))?;
        out.push((key, value));
    }
    Ok(out)
}

/// The value of `key` in pairs from [`flat_keyed`].
pub fn get(pairs: &[(&str, u64)], key: &str) -> Option<u64> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Bytes read and written, summed over the devices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadWrite {
    pub read: u64,
    pub write: u64,
}

/// cgroup v1 `blkio.throttle.io_service_bytes` (or the CFQ
/// `blkio.io_service_bytes_recursive`): `MAJ:MIN Op value` lines and a
/// `Total value` line. Sums the `Read` and `Write` lines over the devices,
/// as the docker CLI's `calculateBlockIO` sums the entries whose op starts
/// with r or w (Sync, Async, Discard and Total are left out). Returns the
/// sums and how many device lines there were.
pub fn v1_blkio(text: &str) -> Result<(ReadWrite, usize), ParseError> {
    let mut sum = ReadWrite::default();
    let mut lines = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        match words.as_slice() {
            [] | ["Total", _] => {}
            [device, op, value] if device.contains(':') => {
                let value: u64 = value
                    .parse()
                    .map_err(|_| bad(format!("expected a number, found {:?}", clip(line))))?;
                lines += 1;
                match op.as_bytes().first() {
                    Some(b'r' | b'R') => sum.read = sum.read.saturating_add(value),
                    Some(b'w' | b'W') => sum.write = sum.write.saturating_add(value),
                    _ => {}
                }
            }
            _ => return Err(bad(format!("unexpected line {:?}", clip(line)))),
        }
    }
    Ok((sum, lines))
}

/// cgroup v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. ...` per
/// device. Sums `rbytes` and `wbytes`, the two entries dockerd's v2 path
/// turns into `io_service_bytes_recursive` Read and Write. Unknown keys are
/// skipped (the kernel adds some, e.g. `dbytes`), as containerd does.
pub fn io_stat(text: &str) -> Result<ReadWrite, ParseError> {
    let mut sum = ReadWrite::default();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(device) = words.next() else { continue };
        if !device.contains(':') {
            return Err(bad(format!("unexpected line {:?}", clip(line))));
        }
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let slot = match key {
                "rbytes" => &mut sum.read,
                "wbytes" => &mut sum.write,
                _ => continue,
            };
            let value: u64 = value
                .parse()
                .map_err(|_| bad(format!("{key}: expected a number, found {:?}", clip(value))))?;
            *slot = slot.saturating_add(value);
        }
    }
    Ok(sum)
}

/// Network counters, summed over interfaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Network {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// `/proc/<pid>/net/dev` (procfs's parser), summed over every interface but
/// `lo`. dockerd's NET I/O sums the interfaces libnetwork put in the
/// container's sandbox (libnetwork `Sandbox.Statistics`), which never
/// include the loopback; a tunnel device the kernel adds to every namespace
/// (`tunl0`, `sit0`, ...) carries nothing.
pub fn net_dev(text: &str) -> Result<Network, ParseError> {
    let devices = procfs::net::InterfaceDeviceStatus::from_buf_read(text.as_bytes())
        .map_err(|e| bad(format!("not a net/dev table: {e}")))?;
    let mut sum = Network::default();
    for d in devices.0.values().filter(|d| d.name != "lo") {
        let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        add(&mut sum.rx_bytes, d.recv_bytes);
        add(&mut sum.rx_packets, d.recv_packets);
        add(&mut sum.rx_errors, d.recv_errs);
        add(&mut sum.rx_dropped, d.recv_drop);
        add(&mut sum.tx_bytes, d.sent_bytes);
        add(&mut sum.tx_packets, d.sent_packets);
        add(&mut sum.tx_errors, d.sent_errs);
        add(&mut sum.tx_dropped, d.sent_drop);
    }
    Ok(sum)
}

/// One line of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// 0 for the v2 hierarchy.
    pub hierarchy: u32,
    /// The v1 controllers of the hierarchy (empty for v2 and `name=` ones
    /// carry their name).
    pub controllers: Vec<String>,
    /// The cgroup's path inside the hierarchy.
    pub path: String,
}

/// `/proc/<pid>/cgroup` (procfs's parser).
pub fn proc_cgroup(text: &str) -> Result<Vec<Membership>, ParseError> {
    let groups = procfs::ProcessCGroups::from_buf_read(text.as_bytes())
        .map_err(|e| bad(format!("not a /proc/<pid>/cgroup file: {e}")))?;
    Ok(groups
        .0
        .into_iter()
        .map(|g| Membership {
            hierarchy: g.hierarchy,
            controllers: g.controllers,
            path: g.pathname,
        })
        .collect())
}

/// A cgroup file system mounted somewhere, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// `None` for cgroup2; the v1 controllers bound to it otherwise.
    pub controllers: Option<Vec<String>>,
    /// The cgroup inside the hierarchy that is the mount's root (`/` but in
    /// a bind mount of a sub-tree or a private cgroup namespace).
    pub root: String,
    pub mount_point: std::path::PathBuf,
}

/// The cgroup mounts in a `mountinfo` file (procfs's parser).
pub fn cgroup_mounts(text: &str) -> Result<Vec<CgroupMount>, ParseError> {
    let infos = procfs::process::MountInfos::from_buf_read(text.as_bytes())
        .map_err(|e| bad(format!("not a mountinfo file: {e}")))?;
    let mut out = Vec::new();
    for m in infos {
        let controllers = match m.fs_type.as_str() {
            "cgroup2" => None,
            "cgroup" => {
                // The controllers are among the super options, beside
                // rw/ro and the like; `name=x` hierarchies have none.
                let mut c: Vec<String> = m
                    .super_options
                    .iter()
                    .filter(|(k, v)| v.is_none() && !matches!(k.as_str(), "rw" | "ro"))
                    .map(|(k, _)| k.clone())
                    .collect();
                c.sort();
                Some(c)
            }
            _ => continue,
        };
        out.push(CgroupMount {
            controllers,
            root: m.root,
            mount_point: m.mount_point,
        });
    }
    Ok(out)
}

/// At most 60 characters of a bad value, for an error message.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(60) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
