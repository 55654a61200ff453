//! One connection per daemon ([`Connection`]): one HTTP client over the
//! daemon's transport, and one method per Engine API call. Every method is
//! tied to its `endpoint` label and runs through one timed path that bounds
//! it and reports its latency and failure to an [`Observer`], so each
//! request the daemon receives is counted once, under the right endpoint,
//! streams (events, pulls) included. The Docker layer knows nothing of the
//! metrics module: it is handed the observer.
//!
//! Where things go: this file is the connection's core (the one timed,
//! counted, bounded call path and the [`Observer`]); `negotiation.rs` the
//! API version (and `GET /_ping`, which names it); `transport.rs` and `error.rs` the wire and its failures.
//! Every Engine API call lives, with its answer types and their decoding,
//! in the file named for the first segment of its path: `system.rs`
//! (`/version`, `/info`, `/system/df`, whose two-shape decoder sits beside
//! it in `df.rs`), `images.rs`, `containers.rs`, `distribution.rs`,
//! `events.rs`.

mod containers;
pub mod df;
mod distribution;
mod error;
mod events;
mod images;
mod negotiation;
mod system;
mod transport;

use std::future::Future;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

pub use containers::{ContainerHealth, ContainerSummary};
pub use distribution::{RegistryDescriptor, endpoint_missing};
pub use error::DockerError;
pub use events::{Actor, Event, EventStream};
pub use images::{DanglingImage, ImageSummary, LocalImage, TaggedImage, bare_id};
pub use negotiation::{ApiVersion, NEWEST_API, negotiate};
pub use system::{Info, Named, Version};
pub use transport::LineStream;

use crate::config::{DaemonConfig, TlsConfig};
use crate::labels::{ApiEndpoint, ErrorReason};
use negotiation::{Negotiated, minimum_in_refusal};
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
/// The most an answer of `endpoint` may take: a small one (the daemon's
/// version, one container's inspect, a registry descriptor, a deletion's
/// report) or one that may list a whole host (`/info` included).
fn answer_limit(endpoint: ApiEndpoint) -> usize {
    match endpoint {
        ApiEndpoint::Ping
        | ApiEndpoint::Version
        | ApiEndpoint::ContainerInspect
        | ApiEndpoint::Distribution
        | ApiEndpoint::ImageDelete => SMALL_ANSWER,
        _ => LIST_ANSWER,
    }
}

/// The longest pull-stream line held in memory; real ones are under 1 KiB.
pub const MAX_PULL_LINE: usize = 1024 * 1024;

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
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, DockerError> {
        self.get_within(endpoint, path, self.timeout(), decode)
            .await
    }

    /// `get`, bounded by `timeout` instead of the call timeout.
    async fn get_within<T>(
        &self,
        endpoint: ApiEndpoint,
        path: &str,
        timeout: Duration,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, DockerError> {
        let t = self.transport(endpoint)?;
        let path = self.versioned(t, path).await?;
        let limit = answer_limit(endpoint);
        self.timed(endpoint, timeout, async move {
            let response = t.send(hyper::Method::GET, &path, &[]).await?;
            let body = transport::read_body(response, limit).await?;
            decode(&body).map_err(DockerError::Decode)
        })
        .await
    }

    /// GETs `path` and decodes the answer with `decode`, as `get` does,
    /// but a 404 is an answer (no such object), not a failure: `None`.
    async fn get_found<T>(
        &self,
        endpoint: ApiEndpoint,
        path: &str,
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<Option<T>, DockerError> {
        let t = self.transport(endpoint)?;
        let path = self.versioned(t, path).await?;
        let limit = answer_limit(endpoint);
        self.timed(endpoint, self.timeout(), async move {
            match t.send(hyper::Method::GET, &path, &[]).await {
                Ok(response) => {
                    let body = transport::read_body(response, limit).await?;
                    decode(&body).map(Some).map_err(DockerError::Decode)
                }
                Err(DockerError::Http { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    fn json<T: serde::de::DeserializeOwned>(
        what: &'static str,
    ) -> impl FnOnce(&[u8]) -> Result<T, String> {
        move |body| serde_json::from_slice(body).map_err(|e| format!("{what}: {e}"))
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
