use super::*;

fn limited(decision: Decision) -> (Quota, Duration, Exceeded) {
    match decision {
        Decision::Limited {
            quota,
            retry_after,
            exceeded,
        } => (quota, retry_after, exceeded),
        Decision::Admitted(q) => panic!("expected a refusal, got {q:?}"),
    }
}

fn admitted(decision: Decision) -> Quota {
    match decision {
        Decision::Admitted(q) => q,
        other => panic!("expected admission, got {other:?}"),
    }
}

#[test]
fn rpm_refuses_until_the_oldest_request_leaves_the_window() {
    let t0 = Instant::now();
    let mut window = RateWindow::new(Limits {
        tpm: None,
        rpm: Some(2),
    });
    assert_eq!(admitted(window.admit(t0, 10)).remaining_requests, 1);
    let q = admitted(window.admit(t0 + Duration::from_secs(10), 10));
    assert_eq!(q.remaining_requests, 0);
    assert_eq!(q.reset_requests, Duration::from_secs(60));

    let (quota, retry, exceeded) = limited(window.admit(t0 + Duration::from_secs(15), 10));
    assert_eq!(exceeded, Exceeded::Requests);
    assert_eq!(retry, Duration::from_secs(45));
    assert_eq!(quota.reset_requests, Duration::from_secs(45));
    assert_eq!(quota.reset_tokens, Duration::ZERO);

    // A refused request is not counted: at exactly 60 s the first slot expires.
    let q = admitted(window.admit(t0 + Duration::from_secs(60), 10));
    assert_eq!(q.remaining_requests, 0);
}

#[test]
fn tpm_waits_until_enough_tokens_expire() {
    let t0 = Instant::now();
    let mut window = RateWindow::new(Limits {
        tpm: Some(100),
        rpm: None,
    });
    admitted(window.admit(t0, 30));
    admitted(window.admit(t0 + Duration::from_secs(1), 30));
    let q = admitted(window.admit(t0 + Duration::from_secs(2), 30));
    assert_eq!(q.remaining_tokens, 10);
    // 40 more needs 30 freed: the first slot, which leaves at t0+60s.
    let (_, retry, exceeded) = limited(window.admit(t0 + Duration::from_millis(2500), 40));
    assert_eq!(exceeded, Exceeded::Tokens);
    assert_eq!(retry, Duration::from_millis(57_500));
    // 70 needs 60 freed: the first two slots.
    let (_, retry, _) = limited(window.admit(t0 + Duration::from_secs(3), 70));
    assert_eq!(retry, Duration::from_secs(58));
    // More than the limit itself never fits.
    let (_, retry, _) = limited(window.admit(t0 + Duration::from_secs(3), 101));
    assert_eq!(retry, WINDOW);
    // After the window, everything is free again.
    let q = window.peek(t0 + Duration::from_secs(62));
    assert_eq!(q.remaining_tokens, 100);
    assert_eq!(q.reset_tokens, Duration::ZERO);
}

#[test]
fn both_limits_report_the_longer_wait() {
    let t0 = Instant::now();
    let mut window = RateWindow::new(Limits {
        tpm: Some(50),
        rpm: Some(1),
    });
    admitted(window.admit(t0, 10));
    let (quota, retry, exceeded) = limited(window.admit(t0 + Duration::from_secs(20), 60));
    assert_eq!(exceeded, Exceeded::Tokens);
    assert_eq!(retry, WINDOW);
    assert_eq!(quota.reset_requests, Duration::from_secs(40));
    assert_eq!(quota.remaining_requests, 0);
    assert_eq!(quota.remaining_tokens, 40);
}

#[test]
fn close_admissions_share_a_slot_and_limits_can_change() {
    let t0 = Instant::now();
    let mut window = RateWindow::new(Limits::default());
    for i in 0..1000 {
        admitted(window.admit(t0 + Duration::from_micros(i), 1));
    }
    assert_eq!(window.slots.len(), 1);
    window.set_limits(Limits {
        tpm: Some(1000),
        rpm: None,
    });
    let (_, retry, _) = limited(window.admit(t0 + Duration::from_secs(1), 1));
    assert_eq!(retry, Duration::from_secs(59));
}

#[test]
fn writes_headers_for_configured_limits_only() {
    let quota = Quota {
        limits: Limits {
            tpm: Some(1000),
            rpm: None,
        },
        remaining_requests: 0,
        remaining_tokens: 250,
        reset_requests: Duration::ZERO,
        reset_tokens: Duration::from_millis(1500),
    };
    let mut headers = HeaderMap::new();
    write_headers(&mut headers, &quota, Some(Duration::from_millis(1500)));
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(get("x-ratelimit-limit-tokens"), Some("1000"));
    assert_eq!(get("x-ratelimit-remaining-tokens"), Some("250"));
    assert_eq!(get("x-ratelimit-reset-tokens"), Some("1.5s"));
    assert_eq!(get("retry-after"), Some("2"));
    assert_eq!(get("retry-after-ms"), Some("1500"));
    assert_eq!(get("x-ratelimit-limit-requests"), None);
    assert_eq!(get("x-ratelimit-remaining-requests"), None);
}
