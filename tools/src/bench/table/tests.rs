use super::*;

#[test]
fn median_of_odd_and_even_counts_ignores_nan() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
}

#[test]
fn values_print_in_their_unit() {
    assert_eq!(format_value(85.4, Unit::Micros), "85µs");
    assert_eq!(format_value(1250.0, Unit::Micros), "1.25ms");
    assert_eq!(format_value(2_500_000.0, Unit::Micros), "2.50s");
    assert_eq!(format_value(5120.7, Unit::PerSecond), "5,120/s");
    assert_eq!(format_value(99.94, Unit::Percent), "99.9%");
    assert_eq!(format_value(0.0421, Unit::CpuPer1k), "0.042 s");
    assert_eq!(format_value(12.34, Unit::MiB), "12.3 MiB");
    assert_eq!(format_value(64.0, Unit::Count), "64");
}

fn sample() -> Results {
    let mut results = Results::new();
    let p50 = Metric::added("a. one at a time", "latency p50", Unit::Micros)
        .with_target(Target::AddedAtMost(100.0));
    let p99 = Metric::added("a. one at a time", "latency p99", Unit::Micros)
        .with_target(Target::AddedAtMost(300.0));
    let rps = Metric::added("c. closed loop", "max RPS", Unit::PerSecond)
        .with_target(Target::AtLeast(5000.0));
    let rss = Metric::plain("resources", "RSS idle", Unit::MiB).with_target(Target::AtMost(20.0));
    for (direct, gateway) in [(100.0, 150.0), (110.0, 190.0), (90.0, 170.0)] {
        results.record(&p50, Side::Direct, direct);
        results.record(&p50, Side::Gateway, gateway);
        results.record(&p99, Side::Direct, direct * 3.0);
        results.record(&p99, Side::Gateway, gateway * 4.0);
    }
    results.record(&rps, Side::Direct, 9000.0);
    results.record(&rps, Side::Gateway, 6000.0);
    results.record(&rss, Side::Gateway, 9.5);
    results
}

#[test]
fn rows_take_medians_and_judge_targets() {
    let results = sample();
    assert_eq!(results.len(), 4);
    assert_eq!(
        results.median_of("a. one at a time", "latency p50", Side::Direct),
        Some(100.0)
    );
    assert_eq!(
        results.median_of("a. one at a time", "latency p50", Side::Gateway),
        Some(170.0)
    );
    // p50 added 70 ≤ 100 met; p99 added 680 − 300 = 380 > 300 not met; rps met; rss met.
    assert_eq!(results.targets(), (3, 1, 0));
}

#[test]
fn render_prints_one_markdown_row_per_metric() {
    let text = sample().render();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 + 4, "{text}");
    assert_eq!(
        lines[2],
        "| a. one at a time | latency p50 | 100µs | 170µs | +70µs | added ≤ 100µs | yes |"
    );
    assert_eq!(
        lines[3],
        "|  | latency p99 | 300µs | 680µs | +380µs | added ≤ 300µs | **no** |"
    );
    assert_eq!(
        lines[4],
        "| c. closed loop | max RPS | 9,000/s | 6,000/s | -3,000/s | ≥ 5,000/s | yes |"
    );
    assert_eq!(
        lines[5],
        "| resources | RSS idle | - | 9.5 MiB | - | ≤ 20.0 MiB | yes |"
    );
}

#[test]
fn a_target_without_samples_is_not_measured() {
    let mut results = Results::new();
    let ttft = Metric::added("d. streams", "TTFT p50", Unit::Micros)
        .with_target(Target::AddedAtMost(200.0));
    results.record(&ttft, Side::Gateway, 500.0);
    assert_eq!(results.targets(), (0, 0, 1));
    assert!(results.render().contains("| n/a |"));
}
