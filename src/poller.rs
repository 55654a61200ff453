//! One task per daemon: every `[poll].interval`, one poll makes a fixed number
//! of Docker calls (version, info, containers, and when due images, dangling
//! images and one per filter group), whatever the number of images or
//! containers, and publishes one immutable snapshot. The image calls run every
//! `[poll].images_interval`, and soon after an image event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;

use crate::config::{DaemonConfig, ImageFilterConfig};
use crate::docker::answers::ImageSummary;
use crate::docker::{Connection, DockerError};
use crate::labels::ContainerState;
use crate::state::{DaemonInfo, DaemonSnapshot, ImageCount, PollData, State};

/// Everything one daemon's poller needs.
#[derive(Debug, Clone)]
pub struct Poller {
    pub daemon: DaemonConfig,
    pub connection: Connection,
    pub interval: Duration,
    /// Wait before the first poll ([`spread`]), so the polls of many daemons
    /// do not all start at once on every tick.
    pub first_poll: Duration,
    /// The full image listing runs this often, or soon after an image event.
    pub images_interval: Duration,
    pub filters: Arc<[ImageFilterConfig]>,
    pub state: Arc<State>,
    /// Signalled by the events task on every image event.
    pub image_events: Arc<Notify>,
}

/// Image bursts (a pull, a prune) come as many events; wait this long after
/// the first so one refresh covers them.
const IMAGE_EVENT_COALESCE: Duration = Duration::from_millis(500);

/// The most daemons whose first polls start per [`SPREAD_SLOT`]: a few
/// daemons still start within a fraction of a second, a fleet spreads over
/// the whole interval.
const SPREAD_SLOT: Duration = Duration::from_millis(50);

/// How long daemon `index` of `count` waits before its first poll: the
/// daemons' first polls are spread evenly over `count` slots of 50 ms, or over
/// the whole `interval` when they are more. Ticks then keep their phase, so a
/// thousand daemons on a 15 s interval poll about 67 a second, rather than
/// all at once on every tick (each daemon's calls, and the scrapes at that
/// moment, would wait on the others').
pub fn spread(index: usize, count: usize, interval: Duration) -> Duration {
    let count = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    let index = u32::try_from(index).unwrap_or(u32::MAX).min(count - 1);
    let window = interval.min(SPREAD_SLOT.saturating_mul(count));
    window / count * index
}

/// What the image calls of a poll found.
#[derive(Debug, Clone)]
struct ImageTotals {
    all: ImageCount,
    dangling: ImageCount,
    filters: Vec<(String, ImageCount)>,
    /// Groups the daemon refused, with its answer (for the log).
    failed_filters: Vec<(String, DockerError)>,
}

