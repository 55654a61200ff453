//! The landing page: plain HTML and a little script, no build step. The
//! daemons' table is filled in here; the pre-pulls are drawn by the script
//! from `/pulls`.

use std::fmt::Write as _;

use axum::extract::State as AxumState;
use axum::response::Html;

use super::App;

const LANDING: &str = include_str!("landing.html");

pub(super) async fn page(AxumState(app): AxumState<App>) -> Html<String> {
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
