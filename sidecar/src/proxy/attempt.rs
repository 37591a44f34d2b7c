//! The attempts of one request: pick a candidate, send, feed the outcome to its breaker, and
//! retry on the next candidate (spilling over to the next priority group) while attempts and
//! the deadline allow; then hand the chosen response to the accounting body.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use spillway_crds::snapshot::BackendConfig;

use super::body::{AuditHook, BodyKind, Finish, ProxyBody, READ_WHOLE, Upstream};
use super::call::{Call, with_common_headers};
use super::ids::{attempt_traceparent, span_id};
use super::inbound::InboundRoute;
use super::upstream::{self, CallShape};
use super::{Applied, Shared};
use crate::affinity::Home;
use crate::breaker::{Outcome, Transition};
use crate::credentials::TokenCache;
use crate::error::ProxyError;
use crate::http_client::error_chain;
use crate::limiter::Reservation;
use crate::protocol::request::{self, Edits, RequestInfo};
use crate::routing::{Pick, PoolRoutes};
use crate::usage::Operation;
use crate::usage::record::{AttemptTrace, UpstreamAttempt};

pub(crate) struct Attempt<'a> {
    pub shared: &'a Arc<Shared>,
    pub applied: &'a Applied,
    pub route: InboundRoute<'a>,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
    pub info: &'a RequestInfo,
    pub requested: &'a str,
    /// The call must reach one backend alone: it continues a stored response or
    /// conversation that lives there.
    pub pinned: Option<Pinned<'a>>,
}

/// The backend a call must reach, and why.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pinned<'a> {
    /// The backend's index in the pool.
    pub index: usize,
    /// The stored response or conversation the call continues.
    pub id: &'a str,
    /// `Response` or `Conversation`.
    pub noun: &'static str,
}

/// How one attempt ended, before the retry decision.
enum Sent {
    /// The backend answered; `asked_usage` says whether the gateway injected
    /// `stream_options.include_usage`.
    Response {
        response: Response<Upstream>,
        asked_usage: bool,
    },
    /// No response: the outcome for the breaker and the error for the client.
    Failed(Outcome, ProxyError),
    /// The request could not be prepared for this backend; not the backend's fault.
    Refused(ProxyError),
}

