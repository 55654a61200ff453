//! Pruning on the real test bed: every case runs on each engine of
//! [`engines`] (dockerd A and Podman today), with images made here whose
//! `Created` is chosen (a one-layer image written as a `docker load` tar),
//! so `older_than` (24 h) splits them the same way every run. The docker CLI
//! says before and after what is on each daemon; dockwatch's counters, the
//! `dockwatch prune` output and the daemons' dangling totals are compared
//! with it. A gate in front of a daemon's socket (tests/common/gate.rs)
//! holds a removal so a test can act mid-round on the real daemon.
//!
//! Every image made here carries the label `dwtest.prune=GROUP` of its
//! test, every prune here is narrowed to that label, and everything is
//! removed again at the end, so the bed's own images are never touched.
//! Lines starting `PRUNE:` summarise each case's counts and bytes.
// Counts and bytes here are small whole numbers, exact in an f64 sample.
#![allow(
    clippy::float_cmp,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use std::time::Duration;

use common::gate::Gate;
use common::{
    DockerCli, Dockwatch, OwnDaemon, Scrape, Scratch, Testbed, Thaw, assert_success, binary,
    daemon_toml, kill, output_text,
};

// The tests of this file run one at a time: each compares a daemon's
// dangling totals with dockwatch's, which another test's images would move.
use common::turn as serial;

/// One engine the cases run on: its daemon name in dockwatch's config,
/// its socket, and the docker CLI aimed at it.
struct Engine {
    name: &'static str,
    socket: PathBuf,
    cli: DockerCli,
    /// The containerd image store: there `docker image inspect` gives an
    /// image's content only, while the Engine's own list (what dockwatch
    /// and `docker images` report, and a removal reclaims) adds the
    /// unpacked snapshot. The list is the ground truth for bytes there.
    listed_sizes: bool,
}

impl Engine {
    fn unix(bed: &Testbed, name: &'static str, socket_var: &str) -> Self {
        let socket = PathBuf::from(bed.var(socket_var));
        let cli = bed.cli_at(&format!("unix://{}", socket.display()));
        Self {
            name,
            socket,
            cli,
            listed_sizes: false,
        }
    }

    /// An image's size as the ground truth for this engine says it.
    fn size(&self, id: &str) -> u64 {
        if self.listed_sizes {
            Self::listed_size(&self.socket, id)
        } else {
            inspect_size(&self.cli, id)
        }
    }

