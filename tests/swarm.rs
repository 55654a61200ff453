//! `deploy/swarm/` against a real Swarm: a single-node swarm on a dockerd of
//! the test's own, the image `deploy/build-image.sh` builds there,
//! `docker stack deploy` of the shipped stack file, and a real Prometheus
//! running the shipped scrape job, which finds the agent through the Swarm
//! API and scrapes it. Ground truth: the docker CLI (node name, images).
//!
//! The daemon is the test's own (never the bed's shared A: other tests run
//! on it concurrently), started as every `OwnDaemon` is (`--bridge=none
//! --iptables=false --ip-masq=false`): Swarm needs neither the default bridge
//! nor iptables here. The stack publishes its port in host mode, which goes
//! through the overlay network and `docker_gwbridge` with docker-proxy
//! listening on the host port; the test creates `docker_gwbridge` itself
//! with a bridge device named after its pid, so it never shares (or removes)
//! another daemon's. Swarm's gossip port (7946) cannot be moved: a second
//! swarm on this machine logs that it is taken and works anyway (one node
//! gossips with nobody).
//!
//! Like tests/deploy.rs it builds the static release binary, in the same
//! target directory: a few minutes cold, seconds when the sources did not
//! change and the last build also ran under `cargo test` (so whichever of
//! the two runs second rebuilds nothing). A build from a shell in between
//! costs a full rebuild, both ways: ring's build script reruns whenever
//! `CARGO_MANIFEST_DIR` or `CARGO_PKG_*` differ, and `cargo test` sets them
//! for its tests.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::build_image::{BUILD_SCRIPT, run_build_script, tail};
use common::prometheus::Prometheus;
use common::{DockerCli, OwnDaemon, Scratch, Testbed, free_port, http_get, output_text, scrape};

const STACK_FILE: &str = "deploy/swarm/stack.yml";
const PROMETHEUS_FILE: &str = "deploy/swarm/prometheus.yml";
/// The stack's name; its service is `STACK_dockwatch`.
const STACK: &str = "dwswarm";
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(90);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free port in 1024..=49151 (Swarm refuses a data path port above it).
fn free_registered_port() -> u16 {
    loop {
        let port = free_port();
        if (1024..=49151).contains(&port) {
            return port;
        }
    }
}

/// `s` percent-encoded for a URL query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs deploy/build-image.sh TAG against the daemon at `host`, as a user
/// would; returns the image id it printed.
fn build_image(host: &str, tag: &str, dir: &Path) -> String {
    let out_path = dir.join("build-image.out");
    let log_path = dir.join("build-image.log");
    let docker_config = dir.join("docker-config");
    fs::create_dir_all(&docker_config).expect("docker config dir");
    let started = Instant::now();
    let mut cmd = Command::new(repo().join(BUILD_SCRIPT));
    cmd.arg(tag)
        .current_dir(dir)
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", &docker_config);
    let status = run_build_script(&mut cmd, started, &out_path, &log_path);
    assert!(
        status.success(),
        "{BUILD_SCRIPT} {tag} failed ({status}); last log lines:\n{}",
        tail(&log_path, 60)
    );
    println!(
        "{BUILD_SCRIPT} {tag}: {:?}\n{}",
        started.elapsed(),
        tail(&log_path, 3)
    );
    let stdout = fs::read_to_string(&out_path).expect("read build-image.sh stdout");
    let (printed_tag, id) = stdout
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("{BUILD_SCRIPT} printed {stdout:?}, not \"TAG ID\""));
    assert_eq!(printed_tag, tag);
    id.to_owned()
}

/// A single-node swarm on the test's daemon, with what the test put in it;
/// [`Swarm::teardown`] undoes it all, and runs on drop if the test did not
/// get that far.
struct Swarm {
    cli: DockerCli,
    /// The `docker_gwbridge` network's host device, unique to this test.
    bridge: String,
    stacks: Vec<String>,
    services: Vec<String>,
    networks: Vec<String>,
    torn_down: bool,
}

