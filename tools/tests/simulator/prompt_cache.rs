//! Prompt caching over real HTTP: a prefix seen before on the same backend is reported as
//! `cached_tokens` (chat, streamed chat, responses) and recorded in the ledger; another
//! backend has not seen it.

use serde_json::{Value, json};
use spillway_tools::simulate::LedgerQuery;

use super::client::{post, sse_json};
use super::responses::{addr, start_many};

/// A system prompt of several hundred tokens.
fn system() -> String {
    "Route every request to the cheapest healthy backend that still has quota. ".repeat(30)
}

fn chat(question: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o", "stream": stream, "stream_options": {"include_usage": true},
    "messages": [
        {"role": "system", "content": system()},
        {"role": "user", "content": question}
    ]})
}

fn cached(usage: &Value, details: &str) -> u64 {
    usage[details]["cached_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("{details}.cached_tokens in {usage}"))
}

#[tokio::test]
async fn a_repeated_prefix_is_cached_on_the_backend_that_saw_it() {
    let sim = start_many(&["east", "west"], |b| b.cache_min_tokens = 256).await;
    let (east, west) = (addr(&sim, "east"), addr(&sim, "west"));

    let first = post(
        east,
        "/v1/chat/completions",
        &chat("Which pool?", false),
        &[],
    )
    .await;
    assert_eq!(cached(&first.json()["usage"], "prompt_tokens_details"), 0);
    let second = post(
        east,
        "/v1/chat/completions",
        &chat("Which backend?", false),
        &[],
    )
    .await;
    let usage = second.json()["usage"].clone();
    let hit = cached(&usage, "prompt_tokens_details");
    assert!(hit >= 256 && hit.is_multiple_of(128), "{usage}");
    assert!(hit < usage["prompt_tokens"].as_u64().expect("prompt tokens"));
    let elsewhere = post(
        west,
        "/v1/chat/completions",
        &chat("Which backend?", false),
        &[],
    )
    .await;
    assert_eq!(
        cached(&elsewhere.json()["usage"], "prompt_tokens_details"),
        0,
        "west never saw it"
    );

    let streamed = post(
        east,
        "/openai/v1/chat/completions",
        &chat("Which quota?", true),
        &[],
    )
    .await;
    let chunks = sse_json(&streamed.body);
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(cached(usage, "prompt_tokens_details"), hit);

    let keyed = {
        let mut body = chat("Which pool?", false);
        body["prompt_cache_key"] = json!("tenant-a");
        body
    };
    let first_keyed = post(east, "/v1/chat/completions", &keyed, &[]).await.json();
    assert_eq!(
        cached(&first_keyed["usage"], "prompt_tokens_details"),
        0,
        "a new cache key"
    );

    let responses =
        |input: &str| json!({"model": "gpt-4o", "instructions": system(), "input": input});
    let r1 = post(east, "/v1/responses", &responses("one"), &[])
        .await
        .json();
    assert_eq!(cached(&r1["usage"], "input_tokens_details"), 0);
    let r2 = post(east, "/v1/responses", &responses("two"), &[])
        .await
        .json();
    let responses_hit = cached(&r2["usage"], "input_tokens_details");
    assert!(
        responses_hit >= 256 && responses_hit.is_multiple_of(128),
        "{}",
        r2["usage"]
    );
    let mut streamed = responses("three");
    streamed["stream"] = json!(true);
    let events = sse_json(&post(east, "/v1/responses", &streamed, &[]).await.body);
    let done = &events.last().expect("response.completed")["response"];
    assert_eq!(
        cached(&done["usage"], "input_tokens_details"),
        responses_hit
    );

    let east_ledger = sim.ledger_query(&LedgerQuery {
        backend: Some("east".into()),
        since: None,
    });
    let per_entry: Vec<u64> = east_ledger
        .entries
        .iter()
        .map(|e| e.cached_tokens)
        .collect();
    assert_eq!(per_entry, [0, hit, hit, 0, 0, responses_hit, responses_hit]);
    assert_eq!(
        east_ledger.totals.cached_tokens,
        2 * hit + 2 * responses_hit
    );
    let west_ledger = sim.ledger_query(&LedgerQuery {
        backend: Some("west".into()),
        since: None,
    });
    assert_eq!(west_ledger.totals.cached_tokens, 0);
    assert_eq!(
        sim.ledger().totals.cached_tokens,
        east_ledger.totals.cached_tokens
    );
}

#[tokio::test]
async fn the_default_minimum_leaves_short_prefixes_uncached() {
    let sim = start_many(&["east"], |_| {}).await;
    let east = addr(&sim, "east");
    for question in ["a", "b"] {
        let answer = post(east, "/v1/chat/completions", &chat(question, false), &[])
            .await
            .json();
        assert_eq!(
            cached(&answer["usage"], "prompt_tokens_details"),
            0,
            "{} prompt tokens are below 1024",
            answer["usage"]["prompt_tokens"]
        );
    }
}
