//! Bad configurations, table-driven: each runs `dockwatch check-config
//! --config FILE` (the real binary, with an empty environment plus the
//! case's variables) and expects exit code 2, a line `  KEY: message` naming
//! the key (and the details the case lists), and no panic.
//!
//! "Unreadable" files: the tests run as root, and root reads a file of mode
//! 000 anyway, so an unreadable password file is a path that is a directory,
//! one that does not exist, or an empty file.
//!
//! Files named `@DIR@/...` are made fresh per case: `adir/` (a directory),
//! `empty` (0 bytes), `garbage` (not PEM, not JSON), `secret` (a password),
//! `fifo` (a named pipe no one writes to: reading it would block forever).
//! Every run must end within 5 s.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::temp_dir;

struct Case {
    name: &'static str,
    toml: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// The key the problem line starts with.
    key: &'static str,
    /// More text that line must hold (say, the unknown field's name).
    also: &'static [&'static str],
}

const fn case(name: &'static str, toml: &'static str, key: &'static str) -> Case {
    Case {
        name,
        toml,
        env: &[],
        key,
        also: &[],
    }
}

const fn case_also(
    name: &'static str,
    toml: &'static str,
    key: &'static str,
    also: &'static [&'static str],
) -> Case {
    Case {
        name,
        toml,
        env: &[],
        key,
        also,
    }
}

const fn case_env(
    name: &'static str,
    toml: &'static str,
    env: &'static [(&'static str, &'static str)],
    key: &'static str,
    also: &'static [&'static str],
) -> Case {
    Case {
        name,
        toml,
        env,
        key,
        also,
    }
}

const DAEMON_A: &str = "[[daemons]]\nname = \"a\"\nhost = \"unix:///var/run/docker.sock\"\n";

