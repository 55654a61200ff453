//! Every metric family dockwatch exposes, registered in one place, one file
//! per family group (as `node_exporter` keeps a collector per file).
//! Counters and histograms are updated by the tasks as things happen;
//! gauges that describe a daemon are read from [`State`] and the pull board
//! by collectors at scrape time, so a scrape never waits on Docker. The
//! families read state and know no HTTP.

mod api;
mod containers;
mod daemon;
mod discovery;
mod disk;
mod events;
mod family;
mod probe;
mod process;
mod prune;
mod pulls;
mod registry_checks;
mod reload;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::state::{PullBoard, State};
use family::{Changes, Forget, ReadAtScrape};

pub use api::ApiFamilies;
pub use containers::RestartFamily;
pub use discovery::DiscoveryFamilies;
pub use events::EventFamilies;
pub use prune::{Eligible, PruneFamilies};
pub use pulls::PullFamilies;
pub use registry_checks::CheckFamilies;
pub use reload::ReloadFamilies;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

/// The registry and the families the tasks update. Each family marks its
/// own changes (for the `/metrics` cache) and is called directly:
/// `metrics.prune.removed(daemon, bytes)`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Every Docker API call; the daemons' connections report to it.
    pub api: ApiFamilies,
    pub pulls: PullFamilies,
    pub checks: CheckFamilies,
    pub events: EventFamilies,
    pub restarts: RestartFamily,
    pub discovery: DiscoveryFamilies,
    pub prune: PruneFamilies,
    pub reload: ReloadFamilies,
    /// Every family, as what forgets a daemon or an image: the one list.
    families: Vec<Box<dyn Forget>>,
    /// Bumped by the families after every change.
    changes: Changes,
    state: Arc<State>,
    board: Arc<PullBoard>,
    cache: Mutex<Option<CachedBody>>,
    probes: Mutex<Option<CachedProbes>>,
}

/// The last split of the exposition by daemon, for `/probe`.
#[derive(Debug)]
struct CachedProbes {
    key: [u64; 3],
    made: Instant,
    by_daemon: HashMap<String, Bytes>,
}

/// How old the split `/probe` answers from may be: at most one split a
/// second, however many daemons are probed and however often they change
/// (a poll publishes every few seconds per daemon; with a thousand daemons
/// something changes all the time).
const PROBE_REFRESH: Duration = Duration::from_secs(1);

/// The last body `/metrics` sent, and what it was made from.
#[derive(Debug)]
struct CachedBody {
    key: [u64; 3],
    made: Instant,
    body: Bytes,
    /// `body` gzip-compressed, made when a scraper first asks for it.
    gzip: Option<Bytes>,
}

/// gzip level for `/metrics`: the fastest. The exposition is so repetitive
/// that it already shrinks about tenfold, and a body of a thousand daemons is
/// compressed in a fraction of the time a higher level takes.
const GZIP_LEVEL: u32 = 1;

/// `body`, gzip-compressed.
fn gzip(body: &[u8]) -> std::io::Result<Bytes> {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::new(GZIP_LEVEL),
    );
    gz.write_all(body)?;
    Ok(Bytes::from(gz.finish()?))
}

/// How long a body may be reused while nothing changed: bounds how old the
/// process_* figures (CPU, memory, fds) can be. Everything else is exact:
/// any change to the state, the pull board or a counter makes a new body.
const PROCESS_REFRESH: Duration = Duration::from_secs(1);

/// The git revision baked in at build time, if the build said.
pub const REVISION: &str = match option_env!("DOCKWATCH_REVISION") {
    Some(r) => r,
    None => "unknown",
};

