//! Registry checks (is there something newer for the tag?) against the real
//! test bed: dockerd A (the classic image store), a Docker 26 of the test's
//! own with the containerd image store, Podman (which has no
//! `/distribution`), and the registries. Ground truth: the registry's own
//! API (`HEAD /v2/<name>/manifests/<tag>` with the manifest types as Accept
//! headers) for what the tag points at, and `docker image inspect` for the
//! digests the local image was pulled by.
#![allow(clippy::cast_precision_loss, clippy::float_cmp)] // counts are whole numbers

mod common;

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{DockerCli, Dockwatch, OwnDaemon, Scrape, Scratch, Testbed, assert_success};

// The tests share daemon A's image store: one at a time.
use common::turn;

/// Every manifest type a registry may answer for a tag.
const ACCEPT: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Pushes a new version of `repo:tag` (an OCI index, a Docker manifest list,
/// or one manifest) with `tests/bed/push_index.py`: the digest the tag now
/// points at, as the script computed it, and the linux/amd64 manifest's.
fn push(registry: &str, repo: &str, tag: &str, seed: &str, kind: Kind) -> (String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bed/push_index.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([
        "--registry",
        registry,
        "--repo",
        repo,
        "--tag",
        tag,
        "--seed",
        seed,
    ]);
    match kind {
        Kind::OciIndex => cmd.args(["--format", "oci"]),
        Kind::ManifestList => cmd.args(["--format", "docker"]),
        Kind::Single => cmd.args(["--format", "docker", "--single"]),
    };
    let out = cmd.output().expect("python3");
    assert_success(&out, "tests/bed/push_index.py");
    let json: Value = serde_json::from_slice(&out.stdout).expect("push_index.py prints JSON");
    let key = if kind == Kind::Single {
        "manifest"
    } else {
        "index"
    };
    let digest = |v: &Value| v.as_str().expect("a digest").to_owned();
    (
        digest(&json[key]["digest"]),
        digest(&json["manifests"]["linux/amd64"]),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OciIndex,
    ManifestList,
    Single,
}

/// `curl -I` of the tag's manifest with every manifest type accepted, and
/// optional credentials: (HTTP status, Docker-Content-Digest).
fn registry_head(
    registry: &str,
    repo: &str,
    tag: &str,
    user: Option<(&str, &str)>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-I", "-o", "-", "-w", "%{http_code}\\n"]);
    for a in ACCEPT {
        cmd.args(["-H", &format!("Accept: {a}")]);
    }
    if let Some((u, p)) = user {
        // From a config on stdin, so the password is not in argv.
        cmd.args(["-K", "-"]);
        cmd.stdin(std::process::Stdio::piped());
        let mut child = cmd
            .arg(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("curl");
        std::io::Write::write_all(
            child.stdin.as_mut().expect("stdin"),
            format!("user = \"{u}:{p}\"\n").as_bytes(),
        )
        .expect("write to curl");
        let out = child.wait_with_output().expect("curl");
        return parse_head(&String::from_utf8_lossy(&out.stdout));
    }
    let out = cmd
        .arg(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
        .output()
        .expect("curl");
    parse_head(&String::from_utf8_lossy(&out.stdout))
}

fn parse_head(text: &str) -> (u16, String) {
    let status = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let digest = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, digest)
}

/// `docker image inspect`'s `RepoDigests` of `image`: the digests of the
/// entries naming its repository.
fn cli_repo_digests(cli: &DockerCli, image: &str) -> Vec<String> {
    let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
    let out = cli.run(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        image,
    ]);
    let list: Vec<String> = serde_json::from_str(out.trim()).expect("RepoDigests is JSON");
    list.iter()
        .filter_map(|e| e.split_once('@'))
        .filter(|(r, _)| *r == repo)
        .map(|(_, d)| d.to_owned())
        .collect()
}

fn cli_image_id(cli: &DockerCli, image: &str) -> String {
    cli.run(&["image", "inspect", "--format", "{{.Id}}", image])
        .trim()
        .to_owned()
}

fn update_available(s: &Scrape, daemon: &str, image: &str) -> Option<f64> {
    s.get(
        "dockwatch_image_update_available",
        &[("daemon", daemon), ("image", image)],
    )
}

fn checks(s: &Scrape, daemon: &str, image: &str, result: &str) -> f64 {
    s.get(
        "dockwatch_image_registry_checks_total",
        &[("daemon", daemon), ("image", image), ("result", result)],
    )
    .unwrap_or(0.0)
}

fn check_failures(s: &Scrape, daemon: &str, image: &str, reason: &str) -> f64 {
    s.get(
        "dockwatch_image_registry_check_failures_total",
        &[("daemon", daemon), ("image", image), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// `promtool check metrics` of a scrape: its complaints, empty if none.
fn promtool_check(text: &str) -> String {
    common::output_text(&common::prometheus::promtool_check_metrics(text))
}

/// The `check` object of `/pulls` for `image` on `daemon`.
fn pulls_check(dw: &Dockwatch, daemon: &str, image: &str) -> Value {
    dw.pulls().expect("/pulls")["daemons"][daemon][image]["check"].clone()
}

/// Removes images by id from a daemon however the test ends (the bed's A
/// must hold exactly its seeds afterwards).
struct Cleanup<'a> {
    cli: DockerCli,
    ids: Vec<String>,
    refs: Vec<String>,
    _bed: &'a Testbed,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let refs: Vec<&str> = self.refs.iter().map(String::as_str).collect();
        self.cli.rmi_f(&refs);
        let ids: Vec<&str> = self.ids.iter().map(String::as_str).collect();
        self.cli.rmi_f(&ids);
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one story: pull, move, see, pull, see, delete
fn moved_tags_are_seen_without_pulling_on_both_image_stores() {
    let _turn = turn();
    let t0 = Instant::now();
    let bed = Testbed::get();
    let reg = bed.var("REGISTRY");
    let run = std::process::id();
    let repos = [
        (Kind::OciIndex, format!("dwtest/moving-oci-{run}")),
        (Kind::ManifestList, format!("dwtest/moving-list-{run}")),
        (Kind::Single, format!("dwtest/moving-single-{run}")),
    ];
    let image = |repo: &str| format!("{reg}/{repo}:1");
    let mut v1 = Vec::new();
    let mut platform = Vec::new();
    for (kind, repo) in &repos {
        // A seed per kind: each repository's image has content of its own.
        let (d, amd64) = push(reg, repo, "1", &format!("v1-{run}-{kind:?}"), *kind);
        // For an index, the tag's digest is not the platform manifest's.
        assert_eq!(*kind == Kind::Single, d == amd64, "{kind:?}");
        platform.push(amd64);
        // The registry's own answer is what the script computed.
        assert_eq!(registry_head(reg, repo, "1", None), (200, d.clone()));
        v1.push(d);
    }

    let scratch = Scratch::new("regcheck");
    let modern = OwnDaemon::start_containerd_store(&scratch.0.join("d"));
    let cli_c = bed.cli_at(&modern.host());
    let info = cli_c.run(&["info", "--format", "{{.ServerVersion}} {{.Driver}}"]);
    eprintln!("daemon c: Docker {}", info.trim());
    assert!(
        info.contains("overlayfs"),
        "daemon c should use the containerd image store (driver overlayfs): {info}"
    );
    let daemons = [("a", bed.cli_a()), ("c", cli_c.clone())];
    let mut cleanup = Cleanup {
        cli: bed.cli_a(),
        ids: Vec::new(),
        refs: repos.iter().map(|(_, r)| image(r)).collect(),
        _bed: &bed,
    };

    let mut config = format!(
        "[poll]\ninterval = \"2s\"\ntimeout = \"1500ms\"\n{}{}[prepull]\ninterval = \"1h\"\njitter = \"0s\"\ncheck_interval = \"1s\"\n",
        bed.daemon_a("a"),
        common::daemon_toml("c", &modern.host()),
    );
    for (_, repo) in &repos {
        let _ = writeln!(config, "[[prepull.images]]\nimage = \"{}\"", image(repo));
    }
    let dw = Dockwatch::start(&config);

    // 1. Pre-pulled: the local image is what the tag points at.
    let all = |s: &Scrape, want: f64| {
        daemons.iter().all(|(d, _)| {
            repos
                .iter()
                .all(|(_, r)| update_available(s, d, &image(r)) == Some(want))
        })
    };
    let s = dw.wait_for(
        "update_available 0 everywhere after the pre-pulls",
        Duration::from_secs(120),
        |s| all(s, 0.0),
    );
    for (d, cli) in &daemons {
        for ((kind, repo), digest) in repos.iter().zip(&v1) {
            let img = image(repo);
            assert_eq!(s.pulls(d, &img, "updated"), 1.0, "{d} {img}");
            let local = cli_repo_digests(cli, &img);
            assert!(
                local.contains(digest),
                "{d}: RepoDigests of {img} {local:?} lack the tag's {digest}"
            );
            let check = pulls_check(&dw, d, &img);
            assert_eq!(check["result"], "same", "{d} {img}: {check}");
            assert_eq!(check["registry_digest"], digest.as_str(), "{d} {img}");
            assert!(
                check["local_digests"]
                    .as_array()
                    .expect("list")
                    .iter()
                    .all(|x| local.iter().any(|l| x == l)),
                "{d} {img}: {check} vs CLI {local:?}"
            );
            let media = check["media_type"].as_str().unwrap_or_default();
            let want = match kind {
                Kind::OciIndex => "application/vnd.oci.image.index.v1+json",
                Kind::ManifestList => "application/vnd.docker.distribution.manifest.list.v2+json",
                Kind::Single => "application/vnd.docker.distribution.manifest.v2+json",
            };
            assert_eq!(media, want, "{d} {img}");
            // Like with like: what the tag points at, never one platform's
            // manifest; the image id is the index digest on the containerd
            // store only (the classic store's is the config's).
            let amd64 = &platform[repos.iter().position(|(_, r)| r == repo).expect("repo")];
            assert!(
                *kind == Kind::Single || !local.contains(amd64),
                "{d} {img}: {local:?} holds the platform manifest {amd64}"
            );
            let id = cli_image_id(cli, &img);
            assert_eq!(id == *digest, *d == "c", "{d} {img}: image id {id}");
            eprintln!(
                "MEASURE {d} {kind:?}: registry {digest} in local RepoDigests {local:?}: same (platform manifest {amd64}, image id {id})"
            );
        }
    }
    for (_, repo) in &repos {
        cleanup.ids.push(cli_image_id(&bed.cli_a(), &image(repo)));
    }

    // 2. The tags move in the registry; nothing is pulled.
    let mut v2 = Vec::new();
    for (kind, repo) in &repos {
        let (d, _) = push(reg, repo, "1", &format!("v2-{run}-{kind:?}"), *kind);
        assert_eq!(registry_head(reg, repo, "1", None), (200, d.clone()));
        v2.push(d);
    }
    let moved = Instant::now();
    let s = dw.wait_for(
        "update_available 1 everywhere after the tags moved",
        Duration::from_secs(60),
        |s| all(s, 1.0),
    );
    eprintln!(
        "MEASURE moved tags seen on both stores {:.1} s after the push (check_interval 1 s)",
        moved.elapsed().as_secs_f64()
    );
    for (d, cli) in &daemons {
        for ((kind, repo), (old, new)) in repos.iter().zip(v1.iter().zip(&v2)) {
            let img = image(repo);
            assert_ne!(old, new);
            // Not pulled: the daemon still has the old digest only.
            assert_eq!(
                s.pulls(d, &img, "updated"),
                1.0,
                "{d} {img} was pulled again"
            );
            let local = cli_repo_digests(cli, &img);
            assert!(
                local.contains(old) && !local.contains(new),
                "{d}: {img} {local:?}"
            );
            assert!(checks(&s, d, &img, "differs") >= 1.0);
            let check = pulls_check(&dw, d, &img);
            assert_eq!(check["registry_digest"], new.as_str(), "{d} {img}: {check}");
            assert_eq!(check["result"], "differs", "{d} {img}");
            eprintln!(
                "MEASURE {d} {kind:?}: registry {new} not in local RepoDigests {local:?}: differs"
            );
        }
    }

    // 3. Pulled by hand: the same again, after one more check.
    for (_, cli) in &daemons {
        for (_, repo) in &repos {
            cli.run(&["pull", "-q", &image(repo)]);
        }
    }
    let s = dw.wait_for(
        "update_available 0 again after docker pull",
        Duration::from_secs(60),
        |s| all(s, 0.0),
    );
    for (d, cli) in &daemons {
        for ((_, repo), new) in repos.iter().zip(&v2) {
            let img = image(repo);
            assert!(cli_repo_digests(cli, &img).contains(new), "{d} {img}");
            assert!(checks(&s, d, &img, "same") >= 2.0);
        }
    }
    for (_, repo) in &repos {
        cleanup.ids.push(cli_image_id(&bed.cli_a(), &image(repo)));
    }

    // 4. The tag is deleted in the registry: not_found, and the last
    // comparison stands.
    let (kind, repo) = &repos[0];
    assert_eq!(*kind, Kind::OciIndex);
    let del = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "DELETE",
        ])
        .arg(format!("http://{reg}/v2/{repo}/manifests/{}", v2[0]))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&del.stdout),
        "202",
        "registry DELETE"
    );
    assert_eq!(registry_head(reg, repo, "1", None).0, 404);
    let img = image(repo);
    let s = dw.wait_for(
        "not_found checks on both daemons",
        Duration::from_secs(60),
        |s| {
            daemons
                .iter()
                .all(|(d, _)| check_failures(s, d, &img, "not_found") >= 1.0)
        },
    );
    for (d, _) in &daemons {
        assert_eq!(
            update_available(&s, d, &img),
            Some(0.0),
            "{d}: kept through the failure"
        );
        assert!(checks(&s, d, &img, "failed") >= 1.0);
        let check = pulls_check(&dw, d, &img);
        assert_eq!(check["reason"], "not_found", "{d}: {check}");
    }
    // The exposition with every new family in it is clean.
    for family in [
        "dockwatch_image_update_available",
        "dockwatch_image_registry_checks_total",
        "dockwatch_image_registry_check_failures_total",
        "dockwatch_prepull_window_open",
    ] {
        assert!(
            s.text.contains(&format!("\n{family}{{")),
            "{family} missing"
        );
    }
    assert_eq!(promtool_check(&s.text), "", "promtool check metrics");
    // Every check was one call of each kind, each counted.
    let calls = s.sum(
        "dockwatch_api_request_duration_seconds_count",
        &[("daemon", "a"), ("endpoint", "distribution")],
    );
    let counted: f64 = ["same", "differs", "failed"]
        .iter()
        .map(|r| {
            repos
                .iter()
                .map(|(_, rp)| checks(&s, "a", &image(rp), r))
                .sum::<f64>()
        })
        .sum();
    assert!(
        calls >= counted && counted > 0.0,
        "{calls} /distribution calls, {counted} checks"
    );
    drop(dw);
    drop(modern);
    eprintln!("done in {:?}", t0.elapsed());
}

#[test]
fn podman_has_no_distribution_endpoint() {
    let _turn = turn();
    let bed = Testbed::get();
    let cli = bed.cli_at(bed.var("PODMAN_HOST"));
    let image = bed.var("IMAGE_MULTI1").to_owned();
    // Ground truth: Podman's API answers the endpoint with a bare 404.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-w",
            " %{http_code}",
            "--unix-socket",
            bed.var("PODMAN_SOCKET"),
        ])
        .arg(format!("http://d/v1.41/distribution/{image}/json"))
        .output()
        .expect("curl");
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(answer.ends_with(" 404"), "Podman answered {answer:?}");
    let config = format!(
        "[poll]\ninterval = \"3s\"\ntimeout = \"2500ms\"\n{}[prepull]\njitter = \"0s\"\ncheck_interval = \"1s\"\n[[prepull.images]]\nimage = \"{image}\"\n",
        common::daemon_toml("podman", bed.var("PODMAN_HOST"))
    );
    let dw = Dockwatch::start(&config);
    let s = dw.wait_for("an unsupported check", Duration::from_secs(90), |s| {
        check_failures(s, "podman", &image, "unsupported") >= 1.0
    });
    assert!(cli.has_image(&image), "the pre-pull worked");
    // Not asked again: a few check intervals later, still one call.
    std::thread::sleep(Duration::from_secs(4));
    let later = dw.scrape();
    let calls = |s: &Scrape| {
        s.get(
            "dockwatch_api_request_duration_seconds_count",
            &[("daemon", "podman"), ("endpoint", "distribution")],
        )
    };
    assert_eq!(calls(&s), Some(1.0));
    assert_eq!(calls(&later), Some(1.0), "asked again after unsupported");
    assert_eq!(checks(&later, "podman", &image, "failed"), 1.0);
    assert_eq!(update_available(&later, "podman", &image), None);
    let check = pulls_check(&dw, "podman", &image);
    assert_eq!(check["reason"], "unsupported", "{check}");
    assert_eq!(check["update_available"], Value::Null);
    eprintln!(
        "MEASURE podman: /distribution answered {answer:?}; 1 check, failed/unsupported, then no more calls"
    );
    drop(dw);
    cli.rmi_f(&[&image]);
}

