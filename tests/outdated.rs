//! Containers running an older image than their tag, on dockerd A and on
//! Podman, compared with what `docker inspect` says of each running
//! container (`Config.Image` against `Image`): a pre-pull moves the tag of
//! a running container (0 -> 1), a restarted dockwatch finds it again, and
//! recreating the container brings it back to 0.
// Counter values are whole numbers, exact in f64.
#![allow(clippy::cast_precision_loss, clippy::float_cmp)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{DockerCli, Dockwatch, FAST_POLL, Scrape, Scratch, Testbed};

fn outdated(s: &Scrape, daemon: &str) -> Option<f64> {
    s.get("dockwatch_containers_outdated", &[("daemon", daemon)])
}

fn outdated_of(s: &Scrape, daemon: &str, image: &str) -> Option<f64> {
    s.get(
        "dockwatch_image_containers_outdated",
        &[("daemon", daemon), ("image", image)],
    )
}

fn inspects(s: &Scrape) -> f64 {
    s.get(
        "dockwatch_api_request_duration_seconds_count",
        &[("daemon", "a"), ("endpoint", "container_inspect")],
    )
    .unwrap_or(0.0)
}

fn polls(s: &Scrape, daemon: &str) -> f64 {
    s.get(
        "dockwatch_api_request_duration_seconds_count",
        &[("daemon", daemon), ("endpoint", "version")],
    )
    .unwrap_or(0.0)
}

/// What a test made, removed however it ends: containers and images on a
/// daemon, and manifests in the registry (by digest).
struct Cleanup {
    cli: DockerCli,
    containers: Vec<String>,
    images: Vec<String>,
    registry: Option<String>,
    manifests: Vec<(String, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Absent is fine: this only undoes what the test may have made.
        for c in &self.containers {
            let _ = self.cli.try_run(&["rm", "-f", c]);
        }
        self.cli
            .rmi_f(&self.images.iter().map(String::as_str).collect::<Vec<_>>());
        if let Some(registry) = &self.registry {
            for (repo, digest) in &self.manifests {
                let _ = Command::new("curl")
                    .args(["-sf", "-X", "DELETE"])
                    .arg(format!("http://{registry}/v2/{repo}/manifests/{digest}"))
                    .output();
            }
        }
    }
}

/// The digest the registry gave `image` when it was pushed.
fn pushed_digest(cli: &DockerCli, image: &str) -> String {
    let digests = cli.run(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        image,
    ]);
    let list: Vec<String> = serde_json::from_str(digests.trim()).expect("RepoDigests");
    list.iter()
        .find_map(|d| d.split_once('@').map(|(_, digest)| digest.to_owned()))
        .unwrap_or_else(|| panic!("{image} has no repo digest: {digests}"))
}

/// The IMAGE column `docker ps` shows for a container.
fn ps_image(cli: &DockerCli, name: &str) -> String {
    cli.run(&[
        "ps",
        "--filter",
        &format!("name=^{name}$"),
        "--format",
        "{{.Image}}",
    ])
    .trim()
    .to_owned()
}

