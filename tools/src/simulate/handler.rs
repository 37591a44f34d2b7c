//! One model request to a simulated backend, in order: route; method; auth; body;
//! `api-version` rules; the call; faults; rate limit; latency; the response; the ledger.
//!
//! Input: a hyper request and the backend's live state. Output: a response (a buffer or a
//! paced SSE stream), or [`ConnectionDropped`] to make hyper close the connection without
//! answering. Every model request leaves exactly one ledger entry.

use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::admin::X_SIM_BACKEND;
use super::backend::Backend;
use super::body::{ConnControl, SimBody, SseStream, StreamRecord};
use super::call::Call;
use super::faults::FaultAction;
use super::ledger::LedgerEntry;
use super::payload;
use super::ratelimit::{self, Decision, Quota};
use super::reply::Reply;
use super::route::{self, ApiVersion, Flavour, Route};
use super::sse;
use super::text;
use spillway_sidecar::usage::Operation;

/// Largest request body accepted.
pub const MAX_REQUEST_BODY: usize = 16 << 20;

/// Returned to hyper to close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("simulated connection close without response")]
pub struct ConnectionDropped;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Serves one model request on `backend`; `conn` controls the connection it arrived on.
/// (Control requests under `/_sim/` go to [`super::admin`] instead: axum routes them, but
/// a model request must be able to close its connection without any answer, which an axum
/// handler cannot do.)
///
/// # Errors
/// [`ConnectionDropped`] when a `connectionClose` fault applies.
pub async fn handle(
    backend: Arc<Backend>,
    conn: ConnControl,
    request: Request<Incoming>,
) -> Result<Response<SimBody>, ConnectionDropped> {
    let mut exchange = Exchange::begin(&backend, &request);
    match serve(&backend, &conn, &mut exchange, request).await {
        Ok(Some(response)) => Ok(exchange.decorate(&backend, response)),
        Ok(None) => {
            exchange.record(&backend, 0);
            Err(ConnectionDropped)
        }
        Err(reply) => {
            exchange.record(&backend, reply.status.as_u16());
            Ok(exchange.decorate(&backend, reply.into_response()))
        }
    }
}

/// Per-request bookkeeping: the ledger entry being filled and the headers every response
/// carries.
struct Exchange {
    entry: LedgerEntry,
    request_id: HeaderValue,
    started: Instant,
    quota: Option<Quota>,
    recorded: bool,
}

impl Exchange {
    fn begin(backend: &Backend, request: &Request<Incoming>) -> Self {
        let headers = request.headers();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = headers
            .get(&X_REQUEST_ID)
            .filter(|v| !v.is_empty())
            .cloned()
            .or_else(|| HeaderValue::try_from(text::request_id()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("sim"));
        let clock = &backend.shared.clock;
        let entry = LedgerEntry {
            timestamp_ms: clock
                .wall()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
            backend: backend.name.clone(),
            path: request.uri().path().to_owned(),
            api_version: request
                .uri()
                .query()
                .and_then(|q| route::query_param(q, "api-version")),
            api_key: header("api-key"),
            authorization: header("authorization"),
            traceparent: header("traceparent"),
            ..LedgerEntry::default()
        };
        Self {
            entry,
            request_id,
            started: clock.now(),
            quota: None,
            recorded: false,
        }
    }

    fn record(&mut self, backend: &Backend, status: u16) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        self.entry.status = status;
        self.entry.duration_ms = backend
            .shared
            .clock
            .now()
            .saturating_duration_since(self.started)
            .as_millis() as u64;
        backend
            .shared
            .ledger
            .record(std::mem::take(&mut self.entry));
    }

