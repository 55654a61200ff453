//! The Engine calls pruning makes: the dangling list with the fields a
//! decision needs, the images containers use, the image a reference names,
//! and `DELETE /images/{id}` without `force`, so the daemon itself refuses
//! anything in use. Each goes through the connection's one timed path.

use serde::Deserialize;

use super::{Connection, DockerError, LIST_ANSWER, SMALL_ANSWER, image_list_path, transport};
use crate::folds::reference::ImageRef;
use crate::labels::ApiEndpoint;

/// One entry of `GET /images/json?filters=...` as pruning reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DanglingImage {
    /// What the image is deleted by; an entry without one is no answer.
    pub id: String,
    /// Unix seconds, from the image's config; `None` counts as too young.
    #[serde(default)]
    pub created: Option<i64>,
    /// Bytes; -1 or absent when the daemon did not compute it.
    #[serde(default)]
    pub size: Option<i64>,
    /// Containers using it; -1 or absent when the daemon did not count
    /// them (dockerd counts only for `/system/df`, Podman always).
    #[serde(default)]
    pub containers: Option<i64>,
}

impl DanglingImage {
    /// The size the daemon reported, 0 when it did not say.
    pub fn bytes(&self) -> u64 {
        self.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0)
    }
}

/// One entry of `GET /containers/json?all=1`: only the image it runs.
#[derive(Debug, Clone, Deserialize)]
struct ContainerImage {
    #[serde(rename = "ImageID", default)]
    image_id: Option<String>,
}

/// `GET /images/{name}/json`: only the id.
#[derive(Debug, Clone, Deserialize)]
struct ImageId {
    #[serde(rename = "Id")]
    id: String,
}

/// An image id without its `sha256:` prefix, which some answers (Podman's
/// container list, older APIs) leave out.
pub fn bare_id(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

impl Connection {
    /// `GET /images/json` with `filters` (which must hold `dangling=true`
    /// for this to be the dangling list).
    pub async fn dangling_images(
        &self,
        filters: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<DanglingImage>, DockerError> {
        let path = image_list_path(Some(filters));
        let t = self.timeout();
        self.get(
            ApiEndpoint::ImageList,
            &path,
            LIST_ANSWER,
            t,
            Self::json("dangling image list"),
        )
        .await
    }

    /// `GET /containers/json?all=1`: the image id of every container, in
    /// any state (a stopped one keeps its image as much as a running one).
    pub async fn container_image_ids(&self) -> Result<Vec<String>, DockerError> {
        let t = self.timeout();
        let list: Vec<ContainerImage> = self
            .get(
                ApiEndpoint::ContainerList,
                "/containers/json?all=1",
                LIST_ANSWER,
                t,
                Self::json("container list"),
            )
            .await?;
        Ok(list.into_iter().filter_map(|c| c.image_id).collect())
    }

    /// `GET /images/{name}/json`: the id of the image `image` names, or
    /// `None` if the daemon has no such image (a 404 is an answer).
    pub async fn image_id(&self, image: &ImageRef) -> Result<Option<String>, DockerError> {
        let t = self.timeout();
        let tr = self.transport(ApiEndpoint::ImageInspect)?;
        let path = self.versioned(tr, &format!("/images/{image}/json")).await?;
        self.timed(ApiEndpoint::ImageInspect, t, async move {
            match tr.send(hyper::Method::GET, &path, &[]).await {
                Ok(response) => {
                    let body = transport::read_body(response, LIST_ANSWER).await?;
                    serde_json::from_slice::<ImageId>(&body)
                        .map(|i| Some(i.id))
                        .map_err(|e| DockerError::Decode(format!("image inspect: {e}")))
                }
                Err(DockerError::Http { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `DELETE /images/{id}`, without `force` (the Engine's default): the
    /// daemon refuses (HTTP 409) an image a container uses or that several
    /// repositories reference, and answers 404 for one that is gone.
    pub async fn delete_image(&self, id: &str) -> Result<(), DockerError> {
        let t = self.timeout();
        let tr = self.transport(ApiEndpoint::ImageDelete)?;
        // An id is hex with an algorithm prefix; anything else the daemon
        // sent as one is not put in a path.
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == ':') {
            return Err(DockerError::Decode(format!(
                "the daemon listed an image id that is not one: {id:?}"
            )));
        }
        let path = self.versioned(tr, &format!("/images/{id}")).await?;
        self.timed(ApiEndpoint::ImageDelete, t, async move {
            let response = tr.send(hyper::Method::DELETE, &path, &[]).await?;
            // The answer lists what was untagged and deleted; nothing in it
            // is needed, but it is read to its end so the connection can be
            // used again.
            transport::read_body(response, SMALL_ANSWER).await?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangling_entries_from_dockerd_and_podman() {
        // dockerd 20.10 (Containers not counted) and Podman 4.3 (counted),
        // trimmed from the test bed's answers.
        let list: Vec<DanglingImage> = serde_json::from_str(
            r#"[{"Containers":-1,"Created":1577836800,"Id":"sha256:4a90","Labels":{"dwtest.prune":"exp"},"ParentId":"","RepoDigests":["<none>@<none>"],"RepoTags":["<none>:<none>"],"SharedSize":-1,"Size":10000,"VirtualSize":10000},
                {"Id":"sha256:99ea","ParentId":"","RepoTags":null,"RepoDigests":[],"Created":1796008351,"Size":31867,"SharedSize":0,"VirtualSize":31867,"Labels":null,"Containers":1,"Dangling":true}]"#,
        )
        .expect("decodes");
        assert_eq!(list[0].created, Some(1_577_836_800));
        assert_eq!(list[0].bytes(), 10_000);
        assert_eq!(list[0].containers, Some(-1));
        assert_eq!(list[1].containers, Some(1));
        let sparse: Vec<DanglingImage> =
            serde_json::from_str(r#"[{"Id":"sha256:1","Size":-1}]"#).expect("decodes");
        assert_eq!(sparse[0].created, None);
        assert_eq!(sparse[0].bytes(), 0);
        assert!(serde_json::from_str::<Vec<DanglingImage>>(r#"[{"Size":1}]"#).is_err());
    }

    #[test]
    fn ids_compare_without_their_prefix() {
        assert_eq!(bare_id("sha256:abc"), "abc");
        assert_eq!(bare_id("abc"), "abc");
    }
}
