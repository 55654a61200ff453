//! Tiny images of distinct content under one tag, for tests that move a tag
//! (a new image under the same name) or run healthchecks (`/bin/sh`).

use std::path::Path;

use super::DockerCli;

impl DockerCli {
    /// Imports a tiny runnable image (busybox, with `/bin/sh` for shell
    /// healthchecks) as `tag`, its content told apart by `variant`, from
    /// files made in `dir`; returns the image ID the daemon gave it.
    pub fn import_variant(&self, dir: &Path, tag: &str, variant: &str) -> String {
        let name = format!("variant-{}-{variant}", tag.replace([':', '/'], "-"));
        let root = dir.join(&name);
        std::fs::create_dir_all(root.join("bin")).expect("rootfs");
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("busybox (Debian package busybox-static; tests/run.sh installs it)");
        if !root.join("bin/sh").exists() {
            std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("/bin/sh");
        }
        std::fs::write(root.join("variant"), format!("{tag} {variant}")).expect("write");
        self.import_root(&root, &dir.join(format!("{name}.tar")), tag);
        self.image_id(tag).expect("the image just imported")
    }

    /// The ID of the image `reference` names now, if any.
    pub fn image_id(&self, reference: &str) -> Option<String> {
        let out = self.try_run(&["image", "inspect", "--format", "{{.Id}}", reference]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The names of the running containers that run another image than
    /// the tag they were created from names now, as `docker inspect` tells
    /// (`Config.Image` against `Image`; created from an ID or a digest, or
    /// from a tag that names no image now: not outdated), sorted.
    pub fn outdated_containers(&self) -> Vec<String> {
        let ids = self.run(&["ps", "-q", "--no-trunc", "--filter", "status=running"]);
        let mut out = Vec::new();
        for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let line = self.run(&[
                "inspect",
                "--format",
                "{{.Name}} {{.Config.Image}} {{.Image}}",
                id,
            ]);
            let mut f = line.split_whitespace();
            let (Some(name), Some(reference), Some(image)) = (f.next(), f.next(), f.next()) else {
                panic!("docker inspect {id}: {line:?}");
            };
            if reference.starts_with("sha256:") || reference.contains('@') {
                continue;
            }
            if self
                .image_id(reference)
                .is_some_and(|current| current != image)
            {
                out.push(name.trim_start_matches('/').to_owned());
            }
        }
        out.sort();
        out
    }

    /// How many running (not paused) containers `docker ps` lists with
    /// this health (`healthy`, `unhealthy`, `starting`, `none`).
    pub fn running_with_health(&self, health: &str) -> u64 {
        self.run(&[
            "ps",
            "-q",
            "--filter",
            "status=running",
            "--filter",
            &format!("health={health}"),
        ])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64
    }

    /// How many containers run (not paused).
    pub fn running(&self) -> u64 {
        self.run(&["ps", "-q", "--filter", "status=running"])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count() as u64
    }

    /// Restarts as the daemon's events since `since` (unix seconds) tell
    /// them: a container's `start` after its `die`.
    pub fn restarts_in_events(&self, since: u64) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let events = self.run(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &(now + 1).to_string(),
            "--filter",
            "type=container",
            "--format",
            "{{.Actor.ID}} {{.Action}}",
        ]);
        let mut died = std::collections::HashSet::new();
        let mut restarts = 0;
        for line in events.lines() {
            let Some((id, action)) = line.split_once(' ') else {
                continue;
            };
            match action.trim() {
                "die" => {
                    died.insert(id.to_owned());
                }
                "start" if died.remove(id) => restarts += 1,
                "destroy" | "remove" => {
                    died.remove(id);
                }
                _ => {}
            }
        }
        restarts
    }
}
