//! Pre-pulls against the real dockerd A and the real local registries,
//! checked against the registry's own manifests and the docker CLI, and the
//! same against daemon C (Docker 26 on the containerd image store). The
//! tests share the daemons' image stores and the registry, so they take
//! turns.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use common::slow_link::SlowLink;
use common::{
    DockerCli, Dockwatch, Scrape, Store, Testbed, Thaw, assert_byte_counts_sane, http_get, kill,
    output_text, temp_dir,
};

use common::turn;

/// The daemon a test pulls on: its `daemon` label, its config, the docker
/// CLI aimed at it, and its image store.
struct Target {
    name: &'static str,
    config: String,
    cli: DockerCli,
    store: Store,
}

/// Runs `story` on the daemon that `target` names, its turn held.
fn on(target: fn(&Testbed) -> Target, story: impl Fn(&Testbed, &Target)) {
    let _turn = turn();
    let bed = Testbed::get();
    story(&bed, &target(&bed));
}

fn daemon_a(bed: &Testbed) -> Target {
    Target {
        name: "a",
        config: bed.daemon_a("a"),
        cli: bed.cli_a(),
        store: Store::Classic,
    }
}

fn daemon_c(bed: &Testbed) -> Target {
    Target {
        name: "c",
        config: bed.daemon_c("c"),
        cli: bed.cli_c(),
        store: Store::Containerd,
    }
}

/// 2 MB/s per connection: the 2 and 3 MiB layers of dwtest/mixed take
/// about a second, so the containerd store's 100 ms progress ticks see each
/// of them under way with its first MiB in (its first count comes then).
const SLOW_LINK_RATE: u64 = 2_000_000;

/// A byte count from a scrape (a whole number in an f64) is `n`.
fn same_bytes(n: u64, scraped: f64) -> bool {
    (n as f64 - scraped).abs() < 0.5
}

/// The sums of every subset of `sizes`: the byte counts a pull can report
/// on the containerd store, where each layer tells either its whole size
/// or nothing (see `cold_pull_repull_and_shared_layers_on`).
fn subset_sums(sizes: &[u64]) -> Vec<u64> {
    let mut sums = vec![0];
    for size in sizes {
        let more: Vec<u64> = sums.iter().map(|s| s + size).collect();
        sums.extend(more);
    }
    sums
}

fn layer_sizes(bed: &Testbed, key: &str) -> Vec<u64> {
    bed.var(key)
        .split(',')
        .map(|s| s.parse().expect("layer size"))
        .collect()
}

fn prepull_config(t: &Target, extra: &str, images: &[&str]) -> String {
    let mut c = format!(
        "[poll]\ninterval = \"2s\"\ntimeout = \"1500ms\"\n{}[prepull]\ninterval = \"20s\"\njitter = \"0s\"\nstall_timeout = \"3s\"\ntimeout = \"2m\"\n{extra}",
        t.config
    );
    for image in images {
        // Writing to a String cannot fail.
        let _ = writeln!(c, "[[prepull.images]]\nimage = \"{image}\"");
    }
    c
}

fn image_labels<'a>(t: &Target, image: &'a str) -> [(&'static str, &'a str); 2] {
    [("daemon", t.name), ("image", image)]
}

fn no_progress_series(s: &Scrape, t: &Target) -> bool {
    !s.text.contains("\ndockwatch_image_pull_progress_bytes{")
        && !s.text.contains("\ndockwatch_image_pull_expected_bytes{")
        && s.get("dockwatch_image_pulls_in_progress", &[("daemon", t.name)]) == Some(0.0)
}

common::test_cases!(on {
    cold_pull_repull_and_shared_layers(daemon_a, from_the_bed_registry);
    cold_pull_repull_and_shared_layers_on_the_containerd_store(daemon_c, from_the_bed_registry);
});

fn from_the_bed_registry(bed: &Testbed, t: &Target) {
    cold_pull_repull_and_shared_layers_on(bed, t, bed.var("REGISTRY"));
}

