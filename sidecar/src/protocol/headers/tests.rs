//! Delay headers: rounding up, the minimum of one unit, and OpenAI's reset format.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn retry_after_header_rendering() {
    let cases = [
        (ms(1), 1, 1),
        (Duration::from_nanos(1), 1, 1),
        (Duration::ZERO, 1, 1),
        (ms(2_100), 3, 2_100),
        (Duration::from_secs(5), 5, 5_000),
        (Duration::from_micros(1_500), 1, 2),
    ];
    for (delay, secs, millis) in cases {
        assert_eq!(retry_after_secs(delay), secs, "{delay:?}");
        assert_eq!(retry_after_ms(delay), millis, "{delay:?}");
    }
    assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
}

#[test]
fn retry_after_rounds_up_so_waiting_it_is_never_early() {
    let mut headers = HeaderMap::new();
    insert_retry_after(&mut headers, Duration::from_nanos(4_285_714_286));
    assert_eq!(headers["retry-after-ms"], "4286");
    assert_eq!(headers["retry-after"], "5");
    insert_retry_after(&mut headers, Duration::from_micros(10));
    assert_eq!(headers["retry-after-ms"], "1");
    assert_eq!(headers["retry-after"], "1");
    insert_retry_after(&mut headers, ms(2_000));
    assert_eq!(headers["retry-after-ms"], "2000");
    assert_eq!(headers["retry-after"], "2");
}

#[test]
fn reset_durations_read_like_openais() {
    assert_eq!(reset_duration(ms(0)), "0ms");
    assert_eq!(reset_duration(ms(250)), "250ms");
    assert_eq!(reset_duration(ms(1000)), "1s");
    assert_eq!(reset_duration(ms(8640)), "8.64s");
    assert_eq!(reset_duration(ms(360_000)), "6m0s");
    assert_eq!(reset_duration(ms(90_500)), "1m30.5s");
    assert_eq!(reset_duration(ms(3_723_000)), "1h2m3s");
}
