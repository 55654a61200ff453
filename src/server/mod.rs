//! The HTTP side: `/metrics`, `/probe`, `/pulls`, `/-/healthy`, `/-/ready`,
//! `/-/reload` and the status page (`/`). Every handler only reads what the
//! tasks left; none calls Docker.
//!
//! One job per file: the routes here, serving them (HTTP or HTTPS, graceful
//! shutdown) in `serve`, basic auth in `auth`, the landing page in
//! `landing`, and the `/pulls` JSON in `pulls`.

mod auth;
mod landing;
mod pulls;
mod serve;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::metrics::Metrics;
use crate::state::{PullBoard, State};

pub use serve::serve;

/// What every handler reads.
#[derive(Debug, Clone)]
struct App {
    metrics: Arc<Metrics>,
    state: Arc<State>,
    board: Arc<PullBoard>,
    /// Set when `server.enable_reload` is.
    reload: Option<mpsc::Sender<()>>,
}

/// Every endpoint, behind basic auth when `users` is not empty.
pub fn router(
    metrics: Arc<Metrics>,
    state: Arc<State>,
    board: Arc<PullBoard>,
    users: BTreeMap<String, String>,
    reload: Option<mpsc::Sender<()>>,
) -> Router {
    let router = Router::new()
        .route("/", get(landing::page))
        .route("/metrics", get(metrics_handler))
        .route("/probe", get(probe_handler))
        .route("/pulls", get(pulls::handler))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload_handler))
        .with_state(App {
            metrics,
            state,
            board,
            reload,
        });
    auth::protect(router, users)
}

/// `/probe?target=NAME`.
#[derive(Debug, serde::Deserialize)]
struct ProbeQuery {
    target: Option<String>,
}

/// One daemon's series, from memory (the multi-target exporter pattern:
/// Prometheus spreads daemons over replicas with `hashmod`). Only daemons
/// dockwatch watches are answered: nothing is ever dialed for a probe.
async fn probe_handler(
    AxumState(app): AxumState<App>,
    query: Result<axum::extract::Query<ProbeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(target) = query
        .ok()
        .and_then(|q| q.0.target)
        .filter(|t| !t.is_empty())
    else {
        return (
            StatusCode::BAD_REQUEST,
            "/probe needs ?target=DAEMON: the name of a configured or discovered daemon\n",
        )
            .into_response();
    };
    if !app.state.knows(&target) {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "unknown target {target:?}: /probe answers only for the daemons dockwatch is configured with or discovered (see /)\n"
            ),
        )
            .into_response();
    }
    // A split may encode the whole exposition: off the async workers.
    let metrics = Arc::clone(&app.metrics);
    match tokio::task::spawn_blocking(move || metrics.probe(&target)).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "making a /probe body failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn metrics_handler(AxumState(app): AxumState<App>, headers: HeaderMap) -> Response {
    let content_type = (
        header::CONTENT_TYPE,
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
    );
    let vary = (header::VARY, "accept-encoding");
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(accepts_gzip);
    // Encoding (and compressing) a fleet's body takes tens of milliseconds,
    // and a scrape waits while another one encodes: off the async workers,
    // which keep polling meanwhile.
    let metrics = Arc::clone(&app.metrics);
    let body = tokio::task::spawn_blocking(move || {
        if gzip && let Some(body) = metrics.scrape_gzip() {
            return (body, true);
        }
        (metrics.scrape(), false)
    })
    .await;
    match body {
        Ok((body, true)) => (
            [content_type, vary, (header::CONTENT_ENCODING, "gzip")],
            body,
        )
            .into_response(),
        Ok((body, false)) => ([content_type, vary], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "making the /metrics body failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Whether an `Accept-Encoding` value allows gzip: `gzip` or `*` listed
/// with a weight above 0 (RFC 9110, 12.5.3), `gzip` taking precedence.
/// Prometheus sends `Accept-Encoding: gzip`.
fn accepts_gzip(value: &str) -> bool {
    let mut any = false;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f64>().unwrap_or(0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return weight > 0.0;
        }
        if coding == "*" {
            any = weight > 0.0;
        }
    }
    any
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

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    #[test]
    fn gzip_when_the_scraper_accepts_it() {
        for yes in [
            "gzip",
            "GZIP",
            "deflate, gzip",
            "gzip;q=0.5",
            "gzip; q=1.0, identity",
            "x-gzip",
            "*",
            "br;q=1, *;q=0.1",
        ] {
            assert!(accepts_gzip(yes), "{yes:?}");
        }
        for no in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip;q=0.0, *",
            "*;q=0",
            "gzip;q=nonsense",
            "gzipped",
        ] {
            assert!(!accepts_gzip(no), "{no:?}");
        }
    }
}
