//! The calls behind the container signals (outdated containers, health):
//! the image list with the tags of each image, one container's recorded
//! image reference, and a count of running containers by health.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Connection, DockerError, LIST_ANSWER, SMALL_ANSWER, image_list_path, transport};
use crate::labels::{ApiEndpoint, HealthStatus};

/// One entry of `GET /images/json` with what tells tags from images.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaggedImage {
    /// -1 when the daemon did not compute it.
    pub size: i64,
    pub id: Option<String>,
    /// `name:tag` as the daemon spells it (dockerd: `dwtest/app:1`, Podman:
    /// `docker.io/dwtest/app:1`); `<none>:<none>`, empty or null when untagged.
    pub repo_tags: Option<Vec<String>>,
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
    /// `GET /images/json` (every top-level image), with the id and tags of
    /// each.
    pub async fn tagged_images(&self) -> Result<Vec<TaggedImage>, DockerError> {
        let t = self.timeout();
        self.get(
            ApiEndpoint::ImageList,
            &image_list_path(None),
            LIST_ANSWER,
            t,
            Self::json("image list"),
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
        let t = self.timeout();
        let tr = self.transport(ApiEndpoint::ContainerInspect)?;
        let path = self
            .versioned(tr, &format!("/containers/{id}/json"))
            .await?;
        self.timed(ApiEndpoint::ContainerInspect, t, async move {
            match tr.send(hyper::Method::GET, &path, &[]).await {
                Ok(response) => {
                    let body = transport::read_body(response, SMALL_ANSWER).await?;
                    let found: ContainerInspect = serde_json::from_slice(&body)
                        .map_err(|e| DockerError::Decode(format!("container inspect: {e}")))?;
                    Ok(found.config.and_then(|c| c.image))
                }
                Err(DockerError::Http { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
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
        let t = self.timeout();
        let list: Vec<serde::de::IgnoredAny> = self
            .get(
                ApiEndpoint::ContainerList,
                &format!("/containers/json?{query}"),
                LIST_ANSWER,
                t,
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
    fn tagged_images_decode_in_every_shape() {
        // dockerd 20.10 (untagged: <none>:<none>), Podman (untagged: null),
        // API 1.52 (untagged: []).
        let list: Vec<TaggedImage> = serde_json::from_str(
            r#"[{"Id":"sha256:a","RepoTags":["dwtest/app:1","dwtest/app:latest"],"Size":5},
                {"Id":"sha256:b","RepoTags":["<none>:<none>"],"Size":-1},
                {"Id":"sha256:c","RepoTags":null,"Size":1},
                {"Id":"sha256:d","RepoTags":[],"Size":1,"Containers":2}]"#,
        )
        .expect("a valid list");
        assert_eq!(list.len(), 4);
        assert_eq!(
            list[0].repo_tags.as_deref(),
            Some(&["dwtest/app:1".to_owned(), "dwtest/app:latest".to_owned()][..])
        );
        assert_eq!(list[2].repo_tags, None);
        assert!(serde_json::from_str::<Vec<TaggedImage>>(r#"[{"Id":"x"}]"#).is_err());
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
