//! Least privilege on the Docker socket (issue 20, part 2).
//!
//! - Read-only by default: with no pull scheduled (a closed pre-pull window
//!   holds the one image) and `[prune]` off, a debug dockerd logs only `GET`
//!   (and `GET`/`HEAD /_ping`) from dockwatch over a window with polls, a
//!   filter group, the events stream, `/system/df`, a container inspect and
//!   registry checks; the same dockwatch through the read-only socket proxy
//!   is refused nothing.
//! - `deploy/socket-proxy/haproxy.cfg` (Debian's haproxy) at each level in
//!   front of bed dockerd A: the figures through it equal the direct ones
//!   and the docker CLI's; creating, exec-ing into and removing containers
//!   (and more) are refused 403 at every level, with and without a version
//!   prefix.
//! - A pre-pull works through the proxy only from the pull level on, a
//!   prune only at the prune level; below them each fails saying a proxy
//!   refused it.
//! - `check-config` warns for plain `tcp://` off loopback only (no bed).
// Counts are whole numbers, exact in f64.
#![allow(clippy::float_cmp, clippy::cast_precision_loss)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    DockerCli, Dockwatch, FAST_POLL, OwnDaemon, Scrape, Scratch, Store, Testbed, daemon_toml,
    output_text, reap, wait_until,
};

/// What dockwatch says of a 403 that a proxy, not the daemon, answered.
const PROXY_REFUSAL: &str = "refused by a proxy in front of the daemon (403)";

/// The proxy's levels, as `DOCKER_PROXY_LEVEL` names them.
const LEVELS: [&str; 3] = ["read-only", "pull", "prune"];

/// The daemon name a level's proxy gets in dockwatch's config.
fn daemon_of(level: &str) -> &'static str {
    match level {
        "read-only" => "ro",
        "pull" => "pull",
        _ => "prune",
    }
}

/// `deploy/socket-proxy/haproxy.cfg` run by Debian's haproxy, listening on
/// a unix socket of its own in front of `docker_socket`; killed when
/// dropped. Its log (one line per request) is `dir/haproxy-LEVEL.log`.
struct Haproxy {
    child: Child,
    /// Its unix socket, or `None` when it listens on `port`.
    socket: Option<PathBuf>,
    port: u16,
    log: PathBuf,
}

impl Haproxy {
    fn start(level: &str, dir: &Path, docker_socket: &Path) -> Self {
        let socket = dir.join(format!("proxy-{level}.sock"));
        let listen = format!("unix@{}", socket.display());
        Self::launch(level, dir, docker_socket, &listen, Some(socket), 0)
    }

    /// Listening on 127.0.0.1 (as the compose variant listens on its
    /// private network) rather than on a unix socket.
    fn start_tcp(level: &str, dir: &Path, docker_socket: &Path) -> Self {
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        Self::launch(level, dir, docker_socket, &listen, None, port)
    }

