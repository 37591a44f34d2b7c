//! Property tests (proptest, a bounded number of generated cases per property) of the parsers
//! that read what clients and backends send: request inspection and rewrite, the SSE usage
//! scanner, and retry-after parsing. (The JWT and JWKS parsers, private to `identity`, have
//! theirs next to them.) Each property holds for every input, malformed ones included: no
//! panic, bounded results, and the same answer however a stream is cut into chunks.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use serde_json::{Value, json};
use spillway_sidecar::breaker::{MAX_RETRY_AFTER, retry_after};
use spillway_sidecar::protocol::{Edits, inspect, rewrite};
use spillway_sidecar::usage::sse::{ScanOptions, StreamScanner};

/// JSON values a few levels deep, with text that needs escaping.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[\\PC\"\\\\]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn inspection_never_panics_on_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = inspect(&body);
    }

    #[test]
    fn inspection_reads_what_serde_reads_and_rewrite_keeps_the_body_valid(
        model in "[a-z0-9.-]{1,16}",
        stream in any::<bool>(),
        max_tokens in prop::option::of(0u64..1_000_000),
        extra in prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..4),
        new_model in "[a-z0-9.\"-]{1,16}",
    ) {
        let mut object: serde_json::Map<String, Value> = extra.into_iter().collect();
        object.insert("model".into(), json!(model));
        object.insert("stream".into(), json!(stream));
        if let Some(max) = max_tokens {
            object.insert("max_tokens".into(), json!(max));
        }
        object.remove("max_completion_tokens");
        object.remove("max_output_tokens");
        object.remove("n");
        object.remove("stream_options");
        let body = Bytes::from(serde_json::to_vec(&Value::Object(object.clone())).unwrap());
        let info = inspect(&body).expect("a valid object");
        prop_assert_eq!(info.model.as_deref(), Some(model.as_str()));
        prop_assert_eq!(info.stream, stream);
        prop_assert_eq!(info.max_tokens, max_tokens);
        let edits = Edits { model: Some(&new_model), include_usage: true };
        let rewritten = rewrite(&body, &info, &edits).expect("rewritable");
        let parsed: Value = serde_json::from_slice(&rewritten).expect("still JSON");
        prop_assert_eq!(&parsed["model"], &json!(new_model));
        if stream {
            prop_assert_eq!(&parsed["stream_options"]["include_usage"], &json!(true));
        }
        for (key, value) in &object {
            if key != "model" {
                prop_assert_eq!(&parsed[key], value, "member {} kept", key);
            }
        }
    }

    #[test]
    fn the_sse_scanner_gives_the_same_answer_however_the_stream_is_cut(
        cuts in prop::collection::vec(1usize..64, 0..12),
        strip in any::<bool>(),
    ) {
        let stream = sse_stream();
        let whole = scan(std::slice::from_ref(&stream), strip);
        let mut pieces = Vec::new();
        let mut rest = stream;
        for cut in cuts {
            if rest.is_empty() {
                break;
            }
            pieces.push(rest.split_to(cut.min(rest.len())));
        }
        if !rest.is_empty() {
            pieces.push(rest);
        }
        prop_assert_eq!(scan(&pieces, strip), whole);
    }

    #[test]
    fn the_sse_scanner_never_panics_on_any_bytes(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..96), 0..8),
        strip in any::<bool>(),
    ) {
        let chunks: Vec<Bytes> = chunks.into_iter().map(Bytes::from).collect();
        let _ = scan(&chunks, strip);
    }

    #[test]
    fn retry_after_never_panics_and_stays_bounded(
        name in prop_oneof![
            Just("retry-after"), Just("retry-after-ms"), Just("x-ms-retry-after-ms"),
            Just("x-ratelimit-reset-tokens"), Just("x-ratelimit-reset-requests"),
        ],
        value in "[ -~]{0,40}",
    ) {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
        if let Some(delay) = retry_after(&headers, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)) {
            prop_assert!(delay <= MAX_RETRY_AFTER, "{name}: {value:?} gave {delay:?}");
        }
    }
}

/// A chat stream with content, a usage chunk and `[DONE]`.
fn sse_stream() -> Bytes {
    let mut text = String::new();
    for word in ["Hello", " there", ", spill", "ways"] {
        text.push_str(&format!(
            "data: {}\n\n",
            json!({"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":word}}],"usage":null})
        ));
    }
    text.push_str(&format!(
        "data: {}\n\ndata: [DONE]\n\n",
        json!({"id":"c","object":"chat.completion.chunk","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16}})
    ));
    Bytes::from(text)
}

/// What the client receives and the usage found, for `chunks` fed in order.
fn scan(chunks: &[Bytes], strip: bool) -> (Vec<u8>, Option<String>) {
    let mut scanner = StreamScanner::new(ScanOptions {
        strip_injected_usage: strip,
    });
    let mut out = Vec::new();
    for chunk in chunks {
        scanner.feed(chunk.clone(), &mut out);
    }
    let summary = scanner.finish(&mut out);
    let sent: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
    (sent, Some(format!("{summary:?}")))
}