    /// Adds `x-sim-backend`, `x-request-id` and the rate-limit headers the response does not
    /// already carry.
    fn decorate(&self, backend: &Backend, mut response: Response<SimBody>) -> Response<SimBody> {
        let headers = response.headers_mut();
        if let Ok(name) = HeaderValue::try_from(backend.name.as_str()) {
            headers.insert(X_SIM_BACKEND.clone(), name);
        }
        headers.insert(X_REQUEST_ID.clone(), self.request_id.clone());
        if let Some(quota) = self.quota.or_else(|| backend.quota()) {
            let mut limits = HeaderMap::new();
            ratelimit::write_headers(&mut limits, &quota, None);
            for (name, value) in limits.into_iter().filter_map(|(n, v)| Some((n?, v))) {
                headers.entry(name).or_insert(value);
            }
        }
        response
    }
}

async fn serve(
    backend: &Arc<Backend>,
    conn: &ConnControl,
    exchange: &mut Exchange,
    request: Request<Incoming>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let (call, json, api_version) = read_call(backend, exchange, request).await?;
    let fault = backend.select_fault(call.stream);
    exchange.entry.fault = fault.as_ref().map(|f| f.name().to_owned());
    match &fault {
        Some(FaultAction::Status {
            status,
            headers,
            message,
        }) => {
            let (status, headers) = (*status, headers.clone());
            let reply = Reply::fault(
                call.flavour,
                call.operation,
                status,
                headers,
                message.as_deref(),
            );
            return Err(reply);
        }
        Some(FaultAction::ConnectionClose) => return Ok(None),
        Some(FaultAction::SlowFirstByte { delay }) => tokio::time::sleep(*delay).await,
        _ => {}
    }
    admit(backend, exchange, &call, api_version.as_deref())?;
    let latency = backend.draw_latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(Some(respond(
        backend,
        conn,
        exchange,
        &call,
        &json,
        fault.as_ref(),
    )))
}

/// Route, method, auth, body and `api-version` checks, then the call with its prompt
/// tokens, the parsed body and the `api-version`.
async fn read_call(
    backend: &Backend,
    exchange: &mut Exchange,
    request: Request<Incoming>,
) -> Result<(Call, Value, Option<String>), Reply> {
    let (path, query) = (request.uri().path(), request.uri().query());
    let route = route::parse(path, query)
        .ok_or_else(|| Reply::unknown_route(request.method().as_str(), path))?;
    exchange.entry.operation = Some(route.operation);
    exchange.entry.deployment = route.deployment.clone();
    if request.method() != Method::POST {
        return Err(Reply::method_not_allowed(request.method().as_str(), path));
    }
    authorize(backend, request.headers(), route.flavour)?;
    let body = read_body(request).await?;
    let json: Value = serde_json::from_slice(&body).map_err(|_| Reply::invalid_json())?;
    if !json.is_object() {
        return Err(Reply::bad_request(
            "The request body must be a JSON object.",
            None,
        ));
    }
    exchange.entry.model = json.get("model").and_then(Value::as_str).map(str::to_owned);
    exchange.entry.stream_options = json.get("stream_options").is_some();
    check_api_version(backend, &route, &json)?;
    let shared = &backend.shared;
    let created = shared
        .clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut call = Call::read(
        &route,
        &json,
        backend.completion_tokens,
        backend.usage_in_stream,
        created,
    )
    .map_err(|message| Reply::bad_request(&message, Some("model")))?;
    call.prompt_tokens = shared
        .prompts
        .count(&call.model, call.operation, &body, &json);
    exchange.entry.stream = call.stream;
    Ok((call, json, route.api_version))
}

fn authorize(backend: &Backend, headers: &HeaderMap, flavour: Flavour) -> Result<(), Reply> {
    let Some(key) = backend.api_key.as_deref() else {
        return Ok(());
    };
    let api_key = headers.get("api-key").and_then(|v| v.to_str().ok());
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Several accepted keys (rotating tokens, say) are separated by `|`.
    let accepted = |given: Option<&str>| given.is_some_and(|g| key.split('|').any(|k| k == g));
    if accepted(api_key) || accepted(bearer) {
        Ok(())
    } else {
        Err(Reply::unauthorized(flavour))
    }
}