impl Attempt<'_> {
    pub(crate) async fn run(
        &self,
        pool: &PoolRoutes,
        call: &mut Call,
        reservation: &mut Option<Reservation>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let retry = &pool.config().retry;
        let deadline = call.started + Duration::from_millis(retry.deadline_ms);
        let mut tried: Vec<usize> = Vec::with_capacity(2);
        let mut rng = fastrand::Rng::new();
        let mut last_error = None;
        // A retryable answer (429, 5xx) is kept until the next candidate is picked: when none
        // is left, the client gets that answer rather than a gateway error.
        let mut held: Option<(Response<Upstream>, bool, String)> = None;
        let affinity = self.affinity_key(pool);
        while call.attempts < retry.max_attempts && Instant::now() < deadline {
            let pick = match self.pinned {
                // A stored response's backend alone: never another one, even on failure.
                Some(_) if !tried.is_empty() => break,
                Some(Pinned { index, id, noun }) => match pool.pick_only(index, Instant::now()) {
                    Pick::Unavailable { retry_after } => {
                        return Err(ProxyError::ResponseHomeUnavailable {
                            noun,
                            id: id.to_owned(),
                            backend: pool
                                .config()
                                .backends
                                .get(index)
                                .map(|b| b.name.clone())
                                .unwrap_or_default(),
                            retry_after,
                        });
                    }
                    pick => pick,
                },
                None => pool.pick_keyed(Instant::now(), &tried, &mut rng, affinity),
            };
            let (index, backend, mut attempt) = match pick {
                Pick::Backend {
                    index,
                    backend,
                    attempt,
                } => (index, backend, attempt),
                // No untried backend admits: the call ends with what it got (the held answer
                // or the last error) — except a held answer when every breaker is open, which
                // ends as the pool's 503 below.
                Pick::Unavailable { .. }
                    if !tried.is_empty() && (held.is_none() || pool.any_admits(Instant::now())) =>
                {
                    break;
                }
                // Every breaker open: 503 with the earliest reopening.
                Pick::Unavailable { retry_after } => {
                    return Err(ProxyError::NoBackendAvailable {
                        pool: call.pool.clone(),
                        retry_after,
                    });
                }
            };
            if let Some((response, ..)) = held.take() {
                discard(response);
            }
            call.attempts += 1;
            tried.push(index);
            call.serve_with(pool.config(), index);
            let is_last = call.attempts >= retry.max_attempts;
            let started = call.started.elapsed();
            let span = AttemptTrace {
                span_id: span_id(&mut rng),
                start: SystemTime::now(),
                duration: Duration::ZERO,
            };
            let traceparent = attempt_traceparent(&call.trace, span.span_id);
            let credential = attempt.runtime().credential().cloned();
            let sent = self
                .send(
                    (backend, credential.as_deref()),
                    &call.request_id,
                    &traceparent,
                    deadline,
                )
                .await;
            let span = AttemptTrace {
                duration: call.started.elapsed().saturating_sub(started),
                ..span
            };
            match sent {
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
                        (started, span),
                        Ok(status),
                        transition.as_ref(),
                    ));
                    log_transition(transition, backend);
                    // Continuing a response the gateway does not know the home of: a 404
                    // means "not here" (nothing billed), so the next backend is asked.
                    let searching = status == 404
                        && self.pinned.is_none()
                        && self.route.operation == Operation::Responses
                        && (self.info.previous_response_id.is_some()
                            || self.info.conversation.is_some());
                    if (retry.retries_status(status) || searching)
                        && !is_last
                        && Instant::now() < deadline
                    {
                        tracing::debug!(backend = %backend.name, status, "retrying on the next candidate");
                        held = Some((response, asked_usage, backend.name.clone()));
                        continue;
                    }
                    return Ok(self
                        .respond(response, asked_usage, call, reservation.take())
                        .await);
                }
                Sent::Failed(outcome, error) => {
                    let transition = attempt.record(Instant::now(), &outcome);
                    let failure = match (outcome, &error) {
                        (_, ProxyError::BadUpstreamResponse(_)) => "bad_response",
                        (Outcome::Timeout, _) => "timeout",
                        (Outcome::CredentialUnavailable, _) => "credential_unavailable",
                        _ => "connection_failure",
                    };
                    call.upstream.push(upstream_attempt(
                        backend,
                        (started, span),
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
        if let Some((response, asked_usage, backend)) = held {
            // A backend answered with a retryable status and no later candidate did better:
            // the client gets that answer (its Retry-After included) rather than an error.
            match pool
                .config()
                .backends
                .iter()
                .position(|b| b.name == backend)
            {
                Some(index) => call.serve_with(pool.config(), index),
                None => call.backend = Some(backend),
            }
            return Ok(self
                .respond(response, asked_usage, call, reservation.take())
                .await);
        }
        Err(last_error.unwrap_or(ProxyError::UpstreamTimeout))
    }

    async fn send(
        &self,
        (backend, credential): (&BackendConfig, Option<&TokenCache>),
        request_id: &HeaderValue,
        traceparent: &HeaderValue,
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
            *headers =
                upstream::request_headers(self.headers, backend, strip, request_id, traceparent);
        }
        let Ok(mut request) = builder.body(Full::new(body)) else {
            return Sent::Refused(ProxyError::UpstreamUnreachable(format!(
                "backend {} has an invalid URL {}",
                backend.name, target.url
            )));
        };
        let until = deadline.min(Instant::now() + Duration::from_millis(backend.timeout_ms));
        if let Some(credential) = credential
            && let Err((outcome, error)) =
                with_token(credential, backend, until, &mut request).await
        {
            return Sent::Failed(outcome, error);
        }
        match tokio::time::timeout_at(until.into(), self.shared.client.request(request)).await {
            Ok(Ok(response)) => {
                let success = response.status().is_success();
                let (parts, body) = response.into_parts();
                let read = match (success, self.info.stream) {
                    (true, false) => read_whole(body, until, &backend.name).await,
                    (true, true) => read_first_event(body, until, &backend.name).await,
                    (false, _) => Ok(Upstream::unread(body)),
                };
                let body = match read {
                    Ok(body) => body,
                    Err((outcome, error)) => return Sent::Failed(outcome, error),
                };
                Sent::Response {
                    response: Response::from_parts(parts, body),
                    asked_usage: target.ask_usage,
                }
            }
            Ok(Err(e)) => Sent::Failed(
                Outcome::ConnectionFailure,
                ProxyError::UpstreamUnreachable(format!("{}: {}", backend.name, error_chain(&e))),
            ),
            Err(_) => Sent::Failed(Outcome::Timeout, ProxyError::UpstreamTimeout),
        }
    }

    async fn respond(
        &self,
        response: Response<Upstream>,
        asked_usage: bool,
        call: &Call,
        reservation: Option<Reservation>,
    ) -> Response<ProxyBody> {
        let (mut parts, upstream_body) = response.into_parts();
        if parts.status.is_success() {
            self.remember_created(&upstream_body, call).await;
        }
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
        retain_passing_back(
            &mut parts.headers,
            &self.applied.snapshot.gateway.pass_response_headers,
        );
        if let Some(reservation) = &reservation {
            // The app's own quota view replaces the backend's capacity headers.
            reservation.headers().write_to(&mut parts.headers);
        }
        let gateway = &self.applied.snapshot.gateway;
        let finish = Finish {
            call: call.clone(),
            status: parts.status.as_u16(),
            request_body: self.body.clone(),
            sink: self.shared.usage.clone(),
            drain_timeout: Duration::from_millis(gateway.stream_drain_timeout_ms),
            drain_max_bytes: gateway.stream_drain_max_bytes,
            reservation,
            audit: self
                .applied
                .audit
                .as_ref()
                .filter(|policy| policy.applies_to(&call.app_id))
                .map(|policy| AuditHook {
                    policy: Arc::clone(policy),
                    sink: self.shared.audit.clone(),
                }),
            bills: !(self.route.counts_tokens_only()
                || (self.info.background && !self.info.stream)),
        };
        let body = ProxyBody::accounted(upstream_body, kind, finish);
        if let Some(total) = body.consumed_tokens() {
            parts
                .headers
                .insert(TOKENS_CONSUMED, HeaderValue::from(total));
        }
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

/// Adds the backend's Entra ID token to `request`, or says why the attempt fails without
/// being sent.
/// Puts the backend's Entra ID token on `request`, waiting for it until `until`.
pub(super) async fn with_token(
    credential: &TokenCache,
    backend: &BackendConfig,
    until: Instant,
    request: &mut Request<Full<Bytes>>,
) -> Result<(), (Outcome, ProxyError)> {
    let error = match tokio::time::timeout_at(until.into(), credential.token()).await {
        Ok(Ok(token)) if upstream::set_bearer(request.headers_mut(), &token) => return Ok(()),
        Ok(Ok(_)) => {
            "the token endpoint issued a token that is not a valid header value".to_owned()
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no Entra ID token within the attempt's time".to_owned(),
    };
    tracing::warn!(backend = %backend.name, %error, "no Entra ID token for the backend");
    Err((
        Outcome::CredentialUnavailable,
        ProxyError::UpstreamUnreachable(format!("{}: {error}", backend.name)),
    ))
}

/// Drops the backend's headers that do not pass back to apps (see `passes_back`).
pub(super) fn retain_passing_back(headers: &mut HeaderMap, extra: &[String]) {
    let dropped: Vec<_> = headers
        .keys()
        .filter(|n| !upstream::passes_back(n, extra))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
}

fn upstream_attempt(
    backend: &BackendConfig,
    (started, span): (Duration, AttemptTrace),
    result: Result<u16, &'static str>,
    transition: Option<&Transition>,
) -> UpstreamAttempt {
    UpstreamAttempt {
        backend: backend.name.clone(),
        started,
        trace: Some(span),
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
fn discard(response: Response<Upstream>) {
    let Some(rest) = response.into_body().rest else {
        return;
    };
    tokio::spawn(async move {
        let body = Limited::new(rest, 256 * 1024);
        let _ = tokio::time::timeout(Duration::from_secs(5), body.collect()).await;
    });
}

/// `x-spillway-tokens-consumed`: prompt + completion tokens the backend billed, on
/// non-streaming answers (streams report usage in their last chunk when asked).
pub(crate) const TOKENS_CONSUMED: &str = "x-spillway-tokens-consumed";

/// Reads a successful non-streaming answer whole (up to [`READ_WHOLE`] bytes) before the
/// response starts, within the attempt's time: a backend that breaks it off, stalls, or sends
/// JSON that is cut short or invalid fails the attempt like a connection failure or a timeout
/// — retried on the next candidate — since the client has seen nothing yet.
impl Attempt<'_> {
    /// The prompt-cache affinity key of the call, when its pool has affinity on: the body's
    /// `prompt_cache_key`, else the pool's header, else the body's `user`.
    fn affinity_key(&self, pool: &PoolRoutes) -> Option<u64> {
        let config = pool.config().prompt_cache_affinity.as_ref()?;
        let header = config
            .header
            .as_deref()
            .and_then(|name| self.headers.get(name))
            .map(http::HeaderValue::as_bytes);
        let key = self
            .info
            .prompt_cache_key
            .as_deref()
            .map(str::as_bytes)
            .or(header)
            .or(self.info.user.as_deref().map(str::as_bytes))?;
        Some(crate::routing::stable_hash(key))
    }

    /// A Responses API create answer: remembers which backend holds the new response (its
    /// later calls must go there), and whether its usage is still to come (a background
    /// response answered as JSON; one streamed is counted by its stream).
    async fn remember_created(&self, body: &Upstream, call: &Call) {
        if self.route.operation != Operation::Responses || self.route.counts_tokens_only() {
            return;
        }
        let read = body.read.concat();
        let Some(created) = crate::protocol::responses::created(&read, self.info.stream) else {
            tracing::debug!(request_id = ?call.request_id, "no response id in the answer; later calls to it will search the backends");
            return;
        };
        let home = Home {
            pool: call.pool.clone(),
            backend: call.backend.clone().unwrap_or_default(),
            app: call.app_id.clone(),
            model: call.model.clone(),
            pending_usage: created.background && !self.info.stream,
        };
        let kv = self.shared.limiter.shared_kv();
        self.shared
            .homes
            .remember(&created.id, home, kv.as_ref())
            .await;
    }
}

async fn read_whole(
    mut body: Incoming,
    until: Instant,
    backend: &str,
) -> Result<Upstream, (Outcome, ProxyError)> {
    let mut read = Vec::new();
    let mut len = 0;
    loop {
        match tokio::time::timeout_at(until.into(), body.frame()).await {
            Err(_) => return Err((Outcome::Timeout, ProxyError::UpstreamTimeout)),
            Ok(None) => {
                return match complete_json(&read) {
                    Ok(()) => Ok(Upstream { read, rest: None }),
                    Err(why) => Err((
                        Outcome::ConnectionFailure,
                        ProxyError::BadUpstreamResponse(format!("{backend}: {why}")),
                    )),
                };
            }
            Ok(Some(Err(e))) => {
                return Err((
                    Outcome::ConnectionFailure,
                    ProxyError::UpstreamUnreachable(format!(
                        "{backend}: the response broke off: {}",
                        error_chain(&e)
                    )),
                ));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(chunk) = frame.into_data() {
                    len += chunk.len();
                    read.push(chunk);
                    if len > READ_WHOLE {
                        return Ok(Upstream {
                            read,
                            rest: Some(body),
                        });
                    }
                }
            }
        }
    }
}

/// Whether `chunks` hold exactly one complete JSON value (whitespace around it allowed).
fn complete_json(chunks: &[Bytes]) -> Result<(), String> {
    let joined;
    let bytes: &[u8] = match chunks {
        [one] => one,
        many => {
            joined = many.concat();
            &joined
        }
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|e| format!("the answer is not complete JSON ({e})"))
}

/// Waits for a successful stream's first bytes before the response starts, within the
/// attempt's time: a stream that ends, breaks or stalls before them fails the attempt —
/// retried on the next candidate — since the client has seen nothing yet. What was read is
/// handed over with the rest of the stream.
async fn read_first_event(
    mut body: Incoming,
    until: Instant,
    backend: &str,
) -> Result<Upstream, (Outcome, ProxyError)> {
    loop {
        match tokio::time::timeout_at(until.into(), body.frame()).await {
            Err(_) => return Err((Outcome::Timeout, ProxyError::UpstreamTimeout)),
            Ok(None) => {
                return Err((
                    Outcome::ConnectionFailure,
                    ProxyError::BadUpstreamResponse(format!(
                        "{backend}: the stream ended before its first event"
                    )),
                ));
            }
            Ok(Some(Err(e))) => {
                return Err((
                    Outcome::ConnectionFailure,
                    ProxyError::BadUpstreamResponse(format!(
                        "{backend}: the stream broke before its first event: {}",
                        error_chain(&e)
                    )),
                ));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(chunk) = frame.into_data()
                    && !chunk.is_empty()
                {
                    return Ok(Upstream {
                        read: vec![chunk],
                        rest: Some(body),
                    });
                }
            }
        }
    }
}
