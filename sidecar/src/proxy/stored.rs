//! Calls addressed to a stored response or conversation (`responses/{id}…`,
//! `conversations/{id}…`): sent to the backend that holds it, never to another one; and
//! `POST conversations`, which creates one on a backend of the app's pool and remembers it.
//!
//! - Known id ([`crate::affinity`]): that backend alone. Created by another app: 404, as if
//!   it did not exist. Its breaker open: 503 `response_backend_unavailable` with
//!   `Retry-After` — no other backend has the response, so none is tried.
//! - Unknown id (forgotten, or created around the gateway): the backends of the pools the
//!   app may use are asked in turn (at most [`MAX_SEARCH`]) until one does not answer 404;
//!   that one is remembered. None has it: the last 404.
//! - A `background` response's usage is counted once, to the app that created it, when a
//!   retrieve first shows it finished.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use super::attempt::{retain_passing_back, with_token};
use super::body::{ProxyBody, READ_WHOLE};
use super::call::{Call, with_common_headers};
use super::ids::{attempt_traceparent, span_id};
use super::inbound::{Flavor, StoredAction, StoredCall, StoredKind};
use super::upstream;
use super::{Applied, Shared};
use crate::affinity::Home;
use crate::breaker::Outcome;
use crate::error::ProxyError;
use crate::http_client::error_chain;
use crate::routing::{Pick, PoolRoutes};
use crate::usage::Usage;
use crate::usage::json::response_usage;

/// Backends asked at most for a response id the gateway does not know.
pub const MAX_SEARCH: usize = 16;

/// An answer read whole (or its start and the rest unread, past [`READ_WHOLE`]).
struct Answer {
    parts: http::response::Parts,
    body: Bytes,
}

/// Serves `stored` (the request's `body` already read).
pub(crate) async fn serve(
    shared: &Arc<Shared>,
    applied: &Applied,
    parts: &Parts,
    body: Bytes,
    stored: StoredCall<'_>,
    call: &mut Call,
) -> Result<Response<ProxyBody>, ProxyError> {
    let kv = shared.limiter.shared_kv();
    let home = shared.homes.find(stored.id, kv.as_ref()).await;
    if home.as_ref().is_some_and(|home| home.app != call.app_id) {
        return Err(not_found(stored));
    }
    let placed = home.as_ref().and_then(|home| {
        let pool = applied
            .routes
            .pools()
            .iter()
            .find(|p| p.config().name == home.pool)?;
        Some((pool, pool.index_of(&home.backend)?))
    });
    if let Some(home) = &home {
        call.model.clone_from(&home.model);
        // The model it was created for; one found by searching has none: then any model of
        // its pool the app may use will do.
        let access = &applied.snapshot.gateway.model_access;
        let allowed = if home.model.is_empty() {
            placed.is_none_or(|(pool, _)| {
                pool.config()
                    .models
                    .iter()
                    .any(|m| access.allows(&call.app_id, &home.pool, m))
            })
        } else {
            access.allows(&call.app_id, &home.pool, &home.model)
        };
        if !allowed {
            return Err(ProxyError::ModelAccessDenied {
                app: call.app_id.clone(),
                model: if home.model.is_empty() {
                    format!("(any model of pool {})", home.pool)
                } else {
                    home.model.clone()
                },
            });
        }
    }
    let candidates: Vec<(&PoolRoutes, usize)> = match placed {
        Some(placed) => vec![placed],
        None => search_order(applied, &call.app_id),
    };
    let known = placed.is_some();
    let mut last_not_found = None;
    for (pool, index) in candidates {
        let (backend, mut attempt) = match pool.pick_only(index, Instant::now()) {
            Pick::Backend {
                backend, attempt, ..
            } => (backend, attempt),
            Pick::Unavailable { retry_after } if known => {
                return Err(ProxyError::ResponseHomeUnavailable {
                    noun: stored.kind.noun(),
                    id: stored.id.to_owned(),
                    backend: home.map(|h| h.backend).unwrap_or_default(),
                    retry_after,
                });
            }
            Pick::Unavailable { .. } => continue,
        };
        call.attempts += 1;
        call.pool.clone_from(&pool.config().name);
        call.serve_with(pool.config(), index);
        let until = Instant::now() + Duration::from_millis(backend.timeout_ms);
        let credential = attempt.runtime().credential().cloned();
        let rest = format!("/{}{}", stored.id, stored.suffix);
        let request = Outbound {
            parts,
            body: &body,
            call,
            collection: stored.kind.collection(),
            rest: &rest,
            api: (stored.flavor, stored.api_version),
        };
        let sent = request
            .send(shared, applied, (backend, credential), until)
            .await;
        let answer = match sent {
            Ok(answer) => answer,
            Err((outcome, error)) => {
                attempt.record(Instant::now(), &outcome);
                if known {
                    return Err(error);
                }
                continue;
            }
        };
        let status = answer.parts.status;
        // "Not here" is not the backend failing.
        attempt.record(Instant::now(), &outcome_of(&answer, StatusCode::NOT_FOUND));
        if status == StatusCode::NOT_FOUND && !known {
            last_not_found = Some(answer);
            continue;
        }
        if !known && status.is_success() {
            let found = Home {
                pool: pool.config().name.clone(),
                backend: backend.name.clone(),
                app: call.app_id.clone(),
                model: String::new(),
                pending_usage: false,
            };
            shared.homes.remember(stored.id, found, kv.as_ref()).await;
        }
        return Ok(finish(shared, applied, stored, answer, call).await);
    }
    match last_not_found {
        Some(answer) => Ok(finish(shared, applied, stored, answer, call).await),
        None => Err(not_found(stored)),
    }
}

