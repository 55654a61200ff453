//! One task per daemon: every `[poll].interval`, one poll makes a fixed number
//! of Docker calls (version, info, containers, and when due images, dangling
//! images and one per filter group), whatever the number of images or
//! containers, and publishes one immutable snapshot. The image calls run every
//! `[poll].images_interval`, and soon after an image event.
//!
//! The same lists tell the container signals: each running container's health
//! (dockerd writes it into the list's `Status` text; Podman does not, so on
//! Podman three more container lists count each health by the `health`
//! filter), and whether it runs an older image than its tag names now (the
//! image list's tags against the container's image). dockerd shows a
//! container's image ID instead of its tag once the tag moved, so the tag is
//! remembered from earlier polls, or read once per container with an inspect
//! when dockwatch never saw it (at most [`MAX_INSPECTS_PER_POLL`] a poll).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::clock::unix_now;
use crate::config::{DaemonConfig, ImageFilterConfig};
use crate::docker::{Connection, ContainerSummary, DockerError, ImageSummary, TaggedImage};
use crate::folds::outdated::{RunningContainer, Tags, tag_key};
use crate::folds::reference::ImageRef;
use crate::labels::{ContainerState, HealthStatus};
use crate::state::{ContainerSignals, DaemonInfo, DaemonSnapshot, ImageCount, PollData, State};
use crate::tasks::image_events::ImageEvents;

/// Everything one daemon's poller needs.
#[derive(Debug, Clone)]
pub struct Poller {
    pub daemon: DaemonConfig,
    pub connection: Connection,
    pub interval: Duration,
    /// Wait before the first poll ([`spread`]), so the polls of many daemons
    /// do not all start at once on every tick.
    pub first_poll: Duration,
    /// While the event stream is followed, the full image listing runs
    /// this often, and soon after an image event; while it is not, every
    /// `interval`.
    pub images_interval: Duration,
    pub filters: Arc<[ImageFilterConfig]>,
    /// The pre-pull images configured for this daemon: their outdated
    /// containers are counted one by one.
    pub images: Vec<ImageRef>,
    pub state: Arc<State>,
    /// Signalled by the events task on every image event.
    pub image_events: Arc<ImageEvents>,
}

/// Running containers whose list entry shows their image ID rather than a
/// reference (dockerd, once the tag moved) and that dockwatch has not seen
/// before are inspected once each, at most this many a poll: a dockwatch
/// started beside hundreds of them catches up over a few polls instead of
/// sending hundreds of calls at once.
pub const MAX_INSPECTS_PER_POLL: usize = 10;

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
    /// The image each tag names (shared: the snapshot of each poll reads
    /// it, and it is only made anew with the image list).
    tags: Arc<Tags>,
}

/// What the other calls of a poll found.
#[derive(Debug, Clone)]
struct Core {
    info: DaemonInfo,
    containers: [u64; ContainerState::ALL.len()],
    /// Running containers by health, indexed by `HealthStatus as usize`.
    health: [u64; HealthStatus::ALL.len()],
    running: Vec<RunningContainer>,
}

/// Count and total size of an image list.
fn total(list: &[ImageSummary]) -> ImageCount {
    list.iter().fold(ImageCount::default(), |mut c, i| {
        c.add(i.size);
        c
    })
}

/// Count and total size of the full image list.
fn tagged_total(list: &[TaggedImage]) -> ImageCount {
    list.iter().fold(ImageCount::default(), |mut c, i| {
        c.add(i.size);
        c
    })
}

/// A running container's health: the list's `Health` object where the API
/// has it (1.52 on), else what dockerd writes into its `Status` text.
fn container_health(c: &ContainerSummary) -> HealthStatus {
    c.health
        .as_ref()
        .and_then(|h| h.status.as_deref())
        .and_then(HealthStatus::parse)
        .unwrap_or_else(|| HealthStatus::from_status_text(c.status.as_deref().unwrap_or_default()))
}

/// The reference a running container was created from, as far as its list
/// entry tells: `Some` when it shows one, `None` when it shows its image ID
/// (dockerd does once the reference names another image, and for a
/// container created from the full ID).
fn listed_reference(c: &ContainerSummary) -> Option<&str> {
    match (c.image.as_deref(), c.image_id.as_deref()) {
        (Some(image), Some(id)) if image != id => Some(image),
        (Some(image), None) => Some(image),
        _ => None,
    }
}

