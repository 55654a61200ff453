//! Prometheus `file_sd` files as a list of daemons: each target is a Docker
//! host URL (`unix:///path`, `tcp://host:port`); a `daemon` label names it,
//! else the name is the URL's `host:port` (or the socket's path). JSON or
//! YAML, by the file's extension, as Prometheus reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::files::regular_and_at_most;
use crate::config::{DaemonConfig, DiscoveryConfig, Endpoint, Host};

/// The largest `file_sd` file read.
const MAX_FILE: u64 = 16 << 20;

/// One target group of a file.
#[derive(Debug, Deserialize)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A target as a file lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    /// The `daemon` label, if the group has one.
    pub name: Option<String>,
}

/// The files `patterns` name now, sorted. A pattern that matches nothing
/// is not an error (a fleet can be empty for a while).
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        let paths = glob::glob(p).map_err(|e| format!("{p:?} is not a valid path pattern: {e}"))?;
        for path in paths {
            out.push(path.map_err(|e| format!("{}: {}", e.path().display(), e.error()))?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Reads one file's targets.
pub fn read(path: &Path) -> Result<Vec<Target>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    regular_and_at_most(path, &meta, MAX_FILE)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(path, &text)
}

/// Parses a file's text; the extension says JSON (`.json`) or YAML (`.yml`,
/// `.yaml`).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Target>, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let groups: Vec<Group> = match ext {
        "json" => serde_json::from_str(text).map_err(|e| e.to_string()),
        "yml" | "yaml" => serde_yaml_ng::from_str(text).map_err(|e| e.to_string()),
        _ => Err("unknown extension: file_sd files end in .json, .yml or .yaml".to_owned()),
    }
    .map_err(|e| format!("{}: not a file_sd target list: {e}", path.display()))?;
    Ok(groups
        .into_iter()
        .flat_map(|g| {
            let name = g.labels.get("daemon").cloned();
            g.targets.into_iter().map(move |url| Target {
                url,
                name: name.clone(),
            })
        })
        .collect())
}

/// A discovered daemon's name is a label value dockwatch and `/probe` use:
/// printable, without quotes, at most 255 bytes.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
}

/// The daemon a target stands for, with the source's TLS for `tcp://`.
pub fn daemon(target: &Target, source: &DiscoveryConfig) -> Result<DaemonConfig, String> {
    let host = Host::parse(&target.url)?;
    let name = match (&target.name, &host.endpoint) {
        (Some(n), _) => n.clone(),
        (None, Endpoint::Tcp(addr)) => addr.clone(),
        (None, Endpoint::Unix(path)) => path.display().to_string(),
    };
    if !valid_name(&name) {
        return Err(format!(
            "{name:?} (target {}) is not a usable daemon name: use at most 255 letters, digits, '-', '_', '.', ':' or '/'",
            target.url
        ));
    }
    let tls = match host.endpoint {
        Endpoint::Tcp(_) => source.tls.clone(),
        Endpoint::Unix(_) => None,
    };
    Ok(DaemonConfig { name, host, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> DiscoveryConfig {
        DiscoveryConfig {
            files: vec!["/x/*.json".into()],
            refresh: std::time::Duration::from_secs(30),
            tls: Some(crate::config::TlsConfig {
                ca: "/ca.pem".into(),
                cert: "/cert.pem".into(),
                key: "/key.pem".into(),
            }),
        }
    }

    #[test]
    fn json_and_yaml_say_the_same() {
        let json = r#"[{"targets": ["tcp://10.0.0.5:2376", "unix:///run/docker.sock"]},
                      {"targets": ["tcp://10.0.0.6:2376"], "labels": {"daemon": "build-06", "rack": "r1"}}]"#;
        let yaml = "- targets: [\"tcp://10.0.0.5:2376\", \"unix:///run/docker.sock\"]\n\
                    - targets: [\"tcp://10.0.0.6:2376\"]\n  labels:\n    daemon: build-06\n    rack: r1\n";
        let a = parse(Path::new("f.json"), json).expect("json");
        let b = parse(Path::new("f.yml"), yaml).expect("yaml");
        assert_eq!(a, b);
        let names: Vec<_> = a
            .iter()
            .map(|t| daemon(t, &source()).expect("a daemon"))
            .map(|d| (d.name, d.tls.is_some()))
            .collect();
        assert_eq!(
            names,
            [
                ("10.0.0.5:2376".to_owned(), true),
                ("/run/docker.sock".to_owned(), false),
                ("build-06".to_owned(), true)
            ]
        );
    }

    #[test]
    fn bad_files_and_targets_say_what_is_wrong() {
        let e = parse(Path::new("/d/f.json"), "{").expect_err("not json");
        assert!(e.starts_with("/d/f.json: not a file_sd target list"), "{e}");
        let e = parse(Path::new("/d/f.txt"), "[]").expect_err("extension");
        assert!(e.contains("unknown extension"), "{e}");
        let e = parse(Path::new("/d/f.json"), r#"[{"labels": {}}]"#).expect_err("no targets");
        assert!(e.contains("targets"), "{e}");
        let t = Target {
            url: "http://x:1".into(),
            name: None,
        };
        assert!(
            daemon(&t, &source())
                .expect_err("scheme")
                .contains("unknown scheme")
        );
        let t = Target {
            url: "tcp://h:1".into(),
            name: Some("a \"b\"".into()),
        };
        assert!(
            daemon(&t, &source())
                .expect_err("name")
                .contains("not a usable daemon name")
        );
    }
}
