//! Container health and restarts, on dockerd A and on Podman, compared with
//! the docker CLI: `docker ps --filter status=running --filter health=...`
//! for health, and for restarts the daemon's own events (a `start` after a
//! `die`) and `docker inspect`'s `RestartCount`.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    DockerCli, Dockwatch, FAST_POLL, Scrape, Scratch, Testbed, assert_success, wait_until,
};

const HEALTH: [&str; 4] = ["healthy", "unhealthy", "starting", "none"];

fn health(s: &Scrape, daemon: &str) -> Vec<Option<f64>> {
    HEALTH
        .iter()
        .map(|h| {
            s.get(
                "dockwatch_containers_health",
                &[("daemon", daemon), ("status", h)],
            )
        })
        .collect()
}

/// Waits until dockwatch counts `daemon`'s containers by health as the CLI
/// did (`want`), and checks that the CLI still counts the same; the scrape.
fn health_as_the_cli_counts(
    dw: &Dockwatch,
    cli: &DockerCli,
    daemon: &str,
    want: &[Option<f64>],
    within: Duration,
) -> Scrape {
    let s = dw.wait_for("health as the CLI counts it", within, |s| {
        health(s, daemon) == want
    });
    assert_eq!(cli_health(cli), want, "the CLI's counts moved");
    s
}

fn restarts(s: &Scrape, daemon: &str) -> Option<f64> {
    s.get("dockwatch_container_restarts_total", &[("daemon", daemon)])
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Containers and an image a test made, removed however it ends.
struct Cleanup {
    cli: DockerCli,
    containers: Vec<String>,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Absent is fine: this only undoes what the test may have made.
        for c in &self.containers {
            let _ = self.cli.try_run(&["rm", "-f", c]);
        }
        self.cli.rmi_f(&[&self.image]);
    }
}

/// `docker inspect --format FORMAT NAME`, trimmed.
fn inspect(cli: &DockerCli, name: &str, format: &str) -> String {
    cli.run(&["inspect", "--format", format, name])
        .trim()
        .to_owned()
}

/// Runs `name` detached from `image` with these extra flags and command.
fn run(cli: &DockerCli, name: &str, flags: &[&str], image: &str, cmd: &[&str]) {
    let mut args = vec!["run", "-d", "--network", "none", "--name", name];
    args.extend(flags);
    args.push(image);
    args.extend(cmd);
    cli.run(&args);
}

const SLEEP: [&str; 3] = ["/bin/busybox", "sleep", "600"];

/// The CLI's count of running containers per health, `none` as the CLI's
/// running containers less the others (Podman's `health=none` filter
/// matches nothing).
fn cli_health(cli: &DockerCli) -> Vec<Option<f64>> {
    let known: Vec<u64> = HEALTH[..3]
        .iter()
        .map(|h| cli.running_with_health(h))
        .collect();
    let none = cli.running().saturating_sub(known.iter().sum::<u64>());
    known
        .into_iter()
        .chain([none])
        .map(|n| Some(n as f64))
        .collect()
}

/// `docker run` options for a healthcheck: `cmd` every `interval`, one
/// failure enough to be unhealthy.
fn healthcheck(cmd: &'static str, interval: &'static str) -> [&'static str; 6] {
    [
        "--health-cmd",
        cmd,
        "--health-interval",
        interval,
        "--health-retries",
        "1",
    ]
}

