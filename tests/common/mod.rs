//! Shared helpers for the integration tests: the test bed started by
//! `tests/run.sh`, a dockwatch process per test, scraping, and the docker CLI
//! as ground truth.
#![allow(dead_code, clippy::missing_panics_doc, clippy::must_use_candidate)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One `#[test]` per case, each calling the same story with its own
/// arguments: `test_cases!(story { name_one(A); name_two(B); })` stands for
/// `#[test] fn name_one() { story(A); }` and so on (doc comments and other
/// attributes before a case go on its test).
#[allow(unused_macros)]
macro_rules! test_cases {
    ($story:path { $($(#[$meta:meta])* $name:ident($($arg:expr),* $(,)?);)* }) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                $story($($arg),*);
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use test_cases;

pub mod build_image;
pub mod gate;
pub mod prometheus;
pub mod slow_link;
pub mod variant;

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

/// The tests of one file that share a daemon's state (an image store, a
/// registry) take turns: each holds this guard while it runs. One lock per
/// test file (each file is its own binary), and a failed test does not
/// poison it for the next.
pub fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Fails unless `text` holds each of `needles`; `say(needle)` is the
/// failure's message.
pub fn assert_holds_all(text: &str, needles: &[&str], say: impl Fn(&str) -> String) {
    for needle in needles {
        assert!(text.contains(needle), "{}", say(needle));
    }
}

/// [`wait_until`] polling every 200 ms; on time-out the failure is `what`
/// followed by the file at `log`.
pub fn wait_or_show_log(timeout: Duration, cond: impl FnMut() -> bool, what: &str, log: &Path) {
    wait_until(timeout, Duration::from_millis(200), cond, || {
        format!("{what}{}", std::fs::read_to_string(log).unwrap_or_default())
    });
}

/// Waits until `cond` holds, checking every `every`; fails the test with
/// `fail()` once `timeout` has passed.
pub fn wait_until(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
    fail: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "{}", fail());
        std::thread::sleep(every);
    }
}

/// Waits up to `within` for `child` to exit; `None` if it still runs (it is
/// left running).
pub fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills and reaps a child; for `Drop`, so nothing is asserted.
pub fn reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What a finished command printed: stdout, then stderr.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails the test unless the command succeeded, with what it printed.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        output_text(out)
    );
}

/// The `[poll]` table of the tests that want quick polls.
pub const FAST_POLL: &str = "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\n";

/// TOML for one daemon at `host`.
pub fn daemon_toml(name: &str, host: &str) -> String {
    format!("[[daemons]]\nname = \"{name}\"\nhost = \"{host}\"\n")
}

/// TOML for one daemon at `host` over mutual TLS.
pub fn tls_daemon_toml(name: &str, host: &str, ca: &str, cert: &str, key: &str) -> String {
    format!(
        "{}[daemons.tls]\nca = \"{ca}\"\ncert = \"{cert}\"\nkey = \"{key}\"\n",
        daemon_toml(name, host)
    )
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
                "DW_TESTBED is not set: these tests need the real test bed (three dockerd, Podman, \
                 two registries). Run the whole suite with `tests/run.sh`, or start the bed with \
                 `tests/testbed.sh up DIR` and set DW_TESTBED=DIR/env. `tests/run.sh --fast` runs \
                 what needs no bed (`cargo test --lib` and the bed-free test files)."
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
        daemon_toml(name, self.var("DOCKER_A"))
    }

    /// TOML for the mutual-TLS daemon B with the given CA, cert and key.
    pub fn daemon_b_with(&self, name: &str, ca: &str, cert: &str, key: &str) -> String {
        tls_daemon_toml(name, self.var("DOCKER_B"), ca, cert, key)
    }

    /// TOML for daemon C: Docker 26 on the containerd image store.
    pub fn daemon_c(&self, name: &str) -> String {
        daemon_toml(name, self.var("DOCKER_C"))
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

    /// The docker CLI aimed at the daemon (or Podman service) at `host`.
    pub fn cli_at(&self, host: &str) -> DockerCli {
        DockerCli {
            program: self.var("DOCKER_CLI").to_owned(),
            args: vec!["-H".into(), host.into()],
        }
    }

    /// The docker CLI aimed at daemon A.
    pub fn cli_a(&self) -> DockerCli {
        self.cli_at(self.var("DOCKER_A"))
    }

    /// Docker 26's own CLI aimed at daemon C.
    pub fn cli_c(&self) -> DockerCli {
        self.cli_for(Store::Containerd, self.var("DOCKER_C"))
    }

    /// The CLI that goes with a daemon's store, aimed at `host`: the bed's
    /// docker CLI for dockerd 20.10, Docker 26's own for Docker 26.
    pub fn cli_for(&self, store: Store, host: &str) -> DockerCli {
        match store {
            Store::Classic => self.cli_at(host),
            Store::Containerd => DockerCli {
                program: self.var("DOCKER_C_CLI").to_owned(),
                args: vec!["-H".into(), host.into()],
            },
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
    /// Runs the CLI and returns its stdout; fails the test unless it succeeded.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.try_run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI without asserting success (for cleanup, probes, and
    /// commands whose failure is the point).
    pub fn try_run(&self, args: &[&str]) -> Output {
        Command::new(&self.program)
            .args(&self.args)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program))
    }

    /// `docker rmi -f` of each image; an absent image is fine (this only
    /// makes the next pull a cold one, or cleans up).
    pub fn rmi_f(&self, images: &[&str]) {
        for image in images {
            let _ = self.try_run(&["rmi", "-f", image]);
        }
    }

    /// Whether `docker image inspect IMAGE` finds it.
    pub fn has_image(&self, image: &str) -> bool {
        self.try_run(&["image", "inspect", "--format", "{{.Id}}", image])
            .status
            .success()
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

    /// Imports a tiny image as `tag` and runs a container of it created
    /// from its image ID: dockerd lists it by that ID, so dockwatch inspects
    /// it once to learn it was not created from a tag.
    pub fn run_by_image_id(&self, dir: &Path, tag: &str) {
        self.import_tiny(dir, tag);
        let id = self.image_id(tag).expect("the imported image");
        self.run(&[
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

    /// Imports a tiny image with unique content (and busybox, so it can
    /// run) under `tag`, from files made in `dir`.
    pub fn import_tiny(&self, dir: &Path, tag: &str) {
        let root = dir.join(format!("rootfs-{}", tag.replace([':', '/'], "-")));
        std::fs::create_dir_all(root.join("bin")).expect("rootfs");
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("busybox (Debian package busybox-static; tests/run.sh installs it)");
        std::fs::write(root.join("tag"), tag).expect("write");
        self.import_root(&root, &root.with_extension("tar"), tag);
    }

    /// Packs the directory `root` into the file `tar` and imports it as
    /// the image `tag`.
    pub fn import_root(&self, root: &Path, tar: &Path, tag: &str) {
        let ok = Command::new("tar")
            .arg("-C")
            .arg(root)
            .arg("-cf")
            .arg(tar)
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
    let (value, scale) = split_human_size(text);
    if value == 0.0 {
        return (0.0, 0.0);
    }
    let last_digit = 10_f64.powf(value.abs().log10().floor() - 2.0);
    (value * scale, last_digit * scale / 2.0)
}

/// A size as the docker CLI prints it, as its number and the bytes of its
/// unit: decimal units (`3.07MB`) and, for memory, binary ones (`40.61MiB`).
pub fn split_human_size(text: &str) -> (f64, f64) {
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
        "KiB" => 1024.0,
        "MiB" => 1_048_576.0,
        "GiB" => 1_073_741_824.0,
        other => panic!("unknown unit {other:?} in {text:?}"),
    };
    (value, scale)
}

/// The requests dockerd's `--debug` log records after byte `from`, as
/// (method, path, the whole line), from its `Calling METHOD /path` lines.
pub fn dockerd_calls(log: &str, from: usize) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for line in log[from..].lines() {
        let Some(call) = line.split("msg=\"Calling ").nth(1) else {
            continue;
        };
        // The message ends at its closing quote: Docker 26 logs more fields
        // after it (`spanID=... traceID=...`), 20.10 none.
        let mut words = call
            .split('"')
            .next()
            .unwrap_or_default()
            .split_whitespace();
        if let (Some(method), Some(path)) = (words.next(), words.next()) {
            out.push((method.to_owned(), path.to_owned(), line.to_owned()));
        }
    }
    out
}

/// `dockwatch_api_request_duration_seconds_count` per endpoint of `daemon`.
pub fn api_counts(s: &Scrape, daemon: &str) -> BTreeMap<String, f64> {
    s.samples
        .iter()
        .filter(|(n, l, _)| {
            n == "dockwatch_api_request_duration_seconds_count"
                && l.get("daemon").is_some_and(|d| d == daemon)
        })
        .map(|(_, l, v)| (l["endpoint"].clone(), *v))
        .collect()
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
        Self::spawn_via(body, env, &[])
    }

    /// [`Self::spawn`] through a wrapper that execs dockwatch (same pid),
    /// e.g. `["prlimit", "--nofile=1024:1024"]`; none when `wrapper` is empty.
    pub fn spawn_via(body: &str, env: &[(&str, &str)], wrapper: &[&str]) -> Self {
        let port = free_port();
        let dir = temp_dir("dw");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{body}"),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.join("dockwatch.log")).expect("log file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn dockwatch (through {wrapper:?}): {e}"));
        Self { child, port, dir }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockwatch.log")).unwrap_or_default()
    }

    pub fn wait_ready(&self) {
        wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || matches!(http_get(self.port, "/-/ready"), Ok((200, _))),
            || format!("dockwatch not ready within 30 s; log:\n{}", self.log()),
        );
    }

    pub fn scrape(&self) -> Scrape {
        scrape(self.port)
    }

    /// `/pulls` as JSON; `None` if it does not answer 200.
    pub fn pulls(&self) -> Option<Value> {
        let (status, body) = http_get(self.port, "/pulls").ok()?;
        (status == 200).then(|| serde_json::from_str(&body).expect("/pulls is JSON"))
    }

    /// Polls `/pulls` (every 5 ms, so short phases are seen) until `cond`
    /// holds for the entry of `image` on `daemon`; returns that entry. Fails
    /// with "`what` within `timeout`" and the log.
    pub fn wait_for_pull(
        &self,
        daemon: &str,
        image: &str,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut found = Value::Null;
        wait_until(
            timeout,
            Duration::from_millis(5),
            || {
                let Some(json) = self.pulls() else {
                    return false;
                };
                let entry = &json["daemons"][daemon][image];
                let done = cond(entry);
                if done {
                    found = entry.clone();
                }
                done
            },
            || format!("{what} within {timeout:?}:\n{}", self.log()),
        );
        found
    }

    /// Waits (up to 60 s) until a pre-pull of `image` on `daemon` runs and
    /// has listed its layers.
    pub fn wait_for_layers(&self, daemon: &str, image: &str) {
        self.wait_for_pull(
            daemon,
            image,
            "the pull never started",
            Duration::from_secs(60),
            |entry| !running_layers(entry).is_empty(),
        );
    }

    /// Waits up to `within` for dockwatch to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, within)
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
        reap(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// GET `/metrics` on 127.0.0.1:`port`; fails the test unless it answers 200.
pub fn scrape(port: u16) -> Scrape {
    let (status, body) = http_get(port, "/metrics").expect("scrape /metrics");
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    Scrape::parse(&body)
}

/// Scrapes of `/metrics` that keep count and the worst latency, for tests
/// that hammer it while something goes wrong.
#[derive(Debug, Default)]
pub struct TimedScrapes {
    pub worst: Duration,
    pub count: u32,
}

impl TimedScrapes {
    /// GET `/metrics`; fails the test unless it answers 200, saying `when()`.
    pub fn scrape(&mut self, port: u16, when: impl Fn() -> String) -> Scrape {
        let t = Instant::now();
        let (status, body) = http_get(port, "/metrics").expect("scrape /metrics");
        self.worst = self.worst.max(t.elapsed());
        self.count += 1;
        assert_eq!(status, 200, "/metrics answered {status} {}: {body}", when());
        Scrape::parse(&body)
    }
}

/// The words of one field of `/proc/PID/status` (`VmRSS`, `Threads`, `Uid`,
/// ...); `None` if the process or the field is not there.
pub fn proc_status(pid: u32, field: &str) -> Option<Vec<String>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let prefix = format!("{field}:");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
}

/// The statuses of the layers of the running pull in a `/pulls` entry
/// (empty when no pull runs or it has not listed its layers yet).
pub fn running_layers(entry: &Value) -> Vec<String> {
    entry["running"]["progress"]["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| l["status"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
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

    /// The sum of every series with `name` whose labels include `labels`
    /// (0 if there is none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// `dockwatch_daemon_up` of `daemon`.
    pub fn up(&self, daemon: &str) -> Option<f64> {
        self.get("dockwatch_daemon_up", &[("daemon", daemon)])
    }

    /// `dockwatch_daemon_last_success_timestamp_seconds` of `daemon`.
    pub fn last_success(&self, daemon: &str) -> Option<f64> {
        self.get(
            "dockwatch_daemon_last_success_timestamp_seconds",
            &[("daemon", daemon)],
        )
    }

    /// Pre-pulls of `image` on `daemon` that ended with `result` (0 if none).
    pub fn pulls(&self, daemon: &str, image: &str, result: &str) -> f64 {
        self.get(
            "dockwatch_image_pulls_total",
            &[("daemon", daemon), ("image", image), ("result", result)],
        )
        .unwrap_or(0.0)
    }

    /// Failed pre-pulls of `image` on `daemon` for `reason` (0 if none).
    pub fn pull_failures(&self, daemon: &str, image: &str, reason: &str) -> f64 {
        self.get(
            "dockwatch_image_pull_failures_total",
            &[("daemon", daemon), ("image", image), ("reason", reason)],
        )
        .unwrap_or(0.0)
    }

    /// The failure reasons counted (above 0) for `image` on `daemon`.
    pub fn pull_failure_reasons(&self, daemon: &str, image: &str) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .filter(|(n, l, v)| {
                n == "dockwatch_image_pull_failures_total"
                    && l.get("daemon").is_some_and(|d| d == daemon)
                    && l.get("image").is_some_and(|i| i == image)
                    && *v > 0.0
            })
            .map(|(_, l, v)| (l["reason"].clone(), *v))
            .collect()
    }
}

/// A dockerd of the test's own (for tests that stop and restart a daemon).
#[derive(Debug)]
pub struct OwnDaemon {
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// More dockerd flags (say, `--debug`).
    pub extra_args: Vec<String>,
    /// Folders whose dockerd, containerd and shim run instead of the
    /// system's: first on the daemon's PATH, dockerd taken from the first
    /// that holds one. Empty: the system's dockerd 20.10.
    pub bin_dirs: Vec<PathBuf>,
    /// Its image store (the containerd one is turned on by the
    /// `--config-file` in `extra_args`).
    pub store: Store,
    /// Where it listens: `dir/docker.sock` unless started on another path.
    pub socket: PathBuf,
}

impl OwnDaemon {
    pub fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// Starts one with more dockerd flags.
    pub fn start_with(dir: &Path, extra_args: &[&str]) -> Self {
        Self::launch(
            dir,
            Store::Classic,
            Vec::new(),
            extra_args,
            &dir.join("docker.sock"),
        )
    }

    /// Starts one like the bed's daemon C: Debian 13's Docker 26 (API 1.45)
    /// from `DOCKER_C_ROOT`, unpacked by `tests/testbed.sh install` (its
    /// containerd 1.7 and shim first on PATH, the system's runc), on the
    /// containerd image store, the store Docker 29 uses by default.
    pub fn start_containerd_store(dir: &Path) -> Self {
        Self::start_on(dir, Store::Containerd, &Testbed::get(), &[])
    }

    /// Starts one on either store (dockerd 20.10 on the classic one, Docker
    /// 26 on the containerd one) with more dockerd flags.
    pub fn start_on(dir: &Path, store: Store, bed: &Testbed, extra_args: &[&str]) -> Self {
        Self::start_on_socket(dir, store, bed, extra_args, &dir.join("docker.sock"))
    }

    /// The same, listening on `socket` rather than in its own folder: say,
    /// where another daemon of the test listened before (an upgrade in
    /// place). Its data, exec root, pidfile and log stay in `dir`.
    pub fn start_on_socket(
        dir: &Path,
        store: Store,
        bed: &Testbed,
        extra_args: &[&str],
        socket: &Path,
    ) -> Self {
        let bin_dirs = match store {
            Store::Classic => Vec::new(),
            Store::Containerd => {
                let root = Path::new(bed.var("DOCKER_C_ROOT"));
                vec![root.join("usr/bin"), root.join("usr/sbin")]
            }
        };
        Self::launch(dir, store, bin_dirs, extra_args, socket)
    }

    fn launch(
        dir: &Path,
        store: Store,
        bin_dirs: Vec<PathBuf>,
        extra_args: &[&str],
        socket: &Path,
    ) -> Self {
        std::fs::create_dir_all(dir).expect("daemon dir");
        let mut args: Vec<String> = extra_args.iter().map(|&a| a.to_owned()).collect();
        if store == Store::Containerd {
            let config = dir.join("daemon.json");
            std::fs::write(&config, r#"{"features": {"containerd-snapshotter": true}}"#)
                .expect("daemon.json");
            args.push(format!("--config-file={}", config.display()));
        }
        let mut d = Self {
            dir: dir.to_owned(),
            child: None,
            extra_args: args,
            bin_dirs,
            store,
            socket: socket.to_owned(),
        };
        d.restart();
        d
    }

    /// The image store this daemon uses.
    pub fn store(&self) -> Store {
        self.store
    }

    /// Starts the daemon (again) and waits until `/_ping` answers.
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("dockerd.log"))
            .expect("dockerd log");
        let dockerd = self
            .bin_dirs
            .iter()
            .map(|d| d.join("dockerd"))
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("dockerd"));
        let mut command = Command::new(dockerd);
        if !self.bin_dirs.is_empty() {
            let mut path: Vec<String> = self
                .bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            path.push(std::env::var("PATH").unwrap_or_default());
            command.env("PATH", path.join(":"));
        }
        let child = command
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
        wait_or_show_log(
            Duration::from_secs(60),
            || self.pings(),
            "own dockerd did not answer /_ping within 60 s; log:\n",
            &self.dir.join("dockerd.log"),
        );
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

/// A dockerd of the test's own in `scratch/d`, with a tiny image `image`
/// imported, and the docker CLI aimed at it. Bind them in this order
/// (`let (dir, own, cli) = ...`) so the daemon stops before its directory goes.
pub fn own_daemon_with_image(
    bed: &Testbed,
    tag: &str,
    image: &str,
) -> (Scratch, OwnDaemon, DockerCli) {
    own_daemon_with_image_on(bed, Store::Classic, tag, image)
}

/// The same on either image store: dockerd 20.10 (classic) or Docker 26 on
/// the containerd store, with the CLI that goes with it.
pub fn own_daemon_with_image_on(
    bed: &Testbed,
    store: Store,
    tag: &str,
    image: &str,
) -> (Scratch, OwnDaemon, DockerCli) {
    let dir = Scratch::new(tag);
    std::fs::create_dir_all(dir.0.join("d")).expect("daemon dir");
    let own = OwnDaemon::start_on(&dir.0.join("d"), store, bed, &[]);
    let cli = bed.cli_for(store, &own.host());
    cli.import_tiny(&dir.0, image);
    (dir, own, cli)
}

impl Drop for OwnDaemon {
    fn drop(&mut self) {
        self.stop();
        remove_daemon_dir(&self.dir);
    }
}

/// Loads `url` in a real headless Chromium (Debian's package) with `args`
/// (say, `--dump-dom`), `budget_ms` of virtual time for its scripts; fails
/// on any console message. Returns what it printed (the DOM for
/// `--dump-dom`).
#[allow(dead_code)] // not every test binary draws pages
pub fn chromium(args: &[&str], url: &str, budget_ms: u32) -> String {
    let profile = temp_dir("chromium");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(args)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium (Debian package chromium; tests/run.sh installs it)");
    std::fs::remove_dir_all(&profile).ok();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages on {url}:\n{}",
        console.join("\n")
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
