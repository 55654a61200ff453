//! Prometheus-driven sharding: two dockwatch replicas read the same
//! discovery file, and a real Prometheus running the shipped
//! `deploy/prometheus/sharded.yml`
//! (`file_sd` + hashmod over the replicas + `/probe?target=NAME`) gets every
//! daemon's series exactly once, with the right `daemon` label. `/probe`
//! answers only for daemons dockwatch watches.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use common::prometheus::Prometheus;
use common::{Dockwatch, Testbed, http_get, temp_dir};

/// The daemons of the test, as (name, host URL, `daemon` label): dockerd A
/// and B, A again named by its socket's path (no label), and A under three
/// more names (so the hash has names to spread).
fn daemons(bed: &Testbed) -> Vec<(String, String, bool)> {
    let a = bed.var("DOCKER_A");
    vec![
        ("a".into(), a.into(), true),
        ("a-2".into(), a.into(), true),
        ("a-3".into(), a.into(), true),
        ("build-04".into(), a.into(), true),
        ("b".into(), bed.var("DOCKER_B").into(), true),
        (a.trim_start_matches("unix://").into(), a.into(), false),
    ]
}

/// Both replicas read the same `file_sd` file: the fleet's inventory.
fn replica_config(bed: &Testbed, files: &Path) -> String {
    format!(
        "[poll]\ninterval = \"1s\"\ntimeout = \"900ms\"\n\
         [[discovery]]\nfiles = [\"{}/*.json\"]\n\
         [discovery.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        files.display(),
        bed.var("TLS_CA"),
        bed.var("TLS_CERT"),
        bed.var("TLS_KEY"),
    )
}

/// The shipped sharded.yml with the replicas' addresses and the `file_sd`
/// path of this test, and a faster scrape.
fn prometheus_config(dir: &Path, replicas: [u16; 2]) -> String {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/sharded.yml"
    ))
    .expect("deploy/prometheus/sharded.yml");
    assert!(shipped.contains("dockwatch-0:9779") && shipped.contains("dockwatch-1:9779"));
    shipped
        .replace("dockwatch-0:9779", &format!("127.0.0.1:{}", replicas[0]))
        .replace("dockwatch-1:9779", &format!("127.0.0.1:{}", replicas[1]))
        .replace(
            "/etc/dockwatch/daemons/*.json",
            &dir.join("daemons/*.json").display().to_string(),
        )
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
        .replace("rule_files:\n  - alerts.yml\n", "")
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, start to end
fn every_daemon_arrives_once_through_the_shards() {
    let bed = Testbed::get();
    let dir = temp_dir("sharded");
    std::fs::create_dir_all(dir.join("daemons")).expect("daemons dir");
    // The fleet's inventory, as file_sd: host URLs, named by a `daemon`
    // label or else by their address.
    let targets: Vec<Value> = daemons(&bed)
        .into_iter()
        .map(|(name, host, label)| {
            if label {
                serde_json::json!({"targets": [host], "labels": {"daemon": name}})
            } else {
                serde_json::json!({"targets": [host]})
            }
        })
        .collect();
    std::fs::write(
        dir.join("daemons/fleet.json"),
        serde_json::to_string_pretty(&targets).expect("json"),
    )
    .expect("write file_sd");
    let replicas = [
        Dockwatch::start(&replica_config(&bed, &dir.join("daemons"))),
        Dockwatch::start(&replica_config(&bed, &dir.join("daemons"))),
    ];
    std::fs::write(
        dir.join("prometheus.yml"),
        prometheus_config(&dir, [replicas[0].port, replicas[1].port]),
    )
    .expect("write prometheus.yml");
    let prom = Prometheus::start(dir.clone());

    let names: Vec<String> = daemons(&bed).into_iter().map(|(n, _, _)| n).collect();
    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(v) = prom.api("/api/v1/query?query=dockwatch_daemon_up") {
            last = v;
        }
        let rows = last["result"].as_array().cloned().unwrap_or_default();
        if rows.len() == names.len() && rows.iter().all(|r| r["value"][1] == "1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every daemon up, once: never seen; last answer {last}\ntargets: {:?}\nreplica log:\n{}",
            prom.api("/api/v1/targets?state=active"),
            replicas[0].log(),
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let rows = last["result"].as_array().cloned().unwrap_or_default();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &rows {
        let daemon = r["metric"]["daemon"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let instance = r["metric"]["instance"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(r["metric"]["job"], "dockwatch", "{r}");
        // The target is the daemon: its name is the instance.
        assert_eq!(daemon, instance, "{r}");
        seen.entry(daemon).or_default().push(instance);
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        {
            let mut n = names.clone();
            n.sort();
            n
        },
        "every daemon once: {last}"
    );
    assert!(seen.values().all(|v| v.len() == 1), "{seen:?}");

    // Each shard scraped its share, none both: the targets per replica.
    let targets = prom.api("/api/v1/targets?state=active").expect("targets");
    let mut per_replica: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in targets["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if t["labels"]["job"] != "dockwatch" {
            continue;
        }
        let url = t["scrapeUrl"].as_str().unwrap_or_default().to_owned();
        let replica = url.split('/').nth(2).unwrap_or_default().to_owned();
        per_replica.entry(replica).or_default().push(
            t["labels"]["instance"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
        assert_eq!(t["health"], "up", "{t}");
    }
    let total: usize = per_replica.values().map(Vec::len).sum();
    assert_eq!(total, names.len(), "{per_replica:?}");
    assert_eq!(
        per_replica.len(),
        2,
        "both replicas have a share: {per_replica:?}"
    );

    // A probe is one daemon's series and nothing else.
    let (status, body) = http_get(replicas[0].port, "/probe?target=a-2").expect("probe");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("dockwatch_daemon_up{daemon=\"a-2\"} 1\n"),
        "{body}"
    );
    assert!(body.contains("dockwatch_images{daemon=\"a-2\"}"), "{body}");
    assert!(!body.contains("daemon=\"a\""), "{body}");
    assert!(!body.contains("process_"), "{body}");
    let (status, body) = http_get(replicas[0].port, "/probe?target=10.0.0.1:2375").expect("probe");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown target"), "{body}");
    let (status, body) = http_get(replicas[0].port, "/probe").expect("probe");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("target="), "{body}");
    drop(prom);
    std::fs::remove_dir_all(dir).ok();
}
