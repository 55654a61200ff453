//! The shipped Prometheus config, alert rules and Grafana dashboard, proven
//! against the real thing: promtool checks and unit tests of the rules, static
//! checks of the dashboard and its provisioning, and one end-to-end test that
//! runs a real Prometheus with `deploy/prometheus/prometheus.yml` and
//! `alerts.yml` against a dockwatch watching both test daemons and
//! pre-pulling from the test registry, then evaluates every panel query and
//! every alert expression through Prometheus's HTTP API.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::prometheus::Prometheus;
use common::{Dockwatch, Testbed, assert_success, output_text, temp_dir};

// ------------------------------------------------------------------ files

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("grafana/dashboard.json"))
        .unwrap_or_else(|e| panic!("grafana/dashboard.json is not JSON: {e}"))
}

/// Runs promtool and fails with everything it printed unless it succeeded.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo("."))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool (Debian package prometheus; tests/testbed.sh installs it): {e}"
            )
        });
    assert_success(&out, &format!("promtool {}", args.join(" ")));
    output_text(&out)
}

// ------------------------------------------------------------------ promtool

#[test]
fn promtool_check_config() {
    let out = promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    // The rule file is found relative to the config and checked with it.
    assert!(out.contains("1 rule files found"), "{out}");
}

#[test]
fn promtool_check_rules() {
    promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
}

#[test]
fn promtool_test_rules() {
    let out = promtool(&["test", "rules", "deploy/prometheus/alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The alert names of alerts.yml, in order (`- alert: NAME` lines).
fn alert_names() -> Vec<String> {
    read("deploy/prometheus/alerts.yml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn every_alert_is_unit_tested_firing_and_not_firing() {
    let names = alert_names();
    assert!(names.len() >= 10, "too few alerts: {names:?}");
    // (alertname, fires) for every alert_rule_test entry: an `alertname:`
    // line, then its `exp_alerts:` line, `[]` or a list.
    let text = read("deploy/prometheus/alerts_test.yml");
    let mut cases: BTreeSet<(String, bool)> = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(n) = line.strip_prefix("alertname:") {
            current = Some(n.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix("exp_alerts:") {
            let name = current.take().expect("exp_alerts without alertname");
            cases.insert((name, rest.trim() != "[]"));
        }
    }
    let mut missing = Vec::new();
    for n in &names {
        for (fires, what) in [(true, "fires"), (false, "does not fire")] {
            if !cases.contains(&(n.clone(), fires)) {
                missing.push(format!("{n}: no case where it {what}"));
            }
        }
    }
    for (n, _) in &cases {
        assert!(names.contains(n), "alerts_test.yml tests unknown alert {n}");
    }
    assert!(
        missing.is_empty(),
        "alerts_test.yml lacks:\n{}",
        missing.join("\n")
    );
}

// ------------------------------------------------------------------ static dashboard checks

/// Every panel, rows' nested panels included.
fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

fn variable<'a>(dash: &'a Value, name: &str) -> &'a Value {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("dashboard has no variable {name}"))
}

/// `key: value` of the first line whose key is `key` (these YAML files are flat
/// enough for that).
fn yaml_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim().trim_start_matches("- ");
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().trim_matches('"').to_owned())
    })
}

/// The dashboard's rows, top to bottom.
const ROWS: [&str; 7] = [
    "Daemon health",
    "Images",
    "Containers",
    "Pre-pulls",
    "Running containers",
    "Registry and windows",
    "Pruning",
];

