//! Usage by token type over real HTTP: a reasoning model's hidden reasoning tokens in both
//! reporting shapes (`reasoningUsage: included | separate`), JSON and streamed, chat and
//! responses, within the requested maximum; 0 reasoning for other models; a cut stream
//! billing its reasoning plus the deltas sent; ledger entries and totals per type; cached
//! tokens as deterministic as before.

use serde_json::{Value, json};
use spillway_sidecar::usage::Operation;
use spillway_sidecar::usage::tokenizer::{count_prompt, count_text};
use spillway_tools::simulate::{
    BackendConfig, FaultMode, FaultSpec, LedgerEntry, ReasoningUsage, Totals,
};

use super::client::{post, sse_json};
use super::start;

/// Default visible completion length of a backend.
const VISIBLE: u64 = 20;

fn chat(model: &str, stream: bool, max: Option<u64>) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Think, then answer in one line."},
            {"role": "user", "content": "Which backend has quota left?"}
        ],
        "stream": stream,
        "stream_options": {"include_usage": true}
    });
    if !stream {
        body.as_object_mut().map(|o| o.remove("stream_options"));
    }
    if let Some(max) = max {
        body["max_completion_tokens"] = json!(max);
    }
    body
}

fn respond(model: &str, stream: bool, max: Option<u64>) -> Value {
    let mut body = json!({"model": model, "input": "Which pool spills first?", "stream": stream});
    if let Some(max) = max {
        body["max_output_tokens"] = json!(max);
    }
    body
}

/// The reasoning the simulator documents: `2·V + ⌊P/4⌋`, or within a maximum `M`
/// `min(that, ⌊M/2⌋)` with the visible answer taking the rest. Returns (visible, reasoning).
fn planned(prompt: u64, max: Option<u64>) -> (u64, u64) {
    match max {
        None => (VISIBLE, 2 * VISIBLE + prompt / 4),
        Some(max) => {
            let reasoning = (2 * max + prompt / 4).min(max / 2);
            (max - reasoning, reasoning)
        }
    }
}

/// The completion count a shape reports.
fn reported(shape: ReasoningUsage, visible: u64, reasoning: u64) -> u64 {
    match shape {
        ReasoningUsage::Included => visible + reasoning,
        ReasoningUsage::Separate => visible,
    }
}

/// Checks a chat `usage`.
fn check_chat(usage: &Value, shape: ReasoningUsage, prompt: u64, visible: u64, reasoning: u64) {
    assert_eq!(usage["prompt_tokens"], prompt, "{usage}");
    assert_eq!(
        usage["completion_tokens"],
        reported(shape, visible, reasoning),
        "{shape:?}: {usage}"
    );
    assert_eq!(
        usage["total_tokens"],
        prompt + visible + reasoning,
        "{usage}"
    );
    assert_eq!(
        usage["completion_tokens_details"],
        json!({"reasoning_tokens": reasoning, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0})
    );
    assert_eq!(usage["prompt_tokens_details"]["audio_tokens"], 0);
    assert!(usage["prompt_tokens_details"]["cached_tokens"].is_u64());
}

/// Checks a responses `usage`.
fn check_responses(
    usage: &Value,
    shape: ReasoningUsage,
    prompt: u64,
    visible: u64,
    reasoning: u64,
) {
    assert_eq!(usage["input_tokens"], prompt, "{usage}");
    assert_eq!(
        usage["output_tokens"],
        reported(shape, visible, reasoning),
        "{shape:?}: {usage}"
    );
    assert_eq!(
        usage["output_tokens_details"]["reasoning_tokens"],
        reasoning
    );
    assert_eq!(
        usage["total_tokens"],
        prompt + visible + reasoning,
        "{usage}"
    );
    assert!(usage["input_tokens_details"]["cached_tokens"].is_u64());
}

/// The visible text of a chat stream.
fn streamed_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

fn billed(entry: &LedgerEntry) -> (u64, u64, u64) {
    (
        entry.prompt_tokens,
        entry.completion_tokens,
        entry.reasoning_tokens,
    )
}

