//! Typed, strict configuration: defaults, then a TOML file, then `DOCKWATCH_*`
//! environment overrides (figment) into a [`ConfigFile`] (values as written),
//! converted once into the typed [`Config`] (hosts as endpoints, images as
//! references) while every problem is collected with the key it belongs to.
//! No I/O here but reading the config file: the files the config names are
//! checked by the `checks` module.

pub mod credentials;
pub mod exposure;
pub mod file_sd;
pub mod files;
pub mod load;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Deserializer};

/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";
/// The default `[poll] images_interval`.
pub const DEFAULT_IMAGES_INTERVAL: Duration = Duration::from_secs(600);
/// Where dockerd listens by default.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

use crate::folds::reference::{ImageRef, registry_host};
use crate::folds::window::Window;

/// The configuration. `D`, `I` and `W` are the daemon, pre-pull image and
/// pre-pull window entries: typed in [`Config`], as written in [`ConfigFile`].
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    deny_unknown_fields,
    default,
    bound(deserialize = "D: Deserialize<'de>, I: Deserialize<'de>, W: Deserialize<'de>")
)]
pub struct Config<D = DaemonConfig, I = PrepullImage, W = Window> {
    pub server: ServerConfig,
    pub poll: PollConfig,
    pub daemons: Vec<D>,
    pub image_filters: Vec<ImageFilterConfig>,
    pub prepull: PrepullConfig<I, W>,
    pub registries: Vec<RegistryConfig>,
    /// More daemons, from Prometheus `file_sd` files.
    pub discovery: Vec<DiscoveryConfig>,
    pub prune: PruneConfig,
}

/// A `[[discovery]]` source: daemons listed in Prometheus `file_sd` files
/// (JSON or YAML), re-read every `refresh` and when a file changes.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Paths; the file name may be a glob (`*.json`).
    pub files: Vec<String>,
    #[serde(default = "default_refresh", deserialize_with = "de_duration")]
    pub refresh: Duration,
    /// Mutual TLS for every `tcp://` target these files list.
    pub tls: Option<TlsConfig>,
}

fn default_refresh() -> Duration {
    Duration::from_secs(30)
}

impl DiscoveryConfig {
    /// The `source` label: the patterns as written.
    pub fn source(&self) -> String {
        self.files.join(",")
    }
}

/// The configuration as written: host URLs, image references and windows
/// still text.
pub type ConfigFile = Config<DaemonEntry, ImageEntry, String>;

impl<D, I, W> Default for Config<D, I, W> {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            poll: PollConfig::default(),
            daemons: Vec::new(),
            image_filters: Vec::new(),
            prepull: PrepullConfig::default(),
            registries: Vec::new(),
            discovery: Vec::new(),
            prune: PruneConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// HTTPS for every endpoint, with this certificate chain and key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Basic auth: user name -> bcrypt hash (`htpasswd -nbB user pass`).
    pub basic_auth_users: BTreeMap<String, String>,
    /// `POST /-/reload` re-reads the config (SIGHUP always does).
    pub enable_reload: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9779)),
            tls_cert: None,
            tls_key: None,
            basic_auth_users: BTreeMap::new(),
            enable_reload: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Applies to every single Docker call.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// The full image listing; image events refresh it sooner. Default:
    /// `interval`.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub images_interval: Option<Duration>,
    /// `/system/df`; 0 turns it off.
    #[serde(deserialize_with = "de_duration")]
    pub disk_interval: Duration,
    /// Docker API calls in progress at once, over all daemons together.
    pub max_concurrent_calls: usize,
}

/// Calls in progress = calls a second × their duration: a thousand daemons
/// at 15 s make some 470 calls a second, so 256 leaves room for calls of
/// half a second on average, or for a hundred daemons that hang (each holding
/// a call until its timeout, about 50 at a time) beside fast ones; it still
/// bounds the sockets, answers and decoding in progress when a thousand
/// event streams start at once or image events come from every daemon
/// together. Measured in BENCHMARKS.md ("A thousand daemons").
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 256;

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(5),
            images_interval: None,
            disk_interval: Duration::from_secs(300),
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
        }
    }
}

impl PollConfig {
    /// The safety re-listing of images while the event stream is followed:
    /// 10 minutes, or `interval` if that is longer.
    pub fn images_interval(&self) -> Duration {
        self.images_interval
            .unwrap_or(DEFAULT_IMAGES_INTERVAL.max(self.interval))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(
    deny_unknown_fields,
    default,
    bound(deserialize = "I: Deserialize<'de>, W: Deserialize<'de>")
)]
pub struct PrepullConfig<I = PrepullImage, W = Window> {
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// A whole pull.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// No progress for this long cancels the pull.
    #[serde(deserialize_with = "de_duration")]
    pub stall_timeout: Duration,
    /// Pulls at once per daemon.
    pub concurrency: usize,
    /// Up to this much random delay before each round.
    #[serde(deserialize_with = "de_duration")]
    pub jitter: Duration,
    /// A docker CLI config.json whose `auths` are used too.
    pub docker_config: Option<PathBuf>,
    /// How often to ask the registry (through the daemon) whether each
    /// image's tag moved; 0 turns the checks off.
    #[serde(deserialize_with = "de_duration")]
    pub check_interval: Duration,
    /// Scheduled pulls start only inside one of these; none means any time.
    pub windows: Vec<W>,
    pub images: Vec<I>,
}

impl<I, W> Default for PrepullConfig<I, W> {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(30 * 60),
            stall_timeout: Duration::from_secs(120),
            concurrency: 1,
            jitter: Duration::from_secs(30),
            docker_config: None,
            check_interval: Duration::from_secs(600),
            windows: Vec::new(),
            images: Vec::new(),
        }
    }
}

