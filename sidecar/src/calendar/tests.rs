use std::time::{Duration, UNIX_EPOCH};

use super::{
    QuotaPeriod, Window, WindowCounter, civil_from_days, days_from_civil, format_utc, system_time,
    unix_ms, window,
};

/// Unix ms of a UTC date and time.
fn at(year: i64, month: u32, day: u32, hour: i64, minute: i64, second: i64) -> i64 {
    days_from_civil(year, month, day) * 86_400_000 + ((hour * 60 + minute) * 60 + second) * 1000
}

fn text(w: Window) -> (String, String) {
    (format_utc(w.start_ms), format_utc(w.end_ms))
}

fn pair(start: &str, end: &str) -> (String, String) {
    (start.to_owned(), end.to_owned())
}

#[test]
fn civil_date_round_trips_over_four_centuries() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    for days in (-200_000..200_000).step_by(7) {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
    }
}

#[test]
fn hourly_and_daily_windows_start_on_the_boundary() {
    let t = at(2025, 6, 15, 13, 45, 10);
    assert_eq!(
        text(window(QuotaPeriod::Hourly, t)),
        pair("2025-06-15T13:00:00Z", "2025-06-15T14:00:00Z")
    );
    assert_eq!(
        text(window(QuotaPeriod::Daily, t)),
        pair("2025-06-15T00:00:00Z", "2025-06-16T00:00:00Z")
    );
}

#[test]
fn a_clock_exactly_on_the_edge_is_in_the_new_window() {
    let midnight = at(2025, 3, 1, 0, 0, 0);
    for period in [
        QuotaPeriod::Hourly,
        QuotaPeriod::Daily,
        QuotaPeriod::Weekly,
        QuotaPeriod::Monthly,
    ] {
        // 2025-03-01 is a Saturday, so use a Monday for the weekly case.
        let edge = if period == QuotaPeriod::Weekly {
            at(2025, 3, 3, 0, 0, 0)
        } else {
            midnight
        };
        let w = window(period, edge);
        assert_eq!(w.start_ms, edge, "{period:?}");
        let before = window(period, edge - 1);
        assert_eq!(before.end_ms, edge, "{period:?}");
    }
}

#[test]
fn weeks_start_on_monday() {
    // 2025-01-01 was a Wednesday; its week is Mon 2024-12-30 .. Mon 2025-01-06.
    let w = window(QuotaPeriod::Weekly, at(2025, 1, 1, 12, 0, 0));
    assert_eq!(
        text(w),
        pair("2024-12-30T00:00:00Z", "2025-01-06T00:00:00Z")
    );
    // Sunday 23:59:59 is still the same week, Monday 00:00 the next.
    let sunday = at(2025, 1, 5, 23, 59, 59);
    assert_eq!(window(QuotaPeriod::Weekly, sunday), w);
    let monday = at(2025, 1, 6, 0, 0, 0);
    assert_eq!(window(QuotaPeriod::Weekly, monday).start_ms, monday);
    // The epoch itself (a Thursday).
    let epoch = window(QuotaPeriod::Weekly, 0);
    assert_eq!(
        text(epoch),
        pair("1969-12-29T00:00:00Z", "1970-01-05T00:00:00Z")
    );
}

#[test]
fn months_have_their_own_lengths() {
    let month = |y, m, d| text(window(QuotaPeriod::Monthly, at(y, m, d, 23, 59, 59)));
    // Jan 31 → Feb.
    assert_eq!(
        month(2025, 1, 31),
        pair("2025-01-01T00:00:00Z", "2025-02-01T00:00:00Z")
    );
    // February of a common year: 28 days.
    assert_eq!(
        month(2025, 2, 28),
        pair("2025-02-01T00:00:00Z", "2025-03-01T00:00:00Z")
    );
    // Feb 29 of leap years, including a century divisible by 400.
    assert_eq!(
        month(2024, 2, 29),
        pair("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z")
    );
    assert_eq!(
        month(2000, 2, 29),
        pair("2000-02-01T00:00:00Z", "2000-03-01T00:00:00Z")
    );
    // 2100 is not a leap year: Feb 28 is the last day.
    let w = window(QuotaPeriod::Monthly, at(2100, 2, 28, 0, 0, 0));
    assert_eq!(w.end_ms - w.start_ms, 28 * 86_400_000);
    // 30-day months.
    assert_eq!(
        month(2025, 4, 30),
        pair("2025-04-01T00:00:00Z", "2025-05-01T00:00:00Z")
    );
    // Dec → Jan of the next year.
    assert_eq!(
        month(2025, 12, 31),
        pair("2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z")
    );
}

#[test]
fn the_year_boundary_moves_every_period() {
    let last = at(2025, 12, 31, 23, 59, 59) + 999;
    let first = last + 1;
    for period in [
        QuotaPeriod::Hourly,
        QuotaPeriod::Daily,
        QuotaPeriod::Monthly,
    ] {
        assert_eq!(window(period, last).end_ms, first, "{period:?}");
        assert_eq!(window(period, first).start_ms, first, "{period:?}");
    }
    // 2026-01-01 is a Thursday: the week spans the boundary.
    assert_eq!(
        text(window(QuotaPeriod::Weekly, first)),
        pair("2025-12-29T00:00:00Z", "2026-01-05T00:00:00Z")
    );
}

#[test]
fn extreme_inputs_do_not_panic() {
    for period in [
        QuotaPeriod::Hourly,
        QuotaPeriod::Daily,
        QuotaPeriod::Weekly,
        QuotaPeriod::Monthly,
    ] {
        for t in [i64::MIN, -1, 0, i64::MAX] {
            let w = window(period, t);
            assert!(w.start_ms < w.end_ms);
        }
    }
    assert!(!format_utc(i64::MAX).is_empty());
}

#[test]
fn wall_time_conversions() {
    assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_500)), 1_500);
    assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(1_500)), -1_500);
    assert_eq!(
        system_time(1_500),
        UNIX_EPOCH + Duration::from_millis(1_500)
    );
    assert_eq!(
        system_time(-1_500),
        UNIX_EPOCH - Duration::from_millis(1_500)
    );
}

#[test]
fn a_window_counter_restarts_with_each_window_and_trues_up_only_its_own() {
    let day1 = window(QuotaPeriod::Daily, at(2025, 5, 1, 10, 0, 0));
    let day2 = window(QuotaPeriod::Daily, at(2025, 5, 2, 10, 0, 0));
    let mut counter = WindowCounter::default();
    assert!(counter.fits(day1, 1_000, 1_000));
    counter.add(day1, 900);
    assert!(counter.fits(day1, 1_000, 100));
    assert!(!counter.fits(day1, 1_000, 101));
    // An amount above the capacity fits only an unused window.
    assert!(!counter.fits(day1, 1_000, 5_000));
    assert!(counter.fits(day2, 1_000, 5_000));
    counter.adjust(day1, 400, 0);
    assert_eq!(counter.used(day1), 500);
    counter.adjust(day1, 0, 50);
    assert_eq!(counter.used(day1), 550);
    assert!(counter.is_live(day1.end_ms - 1));
    assert!(!counter.is_live(day1.end_ms));
    // Day 2 starts from zero; a late true-up for day 1 does not touch it.
    counter.add(day2, 10);
    counter.adjust(day1, 0, 999);
    assert_eq!(counter.used(day2), 10);
    assert_eq!(counter.used(day1), 0);
}
