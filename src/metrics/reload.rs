//! `dockwatch_config_last_reload_successful` and
//! `_success_timestamp_seconds`: how the last (re)load of the configuration
//! went.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::gauge::Gauge;

use super::family::{Forget, family_group};
use crate::clock::unix_now;

family_group! {
    pub struct ReloadFamilies {
        ok: Gauge = "config_last_reload_successful", Gauge::default(), "1 if the last (re)load of the configuration worked";
        time: Gauge<f64, AtomicU64> = "config_last_reload_success_timestamp_seconds", Gauge::default(), "Unix time of the last (re)load of the configuration that worked";
    }
}

impl ReloadFamilies {
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
