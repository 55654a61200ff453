//! Pre-pull windows: daily spans of wall-clock time, `"02:00-05:00"` in UTC
//! or `"22:00-01:00 Europe/Berlin"` in a named zone, during which scheduled
//! pre-pulls may start. A window whose end is before its start crosses
//! midnight. Pure: every question takes the time it is asked at, so the
//! scheduling can be tested at any instant (daylight saving changes too).
//!
//! Time zones come from the IANA database built into the binary (jiff's
//! bundled copy), so a `FROM scratch` image needs no `/usr/share/zoneinfo`
//! and the configuration check reads no files.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

/// One daily window.
#[derive(Debug, Clone)]
pub struct Window {
    start: Time,
    end: Time,
    /// `None` is UTC (the default); else the zone's name as written.
    zone_name: Option<String>,
    zone: TimeZone,
}

/// Windows compare as written: same times, same zone name.
impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.start == other.start && self.end == other.end && self.zone_name == other.zone_name
    }
}

impl Eq for Window {}

/// `HH:MM`, 00:00 to 23:59.
fn parse_time(text: &str) -> Option<Time> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    Time::new(h, m, 0, 0).ok()
}

impl Window {
    /// Parses `"HH:MM-HH:MM"` or `"HH:MM-HH:MM ZONE"` (an IANA zone name
    /// like `Europe/Berlin`, or `UTC`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?}: {why}");
        let mut words = text.split_whitespace();
        let span = words.next().ok_or_else(|| {
            bad("expected \"HH:MM-HH:MM\", optionally followed by a time zone like Europe/Berlin")
        })?;
        let zone_name = words.next().map(str::to_owned);
        if words.next().is_some() {
            return Err(bad(
                "expected \"HH:MM-HH:MM\" and at most one time zone name",
            ));
        }
        let (start, end) = span
            .split_once('-')
            .and_then(|(a, b)| Some((parse_time(a)?, parse_time(b)?)))
            .ok_or_else(|| bad("expected \"HH:MM-HH:MM\" with times from 00:00 to 23:59"))?;
        if start == end {
            return Err(bad(
                "the window starts and ends at the same time; to allow pulls at any time, leave windows out",
            ));
        }
        let zone = match zone_name.as_deref() {
            None | Some("UTC") => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|_| {
                bad(&format!(
                    "unknown time zone {name:?}; use an IANA name like Europe/Berlin or America/New_York, or UTC"
                ))
            })?,
        };
        Ok(Self {
            start,
            end,
            zone_name,
            zone,
        })
    }

    /// The instances of the window that begin on `day` (its zone's date):
    /// `[start, end)`, ending the next day when it crosses midnight. `None`
    /// when daylight saving leaves it empty that day.
    fn on(&self, day: Date) -> Option<(Timestamp, Timestamp)> {
        let end_day = if self.end > self.start {
            day
        } else {
            day.tomorrow().ok()?
        };
        // A wall time skipped by a daylight saving change means the moment
        // after the gap, one that happens twice means the first (jiff's
        // "compatible" choice, as RFC 5545 calendars do).
        let start = day
            .to_datetime(self.start)
            .to_zoned_datetime(self.zone.clone())
            .ok()?
            .timestamp();
        let end = end_day
            .to_datetime(self.end)
            .to_zoned_datetime(self.zone.clone())
            .ok()?
            .timestamp();
        (start < end).then_some((start, end))
    }

    /// The window's instances that could contain or follow `at`.
    fn around(&self, at: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let today = at.to_zoned_datetime(self.zone.clone()).date();
        let mut days = vec![today];
        for step in [-1_i32, 1, 2] {
            let mut d = Some(today);
            for _ in 0..step.unsigned_abs() {
                d = d.and_then(|d| {
                    if step < 0 {
                        d.yesterday().ok()
                    } else {
                        d.tomorrow().ok()
                    }
                });
            }
            days.extend(d);
        }
        days.into_iter().filter_map(|d| self.on(d)).collect()
    }

    fn contains(&self, at: Timestamp) -> bool {
        self.around(at).iter().any(|(s, e)| *s <= at && at < *e)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )?;
        if let Some(z) = &self.zone_name {
            write!(f, " {z}")?;
        }
        Ok(())
    }
}

/// Whether scheduled pulls may start at `at`: inside any window, or always
/// when there are none.
pub fn is_open(windows: &[Window], at: Timestamp) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(at))
}