    /// An image's `Size` in the Engine's own `GET /images/json` answer.
    fn listed_size(socket: &Path, id: &str) -> u64 {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "10", "--unix-socket"])
            .arg(socket)
            .arg("http://d/images/json?all=1")
            .output()
            .expect("curl");
        let list: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).expect("an image list");
        list.iter()
            .find(|i| {
                i["Id"]
                    .as_str()
                    .is_some_and(|x| x == id || x.trim_start_matches("sha256:") == id)
            })
            .and_then(|i| i["Size"].as_u64())
            .unwrap_or_else(|| panic!("{id} is not in the daemon's image list"))
    }

    /// What the daemon lists as dangling: (count, bytes).
    fn dangling(&self) -> (u64, u64) {
        if self.listed_sizes {
            let ids = self.cli.image_ids(&["dangling=true"]);
            (ids.len() as u64, ids.iter().map(|i| self.size(i)).sum())
        } else {
            dangling(&self.cli)
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn toml(&self) -> String {
        daemon_toml(self.name, &self.host())
    }
}

/// The engines every case runs on. Adding one is one line here, say Docker
/// 26 with the containerd image store once the bed has it:
/// `Engine::unix(bed, "c", "DOCKER_C_SOCKET"),`
fn engines(bed: &Testbed) -> Vec<Engine> {
    let mut c = Engine::unix(bed, "c", "DOCKER_C_SOCKET");
    // Docker 26's own CLI for Docker 26 (the containerd image store).
    c.cli = bed.cli_c();
    c.listed_sizes = true;
    vec![
        Engine::unix(bed, "a", "DOCKER_A_SOCKET"),
        Engine::unix(bed, "podman", "PODMAN_SOCKET"),
        c,
    ]
}

/// Podman's /info can take seconds on a busy machine; the call timeout is
/// also each removal's.
const POLL: &str = "[poll]\ninterval = \"3s\"\ntimeout = \"2500ms\"\ndisk_interval = \"0\"\n";

/// Creation times: well past `older_than` (24 h), and well inside it.
const OLD_2019: &str = "2019-06-01T00:00:00Z";
const OLD_2020: &str = "2020-01-01T00:00:00Z";

fn ago(hours: i64) -> String {
    (time::OffsetDateTime::now_utc() - time::Duration::hours(hours))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time formats")
}

/// The `[prune]` table of a test: prune the group's images often.
fn prune_toml(group: &str, extra: &str) -> String {
    format!(
        "[prune]\nenabled = true\ninterval = \"2s\"\njitter = \"1s\"\nolder_than = \"24h\"\nfilters = {{ label = [\"dwtest.prune={group}\"] }}\n{extra}"
    )
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_success(&out, what);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256(path: &Path) -> String {
    run_ok(Command::new("sha256sum").arg(path), "sha256sum")
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

fn tar(dir: &Path, out: &Path) {
    run_ok(
        Command::new("tar")
            .args([
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@0",
                "-C",
            ])
            .arg(dir)
            .arg("-cf")
            .arg(out)
            .arg("."),
        "tar",
    );
}

/// Writes a `docker load` archive of a one-layer image: `size` bytes of
/// content unique to `seed`, created at `created`, labelled
/// `dwtest.prune=GROUP` and `dwtest.prune.seed=SEED`, tagged `tag` or
/// not at all (then it loads dangling).
fn craft(
    dir: &Path,
    group: &str,
    seed: &str,
    created: &str,
    size: usize,
    tag: Option<&str>,
) -> PathBuf {
    let root = dir.join(format!("img-{seed}"));
    let layer_dir = root.join("layer");
    let img = root.join("img");
    std::fs::create_dir_all(&layer_dir).expect("layer dir");
    std::fs::create_dir_all(&img).expect("image dir");
    let mut data = Vec::with_capacity(size + 64);
    let mut i = 0_u64;
    while data.len() < size {
        data.extend_from_slice(format!("{group}/{seed}/{i}\n").as_bytes());
        i += 1;
    }
    data.truncate(size);
    std::fs::write(layer_dir.join("data"), &data).expect("layer data");
    let layer_tar = root.join("layer.tar");
    tar(&layer_dir, &layer_tar);
    let diff = sha256(&layer_tar);
    std::fs::create_dir_all(img.join(&diff)).expect("layer folder");
    std::fs::rename(&layer_tar, img.join(&diff).join("layer.tar")).expect("move layer");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {"Labels": {"dwtest.prune": group, "dwtest.prune.seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
        "history": [{"created": created, "created_by": "tests/prune.rs"}],
    });
    let config_path = root.join("config.json");
    std::fs::write(&config_path, config.to_string()).expect("config");
    let config_id = sha256(&config_path);
    std::fs::rename(&config_path, img.join(format!("{config_id}.json"))).expect("move config");
    let manifest = serde_json::json!([{
        "Config": format!("{config_id}.json"),
        "RepoTags": tag.map(|t| vec![t]),
        "Layers": [format!("{diff}/layer.tar")],
    }]);
    std::fs::write(img.join("manifest.json"), manifest.to_string()).expect("manifest");
    let out = root.with_extension("tar");
    tar(&img, &out);
    out
}

/// The id the daemon gives the image made from `seed`.
fn id_of(cli: &DockerCli, seed: &str) -> String {
    let label = format!("label=dwtest.prune.seed={seed}");
    let ids = cli.image_ids(&[&label]);
    assert_eq!(ids.len(), 1, "images with {label}: {ids:?}");
    ids[0].clone()
}

/// Loads an archive from [`craft`]; returns the image's id there.
fn load(cli: &DockerCli, archive: &Path, seed: &str) -> String {
    cli.run(&["load", "-q", "-i", &archive.to_string_lossy()]);
    id_of(cli, seed)
}

/// `docker image inspect`'s size of an image: the ground truth for bytes.
fn inspect_size(cli: &DockerCli, id: &str) -> u64 {
    cli.run(&["image", "inspect", "--format", "{{.Size}}", id])
        .trim()
        .parse()
        .expect("a size")
}

/// What the daemon lists as dangling: (count, bytes).
fn dangling(cli: &DockerCli) -> (u64, u64) {
    let ids = cli.image_ids(&["dangling=true"]);
    (ids.len() as u64, cli.total_size(&ids))
}

fn is_dangling(cli: &DockerCli, id: &str) -> bool {
    cli.image_ids(&["dangling=true"]).iter().any(|i| i == id)
}

/// A test's turn and the removal of its leftovers, held until it ends.
struct Turn {
    _leftovers: Leftovers,
    _serial: MutexGuard<'static, ()>,
}

/// What every test here starts with: its turn (which removes its
/// leftovers, however it ends), the bed, the engines, its group (`WHAT-PID`,
/// in the names and labels of its images and containers) and a scratch
/// directory.
fn case(what: &str) -> (Turn, Testbed, Vec<Engine>, String, Scratch) {
    let one_at_a_time = serial();
    let bed = Testbed::get();
    let engines = engines(&bed);
    let group = format!("{what}-{}", std::process::id());
    let dir = Scratch::new(&format!("prune-{what}"));
    let turn = Turn {
        _leftovers: Leftovers {
            clis: engines.iter().map(|e| e.cli.clone()).collect(),
            group: group.clone(),
        },
        _serial: one_at_a_time,
    };
    (turn, bed, engines, group, dir)
}

/// Removes a test's containers and images from every engine, however the
/// test ends.
struct Leftovers {
    clis: Vec<DockerCli>,
    group: String,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for cli in &self.clis {
            let names = cli.try_run(&[
                "ps",
                "-a",
                "-q",
                "--filter",
                &format!("name=dwprune-{}", self.group),
            ]);
            for c in String::from_utf8_lossy(&names.stdout).split_whitespace() {
                let _ = cli.try_run(&["rm", "-f", c]);
            }
            let label = format!("label=dwtest.prune={}", self.group);
            let ids = cli.try_run(&["images", "-q", "--no-trunc", "--filter", &label]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = cli.try_run(&["rmi", "-f", id]);
            }
        }
    }
}

/// A container (stopped: created, never started) that uses `id`.
fn use_image(cli: &DockerCli, group: &str, what: &str, id: &str) {
    cli.run(&[
        "create",
        "--network",
        "none",
        "--name",
        &format!("dwprune-{group}-{what}"),
        id,
        "true",
    ]);
}

/// Pushes a made image to the test registry as `reference` (through A,
/// which forgets it again); returns `NAME@DIGEST`.
fn push(bed: &Testbed, archive: &Path, seed: &str, reference: &str) -> String {
    let a = bed.cli_a();
    let id = load(&a, archive, seed);
    a.run(&["push", "-q", reference]);
    let digest = a
        .run(&[
            "image",
            "inspect",
            "--format",
            "{{index .RepoDigests 0}}",
            reference,
        ])
        .trim()
        .to_owned();
    a.run(&["rmi", "-f", &id]);
    digest
}

/// Points `to` at the manifest `from` points at, in one repository of the
/// registry: a tag that moves, as a CI push moves it.
fn retag_in_registry(registry: &str, repo: &str, from: &str, to: &str, dir: &Path) {
    let body = dir.join(format!("manifest-{from}.json"));
    let media_type = run_ok(
        Command::new("curl")
            .args([
                "-sf",
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
                "-o",
            ])
            .arg(&body)
            .args(["-w", "%{content_type}"])
            .arg(format!("http://{registry}/v2/{repo}/manifests/{from}")),
        "GET manifest",
    );
    run_ok(
        Command::new("curl")
            .args(["-sf", "-X", "PUT", "-H"])
            .arg(format!("Content-Type: {}", media_type.trim()))
            .arg("--data-binary")
            .arg(format!("@{}", body.display()))
            .arg(format!("http://{registry}/v2/{repo}/manifests/{to}")),
        "PUT manifest",
    );
}

/// A sample of `daemon`, 0 if absent.
fn value(s: &Scrape, name: &str, daemon: &str, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("daemon", daemon)];
    labels.extend_from_slice(extra);
    s.get(name, &labels).unwrap_or(0.0)
}

/// dockwatch's dangling totals for `daemon`: (count, bytes).
fn dangling_on(s: &Scrape, daemon: &str) -> (u64, u64) {
    (
        value(s, "dockwatch_images_dangling", daemon, &[]) as u64,
        value(s, "dockwatch_images_dangling_size_bytes", daemon, &[]) as u64,
    )
}

fn removed(s: &Scrape, daemon: &str) -> f64 {
    value(s, "dockwatch_prune_images_removed_total", daemon, &[])
}

fn reclaimed(s: &Scrape, daemon: &str) -> f64 {
    value(s, "dockwatch_prune_reclaimed_bytes_total", daemon, &[])
}

fn runs(s: &Scrape, daemon: &str, result: &str) -> f64 {
    value(
        s,
        "dockwatch_prune_runs_total",
        daemon,
        &[("result", result)],
    )
}

fn refused(s: &Scrape, daemon: &str, reason: &str) -> f64 {
    value(
        s,
        "dockwatch_prune_refused_total",
        daemon,
        &[("reason", reason)],
    )
}

/// Waits until every engine finished `more` rounds beyond those counted
/// in `s`, whatever their result.
fn wait_rounds(dw: &Dockwatch, engines: &[Engine], s: &Scrape, more: f64) -> Scrape {
    let total =
        |s: &Scrape, d: &str| runs(s, d, "ok") + runs(s, d, "skipped") + runs(s, d, "failed");
    let base: Vec<f64> = engines.iter().map(|e| total(s, e.name)).collect();
    dw.wait_for("more prune rounds", Duration::from_secs(60), |now| {
        engines
            .iter()
            .zip(&base)
            .all(|(e, b)| total(now, e.name) >= b + more)
    })
}

/// Lines of the log of `daemon`'s prune rounds.
/// Whether one of `daemon`'s "prune round done" lines in `log` says `what`.
fn a_round_says(log: &str, daemon: &str, what: &str) -> bool {
    round_lines(log, daemon).iter().any(|l| l.contains(what))
}

fn round_lines(log: &str, daemon: &str) -> Vec<String> {
    let tag = format!("daemon={daemon} ");
    log.lines()
        .filter(|l| l.contains("prune round done") && l.contains(&tag))
        .map(str::to_owned)
        .collect()
}

/// `dockwatch prune` with `config` and `args`.
fn prune_cli(dir: &Path, config: &str, args: &[&str]) -> std::process::Output {
    let path = dir.join("prune-cli.toml");
    std::fs::write(&path, config).expect("write config");
    Command::new(binary())
        .arg("--config")
        .arg(&path)
        .arg("prune")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run dockwatch prune")
}

/// The `removed ID N bytes` (or `would remove ...`) lines of its output.
fn listed(out: &str, verb: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| l.strip_prefix(verb)?.strip_prefix(' '))
        .map(|rest| {
            let mut words = rest.split_whitespace();
            let id = words.next().expect("an id").to_owned();
            let bytes = words.next().expect("a size").parse().expect("bytes");
            (id, bytes)
        })
        .collect()
}

