//! Names of every instrument and attribute Spillway emits, and the histogram bucket
//! boundaries, in one place.
//!
//! The `gen_ai.*` names follow the OpenTelemetry GenAI semantic conventions (metrics:
//! `gen_ai.client.*`, `gen_ai.server.*`; attributes: `gen_ai.operation.name`,
//! `gen_ai.provider.name`, …). They are our own constants on purpose: the semconv crate's
//! `gen_ai` constants are deprecated and its names move between releases. `spillway.*` names
//! are Spillway's own. Prometheus names are derived from these (see `prometheus.rs`): dots
//! become underscores, `s` adds `_seconds`, monotonic counters add `_total`, `{…}` units add
//! nothing.
//!
//! The client-side GenAI metrics exist in two sets of names, chosen at start-up
//! ([`GenAiConventions`](super::GenAiConventions)): the conventions up to v1.41
//! (the default: [`TOKEN_USAGE`], [`CLIENT_OPERATION_DURATION`]) and the latest experimental
//! ones (`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`: the `INFERENCE_*` and
//! `EMBEDDINGS_*` names). The `gen_ai.server.*` metrics have one name in both.

/// `gen_ai.client.token.usage`: input and output tokens per call (histogram, `{token}`).
pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// `gen_ai.client.operation.duration`: the served upstream call, from the start of the
/// attempt that answered to the last byte (histogram, `s`).
pub const CLIENT_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// `gen_ai.server.request.duration`: the whole client request as the gateway served it,
/// retries included, to the last byte (histogram, `s`).
pub const SERVER_REQUEST_DURATION: &str = "gen_ai.server.request.duration";
/// `gen_ai.server.time_to_first_token`: request arrival to the first streamed byte sent to
/// the client (histogram, `s`; streams only).
pub const TIME_TO_FIRST_TOKEN: &str = "gen_ai.server.time_to_first_token";
/// `gen_ai.server.time_per_output_token`: (last byte − first byte) / (output tokens − 1)
/// (histogram, `s`; successful streams with at least two output tokens).
pub const TIME_PER_OUTPUT_TOKEN: &str = "gen_ai.server.time_per_output_token";

/// `gen_ai.client.inference.usage.input_tokens`: input tokens of inference calls, cached ones
/// included, by `gen_ai.token.modality` (counter, `{token}`; latest conventions).
pub const INFERENCE_USAGE_INPUT_TOKENS: &str = "gen_ai.client.inference.usage.input_tokens";
/// `gen_ai.client.inference.usage.output_tokens`: output tokens of inference calls,
/// reasoning included, by `gen_ai.token.modality` (counter, `{token}`; latest conventions).
pub const INFERENCE_USAGE_OUTPUT_TOKENS: &str = "gen_ai.client.inference.usage.output_tokens";
/// `gen_ai.client.inference.usage.cache_read.input_tokens`: of the input, read from the
/// provider's prompt cache (counter, `{token}`; latest conventions).
pub const INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS: &str =
    "gen_ai.client.inference.usage.cache_read.input_tokens";
/// `gen_ai.client.inference.usage.cache_write.input_tokens`: of the input, written to the
/// provider's prompt cache (counter, `{token}`; latest conventions).
pub const INFERENCE_USAGE_CACHE_WRITE_INPUT_TOKENS: &str =
    "gen_ai.client.inference.usage.cache_write.input_tokens";
/// `gen_ai.client.inference.usage.reasoning.output_tokens`: of the output, reasoning
/// (counter, `{token}`; latest conventions).
pub const INFERENCE_USAGE_REASONING_OUTPUT_TOKENS: &str =
    "gen_ai.client.inference.usage.reasoning.output_tokens";
/// `gen_ai.client.inference.operation.input_tokens`: input tokens per inference call, for
/// percentiles, not totals (histogram, `{token}`, [`TOKEN_BUCKETS`]; latest conventions).
pub const INFERENCE_OPERATION_INPUT_TOKENS: &str = "gen_ai.client.inference.operation.input_tokens";
/// `gen_ai.client.inference.operation.output_tokens`: output tokens per inference call
/// (histogram, `{token}`, [`TOKEN_BUCKETS`]; latest conventions).
pub const INFERENCE_OPERATION_OUTPUT_TOKENS: &str =
    "gen_ai.client.inference.operation.output_tokens";
/// `gen_ai.client.inference.duration`: [`CLIENT_OPERATION_DURATION`] for inference calls
/// (chat, responses, text completions) (histogram, `s`; latest conventions).
pub const INFERENCE_DURATION: &str = "gen_ai.client.inference.duration";
/// `gen_ai.client.embeddings.duration`: [`CLIENT_OPERATION_DURATION`] for embeddings calls
/// (histogram, `s`; latest conventions).
pub const EMBEDDINGS_DURATION: &str = "gen_ai.client.embeddings.duration";
/// `gen_ai.client.embeddings.operation.input_tokens`: input tokens per embeddings call
/// (histogram, `{token}`, [`TOKEN_BUCKETS`]; latest conventions).
pub const EMBEDDINGS_OPERATION_INPUT_TOKENS: &str =
    "gen_ai.client.embeddings.operation.input_tokens";

