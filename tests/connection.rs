//! Every call goes through the daemon's one connection: what dockerd itself
//! logged receiving (`--debug` logs each request as `Calling METHOD /path`)
//! equals `dockwatch_api_request_duration_seconds_count` per endpoint, over
//! a window with polls, image listings with a filter group, a pull, the
//! registry checks, the events stream, `/system/df`, a prune round and the
//! inspect of a container listed by its image ID; and every request but the
//! negotiating
//! `/_ping` carries the negotiated `/v1.41` prefix. And the repository's own config.toml
//! watches `$DOCKER_HOST`, as `cargo run --release` there does.
// Counts are whole numbers, exact in f64.
#![allow(
    clippy::float_cmp,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DockerCli, Dockwatch, OwnDaemon, Scrape, Testbed, temp_dir};

/// The `endpoint` label dockwatch gives a request dockerd logged.
fn endpoint_of(method: &str, path: &str) -> Option<&'static str> {
    // Without the query, and without a /vX.Y prefix if there is one.
    let path = path.split('?').next().unwrap_or(path);
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            &rest[rest.find('/').unwrap_or(rest.len())..]
        }
        _ => path,
    };
    Some(match (method, path) {
        ("GET" | "HEAD", "/_ping") => "ping",
        ("GET", "/version") => "version",
        ("GET", "/info") => "info",
        ("GET", "/containers/json") => "container_list",
        ("GET", "/images/json") => "image_list",
        ("POST", "/images/create") => "image_pull",
        ("GET", "/system/df") => "system_df",
        ("GET", "/events") => "events",
        ("GET", p) if p.starts_with("/images/") && p.ends_with("/json") => "image_inspect",
        ("GET", p) if p.starts_with("/containers/") && p.ends_with("/json") => "container_inspect",
        ("DELETE", p) if p.starts_with("/images/") => "image_delete",
        ("GET", p) if p.starts_with("/distribution/") && p.ends_with("/json") => "distribution",
        _ => return None,
    })
}

/// Requests per endpoint in dockerd's log after byte `from`.
fn logged(log: &str, from: usize) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in log[from..].lines() {
        let Some(call) = line.split("msg=\"Calling ").nth(1) else {
            continue;
        };
        let mut words = call.trim_end_matches('"').split_whitespace();
        let (Some(method), Some(path)) = (words.next(), words.next()) else {
            continue;
        };
        let endpoint = endpoint_of(method, path).unwrap_or_else(|| {
            panic!("dockerd got a request dockwatch has no endpoint for: {line}")
        });
        // dockerd 20.10 speaks 1.41 at most: every request carries it, but
        // the one that asks which version to speak (as the docker CLI does).
        if endpoint == "ping" {
            assert_eq!(path, "/_ping", "{line}");
        } else {
            assert!(
                path.starts_with("/v1.41/"),
                "a request without the negotiated prefix: {line}"
            );
        }
        *out.entry(endpoint.to_owned()).or_default() += 1;
    }
    out
}

/// Requests per endpoint that dockwatch counted for daemon `own`.
fn counted(s: &Scrape) -> BTreeMap<String, u64> {
    s.samples
        .iter()
        .filter(|(n, l, _)| {
            n == "dockwatch_api_request_duration_seconds_count"
                && l.get("daemon").is_some_and(|d| d == "own")
        })
        .map(|(_, l, v)| (l["endpoint"].clone(), *v as u64))
        .collect()
}

/// Runs a container created from an image ID: dockerd lists it by that ID,
/// so dockwatch inspects it once to learn it was not created from a tag.
fn run_by_image_id(cli: &DockerCli, dir: &Path) {
    cli.import_tiny(dir, "dwtest/conn:1");
    let id = cli.image_id("dwtest/conn:1").expect("the imported image");
    cli.run(&[
        "run",
        "-d",
        "--network",
        "none",
        &id,
        "/bin/busybox",
        "sleep",
        "600",
    ]);
}

/// A dangling image for the pruner: `dangle:1`'s tag moves to
/// `dangle:2`'s image.
fn leave_dangling(cli: &DockerCli, dir: &Path) {
    cli.import_tiny(dir, "dwtest/dangle:1");
    cli.import_tiny(dir, "dwtest/dangle:2");
    cli.run(&["tag", "dwtest/dangle:2", "dwtest/dangle:1"]);
    assert_eq!(cli.image_ids(&["dangling=true"]).len(), 1);
}