#[test]
fn checks_send_the_pull_credentials() {
    let _turn = turn();
    let bed = Testbed::get();
    let reg = bed.var("REGISTRY_AUTH");
    let image = bed.var("IMAGE_PRIVATE").to_owned();
    let user = bed.var("REGISTRY_AUTH_USER");
    let pass_file = bed.var("REGISTRY_AUTH_PASSWORD_FILE");
    let secret = std::fs::read_to_string(pass_file).expect("password");
    let _cleanup = Cleanup {
        cli: bed.cli_a(),
        ids: Vec::new(),
        refs: vec![image.clone()],
        _bed: &bed,
    };
    bed.cli_a().rmi_f(&[&image]);
    let (status, digest) = registry_head(reg, "private/app", "1", Some((user, secret.trim())));
    assert_eq!(status, 200);
    assert_eq!(registry_head(reg, "private/app", "1", None).0, 401);
    let config = |pass: &str| {
        format!(
            "[poll]\ninterval = \"2s\"\ntimeout = \"1500ms\"\n{}[prepull]\njitter = \"0s\"\ncheck_interval = \"1s\"\n[[prepull.images]]\nimage = \"{image}\"\n[[registries]]\nserver = \"{reg}\"\nusername = \"{user}\"\npassword_file = \"{pass}\"\n",
            bed.daemon_a("a")
        )
    };
    let dw = Dockwatch::start(&config(pass_file));
    dw.wait_for(
        "a good check with credentials",
        Duration::from_secs(60),
        |s| update_available(s, "a", &image) == Some(0.0),
    );
    assert_eq!(
        pulls_check(&dw, "a", &image)["registry_digest"],
        digest.as_str()
    );
    drop(dw);

    // A wrong password: the check fails as unauthorized.
    let scratch = Scratch::new("regcheck-auth");
    let wrong = scratch.0.join("wrong.pass");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let dw = Dockwatch::start(&config(&wrong.display().to_string()));
    let s = dw.wait_for("an unauthorized check", Duration::from_secs(60), |s| {
        check_failures(s, "a", &image, "unauthorized") >= 1.0
    });
    assert_eq!(update_available(&s, "a", &image), None);
    let pulls = serde_json::to_string(&dw.pulls().expect("/pulls")).expect("json");
    for (what, text) in [
        ("/metrics", &s.text),
        ("/pulls", &pulls),
        ("log", &dw.log()),
    ] {
        assert!(!text.contains(secret.trim()), "the password is in {what}");
    }
    eprintln!(
        "MEASURE auth registry: {digest} by curl with credentials = dockwatch's check; wrong password: unauthorized"
    );
}
