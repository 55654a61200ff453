//! Polite pulls for fleets, on the real test bed: a registry that answers
//! 429 holds every pull of the agent to it (dockerd A and B), honouring the
//! registry's retry-after hint or else backing off exponentially per host; a
//! full disk fails a pull as `disk_full` (a dockerd of the test's own on a
//! 20 MiB tmpfs); pre-pull windows hold scheduled pulls, never cut one under
//! way, and `dockwatch pull` ignores them.
//!
//! A real registry cannot be made to answer 429 on demand, so the rate-limit
//! tests pull through `tests/bed/ratelimit_front.py`, a front on 127.0.0.1
//! that answers 429 when armed and otherwise passes through to the bed's
//! registry; its request log is the ground truth of what the daemons asked
//! and when.
#![allow(clippy::cast_precision_loss, clippy::float_cmp)] // counts are whole numbers

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::{
    Dockwatch, OwnDaemon, Scrape, Scratch, Testbed, assert_success, http_get, output_text,
    wait_until,
};

// The tests share daemon A's image store: one at a time.
use common::turn;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One request the front saw.
#[derive(Debug, Clone)]
struct Seen {
    t: f64,
    method: String,
    path: String,
    status: u64,
    limited: bool,
}

/// `tests/bed/ratelimit_front.py` in front of the bed's registry, stopped
/// when dropped.
struct Front {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: Scratch,
}

impl Front {
    fn start(upstream: &str) -> Self {
        let dir = Scratch::new("front");
        let port_file = dir.0.join("port");
        let log = dir.0.join("requests.jsonl");
        let child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/bed/ratelimit_front.py"
            ))
            .arg("--upstream")
            .arg(upstream)
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 tests/bed/ratelimit_front.py");
        let mut port = 0;
        wait_until(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                port = std::fs::read_to_string(&port_file)
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or(0);
                port != 0
            },
            || "the front did not write its port".to_owned(),
        );
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn control(&self, path: &str) {
        let (status, body) = http_get(self.port, path).expect("front control");
        assert_eq!(status, 200, "{path}: {body}");
    }

    /// 429 to every manifest request from now on, with `retry_after` as the
    /// header and `message` as the registry's error message.
    fn arm(&self, retry_after: Option<u32>, message: Option<&str>) {
        let mut path = "/_front/arm?count=100000".to_owned();
        if let Some(s) = retry_after {
            let _ = write!(path, "&retry_after={s}");
        }
        if let Some(m) = message {
            let _ = write!(path, "&message={}", url_encode(m));
        }
        self.control(&path);
    }

    fn requests(&self) -> Vec<Seen> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| Seen {
                t: v["t"].as_f64().unwrap_or(0.0),
                method: v["method"].as_str().unwrap_or_default().to_owned(),
                path: v["path"].as_str().unwrap_or_default().to_owned(),
                status: v["status"].as_u64().unwrap_or(0),
                limited: v["limited"].as_bool().unwrap_or(false),
            })
            .collect()
    }

    /// The 429s the front sent, grouped in bursts (one per gate opening):
    /// each burst's first time and how many manifest GETs it refused (one
    /// per pull attempt: dockerd sends a HEAD, then a GET).
    fn bursts(&self) -> Vec<(f64, usize)> {
        let mut out: Vec<(f64, f64, usize)> = Vec::new();
        for r in self.requests().iter().filter(|r| r.limited) {
            let get = usize::from(r.method == "GET");
            match out.last_mut() {
                Some((_, last, n)) if r.t - *last < 0.5 => {
                    *last = r.t;
                    *n += get;
                }
                _ => out.push((r.t, r.t, get)),
            }
        }
        out.into_iter().map(|(first, _, n)| (first, n)).collect()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn rate_limited(s: &Scrape) -> f64 {
    s.sum(
        "dockwatch_image_pull_failures_total",
        &[("reason", "rate_limited")],
    )
}

/// Removes these images from A and B however the test ends.
struct Remove<'a> {
    bed: &'a Testbed,
    images: Vec<String>,
}

impl Drop for Remove<'_> {
    fn drop(&mut self) {
        let refs: Vec<&str> = self.images.iter().map(String::as_str).collect();
        self.bed.cli_a().rmi_f(&refs);
        self.bed.cli_b().rmi_f(&refs);
    }
}

