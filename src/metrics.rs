//! Every metric family dockwatch exposes, registered in one place. Counters
//! and histograms are updated by the tasks as things happen; gauges that
//! describe a daemon are read from [`State`] by a collector at scrape time,
//! so a scrape never waits on Docker.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::state::{ContainerState, FinishedPull, PullBoard, State};

/// The Docker API endpoints dockwatch calls: the `endpoint` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiEndpoint {
    Version,
    Info,
    ImageList,
    ContainerList,
    SystemDf,
    Events,
}

impl ApiEndpoint {
    pub const ALL: [Self; 6] = [
        Self::Version,
        Self::Info,
        Self::ImageList,
        Self::ContainerList,
        Self::SystemDf,
        Self::Events,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::Info => "info",
            Self::ImageList => "image_list",
            Self::ContainerList => "container_list",
            Self::SystemDf => "system_df",
            Self::Events => "events",
        }
    }
}

/// Why a Docker API call failed: the `reason` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    Timeout,
    Connect,
    Tls,
    Http4xx,
    Http5xx,
    Decode,
}

impl ErrorReason {
    pub const ALL: [Self; 6] = [
        Self::Timeout,
        Self::Connect,
        Self::Tls,
        Self::Http4xx,
        Self::Http5xx,
        Self::Decode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::Decode => "decode",
        }
    }
}

/// How a pull ended: the `result` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullResult {
    Updated,
    UpToDate,
    Failed,
}

impl PullResult {
    pub const ALL: [Self; 3] = [Self::Updated, Self::UpToDate, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::UpToDate => "up_to_date",
            Self::Failed => "failed",
        }
    }
}

/// Why a pull failed: the `reason` label's values of the pull failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    NotFound,
    Unauthorized,
    Timeout,
    Stalled,
    Tls,
    Network,
    Registry,
    Daemon,
    Canceled,
}

impl FailReason {
    pub const ALL: [Self; 9] = [
        Self::NotFound,
        Self::Unauthorized,
        Self::Timeout,
        Self::Stalled,
        Self::Tls,
        Self::Network,
        Self::Registry,
        Self::Daemon,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::Timeout => "timeout",
            Self::Stalled => "stalled",
            Self::Tls => "tls",
            Self::Network => "network",
            Self::Registry => "registry",
            Self::Daemon => "daemon",
            Self::Canceled => "canceled",
        }
    }
}

/// Where a layer came from: the `outcome` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerOutcome {
    Downloaded,
    AlreadyExists,
}

impl LayerOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Downloaded => "downloaded",
            Self::AlreadyExists => "already_exists",
        }
    }
}

/// How a container ended: the `code_class` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitClass {
    Zero,
    Nonzero,
    Oom,
    Signal,
}

impl ExitClass {
    pub const ALL: [Self; 4] = [Self::Zero, Self::Nonzero, Self::Oom, Self::Signal];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zero => "zero",
            Self::Nonzero => "nonzero",
            Self::Oom => "oom",
            Self::Signal => "signal",
        }
    }
}