impl<I, W> PrepullConfig<I, W> {
    /// The same settings with other image and window entries: the one
    /// place the `[prepull]` settings go from the config as written to the
    /// typed one and back.
    fn with_entries<J, X>(self, images: Vec<J>, windows: Vec<X>) -> PrepullConfig<J, X> {
        PrepullConfig {
            interval: self.interval,
            timeout: self.timeout,
            stall_timeout: self.stall_timeout,
            concurrency: self.concurrency,
            jitter: self.jitter,
            docker_config: self.docker_config,
            check_interval: self.check_interval,
            windows,
            images,
        }
    }

    /// The same settings, each entry mapped.
    fn map_entries<J, X>(
        mut self,
        image: impl FnMut(I) -> J,
        window: impl FnMut(&W) -> X,
    ) -> PrepullConfig<J, X> {
        let images = std::mem::take(&mut self.images)
            .into_iter()
            .map(image)
            .collect();
        let windows = self.windows.iter().map(window).collect();
        self.with_entries(images, windows)
    }
}

/// A `[[prepull.images]]` entry as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageEntry {
    /// A tag or a digest; a bare name means `:latest`.
    pub image: String,
    /// Daemon names; every daemon when absent.
    pub daemons: Option<Vec<String>>,
}

/// A configured pre-pull image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepullImage {
    pub image: ImageRef,
    /// Daemon names; every daemon when absent.
    pub daemons: Option<Vec<String>>,
}

impl PrepullImage {
    pub fn for_daemon(&self, daemon: &str) -> bool {
        self.daemons
            .as_ref()
            .is_none_or(|ds| ds.iter().any(|d| d == daemon))
    }
}

/// `[prune]`: opt-in removal of dangling images (what pre-pulls leave behind
/// when a tag moves). Only images the daemon lists with `dangling=true` (and
/// `filters`) are candidates, and only those created longer ago than
/// `older_than` that no container uses and no configured pre-pull names.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PruneConfig {
    /// Off by default: a monitoring agent removes nothing unless told to.
    pub enabled: bool,
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// Up to this much random delay before each round, the first included.
    #[serde(deserialize_with = "de_duration")]
    pub jitter: Duration,
    /// Only images whose `Created` is longer ago than this.
    #[serde(deserialize_with = "de_duration")]
    pub older_than: Duration,
    pub when: PruneWhen,
    /// Removals per round and daemon at most; the oldest go first.
    pub max_per_round: usize,
    /// Log and count what would go; remove nothing.
    pub dry_run: bool,
    /// More Engine filters for the dangling list (`label`, `reference`, ...).
    pub filters: BTreeMap<String, FilterValues>,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: Duration::from_secs(3600),
            jitter: Duration::from_secs(300),
            older_than: Duration::from_secs(24 * 3600),
            when: PruneWhen::default(),
            max_per_round: 50,
            dry_run: false,
            filters: BTreeMap::new(),
        }
    }
}

/// `[prune.when]`: conditions for a round to run at all.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PruneWhen {
    /// Only when the last `/system/df` says more than this many bytes of
    /// images could be freed.
    #[serde(deserialize_with = "de_opt_size")]
    pub reclaimable_above: Option<u64>,
}

/// The `/images/json` filter keys the Docker Engine knows: dockerd 20.10
/// takes `dangling`, `label`, `before`, `since`, `reference`; later
/// versions add `until` and `label!` (label not equal). A daemon refuses a
/// key it does not take, and the round then fails with its answer.
pub const IMAGE_FILTER_KEYS: [&str; 7] = [
    "dangling",
    "label",
    "label!",
    "before",
    "since",
    "reference",
    "until",
];

impl PruneConfig {
    /// The filters of the dangling list: `dangling=true` and the configured
    /// ones, in the form the Engine API takes.
    pub fn query(&self) -> BTreeMap<String, Vec<String>> {
        let mut q: BTreeMap<String, Vec<String>> = self
            .filters
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect();
        q.insert("dangling".to_owned(), vec!["true".to_owned()]);
        q
    }
}

/// Parses a byte size as the config takes it: "10GiB", "500MB", "1.5 TiB",
/// or a plain number of bytes (the `bytesize` crate's syntax; GiB is 2^30,
/// GB 10^9).
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {text:?}: {e}; use a size like \"10GiB\" or \"500MB\""))
}

fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(TextVisitor {
        expecting: "a size string like \"10GiB\" or a number of bytes",
        parse: parse_size,
        number: Some(|v| {
            u64::try_from(v).map_err(|_| format!("invalid size {v}: must not be negative"))
        }),
    })
    .map(Some)
}

/// A value written as text (a duration, a size) and parsed by `parse`;
/// with `number`, a plain integer is taken too, else it is refused as
/// serde refuses a type it does not expect.
struct TextVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
    number: Option<fn(i128) -> Result<T, String>>,
}

impl<T> serde::de::Visitor<'_> for TextVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        match self.number {
            Some(number) => number(i128::from(v)).map_err(E::custom),
            None => Err(E::invalid_type(serde::de::Unexpected::Unsigned(v), &self)),
        }
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        match self.number {
            Some(number) => number(i128::from(v)).map_err(E::custom),
            None => Err(E::invalid_type(serde::de::Unexpected::Signed(v), &self)),
        }
    }
}

