//! The checks of the files and variables a configuration names (TLS
//! certificates and keys, registry secrets, the docker CLI config), shared
//! by `check-config`, start-up and reload: [`load`] is the whole loader.

use std::path::Path;

use crate::config::{self, Config, ConfigError, Problem, Source};
use crate::{credentials, tls};

/// Every problem with the files and variables `config` names, each under
/// its key. Empty means all of them can be read and used now.
pub fn files(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key)
        && let Err((field, e)) = tls::server_config(cert, key)
    {
        problems.push(Problem::new(format!("server.{field}"), e));
    }
    for (i, d) in config.daemons.iter().enumerate() {
        if let Some(t) = &d.tls {
            for (field, e) in tls::check_files(t) {
                problems.push(Problem::new(format!("daemons[{i}].tls.{field}"), e));
            }
        }
    }
    if let Some(path) = &config.prepull.docker_config
        && let Err(e) = credentials::read_docker_config(path)
    {
        problems.push(Problem::new("prepull.docker_config", e.to_string()));
    }
    for (i, r) in config.registries.iter().enumerate() {
        for (field, e) in credentials::check(r) {
            problems.push(Problem::new(format!("registries[{i}].{field}"), e));
        }
    }
    problems
}

/// Loads the configuration ([`config::load`]) and checks its files.
pub fn load(path: Option<&Path>) -> Result<(Config, Source), ConfigError> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

/// [`load`] with an injectable lookup of the docker CLI's variables.
pub fn load_with_env(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Source), ConfigError> {
    let (config, source) = config::load_with_env(path, env)?;
    let problems = files(&config);
    if problems.is_empty() {
        Ok((config, source))
    } else {
        Err(ConfigError(problems))
    }
}
