//! Pruning, opt-in: one task per daemon removes the dangling images that
//! pre-pulls leave behind when a tag moves, on its own schedule after a
//! random jitter, one image at a time. [`prune_round`] is one round; the
//! task and `dockwatch prune` both call it.
//!
//! What may go: an image the daemon lists with `dangling=true` (and the
//! configured filters), created longer ago than `older_than`, that no
//! container uses (running or not), that no configured pre-pull reference
//! names now, and that no pre-pull reference named at the start or end of a
//! pull within `older_than` (a pull that moved a tag off it). The Engine API
//! does not say when an image became dangling, so age is the image's own
//! `Created`; the pre-pull memory covers the images dockwatch's own pulls
//! just left dangling, however old they are. Removal is `DELETE
//! /images/{id}` without `force`, so the daemon itself refuses an image in
//! use: a refusal is counted and the image tried again next round, never in
//! a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::unix_now;
use crate::config::PruneConfig;
use crate::docker::{Connection, DanglingImage, DockerError, bare_id};
use crate::folds::reference::ImageRef;
use crate::labels::{PruneRefusal, PruneResult};
use crate::metrics::{Eligible, Metrics};
use crate::state::{PruneMemory, State};
use crate::tasks::schedule::random_below;

/// What one round may remove, and what it must keep.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The dangling list's filters: `dangling=true` and the configured ones.
    pub filters: BTreeMap<String, Vec<String>>,
    pub older_than: Duration,
    pub max_per_round: usize,
    pub dry_run: bool,
    /// The pre-pull references configured for the daemon: the images they
    /// name now are kept.
    pub prepulls: Vec<ImageRef>,
    /// Image ids a pre-pull reference named within `older_than` (bare, no
    /// `sha256:`): kept too.
    pub recently_named: BTreeSet<String>,
}

impl Plan {
    /// The plan `[prune]` describes for a daemon with these pre-pulls; no
    /// memory of recent pulls.
    pub fn new(config: &PruneConfig, prepulls: Vec<ImageRef>) -> Self {
        Self {
            filters: config.query(),
            older_than: config.older_than,
            max_per_round: config.max_per_round.max(1),
            dry_run: config.dry_run,
            prepulls,
            recently_named: BTreeSet::new(),
        }
    }
}

/// Why a dangling image stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kept {
    /// Created `older_than` ago or less (or the daemon did not say when).
    Young,
    /// A container uses it.
    InUse,
    /// A configured pre-pull reference names it.
    Prepull,
    /// A pre-pull reference named it within `older_than`.
    RecentlyPulled,
    /// Eligible, but past `max_per_round`: next round.
    OverLimit,
}

impl Kept {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Young => "younger than older_than",
            Self::InUse => "used by a container",
            Self::Prepull => "named by a configured pre-pull",
            Self::RecentlyPulled => "left by a recent pre-pull",
            Self::OverLimit => "over max_per_round",
        }
    }
}