/// Downloaded bytes on the containerd store against the registry's
/// manifest: dwtest/mixed:1 (3 MiB, 100 kB, 2 MiB) behind a slow link, as
/// from a registry across a network. Every layer of 1 MiB or more reports
/// its size; the 100 kB one may or may not (all of it, or nothing).
#[test]
fn containerd_store_counts_the_bytes_its_stream_tells() {
    let _turn = turn();
    let bed = Testbed::get();
    let t = daemon_c(&bed);
    let link = SlowLink::start(bed.var("REGISTRY"), SLOW_LINK_RATE);
    let mixed = format!("{}/dwtest/mixed:1", link.host());
    let sizes = layer_sizes(&bed, "IMAGE_MIXED_LAYERS");
    t.cli.rmi_f(&[&mixed]);
    let dw = Dockwatch::start(&prepull_config(&t, "", &[&mixed]));
    let s = dw.wait_for("the pull", Duration::from_secs(60), |s| {
        s.pulls(t.name, &mixed, "updated") >= 1.0
    });
    assert_eq!(
        s.get(
            "dockwatch_image_pull_layers_total",
            &[
                ("daemon", "c"),
                ("image", &mixed),
                ("outcome", "downloaded")
            ]
        ),
        Some(sizes.len() as f64)
    );
    let got = s
        .get(
            "dockwatch_image_pull_downloaded_bytes_total",
            &image_labels(&t, &mixed),
        )
        .expect("bytes");
    let over_a_mib: u64 = sizes.iter().filter(|&&n| n >= 1 << 20).sum();
    let all: u64 = sizes.iter().sum();
    eprintln!(
        "compared: mixed:1 on C through the slow link: dockwatch {got} bytes, manifest {sizes:?}: {over_a_mib} over 1 MiB, {all} in all"
    );
    assert!(
        [over_a_mib, all].iter().any(|&n| same_bytes(n, got)),
        "downloaded {got} bytes; the manifest's layers {sizes:?}: {over_a_mib} over 1 MiB, {all} in all"
    );
    assert_byte_counts_sane(&s);
    drop(dw);
    t.cli.rmi_f(&[&mixed]);
}

/// Downloaded bytes against the registry's manifest (`sizes`, the layers
/// fetched). Classic store: their sum, within 1%. The containerd store
/// tells a layer's bytes only in the `Downloading` lines it sends every
/// 100 ms while the download runs, and only once its first MiB is in:
/// these layers (100 to 600 kB, from a registry on the same host) tell their
/// whole size when a tick happens to fall between their last write and
/// their commit, else nothing. Then the count is the sum of some of them,
/// never more, never a part of one.
fn assert_downloaded(t: &Target, got: f64, sizes: &[u64]) {
    let want: u64 = sizes.iter().sum();
    eprintln!(
        "compared: {:?}: downloaded bytes: dockwatch {got}, manifest {sizes:?} = {want}",
        t.store
    );
    match t.store {
        Store::Classic => assert!(
            (got - want as f64).abs() <= want as f64 * 0.01,
            "downloaded {got} bytes, registry says {want}"
        ),
        Store::Containerd => assert!(
            subset_sums(sizes).into_iter().any(|n| same_bytes(n, got)),
            "downloaded {got} bytes: not the sum of some of the layers {sizes:?}"
        ),
    }
}

