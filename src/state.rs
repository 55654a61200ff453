//! The latest snapshot of every daemon. Pollers replace a daemon's snapshot
//! whole; `/metrics` and the landing page only read. The lock is a std lock,
//! held for a map lookup or insert and never across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use crate::docker::df::DiskUsage;
use crate::folds::progress::{Layer, Progress, Totals};
use crate::labels::{
    CheckFailure, CheckResult, ContainerState, ErrorReason, FailReason, HealthStatus, PullResult,
};

/// What one poll of one daemon found. Immutable once published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSnapshot {
    /// Unix time of the end of the last poll that succeeded.
    pub last_success: Option<f64>,
    /// How long the last poll took, in seconds.
    pub poll_duration: f64,
    /// What the daemon last said about itself; kept while it is down so a
    /// dashboard can still tell which version went away.
    pub info: Option<DaemonInfo>,
    /// `Some` only if the last poll succeeded: a failed poll publishes no
    /// numbers rather than stale ones.
    pub data: Option<PollData>,
    /// Filter groups whose own query failed in an otherwise good poll.
    pub failed_filters: Vec<String>,
    /// Why the last poll failed, when it did.
    pub down_reason: Option<ErrorReason>,
}

impl DaemonSnapshot {
    pub fn up(&self) -> bool {
        self.data.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonInfo {
    /// `docker` or `podman`.
    pub engine: String,
    pub version: String,
    pub api_version: String,
    pub min_api_version: String,
    /// The version dockwatch speaks to it (the `/vX.Y` of every request).
    pub negotiated_api_version: String,
    pub os: String,
    pub arch: String,
    pub storage_driver: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageCount {
    pub count: u64,
    pub bytes: u64,
}

impl ImageCount {
    pub fn add(&mut self, bytes: i64) {
        self.count += 1;
        // A negative size is the daemon's "unknown"; it adds nothing.
        // Saturating: a hostile list cannot wrap the total around.
        self.bytes = self.bytes.saturating_add(u64::try_from(bytes).unwrap_or(0));
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollData {
    pub images: ImageCount,
    pub dangling: ImageCount,
    /// Per configured filter group, in config order.
    pub filters: Vec<(String, ImageCount)>,
    /// Indexed by `ContainerState as usize`.
    pub containers: [u64; ContainerState::ALL.len()],
    pub signals: ContainerSignals,
}

/// What a poll tells of the running containers beyond their number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSignals {
    /// Running containers by health, indexed by `HealthStatus as usize`.
    pub health: [u64; HealthStatus::ALL.len()],
    /// Running containers whose tag now names another image.
    pub outdated: u64,
    /// The same, per configured pre-pull image (its label), in config order.
    pub outdated_by_image: Vec<(String, u64)>,
}

#[derive(Debug, Default)]
struct Entry {
    /// `None` until the first poll finished, good or bad.
    snapshot: Option<Arc<DaemonSnapshot>>,
}

/// Latest snapshots, keyed by daemon name.
#[derive(Debug, Default)]
pub struct State {
    daemons: RwLock<BTreeMap<String, Entry>>,
    /// From `/system/df`, on its own schedule; why it failed while it fails.
    disks: RwLock<BTreeMap<String, Result<DiskUsage, ErrorReason>>>,
    /// Bumped by every change, so `/metrics` can reuse its last body.
    version: AtomicU64,
}

impl State {
    /// A state that expects these daemons; `/-/ready` waits for all of them.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            daemons: RwLock::new(
                names
                    .into_iter()
                    .map(|n| (n.to_owned(), Entry::default()))
                    .collect(),
            ),
            disks: RwLock::default(),
            version: AtomicU64::new(0),
        }
    }

    /// Changes whenever anything in the state does.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Keeps exactly these daemons: the others and their snapshots go, new
    /// ones wait for their first poll.
    pub fn retain(&self, names: &[&str]) {
        {
            let mut map = self.daemons.write().unwrap_or_else(PoisonError::into_inner);
            map.retain(|k, _| names.contains(&k.as_str()));
            for n in names {
                map.entry((*n).to_owned()).or_default();
            }
        }
        let mut disks = self.disks.write().unwrap_or_else(PoisonError::into_inner);
        disks.retain(|k, _| names.contains(&k.as_str()));
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The outcome of a daemon's last `/system/df`: the usage, or why the
    /// call failed.
    pub fn publish_disk(&self, daemon: &str, usage: Result<DiskUsage, ErrorReason>) {
        let mut map = self.disks.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(daemon.to_owned(), usage);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Each daemon's last `/system/df`: `None` if it failed.
    pub fn disks(&self) -> Vec<(String, Option<DiskUsage>)> {
        let map = self.disks.read().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.ok())).collect()
    }

    pub fn publish(&self, daemon: &str, snapshot: DaemonSnapshot) {
        // A poisoned lock only means a reader panicked; the map is still whole.
        let mut map = self.daemons.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(daemon.to_owned()).or_default().snapshot = Some(Arc::new(snapshot));
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Every daemon in name order, with its snapshot if it was polled yet.
    pub fn snapshots(&self) -> Vec<(String, Option<Arc<DaemonSnapshot>>)> {
        let map = self.daemons.read().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(k, v)| (k.clone(), v.snapshot.clone()))
            .collect()
    }

    pub fn get(&self, daemon: &str) -> Option<Arc<DaemonSnapshot>> {
        let map = self.daemons.read().unwrap_or_else(PoisonError::into_inner);
        map.get(daemon).and_then(|e| e.snapshot.clone())
    }

    /// Whether `daemon` is one dockwatch watches (configured or discovered).
    pub fn knows(&self, daemon: &str) -> bool {
        let map = self.daemons.read().unwrap_or_else(PoisonError::into_inner);
        map.contains_key(daemon)
    }

    /// True once every daemon finished its first poll, good or bad.
    pub fn ready(&self) -> bool {
        let map = self.daemons.read().unwrap_or_else(PoisonError::into_inner);
        map.values().all(|e| e.snapshot.is_some())
    }
}

/// A pull that is running now.
#[derive(Debug, Clone)]
pub struct RunningPull {
    /// Unix time it started.
    pub started: f64,
    pub progress: Progress,
}

/// How the last pull of an image ended.
#[derive(Debug, Clone)]
pub struct FinishedPull {
    pub started: f64,
    pub finished: f64,
    pub duration_seconds: f64,
    pub result: PullResult,
    pub reason: Option<FailReason>,
    /// Canceled for making no progress for `stall_timeout`.
    pub stalled: bool,
    /// What the daemon or registry said, for a failure.
    pub message: Option<String>,
    pub digest: Option<String>,
    pub totals: Totals,
    pub layers: Vec<Layer>,
}

/// The last registry check of an image: the registry's digest of the tag
/// (asked through the daemon) against the digests the local image was
/// pulled by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryCheck {
    /// Unix time of the check.
    pub checked: f64,
    /// `None` when there was nothing to compare: the image is not on the
    /// daemon, or was not pulled from a registry (built or loaded there).
    pub result: Option<CheckResult>,
    pub reason: Option<CheckFailure>,
    /// Why it failed, or why there was nothing to compare.
    pub message: Option<String>,
    /// What the tag points at in the registry (an index for a
    /// multi-platform image), as of the last check that reached it.
    pub registry_digest: Option<String>,
    pub media_type: Option<String>,
    /// The digests the local image was pulled by from that repository.
    pub local_digests: Vec<String>,
    /// From the last check that compared; kept through failed checks, and
    /// `None` while unknown: never compared, or a pull has changed the local
    /// image since (the check is then redone at once).
    pub update_available: Option<bool>,
}

