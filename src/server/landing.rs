//! The landing page, the page an operator opens first: plain HTML and a
//! little script, no build step, nothing fetched from elsewhere. The
//! daemons' table is filled in here, from memory; the pre-pulls are drawn by
//! the script from `/pulls`.

use std::fmt::Write as _;

use axum::extract::State as AxumState;
use axum::response::Html;

use super::App;
use crate::labels::ContainerState;
use crate::state::DaemonSnapshot;

const LANDING: &str = include_str!("landing.html");

/// The order rows come in: what needs a look first.
fn rank(snap: Option<&DaemonSnapshot>) -> u8 {
    match snap {
        Some(s) if !s.up() => 0,
        None => 1,
        Some(_) => 2,
    }
}

/// "12 s ago", "3 min ago", "2 h ago".
fn ago(seconds: f64) -> String {
    // Whole seconds are all a person reads here.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = seconds.max(0.0) as u64;
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// Bytes as people read them (decimal, like `docker images`).
#[allow(clippy::cast_precision_loss)]
fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

/// One table row for a daemon.
fn row(out: &mut String, name: &str, snap: Option<&DaemonSnapshot>, now: f64) {
    let state = match snap {
        None => "waiting",
        Some(s) if s.up() => "up",
        Some(_) => "down",
    };
    let info = snap.and_then(|s| s.info.as_ref());
    let engine = info
        .map(|i| format!("{} {}", i.engine, i.version))
        .unwrap_or_default();
    let api = info
        .map(|i| {
            if i.negotiated_api_version.is_empty() || i.negotiated_api_version == i.api_version {
                i.api_version.clone()
            } else {
                format!("{} (speaks {})", i.api_version, i.negotiated_api_version)
            }
        })
        .unwrap_or_default();
    let data = snap.and_then(|s| s.data.as_ref());
    let num = |f: &dyn Fn(&crate::state::PollData) -> String| data.map(f).unwrap_or_default();
    let images = num(&|d| d.images.count.to_string());
    let dangling = num(&|d| format!("{} ({})", d.dangling.count, bytes(d.dangling.bytes)));
    let running = num(&|d| d.containers[ContainerState::Running as usize].to_string());
    let last = snap
        .and_then(|s| s.last_success)
        .map_or_else(|| "never".to_owned(), |t| ago(now - t));
    let error = snap
        .and_then(|s| s.down_reason)
        .map(crate::labels::ErrorReason::as_str)
        .unwrap_or_default();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "<tr data-state=\"{state}\"><td>{}</td><td class=\"{state}\">{state}</td><td>{}</td><td>{}</td>\
         <td class=\"n\">{images}</td><td class=\"n\">{dangling}</td><td class=\"n\">{running}</td>\
         <td>{last}</td><td class=\"down\">{error}</td></tr>",
        escape(name),
        escape(&engine),
        escape(&api),
    );
}

/// The status page: one row per daemon, those that are down first, drawn
/// here from memory (no request per row); a filter box narrows the table.
pub(super) async fn page(AxumState(app): AxumState<App>) -> Html<String> {
    let now = crate::clock::unix_now();
    let mut all = app.state.snapshots();
    all.sort_by(|(a, sa), (b, sb)| {
        rank(sa.as_deref())
            .cmp(&rank(sb.as_deref()))
            .then_with(|| a.cmp(b))
    });
    let up = all
        .iter()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| s.up()))
        .count();
    let down = all
        .iter()
        .filter(|(_, s)| s.as_ref().is_some_and(|s| !s.up()))
        .count();
    let mut rows = String::with_capacity(all.len() * 320);
    for (name, snap) in &all {
        row(&mut rows, name, snap.as_deref(), now);
    }
    let summary = format!(
        "{} daemons: {up} up, {down} down, {} waiting for a first poll",
        all.len(),
        all.len() - up - down
    );
    Html(
        LANDING
            .replace("{{VERSION}}", env!("CARGO_PKG_VERSION"))
            .replace("{{SUMMARY}}", &summary)
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
    fn ages_and_sizes_read_well() {
        assert_eq!(ago(3.4), "3 s ago");
        assert_eq!(ago(-1.0), "0 s ago");
        assert_eq!(ago(600.0), "10 min ago");
        assert_eq!(ago(7200.0), "2 h ago");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_991_531), "2.0 MB");
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
