//! The Engine API version a connection speaks, negotiated per daemon as
//! the docker CLI does: `GET /_ping` without a version prefix names the
//! daemon's newest, every `/version` answer and every refusal naming a
//! minimum is learned from, and a failed connection forgets it (the daemon
//! may come back upgraded).

use std::fmt;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use super::transport::{self, Transport};
use super::{Connection, DockerError, SMALL_ANSWER};
use crate::labels::ApiEndpoint;

/// An Engine API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.trim().split_once('.')?;
        Some(Self(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The newest Engine API version dockwatch is tested against, on a real
/// daemon (Docker 26.1); answers in newer shapes were never seen.
pub const NEWEST_API: ApiVersion = ApiVersion(1, 45);

/// The version to speak to a daemon, as the docker CLI negotiates it: the
/// daemon's newest, but no newer than ours; the daemon's minimum if that is
/// above ours (then the daemon cannot be spoken to in a version we know).
pub fn negotiate(daemon_newest: ApiVersion, daemon_min: Option<ApiVersion>) -> ApiVersion {
    let v = daemon_newest.min(NEWEST_API);
    match daemon_min {
        Some(min) if min > v => min,
        _ => v,
    }
}

/// The minimum a daemon names when it refuses a version as too old
/// ("... Minimum supported API version is 1.44").
pub(super) fn minimum_in_refusal(message: &str) -> Option<ApiVersion> {
    let (_, rest) = message.split_once("inimum supported API version is ")?;
    ApiVersion::parse(
        rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?,
    )
}

/// The API version to speak, `None` until negotiated and again after the
/// connection failed (the daemon may come back upgraded). `forgotten`
/// counts those failures: an answer to a call begun before one (say, the
/// `/version` of a poll in which the daemon went away) came from a daemon
/// that may be gone, and is not learned from.
#[derive(Debug, Default)]
pub(super) struct Negotiated {
    version: Option<ApiVersion>,
    forgotten: u64,
}

/// Why a version learned from an answer was not kept: the connection
/// failed after the call began, so the answer may be a gone daemon's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the connection failed after the call began: its answer may come from a daemon that is gone"
)]
pub(super) struct ForgottenSince;

impl Connection {
    /// The API version requests are sent with now, once negotiated.
    pub fn api_version(&self) -> Option<ApiVersion> {
        self.0
            .api
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .version
    }

    /// How often the version was forgotten so far: taken when a call
    /// begins, and handed to `keep_api_version` with what its answer said.
    pub(super) fn api_epoch(&self) -> u64 {
        self.0
            .api
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .forgotten
    }

    /// The connection failed: whatever answers next may be another daemon.
    pub(super) fn forget_api_version(&self) {
        let mut api = self.0.api.write().unwrap_or_else(PoisonError::into_inner);
        api.version = None;
        api.forgotten += 1;
    }

    /// Keeps `v`, learned from an answer to a call begun at `epoch`, unless
    /// the version was forgotten since (then `v` may be a gone daemon's).
    /// Returns what it replaced, or `Err` if it was not kept.
    fn keep_api_version(
        &self,
        epoch: u64,
        v: ApiVersion,
    ) -> Result<Option<ApiVersion>, ForgottenSince> {
        let mut api = self.0.api.write().unwrap_or_else(PoisonError::into_inner);
        if api.forgotten != epoch {
            return Err(ForgottenSince);
        }
        Ok(api.version.replace(v))
    }

    /// What the daemon says of its versions (every `/version` answer, and a
    /// refusal naming its minimum), in answer to a call begun at `epoch`: a
    /// daemon upgraded behind the same address is spoken to in its new
    /// version from the next call on.
    pub(super) fn learn(&self, epoch: u64, newest: ApiVersion, min: Option<ApiVersion>) {
        let v = negotiate(newest, min);
        if v > NEWEST_API && !self.0.told_minimum.swap(true, Ordering::Relaxed) {
            tracing::warn!(daemon = %self.0.name, api_version = %v, newest_tested = %NEWEST_API, "the daemon's minimum API version is above the newest dockwatch is tested against; speaking its minimum");
        }
        if let Ok(Some(old)) = self.keep_api_version(epoch, v)
            && old != v
        {
            tracing::info!(daemon = %self.0.name, from = %old, to = %v, "API version renegotiated");
        }
    }