/// The breaker outcome of `answer`: a success, or `also_fine` (a 404 that only says "not
/// here"), else what its status and retry headers say.
fn outcome_of(answer: &Answer, also_fine: StatusCode) -> Outcome {
    let status = answer.parts.status;
    if status.is_success() || status == also_fine {
        Outcome::Success
    } else {
        Outcome::from_response(
            status.as_u16(),
            &answer.parts.headers,
            std::time::SystemTime::now(),
        )
    }
}

fn not_found(stored: StoredCall<'_>) -> ProxyError {
    ProxyError::StoredNotFound {
        noun: stored.kind.noun(),
        id: stored.id.to_owned(),
    }
}

/// Every backend of the pools `app` may use, pools in order, at most [`MAX_SEARCH`].
fn search_order<'a>(applied: &'a Applied, app: &str) -> Vec<(&'a PoolRoutes, usize)> {
    let access = &applied.snapshot.gateway.model_access;
    applied
        .routes
        .pools()
        .iter()
        .filter(|pool| {
            let name = &pool.config().name;
            pool.config()
                .models
                .iter()
                .any(|model| access.allows(app, name, model))
        })
        .flat_map(|pool| (0..pool.config().backends.len()).map(move |index| (pool, index)))
        .take(MAX_SEARCH)
        .collect()
}

/// What is sent for the client's call: its method, headers, query and body, to
/// `{collection}{rest}` in the API shape `api` (see [`upstream::api_url`]).
struct Outbound<'a> {
    parts: &'a Parts,
    body: &'a Bytes,
    call: &'a Call,
    collection: &'static str,
    rest: &'a str,
    api: (Flavor, Option<&'a str>),
}

