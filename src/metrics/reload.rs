//! `dockwatch_config_last_reload_successful` and
//! `_success_timestamp_seconds`: how the last (re)load of the configuration
//! went.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::family::{Changes, Forget, register, unix_now};

#[derive(Debug, Clone)]
pub struct ReloadFamilies {
    ok: Gauge,
    time: Gauge<f64, AtomicU64>,
    changes: Changes,
}

impl ReloadFamilies {
    pub(super) fn register(registry: &mut Registry, changes: &Changes) -> Self {
        Self {
            ok: register(
                registry,
                "config_last_reload_successful",
                "1 if the last (re)load of the configuration worked",
                Gauge::default(),
            ),
            time: register(
                registry,
                "config_last_reload_success_timestamp_seconds",
                "Unix time of the last (re)load of the configuration that worked",
                Gauge::default(),
            ),
            changes: changes.clone(),
        }
    }

    /// Records a (re)load of the configuration.
    pub fn loaded(&self, ok: bool) {
        self.ok.set(i64::from(ok));
        if ok {
            self.time.set(unix_now());
        }
        self.changes.mark();
    }
}

/// Not per daemon.
impl Forget for ReloadFamilies {}
