//! Failure is a value, not an absence, on real daemons: a filter group that
//! dockerd A starts refusing (its `before` image is removed while dockwatch
//! watches) shows `dockwatch_image_filter_success 0` and is logged once, while
//! the other groups keep matching `docker images --filter`; a `/system/df`
//! that fails (the test's own dockerd, stopped) shows
//! `dockwatch_disk_usage_success 0` until it works again.
// Counts and byte totals here are far below 2^52.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use common::{DockerCli, Dockwatch, OwnDaemon, Scrape, Scratch, Testbed};

const FAST_POLL: &str = "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\n";

/// The filter group that the test makes fail.
const GONE: &str = "before-gone";

/// Removes the test's image from A, also when the test fails half-way.
struct RemoveImage<'a> {
    cli: &'a DockerCli,
    tag: String,
}

impl RemoveImage<'_> {
    /// Absent is fine: this only undoes the import.
    fn remove(&self) {
        let _ = Command::new(&self.cli.program)
            .args(&self.cli.args)
            .args(["rmi", "-f", &self.tag])
            .output();
    }
}

impl Drop for RemoveImage<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

fn success(s: &Scrape, daemon: &str, filter: &str) -> Option<f64> {
    s.get(
        "dockwatch_image_filter_success",
        &[("daemon", daemon), ("filter", filter)],
    )
}

fn matches(s: &Scrape, daemon: &str, filter: &str) -> Option<f64> {
    s.get(
        "dockwatch_image_filter_matches",
        &[("daemon", daemon), ("filter", filter)],
    )
}

