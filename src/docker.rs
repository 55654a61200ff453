//! Connecting to a daemon by URL (unix socket, plain TCP, TCP with mutual
//! TLS), running every call under a timeout, and classifying what went wrong
//! into the closed set of reasons the error counter uses.

use std::error::Error as StdError;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{DaemonConfig, Endpoint, TlsConfig, parse_host};
use crate::metrics::{ApiEndpoint, ErrorReason, Metrics};

/// Why a Docker call failed. The message is for logs; `reason()` is the label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS failed: {0}")]
    Tls(String),
    #[error("daemon answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("cannot decode the daemon's answer: {0}")]
    Decode(String),
}

impl DockerError {
    pub fn reason(&self) -> ErrorReason {
        match self {
            Self::Timeout(_) => ErrorReason::Timeout,
            Self::Connect(_) => ErrorReason::Connect,
            Self::Tls(_) => ErrorReason::Tls,
            Self::Http { status, .. } if *status >= 500 => ErrorReason::Http5xx,
            Self::Http { .. } => ErrorReason::Http4xx,
            Self::Decode(_) => ErrorReason::Decode,
        }
    }
}

/// The whole chain of causes in one line, so a log says what really failed
/// ("client error (Connect): Connection refused (os error 111)").
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// A rustls error somewhere in the chain. hyper wraps it in an `io::Error`
/// whose `source()` skips it, so look inside each `io::Error` too.
fn find_tls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            let inner: &(dyn StdError + 'static) = inner;
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t);
            }
            cur = Some(inner);
            continue;
        }
        cur = e.source();
    }
    None
}

/// Explains a rustls failure in the terms an operator can act on.
fn explain_tls(err: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let hint = match err {
        E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the daemon's certificate is not signed by the configured tls.ca"
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the daemon's certificate has expired"
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the daemon's certificate is not valid for the host name in `host`"
        }
        E::AlertReceived(A::CertificateRequired | A::BadCertificate | A::UnknownCA) => {
            "the daemon refused our client certificate (tls.cert/tls.key); is it signed by the CA the daemon trusts (--tlscacert)?"
        }
        E::AlertReceived(A::CertificateExpired) => {
            "the daemon says our client certificate (tls.cert) has expired"
        }
        E::InvalidMessage(_) => "the peer does not speak TLS; is this a plain-HTTP port?",
        _ => "TLS handshake failed",
    };
    format!("{hint} ({err})")
}

/// Maps a bollard error onto our closed set of reasons.
pub fn classify(err: &bollard::errors::Error, timeout: Duration) -> DockerError {
    use bollard::errors::Error as E;
    match err {
        E::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Http {
            status: *status_code,
            message: message.clone(),
        },
        E::RequestTimeoutError => DockerError::Timeout(timeout),
        E::JsonDataError { .. }
        | E::JsonSerdeError { .. }
        | E::StrParseError { .. }
        | E::APIVersionParseError {}
        | E::DockerStreamError { .. } => DockerError::Decode(chain(err)),
        E::SocketNotFoundError(path) => {
            DockerError::Connect(format!("socket {path} does not exist"))
        }
        _ => {
            // `IOError` is transparent: its `source()` skips the io::Error
            // itself, so start the search there.
            let root: &(dyn StdError + 'static) = match err {
                E::IOError { err } => err,
                other => other,
            };
            match find_tls_error(root) {
                Some(t) => DockerError::Tls(explain_tls(t)),
                None => DockerError::Connect(chain(err)),
            }
        }
    }
}

/// The largest certificate, key or secret file read.
const MAX_SMALL_FILE: u64 = 1024 * 1024;

