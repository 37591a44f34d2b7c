//! Rate limits, faults and what the ledger records for them.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use spillway_tools::simulate::{BackendConfig, FaultMode, FaultSpec};

use super::client::{self, get, post, sse_events};
use super::{CLASSIC_CHAT, chat_body, start};

#[tokio::test]
async fn rpm_limit_answers_429_with_every_header() {
    let config = BackendConfig {
        rpm: Some(2),
        tpm: Some(100_000),
        ..BackendConfig::new("ptu")
    };
    let (sim, addr) = start(config).await;
    let body = chat_body(false, None);
    let first = post(addr, CLASSIC_CHAT, &body, &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("1"));
    assert_eq!(first.header("x-ratelimit-limit-tokens"), Some("100000"));
    assert!(first.header("x-ratelimit-remaining-tokens").is_some());
    assert_eq!(post(addr, CLASSIC_CHAT, &body, &[]).await.status, 200);

    let limited = post(addr, CLASSIC_CHAT, &body, &[]).await;
    assert_eq!(limited.status, 429);
    let retry_after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("retry-after");
    let retry_ms: u64 = limited
        .header("retry-after-ms")
        .and_then(|v| v.parse().ok())
        .expect("retry-after-ms");
    assert!((58..=60).contains(&retry_after), "{retry_after}");
    assert!(retry_ms > 58_000 && retry_ms <= 60_000 && retry_after == retry_ms.div_ceil(1000));
    assert_eq!(limited.header("x-ratelimit-remaining-requests"), Some("0"));
    let reset = limited
        .header("x-ratelimit-reset-requests")
        .expect("reset header");
    assert!(
        (reset.starts_with("59") || reset.starts_with("58")) && reset.ends_with('s'),
        "{reset}"
    );
    assert_eq!(limited.header("x-ratelimit-reset-tokens"), Some("0ms"));
    let error = limited.json();
    assert_eq!(error["error"]["code"], "429");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("Please retry after {retry_after} seconds")),
        "{message}"
    );
    assert!(message.contains("call rate limit"), "{message}");
    let entry = sim.ledger().entries.pop().expect("entry");
    assert_eq!(
        (entry.status, entry.prompt_tokens, entry.completion_tokens),
        (429, 0, 0)
    );
}

#[tokio::test]
async fn tpm_counts_prompt_plus_max_tokens() {
    let config = BackendConfig {
        tpm: Some(200),
        ..BackendConfig::new("ptu")
    };
    let (_sim, addr) = start(config).await;
    let mut body = chat_body(false, None);
    body["max_tokens"] = json!(120);
    let ok = post(addr, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(ok.status, 200);
    let remaining: u64 = ok
        .header("x-ratelimit-remaining-tokens")
        .and_then(|v| v.parse().ok())
        .expect("remaining");
    let prompt = ok.json()["usage"]["prompt_tokens"]
        .as_u64()
        .expect("prompt");
    assert_eq!(remaining, 200 - prompt - 120, "cost is prompt + max_tokens");
    let limited = post(addr, "/v1/chat/completions", &body, &[]).await;
    assert_eq!(limited.status, 429);
    assert!(
        limited
            .header("x-ratelimit-reset-tokens")
            .is_some_and(|v| v.ends_with('s'))
    );
    assert!(
        limited.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("token rate limit"))
    );
    // Changing limits at runtime over HTTP lifts the refusal.
    let limits = post(addr, "/_sim/limits", &json!({"tpm": null}), &[]).await;
    assert_eq!(limits.json(), json!({"tpm": null, "rpm": null}));
    assert_eq!(
        post(addr, "/v1/chat/completions", &body, &[]).await.status,
        200
    );
}

