//! Polite pulls for fleets: once a registry answers 429 (too many
//! requests), every pull and registry check of this agent to that registry
//! host waits, on every daemon, until the registry's own hint (a
//! `retry-after` in its message) or else an exponential backoff per host has
//! passed. One gate per agent, shared by all pullers and checkers, kept
//! across reloads.
//!
//! dockerd does not pass the registry's `Retry-After` header on: all a
//! client of the Engine API sees is the registry's error message. Some
//! registries put the hint there (ghcr.io: "toomanyrequests: retry-after:
//! 880.092µs, allowed: 44000/minute"); Docker Hub does not, and then the
//! backoff decides.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The longest wait a registry's hint is taken for.
const MAX_HINT: Duration = Duration::from_secs(24 * 3600);
/// The shortest wait after a 429, whatever the hint says: a hint of a few
/// microseconds (ghcr.io's are) would otherwise mean "hammer on".
const MIN_WAIT: Duration = Duration::from_secs(1);

/// The delay after `failures` failures in a row: doubling from a 32nd of
/// `interval` (at least a second), capped at `interval`. The pre-pull retry
/// schedule of an image, and the backoff of a rate-limited registry host.
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let base = (interval / 32).max(Duration::from_secs(1));
    let factor = 1_u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(interval)
}

/// A wait a registry named in its error message: `retry-after: 1.5s`,
/// `Retry-After: 30` (seconds), Go durations like `1m30s` or `880.092µs`.
pub fn retry_after_hint(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let at = ["retry-after", "retry after"]
        .iter()
        .find_map(|k| lower.find(k).map(|i| i + k.len()))?;
    let rest = message[at..].trim_start_matches([':', '=', ' ', '\t']);
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | 'µ' | 'μ')))
        .unwrap_or(rest.len());
    parse_go_duration(&rest[..end])
}

/// A Go duration (`1h2m3.5s`, `250ms`, `880.092µs`) or bare seconds (`30`).
fn parse_go_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

#[derive(Debug, Clone, Copy)]
struct HostState {
    /// No pull or check to the host starts before this.
    until: Instant,
    /// 429 episodes in a row (reset by a pull or check that worked).
    strikes: u32,
}

/// Registry host (as image references name it) -> when it may be asked again.
#[derive(Debug, Default)]
pub struct RegistryGate {
    hosts: Mutex<HashMap<String, HostState>>,
}

impl RegistryGate {
    /// When `host` may be asked again, if that is after `now`.
    pub fn closed_until(&self, host: &str, now: Instant) -> Option<Instant> {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts.get(host).map(|h| h.until).filter(|u| *u > now)
    }

    /// `host` answered 429 at `now`; `hint` is the wait its message named.
    /// Returns when it may be asked again: after the hint, or else after
    /// [`backoff`] of `interval` doubling per episode. A 429 that comes
    /// while the host is already waited for (a request sent before the
    /// first 429 came back, or another daemon's) starts no new episode.
    pub fn rate_limited(
        &self,
        host: &str,
        now: Instant,
        hint: Option<Duration>,
        interval: Duration,
    ) -> Instant {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let h = hosts.entry(host.to_owned()).or_insert(HostState {
            until: now,
            strikes: 0,
        });
        let hinted = hint.map(|d| now + d.clamp(MIN_WAIT, MAX_HINT));
        if now < h.until {
            if let Some(t) = hinted {
                h.until = h.until.max(t);
            }
        } else {
            h.strikes = h.strikes.saturating_add(1);
            h.until = hinted.unwrap_or_else(|| now + backoff(interval, h.strikes).max(MIN_WAIT));
        }
        h.until
    }

