//! When tasks run: random jitter, sleeping until a deadline, and the spread
//! of many daemons' first runs over an interval, shared by every task.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::Instant;

/// A random duration in `[0, max)`, from the std hasher's random keys.
pub fn random_below(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut h = RandomState::new().build_hasher();
    h.write_u64(nanos);
    Duration::from_nanos(h.finish() % nanos)
}

/// Sleeps until `at`, or forever without one.
pub async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The most daemons whose first polls start per [`SPREAD_SLOT`]: a few
/// daemons still start within a fraction of a second, a fleet spreads over
/// the whole interval.
const SPREAD_SLOT: Duration = Duration::from_millis(50);

/// How long daemon `index` of `count` waits before its first poll: the
/// daemons' first polls are spread evenly over `count` slots of 50 ms, or over
/// the whole `interval` when they are more. Ticks then keep their phase, so a
/// thousand daemons on a 15 s interval poll about 67 a second, rather than
/// all at once on every tick (each daemon's calls, and the scrapes at that
/// moment, would wait on the others').
pub fn spread(index: usize, count: usize, interval: Duration) -> Duration {
    let count = u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    let index = u32::try_from(index).unwrap_or(u32::MAX).min(count - 1);
    let window = interval.min(SPREAD_SLOT.saturating_mul(count));
    window / count * index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_below_its_bound() {
        for _ in 0..100 {
            assert!(random_below(Duration::from_secs(3)) < Duration::from_secs(3));
        }
        assert_eq!(random_below(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn first_polls_are_spread_evenly() {
        let i = Duration::from_secs(15);
        // One daemon starts at once; a few within their slots.
        assert_eq!(spread(0, 1, i), Duration::ZERO);
        assert_eq!(spread(1, 4, i), Duration::from_millis(50));
        assert_eq!(spread(3, 4, i), Duration::from_millis(150));
        // A fleet spreads over the whole interval, evenly.
        assert_eq!(spread(0, 1000, i), Duration::ZERO);
        assert_eq!(spread(500, 1000, i), Duration::from_millis(7500));
        assert_eq!(spread(999, 1000, i), Duration::from_millis(14_985));
        // Nonsense stays inside the interval.
        assert_eq!(spread(5, 0, i), Duration::ZERO);
        assert!(spread(usize::MAX, 1000, i) < i);
    }
}
