//! Pure logic, no I/O and no clock of their own: image references, the
//! pull-stream fold, outdated containers, rate-limit backoff, pre-pull windows.

pub mod outdated;
pub mod progress;
pub mod ratelimit;
pub mod reference;
pub mod window;
