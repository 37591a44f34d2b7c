use super::*;

#[test]
fn reads_the_created_response() {
    let json =
        br#"{"id":"resp_1","object":"response","status":"queued","background":true,"output":[]}"#;
    assert_eq!(
        created(json, false),
        Some(Created {
            id: "resp_1".into(),
            background: true
        })
    );
    let sse = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_2\",\"status\":\"in_progress\"}}\n\n";
    assert_eq!(
        created(sse, true),
        Some(Created {
            id: "resp_2".into(),
            background: false
        })
    );
    for bad in [&b"{}"[..], b"not json", b"{\"id\":\"\"}", b"{\"id\":1}"] {
        assert_eq!(created(bad, false), None);
    }
    assert_eq!(
        created(b"data: {\"type\":\"x\"}\n\ndata: {\"resp", true),
        None
    );
}

#[test]
fn knows_when_a_response_finished() {
    for (status, done) in [
        ("queued", false),
        ("in_progress", false),
        ("completed", true),
        ("failed", true),
        ("incomplete", true),
        ("cancelled", true),
    ] {
        let body = format!(r#"{{"id":"r","status":"{status}"}}"#);
        assert_eq!(finished(body.as_bytes()), done, "{status}");
    }
    assert!(!finished(b"{}"));
}
