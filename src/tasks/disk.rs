//! One task per daemon reads `/system/df` on its own slow schedule, so that
//! a slow answer (it can take minutes on a big host) never delays the poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::docker::Connection;
use crate::state::State;

/// One daemon's disk-usage task.
#[derive(Debug, Clone)]
pub struct DiskWatcher {
    pub connection: Connection,
    pub interval: Duration,
    /// Wait before the first `/system/df`, spread like the polls.
    pub first: Duration,
    pub state: Arc<State>,
}

impl DiskWatcher {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + self.first, self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let name = self.connection.name().to_owned();
        let mut failing = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                _ = ticker.tick() => {}
            }
            // A df may take long, but must end before the next one is due.
            let result = tokio::select! {
                biased;
                _ = shutdown.changed() => return,
                r = self.connection.system_df(self.interval) => r,
            };
            match result {
                Ok(usage) => {
                    if failing {
                        tracing::info!(daemon = %name, "/system/df works again");
                    }
                    failing = false;
                    self.state.publish_disk(&name, Ok(usage));
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(daemon = %name, error = %e, "/system/df failed; dockwatch_disk_usage_success is 0 and the disk figures are left out until it works");
                    }
                    failing = true;
                    self.state.publish_disk(&name, Err(e.reason()));
                }
            }
        }
    }
}
