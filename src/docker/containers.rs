//! `/containers`: the container list (every container; their images, for
//! pruning; a count of running ones by health) and one container's
//! recorded image reference, with the answer types read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Connection, DockerError};
use crate::labels::{ApiEndpoint, HealthStatus};

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

/// One entry of `GET /containers/json?all=1` as pruning reads it: only
/// the image it runs.
#[derive(Debug, Clone, Deserialize)]
struct ContainerImage {
    #[serde(rename = "ImageID", default)]
    image_id: Option<String>,
}

/// `GET /containers/{id}/json`: only the reference it was created from.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerInspect {
    config: Option<InspectConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    image: Option<String>,
}

/// A container id as the daemon sends it (hex), safe to put in a path.
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Connection {
    /// `GET /containers/json?all=1`: every container, in any state.
    pub async fn containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        self.all_containers().await
    }

    /// `GET /containers/json?all=1`: the image id of every container, in
    /// any state (a stopped one keeps its image as much as a running one).
    pub async fn container_image_ids(&self) -> Result<Vec<String>, DockerError> {
        let list: Vec<ContainerImage> = self.all_containers().await?;
        Ok(list.into_iter().filter_map(|c| c.image_id).collect())
    }

    /// `GET /containers/json?all=1`, each entry decoded as a `T`.
    async fn all_containers<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<T>, DockerError> {
        self.get(
            ApiEndpoint::ContainerList,
            "/containers/json?all=1",
            Self::json("container list"),
        )
        .await
    }

    /// `GET /containers/{id}/json`: the image reference the container was
    /// created from (`Config.Image`, as the user gave it). `None` if the
    /// container is gone (a 404 is an answer, not a failure) or the answer
    /// names none.
    pub async fn container_image(&self, id: &str) -> Result<Option<String>, DockerError> {
        if !plain_id(id) {
            return Err(DockerError::Decode(format!(
                "the container list named a container {id:?}, which is no id"
            )));
        }
        let found: Option<ContainerInspect> = self
            .get_found(
                ApiEndpoint::ContainerInspect,
                &format!("/containers/{id}/json"),
                Self::json("container inspect"),
            )
            .await?;
        Ok(found.and_then(|c| c.config).and_then(|c| c.image))
    }

    /// How many running containers have `health`, from
    /// `GET /containers/json?filters={"health":[...],"status":["running"]}`;
    /// only the entries are counted, none of their fields decoded.
    pub async fn running_with_health(&self, health: HealthStatus) -> Result<u64, DockerError> {
        let filters = BTreeMap::from([
            ("health".to_owned(), vec![health.as_str().to_owned()]),
            ("status".to_owned(), vec!["running".to_owned()]),
        ]);
        let json = serde_json::to_string(&filters).unwrap_or_default();
        let query = serde_urlencoded::to_string([("filters", json)]).unwrap_or_default();
        let list: Vec<serde::de::IgnoredAny> = self
            .get(
                ApiEndpoint::ContainerList,
                &format!("/containers/json?{query}"),
                Self::json("container list"),
            )
            .await?;
        Ok(u64::try_from(list.len()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_ids_go_in_a_path() {
        assert!(plain_id(
            "abb0c676e8c2aa6eec47c9c23e25080513fee8a72c954f8abe505eff6aece334"
        ));
        for bad in ["", "../images/x", "a b", "x?y", "a/b"] {
            assert!(!plain_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn inspect_reads_the_configured_image() {
        let c: ContainerInspect = serde_json::from_str(
            r#"{"Id":"abc","Image":"sha256:68ec","Config":{"Image":"sigx/app:1","Env":["A=1"]}}"#,
        )
        .expect("decodes");
        assert_eq!(
            c.config.and_then(|c| c.image).as_deref(),
            Some("sigx/app:1")
        );
    }
}
