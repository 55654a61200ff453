//! One task per `[[discovery]]` source: reads its `file_sd` files every
//! `refresh`, and within a second when one of them changes (their size and
//! modification time are looked at every second), and sends the daemon
//! list whenever it changed. A file that cannot be read or parsed is logged
//! with its path and its last good list is kept; a file that is gone takes
//! its daemons with it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::file_sd::{self, Target};
use crate::config::{DaemonConfig, DiscoveryConfig};
use crate::metrics::Metrics;

/// How often the files' size and modification time are looked at.
const CHANGE_CHECK: Duration = Duration::from_secs(1);

/// A source's daemons, as its task last read them.
#[derive(Debug, Clone)]
pub struct Update {
    pub source: usize,
    pub daemons: Vec<DaemonConfig>,
}

#[derive(Debug)]
pub struct Discovery {
    /// Its place in the config's `[[discovery]]` list.
    pub index: usize,
    pub config: DiscoveryConfig,
    pub metrics: Arc<Metrics>,
    pub updates: mpsc::UnboundedSender<Update>,
}

/// What a file looked like when last read.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Discovery {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let source = self.config.source();
        let mut good: BTreeMap<PathBuf, Vec<Target>> = BTreeMap::new();
        let mut stamps: BTreeMap<PathBuf, Stamp> = BTreeMap::new();
        // What was said about each path (or the patterns), to say it once.
        let mut said: BTreeMap<String, String> = BTreeMap::new();
        let mut sent: Option<Vec<DaemonConfig>> = None;
        let mut next_full = Instant::now();
        loop {
            let paths = match file_sd::expand(&self.config.files) {
                Ok(p) => {
                    said.remove("");
                    p
                }
                Err(e) => {
                    if said.insert(String::new(), e.clone()).as_ref() != Some(&e) {
                        tracing::warn!(%source, error = %e, "discovery: cannot list the files; keeping the last good list");
                    }
                    stamps.keys().cloned().collect()
                }
            };
            let now_stamps: BTreeMap<PathBuf, Stamp> =
                paths.iter().map(|p| (p.clone(), stamp(p))).collect();
            if Instant::now() >= next_full || now_stamps != stamps {
                let all_read = Self::read(&paths, &mut good, &mut said, &source);
                stamps = now_stamps;
                let daemons = self.daemons(&good, &mut said, &source);
                self.metrics
                    .discovery
                    .read(&source, daemons.len(), all_read);
                if sent.as_ref() != Some(&daemons) {
                    tracing::info!(%source, daemons = daemons.len(), "discovery: daemon list read");
                    sent = Some(daemons.clone());
                    if self
                        .updates
                        .send(Update {
                            source: self.index,
                            daemons,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                next_full = Instant::now() + self.config.refresh;
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(CHANGE_CHECK) => {}
            }
        }
    }

    /// Reads every file; a file that fails keeps its last good targets.
    /// True if every file could be read.
    fn read(
        paths: &[PathBuf],
        good: &mut BTreeMap<PathBuf, Vec<Target>>,
        said: &mut BTreeMap<String, String>,
        source: &str,
    ) -> bool {
        let present: BTreeSet<&PathBuf> = paths.iter().collect();
        good.retain(|p, _| present.contains(p));
        let mut all = true;
        for path in paths {
            let key = path.display().to_string();
            match file_sd::read(path) {
                Ok(targets) => {
                    if said.remove(&key).is_some() {
                        tracing::info!(%source, file = %key, "discovery: the file reads again");
                    }
                    good.insert(path.clone(), targets);
                }
                Err(e) => {
                    all = false;
                    if said.insert(key.clone(), e.clone()).as_ref() != Some(&e) {
                        tracing::warn!(%source, file = %key, error = %e, "discovery: cannot read the file; keeping its last good list");
                    }
                }
            }
        }
        all
    }

    /// The daemons of every file's targets; a bad target or a name seen
    /// before is logged (once) and left out.
    fn daemons(
        &self,
        good: &BTreeMap<PathBuf, Vec<Target>>,
        said: &mut BTreeMap<String, String>,
        source: &str,
    ) -> Vec<DaemonConfig> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (path, targets) in good {
            for t in targets {
                let problem = match file_sd::daemon(t, &self.config) {
                    Ok(d) if names.insert(d.name.clone()) => {
                        out.push(d);
                        continue;
                    }
                    Ok(d) => format!("the daemon name {:?} is listed twice", d.name),
                    Err(e) => e,
                };
                let key = format!("{}#{}", path.display(), t.url);
                if said.insert(key, problem.clone()).as_ref() != Some(&problem) {
                    tracing::warn!(%source, file = %path.display(), target = %t.url, error = %problem, "discovery: target left out");
                }
            }
        }
        out
    }
}
