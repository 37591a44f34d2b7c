//! One client request end to end: read the body (bounded), inspect it, find the pool, then
//! try candidates — feeding each outcome to the backend's breaker and moving on to the next
//! candidate (spilling over to the next priority group) on a retryable failure while attempts
//! and the deadline allow — and hand the chosen response to the accounting body. Every
//! request, whatever its end, produces exactly one usage record.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::Shared;
use super::attempt::{Attempt, Pinned};
use super::body::ProxyBody;
use super::call::{Call, with_common_headers};
use super::cors;
use super::inbound::{self, Inbound, InboundRoute};
use super::models;
use crate::error::ProxyError;
use crate::limiter::{AdmitRequest, Reservation, Used, estimate_prompt_tokens, output_limit};
use crate::protocol::request;
use crate::usage::{Operation, Usage};
use spillway_crds::billing::SpendCeiling;

/// A client's request body: hyper's `Incoming`, or any body of bytes a server hands over.
pub(crate) trait RequestBody:
    http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send
{
}

impl<B> RequestBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send
{
}

/// Serves one request. Never fails: every error becomes an OpenAI-shaped response. Browser
/// calls get their CORS headers here: preflights are answered before anything else, and
/// every answer to an allowed origin — errors included — can be read by the page.
pub(crate) async fn handle<B: RequestBody>(
    shared: Arc<Shared>,
    req: Request<B>,
) -> Response<ProxyBody> {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let cors = shared
        .applied
        .load()
        .as_ref()
        .as_ref()
        .and_then(|applied| applied.cors.clone());
    let Some(cors) = cors else {
        return handle_call(&shared, req).await;
    };
    if cors::is_preflight(req.method(), req.headers()) {
        return preflight(&shared, &cors, &req);
    }
    let mut response = handle_call(&shared, req).await;
    if cors.decorate(origin.as_ref(), response.headers_mut()) {
        tracing::debug!(
            ?origin,
            "origin not allowed by the CORS policy; no CORS headers"
        );
    }
    response
}

/// Answers a CORS preflight: 204 with the CORS headers, or 403 without them (recorded, so
/// refused origins are counted).
fn preflight<B>(shared: &Shared, cors: &cors::Cors, req: &Request<B>) -> Response<ProxyBody> {
    match cors.preflight(req.headers()) {
        Ok(headers) => {
            let mut response = Response::new(ProxyBody::full(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            *response.headers_mut() = headers;
            response
        }
        Err(refusal) => {
            let call = Call::new(&shared.sampler.load(), req.headers());
            tracing::info!(request_id = ?call.request_id, %refusal, "CORS preflight refused");
            refused(shared, &call, &ProxyError::CorsRefused(refusal.to_string()))
        }
    }
}

/// The response for `error`, with its usage record sent.
fn refused(shared: &Shared, call: &Call, error: &ProxyError) -> Response<ProxyBody> {
    let response = error.to_response();
    let mut record = call.record(response.status().as_u16(), Usage::default(), false);
    record.error_type = Some(error.recorded());
    shared.usage.send(record);
    with_common_headers(response.map(ProxyBody::full), call)
}

async fn handle_call<B: RequestBody>(shared: &Arc<Shared>, req: Request<B>) -> Response<ProxyBody> {
    let mut call = Call::new(&shared.sampler.load(), req.headers());
    match serve(shared, req, &mut call).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(request_id = ?call.request_id, %error, "request refused");
            refused(shared, &call, &error)
        }
    }
}

async fn serve<B: RequestBody>(
    shared: &Arc<Shared>,
    req: Request<B>,
    call: &mut Call,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (parts, body) = req.into_parts();
    let inbound = inbound::parse(&parts.method, parts.uri.path(), parts.uri.query())?;
    call.operation = inbound.operation();
    let applied = shared.applied.load_full();
    let Some(applied) = applied.as_ref().as_ref() else {
        return Err(ProxyError::NotReady);
    };
    let gateway = &applied.snapshot.gateway;
    call.namespace = applied
        .snapshot
        .namespace
        .clone()
        .or_else(|| shared.namespace.load().as_ref().clone());
    let identity = applied
        .identifier
        .identify(&parts.headers)
        .await
        .map_err(ProxyError::from)?;
    call.app_id = identity.app_id;
    let body_timeout = shared.body_read_timeout();
    let body = tokio::time::timeout(
        body_timeout,
        read_body(&parts.headers, body, gateway.max_request_body_bytes),
    )
    .await
    .map_err(|_| ProxyError::BodyTimeout(body_timeout))??;
    match inbound {
        Inbound::Model(route) => serve_model(shared, applied, &parts, &body, route, call).await,
        Inbound::Models { model, .. } => {
            let response = models::answer(applied, &call.app_id, model)?;
            shared
                .usage
                .send(call.record(response.status().as_u16(), Usage::default(), false));
            Ok(with_common_headers(response.map(ProxyBody::full), call))
        }
        Inbound::Stored(stored) => {
            super::stored::serve(shared, applied, &parts, body, stored, call).await
        }
        Inbound::NewConversation {
            flavor,
            api_version,
        } => {
            super::stored::create_conversation(
                shared,
                applied,
                &parts,
                body,
                (flavor, api_version),
                call,
            )
            .await
        }
    }
}