#[test]
fn dashboard_is_consistent_with_its_provisioning() {
    let dash = dashboard();
    assert_eq!(
        dash["uid"], "dockwatch",
        "the uid is what links and provisioning rely on"
    );

    // The datasource: a variable, defaulting to the provisioned uid.
    let ds = variable(&dash, "DS_PROMETHEUS");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let provisioned = read("grafana/provisioning/datasources/prometheus.yml");
    let uid = yaml_value(&provisioned, "uid").expect("provisioned datasource has a uid");
    assert_eq!(
        ds["current"]["value"],
        uid.as_str(),
        "DS_PROMETHEUS defaults to the provisioned datasource"
    );
    assert_eq!(
        yaml_value(&provisioned, "type").as_deref(),
        Some("prometheus")
    );
    let want_ds = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});

    // The daemon variable.
    let daemon = variable(&dash, "daemon");
    assert_eq!(daemon["type"], "query");
    assert_eq!(daemon["multi"], true);
    assert_eq!(daemon["includeAll"], true);
    assert_eq!(daemon["datasource"], want_ds);
    assert!(
        variable_query(daemon).starts_with("label_values(dockwatch_daemon_up"),
        "daemon variable: {daemon}"
    );

    let panels = all_panels(&dash);
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().expect("row title"))
        .collect();
    assert_eq!(rows, ROWS);

    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        let id = p["id"].as_u64().expect("panel id");
        if !ids.insert(id) {
            problems.push(format!("{title}: duplicate panel id {id}"));
        }
        // No two panels share a grid cell.
        let pos = |k: &str| {
            p["gridPos"][k]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        };
        let (left, top, width, height) = (pos("x"), pos("y"), pos("w"), pos("h"));
        if left + width > 24 {
            problems.push(format!("{title}: wider than the grid"));
        }
        'cells: for col in left..left + width {
            for line in top..top + height {
                if let Some(other) = cells.insert((col, line), title.to_owned()) {
                    problems.push(format!("{title} overlaps {other} at ({col},{line})"));
                    break 'cells;
                }
            }
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"] != want_ds {
            problems.push(format!(
                "{title}: datasource {} is not ${{DS_PROMETHEUS}}",
                p["datasource"]
            ));
        }
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
        if unit.is_empty() {
            problems.push(format!("{title}: no unit"));
        }
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{title}: no targets"));
        }
        for t in targets {
            if t["datasource"] != want_ds {
                problems.push(format!(
                    "{title}/{}: target datasource {}",
                    t["refId"], t["datasource"]
                ));
            }
            if t["expr"].as_str().unwrap_or("").trim().is_empty() {
                problems.push(format!("{title}/{}: empty expr", t["refId"]));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

#[test]
fn compose_mounts_what_the_provisioning_expects() {
    let compose = read("deploy/docker-compose.yml");
    let provider = read("grafana/provisioning/dashboards/dockwatch.yml");
    let path = yaml_value(&provider, "path").expect("dashboard provider path");

    // Every relative bind mount names a file or directory of the repository,
    // relative to deploy/.
    let mut targets = BTreeMap::new();
    for line in compose.lines().map(str::trim) {
        let Some(spec) = line.strip_prefix("- ") else {
            continue;
        };
        let spec = spec.trim_matches('"');
        let parts: Vec<&str> = spec.split(':').collect();
        if parts.len() < 2 || !(parts[0].starts_with("./") || parts[0].starts_with("../")) {
            continue;
        }
        let src = repo("deploy").join(parts[0]);
        assert!(
            src.exists(),
            "compose mounts {} which does not exist",
            src.display()
        );
        targets.insert(parts[1].to_owned(), parts[0].to_owned());
    }
    assert_eq!(
        targets
            .get(&format!("{path}/dockwatch.json"))
            .map(String::as_str),
        Some("../grafana/dashboard.json"),
        "compose must mount grafana/dashboard.json into the provider's path {path}"
    );
    assert_eq!(
        targets.get("/etc/grafana/provisioning").map(String::as_str),
        Some("../grafana/provisioning")
    );
    assert_eq!(
        targets.get("/etc/prometheus").map(String::as_str),
        Some("./prometheus")
    );
    // Prometheus scrapes the compose service by name, on the port it serves.
    let prom = read("deploy/prometheus/prometheus.yml");
    assert!(prom.contains("\"dockwatch:9779\""), "prometheus.yml target");
    assert!(
        compose.contains("\n  dockwatch:\n"),
        "compose has a dockwatch service"
    );
    assert!(compose.contains("\"9779:9779\""), "compose publishes 9779");
    assert!(compose.contains("/var/run/docker.sock:/var/run/docker.sock"));
    assert!(compose.contains("group_add:"));
    // The datasource URL names the compose service of Prometheus.
    let ds = read("grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        yaml_value(&ds, "url").as_deref(),
        Some("http://prometheus:9090")
    );
    assert!(compose.contains("\n  prometheus:\n") && compose.contains("\n  grafana:\n"));
}

// ------------------------------------------------------------------ PromQL helpers

/// Query strings of a variable: `query` is a string or `{query: ...}`.
fn variable_query(v: &Value) -> String {
    v["query"]
        .as_str()
        .or_else(|| v["query"]["query"].as_str())
        .unwrap_or_else(|| panic!("variable without a query: {v}"))
        .to_owned()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Grafana's escaping of a multi-value variable for a Prometheus regex
/// matcher: each value regex-escaped, then `(a|b)`.
fn regex_value(values: &[String]) -> String {
    let esc: Vec<String> = values
        .iter()
        .map(|v| {
            let mut o = String::new();
            for c in v.chars() {
                match c {
                    '\\' => o.push_str("\\\\\\\\"),
                    '$' | '^' | '*' | '{' | '}' | '[' | ']' | '\'' | '+' | '?' | '.' | '('
                    | ')' | '|' => {
                        o.push_str("\\\\");
                        o.push(c);
                    }
                    _ => o.push(c),
                }
            }
            o
        })
        .collect();
    if esc.len() == 1 {
        esc[0].clone()
    } else {
        format!("({})", esc.join("|"))
    }
}

/// Replaces `$name`, `${name}` and `${name:fmt}`; an unknown variable is an error.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {expr}"))?;
            let inner = &braced[..end];
            (inner.split(':').next().unwrap_or(inner), end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable ${name} in {expr}"))?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    if out.contains("[[") {
        return Err(format!("old [[var]] syntax in {expr}"));
    }
    Ok(out)
}

/// Words of `PromQL` that are not metric names when they stand alone,
/// besides the `LABEL_LISTS` (checked first).
const KEYWORDS: &[&str] = &[
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// Words followed by a parenthesized label list.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The vector selectors of an expression: (metric name, `{...}` matchers or "").
fn selectors(expr: &str) -> Vec<(String, String)> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_string = |i: usize| -> usize {
        let q = b[i];
        let mut j = i + 1;
        while j < b.len() && b[j] != q {
            if b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        j + 1
    };
    // Index after the bracket group that opens at i ('(' '{' '['), strings skipped.
    let skip_group = |i: usize| -> usize {
        let (open, close) = (
            b[i],
            match b[i] {
                b'(' => b')',
                b'{' => b'}',
                _ => b']',
            },
        );
        let mut depth = 0;
        let mut j = i;
        while j < b.len() {
            match b[j] {
                b'"' | b'\'' | b'`' => {
                    j = skip_string(j);
                    continue;
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return j + 1;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        j
    };
    let next_non_space = |mut j: usize| -> usize {
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_string(i);
        } else if c == b'[' {
            i = skip_group(i);
        } else if c.is_ascii_digit() || (c == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit())
        {
            // A number, exponents and hex digits included.
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let word = &expr[start..i];
            let j = next_non_space(i);
            if LABEL_LISTS.contains(&word) {
                if j < b.len() && b[j] == b'(' {
                    i = skip_group(j);
                }
            } else if KEYWORDS.contains(&word) || (j < b.len() && b[j] == b'(') {
                // An operator or a function call.
            } else if j < b.len() && b[j] == b'{' {
                let end = skip_group(j);
                out.push((word.to_owned(), expr[j..end].to_owned()));
                i = end;
            } else {
                out.push((word.to_owned(), String::new()));
            }
        } else {
            i += 1;
        }
    }
    out
}

// ------------------------------------------------------------------ Prometheus

/// Starts Prometheus on the shipped prometheus.yml, its target rewritten
/// to `target` and its intervals to 1 s, with alerts.yml beside it.
fn start_prometheus(target: &str) -> Prometheus {
    let dir = temp_dir("prometheus");
    let shipped = read("deploy/prometheus/prometheus.yml");
    let mut config = shipped.clone();
    for (from, to, what) in [
        (
            "\"dockwatch:9779\"",
            format!("\"{target}\""),
            "the target dockwatch:9779",
        ),
        (
            "scrape_interval: 15s",
            "scrape_interval: 1s".to_owned(),
            "scrape_interval: 15s",
        ),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_owned(),
            "evaluation_interval: 15s",
        ),
    ] {
        assert!(
            shipped.contains(from),
            "prometheus.yml no longer has {what}: update this test"
        );
        config = config.replace(from, &to);
    }
    std::fs::write(dir.join("prometheus.yml"), &config).expect("write prometheus.yml");
    std::fs::copy(repo("deploy/prometheus/alerts.yml"), dir.join("alerts.yml"))
        .expect("copy alerts.yml");
    Prometheus::start(dir)
}

/// The queries the checks below make.
trait Queries {
    fn query(&self, expr: &str) -> Result<Vec<Value>, String>;
    fn label_values(&self, label: &str, matcher: &str) -> Result<Vec<String>, String>;
}

impl Queries for Prometheus {
    /// An instant query: the result vector, or the error.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            Some("scalar") => Ok(vec![
                serde_json::json!({"metric": {}, "value": data["result"]}),
            ]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    fn label_values(&self, label: &str, matcher: &str) -> Result<Vec<String>, String> {
        let data = self.api(&format!(
            "/api/v1/label/{}/values?match[]={}",
            url_encode(label),
            url_encode(matcher)
        ))?;
        Ok(data
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Sample values of a result, parsed ("NaN" and "+Inf" included).
fn values(result: &[Value]) -> Vec<f64> {
    result
        .iter()
        .filter_map(|s| s["value"][1].as_str())
        .map(|v| match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        })
        .collect()
}

// ------------------------------------------------------------------ test bed state

/// Everything on a daemon a test could leave behind: images (all layers) and
/// containers.
fn daemon_state(cli: &common::DockerCli) -> (Vec<String>, Vec<String>) {
    let sorted = |s: String| {
        let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    (
        sorted(cli.run(&["images", "-a", "--no-trunc", "-q"])),
        sorted(cli.run(&["ps", "-a", "--no-trunc", "-q"])),
    )
}

/// Removes the pre-pulled image from A, also when the test fails.
struct RemoveImage<'a> {
    bed: &'a Testbed,
    image: String,
}

impl RemoveImage<'_> {
    fn remove(&self) {
        // Absent is fine: this only undoes the pre-pull.
        self.bed.cli_a().rmi_f(&[&self.image]);
    }
}

impl Drop for RemoveImage<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

// ------------------------------------------------------------------ the end-to-end test

/// Expressions that may return no series on a healthy system, with why.
/// Everything else must return at least one sample with a finite value.
const MAY_BE_EMPTY: &[(&str, &str)] = &[
    (
        "panel:Running pulls: downloaded/A",
        "progress series exist only while a pull runs",
    ),
    ("alert:DockwatchDown", "dockwatch is up"),
    ("alert:DockwatchAbsent", "dockwatch is scraped"),
    ("alert:DockerDaemonDown", "both daemons are up"),
    (
        "alert:DockerApiLatencyHigh",
        "the test daemons answer in milliseconds",
    ),
    (
        "alert:DanglingImagesGrowing",
        "the dangling images do not change",
    ),
    (
        "alert:DanglingImagesLarge",
        "the test bed holds a few MB of them",
    ),
    ("alert:ImagePullStalled", "no pull stalls"),
    (
        "alert:ImageNotPulledRecently",
        "every good pull is seconds old",
    ),
    (
        "alert:ContainersOOMKilled",
        "no container is OOM-killed here",
    ),
    (
        "alert:ContainersOutdated",
        "no tag moves under a running container here",
    ),
    (
        "alert:ContainersUnhealthy",
        "the bed's containers have no healthcheck",
    ),
    ("alert:ContainerRestartLoop", "no container restarts here"),
    ("alert:DiskReclaimableLarge", "the test bed holds a few MB"),
    ("alert:DiskUsageFailing", "/system/df works on both daemons"),
    (
        "alert:DockwatchConfigReloadFailed",
        "the configuration loaded fine",
    ),
    (
        "alert:ImagePullDiskFull",
        "the test daemons have disk to spare",
    ),
    (
        "alert:ImagePullsRateLimited",
        "the test registry never answers 429",
    ),
    (
        "alert:ImageUpdateNotPulled",
        "no tag moves under the test's images",
    ),
    ("alert:PruneFailing", "every prune round ends well"),
];

/// Metric names that exist only while a pull runs: not in an idle scrape, so
/// they are checked against dockwatch's pinned exposition of a running pull.
const TRANSIENT: &[&str] = &[
    "dockwatch_image_pull_progress_bytes",
    "dockwatch_image_pull_expected_bytes",
];

/// Alerts that the test's own trouble (a missing image, a filter group the
/// daemons reject) must make pending.
const MUST_BE_ACTIVE: &[&str] = &[
    "DockerApiErrors",
    "ImageFilterGroupFailing",
    "ImagePullsFailing",
    "ImageNeverPulled",
    "PrepullNotReady",
    "RegistryChecksFailing",
];

/// Sample names of an exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// Why `name` is not a series dockwatch exposes, suffix rules spelled out.
fn unknown_name_hint(name: &str, exposed: &BTreeSet<String>) -> String {
    for suffix in ["_total", "_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            let others: Vec<&String> = exposed.iter().filter(|n| n.starts_with(base)).collect();
            return format!("{name} is not exposed (series of {base}*: {others:?})");
        }
    }
    let others: Vec<&String> = exposed.iter().filter(|n| n.starts_with(name)).collect();
    if others.is_empty() {
        format!("{name} is not exposed by dockwatch")
    } else {
        format!(
            "{name} is not a series; dockwatch exposes {others:?} (counters end in _total, histograms in _bucket/_sum/_count)"
        )
    }
}

/// One expression to evaluate: (key for the allow-list and messages, expr).
type Expr = (String, String);

/// Every panel target of the dashboard, variables substituted.
fn dashboard_exprs(dash: &Value, prom: &Prometheus) -> Vec<Expr> {
    // Built-in and interval variables: 1m spans 60 scrapes here.
    let mut vars: BTreeMap<String, String> =
        ["__rate_interval", "__interval", "__range", "__range_s"]
            .iter()
            .map(|v| {
                (
                    (*v).to_owned(),
                    if *v == "__range_s" {
                        "60".to_owned()
                    } else {
                        "1m".to_owned()
                    },
                )
            })
            .collect();
    for v in dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
    {
        let name = v["name"].as_str().expect("variable name").to_owned();
        let value = match v["type"].as_str() {
            Some("datasource") => continue,
            Some("custom" | "interval" | "constant" | "textbox") => v["current"]["value"]
                .as_str()
                .unwrap_or_else(|| panic!("variable {name} has no current value"))
                .to_owned(),
            Some("query") => {
                // label_values(SELECTOR, LABEL), the selector may use earlier variables.
                let q = substitute(&variable_query(v), &vars)
                    .unwrap_or_else(|e| panic!("variable {name}: {e}"));
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.strip_suffix(')'))
                    .unwrap_or_else(|| {
                        panic!("variable {name}: only label_values(...) is handled: {q}")
                    });
                let (selector, label) = inner
                    .rsplit_once(',')
                    .expect("label_values(selector, label)");
                // Grafana sends the selector with its regex escapes intact.
                let values = prom
                    .label_values(label.trim(), selector.trim())
                    .unwrap_or_else(|e| panic!("variable {name}: {q}: {e}"));
                assert!(!values.is_empty(), "variable {name}: {q} has no values");
                regex_value(&values)
            }
            other => panic!("variable {name} of unhandled type {other:?}"),
        };
        vars.insert(name, value);
    }
    let mut out = Vec::new();
    for p in all_panels(dash) {
        for t in p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let key = format!(
                "panel:{}/{}",
                p["title"].as_str().unwrap_or("?"),
                t["refId"].as_str().unwrap_or("?")
            );
            let expr = t["expr"].as_str().unwrap_or_default();
            let expr = substitute(expr, &vars).unwrap_or_else(|e| panic!("{key}: {e}"));
            out.push((key, expr));
        }
    }
    out
}

/// Every alerting rule as Prometheus loaded it from alerts.yml.
fn loaded_rules(prom: &Prometheus) -> Vec<Value> {
    let data = prom.api("/api/v1/rules").expect("/api/v1/rules");
    data["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Sample names of dockwatch's /metrics now.
fn scrape_names(port: u16) -> BTreeSet<String> {
    sample_names(&common::scrape(port).text)
}

/// The rules Prometheus loaded are exactly alerts.yml's, each with a `for:`,
/// a severity, and annotations that name what is wrong.
fn check_rules(rules: &[Value]) {
    let loaded: Vec<&str> = rules
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        loaded,
        alert_names(),
        "Prometheus loaded other rules than alerts.yml has"
    );
    for r in rules {
        let name = r["name"].as_str().unwrap_or_default();
        let query = r["query"].as_str().unwrap_or_default();
        assert_eq!(r["type"], "alerting", "{name}");
        assert!(
            r["duration"].as_f64().unwrap_or(0.0) > 0.0,
            "{name}: no `for:`"
        );
        assert!(
            matches!(
                r["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity {}",
            r["labels"]["severity"]
        );
        // Per daemon, and per image where the series are.
        let mut must_name = vec![];
        if query.contains("dockwatch_config_") {
            // About dockwatch itself, which has no daemon label.
            must_name.push("{{ $labels.instance }}");
        } else if query.contains("dockwatch_") {
            must_name.push("{{ $labels.daemon }}");
        }
        if ["dockwatch_image_pull", "dockwatch_image_present"]
            .iter()
            .any(|m| query.contains(m))
        {
            must_name.push("{{ $labels.image }}");
        }
        if must_name.is_empty() {
            must_name.push("{{ $labels.");
        }
        for a in ["summary", "description"] {
            let text = r["annotations"][a].as_str().unwrap_or_default();
            for label in &must_name {
                assert!(text.contains(label), "{name}: {a} lacks {label}: {text:?}");
            }
        }
    }
}

/// Each metric an expression names must be a series dockwatch exposes: in
/// this test's live scrapes, or, for the series of running pulls, in its
/// pinned exposition of one (tests/golden/metrics.prom).
fn check_names(exprs: &[Expr], exposed: &BTreeSet<String>) {
    let golden = sample_names(&read("tests/golden/metrics.prom"));
    let mut problems = Vec::new();
    for (key, expr) in exprs {
        let sels = selectors(expr);
        if sels.is_empty() {
            problems.push(format!("{key}: no metric at all in {expr}"));
        }
        for (name, _) in sels {
            let ok = exposed.contains(&name)
                || (TRANSIENT.contains(&name.as_str()) && golden.contains(&name))
                || (name == "up" && key.starts_with("alert:"));
            if !ok {
                problems.push(format!("{key}: {}", unknown_name_hint(&name, exposed)));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "expressions name metrics dockwatch does not expose:\n{}\nexposed: {exposed:?}",
        problems.join("\n")
    );
}

/// One round over everything: (errors waiting cannot fix, things without data yet).
fn evaluate(
    prom: &Prometheus,
    exprs: &[Expr],
    selectors: &BTreeSet<(String, String)>,
) -> (Vec<String>, Vec<String>) {
    let allowed: BTreeSet<&str> = MAY_BE_EMPTY.iter().map(|(k, _)| *k).collect();
    let mut broken = Vec::new();
    let mut pending = Vec::new();
    for (key, expr) in exprs {
        match prom.query(expr) {
            Err(e) => broken.push(format!("{key}: {e}\n    {expr}")),
            Ok(_) if allowed.contains(key.as_str()) => {}
            Ok(r) if r.is_empty() => pending.push(format!("{key}: no data\n    {expr}")),
            Ok(r) if !values(&r).iter().any(|v| v.is_finite()) => {
                pending.push(format!("{key}: no finite value in {r:?}\n    {expr}"));
            }
            Ok(_) => {}
        }
    }
    for (sel, key) in selectors {
        match prom.query(sel) {
            Err(e) => broken.push(format!("{key}: selector {sel}: {e}")),
            Ok(r) if r.is_empty() => pending.push(format!("{key}: selector {sel} has no series")),
            Ok(_) => {}
        }
    }
    // The rule engine agrees: every rule healthy, the test's trouble pending.
    for r in loaded_rules(prom) {
        let name = r["name"].as_str().unwrap_or_default();
        if r["health"] == "err" {
            broken.push(format!("alert:{name}: rule health err: {}", r["lastError"]));
        }
        if MUST_BE_ACTIVE.contains(&name) && r["state"] == "inactive" {
            pending.push(format!("alert:{name}: still inactive"));
        }
    }
    (broken, pending)
}

/// The auth registry's image, pre-pulled on A with the right credentials
/// (`dockwatch pull`), so that dockwatch's own checks of it, without
/// credentials, fail as unauthorized: the check-failure panel has data.
/// Removed again when the guard is dropped.
fn pull_private<'a>(bed: &'a Testbed, dir: &std::path::Path) -> RemoveImage<'a> {
    let image = bed.var("IMAGE_PRIVATE").to_owned();
    let config = dir.join("private.toml");
    std::fs::write(
        &config,
        format!(
            "{}[[registries]]\nserver = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\n",
            bed.daemon_a("a"),
            bed.var("REGISTRY_AUTH"),
            bed.var("REGISTRY_AUTH_USER"),
            bed.var("REGISTRY_AUTH_PASSWORD_FILE")
        ),
    )
    .expect("write config");
    let out = std::process::Command::new(common::binary())
        .arg("--config")
        .arg(&config)
        .args(["pull", &image])
        .output()
        .expect("dockwatch pull");
    common::assert_success(&out, "dockwatch pull of the private image");
    RemoveImage { bed, image }
}

fn test_config(bed: &Testbed, multi: &str, nope: &str, private: &str) -> String {
    let mut config = String::from("[poll]\ninterval = \"1s\"\ntimeout = \"900ms\"\n");
    config.push_str(&bed.daemon_a("a"));
    config.push_str(&bed.daemon_b("b"));
    config.push_str(concat!(
        "[[image_filters]]\nname = \"ci\"\nfilters = { reference = [\"ci/*\"] }\n",
        "[[image_filters]]\nname = \"app\"\nfilters = { reference = [\"dwtest/app\"], dangling = [\"false\"] }\n",
        // A key the daemons reject (HTTP 400): counted as API errors, so the
        // error panel and alert have data.
        "[[image_filters]]\nname = \"rejected\"\nfilters = { nosuchkey = [\"x\"] }\n",
        // Re-pulls every 15 s, so pull durations keep coming; registry
        // checks every 2 s.
        "[prepull]\ninterval = \"15s\"\njitter = \"0s\"\nstall_timeout = \"20s\"\ntimeout = \"2m\"\ncheck_interval = \"2s\"\n",
        // Prune rounds every few seconds, so their panels have data; a dry
        // run, so the shared daemons lose nothing.
        "[prune]\nenabled = true\ndry_run = true\ninterval = \"5s\"\njitter = \"1s\"\n",
    ));
    // Writing to a String cannot fail.
    let _ = write!(
        config,
        "[[prepull.images]]\nimage = \"{multi}\"\ndaemons = [\"a\"]\n[[prepull.images]]\nimage = \"{nope}\"\ndaemons = [\"a\"]\n"
    );
    // No credentials: its pulls and checks fail as unauthorized.
    let _ = write!(
        config,
        "[[prepull.images]]\nimage = \"{private}\"\ndaemons = [\"a\"]\n"
    );
    config
}

/// The success gauges say which filter groups and which `/system/df` worked:
/// the group both daemons reject is 0 and has no matches, the others are 1.
fn check_success_gauges(prom: &Prometheus) {
    let series = |expr: &str, label: &str| -> BTreeSet<String> {
        prom.query(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .iter()
            .map(|s| {
                let m = &s["metric"];
                format!(
                    "{}/{}",
                    m["daemon"].as_str().unwrap_or("?"),
                    m[label].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let set =
        |items: &[&str]| -> BTreeSet<String> { items.iter().map(|s| (*s).to_owned()).collect() };
    assert_eq!(
        series("dockwatch_image_filter_success == 1", "filter"),
        set(&["a/app", "a/ci", "b/app", "b/ci"])
    );
    assert_eq!(
        series("dockwatch_image_filter_success == 0", "filter"),
        set(&["a/rejected", "b/rejected"])
    );
    assert!(
        series(
            r#"dockwatch_image_filter_matches{filter="rejected"}"#,
            "filter"
        )
        .is_empty(),
        "a refused group has no matches series"
    );
    assert_eq!(
        series("dockwatch_disk_usage_success == 1", "daemon"),
        set(&["a/a", "b/b"])
    );
}

#[test]
#[allow(clippy::too_many_lines)] // one end-to-end story, told in order
fn every_panel_and_alert_expression_against_live_prometheus() {
    let t0 = Instant::now();
    let bed = Testbed::get();
    let reg = bed.var("REGISTRY");
    let multi = format!("{reg}/dwtest/multi:1");
    let nope = format!("{reg}/dwtest/nope:1");
    let guard = RemoveImage {
        bed: &bed,
        image: multi.clone(),
    };
    // A cold first pull, so layers are downloaded.
    guard.remove();
    let before = (daemon_state(&bed.cli_a()), daemon_state(&bed.cli_b()));
    let scratch = common::Scratch::new("dashboard");
    let private = pull_private(&bed, &scratch.0);

    let dw = Dockwatch::start(&test_config(&bed, &multi, &nope, &private.image));
    let prom = start_prometheus(&format!("127.0.0.1:{}", dw.port));
    prom.wait_until(
        "5 good scrapes of dockwatch",
        Duration::from_secs(120),
        || {
            prom.query(
                r#"count_over_time(up{job="dockwatch"}[5m]) >= 5 and up{job="dockwatch"} == 1"#,
            )
            .is_ok_and(|r| !r.is_empty())
        },
    );
    eprintln!("dockwatch scraped 5 times after {:?}", t0.elapsed());

    let rules = loaded_rules(&prom);
    check_rules(&rules);
    let mut exprs = dashboard_exprs(&dashboard(), &prom);
    let n_panels = exprs.len();
    exprs.extend(rules.iter().map(|r| {
        (
            format!("alert:{}", r["name"].as_str().unwrap_or_default()),
            r["query"].as_str().unwrap_or_default().to_owned(),
        )
    }));
    let keys: BTreeSet<&str> = exprs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys.len(),
        exprs.len(),
        "two panel targets share a title and refId"
    );
    for (k, why) in MAY_BE_EMPTY {
        assert!(
            keys.contains(k),
            "allow-list entry {k} ({why}) names no expression"
        );
    }
    let mut exposed = scrape_names(dw.port);
    check_names(&exprs, &exposed);

    // Every selector on its own has data (a wrong label value would not),
    // except the series of running pulls.
    let sels: BTreeSet<(String, String)> = exprs
        .iter()
        .flat_map(|(key, expr)| {
            selectors(expr)
                .into_iter()
                .filter(|(name, _)| !TRANSIENT.contains(&name.as_str()))
                .map(move |(name, m)| (format!("{name}{m}"), key.clone()))
        })
        .collect();

    // Evaluate everything until it all holds (pulls and retries take a few
    // rounds to reach Prometheus), or fail with what did not.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut rounds = 0;
    loop {
        rounds += 1;
        let (broken, pending) = evaluate(&prom, &exprs, &sels);
        assert!(
            broken.is_empty(),
            "queries Prometheus rejects:\n{}\nPrometheus log:\n{}",
            broken.join("\n"),
            prom.log()
        );
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {rounds} rounds, no data (allowed to be empty: {MAY_BE_EMPTY:?}):\n{}\ndockwatch /metrics:\n{}\ndockwatch log:\n{}",
            pending.join("\n"),
            dw.scrape().text,
            dw.log()
        );
        exposed.extend(scrape_names(dw.port));
        std::thread::sleep(Duration::from_secs(2));
    }
    check_names(&exprs, &exposed);
    eprintln!(
        "{n_panels} panel queries, {} alert expressions and {} selectors good after {rounds} round(s), {:?}",
        exprs.len() - n_panels,
        sels.len(),
        t0.elapsed()
    );

    check_success_gauges(&prom);

    // The daemon variable's query finds both daemons.
    let daemons = prom
        .label_values("daemon", "dockwatch_daemon_up")
        .expect("daemon values");
    assert_eq!(daemons, ["a", "b"]);

    // Nothing left behind on A or B.
    drop(prom);
    drop(dw);
    guard.remove();
    private.remove();
    let after = (daemon_state(&bed.cli_a()), daemon_state(&bed.cli_b()));
    assert_eq!(before, after, "images or containers left behind on A or B");
    eprintln!("done in {:?}", t0.elapsed());
}

#[test]
fn selector_extraction() {
    let s = selectors(
        r#"histogram_quantile(0.99, sum by (daemon, le) (rate(x_bucket{a="b", c=~"d|e"}[5m]))) > 2 * 1024^3 unless on (daemon) y offset 5m and time() - z"#,
    );
    assert_eq!(
        s,
        [
            ("x_bucket".to_owned(), r#"{a="b", c=~"d|e"}"#.to_owned()),
            ("y".to_owned(), String::new()),
            ("z".to_owned(), String::new()),
        ]
    );
    assert_eq!(
        selectors(r#"sum(rate(a_total{x="}"}[1m])) by (le) / ignoring (phase) (b > 0)"#),
        [
            ("a_total".to_owned(), r#"{x="}"}"#.to_owned()),
            ("b".to_owned(), String::new()),
        ]
    );
    let vars: BTreeMap<String, String> = [("daemon", "(a|b)"), ("__rate_interval", "1m")]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(
        substitute(
            r#"x{d=~"$daemon"}[$__rate_interval] ${daemon:regex}"#,
            &vars
        )
        .as_deref(),
        Ok(r#"x{d=~"(a|b)"}[1m] (a|b)"#)
    );
    assert!(substitute("x{d=~\"$nope\"}", &vars).is_err());
    assert_eq!(
        regex_value(&["127.0.0.1:80".to_owned()]),
        r"127\\.0\\.0\\.1:80"
    );
    assert_eq!(url_encode("a b{\"}"), "a%20b%7B%22%7D");
}