    /// A pull or check to `host` worked: the next 429 episode starts from
    /// the shortest backoff again. A wait still running (another daemon's
    /// 429 came while this one's request was under way) is kept.
    pub fn succeeded(&self, host: &str, now: Instant) {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        match hosts.get_mut(host) {
            Some(h) if h.until > now => h.strikes = 0,
            Some(_) => {
                hosts.remove(host);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(hour, 1), Duration::from_millis(112_500));
        assert_eq!(backoff(hour, 2), Duration::from_secs(225));
        assert_eq!(backoff(hour, 10), hour);
        assert_eq!(backoff(hour, u32::MAX), hour);
        assert_eq!(backoff(Duration::from_secs(8), 1), Duration::from_secs(1));
    }

    #[test]
    fn hints_in_registry_messages() {
        let cases = [
            // ghcr.io, through dockerd.
            (
                "toomanyrequests: retry-after: 880.092µs, allowed: 44000/minute",
                Some(Duration::from_nanos(880_092)),
            ),
            (
                "toomanyrequests: retry-after: 1.16676ms, allowed: 44000/minute",
                Some(Duration::from_nanos(1_166_760)),
            ),
            (
                "TOOMANYREQUESTS: Retry-After: 30",
                Some(Duration::from_secs(30)),
            ),
            (
                "slow down, retry after 1m30s",
                Some(Duration::from_secs(90)),
            ),
            ("retry-after: 2h", Some(Duration::from_secs(7200))),
            // Docker Hub names no wait.
            (
                "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
                None,
            ),
            ("retry-after: soon", None),
            ("retry-after:", None),
            ("retry-after: 5x", None),
        ];
        for (message, want) in cases {
            let got = retry_after_hint(message);
            match (got, want) {
                (Some(g), Some(w)) => assert!(
                    g.abs_diff(w) < Duration::from_nanos(10),
                    "{message}: {g:?} != {w:?}"
                ),
                _ => assert_eq!(got, want, "{message}"),
            }
        }
    }

    #[test]
    fn the_gate_backs_off_per_host() {
        let gate = RegistryGate::default();
        let t0 = Instant::now();
        let interval = Duration::from_secs(64); // backoff from 2 s
        assert_eq!(gate.closed_until("r:5000", t0), None);
        let u1 = gate.rate_limited("r:5000", t0, None, interval);
        assert_eq!(u1, t0 + Duration::from_secs(2));
        assert_eq!(gate.closed_until("r:5000", t0), Some(u1));
        assert_eq!(gate.closed_until("other:5000", t0), None, "per host");
        // Another daemon's 429 while the host is waited for: same episode.
        let again = gate.rate_limited("r:5000", t0 + Duration::from_millis(5), None, interval);
        assert_eq!(again, u1);
        // After the wait, another 429 doubles it.
        let u2 = gate.rate_limited("r:5000", u1, None, interval);
        assert_eq!(u2, u1 + Duration::from_secs(4));
        let u3 = gate.rate_limited("r:5000", u2, None, interval);
        assert_eq!(u3, u2 + Duration::from_secs(8));
        assert_eq!(gate.closed_until("r:5000", u3), None, "open once passed");
        // A success during a wait keeps the wait; either way the next
        // episode starts over.
        gate.succeeded("r:5000", u3 - Duration::from_secs(1));
        assert_eq!(
            gate.closed_until("r:5000", u3 - Duration::from_secs(1)),
            Some(u3)
        );
        let u4 = gate.rate_limited("r:5000", u3, None, interval);
        assert_eq!(u4, u3 + Duration::from_secs(2));
    }

    #[test]
    fn a_hint_wins_over_the_backoff() {
        let gate = RegistryGate::default();
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let u = gate.rate_limited("r", t0, Some(Duration::from_secs(7)), hour);
        assert_eq!(u, t0 + Duration::from_secs(7));
        // A longer hint during the wait extends it; a shorter one does not.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            gate.rate_limited("r", later, Some(Duration::from_secs(10)), hour),
            later + Duration::from_secs(10)
        );
        assert_eq!(
            gate.rate_limited("r", later, Some(Duration::from_secs(2)), hour),
            later + Duration::from_secs(10)
        );
        // Microseconds mean a second; days mean a day.
        let g = RegistryGate::default();
        assert_eq!(
            g.rate_limited("r", t0, Some(Duration::from_micros(880)), hour),
            t0 + MIN_WAIT
        );
        let g = RegistryGate::default();
        assert_eq!(
            g.rate_limited("r", t0, Some(Duration::from_secs(9_999_999)), hour),
            t0 + MAX_HINT
        );
    }
}