impl Outbound<'_> {
    /// One request to `backend`, its answer read whole (bounded).
    async fn send(
        &self,
        shared: &Shared,
        applied: &Applied,
        (backend, credential): (
            &spillway_crds::snapshot::BackendConfig,
            Option<Arc<crate::credentials::TokenCache>>,
        ),
        until: Instant,
    ) -> Result<Answer, (Outcome, ProxyError)> {
        let Self {
            parts, body, call, ..
        } = *self;
        let url = upstream::with_query(
            upstream::api_url(backend, self.api, self.collection, self.rest),
            parts.uri.query(),
        );
        let strip = applied.snapshot.gateway.identity.trusted_header.as_deref();
        let traceparent = attempt_traceparent(&call.trace, span_id(&mut fastrand::Rng::new()));
        let mut builder = Request::builder().method(parts.method.clone()).uri(&url);
        if let Some(headers) = builder.headers_mut() {
            *headers = upstream::request_headers(
                &parts.headers,
                backend,
                strip,
                &call.request_id,
                &traceparent,
            );
        }
        let mut request = builder.body(Full::new(body.clone())).map_err(|_| {
            (
                Outcome::ConnectionFailure,
                ProxyError::UpstreamUnreachable(format!(
                    "backend {} has an invalid URL {url}",
                    backend.name
                )),
            )
        })?;
        if let Some(credential) = credential {
            with_token(&credential, backend, until, &mut request).await?;
        }
        let response =
            match tokio::time::timeout_at(until.into(), shared.client.request(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => {
                    return Err((
                        Outcome::ConnectionFailure,
                        ProxyError::UpstreamUnreachable(format!(
                            "{}: {}",
                            backend.name,
                            error_chain(&e)
                        )),
                    ));
                }
                Err(_) => return Err((Outcome::Timeout, ProxyError::UpstreamTimeout)),
            };
        let (parts, incoming) = response.into_parts();
        let read =
            tokio::time::timeout_at(until.into(), Limited::new(incoming, READ_WHOLE).collect())
                .await;
        match read {
            Ok(Ok(collected)) => Ok(Answer {
                parts,
                body: collected.to_bytes(),
            }),
            Ok(Err(e)) => Err((
                Outcome::ConnectionFailure,
                ProxyError::BadUpstreamResponse(format!(
                    "{}: the answer could not be read whole: {e}",
                    backend.name
                )),
            )),
            Err(_) => Err((Outcome::Timeout, ProxyError::UpstreamTimeout)),
        }
    }
}

/// The answer for the client, after the bookkeeping it implies: a deleted response is
/// forgotten; a background response seen finished for the first time has its usage counted
/// (to the app that created it); every call gets its usage record.
async fn finish(
    shared: &Shared,
    applied: &Applied,
    stored: StoredCall<'_>,
    answer: Answer,
    call: &Call,
) -> Response<ProxyBody> {
    let Answer { parts, body } = answer;
    let kv = shared.limiter.shared_kv();
    let mut usage = Usage::default();
    if parts.status.is_success() {
        match stored.action {
            StoredAction::Delete => shared.homes.forget(stored.id, kv.as_ref()).await,
            StoredAction::Retrieve | StoredAction::Cancel
                if stored.kind == StoredKind::Response =>
            {
                if let Some(object) = crate::protocol::responses::finished_object(&body)
                    && shared.homes.claim_usage(stored.id, kv.as_ref()).await
                    && let Some(counted) = response_usage(&object).and_then(|r| r.usage)
                {
                    usage = counted;
                }
            }
            _ => {}
        }
    }
    answered(shared, applied, Answer { parts, body }, call, usage)
}

/// Header naming the model (and so the pool) a new conversation is created for.
pub const CONVERSATION_MODEL_HEADER: &str = "x-spillway-model";

