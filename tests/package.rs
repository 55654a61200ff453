//! The Debian package for real: `deploy/debian/build-deb.sh --binary`
//! packages the debug build of this test run with cargo-deb; lintian checks
//! it; its files are checked on the host (the man page through `man -l`, the
//! bash completion through bash, the unit through `systemd-analyze verify`
//! with the package's binary at /usr/bin/dockwatch in a mount namespace of
//! its own); and it is installed with `dpkg -i` into throwaway overlay
//! copies of a clean Debian 12 minbase root (debootstrapped once per machine
//! by `tests/testbed.sh install` into /var/cache/dockwatch-testbed/bookworm),
//! with and without a `docker` group, run there, removed and purged.
//!
//! Needs root (mount, chroot) and the tools `tests/testbed.sh install`
//! installs; no test bed (it reads no `DW_TESTBED`).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use common::{Scratch, binary, output_text};

const HOW_TO_GET: &str = "run `tests/testbed.sh install` as root: it installs lintian, debootstrap, \
     man-db and cargo-deb (cargo install cargo-deb --locked) and debootstraps the Debian 12 root";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every file the package installs (directories aside), as dpkg-deb lists them.
const FILES: &[&str] = &[
    "./etc/dockwatch/config.toml",
    "./usr/bin/dockwatch",
    "./usr/lib/systemd/system/dockwatch.service",
    "./usr/share/bash-completion/completions/dockwatch",
    "./usr/share/doc/dockwatch/README.md",
    "./usr/share/doc/dockwatch/changelog.Debian.gz",
    "./usr/share/doc/dockwatch/copyright",
    "./usr/share/doc/dockwatch/examples/config.toml",
    "./usr/share/fish/vendor_completions.d/dockwatch.fish",
    "./usr/share/lintian/overrides/dockwatch",
    "./usr/share/man/man1/dockwatch.1.gz",
    "./usr/share/zsh/vendor-completions/_dockwatch",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd`; a tool that cannot start fails the test saying how to get it.
fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}\n{HOW_TO_GET}"))
}

/// Runs `cmd`, fails the test unless it exits 0, returns its stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    stdout_if_ok(&out, &format!("{cmd:?}"))
}

/// The stdout of `out`; fails the test, naming `what`, unless it exited 0.
fn stdout_if_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        output_text(out)
    );
    text(&out.stdout)
}

/// The package, built once for every test here, in cargo's test scratch
/// folder (target/tmp/package, replaced each run).
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("package");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create target/tmp/package");
        let t = Instant::now();
        let stdout = run_ok(
            Command::new(repo().join("deploy/debian/build-deb.sh"))
                .args(["--binary", binary(), "--output"])
                .arg(&dir),
        );
        let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
        let name = deb.file_name().map(|n| n.to_string_lossy().into_owned());
        let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
        assert_eq!(
            name.as_deref(),
            Some(format!("dockwatch_{VERSION}-1_{}.deb", arch.trim()).as_str()),
            "build-deb.sh printed {stdout:?}"
        );
        let size = fs::metadata(&deb).map_or(0, |m| m.len());
        eprintln!(
            "PACKAGE: {} is {size} bytes (the debug build, stripped), built in {:.1} s",
            deb.display(),
            t.elapsed().as_secs_f64()
        );
        deb
    })
}

/// The package unpacked with dpkg-deb -x into a scratch folder.
fn unpacked() -> Scratch {
    dpkg_deb("-x", "deb-x")
}

/// `dpkg-deb OPTION package DIR` into a new scratch folder `tag`.
fn dpkg_deb(option: &str, tag: &str) -> Scratch {
    let dir = Scratch::new(tag);
    run_ok(
        Command::new("dpkg-deb")
            .arg(option)
            .arg(package())
            .arg(&dir.0),
    );
    dir
}

fn field(name: &str) -> String {
    run_ok(Command::new("dpkg-deb").arg("-f").arg(package()).arg(name))
        .trim()
        .to_owned()
}

#[test]
fn package_holds_its_files_where_debian_puts_them() {
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(package()));
    let files: BTreeSet<&str> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(
        files,
        FILES.iter().copied().collect(),
        "the package's files:\n{listing}"
    );
    assert_eq!(field("Package"), "dockwatch");
    assert_eq!(field("Version"), format!("{VERSION}-1"));
    // Only what a minbase Debian 12 root already has: it installs offline.
    let depends = field("Depends");
    let names: Vec<&str> = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(names, ["libc6", "passwd"], "Depends: {depends}");

    let x = unpacked();
    let control = dpkg_deb("-e", "deb-e");
    assert_eq!(
        fs::read_to_string(control.0.join("conffiles")).unwrap_or_default(),
        "/etc/dockwatch/config.toml\n",
        "conffiles"
    );
    // The shipped config is the repository's local-daemon default.
    assert_eq!(
        fs::read(x.0.join("etc/dockwatch/config.toml")).ok(),
        fs::read(repo().join("config.toml")).ok(),
        "/etc/dockwatch/config.toml differs from config.toml"
    );
    let mode =
        |p: &str| fs::symlink_metadata(x.0.join(p)).map_or(0, |m| m.permissions().mode() & 0o7777);
    assert_eq!(mode("usr/bin/dockwatch"), 0o755);
    assert_eq!(mode("usr/lib/systemd/system/dockwatch.service"), 0o644);

    check_unit_and_scripts(&x.0, &control.0);
    check_man_page(&x.0);
    check_completions(&x.0);
    verify_unit(&x.0);
}

/// The packaged unit is the repository's but for `ExecStart` (and the header
/// comment that says where it comes from); cargo-deb's snippets went in.
fn check_unit_and_scripts(x: &Path, control: &Path) {
    let packaged = fs::read_to_string(x.join("usr/lib/systemd/system/dockwatch.service"))
        .expect("packaged unit");
    let source =
        fs::read_to_string(repo().join("deploy/systemd/dockwatch.service")).expect("repo unit");
    let settings = |unit: &str| -> Vec<String> {
        unit.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        settings(&packaged),
        settings(&source.replace(
            "ExecStart=/usr/local/bin/dockwatch ",
            "ExecStart=/usr/bin/dockwatch "
        )),
        "the packaged unit differs from deploy/systemd/dockwatch.service beyond ExecStart"
    );
    assert!(
        packaged.contains("\nExecStart=/usr/bin/dockwatch --config /etc/dockwatch/config.toml\n")
    );

    let postinst = fs::read_to_string(control.join("postinst")).unwrap_or_default();
    for needle in [
        "useradd --system",
        "deb-systemd-helper enable dockwatch.service",
        "if [ -d /run/systemd/system ]; then",
        "deb-systemd-invoke $_dh_action dockwatch.service",
    ] {
        assert!(
            postinst.contains(needle),
            "postinst lacks {needle:?}:\n{postinst}"
        );
    }
    assert!(!postinst.contains("#DEBHELPER#"), "postinst kept the token");
}

/// man -l renders the page, with the subcommands described in it.
fn check_man_page(x: &Path) {
    let man = run(Command::new("man")
        .arg("-l")
        .arg(x.join("usr/share/man/man1/dockwatch.1.gz"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8"));
    let page = text(&man.stdout);
    assert!(man.status.success(), "man -l: {}", output_text(&man));
    for needle in [
        "dockwatch - Watches Docker Engine daemons",
        "--config <PATH>",
        "COMMANDS",
        "dockwatch check-config",
        "dockwatch pull <IMAGE>",
        "--dry-run",
    ] {
        assert!(page.contains(needle), "man page lacks {needle:?}:\n{page}");
    }
    assert!(
        !page.contains("generate"),
        "the hidden generate shows in the man page"
    );
    assert!(
        man.stderr.is_empty(),
        "man -l warned: {}",
        text(&man.stderr)
    );
}

/// bash completion: `dockwatch pr<TAB>` offers prune, and only prune; the
/// zsh and fish scripts are there.
fn check_completions(x: &Path) {
    let offered = |words: &str| {
        let script = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _dockwatch dockwatch \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            x.join("usr/share/bash-completion/completions/dockwatch")
                .display()
        );
        run_ok(Command::new("bash").args(["--norc", "--noprofile", "-c", &script]))
    };
    assert_eq!(offered("dockwatch pr"), "prune\n");
    let options = offered("dockwatch prune --d");
    assert_eq!(
        options.lines().collect::<BTreeSet<_>>(),
        BTreeSet::from(["--daemon", "--dry-run"]),
        "bash completion of `dockwatch prune --d`"
    );
    for (path, needle) in [
        (
            "usr/share/zsh/vendor-completions/_dockwatch",
            "#compdef dockwatch",
        ),
        (
            "usr/share/fish/vendor_completions.d/dockwatch.fish",
            "-a \"prune\"",
        ),
    ] {
        let body = fs::read_to_string(x.join(path)).unwrap_or_default();
        assert!(body.contains(needle), "{path} lacks {needle:?}");
    }
}

/// `systemd-analyze verify` of the packaged unit as installed: in a mount
/// namespace of its own, an overlay puts the package's binary at
/// /usr/bin/dockwatch (the host's /usr/bin below it); nothing outside sees it.
fn verify_unit(unpacked: &Path) {
    let unit = unpacked.join("usr/lib/systemd/system/dockwatch.service");
    let bin_dir = unpacked.join("usr/bin");
    let verify = |with_binary: bool| {
        let script = format!(
            "set -e; {} exec systemd-analyze verify '{}'",
            if with_binary {
                format!(
                    "mount -t overlay dockwatch-verify -o lowerdir='{}':/usr/bin /usr/bin;",
                    bin_dir.display()
                )
            } else {
                String::new()
            },
            unit.display()
        );
        run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("SYSTEMD_COLORS", "0")
            .env("SYSTEMD_PAGER", ""))
    };
    let out = verify(true);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify of the packaged unit (with /usr/bin/dockwatch): {}\n{}",
        out.status,
        output_text(&out)
    );
    // The check has teeth: without the binary it fails, naming it.
    let out = verify(false);
    assert!(
        !out.status.success() && text(&out.stderr).contains("/usr/bin/dockwatch"),
        "systemd-analyze verify accepted the unit without /usr/bin/dockwatch: {}",
        output_text(&out)
    );
}

#[test]
fn lintian_finds_no_error_and_no_warning_not_explained() {
    let t = Instant::now();
    let out = run(Command::new("lintian")
        .args([
            "--pedantic",
            "--display-experimental",
            "--fail-on",
            "error,warning",
        ])
        .arg(package()));
    let report = text(&out.stdout);
    eprintln!(
        "LINTIAN: exit {:?} in {:.1} s; output:\n{report}",
        out.status.code(),
        t.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success()
            && !report
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian: {}\n{}",
        out.status,
        output_text(&out)
    );
    // Every override is still needed, each with its one-line reason: without
    // them lintian reports exactly the overridden tags.
    let overrides = fs::read_to_string(repo().join("deploy/debian/dockwatch.lintian-overrides"))
        .expect("overrides file");
    let mut reason = false;
    let mut overridden = BTreeSet::new();
    for line in overrides.lines() {
        if line.starts_with('#') {
            reason = true;
        } else if !line.trim().is_empty() {
            assert!(reason, "override without a comment line above it: {line}");
            reason = false;
            overridden.insert(line.trim().to_owned());
        }
    }
    let bare = run(Command::new("lintian")
        .args(["--pedantic", "--display-experimental", "--no-override"])
        .arg(package()));
    let tags: BTreeSet<String> = text(&bare.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(level, _)| ["E", "W", "I", "P", "X"].contains(level))
        .map(|(_, tag)| tag.trim().to_owned())
        .collect();
    assert_eq!(
        tags, overridden,
        "lintian --no-override should report exactly the overridden tags"
    );
}

// ------------------------------------------------------------------ a Debian 12 root

/// The cached minbase root `tests/testbed.sh install` made.
fn bookworm_root() -> PathBuf {
    let cache = std::env::var_os("TESTBED_BOOKWORM_CACHE").map_or_else(
        || PathBuf::from("/var/cache/dockwatch-testbed/bookworm"),
        PathBuf::from,
    );
    let root = cache.join("root");
    assert!(
        root.join(".complete").is_file(),
        "no Debian 12 root in {}: {HOW_TO_GET}",
        root.display()
    );
    root
}

/// A throwaway copy of the root: an overlay mount whose upper layer is a
/// scratch folder. Unmounted and removed on drop, however the test ends.
struct RootCopy {
    scratch: PathBuf,
    merged: PathBuf,
}

impl RootCopy {
    fn new(tag: &str) -> Self {
        let lower = bookworm_root();
        assert_eq!(
            run_ok(Command::new("id").arg("-u")).trim(),
            "0",
            "installing into a Debian 12 root needs root (mount, chroot)"
        );
        let scratch = common::temp_dir(tag);
        let merged = scratch.join("merged");
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(scratch.join(d)).expect("overlay folders");
        }
        let copy = Self { scratch, merged };
        run_ok(Command::new("mount").args([
            "-t",
            "overlay",
            "dockwatch-package-test",
            "-o",
            &format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                copy.scratch.join("upper").display(),
                copy.scratch.join("work").display()
            ),
            &copy.merged.display().to_string(),
        ]));
        copy
    }

    fn mounted(&self) -> bool {
        let needle = format!(" {} ", self.merged.display());
        fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(&needle))
    }

    /// `chroot ROOT ARGS` with a plain environment.
    fn chroot(&self, userspec: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new("chroot");
        if let Some(u) = userspec {
            cmd.arg(format!("--userspec={u}"));
        }
        run(cmd
            .arg(&self.merged)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive"))
    }

    fn chroot_ok(&self, args: &[&str]) -> String {
        stdout_if_ok(&self.chroot(None, args), &format!("chroot {args:?}"))
    }

    fn path(&self, p: &str) -> PathBuf {
        self.merged.join(p.trim_start_matches('/'))
    }

    /// Every path in the root (symlinks not followed), relative to it.
    fn files(&self) -> BTreeSet<String> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                out.insert(p.strip_prefix(base).unwrap_or(&p).display().to_string());
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, base, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.merged, &self.merged, &mut out);
        out
    }
}

impl Drop for RootCopy {
    fn drop(&mut self) {
        if self.mounted() {
            let _ = Command::new("umount").arg(&self.merged).status();
        }
        if self.mounted() {
            let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
        }
        // Never remove through a mount that is still there.
        if !self.mounted() {
            let _ = fs::remove_dir_all(&self.scratch);
        }
    }
}

/// `dpkg-query`'s status of dockwatch in the root ("" when unknown).
fn status(root: &RootCopy) -> String {
    text(
        &root
            .chroot(None, &["dpkg-query", "-W", "-f=${Status}", "dockwatch"])
            .stdout,
    )
}

/// What a purge may leave, each for its reason; anything else is a failure.
const LEFT_BY_DESIGN: &[(&str, &str)] = &[
    ("etc/passwd-", "useradd's backup of /etc/passwd"),
    ("etc/group-", "useradd's backup of /etc/group"),
    ("etc/shadow-", "useradd's backup of /etc/shadow"),
    ("etc/gshadow-", "useradd's backup of /etc/gshadow"),
    (
        "var/lib/dpkg/statoverride",
        "dpkg's override database (checked empty of dockwatch)",
    ),
    ("var/lib/dpkg/statoverride-old", "dpkg's backup of it"),
];

/// Installs, checks, removes and purges the package in a fresh root copy.
fn install_cycle(docker_group: bool) {
    let t0 = Instant::now();
    let deb = package();
    let root = RootCopy::new(if docker_group {
        "deb-docker"
    } else {
        "deb-nodocker"
    });
    if docker_group {
        root.chroot_ok(&["groupadd", "--system", "docker"]);
    }
    let before = root.files();
    fs::copy(deb, root.path("/tmp/dockwatch.deb")).expect("copy the package into the root");

    let t = Instant::now();
    let install = root.chroot(None, &["dpkg", "-i", "/tmp/dockwatch.deb"]);
    let said = output_text(&install);
    assert!(
        install.status.success(),
        "dpkg -i: {}\n{said}",
        install.status
    );
    let install_s = t.elapsed().as_secs_f64();
    assert_eq!(status(&root), "install ok installed");

    check_installed(&root, docker_group, &said);
    // Installed again (the upgrade path of the scripts, $2 set): nothing
    // to add, so nothing said about the user; the files and user unchanged.
    let again = root.chroot(None, &["dpkg", "-i", "/tmp/dockwatch.deb"]);
    assert!(
        again.status.success(),
        "second dpkg -i: {}",
        output_text(&again)
    );
    assert!(
        !output_text(&again).contains("added the user dockwatch"),
        "second dpkg -i added the user again:\n{}",
        output_text(&again)
    );
    check_installed(&root, docker_group, &said);
    remove_and_purge(&root, &before);
    eprintln!(
        "PACKAGE: Debian 12 root, docker group {}: dpkg -i in {install_s:.1} s, whole cycle in {:.1} s",
        if docker_group { "present" } else { "absent" },
        t0.elapsed().as_secs_f64()
    );
    drop(root);
}

/// The user, its groups, the files, the unit enabled, the config's
/// permissions, and dockwatch running in the root.
fn check_installed(root: &RootCopy, docker_group: bool, said: &str) {
    // The user: a system account, no login, no home.
    let passwd = root.chroot_ok(&["getent", "passwd", "dockwatch"]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields.len(), 7, "getent passwd dockwatch: {passwd}");
    let uid: u32 = fields[2].parse().unwrap_or(u32::MAX);
    assert!(uid < 1000, "dockwatch is not a system user: {passwd}");
    assert_eq!(
        fields[5..],
        ["/nonexistent", "/usr/sbin/nologin"],
        "{passwd}"
    );
    let groups = root.chroot_ok(&["id", "-nG", "dockwatch"]);
    let groups: BTreeSet<&str> = groups.split_whitespace().collect();
    if docker_group {
        assert_eq!(groups, BTreeSet::from(["dockwatch", "docker"]));
        assert!(
            said.contains("dockwatch: added the user dockwatch to the group docker"),
            "dpkg -i did not say it added dockwatch to docker:\n{said}"
        );
    } else {
        assert_eq!(groups, BTreeSet::from(["dockwatch"]));
        let lines: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("no group docker"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "one line about the missing docker group:\n{said}"
        );
    }

    // The files, where they should be (/lib is /usr/lib in Debian 12).
    for f in FILES {
        assert!(root.path(f).is_file(), "{f} is not installed");
    }
    for f in [
        "/lib/systemd/system/dockwatch.service",
        "/usr/share/doc/dockwatch/README.md",
    ] {
        assert!(root.path(f).is_file(), "{f} is not there");
    }
    // Enabled as dh_installsystemd does, and not started: no systemd runs in
    // the chroot (no /run/systemd/system), so the start snippet did nothing.
    let wants = root.path("/etc/systemd/system/multi-user.target.wants/dockwatch.service");
    assert_eq!(
        fs::read_link(&wants).ok(),
        Some(PathBuf::from("/lib/systemd/system/dockwatch.service")),
        "the unit is not enabled"
    );
    assert!(!root.path("/run/systemd/system").exists());
    // The config: root and the group dockwatch only.
    let gid: u32 = root
        .chroot_ok(&["getent", "group", "dockwatch"])
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .unwrap_or(u32::MAX);
    for (p, want) in [
        ("/etc/dockwatch", 0o750),
        ("/etc/dockwatch/config.toml", 0o640),
    ] {
        let m = fs::metadata(root.path(p)).expect(p);
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
            (0, gid, want),
            "{p}: owner, group, mode"
        );
    }
    let other = root.chroot(
        Some("nobody:nogroup"),
        &["cat", "/etc/dockwatch/config.toml"],
    );
    assert!(!other.status.success(), "nobody could read the config");

    // It runs there: --version, and check-config as the service's user.
    assert_eq!(
        root.chroot_ok(&["/usr/bin/dockwatch", "--version"]).trim(),
        format!("dockwatch {VERSION}")
    );
    let check = root.chroot(
        Some("dockwatch:dockwatch"),
        &[
            "/usr/bin/dockwatch",
            "check-config",
            "--config",
            "/etc/dockwatch/config.toml",
        ],
    );
    assert!(
        check.status.success()
            && text(&check.stdout)
                .starts_with("config OK (/etc/dockwatch/config.toml): 1 daemon(s)"),
        "check-config as dockwatch: {}\n{}",
        check.status,
        output_text(&check)
    );
}

/// `dpkg -r`, then `dpkg -P`: nothing left but `LEFT_BY_DESIGN` and the user.
fn remove_and_purge(root: &RootCopy, before: &BTreeSet<String>) {
    // Remove: the conffile stays, the program goes.
    root.chroot_ok(&["dpkg", "-r", "dockwatch"]);
    assert_eq!(status(root), "deinstall ok config-files");
    assert!(
        root.path("/etc/dockwatch/config.toml").is_file(),
        "dpkg -r removed the conffile"
    );
    for f in [
        "/usr/bin/dockwatch",
        "/lib/systemd/system/dockwatch.service",
    ] {
        assert!(!root.path(f).exists(), "{f} is left after dpkg -r");
    }

    // Purge: nothing left but LEFT_BY_DESIGN, and the user (kept, as
    // Debian's packages keep theirs: files it owned must not pass to a later
    // user given the same uid).
    root.chroot_ok(&["dpkg", "-P", "dockwatch"]);
    assert_eq!(
        status(root),
        "",
        "dpkg still knows dockwatch after the purge"
    );
    fs::remove_file(root.path("/tmp/dockwatch.deb")).expect("remove the package copy");
    let after = root.files();
    let allowed: BTreeSet<&str> = LEFT_BY_DESIGN.iter().map(|(p, _)| *p).collect();
    let added: Vec<&String> = after
        .difference(before)
        .filter(|p| !allowed.contains(p.as_str()))
        .collect();
    let gone: Vec<&String> = before.difference(&after).collect();
    assert!(
        added.is_empty() && gone.is_empty(),
        "after the purge, new paths {added:?}, missing paths {gone:?} (allowed: {LEFT_BY_DESIGN:?})"
    );
    let overrides = fs::read_to_string(root.path("/var/lib/dpkg/statoverride")).unwrap_or_default();
    assert!(
        !overrides.contains("dockwatch"),
        "statoverride keeps: {overrides}"
    );
    assert!(
        root.chroot(None, &["getent", "passwd", "dockwatch"])
            .status
            .success()
    );
}

#[test]
fn installs_on_debian_12_into_the_docker_group_and_purges_clean() {
    install_cycle(true);
}

#[test]
fn installs_on_debian_12_without_a_docker_group_says_so_and_purges_clean() {
    install_cycle(false);
}