macro_rules! label_value_from_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value_from_as_str!(
    ApiEndpoint,
    ErrorReason,
    PullResult,
    FailReason,
    LayerOutcome,
    ExitClass
);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    daemon: String,
    // Both values come from closed sets (see events.rs).
    r#type: &'static str,
    action: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ExitLabels {
    daemon: String,
    code_class: ExitClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ImageLabels {
    daemon: String,
    image: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PullResultLabels {
    daemon: String,
    image: String,
    result: PullResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PullFailureLabels {
    daemon: String,
    image: String,
    reason: FailReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LayerLabels {
    daemon: String,
    image: String,
    outcome: LayerOutcome,
}

/// Whole-pull durations: a cached layer takes half a second, a cold CI
/// image over a slow link most of an hour.
const PULL_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

fn pull_histogram() -> Histogram {
    Histogram::new(PULL_BUCKETS)
}

/// The counters and histograms of finished pulls.
#[derive(Debug, Clone)]
struct PullFamilies {
    results: Family<PullResultLabels, Counter>,
    failures: Family<PullFailureLabels, Counter>,
    duration: Family<ImageLabels, Histogram, fn() -> Histogram>,
    bytes: Family<ImageLabels, Counter>,
    layers: Family<LayerLabels, Counter>,
    stalls: Family<ImageLabels, Counter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    daemon: String,
    endpoint: ApiEndpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiErrorLabels {
    daemon: String,
    endpoint: ApiEndpoint,
    reason: ErrorReason,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

/// Docker API latency buckets: a local socket answers in a millisecond, a
/// loaded remote daemon in seconds.
const API_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn api_histogram() -> Histogram {
    Histogram::new(API_BUCKETS)
}

type ApiHistograms = Family<ApiLabels, Histogram, fn() -> Histogram>;

/// The registry and the families the tasks update.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    api_duration: ApiHistograms,
    api_errors: Family<ApiErrorLabels, Counter>,
    pulls: PullFamilies,
    events: Family<EventLabels, Counter>,
    exits: Family<ExitLabels, Counter>,
    reload_ok: Gauge,
    reload_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Bumped after every change made through these methods.
    version: AtomicU64,
    state: Arc<State>,
    board: Arc<PullBoard>,
    cache: Mutex<Option<CachedBody>>,
}

/// The last body `/metrics` sent, and what it was made from.
#[derive(Debug)]
struct CachedBody {
    key: [u64; 3],
    made: Instant,
    body: Bytes,
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
    /// All families, with the daemon gauges read from `state` and process
    /// metrics from /proc where `process` is set.
    // A flat list of registrations; splitting it would only scatter them.
    #[allow(clippy::too_many_lines)]
    pub fn new(state: Arc<State>, board: Arc<PullBoard>, process: bool) -> Self {
        let sources = (Arc::clone(&state), Arc::clone(&board));
        let mut registry = Registry::default();
        if process {
            registry.register_collector(Box::new(ProcessCollector));
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

        let api_duration = ApiHistograms::new_with_constructor(api_histogram);
        dw.register(
            "api_request_duration_seconds",
            "Docker Engine API request latency, by endpoint",
            api_duration.clone(),
        );
        let api_errors = Family::<ApiErrorLabels, Counter>::default();
        dw.register(
            "api_request_errors",
            "Docker Engine API requests that failed, by endpoint and reason",
            api_errors.clone(),
        );
        dw.register_collector(Box::new(SnapshotCollector { state }));

        let pulls = PullFamilies {
            results: Family::default(),
            failures: Family::default(),
            duration: Family::new_with_constructor(pull_histogram),
            bytes: Family::default(),
            layers: Family::default(),
            stalls: Family::default(),
        };
        dw.register(
            "image_pulls",
            "Pre-pulls that ended, by result (updated, up_to_date, failed)",
            pulls.results.clone(),
        );
        dw.register(
            "image_pull_failures",
            "Pre-pulls that failed, by reason",
            pulls.failures.clone(),
        );
        dw.register(
            "image_pull_duration_seconds",
            "Wall time of whole pre-pulls",
            pulls.duration.clone(),
        );
        dw.register(
            "image_pull_downloaded_bytes",
            "Layer bytes pre-pulls actually downloaded",
            pulls.bytes.clone(),
        );
        dw.register(
            "image_pull_layers",
            "Layers of pre-pulls, downloaded or already on the daemon",
            pulls.layers.clone(),
        );
        dw.register(
            "image_pull_stalls",
            "Pre-pulls canceled because they made no progress for stall_timeout",
            pulls.stalls.clone(),
        );
        dw.register_collector(Box::new(PullCollector { board }));
        let events = Family::<EventLabels, Counter>::default();
        dw.register(
            "events",
            "Docker events seen, by type (container, image) and action",
            events.clone(),
        );
        let exits = Family::<ExitLabels, Counter>::default();
        dw.register(
            "container_exits",
            "Containers that ended, by exit code class (zero, nonzero, oom, signal)",
            exits.clone(),
        );

        let reload_ok = Gauge::default();
        dw.register(
            "config_last_reload_successful",
            "1 if the last (re)load of the configuration worked",
            reload_ok.clone(),
        );
        let reload_time = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        dw.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last (re)load of the configuration that worked",
            reload_time.clone(),
        );

        Self {
            registry,
            api_duration,
            api_errors,
            pulls,
            events,
            exits,
            reload_ok,
            reload_time,
            version: AtomicU64::new(0),
            state: sources.0,
            board: sources.1,
            cache: Mutex::new(None),
        }
    }

    /// Marks a change, after it was made: a scrape that sees the new version
    /// also sees the change.
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The body for `/metrics`: the last one again if nothing changed since
    /// it was made (and it is under a second old), else a new one. Under a
    /// scrape storm this makes a scrape a copy instead of an encode; the
    /// lock also keeps concurrent scrapes from encoding the same body twice.
    pub fn scrape(&self) -> Bytes {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let key = [
            self.version.load(Ordering::Acquire),
            self.state.version(),
            self.board.version(),
        ];
        if let Some(c) = cache.as_ref()
            && c.key == key
            && c.made.elapsed() < PROCESS_REFRESH
        {
            return c.body.clone();
        }
        let body = Bytes::from(self.encode());
        *cache = Some(CachedBody {
            key,
            made: Instant::now(),
            body: body.clone(),
        });
        body
    }

    /// Records a (re)load of the configuration.
    pub fn config_loaded(&self, ok: bool) {
        self.reload_ok.set(i64::from(ok));
        if ok {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.reload_time.set(now);
        }
        self.changed();
    }

    /// Drops every series of a pre-pull image that is no longer configured.
    /// The label sets are closed, so all of them can be named.
    pub fn forget_image(&self, daemon: &str, image: &str) {
        let l = ImageLabels {
            daemon: daemon.to_owned(),
            image: image.to_owned(),
        };
        for result in PullResult::ALL {
            self.pulls.results.remove(&PullResultLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                result,
            });
        }
        for reason in FailReason::ALL {
            self.pulls.failures.remove(&PullFailureLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                reason,
            });
        }
        for outcome in [LayerOutcome::Downloaded, LayerOutcome::AlreadyExists] {
            self.pulls.layers.remove(&LayerLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                outcome,
            });
        }
        self.pulls.duration.remove(&l);
        self.pulls.bytes.remove(&l);
        self.pulls.stalls.remove(&l);
        self.changed();
    }

    /// Drops every series of a daemon that is no longer configured.
    pub fn forget_daemon(&self, daemon: &str) {
        let d = daemon.to_owned();
        for endpoint in ApiEndpoint::ALL {
            self.api_duration.remove(&ApiLabels {
                daemon: d.clone(),
                endpoint,
            });
            for reason in ErrorReason::ALL {
                self.api_errors.remove(&ApiErrorLabels {
                    daemon: d.clone(),
                    endpoint,
                    reason,
                });
            }
        }
        for (r#type, actions) in crate::events::ACTIONS {
            for action in actions.iter().copied().chain(["other"]) {
                self.events.remove(&EventLabels {
                    daemon: d.clone(),
                    r#type,
                    action,
                });
            }
        }
        for code_class in ExitClass::ALL {
            self.exits.remove(&ExitLabels {
                daemon: d.clone(),
                code_class,
            });
        }
        self.changed();
    }

    pub fn count_event(&self, daemon: &str, r#type: &'static str, action: &'static str) {
        self.events
            .get_or_create(&EventLabels {
                daemon: daemon.to_owned(),
                r#type,
                action,
            })
            .inc();
        self.changed();
    }

    pub fn count_exit(&self, daemon: &str, code_class: ExitClass) {
        self.exits
            .get_or_create(&ExitLabels {
                daemon: daemon.to_owned(),
                code_class,
            })
            .inc();
        self.changed();
    }

    /// Creates a daemon's exit counters at zero.
    pub fn init_exits(&self, daemon: &str) {
        for code_class in ExitClass::ALL {
            let _ = self.exits.get_or_create(&ExitLabels {
                daemon: daemon.to_owned(),
                code_class,
            });
        }
        self.changed();
    }

    /// Creates a configured image's counters at zero, so `increase()` sees
    /// its first pull.
    pub fn init_image(&self, daemon: &str, image: &str) {
        let l = ImageLabels {
            daemon: daemon.to_owned(),
            image: image.to_owned(),
        };
        for result in PullResult::ALL {
            // get_or_create is what creates the series; the guard is not needed.
            let _ = self.pulls.results.get_or_create(&PullResultLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                result,
            });
        }
        for outcome in [LayerOutcome::Downloaded, LayerOutcome::AlreadyExists] {
            let _ = self.pulls.layers.get_or_create(&LayerLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                outcome,
            });
        }
        let _ = self.pulls.bytes.get_or_create(&l);
        let _ = self.pulls.stalls.get_or_create(&l);
        self.changed();
    }

    /// Counts one finished pre-pull.
    pub fn record_pull(&self, daemon: &str, image: &str, pull: &FinishedPull) {
        let l = ImageLabels {
            daemon: daemon.to_owned(),
            image: image.to_owned(),
        };
        self.pulls
            .results
            .get_or_create(&PullResultLabels {
                daemon: l.daemon.clone(),
                image: l.image.clone(),
                result: pull.result,
            })
            .inc();
        if let Some(reason) = pull.reason {
            self.pulls
                .failures
                .get_or_create(&PullFailureLabels {
                    daemon: l.daemon.clone(),
                    image: l.image.clone(),
                    reason,
                })
                .inc();
        }
        if pull.stalled {
            self.pulls.stalls.get_or_create(&l).inc();
        }
        self.pulls
            .duration
            .get_or_create(&l)
            .observe(pull.duration_seconds);
        self.pulls
            .bytes
            .get_or_create(&l)
            .inc_by(pull.totals.downloaded_bytes);
        for (outcome, n) in [
            (LayerOutcome::Downloaded, pull.totals.layers_downloaded),
            (
                LayerOutcome::AlreadyExists,
                pull.totals.layers_already_exist,
            ),
        ] {
            self.pulls
                .layers
                .get_or_create(&LayerLabels {
                    daemon: l.daemon.clone(),
                    image: l.image.clone(),
                    outcome,
                })
                .inc_by(n);
        }
        self.changed();
    }

    /// Records one Docker API call; `error` is its failure reason, if any.
    pub fn observe_api(
        &self,
        daemon: &str,
        endpoint: ApiEndpoint,
        took: Duration,
        error: Option<ErrorReason>,
    ) {
        self.api_duration
            .get_or_create(&ApiLabels {
                daemon: daemon.to_owned(),
                endpoint,
            })
            .observe(took.as_secs_f64());
        if let Some(reason) = error {
            self.count_api_error(daemon, endpoint, reason);
        }
        self.changed();
    }

    /// Counts a failed call, including one that could not even be sent.
    pub fn count_api_error(&self, daemon: &str, endpoint: ApiEndpoint, reason: ErrorReason) {
        self.api_errors
            .get_or_create(&ApiErrorLabels {
                daemon: daemon.to_owned(),
                endpoint,
                reason,
            })
            .inc();
        self.changed();
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

/// Writes one gauge family; writes nothing when there are no rows, so a
/// family with no series does not appear at all.
fn gauge_family<L, V, I>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: I,
) -> fmt::Result
where
    L: EncodeLabelSet,
    V: prometheus_client::encoding::EncodeGaugeValue + fmt::Debug,
    I: IntoIterator<Item = (L, V)>,
{
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn daemon<'a>(name: &&'a str) -> [(&'static str, &'a str); 1] {
    [("daemon", *name)]
}

/// Reads the latest snapshot of every daemon at scrape time.
#[derive(Debug)]
struct SnapshotCollector {
    state: Arc<State>,
}

impl Collector for SnapshotCollector {
    #[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let all = self.state.snapshots();
        // Daemons that have not finished a first poll have no series yet.
        let polled: Vec<_> = all
            .iter()
            .filter_map(|(name, s)| s.as_ref().map(|s| (name.as_str(), s.as_ref())))
            .collect();

        gauge_family(
            &mut enc,
            "daemon_up",
            "1 if the last poll of the daemon succeeded, 0 if not.",
            polled.iter().map(|(n, s)| (daemon(n), i64::from(s.up()))),
        )?;
        gauge_family(
            &mut enc,
            "daemon_info",
            "What the daemon reports about itself; always 1.",
            polled.iter().filter_map(|(n, s)| {
                s.info.as_ref().map(|i| {
                    (
                        [
                            ("daemon", *n),
                            ("engine", i.engine.as_str()),
                            ("version", i.version.as_str()),
                            ("api_version", i.api_version.as_str()),
                            ("min_api_version", i.min_api_version.as_str()),
                            ("os", i.os.as_str()),
                            ("arch", i.arch.as_str()),
                            ("storage_driver", i.storage_driver.as_str()),
                        ],
                        1_i64,
                    )
                })
            }),
        )?;
        gauge_family(
            &mut enc,
            "daemon_last_success_timestamp_seconds",
            "Unix time at the end of the last poll that succeeded.",
            polled
                .iter()
                .filter_map(|(n, s)| s.last_success.map(|t| (daemon(n), t))),
        )?;
        gauge_family(
            &mut enc,
            "daemon_poll_duration_seconds",
            "How long the last poll of the daemon took.",
            polled.iter().map(|(n, s)| (daemon(n), s.poll_duration)),
        )?;

        let data: Vec<_> = polled
            .iter()
            .filter_map(|(n, s)| s.data.as_ref().map(|d| (*n, d)))
            .collect();
        gauge_family(
            &mut enc,
            "images",
            "Top-level images on the daemon.",
            data.iter().map(|(n, d)| (daemon(n), d.images.count)),
        )?;
        gauge_family(
            &mut enc,
            "images_size_bytes",
            "Total size of the top-level images, as the daemon reports each.",
            data.iter().map(|(n, d)| (daemon(n), d.images.bytes)),
        )?;
        gauge_family(
            &mut enc,
            "images_dangling",
            "Images matched by filters={\"dangling\":[\"true\"]}.",
            data.iter().map(|(n, d)| (daemon(n), d.dangling.count)),
        )?;
        gauge_family(
            &mut enc,
            "images_dangling_size_bytes",
            "Total size of the dangling images.",
            data.iter().map(|(n, d)| (daemon(n), d.dangling.bytes)),
        )?;
        let filters = || {
            data.iter()
                .flat_map(|(n, d)| d.filters.iter().map(move |(f, c)| (*n, f.as_str(), c)))
        };
        gauge_family(
            &mut enc,
            "image_filter_matches",
            "Images matched by a configured filter group.",
            filters().map(|(n, f, c)| ([("daemon", n), ("filter", f)], c.count)),
        )?;
        gauge_family(
            &mut enc,
            "image_filter_size_bytes",
            "Total size of the images matched by a configured filter group.",
            filters().map(|(n, f, c)| ([("daemon", n), ("filter", f)], c.bytes)),
        )?;
        // Every group of an up daemon: 1 if its query worked, 0 if the
        // daemon refused it (its matches and bytes are then left out).
        gauge_family(
            &mut enc,
            "image_filter_success",
            "1 if the filter group's last query worked, 0 if the daemon refused it.",
            polled.iter().filter(|(_, s)| s.up()).flat_map(|(n, s)| {
                let worked = s
                    .data
                    .iter()
                    .flat_map(|d| &d.filters)
                    .map(|(f, _)| (f, 1_i64));
                let failed = s.failed_filters.iter().map(|f| (f, 0));
                worked
                    .chain(failed)
                    .map(move |(f, ok)| ([("daemon", *n), ("filter", f.as_str())], ok))
            }),
        )?;
        let disks = self.state.disks();
        gauge_family(
            &mut enc,
            "disk_usage_success",
            "1 if the last /system/df of the daemon worked, 0 if not.",
            disks
                .iter()
                .map(|(n, d)| ([("daemon", n.as_str())], i64::from(d.is_some()))),
        )?;
        // The usage itself only from a /system/df that worked.
        let disks: Vec<_> = disks
            .iter()
            .filter_map(|(n, d)| d.map(|d| (n.as_str(), d)))
            .collect();
        let disk_rows = |f: fn(&crate::disk::Usage) -> u64| {
            disks.iter().flat_map(move |(n, d)| {
                d.by_type()
                    .into_iter()
                    .map(move |(t, u)| ([("daemon", *n), ("type", t)], f(&u)))
            })
        };
        gauge_family(
            &mut enc,
            "disk_usage_bytes",
            "Disk used, by type (images, containers, volumes, build_cache), from /system/df.",
            disk_rows(|u| u.size),
        )?;
        gauge_family(
            &mut enc,
            "disk_reclaimable_bytes",
            "Disk a prune could free, by type, from /system/df.",
            disk_rows(|u| u.reclaimable),
        )?;
        gauge_family(
            &mut enc,
            "images_unused",
            "Images no container uses (not the same as dangling), from /system/df.",
            disks
                .iter()
                .map(|(n, d)| ([("daemon", *n)], d.images_unused)),
        )?;
        gauge_family(
            &mut enc,
            "containers",
            "Containers on the daemon, by state.",
            data.iter().flat_map(|(n, d)| {
                ContainerState::ALL.iter().map(move |s| {
                    (
                        [("daemon", *n), ("state", s.as_str())],
                        d.containers[*s as usize],
                    )
                })
            }),
        )?;
        Ok(())
    }
}

