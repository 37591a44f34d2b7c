//! One request to a model route of a simulated backend, in order: route; method; auth;
//! `api-version`; then by operation and target — a model call (body, call, previous response
//! or conversation, faults, rate limit, latency, prompt cache, the response, the ledger, the
//! conversation's new items), an input-token count, a stored response
//! ([`super::responses`]), a conversation ([`super::conversations`]), images
//! ([`super::images`]), audio ([`super::audio`]), files ([`super::files`]) or batches
//! ([`super::batches`]).
//!
//! Input: a hyper request and the backend's live state. Output: a response (a buffer, or a
//! paced stream of SSE events or audio chunks), or [`ConnectionDropped`] to make hyper close
//! the connection without answering. Every request leaves exactly one ledger entry — a
//! background response's when it completes, none if it is cancelled first; a batch adds its
//! own billing entry when it completes.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use serde_json::Value;

use super::backend::Backend;
use super::body::{self, ConnControl, EndHook, Ending, SimBody, SseStream, StreamRecord};
use super::call::Call;
use super::exchange::{Exchange, Faulted};
use super::faults::FaultAction;
use super::incoming::{authorize, classic_api_version, read_json};
use super::payload;
use super::reply::Reply;
use super::responses::{self, Kept, StoredCall};
use super::route::{self, Api, ApiVersion, ModelApi, Route, Target};
use super::sse;
use super::store::{Turn, items_of};
use super::text::Completion;
use super::{audio, batches, conversations, files, images};

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
    exchange.entry.operation = Some(route.api);
    exchange.entry.deployment = route.deployment.clone();
    if !route.target.allows(method) {
        return Err(Reply::method_not_allowed(method.as_str(), path));
    }
    authorize(backend, request.headers(), route.flavour)?;
    let version = classic_api_version(&route)?;
    match route.api {
        Api::Model(operation) => {
            model_route(backend, conn, exchange, &route, operation, version, request).await
        }
        Api::ImagesGenerations | Api::ImagesEdits | Api::ImagesVariations => {
            images::serve(backend, exchange, &route, request).await
        }
        Api::AudioTranscriptions | Api::AudioTranslations => {
            audio::transcribe(backend, conn, exchange, &route, request).await
        }
        Api::AudioSpeech => audio::speech::serve(backend, conn, exchange, &route, request).await,
        Api::Files => files::serve(backend, exchange, &route, request).await,
        Api::Batches => batches::serve(backend, exchange, &route, request).await,
    }
}

/// A request to a model route: a stored response, a conversation, an input-token count or
/// a model call.
async fn model_route(
    backend: &Arc<Backend>,
    conn: &ConnControl,
    exchange: &mut Exchange,
    route: &Route,
    operation: ModelApi,
    version: Option<ApiVersion>,
    request: Request<Incoming>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let method = request.method().clone();
    let query = request.uri().query().map(str::to_owned);
    if let Some(call) = StoredCall::of(route, &method, query.as_deref()) {
        return responses::serve_stored(backend, exchange, route, call).await;
    }
    if route.target.is_conversation() {
        let body = match method {
            Method::POST => Some(read_json(request).await?.1),
            _ => None,
        };
        return conversations::serve(
            backend,
            exchange,
            route,
            &method,
            query.as_deref(),
            body.as_ref(),
        )
        .await;
    }
    let (call, json) = read_call(backend, exchange, route, operation, version, request).await?;
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
        .fault(backend, call.flavour, call.operation.into(), call.stream)
        .await?
    {
        Faulted::Drop => return Ok(None),
        Faulted::Serve(fault) => fault,
    };
    exchange.admit(backend, call.operation.into(), call.cost(), api_version)?;
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
    operation: ModelApi,
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
        operation,
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
    let id = payload::object_id(call.operation);
    let usage = match call.operation {
        ModelApi::Embeddings => call.usage(0),
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
    let (malformed, reset) = sse::mid_stream(fault);
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
            bills_in_full: false,
            keeps_raw: true,
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
    if call.operation != ModelApi::Responses {
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