/// The bytes of its `total:` line.
fn total_bytes(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("total: "))
        .unwrap_or_else(|| panic!("no total line in:\n{out}"));
    let (_, rest) = line.split_once("image(s), ").expect("total line shape");
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("total bytes")
}

// ------------------------------------------------------------------ cases

/// What each engine holds for the guard case.
struct Held {
    old: Vec<(String, u64)>,
    young: String,
    used: String,
    tagged: String,
    pinned: String,
}

/// Old dangling images go, with their bytes as `docker image inspect` said;
/// a younger one, one a stopped container uses, a tagged one and one a
/// configured pre-pull names (pinned by digest, which dockerd 20.10 lists
/// as dangling) stay. Pruning is turned on by a reload, and the dangling
/// count and bytes on /metrics drop by exactly what was removed.
#[test]
#[allow(clippy::too_many_lines)] // one story, told in order
fn old_unused_dangling_images_go_and_everything_else_stays() {
    let (_turn, bed, engines, group, dir) = case("guards");
    let reg = bed.var("REGISTRY");
    let pinned_ref = push(
        &bed,
        &craft(
            &dir.0,
            &group,
            "pinned",
            OLD_2020,
            9_000,
            Some(&format!("{reg}/dwtest/prune-pinned-{group}:1")),
        ),
        "pinned",
        &format!("{reg}/dwtest/prune-pinned-{group}:1"),
    );
    let old_specs = [
        ("old-2019", OLD_2019, 30_000),
        ("old-2020", OLD_2020, 20_000),
        ("old-48h", &ago(48) as &str, 15_000),
    ];
    let archives: Vec<(String, PathBuf)> = old_specs
        .iter()
        .map(|(seed, created, size)| {
            (
                (*seed).to_owned(),
                craft(&dir.0, &group, seed, created, *size, None),
            )
        })
        .collect();
    let young = craft(&dir.0, &group, "young", &ago(1), 12_000, None);
    let used = craft(&dir.0, &group, "used", OLD_2020, 11_000, None);
    let tag = format!("dwtest/prune-tagged-{group}:1");
    let tagged = craft(&dir.0, &group, "tagged", OLD_2020, 10_000, Some(&tag));

    let mut held = BTreeMap::new();
    for e in &engines {
        let old = archives
            .iter()
            .map(|(seed, a)| {
                let id = load(&e.cli, a, seed);
                let size = e.size(&id);
                (id, size)
            })
            .collect();
        let used_id = load(&e.cli, &used, "used");
        use_image(&e.cli, &group, "used", &used_id);
        e.cli.run(&["pull", "-q", &pinned_ref]);
        held.insert(
            e.name,
            Held {
                old,
                young: load(&e.cli, &young, "young"),
                used: used_id,
                tagged: load(&e.cli, &tagged, "tagged"),
                pinned: id_of(&e.cli, "pinned"),
            },
        );
    }

    // First without pruning: the pre-pull of the pinned image has run and
    // the dangling totals are what the daemons say.
    let watch: String = engines.iter().map(Engine::toml).collect();
    let prepull = format!(
        "[prepull]\ninterval = \"1h\"\njitter = \"0s\"\n[[prepull.images]]\nimage = \"{pinned_ref}\"\n"
    );
    let body = format!("{POLL}{watch}{prepull}");
    let dw = Dockwatch::start(&body);
    dw.wait_for(
        "the pre-pull on every engine",
        Duration::from_secs(90),
        |s| {
            engines.iter().all(|e| {
                value(
                    s,
                    "dockwatch_image_pulls_total",
                    e.name,
                    &[("result", "up_to_date")],
                ) + value(
                    s,
                    "dockwatch_image_pulls_total",
                    e.name,
                    &[("result", "updated")],
                ) >= 1.0
            })
        },
    );
    let mut before = BTreeMap::new();
    for e in &engines {
        let truth = e.dangling();
        dw.wait_for(
            "dangling totals as the CLI says",
            Duration::from_secs(30),
            |s| dangling_on(s, e.name) == truth,
        );
        before.insert(e.name, truth);
    }
    assert!(
        dw.scrape()
            .text
            .lines()
            .all(|l| !l.starts_with("dockwatch_prune_")),
        "pruning is off: no prune series"
    );

    // Turn pruning on with a reload.
    std::fs::write(
        dw.dir.join("config.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\n{body}{}",
            dw.port,
            prune_toml(&group, "")
        ),
    )
    .expect("write config");
    dw.signal("HUP");
    let s = dw.wait_for("3 removals on every engine", Duration::from_secs(90), |s| {
        engines.iter().all(|e| removed(s, e.name) >= 3.0)
    });
    // Two more rounds: nothing else goes.
    let s = wait_rounds(&dw, &engines, &s, 2.0);
    let log = dw.log();
    for e in &engines {
        let h = &held[e.name];
        let want_bytes: u64 = h.old.iter().map(|(_, b)| b).sum();
        assert_eq!(removed(&s, e.name), 3.0, "{}: removed", e.name);
        assert_eq!(
            reclaimed(&s, e.name),
            want_bytes as f64,
            "{}: bytes",
            e.name
        );
        assert_eq!(runs(&s, e.name, "failed"), 0.0, "{}:\n{log}", e.name);
        for reason in ["in_use", "not_found", "conflict", "other"] {
            assert_eq!(refused(&s, e.name, reason), 0.0, "{}: {reason}", e.name);
        }
        for (id, _) in &h.old {
            assert!(!e.cli.has_image(id), "{}: old {id} is still there", e.name);
        }
        for (what, id) in [
            ("young", &h.young),
            ("used", &h.used),
            ("tagged", &h.tagged),
            ("pinned", &h.pinned),
        ] {
            assert!(
                e.cli.has_image(id),
                "{}: the {what} image {id} was removed",
                e.name
            );
        }
        // The pinned pre-pull was a candidate wherever it is dangling, and
        // kept for its pre-pull.
        let pinned_dangles = is_dangling(&e.cli, &h.pinned);
        if pinned_dangles {
            assert!(
                a_round_says(&log, e.name, "named by a configured pre-pull"),
                "{}: the pinned pre-pull was never kept for its pre-pull:\n{log}",
                e.name
            );
        }
        // The daemon's dangling totals dropped by exactly what went, and
        // /metrics says so.
        let (count, bytes) = before[e.name];
        let after = (count - 3, bytes - want_bytes);
        assert_eq!(e.dangling(), after, "{}: the CLI's dangling totals", e.name);
        dw.wait_for(
            "the dangling totals to drop",
            Duration::from_secs(10),
            |s| dangling_on(s, e.name) == after,
        );
        eprintln!(
            "PRUNE: guards engine={} removed=3 bytes={want_bytes} (inspect: {:?}) dangling {count}->{} bytes {bytes}->{}; kept young, used by a stopped container, tagged, pinned pre-pull (dangling here: {pinned_dangles})",
            e.name,
            h.old.iter().map(|(_, b)| b).collect::<Vec<_>>(),
            after.0,
            after.1
        );
    }
    // Pruning turned off again by a reload: its series go.
    std::fs::write(
        dw.dir.join("config.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{}\"\n{body}", dw.port),
    )
    .expect("write config");
    dw.signal("HUP");
    dw.wait_for("the prune series to go", Duration::from_secs(30), |s| {
        s.text.lines().all(|l| !l.starts_with("dockwatch_prune_"))
    });
}