#[test]
#[allow(clippy::too_many_lines)] // one story: pull, restart, recreate
fn a_prepull_that_moves_a_running_containers_tag_on_dockerd() {
    let bed = Testbed::get();
    let (a, b) = (bed.cli_a(), bed.cli_b());
    let registry = bed.var("REGISTRY").to_owned();
    let pid = std::process::id();
    let repo = format!("dwsig/app-{pid}");
    let image = format!("{registry}/{repo}:1");
    let names = [
        format!("sig-tag-{pid}"),
        format!("sig-id-{pid}"),
        format!("sig-digest-{pid}"),
    ];
    let [by_tag, by_id, by_digest] = &names;
    let dir = Scratch::new("outdated");
    let mut made = Cleanup {
        cli: a.clone(),
        containers: names.to_vec(),
        images: vec![image.clone()],
        registry: Some(registry.clone()),
        manifests: Vec::new(),
    };
    // B only pushes the second image; it keeps nothing.
    let _b_made = Cleanup {
        cli: b.clone(),
        containers: Vec::new(),
        images: vec![image.clone()],
        registry: None,
        manifests: Vec::new(),
    };

    // Version 1 in the registry and on A, and three containers of it: by
    // tag, by image ID, by digest.
    let v1 = a.import_variant(&dir.0, &image, "v1");
    made.images.push(v1.clone());
    a.run(&["push", &image]);
    let digest = pushed_digest(&a, &image);
    made.manifests.push((repo.clone(), digest.clone()));
    let run = |name: &str, reference: &str| {
        a.run(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            reference,
            "/bin/busybox",
            "sleep",
            "600",
        ]);
    };
    run(by_tag, &image);
    run(by_id, &v1);
    run(by_digest, &format!("{registry}/{repo}@{digest}"));
    assert_eq!(a.outdated_containers(), Vec::<String>::new());

    let config = format!(
        "{FAST_POLL}{}[prepull]\ninterval = \"3s\"\ntimeout = \"2500ms\"\nstall_timeout = \"2s\"\njitter = \"0s\"\n[[prepull.images]]\nimage = \"{image}\"\n",
        bed.daemon_a("a")
    );
    let dw = Dockwatch::start(&config);
    let s = dw.wait_for("a pre-pull that found v1", Duration::from_secs(30), |s| {
        s.pulls("a", &image, "up_to_date") >= 1.0 && outdated(s, "a").is_some()
    });
    assert_eq!(outdated(&s, "a"), Some(0.0), "{}", s.text);
    assert_eq!(outdated_of(&s, "a", &image), Some(0.0));
    // Only the container created from the full ID shows it in the list:
    // inspected once, to learn it was created from an ID.
    assert_eq!(inspects(&s), 1.0, "{}", s.text);

    // Version 2 goes to the registry under the same tag, from B.
    let v2 = b.import_variant(&dir.0, &image, "v2");
    b.run(&["push", &image]);
    made.manifests
        .push((repo.clone(), pushed_digest(&b, &image)));
    b.rmi_f(&[&image]);
    let s = dw.wait_for(
        "the pre-pull of v2 and its outdated container",
        Duration::from_secs(30),
        |s| s.pulls("a", &image, "updated") >= 1.0 && outdated(s, "a") == Some(1.0),
    );
    assert_eq!(a.image_id(&image).as_deref(), Some(v2.as_str()));
    made.images.push(v2.clone());
    // Ground truth: docker inspect says the same container, and only it.
    assert_eq!(a.outdated_containers(), std::slice::from_ref(by_tag));
    assert_eq!(outdated(&s, "a"), Some(1.0));
    assert_eq!(outdated_of(&s, "a", &image), Some(1.0));
    // dockerd 20.10 now lists it by its image ID, not its tag: the tag came
    // from an earlier poll, no inspect was needed.
    assert_eq!(ps_image(&a, by_tag), v1.trim_start_matches("sha256:")[..12]);
    assert_eq!(inspects(&s), 1.0, "{}", s.text);
    drop(dw);

    // A new dockwatch never saw its tag: it inspects each container listed
    // by ID once (the outdated one and the one created from the ID), then
    // never again.
    let dw = Dockwatch::start(&config);
    let s = dw.wait_for(
        "the outdated container again",
        Duration::from_secs(30),
        |s| outdated(s, "a") == Some(1.0),
    );
    assert_eq!(outdated_of(&s, "a", &image), Some(1.0));
    assert_eq!(inspects(&s), 2.0, "{}", s.text);
    let seen = polls(&s, "a");
    let s = dw.wait_for("three more polls", Duration::from_secs(30), |s| {
        polls(s, "a") >= seen + 3.0
    });
    assert_eq!(inspects(&s), 2.0, "inspected again:\n{}", s.text);
    assert_eq!(outdated(&s, "a"), Some(1.0));

    // Recreate it from the tag: it runs v2, nothing is outdated.
    a.run(&["rm", "-f", by_tag]);
    run(by_tag, &image);
    assert_eq!(a.outdated_containers(), Vec::<String>::new());
    let s = dw.wait_for("the recreated container", Duration::from_secs(30), |s| {
        outdated(s, "a") == Some(0.0)
    });
    assert_eq!(outdated_of(&s, "a", &image), Some(0.0));
    // Only containers listed by ID were ever inspected.
    assert_eq!(inspects(&s), 2.0, "{}", s.text);
}

#[test]
fn a_tag_moved_under_a_running_container_on_podman() {
    let bed = Testbed::get();
    let p = bed.cli_at(bed.var("PODMAN_HOST"));
    let pid = std::process::id();
    // Podman names an image imported through the Docker API docker.io/...
    let image = format!("dwsig/papp-{pid}:1");
    let name = format!("sig-p-{pid}");
    let dir = Scratch::new("outdated-podman");
    let mut made = Cleanup {
        cli: p.clone(),
        containers: vec![name.clone()],
        images: vec![image.clone()],
        registry: None,
        manifests: Vec::new(),
    };
    let v1 = p.import_variant(&dir.0, &image, "v1");
    made.images.push(v1);
    let run = || {
        p.run(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            &image,
            "/bin/busybox",
            "sleep",
            "600",
        ]);
    };
    run();
    let dw = Dockwatch::start(&format!(
        "[poll]\ninterval = \"3s\"\ntimeout = \"2500ms\"\n[[daemons]]\nname = \"p\"\nhost = \"{}\"\n",
        bed.var("PODMAN_HOST")
    ));
    let s = dw.wait_for("a good poll", Duration::from_secs(30), |s| {
        outdated(s, "p").is_some()
    });
    assert_eq!(p.outdated_containers(), Vec::<String>::new());
    assert_eq!(outdated(&s, "p"), Some(0.0));

    // The tag moves to another image (an import here; a pull the same).
    let v2 = p.import_variant(&dir.0, &image, "v2");
    made.images.push(v2);
    assert_eq!(p.outdated_containers(), std::slice::from_ref(&name));
    let s = dw.wait_for("the outdated container", Duration::from_secs(30), |s| {
        outdated(s, "p") == Some(1.0)
    });
    // Podman lists the container by its name, never by ID: nothing to inspect.
    assert_eq!(
        s.get(
            "dockwatch_api_request_duration_seconds_count",
            &[("daemon", "p"), ("endpoint", "container_inspect")],
        ),
        None
    );

    p.run(&["rm", "-f", &name]);
    run();
    assert_eq!(p.outdated_containers(), Vec::<String>::new());
    dw.wait_for("the recreated container", Duration::from_secs(30), |s| {
        outdated(s, "p") == Some(0.0)
    });
}
