//! Calls addressed to a stored response (`GET|DELETE responses/{id}`,
//! `GET responses/{id}/input_items`, `POST responses/{id}/cancel`): sent to the backend that
//! holds the response, never to another one.
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
use super::inbound::{StoredAction, StoredCall};
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
        return Err(ProxyError::ResponseNotFound(stored.id.to_owned()));
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
        let access = &applied.snapshot.gateway.model_access;
        if !access.allows(&call.app_id, &home.pool, &home.model) {
            return Err(ProxyError::ModelAccessDenied {
                app: call.app_id.clone(),
                model: home.model.clone(),
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
                    id: stored.id.to_owned(),
                    backend: home.map(|h| h.backend).unwrap_or_default(),
                    retry_after,
                });
            }
            Pick::Unavailable { .. } => continue,
        };
        call.attempts += 1;
        call.pool.clone_from(&pool.config().name);
        call.backend = Some(backend.name.clone());
        let until = Instant::now() + Duration::from_millis(backend.timeout_ms);
        let credential = attempt.runtime().credential().cloned();
        let request = Outbound {
            parts,
            body: &body,
            stored,
            call,
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
        let outcome = if status.is_success() || status == StatusCode::NOT_FOUND {
            Outcome::Success
        } else {
            Outcome::from_response(
                status.as_u16(),
                &answer.parts.headers,
                std::time::SystemTime::now(),
            )
        };
        attempt.record(Instant::now(), &outcome);
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
        None => Err(ProxyError::ResponseNotFound(stored.id.to_owned())),
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

/// What is sent for the client's call.
struct Outbound<'a> {
    parts: &'a Parts,
    body: &'a Bytes,
    stored: StoredCall<'a>,
    call: &'a Call,
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
            parts,
            body,
            stored,
            call,
        } = *self;
        let url = upstream::stored_url(
            backend,
            stored.flavor,
            stored.api_version,
            stored.id,
            stored.action.suffix(),
            parts.uri.query(),
        );
        let strip = applied.snapshot.gateway.identity.trusted_header.as_deref();
        let traceparent = attempt_traceparent(&call.trace, span_id(&mut fastrand::Rng::new()));
        let mut builder = Request::builder().method(stored.action.method()).uri(&url);
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
    let Answer { mut parts, body } = answer;
    let kv = shared.limiter.shared_kv();
    let mut usage = Usage::default();
    if parts.status.is_success() {
        match stored.action {
            StoredAction::Delete => shared.homes.forget(stored.id, kv.as_ref()).await,
            StoredAction::Retrieve | StoredAction::Cancel
                if crate::protocol::responses::finished(&body)
                    && shared.homes.claim_usage(stored.id, kv.as_ref()).await =>
            {
                if let Some(counted) = response_usage(&body).and_then(|r| r.usage) {
                    usage = counted;
                }
            }
            _ => {}
        }
    }
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
