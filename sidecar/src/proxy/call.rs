//! What is known about one client call as it runs ([`Call`]), which becomes its usage record,
//! and the headers every answer carries, success or refusal ([`with_common_headers`]):
//! `x-request-id`, `x-spillway-backend`, `x-spillway-attempts`, `x-spillway-retried`.
//!
//! Input: the request's headers, then what routing and attempts learn. Output: a
//! [`UsageRecord`] and decorated responses. A leaf of `proxy/`: it uses [`super::ids`] only.

use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::ids::{request_id, request_trace};
use crate::telemetry::Sampler;
use crate::usage::record::{PricingRef, RequestTrace, UpstreamAttempt};
use crate::usage::{ErrorType, Operation, Usage, UsageRecord};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static BACKEND: HeaderName = HeaderName::from_static("x-spillway-backend");
static ATTEMPTS: HeaderName = HeaderName::from_static("x-spillway-attempts");
static RETRIED: HeaderName = HeaderName::from_static("x-spillway-retried");

/// What is known about the call so far; becomes the usage record.
#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub request_id: HeaderValue,
    pub app_id: String,
    /// The namespace of the applied configuration, if any.
    pub namespace: Option<String>,
    pub pool: String,
    pub model: String,
    pub operation: Option<Operation>,
    pub stream: bool,
    pub started: Instant,
    pub attempts: u32,
    pub backend: Option<String>,
    /// The prices of `backend`.
    pub pricing: Option<PricingRef>,
    /// Every attempt so far, for the usage record.
    pub upstream: Vec<UpstreamAttempt>,
    /// The request's trace context.
    pub trace: RequestTrace,
}

impl Call {
    /// A call that just arrived with `headers`: its request id (the client's, or a new one)
    /// and trace context; anonymous until identity runs.
    pub(crate) fn new(sampler: &Sampler, headers: &HeaderMap) -> Self {
        Self {
            request_id: request_id(headers),
            app_id: "anonymous".to_owned(),
            namespace: None,
            pool: String::new(),
            model: String::new(),
            operation: None,
            stream: false,
            started: Instant::now(),
            attempts: 0,
            backend: None,
            pricing: None,
            upstream: Vec::new(),
            trace: request_trace(sampler, headers),
        }
    }

    /// The usage record of this call as it ends with `status` and `usage`.
    pub(crate) fn record(&self, status: u16, usage: Usage, estimated: bool) -> UsageRecord {
        UsageRecord {
            request_id: self.request_id.to_str().unwrap_or_default().to_owned(),
            app_id: self.app_id.clone(),
            namespace: self.namespace.clone(),
            pool: self.pool.clone(),
            backend: self.backend.clone(),
            model: self.model.clone(),
            response_model: None,
            operation: self.operation,
            stream: self.stream,
            usage,
            estimated,
            cost: None,
            pricing: self.pricing.clone(),
            status,
            attempts: self.attempts,
            duration: self.started.elapsed(),
            time_to_first_token: None,
            client_disconnected: false,
            error_type: (status >= 400).then_some(ErrorType::BackendStatus(status)),
            upstream: self.upstream.clone(),
            trace: Some(self.trace),
        }
    }
}

impl Call {
    /// Backend `index` of `pool` serves (or is trying) the call.
    pub(crate) fn serve_with(
        &mut self,
        pool: &std::sync::Arc<spillway_crds::snapshot::PoolConfig>,
        index: usize,
    ) {
        self.backend = pool.backends.get(index).map(|b| b.name.clone());
        self.pricing = Some(PricingRef::new(pool, index));
    }
}

/// Adds the headers every answer carries.
pub(crate) fn with_common_headers<B>(mut response: Response<B>, call: &Call) -> Response<B> {
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID.clone(), call.request_id.clone());
    if let Some(value) = call
        .backend
        .as_deref()
        .and_then(|b| HeaderValue::from_str(b).ok())
    {
        headers.insert(BACKEND.clone(), value);
    }
    headers.insert(ATTEMPTS.clone(), HeaderValue::from(call.attempts));
    if response.status() == StatusCode::OK && call.attempts > 1 {
        response
            .headers_mut()
            .insert(RETRIED.clone(), HeaderValue::from_static("true"));
    }
    response
}
