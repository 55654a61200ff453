//! Registry credentials for pulls: from `[[registries]]` (password or token
//! read from a file or the environment at pull time, so rotation needs no
//! restart) and, when asked, the docker CLI's config.json `auths`.
//!
//! Secrets never leave this module except inside the `X-Registry-Auth`
//! header bollard builds: errors name files and variables, never contents,
//! and [`Secret`] prints as `***`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::config::RegistryConfig;
use crate::folds::reference::{ImageRef, registry_host};

/// A secret string that cannot be printed by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why credentials could not be had. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("environment variable {0} is not set or empty")]
    Env(String),
    #[error("{path}: {reason}")]
    DockerConfig { path: PathBuf, reason: String },
    #[error("{0}")]
    Other(String),
}

fn read_secret_file(path: &Path) -> Result<Secret, CredentialError> {
    let err = |reason: String| CredentialError::File {
        path: path.to_owned(),
        reason,
    };
    // The error says why (missing, permission, not a file), never what is
    // inside.
    let bytes = crate::config::files::read_small_file(path).map_err(CredentialError::Other)?;
    let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(err("the file is empty".into()));
    }
    Ok(Secret(secret.to_owned()))
}

fn read_secret_env(var: &str) -> Result<Secret, CredentialError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v)),
        _ => Err(CredentialError::Env(var.to_owned())),
    }
}

/// Start-up check of one `[[registries]]` entry's secrets: each file or
/// variable it names can be read now. (field, problem); never the secret.
pub fn check(r: &RegistryConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if let Some(p) = &r.password_file
        && let Err(e) = read_secret_file(p)
    {
        problems.push(("password_file", e.to_string()));
    }
    if let Some(v) = &r.password_env
        && let Err(e) = read_secret_env(v)
    {
        problems.push(("password_env", e.to_string()));
    }
    if let Some(p) = &r.identity_token_file
        && let Err(e) = read_secret_file(p)
    {
        problems.push(("identity_token_file", e.to_string()));
    }
    problems
}

#[derive(Deserialize)]
struct DockerConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigAuth>,
}

#[derive(Deserialize)]
struct DockerConfigAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// One registry's credentials from a docker config.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuth {
    username: Option<String>,
    password: Option<Secret>,
    identity_token: Option<Secret>,
}

/// Reads a docker config.json's `auths`, keyed by registry host. Credential
/// helpers (`credsStore`) are not consulted.
pub fn read_docker_config(path: &Path) -> Result<BTreeMap<String, StoredAuth>, CredentialError> {
    let err = |reason: String| CredentialError::DockerConfig {
        path: path.to_owned(),
        reason,
    };
    let bytes = crate::config::files::read_small_file(path).map_err(CredentialError::Other)?;
    let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
    // serde's message may quote the offending token, which could be a
    // secret: report only where the JSON broke.
    let file: DockerConfigFile = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "not a docker config.json (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let mut out = BTreeMap::new();
    for (server, a) in file.auths {
        let (mut username, mut password) = (a.username, a.password.map(Secret));
        if let Some(encoded) = a.auth.filter(|s| !s.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    err(format!(
                        "auths.{server}.auth is not base64 of user:password"
                    ))
                })?;
            let (u, p) = decoded.split_once(':').ok_or_else(|| {
                err(format!(
                    "auths.{server}.auth is not base64 of user:password"
                ))
            })?;
            username = Some(u.to_owned());
            password = Some(Secret(p.to_owned()));
        }
        out.insert(
            registry_host(&server),
            StoredAuth {
                username,
                password,
                identity_token: a.identitytoken.filter(|t| !t.is_empty()).map(Secret),
            },
        );
    }
    Ok(out)
}

/// What the daemon takes in the `X-Registry-Auth` header of a pull: the
/// Engine API's `AuthConfig`. Its `Debug` hides the secrets.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DockerCredentials {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serveraddress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identitytoken: Option<String>,
}

impl fmt::Debug for DockerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerCredentials")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .finish_non_exhaustive()
    }
}

impl DockerCredentials {
    /// The `X-Registry-Auth` header value: base64url of the JSON.
    pub fn header(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE.encode(json)
    }

    /// The secrets in it, to scrub from anything a registry echoes back.
    pub fn secrets(&self) -> Vec<String> {
        [&self.password, &self.identitytoken]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect()
    }
}

