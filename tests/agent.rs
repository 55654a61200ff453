//! The agent core against the real test bed: daemon A on a unix socket,
//! daemon B over mutual TLS, and daemon C (Docker 26 on the containerd image
//! store), each compared with what the docker CLI says.
// Counts and byte totals here are far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Dockwatch, FAST_POLL, Scrape, Store, Testbed, assert_byte_counts_sane, assert_success,
    daemon_toml, http_get, reap, temp_dir, wait_until,
};

/// Filter groups checked against `docker images --filter` with the same filters.
/// (name, TOML filters, the same filters as docker CLI flags)
const FILTER_GROUPS: &[(&str, &str, &[&str])] = &[
    ("ci", r#"{ reference = ["ci/*"] }"#, &["reference=ci/*"]),
    (
        "cache-label",
        r#"{ label = ["dwtest.group=cache"] }"#,
        &["label=dwtest.group=cache"],
    ),
    (
        "legacy-dangling",
        r#"{ dangling = { "true" = true } }"#,
        &["dangling=true"],
    ),
    (
        "app-tagged",
        r#"{ reference = ["dwtest/app"], dangling = ["false"] }"#,
        &["reference=dwtest/app", "dangling=false"],
    ),
    (
        "before-tool",
        r#"{ before = ["dwtest/tool:1"] }"#,
        &["before=dwtest/tool:1"],
    ),
];

fn filter_config() -> String {
    let mut out = String::new();
    for (name, filters, _) in FILTER_GROUPS {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "[[image_filters]]\nname = \"{name}\"\nfilters = {filters}"
        );
    }
    out
}

/// dockwatch's byte total for the images `ids` against the docker CLI.
/// Classic store: exactly the sum of `docker image inspect`'s sizes. The
/// containerd store lists each image with its unpacked snapshot plus its
/// compressed content (what `docker images` shows, and what dockwatch sums),
/// while `docker image inspect` says the content alone: there, the total is
/// the sum of what `docker images` prints, to the digit it prints.
fn assert_image_bytes(
    ours: Option<f64>,
    cli: &common::DockerCli,
    ids: &[String],
    store: Store,
    what: &str,
) {
    match store {
        Store::Classic => {
            let theirs = cli.total_size(ids);
            eprintln!("compared: {what}: dockwatch {ours:?}, docker image inspect {theirs}");
            assert_eq!(ours, Some(theirs as f64), "{what}");
        }
        Store::Containerd => {
            let ours = ours.unwrap_or_else(|| panic!("{what}: no series"));
            let (listed, slack) = cli.listed_size(ids);
            eprintln!(
                "compared: {what}: dockwatch {ours}, docker images {listed} ± {slack}, docker image inspect {}",
                cli.total_size(ids)
            );
            assert!(
                (ours - listed).abs() <= slack,
                "{what}: {ours} bytes, docker images says {listed} (± {slack})"
            );
            if !ids.is_empty() {
                let content = cli.total_size(ids) as f64;
                assert!(
                    ours > content,
                    "{what}: {ours} bytes should be more than the content alone ({content})"
                );
            }
        }
    }
}