#[tokio::test]
async fn a_reasoning_model_bills_hidden_tokens_in_both_shapes() {
    for shape in [ReasoningUsage::Included, ReasoningUsage::Separate] {
        let config = BackendConfig {
            reasoning_usage: shape,
            ..BackendConfig::new("thinking")
        };
        let (sim, addr) = start(config).await;
        let mut expected = Vec::new();

        for max in [None, Some(10)] {
            let body = chat("o3-mini", false, max);
            let prompt = count_prompt("o3-mini", Operation::ChatCompletions, &body);
            let (visible, reasoning) = planned(prompt, max);
            let json = post(addr, "/v1/chat/completions", &body, &[]).await.json();
            check_chat(&json["usage"], shape, prompt, visible, reasoning);
            let content = json["choices"][0]["message"]["content"]
                .as_str()
                .unwrap_or_default();
            assert_eq!(
                count_text("o3-mini", content),
                visible,
                "only the answer shows"
            );
            let finish = if max.is_some() { "length" } else { "stop" };
            assert_eq!(json["choices"][0]["finish_reason"], finish);
            expected.push((prompt, visible + reasoning, reasoning));

            let body = chat("o3-mini", true, max);
            let got = post(addr, "/openai/v1/chat/completions", &body, &[]).await;
            let chunks = sse_json(&got.body);
            let usage = &chunks.last().expect("usage chunk")["usage"];
            check_chat(usage, shape, prompt, visible, reasoning);
            assert_eq!(count_text("o3-mini", &streamed_text(&chunks)), visible);
            expected.push((prompt, visible + reasoning, reasoning));
        }

        for max in [None, Some(9)] {
            let body = respond("GPT-5", false, max);
            let prompt = count_prompt("GPT-5", Operation::Responses, &body);
            let (visible, reasoning) = planned(prompt, max);
            let json = post(addr, "/v1/responses", &body, &[]).await.json();
            check_responses(&json["usage"], shape, prompt, visible, reasoning);
            expected.push((prompt, visible + reasoning, reasoning));

            let body = respond("GPT-5", true, max);
            let got = post(addr, "/v1/responses", &body, &[]).await;
            let events = sse_json(&got.body);
            let done = events.last().expect("response.completed");
            assert_eq!(done["type"], "response.completed");
            check_responses(
                &done["response"]["usage"],
                shape,
                prompt,
                visible,
                reasoning,
            );
            assert!(
                events
                    .iter()
                    .all(|e| !e["type"].as_str().unwrap_or_default().contains("reasoning")),
                "reasoning is never streamed"
            );
            expected.push((prompt, visible + reasoning, reasoning));
        }

        let ledger = sim.ledger();
        let entries: Vec<_> = ledger.entries.iter().map(billed).collect();
        assert_eq!(
            entries, expected,
            "{shape:?}: completion includes reasoning"
        );
        let sum = |f: fn(&(u64, u64, u64)) -> u64| expected.iter().map(f).sum::<u64>();
        assert_eq!(
            ledger.totals,
            Totals {
                requests: 8,
                prompt_tokens: sum(|e| e.0),
                completion_tokens: sum(|e| e.1),
                total_tokens: sum(|e| e.0 + e.1),
                cached_tokens: 0,
                reasoning_tokens: sum(|e| e.2),
                ..Totals::default()
            }
        );
        assert!(ledger.totals.reasoning_tokens > 0);
    }
}

#[tokio::test]
async fn other_models_report_zero_reasoning_and_listed_ones_reason() {
    let config = BackendConfig {
        reasoning_models: vec!["Thinker".into()],
        ..BackendConfig::new("ptu")
    };
    let (sim, addr) = start(config).await;
    let plain = chat("gpt-4o", false, None);
    let prompt = count_prompt("gpt-4o", Operation::ChatCompletions, &plain);
    let json = post(addr, "/v1/chat/completions", &plain, &[]).await.json();
    check_chat(&json["usage"], ReasoningUsage::Included, prompt, VISIBLE, 0);
    let streamed = post(
        addr,
        "/v1/chat/completions",
        &chat("gpt-4o", true, None),
        &[],
    )
    .await;
    let usage = &sse_json(&streamed.body).last().expect("usage chunk")["usage"].clone();
    check_chat(usage, ReasoningUsage::Included, prompt, VISIBLE, 0);
    let body = respond("gpt-4o", false, None);
    let prompt = count_prompt("gpt-4o", Operation::Responses, &body);
    let json = post(addr, "/v1/responses", &body, &[]).await.json();
    check_responses(&json["usage"], ReasoningUsage::Included, prompt, VISIBLE, 0);
    // Legacy completions never reason, whatever the model.
    let legacy = json!({"model": "o1", "prompt": "hello world", "max_tokens": 6});
    let json = post(addr, "/v1/completions", &legacy, &[]).await.json();
    assert_eq!(json["usage"]["completion_tokens"], 6);
    assert!(json["usage"].get("completion_tokens_details").is_none());

    // A listed deployment reasons, named on an Azure classic path (ignoring case).
    let listed = "/openai/deployments/thinker/chat/completions?api-version=2024-10-21";
    let mut body = chat("x", false, None);
    body.as_object_mut().map(|o| o.remove("model"));
    let prompt = count_prompt("thinker", Operation::ChatCompletions, &body);
    let json = post(addr, listed, &body, &[]).await.json();
    let (visible, reasoning) = planned(prompt, None);
    check_chat(
        &json["usage"],
        ReasoningUsage::Included,
        prompt,
        visible,
        reasoning,
    );

    let reasoning_billed: Vec<u64> = sim
        .ledger()
        .entries
        .iter()
        .map(|e| e.reasoning_tokens)
        .collect();
    assert_eq!(reasoning_billed, [0, 0, 0, 0, reasoning]);
    assert_eq!(sim.ledger().totals.reasoning_tokens, reasoning);
}

