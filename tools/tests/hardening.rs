//! The adversarial suite of issue #13 (loopback only, bounded): what one bad request or one
//! broken backend must never do to everybody else.
//!
//! - Poison requests: a request that a backend always fails reaches each backend at most once
//!   per call, so two of them leave a healthy pool serving (the default breaker opens on 5
//!   server errors within 10 s); the client gets the backend's own answer, not a gateway error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, Sim, chat_body, http, pool_yaml};
use http::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_poison_requests_leave_a_healthy_pool_serving() {
    let sim = Sim::start("backends:\n  - name: only\n  - name: a\n  - name: b\n").await;
    // One backend: before #13 each poison call tried it 3 times, so two calls opened it.
    let one = format!("    - name: only\n      url: {}\n", sim.url("only"));
    // Two backends: each poison call tries each of them once, never the same one twice.
    let two = format!(
        "    - name: a\n      url: {}\n    - name: b\n      url: {}\n",
        sim.url("a"),
        sim.url("b")
    );
    for (pool, backends, names) in [("one", one, vec!["only"]), ("two", two, vec!["a", "b"])] {
        let gw = Gateway::start(&pool_yaml(pool, &["gpt-4o"], &backends, "")).await;
        // Each backend fails the next 6 attempts it sees: what a poison request does to it.
        for name in &names {
            sim.set_faults(name, json!({"mode": "status", "status": 500, "count": 6}))
                .await;
        }
        for n in 0..2 {
            let reply = gw
                .chat(&format!("{pool}-poison-{n}"), chat_body("gpt-4o", false))
                .await;
            assert_eq!(
                reply.status,
                500,
                "{pool}: the backend's own answer: {}",
                reply.text()
            );
            assert_eq!(
                reply.header("x-spillway-attempts"),
                names.len().to_string(),
                "{pool}: each backend once"
            );
        }
        for name in &names {
            sim.clear_faults(name).await;
        }
        let reply = gw
            .chat(&format!("{pool}-healthy"), chat_body("gpt-4o", false))
            .await;
        assert_eq!(
            reply.status,
            200,
            "{pool}: the pool still serves: {}",
            reply.text()
        );
        let config = http(Method::GET, &format!("{}/admin/config", gw.admin), &[], "")
            .await
            .json();
        for backend in config["pools"][0]["backends"].as_array().unwrap() {
            assert_eq!(backend["breaker"], "closed", "{pool}: {backend}");
        }
    }
}

/// What a backend says about itself stays at the gateway: an app without a quota never sees
/// the backend's `x-ratelimit-*` (a shared deployment's capacity) or identifying headers;
/// `passResponseHeaders` lets chosen ones through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_headers_stay_at_the_gateway_unless_allowed() {
    // A backend with limits sends x-ratelimit-*; the simulator names itself in x-sim-backend.
    let sim = Sim::start("backends:\n  - name: ptu\n    tpm: 1000000\n    rpm: 100000\n").await;
    let backends = format!("    - name: ptu\n      url: {}\n", sim.url("ptu"));
    let pool = pool_yaml("chat", &["gpt-4o"], &backends, "");
    let direct = http(
        Method::POST,
        &format!("{}/v1/chat/completions", sim.url("ptu")),
        &[],
        chat_body("gpt-4o", false).to_string(),
    )
    .await;
    assert!(!direct.header("x-ratelimit-remaining-tokens").is_empty());
    assert!(!direct.header("x-sim-backend").is_empty());

    let gw = Gateway::start(&pool).await;
    for stream in [false, true] {
        let reply = gw
            .chat(&format!("hidden-{stream}"), chat_body("gpt-4o", stream))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        for leaked in [
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-requests",
            "x-sim-backend",
        ] {
            assert!(
                reply.header(leaked).is_empty(),
                "{leaked} leaked (stream {stream})"
            );
        }
        assert!(!reply.header("content-type").is_empty());
        assert_eq!(
            reply.header("x-spillway-backend"),
            "ptu",
            "the gateway's own name for it"
        );
    }

    let allowing = format!(
        "{pool}---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw}}\nspec:\n  passResponseHeaders: [\"x-sim-*\"]\n"
    );
    let gw = Gateway::start(&allowing).await;
    let reply = gw.chat("allowed", chat_body("gpt-4o", false)).await;
    assert_eq!(reply.header("x-sim-backend"), "ptu");
    assert!(reply.header("x-ratelimit-remaining-tokens").is_empty());
}

/// Bodies every backend would refuse are refused at the gateway with an OpenAI-shaped 400,
/// with bounded work and no backend call: invalid UTF-8 inside a JSON string, and arrays
/// nested 100,000 levels deep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_bodies_are_refused_without_a_backend_call() {
    let sim = Sim::start("backends:\n  - name: ptu\n").await;
    let backends = format!("    - name: ptu\n      url: {}\n", sim.url("ptu"));
    let gw = Gateway::start(&pool_yaml("chat", &["gpt-4o"], &backends, "")).await;
    let mut not_utf8 = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"caf"#.to_vec();
    not_utf8.extend_from_slice(&[0xC3, 0x28]);
    not_utf8.extend_from_slice(br#""}]}"#);
    let deep = format!(
        r#"{{"model":"gpt-4o","messages":[],"x":{}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for (name, body, fragment) in [
        ("not-utf8", not_utf8, "UTF-8"),
        ("too-deep", deep.into_bytes(), "levels deep"),
    ] {
        let reply = http(
            Method::POST,
            &format!("{}/v1/chat/completions", gw.url),
            &[("x-request-id", name), ("content-type", "application/json")],
            body,
        )
        .await;
        assert_eq!(reply.status, 400, "{name}: {}", reply.text());
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{name}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains(fragment)),
            "{name}: {error}"
        );
    }
    assert!(sim.entries("ptu").await.is_empty(), "no backend call");
}
