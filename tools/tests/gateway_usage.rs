//! Streaming and token accounting through a real gateway: the client sees exactly the
//! backend's bytes except the usage chunk the gateway injected, and the gateway's usage record
//! equals what the simulated backend billed — for JSON, streams with usage, streams without
//! usage (tokenizer), client disconnects and mid-stream resets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gateway, Sim, chat_body, open, pool_yaml};
use http_body_util::BodyExt;
use serde_json::{Value, json};

async fn stack(sim_yaml: &str) -> (Sim, Gateway) {
    let sim = Sim::start(sim_yaml).await;
    let backends: String = sim
        .urls
        .iter()
        .map(|(name, url)| format!("    - name: {name}\n      url: {url}\n"))
        .collect();
    let gw = Gateway::start(&pool_yaml(
        "chat",
        &["gpt-4o", "gpt-35-turbo"],
        &backends,
        "",
    ))
    .await;
    (sim, gw)
}

/// What a client that did not ask for usage must receive: the backend's events minus the
/// usage-only chunk, and minus the `"usage":null` member the option adds to other chunks.
fn without_injected_usage(raw: &str) -> String {
    let mut out = String::new();
    for event in raw.split_inclusive("\n\n") {
        let data = event.trim_end().strip_prefix("data: ").unwrap_or("");
        let chunk = serde_json::from_str::<Value>(data).unwrap_or_default();
        if chunk["choices"] == json!([]) && chunk["usage"].is_object() {
            continue;
        }
        out.push_str(
            &event
                .replace(",\"usage\":null", "")
                .replace("\"usage\":null,", ""),
        );
    }
    out
}

async fn body_text(url: &str, request_id: &str, body: Value) -> String {
    let response = open(url, &[("x-request-id", request_id)], body).await;
    assert_eq!(response.status(), 200);
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn usage_of(entry: &Value) -> Value {
    json!({"prompt_tokens": entry["promptTokens"], "completion_tokens": entry["completionTokens"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_bytes_equal_the_backends_except_the_injected_usage() {
    let (sim, gw) = stack("backends:\n  - name: east\n").await;
    for (path, flavor) in [
        ("/v1/chat/completions", "openai"),
        (
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            "azure",
        ),
    ] {
        let url = format!("{}{path}", gw.url);
        let id = format!("strip-{flavor}");
        let got = body_text(&url, &id, chat_body("gpt-4o", true)).await;
        let entry = sim.entry(&id).await;
        assert_eq!(entry["includeUsage"], true, "the gateway asked for usage");
        let raw = entry["rawStream"].as_str().unwrap();
        assert_ne!(got, raw);
        assert_eq!(got, without_injected_usage(raw), "{flavor}: client bytes");
        assert!(!got.contains("\"usage\""), "{flavor}: no usage visible");
        let record = gw.record(&id).await;
        assert_eq!(record["usage"], usage_of(&entry));
        assert_eq!(record["estimated"], false);

        // A client that asked for usage gets the backend's bytes untouched.
        let id = format!("keep-{flavor}");
        let mut body = chat_body("gpt-4o", true);
        body["stream_options"] = json!({"include_usage": true});
        let got = body_text(&url, &id, body).await;
        let entry = sim.entry(&id).await;
        assert_eq!(got, entry["rawStream"].as_str().unwrap());
        assert_eq!(gw.record(&id).await["usage"], usage_of(&entry));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_equals_the_ledger_for_json_and_for_tokenizer_counted_streams() {
    let (sim, gw) = stack("backends:\n  - name: old\n    usageInStream: false\n").await;
    let reply = gw.chat("json-1", chat_body("gpt-4o", false)).await;
    assert_eq!(reply.status, 200);
    let entry = sim.entry("json-1").await;
    let record = gw.record("json-1").await;
    assert_eq!(record["usage"], usage_of(&entry));
    assert_eq!(
        (record["estimated"].as_bool(), record["backend"].as_str()),
        (Some(false), Some("old"))
    );

    for model in ["gpt-4o", "gpt-35-turbo"] {
        let id = format!("tok-{model}");
        let mut body = chat_body(model, true);
        body["messages"] = json!([
            {"role": "system", "content": "You are a spillway engineer."},
            {"role": "user", "name": "ops", "content": [{"type": "text", "text": "How much water?"}]}
        ]);
        let got = body_text(&format!("{}/v1/chat/completions", gw.url), &id, body).await;
        assert!(got.contains("[DONE]"));
        let entry = sim.entry(&id).await;
        assert_eq!(
            entry["includeUsage"], false,
            "this backend reports no stream usage"
        );
        let record = gw.record(&id).await;
        assert_eq!(record["estimated"], true, "counted with the tokenizer");
        assert_eq!(
            record["usage"],
            usage_of(&entry),
            "{model}: tokenizer count equals the backend's bill"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_stream_still_learns_the_real_usage() {
    let (sim, gw) = stack("backends:\n  - name: east\n    tokensPerSecond: 100\n").await;
    let mut body = chat_body("gpt-4o", true);
    body["max_tokens"] = json!(40);
    let response = open(
        &format!("{}/v1/chat/completions", gw.url),
        &[("x-request-id", "gone-1")],
        body,
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut incoming = response.into_body();
    let first = incoming.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(incoming); // the client goes away after the first chunk

    let record = gw.record("gone-1").await;
    let entry = sim.entry("gone-1").await;
    assert_eq!(record["client_disconnected"], true);
    assert_eq!(
        entry["aborted"], false,
        "the gateway kept reading to the end"
    );
    assert_eq!(entry["completionTokens"], 40);
    assert_eq!(record["usage"], usage_of(&entry));
    assert_eq!(record["estimated"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_before_the_response_starts_is_still_recorded() {
    let (sim, gw) = stack("backends:\n  - name: east\n").await;
    sim.set_faults(
        "east",
        json!({"mode": "slowFirstByte", "delayMs": 600, "count": 1}),
    )
    .await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let call = open(
        &url,
        &[("x-request-id", "early-1")],
        chat_body("gpt-4o", false),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(150), call)
            .await
            .is_err(),
        "the client gives up first"
    );
    let record = gw.record("early-1").await;
    let entry = sim.entry("early-1").await;
    assert_eq!(
        entry["status"], 200,
        "the backend served and billed the call"
    );
    assert_eq!(record["client_disconnected"], true);
    assert_eq!(record["usage"], usage_of(&entry));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_stream_ends_the_client_stream_with_an_error_and_counts_what_was_sent() {
    let (sim, gw) = stack("backends:\n  - name: east\n").await;
    sim.set_faults(
        "east",
        json!({"mode": "resetMidStream", "afterChunks": 4, "count": 1}),
    )
    .await;
    let response = open(
        &format!("{}/v1/chat/completions", gw.url),
        &[("x-request-id", "reset-1")],
        chat_body("gpt-4o", true),
    )
    .await;
    assert_eq!(response.status(), 200);
    let result = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "the client must see the stream break, not a clean end"
    );
    let entry = sim.entry("reset-1").await;
    let record = gw.record("reset-1").await;
    assert_eq!(record["estimated"], true);
    assert_eq!(
        record["usage"],
        usage_of(&entry),
        "tokens sent before the reset"
    );
}