impl Metrics {
    /// All families, with the daemon gauges read from `state` and `board`,
    /// and process metrics from /proc where `process` is set.
    pub fn new(state: Arc<State>, board: Arc<PullBoard>, process: bool) -> Self {
        let mut registry = Registry::default();
        if process {
            registry.register_collector(Box::new(process::ProcessCollector));
        }
        let dw = registry.sub_registry_with_prefix("dockwatch");

        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                revision: REVISION.to_owned(),
            })
            .set(1);
        dw.register(
            "build_info",
            "dockwatch's version and git revision; always 1",
            build_info,
        );
        let changes = Changes::default();
        let mut families = Vec::new();
        let api = listed(&mut families, ApiFamilies::register(dw, &changes));
        dw.register_collector(read_at_scrape(Arc::clone(&state), daemon::snapshot_gauges));
        dw.register_collector(read_at_scrape(Arc::clone(&state), disk::disk_gauges));
        let pulls = listed(&mut families, PullFamilies::register(dw, &changes));
        dw.register_collector(read_at_scrape(Arc::clone(&board), pulls::board_gauges));
        let checks = listed(&mut families, CheckFamilies::register(dw, &changes));
        dw.register_collector(read_at_scrape(
            Arc::clone(&board),
            registry_checks::check_gauges,
        ));
        let events = listed(&mut families, EventFamilies::register(dw, &changes));
        let both = (Arc::clone(&state), Arc::clone(&board));
        dw.register_collector(read_at_scrape(both, containers::container_gauges));
        let restarts = listed(&mut families, RestartFamily::register(dw, &changes));
        let discovery = listed(&mut families, DiscoveryFamilies::register(dw, &changes));
        let prune = listed(&mut families, PruneFamilies::register(dw, &changes));
        let reload = listed(&mut families, ReloadFamilies::register(dw, &changes));

        Self {
            registry,
            api,
            pulls,
            checks,
            events,
            restarts,
            discovery,
            prune,
            reload,
            families,
            changes,
            state,
            board,
            cache: Mutex::new(None),
            probes: Mutex::new(None),
        }
    }

    /// The body for `/metrics`: the last one again if nothing changed since
    /// it was made (and it is under a second old), else a new one. Under a
    /// scrape storm this makes a scrape a copy instead of an encode; the
    /// lock also keeps concurrent scrapes from encoding the same body twice.
    /// Blocks while another scrape encodes: call it off the async workers.
    pub fn scrape(&self) -> Bytes {
        self.with_body(Instant::now(), |c| c.body.clone())
    }

    /// The body for `/metrics`, gzip-compressed: compressed once per body,
    /// so a scrape of an unchanged body costs a copy, as [`Self::scrape`]
    /// does. `None` if compressing failed (logged): send the plain body.
    pub fn scrape_gzip(&self) -> Option<Bytes> {
        self.with_body(Instant::now(), |c| {
            if c.gzip.is_none() {
                match gzip(&c.body) {
                    Ok(gz) => c.gzip = Some(gz),
                    Err(e) => tracing::error!(error = %e, "compressing /metrics failed"),
                }
            }
            c.gzip.clone()
        })
    }

    /// `f` of the cached body for a scrape that arrived at `arrived`, made
    /// anew unless nothing changed since it was made (and it is under a
    /// second old) or it was begun after the scrape arrived. The latter keeps
    /// a fleet's body, which changes with every Docker call, from being
    /// encoded once per scrape: the scrapes that waited while one was encoded
    /// all take the next one, which holds every change made before they came.
    fn with_body<R>(&self, arrived: Instant, f: impl FnOnce(&mut CachedBody) -> R) -> R {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let key = [
            self.changes.version(),
            self.state.version(),
            self.board.version(),
        ];
        let usable = cache.as_ref().is_some_and(|c| {
            c.made >= arrived || (c.key == key && c.made.elapsed() < PROCESS_REFRESH)
        });
        if !usable {
            *cache = None;
        }
        // `made` is taken before encoding: the body holds every change made
        // before that moment.
        f(cache.get_or_insert_with(|| CachedBody {
            key,
            made: Instant::now(),
            body: Bytes::from(self.encode()),
            gzip: None,
        }))
    }

    /// The series of one daemon (every family with a `daemon` label), as
    /// of at most [`PROBE_REFRESH`] ago; empty for a daemon with none yet.
    pub fn probe(&self, daemon: &str) -> Bytes {
        let mut cache = self.probes.lock().unwrap_or_else(PoisonError::into_inner);
        let key = [
            self.changes.version(),
            self.state.version(),
            self.board.version(),
        ];
        let fresh = cache
            .as_ref()
            .is_some_and(|c| c.key == key || c.made.elapsed() < PROBE_REFRESH);
        if !fresh {
            *cache = Some(CachedProbes {
                key,
                made: Instant::now(),
                by_daemon: probe::split(&self.encode()),
            });
        }
        cache
            .as_ref()
            .and_then(|c| c.by_daemon.get(daemon).cloned())
            .unwrap_or_default()
    }

    /// Drops every series of a daemon that is no longer configured. The
    /// label sets are closed, so all of them can be named.
    pub fn forget_daemon(&self, daemon: &str) {
        for family in &self.families {
            family.forget_daemon(daemon);
        }
    }

    /// Drops every series of a pre-pull image that is no longer configured.
    pub fn forget_image(&self, daemon: &str, image: &str) {
        for family in &self.families {
            family.forget_image(daemon, image);
        }
    }

    /// The Prometheus text exposition (version 0.0.4) of everything.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail, and our collectors only fail
        // when their writer does.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "encoding /metrics failed");
        }
        out
    }
}