async fn read_body(request: Request<Incoming>) -> Result<Bytes, Reply> {
    match Limited::new(request.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Reply::too_large(MAX_REQUEST_BODY))
        }
        Err(_) => Err(Reply::bad_request(
            "The request body could not be read.",
            None,
        )),
    }
}

/// Azure classic paths need a known `api-version`, and `stream_options` needs a recent one.
fn check_api_version(backend: &Backend, route: &Route, json: &Value) -> Result<(), Reply> {
    if route.flavour != Flavour::AzureClassic {
        return Ok(());
    }
    let version = route
        .api_version
        .as_deref()
        .and_then(ApiVersion::parse)
        .ok_or_else(Reply::resource_not_found)?;
    if json.get("stream_options").is_some() && version < backend.min_stream_options {
        return Err(Reply::unrecognized_stream_options());
    }
    Ok(())
}

fn admit(
    backend: &Backend,
    exchange: &mut Exchange,
    call: &Call,
    api_version: Option<&str>,
) -> Result<(), Reply> {
    match backend.admit(call.cost()) {
        Decision::Admitted(quota) => {
            exchange.quota = Some(quota);
            Ok(())
        }
        Decision::Limited {
            quota,
            retry_after,
            exceeded,
        } => {
            exchange.quota = Some(quota);
            Err(Reply::rate_limited(
                call.operation,
                api_version,
                &quota,
                retry_after,
                exceeded,
            ))
        }
    }
}

fn object_id(operation: Operation) -> String {
    let prefix = match operation {
        Operation::ChatCompletions => "chatcmpl-",
        Operation::Completions => "cmpl-",
        Operation::Responses => "resp_",
        Operation::Embeddings => "emb-",
    };
    text::object_id(prefix)
}

/// The successful response; non-streaming ones are recorded here, streams when they end.
fn respond(
    backend: &Backend,
    conn: &ConnControl,
    exchange: &mut Exchange,
    call: &Call,
    json: &Value,
    fault: Option<&FaultAction>,
) -> Response<SimBody> {
    let shared = &backend.shared;
    let completion = shared.completions.get(&call.model, call.length);
    let id = object_id(call.operation);
    exchange.entry.prompt_tokens = call.prompt_tokens;
    if !call.stream {
        let mut bytes = payload::success_body(call, &completion, json, &id);
        if fault == Some(&FaultAction::MalformedJson) {
            bytes = bytes.slice(..bytes.len() / 2);
        }
        exchange.entry.completion_tokens = match call.operation {
            Operation::Embeddings => 0,
            _ => completion.tokens,
        };
        exchange.record(backend, 200);
        return typed(SimBody::full(bytes), "application/json");
    }
    let (malformed, reset) = match fault {
        Some(FaultAction::MalformedSse { after_chunks }) => (Some(*after_chunks), None),
        Some(FaultAction::ResetMidStream { after_chunks }) => (None, Some(*after_chunks as usize)),
        _ => (None, None),
    };
    let events = sse::events(call, &completion, &id, malformed);
    exchange.entry.include_usage = call.include_usage;
    exchange.entry.status = 200;
    exchange.recorded = true;
    let record = StreamRecord {
        ledger: Arc::clone(&shared.ledger),
        entry: std::mem::take(&mut exchange.entry),
        model: call.model.clone(),
        full_tokens: completion.tokens,
        clock: Arc::clone(&shared.clock),
        started: exchange.started,
    };
    let tokens_per_second = backend.timing().tokens_per_second;
    let stream = SseStream::new(events, tokens_per_second, reset, conn.clone(), record);
    let mut response = typed(SimBody::Stream(Box::new(stream)), "text/event-stream");
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn typed(body: SimBody, content_type: &'static str) -> Response<SimBody> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
