//! One request to a model route of a simulated backend, in order: route; method; auth;
//! `api-version`; then by target — a model call (body, call, previous response or
//! conversation, faults, rate limit, latency, prompt cache, the response, the ledger, the
//! conversation's new items), an input-token count, a stored response
//! ([`super::responses`]) or a conversation ([`super::conversations`]).
//!
//! Input: a hyper request and the backend's live state. Output: a response (a buffer or a
//! paced SSE stream), or [`ConnectionDropped`] to make hyper close the connection without
//! answering. Every request leaves exactly one ledger entry — a background response's when it
//! completes, none if it is cancelled first.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::backend::Backend;
use super::body::{self, ConnControl, EndHook, Ending, SimBody, SseStream, StreamRecord};
use super::call::Call;
use super::conversations;
use super::exchange::{Exchange, Faulted};
use super::faults::FaultAction;
use super::payload;
use super::ratelimit::Decision;
use super::reply::Reply;
use super::responses::{self, Kept, StoredCall};
use super::route::{self, ApiVersion, Flavour, Route, Target};
use super::sse;
use super::store::{Turn, items_of};
use super::text::{self, Completion};
use crate::simulate::route::ModelApi;

/// Largest request body accepted.
pub const MAX_REQUEST_BODY: usize = 16 << 20;

/// Returned to hyper to close the connection without a response.
#[derive(Debug, thiserror::Error)]
#[error("simulated connection close without response")]
pub struct ConnectionDropped;

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

async fn serve(
    backend: &Arc<Backend>,
    conn: &ConnControl,
    exchange: &mut Exchange,
    request: Request<Incoming>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let (method, path) = (request.method(), request.uri().path());
    let route = route::parse(path, request.uri().query())
        .ok_or_else(|| Reply::unknown_route(method.as_str(), path))?;
    exchange.entry.operation = Some(route.operation);
    exchange.entry.deployment = route.deployment.clone();
    if !route.target.allows(method) {
        return Err(Reply::method_not_allowed(method.as_str(), path));
    }
    authorize(backend, request.headers(), route.flavour)?;
    let version = classic_api_version(&route)?;
    if let Some(call) = StoredCall::of(&route, method, request.uri().query()) {
        return responses::serve_stored(backend, exchange, &route, call).await;
    }
    if route.target.is_conversation() {
        let method = method.clone();
        let query = request.uri().query().map(str::to_owned);
        let body = match method {
            Method::POST => Some(read_json(request).await?.1),
            _ => None,
        };
        return conversations::serve(
            backend,
            exchange,
            &route,
            &method,
            query.as_deref(),
            body.as_ref(),
        )
        .await;
    }
    let (call, json) = read_call(backend, exchange, &route, version, request).await?;
    if route.target == Target::InputTokens {
        return responses::count_input(backend, exchange, &call).await;
    }
    model_call(
        backend,
        conn,
        exchange,
        call,
        &json,
        route.api_version.as_deref(),
    )
    .await
}

/// A model call: fault, rate limit, latency, prompt cache, then the answer.
async fn model_call(
    backend: &Arc<Backend>,
    conn: &ConnControl,
    exchange: &mut Exchange,
    mut call: Call,
    json: &Value,
    api_version: Option<&str>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let fault = match exchange
        .fault(backend, call.flavour, call.operation, call.stream)
        .await?
    {
        Faulted::Drop => return Ok(None),
        Faulted::Serve(fault) => fault,
    };
    admit(backend, exchange, &call, api_version)?;
    backend.wait_latency().await;
    call.cached_tokens = backend
        .prefixes
        .serve(&call, json, backend.shared.clock.now());
    Ok(Some(respond(
        backend,
        conn,
        exchange,
        &call,
        json,
        fault.as_ref(),
    )))
}

/// The body's checks, then the call with its prompt tokens (a previous response's or a
/// conversation's context included) and the parsed body.
async fn read_call(
    backend: &Backend,
    exchange: &mut Exchange,
    route: &Route,
    version: Option<ApiVersion>,
    request: Request<Incoming>,
) -> Result<(Call, Value), Reply> {
    let (body, json) = read_json(request).await?;
    exchange.entry.model = json.get("model").and_then(Value::as_str).map(str::to_owned);
    exchange.entry.stream_options = json.get("stream_options").is_some();
    if json.get("stream_options").is_some()
        && version.is_some_and(|v| v < backend.min_stream_options)
    {
        return Err(Reply::unrecognized_stream_options());
    }
    let mut call = Call::read(
        route,
        &json,
        backend.completion_tokens,
        backend.usage_in_stream,
        backend.unix_seconds(),
    )
    .map_err(|invalid| Reply::bad_request(invalid.message, Some(invalid.param)))?;
    call.prompt_tokens = backend
        .shared
        .prompts
        .count(&call.model, call.operation, &body, &json);
    if let Some(previous) = &call.previous_response_id {
        call.context_tokens = backend
            .responses
            .context_tokens(previous)
            .ok_or_else(|| Reply::previous_response_not_found(previous))?;
    }
    if let Some(conversation) = &call.conversation {
        let context = backend
            .conversations
            .context(conversation)
            .ok_or_else(|| Reply::conversation_param_not_found(conversation))?;
        call.context_tokens = context.tokens(&call.model);
        call.conversation_revision = context.revision;
    }
    call.prompt_tokens += call.context_tokens;
    call.plan_reasoning(
        backend.is_reasoning_model(&call.model),
        backend.reasoning_usage,
    );
    exchange.entry.stream = call.stream;
    Ok((call, json))
}

