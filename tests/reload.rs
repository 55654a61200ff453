//! Reloading the configuration without a restart: SIGHUP, and POST /-/reload
//! when enabled.

mod common;

use std::time::Duration;

use common::{Dockwatch, Scrape, Testbed, http_get};

const POLL: &str = "[poll]\ninterval = \"1s\"\ntimeout = \"800ms\"\ndisk_interval = \"0\"\n";

/// Replaces dockwatch's config file, keeping its listen address.
fn rewrite(dw: &Dockwatch, server_extra: &str, body: &str) {
    std::fs::write(
        dw.dir.join("config.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n{server_extra}{body}",
            dw.port
        ),
    )
    .expect("write config");
}

fn reload_ok(s: &Scrape) -> Option<f64> {
    s.get("dockwatch_config_last_reload_successful", &[])
}

fn http_post(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn sighup_adds_and_removes_daemons_and_rejects_a_bad_config() {
    let bed = Testbed::get();
    let dw = Dockwatch::start(&format!("{POLL}{}", bed.daemon_a("a")));
    let s = dw.scrape();
    assert_eq!(s.up("a"), Some(1.0));
    assert_eq!(reload_ok(&s), Some(1.0));
    let first_load = s
        .get(
            "dockwatch_config_last_reload_success_timestamp_seconds",
            &[],
        )
        .expect("timestamp");

    // Add daemon b.
    rewrite(
        &dw,
        "",
        &format!("{POLL}{}{}", bed.daemon_a("a"), bed.daemon_b("b")),
    );
    dw.signal("HUP");
    let s = dw.wait_for("b to be watched", Duration::from_secs(20), |s| {
        s.up("b") == Some(1.0) && s.up("a") == Some(1.0)
    });
    assert!(
        s.get(
            "dockwatch_config_last_reload_success_timestamp_seconds",
            &[]
        ) > Some(first_load)
    );

    // Remove daemon a: its series disappear.
    rewrite(&dw, "", &format!("{POLL}{}", bed.daemon_b("b")));
    dw.signal("HUP");
    let s = dw.wait_for("a to be gone", Duration::from_secs(20), |s| {
        s.up("a").is_none()
    });
    assert!(
        !s.text.contains("daemon=\"a\""),
        "series of a left behind:\n{}",
        s.text
    );
    assert_eq!(s.up("b"), Some(1.0));

    // A bad config is rejected and the running one kept.
    rewrite(&dw, "", "[poll]\ninterval = \"often\"\n");
    dw.signal("HUP");
    let s = dw.wait_for("the rejection", Duration::from_secs(20), |s| {
        reload_ok(s) == Some(0.0)
    });
    assert_eq!(s.up("b"), Some(1.0));
    // The rejection says which key is wrong, and why.
    let log = dw.log();
    let Some((_, rejection)) = log.split_once("reload rejected") else {
        panic!("no rejection in the log:\n{log}");
    };
    assert!(
        rejection.contains("poll.interval: invalid duration \"often\""),
        "{log}"
    );
    // Still polling b afterwards.
    let t = s.last_success("b").expect("b polled");
    dw.wait_for("b to keep polling", Duration::from_secs(10), |s| {
        s.last_success("b") > Some(t)
    });
}

#[test]
fn reload_over_http_only_when_enabled() {
    let bed = Testbed::get();
    let dw = Dockwatch::start(&format!("{POLL}{}", bed.daemon_a("a")));
    let (status, _) = http_post(dw.port, "/-/reload");
    assert_eq!(status, 403, "POST /-/reload must be off by default");
    drop(dw);

    let dw = Dockwatch::start(&format!(
        "enable_reload = true\n{POLL}{}",
        bed.daemon_a("a")
    ));
    // Swap daemon a's name: a different daemon set.
    rewrite(
        &dw,
        "enable_reload = true\n",
        &format!("{POLL}{}", bed.daemon_a("renamed")),
    );
    let (status, body) = http_post(dw.port, "/-/reload");
    assert_eq!(status, 202, "{body}");
    let s = dw.wait_for("the renamed daemon", Duration::from_secs(20), |s| {
        s.up("renamed") == Some(1.0) && s.up("a").is_none()
    });
    assert_eq!(reload_ok(&s), Some(1.0));
    assert_eq!(http_get(dw.port, "/-/ready").expect("ready").0, 200);
}