/// The credentials to pull `image` with, if any are configured for its
/// registry. `[[registries]]` wins over docker config.json.
pub fn for_image(
    image: &ImageRef,
    registries: &[RegistryConfig],
    docker_config: Option<&Path>,
) -> Result<Option<DockerCredentials>, CredentialError> {
    let host = &image.registry;
    if let Some(r) = registries
        .iter()
        .find(|r| registry_host(&r.server) == *host)
    {
        let password = match (&r.password_file, &r.password_env) {
            (Some(p), _) => Some(read_secret_file(p)?),
            (None, Some(v)) => Some(read_secret_env(v)?),
            (None, None) => None,
        };
        let token = r
            .identity_token_file
            .as_deref()
            .map(read_secret_file)
            .transpose()?;
        return Ok(Some(DockerCredentials {
            username: r.username.clone(),
            password: password.map(|s| s.0),
            identitytoken: token.map(|s| s.0),
            serveraddress: Some(host.clone()),
        }));
    }
    if let Some(path) = docker_config
        && let Some(a) = read_docker_config(path)?.remove(host)
    {
        return Ok(Some(DockerCredentials {
            username: a.username,
            password: a.password.map(|s| s.0),
            identitytoken: a.identity_token.map(|s| s.0),
            serveraddress: Some(host.clone()),
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dw-cred-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn registry(server: &str) -> RegistryConfig {
        RegistryConfig {
            server: server.into(),
            username: None,
            password_file: None,
            password_env: None,
            identity_token_file: None,
        }
    }

    #[test]
    fn password_file_is_read_at_pull_time_and_never_printed() {
        let d = dir("file");
        let pass = d.join("pass");
        std::fs::write(&pass, "s3cr3t-Value\n").expect("write");
        let r = RegistryConfig {
            username: Some("ci".into()),
            password_file: Some(pass.clone()),
            ..registry("https://Registry.Example.com:5000/")
        };
        assert!(check(&r).is_empty(), "{:?}", check(&r));
        let image = ImageRef::parse("registry.example.com:5000/ci/app:1").expect("ref");
        let c = for_image(&image, std::slice::from_ref(&r), None)
            .expect("ok")
            .expect("some");
        assert_eq!(c.username.as_deref(), Some("ci"));
        assert_eq!(c.password.as_deref(), Some("s3cr3t-Value"));
        assert_eq!(
            c.serveraddress.as_deref(),
            Some("registry.example.com:5000")
        );
        // Another registry gets nothing.
        let other = ImageRef::parse("elsewhere.example/app").expect("ref");
        assert_eq!(for_image(&other, std::slice::from_ref(&r), None), Ok(None));
        // A missing file names the file, not a secret.
        std::fs::remove_file(&pass).expect("rm");
        let e = for_image(&image, &[r], None).expect_err("missing file");
        assert!(e.to_string().contains("pass"), "{e}");
        std::fs::remove_dir_all(d).ok();
        assert_eq!(format!("{:?}", Secret("x".into())), "***");
    }

    #[test]
    fn config_problems_name_the_field() {
        let r = registry("r.example");
        assert_eq!(r.shape_problems()[0].0, "username");
        let r = RegistryConfig {
            username: Some("u".into()),
            ..registry("r.example")
        };
        assert_eq!(r.shape_problems()[0].0, "password_file");
        let r = RegistryConfig {
            username: Some("u".into()),
            password_env: Some("DOCKWATCH_TEST_SURELY_UNSET_VAR".into()),
            ..registry("r.example")
        };
        let problems = check(&r);
        assert_eq!(problems[0].0, "password_env", "{problems:?}");
        let r = RegistryConfig {
            username: Some("u".into()),
            password_file: Some("/nonexistent/pass".into()),
            ..registry("r.example")
        };
        assert_eq!(check(&r)[0].0, "password_file");
    }

    #[test]
    fn docker_config_auths() {
        let d = dir("cfg");
        let path = d.join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:hunter2");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"127.0.0.1:5001":{{"identitytoken":"tok"}}}}}}"#),
        )
        .expect("write");
        let hub = ImageRef::parse("library/busybox").expect("ref");
        let c = for_image(&hub, &[], Some(&path))
            .expect("ok")
            .expect("some");
        assert_eq!(c.username.as_deref(), Some("bob"));
        assert_eq!(c.password.as_deref(), Some("hunter2"));
        let local = ImageRef::parse("127.0.0.1:5001/x").expect("ref");
        let c = for_image(&local, &[], Some(&path))
            .expect("ok")
            .expect("some");
        assert_eq!(c.identitytoken.as_deref(), Some("tok"));
        std::fs::write(&path, r#"{"auths":{"x":{"auth":"hunter2-not-base64!"}}}"#).expect("write");
        let e = read_docker_config(&path).expect_err("bad auth");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        std::fs::write(&path, r#"{"auths": [hunter2"#).expect("write");
        let e = read_docker_config(&path).expect_err("bad json");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        std::fs::remove_dir_all(d).ok();
    }
}