#[tokio::test]
async fn a_cut_stream_bills_its_reasoning_and_the_deltas_sent() {
    let config = BackendConfig {
        reasoning_usage: ReasoningUsage::Separate,
        ..BackendConfig::new("ptu")
    };
    let (sim, addr) = start(config).await;
    // Chat: the role chunk and two deltas; responses: four lifecycle events and two deltas.
    for (path, body, after, operation) in [
        (
            "/v1/chat/completions",
            chat("o4-mini", true, None),
            3,
            Operation::ChatCompletions,
        ),
        (
            "/v1/responses",
            respond("o4-mini", true, None),
            6,
            Operation::Responses,
        ),
    ] {
        let reset = FaultSpec {
            after_chunks: Some(after),
            count: Some(1),
            ..FaultSpec::new(FaultMode::ResetMidStream)
        };
        sim.backends()[0].add_faults(&[reset]).expect("valid fault");
        let got = post(addr, path, &body, &[]).await;
        assert!(got.body_error.is_some(), "{path}: the stream was cut");
        let prompt = count_prompt("o4-mini", operation, &body);
        let (_, reasoning) = planned(prompt, None);
        let entry = sim.ledger().entries.pop().expect("entry");
        assert_eq!(entry.fault.as_deref(), Some("resetMidStream"));
        assert_eq!(billed(&entry), (prompt, reasoning + 2, reasoning), "{path}");
    }
}

#[tokio::test]
async fn cached_tokens_stay_deterministic_for_a_reasoning_model() {
    let system = "Route every request to the cheapest healthy backend with quota. ".repeat(30);
    let ask = |question: &str| {
        json!({"model": "o3", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question}
        ]})
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let config = BackendConfig {
            cache_min_tokens: 256,
            ..BackendConfig::new("ptu")
        };
        let (sim, addr) = start(config).await;
        let mut usages = Vec::new();
        for question in ["Which pool?", "Which backend?"] {
            let json = post(addr, "/v1/chat/completions", &ask(question), &[])
                .await
                .json();
            usages.push(json["usage"].clone());
        }
        let cached = usages[1]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .expect("cached tokens");
        assert!(cached >= 256 && cached.is_multiple_of(128), "{}", usages[1]);
        assert_eq!(usages[0]["prompt_tokens_details"]["cached_tokens"], 0);
        let totals = sim.ledger().totals;
        assert_eq!(totals.cached_tokens, cached);
        let reasoning: u64 = usages
            .iter()
            .map(|u| {
                u["completion_tokens_details"]["reasoning_tokens"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(totals.reasoning_tokens, reasoning);
        assert_eq!(totals.completion_tokens, 2 * VISIBLE + reasoning);
        runs.push(usages);
    }
    assert_eq!(runs[0], runs[1], "the same calls report the same usage");
}

#[tokio::test]
async fn a_chain_carries_the_visible_answer_but_not_the_reasoning() {
    let (_sim, addr) = start(BackendConfig::new("ptu")).await;
    let first = json!({"model": "o3", "input": "Name a colour.", "max_output_tokens": 10});
    let first_in = count_prompt("o3", Operation::Responses, &first);
    let first = post(addr, "/v1/responses", &first, &[]).await.json();
    check_responses(&first["usage"], ReasoningUsage::Included, first_in, 5, 5);
    let own = json!({"model": "o3", "input": "And another?", "max_output_tokens": 8,
        "previous_response_id": first["id"]});
    let own_in = count_prompt("o3", Operation::Responses, &own);
    let second = post(addr, "/v1/responses", &own, &[]).await.json();
    let context = first_in + 5;
    check_responses(
        &second["usage"],
        ReasoningUsage::Included,
        own_in + context,
        4,
        4,
    );
}
