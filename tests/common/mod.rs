//! Shared helpers for the integration tests: the test bed started by
//! `tests/run.sh`, a dockwatch process per test, scraping, and the docker CLI
//! as ground truth.
#![allow(dead_code, clippy::missing_panics_doc, clippy::must_use_candidate)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub mod prometheus;
pub mod slow_link;

/// The two image stores a dockerd can use, which report sizes, layers and
/// disk usage differently (see the README, "Image stores").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The graph driver store (overlay2) of dockerd 20.10: daemons A and B.
    Classic,
    /// The containerd image store (snapshotter overlayfs) of Docker 26:
    /// daemon C.
    Containerd,
}

/// Sends a signal with kill(1) (no libc in the test dependencies); fails
/// the test if it cannot be sent.
pub fn kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Resumes a process frozen with SIGSTOP, also when the test fails half-way.
pub struct Thaw(pub u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        // No asserts in drop: a panic while unwinding would abort.
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// A scratch directory, removed however the test ends (declare it before
/// the daemons that live in it, so it is dropped after them).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        Self(temp_dir(tag))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stops a child with SIGTERM, waiting up to 20 s before SIGKILL.
pub fn terminate(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
}

/// Removes a stopped dockerd's directory, unmounting what it left mounted.
pub fn remove_daemon_dir(dir: &Path) {
    for sub in ["data", "exec"] {
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(dir.join(sub))
            .stderr(Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The variables `tests/testbed.sh up` wrote.
#[derive(Debug, Clone)]
pub struct Testbed {
    vars: BTreeMap<String, String>,
}

impl Testbed {
    /// Reads the test bed's env file named by `DW_TESTBED`. A missing test bed
    /// is a loud failure, never a skip.
    pub fn get() -> Self {
        let path = std::env::var("DW_TESTBED").unwrap_or_else(|_| {
            panic!(
                "DW_TESTBED is not set: these tests need the real test bed (two dockerds, a registry). \
                 Run the whole suite with `tests/run.sh`, or start the bed with \
                 `tests/testbed.sh up DIR` and set DW_TESTBED=DIR/env. `cargo test --lib` needs no daemon."
            )
        });
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read test bed env file {path}: {e}"));
        let vars = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Self { vars }
    }

    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("test bed env has no {key}"))
    }

    /// TOML for the unix-socket daemon A.
    pub fn daemon_a(&self, name: &str) -> String {
        format!(
            "[[daemons]]\nname = \"{name}\"\nhost = \"{}\"\n",
            self.var("DOCKER_A")
        )
    }

    /// TOML for the mutual-TLS daemon B with the given CA, cert and key.
    pub fn daemon_b_with(&self, name: &str, ca: &str, cert: &str, key: &str) -> String {
        format!(
            "[[daemons]]\nname = \"{name}\"\nhost = \"{}\"\n[daemons.tls]\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n",
            self.var("DOCKER_B")
        )
    }

    /// TOML for daemon C: Docker 26 on the containerd image store.
    pub fn daemon_c(&self, name: &str) -> String {
        format!(
            "[[daemons]]\nname = \"{name}\"\nhost = \"{}\"\n",
            self.var("DOCKER_C")
        )
    }

    pub fn daemon_b(&self, name: &str) -> String {
        self.daemon_b_with(
            name,
            self.var("TLS_CA"),
            self.var("TLS_CERT"),
            self.var("TLS_KEY"),
        )
    }

    /// The registry's current pid: read afresh, since tests restart it.
    pub fn registry_pid(&self) -> Option<u32> {
        std::fs::read_to_string(format!("{}/env", self.var("TESTBED_DIR")))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("REGISTRY_PID=")?.trim().parse().ok())
    }

    /// The docker CLI aimed at daemon A.
    pub fn cli_a(&self) -> DockerCli {
        DockerCli {
            program: self.var("DOCKER_CLI").to_owned(),
            args: vec!["-H".into(), self.var("DOCKER_A").into()],
        }
    }

    /// Docker 26's own CLI aimed at daemon C.
    pub fn cli_c(&self) -> DockerCli {
        DockerCli {
            program: self.var("DOCKER_C_CLI").to_owned(),
            args: vec!["-H".into(), self.var("DOCKER_C").into()],
        }
    }

    /// The docker CLI aimed at daemon B over mutual TLS.
    pub fn cli_b(&self) -> DockerCli {
        DockerCli {
            program: self.var("DOCKER_CLI").to_owned(),
            args: vec![
                "-H".into(),
                self.var("DOCKER_B").into(),
                "--tlsverify".into(),
                format!("--tlscacert={}", self.var("TLS_CA")),
                format!("--tlscert={}", self.var("TLS_CERT")),
                format!("--tlskey={}", self.var("TLS_KEY")),
            ],
        }
    }
}

/// The docker CLI with the flags that pick a daemon: ground truth.
#[derive(Debug, Clone)]
pub struct DockerCli {
    pub program: String,
    pub args: Vec<String>,
}

impl DockerCli {
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.program)
            .args(&self.args)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program));
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Distinct image ids `docker images` lists for these extra flags.
    pub fn image_ids(&self, filters: &[&str]) -> Vec<String> {
        let mut args = vec!["images", "--no-trunc", "--format", "{{.ID}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let mut ids: Vec<String> = self.run(&args).lines().map(str::to_owned).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The exact size in bytes of each image, summed.
    pub fn total_size(&self, ids: &[String]) -> u64 {
        if ids.is_empty() {
            return 0;
        }
        let mut args = vec!["image", "inspect", "--format", "{{.Size}}"];
        args.extend(ids.iter().map(String::as_str));
        self.run(&args)
            .lines()
            .map(|l| l.trim().parse::<u64>().expect("size is a number"))
            .sum()
    }

    /// Imports a tiny image with unique content (and busybox, so it can
    /// run) under `tag`, from files made in `dir`.
    pub fn import_tiny(&self, dir: &Path, tag: &str) {
        let root = dir.join(format!("rootfs-{}", tag.replace([':', '/'], "-")));
        std::fs::create_dir_all(root.join("bin")).expect("rootfs");
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("busybox (Debian package busybox-static; tests/run.sh installs it)");
        std::fs::write(root.join("tag"), tag).expect("write");
        let tar = root.with_extension("tar");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("tar")
            .success();
        assert!(ok, "tar failed");
        self.run(&["import", &tar.to_string_lossy(), tag]);
    }

    /// What `docker images` prints as each image's size, summed, and by how
    /// much that sum may miss the exact one: the CLI prints 3 significant
    /// digits (`3.07MB`), so each image may be off by half its last digit.
    pub fn listed_size(&self, ids: &[String]) -> (f64, f64) {
        let wanted: std::collections::BTreeSet<&str> = ids.iter().map(String::as_str).collect();
        let mut seen = std::collections::BTreeSet::new();
        let (mut sum, mut slack) = (0.0, 0.0);
        for line in self
            .run(&[
                "images",
                "-a",
                "--no-trunc",
                "--format",
                "{{.ID}} {{.Size}}",
            ])
            .lines()
        {
            let (id, size) = line.split_once(' ').expect("ID SIZE");
            // An image with several tags is listed once per tag.
            if !wanted.contains(id) || !seen.insert(id.to_owned()) {
                continue;
            }
            let (bytes, half_digit) = parse_human_size(size);
            sum += bytes;
            slack += half_digit;
        }
        assert_eq!(seen.len(), ids.len(), "docker images lists every image");
        (sum, slack)
    }

    /// `docker ps -a` counted by state.
    pub fn container_states(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for state in self.run(&["ps", "-a", "--format", "{{.State}}"]).lines() {
            *counts.entry(state.trim().to_owned()).or_insert(0) += 1;
        }
        counts
    }
}

/// A size as the docker CLI prints it with 3 significant digits
/// (`3.07MB`, `512kB`, `0B`; decimal units), as bytes, with half its last
/// digit: the most the printed number can be off.
pub fn parse_human_size(text: &str) -> (f64, f64) {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e')
        .unwrap_or_else(|| panic!("no unit in {text:?}"));
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        other => panic!("unknown unit {other:?} in {text:?}"),
    };
    if value == 0.0 {
        return (0.0, 0.0);
    }
    let last_digit = 10_f64.powf(value.abs().log10().floor() - 2.0);
    (value * scale, last_digit * scale / 2.0)
}

