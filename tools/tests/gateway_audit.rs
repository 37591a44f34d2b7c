//! The audit log on a real `spillway run` in front of a real simulator: one redacted JSON
//! line per audited call with the request messages and the completion — a stream
//! reassembled exactly as the client received it — for the listed apps only; and a writer
//! that cannot keep up (a pipe nobody reads) costs clients nothing: records are dropped and
//! counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use common::{Gateway, Sim, http, pool_yaml};
use http::Method;
use serde_json::{Value, json};

fn manifests(sim: &Sim, audit: &str) -> String {
    let backends = format!("    - name: east\n      url: {}\n", sim.url("east"));
    format!(
        "{}---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw}}\nspec:\n  identity: {{trustedHeader: x-app-id}}\n  audit: {audit}\n",
        pool_yaml("chat", &["gpt-4o"], &backends, "")
    )
}

fn body(stream: bool, text: &str) -> Value {
    json!({
        "model": "gpt-4o",
        "stream": stream,
        "max_tokens": 12,
        "messages": [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [{"type": "text", "text": text}]}
        ]
    })
}

async fn call(gw: &Gateway, app: &str, id: &str, body: Value) -> common::Reply {
    http(
        Method::POST,
        &format!("{}/v1/chat/completions", gw.url),
        &[("x-app-id", app), ("x-request-id", id)],
        body.to_string(),
    )
    .await
}

/// The audit lines in `path` once `want` of them are there (bounded wait).
async fn lines(path: &Path, want: usize) -> Vec<Value> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= want {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {want} audit lines in {}", path.display());
}

/// The generated text of an SSE body as the client read it.
fn streamed_text(sse: &str) -> String {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audited_calls_are_recorded_redacted_and_streams_reassembled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let gw = Gateway::start_with(
        &manifests(
            &sim,
            "{enabled: true, apps: [web], redaction: {patterns: [{name: ticket, regex: 'TCK-[0-9]{4}'}]}}",
        ),
        &[("SPILLWAY_AUDIT_LOG", path.to_str().unwrap())],
    )
    .await;

    let secret = "mail jane@contoso.com, Bearer abcdefgh12345678, ticket TCK-1234";
    let other = call(&gw, "batch", "not-audited", body(false, secret)).await;
    assert_eq!(other.status, 200);
    let plain = call(&gw, "web", "audit-json", body(false, secret)).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    let streamed = call(&gw, "web", "audit-stream", body(true, secret)).await;
    assert_eq!(streamed.status, 200);

    let lines = lines(&path, 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let all = std::fs::read_to_string(&path).unwrap();
    assert!(!all.contains("not-audited"), "batch is not audited: {all}");
    assert_eq!(all.lines().count(), 2, "{all}");
    for needle in ["jane@contoso.com", "abcdefgh12345678", "TCK-1234"] {
        assert!(!all.contains(needle), "{needle} leaked into the audit log");
    }

    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .cloned()
            .unwrap()
    };
    let json_line = by_id("audit-json");
    let reply = plain.json();
    assert_eq!(
        json_line["completion"], reply["choices"][0]["message"]["content"],
        "the completion is what the client got"
    );
    let ledger = sim.entry("audit-json").await;
    assert_eq!(json_line["prompt_tokens"], ledger["promptTokens"]);
    assert_eq!(json_line["completion_tokens"], ledger["completionTokens"]);
    assert_eq!(json_line["backend"], "east");
    assert_eq!(json_line["status"], 200);
    let request = json_line["request"].as_str().unwrap();
    assert!(request.contains("You are helpful."), "{request}");
    for mask in [
        "[REDACTED:email]",
        "[REDACTED:bearer-token]",
        "[REDACTED:ticket]",
    ] {
        assert!(request.contains(mask), "{mask} in {request}");
    }

    let stream_line = by_id("audit-stream");
    assert_eq!(stream_line["stream"], true);
    let seen = streamed_text(&streamed.text());
    assert!(!seen.is_empty());
    assert_eq!(stream_line["completion"], seen, "reassembled as streamed");
    let ledger = sim.entry("audit-stream").await;
    assert_eq!(stream_line["completion_tokens"], ledger["completionTokens"]);
    assert_eq!(stream_line["truncated"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_audit_writer_drops_and_counts_and_clients_do_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    // A reader that never reads: the gateway can open the pipe, and its writes block once
    // the pipe's buffer (64 KiB) is full.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o4000) // O_NONBLOCK: do not wait for a writer
        .open(&fifo)
        .expect("open the pipe for reading");
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let gw = Gateway::start_with(
        &manifests(&sim, "{enabled: true, maxFieldBytes: 65536}"),
        &[("SPILLWAY_AUDIT_LOG", fifo.to_str().unwrap())],
    )
    .await;
    let big = "lorem ipsum ".repeat(4_000); // ~48 KB per record: the pipe holds one
    for i in 0..300 {
        let reply = call(&gw, "web", &format!("stuck-{i}"), body(false, &big)).await;
        assert_eq!(reply.status, 200, "call {i}: {}", reply.text());
    }
    let metrics = http(Method::GET, &format!("{}/metrics", gw.admin), &[], "")
        .await
        .text();
    let count = |result: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("spillway_audit_records") && l.contains(&format!("\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let dropped = count("dropped");
    assert!(
        dropped >= 1.0,
        "records beyond the queue are dropped:\n{metrics}"
    );
    assert!(dropped <= 300.0);
    assert!(count("written") <= 2.0, "the pipe takes about one record");
}
