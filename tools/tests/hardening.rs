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
