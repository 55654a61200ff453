//! Which running containers run an older image than their tag: the pure
//! part. A container created from a tag (`app:1`) is outdated when that tag
//! now names another local image than the one the container runs (a
//! pre-pull or a `docker tag` moved it). Containers created from an image ID
//! or pinned by digest are never outdated: nothing can move under them.
//!
//! Tags are compared in one canonical spelling (`registry/path:tag`, with
//! `docker.io/library/` where Docker Hub is implied), because dockerd keeps
//! what the user typed (`busybox`) and lists tags in its short form
//! (`busybox:latest`), while Podman spells both out (`docker.io/library/busybox:latest`).

use std::collections::HashMap;

use crate::folds::reference::{DOCKER_HUB, ImageRef, registry_host};

/// The canonical tag a reference names, or `None` if it names no tag that
/// could move: an image ID (`sha256:...`), a reference pinned by digest
/// (`name@sha256:...`), or no valid reference (dockerd's `<none>:<none>`).
pub fn tag_key(reference: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.starts_with("sha256:") || reference.contains('@') {
        return None;
    }
    let r = ImageRef::parse(reference).ok()?;
    let tag = r.tag.as_deref()?;
    // The path without the registry, when the name spelled one out.
    let path = match r.name.split_once('/') {
        Some((first, rest)) if first == r.registry => rest,
        _ => r.name.as_str(),
    };
    let registry = registry_host(&r.registry);
    if registry == DOCKER_HUB && !path.contains('/') {
        Some(format!("{registry}/library/{path}:{tag}"))
    } else {
        Some(format!("{registry}/{path}:{tag}"))
    }
}

/// The image every tag on a daemon names now, by canonical tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(HashMap<String, String>);

impl Tags {
    /// From the image list: each image's id and its tags.
    pub fn from_images<'a>(
        images: impl IntoIterator<Item = (&'a str, impl IntoIterator<Item = &'a String>)>,
    ) -> Self {
        let mut map = HashMap::new();
        for (id, tags) in images {
            for tag in tags {
                if let Some(key) = tag_key(tag) {
                    map.insert(key, id.to_owned());
                }
            }
        }
        Self(map)
    }

    /// The image a canonical tag names now.
    pub fn current(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A running container as the check sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningContainer {
    /// The canonical tag it was created from; `None` if it was created from
    /// an ID or a digest, or the reference is not known (yet).
    pub tag: Option<String>,
    /// The image it runs.
    pub image_id: String,
}

impl RunningContainer {
    /// True if its tag names another image now. A tag that names no image
    /// any more (removed) does not make it outdated: there is nothing newer
    /// to recreate it from.
    pub fn outdated(&self, tags: &Tags) -> bool {
        self.tag
            .as_deref()
            .and_then(|t| tags.current(t))
            .is_some_and(|current| current != self.image_id)
    }
}

/// How many of `running` are outdated, and how many of those were created
/// from each of `images` (label, canonical tag; a digest has no tag and
/// counts 0).
pub fn count(
    running: &[RunningContainer],
    tags: &Tags,
    images: &[(String, Option<String>)],
) -> (u64, Vec<(String, u64)>) {
    let outdated: Vec<&RunningContainer> = running.iter().filter(|r| r.outdated(tags)).collect();
    let by_image = images
        .iter()
        .map(|(label, key)| {
            let n = outdated
                .iter()
                .filter(|r| key.is_some() && r.tag == *key)
                .count();
            (label.clone(), n as u64)
        })
        .collect();
    (outdated.len() as u64, by_image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_in_one_spelling() {
        for (a, b) in [
            ("busybox", "busybox:latest"),
            ("busybox", "docker.io/library/busybox:latest"),
            ("library/busybox:latest", "index.docker.io/library/busybox"),
            ("dwtest/app:1", "docker.io/dwtest/app:1"),
            (
                "127.0.0.1:5000/dwtest/multi:1",
                "127.0.0.1:5000/dwtest/multi:1",
            ),
        ] {
            assert_eq!(tag_key(a), tag_key(b), "{a} = {b}");
            assert!(tag_key(a).is_some(), "{a}");
        }
        assert_eq!(
            tag_key("dwtest/app:1").as_deref(),
            Some("docker.io/dwtest/app:1")
        );
        assert_eq!(
            tag_key("busybox").as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(
            tag_key("localhost/app:1").as_deref(),
            Some("localhost/app:1")
        );
        assert_ne!(tag_key("dwtest/app:1"), tag_key("dwtest/app:2"));
        assert_ne!(tag_key("a.example/app:1"), tag_key("b.example/app:1"));
    }

    #[test]
    fn ids_and_digests_name_no_tag() {
        let id = "sha256:68ecf1b712a8696cd0e3f1ce9ce354bff5d65c9dcf9991d50196fd05be6ac984";
        let digest = "sha256:14af9c97a92112ecd7861a4abb909d5b1e0de3986072eae33ebe3c9c19245b6a";
        for no in [
            id.to_owned(),
            format!("127.0.0.1:5000/dwtest/app@{digest}"),
            format!("dwtest/app:1@{digest}"),
            "<none>:<none>".to_owned(),
            String::new(),
            "UPPER:1".to_owned(),
        ] {
            assert_eq!(tag_key(&no), None, "{no}");
        }
    }

    fn running(tag: Option<&str>, image: &str) -> RunningContainer {
        RunningContainer {
            tag: tag.and_then(tag_key),
            image_id: image.to_owned(),
        }
    }

    #[test]
    fn outdated_when_the_tag_names_another_image() {
        let app = ["dwtest/app:1".to_owned(), "dwtest/app:latest".to_owned()];
        let tool = ["docker.io/dwtest/tool:1".to_owned()];
        let untagged = ["<none>:<none>".to_owned()];
        let tags = Tags::from_images([
            ("sha256:new", &app[..]),
            ("sha256:tool", &tool[..]),
            ("sha256:old", &untagged[..]),
        ]);
        assert_eq!(tags.len(), 3);
        assert!(running(Some("dwtest/app:1"), "sha256:old").outdated(&tags));
        assert!(running(Some("docker.io/dwtest/app"), "sha256:old").outdated(&tags));
        assert!(!running(Some("dwtest/app:1"), "sha256:new").outdated(&tags));
        assert!(!running(Some("dwtest/tool:1"), "sha256:tool").outdated(&tags));
        // Created from an ID or a digest, or its tag is gone: never.
        assert!(!running(None, "sha256:old").outdated(&tags));
        assert!(!running(Some("sha256:old"), "sha256:old").outdated(&tags));
        assert!(!running(Some("dwtest/gone:1"), "sha256:old").outdated(&tags));

        let list = [
            running(Some("dwtest/app:1"), "sha256:old"),
            running(Some("dwtest/app:latest"), "sha256:old"),
            running(Some("dwtest/app:1"), "sha256:new"),
            running(None, "sha256:old"),
        ];
        let images = [
            ("dwtest/app:1".to_owned(), tag_key("dwtest/app:1")),
            ("dwtest/tool:1".to_owned(), tag_key("dwtest/tool:1")),
            ("dwtest/app@sha256:x".to_owned(), None),
        ];
        let (all, by_image) = count(&list, &tags, &images);
        assert_eq!(all, 2);
        assert_eq!(
            by_image,
            [
                ("dwtest/app:1".to_owned(), 1),
                ("dwtest/tool:1".to_owned(), 0),
                ("dwtest/app@sha256:x".to_owned(), 0),
            ]
        );
        assert_eq!(count(&[], &Tags::default(), &[]), (0, vec![]));
        assert!(Tags::default().is_empty());
    }
}
