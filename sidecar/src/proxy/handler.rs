//! One client request end to end: read the body (bounded), inspect it, find the pool, then
//! try candidates — feeding each outcome to the backend's breaker and moving on to the next
//! candidate (spilling over to the next priority group) on a retryable failure while attempts
//! and the deadline allow — and hand the chosen response to the accounting body. Every
//! request, whatever its end, produces exactly one usage record.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use spillway_crds::snapshot::BackendConfig;

use super::body::{BodyKind, Finish, ProxyBody};
use super::inbound::{self, InboundRoute};
use super::upstream::{self, CallShape};
use super::{Applied, Shared};
use crate::breaker::{Outcome, Transition};
use crate::error::ProxyError;
use crate::protocol::request::{self, Edits, RequestInfo};
use crate::routing::{Pick, PoolRoutes};
use crate::usage::record::UpstreamAttempt;
use crate::usage::{Operation, Usage, UsageRecord};

/// What is known about the call so far; becomes the usage record.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub request_id: HeaderValue,
    pub app_id: String,
    pub pool: String,
    pub model: String,
    pub operation: Option<Operation>,
    pub stream: bool,
    pub started: Instant,
    pub attempts: u32,
    pub backend: Option<String>,
    /// Every attempt so far, for the usage record.
    pub upstream: Vec<UpstreamAttempt>,
}

impl Call {
    pub(crate) fn record(&self, status: u16, usage: Usage, estimated: bool) -> UsageRecord {
        UsageRecord {
            request_id: self.request_id.to_str().unwrap_or_default().to_owned(),
            app_id: self.app_id.clone(),
            pool: self.pool.clone(),
            backend: self.backend.clone(),
            model: self.model.clone(),
            response_model: None,
            operation: self.operation,
            stream: self.stream,
            usage,
            estimated,
            status,
            attempts: self.attempts,
            duration: self.started.elapsed(),
            time_to_first_token: None,
            client_disconnected: false,
            error_type: (status >= 400).then(|| status.to_string().into()),
            upstream: self.upstream.clone(),
        }
    }
}

/// Serves one request. Never fails: every error becomes an OpenAI-shaped response.
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    let mut call = Call {
        request_id: request_id(req.headers()),
        app_id: "anonymous".to_owned(),
        pool: String::new(),
        model: String::new(),
        operation: None,
        stream: false,
        started: Instant::now(),
        attempts: 0,
        backend: None,
        upstream: Vec::new(),
    };
    match serve(&shared, req, &mut call).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(request_id = ?call.request_id, %error, "request refused");
            let response = error.to_response();
            let mut record = call.record(response.status().as_u16(), Usage::default(), false);
            record.error_type = Some(error.code().into());
            shared.usage.send(record);
            with_common_headers(response.map(ProxyBody::full), &call)
        }
    }
}

async fn serve(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    call: &mut Call,
) -> Result<Response<ProxyBody>, ProxyError> {
    let (parts, body) = req.into_parts();
    let route = inbound::parse(&parts.method, parts.uri.path(), parts.uri.query())?;
    call.operation = Some(route.operation);
    let applied = shared.applied.load_full();
    let Some(applied) = applied.as_ref().as_ref() else {
        return Err(ProxyError::NotReady);
    };
    let gateway = &applied.snapshot.gateway;
    if let Some(app) = gateway
        .identity
        .trusted_header
        .as_ref()
        .and_then(|header| parts.headers.get(header))
        .and_then(|v| v.to_str().ok())
    {
        call.app_id = app.to_owned();
    }
    let body = read_body(&parts.headers, body, gateway.max_request_body_bytes).await?;
    let info = request::inspect(&body).map_err(|e| ProxyError::InvalidBody(e.to_string()))?;
    call.stream = info.stream;
    let requested = match route.deployment {
        Some(deployment) => deployment.to_owned(),
        None => info.model.clone().ok_or(ProxyError::MissingModel)?,
    };
    call.model.clone_from(&requested);
    let pool = applied
        .routes
        .pool(&requested)
        .ok_or_else(|| match route.deployment {
            Some(d) => ProxyError::DeploymentNotFound(d.to_owned()),
            None => ProxyError::ModelNotFound(requested.clone()),
        })?;
    call.pool.clone_from(&pool.config().name);
    let attempt = Attempt {
        shared,
        applied,
        route,
        headers: &parts.headers,
        body: &body,
        info: &info,
        requested: &requested,
        traceparent: traceparent(&parts.headers),
    };
    attempt.run(pool, call).await
}

/// Reads the body, refusing more than `limit` bytes (early on `Content-Length`).
async fn read_body(headers: &HeaderMap, body: Incoming, limit: u64) -> Result<Bytes, ProxyError> {
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

struct Attempt<'a> {
    shared: &'a Arc<Shared>,
    applied: &'a Applied,
    route: InboundRoute<'a>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    info: &'a RequestInfo,
    requested: &'a str,
    traceparent: HeaderValue,
}