/// Running pulls and per-image status, read from the pull board at scrape
/// time: progress series exist exactly while a pull runs.
#[derive(Debug)]
struct PullCollector {
    board: Arc<PullBoard>,
}

impl Collector for PullCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.board.read(|daemons| {
            let images = || {
                daemons.iter().flat_map(|(d, imgs)| {
                    imgs.iter().map(move |(i, p)| (d.as_str(), i.as_str(), p))
                })
            };
            let running = || {
                images()
                    .filter_map(|(d, i, p)| p.running.as_ref().map(|r| (d, i, r.progress.totals())))
            };
            gauge_family(
                &mut enc,
                "image_pulls_in_progress",
                "Pre-pulls running now.",
                daemons.iter().map(|(d, imgs)| {
                    let n = imgs.values().filter(|p| p.running.is_some()).count();
                    (
                        [("daemon", d.as_str())],
                        i64::try_from(n).unwrap_or(i64::MAX),
                    )
                }),
            )?;
            gauge_family(
                &mut enc,
                "image_pull_progress_bytes",
                "Bytes done so far of a running pre-pull, by phase (download, extract).",
                running().flat_map(|(d, i, t)| {
                    [
                        (
                            [("daemon", d), ("image", i), ("phase", "download")],
                            t.downloaded_bytes,
                        ),
                        (
                            [("daemon", d), ("image", i), ("phase", "extract")],
                            t.extracted_bytes,
                        ),
                    ]
                }),
            )?;
            gauge_family(
                &mut enc,
                "image_pull_expected_bytes",
                "Bytes a running pre-pull has to fetch, as far as the daemon has said.",
                running().map(|(d, i, t)| ([("daemon", d), ("image", i)], t.expected_bytes)),
            )?;
            gauge_family(
                &mut enc,
                "image_pull_last_success_timestamp_seconds",
                "Unix time the last pre-pull of the image that ended well ended.",
                images().filter_map(|(d, i, p)| {
                    p.last_success.map(|t| ([("daemon", d), ("image", i)], t))
                }),
            )?;
            gauge_family(
                &mut enc,
                "image_present",
                "1 if the configured image is on the daemon, as last checked.",
                images().filter_map(|(d, i, p)| {
                    p.present
                        .map(|x| ([("daemon", d), ("image", i)], i64::from(x)))
                }),
            )?;
            gauge_family(
                &mut enc,
                "prepull_ready",
                "1 if every configured image is on the daemon and its last pre-pull ended well.",
                daemons.iter().map(|(d, imgs)| {
                    let ready = imgs.values().all(|p| {
                        p.present == Some(true)
                            && p.last
                                .as_ref()
                                .is_some_and(|l| l.result != PullResult::Failed)
                    });
                    ([("daemon", d.as_str())], i64::from(ready))
                }),
            )
        })
    }
}

