//! Docs that cannot drift. No test bed: this reads README.md, the golden
//! exposition, `../shared/DESIGN.md` and the tree under `src/`, and never
//! skips.
//!
//! - The README's map of the code ("The shape of the code") names every `.rs`
//!   file under `src/` once, names nothing that does not exist, and lists the
//!   folders and top modules in the order `tests/layers.py` prints.
//! - The README's endpoint list of `dockwatch_api_request_duration_seconds`
//!   is `labels::ApiEndpoint::ALL`, in order.
//! - The README's Metrics table names exactly the families of
//!   `tests/golden/metrics.prom` (plus the few listed below that the fixed
//!   snapshot has no series of), one row each.
//! - DESIGN.md's metrics table and the golden file agree, but for the
//!   container-resource families of issue 18, not built yet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use dockwatch::labels::ApiEndpoint;

/// Container-resource families DESIGN.md names for issue 18, not built yet.
/// When one lands (it appears in the golden file), drop it from this list.
const ISSUE_18: &[&str] = &[
    "dockwatch_container_cpu_seconds_total",
    "dockwatch_container_cpu_throttled_seconds_total",
    "dockwatch_container_cpu_throttled_periods_total",
    "dockwatch_container_memory_working_set_bytes",
    "dockwatch_container_memory_usage_bytes",
    "dockwatch_container_memory_rss_bytes",
    "dockwatch_container_memory_cache_bytes",
    "dockwatch_container_memory_limit_bytes",
    "dockwatch_container_oom_events_total",
    "dockwatch_container_network_receive_bytes_total",
    "dockwatch_container_network_receive_packets_total",
    "dockwatch_container_network_receive_errors_total",
    "dockwatch_container_network_receive_dropped_total",
    "dockwatch_container_network_transmit_bytes_total",
    "dockwatch_container_network_transmit_packets_total",
    "dockwatch_container_network_transmit_errors_total",
    "dockwatch_container_network_transmit_dropped_total",
    "dockwatch_container_blkio_read_bytes_total",
    "dockwatch_container_blkio_write_bytes_total",
    "dockwatch_container_pids",
    "dockwatch_container_pids_limit",
    "dockwatch_container_start_time_seconds",
    "dockwatch_container_info",
    "dockwatch_container_stats_duration_seconds",
    "dockwatch_container_stats_errors_total",
    "dockwatch_container_stats_containers",
];

/// The process collector's families, one `process_*` row in both tables.
const PROCESS_ROW: &str = "process_*";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The lines of the section under `heading` (a whole heading line, e.g.
/// `### Metrics`), up to the next heading of the same or a higher level.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let level = heading.split(' ').next().unwrap_or("#").len();
    let mut lines = text.lines().skip_while(|l| l.trim_end() != heading);
    assert!(
        lines.next().is_some(),
        "no `{heading}` heading found; the docs test reads the section under it"
    );
    lines
        .take_while(|l| {
            let hashes = l.chars().take_while(|c| *c == '#').count();
            !(hashes > 0 && hashes <= level && l[hashes..].starts_with(' '))
        })
        .collect()
}

/// The first cell of a Markdown table row, without backticks.
fn first_cell(row: &str) -> Option<&str> {
    let row = row.trim();
    if !row.starts_with('|') || row.starts_with("|---") {
        return None;
    }
    row[1..].split('|').next().map(str::trim)
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('`').trim().to_owned()
}

/// `a_{x,y}_b` -> `a_x_b`, `a_y_b`, every brace group expanded.
fn expand_braces(name: &str) -> Vec<String> {
    let Some(open) = name.find('{') else {
        return vec![name.to_owned()];
    };
    let close = open
        + name[open..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed brace in {name}"));
    let (head, tail) = (&name[..open], &name[close + 1..]);
    name[open + 1..close]
        .split(',')
        .flat_map(|alt| expand_braces(&format!("{head}{}{tail}", alt.trim())))
        .collect()
}

/// One family's key, so that `x_total` (a counter as the README writes it)
/// and `x` (as some writers write its TYPE line), or a histogram's
/// `_bucket`/`_sum`/`_count` series, compare equal.
fn family_key(name: &str) -> &str {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// The families of the golden exposition, from its `# TYPE` lines.
fn golden_families() -> BTreeSet<String> {
    let path = root().join("tests/golden/metrics.prom");
    let text = read(&path);
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        !families.is_empty(),
        "no `# TYPE` line in {}",
        path.display()
    );
    families
}

/// The families a metrics table names, by key, with the row names as
/// written; `process_*` kept as one entry.
fn table_families(rows: &[&str], expand: bool, source: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for row in rows {
        let Some(cell) = first_cell(row) else {
            continue;
        };
        let cell = unquote(cell);
        if cell == "name" || cell.is_empty() {
            continue;
        }
        let mut names = Vec::new();
        for part in split_names(&cell) {
            let part = unquote(&part);
            if expand {
                names.extend(expand_braces(&part));
            } else {
                names.push(part);
            }
        }
        for name in names {
            let key = family_key(&name).to_owned();
            if let Some(before) = out.insert(key, name.clone()) {
                panic!(
                    "{source}: `{name}` is named by two rows of the metrics table (also as `{before}`); \
                     keep one row per family"
                );
            }
        }
    }
    out
}

/// `a, b` -> `a`, `b`, but commas inside braces stay.
fn split_names(cell: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0u32);
    for c in cell.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn keys(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| family_key(n).to_owned()).collect()
}

