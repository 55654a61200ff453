//! One task per daemon: every `[poll].interval`, one poll makes a fixed number
//! of Docker calls (version, info, containers, and when due images, dangling
//! images and one per filter group), whatever the number of images or
//! containers, and publishes one immutable snapshot. The image calls run every
//! `[poll].images_interval`, and soon after an image event.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::config::{DaemonConfig, ImageFilterConfig};
use crate::docker::answers::ImageSummary;
use crate::docker::{Connection, DockerError};
use crate::events::ImageEvents;
use crate::labels::ContainerState;
use crate::state::{DaemonInfo, DaemonSnapshot, ImageCount, PollData, State};

/// Everything one daemon's poller needs.
#[derive(Debug, Clone)]
pub struct Poller {
    pub daemon: DaemonConfig,
    pub connection: Connection,
    pub interval: Duration,
    /// While the event stream is followed, the full image listing runs
    /// this often, and soon after an image event; while it is not, every
    /// `interval`.
    pub images_interval: Duration,
    pub filters: Arc<[ImageFilterConfig]>,
    pub state: Arc<State>,
    /// Signalled by the events task on every image event.
    pub image_events: Arc<ImageEvents>,
}

/// Image bursts (a pull, a prune) come as many events; wait this long after
/// the first so one refresh covers them.
const IMAGE_EVENT_COALESCE: Duration = Duration::from_millis(500);

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
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut mem = Memory::default();
        loop {
            // A full poll on the tick; between ticks, only the image calls,
            // soon after an image event.
            let images_only = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                _ = ticker.tick() => false,
                () = self.image_events.changed() => true,
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
                    down_reason: None,
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
                    down_reason: Some(e.reason()),
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
        let every = if self.image_events.following() {
            self.images_interval
        } else {
            self.interval
        };
        let images_due = images_only
            || mem
                .images
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() + self.interval / 2 >= every);
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
    fn unknown_sizes_count_the_image_not_the_bytes() {
        let list = [ImageSummary { size: -1 }, ImageSummary { size: 5 }];
        let t = total(&list);
        assert_eq!((t.count, t.bytes), (2, 5));
        let empty = total(&[]);
        assert_eq!((empty.count, empty.bytes), (0, 0));
        let huge: Vec<_> = (0..3).map(|_| ImageSummary { size: i64::MAX }).collect();
        assert_eq!(total(&huge).bytes, u64::MAX, "saturates, never wraps");
    }

    /// The seeds of the test bed's daemon C (Docker 26, containerd image
    /// store): each image's listed size is its unpacked snapshot plus its
    /// compressed content (3,068,2xx bytes here), which is what
    /// `docker images` shows; `docker image inspect` says 1,065,2xx, the
    /// content alone.
    #[test]
    fn containerd_store_image_lists() {
        let decode = |bytes: &[u8]| -> Vec<ImageSummary> {
            serde_json::from_slice(bytes).expect("an image list")
        };
        let all = total(&decode(include_bytes!(
            "../tests/streams/docker-26-containerd-images.json"
        )));
        assert_eq!((all.count, all.bytes), (9, 27_614_174));
        let dangling = total(&decode(include_bytes!(
            "../tests/streams/docker-26-containerd-images-dangling.json"
        )));
        assert_eq!((dangling.count, dangling.bytes), (3, 9_204_702));
    }
}