    /// The negotiated version, negotiating first if needed: `GET /_ping`
    /// without a version prefix (as the docker CLI does) says the daemon's
    /// newest in its `API-Version` header.
    async fn negotiated(&self, t: &Transport) -> Result<ApiVersion, DockerError> {
        if let Some(v) = self.api_version() {
            return Ok(v);
        }
        let _one_at_a_time = self.0.negotiating.lock().await;
        if let Some(v) = self.api_version() {
            return Ok(v);
        }
        let epoch = self.api_epoch();
        let newest = self
            .timed(ApiEndpoint::Ping, self.0.timeout, async {
                let response = t.send(hyper::Method::GET, "/_ping", &[]).await?;
                let header = response
                    .headers()
                    .get("api-version")
                    .and_then(|h| h.to_str().ok())
                    .and_then(ApiVersion::parse);
                transport::read_body(response, SMALL_ANSWER).await?;
                header.ok_or_else(|| {
                    DockerError::Decode("/_ping answered without an API-Version header".into())
                })
            })
            .await?;
        let v = negotiate(newest, None);
        // Another call failed to connect while this one asked: this call
        // goes on in `v`, the next one asks again.
        if self.keep_api_version(epoch, v).is_ok() {
            tracing::info!(daemon = %self.0.name, daemon_api_version = %newest, api_version = %v, "API version negotiated");
        }
        Ok(v)
    }

    /// Negotiates the API version now unless it is known. A task that is
    /// about to make several calls at once calls this first, so that a
    /// daemon that is down costs one failed `/_ping`, not one per call.
    pub async fn negotiate(&self) -> Result<ApiVersion, DockerError> {
        let t = self.transport(ApiEndpoint::Ping)?;
        self.negotiated(t).await
    }

    /// `path` with the negotiated version's prefix.
    pub(super) async fn versioned(&self, t: &Transport, path: &str) -> Result<String, DockerError> {
        Ok(format!("/v{}{path}", self.negotiated(t).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DaemonConfig;
    use crate::docker::Unobserved;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn negotiates_as_the_docker_cli_does() {
        let v = |s| ApiVersion::parse(s).expect("a version");
        // dockerd 20.10 and Podman 4: theirs.
        assert_eq!(negotiate(v("1.41"), Some(v("1.12"))), v("1.41"));
        // Docker 26: ours and theirs agree.
        assert_eq!(negotiate(v("1.45"), Some(v("1.24"))), v("1.45"));
        // Docker 29: ours, which it still takes.
        assert_eq!(negotiate(v("1.52"), Some(v("1.44"))), NEWEST_API);
        // A daemon whose minimum is above ours: its minimum.
        assert_eq!(negotiate(v("1.60"), Some(v("1.50"))), v("1.50"));
        assert_eq!(negotiate(v("1.52"), None), NEWEST_API);
        assert!(v("1.9") < v("1.41"));
        assert_eq!(ApiVersion::parse("1"), None);
        assert_eq!(ApiVersion::parse("x.y"), None);
        assert_eq!(v(" 1.45 ").to_string(), "1.45");
    }

    /// A poll's `/version` answered by a daemon that went away while
    /// another call of the same poll failed to connect (seen when a dockerd
    /// 20.10 was stopped mid-poll and a Docker 26 started on its socket):
    /// the old version must not come back, or the new daemon is spoken to
    /// in it without being asked.
    #[test]
    fn an_answer_begun_before_a_failed_connection_is_not_learned() {
        let daemon = DaemonConfig {
            name: "d".into(),
            host: crate::config::Host::parse("unix:///nonexistent.sock").expect("a host"),
            tls: None,
        };
        let c = Connection::new(&daemon, Duration::from_secs(1), Arc::new(Unobserved));
        let v = |s| ApiVersion::parse(s).expect("a version");
        c.learn(c.api_epoch(), v("1.41"), Some(v("1.12")));
        assert_eq!(c.api_version(), Some(v("1.41")));
        // The poll begins; one of its calls fails to connect.
        let begun = c.api_epoch();
        c.forget_api_version();
        assert_eq!(c.api_version(), None);
        // Then its /version answer (the old daemon's) comes in.
        c.learn(begun, v("1.41"), Some(v("1.12")));
        assert_eq!(
            c.api_version(),
            None,
            "learned from a daemon that may be gone"
        );
        // Neither is a negotiation's answer kept.
        assert!(c.keep_api_version(begun, v("1.41")).is_err());
        // A call begun after the failure learns: the new daemon's version.
        c.learn(c.api_epoch(), v("1.45"), Some(v("1.24")));
        assert_eq!(c.api_version(), Some(v("1.45")));
        // And a later answer relearns, as after an upgrade without a failure.
        c.learn(c.api_epoch(), v("1.52"), Some(v("1.44")));
        assert_eq!(c.api_version(), Some(NEWEST_API));
    }

    #[test]
    fn a_refusal_names_the_minimum() {
        assert_eq!(
            minimum_in_refusal(
                "client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version"
            ),
            Some(ApiVersion(1, 44))
        );
        assert_eq!(minimum_in_refusal("page not found"), None);
    }
}
