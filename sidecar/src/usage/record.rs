//! The one record every client request ends with, and the sink that delivers it.
//!
//! The proxy sends exactly one [`UsageRecord`] per request (served, failed, refused or
//! abandoned by the client) into a [`UsageSink`]. Consumers — the quota true-up, telemetry,
//! the usage log, the admin totals — subscribe to it. Sending never blocks the request path:
//! a consumer that falls behind loses records and the loss is counted.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::broadcast;

use spillway_crds::billing::Pricing;
use spillway_crds::snapshot::PoolConfig;

use super::{Operation, Usage};
use crate::cost::{self, CallCost};

/// What one client request consumed and how it went.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct UsageRecord {
    /// The request id sent to the backend (`x-request-id`), the client's when it sent one.
    pub request_id: String,
    /// The calling app, `anonymous` when no identity applies.
    pub app_id: String,
    /// The app's namespace (operator mode: the scope of the sidecar's snapshot), so spend
    /// rolls up per team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Pool name; empty when the request never matched a pool.
    pub pool: String,
    /// The backend that produced the final response, if any did.
    pub backend: Option<String>,
    /// The model or deployment name the client asked for.
    pub model: String,
    /// The model the backend reported in its response, when it did.
    pub response_model: Option<String>,
    /// API operation.
    pub operation: Option<Operation>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// Token counts.
    pub usage: Usage,
    /// True when the counts come from the tokenizer rather than the backend.
    pub estimated: bool,
    /// What the call cost at the serving backend's prices; `None` when it has none for the
    /// model (or no backend served). Set by [`UsageRecord::price`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CallCost>,
    /// The serving backend's prices, until [`UsageRecord::price`] applies them.
    #[serde(skip)]
    pub pricing: Option<PricingRef>,
    /// Status returned to the client.
    pub status: u16,
    /// Upstream attempts made.
    pub attempts: u32,
    /// Time from request to the end of the response.
    #[serde(with = "millis")]
    pub duration: Duration,
    /// Time to the first streamed content, for streams.
    #[serde(with = "millis_opt")]
    pub time_to_first_token: Option<Duration>,
    /// The client went away before the response ended.
    pub client_disconnected: bool,
    /// Why the request failed; `None` on success.
    pub error_type: Option<ErrorType>,
    /// Every upstream attempt in order; empty when no backend was tried.
    pub upstream: Vec<UpstreamAttempt>,
    /// The request's W3C trace context and start time, for its spans; `None` when not
    /// traced (records built outside the proxy).
    #[serde(skip)]
    pub trace: Option<RequestTrace>,
}

#[cfg(test)]
impl UsageRecord {
    /// A test record: `app`'s chat completion served by backend `b` of pool `chat` (model
    /// `gpt-4o`, 12 prompt + 34 completion tokens, one attempt, 200). Tests change what they
    /// check with struct update syntax: `UsageRecord { status: 429, ..UsageRecord::served("a") }`.
    pub(crate) fn served(app: &str) -> Self {
        Self {
            request_id: "r".into(),
            app_id: app.into(),
            namespace: None,
            pool: "chat".into(),
            backend: Some("b".into()),
            model: "gpt-4o".into(),
            response_model: None,
            operation: Some(Operation::ChatCompletions),
            stream: false,
            usage: Usage::totals(12, 34),
            estimated: false,
            cost: None,
            pricing: None,
            status: 200,
            attempts: 1,
            duration: Duration::from_millis(5),
            time_to_first_token: None,
            client_disconnected: false,
            error_type: None,
            upstream: Vec::new(),
            trace: None,
        }
    }
}

impl UsageRecord {
    /// Prices the record with its backend's rates (once; later calls change nothing): a
    /// served call (2xx) with pricing gets its [`CallCost`]. The usage sink does it for every
    /// record, so only code that reads a record before sending it needs to call it.
    pub fn price(&mut self) {
        let Some(pricing) = self.pricing.take() else {
            return;
        };
        let served = (200..300).contains(&self.status) && self.usage.total() > 0;
        if let (true, Some(rates)) = (served, pricing.pricing()) {
            self.cost = cost::price(
                rates,
                self.usage.by_type(),
                &self.model,
                self.response_model.as_deref(),
            );
        }
    }
}

/// The prices of the backend that served a call: its pool's configuration and its index,
/// so the hot path clones one `Arc` rather than the prices.
#[derive(Clone, Debug)]
pub struct PricingRef {
    pool: Arc<PoolConfig>,
    backend: usize,
}

impl PricingRef {
    /// The prices of backend `backend` (an index into `pool.backends`).
    pub fn new(pool: &Arc<PoolConfig>, backend: usize) -> Self {
        Self {
            pool: Arc::clone(pool),
            backend,
        }
    }

    /// The backend's prices, if it has any.
    pub fn pricing(&self) -> Option<&Pricing> {
        self.pool.backends.get(self.backend)?.pricing.as_ref()
    }
}

