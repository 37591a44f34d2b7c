//! The simulator on real sockets: every API shape non-streaming and streaming, usage in
//! streams, Azure `api-version` rules, auth, rate limits, faults, the ledger and the CLI; the
//! stateful responses API (stored responses, chains, background responses), the conversations
//! API (per backend, and responses created in a conversation), prompt caching and usage by
//! token type (reasoning models in both reporting shapes); images, audio, files and batches,
//! and upload bodies read streaming.

#[path = "simulator/admin_cli.rs"]
mod admin_cli;
#[path = "simulator/audio.rs"]
mod audio;
#[path = "simulator/background.rs"]
mod background;
#[path = "simulator/batches.rs"]
mod batches;
#[path = "simulator/client.rs"]
mod client;
#[path = "simulator/conversation_turns.rs"]
mod conversation_turns;
#[path = "simulator/conversations.rs"]
mod conversations;
#[path = "simulator/files.rs"]
mod files;
#[path = "simulator/images.rs"]
mod images;
#[path = "simulator/limits_faults.rs"]
mod limits_faults;
#[path = "simulator/prompt_cache.rs"]
mod prompt_cache;
#[path = "simulator/reasoning.rs"]
mod reasoning;
#[path = "simulator/responses.rs"]
mod responses;
#[path = "simulator/uploads.rs"]
mod uploads;

use std::net::SocketAddr;

use serde_json::{Value, json};
use spillway_sidecar::usage::Operation;
use spillway_sidecar::usage::tokenizer::{count_prompt, count_text};
use spillway_tools::simulate::{self, BackendConfig, SimConfig, SimHandle};

use client::{get, post, sse_events, sse_json};

/// Starts one backend with `config` on 127.0.0.1:0.
pub async fn start(config: BackendConfig) -> (SimHandle, SocketAddr) {
    let handle = simulate::start(SimConfig {
        backends: vec![config],
    })
    .await
    .expect("simulator starts");
    let addr = handle.backends()[0].addr();
    (handle, addr)
}

pub fn chat_body(stream: bool, include_usage: Option<bool>) -> Value {
    let mut body = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello to the gateway."}
        ],
        "stream": stream
    });
    if let Some(include) = include_usage {
        body["stream_options"] = json!({"include_usage": include});
    }
    body
}

const CLASSIC_CHAT: &str = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";