fn base_config(bed: &Testbed, prepull: &str) -> String {
    format!(
        "[poll]\ninterval = \"2s\"\ntimeout = \"1500ms\"\ndisk_interval = \"0\"\n{}{}[prepull]\njitter = \"0s\"\ncheck_interval = \"0\"\nstall_timeout = \"30s\"\ntimeout = \"5m\"\n{prepull}",
        bed.daemon_a("a"),
        bed.daemon_b("b")
    )
}

fn image_toml(image: &str, daemons: &[&str]) -> String {
    let list: Vec<String> = daemons.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[prepull.images]]\nimage = \"{image}\"\ndaemons = [{}]\n",
        list.join(", ")
    )
}

/// The `last` pull of `image` on `daemon` in `/pulls`.
fn last_pull(dw: &Dockwatch, daemon: &str, image: &str) -> Value {
    dw.pulls().expect("/pulls")["daemons"][daemon][image]["last"].clone()
}

/// A front for the bed's registry, and dwtest/multi:1 and :2 through it:
/// removed from A now, and again when the test ends.
fn multi_1_and_2(bed: &Testbed) -> (Front, String, String, Remove<'_>) {
    let front = Front::start(bed.var("REGISTRY"));
    let m1 = format!("{}/dwtest/multi:1", front.host());
    let m2 = format!("{}/dwtest/multi:2", front.host());
    let remove = Remove {
        bed,
        images: vec![m2.clone(), m1.clone()],
    };
    bed.cli_a().rmi_f(&[&m2, &m1]);
    (front, m1, m2, remove)
}

/// Waits until daemon a has pulled `m1` and `m2` and daemon b `m1`, each
/// to the end; the scrape that says so.
fn every_pull_ends_well(dw: &Dockwatch, m1: &str, m2: &str) -> Scrape {
    dw.wait_for("every pull to end well", Duration::from_secs(60), |s| {
        s.pulls("a", m1, "updated") >= 1.0
            && s.pulls("a", m2, "updated") >= 1.0
            && s.pulls("b", m1, "updated") >= 1.0
    })
}

/// When the last of `seen` was refused with a 429 (NaN if none was).
fn last_429<'a>(seen: impl IntoIterator<Item = &'a Seen>) -> f64 {
    seen.into_iter()
        .filter(|r| r.limited)
        .map(|r| r.t)
        .fold(f64::NAN, f64::max)
}

/// When the first of `seen` after `t` that `wanted` picks came (NaN if none).
fn first_after<'a>(
    seen: impl IntoIterator<Item = &'a Seen>,
    t: f64,
    wanted: impl Fn(&Seen) -> bool,
) -> f64 {
    seen.into_iter()
        .filter(|r| r.t > t && wanted(r))
        .map(|r| r.t)
        .fold(f64::NAN, f64::min)
}

#[test]
fn a_429_holds_every_pull_to_that_registry_for_its_retry_after() {
    let _turn = turn();
    let bed = Testbed::get();
    let (front, m1, m2, _remove) = multi_1_and_2(&bed);
    // As ghcr.io does: the wait in the message (dockerd passes on the
    // message, not the Retry-After header), and in the header too.
    let wait = 6.0;
    front.arm(Some(6), Some("retry-after: 6s, allowed: 100/minute"));
    // A failed image is retried after 1 s (interval / 32): sooner than the
    // registry's 6 s, unless the gate holds it.
    let config = base_config(
        &bed,
        &format!(
            "interval = \"32s\"\n{}{}",
            image_toml(&m1, &["a", "b"]),
            image_toml(&m2, &["a"])
        ),
    );
    let dw = Dockwatch::start(&config);
    dw.wait_for("a rate_limited pull", Duration::from_secs(60), |s| {
        rate_limited(s) >= 1.0
    });
    // Long enough for the 1 s retries to have come, were they not held.
    std::thread::sleep(Duration::from_secs(3));
    front.control("/_front/disarm");
    let s = every_pull_ends_well(&dw, &m1, &m2);

    let seen = front.requests();
    let last_429 = last_429(&seen);
    let next = first_after(&seen, last_429, |_| true);
    let refused_gets = seen
        .iter()
        .filter(|r| r.limited && r.method == "GET")
        .count();
    eprintln!(
        "MEASURE retry-after 6 s: {} requests refused ({refused_gets} pull attempts), dockwatch counted {} rate_limited failures; the next request came {:.2} s after the last 429",
        seen.iter().filter(|r| r.limited).count(),
        rate_limited(&s),
        next - last_429
    );
    // Nothing asked the registry before its wait was over: not the retries
    // of the failed pulls, not the other daemon, not the other image.
    assert!(
        next - last_429 >= wait,
        "a request came {:.2} s after the last 429 (the registry asked for {wait} s):\n{seen:#?}",
        next - last_429
    );
    assert!(seen.iter().filter(|r| r.limited).all(|r| r.status == 429));
    // Each refused attempt is one rate_limited failure, and nothing else failed.
    assert_eq!(rate_limited(&s), refused_gets as f64);
    assert_eq!(
        s.sum("dockwatch_image_pull_failures_total", &[]),
        rate_limited(&s)
    );
    for (d, img) in [("a", &m1), ("a", &m2), ("b", &m1)] {
        let last = last_pull(&dw, d, img);
        assert_eq!(last["result"], "updated", "{d} {img}: {last}");
        let started = last["started"].as_f64().expect("started");
        assert!(
            started >= last_429 + wait,
            "{d} {img} started {:.2} s after the last 429",
            started - last_429
        );
    }
    assert!(bed.cli_a().has_image(&m1) && bed.cli_a().has_image(&m2));
    assert!(bed.cli_b().has_image(&m1));
    assert!(
        dw.log().contains("registry answered 429"),
        "the wait is logged"
    );
}