#[tokio::test]
async fn status_fault_over_http_with_headers_and_count() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let fault =
        json!({"mode": "status", "status": 429, "count": 1, "headers": {"retry-after-ms": "1500"}});
    let posted = post(addr, "/_sim/faults", &fault, &[]).await;
    assert_eq!(posted.status, 200);
    assert_eq!(posted.json()["faults"][0]["remaining"], 1);
    let hit = post(addr, CLASSIC_CHAT, &chat_body(false, None), &[]).await;
    assert_eq!(hit.status, 429);
    assert_eq!(hit.header("retry-after-ms"), Some("1500"));
    let message = hit.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("retry after 2 seconds"), "{message}");
    assert_eq!(
        get(addr, "/_sim/faults").await.json(),
        json!({"faults": []})
    );
    assert_eq!(
        post(addr, CLASSIC_CHAT, &chat_body(false, None), &[])
            .await
            .status,
        200
    );
    let fault = json!({"mode": "status", "status": 503});
    assert_eq!(post(addr, "/_sim/faults", &fault, &[]).await.status, 200);
    for _ in 0..2 {
        let got = post(addr, "/v1/chat/completions", &chat_body(false, None), &[]).await;
        assert_eq!(got.status, 503);
        assert_eq!(got.json()["error"]["code"], "503");
    }
    let cleared = client::send(addr, Method::DELETE, "/_sim/faults", &[], "")
        .await
        .expect("delete");
    assert_eq!(cleared.json(), json!({"faults": []}));
    let entries = sim.ledger().entries;
    assert_eq!(entries[0].fault.as_deref(), Some("status"));
    assert_eq!(entries[1].fault, None);
    let bad = post(addr, "/_sim/faults", &json!({"mode": "status"}), &[]).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn reset_mid_stream_is_a_body_error_after_n_events() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let spec = FaultSpec {
        after_chunks: Some(3),
        count: Some(1),
        ..FaultSpec::new(FaultMode::ResetMidStream)
    };
    sim.backends()[0].add_faults(&[spec]).expect("valid");
    let got = post(
        addr,
        "/v1/chat/completions",
        &chat_body(true, Some(true)),
        &[],
    )
    .await;
    assert_eq!(got.status, 200);
    let error = got.body_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("ConnectionReset"),
        "the client must see a TCP reset as a body error, got {error:?}"
    );
    assert_eq!(sse_events(&got.body).len(), 3, "{}", got.text());
    let entry = sim.ledger().entries.pop().expect("entry");
    assert_eq!(entry.fault.as_deref(), Some("resetMidStream"));
    assert_eq!(
        entry.completion_tokens, 2,
        "role chunk + two deltas were sent"
    );
    assert_eq!(
        entry.raw_stream.as_deref().map(str::as_bytes),
        Some(&got.body[..])
    );
    // The fault was used up; the next stream is whole.
    let next = post(addr, "/v1/chat/completions", &chat_body(true, None), &[]).await;
    assert_eq!(next.body_error, None);
}

#[tokio::test]
async fn malformed_outputs_and_slow_first_byte() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let backend = &sim.backends()[0];
    let once = |mode| FaultSpec {
        count: Some(1),
        ..FaultSpec::new(mode)
    };
    backend
        .add_faults(&[
            once(FaultMode::MalformedJson),
            once(FaultMode::MalformedSse),
        ])
        .expect("valid");
    let json_reply = post(addr, "/v1/chat/completions", &chat_body(false, None), &[]).await;
    assert_eq!(json_reply.status, 200);
    assert!(serde_json::from_slice::<Value>(&json_reply.body).is_err());
    let sse_reply = post(addr, "/v1/chat/completions", &chat_body(true, None), &[]).await;
    assert!(
        sse_reply
            .text()
            .contains("this line is not server-sent events")
    );
    assert!(sse_reply.text().ends_with("data: [DONE]\n\n"));

    let slow = FaultSpec {
        delay_ms: Some(300),
        count: Some(1),
        ..FaultSpec::new(FaultMode::SlowFirstByte)
    };
    backend.add_faults(&[slow]).expect("valid");
    let started = Instant::now();
    assert_eq!(
        post(addr, "/v1/chat/completions", &chat_body(false, None), &[])
            .await
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let faults: Vec<Option<String>> = sim.ledger().entries.into_iter().map(|e| e.fault).collect();
    assert_eq!(
        faults,
        [
            Some("malformedJson".into()),
            Some("malformedSse".into()),
            Some("slowFirstByte".into())
        ]
    );
}

#[tokio::test]
async fn connection_close_gives_no_response() {
    let (sim, addr) = start(BackendConfig::new("ptu")).await;
    let spec = FaultSpec {
        count: Some(1),
        ..FaultSpec::new(FaultMode::ConnectionClose)
    };
    sim.backends()[0].add_faults(&[spec]).expect("valid");
    let body = chat_body(false, None).to_string();
    let result = client::send(addr, Method::POST, "/v1/chat/completions", &[], &body).await;
    assert!(result.is_err(), "expected no response, got {result:?}");
    let entry = sim.ledger().entries.pop().expect("entry");
    assert_eq!(
        (entry.status, entry.fault.as_deref()),
        (0, Some("connectionClose"))
    );
}

#[tokio::test]
async fn client_abort_bills_tokens_sent() {
    let config = BackendConfig {
        tokens_per_second: 50,
        completion_tokens: 200,
        ..BackendConfig::new("ptu")
    };
    let (sim, addr) = start(config).await;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    let driver = tokio::spawn(connection);
    let request = http::Request::post("/v1/chat/completions")
        .header("host", "sim")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            chat_body(true, None).to_string(),
        )))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let mut body = response.into_body();
    use http_body_util::BodyExt as _;
    for _ in 0..3 {
        assert!(body.frame().await.is_some());
    }
    drop(body);
    drop(sender);
    driver.abort();
    let entry = wait_for_entry(&sim, Duration::from_secs(10)).await;
    assert!(entry.aborted);
    assert!(
        entry.completion_tokens >= 2 && entry.completion_tokens < 200,
        "{}",
        entry.completion_tokens
    );
}

async fn wait_for_entry(
    sim: &spillway_tools::simulate::SimHandle,
    limit: Duration,
) -> spillway_tools::simulate::LedgerEntry {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(entry) = sim.ledger().entries.pop() {
            return entry;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no ledger entry within {limit:?}");
}
