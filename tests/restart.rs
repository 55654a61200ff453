//! A daemon stopped mid-run goes down while /metrics keeps answering and the
//! other daemon stays up; started again, it comes back without restarting
//! dockwatch. The stopped daemon is one of this test's own, so the shared
//! test bed is never disturbed.

mod common;

use std::time::{Duration, Instant};

use common::{Dockwatch, FAST_POLL, OwnDaemon, Testbed, daemon_toml, http_get, temp_dir};

#[test]
fn stopped_daemon_goes_down_and_comes_back() {
    let bed = Testbed::get();
    let mut own = OwnDaemon::start(&temp_dir("restart"));
    let dw = Dockwatch::start(&format!(
        "{FAST_POLL}{}{}",
        bed.daemon_a("a"),
        daemon_toml("c", &own.host())
    ));
    // With c's numbers there, so "no stale numbers" below means something.
    dw.wait_for("c up, its images counted", Duration::from_secs(10), |s| {
        s.up("c") == Some(1.0) && s.get("dockwatch_images", &[("daemon", "c")]).is_some()
    });

    own.stop();
    let stopped = Instant::now();
    // Down within one timeout plus one interval (and some slack for a busy machine).
    let s = dw.wait_for("c down", Duration::from_secs(10), |s| {
        s.up("c") == Some(0.0)
    });
    eprintln!("c went down {:?} after the stop", stopped.elapsed());
    assert_eq!(
        s.get("dockwatch_images", &[("daemon", "c")]),
        None,
        "no stale numbers"
    );
    let a_success = s.last_success("a").expect("a has succeeded");
    // While c is down, /metrics answers and a keeps updating.
    let later = dw.wait_for("a to keep polling", Duration::from_secs(10), |s| {
        s.last_success("a") > Some(a_success)
    });
    assert_eq!(later.up("a"), Some(1.0));
    assert_eq!(later.up("c"), Some(0.0));
    assert_eq!(http_get(dw.port, "/-/healthy").expect("healthy").0, 200);

    own.restart();
    dw.wait_for("c up again", Duration::from_secs(10), |s| {
        s.up("c") == Some(1.0)
    });
    let log = dw.log();
    assert_eq!(log.matches("daemon is down").count(), 1, "{log}");
    assert_eq!(log.matches("daemon is up").count(), 3, "{log}");
}