/// Credentials for one registry. Secrets are read from files or the
/// environment when a pull needs them, never stored in the config itself.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Host (and port) as image references name it: `registry.example.com:5000`.
    pub server: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub identity_token_file: Option<PathBuf>,
}

/// A `[[daemons]]` entry as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DaemonEntry {
    pub name: String,
    pub host: String,
    pub tls: Option<TlsConfig>,
}

/// A daemon to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// The `daemon` label.
    pub name: String,
    pub host: Host,
    /// Mutual TLS; only with a `tcp://` host.
    pub tls: Option<TlsConfig>,
}

/// A daemon's address: the URL as written, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub url: String,
    pub endpoint: Endpoint,
}

impl Host {
    pub fn parse(url: &str) -> Result<Self, String> {
        Ok(Self {
            url: url.to_owned(),
            endpoint: parse_host(url)?,
        })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Mutual TLS, as dockerd's `--tlsverify --tlscacert --tlscert --tlskey` expects.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageFilterConfig {
    pub name: String,
    /// Passed to the daemon's `filters` query as a map of string lists.
    pub filters: BTreeMap<String, FilterValues>,
}

/// One filter key's values. Accepts the list form `["a", "b"]` and the legacy
/// map-of-bools form `{ "a" = true }` that older docs use; both mean the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterValues(pub Vec<String>);

impl<'de> Deserialize<'de> for FilterValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<String>),
            Legacy(BTreeMap<String, bool>),
        }
        match Form::deserialize(d) {
            Ok(Form::List(v)) => Ok(Self(v)),
            Ok(Form::Legacy(m)) => Ok(Self(
                m.into_iter()
                    .filter(|(_, on)| *on)
                    .map(|(k, _)| k)
                    .collect(),
            )),
            Err(_) => Err(serde::de::Error::custom(
                "expected a list of strings like [\"true\"] or a map of bools like { \"true\" = true }",
            )),
        }
    }
}

impl ImageFilterConfig {
    /// The filters in the form the Engine API takes.
    pub fn query(&self) -> BTreeMap<String, Vec<String>> {
        self.filters
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()
    }
}

/// Parses a duration as the config takes it: "500ms", "15s", "2m", "1h30m",
/// "1d" (humantime's syntax), in whole units of fixed length: no fractions,
/// months or years, which humantime would take.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    let text = text.trim();
    if text.contains('.') {
        return Err(bad("use whole numbers of a smaller unit, like \"1500ms\""));
    }
    let inexact = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|unit| matches!(unit, "M" | "month" | "months" | "y" | "year" | "years"));
    if inexact {
        return Err(bad(
            "months and years have no fixed length; use days (\"30d\")",
        ));
    }
    humantime::parse_duration(text).map_err(|e| bad(&e.to_string()))
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(TextVisitor {
        expecting: "a duration string like \"15s\", \"2m\" or \"1h\"",
        parse: parse_duration,
        number: None,
    })
}

/// One thing wrong with the configuration, and the key it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found while loading, in the order found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

/// Where the configuration came from, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Defaults,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Defaults => f.write_str("built-in defaults"),
        }
    }
}

/// Reads the configuration as written, with the default daemon added when
/// none is configured; nothing is checked beyond its syntax and types.
pub fn read_with_env(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(ConfigFile, Source), ConfigError> {
    let source = match path {
        Some(p) if !p.is_file() => {
            return Err(ConfigError(vec![Problem::new(
                "--config",
                format!(
                    "config file {} does not exist or is not a file",
                    p.display()
                ),
            )]));
        }
        Some(p) => Source::File(p.to_owned()),
        None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
            Source::File(PathBuf::from(DEFAULT_CONFIG_FILE))
        }
        None => Source::Defaults,
    };
    let mut figment = Figment::new();
    if let Source::File(p) = &source {
        figment = figment.merge(Toml::file_exact(p));
    }
    let figment = figment.merge(Env::prefixed("DOCKWATCH_").split("__"));
    let mut file: ConfigFile = figment.extract().map_err(|e| {
        ConfigError(
            e.into_iter()
                .map(|e| {
                    let key = key_of(&e.path);
                    let origin = e
                        .metadata
                        .as_ref()
                        .map(|m| match &m.source {
                            Some(src) => format!(" (in {src})"),
                            None => format!(" (in {})", m.name),
                        })
                        .unwrap_or_default();
                    Problem::new(key, format!("{}{origin}", e.kind))
                })
                .collect(),
        )
    })?;
    if file.daemons.is_empty() {
        file.daemons.push(default_daemon(env));
    }
    Ok((file, source))
}

/// A figment path as the keys `validate` uses: `daemons[0].host`.
fn key_of(path: &[String]) -> String {
    if path.is_empty() {
        return "(top level)".to_owned();
    }
    let mut key = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() {
            key.push('[');
            key.push_str(part);
            key.push(']');
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(part);
        }
    }
    key
}

/// The daemon watched when none is configured, found the way the docker CLI
/// finds it: `DOCKER_HOST`, with TLS when `DOCKER_TLS_VERIFY` is set, using the
/// certificates in `DOCKER_CERT_PATH` (default `~/.docker`).
pub fn default_daemon(env: &dyn Fn(&str) -> Option<String>) -> DaemonEntry {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    let host = set("DOCKER_HOST").unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
    let tls = set("DOCKER_TLS_VERIFY").map(|_| {
        let dir = set("DOCKER_CERT_PATH").map_or_else(
            || PathBuf::from(set("HOME").unwrap_or_default()).join(".docker"),
            PathBuf::from,
        );
        TlsConfig {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    });
    DaemonEntry {
        name: "local".to_owned(),
        host,
        tls,
    }
}

/// How to reach a daemon, parsed from its `host` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port`
    Tcp(String),
}

