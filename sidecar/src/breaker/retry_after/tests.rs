use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};

use super::{MAX_RETRY_AFTER, retry_after};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let value = HeaderValue::from_str(value).expect("test header value");
        map.append(*name, value);
    }
    map
}

fn now() -> SystemTime {
    // 2024-05-01T00:00:00Z, a fixed wall clock.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_521_600)
}

fn parse(pairs: &[(&'static str, &str)]) -> Option<Duration> {
    retry_after(&headers(pairs), now())
}

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

#[test]
fn no_headers_is_none() {
    assert_eq!(parse(&[]), None);
    assert_eq!(parse(&[("content-type", "application/json")]), None);
}

#[test]
fn retry_after_ms_whole_and_fractional() {
    assert_eq!(parse(&[("retry-after-ms", "1500")]), ms(1500));
    assert_eq!(
        parse(&[("retry-after-ms", "12.5")]),
        Some(Duration::from_micros(12_500))
    );
    assert_eq!(parse(&[("retry-after-ms", " 7 ")]), ms(7));
    assert_eq!(parse(&[("retry-after-ms", "0")]), ms(0));
}

#[test]
fn x_ms_retry_after_ms() {
    assert_eq!(parse(&[("x-ms-retry-after-ms", "250")]), ms(250));
}

#[test]
fn retry_after_delta_seconds() {
    assert_eq!(parse(&[("retry-after", "30")]), ms(30_000));
    assert_eq!(parse(&[("retry-after", "1.5")]), ms(1_500));
    assert_eq!(parse(&[("retry-after", "0")]), ms(0));
}

#[test]
fn retry_after_http_date_future_and_past() {
    let future = httpdate::fmt_http_date(now() + Duration::from_secs(42));
    assert_eq!(parse(&[("retry-after", &future)]), ms(42_000));
    let past = httpdate::fmt_http_date(now() - Duration::from_secs(600));
    assert_eq!(parse(&[("retry-after", &past)]), ms(0));
    assert_eq!(
        parse(&[("retry-after", "Wed, 01 May 2024 00:01:00 GMT")]),
        ms(60_000)
    );
}

#[test]
fn openai_reset_durations() {
    let cases = [
        ("1s", 1_000),
        ("6m0s", 360_000),
        ("20ms", 20),
        ("1.5s", 1_500),
        ("1h2m3s", 3_723_000),
        ("2", 2_000),
        ("0.25", 250),
        ("1m30.5s", 90_500),
    ];
    for (text, want) in cases {
        assert_eq!(
            parse(&[("x-ratelimit-reset-requests", text)]),
            ms(want),
            "{text}"
        );
    }
    assert_eq!(
        parse(&[("x-ratelimit-reset-tokens", "500us")]),
        Some(Duration::from_micros(500))
    );
    assert_eq!(
        parse(&[("x-ratelimit-reset-tokens", "750ns")]),
        Some(Duration::from_nanos(750))
    );
}

#[test]
fn openai_resets_take_the_larger() {
    let both = [
        ("x-ratelimit-reset-requests", "2s"),
        ("x-ratelimit-reset-tokens", "6m0s"),
    ];
    assert_eq!(parse(&both), ms(360_000));
    let swapped = [
        ("x-ratelimit-reset-requests", "1m"),
        ("x-ratelimit-reset-tokens", "20ms"),
    ];
    assert_eq!(parse(&swapped), ms(60_000));
    let one_garbage = [
        ("x-ratelimit-reset-requests", "soon"),
        ("x-ratelimit-reset-tokens", "3s"),
    ];
    assert_eq!(parse(&one_garbage), ms(3_000));
}

#[test]
fn precedence_order() {
    let all = [
        ("x-ratelimit-reset-requests", "9s"),
        ("retry-after", "8"),
        ("x-ms-retry-after-ms", "7000"),
        ("retry-after-ms", "6000"),
    ];
    assert_eq!(parse(&all), ms(6_000));
    assert_eq!(parse(&all[..3]), ms(7_000));
    assert_eq!(parse(&all[..2]), ms(8_000));
    assert_eq!(parse(&all[..1]), ms(9_000));
}

#[test]
fn garbage_falls_through_to_next_header() {
    let cases: [&[(&'static str, &str)]; 3] = [
        &[("retry-after-ms", "abc"), ("retry-after", "4")],
        &[("retry-after-ms", "-5"), ("x-ms-retry-after-ms", "4000")],
        &[
            ("retry-after", "tomorrow"),
            ("x-ratelimit-reset-tokens", "4s"),
        ],
    ];
    for pairs in cases {
        assert_eq!(parse(pairs), ms(4_000), "{pairs:?}");
    }
}

#[test]
fn garbage_alone_is_none() {
    let bad = [
        "", "-1", "inf", "NaN", "1e3", "1..2", ".", "+3", "1 s", "3x", "s", "5mss", "1h-2m",
    ];
    for text in bad {
        for name in [
            "retry-after-ms",
            "x-ms-retry-after-ms",
            "retry-after",
            "x-ratelimit-reset-requests",
        ] {
            assert_eq!(parse(&[(name, text)]), None, "{name}: {text:?}");
        }
    }
}

#[test]
fn repeated_header_uses_first_usable_value() {
    let pairs = [("retry-after", "nope"), ("retry-after", "3")];
    assert_eq!(parse(&pairs), ms(3_000));
}

#[test]
fn non_utf8_value_is_skipped() {
    let mut map = HeaderMap::new();
    let bytes = HeaderValue::from_bytes(b"\xff\xfe").expect("opaque header value");
    map.insert("retry-after-ms", bytes);
    map.insert("retry-after", HeaderValue::from_static("2"));
    assert_eq!(retry_after(&map, now()), ms(2_000));
}

#[test]
fn huge_values_clamp_without_overflow() {
    let nines = "9".repeat(400);
    let huge_go = format!("{nines}h");
    let cases = [
        ("retry-after-ms", "18446744073709551616000"),
        ("retry-after", "99999999999999999999"),
        ("retry-after", nines.as_str()),
        ("x-ratelimit-reset-requests", huge_go.as_str()),
        ("x-ratelimit-reset-tokens", "9999999999h9999999999m"),
    ];
    for (name, value) in cases {
        assert_eq!(parse(&[(name, value)]), Some(MAX_RETRY_AFTER), "{name}");
    }
    let far_date = "Fri, 31 Dec 9999 23:59:59 GMT";
    assert_eq!(parse(&[("retry-after", far_date)]), Some(MAX_RETRY_AFTER));
}