/// `process_*` metrics from /proc, in the names every Prometheus client uses.
#[derive(Debug)]
struct ProcessCollector;

/// Linux's `USER_HZ`: /proc reports CPU times in these ticks on every
/// mainstream architecture.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    start_time_seconds: f64,
    virtual_memory_bytes: f64,
    resident_memory_bytes: f64,
    open_fds: f64,
    max_fds: f64,
}

#[allow(clippy::cast_precision_loss)]
fn read_process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may itself hold spaces and parens.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // Counted from the state field (field 3 of proc(5)) as index 0.
    let (utime, stime, starttime, vsize) = (field(11)?, field(12)?, field(19)?, field(20)?);
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("Max open files")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::INFINITY);
    Some(ProcessStats {
        cpu_seconds: (utime + stime) / CLOCK_TICKS_PER_SECOND,
        start_time_seconds: boot_time + starttime / CLOCK_TICKS_PER_SECOND,
        virtual_memory_bytes: vsize,
        resident_memory_bytes: rss_kib * 1024.0,
        open_fds,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{DaemonInfo, DaemonSnapshot, ImageCount, PollData};

    /// A fixed state: one healthy daemon with filters (one refused by the
    /// daemon) and a good /system/df; one that went down and whose last
    /// /system/df failed; one never polled.
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
                }),
                // A group the daemon refused in this poll.
                failed_filters: vec!["gone-base".into()],
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
            },
        );
        // The last /system/df worked on local, failed on build-01.
        state.publish_disk(
            "local",
            Some(crate::disk::DiskUsage {
                images: crate::disk::Usage {
                    size: 12_000_000,
                    reclaimable: 5_000_000,
                },
                containers: crate::disk::Usage {
                    size: 4096,
                    reclaimable: 1024,
                },
                volumes: crate::disk::Usage::default(),
                build_cache: crate::disk::Usage {
                    size: 2048,
                    reclaimable: 2048,
                },
                images_unused: 4,
            }),
        );
        state.publish_disk("build-01", None);
        state
    }

    /// One finished pull and one running, on "local".
    fn fixed_board() -> Arc<PullBoard> {
        use crate::progress::{Progress, PullEvent};
        use crate::state::RunningPull;
        let done = "127.0.0.1:5000/dwtest/multi:1";
        let running = "127.0.0.1:5000/dwtest/big:1";
        let board = Arc::new(PullBoard::new([(
            "local".to_owned(),
            vec![done.to_owned(), running.to_owned()],
        )]));
        let mut progress = Progress::default();
        for line in include_str!("../tests/streams/dockerd-20.10-cold-3-layers.jsonl")
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
                totals: crate::progress::Totals {
                    layers: 3,
                    layers_downloaded: 3,
                    layers_already_exist: 0,
                    downloaded_bytes: 1_000_924,
                    expected_bytes: 1_000_924,
                    extracted_bytes: 1_000_924,
                },
                layers: Vec::new(),
            });
        });
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
                m.record_pull("local", "127.0.0.1:5000/dwtest/multi:1", p);
            }
        });
        m.observe_api(
            "local",
            ApiEndpoint::Version,
            Duration::from_millis(2),
            None,
        );
        // One series per family: a family's series come out in hash order.
        m.count_api_error("build-01", ApiEndpoint::Version, ErrorReason::Timeout);
        m
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

        state.publish_disk("a", None);
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

        let usage = crate::disk::DiskUsage {
            images: crate::disk::Usage {
                size: 100,
                reclaimable: 40,
            },
            images_unused: 2,
            ..Default::default()
        };
        state.publish_disk("a", Some(usage));
        state.publish_disk("b", None);
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

        state.publish_disk("a", None);
        let again = scrape();
        assert!(again.contains("dockwatch_disk_usage_success{daemon=\"a\"} 0\n"));
        assert!(!again.contains("dockwatch_disk_usage_bytes"), "{again}");

        // A daemon dropped from the configuration loses its gauge.
        state.retain(&["b"]);
        assert!(!scrape().contains("dockwatch_disk_usage_success{daemon=\"a\""));
    }

    #[test]
    fn process_stats_are_read() {
        let p = read_process_stats().expect("/proc is readable on Linux");
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

        m.observe_api("a", ApiEndpoint::Version, Duration::from_millis(3), None);
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
}
