use serde_json::json;

use super::*;
use crate::simulate::route::{Api, Flavour, Route, Target};

/// A system prompt of well over 128 tokens.
fn long_system() -> String {
    "You answer questions about the gateway's routing rules, briefly and exactly. ".repeat(20)
}

fn call(operation: ModelApi, request: &Value) -> Call {
    let route = Route {
        flavour: Flavour::OpenAi,
        deployment: None,
        api: Api::Model(operation),
        target: Target::Create,
        api_version: None,
    };
    let mut call = Call::read(&route, operation, request, 20, true, 0).expect("valid call");
    call.prompt_tokens = tokenizer::count_prompt(&call.model, operation.tokenizer(), request);
    call
}

fn chat(last: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": long_system()},
        {"role": "user", "content": last}
    ]})
}

#[test]
fn a_repeated_chat_prefix_is_cached_in_blocks_of_128() {
    let cache = PrefixCache::new(128);
    let now = Instant::now();
    let first = chat("What is a pool?");
    assert_eq!(
        cache.serve(&call(ModelApi::ChatCompletions, &first), &first, now),
        0
    );
    let second = chat("And a quota?");
    let c = call(ModelApi::ChatCompletions, &second);
    let cached = cache.serve(&c, &second, now + Duration::from_secs(1));
    assert!(cached >= 128 && cached.is_multiple_of(BLOCK), "{cached}");
    assert!(cached <= c.prompt_tokens);
    let prefix = json!({"messages": [{"role": "system", "content": long_system()}]});
    let expected =
        tokenizer::count_prompt("gpt-4o", ModelApi::ChatCompletions.tokenizer(), &prefix);
    assert_eq!(cached, expected / BLOCK * BLOCK);
    assert_eq!(cache.kept(), 1);
}

#[test]
fn short_prefixes_model_and_cache_key_make_misses() {
    let now = Instant::now();
    let strict = PrefixCache::new(100_000);
    let body = chat("q");
    let c = call(ModelApi::ChatCompletions, &body);
    strict.serve(&c, &body, now);
    assert_eq!(strict.serve(&c, &body, now), 0, "below cacheMinTokens");

    let cache = PrefixCache::new(0);
    cache.serve(&c, &body, now);
    let mut other_model = body.clone();
    other_model["model"] = json!("gpt-4.1");
    let c2 = call(ModelApi::ChatCompletions, &other_model);
    assert_eq!(cache.serve(&c2, &other_model, now), 0, "another model");
    let mut keyed = body.clone();
    keyed["prompt_cache_key"] = json!("tenant-a");
    let c3 = call(ModelApi::ChatCompletions, &keyed);
    assert_eq!(cache.serve(&c3, &keyed, now), 0, "another prompt_cache_key");
    assert!(cache.serve(&c3, &keyed, now) > 0, "the same key hits");

    let single = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let c4 = call(ModelApi::ChatCompletions, &single);
    cache.serve(&c4, &single, now);
    assert_eq!(cache.serve(&c4, &single, now), 0, "no prefix");
    let text = json!({"model": "gpt-4o", "prompt": long_system()});
    let c5 = call(ModelApi::Completions, &text);
    cache.serve(&c5, &text, now);
    assert_eq!(
        cache.serve(&c5, &text, now),
        0,
        "completions have no prefix"
    );
    assert_eq!(cache.kept(), 3);
}

#[test]
fn responses_prefix_is_instructions_items_and_chain() {
    let cache = PrefixCache::new(128);
    let now = Instant::now();
    let body =
        |last: &str| json!({"model": "gpt-4o", "instructions": long_system(), "input": last});
    let first = body("one");
    cache.serve(&call(ModelApi::Responses, &first), &first, now);
    let second = body("two");
    let c = call(ModelApi::Responses, &second);
    let cached = cache.serve(&c, &second, now);
    let instructions = tokenizer::count_text("gpt-4o", &long_system());
    assert_eq!(cached, (instructions / BLOCK * BLOCK).min(c.prompt_tokens));
    assert!(cached > 0);

    // A chain: the previous response's context counts, and keys the prefix.
    let chained = json!({"model": "gpt-4o", "input": "next", "previous_response_id": "resp_1"});
    let mut c = call(ModelApi::Responses, &chained);
    c.context_tokens = 300;
    c.prompt_tokens += 300;
    assert_eq!(cache.serve(&c, &chained, now), 0);
    assert_eq!(cache.serve(&c, &chained, now), 256);
    let mut other = chained.clone();
    other["previous_response_id"] = json!("resp_2");
    let mut c2 = call(ModelApi::Responses, &other);
    c2.context_tokens = 300;
    c2.prompt_tokens += 300;
    assert_eq!(cache.serve(&c2, &other, now), 0, "another chain");
}

#[test]
fn a_conversation_keys_the_prefix_by_its_id_and_revision() {
    let cache = PrefixCache::new(128);
    let now = Instant::now();
    let body = json!({"model": "gpt-4o", "input": "next", "conversation": "conv_1"});
    let turn = |body: &Value, revision: u64| {
        let mut c = call(ModelApi::Responses, body);
        c.context_tokens = 300;
        c.prompt_tokens += 300;
        c.conversation_revision = revision;
        c
    };
    assert_eq!(cache.serve(&turn(&body, 1), &body, now), 0);
    assert_eq!(
        cache.serve(&turn(&body, 1), &body, now),
        256,
        "the same items hit"
    );
    assert_eq!(
        cache.serve(&turn(&body, 2), &body, now),
        0,
        "changed items miss"
    );
    let mut other = body.clone();
    other["conversation"] = json!("conv_2");
    assert_eq!(
        cache.serve(&turn(&other, 2), &other, now),
        0,
        "another conversation"
    );
}

#[test]
fn entries_expire_after_the_ttl_and_the_least_recent_leaves_first() {
    let cache = PrefixCache::with_bounds(0, 2, Duration::from_secs(60));
    let now = Instant::now();
    let bodies: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|system| {
            json!({"model": "gpt-4o", "messages": [
                {"role": "system", "content": format!("{system} ").repeat(300)},
                {"role": "user", "content": "q"}
            ]})
        })
        .collect();
    let calls: Vec<Call> = bodies
        .iter()
        .map(|b| call(ModelApi::ChatCompletions, b))
        .collect();
    cache.serve(&calls[0], &bodies[0], now);
    cache.serve(&calls[1], &bodies[1], now);
    // Seeing `a` again makes `b` the least recent, so `c` evicts `b`.
    assert!(cache.serve(&calls[0], &bodies[0], now) > 0);
    cache.serve(&calls[2], &bodies[2], now);
    assert_eq!(cache.kept(), 2);
    assert!(cache.serve(&calls[0], &bodies[0], now) > 0);
    assert_eq!(cache.serve(&calls[1], &bodies[1], now), 0, "evicted");

    let later = now + Duration::from_secs(61);
    assert_eq!(cache.serve(&calls[0], &bodies[0], later), 0, "expired");
    assert!(cache.serve(&calls[0], &bodies[0], later + Duration::from_secs(59)) > 0);
}