/// How one attempt ended, before the retry decision.
enum Sent {
    /// The backend answered; `asked_usage` says whether the gateway injected
    /// `stream_options.include_usage`.
    Response {
        response: Response<Incoming>,
        asked_usage: bool,
    },
    /// No response: the outcome for the breaker and the error for the client.
    Failed(Outcome, ProxyError),
    /// The request could not be prepared for this backend; not the backend's fault.
    Refused(ProxyError),
}

impl Attempt<'_> {
    async fn run(
        &self,
        pool: &PoolRoutes,
        call: &mut Call,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let retry = &pool.config().retry;
        let deadline = call.started + Duration::from_millis(retry.deadline_ms);
        let mut tried: Vec<usize> = Vec::with_capacity(2);
        let mut rng = fastrand::Rng::new();
        let mut last_error = None;
        while call.attempts < retry.max_attempts && Instant::now() < deadline {
            let (index, backend, mut attempt) = match pool.pick(Instant::now(), &tried, &mut rng) {
                Pick::Backend {
                    index,
                    backend,
                    attempt,
                } => (index, backend, attempt),
                Pick::Unavailable { retry_after } => {
                    return Err(ProxyError::NoBackendAvailable {
                        pool: call.pool.clone(),
                        retry_after,
                    });
                }
            };
            call.attempts += 1;
            tried.push(index);
            call.backend = Some(backend.name.clone());
            let is_last = call.attempts >= retry.max_attempts;
            let started = call.started.elapsed();
            match self.send(backend, &call.request_id, deadline).await {
                Sent::Response {
                    response,
                    asked_usage,
                } => {
                    let status = response.status().as_u16();
                    let outcome = if response.status().is_success() {
                        Outcome::Success
                    } else {
                        Outcome::from_response(status, response.headers(), SystemTime::now())
                    };
                    let transition = attempt.record(Instant::now(), &outcome);
                    call.upstream.push(upstream_attempt(
                        backend,
                        started,
                        Ok(status),
                        transition.as_ref(),
                    ));
                    log_transition(transition, backend);
                    if retry.retries_status(status) && !is_last && Instant::now() < deadline {
                        tracing::debug!(backend = %backend.name, status, "retrying on the next candidate");
                        discard(response);
                        continue;
                    }
                    return Ok(self.respond(response, asked_usage, call));
                }
                Sent::Failed(outcome, error) => {
                    let transition = attempt.record(Instant::now(), &outcome);
                    let failure = match outcome {
                        Outcome::Timeout => "timeout",
                        _ => "connection_failure",
                    };
                    call.upstream.push(upstream_attempt(
                        backend,
                        started,
                        Err(failure),
                        transition.as_ref(),
                    ));
                    log_transition(transition, backend);
                    let retryable = match outcome {
                        Outcome::Timeout => retry.on_timeout,
                        _ => retry.on_connection_failure,
                    };
                    tracing::debug!(backend = %backend.name, %error, "attempt failed");
                    last_error = Some(error);
                    if !retryable {
                        break;
                    }
                }
                Sent::Refused(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ProxyError::UpstreamTimeout))
    }

    async fn send(
        &self,
        backend: &BackendConfig,
        request_id: &HeaderValue,
        deadline: Instant,
    ) -> Sent {
        let target = upstream::target(backend, &self.shape());
        let edits = Edits {
            model: target.set_model,
            include_usage: target.ask_usage,
        };
        let body = match request::rewrite(self.body, self.info, &edits) {
            Ok(body) => body,
            Err(e) => return Sent::Refused(ProxyError::InvalidBody(e.to_string())),
        };
        let strip = self
            .applied
            .snapshot
            .gateway
            .identity
            .trusted_header
            .as_deref();
        let mut builder = Request::post(&target.url);
        if let Some(headers) = builder.headers_mut() {
            *headers = upstream::request_headers(
                self.headers,
                backend,
                strip,
                request_id,
                &self.traceparent,
            );
        }
        let Ok(request) = builder.body(Full::new(body)) else {
            return Sent::Refused(ProxyError::UpstreamUnreachable(format!(
                "backend {} has an invalid URL {}",
                backend.name, target.url
            )));
        };
        let until = deadline.min(Instant::now() + Duration::from_millis(backend.timeout_ms));
        match tokio::time::timeout_at(until.into(), self.shared.client.request(request)).await {
            Ok(Ok(response)) => Sent::Response {
                response,
                asked_usage: target.ask_usage,
            },
            Ok(Err(e)) => Sent::Failed(
                Outcome::ConnectionFailure,
                ProxyError::UpstreamUnreachable(format!("{}: {}", backend.name, error_chain(&e))),
            ),
            Err(_) => Sent::Failed(Outcome::Timeout, ProxyError::UpstreamTimeout),
        }
    }

    fn respond(
        &self,
        response: Response<Incoming>,
        asked_usage: bool,
        call: &Call,
    ) -> Response<ProxyBody> {
        let (mut parts, upstream_body) = response.into_parts();
        let kind = if !parts.status.is_success() {
            BodyKind::Passthrough
        } else if self.info.stream {
            BodyKind::Sse {
                strip_usage: asked_usage,
            }
        } else {
            BodyKind::Json
        };
        if asked_usage {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        retain_passing_back(&mut parts.headers);
        let gateway = &self.applied.snapshot.gateway;
        let finish = Finish {
            call: call.clone(),
            status: parts.status.as_u16(),
            request_body: self.body.clone(),
            sink: self.shared.usage.clone(),
            drain_timeout: Duration::from_millis(gateway.stream_drain_timeout_ms),
            drain_max_bytes: gateway.stream_drain_max_bytes,
        };
        let body = ProxyBody::accounted(upstream_body, kind, finish);
        with_common_headers(Response::from_parts(parts, body), call)
    }

    fn shape(&self) -> CallShape<'_> {
        CallShape {
            route: self.route,
            requested: self.requested,
            body_model: self.info.model.as_deref(),
            stream: self.info.stream,
            client_include_usage: self.info.include_usage,
        }
    }
}