#[allow(clippy::too_many_lines)] // one story: cold, shared, /pulls, re-pull
fn cold_pull_repull_and_shared_layers_on(bed: &Testbed, t: &Target, reg: &str) {
    let m1 = format!("{reg}/dwtest/multi:1");
    let m2 = format!("{reg}/dwtest/multi:2");
    t.cli.rmi_f(&[&m2, &m1]);
    // In order, one at a time: :1 cold, then :2 on top of its layers.
    let dw = Dockwatch::start(&prepull_config(t, "", &[&m1, &m2]));
    let s = dw.wait_for("both pulls", Duration::from_secs(60), |s| {
        s.pulls(t.name, &m1, "updated") + s.pulls(t.name, &m2, "updated") >= 2.0
    });
    let sizes1 = layer_sizes(bed, "IMAGE_MULTI1_LAYERS");
    let sizes2 = layer_sizes(bed, "IMAGE_MULTI2_LAYERS");
    let layers = |img: &str, outcome: &str| {
        s.get(
            "dockwatch_image_pull_layers_total",
            &[("daemon", t.name), ("image", img), ("outcome", outcome)],
        )
    };
    // Cold: every layer downloaded, bytes as the registry's manifest says.
    assert_eq!(layers(&m1, "downloaded"), Some(sizes1.len() as f64));
    assert_eq!(layers(&m1, "already_exists"), Some(0.0));
    let got = s
        .get(
            "dockwatch_image_pull_downloaded_bytes_total",
            &image_labels(t, &m1),
        )
        .expect("bytes");
    assert_downloaded(t, got, &sizes1);
    eprintln!(
        "compared: {:?}: layers: multi:1 downloaded {:?} already_exists {:?}; multi:2 downloaded {:?} already_exists {:?}; manifests {} and {} layers",
        t.store,
        layers(&m1, "downloaded"),
        layers(&m1, "already_exists"),
        layers(&m2, "downloaded"),
        layers(&m2, "already_exists"),
        sizes1.len(),
        sizes2.len()
    );
    // Shared: the layers of :1 already exist, only the new one comes.
    match t.store {
        Store::Classic => {
            assert_eq!(layers(&m2, "already_exists"), Some(sizes1.len() as f64));
        }
        // The containerd store does not mention the layers it has
        // unpacked already (no "Already exists" line): none is counted.
        Store::Containerd => assert_eq!(layers(&m2, "already_exists"), Some(0.0)),
    }
    assert_eq!(
        layers(&m2, "downloaded"),
        Some((sizes2.len() - sizes1.len()) as f64)
    );
    let got = s
        .get(
            "dockwatch_image_pull_downloaded_bytes_total",
            &image_labels(t, &m2),
        )
        .expect("bytes");
    assert_downloaded(t, got, &sizes2[sizes1.len()..]);
    for img in [&m1, &m2] {
        assert_eq!(
            s.get("dockwatch_image_present", &image_labels(t, img)),
            Some(1.0)
        );
        assert!(t.cli.has_image(img), "docker image inspect {img}");
        assert!(
            s.get(
                "dockwatch_image_pull_last_success_timestamp_seconds",
                &image_labels(t, img)
            ) > Some(1.7e9)
        );
        assert_eq!(
            s.get(
                "dockwatch_image_pull_duration_seconds_count",
                &image_labels(t, img)
            ),
            Some(1.0)
        );
    }
    assert_eq!(
        s.get("dockwatch_prepull_ready", &[("daemon", t.name)]),
        Some(1.0)
    );
    assert!(
        no_progress_series(&s, t),
        "progress series left:\n{}",
        s.text
    );
    assert_byte_counts_sane(&s);
    let (status, body) = http_get(dw.port, "/pulls").expect("/pulls");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("/pulls is JSON");
    let last = &json["daemons"][t.name][m1.as_str()]["last"];
    assert_eq!(last["result"], "updated");
    assert_eq!(last["layers"].as_array().map(Vec::len), Some(sizes1.len()));
    assert_eq!(last["totals"]["layers_downloaded"], sizes1.len());
    drop(dw);

    // A re-pull of unchanged tags is up to date.
    let dw = Dockwatch::start(&prepull_config(t, "", &[&m1, &m2]));
    let s = dw.wait_for("re-pulls", Duration::from_secs(60), |s| {
        s.pulls(t.name, &m1, "up_to_date") + s.pulls(t.name, &m2, "up_to_date") >= 2.0
    });
    assert_eq!(
        s.get(
            "dockwatch_image_pull_downloaded_bytes_total",
            &image_labels(t, &m1)
        ),
        Some(0.0)
    );
    drop(dw);
    t.cli.rmi_f(&[&m2, &m1]);
}

common::test_cases!(on {
    missing_image_is_not_found_and_not_ready(daemon_a, missing_image_is_not_found_and_not_ready_on);
    missing_image_is_not_found_and_not_ready_on_the_containerd_store(
        daemon_c,
        missing_image_is_not_found_and_not_ready_on,
    );
});

