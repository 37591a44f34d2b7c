use serde_json::json;

use super::lines::{self, BatchUsage};
use super::*;
use crate::simulate::backend::Shared;
use crate::simulate::batch_store::BatchStore;
use crate::simulate::config::BackendConfig;
use spillway_sidecar::clock::SystemClock;
use spillway_sidecar::usage::Operation;
use spillway_sidecar::usage::tokenizer::count_prompt;

fn backend() -> Backend {
    let shared = Arc::new(Shared::new(Arc::new(SystemClock)));
    Backend::new(&BackendConfig::new("b"), shared).expect("backend")
}

fn chat_line(custom_id: &str, content: &str) -> Value {
    json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}})
}

#[test]
fn endpoints_with_or_without_v1() {
    assert_eq!(
        lines::endpoint("/v1/chat/completions"),
        Some(ModelApi::ChatCompletions)
    );
    assert_eq!(
        lines::endpoint("/chat/completions"),
        Some(ModelApi::ChatCompletions)
    );
    assert_eq!(
        lines::endpoint("/v1/embeddings"),
        Some(ModelApi::Embeddings)
    );
    assert_eq!(lines::endpoint("/responses"), Some(ModelApi::Responses));
    assert_eq!(
        lines::endpoint("/v1/completions"),
        Some(ModelApi::Completions)
    );
    for path in [
        "/v1/images/generations",
        "/v1/files",
        "chat/completions",
        "/v2/chat/completions",
    ] {
        assert_eq!(lines::endpoint(path), None, "{path}");
    }
}

#[test]
fn validation_counts_requests_and_names_the_model() {
    let input = format!("{}\n\n{}\n", chat_line("a", "hi"), chat_line("b", "yo"));
    assert_eq!(
        lines::validate(input.as_bytes()),
        Ok((2, Some("gpt-4o".into())))
    );
    assert!(lines::validate(b"\n \n").is_err(), "no requests");
    assert_eq!(
        lines::validate(b"not json\n"),
        Ok((1, None)),
        "bad lines fail later"
    );
}

#[test]
fn lines_run_like_calls_and_failures_go_to_the_error_file() {
    let backend = backend();
    let good = chat_line("ok-1", "Say hello.");
    let input = [
        good.to_string(),
        "{not json".to_owned(),
        json!({"custom_id": "wrong-url", "url": "/v1/embeddings", "body": {}}).to_string(),
        json!({"custom_id": "no-model", "url": "/v1/chat/completions", "body": {"messages": []}})
            .to_string(),
        chat_line("ok-2", "Say hello.").to_string(),
    ]
    .join("\n");
    let results = lines::run(
        &backend,
        Flavour::OpenAi,
        ModelApi::ChatCompletions,
        input.as_bytes(),
        u64::MAX,
    )
    .expect("fits");
    assert_eq!((results.completed, results.failed), (2, 3));
    let prompt = count_prompt("gpt-4o", Operation::ChatCompletions, &good["body"]);
    assert_eq!(
        results.usage,
        BatchUsage {
            input: 2 * prompt,
            cached: 0,
            output: 2 * 20,
            reasoning: 0
        }
    );
    let outputs: Vec<Value> = results
        .output
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(outputs.len(), 2);
    let first = &outputs[0];
    assert_eq!(first["custom_id"], "ok-1");
    assert!(
        first["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("batch_req_"))
    );
    assert_eq!(first["response"]["status_code"], 200);
    assert_eq!(first["response"]["body"]["object"], "chat.completion");
    assert_eq!(first["response"]["body"]["usage"]["prompt_tokens"], prompt);
    assert_eq!(first["error"], Value::Null);
    let errors: Vec<Value> = results
        .errors
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(errors[0]["error"]["code"], "invalid_json_line");
    assert_eq!(errors[0]["custom_id"], Value::Null);
    assert_eq!(errors[1]["custom_id"], "wrong-url");
    assert_eq!(errors[1]["error"]["code"], "invalid_request");
    assert_eq!(errors[2]["response"]["status_code"], 400);
    assert_eq!(errors[2]["response"]["body"]["error"]["param"], "model");

    let tight = lines::run(
        &backend,
        Flavour::OpenAi,
        ModelApi::ChatCompletions,
        input.as_bytes(),
        100,
    );
    assert_eq!(tight, Err(lines::TooLarge));
}

#[test]
fn reasoning_and_embeddings_lines_bill_their_types() {
    let backend = backend();
    let thinking = json!({"custom_id": "r", "url": "/v1/chat/completions",
        "body": {"model": "o3", "messages": [{"role": "user", "content": "think"}]}});
    let results = lines::run(
        &backend,
        Flavour::AzureV1,
        ModelApi::ChatCompletions,
        thinking.to_string().as_bytes(),
        u64::MAX,
    )
    .expect("fits");
    let prompt = count_prompt("o3", Operation::ChatCompletions, &thinking["body"]);
    let reasoning = 2 * 20 + prompt / 4;
    assert_eq!(results.usage.reasoning, reasoning);
    assert_eq!(results.usage.output, 20 + reasoning);
    let embed = json!({"custom_id": "e", "url": "/embeddings",
        "body": {"model": "text-embedding-3-small", "input": "hello"}});
    let results = lines::run(
        &backend,
        Flavour::AzureClassic,
        ModelApi::Embeddings,
        embed.to_string().as_bytes(),
        u64::MAX,
    )
    .expect("fits");
    assert_eq!(results.usage.output, 0);
    assert!(results.usage.input > 0);
    assert_eq!(
        results.usage.json()["total_tokens"],
        results.usage.input,
        "embeddings bill input only"
    );
}

#[test]
fn the_store_moves_batches_through_their_states() {
    let store = BatchStore::default();
    store.insert("batch_1", json!({"id": "batch_1", "status": "validating"}));
    assert_eq!(store.status("batch_1"), Some(BatchStatus::Validating));
    assert!(
        !store.complete("batch_1", 5, json!({})),
        "not before it runs"
    );
    assert!(store.start("batch_1", 3, 4));
    let running = store.get("batch_1").expect("kept");
    assert_eq!(running["status"], "in_progress");
    assert_eq!(running["in_progress_at"], 3);
    assert_eq!(running["request_counts"]["total"], 4);
    assert!(store.complete("batch_1", 5, json!({"output_file_id": "file-1"})));
    let done = store.get("batch_1").expect("kept");
    assert_eq!(
        (done["status"].as_str(), done["completed_at"].as_u64()),
        (Some("completed"), Some(5))
    );
    assert_eq!(done["finalizing_at"], 5);
    assert_eq!(done["output_file_id"], "file-1");
    assert_eq!(
        store.cancel("batch_1", 6),
        Err(CancelRefused::Ended(BatchStatus::Completed))
    );
    assert_eq!(store.cancel("batch_x", 6), Err(CancelRefused::NotFound));

    store.insert("batch_2", json!({"id": "batch_2"}));
    let cancelling = store.cancel("batch_2", 7).expect("cancels");
    assert_eq!(
        (
            cancelling["status"].as_str(),
            cancelling["cancelling_at"].as_u64()
        ),
        (Some("cancelling"), Some(7))
    );
    assert!(
        !store.start("batch_2", 8, 1),
        "a cancelled batch never runs"
    );
    assert!(store.finish_cancel("batch_2", 9));
    assert_eq!(store.status("batch_2"), Some(BatchStatus::Cancelled));
    let page = store.list(&ItemsQuery::parse(Some("limit=1")).expect("query"));
    assert_eq!(page["data"][0]["id"], "batch_2", "newest first");
    assert_eq!(page["has_more"], true);
}