/// Reads a small regular file. Anything else (a FIFO, a device, a directory)
/// is refused before it is opened: reading one could block forever.
pub(crate) fn read_small_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > MAX_SMALL_FILE {
        return Err(format!(
            "{} is larger than {MAX_SMALL_FILE} bytes",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_small_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_small_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("{}: not a readable PEM private key: {e}", path.display()))
}

/// The rustls client config for mutual TLS: trusts only `tls.ca` (as dockerd's
/// `--tlsverify` clients do), presents `tls.cert`/`tls.key`. Errors name the
/// field (`ca`, `cert`, `key`) they belong to.
pub fn tls_client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, (&'static str, String)> {
    let ca = read_certs(&tls.ca).map_err(|e| ("ca", e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(|e| {
            (
                "ca",
                format!("{}: not a usable CA certificate: {e}", tls.ca.display()),
            )
        })?;
    }
    let certs = read_certs(&tls.cert).map_err(|e| ("cert", e))?;
    let key = read_key(&tls.key).map_err(|e| ("key", e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| ("ca", e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| {
            (
                "key",
                format!(
                    "{} does not fit {}: {e}",
                    tls.key.display(),
                    tls.cert.display()
                ),
            )
        })
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0_usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A certificate's notAfter as (unix seconds, "YYYY-MM-DD HH:MM:SS UTC").
pub fn not_after(cert_der: &[u8]) -> Option<(i64, String)> {
    let (_, cert, _) = der(cert_der)?;
    let (_, tbs, _) = der(cert)?;
    let mut rest = tbs;
    // [0] version is optional; then serial, signature algorithm, issuer.
    let (tag, _, after) = der(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (_, validity, _) = der(rest)?;
    let (_, _, after_not_before) = der(validity)?;
    let (tag, time, _) = der(after_not_before)?;
    let text = std::str::from_utf8(time).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        // UTCTime: YYMMDDHHMMSS, years 1950-2049.
        0x17 if digits.len() == 12 => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        // GeneralizedTime: YYYYMMDDHHMMSS.
        0x18 if digits.len() == 14 => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (mo, d, h, mi, se) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    let secs = days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
    Some((
        secs,
        format!("{year:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{se:02} UTC"),
    ))
}

/// If the client certificate of `tls` has expired: a sentence saying so,
/// naming the file. The daemon only answers "bad certificate".
pub fn client_cert_expired(tls: &TlsConfig) -> Option<String> {
    let cert = read_certs(&tls.cert).ok()?.into_iter().next()?;
    let (secs, date) = not_after(&cert)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    (i64::try_from(now).ok()? > secs).then(|| {
        format!(
            "the client certificate tls.cert ({}) expired on {date}",
            tls.cert.display()
        )
    })
}

/// Config-time check of a `tls` table: every file exists and parses.
pub fn check_tls_files(tls: &TlsConfig) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    if let Err(e) = read_certs(&tls.ca) {
        problems.push(("ca", e));
    }
    if let Err(e) = read_certs(&tls.cert) {
        problems.push(("cert", e));
    }
    if let Err(e) = read_key(&tls.key) {
        problems.push(("key", e));
    }
    if problems.is_empty()
        && let Err(p) = tls_client_config(tls)
    {
        problems.push(p);
    }
    problems
}

/// bollard's own timeout covers only the response head and counts whole
/// seconds; ours (in [`Client::call`]) covers the whole call, so bollard's is
/// just a backstop.
fn backstop_secs(timeout: Duration) -> u64 {
    timeout.as_secs() + 2
}

/// https only: a TLS daemon is never spoken to in plain text.
fn https_connector(
    config: rustls::ClientConfig,
) -> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build()
}

/// Builds a bollard client for the daemon. Nothing is sent yet; a unix
/// socket that does not exist is an error here.
pub fn connect(daemon: &DaemonConfig, timeout: Duration) -> Result<Docker, DockerError> {
    let endpoint = parse_host(&daemon.host).map_err(DockerError::Connect)?;
    let secs = backstop_secs(timeout);
    match (endpoint, &daemon.tls) {
        (Endpoint::Unix(path), _) => {
            Docker::connect_with_unix(&path.to_string_lossy(), secs, API_DEFAULT_VERSION)
                .map_err(|e| classify(&e, timeout))
        }
        (Endpoint::Tcp(addr), None) => {
            Docker::connect_with_http(&format!("http://{addr}"), secs, API_DEFAULT_VERSION)
                .map_err(|e| classify(&e, timeout))
        }
        (Endpoint::Tcp(addr), Some(tls)) => {
            let config = tls_client_config(tls)
                .map_err(|(field, e)| DockerError::Tls(format!("tls.{field}: {e}")))?;
            let client = HyperClient::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build(https_connector(config));
            let transport = move |req: BollardRequest| {
                let client = client.clone();
                async move {
                    client
                        .request(req)
                        .await
                        .map_err(bollard::errors::Error::from)
                }
            };
            Docker::connect_with_custom_transport(
                transport,
                Some(format!("https://{addr}")),
                secs,
                API_DEFAULT_VERSION,
            )
            .map_err(|e| classify(&e, timeout))
        }
    }
}

/// The hyper client behind [`RawClient`], one per kind of transport.
#[derive(Debug)]
enum RawTransport {
    Unix {
        client: HyperClient<hyperlocal::UnixConnector, Empty<Bytes>>,
        socket: std::path::PathBuf,
    },
    Http {
        client: HyperClient<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
        addr: String,
    },
    Https {
        client: HyperClient<
            hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
            Empty<Bytes>,
        >,
        addr: String,
    },
}

/// Plain requests whose answer we decode ourselves: for endpoints whose
/// shape changed across API versions (`/system/df`), streams (pulls, events),
/// and the image lists, of which we need two fields, not bollard's full
/// models. Answers are read up to a size limit.
#[derive(Debug, Clone)]
pub struct RawClient(Arc<RawTransport>);

/// Idle connections a pooled [`RawClient`] keeps: a poll's image calls go
/// one after the other, so one connection serves them all.
const POOL_IDLE: usize = 1;

impl RawClient {
    /// A client that opens a connection per request: for streams and rare
    /// calls, where a dropped stream must close its connection.
    pub fn connect(daemon: &DaemonConfig) -> Result<Self, DockerError> {
        Self::connect_with(daemon, 0)
    }

    /// A client that keeps idle connections for the next request: for the
    /// image calls of every poll, so a TLS daemon is not shaken hands with
    /// for each of them.
    pub fn connect_pooled(daemon: &DaemonConfig) -> Result<Self, DockerError> {
        Self::connect_with(daemon, POOL_IDLE)
    }

    fn connect_with(daemon: &DaemonConfig, idle: usize) -> Result<Self, DockerError> {
        let transport = match (
            parse_host(&daemon.host).map_err(DockerError::Connect)?,
            &daemon.tls,
        ) {
            (Endpoint::Unix(socket), _) => RawTransport::Unix {
                client: HyperClient::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(idle)
                    .build(hyperlocal::UnixConnector),
                socket,
            },
            (Endpoint::Tcp(addr), None) => RawTransport::Http {
                client: HyperClient::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(idle)
                    .build_http(),
                addr,
            },
            (Endpoint::Tcp(addr), Some(tls)) => {
                let config = tls_client_config(tls)
                    .map_err(|(field, e)| DockerError::Tls(format!("tls.{field}: {e}")))?;
                RawTransport::Https {
                    client: HyperClient::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(idle)
                        .build(https_connector(config)),
                    addr,
                }
            }
        };
        Ok(Self(Arc::new(transport)))
    }

    /// Sends one request with an empty body and returns the response head.
    async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, DockerError> {
        let uri: hyper::Uri = match &*self.0 {
            RawTransport::Unix { socket, .. } => hyperlocal::Uri::new(socket, path).into(),
            RawTransport::Http { addr, .. } => format!("http://{addr}{path}")
                .parse()
                .map_err(|e| DockerError::Connect(format!("bad URL: {e}")))?,
            RawTransport::Https { addr, .. } => format!("https://{addr}{path}")
                .parse()
                .map_err(|e| DockerError::Connect(format!("bad URL: {e}")))?,
        };
        let mut request = hyper::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| DockerError::Connect(format!("bad request: {e}")))?;
        let response = match &*self.0 {
            RawTransport::Unix { client, .. } => client.request(request).await,
            RawTransport::Http { client, .. } => client.request(request).await,
            RawTransport::Https { client, .. } => client.request(request).await,
        };
        response.map_err(|e| match find_tls_error(&e) {
            Some(t) => DockerError::Tls(explain_tls(t)),
            None => DockerError::Connect(chain(&e)),
        })
    }

    /// The daemon's error answer as a [`DockerError::Http`].
    async fn http_error(response: hyper::Response<hyper::body::Incoming>) -> DockerError {
        let status = response.status().as_u16();
        // An error answer is one short JSON object; read no more than this.
        let body = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        DockerError::Http { status, message }
    }

    /// GETs `path` (with its query) and returns the body, at most `limit`
    /// bytes of it. No timeout here: callers bound the whole call.
    pub async fn get(&self, path: &str, limit: usize) -> Result<Bytes, DockerError> {
        let response = self.send(hyper::Method::GET, path, &[]).await?;
        if response.status().as_u16() >= 400 {
            return Err(Self::http_error(response).await);
        }
        Ok(http_body_util::Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                DockerError::Decode(format!("reading the answer: {e} (limit {limit} bytes)"))
            })?
            .to_bytes())
    }

    /// POSTs to `path` and returns the answer as a stream of lines (without
    /// the newline), each at most `max_line` bytes: a longer one ends the
    /// stream with an error instead of growing memory.
    pub async fn post_lines(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        max_line: usize,
    ) -> Result<LineStream, DockerError> {
        self.lines(hyper::Method::POST, path, headers, max_line)
            .await
    }

    /// GETs `path` and returns the answer as a stream of bounded lines.
    pub async fn get_lines(&self, path: &str, max_line: usize) -> Result<LineStream, DockerError> {
        self.lines(hyper::Method::GET, path, &[], max_line).await
    }

    async fn lines(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        max_line: usize,
    ) -> Result<LineStream, DockerError> {
        let response = self.send(method, path, headers).await?;
        if response.status().as_u16() >= 400 {
            return Err(Self::http_error(response).await);
        }
        Ok(lines(response.into_body(), max_line))
    }
}

/// Lines of a streamed answer.
pub type LineStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, DockerError>> + Send>>;

/// Splits a body into lines, holding at most `max` bytes of an unfinished one.
fn lines(body: hyper::body::Incoming, max: usize) -> LineStream {
    use futures_util::StreamExt as _;
    let data = body.into_data_stream();
    let state = (data, bytes::BytesMut::new(), false);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut data, mut buf, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line = buf.split_to(pos + 1).freeze().slice(..pos);
                    return Some((Ok(line), (data, buf, false)));
                }
                if buf.len() > max {
                    let err = DockerError::Decode(format!("a line longer than {max} bytes"));
                    return Some((Err(err), (data, buf, true)));
                }
                match data.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let err = DockerError::Connect(format!("the answer broke off: {e}"));
                        return Some((Err(err), (data, buf, true)));
                    }
                    None if buf.is_empty() => return None,
                    None => {
                        let rest = buf.split().freeze();
                        return Some((Ok(rest), (data, buf, true)));
                    }
                }
            }
        },
    ))
}