fn missing_image_is_not_found_and_not_ready_on(bed: &Testbed, t: &Target) {
    let nope = format!("{}/dwtest/nope:1", bed.var("REGISTRY"));
    let dw = Dockwatch::start(&prepull_config(t, "", &[&nope]));
    let s = dw.wait_for("a not_found failure", Duration::from_secs(30), |s| {
        s.pull_failures(t.name, &nope, "not_found") >= 1.0
    });
    assert!(s.pulls(t.name, &nope, "failed") >= 1.0);
    assert_eq!(
        s.get("dockwatch_image_present", &image_labels(t, &nope)),
        Some(0.0)
    );
    assert_eq!(
        s.get("dockwatch_prepull_ready", &[("daemon", t.name)]),
        Some(0.0)
    );
    // Retried with backoff, well before the 20 s interval.
    dw.wait_for("a retry", Duration::from_secs(15), |s| {
        s.pull_failures(t.name, &nope, "not_found") >= 2.0
    });
}

#[test]
fn private_registry_needs_the_right_credentials() {
    let _turn = turn();
    let bed = Testbed::get();
    let t = daemon_a(&bed);
    let image = format!("{}/private/app:1", bed.var("REGISTRY_AUTH"));
    t.cli.rmi_f(&[&image]);
    let dir = temp_dir("auth");
    let wrong = dir.join("wrong.pass");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let registry = |pass: &std::path::Path| {
        format!(
            "[[registries]]\nserver = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\n",
            bed.var("REGISTRY_AUTH"),
            bed.var("REGISTRY_AUTH_USER"),
            pass.display()
        )
    };
    let secret = std::fs::read_to_string(bed.var("REGISTRY_AUTH_PASSWORD_FILE")).expect("password");
    let secret = secret.trim();
    assert!(secret.len() >= 8, "test bed password too short to grep for");

    // Wrong password: unauthorized.
    let dw = Dockwatch::spawn(
        &prepull_config(&t, &registry(&wrong), &[&image]),
        &[("RUST_LOG", "trace")],
    );
    dw.wait_ready();
    let s = dw.wait_for("unauthorized", Duration::from_secs(30), |s| {
        s.pull_failures(t.name, &image, "unauthorized") >= 1.0
    });
    assert!(!t.cli.has_image(&image));
    assert_no_secret(&dw, &s, "not-the-password");
    drop(dw);

    // Right password, from the test bed's file: updated.
    let dw = Dockwatch::spawn(
        &prepull_config(
            &t,
            &registry(std::path::Path::new(bed.var("REGISTRY_AUTH_PASSWORD_FILE"))),
            &[&image],
        ),
        &[("RUST_LOG", "trace")],
    );
    dw.wait_ready();
    let s = dw.wait_for("updated", Duration::from_secs(30), |s| {
        s.pulls(t.name, &image, "updated") >= 1.0
    });
    assert!(t.cli.has_image(&image));
    assert_no_secret(&dw, &s, secret);
    drop(dw);
    t.cli.rmi_f(&[&image]);
    std::fs::remove_dir_all(dir).ok();
}

/// The secret is nowhere: not in the logs (at trace level), /metrics, /pulls
/// or the landing page.
fn assert_no_secret(dw: &Dockwatch, s: &Scrape, secret: &str) {
    assert!(!dw.log().contains(secret), "secret in the log");
    assert!(!s.text.contains(secret), "secret in /metrics");
    for path in ["/pulls", "/"] {
        let (_, body) = http_get(dw.port, path).expect(path);
        assert!(!body.contains(secret), "secret in {path}");
    }
}

/// Starts a cold pre-pull of the registry's big image on `t`; returns the
/// image and dockwatch once the pull is running and has listed its layers.
fn big_pull_running(bed: &Testbed, t: &Target) -> (String, Dockwatch) {
    let big = format!("{}/dwtest/big:1", bed.var("REGISTRY"));
    t.cli.rmi_f(&[&big]);
    if t.store == Store::Containerd {
        // The containerd store keeps an image's layers in its content store
        // after `docker rmi` until its garbage collector runs: a pull right
        // after an earlier test's would find every layer there and download
        // nothing. Drop what no image refers to any more, as its GC would.
        let ctr = format!("{}/usr/bin/ctr", bed.var("DOCKER_C_ROOT"));
        let socket = format!(
            "{}/c/exec/containerd/containerd.sock",
            bed.var("TESTBED_DIR")
        );
        let out = Command::new(&ctr)
            .args([
                "-a",
                &socket,
                "-n",
                "moby",
                "content",
                "prune",
                "references",
            ])
            .output()
            .expect("Debian 13's ctr, unpacked by tests/testbed.sh install");
        assert!(
            out.status.success(),
            "ctr content prune: {}",
            output_text(&out)
        );
    }
    let dw = Dockwatch::start(&prepull_config(t, "", &[&big]));
    dw.wait_for_layers(t.name, &big);
    (big, dw)
}

