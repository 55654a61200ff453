//! The wall clock, read in one place: Unix time as the metrics, snapshots
//! and the Engine API's `since` want it. A leaf: it uses nothing of the crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time now, in seconds with a fraction; 0 before 1970.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Unix time now, in nanoseconds (as the Engine API's event `timeNano`); 0
/// before 1970.
pub fn unix_now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
