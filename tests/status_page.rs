//! The status page an operator opens first, in a real headless Chromium:
//! one row per daemon (many of them), the daemons that are down first, a
//! filter that narrows the table (here through the page's `#filter` address),
//! no console errors; and a screenshot for the README
//! (`target/status-page.png`).

mod common;

use std::process::Command;

use common::{Dockwatch, Testbed, temp_dir};

/// Daemons up (dockerd A under many names), down (sockets nobody serves)
/// and one over mutual TLS.
const UP: usize = 60;
const DOWN: usize = 5;

fn config(bed: &Testbed, dir: &std::path::Path) -> String {
    let mut out =
        String::from("[poll]\ninterval = \"2s\"\ntimeout = \"1s\"\ndisk_interval = \"0\"\n");
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

fn chromium(args: &[&str], url: &str) -> (String, String) {
    let profile = temp_dir("chromium");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
        ])
        .args(args)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium (Debian package chromium; tests/run.sh installs it)");
    std::fs::remove_dir_all(&profile).ok();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed:\n{log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "console messages on the status page:\n{}",
        console.join("\n")
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), log)
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
            let class = r
                .split("data-state=\"")
                .nth(1)
                .and_then(|c| c.split('"').next())
                .unwrap_or_default()
                .to_owned();
            let name = r
                .split("<td>")
                .nth(1)
                .and_then(|c| c.split("</td>").next())
                .unwrap_or_default()
                .to_owned();
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
            s.samples
                .iter()
                .filter(|(n, _, _)| n == "dockwatch_daemon_up")
                .count()
                == UP + DOWN + 1
        },
    );
    let url = format!("http://127.0.0.1:{}/", dw.port);
    let (dom, _) = chromium(&["--dump-dom"], &url);
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
    let (dom, _) = chromium(&["--dump-dom"], &format!("{url}#build-00"));
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
