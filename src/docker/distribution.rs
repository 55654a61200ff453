//! What a tag points at, in the registry and on the daemon, without pulling:
//! `GET /distribution/{name}/json` (the daemon asks the registry, with its
//! own registry settings and the credentials dockwatch sends for pulls) and
//! the digests the local image was pulled by (`RepoDigests` of
//! `GET /images/{name}/json`).

use serde::Deserialize;

use super::{Connection, DockerError, SMALL_ANSWER, transport};
use crate::folds::reference::ImageRef;
use crate::labels::ApiEndpoint;

/// The registry's descriptor of what a tag points at: an image index (a
/// multi-platform image) or a single image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryDescriptor {
    pub digest: String,
    pub media_type: Option<String>,
    /// How many platforms the daemon says the tag offers.
    pub platforms: usize,
}

/// `GET /distribution/{name}/json`, the fields read.
#[derive(Debug, Deserialize)]
struct DistributionInspect {
    #[serde(rename = "Descriptor")]
    descriptor: Descriptor,
    #[serde(rename = "Platforms", default)]
    platforms: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
}

/// The local image of a tag, as far as comparing it with the registry goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LocalImage {
    #[serde(default)]
    pub id: Option<String>,
    /// `name@digest` for every digest the image was pulled by (or pushed
    /// as); on both image stores, pulling a tag records the digest the tag
    /// pointed at: the index of a multi-platform image, else the manifest.
    #[serde(default)]
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

/// A daemon that has no `/distribution` answers a bare 404 (Podman: "Not
/// Found"; dockerd older than API 1.30: "page not found"). A registry's own
/// 404 comes with its message ("manifest unknown", "repository name not
/// known to registry").
pub fn endpoint_missing(e: &DockerError) -> bool {
    match e {
        DockerError::Http {
            status: 404 | 405,
            message,
        } => {
            let m = message.trim().to_ascii_lowercase();
            matches!(
                m.as_str(),
                "" | "not found" | "page not found" | "404 page not found" | "method not allowed"
            )
        }
        _ => false,
    }
}

impl Connection {
    /// `GET /distribution/{name}:{tag}/json`, with `registry_auth` as the
    /// `X-Registry-Auth` header pulls send. The daemon asks the registry,
    /// so the answer is bounded by the call timeout like any call.
    pub async fn distribution(
        &self,
        image: &ImageRef,
        registry_auth: Option<&str>,
    ) -> Result<RegistryDescriptor, DockerError> {
        let t = self.timeout();
        let tr = self.transport(ApiEndpoint::Distribution)?;
        // dockerd's route takes the reference as it is, slashes and the
        // registry's port included, as the docker CLI sends it.
        let path = self
            .versioned(tr, &format!("/distribution/{image}/json"))
            .await?;
        let headers: Vec<(&str, &str)> = registry_auth
            .map(|a| ("X-Registry-Auth", a))
            .into_iter()
            .collect();
        let body = self
            .timed(ApiEndpoint::Distribution, t, async move {
                let response = tr.send(hyper::Method::GET, &path, &headers).await?;
                transport::read_body(response, SMALL_ANSWER).await
            })
            .await?;
        let answer: DistributionInspect = serde_json::from_slice(&body)
            .map_err(|e| DockerError::Decode(format!("distribution: {e}")))?;
        Ok(RegistryDescriptor {
            digest: answer.descriptor.digest,
            media_type: answer.descriptor.media_type,
            platforms: answer.platforms.map_or(0, |p| p.len()),
        })
    }

    /// `GET /images/{name}/json`: the local image's id and the digests it
    /// was pulled by; `None` if the daemon has no such image.
    pub async fn local_image(&self, image: &ImageRef) -> Result<Option<LocalImage>, DockerError> {
        let t = self.timeout();
        let tr = self.transport(ApiEndpoint::ImageInspect)?;
        let path = self.versioned(tr, &format!("/images/{image}/json")).await?;
        let body = self
            .timed(ApiEndpoint::ImageInspect, t, async move {
                match tr.send(hyper::Method::GET, &path, &[]).await {
                    // An inspect answer is a few KiB; history and config
                    // of a big image stay well under the list limit.
                    Ok(response) => transport::read_body(response, super::LIST_ANSWER)
                        .await
                        .map(Some),
                    Err(DockerError::Http { status: 404, .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        body.map(|b| {
            serde_json::from_slice(&b)
                .map_err(|e| DockerError::Decode(format!("image inspect: {e}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_answers_decode() {
        // dockerd 20.10 and 26.1, a multi-platform OCI index in the registry.
        let a: DistributionInspect = serde_json::from_str(
            r#"{"Descriptor":{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:23449a53dd03e2e55bc9d570fa14d6fc4958be564d8171836937070d51ba9102","size":517},"Platforms":[{"architecture":"amd64","os":"linux"},{"architecture":"arm64","os":"linux"}]}"#,
        )
        .expect("decodes");
        assert_eq!(
            a.descriptor.digest,
            "sha256:23449a53dd03e2e55bc9d570fa14d6fc4958be564d8171836937070d51ba9102"
        );
        assert_eq!(a.platforms.map(|p| p.len()), Some(2));
        for bad in ["{}", r#"{"Descriptor":{}}"#, "null", "["] {
            assert!(
                serde_json::from_str::<DistributionInspect>(bad).is_err(),
                "{bad}"
            );
        }
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

    #[test]
    fn a_missing_endpoint_is_not_a_missing_tag() {
        let http = |status, m: &str| DockerError::Http {
            status,
            message: m.into(),
        };
        assert!(endpoint_missing(&http(404, "Not Found\n")));
        assert!(endpoint_missing(&http(404, "page not found")));
        assert!(!endpoint_missing(&http(
            404,
            "manifest unknown: manifest unknown"
        )));
        assert!(!endpoint_missing(&http(500, "Not Found")));
        assert!(!endpoint_missing(&DockerError::Timeout(
            std::time::Duration::from_secs(1)
        )));
    }
}
