use super::*;

fn result(seq: u64, app: &str, ending: Ending) -> RequestResult {
    RequestResult {
        seq,
        request_id: format!("r{seq}"),
        app: app.to_owned(),
        stream: seq.is_multiple_of(2),
        ending,
        body_error: None,
        latency: Duration::from_millis(10 + seq),
        time_to_first_token: Some(Duration::from_millis(5)),
        backend: None,
        attempts: Some(1),
        usage: None,
    }
}

fn served(seq: u64, app: &str, status: u16, backend: &str, attempts: u32) -> RequestResult {
    RequestResult {
        backend: Some(backend.to_owned()),
        attempts: Some(attempts),
        usage: Some(Usage::totals(10, 3)),
        ..result(seq, app, Ending::Status(status))
    }
}

/// A mixed run: 2xx from two backends, a 429, a 503 after retries, transport errors.
fn mixed() -> Vec<RequestResult> {
    vec![
        served(0, "a", 200, "ptu", 1),
        served(1, "b", 200, "paygo", 2),
        served(2, "a", 200, "paygo", 1),
        served(3, "b", 429, "ptu", 1),
        served(4, "a", 503, "paygo", 3),
        result(5, "b", Ending::Error("connect")),
        result(6, "a", Ending::Error("timeout")),
        result(7, "a", Ending::Error("timeout")),
    ]
}

#[test]
fn counts_add_up() {
    let mut report = Report::default();
    for r in mixed() {
        report.add(&r);
    }
    assert_eq!(report.sent, 8);
    assert_eq!(report.sent, report.responses() + report.error_count());
    assert_eq!(
        report.by_status,
        BTreeMap::from([(200, 3), (429, 1), (503, 1)])
    );
    assert_eq!(
        report.errors,
        BTreeMap::from([("connect", 1), ("timeout", 2)])
    );
    assert_eq!(report.ok(), 3);
    let ok_per_backend: u64 = report.by_backend.values().map(|c| c.ok).sum();
    assert_eq!(
        ok_per_backend,
        report.ok(),
        "per-backend 2xx sum to the 2xx"
    );
    assert_eq!(
        report.by_backend["paygo"],
        BackendCounts {
            responses: 3,
            ok: 2
        }
    );
    assert_eq!(report.retried, 2, "attempts > 1");
    assert_eq!(report.streams, 4);
    assert_eq!(report.latency.count(), 5, "only responses have a latency");
    assert_eq!(report.ttft.count(), 2, "2xx streams only (seq 0 and 2)");
    assert_eq!(report.with_usage, 5);
    assert_eq!(report.usage.prompt_tokens, 50);
    let app_sent: u64 = report.by_app.values().map(|a| a.sent).sum();
    assert_eq!(app_sent, report.sent);
    let a = &report.by_app["a"];
    assert_eq!((a.sent, a.ok), (5, 2));
    assert_eq!(
        a.failures,
        BTreeMap::from([("503".to_owned(), 1), ("timeout".to_owned(), 2)])
    );
    assert_eq!(a.ok + a.failures.values().sum::<u64>(), a.sent);
}

#[test]
fn merging_two_halves_equals_one_report() {
    let (mut left, mut right, mut whole) =
        (Report::default(), Report::default(), Report::default());
    for (i, r) in mixed().iter().enumerate() {
        if i.is_multiple_of(2) {
            &mut left
        } else {
            &mut right
        }
        .add(r);
        whole.add(r);
    }
    left.elapsed = Duration::from_secs(2);
    right.elapsed = Duration::from_secs(3);
    whole.elapsed = Duration::from_secs(3);
    left.merge(&right);
    assert_eq!(left, whole);
}

#[test]
fn view_reports_percentiles_throughput_and_status_keys() {
    let mut report = Report::default();
    for seq in 0..100 {
        let mut r = served(seq, "a", 200, "ptu", 1);
        r.latency = Duration::from_millis(seq + 1);
        report.add(&r);
    }
    report.elapsed = Duration::from_secs(4);
    let view = ReportView::from(&report);
    assert_eq!(view.throughput_rps, 25.0);
    assert_eq!(view.latency_ms.count, 100);
    let p50 = view.latency_ms.p50.expect("p50");
    assert!((49.5..=50.5).contains(&p50), "{p50}");
    assert_eq!(view.latency_ms.max, Some(100.0));
    let json = serde_json::to_value(&view).expect("serializes");
    assert_eq!(json["byStatus"]["200"], 100);
    assert_eq!(json["byBackend"]["ptu"]["ok"], 100);
    assert_eq!(json["byApp"]["a"]["promptTokens"], 1000);
}

#[test]
fn an_empty_report_has_zero_throughput_and_no_percentiles() {
    let view = ReportView::from(&Report::default());
    assert_eq!((view.sent, view.throughput_rps), (0, 0.0));
    assert_eq!(view.latency_ms.p99, None);
}

#[test]
fn requests_without_an_app_are_counted_but_not_listed_per_app() {
    let mut report = Report::default();
    report.add(&served(0, "", 200, "ptu", 1));
    report.add(&result(1, "", Ending::Error("connect")));
    assert_eq!((report.sent, report.ok(), report.error_count()), (2, 1, 1));
    assert!(report.by_app.is_empty());
}
