//! The synchronous instruments and how one [`UsageRecord`] becomes measurements.
//!
//! Input: a record, the backend details from the [`BackendIndex`] and the bounded app and
//! model labels. Output: measurements on the client-side GenAI instruments (by default
//! `gen_ai.client.token.usage` and `gen_ai.client.operation.duration`; with the latest
//! conventions those of [`genai_latest`](super::genai_latest)), on the server-side GenAI
//! histograms (`gen_ai.server.request.duration`, `gen_ai.server.time_to_first_token`,
//! `gen_ai.server.time_per_output_token`) and on Spillway's counters (`spillway.tokens`,
//! `spillway.requests`, `spillway.upstream.attempts`, `spillway.breaker.transitions`). Runs on
//! the telemetry task, never on the request path.
//!
//! [`BackendIndex`]: super::backends::BackendIndex

use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{KeyValue, StringValue, Value};

use super::backends::BackendInfo;
use super::config::GenAiConventions;
use super::genai_latest::LatestInstruments;
use super::outcome::{AttemptResult, RequestOutcome};
use super::semconv::{self, attr};
use crate::usage::{Operation, TokenType, UsageRecord};

/// Every synchronous instrument.
#[derive(Debug)]
pub struct Instruments {
    client: ClientInstruments,
    server_duration: Histogram<f64>,
    ttft: Histogram<f64>,
    tpot: Histogram<f64>,
    tokens: Counter<u64>,
    requests: Counter<u64>,
    attempts: Counter<u64>,
    transitions: Counter<u64>,
}

/// The client-side GenAI instruments, under the names the settings chose.
#[derive(Debug)]
enum ClientInstruments {
    /// Semantic conventions up to v1.41.
    Legacy {
        /// `gen_ai.client.token.usage`.
        token_usage: Histogram<u64>,
        /// `gen_ai.client.operation.duration`.
        duration: Histogram<f64>,
    },
    /// `gen_ai_latest_experimental`.
    Latest(LatestInstruments),
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
    /// Creates the instruments on `meter`, the client-side GenAI ones named as `conventions`
    /// says.
    pub fn new(meter: &Meter, conventions: GenAiConventions) -> Self {
        let seconds = |name: &'static str, help: &'static str, buckets: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(help)
                .with_boundaries(buckets.to_vec())
                .build()
        };
        let client = match conventions {
            GenAiConventions::Legacy => ClientInstruments::Legacy {
                token_usage: meter
                    .u64_histogram(semconv::TOKEN_USAGE)
                    .with_unit("{token}")
                    .with_description("Number of input and output tokens used per call.")
                    .with_boundaries(semconv::TOKEN_BUCKETS.to_vec())
                    .build(),
                duration: seconds(
                    semconv::CLIENT_OPERATION_DURATION,
                    "Duration of the backend call that served the request, from the start of its attempt to the last byte.",
                    &semconv::DURATION_BUCKETS,
                ),
            },
            GenAiConventions::LatestExperimental => {
                ClientInstruments::Latest(LatestInstruments::new(meter))
            }
        };
        Self {
            client,
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
            self.record_tokens(resolved);
        }
        let upstream = record
            .upstream
            .last()
            .map(|last| record.duration.saturating_sub(last.started));
        self.record_client(record, &genai, served, upstream);
        let seconds = |d: Duration| d.as_secs_f64();
        self.server_duration
            .record(seconds(record.duration), &genai);
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

    /// The client-side GenAI measurements of the call to the backend; `upstream` is the
    /// duration of the attempt that answered, `None` when no backend was tried.
    fn record_client(
        &self,
        record: &UsageRecord,
        genai: &[KeyValue],
        served: bool,
        upstream: Option<Duration>,
    ) {
        match &self.client {
            ClientInstruments::Legacy {
                token_usage,
                duration,
            } => {
                if served {
                    let embeddings = record.operation == Some(Operation::Embeddings);
                    let usage = &record.usage;
                    let mut counts = vec![("input", usage.prompt_tokens)];
                    if !embeddings {
                        counts.push(("output", usage.completion_tokens));
                    }
                    for (direction, count) in counts {
                        let mut attributes = genai.to_vec();
                        attributes.push(KeyValue::new(attr::TOKEN_TYPE, direction));
                        token_usage.record(count, &attributes);
                    }
                }
                if let Some(upstream) = upstream {
                    duration.record(upstream.as_secs_f64(), genai);
                }
            }
            ClientInstruments::Latest(latest) => {
                if let Some(upstream) = upstream {
                    latest.record(record, genai, served, upstream);
                }
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

    /// `spillway.tokens`, one point per billing class.
    fn record_tokens(&self, resolved: &Resolved<'_>) {
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
        let usage = &record.usage;
        // One point per billing class: plain input and output always (as before the
        // classes existed), the others when the call had any.
        for (kind, count) in usage.by_type() {
            let always = matches!(kind, TokenType::Input)
                || (matches!(kind, TokenType::Output) && !embeddings);
            if count == 0 && !always {
                continue;
            }
            let direction = if kind.is_input() { "input" } else { "output" };
            let mut attributes = counter_attributes.clone();
            attributes.push(KeyValue::new(attr::TOKEN_TYPE, direction));
            attributes.push(KeyValue::new(attr::SPILLWAY_TOKEN_TYPE, kind.as_str()));
            self.tokens.add(count, &attributes);
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
