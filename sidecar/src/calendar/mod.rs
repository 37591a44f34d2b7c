//! UTC calendar windows for calendar quotas, and the counter of one window.
//!
//! Input: a [`QuotaPeriod`] and the wall-clock time as Unix milliseconds (injected). Output:
//! the [`Window`] that contains it — `[start, end)`, so an instant exactly on a boundary
//! belongs to the window that starts there. Hours and days are fixed lengths (UTC has no
//! DST; leap seconds are not counted by Unix time); weeks start on Monday 00:00; months use
//! the proleptic Gregorian calendar (month lengths, leap years), computed with Howard
//! Hinnant's `days_from_civil` / `civil_from_days`. Inputs are clamped to ±2^50 ms (about
//! ±35 000 years) so nothing overflows.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use spillway_crds::snapshot::QuotaPeriod;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;
const LIMIT_MS: i64 = 1 << 50;

/// A calendar window `[start_ms, end_ms)` in Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First millisecond inside.
    pub start_ms: i64,
    /// First millisecond of the next window.
    pub end_ms: i64,
}

/// The window of `period` containing `unix_ms`.
pub fn window(period: QuotaPeriod, unix_ms: i64) -> Window {
    let at = unix_ms.clamp(-LIMIT_MS, LIMIT_MS);
    match period {
        QuotaPeriod::Hourly => fixed(at, MS_PER_HOUR),
        QuotaPeriod::Daily => fixed(at, MS_PER_DAY),
        QuotaPeriod::Weekly => {
            let day = at.div_euclid(MS_PER_DAY);
            // 1970-01-01 was a Thursday: 3 days after a Monday.
            let monday = day - (day + 3).rem_euclid(7);
            Window {
                start_ms: monday * MS_PER_DAY,
                end_ms: (monday + 7) * MS_PER_DAY,
            }
        }
        QuotaPeriod::Monthly => {
            let (year, month, _) = civil_from_days(at.div_euclid(MS_PER_DAY));
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            Window {
                start_ms: days_from_civil(year, month, 1) * MS_PER_DAY,
                end_ms: days_from_civil(next_year, next_month, 1) * MS_PER_DAY,
            }
        }
    }
}

fn fixed(at: i64, length: i64) -> Window {
    let start_ms = at.div_euclid(length) * length;
    Window {
        start_ms,
        end_ms: start_ms + length,
    }
}

/// Days since 1970-01-01 of the civil date `year-month-day` (month 1–12).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month 1–12, day 1–31)` of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // In range by construction: month 1–12, day 1–31.
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// Unix milliseconds of a wall-clock time (negative before 1970), saturating.
pub fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The wall-clock time of Unix milliseconds.
pub fn system_time(unix_ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(unix_ms.unsigned_abs());
    let moved = if unix_ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    moved.unwrap_or(UNIX_EPOCH)
}

/// RFC 3339 UTC text of Unix milliseconds, to the second: `2024-03-01T00:00:00Z`.
pub fn format_utc(unix_ms: i64) -> String {
    let at = unix_ms.clamp(-LIMIT_MS, LIMIT_MS);
    let (year, month, day) = civil_from_days(at.div_euclid(MS_PER_DAY));
    let secs = at.rem_euclid(MS_PER_DAY) / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Tokens used in one calendar window of one quota: 16 bytes. A counter whose window has
/// passed reads as zero and restarts on the next use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounter {
    /// End of the window the count belongs to (identifies it).
    end_ms: i64,
    used: u64,
}

impl WindowCounter {
    /// Tokens used in `window`.
    pub fn used(&self, window: Window) -> u64 {
        if self.end_ms == window.end_ms {
            self.used
        } else {
            0
        }
    }

    /// Whether `amount` more fits under `capacity` in `window`. An amount above the capacity
    /// fits only an unused window, so a request bigger than the whole quota can still run once
    /// per period.
    pub fn fits(&self, window: Window, capacity: u64, amount: u64) -> bool {
        self.used(window).saturating_add(amount.min(capacity)) <= capacity
    }

    /// Whether `amount` more fits under `capacity` in `window`, with no exception for an
    /// amount above the capacity: money budgets are never overspent.
    pub fn fits_within(&self, window: Window, capacity: u64, amount: u64) -> bool {
        self.used(window).saturating_add(amount) <= capacity
    }

    /// Counts `amount` in `window` (starting it over when the window changed).
    pub fn add(&mut self, window: Window, amount: u64) {
        if self.end_ms != window.end_ms {
            *self = Self {
                end_ms: window.end_ms,
                used: 0,
            };
        }
        self.used = self.used.saturating_add(amount);
    }

    /// A true-up for a call admitted in `window`: returns `refund` or charges `extra`, only
    /// while that window is still the counter's (a later window owes nothing for it).
    pub fn adjust(&mut self, window: Window, refund: u64, extra: u64) {
        if self.end_ms == window.end_ms {
            self.used = self.used.saturating_sub(refund).saturating_add(extra);
        }
    }

    /// Whether the counter still holds usage at `unix_ms` (else it can be forgotten).
    pub fn is_live(&self, unix_ms: i64) -> bool {
        self.used > 0 && unix_ms < self.end_ms
    }
}

#[cfg(test)]
mod tests;
