//! Human-readable forms of a [`Report`]: the final text report of `spillway loadtest` and
//! its one-line progress. Pure string building; the caller decides where it goes.

use std::fmt::Write as _;
use std::time::Duration;

use super::histogram::Histogram;
use super::report::Report;
use super::runner::StopReason;

/// `850µs`, `12.3ms`, `1.25s`; `-` for none.
pub fn duration(value: Option<Duration>) -> String {
    match value {
        None => "-".to_owned(),
        Some(d) if d < Duration::from_millis(1) => format!("{}µs", d.as_micros()),
        Some(d) if d < Duration::from_secs(1) => format!("{:.1}ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.2}s", d.as_secs_f64()),
    }
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percentiles(h: &Histogram) -> String {
    format!(
        "p50 {}  p90 {}  p99 {}  max {}",
        duration(h.quantile(0.5)),
        duration(h.quantile(0.9)),
        duration(h.quantile(0.99)),
        duration(h.max())
    )
}

fn join_counts<K: std::fmt::Display, V: std::fmt::Display>(
    items: impl IntoIterator<Item = (K, V)>,
) -> String {
    let parts: Vec<String> = items
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join("  ")
    }
}

/// The progress line: elapsed, sent, ok, failed, throughput, p50/p99.
pub fn progress(report: &Report) -> String {
    format!(
        "[{:>6.1}s] sent {}  ok {}  not ok {}  {:.1} req/s  p50 {}  p99 {}",
        report.elapsed.as_secs_f64(),
        report.sent,
        report.ok(),
        report.sent - report.ok(),
        report.throughput(),
        duration(report.latency.quantile(0.5)),
        duration(report.latency.quantile(0.99)),
    )
}

/// The final report, several lines, ending with a newline.
pub fn text(report: &Report, endpoint: &str, stopped_by: StopReason) -> String {
    let mut out = String::new();
    let reason = match stopped_by {
        StopReason::Count => "all requests sent",
        StopReason::Duration => "duration reached",
        StopReason::Stopped => "stopped",
    };
    let _ = writeln!(
        out,
        "spillway loadtest → {endpoint}\n  ended: {reason} after {:.2}s",
        report.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  requests:   sent {}  responses {}  no response {}  streams {}  retried/spilled {}",
        report.sent,
        report.responses(),
        report.error_count(),
        report.streams,
        report.retried
    );
    let _ = writeln!(out, "  throughput: {:.1} req/s", report.throughput());
    let _ = writeln!(out, "  status:     {}", join_counts(&report.by_status));
    let _ = writeln!(out, "  latency:    {}", percentiles(&report.latency));
    let _ = writeln!(
        out,
        "  ttft:       p50 {}  p99 {}  ({} streams)",
        duration(report.ttft.quantile(0.5)),
        duration(report.ttft.quantile(0.99)),
        report.ttft.count()
    );
    let backends = report
        .by_backend
        .iter()
        .map(|(name, c)| (name, format!("{} (ok {})", c.responses, c.ok)));
    let _ = writeln!(out, "  backends:   {}", join_counts(backends));
    apps(&mut out, report);
    let _ = writeln!(
        out,
        "  tokens:     prompt {}  completion {}  (from {} responses that reported usage)",
        thousands(report.usage.prompt_tokens),
        thousands(report.usage.completion_tokens),
        report.with_usage
    );
    let _ = writeln!(out, "  errors:     {}", join_counts(&report.errors));
    if !report.body_errors.is_empty() {
        let _ = writeln!(out, "  broken bodies: {}", join_counts(&report.body_errors));
    }
    out
}

fn apps(out: &mut String, report: &Report) {
    for (app, stats) in &report.by_app {
        let _ = writeln!(
            out,
            "  app {app}: sent {}  ok {}  failures {}  tokens {}/{}  p50 {}  p99 {}",
            stats.sent,
            stats.ok,
            join_counts(&stats.failures),
            thousands(stats.usage.prompt_tokens),
            thousands(stats.usage.completion_tokens),
            duration(stats.latency.quantile(0.5)),
            duration(stats.latency.quantile(0.99)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(Duration::from_micros(850))), "850µs");
        assert_eq!(duration(Some(Duration::from_micros(12_345))), "12.3ms");
        assert_eq!(duration(Some(Duration::from_millis(1250))), "1.25s");
    }

    #[test]
    fn the_text_report_names_every_section() {
        let mut report = Report::default();
        report.by_status.insert(200, 3);
        report.sent = 4;
        report.errors.insert("timeout", 1);
        let text = text(&report, "http://x/v1/chat/completions", StopReason::Count);
        for needle in [
            "all requests sent",
            "sent 4  responses 3  no response 1",
            "status:     200: 3",
            "errors:     timeout: 1",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
        }
    }
}
