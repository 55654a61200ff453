//! The open-file limit (`RLIMIT_NOFILE`). `dockwatch run` raises its soft
//! limit to the hard one at start-up, as Go's runtime does for every Go
//! program, and [`Budget`] checks the daemons to watch against it: past what
//! it holds, the first that fit are watched and the others reported down,
//! rather than every connection failing with "Too many open files".

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors one watched daemon keeps open: its event stream and up to two
/// pooled idle connections. Measured with the replay fleet (BENCHMARKS.md):
/// 912 descriptors for 300 daemons, 3,013 for 1,000.
pub const PER_DAEMON: u64 = 3;

/// Descriptors besides the daemons': stdio, the runtime's epoll and eventfd,
/// the listener, the files read (config, `file_sd`, TLS, `/proc/self`) and the
/// scrapes in progress. About 13 measured at rest; the rest is room for
/// scrapes and reloads arriving together.
pub const BASE: u64 = 64;

/// Soft and hard `RLIMIT_NOFILE`; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

impl Limits {
    pub fn now() -> Self {
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        Self {
            soft: current,
            hard: maximum,
        }
    }
}

/// A limit as a person reads it.
fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

/// How many daemons a soft limit of `soft` descriptors holds.
pub fn daemons_fit(soft: Option<u64>) -> usize {
    soft.map_or(usize::MAX, |n| {
        usize::try_from(n.saturating_sub(BASE) / PER_DAEMON).unwrap_or(usize::MAX)
    })
}

/// Descriptors `daemons` daemons need.
pub fn needed(daemons: usize) -> u64 {
    BASE.saturating_add(PER_DAEMON.saturating_mul(u64::try_from(daemons).unwrap_or(u64::MAX)))
}

/// Raises the soft limit to the hard one and logs both, before and after, in
/// one line. A refusal (a seccomp filter such as systemd's
/// `SystemCallFilter=~@resources`) is logged and changes nothing.
pub fn raise() -> Limits {
    let before = Limits::now();
    if before.soft == before.hard {
        tracing::info!(
            "open-file limit (RLIMIT_NOFILE): soft {} already at the hard limit",
            show(before.soft)
        );
        return before;
    }
    let new = Rlimit {
        current: before.hard,
        maximum: before.hard,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => {
            let after = Limits::now();
            tracing::info!(
                "open-file limit (RLIMIT_NOFILE): soft {} raised to {} (hard {})",
                show(before.soft),
                show(after.soft),
                show(after.hard)
            );
            after
        }
        Err(e) => {
            tracing::warn!(
                "open-file limit (RLIMIT_NOFILE): cannot raise soft {} to the hard limit {} ({e}); going on with {}",
                show(before.soft),
                show(before.hard),
                show(before.soft)
            );
            before
        }
    }
}

/// Whether the daemons to watch fit the limit, as last said: one line when
/// the verdict changes, not one per daemon.
#[derive(Debug, Default)]
pub struct Budget {
    /// `Some(true)` once the daemons did not fit.
    over: Option<bool>,
}

impl Budget {
    /// How many of `daemons` to watch under the soft limit now in effect
    /// (the hard limit, once [`raise`] worked): all of them, or the number
    /// that fit, said in one warning line.
    pub fn admit(&mut self, daemons: usize) -> usize {
        let limits = Limits::now();
        let fit = daemons_fit(limits.soft);
        let over = daemons > fit;
        if self.over != Some(over) {
            if over {
                tracing::warn!(
                    "the open-file limit (soft {}, hard {}) holds {fit} of {daemons} daemons ({PER_DAEMON} descriptors each plus {BASE}): watching the first {fit}, the other {} show as down (reason connect) until the limit is at least {} (LimitNOFILE= in the unit, --ulimit nofile= for a container)",
                    show(limits.soft),
                    show(limits.hard),
                    daemons - fit,
                    needed(daemons)
                );
            } else if self.over == Some(true) {
                tracing::info!(
                    "the open-file limit (soft {}) holds all {daemons} daemons again",
                    show(limits.soft)
                );
            }
            self.over = Some(over);
        }
        daemons.min(fit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_leaves_the_base_and_three_a_daemon() {
        // systemd's default soft limit: the 300 measured fine fit, 400 not.
        assert_eq!(daemons_fit(Some(1024)), 320);
        assert_eq!(daemons_fit(Some(65536)), 21_824);
        assert_eq!(daemons_fit(Some(10)), 0);
        assert_eq!(daemons_fit(None), usize::MAX);
        assert_eq!(needed(1000), 3064);
        assert!(daemons_fit(Some(needed(1000))) >= 1000);
    }

    #[test]
    fn budget_caps_at_what_fits() {
        let mut budget = Budget::default();
        let fit = daemons_fit(Limits::now().soft);
        assert_eq!(budget.admit(5), 5.min(fit));
        if fit < usize::MAX {
            assert_eq!(budget.admit(fit + 7), fit);
            assert_eq!(budget.over, Some(true));
        }
        assert_eq!(budget.admit(0), 0);
        assert_eq!(budget.over, Some(false));
    }
}
