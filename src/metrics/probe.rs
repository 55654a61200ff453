//! The series of one daemon, for `GET /probe?target=NAME`: the exposition
//! split by the `daemon` label once, and each daemon's share served from
//! that split. Every family with a `daemon` label takes part, whatever
//! file defines it; families without one (process, build, reload) do not.

use std::collections::HashMap;

use bytes::Bytes;

/// Splits a text exposition by the value of its `daemon` label: for each
/// daemon, its samples under their families' `# HELP`/`# TYPE` lines.
pub(super) fn split(text: &str) -> HashMap<String, Bytes> {
    let mut out: HashMap<String, String> = HashMap::new();
    // The comment lines of the family being read, and which daemons have
    // had them written already.
    let mut header: Vec<&str> = Vec::new();
    let mut written_for: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            if line.starts_with("# HELP ") {
                header.clear();
                written_for.clear();
            }
            header.push(line);
            continue;
        }
        let Some(daemon) = daemon_of(line) else {
            continue;
        };
        let body = out.entry(daemon.to_owned()).or_default();
        if !written_for.iter().any(|d| d == daemon) {
            for h in &header {
                body.push_str(h);
                body.push('\n');
            }
            written_for.push(daemon.to_owned());
        }
        body.push_str(line);
        body.push('\n');
    }
    out.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect()
}

/// The `daemon` label's value of a sample line. Daemon names are label
/// values dockwatch made (config names, discovered hosts): no quotes or
/// backslashes in them.
fn daemon_of(line: &str) -> Option<&str> {
    let labels = &line[line.find('{')? + 1..line.rfind('}')?];
    let at = labels
        .match_indices("daemon=\"")
        .find(|(i, _)| *i == 0 || labels.as_bytes()[i - 1] == b',')?
        .0;
    let rest = &labels[at + "daemon=\"".len()..];
    Some(&rest[..rest.find('"')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_daemon_under_family_headers() {
        let text = "# HELP dockwatch_daemon_up up.\n# TYPE dockwatch_daemon_up gauge\n\
                    dockwatch_daemon_up{daemon=\"a\"} 1\ndockwatch_daemon_up{daemon=\"b\"} 0\n\
                    # HELP process_open_fds fds.\n# TYPE process_open_fds gauge\nprocess_open_fds 9\n\
                    # HELP dockwatch_x x.\n# TYPE dockwatch_x counter\n\
                    dockwatch_x_total{endpoint=\"v\",daemon=\"a\"} 3\n\
                    dockwatch_x_total{notdaemon=\"b\",daemon=\"a\"} 4\n";
        let parts = split(text);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts["a"],
            "# HELP dockwatch_daemon_up up.\n# TYPE dockwatch_daemon_up gauge\n\
             dockwatch_daemon_up{daemon=\"a\"} 1\n\
             # HELP dockwatch_x x.\n# TYPE dockwatch_x counter\n\
             dockwatch_x_total{endpoint=\"v\",daemon=\"a\"} 3\n\
             dockwatch_x_total{notdaemon=\"b\",daemon=\"a\"} 4\n"
        );
        assert_eq!(
            parts["b"],
            "# HELP dockwatch_daemon_up up.\n# TYPE dockwatch_daemon_up gauge\n\
             dockwatch_daemon_up{daemon=\"b\"} 0\n"
        );
        assert_eq!(daemon_of("x{notdaemon=\"b\"} 1"), None);
        assert_eq!(daemon_of("x 1"), None);
    }
}
