//! The one HTTP client of a daemon: a unix socket, plain TCP, or TCP with
//! mutual TLS (https only: a TLS daemon is never spoken to in plain text).
//! Idle connections are kept for the next call; a response dropped before
//! its end closes its connection, which is what cancels a pull on the daemon.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::DockerError;
use crate::config::{DaemonConfig, Endpoint};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Idle connections kept per daemon: a poll's calls go mostly one after the
/// other, so a couple serve them all without a new handshake.
const POOL_IDLE: usize = 2;

#[derive(Debug)]
pub(super) enum Transport {
    Unix {
        client: Client<hyperlocal::UnixConnector, Empty<Bytes>>,
        socket: std::path::PathBuf,
    },
    Http {
        client: Client<HttpConnector, Empty<Bytes>>,
        addr: String,
    },
    Https {
        client: Client<Https, Empty<Bytes>>,
        addr: String,
    },
}

impl Transport {
    /// Builds the client; nothing is sent yet. Fails only if the TLS files
    /// cannot be read now.
    pub(super) fn new(daemon: &DaemonConfig) -> Result<Self, DockerError> {
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_max_idle_per_host(POOL_IDLE);
            b
        };
        Ok(match (&daemon.host.endpoint, &daemon.tls) {
            (Endpoint::Unix(socket), _) => Self::Unix {
                client: builder().build(hyperlocal::UnixConnector),
                socket: socket.clone(),
            },
            (Endpoint::Tcp(addr), None) => Self::Http {
                client: builder().build_http(),
                addr: addr.clone(),
            },
            (Endpoint::Tcp(addr), Some(tls)) => {
                let config = crate::config::tls::client_config(tls)
                    .map_err(|e| DockerError::Tls(format!("tls.{}: {e}", e.field())))?;
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_only()
                    .enable_http1()
                    .build();
                Self::Https {
                    client: builder().build(connector),
                    addr: addr.clone(),
                }
            }
        })
    }

    /// Sends one request with an empty body; an HTTP error status is
    /// returned as [`DockerError::Http`] with the daemon's message.
    pub(super) async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<hyper::body::Incoming>, DockerError> {
        let uri: hyper::Uri = match self {
            Self::Unix { socket, .. } => hyperlocal::Uri::new(socket, path).into(),
            Self::Http { addr, .. } => format!("http://{addr}{path}")
                .parse()
                .map_err(|e| DockerError::Connect(format!("bad URL: {e}")))?,
            Self::Https { addr, .. } => format!("https://{addr}{path}")
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
        let response = match self {
            Self::Unix { client, .. } => client.request(request).await,
            Self::Http { client, .. } => client.request(request).await,
            Self::Https { client, .. } => client.request(request).await,
        }
        .map_err(|e| DockerError::from_transport(&e))?;
        if response.status().as_u16() >= 400 {
            return Err(http_error(response).await);
        }
        Ok(response)
    }
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
    let message = error_message(status, &body);
    DockerError::Http { status, message }
}

/// The message of an error answer: the Engine's JSON `message`, else the
/// body's first 200 characters. A 403 without the Engine's JSON is not the
/// daemon's (dockerd and Podman answer every error in JSON): a proxy in
/// front of it refused the call (haproxy's "Request forbidden by
/// administrative rules"), and the message says so.
fn error_message(status: u16, body: &[u8]) -> String {
    if let Some(m) = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
    {
        return m;
    }
    let text = String::from_utf8_lossy(body);
    if status == 403 {
        return format!("{}: {}", super::error::PROXY_REFUSAL, plain_text(&text));
    }
    text.chars().take(200).collect()
}

/// An HTML (or plain) body as one line of its text, at most 200 characters.
fn plain_text(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if in_tag => {}
            c if c.is_control() => text.push(' '),
            c => text.push(c),
        }
    }
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

/// The whole body, at most `limit` bytes of it.
pub(super) async fn read_body(
    response: hyper::Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<Bytes, DockerError> {
    Ok(http_body_util::Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| DockerError::Decode(format!("reading the answer: {e} (limit {limit} bytes)")))?
        .to_bytes())
}

/// Lines of a streamed answer, without their newline.
pub type LineStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, DockerError>> + Send>>;

/// Splits a body into lines, holding at most `max` bytes of an unfinished
/// one: a longer line ends the stream with an error instead of growing
/// memory.
pub(super) fn lines(body: hyper::body::Incoming, max: usize) -> LineStream {
    let data = body.into_data_stream();
    let state = (data, BytesMut::new(), false);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_refusal_is_told_from_the_daemons_own_403() {
        // haproxy's own 403 page (deploy/socket-proxy answers with it).
        let haproxy = b"<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n";
        let m = error_message(403, haproxy);
        assert_eq!(
            m,
            "refused by a proxy in front of the daemon (403): 403 Forbidden Request forbidden by administrative rules."
        );
        assert!(
            DockerError::Http {
                status: 403,
                message: m
            }
            .refused_by_proxy()
        );
        // The Engine's own 403 (an authorization plugin) is JSON.
        let own = error_message(403, br#"{"message":"authorization denied by plugin x"}"#);
        assert_eq!(own, "authorization denied by plugin x");
        assert!(
            !DockerError::Http {
                status: 403,
                message: own
            }
            .refused_by_proxy()
        );
        assert_eq!(
            error_message(502, b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }
}
