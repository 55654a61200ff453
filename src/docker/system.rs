//! The daemon itself: `GET /version`, `GET /info` and `GET /system/df`
//! (decoded in `df.rs`, both its shapes). As in every answer dockwatch
//! reads, serde decodes only the fields read, each optional: dockerd,
//! Podman and the API versions between them each leave some out.

use std::time::Duration;

use serde::Deserialize;

use super::df::DiskUsage;
use super::{ApiVersion, Connection, DockerError};
use crate::labels::ApiEndpoint;

/// `GET /version`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    pub version: Option<String>,
    pub api_version: Option<String>,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: Option<String>,
    pub os: Option<String>,
    pub arch: Option<String>,
    pub components: Option<Vec<Named>>,
    pub platform: Option<Named>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Named {
    pub name: Option<String>,
}

impl Version {
    /// `podman` if the answer names Podman, else `docker`.
    pub fn engine(&self) -> &'static str {
        let podman = |n: &Option<String>| {
            n.as_deref()
                .is_some_and(|s| s.to_ascii_lowercase().contains("podman"))
        };
        let in_components = self.components.iter().flatten().any(|c| podman(&c.name));
        let in_platform = self.platform.as_ref().is_some_and(|p| podman(&p.name));
        if in_components || in_platform {
            "podman"
        } else {
            "docker"
        }
    }
}

/// `GET /info`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    pub driver: Option<String>,
    /// The daemon's clock, RFC 3339.
    pub system_time: Option<String>,
}

impl Connection {
    /// `GET /version`; what it says of the daemon's versions is learned.
    pub async fn version(&self) -> Result<Version, DockerError> {
        let epoch = self.api_epoch();
        let v: Version = self
            .get(ApiEndpoint::Version, "/version", Self::json("version"))
            .await?;
        if let Some(newest) = v.api_version.as_deref().and_then(ApiVersion::parse) {
            let min = v.min_api_version.as_deref().and_then(ApiVersion::parse);
            self.learn(epoch, newest, min);
        }
        Ok(v)
    }

    /// `GET /info`.
    pub async fn info(&self) -> Result<Info, DockerError> {
        self.get(ApiEndpoint::Info, "/info", Self::json("info"))
            .await
    }

    /// `GET /system/df`, bounded by `timeout` (it can take minutes on a big
    /// host), decoded in either shape.
    pub async fn system_df(&self, timeout: Duration) -> Result<DiskUsage, DockerError> {
        self.get_within(
            ApiEndpoint::SystemDf,
            "/system/df",
            timeout,
            super::df::parse,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::{ContainerSummary, ImageSummary};

    use crate::config::files::fixture;

    #[test]
    fn podman_answers_decode() {
        let v: Version = serde_json::from_slice(&fixture("podman-version.json")).expect("version");
        assert_eq!(v.engine(), "podman");
        assert!(v.api_version.is_some());
        let images: Vec<ImageSummary> =
            serde_json::from_slice(&fixture("podman-images.json")).expect("images");
        assert!(!images.is_empty());
        assert_eq!(images.len(), 3);
        assert_eq!(images.iter().map(|i| i.size).sum::<i64>(), 5_993_796);
        let containers: Vec<ContainerSummary> =
            serde_json::from_slice(&fixture("podman-containers.json")).expect("containers");
        assert!(containers.iter().all(|c| c.state.is_some()));
    }

    /// Docker 26.1 with the containerd image store (the test bed's daemon C).
    #[test]
    fn containerd_store_answers_decode() {
        let v: Version =
            serde_json::from_slice(&fixture("docker-26-containerd-version.json")).expect("version");
        assert_eq!(v.engine(), "docker");
        assert_eq!(v.version.as_deref(), Some("26.1.5+dfsg1"));
        assert_eq!(v.api_version.as_deref(), Some("1.45"));
        assert_eq!(v.min_api_version.as_deref(), Some("1.24"));
        let info: Info =
            serde_json::from_slice(&fixture("docker-26-containerd-info.json")).expect("info");
        // The snapshotter's name, where the classic store says overlay2.
        assert_eq!(info.driver.as_deref(), Some("overlayfs"));
        assert!(info.system_time.is_some());
        // Dangling images have `RepoTags: []` (classic: ["<none>:<none>"]);
        // only the sizes are read, so both decode alike.
        let images: Vec<ImageSummary> =
            serde_json::from_slice(&fixture("docker-26-containerd-images.json")).expect("images");
        assert_eq!(images.len(), 9);
        assert!(images.iter().all(|i| i.size > 3_000_000));
        let dangling: Vec<ImageSummary> =
            serde_json::from_slice(&fixture("docker-26-containerd-images-dangling.json"))
                .expect("dangling");
        assert_eq!(dangling.len(), 3);
    }

    /// Docker 29 (API 1.52): an untagged image has `RepoTags: []`, no
    /// `VirtualSize`; containers carry a `Health` object.
    #[test]
    fn api_1_52_lists_decode() {
        let images: Vec<ImageSummary> =
            serde_json::from_slice(&fixture("api-1.52-images.json")).expect("images");
        assert_eq!(
            images.iter().map(|i| i.size).collect::<Vec<_>>(),
            [1_991_531, 1_991_520]
        );
        let containers: Vec<ContainerSummary> =
            serde_json::from_slice(&fixture("api-1.52-containers.json")).expect("containers");
        let states: Vec<_> = containers.iter().map(|c| c.state.as_deref()).collect();
        assert_eq!(states, [Some("running"), Some("exited"), Some("running")]);
    }

    #[test]
    fn dockerd_version_is_docker() {
        let v: Version = serde_json::from_str(
            r#"{"Platform":{"Name":"Docker Engine - Community"},"Components":[{"Name":"Engine","Version":"20.10.24"}],"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12","Os":"linux","Arch":"amd64"}"#,
        )
        .expect("decodes");
        assert_eq!(v.engine(), "docker");
        assert_eq!(v.min_api_version.as_deref(), Some("1.12"));
        assert_eq!(Version::default().engine(), "docker");
    }
}
