//! The response body the client reads.
//!
//! Stream frames pass straight through as they arrive (no buffering; an SSE event is flushed
//! the moment its bytes arrive); a non-streaming answer up to [`READ_WHOLE`] bytes has been
//! read whole by the attempt (see [`Upstream`]) and is handed over as it came. The usage is
//! learned on the side: from the SSE
//! stream's usage chunk (hidden from clients that did not ask for it), from the JSON body, or
//! — when the backend reports none — with the model's tokenizer. If the client goes away
//! before the end, the rest of the upstream body is drained in the background, bounded by
//! time and bytes, to learn the real usage. Exactly one usage record is sent per response.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::call::Call;
use crate::audit::{AuditPolicy, AuditSink, PendingAudit};
use crate::cost::CostKind;
use crate::limiter::{Reservation, Used};
use crate::usage::sse::{ScanOptions, StreamScanner};
use crate::usage::{ErrorType, Usage, UsageSink, json, tokenizer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How the body is accounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// An error or other response: passed through, no usage.
    Passthrough,
    /// A successful JSON response: usage from the body.
    Json,
    /// A successful stream: usage from the events; hide the injected usage chunk.
    Sse { strip_usage: bool },
}

/// A backend's response body: what was already read, and the rest still arriving (none when
/// the body was read whole — a non-streaming answer within [`READ_WHOLE`]).
#[derive(Debug)]
pub(crate) struct Upstream {
    pub read: Vec<Bytes>,
    pub rest: Option<Incoming>,
}

impl Upstream {
    /// A body not read yet.
    pub(crate) fn unread(body: Incoming) -> Self {
        Self {
            read: Vec::new(),
            rest: Some(body),
        }
    }
}

/// Largest non-streaming answer read whole before the response starts (so its exact usage
/// can be sent as a header, and a backend that breaks it off can be retried); larger ones
/// stream through.
pub(crate) const READ_WHOLE: usize = 4 * 1024 * 1024;

/// What is needed to write the usage record at the end.
#[derive(Debug)]
pub(crate) struct Finish {
    pub call: Call,
    pub status: u16,
    pub request_body: Bytes,
    pub sink: UsageSink,
    pub drain_timeout: Duration,
    pub drain_max_bytes: u64,
    /// The quota reservation to true up with the real usage.
    pub reservation: Option<Reservation>,
    /// Where the call goes for the audit log, when its app is audited.
    pub audit: Option<AuditHook>,
    /// False for answers that bill nothing (Responses input token counting; a background
    /// response just queued, counted when it finishes): recorded with zero usage, never
    /// estimated with the tokenizer.
    pub bills: bool,
}

/// An audited call's way to the audit writer.
#[derive(Debug)]
pub(crate) struct AuditHook {
    pub policy: Arc<AuditPolicy>,
    pub sink: AuditSink,
}

/// Largest JSON response kept whole for usage parsing; beyond it only the tail is searched.
const JSON_KEEP: usize = 8 * 1024 * 1024;

/// The body of every gateway response.
#[derive(Debug)]
pub struct ProxyBody(Inner);

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Accounted(Box<Accounted>),
}

impl ProxyBody {
    /// A body the gateway produced itself.
    pub fn full(bytes: Bytes) -> Self {
        Self(Inner::Full(Some(bytes)))
    }

    pub(crate) fn accounted(upstream: Upstream, kind: BodyKind, finish: Finish) -> Self {
        let scanner = match kind {
            BodyKind::Sse { strip_usage } => Some(StreamScanner::new(ScanOptions {
                strip_injected_usage: strip_usage,
            })),
            _ => None,
        };
        let mut accounted = Box::new(Accounted {
            upstream: upstream.rest,
            kind,
            scanner,
            json: Vec::new(),
            json_len: 0,
            pending: VecDeque::new(),
            out: Vec::new(),
            first_byte: None,
            finish: Some(finish),
            upstream_error: false,
            parsed: None,
        });
        // A body read whole is accounted once the client has taken its last chunk (or, if
        // the client goes away first, when the body is dropped); it is parsed once, now, so
        // its usage can go into the response headers.
        for chunk in upstream.read {
            accounted.take(chunk);
        }
        if accounted.upstream.is_none() && kind == BodyKind::Json {
            accounted.parsed = Some(json::response_usage(&accounted.json.concat()));
        }
        Self(Inner::Accounted(accounted))
    }

