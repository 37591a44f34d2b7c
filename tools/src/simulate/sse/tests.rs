use super::*;
use crate::simulate::config::ReasoningUsage;
use crate::simulate::route::Flavour;
use crate::simulate::text::Completions;

fn call(flavour: Flavour, operation: ModelApi, include_usage: bool) -> Call {
    Call {
        flavour,
        operation,
        model: "gpt-4o".into(),
        stream: true,
        stream_options: include_usage,
        include_usage,
        max_tokens: None,
        length: 4,
        reasoning_tokens: 0,
        reasoning_usage: ReasoningUsage::Included,
        prompt_tokens: 9,
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

/// The `data:` payload of each event, parsed (`[DONE]` as a string).
fn data(events: &[SseEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let text = std::str::from_utf8(&e.bytes).expect("utf-8");
            assert!(
                text.ends_with("\n\n"),
                "event must end with a blank line: {text:?}"
            );
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("data line");
            if line == "[DONE]" {
                Value::String(line.into())
            } else {
                serde_json::from_str(line).expect("valid JSON")
            }
        })
        .collect()
}

#[test]
fn openai_chat_with_usage_matches_openai_framing() {
    let completion = Completions::default().get("gpt-4o", 4);
    let events = events(
        &call(Flavour::OpenAi, ModelApi::ChatCompletions, true),
        &completion,
        "chatcmpl-x",
        None,
    );
    let data = data(&events);
    // role + 4 deltas + finish + usage + [DONE]
    assert_eq!(data.len(), 8);
    assert_eq!(data[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = data[1..5]
        .iter()
        .map(|d| {
            d["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(text, completion.text);
    assert_eq!(events.iter().filter(|e| e.delta.is_some()).count(), 4);
    for chunk in &data[..6] {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert!(
            chunk["usage"].is_null() && chunk.get("usage").is_some(),
            "{chunk}"
        );
    }
    assert_eq!(data[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(data[6]["choices"], serde_json::json!([]));
    assert_eq!(data[6]["usage"]["prompt_tokens"], 9);
    assert_eq!(data[6]["usage"]["completion_tokens"], 4);
    assert_eq!(data[6]["usage"]["total_tokens"], 13);
    assert_eq!(data[7], "[DONE]");
}

#[test]
fn openai_chat_without_usage_has_no_usage_field() {
    let completion = Completions::default().get("gpt-4o", 4);
    let events = events(
        &call(Flavour::OpenAi, ModelApi::ChatCompletions, false),
        &completion,
        "c",
        None,
    );
    let data = data(&events);
    assert_eq!(data.len(), 7);
    assert!(data[..6].iter().all(|d| d.get("usage").is_none()));
}

#[test]
fn azure_chat_starts_with_prompt_filter_chunk() {
    let completion = Completions::default().get("gpt-4o", 4);
    let events = events(
        &call(Flavour::AzureClassic, ModelApi::ChatCompletions, true),
        &completion,
        "c",
        None,
    );
    let data = data(&events);
    assert_eq!(data.len(), 9);
    assert_eq!(data[0]["choices"], serde_json::json!([]));
    assert!(data[0]["prompt_filter_results"][0]["content_filter_results"].is_object());
    assert!(data[0].get("usage").is_some());
    assert_eq!(
        data[1]["choices"][0]["content_filter_results"],
        serde_json::json!({})
    );
    assert_eq!(
        data[2]["choices"][0]["content_filter_results"]["hate"]["filtered"],
        false
    );
    assert_eq!(data[7]["usage"]["completion_tokens"], 4);
}

#[test]
fn completions_stream_carries_text_deltas() {
    let completion = Completions::default().get("gpt-4o", 4);
    let events = events(
        &call(Flavour::OpenAi, ModelApi::Completions, true),
        &completion,
        "cmpl-1",
        None,
    );
    let data = data(&events);
    // 4 deltas + finish + usage + [DONE]
    assert_eq!(data.len(), 7);
    assert_eq!(data[0]["object"], "text_completion");
    assert_eq!(data[0]["choices"][0]["text"], "Hello");
    assert_eq!(data[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(data[5]["usage"]["total_tokens"], 13);
}

#[test]
fn responses_stream_uses_named_events_and_ends_with_completed() {
    let completion = Completions::default().get("gpt-4o", 4);
    let events = events(
        &call(Flavour::OpenAi, ModelApi::Responses, true),
        &completion,
        "resp_1",
        None,
    );
    let names: Vec<&str> = events
        .iter()
        .map(|e| {
            std::str::from_utf8(&e.bytes)
                .ok()
                .and_then(|t| t.lines().next())
                .and_then(|l| l.strip_prefix("event: "))
                .expect("event line")
        })
        .collect();
    assert_eq!(names[0], "response.created");
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "response.output_text.delta")
            .count(),
        4
    );
    assert_eq!(names.last().copied(), Some("response.completed"));
    let data = data(&events);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
        assert_eq!(d["type"], names[i]);
    }
    let done = &data[data.len() - 1]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["usage"]["input_tokens"], 9);
    assert_eq!(done["usage"]["output_tokens"], 4);
    assert_eq!(done["output"][0]["content"][0]["text"], completion.text);
    assert!(
        !events
            .iter()
            .any(|e| e.bytes.as_ref() == b"data: [DONE]\n\n")
    );
}

#[test]
fn malformed_event_is_inserted_after_n_events() {
    let completion = Completions::default().get("gpt-4o", 4);
    let c = call(Flavour::OpenAi, ModelApi::ChatCompletions, false);
    let clean = events(&c, &completion, "c", None);
    let broken = events(&c, &completion, "c", Some(2));
    assert_eq!(broken.len(), clean.len() + 1);
    assert_eq!(
        broken[2].bytes,
        Bytes::from_static(MALFORMED_EVENT.as_bytes())
    );
    let json = MALFORMED_EVENT
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_default();
    assert!(serde_json::from_str::<Value>(json).is_err());
}

#[test]
fn a_reasoning_models_stream_reports_reasoning_in_its_usage_only() {
    let completion = Completions::default().get("o3", 4);
    for (shape, reported) in [
        (ReasoningUsage::Included, 4 + 6),
        (ReasoningUsage::Separate, 4),
    ] {
        let mut chat = call(Flavour::AzureV1, ModelApi::ChatCompletions, true);
        (chat.model, chat.reasoning_tokens, chat.reasoning_usage) = ("o3".into(), 6, shape);
        let chunks = events(&chat, &completion, "c", None);
        assert_eq!(chunks.iter().filter(|e| e.delta.is_some()).count(), 4);
        let chat_data = data(&chunks);
        let usage = &chat_data[chat_data.len() - 2]["usage"];
        assert_eq!(usage["completion_tokens"], reported, "{shape:?}");
        assert_eq!(usage["total_tokens"], 9 + 4 + 6, "{shape:?}");
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 6);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);

        let mut responses = call(Flavour::OpenAi, ModelApi::Responses, true);
        (responses.reasoning_tokens, responses.reasoning_usage) = (6, shape);
        let data = data(&events(&responses, &completion, "resp_r", None));
        let usage = &data[data.len() - 1]["response"]["usage"];
        assert_eq!(usage["output_tokens"], reported, "{shape:?}");
        assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 6);
        assert_eq!(usage["total_tokens"], 9 + 4 + 6, "{shape:?}");
        let reasoning: Vec<_> = data
            .iter()
            .filter(|d| d["type"].as_str().is_some_and(|t| t.contains("reasoning")))
            .collect();
        assert!(reasoning.is_empty(), "never streamed: {reasoning:?}");
    }
}
