//! The batches API over real HTTP: batches that validate, run and complete after `batchMs`
//! with output and error files and are billed once, cancels that bill nothing, and creates
//! that name a file this backend does not hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use spillway_sidecar::usage::Operation;
use spillway_sidecar::usage::tokenizer::count_prompt;
use spillway_tools::simulate::{Api, LedgerQuery};

use super::client::{self, get, post};
use super::files::{path, upload};
use super::responses::{Family, start_many};

fn chat_line(custom_id: &str, content: &str, url: &str, model: &str) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": url,
        "body": {"model": model, "messages": [{"role": "user", "content": content}]}})
}

/// Polls batch `id` until it reaches `status`; every status seen on the way.
async fn wait_for(
    addr: SocketAddr,
    family: Family,
    id: &str,
    status: &str,
) -> (Value, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let batch = get(addr, &path(family, "batches", &format!("/{id}")))
            .await
            .json();
        let now = batch["status"].as_str().unwrap_or("?").to_owned();
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now == status {
            return (batch, seen);
        }
        assert!(Instant::now() < deadline, "batch stuck at {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_batch_completes_after_batch_ms_and_is_billed_once() {
    for family in [Family::AzureClassic, Family::OpenAi] {
        let sim = start_many(&["batcher"], |b| b.batch_ms = 600).await;
        let addr = sim.backends()[0].addr();
        let (url, model) = match family {
            Family::AzureClassic => ("/chat/completions", "gpt-4o-batch"),
            _ => ("/v1/chat/completions", "gpt-4o"),
        };
        let lines = [
            chat_line("one", "Say hello.", url, model),
            chat_line("two", "Say hello again, please.", url, model),
            json!({"custom_id": "bad", "url": url, "body": "not an object"}),
            chat_line("three", "And once more.", url, model),
        ];
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let file = upload(addr, family, "batch", "input.jsonl", input.as_bytes())
            .await
            .json();
        let metadata = json!({"team": "spillway"});
        let create = json!({"input_file_id": file["id"], "endpoint": url,
            "completion_window": "24h", "metadata": metadata});
        let created = post(addr, &path(family, "batches", ""), &create, &[]).await;
        assert_eq!(created.status, 200, "{}", created.text());
        let batch = created.json();
        let id = batch["id"].as_str().expect("id").to_owned();
        assert!(id.starts_with("batch_"));
        assert_eq!(
            (batch["object"].as_str(), batch["status"].as_str()),
            (Some("batch"), Some("validating"))
        );
        assert_eq!(
            (batch["endpoint"].as_str(), batch["metadata"].clone()),
            (Some(url), metadata)
        );
        assert_eq!(batch["model"], model);

        let (done, seen) = wait_for(addr, family, &id, "completed").await;
        assert_eq!(
            seen,
            ["validating", "in_progress", "completed"],
            "{family:?}"
        );
        assert_eq!(
            done["request_counts"],
            json!({"total": 4, "completed": 3, "failed": 1})
        );
        let prompt: u64 = [0, 1, 3]
            .iter()
            .map(|i| count_prompt(model, Operation::ChatCompletions, &lines[*i]["body"]))
            .sum();
        assert_eq!(
            done["usage"],
            json!({"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 60, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + 60})
        );
        for stamp in ["in_progress_at", "finalizing_at", "completed_at"] {
            assert!(done[stamp].as_u64().is_some(), "{stamp}");
        }
        let content = |field: &str| {
            let id = done[field].as_str().expect(field).to_owned();
            async move { get(addr, &path(family, "files", &format!("/{id}/content"))).await }
        };
        let output = content("output_file_id").await;
        let results: Vec<Value> = output
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("line"))
            .collect();
        assert_eq!(results.len(), 3);
        assert_eq!(results[0]["custom_id"], "one");
        assert_eq!(results[0]["response"]["status_code"], 200);
        let body = &results[0]["response"]["body"];
        assert_eq!(
            (
                body["object"].as_str(),
                body["usage"]["completion_tokens"].as_u64()
            ),
            (Some("chat.completion"), Some(20))
        );
        assert_eq!(
            body["prompt_filter_results"].is_array(),
            matches!(family, Family::AzureClassic)
        );
        let errors = content("error_file_id").await;
        let error: Value = serde_json::from_str(errors.text().trim()).expect("one error line");
        assert_eq!(
            (error["custom_id"].as_str(), error["error"]["code"].as_str()),
            (Some("bad"), Some("invalid_request"))
        );

        // Reading it again bills nothing more.
        for _ in 0..3 {
            get(addr, &path(family, "batches", &format!("/{id}"))).await;
        }
        let ledger = sim.ledger_query(&LedgerQuery::default());
        let billed: Vec<_> = ledger
            .entries
            .iter()
            .filter(|e| e.prompt_tokens > 0)
            .collect();
        assert_eq!(billed.len(), 1, "{family:?}: billed once");
        let bill = billed[0];
        assert_eq!(
            (bill.request_id.as_str(), bill.batch_id.as_deref()),
            (id.as_str(), Some(id.as_str()))
        );
        assert_eq!((bill.prompt_tokens, bill.completion_tokens), (prompt, 60));
        assert_eq!(bill.operation, Some(Api::Batches));
        assert_eq!(bill.model.as_deref(), Some(model));
        assert_eq!(ledger.totals.total_tokens, prompt + 60);
        let mut calls = ledger
            .entries
            .iter()
            .filter(|e| e.batch_id.as_deref() == Some(id.as_str()) && e.request_id != id);
        assert!(
            calls.all(|e| e.prompt_tokens + e.completion_tokens == 0),
            "create and reads bill 0"
        );

        let listed = get(addr, &path(family, "batches", "?limit=1")).await.json();
        assert_eq!(listed["data"][0]["id"], id.as_str());
        assert_eq!(listed["has_more"], false);
    }
}

#[tokio::test]
async fn a_cancelled_batch_bills_nothing() {
    let sim = start_many(&["batcher"], |b| b.batch_ms = 400).await;
    let addr = sim.backends()[0].addr();
    let input = format!(
        "{}\n",
        chat_line("one", "hi", "/v1/chat/completions", "gpt-4o")
    );
    let file = upload(addr, Family::OpenAi, "batch", "in.jsonl", input.as_bytes())
        .await
        .json();
    let create = json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let id = post(addr, "/v1/batches", &create, &[]).await.json()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let cancel = format!("/v1/batches/{id}/cancel");
    let cancelling = post(addr, &cancel, &json!({}), &[]).await.json();
    assert_eq!(cancelling["status"], "cancelling");
    assert!(cancelling["cancelling_at"].as_u64().is_some());
    let (cancelled, _) = wait_for(addr, Family::OpenAi, &id, "cancelled").await;
    assert!(cancelled["cancelled_at"].as_u64().is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        get(addr, &format!("/v1/batches/{id}")).await.json()["status"],
        "cancelled"
    );
    let again = post(addr, &cancel, &json!({}), &[]).await;
    assert_eq!(again.status, 400);
    assert_eq!(sim.ledger().totals.total_tokens, 0, "nothing billed");
    assert_eq!(
        post(addr, "/v1/batches/batch_nope/cancel", &json!({}), &[])
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn batch_creates_check_their_input_file() {
    let sim = start_many(&["a", "b"], |_| {}).await;
    let (a, b) = (sim.backends()[0].addr(), sim.backends()[1].addr());
    let input = format!(
        "{}\n",
        chat_line("one", "hi", "/v1/chat/completions", "gpt-4o")
    );
    let file = upload(a, Family::OpenAi, "batch", "in.jsonl", input.as_bytes())
        .await
        .json();
    let other = upload(
        a,
        Family::OpenAi,
        "assistants",
        "in.jsonl",
        input.as_bytes(),
    )
    .await
    .json();
    let empty = upload(a, Family::OpenAi, "batch", "empty.jsonl", b"\n")
        .await
        .json();
    let create = |file: &Value, endpoint: &str, window: &str| json!({"input_file_id": file["id"], "endpoint": endpoint, "completion_window": window});
    let cases = [
        (
            b,
            create(&file, "/v1/chat/completions", "24h"),
            404,
            "input_file_id",
        ),
        (
            a,
            create(&json!({"id": "file-nope"}), "/v1/chat/completions", "24h"),
            404,
            "input_file_id",
        ),
        (
            a,
            create(&other, "/v1/chat/completions", "24h"),
            400,
            "input_file_id",
        ),
        (
            a,
            create(&empty, "/v1/chat/completions", "24h"),
            400,
            "input_file_id",
        ),
        (a, create(&file, "/v1/moderations", "24h"), 400, "endpoint"),
        (
            a,
            create(&file, "/v1/chat/completions", "1h"),
            400,
            "completion_window",
        ),
        (
            a,
            json!({"endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            400,
            "input_file_id",
        ),
    ];
    for (addr, body, status, param) in cases {
        let got = post(addr, "/v1/batches", &body, &[]).await;
        assert_eq!(got.status, status, "{body}: {}", got.text());
        assert_eq!(got.json()["error"]["param"], param, "{body}");
    }
    assert_eq!(get(a, "/v1/batches/batch_nope").await.status, 404);
    let wrong_method = client::send(a, Method::DELETE, "/v1/batches/batch_x", &[], "")
        .await
        .expect("answer");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(get(a, "/v1/batches").await.json()["data"], json!([]));
}