/// The body, which must be a JSON object, as bytes and parsed.
async fn read_json(request: Request<Incoming>) -> Result<(Bytes, Value), Reply> {
    let body = read_body(request).await?;
    let json: Value = serde_json::from_slice(&body).map_err(|_| Reply::invalid_json())?;
    if !json.is_object() {
        return Err(Reply::bad_request(
            "The request body must be a JSON object.",
            None,
        ));
    }
    Ok((body, json))
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

/// Azure classic paths need a known `api-version`; it is returned for the `stream_options`
/// check.
fn classic_api_version(route: &Route) -> Result<Option<ApiVersion>, Reply> {
    if route.flavour != Flavour::AzureClassic {
        return Ok(None);
    }
    route
        .api_version
        .as_deref()
        .and_then(ApiVersion::parse)
        .map(Some)
        .ok_or_else(Reply::resource_not_found)
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

/// The successful response. Non-streaming ones are recorded here, streams when they end,
/// background responses when their job completes; stored responses are kept first. A
/// response in a conversation appends its turn at once, when its stream completes, or when
/// its background job does.
fn respond(
    backend: &Arc<Backend>,
    conn: &ConnControl,
    exchange: &mut Exchange,
    call: &Call,
    json: &Value,
    fault: Option<&FaultAction>,
) -> Response<SimBody> {
    let shared = &backend.shared;
    let completion = shared.completions.get(&call.model, call.length);
    let id = object_id(call.operation);
    let usage = match call.operation {
        Operation::Embeddings => call.usage(0),
        _ => call.usage(completion.tokens),
    };
    let entry = &mut exchange.entry;
    entry.prompt_tokens = usage.prompt;
    entry.cached_tokens = usage.cached;
    entry.include_usage = call.include_usage;
    entry.completion_tokens = usage.completion();
    entry.reasoning_tokens = usage.reasoning;
    let (kept, turn) = keep(backend, exchange, call, json, &completion, &id);
    if !call.stream {
        if let Some(turn) = turn {
            backend.conversations.append(turn);
        }
        let mut bytes = match kept {
            Some(kept) => Bytes::from(kept.object.to_string()),
            None => payload::success_body(call, &completion, json, &id),
        };
        if fault == Some(&FaultAction::MalformedJson) {
            bytes = bytes.slice(..bytes.len() / 2);
        }
        exchange.record(backend, 200);
        return SimBody::full(bytes).into_ok("application/json");
    }
    let (malformed, reset) = match fault {
        Some(FaultAction::MalformedSse { after_chunks }) => (Some(*after_chunks), None),
        Some(FaultAction::ResetMidStream { after_chunks }) => (None, Some(*after_chunks as usize)),
        _ => (None, None),
    };
    let events = sse::events(call, &completion, &id, malformed);
    // A background response's job bills it, whatever becomes of the stream.
    let record = (!call.background).then(|| {
        exchange.entry.status = 200;
        StreamRecord {
            ledger: Arc::clone(&shared.ledger),
            entry: exchange.take_entry(),
            model: call.model.clone(),
            full_tokens: usage.completion(),
            reasoning_tokens: usage.reasoning,
            clock: Arc::clone(&shared.clock),
            started: exchange.started,
        }
    });
    let tokens_per_second = backend.timing().tokens_per_second;
    let mut stream = SseStream::new(events, tokens_per_second, reset, conn.clone(), record);
    let on_end = body::join_hooks(
        kept.and_then(|kept| kept.on_end),
        turn.map(|turn| append_on_completion(backend, turn)),
    );
    if let Some(on_end) = on_end {
        stream = stream.on_end(on_end);
    }
    let mut response = SimBody::Stream(Box::new(stream)).into_ok("text/event-stream");
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Keeps a responses create unless `store: false`, and hands back what it appends to its
/// conversation, if it has one (a background response's job takes that along instead).
fn keep(
    backend: &Arc<Backend>,
    exchange: &mut Exchange,
    call: &Call,
    json: &Value,
    completion: &Completion,
    id: &str,
) -> (Option<Kept>, Option<Turn>) {
    if call.operation != Operation::Responses {
        return (None, None);
    }
    let items = items_of(json.get("input"));
    let mut turn = responses::turn(call, &items, completion, id);
    let job_turn = turn.take_if(|_| call.background);
    let kept = call
        .store
        .then(|| responses::keep(backend, exchange, call, items, completion, id, job_turn));
    (kept, turn)
}

/// Appends `turn` to its conversation once the stream has been sent in full.
fn append_on_completion(backend: &Arc<Backend>, turn: Turn) -> EndHook {
    let backend = Arc::clone(backend);
    Box::new(move |ending| {
        if ending == Ending::Complete {
            backend.conversations.append(turn);
        }
    })
}
