use serde_json::json;

use super::*;
use crate::simulate::route::{Api, Target};

fn op(route: &Route) -> ModelApi {
    route.api.model().expect("a model route")
}

fn route(flavour: Flavour, deployment: Option<&str>, operation: ModelApi) -> Route {
    Route {
        flavour,
        deployment: deployment.map(str::to_owned),
        api: Api::Model(operation),
        target: Target::Create,
        api_version: None,
    }
}

#[test]
fn reads_model_stream_and_usage_request() {
    let r = route(
        Flavour::AzureClassic,
        Some("dep"),
        ModelApi::ChatCompletions,
    );
    let body = json!({"stream": true, "stream_options": {"include_usage": true}});
    let call = Call::read(&r, op(&r), &body, 20, true, 7).expect("call");
    assert_eq!(call.model, "dep");
    assert!(call.stream && call.stream_options && call.include_usage);
    assert_eq!((call.length, call.max_tokens, call.created), (20, None, 7));
    assert_eq!(call.finish_reason(), "stop");

    let off = Call::read(&r, op(&r), &body, 20, false, 0).expect("call");
    assert!(
        !off.include_usage,
        "usageInStream=false ignores include_usage"
    );

    let r = route(Flavour::OpenAi, None, ModelApi::Completions);
    let body = json!({"model": "gpt-4o", "max_tokens": 5, "stream": false});
    let mut call = Call::read(&r, op(&r), &body, 20, true, 0).expect("call");
    call.prompt_tokens = 10;
    assert_eq!((call.length, call.cost()), (5, 15));
    assert_eq!(call.finish_reason(), "length");
    assert!(!call.include_usage);
}

#[test]
fn caps_length_but_not_cost_and_requires_a_model() {
    let r = route(Flavour::OpenAi, None, ModelApi::Responses);
    let body = json!({"model": "m", "max_output_tokens": 100_000, "stream": true});
    let mut call = Call::read(&r, op(&r), &body, 20, true, 0).expect("call");
    call.prompt_tokens = 1;
    assert_eq!(call.length, MAX_COMPLETION_TOKENS);
    assert_eq!(call.cost(), 100_001);
    assert!(call.include_usage, "responses streams always carry usage");
    assert_eq!(call.finish_reason(), "stop");

    let err = Call::read(&r, op(&r), &json!({}), 20, true, 0).expect_err("no model");
    assert_eq!(err.param, "model");

    let e = route(Flavour::OpenAi, None, ModelApi::Embeddings);
    let mut call = Call::read(
        &e,
        op(&e),
        &json!({"model": "x", "stream": true}),
        20,
        true,
        0,
    )
    .expect("embeddings");
    call.prompt_tokens = 4;
    assert!(!call.stream);
    assert_eq!(call.cost(), 4);
}

#[test]
fn a_reasoning_model_splits_its_answer_within_the_maximum() {
    let chat = route(Flavour::OpenAi, None, ModelApi::ChatCompletions);
    let body = json!({"model": "o3", "max_completion_tokens": 10});
    let mut call = Call::read(&chat, op(&chat), &body, 20, true, 0).expect("call");
    call.prompt_tokens = 9;
    call.plan_reasoning(true, ReasoningUsage::Separate);
    assert_eq!((call.length, call.reasoning_tokens), (5, 5));
    assert_eq!(call.finish_reason(), "length");
    assert_eq!(call.cost(), 19, "the rate window still counts the maximum");
    let usage = call.usage(5);
    assert_eq!((usage.completion(), usage.total()), (10, 19));
    assert_eq!(usage.shape, ReasoningUsage::Separate);

    let mut free =
        Call::read(&chat, op(&chat), &json!({"model": "o3"}), 20, true, 0).expect("call");
    free.prompt_tokens = 9;
    free.plan_reasoning(true, ReasoningUsage::Included);
    assert_eq!((free.length, free.reasoning_tokens), (20, 42));
    assert_eq!(free.finish_reason(), "stop");

    let legacy = route(Flavour::OpenAi, None, ModelApi::Completions);
    let mut text = Call::read(&legacy, op(&legacy), &body, 20, true, 0).expect("call");
    text.plan_reasoning(true, ReasoningUsage::Included);
    assert_eq!(
        (text.length, text.reasoning_tokens),
        (10, 0),
        "no reasoning"
    );
    let mut plain = Call::read(&chat, op(&chat), &body, 20, true, 0).expect("call");
    plain.plan_reasoning(false, ReasoningUsage::Included);
    assert_eq!((plain.length, plain.reasoning_tokens), (10, 0));
}

#[test]
fn reads_the_responses_state_fields() {
    let r = route(Flavour::AzureV1, None, ModelApi::Responses);
    let body = json!({"model": "m", "input": "hi", "background": true,
        "previous_response_id": "resp_1", "instructions": "Be brief."});
    let call = Call::read(&r, op(&r), &body, 20, true, 0).expect("call");
    assert!(call.store && call.background);
    assert_eq!(call.previous_response_id.as_deref(), Some("resp_1"));
    assert_eq!(call.instructions.as_deref(), Some("Be brief."));

    let unstored = json!({"model": "m", "store": false});
    let call = Call::read(&r, op(&r), &unstored, 20, true, 0).expect("call");
    assert!(!call.store && !call.background);
    let both = json!({"model": "m", "store": false, "background": true});
    let err = Call::read(&r, op(&r), &both, 20, true, 0).expect_err("background needs store");
    assert_eq!(err.param, "background");
    let bad_id = json!({"model": "m", "previous_response_id": 7});
    let err = Call::read(&r, op(&r), &bad_id, 20, true, 0).expect_err("not a string");
    assert_eq!(err.param, "previous_response_id");

    let chat = route(Flavour::OpenAi, None, ModelApi::ChatCompletions);
    let call = Call::read(&chat, op(&chat), &body, 20, true, 0).expect("chat");
    assert!(!call.store && !call.background && call.previous_response_id.is_none());
}

#[test]
fn reads_the_conversation_as_an_id_or_an_object() {
    let r = route(Flavour::OpenAi, None, ModelApi::Responses);
    for conversation in [json!("conv_1"), json!({"id": "conv_1"})] {
        let body = json!({"model": "m", "conversation": conversation});
        let call = Call::read(&r, op(&r), &body, 20, true, 0).expect("call");
        assert_eq!(call.conversation.as_deref(), Some("conv_1"));
    }
    for (conversation, param) in [
        (json!(7), "conversation"),
        (json!({"name": "x"}), "conversation.id"),
    ] {
        let body = json!({"model": "m", "conversation": conversation});
        let err = Call::read(&r, op(&r), &body, 20, true, 0).expect_err("invalid");
        assert_eq!(err.param, param);
    }
    let both = json!({"model": "m", "conversation": "conv_1", "previous_response_id": "resp_1"});
    let err = Call::read(&r, op(&r), &both, 20, true, 0).expect_err("exclusive");
    assert_eq!(err.param, "previous_response_id");
    assert!(err.message.starts_with("Mutually exclusive parameters"));

    let chat = route(Flavour::OpenAi, None, ModelApi::ChatCompletions);
    let call = Call::read(&chat, op(&chat), &both, 20, true, 0).expect("chat ignores both");
    assert_eq!(call.conversation, None);
}
