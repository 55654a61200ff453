//! Bad configurations, table-driven: each must be refused with exit code 2
//! and a problem line `  KEY: message` naming the key (and the details the
//! case lists), without a panic, within 5 s.
//!
//! The table is checked in-process, through the public loader
//! `dockwatch::config::load::load_with_env` (what `check-config` calls), with the
//! case's variables as the docker CLI's environment (`DOCKER_HOST`, ...);
//! its error is rendered as `check-config` prints it and judged like the
//! binary's output. The loader reads the `DOCKWATCH_*` overrides from the
//! process environment, which the tests of this file share as threads, so
//! the cases that set them run the real binary instead (`dockwatch
//! check-config --config FILE` with an empty environment plus the case's
//! variables), as do a few cases end to end, the config paths that are no
//! file, and a good config.
//!
//! "Unreadable" files: the tests run as root, and root reads a file of mode
//! 000 anyway, so an unreadable password file is a path that is a directory,
//! one that does not exist, or an empty file.
//!
//! Files named `@DIR@/...` are made fresh per case: `adir/` (a directory),
//! `empty` (0 bytes), `garbage` (not PEM, not JSON), `secret` (a password),
//! `fifo` (a named pipe no one writes to: reading it would block forever).

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Scratch, reap, wait_exit};
use dockwatch::config::load::load_with_env;

struct Case {
    name: &'static str,
    toml: &'static str,
    env: &'static [(&'static str, &'static str)],
    /// The key the problem line starts with.
    key: &'static str,
    /// More text that line must hold (say, the unknown field's name).
    also: &'static [&'static str],
}

impl Case {
    /// Whether the case sets `DOCKWATCH_*` overrides, which the loader
    /// reads from the process environment: then it runs the binary.
    fn needs_own_process(&self) -> bool {
        self.env.iter().any(|(k, _)| k.starts_with("DOCKWATCH_"))
    }
}

const fn case(name: &'static str, toml: &'static str, key: &'static str) -> Case {
    case_env(name, toml, &[], key, &[])
}

