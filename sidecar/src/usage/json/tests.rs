use super::*;

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Option<Usage> {
    Some(Usage {
        prompt_tokens,
        completion_tokens,
    })
}

#[test]
fn chat_completion_usage_and_model() {
    let body = br#"{
      "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
      "object": "chat.completion",
      "created": 1741569952,
      "model": "gpt-4.1-2025-04-14",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help?",
        "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
      "service_tier": "default"
    }"#;
    let got = response_usage(body).expect("object");
    assert_eq!(got.usage, usage(19, 10));
    assert_eq!(got.model.as_deref(), Some("gpt-4.1-2025-04-14"));
    assert_eq!(completion_text(body), "Hello! How can I help?");
}

#[test]
fn azure_chat_completion_with_filter_results() {
    let body = br#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},
      "finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Hi \"there\"\n","refusal":null,
      "role":"assistant"}}],"created":1736000000,"id":"chatcmpl-x","model":"gpt-4o-2024-11-20",
      "object":"chat.completion","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}],
      "system_fingerprint":"fp_b705f0c291","usage":{"completion_tokens":5,"completion_tokens_details":
      {"reasoning_tokens":0},"prompt_tokens":12,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":17}}"#;
    let got = response_usage(body).expect("object");
    assert_eq!(got.usage, usage(12, 5));
    assert_eq!(got.model.as_deref(), Some("gpt-4o-2024-11-20"));
    assert_eq!(completion_text(body), "Hi \"there\"\n");
}

#[test]
fn legacy_completions_usage_and_text() {
    let body =
        br#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct",
      "choices":[{"text":"\n\nThis is a test.","index":0,"logprobs":null,"finish_reason":"length"},
                 {"text":" Second.","index":1,"logprobs":null,"finish_reason":"stop"}],
      "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
    assert_eq!(response_usage(body).and_then(|r| r.usage), usage(5, 7));
    assert_eq!(completion_text(body), "\n\nThis is a test. Second.");
}

#[test]
fn embeddings_have_no_completion_tokens() {
    let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292]}],
      "model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
    let got = response_usage(body).expect("object");
    assert_eq!(got.usage, usage(8, 0));
    assert_eq!(got.model.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(completion_text(body), "");
}

#[test]
fn responses_api_usage_and_output_text() {
    let body =
        br#"{"id":"resp_67cc","object":"response","created_at":1741386163,"status":"completed",
      "model":"gpt-4o-2024-08-06","output":[
        {"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"IGNORED"}]},
        {"type":"message","id":"msg_1","status":"completed","role":"assistant",
         "content":[{"type":"output_text","text":"Silent circuits hum.","annotations":[]},
                    {"type":"refusal","refusal":" No."}]},
        {"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather",
         "arguments":"{\"city\":\"Paris\"}","status":"completed"}],
      "usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,
        "output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}"#;
    let got = response_usage(body).expect("object");
    assert_eq!(got.usage, usage(36, 87));
    assert_eq!(got.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert_eq!(
        completion_text(body),
        "Silent circuits hum. No.get_weather{\"city\":\"Paris\"}"
    );
}

#[test]
fn tool_calls_and_function_call_text() {
    let body = br#"{"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":null,
      "tool_calls":[{"id":"call_1","type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}],
      "function_call":{"name":"legacy","arguments":"{}"}},"finish_reason":"tool_calls"}]}"#;
    assert_eq!(completion_text(body), "lookup{\"q\":1}legacy{}");
    let got = response_usage(body).expect("object");
    assert_eq!(got.usage, None);
}

#[test]
fn content_parts_and_reasoning_content_are_text() {
    let body = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},"b"],
      "reasoning_content":"think"}}]}"#;
    assert_eq!(completion_text(body), "abthink");
}

#[test]
fn odd_types_are_skipped_not_fatal() {
    let body =
        br#"{"model":42,"usage":{"prompt_tokens":"many","completion_tokens":3,"extra":{"a":[1]}},
      "choices":[{"message":{"content":7}},"junk",{"text":"ok"}]}"#;
    let got = response_usage(body).expect("object");
    assert_eq!(got.usage, usage(0, 3));
    assert_eq!(got.model, None);
    assert_eq!(completion_text(body), "ok");
}

#[test]
fn usage_null_or_empty_is_absent() {
    for body in [
        &br#"{"model":"m","usage":null}"#[..],
        br#"{"model":"m","usage":{}}"#,
        br#"{"error":{"message":"Rate limit","type":"requests","code":"429"}}"#,
    ] {
        let got = response_usage(body).expect("object");
        assert_eq!(got.usage, None, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn malformed_bodies_give_none_and_never_panic() {
    let cases: [&[u8]; 8] = [
        b"",
        b"   ",
        b"not json",
        b"[1,2]",
        b"\"str\"",
        b"{\"usage\":{\"prompt_tokens\":1}",
        b"{\"usage\":{\"prompt_tokens\":1}} trailing",
        b"{\"usage\":{\"prompt_tokens\":1e400}}",
    ];
    for body in cases {
        assert_eq!(
            response_usage(body),
            None,
            "{}",
            String::from_utf8_lossy(body)
        );
        let _ = completion_text(body);
    }
}

#[test]
fn truncated_body_keeps_text_read_so_far() {
    let body =
        br#"{"choices":[{"message":{"content":"partial answer"}},{"message":{"content":"cut"#;
    assert_eq!(completion_text(body), "partial answer");
}

#[test]
fn byte_order_mark_is_tolerated() {
    let body =
        b"\xEF\xBB\xBF{\"model\":\"m\",\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}";
    assert_eq!(response_usage(body).and_then(|r| r.usage), usage(2, 1));
}

#[test]
fn invalid_utf8_in_skipped_members_is_tolerated() {
    let body = b"{\"id\":\"\xff\",\"usage\":{\"prompt_tokens\":4}}";
    assert_eq!(response_usage(body).and_then(|r| r.usage), usage(4, 0));
    assert_eq!(completion_text(b"{\"choices\":[{\"text\":\"\xff\"}]}"), "");
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let nested = |prefix: &[u8], suffix: &[u8]| {
        let mut body = prefix.to_vec();
        body.extend(std::iter::repeat_n(b'[', 100_000));
        body.extend(std::iter::repeat_n(b']', 100_000));
        body.extend_from_slice(suffix);
        body
    };
    // Skipped values are walked without recursion: the body is fine, it has no usage.
    let body = nested(b"{\"usage\":", b"}");
    assert_eq!(response_usage(&body).and_then(|r| r.usage), None);
    // Values the text walker descends into hit serde_json's depth limit: an error, no text.
    let body = nested(b"{\"choices\":[{\"message\":{\"content\":", b"}}]}");
    assert_eq!(completion_text(&body), "");
    assert_eq!(response_usage(&body).and_then(|r| r.usage), None);
}