#[allow(clippy::too_many_lines)] // one table
fn cases() -> Vec<Case> {
    vec![
        // ---------------------------------------------------- wrong types
        case(
            "interval is a number",
            "[poll]\ninterval = 15\n",
            "poll.interval",
        ),
        case(
            "listen is a number",
            "[server]\nlisten = 9779\n",
            "server.listen",
        ),
        case(
            "concurrency is a string",
            "[prepull]\nconcurrency = \"two\"\n",
            "prepull.concurrency",
        ),
        case(
            "concurrency is negative",
            "[prepull]\nconcurrency = -1\n",
            "prepull.concurrency",
        ),
        case("daemons is a string", "daemons = \"a\"\n", "daemons"),
        case(
            "daemon name is a number",
            "[[daemons]]\nname = 1\nhost = \"unix:///a\"\n",
            "daemons[0].name",
        ),
        case(
            "image is a list",
            "[[prepull.images]]\nimage = [\"busybox\"]\n",
            "prepull.images[0].image",
        ),
        case(
            "filter values are a number",
            "[[image_filters]]\nname = \"f\"\nfilters = { dangling = 3 }\n",
            "image_filters[0].filters.dangling",
        ),
        case("poll is a string", "poll = \"15s\"\n", "poll"),
        // ---------------------------------------------------- unknown keys, every table
        case_also(
            "unknown top-level key",
            "bogus = 1\n",
            "bogus",
            &["unknown field"],
        ),
        case_also(
            "unknown table",
            "[serverr]\nlisten = \"0.0.0.0:1\"\n",
            "serverr",
            &["serverr"],
        ),
        case_also(
            "unknown key in [server]",
            "[server]\nport = 9779\n",
            "server.port",
            &["unknown field"],
        ),
        case_also(
            "unknown key in [poll]",
            "[poll]\nintervall = \"1s\"\n",
            "poll.intervall",
            &["unknown field"],
        ),
        case_also(
            "unknown key in [[daemons]]",
            "[[daemons]]\nname = \"a\"\nhost = \"unix:///a\"\nport = 1\n",
            "daemons[0].port",
            &["unknown field"],
        ),
        case_also(
            "unknown key in [daemons.tls]",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"/x\"\ncert = \"/y\"\nkey = \"/z\"\nverify = false\n",
            "daemons[0].tls.verify",
            &["unknown field"],
        ),
        case_also(
            "unknown key in [[image_filters]]",
            "[[image_filters]]\nname = \"f\"\nfilters = { dangling = [\"true\"] }\nfilter = 1\n",
            "image_filters[0].filter",
            &["unknown field"],
        ),
        case_also(
            "unknown key in [prepull]",
            "[prepull]\nimage = \"busybox\"\n",
            "prepull.image",
            &["unknown field"],
        ),
        case_also(
            "unknown key in [[prepull.images]]",
            "[[prepull.images]]\nimage = \"busybox\"\ntag = \"1\"\n",
            "prepull.images[0].tag",
            &["unknown field"],
        ),
        case_also(
            "unknown key in [[registries]] (an inline password)",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword = \"inline\"\n",
            "registries[0].password",
            &["unknown field"],
        ),
        // ---------------------------------------------------- durations
        case_also(
            "duration without a unit",
            "[poll]\ninterval = \"15\"\n",
            "poll.interval",
            &["15"],
        ),
        case(
            "duration is a word",
            "[poll]\ntimeout = \"soon\"\n",
            "poll.timeout",
        ),
        case(
            "negative duration",
            "[prepull]\ninterval = \"-1h\"\n",
            "prepull.interval",
        ),
        case(
            "fractional duration",
            "[poll]\nimages_interval = \"1.5s\"\n",
            "poll.images_interval",
        ),
        case(
            "duration with an unknown unit",
            "[poll]\ndisk_interval = \"1y\"\n",
            "poll.disk_interval",
        ),
        case(
            "empty duration",
            "[prepull]\nstall_timeout = \"\"\n",
            "prepull.stall_timeout",
        ),
        case(
            "duration that overflows",
            "[prepull]\ntimeout = \"99999999999999999999d\"\n",
            "prepull.timeout",
        ),
        case(
            "zero poll interval",
            "[poll]\ninterval = \"0\"\n",
            "poll.interval",
        ),
        case(
            "zero stall timeout",
            "[prepull]\nstall_timeout = \"0s\"\n",
            "prepull.stall_timeout",
        ),
        case(
            "timeout not below interval",
            "[poll]\ninterval = \"5s\"\ntimeout = \"5s\"\n",
            "poll.timeout",
        ),
        case(
            "images_interval below interval",
            "[poll]\ninterval = \"10s\"\ntimeout = \"1s\"\nimages_interval = \"5s\"\n",
            "poll.images_interval",
        ),
        case(
            "disk_interval below interval",
            "[poll]\ninterval = \"10s\"\ntimeout = \"1s\"\ndisk_interval = \"5s\"\n",
            "poll.disk_interval",
        ),
        case(
            "jitter not below the prepull interval",
            "[prepull]\ninterval = \"10s\"\njitter = \"10s\"\n",
            "prepull.jitter",
        ),
        // ---------------------------------------------------- listen address and URLs
        case(
            "listen without a port",
            "[server]\nlisten = \"nowhere\"\n",
            "server.listen",
        ),
        case(
            "listen port out of range",
            "[server]\nlisten = \"127.0.0.1:99999\"\n",
            "server.listen",
        ),
        case_also(
            "unknown scheme",
            "[[daemons]]\nname = \"a\"\nhost = \"ftp://x:21\"\n",
            "daemons[0].host",
            &["ftp://x:21"],
        ),
        case(
            "http:// instead of tcp://",
            "[[daemons]]\nname = \"a\"\nhost = \"http://127.0.0.1:2375\"\n",
            "daemons[0].host",
        ),
        case(
            "relative unix socket",
            "[[daemons]]\nname = \"a\"\nhost = \"unix://docker.sock\"\n",
            "daemons[0].host",
        ),
        case(
            "tcp without a port",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://build-01\"\n",
            "daemons[0].host",
        ),
        case(
            "tcp port 0",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:0\"\n",
            "daemons[0].host",
        ),
        case(
            "tcp port out of range",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:65536\"\n",
            "daemons[0].host",
        ),
        case(
            "tcp with a path",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376/v1.41\"\n",
            "daemons[0].host",
        ),
        case(
            "empty host",
            "[[daemons]]\nname = \"a\"\nhost = \"\"\n",
            "daemons[0].host",
        ),
        case("missing host", "[[daemons]]\nname = \"a\"\n", "daemons[0]"),
        // ---------------------------------------------------- the endpoint's TLS and auth
        case_also(
            "missing server certificate",
            "[server]\ntls_cert = \"/nonexistent/server.pem\"\ntls_key = \"/nonexistent/server-key.pem\"\n",
            "server.tls_cert",
            &["/nonexistent/server.pem"],
        ),
        case(
            "server certificate without a key",
            "[server]\ntls_cert = \"@DIR@/garbage\"\n",
            "server.tls_key",
        ),
        case(
            "server key without a certificate",
            "[server]\ntls_key = \"@DIR@/garbage\"\n",
            "server.tls_cert",
        ),
        case(
            "server certificate is a FIFO nobody writes to",
            "[server]\ntls_cert = \"@DIR@/fifo\"\ntls_key = \"@DIR@/garbage\"\n",
            "server.tls_cert",
        ),
        case(
            "basic auth password that is no bcrypt hash",
            "[server.basic_auth_users]\nprometheus = \"plain-text\"\n",
            "server.basic_auth_users.prometheus",
        ),
        case(
            "basic auth user name with a colon",
            "[server.basic_auth_users]\n\"a:b\" = \"$2y$05$abcdefghijklmnopqrstuu5Fq4l9b4J3n8QxR2iY0o1m7e8s9H9Vq\"\n",
            "server.basic_auth_users",
        ),
        case(
            "basic auth users is a list",
            "[server]\nbasic_auth_users = [\"prometheus\"]\n",
            "server.basic_auth_users",
        ),
        case(
            "enable_reload is a string",
            "[server]\nenable_reload = \"yes\"\n",
            "server.enable_reload",
        ),
        // ---------------------------------------------------- TLS files
        case_also(
            "missing TLS ca",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
            "daemons[0].tls.ca",
            &["/nonexistent/ca.pem"],
        ),
        case_also(
            "missing TLS cert",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
            "daemons[0].tls.cert",
            &["/nonexistent/cert.pem"],
        ),
        case_also(
            "missing TLS key",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
            "daemons[0].tls.key",
            &["/nonexistent/key.pem"],
        ),
        case(
            "TLS ca is a directory",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"@DIR@/adir\"\ncert = \"@DIR@/garbage\"\nkey = \"@DIR@/empty\"\n",
            "daemons[0].tls.ca",
        ),
        case(
            "TLS ca is a FIFO nobody writes to",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"@DIR@/fifo\"\ncert = \"@DIR@/garbage\"\nkey = \"@DIR@/empty\"\n",
            "daemons[0].tls.ca",
        ),
        case(
            "TLS cert is not PEM",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"@DIR@/adir\"\ncert = \"@DIR@/garbage\"\nkey = \"@DIR@/empty\"\n",
            "daemons[0].tls.cert",
        ),
        case(
            "TLS key is empty",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"@DIR@/adir\"\ncert = \"@DIR@/garbage\"\nkey = \"@DIR@/empty\"\n",
            "daemons[0].tls.key",
        ),
        case_also(
            "TLS table without key",
            "[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"/x\"\ncert = \"/y\"\n",
            "daemons[0].tls",
            &["key"],
        ),
        case(
            "TLS for a unix socket",
            "[[daemons]]\nname = \"a\"\nhost = \"unix:///a.sock\"\n[daemons.tls]\nca = \"/x\"\ncert = \"/y\"\nkey = \"/z\"\n",
            "daemons[0].tls",
        ),
        // ---------------------------------------------------- names
        case_also(
            "duplicate daemon names",
            "[[daemons]]\nname = \"a\"\nhost = \"unix:///a.sock\"\n[[daemons]]\nname = \"a\"\nhost = \"unix:///b.sock\"\n",
            "daemons[1].name",
            &["duplicate"],
        ),
        case(
            "empty daemon name",
            "[[daemons]]\nname = \"\"\nhost = \"unix:///a.sock\"\n",
            "daemons[0].name",
        ),
        case(
            "daemon name with a space",
            "[[daemons]]\nname = \"build 01\"\nhost = \"unix:///a.sock\"\n",
            "daemons[0].name",
        ),
        case(
            "duplicate filter group names",
            "[[image_filters]]\nname = \"f\"\nfilters = { dangling = [\"true\"] }\n[[image_filters]]\nname = \"f\"\nfilters = { dangling = [\"false\"] }\n",
            "image_filters[1].name",
        ),
        case(
            "filter group without filters",
            "[[image_filters]]\nname = \"f\"\nfilters = {}\n",
            "image_filters[0].filters",
        ),
        case(
            "filter without values",
            "[[image_filters]]\nname = \"f\"\nfilters = { dangling = [] }\n",
            "image_filters[0].filters.dangling",
        ),
        // ---------------------------------------------------- pre-pulls
        case(
            "empty image name",
            "[[prepull.images]]\nimage = \"\"\n",
            "prepull.images[0].image",
        ),
        case(
            "image name with upper case and a space",
            "[[prepull.images]]\nimage = \"Bad Name\"\n",
            "prepull.images[0].image",
        ),
        case(
            "image with a bad digest",
            "[[prepull.images]]\nimage = \"busybox@sha256:1234\"\n",
            "prepull.images[0].image",
        ),
        case(
            "image listed twice",
            "[[prepull.images]]\nimage = \"busybox\"\n[[prepull.images]]\nimage = \"busybox:latest\"\n",
            "prepull.images[1].image",
        ),
        case(
            "image for an unknown daemon",
            "[[daemons]]\nname = \"a\"\nhost = \"unix:///a.sock\"\n[[prepull.images]]\nimage = \"busybox\"\ndaemons = [\"b\"]\n",
            "prepull.images[0].daemons[0]",
        ),
        case(
            "image for no daemon",
            "[[prepull.images]]\nimage = \"busybox\"\ndaemons = []\n",
            "prepull.images[0].daemons",
        ),
        case(
            "concurrency 0",
            "[prepull]\nconcurrency = 0\n",
            "prepull.concurrency",
        ),
        case(
            "concurrency 17",
            "[prepull]\nconcurrency = 17\n",
            "prepull.concurrency",
        ),
        case_also(
            "missing docker config.json",
            "[prepull]\ndocker_config = \"/nonexistent/config.json\"\n",
            "prepull.docker_config",
            &["/nonexistent/config.json"],
        ),
        case(
            "docker config.json is a directory",
            "[prepull]\ndocker_config = \"@DIR@/adir\"\n",
            "prepull.docker_config",
        ),
        case(
            "docker config.json is not JSON",
            "[prepull]\ndocker_config = \"@DIR@/garbage\"\n",
            "prepull.docker_config",
        ),
        case(
            "docker config.json is a FIFO nobody writes to",
            "[prepull]\ndocker_config = \"@DIR@/fifo\"\n",
            "prepull.docker_config",
        ),
        // ---------------------------------------------------- registry credentials
        case_also(
            "password file does not exist",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword_file = \"/nonexistent/pass\"\n",
            "registries[0].password_file",
            &["/nonexistent/pass"],
        ),
        case(
            "password file is a directory (unreadable, even for root)",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword_file = \"@DIR@/adir\"\n",
            "registries[0].password_file",
        ),
        case(
            "password file is empty",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword_file = \"@DIR@/empty\"\n",
            "registries[0].password_file",
        ),
        case(
            "password file is a FIFO nobody writes to",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword_file = \"@DIR@/fifo\"\n",
            "registries[0].password_file",
        ),
        case(
            "identity token file is a directory",
            "[[registries]]\nserver = \"r.example\"\nidentity_token_file = \"@DIR@/adir\"\n",
            "registries[0].identity_token_file",
        ),
        case_also(
            "password variable not set",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword_env = \"DW_TEST_UNSET_PASSWORD\"\n",
            "registries[0].password_env",
            &["DW_TEST_UNSET_PASSWORD"],
        ),
        case(
            "username without a password",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\n",
            "registries[0].password_file",
        ),
        case(
            "password without a username",
            "[[registries]]\nserver = \"r.example\"\npassword_file = \"@DIR@/secret\"\n",
            "registries[0].username",
        ),
        case(
            "password file and variable both",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword_file = \"@DIR@/secret\"\npassword_env = \"HOME\"\n",
            "registries[0].password_env",
        ),
        case(
            "empty registry server",
            "[[registries]]\nserver = \"\"\nusername = \"u\"\npassword_file = \"@DIR@/secret\"\n",
            "registries[0].server",
        ),
        case(
            "registry listed twice",
            "[[registries]]\nserver = \"r.example\"\nusername = \"u\"\npassword_file = \"@DIR@/secret\"\n[[registries]]\nserver = \"r.example\"\nusername = \"v\"\npassword_file = \"@DIR@/secret\"\n",
            "registries[1].server",
        ),
        // ---------------------------------------------------- environment overrides
        case_env(
            "DOCKWATCH_POLL__INTERVAL=abc",
            "",
            &[("DOCKWATCH_POLL__INTERVAL", "abc")],
            "poll.interval",
            &["abc"],
        ),
        case_env(
            "env override beats a good file",
            "[poll]\ninterval = \"30s\"\n",
            &[("DOCKWATCH_POLL__TIMEOUT", "1x")],
            "poll.timeout",
            &["1x"],
        ),
        case_env(
            "DOCKWATCH_SERVER__LISTEN=nowhere",
            "",
            &[("DOCKWATCH_SERVER__LISTEN", "nowhere")],
            "server.listen",
            &[],
        ),
        case_env(
            "DOCKWATCH_PREPULL__CONCURRENCY=many",
            "",
            &[("DOCKWATCH_PREPULL__CONCURRENCY", "many")],
            "prepull.concurrency",
            &[],
        ),
        case_env(
            "DOCKWATCH_PREPULL__CONCURRENCY=99 (valid type, out of range)",
            "",
            &[("DOCKWATCH_PREPULL__CONCURRENCY", "99")],
            "prepull.concurrency",
            &[],
        ),
        case_env(
            "unknown key from the environment",
            "",
            &[("DOCKWATCH_POLL__INTERVALL", "1s")],
            "poll.intervall",
            &["unknown field", "DOCKWATCH_"],
        ),
        case_env(
            "unknown table from the environment",
            "",
            &[("DOCKWATCH_BOGUS", "1")],
            "bogus",
            &[],
        ),
        case_env(
            "DOCKER_HOST with a bad URL (no [[daemons]])",
            "",
            &[("DOCKER_HOST", "ftp://x:1")],
            "daemons[0].host",
            &["ftp://x:1"],
        ),
        case_env(
            "DOCKER_TLS_VERIFY with missing certificates",
            "",
            &[
                ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/nonexistent/certs"),
            ],
            "daemons[0].tls.ca",
            &["/nonexistent/certs/ca.pem"],
        ),
    ]
}

