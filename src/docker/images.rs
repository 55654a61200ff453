//! `/images`: the image list (sizes; tags; the dangling ones with what a
//! prune decides by), inspecting one image (present? its id, the digests
//! it was pulled by), the pull stream, and `DELETE /images/{id}` without
//! `force`, so the daemon itself refuses anything in use; with the answer
//! types read.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::Deserialize;

use super::{Connection, DockerError, LineStream, MAX_PULL_LINE, SMALL_ANSWER, transport};
use crate::folds::reference::ImageRef;
use crate::labels::ApiEndpoint;

/// One entry of `GET /images/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// -1 when the daemon did not compute it.
    pub size: i64,
}

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

/// One entry of `GET /images/json?filters=...` as pruning reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DanglingImage {
    /// What the image is deleted by; an entry without one is no answer.
    pub id: String,
    /// Unix seconds, from the image's config; `None` counts as too young.
    pub created: Option<i64>,
    /// Bytes; -1 or absent when the daemon did not compute it.
    pub size: Option<i64>,
    /// Containers using it; -1 or absent when the daemon did not count
    /// them (dockerd counts only for `/system/df`, Podman always).
    pub containers: Option<i64>,
}

impl DanglingImage {
    /// The size the daemon reported, 0 when it did not say.
    pub fn bytes(&self) -> u64 {
        self.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0)
    }
}

/// `GET /images/{name}/json`: only the id.
#[derive(Debug, Clone, Deserialize)]
struct ImageId {
    #[serde(rename = "Id")]
    id: String,
}

/// The local image of a tag, as far as comparing it with the registry goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocalImage {
    pub id: Option<String>,
    /// `name@digest` for every digest the image was pulled by (or pushed
    /// as); on both image stores, pulling a tag records the digest the tag
    /// pointed at: the index of a multi-platform image, else the manifest.
    pub repo_digests: Option<Vec<String>>,
}