/// Signals the registry; returns its pid.
fn signal_registry(bed: &Testbed, sig: &str) -> u32 {
    let pid = bed.registry_pid().expect("REGISTRY_PID");
    kill(pid, sig);
    pid
}

/// Starts a killed registry again, also when the test fails half-way.
struct Revive<'a>(&'a Testbed);

impl Drop for Revive<'_> {
    fn drop(&mut self) {
        // No asserts in drop; a registry that did not come back shows in
        // the wait for the retry right after.
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testbed.sh"))
            .args(["registry-restart", self.0.var("TESTBED_DIR")])
            .status();
    }
}

common::test_cases!(on {
    frozen_registry_stalls_the_pull_and_the_next_round_succeeds(
        daemon_a,
        frozen_registry_stalls_the_pull_on,
    );
    /// On the containerd store the stream does not go quiet while the registry
    /// is frozen: it repeats each layer's `Downloading` line every 100 ms with
    /// the same count. That must not pass for progress.
    frozen_registry_stalls_the_pull_on_the_containerd_store(
        daemon_c,
        frozen_registry_stalls_the_pull_on,
    );
    registry_killed_mid_pull_fails_and_recovers_once_it_is_back(
        daemon_a,
        registry_killed_mid_pull_on,
    );
    /// On the containerd store the pull fails at once with an error line
    /// (containerd's "failed to do request: ... EOF"), where dockerd 20.10
    /// counts down its retries.
    registry_killed_mid_pull_fails_and_recovers_on_the_containerd_store(
        daemon_c,
        registry_killed_mid_pull_on,
    );
});

fn frozen_registry_stalls_the_pull_on(bed: &Testbed, t: &Target) {
    let (big, dw) = big_pull_running(bed, t);
    let thaw = Thaw(signal_registry(bed, "STOP"));
    let s = dw.wait_for("a stall", Duration::from_secs(30), |s| {
        s.pull_failures(t.name, &big, "stalled") >= 1.0
    });
    drop(thaw);
    assert!(s.get("dockwatch_image_pull_stalls_total", &image_labels(t, &big)) >= Some(1.0));
    assert!(
        no_progress_series(&s, t),
        "progress series left:\n{}",
        s.text
    );
    let s = dw.wait_for("the retry to succeed", Duration::from_secs(60), |s| {
        s.pulls(t.name, &big, "updated") >= 1.0
    });
    assert!(no_progress_series(&s, t));
    assert!(t.cli.has_image(&big));
    drop(dw);
    t.cli.rmi_f(&[&big]);
}

fn registry_killed_mid_pull_on(bed: &Testbed, t: &Target) {
    let (big, dw) = big_pull_running(bed, t);
    signal_registry(bed, "KILL");
    let revive = Revive(bed);
    let s = dw.wait_for("a failure", Duration::from_secs(60), |s| {
        s.pulls(t.name, &big, "failed") >= 1.0
    });
    let reasons: Vec<_> = s.pull_failure_reasons(t.name, &big).into_keys().collect();
    assert_eq!(reasons, ["network"], "{}", dw.log());
    let stalls = s.get("dockwatch_image_pull_stalls_total", &image_labels(t, &big));
    match t.store {
        // dockerd only counts down "Retrying in N seconds" for minutes;
        // dockwatch reads that as the registry being unreachable, and cancels.
        Store::Classic => assert!(stalls >= Some(1.0)),
        // The stream says so itself, at once: nothing to cancel.
        Store::Containerd => assert_eq!(stalls, Some(0.0)),
    }
    assert!(no_progress_series(&s, t));
    drop(revive);
    dw.wait_for("the retry to succeed", Duration::from_secs(60), |s| {
        s.pulls(t.name, &big, "updated") >= 1.0
    });
    drop(dw);
    t.cli.rmi_f(&[&big]);
}

