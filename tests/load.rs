//! Load: 100 connections scrape `/metrics` for 30 s with wrk while dockwatch
//! polls both test daemons every second and pre-pulls the registry's big
//! image (4 x 16 MiB) on daemon A over and over. Zero errors allowed; the
//! request rate and latency percentiles are printed (`LOAD:` lines), not
//! asserted.
//!
//! Needs the test bed (`DW_TESTBED`) and wrk (`apt-get install wrk`).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Dockwatch, Testbed};

const CONNECTIONS: u32 = 100;
const SECONDS: u32 = 30;

/// What wrk reported.
#[derive(Debug, Default)]
struct WrkReport {
    requests: u64,
    requests_per_sec: f64,
    /// (percentile, milliseconds)
    latency_ms: Vec<(u32, f64)>,
    socket_errors: Vec<(String, u64)>,
    non_2xx: u64,
}

/// "10.05ms", "870.00us", "1.20s", "2.00m" -> milliseconds.
fn millis(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

fn parse_wrk(out: &str) -> WrkReport {
    let mut r = WrkReport::default();
    let mut in_distribution = false;
    for line in out.lines().map(str::trim) {
        if line.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if in_distribution {
            if let Some((p, v)) = line.split_once('%')
                && let (Ok(p), Some(ms)) = (p.trim().parse::<u32>(), millis(v.trim()))
            {
                r.latency_ms.push((p, ms));
                continue;
            }
            in_distribution = false;
        }
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            r.requests_per_sec = rest.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                if let (Some(kind), Some(n)) = (it.next(), it.next()) {
                    r.socket_errors
                        .push((kind.to_owned(), n.parse().unwrap_or(u64::MAX)));
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = rest.trim().parse().unwrap_or(u64::MAX);
        } else if line.contains(" requests in ") {
            r.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    r
}

fn wrk_installed() -> bool {
    match Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("cannot run wrk: {e}"),
    }
}

#[test]
fn parses_wrk_output() {
    let r = parse_wrk(
        "Running 30s test @ http://127.0.0.1:1/metrics\n  2 threads and 100 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency    10.05ms    2.00ms  1.03s    80.00%\n    Req/Sec     5.00k   500.00     6.00k    70.00%\n  Latency Distribution\n     50%  870.00us\n     75%   10.00ms\n     90%   12.00ms\n     99%    1.20s \n  300000 requests in 30.00s, 1.00GB read\n  Socket errors: connect 0, read 2, write 0, timeout 7\n  Non-2xx or 3xx responses: 10\nRequests/sec:  10000.50\nTransfer/sec:     34.00MB\n",
    );
    assert_eq!(r.requests, 300_000);
    assert!((r.requests_per_sec - 10_000.5).abs() < 1e-9);
    assert_eq!(r.latency_ms.len(), 4);
    assert!((r.latency_ms[0].1 - 0.87).abs() < 1e-9);
    assert!((r.latency_ms[3].1 - 1200.0).abs() < 1e-9);
    assert_eq!(r.non_2xx, 10);
    assert_eq!(
        r.socket_errors.iter().map(|(_, n)| n).sum::<u64>(),
        9,
        "{r:?}"
    );
}

/// On drop (also when the test fails): stops the churn thread and removes
/// the image from daemon A.
struct Cleanup {
    bed: Testbed,
    image: String,
    stop: Arc<AtomicBool>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The churn thread may be in the middle of a round; let it end.
        std::thread::sleep(Duration::from_millis(600));
        self.bed.cli_a().rmi_f(&[&self.image]);
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario
fn metrics_under_load_while_polling_and_pulling() {
    assert!(
        wrk_installed(),
        "wrk is not installed: apt-get install wrk (and add `wrk` to PACKAGES in tests/testbed.sh)"
    );
    let bed = Testbed::get();
    let big = bed.var("IMAGE_BIG").to_owned();
    let was_on_a = bed.cli_a().has_image(&big);
    bed.cli_a().rmi_f(&[&big]);

    let config = format!(
        "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\n{}{}\
         [prepull]\ninterval = \"3s\"\njitter = \"500ms\"\ntimeout = \"5m\"\nstall_timeout = \"60s\"\n\
         [[prepull.images]]\nimage = \"{big}\"\ndaemons = [\"a\"]\n",
        bed.daemon_a("a"),
        bed.daemon_b("b"),
    );
    // Whatever happens below: stop the churn and leave A without the image.
    let stop = Arc::new(AtomicBool::new(false));
    let _cleanup = Cleanup {
        bed: bed.clone(),
        image: big.clone(),
        stop: Arc::clone(&stop),
    };
    let dw = Dockwatch::start(&config);
    // From now until wrk is done: remove the image from A whenever a pull
    // has finished, so the next round (every 3 s) downloads all 64 MiB
    // again; and sample whether a pull is running.
    let running_samples = Arc::new(AtomicU32::new(0));
    let samples = Arc::new(AtomicU32::new(0));
    let churn = {
        let (stop, running_samples, samples) = (
            Arc::clone(&stop),
            Arc::clone(&running_samples),
            Arc::clone(&samples),
        );
        let bed = bed.clone();
        let big = big.clone();
        let port = dw.port;
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Ok((200, body)) = common::http_get(port, "/metrics") {
                    let s = common::Scrape::parse(&body);
                    samples.fetch_add(1, Ordering::SeqCst);
                    if s.get("dockwatch_image_pulls_in_progress", &[("daemon", "a")]) == Some(1.0) {
                        running_samples.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let cli = bed.cli_a();
                if cli.has_image(&big) {
                    cli.rmi_f(&[&big]);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    let label = |s: &common::Scrape| {
        s.labels_of("dockwatch_image_pull_expected_bytes", &[("daemon", "a")])
            .and_then(|l| l.get("image").cloned())
    };
    // A pull is on before the load starts.
    let first = dw.wait_for("the pre-pull to run", Duration::from_secs(60), |s| {
        s.get("dockwatch_image_pulls_in_progress", &[("daemon", "a")]) == Some(1.0)
    });
    let image_label = label(&first).unwrap_or_else(|| big.clone());
    let pulls_ok = |s: &common::Scrape| {
        ["updated", "up_to_date"]
            .iter()
            .filter_map(|r| {
                s.get(
                    "dockwatch_image_pulls_total",
                    &[("daemon", "a"), ("image", &image_label), ("result", r)],
                )
            })
            .sum::<f64>()
    };
    let ok_before = pulls_ok(&first);

    let url = format!("http://127.0.0.1:{}/metrics", dw.port);
    let started = Instant::now();
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{SECONDS}s"),
            "--latency",
            // wrk's default is 2 s; a loaded 2-core CI box can stall a
            // process that long. Anything slower than 5 s is an error.
            "--timeout",
            "5s",
            &url,
        ])
        .output()
        .expect("run wrk");
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    churn.join().expect("churn thread");
    let text = common::output_text(&out);
    eprintln!("wrk output:\n{text}");
    assert!(out.status.success(), "wrk failed: {text}");
    let report = parse_wrk(&text);

    let after = dw.scrape();
    let ok_after = pulls_ok(&after);
    let up = |d: &str| after.get("dockwatch_daemon_up", &[("daemon", d)]);
    let p = |pct: u32| {
        report
            .latency_ms
            .iter()
            .find(|(q, _)| *q == pct)
            .map_or(f64::NAN, |(_, ms)| *ms)
    };
    eprintln!(
        "LOAD: {} connections for {:.1} s: {} requests, {:.0} req/s, latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms; socket errors {:?}, non-2xx {}",
        CONNECTIONS,
        took.as_secs_f64(),
        report.requests,
        report.requests_per_sec,
        p(50),
        p(90),
        p(99),
        report.socket_errors,
        report.non_2xx,
    );
    eprintln!(
        "LOAD: during the load a pull ran in {} of {} samples; pulls of {image_label} that ended well: {ok_before} before, {ok_after} after; daemon up: a={:?} b={:?}",
        running_samples.load(Ordering::SeqCst),
        samples.load(Ordering::SeqCst),
        up("a"),
        up("b"),
    );

    let log = dw.log();
    // Stop dockwatch before A is cleaned up (by `_cleanup`), so no new
    // round pulls the image again.
    drop(dw);
    if was_on_a {
        eprintln!("note: {big} was on daemon A before this test; it is removed now");
    }

    assert!(!log.contains("panicked"), "dockwatch panicked:\n{log}");
    assert!(report.requests > 0, "wrk made no requests:\n{text}");
    assert!(
        report.socket_errors.iter().all(|(_, n)| *n == 0),
        "socket errors under load: {:?}\n{text}",
        report.socket_errors
    );
    assert_eq!(report.non_2xx, 0, "non-2xx answers under load:\n{text}");
    assert!(
        !report.latency_ms.is_empty(),
        "no latency distribution in wrk's output:\n{text}"
    );
    assert!(
        running_samples.load(Ordering::SeqCst) > 0,
        "no pull was seen running during the load"
    );
}
