//! The deployment files against the real thing: the systemd unit through
//! `systemd-analyze verify`, and the container image that
//! `deploy/build-image.sh` builds on test daemon A, run there against A's
//! socket as a non-root user and scraped.
//!
//! The image test builds the static release binary first: a few minutes the
//! first time (3 to 7 min on 2 busy cores), then 1.5 to 2.5 min when
//! the sources changed (thin LTO), seconds when they did not.
// Counts and byte totals here are far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::build_image::{BUILD_SCRIPT, run_build_script, tail};
use common::{DockerCli, Testbed, binary, free_port, http_get, scrape, temp_dir};

const UNIT: &str = "deploy/systemd/dockwatch.service";
/// Where the unit expects the binary; the test points it at cargo's.
const INSTALLED_BINARY: &str = "/usr/local/bin/dockwatch";
/// The image's user and group: nobody / nogroup, by number.
const IMAGE_USER: &str = "65534:65534";
const IMAGE_MAX_BYTES: u64 = 30_000_000;
const READY_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ------------------------------------------------------------------ systemd

fn systemd_verify(unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed")
}

/// `systemd-analyze verify` of `body` saved as `dir/dockwatch.service`.
fn verify_unit_text(dir: &Path, body: &str) -> Output {
    let path = dir.join("dockwatch.service");
    fs::write(&path, body).expect("write unit copy");
    systemd_verify(&path)
}