/// `[prune.when]`: while `/system/df` says too little could be freed, rounds
/// are skipped and nothing goes; a reload that lowers the bar lets the
/// next round prune.
#[test]
fn rounds_wait_for_enough_reclaimable_bytes() {
    let (_turn, _bed, engines, group, dir) = case("when");
    let archive = craft(&dir.0, &group, "w-2020", OLD_2020, 16_000, None);
    let ids: Vec<String> = engines
        .iter()
        .map(|e| load(&e.cli, &archive, "w-2020"))
        .collect();
    let watch: String = engines.iter().map(Engine::toml).collect();
    let poll = POLL.replace("disk_interval = \"0\"", "disk_interval = \"3s\"");
    let config = |above: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{{port}}\"\n{poll}{watch}{}",
            prune_toml(
                &group,
                &format!("when = {{ reclaimable_above = \"{above}\" }}\n")
            )
        )
    };
    let dw =
        Dockwatch::start(&config("1PiB").replace("[server]\nlisten = \"127.0.0.1:{port}\"\n", ""));
    let s = dw.wait_for(
        "skipped rounds after a /system/df",
        Duration::from_secs(60),
        |s| {
            engines.iter().all(|e| {
                runs(s, e.name, "skipped") >= 2.0
                    && value(s, "dockwatch_disk_usage_success", e.name, &[]) == 1.0
            })
        },
    );
    let log = dw.log();
    for (e, id) in engines.iter().zip(&ids) {
        assert_eq!(runs(&s, e.name, "ok"), 0.0, "{}", e.name);
        assert!(e.cli.has_image(id), "{}", e.name);
        assert!(
            log.lines().any(|l| l.contains("prune round skipped")
                && l.contains(&format!("daemon={} ", e.name))
                && l.contains("not above prune.when.reclaimable_above")),
            "{}:\n{log}",
            e.name
        );
    }
    std::fs::write(
        dw.dir.join("config.toml"),
        config("1KiB").replace("{port}", &dw.port.to_string()),
    )
    .expect("write config");
    dw.signal("HUP");
    let s = dw.wait_for("the image pruned", Duration::from_secs(60), |s| {
        engines.iter().all(|e| removed(s, e.name) >= 1.0)
    });
    for (e, id) in engines.iter().zip(&ids) {
        assert!(!e.cli.has_image(id), "{}", e.name);
        eprintln!(
            "PRUNE: when engine={}: {} rounds skipped under reclaimable_above = 1PiB, then removed 1 image ({} bytes) under 1KiB",
            e.name,
            runs(&s, e.name, "skipped"),
            reclaimed(&s, e.name)
        );
    }
}