    fn launch(
        level: &str,
        dir: &Path,
        docker_socket: &Path,
        listen: &str,
        socket: Option<PathBuf>,
        port: u16,
    ) -> Self {
        let log = dir.join(format!("haproxy-{level}.log"));
        let config = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/socket-proxy/haproxy.cfg"
        );
        let child = Command::new("haproxy")
            .args(["-db", "-f", config])
            .env("DOCKER_PROXY_LEVEL", level)
            .env("DOCKER_PROXY_LISTEN", listen)
            .env("DOCKER_SOCKET", docker_socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("haproxy log"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start haproxy ({e}): the socket proxy tests need Debian's haproxy; \
                     `tests/testbed.sh install` installs it (apt-get install haproxy)"
                )
            });
        let proxy = Self {
            child,
            socket,
            port,
            log,
        };
        wait_until(
            Duration::from_secs(15),
            Duration::from_millis(100),
            || proxy.request("GET", "/_ping") == 200,
            || {
                format!(
                    "haproxy ({level}) did not pass /_ping on within 15 s:\n{}",
                    proxy.log()
                )
            },
        );
        proxy
    }

    fn host(&self) -> String {
        match &self.socket {
            Some(socket) => format!("unix://{}", socket.display()),
            None => format!("tcp://127.0.0.1:{}", self.port),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The status of `METHOD path` sent through the proxy with curl (a
    /// small JSON body for a POST); 0 if curl got no answer.
    fn request(&self, method: &str, path: &str) -> u16 {
        let mut curl = Command::new("curl");
        curl.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["-X", method]);
        let base = match &self.socket {
            Some(socket) => {
                curl.arg("--unix-socket").arg(socket);
                "http://d".to_owned()
            }
            None => format!("http://127.0.0.1:{}", self.port),
        };
        if method == "POST" {
            curl.args([
                "-H",
                "Content-Type: application/json",
                "-d",
                r#"{"Image":"dwtest/app:1","Cmd":["/bin/busybox","true"]}"#,
            ]);
        }
        let out = curl
            .arg(format!("{base}{path}"))
            .output()
            .expect("curl (Debian package curl)");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// `METHOD template` -> requests the proxy passed on to the daemon, as
    /// it logged them (once each is over).
    fn passed(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for line in self
            .log()
            .lines()
            .filter(|l| l.contains(" dockerd/dockerd "))
        {
            let Some((head, _)) = line.rsplit_once('"') else {
                continue;
            };
            let Some((_, request)) = head.rsplit_once('"') else {
                continue;
            };
            let mut words = request.split_whitespace();
            if let (Some(method), Some(path)) = (words.next(), words.next()) {
                *out.entry(format!("{method} {}", template(path)))
                    .or_default() += 1;
            }
        }
        out
    }

    /// Requests the proxy refused itself, as it logged them.
    fn refused(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("<NOSRV>") && l.contains(" 403 "))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        reap(&mut self.child);
    }
}

/// A request path as a template: without query and version prefix, names
/// and ids replaced (`/images/{name}/json`).
fn template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            &rest[rest.find('/').unwrap_or(rest.len())..]
        }
        _ => path,
    };
    for (prefix, name) in [
        ("/images/", "{name}"),
        ("/containers/", "{id}"),
        ("/distribution/", "{name}"),
    ] {
        if let Some(rest) = path.strip_prefix(prefix)
            && !matches!(rest, "json" | "create")
        {
            let tail = if rest.ends_with("/json") { "/json" } else { "" };
            return format!("{prefix}{name}{tail}");
        }
    }
    path.to_owned()
}

/// `METHOD template` -> requests, from dockerd's `--debug` log after byte
/// `from` (`Calling METHOD /path` per request).
fn methods_logged(log: &str, from: usize) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (method, path, _) in common::dockerd_calls(log, from) {
        *out.entry(format!("{method} {}", template(&path)))
            .or_default() += 1;
    }
    out
}

/// `dockwatch_api_request_duration_seconds_count` per endpoint of `daemon`.
fn counted(s: &Scrape, daemon: &str) -> BTreeMap<String, f64> {
    common::api_counts(s, daemon)
}

/// A pre-pull window that is closed now (and for hours): one hour starting
/// six hours from now, UTC.
fn closed_window() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let hour = (now / 3600 + 6) % 24;
    format!("{hour:02}:00-{:02}:00", (hour + 1) % 24)
}

/// With no pull to make and pruning off, everything dockwatch sends is a
/// GET (or the negotiating HEAD/GET `/_ping`): read in a debug dockerd's
/// request log over a window holding every call that stays on. The
/// registry checks need a pre-pull image; a closed window holds its
/// scheduled pulls, and checks run outside windows. A second daemon entry
/// reaches the same dockerd through the read-only proxy, which refuses
/// none of it.
#[test]
fn without_pulls_or_prunes_dockwatch_only_reads() {
    only_reads_on(Store::Classic);
}

/// The same on Docker 26 with the containerd image store.
#[test]
fn without_pulls_or_prunes_dockwatch_only_reads_containerd_store() {
    only_reads_on(Store::Containerd);
}

