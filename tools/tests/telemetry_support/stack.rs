//! The stack the telemetry tests run: the simulator's backends (`ptu` with usage in streams,
//! `paygo` without), a pool with both behind an app-identifying trusted header, and calls
//! made as an app.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use super::gateway::RunningGateway;

/// `spillway simulate` config: `ptu` reports usage in streams, `paygo` does not.
pub const SIM: &str = "backends:\n  - name: ptu\n  - name: paygo\n    usageInStream: false\n";

/// A pool with `ptu` (priority 1) and `paygo` (priority 2), the app taken from `x-app-id`,
/// followed by `extra` manifests.
pub fn manifests(ptu: &str, paygo: &str, extra: &str) -> String {
    format!(
        "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {{name: chat}}
spec:
  models: [gpt-4o]
  pricing:
    currency: USD
    rates: [{{input: '2.50', cachedInput: '1.25', output: '10.00'}}]
  backends:
    - {{name: ptu, url: '{ptu}', priority: 1, pricing: {{provisioned: {{amount: '2.00', per: Hour}}}}}}
    - {{name: paygo, url: '{paygo}', priority: 2}}
---
apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata: {{name: gw}}
spec:
  identity: {{trustedHeader: x-app-id}}
{extra}"
    )
}

/// Sends one chat call (`model`, streaming or not) as `app` with request id `id`; returns
/// the status after reading the whole body.
pub async fn call(gw: &RunningGateway, app: &str, id: &str, model: &str, stream: bool) -> u16 {
    let body = json!({
        "model": model,
        "stream": stream,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Tell me about spillways."}],
    });
    let request = Request::post(format!("{}/v1/chat/completions", gw.url))
        .header("content-type", "application/json")
        .header("x-app-id", app)
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = Client::builder(TokioExecutor::new())
        .build_http()
        .request(request)
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .expect("a complete body");
    status
}

/// Polls (bounded: 10 s) until `done` holds.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A token count as the float metrics carry.
#[allow(clippy::cast_precision_loss)]
pub fn f(n: u64) -> f64 {
    n as f64
}
