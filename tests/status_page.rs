//! The status page an operator opens first, in a real headless Chromium:
//! one row per daemon (many of them), the daemons that are down first, a
//! filter that narrows the table (here through the page's `#filter` address),
//! no console errors; and a screenshot for the README
//! (`target/status-page.png`).

mod common;

use common::{Dockwatch, Testbed, temp_dir};

/// Daemons up (dockerd A under many names), down (sockets nobody serves)
/// and one over mutual TLS.
const UP: usize = 60;
const DOWN: usize = 5;

fn config(bed: &Testbed, dir: &std::path::Path) -> String {
    // A long timeout: sixty names on one dockerd of a busy machine must not
    // look down for a slow answer.
    let mut out =
        String::from("[poll]\ninterval = \"10s\"\ntimeout = \"5s\"\ndisk_interval = \"0\"\n");
    for i in 0..UP {
        out += &common::daemon_toml(&format!("build-{i:03}"), bed.var("DOCKER_A"));
    }
    for i in 0..DOWN {
        let sock = dir.join(format!("gone-{i}.sock"));
        out += &common::daemon_toml(&format!("gone-{i}"), &format!("unix://{}", sock.display()));
    }
    out += &bed.daemon_b("tls-b");
    out
}

fn chromium(args: &[&str], url: &str) -> String {
    common::chromium(args, url, 3000)
}

/// What stands in `r` between the first `open` and the next `close` after
/// it ("" if nothing does).
fn between(r: &str, open: &str, close: &str) -> String {
    r.split(open)
        .nth(1)
        .and_then(|c| c.split(close).next())
        .unwrap_or_default()
        .to_owned()
}

/// The daemon rows of the dumped page: (state, first cell, hidden).
fn rows(dom: &str) -> Vec<(String, String, bool)> {
    let body = dom
        .split("<tbody>")
        .nth(1)
        .and_then(|b| b.split("</tbody>").next())
        .expect("the daemons table");
    body.split("<tr ")
        .skip(1)
        .map(|r| {
            let class = between(r, "data-state=\"", "\"");
            let name = between(r, "<td>", "</td>");
            let tag = r.split('>').next().unwrap_or_default();
            (class, name, tag.contains("hidden"))
        })
        .collect()
}

#[test]
fn status_page_carries_a_fleet() {
    let bed = Testbed::get();
    let dir = temp_dir("status");
    let dw = Dockwatch::start(&config(&bed, &dir));
    dw.wait_for(
        "every daemon polled",
        std::time::Duration::from_secs(60),
        |s| {
            let up: Vec<f64> = s
                .samples
                .iter()
                .filter(|(n, _, _)| n == "dockwatch_daemon_up")
                .map(|(_, _, v)| *v)
                .collect();
            up.len() == UP + DOWN + 1 && up.iter().filter(|v| **v > 0.5).count() == UP + 1
        },
    );
    let url = format!("http://127.0.0.1:{}/", dw.port);
    let dom = chromium(&["--dump-dom"], &url);
    let all = rows(&dom);
    assert_eq!(all.len(), UP + DOWN + 1, "one row per daemon");
    // Down first, by name; then the rest.
    let first: Vec<&str> = all.iter().take(DOWN).map(|r| r.1.as_str()).collect();
    assert_eq!(first, ["gone-0", "gone-1", "gone-2", "gone-3", "gone-4"]);
    assert!(all.iter().take(DOWN).all(|r| r.0 == "down"), "{all:?}");
    assert!(all.iter().skip(DOWN).all(|r| r.0 == "up"), "{all:?}");
    assert!(dom.contains(&format!(
        "{} daemons: {} up, {DOWN} down",
        UP + DOWN + 1,
        UP + 1
    )));
    assert!(dom.contains(">connect<"), "the down daemons' reason");
    assert!(all.iter().all(|r| !r.2), "nothing hidden without a filter");

    // The filter narrows the table: "build-00" keeps build-000..build-009.
    let dom = chromium(&["--dump-dom"], &format!("{url}#build-00"));
    let filtered = rows(&dom);
    let visible: Vec<&str> = filtered
        .iter()
        .filter(|r| !r.2)
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(visible.len(), 10, "{visible:?}");
    assert!(
        visible.iter().all(|n| n.starts_with("build-00")),
        "{visible:?}"
    );
    assert!(
        dom.contains(&format!("10 of {} shown", UP + DOWN + 1)),
        "{dom}"
    );

    // The picture in the README.
    let png = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/status-page.png");
    chromium(
        &[
            "--window-size=1400,900",
            &format!("--screenshot={}", png.display()),
            "--hide-scrollbars",
        ],
        &url,
    );
    let size = std::fs::metadata(&png).map_or(0, |m| m.len());
    assert!(size > 10_000, "a screenshot of the page: {size} bytes");
    std::fs::remove_dir_all(dir).ok();
}

/// The replay fleet (benches/replay.py) stands in for a thousand daemons:
/// the page lists every one, the down daemons first, and filters them.
#[test]
fn status_page_carries_a_thousand_daemons() {
    const FLEET: usize = 1000;
    let dir = temp_dir("status-fleet");
    let fleet_dir = dir.join("fleet");
    std::fs::create_dir_all(&fleet_dir).expect("fleet dir");
    let log = std::fs::File::create(dir.join("replay.log")).expect("log");
    let mut replay = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/replay.py"))
        .args(["serve", "--count", &FLEET.to_string(), "--dir"])
        .arg(&fleet_dir)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("python3 benches/replay.py");
    let endpoints = fleet_dir.join("endpoints.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !endpoints.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay fleet did not start: {}",
            std::fs::read_to_string(dir.join("replay.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&endpoints).expect("endpoints.json"))
            .expect("a list");
    assert_eq!(list.len(), FLEET);
    let mut config =
        String::from("[poll]\ninterval = \"10s\"\ntimeout = \"5s\"\ndisk_interval = \"0\"\n");
    for e in &list {
        config += &common::daemon_toml(
            e["name"].as_str().expect("a name"),
            e["host"].as_str().expect("a host"),
        );
    }
    for i in 0..DOWN {
        let sock = dir.join(format!("gone-{i}.sock"));
        config += &common::daemon_toml(&format!("gone-{i}"), &format!("unix://{}", sock.display()));
    }
    let dw = Dockwatch::start(&config);
    let url = format!("http://127.0.0.1:{}/", dw.port);
    let dom = chromium(&["--dump-dom"], &url);
    let all = rows(&dom);
    assert_eq!(all.len(), FLEET + DOWN, "one row per daemon");
    assert!(
        all.iter().take(DOWN).all(|r| r.0 == "down"),
        "{:?}",
        &all[..DOWN]
    );
    assert!(
        all.iter().skip(DOWN).all(|r| r.0 == "up"),
        "every replay endpoint up"
    );
    // A filter that keeps one daemon of the thousand.
    let one = list[FLEET / 2]["name"].as_str().expect("a name");
    let dom = chromium(&["--dump-dom"], &format!("{url}#{one}"));
    let visible: Vec<String> = rows(&dom)
        .into_iter()
        .filter(|r| !r.2)
        .map(|r| r.1)
        .collect();
    assert!(visible.iter().any(|n| n == one), "{visible:?}");
    assert!(visible.len() < 20, "the filter narrows: {}", visible.len());
    drop(dw);
    let _ = replay.kill();
    let _ = replay.wait();
    std::fs::remove_dir_all(dir).ok();
}