/// A model call: inspect the body, find the pool (and, continuing a stored response, its
/// backend), check the app's access, reserve quota, then attempt.
async fn serve_model(
    shared: &Arc<Shared>,
    applied: &super::Applied,
    parts: &http::request::Parts,
    body: &Bytes,
    route: InboundRoute<'_>,
    call: &mut Call,
) -> Result<Response<ProxyBody>, ProxyError> {
    let info = request::inspect(body)?;
    call.stream = info.stream;
    let requested = match route.deployment {
        Some(deployment) => deployment.to_owned(),
        None => info.model.clone().ok_or(ProxyError::MissingModel)?,
    };
    call.model.clone_from(&requested);
    let mut pool = applied
        .routes
        .pool(&requested)
        .ok_or_else(|| match route.deployment {
            Some(d) => ProxyError::DeploymentNotFound(d.to_owned()),
            None => ProxyError::ModelNotFound(requested.clone()),
        })?;
    let access = &applied.snapshot.gateway.model_access;
    if !access.allows(&call.app_id, &pool.config().name, &requested) {
        return Err(ProxyError::ModelAccessDenied {
            app: call.app_id.clone(),
            model: requested,
        });
    }
    // Continuing a stored response or conversation: its backend alone.
    let continued = match (&info.previous_response_id, &info.conversation) {
        (Some(id), _) => Some((id.as_str(), "Response")),
        (None, Some(id)) => Some((id.as_str(), "Conversation")),
        (None, None) => None,
    };
    let mut pinned = None;
    if route.operation == Operation::Responses
        && let Some((id, noun)) = continued
    {
        let kv = shared.limiter.shared_kv();
        if let Some(home) = shared.homes.find(id, kv.as_ref()).await {
            if home.app != call.app_id {
                return Err(ProxyError::StoredNotFound {
                    noun,
                    id: id.to_owned(),
                });
            }
            let holder = applied
                .routes
                .pools()
                .iter()
                .find(|p| p.config().name == home.pool)
                .and_then(|p| Some((p, p.index_of(&home.backend)?)));
            if let Some((holder, index)) = holder {
                pool = holder;
                pinned = Some(Pinned { index, id, noun });
            }
        }
    }
    call.pool.clone_from(&pool.config().name);
    let output_cap = pool
        .config()
        .max_output_tokens
        .unwrap_or_else(|| output_limit(&requested));
    let mut reservation = if route.counts_tokens_only() {
        None
    } else {
        admit(shared, call, body, &info, output_cap, pool.spend_ceiling()).await?
    };
    let attempt = Attempt {
        shared,
        applied,
        route,
        headers: &parts.headers,
        body,
        info: &info,
        requested: &requested,
        pinned,
    };
    let result = attempt.run(pool, call, &mut reservation).await;
    if let Some(unused) = reservation {
        // No response body will settle it: nothing was consumed.
        unused.settle(&Used::tokens(0));
    }
    result
}

/// Reserves the call's estimated tokens against the app's quotas: the prompt estimate plus
/// its output limit, counted up to `output_cap` (what the model can really produce) per
/// choice.
async fn admit(
    shared: &Shared,
    call: &Call,
    body: &[u8],
    info: &request::RequestInfo,
    output_cap: u64,
    spend_ceiling: &[SpendCeiling],
) -> Result<Option<Reservation>, ProxyError> {
    if !shared.limiter.has_quotas() {
        return Ok(None);
    }
    let request = AdmitRequest {
        app_id: &call.app_id,
        pool: &call.pool,
        model: &call.model,
        prompt_tokens_estimate: estimate_prompt_tokens(body),
        max_completion_tokens: info
            .max_tokens
            .map(|m| m.min(output_cap).saturating_mul(info.n.unwrap_or(1).max(1))),
        spend_ceiling,
    };
    match shared.limiter.admit(&request).await {
        Ok(reservation) => Ok(Some(reservation)),
        Err(refusal) => Err(ProxyError::quota_refused(refusal, SystemTime::now())),
    }
}

/// Reads the body, refusing more than `limit` bytes (early on `Content-Length`).
async fn read_body<B: RequestBody>(
    headers: &HeaderMap,
    body: B,
    limit: u64,
) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ProxyError::PayloadTooLarge { limit });
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ProxyError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ProxyError::InvalidBody(format!(
            "the request body could not be read: {e}"
        ))),
    }
}