/// No byte count in the exposition is negative or a wrapped-around
/// unsigned number (anything from 2^63 up): checked on every series whose
/// name says bytes.
pub fn assert_byte_counts_sane(scrape: &Scrape) {
    let mut checked = 0;
    for (name, labels, value) in &scrape.samples {
        if !(name.ends_with("_bytes") || name.ends_with("_bytes_total")) {
            continue;
        }
        assert!(
            value.is_finite() && *value >= 0.0 && *value < 9.2e18,
            "{name}{labels:?} = {value}: a byte count must be neither negative nor wrapped around"
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "no byte series in the scrape:\n{}",
        scrape.text
    );
}

/// A free port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh directory for one test's files.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("dw-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A minimal HTTP/1.0 GET (so the answer is never chunked); returns
/// (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// One running dockwatch, killed when dropped.
#[derive(Debug)]
pub struct Dockwatch {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_dockwatch")
}

impl Dockwatch {
    /// Starts dockwatch with `body` as config.toml (a `[server]` table with a
    /// free port is added) and waits until `/-/ready`.
    pub fn start(body: &str) -> Self {
        let dw = Self::spawn(body, &[]);
        dw.wait_ready();
        dw
    }

    /// Starts without waiting, with extra environment variables.
    pub fn spawn(body: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let dir = temp_dir("dw");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{body}"),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.join("dockwatch.log")).expect("log file");
        let child = Command::new(binary())
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockwatch");
        Self { child, port, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockwatch.log")).unwrap_or_default()
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(self.port, "/-/ready") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dockwatch not ready within 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn scrape(&self) -> Scrape {
        let (status, body) = http_get(self.port, "/metrics").expect("scrape /metrics");
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Scrape::parse(&body)
    }

    /// Waits until `cond` holds on a scrape; returns that scrape.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Scrape) -> bool,
    ) -> Scrape {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.scrape();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last scrape:\n{}\nlog:\n{}",
                s.text,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn signal(&self, sig: &str) {
        kill(self.child.id(), sig);
    }
}

impl Drop for Dockwatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A parsed exposition.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or(f64::NAN),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once("=\"").expect("label");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            samples.push((name, labels, value));
        }
        Self {
            text: text.to_owned(),
            samples,
        }
    }

    /// The first series with `name` whose labels include `labels`.
    fn find(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<&(String, BTreeMap<String, String>, f64)> {
        self.samples.iter().find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
        })
    }

    /// The value of the series with `name` whose labels include `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.find(name, labels).map(|(_, _, v)| *v)
    }

    pub fn labels_of(
        &self,
        name: &str,
        labels: &[(&str, &str)],
    ) -> Option<BTreeMap<String, String>> {
        self.find(name, labels).map(|(_, l, _)| l.clone())
    }
}