#[tokio::test]
async fn non_streaming_bodies_for_every_operation_and_dialect() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let body = chat_body(false, None);
    let prompt = count_prompt("gpt-4o", Operation::ChatCompletions, &body);

    let openai = post(
        addr,
        "/v1/chat/completions",
        &body,
        &[("x-request-id", "req-1")],
    )
    .await;
    assert_eq!(openai.status, 200);
    assert_eq!(openai.header("x-sim-backend"), Some("ptu"));
    assert_eq!(openai.header("x-request-id"), Some("req-1"));
    assert_eq!(openai.header("content-type"), Some("application/json"));
    let json = openai.json();
    assert_eq!(json["object"], "chat.completion");
    assert_eq!(json["model"], "gpt-4o");
    assert!(
        json["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    let content = json["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(json["usage"]["prompt_tokens"], prompt);
    assert_eq!(
        json["usage"]["completion_tokens"],
        count_text("gpt-4o", content)
    );
    assert_eq!(
        json["usage"]["completion_tokens"], 20,
        "default completion length"
    );
    assert!(json.get("prompt_filter_results").is_none());

    let mut azure_body = body.clone();
    azure_body.as_object_mut().map(|o| o.remove("model"));
    azure_body["max_tokens"] = json!(5);
    let azure = post(addr, CLASSIC_CHAT, &azure_body, &[]).await;
    assert_eq!(azure.status, 200);
    assert!(
        azure
            .header("x-request-id")
            .is_some_and(|id| id.len() == 36),
        "generated id"
    );
    let json = azure.json();
    assert_eq!(json["model"], "gpt-4o", "deployment names the model");
    assert_eq!(json["usage"]["completion_tokens"], 5);
    assert_eq!(json["choices"][0]["finish_reason"], "length");
    assert!(json["prompt_filter_results"].is_array());
    assert!(json["choices"][0]["content_filter_results"].is_object());

    let completions =
        json!({"model": "gpt-35-turbo-instruct", "prompt": "hello world", "max_tokens": 3});
    let text = post(addr, "/openai/v1/completions", &completions, &[])
        .await
        .json();
    assert_eq!(text["object"], "text_completion");
    assert_eq!(text["usage"]["prompt_tokens"], 2);
    assert_eq!(text["usage"]["completion_tokens"], 3);
    assert!(
        text["prompt_filter_results"].is_array(),
        "Azure v1 is Azure flavoured"
    );

    let responses = json!({"model": "gpt-4o", "input": "hello world", "max_output_tokens": 4});
    let resp = post(addr, "/v1/responses", &responses, &[]).await.json();
    assert_eq!(resp["object"], "response");
    assert_eq!(resp["usage"]["input_tokens"], 8);
    assert_eq!(resp["usage"]["output_tokens"], 4);
    assert_eq!(resp["usage"]["total_tokens"], 12);

    let embed = json!({"model": "text-embedding-3-small", "input": ["hello world", "hello"], "dimensions": 8});
    let vectors = post(addr, "/v1/embeddings", &embed, &[]).await.json();
    assert_eq!(vectors["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        vectors["data"][0]["embedding"].as_array().map(Vec::len),
        Some(8)
    );
    assert_eq!(vectors["usage"]["prompt_tokens"], 3);

    let ledger = sim.ledger();
    assert_eq!(ledger.entries.len(), 5);
    assert_eq!(ledger.entries[0].request_id, "req-1");
    assert_eq!(ledger.entries[1].deployment.as_deref(), Some("gpt-4o"));
    assert_eq!(ledger.entries[1].model, None);
    assert_eq!(ledger.totals.completion_tokens, 20 + 5 + 3 + 4);
    assert_eq!(ledger.totals.prompt_tokens, 2 * prompt + 2 + 8 + 3);
}

/// Streams one request and checks framing, usage and the ledger's copy of the bytes.
async fn check_stream(addr: SocketAddr, sim: &SimHandle, path: &str, body: &Value, usage: bool) {
    sim.clear_ledger();
    let got = post(addr, path, body, &[]).await;
    assert_eq!(got.status, 200, "{path}: {}", got.text());
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    assert_eq!(got.body_error, None);
    let events = sse_events(&got.body);
    let azure = path.starts_with("/openai/");
    if path.ends_with("responses") {
        assert_eq!(
            events.last().and_then(|e| e.0.as_deref()),
            Some("response.completed")
        );
        assert!(events.iter().all(|(_, d)| d != "[DONE]"));
    } else {
        assert_eq!(
            events.last().map(|e| e.1.as_str()),
            Some("[DONE]"),
            "{path}"
        );
        let chunks = sse_json(&got.body);
        let (last, rest) = chunks.split_last().expect("chunks");
        assert_eq!(
            last["choices"] == json!([]) && last.get("usage").is_some(),
            usage
        );
        if usage {
            assert_eq!(last["usage"]["completion_tokens"], 20);
            assert!(
                rest.iter().all(|c| c.get("usage") == Some(&Value::Null)),
                "{path}"
            );
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()), "{path}");
        }
        assert_eq!(
            chunks[0].get("prompt_filter_results").is_some(),
            azure,
            "{path}: Azure's first chunk carries prompt_filter_results"
        );
    }
    let entry = &sim.ledger().entries[0];
    assert!(entry.stream && entry.status == 200 && !entry.aborted);
    assert_eq!(entry.include_usage, usage, "{path}");
    assert_eq!(entry.completion_tokens, 20);
    assert_eq!(
        entry.raw_stream.as_deref().map(str::as_bytes),
        Some(&got.body[..])
    );
}

#[tokio::test]
async fn streams_for_every_shape_with_and_without_usage() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    for usage in [false, true] {
        let chat = chat_body(true, Some(usage));
        check_stream(addr, &sim, "/v1/chat/completions", &chat, usage).await;
        check_stream(addr, &sim, CLASSIC_CHAT, &chat, usage).await;
        check_stream(addr, &sim, "/openai/v1/chat/completions", &chat, usage).await;
        let completions = json!({"model": "gpt-4o", "prompt": "hi", "stream": true,
            "stream_options": {"include_usage": usage}});
        check_stream(addr, &sim, "/v1/completions", &completions, usage).await;
    }
    let responses = json!({"model": "gpt-4o", "input": "hi", "stream": true});
    check_stream(addr, &sim, "/v1/responses", &responses, true).await;
    // No stream_options at all: no usage chunk.
    check_stream(
        addr,
        &sim,
        "/v1/chat/completions",
        &chat_body(true, None),
        false,
    )
    .await;
}