/// The next moment after `at` when [`is_open`] changes; `None` when it
/// never does (no windows, or windows that cover the whole day).
pub fn next_change(windows: &[Window], at: Timestamp) -> Option<Timestamp> {
    let now = is_open(windows, at);
    let mut edges: Vec<Timestamp> = windows
        .iter()
        .flat_map(|w| w.around(at))
        .flat_map(|(s, e)| [s, e])
        .filter(|t| *t > at)
        .collect();
    edges.sort_unstable();
    edges.dedup();
    edges.into_iter().find(|t| is_open(windows, *t) != now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> Window {
        Window::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// The windows `ws` next open or close after `at`, at `next`.
    #[track_caller]
    fn assert_next(ws: &[Window], at: &str, next: &str) {
        assert_eq!(next_change(ws, ts(at)), Some(ts(next)), "after {at}");
    }

    #[test]
    fn parses_and_prints() {
        for text in [
            "02:00-05:00",
            "22:30-01:15 Europe/Berlin",
            "00:00-23:59 UTC",
        ] {
            assert_eq!(w(text).to_string(), text);
        }
        assert_eq!(w("02:00-05:00"), w("02:00-05:00"));
        assert_ne!(w("02:00-05:00"), w("02:00-05:00 UTC"));
        for bad in [
            "",
            "2:00-05:00",
            "02:00",
            "02:00-05:00 Mars/Olympus",
            "02:00-05:00 Europe/Berlin extra",
            "24:00-05:00",
            "02:60-05:00",
            "03:00-03:00",
            "02:00-+5:00",
            "ab:cd-ef:gh",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn no_windows_means_always_open() {
        let at = ts("2026-03-01T12:00:00Z");
        assert!(is_open(&[], at));
        assert_eq!(next_change(&[], at), None);
    }

    #[test]
    fn a_utc_window() {
        let ws = [w("02:00-05:00")];
        assert!(!is_open(&ws, ts("2026-03-01T01:59:59Z")));
        assert!(is_open(&ws, ts("2026-03-01T02:00:00Z")));
        assert!(is_open(&ws, ts("2026-03-01T04:59:59Z")));
        assert!(!is_open(&ws, ts("2026-03-01T05:00:00Z")));
        assert_next(&ws, "2026-03-01T12:00:00Z", "2026-03-02T02:00:00Z");
        assert_next(&ws, "2026-03-01T03:00:00Z", "2026-03-01T05:00:00Z");
    }

    #[test]
    fn a_window_across_midnight() {
        let ws = [w("22:00-01:00")];
        assert!(is_open(&ws, ts("2026-03-01T23:30:00Z")));
        assert!(is_open(&ws, ts("2026-03-02T00:30:00Z")));
        assert!(!is_open(&ws, ts("2026-03-02T01:00:00Z")));
        assert!(!is_open(&ws, ts("2026-03-01T21:59:00Z")));
        assert_next(&ws, "2026-03-02T00:30:00Z", "2026-03-02T01:00:00Z");
        assert_next(&ws, "2026-03-02T01:00:00Z", "2026-03-02T22:00:00Z");
    }

    #[test]
    fn several_windows_join() {
        // Touching windows make one span: no change at 05:00.
        let ws = [w("02:00-05:00"), w("05:00-06:00"), w("20:00-21:00")];
        assert!(is_open(&ws, ts("2026-03-01T05:30:00Z")));
        assert_next(&ws, "2026-03-01T03:00:00Z", "2026-03-01T06:00:00Z");
        assert_next(&ws, "2026-03-01T07:00:00Z", "2026-03-01T20:00:00Z");
        // Windows that cover the whole day never close.
        let all_day = [w("00:00-12:00"), w("12:00-00:00")];
        assert!(is_open(&all_day, ts("2026-03-01T17:00:00Z")));
        assert_eq!(next_change(&all_day, ts("2026-03-01T17:00:00Z")), None);
    }

    #[test]
    fn a_named_zone_follows_daylight_saving() {
        let ws = [w("02:00-05:00 Europe/Berlin")];
        // Winter: UTC+1.
        assert!(is_open(&ws, ts("2026-01-15T01:00:00Z")));
        assert!(!is_open(&ws, ts("2026-01-15T04:00:00Z")));
        // Summer: UTC+2.
        assert!(is_open(&ws, ts("2026-07-15T00:00:00Z")));
        assert!(!is_open(&ws, ts("2026-07-15T03:00:00Z")));
        // 29 March 2026: 02:00 does not exist (clocks go to 03:00 CEST), so
        // the window opens at 03:00 CEST = 01:00 UTC and closes at 05:00 CEST.
        assert_next(&ws, "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z");
        assert_next(&ws, "2026-03-29T01:00:00Z", "2026-03-29T03:00:00Z");
        // 25 October 2026: 02:00-03:00 happens twice; the window opens at the
        // first 02:00 (CEST, 00:00 UTC) and closes at 05:00 CET (04:00 UTC).
        assert_next(&ws, "2026-10-24T12:00:00Z", "2026-10-25T00:00:00Z");
        assert_next(&ws, "2026-10-25T00:00:00Z", "2026-10-25T04:00:00Z");
    }

    #[test]
    fn a_window_in_the_skipped_hour_is_empty_that_day() {
        let ws = [w("02:00-03:00 Europe/Berlin")];
        // On 29 March 2026 both ends map to 03:00 CEST: no window that day.
        assert!(!is_open(&ws, ts("2026-03-29T01:00:00Z")));
        assert_next(&ws, "2026-03-28T12:00:00Z", "2026-03-30T00:00:00Z");
    }

    #[test]
    fn every_minute_of_a_day_agrees_with_next_change() {
        let ws = [w("23:00-01:30"), w("06:15-06:45 America/New_York")];
        let mut at = ts("2026-11-01T00:00:00Z");
        let end = ts("2026-11-03T00:00:00Z");
        while at < end {
            let open = is_open(&ws, at);
            let next = next_change(&ws, at).expect("these windows change");
            assert!(next > at);
            // Nothing changes before `next`, and it does change there.
            let before = next
                .checked_sub(jiff::SignedDuration::from_secs(1))
                .expect("in range");
            assert_eq!(is_open(&ws, before), open, "at {at}, next {next}");
            assert_ne!(is_open(&ws, next), open, "at {at}, next {next}");
            at = at
                .checked_add(jiff::SignedDuration::from_mins(7))
                .expect("in range");
        }
    }
}
