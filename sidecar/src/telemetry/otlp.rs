//! The OTLP metrics exporter: OTLP/HTTP protobuf (and gRPC when built with `otlp-grpc`)
//! from `opentelemetry-otlp`, driven by the SDK's periodic reader on its own thread.
//!
//! Input: [`OtlpSettings`] and the Tokio runtime handle of the process. Output: a
//! [`PeriodicReader`] to install on the meter provider, and [`ExportStats`] (exports that
//! succeeded and failed) for `/metrics`.
//!
//! Nothing here touches the request path: the reader collects the SDK's aggregates and
//! exports them on its thread. HTTP requests run on the Tokio runtime through
//! [`super::exporter::TokioHttpClient`] (the pooled hyper client the gateway uses for backends), each bounded
//! by the export timeout; the exporter retries within that same budget. An unreachable or
//! silent collector therefore costs one pending export at a time and nothing else: the
//! aggregates are cumulative and bounded by the cardinality limits, nothing is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_otlp::MetricExporter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, Temporality};
use tokio::runtime::Handle;

use super::config::OtlpSettings;
use super::exporter::otlp_exporter;

/// Counts of finished exports.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Exports the collector accepted.
    pub succeeded: AtomicU64,
    /// Exports that failed after their retries (unreachable, timeout, error status).
    pub failed: AtomicU64,
}

/// Builds the periodic reader exporting to `settings.endpoint`.
///
/// # Errors
/// The exporter cannot be built (bad endpoint, a protocol this build lacks, an invalid
/// `OTEL_EXPORTER_OTLP_*` variable).
pub fn reader(
    settings: &OtlpSettings,
    runtime: Handle,
    stats: Arc<ExportStats>,
) -> anyhow::Result<PeriodicReader<CountingExporter>> {
    let exporter = otlp_exporter!(MetricExporter, settings, runtime)?;
    let exporter = CountingExporter {
        inner: exporter,
        stats,
    };
    Ok(PeriodicReader::builder(exporter)
        .with_interval(settings.interval)
        .build())
}

/// The OTLP exporter, counting how its exports end.
#[derive(Debug)]
pub struct CountingExporter {
    inner: MetricExporter,
    stats: Arc<ExportStats>,
}

impl PushMetricExporter for CountingExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        let counter = match &result {
            Ok(()) => &self.stats.succeeded,
            Err(error) => {
                tracing::debug!(%error, "OTLP metrics export failed");
                &self.stats.failed
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
