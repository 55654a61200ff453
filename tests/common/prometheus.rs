//! One real Prometheus (Debian's package) for the tests that scrape
//! dockwatch the way users do.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, http_get, reap, wait_until};

/// A Prometheus on 127.0.0.1, killed (and its directory removed) when dropped.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on `dir/prometheus.yml` (which the caller wrote,
    /// with whatever files it names) and waits until it is ready.
    pub fn start(dir: PathBuf) -> Self {
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus (Debian package prometheus; tests/testbed.sh installs it)");
        let mut p = Self { child, port, dir };
        // Ready, or dead (a config or rule file it rejects), or too slow.
        let deadline = Instant::now() + Duration::from_secs(90);
        while !matches!(http_get(p.port, "/-/ready"), Ok((200, _))) {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("Prometheus exited ({status}); log:\n{}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready within 90 s; log:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        p
    }

    /// The last 40 lines of its log.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        wait_until(timeout, Duration::from_millis(250), cond, || {
            format!(
                "timed out after {timeout:?} waiting for {what}; Prometheus log:\n{}",
                self.log()
            )
        });
    }

    /// GET an API path; the parsed JSON on status success, else the error text.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.port, path).map_err(|e| format!("GET {path}: {e}"))?;
        let json: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {path}: HTTP {status}, not JSON ({e}): {body}"))?;
        if json["status"] == "success" {
            Ok(json["data"].clone())
        } else {
            Err(format!(
                "HTTP {status}, {}: {}",
                json["errorType"].as_str().unwrap_or("?"),
                json["error"].as_str().unwrap_or(&body)
            ))
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        reap(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `promtool check metrics` of an exposition (fed on its stdin): its
/// output, for the caller to judge.
pub fn promtool_check_metrics(text: &str) -> Output {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; tests/run.sh installs it)");
    {
        let mut stdin = promtool.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("feed promtool");
    }
    promtool.wait_with_output().expect("promtool")
}
