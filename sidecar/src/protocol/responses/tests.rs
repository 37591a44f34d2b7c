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

#[test]
fn finds_the_finished_object_in_json_or_a_resumed_stream() {
    let json = br#"{"id":"r","status":"completed","usage":{"input_tokens":3,"output_tokens":4}}"#;
    assert_eq!(finished_object(json).as_deref(), Some(&json[..]));
    assert_eq!(
        finished_object(br#"{"id":"r","status":"in_progress"}"#),
        None
    );
    let sse = concat!(
        "event: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"response\":{\"id\":\"r\",\"status\":\"in_progress\"}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}\n\n",
    );
    let object = finished_object(sse.as_bytes()).expect("completed event");
    assert!(finished(&object));
    assert!(String::from_utf8_lossy(&object).contains("\"output_tokens\":4"));
    assert_eq!(
        finished_object(&sse.as_bytes()[..120]),
        None,
        "cut before it finished"
    );
}
