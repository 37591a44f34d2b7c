//! The stream server's router (axum) and the stream body.
//!
//! Input: requests, authenticated where they come from sidecars. Output: for
//! `GET /v1/snapshots/watch` an NDJSON body — `hello`, the scope's snapshot as soon as it
//! exists, each later one, and heartbeats — held open until the client leaves or the server
//! shuts down; for `POST /v1/sidecars/report`, `204` after recording the report; `POST /mutate`
//! and `POST /validate` go to the webhooks. Bodies are read with a bound per route. Refusals
//! carry a short text and never configuration.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, StatusCode, header};
use http_body::Frame;
use http_body_util::StreamBody;
use spillway_crds::Snapshot;
use tokio::sync::watch;
use tokio::time::{Instant, Interval};

use super::{Identity, StreamServer};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::sidecars::StreamGuard;
use crate::webhook;
use crate::wire::{
    NDJSON, REPORT_PATH, SIDECAR_HEADER, SidecarReport, StreamLine, VERSION_HEADER, WATCH_PATH,
};

/// Largest accepted report.
const MAX_REPORT_BYTES: usize = 1024 * 1024;

fn text(status: StatusCode, message: &str) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (status, headers, format!("{message}\n")).into_response()
}

/// A sidecar id is a pod name or similar: 1–253 characters of `[A-Za-z0-9._-]`.
fn valid_sidecar_id(id: &str) -> bool {
    (1..=253).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// What every handler reads: the server, and whether shutdown began (open streams end).
#[derive(Clone)]
struct Edge {
    server: StreamServer,
    closing: watch::Receiver<bool>,
}

/// Reads a body of at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, axum::Error> {
    axum::body::to_bytes(body, limit).await
}

async fn watch_handler(State(edge): State<Edge>, headers: HeaderMap) -> Response {
    edge.server.watch(&headers, edge.closing).await
}

async fn report_handler(State(edge): State<Edge>, req: Request) -> Response {
    edge.server.report(req).await
}

async fn mutate_handler(State(edge): State<Edge>, req: Request) -> Response {
    let Some(cfg) = &edge.server.injector else {
        return text(
            StatusCode::NOT_FOUND,
            "sidecar injection is off; start the operator with --inject-image",
        );
    };
    match read_body(req.into_body(), webhook::MAX_REVIEW_BYTES).await {
        Ok(body) => webhook::respond(&body, cfg).map(Body::new),
        Err(error) => webhook::unreadable(&error).map(Body::new),
    }
}

async fn validate_handler(State(edge): State<Edge>, req: Request) -> Response {
    let Some(validator) = &edge.server.validator else {
        return text(StatusCode::NOT_FOUND, "the validating webhook is off");
    };
    match read_body(req.into_body(), webhook::MAX_REVIEW_BYTES).await {
        Ok(body) => validator.respond(&body).map(Body::new),
        Err(error) => webhook::unreadable(&error).map(Body::new),
    }
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not found; sidecars use GET /v1/snapshots/watch and POST /v1/sidecars/report",
    )
}

