//! Pre-pulls against the real dockerd A and the real local registries,
//! checked against the registry's own manifests and the docker CLI. The tests
//! share daemon A's image store, so they take turns.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::{Dockwatch, Scrape, Testbed, Thaw, http_get, kill, output_text, temp_dir};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

fn layer_sizes(bed: &Testbed, key: &str) -> Vec<u64> {
    bed.var(key)
        .split(',')
        .map(|s| s.parse().expect("layer size"))
        .collect()
}

fn prepull_config(bed: &Testbed, extra: &str, images: &[&str]) -> String {
    let mut c = format!(
        "[poll]\ninterval = \"2s\"\ntimeout = \"1500ms\"\n{}[prepull]\ninterval = \"20s\"\njitter = \"0s\"\nstall_timeout = \"3s\"\ntimeout = \"2m\"\n{extra}",
        bed.daemon_a("a")
    );
    for image in images {
        // Writing to a String cannot fail.
        let _ = writeln!(c, "[[prepull.images]]\nimage = \"{image}\"");
    }
    c
}

fn image_labels(image: &str) -> [(&'static str, &str); 2] {
    [("daemon", "a"), ("image", image)]
}

fn no_progress_series(s: &Scrape) -> bool {
    !s.text.contains("\ndockwatch_image_pull_progress_bytes{")
        && !s.text.contains("\ndockwatch_image_pull_expected_bytes{")
        && s.get("dockwatch_image_pulls_in_progress", &[("daemon", "a")]) == Some(0.0)
}

#[test]
fn cold_pull_repull_and_shared_layers() {
    let _turn = turn();
    let bed = Testbed::get();
    let reg = bed.var("REGISTRY");
    let m1 = format!("{reg}/dwtest/multi:1");
    let m2 = format!("{reg}/dwtest/multi:2");
    bed.cli_a().rmi_f(&[&m2, &m1]);
    // In order, one at a time: :1 cold, then :2 on top of its layers.
    let dw = Dockwatch::start(&prepull_config(&bed, "", &[&m1, &m2]));
    let s = dw.wait_for("both pulls", Duration::from_secs(60), |s| {
        s.pulls("a", &m1, "updated") + s.pulls("a", &m2, "updated") >= 2.0
    });
    let sizes1 = layer_sizes(&bed, "IMAGE_MULTI1_LAYERS");
    let sizes2 = layer_sizes(&bed, "IMAGE_MULTI2_LAYERS");
    let layers = |img: &str, outcome: &str| {
        s.get(
            "dockwatch_image_pull_layers_total",
            &[("daemon", "a"), ("image", img), ("outcome", outcome)],
        )
    };
    // Cold: every layer downloaded, bytes as the registry's manifest says.
    assert_eq!(layers(&m1, "downloaded"), Some(sizes1.len() as f64));
    assert_eq!(layers(&m1, "already_exists"), Some(0.0));
    let want: u64 = sizes1.iter().sum();
    let got = s
        .get(
            "dockwatch_image_pull_downloaded_bytes_total",
            &image_labels(&m1),
        )
        .expect("bytes");
    assert!(
        (got - want as f64).abs() <= want as f64 * 0.01,
        "downloaded {got} bytes, registry says {want}"
    );
    // Shared: the layers of :1 already exist, only the new one comes.
    assert_eq!(layers(&m2, "already_exists"), Some(sizes1.len() as f64));
    assert_eq!(
        layers(&m2, "downloaded"),
        Some((sizes2.len() - sizes1.len()) as f64)
    );
    let new_bytes: u64 = sizes2[sizes1.len()..].iter().sum();
    let got = s
        .get(
            "dockwatch_image_pull_downloaded_bytes_total",
            &image_labels(&m2),
        )
        .expect("bytes");
    assert!((got - new_bytes as f64).abs() <= new_bytes as f64 * 0.01);
    for img in [&m1, &m2] {
        assert_eq!(
            s.get("dockwatch_image_present", &image_labels(img)),
            Some(1.0)
        );
        assert!(bed.cli_a().has_image(img), "docker image inspect {img}");
        assert!(
            s.get(
                "dockwatch_image_pull_last_success_timestamp_seconds",
                &image_labels(img)
            ) > Some(1.7e9)
        );
        assert_eq!(
            s.get(
                "dockwatch_image_pull_duration_seconds_count",
                &image_labels(img)
            ),
            Some(1.0)
        );
    }
    assert_eq!(
        s.get("dockwatch_prepull_ready", &[("daemon", "a")]),
        Some(1.0)
    );
    assert!(no_progress_series(&s), "progress series left:\n{}", s.text);
    let (status, body) = http_get(dw.port, "/pulls").expect("/pulls");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("/pulls is JSON");
    let last = &json["daemons"]["a"][m1.as_str()]["last"];
    assert_eq!(last["result"], "updated");
    assert_eq!(last["layers"].as_array().map(Vec::len), Some(sizes1.len()));
    assert_eq!(last["totals"]["layers_downloaded"], sizes1.len());
    drop(dw);

    // A re-pull of unchanged tags is up to date.
    let dw = Dockwatch::start(&prepull_config(&bed, "", &[&m1, &m2]));
    let s = dw.wait_for("re-pulls", Duration::from_secs(60), |s| {
        s.pulls("a", &m1, "up_to_date") + s.pulls("a", &m2, "up_to_date") >= 2.0
    });
    assert_eq!(
        s.get(
            "dockwatch_image_pull_downloaded_bytes_total",
            &image_labels(&m1)
        ),
        Some(0.0)
    );
    drop(dw);
    bed.cli_a().rmi_f(&[&m2, &m1]);
}

#[test]
fn missing_image_is_not_found_and_not_ready() {
    let _turn = turn();
    let bed = Testbed::get();
    let nope = format!("{}/dwtest/nope:1", bed.var("REGISTRY"));
    let dw = Dockwatch::start(&prepull_config(&bed, "", &[&nope]));
    let s = dw.wait_for("a not_found failure", Duration::from_secs(30), |s| {
        s.pull_failures("a", &nope, "not_found") >= 1.0
    });
    assert!(s.pulls("a", &nope, "failed") >= 1.0);
    assert_eq!(
        s.get("dockwatch_image_present", &image_labels(&nope)),
        Some(0.0)
    );
    assert_eq!(
        s.get("dockwatch_prepull_ready", &[("daemon", "a")]),
        Some(0.0)
    );
    // Retried with backoff, well before the 20 s interval.
    dw.wait_for("a retry", Duration::from_secs(15), |s| {
        s.pull_failures("a", &nope, "not_found") >= 2.0
    });
}

#[test]
fn private_registry_needs_the_right_credentials() {
    let _turn = turn();
    let bed = Testbed::get();
    let image = format!("{}/private/app:1", bed.var("REGISTRY_AUTH"));
    bed.cli_a().rmi_f(&[&image]);
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
        &prepull_config(&bed, &registry(&wrong), &[&image]),
        &[("RUST_LOG", "trace")],
    );
    dw.wait_ready();
    let s = dw.wait_for("unauthorized", Duration::from_secs(30), |s| {
        s.pull_failures("a", &image, "unauthorized") >= 1.0
    });
    assert!(!bed.cli_a().has_image(&image));
    assert_no_secret(&dw, &s, "not-the-password");
    drop(dw);

    // Right password, from the test bed's file: updated.
    let dw = Dockwatch::spawn(
        &prepull_config(
            &bed,
            &registry(std::path::Path::new(bed.var("REGISTRY_AUTH_PASSWORD_FILE"))),
            &[&image],
        ),
        &[("RUST_LOG", "trace")],
    );
    dw.wait_ready();
    let s = dw.wait_for("updated", Duration::from_secs(30), |s| {
        s.pulls("a", &image, "updated") >= 1.0
    });
    assert!(bed.cli_a().has_image(&image));
    assert_no_secret(&dw, &s, secret);
    drop(dw);
    bed.cli_a().rmi_f(&[&image]);
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

/// Starts a cold pre-pull of the registry's big image on A; returns the
/// image and dockwatch once the pull is running and has listed its layers.
fn big_pull_running(bed: &Testbed) -> (String, Dockwatch) {
    let big = format!("{}/dwtest/big:1", bed.var("REGISTRY"));
    bed.cli_a().rmi_f(&[&big]);
    let dw = Dockwatch::start(&prepull_config(bed, "", &[&big]));
    dw.wait_for_layers("a", &big);
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

#[test]
fn frozen_registry_stalls_the_pull_and_the_next_round_succeeds() {
    let _turn = turn();
    let bed = Testbed::get();
    let (big, dw) = big_pull_running(&bed);
    let thaw = Thaw(signal_registry(&bed, "STOP"));
    let s = dw.wait_for("a stall", Duration::from_secs(30), |s| {
        s.pull_failures("a", &big, "stalled") >= 1.0
    });
    drop(thaw);
    assert!(s.get("dockwatch_image_pull_stalls_total", &image_labels(&big)) >= Some(1.0));
    assert!(no_progress_series(&s), "progress series left:\n{}", s.text);
    let s = dw.wait_for("the retry to succeed", Duration::from_secs(60), |s| {
        s.pulls("a", &big, "updated") >= 1.0
    });
    assert!(no_progress_series(&s));
    assert!(bed.cli_a().has_image(&big));
    drop(dw);
    bed.cli_a().rmi_f(&[&big]);
}

#[test]
fn registry_killed_mid_pull_fails_and_recovers_once_it_is_back() {
    let _turn = turn();
    let bed = Testbed::get();
    let (big, dw) = big_pull_running(&bed);
    signal_registry(&bed, "KILL");
    let revive = Revive(&bed);
    let s = dw.wait_for("a failure", Duration::from_secs(60), |s| {
        s.pulls("a", &big, "failed") >= 1.0
    });
    let reasons: Vec<_> = s.pull_failure_reasons("a", &big).into_keys().collect();
    // dockerd only counts down "Retrying in N seconds" for minutes; dockwatch
    // reads that as the registry being unreachable, and cancels.
    assert_eq!(reasons, ["network"], "{}", dw.log());
    assert!(s.get("dockwatch_image_pull_stalls_total", &image_labels(&big)) >= Some(1.0));
    assert!(no_progress_series(&s));
    drop(revive);
    dw.wait_for("the retry to succeed", Duration::from_secs(60), |s| {
        s.pulls("a", &big, "updated") >= 1.0
    });
    drop(dw);
    bed.cli_a().rmi_f(&[&big]);
}

fn cli_pull(bed: &Testbed, image: &str, tty: bool) -> (i32, String) {
    let dir = temp_dir("clipull");
    let config = dir.join("c.toml");
    std::fs::write(&config, bed.daemon_a("a")).expect("config");
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

    bed.cli_a().rmi_f(&[&m1]);
    let (code, out) = cli_pull(&bed, &m1, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("\u{1b}["),
        "no terminal drawing on a pty:\n{out}"
    );
    assert!(out.contains("pull complete"), "{out}");
    assert!(out.contains(&format!("{m1}: updated")), "{out}");
    assert!(
        out.contains(&format!("{} layers downloaded", sizes.len())),
        "{out}"
    );
    assert!(bed.cli_a().has_image(&m1));

    bed.cli_a().rmi_f(&[&m1]);
    let (code, out) = cli_pull(&bed, &m1, false);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "escape codes in piped output:\n{out}"
    );
    assert!(out.contains(": complete"), "{out}");
    assert!(out.contains(&format!("{m1}: updated")), "{out}");
    let want: u64 = sizes.iter().sum();
    assert!(out.contains(&format!("({want} bytes)")), "{out}");

    let (code, out) = cli_pull(&bed, &m1, false);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("up_to_date"), "{out}");

    let nope = format!("{}/dwtest/nope:1", bed.var("REGISTRY"));
    let (code, out) = cli_pull(&bed, &nope, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("failed (not_found)"), "{out}");
    bed.cli_a().rmi_f(&[&m1]);
}