#[allow(clippy::too_many_lines)] // one window, start to end
fn only_reads_on(store: Store) {
    let bed = Testbed::get();
    let dir = Scratch::new("readonly");
    let own = OwnDaemon::start_on(&dir.0.join("d"), store, &bed, &["--debug"]);
    let cli = bed.cli_for(store, &own.host());
    // A container listed by its image id (dockwatch inspects it once) and
    // an image pulled from the bed's registry (so registry checks compare).
    cli.run_by_image_id(&dir.0, "dwtest/ro:1");
    let image = format!("{}/dwtest/multi:1", bed.var("REGISTRY"));
    cli.run(&["pull", &image]);
    let ro = Haproxy::start("read-only", &dir.0, &own.socket());
    let log_path = own.dir.join("dockerd.log");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let from = read_log().len();

    let window = closed_window();
    let dw = Dockwatch::start(&format!(
        r#"
[poll]
interval = "1s"
timeout = "900ms"
disk_interval = "2s"
{direct}{proxied}
[[image_filters]]
name = "tagged"
filters = {{ dangling = ["false"] }}
[prepull]
interval = "1h"
jitter = "0s"
check_interval = "2s"
windows = ["{window}"]
[[prepull.images]]
image = "{image}"
"#,
        direct = daemon_toml("own", &own.host()),
        proxied = daemon_toml("ro", &ro.host()),
    ));
    let wanted = [
        ("ping", 1.0),
        ("version", 3.0),
        ("info", 1.0),
        ("container_list", 3.0),
        ("image_list", 2.0),
        ("container_inspect", 1.0),
        ("image_inspect", 2.0),
        ("distribution", 2.0),
        ("system_df", 2.0),
        ("events", 1.0),
    ];
    let s = dw.wait_for(
        "polls, df, events, an inspect and two registry checks on both",
        Duration::from_secs(45),
        |s| {
            ["own", "ro"].iter().all(|d| {
                let c = counted(s, d);
                wanted
                    .iter()
                    .all(|(e, n)| c.get(*e).copied().unwrap_or(0.0) >= *n)
                    && s.get(
                        "dockwatch_image_registry_checks_total",
                        &[("daemon", d), ("image", &image), ("result", "same")],
                    )
                    .unwrap_or(0.0)
                        >= 2.0
            })
        },
    );
    let methods = methods_logged(&read_log(), from);
    eprintln!(
        "methods seen, no pulls and no prunes, {store:?} (own + read-only proxy): {methods:?}"
    );
    for (call, n) in &methods {
        let (method, path) = call.split_once(' ').expect("METHOD PATH");
        assert!(
            method == "GET" || (method == "HEAD" && path == "/_ping"),
            "dockwatch sent {n} x {call} with no pull or prune configured: {methods:?}"
        );
    }
    for call in [
        "GET /version",
        "GET /info",
        "GET /containers/json",
        "GET /containers/{id}/json",
        "GET /images/json",
        "GET /images/{name}/json",
        "GET /distribution/{name}/json",
        "GET /system/df",
        "GET /events",
    ] {
        assert!(
            methods.get(call).copied().unwrap_or(0) >= 2,
            "the window has not {call} from both daemon entries: {methods:?}"
        );
    }
    for d in ["own", "ro"] {
        assert_eq!(s.sum("dockwatch_image_pulls_total", &[("daemon", d)]), 0.0);
        assert_eq!(
            s.get("dockwatch_prepull_window_open", &[("daemon", d)]),
            Some(0.0)
        );
        assert_eq!(
            s.sum("dockwatch_api_request_errors_total", &[("daemon", d)]),
            0.0,
            "{}",
            s.text
        );
        assert_eq!(s.up(d), Some(1.0));
    }
    let refused = ro.refused();
    assert!(
        refused.is_empty(),
        "the read-only proxy refused calls of a dockwatch that only reads:\n{}",
        refused.join("\n")
    );
    drop(dw);
    drop(ro);
    drop(own);
}

/// The bed's figures of a daemon as the docker CLI sees them: images,
/// dangling images, containers by state.
fn cli_figures(cli: &DockerCli) -> (f64, f64, BTreeMap<String, u64>) {
    (
        cli.image_ids(&[]).len() as f64,
        cli.image_ids(&["dangling=true"]).len() as f64,
        cli.container_states(),
    )
}