const fn case_also(
    name: &'static str,
    toml: &'static str,
    key: &'static str,
    also: &'static [&'static str],
) -> Case {
    case_env(name, toml, &[], key, also)
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
            "check interval below a second",
            "[prepull]\ncheck_interval = \"500ms\"\n",
            "prepull.check_interval",
        ),
        case(
            "check interval not a duration",
            "[prepull]\ncheck_interval = \"often\"\n",
            "prepull.check_interval",
        ),
        case(
            "a window with an hour 24",
            "[prepull]\nwindows = [\"22:00-24:00\"]\n",
            "prepull.windows[0]",
        ),
        case(
            "a window in an unknown zone",
            "[prepull]\nwindows = [\"02:00-05:00\", \"02:00-05:00 Europe/Atlantis\"]\n",
            "prepull.windows[1]",
        ),
        case(
            "an empty window",
            "[prepull]\nwindows = [\"03:00-03:00\"]\n",
            "prepull.windows[0]",
        ),
        case(
            "windows is a string",
            "[prepull]\nwindows = \"02:00-05:00\"\n",
            "prepull.windows",
        ),
        case(
            "timeout not below interval",
            "[poll]\ninterval = \"5s\"\ntimeout = \"5s\"\n",
            "poll.timeout",
        ),
        case(
            "no Docker calls at all",
            "[poll]\nmax_concurrent_calls = 0\n",
            "poll.max_concurrent_calls",
        ),
        case(
            "calls at once is a word",
            "[poll]\nmax_concurrent_calls = \"many\"\n",
            "poll.max_concurrent_calls",
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
        // ---------------------------------------------------- pruning
        case_also(
            "unknown key in [prune]",
            "[prune]\nolder = \"1d\"\n",
            "prune.older",
            &["unknown field"],
        ),
        case_also(
            "unknown key in [prune.when]",
            "[prune]\nwhen = { free_below = \"1GiB\" }\n",
            "prune.when.free_below",
            &["unknown field"],
        ),
        case_also(
            "prune filter key the Engine does not know",
            "[prune]\nfilters = { lable = [\"ci.cache=true\"] }\n",
            "prune.filters.lable",
            &["\"lable\" is not an image filter", "label"],
        ),
        case_also(
            "prune filter that would list tagged images",
            "[prune]\nfilters = { dangling = [\"false\"] }\n",
            "prune.filters.dangling",
            &["dangling=true"],
        ),
        case(
            "prune filter without values",
            "[prune]\nfilters = { label = [] }\n",
            "prune.filters.label",
        ),
        case_also(
            "reclaimable_above is no size",
            "[prune]\nwhen = { reclaimable_above = \"10 gigs\" }\n",
            "prune.when.reclaimable_above",
            &["10 gigs"],
        ),
        case_also(
            "reclaimable_above without /system/df",
            "[poll]\ndisk_interval = \"0\"\n[prune]\nwhen = { reclaimable_above = \"10GiB\" }\n",
            "prune.when.reclaimable_above",
            &["poll.disk_interval"],
        ),
        case(
            "prune interval of 0",
            "[prune]\ninterval = \"0s\"\n",
            "prune.interval",
        ),
        case(
            "prune jitter not below its interval",
            "[prune]\ninterval = \"1h\"\njitter = \"2h\"\n",
            "prune.jitter",
        ),
        case(
            "older_than is no duration",
            "[prune]\nolder_than = \"a day\"\n",
            "prune.older_than",
        ),
        case(
            "max_per_round of 0",
            "[prune]\nmax_per_round = 0\n",
            "prune.max_per_round",
        ),
        case(
            "enabled is a string",
            "[prune]\nenabled = \"yes\"\n",
            "prune.enabled",
        ),
        case_env(
            "DOCKWATCH_PRUNE__WHEN__RECLAIMABLE_ABOVE=lots",
            "",
            &[("DOCKWATCH_PRUNE__WHEN__RECLAIMABLE_ABOVE", "lots")],
            "prune.when.reclaimable_above",
            &["lots"],
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

/// How long one check may take; it reads a few small files.
const DEADLINE: Duration = Duration::from_secs(5);

/// The table as it stood when it moved in-process: it may grow, never shrink.
const CASES_AT_LEAST: usize = 98;

/// Table cases that also run through the binary, end to end: an unknown
/// key (figment's error), a missing file (validation), and a FIFO that
/// would block a reader forever.
const END_TO_END: [&str; 3] = [
    "unknown key in [server]",
    "password file does not exist",
    "TLS ca is a FIFO nobody writes to",
];

/// How a check ended: the exit code (`check-config`'s, or what it would be
/// for the loader's result), and what it printed.
struct Outcome {
    code: Option<i32>,
    out: String,
}

/// Runs `dockwatch check-config --config FILE` in `dir`, with an
/// environment of only `env`. A run that does not end within [`DEADLINE`]
/// is killed and has no exit code.
fn check_config(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Outcome {
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
    let status = wait_exit(&mut child, DEADLINE);
    if status.is_none() {
        reap(&mut child);
    }
    let code = status.and_then(|s| s.code());
    let mut out =
        String::from_utf8_lossy(&std::fs::read(&out_path).unwrap_or_default()).into_owned();
    if code.is_none() {
        let _ = writeln!(out, "\n(killed: no exit within {DEADLINE:?})");
    }
    Outcome { code, out }
}

/// The loader on `config`, in a thread of its own (a read that blocks must
/// not hang the test), with `env` as the docker CLI's environment. Its
/// result as `check-config` reports it: exit 0, or exit 2 with the error
/// printed; a panic or no answer within [`DEADLINE`] has no exit code.
fn load_in_process(config: &Path, env: &'static [(&'static str, &'static str)]) -> Outcome {
    let (tx, rx) = mpsc::channel();
    let path = config.to_owned();
    std::thread::spawn(move || {
        let lookup = |k: &str| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        };
        let result = std::panic::catch_unwind(|| {
            load_with_env(Some(&path), &lookup).map(|(config, _)| config.daemons.len())
        });
        let _ = tx.send(result);
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(Ok(daemons))) => Outcome {
            code: Some(0),
            out: format!("config OK: {daemons} daemon(s)\n"),
        },
        Ok(Ok(Err(e))) => Outcome {
            code: Some(2),
            out: e.to_string(),
        },
        Ok(Err(panic)) => Outcome {
            code: None,
            out: format!(
                "the loader panicked: {}\n",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("?")
            ),
        },
        Err(_) => Outcome {
            code: None,
            out: format!("(no answer within {DEADLINE:?})\n"),
        },
    }
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

/// A fresh directory with the fixtures and the case's config in it.
fn prepare(c: &Case, i: usize) -> (Scratch, std::path::PathBuf) {
    let dir = Scratch::new("badcfg");
    fixtures(&dir.0);
    let config = dir.0.join(format!("case-{i}.toml"));
    let text = c.toml.replace("@DIR@", &dir.0.display().to_string());
    std::fs::write(&config, text).expect("write config");
    (dir, config)
}

/// What is wrong with the outcome of one case, if anything.
fn judge(c: &Case, how: &str, outcome: &Outcome) -> Option<String> {
    let Outcome { code, out } = outcome;
    let mut wrong = Vec::new();
    if *code != Some(2) {
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
            "case {:?} ({how}): {}\n--- config ---\n{}--- env {:?} ---\n--- output ---\n{out}",
            c.name,
            wrong.join("; "),
            c.toml,
            c.env
        ))
    }
}

/// The in-process cases see the test process's environment: it must hold
/// nothing the loader reads from there.
fn assert_clean_environment() {
    let overrides: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("DOCKWATCH_"))
        .collect();
    assert!(
        overrides.is_empty(),
        "unset {overrides:?}: the loader would read them in every in-process case"
    );
    assert!(
        std::env::var_os("DW_TEST_UNSET_PASSWORD").is_none(),
        "DW_TEST_UNSET_PASSWORD is set: the case \"password variable not set\" needs it unset"
    );
}

