use serde_json::json;

use super::*;
use crate::simulate::config::ReasoningUsage;
use crate::simulate::route::Flavour;
use crate::simulate::text::Completions;

fn call(flavour: Flavour, operation: ModelApi) -> Call {
    Call {
        flavour,
        operation,
        model: "gpt-4o".into(),
        stream: false,
        stream_options: false,
        include_usage: false,
        max_tokens: Some(3),
        length: 3,
        reasoning_tokens: 0,
        reasoning_usage: ReasoningUsage::Included,
        prompt_tokens: 11,
        created: 1_700_000_000,
        context_tokens: 0,
        cached_tokens: 0,
        store: false,
        background: false,
        previous_response_id: None,
        conversation: None,
        conversation_revision: 0,
        instructions: None,
    }
}

fn parse(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

#[test]
fn chat_bodies_in_both_dialects() {
    let completion = Completions::default().get("gpt-4o", 3);
    let openai = parse(&success_body(
        &call(Flavour::OpenAi, ModelApi::ChatCompletions),
        &completion,
        &json!({}),
        "chatcmpl-1",
    ));
    assert_eq!(openai["object"], "chat.completion");
    assert_eq!(openai["choices"][0]["message"]["content"], completion.text);
    assert_eq!(openai["choices"][0]["finish_reason"], "length");
    assert_eq!(openai["usage"]["prompt_tokens"], 11);
    assert_eq!(openai["usage"]["completion_tokens"], 3);
    assert_eq!(openai["usage"]["total_tokens"], 14);
    assert!(openai.get("prompt_filter_results").is_none());

    let azure = parse(&success_body(
        &call(Flavour::AzureClassic, ModelApi::ChatCompletions),
        &completion,
        &json!({}),
        "chatcmpl-1",
    ));
    assert_eq!(
        azure["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"],
        false
    );
    assert_eq!(
        azure["choices"][0]["content_filter_results"]["violence"]["severity"],
        "safe"
    );
}

#[test]
fn completions_and_responses_bodies() {
    let completion = Completions::default().get("gpt-4o", 3);
    let text = parse(&success_body(
        &call(Flavour::AzureV1, ModelApi::Completions),
        &completion,
        &json!({}),
        "cmpl-1",
    ));
    assert_eq!(text["object"], "text_completion");
    assert_eq!(text["choices"][0]["text"], completion.text);
    assert_eq!(text["usage"]["completion_tokens"], 3);

    let response = parse(&success_body(
        &call(Flavour::OpenAi, ModelApi::Responses),
        &completion,
        &json!({}),
        "resp_abc",
    ));
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed");
    assert_eq!(response["output"][0]["id"], "msg_abc");
    assert_eq!(response["output"][0]["content"][0]["text"], completion.text);
    assert_eq!(response["usage"]["input_tokens"], 11);
    assert_eq!(response["usage"]["output_tokens"], 3);
    assert_eq!(response["usage"]["total_tokens"], 14);
}

#[test]
fn embeddings_as_floats_and_base64() {
    let completion = Completions::default().get("x", 0);
    let c = call(Flavour::OpenAi, ModelApi::Embeddings);
    let floats = parse(&success_body(
        &c,
        &completion,
        &json!({"input": ["a", "b"], "dimensions": 4}),
        "e",
    ));
    assert_eq!(floats["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(floats["data"][1]["index"], 1);
    assert_eq!(
        floats["data"][0]["embedding"].as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(floats["usage"]["prompt_tokens"], 11);
    assert_eq!(floats["usage"]["total_tokens"], 11);

    let b64 = parse(&success_body(
        &c,
        &completion,
        &json!({"input": "a", "encoding_format": "base64"}),
        "e",
    ));
    let encoded = b64["data"][0]["embedding"].as_str().expect("base64 string");
    // 16 floats × 4 bytes = 64 bytes → 88 base64 characters.
    assert_eq!(encoded.len(), 88);

    let tokens = parse(&success_body(
        &c,
        &completion,
        &json!({"input": [1, 2, 3]}),
        "e",
    ));
    assert_eq!(tokens["data"].as_array().map(Vec::len), Some(1));
}

#[test]
fn error_shapes() {
    let openai = parse(&openai_error(
        "bad",
        "invalid_request_error",
        Some("model"),
        None,
    ));
    assert_eq!(
        openai,
        json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": null}})
    );
    let azure = parse(&azure_error("429", "slow down"));
    assert_eq!(
        azure,
        json!({"error": {"code": "429", "message": "slow down"}})
    );
}

#[test]
fn usage_details_in_both_reasoning_shapes() {
    let completion = Completions::default().get("gpt-4o", 3);
    let plain = parse(&success_body(
        &call(Flavour::OpenAi, ModelApi::ChatCompletions),
        &completion,
        &json!({}),
        "c",
    ));
    assert_eq!(
        plain["usage"]["completion_tokens_details"],
        json!({"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0})
    );
    assert_eq!(
        plain["usage"]["prompt_tokens_details"],
        json!({"cached_tokens": 0, "audio_tokens": 0})
    );
    for (shape, completion_tokens) in [
        (ReasoningUsage::Included, 3 + 8),
        (ReasoningUsage::Separate, 3),
    ] {
        let thinking = |operation| Call {
            model: "gpt-5-mini".into(),
            reasoning_tokens: 8,
            reasoning_usage: shape,
            cached_tokens: 4,
            ..call(Flavour::OpenAi, operation)
        };
        let chat = parse(&success_body(
            &thinking(ModelApi::ChatCompletions),
            &completion,
            &json!({}),
            "c",
        ));
        let usage = &chat["usage"];
        assert_eq!(usage["completion_tokens"], completion_tokens, "{shape:?}");
        assert_eq!(usage["total_tokens"], 11 + 3 + 8, "{shape:?}");
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 8);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(chat["choices"][0]["message"]["content"], completion.text);
        let response = parse(&success_body(
            &thinking(ModelApi::Responses),
            &completion,
            &json!({}),
            "resp_r",
        ));
        let usage = &response["usage"];
        assert_eq!(usage["output_tokens"], completion_tokens, "{shape:?}");
        assert_eq!(usage["total_tokens"], 11 + 3 + 8, "{shape:?}");
        assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 8);
        assert_eq!(usage["input_tokens_details"]["cached_tokens"], 4);
    }
}
