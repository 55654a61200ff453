//! What a tag points at in the registry, without pulling:
//! `GET /distribution/{name}/json` (the daemon asks the registry, with its
//! own registry settings and the credentials dockwatch sends for pulls).
//! The digests the local image was pulled by are in `images.rs`.

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
    fn a_missing_endpoint_is_not_a_missing_tag() {
        let http = DockerError::http;
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
