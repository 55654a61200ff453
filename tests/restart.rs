//! A daemon stopped mid-run goes down while /metrics keeps answering and the
//! other daemon stays up; started again, it comes back without restarting
//! dockwatch. The stopped daemon is one of this test's own, so the shared
//! test bed is never disturbed.

mod common;

use std::time::{Duration, Instant};

use common::{Dockwatch, OwnDaemon, Testbed, http_get, temp_dir};

fn up(d: &'static str) -> impl Fn(&common::Scrape) -> bool {
    move |s| s.get("dockwatch_daemon_up", &[("daemon", d)]) == Some(1.0)
}

#[test]
fn stopped_daemon_goes_down_and_comes_back() {
    let bed = Testbed::get();
    let mut own = OwnDaemon::start(&temp_dir("restart"));
    let dw = Dockwatch::start(&format!(
        "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\n{}[[daemons]]\nname = \"c\"\nhost = \"{}\"\n",
        bed.daemon_a("a"),
        own.host()
    ));
    dw.wait_for("c up", Duration::from_secs(10), up("c"));

    own.stop();
    let stopped = Instant::now();
    // Down within one timeout plus one interval (and some slack for a busy machine).
    let s = dw.wait_for("c down", Duration::from_secs(10), |s| {
        s.get("dockwatch_daemon_up", &[("daemon", "c")]) == Some(0.0)
    });
    eprintln!("c went down {:?} after the stop", stopped.elapsed());
    assert_eq!(
        s.get("dockwatch_images", &[("daemon", "c")]),
        None,
        "no stale numbers"
    );
    let a_success = s
        .get(
            "dockwatch_daemon_last_success_timestamp_seconds",
            &[("daemon", "a")],
        )
        .expect("a has succeeded");
    // While c is down, /metrics answers and a keeps updating.
    let later = dw.wait_for("a to keep polling", Duration::from_secs(10), |s| {
        s.get(
            "dockwatch_daemon_last_success_timestamp_seconds",
            &[("daemon", "a")],
        ) > Some(a_success)
    });
    assert_eq!(
        later.get("dockwatch_daemon_up", &[("daemon", "a")]),
        Some(1.0)
    );
    assert_eq!(
        later.get("dockwatch_daemon_up", &[("daemon", "c")]),
        Some(0.0)
    );
    assert_eq!(http_get(dw.port, "/-/healthy").expect("healthy").0, 200);

    own.restart();
    dw.wait_for("c up again", Duration::from_secs(10), up("c"));
    let log = dw.log();
    assert_eq!(log.matches("daemon is down").count(), 1, "{log}");
    assert_eq!(log.matches("daemon is up").count(), 3, "{log}");
}
