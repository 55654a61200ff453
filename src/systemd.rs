//! systemd integration for `Type=notify` units: READY=1 once the server
//! listens and every daemon finished its first poll, watchdog pings while the
//! runtime is alive, STOPPING=1 on shutdown. Without `NOTIFY_SOCKET` (not
//! under systemd) every call is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::state::State;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Tells systemd we are ready once every daemon has been polled, then pings
/// the watchdog (if the unit has `WatchdogSec=`) at half its interval until
/// `stop` changes.
pub async fn run(state: Arc<State>, daemons: usize, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if state.ready() {
            break;
        }
    }
    let status = format!("watching {daemons} daemon(s)");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut ping = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ping.tick() => send(&[NotifyState::Watchdog]),
        }
    }
}

/// Tells systemd we are stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Tells systemd a reload is under way.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Tells systemd we are ready again after a reload.
pub fn ready() {
    send(&[NotifyState::Ready]);
}