#[test]
fn without_a_hint_the_wait_doubles_per_registry_host_across_a_reload() {
    let _turn = turn();
    let bed = Testbed::get();
    let (front, m1, m2, _remove) = multi_1_and_2(&bed);
    // Docker Hub's answer: no wait named anywhere.
    front.arm(None, None);
    // interval 32 s: the host's wait goes 1 s, 2 s, 4 s, 8 s, ...
    let prepull = |images: &str| base_config(&bed, &format!("interval = \"32s\"\n{images}"));
    let dw = Dockwatch::start(&prepull(&image_toml(&m1, &["a"])));
    let t0 = Instant::now();
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || front.bursts().len() >= 3,
        || format!("3 bursts of 429s: {:?}\n{}", front.bursts(), dw.log()),
    );
    // A reload starts new pullers (their images' own backoff from scratch)
    // and adds daemon b and an image: all of them wait for the host.
    std::fs::write(
        dw.dir.join("config.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n{}",
            dw.port,
            prepull(&format!(
                "{}{}",
                image_toml(&m1, &["a", "b"]),
                image_toml(&m2, &["a"])
            ))
        ),
    )
    .expect("rewrite config");
    dw.signal("HUP");
    let reloaded = unix_now();
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        || front.bursts().len() >= 4,
        || format!("a 4th burst: {:?}\n{}", front.bursts(), dw.log()),
    );
    // Let the burst end (both daemons ask at the opening); the host is
    // closed for 8 s after it.
    std::thread::sleep(Duration::from_secs(1));
    front.control("/_front/disarm");
    let s = every_pull_ends_well(&dw, &m1, &m2);
    let bursts = front.bursts();
    let seen = front.requests();
    let last_429 = last_429(&seen);
    let success = first_after(&seen, last_429, |r| r.path.contains("/manifests/"));
    let mut starts: Vec<f64> = bursts.iter().map(|b| b.0).collect();
    starts.push(success);
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    eprintln!(
        "MEASURE no hint: bursts of 429s at +{:?} s with {:?} attempts each; waits {gaps:.2?} s (want at least 1, 2, 4, 8); done after {:?}",
        starts
            .iter()
            .map(|t| (t - starts[0]) * 100.0)
            .map(f64::round)
            .map(|t| t / 100.0)
            .collect::<Vec<_>>(),
        bursts.iter().map(|b| b.1).collect::<Vec<_>>(),
        t0.elapsed()
    );
    assert_eq!(gaps.len(), 4, "{bursts:?}");
    for (i, gap) in gaps.iter().enumerate() {
        let want = f64::from(1_u32 << i);
        assert!(
            *gap >= want,
            "wait {i} was {gap:.2} s, want >= {want} s: {gaps:?}"
        );
    }
    // No pull asked for a manifest between the reload and the host's next
    // opening (each attempt's `GET /v2/` comes a moment before its first).
    assert!(
        !seen
            .iter()
            .any(|r| r.t > reloaded && r.t < starts[3] && r.path.contains("/manifests/")),
        "a request came between the reload and the 4th opening"
    );
    // At that opening, daemon a and daemon b both tried.
    assert!(bursts[3].1 >= 2, "{bursts:?}");
    assert_eq!(
        rate_limited(&s),
        bursts.iter().map(|b| b.1).sum::<usize>() as f64
    );
}

