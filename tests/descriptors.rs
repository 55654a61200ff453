//! The open-file limit with a thousand daemons: a replay fleet of 1,000
//! endpoints (benches/replay.py, no dockerd) and dockwatch started under
//! `prlimit --nofile=SOFT:HARD`. With a soft limit of 1,024 and a high hard
//! one, dockwatch raises its soft limit and polls all 1,000; with a hard
//! limit of 1,024, once discovery brings the daemons past what fits, it
//! says how many fit (once), watches those, shows the others down, and keeps
//! serving `/metrics`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Dockwatch, http_get, reap, temp_dir};

const FLEET: usize = 1000;

/// Of the fleet, the daemons in the config of the hard-limit test; the
/// others are discovered.
const CONFIGURED: usize = 100;

/// The hard limit of the first test, as issue 20 asks (or the machine's own
/// hard limit if that is lower: raising it needs `CAP_SYS_RESOURCE`).
const HIGH_HARD: u64 = 65536;

/// One fleet and one agent at a time: two of each would share two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// A replay fleet of [`FLEET`] unix-socket endpoints, killed when dropped.
struct Fleet {
    child: Child,
    dir: PathBuf,
    /// (name, host) of each endpoint, in its order.
    endpoints: Vec<(String, String)>,
}

impl Fleet {
    fn start(tag: &str) -> Self {
        let dir = temp_dir(tag);
        let log = std::fs::File::create(dir.join("replay.log")).expect("log");
        let child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/replay.py"))
            .args(["serve", "--count", &FLEET.to_string(), "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3 benches/replay.py");
        let mut fleet = Self {
            child,
            dir,
            endpoints: Vec::new(),
        };
        let list = fleet.dir.join("endpoints.json");
        common::wait_or_show_log(
            Duration::from_secs(120),
            || list.exists(),
            "the replay fleet did not start: ",
            &fleet.dir.join("replay.log"),
        );
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&list).expect("endpoints.json"))
                .expect("a list");
        fleet.endpoints = list
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().expect("a name").to_owned(),
                    e["host"].as_str().expect("a host").to_owned(),
                )
            })
            .collect();
        assert_eq!(fleet.endpoints.len(), FLEET);
        fleet
    }

    /// A config watching every endpoint, in the fleet's order, every 10 s.
    fn config(&self) -> String {
        let mut out =
            String::from("[poll]\ninterval = \"10s\"\ntimeout = \"5s\"\ndisk_interval = \"0\"\n");
        for (name, host) in &self.endpoints {
            out += &common::daemon_toml(name, host);
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        reap(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts dockwatch with `body` as its config under the open-file limits
/// `soft`:`hard` (util-linux `prlimit`, which execs it: same pid).
fn start_limited(body: &str, soft: u64, hard: u64) -> Dockwatch {
    let nofile = format!("--nofile={soft}:{hard}");
    Dockwatch::spawn_via(body, &[], &["prlimit", &nofile])
}

/// The hard open-file limit of this process, from /proc/self/limits.
fn own_hard_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let hard = line.split_whitespace().nth(4).expect("a hard limit");
    hard.parse().unwrap_or(u64::MAX)
}

/// Descriptors `pid` has open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// `dockwatch_daemon_up` per daemon, read from `/metrics` (only those
/// lines: the whole body of a thousand daemons is 12 MB); `None` if
/// `/metrics` did not answer 200.
fn daemon_up(port: u16) -> Option<Vec<(String, bool)>> {
    let (status, body) = http_get(port, "/metrics").ok()?;
    (status == 200).then(|| {
        body.lines()
            .filter_map(|l| l.strip_prefix("dockwatch_daemon_up{daemon=\""))
            .map(|l| {
                let (name, rest) = l.split_once('"').expect("a daemon label");
                let value = rest.rsplit(' ').next().expect("a value");
                (name.to_owned(), value == "1")
            })
            .collect()
    })
}

/// Waits (up to 90 s: the first polls of a thousand spread over the 10 s
/// interval) until `/metrics` shows every daemon, `up` of them up; returns
/// them.
fn wait_for_up(dw: &Dockwatch, up: usize) -> Vec<(String, bool)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let seen = daemon_up(dw.port).unwrap_or_default();
        let now_up = seen.iter().filter(|(_, u)| *u).count();
        if seen.len() == FLEET && now_up == up {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} daemons in /metrics, {now_up} up (want {FLEET}, {up} up); log:\n{}",
            seen.len(),
            tail(&dw.log())
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn a_soft_limit_of_1024_is_raised_and_a_thousand_daemons_are_polled() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let hard = HIGH_HARD.min(own_hard_limit());
    assert!(
        hard >= 4096,
        "this test needs a hard open-file limit of at least 4096 to raise to (have {hard})"
    );
    let fleet = Fleet::start("fds-raise");
    let started = Instant::now();
    let mut dw = start_limited(&fleet.config(), 1024, hard);
    let up = wait_for_up(&dw, FLEET);
    assert!(up.iter().all(|(_, u)| *u));
    let log = dw.log();
    assert!(
        log.contains(&format!(
            "open-file limit (RLIMIT_NOFILE): soft 1024 raised to {hard} (hard {hard})"
        )),
        "the raise, before and after, in one line:\n{}",
        tail(&log)
    );
    assert!(
        !log.contains("daemons (3 descriptors each"),
        "no warning: the raised limit holds them all\n{}",
        tail(&log)
    );
    // More than the 1,024 it started with: the raise is what let them in.
    let fds = open_fds(dw.child.id());
    assert!(fds > 1024, "{fds} descriptors open for {FLEET} daemons");
    assert!(
        dw.child.try_wait().expect("wait").is_none(),
        "still running"
    );
    eprintln!(
        "soft 1024 -> {hard}: {FLEET} of {FLEET} daemons up, {fds} descriptors open, after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(dw);
    drop(fleet);
}

#[test]
fn a_hard_limit_of_1024_watches_the_daemons_that_fit() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fleet = Fleet::start("fds-hard");
    // A hundred configured daemons fit; the other 900 come from a file_sd
    // file written once those are polled: the check runs again as the set
    // grows.
    let sd = fleet.dir.join("sd.json");
    let mut config =
        String::from("[poll]\ninterval = \"10s\"\ntimeout = \"5s\"\ndisk_interval = \"0\"\n");
    for (name, host) in &fleet.endpoints[..CONFIGURED] {
        config += &common::daemon_toml(name, host);
    }
    config.push_str("[[discovery]]\nfiles = [\"");
    config.push_str(&sd.display().to_string());
    config.push_str("\"]\nrefresh = \"1h\"\n");
    let mut dw = start_limited(&config, 1024, 1024);
    dw.wait_ready();
    assert!(
        !dw.log().contains("daemons (3 descriptors each"),
        "{CONFIGURED} daemons fit: no warning\n{}",
        tail(&dw.log())
    );
    let groups: Vec<serde_json::Value> = fleet.endpoints[CONFIGURED..]
        .iter()
        .map(|(name, host)| serde_json::json!({"targets": [host], "labels": {"daemon": name}}))
        .collect();
    let tmp = fleet.dir.join("sd.json.tmp");
    std::fs::write(&tmp, serde_json::to_string(&groups).expect("json")).expect("write sd");
    std::fs::rename(&tmp, &sd).expect("rename sd");
    // The warning names how many fit.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fit = loop {
        let found = dw.log().lines().find_map(|l| {
            let rest = l.split("(soft 1024, hard 1024) holds ").nth(1)?;
            let (n, rest) = rest.split_once(' ')?;
            rest.starts_with(&format!("of {FLEET} daemons"))
                .then(|| n.parse::<usize>().ok())
                .flatten()
        });
        if let Some(n) = found {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "no warning naming how many fit; log:\n{}",
            tail(&dw.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(fit > 0 && fit < FLEET, "{fit} fit");
    // Three descriptors a daemon: a thousand cannot fit in 1,024.
    assert!(
        3 * fit < 1024,
        "{fit} daemons cannot fit in 1,024 descriptors"
    );
    let log = dw.log();
    assert_eq!(
        log.matches("daemons (3 descriptors each").count(),
        1,
        "one warning, not one per daemon:\n{}",
        tail(&log)
    );
    assert!(
        log.contains("open-file limit (RLIMIT_NOFILE): soft 1024 already at the hard limit"),
        "{}",
        tail(&log)
    );
    // Every daemon in /metrics: the first that fit up (the configured ones,
    // then the discovered in their file's order), the others down.
    let up = wait_for_up(&dw, fit);
    let order: Vec<&str> = fleet.endpoints.iter().map(|(n, _)| n.as_str()).collect();
    for (name, is_up) in &up {
        let index = order
            .iter()
            .position(|n| n == name)
            .expect("a fleet endpoint");
        assert_eq!(*is_up, index < fit, "{name} is number {index} of the fleet");
    }
    // Still well: serving, alive, and under its limit.
    let fds = open_fds(dw.child.id());
    assert!(fds < 1024, "{fds} descriptors open");
    assert!(matches!(http_get(dw.port, "/-/healthy"), Ok((200, _))));
    assert!(daemon_up(dw.port).is_some_and(|u| u.len() == FLEET));
    assert!(
        dw.child.try_wait().expect("wait").is_none(),
        "still running"
    );
    eprintln!("hard 1024: {fit} of {FLEET} daemons fit and are up, {fds} descriptors open");
    drop(dw);
    drop(fleet);
}
