//! Non-streaming answers are read whole before the response starts: the client learns the
//! tokens the call consumed from `x-spillway-tokens-consumed` (equal to what the backend
//! billed), and a backend that breaks its answer off is retried on the next candidate — the
//! client, who has seen nothing yet, gets a complete answer, or an OpenAI-shaped 502 when no
//! candidate is left — never a 200 with a broken body. A success whose JSON is cut short is
//! broken too, and so is a stream that ends or breaks before its first event; a stream that
//! has started is passed through as it comes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gateway, Sim, chat_body, http, pool_yaml};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that answers 200 with a `Content-Length` of 4000 and closes after 40 bytes, for
/// every connection, counting them.
async fn breaking_backend() -> (String, tokio::sync::watch::Receiver<u32>) {
    raw_backend(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\r\n{\"id\":\"chatcmpl-broken\",\"object\":\"chat",
    )
    .await
}

/// A backend that writes `answer` on every connection and closes it, counting connections.
async fn raw_backend(answer: &'static str) -> (String, tokio::sync::watch::Receiver<u32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        for _ in 0..50 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tx.send_modify(|n| *n += 1);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await;
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_consumed_header_equals_what_the_backend_billed() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let backends = format!("    - name: east\n      url: {}\n", sim.url("east"));
    let gw = Gateway::start(&pool_yaml("chat", &["gpt-4o"], &backends, "")).await;
    for (path, id) in [
        ("/v1/chat/completions", "whole-openai"),
        (
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            "whole-azure",
        ),
    ] {
        let reply = http(
            Method::POST,
            &format!("{}{path}", gw.url),
            &[("x-request-id", id)],
            chat_body("gpt-4o", false).to_string(),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let entry = sim.entry(id).await;
        let billed =
            entry["promptTokens"].as_u64().unwrap() + entry["completionTokens"].as_u64().unwrap();
        assert_eq!(
            reply.header("x-spillway-tokens-consumed"),
            billed.to_string(),
            "{id}"
        );
        let body = reply.json();
        assert_eq!(body["usage"]["total_tokens"].as_u64().unwrap(), billed);
        let record = gw.record(id).await;
        assert_eq!(record["client_disconnected"], false);
    }
    let streamed = gw.chat("whole-stream", chat_body("gpt-4o", true)).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(
        streamed.header("x-spillway-tokens-consumed"),
        "",
        "a stream's usage is not known when its headers are sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_broken_off_is_retried_on_the_next_backend() {
    let (broken, connections) = breaking_backend().await;
    let sim = Sim::start("backends:\n  - name: paygo\n").await;
    let backends = format!(
        "    - name: ptu\n      url: {broken}\n      priority: 1\n    - name: paygo\n      url: {}\n      priority: 2\n",
        sim.url("paygo")
    );
    let gw = Gateway::start(&pool_yaml("chat", &["gpt-4o"], &backends, "")).await;
    let reply = gw.chat("broken-1", chat_body("gpt-4o", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-spillway-backend"), "paygo");
    assert_eq!(reply.header("x-spillway-attempts"), "2");
    assert!(reply.json()["choices"][0]["message"]["content"].is_string());
    assert_eq!(
        *connections.borrow(),
        1,
        "the broken backend was tried once"
    );
    let record = gw.record("broken-1").await;
    assert_eq!(record["upstream"][0]["backend"], "ptu");
    assert_eq!(record["upstream"][0]["failure"], "connection_failure");
    assert_eq!(record["upstream"][0]["status"], serde_json::Value::Null);
    assert_eq!(record["upstream"][1]["backend"], "paygo");
    let entry = sim.entry("broken-1").await;
    assert_eq!(
        reply.header("x-spillway-tokens-consumed"),
        (entry["promptTokens"].as_u64().unwrap() + entry["completionTokens"].as_u64().unwrap())
            .to_string()
    );
}

/// 200 with a complete body (its `Content-Length` is right) whose JSON stops mid-object.
const CUT_JSON: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 24\r\nconnection: close\r\n\r\n{\"id\":\"x\",\"object\":\"chat";

/// 200 `text/event-stream` that ends (chunked, last chunk) before any event.
const EMPTY_STREAM: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n";

/// 200 `text/event-stream` whose connection closes before the first chunk.
const BROKEN_STREAM: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_json_and_streams_broken_before_their_first_event_are_retried_on_the_next_backend() {
    let sim = Sim::start("backends:\n  - name: paygo\n").await;
    for (name, answer, stream) in [
        ("cut-json", CUT_JSON, false),
        ("empty-stream", EMPTY_STREAM, true),
        ("broken-stream", BROKEN_STREAM, true),
    ] {
        let (broken, connections) = raw_backend(answer).await;
        let backends = format!(
            "    - name: ptu\n      url: {broken}\n      priority: 1\n    - name: paygo\n      url: {}\n      priority: 2\n",
            sim.url("paygo")
        );
        let gw = Gateway::start(&pool_yaml("chat", &["gpt-4o"], &backends, "")).await;
        let reply = gw.chat(name, chat_body("gpt-4o", stream)).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        assert_eq!(reply.header("x-spillway-backend"), "paygo", "{name}");
        assert_eq!(reply.header("x-spillway-attempts"), "2", "{name}");
        if stream {
            assert!(
                reply.text().contains("data: [DONE]"),
                "{name}: {}",
                reply.text()
            );
        } else {
            assert!(reply.json()["choices"][0]["message"]["content"].is_string());
        }
        assert_eq!(
            *connections.borrow(),
            1,
            "{name}: the broken backend was tried once"
        );
        let record = gw.record(name).await;
        assert_eq!(
            record["upstream"][0]["failure"], "bad_response",
            "{name}: {record}"
        );
        assert_eq!(record["status"], 200, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_success_with_no_candidate_left_is_an_openai_shaped_502() {
    for (name, answer, stream) in [
        ("only-cut-json", CUT_JSON, false),
        ("only-empty-stream", EMPTY_STREAM, true),
    ] {
        let (broken, _) = raw_backend(answer).await;
        let backends = format!("    - name: ptu\n      url: {broken}\n");
        let gw = Gateway::start(&pool_yaml("chat", &["gpt-4o"], &backends, "")).await;
        let reply = gw.chat(name, chat_body("gpt-4o", stream)).await;
        assert_eq!(reply.status, 502, "{name}: {}", reply.text());
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "bad_backend_response", "{name}");
        assert_eq!(error["type"], "server_error", "{name}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains("ptu")),
            "{name}: {error}"
        );
    }
}
