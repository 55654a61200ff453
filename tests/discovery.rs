//! Daemons discovered from Prometheus `file_sd` files, on the real bed:
//! a daemon that appears in a file is watched, one that disappears stops
//! and its series go without touching any other, a file that breaks keeps
//! its last good list (and says so), static and discovered daemons mix, and
//! check-config reads the files too (a name in both is an error naming both).
// Counts are whole numbers, exact in f64.
#![allow(clippy::float_cmp)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use common::{Dockwatch, Scrape, Testbed, temp_dir};

fn up(s: &Scrape, d: &str) -> Option<f64> {
    s.get("dockwatch_daemon_up", &[("daemon", d)])
}

fn count(s: &Scrape, d: &str, endpoint: &str) -> f64 {
    s.get(
        "dockwatch_api_request_duration_seconds_count",
        &[("daemon", d), ("endpoint", endpoint)],
    )
    .unwrap_or(0.0)
}

fn write(dir: &Path, targets: &serde_json::Value) {
    // Written whole and renamed in, as a config manager would.
    let tmp = dir.join(".fleet.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(targets).expect("json")).expect("write");
    std::fs::rename(&tmp, dir.join("fleet.json")).expect("rename");
}

#[test]
#[allow(clippy::too_many_lines)] // one fleet's life, start to end
fn daemons_come_and_go_with_the_files() {
    let bed = Testbed::get();
    let dir = temp_dir("discovery");
    let files = dir.join("sd");
    std::fs::create_dir_all(&files).expect("sd dir");
    let b_name = bed.var("DOCKER_B").trim_start_matches("tcp://").to_owned();
    write(
        &files,
        &json!([
            {"targets": [bed.var("DOCKER_A")], "labels": {"daemon": "a"}},
            {"targets": [bed.var("DOCKER_B")]},
        ]),
    );
    let source = format!("{}/*.json", files.display());
    let dw = Dockwatch::start(&format!(
        "[poll]\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
         [[daemons]]\nname = \"static\"\nhost = \"{}\"\n\
         [[discovery]]\nfiles = [\"{source}\"]\nrefresh = \"1h\"\n\
         [discovery.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        bed.var("DOCKER_A"),
        bed.var("TLS_CA"),
        bed.var("TLS_CERT"),
        bed.var("TLS_KEY"),
    ));
    let s = dw.wait_for("both discovered daemons up", Duration::from_secs(30), |s| {
        up(s, "a") == Some(1.0) && up(s, &b_name) == Some(1.0) && up(s, "static") == Some(1.0)
    });
    assert_eq!(
        s.get("dockwatch_discovery_targets", &[("source", &source)]),
        Some(2.0)
    );
    assert!(
        s.get(
            "dockwatch_discovery_last_success_timestamp_seconds",
            &[("source", &source)]
        )
        .is_some_and(|t| t > 1.6e9)
    );
    // The mutual TLS daemon got the source's tls table: its numbers are the CLI's.
    let b_images = bed.cli_b().image_ids(&[]).len();
    assert_eq!(
        s.get("dockwatch_images", &[("daemon", &b_name)]),
        Some(f64::from(u32::try_from(b_images).expect("few")))
    );

    // Podman joins (named by its socket's path); the file's refresh is an
    // hour away, so only the change is why.
    let podman = bed.var("PODMAN_HOST");
    let p_name = podman.trim_start_matches("unix://").to_owned();
    write(
        &files,
        &json!([
            {"targets": [bed.var("DOCKER_A")], "labels": {"daemon": "a"}},
            {"targets": [bed.var("DOCKER_B"), podman]},
        ]),
    );
    let s = dw.wait_for("podman discovered", Duration::from_secs(20), |s| {
        up(s, &p_name) == Some(1.0)
    });
    assert_eq!(
        s.get("dockwatch_discovery_targets", &[("source", &source)]),
        Some(3.0)
    );
    let b_streams = count(&s, &b_name, "events");
    let b_polls = count(&s, &b_name, "version");

    // A leaves: its series go; B goes on on the same connection and stream.
    write(&files, &json!([{"targets": [bed.var("DOCKER_B"), podman]}]));
    let s = dw.wait_for("a gone", Duration::from_secs(20), |s| up(s, "a").is_none());
    assert!(
        !s.text.contains("daemon=\"a\""),
        "series of a daemon that left:\n{}",
        s.text
    );
    let s = dw.wait_for("more polls of B", Duration::from_secs(20), |s| {
        count(s, &b_name, "version") >= b_polls + 3.0
    });
    assert_eq!(up(&s, &b_name), Some(1.0));
    assert_eq!(up(&s, "static"), Some(1.0));
    assert_eq!(
        count(&s, &b_name, "events"),
        b_streams,
        "B's event stream was reconnected: B was restarted"
    );

    // A broken file keeps its last good list and says so, naming it.
    std::fs::write(files.join("fleet.json"), "[{\"targets\": [").expect("break it");
    std::thread::sleep(Duration::from_secs(3));
    let s = dw.wait_for("the last good list kept", Duration::from_secs(10), |s| {
        up(s, &b_name) == Some(1.0) && up(s, &p_name) == Some(1.0)
    });
    assert_eq!(
        s.get("dockwatch_discovery_targets", &[("source", &source)]),
        Some(2.0)
    );
    let log = dw.log();
    assert!(
        log.contains("cannot read the file") && log.contains("fleet.json"),
        "{log}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn check_config_reads_the_files_and_names_a_clash() {
    let bed = Testbed::get();
    let dir = temp_dir("discovery-check");
    std::fs::write(
        dir.join("fleet.yml"),
        format!(
            "- targets: [\"{}\"]\n  labels:\n    daemon: build-01\n",
            bed.var("DOCKER_A")
        ),
    )
    .expect("file_sd");
    std::fs::write(dir.join("broken.json"), "{").expect("file_sd");
    let config = dir.join("dockwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[[daemons]]\nname = \"build-01\"\nhost = \"{}\"\n\
             [[discovery]]\nfiles = [\"{}/*.yml\", \"{}/broken.json\"]\n",
            bed.var("DOCKER_A"),
            dir.display(),
            dir.display()
        ),
    )
    .expect("config");
    let out = Command::new(common::binary())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run check-config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("discovery[0].files:")
            && err.contains("\"build-01\"")
            && err.contains("fleet.yml")
            && err.contains("daemons[0]"),
        "the clash names both:\n{err}"
    );
    assert!(
        err.contains("broken.json: not a file_sd target list"),
        "the broken file is named:\n{err}"
    );
    std::fs::remove_dir_all(dir).ok();
}