/// A dockerd of the test's own (for tests that stop and restart a daemon).
#[derive(Debug)]
pub struct OwnDaemon {
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// More dockerd flags (say, `--debug`).
    pub extra_args: Vec<String>,
    /// The folder Debian 13's Docker is unpacked in (the bed's
    /// `DOCKER_C_ROOT`), for a Docker 26 on the containerd image store;
    /// `None` for the system's dockerd 20.10.
    pub modern_root: Option<PathBuf>,
}

impl OwnDaemon {
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// Starts one with more dockerd flags.
    pub fn start_with(dir: &Path, extra_args: &[&str]) -> Self {
        let mut d = Self {
            dir: dir.to_owned(),
            child: None,
            extra_args: extra_args.iter().map(|&a| a.to_owned()).collect(),
            modern_root: None,
        };
        d.restart();
        d
    }

    /// Starts one like the bed's daemon C: Debian 13's Docker 26 from
    /// `DOCKER_C_ROOT` (its containerd and shim first on PATH, the system's
    /// runc), on the containerd image store.
    pub fn start_containerd_store(dir: &Path, bed: &Testbed) -> Self {
        let mut d = Self {
            dir: dir.to_owned(),
            child: None,
            extra_args: Vec::new(),
            modern_root: Some(PathBuf::from(bed.var("DOCKER_C_ROOT"))),
        };
        d.restart();
        d
    }

    /// The image store this daemon uses.
    pub fn store(&self) -> Store {
        if self.modern_root.is_some() {
            Store::Containerd
        } else {
            Store::Classic
        }
    }

    /// Starts the daemon (again) and waits until `/_ping` answers.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("dockerd log");
        let mut cmd = Command::new("dockerd");
        if let Some(root) = &self.modern_root {
            let config = self.dir.join("daemon.json");
            std::fs::write(&config, r#"{"features": {"containerd-snapshotter": true}}"#)
                .expect("daemon.json");
            let path = std::env::var("PATH").unwrap_or_default();
            cmd = Command::new(root.join("usr/sbin/dockerd"));
            cmd.env(
                "PATH",
                format!(
                    "{}:{}:{path}",
                    root.join("usr/bin").display(),
                    root.join("usr/sbin").display()
                ),
            )
            .arg("--config-file")
            .arg(config);
        }
        let child = cmd
            .arg("--data-root")
            .arg(self.dir.join("data"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .arg("-H")
            .arg(self.host())
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd (is docker.io installed? tests/run.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.pings() {
            assert!(
                Instant::now() < deadline,
                "own dockerd did not answer /_ping within 60 s; log:\n{}",
                std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn pings(&self) -> bool {
        Command::new("curl")
            .args(["-sf", "--max-time", "2", "--unix-socket"])
            .arg(self.socket())
            .arg("http://d/_ping")
            .output()
            .is_ok_and(|o: Output| o.status.success() && o.stdout == b"OK")
    }

    /// Stops the daemon with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        self.stop();
        remove_daemon_dir(&self.dir);
    }
}