/// `POST conversations`: a new conversation on a backend (by weight, breakers admitting,
/// retried on the next backend like a model call) of the pool of the model named in the
/// `x-spillway-model` header, else of the first pool the app may use; remembered, so the
/// responses that use it and every call addressed to it go there.
pub(crate) async fn create_conversation(
    shared: &Arc<Shared>,
    applied: &Applied,
    parts: &Parts,
    body: Bytes,
    api: (Flavor, Option<&str>),
    call: &mut Call,
) -> Result<Response<ProxyBody>, ProxyError> {
    let access = &applied.snapshot.gateway.model_access;
    let named = parts
        .headers
        .get(CONVERSATION_MODEL_HEADER)
        .and_then(|v| v.to_str().ok());
    let (pool, model) = match named {
        Some(model) => {
            let pool = applied
                .routes
                .pool(model)
                .ok_or_else(|| ProxyError::ModelNotFound(model.to_owned()))?;
            (pool, model.to_owned())
        }
        None => applied
            .routes
            .pools()
            .iter()
            .find_map(|pool| {
                let name = &pool.config().name;
                let model = pool
                    .config()
                    .models
                    .iter()
                    .find(|m| access.allows(&call.app_id, name, m))?;
                Some((pool, model.clone()))
            })
            .ok_or_else(|| ProxyError::ModelAccessDenied {
                app: call.app_id.clone(),
                model: "(any model)".to_owned(),
            })?,
    };
    if !access.allows(&call.app_id, &pool.config().name, &model) {
        return Err(ProxyError::ModelAccessDenied {
            app: call.app_id.clone(),
            model,
        });
    }
    call.pool.clone_from(&pool.config().name);
    call.model.clone_from(&model);
    let retry = &pool.config().retry;
    let mut tried = Vec::new();
    let mut rng = fastrand::Rng::new();
    let mut last = None;
    while call.attempts < retry.max_attempts {
        let (index, backend, mut attempt) = match pool.pick(Instant::now(), &tried, &mut rng) {
            Pick::Backend {
                index,
                backend,
                attempt,
            } => (index, backend, attempt),
            Pick::Unavailable { retry_after } if tried.is_empty() => {
                return Err(ProxyError::NoBackendAvailable {
                    pool: call.pool.clone(),
                    retry_after,
                });
            }
            Pick::Unavailable { .. } => break,
        };
        tried.push(index);
        call.attempts += 1;
        call.serve_with(pool.config(), index);
        let until = Instant::now() + Duration::from_millis(backend.timeout_ms);
        let credential = attempt.runtime().credential().cloned();
        let request = Outbound {
            parts,
            body: &body,
            call,
            collection: "conversations",
            rest: "",
            api,
        };
        let answer = match request
            .send(shared, applied, (backend, credential), until)
            .await
        {
            Ok(answer) => answer,
            Err((outcome, error)) => {
                attempt.record(Instant::now(), &outcome);
                last = Some(Err(error));
                continue;
            }
        };
        let status = answer.parts.status;
        attempt.record(Instant::now(), &outcome_of(&answer, StatusCode::OK));
        if retry.retries_status(status.as_u16()) {
            last = Some(Ok(answer));
            continue;
        }
        if status.is_success()
            && let Some(created) = crate::protocol::responses::created(&answer.body, false)
        {
            let home = Home {
                pool: call.pool.clone(),
                backend: backend.name.clone(),
                app: call.app_id.clone(),
                model: model.clone(),
                pending_usage: false,
            };
            let kv = shared.limiter.shared_kv();
            shared.homes.remember(&created.id, home, kv.as_ref()).await;
        }
        return Ok(answered(shared, applied, answer, call, Usage::default()));
    }
    match last {
        Some(Ok(answer)) => Ok(answered(shared, applied, answer, call, Usage::default())),
        Some(Err(error)) => Err(error),
        None => Err(ProxyError::UpstreamTimeout),
    }
}

/// The client's response for `answer`, with its usage record sent.
fn answered(
    shared: &Shared,
    applied: &Applied,
    answer: Answer,
    call: &Call,
    usage: Usage,
) -> Response<ProxyBody> {
    let Answer { mut parts, body } = answer;
    shared
        .usage
        .send(call.record(parts.status.as_u16(), usage, false));
    retain_passing_back(
        &mut parts.headers,
        &applied.snapshot.gateway.pass_response_headers,
    );
    parts.headers.remove(http::header::CONTENT_LENGTH);
    with_common_headers(Response::from_parts(parts, ProxyBody::full(body)), call)
}
