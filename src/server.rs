//! The HTTP side: `/metrics`, `/-/healthy`, `/-/ready` and a landing page.
//! Every handler only reads what the tasks left; none calls Docker.

use std::fmt::Write as _;
use std::sync::Arc;

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
}

pub fn router(metrics: Arc<Metrics>, state: Arc<State>, board: Arc<PullBoard>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics_handler))
        .route("/pulls", get(pulls))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .with_state(App {
            metrics,
            state,
            board,
        })
}

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
        app.metrics.encode(),
    )
        .into_response()
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