/// What happened to one image, as it happens.
#[derive(Debug)]
pub enum Step<'a> {
    Removed(&'a DanglingImage),
    /// A dry run's "this would go".
    WouldRemove(&'a DanglingImage),
    /// The daemon said no; the message is its answer.
    Refused(&'a DanglingImage, PruneRefusal, &'a str),
    /// The removal failed for another reason than a refusal.
    Failed(&'a DanglingImage, &'a DockerError),
}

/// How a round went.
#[derive(Debug, Clone, Default)]
pub struct Round {
    pub result: Option<PruneResult>,
    /// Why the round failed or was skipped.
    pub error: Option<String>,
    /// Dangling images the daemon listed (after the filters).
    pub listed: usize,
    /// Removable, before `max_per_round`; `None` if the round did not get
    /// that far.
    pub eligible: Option<Eligible>,
    pub kept: BTreeMap<Kept, usize>,
    /// Removed, or in a dry run, would be.
    pub removed: u64,
    pub removed_bytes: u64,
    pub refused: u64,
    /// Shutdown came before every removal was made.
    pub stopped: bool,
}

impl Round {
    fn end(mut self, result: PruneResult, error: Option<String>) -> Self {
        self.result = Some(result);
        self.error = error;
        self
    }

    /// The round's result (`ok` for one that never ended, which cannot be).
    pub fn result(&self) -> PruneResult {
        self.result.unwrap_or(PruneResult::Ok)
    }

    /// What was kept, one "{count} {why}" per reason.
    pub fn kept_described(&self) -> Vec<String> {
        self.kept
            .iter()
            .map(|(k, n)| format!("{n} {}", k.describe()))
            .collect()
    }
}

/// What the daemon's refusal means, or `None` if the error is no refusal
/// (a timeout, a lost connection, a 5xx). Messages from dockerd 20.10 and
/// Podman 4.3 on the test bed: "conflict: unable to delete 4a908b9b3e7e
/// (must be forced) - image is being used by stopped container 7da113f28995",
/// "image ... is in use: image used by ...", "... (must be forced) - image
/// is referenced in multiple repositories", "No such image: ...".
pub fn refusal(e: &DockerError) -> Option<PruneRefusal> {
    match e {
        // A proxy that refuses one removal refuses them all: a failure.
        e if e.refused_by_proxy() => None,
        DockerError::Http { status: 404, .. } => Some(PruneRefusal::NotFound),
        DockerError::Http {
            status: 409,
            message,
        } => {
            let m = message.to_ascii_lowercase();
            if m.contains("being used by") || m.contains("in use") {
                Some(PruneRefusal::InUse)
            } else {
                Some(PruneRefusal::Conflict)
            }
        }
        DockerError::Http { status, .. } if (400..500).contains(status) => {
            Some(PruneRefusal::Other)
        }
        _ => None,
    }
}

/// Whether an error means the daemon cannot be reached at all (rather
/// than that it answered badly).
fn unreachable(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::Connect(_) | DockerError::Tls(_) | DockerError::Timeout(_)
    )
}

/// The images that may go, oldest first (then by id, so two rounds over
/// the same images agree), and why each other one stays. `in_use` and
/// `protected` hold bare ids; `now` is Unix seconds.
pub fn select<'a>(
    listed: &'a [DanglingImage],
    in_use: &BTreeSet<String>,
    protected: &BTreeSet<String>,
    plan: &Plan,
    now: f64,
) -> (Vec<&'a DanglingImage>, BTreeMap<Kept, usize>) {
    let mut kept = BTreeMap::new();
    let mut eligible = Vec::new();
    for image in listed {
        let id = bare_id(&image.id);
        let why = if !old_enough(image, plan.older_than, now) {
            Some(Kept::Young)
        } else if image.containers.is_some_and(|n| n > 0) || in_use.contains(id) {
            Some(Kept::InUse)
        } else if protected.contains(id) {
            Some(Kept::Prepull)
        } else if plan.recently_named.contains(id) {
            Some(Kept::RecentlyPulled)
        } else {
            None
        };
        match why {
            Some(k) => *kept.entry(k).or_insert(0) += 1,
            None => eligible.push(image),
        }
    }
    eligible.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    (eligible, kept)
}

/// Created longer ago than `older_than`; an image without a creation time
/// never is.
fn old_enough(image: &DanglingImage, older_than: Duration, now: f64) -> bool {
    #[allow(clippy::cast_precision_loss)] // seconds since 1970 fit f64 exactly
    image
        .created
        .is_some_and(|c| now - c as f64 > older_than.as_secs_f64())
}