/// Unmounts a mount point when dropped (declare it before the daemon that
/// uses it, so it goes after).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_pull_as_disk_full() {
    let bed = Testbed::get();
    let image = bed.var("IMAGE_BIG").to_owned();
    let image_bytes: u64 = bed
        .var("IMAGE_BIG_LAYERS")
        .split(',')
        .map(|s| s.parse::<u64>().expect("size"))
        .sum();
    let scratch = Scratch::new("diskfull");
    let dir = scratch.0.join("d");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=20m", "dockwatch-diskfull"])
        .arg(&data)
        .output()
        .expect("mount");
    assert_success(&out, "mount -t tmpfs -o size=20m");
    let _mounted = Mounted(data.clone());
    let own = OwnDaemon::start(&dir);
    let cli = bed.cli_at(&own.host());
    let config = format!(
        "[poll]\ninterval = \"2s\"\ntimeout = \"1500ms\"\n{}[prepull]\ninterval = \"1h\"\njitter = \"0s\"\ncheck_interval = \"0\"\n[[prepull.images]]\nimage = \"{image}\"\n",
        common::daemon_toml("small", &own.host())
    );
    let dw = Dockwatch::start(&config);
    let s = dw.wait_for("a disk_full failure", Duration::from_secs(120), |s| {
        s.pull_failures("small", &image, "disk_full") >= 1.0
    });
    assert_eq!(
        s.pull_failure_reasons("small", &image)
            .keys()
            .collect::<Vec<_>>(),
        ["disk_full"]
    );
    let last = last_pull(&dw, "small", &image);
    let message = last["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("no space left on device"), "{last}");
    assert!(dw.log().contains("disk is full"), "{}", dw.log());
    drop(dw);
    // Ground truth: the docker CLI's own pull fails the same way, and the
    // file system is smaller than the image.
    let pulled = cli.try_run(&["pull", &image]);
    assert!(!pulled.status.success());
    let said = output_text(&pulled);
    assert!(said.contains("no space left on device"), "{said}");
    let df = Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(&data)
        .output()
        .expect("df");
    let size: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df size");
    assert!(size < image_bytes);
    // `dockwatch pull` says so too.
    let scratch_cfg = scratch.0.join("config.toml");
    std::fs::write(
        &scratch_cfg,
        format!(
            "[prepull]\nstall_timeout = \"30s\"\n{}",
            common::daemon_toml("small", &own.host())
        ),
    )
    .expect("config");
    let out = Command::new(common::binary())
        .arg("--config")
        .arg(&scratch_cfg)
        .args(["pull", &image])
        .output()
        .expect("dockwatch pull");
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("(disk_full)"), "{text}");
    eprintln!(
        "MEASURE disk_full: {image_bytes} bytes of image onto a {size}-byte tmpfs; dockwatch: {message:?}; docker pull: {:?}",
        said.trim().lines().last().unwrap_or_default()
    );
    drop(own);
}

/// `HH:MM` of `t` in `zone`.
fn hhmm(t: jiff::Timestamp, zone: &str) -> String {
    let z = t
        .to_zoned_datetime(jiff::tz::TimeZone::get(zone).expect("zone"))
        .time();
    format!("{:02}:{:02}", z.hour(), z.minute())
}

fn minutes(m: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_mins(m)
}

fn window_open(s: &Scrape) -> Option<f64> {
    s.get("dockwatch_prepull_window_open", &[("daemon", "a")])
}

