//! Criterion micro-benchmarks of the gateway's per-request hot paths:
//! - request inspection (`protocol::inspect`) and the targeted edit (`protocol::rewrite`) of a
//!   typical chat body;
//! - SSE usage extraction: a whole 64-delta stream through `StreamScanner` (with and without
//!   stripping the injected usage chunk), chunk by chunk as it arrives;
//! - the breaker check (`Breaker::can_admit`, and `admit` + `record` of a success);
//! - bucket admit: `TokenBucket::take` alone, and `Limiter::admit` + `settle` of an app with a
//!   token, a request and a daily quota;
//! - request dispatch: one request through a hyper `service_fn` and through an axum `Router`
//!   (fallback handler) around the same trivial handler, as the data path's server would;
//!   the difference is what axum would add per request (BENCHMARKS.md).
//!
//! Run: `cargo bench -p spillway-sidecar --bench hot_paths`. Inputs are built once outside
//! the timed loops; outputs are passed through `black_box`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::Full;
use spillway_crds::compile::default_breaker;
use spillway_sidecar::breaker::{Breaker, Outcome};
use spillway_sidecar::clock::SystemClock;
use spillway_sidecar::limiter::bucket::{BucketLimit, TokenBucket};
use spillway_sidecar::limiter::{AdmitRequest, Limiter, Used};
use spillway_sidecar::protocol::{Edits, inspect, rewrite};
use spillway_sidecar::subscribe::file::{LocalSecrets, load_text};
use spillway_sidecar::usage::sse::{ScanOptions, StreamScanner};

/// A chat request of about 1 KiB: a system prompt, a few turns, a tool, streaming.
fn chat_body() -> Bytes {
    let turns: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            serde_json::json!({
                "role": if i % 2 == 0 { "user" } else { "assistant" },
                "content": format!("Turn {i}: please summarise the quarterly numbers for region {i} in two short sentences."),
            })
        })
        .collect();
    let mut messages =
        vec![serde_json::json!({"role": "system", "content": "You are a concise analyst."})];
    messages.extend(turns);
    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": messages,
        "temperature": 0.2,
        "max_tokens": 256,
        "stream": true,
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"region": {"type": "string"}}}}}],
    });
    Bytes::from(body.to_string())
}

/// A 64-delta chat stream as the simulator writes it, with the usage chunk the gateway asks
/// for, split into one network chunk per event.
fn sse_chunks() -> Vec<Bytes> {
    let mut events = vec![
        r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}"#.to_owned(),
    ];
    for i in 0..64 {
        events.push(format!(
            r#"data: {{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{{"index":0,"delta":{{"content":"word{i} "}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ));
    }
    events.push(r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#.to_owned());
    events.push(r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":64,"total_tokens":184}}"#.to_owned());
    events.push("data: [DONE]".to_owned());
    events
        .into_iter()
        .map(|e| Bytes::from(format!("{e}\n\n")))
        .collect()
}

fn request_inspection(c: &mut Criterion) {
    let body = chat_body();
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("inspect", |b| b.iter(|| inspect(black_box(&body)).unwrap()));
    let info = inspect(&body).unwrap();
    let edits = Edits {
        model: Some("gpt-4o-2024-08-06"),
        include_usage: true,
    };
    group.bench_function("inspect+rewrite", |b| {
        b.iter(|| {
            let info = inspect(black_box(&body)).unwrap();
            rewrite(&body, &info, &edits).unwrap()
        });
    });
    group.bench_function("rewrite (no change)", |b| {
        b.iter(|| rewrite(black_box(&body), &info, &Edits::default()).unwrap());
    });
    group.finish();
}

fn sse_usage(c: &mut Criterion) {
    let chunks = sse_chunks();
    let bytes: usize = chunks.iter().map(Bytes::len).sum();
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(bytes as u64));
    for strip in [false, true] {
        let name = if strip {
            "stream of 64 deltas, strip usage"
        } else {
            "stream of 64 deltas, pass through"
        };
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(8);
            b.iter(|| {
                let mut scanner = StreamScanner::new(ScanOptions {
                    strip_injected_usage: strip,
                });
                for chunk in &chunks {
                    out.clear();
                    black_box(scanner.feed(chunk.clone(), &mut out));
                }
                out.clear();
                let summary = scanner.finish(&mut out);
                assert!(summary.usage.is_some());
                summary
            });
        });
    }
    group.finish();
}

fn breaker_check(c: &mut Criterion) {
    let breaker = Arc::new(Breaker::new(&default_breaker()));
    let mut group = c.benchmark_group("breaker");
    group.bench_function("can_admit (closed)", |b| {
        b.iter(|| breaker.can_admit(black_box(Instant::now())));
    });
    group.bench_function("admit+record success", |b| {
        b.iter(|| {
            let now = Instant::now();
            let permit = breaker.admit(now).into_permit().unwrap();
            permit.record(now, &Outcome::Success)
        });
    });
    group.finish();
}

const QUOTAS: &str = "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: p}
spec:
  models: [gpt-4o]
  backends: [{name: b, type: OpenAI, url: \"http://127.0.0.1:9\"}]
---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: q}
spec:
  appId: app
  tokensPerMinute: 1000000000000
  requestsPerMinute: 1000000000
  quotas: [{period: Daily, tokens: 1000000000000000}]
";

fn bucket_admit(c: &mut Criterion) {
    let mut group = c.benchmark_group("limiter");
    let limit = BucketLimit::per_minute(1_000_000_000);
    let mut bucket = TokenBucket::full(Instant::now());
    group.bench_function("TokenBucket available+take", |b| {
        b.iter(|| {
            let now = Instant::now();
            let room = bucket.available(now, limit);
            bucket.take(now, limit, black_box(300));
            room
        });
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let snapshot = load_text(QUOTAS, &LocalSecrets::default()).unwrap();
    let limiter = Limiter::new(Arc::new(SystemClock));
    runtime
        .block_on(async { limiter.apply(&snapshot) })
        .unwrap();
    let request = AdmitRequest {
        app_id: "app",
        pool: "p",
        model: "gpt-4o",
        prompt_tokens_estimate: 120,
        max_completion_tokens: Some(256),
        spend_ceiling: &[],
    };
    group.bench_function("Limiter admit+settle (tpm, rpm, daily)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let reservation = limiter.admit(black_box(&request)).await.unwrap();
                reservation.settle(&Used::tokens(184));
            });
        });
    });
    group.finish();
}

fn answer<B>(_request: http::Request<B>) -> http::Response<Full<Bytes>> {
    http::Response::new(Full::new(Bytes::from_static(b"{}")))
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(chat_body()))
        .expect("request")
}

fn dispatch(c: &mut Criterion) {
    use hyper::service::Service as _;
    use tower::ServiceExt as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("dispatch");
    let plain = hyper::service::service_fn(|request: http::Request<Full<Bytes>>| async move {
        Ok::<_, std::convert::Infallible>(answer(request))
    });
    group.bench_function("hyper service_fn", |b| {
        b.iter(|| {
            runtime
                .block_on(plain.call(black_box(request())))
                .expect("answer")
        });
    });
    let router = axum::Router::new().fallback(|request: axum::extract::Request| async move {
        axum::response::IntoResponse::into_response(answer(request))
    });
    group.bench_function("axum Router fallback", |b| {
        b.iter(|| {
            runtime
                .block_on(router.clone().oneshot(black_box(request())))
                .expect("answer")
        });
    });
    group.finish();
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = request_inspection, sse_usage, breaker_check, bucket_admit, dispatch
}
criterion_main!(hot_paths);
