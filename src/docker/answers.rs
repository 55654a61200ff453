//! The parts of the daemon's answers dockwatch reads, decoded by serde
//! without building the rest (an image list of thousands costs little more
//! than its bytes). Every field is optional: dockerd, Podman and the API
//! versions between them each leave some out.

use serde::Deserialize;

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

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    pub id: Option<String>,
    pub state: Option<String>,
    /// The image reference the container was created from, as dockerd
    /// recorded it; but dockerd shows the image ID instead once that
    /// reference resolves to another image (the tag moved) or to none.
    /// Podman shows the image's name, also for one created by ID.
    pub image: Option<String>,
    #[serde(rename = "ImageID")]
    pub image_id: Option<String>,
    /// `Up 5 minutes (healthy)`: dockerd writes a running container's
    /// health here; Podman 4 does not.
    pub status: Option<String>,
    /// Only from API 1.52 on.
    pub health: Option<ContainerHealth>,
}

/// The `Health` object of a container list entry (API 1.52).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerHealth {
    pub status: Option<String>,
}

/// One entry of `GET /images/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// -1 when the daemon did not compute it.
    pub size: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn image_lists_need_the_size_field() {
        let unknown: Vec<ImageSummary> =
            serde_json::from_str(r#"[{"Id":"x","Size":-1},{"Size":5,"Labels":{"a":"b"}}]"#)
                .expect("a valid list");
        assert_eq!(unknown.iter().map(|i| i.size).collect::<Vec<_>>(), [-1, 5]);
        for bad in [&b"{}"[..], b"[{\"Id\":\"x\"}]", b"[", b"null"] {
            assert!(serde_json::from_slice::<Vec<ImageSummary>>(bad).is_err());
        }
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
