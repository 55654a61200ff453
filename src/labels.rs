//! The closed label sets: every value a label other than `daemon`, `filter`
//! and `image` may take. A leaf: it uses nothing else of the crate, so every
//! task can name a label without knowing the metrics module.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// The Docker API endpoints dockwatch calls: the `endpoint` label's values.
/// Each call method of the daemon connection is tied to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiEndpoint {
    Ping,
    Version,
    Info,
    ImageList,
    ImageInspect,
    ImagePull,
    ContainerList,
    ContainerInspect,
    SystemDf,
    Events,
    /// `GET /distribution/{name}/json`: the registry's descriptor of a tag,
    /// asked through the daemon.
    Distribution,
    /// `DELETE /images/{id}` of a pruning round.
    ImageDelete,
}

impl ApiEndpoint {
    pub const ALL: [Self; 12] = [
        Self::Ping,
        Self::Version,
        Self::Info,
        Self::ImageList,
        Self::ImageInspect,
        Self::ImagePull,
        Self::ContainerList,
        Self::ContainerInspect,
        Self::SystemDf,
        Self::Events,
        Self::Distribution,
        Self::ImageDelete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::Version => "version",
            Self::Info => "info",
            Self::ImageList => "image_list",
            Self::ImageInspect => "image_inspect",
            Self::ImagePull => "image_pull",
            Self::ContainerList => "container_list",
            Self::ContainerInspect => "container_inspect",
            Self::SystemDf => "system_df",
            Self::Events => "events",
            Self::Distribution => "distribution",
            Self::ImageDelete => "image_delete",
        }
    }
}

/// Why a Docker API call failed: the `reason` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    Timeout,
    Connect,
    Tls,
    Http4xx,
    Http5xx,
    Decode,
}

impl ErrorReason {
    pub const ALL: [Self; 6] = [
        Self::Timeout,
        Self::Connect,
        Self::Tls,
        Self::Http4xx,
        Self::Http5xx,
        Self::Decode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Http4xx => "http_4xx",
            Self::Http5xx => "http_5xx",
            Self::Decode => "decode",
        }
    }
}

/// How a pull ended: the `result` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullResult {
    Updated,
    UpToDate,
    Failed,
}

impl PullResult {
    pub const ALL: [Self; 3] = [Self::Updated, Self::UpToDate, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::UpToDate => "up_to_date",
            Self::Failed => "failed",
        }
    }
}

/// Why a pull failed: the `reason` label's values of the pull failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    NotFound,
    Unauthorized,
    /// The registry answered 429 (too many requests).
    RateLimited,
    /// The daemon's disk filled up ("no space left on device").
    DiskFull,
    Timeout,
    Stalled,
    Tls,
    Network,
    Registry,
    Daemon,
    Canceled,
}

impl FailReason {
    pub const ALL: [Self; 11] = [
        Self::NotFound,
        Self::Unauthorized,
        Self::RateLimited,
        Self::DiskFull,
        Self::Timeout,
        Self::Stalled,
        Self::Tls,
        Self::Network,
        Self::Registry,
        Self::Daemon,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::RateLimited => "rate_limited",
            Self::DiskFull => "disk_full",
            Self::Timeout => "timeout",
            Self::Stalled => "stalled",
            Self::Tls => "tls",
            Self::Network => "network",
            Self::Registry => "registry",
            Self::Daemon => "daemon",
            Self::Canceled => "canceled",
        }
    }
}

/// What a registry check found: the `result` label's values of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckResult {
    /// The registry's digest of the tag is one the local image was pulled by.
    Same,
    /// The tag now points at something the local image was not pulled by.
    Differs,
    Failed,
}

impl CheckResult {
    pub const ALL: [Self; 3] = [Self::Same, Self::Differs, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Same => "same",
            Self::Differs => "differs",
            Self::Failed => "failed",
        }
    }
}

/// Why a registry check failed: the `reason` label's values of the check
/// failures. Classified as pull failures are, plus `unsupported`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckFailure {
    NotFound,
    Unauthorized,
    RateLimited,
    Timeout,
    Tls,
    Network,
    Registry,
    Daemon,
    /// The engine has no `/distribution` endpoint (Podman, or an Engine
    /// older than API 1.30).
    Unsupported,
}