fn readme() -> String {
    read(&root().join("README.md"))
}

/// Every `.rs` file under `src/`, as `src/...`.
fn source_files() -> BTreeSet<String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(base).expect("under the root");
                out.insert(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&root().join("src"), &root(), &mut out);
    out
}

/// The top-level order `tests/layers.py` prints, top down.
fn layers_order() -> Vec<String> {
    let script = root().join("tests/layers.py");
    let out = Command::new("python3")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `python3 {}`: {e}; the docs test needs python3 on PATH \
                 (apt-get install python3)",
                script.display()
            )
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "`python3 tests/layers.py` failed (fix the import circle it names first):\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains(" > "))
        .unwrap_or_else(|| panic!("no `a > b > ...` order in tests/layers.py's output:\n{text}"));
    line.split('>').map(|m| m.trim().to_owned()).collect()
}

/// The module of `src/` a path belongs to: `src/tasks/poller.rs` -> `tasks`.
fn top_module(path: &str) -> String {
    let rest = path.strip_prefix("src/").unwrap_or(path);
    let first = rest.split('/').next().unwrap_or(rest);
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

#[test]
fn readme_code_map_names_every_module_in_layer_order() {
    let text = readme();
    let map = section(&text, "### The shape of the code");
    let mut named = Vec::new();
    for row in &map {
        if let Some(cell) = first_cell(row) {
            let cell = unquote(cell);
            if cell.starts_with("src/") {
                named.push(cell);
            }
        }
    }
    assert!(
        !named.is_empty(),
        "README.md, \"The shape of the code\": no table row whose first cell is a `src/...` file; \
         the map has one row per module file"
    );
    let files = source_files();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for name in &named {
        if !files.contains(name) {
            problems.push(format!(
                "README.md's code map names `{name}`, which does not exist: rename or remove its row"
            ));
        }
        if !seen.insert(name.clone()) {
            problems.push(format!(
                "README.md's code map names `{name}` twice: keep one row"
            ));
        }
    }
    for file in &files {
        if !seen.contains(file) {
            problems.push(format!(
                "`{file}` is not in README.md's code map (\"The shape of the code\"): \
                 add a row `| `{file}` | its job |` in its folder's group"
            ));
        }
    }
    // The folders and top modules, in the order the map first names them,
    // against layers.py's order (lib.rs and main.rs are above all of it).
    let order = layers_order();
    let mut groups: Vec<String> = Vec::new();
    for name in &named {
        let m = top_module(name);
        if m == "lib" || m == "main" {
            continue;
        }
        if groups.last() != Some(&m) {
            if groups.contains(&m) {
                problems.push(format!(
                    "README.md's code map: the rows of `src/{m}` are not together; \
                     keep each folder's files in one group"
                ));
            }
            groups.push(m);
        }
    }
    if groups != order {
        problems.push(format!(
            "README.md's code map lists the modules in the order\n  {}\n\
             but `python3 tests/layers.py` prints, top down,\n  {}\n\
             reorder the map's groups to match",
            groups.join(" > "),
            order.join(" > ")
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn readme_endpoint_list_is_labels_api_endpoint() {
    let text = readme();
    let rows: Vec<&str> = section(&text, "### Metrics")
        .into_iter()
        .filter(|r| {
            first_cell(r).is_some_and(|c| unquote(c) == "dockwatch_api_request_duration_seconds")
        })
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "README.md's Metrics table must have exactly one row for \
         dockwatch_api_request_duration_seconds (it has {}):\n{}",
        rows.len(),
        rows.join("\n")
    );
    let meaning = rows[0].rsplit('|').nth(1).unwrap_or_default();
    let list = meaning
        .split_once("endpoint: ")
        .unwrap_or_else(|| {
            panic!(
                "README.md: the row of dockwatch_api_request_duration_seconds has no \
                 `endpoint: a, b, ...` list:\n{}",
                rows[0]
            )
        })
        .1;
    // "ping (the version negotiation), version, ..." -> ping, version, ...
    let mut depth = 0u32;
    let mut plain = String::new();
    for c in list.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let got: Vec<String> = plain
        .split(',')
        .map(|s| unquote(s.trim().trim_end_matches('.')))
        .filter(|s| !s.is_empty())
        .collect();
    let want: Vec<String> = ApiEndpoint::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    assert_eq!(
        got,
        want,
        "README.md's endpoint list of dockwatch_api_request_duration_seconds must be \
         labels::ApiEndpoint::ALL in order: write `endpoint: {}` (notes in parentheses are fine)",
        want.join(", ")
    );
}

#[test]
fn readme_metrics_table_names_the_golden_families() {
    let text = readme();
    let rows = section(&text, "### Metrics");
    let mut table = table_families(&rows, false, "README.md");
    assert!(
        table.remove(PROCESS_ROW).is_some(),
        "README.md's Metrics table has no `process_*` row for the process collector's families"
    );
    let golden = golden_families();
    let mut problems = Vec::new();
    let golden_keys: BTreeSet<String> = golden.iter().map(|f| family_key(f).to_owned()).collect();
    for f in &golden {
        if !table.contains_key(family_key(f)) {
            problems.push(format!(
                "`{f}` is in tests/golden/metrics.prom but not in README.md's Metrics table: add its row"
            ));
        }
    }
    for (key, name) in &table {
        if !golden_keys.contains(key) {
            problems.push(format!(
                "README.md's Metrics table names `{name}`, which tests/golden/metrics.prom does not have: \
                 remove the row, or fix its name"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// DESIGN.md sits beside the repository, in `../shared/` (as CI has it);
/// `DW_DESIGN_MD` names it elsewhere (a worktree outside that layout).
fn design_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DW_DESIGN_MD") {
        return PathBuf::from(p);
    }
    root().join("../shared/DESIGN.md")
}

#[test]
fn design_metrics_table_matches_golden() {
    let path = design_path();
    assert!(
        path.is_file(),
        "DESIGN.md is expected at {} (`../shared/DESIGN.md` from the repository root, as CI has it); \
         put it there, or set DW_DESIGN_MD=/path/to/DESIGN.md",
        path.display()
    );
    let text = read(&path);
    let rows = section(&text, "## Metrics (prefix `dockwatch_`)");
    let mut table = table_families(&rows, true, "DESIGN.md");
    assert!(
        table.remove(PROCESS_ROW).is_some(),
        "{}: the metrics table has no `process_*` row",
        path.display()
    );
    let golden = golden_families();
    let golden_keys: BTreeSet<String> = golden.iter().map(|f| family_key(f).to_owned()).collect();
    let issue_18 = keys(ISSUE_18);
    let mut problems = Vec::new();
    for f in &golden {
        if !table.contains_key(family_key(f)) {
            problems.push(format!(
                "`{f}` is in tests/golden/metrics.prom but not in the metrics table of {}: add its row",
                path.display()
            ));
        }
    }
    for f in ISSUE_18 {
        if golden_keys.contains(family_key(f)) {
            problems.push(format!(
                "`{f}` is now in tests/golden/metrics.prom (issue 18 landed it): \
                 remove it from ISSUE_18 in tests/docs.rs"
            ));
        }
        if !table.contains_key(family_key(f)) {
            problems.push(format!(
                "`{f}` is on ISSUE_18 in tests/docs.rs but {} does not name it: remove it from the list",
                path.display()
            ));
        }
    }
    for (key, name) in &table {
        if !golden_keys.contains(key) && !issue_18.contains(key) {
            problems.push(format!(
                "{} names `{name}`, which tests/golden/metrics.prom does not have: build it \
                 (and regenerate the golden file), fix the name, or, if it is planned work, \
                 list it in tests/docs.rs with its issue",
                path.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn brace_patterns_expand() {
    assert_eq!(
        expand_braces("a_{x,y}_{b,c}_total"),
        ["a_x_b_total", "a_x_c_total", "a_y_b_total", "a_y_c_total"]
    );
    assert_eq!(split_names("a, b_{x,y}"), ["a", "b_{x,y}"]);
    assert_eq!(family_key("x_total"), "x");
}
