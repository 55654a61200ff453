//! One connection per daemon ([`Connection`]): one HTTP client over the
//! daemon's transport, and one method per Engine API call. Every method is
//! tied to its `endpoint` label and runs through one timed path that bounds
//! it and reports its latency and failure to an [`Observer`], so each
//! request the daemon receives is counted once, under the right endpoint,
//! streams (events, pulls) included. The Docker layer knows nothing of the
//! metrics module: it is handed the observer.

pub mod answers;
mod containers;
pub mod df;
mod distribution;
mod error;
pub mod prune;
mod transport;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

pub use containers::TaggedImage;
pub use distribution::{LocalImage, RegistryDescriptor, endpoint_missing};
pub use error::DockerError;
pub use transport::LineStream;

use crate::config::{DaemonConfig, TlsConfig};
use crate::docker::df::DiskUsage;
use crate::folds::reference::ImageRef;
use crate::labels::{ApiEndpoint, ErrorReason};
use answers::{ContainerSummary, ImageSummary, Info, Version};
use transport::Transport;

/// Told about every call: its latency (`None` if it could not even be
/// sent) and, if it failed, why. Stream failures after the answer began
/// come as a second report with no latency.
pub trait Observer: Send + Sync + std::fmt::Debug {
    fn api_call(
        &self,
        daemon: &str,
        endpoint: ApiEndpoint,
        took: Option<Duration>,
        error: Option<ErrorReason>,
    );
}

/// An observer that ignores everything (for one-off CLI calls).
#[derive(Debug)]
pub struct Unobserved;

impl Observer for Unobserved {
    fn api_call(&self, _: &str, _: ApiEndpoint, _: Option<Duration>, _: Option<ErrorReason>) {}
}

/// The most a small answer (version, info, an error) may take.
const SMALL_ANSWER: usize = 1 << 20;
/// The most a list answer may take: about 300 bytes per image, so room for
/// some 200,000 images; likewise for containers and `/system/df`.
const LIST_ANSWER: usize = 64 << 20;
/// Longest event line held in memory; real ones are well under 4 KiB.
const MAX_EVENT_LINE: usize = 256 * 1024;
/// The longest pull-stream line held in memory; real ones are under 1 KiB.
pub const MAX_PULL_LINE: usize = 1024 * 1024;

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
fn minimum_in_refusal(message: &str) -> Option<ApiVersion> {
    let (_, rest) = message.split_once("inimum supported API version is ")?;
    ApiVersion::parse(
        rest.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()?,
    )
}

/// A daemon's connection, cheap to clone: every task of the daemon shares it.
#[derive(Debug, Clone)]
pub struct Connection(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    name: String,
    tls: Option<TlsConfig>,
    /// `Err` when the TLS files could not be read: every call then fails
    /// with that, counted, without being sent.
    transport: Result<Transport, DockerError>,
    timeout: Duration,
    observer: Arc<dyn Observer>,
    /// The negotiated API version every request is prefixed with, and how
    /// often it was forgotten.
    api: RwLock<Negotiated>,
    /// Serialises negotiations, so concurrent first calls ping once.
    negotiating: tokio::sync::Mutex<()>,
    /// Whether "the daemon's minimum is above ours" was logged.
    told_minimum: AtomicBool,
    /// Calls in progress over every daemon's connection together
    /// (`[poll].max_concurrent_calls`); `None` for a one-off connection.
    calls: Option<Arc<tokio::sync::Semaphore>>,
}

/// The API version to speak, `None` until negotiated and again after the
/// connection failed (the daemon may come back upgraded). `forgotten`
/// counts those failures: an answer to a call begun before one (say, the
/// `/version` of a poll in which the daemon went away) came from a daemon
/// that may be gone, and is not learned from.
#[derive(Debug, Default)]
struct Negotiated {
    version: Option<ApiVersion>,
    forgotten: u64,
}

/// A call on its way: reports itself when it ends, or when it is dropped
/// unfinished (shut down, or given up by its caller) as a request that was
/// made but whose failure is not the daemon's.
struct Pending {
    conn: Arc<Inner>,
    endpoint: ApiEndpoint,
    start: Instant,
    done: bool,
}