/// Every `dockwatch_image_filter_success` series of `daemon`: (filter, value).
fn successes(s: &Scrape, daemon: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = s
        .samples
        .iter()
        .filter(|(n, l, _)| {
            n == "dockwatch_image_filter_success" && l.get("daemon").is_some_and(|d| d == daemon)
        })
        .map(|(_, l, v)| (l.get("filter").cloned().unwrap_or_default(), *v))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The log lines that say a filter group started failing.
fn refusals<'a>(log: &'a str, filter: &str) -> Vec<&'a str> {
    let field = format!("filter={filter} ");
    log.lines()
        .filter(|l| l.contains("refused a filter group") && l.contains(&field))
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)] // one story, told in order
fn a_group_the_daemon_starts_refusing_is_zero_and_logged_once() {
    let bed = Testbed::get();
    let cli = bed.cli_a();
    let dir = Scratch::new("gone");
    let seeded = cli.image_ids(&[]);

    // A tiny image of the test's own, made before dockwatch starts: the
    // `before` group names it.
    let tag = format!("dwfail/gone-{}:1", std::process::id());
    let guard = RemoveImage {
        cli: &cli,
        tag: tag.clone(),
    };
    cli.import_tiny(&dir.0, &tag);
    let before = format!("before={tag}");
    // (name, TOML filters, the same filters as docker CLI flags)
    let groups: [(&str, String, Vec<&str>); 3] = [
        (
            "ci",
            r#"{ reference = ["ci/*"] }"#.into(),
            vec!["reference=ci/*"],
        ),
        (
            "cache-label",
            r#"{ label = ["dwtest.group=cache"] }"#.into(),
            vec!["label=dwtest.group=cache"],
        ),
        (GONE, format!(r#"{{ before = ["{tag}"] }}"#), vec![&before]),
    ];
    let mut config = format!("{FAST_POLL}{}", bed.daemon_a("a"));
    for (name, filters, _) in &groups {
        // Writing to a String cannot fail.
        let _ = writeln!(
            config,
            "[[image_filters]]\nname = \"{name}\"\nfilters = {filters}"
        );
    }

    // 1. Every group works, and counts what `docker images --filter` counts.
    let want: Vec<(&str, usize, u64)> = groups
        .iter()
        .map(|(name, _, flags)| {
            let ids = cli.image_ids(flags);
            (*name, ids.len(), cli.total_size(&ids))
        })
        .collect();
    eprintln!("docker images --filter, with {tag} present: {want:?}");
    assert!(
        want.iter().all(|(_, n, _)| *n > 0),
        "every group should match some seeded image: {want:?}"
    );
    let dw = Dockwatch::start(&config);
    let s = dw.wait_for(
        "every group's success and count",
        Duration::from_secs(20),
        |s| {
            want.iter().all(|(name, n, _)| {
                success(s, "a", name) == Some(1.0) && matches(s, "a", name) == Some(*n as f64)
            })
        },
    );
    for (name, _, bytes) in &want {
        assert_eq!(
            s.get(
                "dockwatch_image_filter_size_bytes",
                &[("daemon", "a"), ("filter", name)]
            ),
            Some(*bytes as f64),
            "{name} bytes vs docker image inspect"
        );
    }
    assert_eq!(
        successes(&s, "a"),
        [
            ("before-gone".to_owned(), 1.0),
            ("cache-label".to_owned(), 1.0),
            ("ci".to_owned(), 1.0)
        ]
    );
    assert!(refusals(&dw.log(), GONE).is_empty(), "{}", dw.log());

    // 2. The image goes: dockerd now answers the group with 404.
    cli.run(&["rmi", &tag]);
    let refused = Command::new(&cli.program)
        .args(&cli.args)
        .args(["images", "--filter", &before])
        .output()
        .expect("docker images");
    assert!(
        !refused.status.success(),
        "dockerd should refuse {before} now"
    );
    eprintln!(
        "docker images --filter {before}: {}",
        String::from_utf8_lossy(&refused.stderr).trim()
    );
    let s = dw.wait_for(
        "the before group at 0, its series gone",
        Duration::from_secs(15),
        |s| success(s, "a", GONE) == Some(0.0),
    );
    assert_eq!(matches(&s, "a", GONE), None, "{}", s.text);
    assert_eq!(
        s.get(
            "dockwatch_image_filter_size_bytes",
            &[("daemon", "a"), ("filter", GONE)]
        ),
        None
    );
    assert_eq!(
        s.get("dockwatch_daemon_up", &[("daemon", "a")]),
        Some(1.0),
        "a refused group does not take the daemon down"
    );

    // A few more polls (and the image events' refresh): it stays 0, the
    // others stay 1 with the counts the docker CLI gives now, and the log
    // said it once.
    std::thread::sleep(Duration::from_secs(4));
    let s = dw.scrape();
    assert_eq!(
        successes(&s, "a"),
        [
            ("before-gone".to_owned(), 0.0),
            ("cache-label".to_owned(), 1.0),
            ("ci".to_owned(), 1.0)
        ]
    );
    assert_eq!(matches(&s, "a", GONE), None);
    for (name, _, flags) in groups.iter().filter(|(n, _, _)| *n != GONE) {
        let ids = cli.image_ids(flags);
        eprintln!("after the removal, {name}: {} images", ids.len());
        assert_eq!(
            matches(&s, "a", name),
            Some(ids.len() as f64),
            "{name} vs docker images --filter {flags:?}"
        );
        assert_eq!(
            s.get(
                "dockwatch_image_filter_size_bytes",
                &[("daemon", "a"), ("filter", name)]
            ),
            Some(cli.total_size(&ids) as f64),
            "{name} bytes"
        );
    }
    let log = dw.log();
    let lines = refusals(&log, GONE);
    assert_eq!(lines.len(), 1, "logged once, not every poll:\n{log}");
    assert!(
        lines[0].contains("daemon=a ") && lines[0].contains("404") && lines[0].contains(&tag),
        "the line names the daemon and its answer: {}",
        lines[0]
    );
    eprintln!("log: {}", lines[0]);
    for other in ["ci", "cache-label"] {
        assert!(refusals(&log, other).is_empty(), "{log}");
    }

    // Nothing left behind on A.
    drop(dw);
    drop(guard);
    assert_eq!(cli.image_ids(&[]), seeded, "images left behind on A");
}

#[test]
fn a_failing_disk_usage_is_zero_until_it_works_again() {
    let bed = Testbed::get();
    let dir = Scratch::new("df");
    std::fs::create_dir_all(dir.0.join("d")).expect("daemon dir");
    let mut own = OwnDaemon::start(&dir.0.join("d"));
    let cli = DockerCli {
        program: bed.var("DOCKER_CLI").to_owned(),
        args: vec!["-H".into(), own.host()],
    };
    // One image no container uses.
    cli.import_tiny(&dir.0, "dwfail/df:1");
    let dw = Dockwatch::start(&format!(
        "{}disk_interval = \"1s\"\n[[daemons]]\nname = \"c\"\nhost = \"{}\"\n",
        FAST_POLL,
        own.host()
    ));
    let c = [("daemon", "c")];
    let images = [("daemon", "c"), ("type", "images")];
    let s = dw.wait_for("a good /system/df", Duration::from_secs(20), |s| {
        s.get("dockwatch_disk_usage_success", &c) == Some(1.0)
    });
    // What `docker system df` says: images no container uses.
    let df = cli.run(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ]);
    eprintln!("docker system df:\n{df}");
    let unused = df
        .lines()
        .find_map(|l| {
            let f: Vec<u64> = l
                .strip_prefix("Images ")?
                .split_whitespace()
                .map(|n| n.parse().expect("a count"))
                .collect();
            Some(f[0] - f[1])
        })
        .expect("an Images line");
    assert_eq!(unused, 1, "the imported image, unused");
    assert_eq!(
        s.get("dockwatch_images_unused", &c),
        Some(unused as f64),
        "vs docker system df"
    );
    let bytes = s
        .get("dockwatch_disk_usage_bytes", &images)
        .expect("disk usage while df works");
    assert!(bytes > 0.0, "the imported image takes room: {bytes}");

    // The daemon goes away: /system/df cannot connect.
    own.stop();
    dw.wait_for(
        "/system/df failing reported as 0",
        Duration::from_secs(15),
        |s| s.get("dockwatch_disk_usage_success", &c) == Some(0.0),
    );
    // A few more failed runs: still 0, still logged once.
    std::thread::sleep(Duration::from_secs(3));
    let s = dw.scrape();
    assert_eq!(s.get("dockwatch_disk_usage_success", &c), Some(0.0));
    for family in [
        "dockwatch_disk_usage_bytes",
        "dockwatch_disk_reclaimable_bytes",
        "dockwatch_images_unused",
    ] {
        assert_eq!(s.get(family, &c), None, "{family} while df fails");
    }
    let log = dw.log();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/system/df failed") && l.contains("daemon=c "))
        .collect();
    assert_eq!(warned.len(), 1, "logged once:\n{log}");
    eprintln!("log: {}", warned[0]);

    // It works again once the daemon is back.
    own.restart();
    let s = dw.wait_for("/system/df working again", Duration::from_secs(20), |s| {
        s.get("dockwatch_disk_usage_success", &c) == Some(1.0)
    });
    assert_eq!(s.get("dockwatch_disk_usage_bytes", &images), Some(bytes));
    assert_eq!(s.get("dockwatch_images_unused", &c), Some(unused as f64));
}
