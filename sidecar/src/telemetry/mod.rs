//! Metrics: OpenTelemetry instruments following the GenAI semantic conventions plus
//! Spillway's own, exported over OTLP and served as Prometheus text on the admin port.
//!
//! Inputs: the [`UsageRecord`] every request ends with (from the [`UsageSink`], so the
//! request path never waits for telemetry), the gateway's applied configuration and breaker
//! states (read when metrics are collected), and quota levels from the limiter (a
//! [`QuotaSource`], read when metrics are collected). Outputs: OTLP exports (periodic, on
//! the SDK's thread) and [`Telemetry::prometheus`] for `/metrics`. Both read the same SDK
//! aggregates, so they always agree.
//!
//! - `semconv`: every instrument and attribute name, and the bucket boundaries.
//! - `instruments`: record → measurements; `genai_latest`: the client-side GenAI instruments
//!   of the latest conventions (`OTEL_SEMCONV_STABILITY_OPT_IN`); `outcome`: request and
//!   attempt outcomes.
//! - `gauges`: breaker state, config version, quota levels, telemetry's own health.
//! - `labels`: cardinality bounds (appIds beyond the maximum become `other`).
//! - `backends`: provider, server address and spillover per configured backend.
//! - `otlp`: the exporter; `prometheus`: the text format; `config`: flags and env vars.
//! - `traces`, `spans`: spans per request and attempt, built from the same records (see
//!   [`Telemetry::start_traces`]); `sampler`: which traces are sampled.
//! - `logs`: one OTLP log record per request (see [`Telemetry::start_logs`]).
//! - `pipeline`: the bounded queue and export task traces and logs share;
//!   `export_config`: their endpoints, protocols and queue sizes.
//!
//! [`UsageSink`]: crate::usage::UsageSink

mod backends;
mod config;
mod export_config;
mod exporter;
mod gauges;
mod genai_latest;
mod instruments;
mod labels;
pub(crate) mod logs;
mod otlp;
mod outcome;
mod pipeline;
pub mod prometheus;
mod sampler;
pub mod semconv;
mod spans;
mod spend;
mod traces;
pub mod usage_fields;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Instrument, InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream, Temporality,
};
use tokio::sync::broadcast::{self, error::RecvError};

pub use config::{GenAiConventions, OtlpProtocol, OtlpSettings, TelemetryArgs, TelemetrySettings};
pub use export_config::{ExportSettings, LogSettings, Signal, TraceSettings};
pub use gauges::{QuotaLevel, QuotaSource};
pub use logs::EVENT_NAME as LOG_EVENT_NAME;
pub use outcome::{AttemptResult, RequestOutcome};
pub use pipeline::Exporting;
pub use sampler::{RootSampler, Sampler};

use crate::breaker::BreakerState;
use crate::usage::UsageRecord;
use backends::BackendIndex;
use instruments::{Instruments, Resolved};
use labels::BoundedValues;
use otlp::ExportStats;

/// What telemetry reads of the gateway it reports on. `proxy::Gateway` implements it, so
/// telemetry never depends on the proxy (which depends on telemetry).
pub trait GatewayView: Send + Sync + std::fmt::Debug + 'static {
    /// The snapshot serving traffic, if any.
    fn snapshot(&self) -> Option<Arc<spillway_crds::Snapshot>>;
    /// Calls `visit(pool, backend, state)` for every backend's breaker at `now`.
    fn breakers(&self, now: std::time::Instant, visit: &mut dyn FnMut(&str, &str, BreakerState));
    /// Audit records written, dropped and failed so far.
    fn audit_counts(&self) -> (u64, u64, u64);
}

/// Distinct response-model names with their own label.
const MAX_MODELS: usize = 200;

/// The metrics pipeline of one gateway process. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: SdkMeterProvider,
    pull: Arc<ManualReader>,
    instruments: Instruments,
    spend: spend::Spend,
    gateway: Arc<dyn GatewayView>,
    apps: BoundedValues,
    models: BoundedValues,
    index: ArcSwap<BackendIndex>,
    quota_source: RwLock<Option<Arc<dyn QuotaSource>>>,
    lost: AtomicU64,
    exports: Arc<ExportStats>,
}

