use std::time::Duration;

use super::{BUCKETS, Totals, Window};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn window_forgets_old_buckets_and_keeps_totals() {
    let mut window = Window::new(secs(32));
    assert_eq!(window.add(secs(0), true).failures, 1);
    assert_eq!(window.add(secs(10), false).requests, 2);
    // 31.5 s later the first bucket is still inside; at 32 s it is gone.
    assert_eq!(
        window.add(ms(31_500), false),
        Totals {
            requests: 3,
            failures: 1
        }
    );
    assert_eq!(
        window.add(secs(32), false),
        Totals {
            requests: 3,
            failures: 0
        }
    );
    // A gap longer than the interval forgets everything.
    assert_eq!(window.add(secs(1_000), true).requests, 1);
    // An event older than the head (threads racing) counts in the newest bucket.
    assert_eq!(window.add(secs(999), true).failures, 2);
}

#[test]
fn window_memory_is_fixed_under_heavy_traffic() {
    let mut window = Window::new(secs(3_600));
    let mut totals = window.add(Duration::ZERO, false);
    // 200k events over two simulated hours (one every 36 ms).
    for i in 0..200_000_u64 {
        totals = window.add(ms(i * 36), i % 10 == 0);
    }
    assert!(size_of::<Window>() <= 64 + BUCKETS * 16);
    // Only the last hour (±1 bucket) is counted: about 100k requests, 10% failures.
    assert!((96_000..=100_001).contains(&totals.requests), "{totals:?}");
    assert!((9_600..=10_001).contains(&totals.failures), "{totals:?}");
}
