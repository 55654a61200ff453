//! HTTPS and basic auth on the endpoint, checked with curl and with a real
//! Prometheus scraping over TLS with credentials (and refused without).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::{Dockwatch, FAST_POLL, Testbed, temp_dir, wait_until};

const USER: &str = "prom";
const PASSWORD: &str = "scrape-Secret-42";

fn secure_config(bed: &Testbed) -> String {
    let certs = format!("{}/certs", bed.var("TESTBED_DIR"));
    // A low cost keeps the test fast; real hashes come from htpasswd -B.
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    format!(
        "tls_cert = \"{certs}/server-cert.pem\"\ntls_key = \"{certs}/server-key.pem\"\n[server.basic_auth_users]\n{USER} = \"{hash}\"\n{FAST_POLL}{}",
        bed.daemon_a("a")
    )
}

/// Status code curl saw for an HTTPS GET, with optional credentials.
fn curl(bed: &Testbed, port: u16, path: &str, auth: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(bed.var("TLS_CA"))
        .arg(format!("https://127.0.0.1:{port}{path}"));
    if let Some(a) = auth {
        cmd.args(["-u", a]);
    }
    String::from_utf8_lossy(&cmd.output().expect("curl").stdout).into_owned()
}

/// Waits for dockwatch to answer over HTTPS with credentials.
fn wait_ready(bed: &Testbed, dw: &Dockwatch) {
    let auth = format!("{USER}:{PASSWORD}");
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || curl(bed, dw.port, "/-/ready", Some(&auth)) == "200",
        || format!("not ready over HTTPS:\n{}", dw.log()),
    );
}

#[test]
fn https_with_basic_auth_refuses_without_credentials() {
    let bed = Testbed::get();
    let dw = Dockwatch::spawn(&secure_config(&bed), &[]);
    wait_ready(&bed, &dw);
    let good = format!("{USER}:{PASSWORD}");
    for path in ["/metrics", "/", "/pulls", "/-/healthy"] {
        assert_eq!(curl(&bed, dw.port, path, Some(&good)), "200", "{path}");
        assert_eq!(
            curl(&bed, dw.port, path, None),
            "401",
            "{path} without credentials"
        );
        assert_eq!(
            curl(&bed, dw.port, path, Some(&format!("{USER}:wrong"))),
            "401",
            "{path} with a wrong password"
        );
        assert_eq!(
            curl(&bed, dw.port, path, Some(&format!("nobody:{PASSWORD}"))),
            "401",
            "{path} with an unknown user"
        );
    }
    // Plain HTTP to the HTTPS port gets nothing useful.
    let plain = common::http_get(dw.port, "/metrics");
    assert!(
        plain.as_ref().map_or(true, |(status, _)| *status != 200),
        "plain HTTP answered: {plain:?}"
    );
    assert!(!dw.log().contains(PASSWORD), "the password is in the log");
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth() {
    let bed = Testbed::get();
    let dw = Dockwatch::spawn(&secure_config(&bed), &[]);
    wait_ready(&bed, &dw);
    let dir = temp_dir("prom");
    let pass_file = dir.join("pass");
    std::fs::write(&pass_file, PASSWORD).expect("write");
    let target = format!("127.0.0.1:{}", dw.port);
    let ca = bed.var("TLS_CA");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: with_auth\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    basic_auth:\n      username: {USER}\n      password_file: {}\n    static_configs:\n      - targets: ['{target}']\n  - job_name: without_auth\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n    static_configs:\n      - targets: ['{target}']\n",
            pass_file.display()
        ),
    )
    .expect("write prometheus.yml");
    let prom = Prometheus::start(dir);
    let port = prom.port;
    let query = |q: &str| -> String {
        let path = format!("/api/v1/query?query={q}");
        common::http_get(port, &path)
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let with = query("up%7Bjob%3D%22with_auth%22%7D");
        let without = query("up%7Bjob%3D%22without_auth%22%7D");
        let images = query("dockwatch_images%7Bjob%3D%22with_auth%22%7D");
        if with.contains("\"value\":[")
            && with.contains("\"1\"]")
            && without.contains("\"value\":[")
            && without.contains("\"0\"]")
            && images.contains("\"daemon\":\"a\"")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape as expected:\nwith auth: {with}\nwithout: {without}\nimages: {images}\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The unauthenticated target is down for a 401, as Prometheus says in
    // its lastError (anywhere else in the JSON "401" may be part of a port,
    // a timestamp or a duration).
    let targets = prom.api("/api/v1/targets").expect("/api/v1/targets");
    let without = targets["activeTargets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["labels"]["job"] == "without_auth"))
        .unwrap_or_else(|| panic!("no without_auth target: {targets}"));
    assert_eq!(without["health"], "down", "{without}");
    assert!(
        without["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP status 401")),
        "the unauthenticated scrape should fail with 401: {without}"
    );
    drop(prom);
}