#[test]
fn every_bad_config_is_refused_naming_its_key() {
    assert_clean_environment();
    let cases = cases();
    assert!(
        cases.len() >= CASES_AT_LEAST,
        "only {} cases; the table had {CASES_AT_LEAST}",
        cases.len()
    );
    let mut failures = Vec::new();
    let (mut in_process, mut binary) = (0, 0);
    for (i, c) in cases.iter().enumerate() {
        let (dir, config) = prepare(c, i);
        let (how, outcome) = if c.needs_own_process() {
            binary += 1;
            (
                "dockwatch check-config",
                check_config(&dir.0, &config, c.env),
            )
        } else {
            in_process += 1;
            ("in-process", load_in_process(&config, c.env))
        };
        if let Some(f) = judge(c, how, &outcome) {
            failures.push(f);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad configs were not reported right:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "bad_config: {} cases ({in_process} in-process, {binary} through the binary for their \
         DOCKWATCH_* variables), each refused naming its key",
        cases.len()
    );
}

/// A few table cases through the real binary as well: exit code 2, the
/// problem line on its output, no panic.
#[test]
fn some_bad_configs_end_to_end() {
    let cases = cases();
    for name in END_TO_END {
        let (i, c) = cases
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
            .unwrap_or_else(|| panic!("no case named {name:?}"));
        let (dir, config) = prepare(c, i);
        let outcome = check_config(&dir.0, &config, c.env);
        if let Some(f) = judge(c, "dockwatch check-config", &outcome) {
            panic!("{f}");
        }
    }
}

/// The config path itself: missing, a directory (in-process and through
/// the binary).
#[test]
fn a_config_path_that_is_no_file_names_config() {
    let dir = Scratch::new("badcfg-path");
    for path in [dir.0.join("missing.toml"), dir.0.clone()] {
        let named = |out: &str| {
            out.lines().any(|l| {
                l.trim_start().starts_with("--config: ") && l.contains(&path.display().to_string())
            })
        };
        let Outcome { code, out } = check_config(&dir.0, &path, &[]);
        assert_eq!(code, Some(2), "{out}");
        assert!(named(&out), "{out}");
        assert!(!out.contains("panicked"), "{out}");
        let Outcome { code, out } = load_in_process(&path, &[]);
        assert_eq!(code, Some(2), "in-process: {out}");
        assert!(named(&out), "in-process: {out}");
    }
}

/// A good config (daemon A only) passes with these same harnesses (so the
/// table above fails for its own reasons, not the harness's).
#[test]
fn the_harnesses_accept_a_good_config() {
    assert_clean_environment();
    let dir = Scratch::new("badcfg-good");
    let config = dir.0.join("good.toml");
    std::fs::write(&config, format!("[poll]\ninterval = \"30s\"\n{DAEMON_A}")).expect("write");
    let Outcome { code, out } = check_config(&dir.0, &config, &[]);
    assert_eq!(code, Some(0), "{out}");
    let Outcome { code, out } = load_in_process(&config, &[]);
    assert_eq!(code, Some(0), "in-process: {out}");
}

/// What `check-config` prints for a refused config is the loader's error
/// as Display renders it: the in-process cases judge that same text.
#[test]
fn in_process_output_is_what_check_config_prints() {
    let dir = Scratch::new("badcfg-same");
    let config = dir.0.join("bad.toml");
    std::fs::write(
        &config,
        "[poll]\ninterval = \"5s\"\ntimeout = \"9s\"\n[[daemons]]\nname = \"a\"\nhost = \"ftp://x\"\n",
    )
    .expect("write");
    let binary = check_config(&dir.0, &config, &[]);
    let in_process = load_in_process(&config, &[]);
    assert_eq!(binary.code, Some(2), "{}", binary.out);
    assert_eq!(in_process.code, binary.code);
    assert_eq!(in_process.out, binary.out);
}