/// A pre-pull that moves a tag leaves the old image dangling, however old
/// its `Created`: the agent keeps it for `older_than` from the pull. The
/// CLI, which has no memory of pulls, then removes it: proof that the
/// memory kept it.
#[test]
#[allow(clippy::too_many_lines)] // one story, told in order
fn an_image_a_pre_pull_just_replaced_stays() {
    let (_turn, bed, engines, group, dir) = case("moving");
    let reg = bed.var("REGISTRY");
    let repo = format!("dwtest/prune-moving-{group}");
    for seed in ["x", "y"] {
        let reference = format!("{reg}/{repo}:{seed}");
        push(
            &bed,
            &craft(&dir.0, &group, seed, OLD_2020, 14_000, Some(&reference)),
            seed,
            &reference,
        );
    }
    retag_in_registry(reg, &repo, "x", "cur", &dir.0);
    let watch: String = engines.iter().map(Engine::toml).collect();
    let config = format!(
        "{POLL}{watch}[prepull]\ninterval = \"4s\"\njitter = \"0s\"\n[[prepull.images]]\nimage = \"{reg}/{repo}:cur\"\n{}",
        prune_toml(&group, "")
    );
    let dw = Dockwatch::start(&config);
    let updated = |s: &Scrape, d: &str| {
        value(
            s,
            "dockwatch_image_pulls_total",
            d,
            &[("result", "updated")],
        )
    };
    dw.wait_for(
        "x pulled as :cur everywhere",
        Duration::from_secs(90),
        |s| engines.iter().all(|e| updated(s, e.name) >= 1.0),
    );
    let x: BTreeMap<&str, String> = engines
        .iter()
        .map(|e| (e.name, id_of(&e.cli, "x")))
        .collect();
    // The tag moves to y; the next pre-pull leaves x dangling.
    retag_in_registry(reg, &repo, "y", "cur", &dir.0);
    let s = dw.wait_for(
        "y pulled as :cur everywhere",
        Duration::from_secs(90),
        |s| engines.iter().all(|e| updated(s, e.name) >= 2.0),
    );
    let s = wait_rounds(&dw, &engines, &s, 2.0);
    let log = dw.log();
    let mut dangles = BTreeMap::new();
    for e in &engines {
        let id = &x[e.name];
        if e.listed_sizes && !e.cli.has_image(id) {
            // The containerd store keeps no image whose name moved away:
            // the pull left nothing dangling, and the pruner removed none.
            assert_eq!(removed(&s, e.name), 0.0, "{}", e.name);
            dangles.insert(e.name, false);
            continue;
        }
        assert!(
            e.cli.has_image(id),
            "{}: x {id} was pruned right after the pull moved the tag:\n{log}",
            e.name
        );
        assert_eq!(removed(&s, e.name), 0.0, "{}", e.name);
        let d = is_dangling(&e.cli, id);
        if d {
            assert!(
                a_round_says(&log, e.name, "left by a recent pre-pull"),
                "{}: x was never kept for the pull that left it:\n{log}",
                e.name
            );
        }
        dangles.insert(e.name, d);
    }
    assert!(
        dangles.values().any(|d| *d),
        "no engine left x dangling after the tag moved: this case proves nothing ({dangles:?})"
    );
    drop(dw);

    // Without the agent's memory of the pull, x is just an old dangling
    // image: the CLI removes it where it dangles.
    let out = prune_cli(&dir.0, &config, &[]);
    let text = output_text(&out);
    assert_success(&out, "dockwatch prune");
    for e in &engines {
        let id = &x[e.name];
        let gone = listed(&text, "removed").iter().any(|(i, _)| i == id);
        assert_eq!(
            gone, dangles[e.name],
            "{}: x removed by the CLI?\n{text}",
            e.name
        );
        if !e.listed_sizes || dangles[e.name] {
            assert_eq!(e.cli.has_image(id), !dangles[e.name], "{}", e.name);
        }
        eprintln!(
            "PRUNE: moving-tag engine={} x dangling after the pull: {} ; kept by the agent for the pull, removed by the memoryless CLI: {gone}",
            e.name, dangles[e.name]
        );
    }
}

