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
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dockwatch</title><link rel="icon" href="data:,">
<style>
body{{font-family:sans-serif;margin:2em}} td,th{{padding:.2em 1em;text-align:left}}
.up{{color:#080}} .down,.failed{{color:#b00}} .running{{color:#06c}} progress{{width:14em}}
</style>
</head><body>
<h1>dockwatch {version}</h1>
<p><a href="/metrics">/metrics</a> · <a href="/pulls">/pulls</a> · <a href="/-/healthy">/-/healthy</a> · <a href="/-/ready">/-/ready</a></p>
<h2>Daemons</h2>
<table><thead><tr><th>daemon</th><th>state</th><th>engine</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>Pre-pulls</h2>
<div id="pulls">loading…</div>
<script>
"use strict";
// Draws /pulls; refreshes every second. Text goes in with textContent only.
function el(tag, text, cls) {{
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}}
function mb(n) {{ return (n / 1e6).toFixed(1) + " MB"; }}
function layerTable(layers) {{
  const t = el("table");
  t.className = "layers";
  for (const l of layers) {{
    const tr = el("tr");
    tr.dataset.layer = l.id;
    const phase = (l.status === "extracting" || l.status === "complete") ? l.extract : l.download;
    const bar = el("progress");
    bar.max = phase.total || 1;
    bar.value = Math.min(phase.current, bar.max);
    const cell = el("td");
    cell.appendChild(bar);
    tr.append(el("td", l.id), el("td", l.status), cell,
      el("td", mb(phase.current) + (phase.total ? " / " + mb(phase.total) : "")));
    t.appendChild(tr);
  }}
  return t;
}}
function draw(data) {{
  const root = document.getElementById("pulls");
  root.replaceChildren();
  const daemons = Object.entries(data.daemons || {{}});
  if (daemons.length === 0) {{ root.textContent = "no images configured under [[prepull.images]]"; return; }}
  for (const [daemon, images] of daemons) {{
    root.appendChild(el("h3", daemon));
    for (const [image, p] of Object.entries(images)) {{
      const div = el("div");
      div.className = "image";
      let state = "not pulled yet", cls = "";
      if (p.running) {{ state = "pulling"; cls = "running"; }}
      else if (p.last) {{
        state = p.last.result + (p.last.reason ? " (" + p.last.reason + ")" : "") +
          " in " + p.last.duration_seconds.toFixed(2) + " s";
        cls = p.last.result === "failed" ? "failed" : "up";
      }}
      const present = p.present === true ? "present" : p.present === false ? "absent" : "?";
      div.append(el("b", image), el("span", " " + state + ", " + present, cls));
      if (p.running) {{
        const t = p.running.progress;
        div.appendChild(el("div", "layers: " + t.layers.length));
        div.appendChild(layerTable(t.layers));
      }} else if (p.last && p.last.message) {{
        div.appendChild(el("div", p.last.message, "failed"));
      }}
      root.appendChild(div);
    }}
  }}
}}
async function refresh() {{
  try {{
    const r = await fetch("/pulls", {{cache: "no-store"}});
    if (r.ok) draw(await r.json());
  }} catch (e) {{
    document.getElementById("pulls").textContent = "dockwatch is not answering";
  }}
}}
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
"#,
        version = env!("CARGO_PKG_VERSION"),
    ))
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
