//! One connection per daemon ([`Connection`]): one HTTP client over the
//! daemon's transport, and one method per Engine API call. Every method is
//! tied to its `endpoint` label and runs through one timed path that bounds
//! it and reports its latency and failure to an [`Observer`], so each
//! request the daemon receives is counted once, under the right endpoint,
//! streams (events, pulls) included. The Docker layer knows nothing of the
//! metrics module: it is handed the observer.

pub mod answers;
mod error;
mod transport;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

pub use error::DockerError;
pub use transport::LineStream;

use crate::config::{DaemonConfig, TlsConfig};
use crate::df::DiskUsage;
use crate::labels::{ApiEndpoint, ErrorReason};
use crate::reference::ImageRef;
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
        Self(Arc::new(Inner {
            name: daemon.name.clone(),
            tls: daemon.tls.clone(),
            transport: Transport::new(daemon),
            timeout,
            observer,
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
                match crate::tls::client_cert_expired(tls) {
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
        self.timed(endpoint, timeout, async move {
            let response = t.send(hyper::Method::GET, path, &[]).await?;
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

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version, DockerError> {
        let t = self.0.timeout;
        self.get(
            ApiEndpoint::Version,
            "/version",
            SMALL_ANSWER,
            t,
            Self::json("version"),
        )
        .await
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
        let path = format!("/images/{image}/json");
        let t = self.0.timeout;
        let tr = self.transport(ApiEndpoint::ImageInspect)?;
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
            crate::df::parse,
        )
        .await
    }

    /// `GET /events` with `query`: the stream's lines. The call (until the
    /// answer begins) is bounded by the call timeout; a failure of the
    /// stream later is reported too.
    pub async fn events(&self, query: &[(&str, String)]) -> Result<LineStream, DockerError> {
        let path = format!(
            "/events?{}",
            serde_urlencoded::to_string(query).unwrap_or_default()
        );
        let t = self.0.timeout;
        let tr = self.transport(ApiEndpoint::Events)?;
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
            let started = match this.transport(ApiEndpoint::ImagePull) {
                Ok(tr) => {
                    this.timed(ApiEndpoint::ImagePull, Duration::MAX, async move {
                        let response = tr.send(hyper::Method::POST, &path, &headers).await?;
                        Ok(transport::lines(response.into_body(), MAX_PULL_LINE))
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            match started {
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
    fn filters_go_in_the_query_as_url_encoded_json() {
        assert_eq!(image_list_path(None), "/images/json");
        let f = BTreeMap::from([("reference".to_owned(), vec!["ci/*".to_owned()])]);
        assert_eq!(
            image_list_path(Some(&f)),
            "/images/json?filters=%7B%22reference%22%3A%5B%22ci%2F*%22%5D%7D"
        );
    }
}