/// The bed, a scratch folder `tag` for proxies, and bed dockerd A's socket
/// they stand in front of.
fn before_a(tag: &str) -> (Testbed, Scratch, PathBuf) {
    let bed = Testbed::get();
    let a = PathBuf::from(bed.var("DOCKER_A_SOCKET"));
    (bed, Scratch::new(tag), a)
}

/// At every level, dockwatch through the proxy in front of bed dockerd A
/// (the read-only one on 127.0.0.1, the others on unix sockets) shows what
/// it shows directly and what the docker CLI counts.
#[test]
fn figures_through_the_proxy_equal_direct() {
    let (bed, dir, a) = before_a("proxy-a");
    // The read-only level on 127.0.0.1 (a tcp:// daemon, as in the compose
    // variant), the others on unix sockets.
    let proxies: Vec<(&str, Haproxy)> = LEVELS
        .iter()
        .map(|&l| {
            let proxy = if l == "read-only" {
                Haproxy::start_tcp(l, &dir.0, &a)
            } else {
                Haproxy::start(l, &dir.0, &a)
            };
            (l, proxy)
        })
        .collect();
    // Polls with room to spare: this compares figures, not latency.
    let mut config = format!(
        "[poll]\ninterval = \"2s\"\ntimeout = \"1500ms\"\n{}",
        bed.daemon_a("direct")
    );
    for (level, p) in &proxies {
        config.push_str(&daemon_toml(daemon_of(level), &p.host()));
    }
    let dw = Dockwatch::start(&config);
    let names: Vec<&str> = std::iter::once("direct")
        .chain(LEVELS.iter().map(|l| daemon_of(l)))
        .collect();
    let s = dw.wait_for("every entry polled", Duration::from_secs(30), |s| {
        names.iter().all(|d| {
            s.up(d) == Some(1.0)
                && s.get("dockwatch_images", &[("daemon", d)]).is_some()
                && s.get("dockwatch_images_dangling", &[("daemon", d)])
                    .is_some()
        })
    });
    let cli = bed.cli_a();
    let (images, dangling, states) = cli_figures(&cli);
    let figure = |d: &str, name: &str| s.get(name, &[("daemon", d)]);
    for d in &names {
        assert_eq!(figure(d, "dockwatch_images"), Some(images), "{d}");
        assert_eq!(
            figure(d, "dockwatch_images_dangling"),
            Some(dangling),
            "{d}"
        );
        for name in [
            "dockwatch_images_size_bytes",
            "dockwatch_images_dangling_size_bytes",
        ] {
            assert_eq!(figure(d, name), figure("direct", name), "{d}: {name}");
        }
        for (state, n) in &states {
            assert_eq!(
                s.get("dockwatch_containers", &[("daemon", d), ("state", state)]),
                Some(*n as f64),
                "{d}: {state}"
            );
        }
        assert_eq!(
            s.sum("dockwatch_api_request_errors_total", &[("daemon", d)]),
            0.0,
            "{d}: {:?}\n{}\nproxies refused: {:?}",
            s.text
                .lines()
                .filter(|l| l.starts_with("dockwatch_api_request_errors_total"))
                .collect::<Vec<_>>(),
            dw.log(),
            proxies.iter().map(|(_, p)| p.refused()).collect::<Vec<_>>()
        );
    }
    eprintln!(
        "compared: direct and through the proxy at {LEVELS:?}: {images} images, {dangling} dangling, containers {states:?} (= docker CLI)"
    );
    drop(dw);
}