/// Parses `unix:///path` or `tcp://host:port`.
pub fn parse_host(host: &str) -> Result<Endpoint, String> {
    if let Some(path) = host.strip_prefix("unix://") {
        if path.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        return Err(format!(
            "{host:?}: a unix socket needs an absolute path, like unix:///var/run/docker.sock"
        ));
    }
    if let Some(addr) = host.strip_prefix("tcp://") {
        let addr = addr.trim_end_matches('/');
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if port_ok && !addr.contains('/') {
            return Ok(Endpoint::Tcp(addr.to_owned()));
        }
        return Err(format!(
            "{host:?}: expected tcp://HOST:PORT, like tcp://10.0.0.5:2376"
        ));
    }
    Err(format!(
        "{host:?}: unknown scheme; use unix:///path/to/docker.sock or tcp://HOST:PORT"
    ))
}

/// Label values must be short, printable and safe in a URL and HTML.
fn check_name(key: &str, name: &str, problems: &mut Vec<Problem>) {
    if name.is_empty() {
        problems.push(Problem::new(key, "must not be empty"));
    } else if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        problems.push(Problem::new(
            key,
            format!("{name:?}: use at most 64 letters, digits, '-', '_' or '.'"),
        ));
    }
}

/// `{key}.name` is a valid name and the first `what` of that name
/// (`seen` holds the names before it).
fn check_unique_name<'a>(
    key: &str,
    name: &'a str,
    what: &str,
    seen: &mut BTreeSet<&'a str>,
    problems: &mut Vec<Problem>,
) {
    check_name(&format!("{key}.name"), name, problems);
    if !name.is_empty() && !seen.insert(name) {
        problems.push(Problem::new(
            format!("{key}.name"),
            format!("duplicate {what} name {name:?}"),
        ));
    }
}

impl Config {
    /// Every problem of an already typed config; empty for one that
    /// [`load`] returned.
    pub fn validate(&self) -> Vec<Problem> {
        ConfigFile::from(self.clone())
            .into_config()
            .err()
            .unwrap_or_default()
    }

    /// The pre-pull images configured for `daemon`, in config order.
    pub fn images_for(&self, daemon: &str) -> Vec<ImageRef> {
        self.prepull
            .images
            .iter()
            .filter(|i| i.for_daemon(daemon))
            .map(|i| i.image.clone())
            .collect()
    }
}

impl From<Config> for ConfigFile {
    fn from(c: Config) -> Self {
        Self {
            server: c.server,
            poll: c.poll,
            daemons: c
                .daemons
                .into_iter()
                .map(|d| DaemonEntry {
                    name: d.name,
                    host: d.host.url,
                    tls: d.tls,
                })
                .collect(),
            image_filters: c.image_filters,
            prepull: c.prepull.map_entries(
                |i| ImageEntry {
                    image: i.image.to_string(),
                    daemons: i.daemons,
                },
                ToString::to_string,
            ),
            registries: c.registries,
            discovery: c.discovery,
            prune: c.prune,
        }
    }
}

impl ConfigFile {
    /// The typed config, or every problem, each naming its key.
    pub fn into_config(self) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        self.validate_poll(&mut problems);
        self.validate_server(&mut problems);
        let daemons = self.daemons(&mut problems);
        self.validate_filters(&mut problems);
        let names: BTreeSet<&str> = self.daemons.iter().map(|d| d.name.as_str()).collect();
        let images = self.prepull_images(&names, &mut problems);
        let windows = self.prepull_windows(&mut problems);
        self.validate_registries(&mut problems);
        self.validate_discovery(&mut problems);
        self.validate_prune(&mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let Self {
            server,
            poll,
            image_filters,
            prepull,
            registries,
            discovery,
            prune,
            ..
        } = self;
        Ok(Config {
            server,
            poll,
            daemons,
            image_filters,
            prepull: prepull.with_entries(images, windows),
            registries,
            discovery,
            prune,
        })
    }

    fn validate_discovery(&self, problems: &mut Vec<Problem>) {
        for (i, d) in self.discovery.iter().enumerate() {
            let key = format!("discovery[{i}]");
            if d.files.is_empty() {
                problems.push(Problem::new(
                    format!("{key}.files"),
                    "must name at least one file, like [\"/etc/dockwatch/daemons/*.json\"]",
                ));
            }
            for (j, f) in d.files.iter().enumerate() {
                if let Err(e) = glob::Pattern::new(f) {
                    problems.push(Problem::new(
                        format!("{key}.files[{j}]"),
                        format!("{f:?} is not a valid path pattern: {e}"),
                    ));
                }
            }
            if d.refresh.is_zero() {
                problems.push(Problem::new(
                    format!("{key}.refresh"),
                    "must be greater than 0",
                ));
            }
        }
    }

