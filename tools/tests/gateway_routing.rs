//! Routing, breakers, retries and spillover through a real `spillway run` in front of real
//! `spillway simulate` backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Gateway, Sim, chat_body, pool_yaml};
use serde_json::json;

const TWO_BACKENDS: &str = "backends:\n  - name: ptu\n  - name: paygo\n";

fn ptu_paygo(sim: &Sim) -> String {
    let backends = format!(
        "    - name: ptu\n      url: {}\n      priority: 1\n    - name: paygo\n      url: {}\n      priority: 2\n",
        sim.url("ptu"),
        sim.url("paygo")
    );
    pool_yaml("chat", &["gpt-4o"], &backends, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spills_over_within_one_request_then_recloses_after_half_open() {
    let sim = Sim::start(TWO_BACKENDS).await;
    let gw = Gateway::start(&ptu_paygo(&sim)).await;
    sim.set_faults(
        "ptu",
        json!({"mode": "status", "status": 429, "count": 1, "headers": {"retry-after-ms": "1500"}}),
    )
    .await;

    let before_trip = Instant::now();
    let first = gw.chat("spill-1", chat_body("gpt-4o", false)).await;
    assert_eq!(
        first.status,
        200,
        "no 429 may reach the client: {}",
        first.text()
    );
    assert_eq!(first.header("x-spillway-backend"), "paygo");
    assert_eq!(first.header("x-spillway-attempts"), "2");
    let after_trip = Instant::now();
    let ptu = sim.entries("ptu").await;
    assert_eq!(ptu.len(), 1, "{ptu:#?}");
    assert_eq!(
        (ptu[0]["requestId"].as_str(), ptu[0]["status"].as_u64()),
        (Some("spill-1"), Some(429))
    );

    // The breaker is open for the backend's retry-after-ms: traffic goes straight to paygo.
    let second = gw.chat("spill-2", chat_body("gpt-4o", false)).await;
    assert_eq!(
        (
            second.header("x-spillway-backend"),
            second.header("x-spillway-attempts")
        ),
        ("paygo", "1")
    );
    assert!(
        before_trip.elapsed() < Duration::from_millis(1500),
        "the test machine was too slow to observe the open state"
    );

    // After the retry-after, one probe goes to ptu (half-open); it succeeds and closes.
    tokio::time::sleep(Duration::from_millis(1600).saturating_sub(after_trip.elapsed())).await;
    let probe = gw.chat("spill-3", chat_body("gpt-4o", false)).await;
    assert_eq!(
        (probe.status.as_u16(), probe.header("x-spillway-backend")),
        (200, "ptu")
    );
    for i in 0..5 {
        let reply = gw
            .chat(&format!("closed-{i}"), chat_body("gpt-4o", false))
            .await;
        assert_eq!(
            reply.header("x-spillway-backend"),
            "ptu",
            "closed again: priority 1 serves"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_three_to_one_split_traffic_75_25() {
    let sim = Sim::start(TWO_BACKENDS).await;
    let backends = format!(
        "    - name: ptu\n      url: {}\n      weight: 3\n    - name: paygo\n      url: {}\n      weight: 1\n",
        sim.url("ptu"),
        sim.url("paygo")
    );
    let gw = Gateway::start(&pool_yaml("chat", &["gpt-4o"], &backends, "")).await;
    let url = format!("{}/v1/embeddings", gw.url);
    let mut workers = Vec::new();
    for w in 0..16 {
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut counts: HashMap<String, u32> = HashMap::new();
            for i in 0..125 {
                let body = json!({"model": "gpt-4o", "input": format!("w{w} i{i}")}).to_string();
                let reply = common::http(http::Method::POST, &url, &[], body).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                *counts
                    .entry(reply.header("x-spillway-backend").to_owned())
                    .or_default() += 1;
            }
            counts
        }));
    }
    let mut total: HashMap<String, u32> = HashMap::new();
    for worker in workers {
        for (k, v) in worker.await.unwrap() {
            *total.entry(k).or_default() += v;
        }
    }
    let ptu = f64::from(total["ptu"]) / 2000.0;
    assert_eq!(total["ptu"] + total["paygo"], 2000);
    assert!(
        (0.70..=0.80).contains(&ptu),
        "ptu share {ptu} (counts {total:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_breakers_open_gives_503_with_the_earliest_reopening() {
    let sim = Sim::start(TWO_BACKENDS).await;
    let gw = Gateway::start(&ptu_paygo(&sim)).await;
    sim.set_faults(
        "ptu",
        json!({"mode": "status", "status": 429, "headers": {"retry-after-ms": "3000"}}),
    )
    .await;
    sim.set_faults(
        "paygo",
        json!({"mode": "status", "status": 429, "headers": {"retry-after": "5"}}),
    )
    .await;
    let reply = gw.chat("all-open", chat_body("gpt-4o", false)).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "no_backend_available");
    assert_eq!(reply.header("x-spillway-attempts"), "2");
    let ms: u64 = reply.header("retry-after-ms").parse().unwrap();
    assert!(
        (2_000..=3_000).contains(&ms),
        "earliest reopening is ptu's 3 s, got {ms} ms"
    );
    assert_eq!(reply.header("retry-after"), "3");
    // Nothing is sent upstream while every breaker is open.
    let again = gw.chat("all-open-2", chat_body("gpt-4o", false)).await;
    assert_eq!(
        (again.status.as_u16(), again.header("x-spillway-attempts")),
        (503, "0")
    );
    assert_eq!(
        sim.entries("ptu").await.len() + sim.entries("paygo").await.len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_and_timeouts_spill_over() {
    let sim = Sim::start("backends:\n  - name: slow\n  - name: good\n").await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let backends = format!(
        "    - name: dead\n      url: http://{closed}\n    - name: slow\n      url: {}\n      priority: 2\n      timeout: 300ms\n    - name: good\n      url: {}\n      priority: 3\n",
        sim.url("slow"),
        sim.url("good")
    );
    let gw = Gateway::start(&pool_yaml("chat", &["gpt-4o"], &backends, "")).await;
    sim.set_faults("slow", json!({"mode": "slowFirstByte", "delayMs": 2000}))
        .await;
    let started = Instant::now();
    let reply = gw.chat("dead-slow-good", chat_body("gpt-4o", false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        (
            reply.header("x-spillway-backend"),
            reply.header("x-spillway-attempts")
        ),
        ("good", "3")
    );
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "the slow backend must time out at 300ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_is_never_retried_for_the_same_call_and_its_own_answer_comes_back() {
    let sim = Sim::start("backends:\n  - name: only\n").await;
    let backends = format!("    - name: only\n      url: {}\n", sim.url("only"));
    let extra = "  retry: {maxAttempts: 3}\n  circuitBreaker:\n    rules:\n      - name: many\n        failureCondition: {count: 10, interval: 10s, statusCodeRanges: [{min: 500, max: 599}]}\n        tripDuration: 10s\n";
    let gw = Gateway::start(&pool_yaml("chat", &["gpt-4o"], &backends, extra)).await;
    sim.set_faults("only", json!({"mode": "status", "status": 503, "count": 1}))
        .await;
    let reply = gw.chat("no-second-try", chat_body("gpt-4o", false)).await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-spillway-attempts")),
        (503, "1"),
        "the backend's own error comes back; the same backend is not tried again"
    );
    assert_eq!(sim.entries("only").await.len(), 1);
    let reply = gw.chat("next-call", chat_body("gpt-4o", false)).await;
    assert_eq!(
        reply.status,
        200,
        "the next call is served: {}",
        reply.text()
    );
}