/// What the other calls of a poll found.
#[derive(Debug, Clone)]
struct Core {
    info: DaemonInfo,
    containers: [u64; ContainerState::ALL.len()],
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Count and total size of an image list.
fn total(list: &[ImageSummary]) -> ImageCount {
    list.iter().fold(ImageCount::default(), |mut c, i| {
        c.add(i.size);
        c
    })
}

/// The poller's memory between polls.
#[derive(Debug, Default)]
struct Memory {
    last_success: Option<f64>,
    info: Option<DaemonInfo>,
    was_up: Option<bool>,
    core: Option<Core>,
    images: Option<(ImageTotals, Instant)>,
}

impl Poller {
    /// Polls until `shutdown` changes (or its sender goes away).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + self.first_poll, self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut mem = Memory::default();
        loop {
            // A full poll on the tick; between ticks, only the image calls,
            // soon after an image event.
            let images_only = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                _ = ticker.tick() => false,
                () = self.image_events.notified() => true,
            };
            if images_only {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(IMAGE_EVENT_COALESCE) => {}
                }
                if mem.core.is_none() {
                    continue;
                }
            }
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                r = self.poll(&mut mem, images_only) => r,
            };
            let snapshot = self.account(&mut mem, result, started.elapsed().as_secs_f64());
            self.state.publish(&self.daemon.name, snapshot);
        }
    }

    /// Turns a poll's result into a snapshot, logging changes of state.
    fn account(
        &self,
        mem: &mut Memory,
        result: Result<(), DockerError>,
        poll_duration: f64,
    ) -> DaemonSnapshot {
        let found = result.and_then(|()| match (&mem.core, &mem.images) {
            (Some(core), Some((images, _))) => Ok((core.clone(), images.clone())),
            _ => Err(DockerError::Connect("no complete poll yet".into())),
        });
        match found {
            Ok((core, images)) => {
                if mem.was_up != Some(true) {
                    tracing::info!(
                        daemon = %self.daemon.name,
                        host = %self.daemon.host,
                        engine = %core.info.engine,
                        version = %core.info.version,
                        api_version = %core.info.api_version,
                        "daemon is up"
                    );
                }
                mem.was_up = Some(true);
                mem.last_success = Some(unix_now());
                mem.info = Some(core.info);
                DaemonSnapshot {
                    last_success: mem.last_success,
                    poll_duration,
                    info: mem.info.clone(),
                    data: Some(PollData {
                        images: images.all,
                        dangling: images.dangling,
                        filters: images.filters,
                        containers: core.containers,
                    }),
                    failed_filters: images.failed_filters.into_iter().map(|(f, _)| f).collect(),
                }
            }
            Err(e) => {
                if mem.was_up != Some(false) {
                    tracing::warn!(daemon = %self.daemon.name, host = %self.daemon.host, reason = e.reason().as_str(), error = %e, "daemon is down; retrying every poll");
                }
                mem.was_up = Some(false);
                // After a failure every number is fetched afresh.
                mem.core = None;
                mem.images = None;
                DaemonSnapshot {
                    last_success: mem.last_success,
                    poll_duration,
                    info: mem.info.clone(),
                    data: None,
                    failed_filters: Vec::new(),
                }
            }
        }
    }

    /// One poll: the core calls unless `images_only`, and the image calls
    /// when they are due (or `images_only`), side by side. Updates `mem`.
    async fn poll(&self, mem: &mut Memory, images_only: bool) -> Result<(), DockerError> {
        // `at` is when the last listing started, on a tick; rounding to the
        // nearest tick keeps a listing that took a while from pushing the
        // next one a whole interval later.
        let images_due = images_only
            || mem
                .images
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() + self.interval / 2 >= self.images_interval);
        let images_started = Instant::now();
        let c = &self.connection;
        c.negotiate().await?;
        let (core, images) = tokio::join!(
            async {
                if images_only {
                    Ok(None)
                } else {
                    Box::pin(self.core(c)).await.map(Some)
                }
            },
            async {
                if images_due {
                    self.images(c).await.map(Some)
                } else {
                    Ok(None)
                }
            },
        );
        if let Some(core) = core? {
            mem.core = Some(core);
        }
        if let Some(images) = images? {
            // Each group is logged when it starts failing, not every poll.
            let before = mem
                .images
                .as_ref()
                .map_or(&[][..], |(old, _)| &old.failed_filters);
            let listed = |l: &[(String, DockerError)], f: &str| l.iter().any(|(x, _)| x == f);
            for (filter, e) in &images.failed_filters {
                if !listed(before, filter) {
                    tracing::warn!(daemon = %self.daemon.name, %filter, error = %e, "the daemon refused a filter group's query: dockwatch_image_filter_success is 0 and its series are left out until it works");
                }
            }
            for (filter, _) in before {
                if !listed(&images.failed_filters, filter) {
                    tracing::info!(daemon = %self.daemon.name, %filter, "filter group's query works again");
                }
            }
            mem.images = Some((images, images_started));
        }
        Ok(())
    }

    async fn core(&self, c: &Connection) -> Result<Core, DockerError> {
        let (version, info, containers) = tokio::join!(c.version(), c.info(), c.containers());
        let (version, info) = (version?, info?);
        let mut counts = [0; ContainerState::ALL.len()];
        for c in containers? {
            if let Some(s) = c.state.as_deref().and_then(ContainerState::parse) {
                counts[s as usize] += 1;
            }
        }
        Ok(Core {
            info: DaemonInfo {
                engine: version.engine().to_owned(),
                version: version.version.unwrap_or_default(),
                api_version: version.api_version.unwrap_or_default(),
                min_api_version: version.min_api_version.unwrap_or_default(),
                negotiated_api_version: c.api_version().map(|v| v.to_string()).unwrap_or_default(),
                os: version.os.unwrap_or_default(),
                arch: version.arch.unwrap_or_default(),
                storage_driver: info.driver.unwrap_or_default(),
            },
            containers: counts,
        })
    }

    async fn images(&self, c: &Connection) -> Result<ImageTotals, DockerError> {
        // One after the other: each listing costs dockerd a walk over every
        // image (~0.1 s of CPU at 2,000 images), and all at once they would
        // take every core of the host the daemon serves for that time.
        let dangling = BTreeMap::from([("dangling".to_owned(), vec!["true".to_owned()])]);
        let mut out = ImageTotals {
            all: total(&c.images(None).await?),
            dangling: total(&c.images(Some(&dangling)).await?),
            filters: Vec::new(),
            failed_filters: Vec::new(),
        };
        for f in &*self.filters {
            match c.images(Some(&f.query())).await {
                Ok(list) => out.filters.push((f.name.clone(), total(&list))),
                // A filter the daemon refuses (or answers oddly) must not
                // take the whole daemon down...
                Err(e @ (DockerError::Http { .. } | DockerError::Decode(_))) => {
                    out.failed_filters.push((f.name.clone(), e));
                }
                // ...but a daemon that stopped answering fails the poll now,
                // rather than after one timeout per remaining group.
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_polls_are_spread_evenly() {
        let i = Duration::from_secs(15);
        // One daemon starts at once; a few within their slots.
        assert_eq!(spread(0, 1, i), Duration::ZERO);
        assert_eq!(spread(1, 4, i), Duration::from_millis(50));
        assert_eq!(spread(3, 4, i), Duration::from_millis(150));
        // A fleet spreads over the whole interval, evenly.
        assert_eq!(spread(0, 1000, i), Duration::ZERO);
        assert_eq!(spread(500, 1000, i), Duration::from_millis(7500));
        assert_eq!(spread(999, 1000, i), Duration::from_millis(14_985));
        // Nonsense stays inside the interval.
        assert_eq!(spread(5, 0, i), Duration::ZERO);
        assert!(spread(usize::MAX, 1000, i) < i);
    }

    #[test]
    fn unknown_sizes_count_the_image_not_the_bytes() {
        let list = [ImageSummary { size: -1 }, ImageSummary { size: 5 }];
        let t = total(&list);
        assert_eq!((t.count, t.bytes), (2, 5));
        let empty = total(&[]);
        assert_eq!((empty.count, empty.bytes), (0, 0));
    }
}