impl Telemetry {
    /// Starts the pipeline: instruments, the `/metrics` reader and, when configured, the
    /// OTLP exporter. Must be called inside the Tokio runtime (the exporter's HTTP requests
    /// run on it).
    ///
    /// # Errors
    /// The OTLP exporter cannot be built from `settings`.
    pub fn start(
        settings: &TelemetrySettings,
        gateway: Arc<dyn GatewayView>,
    ) -> anyhow::Result<Self> {
        let pull = Arc::new(ManualReader::builder().build());
        let max_series = settings.max_series;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(resource())
            .with_reader(SharedReader(Arc::clone(&pull)))
            .with_view(move |_: &Instrument| {
                Stream::builder()
                    .with_cardinality_limit(max_series)
                    .build()
                    .ok()
            });
        let exports = Arc::new(ExportStats::default());
        if let Some(otlp) = &settings.otlp {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|_| anyhow::anyhow!("telemetry must start inside the Tokio runtime"))?;
            builder = builder.with_reader(otlp::reader(otlp, runtime, Arc::clone(&exports))?);
            tracing::info!(endpoint = %otlp.endpoint, protocol = ?otlp.protocol, interval = ?otlp.interval, "exporting metrics over OTLP");
        }
        let provider = builder.build();
        if settings.genai == GenAiConventions::LatestExperimental {
            tracing::info!(
                "GenAI metrics use the latest experimental semantic conventions ({})",
                GenAiConventions::OPT_IN
            );
        }
        let meter = provider.meter("spillway");
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            gauges::register(&meter, weak.clone());
            Inner {
                instruments: Instruments::new(&meter, settings.genai),
                spend: spend::Spend::new(&meter),
                provider,
                pull,
                gateway,
                apps: BoundedValues::new(settings.max_apps),
                models: BoundedValues::new(MAX_MODELS),
                index: ArcSwap::from_pointee(BackendIndex::default()),
                quota_source: RwLock::new(None),
                lost: AtomicU64::new(0),
                exports,
            }
        });
        Ok(Self { inner })
    }

    /// Records one finished request.
    pub fn record(&self, record: &UsageRecord) {
        let inner = &self.inner;
        // One read of the applied snapshot serves the backend index and the PTU ledger.
        let snapshot = inner.gateway.snapshot();
        let index = inner.index_of(snapshot.as_ref());
        let backend = record
            .backend
            .as_deref()
            .and_then(|b| index.get(&record.pool, b));
        let resolved = Resolved {
            record,
            app: inner.apps.label(&record.app_id),
            request_model: (!record.pool.is_empty()).then(|| record.model.clone().into()),
            response_model: record
                .response_model
                .as_deref()
                .map(|m| inner.models.label(m)),
            backend,
        };
        inner.instruments.record(&resolved);
        let now = crate::calendar::unix_ms(std::time::SystemTime::now());
        inner.spend.configure(snapshot.as_deref(), now);
        inner
            .spend
            .record(record, &resolved.app, resolved.request_model.as_ref(), now);
    }

    /// Adds the hours of provisioned backends that ended by now (also done with every
    /// record; this covers a quiet gateway).
    pub fn close_due_hours(&self) {
        let now = crate::calendar::unix_ms(std::time::SystemTime::now());
        self.inner
            .spend
            .configure(self.inner.gateway.snapshot().as_deref(), now);
    }

    /// Records every record of `rx` until the sink closes; records missed because this
    /// consumer fell behind are counted in `spillway.telemetry.records_lost`.
    pub async fn follow(self, mut rx: broadcast::Receiver<Arc<UsageRecord>>) {
        let mut hours = tokio::time::interval(Duration::from_secs(30));
        hours.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let received = tokio::select! {
                received = rx.recv() => received,
                _ = hours.tick() => {
                    self.close_due_hours();
                    continue;
                }
            };
            match received {
                Ok(record) => self.record(&record),
                Err(RecvError::Lagged(n)) => {
                    self.inner.lost.fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(lost = n, "telemetry fell behind; usage records lost");
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Installs where `spillway.quota.remaining_tokens` comes from (the limiter); read each
    /// time metrics are collected. Replaces an earlier source.
    pub fn set_quota_source(&self, source: Arc<dyn QuotaSource>) {
        *self
            .inner
            .quota_source
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    /// The current metrics as Prometheus text (for `/metrics`).
    pub fn prometheus(&self) -> String {
        let mut metrics = ResourceMetrics::default();
        if let Err(error) = self.inner.pull.collect(&mut metrics) {
            tracing::warn!(%error, "collecting metrics for /metrics failed");
        }
        prometheus::render(&metrics)
    }

    /// Exports what is pending and stops the exporter (at process exit); the open hours of
    /// provisioned backends are shared out up to now first.
    pub fn shutdown(&self) {
        let now = crate::calendar::unix_ms(std::time::SystemTime::now());
        self.inner.spend.close_all(now);
        if let Err(error) = self
            .inner
            .provider
            .shutdown_with_timeout(Duration::from_secs(5))
        {
            tracing::debug!(%error, "metrics shutdown");
        }
    }
}

impl Inner {
    /// The backend index of the applied snapshot, rebuilt when its version changed.
    fn current_index(&self) -> Arc<BackendIndex> {
        self.index_of(self.gateway.snapshot().as_ref())
    }

    /// The backend index of `snapshot` (the applied one), rebuilt when its version changed.
    fn index_of(&self, snapshot: Option<&Arc<spillway_crds::Snapshot>>) -> Arc<BackendIndex> {
        let index = self.index.load_full();
        let Some(snapshot) = snapshot else {
            return index;
        };
        if index.version() == Some(snapshot.version) {
            return index;
        }
        let fresh = Arc::new(BackendIndex::build(snapshot));
        self.index.store(Arc::clone(&fresh));
        fresh
    }
}

/// `service.name` = `spillway` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` name
/// it; `service.version` = this build.
fn resource() -> Resource {
    let builder = Resource::builder();
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = if named {
        builder
    } else {
        builder.with_service_name("spillway")
    };
    builder
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// The pull reader behind `/metrics`, shared with the provider.
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, _kind: InstrumentKind) -> Temporality {
        Temporality::Cumulative
    }
}

#[cfg(test)]
mod tests;
