//! Micro-benchmarks of the pure parts (issue 5, figure 5):
//!
//! - the progress fold on a long recorded pull stream, in events per second
//!   (parse + fold, as the puller does it, and the fold alone);
//! - encoding `/metrics` at the default bench scale, in microseconds per scrape.
//!
//! `cargo bench --bench micro` measures (prints medians of 15 samples);
//! `cargo test --all-targets` runs the same code once as a smoke test.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dockwatch::docker::Observer as _;
use dockwatch::folds::progress::{Progress, PullEvent};
use dockwatch::labels::{ApiEndpoint, ContainerState, ExitClass, PullResult};
use dockwatch::metrics::Metrics;
use dockwatch::state::{
    ContainerSignals, DaemonInfo, DaemonSnapshot, FinishedPull, ImageCount, PollData, PullBoard,
    State,
};

/// A cold pull of the 256 MiB, 8-layer bench image from the local registry
/// through a rate-limited proxy (48 s), as dockerd 20.10 streamed it: see
/// tests/streams/README.md.
const LONG_STREAM: &str = include_str!("../tests/streams/bench-256mib-throttled.jsonl");

/// The default bench scale (benches/fleet.py): two daemons, five filter
/// groups, twenty pre-pulled images on the first daemon.
const DAEMONS: [&str; 2] = ["a", "b"];
const FILTERS: usize = 5;
const PREPULL: usize = 20;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let samples = if full { 15 } else { 1 };

    let lines: Vec<&[u8]> = LONG_STREAM
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::as_bytes)
        .collect();
    let events: Vec<PullEvent> = lines
        .iter()
        .map(|l| PullEvent::parse(l).expect("the recorded stream parses"))
        .collect();
    // Sanity, so a broken fold cannot produce a fast, meaningless figure.
    let folded = fold_events(&events);
    assert!(folded.finish.is_some(), "the recorded pull finished");
    assert_eq!(folded.layers.len(), 8, "the 8 layers of the bench image");

    // Enough repetitions for ~100 ms per sample in a release build.
    let reps: usize = if full { 2_000 } else { 2 };
    let parse_fold = median(samples, || {
        let t = Instant::now();
        for _ in 0..reps {
            let mut p = Progress::default();
            for l in &lines {
                if let Ok(ev) = PullEvent::parse(black_box(l)) {
                    p.apply(&ev);
                }
            }
            black_box(&p);
        }
        t.elapsed()
    });
    let fold_only = median(samples, || {
        let t = Instant::now();
        for _ in 0..reps {
            black_box(fold_events(black_box(&events)));
        }
        t.elapsed()
    });
    let n = f64::from(u32::try_from(lines.len() * reps).expect("a few million events"));
    println!(
        "fold: recorded stream {} events ({} bytes); parse+fold {:.2} M events/s ({:.0} ns/event); fold only {:.2} M events/s ({:.0} ns/event)",
        lines.len(),
        LONG_STREAM.len(),
        n / parse_fold.as_secs_f64() / 1e6,
        parse_fold.as_secs_f64() * 1e9 / n,
        n / fold_only.as_secs_f64() / 1e6,
        fold_only.as_secs_f64() * 1e9 / n,
    );

    let metrics = default_scale_metrics();
    let body = metrics.encode();
    assert!(
        body.contains("dockwatch_images{daemon=\"a\"} 2000\n"),
        "{body}"
    );
    let scrapes = if full { 500 } else { 2 };
    let encode = median(samples, || {
        let t = Instant::now();
        for _ in 0..scrapes {
            black_box(metrics.encode());
        }
        t.elapsed()
    });
    println!(
        "encode /metrics: {} series lines, {} bytes; {:.1} µs per scrape",
        body.lines().filter(|l| !l.starts_with('#')).count(),
        body.len(),
        encode.as_secs_f64() * 1e6 / f64::from(scrapes),
    );
}

fn fold_events(events: &[PullEvent]) -> Progress {
    let mut p = Progress::default();
    for ev in events {
        p.apply(ev);
    }
    p
}

fn median(samples: usize, mut run: impl FnMut() -> Duration) -> Duration {
    let _ = run(); // warm-up
    let mut times: Vec<Duration> = (0..samples).map(|_| run()).collect();
    times.sort();
    times[times.len() / 2]
}

