use super::*;

fn usage(prompt_tokens: u64, completion_tokens: u64) -> Option<Usage> {
    Some(Usage::totals(prompt_tokens, completion_tokens))
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

/// Token types, the way each provider reports them. Totals stay totals; subsets are subsets.
mod token_types {
    use super::*;
    use crate::usage::TokenType;

    fn usage_of(body: &str) -> Usage {
        response_usage(body.as_bytes())
            .and_then(|r| r.usage)
            .expect("usage")
    }

    #[test]
    fn openai_chat_reports_cached_input_and_reasoning_inside_the_totals() {
        let got = usage_of(
            r#"{"model":"o4-mini","usage":{"prompt_tokens":2006,"completion_tokens":300,
            "total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0},
            "completion_tokens_details":{"reasoning_tokens":192,"audio_tokens":0,
            "accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
        );
        assert_eq!((got.prompt_tokens, got.completion_tokens), (2006, 300));
        assert_eq!((got.cached_tokens, got.reasoning_tokens), (1920, 192));
        let by_type = got.by_type();
        assert_eq!(by_type[0], (TokenType::Input, 86));
        assert_eq!(by_type[1], (TokenType::CachedInput, 1920));
        assert_eq!(by_type[5], (TokenType::Output, 108));
        assert_eq!(by_type[6], (TokenType::ReasoningOutput, 192));
        assert_eq!(by_type.iter().map(|(_, n)| n).sum::<u64>(), got.total());
    }

    #[test]
    fn reasoning_reported_apart_from_the_completion_is_added_to_it() {
        // total = prompt + completion + reasoning: the completion holds only visible text.
        let got = usage_of(
            r#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":115,
            "completion_tokens_details":{"reasoning_tokens":100}}}"#,
        );
        assert_eq!((got.completion_tokens, got.reasoning_tokens), (105, 100));
        // A top-level reasoning_tokens, no total, larger than the completion: apart too.
        let got = usage_of(
            r#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"reasoning_tokens":40}}"#,
        );
        assert_eq!((got.completion_tokens, got.reasoning_tokens), (45, 40));
        // Included (total = prompt + completion): left as it is.
        let got = usage_of(
            r#"{"usage":{"prompt_tokens":10,"completion_tokens":50,"total_tokens":60,
            "completion_tokens_details":{"reasoning_tokens":40}}}"#,
        );
        assert_eq!((got.completion_tokens, got.reasoning_tokens), (50, 40));
    }

    #[test]
    fn responses_api_details_with_cache_writes_audio_and_images() {
        let got = usage_of(
            r#"{"object":"response","usage":{"input_tokens":1000,"output_tokens":200,
            "total_tokens":1200,"input_tokens_details":{"cached_tokens":512,
            "cache_write_tokens":256,"image_tokens":100},
            "output_tokens_details":{"reasoning_tokens":64}}}"#,
        );
        assert_eq!(
            got,
            Usage {
                prompt_tokens: 1000,
                completion_tokens: 200,
                cached_tokens: 512,
                cache_write_tokens: 256,
                image_input_tokens: 100,
                reasoning_tokens: 64,
                ..Usage::default()
            }
        );
        assert_eq!(got.by_type()[0], (TokenType::Input, 132));
        let audio = usage_of(
            r#"{"usage":{"prompt_tokens":80,"completion_tokens":60,"total_tokens":140,
            "prompt_tokens_details":{"audio_tokens":50,"cached_tokens":0},
            "completion_tokens_details":{"audio_tokens":40,"reasoning_tokens":0}}}"#,
        );
        assert_eq!(
            (audio.audio_input_tokens, audio.audio_output_tokens),
            (50, 40)
        );
        assert_eq!(audio.by_type()[3], (TokenType::AudioInput, 50));
        assert_eq!(audio.by_type()[7], (TokenType::AudioOutput, 40));
    }

    #[test]
    fn a_subset_never_exceeds_its_total() {
        let got = usage_of(
            r#"{"usage":{"prompt_tokens":100,"completion_tokens":10,"total_tokens":110,
            "prompt_tokens_details":{"cached_tokens":90,"cache_write_tokens":50,
            "audio_tokens":"many","image_tokens":-3},
            "completion_tokens_details":{"reasoning_tokens":8,"audio_tokens":8}}}"#,
        );
        assert_eq!((got.cached_tokens, got.cache_write_tokens), (90, 10));
        assert_eq!((got.audio_input_tokens, got.image_input_tokens), (0, 0));
        assert_eq!((got.reasoning_tokens, got.audio_output_tokens), (8, 2));
        assert!(got.by_type().iter().all(|&(_, n)| n <= got.total()));
        assert_eq!(got.by_type().iter().map(|(_, n)| n).sum::<u64>(), 110);
        let odd = usage_of(r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":null}}"#);
        assert_eq!(odd, Usage::totals(5, 0));
    }

    #[test]
    fn embeddings_have_input_only() {
        let got = usage_of(r#"{"object":"list","usage":{"prompt_tokens":8,"total_tokens":8}}"#);
        assert_eq!(got, Usage::totals(8, 0));
    }
}