/// The agent in dry-run mode counts what would go and removes nothing; the
/// CLI's dry run lists exactly what its real run then removes (the oldest
/// `max_per_round`, with the same sizes and total), and the next run the
/// rest.
#[test]
#[allow(clippy::too_many_lines)] // one story, told in order
fn a_dry_run_reports_exactly_what_a_real_run_removes() {
    let (_turn, _bed, engines, group, dir) = case("dry");
    let specs = [
        ("d-2019", OLD_2019, 30_000),
        ("d-2020", OLD_2020, 20_000),
        ("d-30h", &ago(30) as &str, 15_000),
        ("d-young", &ago(1), 12_000),
    ];
    let archives: Vec<(&str, PathBuf)> = specs
        .iter()
        .map(|(seed, created, size)| (*seed, craft(&dir.0, &group, seed, created, *size, None)))
        .collect();
    let used = craft(&dir.0, &group, "d-used", OLD_2019, 11_000, None);
    let mut ids: BTreeMap<&str, BTreeMap<&str, (String, u64)>> = BTreeMap::new();
    for e in &engines {
        let mut mine = BTreeMap::new();
        for (seed, a) in &archives {
            let id = load(&e.cli, a, seed);
            let size = e.size(&id);
            mine.insert(*seed, (id, size));
        }
        let used_id = load(&e.cli, &used, "d-used");
        use_image(&e.cli, &group, "used", &used_id);
        ids.insert(e.name, mine);
    }
    let all_there = |e: &Engine| ids[e.name].values().all(|(id, _)| e.cli.has_image(id));
    let watch: String = engines.iter().map(Engine::toml).collect();

    // The agent, dry: what would go is counted, nothing goes.
    let dw = Dockwatch::start(&format!(
        "{POLL}{watch}{}",
        prune_toml(&group, "dry_run = true\nmax_per_round = 2\n")
    ));
    let s = wait_rounds(&dw, &engines, &dw.scrape(), 2.0);
    for e in &engines {
        let old: u64 = ["d-2019", "d-2020", "d-30h"]
            .iter()
            .map(|k| ids[e.name][k].1)
            .sum();
        assert_eq!(
            value(&s, "dockwatch_prune_eligible_images", e.name, &[]),
            3.0,
            "{}",
            e.name
        );
        assert_eq!(
            value(&s, "dockwatch_prune_eligible_bytes", e.name, &[]),
            old as f64,
            "{}",
            e.name
        );
        assert_eq!(removed(&s, e.name), 0.0, "{}", e.name);
        assert_eq!(reclaimed(&s, e.name), 0.0, "{}", e.name);
        assert!(runs(&s, e.name, "ok") >= 2.0, "{}", e.name);
        assert!(
            all_there(e),
            "{}: the agent's dry run removed something",
            e.name
        );
        assert!(dw.log().contains("dry run: would prune a dangling image"));
    }
    drop(dw);

    // The CLI: a dry run, then the real one, with max_per_round = 2.
    let config = format!(
        "{POLL}{watch}{}",
        prune_toml(&group, "max_per_round = 2\n").replace("enabled = true", "enabled = false")
    );
    for e in &engines {
        let dry = prune_cli(&dir.0, &config, &["--daemon", e.name, "--dry-run"]);
        assert_success(&dry, "dockwatch prune --dry-run");
        let dry_text = output_text(&dry);
        let would = listed(&dry_text, "would remove");
        assert!(
            all_there(e),
            "{}: the CLI's dry run removed something:\n{dry_text}",
            e.name
        );
        let oldest: Vec<(String, u64)> = ["d-2019", "d-2020"]
            .iter()
            .map(|k| ids[e.name][k].clone())
            .collect();
        assert_eq!(
            would, oldest,
            "{}: the dry run lists the oldest two:\n{dry_text}",
            e.name
        );

        let real = prune_cli(&dir.0, &config, &["--daemon", e.name]);
        assert_success(&real, "dockwatch prune");
        let real_text = output_text(&real);
        assert_eq!(
            listed(&real_text, "removed"),
            would,
            "{}: the real run:\n{real_text}",
            e.name
        );
        assert_eq!(
            total_bytes(&real_text),
            total_bytes(&dry_text),
            "{}",
            e.name
        );
        for (id, _) in &would {
            assert!(!e.cli.has_image(id), "{}: {id} still there", e.name);
        }
        for k in ["d-30h", "d-young"] {
            assert!(
                e.cli.has_image(&ids[e.name][k].0),
                "{}: {k} went too soon",
                e.name
            );
        }
        // The next run takes the last old one; then there is nothing left.
        let next = prune_cli(&dir.0, &config, &["--daemon", e.name]);
        assert_success(&next, "dockwatch prune");
        assert_eq!(
            listed(&output_text(&next), "removed"),
            [ids[e.name]["d-30h"].clone()]
        );
        let last = prune_cli(&dir.0, &config, &["--daemon", e.name]);
        assert_success(&last, "dockwatch prune");
        assert!(listed(&output_text(&last), "removed").is_empty());
        assert!(e.cli.has_image(&ids[e.name]["d-young"].0));
        eprintln!(
            "PRUNE: dry-run engine={} dry run listed {:?}, total {} bytes; the real run removed the same; the next run {:?}",
            e.name,
            would,
            total_bytes(&dry_text),
            ids[e.name]["d-30h"]
        );
    }
    // A daemon that is not there: the round fails, exit 1.
    let nowhere = format!(
        "{POLL}{}{}",
        daemon_toml("nowhere", &format!("unix://{}/none.sock", dir.0.display())),
        prune_toml(&group, "")
    );
    let out = prune_cli(&dir.0, &nowhere, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("prune round skipped: the daemon cannot be reached"),
        "{}",
        output_text(&out)
    );
    let out = prune_cli(&dir.0, &nowhere, &["--daemon", "other"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

/// A removal the daemon refuses is counted by its reason and not tried
/// again in the round: with a removal held at the gate, the test makes a
/// container of that image (in use) and removes the next image itself
/// (not found), on the real daemon.
#[test]
fn refusals_are_counted_not_retried() {
    let (_turn, _bed, engines, group, dir) = case("refused");
    let first = craft(&dir.0, &group, "r-2019", OLD_2019, 13_000, None);
    let second = craft(&dir.0, &group, "r-2020", OLD_2020, 12_000, None);
    let mut gates = Vec::new();
    let mut watch = String::new();
    let mut ids = BTreeMap::new();
    for e in &engines {
        ids.insert(
            e.name,
            (
                load(&e.cli, &first, "r-2019"),
                load(&e.cli, &second, "r-2020"),
            ),
        );
        let gate = Gate::start(&dir.0.join(format!("{}.sock", e.name)), &e.socket, 0);
        watch.push_str(&daemon_toml(e.name, &gate.host()));
        gates.push(gate);
    }
    let config = format!(
        "{POLL}{watch}{}",
        prune_toml(&group, "").replace("interval = \"2s\"", "interval = \"1h\"")
    );
    let dw = Dockwatch::start(&config);
    for (e, gate) in engines.iter().zip(&gates) {
        let (r1, r2) = &ids[e.name];
        let held = gate.wait_held(Duration::from_secs(60));
        assert!(
            held.contains(r1.as_str()),
            "{}: the oldest goes first: {held}",
            e.name
        );
        use_image(&e.cli, &group, "r1", r1);
        e.cli.run(&["rmi", r2]);
        gate.release();
    }
    let s = dw.wait_for("one round on every engine", Duration::from_secs(60), |s| {
        engines.iter().all(|e| runs(s, e.name, "ok") >= 1.0)
    });
    for (e, gate) in engines.iter().zip(&gates) {
        assert_eq!(
            refused(&s, e.name, "in_use"),
            1.0,
            "{}:\n{}",
            e.name,
            dw.log()
        );
        assert_eq!(refused(&s, e.name, "not_found"), 1.0, "{}", e.name);
        assert_eq!(removed(&s, e.name), 0.0, "{}", e.name);
        assert_eq!(runs(&s, e.name, "failed"), 0.0, "{}", e.name);
        // Each image was asked for once: no retry.
        assert_eq!(gate.deletes().len(), 2, "{}: {:?}", e.name, gate.deletes());
        assert!(
            e.cli.has_image(&ids[e.name].0),
            "{}: the image in use stays",
            e.name
        );
        eprintln!(
            "PRUNE: refusals engine={} in_use=1 not_found=1 removed=0, 2 DELETE requests in the round",
            e.name
        );
    }
}

/// An image two repositories reference by digest is dangling on dockerd
/// 20.10, and the daemon refuses to delete it by id without force: a
/// `conflict`, which the CLI prints and which does not fail it (exit 0).
#[test]
fn a_conflict_is_a_refusal_and_the_cli_exits_0() {
    let (_turn, bed, engines, group, dir) = case("conflict");
    let reg = bed.var("REGISTRY");
    let archive = craft(&dir.0, &group, "twice", OLD_2020, 8_000, None);
    let a = bed.cli_a();
    let id = load(&a, &archive, "twice");
    let mut refs = Vec::new();
    for repo in ["one", "two"] {
        let reference = format!("{reg}/dwtest/prune-{repo}-{group}:1");
        a.run(&["tag", &id, &reference]);
        a.run(&["push", "-q", &reference]);
        let name = reference.trim_end_matches(":1");
        refs.push(
            a.run(&[
                "image",
                "inspect",
                "--format",
                "{{range .RepoDigests}}{{println .}}{{end}}",
                &reference,
            ])
            .lines()
            .find(|d| d.starts_with(&format!("{name}@")))
            .expect("a digest of the repository")
            .to_owned(),
        );
    }
    a.run(&["rmi", "-f", &id]);
    let watch: String = engines.iter().map(Engine::toml).collect();
    let config = format!("{POLL}{watch}{}", prune_toml(&group, ""));
    for e in &engines {
        for r in &refs {
            e.cli.run(&["pull", "-q", r]);
        }
        let id = id_of(&e.cli, "twice");
        let dangles = is_dangling(&e.cli, &id);
        let out = prune_cli(&dir.0, &config, &["--daemon", e.name]);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(0), "{}:\n{text}", e.name);
        assert!(e.cli.has_image(&id), "{}: removed:\n{text}", e.name);
        let said = text.contains(&format!("refused {id} (conflict)"));
        assert_eq!(
            said, dangles,
            "{}: a refusal exactly where it is a candidate:\n{text}",
            e.name
        );
        eprintln!(
            "PRUNE: conflict engine={} dangling={dangles} refused as conflict={said}, exit 0",
            e.name
        );
    }
}

/// A dockerd of the test's own frozen (SIGSTOP) while its removal is under
/// way: that round fails at the call timeout and stops (the third image is
/// not asked for), the other engines go on pruning and /metrics answers;
/// after a thaw the next round finishes the job.
#[test]
#[allow(clippy::too_many_lines)] // one story, told in order
fn a_daemon_frozen_mid_round_fails_that_round_only() {
    let (_turn, bed, engines, group, dir) = case("frozen");
    std::fs::create_dir_all(dir.0.join("d")).expect("daemon dir");
    let own = OwnDaemon::start(&dir.0.join("d"));
    let cli = bed.cli_at(&own.host());
    let mut own_ids = Vec::new();
    for (seed, created) in [
        ("f-2018", "2018-01-01T00:00:00Z"),
        ("f-2019", OLD_2019),
        ("f-2020", OLD_2020),
    ] {
        own_ids.push(load(
            &cli,
            &craft(&dir.0, &group, seed, created, 10_000, None),
            seed,
        ));
    }
    let gate = Gate::start(&dir.0.join("gate.sock"), &own.socket(), 1);
    let watch: String = engines.iter().map(Engine::toml).collect();
    let config = format!(
        "{POLL}{}{watch}{}",
        daemon_toml("own", &gate.host()),
        prune_toml(&group, "")
    );
    let dw = Dockwatch::start(&config);
    let held = gate.wait_held(Duration::from_secs(60));
    assert!(held.contains(own_ids[1].as_str()), "oldest first: {held}");
    let pid = own.child.as_ref().expect("own dockerd runs").id();
    kill(pid, "STOP");
    let thaw = Thaw(pid);
    gate.release();
    // While it is frozen, the other engines prune an old image each.
    let late = craft(&dir.0, &group, "late", OLD_2020, 7_000, None);
    for e in &engines {
        // Not looked up after: the pruner may take it at once.
        e.cli.run(&["load", "-q", "-i", &late.to_string_lossy()]);
    }
    let s = dw.wait_for(
        "the frozen round to fail, and the others to prune",
        Duration::from_secs(60),
        |s| runs(s, "own", "failed") >= 1.0 && engines.iter().all(|e| removed(s, e.name) >= 1.0),
    );
    assert_eq!(runs(&s, "own", "failed"), 1.0);
    assert_eq!(removed(&s, "own"), 1.0);
    for e in &engines {
        assert_eq!(
            value(&s, "dockwatch_daemon_up", e.name, &[]),
            1.0,
            "{}",
            e.name
        );
        assert_eq!(runs(&s, e.name, "failed"), 0.0, "{}", e.name);
        assert!(
            !e.cli.has_image(&id_of_or_none(&e.cli, "late")),
            "{}",
            e.name
        );
    }
    // Rounds while it stays frozen are skipped (down), not failed, and ask
    // for nothing more.
    let s = dw.wait_for("a skipped round", Duration::from_secs(60), |s| {
        runs(s, "own", "skipped") >= 1.0
    });
    assert_eq!(runs(&s, "own", "failed"), 1.0);
    assert_eq!(
        gate.deletes().len(),
        2,
        "the round stopped at the frozen removal: {:?}",
        gate.deletes()
    );
    let log = dw.log();
    assert!(
        log.lines().any(|l| l.contains("prune round failed")
            && l.contains("daemon=own")
            && l.contains("no answer within")),
        "{log}"
    );
    drop(thaw);
    // Thawed: the next round finishes. The removal that timed out was sent,
    // so dockerd may carry it out after the thaw: the image is gone either
    // way, counted or not.
    let s = dw.wait_for(
        "the rest pruned after the thaw",
        Duration::from_secs(90),
        |s| removed(s, "own") >= 2.0 && own_ids.iter().all(|id| !cli.has_image(id)),
    );
    let after = removed(&s, "own");
    assert!((2.0..=3.0).contains(&after), "removed {after}");
    eprintln!(
        "PRUNE: frozen own dockerd: round failed after 1 removal (call timeout 2.5 s), 2 DELETEs sent, later rounds skipped while frozen; other engines removed their image meanwhile; after the thaw all 3 gone, {after} counted"
    );
}

/// `id_of`, or an id no image has when the image is gone.
fn id_of_or_none(cli: &DockerCli, seed: &str) -> String {
    let ids = cli.image_ids(&[&format!("label=dwtest.prune.seed={seed}")]);
    ids.into_iter()
        .next()
        .unwrap_or_else(|| "sha256:gone".to_owned())
}

/// SIGTERM while a removal is held: it finishes, nothing else is asked
/// for, and dockwatch exits 0.
#[test]
fn shutdown_mid_round_stops_after_the_current_removal() {
    let (_turn, _bed, engines, group, dir) = case("shutdown");
    let archives: Vec<(&str, PathBuf)> = [
        ("s-2018", "2018-01-01T00:00:00Z"),
        ("s-2019", OLD_2019),
        ("s-2020", OLD_2020),
    ]
    .iter()
    .map(|(seed, created)| (*seed, craft(&dir.0, &group, seed, created, 9_000, None)))
    .collect();
    for e in &engines {
        let ids: Vec<String> = archives
            .iter()
            .map(|(seed, a)| load(&e.cli, a, seed))
            .collect();
        let gate = Gate::start(&dir.0.join(format!("{}.sock", e.name)), &e.socket, 1);
        let config = format!(
            "{POLL}{}{}",
            daemon_toml(e.name, &gate.host()),
            prune_toml(&group, "")
        );
        let mut dw = Dockwatch::start(&config);
        let held = gate.wait_held(Duration::from_secs(60));
        assert!(held.contains(ids[1].as_str()), "{}: {held}", e.name);
        dw.signal("TERM");
        common::wait_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || dw.log().contains("shutting down"),
            || format!("no shutdown in the log:\n{}", dw.log()),
        );
        gate.release();
        let status = dw
            .wait_exit(Duration::from_secs(20))
            .expect("dockwatch exits");
        assert!(status.success(), "{}: {status}\n{}", e.name, dw.log());
        assert_eq!(gate.deletes().len(), 2, "{}: {:?}", e.name, gate.deletes());
        assert!(
            !e.cli.has_image(&ids[0]) && !e.cli.has_image(&ids[1]),
            "{}",
            e.name
        );
        assert!(
            e.cli.has_image(&ids[2]),
            "{}: removed after shutdown",
            e.name
        );
        eprintln!(
            "PRUNE: shutdown engine={}: the held removal finished, the third image stayed, exit 0",
            e.name
        );
    }
}