/// A connected daemon: every call is timed, bounded and counted.
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub docker: Docker,
    /// For the image lists (pooled connections).
    pub raw: RawClient,
    pub timeout: Duration,
    tls: Option<TlsConfig>,
    metrics: Arc<Metrics>,
}

impl Client {
    pub fn new(
        daemon: &DaemonConfig,
        docker: Docker,
        raw: RawClient,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            name: daemon.name.clone(),
            docker,
            raw,
            timeout,
            tls: daemon.tls.clone(),
            metrics,
        }
    }

    /// Like [`Client::call`], for a call that already speaks [`DockerError`].
    pub async fn call_raw<T>(
        &self,
        endpoint: ApiEndpoint,
        call: impl Future<Output = Result<T, DockerError>>,
    ) -> Result<T, DockerError> {
        let call = async move { call.await.map_err(|e| self.explain(e)) };
        timed(&self.metrics, &self.name, endpoint, self.timeout, call).await
    }

    /// A daemon refusing an expired client certificate may, in TLS 1.3,
    /// close the connection before its alert is read: the client then sees
    /// a reset, not a TLS error. Name the real cause when we know it.
    fn explain(&self, e: DockerError) -> DockerError {
        match (e, &self.tls) {
            (DockerError::Connect(m), Some(tls)) => match client_cert_expired(tls) {
                Some(expired) => DockerError::Tls(format!("{expired}; {m}")),
                None => DockerError::Connect(m),
            },
            (e, _) => e,
        }
    }

    /// Runs one Docker call under the timeout and records its latency and,
    /// if it failed, why.
    pub async fn call<T, F>(&self, endpoint: ApiEndpoint, call: F) -> Result<T, DockerError>
    where
        F: Future<Output = Result<T, bollard::errors::Error>>,
    {
        let timeout = self.timeout;
        let call = async move { call.await.map_err(|e| self.explain(classify(&e, timeout))) };
        timed(&self.metrics, &self.name, endpoint, timeout, call).await
    }
}

