use super::*;

fn status(code: u16) -> FaultSpec {
    FaultSpec {
        status: Some(code),
        ..FaultSpec::new(FaultMode::Status)
    }
}

fn never() -> f64 {
    0.99
}

#[test]
fn count_limited_fault_expires() {
    let mut set = FaultSet::default();
    let spec = FaultSpec {
        count: Some(2),
        ..status(503)
    };
    set.add(&[spec]).expect("valid");
    for _ in 0..2 {
        let action = set.select(false, never);
        assert!(
            matches!(action, Some(FaultAction::Status { status, .. }) if status == 503),
            "{action:?}"
        );
    }
    assert_eq!(set.select(false, never), None);
    assert!(set.list().is_empty());
}

#[test]
fn probability_uses_the_roll_and_does_not_consume_on_miss() {
    let mut set = FaultSet::default();
    let spec = FaultSpec {
        probability: Some(0.5),
        count: Some(1),
        ..status(500)
    };
    set.add(&[spec]).expect("valid");
    assert_eq!(set.select(false, || 0.7), None);
    assert_eq!(set.list()[0].remaining, Some(1));
    assert!(set.select(false, || 0.2).is_some());
    assert_eq!(set.select(false, || 0.0), None);
}

#[test]
fn stream_faults_skip_non_streaming_requests_and_vice_versa() {
    let mut set = FaultSet::default();
    let reset = FaultSpec {
        after_chunks: Some(3),
        count: Some(1),
        ..FaultSpec::new(FaultMode::ResetMidStream)
    };
    let json = FaultSpec {
        count: Some(1),
        ..FaultSpec::new(FaultMode::MalformedJson)
    };
    set.add(&[reset, json]).expect("valid");
    assert_eq!(set.select(false, never), Some(FaultAction::MalformedJson));
    assert_eq!(
        set.select(true, never),
        Some(FaultAction::ResetMidStream { after_chunks: 3 })
    );
    assert_eq!(set.select(true, never), None);
}

#[test]
fn unlimited_fault_stays_until_cleared() {
    let mut set = FaultSet::default();
    set.add(&[FaultSpec::new(FaultMode::ConnectionClose)])
        .expect("valid");
    for _ in 0..5 {
        assert_eq!(set.select(true, never), Some(FaultAction::ConnectionClose));
    }
    set.clear();
    assert_eq!(set.select(true, never), None);
}

#[test]
fn validation_names_the_problem() {
    let cases: Vec<(FaultSpec, &str)> = vec![
        (FaultSpec::new(FaultMode::Status), "needs `status`"),
        (status(200), "400..=599"),
        (
            FaultSpec {
                delay_ms: Some(5),
                ..status(500)
            },
            "`delayMs` applies only",
        ),
        (FaultSpec::new(FaultMode::SlowFirstByte), "needs `delayMs`"),
        (
            FaultSpec {
                probability: Some(1.5),
                ..status(500)
            },
            "probability",
        ),
        (
            FaultSpec {
                count: Some(0),
                ..status(500)
            },
            "count",
        ),
        (
            FaultSpec {
                headers: [("bad header".to_owned(), "x".to_owned())].into(),
                ..status(429)
            },
            "not a valid header name",
        ),
    ];
    for (spec, expected) in cases {
        let err = spec.validate().expect_err("invalid");
        assert!(err.contains(expected), "{err} should mention {expected}");
    }
}

#[test]
fn parses_posted_shapes() {
    let one =
        parse_posted(br#"{"mode":"status","status":429,"headers":{"retry-after-ms":"1500"}}"#)
            .expect("one");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].headers["retry-after-ms"], "1500");
    let list = parse_posted(br#"[{"mode":"malformedJson"},{"mode":"slowFirstByte","delayMs":10}]"#)
        .expect("list");
    assert_eq!(list.len(), 2);
    let wrapped =
        parse_posted(br#"{"faults":[{"mode":"connectionClose","count":1}]}"#).expect("wrapped");
    assert_eq!(wrapped[0].count, Some(1));
    let err = parse_posted(br#"[{"mode":"status"}]"#).expect_err("invalid");
    assert!(err.starts_with("faults[0]"), "{err}");
    let err = parse_posted(br#"{"mode":"nope"}"#).expect_err("unknown mode");
    assert!(err.contains("unknown variant"), "{err}");
    let err = parse_posted(br#"{"mode":"status","status":500,"extra":1}"#).expect_err("field");
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn status_fault_carries_parsed_headers() {
    let spec = FaultSpec {
        headers: [("retry-after-ms".to_owned(), "1500".to_owned())].into(),
        message: Some("busy".into()),
        ..status(429)
    };
    let Ok(FaultAction::Status {
        status,
        headers,
        message,
    }) = spec.action()
    else {
        panic!("status action expected");
    };
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[0].0.as_str(), "retry-after-ms");
    assert_eq!(headers[0].1, "1500");
    assert_eq!(message.as_deref(), Some("busy"));
}