/// `spillway.tokens`: tokens per app, pool, backend, model and type (counter, `{token}`).
pub const TOKENS: &str = "spillway.tokens";
/// `spillway.cost`: money per app, pool, backend, model, currency and kind, in millionths
/// of the currency (counter, `{micro_currency_unit}`). Exact: the sub-millionth remainder of
/// each series is carried to its next call, so the counter is the exact sum rounded down.
pub const COST: &str = "spillway.cost";
/// `spillway.provisioned.weight`: calls served by provisioned backends, priced at the
/// backend's rates, in millionths (counter, `{micro_currency_unit}`; app, pool, backend,
/// model, currency). Fleet-wide PTU shares: an app's increase over the pool's and backend's.
pub const PROVISIONED_WEIGHT: &str = "spillway.provisioned.weight";
/// `spillway.provisioned.cost_per_hour`: the configured cost of the current hour of each
/// provisioned backend, in millionths (gauge; pool, backend, currency).
pub const PROVISIONED_COST_PER_HOUR: &str = "spillway.provisioned.cost_per_hour";
/// `spillway.budget.remaining`: money left in a `TokenQuota` budget's current window, in
/// millionths of the currency (gauge; `spillway.quota.window`, `spillway.cost.currency`).
pub const BUDGET_REMAINING: &str = "spillway.budget.remaining";
/// `spillway.requests`: client requests by outcome (counter, `{request}`).
pub const REQUESTS: &str = "spillway.requests";
/// `spillway.upstream.attempts`: attempts sent to backends by result (counter, `{attempt}`).
pub const UPSTREAM_ATTEMPTS: &str = "spillway.upstream.attempts";
/// `spillway.breaker.transitions`: circuit-breaker state changes (counter, `{transition}`).
pub const BREAKER_TRANSITIONS: &str = "spillway.breaker.transitions";
/// `spillway.breaker.state`: 1 for the backend's current breaker state, 0 for the others
/// (gauge).
pub const BREAKER_STATE: &str = "spillway.breaker.state";
/// `spillway.config.version`: the snapshot version applied (gauge).
pub const CONFIG_VERSION: &str = "spillway.config.version";
/// `spillway.quota.limit_tokens`: configured token limit per quota window (gauge).
pub const QUOTA_LIMIT: &str = "spillway.quota.limit_tokens";
/// `spillway.quota.remaining_tokens`: tokens left in the quota window (gauge; reported by
/// the limiter through [`QuotaLevel`](super::QuotaLevel)).
pub const QUOTA_REMAINING: &str = "spillway.quota.remaining_tokens";
/// `spillway.telemetry.records_lost`: usage records telemetry missed because it fell
/// behind (counter, `{record}`).
pub const RECORDS_LOST: &str = "spillway.telemetry.records_lost";
/// `spillway.telemetry.exports`: OTLP exports by result (counter, `{export}`).
pub const EXPORTS: &str = "spillway.telemetry.exports";
/// `spillway.telemetry.spans`: spans by result: `success` (exported), `failure` (the export
/// failed), `dropped` (the queue was full or telemetry fell behind) (counter, `{span}`).
pub const SPANS: &str = "spillway.telemetry.spans";
/// `spillway.telemetry.log_records`: per-request OTLP log records by result, as for spans
/// (counter, `{record}`).
pub const LOG_RECORDS: &str = "spillway.telemetry.log_records";
/// `spillway.telemetry.audit_log_records`: audit records exported as OTLP logs, by result
/// as for spans (counter, `{record}`).
pub const AUDIT_LOG_RECORDS: &str = "spillway.telemetry.audit_log_records";
/// Audit records by result (`written`, `dropped`, `failed`).
pub const AUDIT_RECORDS: &str = "spillway.audit.records";

