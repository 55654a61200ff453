//! One task per daemon: every `[poll].interval`, one poll makes a fixed number
//! of Docker calls (version, info, containers, and when due images, dangling
//! images and one per filter group), whatever the number of images or
//! containers, and publishes one immutable snapshot. The image calls run every
//! `[poll].images_interval`, and soon after an image event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerSummaryStateEnum, SystemVersion};
use bollard::query_parameters::ListContainersOptions;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;

use crate::config::{DaemonConfig, ImageFilterConfig};
use crate::docker::{self, Client, DockerError};
use crate::metrics::{ApiEndpoint, Metrics};
use crate::state::{ContainerState, DaemonInfo, DaemonSnapshot, ImageCount, PollData, State};

/// Everything one daemon's poller needs.
#[derive(Debug, Clone)]
pub struct Poller {
    pub daemon: DaemonConfig,
    pub interval: Duration,
    /// The full image listing runs this often, or soon after an image event.
    pub images_interval: Duration,
    pub timeout: Duration,
    pub filters: Arc<[ImageFilterConfig]>,
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
    /// Signalled by the events task on every image event.
    pub image_events: Arc<Notify>,
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

/// `podman` if the daemon's version answer names Podman, else `docker`.
fn engine_of(v: &SystemVersion) -> &'static str {
    let podman = |s: &str| s.to_ascii_lowercase().contains("podman");
    let in_components = v.components.iter().flatten().any(|c| podman(&c.name));
    let in_platform = v.platform.as_ref().is_some_and(|p| podman(&p.name));
    if in_components || in_platform {
        "podman"
    } else {
        "docker"
    }
}

fn state_of(s: ContainerSummaryStateEnum) -> Option<ContainerState> {
    use ContainerSummaryStateEnum as S;
    Some(match s {
        S::CREATED => ContainerState::Created,
        // A stopping container is still running until it has stopped.
        S::RUNNING | S::STOPPING => ContainerState::Running,
        S::PAUSED => ContainerState::Paused,
        S::RESTARTING => ContainerState::Restarting,
        S::REMOVING => ContainerState::Removing,
        S::EXITED => ContainerState::Exited,
        S::DEAD => ContainerState::Dead,
        S::EMPTY => return None,
    })
}

/// The one field of an image list entry we need; serde skips the rest
/// without building it, so a listing of thousands of images costs little
/// more than its bytes.
#[derive(Deserialize)]
struct ListedImage {
    #[serde(rename = "Size")]
    size: i64,
}

/// The most an image list answer may take: about 300 bytes per image, so
/// room for some 200,000 images.
const IMAGE_LIST_LIMIT: usize = 64 << 20;

/// Count and total size of a `GET /images/json` answer.
fn total(body: &[u8]) -> Result<ImageCount, DockerError> {
    let list: Vec<ListedImage> = serde_json::from_slice(body)
        .map_err(|e| DockerError::Decode(format!("image list: {e}")))?;
    Ok(list.iter().fold(ImageCount::default(), |mut c, i| {
        c.add(i.size);
        c
    }))
}

/// `/images/json`, with `filters` as the URL-encoded JSON the API takes.
fn image_list_path(filters: Option<&HashMap<String, Vec<String>>>) -> String {
    match filters {
        None => "/images/json".to_owned(),
        Some(f) => {
            let json = serde_json::to_string(f).unwrap_or_default();
            let query = serde_urlencoded::to_string([("filters", json)]).unwrap_or_default();
            format!("/images/json?{query}")
        }
    }
}

/// The poller's memory between polls.
#[derive(Debug, Default)]
struct Memory {
    client: Option<Client>,
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
                    // dockerd answers an expired client certificate with a
                    // bare "bad certificate": look at it ourselves.
                    let expired = match (&e, &self.daemon.tls) {
                        (DockerError::Tls(_), Some(tls)) => docker::client_cert_expired(tls),
                        _ => None,
                    };
                    let error = expired.map_or_else(|| e.to_string(), |x| format!("{x}; {e}"));
                    tracing::warn!(daemon = %self.daemon.name, host = %self.daemon.host, reason = e.reason().as_str(), %error, "daemon is down; retrying every poll");
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

