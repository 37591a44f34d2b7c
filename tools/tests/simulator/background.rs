//! Background responses over real HTTP: queued, then in progress, then completed by itself;
//! billed once when complete (streamed or not, whatever the client does); cancelled ones are
//! never billed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use spillway_tools::simulate::{BackendConfig, LedgerEntry, SimHandle};

use super::client::{get, post, sse_events};
use super::responses::{FAMILIES, path};
use super::start;

/// Polls `GET …/responses/{id}` until its status is `status` (at most 5 s); returns it and
/// every status seen on the way.
async fn wait_for(addr: SocketAddr, id: &str, status: &str) -> (Value, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        let got = get(addr, &format!("/v1/responses/{id}")).await.json();
        let now = got["status"].as_str().unwrap_or_default().to_owned();
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now == status {
            return (got, seen);
        }
        assert!(
            Instant::now() < deadline,
            "{id} still {now} after 5 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ledger entries that billed anything.
fn billed(sim: &SimHandle) -> Vec<LedgerEntry> {
    let entries = sim.ledger().entries;
    entries
        .into_iter()
        .filter(|e| e.prompt_tokens + e.completion_tokens > 0)
        .collect()
}

fn slow(ms: u64) -> BackendConfig {
    BackendConfig {
        background_ms: ms,
        ..BackendConfig::new("ptu")
    }
}

#[tokio::test]
async fn background_response_completes_by_itself_and_is_billed_once() {
    let (sim, addr) = start(slow(600)).await;
    let body = json!({"model": "gpt-4o", "input": "Write a haiku.", "background": true,
        "max_output_tokens": 7});
    let created = post(addr, &path(FAMILIES[2], ""), &body, &[]).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let created = created.json();
    assert_eq!(created["status"], "queued");
    assert_eq!(created["background"], true);
    assert_eq!(created["output"], json!([]));
    assert_eq!(created["usage"], Value::Null);
    assert!(billed(&sim).is_empty(), "nothing billed at create");
    assert!(
        sim.ledger().entries.is_empty(),
        "the create is recorded when it completes"
    );

    let id = created["id"].as_str().expect("id");
    let (done, seen) = wait_for(addr, id, "completed").await;
    assert_eq!(seen.last().map(String::as_str), Some("completed"));
    assert!(
        seen.iter()
            .all(|s| ["queued", "in_progress", "completed"].contains(&s.as_str())),
        "{seen:?}"
    );
    assert_eq!(done["usage"]["output_tokens"], 7);
    assert!(done["output"][0]["content"][0]["text"].is_string());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let billed = billed(&sim);
    assert_eq!(billed.len(), 1, "billed exactly once");
    let entry = &billed[0];
    assert_eq!(entry.status, 200);
    assert_eq!(entry.path, "/openai/responses");
    assert_eq!(
        Some(entry.prompt_tokens),
        done["usage"]["input_tokens"].as_u64()
    );
    assert_eq!(
        Some(entry.completion_tokens),
        done["usage"]["output_tokens"].as_u64()
    );
    assert!(
        entry.duration_ms >= 500,
        "recorded on completion: {}",
        entry.duration_ms
    );
    let totals = sim.ledger().totals;
    assert_eq!(
        totals.total_tokens,
        entry.prompt_tokens + entry.completion_tokens
    );
}

#[tokio::test]
async fn cancelled_background_response_bills_nothing() {
    let (sim, addr) = start(slow(500)).await;
    let body = json!({"model": "gpt-4o", "input": "Write a long story.", "background": true});
    let created = post(addr, "/openai/v1/responses", &body, &[]).await.json();
    let id = created["id"].as_str().expect("id");
    let cancelled = post(
        addr,
        &format!("/openai/v1/responses/{id}/cancel"),
        &json!({}),
        &[],
    )
    .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    let cancelled = cancelled.json();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["usage"], Value::Null);
    let health = get(addr, "/_sim/health").await.json();
    assert_eq!(health["backgroundJobs"], 0, "the job is gone");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = get(addr, &format!("/v1/responses/{id}")).await.json();
    assert_eq!(got, cancelled, "it stays cancelled");
    let again = post(addr, &format!("/v1/responses/{id}/cancel"), &json!({}), &[]).await;
    assert_eq!(
        again.json(),
        cancelled,
        "a finished response is returned unchanged"
    );
    assert!(billed(&sim).is_empty());
    let entries = sim.ledger().entries;
    assert_eq!(
        entries.len(),
        3,
        "cancel, get, cancel (health is no model route): {entries:?}"
    );

    let foreground = json!({"model": "gpt-4o", "input": "hi"});
    let foreground = post(addr, "/v1/responses", &foreground, &[]).await.json();
    let fg_id = foreground["id"].as_str().expect("id");
    let refused = post(
        addr,
        &format!("/v1/responses/{fg_id}/cancel"),
        &json!({}),
        &[],
    )
    .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json(),
        json!({"error": {"message": "Only responses created with background=true can be cancelled.",
            "type": "invalid_request_error", "param": null, "code": null}})
    );
    let unknown = post(addr, "/v1/responses/resp_nope/cancel", &json!({}), &[]).await;
    assert_eq!(unknown.status, 404);

    let done = post(addr, "/v1/responses", &body, &[]).await.json();
    let done_id = done["id"].as_str().expect("id");
    let (completed, _) = wait_for(addr, done_id, "completed").await;
    let late = post(
        addr,
        &format!("/v1/responses/{done_id}/cancel"),
        &json!({}),
        &[],
    )
    .await;
    assert_eq!(
        late.json(),
        completed,
        "cancelling a completed response changes nothing"
    );
    assert_eq!(
        billed(&sim).len(),
        2,
        "the foreground and the completed background response"
    );

    let unstored = json!({"model": "gpt-4o", "input": "x", "background": true, "store": false});
    let refused = post(addr, "/v1/responses", &unstored, &[]).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["param"], "background");
}