#[allow(clippy::too_many_lines)] // one comparison per family, each with its report line
fn assert_matches_cli(
    scrape: &Scrape,
    daemon: &str,
    cli: &common::DockerCli,
    filters: bool,
    store: Store,
) {
    let d = [("daemon", daemon)];
    assert_eq!(
        scrape.get("dockwatch_daemon_up", &d),
        Some(1.0),
        "{daemon} up"
    );

    let all = cli.image_ids(&[]);
    assert!(!all.is_empty(), "test bed seeded no images on {daemon}");
    eprintln!(
        "compared: {daemon}: images: dockwatch {:?}, docker images {}",
        scrape.get("dockwatch_images", &d),
        all.len()
    );
    assert_eq!(
        scrape.get("dockwatch_images", &d),
        Some(all.len() as f64),
        "{daemon}: image count vs docker images"
    );
    assert_image_bytes(
        scrape.get("dockwatch_images_size_bytes", &d),
        cli,
        &all,
        store,
        &format!("{daemon}: image bytes vs the docker CLI"),
    );

    let dangling = cli.image_ids(&["dangling=true"]);
    eprintln!(
        "compared: {daemon}: dangling: dockwatch {:?}, docker images --filter dangling=true {}",
        scrape.get("dockwatch_images_dangling", &d),
        dangling.len()
    );
    assert!(
        !dangling.is_empty(),
        "test bed seeded no dangling images on {daemon}"
    );
    assert_eq!(
        scrape.get("dockwatch_images_dangling", &d),
        Some(dangling.len() as f64),
        "{daemon}: dangling count vs docker images --filter dangling=true"
    );
    assert_image_bytes(
        scrape.get("dockwatch_images_dangling_size_bytes", &d),
        cli,
        &dangling,
        store,
        &format!("{daemon}: dangling bytes"),
    );

    if filters {
        for (name, _, flags) in FILTER_GROUPS {
            let ids = cli.image_ids(flags);
            let labels = [("daemon", daemon), ("filter", *name)];
            eprintln!(
                "compared: {daemon}: filter group {name}: dockwatch {:?}, docker images --filter {flags:?} {}",
                scrape.get("dockwatch_image_filter_matches", &labels),
                ids.len()
            );
            assert_eq!(
                scrape.get("dockwatch_image_filter_matches", &labels),
                Some(ids.len() as f64),
                "{daemon}: filter group {name} vs docker images --filter {flags:?}"
            );
            assert_image_bytes(
                scrape.get("dockwatch_image_filter_size_bytes", &labels),
                cli,
                &ids,
                store,
                &format!("{daemon}: filter group {name} bytes"),
            );
        }
    }

    let states = cli.container_states();
    for state in [
        "created",
        "running",
        "paused",
        "restarting",
        "removing",
        "exited",
        "dead",
    ] {
        let want = states.get(state).copied().unwrap_or(0);
        eprintln!(
            "compared: {daemon}: containers {state}: dockwatch {:?}, docker ps -a {want}",
            scrape.get(
                "dockwatch_containers",
                &[("daemon", daemon), ("state", state)]
            )
        );
        assert_eq!(
            scrape.get(
                "dockwatch_containers",
                &[("daemon", daemon), ("state", state)]
            ),
            Some(want as f64),
            "{daemon}: containers in state {state} vs docker ps -a"
        );
    }

    let info = scrape
        .labels_of("dockwatch_daemon_info", &d)
        .expect("daemon_info");
    let server = cli.run(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}}",
    ]);
    eprintln!("compared: {daemon}: daemon_info {info:?}, docker version {server}");
    let mut parts = server.split_whitespace();
    assert_eq!(info["version"], parts.next().unwrap_or_default());
    assert_eq!(info["api_version"], parts.next().unwrap_or_default());
    assert_eq!(info["min_api_version"], parts.next().unwrap_or_default());
    // Negotiated as the docker CLI does: the daemon's newest, capped at the
    // newest dockwatch is tested against (1.45).
    let newest = |v: &str| {
        let (a, b) = v.split_once('.').unwrap_or_default();
        (a.parse::<u32>().unwrap_or(0), b.parse::<u32>().unwrap_or(0))
    };
    let want = if newest(&info["api_version"]) <= (1, 45) {
        info["api_version"].clone()
    } else {
        "1.45".to_owned()
    };
    eprintln!(
        "compared: {daemon}: negotiated_api_version {}, want {want}",
        info["negotiated_api_version"]
    );
    assert_eq!(info["negotiated_api_version"], want, "{daemon}: {info:?}");
    assert_eq!(info["engine"], "docker");
    let driver = cli.run(&["info", "--format", "{{.Driver}}"]);
    assert_eq!(info["storage_driver"], driver.trim());
}

#[test]
fn unix_and_tls_daemons_match_the_docker_cli() {
    let bed = Testbed::get();
    let dw = Dockwatch::start(&format!(
        "{}{}{}",
        bed.daemon_a("a"),
        bed.daemon_b("b"),
        filter_config()
    ));
    let scrape = dw.scrape();
    assert_matches_cli(&scrape, "a", &bed.cli_a(), true, Store::Classic);
    assert_matches_cli(&scrape, "b", &bed.cli_b(), false, Store::Classic);
    assert_byte_counts_sane(&scrape);
    // dockerd 20.10 speaks 1.41 at most: that is what both are spoken to in.
    for daemon in ["a", "b"] {
        let info = scrape
            .labels_of("dockwatch_daemon_info", &[("daemon", daemon)])
            .expect("info");
        assert_eq!(info["api_version"], "1.41", "{daemon}: {info:?}");
        assert_eq!(info["negotiated_api_version"], "1.41", "{daemon}: {info:?}");
    }
    // The seeded shapes, so a broken seed cannot make the comparison vacuous.
    let a = [("daemon", "a")];
    assert!(scrape.get("dockwatch_images_dangling", &a) >= Some(3.0));
    assert!(
        scrape.get(
            "dockwatch_image_filter_matches",
            &[("daemon", "a"), ("filter", "ci")]
        ) >= Some(2.0)
    );
    for state in ["running", "exited", "created"] {
        assert!(
            scrape.get("dockwatch_containers", &[("daemon", "a"), ("state", state)]) >= Some(1.0),
            "test bed has no {state} container on A"
        );
    }
    // Request latency is recorded per endpoint.
    for endpoint in ["version", "info", "image_list", "container_list"] {
        let count = scrape.get(
            "dockwatch_api_request_duration_seconds_count",
            &[("daemon", "b"), ("endpoint", endpoint)],
        );
        assert!(count >= Some(1.0), "no latency recorded for {endpoint}");
    }
}

