use std::time::Duration;

use spillway_crds::snapshot::CalendarQuotaConfig;

use super::super::tests::{ManualClock, T0, admitted, call, limiter, quota, tpm};
use super::*;
use crate::limiter::Used;

fn levels(limiter: &Limiter) -> Vec<(String, String, &'static str, u64)> {
    let mut out = Vec::new();
    limiter.quota_levels(&mut out);
    let mut rows: Vec<_> = out
        .into_iter()
        .map(|l| (l.app_id, l.quota, l.window, l.remaining_tokens))
        .collect();
    rows.sort();
    rows
}

fn row(
    app: &str,
    quota: &str,
    window: &'static str,
    left: u64,
) -> (String, String, &'static str, u64) {
    (app.to_owned(), quota.to_owned(), window, left)
}

#[tokio::test]
async fn reports_tokens_left_per_app_quota_and_window() {
    let clock = ManualClock::at(T0);
    let mut daily = quota("trial", Some("bot"));
    daily.calendar = vec![CalendarQuotaConfig {
        period: QuotaPeriod::Daily,
        tokens: 5_000,
    }];
    let limiter = limiter(
        &clock,
        vec![
            tpm("web", Some("web"), 60_000),
            daily,
            tpm("default", None, 1_000),
        ],
    );
    // Before any traffic: the apps' own quotas are full, the default one has no app yet.
    assert_eq!(
        levels(&limiter),
        vec![
            row("bot", "trial", "day", 5_000),
            row("web", "web", "minute", 60_000)
        ]
    );
    admitted(&limiter, &call("web", 900, Some(100)))
        .await
        .settle(&Used::tokens(1_000));
    admitted(&limiter, &call("bot", 1_500, Some(500)))
        .await
        .settle(&Used::tokens(1_200));
    let pending = admitted(&limiter, &call("other", 200, Some(100))).await;
    assert_eq!(
        levels(&limiter),
        vec![
            row("bot", "trial", "day", 3_800),
            row("other", "default", "minute", 700),
            row("web", "web", "minute", 59_000),
        ]
    );
    // The bucket refills continuously (1 000 tokens per second at 60 000 per minute); the
    // daily window does not.
    clock.advance(Duration::from_millis(500));
    pending.settle(&Used::tokens(300));
    let now = levels(&limiter);
    assert_eq!(now[0], row("bot", "trial", "day", 3_800));
    assert_eq!(now[1], row("other", "default", "minute", 708));
    assert_eq!(now[2], row("web", "web", "minute", 59_500));
}

#[tokio::test]
async fn a_used_up_window_reports_zero_and_a_new_day_is_full() {
    let clock = ManualClock::at(T0);
    let mut daily = quota("trial", Some("bot"));
    daily.calendar = vec![CalendarQuotaConfig {
        period: QuotaPeriod::Daily,
        tokens: 1_000,
    }];
    let limiter = limiter(&clock, vec![daily]);
    admitted(&limiter, &call("bot", 900, Some(100)))
        .await
        .settle(&Used::tokens(1_200));
    assert_eq!(levels(&limiter), vec![row("bot", "trial", "day", 0)]);
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(levels(&limiter), vec![row("bot", "trial", "day", 1_000)]);
}

#[tokio::test]
async fn a_bucket_in_debt_reports_zero_and_no_quota_reports_nothing() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("small", Some("a"), 600)]);
    admitted(&limiter, &call("a", 500, Some(100)))
        .await
        .settle(&Used::tokens(2_000));
    assert_eq!(levels(&limiter), vec![row("a", "small", "minute", 0)]);
    let none = Limiter::new(clock.clone());
    assert!(levels(&none).is_empty());
}

#[tokio::test]
async fn levels_are_this_sidecars_share() {
    let clock = ManualClock::at(T0);
    let mut shared = tpm("shared", Some("a"), 9_000);
    shared.share = 1.0 / 3.0;
    let limiter = limiter(&clock, vec![shared]);
    assert_eq!(levels(&limiter), vec![row("a", "shared", "minute", 3_000)]);
}
