//! The checks of the files and variables a configuration names (TLS
//! certificates and keys, registry secrets, the docker CLI config), shared
//! by `check-config`, start-up and reload: [`load`] is the whole loader.

use std::path::Path;

use crate::config::{self, Config, ConfigError, ConfigFile, Endpoint, Problem, Source};
use crate::config::{credentials, file_sd, tls};

/// Every problem with the files and variables `config` names, each under
/// its key. Empty means all of them can be read and used now. It takes the
/// config as written, so that these are reported along with every other
/// problem of a config that does not convert.
pub fn files(config: &ConfigFile) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key)
        && let Err(e) = tls::server_config(cert, key)
    {
        problems.push(Problem::new(format!("server.{}", e.field()), e.to_string()));
    }
    for (i, d) in config.daemons.iter().enumerate() {
        // TLS files matter only for a tcp:// host (a unix one with a tls
        // table is a problem of its own).
        let tcp = matches!(config::parse_host(&d.host), Ok(Endpoint::Tcp(_)));
        if let (true, Some(t)) = (tcp, &d.tls) {
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
    discovery(config, &mut problems);
    problems
}

/// The `[[discovery]]` sources: their TLS files, and every file they list
/// now read and its targets turned into daemons, none named like a
/// `[[daemons]]` entry or like another discovered one.
fn discovery(config: &ConfigFile, problems: &mut Vec<Problem>) {
    let mut names: std::collections::BTreeMap<String, String> = config
        .daemons
        .iter()
        .enumerate()
        .map(|(j, d)| (d.name.clone(), format!("daemons[{j}]")))
        .collect();
    for (i, source) in config.discovery.iter().enumerate() {
        let key = format!("discovery[{i}]");
        if let Some(t) = &source.tls {
            for (field, e) in tls::check_files(t) {
                problems.push(Problem::new(format!("{key}.tls.{field}"), e));
            }
        }
        let paths = match file_sd::expand(&source.files) {
            Ok(p) => p,
            Err(e) => {
                problems.push(Problem::new(format!("{key}.files"), e));
                continue;
            }
        };
        for path in paths {
            let targets = match file_sd::read(&path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem::new(format!("{key}.files"), e));
                    continue;
                }
            };
            for target in targets {
                match file_sd::daemon(&target, source) {
                    Err(e) => problems.push(Problem::new(
                        format!("{key}.files"),
                        format!("{}: {e}", path.display()),
                    )),
                    Ok(d) => {
                        let here = format!("{} in {}", target.url, path.display());
                        if let Some(other) = names.insert(d.name.clone(), here.clone()) {
                            problems.push(Problem::new(
                                format!("{key}.files"),
                                format!(
                                    "the daemon name {:?} of {here} is also the name of {other}: names must be unique",
                                    d.name
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// Loads the configuration (from `path`, or `./config.toml` if present, the
/// process environment and the docker CLI's variables), converts it, and
/// checks the files it names: the one loader of `check-config`, start-up
/// and reload.
pub fn load(path: Option<&Path>) -> Result<(Config, Source), ConfigError> {
    load_with_env(path, &|k| std::env::var(k).ok())
}

/// [`load`] with an injectable lookup of the docker CLI's variables.
pub fn load_with_env(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Source), ConfigError> {
    let (file, source) = config::read_with_env(path, env)?;
    let mut problems = files(&file);
    match file.into_config() {
        Ok(config) if problems.is_empty() => Ok((config, source)),
        Ok(_) => Err(ConfigError(problems)),
        Err(mut p) => {
            p.append(&mut problems);
            Err(ConfigError(p))
        }
    }
}