/// Daemon C: Debian 13's Docker 26.1 (API 1.45) on the containerd image
/// store, seeded like A, against Docker 26's own CLI.
#[test]
fn containerd_store_daemon_matches_the_docker_cli() {
    let bed = Testbed::get();
    let cli = bed.cli_c();
    let dw = Dockwatch::start(&format!("{}{}", bed.daemon_c("c"), filter_config()));
    let scrape = dw.scrape();
    assert_matches_cli(&scrape, "c", &cli, true, Store::Containerd);
    assert_byte_counts_sane(&scrape);
    // The seeded shapes, as on A.
    let c = [("daemon", "c")];
    assert_eq!(scrape.get("dockwatch_images", &c), Some(9.0));
    assert_eq!(scrape.get("dockwatch_images_dangling", &c), Some(3.0));
    for (filter, want) in [("ci", 3.0), ("cache-label", 2.0), ("legacy-dangling", 3.0)] {
        assert_eq!(
            scrape.get(
                "dockwatch_image_filter_matches",
                &[("daemon", "c"), ("filter", filter)]
            ),
            Some(want),
            "filter group {filter} on C"
        );
    }
    for (state, want) in [("running", 2.0), ("exited", 2.0), ("created", 1.0)] {
        assert_eq!(
            scrape.get("dockwatch_containers", &[("daemon", "c"), ("state", state)]),
            Some(want),
            "{state} containers on C"
        );
    }
    // Which engine, API and store: Docker 26.1.x, API 1.45, and the
    // containerd snapshotter's storage driver (overlay2 on the classic
    // store). The CLI comparison above checked them against `docker
    // version` and `docker info`; these pin what the bed is meant to be.
    let info = scrape.labels_of("dockwatch_daemon_info", &c).expect("info");
    assert!(info["version"].starts_with("26.1."), "{info:?}");
    assert_eq!(info["api_version"], "1.45");
    assert_eq!(info["min_api_version"], "1.24");
    assert_eq!(info["storage_driver"], "overlayfs");
    assert_eq!(info["engine"], "docker");
    // The API version every request is sent with: the daemon's newest,
    // which is also the newest dockwatch is tested against (the computed
    // check in assert_matches_cli came to the same; this pins it).
    assert_eq!(info["negotiated_api_version"], "1.45", "{info:?}");
    let status = cli.run(&["info", "--format", "{{json .DriverStatus}}"]);
    assert!(
        status.contains("io.containerd.snapshotter.v1"),
        "daemon C is not on the containerd image store: {status}"
    );
}

#[test]
fn full_exposition_passes_promtool() {
    let bed = Testbed::get();
    let dw = Dockwatch::start(&format!(
        "{}{}{}{}{}",
        bed.daemon_a("a"),
        bed.daemon_b("b"),
        bed.daemon_c("c"),
        bed.daemon_b_with(
            "b-wrong-ca",
            bed.var("TLS_CA"),
            bed.var("WRONG_CERT"),
            bed.var("WRONG_KEY")
        ),
        filter_config()
    ));
    let (_, body) = http_get(dw.port, "/metrics").expect("scrape");
    for family in [
        "dockwatch_build_info",
        "dockwatch_daemon_up",
        "dockwatch_daemon_info",
        "dockwatch_api_request_errors_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            body.contains(&format!("\n{family}")),
            "{family} missing:\n{body}"
        );
    }
    let out = common::prometheus::promtool_check_metrics(&body);
    assert_success(&out, "promtool check metrics");
}