#[test]
#[allow(clippy::too_many_lines)] // one story: health, then restarts
fn health_and_restarts_on_dockerd() {
    let bed = Testbed::get();
    let a = bed.cli_a();
    let pid = std::process::id();
    let image = format!("dwsig/health-{pid}:1");
    let name = |what: &str| format!("sig-{what}-{pid}");
    let [ok, bad, starting, plain, paused, looping] =
        ["ok", "bad", "starting", "plain", "paused", "loop"].map(name);
    let dir = Scratch::new("health");
    let _made = Cleanup {
        cli: a.clone(),
        containers: vec![
            ok.clone(),
            bad.clone(),
            starting.clone(),
            plain.clone(),
            paused.clone(),
            looping.clone(),
        ],
        image: image.clone(),
    };
    a.import_variant(&dir.0, &image, "health");
    let check = healthcheck;
    run(&a, &ok, &check("exit 0", "1s"), &image, &SLEEP);
    run(&a, &bad, &check("exit 1", "1s"), &image, &SLEEP);
    // The first check comes after an hour: starting until then.
    run(&a, &starting, &check("exit 0", "1h"), &image, &SLEEP);
    run(&a, &plain, &[], &image, &SLEEP);
    // Paused: neither running nor of any health.
    run(&a, &paused, &check("exit 0", "1s"), &image, &SLEEP);
    a.run(&["pause", &paused]);
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            inspect(&a, &ok, "{{.State.Health.Status}}") == "healthy"
                && inspect(&a, &bad, "{{.State.Health.Status}}") == "unhealthy"
        },
        || "the healthchecks did not settle within 30 s".to_owned(),
    );

    let dw = Dockwatch::start(&format!("{FAST_POLL}{}", bed.daemon_a("a")));
    let want = cli_health(&a);
    // One of each, and the bed's two running containers and `plain` have no
    // healthcheck; the CLI's own `health=none` filter agrees.
    assert_eq!(
        want,
        [Some(1.0), Some(1.0), Some(1.0), Some(3.0)],
        "the CLI's counts"
    );
    assert_eq!(a.running_with_health("none"), 3);
    let s = health_as_the_cli_counts(&dw, &a, "a", &want, Duration::from_secs(20));
    let running = s.get(
        "dockwatch_containers",
        &[("daemon", "a"), ("state", "running")],
    );
    let sum: f64 = health(&s, "a").iter().flatten().sum();
    assert_eq!(running, Some(sum), "every running container has one health");
    assert_eq!(
        s.get(
            "dockwatch_containers",
            &[("daemon", "a"), ("state", "paused")]
        ),
        Some(1.0)
    );
    assert_eq!(restarts(&s, "a"), Some(0.0));

    // A container that exits at once under --restart always, until its
    // policy is taken away; then a docker restart of a healthy one. (Not
    // `docker stop`: a stop while dockerd waits to restart it cancels that
    // restart, which RestartCount has already counted.)
    let since = now();
    run(
        &a,
        &looping,
        &["--restart", "always"],
        &image,
        &["/bin/busybox", "false"],
    );
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            inspect(&a, &looping, "{{.RestartCount}}")
                .parse::<u32>()
                .unwrap_or(0)
                >= 4
        },
        || "the looping container did not restart 4 times within 60 s".to_owned(),
    );
    a.run(&["update", "--restart", "no", &looping]);
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || inspect(&a, &looping, "{{.State.Status}}") == "exited",
        || "the looping container did not end".to_owned(),
    );
    a.run(&["restart", &ok]);
    let by_policy: u64 = inspect(&a, &looping, "{{.RestartCount}}")
        .parse()
        .expect("a count");
    let in_events = a.restarts_in_events(since);
    assert_eq!(
        in_events,
        by_policy + 1,
        "the events tell the policy's restarts and the docker restart"
    );
    let s = dw.wait_for(
        "the restarts the events tell",
        Duration::from_secs(20),
        |s| restarts(s, "a") >= Some(in_events as f64),
    );
    assert_eq!(restarts(&s, "a"), Some(in_events as f64), "{}", s.text);
    eprintln!(
        "dockerd A: {by_policy} restarts by the policy + 1 docker restart = {in_events} in the events; dockwatch counted {:?}",
        restarts(&s, "a")
    );
}

#[test]
fn health_and_restarts_on_podman() {
    let bed = Testbed::get();
    let p = bed.cli_at(bed.var("PODMAN_HOST"));
    let pid = std::process::id();
    let image = format!("dwsig/phealth-{pid}:1");
    let name = |what: &str| format!("sig-p{what}-{pid}");
    let [ok, bad, starting, plain, looping] = ["ok", "bad", "starting", "plain", "loop"].map(name);
    let dir = Scratch::new("health-podman");
    let _made = Cleanup {
        cli: p.clone(),
        containers: vec![
            ok.clone(),
            bad.clone(),
            starting.clone(),
            plain.clone(),
            looping.clone(),
        ],
        image: image.clone(),
    };
    p.import_variant(&dir.0, &image, "health");
    let check = |cmd: &'static str| healthcheck(cmd, "1h");
    run(&p, &ok, &check("exit 0"), &image, &SLEEP);
    run(&p, &bad, &check("exit 1"), &image, &SLEEP);
    run(&p, &starting, &check("exit 0"), &image, &SLEEP);
    run(&p, &plain, &[], &image, &SLEEP);
    // No systemd runs Podman's healthcheck timers here: run each check once
    // by hand (`podman healthcheck run` exits 1 for the failing one).
    for (c, passes) in [(&ok, true), (&bad, false)] {
        let out = Command::new(bed.var("PODMAN_CLI"))
            .args(["healthcheck", "run", c])
            .output()
            .expect("podman healthcheck run");
        if passes {
            assert_success(&out, "podman healthcheck run");
        }
    }

    let dw = Dockwatch::start(&format!(
        "[poll]\ninterval = \"3s\"\ntimeout = \"2500ms\"\n[[daemons]]\nname = \"p\"\nhost = \"{}\"\n",
        bed.var("PODMAN_HOST")
    ));
    let want = cli_health(&p);
    assert_eq!(
        want,
        [Some(1.0), Some(1.0), Some(1.0), Some(2.0)],
        "the CLI's counts"
    );
    let s = health_as_the_cli_counts(&dw, &p, "p", &want, Duration::from_secs(30));
    let running = s.get(
        "dockwatch_containers",
        &[("daemon", "p"), ("state", "running")],
    );
    let sum: f64 = health(&s, "p").iter().flatten().sum();
    assert_eq!(running, Some(sum));

    // Podman restarts without backoff (about ten times a second here), and
    // a stop does not end an `always` loop: on-failure:3 restarts exactly
    // three times.
    let before = restarts(&s, "p").expect("the restart counter");
    let since = now();
    run(
        &p,
        &looping,
        &["--restart", "on-failure:3"],
        &image,
        &["/bin/busybox", "false"],
    );
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || inspect(&p, &looping, "{{.RestartCount}} {{.State.Status}}") == "3 exited",
        || "the failing container did not end after 3 restarts within 60 s".to_owned(),
    );
    let in_events = p.restarts_in_events(since);
    assert_eq!(in_events, 3, "Podman's events");
    let s = dw.wait_for("3 restarts", Duration::from_secs(30), |s| {
        restarts(s, "p") >= Some(before + 3.0)
    });
    assert_eq!(restarts(&s, "p"), Some(before + 3.0), "{}", s.text);
}