/// One round on one daemon: lists its dangling images, works out which may
/// go, and removes those (at most `max_per_round`, oldest first, one at a
/// time, each under the call timeout), or in a dry run only says so.
/// `on_step` hears of each image as it goes. A daemon that cannot be reached
/// for the list makes the round `skipped`; a failure after that, `failed`,
/// and the round stops at a removal that timed out or lost the connection
/// (the rest would only pile up behind it). Once `shutdown` is set, the
/// round stops after the removal under way.
pub async fn prune_round(
    connection: &Connection,
    plan: &Plan,
    now: f64,
    shutdown: &watch::Receiver<bool>,
    mut on_step: impl FnMut(Step<'_>),
) -> Round {
    let mut round = Round::default();
    let listed = match connection.dangling_images(&plan.filters).await {
        Ok(l) => l,
        Err(e) if unreachable(&e) => {
            return round.end(
                PruneResult::Skipped,
                Some(format!("the daemon cannot be reached: {e}")),
            );
        }
        Err(e) => {
            return round.end(
                PruneResult::Failed,
                Some(format!("listing dangling images failed: {e}")),
            );
        }
    };
    round.listed = listed.len();
    // Most rounds find nothing old enough: then nothing else is asked.
    if !listed.iter().any(|i| old_enough(i, plan.older_than, now)) {
        round.kept.insert(Kept::Young, listed.len());
        round.eligible = Some(Eligible::default());
        return round.end(PruneResult::Ok, None);
    }
    let (in_use, protected) = match guards(connection, plan).await {
        Ok(g) => g,
        Err(why) => return round.end(PruneResult::Failed, Some(why)),
    };
    let (eligible, kept) = select(&listed, &in_use, &protected, plan, now);
    round.kept = kept;
    round.eligible = Some(Eligible {
        images: eligible.len() as u64,
        bytes: eligible.iter().map(|i| i.bytes()).sum(),
    });
    let over = eligible.len().saturating_sub(plan.max_per_round);
    if over > 0 {
        round.kept.insert(Kept::OverLimit, over);
    }
    let mut failure = None;
    for image in eligible.into_iter().take(plan.max_per_round) {
        if *shutdown.borrow() {
            round.stopped = true;
            break;
        }
        let outcome = if plan.dry_run {
            Ok(())
        } else {
            connection.delete_image(&image.id).await
        };
        match outcome {
            Ok(()) => {
                on_step(if plan.dry_run {
                    Step::WouldRemove(image)
                } else {
                    Step::Removed(image)
                });
                round.removed += 1;
                round.removed_bytes += image.bytes();
            }
            Err(e) => {
                if let Some(reason) = refusal(&e) {
                    let message = match &e {
                        DockerError::Http { message, .. } => message.as_str(),
                        _ => "",
                    };
                    on_step(Step::Refused(image, reason, message));
                    round.refused += 1;
                    continue;
                }
                on_step(Step::Failed(image, &e));
                failure.get_or_insert_with(|| format!("removing {} failed: {e}", image.id));
                if unreachable(&e) || e.refused_by_proxy() {
                    break;
                }
            }
        }
    }
    match failure {
        Some(why) => round.end(PruneResult::Failed, Some(why)),
        None => round.end(PruneResult::Ok, None),
    }
}

/// The bare ids of the images containers use, and of those the configured
/// pre-pull references name now; why not, if the daemon would not say.
async fn guards(
    connection: &Connection,
    plan: &Plan,
) -> Result<(BTreeSet<String>, BTreeSet<String>), String> {
    let in_use = connection
        .container_image_ids()
        .await
        .map_err(|e| format!("listing containers failed: {e}"))?
        .iter()
        .map(|i| bare_id(i).to_owned())
        .collect();
    let mut protected = BTreeSet::new();
    for image in &plan.prepulls {
        let id = connection
            .image_id(image)
            .await
            .map_err(|e| format!("cannot tell which image the pre-pull {image} names: {e}"))?;
        if let Some(id) = id {
            protected.insert(bare_id(&id).to_owned());
        }
    }
    Ok((in_use, protected))
}

/// One daemon's pruner.
#[derive(Debug, Clone)]
pub struct Pruner {
    pub connection: Connection,
    pub config: PruneConfig,
    /// The pre-pull references configured for this daemon.
    pub prepulls: Vec<ImageRef>,
    pub state: Arc<State>,
    pub memory: Arc<PruneMemory>,
    pub metrics: Arc<Metrics>,
}

impl Pruner {
    /// A round every `interval`, each after a random delay of up to
    /// `jitter` (the first one too), until `shutdown`. A reload keeps the
    /// schedule: the first round of a new generation is due `interval`
    /// after the last one began.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let daemon = self.connection.name().to_owned();
        self.metrics.prune.init(&daemon);
        let interval = self.config.interval;
        let jitter = || random_below(self.config.jitter);
        let now = Instant::now();
        let base = self
            .memory
            .last_round(&daemon)
            .map_or(now, |last| (Instant::from_std(last) + interval).max(now));
        let mut due = base + jitter();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                () = tokio::time::sleep_until(due) => {}
            }
            let started = Instant::now();
            self.memory.round_started(&daemon, started.into_std());
            self.round(&daemon, &shutdown).await;
            due = (started + interval).max(Instant::now()) + jitter();
        }
    }

    /// Why no call should be made this round, if there is a reason.
    fn skip_reason(&self, daemon: &str) -> Option<String> {
        // A daemon the poller found down is not called at all: its
        // poller already says why, and retries.
        if self.state.get(daemon).is_some_and(|s| !s.up()) {
            return Some("the daemon is down (its last poll failed)".to_owned());
        }
        let min = self.config.when.reclaimable_above?;
        let disk = self
            .state
            .disks()
            .into_iter()
            .find(|(d, _)| d == daemon)
            .map(|(_, usage)| usage);
        match disk {
            None => Some("prune.when needs /system/df, which has not answered yet".to_owned()),
            Some(None) => Some("prune.when needs /system/df, which failed".to_owned()),
            Some(Some(usage)) if usage.images.reclaimable <= min => Some(format!(
                "/system/df says {} bytes of images could be freed, not above prune.when.reclaimable_above ({min})",
                usage.images.reclaimable
            )),
            Some(Some(_)) => None,
        }
    }

    async fn round(&self, daemon: &str, shutdown: &watch::Receiver<bool>) {
        if let Some(why) = self.skip_reason(daemon) {
            tracing::info!(daemon = %daemon, reason = %why, "prune round skipped");
            self.metrics
                .prune
                .round(daemon, PruneResult::Skipped, None, unix_now());
            return;
        }
        let now = unix_now();
        let mut plan = Plan::new(&self.config, self.prepulls.clone());
        plan.recently_named = self
            .memory
            .named_since(daemon, now - self.config.older_than.as_secs_f64())
            .iter()
            .map(|id| bare_id(id).to_owned())
            .collect();
        let round = prune_round(&self.connection, &plan, now, shutdown, |step| {
            match step {
                Step::Removed(i) => {
                    self.metrics.prune.removed(daemon, i.bytes());
                    tracing::info!(daemon = %daemon, image = %i.id, bytes = i.bytes(), created = i.created.unwrap_or_default(), "pruned a dangling image");
                }
                Step::WouldRemove(i) => {
                    tracing::info!(daemon = %daemon, image = %i.id, bytes = i.bytes(), created = i.created.unwrap_or_default(), "dry run: would prune a dangling image");
                }
                Step::Refused(i, reason, message) => {
                    self.metrics.prune.refused(daemon, reason);
                    tracing::info!(daemon = %daemon, image = %i.id, reason = reason.as_str(), answer = %message, "the daemon refused to remove a dangling image; trying again next round");
                }
                Step::Failed(i, e) => {
                    tracing::warn!(daemon = %daemon, image = %i.id, error = %e, "removing a dangling image failed");
                }
            }
        })
        .await;
        let kept = round.kept_described();
        let result = round.result();
        match (result, &round.error) {
            (PruneResult::Ok, _) => {
                tracing::info!(daemon = %daemon, dry_run = plan.dry_run, listed = round.listed, removed = round.removed, bytes = round.removed_bytes, refused = round.refused, kept = %kept.join(", "), stopped_at_shutdown = round.stopped, "prune round done");
            }
            (PruneResult::Skipped, why) => {
                tracing::info!(daemon = %daemon, reason = why.as_deref().unwrap_or(""), "prune round skipped");
            }
            (PruneResult::Failed, why) => {
                tracing::warn!(daemon = %daemon, error = why.as_deref().unwrap_or(""), removed = round.removed, bytes = round.removed_bytes, "prune round failed");
            }
        }
        self.metrics
            .prune
            .round(daemon, result, round.eligible, unix_now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, created: Option<i64>, size: i64, containers: i64) -> DanglingImage {
        DanglingImage {
            id: id.to_owned(),
            created,
            size: Some(size),
            containers: Some(containers),
        }
    }

    fn plan(older_than: Duration) -> Plan {
        Plan {
            filters: BTreeMap::new(),
            older_than,
            max_per_round: 50,
            dry_run: false,
            prepulls: Vec::new(),
            recently_named: BTreeSet::from(["recent".to_owned()]),
        }
    }

    #[test]
    fn only_old_unused_unnamed_images_are_eligible_oldest_first() {
        let now = 1_000_000.0;
        let day = 86_400;
        let listed = [
            image("sha256:b-old", Some(1_000_000 - 3 * day), 10, -1),
            image("sha256:young", Some(1_000_000 - 3600), 20, -1),
            image("sha256:a-older", Some(1_000_000 - 5 * day), 30, -1),
            image("sha256:counted", Some(1_000_000 - 5 * day), 40, 1),
            image("sha256:listed-user", Some(1_000_000 - 5 * day), 50, -1),
            image("sha256:pinned", Some(0), 60, 0),
            image("sha256:recent", Some(0), 70, -1),
            image("sha256:unknown-age", None, 80, -1),
            image("sha256:c-same-age", Some(1_000_000 - 3 * day), 90, -1),
        ];
        let in_use = BTreeSet::from(["listed-user".to_owned()]);
        let protected = BTreeSet::from(["pinned".to_owned()]);
        let (eligible, kept) = select(
            &listed,
            &in_use,
            &protected,
            &plan(Duration::from_secs(86_400)),
            now,
        );
        let ids: Vec<&str> = eligible.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["sha256:a-older", "sha256:b-old", "sha256:c-same-age"]);
        assert_eq!(
            kept,
            BTreeMap::from([
                (Kept::Young, 2),
                (Kept::InUse, 2),
                (Kept::Prepull, 1),
                (Kept::RecentlyPulled, 1),
            ])
        );
        // older_than 0: age alone keeps nothing but the undated.
        let (eligible, kept) = select(&listed, &in_use, &protected, &plan(Duration::ZERO), now);
        assert_eq!(eligible.len(), 4);
        assert_eq!(kept[&Kept::Young], 1);
    }

    #[test]
    fn refusals_from_real_daemons() {
        // What real daemons answered, by what it must count as.
        let refusals: [(u16, Option<PruneRefusal>, &[&str]); 6] = [
            (
                409,
                Some(PruneRefusal::InUse),
                &[
                    "conflict: unable to delete 4a908b9b3e7e (must be forced) - image is being used by stopped container 7da113f28995",
                    "conflict: unable to delete 4a908b9b3e7e (cannot be forced) - image is being used by running container 7da113f28995",
                    "image sha256:4a90 is in use: image used by ea406f2ef0f8: image is in use by a container: consider listing external containers and force-removing image",
                ],
            ),
            (
                409,
                Some(PruneRefusal::Conflict),
                &[
                    "conflict: unable to delete 4a908b9b3e7e (must be forced) - image is referenced in multiple repositories",
                    "conflict: unable to delete 4a908b9b3e7e (cannot be forced) - image has dependent child images",
                ],
            ),
            (
                404,
                Some(PruneRefusal::NotFound),
                &[
                    "No such image: sha256:0000",
                    "failed to find image sha256:0000: docker.io/library/sha256:0000: image not known",
                ],
            ),
            (
                403,
                Some(PruneRefusal::Other),
                &["authorization denied by plugin"],
            ),
            // deploy/socket-proxy below the prune level: a failure, not a
            // refusal of this one image.
            (
                403,
                None,
                &[
                    "refused by a proxy in front of the daemon (403): 403 Forbidden Request forbidden by administrative rules.",
                ],
            ),
            (500, None, &["layer store failed"]),
        ];
        for (status, want, messages) in refusals {
            for message in messages {
                let e = DockerError::http(status, message);
                assert_eq!(refusal(&e), want, "{e}");
            }
        }
        let cases = [
            (DockerError::Timeout(Duration::from_secs(1)), None),
            (DockerError::Connect("refused".into()), None),
        ];
        for (e, want) in cases {
            assert_eq!(refusal(&e), want, "{e}");
        }
    }

    #[test]
    fn plan_follows_the_config() {
        let config = PruneConfig {
            max_per_round: 3,
            dry_run: true,
            ..PruneConfig::default()
        };
        let p = Plan::new(&config, Vec::new());
        assert_eq!(p.filters["dangling"], ["true"]);
        assert_eq!(p.max_per_round, 3);
        assert!(p.dry_run);
        assert!(p.recently_named.is_empty());
    }
}