impl Swarm {
    /// `docker swarm init` on 127.0.0.1 with ports of its own, after
    /// creating `docker_gwbridge` with a bridge device named after this
    /// process (Swarm adopts a network of that name if it exists).
    fn init(cli: &DockerCli) -> Self {
        let swarm = Self {
            cli: cli.clone(),
            bridge: format!("dwgw{}", std::process::id()),
            stacks: Vec::new(),
            services: Vec::new(),
            networks: Vec::new(),
            torn_down: false,
        };
        cli.run(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--opt",
            &format!("com.docker.network.bridge.name={}", swarm.bridge),
            "--opt",
            "com.docker.network.bridge.enable_icc=false",
            "--opt",
            "com.docker.network.bridge.enable_ip_masquerade=false",
            "docker_gwbridge",
        ]);
        let control = format!("127.0.0.1:{}", free_port());
        let data_port = free_registered_port().to_string();
        let out = cli.try_run(&[
            "swarm",
            "init",
            "--listen-addr",
            &control,
            "--advertise-addr",
            &control,
            "--data-path-port",
            &data_port,
        ]);
        // On failure, Drop removes the bridge network again.
        assert!(
            out.status.success(),
            "docker swarm init failed: {}",
            output_text(&out)
        );
        swarm
    }

    /// Removes the test's services, stacks and networks, waits until their
    /// containers are gone, leaves the swarm, removes `docker_gwbridge` and
    /// checks its device is gone. Returns what went wrong (nothing, if all
    /// is well); a second call does nothing.
    fn teardown(&mut self) -> Vec<String> {
        if std::mem::replace(&mut self.torn_down, true) {
            return Vec::new();
        }
        let mut problems = Vec::new();
        let mut attempt = |what: String, out: Output| {
            if !out.status.success() {
                problems.push(format!("{what}: {}", output_text(&out)));
            }
        };
        for stack in &self.stacks {
            attempt(
                format!("docker stack rm {stack}"),
                self.cli.try_run(&["stack", "rm", stack]),
            );
        }
        for service in &self.services {
            attempt(
                format!("docker service rm {service}"),
                self.cli.try_run(&["service", "rm", service]),
            );
        }
        // stack rm and service rm return before the tasks' containers are
        // gone, and a network in use cannot be removed.
        let deadline = Instant::now() + Duration::from_secs(60);
        let task_containers = |cli: &DockerCli| {
            cli.try_run(&["ps", "-aq", "--filter", "label=com.docker.swarm.task.id"])
                .stdout
        };
        while !task_containers(&self.cli).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        for network in &self.networks {
            attempt(
                format!("docker network rm {network}"),
                self.cli.try_run(&["network", "rm", network]),
            );
        }
        attempt(
            "docker swarm leave --force".to_owned(),
            self.cli.try_run(&["swarm", "leave", "--force"]),
        );
        // The ingress sandbox holds an endpoint on docker_gwbridge until the
        // node has left; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cli.try_run(&["network", "rm", "docker_gwbridge"]);
            if out.status.success() {
                break;
            }
            if Instant::now() > deadline {
                problems.push(format!(
                    "docker network rm docker_gwbridge: {}",
                    output_text(&out)
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            problems.push(format!("bridge device {} is still there", self.bridge));
        }
        problems
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        // No asserts in drop: a panic while unwinding would abort.
        for problem in self.teardown() {
            eprintln!("swarm teardown: {problem}");
        }
    }
}

/// Lazily unmounts whatever is still mounted under a directory when
/// dropped, deepest first: a dockerd that ran a swarm leaves the host's
/// network namespace bound at `EXEC_ROOT/netns/default` after it stopped,
/// which `remove_daemon_dir` (it unmounts only `data` and `exec`
/// themselves) cannot remove. Declare it before the daemon, so it runs
/// after the daemon stopped.
struct UnmountUnder(PathBuf);

impl Drop for UnmountUnder {
    fn drop(&mut self) {
        let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
        let prefix = format!("{}/", self.0.display());
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount")
                .args(["-l", point])
                .stderr(Stdio::null())
                .status();
        }
        common::remove_daemon_dir(&self.0);
    }
}