    fn validate_poll(&self, problems: &mut Vec<Problem>) {
        if self.poll.interval.is_zero() {
            problems.push(Problem::new("poll.interval", "must be greater than 0"));
        }
        if self.poll.timeout.is_zero() {
            problems.push(Problem::new("poll.timeout", "must be greater than 0"));
        } else if self.poll.timeout >= self.poll.interval {
            problems.push(Problem::new(
                "poll.timeout",
                format!(
                    "must be less than poll.interval ({:?} >= {:?})",
                    self.poll.timeout, self.poll.interval
                ),
            ));
        }
        if let Some(images) = self.poll.images_interval
            && images < self.poll.interval
        {
            problems.push(Problem::new(
                "poll.images_interval",
                format!(
                    "must not be less than poll.interval ({images:?} < {:?})",
                    self.poll.interval
                ),
            ));
        }
        if self.poll.max_concurrent_calls == 0 {
            problems.push(Problem::new(
                "poll.max_concurrent_calls",
                "must be at least 1",
            ));
        }
        if !self.poll.disk_interval.is_zero() && self.poll.disk_interval < self.poll.interval {
            problems.push(Problem::new(
                "poll.disk_interval",
                format!(
                    "must be 0 (off) or at least poll.interval ({:?} < {:?})",
                    self.poll.disk_interval, self.poll.interval
                ),
            ));
        }
    }

    /// The daemons with their hosts parsed; problems for the rest.
    fn daemons(&self, problems: &mut Vec<Problem>) -> Vec<DaemonConfig> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, d) in self.daemons.iter().enumerate() {
            let key = format!("daemons[{i}]");
            check_unique_name(&key, &d.name, "daemon", &mut names, problems);
            match Host::parse(&d.host) {
                Err(e) => problems.push(Problem::new(format!("{key}.host"), e)),
                Ok(h) if matches!(h.endpoint, Endpoint::Unix(_)) && d.tls.is_some() => {
                    problems.push(Problem::new(
                        format!("{key}.tls"),
                        "TLS applies only to tcp:// hosts, not to a unix socket",
                    ));
                }
                Ok(host) => out.push(DaemonConfig {
                    name: d.name.clone(),
                    host,
                    tls: d.tls.clone(),
                }),
            }
        }
        out
    }

    fn validate_filters(&self, problems: &mut Vec<Problem>) {
        let mut filter_names = BTreeSet::new();
        for (i, f) in self.image_filters.iter().enumerate() {
            let key = format!("image_filters[{i}]");
            check_unique_name(&key, &f.name, "filter group", &mut filter_names, problems);
            if f.filters.is_empty() {
                problems.push(Problem::new(
                    format!("{key}.filters"),
                    "must name at least one filter, like { reference = [\"myrepo/*\"] }",
                ));
            }
            for (k, v) in &f.filters {
                if v.0.is_empty() {
                    problems.push(Problem::new(
                        format!("{key}.filters.{k}"),
                        "must have at least one value",
                    ));
                }
            }
        }
    }

    fn validate_prune(&self, problems: &mut Vec<Problem>) {
        let p = &self.prune;
        if p.interval.is_zero() {
            problems.push(Problem::new("prune.interval", "must be greater than 0"));
        } else if p.jitter >= p.interval {
            problems.push(Problem::new(
                "prune.jitter",
                format!(
                    "must be less than prune.interval ({:?} >= {:?})",
                    p.jitter, p.interval
                ),
            ));
        }
        if p.max_per_round == 0 {
            problems.push(Problem::new(
                "prune.max_per_round",
                "must be at least 1 (set enabled = false to remove nothing)",
            ));
        }
        if p.when.reclaimable_above.is_some() && self.poll.disk_interval.is_zero() {
            problems.push(Problem::new(
                "prune.when.reclaimable_above",
                "needs /system/df: set poll.disk_interval above 0, or leave this out",
            ));
        }
        for (k, v) in &p.filters {
            let key = format!("prune.filters.{k}");
            if !IMAGE_FILTER_KEYS.contains(&k.as_str()) {
                problems.push(Problem::new(
                    key,
                    format!(
                        "{k:?} is not an image filter the Engine knows; use {}",
                        IMAGE_FILTER_KEYS.join(", ")
                    ),
                ));
            } else if v.0.is_empty() {
                problems.push(Problem::new(key, "must have at least one value"));
            } else if k == "dangling" && v.0 != ["true"] {
                problems.push(Problem::new(
                    key,
                    "pruning only ever lists dangling=true images; leave this out",
                ));
            }
        }
    }

    fn validate_server(&self, problems: &mut Vec<Problem>) {
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => {
                problems.push(Problem::new("server.tls_key", "tls_cert needs tls_key"));
            }
            (None, Some(_)) => {
                problems.push(Problem::new("server.tls_cert", "tls_key needs tls_cert"));
            }
            _ => {}
        }
        for (user, hash) in &self.server.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                problems.push(Problem::new(
                    "server.basic_auth_users",
                    format!("{user:?}: a user name is not empty and has no ':'"),
                ));
            }
            if bcrypt::HashParts::from_str(hash).is_err() {
                problems.push(Problem::new(
                    format!("server.basic_auth_users.{user}"),
                    "not a bcrypt hash (make one with `htpasswd -nbB USER PASSWORD`)",
                ));
            }
        }
    }

    /// The pre-pull images with their references parsed; problems for the
    /// rest.
    fn prepull_images(
        &self,
        daemons: &BTreeSet<&str>,
        problems: &mut Vec<Problem>,
    ) -> Vec<PrepullImage> {
        let p = &self.prepull;
        for (key, d) in [
            ("prepull.interval", p.interval),
            ("prepull.timeout", p.timeout),
            ("prepull.stall_timeout", p.stall_timeout),
        ] {
            if d.is_zero() {
                problems.push(Problem::new(key, "must be greater than 0"));
            }
        }
        if p.jitter >= p.interval && !p.interval.is_zero() {
            problems.push(Problem::new(
                "prepull.jitter",
                format!(
                    "must be less than prepull.interval ({:?} >= {:?})",
                    p.jitter, p.interval
                ),
            ));
        }
        if !p.check_interval.is_zero() && p.check_interval < Duration::from_secs(1) {
            problems.push(Problem::new(
                "prepull.check_interval",
                "must be 0 (off) or at least 1s",
            ));
        }
        if !(1..=16).contains(&p.concurrency) {
            problems.push(Problem::new("prepull.concurrency", "must be from 1 to 16"));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, img) in p.images.iter().enumerate() {
            let key = format!("prepull.images[{i}]");
            match ImageRef::parse(&img.image) {
                Err(e) => problems.push(Problem::new(format!("{key}.image"), e)),
                Ok(r) => {
                    if !seen.insert(r.to_string()) {
                        problems.push(Problem::new(
                            format!("{key}.image"),
                            format!("{r} is listed twice"),
                        ));
                    }
                    out.push(PrepullImage {
                        image: r,
                        daemons: img.daemons.clone(),
                    });
                }
            }
            for (j, d) in img.daemons.iter().flatten().enumerate() {
                if !daemons.contains(d.as_str()) {
                    problems.push(Problem::new(
                        format!("{key}.daemons[{j}]"),
                        format!("no [[daemons]] entry is named {d:?}"),
                    ));
                }
            }
            if img.daemons.as_ref().is_some_and(Vec::is_empty) {
                problems.push(Problem::new(
                    format!("{key}.daemons"),
                    "an empty list pulls nowhere; leave it out to mean every daemon",
                ));
            }
        }
        out
    }

    /// The pre-pull windows parsed; problems for the rest.
    fn prepull_windows(&self, problems: &mut Vec<Problem>) -> Vec<Window> {
        let mut out: Vec<Window> = Vec::new();
        for (i, text) in self.prepull.windows.iter().enumerate() {
            let key = format!("prepull.windows[{i}]");
            match Window::parse(text) {
                Err(e) => problems.push(Problem::new(key, e)),
                Ok(w) if out.contains(&w) => {
                    problems.push(Problem::new(key, format!("{w} is listed twice")));
                }
                Ok(w) => out.push(w),
            }
        }
        out
    }

    fn validate_registries(&self, problems: &mut Vec<Problem>) {
        let mut seen = BTreeSet::new();
        for (i, r) in self.registries.iter().enumerate() {
            let key = format!("registries[{i}]");
            let host = registry_host(&r.server);
            if host.is_empty() {
                problems.push(Problem::new(format!("{key}.server"), "must not be empty"));
            } else if !seen.insert(host.clone()) {
                problems.push(Problem::new(
                    format!("{key}.server"),
                    format!("{host} has credentials twice"),
                ));
            }
            for (field, message) in r.shape_problems() {
                problems.push(Problem::new(format!("{key}.{field}"), message));
            }
        }
    }
}