fn cli_pull(t: &Target, image: &str, tty: bool) -> (i32, String) {
    let dir = temp_dir("clipull");
    let config = dir.join("c.toml");
    std::fs::write(&config, &t.config).expect("config");
    let out = if tty {
        // script(1) gives the command a pseudo-terminal; -e passes its exit code on.
        let cmd = format!(
            "{} pull --config {} {image}",
            common::binary(),
            config.display()
        );
        Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
    } else {
        // output() gives the command pipes, not a terminal.
        Command::new(common::binary())
            .args(["pull", "--config"])
            .arg(&config)
            .arg(image)
            .output()
    }
    .expect("run dockwatch pull");
    std::fs::remove_dir_all(dir).ok();
    (out.status.code().unwrap_or(-1), output_text(&out))
}

#[test]
fn pull_command_on_a_terminal_and_through_a_pipe() {
    let _turn = turn();
    let bed = Testbed::get();
    let m1 = format!("{}/dwtest/multi:1", bed.var("REGISTRY"));
    let sizes = layer_sizes(&bed, "IMAGE_MULTI1_LAYERS");
    let want = sizes.iter().sum();
    pull_command_on(&bed, &daemon_a(&bed), &m1, sizes.len(), &[want]);
}

/// The same on the containerd store, with dwtest/mixed:1 behind the slow
/// link so that the bars have bytes to show (see
/// `containerd_store_counts_the_bytes_its_stream_tells`).
#[test]
fn pull_command_on_the_containerd_store() {
    let _turn = turn();
    let bed = Testbed::get();
    let link = SlowLink::start(bed.var("REGISTRY"), SLOW_LINK_RATE);
    let mixed = format!("{}/dwtest/mixed:1", link.host());
    let sizes = layer_sizes(&bed, "IMAGE_MIXED_LAYERS");
    let over_a_mib = sizes.iter().filter(|&&n| n >= 1 << 20).sum();
    let all = sizes.iter().sum();
    pull_command_on(
        &bed,
        &daemon_c(&bed),
        &mixed,
        sizes.len(),
        &[over_a_mib, all],
    );
}

/// `dockwatch pull` of `image` (cold, cold through a pipe, up to date) and of
/// a missing one: `layers` layers downloaded, and one of `bytes` in the
/// summary.
fn pull_command_on(bed: &Testbed, t: &Target, m1: &str, layers: usize, bytes: &[u64]) {
    // The last state of each layer: "pull complete" after dockerd 20.10's
    // `Pull complete`; the containerd store reports no extraction, so its
    // layers end `downloaded`, as `docker pull` shows `Download complete`.
    let (bar_end, line_end) = match t.store {
        Store::Classic => ("pull complete", ": complete"),
        Store::Containerd => ("downloaded", ": downloaded"),
    };

    t.cli.rmi_f(&[m1]);
    let (code, out) = cli_pull(t, m1, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("\u{1b}["),
        "no terminal drawing on a pty:\n{out}"
    );
    assert!(out.contains(bar_end), "{out}");
    assert!(out.contains(&format!("{m1}: updated")), "{out}");
    assert!(
        out.contains(&format!("{layers} layers downloaded")),
        "{out}"
    );
    assert!(t.cli.has_image(m1));

    t.cli.rmi_f(&[m1]);
    let (code, out) = cli_pull(t, m1, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "escape codes in piped output:\n{out}"
    );
    assert!(out.contains(line_end), "{out}");
    assert!(out.contains(&format!("{m1}: updated")), "{out}");
    assert!(
        bytes
            .iter()
            .any(|want| out.contains(&format!("({want} bytes)"))),
        "{out}"
    );

    let (code, out) = cli_pull(t, m1, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("up_to_date"), "{out}");

    let nope = format!("{}/dwtest/nope:1", bed.var("REGISTRY"));
    let (code, out) = cli_pull(t, &nope, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("failed (not_found)"), "{out}");
    t.cli.rmi_f(&[m1]);
}