#[tokio::test]
async fn streamed_background_response_is_billed_once() {
    let (sim, addr) = start(slow(300)).await;
    let body = json!({"model": "gpt-4o", "input": "Count to five.", "background": true,
        "stream": true, "max_output_tokens": 5});
    let streamed = post(addr, "/v1/responses", &body, &[]).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&streamed.body);
    let data = |i: usize| -> Value { serde_json::from_str(&events[i].1).expect("JSON event") };
    assert_eq!(events[0].0.as_deref(), Some("response.created"));
    assert_eq!(data(0)["response"]["status"], "queued");
    assert_eq!(data(0)["response"]["background"], true);
    assert_eq!(events[1].0.as_deref(), Some("response.in_progress"));
    assert_eq!(data(1)["response"]["status"], "in_progress");
    let last = events.len() - 1;
    assert_eq!(events[last].0.as_deref(), Some("response.completed"));
    let completed = data(last)["response"].clone();
    assert_eq!(completed["usage"]["output_tokens"], 5);

    let id = completed["id"].as_str().expect("id");
    let got = get(addr, &format!("/v1/responses/{id}")).await.json();
    assert_eq!(
        got["status"], "completed",
        "complete once its stream was sent"
    );
    assert_eq!(got["usage"], completed["usage"]);
    // Past the background time too: still one entry.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let billed = billed(&sim);
    assert_eq!(billed.len(), 1, "{billed:?}");
    let entry = &billed[0];
    assert!(entry.stream && entry.include_usage && entry.raw_stream.is_none());
    assert_eq!(
        Some(entry.prompt_tokens),
        completed["usage"]["input_tokens"].as_u64()
    );
    assert_eq!(entry.completion_tokens, 5);
    assert_eq!(sim.ledger().entries.len(), 2, "the create and one retrieve");
}

#[tokio::test]
async fn a_streamed_foreground_response_is_stored_when_its_stream_ends() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let body = json!({"model": "gpt-4o", "input": "hi", "stream": true});
    let streamed = post(addr, "/v1/responses", &body, &[]).await;
    let events = sse_events(&streamed.body);
    let completed: Value = serde_json::from_str(&events[events.len() - 1].1).expect("JSON");
    let id = completed["response"]["id"].as_str().expect("id");
    let got = get(addr, &format!("/v1/responses/{id}")).await.json();
    assert_eq!(got, completed["response"]);
    let entry = &sim.ledger().entries[0];
    assert_eq!(
        entry.raw_stream.as_deref().map(str::as_bytes),
        Some(&streamed.body[..])
    );
}