/// Everything known about one configured image on one daemon.
#[derive(Debug, Clone, Default)]
pub struct ImagePulls {
    pub running: Option<RunningPull>,
    pub last: Option<FinishedPull>,
    /// Whether the image is on the daemon, as last checked.
    pub present: Option<bool>,
    /// Unix time of the end of the last pull that ended well.
    pub last_success: Option<f64>,
    /// The last registry check; `None` before the first (or with checks off).
    pub check: Option<RegistryCheck>,
    /// A pull changed the local image after the last check: check again.
    pub recheck: bool,
}

/// Daemon -> configured image -> its pulls. Written by the pullers, read by
/// `/metrics`, `/pulls` and the landing page.
#[derive(Debug, Default)]
pub struct PullBoard {
    daemons: RwLock<BTreeMap<String, BTreeMap<String, ImagePulls>>>,
    /// Per daemon with pre-pulls: whether a pre-pull window is open (true
    /// when none are configured), as its puller last saw.
    windows: RwLock<BTreeMap<String, bool>>,
    /// Bumped by every change, so `/metrics` can reuse its last body.
    version: AtomicU64,
}

impl PullBoard {
    /// A board listing each daemon's configured images.
    pub fn new(images: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        Self {
            daemons: RwLock::new(
                images
                    .into_iter()
                    .map(|(d, imgs)| {
                        (
                            d,
                            imgs.into_iter()
                                .map(|i| (i, ImagePulls::default()))
                                .collect(),
                        )
                    })
                    .collect(),
            ),
            windows: RwLock::default(),
            version: AtomicU64::new(0),
        }
    }