impl Pending {
    fn finish(mut self, error: Option<ErrorReason>) {
        self.done = true;
        self.conn.observer.api_call(
            &self.conn.name,
            self.endpoint,
            Some(self.start.elapsed()),
            error,
        );
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.conn.observer.api_call(
                &self.conn.name,
                self.endpoint,
                Some(self.start.elapsed()),
                None,
            );
        }
    }
}

impl Connection {
    /// The daemon's connection. Nothing is sent yet; unreadable TLS files
    /// make every call fail (and say so) rather than this.
    pub fn new(daemon: &DaemonConfig, timeout: Duration, observer: Arc<dyn Observer>) -> Self {
        Self::limited(daemon, timeout, observer, None)
    }

    /// The daemon's connection, whose calls each take a permit of `calls`
    /// while they are in progress (streams: until their answer begins).
    pub fn limited(
        daemon: &DaemonConfig,
        timeout: Duration,
        observer: Arc<dyn Observer>,
        calls: Option<Arc<tokio::sync::Semaphore>>,
    ) -> Self {
        Self(Arc::new(Inner {
            name: daemon.name.clone(),
            tls: daemon.tls.clone(),
            transport: Transport::new(daemon),
            timeout,
            observer,
            api: RwLock::new(Negotiated::default()),
            negotiating: tokio::sync::Mutex::new(()),
            told_minimum: AtomicBool::new(false),
            calls,
        }))
    }

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
    fn api_epoch(&self) -> u64 {
        self.0
            .api
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .forgotten
    }

    /// The connection failed: whatever answers next may be another daemon.
    fn forget_api_version(&self) {
        let mut api = self.0.api.write().unwrap_or_else(PoisonError::into_inner);
        api.version = None;
        api.forgotten += 1;
    }

    /// Keeps `v`, learned from an answer to a call begun at `epoch`, unless
    /// the version was forgotten since (then `v` may be a gone daemon's).
    /// Returns what it replaced, or `Err` if it was not kept.
    fn keep_api_version(&self, epoch: u64, v: ApiVersion) -> Result<Option<ApiVersion>, ()> {
        let mut api = self.0.api.write().unwrap_or_else(PoisonError::into_inner);
        if api.forgotten != epoch {
            return Err(());
        }
        Ok(api.version.replace(v))
    }

