//! The command line: `check-config` and config errors, without a daemon.

mod common;

use std::process::Command;

use common::temp_dir;

fn check_config(body: Option<&str>) -> (i32, String) {
    let dir = temp_dir("cli");
    let mut cmd = Command::new(common::binary());
    cmd.current_dir(&dir).arg("check-config");
    if let Some(body) = body {
        let path = dir.join("dockwatch.toml");
        std::fs::write(&path, body).expect("write config");
        cmd.arg("--config").arg(&path);
    }
    let out = cmd.output().expect("run dockwatch");
    std::fs::remove_dir_all(&dir).ok();
    (out.status.code().unwrap_or(-1), common::output_text(&out))
}

#[test]
fn good_config_exits_zero() {
    let (code, out) = check_config(Some(
        "[poll]\ninterval = \"30s\"\n[[daemons]]\nname = \"local\"\nhost = \"unix:///var/run/docker.sock\"\n",
    ));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("config OK"), "{out}");
}

#[test]
fn no_config_at_all_is_valid() {
    let (code, out) = check_config(None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("built-in defaults"), "{out}");
}

#[test]
fn the_shipped_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let out = Command::new(common::binary())
        .args(["check-config", "--config", path])
        .output()
        .expect("run");
    common::assert_success(&out, "dockwatch check-config --config config.toml");
}

#[test]
fn every_problem_is_printed_and_exits_two() {
    let (code, out) = check_config(Some(
        "[poll]\ninterval = \"5s\"\ntimeout = \"9s\"\n[[daemons]]\nname = \"a\"\nhost = \"ftp://x\"\n[[daemons]]\nname = \"a\"\nhost = \"tcp://h:2376\"\n[daemons.tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
    ));
    assert_eq!(code, 2, "{out}");
    let keys = [
        "poll.timeout",
        "daemons[0].host",
        "daemons[1].name",
        "daemons[1].tls.ca",
        "daemons[1].tls.cert",
        "daemons[1].tls.key",
    ];
    common::assert_holds_all(&out, &keys, |key| format!("{key} missing from:\n{out}"));
    assert!(!out.contains("panicked"), "{out}");
}

/// Each bad input is reported on a line `  KEY: MESSAGE` that names its key
/// and says what is wrong with it (every report starts with "invalid
/// configuration:", so a bare word like "config" would prove nothing).
#[test]
fn bad_input_names_the_key_and_exits_two() {
    for (body, key, what) in [
        (
            "[poll]\ninterval = \"soon\"\n",
            "poll.interval",
            "invalid duration \"soon\"",
        ),
        ("[poll]\ninterval = 15\n", "poll.interval", "`15`"),
        ("[server]\nlisten = 9779\n", "server.listen", "`9779`"),
        (
            "[serverr]\nlisten = \"0.0.0.0:1\"\n",
            "serverr",
            "unknown field",
        ),
        (
            "[[daemons]]\nname = \"x\"\n",
            "daemons[0]",
            "missing field `host`",
        ),
        // Not TOML: no key can be named, so the whole file is at fault,
        // with the parser's position.
        (
            "not toml at all = = =\n",
            "(top level)",
            "TOML parse error at line 1",
        ),
    ] {
        let (code, out) = check_config(Some(body));
        assert_eq!(code, 2, "{body:?}: {out}");
        let prefix = format!("  {key}: ");
        assert!(
            out.lines()
                .any(|l| l.starts_with(&prefix) && l.contains(what)),
            "{body:?}: no line `{prefix}...{what}...` in:\n{out}"
        );
        assert!(!out.contains("panicked"), "{out}");
    }
}

#[test]
fn missing_config_file_is_an_error_not_an_empty_config() {
    let out = Command::new(common::binary())
        .args(["check-config", "--config", "/nonexistent/dockwatch.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/dockwatch.toml"), "{err}");
    // `--config` is global: it works after the subcommand and before it.
    let out = Command::new(common::binary())
        .args(["--config", "/nonexistent/x.toml", "check-config"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn env_overrides_are_strict_too() {
    let dir = temp_dir("env");
    let out = Command::new(common::binary())
        .current_dir(&dir)
        .arg("check-config")
        .env("DOCKWATCH_POLL__INTERVAL", "often")
        .output()
        .expect("run");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("poll.interval"), "{err}");
}