/// The unit's `Key=Value` lines (comments and section headers dropped).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The unit with [`INSTALLED_BINARY`] replaced by `bin` on its `Exec*=`
/// lines (and nowhere else, such as the install notes in comments).
fn with_exec_binary(unit: &str, bin: &str) -> String {
    let mut replaced = 0;
    let mut out = String::new();
    for line in unit.lines() {
        if line.trim_start().starts_with("Exec") && line.contains(INSTALLED_BINARY) {
            replaced += 1;
            out.push_str(&line.replace(INSTALLED_BINARY, bin));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert!(
        replaced >= 1,
        "no Exec*= line of {UNIT} runs {INSTALLED_BINARY}"
    );
    out
}

/// The unit as shipped and its settings.
fn unit() -> (String, Vec<(String, String)>) {
    let unit = fs::read_to_string(repo().join(UNIT)).expect("read the unit");
    let settings = unit_settings(&unit);
    (unit, settings)
}

/// Every value `key` has in `settings`, in order.
fn values<'a>(settings: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn systemd_unit_has_the_agreed_settings() {
    let (unit, settings) = unit();
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(
            unit.lines().any(|l| l.trim() == section),
            "{UNIT} has no {section} section"
        );
    }
    for (key, want) in [
        (
            "ExecStart",
            "/usr/local/bin/dockwatch --config /etc/dockwatch/config.toml",
        ),
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        ("LimitNOFILE", "65536"),
        ("SupplementaryGroups", "docker"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("ReadOnlyPaths", "/etc/dockwatch"),
        ("WantedBy", "multi-user.target"),
    ] {
        assert_eq!(
            values(&settings, key),
            [want],
            "{UNIT}: expected exactly one {key}={want}"
        );
    }
    // Unprivileged: a dynamic user, or a named user that is not root.
    let dynamic = values(&settings, "DynamicUser") == ["yes"];
    let user = values(&settings, "User");
    assert!(
        dynamic || (user.len() == 1 && !["root", "0"].contains(&user[0])),
        "{UNIT} must run as an unprivileged user (DynamicUser=yes or User=<not root>), has User={user:?}"
    );
    // A bad config (exit 2) is not fixed by restarting.
    assert!(
        values(&settings, "RestartPreventExitStatus").contains(&"2"),
        "{UNIT}: exit 2 (bad config) should not be restarted"
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let (unit, _) = unit();
    let dir = temp_dir("unit");
    let bin = binary();
    // verify checks that ExecStart's binary exists: point it at cargo's.
    let runnable = with_exec_binary(&unit, bin);
    let out = verify_unit_text(&dir, &runnable);
    // Unknown keys only warn (exit 0): any output at all is a failure.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify {UNIT} (ExecStart pointed at {bin}): exit {:?}\nstderr:\n{}\nstdout:\n{}",
        out.status.code(),
        text(&out.stderr),
        text(&out.stdout)
    );

    // The check has teeth: an unknown key and a missing binary both show up
    // on stderr.
    let bogus = runnable.replacen("[Service]\n", "[Service]\nDockwatchBogusKey=1\n", 1);
    let out = verify_unit_text(&dir, &bogus);
    assert!(
        text(&out.stderr).contains("DockwatchBogusKey"),
        "systemd-analyze verify did not report an unknown key on stderr: {}",
        text(&out.stderr)
    );
    let missing = with_exec_binary(&unit, "/nonexistent/dockwatch-deploy-test");
    let out = verify_unit_text(&dir, &missing);
    assert!(
        !out.status.success() && !out.stderr.is_empty(),
        "systemd-analyze verify accepted a missing ExecStart binary"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn systemd_unit_command_line_is_one_dockwatch_takes() {
    let (_, settings) = unit();
    // The same command line with the example config.toml in place of
    // /etc/dockwatch/config.toml, plus check-config.
    let exec = values(&settings, "ExecStart")[0]
        .replace(INSTALLED_BINARY, binary())
        .replace(
            "/etc/dockwatch/config.toml",
            &repo().join("config.toml").display().to_string(),
        );
    let mut words = exec.split_whitespace();
    let program = words.next().expect("ExecStart names a program");
    let out = Command::new(program)
        .args(words)
        .arg("check-config")
        .env_remove("DOCKER_HOST")
        .output()
        .expect("run dockwatch check-config");
    assert!(
        out.status.success() && text(&out.stdout).contains("config OK"),
        "ExecStart's command line with check-config failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ------------------------------------------------------------------ image

/// Everything on A a leftover of this test would change.
#[derive(Debug, PartialEq, Eq)]
struct DaemonState {
    images_all: BTreeSet<String>,
    containers_all: BTreeSet<String>,
    volumes: BTreeSet<String>,
    build_cache: String,
}

impl DaemonState {
    fn of(cli: &DockerCli) -> Self {
        let set = |args: &[&str]| -> BTreeSet<String> {
            cli.run(args)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let build_cache = cli
            .run(&[
                "system",
                "df",
                "--format",
                "{{.Type}}: {{.TotalCount}} {{.Size}}",
            ])
            .lines()
            .find(|l| l.starts_with("Build Cache"))
            .expect("docker system df lists the build cache")
            .to_owned();
        Self {
            images_all: set(&["images", "-a", "-q", "--no-trunc"]),
            containers_all: set(&["ps", "-a", "-q", "--no-trunc"]),
            volumes: set(&["volume", "ls", "-q"]),
            build_cache,
        }
    }
}

/// Removes this test's containers and image from A, also when it fails.
#[derive(Debug)]
struct Cleanup {
    cli: DockerCli,
    containers: Vec<String>,
    image: String,
}

impl Cleanup {
    /// Runs the image once, as `name`, without a network, with `arg`:
    /// `docker run --rm --name NAME --network none IMAGE ARG`; its stdout.
    fn run_once(&mut self, name: &str, arg: &str) -> String {
        self.containers.push(name.to_owned());
        self.cli.run(&[
            "run",
            "--rm",
            "--name",
            name,
            "--network",
            "none",
            &self.image,
            arg,
        ])
    }

    fn remove_container(&mut self, name: &str) {
        let out = self.cli.try_run(&["rm", "-f", "-v", name]);
        assert!(
            out.status.success(),
            "docker rm -f {name}: {}",
            text(&out.stderr)
        );
        self.containers.retain(|c| c != name);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.cli.try_run(&["rm", "-f", "-v", c]);
        }
        self.cli.rmi_f(&[&self.image]);
    }
}

/// Runs deploy/build-image.sh TAG against daemon A, as a user would; returns
/// its stdout and how long it took.
fn build_image(bed: &Testbed, tag: &str, dir: &Path) -> (String, Duration) {
    let script = repo().join(BUILD_SCRIPT);
    let mode = fs::metadata(&script)
        .expect("deploy/build-image.sh exists")
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "{BUILD_SCRIPT} is not executable");
    let out_path = dir.join("build-image.out");
    let log_path = dir.join("build-image.log");
    let docker_config = dir.join("docker-config");
    fs::create_dir_all(&docker_config).expect("docker config dir");
    let started = Instant::now();
    // Run from an unrelated directory: the script finds the repository itself.
    let mut cmd = Command::new(&script);
    cmd.arg(tag)
        .current_dir(dir)
        .env("DOCKER_HOST", bed.var("DOCKER_A"))
        .env("DOCKER_CONFIG", &docker_config)
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH");
    let status = run_build_script(&mut cmd, started, &out_path, &log_path);
    let took = started.elapsed();
    assert!(
        status.success(),
        "{BUILD_SCRIPT} {tag} failed ({status}) after {took:?}; last log lines:\n{}",
        tail(&log_path, 60)
    );
    let stdout = fs::read_to_string(&out_path).expect("read build-image.sh stdout");
    println!("{BUILD_SCRIPT} {tag}: {took:?}\n{}", tail(&log_path, 4));
    (stdout, took)
}

/// Waits until the container's dockwatch answers `/-/ready` with 200.
fn wait_ready(cli: &DockerCli, name: &str, port: u16) {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut next_check = Instant::now();
    loop {
        if let Ok((200, _)) = http_get(port, "/-/ready") {
            return;
        }
        // Every few seconds: a container that died will never be ready.
        if Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_secs(3);
            let state = cli.run(&[
                "inspect",
                "--format",
                "{{.State.Status}} {{.State.ExitCode}}",
                name,
            ]);
            assert!(
                state.starts_with("running"),
                "container {name} is not running ({}); logs:\n{}",
                state.trim(),
                text(&cli.try_run(&["logs", name]).stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "dockwatch in container {name} not ready on 127.0.0.1:{port} within {READY_TIMEOUT:?}; logs:\n{}",
            text(&cli.try_run(&["logs", name]).stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts the image detached on A with host networking, A's socket mounted
/// at /var/run/docker.sock and the listen address overridden; `group` is
/// passed as --group-add if given.
fn run_container(
    cli: &DockerCli,
    cleanup: &mut Cleanup,
    name: &str,
    socket: &str,
    group: Option<u32>,
    port: u16,
) {
    cleanup.containers.push(name.to_owned());
    let image = cleanup.image.clone();
    let mount = format!("{socket}:/var/run/docker.sock");
    let listen = format!("DOCKWATCH_SERVER__LISTEN=127.0.0.1:{port}");
    let gid = group.map(|g| g.to_string());
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "-v",
        &mount,
        "-e",
        &listen,
        // Polls every 2 s rather than 15 s, so a count that was caught
        // mid-change (this very container starting) settles soon.
        "-e",
        "DOCKWATCH_POLL__INTERVAL=2s",
        "-e",
        "DOCKWATCH_POLL__TIMEOUT=1500ms",
    ];
    if let Some(gid) = &gid {
        args.extend(["--group-add", gid]);
    }
    args.push(&image);
    let out = cli.try_run(&args);
    assert!(
        out.status.success(),
        "docker run {image} ({name}) failed: {}",
        text(&out.stderr)
    );
}

/// `docker inspect --format FORMAT TARGET`, trimmed.
fn inspect(cli: &DockerCli, format: &str, target: &str) -> String {
    cli.run(&["inspect", "--format", format, target])
        .trim()
        .to_owned()
}

/// One field of /proc/PID/status, split on whitespace.
fn proc_status(pid: &str, field: &str) -> Vec<String> {
    let pid: u32 = pid.parse().unwrap_or_else(|e| panic!("pid {pid:?}: {e}"));
    common::proc_status(pid, field)
        .unwrap_or_else(|| panic!("/proc/{pid}/status does not exist or has no {field}"))
}

#[test]
#[allow(clippy::too_many_lines)] // one story: build, inspect, run twice, clean up
fn image_builds_and_runs_against_the_socket_as_non_root() {
    let bed = Testbed::get();
    let cli = bed.cli_a();
    let pid = std::process::id();
    let tag = format!("dockwatch:test-{pid}");
    let before = DaemonState::of(&cli);
    assert!(!cli.has_image(&tag), "{tag} already exists on A");
    let socket = bed.var("DOCKER_A_SOCKET");
    let meta = fs::metadata(socket).expect("A's socket");
    let gid = meta.gid();
    // Only the group may connect: otherwise --group-add would prove nothing.
    assert_eq!(
        meta.mode() & 0o007,
        0,
        "A's socket {socket} is open to others (mode {:o})",
        meta.mode()
    );

    let mut cleanup = Cleanup {
        cli: cli.clone(),
        containers: Vec::new(),
        image: tag.clone(),
    };
    let dir = temp_dir("image");
    let (stdout, took) = build_image(&bed, &tag, &dir);

    // stdout: one line, "TAG ID", the ID being what the daemon has.
    let line = stdout.trim();
    let (printed_tag, printed_id) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("{BUILD_SCRIPT} printed {line:?}, not \"TAG ID\""));
    assert_eq!(printed_tag, tag);
    assert_eq!(printed_id, inspect(&cli, "{{.Id}}", &tag));

    // The image: FROM scratch with the one binary, non-root, the agreed shape.
    let size: u64 = inspect(&cli, "{{.Size}}", &tag)
        .parse()
        .expect("image size is a number");
    println!(
        "image {tag}: {size} bytes ({:.1} MB), built in {took:?}",
        size as f64 / 1e6
    );
    assert!(
        size < IMAGE_MAX_BYTES,
        "image {tag} is {size} bytes, over {IMAGE_MAX_BYTES}"
    );
    for (format, want) in [
        ("{{.Config.User}}", IMAGE_USER.to_owned()),
        (
            "{{json .Config.Entrypoint}}",
            r#"["/dockwatch"]"#.to_owned(),
        ),
        ("{{json .Config.Cmd}}", "null".to_owned()),
        (
            "{{json .Config.ExposedPorts}}",
            r#"{"9779/tcp":{}}"#.to_owned(),
        ),
        ("{{.Config.WorkingDir}}", "/".to_owned()),
        ("{{.Os}}", "linux".to_owned()),
        ("{{len .RootFS.Layers}}", "1".to_owned()),
        (
            r#"{{index .Config.Labels "org.opencontainers.image.version"}}"#,
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ] {
        assert_eq!(inspect(&cli, format, &tag), want, "image {tag}: {format}");
    }

    // Arguments go to dockwatch, and the built-in defaults are what runs.
    let version = cleanup.run_once(&format!("dw-deploy-version-{pid}"), "--version");
    assert_eq!(
        version.trim(),
        format!("dockwatch {}", env!("CARGO_PKG_VERSION"))
    );
    let check = cleanup.run_once(&format!("dw-deploy-check-{pid}"), "check-config");
    assert!(
        check.contains("built-in defaults") && check.contains("1 daemon(s)"),
        "check-config in the image should find no config file and one default daemon: {check}"
    );

    // The real run: A's socket, its group added, a non-root user.
    let name = format!("dw-deploy-{pid}");
    let port = free_port();
    run_container(&cli, &mut cleanup, &name, socket, Some(gid), port);
    wait_ready(&cli, &name, port);
    let s = scrape(port);
    let local = [("daemon", "local")];
    assert_eq!(
        s.get("dockwatch_daemon_up", &local),
        Some(1.0),
        "daemon local (A through the mounted socket) is not up; scrape:\n{}",
        s.text
    );
    let images = cli.image_ids(&[]);
    assert!(
        images.iter().any(|id| *id == printed_id),
        "docker images on A does not list the new image"
    );
    assert_eq!(
        s.get("dockwatch_images", &local),
        Some(images.len() as f64),
        "dockwatch_images in the container vs docker images on A"
    );
    let info = s
        .labels_of("dockwatch_daemon_info", &local)
        .expect("dockwatch_daemon_info for local");
    assert_eq!(
        info["version"],
        cli.run(&["version", "--format", "{{.Server.Version}}"])
            .trim()
    );
    // Running containers, this one among them. The first poll may have run
    // before dockerd marked this container running: wait for a later one.
    let running = cli.container_states().get("running").copied().unwrap_or(0);
    assert!(running >= 1, "docker ps shows no running container");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = scrape(port).get(
            "dockwatch_containers",
            &[("daemon", "local"), ("state", "running")],
        );
        if seen == Some(running as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "running containers: dockwatch says {seen:?}, docker ps says {running}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Non-root, as the kernel sees it, with the socket's group added.
    assert_eq!(inspect(&cli, "{{.Config.User}}", &name), IMAGE_USER);
    let host_pid = inspect(&cli, "{{.State.Pid}}", &name);
    for field in ["Uid", "Gid"] {
        assert_eq!(
            proc_status(&host_pid, field),
            ["65534"; 4],
            "{field} of dockwatch in the container"
        );
    }
    let groups = proc_status(&host_pid, "Groups");
    assert!(
        groups.contains(&gid.to_string()),
        "--group-add {gid} is not among the process's groups {groups:?}"
    );
    assert!(
        !groups.contains(&"0".to_owned()),
        "the process is in group root: {groups:?}"
    );

    // SIGTERM (docker stop) ends it promptly and cleanly.
    let stop_started = Instant::now();
    cli.run(&["stop", "-t", "30", &name]);
    let stop_took = stop_started.elapsed();
    assert_eq!(
        inspect(&cli, "{{.State.ExitCode}}", &name),
        "0",
        "dockwatch exited badly on docker stop; logs:\n{}",
        text(&cli.try_run(&["logs", &name]).stderr)
    );
    assert!(
        stop_took < Duration::from_secs(15),
        "docker stop took {stop_took:?}"
    );
    cleanup.remove_container(&name);

    // Without --group-add the same user cannot use the socket: the group is
    // what grants access, not root.
    let denied = format!("dw-deploy-nogroup-{pid}");
    let port = free_port();
    run_container(&cli, &mut cleanup, &denied, socket, None, port);
    wait_ready(&cli, &denied, port);
    let s = scrape(port);
    assert_eq!(
        s.get("dockwatch_daemon_up", &local),
        Some(0.0),
        "without --group-add the socket should be refused; scrape:\n{}",
        s.text
    );
    assert!(
        s.get(
            "dockwatch_api_request_errors_total",
            &[("daemon", "local"), ("reason", "connect")]
        ) >= Some(1.0),
        "no connect error counted without --group-add; scrape:\n{}",
        s.text
    );
    let logs = text(&cli.try_run(&["logs", &denied]).stderr);
    assert!(
        logs.contains("Permission denied"),
        "expected a permission error in the logs:\n{logs}"
    );
    cleanup.remove_container(&denied);

    // Remove the image and everything the build made: A must be exactly as
    // before (other tests compare it with the docker CLI).
    let rmi = cli.run(&["rmi", &tag]);
    assert!(rmi.contains(&format!("Untagged: {tag}")), "{rmi}");
    drop(cleanup);
    let after = DaemonState::of(&cli);
    assert_eq!(
        before, after,
        "A changed: the build or the runs left something behind"
    );
    let _ = fs::remove_dir_all(&dir);
}
