//! The closed label sets: every value a label other than `daemon`, `filter`
//! and `image` may take. A leaf: it uses nothing else of the crate, so every
//! task can name a label without knowing the metrics module.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// A closed label set, written once: each value one line, `Variant =>
/// "label_value"` (doc comments and attributes allowed). Makes the enum,
/// `ALL` (every value, in order), `as_str` (the label value), `from_label`
/// (its inverse), and the label value's `Display`, `Serialize` and
/// `EncodeLabelValue`.
macro_rules! label_set {
    (
        $(#[$attr:meta])*
        pub enum $name:ident {
            $( $(#[$vattr:meta])* $variant:ident => $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vattr])* $variant, )+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: [Self; [$($value),+].len()] = [$(Self::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $value, )+
                }
            }

            /// The value whose label value is `s`; `None` for anything else.
            pub fn from_label(s: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|v| v.as_str() == s)
            }
        }

        impl LabelSet for $name {
            const ALL: &'static [Self] = &Self::ALL;

            fn label(self) -> &'static str {
                self.as_str()
            }

            fn index(self) -> usize {
                self as usize
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// What every closed label set has, for code generic over them (the metric
/// families that create or drop a series per value).
pub trait LabelSet: Copy + EncodeLabelValue + fmt::Debug + Eq + std::hash::Hash + 'static {
    /// Every value, in order.
    const ALL: &'static [Self];

    /// The label value.
    fn label(self) -> &'static str;

    /// The value's place in `ALL`: an index into counts kept per value.
    fn index(self) -> usize;
}

label_set! {
    /// The Docker API endpoints dockwatch calls: the `endpoint` label's values.
    /// Each call method of the daemon connection is tied to one.
    pub enum ApiEndpoint {
        Ping => "ping",
        Version => "version",
        Info => "info",
        ImageList => "image_list",
        ImageInspect => "image_inspect",
        ImagePull => "image_pull",
        ContainerList => "container_list",
        ContainerInspect => "container_inspect",
        SystemDf => "system_df",
        Events => "events",
        /// `GET /distribution/{name}/json`: the registry's descriptor of a tag,
        /// asked through the daemon.
        Distribution => "distribution",
        /// `DELETE /images/{id}` of a pruning round.
        ImageDelete => "image_delete",
    }
}

label_set! {
    /// Why a Docker API call failed: the `reason` label's values.
    pub enum ErrorReason {
        Timeout => "timeout",
        Connect => "connect",
        Tls => "tls",
        Http4xx => "http_4xx",
        Http5xx => "http_5xx",
        Decode => "decode",
    }
}

label_set! {
    /// How a pull ended: the `result` label's values.
    pub enum PullResult {
        Updated => "updated",
        UpToDate => "up_to_date",
        Failed => "failed",
    }
}

label_set! {
    /// Why a pull failed: the `reason` label's values of the pull failures.
    pub enum FailReason {
        NotFound => "not_found",
        Unauthorized => "unauthorized",
        /// The registry answered 429 (too many requests).
        RateLimited => "rate_limited",
        /// The daemon's disk filled up ("no space left on device").
        DiskFull => "disk_full",
        Timeout => "timeout",
        Stalled => "stalled",
        Tls => "tls",
        Network => "network",
        Registry => "registry",
        Daemon => "daemon",
        Canceled => "canceled",
    }
}

label_set! {
    /// What a registry check found: the `result` label's values of the checks.
    pub enum CheckResult {
        /// The registry's digest of the tag is one the local image was pulled by.
        Same => "same",
        /// The tag now points at something the local image was not pulled by.
        Differs => "differs",
        Failed => "failed",
    }
}

label_set! {
    /// Why a registry check failed: the `reason` label's values of the check
    /// failures. Classified as pull failures are, plus `unsupported`.
    pub enum CheckFailure {
        NotFound => "not_found",
        Unauthorized => "unauthorized",
        RateLimited => "rate_limited",
        Timeout => "timeout",
        Tls => "tls",
        Network => "network",
        Registry => "registry",
        Daemon => "daemon",
        /// The engine has no `/distribution` endpoint (Podman, or an Engine
        /// older than API 1.30).
        Unsupported => "unsupported",
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

label_set! {
    /// Where a layer came from: the `outcome` label's values.
    pub enum LayerOutcome {
        Downloaded => "downloaded",
        AlreadyExists => "already_exists",
    }
}

label_set! {
    /// How a container ended: the `code_class` label's values.
    pub enum ExitClass {
        Zero => "zero",
        Nonzero => "nonzero",
        Oom => "oom",
        Signal => "signal",
    }
}

label_set! {
    /// The container states the `state` label may take.
    pub enum ContainerState {
        Created => "created",
        Running => "running",
        Paused => "paused",
        Restarting => "restarting",
        Removing => "removing",
        Exited => "exited",
        Dead => "dead",
    }
}

impl ContainerState {
    /// The state a container list entry names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            // A stopping container is still running until it has stopped.
            "stopping" => Some(Self::Running),
            _ => Self::from_label(s),
        }
    }
}

label_set! {
    /// A running container's health: the `status` label's values. `None` is a
    /// container without a healthcheck.
    pub enum HealthStatus {
        Healthy => "healthy",
        Unhealthy => "unhealthy",
        Starting => "starting",
        None => "none",
    }
}

impl HealthStatus {
    /// The status the Engine API names (the `Health.Status` of API 1.52 and
    /// the `health` filter's values); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::from_label(s)
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

label_set! {
    /// How a prune round ended: the `result` label of the prune rounds.
    pub enum PruneResult {
        /// The round ran to its end (refusals included), or stopped early at
        /// shutdown after a removal.
        Ok => "ok",
        /// The round did not start: the daemon is down, or `when` was not met.
        Skipped => "skipped",
        /// A call failed mid-round, or a removal failed for another reason than
        /// a refusal.
        Failed => "failed",
    }
}

label_set! {
    /// Why the daemon refused to remove an image: the `reason` label of the
    /// prune refusals.
    pub enum PruneRefusal {
        /// A container uses it (one made since the round listed them).
        InUse => "in_use",
        /// It was gone already.
        NotFound => "not_found",
        /// Another conflict: referenced in several repositories, or the parent
        /// of another image.
        Conflict => "conflict",
        /// Any other refusal (HTTP 4xx).
        Other => "other",
    }
}

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