/// Attribute keys.
pub mod attr {
    /// `chat`, `text_completion`, `embeddings`.
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    /// `azure.ai.openai` or `openai`, from the backend type.
    pub const PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// The model or deployment the client asked for.
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    /// The model the backend reported.
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// `input` or `output` (`gen_ai.client.token.usage` and `spillway.tokens`).
    pub const TOKEN_TYPE: &str = "gen_ai.token.type";
    /// `text`, `audio`, `image` or `unknown` (the `gen_ai.client.inference.usage.*`
    /// counters of the latest conventions).
    pub const TOKEN_MODALITY: &str = "gen_ai.token.modality";
    /// The backend's host.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// The backend's port.
    pub const SERVER_PORT: &str = "server.port";
    /// Why the request failed (see `docs/observability.md` for the list).
    pub const ERROR_TYPE: &str = "error.type";
    /// The status code returned to the client (requests) or by the backend (attempts).
    pub const HTTP_STATUS_CODE: &str = "http.response.status_code";
    /// Input tokens of the call (span attribute).
    pub const USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// Output tokens of the call (span attribute).
    pub const USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// Of the input, read from the prompt cache (span and log attribute).
    pub const USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    /// Of the input, written to the prompt cache (span and log attribute).
    pub const USAGE_CACHE_WRITE_INPUT_TOKENS: &str = "gen_ai.usage.cache_write.input_tokens";
    /// Of the output, reasoning (span and log attribute).
    pub const USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
    /// Of the input, audio (Spillway's; the conventions have no such attribute yet).
    pub const USAGE_AUDIO_INPUT_TOKENS: &str = "spillway.usage.audio.input_tokens";
    /// Of the input, image (Spillway's).
    pub const USAGE_IMAGE_INPUT_TOKENS: &str = "spillway.usage.image.input_tokens";
    /// Of the output, audio (Spillway's).
    pub const USAGE_AUDIO_OUTPUT_TOKENS: &str = "spillway.usage.audio.output_tokens";
    /// The billing class of tokens on `spillway.tokens`: `input`, `cached_input`,
    /// `cache_write_input`, `audio_input`, `image_input`, `output`, `reasoning_output`,
    /// `audio_output` (disjoint: they add up to the call's total).
    pub const SPILLWAY_TOKEN_TYPE: &str = "spillway.token.type";
    /// The call's cost as an exact decimal in `spillway.cost.currency` (span and log
    /// attribute).
    pub const COST_AMOUNT: &str = "spillway.cost.amount";
    /// ISO 4217 code of a cost.
    pub const COST_CURRENCY: &str = "spillway.cost.currency";
    /// `metered`, `provisioned` or `unallocated`.
    pub const COST_KIND: &str = "spillway.cost.kind";
    /// The request id (`x-request-id`) sent to the backends (span attribute only).
    pub const REQUEST_ID: &str = "spillway.request_id";
    /// The calling app (bounded: `other` beyond the configured maximum).
    pub const APP_ID: &str = "spillway.app_id";
    /// The app's namespace (operator mode), for chargeback per team.
    pub const K8S_NAMESPACE: &str = "k8s.namespace.name";
    /// The pool that served the request.
    pub const POOL: &str = "spillway.pool";
    /// The backend that really served the call (or the attempt's backend).
    pub const BACKEND: &str = "spillway.backend";
    /// Whether the token counts come from the tokenizer rather than the backend.
    pub const TOKEN_ESTIMATED: &str = "spillway.token.estimated";
    /// How the request ended, see [`RequestOutcome`](crate::telemetry::RequestOutcome).
    pub const OUTCOME: &str = "spillway.outcome";
    /// How an upstream attempt ended, see [`AttemptResult`](crate::telemetry::AttemptResult).
    pub const ATTEMPT_RESULT: &str = "spillway.attempt.result";
    /// A breaker state: `closed`, `open`, `half_open`.
    pub const BREAKER_STATE: &str = "spillway.breaker.state";
    /// The state a breaker transition left.
    pub const BREAKER_FROM: &str = "spillway.breaker.from";
    /// The state a breaker transition entered.
    pub const BREAKER_TO: &str = "spillway.breaker.to";
    /// A `TokenQuota` name.
    pub const QUOTA: &str = "spillway.quota";
    /// A quota window: `minute`, `hour`, `day`, `week`, `month`.
    pub const QUOTA_WINDOW: &str = "spillway.quota.window";
    /// The request's duration to the end of the response, in milliseconds (log records).
    pub const DURATION_MS: &str = "spillway.duration_ms";
    /// Time to the first streamed content, in milliseconds (log records, streams).
    pub const TIME_TO_FIRST_TOKEN_MS: &str = "spillway.time_to_first_token_ms";
    /// Whether the client asked for a stream (log records).
    pub const STREAM: &str = "spillway.stream";
    /// Upstream attempts made (log records).
    pub const ATTEMPTS: &str = "spillway.attempts";
    /// Present (true) when the client went away before the response ended (log records).
    pub const CLIENT_DISCONNECTED: &str = "spillway.client_disconnected";
    /// How an OTLP export ended: `success`, `failure` (and `dropped` for spans).
    pub const EXPORT_RESULT: &str = "spillway.export.result";
}

/// The attribute value for apps beyond the configured maximum, and for models nobody
/// configured.
pub const OTHER: &str = "other";

/// Token histogram buckets (`gen_ai.client.token.usage`, `gen_ai.client.*.operation.*`),
/// as the GenAI conventions specify.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];
/// Operation, inference, embeddings and request duration buckets (seconds), as the GenAI
/// conventions specify.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// Time-to-first-token buckets (seconds), as the GenAI conventions specify.
pub const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Time-per-output-token buckets (seconds), as the GenAI conventions specify.
pub const TPOT_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
