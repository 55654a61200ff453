//! From a process's `/proc/<pid>/cgroup` lines to the directories holding
//! its counters, through the cgroup mounts of the mount table.
//!
//! cgroup v1 has one hierarchy per controller or group of controllers
//! (`cpu` and `cpuacct` apart, or together as `cpu,cpuacct`); v2 has one
//! (`0::/path`). On a hybrid host (v1 controllers plus an empty v2 tree for
//! systemd), the v1 controllers are where the counters are. Docker's
//! cgroupfs driver puts a container at `/docker/<id>`, the systemd driver at
//! `/system.slice/docker-<id>.scope`; the path is joined to the mount point
//! of its hierarchy, less the mount's own root.

use std::path::{Path, PathBuf};

use super::Error;
use super::parse::{CgroupMount, Membership};

/// The cgroup mounts this process sees.
#[derive(Debug, Clone, Default)]
pub struct Mounts(Vec<CgroupMount>);

/// Where one container's counters are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The container's init process, for `/proc/<pid>/net/dev`.
    pub pid: u32,
    pub dirs: Dirs,
}

/// A container's cgroup directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dirs {
    V1(V1Dirs),
    V2(PathBuf),
}

/// cgroup v1: one directory per controller (some may be the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Dirs {
    pub cpu: PathBuf,
    pub cpuacct: PathBuf,
    pub memory: PathBuf,
    pub blkio: PathBuf,
    pub pids: PathBuf,
}

impl Location {
    /// A container whose v2 cgroup is `dir` (tests, fixtures).
    pub fn v2(pid: u32, dir: impl Into<PathBuf>) -> Self {
        Self {
            pid,
            dirs: Dirs::V2(dir.into()),
        }
    }

    /// A container whose v1 controllers are all under `root`/<controller>/`path`.
    pub fn v1(pid: u32, root: &Path, path: &str) -> Self {
        let dir = |c: &str| root.join(c).join(path.trim_start_matches('/'));
        Self {
            pid,
            dirs: Dirs::V1(V1Dirs {
                cpu: dir("cpu"),
                cpuacct: dir("cpuacct"),
                memory: dir("memory"),
                blkio: dir("blkio"),
                pids: dir("pids"),
            }),
        }
    }
}

impl Mounts {
    pub fn new(mounts: Vec<CgroupMount>) -> Self {
        Self(mounts)
    }

    /// True when some v1 hierarchy with the memory controller is mounted.
    pub fn is_v1(&self) -> bool {
        self.v1_mount("memory").is_some()
    }

    /// True when the v2 hierarchy is mounted.
    pub fn has_v2(&self) -> bool {
        self.0.iter().any(|m| m.controllers.is_none())
    }

    fn v1_mount(&self, controller: &str) -> Option<&CgroupMount> {
        self.0.iter().find(|m| {
            m.controllers
                .as_ref()
                .is_some_and(|c| c.iter().any(|x| x == controller))
        })
    }

    /// Resolves the lines of `file` (a `/proc/<pid>/cgroup`) to the
    /// directories of the counters; the path must name `id` unless it is
    /// empty.
    pub fn locate(&self, groups: &[Membership], file: &Path, id: &str) -> Result<Location, Error> {
        let unsupported = |what: String| Error::Unsupported {
            path: file.into(),
            what,
        };
        let check = |path: &str| {
            if id.is_empty() || path.contains(id) {
                Ok(())
            } else {
                Err(Error::NotTheContainer {
                    file: file.into(),
                    id: id.into(),
                    path_in_hierarchy: path.into(),
                })
            }
        };
        let v1_line = |c: &str| {
            groups
                .iter()
                .find(|g| g.hierarchy != 0 && g.controllers.iter().any(|x| x == c))
        };
        if self.is_v1() && v1_line("memory").is_some() {
            let dir = |controller: &str| -> Result<PathBuf, Error> {
                let line = v1_line(controller).ok_or_else(|| {
                    unsupported(format!("the process is in no {controller} hierarchy"))
                })?;
                check(&line.path)?;
                let mount = self.v1_mount(controller).ok_or_else(|| {
                    unsupported(format!("no cgroup v1 {controller} hierarchy is mounted"))
                })?;
                join(mount, &line.path).ok_or_else(|| {
                    unsupported(format!(
                        "{} is outside the {controller} mount at {} (a private cgroup namespace?)",
                        line.path,
                        mount.mount_point.display()
                    ))
                })
            };
            return Ok(Location {
                pid: 0,
                dirs: Dirs::V1(V1Dirs {
                    cpu: dir("cpu")?,
                    cpuacct: dir("cpuacct")?,
                    memory: dir("memory")?,
                    blkio: dir("blkio")?,
                    pids: dir("pids")?,
                }),
            });
        }
        let line = groups
            .iter()
            .find(|g| g.hierarchy == 0)
            .ok_or_else(|| unsupported("no cgroup v2 line (0::) and no v1 memory line".into()))?;
        check(&line.path)?;
        let mount = self
            .0
            .iter()
            .find(|m| m.controllers.is_none())
            .ok_or_else(|| unsupported("no cgroup2 file system is mounted".into()))?;
        let dir = join(mount, &line.path).ok_or_else(|| {
            unsupported(format!(
                "{} is outside the cgroup2 mount at {} (a private cgroup namespace?)",
                line.path,
                mount.mount_point.display()
            ))
        })?;
        Ok(Location::v2(0, dir))
    }
}

/// `path` (in the hierarchy) under `mount`, or `None` when the mount does
/// not hold it (a path outside the mount's root, or one climbing with
/// `..`, as a private cgroup namespace shows an outside cgroup).
fn join(mount: &CgroupMount, path: &str) -> Option<PathBuf> {
    if path.split('/').any(|part| part == "..") {
        return None;
    }
    let root = mount.root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    Some(mount.mount_point.join(rest.trim_start_matches('/')))
}