/// How long one `check-config` may take; it reads a few small files.
const DEADLINE: Duration = Duration::from_secs(5);

/// Runs `dockwatch check-config --config FILE` in `dir`, with an
/// environment of only `env`; returns (exit code, stdout + stderr). A run
/// that does not end within [`DEADLINE`] is killed and has no exit code.
fn check_config(dir: &Path, config: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out_path = dir.join("check-config.out");
    let out_file = std::fs::File::create(&out_path).expect("output file");
    let err_file = out_file.try_clone().expect("output file");
    let mut child = Command::new(common::binary())
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .spawn()
        .expect("run dockwatch check-config");
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut text =
        String::from_utf8_lossy(&std::fs::read(&out_path).unwrap_or_default()).into_owned();
    if code.is_none() {
        let _ = writeln!(text, "\n(killed: no exit within {DEADLINE:?})");
    }
    (code, text)
}

/// The fixtures `@DIR@` names.
fn fixtures(dir: &Path) {
    std::fs::create_dir_all(dir.join("adir")).expect("mkdir");
    std::fs::write(dir.join("empty"), "").expect("write");
    std::fs::write(dir.join("garbage"), b"\xff\xfe not PEM, not JSON\n").expect("write");
    std::fs::write(dir.join("secret"), "hunter2\n").expect("write");
    let fifo = Command::new("mkfifo")
        .arg(dir.join("fifo"))
        .status()
        .expect("mkfifo");
    assert!(fifo.success(), "mkfifo failed");
}