impl CheckFailure {
    pub const ALL: [Self; 9] = [
        Self::NotFound,
        Self::Unauthorized,
        Self::RateLimited,
        Self::Timeout,
        Self::Tls,
        Self::Network,
        Self::Registry,
        Self::Daemon,
        Self::Unsupported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::RateLimited => "rate_limited",
            Self::Timeout => "timeout",
            Self::Tls => "tls",
            Self::Network => "network",
            Self::Registry => "registry",
            Self::Daemon => "daemon",
            Self::Unsupported => "unsupported",
        }
    }
}

/// A pull's failure reason as a check's: the reasons a one-request check
/// cannot have (a stall, a full disk, shutdown) read as the daemon's.
impl From<FailReason> for CheckFailure {
    fn from(r: FailReason) -> Self {
        match r {
            FailReason::NotFound => Self::NotFound,
            FailReason::Unauthorized => Self::Unauthorized,
            FailReason::RateLimited => Self::RateLimited,
            FailReason::Timeout => Self::Timeout,
            FailReason::Tls => Self::Tls,
            FailReason::Network => Self::Network,
            FailReason::Registry => Self::Registry,
            FailReason::DiskFull
            | FailReason::Stalled
            | FailReason::Daemon
            | FailReason::Canceled => Self::Daemon,
        }
    }
}

/// Where a layer came from: the `outcome` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerOutcome {
    Downloaded,
    AlreadyExists,
}

impl LayerOutcome {
    pub const ALL: [Self; 2] = [Self::Downloaded, Self::AlreadyExists];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Downloaded => "downloaded",
            Self::AlreadyExists => "already_exists",
        }
    }
}

/// How a container ended: the `code_class` label's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitClass {
    Zero,
    Nonzero,
    Oom,
    Signal,
}

impl ExitClass {
    pub const ALL: [Self; 4] = [Self::Zero, Self::Nonzero, Self::Oom, Self::Signal];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zero => "zero",
            Self::Nonzero => "nonzero",
            Self::Oom => "oom",
            Self::Signal => "signal",
        }
    }
}

/// The container states the `state` label may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerState {
    pub const ALL: [Self; 7] = [
        Self::Created,
        Self::Running,
        Self::Paused,
        Self::Restarting,
        Self::Removing,
        Self::Exited,
        Self::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }

    /// The state a container list entry names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Self::Created,
            // A stopping container is still running until it has stopped.
            "running" | "stopping" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => return None,
        })
    }
}

/// A running container's health: the `status` label's values. `None` is a
/// container without a healthcheck.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    Starting,
    None,
}

impl HealthStatus {
    pub const ALL: [Self; 4] = [Self::Healthy, Self::Unhealthy, Self::Starting, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Starting => "starting",
            Self::None => "none",
        }
    }

    /// The status the Engine API names (the `Health.Status` of API 1.52 and
    /// the `health` filter's values); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "healthy" => Self::Healthy,
            "unhealthy" => Self::Unhealthy,
            "starting" => Self::Starting,
            "none" => Self::None,
            _ => return None,
        })
    }

    /// The health dockerd writes at the end of a running container's
    /// `Status` text (`Up 5 minutes (healthy)`, `Up 2 seconds (health:
    /// starting)`, `Up 1 hour (unhealthy)`); no such suffix is `None`.
    pub fn from_status_text(status: &str) -> Self {
        let Some(inner) = status
            .trim_end()
            .strip_suffix(')')
            .and_then(|s| s.rsplit_once('('))
            .map(|(_, inner)| inner)
        else {
            return Self::None;
        };
        match inner {
            "healthy" => Self::Healthy,
            "unhealthy" => Self::Unhealthy,
            "health: starting" => Self::Starting,
            _ => Self::None,
        }
    }
}

/// The `/system/df` object types of the `type` label.
pub const DISK_TYPES: [&str; 4] = ["images", "containers", "volumes", "build_cache"];

/// Container actions counted by name; the rest count as `other`.
pub const CONTAINER_ACTIONS: [&str; 8] = [
    "create",
    "start",
    "die",
    "kill",
    "oom",
    "restart",
    "destroy",
    "health_status",
];
/// Image actions counted by name; the rest count as `other`.
pub const IMAGE_ACTIONS: [&str; 6] = ["pull", "tag", "untag", "delete", "import", "prune"];

/// Every event (type, actions) pair; `other` completes each set.
pub const EVENT_ACTIONS: [(&str, &[&str]); 2] =
    [("container", &CONTAINER_ACTIONS), ("image", &IMAGE_ACTIONS)];

