//! Stateful Responses API through a real `spillway run` in front of a real simulator whose
//! backends each keep their own stored responses (as separate Azure resources do): every
//! call addressed to a response id, and every create that continues one, reaches the backend
//! that created it over a weighted two-backend pool; an id the gateway does not know is found
//! by asking the backends; another app never reaches it; the holder's breaker open is a
//! clear 503, never a silent answer from elsewhere; a background response is counted once;
//! token sums per app equal the simulator's ledger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gateway, Reply, Sim, http, pool_yaml};
use http::Method;
use serde_json::{Value, json};

fn sha256(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const SIM: &str =
    "backends:\n  - name: east\n    backgroundMs: 300\n  - name: west\n    backgroundMs: 300\n";

fn manifests(sim: &Sim, extra: &str) -> String {
    manifests_with(sim, extra, "")
}

fn manifests_with(sim: &Sim, extra: &str, gateway_extra: &str) -> String {
    let backends = format!(
        "    - name: east\n      url: {}\n      weight: 1\n    - name: west\n      url: {}\n      weight: 1\n",
        sim.url("east"),
        sim.url("west")
    );
    format!(
        "{}---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw}}\nspec:\n  identity: {{apiKeys: [{{appId: app-a, keySha256: {}}}, {{appId: app-b, keySha256: {}}}]}}\n{gateway_extra}",
        pool_yaml("chat", &["gpt-4o"], &backends, extra),
        sha256("key-a"),
        sha256("key-b"),
    )
}

async fn call(gw: &Gateway, method: Method, path: &str, key: &str, id: &str, body: Value) -> Reply {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    http(
        method,
        &format!("{}{path}", gw.url),
        &[
            ("api-key", key),
            ("content-type", "application/json"),
            ("x-request-id", id),
        ],
        body,
    )
    .await
}

async fn create(gw: &Gateway, path: &str, id: &str, body: Value) -> Reply {
    let reply = call(gw, Method::POST, path, "key-a", id, body).await;
    assert_eq!(reply.status, 200, "{id}: {}", reply.text());
    reply
}

/// Sum of input and output tokens the gateway recorded per app (from its recent records).
async fn recorded_tokens(gw: &Gateway) -> (u64, usize) {
    let usage = http(Method::GET, &format!("{}/admin/usage", gw.admin), &[], "")
        .await
        .json();
    let records = usage["recent"].as_array().unwrap();
    let sum = records
        .iter()
        .map(|r| {
            r["usage"]["prompt_tokens"].as_u64().unwrap_or(0)
                + r["usage"]["completion_tokens"].as_u64().unwrap_or(0)
        })
        .sum();
    (sum, records.len())
}

async fn billed_tokens(sim: &Sim) -> u64 {
    let mut total = 0;
    for backend in ["east", "west"] {
        let totals = &sim.ledger(backend).await["totals"];
        total += totals["promptTokens"].as_u64().unwrap_or(0)
            + totals["completionTokens"].as_u64().unwrap_or(0);
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_and_every_id_addressed_call_stay_on_the_creating_backend() {
    let sim = Sim::start(SIM).await;
    let gw = Gateway::start(&manifests(&sim, "")).await;
    let first = create(
        &gw,
        "/openai/responses?api-version=2025-03-01-preview",
        "turn-0",
        json!({"model": "gpt-4o", "input": "Tell me a story."}),
    )
    .await;
    let home = first.header("x-spillway-backend").to_owned();
    let mut previous = first.json()["id"].as_str().unwrap().to_owned();
    let root = previous.clone();
    for turn in 1..12 {
        // Alternate path families and streaming; every turn must land where the chain lives.
        let (path, stream) = match turn % 3 {
            0 => ("/v1/responses", false),
            1 => ("/openai/v1/responses", true),
            _ => ("/openai/responses?api-version=2025-03-01-preview", false),
        };
        let reply = create(
            &gw,
            path,
            &format!("turn-{turn}"),
            json!({"model": "gpt-4o", "input": "And then?", "previous_response_id": previous, "stream": stream}),
        )
        .await;
        assert_eq!(reply.header("x-spillway-backend"), home, "turn {turn}");
        previous = if stream {
            let text = reply.text();
            let created = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .find_map(|d| {
                    serde_json::from_str::<Value>(d)
                        .ok()?
                        .get("response")
                        .cloned()
                })
                .expect("response.created");
            created["id"].as_str().unwrap().to_owned()
        } else {
            reply.json()["id"].as_str().unwrap().to_owned()
        };
    }
    // Retrieve, input items, delete: the holder, on every path family.
    for path in [
        format!("/v1/responses/{root}"),
        format!("/openai/v1/responses/{root}"),
        format!("/openai/responses/{root}?api-version=2025-03-01-preview"),
    ] {
        let got = call(&gw, Method::GET, &path, "key-a", "get", Value::Null).await;
        assert_eq!(got.status, 200, "{path}: {}", got.text());
        assert_eq!(got.json()["id"], root.as_str());
        assert_eq!(got.header("x-spillway-backend"), home);
    }
    let items = call(
        &gw,
        Method::GET,
        &format!("/v1/responses/{root}/input_items?limit=5&order=asc"),
        "key-a",
        "items",
        Value::Null,
    )
    .await;
    assert_eq!(items.status, 200, "{}", items.text());
    assert_eq!(items.json()["object"], "list");
    // Another app never reaches it.
    let other = call(
        &gw,
        Method::GET,
        &format!("/v1/responses/{root}"),
        "key-b",
        "b",
        Value::Null,
    )
    .await;
    assert_eq!(other.status, 404, "{}", other.text());
    let deleted = call(
        &gw,
        Method::DELETE,
        &format!("/v1/responses/{root}"),
        "key-a",
        "del",
        Value::Null,
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["deleted"], true);
    let gone = call(
        &gw,
        Method::GET,
        &format!("/v1/responses/{root}"),
        "key-a",
        "gone",
        Value::Null,
    )
    .await;
    assert_eq!(gone.status, 404, "{}", gone.text());

    // Input token counting: routed like a create, nothing billed.
    let counted = create(
        &gw,
        "/v1/responses/input_tokens",
        "count",
        json!({"model": "gpt-4o", "input": "How many tokens is this?"}),
    )
    .await;
    assert!(
        counted.json()["input_tokens"].as_u64().unwrap() > 0,
        "{}",
        counted.text()
    );

    // Token sums equal the simulator's ledger.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorded_tokens(&gw).await.0, billed_tokens(&sim).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_searched_and_an_unavailable_holder_is_a_clear_503() {
    let sim = Sim::start(SIM).await;
    // One 500 opens a backend's breaker for 30 s.
    let breaker = "  circuitBreaker:\n    rules:\n      - name: one\n        failureCondition: {count: 1, interval: 10s, statusCodeRanges: [{min: 500, max: 599}]}\n        tripDuration: 30s\n";
    let gw = Gateway::start(&manifests(&sim, breaker)).await;
    // A response created around the gateway (or forgotten by it) is found by asking.
    let direct = http(
        Method::POST,
        &format!("{}/v1/responses", sim.url("west")),
        &[("content-type", "application/json")],
        json!({"model": "gpt-4o", "input": "hi"}).to_string(),
    )
    .await;
    assert_eq!(direct.status, 200, "{}", direct.text());
    let id = direct.json()["id"].as_str().unwrap().to_owned();
    let found = call(
        &gw,
        Method::GET,
        &format!("/v1/responses/{id}"),
        "key-a",
        "find",
        Value::Null,
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.text());
    assert_eq!(found.header("x-spillway-backend"), "west");
    let none = call(
        &gw,
        Method::GET,
        "/v1/responses/resp_nowhere",
        "key-a",
        "none",
        Value::Null,
    )
    .await;
    assert_eq!(none.status, 404, "{}", none.text());
    assert!(
        none.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resp_nowhere")
    );

    // The holder's breaker opens: the chain is refused with a reason, not sent elsewhere.
    let first = create(
        &gw,
        "/v1/responses",
        "c0",
        json!({"model": "gpt-4o", "input": "x"}),
    )
    .await;
    let home = first.header("x-spillway-backend").to_owned();
    let chained = first.json()["id"].as_str().unwrap().to_owned();
    sim.set_faults(&home, json!({"mode": "status", "status": 500, "count": 1}))
        .await;
    // Fail one call on the holder: retrieve it (a 500 from the holder).
    let failed = call(
        &gw,
        Method::GET,
        &format!("/v1/responses/{chained}"),
        "key-a",
        "fail",
        Value::Null,
    )
    .await;
    assert_eq!(failed.status, 500, "{}", failed.text());
    let refused = call(
        &gw,
        Method::POST,
        "/v1/responses",
        "key-a",
        "c1",
        json!({"model": "gpt-4o", "input": "y", "previous_response_id": chained}),
    )
    .await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "response_backend_unavailable");
    assert!(
        error["message"].as_str().unwrap().contains(&home),
        "{error}"
    );
    assert!(!refused.header("retry-after").is_empty());
    let get = call(
        &gw,
        Method::GET,
        &format!("/v1/responses/{chained}"),
        "key-a",
        "g",
        Value::Null,
    )
    .await;
    assert_eq!(get.status, 503, "{}", get.text());
    // New conversations still work on the other backend.
    let fresh = create(
        &gw,
        "/v1/responses",
        "fresh",
        json!({"model": "gpt-4o", "input": "z"}),
    )
    .await;
    assert_ne!(fresh.header("x-spillway-backend"), home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_response_is_counted_once_when_it_finishes() {
    let sim = Sim::start(SIM).await;
    let gw = Gateway::start(&manifests(&sim, "")).await;
    let created = create(
        &gw,
        "/v1/responses",
        "bg-create",
        json!({"model": "gpt-4o", "input": "Write at length.", "background": true}),
    )
    .await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        gw.record("bg-create").await["usage"]["completion_tokens"],
        0
    );
    let mut polls = 0;
    loop {
        polls += 1;
        let poll = call(
            &gw,
            Method::GET,
            &format!("/v1/responses/{id}"),
            "key-a",
            &format!("poll-{polls}"),
            Value::Null,
        )
        .await;
        assert_eq!(poll.status, 200, "{}", poll.text());
        if poll.json()["status"] == "completed" {
            break;
        }
        assert!(polls < 100, "completed within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More polls after completion count nothing more.
    for extra in 0..3 {
        let again = call(
            &gw,
            Method::GET,
            &format!("/v1/responses/{id}"),
            "key-a",
            &format!("again-{extra}"),
            Value::Null,
        )
        .await;
        assert_eq!(again.status, 200);
    }
    let done = gw.record(&format!("poll-{polls}")).await;
    assert_eq!(done["app_id"], "app-a");
    assert!(
        done["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{done}"
    );
    for extra in 0..3 {
        let record = gw.record(&format!("again-{extra}")).await;
        assert_eq!(record["usage"]["completion_tokens"], 0, "{record}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        recorded_tokens(&gw).await.0,
        billed_tokens(&sim).await,
        "counted once = ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_and_its_responses_stay_on_the_backend_that_holds_it() {
    let sim = Sim::start(SIM).await;
    let gw = Gateway::start(&manifests(&sim, "")).await;
    let created = create(
        &gw,
        "/v1/conversations",
        "conv",
        json!({"items": [{"role": "user", "content": "Remember the number 7."}], "metadata": {"topic": "numbers"}}),
    )
    .await;
    let home = created.header("x-spillway-backend").to_owned();
    let conversation = created.json()["id"].as_str().unwrap().to_owned();
    assert!(conversation.starts_with("conv_"), "{}", created.text());
    for turn in 0..8 {
        let path = [
            "/v1/responses",
            "/openai/v1/responses",
            "/openai/responses?api-version=2025-03-01-preview",
        ][turn % 3];
        let conv = if turn % 2 == 0 {
            json!(conversation)
        } else {
            json!({"id": conversation})
        };
        let reply = create(
            &gw,
            path,
            &format!("conv-turn-{turn}"),
            json!({"model": "gpt-4o", "input": "What was the number?", "conversation": conv}),
        )
        .await;
        assert_eq!(reply.header("x-spillway-backend"), home, "turn {turn}");
    }
    let items = call(
        &gw,
        Method::GET,
        &format!("/openai/v1/conversations/{conversation}/items?limit=100"),
        "key-a",
        "items",
        Value::Null,
    )
    .await;
    assert_eq!(items.status, 200, "{}", items.text());
    assert!(
        items.json()["data"].as_array().unwrap().len() > 8,
        "turns were appended"
    );
    let other = call(
        &gw,
        Method::GET,
        &format!("/v1/conversations/{conversation}"),
        "key-b",
        "b",
        Value::Null,
    )
    .await;
    assert_eq!(other.status, 404);
    assert_eq!(other.json()["error"]["code"], "conversation_not_found");
    let deleted = call(
        &gw,
        Method::DELETE,
        &format!("/v1/conversations/{conversation}"),
        "key-a",
        "del",
        Value::Null,
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    let gone = call(
        &gw,
        Method::GET,
        &format!("/v1/conversations/{conversation}"),
        "key-a",
        "gone",
        Value::Null,
    )
    .await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(recorded_tokens(&gw).await.0, billed_tokens(&sim).await);
}

/// A response found by searching is remembered without a model; with `modelAccess` rules
/// that name models, later calls to it still work for an app that may use its pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_searched_response_stays_reachable_under_model_access_rules() {
    let sim = Sim::start(SIM).await;
    let access = "  modelAccess:\n    - {apps: [app-a], pools: [chat], models: [gpt-4o]}\n";
    let gw = Gateway::start(&manifests_with(&sim, "", access)).await;
    let direct = http(
        Method::POST,
        &format!("{}/v1/responses", sim.url("east")),
        &[("content-type", "application/json")],
        json!({"model": "gpt-4o", "input": "hi"}).to_string(),
    )
    .await;
    let id = direct.json()["id"].as_str().unwrap().to_owned();
    for attempt in ["found", "remembered"] {
        let got = call(
            &gw,
            Method::GET,
            &format!("/v1/responses/{id}"),
            "key-a",
            attempt,
            Value::Null,
        )
        .await;
        assert_eq!(got.status, 200, "{attempt}: {}", got.text());
        assert_eq!(got.header("x-spillway-backend"), "east");
    }
    let other = call(
        &gw,
        Method::GET,
        &format!("/v1/responses/{id}"),
        "key-b",
        "b",
        Value::Null,
    )
    .await;
    assert_eq!(other.status, 404, "app-b may use nothing: {}", other.text());
}