impl PartialEq for PricingRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.pool, &other.pool) && self.backend == other.backend
    }
}

/// Why a call failed, set where it is known and carried as it is to every consumer (metrics'
/// and spans' `error.type`, span status, logs, the usage log); [`ErrorType::label`] is the one
/// place it becomes text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// The gateway answered with its own error: its code (`no_backend_available`,
    /// `rate_limit_exceeded`, …, as in the response's `error.code`) and its kind.
    Gateway(GatewayError),
    /// The backend's error response (this status) was passed back to the client.
    BackendStatus(u16),
    /// The backend broke the response off after it had started: a stream cut before its
    /// end, or a body that ended early.
    Interrupted,
}

impl ErrorType {
    /// The low-cardinality label: the gateway's code, the backend's status (`"429"`), or
    /// `response_interrupted`.
    pub fn label(self) -> Cow<'static, str> {
        match self {
            Self::Gateway(error) => Cow::Borrowed(error.code),
            Self::BackendStatus(status) => Cow::Owned(status.to_string()),
            Self::Interrupted => Cow::Borrowed("response_interrupted"),
        }
    }
}

/// An error the gateway answered with itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GatewayError {
    /// The response's `error.code`.
    pub code: &'static str,
    /// What kind of refusal or failure it is (decided once, from `ProxyError`).
    pub kind: GatewayErrorKind,
}

/// The kinds of the gateway's own errors, as metrics and dashboards group them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatewayErrorKind {
    /// No or a bad credential (401).
    Unauthenticated,
    /// A valid caller not allowed this (403).
    Forbidden,
    /// A per-minute limit (429), or the shared limiter unreachable under `failClosed`.
    RateLimited,
    /// A calendar quota used up until its period resets.
    QuotaExhausted,
    /// Every backend of the pool is open or was tried.
    NoBackend,
    /// The backend could not be reached or did not answer in time.
    Backend,
    /// The request itself is wrong (4xx).
    Client,
    /// The gateway could not serve (not ready, not configured, internal).
    Internal,
}

impl ErrorType {
    /// The gateway's own error `code` of `kind`.
    pub fn gateway(code: &'static str, kind: GatewayErrorKind) -> Self {
        Self::Gateway(GatewayError { code, kind })
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

impl Serialize for ErrorType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.label())
    }
}

/// The trace of one client request: ids and wall-clock start of its server span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTrace {
    /// Trace id: the client's when it sent a valid `traceparent`, else new.
    pub trace_id: [u8; 16],
    /// The gateway's server span.
    pub span_id: [u8; 8],
    /// The client's span, when the trace was continued.
    pub parent_span_id: Option<[u8; 8]>,
    /// The sampled flag: the client's, or set for a new trace.
    pub sampled: bool,
    /// When the request arrived.
    pub start: SystemTime,
}

/// The span of one upstream attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptTrace {
    /// The attempt's span id, sent to the backend in its `traceparent`.
    pub span_id: [u8; 8],
    /// When the attempt was sent.
    pub start: SystemTime,
    /// Time to the backend's response headers, or to the failure.
    pub duration: Duration,
}

/// One attempt sent to a backend on behalf of a client request.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UpstreamAttempt {
    /// The backend tried.
    pub backend: String,
    /// When the attempt started, counted from the request's arrival.
    #[serde(with = "millis")]
    pub started: Duration,
    /// The status the backend answered with; `None` when no response headers came.
    pub status: Option<u16>,
    /// Why no response came: `connection_failure`, `timeout` or `credential_unavailable`
    /// (the backend's Entra ID token could not be had; nothing was sent).
    pub failure: Option<&'static str>,
    /// The breaker transition this attempt's outcome caused, as `[from, to]` state names
    /// (`closed`, `open`, `half_open`).
    pub breaker: Option<[&'static str; 2]>,
    /// The attempt's span; `None` when not traced.
    #[serde(skip)]
    pub trace: Option<AttemptTrace>,
}

/// Fans usage records out to consumers without ever blocking the sender.
#[derive(Clone, Debug)]
pub struct UsageSink {
    tx: broadcast::Sender<Arc<UsageRecord>>,
    sent: Arc<AtomicU64>,
}

impl UsageSink {
    /// A sink whose subscribers may lag by up to `capacity` records before losing some.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            tx,
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Delivers `record` to every current subscriber.
    pub fn send(&self, mut record: UsageRecord) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        record.price();
        // No subscriber is not an error: records are simply not kept.
        let _ = self.tx.send(Arc::new(record));
    }

    /// A new consumer; `recv` reports `Lagged(n)` when it fell behind and lost `n` records.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<UsageRecord>> {
        self.tx.subscribe()
    }

    /// Records sent since start.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
}

mod millis_opt {
    use std::time::Duration;

    #[allow(clippy::ref_option)]
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
            None => s.serialize_none(),
        }
    }
}