    /// Prompt + completion tokens of a non-streaming answer read whole, if it reports usage.
    pub(crate) fn consumed_tokens(&self) -> Option<u64> {
        match &self.0 {
            Inner::Accounted(accounted) => accounted
                .parsed
                .as_ref()
                .and_then(|parsed| parsed.as_ref()?.usage)
                .map(|usage| usage.total()),
            Inner::Full(_) => None,
        }
    }
}

#[derive(Debug)]
struct Accounted {
    upstream: Option<Incoming>,
    kind: BodyKind,
    scanner: Option<StreamScanner>,
    json: Vec<Bytes>,
    json_len: usize,
    pending: VecDeque<Bytes>,
    out: Vec<Bytes>,
    first_byte: Option<Instant>,
    finish: Option<Finish>,
    upstream_error: bool,
    /// The JSON answer's usage, when it was parsed as soon as the body was read whole.
    parsed: Option<Option<json::ResponseUsage>>,
}

impl Accounted {
    /// Takes one upstream chunk: scan it and queue what the client should see.
    fn take(&mut self, chunk: Bytes) {
        match (&mut self.scanner, self.kind) {
            (Some(scanner), _) => {
                scanner.feed(chunk, &mut self.out);
                self.pending.extend(self.out.drain(..));
            }
            (None, BodyKind::Json) => {
                self.keep_json(chunk.clone());
                self.pending.push_back(chunk);
            }
            (None, _) => self.pending.push_back(chunk),
        }
    }

    fn keep_json(&mut self, chunk: Bytes) {
        self.json_len += chunk.len();
        self.json.push(chunk);
        // Past the limit keep only enough of the tail to find the usage object.
        while self.json_len > JSON_KEEP && self.json.len() > 1 {
            let first = self.json.remove(0);
            self.json_len -= first.len();
        }
    }

    /// End of upstream body: flush the scanner and send the record.
    fn end(&mut self, client_disconnected: bool) {
        let ending = Ending {
            client_disconnected,
            interrupted: self.upstream_error,
        };
        if let Some(scanner) = &mut self.scanner {
            let summary = scanner.finish(&mut self.out);
            self.pending.extend(self.out.drain(..));
            if let Some(finish) = self.finish.take() {
                let text =
                    (summary.usage.is_none() || finish.audit.is_some()).then_some(summary.text);
                finish.send(summary.usage, text, summary.model, self.first_byte, ending);
            }
            return;
        }
        let Some(finish) = self.finish.take() else {
            return;
        };
        if self.kind != BodyKind::Json || self.upstream_error {
            finish.send(Some(Usage::default()), None, None, self.first_byte, ending);
            return;
        }
        let parsed = self
            .parsed
            .take()
            .unwrap_or_else(|| json::response_usage(&self.json.concat()));
        let model = parsed.as_ref().and_then(|p| p.model.clone());
        match parsed.and_then(|p| p.usage) {
            Some(usage) => {
                let text = finish
                    .audit
                    .is_some()
                    .then(|| json::completion_text(&self.json.concat()));
                finish.send(Some(usage), text, model, None, ending);
            }
            None => {
                let text = json::completion_text(&self.json.concat());
                finish.send(None, Some(text), model, None, ending);
            }
        }
    }
}

/// How the response body ended, for the record.
#[derive(Clone, Copy, Debug)]
struct Ending {
    /// The client went away first.
    client_disconnected: bool,
    /// The backend broke the body off (the record's `error_type` becomes
    /// [`ErrorType::Interrupted`]).
    interrupted: bool,
}