    /// What the daemon says of its versions (every `/version` answer, and a
    /// refusal naming its minimum), in answer to a call begun at `epoch`: a
    /// daemon upgraded behind the same address is spoken to in its new
    /// version from the next call on.
    fn learn(&self, epoch: u64, newest: ApiVersion, min: Option<ApiVersion>) {
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
    async fn versioned(&self, t: &Transport, path: &str) -> Result<String, DockerError> {
        Ok(format!("/v{}{path}", self.negotiated(t).await?))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// A daemon refusing an expired client certificate may, in TLS 1.3,
    /// close the connection before its alert is read: the client then sees
    /// a reset, not a TLS error. dockerd also only answers "bad
    /// certificate". Name the real cause when we know it.
    fn explain(&self, e: DockerError) -> DockerError {
        match (e, &self.0.tls) {
            (e @ (DockerError::Connect(_) | DockerError::Tls(_)), Some(tls)) => {
                match crate::config::tls::client_cert_expired(tls) {
                    Some(expired) => DockerError::Tls(format!("{expired}; {e}")),
                    None => e,
                }
            }
            (e, _) => e,
        }
    }

    /// The transport, or (when its TLS files could not be read) the error,
    /// reported under `endpoint` as a call that could not be sent.
    fn transport(&self, endpoint: ApiEndpoint) -> Result<&Transport, DockerError> {
        self.0.transport.as_ref().map_err(|e| {
            let e = self.explain(e.clone());
            self.0
                .observer
                .api_call(&self.0.name, endpoint, None, Some(e.reason()));
            e
        })
    }

    /// The one timed path: runs `call` under `timeout`, reports it under
    /// `endpoint`, and returns its result.
    async fn timed<T>(
        &self,
        endpoint: ApiEndpoint,
        timeout: Duration,
        call: impl Future<Output = Result<T, DockerError>>,
    ) -> Result<T, DockerError> {
        let epoch = self.api_epoch();
        // Waiting for a turn is not the daemon's time: it is neither timed
        // nor bounded by the call's timeout.
        let _turn = match &self.0.calls {
            Some(calls) => calls.acquire().await.ok(),
            None => None,
        };
        let pending = Pending {
            conn: Arc::clone(&self.0),
            endpoint,
            start: Instant::now(),
            done: false,
        };
        let result = tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(DockerError::Timeout(timeout)))
            .map_err(|e| self.explain(e));
        pending.finish(result.as_ref().err().map(DockerError::reason));
        match &result {
            // Whatever answers next may be another daemon (an upgrade).
            Err(DockerError::Connect(_) | DockerError::Tls(_) | DockerError::Timeout(_)) => {
                self.forget_api_version();
            }
            Err(DockerError::Http {
                status: 400,
                message,
            }) => {
                if let Some(min) = minimum_in_refusal(message) {
                    self.learn(epoch, min, Some(min));
                }
            }
            _ => {}
        }
        result
    }

    /// GETs `path` and decodes the answer with `decode`, under the call
    /// timeout; a decode failure is the call's failure.
    async fn get<T>(
        &self,
        endpoint: ApiEndpoint,
        path: &str,
        limit: usize,
        timeout: Duration,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, DockerError> {
        let t = self.transport(endpoint)?;
        let path = self.versioned(t, path).await?;
        self.timed(endpoint, timeout, async move {
            let response = t.send(hyper::Method::GET, &path, &[]).await?;
            let body = transport::read_body(response, limit).await?;
            decode(&body).map_err(DockerError::Decode)
        })
        .await
    }

    fn json<T: serde::de::DeserializeOwned>(
        what: &'static str,
    ) -> impl FnOnce(&[u8]) -> Result<T, String> {
        move |body| serde_json::from_slice(body).map_err(|e| format!("{what}: {e}"))
    }

    /// `GET /version`; what it says of the daemon's versions is learned.
    pub async fn version(&self) -> Result<Version, DockerError> {
        let t = self.0.timeout;
        let epoch = self.api_epoch();
        let v: Version = self
            .get(
                ApiEndpoint::Version,
                "/version",
                SMALL_ANSWER,
                t,
                Self::json("version"),
            )
            .await?;
        if let Some(newest) = v.api_version.as_deref().and_then(ApiVersion::parse) {
            let min = v.min_api_version.as_deref().and_then(ApiVersion::parse);
            self.learn(epoch, newest, min);
        }
        Ok(v)
    }

    /// `GET /info`.
    pub async fn info(&self) -> Result<Info, DockerError> {
        let t = self.0.timeout;
        self.get(
            ApiEndpoint::Info,
            "/info",
            LIST_ANSWER,
            t,
            Self::json("info"),
        )
        .await
    }

    /// `GET /containers/json?all=1`: every container, in any state.
    pub async fn containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        let t = self.0.timeout;
        let path = "/containers/json?all=1";
        self.get(
            ApiEndpoint::ContainerList,
            path,
            LIST_ANSWER,
            t,
            Self::json("container list"),
        )
        .await
    }

    /// `GET /images/json`, with `filters` as the URL-encoded JSON map of
    /// string lists the Engine API takes.
    pub async fn images(
        &self,
        filters: Option<&BTreeMap<String, Vec<String>>>,
    ) -> Result<Vec<ImageSummary>, DockerError> {
        let path = image_list_path(filters);
        let t = self.0.timeout;
        self.get(
            ApiEndpoint::ImageList,
            &path,
            LIST_ANSWER,
            t,
            Self::json("image list"),
        )
        .await
    }

    /// `GET /images/{name}/json`: whether the image is on the daemon. A 404
    /// is an answer (no), not a failure.
    pub async fn image_present(&self, image: &ImageRef) -> Result<bool, DockerError> {
        let t = self.0.timeout;
        let tr = self.transport(ApiEndpoint::ImageInspect)?;
        let path = self.versioned(tr, &format!("/images/{image}/json")).await?;
        let found = self
            .timed(ApiEndpoint::ImageInspect, t, async move {
                match tr.send(hyper::Method::GET, &path, &[]).await {
                    Ok(response) => transport::read_body(response, LIST_ANSWER)
                        .await
                        .map(|_| true),
                    Err(DockerError::Http { status: 404, .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(found)
    }

    /// `GET /system/df`, bounded by `timeout` (it can take minutes on a big
    /// host), decoded in either shape.
    pub async fn system_df(&self, timeout: Duration) -> Result<DiskUsage, DockerError> {
        self.get(
            ApiEndpoint::SystemDf,
            "/system/df",
            LIST_ANSWER,
            timeout,
            crate::docker::df::parse,
        )
        .await
    }

    /// `GET /events` with `query`: the stream's lines. The call (until the
    /// answer begins) is bounded by the call timeout; a failure of the
    /// stream later is reported too.
    pub async fn events(&self, query: &[(&str, String)]) -> Result<LineStream, DockerError> {
        let t = self.0.timeout;
        let tr = self.transport(ApiEndpoint::Events)?;
        let query = serde_urlencoded::to_string(query).unwrap_or_default();
        let path = self.versioned(tr, &format!("/events?{query}")).await?;
        let lines = self
            .timed(ApiEndpoint::Events, t, async move {
                let response = tr.send(hyper::Method::GET, &path, &[]).await?;
                Ok(transport::lines(response.into_body(), MAX_EVENT_LINE))
            })
            .await?;
        Ok(self.reporting(ApiEndpoint::Events, lines))
    }

    /// `POST /images/create` for `image` (never without a tag: then the
    /// Engine API pulls every tag), as one stream of lines: the request is
    /// sent when the stream is first polled, so the caller's timers bound a
    /// daemon that never answers too. Dropping the stream closes the
    /// connection, which cancels the pull on the daemon.
    pub fn pull(&self, image: &ImageRef, registry_auth: Option<String>) -> LineStream {
        let query = serde_urlencoded::to_string([
            ("fromImage", image.name.as_str()),
            ("tag", image.api_tag().as_str()),
        ])
        .unwrap_or_default();
        let path = format!("/images/create?{query}");
        let this = self.clone();
        let head = async move {
            let headers: Vec<(&str, &str)> = registry_auth
                .as_deref()
                .map(|a| ("X-Registry-Auth", a))
                .into_iter()
                .collect();
            // The pull's own limits (stall, timeout) bound the answer, not
            // the call timeout: a registry may take a while to start.
            let started = async {
                let tr = this.transport(ApiEndpoint::ImagePull)?;
                let path = this.versioned(tr, &path).await?;
                this.timed(ApiEndpoint::ImagePull, Duration::MAX, async move {
                    let response = tr.send(hyper::Method::POST, &path, &headers).await?;
                    Ok(transport::lines(response.into_body(), MAX_PULL_LINE))
                })
                .await
            };
            match started.await {
                Ok(lines) => this.reporting(ApiEndpoint::ImagePull, lines),
                Err(e) => Box::pin(futures_util::stream::iter([Err(e)])) as LineStream,
            }
        };
        Box::pin(futures_util::stream::once(head).flatten())
    }

    /// `lines`, reporting a failure of the stream under `endpoint`.
    fn reporting(&self, endpoint: ApiEndpoint, lines: LineStream) -> LineStream {
        let conn = Arc::clone(&self.0);
        Box::pin(lines.map(move |line| {
            if let Err(e) = &line {
                conn.observer
                    .api_call(&conn.name, endpoint, None, Some(e.reason()));
            }
            line
        }))
    }
}

/// `/images/json`, with `filters` as the URL-encoded JSON the API takes.
fn image_list_path(filters: Option<&BTreeMap<String, Vec<String>>>) -> String {
    match filters {
        None => "/images/json".to_owned(),
        Some(f) => {
            let json = serde_json::to_string(f).unwrap_or_default();
            let query = serde_urlencoded::to_string([("filters", json)]).unwrap_or_default();
            format!("/images/json?{query}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn filters_go_in_the_query_as_url_encoded_json() {
        assert_eq!(image_list_path(None), "/images/json");
        let f = BTreeMap::from([("reference".to_owned(), vec!["ci/*".to_owned()])]);
        assert_eq!(
            image_list_path(Some(&f)),
            "/images/json?filters=%7B%22reference%22%3A%5B%22ci%2F*%22%5D%7D"
        );
    }
}