/// The container signals of a daemon with `scale` images: a few unhealthy
/// and outdated containers, each pre-pulled image with its outdated count.
fn signals(scale: u64, images: &[String]) -> ContainerSignals {
    ContainerSignals {
        health: [scale / 40, 1, 1, scale / 20],
        outdated: 2,
        outdated_by_image: images.iter().map(|i| (i.clone(), 0)).collect(),
    }
}

/// Metrics as a running agent at the default scale holds them: every daemon
/// polled (each endpoint called), every pre-pull finished once, events seen.
fn default_scale_metrics() -> Metrics {
    let state = Arc::new(State::new(DAEMONS));
    let images: Vec<String> = (1..=PREPULL)
        .map(|i| format!("127.0.0.1:5000/dwbench/pre-{i:02}:1"))
        .collect();
    let board = Arc::new(PullBoard::new([(DAEMONS[0].to_owned(), images.clone())]));
    let metrics = Metrics::new(Arc::clone(&state), Arc::clone(&board), true);
    for (n, daemon) in DAEMONS.into_iter().enumerate() {
        let mut containers = [0; ContainerState::ALL.len()];
        containers[ContainerState::Running as usize] = 60;
        containers[ContainerState::Exited as usize] = 80;
        containers[ContainerState::Created as usize] = 40;
        containers[ContainerState::Paused as usize] = 20;
        let scale = if n == 0 { 2_000 } else { 4 };
        let filters = (0..FILTERS)
            .map(|f| {
                (
                    format!("group-{f}"),
                    ImageCount {
                        count: scale / 5,
                        bytes: scale * 1_000,
                    },
                )
            })
            .collect();
        state.publish(
            daemon,
            DaemonSnapshot {
                last_success: Some(1.8e9),
                poll_duration: 0.7,
                info: Some(DaemonInfo {
                    engine: "docker".into(),
                    version: "20.10.24+dfsg1".into(),
                    api_version: "1.41".into(),
                    min_api_version: "1.12".into(),
                    negotiated_api_version: "1.41".into(),
                    os: "linux".into(),
                    arch: "amd64".into(),
                    storage_driver: "overlay2".into(),
                }),
                data: Some(PollData {
                    images: ImageCount {
                        count: scale,
                        bytes: scale * 1_200_000,
                    },
                    dangling: ImageCount {
                        count: scale / 5,
                        bytes: scale * 240_000,
                    },
                    filters,
                    containers,
                    signals: signals(scale, if daemon == DAEMONS[0] { &images } else { &[] }),
                }),
                failed_filters: Vec::new(),
                down_reason: None,
            },
        );
        metrics.events.init_exits(daemon);
        metrics.events.count_exit(daemon, ExitClass::Zero);
        metrics.restarts.init(daemon);
        for endpoint in ApiEndpoint::ALL {
            metrics
                .api
                .api_call(daemon, endpoint, Some(Duration::from_millis(40)), None);
        }
        for action in ["create", "start", "die", "destroy"] {
            metrics.events.count_event(daemon, "container", action);
        }
        metrics.events.count_event(daemon, "image", "pull");
    }
    for image in &images {
        metrics.pulls.init_image(DAEMONS[0], image);
        let pull = FinishedPull {
            started: 1.8e9,
            finished: 1.8e9 + 3.0,
            duration_seconds: 3.0,
            result: PullResult::Updated,
            reason: None,
            stalled: false,
            message: None,
            digest: Some(format!("sha256:{:064x}", 7)),
            totals: dockwatch::folds::progress::Totals {
                layers: 2,
                layers_downloaded: 2,
                layers_already_exist: 0,
                downloaded_bytes: 16 << 20,
                expected_bytes: 16 << 20,
                extracted_bytes: 16 << 20,
            },
            layers: Vec::new(),
        };
        metrics.pulls.record(DAEMONS[0], image, &pull);
        board.update(DAEMONS[0], image, |p| {
            p.present = Some(true);
            p.last_success = Some(pull.finished);
            p.last = Some(pull);
        });
    }
    metrics
}
