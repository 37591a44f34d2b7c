//! One request of a load run, end to end: send, read the headers Spillway adds, read the
//! body to its end (SSE through the same scanner the gateway uses, JSON whole), and measure.
//!
//! Input: the request, a deadline and an abort signal. Output: a [`RequestResult`]. Nothing
//! here can hang: every wait is bounded by the deadline and ends at once on abort.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::time::Instant;

use super::report::{Ending, RequestResult};
use spillway_sidecar::http_client::HttpClient;
use spillway_sidecar::usage::json::response_usage;
use spillway_sidecar::usage::sse::{ScanOptions, StreamScanner};

/// Largest JSON body read for usage; the rest is read and dropped.
const MAX_JSON_BODY: usize = 16 << 20;

/// What the worker knows about the request before sending it.
#[derive(Clone, Debug)]
pub struct Meta {
    /// Position in the run.
    pub seq: u64,
    /// `x-request-id`.
    pub request_id: String,
    /// App, empty when none.
    pub app: String,
    /// The body asked for a stream.
    pub stream: bool,
    /// Where latency and time to first token are measured from: the send time in a closed
    /// loop; in an open loop the scheduled slot (plus the timer's resolution), so a request
    /// that waited for a free worker counts its wait (no coordinated omission).
    pub origin: Option<Instant>,
}

/// Runs `fut` until `deadline` or until `abort` turns true.
async fn bounded<T>(
    fut: impl Future<Output = T>,
    deadline: Instant,
    abort: &mut watch::Receiver<bool>,
) -> Result<T, &'static str> {
    let aborted = async {
        // A dropped sender never aborts.
        if abort.wait_for(|a| *a).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        out = tokio::time::timeout_at(deadline, fut) => out.map_err(|_| "timeout"),
        () = aborted => Err("cancelled"),
    }
}

/// Sends `request` and reads the whole response; see the module docs.
pub async fn exchange(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
    meta: Meta,
    timeout: Duration,
    mut abort: watch::Receiver<bool>,
) -> RequestResult {
    let sent = Instant::now();
    let deadline = sent + timeout;
    let started = meta.origin.map_or(sent, |origin| origin.min(sent));
    let mut result = RequestResult {
        seq: meta.seq,
        request_id: meta.request_id,
        app: meta.app,
        stream: meta.stream,
        ending: Ending::Error("cancelled"),
        body_error: None,
        latency: Duration::ZERO,
        time_to_first_token: None,
        backend: None,
        attempts: None,
        usage: None,
    };
    let response = match bounded(client.request(request), deadline, &mut abort).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            result.ending = Ending::Error(if error.is_connect() {
                "connect"
            } else {
                "request"
            });
            result.latency = started.elapsed();
            return result;
        }
        Err(kind) => {
            result.ending = Ending::Error(kind);
            result.latency = started.elapsed();
            return result;
        }
    };
    result.ending = Ending::Status(response.status().as_u16());
    read_headers(response.headers(), &mut result);
    let sse = is_event_stream(response.headers());
    let read = read_body(response.into_body(), sse, started, &mut result);
    match bounded(read, deadline, &mut abort).await {
        Ok(Ok(())) => {}
        Ok(Err(kind)) | Err(kind) => result.body_error = Some(kind),
    }
    result.latency = started.elapsed();
    result
}

fn read_headers(headers: &HeaderMap, result: &mut RequestResult) {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    result.backend = text("x-spillway-backend").map(str::to_owned);
    result.attempts = text("x-spillway-attempts").and_then(|v| v.parse().ok());
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Reads the body; records time to first token (SSE) and usage. Errors name the failure.
async fn read_body(
    mut body: Incoming,
    sse: bool,
    started: Instant,
    result: &mut RequestResult,
) -> Result<(), &'static str> {
    let mut scanner = sse.then(|| StreamScanner::new(ScanOptions::default()));
    let mut forwarded = Vec::new();
    let mut json = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| "body")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        match scanner.as_mut() {
            Some(scanner) => {
                forwarded.clear();
                if scanner.feed(data, &mut forwarded) {
                    result.time_to_first_token = Some(started.elapsed());
                }
            }
            None if json.len() + data.len() <= MAX_JSON_BODY => json.extend_from_slice(&data),
            None => {}
        }
    }
    result.usage = match scanner.as_mut() {
        Some(scanner) => scanner.finish(&mut forwarded).usage,
        None => response_usage(&json).and_then(|u| u.usage),
    };
    Ok(())
}