/// The poller's memory between polls.
#[derive(Debug, Default)]
struct Memory {
    last_success: Option<f64>,
    info: Option<DaemonInfo>,
    was_up: Option<bool>,
    core: Option<Core>,
    images: Option<(ImageTotals, Instant)>,
    /// The reference each running container was created from, by container
    /// id, as its list entry showed it or an inspect said (`None`: not
    /// known, and not asked again). Only running containers are kept.
    references: HashMap<String, Option<String>>,
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
                let signals = self.signals(&core, &images.tags);
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
                        signals,
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
        let references = &mut mem.references;
        let (core, images) = tokio::join!(
            async {
                if images_only {
                    Ok(None)
                } else {
                    Box::pin(self.core(c, references)).await.map(Some)
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

    async fn core(
        &self,
        c: &Connection,
        references: &mut HashMap<String, Option<String>>,
    ) -> Result<Core, DockerError> {
        let (version, info, containers) = tokio::join!(c.version(), c.info(), c.containers());
        let (version, info, containers) = (version?, info?, containers?);
        let mut counts = [0; ContainerState::ALL.len()];
        let mut health = [0; HealthStatus::ALL.len()];
        // Podman 4 leaves the health out of the list: its filter tells.
        let health_from_list = version.engine() != "podman";
        let mut running = Vec::new();
        for c in &containers {
            let Some(s) = c.state.as_deref().and_then(ContainerState::parse) else {
                continue;
            };
            counts[s as usize] += 1;
            if s != ContainerState::Running {
                continue;
            }
            if health_from_list {
                health[container_health(c) as usize] += 1;
            }
            running.push(c);
        }
        if !health_from_list {
            let mut known = 0;
            for h in [
                HealthStatus::Healthy,
                HealthStatus::Unhealthy,
                HealthStatus::Starting,
            ] {
                health[h as usize] = c.running_with_health(h).await?;
                known += health[h as usize];
            }
            health[HealthStatus::None as usize] = (running.len() as u64).saturating_sub(known);
        }
        let running = self.references(c, &running, references).await?;
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
            health,
            running,
        })
    }

    /// The tag and image of each running container. The reference comes
    /// from the list entry, else from `references` (what earlier polls saw),
    /// else from one inspect, for at most [`MAX_INSPECTS_PER_POLL`]
    /// containers a poll (the rest are not counted until their turn).
    /// `references` keeps exactly the running containers afterwards.
    async fn references(
        &self,
        c: &Connection,
        running: &[&ContainerSummary],
        references: &mut HashMap<String, Option<String>>,
    ) -> Result<Vec<RunningContainer>, DockerError> {
        let mut known = HashMap::with_capacity(running.len());
        let mut inspects = 0;
        let mut out = Vec::with_capacity(running.len());
        for r in running {
            let (Some(id), Some(image_id)) = (r.id.as_deref(), r.image_id.as_deref()) else {
                continue;
            };
            // `references` is only replaced at the end: a poll that fails
            // half-way forgets nothing.
            let reference = match (listed_reference(r), references.get(id).cloned()) {
                (Some(listed), _) => Some(listed.to_owned()),
                (None, Some(remembered)) => remembered,
                (None, None) if inspects < MAX_INSPECTS_PER_POLL => {
                    inspects += 1;
                    match c.container_image(id).await {
                        Ok(found) => found,
                        // Refused or odd: not known, and not asked again.
                        Err(e @ (DockerError::Http { .. } | DockerError::Decode(_))) => {
                            tracing::debug!(daemon = %self.daemon.name, container = %id, error = %e, "cannot tell which reference the container was created from; it is not counted as outdated");
                            None
                        }
                        Err(e) => return Err(e),
                    }
                }
                (None, None) => {
                    // Its turn comes in a later poll.
                    out.push(RunningContainer {
                        tag: None,
                        image_id: image_id.to_owned(),
                    });
                    continue;
                }
            };
            out.push(RunningContainer {
                tag: reference.as_deref().and_then(tag_key),
                image_id: image_id.to_owned(),
            });
            known.insert(id.to_owned(), reference);
        }
        *references = known;
        Ok(out)
    }

    /// The container signals of a poll: health as listed, and outdated
    /// containers against the latest image list's tags.
    fn signals(&self, core: &Core, tags: &Tags) -> ContainerSignals {
        let images: Vec<(String, Option<String>)> = self
            .images
            .iter()
            .map(|i| {
                let label = i.to_string();
                let key = tag_key(&label);
                (label, key)
            })
            .collect();
        let (outdated, outdated_by_image) =
            crate::folds::outdated::count(&core.running, tags, &images);
        ContainerSignals {
            health: core.health,
            outdated,
            outdated_by_image,
        }
    }

    async fn images(&self, c: &Connection) -> Result<ImageTotals, DockerError> {
        // One after the other: each listing costs dockerd a walk over every
        // image (~0.1 s of CPU at 2,000 images), and all at once they would
        // take every core of the host the daemon serves for that time.
        let dangling = BTreeMap::from([("dangling".to_owned(), vec!["true".to_owned()])]);
        let all = c.tagged_images().await?;
        let mut out = ImageTotals {
            all: tagged_total(&all),
            tags: Arc::new(Tags::from_images(all.iter().map(|i| {
                (
                    i.id.as_deref().unwrap_or_default(),
                    i.repo_tags.iter().flatten(),
                )
            }))),
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
            "../../tests/streams/docker-26-containerd-images.json"
        )));
        assert_eq!((all.count, all.bytes), (9, 27_614_174));
        let dangling = total(&decode(include_bytes!(
            "../../tests/streams/docker-26-containerd-images-dangling.json"
        )));
        assert_eq!((dangling.count, dangling.bytes), (3, 9_204_702));
    }

    fn entry(json: &str) -> ContainerSummary {
        serde_json::from_str(json).expect("a container list entry")
    }

    #[test]
    fn health_from_the_list() {
        // dockerd up to API 1.51: the Status text.
        let e = entry(r#"{"State":"running","Status":"Up 4 seconds (unhealthy)"}"#);
        assert_eq!(container_health(&e), HealthStatus::Unhealthy);
        let e = entry(r#"{"State":"running","Status":"Up 4 seconds (health: starting)"}"#);
        assert_eq!(container_health(&e), HealthStatus::Starting);
        let e = entry(r#"{"State":"running","Status":"Up About a minute"}"#);
        assert_eq!(container_health(&e), HealthStatus::None);
        // API 1.52: the Health object wins over the text.
        let e = entry(
            r#"{"State":"running","Status":"Up 5 minutes (healthy)","Health":{"Status":"unhealthy","FailingStreak":4}}"#,
        );
        assert_eq!(container_health(&e), HealthStatus::Unhealthy);
        let e = entry(r#"{"State":"running","Status":"Up 1 second","Health":{"Status":"none"}}"#);
        assert_eq!(container_health(&e), HealthStatus::None);
        let e = entry(r#"{"State":"running","Health":{"Status":"bogus"}}"#);
        assert_eq!(container_health(&e), HealthStatus::None);
    }

    /// The API 1.52 list (tests/streams/api-1.52-containers.json): health
    /// from the `Health` objects of the running containers.
    #[test]
    fn api_1_52_health_objects() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/streams/api-1.52-containers.json"
        );
        let list: Vec<ContainerSummary> =
            serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("a list");
        let running: Vec<HealthStatus> = list
            .iter()
            .filter(|c| c.state.as_deref() == Some("running"))
            .map(container_health)
            .collect();
        assert_eq!(running, [HealthStatus::Healthy, HealthStatus::Unhealthy]);
        assert!(list.iter().all(|c| listed_reference(c).is_some()));
    }

    #[test]
    fn a_reference_is_listed_unless_the_image_id_stands_in() {
        let id = "sha256:68ecf1b712a8696cd0e3f1ce9ce354bff5d65c9dcf9991d50196fd05be6ac984";
        // As dockerd 20.10 listed them: created from a tag that still
        // names the image, from a tag that moved, and from the full ID.
        let current = entry(&format!(r#"{{"Image":"sigx/app:1","ImageID":"{id}"}}"#));
        assert_eq!(listed_reference(&current), Some("sigx/app:1"));
        let moved = entry(&format!(r#"{{"Image":"{id}","ImageID":"{id}"}}"#));
        assert_eq!(listed_reference(&moved), None);
        let short = entry(&format!(r#"{{"Image":"68ecf1b712a8","ImageID":"{id}"}}"#));
        assert_eq!(listed_reference(&short), Some("68ecf1b712a8"));
        // A short ID read as a name is a tag no image has: never outdated.
        assert_eq!(
            tag_key("68ecf1b712a8").as_deref(),
            Some("docker.io/library/68ecf1b712a8:latest")
        );
        assert_eq!(listed_reference(&entry("{}")), None);
    }
}
