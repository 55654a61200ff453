//! Docker events, container exits and disk usage against a real dockerd of
//! the test's own (it is restarted mid-test), compared with what happened
//! and with `docker system df`: dockerd 20.10 on the classic image store,
//! and Docker 26 on the containerd image store.
// Byte and event counts here are small; sizes are compared as docker prints them.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    // Counter values are whole numbers, exact in f64.
    clippy::float_cmp
)]

mod common;

use std::time::Duration;

use common::{
    Dockwatch, Scrape, Store, Testbed, assert_byte_counts_sane, daemon_toml,
    own_daemon_with_image_on,
};

fn exits(s: &Scrape, class: &str) -> f64 {
    s.get(
        "dockwatch_container_exits_total",
        &[("daemon", "c"), ("code_class", class)],
    )
    .unwrap_or(0.0)
}

fn events(s: &Scrape, typ: &str, action: &str) -> f64 {
    s.get(
        "dockwatch_events_total",
        &[("daemon", "c"), ("type", typ), ("action", action)],
    )
    .unwrap_or(0.0)
}

/// docker's `HumanSize`: 4 significant digits, decimal units.
fn human(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 1.0 {
        v.log10().floor() as i32 + 1
    } else {
        1
    };
    let decimals = usize::try_from((4 - digits).max(0)).unwrap_or(0);
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{s}{}", units[i])
}

#[test]
fn human_size_matches_docker() {
    assert_eq!(human(17_840_882), "17.84MB");
    assert_eq!(human(7_929_274), "7.929MB");
    assert_eq!(human(0), "0B");
    assert_eq!(human(1000), "1kB");
    assert_eq!(human(123_456), "123.5kB");
}

common::test_cases!(events_exits_refresh_and_disk_usage_on {
    events_exits_refresh_and_disk_usage(Store::Classic);
    /// The same story on Docker 26 with the containerd image store. There the
    /// one image every container uses holds more bytes (snapshot + content)
    /// than `LayersSize` (snapshots only), so `docker system df` prints a
    /// negative reclaimable size for images: dockwatch exports 0.
    events_exits_refresh_and_disk_usage_on_the_containerd_store(Store::Containerd);
});

