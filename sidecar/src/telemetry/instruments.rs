//! The synchronous instruments and how one [`UsageRecord`] becomes measurements.
//!
//! Input: a record, the backend details from the [`BackendIndex`] and the bounded app and
//! model labels. Output: measurements on the GenAI histograms (`gen_ai.client.token.usage`,
//! `gen_ai.client.operation.duration`, `gen_ai.server.request.duration`,
//! `gen_ai.server.time_to_first_token`, `gen_ai.server.time_per_output_token`) and on
//! Spillway's counters (`spillway.tokens`, `spillway.requests`, `spillway.upstream.attempts`,
//! `spillway.breaker.transitions`). Runs on the telemetry task, never on the request path.

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{KeyValue, StringValue, Value};

use super::backends::BackendInfo;
use super::outcome::{AttemptResult, RequestOutcome};
use super::semconv::{self, attr};
use crate::usage::{Operation, UsageRecord};

/// Every synchronous instrument.
#[derive(Debug)]
pub struct Instruments {
    token_usage: Histogram<u64>,
    client_duration: Histogram<f64>,
    server_duration: Histogram<f64>,
    ttft: Histogram<f64>,
    tpot: Histogram<f64>,
    tokens: Counter<u64>,
    requests: Counter<u64>,
    attempts: Counter<u64>,
    transitions: Counter<u64>,
}

/// A record with its labels resolved: bounded app and model values, and the serving
/// backend's details when it is (still) configured.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// The record.
    pub record: &'a UsageRecord,
    /// `spillway.app_id` value.
    pub app: StringValue,
    /// `gen_ai.request.model` value; `None` when the model matched no pool.
    pub request_model: Option<StringValue>,
    /// `gen_ai.response.model` value.
    pub response_model: Option<StringValue>,
    /// The backend that served (the last attempt's), if configured.
    pub backend: Option<&'a BackendInfo>,
}