impl StreamServer {
    /// The routes of the stream server; `closing` turns true when shutdown begins.
    pub(super) fn router(self, closing: watch::Receiver<bool>) -> Router {
        Router::new()
            .route(WATCH_PATH, get(watch_handler))
            .route(REPORT_PATH, post(report_handler))
            .route(webhook::MUTATE_PATH, post(mutate_handler))
            .route(webhook::VALIDATE_PATH, post(validate_handler))
            .fallback(not_found)
            .with_state(Edge {
                server: self,
                closing,
            })
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, Response> {
        let token = header_str(headers, header::AUTHORIZATION.as_str())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            self.metrics.auth_failures.inc();
            return Err(text(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send the sidecar's projected ServiceAccount token",
            ));
        };
        match self.reviewer.review(token).await {
            Ok(Some(identity)) => match &self.only_namespace {
                Some(only) if *only != identity.namespace => Err(text(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "this operator serves namespace {only} only; run an operator for \
                         namespace {} or one that watches all namespaces",
                        identity.namespace
                    ),
                )),
                _ => Ok(identity),
            },
            Ok(None) => {
                self.metrics.auth_failures.inc();
                tracing::info!("refused a request whose token was not accepted");
                Err(text(
                    StatusCode::UNAUTHORIZED,
                    "token not accepted: use a projected ServiceAccount token with the \
                     operator's audience",
                ))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot validate a token");
                Err(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot validate the token right now; retry",
                ))
            }
        }
    }

    async fn watch(&self, headers: &HeaderMap, closing: watch::Receiver<bool>) -> Response {
        let identity = match self.authenticate(headers).await {
            Ok(identity) => identity,
            Err(refusal) => return refusal,
        };
        let claimed = header_str(headers, SIDECAR_HEADER).map(str::to_owned);
        let Some(sidecar) = identity.pod_name.clone().or(claimed) else {
            return text(
                StatusCode::BAD_REQUEST,
                "missing x-spillway-sidecar header (the sidecar's pod name)",
            );
        };
        if !valid_sidecar_id(&sidecar) {
            return text(StatusCode::BAD_REQUEST, "invalid x-spillway-sidecar header");
        }
        let held = header_str(headers, VERSION_HEADER).and_then(|v| v.parse().ok());
        let scope = identity.namespace;
        let guard = self.sidecars.connect(&scope, &sidecar, Instant::now());
        self.metrics.streams_opened.inc();
        tracing::info!(
            scope,
            sidecar,
            service_account = identity.service_account,
            held,
            "sidecar connected"
        );
        let hello = StreamLine::Hello {
            scope: scope.clone(),
            sidecar,
            heartbeat_ms: u64::try_from(self.heartbeat.as_millis()).unwrap_or(u64::MAX),
        };
        let start = Instant::now() + self.heartbeat;
        let state = LineSource {
            hello: Some(encode(&hello)),
            publisher: self.publisher.clone(),
            scope,
            held,
            rx: None,
            heartbeat: heartbeat_timer(start, self.heartbeat),
            closing,
            metrics: Arc::clone(&self.metrics),
            _guard: guard,
        };
        let lines = stream::unfold(state, |mut source| async move {
            let line = source.next_line().await?;
            Some((Ok::<_, Infallible>(Frame::data(line)), source))
        });
        let mut response = Response::new(Body::new(StreamBody::new(lines)));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(NDJSON),
        );
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        response
    }

    async fn report(&self, req: Request) -> Response {
        let identity = match self.authenticate(req.headers()).await {
            Ok(identity) => identity,
            Err(refusal) => return refusal,
        };
        let bytes = match read_body(req.into_body(), MAX_REPORT_BYTES).await {
            Ok(bytes) => bytes,
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "report too large or cut off"),
        };
        let mut report: SidecarReport = match serde_json::from_slice(&bytes) {
            Ok(report) => report,
            Err(error) => {
                return text(StatusCode::BAD_REQUEST, &format!("invalid report: {error}"));
            }
        };
        if let Some(pod) = identity.pod_name {
            report.sidecar = pod;
        }
        if !valid_sidecar_id(&report.sidecar) {
            return text(StatusCode::BAD_REQUEST, "invalid report: bad `sidecar` id");
        }
        self.sidecars
            .report(&identity.namespace, report, Instant::now());
        self.metrics.reports.inc();
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Ticks every `period` from `start`; a slow reader gets one heartbeat, not a burst.
fn heartbeat_timer(start: Instant, period: std::time::Duration) -> Interval {
    let mut timer = tokio::time::interval_at(start, period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    timer
}

fn encode(line: &StreamLine) -> Bytes {
    // Serialising these plain types cannot fail; an empty line would be skipped by clients.
    let mut bytes = serde_json::to_vec(line).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Produces the lines of one stream.
struct LineSource {
    hello: Option<Bytes>,
    publisher: Publisher,
    scope: String,
    held: Option<u64>,
    rx: Option<watch::Receiver<Arc<Snapshot>>>,
    heartbeat: Interval,
    closing: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    _guard: StreamGuard,
}

impl LineSource {
    fn snapshot_line(&self, snapshot: Arc<Snapshot>) -> Bytes {
        self.metrics.snapshots_sent.inc();
        tracing::debug!(
            scope = self.scope,
            version = snapshot.version,
            "sending snapshot"
        );
        encode(&StreamLine::Snapshot { snapshot })
    }

    async fn next_line(&mut self) -> Option<Bytes> {
        if let Some(hello) = self.hello.take() {
            return Some(hello);
        }
        if *self.closing.borrow() {
            return None;
        }
        let Some(rx) = self.rx.as_mut() else {
            // Before the scope's first compile: heartbeats keep the stream alive meanwhile.
            tokio::select! {
                mut rx = self.publisher.subscribe(&self.scope, self.held) => {
                    let snapshot = rx.borrow_and_update().clone();
                    self.rx = Some(rx);
                    return Some(self.snapshot_line(snapshot));
                }
                _ = self.heartbeat.tick() => return Some(encode(&StreamLine::Heartbeat { version: 0 })),
                _ = self.closing.changed() => return None,
            }
        };
        tokio::select! {
            changed = rx.changed() => {
                changed.ok()?;
                let snapshot = rx.borrow_and_update().clone();
                Some(self.snapshot_line(snapshot))
            }
            _ = self.heartbeat.tick() => {
                let version = rx.borrow().version;
                Some(encode(&StreamLine::Heartbeat { version }))
            }
            _ = self.closing.changed() => None,
        }
    }
}