    /// The client, connecting first if needed; a failed connect is counted
    /// against the first call it kept from being made.
    fn client<'a>(&self, slot: &'a mut Option<Client>) -> Result<&'a Client, DockerError> {
        if let Some(c) = slot {
            return Ok(c);
        }
        let connected = docker::connect(&self.daemon, self.timeout)
            .and_then(|d| Ok((d, docker::RawClient::connect_pooled(&self.daemon)?)));
        match connected {
            Ok((d, raw)) => Ok(slot.insert(Client::new(
                &self.daemon,
                d,
                raw,
                self.timeout,
                Arc::clone(&self.metrics),
            ))),
            Err(e) => {
                self.metrics
                    .count_api_error(&self.daemon.name, ApiEndpoint::Version, e.reason());
                Err(e)
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
        let c = self.client(&mut mem.client)?.clone();
        let (core, images) = tokio::join!(
            async {
                if images_only {
                    Ok(None)
                } else {
                    Box::pin(self.core(&c)).await.map(Some)
                }
            },
            async {
                if images_due {
                    self.images(&c).await.map(Some)
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

    async fn core(&self, c: &Client) -> Result<Core, DockerError> {
        let (version, info, containers) = tokio::join!(
            c.call(ApiEndpoint::Version, c.docker.version()),
            c.call(ApiEndpoint::Info, c.docker.info()),
            c.call(
                ApiEndpoint::ContainerList,
                c.docker.list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
            ),
        );
        let (version, info) = (version?, info?);
        let mut counts = [0; ContainerState::ALL.len()];
        for c in containers? {
            if let Some(s) = c.state.and_then(state_of) {
                counts[s as usize] += 1;
            }
        }
        Ok(Core {
            info: DaemonInfo {
                engine: engine_of(&version).to_owned(),
                version: version.version.unwrap_or_default(),
                api_version: version.api_version.unwrap_or_default(),
                min_api_version: version.min_api_version.unwrap_or_default(),
                os: version.os.unwrap_or_default(),
                arch: version.arch.unwrap_or_default(),
                storage_driver: info.driver.unwrap_or_default(),
            },
            containers: counts,
        })
    }

    async fn images(&self, c: &Client) -> Result<ImageTotals, DockerError> {
        let list = |path: String| {
            c.call_raw(ApiEndpoint::ImageList, async move {
                total(&c.raw.get(&path, IMAGE_LIST_LIMIT).await?)
            })
        };
        // One after the other: each listing costs dockerd a walk over every
        // image (~0.1 s of CPU at 2,000 images), and all at once they would
        // take every core of the host the daemon serves for that time.
        let dangling = HashMap::from([("dangling".to_owned(), vec!["true".to_owned()])]);
        let mut out = ImageTotals {
            all: list(image_list_path(None)).await?,
            dangling: list(image_list_path(Some(&dangling))).await?,
            filters: Vec::new(),
            failed_filters: Vec::new(),
        };
        for f in &*self.filters {
            match list(image_list_path(Some(&f.query()))).await {
                Ok(count) => out.filters.push((f.name.clone(), count)),
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
    use bollard::models::{SystemVersionComponents, SystemVersionPlatform};

    #[test]
    fn engine_is_read_from_the_version_answer() {
        let docker = SystemVersion {
            platform: Some(SystemVersionPlatform {
                name: "Docker Engine - Community".into(),
            }),
            ..Default::default()
        };
        assert_eq!(engine_of(&docker), "docker");
        let podman = SystemVersion {
            components: Some(vec![SystemVersionComponents {
                name: "Podman Engine".into(),
                version: "4.3.1".into(),
                details: None,
            }]),
            ..Default::default()
        };
        assert_eq!(engine_of(&podman), "podman");
        assert_eq!(engine_of(&SystemVersion::default()), "docker");
    }

    #[test]
    fn image_lists_are_counted_from_the_size_field_alone() {
        let podman =
            total(include_bytes!("../tests/streams/podman-images.json")).expect("a valid list");
        assert_eq!((podman.count, podman.bytes), (3, 5_993_796));
        let empty = total(b"[]").expect("a valid list");
        assert_eq!((empty.count, empty.bytes), (0, 0));
        // dockerd's "unknown" size counts the image, not the bytes
        let unknown = total(br#"[{"Id":"x","Size":-1},{"Size":5,"Labels":{"a":"b"}}]"#)
            .expect("a valid list");
        assert_eq!((unknown.count, unknown.bytes), (2, 5));
        for bad in [&b"{}"[..], b"[{\"Id\":\"x\"}]", b"[", b"null"] {
            let e = total(bad).expect_err("not an image list");
            assert!(
                matches!(e, DockerError::Decode(ref m) if m.starts_with("image list: ")),
                "{e:?}"
            );
        }
    }

    #[test]
    fn filters_go_in_the_query_as_url_encoded_json() {
        assert_eq!(image_list_path(None), "/images/json");
        let f = HashMap::from([("reference".to_owned(), vec!["ci/*".to_owned()])]);
        assert_eq!(
            image_list_path(Some(&f)),
            "/images/json?filters=%7B%22reference%22%3A%5B%22ci%2F*%22%5D%7D"
        );
    }

    #[test]
    fn container_states_map_onto_the_closed_set() {
        assert_eq!(
            state_of(ContainerSummaryStateEnum::STOPPING),
            Some(ContainerState::Running)
        );
        assert_eq!(
            state_of(ContainerSummaryStateEnum::DEAD),
            Some(ContainerState::Dead)
        );
        assert_eq!(state_of(ContainerSummaryStateEnum::EMPTY), None);
    }
}