fn tls_errors(s: &Scrape, daemon: &str) -> f64 {
    s.sum(
        "dockwatch_api_request_errors_total",
        &[("daemon", daemon), ("reason", "tls")],
    )
}

#[test]
fn tls_with_wrong_ca_or_untrusted_client_cert_is_down_and_counted() {
    let bed = Testbed::get();
    let dockerd_log = std::path::Path::new(bed.var("TESTBED_DIR")).join("b/dockerd.log");
    let plain_before = count_plain_http(&dockerd_log);
    let dw = Dockwatch::start(&format!(
        "{FAST_POLL}{}{}{}",
        bed.daemon_b("good"),
        bed.daemon_b_with(
            "wrong-ca",
            bed.var("WRONG_CA"),
            bed.var("TLS_CERT"),
            bed.var("TLS_KEY")
        ),
        bed.daemon_b_with(
            "untrusted-client",
            bed.var("TLS_CA"),
            bed.var("WRONG_CERT"),
            bed.var("WRONG_KEY")
        ),
    ));
    let first = dw.scrape();
    assert_eq!(
        first.get("dockwatch_daemon_up", &[("daemon", "good")]),
        Some(1.0)
    );
    // The good one's numbers are there, so their absence below for the bad
    // ones means something.
    assert!(
        first
            .get("dockwatch_images", &[("daemon", "good")])
            .is_some(),
        "{}",
        first.text
    );
    for bad in ["wrong-ca", "untrusted-client"] {
        assert_eq!(
            first.get("dockwatch_daemon_up", &[("daemon", bad)]),
            Some(0.0),
            "{bad} must be down"
        );
        assert!(
            tls_errors(&first, bad) >= 1.0,
            "{bad}: no tls error counted"
        );
        // No numbers dressed as fresh for a daemon we cannot see.
        assert_eq!(first.get("dockwatch_images", &[("daemon", bad)]), None);
    }
    let before = (
        tls_errors(&first, "wrong-ca"),
        tls_errors(&first, "untrusted-client"),
    );
    let later = dw.wait_for("tls errors to keep rising", Duration::from_secs(20), |s| {
        tls_errors(s, "wrong-ca") > before.0 && tls_errors(s, "untrusted-client") > before.1
    });
    assert_eq!(
        later.get("dockwatch_daemon_up", &[("daemon", "good")]),
        Some(1.0)
    );
    let log = dw.log();
    assert!(
        log.contains("not signed by the configured tls.ca"),
        "the log must say the CA is wrong:\n{log}"
    );
    assert!(
        log.contains("refused our client certificate"),
        "the log must say the client certificate was refused:\n{log}"
    );
    // Never a plain-text request to the TLS port: dockerd logs each one.
    assert_eq!(
        count_plain_http(&dockerd_log),
        plain_before,
        "a plain-HTTP request reached the TLS daemon"
    );
}

/// How many times dockerd B logged a non-TLS request on its TLS port.
fn count_plain_http(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("does not look like a TLS handshake")
        .count()
}

#[test]
fn plain_tcp_to_a_tls_port_is_down_not_up() {
    let bed = Testbed::get();
    let host = bed.var("DOCKER_B");
    let dw = Dockwatch::start(&format!("{FAST_POLL}{}", daemon_toml("plain", host)));
    let s = dw.scrape();
    assert_eq!(
        s.get("dockwatch_daemon_up", &[("daemon", "plain")]),
        Some(0.0)
    );
    assert!(
        dw.log().contains("plain TCP"),
        "a plain tcp:// daemon must be warned about:\n{}",
        dw.log()
    );
}

#[test]
fn endpoints_landing_page_and_readiness() {
    let bed = Testbed::get();
    let dw = Dockwatch::start(&bed.daemon_a("a"));
    assert_eq!(http_get(dw.port, "/-/healthy").expect("healthy").0, 200);
    assert_eq!(http_get(dw.port, "/-/ready").expect("ready").0, 200);
    let (status, page) = http_get(dw.port, "/").expect("landing");
    assert_eq!(status, 200);
    for want in [
        "href=\"/metrics\"",
        "href=\"/-/healthy\"",
        "href=\"/-/ready\"",
        "<td>a</td>",
        "class=\"up\"",
    ] {
        assert!(page.contains(want), "landing page lacks {want}:\n{page}");
    }
    assert_eq!(http_get(dw.port, "/nope").expect("404").0, 404);
}

