//! One task per daemon: every `[poll].interval`, one poll makes a fixed number
//! of Docker calls (version, info, images, dangling images, one per filter
//! group, containers), whatever the number of images or containers, and
//! publishes one immutable snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerSummaryStateEnum, SystemVersion};
use bollard::query_parameters::{ListContainersOptions, ListImagesOptions};
use futures_util::future::join_all;
use tokio::sync::watch;
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
    pub timeout: Duration,
    pub filters: Arc<[ImageFilterConfig]>,
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
}

/// What a good poll found.
struct Found {
    info: DaemonInfo,
    data: PollData,
    failed_filters: Vec<String>,
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

impl Poller {
    /// Polls until `shutdown` changes (or its sender goes away).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut client: Option<Client> = None;
        let mut last_success = None;
        let mut info = None;
        let mut was_up: Option<bool> = None;
        let mut failed_filters: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {}
            }
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                r = self.poll_once(&mut client) => r,
            };
            let poll_duration = started.elapsed().as_secs_f64();
            let snapshot = match result {
                Ok(found) => {
                    if was_up != Some(true) {
                        tracing::info!(
                            daemon = %self.daemon.name,
                            host = %self.daemon.host,
                            engine = %found.info.engine,
                            version = %found.info.version,
                            api_version = %found.info.api_version,
                            "daemon is up"
                        );
                    }
                    if found.failed_filters != failed_filters {
                        failed_filters.clone_from(&found.failed_filters);
                        if !failed_filters.is_empty() {
                            tracing::warn!(daemon = %self.daemon.name, filters = ?failed_filters, "filter group queries failed; see dockwatch_api_request_errors_total");
                        }
                    }
                    was_up = Some(true);
                    last_success = Some(unix_now());
                    info = Some(found.info);
                    DaemonSnapshot {
                        last_success,
                        poll_duration,
                        info: info.clone(),
                        data: Some(found.data),
                        failed_filters: found.failed_filters,
                    }
                }
                Err(e) => {
                    if was_up != Some(false) {
                        tracing::warn!(daemon = %self.daemon.name, host = %self.daemon.host, reason = e.reason().as_str(), error = %e, "daemon is down; retrying every poll");
                    }
                    was_up = Some(false);
                    DaemonSnapshot {
                        last_success,
                        poll_duration,
                        info: info.clone(),
                        data: None,
                        failed_filters: Vec::new(),
                    }
                }
            };
            self.state.publish(&self.daemon.name, snapshot);
        }
    }

    /// The client, connecting first if needed; a failed connect is counted
    /// against the first call it kept from being made.
    fn client<'a>(&self, slot: &'a mut Option<Client>) -> Result<&'a Client, DockerError> {
        if slot.is_none() {
            match docker::connect(&self.daemon, self.timeout) {
                Ok(d) => {
                    *slot = Some(Client::new(
                        &self.daemon.name,
                        d,
                        self.timeout,
                        Arc::clone(&self.metrics),
                    ));
                }
                Err(e) => {
                    self.metrics.count_api_error(
                        &self.daemon.name,
                        ApiEndpoint::Version,
                        e.reason(),
                    );
                    return Err(e);
                }
            }
        }
        slot.as_ref()
            .ok_or_else(|| DockerError::Connect("no client".into()))
    }

    async fn poll_once(&self, slot: &mut Option<Client>) -> Result<Found, DockerError> {
        let c = self.client(slot)?;
        let list = |filters: Option<HashMap<String, Vec<String>>>| {
            c.call(
                ApiEndpoint::ImageList,
                c.docker.list_images(Some(ListImagesOptions {
                    filters,
                    ..Default::default()
                })),
            )
        };
        let dangling = HashMap::from([("dangling".to_owned(), vec!["true".to_owned()])]);
        // All calls of one poll run at once: the poll takes as long as the
        // slowest call, not their sum.
        let (version, info, images, dangling, containers, filtered) = tokio::join!(
            c.call(ApiEndpoint::Version, c.docker.version()),
            c.call(ApiEndpoint::Info, c.docker.info()),
            list(None),
            list(Some(dangling)),
            c.call(
                ApiEndpoint::ContainerList,
                c.docker.list_containers(Some(ListContainersOptions {
                    all: true,
                    ..Default::default()
                }))
            ),
            join_all(self.filters.iter().map(|f| list(Some(f.query())))),
        );
        let (version, info) = (version?, info?);
        let total = |list: Vec<bollard::models::ImageSummary>| {
            list.iter().fold(ImageCount::default(), |mut c, i| {
                c.add(i.size);
                c
            })
        };
        let mut data = PollData {
            images: total(images?),
            dangling: total(dangling?),
            ..PollData::default()
        };
        for c in containers? {
            if let Some(s) = c.state.and_then(state_of) {
                data.containers[s as usize] += 1;
            }
        }
        let mut failed_filters = Vec::new();
        for (f, result) in self.filters.iter().zip(filtered) {
            match result {
                Ok(list) => data.filters.push((f.name.clone(), total(list))),
                // A bad filter group must not take the whole daemon down.
                Err(_) => failed_filters.push(f.name.clone()),
            }
        }
        let engine = engine_of(&version);
        let info = DaemonInfo {
            engine: engine.to_owned(),
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            min_api_version: version.min_api_version.unwrap_or_default(),
            os: version.os.unwrap_or_default(),
            arch: version.arch.unwrap_or_default(),
            storage_driver: info.driver.unwrap_or_default(),
        };
        Ok(Found {
            info,
            data,
            failed_filters,
        })
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