#[allow(clippy::too_many_lines)] // one story: exits, df, refresh, restart
fn events_exits_refresh_and_disk_usage_on(store: Store) {
    let (dir, mut own, cli) =
        own_daemon_with_image_on(&Testbed::get(), store, "events", "dwtest/ev:1");
    let dw = Dockwatch::start(&format!(
        "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\nimages_interval = \"1h\"\ndisk_interval = \"1s\"\n{}",
        daemon_toml("c", &own.host())
    ));
    // Exit codes are what this test is about: run does not check them, and
    // returns what docker said (for failure messages).
    let run = |args: &[&str]| {
        let out = cli.try_run(&[&["run", "--network", "none"], args].concat());
        format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    run(&["--name", "zero", "dwtest/ev:1", "/bin/busybox", "true"]);
    run(&[
        "--name",
        "three",
        "dwtest/ev:1",
        "/bin/busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    run(&[
        "-d",
        "--name",
        "killed",
        "dwtest/ev:1",
        "/bin/busybox",
        "sleep",
        "300",
    ]);
    cli.run(&["kill", "killed"]);
    // A hog killed within its first milliseconds is sometimes not marked
    // OOMKilled by dockerd (its oom event comes too early): that run is a
    // signal exit as docker reports it, and the test tries again, so that
    // it sees the oom case it is about. Every run is counted below.
    let mut missed = 0.0;
    let mut hogs = Vec::new();
    for attempt in 1..=3 {
        let name = if attempt == 1 {
            "oom".to_owned()
        } else {
            format!("oom-{attempt}")
        };
        let said = run(&[
            "--name",
            &name,
            "-m",
            "8m",
            "--memory-swap",
            "8m",
            "dwtest/ev:1",
            "/bin/busybox",
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        ]);
        let state = cli.run(&["inspect", "--format", "{{json .State}}", &name]);
        hogs.push(format!("{name}: {said}; {state}"));
        if cli
            .run(&["inspect", "--format", "{{.State.OOMKilled}}", &name])
            .trim()
            == "true"
        {
            break;
        }
        missed += 1.0;
    }
    assert!(
        missed < 3.0,
        "the memory hog was never OOM-killed:\n{}",
        hogs.join("\n")
    );
    let s = dw.wait_for("every run's exit", Duration::from_secs(20), |s| {
        ["zero", "nonzero", "signal", "oom"]
            .iter()
            .all(|c| exits(s, c) >= 1.0)
            && exits(s, "signal") >= 1.0 + missed
    });
    for class in ["zero", "nonzero", "signal", "oom"] {
        let made = if class == "signal" { 1.0 + missed } else { 1.0 };
        eprintln!(
            "compared: {store:?} exits {class}: dockwatch {}, made {made}",
            exits(&s, class)
        );
        assert_eq!(exits(&s, class), made, "{class}:\n{}", s.text);
    }
    assert_eq!(events(&s, "container", "create"), 4.0 + missed);
    assert_eq!(events(&s, "container", "start"), 4.0 + missed);
    assert_eq!(events(&s, "container", "die"), 4.0 + missed);
    assert_eq!(events(&s, "container", "oom"), 1.0);
    assert!(events(&s, "container", "kill") >= 1.0);

    // Disk usage agrees with `docker system df` on the same daemon, once
    // dockwatch has one that started after the last container was made: the
    // call in flight now may have started before, the one after it did not.
    let dfs = |s: &Scrape| {
        s.get(
            "dockwatch_api_request_duration_seconds_count",
            &[("daemon", "c"), ("endpoint", "system_df")],
        )
        .unwrap_or(0.0)
    };
    let seen = dfs(&s);
    let s = dw.wait_for(
        "a /system/df after the containers",
        Duration::from_secs(10),
        |s| dfs(s) >= seen + 2.0,
    );
    let df = cli.run(&[
        "system",
        "df",
        "--format",
        "{{.Type}}|{{.Size}}|{{.Reclaimable}}",
    ]);
    let mut compared = Vec::new();
    let mut negative = Vec::new();
    for line in df.lines() {
        let mut f = line.split('|');
        let (typ, size, reclaimable) = (
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
            f.next().unwrap_or_default(),
        );
        let label = match typ {
            "Images" => "images",
            "Containers" => "containers",
            "Local Volumes" => "volumes",
            "Build Cache" => "build_cache",
            other => panic!("unknown df type {other}"),
        };
        let t = [("daemon", "c"), ("type", label)];
        let ours = s.get("dockwatch_disk_usage_bytes", &t).expect("disk usage");
        eprintln!(
            "compared: {store:?} df {label}: dockwatch size {ours} reclaimable {:?}, docker system df {size} {reclaimable}",
            s.get("dockwatch_disk_reclaimable_bytes", &t)
        );
        assert_eq!(human(ours as u64), size, "{label} size");
        let ours = s
            .get("dockwatch_disk_reclaimable_bytes", &t)
            .expect("reclaimable");
        let theirs = reclaimable.split(' ').next().unwrap_or_default();
        if theirs.starts_with('-') {
            // docker system df's own subtraction went below zero; no
            // byte count of dockwatch does.
            assert_eq!(ours, 0.0, "{label} reclaimable: docker says {theirs}");
            negative.push(label);
        } else {
            assert_eq!(human(ours as u64), theirs, "{label} reclaimable");
        }
        compared.push(label);
    }
    // Every kind was compared (an empty `docker system df` would have
    // compared none).
    compared.sort_unstable();
    assert_eq!(
        compared,
        ["build_cache", "containers", "images", "volumes"],
        "{df}"
    );
    match store {
        Store::Classic => assert!(negative.is_empty(), "{negative:?}:\n{df}"),
        // Here the store's own arithmetic is known to go negative: the test
        // sees the case it is about.
        Store::Containerd => assert_eq!(negative, ["images"], "{df}"),
    }
    assert_byte_counts_sane(&s);
    let unused = cli
        .run(&["images", "--format", "{{.ID}}"])
        .lines()
        .count()
        .saturating_sub(1); // every container uses dwtest/ev:1
    assert_eq!(
        s.get("dockwatch_images_unused", &[("daemon", "c")]),
        Some(unused as f64)
    );

    // Image events refresh the counts long before images_interval (1 h).
    let before = s
        .get("dockwatch_images", &[("daemon", "c")])
        .expect("images");
    cli.import_tiny(&dir.0, "dwtest/ev:2");
    let s = dw.wait_for("the new image", Duration::from_secs(10), |s| {
        s.get("dockwatch_images", &[("daemon", "c")]) == Some(before + 1.0)
    });
    assert!(events(&s, "image", "import") >= 1.0);
    cli.run(&["rmi", "dwtest/ev:2"]);
    dw.wait_for("the image gone", Duration::from_secs(10), |s| {
        s.get("dockwatch_images", &[("daemon", "c")]) == Some(before)
            && events(s, "image", "delete") >= 1.0
    });

    // Restart the daemon while dockwatch listens: counting goes on, nothing
    // is counted twice.
    own.stop();
    dw.wait_for("c down", Duration::from_secs(15), |s| {
        s.get("dockwatch_daemon_up", &[("daemon", "c")]) == Some(0.0)
    });
    own.restart();
    dw.wait_for("c up", Duration::from_secs(30), |s| {
        s.get("dockwatch_daemon_up", &[("daemon", "c")]) == Some(1.0)
    });
    // The listener reconnects with backoff; give it a moment to be back.
    std::thread::sleep(Duration::from_secs(3));
    run(&["--name", "after", "dwtest/ev:1", "/bin/busybox", "true"]);
    let s = dw.wait_for("the exit after the restart", Duration::from_secs(40), |s| {
        exits(s, "zero") >= 2.0
    });
    assert_eq!(exits(&s, "zero"), 2.0, "{}", s.text);
    assert_eq!(exits(&s, "nonzero"), 1.0);
    assert_eq!(exits(&s, "oom"), 1.0);
    assert_byte_counts_sane(&s);
}