#[test]
fn not_ready_until_first_poll_and_unreachable_daemon_does_not_stop_it() {
    let dir = temp_dir("missing");
    let sock = dir.join("nobody.sock");
    let dw = Dockwatch::spawn(
        &format!(
            "{FAST_POLL}{}",
            daemon_toml("gone", &format!("unix://{}", sock.display()))
        ),
        &[],
    );
    dw.wait_ready();
    // A daemon never reached fails at its first request: the `/_ping` that
    // negotiates the API version.
    let s = dw.wait_for("connect errors", Duration::from_secs(10), |s| {
        s.get(
            "dockwatch_api_request_errors_total",
            &[
                ("daemon", "gone"),
                ("endpoint", "ping"),
                ("reason", "connect"),
            ],
        ) >= Some(2.0)
    });
    assert_eq!(
        s.get("dockwatch_daemon_up", &[("daemon", "gone")]),
        Some(0.0)
    );
    assert_eq!(
        s.get(
            "dockwatch_daemon_last_success_timestamp_seconds",
            &[("daemon", "gone")]
        ),
        None
    );
    // One log line for the state change, not one per poll.
    assert_eq!(
        dw.log().matches("daemon is down").count(),
        1,
        "{}",
        dw.log()
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn default_config_watches_docker_host_and_env_overrides_apply() {
    let bed = Testbed::get();
    let dir = temp_dir("noconfig");
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(common::binary())
        .current_dir(&dir)
        .env("DOCKER_HOST", bed.var("DOCKER_A"))
        .env("DOCKWATCH_SERVER__LISTEN", &listen)
        .env("DOCKWATCH_POLL__INTERVAL", "2s")
        .env("DOCKWATCH_POLL__TIMEOUT", "1500ms")
        .stderr(std::fs::File::create(dir.join("log")).expect("log"))
        .spawn()
        .expect("spawn");
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || matches!(http_get(port, "/-/ready"), Ok((200, _))),
        || "not ready with the default config".to_owned(),
    );
    let body = http_get(port, "/metrics").expect("scrape").1;
    reap(&mut child);
    std::fs::remove_dir_all(dir).ok();
    let s = Scrape::parse(&body);
    assert_eq!(
        s.get("dockwatch_daemon_up", &[("daemon", "local")]),
        Some(1.0)
    );
    assert_eq!(
        s.get("dockwatch_images", &[("daemon", "local")]),
        Some(bed.cli_a().image_ids(&[]).len() as f64)
    );
}

#[test]
fn sigterm_and_sigint_stop_within_five_seconds() {
    let bed = Testbed::get();
    for sig in ["TERM", "INT"] {
        let mut dw = Dockwatch::start(&format!("{}{}", bed.daemon_a("a"), bed.daemon_b("b")));
        dw.signal(sig);
        let status = dw
            .wait_exit(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("SIG{sig}: still running after 5 s"));
        assert!(status.success(), "SIG{sig}: exit status {status}");
        assert!(dw.log().contains("shutting down"), "{}", dw.log());
    }
}

#[test]
fn tells_systemd_ready_after_the_first_polls_and_pings_the_watchdog() {
    use std::os::unix::net::UnixDatagram;
    let bed = Testbed::get();
    let dir = temp_dir("notify");
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let path = path.to_string_lossy().into_owned();
    let dw = Dockwatch::spawn(
        &format!("{}{}", bed.daemon_a("a"), bed.daemon_b("b")),
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "1000000")],
    );
    let mut buf = [0_u8; 512];
    let mut messages = Vec::new();
    let start = Instant::now();
    while messages
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 2
    {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); so far {messages:?}\n{}", dw.log()));
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains("READY=1") {
            // Ready means every daemon was polled, so /-/ready agrees.
            assert_eq!(http_get(dw.port, "/-/ready").expect("ready").0, 200);
        }
        messages.push(msg);
        assert!(start.elapsed() < Duration::from_secs(30), "{messages:?}");
    }
    assert!(messages[0].contains("READY=1"), "{messages:?}");
    dw.signal("TERM");
    let n = sock.recv(&mut buf).expect("STOPPING");
    let mut last = String::from_utf8_lossy(&buf[..n]).into_owned();
    while last.contains("WATCHDOG=1") {
        let n = sock.recv(&mut buf).expect("STOPPING");
        last = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    assert!(last.contains("STOPPING=1"), "{last}");
    std::fs::remove_dir_all(dir).ok();
}