/// What is wrong with the outcome of one case, if anything.
fn judge(c: &Case, code: Option<i32>, out: &str) -> Option<String> {
    let mut wrong = Vec::new();
    if code != Some(2) {
        wrong.push(format!("exit code {code:?}, not 2"));
    }
    if out.contains("panicked") || out.contains("RUST_BACKTRACE") {
        wrong.push("it panicked".to_owned());
    }
    let prefix = format!("{}: ", c.key);
    let line = out
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(&prefix) && c.also.iter().all(|a| l.contains(a)));
    match line {
        None => wrong.push(format!("no line `  {}: ...` holding {:?}", c.key, c.also)),
        Some(l) if l.len() <= prefix.len() + 3 => wrong.push(format!("no message: {l:?}")),
        Some(_) => {}
    }
    if wrong.is_empty() {
        None
    } else {
        Some(format!(
            "case {:?}: {}\n--- config ---\n{}--- env {:?} ---\n--- output ---\n{out}",
            c.name,
            wrong.join("; "),
            c.toml,
            c.env
        ))
    }
}

#[test]
fn every_bad_config_exits_two_naming_its_key() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let dir = temp_dir("badcfg");
        fixtures(&dir);
        let config = dir.join(format!("case-{i}.toml"));
        let text = c.toml.replace("@DIR@", &dir.display().to_string());
        std::fs::write(&config, text).expect("write config");
        let (code, out) = check_config(&dir, &config, c.env);
        if let Some(f) = judge(c, code, &out) {
            failures.push(f);
        }
        std::fs::remove_dir_all(&dir).ok();
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad configs were not reported right:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "bad_config: {} cases, each exit 2 naming its key",
        cases.len()
    );
}

/// The config path itself: missing, a directory.
#[test]
fn a_config_path_that_is_no_file_names_config() {
    let dir = temp_dir("badcfg-path");
    for path in [dir.join("missing.toml"), dir.clone()] {
        let (code, out) = check_config(&dir, &path, &[]);
        assert_eq!(code, Some(2), "{out}");
        assert!(
            out.lines().any(|l| l.trim_start().starts_with("--config: ")
                && l.contains(&path.display().to_string())),
            "{out}"
        );
        assert!(!out.contains("panicked"), "{out}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A good config (daemon A only) passes with this same harness
/// (so the table above fails for its own reasons, not the harness's).
#[test]
fn the_harness_accepts_a_good_config() {
    let dir = temp_dir("badcfg-good");
    let config = dir.join("good.toml");
    std::fs::write(&config, format!("[poll]\ninterval = \"30s\"\n{DAEMON_A}")).expect("write");
    let (code, out) = check_config(&dir, &config, &[]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(code, Some(0), "{out}");
}