#[test]
fn windows_hold_scheduled_pulls_and_dockwatch_pull_ignores_them() {
    let _turn = turn();
    let bed = Testbed::get();
    let image = bed.var("IMAGE_MULTI1").to_owned();
    let _remove = Remove {
        bed: &bed,
        images: vec![image.clone()],
    };
    bed.cli_a().rmi_f(&[&image]);
    let now = jiff::Timestamp::now();
    let at = |m: i64| now.checked_add(minutes(m)).expect("in range");
    // Closed now: from 2 h to 3 h from now, in UTC.
    let closed = format!("{}-{}", hhmm(at(120), "UTC"), hhmm(at(180), "UTC"));
    // Open now: from an hour ago to an hour on, in Berlin's time.
    let open = format!(
        "{}-{} Europe/Berlin",
        hhmm(at(-60), "Europe/Berlin"),
        hhmm(at(60), "Europe/Berlin")
    );
    let config = |windows: &str| {
        format!(
            "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\ndisk_interval = \"0\"\n{}[prepull]\ninterval = \"20s\"\njitter = \"0s\"\ncheck_interval = \"0\"\nwindows = [{windows}]\n[[prepull.images]]\nimage = \"{image}\"\n",
            bed.daemon_a("a")
        )
    };

    // Closed: nothing starts.
    let dw = Dockwatch::start(&config(&format!("\"{closed}\"")));
    dw.wait_for("window_open 0", Duration::from_secs(10), |s| {
        window_open(s) == Some(0.0)
    });
    std::thread::sleep(Duration::from_secs(5));
    let s = dw.scrape();
    assert_eq!(
        s.sum("dockwatch_image_pulls_total", &[("daemon", "a")]),
        0.0,
        "a pull started outside the window:\n{}",
        s.text
    );
    let entry = &dw.pulls().expect("/pulls")["daemons"]["a"][image.as_str()];
    assert!(
        entry["running"].is_null() && entry["last"].is_null(),
        "{entry}"
    );
    assert!(!bed.cli_a().has_image(&image));

    // `dockwatch pull` with the same config pulls now.
    let out = Command::new(common::binary())
        .arg("--config")
        .arg(dw.dir.join("config.toml"))
        .args(["pull", &image])
        .output()
        .expect("dockwatch pull");
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        bed.cli_a().has_image(&image),
        "dockwatch pull ignores windows"
    );
    bed.cli_a().rmi_f(&[&image]);
    drop(dw);

    // Open (a zone given; a closed window beside it): the pull starts.
    let dw = Dockwatch::start(&config(&format!("\"{closed}\", \"{open}\"")));
    let s = dw.wait_for("the pull inside the window", Duration::from_secs(60), |s| {
        s.pulls("a", &image, "updated") >= 1.0
    });
    assert_eq!(window_open(&s), Some(1.0));
    assert!(bed.cli_a().has_image(&image));
    eprintln!(
        "MEASURE windows at {now}: [{closed}] held the pull (0 pulls in 5 s, image absent per docker CLI); dockwatch pull pulled anyway; [{open}] let it start"
    );
}

#[test]
fn a_pull_under_way_outlives_its_window() {
    let _turn = turn();
    let bed = Testbed::get();
    let (front, m1, m2, _remove) = multi_1_and_2(&bed);
    // A window that closes at the next minute, at least 15 s from now.
    let now = jiff::Timestamp::now();
    let second = now.as_second();
    let mut end = second - second.rem_euclid(60) + 60;
    if end - second < 15 {
        end += 60;
    }
    let end = jiff::Timestamp::from_second(end).expect("in range");
    let start = end.checked_sub(minutes(30)).expect("in range");
    let window = format!("{}-{}", hhmm(start, "UTC"), hhmm(end, "UTC"));
    // Layers are held at the front: the pull is under way, and stays so.
    front.control("/_front/hold?match=/blobs/");
    let config = format!(
        "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\ndisk_interval = \"0\"\n{}[prepull]\ninterval = \"1h\"\njitter = \"0s\"\ncheck_interval = \"0\"\nstall_timeout = \"5m\"\ntimeout = \"10m\"\nconcurrency = 1\nwindows = [\"{window}\"]\n[[prepull.images]]\nimage = \"{m1}\"\n[[prepull.images]]\nimage = \"{m2}\"\n",
        bed.daemon_a("a")
    );
    let dw = Dockwatch::start(&config);
    dw.wait_for_pull(
        "a",
        &m1,
        "the pull to start",
        Duration::from_secs(30),
        |e| e["running"].is_object(),
    );
    let wait = (end.as_second() - jiff::Timestamp::now().as_second()).max(0) + 30;
    let s = dw.wait_for(
        "the window to close",
        Duration::from_secs(u64::try_from(wait).unwrap_or(90)),
        |s| window_open(s) == Some(0.0),
    );
    let closed_at = unix_now();
    assert_eq!(
        s.get("dockwatch_image_pulls_in_progress", &[("daemon", "a")]),
        Some(1.0),
        "the pull under way was cut when the window closed"
    );
    front.control("/_front/release");
    dw.wait_for("the pull to end", Duration::from_secs(60), |s| {
        s.pulls("a", &m1, "updated") >= 1.0
    });
    let last = last_pull(&dw, "a", &m1);
    let started = last["started"].as_f64().expect("started");
    let finished = last["finished"].as_f64().expect("finished");
    assert!(
        started < end.as_second() as f64 && finished > end.as_second() as f64,
        "{last}"
    );
    // The next image was due, but the window is closed now.
    std::thread::sleep(Duration::from_secs(5));
    let s = dw.scrape();
    assert_eq!(s.sum("dockwatch_image_pulls_total", &[("image", &m2)]), 0.0);
    assert!(bed.cli_a().has_image(&m1) && !bed.cli_a().has_image(&m2));
    assert!(
        !front
            .requests()
            .iter()
            .any(|r| r.path.contains("/manifests/2")),
        "multi:2 was asked for after the window closed"
    );
    eprintln!(
        "MEASURE window [{window}] UTC closed at {closed_at:.1}; the pull of multi:1 ran {started:.1}..{finished:.1} and ended updated; multi:2 (due) did not start in the 5 s after"
    );
}