/// Waits until dockwatch answers `/-/ready` on 127.0.0.1:`port` (through
/// the host-mode port), failing with the service's tasks and logs.
fn wait_ready(cli: &DockerCli, service: &str, port: u16) {
    let deadline = Instant::now() + READY_TIMEOUT;
    while !matches!(http_get(port, "/-/ready"), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "dockwatch of {service} not ready on 127.0.0.1:{port} within {READY_TIMEOUT:?}; tasks:\n{}\nlogs:\n{}",
            output_text(&cli.try_run(&["service", "ps", "--no-trunc", service])),
            output_text(&cli.try_run(&["service", "logs", "--raw", service]))
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The shipped Prometheus config, made to run here: the test daemon's
/// socket for the Swarm API, and quick intervals. Each replaced text must
/// be there exactly once, so the file keeps the shape the docs describe.
fn prometheus_config(socket: &Path) -> String {
    let mut config = fs::read_to_string(repo().join(PROMETHEUS_FILE)).expect("read prometheus.yml");
    for (from, to) in [
        (
            "host: unix:///var/run/docker.sock",
            format!("host: unix://{}", socket.display()),
        ),
        ("refresh_interval: 30s", "refresh_interval: 1s".to_owned()),
        (
            "  scrape_interval: 15s\n  evaluation",
            "  scrape_interval: 1s\n  evaluation".to_owned(),
        ),
        (
            "    scrape_interval: 15s\n",
            "    scrape_interval: 1s\n".to_owned(),
        ),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_owned(),
        ),
    ] {
        assert_eq!(
            config.matches(from).count(),
            1,
            "{PROMETHEUS_FILE} should hold {from:?} once"
        );
        config = config.replace(from, &to);
    }
    config
}

/// The active targets of job `dockwatch` in a `/api/v1/targets` answer.
fn dockwatch_targets(targets: &Value) -> Vec<&Value> {
    targets["activeTargets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["labels"]["job"] == "dockwatch")
                .collect()
        })
        .unwrap_or_default()
}

