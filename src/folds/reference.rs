//! Image references as the pre-pull list and `dockwatch pull` take them:
//! `[registry/]repository[:tag][@digest]`. A bare name means `:latest`,
//! because the Engine API pulls *every* tag when none is given.

use std::fmt;

/// The registry a reference without one lives on.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The name as written, without tag or digest (what `fromImage` gets).
    pub name: String,
    /// Registry host (and port), `docker.io` when the name has none.
    pub registry: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && c.as_bytes()[0].is_ascii_alphanumeric()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && (t.as_bytes()[0].is_ascii_alphanumeric() || t.as_bytes()[0] == b'_')
}

fn valid_digest(d: &str) -> bool {
    d.split_once(':').is_some_and(|(algo, hex)| {
        !algo.is_empty()
            && algo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not an image reference: {why}");
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        if text.len() > 512 || text.chars().any(char::is_whitespace) {
            return Err(bad("too long or contains white space"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) if valid_digest(d) => (r, Some(d.to_owned())),
            Some(_) => return Err(bad("the digest must look like sha256:<hex>")),
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(bad(
                "the tag may hold letters, digits, '.', '_' and '-', up to 128",
            ));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path)
            }
            _ => (DOCKER_HUB.to_owned(), name),
        };
        if !path.split('/').all(valid_component) {
            return Err(bad(
                "repository path components are lower-case letters, digits, '.', '_' and '-'",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        let r = Self {
            name: name.to_owned(),
            registry,
            tag,
            digest,
        };
        // The bound holds for the reference as dockwatch writes it too
        // (with the `:latest` it adds), so that form parses again.
        if r.to_string().len() > 512 {
            return Err(bad("too long"));
        }
        Ok(r)
    }

    /// The repository in one spelling whatever way it was written:
    /// `registry/path`, with Docker Hub's `library/` for official images.
    /// dockerd names Hub images `busybox`, Podman `docker.io/library/busybox`;
    /// both are `docker.io/library/busybox` here.
    pub fn repository(&self) -> String {
        let path = self
            .name
            .strip_prefix(&format!("{}/", self.registry))
            .unwrap_or(&self.name);
        if self.registry == DOCKER_HUB && !path.contains('/') {
            format!("{DOCKER_HUB}/library/{path}")
        } else {
            format!("{}/{path}", self.registry)
        }
    }

    /// What the Engine API's `tag` parameter gets: the digest if there is
    /// one (that pins the content), else the tag.
    pub fn api_tag(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| "latest".to_owned())
    }
}

/// The canonical form, used as the `image` label: `name:tag`, `name@digest`
/// or `name:tag@digest`.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A registry server as configured or as docker config.json names it
/// (`https://index.docker.io/v1/`, `registry.example.com:5000`), reduced to
/// the host the image references use.
pub fn registry_host(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_parses_writes_back_to_what_parses() {
        let long = "a".repeat(512);
        assert!(ImageRef::parse(&long).is_err(), "512 + :latest");
        let fits = "a".repeat(505);
        let r = ImageRef::parse(&fits).expect("505 + :latest = 512");
        assert_eq!(ImageRef::parse(&r.to_string()), Ok(r));
    }

    #[test]
    fn bare_names_mean_latest() {
        let r = ImageRef::parse("busybox").expect("valid");
        assert_eq!(r.to_string(), "busybox:latest");
        assert_eq!(r.registry, DOCKER_HUB);
        assert_eq!(r.api_tag(), "latest");
        let r = ImageRef::parse("127.0.0.1:5000/test/app").expect("valid");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.name, "127.0.0.1:5000/test/app");
        assert_eq!(r.to_string(), "127.0.0.1:5000/test/app:latest");
    }

    #[test]
    fn tags_digests_and_ports() {
        let r = ImageRef::parse("registry.example.com:5000/ci/builder:1.2").expect("valid");
        assert_eq!(r.name, "registry.example.com:5000/ci/builder");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        let d = "sha256:14af9c97a92112ecd7861a4abb909d5b1e0de3986072eae33ebe3c9c19245b6a";
        let r = ImageRef::parse(&format!("localhost/app@{d}")).expect("valid");
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.tag, None);
        assert_eq!(r.api_tag(), d);
        assert_eq!(r.to_string(), format!("localhost/app@{d}"));
    }

    #[test]
    fn bad_references() {
        for bad in [
            "",
            "UPPER/case",
            "a b",
            "app:",
            "app:-x",
            "app@sha256:xyz",
            "/app",
            "app//x",
            "registry:5000/",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repositories_in_one_spelling() {
        let repo = |s: &str| ImageRef::parse(s).expect("valid").repository();
        assert_eq!(repo("busybox"), "docker.io/library/busybox");
        assert_eq!(
            repo("docker.io/library/busybox:1"),
            "docker.io/library/busybox"
        );
        assert_eq!(repo("library/busybox"), "docker.io/library/busybox");
        assert_eq!(repo("grafana/grafana"), "docker.io/grafana/grafana");
        assert_eq!(
            repo(
                "127.0.0.1:5000/dwtest/multi@sha256:14374738e0d7a95628173d91ad074b444cd20e317f20a01d7ed85967b9dc2c54"
            ),
            "127.0.0.1:5000/dwtest/multi"
        );
        assert_eq!(repo("localhost/app"), "localhost/app");
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("https://index.docker.io/v1/"), DOCKER_HUB);
        assert_eq!(
            registry_host("Registry.Example.com:5000"),
            "registry.example.com:5000"
        );
        assert_eq!(registry_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }
}