/// Runs `call` under `timeout`, recording its latency and, if it failed,
/// why: every Docker call goes through here.
pub async fn timed<T>(
    metrics: &Metrics,
    daemon: &str,
    endpoint: ApiEndpoint,
    timeout: Duration,
    call: impl Future<Output = Result<T, DockerError>>,
) -> Result<T, DockerError> {
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(DockerError::Timeout(timeout)));
    metrics.observe_api(
        daemon,
        endpoint,
        start.elapsed(),
        result.as_ref().err().map(DockerError::reason),
    );
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_by_status() {
        let http = |status| DockerError::Http {
            status,
            message: String::new(),
        };
        assert_eq!(http(404).reason(), ErrorReason::Http4xx);
        assert_eq!(http(500).reason(), ErrorReason::Http5xx);
        assert_eq!(
            classify(
                &bollard::errors::Error::RequestTimeoutError,
                Duration::from_secs(1)
            ),
            DockerError::Timeout(Duration::from_secs(1))
        );
        assert_eq!(
            classify(
                &bollard::errors::Error::SocketNotFoundError("/x.sock".into()),
                Duration::from_secs(1)
            )
            .reason(),
            ErrorReason::Connect
        );
    }

    #[test]
    fn tls_error_is_found_inside_io_error() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls);
        let err = bollard::errors::Error::IOError { err: io };
        let classified = classify(&err, Duration::from_secs(1));
        assert_eq!(classified.reason(), ErrorReason::Tls);
        assert!(
            classified
                .to_string()
                .contains("not signed by the configured tls.ca")
        );
    }

    #[test]
    fn reads_not_after() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // A minimal certificate skeleton: SEQ { SEQ { [0]{..}, INT, SEQ, SEQ,
        // SEQ { UTCTime, UTCTime } } }.
        let time = |t: &str| {
            let mut v = vec![0x17, u8::try_from(t.len()).expect("short")];
            v.extend_from_slice(t.as_bytes());
            v
        };
        let seq = |tag: u8, parts: &[Vec<u8>]| {
            let body: Vec<u8> = parts.concat();
            let mut v = vec![tag, u8::try_from(body.len()).expect("short")];
            v.extend(body);
            v
        };
        let validity = seq(0x30, &[time("200101000000Z"), time("210101000000Z")]);
        let tbs = seq(
            0x30,
            &[
                seq(0xa0, &[vec![0x02, 0x01, 0x02]]),
                vec![0x02, 0x01, 0x07],
                seq(0x30, &[]),
                seq(0x30, &[]),
                validity,
            ],
        );
        let cert = seq(0x30, &[tbs]);
        let (secs, date) = not_after(&cert).expect("parses");
        assert_eq!(date, "2021-01-01 00:00:00 UTC");
        assert_eq!(secs, 1_609_459_200);
        assert_eq!(not_after(b"\x30\x05junk"), None);
        assert_eq!(not_after(b""), None);
    }

    #[test]
    fn missing_tls_files_name_their_field() {
        let tls = TlsConfig {
            ca: "/nonexistent/ca.pem".into(),
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let fields: Vec<_> = check_tls_files(&tls).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["ca", "cert", "key"]);
    }

    #[test]
    fn garbage_pem_is_rejected() {
        let dir = std::env::temp_dir().join(format!("dockwatch-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").expect("write");
        let tls = TlsConfig {
            ca: junk.clone(),
            cert: junk.clone(),
            key: junk,
        };
        let problems = check_tls_files(&tls);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].1.contains("no PEM certificate"), "{problems:?}");
    }
}