impl RegistryConfig {
    /// What is wrong with the entry's combination of fields (files and
    /// variables are read by the `checks` module).
    pub fn shape_problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        let has_password = self.password_file.is_some() || self.password_env.is_some();
        let has_token = self.identity_token_file.is_some();
        if self.password_file.is_some() && self.password_env.is_some() {
            problems.push((
                "password_env",
                "set password_file or password_env, not both",
            ));
        }
        if has_password && has_token {
            problems.push((
                "identity_token_file",
                "use either a password or an identity token, not both",
            ));
        }
        match (&self.username, has_password || has_token) {
            (None, false) => problems.push((
                "username",
                "set username with password_file or password_env, or identity_token_file",
            )),
            (None, true) if has_password => {
                problems.push(("username", "a password needs a username"));
            }
            (Some(_), false) => problems.push((
                "password_file",
                "a username needs password_file or password_env",
            )),
            _ => {}
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and converts, then checks the files named, as start-up does.
    fn from_toml(text: &str) -> Result<Config, Vec<Problem>> {
        let file: ConfigFile = Figment::from(Toml::string(text)).extract().map_err(|e| {
            e.into_iter()
                .map(|e| Problem::new(key_of(&e.path), e.kind.to_string()))
                .collect::<Vec<_>>()
        })?;
        let mut problems = crate::config::load::files(&file);
        match file.into_config() {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(problems),
            Err(mut p) => {
                p.append(&mut problems);
                Err(p)
            }
        }
    }

    fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "",
            "15",
            "s",
            "15x",
            "-1s",
            "1.5s",
            "1q",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("unix:///var/run/docker.sock"),
            Ok(Endpoint::Unix("/var/run/docker.sock".into()))
        );
        assert_eq!(
            parse_host("tcp://127.0.0.1:2376"),
            Ok(Endpoint::Tcp("127.0.0.1:2376".into()))
        );
        assert_eq!(
            parse_host("tcp://build-01.example:2375/"),
            Ok(Endpoint::Tcp("build-01.example:2375".into()))
        );
        for bad in [
            "http://x:1",
            "unix://relative.sock",
            "tcp://nohost",
            "tcp://:2376",
            "tcp://h:0",
            "tcp://h:99999",
            "ssh://me@h",
            "",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = from_toml("").expect("empty config is valid");
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:9779");
        assert_eq!(c.poll.interval, Duration::from_secs(15));
        assert_eq!(c.poll.timeout, Duration::from_secs(5));
        assert_eq!(c.poll.max_concurrent_calls, DEFAULT_MAX_CONCURRENT_CALLS);
    }