    /// Changes whenever anything on the board does.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Keeps exactly these daemons and images, with what is known of those
    /// that stay.
    pub fn reset(&self, images: Vec<(String, Vec<String>)>) {
        {
            let mut windows = self.windows.write().unwrap_or_else(PoisonError::into_inner);
            windows.retain(|d, _| images.iter().any(|(k, _)| k == d));
        }
        let mut map = self.daemons.write().unwrap_or_else(PoisonError::into_inner);
        let mut old = std::mem::take(&mut *map);
        for (daemon, imgs) in images {
            let mut kept = old.remove(&daemon).unwrap_or_default();
            let entry = map.entry(daemon).or_default();
            for image in imgs {
                let pulls = kept.remove(&image).unwrap_or_default();
                entry.insert(image, pulls);
            }
        }
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes one image's entry under the lock (never held across `.await`).
    pub fn update<R>(&self, daemon: &str, image: &str, f: impl FnOnce(&mut ImagePulls) -> R) -> R {
        let mut map = self.daemons.write().unwrap_or_else(PoisonError::into_inner);
        let r = f(map
            .entry(daemon.to_owned())
            .or_default()
            .entry(image.to_owned())
            .or_default());
        // Bumped under the lock: a reader that sees the new version also
        // sees the change.
        self.version.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Whether a pre-pull window is open for `daemon`'s puller now.
    pub fn set_window_open(&self, daemon: &str, open: bool) {
        let mut windows = self.windows.write().unwrap_or_else(PoisonError::into_inner);
        if windows.insert(daemon.to_owned(), open) != Some(open) {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Each daemon with a running puller: whether a pre-pull window is open.
    pub fn windows(&self) -> Vec<(String, bool)> {
        let windows = self.windows.read().unwrap_or_else(PoisonError::into_inner);
        windows.iter().map(|(d, o)| (d.clone(), *o)).collect()
    }

    /// Reads the whole board under the lock.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&BTreeMap<String, BTreeMap<String, ImagePulls>>) -> R,
    ) -> R {
        let map = self.daemons.read().unwrap_or_else(PoisonError::into_inner);
        f(&map)
    }
}

/// What pre-pulls and pruning remember of each daemon across reloads (not
/// across restarts): the image each pre-pull reference named when a pull of
/// it began and ended, so the pruner keeps an image a pull may just have
/// moved a tag off for `older_than` from then (its `Created` can be years
/// old); and when the last prune round began, so a reload keeps the schedule.
#[derive(Debug, Default)]
pub struct PruneMemory {
    daemons: Mutex<BTreeMap<String, DaemonPruneMemory>>,
}

#[derive(Debug, Default)]
struct DaemonPruneMemory {
    /// Image id -> the last Unix time a pre-pull reference named it.
    named: HashMap<String, f64>,
    last_round: Option<Instant>,
}

impl PruneMemory {
    fn with<R>(&self, daemon: &str, f: impl FnOnce(&mut DaemonPruneMemory) -> R) -> R {
        let mut map = self.daemons.lock().unwrap_or_else(PoisonError::into_inner);
        f(map.entry(daemon.to_owned()).or_default())
    }

    /// A pre-pull reference named image `id` at Unix time `at`.
    pub fn named_by_prepull(&self, daemon: &str, id: &str, at: f64) {
        self.with(daemon, |m| {
            let t = m.named.entry(id.to_owned()).or_insert(at);
            *t = t.max(at);
        });
    }

    /// The images a pre-pull reference named at `since` or later; older
    /// entries are forgotten, which bounds the memory.
    pub fn named_since(&self, daemon: &str, since: f64) -> BTreeSet<String> {
        self.with(daemon, |m| {
            m.named.retain(|_, at| *at >= since);
            m.named.keys().cloned().collect()
        })
    }

    pub fn round_started(&self, daemon: &str, at: Instant) {
        self.with(daemon, |m| m.last_round = Some(at));
    }

    pub fn last_round(&self, daemon: &str) -> Option<Instant> {
        self.with(daemon, |m| m.last_round)
    }

    /// Keeps only these daemons.
    pub fn retain(&self, names: &[&str]) {
        let mut map = self.daemons.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|k, _| names.contains(&k.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_waits_for_every_daemon() {
        let state = State::new(["a", "b"]);
        assert!(!state.ready());
        state.publish("a", DaemonSnapshot::default());
        assert!(!state.ready());
        state.publish("b", DaemonSnapshot::default());
        assert!(state.ready());
        let names: Vec<_> = state.snapshots().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn prune_memory_keeps_what_pre_pulls_named_recently() {
        let m = PruneMemory::default();
        m.named_by_prepull("a", "sha256:old", 100.0);
        m.named_by_prepull("a", "sha256:new", 200.0);
        // A later pull of the same tag refreshes the time.
        m.named_by_prepull("a", "sha256:old", 150.0);
        m.named_by_prepull("b", "sha256:other", 300.0);
        assert_eq!(
            m.named_since("a", 120.0),
            BTreeSet::from(["sha256:old".to_owned(), "sha256:new".to_owned()])
        );
        assert_eq!(
            m.named_since("a", 160.0),
            BTreeSet::from(["sha256:new".to_owned()])
        );
        // Forgotten once older than asked for.
        assert_eq!(
            m.named_since("a", 0.0),
            BTreeSet::from(["sha256:new".to_owned()])
        );
        assert!(m.last_round("a").is_none());
        let now = Instant::now();
        m.round_started("a", now);
        assert_eq!(m.last_round("a"), Some(now));
        m.retain(&["b"]);
        assert!(m.last_round("a").is_none());
        assert_eq!(m.named_since("b", 0.0).len(), 1);
    }

    #[test]
    fn negative_sizes_add_nothing() {
        let mut c = ImageCount::default();
        c.add(10);
        c.add(-1);
        assert_eq!(
            c,
            ImageCount {
                count: 2,
                bytes: 10
            }
        );
    }
}
