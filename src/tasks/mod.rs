//! One task per daemon per job, each on that daemon's one connection: the
//! poller, the event stream, the disk usage, the pre-puller, the registry
//! checker and the pruner; and the discovery of daemons from files. No task
//! imports another: what two tasks share lives in a file of its own here.

pub mod discovery;
pub mod disk;
pub mod events;
pub mod failure;
pub mod image_events;
pub mod poller;
pub mod pruner;
pub mod puller;
pub mod registry_check;
pub mod schedule;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{PrepullConfig, RegistryConfig};
use crate::docker::Connection;
use crate::folds::ratelimit::RegistryGate;
use crate::folds::reference::ImageRef;
use crate::state::PullBoard;

/// What one daemon's pre-puller and registry checker share: the daemon,
/// its pre-pull images and settings, and what reaching their registries
/// takes.
#[derive(Debug, Clone)]
pub struct PrepullDaemon {
    pub connection: Connection,
    /// The pre-pull images configured for this daemon.
    pub images: Vec<ImageRef>,
    pub prepull: PrepullConfig,
    pub registries: Arc<[RegistryConfig]>,
    pub board: Arc<PullBoard>,
    /// The agent's rate-limited registry hosts, shared with every puller
    /// and checker.
    pub gate: Arc<RegistryGate>,
    /// Told when a pull changed a local image (or brought one a check had
    /// nothing to compare with), so its registry check is redone at once.
    pub recheck: Arc<Notify>,
}
