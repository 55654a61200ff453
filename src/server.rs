//! The HTTP side: `/metrics`, `/-/healthy`, `/-/ready` and a landing page.
//! Every handler only reads what the tasks left; none calls Docker.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::metrics::Metrics;
use crate::state::{PullBoard, State};

#[derive(Debug, Clone)]
struct App {
    metrics: Arc<Metrics>,
    state: Arc<State>,
    board: Arc<PullBoard>,
    /// Set when `server.enable_reload` is.
    reload: Option<mpsc::Sender<()>>,
}

pub fn router(
    metrics: Arc<Metrics>,
    state: Arc<State>,
    board: Arc<PullBoard>,
    users: BTreeMap<String, String>,
    reload: Option<mpsc::Sender<()>>,
) -> Router {
    let router = Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics_handler))
        .route("/pulls", get(pulls))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", axum::routing::post(reload_handler))
        .with_state(App {
            metrics,
            state,
            board,
            reload,
        });
    if users.is_empty() {
        router
    } else {
        let auth = Arc::new(BasicAuth {
            users,
            verified: Mutex::default(),
        });
        router.layer(axum::middleware::from_fn_with_state(auth, require_auth))
    }
}

/// Basic auth against bcrypt hashes, as Prometheus exporters' web config
/// does it. bcrypt is slow on purpose, so credentials that verified once are
/// remembered (in memory, a bounded number) and a scrape costs a lookup.
#[derive(Debug)]
struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<(String, String)>>,
}

const MAX_REMEMBERED: usize = 64;

impl BasicAuth {
    fn allows(&self, header: Option<&str>) -> bool {
        let Some((user, password)) = header
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let key = (user, password);
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key);
        if remembered {
            return true;
        }
        if !bcrypt::verify(&key.1, hash).unwrap_or(false) {
            return false;
        }
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.len() >= MAX_REMEMBERED {
            verified.clear();
        }
        verified.insert(key);
        true
    }
}

async fn require_auth(
    AxumState(auth): AxumState<Arc<BasicAuth>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // bcrypt blocks for tens of milliseconds: keep it off the async workers.
    let header = header.map(str::to_owned);
    let allowed = tokio::task::spawn_blocking(move || auth.allows(header.as_deref()))
        .await
        .unwrap_or(false);
    if allowed {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"dockwatch\"")],
            "unauthorized\n",
        )
            .into_response()
    }
}

/// Serves `app` on `listener` until `stop` changes: plain HTTP, or HTTPS
/// with `tls`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<rustls::ServerConfig>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(tls) = tls else {
        let shutdown = async move {
            // Err only if the sender is gone, which also means stop.
            let _ = stop.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server failed");
        }
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of fds and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        connections.spawn(async move {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
}

/// A client that does not finish its handshake in this long is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every running pull and the last finished one, per daemon and image.
async fn pulls(AxumState(app): AxumState<App>) -> Response {
    let body = app
        .board
        .read(|daemons| serde_json::to_string(&serde_json::json!({ "daemons": daemons })));
    match body {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics_handler(AxumState(app): AxumState<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        app.metrics.scrape(),
    )
        .into_response()
}

/// Asks for a reload; its outcome shows in
/// `dockwatch_config_last_reload_successful` and the log.
async fn reload_handler(AxumState(app): AxumState<App>) -> Response {
    match &app.reload {
        None => (
            StatusCode::FORBIDDEN,
            "reload over HTTP is off; set server.enable_reload = true (SIGHUP always reloads)\n",
        )
            .into_response(),
        // A full queue means a reload is already pending: that one will do.
        Some(tx) => {
            let _ = tx.try_send(());
            (StatusCode::ACCEPTED, "reload requested\n").into_response()
        }
    }
}

async fn ready(AxumState(app): AxumState<App>) -> Response {
    if app.state.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first poll of every daemon\n",
        )
            .into_response()
    }
}

/// Minimal HTML escaping for text we did not write ourselves.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The landing page: plain HTML and a little script, no build step.
const LANDING: &str = include_str!("landing.html");

async fn landing(AxumState(app): AxumState<App>) -> Html<String> {
    let mut rows = String::new();
    for (name, snap) in app.state.snapshots() {
        let (status, version) = match &snap {
            None => ("waiting for first poll", String::new()),
            Some(s) => (
                if s.up() { "up" } else { "down" },
                s.info
                    .as_ref()
                    .map(|i| format!("{} {} (API {})", i.engine, i.version, i.api_version))
                    .unwrap_or_default(),
            ),
        };
        // Writing to a String cannot fail.
        let _ = write!(
            rows,
            "<tr><td>{}</td><td class=\"{status}\">{status}</td><td>{}</td></tr>",
            escape(&name),
            escape(&version),
            status = status.split(' ').next().unwrap_or(status),
        );
    }
    Html(
        LANDING
            .replace("{{VERSION}}", env!("CARGO_PKG_VERSION"))
            .replace("{{ROWS}}", &rows),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