impl LocalImage {
    /// The digests the image was pulled by from `image`'s repository
    /// (however the daemon spells the repository's name).
    pub fn digests_of(&self, image: &ImageRef) -> Vec<String> {
        let repo = image.repository();
        let mut out: Vec<String> = self
            .repo_digests
            .iter()
            .flatten()
            .filter_map(|entry| {
                let r = ImageRef::parse(entry).ok()?;
                (r.repository() == repo).then_some(r.digest?)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// An image id without its `sha256:` prefix, which some answers (Podman's
/// container list, older APIs) leave out.
pub fn bare_id(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

impl Connection {
    /// `GET /images/json`, with `filters` as the URL-encoded JSON map of
    /// string lists the Engine API takes.
    pub async fn images(
        &self,
        filters: Option<&BTreeMap<String, Vec<String>>>,
    ) -> Result<Vec<ImageSummary>, DockerError> {
        self.image_list(filters, "image list").await
    }

    /// `GET /images/json` (every top-level image), with the id and tags of
    /// each.
    pub async fn tagged_images(&self) -> Result<Vec<TaggedImage>, DockerError> {
        self.image_list(None, "image list").await
    }

    /// `GET /images/json` with `filters` (which must hold `dangling=true`
    /// for this to be the dangling list).
    pub async fn dangling_images(
        &self,
        filters: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<DanglingImage>, DockerError> {
        self.image_list(Some(filters), "dangling image list").await
    }

    /// `GET /images/json` with `filters`, each entry decoded as a `T`.
    async fn image_list<T: serde::de::DeserializeOwned>(
        &self,
        filters: Option<&BTreeMap<String, Vec<String>>>,
        what: &'static str,
    ) -> Result<Vec<T>, DockerError> {
        self.get(
            ApiEndpoint::ImageList,
            &image_list_path(filters),
            Self::json(what),
        )
        .await
    }

    /// `POST /images/create` for `image` (never without a tag: then the
    /// Engine API pulls every tag), as one stream of lines: the request is
    /// sent when the stream is first polled, so the caller's timers bound a
    /// daemon that never answers too. Dropping the stream closes the
    /// connection, which cancels the pull on the daemon.
    pub fn pull(&self, image: &ImageRef, registry_auth: Option<String>) -> LineStream {
        let query = serde_urlencoded::to_string([
            ("fromImage", image.name.as_str()),
            ("tag", image.api_tag().as_str()),
        ])
        .unwrap_or_default();
        let path = format!("/images/create?{query}");
        let this = self.clone();
        let head = async move {
            let headers: Vec<(&str, &str)> = registry_auth
                .as_deref()
                .map(|a| ("X-Registry-Auth", a))
                .into_iter()
                .collect();
            // The pull's own limits (stall, timeout) bound the answer, not
            // the call timeout: a registry may take a while to start.
            let started = async {
                let tr = this.transport(ApiEndpoint::ImagePull)?;
                let path = this.versioned(tr, &path).await?;
                this.timed(ApiEndpoint::ImagePull, Duration::MAX, async move {
                    let response = tr.send(hyper::Method::POST, &path, &headers).await?;
                    Ok(transport::lines(response.into_body(), MAX_PULL_LINE))
                })
                .await
            };
            match started.await {
                Ok(lines) => this.reporting(ApiEndpoint::ImagePull, lines),
                Err(e) => Box::pin(futures_util::stream::iter([Err(e)])) as LineStream,
            }
        };
        Box::pin(futures_util::stream::once(head).flatten())
    }

    /// `GET /images/{name}/json`: the id of the image `image` names, or
    /// `None` if the daemon has no such image (a 404 is an answer).
    pub async fn image_id(&self, image: &ImageRef) -> Result<Option<String>, DockerError> {
        let found: Option<ImageId> = self.inspect(image, Self::json("image inspect")).await?;
        Ok(found.map(|i| i.id))
    }

    /// `GET /images/{name}/json`: the local image's id and the digests it
    /// was pulled by; `None` if the daemon has no such image.
    pub async fn local_image(&self, image: &ImageRef) -> Result<Option<LocalImage>, DockerError> {
        // An inspect answer is a few KiB; history and config of a big
        // image stay well under the list limit. It is decoded after the
        // call: a strange one is not the daemon's failure.
        let body = self.inspect(image, |b| Ok(b.to_vec())).await?;
        body.map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| DockerError::Decode(format!("image inspect: {e}")))
        })
        .transpose()
    }

    /// `GET /images/{name}/json`: whether the image is on the daemon. A 404
    /// is an answer (no), not a failure.
    pub async fn image_present(&self, image: &ImageRef) -> Result<bool, DockerError> {
        let found = self.inspect(image, |_| Ok(())).await?;
        Ok(found.is_some())
    }

    /// `GET /images/{name}/json`, decoded by `decode`; `None` if the
    /// daemon has no such image (a 404 is an answer, not a failure).
    async fn inspect<T>(
        &self,
        image: &ImageRef,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<Option<T>, DockerError> {
        let path = format!("/images/{image}/json");
        self.get_found(ApiEndpoint::ImageInspect, &path, decode)
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

/// `/images/json`, with `filters` as the URL-encoded JSON the API takes.
fn image_list_path(filters: Option<&BTreeMap<String, Vec<String>>>) -> String {
    match filters {
        None => "/images/json".to_owned(),
        Some(f) => {
            let json = serde_json::to_string(f).unwrap_or_default();
            let query = serde_urlencoded::to_string([("filters", json)]).unwrap_or_default();
            format!("/images/json?{query}")
        }
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

    #[test]
    fn filters_go_in_the_query_as_url_encoded_json() {
        assert_eq!(image_list_path(None), "/images/json");
        let f = BTreeMap::from([("reference".to_owned(), vec!["ci/*".to_owned()])]);
        assert_eq!(
            image_list_path(Some(&f)),
            "/images/json?filters=%7B%22reference%22%3A%5B%22ci%2F*%22%5D%7D"
        );
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
    fn repo_digests_of_the_image_repository_only() {
        let d1 = "sha256:14374738e0d7a95628173d91ad074b444cd20e317f20a01d7ed85967b9dc2c54";
        let d2 = "sha256:23449a53dd03e2e55bc9d570fa14d6fc4958be564d8171836937070d51ba9102";
        let local: LocalImage = serde_json::from_str(&format!(
            r#"{{"Id":"sha256:e959","RepoDigests":["127.0.0.1:5000/dwtest/multi@{d1}","127.0.0.1:5000/other@{d2}","garbage"],"RepoTags":["x:1"]}}"#
        ))
        .expect("decodes");
        let image = ImageRef::parse("127.0.0.1:5000/dwtest/multi:1").expect("valid");
        assert_eq!(local.digests_of(&image), [d1]);
        // dockerd says `busybox@...`, Podman `docker.io/library/busybox@...`.
        let hub: LocalImage = serde_json::from_str(&format!(
            r#"{{"RepoDigests":["busybox@{d1}","docker.io/library/busybox@{d2}"]}}"#
        ))
        .expect("decodes");
        let busybox = ImageRef::parse("docker.io/library/busybox:1.36").expect("valid");
        assert_eq!(hub.digests_of(&busybox), [d1, d2]);
        // An image built or loaded here has none.
        let built: LocalImage =
            serde_json::from_str(r#"{"Id":"sha256:abc","RepoDigests":null}"#).expect("decodes");
        assert!(built.digests_of(&image).is_empty());
    }
}