#[tokio::test]
async fn usage_in_stream_false_ignores_include_usage() {
    let config = BackendConfig {
        usage_in_stream: false,
        ..BackendConfig::new("old")
    };
    let (sim, addr) = start(config).await;
    check_stream(
        addr,
        &sim,
        "/v1/chat/completions",
        &chat_body(true, Some(true)),
        false,
    )
    .await;
}

#[tokio::test]
async fn azure_api_version_rules() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let old = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01";
    let rejected = post(addr, old, &chat_body(true, Some(true)), &[]).await;
    assert_eq!(rejected.status, 400);
    assert_eq!(
        rejected.json()["error"]["message"],
        "Unrecognized request argument supplied: stream_options"
    );
    assert_eq!(rejected.json()["error"]["type"], "invalid_request_error");
    assert_eq!(
        post(addr, old, &chat_body(true, None), &[]).await.status,
        200
    );
    let preview = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-09-01-preview";
    assert_eq!(
        post(addr, preview, &chat_body(true, Some(true)), &[])
            .await
            .status,
        200
    );
    // The v1 surface and OpenAI take stream_options regardless.
    let v1 = post(
        addr,
        "/openai/v1/chat/completions?api-version=2024-06-01",
        &chat_body(true, Some(true)),
        &[],
    )
    .await;
    assert_eq!(v1.status, 200);
    let missing = post(
        addr,
        "/openai/deployments/gpt-4o/chat/completions",
        &chat_body(false, None),
        &[],
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "404");

    let statuses: Vec<u16> = sim.ledger().entries.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [400, 200, 200, 200, 404]);
    assert!(sim.ledger().entries[0].stream_options);
    assert_eq!(
        sim.ledger().entries[0].prompt_tokens,
        0,
        "refused requests bill nothing"
    );
}

#[tokio::test]
async fn api_key_is_required_when_configured() {
    let config = BackendConfig {
        api_key: Some("sekret".into()),
        ..BackendConfig::new("secure")
    };
    let (sim, addr) = start(config).await;
    let body = chat_body(false, None);
    let none = post(addr, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], "invalid_api_key");
    let wrong = post(addr, CLASSIC_CHAT, &body, &[("api-key", "nope")]).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["error"]["code"], "401");
    let header = post(
        addr,
        CLASSIC_CHAT,
        &body,
        &[("api-key", "sekret"), ("traceparent", "00-abc-def-01")],
    )
    .await;
    assert_eq!(header.status, 200);
    let bearer = post(
        addr,
        "/v1/chat/completions",
        &body,
        &[("authorization", "Bearer sekret")],
    )
    .await;
    assert_eq!(bearer.status, 200);
    let entries = sim.ledger().entries;
    assert_eq!(entries[2].api_key.as_deref(), Some("sekret"));
    assert_eq!(entries[2].traceparent.as_deref(), Some("00-abc-def-01"));
    assert_eq!(entries[3].authorization.as_deref(), Some("Bearer sekret"));
}

#[tokio::test]
async fn unknown_routes_and_bad_bodies() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let unknown = post(addr, "/v1/models/x", &json!({}), &[]).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["type"], "invalid_request_error");
    assert_eq!(unknown.header("x-sim-backend"), Some("ptu"));
    let bad = client::send(
        addr,
        http::Method::POST,
        "/v1/chat/completions",
        &[],
        "{nope",
    )
    .await
    .expect("response");
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("parse the JSON"))
    );
    let no_model = post(addr, "/v1/chat/completions", &json!({"messages": []}), &[]).await;
    assert_eq!(no_model.status, 400);
    assert_eq!(no_model.json()["error"]["param"], "model");
    let wrong_method = get(addr, "/v1/chat/completions").await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(sim.ledger().totals.requests, 4);
}