fn retain_passing_back(headers: &mut HeaderMap) {
    let dropped: Vec<_> = headers
        .keys()
        .filter(|n| !upstream::passes_back(n))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

/// The usage record's entry for one attempt: the response status, or why none came.
fn upstream_attempt(
    backend: &BackendConfig,
    started: Duration,
    result: Result<u16, &'static str>,
    transition: Option<&Transition>,
) -> UpstreamAttempt {
    UpstreamAttempt {
        backend: backend.name.clone(),
        started,
        status: result.ok(),
        failure: result.err(),
        breaker: transition.map(|t| [t.from.as_str(), t.to.as_str()]),
    }
}

fn log_transition(transition: Option<Transition>, backend: &BackendConfig) {
    if let Some(t) = transition {
        tracing::info!(backend = %backend.name, from = t.from.as_str(), to = t.to.as_str(), rule = t.rule.as_deref().unwrap_or(""), "circuit breaker");
    }
}

/// Reads and drops a response the client will not see, so its connection can be reused.
fn discard(response: Response<Incoming>) {
    tokio::spawn(async move {
        let body = Limited::new(response.into_body(), 256 * 1024);
        let _ = tokio::time::timeout(Duration::from_secs(5), body.collect()).await;
    });
}

fn with_common_headers(mut response: Response<ProxyBody>, call: &Call) -> Response<ProxyBody> {
    let headers = response.headers_mut();
    headers.insert("x-request-id", call.request_id.clone());
    if let Some(value) = call
        .backend
        .as_deref()
        .and_then(|b| HeaderValue::from_str(b).ok())
    {
        headers.insert("x-spillway-backend", value);
    }
    headers.insert("x-spillway-attempts", HeaderValue::from(call.attempts));
    if response.status() == StatusCode::OK && call.attempts > 1 {
        response
            .headers_mut()
            .insert("x-spillway-retried", HeaderValue::from_static("true"));
    }
    response
}

/// The client's request id (`x-request-id`, then `x-ms-client-request-id`) when it is a
/// reasonable token, else a new random one.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    ["x-request-id", "x-ms-client-request-id"]
        .iter()
        .filter_map(|name| headers.get(*name))
        .find(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| hex_header(16))
}

/// The client's W3C `traceparent` when well-formed, else a new sampled one.
fn traceparent(headers: &HeaderMap) -> HeaderValue {
    if let Some(value) = headers.get("traceparent") {
        let b = value.as_bytes();
        let ok = b.len() == 55
            && b[2] == b'-'
            && b[35] == b'-'
            && b[52] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| matches!(i, 2 | 35 | 52) || c.is_ascii_hexdigit());
        if ok {
            return value.clone();
        }
    }
    let trace = random_hex(16);
    let span = random_hex(8);
    HeaderValue::from_str(&format!("00-{trace}-{span}-01")).unwrap_or_else(|_| {
        HeaderValue::from_static("00-00000000000000000000000000000001-0000000000000001-01")
    })
}

fn random_hex(bytes: usize) -> String {
    let mut rng = fastrand::Rng::new();
    (0..bytes).map(|_| format!("{:02x}", rng.u8(..))).collect()
}

fn hex_header(bytes: usize) -> HeaderValue {
    HeaderValue::from_str(&random_hex(bytes)).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