impl Finish {
    /// Sends the record; counts with the tokenizer (off the async threads) when `usage` is
    /// unknown, using the generated `text`; hands the call to the audit log when audited.
    fn send(
        mut self,
        usage: Option<Usage>,
        text: Option<String>,
        response_model: Option<String>,
        first_byte: Option<Instant>,
        ending: Ending,
    ) {
        let usage = if self.bills {
            usage
        } else {
            // A queued background response keeps its whole reservation charged (its prompt
            // estimate and output limit): its real usage is counted in the records when a
            // client first sees it finished, but the quota is not trued up then.
            drop(self.reservation.take());
            Some(Usage::default())
        };
        let mut record = self
            .call
            .record(self.status, usage.unwrap_or_default(), usage.is_none());
        record.response_model = response_model;
        record.client_disconnected = ending.client_disconnected;
        if ending.interrupted {
            record.error_type = Some(ErrorType::Interrupted);
        }
        record.time_to_first_token =
            first_byte.map(|t| t.saturating_duration_since(self.call.started));
        let audit = self.audit;
        let Some(text) = text.clone().filter(|_| usage.is_none()) else {
            record.price();
            if let Some(reservation) = self.reservation {
                reservation.settle(&used(&record));
            }
            if let Some(audit) = audit {
                audit.send(&record, self.request_body, text);
            }
            self.sink.send(record);
            return;
        };
        let body = self.request_body;
        let sink = self.sink;
        let reservation = self.reservation;
        tokio::task::spawn_blocking(move || {
            let model = record.model.clone();
            let prompt = record
                .operation
                .zip(serde_json::from_slice::<serde_json::Value>(&body).ok())
                .map_or(0, |(op, value)| tokenizer::count_prompt(&model, op, &value));
            record.usage = Usage::totals(prompt, tokenizer::count_text(&model, &text));
            record.price();
            if let Some(reservation) = reservation {
                reservation.settle(&used(&record));
            }
            if let Some(audit) = audit {
                audit.send(&record, body, Some(text));
            }
            sink.send(record);
        });
    }
}

/// What the call used, for its quota true-up: tokens by type and its metered cost.
fn used(record: &crate::usage::UsageRecord) -> Used<'_> {
    let spend = record
        .cost
        .as_ref()
        .filter(|cost| cost.kind == CostKind::Metered)
        .map(|cost| (cost.currency.as_str(), cost.amount.nanos_up()));
    Used {
        tokens: record.usage.by_type(),
        spend,
    }
}

impl AuditHook {
    fn send(
        self,
        record: &crate::usage::UsageRecord,
        request_body: Bytes,
        completion: Option<String>,
    ) {
        self.sink.send(PendingAudit {
            policy: self.policy,
            record: record.clone(),
            request_body,
            completion,
            at: SystemTime::now(),
        });
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Accounted(inner) => inner.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Accounted(inner) => inner.upstream.is_none() && inner.pending.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Accounted(_) => SizeHint::default(),
        }
    }
}

impl Accounted {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                self.first_byte.get_or_insert_with(Instant::now);
                if self.upstream.is_none() && self.pending.is_empty() && self.finish.is_some() {
                    // The last chunk of a body read whole: the client has it all.
                    self.end(false);
                }
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            let Some(upstream) = self.upstream.as_mut() else {
                if self.finish.is_some() {
                    self.end(false);
                }
                return Poll::Ready(None);
            };
            match ready!(Pin::new(upstream).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => self.take(chunk),
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(error)) => {
                    self.upstream = None;
                    self.upstream_error = true;
                    self.end(false);
                    self.pending.clear();
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                None => {
                    self.upstream = None;
                    self.end(false);
                }
            }
        }
    }
}

impl Drop for Accounted {
    fn drop(&mut self) {
        if self.finish.is_none() {
            return;
        }
        // The client went away before the end: keep reading upstream in the background,
        // bounded, to learn the real usage.
        let Some(upstream) = self.upstream.take() else {
            self.end(true);
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.end(true);
            return;
        };
        let mut rest = Accounted {
            upstream: None,
            kind: self.kind,
            scanner: self.scanner.take(),
            json: std::mem::take(&mut self.json),
            json_len: self.json_len,
            pending: VecDeque::new(),
            out: Vec::new(),
            first_byte: self.first_byte,
            finish: self.finish.take(),
            upstream_error: false,
            parsed: self.parsed.take(),
        };
        handle.spawn(async move { rest.drain(upstream).await });
    }
}

impl Accounted {
    async fn drain(&mut self, mut upstream: Incoming) {
        use http_body_util::BodyExt;
        let Some(finish) = &self.finish else { return };
        let deadline = tokio::time::Instant::now() + finish.drain_timeout;
        let mut budget = finish.drain_max_bytes;
        loop {
            match tokio::time::timeout_at(deadline, upstream.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(chunk) = frame.into_data() {
                        budget = budget.saturating_sub(chunk.len() as u64);
                        self.take(chunk);
                        self.pending.clear();
                        if budget == 0 {
                            break;
                        }
                    }
                }
                Ok(Some(Err(_))) => {
                    self.upstream_error = true;
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.end(true);
    }
}
