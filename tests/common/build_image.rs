//! `deploy/build-image.sh`, run as a user would: the container image for
//! tests/deploy.rs and the Swarm stack in tests/swarm.rs.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BUILD_SCRIPT: &str = "deploy/build-image.sh";
/// A cold static release build on a busy 2-core machine, with room to spare.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// The last `lines` lines of the file at `path` (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let all = fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = all.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` (the script with its tag, directory and environment) with
/// its stdout to `out_path` and its stderr to `log_path`, and waits for it;
/// fails the test with the log's last lines if it has not finished
/// `BUILD_TIMEOUT` after `started`.
pub fn run_build_script(
    cmd: &mut Command,
    started: Instant,
    out_path: &Path,
    log_path: &Path,
) -> ExitStatus {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(out_path).expect("stdout file"))
        .stderr(fs::File::create(log_path).expect("log file"))
        .spawn()
        .expect("run deploy/build-image.sh");
    loop {
        if let Some(status) = child.try_wait().expect("wait for build-image.sh") {
            break status;
        }
        if started.elapsed() > BUILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{BUILD_SCRIPT} did not finish within {BUILD_TIMEOUT:?}; last log lines:\n{}",
                tail(log_path, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