/// The event's action in the closed set of its type.
pub fn event_action(typ: &str, action: &str) -> &'static str {
    // "health_status: healthy" and the like carry a suffix.
    let base = action.split(':').next().unwrap_or(action).trim();
    // Podman says "remove" where dockerd says "delete" (images) and
    // "destroy" (containers).
    let base = match (typ, base) {
        ("image", "remove") => "delete",
        ("container", "remove") => "destroy",
        _ => base,
    };
    let set: &[&'static str] = match typ {
        "container" => &CONTAINER_ACTIONS,
        "image" => &IMAGE_ACTIONS,
        _ => &[],
    };
    set.iter().copied().find(|a| *a == base).unwrap_or("other")
}

/// How a prune round ended: the `result` label of the prune rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PruneResult {
    /// The round ran to its end (refusals included), or stopped early at
    /// shutdown after a removal.
    Ok,
    /// The round did not start: the daemon is down, or `when` was not met.
    Skipped,
    /// A call failed mid-round, or a removal failed for another reason than
    /// a refusal.
    Failed,
}

impl PruneResult {
    pub const ALL: [Self; 3] = [Self::Ok, Self::Skipped, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// Why the daemon refused to remove an image: the `reason` label of the
/// prune refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PruneRefusal {
    /// A container uses it (one made since the round listed them).
    InUse,
    /// It was gone already.
    NotFound,
    /// Another conflict: referenced in several repositories, or the parent
    /// of another image.
    Conflict,
    /// Any other refusal (HTTP 4xx).
    Other,
}

impl PruneRefusal {
    pub const ALL: [Self; 4] = [Self::InUse, Self::NotFound, Self::Conflict, Self::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InUse => "in_use",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Other => "other",
        }
    }
}

macro_rules! label_value_from_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}
label_value_from_as_str!(
    ApiEndpoint,
    ErrorReason,
    PullResult,
    FailReason,
    CheckResult,
    CheckFailure,
    LayerOutcome,
    ExitClass,
    ContainerState,
    HealthStatus,
    PruneResult,
    PruneRefusal
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_distinct_snake_case() {
        let all: Vec<&str> = ApiEndpoint::ALL
            .iter()
            .map(|e| e.as_str())
            .chain(ErrorReason::ALL.iter().map(|r| r.as_str()))
            .chain(FailReason::ALL.iter().map(|r| r.as_str()))
            .chain(CheckResult::ALL.iter().map(|r| r.as_str()))
            .chain(CheckFailure::ALL.iter().map(|r| r.as_str()))
            .chain(ContainerState::ALL.iter().map(|s| s.as_str()))
            .chain(PruneResult::ALL.iter().map(|r| r.as_str()))
            .chain(PruneRefusal::ALL.iter().map(|r| r.as_str()))
            .chain(HealthStatus::ALL.iter().map(|s| s.as_str()))
            .collect();
        for v in &all {
            assert!(
                v.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                "{v}"
            );
        }
        let endpoints: std::collections::HashSet<_> =
            ApiEndpoint::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(endpoints.len(), ApiEndpoint::ALL.len());
    }

    #[test]
    fn container_states_round_trip() {
        for s in ContainerState::ALL {
            assert_eq!(ContainerState::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            ContainerState::parse("stopping"),
            Some(ContainerState::Running)
        );
        assert_eq!(ContainerState::parse(""), None);
    }

    #[test]
    fn health_from_the_status_text() {
        for (text, want) in [
            ("Up 5 minutes (healthy)", HealthStatus::Healthy),
            ("Up 2 minutes (unhealthy)", HealthStatus::Unhealthy),
            ("Up 4 seconds (health: starting)", HealthStatus::Starting),
            ("Up About a minute", HealthStatus::None),
            // Paused and restarting containers do not say their health.
            ("Up 4 seconds (Paused)", HealthStatus::None),
            ("Restarting (1) 2 seconds ago", HealthStatus::None),
            ("Exited (0) 32 seconds ago", HealthStatus::None),
            ("", HealthStatus::None),
            ("(", HealthStatus::None),
            (")", HealthStatus::None),
        ] {
            assert_eq!(HealthStatus::from_status_text(text), want, "{text:?}");
        }
        for s in HealthStatus::ALL {
            assert_eq!(HealthStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(HealthStatus::parse("sick"), None);
    }
}
