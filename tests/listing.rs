//! Image figures stay fresh from events, not from listing every poll: with
//! the default `images_interval` (10 minutes) and a poll interval far longer
//! than the wait, an image imported or removed shows in `dockwatch_images`
//! as soon as its event arrives, equal to the docker CLI's count, on dockerd
//! and on Podman (whose events differ); and polls without image events make
//! no image listing at all.
// Counts are whole numbers, exact in f64.
#![allow(clippy::float_cmp, clippy::cast_precision_loss)]

mod common;

use std::time::Duration;

use common::{DockerCli, Dockwatch, Scrape, Testbed, temp_dir};

fn images(s: &Scrape, daemon: &str) -> Option<f64> {
    s.get("dockwatch_images", &[("daemon", daemon)])
}

fn image_lists(s: &Scrape, daemon: &str) -> f64 {
    s.get(
        "dockwatch_api_request_duration_seconds_count",
        &[("daemon", daemon), ("endpoint", "image_list")],
    )
    .unwrap_or(0.0)
}

/// Imports an image and removes it again, each time waiting for dockwatch
/// to show the CLI's count. The poll interval is 10 minutes: only an event
/// can explain a change within the wait.
fn follows_changes(daemon: &str, host: &str, cli: &DockerCli, tag: &str) {
    let dw = Dockwatch::start(&format!(
        "[poll]\ninterval = \"10m\"\ntimeout = \"5s\"\ndisk_interval = \"0\"\n\
         [[daemons]]\nname = \"{daemon}\"\nhost = \"{host}\"\n"
    ));
    let before = cli.image_ids(&[]).len() as f64;
    dw.wait_for("the first count", Duration::from_secs(20), |s| {
        images(s, daemon) == Some(before)
    });
    let dir = temp_dir("listing");
    cli.import_tiny(&dir, tag);
    let with = cli.image_ids(&[]).len() as f64;
    assert_eq!(with, before + 1.0, "the import added an image");
    dw.wait_for("the imported image", Duration::from_secs(15), |s| {
        images(s, daemon) == Some(with)
    });
    cli.rmi_f(&[tag]);
    let after = cli.image_ids(&[]).len() as f64;
    assert_eq!(after, before, "the removal took it away again");
    dw.wait_for("the removed image", Duration::from_secs(15), |s| {
        images(s, daemon) == Some(after)
    });
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn dockerd_image_counts_follow_events() {
    let bed = Testbed::get();
    follows_changes("a", bed.var("DOCKER_A"), &bed.cli_a(), "dwlisting/a:1");
}

#[test]
fn podman_image_counts_follow_events() {
    let bed = Testbed::get();
    let host = bed.var("PODMAN_HOST");
    follows_changes("p", host, &bed.cli_at(host), "dwlisting/p:1");
}

/// While the event stream is followed, a poll lists no images: over a
/// dozen polls without image events, no `image_list` call.
#[test]
fn polls_without_image_events_list_no_images() {
    let bed = Testbed::get();
    let dw = Dockwatch::start(&format!(
        "[poll]\ninterval = \"500ms\"\ntimeout = \"400ms\"\ndisk_interval = \"0\"\n\
         [[daemons]]\nname = \"b\"\nhost = \"{}\"\n[daemons.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        bed.var("DOCKER_B"),
        bed.var("TLS_CA"),
        bed.var("TLS_CERT"),
        bed.var("TLS_KEY"),
    ));
    let polls = |s: &Scrape| {
        s.get(
            "dockwatch_api_request_duration_seconds_count",
            &[("daemon", "b"), ("endpoint", "version")],
        )
        .unwrap_or(0.0)
    };
    // The first poll lists, and so does the stream's start half a second
    // after it connects (it may have missed a change before); after that,
    // events decide.
    let settled = dw.wait_for("two seconds of polls", Duration::from_secs(20), |s| {
        polls(s) >= 5.0
    });
    assert!(image_lists(&settled, "b") >= 2.0, "{}", settled.text);
    let later = dw.wait_for("a dozen more polls", Duration::from_secs(60), |s| {
        polls(s) >= polls(&settled) + 12.0
    });
    assert_eq!(
        image_lists(&later, "b"),
        image_lists(&settled, "b"),
        "image lists on polls without image events"
    );
}