/// The rows of an instant query.
fn query(prom: &Prometheus, q: &str) -> Vec<Value> {
    prom.api(&format!("/api/v1/query?query={}", encode(q)))
        .unwrap_or_else(|e| panic!("query {q}: {e}"))["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
#[allow(clippy::too_many_lines)] // one story: daemon, image, swarm, stack, Prometheus, teardown
fn global_service_is_found_and_scraped_by_prometheus_through_the_swarm_api() {
    let bed = Testbed::get();
    let pid = std::process::id();
    // Declared first, dropped last: the directory outlives the daemon, the
    // daemon outlives the swarm.
    let dir = Scratch::new("swarm");
    fs::create_dir_all(dir.0.join("d")).expect("daemon dir");
    let unmount = UnmountUnder(dir.0.join("d"));
    let own = OwnDaemon::start(&dir.0.join("d"));
    let cli = bed.cli_at(&own.host());
    let socket = own.socket();
    let meta = fs::metadata(&socket).expect("the test daemon's socket");
    let gid = meta.gid();
    // Only the owner and the group may connect: the group is what lets the
    // non-root agent in.
    assert_eq!(
        meta.mode() & 0o007,
        0,
        "{} is open to others (mode {:o})",
        socket.display(),
        meta.mode()
    );

    let tag = format!("dockwatch:swarm-test-{pid}");
    let image_id = build_image(&own.host(), &tag, &dir.0);
    // A second image for the decoy below; the agent counts both.
    let decoy_image = format!("dw-swarm-decoy:{pid}");
    cli.import_tiny(&dir.0, &decoy_image);

    let mut swarm = Swarm::init(&cli);
    let hostname = cli
        .run(&[
            "node",
            "inspect",
            "self",
            "--format",
            "{{.Description.Hostname}}",
        ])
        .trim()
        .to_owned();
    assert!(!hostname.is_empty(), "the node has no hostname");

    // A decoy the job must not scrape: another service with a host-mode
    // port, in an overlay network of its own, without the scrape label.
    let decoy = "dw-swarm-decoy".to_owned();
    swarm.networks.push(decoy.clone());
    cli.run(&["network", "create", "--driver", "overlay", &decoy]);
    swarm.services.push(decoy.clone());
    let decoy_port = free_port().to_string();
    cli.run(&[
        "service",
        "create",
        "--detach",
        "--name",
        &decoy,
        "--mode",
        "global",
        "--endpoint-mode",
        "dnsrr",
        "--network",
        &decoy,
        "--publish",
        &format!("mode=host,target=8080,published={decoy_port}"),
        &decoy_image,
        "/bin/busybox",
        "sleep",
        "1d",
    ]);

    // The stack as shipped; only its variables are set.
    let port = free_port();
    swarm.stacks.push(STACK.to_owned());
    let deploy = Command::new(&cli.program)
        .args(&cli.args)
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(repo().join(STACK_FILE))
        .arg(STACK)
        .env("DOCKWATCH_IMAGE", &tag)
        .env("DOCKER_GID", gid.to_string())
        .env("DOCKER_SOCK", &socket)
        .env("DOCKWATCH_PORT", port.to_string())
        .env("DOCKWATCH_CONFIG_VERSION", pid.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run docker stack deploy");
    assert!(
        deploy.status.success(),
        "docker stack deploy -c {STACK_FILE} failed: {}",
        output_text(&deploy)
    );
    let service = format!("{STACK}_dockwatch");
    wait_ready(&cli, &service, port);

    // One agent per node, on every node: a global service, and as many
    // running tasks as nodes.
    assert_eq!(
        cli.run(&[
            "service",
            "inspect",
            "--format",
            "{{if .Spec.Mode.Global}}global{{end}}",
            &service
        ])
        .trim(),
        "global"
    );
    let nodes = cli.run(&["node", "ls", "-q"]).lines().count();
    let tasks = cli
        .run(&[
            "service",
            "ps",
            "-q",
            "--filter",
            "desired-state=running",
            &service,
        ])
        .lines()
        .count();
    assert_eq!(
        (nodes, tasks),
        (1, 1),
        "nodes and running tasks of {service}"
    );

    // The agent: not root, in the socket's group, running the image built.
    let container = cli
        .run(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.swarm.service.name={service}"),
        ])
        .trim()
        .to_owned();
    assert!(!container.is_empty(), "no container of {service}");
    assert_eq!(
        cli.run(&["inspect", "--format", "{{.Image}}", &container])
            .trim(),
        image_id
    );
    let container_pid: u32 = cli
        .run(&["inspect", "--format", "{{.State.Pid}}", &container])
        .trim()
        .parse()
        .expect("container pid");
    let ids = |field: &str| {
        common::proc_status(container_pid, field)
            .unwrap_or_else(|| panic!("/proc/{container_pid}/status has no {field}"))
    };
    assert_eq!(ids("Uid"), ["65534"; 4], "the agent's uids");
    assert_eq!(
        ids("Gid"),
        [
            gid.to_string(),
            gid.to_string(),
            gid.to_string(),
            gid.to_string()
        ]
    );

    // The rendered config named the daemon after the node.
    let s = scrape(port);
    let node = [("daemon", hostname.as_str())];
    assert_eq!(
        s.up(&hostname),
        Some(1.0),
        "daemon {hostname} (the node's socket) is not up; scrape:\n{}",
        s.text
    );
    assert_eq!(
        s.samples
            .iter()
            .filter(|(name, _, _)| name == "dockwatch_daemon_up")
            .count(),
        1,
        "one daemon, the node's; scrape:\n{}",
        s.text
    );
    assert!(
        s.labels_of("dockwatch_daemon_info", &node).is_some(),
        "no dockwatch_daemon_info for {hostname}"
    );

    // Prometheus with the shipped job, asking the swarm for its tasks.
    let prom_dir = dir.0.join("prometheus");
    fs::create_dir_all(&prom_dir).expect("prometheus dir");
    fs::write(prom_dir.join("prometheus.yml"), prometheus_config(&socket)).expect("write config");
    fs::copy(
        repo().join("deploy/prometheus/alerts.yml"),
        prom_dir.join("alerts.yml"),
    )
    .expect("copy alerts.yml");
    let prom = Prometheus::start(prom_dir);

    // Exactly one target, the agent, healthy, named after its node; the
    // decoy was found too and dropped.
    let mut targets = Value::Null;
    let deadline = Instant::now() + PROMETHEUS_TIMEOUT;
    loop {
        if let Ok(t) = prom.api("/api/v1/targets") {
            targets = t;
        }
        let active = dockwatch_targets(&targets);
        let decoy_dropped = targets["droppedTargets"].as_array().is_some_and(|d| {
            d.iter()
                .any(|t| t["discoveredLabels"]["__meta_dockerswarm_service_name"] == decoy)
        });
        if active.len() == 1 && active[0]["health"] == "up" && decoy_dropped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no single healthy dockwatch target (and the decoy dropped) within {PROMETHEUS_TIMEOUT:?}; targets:\n{targets:#}\nPrometheus log:\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let target = dockwatch_targets(&targets)[0];
    assert_eq!(target["labels"]["instance"], hostname.as_str(), "{target}");
    assert_eq!(
        target["scrapeUrl"],
        format!("http://127.0.0.1:{port}/metrics"),
        "{target}"
    );
    let found = &target["discoveredLabels"];
    assert_eq!(
        found["__meta_dockerswarm_service_name"],
        service.as_str(),
        "{target}"
    );
    assert_eq!(
        found["__meta_dockerswarm_node_hostname"],
        hostname.as_str(),
        "{target}"
    );
    assert_eq!(
        found["__meta_dockerswarm_task_port_publish_mode"], "host",
        "{target}"
    );
    assert!(
        !targets["activeTargets"].as_array().is_some_and(|a| a
            .iter()
            .any(|t| t["discoveredLabels"]["__meta_dockerswarm_service_name"] == decoy)),
        "the decoy is scraped: {targets}"
    );

    // What Prometheus stored: up 1, the node's daemon up, its images as many
    // as the CLI lists.
    let images = cli.image_ids(&[]);
    assert_eq!(
        images.len(),
        2,
        "the agent's and the decoy's image: {images:?}"
    );
    let up = query(&prom, "up{job=\"dockwatch\"}");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["metric"]["instance"], hostname.as_str());
    assert_eq!(up[0]["value"][1], "1");
    let daemon_up = query(&prom, "dockwatch_daemon_up{job=\"dockwatch\"}");
    assert_eq!(daemon_up.len(), 1, "{daemon_up:?}");
    assert_eq!(daemon_up[0]["metric"]["daemon"], hostname.as_str());
    assert_eq!(daemon_up[0]["value"][1], "1");
    let want = images.len().to_string();
    let q = format!("dockwatch_images{{job=\"dockwatch\",daemon=\"{hostname}\"}}");
    let mut last = Vec::new();
    prom.wait_until(&format!("{q} = {want}"), PROMETHEUS_TIMEOUT, || {
        last = query(&prom, &q);
        last.len() == 1 && last[0]["value"][1] == want.as_str()
    });
    println!(
        "swarm: node {hostname}, target {}, {want} images, via {STACK_FILE} + {PROMETHEUS_FILE}",
        target["scrapeUrl"]
    );

    // Teardown, checked: nothing of the swarm is left.
    drop(prom);
    let problems = swarm.teardown();
    assert!(problems.is_empty(), "teardown: {problems:#?}");
    assert_eq!(
        cli.run(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
            .trim(),
        "inactive"
    );
    assert_eq!(cli.run(&["ps", "-aq"]).trim(), "", "containers left behind");
    assert!(
        !cli.run(&["network", "ls", "--format", "{{.Name}}"])
            .lines()
            .any(|n| n == "docker_gwbridge" || n == "ingress"),
        "networks left behind"
    );
    drop(swarm);
    drop(own);
    drop(unmount);
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    assert!(
        !mounts.contains(&format!("{}/", dir.0.display())),
        "mounts left under {}",
        dir.0.display()
    );
}