    #[test]
    fn full_example_parses() {
        let c = from_toml(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            [poll]
            interval = "30s"
            timeout = "10s"
            [[daemons]]
            name = "local"
            host = "unix:///var/run/docker.sock"
            [[image_filters]]
            name = "ci-cache"
            filters = { reference = ["registry.example.com/ci/*"], dangling = ["false"] }
            [[image_filters]]
            name = "legacy"
            filters = { dangling = { "true" = true, "false" = false } }
            "#,
        )
        .expect("valid");
        assert_eq!(c.daemons.len(), 1);
        assert_eq!(
            c.image_filters[0].query()["reference"],
            vec!["registry.example.com/ci/*"]
        );
        assert_eq!(c.image_filters[1].query()["dangling"], vec!["true"]);
    }

    #[test]
    #[allow(clippy::too_many_lines)] // one table of cases
    fn each_error_names_its_key() {
        let cases: &[(&str, &str)] = &[
            ("[poll]\nintervall = \"1s\"", "poll"),
            ("bogus = 1", "bogus"),
            ("[poll]\ninterval = \"fast\"", "poll.interval"),
            ("[poll]\ninterval = 15", "poll.interval"),
            (
                "[poll]\ninterval = \"5s\"\ntimeout = \"5s\"",
                "poll.timeout",
            ),
            ("[poll]\ntimeout = \"0s\"", "poll.timeout"),
            (
                "[poll]\nmax_concurrent_calls = 0",
                "poll.max_concurrent_calls",
            ),
            (
                "[poll]\nmax_concurrent_calls = -1",
                "poll.max_concurrent_calls",
            ),
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            (
                "[[daemons]]\nname = \"a\"\nhost = \"ftp://x\"",
                "daemons[0].host",
            ),
            (
                "[[daemons]]\nname = \"a\"\nhost = \"unix:///a\"\n[[daemons]]\nname = \"a\"\nhost = \"unix:///b\"",
                "daemons[1].name",
            ),
            (
                "[[daemons]]\nname = \"\"\nhost = \"unix:///a\"",
                "daemons[0].name",
            ),
            (
                "[[daemons]]\nname = \"a b\"\nhost = \"unix:///a\"",
                "daemons[0].name",
            ),
            (
                "[[daemons]]\nname = \"a\"\nhost = \"unix:///a\"\n[daemons.tls]\nca = \"/x\"\ncert = \"/y\"\nkey = \"/z\"",
                "daemons[0].tls",
            ),
            (
                "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"",
                "daemons[0].tls.ca",
            ),
            (
                "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"/x\"",
                "daemons",
            ),
            (
                "[[image_filters]]\nname = \"f\"\nfilters = {}",
                "image_filters[0].filters",
            ),
            (
                "[[image_filters]]\nname = \"f\"\nfilters = { dangling = [] }",
                "image_filters[0].filters.dangling",
            ),
            (
                "[[image_filters]]\nname = \"f\"\nfilters = { dangling = 3 }",
                "image_filters",
            ),
            (
                "[[image_filters]]\nname = \"f\"\nfilters = { a = [\"1\"] }\n[[image_filters]]\nname = \"f\"\nfilters = { a = [\"1\"] }",
                "image_filters[1].name",
            ),
            (
                "[[prepull.images]]\nimage = \"\"",
                "prepull.images[0].image",
            ),
            (
                "[[prepull.images]]\nimage = \"Bad Name\"",
                "prepull.images[0].image",
            ),
            (
                "[[prepull.images]]\nimage = \"busybox\"\n[[prepull.images]]\nimage = \"busybox:latest\"",
                "prepull.images[1].image",
            ),
            (
                "[[daemons]]\nname = \"a\"\nhost = \"unix:///a\"\n[[prepull.images]]\nimage = \"x\"\ndaemons = [\"b\"]",
                "prepull.images[0].daemons[0]",
            ),
            ("[prepull]\nconcurrency = 0", "prepull.concurrency"),
            (
                "[prepull]\ninterval = \"10s\"\njitter = \"10s\"",
                "prepull.jitter",
            ),
            ("[prepull]\nstall_timeout = \"0s\"", "prepull.stall_timeout"),
            (
                "[prepull]\ndocker_config = \"/nonexistent/config.json\"",
                "prepull.docker_config",
            ),
            ("[prepull]\nbogus = 1", "prepull"),
            (
                "[prepull]\ncheck_interval = \"soon\"",
                "prepull.check_interval",
            ),
            (
                "[prepull]\ncheck_interval = \"10ms\"",
                "prepull.check_interval",
            ),
            (
                "[prepull]\nwindows = [\"02:00-05:00\", \"25:00-01:00\"]",
                "prepull.windows[1]",
            ),
            (
                "[prepull]\nwindows = [\"02:00-05:00 Nowhere/City\"]",
                "prepull.windows[0]",
            ),
            (
                "[prepull]\nwindows = [\"02:00-05:00\", \"02:00-05:00\"]",
                "prepull.windows[1]",
            ),
            ("[prepull]\nwindows = \"02:00-05:00\"", "prepull.windows"),
            (
                "[[registries]]\nserver = \"r.example\"",
                "registries[0].username",
            ),
            (
                "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword_file = \"/nonexistent/pass\"",
                "registries[0].password_file",
            ),
            (
                "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword = \"inline\"",
                "registries[0]",
            ),
            ("[prune]\nbogus = 1", "prune"),
            ("[prune]\nenabled = \"yes\"", "prune.enabled"),
            ("[prune]\ninterval = \"0s\"", "prune.interval"),
            (
                "[prune]\ninterval = \"10m\"\njitter = \"10m\"",
                "prune.jitter",
            ),
            ("[prune]\nolder_than = \"soon\"", "prune.older_than"),
            ("[prune]\nmax_per_round = 0", "prune.max_per_round"),
            ("[prune]\nmax_per_round = -1", "prune.max_per_round"),
            (
                "[prune]\nwhen = { reclaimable_above = \"10XB\" }",
                "prune.when.reclaimable_above",
            ),
            (
                "[prune]\nwhen = { reclaimable_above = -5 }",
                "prune.when.reclaimable_above",
            ),
            ("[prune]\nwhen = { free_below = \"1GiB\" }", "prune.when"),
            (
                "[poll]\ndisk_interval = \"0\"\n[prune]\nwhen = { reclaimable_above = \"1GiB\" }",
                "prune.when.reclaimable_above",
            ),
            (
                "[prune]\nfilters = { lable = [\"a=b\"] }",
                "prune.filters.lable",
            ),
            (
                "[prune]\nfilters = { dangling = [\"false\"] }",
                "prune.filters.dangling",
            ),
            ("[prune]\nfilters = { label = [] }", "prune.filters.label"),
        ];
        for (text, key) in cases {
            let problems = from_toml(text).expect_err(text);
            assert!(
                problems.iter().any(|p| p.key.starts_with(key)),
                "config {text:?}: expected a problem under {key:?}, got {problems:?}"
            );
        }
    }