impl Instruments {
    /// Creates the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let seconds = |name: &'static str, help: &'static str, buckets: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(help)
                .with_boundaries(buckets.to_vec())
                .build()
        };
        Self {
            token_usage: meter
                .u64_histogram(semconv::TOKEN_USAGE)
                .with_unit("{token}")
                .with_description("Number of input and output tokens used per call.")
                .with_boundaries(semconv::TOKEN_BUCKETS.to_vec())
                .build(),
            client_duration: seconds(
                semconv::CLIENT_OPERATION_DURATION,
                "Duration of the backend call that served the request, from the start of its attempt to the last byte.",
                &semconv::DURATION_BUCKETS,
            ),
            server_duration: seconds(
                semconv::SERVER_REQUEST_DURATION,
                "Duration of the client request through the gateway, retries included, to the last byte.",
                &semconv::DURATION_BUCKETS,
            ),
            ttft: seconds(
                semconv::TIME_TO_FIRST_TOKEN,
                "Time from the request's arrival to the first streamed byte sent to the client.",
                &semconv::TTFT_BUCKETS,
            ),
            tpot: seconds(
                semconv::TIME_PER_OUTPUT_TOKEN,
                "Time per output token after the first, for successful streams.",
                &semconv::TPOT_BUCKETS,
            ),
            tokens: meter
                .u64_counter(semconv::TOKENS)
                .with_unit("{token}")
                .with_description("Tokens used, per app, pool, backend, model and token type.")
                .build(),
            requests: meter
                .u64_counter(semconv::REQUESTS)
                .with_unit("{request}")
                .with_description("Client requests by outcome.")
                .build(),
            attempts: meter
                .u64_counter(semconv::UPSTREAM_ATTEMPTS)
                .with_unit("{attempt}")
                .with_description("Attempts sent to backends, by result.")
                .build(),
            transitions: meter
                .u64_counter(semconv::BREAKER_TRANSITIONS)
                .with_unit("{transition}")
                .with_description("Circuit-breaker state changes.")
                .build(),
        }
    }

    /// Records everything `resolved` says.
    pub fn record(&self, resolved: &Resolved<'_>) {
        let record = resolved.record;
        let spilled = resolved.backend.is_some_and(|b| b.spillover);
        let outcome = RequestOutcome::of(record, spilled);
        self.record_request(resolved, outcome);
        self.record_attempts(record);
        let genai = genai_attributes(resolved);
        let served = record.backend.is_some() && (200..300).contains(&record.status);
        if served {
            self.record_tokens(resolved, &genai);
        }
        #[allow(clippy::cast_precision_loss)]
        let seconds = |d: std::time::Duration| d.as_secs_f64();
        self.server_duration
            .record(seconds(record.duration), &genai);
        if let Some(last) = record.upstream.last() {
            let upstream = record.duration.saturating_sub(last.started);
            self.client_duration.record(seconds(upstream), &genai);
        }
        if let (true, Some(ttft)) = (served, record.time_to_first_token) {
            self.ttft.record(seconds(ttft), &genai);
            let output = record.usage.completion_tokens;
            if record.error_type.is_none() && output > 1 {
                #[allow(clippy::cast_precision_loss)]
                let per_token = seconds(record.duration.saturating_sub(ttft)) / (output - 1) as f64;
                self.tpot.record(per_token, &genai);
            }
        }
    }

    fn record_request(&self, resolved: &Resolved<'_>, outcome: RequestOutcome) {
        let record = resolved.record;
        let mut attributes = vec![
            KeyValue::new(attr::APP_ID, resolved.app.clone()),
            KeyValue::new(attr::POOL, record.pool.clone()),
            KeyValue::new(attr::OUTCOME, outcome.as_str()),
            KeyValue::new(attr::HTTP_STATUS_CODE, i64::from(record.status)),
        ];
        if let Some(backend) = &record.backend {
            attributes.push(KeyValue::new(attr::BACKEND, backend.clone()));
        }
        if let Some(namespace) = &record.namespace {
            attributes.push(KeyValue::new(attr::K8S_NAMESPACE, namespace.clone()));
        }
        if let Some(model) = &resolved.request_model {
            attributes.push(KeyValue::new(attr::REQUEST_MODEL, model.clone()));
        }
        if let Some(error) = &record.error_type {
            attributes.push(KeyValue::new(attr::ERROR_TYPE, error.to_string()));
        }
        self.requests.add(1, &attributes);
    }

    fn record_attempts(&self, record: &UsageRecord) {
        for attempt in &record.upstream {
            let mut attributes = vec![
                KeyValue::new(attr::POOL, record.pool.clone()),
                KeyValue::new(attr::BACKEND, attempt.backend.clone()),
                KeyValue::new(attr::ATTEMPT_RESULT, AttemptResult::of(attempt).as_str()),
            ];
            if let Some(status) = attempt.status {
                attributes.push(KeyValue::new(attr::HTTP_STATUS_CODE, i64::from(status)));
            }
            self.attempts.add(1, &attributes);
            if let Some([from, to]) = attempt.breaker {
                self.transitions.add(
                    1,
                    &[
                        KeyValue::new(attr::POOL, record.pool.clone()),
                        KeyValue::new(attr::BACKEND, attempt.backend.clone()),
                        KeyValue::new(attr::BREAKER_FROM, from),
                        KeyValue::new(attr::BREAKER_TO, to),
                    ],
                );
            }
        }
    }

    fn record_tokens(&self, resolved: &Resolved<'_>, genai: &[KeyValue]) {
        let record = resolved.record;
        let mut counter_attributes = vec![
            KeyValue::new(attr::APP_ID, resolved.app.clone()),
            KeyValue::new(attr::POOL, record.pool.clone()),
            KeyValue::new(attr::BACKEND, record.backend.clone().unwrap_or_default()),
            KeyValue::new(attr::TOKEN_ESTIMATED, record.estimated),
        ];
        if let Some(model) = &resolved.request_model {
            counter_attributes.push(KeyValue::new(attr::REQUEST_MODEL, model.clone()));
        }
        if let Some(namespace) = &record.namespace {
            counter_attributes.push(KeyValue::new(attr::K8S_NAMESPACE, namespace.clone()));
        }
        let embeddings = record.operation == Some(Operation::Embeddings);
        let counts = [
            ("input", record.usage.prompt_tokens, true),
            ("output", record.usage.completion_tokens, !embeddings),
        ];
        for (kind, count, applies) in counts {
            if !applies {
                continue;
            }
            let with_type = |base: &[KeyValue]| {
                let mut attributes = base.to_vec();
                attributes.push(KeyValue::new(attr::TOKEN_TYPE, kind));
                attributes
            };
            self.token_usage.record(count, &with_type(genai));
            self.tokens.add(count, &with_type(&counter_attributes));
        }
    }
}

/// The GenAI attributes shared by the `gen_ai.*` histograms, with Spillway's dimensions.
fn genai_attributes(resolved: &Resolved<'_>) -> Vec<KeyValue> {
    let record = resolved.record;
    let mut attributes = Vec::with_capacity(12);
    if let Some(operation) = record.operation {
        attributes.push(KeyValue::new(
            attr::OPERATION_NAME,
            operation.semconv_name(),
        ));
    }
    if let Some(model) = &resolved.request_model {
        attributes.push(KeyValue::new(attr::REQUEST_MODEL, model.clone()));
    }
    if let Some(model) = &resolved.response_model {
        attributes.push(KeyValue::new(attr::RESPONSE_MODEL, model.clone()));
    }
    if let Some(backend) = resolved.backend {
        attributes.push(KeyValue::new(attr::PROVIDER_NAME, backend.provider));
        attributes.push(KeyValue::new(
            attr::SERVER_ADDRESS,
            Value::String(backend.address.clone()),
        ));
        attributes.push(KeyValue::new(attr::SERVER_PORT, backend.port));
    }
    if let Some(error) = &record.error_type {
        attributes.push(KeyValue::new(attr::ERROR_TYPE, error.to_string()));
    }
    attributes.push(KeyValue::new(attr::APP_ID, resolved.app.clone()));
    attributes.push(KeyValue::new(attr::POOL, record.pool.clone()));
    if let Some(backend) = &record.backend {
        attributes.push(KeyValue::new(attr::BACKEND, backend.clone()));
    }
    attributes.push(KeyValue::new(attr::TOKEN_ESTIMATED, record.estimated));
    if let Some(namespace) = &record.namespace {
        attributes.push(KeyValue::new(attr::K8S_NAMESPACE, namespace.clone()));
    }
    attributes
}
