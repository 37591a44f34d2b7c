//! The control endpoints every simulated backend serves under `/_sim/`:
//!
//! | method | path | effect |
//! |---|---|---|
//! | GET / POST / DELETE | `/_sim/faults` | list / append (one fault, an array, or `{"faults":[…]}`) / clear this backend's faults |
//! | GET / POST | `/_sim/latency` | read / change `latencyMs`, `jitterMs`, `tokensPerSecond`, `uploadRateBytesPerSec` (fields given; 0 = no pacing) |
//! | GET / POST | `/_sim/limits` | read / change `tpm`, `rpm` (fields given; `null` = unlimited) |
//! | GET / DELETE | `/_sim/ledger` | the shared ledger (`?backend=`, `?since=`) / clear it |
//! | GET | `/_sim/health` | `{"backend": name, "status": "ok", "storedResponses", "backgroundJobs", "conversations", "cachedPrefixes", "files", "fileBytes", "batches"}` (this backend's state) |
//!
//! Input: the request, routed by axum ([`router`]). Output: a JSON response; bad input gets a
//! 400, an unknown endpoint a 404 and a wrong method a 405, each with an OpenAI-shaped error.
//! Admin requests are not recorded in the ledger.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::backend::Backend;
use super::body::SimBody;
use super::faults;
use super::ledger::LedgerQuery;
use super::payload::openai_error;
use super::ratelimit::Limits;
use super::route::query_param;

const MAX_ADMIN_BODY: usize = 1 << 20;

/// Names the answering backend on every response.
pub static X_SIM_BACKEND: HeaderName = HeaderName::from_static("x-sim-backend");

/// The prefix every control endpoint lives under.
pub const PREFIX: &str = "/_sim/";

type Shared = State<Arc<Backend>>;
type Posted = Result<Bytes, BytesRejection>;

/// The control endpoints of `backend`.
pub fn router(backend: Arc<Backend>) -> Router {
    Router::new()
        .route(
            "/_sim/faults",
            get(|State(b): Shared| async move { answer(Ok(faults_view(&b))) })
                .post(|State(b): Shared, body: Posted| async move {
                    answer(body_of(body).and_then(|body| {
                        let specs = faults::parse_posted(&body)?;
                        b.add_faults(&specs)?;
                        Ok(faults_view(&b))
                    }))
                })
                .delete(|State(b): Shared| async move {
                    b.clear_faults();
                    answer(Ok(faults_view(&b)))
                }),
        )
        .route(
            "/_sim/latency",
            get(|State(b): Shared| async move { answer(Ok(to_json(&b.timing()))) }).post(
                |State(b): Shared, body: Posted| async move {
                    answer(body_of(body).and_then(|body| set_timing(&b, &body)))
                },
            ),
        )
        .route(
            "/_sim/limits",
            get(|State(b): Shared| async move { answer(Ok(limits_view(b.limits()))) }).post(
                |State(b): Shared, body: Posted| async move {
                    answer(body_of(body).and_then(|body| set_limits(&b, &body)))
                },
            ),
        )
        .route(
            "/_sim/ledger",
            get(|State(b): Shared, RawQuery(query): RawQuery| async move {
                answer(Ok(ledger_view(&b, query.as_deref())))
            })
            .delete(|State(b): Shared| async move {
                b.shared.ledger.clear();
                answer(Ok(ledger_view(&b, None)))
            }),
        )
        .route(
            "/_sim/health",
            get(|State(b): Shared| async move {
                let (stored, jobs) = b.responses.counts();
                answer(Ok(json!({
                    "backend": b.name,
                    "status": "ok",
                    "storedResponses": stored,
                    "backgroundJobs": jobs,
                    "conversations": b.conversations.len(),
                    "cachedPrefixes": b.prefixes.kept(),
                    "files": b.files.len(),
                    "fileBytes": b.files.bytes(),
                    "batches": b.batches.len()
                })))
            }),
        )
        .fallback(|method: Method, uri: http::Uri| async move {
            let path = uri.path();
            error(
                StatusCode::NOT_FOUND,
                &format!("no simulator endpoint {method} {path}"),
            )
        })
        .method_not_allowed_fallback(|method: Method, uri: http::Uri| async move {
            let path = uri.path();
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{path} does not accept {method}"),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_ADMIN_BODY))
        .with_state(backend)
}

/// Serves one control request with `router`, as a buffered [`SimBody`] that names the backend.
pub async fn serve(router: &Router, name: &str, request: Request<Incoming>) -> Response<SimBody> {
    let response = match router.clone().oneshot(request.map(Body::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    if let Ok(name) = HeaderValue::try_from(name) {
        parts.headers.insert(X_SIM_BACKEND.clone(), name);
    }
    Response::from_parts(parts, SimBody::full(bytes))
}

fn body_of(body: Posted) -> Result<Bytes, String> {
    body.map_err(|rejection| format!("body: {}", rejection.body_text()))
}

fn answer(result: Result<Value, String>) -> Response {
    match result {
        Ok(value) => respond(StatusCode::OK, value.to_string()),
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn faults_view(backend: &Backend) -> Value {
    json!({"faults": to_json(&backend.faults())})
}

fn limits_view(limits: Limits) -> Value {
    json!({"tpm": limits.tpm, "rpm": limits.rpm})
}

fn ledger_view(backend: &Backend, query: Option<&str>) -> Value {
    let param = |name| query.and_then(|q| query_param(q, name));
    let query = LedgerQuery {
        backend: param("backend").filter(|b| !b.is_empty()),
        since: param("since").and_then(|s| s.parse().ok()),
    };
    to_json(&backend.shared.ledger.snapshot(&query))
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object".into()),
        Err(err) => Err(format!("not valid JSON: {err}")),
    }
}

fn set_timing(backend: &Backend, body: &[u8]) -> Result<Value, String> {
    let map = object(body)?;
    let mut timing = backend.timing();
    for (key, value) in &map {
        let number = value
            .as_u64()
            .ok_or_else(|| format!("`{key}` must be a non-negative integer"))?;
        match key.as_str() {
            "latencyMs" => timing.latency_ms = number,
            "jitterMs" => timing.jitter_ms = number,
            "tokensPerSecond" => {
                timing.tokens_per_second =
                    u32::try_from(number).map_err(|_| "`tokensPerSecond` is too large")?;
            }
            "uploadRateBytesPerSec" => timing.upload_rate_bytes_per_sec = number,
            _ => {
                return Err(format!(
                    "unknown field `{key}`; expected latencyMs, jitterMs, tokensPerSecond, uploadRateBytesPerSec"
                ));
            }
        }
    }
    backend.set_timing(timing);
    Ok(to_json(&backend.timing()))
}

fn set_limits(backend: &Backend, body: &[u8]) -> Result<Value, String> {
    let map = object(body)?;
    let mut limits = backend.limits();
    for (key, value) in &map {
        let limit = match value {
            Value::Null => None,
            other => Some(
                other
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("`{key}` must be a positive integer or null"))?,
            ),
        };
        match key.as_str() {
            "tpm" => limits.tpm = limit,
            "rpm" => limits.rpm = limit,
            _ => return Err(format!("unknown field `{key}`; expected tpm, rpm")),
        }
    }
    backend.set_limits(limits);
    Ok(limits_view(backend.limits()))
}

fn respond(status: StatusCode, body: impl Into<Body>) -> Response {
    (status, [(CONTENT_TYPE, "application/json")], body.into()).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    respond(
        status,
        openai_error(message, "invalid_request_error", None, None),
    )
}