/// The gauges `write` reads from `source` at scrape time, as a collector.
fn read_at_scrape<T: fmt::Debug + Send + Sync + 'static>(
    source: T,
    write: fn(&T, &mut DescriptorEncoder) -> fmt::Result,
) -> Box<dyn Collector> {
    Box::new(ReadAtScrape { source, write })
}

/// `family`, added to the list of families that forget daemons and images.
fn listed<F: Forget + Clone + 'static>(families: &mut Vec<Box<dyn Forget>>, family: F) -> F {
    families.push(Box::new(family.clone()));
    family
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Observer as _;
    use crate::labels::{ApiEndpoint, CheckFailure, CheckResult, ErrorReason};
    use crate::labels::{ContainerState, ExitClass, PruneRefusal, PruneResult, PullResult};
    use crate::state::{
        ContainerSignals, DaemonInfo, DaemonSnapshot, FinishedPull, ImageCount, PollData,
    };

    /// A fixed state: one healthy daemon with filters, one that went down.
    fn fixed_state() -> Arc<State> {
        let state = Arc::new(State::new(["build-01", "local", "never-polled"]));
        let mut containers = [0; 7];
        containers[ContainerState::Running as usize] = 2;
        containers[ContainerState::Exited as usize] = 3;
        containers[ContainerState::Created as usize] = 1;
        let info = DaemonInfo {
            engine: "docker".into(),
            version: "20.10.24+dfsg1".into(),
            api_version: "1.41".into(),
            min_api_version: "1.12".into(),
            negotiated_api_version: "1.41".into(),
            os: "linux".into(),
            arch: "amd64".into(),
            storage_driver: "overlay2".into(),
        };
        state.publish(
            "local",
            DaemonSnapshot {
                last_success: Some(1_700_000_000.5),
                poll_duration: 0.012,
                info: Some(info.clone()),
                data: Some(PollData {
                    images: ImageCount {
                        count: 9,
                        bytes: 12_345_678,
                    },
                    dangling: ImageCount {
                        count: 3,
                        bytes: 3_000_000,
                    },
                    filters: vec![(
                        "ci-cache".into(),
                        ImageCount {
                            count: 3,
                            bytes: 4_000_000,
                        },
                    )],
                    containers,
                    signals: ContainerSignals {
                        // Healthy, unhealthy, starting, none: the 2 running.
                        health: [1, 1, 0, 0],
                        outdated: 1,
                        outdated_by_image: vec![
                            ("127.0.0.1:5000/dwtest/multi:1".into(), 1),
                            ("127.0.0.1:5000/dwtest/big:1".into(), 0),
                        ],
                    },
                }),
                // A group the daemon refused in this poll.
                failed_filters: vec!["gone-base".into()],
                down_reason: None,
            },
        );
        state.publish(
            "build-01",
            DaemonSnapshot {
                last_success: Some(1_699_999_000.0),
                poll_duration: 5.0,
                info: Some(info),
                data: None,
                failed_filters: vec![],
                down_reason: None,
            },
        );
        // The last /system/df worked on local, failed on build-01.
        state.publish_disk(
            "local",
            Ok(crate::docker::df::DiskUsage {
                images: crate::docker::df::Usage {
                    size: 12_000_000,
                    reclaimable: 5_000_000,
                },
                containers: crate::docker::df::Usage {
                    size: 4096,
                    reclaimable: 1024,
                },
                volumes: crate::docker::df::Usage::default(),
                build_cache: crate::docker::df::Usage {
                    size: 2048,
                    reclaimable: 2048,
                },
                images_unused: 4,
            }),
        );
        state.publish_disk("build-01", Err(ErrorReason::Timeout));
        state
    }

    /// One finished pull and one running, on "local".
    fn fixed_board() -> Arc<PullBoard> {
        use crate::folds::progress::{Progress, PullEvent};
        use crate::state::RunningPull;
        let done = "127.0.0.1:5000/dwtest/multi:1";
        let running = "127.0.0.1:5000/dwtest/big:1";
        let board = Arc::new(PullBoard::new([(
            "local".to_owned(),
            vec![done.to_owned(), running.to_owned()],
        )]));
        let mut progress = Progress::default();
        for line in include_str!("../../tests/streams/dockerd-20.10-cold-3-layers.jsonl")
            .lines()
            .take(12)
        {
            if let Ok(e) = PullEvent::parse(line.as_bytes()) {
                progress.apply(&e);
            }
        }
        board.update("local", running, |p| {
            p.running = Some(RunningPull {
                started: 1_700_000_100.0,
                progress,
            });
        });
        board.update("local", done, |p| {
            p.present = Some(true);
            p.last_success = Some(1_700_000_050.0);
            p.last = Some(FinishedPull {
                started: 1_700_000_040.0,
                finished: 1_700_000_050.0,
                duration_seconds: 10.0,
                result: PullResult::Updated,
                reason: None,
                stalled: false,
                message: None,
                digest: None,
                totals: crate::folds::progress::Totals {
                    layers: 3,
                    layers_downloaded: 3,
                    layers_already_exist: 0,
                    downloaded_bytes: 1_000_924,
                    expected_bytes: 1_000_924,
                    extracted_bytes: 1_000_924,
                },
                layers: Vec::new(),
            });
            // Its last registry check found the tag where it was pulled from.
            p.check = Some(crate::state::RegistryCheck {
                checked: 1_700_000_060.0,
                result: Some(CheckResult::Same),
                registry_digest: Some("sha256:14374738e0d7".into()),
                local_digests: vec!["sha256:14374738e0d7".into()],
                update_available: Some(false),
                ..Default::default()
            });
        });
        // The tag of the running one moved in the registry.
        board.update("local", running, |p| {
            p.check = Some(crate::state::RegistryCheck {
                checked: 1_700_000_070.0,
                result: Some(CheckResult::Differs),
                update_available: Some(true),
                ..Default::default()
            });
        });
        board.set_window_open("local", true);
        board
    }

    /// Sorts the samples inside each family: a family's series come out in
    /// hash order.
    fn normalize(text: &str) -> String {
        let mut out = Vec::new();
        let mut block: Vec<&str> = Vec::new();
        for line in text.lines() {
            if line.starts_with("# HELP") {
                block.sort_unstable();
                out.append(&mut block);
                out.push(line);
            } else if line.starts_with('#') {
                out.push(line);
            } else {
                block.push(line);
            }
        }
        block.sort_unstable();
        out.append(&mut block);
        out.join("\n") + "\n"
    }

    fn fixed_metrics() -> Metrics {
        let board = fixed_board();
        let m = Metrics::new(fixed_state(), Arc::clone(&board), false);
        board.read(|d| {
            if let Some(p) = d["local"]["127.0.0.1:5000/dwtest/multi:1"].last.as_ref() {
                m.pulls.record("local", "127.0.0.1:5000/dwtest/multi:1", p);
            }
        });
        let multi = "127.0.0.1:5000/dwtest/multi:1";
        // As the puller and checker start: every series at 0 first.
        m.pulls.init_image("local", multi);
        m.checks.init_image("local", multi);
        m.checks.record("local", multi, CheckResult::Same, None);
        m.checks.record(
            "local",
            multi,
            CheckResult::Failed,
            Some(CheckFailure::RateLimited),
        );
        m.api.api_call(
            "local",
            ApiEndpoint::Version,
            Some(Duration::from_millis(2)),
            None,
        );
        m.restarts.init("local");
        m.restarts.count("local");
        m.events.init_exits("local");
        m.events.count_event("local", "container", "oom");
        m.events.count_exit("local", ExitClass::Oom);
        m.discovery
            .read_at("/etc/dockwatch/daemons/*.json", 2, true, 1_700_000_300.0);
        // One series per family: a family's series come out in hash order.
        m.api.api_call(
            "build-01",
            ApiEndpoint::Version,
            None,
            Some(ErrorReason::Timeout),
        );
        // A pruner on "local": one round that removed one image, had one
        // refused, and found two removable.
        m.prune.init("local");
        m.prune.removed("local", 10_000);
        m.prune.refused("local", PruneRefusal::InUse);
        m.prune.round(
            "local",
            PruneResult::Ok,
            Some(Eligible {
                images: 2,
                bytes: 25_000,
            }),
            1_700_000_200.0,
        );
        m
    }

    /// A daemon's prune series are there from its pruner's start, counters
    /// at zero; a round without a finding keeps the last one; forgetting
    /// drops every one of them.
    #[test]
    fn prune_series_live_and_go_with_the_pruner() {
        let m = Metrics::new(
            Arc::new(State::new(["a"])),
            Arc::new(PullBoard::default()),
            false,
        );
        m.prune.init("a");
        let text = m.encode();
        for line in [
            "dockwatch_prune_runs_total{daemon=\"a\",result=\"failed\"} 0",
            "dockwatch_prune_refused_total{daemon=\"a\",reason=\"not_found\"} 0",
            "dockwatch_prune_images_removed_total{daemon=\"a\"} 0",
            "dockwatch_prune_reclaimed_bytes_total{daemon=\"a\"} 0",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}:\n{text}");
        }
        assert!(!text.contains("dockwatch_prune_last_run_timestamp_seconds{"));
        m.prune.round(
            "a",
            PruneResult::Ok,
            Some(Eligible {
                images: 3,
                bytes: 300,
            }),
            10.0,
        );
        m.prune.round("a", PruneResult::Skipped, None, 20.0);
        let text = m.encode();
        for line in [
            "dockwatch_prune_runs_total{daemon=\"a\",result=\"ok\"} 1",
            "dockwatch_prune_runs_total{daemon=\"a\",result=\"skipped\"} 1",
            "dockwatch_prune_last_run_timestamp_seconds{daemon=\"a\"} 20.0",
            "dockwatch_prune_eligible_images{daemon=\"a\"} 3",
            "dockwatch_prune_eligible_bytes{daemon=\"a\"} 300",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line}:\n{text}");
        }
        m.prune.forget("a");
        assert!(!m.encode().contains("dockwatch_prune_"), "{}", m.encode());
    }

    /// Forgetting a daemon drops the series every family counted for it,
    /// forgetting an image those of the image, and nothing else.
    #[test]
    fn forgetting_reaches_every_family() {
        let m = fixed_metrics();
        let multi = "image=\"127.0.0.1:5000/dwtest/multi:1\"";
        // The counters and histograms the tasks update (the gauges read from
        // the state and the pull board go with those).
        let counted = |text: &str, what: &str| {
            text.lines()
                .filter(|l| l.contains(what))
                .filter(|l| l.contains("_total{") || l.contains("_duration_seconds_"))
                .count()
        };
        let before = m.encode();
        assert!(counted(&before, multi) > 0, "{before}");
        m.forget_image("local", "127.0.0.1:5000/dwtest/multi:1");
        let text = m.encode();
        assert_eq!(counted(&text, multi), 0, "{text}");
        assert!(counted(&text, "daemon=\"local\"") > 0, "{text}");
        assert!(counted(&text, "daemon=\"build-01\"") > 0, "{text}");
        m.forget_daemon("local");
        let text = m.encode();
        assert_eq!(counted(&text, "daemon=\"local\""), 0, "{text}");
        assert!(counted(&text, "daemon=\"build-01\"") > 0, "{text}");
    }

    /// Pins the whole exposition of a fixed snapshot. After an intended
    /// change, regenerate with `UPDATE_GOLDEN=1 cargo test --lib golden`.
    #[test]
    fn golden_exposition() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/metrics.prom");
        let got = normalize(
            &fixed_metrics()
                .encode()
                .replace(env!("CARGO_PKG_VERSION"), "VERSION")
                .replace(REVISION, "REVISION"),
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(path, &got).expect("write golden file");
        }
        let want = std::fs::read_to_string(path).expect("read tests/golden/metrics.prom");
        assert_eq!(got, want, "exposition changed; see {path}");
    }

    #[test]
    fn down_daemon_has_no_stale_numbers() {
        let text = fixed_metrics().encode();
        assert!(text.contains("dockwatch_daemon_up{daemon=\"build-01\"} 0\n"));
        assert!(text.contains("dockwatch_daemon_up{daemon=\"local\"} 1\n"));
        assert!(!text.contains("dockwatch_images{daemon=\"build-01\"}"));
        assert!(text.contains("dockwatch_images{daemon=\"local\"} 9\n"));
        assert!(!text.contains("never-polled"));
        assert!(text.contains(
            "dockwatch_api_request_errors_total{daemon=\"build-01\",endpoint=\"version\",reason=\"timeout\"} 1\n"
        ));
    }

    #[test]
    fn a_refused_filter_group_is_a_zero_not_an_absence() {
        let text = fixed_metrics().encode();
        let has = |line: &str| text.contains(&format!("{line}\n"));
        assert!(has(
            "dockwatch_image_filter_success{daemon=\"local\",filter=\"ci-cache\"} 1"
        ));
        assert!(has(
            "dockwatch_image_filter_success{daemon=\"local\",filter=\"gone-base\"} 0"
        ));
        assert!(has(
            "dockwatch_image_filter_matches{daemon=\"local\",filter=\"ci-cache\"} 3"
        ));
        // The refused group has no numbers, and a down daemon no groups.
        for family in ["matches", "size_bytes"] {
            assert!(
                !text.contains(&format!(
                    "dockwatch_image_filter_{family}{{daemon=\"local\",filter=\"gone-base\"}}"
                )),
                "{family} of a refused group:\n{text}"
            );
        }
        assert!(!text.contains("dockwatch_image_filter_success{daemon=\"build-01\""));
    }

    /// `/system/df` failing, working, failing again: the success gauge
    /// follows, the usage series are there only while it works.
    #[test]
    fn a_failed_disk_usage_is_a_zero_not_an_absence() {
        let state = Arc::new(State::new(["a", "b"]));
        let m = Metrics::new(Arc::clone(&state), Arc::new(PullBoard::default()), false);
        let scrape = || String::from_utf8_lossy(&m.scrape()).into_owned();
        assert!(
            !scrape().contains("dockwatch_disk_usage_success"),
            "no disk task ran yet"
        );

        state.publish_disk("a", Err(ErrorReason::Timeout));
        let failed = scrape();
        assert!(failed.contains("dockwatch_disk_usage_success{daemon=\"a\"} 0\n"));
        assert!(!failed.contains("daemon=\"b\""), "b's disk task never ran");
        for family in [
            "disk_usage_bytes",
            "disk_reclaimable_bytes",
            "images_unused",
        ] {
            assert!(!failed.contains(&format!("dockwatch_{family}")), "{failed}");
        }

        let usage = crate::docker::df::DiskUsage {
            images: crate::docker::df::Usage {
                size: 100,
                reclaimable: 40,
            },
            images_unused: 2,
            ..Default::default()
        };
        state.publish_disk("a", Ok(usage));
        state.publish_disk("b", Err(ErrorReason::Timeout));
        let worked = scrape();
        for line in [
            "dockwatch_disk_usage_success{daemon=\"a\"} 1",
            "dockwatch_disk_usage_success{daemon=\"b\"} 0",
            "dockwatch_disk_usage_bytes{daemon=\"a\",type=\"images\"} 100",
            "dockwatch_disk_reclaimable_bytes{daemon=\"a\",type=\"images\"} 40",
            "dockwatch_images_unused{daemon=\"a\"} 2",
        ] {
            assert!(
                worked.contains(&format!("{line}\n")),
                "{line} in:\n{worked}"
            );
        }
        assert!(!worked.contains("dockwatch_disk_usage_bytes{daemon=\"b\""));

        state.publish_disk("a", Err(ErrorReason::Timeout));
        let again = scrape();
        assert!(again.contains("dockwatch_disk_usage_success{daemon=\"a\"} 0\n"));
        assert!(!again.contains("dockwatch_disk_usage_bytes"), "{again}");

        // A daemon dropped from the configuration loses its gauge.
        state.retain(&["b"]);
        assert!(!scrape().contains("dockwatch_disk_usage_success{daemon=\"a\""));
    }

    #[test]
    fn process_stats_are_read() {
        let p = process::read_process_stats().expect("/proc is readable on Linux");
        assert!(p.resident_memory_bytes > 0.0);
        assert!(p.open_fds >= 3.0);
        assert!(p.start_time_seconds > 1.5e9);
        let text = Metrics::new(
            Arc::new(State::default()),
            Arc::new(PullBoard::default()),
            true,
        )
        .encode();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    /// A scrape reuses the last body only while nothing changed: every kind
    /// of change (a counter, a poll's snapshot, the pull board) makes a new one.
    #[test]
    fn scrape_reuses_the_body_until_something_changes() {
        let state = Arc::new(State::new(["a"]));
        let board = Arc::new(PullBoard::new([("a".to_owned(), vec!["img:1".to_owned()])]));
        let m = Metrics::new(Arc::clone(&state), Arc::clone(&board), false);
        let first = m.scrape();
        let again = m.scrape();
        assert_eq!(first.as_ptr(), again.as_ptr(), "nothing changed: same body");

        m.api.api_call(
            "a",
            ApiEndpoint::Version,
            Some(Duration::from_millis(3)),
            None,
        );
        let after_api = m.scrape();
        assert_ne!(after_api, first);
        assert!(String::from_utf8_lossy(&after_api).contains(
            "dockwatch_api_request_duration_seconds_count{daemon=\"a\",endpoint=\"version\"} 1\n"
        ));

        state.publish("a", DaemonSnapshot::default());
        let after_poll = m.scrape();
        assert!(
            String::from_utf8_lossy(&after_poll).contains("dockwatch_daemon_up{daemon=\"a\"} 0\n")
        );
        assert!(!String::from_utf8_lossy(&after_api).contains("dockwatch_daemon_up"));

        board.update("a", "img:1", |p| p.present = Some(true));
        let after_board = m.scrape();
        assert!(
            String::from_utf8_lossy(&after_board)
                .contains("dockwatch_image_present{daemon=\"a\",image=\"img:1\"} 1\n")
        );
        assert_eq!(
            after_board,
            m.encode(),
            "the cached body is what encode makes"
        );
    }

    /// A scrape that arrived before a body was begun takes that body even if
    /// something changed since (it holds every change made before the scrape
    /// came); one that arrived later gets a new body.
    #[test]
    fn scrapes_that_waited_share_the_next_body() {
        let state = Arc::new(State::new(["a"]));
        let m = Metrics::new(Arc::clone(&state), Arc::new(PullBoard::new([])), false);
        let arrived = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let made = m.scrape();
        state.publish("a", DaemonSnapshot::default());
        let waited = m.with_body(arrived, |c| c.body.clone());
        assert_eq!(waited.as_ptr(), made.as_ptr(), "begun after it arrived");
        let later = m.scrape();
        assert_ne!(later.as_ptr(), made.as_ptr(), "a change since: a new body");
        assert!(String::from_utf8_lossy(&later).contains("dockwatch_daemon_up{daemon=\"a\"} 0\n"));
    }

    /// The gzip form is the body, compressed once per body: a second scrape
    /// of an unchanged body gets the same bytes, a change makes new ones.
    #[test]
    fn gzip_is_the_body_compressed_once_per_change() {
        use std::io::Read as _;
        let state = Arc::new(State::new(["a"]));
        let board = Arc::new(PullBoard::new([]));
        let m = Metrics::new(Arc::clone(&state), board, false);
        let unzip = |gz: &Bytes| {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut out)
                .expect("valid gzip");
            out
        };
        let gz = m.scrape_gzip().expect("compressed");
        assert_eq!(unzip(&gz), m.scrape().to_vec());
        let again = m.scrape_gzip().expect("compressed");
        assert_eq!(gz.as_ptr(), again.as_ptr(), "nothing changed: same bytes");

        state.publish("a", DaemonSnapshot::default());
        let changed = m.scrape_gzip().expect("compressed");
        assert_ne!(changed.as_ptr(), gz.as_ptr());
        let text = String::from_utf8(unzip(&changed)).expect("utf-8");
        assert!(text.contains("dockwatch_daemon_up{daemon=\"a\"} 0\n"));
        assert_eq!(text.as_bytes(), &m.scrape()[..]);
    }
}