    #[test]
    fn prepull_checks_and_windows() {
        let c = from_toml("").expect("valid");
        assert_eq!(c.prepull.check_interval, Duration::from_secs(600));
        assert!(c.prepull.windows.is_empty());
        let c = from_toml(
            "[prepull]\ncheck_interval = \"0\"\nwindows = [\"02:00-05:00\", \"22:00-01:00 Europe/Berlin\"]",
        )
        .expect("valid");
        assert!(c.prepull.check_interval.is_zero());
        let windows: Vec<String> = c.prepull.windows.iter().map(ToString::to_string).collect();
        assert_eq!(windows, ["02:00-05:00", "22:00-01:00 Europe/Berlin"]);
        // The typed config goes back to what was written, and validates.
        assert!(c.validate().is_empty());
    }

    #[test]
    fn prune_section() {
        let c = from_toml("").expect("valid");
        assert!(!c.prune.enabled, "off by default");
        assert_eq!(c.prune.older_than, Duration::from_secs(86_400));
        assert_eq!(c.prune.max_per_round, 50);
        let c = from_toml(
            r#"
            [prune]
            enabled = true
            interval = "30m"
            jitter = "1m"
            older_than = "2d"
            when = { reclaimable_above = "10GiB" }
            max_per_round = 5
            dry_run = true
            filters = { label = ["ci.cache=true"], "label!" = ["keep"], until = ["24h"], dangling = ["true"] }
            "#,
        )
        .expect("valid");
        assert_eq!(c.prune.when.reclaimable_above, Some(10 << 30));
        assert_eq!(c.prune.older_than, Duration::from_secs(2 * 86_400));
        let q = c.prune.query();
        assert_eq!(q["dangling"], ["true"]);
        assert_eq!(q["label"], ["ci.cache=true"]);
        assert_eq!(q.len(), 4);
        // The bytesize crate's syntax: binary and decimal units, bare bytes.
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1.5 KiB"), Ok(1536));
        assert_eq!(parse_size("42"), Ok(42));
        for bad in ["", "ten", "10XB", "-1GiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        let problems = from_toml("[prune]\nfilters = { nosuch = [\"x\"] }").expect_err("bad key");
        assert!(
            problems[0]
                .message
                .contains("\"nosuch\" is not an image filter"),
            "{problems:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = from_toml(
            "[poll]\ninterval = \"5s\"\ntimeout = \"6s\"\n[[daemons]]\nname = \"\"\nhost = \"x\"",
        )
        .expect_err("invalid");
        assert_eq!(
            keys(&problems),
            ["poll.timeout", "daemons[0].name", "daemons[0].host"]
        );
    }

    #[test]
    fn default_daemon_follows_docker_cli_env() {
        let none = |_: &str| None;
        let d = default_daemon(&none);
        assert_eq!(d.host, DEFAULT_DOCKER_HOST);
        assert_eq!(d.name, "local");
        assert!(d.tls.is_none());

        let env = |k: &str| match k {
            "DOCKER_HOST" => Some("tcp://10.1.2.3:2376".to_owned()),
            "DOCKER_TLS_VERIFY" => Some("1".to_owned()),
            "DOCKER_CERT_PATH" => Some("/certs".to_owned()),
            _ => None,
        };
        let d = default_daemon(&env);
        assert_eq!(d.host, "tcp://10.1.2.3:2376");
        let tls = d.tls.expect("tls");
        assert_eq!(tls.ca, PathBuf::from("/certs/ca.pem"));
        assert_eq!(tls.cert, PathBuf::from("/certs/cert.pem"));
        assert_eq!(tls.key, PathBuf::from("/certs/key.pem"));

        let env = |k: &str| match k {
            "DOCKER_TLS_VERIFY" => Some("1".to_owned()),
            "HOME" => Some("/home/u".to_owned()),
            _ => None,
        };
        let tls = default_daemon(&env).tls.expect("tls");
        assert_eq!(tls.ca, PathBuf::from("/home/u/.docker/ca.pem"));
    }
}