#[test]
fn a_429_to_a_registry_check_holds_the_next_check_too() {
    let _turn = turn();
    let bed = Testbed::get();
    let front = Front::start(bed.var("REGISTRY"));
    let m1 = format!("{}/dwtest/multi:1", front.host());
    let _remove = Remove {
        bed: &bed,
        images: vec![m1.clone()],
    };
    // On A through the front, so the image has a digest from that
    // repository to compare.
    bed.cli_a().run(&["pull", "-q", &m1]);
    front.arm(Some(6), Some("retry-after: 6s, allowed: 100/minute"));
    let armed = unix_now();
    // A window that is closed now: no scheduled pull asks the registry;
    // checks run at any time, every second.
    let now = jiff::Timestamp::now();
    let at = |m: i64| now.checked_add(minutes(m)).expect("in range");
    let closed = format!("{}-{}", hhmm(at(120), "UTC"), hhmm(at(180), "UTC"));
    let config = format!(
        "[poll]\ninterval = \"2s\"\ntimeout = \"1500ms\"\ndisk_interval = \"0\"\n{}[prepull]\ninterval = \"32s\"\njitter = \"0s\"\ncheck_interval = \"1s\"\nwindows = [\"{closed}\"]\n[[prepull.images]]\nimage = \"{m1}\"\n",
        bed.daemon_a("a")
    );
    let dw = Dockwatch::start(&config);
    let failures = |s: &Scrape, reason: &str| {
        s.get(
            "dockwatch_image_registry_check_failures_total",
            &[("daemon", "a"), ("image", &m1), ("reason", reason)],
        )
        .unwrap_or(0.0)
    };
    dw.wait_for("a rate_limited check", Duration::from_secs(30), |s| {
        failures(s, "rate_limited") >= 1.0
    });
    std::thread::sleep(Duration::from_secs(3));
    front.control("/_front/disarm");
    let s = dw.wait_for("a check that compared", Duration::from_secs(30), |s| {
        s.get(
            "dockwatch_image_update_available",
            &[("daemon", "a"), ("image", &m1)],
        ) == Some(0.0)
    });
    let seen = front.requests();
    let manifests: Vec<&Seen> = seen
        .iter()
        .filter(|r| r.t > armed && r.path.contains("/manifests/"))
        .collect();
    let last_429 = last_429(manifests.iter().copied());
    let next = first_after(manifests.iter().copied(), last_429, |_| true);
    eprintln!(
        "MEASURE check 429 with retry-after 6 s: {} refused, next check {:.2} s after the last 429 (check_interval 1 s)",
        manifests.iter().filter(|r| r.limited).count(),
        next - last_429
    );
    assert!(
        next - last_429 >= 6.0,
        "{:.2} s: {manifests:#?}",
        next - last_429
    );
    assert_eq!(
        failures(&s, "rate_limited"),
        1.0,
        "one check refused, then held"
    );
    assert_eq!(
        s.sum("dockwatch_image_pulls_total", &[("daemon", "a")]),
        0.0
    );
}
