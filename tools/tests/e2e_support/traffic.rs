//! Traffic of the end-to-end test: chat calls from the two apps of `examples/two-apps` (by
//! their API keys), OpenAI- or Azure-shaped, streaming or not, through a chosen sidecar; a
//! log of what every call got back; and the simulator ledger summed per sidecar, app, backend
//! and token type, to compare with what each sidecar exported over OTLP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use http::Method;
use serde_json::{Value, json};

use super::processes::Sidecar;
use crate::common::{Reply, Sim, http};

/// An app of `examples/two-apps`: its appId and the API key from its Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct App {
    pub id: &'static str,
    pub key: &'static str,
}

/// `support-chat`, known by its Entra client id.
pub const CHAT: App = App {
    id: "3f2a1c9e-5b7d-4e8a-9c61-2d4b8f0a7e15",
    key: "support-chat-key-change-me",
};
/// `nightly-batch`.
pub const BATCH: App = App {
    id: "nightly-batch",
    key: "nightly-batch-key-change-me",
};

/// How a call is shaped.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Azure `/openai/deployments/{model}/…` (else OpenAI `/v1/…`).
    pub azure: bool,
    pub stream: bool,
    pub max_tokens: u32,
}

/// What one call got back.
pub struct Call {
    pub id: String,
    pub app: App,
    /// Index of the sidecar it went through.
    pub sidecar: usize,
    pub stream: bool,
    pub status: u16,
    /// `x-spillway-backend`.
    pub backend: String,
    /// `x-spillway-attempts`.
    pub attempts: u32,
    pub reply: Reply,
}

/// Every call made, in order.
#[derive(Default)]
pub struct Log {
    pub calls: Vec<Call>,
}

impl Log {
    /// Sends one chat call for `model` as `app` through `sidecars[index]` and records it.
    pub async fn call(
        &mut self,
        sidecars: &[&Sidecar],
        index: usize,
        app: App,
        model: &str,
        shape: Shape,
    ) -> &Call {
        let id = format!("e2e-{}-{}", self.calls.len() + 1, sidecars[index].id);
        let reply = send(sidecars[index], app.key, &id, model, shape).await;
        let attempts = reply.header("x-spillway-attempts").parse().unwrap_or(0);
        self.calls.push(Call {
            id,
            app,
            sidecar: index,
            stream: shape.stream,
            status: reply.status.as_u16(),
            backend: reply.header("x-spillway-backend").to_owned(),
            attempts,
            reply,
        });
        self.calls.last().unwrap()
    }

    /// The call with request id `id`.
    pub fn by_id(&self, id: &str) -> Option<&Call> {
        self.calls.iter().find(|c| c.id == id)
    }
}

/// Sends one chat call with API key `key` and request id `id`, reading the whole body; a
/// successful stream must end with `data: [DONE]`.
pub async fn send(sidecar: &Sidecar, key: &str, id: &str, model: &str, shape: Shape) -> Reply {
    let mut body = json!({
        "stream": shape.stream,
        "max_tokens": shape.max_tokens,
        "messages": [{"role": "user", "content": "Summarise the spillway inspection report."}],
    });
    let url = if shape.azure {
        format!(
            "{}/openai/deployments/{model}/chat/completions?api-version=2024-10-21",
            sidecar.url
        )
    } else {
        body["model"] = json!(model);
        format!("{}/v1/chat/completions", sidecar.url)
    };
    let reply = http(
        Method::POST,
        &url,
        &[("api-key", key), ("x-request-id", id)],
        body.to_string(),
    )
    .await;
    if shape.stream && reply.status == 200 {
        assert!(
            reply.text().trim_end().ends_with("data: [DONE]"),
            "{id}: a complete stream: {}",
            reply.text()
        );
    }
    reply
}

/// The simulator's whole ledger (one ledger for all its backends).
pub async fn ledger(sim: &Sim) -> Vec<Value> {
    let any = sim.urls.values().next().expect("a backend");
    http(Method::GET, &format!("{any}/_sim/ledger"), &[], "")
        .await
        .json()["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Billed (prompt, completion) tokens per (sidecar, app id, backend), from the ledger's
/// successful entries of the calls in `log`.
pub type Billed = BTreeMap<(usize, String, String), (u64, u64)>;

/// Sums `entries` by sidecar, app and backend; every successful entry must belong to a call
/// of `log` that the client saw succeed from that same backend.
pub fn billed(entries: &[Value], log: &Log) -> Billed {
    let mut out = Billed::new();
    for entry in entries.iter().filter(|e| e["status"] == 200) {
        let id = entry["requestId"].as_str().unwrap();
        let call = log
            .by_id(id)
            .unwrap_or_else(|| panic!("ledger entry of an unknown call: {entry}"));
        let backend = entry["backend"].as_str().unwrap();
        assert_eq!(
            (call.status, call.backend.as_str()),
            (200, backend),
            "{id}: the client was told who served it"
        );
        let row = out
            .entry((call.sidecar, call.app.id.to_owned(), backend.to_owned()))
            .or_default();
        row.0 += entry["promptTokens"].as_u64().unwrap();
        row.1 += entry["completionTokens"].as_u64().unwrap();
    }
    out
}