/// The calls that would make anyone root on the host (and more) are
/// refused 403 at every level, with and without a version prefix, in front
/// of bed dockerd A; what dockwatch reads passes.
#[test]
fn writes_are_refused_at_every_level() {
    let (bed, dir, a) = before_a("proxy-403");
    let proxies: Vec<(&str, Haproxy)> = LEVELS
        .iter()
        .map(|&l| (l, Haproxy::start(l, &dir.0, &a)))
        .collect();
    let cli = bed.cli_a();
    let before: BTreeSet<String> = cli
        .run(&["ps", "-aq", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect();
    let running = cli.run(&["ps", "-q", "--no-trunc"]);
    let id = running.lines().next().expect("bed A runs containers");
    let forbidden = [
        ("POST", "/v1.41/containers/create".to_owned()),
        ("POST", "/containers/create".to_owned()),
        ("POST", "/v1.45/containers/create?name=dw-proxy".to_owned()),
        ("POST", format!("/v1.41/containers/{id}/exec")),
        ("POST", format!("/containers/{id}/exec")),
        ("DELETE", format!("/v1.41/containers/{id}")),
        ("DELETE", format!("/containers/{id}?force=1")),
        ("POST", format!("/v1.41/containers/{id}/kill")),
        ("GET", format!("/v1.41/containers/{id}/logs?stdout=1")),
        ("GET", format!("/v1.41/containers/{id}/export")),
        ("GET", "/v1.41/volumes".to_owned()),
        (
            "POST",
            "/v1.41/images/create?fromSrc=-&repo=dwtest/x".to_owned(),
        ),
        ("DELETE", "/v1.41/images/dwtest/app:1".to_owned()),
        (
            "GET",
            "/v1.41/images/..%2F..%2Fcontainers%2Fjson/json".to_owned(),
        ),
    ];
    let mut statuses = BTreeMap::new();
    for (level, p) in &proxies {
        for (method, path) in &forbidden {
            let answer = p.request(method, path);
            assert_eq!(answer, 403, "{level}: {method} {path}");
            *statuses.entry(answer).or_insert(0) += 1;
        }
        for path in [
            "/_ping",
            "/version",
            "/v1.41/version",
            "/v1.41/containers/json",
        ] {
            assert_eq!(p.request("GET", path), 200, "{level}: GET {path}");
        }
        assert_eq!(p.request("HEAD", "/_ping"), 200, "{level}: HEAD /_ping");
        // haproxy logs a request once it is over: the last may take a moment.
        wait_until(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || p.refused().len() >= forbidden.len(),
            || format!("{level}: haproxy logged fewer refusals:\n{}", p.log()),
        );
        assert_eq!(p.refused().len(), forbidden.len(), "{level}:\n{}", p.log());
    }
    eprintln!(
        "refused: {} requests x {} levels: statuses {statuses:?}",
        forbidden.len(),
        LEVELS.len()
    );
    let after: BTreeSet<String> = cli
        .run(&["ps", "-aq", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        before, after,
        "a container was made or removed through the proxy"
    );
    assert!(cli.has_image("dwtest/app:1"));
}

/// `leave_dangling` of tests/connection.rs: `dangle:1`'s tag moves to
/// `dangle:2`'s image; returns the dangling image's id.
fn leave_dangling(cli: &DockerCli, dir: &Path) -> String {
    cli.import_tiny(dir, "dwtest/dangle:1");
    cli.import_tiny(dir, "dwtest/dangle:2");
    cli.run(&["tag", "dwtest/dangle:2", "dwtest/dangle:1"]);
    let ids = cli.image_ids(&["dangling=true"]);
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

/// A config with one daemon per level given, each through its proxy, one
/// pre-pull and pruning every 2 s.
fn pull_prune_config(proxies: &[(&str, Haproxy)], image: &str) -> String {
    let mut config = String::from(FAST_POLL);
    for (level, p) in proxies {
        config.push_str(&daemon_toml(daemon_of(level), &p.host()));
    }
    write!(
        config,
        r#"
[prepull]
interval = "1h"
jitter = "0s"
check_interval = "0s"
[[prepull.images]]
image = "{image}"
[prune]
enabled = true
interval = "2s"
jitter = "0s"
older_than = "0s"
"#
    )
    .expect("write to a String");
    config
}

/// A pre-pull passes the proxy from the pull level on, a prune only at the
/// prune level; below them each fails, saying a proxy refused it. First
/// the read-only and pull levels (the dangling image must outlive their
/// refused removals), then the prune level, on one dockerd of the test's
/// own.
#[test]
#[allow(clippy::too_many_lines)] // two phases, start to end
fn pulls_and_prunes_pass_only_at_their_level() {
    let bed = Testbed::get();
    let dir = Scratch::new("proxy-levels");
    let own = OwnDaemon::start_on(&dir.0.join("d"), Store::Classic, &bed, &[]);
    let cli = bed.cli_at(&own.host());
    let dangling = leave_dangling(&cli, &dir.0);
    let image = format!("{}/dwtest/multi:1", bed.var("REGISTRY"));
    let proxies: Vec<(&str, Haproxy)> = LEVELS
        .iter()
        .map(|&l| (l, Haproxy::start(l, &dir.0, &own.socket())))
        .collect();
    let (low, prune) = proxies.split_at(2);

    let dw = Dockwatch::start(&pull_prune_config(low, &image));
    let runs = |s: &Scrape, d: &str, result: &str| {
        s.get(
            "dockwatch_prune_runs_total",
            &[("daemon", d), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    let s = dw.wait_for(
        "the read-only level's pull failed, the pull level's pulled, both prunes failed",
        Duration::from_secs(45),
        |s| {
            s.pulls("ro", &image, "failed") >= 1.0
                && s.pulls("pull", &image, "updated") + s.pulls("pull", &image, "up_to_date") >= 1.0
                && runs(s, "ro", "failed") >= 1.0
                && runs(s, "pull", "failed") >= 1.0
        },
    );
    assert_eq!(
        s.pull_failure_reasons("ro", &image),
        BTreeMap::from([("daemon".to_owned(), s.pulls("ro", &image, "failed"))]),
        "a proxy's refusal is no credentials problem"
    );
    let pulls = dw.pulls().expect("/pulls");
    let last = &pulls["daemons"]["ro"][image.as_str()]["last"];
    assert_eq!(last["reason"], "daemon", "{last}");
    let message = last["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(PROXY_REFUSAL), "{last}");
    assert!(
        message.contains("Request forbidden by administrative rules"),
        "{last}"
    );
    assert_eq!(
        pulls["daemons"]["pull"][image.as_str()]["last"]["reason"],
        serde_json::Value::Null
    );
    for d in ["ro", "pull"] {
        assert_eq!(
            s.get("dockwatch_prune_images_removed_total", &[("daemon", d)])
                .unwrap_or(0.0),
            0.0,
            "{d}"
        );
    }
    let log = dw.log();
    let failed_rounds: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("prune round failed"))
        .collect();
    for d in ["ro", "pull"] {
        assert!(
            failed_rounds
                .iter()
                .any(|l| l.contains(&format!("daemon={d} ")) && l.contains(PROXY_REFUSAL)),
            "no failed round of {d} saying the proxy refused:\n{log}"
        );
    }
    assert!(cli.has_image(&image), "the pull level did not pull");
    assert_eq!(cli.image_ids(&["dangling=true"]), vec![dangling.clone()]);
    let refused: BTreeMap<&str, Vec<String>> = low.iter().map(|(l, p)| (*l, p.refused())).collect();
    drop(dw);

    let dw = Dockwatch::start(&pull_prune_config(prune, &image));
    let s = dw.wait_for(
        "the prune level's pull and prune",
        Duration::from_secs(45),
        |s| {
            s.pulls("prune", &image, "up_to_date") + s.pulls("prune", &image, "updated") >= 1.0
                && s.get(
                    "dockwatch_prune_images_removed_total",
                    &[("daemon", "prune")],
                )
                .unwrap_or(0.0)
                    >= 1.0
        },
    );
    assert_eq!(runs(&s, "prune", "failed"), 0.0, "{}", dw.log());
    assert_eq!(s.pulls("prune", &image, "failed"), 0.0);
    assert!(cli.image_ids(&["dangling=true"]).is_empty());
    assert!(
        !cli.has_image(&dangling),
        "the dangling image is still there"
    );
    assert!(prune[0].1.refused().is_empty(), "{}", prune[0].1.log());
    drop(dw);

    // What the lower levels refused: the pull (read-only) and the removal
    // (both), nothing else.
    let mut seen = BTreeMap::new();
    for (level, lines) in &refused {
        for line in lines {
            let call = line
                .rsplit_once('"')
                .and_then(|(head, _)| head.rsplit_once('"'))
                .map_or(line.as_str(), |(_, req)| req);
            let mut words = call.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            *seen
                .entry(format!("{level}: {method} {}", template(path)))
                .or_insert(0) += 1;
        }
    }
    eprintln!("refused by the lower levels: {seen:?}");
    // What each level passed on: only reads below pull, the pull from the
    // pull level on, the removal at the prune level.
    let passed: BTreeMap<&str, BTreeMap<String, u64>> =
        proxies.iter().map(|(l, p)| (*l, p.passed())).collect();
    for (level, calls) in &passed {
        eprintln!("passed at {level}: {calls:?}");
        let writes: BTreeSet<&str> = calls
            .keys()
            .map(String::as_str)
            .filter(|c| !c.starts_with("GET ") && *c != "HEAD /_ping")
            .collect();
        let want: BTreeSet<&str> = match *level {
            "read-only" => BTreeSet::new(),
            "pull" => BTreeSet::from(["POST /images/create"]),
            _ => BTreeSet::from(["POST /images/create", "DELETE /images/{name}"]),
        };
        assert_eq!(writes, want, "{level}: {calls:?}");
    }
    for (level, call) in [
        ("read-only", "POST /images/create"),
        ("read-only", "DELETE /images/{name}"),
        ("pull", "DELETE /images/{name}"),
    ] {
        assert!(seen.contains_key(&format!("{level}: {call}")), "{seen:?}");
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    drop(proxies);
    drop(own);
}

/// `check-config` warns once for a daemon on plain TCP at an address that
/// is not loopback, and not for loopback or a unix socket. Config only:
/// nothing is sent to either address.
#[test]
fn check_config_warns_for_plain_tcp_off_loopback() {
    let dir = Scratch::new("exposure");
    let check = |body: &str| {
        let path = dir.0.join("config.toml");
        std::fs::write(&path, body).expect("config");
        let out = Command::new(common::binary())
            .arg("--config")
            .arg(&path)
            .arg("check-config")
            .output()
            .expect("dockwatch check-config");
        common::assert_success(&out, "check-config");
        output_text(&out)
    };
    let out = check(&format!(
        "{}{}{}",
        daemon_toml("exposed", "tcp://10.0.0.1:2375"),
        daemon_toml("loop", "tcp://127.0.0.1:2375"),
        daemon_toml("sock", "unix:///var/run/docker.sock"),
    ));
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("warning")).collect();
    eprintln!("check-config: {out}");
    assert_eq!(warnings.len(), 1, "{out}");
    let w = warnings[0];
    let needles = [
        "\"exposed\"",
        "tcp://10.0.0.1:2375",
        "root on its host",
        "--tlsverify",
        "2376",
        "[daemons.tls]",
    ];
    common::assert_holds_all(w, &needles, |needle| format!("{needle} not in {w}"));
    assert!(!w.contains("127.0.0.1"), "{w}");
    let quiet = check(&daemon_toml("loop", "tcp://127.0.0.1:2375"));
    assert!(!quiet.contains("warning"), "{quiet}");
}

/// The compose variant: its dockwatch config passes `check-config` and
/// names the proxy, and only the proxy service mounts the socket, read-only.
#[test]
fn the_compose_variant_keeps_the_socket_in_the_proxy() {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/socket-proxy");
    let out = Command::new(common::binary())
        .arg("--config")
        .arg(format!("{folder}/dockwatch.toml"))
        .arg("check-config")
        .output()
        .expect("dockwatch check-config");
    common::assert_success(&out, "check-config of deploy/socket-proxy/dockwatch.toml");
    assert!(output_text(&out).contains("tcp://docker-proxy:2375"));
    let compose =
        std::fs::read_to_string(format!("{folder}/docker-compose.yml")).expect("compose file");
    let (proxy, dockwatch) = compose
        .split_once("\n  dockwatch:\n")
        .expect("a dockwatch service after the proxy");
    let proxy = proxy
        .split_once("\n  docker-proxy:\n")
        .expect("a docker-proxy service")
        .1;
    assert!(proxy.contains("- /var/run/docker.sock:/var/run/docker.sock:ro"));
    assert!(!dockwatch.contains("docker.sock"), "{dockwatch}");
    assert!(dockwatch.contains("networks: [docker-api, default]"));
    assert!(compose.contains("internal: true"));
}
