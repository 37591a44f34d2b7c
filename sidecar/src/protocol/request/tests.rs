use serde_json::{Value, json};

use super::*;

fn info(body: &str) -> RequestInfo {
    inspect(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn err(body: &[u8]) -> InspectError {
    match inspect(body) {
        Ok(info) => panic!("{}: accepted as {info:?}", String::from_utf8_lossy(body)),
        Err(e) => e,
    }
}

#[test]
fn reads_a_chat_request() {
    let got = info(
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,
           "stream_options":{"include_usage":false},"max_tokens":256,"n":2,"temperature":0.2,
           "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}"#,
    );
    assert_eq!(got.model.as_deref(), Some("gpt-4o"));
    assert!(got.stream);
    assert_eq!(got.include_usage, Some(false));
    assert!(got.has_stream_options);
    assert!(!got.client_wants_usage());
    assert_eq!(got.max_tokens, Some(256));
    assert_eq!(got.n, Some(2));
}

#[test]
fn defaults_and_nulls_are_absent() {
    for body in [
        "{}",
        r#"{"model":null,"stream":null,"max_tokens":null,"n":null}"#,
    ] {
        let got = info(body);
        assert_eq!(got.model, None, "{body}");
        assert!(!got.stream, "{body}");
        assert_eq!(got.include_usage, None, "{body}");
        assert!(!got.has_stream_options, "{body}");
        assert_eq!(got.max_tokens, None, "{body}");
        assert_eq!(got.n, None, "{body}");
    }
    let got = info(r#"{"stream":true,"stream_options":null}"#);
    assert!(got.has_stream_options);
    assert_eq!(got.include_usage, None);
    let got = info(r#"{"stream_options":{"include_usage":null,"include_obfuscation":false}}"#);
    assert!(got.has_stream_options);
    assert_eq!(got.include_usage, None);
}

#[test]
fn max_tokens_prefers_max_completion_tokens_then_max_tokens_then_max_output_tokens() {
    let got = info(r#"{"max_output_tokens":3,"max_tokens":2,"max_completion_tokens":1}"#);
    assert_eq!(got.max_tokens, Some(1));
    let got = info(r#"{"max_output_tokens":3,"max_tokens":2,"max_completion_tokens":null}"#);
    assert_eq!(got.max_tokens, Some(2));
    let got = info(r#"{"max_output_tokens":3}"#);
    assert_eq!(got.max_tokens, Some(3));
}

#[test]
fn byte_order_mark_whitespace_and_escaped_names_are_accepted() {
    let got = inspect(b"\xEF\xBB\xBF \r\n\t{\"mod\\u0065l\" : \"m\\u00e9\" , \"stream\":true}\n ")
        .expect("valid");
    assert_eq!(got.model.as_deref(), Some("m\u{e9}"));
    assert!(got.stream);
}

#[test]
fn empty_bodies_are_refused() {
    assert_eq!(err(b""), InspectError::Empty);
    assert_eq!(err(b" \n\t "), InspectError::Empty);
    assert_eq!(err(b"\xEF\xBB\xBF"), InspectError::Empty);
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let e = err(b"{\n  \"model\": \"gpt-4o\",\n  \"stream\": tru,\n}");
    let InspectError::Syntax { line, column, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(*line, 3);
    assert!(*column > 10, "{e}");
    assert!(
        e.to_string()
            .starts_with("the request body is not valid JSON: "),
        "{e}"
    );
    assert!(e.to_string().contains("line 3"), "{e}");
    for body in [
        &b"{\"model\":\"a\""[..],
        b"{\"a\":1} {}",
        b"{\"a\":1,}",
        b"hello",
        b"{'a':1}",
    ] {
        assert!(
            matches!(err(body), InspectError::Syntax { .. }),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Bytes that are not UTF-8 are refused wherever they are, in members the gateway reads
    // or skips: a backend would refuse the body anyway.
    for body in [&b"{\"model\":\"\xff\"}"[..], b"{\"a\":\"\xff\"}"] {
        assert!(matches!(err(body), InspectError::NotUtf8 { .. }));
    }
}

#[test]
fn non_objects_are_named() {
    for (body, found) in [
        ("[1]", "an array"),
        ("\"x\"", "a string"),
        ("42", "a number"),
        ("-1", "a number"),
        ("true", "a boolean"),
        ("null", "null"),
    ] {
        let e = err(body.as_bytes());
        assert_eq!(e, InspectError::NotObject { found }, "{body}");
        assert_eq!(
            e.to_string(),
            format!("the request body must be a JSON object, not {found}")
        );
    }
}

#[test]
fn wrong_types_name_the_field() {
    for (body, message) in [
        (r#"{"model":5}"#, "`model` must be a string"),
        (r#"{"stream":"yes"}"#, "`stream` must be a boolean"),
        (r#"{"stream":1}"#, "`stream` must be a boolean"),
        (
            r#"{"stream_options":true}"#,
            "`stream_options` must be an object",
        ),
        (
            r#"{"stream_options":[]}"#,
            "`stream_options` must be an object",
        ),
        (
            r#"{"stream_options":{"include_usage":"true"}}"#,
            "`stream_options.include_usage` must be a boolean",
        ),
        (
            r#"{"max_tokens":-1}"#,
            "`max_tokens` must be a non-negative integer",
        ),
        (
            r#"{"max_tokens":1.5}"#,
            "`max_tokens` must be a non-negative integer",
        ),
        (
            r#"{"max_completion_tokens":"9"}"#,
            "`max_completion_tokens` must be a non-negative integer",
        ),
        (
            r#"{"max_output_tokens":{}}"#,
            "`max_output_tokens` must be a non-negative integer",
        ),
        (r#"{"n":[1]}"#, "`n` must be a non-negative integer"),
    ] {
        let e = err(body.as_bytes());
        assert!(matches!(e, InspectError::WrongType { .. }), "{body}: {e:?}");
        assert_eq!(e.to_string(), message, "{body}");
    }
}

#[test]
fn repeated_members_are_refused() {
    let e = err(br#"{"model":"a","messages":[],"model":"b"}"#);
    assert_eq!(e, InspectError::DuplicateField { field: "model" });
    assert_eq!(
        e.to_string(),
        "`model` appears more than once in the request body"
    );
    let e = err(br#"{"stream_options":{"include_usage":true,"include_usage":false}}"#);
    assert_eq!(
        e,
        InspectError::DuplicateField {
            field: "stream_options.include_usage"
        }
    );
    // Repeated members the gateway does not read are the backend's business.
    assert!(inspect(br#"{"temperature":1,"temperature":2}"#).is_ok());
}

/// The edit the gateway means, done on a parsed tree.
fn expected(body: &str, edits: &Edits<'_>) -> Value {
    let mut value: Value = serde_json::from_str(body.trim_start_matches('\u{feff}')).expect("json");
    let object = value.as_object_mut().expect("object");
    if let Some(model) = edits.model {
        object.insert("model".into(), json!(model));
    }
    let streaming = object.get("stream") == Some(&json!(true));
    if edits.include_usage && streaming {
        let options = object.entry("stream_options").or_insert_with(|| json!({}));
        if options.is_null() {
            *options = json!({});
        }
        if let Some(options) = options.as_object_mut() {
            options.insert("include_usage".into(), json!(true));
        }
    }
    value
}

fn check_rewrite(body: &str, edits: &Edits<'_>) -> Bytes {
    let bytes = Bytes::copy_from_slice(body.as_bytes());
    let info = info(body);
    let out = rewrite(&bytes, &info, edits).unwrap_or_else(|e| panic!("{body}: {e}"));
    let text = std::str::from_utf8(&out).expect("utf-8");
    let got: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .unwrap_or_else(|e| panic!("{body} -> {text}: {e}"));
    assert_eq!(got, expected(body, edits), "{body} -> {text}");
    // The edited body inspects like the edit says.
    let again = inspect(&out).unwrap_or_else(|e| panic!("{text}: {e}"));
    if let Some(model) = edits.model {
        assert_eq!(again.model.as_deref(), Some(model), "{text}");
    }
    if edits.include_usage && info.stream {
        assert_eq!(again.include_usage, Some(true), "{text}");
    }
    out
}

const SHAPES: [&str; 16] = [
    "{}",
    "{ }",
    "\u{feff}{}",
    " \n {\n}\n",
    r#"{"stream":true}"#,
    r#"{"stream":true,"messages":[{"role":"user","content":"{\"stream_options\":1}"}]}"#,
    "\u{feff}\r\n  {\r\n  \"stream\" : true ,\r\n  \"model\" : \"old\"\r\n}\r\n",
    r#"{"model":"old","stream":true,"stream_options":null}"#,
    r#"{"stream":true,"stream_options":{}}"#,
    r#"{"stream":true,"stream_options":{ }}"#,
    r#"{"stream":true,"stream_options":{"include_usage":false}}"#,
    r#"{"stream":true,"stream_options":{"include_usage":null}}"#,
    r#"{"stream":true,"stream_options":{"include_obfuscation":false}}"#,
    r#"{"stream_options":{"include_obfuscation":false,"include_usage":false},"stream":true}"#,
    r#"{"model":null,"stream":false,"max_tokens":5}"#,
    r#"{"messages":[],"model":"new","stream":true,"stream_options":{"include_usage":true}}"#,
];

#[test]
fn every_shape_and_edit_gives_the_expected_json() {
    let edit_sets = [
        Edits::default(),
        Edits {
            model: None,
            include_usage: true,
        },
        Edits {
            model: Some("new"),
            include_usage: false,
        },
        Edits {
            model: Some("new"),
            include_usage: true,
        },
        Edits {
            model: Some("quote\"back\\slash\u{1}é"),
            include_usage: true,
        },
    ];
    for body in SHAPES {
        for edits in &edit_sets {
            check_rewrite(body, edits);
        }
    }
}

#[test]
fn no_change_is_zero_copy() {
    let cases = [
        (r#"{"stream":true}"#, Edits::default()),
        (
            r#"{"stream":false}"#,
            Edits {
                model: None,
                include_usage: true,
            },
        ),
        (
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
            Edits {
                model: Some("m"),
                include_usage: true,
            },
        ),
    ];
    for (body, edits) in cases {
        let bytes = Bytes::copy_from_slice(body.as_bytes());
        let out = rewrite(&bytes, &info(body), &edits).expect("rewrite");
        assert_eq!(out.as_ptr(), bytes.as_ptr(), "{body}");
        assert_eq!(out.len(), bytes.len(), "{body}");
    }
}

#[test]
fn splices_leave_the_rest_of_the_body_byte_for_byte() {
    let body = "{ \"messages\": [ {\"role\": \"user\", \"content\": \"x\"} ],\n \"stream\": true }";
    let usage = Edits {
        model: None,
        include_usage: true,
    };
    let out = check_rewrite(body, &usage);
    assert_eq!(
        std::str::from_utf8(&out).expect("utf-8"),
        "{\"stream_options\":{\"include_usage\":true}, \"messages\": [ {\"role\": \"user\", \
         \"content\": \"x\"} ],\n \"stream\": true }"
    );
    let body = r#"{"stream":true,"model":"a","stream_options":{"include_usage":false}}"#;
    let both = Edits {
        model: Some("b"),
        include_usage: true,
    };
    let out = check_rewrite(body, &both);
    assert_eq!(
        &out[..],
        br#"{"stream":true,"model":"b","stream_options":{"include_usage":true}}"#
    );
    let out = check_rewrite(r#"{"stream":true}"#, &both);
    assert_eq!(
        &out[..],
        br#"{"model":"b","stream_options":{"include_usage":true},"stream":true}"#
    );
    let out = check_rewrite(r#"{"stream":true,"stream_options":{"x":1}}"#, &usage);
    assert_eq!(
        &out[..],
        br#"{"stream":true,"stream_options":{"include_usage":true,"x":1}}"#
    );
}

#[test]
fn info_from_another_body_is_refused() {
    let info = info(r#"{"stream":true}"#);
    let other = Bytes::from_static(br#"{"stream":true,"model":"x"}"#);
    let edits = Edits {
        model: None,
        include_usage: true,
    };
    assert!(matches!(
        rewrite(&other, &info, &edits),
        Err(RewriteError::InfoMismatch)
    ));
    let same_length = Bytes::from_static(br#"["stream",true]"#);
    assert!(matches!(
        rewrite(&same_length, &info, &edits),
        Err(RewriteError::InfoMismatch)
    ));
}

#[test]
fn invalid_utf8_and_deep_nesting_are_refused_before_any_backend_sees_them() {
    let mut body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"caf"#.to_vec();
    let at = body.len();
    body.extend_from_slice(&[0xC3, 0x28]);
    body.extend_from_slice(br#""}]}"#);
    assert_eq!(inspect(&body), Err(InspectError::NotUtf8 { at }));
    let deep = format!(
        r#"{{"model":"m","x":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(
        inspect(deep.as_bytes()),
        Err(InspectError::TooDeep { limit: MAX_DEPTH })
    );
    let fine = format!(
        r#"{{"model":"m","x":{}1{},"s":"[[[{{{{\"]]"}}"#,
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    assert!(
        inspect(fine.as_bytes()).is_ok(),
        "brackets in strings do not count"
    );
}

#[test]
fn image_size_and_quality_are_read_only_when_they_are_strings() {
    let info = inspect(
        br#"{"model":"gpt-image-1","prompt":"a dam","size":"1024x1536","quality":"low","n":2}"#,
    )
    .expect("valid");
    assert_eq!(
        (info.size.as_deref(), info.quality.as_deref()),
        (Some("1024x1536"), Some("low"))
    );
    assert_eq!(info.n, Some(2));
    let info = inspect(br#"{"model":"m","size":5,"quality":{"x":1}}"#)
        .expect("other shapes are not errors");
    assert_eq!((info.size, info.quality), (None, None));
}