#[test]
#[allow(clippy::too_many_lines)] // one window, start to end
fn dockerd_request_log_equals_the_per_endpoint_counts() {
    let bed = Testbed::get();
    let dir = temp_dir("own-debug");
    let own = OwnDaemon::start_with(&dir, &["--debug"]);
    let log_path = dir.join("dockerd.log");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let image = format!("{}/dwtest/multi:1", bed.var("REGISTRY"));
    run_by_image_id(&bed.cli_at(&own.host()), &dir);
    leave_dangling(&bed.cli_at(&own.host()), &dir);
    // Everything before dockwatch starts (the daemon's start, the test's
    // pings, images and container) is not dockwatch's.
    let from = read_log().len();

    let dw = Dockwatch::start(&format!(
        r#"
[poll]
interval = "1s"
timeout = "900ms"
disk_interval = "2s"
[[daemons]]
name = "own"
host = "{host}"
[[image_filters]]
name = "tagged"
filters = {{ dangling = ["false"] }}
[prepull]
interval = "1h"
jitter = "0s"
[[prepull.images]]
image = "{image}"
[prune]
enabled = true
interval = "2s"
jitter = "0s"
older_than = "0s"
"#,
        host = own.host(),
    ));
    // A window with every kind of call: several polls, the pull (and the
    // image inspects around it), the events stream, two /system/df and a
    // prune round that removed the dangling image.
    let s = dw.wait_for(
        "a pull, two df and a few polls",
        Duration::from_secs(60),
        |s| {
            let c = counted(s);
            s.get(
                "dockwatch_image_pulls_total",
                &[("daemon", "own"), ("result", "updated")],
            ) == Some(1.0)
                && c.get("system_df").copied().unwrap_or(0) >= 2
                && c.get("version").copied().unwrap_or(0) >= 3
                && c.get("events").copied().unwrap_or(0) >= 1
                && c.get("image_inspect").copied().unwrap_or(0) >= 1
                && c.get("container_inspect").copied().unwrap_or(0) >= 1
                && c.get("image_delete").copied().unwrap_or(0) >= 1
        },
    );
    assert_eq!(
        s.get(
            "dockwatch_image_filter_success",
            &[("daemon", "own"), ("filter", "tagged")]
        ),
        Some(1.0)
    );
    let info = s
        .labels_of("dockwatch_daemon_info", &[("daemon", "own")])
        .expect("daemon_info");
    assert_eq!(info["api_version"], "1.41");
    assert_eq!(info["negotiated_api_version"], "1.41");

    // Compare in a quiet moment: two scrapes that agree, with the log read
    // between them. A request in flight shows in neither scrape or in both.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (before, log, after) = loop {
        let before = counted(&dw.scrape());
        let log = logged(&read_log(), from);
        let after = counted(&dw.scrape());
        if before == after && log == before {
            break (before, log, after);
        }
        assert!(
            Instant::now() < deadline,
            "dockerd's request log and dockwatch's counts never agreed in a quiet moment:\n\
             dockerd logged {log:?}\ndockwatch counted {before:?} then {after:?}"
        );
        std::thread::sleep(Duration::from_millis(150));
    };
    assert_eq!(log, before);
    assert_eq!(log, after);
    for endpoint in [
        "ping",
        "version",
        "info",
        "container_list",
        "image_list",
        "image_pull",
        "image_inspect",
        "container_inspect",
        "image_delete",
        "system_df",
        "events",
    ] {
        assert!(
            log.get(endpoint).copied().unwrap_or(0) >= 1,
            "the window has no {endpoint} call: {log:?}"
        );
    }
    // dockerd logged every request without an error counted for it: none
    // of these failed.
    assert!(
        !s.text
            .contains("dockwatch_api_request_errors_total{daemon=\"own\""),
        "{}",
        s.text
    );
    drop(dw);
    drop(own);
    std::fs::remove_dir_all(&dir).ok();
}

/// `cargo run --release` in the repository reads ./config.toml; with
/// `DOCKER_HOST` set, that config watches the daemon it names. (The test
/// runs the binary the same way, in the repository, with the same config.)
#[test]
fn the_repository_config_watches_docker_host() {
    let bed = Testbed::get();
    let port = common::free_port();
    let log = temp_dir("repo-config").join("dockwatch.log");
    let child = Command::new(common::binary())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DOCKER_HOST", bed.var("DOCKER_A"))
        .env("DOCKWATCH_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn dockwatch");
    let dw = Dockwatch {
        child,
        port,
        dir: log.parent().expect("a folder").to_owned(),
    };
    dw.wait_ready();
    let s = dw.scrape();
    assert_eq!(
        s.get("dockwatch_daemon_up", &[("daemon", "local")]),
        Some(1.0),
        "{}\n{}",
        s.text,
        dw.log()
    );
    let images = bed.cli_a().image_ids(&[]).len() as f64;
    assert_eq!(
        s.get("dockwatch_images", &[("daemon", "local")]),
        Some(images),
        "the daemon watched is not DOCKER_HOST's"
    );
    assert!(dw.log().contains("config.toml"), "{}", dw.log());
}
